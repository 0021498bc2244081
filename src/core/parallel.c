/*
 * core/parallel.c - thread settings, run-time CPU feature detection, BLAS wrappers.
 */
#include <cblas.h>

#include "core/error.h"
#include "core/parallel.h"
#include "core/skinny.h"

void road_set_num_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    openblas_set_num_threads(n);
}

int road_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int road_omp_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

bool road_cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

void road_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                int64_t ldc) {
    ROAD_ASSERT(m >= 0 && n >= 0 && k >= 0);
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void road_sgemm_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                    const float *bias, float *y) {
    if (rows > 0 && rows <= ROAD_SKINNY_MAX_ROWS) {
        road_skinny_xwt(rows, out, in, x, w, bias, y);
        return;
    }
    float beta = 0.0f;
    if (bias) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < out; o++) y[r * out + o] = bias[o];
        beta = 1.0f;
    }
    road_sgemm(false, true, rows, out, in, 1.0f, x, in, w, in, beta, y, out);
}

void road_sgemm_dyw(int64_t rows, int64_t out, int64_t in, const float *dy, const float *w,
                    float *dx) {
    road_sgemm(false, false, rows, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
}
