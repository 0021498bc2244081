/*
 * tests/test_optim.c - AdamW, learning-rate schedules, gradient clipping and the optimizer over
 * an adapter set (road/train.h).
 *
 * References are independent of the code under test: AdamW in double written here from the
 * textbook formula (m_hat, v_hat; not PyTorch's rearranged one the library uses), a hand-worked
 * first step, transformers' schedule values worked out by hand at the key steps, and a clipping
 * norm with a known answer (a 3-4-5 triangle). On the adapter set, an update must equal the
 * array API bit for bit and the layer's forward must use the new parameters (cache rebuilt).
 * Last, AdamW + road_adapter_set_backward must fit a target rotation (loss down 100x).
 *
 * Legend: R = rows, I = in_features, D = out_features, P = theta (and alpha) entries.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "road/train.h"
#include "testutil.h"

/* ---- tolerances ------------------------------------------------------------------------------ */

/* One float32 AdamW step vs the double formula from the same float state. The update
 * lr * m_hat / (sqrt(v_hat) + eps) goes through about 10 roundings (moments 3 each, sqrt,
 * two divisions, eps, step size, product): relative error <= 10 * 2^-24 = 6e-7, so 1e-6 of
 * |update|; the decay and the final add round once each: 2^-23 of |p|. */
#define STEP_UPDATE_REL 1e-6
#define STEP_PARAM_REL 0x1p-23
/* m and v themselves: 3 roundings each, relative to the size of their two terms. */
#define MOMENT_REL 0x1p-21
/* 20 steps, float32 end to end vs double end to end: parameters never feed back into the
 * moments, so errors add up: 20 x (2^-23 |p| + 1e-6 lr) < 3e-6 for |p| <= 1; 1e-5 leaves room. */
#define TRAJ_ATOL 1e-5
/* The hand-worked first step: the result must be the float nearest the exact value, within one
 * ulp of 0.9f. */
#define HAND_ULPS 1.0
/* Schedule multipliers are double formulas; the hand values are exact or given to 1e-15. */
#define SCHED_TOL 1e-15
/* The fitted rotation: loss must fall this much (the convergence check). */
#define FIT_REDUCTION 100.0

/* ---- AdamW on arrays ------------------------------------------------------------------------- */

/* The textbook AdamW step in double. */
static void adamw_ref(const road_adamw_params *hp, double lr, int64_t t, int64_t n, double *p,
                      const double *g, double *m, double *v, double *update) {
    for (int64_t i = 0; i < n; i++) {
        p[i] *= 1.0 - lr * hp->weight_decay;
        m[i] = hp->beta1 * m[i] + (1.0 - hp->beta1) * g[i];
        v[i] = hp->beta2 * v[i] + (1.0 - hp->beta2) * g[i] * g[i];
        const double mh = m[i] / (1.0 - pow(hp->beta1, (double)t));
        const double vh = v[i] / (1.0 - pow(hp->beta2, (double)t));
        update[i] = lr * mh / (sqrt(vh) + hp->eps);
        p[i] -= update[i];
    }
}

static void test_adamw_hand(void **state) {
    (void)state;
    road_adamw_params hp = road_adamw_default_params();
    assert_true(hp.lr == 1e-3 && hp.beta1 == 0.9 && hp.beta2 == 0.999 && hp.eps == 1e-8 &&
                hp.weight_decay == 0.0);
    float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
    TU_OK(road_adamw_update(&hp, 0.1, 1, 1, &p, &g, &m, &v));
    /* m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025; m_hat = 0.5, v_hat = 0.25. */
    const double want = 1.0 - 0.1 * (0.05 / 0.1) / (sqrt(0.00025 / 0.001) + 1e-8);
    const double ulp = (double)(nextafterf(0.9f, 1.0f) - 0.9f);
    printf("hand step: p = %.9g, want %.12g (0.9f = %.9g)\n", (double)p, want, (double)0.9f);
    assert_true(fabs((double)p - want) <= HAND_ULPS * ulp);
    assert_true(fabs((double)m - 0.05) <= 0.05 * MOMENT_REL);
    assert_true(fabs((double)v - 0.00025) <= 0.00025 * MOMENT_REL);
    /* Weight decay alone: a zero gradient moves nothing but the decay (p = 1 * (1 - 0.1 * 0.5)). */
    hp.weight_decay = 0.5;
    p = 1.0f, g = 0.0f, m = 0.0f, v = 0.0f;
    TU_OK(road_adamw_update(&hp, 0.1, 1, 1, &p, &g, &m, &v));
    assert_true(p == 0.95f && m == 0.0f && v == 0.0f);
}

static void run_adamw_vs_double(double wd) {
    enum { N = 257, STEPS = 20 };
    road_adamw_params hp = road_adamw_default_params();
    hp.weight_decay = wd;
    const double lr = 1e-2;
    float *p = tu_alloc(N * sizeof(float)), *g = tu_alloc(N * sizeof(float));
    float *m = tu_alloc(N * sizeof(float)), *v = tu_alloc(N * sizeof(float));
    double *pd = tu_alloc(N * sizeof(double)), *gd = tu_alloc(N * sizeof(double));
    double *md = tu_alloc(N * sizeof(double)), *vd = tu_alloc(N * sizeof(double));
    double *ps = tu_alloc(N * sizeof(double)), *ms = tu_alloc(N * sizeof(double));
    double *vs = tu_alloc(N * sizeof(double)), *upd = tu_alloc(N * sizeof(double));
    double *gd_m_prev = tu_alloc(N * sizeof(double));
    tu_fill_uniform(p, N, 11, -1.0f, 1.0f);
    memset(m, 0, N * sizeof(float));
    memset(v, 0, N * sizeof(float));
    for (int i = 0; i < N; i++) pd[i] = p[i], md[i] = 0.0, vd[i] = 0.0;
    double worst = 0.0;
    for (int t = 1; t <= STEPS; t++) {
        tu_fill_uniform(g, N, 100 + (uint64_t)t, -2.0f, 2.0f);
        g[t % N] = 0.0f; /* a zero gradient now and then */
        /* One step from the same float state, in double. */
        for (int i = 0; i < N; i++)
            ps[i] = p[i], ms[i] = m[i], vs[i] = v[i], gd[i] = g[i], gd_m_prev[i] = m[i];
        adamw_ref(&hp, lr, t, N, ps, gd, ms, vs, upd);
        TU_OK(road_adamw_update(&hp, lr, t, N, p, g, m, v));
        for (int i = 0; i < N; i++) {
            /* m = b1 m + (1 - b1) g may cancel: its error is relative to the terms' size, and
             * the update inherits that absolute error times lr / bc1 / denom. */
            const double m_err =
                MOMENT_REL * (hp.beta1 * fabs(gd_m_prev[i]) + (1.0 - hp.beta1) * fabs(gd[i]));
            const double denom = sqrt(vs[i] / (1.0 - pow(hp.beta2, t))) + hp.eps;
            const double tol = STEP_PARAM_REL * fabs(ps[i]) + STEP_UPDATE_REL * fabs(upd[i]) +
                               lr / (1.0 - pow(hp.beta1, t)) * m_err / denom;
            if (fabs(p[i] - ps[i]) > tol || fabs(m[i] - ms[i]) > m_err ||
                fabs(v[i] - vs[i]) > MOMENT_REL * fabs(vs[i])) {
                printf("wd %g step %d [%d]: p %.9g vs %.12g (tol %.3g), m %.9g vs %.12g, v %.9g vs "
                       "%.12g\n",
                       wd, t, i, (double)p[i], ps[i], tol, (double)m[i], ms[i], (double)v[i],
                       vs[i]);
                fail();
            }
        }
        /* The whole trajectory in double. */
        adamw_ref(&hp, lr, t, N, pd, gd, md, vd, upd);
    }
    for (int i = 0; i < N; i++) worst = fmax(worst, fabs(p[i] - pd[i]));
    printf("wd %g: worst |p - p_double| after %d steps = %.3g (bound %g)\n", wd, STEPS, worst,
           TRAJ_ATOL);
    assert_true(worst <= TRAJ_ATOL);
    free(p), free(g), free(m), free(v), free(pd), free(gd), free(md), free(vd);
    free(ps), free(ms), free(vs), free(upd), free(gd_m_prev);
}

static void test_adamw_vs_double(void **state) {
    (void)state;
    run_adamw_vs_double(0.0);
    run_adamw_vs_double(0.1);
}

static void test_adamw_errors(void **state) {
    (void)state;
    road_adamw_params hp = road_adamw_default_params();
    float x = 1.0f, g = 1.0f, m = 0.0f, v = 0.0f;
    TU_FAILS(road_adamw_update(&hp, 1e-3, 0, 1, &x, &g, &m, &v), ROAD_ERR_INVALID_ARG, "step 0");
    TU_FAILS(road_adamw_update(&hp, -1.0, 1, 1, &x, &g, &m, &v), ROAD_ERR_INVALID_ARG,
             "learning rate");
    hp.beta1 = 1.0;
    TU_FAILS(road_adamw_params_check(&hp), ROAD_ERR_CONFIG, "beta1");
    hp = road_adamw_default_params();
    hp.beta2 = NAN;
    TU_FAILS(road_adamw_params_check(&hp), ROAD_ERR_CONFIG, "beta2");
    hp = road_adamw_default_params();
    hp.weight_decay = -0.1;
    TU_FAILS(road_adamw_params_check(&hp), ROAD_ERR_CONFIG, "weight_decay");
    hp = road_adamw_default_params();
    hp.eps = -1.0;
    TU_FAILS(road_adamw_params_check(&hp), ROAD_ERR_CONFIG, "eps");
    assert_true(x == 1.0f && m == 0.0f && v == 0.0f);
}

/* ---- schedules ------------------------------------------------------------------------------- */

static void expect_mult(const road_schedule *s, int64_t step, double want) {
    const double got = road_schedule_multiplier(s, step);
    if (fabs(got - want) > SCHED_TOL) {
        printf("%s w=%lld N=%lld step %lld: %.17g, want %.17g\n", road_schedule_name(s->kind),
               (long long)s->warmup_steps, (long long)s->training_steps, (long long)step, got,
               want);
        fail();
    }
}

static void test_schedules(void **state) {
    (void)state;
    road_schedule s = road_schedule_default();
    assert_int_equal(s.kind, ROAD_SCHEDULE_CONSTANT);
    expect_mult(&s, 0, 1.0);
    expect_mult(&s, 1000, 1.0);
    assert_true(road_schedule_multiplier(NULL, 5) == 1.0);

    s = (road_schedule){ROAD_SCHEDULE_CONSTANT_WITH_WARMUP, 4, 100};
    expect_mult(&s, 0, 0.0);
    expect_mult(&s, 3, 0.75);
    expect_mult(&s, 4, 1.0);
    expect_mult(&s, 500, 1.0);

    /* linear, w = 10, N = 110: warmup s/10, then (110 - s) / 100. */
    s = (road_schedule){ROAD_SCHEDULE_LINEAR, 10, 110};
    expect_mult(&s, 0, 0.0);
    expect_mult(&s, 5, 0.5);
    expect_mult(&s, 9, 0.9);
    expect_mult(&s, 10, 1.0);
    expect_mult(&s, 60, 0.5);
    expect_mult(&s, 109, 0.01);
    expect_mult(&s, 110, 0.0);
    expect_mult(&s, 150, 0.0); /* clamped at 0 */
    /* No warmup: step 0 already decays: (N - 0) / N = 1. */
    s = (road_schedule){ROAD_SCHEDULE_LINEAR, 0, 4};
    expect_mult(&s, 0, 1.0);
    expect_mult(&s, 1, 0.75);
    /* w = 1 and N = 1: max(1, 0) keeps the division defined. */
    s = (road_schedule){ROAD_SCHEDULE_LINEAR, 1, 1};
    expect_mult(&s, 0, 0.0);
    expect_mult(&s, 1, 0.0);

    /* cosine, w = 10, N = 110: 0.5 (1 + cos(pi (s - 10) / 100)). */
    s = (road_schedule){ROAD_SCHEDULE_COSINE, 10, 110};
    expect_mult(&s, 5, 0.5);
    expect_mult(&s, 10, 1.0);
    expect_mult(&s, 35, 0.5 * (1.0 + sqrt(0.5))); /* progress 1/4: cos(pi/4) */
    expect_mult(&s, 60, 0.5);                     /* progress 1/2 */
    expect_mult(&s, 85, 0.5 * (1.0 - sqrt(0.5))); /* progress 3/4 */
    expect_mult(&s, 110, 0.0);

    road_schedule_kind k;
    TU_OK(road_schedule_parse("cosine", &k));
    assert_int_equal(k, ROAD_SCHEDULE_COSINE);
    TU_OK(road_schedule_parse("constant_with_warmup", &k));
    assert_int_equal(k, ROAD_SCHEDULE_CONSTANT_WITH_WARMUP);
    TU_FAILS(road_schedule_parse("polynomial", &k), ROAD_ERR_CONFIG,
             "constant, constant_with_warmup");
    assert_string_equal(road_schedule_name(ROAD_SCHEDULE_LINEAR), "linear");
    s = (road_schedule){ROAD_SCHEDULE_LINEAR, -1, 10};
    TU_FAILS(road_schedule_check(&s), ROAD_ERR_CONFIG, "warmup");
}

/* ---- a tiny model -------------------------------------------------------------------------- */

/* 2 decoder layers x {q, k, v}_proj; RoAd on q and v (road_2, group 4, random init). */
enum { HID = 8, KVD = 4, N_DEC = 2, N_PROJ = 3, N_LAYERS = N_DEC * N_PROJ };
static const char *const proj[N_PROJ] = {"self_attn.q_proj", "self_attn.k_proj",
                                         "self_attn.v_proj"};
static const int64_t proj_out[N_PROJ] = {HID, KVD, KVD};

typedef struct tiny {
    road_adapter_set *s;
    road_layer_desc d[N_LAYERS];
    char names[N_LAYERS][48];
    float *w[N_LAYERS], *b[N_LAYERS];
} tiny;

static road_status tiny_add(tiny *t, const char *name, road_variant var, uint64_t seed) {
    road_config *cfg = NULL;
    road_status st = road_config_create(&cfg);
    const char *targets[2] = {"q_proj", "v_proj"};
    if (st == ROAD_OK) st = road_config_set_variant(cfg, var);
    if (st == ROAD_OK) st = road_config_set_group_size(cfg, 4);
    if (st == ROAD_OK) road_config_set_init_weights(cfg, false);
    if (st == ROAD_OK) st = road_config_set_target_list(cfg, targets, 2);
    if (st == ROAD_OK) st = road_adapter_set_add(t->s, name, cfg, seed);
    road_config_free(cfg);
    return st;
}

static void tiny_make(tiny *t, uint64_t seed) {
    memset(t, 0, sizeof *t);
    for (int l = 0; l < N_DEC; l++) {
        for (int p = 0; p < N_PROJ; p++) {
            const int i = l * N_PROJ + p;
            snprintf(t->names[i], sizeof t->names[i], "model.layers.%d.%s", l, proj[p]);
            const int64_t out = proj_out[p];
            t->w[i] = tu_alloc((size_t)(out * HID) * sizeof(float));
            t->b[i] = tu_alloc((size_t)out * sizeof(float));
            tu_fill_uniform(t->w[i], out * HID, seed + (uint64_t)i, -0.35f, 0.35f);
            tu_fill_uniform(t->b[i], out, seed + 100 + (uint64_t)i, -0.1f, 0.1f);
            t->d[i] = (road_layer_desc){.name = t->names[i],
                                        .kind = ROAD_LAYER_LINEAR,
                                        .in_features = HID,
                                        .out_features = out,
                                        .weight = t->w[i],
                                        .bias = t->b[i]};
        }
    }
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = "llama";
    p.layers = t->d;
    p.n_layers = N_LAYERS;
    TU_OK(road_adapter_set_create(&p, &t->s));
}

static void tiny_free(tiny *t) {
    road_adapter_set_free(t->s);
    for (int i = 0; i < N_LAYERS; i++) free(t->w[i]), free(t->b[i]);
}

/* Fill every trainable gradient with uniform values from `seed`. */
static void fill_grads(road_optimizer *o, uint64_t seed) {
    for (int32_t i = 0; i < road_optimizer_tensor_count(o); i++) {
        road_optim_tensor t;
        TU_OK(road_optimizer_tensor(o, i, &t));
        tu_fill_uniform(t.grad, t.n, seed + (uint64_t)i, -1.0f, 1.0f);
    }
}

static void test_optimizer_set(void **state) {
    (void)state;
    const int64_t live0 = road__alloc_live_bytes();
    tiny t;
    tiny_make(&t, 7);
    TU_OK(tiny_add(&t, "default", ROAD_VARIANT_2, 3));
    road_adamw_params hp = road_adamw_default_params();
    hp.lr = 0.05;
    hp.weight_decay = 0.01;
    road_optimizer *o = NULL;
    TU_OK(road_optimizer_create(t.s, NULL, 0, &hp, &o));
    /* q and v of 2 decoder layers, theta + alpha each; road_2: P = D. */
    assert_int_equal(road_optimizer_tensor_count(o), 2 * 2 * N_DEC);
    assert_int_equal(road_optimizer_numel(o), 2 * N_DEC * (HID + KVD));
    char key[256];
    TU_OK(road_optimizer_tensor_key(o, 1, key, sizeof key));
    assert_string_equal(key, "base_model.model.model.layers.0.self_attn.q_proj.road_alpha.default");
    TU_FAILS(road_optimizer_tensor_key(o, 1, key, 10), ROAD_ERR_INVALID_ARG, "does not fit");

    const int32_t q0 = road_adapter_set_find_layer(t.s, "model.layers.0.self_attn.q_proj");
    road_linear *lin = road_adapter_set_layer(t.s, q0);
    enum { R = 5 };
    float x[R * HID], y0[R * HID], y1[R * HID], y2[R * HID];
    tu_fill_uniform(x, R * HID, 9, -1.0f, 1.0f);
    TU_OK(road_linear_forward(lin, R, x, y0)); /* builds the coefficient cache */

    const int32_t nt = road_optimizer_tensor_count(o);
    const road_schedule sched = {ROAD_SCHEDULE_LINEAR, 1, 4};
    float *pc[8], *gc[8], *mc[8], *vc[8];
    for (int32_t i = 0; i < nt; i++) {
        road_optim_tensor ti;
        TU_OK(road_optimizer_tensor(o, i, &ti));
        pc[i] = tu_alloc((size_t)ti.n * sizeof(float)),
        gc[i] = tu_alloc((size_t)ti.n * sizeof(float));
        mc[i] = tu_alloc((size_t)ti.n * sizeof(float)),
        vc[i] = tu_alloc((size_t)ti.n * sizeof(float));
        memcpy(pc[i], ti.param, (size_t)ti.n * sizeof(float));
        memset(mc[i], 0, (size_t)ti.n * sizeof(float));
        memset(vc[i], 0, (size_t)ti.n * sizeof(float));
    }
    /* Three steps: multipliers 0 (warmup), 1, 2/3 of lr. */
    const double mult[3] = {0.0, 1.0, 2.0 / 3.0};
    for (int step = 0; step < 3; step++) {
        TU_OK(road_optimizer_zero_grad(o));
        fill_grads(o, 1000 * (uint64_t)(step + 1));
        double lr = -1.0;
        for (int32_t i = 0; i < nt; i++) {
            road_optim_tensor ti;
            TU_OK(road_optimizer_tensor(o, i, &ti));
            memcpy(gc[i], ti.grad, (size_t)ti.n * sizeof(float));
            TU_OK(road_adamw_update(&hp, hp.lr * road_schedule_multiplier(&sched, step), step + 1,
                                    ti.n, pc[i], gc[i], mc[i], vc[i]));
        }
        TU_OK(road_optimizer_step(o, &sched, &lr));
        assert_true(fabs(lr - hp.lr * mult[step]) <= SCHED_TOL);
        assert_int_equal(road_optimizer_step_count(o), step + 1);
        for (int32_t i = 0; i < nt; i++) {
            road_optim_tensor ti;
            TU_OK(road_optimizer_tensor(o, i, &ti));
            tu_assert_equal_f32("param", ti.param, pc[i], ti.n);
            tu_assert_equal_f32("m", ti.m, mc[i], ti.n);
            tu_assert_equal_f32("v", ti.v, vc[i], ti.n);
        }
    }
    /* The forward uses the new parameters: same output as a fresh layer given them. */
    TU_OK(road_linear_forward(lin, R, x, y1));
    road_linear_params lp = road_linear_default_params();
    lp.in_features = HID;
    lp.out_features = HID;
    lp.weight = t.w[q0];
    lp.bias = t.b[q0];
    road_linear *fresh = NULL;
    TU_OK(road_linear_create(&lp, &fresh));
    TU_OK(road_linear_add_adapter(fresh, "default", ROAD_VARIANT_2, 4, true, 0));
    TU_OK(road_linear_set_params(fresh, "default", pc[0], pc[1], HID));
    TU_OK(road_linear_forward(fresh, R, x, y2));
    tu_assert_equal_f32("forward after step", y1, y2, R * HID);
    bool changed = false;
    for (int k = 0; k < R * HID; k++) changed |= y1[k] != y0[k];
    assert_true(changed);
    road_linear_free(fresh);

    /* zero_grad clears the layers' buffers. */
    TU_OK(road_optimizer_zero_grad(o));
    road_optim_tensor t0;
    TU_OK(road_optimizer_tensor(o, 0, &t0));
    for (int64_t k = 0; k < t0.n; k++) assert_true(t0.grad[k] == 0.0f);

    /* Merged: refused, nothing changes. */
    TU_OK(road_adapter_set_merge(t.s, NULL, 0, false));
    TU_FAILS(road_optimizer_step(o, NULL, NULL), ROAD_ERR_STATE, "merged");
    TU_OK(road_adapter_set_unmerge(t.s));
    assert_int_equal(road_optimizer_step_count(o), 3);

    /* Errors at create: a non-active adapter, an unknown one, duplicates. */
    TU_OK(tiny_add(&t, "other", ROAD_VARIANT_1, 5));
    road_optimizer *bad = NULL;
    const char *other[1] = {"other"};
    TU_FAILS(road_optimizer_create(t.s, other, 1, &hp, &bad), ROAD_ERR_STATE, "not active");
    const char *nope[1] = {"nope"};
    TU_FAILS(road_optimizer_create(t.s, nope, 1, &hp, &bad), ROAD_ERR_NOT_FOUND, "nope");
    const char *twice[2] = {"default", "default"};
    TU_FAILS(road_optimizer_create(t.s, twice, 2, &hp, &bad), ROAD_ERR_INVALID_ARG, "twice");
    hp.lr = -1;
    TU_FAILS(road_optimizer_create(t.s, NULL, 0, &hp, &bad), ROAD_ERR_CONFIG, "learning rate");
    assert_null(bad);

    /* The adapter deleted and re-added with another variant: refused, named. */
    const char *act[1] = {"other"};
    TU_OK(road_adapter_set_set_active(t.s, act, 1));
    TU_OK(road_adapter_set_delete(t.s, "default"));
    TU_FAILS(road_optimizer_step(o, NULL, NULL), ROAD_ERR_NOT_FOUND, "create a new optimizer");
    TU_OK(tiny_add(&t, "default", ROAD_VARIANT_1, 5));
    TU_FAILS(road_optimizer_step(o, NULL, NULL), ROAD_ERR_STATE, "optimizer was built with");
    assert_int_equal(road_optimizer_step_count(o), 3);

    road_optimizer_free(o);
    road_optimizer_free(NULL);
    for (int32_t i = 0; i < nt; i++) free(pc[i]), free(gc[i]), free(mc[i]), free(vc[i]);
    tiny_free(&t);
    assert_int_equal(road__alloc_live_bytes(), live0);
}

/* ---- clipping and scaling ------------------------------------------------------------------ */

static void test_clip(void **state) {
    (void)state;
    tiny t;
    tiny_make(&t, 8);
    TU_OK(tiny_add(&t, "default", ROAD_VARIANT_1, 4));
    road_optimizer *o = NULL;
    TU_OK(road_optimizer_create(t.s, NULL, 0, NULL, &o));
    TU_OK(road_optimizer_zero_grad(o));
    /* One 3 in the first tensor, one 4 in the last: the norm is 5. */
    road_optim_tensor a, b;
    TU_OK(road_optimizer_tensor(o, 0, &a));
    TU_OK(road_optimizer_tensor(o, road_optimizer_tensor_count(o) - 1, &b));
    a.grad[1] = 3.0f;
    b.grad[0] = -4.0f;
    double total = 0.0;
    TU_OK(road_optimizer_clip_grad_norm(o, 10.0, &total)); /* under the limit: untouched */
    assert_true(total == 5.0);
    assert_true(a.grad[1] == 3.0f && b.grad[0] == -4.0f);
    TU_OK(road_optimizer_clip_grad_norm(o, 1.0, &total));
    assert_true(total == 5.0);
    const float c = (float)(1.0 / (5.0 + 1e-6)); /* torch: max_norm / (total + 1e-6) */
    assert_true(a.grad[1] == 3.0f * c && b.grad[0] == -4.0f * c);
    assert_true(a.grad[0] == 0.0f);
    TU_OK(road_optimizer_clip_grad_norm(o, 1.0, &total));
    assert_true(fabs(total - 1.0) < 1e-6); /* already clipped: coef = 1/(1 + 1e-6) rescales ~1 */

    /* Accumulation helper: scale by 1/k. */
    a.grad[1] = 3.0f;
    TU_OK(road_optimizer_scale_grads(o, 0.25f));
    assert_true(a.grad[1] == 0.75f);
    TU_FAILS(road_optimizer_scale_grads(o, INFINITY), ROAD_ERR_INVALID_ARG, "not finite");

    /* A NaN gradient: refused, gradients left as they are. */
    a.grad[2] = NAN;
    b.grad[0] = 2.0f;
    TU_FAILS(road_optimizer_clip_grad_norm(o, 1.0, &total), ROAD_ERR_NUMERIC, "NaN or Inf");
    assert_true(isnan(total) && b.grad[0] == 2.0f);
    TU_FAILS(road_optimizer_clip_grad_norm(o, 0.0, NULL), ROAD_ERR_INVALID_ARG, "must be > 0");
    road_optimizer_free(o);
    tiny_free(&t);
}

/* ---- convergence: fit a target rotation through one layer ------------------------------------ */

static double sq_loss(const float *y, const float *target, float *dy, int64_t n) {
    double l = 0.0;
    for (int64_t k = 0; k < n; k++) {
        const double d = (double)y[k] - (double)target[k];
        l += 0.5 * d * d / (double)n;
        if (dy) dy[k] = (float)(d / (double)n);
    }
    return l;
}

static void test_fit_rotation(void **state) {
    (void)state;
    enum { R = 64, STEPS = 400 };
    tiny t;
    tiny_make(&t, 21);
    /* Start from identity (init_weights true); the target is another road_2 rotation. */
    road_config *cfg = NULL;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_variant(cfg, ROAD_VARIANT_2));
    TU_OK(road_config_set_group_size(cfg, 4));
    const char *tg[1] = {"q_proj"};
    TU_OK(road_config_set_target_list(cfg, tg, 1));
    TU_OK(road_adapter_set_add(t.s, "default", cfg, 0));
    road_config_free(cfg);
    road_adapter_set_train(t.s, true);
    const int32_t q0 = road_adapter_set_find_layer(t.s, "model.layers.0.self_attn.q_proj");
    road_linear *lin = road_adapter_set_layer(t.s, q0);

    float theta[HID], alpha[HID], c1[HID], c2[HID];
    tu_fill_uniform(theta, HID, 31, -0.6f, 0.6f);
    tu_fill_uniform(alpha, HID, 32, 0.8f, 1.2f);
    TU_OK(road_coeffs_compute(ROAD_VARIANT_2, 4, HID, theta, alpha, c1, c2));
    float *x = tu_alloc(R * HID * sizeof(float)), *ybase = tu_alloc(R * HID * sizeof(float));
    float *target = tu_alloc(R * HID * sizeof(float)), *y = tu_alloc(R * HID * sizeof(float));
    float *dy = tu_alloc(R * HID * sizeof(float));
    tu_fill_uniform(x, R * HID, 33, -1.0f, 1.0f);
    road_adapter_set_enable(t.s, false);
    TU_OK(road_adapter_set_forward(t.s, q0, R, x, ybase)); /* x W^T + b */
    road_adapter_set_enable(t.s, true);
    memcpy(target, ybase, R * HID * sizeof(float));
    road_rot rot = {.out = HID, .group_size = 4, .c1 = c1, .c2 = c2};
    TU_OK(road_rot_forward(&rot, R, target, HID));

    road_adamw_params hp = road_adamw_default_params();
    hp.lr = 1e-2;
    road_optimizer *o = NULL;
    TU_OK(road_optimizer_create(t.s, NULL, 0, &hp, &o));
    TU_OK(road_linear_forward(lin, R, x, y));
    const double loss0 = sq_loss(y, target, NULL, R * HID);
    double loss = loss0;
    for (int s = 0; s < STEPS; s++) {
        TU_OK(road_linear_forward(lin, R, x, y));
        loss = sq_loss(y, target, dy, R * HID);
        TU_OK(road_optimizer_zero_grad(o));
        TU_OK(road_adapter_set_backward(t.s, q0, R, x, ybase, dy, NULL));
        TU_OK(road_optimizer_step(o, NULL, NULL));
    }
    TU_OK(road_linear_forward(lin, R, x, y));
    loss = sq_loss(y, target, NULL, R * HID);
    printf("fit: loss %.3g -> %.3g after %d steps (%.0fx)\n", loss0, loss, STEPS, loss0 / loss);
    assert_true(loss0 > 0.0 && loss * FIT_REDUCTION <= loss0);
    road_optimizer_free(o);
    free(x), free(ybase), free(target), free(y), free(dy);
    tiny_free(&t);
}

/* ---- out of memory ------------------------------------------------------------------------- */

static void test_oom(void **state) {
    (void)state;
    tiny t;
    tiny_make(&t, 9);
    TU_OK(tiny_add(&t, "default", ROAD_VARIANT_4, 4));
    /* The layers allocate their gradient buffers on first use and keep them: do that first. */
    road_optimizer *warm = NULL;
    TU_OK(road_optimizer_create(t.s, NULL, 0, NULL, &warm));
    TU_OK(road_optimizer_zero_grad(warm));
    TU_OK(road_optimizer_scale_grads(warm, 1.0f));
    road_optimizer_free(warm);
    const int64_t live0 = road__alloc_live_bytes();
    int ok_at = -1;
    for (int k = 0; k < 64 && ok_at < 0; k++) {
        road_optimizer *o = NULL;
        road__alloc_fail_after(k);
        road_status s = road_optimizer_create(t.s, NULL, 0, NULL, &o);
        if (s == ROAD_OK) s = road_optimizer_step(o, NULL, NULL);
        if (s == ROAD_OK) s = road_optimizer_clip_grad_norm(o, 1.0, NULL);
        road__alloc_fail_after(-1);
        if (s == ROAD_OK)
            ok_at = k;
        else
            assert_int_equal(s, ROAD_ERR_NO_MEMORY);
        road_optimizer_free(o);
        assert_int_equal(road__alloc_live_bytes(), live0);
    }
    printf("oom: succeeded with %d allocations allowed\n", ok_at);
    assert_true(ok_at > 0);
    tiny_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_hand),    cmocka_unit_test(test_adamw_vs_double),
        cmocka_unit_test(test_adamw_errors),  cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_optimizer_set), cmocka_unit_test(test_clip),
        cmocka_unit_test(test_fit_rotation),  cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
