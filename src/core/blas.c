/*
 * core/blas.c - the BLAS wrappers: road's sgemm calls and OpenBLAS's thread setting.
 *
 * The only file that includes <cblas.h>. The wrappers take int64_t sizes (road's) and narrow
 * them to BLAS's int once, here.
 */
#include <cblas.h>

#include "core/blas.h"
#include "core/error.h"
#include "core/skinny.h"

void road__sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc) {
    ROAD_ASSERT(m >= 0 && n >= 0 && k >= 0);
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void road__sgemm_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                     const float *bias, float *y) {
    if (rows > 0 && rows <= ROAD_SKINNY_MAX_ROWS) {
        road__skinny_xwt(rows, out, in, x, w, bias, y);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < out; o++) y[r * out + o] = bias[o];
        beta = 1.0f;
    }
    road__sgemm(false, true, rows, out, in, 1.0f, x, in, w, in, beta, y, out);
}

void road__sgemm_dyw(int64_t rows, int64_t out, int64_t in, const float *dy, const float *w,
                     float *dx) {
    road__sgemm(false, false, rows, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}

void road__blas_set_threads(int n) {
    openblas_set_num_threads(n < 1 ? 1 : n);
}

int road__blas_threads(void) {
    return openblas_get_num_threads();
}
