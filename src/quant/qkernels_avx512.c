/*
 * quant/qkernels_avx512.c - AVX-512 kernels of the quantized matmul, chosen at run time.
 *
 * Compiled with a per-function target attribute (no -mavx512f for the whole build), so one
 * binary runs on every x86-64 and calls these only after road__cpu_has_avx512() (F, BW, VL, DQ
 * with the OS saving zmm state). Decode is bound by reading the weights; what AVX-512 buys
 * over qkernels_avx2.c is fewer instructions to turn packed weights into floats, so that one
 * core keeps up with memory:
 *
 * 4-bit: a step is a pair of blocks, 64 bytes, one zmm load; dword lane m holds bytes
 * 4m .. 4m + 3, the codes of elements 8m .. 8m + 7 at bits 4, 0, 12, 8, 20, 16, 28, 24. The
 * 16-entry table sits in one register; one shift and one vpermps (which reads only an index's
 * low 4 bits, so no mask) per 16 weights give them in "lane order" (vector c, lane m = element
 * 8m + c, the first block in lanes 0-7): 8 shuffles per 128 weights (AVX2 spends 8
 * instructions per 8), the vector units being what one core runs out of first. x is packed
 * into the same order once per call (x_pack, before the threads split W). The block's absmax
 * is folded in after its products: per pair, t = sum_c table[code] x (in order), then
 * acc += t * (absmax of block 1 in lanes 0-7, of block 2 in 8-15), i.e.
 * sum_b absmax_b (sum_i table[c_i] x_i). That is one FMA per 128 weights instead of scaling
 * the table (a multiply per block) or the weights (one per 16), and measured 8-13% faster than
 * the former kernel (one block per step, 5 shuffles per 64 weights, the table scaled per
 * block); the price is the rounding: the reference forms (table[c] * absmax) * x, this kernel
 * (table[c] * x) * absmax, equal up to one rounding each, so the results differ from the
 * reference by summation order and that (tests/test_quant_matmul.c bounds the difference).
 *
 * int8: 16 bytes sign-extended to 16 dwords and converted; the row's scale multiplies the
 * finished dot product (as in the AVX2 kernel). bf16: zero-extend and shift into the high
 * half; f16: vcvtph2ps. Both exact, so the products are those of the stored values.
 *
 * Summation order (batch invariance): every (row of x, output row) sum is formed the same way
 * whatever the number of rows in the call, the row group or the output tile it falls in: per
 * step of 64 weights (int8, 16-bit), t = w0 x0 (+ w1 x1 + w2 x2 + w3 x3 by FMA, in order)
 * added to one accumulator (4-bit: per pair of blocks, as above), the rest of a row past its last full step (int8 and 16-bit with K % 64 != 0)
 * by masked loads as one more step; then reduced. So a sequence's logits do not depend on its
 * neighbours in a serving batch. 4-bit tensors whose blocks cross rows (cols % 64 != 0) use
 * the reference kernel, as AVX2 does.
 *
 * Results differ from the reference by summation order and FMA rounding only (4-bit: and
 * where the absmax multiplies; tests/test_quant_matmul.c bounds the difference).
 */
#if defined(__x86_64__)
#include <immintrin.h>

#include "quant/qavx512.h"
#include "quant/quant_internal.h"

/* Weights per step of the int8 and 16-bit dot products: four zmm vectors. */
#define Q512_STEP 64
/* Weights per step of the 4-bit dot products: two blocks, 64 bytes, one zmm load. */
#define Q4_PAIR 128
_Static_assert(ROAD_QBLOCK * 2 == Q4_PAIR, "a 4-bit step is a pair of blocks");

/* x for the 4-bit kernel: each pair of blocks (128 elements) in the order decode128_lanes gives
 * the weights in, x'[16c + m] = x[8m + c], each row padded to Q4_PAIR (a row of an odd number
 * of blocks ends in half a pair whose second half is zeros), packed once per call
 * (road_qtensor_xwt). */
Q512_INLINE int64_t q4_row_floats(int64_t K) { return (K + Q4_PAIR - 1) / Q4_PAIR * Q4_PAIR; }

Q512 static int64_t avx512_x_floats(const road_qtensor *q, int64_t R) {
    return !q_is_half(q->format) && q->format != ROAD_QFORMAT_INT8 && q->cols % ROAD_QBLOCK == 0
               ? R * q4_row_floats(q->cols)
               : 0;
}

Q512 static void avx512_x_pack(const road_qtensor *q, int64_t R, const float *x, float *xp) {
    const int64_t K = q->cols, KP = q4_row_floats(K); /* K a multiple of 64 */
    /* output vector c, lanes 4p .. 4p + 3 (m = 4p + i) come from input vectors 2p and 2p + 1:
     * elements 8i + c of that pair of vectors */
    const __m512i idx0 = _mm512_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24);
    for (int64_t r = 0; r < R; r++)
        for (int64_t e = 0; e < KP; e += Q4_PAIR) {
            const float *xe = x + r * K + e;
            const __mmask16 hm = e + Q4_PAIR <= K ? (__mmask16)0xffff : (__mmask16)0; /* half */
            __m512 a[8];
            for (int j = 0; j < 4; j++) a[j] = _mm512_loadu_ps(xe + 16 * j);
            for (int j = 4; j < 8; j++) a[j] = _mm512_maskz_loadu_ps(hm, xe + 16 * j);
            for (int c = 0; c < 8; c++) {
                const __m512i idx = _mm512_add_epi32(idx0, _mm512_set1_epi32(c));
                __m512 v = _mm512_permutex2var_ps(a[0], idx, a[1]);
                v = _mm512_mask_blend_ps(0x00f0, v, _mm512_permutex2var_ps(a[2], idx, a[3]));
                v = _mm512_mask_blend_ps(0x0f00, v, _mm512_permutex2var_ps(a[4], idx, a[5]));
                v = _mm512_mask_blend_ps(0xf000, v, _mm512_permutex2var_ps(a[6], idx, a[7]));
                _mm512_storeu_ps(xp + r * KP + e + 16 * c, v);
            }
        }
}

/* The 128 weights of two consecutive blocks (64 bytes at p; only the first block's 32 when
 * half, the rest read as code 0) as table values, unscaled: w[c] lane m = element 8m + c, the
 * first block in lanes 0-7. Dword m holds bytes 4m .. 4m + 3, i.e. the codes of elements
 * 8m .. 8m + 7 at bits 4, 0, 12, 8, 20, 16, 28, 24; vpermps reads bits 0-3 of each index, so
 * one shift per vector and no mask. */
Q512_INLINE void decode128_lanes(const uint8_t *p, bool half, __m512 tab, __m512 w[8]) {
    const __m512i v = half ? _mm512_maskz_loadu_epi32((__mmask16)0x00ff, p)
                           : _mm512_loadu_si512((const void *)p);
    w[0] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab);
    w[1] = _mm512_permutexvar_ps(v, tab);
    w[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), tab);
    w[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), tab);
    w[4] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), tab);
    w[5] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), tab);
    w[6] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), tab);
    w[7] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), tab);
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
    __m512 acc[2][QKERNEL_ROWS];
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < R; r++) acc[i][r] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        __m512 w[2][4];
        for (int64_t i = 0; i < NO; i++)
            for (int j = 0; j < 4; j++) w[i][j] = wload(F, row[i], s * Q512_STEP + 16 * j);
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
    if (K % Q512_STEP != 0) {
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

/* The 4-bit tile: output rows o .. o + NO - 1 for R rows of x packed by avx512_x_pack (row
 * stride KP). A step is a pair of blocks (the last one half a pair when a row has an odd number
 * of blocks): per (output row, row of x), t = the 8 products table[code] x in order (one mul, 7
 * FMAs), then acc += t * a with a = the first block's absmax in lanes 0-7, the second's in
 * 8-15 (one FMA), i.e. sum_b absmax_b (sum_i table[c_i] x_i), the absmax folded in after each
 * block's products. A double-quantized absmax is decoded here, block by block: decoding a
 * row's absmax into a buffer first (scalar, or 16 at a time with gathers) measured 10-20%
 * slower at one row (the loads then wait on the buffer's stores). */
Q512_INLINE void tile_q4(const int64_t NO, const int64_t R, const road_qtensor *q, int64_t o,
                         const float *x, float *y, int64_t ldy) {
    const int64_t K = q->cols, KP = q4_row_floats(K), nb = K / ROAD_QBLOCK;
    const uint8_t *row[2] = {q->data + o * K / 2, q->data + (o + NO - 1) * K / 2};
    const __m512 tab = _mm512_loadu_ps(q->code);
    __m512 acc[2][QKERNEL_ROWS];
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < R; r++) acc[i][r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        const bool half = b + 1 == nb;
        __m512 w[2][8], a[2];
        for (int64_t i = 0; i < NO; i++) {
            decode128_lanes(row[i] + b * QBLOCK_BYTES, half, tab, w[i]);
            const int64_t g = (o + i) * nb + b; /* block index in the tensor */
            const float a0 = q_absmax(q, g), a1 = half ? 0.0f : q_absmax(q, g + 1);
            a[i] = _mm512_mask_blend_ps((__mmask16)0xff00, _mm512_set1_ps(a0), _mm512_set1_ps(a1));
        }
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x + r * KP + b * ROAD_QBLOCK;
            for (int64_t i = 0; i < NO; i++) {
                __m512 t = _mm512_mul_ps(w[i][0], _mm512_loadu_ps(xr));
                for (int c = 1; c < 8; c++) t = _mm512_fmadd_ps(w[i][c], _mm512_loadu_ps(xr + 16 * c), t);
                acc[i][r] = _mm512_fmadd_ps(t, a[i], acc[i][r]);
            }
        }
    }
    for (int64_t i = 0; i < NO; i++)
        for (int64_t r = 0; r < R; r++) y[r * ldy + o + i] = _mm512_reduce_add_ps(acc[i][r]);
}

/* NO output rows at o for every group of up to QKERNEL_ROWS rows of x: the first group, then
 * (the weights in L1 by then) the rest, each group's size a compile-time constant. */
Q512_INLINE void tile_groups(const int F, const int64_t NO, const road_qtensor *q, int64_t R_all,
                             const float *x, int64_t o, float *y, int64_t ldy) {
    const int64_t xs = F == W_Q4 ? q4_row_floats(q->cols) : q->cols; /* x's row stride */
    for (int64_t r0 = 0; r0 < R_all; r0 += QKERNEL_ROWS) {
        const float *xg = x + r0 * xs;
        float *yg = y + r0 * ldy;
#define Q512_GROUP(n)                                                                              \
    if (F == W_Q4) tile_q4(NO, n, q, o, xg, yg, ldy);                                          \
    else tile(F, NO, n, q, o, xg, yg, ldy)
        switch (R_all - r0 < QKERNEL_ROWS ? R_all - r0 : QKERNEL_ROWS) {
        case 1: Q512_GROUP(1); break;
        case 2: Q512_GROUP(2); break;
        case 3: Q512_GROUP(3); break;
        case 4: Q512_GROUP(4); break;
        case 5: Q512_GROUP(5); break;
        case 6: Q512_GROUP(6); break;
        case 7: Q512_GROUP(7); break;
        default: Q512_GROUP(8); break;
        }
#undef Q512_GROUP
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
    case ROAD_QFORMAT_INT8: rows_all(W_INT8, q, R, x, o0, o1, y, ldy); return;
    case ROAD_QFORMAT_BF16: rows_all(W_BF16, q, R, x, o0, o1, y, ldy); return;
    case ROAD_QFORMAT_F16: rows_all(W_F16, q, R, x, o0, o1, y, ldy); return;
    default: break;
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
        const void *row = F == W_INT8 ? (const void *)(q->data + (r0 + i) * K)
                                      : (const void *)((const uint16_t *)(const void *)q->data +
                                                       (r0 + i) * K);
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
    case ROAD_QFORMAT_INT8: dequant_dense(W_INT8, q, r0, n, out); return;
    case ROAD_QFORMAT_BF16: dequant_dense(W_BF16, q, r0, n, out); return;
    case ROAD_QFORMAT_F16: dequant_dense(W_F16, q, r0, n, out); return;
    default: break;
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
