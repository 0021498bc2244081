/*
 * quant/qkernels_vnni.c - the int8-activation decode kernel (ROAD_QKERNEL_VNNI_Q8): x rounded
 * to int8 per block of 64 with a float scale, dotted with int8 weights by AVX512-VNNI's
 * vpdpbusd (64 byte products per instruction), as llama.cpp's Q8 activations do. Approximate,
 * so never chosen by AUTO: a program asks for it with road_qkernel_select.
 *
 * Why: the float kernels (qkernels_avx512.c) turn every weight into a float and spend five
 * float operations per 64 weights and row of x; here a block of 64 is one vpdpbusd per row,
 * plus one conversion and one FMA to apply the block's scales.
 *
 * x (packed once per call, x_pack): per row, the block scales s_b = max |x_b| / 127 and the
 * bytes xq + 128 (unsigned, as vpdpbusd's first operand must be), xq = rint(x / s_b) in
 * [-127, 127]. The +128 is taken back exactly in integers: the dot of a block starts from
 * -128 * sum(w), itself one vpdpbusd of the weights with ones.
 *
 * Weights: int8 as stored (the row scale multiplies the finished dot). NF4 / FP4: the 16 table
 * values rounded to int8 steps of max |table| / 127 (one vpshufb looks a code up), times the
 * block's absmax: a second approximation, at most half a step of the absmax per weight. bf16 /
 * f16 tensors and rows that are not whole blocks (cols % 64 != 0) take the exact AVX-512
 * kernel. Dequantization (prefill, training, dx) stays exact.
 *
 * Error against the float kernels, per output: at most sum over blocks of (s_b / 2) sum |w|
 * (x's rounding) plus, 4-bit, (step / 2) absmax_b sum |x| (the table's), plus float rounding;
 * tests/test_quant_matmul.c checks that bound and docs/quant.md gives measured values.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#include "quant/quant_internal.h"

#define QVNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma,f16c")))
#define QVNNI_INLINE QVNNI static inline __attribute__((always_inline))

/* x is rounded to integers in [-QX_MAX, QX_MAX] (symmetric, so +128 fits a byte). */
#define QX_MAX 127
/* The 4-bit table as int8: its values in steps of max |table| / QW_MAX. */
#define QW_MAX 127

/* True when this kernel computes W's products itself (else the AVX-512 float kernel does). */
static bool vnni_takes(const road_qtensor *q) {
    return !q_is_half(q->format) && q->cols % ROAD_QBLOCK == 0;
}

/* Floats per packed row of x: the block scales, then the K bytes. */
static int64_t row_floats(int64_t K) { return K / ROAD_QBLOCK + K / 4; }

QVNNI static int64_t vnni_x_floats(const road_qtensor *q, int64_t R) {
    return vnni_takes(q) ? R * row_floats(q->cols) : 0;
}

/* Per block: scale, then 64 bytes, in the order the weights come in: for 4-bit the high
 * nibbles (even elements) first, then the odd elements; for int8, as stored. */
QVNNI static void vnni_x_pack(const road_qtensor *q, int64_t R, const float *x, float *xp) {
    const int64_t K = q->cols, nb = K / ROAD_QBLOCK;
    const bool q4 = q->format != ROAD_QFORMAT_INT8;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t r = 0; r < R; r++) {
        float *scale = xp + r * row_floats(K);
        uint8_t *bytes = (uint8_t *)(scale + nb);
        for (int64_t b = 0; b < nb; b++) {
            const float *xb = x + r * K + b * ROAD_QBLOCK;
            __m512 v[4];
            for (int j = 0; j < 4; j++) v[j] = _mm512_loadu_ps(xb + 16 * j);
            if (q4) { /* elements 0, 2, .., 62 then 1, 3, .., 63 */
                const __m512 e0 = _mm512_permutex2var_ps(v[0], even, v[1]);
                const __m512 e1 = _mm512_permutex2var_ps(v[2], even, v[3]);
                const __m512 o0 = _mm512_permutex2var_ps(v[0], odd, v[1]);
                const __m512 o1 = _mm512_permutex2var_ps(v[2], odd, v[3]);
                v[0] = e0, v[1] = e1, v[2] = o0, v[3] = o1;
            }
            __m512 m = _mm512_abs_ps(v[0]);
            for (int j = 1; j < 4; j++) m = _mm512_max_ps(m, _mm512_abs_ps(v[j]));
            const float amax = _mm512_reduce_max_ps(m);
            const float inv = amax > 0.0f ? (float)QX_MAX / amax : 0.0f;
            scale[b] = amax / (float)QX_MAX;
            for (int j = 0; j < 4; j++) {
                /* rint (the default rounding mode), clamped against inv's own rounding */
                __m512i iq = _mm512_cvtps_epi32(_mm512_mul_ps(v[j], _mm512_set1_ps(inv)));
                iq = _mm512_max_epi32(_mm512_min_epi32(iq, _mm512_set1_epi32(QX_MAX)),
                                      _mm512_set1_epi32(-QX_MAX));
                _mm_storeu_si128(
                    (__m128i *)(void *)(bytes + b * ROAD_QBLOCK + 16 * j),
                    _mm512_cvtepi32_epi8(_mm512_add_epi32(iq, _mm512_set1_epi32(128))));
            }
        }
    }
}

/* The 64 int8 weights of block b of row o, in x_pack's order; *wscale: what one unit of them
 * is worth (4-bit: step * absmax; int8: 1, the row scale comes last). */
QVNNI_INLINE __m512i block_weights(const bool q4, const road_qtensor *q, int64_t o, int64_t b,
                                   __m512i tab8, float step, float *wscale) {
    const int64_t K = q->cols;
    if (!q4) {
        *wscale = 1.0f;
        return _mm512_loadu_si512((const void *)(q->data + o * K + b * ROAD_QBLOCK));
    }
    *wscale = step * q_absmax(q, o * (K / ROAD_QBLOCK) + b);
    const __m256i p = _mm256_loadu_si256(
        (const __m256i *)(const void *)(q->data + (o * K + b * ROAD_QBLOCK) / 2));
    const __m256i m = _mm256_set1_epi8(0x0f);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(p, 4), m), lo = _mm256_and_si256(p, m);
    return _mm512_shuffle_epi8(tab8, _mm512_inserti64x4(_mm512_castsi256_si512(hi), lo, 1));
}

/* Output row o for R rows of packed x (R a compile-time constant at each call). */
QVNNI_INLINE void vnni_one(const int64_t R, const bool q4, const road_qtensor *q, int64_t o,
                           const float *xp, __m512i tab8, float step, float *y, int64_t ldy) {
    const int64_t K = q->cols, nb = K / ROAD_QBLOCK, rs = row_floats(K);
    const __m512i ones = _mm512_set1_epi8(1);
    __m512 acc[QKERNEL_ROWS];
    for (int64_t r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        float wscale;
        const __m512i w = block_weights(q4, q, o, b, tab8, step, &wscale);
        /* -128 * (sum of each lane's 4 weights): takes back the +128 of x's bytes */
        const __m512i base = _mm512_sub_epi32(
            _mm512_setzero_si512(),
            _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w), 7));
        for (int64_t r = 0; r < R; r++) {
            const float *sr = xp + r * rs;
            const uint8_t *xb = (const uint8_t *)(sr + nb) + b * ROAD_QBLOCK;
            const __m512i d = _mm512_dpbusd_epi32(base, _mm512_loadu_si512((const void *)xb), w);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(sr[b] * wscale), acc[r]);
        }
    }
    const float sc = q4 ? 1.0f : q->absmax[o] / (float)QINT8_MAX;
    for (int64_t r = 0; r < R; r++) y[r * ldy + o] = _mm512_reduce_add_ps(acc[r]) * sc;
}

QVNNI static void vnni_xwt(const road_qtensor *q, int64_t R_all, const float *x, int64_t o0,
                           int64_t o1, float *y, int64_t ldy) {
    if (!vnni_takes(q)) {
        road__qkernels_avx512.xwt(q, R_all, x, o0, o1, y, ldy);
        return;
    }
    const bool q4 = q->format != ROAD_QFORMAT_INT8;
    float step = 0.0f;
    int8_t t8[16] = {0};
    if (q4) {
        float tmax = 0.0f;
        for (int c = 0; c < 16; c++) tmax = fmaxf(tmax, fabsf(q->code[c]));
        step = tmax / (float)QW_MAX;
        for (int c = 0; c < 16 && tmax > 0.0f; c++)
            t8[c] = (int8_t)lrintf(q->code[c] * ((float)QW_MAX / tmax));
    }
    const __m512i tab8 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)t8));
    const int64_t rs = row_floats(q->cols);
    for (int64_t o = o0; o < o1; o++)
        for (int64_t r0 = 0; r0 < R_all; r0 += QKERNEL_ROWS) {
            const float *xg = x + r0 * rs;
            float *yg = y + r0 * ldy;
            switch (R_all - r0 < QKERNEL_ROWS ? R_all - r0 : QKERNEL_ROWS) {
            case 1: vnni_one(1, q4, q, o, xg, tab8, step, yg, ldy); break;
            case 2: vnni_one(2, q4, q, o, xg, tab8, step, yg, ldy); break;
            case 3: vnni_one(3, q4, q, o, xg, tab8, step, yg, ldy); break;
            case 4: vnni_one(4, q4, q, o, xg, tab8, step, yg, ldy); break;
            case 5: vnni_one(5, q4, q, o, xg, tab8, step, yg, ldy); break;
            case 6: vnni_one(6, q4, q, o, xg, tab8, step, yg, ldy); break;
            case 7: vnni_one(7, q4, q, o, xg, tab8, step, yg, ldy); break;
            default: vnni_one(8, q4, q, o, xg, tab8, step, yg, ldy); break;
            }
        }
}

static void vnni_dequant(const road_qtensor *q, int64_t r0, int64_t n, float *out) {
    road__qkernels_avx512.dequant(q, r0, n, out);
}

const road_qkernel_ops road__qkernels_vnni_q8 = {"vnni-q8", vnni_xwt, vnni_dequant, vnni_x_floats,
                                                 vnni_x_pack};
#endif

/* ISO C wants at least one declaration in a translation unit (non-x86 builds). */
typedef int road_qkernels_vnni_unused;
