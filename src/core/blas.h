/*
 * core/blas.h - road's entry points to BLAS (OpenBLAS), private.
 *
 * Every sgemm road runs goes through here, and so does OpenBLAS's thread setting, so that no
 * other file includes <cblas.h> or knows which BLAS is linked. Matrices are row-major.
 */
#ifndef ROAD_CORE_BLAS_H
#define ROAD_CORE_BLAS_H

#include <stdbool.h>
#include <stdint.h>

/* C[m x n] = alpha * op(A) op(B) + beta * C, plain row-major sgemm (op = transpose if set). */
void road__sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);
/* Y[rows x out] = X[rows x in] * W[out x in]^T (+ bias[out] if non-NULL): sgemm, or for up to
 * ROAD_SKINNY_MAX_ROWS rows the decode kernel of gemm_skinny.c. Y is overwritten. */
void road__sgemm_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                     const float *bias, float *y);
/* dX[rows x in] = dY[rows x out] * W[out x in] (the input gradient of the linear above). */
void road__sgemm_dyw(int64_t rows, int64_t out, int64_t in, const float *dy, const float *w,
                     float *dx);

/* OpenBLAS's thread count. Process-wide: OpenBLAS keeps one count for all threads (its OpenMP
 * build also follows the calling thread's OpenMP count when that differs, unless the count is
 * 1). n < 1 is taken as 1. core/threads.c is the only caller. */
void road__blas_set_threads(int n);
int road__blas_threads(void);

#endif
