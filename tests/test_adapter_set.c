/*
 * tests/test_adapter_set.c - the adapter manager (road/adapter_set.h, PEFT's RoadModel) on the
 * Llama-shaped model of adapter_set_common.h: create errors, which layers carry which adapter,
 * the active list and its order, delete / enable / merge / unload rules, all-or-nothing
 * failures and the trainable-parameter report. Mixed batches and backward are in
 * test_adapter_set_compute.c, out-of-memory injection in test_adapter_set_oom.c.
 *
 * Legend: R = rows, I = in_features, D = out_features, P = theta (and alpha) entries of one
 * adapter on one layer. Row-major: x [R x I], y [R x D], W [D x I].
 */
#include "adapter_set_common.h"

/* ---- 1. create errors ---------------------------------------------------------------------- */

static void test_create_errors(void **state) {
    (void)state;
    llama m;
    llama_describe(&m, 1);
    road_adapter_set_params p = road_adapter_set_default_params();
    p.layers = m.d;
    p.n_layers = N_LAYERS;
    road_adapter_set *s = (road_adapter_set *)(uintptr_t)1;
    TU_FAILS(road_adapter_set_create(&p, NULL), ROAD_ERR_INVALID_ARG, "out is NULL");
    TU_FAILS(road_adapter_set_create(NULL, &s), ROAD_ERR_INVALID_ARG, NULL);
    assert_null(s);
    m.d[lid(0, GATE)].name = m.names[lid(0, V)];
    s = (road_adapter_set *)(uintptr_t)1;
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_INVALID_ARG,
             "'model.layers.0.self_attn.v_proj' is registered twice");
    assert_null(s);
    m.d[lid(0, GATE)].name = m.names[lid(0, GATE)];
    m.d[lid(0, K)].weight = NULL;
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_SHAPE, "model.layers.0.self_attn.k_proj");
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_SHAPE, "needs a weight");
    m.d[lid(0, K)].weight = m.w[lid(0, K)];
    m.d[EMBED].weight = NULL; /* an embedding needs its table too */
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_SHAPE, "model.embed_tokens");
    m.d[EMBED].weight = m.w[EMBED];
    m.d[lid(0, UP)].in_features = 0;
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_SHAPE, "model.layers.0.mlp.up_proj");
    m.d[lid(0, UP)].in_features = HIDDEN;
    m.d[HEAD].out_features = 0;
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_SHAPE, "lm_head");
    m.d[HEAD].out_features = VOCAB;
    m.d[2].name = NULL;
    TU_FAILS(road_adapter_set_create(&p, &s), ROAD_ERR_INVALID_ARG, "has no name");
    m.d[2].name = m.names[2];
    assert_null(s);
    p.n_layers = 0; /* an empty model is fine */
    TU_OK(road_adapter_set_create(&p, &s));
    assert_int_equal(road_adapter_set_layer_count(s), 0);
    road_adapter_set_free(s);
    road_adapter_set_free(NULL);

    /* Embeddings are registered but have no road_linear and are refused as linear layers. */
    TU_OK(llama_create(&m));
    assert_int_equal(road_adapter_set_layer_count(m.s), N_LAYERS);
    assert_int_equal(road_adapter_set_find_layer(m.s, "model.layers.1.mlp.down_proj"),
                     lid(1, DOWN));
    assert_int_equal(road_adapter_set_find_layer(m.s, "down_proj"), -1);
    assert_string_equal(road_adapter_set_layer_name(m.s, HEAD), "lm_head");
    assert_null(road_adapter_set_layer(m.s, EMBED));
    assert_null(road_adapter_set_layer(m.s, -1));
    assert_ptr_equal(road_linear_weight(road_adapter_set_layer(m.s, 3)), m.w[3]); /* borrowed */
    float x[HIDDEN] = {0}, y[VOCAB];
    TU_FAILS(road_adapter_set_forward(m.s, EMBED, 1, x, y), ROAD_ERR_INVALID_ARG, "embedding");
    TU_FAILS(road_adapter_set_apply(m.s, EMBED, 1, y), ROAD_ERR_INVALID_ARG, "embedding");
    TU_FAILS(road_adapter_set_backward(m.s, EMBED, 1, y, y, y, NULL), ROAD_ERR_INVALID_ARG,
             "embedding");
    TU_FAILS(road_adapter_set_forward(m.s, N_LAYERS, 1, x, y), ROAD_ERR_INVALID_ARG,
             "out of range");
    llama_free(&m);
}

/* ---- 2. adding: targets, first active, all-or-nothing --------------------------------------- */

static void test_add_targets(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 2);
    /* PEFT's default group_size 64 does not divide the GQA k/v width 32: refused naming the
     * layer, and nothing is added anywhere (q_proj, matched first, alone would be fine). */
    road_config *c = cfg_make(ROAD_VARIANT_1, 64, NULL);
    TU_FAILS(road_adapter_set_add(m.s, "qv", c, 1), ROAD_ERR_SHAPE,
             "model.layers.0.self_attn.v_proj");
    assert_int_equal(road_adapter_set_count(m.s), 0);
    assert_on_layers(&m, "qv", "");
    road_config_free(c);

    add_three(&m);
    assert_int_equal(road_adapter_set_count(m.s), 3);
    assert_string_equal(road_adapter_set_name(m.s, 0), "qv");
    assert_string_equal(road_adapter_set_name(m.s, 2), "rx");
    assert_on_layers(&m, "qv",
                     "model.layers.0.self_attn.q_proj,model.layers.0.self_attn.v_proj,"
                     "model.layers.1.self_attn.q_proj,model.layers.1.self_attn.v_proj");
    char want[2048];
    size_t k = 0;
    for (int l = 0; l < N_DEC; l++)
        for (int p = 0; p < N_PROJ; p++)
            k += (size_t)snprintf(want + k, sizeof want - k, "%s%s", k ? "," : "",
                                  m.names[lid(l, p)]);
    assert_on_layers(&m, "all", want); /* the 14 projections: not lm_head, not the embedding */
    assert_on_layers(&m, "rx", "model.layers.1.mlp.gate_proj,model.layers.1.mlp.up_proj");
    /* The first adapter became active; the later ones did not. */
    assert_active(&m, "qv");
    assert_string_equal(road_config_target(road_adapter_set_config(m.s, "rx"), 0), RX_REGEX);
    assert_true(road_adapter_set_has(m.s, "all"));
    assert_false(road_adapter_set_has(m.s, "al"));

    /* Errors leave the set as it was. */
    c = cfg_make(ROAD_VARIANT_2, 8, "all-linear");
    TU_FAILS(road_adapter_set_add(m.s, "all", c, 4), ROAD_ERR_EXISTS, "'all'");
    TU_FAILS(road_adapter_set_add(m.s, "a.b", c, 4), ROAD_ERR_INVALID_ARG, "'.'");
    assert_on_layers(&m, "a.b", "");
    TU_FAILS(road_adapter_set_add(m.s, ROAD_BASE_NAME, c, 4), ROAD_ERR_INVALID_ARG, "reserved");
    TU_FAILS(road_adapter_set_add(m.s, NULL, c, 4), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_adapter_set_add(m.s, "x", NULL, 4), ROAD_ERR_INVALID_ARG, NULL);
    road_config_free(c);
    assert_int_equal(road_adapter_set_count(m.s), 3);
    assert_active(&m, "qv");

    /* init_weights true: the identity, so the forward is the base forward bit for bit. */
    c = cfg_make(ROAD_VARIANT_4, 16, "down_proj");
    road_config_set_init_weights(c, true);
    TU_OK(road_adapter_set_add(m.s, "ident", c, 0));
    road_config_free(c);
    set_active(&m, "ident", NULL);
    const int32_t dn = lid(1, DOWN);
    float *x = fvec(&b, 3 * INTER, 5), *y = fvec(&b, 3 * HIDDEN, 0), *yb = fvec(&b, 3 * HIDDEN, 0);
    TU_OK(road_adapter_set_forward(m.s, dn, 3, x, y));
    base_forward(&m, dn, 3, x, yb);
    tu_assert_equal_f32("identity adapter vs base", y, yb, 3 * HIDDEN);
    bag_free(&b);
    llama_free(&m);
}

/* ---- 3. the active list ---------------------------------------------------------------------- */

static void test_set_active_order(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 3);
    add_three(&m);
    const int32_t q = lid(0, Q);
    const int64_t R = 5, D = dout(&m, q);
    float *x = fvec(&b, R * HIDDEN, 7), *yb = fvec(&b, R * D, 0), *y = fvec(&b, R * D, 0);
    float *want = fvec(&b, R * D, 0), *y_first = fvec(&b, R * D, 0);
    base_forward(&m, q, R, x, yb);
    road_linear *l = road_adapter_set_layer(m.s, q);
    static const char *const orders[2][2] = {{"qv", "all"}, {"all", "qv"}};
    for (int o = 0; o < 2; o++) {
        set_active(&m, orders[o][0], orders[o][1]);
        assert_layers_agree(&m);
        TU_OK(road_adapter_set_forward(m.s, q, R, x, y));
        /* The base output rotated by each adapter's own kernel call, in the list's order. */
        memcpy(want, yb, (size_t)(R * D) * sizeof(float));
        for (int k = 0; k < 2; k++) {
            road_rot r;
            TU_OK(road_linear_adapter_rot(l, orders[o][k], &r));
            TU_OK(road_rot_forward(&r, R, want, D));
        }
        tu_assert_equal_f32(o ? "all then qv" : "qv then all", y, want, R * D);
        memcpy(want, yb, (size_t)(R * D) * sizeof(float));
        TU_OK(road_adapter_set_apply(m.s, q, R, want)); /* an engine's own GEMM output */
        tu_assert_equal_f32("apply vs forward", want, y, R * D);
        if (o == 0) memcpy(y_first, y, (size_t)(R * D) * sizeof(float));
    }
    /* The two orders differ here (different group sizes do not commute): the test can fail. */
    double diff = 0.0;
    for (int64_t e = 0; e < R * D; e++) diff = fmax(diff, fabs((double)y[e] - y_first[e]));
    assert_true(diff > 1e-3);

    /* Unknown names and duplicates: refused, nothing changes. */
    const char *bad[3] = {"all", "zz", "qv"}, *dup[2] = {"rx", "rx"};
    TU_FAILS(road_adapter_set_set_active(m.s, bad, 3), ROAD_ERR_NOT_FOUND, "'zz'");
    TU_FAILS(road_adapter_set_set_active(m.s, bad, 3), ROAD_ERR_NOT_FOUND, "'qv', 'all', 'rx'");
    TU_FAILS(road_adapter_set_set_active(m.s, dup, 2), ROAD_ERR_INVALID_ARG, "twice");
    TU_FAILS(road_adapter_set_set_active(m.s, NULL, 1), ROAD_ERR_INVALID_ARG, NULL);
    assert_active(&m, "all,qv");
    /* The set's own name pointers, permuted (here reversed back to qv, all). */
    const char *rev[2] = {road_adapter_set_active_name(m.s, 1),
                          road_adapter_set_active_name(m.s, 0)};
    TU_OK(road_adapter_set_set_active(m.s, rev, 2));
    assert_active(&m, "qv,all");
    /* No active adapter: the base output. */
    set_active(&m, NULL, NULL);
    assert_active(&m, "");
    TU_OK(road_adapter_set_forward(m.s, q, R, x, y));
    tu_assert_equal_f32("no active adapter vs base", y, yb, R * D);
    bag_free(&b);
    llama_free(&m);
}

/* ---- 4. delete ------------------------------------------------------------------------------- */

static void test_delete_rules(void **state) {
    (void)state;
    llama m;
    llama_make(&m, 4);
    add_three(&m);
    /* An inactive one: the active list stays. */
    TU_OK(road_adapter_set_delete(m.s, "rx"));
    assert_on_layers(&m, "rx", "");
    assert_false(road_adapter_set_has(m.s, "rx"));
    assert_int_equal(road_adapter_set_count(m.s), 2);
    assert_active(&m, "qv");
    TU_FAILS(road_adapter_set_delete(m.s, "rx"), ROAD_ERR_NOT_FOUND, "'rx'");
    /* The only active one: the first remaining adapter becomes active (PEFT). */
    TU_OK(road_adapter_set_delete(m.s, "qv"));
    assert_on_layers(&m, "qv", "");
    assert_active(&m, "all");
    /* One of two active ones: the other stays active, alone. */
    add_cfg(&m, "rx", ROAD_VARIANT_2, 16, RX_REGEX);
    add_cfg(&m, "rx2", ROAD_VARIANT_2, 16, RX_REGEX);
    set_active(&m, "rx2", "all");
    TU_OK(road_adapter_set_delete(m.s, "rx2"));
    assert_active(&m, "all");
    /* Merged: refused and nothing changes; an unmerged one may go meanwhile. */
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false));
    TU_FAILS(road_adapter_set_delete(m.s, "all"), ROAD_ERR_STATE, "merged");
    assert_true(road_adapter_set_has(m.s, "all"));
    assert_true(road_adapter_set_on_layer(m.s, "all", lid(1, DOWN)));
    TU_OK(road_adapter_set_delete(m.s, "rx"));
    TU_OK(road_adapter_set_unmerge(m.s));
    assert_weights_restored(&m, "unmerge after a refused delete");
    TU_OK(road_adapter_set_delete(m.s, "all"));
    assert_int_equal(road_adapter_set_count(m.s), 0);
    assert_active(&m, "");
    TU_FAILS(road_adapter_set_delete(m.s, "all"), ROAD_ERR_NOT_FOUND, "no adapters");
    llama_free(&m);
}

/* ---- 5. enable / disable --------------------------------------------------------------------- */

static void test_enable_disable(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 5);
    add_three(&m);
    set_active(&m, "qv", "all");
    const int64_t R = 4;
    float *x = fvec(&b, R * INTER, 9), *y = fvec(&b, R * INTER, 0), *yf = fvec(&b, R * INTER, 0);
    double *xd = dvec(&b, x, R * INTER), *yd = dvec(&b, NULL, R * INTER);
    TU_OK(road_adapter_set_enable(m.s, false));
    assert_false(road_adapter_set_enabled(m.s));
    assert_layers_agree(&m);
    for (int32_t i = 1; i < N_LAYERS; i++) { /* the base layer, x W^T + b in double */
        TU_OK(road_adapter_set_forward(m.s, i, R, x, y));
        ref_base(&m, i, R, xd, yd);
        for (int64_t e = 0; e < R * dout(&m, i); e++) yf[e] = (float)yd[e];
        tu_assert_close(m.names[i], y, yf, R * dout(&m, i), FWD_ATOL, FWD_RTOL);
    }
    memcpy(yf, y, (size_t)(R * VOCAB) * sizeof(float));
    TU_OK(road_adapter_set_apply(m.s, HEAD, R, y)); /* apply: nothing while disabled */
    tu_assert_equal_f32("apply while disabled", y, yf, R * VOCAB);

    /* Disabling a merged model unmerges it first: the caller's weights come back. */
    TU_OK(road_adapter_set_enable(m.s, true));
    assert_layers_agree(&m);
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false));
    assert_true(road_adapter_set_merged(m.s));
    TU_OK(road_adapter_set_enable(m.s, false));
    assert_false(road_adapter_set_merged(m.s));
    assert_weights_restored(&m, "disable after merge");

    /* While disabled the model runs its base weights (PEFT), so a merge, which would put the
     * adapters into weights engines and mixed batches read, is refused and changes nothing. */
    float *snap[N_LAYERS];
    snapshot(&b, &m, snap);
    TU_FAILS(road_adapter_set_merge(m.s, NULL, 0, false), ROAD_ERR_STATE, "disabled");
    assert_false(road_adapter_set_merged(m.s));
    assert_weights_equal(&m, snap, "merge refused while disabled");
    road_batch_plan *p = NULL;
    static const char *const one[1] = {"qv"};
    TU_OK(road_adapter_set_plan(m.s, one, 1, &p));
    const int32_t q = lid(1, Q);
    TU_OK(road_adapter_set_forward_mixed(m.s, p, q, R, NULL, x, y));
    ref_base(&m, q, R, xd, yd);
    for (int64_t e = 0; e < R * HIDDEN; e++) yf[e] = (float)yd[e];
    tu_assert_close("mixed batch while disabled", y, yf, R * HIDDEN, FWD_ATOL, FWD_RTOL);
    road_batch_plan_free(p);
    /* merge_and_unload merges whatever the flag says (as PEFT) and leaves no adapter. */
    TU_OK(road_adapter_set_merge_and_unload(m.s, NULL, 0, false));
    assert_int_equal(road_adapter_set_count(m.s), 0);
    assert_true(road_adapter_set_enabled(m.s));
    assert_true(memcmp(m.w[q], snap[q], (size_t)nw(&m, q) * sizeof(float)) != 0);
    bag_free(&b);
    llama_free(&m);
}

/* ---- 6. merge / unmerge / unload ------------------------------------------------------------- */

static void test_merge_unmerge(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 6);
    add_three(&m);
    set_active(&m, "qv", "all");
    const int64_t R = 3;
    float *x = fvec(&b, R * INTER, 11), *y[N_LAYERS], *ym = fvec(&b, R * INTER, 0);
    for (int32_t i = 1; i < N_LAYERS; i++) {
        y[i] = fvec(&b, R * dout(&m, i), 0);
        TU_OK(road_adapter_set_forward(m.s, i, R, x, y[i]));
    }
    assert_false(road_adapter_set_merged(m.s));
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false));
    assert_true(road_adapter_set_merged(m.s));
    /* Every layer merged exactly its active adapters (rx is inactive, lm_head has none), and
     * its forward is the unmerged one. */
    for (int32_t i = 1; i < N_LAYERS; i++) {
        road_linear *l = road_adapter_set_layer(m.s, i);
        const int p = (i - 1) % N_PROJ, want = i == HEAD ? 0 : (p == Q || p == V) ? 2 : 1;
        assert_int_equal(road_linear_merged_count(l), want);
        if (want == 2) {
            assert_string_equal(road_linear_merged_name(l, 0), "qv");
            assert_string_equal(road_linear_merged_name(l, 1), "all");
        }
        TU_OK(road_adapter_set_forward(m.s, i, R, x, ym));
        tu_assert_close(m.names[i], ym, y[i], R * dout(&m, i), FWD_ATOL, FWD_RTOL);
    }
    /* The caller's arrays hold the merged weights. */
    double moved = 0.0;
    for (int64_t e = 0; e < nw(&m, lid(0, Q)); e++)
        moved = fmax(moved, fabs((double)m.w[lid(0, Q)][e] - m.w0[lid(0, Q)][e]));
    assert_true(moved > 1e-3);
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false)); /* already merged: skipped */
    const char *rx = "rx", *zz = "zz";
    TU_OK(road_adapter_set_merge(m.s, &rx, 1, true)); /* a named, inactive one, safely */
    assert_int_equal(road_linear_merged_count(road_adapter_set_layer(m.s, lid(1, UP))), 2);
    TU_FAILS(road_adapter_set_merge(m.s, &zz, 1, false), ROAD_ERR_NOT_FOUND, "'zz'");
    TU_OK(road_adapter_set_unmerge(m.s));
    assert_false(road_adapter_set_merged(m.s));
    assert_weights_restored(&m, "unmerge");
    TU_OK(road_adapter_set_unmerge(m.s)); /* nothing merged: fine */
    bag_free(&b);
    llama_free(&m);
}

/* A singular block on one late layer refuses the whole merge before any layer changes. */
static void test_merge_all_or_nothing(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 7);
    add_three(&m);
    set_active(&m, "qv", "all");
    road_linear *l = road_adapter_set_layer(m.s, lid(1, Q));
    float *theta, *alpha;
    TU_OK(road_linear_adapter_params(l, "qv", &theta, &alpha, NULL));
    const float keep = alpha[3];
    alpha[3] = 0.0f; /* road_1: the pair (3, 19) of group 0 becomes a zero block */
    TU_OK(road_linear_params_changed(l, "qv"));
    float *snap[N_LAYERS];
    snapshot(&b, &m, snap);
    for (int safe = 0; safe < 2; safe++) {
        TU_FAILS(road_adapter_set_merge(m.s, NULL, 0, safe), ROAD_ERR_NUMERIC,
                 "model.layers.1.self_attn.q_proj");
        TU_FAILS(road_adapter_set_merge(m.s, NULL, 0, safe), ROAD_ERR_NUMERIC, "singular");
        assert_false(road_adapter_set_merged(m.s));
        assert_weights_equal(&m, snap, "after a refused merge");
        for (int32_t i = 0; i < N_LAYERS; i++)
            if (m.b[i])
                tu_assert_equal_f32("bias after a refused merge", m.b[i], m.b0[i], dout(&m, i));
        TU_FAILS(road_adapter_set_merge_and_unload(m.s, NULL, 0, safe), ROAD_ERR_NUMERIC,
                 "singular");
        assert_int_equal(road_adapter_set_count(m.s), 3);
        assert_weights_equal(&m, snap, "after a refused merge_and_unload");
    }
    alpha[3] = keep;
    TU_OK(road_linear_params_changed(l, "qv"));
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, true));
    assert_true(road_adapter_set_merged(m.s));
    bag_free(&b);
    llama_free(&m);
}

static void test_merge_and_unload(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 8);
    add_three(&m);
    set_active(&m, "all", "qv");
    /* Expected merged weights in double: W' = R_qv R_all W, b' likewise (the active order). */
    double *wexp[N_LAYERS], *bexp[N_LAYERS];
    for (int32_t i = 0; i < N_LAYERS; i++) {
        wexp[i] = dvec(&b, m.w[i], nw(&m, i));
        bexp[i] = m.b[i] ? dvec(&b, m.b[i], dout(&m, i)) : NULL;
        for (int k = 0; k < 2; k++) {
            const char *name = k ? "qv" : "all";
            if (!road_adapter_set_on_layer(m.s, name, i)) continue;
            ref_ad a = ref_read(&b, &m, i, name);
            ref_rotate(&a, din(&m, i), wexp[i], din(&m, i), 1);
            if (bexp[i]) ref_rotate(&a, 1, bexp[i], 1, 1);
        }
    }
    TU_OK(road_adapter_set_merge_and_unload(m.s, NULL, 0, true));
    assert_int_equal(road_adapter_set_count(m.s), 0);
    assert_active(&m, "");
    assert_false(road_adapter_set_merged(m.s));
    for (int32_t i = 0; i < N_LAYERS; i++) {
        const float *wf = fcopy(&b, wexp[i], nw(&m, i));
        tu_assert_close(m.names[i], m.w[i], wf, nw(&m, i), WEIGHT_REL * max_abs(wf, nw(&m, i)), 0);
        if (m.b[i]) {
            const float *bf = fcopy(&b, bexp[i], dout(&m, i));
            tu_assert_close(m.names[i], m.b[i], bf, dout(&m, i),
                            WEIGHT_REL * max_abs(bf, dout(&m, i)), 0.0);
        }
        if (road_adapter_set_layer(m.s, i))
            assert_int_equal(road_linear_adapter_count(road_adapter_set_layer(m.s, i)), 0);
    }
    llama_free(&m);

    /* unload: the adapters go, the weights stay as they are (merged ones stay merged, PEFT). */
    llama_make(&m, 9);
    add_three(&m);
    float *snap[N_LAYERS];
    snapshot(&b, &m, snap);
    TU_OK(road_adapter_set_unload(m.s));
    assert_int_equal(road_adapter_set_count(m.s), 0);
    assert_weights_equal(&m, snap, "unload");
    add_three(&m);
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false));
    snapshot(&b, &m, snap);
    TU_OK(road_adapter_set_unload(m.s));
    assert_false(road_adapter_set_merged(m.s));
    assert_weights_equal(&m, snap, "unload while merged");
    /* The set is usable again, and the first adapter added is active again. */
    add_cfg(&m, "o", ROAD_VARIANT_1, 32, "o_proj");
    assert_active(&m, "o");
    bag_free(&b);
    llama_free(&m);
}

/* ---- 7. the trainable-parameter report ------------------------------------------------------- */

/* Counts from this file's own layer table: P = D/2, D, 2D for road_1, _2, _4; every adapter
 * has theta and alpha (2P); trainable: active adapters; all: base (I*D + bias) + adapters. */
static void expect_report(llama *m, const char *want_text) {
    int64_t base = 0, all = 0, train = 0;
    for (int32_t i = 0; i < N_LAYERS; i++) {
        base += nw(m, i) + (m->b[i] ? dout(m, i) : 0);
        for (int32_t a = 0; a < road_adapter_set_count(m->s); a++) {
            const char *name = road_adapter_set_name(m->s, a);
            if (!road_adapter_set_on_layer(m->s, name, i)) continue;
            const road_variant v = road_config_variant(road_adapter_set_config(m->s, name));
            const int64_t two_p = 2 * (v == ROAD_VARIANT_1   ? dout(m, i) / 2
                                       : v == ROAD_VARIANT_2 ? dout(m, i)
                                                             : 2 * dout(m, i));
            all += two_p;
            for (int32_t k = 0; k < road_adapter_set_active_count(m->s); k++)
                if (strcmp(road_adapter_set_active_name(m->s, k), name) == 0) train += two_p;
        }
    }
    road_param_report r = road_adapter_set_param_report(m->s);
    assert_int_equal(r.trainable, train);
    assert_int_equal(r.all, base + all);
    char buf[160];
    road_param_report_format(&r, buf, sizeof buf);
    assert_string_equal(buf, want_text);
}

static void test_param_report(void **state) {
    (void)state;
    llama m;
    llama_make(&m, 10);
    /* By hand: per decoder layer q 64*64+64, k and v 32*64+32, o 64*64, gate, up and down
     * 176*64 each: 46,208; x2 = 92,416; embed_tokens and lm_head 48*64 each: 98,560. */
    expect_report(&m, "trainable params: 0 || all params: 98,560 || trainable%: 0.0000");
    add_three(&m);
    /* qv road_1: (32 + 16) x 2 layers = 96, 2P = 192; all road_4: 2 x 608 x 2 = 2,432,
     * 2P = 4,864; rx road_2: 176 x 2 = 352, 2P = 704. All: 104,320. */
    expect_report(&m, "trainable params: 192 || all params: 104,320 || trainable%: 0.1840");
    set_active(&m, "all", "rx");
    expect_report(&m, "trainable params: 5,568 || all params: 104,320 || trainable%: 5.3374");
    set_active(&m, "qv", "all");
    expect_report(&m, "trainable params: 5,056 || all params: 104,320 || trainable%: 4.8466");
    road_adapter_set_free(m.s);

    /* base_param_count: the whole model's count when only some layers are registered. */
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = "llama";
    p.layers = m.d;
    p.n_layers = N_LAYERS;
    p.base_param_count = 1234567890;
    TU_OK(road_adapter_set_create(&p, &m.s));
    add_cfg(&m, "qv", ROAD_VARIANT_1, 32, NULL);
    road_param_report r = road_adapter_set_param_report(m.s);
    assert_int_equal(r.trainable, 192);
    assert_int_equal(r.all, 1234567890 + 192);
    char buf[160];
    road_param_report_format(&r, buf, sizeof buf);
    assert_string_equal(buf,
                        "trainable params: 192 || all params: 1,234,568,082 || trainable%: 0.0000");
    llama_free(&m);

    /* The format alone: a comma at every power of 1,000, four decimals. */
    static const struct {
        road_param_report r;
        const char *want;
    } cases[] = {
        {{1234, 5678, 0.0217},
         "trainable params: 1,234 || all params: 5,678 || trainable%: 0.0217"},
        {{999, 1000, 99.9}, "trainable params: 999 || all params: 1,000 || trainable%: 99.9000"},
        {{100000, 8030261248LL, 1.2e-3},
         "trainable params: 100,000 || all params: 8,030,261,248 || trainable%: 0.0012"},
        {{0, 0, 0.0}, "trainable params: 0 || all params: 0 || trainable%: 0.0000"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        road_param_report_format(&cases[k].r, buf, sizeof buf);
        assert_string_equal(buf, cases[k].want);
    }
    memset(buf, 'x', sizeof buf); /* a short buffer is cut, never overrun */
    road_param_report_format(&cases[0].r, buf, 12);
    assert_string_equal(buf, "trainable p");
    assert_int_equal(buf[12], 'x');
}

/* ---- packed embeddings ---------------------------------------------------------------------- */

/* An engine that keeps its embedding in bf16 registers it as a packed weight, and a tied head
 * with the same road_qtensor: the set reports it (base_weight), copies it widened for
 * modules_to_save, gives the head its own 16-bit copy before a merge (the embedding's bytes
 * stay), and widens the pair to one shared float array. */
static void test_packed_embedding(void **state) {
    (void)state;
    llama m;
    llama_describe(&m, 3);
    road_qtensor *q = NULL;
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_BF16, VOCAB, HIDDEN, m.w[EMBED], false, &q));
    float *wide = tu_alloc(sizeof(float) * (size_t)(VOCAB * HIDDEN));
    TU_OK(road_qtensor_dequantize_rows(q, 0, VOCAB, wide));
    uint8_t *bytes0 = tu_alloc((size_t)(2 * VOCAB * HIDDEN));
    memcpy(bytes0, q->data, (size_t)(2 * VOCAB * HIDDEN));
    m.d[EMBED].qweight = q; /* both: refused */
    TU_FAILS(llama_create(&m), ROAD_ERR_INVALID_ARG, "not both");
    m.d[EMBED].weight = NULL;
    m.d[EMBED].out_features = VOCAB - 1;
    TU_FAILS(llama_create(&m), ROAD_ERR_SHAPE, "qweight is");
    m.d[EMBED].out_features = VOCAB;
    m.d[HEAD].weight = NULL;
    m.d[HEAD].qweight = q; /* tied */
    TU_OK(llama_create(&m));
    const float *w = (const float *)(uintptr_t)1;
    const road_qtensor *bq = NULL;
    TU_OK(road_adapter_set_base_weight(m.s, EMBED, &w, &bq));
    assert_null(w);
    assert_ptr_equal(bq, q);
    TU_OK(road_adapter_set_layer_weight(m.s, EMBED, &w, NULL));
    assert_null(w); /* no float table: the engine looks rows up in bq */
    TU_FAILS(road_adapter_set_base_weight(m.s, N_LAYERS, NULL, NULL), ROAD_ERR_INVALID_ARG,
             "out of range");

    /* modules_to_save: the copy is the table widened */
    road_config *c = cfg_make(ROAD_VARIANT_1, 4, NULL);
    const char *targets[1] = {"lm_head"};
    TU_OK(road_config_set_target_list(c, targets, 1));
    const char *mts[1] = {"embed_tokens"};
    TU_OK(road_config_set_modules_to_save(c, mts, 1));
    TU_OK(road_adapter_set_add(m.s, "a", c, 5));
    road_config_free(c);
    road_module_copy mc;
    TU_OK(road_adapter_set_copy(m.s, "a", EMBED, &mc));
    tu_assert_equal_f32("embed_tokens copy = widened table", mc.weight, wide, VOCAB * HIDDEN);

    /* a merge into the tied head: its own bf16 copy, the embedding's bytes unchanged */
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, true));
    TU_OK(road_adapter_set_base_weight(m.s, HEAD, NULL, &bq));
    assert_true(bq != q);
    assert_int_equal(bq->format, ROAD_QFORMAT_BF16);
    assert_memory_equal(q->data, bytes0, (size_t)(2 * VOCAB * HIDDEN));
    TU_OK(road_adapter_set_unmerge(m.s));
    assert_memory_equal(q->data, bytes0, (size_t)(2 * VOCAB * HIDDEN));
    road_adapter_set_free(m.s);

    /* widening the embedding widens the tied head with it: one float array */
    TU_OK(llama_create(&m));
    TU_OK(road_adapter_set_widen_layer(m.s, EMBED));
    const float *we = NULL, *wh = NULL;
    TU_OK(road_adapter_set_base_weight(m.s, EMBED, &we, &bq));
    assert_null(bq);
    TU_OK(road_adapter_set_base_weight(m.s, HEAD, &wh, &bq));
    assert_null(bq);
    assert_ptr_equal(we, wh);
    tu_assert_equal_f32("widened table", we, wide, VOCAB * HIDDEN);
    road_adapter_set_free(m.s);
    road_qtensor_free(q);
    free(wide);
    free(bytes0);
    bag_free(&m.mem);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),        cmocka_unit_test(test_add_targets),
        cmocka_unit_test(test_set_active_order),     cmocka_unit_test(test_delete_rules),
        cmocka_unit_test(test_enable_disable),       cmocka_unit_test(test_merge_unmerge),
        cmocka_unit_test(test_merge_all_or_nothing), cmocka_unit_test(test_merge_and_unload),
        cmocka_unit_test(test_param_report),         cmocka_unit_test(test_packed_embedding),
    };
    return cmocka_run_group_tests_name("adapter_set", tests, NULL, NULL);
}
