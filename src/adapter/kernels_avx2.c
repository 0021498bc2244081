/*
 * adapter/kernels_avx2.c - RoAd kernels for x86-64 with AVX2, chosen at run time.
 *
 * Compiled with a per-function target attribute (no -mavx2 for the whole build), so the same
 * binary runs on CPUs without AVX2 and only calls these after road__cpu_has_avx2_fma().
 * Three shapes get intrinsics: h a multiple of 8 (both half-groups are whole 8-wide vectors),
 * group_size 8 (half-groups are 4-wide vectors) and group_size 2 (adjacent pairs: swap lanes
 * within pairs and use addsub). Other group sizes use the portable loops. Multiplies and adds stay
 * separate (no FMA), so results are bit-identical to the reference kernels.
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "adapter/kernels.h"

#define AVX2 __attribute__((target("avx2")))

/* Rows are taken AVX2_ROW_BLOCK at a time: each 8-wide piece of the coefficients is loaded
 * into registers once and used for all rows of the block, so coefficient traffic (2 x 4 bytes
 * per feature, 32 KiB at 4096 features: more than L1) drops 8x and the kernel runs at the
 * speed of streaming y. Same operations per element, so still bit-identical. */
#define AVX2_ROW_BLOCK 8

AVX2 static void avx2_forward_h8(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    for (int64_t i0 = 0; i0 < rows; i0 += AVX2_ROW_BLOCK) {
        const int64_t nb = rows - i0 < AVX2_ROW_BLOCK ? rows - i0 : AVX2_ROW_BLOCK;
        float *yb0 = y + i0 * ld;
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            const float *c1a = r->c1 + g0, *c1b = c1a + h, *c2a = r->c2 + g0, *c2b = c2a + h;
            for (int64_t j = 0; j < h; j += 8) {
                const __m256 k1a = _mm256_loadu_ps(c1a + j), k1b = _mm256_loadu_ps(c1b + j);
                const __m256 k2a = _mm256_loadu_ps(c2a + j), k2b = _mm256_loadu_ps(c2b + j);
                for (int64_t i = 0; i < nb; i++) {
                    float *ya = yb0 + i * ld + g0 + j, *yb = ya + h;
                    __m256 va = _mm256_loadu_ps(ya), vb = _mm256_loadu_ps(yb);
                    __m256 na = _mm256_sub_ps(_mm256_mul_ps(k1a, va), _mm256_mul_ps(k2a, vb));
                    __m256 nb2 = _mm256_add_ps(_mm256_mul_ps(k1b, vb), _mm256_mul_ps(k2b, va));
                    _mm256_storeu_ps(ya, na);
                    _mm256_storeu_ps(yb, nb2);
                }
            }
        }
    }
}

/* group_size 8: each half-group is one 4-wide SSE vector; same row blocking. */
AVX2 static void avx2_forward_h4(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    const int64_t D = r->out;
    for (int64_t i0 = 0; i0 < rows; i0 += AVX2_ROW_BLOCK) {
        const int64_t nb = rows - i0 < AVX2_ROW_BLOCK ? rows - i0 : AVX2_ROW_BLOCK;
        float *yb0 = y + i0 * ld;
        for (int64_t g0 = 0; g0 < D; g0 += 8) {
            const __m128 k1a = _mm_loadu_ps(r->c1 + g0), k1b = _mm_loadu_ps(r->c1 + g0 + 4);
            const __m128 k2a = _mm_loadu_ps(r->c2 + g0), k2b = _mm_loadu_ps(r->c2 + g0 + 4);
            for (int64_t i = 0; i < nb; i++) {
                float *ya = yb0 + i * ld + g0, *yb = ya + 4;
                __m128 va = _mm_loadu_ps(ya), vb = _mm_loadu_ps(yb);
                _mm_storeu_ps(ya, _mm_sub_ps(_mm_mul_ps(k1a, va), _mm_mul_ps(k2a, vb)));
                _mm_storeu_ps(yb, _mm_add_ps(_mm_mul_ps(k1b, vb), _mm_mul_ps(k2b, va)));
            }
        }
    }
}

/* group_size 2: lanes (2k, 2k+1) are a pair. y' = addsub(c1*y, c2*swap(y)):
 * even lane c1a*ya - c2a*yb, odd lane c1b*yb + c2b*ya. Rows blocked as above. */
AVX2 static void avx2_forward_g2(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    const int64_t D = r->out, D8 = D / 8 * 8;
    for (int64_t i0 = 0; i0 < rows; i0 += AVX2_ROW_BLOCK) {
        const int64_t nb = rows - i0 < AVX2_ROW_BLOCK ? rows - i0 : AVX2_ROW_BLOCK;
        float *yb0 = y + i0 * ld;
        for (int64_t k = 0; k < D8; k += 8) {
            const __m256 k1 = _mm256_loadu_ps(r->c1 + k), k2 = _mm256_loadu_ps(r->c2 + k);
            for (int64_t i = 0; i < nb; i++) {
                float *yr = yb0 + i * ld + k;
                __m256 v = _mm256_loadu_ps(yr);
                __m256 sw = _mm256_permute_ps(v, 0xB1);
                _mm256_storeu_ps(yr, _mm256_addsub_ps(_mm256_mul_ps(k1, v), _mm256_mul_ps(k2, sw)));
            }
        }
        for (int64_t i = 0; i < nb; i++) {
            float *yr = yb0 + i * ld;
            for (int64_t k = D8; k < D; k += 2) {
                float ya = yr[k], yb = yr[k + 1];
                yr[k] = r->c1[k] * ya - r->c2[k] * yb;
                yr[k + 1] = r->c1[k + 1] * yb + r->c2[k + 1] * ya;
            }
        }
    }
}

static void avx2_forward(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    const int64_t h = r->group_size / 2;
    if (h % 8 == 0) {
        avx2_forward_h8(r, rows, y, ld);
    } else if (h == 4) {
        avx2_forward_h4(r, rows, y, ld);
    } else if (h == 1) {
        avx2_forward_g2(r, rows, y, ld);
    } else {
        road__kernels_generic.forward(r, rows, y, ld);
    }
}


/* Backward, rows blocked like the forward: the coefficients and the 8 double accumulators of
 * an 8-feature piece stay in registers for a block of rows, so neither is re-read per row
 * (2 x 4096 doubles of accumulators are 64 KiB: more than L1). Per feature, rows are still
 * added in increasing order, as in the reference, so the sums are bit-identical. dx may alias
 * dy: each piece of dy is loaded before its dx is stored. */
/* dx alone (no coefficient gradients): a plain pass per row streams best (measured: blocking
 * rows made it slower, 32 concurrent streams being more than the prefetchers follow). */
AVX2 static void avx2_backward_dx_h8(const road_rot *r, int64_t rows, const float *dy,
                                     int64_t lddy, float *dx, int64_t lddx) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    for (int64_t i = 0; i < rows; i++) {
        const float *g = dy + i * lddy;
        float *d = dx + i * lddx;
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            for (int64_t j = 0; j < h; j += 8) {
                const int64_t a = g0 + j, b = a + h;
                const __m256 ga = _mm256_loadu_ps(g + a), gb = _mm256_loadu_ps(g + b);
                _mm256_storeu_ps(d + a, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(r->c1 + a), ga),
                                                      _mm256_mul_ps(_mm256_loadu_ps(r->c2 + b), gb)));
                _mm256_storeu_ps(d + b, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(r->c1 + b), gb),
                                                      _mm256_mul_ps(_mm256_loadu_ps(r->c2 + a), ga)));
            }
        }
    }
}

/* With coefficient gradients: rows blocked so the accumulators stay in registers. */
#define AVX2_BWD_ROW_BLOCK 8

AVX2 static void avx2_backward_h8(const road_rot *r, int64_t rows, const float *x, int64_t ldx,
                                  const float *dy, int64_t lddy, float *dx, int64_t lddx,
                                  double *dc1, double *dc2) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    const bool want_dc = dc1 && x;
    for (int64_t i0 = 0; i0 < rows; i0 += AVX2_BWD_ROW_BLOCK) {
        const int64_t nb = rows - i0 < AVX2_BWD_ROW_BLOCK ? rows - i0 : AVX2_BWD_ROW_BLOCK;
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            for (int64_t j = 0; j < h; j += 8) {
                const int64_t a = g0 + j, b = a + h;
                const __m256 k1a = _mm256_loadu_ps(r->c1 + a), k1b = _mm256_loadu_ps(r->c1 + b);
                const __m256 k2a = _mm256_loadu_ps(r->c2 + a), k2b = _mm256_loadu_ps(r->c2 + b);
                __m256d s1a0 = _mm256_setzero_pd(), s1a1 = s1a0, s2a0 = s1a0, s2a1 = s1a0;
                __m256d s1b0 = s1a0, s1b1 = s1a0, s2b0 = s1a0, s2b1 = s1a0;
                if (want_dc) {
                    s1a0 = _mm256_loadu_pd(dc1 + a), s1a1 = _mm256_loadu_pd(dc1 + a + 4);
                    s2a0 = _mm256_loadu_pd(dc2 + a), s2a1 = _mm256_loadu_pd(dc2 + a + 4);
                    s1b0 = _mm256_loadu_pd(dc1 + b), s1b1 = _mm256_loadu_pd(dc1 + b + 4);
                    s2b0 = _mm256_loadu_pd(dc2 + b), s2b1 = _mm256_loadu_pd(dc2 + b + 4);
                }
                for (int64_t i = i0; i < i0 + nb; i++) {
                    const float *g = dy + i * lddy;
                    const __m256 ga = _mm256_loadu_ps(g + a), gb = _mm256_loadu_ps(g + b);
                    if (want_dc) {
                        const float *xr = x + i * ldx;
                        const __m256 xa = _mm256_loadu_ps(xr + a), xb = _mm256_loadu_ps(xr + b);
                        const __m256d ga0 = _mm256_cvtps_pd(_mm256_castps256_ps128(ga));
                        const __m256d ga1 = _mm256_cvtps_pd(_mm256_extractf128_ps(ga, 1));
                        const __m256d gb0 = _mm256_cvtps_pd(_mm256_castps256_ps128(gb));
                        const __m256d gb1 = _mm256_cvtps_pd(_mm256_extractf128_ps(gb, 1));
                        const __m256d xa0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xa));
                        const __m256d xa1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xa, 1));
                        const __m256d xb0 = _mm256_cvtps_pd(_mm256_castps256_ps128(xb));
                        const __m256d xb1 = _mm256_cvtps_pd(_mm256_extractf128_ps(xb, 1));
                        s1a0 = _mm256_add_pd(s1a0, _mm256_mul_pd(ga0, xa0));
                        s1a1 = _mm256_add_pd(s1a1, _mm256_mul_pd(ga1, xa1));
                        s2a0 = _mm256_sub_pd(s2a0, _mm256_mul_pd(ga0, xb0));
                        s2a1 = _mm256_sub_pd(s2a1, _mm256_mul_pd(ga1, xb1));
                        s1b0 = _mm256_add_pd(s1b0, _mm256_mul_pd(gb0, xb0));
                        s1b1 = _mm256_add_pd(s1b1, _mm256_mul_pd(gb1, xb1));
                        s2b0 = _mm256_add_pd(s2b0, _mm256_mul_pd(gb0, xa0));
                        s2b1 = _mm256_add_pd(s2b1, _mm256_mul_pd(gb1, xa1));
                    }
                    if (dx) {
                        float *d = dx + i * lddx;
                        _mm256_storeu_ps(d + a, _mm256_add_ps(_mm256_mul_ps(k1a, ga), _mm256_mul_ps(k2b, gb)));
                        _mm256_storeu_ps(d + b, _mm256_sub_ps(_mm256_mul_ps(k1b, gb), _mm256_mul_ps(k2a, ga)));
                    }
                }
                if (want_dc) {
                    _mm256_storeu_pd(dc1 + a, s1a0), _mm256_storeu_pd(dc1 + a + 4, s1a1);
                    _mm256_storeu_pd(dc2 + a, s2a0), _mm256_storeu_pd(dc2 + a + 4, s2a1);
                    _mm256_storeu_pd(dc1 + b, s1b0), _mm256_storeu_pd(dc1 + b + 4, s1b1);
                    _mm256_storeu_pd(dc2 + b, s2b0), _mm256_storeu_pd(dc2 + b + 4, s2b1);
                }
            }
        }
    }
}

static void avx2_backward(const road_rot *r, int64_t rows, const float *x, int64_t ldx,
                          const float *dy, int64_t lddy, float *dx, int64_t lddx, double *dc1,
                          double *dc2) {
    const int64_t h = r->group_size / 2;
    if (h % 8 != 0) {
        road__kernels_generic.backward(r, rows, x, ldx, dy, lddy, dx, lddx, dc1, dc2);
    } else if (!(dc1 && x)) {
        if (dx) avx2_backward_dx_h8(r, rows, dy, lddy, dx, lddx);
    } else {
        avx2_backward_h8(r, rows, x, ldx, dy, lddy, dx, lddx, dc1, dc2);
    }
}

const road_kernel_ops road__kernels_avx2 = {"avx2", avx2_forward, avx2_backward};
#else
/* Keep the translation unit non-empty on other architectures (ISO C). */
typedef int road_kernels_avx2_unused;
#endif
