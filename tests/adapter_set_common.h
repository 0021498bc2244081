/*
 * tests/adapter_set_common.h - the test model and helpers shared by test_adapter_set.c,
 * test_adapter_set_compute.c and test_adapter_set_oom.c (the adapter manager, road/adapter_set.h,
 * PEFT's RoadModel): a Llama-shaped model of 2 decoder layers x {q,k,v,o}_proj +
 * {gate,up,down}_proj (hidden 64, GQA k/v 32, intermediate 176; Qwen2-style biases on q, k, v),
 * embed_tokens and lm_head, named as Hugging Face names them; scratch memory; the three
 * adapters most tests use; state checks; and the independent double-precision RoAd reference.
 * Header-only (static inline) because each test is its own executable.
 *
 * Legend: R = rows, I = in_features, D = out_features, P = theta (and alpha) entries of one
 * adapter on one layer. Row-major: x [R x I], y [R x D], W [D x I].
 */
#ifndef ROAD_TEST_ADAPTER_SET_COMMON_H
#define ROAD_TEST_ADAPTER_SET_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "testutil.h"

/* ---- tolerances ------------------------------------------------------------------------------ */

/* A float32 layer output vs a double reference (or two float32 evaluations). Weights are
 * uniform in +-1/sqrt(I) and x in +-1, so sum|x w| <= sqrt(I) <= sqrt(176) = 13.3; the float32
 * dot-product bound gamma_I * sum|x w| = 176 * 2^-24 * 13.3 = 1.4e-4, plus a few roundings in
 * the rotations (|c| <= 1.1). A wrong pair, sign or order gives errors of order 0.1. */
#define FWD_ATOL 2e-4
#define FWD_RTOL 0.0
/* Weights after merge + unmerge vs the originals (and merged W vs a double R W), relative to
 * the layer's largest |W|: each merge or unmerge rounds once (2^-24 = 6e-8) and an exact 2x2
 * inverse amplifies by the block condition (<= MAX_COND): 4 roundings x 3 x 6e-8 = 7e-7 for
 * two adapters; the brief's 1e-6 covers it. */
#define WEIGHT_REL 1e-6
/* Parameters come from theta in +-0.3 and alpha in [0.9, 1.1], which keeps every 2x2 block's
 * condition number below MAX_COND (checked with road_rot_block_condition when set). */
#define THETA_RANGE 0.3f
#define ALPHA_LO 0.9f
#define ALPHA_HI 1.1f
#define MAX_COND 3.0

/* ---- scratch memory: everything a test allocates, freed at once ------------------------------ */

#define BAG_CAP 128
typedef struct bag {
    void *p[BAG_CAP];
    int n;
} bag;

static inline void *bag_alloc(bag *b, size_t n) {
    assert_true(b->n < BAG_CAP);
    return b->p[b->n++] = tu_alloc(n);
}

static inline void bag_free(bag *b) {
    for (int i = 0; i < b->n; i++) free(b->p[i]);
    b->n = 0;
}

/* n floats, uniform in +-1 from `seed` (0: zeros). */
static inline float *fvec(bag *b, int64_t n, uint64_t seed) {
    float *x = bag_alloc(b, (size_t)n * sizeof(float));
    if (seed) tu_fill_uniform(x, n, seed, -1.0f, 1.0f);
    return x;
}

static inline double *dvec(bag *b, const float *x, int64_t n) {
    double *y = bag_alloc(b, (size_t)n * sizeof(double));
    for (int64_t k = 0; x && k < n; k++) y[k] = x[k];
    return y;
}

static inline float *fcopy(bag *b, const double *x, int64_t n) {
    float *y = fvec(b, n, 0);
    for (int64_t k = 0; k < n; k++) y[k] = (float)x[k];
    return y;
}

/* ---- the model ---------------------------------------------------------------------------- */

enum { HIDDEN = 64, KV = 32, INTER = 176, VOCAB = 48, N_DEC = 2, N_PROJ = 7 };
enum { N_LAYERS = 2 + N_DEC * N_PROJ, EMBED = 0, HEAD = N_LAYERS - 1 };
enum { Q, K, V, O, GATE, UP, DOWN };

static const char *const proj_name[N_PROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const int64_t proj_in[N_PROJ] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, INTER};
static const int64_t proj_out[N_PROJ] = {HIDDEN, KV, KV, HIDDEN, INTER, INTER, HIDDEN};
static const bool proj_bias[N_PROJ] = {true, true, true, false, false, false, false};

/* Index of projection p of decoder layer l. */
static inline int32_t lid(int l, int p) {
    return (int32_t)(1 + l * N_PROJ + p);
}

typedef struct llama {
    road_adapter_set *s;
    road_layer_desc d[N_LAYERS];
    char names[N_LAYERS][48];
    float *w[N_LAYERS], *b[N_LAYERS];   /* the caller's arrays the set borrows */
    float *w0[N_LAYERS], *b0[N_LAYERS]; /* their original values */
    bag mem;
} llama;

/* I, D and I * D of layer i. */
#define din(m, i) ((m)->d[i].in_features)
#define dout(m, i) ((m)->d[i].out_features)
#define nw(m, i) (din(m, i) * dout(m, i))

static inline void llama_describe(llama *m, uint64_t seed) {
    memset(m, 0, sizeof *m);
    for (int32_t i = 0; i < N_LAYERS; i++) {
        road_layer_desc *d = &m->d[i];
        const int l = (i - 1) / N_PROJ, p = (i - 1) % N_PROJ;
        const bool proj = i != EMBED && i != HEAD;
        if (proj)
            snprintf(m->names[i], sizeof m->names[i], "model.layers.%d.%s", l, proj_name[p]);
        else
            snprintf(m->names[i], sizeof m->names[i],
                     i == EMBED ? "model.embed_tokens" : "lm_head");
        d->name = m->names[i];
        d->kind = i == EMBED ? ROAD_LAYER_EMBEDDING : ROAD_LAYER_LINEAR;
        d->in_features = proj ? proj_in[p] : HIDDEN;
        d->out_features = proj ? proj_out[p] : VOCAB;
        d->is_output_head = i == HEAD;
        const float r = 1.0f / sqrtf((float)d->in_features);
        d->weight = m->w[i] = fvec(&m->mem, nw(m, i), 0);
        tu_fill_uniform(m->w[i], nw(m, i), seed + 17 * (uint64_t)i, -r, r);
        m->w0[i] = fvec(&m->mem, nw(m, i), 0);
        memcpy(m->w0[i], m->w[i], (size_t)nw(m, i) * sizeof(float));
        if (!proj || !proj_bias[p]) continue;
        d->bias = m->b[i] = fvec(&m->mem, d->out_features, seed + 17 * (uint64_t)i + 5);
        m->b0[i] = fvec(&m->mem, d->out_features, 0);
        memcpy(m->b0[i], m->b[i], (size_t)d->out_features * sizeof(float));
    }
}

static inline road_status llama_create(llama *m) {
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = "llama";
    p.layers = m->d;
    p.n_layers = N_LAYERS;
    return road_adapter_set_create(&p, &m->s);
}

static inline void llama_make(llama *m, uint64_t seed) {
    llama_describe(m, seed);
    TU_OK(llama_create(m));
    assert_non_null(m->s);
}

static inline void llama_free(llama *m) {
    road_adapter_set_free(m->s);
    bag_free(&m->mem);
}

/* ---- configs, parameters, state checks --------------------------------------------------- */

static inline road_config *cfg_make(road_variant v, int64_t gs, const char *targets) {
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_variant(c, v));
    TU_OK(road_config_set_group_size(c, gs));
    road_config_set_init_weights(c, false);
    if (targets) TU_OK(road_config_set_targets_from_string(c, targets));
    return c;
}

#define RX_REGEX "model\\.layers\\.1\\.mlp\\.(gate|up)_proj"

static inline void add_cfg(llama *m, const char *name, road_variant v, int64_t gs,
                           const char *targets) {
    road_config *c = cfg_make(v, gs, targets);
    TU_OK(road_adapter_set_add(m->s, name, c, 42));
    road_config_free(c);
}

/* Give `name` on every layer that has it parameters from the well-conditioned ranges. */
static inline void set_params(llama *m, const char *name, uint64_t seed) {
    for (int32_t i = 0; i < N_LAYERS; i++) {
        if (!road_adapter_set_on_layer(m->s, name, i)) continue;
        road_linear *l = road_adapter_set_layer(m->s, i);
        float *theta, *alpha;
        int64_t n;
        road_rot r;
        TU_OK(road_linear_adapter_params(l, name, &theta, &alpha, &n));
        tu_fill_uniform(theta, n, seed + 31 * (uint64_t)i, -THETA_RANGE, THETA_RANGE);
        tu_fill_uniform(alpha, n, seed + 31 * (uint64_t)i + 1, ALPHA_LO, ALPHA_HI);
        TU_OK(road_linear_params_changed(l, name));
        TU_OK(road_linear_adapter_rot(l, name, &r));
        assert_true(road_rot_block_condition(&r) <= MAX_COND);
    }
}

/* The three adapters most tests use: "qv" (null targets: q_proj, v_proj; road_1, group 32, as
 * PEFT's default 64 does not divide k/v's 32), "all" (all-linear, road_4, group 8) and "rx" (a
 * regex on layer 1's gate/up, road_2, group 16). */
static inline void add_three(llama *m) {
    add_cfg(m, "qv", ROAD_VARIANT_1, 32, NULL);
    add_cfg(m, "all", ROAD_VARIANT_4, 8, "all-linear");
    add_cfg(m, "rx", ROAD_VARIANT_2, 16, RX_REGEX);
    set_params(m, "qv", 100);
    set_params(m, "all", 200);
    set_params(m, "rx", 300);
}

static inline void set_active(llama *m, const char *a, const char *b) {
    const char *v[2] = {a, b};
    TU_OK(road_adapter_set_set_active(m->s, v, b ? 2 : (a ? 1 : 0)));
}

/* Every layer holds the set's active list (in order) and enabled flag. */
static inline void assert_layers_agree(llama *m) {
    const int32_t na = road_adapter_set_active_count(m->s);
    for (int32_t i = 0; i < N_LAYERS; i++) {
        road_linear *l = road_adapter_set_layer(m->s, i);
        if (!l) continue;
        assert_int_equal(road_linear_active_count(l), na);
        for (int32_t k = 0; k < na; k++)
            assert_string_equal(road_linear_active_name(l, k),
                                road_adapter_set_active_name(m->s, k));
        assert_int_equal(road_linear_adapters_enabled(l), road_adapter_set_enabled(m->s));
    }
}

/* The active list is exactly `want` ("a,b", in order; "" for none), and the layers agree. */
static inline void assert_active(llama *m, const char *want) {
    char got[512];
    size_t k = 0;
    got[0] = '\0';
    const int32_t na = road_adapter_set_active_count(m->s);
    for (int32_t j = 0; j < na; j++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%s", j ? "," : "",
                              road_adapter_set_active_name(m->s, j));
    assert_null(road_adapter_set_active_name(m->s, na));
    assert_string_equal(got, want);
    assert_layers_agree(m);
}

/* The layers carrying `name` must be exactly `want` ("a,b", in layer order). */
static inline void assert_on_layers(const llama *m, const char *name, const char *want) {
    char got[2048];
    size_t k = 0;
    got[0] = '\0';
    for (int32_t i = 0; i < N_LAYERS; i++)
        if (road_adapter_set_on_layer(m->s, name, i))
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%s", k ? "," : "", m->names[i]);
    if (strcmp(got, want) != 0) {
        print_error("adapter '%s' is on\n  %s\nexpected\n  %s\n", name, got, want);
        fail();
    }
}

static inline double max_abs(const float *x, int64_t n) {
    double v = 0.0;
    for (int64_t k = 0; k < n; k++) v = fmax(v, fabs((double)x[k]));
    return v;
}

/* Every weight and bias within WEIGHT_REL * max|original| of the originals. */
static inline void assert_weights_restored(const llama *m, const char *what) {
    char buf[160];
    for (int32_t i = 0; i < N_LAYERS; i++) {
        snprintf(buf, sizeof buf, "%s: %s", what, m->names[i]);
        tu_assert_close(buf, m->w[i], m->w0[i], nw(m, i), WEIGHT_REL * max_abs(m->w0[i], nw(m, i)),
                        0);
        if (m->b[i])
            tu_assert_close(buf, m->b[i], m->b0[i], dout(m, i),
                            WEIGHT_REL * max_abs(m->b0[i], dout(m, i)), 0.0);
    }
}

/* A copy of every layer's weights, and a bitwise comparison with one. */
static inline void snapshot(bag *b, const llama *m, float **snap) {
    for (int32_t i = 0; i < N_LAYERS; i++) {
        snap[i] = fvec(b, nw(m, i), 0);
        memcpy(snap[i], m->w[i], (size_t)nw(m, i) * sizeof(float));
    }
}

static inline void assert_weights_equal(const llama *m, float *const *snap, const char *what) {
    char buf[160];
    for (int32_t i = 0; i < N_LAYERS; i++) {
        snprintf(buf, sizeof buf, "%s: %s", what, m->names[i]);
        tu_assert_equal_f32(buf, m->w[i], snap[i], nw(m, i));
    }
}

/* y [R x D] of layer i with adapters disabled; the enabled state is put back. */
static inline void base_forward(llama *m, int32_t i, int64_t rows, const float *x, float *y) {
    const bool was = road_adapter_set_enabled(m->s);
    TU_OK(road_adapter_set_enable(m->s, false));
    TU_OK(road_adapter_set_forward(m->s, i, rows, x, y));
    TU_OK(road_adapter_set_enable(m->s, was));
}

/* ---- the double-precision reference (docs/formats.md, "RoAd parameters") ------------------- */

typedef struct ref_ad {
    road_variant v;
    int64_t gs, d, n;
    double *theta, *alpha;
} ref_ad;

static inline ref_ad ref_read(bag *b, llama *m, int32_t i, const char *name) {
    road_linear *l = road_adapter_set_layer(m->s, i);
    ref_ad a = {ROAD_VARIANT_1, 0, dout(m, i), 0, NULL, NULL};
    int32_t gs = 0;
    float *theta, *alpha;
    TU_OK(road_linear_adapter_info(l, name, &a.v, &gs, &a.n));
    TU_OK(road_linear_adapter_params(l, name, &theta, &alpha, NULL));
    a.gs = gs;
    a.theta = dvec(b, theta, a.n);
    a.alpha = dvec(b, alpha, a.n);
    return a;
}

/* RoAd on the feature axis of y: feature f of column c is y[f * ld_feat + c * ld_col]. For
 * activations [R x D] ld_feat = 1, ld_col = D; for W [D x I] (merging) ld_feat = I, ld_col = 1.
 * Feature a = group start + j (j < g/2) pairs with b = a + g/2:
 * y'[a] = c1[a] y[a] - c2[a] y[b], y'[b] = c1[b] y[b] + c2[b] y[a]. */
static inline void ref_rotate(const ref_ad *a, int64_t cols, double *y, int64_t ld_feat,
                              int64_t ld_col) {
    const int64_t gs = a->gs, h = gs / 2;
    for (int64_t fa = 0; fa < a->d; fa++) {
        if (fa % gs >= h) continue;
        double c[2][2]; /* [feature a, b][c1, c2] */
        for (int e = 0; e < 2; e++) {
            const int64_t f = fa + e * h, g = f / gs, k = f % gs;
            int64_t pc = f, ps = f; /* road_2 */
            if (a->v == ROAD_VARIANT_1) pc = ps = g * h + k % h;
            if (a->v == ROAD_VARIANT_4) pc = g * 2 * gs + k, ps = pc + gs;
            c[e][0] = a->alpha[pc] * cos(a->theta[pc]);
            c[e][1] = a->alpha[ps] * sin(a->theta[ps]);
        }
        for (int64_t col = 0; col < cols; col++) {
            double *ya = y + fa * ld_feat + col * ld_col, *yb = ya + h * ld_feat;
            const double va = *ya, vb = *yb;
            *ya = c[0][0] * va - c[0][1] * vb;
            *yb = c[1][0] * vb + c[1][1] * va;
        }
    }
}

/* y [R x D] = x W^T + b from the caller's current arrays. */
static inline void ref_base(const llama *m, int32_t i, int64_t rows, const double *x, double *y) {
    const int64_t in = din(m, i), d = dout(m, i);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < d; o++) {
            double acc = m->b[i] ? m->b[i][o] : 0.0;
            for (int64_t k = 0; k < in; k++) acc += x[r * in + k] * (double)m->w[i][o * in + k];
            y[r * d + o] = acc;
        }
}

#endif
