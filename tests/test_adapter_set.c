/*
 * tests/test_adapter_set.c - the adapter manager (road/adapters.h, PEFT's RoadModel) on a
 * Llama-shaped model: 2 decoder layers x {q,k,v,o}_proj + {gate,up,down}_proj (hidden 64,
 * GQA k/v 32, intermediate 176; Qwen2-style biases on q, k, v), embed_tokens and lm_head,
 * named as Hugging Face names them. Checked: which layers carry which adapter, the active
 * list and its order, delete / enable / merge / unload rules, all-or-nothing failures, the
 * trainable-parameter report, mixed batches (bitwise against whole-batch forwards), backward
 * (against central differences of a double-precision forward written here), create errors
 * and out-of-memory injection.
 *
 * Legend: R = rows, I = in_features, D = out_features, P = theta (and alpha) entries of one
 * adapter on one layer. Row-major: x [R x I], y [R x D], W [D x I].
 */
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
/* Central differences of the double reference: truncation ~h^2 = 1e-8 relative, roundoff
 * ~1e-16 / h, both far below the float32 gradient tolerance, testutil's golden bound (the one
 * test_linear uses for the same comparison). */
#define FD_STEP 1e-4
#define GRAD_ATOL GOLDEN_ATOL
#define GRAD_RTOL GOLDEN_RTOL

/* ---- scratch memory: everything a test allocates, freed at once ------------------------------ */

#define BAG_CAP 128
typedef struct bag {
    void *p[BAG_CAP];
    int n;
} bag;

static void *bag_alloc(bag *b, size_t n) {
    assert_true(b->n < BAG_CAP);
    return b->p[b->n++] = tu_alloc(n);
}

static void bag_free(bag *b) {
    for (int i = 0; i < b->n; i++) free(b->p[i]);
    b->n = 0;
}

/* n floats, uniform in +-1 from `seed` (0: zeros). */
static float *fvec(bag *b, int64_t n, uint64_t seed) {
    float *x = bag_alloc(b, (size_t)n * sizeof(float));
    if (seed) tu_fill_uniform(x, n, seed, -1.0f, 1.0f);
    return x;
}

static double *dvec(bag *b, const float *x, int64_t n) {
    double *y = bag_alloc(b, (size_t)n * sizeof(double));
    for (int64_t k = 0; x && k < n; k++) y[k] = x[k];
    return y;
}

static float *fcopy(bag *b, const double *x, int64_t n) {
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
static int32_t lid(int l, int p) {
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

static void llama_describe(llama *m, uint64_t seed) {
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

static road_status llama_create(llama *m) {
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = "llama";
    p.layers = m->d;
    p.n_layers = N_LAYERS;
    return road_adapter_set_create(&p, &m->s);
}

static void llama_make(llama *m, uint64_t seed) {
    llama_describe(m, seed);
    TU_OK(llama_create(m));
    assert_non_null(m->s);
}

static void llama_free(llama *m) {
    road_adapter_set_free(m->s);
    bag_free(&m->mem);
}

/* ---- configs, parameters, state checks --------------------------------------------------- */

static road_config *cfg_make(road_variant v, int64_t gs, const char *targets) {
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_variant(c, v));
    TU_OK(road_config_set_group_size(c, gs));
    road_config_set_init_weights(c, false);
    if (targets) TU_OK(road_config_set_targets_from_string(c, targets));
    return c;
}

#define RX_REGEX "model\\.layers\\.1\\.mlp\\.(gate|up)_proj"

static void add_cfg(llama *m, const char *name, road_variant v, int64_t gs, const char *targets) {
    road_config *c = cfg_make(v, gs, targets);
    TU_OK(road_adapter_set_add(m->s, name, c, 42));
    road_config_free(c);
}

/* Give `name` on every layer that has it parameters from the well-conditioned ranges. */
static void set_params(llama *m, const char *name, uint64_t seed) {
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
static void add_three(llama *m) {
    add_cfg(m, "qv", ROAD_VARIANT_1, 32, NULL);
    add_cfg(m, "all", ROAD_VARIANT_4, 8, "all-linear");
    add_cfg(m, "rx", ROAD_VARIANT_2, 16, RX_REGEX);
    set_params(m, "qv", 100);
    set_params(m, "all", 200);
    set_params(m, "rx", 300);
}

static void set_active(llama *m, const char *a, const char *b) {
    const char *v[2] = {a, b};
    TU_OK(road_adapter_set_set_active(m->s, v, b ? 2 : (a ? 1 : 0)));
}

/* Every layer holds the set's active list (in order) and enabled flag. */
static void assert_layers_agree(llama *m) {
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
static void assert_active(llama *m, const char *want) {
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
static void assert_on_layers(const llama *m, const char *name, const char *want) {
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

static double max_abs(const float *x, int64_t n) {
    double v = 0.0;
    for (int64_t k = 0; k < n; k++) v = fmax(v, fabs((double)x[k]));
    return v;
}

/* Every weight and bias within WEIGHT_REL * max|original| of the originals. */
static void assert_weights_restored(const llama *m, const char *what) {
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
static void snapshot(bag *b, const llama *m, float **snap) {
    for (int32_t i = 0; i < N_LAYERS; i++) {
        snap[i] = fvec(b, nw(m, i), 0);
        memcpy(snap[i], m->w[i], (size_t)nw(m, i) * sizeof(float));
    }
}

static void assert_weights_equal(const llama *m, float *const *snap, const char *what) {
    char buf[160];
    for (int32_t i = 0; i < N_LAYERS; i++) {
        snprintf(buf, sizeof buf, "%s: %s", what, m->names[i]);
        tu_assert_equal_f32(buf, m->w[i], snap[i], nw(m, i));
    }
}

/* y [R x D] of layer i with adapters disabled; the enabled state is put back. */
static void base_forward(llama *m, int32_t i, int64_t rows, const float *x, float *y) {
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

static ref_ad ref_read(bag *b, llama *m, int32_t i, const char *name) {
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
static void ref_rotate(const ref_ad *a, int64_t cols, double *y, int64_t ld_feat, int64_t ld_col) {
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
static void ref_base(const llama *m, int32_t i, int64_t rows, const double *x, double *y) {
    const int64_t in = din(m, i), d = dout(m, i);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < d; o++) {
            double acc = m->b[i] ? m->b[i][o] : 0.0;
            for (int64_t k = 0; k < in; k++) acc += x[r * in + k] * (double)m->w[i][o * in + k];
            y[r * d + o] = acc;
        }
}

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

/* ---- 8. mixed batches ------------------------------------------------------------------------ */

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

/* ---- 9. backward ---------------------------------------------------------------------------- */

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

/* ---- 10. out of memory ---------------------------------------------------------------------- */

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
    road_alloc_fail_after(k);
    for (int step = 0; step < OOM_STEPS; step++) {
        road_status s = oom_step(step, o, x);
        if (s == ROAD_OK) continue;
        road_alloc_fail_after(-1);
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
    road_alloc_fail_after(-1);
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
    const int64_t live0 = road_alloc_live_bytes();
    assert_false(oom_sequence(-1, want, x));
    assert_int_equal(road_alloc_live_bytes(), live0);
    int64_t k = 0;
    for (; k < 100000; k++) {
        const bool failed = oom_sequence(k, got, x);
        if (road_alloc_live_bytes() != live0) {
            print_error("k=%lld: %lld bytes leaked\n", (long long)k,
                        (long long)(road_alloc_live_bytes() - live0));
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
    road_alloc_fail_after(-1);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_add_targets),
        cmocka_unit_test(test_set_active_order),
        cmocka_unit_test(test_delete_rules),
        cmocka_unit_test(test_enable_disable),
        cmocka_unit_test(test_merge_unmerge),
        cmocka_unit_test(test_merge_all_or_nothing),
        cmocka_unit_test(test_merge_and_unload),
        cmocka_unit_test(test_param_report),
        cmocka_unit_test(test_mixed_batches),
        cmocka_unit_test(test_mixed_errors),
        cmocka_unit_test(test_backward),
        cmocka_unit_test_teardown(test_out_of_memory, reset_alloc_injection),
    };
    return cmocka_run_group_tests_name("adapter_set", tests, NULL, NULL);
}
