/*
 * tests/test_quant_matmul.c - the quantized matmuls: y = x W^T + b and dx = dy W with a
 * quantized W, for every kernel (reference, AVX2, AVX-512; those this CPU lacks are skipped
 * with a printed note), the decode path (1..16 rows: fused
 * dequantize + dot) and the tiled sgemm path (more rows), int8 / NF4 / FP4, plain and double
 * quantization, and bf16 / f16 weights kept as stored, sizes that are and are not multiples of the
 * block, 1 and 2 threads; each against double-precision dot products of the dequantized weights;
 * the AVX-512 GEMM of the many-row paths (qgemm_avx512.c) at sizes that cross its blocks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "testutil.h"

/* A float32 dot product of K terms computed in any order (with or without FMA) is within
 * K * 2^-24 * sum |x_k w_k| of the exact value (the standard a-priori bound, gamma_K ~ K u);
 * twice that covers the bias add and the scale multiply of int8. */
#define DOT_ERR_FACTOR 2.0
#define F32_UNIT_ROUNDOFF 5.9604644775390625e-8 /* 2^-24 */

typedef struct shape {
    road_qformat f;
    bool dq;
    int64_t out, in;
} shape;

/* W dequantized by the reference kernel (what every kernel's products must match), then
 * kernel k selected again. */
static void dequant_ref(const road_qtensor *q, float *w, road_qkernel k) {
    TU_OK(road_qkernel_select(ROAD_QKERNEL_REFERENCE));
    TU_OK(road_qtensor_dequantize_rows(q, 0, q->rows, w));
    TU_OK(road_qkernel_select(k));
}

static void check_xwt(const road_qtensor *q, int64_t rows, bool bias, road_qkernel kern,
                      const char *what) {
    const int64_t O = q->rows, K = q->cols;
    float *w = tu_alloc(sizeof(float) * (size_t)(O * K));
    float *x = tu_alloc(sizeof(float) * (size_t)(rows * K));
    float *y = tu_alloc(sizeof(float) * (size_t)(rows * O));
    float *b = tu_alloc(sizeof(float) * (size_t)O);
    dequant_ref(q, w, kern);
    tu_fill_uniform(x, rows * K, (uint64_t)(rows * 31 + K), -1, 1);
    tu_fill_uniform(b, O, 7, -0.5f, 0.5f);
    TU_OK(road_qtensor_xwt(q, rows, x, bias ? b : NULL, y));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < O; o++) {
            double ref = bias ? b[o] : 0.0, mag = bias ? fabs(b[o]) : 0.0;
            for (int64_t k = 0; k < K; k++) {
                ref += (double)x[r * K + k] * w[o * K + k];
                mag += fabs((double)x[r * K + k] * w[o * K + k]);
            }
            const double tol = DOT_ERR_FACTOR * (double)(K + 2) * F32_UNIT_ROUNDOFF * mag + 1e-30;
            if (fabs(y[r * O + o] - ref) > tol) {
                print_error(
                    "%s: rows %lld, y[%lld, %lld] = %.9g, reference %.9g (tolerance %.3g)\n", what,
                    (long long)rows, (long long)r, (long long)o, y[r * O + o], ref, tol);
                fail();
            }
        }
    free(w);
    free(x);
    free(y);
    free(b);
}

static void check_dyw(const road_qtensor *q, int64_t rows, road_qkernel kern, const char *what) {
    const int64_t O = q->rows, K = q->cols;
    float *w = tu_alloc(sizeof(float) * (size_t)(O * K));
    float *dy = tu_alloc(sizeof(float) * (size_t)(rows * O));
    float *dx = tu_alloc(sizeof(float) * (size_t)(rows * K));
    dequant_ref(q, w, kern);
    tu_fill_uniform(dy, rows * O, (uint64_t)(rows + 3 * O), -1, 1);
    TU_OK(road_qtensor_dyw(q, rows, dy, dx));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            double ref = 0.0, mag = 0.0;
            for (int64_t o = 0; o < O; o++) {
                ref += (double)dy[r * O + o] * w[o * K + k];
                mag += fabs((double)dy[r * O + o] * w[o * K + k]);
            }
            const double tol = DOT_ERR_FACTOR * (double)(O + 2) * F32_UNIT_ROUNDOFF * mag + 1e-30;
            if (fabs(dx[r * K + k] - ref) > tol) {
                print_error("%s: dx[%lld, %lld] = %.9g, reference %.9g\n", what, (long long)r,
                            (long long)k, dx[r * K + k], ref);
                fail();
            }
        }
    free(w);
    free(dy);
    free(dx);
}

static const shape SHAPES[] = {
    {ROAD_QFORMAT_NF4, false, 96, 128},  {ROAD_QFORMAT_NF4, true, 300, 192},
    {ROAD_QFORMAT_FP4, false, 33, 256},  {ROAD_QFORMAT_FP4, true, 17, 100},
    {ROAD_QFORMAT_NF4, false, 9, 45},    {ROAD_QFORMAT_INT8, false, 70, 131},
    {ROAD_QFORMAT_INT8, false, 260, 64}, {ROAD_QFORMAT_BF16, false, 70, 131},
    {ROAD_QFORMAT_BF16, false, 260, 64}, {ROAD_QFORMAT_F16, false, 33, 100},
    {ROAD_QFORMAT_F16, false, 129, 256},
};

/* Every kernel road has; each test runs those this CPU supports and prints the others as
 * skipped (a variant the machine lacks is reported, never passed as if tested). */
static const road_qkernel KERNELS[] = {ROAD_QKERNEL_REFERENCE, ROAD_QKERNEL_AVX2,
                                       ROAD_QKERNEL_AVX512};
static const char *const KERNEL_NAMES[] = {"reference", "avx2", "avx512"};
#define N_KERNELS (sizeof KERNELS / sizeof KERNELS[0])

/* Select kernel i; false when this CPU lacks it, with a note unless test is NULL (a note
 * already printed for this test). */
static bool use_kernel(size_t i, const char *test) {
    if (road_qkernel_select(KERNELS[i]) == ROAD_OK) return true;
    if (test)
        print_message("%s: kernel %s skipped: %s\n", test, KERNEL_NAMES[i], road_last_error());
    return false;
}

static void test_xwt_dyw(void **state) {
    (void)state;
    const int64_t rows[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 40};
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const shape *s = &SHAPES[si];
        float *w = tu_alloc(sizeof(float) * (size_t)(s->out * s->in));
        tu_fill_uniform(w, s->out * s->in, si + 1, -0.1f, 0.1f);
        road_qtensor *q = NULL;
        TU_OK(road_qtensor_quantize(s->f, s->out, s->in, w, s->dq, &q));
        for (size_t k = 0; k < N_KERNELS; k++) {
            if (!use_kernel(k, si == 0 ? "xwt/dyw" : NULL)) continue;
            for (int nt = 1; nt <= 2; nt++) {
                road_set_num_threads(nt);
                char what[128];
                snprintf(what, sizeof what, "%s%s %lldx%lld kernel %s threads %d",
                         road_qformat_name(s->f), s->dq ? "+dq" : "", (long long)s->out,
                         (long long)s->in, KERNEL_NAMES[k], nt);
                for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
                    check_xwt(q, rows[ri], ri % 2 == 0, KERNELS[k], what);
                check_dyw(q, 1, KERNELS[k], what);
                check_dyw(q, 13, KERNELS[k], what);
            }
        }
        TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
        road_qtensor_free(q);
        free(w);
    }
    road_set_num_threads(2);
}

/* Each fast kernel against the reference on the same tensor, for every format, rows 1..17 and
 * 40 (the decode path up to 16, the sgemm path past it), K a multiple of the block and odd:
 * both are float32, so they agree to twice the dot-product bound; dequantization is exact, so
 * equal bit for bit. The AVX-512 kernel also sums each row the same way whatever the batch: a
 * row alone gives the bits it gives among 16. */
static void test_fast_vs_reference(void **state) {
    (void)state;
    enum { O = 67, RMAX = 40 };
    const int64_t Ks[] = {512, 131};
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4,  ROAD_QFORMAT_FP4,
                                 ROAD_QFORMAT_FP4,  ROAD_QFORMAT_BF16, ROAD_QFORMAT_F16};
    const bool dqs[] = {false, true, false, true, false, false};
    for (size_t fk = 1; fk < N_KERNELS; fk++) {
        if (!use_kernel(fk, "fast vs reference")) continue;
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            const int64_t K = Ks[ki];
            float *w = tu_alloc(sizeof(float) * (size_t)(O * K));
            float *x = tu_alloc(sizeof(float) * (size_t)(RMAX * K));
            float *ya = tu_alloc(sizeof(float) * RMAX * O),
                  *yr = tu_alloc(sizeof(float) * RMAX * O);
            float *da = tu_alloc(sizeof(float) * (size_t)(O * K));
            float *dr = tu_alloc(sizeof(float) * (size_t)(O * K));
            tu_fill_uniform(w, O * K, 5, -1, 1);
            tu_fill_uniform(x, RMAX * K, 6, -1, 1);
            for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
                road_qtensor *q = NULL;
                TU_OK(road_qtensor_quantize(fmts[i], O, K, w, dqs[i], &q));
                char what[128];
                snprintf(what, sizeof what, "%s vs reference, %s%s, K %lld", KERNEL_NAMES[fk],
                         road_qformat_name(fmts[i]), dqs[i] ? "+dq" : "", (long long)K);
                TU_OK(road_qkernel_select(ROAD_QKERNEL_REFERENCE));
                TU_OK(road_qtensor_dequantize_rows(q, 0, O, dr));
                TU_OK(road_qkernel_select(KERNELS[fk]));
                TU_OK(road_qtensor_dequantize_rows(q, 0, O, da));
                tu_assert_equal_f32(what, da, dr, O * K);
                /* from row 31: with K 512 (8 blocks a row) the kernels' chunks of 16 blocks
                 * straddle nested block 256 */
                TU_OK(road_qtensor_dequantize_rows(q, 31, 5, da));
                tu_assert_equal_f32(what, da, dr + 31 * K, 5 * K);
                for (int nt = 1; nt <= 2; nt++) {
                    road_set_num_threads(nt);
                    for (int64_t R = 1; R <= RMAX; R = R == 17 ? RMAX : R + 1) {
                        TU_OK(road_qkernel_select(KERNELS[fk]));
                        TU_OK(road_qtensor_xwt(q, R, x, NULL, ya));
                        TU_OK(road_qkernel_select(ROAD_QKERNEL_REFERENCE));
                        TU_OK(road_qtensor_xwt(q, R, x, NULL, yr));
                        /* |x|, |w'| <= 1: sum |x w| <= K, so 2 * K * u * K bounds the
                         * difference of the two */
                        tu_assert_close(
                            what, ya, yr, R * O,
                            DOT_ERR_FACTOR * 2.0 * (double)K * F32_UNIT_ROUNDOFF * (double)K, 0.0);
                    }
                }
                if (KERNELS[fk] == ROAD_QKERNEL_AVX512) {
                    TU_OK(road_qkernel_select(KERNELS[fk]));
                    TU_OK(road_qtensor_xwt(q, 16, x, NULL, ya));
                    for (int64_t r = 0; r < 16; r++) {
                        TU_OK(road_qtensor_xwt(q, 1, x + r * K, NULL, yr));
                        tu_assert_equal_f32("avx512: a row alone vs among 16", yr, ya + r * O, O);
                    }
                }
                road_qtensor_free(q);
            }
            free(w), free(x), free(ya), free(yr), free(da), free(dr);
        }
    }
    road_set_num_threads(2);
    TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
}

/* The AVX-512 GEMM of the many-row paths (quant/qgemm_avx512.c: W dequantized into packed
 * panels, 14 x 32 micro-tiles, K in blocks of 256, output columns in blocks of 128 split over
 * threads): every format, rows 17..513 (partial micro-tiles of 14 rows, several row blocks),
 * O = 272 (several column blocks, a partial 32-column panel), K = 320 (two K blocks, the last
 * partial) and K = 200 (no multiple of 16: masked tails; 4-bit with cols % 64 != 0 stays on
 * the tiled sgemm path, which this then checks), forward and input gradient (inner dimension
 * O: two blocks), 1 and 2 threads, against double-precision products of the reference-
 * dequantized weights with the float32 dot-product bound. x and dy are filled once for 513
 * rows, so the reference of the first R rows is a prefix; and bit for bit the first R rows of
 * the 513-row result on 1 thread (the GEMM's sums do not depend on rows or threads). */
static void check_prefix(const char *what, const float *y, const double *ref, const double *mag,
                         int64_t n, int64_t inner) {
    for (int64_t i = 0; i < n; i++) {
        const double tol =
            DOT_ERR_FACTOR * (double)(inner + 2) * F32_UNIT_ROUNDOFF * mag[i] + 1e-30;
        if (fabs(y[i] - ref[i]) > tol) {
            print_error("%s: element %lld = %.9g, reference %.9g (tolerance %.3g)\n", what,
                        (long long)i, y[i], ref[i], tol);
            fail();
        }
    }
}

static void test_qgemm_avx512(void **state) {
    (void)state;
    if (road_qkernel_select(ROAD_QKERNEL_AVX512) != ROAD_OK) {
        print_message("qgemm avx512 skipped: %s\n", road_last_error());
        skip();
    }
    enum { O = 272, RMAX = 513 };
    const int64_t Ks[] = {320, 200};
    const int64_t rows[] = {17, 31, 64, 100, 513};
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4,  ROAD_QFORMAT_NF4,
                                 ROAD_QFORMAT_FP4,  ROAD_QFORMAT_BF16, ROAD_QFORMAT_F16};
    const bool dqs[] = {false, false, true, false, false, false};
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
        const int64_t K = Ks[ki];
        float *w = tu_alloc(sizeof(float) * (size_t)(O * K));
        float *x = tu_alloc(sizeof(float) * (size_t)(RMAX * K));
        float *dy = tu_alloc(sizeof(float) * (size_t)(RMAX * O));
        float *y = tu_alloc(sizeof(float) * (size_t)(RMAX * (O > K ? O : K)));
        float *ya = tu_alloc(sizeof(float) * (size_t)(RMAX * O)),
              *xa = tu_alloc(sizeof(float) * (size_t)(RMAX * K));
        double *ry = tu_alloc(sizeof(double) * (size_t)(RMAX * O)),
               *my = tu_alloc(sizeof(double) * (size_t)(RMAX * O));
        double *rx = tu_alloc(sizeof(double) * (size_t)(RMAX * K)),
               *mx = tu_alloc(sizeof(double) * (size_t)(RMAX * K));
        tu_fill_uniform(x, RMAX * K, 21, -1, 1);
        tu_fill_uniform(dy, RMAX * O, 22, -1, 1);
        for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
            tu_fill_uniform(w, O * K, 23 + i, -1, 1);
            road_qtensor *q = NULL;
            TU_OK(road_qtensor_quantize(fmts[i], O, K, w, dqs[i], &q));
            dequant_ref(q, w, ROAD_QKERNEL_AVX512);
            memset(rx, 0, sizeof(double) * (size_t)(RMAX * K));
            memset(mx, 0, sizeof(double) * (size_t)(RMAX * K));
            for (int64_t r = 0; r < RMAX; r++)
                for (int64_t o = 0; o < O; o++) {
                    double t = 0.0, m = 0.0;
                    for (int64_t k = 0; k < K; k++) {
                        const double p = (double)x[r * K + k] * w[o * K + k];
                        t += p, m += fabs(p);
                    }
                    ry[r * O + o] = t, my[r * O + o] = m;
                    const double d = dy[r * O + o];
                    for (int64_t k = 0; k < K; k++) {
                        rx[r * K + k] += d * w[o * K + k];
                        mx[r * K + k] += fabs(d * w[o * K + k]);
                    }
                }
            /* the GEMM sums each output the same way whatever the rows and threads (4-bit with
             * K % 64 != 0 takes sgemm, which does not promise that) */
            const bool gemm = K % ROAD_QBLOCK == 0 || fmts[i] == ROAD_QFORMAT_INT8 ||
                              fmts[i] == ROAD_QFORMAT_BF16 || fmts[i] == ROAD_QFORMAT_F16;
            road_set_num_threads(1);
            TU_OK(road_qtensor_xwt(q, RMAX, x, NULL, ya));
            TU_OK(road_qtensor_dyw(q, RMAX, dy, xa));
            for (int nt = 1; nt <= 2; nt++) {
                road_set_num_threads(nt);
                for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
                    const int64_t R = rows[ri];
                    char what[128];
                    snprintf(what, sizeof what, "qgemm %s%s K %lld rows %lld threads %d",
                             road_qformat_name(fmts[i]), dqs[i] ? "+dq" : "", (long long)K,
                             (long long)R, nt);
                    TU_OK(road_qtensor_xwt(q, R, x, NULL, y));
                    check_prefix(what, y, ry, my, R * O, K);
                    if (gemm) tu_assert_equal_f32(what, y, ya, R * O);
                    TU_OK(road_qtensor_dyw(q, R, dy, y));
                    check_prefix(what, y, rx, mx, R * K, O);
                    if (gemm) tu_assert_equal_f32(what, y, xa, R * K);
                }
            }
            road_qtensor_free(q);
        }
        free(w), free(x), free(dy), free(y), free(ya), free(xa), free(ry), free(my), free(rx),
            free(mx);
    }
    road_set_num_threads(2);
    TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
}

/* ROAD_QKERNEL_VNNI_Q8 (x rounded to int8 per block of 64, 4-bit tables to int8 steps) against
 * double-precision products of the exactly dequantized weights with float x. Per output the
 * error is bounded by what the two roundings can move it, plus the float bound:
 *   sum over blocks b of (s_b / 2) sum_k (|w_k| + d_b)  +  d_b sum_k |x_k|
 * with s_b = max |x_b| / 127 (x's step) and d_b = step / 2 * absmax_b (half a table step, 4-bit;
 * 0 for int8). Formats it does not take (bf16, f16, cols % 64 != 0) must stay within the
 * float bound. The largest error seen, as a fraction of sum |x w|, is printed
 * (docs/quant.md quotes it). */
#define Q8_BLOCK 64
#define Q8_XMAX 127.0
static void test_vnni_q8(void **state) {
    (void)state;
    if (road_qkernel_select(ROAD_QKERNEL_VNNI_Q8) != ROAD_OK) {
        print_message("vnni-q8 skipped: %s\n", road_last_error());
        skip();
    }
    enum { O = 45, RMAX = 513 };
    /* decode (1..16 rows), then the prefill GEMM (17 on) */
    const int64_t Rs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 40, 100, 513};
    /* K 2112: 33 blocks, past the prefill GEMM's chunk of 32 */
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4,  ROAD_QFORMAT_NF4,
                                 ROAD_QFORMAT_FP4,  ROAD_QFORMAT_INT8, ROAD_QFORMAT_BF16,
                                 ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4};
    const bool dqs[] = {false, false, true, false, false, false, false, true};
    const int64_t Ks[] = {512, 512, 512, 256, 131, 192, 2112, 2112};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        const int64_t K = Ks[i];
        const bool approx = fmts[i] != ROAD_QFORMAT_BF16 && K % Q8_BLOCK == 0;
        float *w = tu_alloc(sizeof(float) * (size_t)(O * K));
        float *x = tu_alloc(sizeof(float) * (size_t)(RMAX * K));
        float *y = tu_alloc(sizeof(float) * (size_t)(RMAX * O));
        float *y1 = tu_alloc(sizeof(float) * (size_t)O);
        tu_fill_uniform(w, O * K, 11 + i, -1, 1);
        tu_fill_uniform(x, RMAX * K, 12 + i, -1, 1);
        for (int64_t k = 0; k < RMAX * K; k += 37) x[k] *= 8.0f; /* a few outliers per block */
        road_qtensor *q = NULL;
        TU_OK(road_qtensor_quantize(fmts[i], O, K, w, dqs[i], &q));
        dequant_ref(q, w, ROAD_QKERNEL_VNNI_Q8);
        double step = 0.0;
        if (q->code)
            for (int c = 0; c < 16; c++) step = fmax(step, fabs(q->code[c]) / 127.0);
        double worst = 0.0, worst_rel = 0.0, e2 = 0.0, y2 = 0.0;
        for (int nt = 1; nt <= 2; nt++) {
            road_set_num_threads(nt);
            for (size_t ri = 0; ri < sizeof Rs / sizeof Rs[0]; ri++) {
                const int64_t R = Rs[ri];
                TU_OK(road_qtensor_xwt(q, R, x, NULL, y));
                for (int64_t r = 0; r < R; r++)
                    for (int64_t o = 0; o < O; o++) {
                        double ref = 0.0, mag = 0.0, bound = 0.0;
                        for (int64_t b0 = 0; b0 < K; b0 += Q8_BLOCK) {
                            const int64_t n = K - b0 < Q8_BLOCK ? K - b0 : Q8_BLOCK;
                            double xmax = 0.0, sw = 0.0, sx = 0.0;
                            const double d = q->code ? 0.5 * step *
                                                           fabs(road_qtensor_block_absmax(
                                                               q, (o * K + b0) / Q8_BLOCK))
                                                     : 0.0;
                            for (int64_t k = b0; k < b0 + n; k++) {
                                const double xv = x[r * K + k], wv = w[o * K + k];
                                ref += xv * wv;
                                mag += fabs(xv * wv);
                                xmax = fmax(xmax, fabs(xv));
                                sw += fabs(wv) + d;
                                sx += fabs(xv);
                            }
                            bound += 0.5 * (xmax / Q8_XMAX) * sw + d * sx;
                        }
                        const double fl =
                            DOT_ERR_FACTOR * (double)(K + 2) * F32_UNIT_ROUNDOFF * mag;
                        const double tol = (approx ? bound * (1.0 + 1e-3) : 0.0) + fl + 1e-30;
                        const double err = fabs(y[r * O + o] - ref);
                        if (err > tol) {
                            print_error("vnni-q8 %s%s K %lld rows %lld: y[%lld, %lld] = %.9g, "
                                        "reference %.9g (bound %.3g)\n",
                                        road_qformat_name(fmts[i]), dqs[i] ? "+dq" : "",
                                        (long long)K, (long long)R, (long long)r, (long long)o,
                                        y[r * O + o], ref, tol);
                            fail();
                        }
                        if (approx) {
                            e2 += err * err, y2 += ref * ref;
                            worst = fmax(worst, err / tol);
                            worst_rel = fmax(worst_rel, err / (mag + 1e-30));
                        }
                    }
                /* batch invariance: each row bit-identical to the decode kernel's result for
                 * that row alone (the prefill GEMM forms the same sums in the same order) */
                for (int64_t r = 0; r < R && R > 16 && approx; r++) {
                    TU_OK(road_qtensor_xwt(q, 1, x + r * K, NULL, y1));
                    tu_assert_equal_f32("vnni-q8: a row of a prefill vs the row alone", y1,
                                        y + r * O, O);
                }
            }
        }
        if (approx)
            print_message("vnni-q8 %s%s K %lld: largest error %.3g of sum |x w| (%.2f of the "
                          "bound), rms error / rms y %.3g\n",
                          road_qformat_name(fmts[i]), dqs[i] ? "+dq" : "", (long long)K, worst_rel,
                          worst, sqrt(e2 / y2));
        road_qtensor_free(q);
        free(w), free(x), free(y), free(y1);
    }
    road_set_num_threads(2);
    TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
}

/* AUTO picks the fastest kernel the CPU has; a kernel it lacks is refused and the choice
 * stays as it was. */
static void test_select(void **state) {
    (void)state;
    TU_OK(road_qkernel_select(ROAD_QKERNEL_REFERENCE));
    for (size_t k = 1; k < N_KERNELS; k++) {
        const road_status st = road_qkernel_select(KERNELS[k]);
        if (st == ROAD_OK) continue;
        assert_int_equal(st, ROAD_ERR_UNSUPPORTED);
        print_message("select: this CPU lacks %s: %s\n", KERNEL_NAMES[k], road_last_error());
    }
    TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
}

/* The AVX-512 kernels pack x into a buffer per decode call, the AVX-512 GEMM packs x and W per
 * many-row call (forward and dyw), and vnni-q8 packs x and decodes W tiles for its prefill
 * GEMM: when an allocation fails, the call says so (and works again once memory is back). */
static void test_pack_no_memory(void **state) {
    (void)state;
    const road_qkernel ks[] = {ROAD_QKERNEL_AVX512, ROAD_QKERNEL_VNNI_Q8};
    const char *const names[] = {"avx512", "vnni-q8"};
    enum { RP = 20 }; /* rows past the decode kernels: the GEMMs */
    float w[4 * 128], x[RP * 128], y[RP * 4];
    tu_fill_uniform(w, 4 * 128, 3, -1, 1);
    tu_fill_uniform(x, RP * 128, 4, -1, 1);
    road_qtensor *q = NULL;
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_NF4, 4, 128, w, false, &q));
    for (int i = 0; i < 2; i++) {
        if (road_qkernel_select(ks[i]) != ROAD_OK) {
            print_message("pack/no memory: kernel %s skipped: %s\n", names[i], road_last_error());
            continue;
        }
        /* 2 rows: the decode pack; RP rows: the GEMM's packed x (forward, and dyw) */
        for (int64_t R = 2; R <= RP; R += RP - 2) {
            road__alloc_fail_after(0);
            road_status st = road_qtensor_xwt(q, R, x, NULL, y);
            road__alloc_fail_after(-1);
            assert_int_equal(st, ROAD_ERR_NO_MEMORY);
            TU_OK(road_qtensor_xwt(q, R, x, NULL, y));
            if (R == 2) continue;
            road__alloc_fail_after(0);
            st = road_qtensor_dyw(q, R, y, x);
            road__alloc_fail_after(-1);
            assert_int_equal(st, ROAD_ERR_NO_MEMORY);
            TU_OK(road_qtensor_dyw(q, R, y, x));
        }
        if (ks[i] != ROAD_QKERNEL_VNNI_Q8) continue;
        for (int n = 0; n < 2; n++) { /* vnni-q8's prefill: the x buffer, then the W tiles */
            road__alloc_fail_after(n);
            const road_status sp = road_qtensor_xwt(q, RP, x, NULL, y);
            road__alloc_fail_after(-1);
            assert_int_equal(sp, ROAD_ERR_NO_MEMORY);
        }
        TU_OK(road_qtensor_xwt(q, RP, x, NULL, y));
    }
    TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
    road_qtensor_free(q);
}

static void test_args(void **state) {
    (void)state;
    float w[64], x[64], y[1];
    tu_fill_uniform(w, 64, 1, -1, 1);
    road_qtensor *q = NULL;
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_NF4, 1, 64, w, false, &q));
    TU_FAILS(road_qtensor_xwt(q, -1, x, NULL, y), ROAD_ERR_SHAPE, "rows");
    TU_FAILS(road_qtensor_xwt(q, 1, NULL, NULL, y), ROAD_ERR_INVALID_ARG, "NULL");
    TU_FAILS(road_qtensor_dyw(NULL, 1, x, y), ROAD_ERR_INVALID_ARG, "no tensor");
    TU_OK(road_qtensor_xwt(q, 0, NULL, NULL, NULL));
    TU_FAILS(road_qkernel_select((road_qkernel)7), ROAD_ERR_INVALID_ARG, "unknown");
    road_qtensor_free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xwt_dyw),      cmocka_unit_test(test_fast_vs_reference),
        cmocka_unit_test(test_qgemm_avx512), cmocka_unit_test(test_select),
        cmocka_unit_test(test_vnni_q8),      cmocka_unit_test(test_pack_no_memory),
        cmocka_unit_test(test_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
