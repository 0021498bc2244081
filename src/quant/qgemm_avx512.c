/*
 * quant/qgemm_avx512.c - the many-row matmuls of a quantized or 16-bit weight (prefill,
 * training) as one AVX-512 GEMM that dequantizes W while it packs it, chosen at run time.
 *
 * Why: the portable path (qmatmul.c's tiled_mm) dequantizes tiles of W and hands them to
 * OpenBLAS's sgemm, so it runs at whatever kernel OpenBLAS picked; with OPENBLAS_CORETYPE set
 * to an AVX2 core (a user's choice road respects) that is about half of what one AVX-512 core
 * does. This file is a classic blocked GEMM (GotoBLAS / BLIS loop order) whose B operand is W:
 *
 *   C (M, N) += A (M, kc) B (kc, N), K in blocks of GEMM_KC, N in blocks of GEMM_NC,
 *   forward   y  = x  W^T : A = x  (R, K), B = W^T, M = R, N = O, inner K
 *   backward  dx = dy W   : A = dy (R, O), B = W,   M = R, N = K, inner O
 *
 * - A is packed once per call into micro-panels of GEMM_MR rows, k-major ([k][MR]), rows
 *   past M zero, so the micro-kernel broadcasts A's values straight from memory.
 * - B is packed per (N block, K block) into micro-panels of GEMM_NR columns ([k][NR]), each
 *   weight dequantized exactly once per call: forward, 16 rows of W are dequantized (row
 *   segments, the decoders of quant/qavx512.h) into an L1 scratch and turned into panel
 *   order by 16 x 16 in-register transposes; backward, W's rows already are panel rows.
 * - The micro-kernel keeps a GEMM_MR x GEMM_NR tile of C in 28 zmm accumulators: per k, two
 *   loads of B and 14 broadcasts of A feed 28 FMAs.
 * - Threads split N (output columns) in whole micro-panels, so each packs its own B.
 *
 * Exact in the sense of the other kernels: the products are those of the exactly dequantized
 * weights (int8 scaled per row as road__q_dequant_range does) and float32 A, summed in float32;
 * only the order of the sums differs from sgemm's (tests/test_quant_matmul.c bounds it). That
 * order is fixed: each output accumulates k in order within a K block, K blocks in order, so
 * it does not depend on the number of rows, where a row falls in a micro-tile, or the threads.
 * 4-bit tensors whose blocks cross rows (cols % 64 != 0) stay on the tiled sgemm path.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/threads.h"
#include "quant/quant_internal.h"

#if defined(__x86_64__)
#include "quant/qavx512.h"

/* Micro-tile: 14 rows x 32 columns = 28 accumulators, 2 B vectors, broadcasts from memory
 * (31 of the 32 zmm registers). Measured against 8 x 48 and 6 x 64: see bench/README.md. */
#define GEMM_MR 14
#define GEMM_NR 32
/* Inner dimension per block: a B micro-panel (KC x NR floats, 32 KiB) stays in the 48 KiB L1
 * while the A micro-panels stream past it from L2. */
#define GEMM_KC 256
/* Columns per packed B block (NC x KC floats, 128 KiB) and rows of A per pass over it
 * (MC x KC floats, 168 KiB): both stay in a 1 MiB L2 together. */
#define GEMM_NC 128
#define GEMM_MC (12 * GEMM_MR)
/* Rows of W dequantized together before the transposes (forward packing). */
#define GEMM_TR 16
_Static_assert(GEMM_NR == 2 * GEMM_TR, "a B micro-panel is two transposed groups of 16 rows");
_Static_assert(GEMM_NC % GEMM_NR == 0 && GEMM_KC % ROAD_QBLOCK == 0,
               "blocks hold whole micro-panels and whole 4-bit blocks");

/* Floats of per-thread scratch: the B block and the forward packing's row segments. */
#define GEMM_B_FLOATS ((int64_t)GEMM_NC * GEMM_KC)
#define GEMM_T_FLOATS ((int64_t)GEMM_TR * GEMM_KC)

/* ---- packing A ------------------------------------------------------------------------------ */

/* a (M, Kin) row-major into ap: micro-panel p at ap + p * Kin * MR, element (k, i) at k * MR + i
 * is a[(p MR + i), k], rows past M zero. Panels [p0, p1). */
static void pack_a(const float *a, int64_t M, int64_t Kin, float *ap, int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
        float *dst = ap + p * Kin * GEMM_MR;
        const int64_t m = M - p * GEMM_MR < GEMM_MR ? M - p * GEMM_MR : GEMM_MR;
        const float *src = a + p * GEMM_MR * Kin;
        for (int64_t k0 = 0; k0 < Kin; k0 += 64) {
            const int64_t n = Kin - k0 < 64 ? Kin - k0 : 64;
            for (int64_t i = 0; i < GEMM_MR; i++) {
                if (i < m)
                    for (int64_t k = k0; k < k0 + n; k++) dst[k * GEMM_MR + i] = src[i * Kin + k];
                else
                    for (int64_t k = k0; k < k0 + n; k++) dst[k * GEMM_MR + i] = 0.0f;
            }
        }
    }
}

/* ---- packing B (dequantizing W) ------------------------------------------------------------- */

/* Elements [k0, k0 + n) of row o of an int8 / bf16 / f16 W, exactly dequantized, into out,
 * zeros up to the next multiple of 16. */
Q512_INLINE void seg_dense(const int F, const road_qtensor *q, int64_t o, int64_t k0, int64_t n,
                           float *out) {
    const void *row = F == W_INT8
                          ? (const void *)(q->data + o * q->cols)
                          : (const void *)((const uint16_t *)(const void *)q->data + o * q->cols);
    const __m512 sc = _mm512_set1_ps(F == W_INT8 ? q->absmax[o] / (float)QINT8_MAX : 1.0f);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m512 w = wload(F, row, k0 + k);
        _mm512_storeu_ps(out + k, F == W_INT8 ? _mm512_mul_ps(w, sc) : w);
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1u);
        const __m512 w = wload_part(F, row, k0 + k, m);
        _mm512_storeu_ps(out + k, F == W_INT8 ? _mm512_mul_ps(w, sc) : w);
    }
}

/* The same for 4-bit W with cols % 64 == 0, k0 and n multiples of 64 (whole blocks). */
Q512_INLINE void seg_q4(const road_qtensor *q, int64_t o, int64_t k0, int64_t n, float *out) {
    const __m512 tab = _mm512_loadu_ps(q->code);
    const __m512i ilo = ILV_LO, ihi = ILV_HI;
    const int64_t e0 = o * q->cols + k0;
    const uint8_t *p = q->data + e0 / 2;
    for (int64_t b = 0; b < n / ROAD_QBLOCK; b++) {
        const __m512 st = _mm512_mul_ps(tab, _mm512_set1_ps(q_absmax(q, e0 / ROAD_QBLOCK + b)));
        __m512 w[4];
        decode32(p + b * QBLOCK_BYTES, st, ilo, ihi, &w[0], &w[1]);
        decode32(p + b * QBLOCK_BYTES + 16, st, ilo, ihi, &w[2], &w[3]);
        for (int j = 0; j < 4; j++) _mm512_storeu_ps(out + b * ROAD_QBLOCK + 16 * j, w[j]);
    }
}

Q512_INLINE void seg(const int F, const road_qtensor *q, int64_t o, int64_t k0, int64_t n,
                     float *out) {
    if (F == W_Q4)
        seg_q4(q, o, k0, n, out);
    else
        seg_dense(F, q, o, k0, n, out);
}

/* r[i] (row i, 16 columns) becomes r[c] (column c, 16 rows): unpack pairs of rows, then pairs
 * of pairs (each 128-bit lane then holds 4 rows of one column), then two rounds of 128-bit
 * lane shuffles gather a column's 4 lanes. 64 shuffles per 256 floats. */
Q512_INLINE void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int j = 0; j < 16; j += 4) {
        const __m512d a = _mm512_castps_pd(t[j]), b = _mm512_castps_pd(t[j + 1]),
                      c = _mm512_castps_pd(t[j + 2]), d = _mm512_castps_pd(t[j + 3]);
        r[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4j + c], lane L: rows 4j .. 4j + 3 of column 4L + c */
    for (int h = 0; h < 8; h += 4)
        for (int c = 0; c < 4; c++) {
            t[2 * h + c] = _mm512_shuffle_f32x4(r[2 * h + c], r[2 * h + 4 + c], 0x88);
            t[2 * h + 4 + c] = _mm512_shuffle_f32x4(r[2 * h + c], r[2 * h + 4 + c], 0xdd);
        }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
        r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xdd);
    }
}

/* Forward B block: columns [n0, n0 + n) of W^T (rows of W), inner [k0, k0 + kc), into bp:
 * micro-panel j at bp + j * KC * NR, element (k, c) at k * NR + c; columns past O zero. */
Q512_INLINE void pack_b_fwd(const int F, const road_qtensor *q, int64_t n0, int64_t n, int64_t k0,
                            int64_t kc, float *tmp, float *bp) {
    const int64_t O = q->rows, kcp = (kc + 15) & ~(int64_t)15;
    for (int64_t g = 0; g < n; g += GEMM_TR) {
        for (int64_t i = 0; i < GEMM_TR; i++) {
            if (g + i < n && n0 + g + i < O)
                seg(F, q, n0 + g + i, k0, kc, tmp + i * GEMM_KC);
            else
                memset(tmp + i * GEMM_KC, 0, sizeof(float) * (size_t)kcp);
        }
        float *dst = bp + (g / GEMM_NR) * GEMM_KC * GEMM_NR + g % GEMM_NR;
        for (int64_t k = 0; k < kcp; k += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(tmp + i * GEMM_KC + k);
            transpose16(r);
            for (int c = 0; c < 16; c++) _mm512_storeu_ps(dst + (k + c) * GEMM_NR, r[c]);
        }
    }
}

/* Backward B block: columns [n0, n0 + n) of W (K), inner rows [k0, k0 + kc) of W, into bp as
 * above. A panel row is 32 consecutive weights of one row of W: for 4-bit (cols % 64 == 0,
 * n0 a multiple of 32) half a block. */
Q512_INLINE void pack_b_bwd(const int F, const road_qtensor *q, int64_t n0, int64_t n, int64_t k0,
                            int64_t kc, float *bp) {
    const int64_t K = q->cols;
    const __m512 tab = F == W_Q4 ? _mm512_loadu_ps(q->code) : _mm512_setzero_ps();
    const __m512i ilo = ILV_LO, ihi = ILV_HI;
    for (int64_t j = 0; j < n; j += GEMM_NR) {
        float *dst = bp + (j / GEMM_NR) * GEMM_KC * GEMM_NR;
        const int64_t c0 = n0 + j, nc = K - c0 < GEMM_NR ? K - c0 : GEMM_NR;
        for (int64_t k = 0; k < kc; k++) {
            const int64_t o = k0 + k;
            __m512 w0, w1;
            if (F == W_Q4) {
                const int64_t e = o * K + c0;
                const __m512 st = _mm512_mul_ps(tab, _mm512_set1_ps(q_absmax(q, e / ROAD_QBLOCK)));
                decode32(q->data + e / 2, st, ilo, ihi, &w0, &w1);
            } else {
                const void *row =
                    F == W_INT8 ? (const void *)(q->data + o * K)
                                : (const void *)((const uint16_t *)(const void *)q->data + o * K);
                const int64_t n1 = nc > 16 ? nc - 16 : 0;
                w0 = nc >= 16 ? wload(F, row, c0)
                              : wload_part(F, row, c0, (__mmask16)((1u << nc) - 1u));
                w1 = n1 >= 16 ? wload(F, row, c0 + 16)
                     : n1 > 0 ? wload_part(F, row, c0 + 16, (__mmask16)((1u << n1) - 1u))
                              : _mm512_setzero_ps();
                if (F == W_INT8) {
                    const __m512 sc = _mm512_set1_ps(q->absmax[o] / (float)QINT8_MAX);
                    w0 = _mm512_mul_ps(w0, sc), w1 = _mm512_mul_ps(w1, sc);
                }
            }
            _mm512_storeu_ps(dst + k * GEMM_NR, w0);
            _mm512_storeu_ps(dst + k * GEMM_NR + 16, w1);
        }
    }
}

/* ---- the micro-kernel ----------------------------------------------------------------------- */

/* C (m <= MR rows, ldc) (+)= A micro-panel (kc x MR) B micro-panel (kc x NR); columns by the
 * masks (the last panel of N may be partial). add: accumulate onto C (not the first K block). */
Q512 static void kern(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t m,
                      __mmask16 m0, __mmask16 m1, bool add) {
    __m512 acc[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_loadu_ps(b + k * GEMM_NR),
                     b1 = _mm512_loadu_ps(b + k * GEMM_NR + 16);
        const float *ak = a + k * GEMM_MR;
        for (int i = 0; i < GEMM_MR; i++) {
            const __m512 ai = _mm512_set1_ps(ak[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < GEMM_MR; i++) {
        if (i >= m) break;
        float *ci = c + i * ldc;
        if (add) {
            acc[i][0] = _mm512_add_ps(acc[i][0], _mm512_maskz_loadu_ps(m0, ci));
            acc[i][1] = _mm512_add_ps(acc[i][1], _mm512_maskz_loadu_ps(m1, ci + 16));
        }
        _mm512_mask_storeu_ps(ci, m0, acc[i][0]);
        _mm512_mask_storeu_ps(ci + 16, m1, acc[i][1]);
    }
}

/* ---- the driver ----------------------------------------------------------------------------- */

static __mmask16 cols_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* One thread's columns [na, nb) of C (M, N), inner Kin: B blocks packed and multiplied by every
 * A micro-panel, MC rows at a time. */
Q512_INLINE void gemm_cols(const int F, bool grad, const road_qtensor *q, int64_t M, int64_t N,
                           int64_t Kin, const float *ap, int64_t na, int64_t nb, float *c,
                           float *bp, float *tmp) {
    for (int64_t n0 = na; n0 < nb; n0 += GEMM_NC) {
        const int64_t n = nb - n0 < GEMM_NC ? nb - n0 : GEMM_NC;
        for (int64_t k0 = 0; k0 < Kin; k0 += GEMM_KC) {
            const int64_t kc = Kin - k0 < GEMM_KC ? Kin - k0 : GEMM_KC;
            if (grad)
                pack_b_bwd(F, q, n0, n, k0, kc, bp);
            else
                pack_b_fwd(F, q, n0, n, k0, kc, tmp, bp);
            for (int64_t m0 = 0; m0 < M; m0 += GEMM_MC)
                for (int64_t j = 0; j < n; j += GEMM_NR) {
                    const int64_t cols = N - (n0 + j);
                    const __mmask16 m0k = cols_mask(cols), m1k = cols_mask(cols - 16);
                    for (int64_t i = m0; i < M && i < m0 + GEMM_MC; i += GEMM_MR)
                        kern(kc, ap + (i / GEMM_MR) * Kin * GEMM_MR + k0 * GEMM_MR,
                             bp + (j / GEMM_NR) * GEMM_KC * GEMM_NR, c + i * N + n0 + j, N, M - i,
                             m0k, m1k, k0 > 0);
                }
        }
    }
}

Q512 static void gemm_cols_any(bool grad, const road_qtensor *q, int64_t M, int64_t N, int64_t Kin,
                               const float *ap, int64_t na, int64_t nb, float *c, float *bp,
                               float *tmp) {
    switch (q->format) {
    case ROAD_QFORMAT_INT8:
        gemm_cols(W_INT8, grad, q, M, N, Kin, ap, na, nb, c, bp, tmp);
        return;
    case ROAD_QFORMAT_BF16:
        gemm_cols(W_BF16, grad, q, M, N, Kin, ap, na, nb, c, bp, tmp);
        return;
    case ROAD_QFORMAT_F16:
        gemm_cols(W_F16, grad, q, M, N, Kin, ap, na, nb, c, bp, tmp);
        return;
    default:
        gemm_cols(W_Q4, grad, q, M, N, Kin, ap, na, nb, c, bp, tmp);
        return;
    }
}

bool road__qgemm_avx512_takes(const road_qkernel_ops *ops, const road_qtensor *q) {
    return (ops == &road__qkernels_avx512 || ops == &road__qkernels_vnni_q8) &&
           road__cpu_has_avx512() &&
           (q_is_half(q->format) || q->format == ROAD_QFORMAT_INT8 || q->cols % ROAD_QBLOCK == 0);
}

road_status road__qgemm_avx512(const road_qtensor *q, int64_t rows, const float *in, float *out,
                               bool grad_input) {
    ROAD_ASSERT(road__cpu_has_avx512());
    const int64_t M = rows, N = grad_input ? q->cols : q->rows,
                  Kin = grad_input ? q->rows : q->cols;
    const int64_t npa = (M + GEMM_MR - 1) / GEMM_MR, npb = (N + GEMM_NR - 1) / GEMM_NR;
    int nt = road_get_num_threads();
    if (nt > npb) nt = (int)npb;
    if (nt < 1) nt = 1;
    const int64_t per_thread = GEMM_B_FLOATS + GEMM_T_FLOATS;
    float *ap = road__malloc(sizeof(float) * (size_t)(npa * Kin * GEMM_MR));
    float *scratch = road__malloc(sizeof(float) * (size_t)(nt * per_thread));
    if (!ap || !scratch) {
        road__free(ap);
        road__free(scratch);
        return ROAD_ERR_NO_MEMORY;
    }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) pack_a(in, M, Kin, ap, npa * t / nt, npa * (t + 1) / nt);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        const int64_t na = npb * t / nt * GEMM_NR, nb = npb * (t + 1) / nt * GEMM_NR;
        float *bp = scratch + t * per_thread;
        if (nb > na)
            gemm_cols_any(grad_input, q, M, N, Kin, ap, na, nb < N ? nb : N, out, bp,
                          bp + GEMM_B_FLOATS);
    }
    road__free(ap);
    road__free(scratch);
    return ROAD_OK;
}

#else

bool road__qgemm_avx512_takes(const road_qkernel_ops *ops, const road_qtensor *q) {
    (void)ops, (void)q;
    return false;
}

road_status road__qgemm_avx512(const road_qtensor *q, int64_t rows, const float *in, float *out,
                               bool grad_input) {
    (void)q, (void)rows, (void)in, (void)out, (void)grad_input;
    return road__error(ROAD_ERR_UNSUPPORTED, "road__qgemm_avx512: not an x86-64 build");
}

#endif
