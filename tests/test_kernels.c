/*
 * tests/test_kernels.c - the RoAd kernels (road_rot_*, road_coeffs_*) against:
 *   1. PEFT golden values (apply, backward: every case of the sidecar JSON),
 *   2. the reference implementation (every fast implementation must be bit-identical),
 *   3. central finite differences of an independent double-precision forward,
 *   4. analytic identities (identity init, merge = forward, merge then unmerge, dense R).
 */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "testutil.h"

/* Gradient sums are accumulated in double and rounded once; float inputs. Compared with the
 * double finite differences, errors stay near float rounding of the inputs: 1e-4 relative
 * to the largest gradient is loose enough for any order of summation and tight enough to
 * catch a wrong sign or index (those give O(1) errors). */
#define FD_REL_TOL 1e-4
/* Central-difference step for double precision (error O(h^2) ~ 1e-10, roundoff ~ 1e-16/h). */
#define FD_STEP 1e-5
/* Fast backward sums dc over rows in a different order (per-thread partials): same doubles
 * summed in another order, then rounded to float once. */
#define DC_REL_TOL 1e-6

static road_variant variant_of(const char *s) {
    road_variant v = ROAD_VARIANT_1;
    road_status st = road_variant_parse(s, &v);
    assert_int_equal(st, ROAD_OK);
    return v;
}

static int64_t shape_rows(const cJSON *shape, int64_t *last) {
    int64_t rows = 1;
    int n = cJSON_GetArraySize(shape);
    for (int i = 0; i < n - 1; i++) rows *= (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
    *last = (int64_t)cJSON_GetArrayItem(shape, n - 1)->valuedouble;
    return rows;
}

static const road_kernel_impl all_impls[] = {ROAD_KERNEL_REFERENCE, ROAD_KERNEL_GENERIC,
                                             ROAD_KERNEL_AVX2};
#define N_IMPLS 3

/* ---- 1. golden: apply ------------------------------------------------------------------- */

static void test_golden_apply(void **state) {
    (void)state;
    cJSON *js = tu_load_json("golden/apply.json");
    road_st_file *f = tu_open_golden("golden/apply.safetensors");
    const cJSON *cases = cJSON_GetObjectItem(js, "cases");
    assert_int_equal(cJSON_GetArraySize(cases), 99);
    int checked = 0;
    for (int impl = 0; impl < N_IMPLS; impl++) {
        if (road_kernel_select(all_impls[impl]) != ROAD_OK) continue; /* no AVX2 here */
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            const char *id = cJSON_GetObjectItem(c, "id")->valuestring;
            road_variant v = variant_of(cJSON_GetObjectItem(c, "variant")->valuestring);
            int32_t gs = (int32_t)cJSON_GetObjectItem(c, "group_size")->valueint;
            int64_t D, rows = shape_rows(cJSON_GetObjectItem(c, "x_shape"), &D);
            int64_t np, nx, ny;
            const float *theta = tu_golden_req(f, id, "theta", &np);
            const float *alpha = tu_golden_req(f, id, "alpha", NULL);
            const float *x = tu_golden_req(f, id, "x", &nx);
            const float *y = tu_golden_req(f, id, "y", &ny);
            assert_int_equal(np, road_param_count(v, D));
            assert_int_equal(nx, rows * D);
            float *c1 = tu_alloc(sizeof(float) * (size_t)D), *c2 = tu_alloc(sizeof(float) * (size_t)D);
            float *out = tu_alloc(sizeof(float) * (size_t)nx);
            TU_OK(road_coeffs_compute(v, gs, D, theta, alpha, c1, c2));
            memcpy(out, x, sizeof(float) * (size_t)nx);
            road_rot r = {D, gs, c1, c2};
            TU_OK(road_rot_forward(&r, rows, out, D));
            char what[256];
            snprintf(what, sizeof what, "apply %s [%s]", id, road_kernel_name(all_impls[impl]));
            if (strncmp(id, "identity_", 9) == 0) {
                tu_assert_equal_f32(what, out, x, nx); /* identity init: y == x bit for bit */
                tu_assert_equal_f32(what, y, x, nx);
            } else {
                tu_assert_close(what, out, y, nx, GOLDEN_ATOL, GOLDEN_RTOL);
            }
            free(c1), free(c2), free(out);
            checked++;
        }
    }
    assert_true(checked >= 2 * 99); /* reference and generic always run */
    TU_OK(road_kernel_select(ROAD_KERNEL_AUTO));
    road_st_close(f);
    cJSON_Delete(js);
}

/* ---- 1. golden: backward ------------------------------------------------------------------ */

static void test_golden_backward(void **state) {
    (void)state;
    cJSON *js = tu_load_json("golden/backward.json");
    road_st_file *fa = tu_open_golden("golden/apply.safetensors");
    road_st_file *fb = tu_open_golden("golden/backward.safetensors");
    const cJSON *cases = cJSON_GetObjectItem(js, "cases");
    assert_int_equal(cJSON_GetArraySize(cases), 99);
    for (int impl = 0; impl < N_IMPLS; impl++) {
        if (road_kernel_select(all_impls[impl]) != ROAD_OK) continue;
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            const char *id = cJSON_GetObjectItem(c, "id")->valuestring;
            road_variant v = variant_of(cJSON_GetObjectItem(c, "variant")->valuestring);
            int32_t gs = (int32_t)cJSON_GetObjectItem(c, "group_size")->valueint;
            int64_t D, rows = shape_rows(cJSON_GetObjectItem(c, "x_shape"), &D);
            int64_t np, n;
            const float *theta = tu_golden_req(fa, id, "theta", &np);
            const float *alpha = tu_golden_req(fa, id, "alpha", NULL);
            const float *x = tu_golden_req(fa, id, "x", &n);
            const float *g = tu_golden_req(fb, id, "g", NULL);
            const float *gdx = tu_golden_req(fb, id, "dx", NULL);
            const float *gdt = tu_golden_req(fb, id, "dtheta", NULL);
            const float *gda = tu_golden_req(fb, id, "dalpha", NULL);
            float *c1 = tu_alloc(sizeof(float) * (size_t)D), *c2 = tu_alloc(sizeof(float) * (size_t)D);
            float *dc1 = tu_alloc(sizeof(float) * (size_t)D), *dc2 = tu_alloc(sizeof(float) * (size_t)D);
            float *dt = tu_alloc(sizeof(float) * (size_t)np), *da = tu_alloc(sizeof(float) * (size_t)np);
            float *dx = tu_alloc(sizeof(float) * (size_t)n);
            TU_OK(road_coeffs_compute(v, gs, D, theta, alpha, c1, c2));
            road_rot r = {D, gs, c1, c2};
            TU_OK(road_rot_backward(&r, rows, x, D, g, D, dx, D, dc1, dc2));
            TU_OK(road_coeffs_backward(v, gs, D, theta, alpha, dc1, dc2, dt, da));
            char what[256];
            snprintf(what, sizeof what, "%s dx [%s]", id, road_kernel_name(all_impls[impl]));
            tu_assert_close(what, dx, gdx, n, GOLDEN_ATOL, GOLDEN_RTOL);
            snprintf(what, sizeof what, "%s dtheta [%s]", id, road_kernel_name(all_impls[impl]));
            tu_assert_close(what, dt, gdt, np, GOLDEN_ATOL, GOLDEN_RTOL);
            snprintf(what, sizeof what, "%s dalpha [%s]", id, road_kernel_name(all_impls[impl]));
            tu_assert_close(what, da, gda, np, GOLDEN_ATOL, GOLDEN_RTOL);
            free(c1), free(c2), free(dc1), free(dc2), free(dt), free(da), free(dx);
        }
    }
    TU_OK(road_kernel_select(ROAD_KERNEL_AUTO));
    road_st_close(fa);
    road_st_close(fb);
    cJSON_Delete(js);
}

/* ---- 2. fast kernels == reference --------------------------------------------------------- */

typedef struct shape_case {
    int32_t gs;
    int64_t out;
} shape_case;

static const shape_case shapes[] = {{2, 2},   {2, 18},   {4, 8},     {6, 36},   {8, 8},
                                    {8, 72},  {10, 40},  {16, 48},   {32, 96},  {64, 64},
                                    {64, 4096}, {128, 384}, {256, 512}, {2, 4096}, {12, 24}};

static void test_fast_equals_reference(void **state) {
    (void)state;
    const int64_t row_counts[] = {1, 3, 17, 40};
    int n_impls_checked = 0;
    for (int impl = 1; impl < N_IMPLS; impl++) {
        if (road_kernel_select(all_impls[impl]) != ROAD_OK) continue;
        n_impls_checked++;
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            for (size_t ri = 0; ri < 4; ri++) {
                const int64_t D = shapes[si].out, rows = row_counts[ri], ld = D + 3 * (ri & 1);
                const int32_t gs = shapes[si].gs;
                float *c1 = tu_alloc(sizeof(float) * (size_t)D), *c2 = tu_alloc(sizeof(float) * (size_t)D);
                tu_fill_uniform(c1, D, 11 + si, -1.5f, 1.5f);
                tu_fill_uniform(c2, D, 12 + si, -1.5f, 1.5f);
                road_rot r = {D, gs, c1, c2};
                size_t n = (size_t)(rows * ld);
                float *y0 = tu_alloc(sizeof(float) * n), *y1 = tu_alloc(sizeof(float) * n);
                float *y2 = tu_alloc(sizeof(float) * n), *g = tu_alloc(sizeof(float) * n);
                tu_fill_uniform(y0, (int64_t)n, 13 + ri, -2, 2);
                tu_fill_uniform(g, (int64_t)n, 14 + ri, -2, 2);
                memcpy(y1, y0, sizeof(float) * n);
                memcpy(y2, y0, sizeof(float) * n);
                TU_OK(road_rot_forward(&r, rows, y1, ld)); /* fast */
                TU_OK(road_kernel_select(ROAD_KERNEL_REFERENCE));
                TU_OK(road_rot_forward(&r, rows, y2, ld));
                char what[128];
                snprintf(what, sizeof what, "forward %s gs=%d D=%lld rows=%lld",
                         road_kernel_name(all_impls[impl]), gs, (long long)D, (long long)rows);
                tu_assert_equal_f32(what, y1, y2, (int64_t)n); /* padding untouched too */

                /* backward: dx bit-identical, dc equal up to summation order */
                float *dxf = tu_alloc(sizeof(float) * n), *dxr = tu_alloc(sizeof(float) * n);
                float *d1f = tu_alloc(sizeof(float) * (size_t)D), *d2f = tu_alloc(sizeof(float) * (size_t)D);
                float *d1r = tu_alloc(sizeof(float) * (size_t)D), *d2r = tu_alloc(sizeof(float) * (size_t)D);
                memcpy(dxf, y0, sizeof(float) * n); /* padding must survive */
                memcpy(dxr, y0, sizeof(float) * n);
                TU_OK(road_rot_backward(&r, rows, y0, ld, g, ld, dxr, ld, d1r, d2r));
                TU_OK(road_kernel_select(all_impls[impl]));
                TU_OK(road_rot_backward(&r, rows, y0, ld, g, ld, dxf, ld, d1f, d2f));
                snprintf(what, sizeof what, "backward dx %s gs=%d D=%lld", road_kernel_name(all_impls[impl]), gs, (long long)D);
                tu_assert_equal_f32(what, dxf, dxr, (int64_t)n);
                float m = 0;
                for (int64_t i = 0; i < D; i++) m = fmaxf(m, fmaxf(fabsf(d1r[i]), fabsf(d2r[i])));
                tu_assert_close("backward dc1", d1f, d1r, D, DC_REL_TOL * m, 0);
                tu_assert_close("backward dc2", d2f, d2r, D, DC_REL_TOL * m, 0);
                /* in place: dx aliases dy */
                memcpy(y1, g, sizeof(float) * n);
                TU_OK(road_rot_backward(&r, rows, NULL, ld, y1, ld, y1, ld, NULL, NULL));
                for (int64_t i = 0; i < rows; i++) /* padding of y1 is g's: compare rows */
                    tu_assert_equal_f32("backward in place", y1 + i * ld, dxr + i * ld, D);
                free(c1), free(c2), free(y0), free(y1), free(y2), free(g);
                free(dxf), free(dxr), free(d1f), free(d2f), free(d1r), free(d2r);
            }
        }
    }
    assert_true(n_impls_checked >= 1);
    TU_OK(road_kernel_select(ROAD_KERNEL_AUTO));
}

/* Large enough to take the multi-threaded path. */
static void test_threaded_equals_reference(void **state) {
    (void)state;
    const int64_t D = 1024, rows = 300;
    road_set_num_threads(2);
    float *c1 = tu_alloc(sizeof(float) * D), *c2 = tu_alloc(sizeof(float) * D);
    tu_fill_uniform(c1, D, 1, -1, 1);
    tu_fill_uniform(c2, D, 2, -1, 1);
    road_rot r = {D, 64, c1, c2};
    float *a = tu_alloc(sizeof(float) * D * rows), *b = tu_alloc(sizeof(float) * D * rows);
    tu_fill_uniform(a, D * rows, 3, -1, 1);
    memcpy(b, a, sizeof(float) * D * rows);
    TU_OK(road_kernel_select(ROAD_KERNEL_AUTO));
    TU_OK(road_rot_forward(&r, rows, a, D));
    TU_OK(road_kernel_select(ROAD_KERNEL_REFERENCE));
    TU_OK(road_rot_forward(&r, rows, b, D));
    tu_assert_equal_f32("threaded forward", a, b, D * rows);
    TU_OK(road_kernel_select(ROAD_KERNEL_AUTO));
    free(c1), free(c2), free(a), free(b);
}

/* ---- 3. finite differences ------------------------------------------------------------------ */

/* Independent double-precision RoAd forward, written from the math in road/rot.h:
 * returns L = sum(y * g). */
static double ref_loss(road_variant v, int gs, int64_t D, int64_t rows, const double *theta,
                       const double *alpha, const double *x, const double *g) {
    int h = gs / 2;
    double L = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t a = 0; a < D; a++) {
            int64_t grp = a / gs, j = a % gs;
            int first = j < h;
            int64_t b = first ? a + h : a - h; /* partner */
            double f, s;
            if (v == ROAD_VARIANT_1) {
                int64_t p = grp * h + (first ? j : j - h);
                f = alpha[p] * cos(theta[p]);
                s = alpha[p] * sin(theta[p]);
            } else if (v == ROAD_VARIANT_2) {
                f = alpha[a] * cos(theta[a]);
                s = alpha[a] * sin(theta[a]);
            } else {
                int64_t q = grp * 2 * gs + j;
                f = alpha[q] * cos(theta[q]);
                s = alpha[q + gs] * sin(theta[q + gs]);
            }
            double y = first ? f * x[r * D + a] - s * x[r * D + b] : f * x[r * D + a] + s * x[r * D + b];
            L += y * g[r * D + a];
        }
    }
    return L;
}

static void check_fd(road_variant v, int gs, int64_t D, int64_t rows, uint64_t seed) {
    int64_t P = road_param_count(v, D), n = rows * D;
    float *th = tu_alloc(sizeof(float) * P), *al = tu_alloc(sizeof(float) * P);
    float *x = tu_alloc(sizeof(float) * n), *g = tu_alloc(sizeof(float) * n);
    tu_fill_uniform(th, P, seed, -3, 3);
    tu_fill_uniform(al, P, seed + 1, -1.5f, 1.5f);
    tu_fill_uniform(x, n, seed + 2, -1, 1);
    tu_fill_uniform(g, n, seed + 3, -1, 1);
    double *dth = tu_alloc(sizeof(double) * P), *dal = tu_alloc(sizeof(double) * P);
    double *dx = tu_alloc(sizeof(double) * n), *dg = tu_alloc(sizeof(double) * n);
    for (int64_t i = 0; i < P; i++) dth[i] = th[i], dal[i] = al[i];
    for (int64_t i = 0; i < n; i++) dx[i] = x[i], dg[i] = g[i];

    /* road's analytic gradients */
    float *c1 = tu_alloc(sizeof(float) * D), *c2 = tu_alloc(sizeof(float) * D);
    float *dc1 = tu_alloc(sizeof(float) * D), *dc2 = tu_alloc(sizeof(float) * D);
    float *gt = tu_alloc(sizeof(float) * P), *ga = tu_alloc(sizeof(float) * P);
    float *gx = tu_alloc(sizeof(float) * n);
    TU_OK(road_coeffs_compute(v, gs, D, th, al, c1, c2));
    road_rot r = {D, gs, c1, c2};
    TU_OK(road_rot_backward(&r, rows, x, D, g, D, gx, D, dc1, dc2));
    TU_OK(road_coeffs_backward(v, gs, D, th, al, dc1, dc2, gt, ga));

    /* central differences of the double forward */
    float *fdt = tu_alloc(sizeof(float) * P), *fda = tu_alloc(sizeof(float) * P);
    float *fdx = tu_alloc(sizeof(float) * n);
    double m = 0;
    for (int64_t i = 0; i < P; i++) {
        double s = dth[i];
        dth[i] = s + FD_STEP;
        double lp = ref_loss(v, gs, D, rows, dth, dal, dx, dg);
        dth[i] = s - FD_STEP;
        double lm = ref_loss(v, gs, D, rows, dth, dal, dx, dg);
        dth[i] = s;
        fdt[i] = (float)((lp - lm) / (2 * FD_STEP));
        s = dal[i];
        dal[i] = s + FD_STEP;
        lp = ref_loss(v, gs, D, rows, dth, dal, dx, dg);
        dal[i] = s - FD_STEP;
        lm = ref_loss(v, gs, D, rows, dth, dal, dx, dg);
        dal[i] = s;
        fda[i] = (float)((lp - lm) / (2 * FD_STEP));
        m = fmax(m, fmax(fabs(fdt[i]), fabs(fda[i])));
    }
    for (int64_t i = 0; i < n; i++) {
        double s = dx[i];
        dx[i] = s + FD_STEP;
        double lp = ref_loss(v, gs, D, rows, dth, dal, dx, dg);
        dx[i] = s - FD_STEP;
        double lm = ref_loss(v, gs, D, rows, dth, dal, dx, dg);
        dx[i] = s;
        fdx[i] = (float)((lp - lm) / (2 * FD_STEP));
        m = fmax(m, fabs(fdx[i]));
    }
    char what[128];
    snprintf(what, sizeof what, "FD %s gs=%d dtheta", road_variant_name(v), gs);
    tu_assert_close(what, gt, fdt, P, FD_REL_TOL * m, 0);
    snprintf(what, sizeof what, "FD %s gs=%d dalpha", road_variant_name(v), gs);
    tu_assert_close(what, ga, fda, P, FD_REL_TOL * m, 0);
    snprintf(what, sizeof what, "FD %s gs=%d dx", road_variant_name(v), gs);
    tu_assert_close(what, gx, fdx, n, FD_REL_TOL * m, 0);
    free(th), free(al), free(x), free(g), free(dth), free(dal), free(dx), free(dg);
    free(c1), free(c2), free(dc1), free(dc2), free(gt), free(ga), free(gx), free(fdt), free(fda), free(fdx);
}

static void test_finite_differences(void **state) {
    (void)state;
    const road_variant vs[] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};
    const int gss[] = {2, 4, 6, 16};
    for (int vi = 0; vi < 3; vi++)
        for (int gi = 0; gi < 4; gi++) check_fd(vs[vi], gss[gi], 48, 5, 100 + vi * 10 + gi);
}

/* ---- 4. identities: merge, unmerge, dense ------------------------------------------------------ */

static void test_merge_identities(void **state) {
    (void)state;
    const int64_t D = 48, in = 20, rows = 7;
    const road_variant vs[] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};
    for (int vi = 0; vi < 3; vi++) {
        road_variant v = vs[vi];
        int64_t P = road_param_count(v, D);
        float *th = tu_alloc(sizeof(float) * P), *al = tu_alloc(sizeof(float) * P);
        tu_fill_uniform(th, P, 7 + vi, -3, 3);
        tu_fill_uniform(al, P, 8 + vi, 0.5f, 1.5f);
        float *c1 = tu_alloc(sizeof(float) * D), *c2 = tu_alloc(sizeof(float) * D);
        TU_OK(road_coeffs_compute(v, 8, D, th, al, c1, c2));
        road_rot r = {D, 8, c1, c2};
        float *w = tu_alloc(sizeof(float) * D * in), *w0 = tu_alloc(sizeof(float) * D * in);
        float *b = tu_alloc(sizeof(float) * D), *b0 = tu_alloc(sizeof(float) * D);
        float *x = tu_alloc(sizeof(float) * rows * in);
        tu_fill_uniform(w, D * in, 9, -1, 1);
        tu_fill_uniform(b, D, 10, -1, 1);
        tu_fill_uniform(x, rows * in, 11, -1, 1);
        memcpy(w0, w, sizeof(float) * D * in);
        memcpy(b0, b, sizeof(float) * D);

        /* merged weights equal the dense R @ W computed here in double */
        float *R = tu_alloc(sizeof(float) * D * D);
        TU_OK(road_rot_dense(&r, R));
        float *want = tu_alloc(sizeof(float) * D * in), *wantb = tu_alloc(sizeof(float) * D);
        for (int64_t i = 0; i < D; i++) {
            double sb = 0;
            for (int64_t k = 0; k < D; k++) sb += (double)R[i * D + k] * b0[k];
            wantb[i] = (float)sb;
            for (int64_t j = 0; j < in; j++) {
                double s = 0;
                for (int64_t k = 0; k < D; k++) s += (double)R[i * D + k] * w0[k * in + j];
                want[i * in + j] = (float)s;
            }
        }
        TU_OK(road_rot_merge(&r, in, w, in, b));
        tu_assert_close("merge W vs dense R W", w, want, D * in, 1e-6, 1e-6);
        tu_assert_close("merge b vs dense R b", b, wantb, D, 1e-6, 1e-6);

        /* (x W'^T + b') == RoAd(x W^T + b) */
        float *y1 = tu_alloc(sizeof(float) * rows * D), *y2 = tu_alloc(sizeof(float) * rows * D);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t o = 0; o < D; o++) {
                double s1 = b[o], s2 = b0[o];
                for (int64_t k = 0; k < in; k++) {
                    s1 += (double)x[i * in + k] * w[o * in + k];
                    s2 += (double)x[i * in + k] * w0[o * in + k];
                }
                y1[i * D + o] = (float)s1;
                y2[i * D + o] = (float)s2;
            }
        TU_OK(road_rot_forward(&r, rows, y2, D));
        tu_assert_close("merged forward == adapter forward", y1, y2, rows * D, 1e-5, 1e-5);

        /* unmerge restores W, b up to the conditioning of the blocks: the golden README's
         * bound 8 eps cond max|W| (W and b are drawn from [-1, 1]). */
        double un_atol = 8.0 * FLT_EPSILON * road_rot_block_condition(&r) * 1.0;
        TU_OK(road_rot_unmerge(&r, in, w, in, b));
        tu_assert_close("unmerge W", w, w0, D * in, un_atol, 1e-6);
        tu_assert_close("unmerge b", b, b0, D, un_atol, 1e-6);

        /* dense R: exactly the documented block structure */
        for (int64_t i = 0; i < D; i++)
            for (int64_t k = 0; k < D; k++) {
                int64_t gi = i / 8, gk = k / 8;
                bool pair = gi == gk && (k == i || k % 8 == (i % 8 + 4) % 8);
                if (!pair && R[i * D + k] != 0.0f) {
                    print_error("R[%lld][%lld] = %g outside the block structure\n", (long long)i,
                                (long long)k, (double)R[i * D + k]);
                    fail();
                }
            }
        assert_true(road_rot_block_condition(&r) >= 1.0);
        free(th), free(al), free(c1), free(c2), free(w), free(w0), free(b), free(b0), free(x);
        free(R), free(want), free(wantb), free(y1), free(y2);
    }
}

static void test_merge_refusals(void **state) {
    (void)state;
    const int64_t D = 8, in = 3;
    float c1[8] = {1, 1, 1, 1, 1, 1, 1, 1}, c2[8] = {0};
    float w[24], w0[24], b[8], b0[8];
    tu_fill_uniform(w, 24, 1, -1, 1);
    tu_fill_uniform(b, 8, 2, -1, 1);
    memcpy(w0, w, sizeof w);
    memcpy(b0, b, sizeof b);
    road_rot r = {D, 4, c1, c2};
    /* singular block: features (1, 3) scaled by zero */
    c1[1] = 0.0f;
    c1[3] = 0.0f;
    TU_FAILS(road_rot_merge(&r, in, w, in, b), ROAD_ERR_NUMERIC, "singular");
    tu_assert_equal_f32("W untouched", w, w0, 24);
    tu_assert_equal_f32("b untouched", b, b0, 8);
    TU_FAILS(road_rot_unmerge(&r, in, w, in, b), ROAD_ERR_NUMERIC, "(1, 3)");
    tu_assert_equal_f32("W untouched", w, w0, 24);
    /* nearly singular: condition 1e8 > 1/FLT_EPSILON */
    c1[1] = 1e-8f, c1[3] = 1.0f;
    TU_FAILS(road_rot_merge(&r, in, w, in, b), ROAD_ERR_NUMERIC, "condition number");
    /* non-finite */
    c1[1] = 1.0f;
    c2[5] = NAN;
    TU_FAILS(road_rot_merge(&r, in, w, in, b), ROAD_ERR_NUMERIC, "not finite");
    c2[5] = INFINITY;
    TU_FAILS(road_rot_unmerge(&r, in, w, in, b), ROAD_ERR_NUMERIC, "not finite");
    tu_assert_equal_f32("W untouched", w, w0, 24);
    tu_assert_equal_f32("b untouched", b, b0, 8);
    assert_true(isnan(road_rot_block_condition(&r)));
    c2[5] = 0.0f;
    assert_true(road_rot_block_condition(&r) == 1.0);
}

/* ---- shapes and arguments ------------------------------------------------------------------ */

static void test_shape_errors(void **state) {
    (void)state;
    TU_FAILS(road_check_shape(ROAD_VARIANT_1, 7, 64, NULL), ROAD_ERR_CONFIG, "positive even");
    TU_FAILS(road_check_shape(ROAD_VARIANT_1, 0, 64, NULL), ROAD_ERR_CONFIG, "got 0");
    TU_FAILS(road_check_shape(ROAD_VARIANT_1, -2, 64, NULL), ROAD_ERR_CONFIG, "got -2");
    TU_FAILS(road_check_shape(ROAD_VARIANT_2, 64, 96, "model.layers.0.mlp.up_proj"), ROAD_ERR_SHAPE,
             "model.layers.0.mlp.up_proj: out_features 96 is not divisible by group_size 64");
    TU_FAILS(road_check_shape(ROAD_VARIANT_2, 64, 96, NULL), ROAD_ERR_SHAPE, "for example 48");
    TU_FAILS(road_check_shape(ROAD_VARIANT_2, 64, 8, NULL), ROAD_ERR_SHAPE, "for example 8");
    TU_FAILS(road_check_shape(ROAD_VARIANT_4, 4, 9, NULL), ROAD_ERR_SHAPE, "is odd");
    TU_FAILS(road_check_shape((road_variant)3, 4, 8, NULL), ROAD_ERR_CONFIG, "road_1, road_2 or road_4");
    TU_OK(road_check_shape(ROAD_VARIANT_4, 2, 2, NULL));
    TU_OK(road_check_shape(ROAD_VARIANT_1, 4096, 4096, NULL));
    road_variant v;
    TU_FAILS(road_variant_parse("road_3", &v), ROAD_ERR_CONFIG, "road_1, road_2 or road_4");
    TU_FAILS(road_variant_parse("ROAD_1", &v), ROAD_ERR_CONFIG, "'ROAD_1'");
    TU_OK(road_variant_parse("road_4", &v));
    assert_int_equal(v, ROAD_VARIANT_4);
    assert_int_equal(road_param_count(ROAD_VARIANT_1, 64), 32);
    assert_int_equal(road_param_count(ROAD_VARIANT_2, 64), 64);
    assert_int_equal(road_param_count(ROAD_VARIANT_4, 64), 128);

    float c[8] = {0}, y[8] = {0};
    road_rot r = {8, 4, c, c};
    TU_FAILS(road_rot_forward(&r, 1, y, 4), ROAD_ERR_SHAPE, "row stride");
    TU_FAILS(road_rot_forward(NULL, 1, y, 8), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_rot_forward(&r, -1, y, 8), ROAD_ERR_SHAPE, NULL);
    road_rot bad = {8, 3, c, c};
    TU_FAILS(road_rot_forward(&bad, 1, y, 8), ROAD_ERR_CONFIG, "even");
    road_rot bad2 = {10, 4, c, c};
    TU_FAILS(road_rot_forward(&bad2, 1, y, 10), ROAD_ERR_SHAPE, "divisible");
    TU_OK(road_rot_forward(&r, 0, NULL, 8));
    float dc[8];
    TU_FAILS(road_rot_backward(&r, 1, y, 8, y, 8, NULL, 8, dc, NULL), ROAD_ERR_INVALID_ARG, "both");
    TU_FAILS(road_rot_backward(&r, 1, NULL, 8, y, 8, NULL, 8, dc, dc), ROAD_ERR_INVALID_ARG, "x");
    float th[4] = {0};
    TU_FAILS(road_coeffs_compute(ROAD_VARIANT_1, 4, 8, th, NULL, c, c), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_kernel_select((road_kernel_impl)42), ROAD_ERR_INVALID_ARG, NULL);
}

/* ---- mixed batch kernel --------------------------------------------------------------------- */

static void test_mixed_kernel(void **state) {
    (void)state;
    const int64_t D = 64, rows = 12;
    float c[3][2][64];
    for (int k = 0; k < 3; k++) {
        tu_fill_uniform(c[k][0], D, 20 + k, -1, 1);
        tu_fill_uniform(c[k][1], D, 30 + k, -1, 1);
    }
    road_rot r0 = {D, 8, c[0][0], c[0][1]}, r1 = {D, 64, c[1][0], c[1][1]}, r2 = {D, 2, c[2][0], c[2][1]};
    const road_rot *rots[3] = {&r0, &r1, &r2};
    const int32_t slot[12] = {0, 0, -1, 1, 2, 2, 2, -1, -1, 1, 0, 2};
    float y[12 * 64], base[12 * 64];
    tu_fill_uniform(base, rows * D, 5, -1, 1);
    memcpy(y, base, sizeof y);
    TU_OK(road_rot_forward_mixed(rots, 3, slot, rows, y, D));
    for (int64_t i = 0; i < rows; i++) {
        float one[64];
        memcpy(one, base + i * D, sizeof one);
        if (slot[i] >= 0) TU_OK(road_rot_forward(rots[slot[i]], 1, one, D));
        tu_assert_equal_f32("mixed row == single", y + i * D, one, D);
    }
    const int32_t badslot[1] = {3};
    TU_FAILS(road_rot_forward_mixed(rots, 3, badslot, 1, y, D), ROAD_ERR_INVALID_ARG, "slot 3");
    road_rot other = {32, 8, c[0][0], c[0][1]};
    const road_rot *mism[2] = {&r0, &other};
    TU_FAILS(road_rot_forward_mixed(mism, 2, slot, 1, y, D), ROAD_ERR_SHAPE, "features");
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_apply),
        cmocka_unit_test(test_golden_backward),
        cmocka_unit_test(test_fast_equals_reference),
        cmocka_unit_test(test_threaded_equals_reference),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_merge_identities),
        cmocka_unit_test(test_merge_refusals),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_mixed_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
