/*
 * tests/test_linear.c - the adapted linear layer (road_linear_*) against:
 *   1. an independent double-precision layer (linear_common.h; no road kernel is called for
 *      it): forward, merged weights, and central finite differences for road_linear_backward
 *      with two adapters in order;
 *   2. identities: identity init, merge/unmerge round trip, merged = unmerged forward, the
 *      coefficient cache;
 *   3. lifecycle rules and errors (status and message), out-of-memory injection, create errors.
 * PEFT golden cases are in test_linear_golden.c.
 */
#include "linear_common.h"

/* ---- 5. identities and the double reference ----------------------------------------------- */

static const road_variant all_variants[3] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};

static void test_identity_init(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(8, 16, 5, 101);
    float *y = falloc(r.rows * r.d), *yb = falloc(r.rows * r.d);
    for (int vi = 0; vi < 3; vi++) {
        road_linear *l = make_layer(r.in, r.d, r.w, r.b);
        TU_OK(road_linear_add_adapter(l, "id1", all_variants[vi], 4, true, 0));
        TU_OK(road_linear_add_adapter(l, "id2", all_variants[(vi + 1) % 3], 16, true, 0));
        const char *act[2] = {"id1", "id2"};
        TU_OK(road_linear_set_active(l, act, 2));
        TU_OK(road_linear_forward(l, r.rows, r.x, y));
        forward_base(l, r.rows, r.x, yb);
        tu_assert_equal_f32("identity-initialised adapters vs base", y, yb, r.rows * r.d);
        float *theta, *alpha;
        int64_t n;
        TU_OK(road_linear_adapter_params(l, "id1", &theta, &alpha, &n));
        for (int64_t i = 0; i < n; i++) {
            assert_true(theta[i] == 0.0f);
            assert_true(alpha[i] == 1.0f);
        }
        road_linear_free(l);
    }
    free(y);
    free(yb);
    rand_layer_free(&r);
}

static void test_merge_roundtrip(void **state) {
    (void)state;
    static const int32_t group_sizes[] = {2, 8, 32};
    rand_layer r = rand_layer_make(12, 32, 4, 202);
    const int64_t d = r.d, in = r.in, ny = r.rows * d;
    float *theta = falloc(2 * d), *alpha = falloc(2 * d), *ya = falloc(ny), *ym = falloc(ny);
    float *wref = falloc(d * in), *bref = falloc(d);
    double *wd = to_double(r.w, d * in), *bd = to_double(r.b, d);
    for (int vi = 0; vi < 3; vi++) {
        for (int gi = 0; gi < 3; gi++) {
            const road_variant v = all_variants[vi];
            const int32_t gs = group_sizes[gi];
            const int64_t np = n_params(v, d);
            rand_params(theta, alpha, np, 300 + (uint64_t)(vi * 3 + gi));
            road_linear *l = make_layer(in, d, r.w, r.b);
            add_with_params(l, "a", v, gs, theta, alpha, np);
            TU_OK(road_linear_forward(l, r.rows, r.x, ya));

            /* Merged weights vs the reference W' = R W, b' = R b (R applied to W's columns). */
            ref_adapter ra = ref_make(v, gs, d, theta, alpha);
            double *wt = dalloc(in * d), *bt = dalloc(d);
            for (int64_t o = 0; o < d; o++) {
                for (int64_t k = 0; k < in; k++) wt[k * d + o] = wd[o * in + k];
                bt[o] = bd[o];
            }
            ref_rotate(&ra, d, in, wt); /* rows of W^T are columns of W */
            ref_rotate(&ra, d, 1, bt);
            for (int64_t o = 0; o < d; o++)
                for (int64_t k = 0; k < in; k++) wref[o * in + k] = (float)wt[k * d + o];
            to_float(bt, d, bref);

            TU_OK(road_linear_merge(l, NULL, 0, false));
            tu_assert_close("merged W vs reference R W", road_linear_weight(l), wref, d * in,
                            GOLDEN_ATOL, GOLDEN_RTOL);
            tu_assert_close("merged b vs reference R b", road_linear_bias(l), bref, d,
                            GOLDEN_ATOL, GOLDEN_RTOL);
            TU_OK(road_linear_forward(l, r.rows, r.x, ym));
            tu_assert_close("merged forward vs unmerged forward", ym, ya, ny, GOLDEN_ATOL,
                            GOLDEN_RTOL);
            const double atol = UNMERGE_EPS_FACTOR * FLT_EPSILON * ref_block_condition(&ra, d) *
                                fmax(max_abs(r.w, d * in), max_abs(road_linear_weight(l), d * in));
            TU_OK(road_linear_unmerge(l));
            tu_assert_close("W after merge + unmerge", road_linear_weight(l), r.w, d * in, atol,
                            0.0);
            tu_assert_close("b after merge + unmerge", road_linear_bias(l), r.b, d, atol, 0.0);
            ref_free(&ra);
            free(wt);
            free(bt);
            road_linear_free(l);
        }
    }
    float *bufs[] = {theta, alpha, ya, ym, wref, bref};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(wd);
    free(bd);
    rand_layer_free(&r);
}

/* L = sum(ref_layer(x) * g) in double. */
static double ref_loss(const rand_layer *r, const double *w, const double *b,
                       const ref_adapter *ads, int n_ad, const double *x, const double *g,
                       double *yscratch) {
    ref_forward(r->in, r->d, w, b, ads, n_ad, r->rows, x, yscratch);
    double s = 0.0;
    for (int64_t i = 0; i < r->rows * r->d; i++) s += yscratch[i] * g[i];
    return s;
}

/* Central difference of ref_loss in *p. */
static double fd(double *p, const rand_layer *r, const double *w, const double *b,
                 const ref_adapter *ads, int n_ad, const double *x, const double *g, double *ys) {
    const double keep = *p;
    *p = keep + FD_STEP;
    const double lp = ref_loss(r, w, b, ads, n_ad, x, g, ys);
    *p = keep - FD_STEP;
    const double lm = ref_loss(r, w, b, ads, n_ad, x, g, ys);
    *p = keep;
    return (lp - lm) / (2.0 * FD_STEP);
}

/* Two active adapters p (vp, gsp) then q (vq, gsq), plus an inactive one whose gradients must
 * stay 0: road_linear_backward vs central differences of the double reference. */
static void check_backward_fd(road_variant vp, int32_t gsp, road_variant vq, int32_t gsq,
                              uint64_t seed) {
    rand_layer r = rand_layer_make(6, 16, 3, seed);
    const int64_t d = r.d, in = r.in, ny = r.rows * d, nx = r.rows * in;
    const road_variant v[2] = {vp, vq};
    const int32_t gsz[2] = {gsp, gsq};
    const char *names[2] = {"p", "q"};
    float *g = falloc(ny), *y = falloc(ny), *yb = falloc(ny), *dx = falloc(nx);
    float *want = falloc(nx > ny ? nx : ny);
    float *grad_first[2][2];
    ref_adapter ra[2];
    tu_fill_uniform(g, ny, seed + 5, -1.0f, 1.0f);

    road_linear *l = make_layer(in, d, r.w, r.b);
    for (int k = 0; k < 2; k++) {
        const int64_t np = n_params(v[k], d);
        float *theta = falloc(np), *alpha = falloc(np);
        rand_params(theta, alpha, np, seed + 11 + (uint64_t)k);
        add_with_params(l, names[k], v[k], gsz[k], theta, alpha, np);
        ra[k] = ref_make(v[k], gsz[k], d, theta, alpha);
        free(theta);
        free(alpha);
    }
    TU_OK(road_linear_add_adapter(l, "unused", ROAD_VARIANT_2, 2, false, seed));
    TU_OK(road_linear_set_active(l, names, 2));

    double *wd = to_double(r.w, d * in), *bd = to_double(r.b, d), *xd = to_double(r.x, nx);
    double *gd = to_double(g, ny), *ys = dalloc(ny);

    /* Forward vs the reference. */
    TU_OK(road_linear_forward(l, r.rows, r.x, y));
    ref_forward(in, d, wd, bd, ra, 2, r.rows, xd, ys);
    to_float(ys, ny, want);
    tu_assert_close("two adapters: forward vs double reference", y, want, ny, GOLDEN_ATOL,
                    GOLDEN_RTOL);

    forward_base(l, r.rows, r.x, yb);
    road_linear_zero_grads(l);
    TU_OK(road_linear_backward(l, r.rows, yb, g, dx));
    for (int64_t i = 0; i < nx; i++) want[i] = (float)fd(&xd[i], &r, wd, bd, ra, 2, xd, gd, ys);
    tu_assert_close("dx vs finite differences", dx, want, nx, FD_ATOL, FD_RTOL);
    for (int k = 0; k < 2; k++) {
        float *grad[2];
        int64_t n = 0;
        TU_OK(road_linear_adapter_grads(l, names[k], &grad[0], &grad[1], &n));
        assert_int_equal(n, ra[k].n);
        float *fdv = falloc(n);
        for (int t = 0; t < 2; t++) {
            double *p = t ? ra[k].alpha : ra[k].theta;
            for (int64_t i = 0; i < n; i++) fdv[i] = (float)fd(&p[i], &r, wd, bd, ra, 2, xd, gd, ys);
            char msg[96];
            snprintf(msg, sizeof msg, "adapter %s (%s, gs %d): d%s vs finite differences",
                     names[k], road_variant_name(v[k]), (int)gsz[k], t ? "alpha" : "theta");
            tu_assert_close(msg, grad[t], fdv, n, FD_ATOL, FD_RTOL);
            grad_first[k][t] = falloc(n);
            memcpy(grad_first[k][t], grad[t], (size_t)n * sizeof(float));
        }
        free(fdv);
    }
    /* The inactive adapter gets nothing; a second backward accumulates (+=): exactly twice. */
    float *ug[2];
    int64_t un = 0;
    TU_OK(road_linear_adapter_grads(l, "unused", &ug[0], &ug[1], &un));
    for (int64_t i = 0; i < un; i++) assert_true(ug[0][i] == 0.0f && ug[1][i] == 0.0f);
    TU_OK(road_linear_backward(l, r.rows, yb, g, NULL));
    for (int k = 0; k < 2; k++) {
        float *grad[2];
        int64_t n = 0;
        TU_OK(road_linear_adapter_grads(l, names[k], &grad[0], &grad[1], &n));
        for (int t = 0; t < 2; t++) {
            for (int64_t i = 0; i < n; i++) grad_first[k][t][i] *= 2.0f;
            tu_assert_equal_f32("second backward accumulates", grad[t], grad_first[k][t], n);
            free(grad_first[k][t]);
        }
    }
    road_linear_free(l);
    for (int k = 0; k < 2; k++) ref_free(&ra[k]);
    float *bufs[] = {g, y, yb, dx, want};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    double *dbufs[] = {wd, bd, xd, gd, ys};
    for (size_t i = 0; i < sizeof dbufs / sizeof dbufs[0]; i++) free(dbufs[i]);
    rand_layer_free(&r);
}

static void test_backward_finite_differences(void **state) {
    (void)state;
    check_backward_fd(ROAD_VARIANT_4, 4, ROAD_VARIANT_1, 8, 401);
    check_backward_fd(ROAD_VARIANT_1, 2, ROAD_VARIANT_2, 16, 402);
    check_backward_fd(ROAD_VARIANT_2, 8, ROAD_VARIANT_4, 16, 403);
}

static void test_coefficient_cache(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(4, 8, 2, 501);
    const int64_t d = r.d, ny = r.rows * d;
    float *ya = falloc(ny), *yb = falloc(ny), *want = falloc(ny);
    road_linear *l = make_layer(r.in, d, r.w, r.b);
    TU_OK(road_linear_add_adapter(l, "a", ROAD_VARIANT_2, 4, false, 7));
    TU_OK(road_linear_forward(l, r.rows, r.x, ya));

    float *theta, *alpha;
    int64_t n;
    TU_OK(road_linear_adapter_params(l, "a", &theta, &alpha, &n));
    assert_int_equal(n, d);
    for (int64_t i = 0; i < n; i++) theta[i] += 0.5f;
    TU_OK(road_linear_forward(l, r.rows, r.x, yb));
    tu_assert_equal_f32("stale parameters: cached coefficients still used", yb, ya, ny);

    TU_OK(road_linear_params_changed(l, "a"));
    TU_OK(road_linear_forward(l, r.rows, r.x, yb));
    ref_adapter ra = ref_make(ROAD_VARIANT_2, 4, d, theta, alpha);
    double *wd = to_double(r.w, d * r.in), *bd = to_double(r.b, d), *xd = to_double(r.x, r.rows * r.in);
    double *yd = dalloc(ny);
    ref_forward(r.in, d, wd, bd, &ra, 1, r.rows, xd, yd);
    to_float(yd, ny, want);
    tu_assert_close("after params_changed vs reference", yb, want, ny, GOLDEN_ATOL, GOLDEN_RTOL);
    double diff = 0.0;
    for (int64_t i = 0; i < ny; i++) diff = fmax(diff, fabs((double)yb[i] - ya[i]));
    assert_true(diff > 1e-3); /* the change is visible, not rounding */
    TU_FAILS(road_linear_params_changed(l, "nope"), ROAD_ERR_NOT_FOUND, "nope");

    ref_free(&ra);
    road_linear_free(l);
    free(ya);
    free(yb);
    free(want);
    free(wd);
    free(bd);
    free(xd);
    free(yd);
    rand_layer_free(&r);
}

/* ---- 6. lifecycle and errors --------------------------------------------------------------- */

static void test_add_adapter_errors(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(4, 24, 1, 601);
    road_linear *l = make_layer(r.in, r.d, r.w, r.b);
    TU_OK(road_linear_add_adapter(l, "a", ROAD_VARIANT_2, 4, true, 0));
    assert_int_equal(road_linear_active_count(l), 1); /* the first adapter becomes active */
    assert_string_equal(road_linear_active_name(l, 0), "a");

    TU_FAILS(road_linear_add_adapter(l, "a", ROAD_VARIANT_1, 2, true, 0), ROAD_ERR_EXISTS,
             "already exists");
    TU_FAILS(road_linear_add_adapter(l, ROAD_BASE_NAME, ROAD_VARIANT_1, 2, true, 0),
             ROAD_ERR_INVALID_ARG, "reserved");
    TU_FAILS(road_linear_add_adapter(l, "x.y", ROAD_VARIANT_1, 2, true, 0), ROAD_ERR_INVALID_ARG,
             "contains '.'");
    TU_FAILS(road_linear_add_adapter(l, "x/y", ROAD_VARIANT_1, 2, true, 0), ROAD_ERR_INVALID_ARG,
             "contains '/'");
    TU_FAILS(road_linear_add_adapter(l, "x y", ROAD_VARIANT_1, 2, true, 0), ROAD_ERR_INVALID_ARG,
             "spaces");
    TU_FAILS(road_linear_add_adapter(l, "", ROAD_VARIANT_1, 2, true, 0), ROAD_ERR_INVALID_ARG,
             "empty");
    TU_FAILS(road_linear_add_adapter(l, "g", ROAD_VARIANT_1, 3, true, 0), ROAD_ERR_CONFIG,
             "positive even number");
    TU_FAILS(road_linear_add_adapter(l, "g", ROAD_VARIANT_1, 0, true, 0), ROAD_ERR_CONFIG,
             "positive even number");
    TU_FAILS(road_linear_add_adapter(l, "g", ROAD_VARIANT_1, -2, true, 0), ROAD_ERR_CONFIG,
             "positive even number");
    TU_FAILS(road_linear_add_adapter(l, "g", ROAD_VARIANT_1, 16, true, 0), ROAD_ERR_SHAPE,
             "not divisible by group_size 16");
    assert_non_null(strstr(road_last_error(), "for example 12")); /* the largest even divisor */
    TU_FAILS(road_linear_add_adapter(l, "g", (road_variant)3, 2, true, 0), ROAD_ERR_CONFIG,
             "invalid variant");
    assert_int_equal(road_linear_adapter_count(l), 1); /* failures add nothing */
    assert_false(road_linear_has_adapter(l, "g"));

    TU_OK(road_linear_add_adapter(l, "b", ROAD_VARIANT_4, 8, true, 0));
    assert_int_equal(road_linear_active_count(l), 1); /* later adapters do not become active */
    assert_string_equal(road_linear_active_name(l, 0), "a");
    assert_string_equal(road_linear_adapter_name(l, 1), "b");

    float p[64] = {0};
    TU_FAILS(road_linear_set_params(l, "a", p, p, 23), ROAD_ERR_SHAPE,
             "has 24 parameters per tensor, got 23");
    TU_FAILS(road_linear_set_params(l, "b", p, p, 24), ROAD_ERR_SHAPE,
             "has 48 parameters per tensor, got 24");
    TU_FAILS(road_linear_set_params(l, "zz", p, p, 24), ROAD_ERR_NOT_FOUND, "no adapter named 'zz'");
    const char *dup[2] = {"a", "a"};
    TU_FAILS(road_linear_set_active(l, dup, 2), ROAD_ERR_INVALID_ARG, "listed twice");
    road_linear_free(l);
    road_linear_free(NULL); /* a no-op */
    rand_layer_free(&r);
}

static void test_delete_rules(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(4, 8, 1, 602);
    road_linear *l = make_layer(r.in, r.d, r.w, r.b);
    const char *names[3] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) TU_OK(road_linear_add_adapter(l, names[i], ROAD_VARIANT_1, 2, true, 0));

    /* The only active adapter deleted: the first remaining one becomes active. */
    TU_OK(road_linear_set_active(l, &names[1], 1));
    TU_OK(road_linear_delete_adapter(l, "b"));
    assert_int_equal(road_linear_adapter_count(l), 2);
    assert_int_equal(road_linear_active_count(l), 1);
    assert_string_equal(road_linear_active_name(l, 0), "a");

    /* One of several active deleted: the others stay active. */
    const char *ac[2] = {"a", "c"};
    TU_OK(road_linear_set_active(l, ac, 2));
    TU_OK(road_linear_delete_adapter(l, "a"));
    assert_int_equal(road_linear_active_count(l), 1);
    assert_string_equal(road_linear_active_name(l, 0), "c");

    TU_FAILS(road_linear_delete_adapter(l, "b"), ROAD_ERR_NOT_FOUND, "no adapter named 'b'");
    TU_OK(road_linear_delete_adapter(l, "c"));
    assert_int_equal(road_linear_adapter_count(l), 0);
    assert_int_equal(road_linear_active_count(l), 0);
    road_linear_free(l);
    rand_layer_free(&r);
}

static void test_merge_state_rules(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(5, 8, 4, 603);
    const int64_t d = r.d, in = r.in, ny = r.rows * d;
    float ta[4], aa[4], theta[8], alpha[8];
    float *y = falloc(ny), *yb = falloc(ny), *wcopy = falloc(d * in);
    road_linear *l = make_layer(in, d, r.w, r.b);
    road_linear *plain = make_layer(in, d, r.w, r.b);
    rand_params(ta, aa, 4, 11);
    add_with_params(l, "a", ROAD_VARIANT_1, 2, ta, aa, 4);
    rand_params(theta, alpha, 8, 12);
    add_with_params(l, "b", ROAD_VARIANT_2, 4, theta, alpha, 8);

    const char *mixed_names[2] = {"a", "b"};
    TU_FAILS(road_linear_forward_mixed(l, 2, 2, mixed_names, 1, r.x, y), ROAD_ERR_SHAPE,
             "got 1 adapter names for a batch of 2 sequences");

    TU_OK(road_linear_merge(l, NULL, 0, false)); /* the active one: a */
    assert_int_equal(road_linear_merged_count(l), 1);
    TU_FAILS(road_linear_delete_adapter(l, "a"), ROAD_ERR_STATE, "unmerge before deleting");
    TU_FAILS(road_linear_forward_mixed(l, 2, 2, mixed_names, 2, r.x, y), ROAD_ERR_STATE,
             "merged");
    TU_FAILS(road_linear_backward(l, r.rows, y, y, NULL), ROAD_ERR_STATE, "merged");

    /* Merging it again is skipped: the weights do not move. */
    memcpy(wcopy, road_linear_weight(l), (size_t)(d * in) * sizeof(float));
    const char *only_a[1] = {"a"};
    TU_OK(road_linear_merge(l, only_a, 1, false));
    TU_OK(road_linear_merge(l, NULL, 0, true));
    assert_int_equal(road_linear_merged_count(l), 1);
    tu_assert_equal_f32("merge of a merged adapter is skipped", road_linear_weight(l), wcopy, d * in);

    /* Disabled while merged: forward unmerges first and returns the base output. */
    road_linear_enable_adapters(l, false);
    TU_OK(road_linear_forward(l, r.rows, r.x, y));
    assert_int_equal(road_linear_merged_count(l), 0);
    ref_adapter ra = ref_make(ROAD_VARIANT_1, 2, d, ta, aa);
    const double atol = UNMERGE_EPS_FACTOR * FLT_EPSILON * ref_block_condition(&ra, d) *
                        fmax(max_abs(r.w, d * in), max_abs(wcopy, d * in));
    ref_free(&ra);
    tu_assert_close("W after a disabled forward unmerged", road_linear_weight(l), r.w, d * in,
                    atol, 0.0);
    TU_OK(road_linear_forward(plain, r.rows, r.x, yb));
    tu_assert_close("disabled forward of a merged layer vs base", y, yb, ny, GOLDEN_ATOL,
                    GOLDEN_RTOL);
    TU_OK(road_linear_delete_adapter(l, "a")); /* no longer merged */
    road_linear_free(l);
    road_linear_free(plain);
    free(y);
    free(yb);
    free(wcopy);
    rand_layer_free(&r);
}

/* A refused merge leaves W and b bit for bit as they were and merges nothing. */
static void check_refused_merge(road_linear *l, const char *name, bool safe, const char *needle,
                                const float *w, const float *b) {
    const int64_t d = road_linear_out_features(l), in = road_linear_in_features(l);
    const char *names[1] = {name};
    TU_FAILS(road_linear_merge(l, names, 1, safe), ROAD_ERR_NUMERIC, needle);
    assert_non_null(strstr(road_last_error(), name));
    assert_int_equal(road_linear_merged_count(l), 0);
    tu_assert_equal_f32("W after a refused merge", road_linear_weight(l), w, d * in);
    tu_assert_equal_f32("b after a refused merge", road_linear_bias(l), b, d);
}

static void test_merge_numeric_refusals(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(5, 8, 1, 604);
    road_linear *l = make_layer(r.in, r.d, r.w, r.b);
    float theta[16], alpha[16];

    rand_params(theta, alpha, 4, 21);
    alpha[1] = 0.0f; /* pair (1, 3) of road_1 gs 4 collapses to 0: a singular block */
    add_with_params(l, "zero", ROAD_VARIANT_1, 4, theta, alpha, 4);
    rand_params(theta, alpha, 8, 22);
    add_with_params(l, "nan", ROAD_VARIANT_2, 4, theta, alpha, 8);
    /* road_linear_set_params refuses a NaN (nothing changes); a NaN can still come from
     * writing the parameters in place (a diverged training step), and merge refuses it. */
    theta[5] = NAN;
    TU_FAILS(road_linear_set_params(l, "nan", theta, alpha, 8), ROAD_ERR_NUMERIC, "theta[5] is nan");
    float *pt = NULL, *pa = NULL;
    int64_t pn = 0;
    TU_OK(road_linear_adapter_params(l, "nan", &pt, &pa, &pn));
    assert_true(isfinite(pt[5]));
    pt[5] = NAN;
    TU_OK(road_linear_params_changed(l, "nan"));
    for (int safe = 0; safe < 2; safe++) {
        check_refused_merge(l, "zero", safe, "singular", r.w, r.b);
        check_refused_merge(l, "nan", safe, "not finite", r.w, r.b);
    }
    road_linear_free(l);

    /* Huge weights: R W overflows to Inf; a safe merge refuses and leaves W as it was. */
    for (int64_t o = 0; o < r.d; o++)
        for (int64_t k = 0; k < r.in; k++) r.w[o * r.in + k] = (o % 2 ? -3e38f : 3e38f);
    l = make_layer(r.in, r.d, r.w, r.b);
    for (int i = 0; i < 4; i++) {
        theta[i] = 0.7f;
        alpha[i] = 1.2f;
    }
    add_with_params(l, "big", ROAD_VARIANT_1, 2, theta, alpha, 4);
    check_refused_merge(l, "big", true, "NaN or Inf", r.w, r.b);
    road_linear_free(l);
    rand_layer_free(&r);
}

static void test_unmerge_order(void **state) {
    (void)state;
    rand_layer r = rand_layer_make(6, 16, 1, 605);
    const int64_t d = r.d, in = r.in;
    float ta[32], aa[32], tb[32], ab[32];
    rand_params(ta, aa, 8, 31);
    rand_params(tb, ab, 32, 32);
    road_linear *l = make_layer(in, d, r.w, r.b);
    add_with_params(l, "a", ROAD_VARIANT_1, 4, ta, aa, 8);
    add_with_params(l, "b", ROAD_VARIANT_4, 8, tb, ab, 32);
    const char *na[1] = {"a"}, *nb[1] = {"b"};
    TU_OK(road_linear_merge(l, na, 1, false));
    TU_OK(road_linear_merge(l, nb, 1, false));
    assert_int_equal(road_linear_merged_count(l), 2);
    assert_string_equal(road_linear_merged_name(l, 0), "a");
    assert_string_equal(road_linear_merged_name(l, 1), "b");

    /* W' = R_b R_a W by the reference (the two do not commute: different group sizes). */
    ref_adapter ra[2] = {ref_make(ROAD_VARIANT_1, 4, d, ta, aa), ref_make(ROAD_VARIANT_4, 8, d, tb, ab)};
    double *wt = dalloc(in * d);
    float *wref = falloc(d * in);
    for (int64_t o = 0; o < d; o++)
        for (int64_t k = 0; k < in; k++) wt[k * d + o] = r.w[o * in + k];
    ref_rotate(&ra[0], d, in, wt);
    ref_rotate(&ra[1], d, in, wt);
    for (int64_t o = 0; o < d; o++)
        for (int64_t k = 0; k < in; k++) wref[o * in + k] = (float)wt[k * d + o];
    tu_assert_close("W after merging a then b vs R_b R_a W", road_linear_weight(l), wref, d * in,
                    GOLDEN_ATOL, GOLDEN_RTOL);

    const double atol = UNMERGE_EPS_FACTOR * FLT_EPSILON * ref_block_condition(&ra[0], d) *
                        ref_block_condition(&ra[1], d) *
                        fmax(max_abs(r.w, d * in), max_abs(wref, d * in));
    TU_OK(road_linear_unmerge(l));
    assert_int_equal(road_linear_merged_count(l), 0);
    tu_assert_close("W after unmerge (b first, then a)", road_linear_weight(l), r.w, d * in, atol,
                    0.0);
    tu_assert_close("b after unmerge (b first, then a)", road_linear_bias(l), r.b, d, atol, 0.0);
    TU_OK(road_linear_unmerge(l)); /* nothing merged: a no-op */
    ref_free(&ra[0]);
    ref_free(&ra[1]);
    free(wt);
    free(wref);
    road_linear_free(l);
    rand_layer_free(&r);
}

/* ---- 7. out of memory ---------------------------------------------------------------------- */

enum { OOM_I = 6, OOM_D = 16, OOM_SEQ = 3, OOM_T = 2, OOM_R = OOM_SEQ * OOM_T, OOM_STEPS = 11 };

typedef struct oom_data {
    float w[OOM_D * OOM_I], b[OOM_D], x[OOM_R * OOM_I], g[OOM_R * OOM_D];
} oom_data;

typedef struct oom_out {
    road_linear *l;
    float y[OOM_R * OOM_D], ym[OOM_R * OOM_D], yb[OOM_R * OOM_D], dx[OOM_R * OOM_I];
    float wm[OOM_D * OOM_I];      /* merged W */
    float grads[2][2][2 * OOM_D]; /* [adapter][dtheta, dalpha][P] */
} oom_out;

/* Step `step` of the sequence; each is safe to retry after it failed. */
static road_status oom_step(int step, oom_out *o, const oom_data *in) {
    static const char *const ab[2] = {"a", "b"};
    static const char *const mixed[OOM_SEQ] = {"a", ROAD_BASE_NAME, "b"};
    road_linear_params p = road_linear_default_params();
    road_status s = ROAD_OK;
    switch (step) {
    case 0:
        p.in_features = OOM_I;
        p.out_features = OOM_D;
        p.weight = (float *)in->w;
        p.bias = (float *)in->b;
        return road_linear_create(&p, &o->l);
    case 1: return road_linear_add_adapter(o->l, "a", ROAD_VARIANT_2, 4, false, 11);
    case 2: return road_linear_add_adapter(o->l, "b", ROAD_VARIANT_4, 8, false, 12);
    case 3: return road_linear_set_active(o->l, ab, 2);
    case 4: return road_linear_forward(o->l, OOM_R, in->x, o->y);
    case 5: return road_linear_forward_mixed(o->l, OOM_SEQ, OOM_T, mixed, OOM_SEQ, in->x, o->ym);
    case 6:
        s = road_linear_merge(o->l, NULL, 0, true);
        if (s == ROAD_OK) memcpy(o->wm, road_linear_weight(o->l), sizeof o->wm);
        return s;
    case 7: return road_linear_unmerge(o->l);
    case 8:
        road_linear_enable_adapters(o->l, false);
        s = road_linear_forward(o->l, OOM_R, in->x, o->yb);
        road_linear_enable_adapters(o->l, true);
        return s;
    case 9:
        road_linear_zero_grads(o->l);
        return road_linear_backward(o->l, OOM_R, o->yb, in->g, o->dx);
    case 10:
        for (int k = 0; k < 2 && s == ROAD_OK; k++) {
            float *dt, *da;
            int64_t n = 0;
            s = road_linear_adapter_grads(o->l, ab[k], &dt, &da, &n);
            if (s == ROAD_OK) {
                memcpy(o->grads[k][0], dt, (size_t)n * sizeof(float));
                memcpy(o->grads[k][1], da, (size_t)n * sizeof(float));
            }
        }
        return s;
    }
    return ROAD_ERR_INTERNAL;
}

/* Run the sequence with the allocation after k successful ones failing (k < 0: none). The
 * failed step must report ROAD_ERR_NO_MEMORY; injection is one-shot, so the step is then
 * retried and it and every later step must succeed (a failure leaves the layer usable).
 * Returns whether a failure happened. */
static bool oom_run(int64_t k, oom_out *o, const oom_data *in) {
    bool failed = false;
    memset(o, 0, sizeof *o);
    road__alloc_fail_after(k);
    for (int step = 0; step < OOM_STEPS; step++) {
        road_status s = oom_step(step, o, in);
        if (s == ROAD_OK) continue;
        road__alloc_fail_after(-1);
        if (failed || s != ROAD_ERR_NO_MEMORY || !strstr(road_last_error(), "out of memory")) {
            print_error("k=%lld: step %d returned %s (%s), expected one no_memory failure\n",
                        (long long)k, step, road_status_name(s), road_last_error());
            fail();
        }
        failed = true;
        s = oom_step(step, o, in);
        if (s != ROAD_OK) {
            print_error("k=%lld: step %d failed again after an injected failure: %s (%s)\n",
                        (long long)k, step, road_status_name(s), road_last_error());
            fail();
        }
    }
    road__alloc_fail_after(-1);
    road_linear_free(o->l);
    o->l = NULL;
    return failed;
}

static void test_out_of_memory(void **state) {
    (void)state;
    oom_data *in = tu_alloc(sizeof *in);
    oom_out *want = tu_alloc(sizeof *want), *got = tu_alloc(sizeof *got);
    tu_fill_uniform(in->w, OOM_D * OOM_I, 701, -1.0f, 1.0f);
    tu_fill_uniform(in->b, OOM_D, 702, -0.5f, 0.5f);
    tu_fill_uniform(in->x, OOM_R * OOM_I, 703, -1.0f, 1.0f);
    tu_fill_uniform(in->g, OOM_R * OOM_D, 704, -1.0f, 1.0f);
    const int64_t live0 = road__alloc_live_bytes();
    assert_false(oom_run(-1, want, in));
    assert_int_equal(road__alloc_live_bytes(), live0);

    int64_t k = 0;
    for (; k < 100000; k++) {
        const bool failed = oom_run(k, got, in);
        if (road__alloc_live_bytes() != live0) {
            print_error("k=%lld: %lld bytes leaked\n", (long long)k,
                        (long long)(road__alloc_live_bytes() - live0));
            fail();
        }
        /* After recovering, the results are those of the run without failures. */
        char kk[32];
        snprintf(kk, sizeof kk, "k=%lld", (long long)k);
        tu_assert_equal_f32(what(kk, "forward"), got->y, want->y, OOM_R * OOM_D);
        tu_assert_equal_f32(what(kk, "forward_mixed"), got->ym, want->ym, OOM_R * OOM_D);
        tu_assert_equal_f32(what(kk, "merged W"), got->wm, want->wm, OOM_D * OOM_I);
        tu_assert_equal_f32(what(kk, "base forward after unmerge"), got->yb, want->yb,
                            OOM_R * OOM_D);
        tu_assert_equal_f32(what(kk, "dx"), got->dx, want->dx, OOM_R * OOM_I);
        tu_assert_equal_f32(what(kk, "grads"), &got->grads[0][0][0], &want->grads[0][0][0],
                            (int64_t)(sizeof got->grads / sizeof(float)));
        if (!failed) break;
    }
    assert_true(k > 10); /* the sequence allocates: injection reached it */
    assert_true(k < 100000);
    free(in);
    free(want);
    free(got);
}

static int reset_alloc_injection(void **state) {
    (void)state;
    road__alloc_fail_after(-1);
    return 0;
}

/* ---- 8. create errors ---------------------------------------------------------------------- */

static void test_create_errors(void **state) {
    (void)state;
    float w[6] = {1, 2, 3, 4, 5, 6};
    road_linear *l = (road_linear *)(uintptr_t)1; /* must be reset to NULL on failure */
    road_linear_params p = road_linear_default_params();
    p.in_features = 3;
    p.out_features = 2;
    TU_FAILS(road_linear_create(&p, &l), ROAD_ERR_INVALID_ARG, "weight is required");
    assert_null(l);
    TU_FAILS(road_linear_create(NULL, &l), ROAD_ERR_INVALID_ARG, "weight is required");
    TU_FAILS(road_linear_create(&p, NULL), ROAD_ERR_INVALID_ARG, "out is NULL");
    p.weight = w;
    p.in_features = 0;
    TU_FAILS(road_linear_create(&p, &l), ROAD_ERR_SHAPE, "must be positive");
    assert_null(l);
    p.in_features = 3;
    p.out_features = 0;
    TU_FAILS(road_linear_create(&p, &l), ROAD_ERR_SHAPE, "must be positive");
    p.out_features = -2;
    TU_FAILS(road_linear_create(&p, &l), ROAD_ERR_SHAPE, "must be positive");

    /* borrow = true: the layer works on the caller's array. */
    p.out_features = 2;
    p.borrow = true;
    TU_OK(road_linear_create(&p, &l));
    assert_ptr_equal(road_linear_weight(l), w);
    assert_null(road_linear_bias(l));
    assert_int_equal(road_linear_in_features(l), 3);
    assert_int_equal(road_linear_out_features(l), 2);
    road_linear_free(l);
}


int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_init),
        cmocka_unit_test(test_merge_roundtrip),
        cmocka_unit_test(test_backward_finite_differences),
        cmocka_unit_test(test_coefficient_cache),
        cmocka_unit_test(test_add_adapter_errors),
        cmocka_unit_test(test_delete_rules),
        cmocka_unit_test(test_merge_state_rules),
        cmocka_unit_test(test_merge_numeric_refusals),
        cmocka_unit_test(test_unmerge_order),
        cmocka_unit_test_teardown(test_out_of_memory, reset_alloc_injection),
        cmocka_unit_test(test_create_errors),
    };
    return cmocka_run_group_tests_name("linear", tests, NULL, NULL);
}
