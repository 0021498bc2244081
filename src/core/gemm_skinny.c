/*
 * core/gemm_skinny.c - y = x W^T (+ b) for a few rows of x: the decode-time matmul.
 *
 * With one to a few rows, the work is reading W once; OpenBLAS's sgemm packs W first (reading
 * and writing it again), which halves decode speed. Here each output feature's weight row is
 * streamed once and dotted with every row of x (which stays in cache), split over threads by
 * output feature. The AVX2 + FMA version is chosen at run time; the portable one is the
 * reference it is tested against (tests/test_core.c).
 */
#include "core/parallel.h"
#include "core/skinny.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define SK_AVX2 __attribute__((target("avx2,fma")))

/* One output feature for R rows; R is a compile-time constant at every call (see the switch
 * below), so the R accumulators live in registers. */
SK_AVX2 static inline __attribute__((always_inline)) void
skinny_one(const int64_t R, int64_t o, int64_t out, int64_t in, const float *x, const float *w,
           const float *bias, float *y) {
    const float *wr = w + o * in;
    __m256 acc[ROAD_SKINNY_MAX_ROWS];
    for (int64_t r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= in; k += 8) {
        __m256 wv = _mm256_loadu_ps(wr + k);
        for (int64_t r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * in + k), wv, acc[r]);
    }
    for (int64_t r = 0; r < R; r++) {
        __m128 lo = _mm256_castps256_ps128(acc[r]), hi = _mm256_extractf128_ps(acc[r], 1);
        __m128 s = _mm_add_ps(lo, hi);
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        float t = _mm_cvtss_f32(s);
        for (int64_t kk = k; kk < in; kk++) t += x[r * in + kk] * wr[kk];
        y[r * out + o] = bias ? t + bias[o] : t;
    }
}

#define SK_CASE(R)                                                                                 \
    case R:                                                                                        \
        for (int64_t o = o0; o < o1; o++) skinny_one(R, o, out, in, x, w, bias, y);                \
        break;

SK_AVX2 static void skinny_avx2(int64_t rows, int64_t out, int64_t in, const float *x,
                                const float *w, const float *bias, float *y) {
    int nt = out * in >= (1 << 16) ? road_omp_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        const int64_t o0 = out * t / nt, o1 = out * (t + 1) / nt;
        switch (rows) {
            SK_CASE(1)
            SK_CASE(2)
            SK_CASE(3)
            SK_CASE(4)
            SK_CASE(5)
            SK_CASE(6)
            SK_CASE(7)
            SK_CASE(8)
        }
    }
}
#endif

void road_skinny_reference(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                           const float *bias, float *y) {
#pragma omp parallel for schedule(static) if (out * in >= (1 << 16))
    for (int64_t o = 0; o < out; o++) {
        const float *wr = w + o * in;
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * in;
            float t = 0.0f;
            for (int64_t k = 0; k < in; k++) t += xr[k] * wr[k];
            y[r * out + o] = bias ? t + bias[o] : t;
        }
    }
}

void road_skinny_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                     const float *bias, float *y) {
#if defined(__x86_64__)
    if (road_cpu_has_avx2_fma()) {
        skinny_avx2(rows, out, in, x, w, bias, y);
        return;
    }
#endif
    road_skinny_reference(rows, out, in, x, w, bias, y);
}
