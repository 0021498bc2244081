/*
 * adapter/kernels_ref.c - reference RoAd kernels: the math of road/rot.h, one element
 * pair at a time. Slow on purpose; everything else is tested against these.
 */
#include "adapter/kernels.h"

static void ref_forward(const road_rot *r, int64_t rows, float *y, int64_t ld) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    const float *c1 = r->c1, *c2 = r->c2;
    for (int64_t i = 0; i < rows; i++) {
        float *yr = y + i * ld;
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            for (int64_t j = 0; j < h; j++) {
                int64_t a = g0 + j, b = a + h;
                float ya = yr[a], yb = yr[b];
                yr[a] = c1[a] * ya - c2[a] * yb;
                yr[b] = c1[b] * yb + c2[b] * ya;
            }
        }
    }
}

static void ref_backward(const road_rot *r, int64_t rows, const float *x, int64_t ldx,
                         const float *dy, int64_t lddy, float *dx, int64_t lddx, double *dc1,
                         double *dc2) {
    const int64_t gs = r->group_size, h = gs / 2, D = r->out;
    const float *c1 = r->c1, *c2 = r->c2;
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x ? x + i * ldx : NULL;
        const float *gr = dy + i * lddy;
        float *dxr = dx ? dx + i * lddx : NULL;
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            for (int64_t j = 0; j < h; j++) {
                int64_t a = g0 + j, b = a + h;
                float ga = gr[a], gb = gr[b];
                if (dc1 && xr) {
                    float xa = xr[a], xb = xr[b];
                    dc1[a] += (double)ga * xa;
                    dc2[a] -= (double)ga * xb;
                    dc1[b] += (double)gb * xb;
                    dc2[b] += (double)gb * xa;
                }
                if (dxr) {
                    dxr[a] = c1[a] * ga + c2[b] * gb;
                    dxr[b] = c1[b] * gb - c2[a] * ga;
                }
            }
        }
    }
}

const road_kernel_ops road__kernels_reference = {"reference", ref_forward, ref_backward};
