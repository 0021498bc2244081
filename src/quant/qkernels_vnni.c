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
 * kernel. Prefill (more than 16 rows) runs the int8 GEMM below (road__qvnni_gemm), with the same
 * sums as decode; dequantization (training, dx) stays exact.
 *
 * Error against the float kernels, per output: at most sum over blocks of (s_b / 2) sum |w|
 * (x's rounding) plus, 4-bit, (step / 2) absmax_b sum |x| (the table's), plus float rounding;
 * tests/test_quant_matmul.c checks that bound and docs/quant.md gives measured values.
 */
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <string.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "core/alloc.h"
#include "core/error.h"
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
static int64_t row_floats(int64_t K) {
    return K / ROAD_QBLOCK + K / 4;
}

QVNNI static int64_t vnni_x_floats(const road_qtensor *q, int64_t R) {
    return vnni_takes(q) ? R * row_floats(q->cols) : 0;
}

/* Per block: scale, then 64 bytes, in the order the weights come in: for 4-bit the high
 * nibbles (even elements) first, then the odd elements; for int8, as stored. */
QVNNI static void vnni_x_pack(const road_qtensor *q, int64_t R, const float *x, float *xp) {
    const int64_t K = q->cols, nb = K / ROAD_QBLOCK;
    const bool q4 = q->format != ROAD_QFORMAT_INT8;
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
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
    /* software prefetch of the weight row, as in qkernels_avx512.c: 8 KiB ahead for one row of
     * x, 4 KiB for more; a line per 64 bytes. Not for 4-bit with one row of x, whose decode is
     * bound by the instructions (bench_llamacpp nf4 --int8-activations, 1 thread: decode 1
     * 32 -> 27 tokens/s with it, decode 8 68 -> 83) */
    const char *wrow = (const char *)(q->data + (q4 ? o * K / 2 : o * K));
    const int64_t ahead = R == 1 ? 8192 : 4096;
    for (int64_t b = 0; b < nb; b++) {
        if (!q4 || (R > 1 && (b & 1) == 0))
            _mm_prefetch(wrow + (q4 ? b * QBLOCK_BYTES : b * ROAD_QBLOCK) + ahead, _MM_HINT_T0);
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

/* The 4-bit table in int8 steps, in every 128-bit lane (vpshufb's), and *step, what one step is
 * worth (0 for int8 tensors, which need no table). */
QVNNI static __m512i table8(const road_qtensor *q, float *step) {
    int8_t t8[16] = {0};
    *step = 0.0f;
    if (q->format != ROAD_QFORMAT_INT8) {
        float tmax = 0.0f;
        for (int c = 0; c < 16; c++) tmax = fmaxf(tmax, fabsf(q->code[c]));
        *step = tmax / (float)QW_MAX;
        for (int c = 0; c < 16 && tmax > 0.0f; c++)
            t8[c] = (int8_t)lrintf(q->code[c] * ((float)QW_MAX / tmax));
    }
    return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)t8));
}

QVNNI static void vnni_xwt(const road_qtensor *q, int64_t R_all, const float *x, int64_t o0,
                           int64_t o1, float *y, int64_t ldy) {
    if (!vnni_takes(q)) {
        road__qkernels_avx512.xwt(q, R_all, x, o0, o1, y, ldy);
        return;
    }
    const bool q4 = q->format != ROAD_QFORMAT_INT8;
    float step;
    const __m512i tab8 = table8(q, &step);
    const int64_t rs = row_floats(q->cols);
    for (int64_t o = o0; o < o1; o++)
        for (int64_t r0 = 0; r0 < R_all; r0 += QKERNEL_ROWS) {
            const float *xg = x + r0 * rs;
            float *yg = y + r0 * ldy;
            switch (R_all - r0 < QKERNEL_ROWS ? R_all - r0 : QKERNEL_ROWS) {
            case 1:
                vnni_one(1, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            case 2:
                vnni_one(2, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            case 3:
                vnni_one(3, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            case 4:
                vnni_one(4, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            case 5:
                vnni_one(5, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            case 6:
                vnni_one(6, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            case 7:
                vnni_one(7, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            default:
                vnni_one(8, q4, q, o, xg, tab8, step, yg, ldy);
                break;
            }
        }
}

/* ---- prefill: more than QSKINNY_MAX_ROWS rows of x ---------------------------------------------
 *
 * The same products as vnni_one, blocked for reuse. x is packed once per call (vnni_x_pack, rows
 * split over the threads) and interleaved by groups of QG_NR rows: per group and block, the 4
 * rows' 64 bytes side by side, and their 4 scales. Each thread takes tiles of QG_TILE output rows
 * of W, decodes a tile to int8 once into its own buffer (interleaved by QG_NO output rows the
 * same way, with each block's -128 * sum(w) lanes and scale), and runs every row group of x over
 * it, QG_NO output rows at a time: the register block holds QG_NO x QG_NR accumulators, and per
 * block loads QG_NO weight and QG_NR x vectors from one address each.
 *
 * Each (row of x, output row) pair keeps its own 16-lane float accumulator and takes the blocks
 * in the same order with the same operations as vnni_one (vpdpbusd from the same integer base,
 * convert, FMA with the float product s_x * s_w), reduced by the same _mm512_reduce_add_ps and
 * row scale: a row's outputs are bit-identical to the decode kernel's for that row alone,
 * whatever the number of rows in the call (tested). Cost per (pair, block): vpdpbusd + convert
 * + FMA for 64 products, where dequantized tiles + sgemm spend 4 FMAs (and the dequantization).
 */

/* Output rows per decoded tile: 16 x (64 weight bytes + 64 base bytes) per block, 256 KiB at
 * K 8192, in L2 while all of x passes over it. */
#define QG_TILE 16
/* Register block: QG_NO output rows x QG_NR rows of x = 16 accumulators of the 32 zmm registers,
 * plus QG_NO weight and QG_NR x registers. The scale products of a block are one vector of
 * QG_NO * QG_NR = 16 floats. */
#define QG_NO 4
#define QG_NR 4
/* Blocks per pass over a row group: K 2048 at a time, so that the group's x (4 x 2 KiB) stays in
 * L1 while the tile's 4 register blocks take it in turn; longer rows go in chunks, the 16
 * accumulators of each register block kept in the tile buffer between chunks. */
#define QG_KC 32
_Static_assert(QG_TILE % QG_NO == 0, "a tile is whole register blocks");
_Static_assert(QG_NO *QG_NR == 16, "a block's scale products fill one vector");

bool road__qvnni_gemm_takes(const road_qtensor *q) {
    return vnni_takes(q);
}

/* x packed for the GEMM: G = ceil(R / QG_NR) groups; bytes [G][nb][QG_NR][64], scales
 * [G][nb][QG_NR] (rows past R: zero). */
typedef struct qg_x {
    uint8_t *bytes;
    float *scale;
} qg_x;

/* One thread's tile (QG_TILE / QG_NO groups of output rows): weights [group][nb][QG_NO][64],
 * base lanes [group][nb][QG_NO][16], block scales [group][nb][QG_NO]; scale products of a
 * register block [nb][16]; one row of x as vnni_x_pack writes it (the packing scratch); the
 * accumulators of each register block between chunks of QG_KC blocks [group][16][16]. */
typedef struct qg_tile {
    int8_t *w;
    int32_t *base;
    float *ws, *prod, *xrow, *acc;
} qg_tile;

static size_t qg_tile_bytes(int64_t nb) {
    return (size_t)(QG_TILE * nb) * (ROAD_QBLOCK + 16 * sizeof(int32_t) + sizeof(float)) +
           (size_t)(16 * nb) * sizeof(float) +
           (size_t)row_floats(nb * ROAD_QBLOCK) * sizeof(float) +
           (size_t)(QG_TILE * QG_NR * 16) * sizeof(float);
}

static qg_tile qg_tile_carve(void *mem, int64_t nb) {
    qg_tile t;
    t.w = mem;
    t.base = (int32_t *)(void *)(t.w + QG_TILE * nb * ROAD_QBLOCK);
    t.ws = (float *)(void *)(t.base + QG_TILE * nb * 16);
    t.prod = t.ws + QG_TILE * nb;
    t.xrow = t.prod + 16 * nb;
    t.acc = t.xrow + row_floats(nb * ROAD_QBLOCK);
    return t;
}

/* Rows [r0, r1) of x packed and interleaved into xg (rows r0, r1 multiples of QG_NR or R). */
QVNNI static void qg_pack(const road_qtensor *q, int64_t R, const float *x, int64_t r0, int64_t r1,
                          const qg_tile *t, const qg_x *xg) {
    const int64_t K = q->cols, nb = K / ROAD_QBLOCK;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / QG_NR, j = r % QG_NR;
        uint8_t *gb = xg->bytes + g * nb * QG_NR * ROAD_QBLOCK;
        float *gs = xg->scale + g * nb * QG_NR;
        if (r < R) {
            vnni_x_pack(q, 1, x + r * K, t->xrow);
            const uint8_t *rb = (const uint8_t *)(t->xrow + nb);
            for (int64_t b = 0; b < nb; b++) {
                memcpy(gb + (b * QG_NR + j) * ROAD_QBLOCK, rb + b * ROAD_QBLOCK, ROAD_QBLOCK);
                gs[b * QG_NR + j] = t->xrow[b];
            }
        } else
            for (int64_t b = 0; b < nb; b++) {
                memset(gb + (b * QG_NR + j) * ROAD_QBLOCK, 0, ROAD_QBLOCK);
                gs[b * QG_NR + j] = 0.0f;
            }
    }
}

/* Output rows [o0, o0 + n) of W decoded into t, as block_weights and vnni_one form them; the
 * rows of the last group past n: zero. */
QVNNI static void qg_decode(const bool q4, const road_qtensor *q, int64_t o0, int64_t n,
                            __m512i tab8, float step, const qg_tile *t) {
    const int64_t nb = q->cols / ROAD_QBLOCK;
    const __m512i ones = _mm512_set1_epi8(1);
    const int64_t n_up = (n + QG_NO - 1) / QG_NO * QG_NO;
    for (int64_t i = 0; i < n_up; i++) {
        const int64_t g = i / QG_NO, j = i % QG_NO;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t at = (g * nb + b) * QG_NO + j;
            __m512i w = _mm512_setzero_si512();
            t->ws[at] = 0.0f;
            if (i < n) w = block_weights(q4, q, o0 + i, b, tab8, step, &t->ws[at]);
            _mm512_storeu_si512((void *)(t->w + at * ROAD_QBLOCK), w);
            _mm512_storeu_si512(
                (void *)(t->base + at * 16),
                _mm512_sub_epi32(
                    _mm512_setzero_si512(),
                    _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, w), 7)));
        }
    }
}

/* Blocks [b0, b1) of y[r, o + i] for NR rows of x group xb / xs and NO decoded rows of tile
 * group g; NO and NR are compile-time constants at each call. The accumulators start from zero
 * (b0 == 0) or from acc_io, and end in y (b1 == nb; sc[i]: the row scale of output o + i) or
 * in acc_io: a chunk of blocks at a time, each lane's sum is the same sequence of FMAs. */
QVNNI_INLINE void qg_micro(const int NO, const int NR, int64_t nb, int64_t b0, int64_t b1,
                           const qg_tile *t, int64_t g, const uint8_t *xb, const float *xs,
                           float *acc_io, const float *sc, float *y, int64_t ldy, int64_t o) {
    const int8_t *wg = t->w + g * nb * QG_NO * ROAD_QBLOCK;
    const int32_t *bg = t->base + g * nb * QG_NO * 16;
    const float *sg = t->ws + g * nb * QG_NO;
    /* lane i * QG_NR + r: s_x(r) * s_w(i), the product vnni_one forms */
    const __m512i lane_i = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t b = b0; b < b1; b++) {
        const __m512 sx = _mm512_broadcast_f32x4(_mm_loadu_ps(xs + b * QG_NR));
        const __m512 sw =
            _mm512_permutexvar_ps(lane_i, _mm512_broadcast_f32x4(_mm_loadu_ps(sg + b * QG_NO)));
        _mm512_storeu_ps(t->prod + b * 16, _mm512_mul_ps(sx, sw));
    }
    __m512 acc[QG_NO][QG_NR];
    for (int i = 0; i < NO; i++)
        for (int r = 0; r < NR; r++)
            acc[i][r] =
                b0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(acc_io + (i * QG_NR + r) * 16);
    for (int64_t b = b0; b < b1; b++) {
        const int8_t *wb = wg + b * QG_NO * ROAD_QBLOCK;
        const int32_t *bb = bg + b * QG_NO * 16;
        const uint8_t *xbb = xb + b * QG_NR * ROAD_QBLOCK;
        const float *p = t->prod + b * 16;
        __m512i xv[QG_NR];
        for (int r = 0; r < NR; r++)
            xv[r] = _mm512_loadu_si512((const void *)(xbb + r * ROAD_QBLOCK));
        for (int i = 0; i < NO; i++) {
            const __m512i w = _mm512_loadu_si512((const void *)(wb + i * ROAD_QBLOCK));
            const __m512i base = _mm512_loadu_si512((const void *)(bb + i * 16));
            for (int r = 0; r < NR; r++) {
                const __m512i d = _mm512_dpbusd_epi32(base, xv[r], w);
                acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(p[i * QG_NR + r]),
                                            acc[i][r]);
            }
        }
    }
    for (int i = 0; i < NO; i++)
        for (int r = 0; r < NR; r++) {
            if (b1 == nb)
                y[r * ldy + o + i] = _mm512_reduce_add_ps(acc[i][r]) * sc[i];
            else
                _mm512_storeu_ps(acc_io + (i * QG_NR + r) * 16, acc[i][r]);
        }
}

#define QG_CASE(no, nr)                                                                            \
    case (no)*8 + (nr):                                                                            \
        qg_micro(no, nr, nb, b0, b1, t, i0 / QG_NO, xb, xs, acc_io, sc, yr, O, o);                 \
        break;

/* Tiles [t0, t1) of W against all R rows of packed x. */
QVNNI static void qg_run(const road_qtensor *q, int64_t R, const qg_x *xg, int64_t t0, int64_t t1,
                         const qg_tile *t, float *y) {
    const int64_t O = q->rows, nb = q->cols / ROAD_QBLOCK;
    const bool q4 = q->format != ROAD_QFORMAT_INT8;
    float step;
    const __m512i tab8 = table8(q, &step);
    for (int64_t ti = t0; ti < t1; ti++) {
        const int64_t ot = ti * QG_TILE, n = O - ot < QG_TILE ? O - ot : QG_TILE;
        qg_decode(q4, q, ot, n, tab8, step, t);
        for (int64_t r0 = 0; r0 < R; r0 += QG_NR) {
            const int nr = (int)(R - r0 < QG_NR ? R - r0 : QG_NR);
            const uint8_t *xb = xg->bytes + r0 * nb * ROAD_QBLOCK;
            const float *xs = xg->scale + r0 * nb;
            float *yr = y + r0 * O;
            for (int64_t b0 = 0; b0 < nb; b0 += QG_KC) {
                const int64_t b1 = nb - b0 < QG_KC ? nb : b0 + QG_KC;
                for (int64_t i0 = 0; i0 < n; i0 += QG_NO) {
                    const int no = (int)(n - i0 < QG_NO ? n - i0 : QG_NO);
                    const int64_t o = ot + i0;
                    float *acc_io = t->acc + i0 / QG_NO * QG_NO * QG_NR * 16;
                    float sc[QG_NO];
                    for (int i = 0; i < no; i++)
                        sc[i] = q4 ? 1.0f : q->absmax[o + i] / (float)QINT8_MAX;
                    switch (no * 8 + nr) {
                        QG_CASE(4, 4)
                        QG_CASE(4, 3)
                        QG_CASE(4, 2) QG_CASE(4, 1) QG_CASE(3, 4) QG_CASE(3, 3) QG_CASE(3, 2)
                            QG_CASE(3, 1) QG_CASE(2, 4) QG_CASE(2, 3) QG_CASE(2, 2) QG_CASE(2, 1)
                                QG_CASE(1, 4) QG_CASE(1, 3) QG_CASE(1, 2) QG_CASE(1, 1) default
                            : ROAD_ASSERT(0);
                    }
                }
            }
        }
    }
}

road_status road__qvnni_gemm(const road_qtensor *q, int64_t R, const float *x, float *y, int nt) {
    ROAD_ASSERT(vnni_takes(q));
    const int64_t O = q->rows, K = q->cols, nb = K / ROAD_QBLOCK;
    const int64_t ntiles = (O + QG_TILE - 1) / QG_TILE, G = (R + QG_NR - 1) / QG_NR;
    if (nt > ntiles) nt = (int)ntiles;
    if (nt < 1) nt = 1;
    const size_t tb = qg_tile_bytes(nb);
    qg_x xg;
    xg.bytes = road__malloc((size_t)(G * QG_NR * K) + sizeof(float) * (size_t)(G * QG_NR * nb));
    uint8_t *tiles = road__malloc(tb * (size_t)nt);
    if (!xg.bytes || !tiles) {
        road__free(xg.bytes);
        road__free(tiles);
        return ROAD_ERR_NO_MEMORY;
    }
    xg.scale = (float *)(void *)(xg.bytes + G * QG_NR * K);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#if defined(_OPENMP)
        const int th = omp_get_thread_num(), nth = omp_get_num_threads();
#else
        const int th = 0, nth = 1;
#endif
        const qg_tile t = qg_tile_carve(tiles + tb * (size_t)th, nb);
        const int64_t g0 = G * th / nth, g1 = G * (th + 1) / nth;
        if (g1 > g0) qg_pack(q, R, x, g0 * QG_NR, g1 * QG_NR, &t, &xg);
#pragma omp barrier
        const int64_t t0 = ntiles * th / nth, t1 = ntiles * (th + 1) / nth;
        if (t1 > t0) qg_run(q, R, &xg, t0, t1, &t, y);
    }
    road__free(xg.bytes);
    road__free(tiles);
    return ROAD_OK;
}

static void vnni_dequant(const road_qtensor *q, int64_t r0, int64_t n, float *out) {
    road__qkernels_avx512.dequant(q, r0, n, out);
}

const road_qkernel_ops road__qkernels_vnni_q8 = {"vnni-q8", vnni_xwt, vnni_dequant, vnni_x_floats,
                                                 vnni_x_pack};
#endif

/* ISO C wants at least one declaration in a translation unit (non-x86 builds). */
typedef int road_qkernels_vnni_unused;
