/*
 * core/parallel.h - thread count, CPU features and BLAS entry points (private).
 *
 * Kernels use OpenMP; BLAS gets the same thread count. Code is correct with OpenMP off.
 * CPU features are read at run time (never at build time), so one binary runs everywhere and
 * picks the fastest kernel the machine supports.
 */
#ifndef ROAD_CORE_PARALLEL_H
#define ROAD_CORE_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenMP threads a kernel may use (1 without OpenMP). */
int road_omp_threads(void);

/* True when the CPU (and OS) support AVX2 and FMA. */
bool road_cpu_has_avx2_fma(void);

/* Y[rows x out] = X[rows x in] * W[out x in]^T (+ bias[out] if non-NULL), row-major, via BLAS.
 * beta = 0: Y is overwritten. */
void road_sgemm_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                    const float *bias, float *y);
/* dX[rows x in] = dY[rows x out] * W[out x in] (the input gradient of the linear above). */
void road_sgemm_dyw(int64_t rows, int64_t out, int64_t in, const float *dy, const float *w,
                    float *dx);
/* C[m x n] = alpha * op(A) op(B) + beta * C, plain row-major sgemm (op = transpose if set). */
void road_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc);

#endif
