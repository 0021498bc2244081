/*
 * adapter/kernels_generic.c - portable fast RoAd kernels.
 *
 * The pairing (a, a + h) makes both halves of a group contiguous, so the inner loop runs over
 * two contiguous runs of h floats: the compiler vectorizes it with any SIMD width. The
 * arithmetic is the reference's, operation for operation, so results are bit-identical.
 */
#include "adapter/kernels.h"

/* Rows go GEN_ROW_BLOCK at a time so one group's coefficients are read from L1 for all of
 * them (at 4096 features the coefficients alone overflow L1). */
#define GEN_ROW_BLOCK 8

static void gen_forward(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    for (int64_t i0 = 0; i0 < rows; i0 += GEN_ROW_BLOCK) {
        const int64_t nb = rows - i0 < GEN_ROW_BLOCK ? rows - i0 : GEN_ROW_BLOCK;
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            const float *restrict c1a = r->c1 + g0, *restrict c1b = c1a + h;
            const float *restrict c2a = r->c2 + g0, *restrict c2b = c2a + h;
            for (int64_t i = i0; i < i0 + nb; i++) {
                float *restrict ya = y + i * ld + g0;
                float *restrict yb = ya + h;
                for (int64_t j = 0; j < h; j++) {
                    float va = ya[j], vb = yb[j];
                    ya[j] = c1a[j] * va - c2a[j] * vb;
                    yb[j] = c1b[j] * vb + c2b[j] * va;
                }
            }
        }
    }
}

static void gen_backward(const road_rot *r, int64_t rows, const float *x, int64_t ldx,
                         const float *dy, int64_t lddy, float *dx, int64_t lddx, double *dc1,
                         double *dc2) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            const float *ga = dy + i * lddy + g0, *gb = ga + h;
            if (dc1 && x) {
                const float *xa = x + i * ldx + g0, *xb = xa + h;
                double *restrict d1a = dc1 + g0, *restrict d1b = d1a + h;
                double *restrict d2a = dc2 + g0, *restrict d2b = d2a + h;
                for (int64_t j = 0; j < h; j++) {
                    d1a[j] += (double)ga[j] * xa[j];
                    d2a[j] -= (double)ga[j] * xb[j];
                    d1b[j] += (double)gb[j] * xb[j];
                    d2b[j] += (double)gb[j] * xa[j];
                }
            }
            if (dx) {
                /* dx may alias dy: read both halves before writing. */
                float *dxa = dx + i * lddx + g0, *dxb = dxa + h;
                const float *c1a = r->c1 + g0, *c1b = c1a + h;
                const float *c2a = r->c2 + g0, *c2b = c2a + h;
                for (int64_t j = 0; j < h; j++) {
                    float va = ga[j], vb = gb[j];
                    dxa[j] = c1a[j] * va + c2b[j] * vb;
                    dxb[j] = c1b[j] * vb - c2a[j] * va;
                }
            }
        }
    }
}

const road_kernel_ops road__kernels_generic = {"generic", gen_forward, gen_backward};
