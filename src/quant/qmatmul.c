/*
 * quant/qmatmul.c - the matmuls of a linear layer with a quantized weight, and the reference
 * kernels they are tested against.
 *
 * Decode (up to 16 rows) is bound by reading the weights: the kernel streams the packed weights
 * once, dequantizes them in registers and dots them with every row (as core/gemm_skinny.c does
 * for float weights, which is what makes 4-bit decode faster than float: a quarter of the
 * bytes). Prefill and training (more rows) are bound by arithmetic: tiles of QTILE_ROWS output
 * rows are dequantized into a buffer and handed to sgemm, so the quantized layer runs at
 * nearly sgemm's speed plus one dequantization of W per call. The input gradient dY W goes the
 * same way (tiles of W, accumulated). Under the opt-in int8-activation kernel (VNNI-Q8) the
 * forward of many rows is that kernel's own int8 GEMM instead (qkernels_vnni.c).
 *
 * Kernel choice is per thread (road_qkernel_select) and read in the calling thread: OpenMP
 * workers get the ops pointer, not the thread-local setting.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/blas.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/threads.h"
#include "quant/quant_internal.h"

/* Below this many weights a call stays on one thread (the fork costs more than it saves). */
#define QPAR_MIN_WEIGHTS (1 << 16)

/* ---- reference kernels --------------------------------------------------------------------- */

/* Weights dequantized this many at a time into a stack buffer. */
#define REF_CHUNK 64

static void ref_xwt(const road_qtensor *q, int64_t R, const float *x, int64_t o0, int64_t o1,
                    float *y, int64_t ldy) {
    const int64_t K = q->cols;
    float w[REF_CHUNK];
    for (int64_t o = o0; o < o1; o++) {
        float acc[QSKINNY_MAX_ROWS] = {0};
        for (int64_t k0 = 0; k0 < K; k0 += REF_CHUNK) {
            const int64_t n = K - k0 < REF_CHUNK ? K - k0 : REF_CHUNK;
            road__q_dequant_range(q, o * K + k0, n, w);
            for (int64_t r = 0; r < R; r++) {
                const float *xr = x + r * K + k0;
                float t = acc[r];
                for (int64_t k = 0; k < n; k++) t += xr[k] * w[k];
                acc[r] = t;
            }
        }
        for (int64_t r = 0; r < R; r++) y[r * ldy + o] = acc[r];
    }
}

static void ref_dequant(const road_qtensor *q, int64_t r0, int64_t n, float *out) {
    road__q_dequant_range(q, r0 * q->cols, n * q->cols, out);
}

const road_qkernel_ops road__qkernels_reference = {"reference", ref_xwt, ref_dequant, NULL, NULL};

/* ---- selection ------------------------------------------------------------------------------ */

static _Thread_local road_qkernel tls_qkernel = ROAD_QKERNEL_AUTO;

road_status road_qkernel_select(road_qkernel k) {
    switch (k) {
    case ROAD_QKERNEL_AUTO:
    case ROAD_QKERNEL_REFERENCE:
        break;
    case ROAD_QKERNEL_AVX2:
        if (!road__cpu_has_avx2_fma())
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "road_qkernel_select: this CPU has no AVX2 + FMA + F16C");
        break;
    case ROAD_QKERNEL_AVX512:
        if (!road__cpu_has_avx512())
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "road_qkernel_select: this CPU (or OS) has no AVX-512 F/BW/VL/DQ");
        break;
    case ROAD_QKERNEL_VNNI_Q8:
        if (!road__cpu_has_avx512_vnni())
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "road_qkernel_select: this CPU (or OS) has no AVX-512 VNNI");
        break;
    default:
        return road__error(ROAD_ERR_INVALID_ARG, "road_qkernel_select: unknown kernel %d", (int)k);
    }
    tls_qkernel = k;
    return ROAD_OK;
}

road_qkernel_scope road__qkernel_scope_enter(road_qkernel k) {
    road_qkernel_scope s = {tls_qkernel, k != ROAD_QKERNEL_AUTO};
    if (s.set) tls_qkernel = k;
    return s;
}

void road__qkernel_scope_leave(const road_qkernel_scope *s) {
    if (s->set) tls_qkernel = s->prev;
}

/* road__cpu_has_* are false off x86-64, so selection never reaches an x86 table there. */
const road_qkernel_ops *road__qkernels_current(void) {
    road_qkernel k = tls_qkernel;
    if (k == ROAD_QKERNEL_AUTO)
        k = road__cpu_has_avx512()     ? ROAD_QKERNEL_AVX512
            : road__cpu_has_avx2_fma() ? ROAD_QKERNEL_AVX2
                                       : ROAD_QKERNEL_REFERENCE;
#if defined(__x86_64__)
    if (k == ROAD_QKERNEL_VNNI_Q8) return &road__qkernels_vnni_q8;
    if (k == ROAD_QKERNEL_AVX512) return &road__qkernels_avx512;
    if (k == ROAD_QKERNEL_AVX2) return &road__qkernels_avx2;
#endif
    return &road__qkernels_reference;
}

/* ---- the matmuls ------------------------------------------------------------------------------
 */

static int threads_for(const road_qtensor *q) {
    return q->rows * q->cols >= QPAR_MIN_WEIGHTS ? road_get_num_threads() : 1;
}

/* out [n x K] = rows [r0, r0 + n) dequantized, split over threads by row. */
static void dequant_par(const road_qkernel_ops *ops, const road_qtensor *q, int64_t r0, int64_t n,
                        float *out) {
    int nt = n * q->cols >= QPAR_MIN_WEIGHTS ? road_get_num_threads() : 1;
    if (nt > n) nt = (int)n;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        const int64_t a = n * t / nt, b = n * (t + 1) / nt;
        if (b > a) ops->dequant(q, r0 + a, b - a, out + a * q->cols);
    }
}

static road_status check_mm(const road_qtensor *q, int64_t rows, const void *in, const void *out,
                            const char *fn) {
    if (!q) return road__error(ROAD_ERR_INVALID_ARG, "%s: no tensor", fn);
    if (rows < 0)
        return road__error(ROAD_ERR_SHAPE, "%s: rows must be >= 0, got %lld", fn, (long long)rows);
    if (rows > 0 && (!in || !out))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: NULL input or output", fn);
    return ROAD_OK;
}

/* The many-row matmuls: under the AVX-512 and VNNI kernels one fused dequantize-and-pack GEMM
 * (qgemm_avx512.c); otherwise W (O, K) dequantized QTILE_ROWS rows at a time into one buffer, each
 * tile handed to sgemm. Forward (!grad_input): y (R, O), y[:, tile] = x (R, K) W[tile]^T.
 * Input gradient: dx (R, K) = sum over tiles of dy[:, tile] (R, n) W[tile] (n, K). */
static road_status tiled_mm(const road_qkernel_ops *ops, const road_qtensor *q, int64_t rows,
                            const float *in, float *out, bool grad_input) {
    if (road__qgemm_avx512_takes(ops, q)) return road__qgemm_avx512(q, rows, in, out, grad_input);
    const int64_t O = q->rows, K = q->cols;
    const int64_t tile = O < QTILE_ROWS ? O : QTILE_ROWS;
    float *buf = road__malloc(sizeof(float) * (size_t)(tile * K));
    if (!buf) return ROAD_ERR_NO_MEMORY;
    for (int64_t o0 = 0; o0 < O; o0 += tile) {
        const int64_t n = O - o0 < tile ? O - o0 : tile;
        dequant_par(ops, q, o0, n, buf);
        if (grad_input)
            road__sgemm(false, false, rows, K, n, 1.0f, in + o0, O, buf, K, o0 == 0 ? 0.0f : 1.0f,
                        out, K);
        else
            road__sgemm(false, true, rows, n, K, 1.0f, in, K, buf, K, 0.0f, out + o0, O);
    }
    road__free(buf);
    return ROAD_OK;
}

road_status road_qtensor_xwt(const road_qtensor *q, int64_t rows, const float *x, const float *bias,
                             float *y) {
    road_status st = check_mm(q, rows, x, y, "road_qtensor_xwt");
    if (st != ROAD_OK || rows == 0) return st;
    const road_qkernel_ops *ops = road__qkernels_current();
    const int64_t O = q->rows;
    if (rows <= QSKINNY_MAX_ROWS) {
        const int64_t nxp = ops->x_floats ? ops->x_floats(q, rows) : 0;
        float *xp = NULL;
        if (nxp > 0) {
            xp = road__malloc(sizeof(float) * (size_t)nxp);
            if (!xp) return ROAD_ERR_NO_MEMORY;
            ops->x_pack(q, rows, x, xp);
        }
        const float *xk = xp ? xp : x;
        const int nt = threads_for(q);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int t = 0; t < nt; t++) {
            const int64_t o0 = O * t / nt, o1 = O * (t + 1) / nt;
            if (o1 > o0) ops->xwt(q, rows, xk, o0, o1, y, O);
        }
        road__free(xp);
    } else {
#if defined(__x86_64__)
        /* opt-in int8 activations: its own blocked GEMM rather than exact tiles + sgemm */
        if (ops == &road__qkernels_vnni_q8 && road__qvnni_gemm_takes(q))
            st = road__qvnni_gemm(q, rows, x, y, threads_for(q));
        else
#endif
            st = tiled_mm(ops, q, rows, x, y, false);
        if (st != ROAD_OK) return st;
    }
    if (bias)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < O; o++) y[r * O + o] += bias[o];
    return ROAD_OK;
}

road_status road_qtensor_dyw(const road_qtensor *q, int64_t rows, const float *dy, float *dx) {
    road_status st = check_mm(q, rows, dy, dx, "road_qtensor_dyw");
    if (st != ROAD_OK || rows == 0) return st;
    return tiled_mm(road__qkernels_current(), q, rows, dy, dx, true);
}
