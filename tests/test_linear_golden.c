/*
 * tests/test_linear_golden.c - the adapted linear layer (road_linear_*, PEFT's road.Linear)
 * against PEFT golden values, every case of each sidecar JSON: merge (forward, R, merge,
 * unmerge), compose (several adapters in order, merged, disabled), mixed_batch (per-row
 * adapters; rows bit-identical to single-adapter rows) and e2e (a tiny MLP with RoAd on two
 * layers: outputs, merged weights, and gradients by a hand-written backprop through
 * road_linear_backward).
 */
#include "linear_common.h"

/* ---- 1. golden: merge ------------------------------------------------------------------- */

/* Every entry of R outside the 2x2 block structure (i, i) and (i, partner(i)) must be 0. */
static void check_block_structure(const char *id, const float *dense, int64_t d, int64_t gs) {
    const int64_t h = gs / 2;
    for (int64_t i = 0; i < d; i++) {
        int64_t k = i % gs, partner = k < h ? i + h : i - h;
        for (int64_t j = 0; j < d; j++) {
            if (j == i || j == partner) continue;
            if (dense[i * d + j] != 0.0f) {
                print_error("%s: R[%lld, %lld] = %.9g outside the 2x2 blocks, expected 0\n", id,
                            (long long)i, (long long)j, (double)dense[i * d + j]);
                fail();
            }
        }
    }
}

static void test_golden_merge(void **state) {
    (void)state;
    cJSON *root = tu_load_json("golden/merge.json");
    road_st_file *f = tu_open_golden("golden/merge.safetensors");
    const cJSON *c;
    cJSON_ArrayForEach(c, golden_cases(root, N_MERGE_CASES)) {
        const char *id = jstr(c, "id");
        const road_variant v = variant_of(jstr(c, "variant"));
        const int32_t gs = (int32_t)jint(c, "group_size");
        const int64_t d = jint(c, "out_features"), in = jint(c, "in_features");
        const int64_t rows = shape_rows(jget(c, "x_shape"), in), np = n_params(v, d);
        const bool has_bias = jbool(c, "bias");
        const float *w = gold(f, id, "W", d * in), *x = gold(f, id, "x", rows * in);
        const float *b = has_bias ? gold(f, id, "b", d) : NULL;
        if (!has_bias) assert_null(tu_golden(f, id, "b", NULL));
        const float *theta = gold(f, id, "theta", np), *alpha = gold(f, id, "alpha", np);
        float *y = falloc(rows * d), *yb = falloc(rows * d), *dense = falloc(d * d);

        road_linear *l = make_layer(in, d, w, b);
        TU_OK(road_linear_add_adapter(l, "default", v, gs, true, 0));
        /* Identity init is the base output bit for bit; this also fills the coefficient cache,
         * which set_params must then invalidate. */
        TU_OK(road_linear_forward(l, rows, x, y));
        forward_base(l, rows, x, yb);
        tu_assert_equal_f32(what(id, "identity forward"), y, yb, rows * d);
        tu_assert_close(what(id, "y_base"), yb, gold(f, id, "y_base", rows * d), rows * d,
                        GOLDEN_ATOL, GOLDEN_RTOL);

        TU_OK(road_linear_set_params(l, "default", theta, alpha, np));
        TU_OK(road_linear_forward(l, rows, x, y));
        tu_assert_close(what(id, "y_adapter"), y, gold(f, id, "y_adapter", rows * d), rows * d,
                        GOLDEN_ATOL, GOLDEN_RTOL);

        road_rot r;
        TU_OK(road_linear_adapter_rot(l, "default", &r));
        assert_int_equal(r.out, d);
        assert_int_equal(r.group_size, gs);
        TU_OK(road_rot_dense(&r, dense));
        tu_assert_close(what(id, "R"), dense, gold(f, id, "R", d * d), d * d, GOLDEN_ATOL,
                        GOLDEN_RTOL);
        check_block_structure(id, dense, d, gs);

        TU_OK(road_linear_merge(l, NULL, 0, false));
        assert_int_equal(road_linear_merged_count(l), 1);
        assert_string_equal(road_linear_merged_name(l, 0), "default");
        tu_assert_close(what(id, "W_merged"), road_linear_weight(l), gold(f, id, "W_merged", d * in),
                        d * in, GOLDEN_ATOL, GOLDEN_RTOL);
        if (has_bias)
            tu_assert_close(what(id, "b_merged"), road_linear_bias(l), gold(f, id, "b_merged", d),
                            d, GOLDEN_ATOL, GOLDEN_RTOL);
        else
            assert_null(road_linear_bias(l));
        TU_OK(road_linear_forward(l, rows, x, y));
        tu_assert_close(what(id, "y_merged"), y, gold(f, id, "y_merged", rows * d), rows * d,
                        GOLDEN_ATOL, GOLDEN_RTOL);

        TU_OK(road_linear_unmerge(l));
        assert_int_equal(road_linear_merged_count(l), 0);
        const double atol = jnum(c, "suggested_unmerge_atol");
        tu_assert_close(what(id, "W_unmerged"), road_linear_weight(l),
                        gold(f, id, "W_unmerged", d * in), d * in, atol, UNMERGE_RTOL);
        tu_assert_close(what(id, "W after unmerge vs W"), road_linear_weight(l), w, d * in, atol,
                        UNMERGE_RTOL);
        if (has_bias) {
            tu_assert_close(what(id, "b_unmerged"), road_linear_bias(l),
                            gold(f, id, "b_unmerged", d), d, atol, UNMERGE_RTOL);
            tu_assert_close(what(id, "b after unmerge vs b"), road_linear_bias(l), b, d, atol,
                            UNMERGE_RTOL);
        }
        road_linear_free(l);
        free(y);
        free(yb);
        free(dense);
    }
    road_st_close(f);
    cJSON_Delete(root);
}

/* ---- 2. golden: compose ----------------------------------------------------------------- */

/* Add the case's adapters (JSON "adapters", in order) with their golden theta.<n>, alpha.<n>;
 * names[] gets their names, refs[] (if not NULL) double copies. Returns the count. */
static int add_case_adapters(road_linear *l, const road_st_file *f, const cJSON *c,
                             const char *id, int64_t d, const char **names, ref_adapter *refs) {
    int n = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, jget(c, "adapters")) {
        assert_true(n < MAX_NAMES);
        const road_variant v = variant_of(jstr(a, "variant"));
        const int32_t gs = (int32_t)jint(a, "group_size");
        const int64_t np = n_params(v, d);
        assert_int_equal(jint(a, "param_size"), np);
        char tk[128], ak[128];
        snprintf(tk, sizeof tk, "theta.%s", a->string);
        snprintf(ak, sizeof ak, "alpha.%s", a->string);
        const float *theta = gold(f, id, tk, np), *alpha = gold(f, id, ak, np);
        add_with_params(l, a->string, v, gs, theta, alpha, np);
        if (refs) refs[n] = ref_make(v, gs, d, theta, alpha);
        names[n++] = a->string;
    }
    assert_int_equal(road_linear_adapter_count(l), n);
    return n;
}

static int name_index(const char *const *names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

static void test_golden_compose(void **state) {
    (void)state;
    cJSON *root = tu_load_json("golden/compose.json");
    road_st_file *f = tu_open_golden("golden/compose.safetensors");
    int n_merged = 0, n_disabled = 0, n_plain = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, golden_cases(root, N_COMPOSE_CASES)) {
        const char *id = jstr(c, "id");
        const int64_t d = jint(c, "out_features"), in = jint(c, "in_features");
        const int64_t rows = shape_rows(jget(c, "x_shape"), in), ny = rows * d;
        const float *w = gold(f, id, "W", d * in), *x = gold(f, id, "x", rows * in);
        const float *b = jbool(c, "bias") ? gold(f, id, "b", d) : NULL;
        const char *names[MAX_NAMES], *active[MAX_NAMES];
        ref_adapter refs[MAX_NAMES];
        float *y = falloc(ny);

        road_linear *l = make_layer(in, d, w, b);
        const int n_ad = add_case_adapters(l, f, c, id, d, names, refs);
        const int n_act = jnames(jget(c, "active_adapters"), active);
        TU_OK(road_linear_set_active(l, active, n_act));
        assert_int_equal(road_linear_active_count(l), n_act);

        const bool merged_case = tu_golden(f, id, "W_merged", NULL) != NULL;
        const bool disabled_case = strstr(jstr(c, "semantics"), "enable_adapters(False)") != NULL;
        if (disabled_case) {
            road_linear_enable_adapters(l, false);
            assert_false(road_linear_adapters_enabled(l));
            TU_OK(road_linear_forward(l, rows, x, y));
            tu_assert_close(what(id, "y"), y, gold(f, id, "y", ny), ny, GOLDEN_ATOL, GOLDEN_RTOL);
            tu_assert_close(what(id, "y_base"), y, gold(f, id, "y_base", ny), ny, GOLDEN_ATOL,
                            GOLDEN_RTOL);
            n_disabled++;
        } else if (merged_case) {
            TU_OK(road_linear_forward(l, rows, x, y));
            tu_assert_close(what(id, "y_unmerged"), y, gold(f, id, "y_unmerged", ny), ny,
                            GOLDEN_ATOL, GOLDEN_RTOL);
            TU_OK(road_linear_merge(l, NULL, 0, false));
            assert_int_equal(road_linear_merged_count(l), n_act);
            for (int i = 0; i < n_act; i++)
                assert_string_equal(road_linear_merged_name(l, i), active[i]);
            const float *wm = gold(f, id, "W_merged", d * in);
            tu_assert_close(what(id, "W_merged"), road_linear_weight(l), wm, d * in, GOLDEN_ATOL,
                            GOLDEN_RTOL);
            if (b)
                tu_assert_close(what(id, "b_merged"), road_linear_bias(l),
                                gold(f, id, "b_merged", d), d, GOLDEN_ATOL, GOLDEN_RTOL);
            TU_OK(road_linear_forward(l, rows, x, y));
            tu_assert_close(what(id, "y (merged)"), y, gold(f, id, "y", ny), ny, GOLDEN_ATOL,
                            GOLDEN_RTOL);
            /* The README's unmerge atol rule; composed inverses multiply the conditions. */
            double cond = 1.0;
            for (int i = 0; i < n_act; i++)
                cond *= ref_block_condition(&refs[name_index(names, n_ad, active[i])], d);
            const double atol = UNMERGE_EPS_FACTOR * FLT_EPSILON * cond *
                                 fmax(max_abs(w, d * in), max_abs(wm, d * in));
            TU_OK(road_linear_unmerge(l));
            assert_int_equal(road_linear_merged_count(l), 0);
            tu_assert_close(what(id, "W_unmerged"), road_linear_weight(l),
                            gold(f, id, "W_unmerged", d * in), d * in, atol, UNMERGE_RTOL);
            tu_assert_close(what(id, "W after unmerge vs W"), road_linear_weight(l), w, d * in,
                            atol, UNMERGE_RTOL);
            if (b)
                tu_assert_close(what(id, "b_unmerged"), road_linear_bias(l),
                                gold(f, id, "b_unmerged", d), d, atol, UNMERGE_RTOL);
            n_merged++;
        } else {
            TU_OK(road_linear_forward(l, rows, x, y));
            tu_assert_close(what(id, "y"), y, gold(f, id, "y", ny), ny, GOLDEN_ATOL, GOLDEN_RTOL);
            forward_base(l, rows, x, y);
            tu_assert_close(what(id, "y_base"), y, gold(f, id, "y_base", ny), ny, GOLDEN_ATOL,
                            GOLDEN_RTOL);
            n_plain++;
        }
        for (int i = 0; i < n_ad; i++) ref_free(&refs[i]);
        road_linear_free(l);
        free(y);
    }
    /* Each kind of case must have been exercised. */
    assert_true(n_merged >= 1);
    assert_true(n_disabled >= 1);
    assert_true(n_plain >= 1);
    road_st_close(f);
    cJSON_Delete(root);
}

/* ---- 3. golden: mixed batch ------------------------------------------------------------- */

static void test_golden_mixed_batch(void **state) {
    (void)state;
    cJSON *root = tu_load_json("golden/mixed_batch.json");
    road_st_file *f = tu_open_golden("golden/mixed_batch.safetensors");
    int n_absent = 0, n_base = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, golden_cases(root, N_MIXED_CASES)) {
        const char *id = jstr(c, "id");
        const int64_t d = jint(c, "out_features"), in = jint(c, "in_features");
        const cJSON *xs = jget(c, "x_shape");
        const int64_t rows = shape_rows(xs, in), ny = rows * d;
        const char *names[MAX_NAMES], *seq[MAX_NAMES];
        const int n_seq = jnames(jget(c, "adapter_names"), seq);
        assert_int_equal((int64_t)cJSON_GetArrayItem(xs, 0)->valuedouble, n_seq);
        const int64_t rps = rows / n_seq; /* T for [rows, T, in], 1 for [rows, in] */
        const float *w = gold(f, id, "W", d * in), *x = gold(f, id, "x", rows * in);
        const float *b = jbool(c, "bias") ? gold(f, id, "b", d) : NULL;

        road_linear *l = make_layer(in, d, w, b);
        const int n_ad = add_case_adapters(l, f, c, id, d, names, NULL);
        float *y = falloc(ny), *ybase = falloc(ny), *yonly[MAX_NAMES];

        TU_OK(road_linear_forward_mixed(l, n_seq, rps, seq, n_seq, x, y));
        tu_assert_close(what(id, "y"), y, gold(f, id, "y", ny), ny, GOLDEN_ATOL, GOLDEN_RTOL);

        /* Our own single-adapter and base forwards of the whole batch. */
        forward_base(l, rows, x, ybase);
        tu_assert_close(what(id, "y_base"), ybase, gold(f, id, "y_base", ny), ny, GOLDEN_ATOL,
                        GOLDEN_RTOL);
        for (int k = 0; k < n_ad; k++) {
            char key[128];
            snprintf(key, sizeof key, "y_only.%s", names[k]);
            yonly[k] = falloc(ny);
            TU_OK(road_linear_set_active(l, &names[k], 1));
            TU_OK(road_linear_forward(l, rows, x, yonly[k]));
            tu_assert_close(what(id, key), yonly[k], gold(f, id, key, ny), ny, GOLDEN_ATOL,
                            GOLDEN_RTOL);
        }
        /* Rows are independent: each sequence's rows are bit-identical to the same rows of
         * the forward with only its adapter, or of the base forward. */
        for (int s = 0; s < n_seq; s++) {
            const int k = road_linear_has_adapter(l, seq[s]) ? name_index(names, n_ad, seq[s]) : -1;
            if (k < 0 && strcmp(seq[s], ROAD_BASE_NAME) != 0) n_absent++;
            if (k < 0) n_base++;
            const float *want = (k >= 0 ? yonly[k] : ybase) + (int64_t)s * rps * d;
            char msg[160];
            snprintf(msg, sizeof msg, "%s: sequence %d ('%s') vs %s", id, s, seq[s],
                     k >= 0 ? "single-adapter forward" : "base forward");
            tu_assert_equal_f32(msg, y + (int64_t)s * rps * d, want, rps * d);
        }
        for (int k = 0; k < n_ad; k++) free(yonly[k]);
        road_linear_free(l);
        free(y);
        free(ybase);
    }
    assert_true(n_absent >= 1); /* mixed_not_on_layer */
    assert_true(n_base > n_absent);
    road_st_close(f);
    cJSON_Delete(root);
}

/* A batch big enough for the kernels' OpenMP split (>= 64K outputs; ctest runs 2 threads):
 * the mixed rows must still be bit-identical to single-adapter and base rows. */
static void test_mixed_batch_large(void **state) {
    (void)state;
    enum { SEQ = 8, T = 64 };
    static const char *const seq[SEQ] = {"a", ROAD_BASE_NAME, "b", "c", "a", "zz", "b", "c"};
    const char *names[3] = {"a", "b", "c"};
    rand_layer r = rand_layer_make(16, 256, SEQ * T, 111);
    const int64_t d = r.d, ny = r.rows * d;
    road_linear *l = make_layer(r.in, d, r.w, r.b);
    TU_OK(road_linear_add_adapter(l, "a", ROAD_VARIANT_1, 64, false, 1));
    TU_OK(road_linear_add_adapter(l, "b", ROAD_VARIANT_2, 8, false, 2));
    TU_OK(road_linear_add_adapter(l, "c", ROAD_VARIANT_4, 256, false, 3));
    float *y = falloc(ny), *ybase = falloc(ny), *yonly[3];
    TU_OK(road_linear_forward_mixed(l, SEQ, T, seq, SEQ, r.x, y));
    forward_base(l, r.rows, r.x, ybase);
    for (int k = 0; k < 3; k++) {
        yonly[k] = falloc(ny);
        TU_OK(road_linear_set_active(l, &names[k], 1));
        TU_OK(road_linear_forward(l, r.rows, r.x, yonly[k]));
    }
    for (int s = 0; s < SEQ; s++) {
        const int k = name_index(names, 3, seq[s]);
        tu_assert_equal_f32(seq[s], y + (int64_t)s * T * d,
                            (k >= 0 ? yonly[k] : ybase) + (int64_t)s * T * d, T * d);
    }
    for (int k = 0; k < 3; k++) free(yonly[k]);
    road_linear_free(l);
    free(y);
    free(ybase);
    rand_layer_free(&r);
}

/* ---- 4. golden: e2e MLP ------------------------------------------------------------------ */

/* out[r] = log_softmax(z[r]) over n classes, in double, rounded once. */
static void log_softmax(const float *z, int64_t rows, int64_t n, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * n;
        double m = -INFINITY, s = 0.0;
        for (int64_t j = 0; j < n; j++) m = fmax(m, zr[j]);
        for (int64_t j = 0; j < n; j++) s += exp((double)zr[j] - m);
        for (int64_t j = 0; j < n; j++) out[r * n + j] = (float)((double)zr[j] - m - log(s));
    }
}

/* dz = g - softmax(z) * sum(g), per row: the backward of log_softmax. */
static void log_softmax_backward(const float *z, const float *g, int64_t rows, int64_t n,
                                 float *dz) {
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * n, *gr = g + r * n;
        double m = -INFINITY, s = 0.0, sg = 0.0;
        for (int64_t j = 0; j < n; j++) m = fmax(m, zr[j]);
        for (int64_t j = 0; j < n; j++) {
            s += exp((double)zr[j] - m);
            sg += gr[j];
        }
        for (int64_t j = 0; j < n; j++)
            dz[r * n + j] = (float)((double)gr[j] - exp((double)zr[j] - m) / s * sg);
    }
}

static void relu(const float *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* The weight shape [out, in] of module m from the case's tensor list. */
static void module_shape(const cJSON *c, const char *m, int64_t *out, int64_t *in) {
    char key[128];
    snprintf(key, sizeof key, "base.%s.weight", m);
    const cJSON *shape = jget(jget(jget(c, "tensors"), key), "shape");
    assert_int_equal(cJSON_GetArraySize(shape), 2);
    *out = (int64_t)cJSON_GetArrayItem(shape, 0)->valuedouble;
    *in = (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
}

static void test_golden_e2e(void **state) {
    (void)state;
    cJSON *root = tu_load_json("golden/e2e.json");
    road_st_file *f = tu_open_golden("golden/e2e.safetensors");
    const cJSON *c;
    cJSON_ArrayForEach(c, golden_cases(root, N_E2E_CASES)) {
        const char *id = jstr(c, "id");
        const cJSON *cfg = jget(c, "road_config");
        const road_variant v = variant_of(jstr(cfg, "variant"));
        const int32_t gs = (int32_t)jint(cfg, "group_size");
        const char *mod[MAX_NAMES];
        assert_int_equal(jnames(jget(c, "road_layers"), mod), 2); /* lin0 -> ReLU -> lin1 */

        /* The PEFT checkpoint: "adapter_files" lists adapter_model.safetensors first. */
        char path[256];
        snprintf(path, sizeof path, "golden/%s", jstr(c, "adapter_files"));
        char *comma = strchr(path, ',');
        if (comma) *comma = '\0';
        assert_non_null(strstr(path, "adapter_model.safetensors"));
        road_st_file *af = tu_open_golden(path);

        int64_t d[2], in[2];
        road_linear *l[2];
        char key[256], ck[2][2][160]; /* checkpoint keys [layer][theta, alpha] */
        for (int m = 0; m < 2; m++) {
            module_shape(c, mod[m], &d[m], &in[m]);
            snprintf(key, sizeof key, "base.%s.weight", mod[m]);
            const float *w = gold(f, id, key, d[m] * in[m]);
            snprintf(key, sizeof key, "base.%s.bias", mod[m]);
            l[m] = make_layer(in[m], d[m], w, gold(f, id, key, d[m]));
            const int64_t np = n_params(v, d[m]);
            const float *p[2];
            for (int t = 0; t < 2; t++) {
                snprintf(ck[m][t], sizeof ck[m][t], "base_model.model.%s.road_%s", mod[m],
                         t ? "alpha" : "theta");
                const road_st_tensor *ti = road_st_find(af, ck[m][t]);
                if (!ti) {
                    print_error("%s: %s is not in %s\n", id, ck[m][t], path);
                    fail();
                }
                assert_int_equal(ti->dtype, ROAD_DTYPE_F32);
                assert_int_equal(ti->numel, np);
                p[t] = ti->data;
                snprintf(key, sizeof key, "adapter.%s", ck[m][t]);
                tu_assert_equal_f32(what(id, key), p[t], gold(f, id, key, np), np);
            }
            add_with_params(l[m], "default", v, gs, p[0], p[1], np);
        }
        assert_int_equal(in[1], d[0]);
        const int64_t rows = shape_rows(jget(jget(jget(c, "tensors"), "X"), "shape"), in[0]);
        const int64_t nh = rows * d[0], nz = rows * d[1];
        const float *X = gold(f, id, "X", rows * in[0]), *g = gold(f, id, "g", nz);
        float *h0 = falloc(nh), *a0 = falloc(nh), *z = falloc(nz), *out = falloc(nz);
        float *yb0 = falloc(nh), *yb1 = falloc(nz), *tmp = falloc(nh), *tz = falloc(nz);
        float *dz = falloc(nz), *da0 = falloc(nh), *dX = falloc(rows * in[0]);

        /* With adapters. */
        TU_OK(road_linear_forward(l[0], rows, X, h0));
        relu(h0, nh, a0);
        TU_OK(road_linear_forward(l[1], rows, a0, z));
        log_softmax(z, rows, d[1], out);
        tu_assert_close(what(id, "out"), out, gold(f, id, "out", nz), nz, GOLDEN_ATOL, GOLDEN_RTOL);
        double loss = 0.0;
        for (int64_t i = 0; i < nz; i++) loss += (double)out[i] * g[i];
        float lossf = (float)loss;
        tu_assert_close(what(id, "loss"), &lossf, gold(f, id, "loss", 1), 1, GOLDEN_ATOL,
                        GOLDEN_RTOL);

        /* Adapters disabled: out_base; and each layer's pre-adapter output on the inputs the
         * adapted model fed it (what road_linear_backward needs as y_base). */
        forward_base(l[0], rows, X, yb0);
        relu(yb0, nh, tmp);
        forward_base(l[1], rows, tmp, tz);
        log_softmax(tz, rows, d[1], tz);
        tu_assert_close(what(id, "out_base"), tz, gold(f, id, "out_base", nz), nz, GOLDEN_ATOL,
                        GOLDEN_RTOL);
        forward_base(l[1], rows, a0, yb1);

        /* Backward of L = sum(out * g). */
        for (int m = 0; m < 2; m++) road_linear_zero_grads(l[m]);
        log_softmax_backward(z, g, rows, d[1], dz);
        TU_OK(road_linear_backward(l[1], rows, yb1, dz, da0));
        for (int64_t i = 0; i < nh; i++)
            if (!(h0[i] > 0.0f)) da0[i] = 0.0f;
        TU_OK(road_linear_backward(l[0], rows, yb0, da0, dX));
        tu_assert_close(what(id, "grad.X"), dX, gold(f, id, "grad.X", rows * in[0]), rows * in[0],
                        GOLDEN_ATOL, GOLDEN_RTOL);
        for (int m = 0; m < 2; m++) {
            float *grad[2];
            int64_t n = 0;
            TU_OK(road_linear_adapter_grads(l[m], "default", &grad[0], &grad[1], &n));
            assert_int_equal(n, n_params(v, d[m]));
            for (int t = 0; t < 2; t++) {
                snprintf(key, sizeof key, "grad.%s", ck[m][t]);
                tu_assert_close(what(id, key), grad[t], gold(f, id, key, n), n, GOLDEN_ATOL,
                                GOLDEN_RTOL);
            }
        }

        /* Merged. */
        for (int m = 0; m < 2; m++) {
            TU_OK(road_linear_merge(l[m], NULL, 0, false));
            snprintf(key, sizeof key, "merged.%s.weight", mod[m]);
            tu_assert_close(what(id, key), road_linear_weight(l[m]),
                            gold(f, id, key, d[m] * in[m]), d[m] * in[m], GOLDEN_ATOL,
                            GOLDEN_RTOL);
            snprintf(key, sizeof key, "merged.%s.bias", mod[m]);
            tu_assert_close(what(id, key), road_linear_bias(l[m]), gold(f, id, key, d[m]), d[m],
                            GOLDEN_ATOL, GOLDEN_RTOL);
        }
        TU_OK(road_linear_forward(l[0], rows, X, tmp));
        relu(tmp, nh, tmp);
        TU_OK(road_linear_forward(l[1], rows, tmp, tz));
        log_softmax(tz, rows, d[1], tz);
        tu_assert_close(what(id, "out_merged"), tz, gold(f, id, "out_merged", nz), nz, GOLDEN_ATOL,
                        GOLDEN_RTOL);

        for (int m = 0; m < 2; m++) road_linear_free(l[m]);
        road_st_close(af);
        float *bufs[] = {h0, a0, z, out, yb0, yb1, tmp, tz, dz, da0, dX};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    }
    road_st_close(f);
    cJSON_Delete(root);
}


int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_merge),
        cmocka_unit_test(test_golden_compose),
        cmocka_unit_test(test_golden_mixed_batch),
        cmocka_unit_test(test_mixed_batch_large),
        cmocka_unit_test(test_golden_e2e),
    };
    return cmocka_run_group_tests_name("linear_golden", tests, NULL, NULL);
}
