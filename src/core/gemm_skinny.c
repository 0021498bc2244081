/*
 * core/gemm_skinny.c - y = x W^T (+ b) for a few rows of x: the decode-time matmul.
 *
 * With one to a few rows, the work is reading W once; OpenBLAS's sgemm packs W first (reading
 * and writing it again), which halves decode speed. Here the weight rows are streamed once, a
 * register tile of 3 output features at a time, and dotted with every row of x (which stays in
 * cache), split over threads by output feature. The AVX-512 or AVX2 + FMA version is chosen at
 * run time; the portable one is the reference they are tested against (tests/test_core.c).
 */
#include "core/cpu.h"
#include "core/skinny.h"
#include "core/threads.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define SK_AVX2 __attribute__((target("avx2,fma")))
/* Register tile: 3 output features x 4 rows = 12 accumulators + 3 weight vectors + 1 x. */
#define SK_TILE_O 3
#define SK_TILE_R 4

/* A tile of NO consecutive output features x NR rows (r0..r0+NR-1): NO*NR accumulators, NO
 * weight vectors and one x vector live in the 16 ymm registers (NO <= 3, NR <= 4). NO and NR
 * are compile-time constants at every call (the switches below), so the loops unroll. Each
 * k-step loads NO + NR vectors for NO*NR FMAs: with 3 x 4 the FMA units, not the loads, are the
 * bound (a one-feature tile loads R + 1 vectors for R FMAs and waits on L2 for x). The sum of
 * each (row, feature) is formed in the same order whatever the tile, so results do not depend
 * on the tiling. */
SK_AVX2 static inline __attribute__((always_inline)) void
skinny_tile(const int64_t NO, const int64_t NR, int64_t o, int64_t r0, int64_t out, int64_t in,
            const float *x, const float *w, const float *bias, float *y) {
    __m256 acc[SK_TILE_O][SK_TILE_R];
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < NR; r++) acc[i][r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= in; k += 8) {
        __m256 wv[SK_TILE_O];
        for (int64_t i = 0; i < NO; i++) {
            /* a line every other step: 8 KiB ahead for one stream, 2 KiB for a tile (AVX2
             * kernel timed on the Zen 5-class EPYC: 1 row +14%, 8 rows +31%) */
            if ((k & 15) == 0)
                _mm_prefetch((const char *)(w + (o + i) * in + k) + (NO * NR == 1 ? 8192 : 2048),
                             _MM_HINT_T0);
            wv[i] = _mm256_loadu_ps(w + (o + i) * in + k);
        }
        for (int64_t r = 0; r < NR; r++) {
            const __m256 xv = _mm256_loadu_ps(x + (r0 + r) * in + k);
            for (int64_t i = 0; i < NO; i++) acc[i][r] = _mm256_fmadd_ps(xv, wv[i], acc[i][r]);
        }
    }
    for (int64_t i = 0; i < NO; i++) {
        const float *wr = w + (o + i) * in;
        for (int64_t r = 0; r < NR; r++) {
            const float *xr = x + (r0 + r) * in;
            __m128 lo = _mm256_castps256_ps128(acc[i][r]), hi = _mm256_extractf128_ps(acc[i][r], 1);
            __m128 s = _mm_add_ps(lo, hi);
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            float t = _mm_cvtss_f32(s);
            for (int64_t kk = k; kk < in; kk++) t += xr[kk] * wr[kk];
            y[(r0 + r) * out + o + i] = bias ? t + bias[o + i] : t;
        }
    }
}

/* Every row group of up to SK_TILE_R rows for the NO features at o. */
SK_AVX2 static inline __attribute__((always_inline)) void
skinny_features(const int64_t NO, int64_t rows, int64_t o, int64_t out, int64_t in, const float *x,
                const float *w, const float *bias, float *y) {
    for (int64_t r0 = 0; r0 < rows; r0 += SK_TILE_R) {
        switch (rows - r0 < SK_TILE_R ? rows - r0 : SK_TILE_R) {
        case 1:
            skinny_tile(NO, 1, o, r0, out, in, x, w, bias, y);
            break;
        case 2:
            skinny_tile(NO, 2, o, r0, out, in, x, w, bias, y);
            break;
        case 3:
            skinny_tile(NO, 3, o, r0, out, in, x, w, bias, y);
            break;
        default:
            skinny_tile(NO, 4, o, r0, out, in, x, w, bias, y);
            break;
        }
    }
}

SK_AVX2 void road__skinny_avx2(int64_t rows, int64_t out, int64_t in, const float *x,
                               const float *w, const float *bias, float *y) {
    int nt = out * in >= (1 << 16) ? road_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        const int64_t o0 = out * t / nt, o1 = out * (t + 1) / nt;
        int64_t o = o0;
        /* One row (batch-1 decode) is bound by reading W: one weight stream at a time measured
         * best there (bench_llm decode 85.6 vs 89.2 ms/token with tiles); from two rows on,
         * the tiles win (8-row decode step 314 -> 203 ms). */
        if (rows > 1)
            for (; o + SK_TILE_O <= o1; o += SK_TILE_O)
                skinny_features(SK_TILE_O, rows, o, out, in, x, w, bias, y);
        for (; o < o1; o++) skinny_features(1, rows, o, out, in, x, w, bias, y);
    }
}

/* ---- AVX-512 ----------------------------------------------------------------------------------
 * The same tiles in 16-lane registers: 32 zmm registers hold 4 features x 4 rows (16
 * accumulators + 4 weight vectors + x). The end of a row (in % 16) is one more masked step of
 * the same chain, so every (row, feature) sum is formed the same way whatever the tile. The
 * weight stream is prefetched SK512_PREFETCH bytes ahead of each load.
 *
 * Measured on the Zen 4 dev machine (1 thread, 32768 x 2048 f32 weights, 64-byte aligned rows,
 * alternating runs, medians; a plain read loop reaches 40-41 GB/s there): one row 8.1-8.5 ms
 * against AVX2's 8.3-9.0 (32-33 vs 30-32 GB/s); 2 rows 10.0 vs 13.5 ms, 4 rows 10.2 vs 15.7,
 * 8 rows 15.1 vs 22.2, 16 rows 23.7 vs 31.4. Prefetch distances 2048 and 4096 bytes measured
 * alike and 3-10% faster than none or 512. */
#define SK512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define SK512_TILE_O 4
#define SK512_TILE_R 4
#define SK512_PREFETCH 2048
/* One row of x streams a single weight row at a time; there 8 KiB ahead measured best on a Zen
 * 5-class EPYC (bench_llamacpp f32, 1 thread: decode 6.0-6.5 -> 6.9-7.0 tokens/s; 2 KiB kept
 * for the tiles, whose 8-row decode lost 10% at 8 KiB). */
#define SK512_PREFETCH_ONE 8192

SK512 static inline __attribute__((always_inline)) void
skinny512_tile(const int64_t NO, const int64_t NR, const int64_t PF, int64_t o, int64_t r0,
               int64_t out, int64_t in, const float *x, const float *w, const float *bias,
               float *y) {
    __m512 acc[SK512_TILE_O][SK512_TILE_R];
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < NR; r++) acc[i][r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= in; k += 16) {
        __m512 wv[SK512_TILE_O];
        for (int64_t i = 0; i < NO; i++) {
            _mm_prefetch((const char *)(w + (o + i) * in + k) + PF, _MM_HINT_T0);
            wv[i] = _mm512_loadu_ps(w + (o + i) * in + k);
        }
        for (int64_t r = 0; r < NR; r++) {
            const __m512 xv = _mm512_loadu_ps(x + (r0 + r) * in + k);
            for (int64_t i = 0; i < NO; i++) acc[i][r] = _mm512_fmadd_ps(xv, wv[i], acc[i][r]);
        }
    }
    if (k < in) {
        const __mmask16 m = (__mmask16)((1u << (in - k)) - 1u);
        __m512 wv[SK512_TILE_O];
        for (int64_t i = 0; i < NO; i++) wv[i] = _mm512_maskz_loadu_ps(m, w + (o + i) * in + k);
        for (int64_t r = 0; r < NR; r++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (r0 + r) * in + k);
            for (int64_t i = 0; i < NO; i++) acc[i][r] = _mm512_fmadd_ps(xv, wv[i], acc[i][r]);
        }
    }
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < NR; r++) {
            const float t = _mm512_reduce_add_ps(acc[i][r]);
            y[(r0 + r) * out + o + i] = bias ? t + bias[o + i] : t;
        }
}

SK512 static inline __attribute__((always_inline)) void
skinny512_features(const int64_t NO, int64_t rows, int64_t o, int64_t out, int64_t in,
                   const float *x, const float *w, const float *bias, float *y) {
    for (int64_t r0 = 0; r0 < rows; r0 += SK512_TILE_R) {
        switch (rows - r0 < SK512_TILE_R ? rows - r0 : SK512_TILE_R) {
        case 1:
            skinny512_tile(NO, 1, SK512_PREFETCH, o, r0, out, in, x, w, bias, y);
            break;
        case 2:
            skinny512_tile(NO, 2, SK512_PREFETCH, o, r0, out, in, x, w, bias, y);
            break;
        case 3:
            skinny512_tile(NO, 3, SK512_PREFETCH, o, r0, out, in, x, w, bias, y);
            break;
        default:
            skinny512_tile(NO, 4, SK512_PREFETCH, o, r0, out, in, x, w, bias, y);
            break;
        }
    }
}

SK512 void road__skinny_avx512(int64_t rows, int64_t out, int64_t in, const float *x,
                               const float *w, const float *bias, float *y) {
    int nt = out * in >= (1 << 16) ? road_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        const int64_t o0 = out * t / nt, o1 = out * (t + 1) / nt;
        int64_t o = o0;
        /* one row: one weight stream at a time, as AVX2 (2 or 4 streams measured 5-40%
         * slower at 1 thread) */
        if (rows > 1)
            for (; o + SK512_TILE_O <= o1; o += SK512_TILE_O)
                skinny512_features(SK512_TILE_O, rows, o, out, in, x, w, bias, y);
        if (rows == 1)
            for (; o < o1; o++)
                skinny512_tile(1, 1, SK512_PREFETCH_ONE, o, 0, out, in, x, w, bias, y);
        for (; o < o1; o++) skinny512_features(1, rows, o, out, in, x, w, bias, y);
    }
}
#endif

void road__skinny_reference(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
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

void road__skinny_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                      const float *bias, float *y) {
#if defined(__x86_64__)
    if (road__cpu_has_avx512()) {
        road__skinny_avx512(rows, out, in, x, w, bias, y);
        return;
    }
    if (road__cpu_has_avx2_fma()) {
        road__skinny_avx2(rows, out, in, x, w, bias, y);
        return;
    }
#endif
    road__skinny_reference(rows, out, in, x, w, bias, y);
}
