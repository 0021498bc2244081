/*
 * quant/qkernels_avx512.c - AVX-512 kernels of the quantized matmul, chosen at run time.
 *
 * Compiled with a per-function target attribute (no -mavx512f for the whole build), so one
 * binary runs on every x86-64 and calls these only after road__cpu_has_avx512() (F, BW, VL, DQ
 * with the OS saving zmm state). Decode is bound by reading the weights; what AVX-512 buys
 * over qkernels_avx2.c is fewer instructions to turn packed weights into floats, so that one
 * core keeps up with memory:
 *
 * 4-bit: a block's 32 bytes are zero-extended to 32 words, so dword lane m holds bytes 2m and
 * 2m + 1, i.e. the codes of elements 4m .. 4m + 3 at bits 4, 0, 20 and 16. The 16-entry table,
 * already multiplied by the block's absmax, sits in one register; one shift and one vpermps
 * (which reads only an index's low 4 bits, so no mask) per 16 weights give them in "lane
 * order" (vector c, lane m = element 4m + c): 5 shuffles per 64 weights (AVX2 spends 8
 * instructions per 8), the shuffle units being what one core runs out of first. x is packed
 * into the same order once per call (x_pack, before the threads split W). Scaling the table
 * instead of the weights is exact: table[c] * absmax is the product the reference forms.
 *
 * int8: 16 bytes sign-extended to 16 dwords and converted; the row's scale multiplies the
 * finished dot product (as in the AVX2 kernel). bf16: zero-extend and shift into the high
 * half; f16: vcvtph2ps. Both exact, so the products are those of the stored values.
 *
 * Summation order (batch invariance): every (row of x, output row) sum is formed the same way
 * whatever the number of rows in the call, the row group or the output tile it falls in: per
 * step of 64 weights, t = w0 x0 (+ w1 x1 + w2 x2 + w3 x3 by FMA, in order) added to one
 * accumulator, the rest of a row past its last full step (int8 and 16-bit with K % 64 != 0)
 * by masked loads as one more step; then reduced. So a sequence's logits do not depend on its
 * neighbours in a serving batch. 4-bit tensors whose blocks cross rows (cols % 64 != 0) use
 * the reference kernel, as AVX2 does.
 *
 * Results differ from the reference by summation order and FMA rounding only
 * (tests/test_quant_matmul.c bounds the difference).
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "quant/qavx512.h"
#include "quant/quant_internal.h"

/* Weights per step of the dot products: one block of the 4-bit formats, four zmm vectors. */
#define Q512_STEP 64
/* Software prefetch distance in bytes of a weight row: one row of x streams one weight row at a
 * time, and there a distance of 8 KiB measured best; with several rows of x, 2 KiB. */
#define Q512_PREFETCH_ONE 8192
#define Q512_PREFETCH 4096
_Static_assert(ROAD_QBLOCK == Q512_STEP, "a 4-bit block is one step of 4 x 16 lanes");

/* The 64 weights of a block (32 bytes at p) in lane order: w[c] lane m is element 4m + c.
 * Zero-extending bytes to words puts bytes 2m and 2m + 1 in bits 0-7 and 16-23 of dword m,
 * so element 4m is bits 4-7, 4m + 1 bits 0-3, 4m + 2 bits 20-23 and 4m + 3 bits 16-19: one
 * shift each and vpermps (which reads bits 0-3) does the rest. 5 shuffles per 64 weights
 * against 10 for element order, and the shuffle units are what one core runs out of. */
Q512_INLINE void decode64_lanes(const uint8_t *p, __m512 st, __m512 w[4]) {
    const __m512i v = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(const void *)p));
    w[0] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), st);
    w[1] = _mm512_permutexvar_ps(v, st);
    w[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), st);
    w[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), st);
}

/* x for the 4-bit kernel: each block of 64 in lane order (x'[16c + m] = x[4m + c]), the order
 * decode64_lanes gives the weights in, packed once per call (road_qtensor_xwt). */
Q512 static int64_t avx512_x_floats(const road_qtensor *q, int64_t R) {
    return !q_is_half(q->format) && q->format != ROAD_QFORMAT_INT8 && q->cols % ROAD_QBLOCK == 0
               ? R * q->cols
               : 0;
}

Q512 static void avx512_x_pack(const road_qtensor *q, int64_t R, const float *x, float *xp) {
    const int64_t n = R * q->cols; /* a multiple of 64: blocks never straddle rows of x */
    for (int64_t e = 0; e < n; e += ROAD_QBLOCK) {
        const __m512 a0 = _mm512_loadu_ps(x + e), a1 = _mm512_loadu_ps(x + e + 16),
                     a2 = _mm512_loadu_ps(x + e + 32), a3 = _mm512_loadu_ps(x + e + 48);
        for (int c = 0; c < 4; c++) {
            /* lanes 0-7 from (a0, a1), 8-15 from (a2, a3): element 4i + c of the pair */
            const __m512i idx = _mm512_add_epi32(
                _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28),
                _mm512_set1_epi32(c));
            const __m512 lo = _mm512_permutex2var_ps(a0, idx, a1);
            const __m512 hi = _mm512_permutex2var_ps(a2, idx, a3);
            _mm512_storeu_ps(xp + e + 16 * c, _mm512_mask_blend_ps(0xff00, lo, hi));
        }
    }
}

/* The 64 weights of step s of output row o (4-bit: block s of the row in lane order, x
 * packed to match; cols % 64 == 0). */
Q512_INLINE void step_weights(const int F, const road_qtensor *q, const void *row, int64_t o,
                              int64_t s, __m512 tab, __m512 w[4]) {
    if (F == W_Q4) {
        const __m512 st = _mm512_mul_ps(tab, _mm512_set1_ps(q_absmax(q, o * (q->cols / 64) + s)));
        decode64_lanes((const uint8_t *)row + s * QBLOCK_BYTES, st, w);
        return;
    }
    for (int j = 0; j < 4; j++) w[j] = wload(F, row, s * Q512_STEP + 16 * j);
}

/* Row o of W: its packed bytes. */
Q512_INLINE const void *w_row(const int F, const road_qtensor *q, int64_t o) {
    const int64_t K = q->cols;
    if (F == W_Q4) return q->data + o * K / 2;
    if (F == W_INT8) return q->data + o * K;
    return (const uint16_t *)(const void *)q->data + o * K;
}

/* Output rows o .. o + NO - 1 (NO <= 2) for R rows of x (both compile-time constants at each
 * call). Each step decodes the NO rows' weights once and dots them with every row of x, so a
 * load of x feeds NO products: with more than one row of x the loads of x (from L2 once K * R
 * floats outgrow L1), not the weights, would bound the kernel. One accumulator per (output
 * row, row of x), a step's four products chained in t before it is added: R = 1 still has
 * NO independent chains of one add per 64 weights, and the sum never depends on NO or R. */
Q512_INLINE void tile(const int F, const int64_t NO, const int64_t R, const road_qtensor *q,
                      int64_t o, const float *x, float *y, int64_t ldy) {
    const int64_t K = q->cols, ns = K / Q512_STEP;
    const void *row[2] = {w_row(F, q, o), w_row(F, q, o + NO - 1)};
    const __m512 tab = F == W_Q4 ? _mm512_loadu_ps(q->code) : _mm512_setzero_ps();
    __m512 acc[2][QKERNEL_ROWS];
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < R; r++) acc[i][r] = _mm512_setzero_ps();
    const int64_t step_bytes = F == W_Q4 ? QBLOCK_BYTES : F == W_INT8 ? Q512_STEP : 2 * Q512_STEP;
    const int64_t ahead = R == 1 ? Q512_PREFETCH_ONE : Q512_PREFETCH;
    for (int64_t s = 0; s < ns; s++) {
        __m512 w[2][4];
        for (int64_t i = 0; i < NO; i++) {
            const char *p = (const char *)row[i] + s * step_bytes + ahead;
            for (int64_t b = 0; b < step_bytes; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
            step_weights(F, q, row[i], o + i, s, tab, w[i]);
        }
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * K + s * Q512_STEP;
            const __m512 x0 = _mm512_loadu_ps(xr), x1 = _mm512_loadu_ps(xr + 16),
                         x2 = _mm512_loadu_ps(xr + 32), x3 = _mm512_loadu_ps(xr + 48);
            for (int64_t i = 0; i < NO; i++) {
                __m512 t = _mm512_mul_ps(w[i][0], x0);
                t = _mm512_fmadd_ps(w[i][1], x1, t);
                t = _mm512_fmadd_ps(w[i][2], x2, t);
                t = _mm512_fmadd_ps(w[i][3], x3, t);
                acc[i][r] = _mm512_add_ps(acc[i][r], t);
            }
        }
    }
    if (F != W_Q4 && K % Q512_STEP != 0) {
        /* the rest of the row, 16 lanes at a time, the last masked: one chain, as a step */
        for (int64_t i = 0; i < NO; i++)
            for (int64_t r = 0; r < R; r++) {
                __m512 t = _mm512_setzero_ps();
                for (int64_t k = ns * Q512_STEP; k < K; k += 16) {
                    const __mmask16 m =
                        K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1u);
                    t = _mm512_fmadd_ps(wload_part(F, row[i], k, m),
                                        _mm512_maskz_loadu_ps(m, x + r * K + k), t);
                }
                acc[i][r] = _mm512_add_ps(acc[i][r], t);
            }
    }
    for (int64_t i = 0; i < NO; i++) {
        const float sc = F == W_INT8 ? q->absmax[o + i] / (float)QINT8_MAX : 1.0f;
        for (int64_t r = 0; r < R; r++) {
            const float t = _mm512_reduce_add_ps(acc[i][r]);
            y[r * ldy + o + i] = F == W_INT8 ? t * sc : t;
        }
    }
}

/* NO output rows at o for every group of up to QKERNEL_ROWS rows of x: the first group, then
 * (the weights in L1 by then) the rest, each group's size a compile-time constant. */
Q512_INLINE void tile_groups(const int F, const int64_t NO, const road_qtensor *q, int64_t R_all,
                             const float *x, int64_t o, float *y, int64_t ldy) {
    for (int64_t r0 = 0; r0 < R_all; r0 += QKERNEL_ROWS) {
        const float *xg = x + r0 * q->cols;
        float *yg = y + r0 * ldy;
        switch (R_all - r0 < QKERNEL_ROWS ? R_all - r0 : QKERNEL_ROWS) {
        case 1:
            tile(F, NO, 1, q, o, xg, yg, ldy);
            break;
        case 2:
            tile(F, NO, 2, q, o, xg, yg, ldy);
            break;
        case 3:
            tile(F, NO, 3, q, o, xg, yg, ldy);
            break;
        case 4:
            tile(F, NO, 4, q, o, xg, yg, ldy);
            break;
        case 5:
            tile(F, NO, 5, q, o, xg, yg, ldy);
            break;
        case 6:
            tile(F, NO, 6, q, o, xg, yg, ldy);
            break;
        case 7:
            tile(F, NO, 7, q, o, xg, yg, ldy);
            break;
        default:
            tile(F, NO, 8, q, o, xg, yg, ldy);
            break;
        }
    }
}

/* Output rows [o0, o1): pairs while more than one row of x, the rest one at a time. */
Q512_INLINE void rows_all(const int F, const road_qtensor *q, int64_t R_all, const float *x,
                          int64_t o0, int64_t o1, float *y, int64_t ldy) {
    int64_t o = o0;
    if (R_all > 1)
        for (; o + 2 <= o1; o += 2) tile_groups(F, 2, q, R_all, x, o, y, ldy);
    for (; o < o1; o++) tile_groups(F, 1, q, R_all, x, o, y, ldy);
}
_Static_assert(QKERNEL_ROWS == 8, "rows_all's switch has a case per group size");

Q512 static void avx512_xwt(const road_qtensor *q, int64_t R, const float *x, int64_t o0,
                            int64_t o1, float *y, int64_t ldy) {
    switch (q->format) {
    case ROAD_QFORMAT_INT8:
        rows_all(W_INT8, q, R, x, o0, o1, y, ldy);
        return;
    case ROAD_QFORMAT_BF16:
        rows_all(W_BF16, q, R, x, o0, o1, y, ldy);
        return;
    case ROAD_QFORMAT_F16:
        rows_all(W_F16, q, R, x, o0, o1, y, ldy);
        return;
    default:
        break;
    }
    if (q->cols % ROAD_QBLOCK != 0) {
        road__qkernels_reference.xwt(q, R, x, o0, o1, y, ldy);
        return;
    }
    rows_all(W_Q4, q, R, x, o0, o1, y, ldy);
}

/* n * K elements of an int8 / bf16 / f16 tensor from row r0 into out, each times its row's
 * scale (int8). */
Q512_INLINE void dequant_dense(const int F, const road_qtensor *q, int64_t r0, int64_t n,
                               float *out) {
    const int64_t K = q->cols;
    for (int64_t i = 0; i < n; i++) {
        const void *row =
            F == W_INT8 ? (const void *)(q->data + (r0 + i) * K)
                        : (const void *)((const uint16_t *)(const void *)q->data + (r0 + i) * K);
        const __m512 sc = _mm512_set1_ps(F == W_INT8 ? q->absmax[r0 + i] / (float)QINT8_MAX : 1.0f);
        float *o = out + i * K;
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m512 w = wload(F, row, k);
            _mm512_storeu_ps(o + k, F == W_INT8 ? _mm512_mul_ps(w, sc) : w);
        }
        if (k < K) {
            const __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);
            const __m512 w = wload_part(F, row, k, m);
            _mm512_mask_storeu_ps(o + k, m, F == W_INT8 ? _mm512_mul_ps(w, sc) : w);
        }
    }
}

Q512 static void avx512_dequant(const road_qtensor *q, int64_t r0, int64_t n, float *out) {
    switch (q->format) {
    case ROAD_QFORMAT_INT8:
        dequant_dense(W_INT8, q, r0, n, out);
        return;
    case ROAD_QFORMAT_BF16:
        dequant_dense(W_BF16, q, r0, n, out);
        return;
    case ROAD_QFORMAT_F16:
        dequant_dense(W_F16, q, r0, n, out);
        return;
    default:
        break;
    }
    const int64_t K = q->cols;
    if (K % ROAD_QBLOCK != 0) {
        road__qkernels_reference.dequant(q, r0, n, out);
        return;
    }
    const __m512 tab = _mm512_loadu_ps(q->code);
    const __m512i ilo = ILV_LO, ihi = ILV_HI;
    const int64_t b0 = r0 * K / ROAD_QBLOCK, nb = n * K / ROAD_QBLOCK;
    const uint8_t *p = q->data + r0 * K / 2;
    for (int64_t b = 0; b < nb; b++) {
        const __m512 st = _mm512_mul_ps(tab, _mm512_set1_ps(q_absmax(q, b0 + b)));
        __m512 w[4];
        decode32(p + b * QBLOCK_BYTES, st, ilo, ihi, &w[0], &w[1]);
        decode32(p + b * QBLOCK_BYTES + 16, st, ilo, ihi, &w[2], &w[3]);
        for (int j = 0; j < 4; j++) _mm512_storeu_ps(out + b * ROAD_QBLOCK + 16 * j, w[j]);
    }
}

const road_qkernel_ops road__qkernels_avx512 = {"avx512", avx512_xwt, avx512_dequant,
                                                avx512_x_floats, avx512_x_pack};
#endif

/* ISO C wants at least one declaration in a translation unit (non-x86 builds). */
typedef int road_qkernels_avx512_unused;
