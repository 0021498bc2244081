/*
 * tests/test_adapter_set_compute.c - the adapter manager's (road/adapter_set.h) numerical paths on
 * the Llama-shaped model of adapter_set_common.h: mixed batches (one adapter per sequence,
 * bitwise against whole-batch forwards), their errors, and backward (against central
 * differences of the double-precision forward of adapter_set_common.h). The manager's state
 * rules are in test_adapter_set.c, out-of-memory injection in test_adapter_set_oom.c.
 *
 * Legend: R = rows, I = in_features, D = out_features, P = theta (and alpha) entries of one
 * adapter on one layer. Row-major: x [R x I], y [R x D], W [D x I].
 */
#include "adapter_set_common.h"

/* ---- tolerances ------------------------------------------------------------------------------ */

/* Central differences of the double reference: truncation ~h^2 = 1e-8 relative, roundoff
 * ~1e-16 / h, both far below the float32 gradient tolerance, testutil's golden bound (the one
 * test_linear uses for the same comparison). */
#define FD_STEP 1e-4
#define GRAD_ATOL GOLDEN_ATOL
#define GRAD_RTOL GOLDEN_RTOL

/* ---- the loss of the double-precision reference ------------------------------------------ */

/* sum(g * RoAd_last(... RoAd_first(y0))) over [R x D]; scratch [R x D]. */
static double ref_loss(const ref_ad *ads, int n_ad, int64_t rows, const double *y0, const double *g,
                       double *scratch) {
    const int64_t d = ads[0].d;
    memcpy(scratch, y0, (size_t)(rows * d) * sizeof(double));
    for (int k = 0; k < n_ad; k++) ref_rotate(&ads[k], rows, scratch, 1, d);
    double s = 0.0;
    for (int64_t e = 0; e < rows * d; e++) s += g[e] * scratch[e];
    return s;
}

/* ---- 1. mixed batches ------------------------------------------------------------------------ */

enum { MIX_SEQ = 5 };
static const char *const mix_names[MIX_SEQ] = {"qv", ROAD_BASE_NAME, "rx", "all", "qv"};

/* Sequence by sequence, y (a mixed forward of layer i over x) against whole-batch forwards
 * with only that sequence's adapter active (adapters disabled for __base__): OpenBLAS results
 * depend on the batch, so a whole-batch forward is the bitwise reference. */
static void check_mixed_rows(llama *m, bag *b, int32_t i, const int64_t *rows, const float *x,
                             const float *y, int64_t total) {
    const int64_t d = dout(m, i);
    float *ref = fvec(b, total * d, 0);
    char what[160];
    for (int s = 0, r0 = 0; s < MIX_SEQ; r0 += (int)rows[s], s++) {
        if (strcmp(mix_names[s], ROAD_BASE_NAME) == 0) {
            base_forward(m, i, total, x, ref);
        } else {
            set_active(m, mix_names[s], NULL);
            TU_OK(road_adapter_set_forward(m->s, i, total, x, ref));
        }
        snprintf(what, sizeof what, "%s, sequence %d (%s)", m->names[i], s, mix_names[s]);
        tu_assert_equal_f32(what, y + r0 * d, ref + r0 * d, rows[s] * d);
    }
}

static void test_mixed_batches(void **state) {
    (void)state;
    llama m;
    bag b = {{0}, 0};
    llama_make(&m, 11);
    add_three(&m);
    static const int64_t fixed[MIX_SEQ] = {3, 3, 3, 3, 3}, var[MIX_SEQ] = {2, 0, 4, 1, 3};
    road_batch_plan *p = NULL;
    TU_OK(road_adapter_set_plan(m.s, mix_names, MIX_SEQ, &p));
    assert_int_equal(road_batch_plan_sequences(p), MIX_SEQ);
    for (int mode = 0; mode < 2; mode++) {
        const int64_t *rows = mode ? var : fixed, per = mode ? 0 : 3, total = mode ? 10 : 15;
        const int64_t *seq_rows = mode ? var : NULL;
        for (int32_t i = 1; i < N_LAYERS; i++) {
            const int64_t d = dout(&m, i);
            float *x = fvec(&b, total * din(&m, i), 1000 + (uint64_t)i),
                  *y = fvec(&b, total * d, 0);
            float *y2 = fvec(&b, total * d, 0);
            set_active(&m, "all", "qv"); /* the active list plays no part in a mixed batch */
            TU_OK(road_adapter_set_forward_mixed(m.s, p, i, per, seq_rows, x, y));
            /* apply_mixed on a base output computed elsewhere gives the same rows. */
            base_forward(&m, i, total, x, y2);
            TU_OK(road_adapter_set_apply_mixed(m.s, p, i, per, seq_rows, y2));
            tu_assert_equal_f32("apply_mixed vs forward_mixed", y2, y, total * d);
            check_mixed_rows(&m, &b, i, rows, x, y, total);
            bag_free(&b);
        }
    }
    /* rx is on layer 1's gate/up only: on q_proj its rows are base rows (PEFT). Disabled:
     * every row is base. */
    const int32_t q = lid(0, Q);
    float *x = fvec(&b, 15 * HIDDEN, 77), *y = fvec(&b, 15 * HIDDEN, 0),
          *yb = fvec(&b, 15 * HIDDEN, 0);
    TU_OK(road_adapter_set_forward_mixed(m.s, p, q, 3, NULL, x, y));
    base_forward(&m, q, 15, x, yb);
    tu_assert_equal_f32("rx rows on a layer without rx", y + 6 * HIDDEN, yb + 6 * HIDDEN,
                        3 * HIDDEN);
    tu_assert_equal_f32("__base__ rows", y + 3 * HIDDEN, yb + 3 * HIDDEN, 3 * HIDDEN);
    TU_OK(road_adapter_set_enable(m.s, false));
    TU_OK(road_adapter_set_forward_mixed(m.s, p, q, 3, NULL, x, y));
    tu_assert_equal_f32("mixed batch while disabled", y, yb, 15 * HIDDEN);
    road_batch_plan_free(p);
    road_batch_plan_free(NULL);
    bag_free(&b);
    llama_free(&m);
}

static void test_mixed_errors(void **state) {
    (void)state;
    llama m, m2;
    bag b = {{0}, 0};
    llama_make(&m, 12);
    llama_make(&m2, 13);
    add_three(&m);
    add_three(&m2);
    road_batch_plan *p = (road_batch_plan *)(uintptr_t)1;
    static const char *const bad[] = {"zz", "qv", "a", "zz", ROAD_BASE_NAME, "a"};
    TU_FAILS(road_adapter_set_plan(m.s, bad, 6, &p), ROAD_ERR_NOT_FOUND,
             "unknown adapter name(s) 'a', 'zz';");
    assert_null(p);
    const char *with_null[2] = {"qv", NULL};
    TU_FAILS(road_adapter_set_plan(m.s, with_null, 2, &p), ROAD_ERR_INVALID_ARG, "NULL");
    TU_FAILS(road_adapter_set_plan(m.s, mix_names, -1, &p), ROAD_ERR_INVALID_ARG, NULL);
    road_adapter_set_train(m.s, true);
    assert_true(road_adapter_set_training(m.s));
    TU_FAILS(road_adapter_set_plan(m.s, mix_names, MIX_SEQ, &p), ROAD_ERR_STATE, "training mode");
    road_adapter_set_train(m.s, false);
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false));
    TU_FAILS(road_adapter_set_plan(m.s, mix_names, MIX_SEQ, &p), ROAD_ERR_STATE, "merged");
    TU_OK(road_adapter_set_unmerge(m.s));

    TU_OK(road_adapter_set_plan(m.s, mix_names, MIX_SEQ, &p));
    const int32_t q = lid(0, Q);
    float *x = fvec(&b, 2 * MIX_SEQ * HIDDEN, 5), *y = fvec(&b, 2 * MIX_SEQ * INTER, 0);
    /* Merged, or switched to training mode, after planning. */
    TU_OK(road_adapter_set_merge(m.s, NULL, 0, false));
    TU_FAILS(road_adapter_set_forward_mixed(m.s, p, q, 2, NULL, x, y), ROAD_ERR_STATE, "merged");
    TU_FAILS(road_adapter_set_apply_mixed(m.s, p, q, 2, NULL, y), ROAD_ERR_STATE, "merged");
    TU_OK(road_adapter_set_unmerge(m.s));
    road_adapter_set_train(m.s, true);
    TU_FAILS(road_adapter_set_apply_mixed(m.s, p, q, 2, NULL, y), ROAD_ERR_STATE, "training mode");
    road_adapter_set_train(m.s, false);
    /* A plan made by another set (same layer count and names). */
    TU_FAILS(road_adapter_set_apply_mixed(m2.s, p, q, 2, NULL, y), ROAD_ERR_INVALID_ARG,
             "another model");
    TU_FAILS(road_adapter_set_forward_mixed(m2.s, p, q, 2, NULL, x, y), ROAD_ERR_INVALID_ARG,
             "another model");
    /* Bad shapes, layers and plans. */
    const int64_t neg[MIX_SEQ] = {2, -1, 2, 2, 2};
    TU_FAILS(road_adapter_set_apply_mixed(m.s, p, q, 0, neg, y), ROAD_ERR_SHAPE, "sequence 1");
    TU_FAILS(road_adapter_set_apply_mixed(m.s, p, q, -2, NULL, y), ROAD_ERR_SHAPE, NULL);
    TU_FAILS(road_adapter_set_apply_mixed(m.s, p, EMBED, 2, NULL, y), ROAD_ERR_INVALID_ARG,
             "embedding");
    TU_FAILS(road_adapter_set_apply_mixed(m.s, NULL, q, 2, NULL, y), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_adapter_set_forward_mixed(m.s, NULL, q, 2, NULL, x, y), ROAD_ERR_INVALID_ARG,
             NULL);
    /* An adapter of the plan deleted after planning: a stale plan, not base rows. */
    TU_OK(road_adapter_set_delete(m.s, "rx"));
    TU_FAILS(road_adapter_set_apply_mixed(m.s, p, lid(1, UP), 2, NULL, y), ROAD_ERR_STATE, "plan");
    road_batch_plan_free(p);
    bag_free(&b);
    llama_free(&m);
    llama_free(&m2);
}

/* ---- 2. backward ---------------------------------------------------------------------------- */

/* Layer i with active adapters act[0..n_act) (in order) and the inactive `idle`: gradients of
 * sum(g * y) against central differences of the double forward (dx is test_linear's). */
static void check_backward(llama *m, int32_t i, const char *const *act, int n_act,
                           const char *idle) {
    bag b = {{0}, 0};
    const int64_t R = 3, in = din(m, i), d = dout(m, i);
    road_linear *l = road_adapter_set_layer(m->s, i);
    float *x = fvec(&b, R * in, 500 + (uint64_t)i), *g = fvec(&b, R * d, 600 + (uint64_t)i);
    float *yb = fvec(&b, R * d, 0), *dx = fvec(&b, R * in, 0);
    float *dt, *da;
    int64_t n;
    base_forward(m, i, R, x, yb);
    road_linear_zero_grads(l);
    TU_OK(road_adapter_set_backward(m->s, i, R, x, yb, g, dx));

    double *ybd = dvec(&b, yb, R * d), *gd = dvec(&b, g, R * d), *scratch = dvec(&b, NULL, R * d);
    ref_ad ads[2];
    for (int k = 0; k < n_act; k++) ads[k] = ref_read(&b, m, i, act[k]);
    char what[160];
    for (int k = 0; k < n_act; k++) {
        TU_OK(road_linear_adapter_grads(l, act[k], &dt, &da, &n));
        float *fd = fvec(&b, 2 * n, 0);
        for (int64_t j = 0; j < 2 * n; j++) {
            double *p = j < n ? &ads[k].theta[j] : &ads[k].alpha[j - n];
            const double keep = *p;
            *p = keep + FD_STEP;
            const double lp = ref_loss(ads, n_act, R, ybd, gd, scratch);
            *p = keep - FD_STEP;
            const double lm = ref_loss(ads, n_act, R, ybd, gd, scratch);
            *p = keep;
            fd[j] = (float)((lp - lm) / (2.0 * FD_STEP));
        }
        snprintf(what, sizeof what, "%s: d theta of '%s'", m->names[i], act[k]);
        tu_assert_close(what, dt, fd, n, GRAD_ATOL, GRAD_RTOL);
        snprintf(what, sizeof what, "%s: d alpha of '%s'", m->names[i], act[k]);
        tu_assert_close(what, da, fd + n, n, GRAD_ATOL, GRAD_RTOL);
    }
    if (idle) { /* inactive: not trained, its gradients stay zero */
        TU_OK(road_linear_adapter_grads(l, idle, &dt, &da, &n));
        tu_assert_equal_f32("inactive adapter's d theta", dt, fvec(&b, n, 0), n);
        tu_assert_equal_f32("inactive adapter's d alpha", da, fvec(&b, n, 0), n);
    }
    /* Parameter gradients accumulate: a second backward doubles them exactly. */
    TU_OK(road_linear_adapter_grads(l, act[0], &dt, &da, &n));
    const float once = dt[0];
    TU_OK(road_adapter_set_backward(m->s, i, R, x, yb, g, NULL));
    assert_true(dt[0] == 2.0f * once);
    bag_free(&b);
}

static void test_backward(void **state) {
    (void)state;
    llama m;
    llama_make(&m, 14);
    add_three(&m);
    set_active(&m, "qv", "all");
    road_adapter_set_train(m.s, true);
    static const char *const qa[2] = {"qv", "all"}, *const ra[2] = {"rx", "all"};
    check_backward(&m, lid(0, Q), qa, 2, NULL);      /* two active, in order */
    check_backward(&m, lid(1, UP), qa + 1, 1, "rx"); /* rx inactive */
    set_active(&m, "rx", "all");
    check_backward(&m, lid(1, GATE), ra, 2, NULL);
    check_backward(&m, lid(1, V), ra + 1, 1, "qv");
    llama_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_batches),
        cmocka_unit_test(test_mixed_errors),
        cmocka_unit_test(test_backward),
    };
    return cmocka_run_group_tests_name("adapter_set_compute", tests, NULL, NULL);
}
