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
        for (int64_t i = 0; i < NO; i++) wv[i] = _mm256_loadu_ps(w + (o + i) * in + k);
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
skinny_features(const int64_t NO, int64_t rows, int64_t o, int64_t out, int64_t in,
                const float *x, const float *w, const float *bias, float *y) {
    for (int64_t r0 = 0; r0 < rows; r0 += SK_TILE_R) {
        switch (rows - r0 < SK_TILE_R ? rows - r0 : SK_TILE_R) {
        case 1: skinny_tile(NO, 1, o, r0, out, in, x, w, bias, y); break;
        case 2: skinny_tile(NO, 2, o, r0, out, in, x, w, bias, y); break;
        case 3: skinny_tile(NO, 3, o, r0, out, in, x, w, bias, y); break;
        default: skinny_tile(NO, 4, o, r0, out, in, x, w, bias, y); break;
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
 * The same tiles in 16-lane registers, 4 features x 4 rows, and two accumulator chains per
 * (row, feature): 16-float chunk j of a row goes to chain j % 2, the two are added at the end
 * (chain 0 + chain 1), then reduced. With one chain, one row was bound by the FMA latency (one
 * 64-byte chunk per FMA latency, ~36 GB/s on one Zen 4 core), not by memory. The end of a row
 * (in % 16) is one more masked chunk of its chain, so every (row, feature) sum is formed the
 * same way whatever the tile and the number of rows (tested). A 4 x 4 tile now holds 32
 * accumulators (a few spill; measured no slower than 4 x 3 or 3 x 4 tiles at 2-8 rows).
 *
 * Multi-feature tiles prefetch each weight stream SK512_PREFETCH bytes ahead; the one-feature
 * pass (one row: batch-1 decode) does not: the hardware prefetcher keeps up with one stream and
 * the extra instructions cost 3-5%.
 *
 * Measured on the Zen 4 dev machine (1 thread, 1 row, 8 x 8192 x 2048 f32 weights, alternating
 * runs, medians of 7-9; a plain read loop 40.3-40.8 GB/s in the same runs): one chain with
 * prefetch 36.2-37.4 GB/s, two chains with prefetch 38.6-38.8, four chains 37.3-38.5, two
 * chains without prefetch 40.0-41.2, 2 features per pass 34-37. Rows 2 / 4 / 8 / 16 (8184
 * features): 2.17 / 2.66 / 3.45 / 4.92 ms one chain, 2.06 / 2.46 / 3.40 / 5.26 two. Before the
 * chains (32768 x 2048): one row 8.1-8.5 ms against AVX2's 8.3-9.0; 2 rows 10.0 vs 13.5 ms, 4
 * rows 10.2 vs 15.7, 8 rows 15.1 vs 22.2, 16 rows 23.7 vs 31.4; prefetch distances 2048 and
 * 4096 bytes measured alike and 3-10% faster than none or 512 for the tiles. */
#define SK512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#define SK512_TILE_O 4
#define SK512_TILE_R 4
#define SK512_CHAINS 2
#define SK512_PREFETCH 2048

/* One 16-float chunk at k (m: its lanes) of the NO x NR tile into chain c. */
SK512 static inline __attribute__((always_inline)) void
skinny512_chunk(const int64_t NO, const int64_t NR, int64_t o, int64_t r0, int64_t in, int64_t k,
                __mmask16 m, const float *x, const float *w,
                __m512 acc[SK512_TILE_O][SK512_TILE_R]) {
    __m512 wv[SK512_TILE_O];
    for (int64_t i = 0; i < NO; i++) {
        if (NO > 1)
            _mm_prefetch((const char *)(w + (o + i) * in + k) + SK512_PREFETCH, _MM_HINT_T0);
        wv[i] = m == 0xffff ? _mm512_loadu_ps(w + (o + i) * in + k)
                            : _mm512_maskz_loadu_ps(m, w + (o + i) * in + k);
    }
    for (int64_t r = 0; r < NR; r++) {
        const __m512 xv = m == 0xffff ? _mm512_loadu_ps(x + (r0 + r) * in + k)
                                      : _mm512_maskz_loadu_ps(m, x + (r0 + r) * in + k);
        for (int64_t i = 0; i < NO; i++) acc[i][r] = _mm512_fmadd_ps(xv, wv[i], acc[i][r]);
    }
}

SK512 static inline __attribute__((always_inline)) void
skinny512_tile(const int64_t NO, const int64_t NR, int64_t o, int64_t r0, int64_t out, int64_t in,
               const float *x, const float *w, const float *bias, float *y) {
    __m512 acc[SK512_CHAINS][SK512_TILE_O][SK512_TILE_R];
    for (int c = 0; c < SK512_CHAINS; c++)
        for (int64_t i = 0; i < NO; i++)
            for (int64_t r = 0; r < NR; r++) acc[c][i][r] = _mm512_setzero_ps();
    const __mmask16 all = (__mmask16)0xffff;
    int64_t k = 0;
    for (; k + 16 * SK512_CHAINS <= in; k += 16 * SK512_CHAINS)
        for (int c = 0; c < SK512_CHAINS; c++)
            skinny512_chunk(NO, NR, o, r0, in, k + 16 * c, all, x, w, acc[c]);
    _Static_assert(SK512_CHAINS == 2, "the end of a row below is written for two chains");
    if (k + 16 <= in) { /* chunk k / 16, even: chain 0 */
        skinny512_chunk(NO, NR, o, r0, in, k, all, x, w, acc[0]);
        k += 16;
    }
    if (k < in) { /* the masked last chunk, chain (k / 16) % 2 (a constant index each way, so
                   * the accumulators stay in registers) */
        const __mmask16 m = (__mmask16)((1u << (in - k)) - 1u);
        if ((k / 16) % 2 == 0) skinny512_chunk(NO, NR, o, r0, in, k, m, x, w, acc[0]);
        else skinny512_chunk(NO, NR, o, r0, in, k, m, x, w, acc[1]);
    }
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < NR; r++) {
            const float t = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][i][r], acc[1][i][r]));
            y[(r0 + r) * out + o + i] = bias ? t + bias[o + i] : t;
        }
}

SK512 static inline __attribute__((always_inline)) void
skinny512_features(const int64_t NO, int64_t rows, int64_t o, int64_t out, int64_t in,
                   const float *x, const float *w, const float *bias, float *y) {
    for (int64_t r0 = 0; r0 < rows; r0 += SK512_TILE_R) {
        switch (rows - r0 < SK512_TILE_R ? rows - r0 : SK512_TILE_R) {
        case 1: skinny512_tile(NO, 1, o, r0, out, in, x, w, bias, y); break;
        case 2: skinny512_tile(NO, 2, o, r0, out, in, x, w, bias, y); break;
        case 3: skinny512_tile(NO, 3, o, r0, out, in, x, w, bias, y); break;
        default: skinny512_tile(NO, 4, o, r0, out, in, x, w, bias, y); break;
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
         * slower at 1 thread; with two chains, 2 streams 34-37 GB/s against 40-41) */
        if (rows > 1)
            for (; o + SK512_TILE_O <= o1; o += SK512_TILE_O)
                skinny512_features(SK512_TILE_O, rows, o, out, in, x, w, bias, y);
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
