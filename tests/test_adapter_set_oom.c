/*
 * tests/test_adapter_set_oom.c - out-of-memory injection into the adapter manager
 * (road/adapter_set.h) on the Llama-shaped model of adapter_set_common.h: create, add, set_active,
 * forward, merge, unmerge, plan, forward_mixed and delete with every allocation failing in
 * turn; each failed step must report out of memory, change nothing, leak nothing, and succeed
 * when retried, with results bitwise equal to a run without failures.
 *
 * Legend: R = rows, I = in_features, D = out_features. Row-major: x [R x I], y [R x D],
 * W [D x I].
 */
#include "adapter_set_common.h"

/* ---- out of memory ------------------------------------------------------------------------- */

enum { OOM_STEPS = 11, OOM_R = 6 };

typedef struct oom_run {
    llama m;
    road_config *cfg[2]; /* qv, all: made outside the injection */
    road_batch_plan *p;
    float *y[N_LAYERS], *ym[N_LAYERS], *wm[N_LAYERS]; /* y[EMBED]: step 10's q_proj output */
} oom_run;

/* Exact parameters: theta 0 and alpha a power of two make every block a diagonal scaling, so
 * merge, unmerge and the rollback of a failed merge are exact and results compare bitwise. */
static void oom_params(llama *m, const char *name, int shift) {
    static const float pow2[4] = {0.5f, 2.0f, 4.0f, 1.0f};
    for (int32_t i = 0; i < N_LAYERS; i++) {
        if (!road_adapter_set_on_layer(m->s, name, i)) continue;
        road_linear *l = road_adapter_set_layer(m->s, i);
        float *theta, *alpha;
        int64_t n;
        TU_OK(road_linear_adapter_params(l, name, &theta, &alpha, &n));
        for (int64_t k = 0; k < n; k++) theta[k] = 0.0f, alpha[k] = pow2[(k + shift) % 4];
        TU_OK(road_linear_params_changed(l, name));
    }
}

/* create + add + add + set_active + forward + merge + unmerge + plan + forward_mixed +
 * delete + forward (the set is freed by the caller). */
static road_status oom_step(int step, oom_run *o, const float *x) {
    static const char *const act[2] = {"all", "qv"}, *const mixed[3] = {"qv", ROAD_BASE_NAME,
                                                                        "all"};
    road_status s = ROAD_OK;
    switch (step) {
    case 0:
        return llama_create(&o->m);
    case 1:
    case 2:
        return road_adapter_set_add(o->m.s, step == 1 ? "qv" : "all", o->cfg[step - 1], 7);
    case 3:
        oom_params(&o->m, "qv", 0);
        oom_params(&o->m, "all", 1);
        return road_adapter_set_set_active(o->m.s, act, 2);
    case 4:
        for (int32_t i = 1; i < N_LAYERS && s == ROAD_OK; i++)
            s = road_adapter_set_forward(o->m.s, i, OOM_R, x, o->y[i]);
        return s;
    case 5:
        s = road_adapter_set_merge(o->m.s, NULL, 0, true);
        for (int32_t i = 1; i < N_LAYERS && s == ROAD_OK; i++)
            memcpy(o->wm[i], o->m.w[i], (size_t)nw(&o->m, i) * sizeof(float));
        return s;
    case 6:
        return road_adapter_set_unmerge(o->m.s);
    case 7:
        return road_adapter_set_plan(o->m.s, mixed, 3, &o->p);
    case 8:
        for (int32_t i = 1; i < N_LAYERS && s == ROAD_OK; i++)
            s = road_adapter_set_forward_mixed(o->m.s, o->p, i, OOM_R / 3, NULL, x, o->ym[i]);
        return s;
    case 9:
        return road_adapter_set_delete(o->m.s, "qv");
    case 10:
        return road_adapter_set_forward(o->m.s, lid(0, Q), OOM_R, x, o->y[EMBED]);
    }
    return ROAD_ERR_INTERNAL;
}

/* What a failed step must leave as it was. */
static void oom_check_unchanged(int step, oom_run *o, int64_t k) {
    llama *m = &o->m;
    if (step == 0) assert_null(m->s);
    if (step == 1 || step == 2) { /* add: all-or-nothing */
        const char *name = step == 1 ? "qv" : "all";
        assert_int_equal(road_adapter_set_count(m->s), step - 1);
        assert_false(road_adapter_set_has(m->s, name));
        assert_active(m, step == 1 ? "" : "qv");
        for (int32_t i = 0; i < N_LAYERS; i++)
            if (road_adapter_set_on_layer(m->s, name, i)) {
                print_error("k=%lld: failed add left '%s' on %s\n", (long long)k, name,
                            m->names[i]);
                fail();
            }
    }
    if (step == 3) {
        assert_active(m, "qv");
    }
    if (step == 5) {
        assert_false(road_adapter_set_merged(m->s));
        assert_weights_equal(m, m->w0, "weights after a failed merge");
    }
    if (step == 7) assert_null(o->p);
    if (step == 9) {
        assert_true(road_adapter_set_has(m->s, "qv"));
        assert_true(road_adapter_set_on_layer(m->s, "qv", lid(1, V)));
        assert_active(m, "all,qv");
    }
    if (step >= 1) assert_layers_agree(m);
}

/* The sequence with the allocation after k successful ones failing (k < 0: none). A failed
 * step must say out of memory and change nothing; it is then retried (injection is one-shot)
 * and it and every later step must succeed. Returns whether a failure happened. */
static bool oom_sequence(int64_t k, oom_run *o, const float *x) {
    bool failed = false;
    for (int32_t i = 0; i < N_LAYERS; i++) /* the caller's weights, as at the start */
        memcpy(o->m.w[i], o->m.w0[i], (size_t)nw(&o->m, i) * sizeof(float));
    road__alloc_fail_after(k);
    for (int step = 0; step < OOM_STEPS; step++) {
        road_status s = oom_step(step, o, x);
        if (s == ROAD_OK) continue;
        road__alloc_fail_after(-1);
        if (failed || s != ROAD_ERR_NO_MEMORY || !strstr(road_last_error(), "out of memory")) {
            print_error("k=%lld: step %d returned %s (%s), expected one no_memory failure\n",
                        (long long)k, step, road_status_name(s), road_last_error());
            fail();
        }
        failed = true;
        oom_check_unchanged(step, o, k);
        s = oom_step(step, o, x);
        if (s != ROAD_OK) {
            print_error("k=%lld: step %d failed again after an injected failure: %s (%s)\n",
                        (long long)k, step, road_status_name(s), road_last_error());
            fail();
        }
    }
    road__alloc_fail_after(-1);
    road_batch_plan_free(o->p);
    road_adapter_set_free(o->m.s);
    o->p = NULL;
    o->m.s = NULL;
    return failed;
}

static void oom_init(oom_run *o) {
    llama_describe(&o->m, 15);
    o->cfg[0] = cfg_make(ROAD_VARIANT_1, 32, NULL);
    o->cfg[1] = cfg_make(ROAD_VARIANT_4, 8, "all-linear");
    for (int32_t i = 0; i < N_LAYERS; i++) {
        const int64_t d = i == EMBED ? HIDDEN : dout(&o->m, i);
        o->y[i] = fvec(&o->m.mem, OOM_R * d, 0);
        o->ym[i] = fvec(&o->m.mem, OOM_R * d, 0);
        o->wm[i] = fvec(&o->m.mem, nw(&o->m, i), 0);
    }
}

static void test_out_of_memory(void **state) {
    (void)state;
    oom_run *want = tu_alloc(sizeof *want), *got = tu_alloc(sizeof *got);
    oom_init(want);
    oom_init(got);
    bag b = {{0}, 0};
    const float *x = fvec(&b, OOM_R * INTER, 16);
    const int64_t live0 = road__alloc_live_bytes();
    assert_false(oom_sequence(-1, want, x));
    assert_int_equal(road__alloc_live_bytes(), live0);
    int64_t k = 0;
    for (; k < 100000; k++) {
        const bool failed = oom_sequence(k, got, x);
        if (road__alloc_live_bytes() != live0) {
            print_error("k=%lld: %lld bytes leaked\n", (long long)k,
                        (long long)(road__alloc_live_bytes() - live0));
            fail();
        }
        /* After recovering, the results are those of the run without failures. */
        char what[96];
        for (int32_t i = 0; i < N_LAYERS; i++) {
            const int64_t d = i == EMBED ? HIDDEN : dout(&got->m, i);
            snprintf(what, sizeof what, "k=%lld %s forward", (long long)k, got->m.names[i]);
            tu_assert_equal_f32(what, got->y[i], want->y[i], OOM_R * d);
            snprintf(what, sizeof what, "k=%lld %s mixed", (long long)k, got->m.names[i]);
            tu_assert_equal_f32(what, got->ym[i], want->ym[i], OOM_R * d);
            snprintf(what, sizeof what, "k=%lld %s merged W", (long long)k, got->m.names[i]);
            tu_assert_equal_f32(what, got->wm[i], want->wm[i], nw(&got->m, i));
        }
        assert_weights_equal(&got->m, got->m.w0, "weights after unmerge");
        if (!failed) break;
    }
    assert_true(k > 50); /* injection reached the sequence's allocations */
    assert_true(k < 100000);
    for (int r = 0; r < 2; r++) {
        oom_run *o = r ? got : want;
        road_config_free(o->cfg[0]);
        road_config_free(o->cfg[1]);
        llama_free(&o->m);
        free(o);
    }
    bag_free(&b);
}

static int reset_alloc_injection(void **state) {
    (void)state;
    road__alloc_fail_after(-1);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_out_of_memory, reset_alloc_injection),
    };
    return cmocka_run_group_tests_name("adapter_set_oom", tests, NULL, NULL);
}
