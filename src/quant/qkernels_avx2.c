/*
 * quant/qkernels_avx2.c - AVX2 + FMA kernels of the quantized matmul, chosen at run time.
 *
 * Compiled with a per-function target attribute (no -mavx2 for the whole build), so one binary
 * runs on every x86-64 and calls these only after road__cpu_has_avx2_fma().
 *
 * 4-bit decode: 4 bytes hold 8 codes, element 2i in the high nibble of byte i. The 4 bytes are
 * broadcast to 8 lanes and shifted right by (4, 0, 12, 8, 20, 16, 28, 24), so lane j holds the
 * code of element j in its low 4 bits; the 16-entry table is two 8-float registers looked up
 * with a lane permute each and blended on bit 3. The block's absmax multiplies the 8 weights
 * once, and they are dotted with every row (R accumulators in registers, R a compile-time
 * constant at each call). Rows whose blocks do not line up with rows (cols not a multiple of
 * 64) use the reference kernel.
 *
 * int8: 8 bytes sign-extended to 8 int32 lanes and converted; the row's scale multiplies the
 * finished dot product.
 *
 * bf16 / f16 (a checkpoint's weights kept as stored): 8 weights from 16 bytes, bf16 by
 * zero-extending to 32 bits and shifting into the high half (exactly the stored value), f16
 * with F16C's vcvtph2ps (exact too); then dotted as int8's are.
 *
 * Results differ from the reference by summation order and FMA rounding only
 * (tests/test_quant_kernels.c bounds the difference).
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "quant/quant_internal.h"

#define QAVX2 __attribute__((target("avx2,fma,f16c")))

/* Software prefetch of a weight row: PF_AHEAD bytes ahead, one cache line per 64 bytes read
 * (streams from memory measured 5-25% faster with it; see qkernels_avx512.c). */
#define PF_AHEAD 4096
#define PF_LINE(p) _mm_prefetch((const char *)(p) + PF_AHEAD, _MM_HINT_T0)

QAVX2 static inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* 8 weights from 4 packed bytes: table[code] * a. */
QAVX2 static inline __m256 decode8(const uint8_t *p, __m256 tlo, __m256 thi, __m256i shifts,
                                   __m256 a) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)v), shifts),
                                         _mm256_set1_epi32(0xf));
    const __m256 lo = _mm256_permutevar8x32_ps(tlo, idx);
    const __m256 hi = _mm256_permutevar8x32_ps(thi, idx);
    const __m256 w = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    return _mm256_mul_ps(w, a);
}

#define NIBBLE_SHIFTS _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24)

/* One output row o of a 4-bit tensor for R rows of x; cols % 64 == 0. A accumulators per row
 * (A = 4 for one or two rows, 2 up to four, else 1): one FMA chain per row would wait on the
 * FMA latency every 8 weights, slower than decoding them. */
QAVX2 static inline __attribute__((always_inline)) void
q4_one(const int64_t R, const road_qtensor *q, int64_t o, const float *x, float *y, int64_t ldy) {
    const int64_t A = R <= 2 ? 4 : R <= 4 ? 2 : 1;
    const int64_t K = q->cols, nb = K / ROAD_QBLOCK;
    const __m256 tlo = _mm256_loadu_ps(q->code), thi = _mm256_loadu_ps(q->code + 8);
    const __m256i shifts = NIBBLE_SHIFTS;
    const uint8_t *row = q->data + o * K / 2;
    const int64_t b0 = o * nb;
    __m256 acc[QKERNEL_ROWS][4];
    for (int64_t r = 0; r < R; r++)
        for (int64_t a = 0; a < A; a++) acc[r][a] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256 s = _mm256_set1_ps(q_absmax(q, b0 + b));
        const uint8_t *p = row + b * QBLOCK_BYTES;
        const float *xb = x + b * ROAD_QBLOCK;
        if ((b & 1) == 0) PF_LINE(p);
        for (int j = 0; j < ROAD_QBLOCK / 8; j += (int)A)
            for (int64_t a = 0; a < A; a++) {
                const __m256 w = decode8(p + 4 * (j + a), tlo, thi, shifts, s);
                for (int64_t r = 0; r < R; r++)
                    acc[r][a] =
                        _mm256_fmadd_ps(w, _mm256_loadu_ps(xb + r * K + 8 * (j + a)), acc[r][a]);
            }
    }
    for (int64_t r = 0; r < R; r++) {
        __m256 t = acc[r][0];
        for (int64_t a = 1; a < A; a++) t = _mm256_add_ps(t, acc[r][a]);
        y[r * ldy + o] = hsum(t);
    }
}

/* One output row o of an int8 tensor for R rows of x (A accumulators per row as in q4_one). */
QAVX2 static inline __attribute__((always_inline)) void
q8_one(const int64_t R, const road_qtensor *q, int64_t o, const float *x, float *y, int64_t ldy) {
    const int64_t A = R <= 2 ? 4 : R <= 4 ? 2 : 1;
    const int64_t K = q->cols;
    const int8_t *row = (const int8_t *)q->data + o * K;
    __m256 acc[QKERNEL_ROWS][4];
    for (int64_t r = 0; r < R; r++)
        for (int64_t a = 0; a < A; a++) acc[r][a] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * A <= K; k += 8 * A) {
        if ((k & 63) == 0) PF_LINE(row + k);
        for (int64_t a = 0; a < A; a++) {
            const __m256 w = _mm256_cvtepi32_ps(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + k + 8 * a))));
            for (int64_t r = 0; r < R; r++)
                acc[r][a] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * K + k + 8 * a), acc[r][a]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        const __m256 w =
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + k))));
        for (int64_t r = 0; r < R; r++)
            acc[r][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * K + k), acc[r][0]);
    }
    const float sc = q->absmax[o] / (float)QINT8_MAX;
    for (int64_t r = 0; r < R; r++) {
        __m256 v = acc[r][0];
        for (int64_t a = 1; a < A; a++) v = _mm256_add_ps(v, acc[r][a]);
        float t = hsum(v);
        for (int64_t kk = k; kk < K; kk++) t += x[r * K + kk] * (float)row[kk];
        y[r * ldy + o] = t * sc;
    }
}

/* 8 weights of a bf16 / f16 row at p, widened exactly. */
QAVX2 static inline __m256 half8(const uint16_t *p, bool bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

static inline float half1(uint16_t h, bool bf16) {
    return bf16 ? road_bf16_to_f32(h) : road_f16_to_f32(h);
}

/* One output row o of a bf16 / f16 tensor for R rows of x (A accumulators per row as in
 * q4_one). */
QAVX2 static inline __attribute__((always_inline)) void
q16_one(const int64_t R, const road_qtensor *q, int64_t o, const float *x, float *y, int64_t ldy) {
    const int64_t A = R <= 2 ? 4 : R <= 4 ? 2 : 1;
    const int64_t K = q->cols;
    const bool bf16 = q->format == ROAD_QFORMAT_BF16;
    const uint16_t *row = (const uint16_t *)(const void *)q->data + o * K;
    __m256 acc[QKERNEL_ROWS][4];
    for (int64_t r = 0; r < R; r++)
        for (int64_t a = 0; a < A; a++) acc[r][a] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 * A <= K; k += 8 * A) {
        if ((k & 31) == 0) PF_LINE(row + k);
        for (int64_t a = 0; a < A; a++) {
            const __m256 w = half8(row + k + 8 * a, bf16);
            for (int64_t r = 0; r < R; r++)
                acc[r][a] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * K + k + 8 * a), acc[r][a]);
        }
    }
    for (; k + 8 <= K; k += 8) {
        const __m256 w = half8(row + k, bf16);
        for (int64_t r = 0; r < R; r++)
            acc[r][0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + r * K + k), acc[r][0]);
    }
    for (int64_t r = 0; r < R; r++) {
        __m256 v = acc[r][0];
        for (int64_t a = 1; a < A; a++) v = _mm256_add_ps(v, acc[r][a]);
        float t = hsum(v);
        for (int64_t kk = k; kk < K; kk++) t += x[r * K + kk] * half1(row[kk], bf16);
        y[r * ldy + o] = t;
    }
}

/* The second group's rows, R2 in 1..8, each a compile-time constant for the kernel. */
#define SECOND(FN, q, o, x, y, ldy)                                                                \
    switch (R2) {                                                                                  \
    case 1:                                                                                        \
        FN(1, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    case 2:                                                                                        \
        FN(2, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    case 3:                                                                                        \
        FN(3, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    case 4:                                                                                        \
        FN(4, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    case 5:                                                                                        \
        FN(5, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    case 6:                                                                                        \
        FN(6, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    case 7:                                                                                        \
        FN(7, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    default:                                                                                       \
        FN(8, q, o, x, y, ldy);                                                                    \
        break;                                                                                     \
    }

/* R <= QKERNEL_ROWS: one pass per output row. More rows: each output row for the first
 * QKERNEL_ROWS rows, then again for the rest (its weights are in L1 by then). */
#define QCASE(R, FN)                                                                               \
    case R:                                                                                        \
        for (int64_t o = o0; o < o1; o++) {                                                        \
            FN(R, q, o, x, y, ldy);                                                                \
            if (R2 > 0) SECOND(FN, q, o, x + QKERNEL_ROWS * q->cols, y + QKERNEL_ROWS * ldy, ldy); \
        }                                                                                          \
        break;

QAVX2 static void avx2_xwt(const road_qtensor *q, int64_t R_all, const float *x, int64_t o0,
                           int64_t o1, float *y, int64_t ldy) {
    /* the first group's rows select the case; R2 rows follow in a second pass */
    const int64_t R = R_all > QKERNEL_ROWS ? QKERNEL_ROWS : R_all, R2 = R_all - R;
    if (q_is_half(q->format)) {
        switch (R) {
            QCASE(1, q16_one)
            QCASE(2, q16_one)
            QCASE(3, q16_one)
            QCASE(4, q16_one)
            QCASE(5, q16_one)
            QCASE(6, q16_one)
            QCASE(7, q16_one)
            QCASE(8, q16_one)
        }
        return;
    }
    if (q->format == ROAD_QFORMAT_INT8) {
        switch (R) {
            QCASE(1, q8_one)
            QCASE(2, q8_one)
            QCASE(3, q8_one)
            QCASE(4, q8_one)
            QCASE(5, q8_one)
            QCASE(6, q8_one)
            QCASE(7, q8_one)
            QCASE(8, q8_one)
        }
        return;
    }
    if (q->cols % ROAD_QBLOCK != 0) {
        road__qkernels_reference.xwt(q, R_all, x, o0, o1, y, ldy);
        return;
    }
    switch (R) {
        QCASE(1, q4_one)
        QCASE(2, q4_one)
        QCASE(3, q4_one)
        QCASE(4, q4_one)
        QCASE(5, q4_one)
        QCASE(6, q4_one)
        QCASE(7, q4_one)
        QCASE(8, q4_one)
    }
}

QAVX2 static void avx2_dequant(const road_qtensor *q, int64_t r0, int64_t n, float *out) {
    const int64_t K = q->cols;
    if (q_is_half(q->format)) {
        const bool bf16 = q->format == ROAD_QFORMAT_BF16;
        const uint16_t *src = (const uint16_t *)(const void *)q->data + r0 * K;
        const int64_t N = n * K;
        int64_t e = 0;
        for (; e + 8 <= N; e += 8) _mm256_storeu_ps(out + e, half8(src + e, bf16));
        for (; e < N; e++) out[e] = half1(src[e], bf16);
        return;
    }
    if (q->format == ROAD_QFORMAT_INT8) {
        for (int64_t i = 0; i < n; i++) {
            const int8_t *row = (const int8_t *)q->data + (r0 + i) * K;
            float *o = out + i * K;
            const float s = q->absmax[r0 + i] / (float)QINT8_MAX;
            const __m256 sv = _mm256_set1_ps(s);
            int64_t k = 0;
            for (; k + 8 <= K; k += 8)
                _mm256_storeu_ps(o + k,
                                 _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                   _mm_loadl_epi64((const __m128i *)(row + k)))),
                                               sv));
            for (; k < K; k++) o[k] = (float)row[k] * s;
        }
        return;
    }
    if (K % ROAD_QBLOCK != 0) {
        road__qkernels_reference.dequant(q, r0, n, out);
        return;
    }
    const __m256 tlo = _mm256_loadu_ps(q->code), thi = _mm256_loadu_ps(q->code + 8);
    const __m256i shifts = NIBBLE_SHIFTS;
    const int64_t b0 = r0 * K / ROAD_QBLOCK, nb = n * K / ROAD_QBLOCK;
    const uint8_t *p = q->data + r0 * K / 2;
    for (int64_t b = 0; b < nb; b++) {
        const __m256 a = _mm256_set1_ps(q_absmax(q, b0 + b));
        for (int j = 0; j < ROAD_QBLOCK / 8; j++)
            _mm256_storeu_ps(out + b * ROAD_QBLOCK + 8 * j,
                             decode8(p + b * QBLOCK_BYTES + 4 * j, tlo, thi, shifts, a));
    }
}

const road_qkernel_ops road__qkernels_avx2 = {"avx2", avx2_xwt, avx2_dequant, NULL, NULL};
#endif
