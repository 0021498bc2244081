/*
 * tests/test_modules_to_save.c - PEFT's modules_to_save on the tiny-llama fixture: an adapter's
 * full copy of lm_head / embed_tokens replaces the base while the adapter is active (plain and
 * mixed batches), its gradients match central finite differences of the loss and an
 * independently computed dW = dlogits^T h, it survives a PEFT save/load and a checkpoint round
 * trip, AdamW trains it without touching the base, and the refusals and OOM paths hold.
 *
 * Legend: B batch, T tokens, V vocab (320), H hidden (64).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "testutil.h"

#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
/* Central-difference step on one weight entry: the loss (~5.8) carries float32 noise of a few
 * 1e-7, so with h = 1e-2 the difference quotient's noise is ~5e-5; the curvature term h^2 f'''
 * stays far below that for a softmax loss with entries of order 0.1. */
#define FD_STEP 1e-2
/* |fd - g| <= FD_ATOL + FD_RTOL |g|: FD_ATOL covers the 5e-5 noise above (x2 margin); wrong
 * signs, rows or a missing term give errors of the order of |g| itself (>= 1e-3 on the
 * entries checked, which are the largest-gradient ones). */
#define FD_ATOL 1e-4
#define FD_RTOL 2e-2
/* Entries checked by finite differences (the largest |g|: far above the noise). */
#define FD_ENTRIES 4
/* dW = dlogits^T h computed here in double vs road's float32 GEMM over ~20 rows. */
#define DW_ATOL 1e-6
#define DW_RTOL 1e-4

typedef struct batch {
    road_st_file *f;
    const int64_t *ids, *mask, *lab;
    int64_t B, T;
} batch;

static batch batch_open(void) {
    batch b;
    b.f = tu_open_golden("llama/tiny-llama/cases.safetensors");
    const road_st_tensor *t = road_st_find(b.f, "inputs.input_ids");
    b.B = t->shape[0];
    b.T = t->shape[1];
    b.ids = t->data;
    b.mask = road_st_find(b.f, "inputs.attention_mask")->data;
    b.lab = road_st_find(b.f, "inputs.labels")->data;
    return b;
}

/* The model with adapter `name`: RoAd (random init) on q_proj, v_proj and the given
 * modules_to_save. */
static void add_adapter(road_model *m, const char *name, const char *mts, uint64_t seed) {
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    const char *targets[2] = {"q_proj", "v_proj"};
    TU_OK(road_config_set_target_list(cfg, targets, 2));
    TU_OK(road_config_set_group_size(cfg, 8));
    road_config_set_init_weights(cfg, false);
    if (mts) TU_OK(road_config_set_modules_to_save(cfg, &mts, 1));
    TU_OK(road_adapter_set_add(road_model_adapters(m), name, cfg, seed));
    road_config_free(cfg);
}

static road_model *load_with(const char *mts) {
    road_model *m;
    TU_OK(road_model_load(MODEL, NULL, &m));
    add_adapter(m, "a", mts, 7);
    return m;
}

static int32_t layer_of(road_model *m, const char *name) {
    int32_t i = road_adapter_set_find_layer(road_model_adapters(m), name);
    assert_true(i >= 0);
    return i;
}

static float *logits_of(road_model *m, const batch *b) {
    const int64_t V = road_model_config(m)->vocab_size;
    float *z = tu_alloc(sizeof(float) * (size_t)(b->B * b->T * V));
    TU_OK(road_model_forward_padded(m, b->ids, b->mask, b->B, b->T, NULL, z));
    return z;
}

static double loss_at(road_model *m, const batch *b) {
    const int64_t V = road_model_config(m)->vocab_size;
    float *z = logits_of(m, b);
    double l;
    TU_OK(road_causal_lm_loss(z, b->lab, b->mask, b->B, b->T, V, &l));
    free(z);
    return l;
}

static void test_forward_uses_copy(void **state) {
    (void)state;
    batch b = batch_open();
    road_model *m0;
    TU_OK(road_model_load(MODEL, NULL, &m0));
    float *base = logits_of(m0, &b); /* no adapter at all */
    road_model_free(m0);

    road_model *m = load_with("lm_head");
    road_adapter_set *s = road_model_adapters(m);
    const int32_t head = layer_of(m, "lm_head");
    const int64_t V = road_model_config(m)->vocab_size, H = road_model_config(m)->hidden_size;
    const int64_t n = b.B * b.T * V;
    road_module_copy mc;
    TU_OK(road_adapter_set_copy(s, "a", head, &mc));
    assert_int_equal(mc.out, V);
    assert_int_equal(mc.in, H);
    assert_null(mc.bias);
    const float *wb = road_linear_weight(road_adapter_set_layer(s, head));
    tu_assert_equal_f32("fresh copy = base lm_head", mc.weight, wb, V * H);
    float *wb_keep = tu_alloc(sizeof(float) * (size_t)(V * H));
    memcpy(wb_keep, wb, sizeof(float) * (size_t)(V * H));

    float *z1 = logits_of(m, &b);
    /* Doubling every weight of the copy doubles the logits exactly (x2 is exact in float). */
    for (int64_t i = 0; i < V * H; i++) mc.weight[i] *= 2.0f;
    const float *w = NULL;
    TU_OK(road_adapter_set_layer_weight(s, head, &w, NULL));
    assert_ptr_equal(w, mc.weight);
    float *z2 = logits_of(m, &b);
    for (int64_t i = 0; i < n; i++) z1[i] *= 2.0f;
    tu_assert_close("logits with the copy doubled", z2, z1, n, 1e-6, 1e-6);
    tu_assert_equal_f32("base lm_head untouched", wb, wb_keep, V * H);

    /* Disabled, or no adapter active: the base. */
    TU_OK(road_adapter_set_enable(s, false));
    TU_OK(road_adapter_set_layer_weight(s, head, &w, NULL));
    assert_ptr_equal(w, wb);
    float *z3 = logits_of(m, &b);
    tu_assert_equal_f32("disabled = base", z3, base, n);
    TU_OK(road_adapter_set_enable(s, true));
    TU_OK(road_adapter_set_set_active(s, NULL, 0));
    float *z4 = logits_of(m, &b);
    tu_assert_equal_f32("inactive = base", z4, base, n);

    /* Mixed batch: the same tokens as "a" and as base, in one pass. */
    road_adapter_set_train(s, false);
    const char *one = "a";
    TU_OK(road_adapter_set_set_active(s, &one, 1));
    int32_t tok[5] = {1, 17, 42, 5, 300};
    road_seq seq = {tok, 5, NULL, NULL, true};
    float *za = tu_alloc(sizeof(float) * (size_t)(5 * V)),
          *zb = tu_alloc(sizeof(float) * (size_t)(5 * V));
    TU_OK(road_model_forward(m, &seq, 1, za));
    TU_OK(road_adapter_set_enable(s, false));
    TU_OK(road_model_forward(m, &seq, 1, zb));
    TU_OK(road_adapter_set_enable(s, true));
    road_seq mixed[3] = {{tok, 5, NULL, ROAD_BASE_NAME, true},
                         {tok, 5, NULL, "a", true},
                         {tok, 5, NULL, ROAD_BASE_NAME, true}};
    float *zm = tu_alloc(sizeof(float) * (size_t)(15 * V));
    TU_OK(road_model_forward(m, mixed, 3, zm));
    tu_assert_close("mixed: base sequence", zm, zb, 5 * V, 1e-5, 1e-5);
    tu_assert_close("mixed: 'a' sequence (its copy)", zm + 5 * V, za, 5 * V, 1e-5, 1e-5);
    tu_assert_close("mixed: second base sequence", zm + 10 * V, zb, 5 * V, 1e-5, 1e-5);

    /* The report counts the copy as trainable while "a" is active. */
    road_param_report r = road_adapter_set_param_report(s);
    assert_true(r.trainable > V * H);
    TU_OK(road_adapter_set_set_active(s, NULL, 0));
    road_param_report r0 = road_adapter_set_param_report(s);
    assert_int_equal(r0.trainable, 0);
    assert_int_equal(r0.all, r.all);

    free(base), free(wb_keep), free(z1), free(z2), free(z3), free(z4), free(za), free(zb), free(zm);
    road_model_free(m);
    road_st_close(b.f);
}

/* Indices of the FD_ENTRIES largest |g[i]|. */
static void largest(const float *g, int64_t n, int64_t *idx) {
    for (int k = 0; k < FD_ENTRIES; k++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            bool taken = false;
            for (int j = 0; j < k; j++) taken |= idx[j] == i;
            if (!taken && (best < 0 || fabsf(g[i]) > fabsf(g[best]))) best = i;
        }
        idx[k] = best;
    }
}

static void fd_check(road_model *m, const batch *b, float *param, const float *grad, int64_t n,
                     const char *what) {
    int64_t idx[FD_ENTRIES];
    largest(grad, n, idx);
    for (int k = 0; k < FD_ENTRIES; k++) {
        const float keep = param[idx[k]];
        param[idx[k]] = keep + (float)FD_STEP;
        const double lp = loss_at(m, b);
        param[idx[k]] = keep - (float)FD_STEP;
        const double lm = loss_at(m, b);
        param[idx[k]] = keep;
        const double fd = (lp - lm) / (2 * FD_STEP), g = grad[idx[k]];
        if (!(fabs(fd - g) <= FD_ATOL + FD_RTOL * fabs(g)))
            fail_msg("%s[%lld]: gradient %.6g, finite differences %.6g", what, (long long)idx[k], g,
                     fd);
    }
}

static void test_lm_head_gradient(void **state) {
    (void)state;
    batch b = batch_open();
    road_model *m = load_with("lm_head");
    road_adapter_set *s = road_model_adapters(m);
    const int64_t V = road_model_config(m)->vocab_size, H = road_model_config(m)->hidden_size;
    road_module_copy mc;
    TU_OK(road_adapter_set_copy(s, "a", layer_of(m, "lm_head"), &mc));
    double loss;
    TU_OK(road_model_loss_backward(m, b.ids, b.mask, b.lab, b.B, b.T, &loss));
    fd_check(m, &b, mc.weight, mc.dweight, V * H, "d lm_head copy");

    /* dW = dlogits^T h, independently: with the copy set to [I_H; 0] the first H logits are
     * the final hidden states h themselves. */
    memset(mc.weight, 0, sizeof(float) * (size_t)(V * H));
    for (int64_t i = 0; i < H; i++) mc.weight[i * H + i] = 1.0f;
    memset(mc.dweight, 0, sizeof(float) * (size_t)(V * H));
    TU_OK(road_model_loss_backward(m, b.ids, b.mask, b.lab, b.B, b.T, &loss));
    float *z = logits_of(m, &b);
    int64_t count = 0;
    for (int64_t r = 0; r < b.B; r++)
        for (int64_t t = 0; t + 1 < b.T; t++) count += b.lab[r * b.T + t + 1] != -100;
    double *dw = calloc((size_t)(V * H), sizeof(double));
    double *p = calloc((size_t)V, sizeof(double));
    for (int64_t r = 0; r < b.B; r++)
        for (int64_t t = 0; t + 1 < b.T; t++) {
            const int64_t y = b.lab[r * b.T + t + 1];
            if (y == -100) continue;
            const float *zr = z + (r * b.T + t) * V;
            double mx = -INFINITY, se = 0;
            for (int64_t v = 0; v < V; v++) mx = fmax(mx, zr[v]);
            for (int64_t v = 0; v < V; v++) se += exp(zr[v] - mx);
            for (int64_t v = 0; v < V; v++)
                p[v] = (exp(zr[v] - mx) / se - (v == y)) / (double)count;
            for (int64_t v = 0; v < V; v++)
                for (int64_t i = 0; i < H; i++) dw[v * H + i] += p[v] * zr[i]; /* zr[i] = h[i] */
        }
    float *dwf = tu_alloc(sizeof(float) * (size_t)(V * H));
    for (int64_t i = 0; i < V * H; i++) dwf[i] = (float)dw[i];
    tu_assert_close("dW vs dlogits^T h", mc.dweight, dwf, V * H, DW_ATOL, DW_RTOL);
    free(dw), free(p), free(dwf), free(z);
    road_model_free(m);
    road_st_close(b.f);
}

static void test_embedding_gradient(void **state) {
    (void)state;
    batch b = batch_open();
    road_model *m = load_with("embed_tokens");
    road_adapter_set *s = road_model_adapters(m);
    const int64_t V = road_model_config(m)->vocab_size, H = road_model_config(m)->hidden_size;
    road_module_copy mc;
    TU_OK(road_adapter_set_copy(s, "a", layer_of(m, "model.embed_tokens"), &mc));
    double loss;
    TU_OK(road_model_loss_backward(m, b.ids, b.mask, b.lab, b.B, b.T, &loss));
    /* Rows of tokens not in the batch get no gradient. */
    for (int64_t v = 0; v < V; v++) {
        bool used = false;
        for (int64_t i = 0; i < b.B * b.T; i++) used |= b.ids[i] == v && b.mask[i];
        if (used) continue;
        for (int64_t i = 0; i < H; i++) assert_true(mc.dweight[v * H + i] == 0.0f);
    }
    fd_check(m, &b, mc.weight, mc.dweight, V * H, "d embed_tokens copy");
    road_model_free(m);
    road_st_close(b.f);
}

static char tmp_root[64];

static const char *tmp_dir(const char *sub, char *buf, size_t cap) {
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/road_test_mts_XXXXXX");
        assert_non_null(mkdtemp(tmp_root));
    }
    snprintf(buf, cap, "%s/%s", tmp_root, sub);
    return buf;
}

static void test_save_load(void **state) {
    (void)state;
    road_model *m = load_with("lm_head");
    road_adapter_set *s = road_model_adapters(m);
    const int32_t head = layer_of(m, "lm_head");
    road_module_copy mc;
    TU_OK(road_adapter_set_copy(s, "a", head, &mc));
    tu_fill_uniform(mc.weight, mc.out * mc.in, 99, -0.5f, 0.5f);
    char dir[256], file[300];
    tmp_dir("saved", dir, sizeof dir);
    const char *one = "a";
    TU_OK(road_adapter_set_save(s, dir, &one, 1));
    snprintf(file, sizeof file, "%s/a/adapter_model.safetensors", dir);
    road_st_file *f;
    TU_OK(road_st_open(file, &f));
    const road_st_tensor *t = road_st_find(f, "base_model.model.lm_head.weight");
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], mc.out);
    assert_int_equal(t->shape[1], mc.in);
    road_st_close(f);

    road_model *m2;
    TU_OK(road_model_load(MODEL, NULL, &m2));
    snprintf(file, sizeof file, "%s/a", dir);
    TU_OK(road_adapter_set_load(road_model_adapters(m2), "b", file));
    road_module_copy mc2;
    TU_OK(road_adapter_set_copy(road_model_adapters(m2), "b", head, &mc2));
    tu_assert_equal_f32("loaded copy", mc2.weight, mc.weight, mc.out * mc.in);
    batch b = batch_open();
    float *z1 = logits_of(m, &b), *z2 = logits_of(m2, &b);
    tu_assert_equal_f32("logits after load", z2, z1, b.B * b.T * mc.out);
    free(z1), free(z2);
    road_st_close(b.f);
    road_model_free(m2);
    road_model_free(m);
}

static void test_train_and_checkpoint(void **state) {
    (void)state;
    batch b = batch_open();
    road_model *m = load_with("lm_head");
    road_adapter_set *s = road_model_adapters(m);
    const int32_t head = layer_of(m, "lm_head");
    road_module_copy mc;
    TU_OK(road_adapter_set_copy(s, "a", head, &mc));
    const int64_t n = mc.out * mc.in;
    const float *wb = road_linear_weight(road_adapter_set_layer(s, head));
    float *keep_base = tu_alloc(sizeof(float) * (size_t)n),
          *keep_copy = tu_alloc(sizeof(float) * (size_t)n);
    memcpy(keep_base, wb, sizeof(float) * (size_t)n);
    memcpy(keep_copy, mc.weight, sizeof(float) * (size_t)n);

    road_adamw_params hp = road_adamw_default_params();
    hp.weight_decay = 0.01;
    road_optimizer *o;
    TU_OK(road_optimizer_create(s, NULL, 0, &hp, &o));
    /* 2 RoAd layers x 2 (q_proj, v_proj) x 2 blocks... : the copy is the last tensor. */
    const int32_t last = road_optimizer_tensor_count(o) - 1;
    road_optim_tensor ot;
    TU_OK(road_optimizer_tensor(o, last, &ot));
    assert_int_equal(ot.kind, ROAD_OPTIM_COPY_WEIGHT);
    assert_int_equal(ot.n, n);
    assert_ptr_equal(ot.param, mc.weight);
    char key[256];
    TU_OK(road_optimizer_tensor_key(o, last, key, sizeof key));
    assert_string_equal(key, "base_model.model.lm_head.weight.a");
    double l0 = 0, l = 0;
    for (int step = 0; step < 3; step++) {
        TU_OK(road_optimizer_zero_grad(o));
        TU_OK(road_model_loss_backward(m, b.ids, b.mask, b.lab, b.B, b.T, &l));
        if (step == 0) l0 = l;
        TU_OK(road_optimizer_step(o, NULL, NULL));
    }
    assert_true(l < l0);
    tu_assert_equal_f32("base lm_head after training", wb, keep_base, n);
    int64_t changed = 0;
    for (int64_t i = 0; i < n; i++) changed += mc.weight[i] != keep_copy[i];
    assert_true(changed > n / 2);

    /* checkpoint round trip */
    char dir[256];
    tmp_dir("checkpoint-3", dir, sizeof dir);
    TU_OK(road_checkpoint_save(o, NULL, NULL, dir));
    road_model *m2 = load_with("lm_head");
    road_optimizer *o2;
    TU_OK(road_optimizer_create(road_model_adapters(m2), NULL, 0, &hp, &o2));
    TU_OK(road_checkpoint_load(o2, dir, NULL, NULL));
    assert_int_equal(road_optimizer_step_count(o2), 3);
    road_optim_tensor ot2;
    TU_OK(road_optimizer_tensor(o2, last, &ot2));
    TU_OK(road_optimizer_tensor(o, last, &ot));
    tu_assert_equal_f32("copy after checkpoint load", ot2.param, ot.param, n);
    tu_assert_equal_f32("copy's m", ot2.m, ot.m, n);
    tu_assert_equal_f32("copy's v", ot2.v, ot.v, n);
    road_optimizer_free(o2);
    road_model_free(m2);
    road_optimizer_free(o);
    free(keep_base), free(keep_copy);
    road_model_free(m);
    road_st_close(b.f);
}

/* A bf16 model keeps its embedding (and the tied lm_head on it) as stored: copies of both are
 * the stored table widened exactly (bit for bit the float32 model's), and with them active the
 * logits, the loss and the copies' gradients are the widened model's up to summation order. */
#define QWEN2 ROAD_FIXTURES "/llama/tiny-qwen2"
#define STORED_ATOL 1e-6
#define STORED_RTOL 1e-4

static void test_bf16_base_copies(void **state) {
    (void)state;
    road_st_file *cf = tu_open_golden("llama/tiny-qwen2/cases.safetensors");
    const road_st_tensor *t = road_st_find(cf, "inputs.input_ids");
    batch b = {cf,
               t->data,
               road_st_find(cf, "inputs.attention_mask")->data,
               road_st_find(cf, "inputs.labels")->data,
               t->shape[0],
               t->shape[1]};
    road_model_params f32 = road_model_default_params();
    f32.float32_weights = true;
    road_model *m[2];
    TU_OK(road_model_load(QWEN2, NULL, &m[0]));
    TU_OK(road_model_load(QWEN2, &f32, &m[1]));
    assert_int_equal(road_model_embedding_format(m[0], NULL), ROAD_QFORMAT_BF16);
    assert_int_equal(road_model_embedding_format(m[1], NULL), ROAD_QFORMAT_NONE);
    const int64_t V = road_model_config(m[0])->vocab_size, H = road_model_config(m[0])->hidden_size;
    const char *mts[2] = {"embed_tokens", "lm_head"};
    road_module_copy ce[2], ch[2];
    double loss[2];
    float *z[2];
    for (int k = 0; k < 2; k++) {
        road_config *cfg;
        TU_OK(road_config_create(&cfg));
        const char *targets[1] = {"v_proj"};
        TU_OK(road_config_set_target_list(cfg, targets, 1));
        TU_OK(road_config_set_group_size(cfg, 8));
        road_config_set_init_weights(cfg, false);
        TU_OK(road_config_set_modules_to_save(cfg, mts, 2));
        road_adapter_set *s = road_model_adapters(m[k]);
        TU_OK(road_adapter_set_add(s, "a", cfg, 7));
        road_config_free(cfg);
        TU_OK(road_adapter_set_copy(s, "a", layer_of(m[k], "model.embed_tokens"), &ce[k]));
        TU_OK(road_adapter_set_copy(s, "a", layer_of(m[k], "lm_head"), &ch[k]));
        /* make them differ from the base, the same way in both models */
        for (int64_t i = 0; i < V * H; i += 7) ce[k].weight[i] *= 0.5f, ch[k].weight[i] *= -1.0f;
        z[k] = logits_of(m[k], &b);
        road_adapter_set_train(s, true);
        TU_OK(road_model_loss_backward(m[k], b.ids, b.mask, b.lab, b.B, b.T, &loss[k]));
    }
    tu_assert_equal_f32("embed_tokens copy, bf16 base vs widened", ce[0].weight, ce[1].weight,
                        V * H);
    tu_assert_equal_f32("lm_head copy, bf16 base vs widened", ch[0].weight, ch[1].weight, V * H);
    tu_assert_close("logits with copies, bf16 base vs widened", z[0], z[1], b.B * b.T * V,
                    STORED_ATOL, STORED_RTOL);
    if (!(fabs(loss[0] - loss[1]) <= 1e-5 * fabs(loss[1])))
        fail_msg("loss with copies: bf16 base %.9g, widened %.9g", loss[0], loss[1]);
    tu_assert_close("d embed_tokens copy", ce[0].dweight, ce[1].dweight, V * H, STORED_ATOL,
                    STORED_RTOL);
    tu_assert_close("d lm_head copy", ch[0].dweight, ch[1].dweight, V * H, STORED_ATOL,
                    STORED_RTOL);
    /* the base table is never written */
    assert_int_equal(road_model_embedding_format(m[0], NULL), ROAD_QFORMAT_BF16);
    for (int k = 0; k < 2; k++) {
        free(z[k]);
        road_model_free(m[k]);
    }
    road_st_close(cf);
}

static void test_refusals(void **state) {
    (void)state;
    road_model *m;
    TU_OK(road_model_load(MODEL, NULL, &m));
    road_adapter_set *s = road_model_adapters(m);
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    const char *targets[2] = {"q_proj", "lm_head"}, *mts = "lm_head", *nope = "nope";
    TU_OK(road_config_set_target_list(cfg, targets, 2));
    TU_OK(road_config_set_group_size(cfg, 8));
    TU_OK(road_config_set_modules_to_save(cfg, &mts, 1));
    TU_FAILS(road_adapter_set_add(s, "x", cfg, 1), ROAD_ERR_CONFIG,
             "layer 'lm_head' is both a RoAd target");
    TU_OK(road_config_set_target_list(cfg, targets, 1));
    TU_OK(road_config_set_modules_to_save(cfg, &nope, 1));
    TU_FAILS(road_adapter_set_add(s, "x", cfg, 1), ROAD_ERR_CONFIG,
             "entry 'nope' matches no layer");
    assert_int_equal(road_adapter_set_count(s), 0);
    road_config_free(cfg);

    add_adapter(m, "a", "lm_head", 1);
    add_adapter(m, "b", "lm_head", 2);
    const char *both[2] = {"a", "b"};
    TU_FAILS(road_adapter_set_set_active(s, both, 2), ROAD_ERR_CONFIG,
             "'a' and 'b' both hold a modules_to_save copy of layer lm_head");
    assert_string_equal(road_adapter_set_active_name(s, 0), "a"); /* unchanged */
    /* A copy and another adapter's rotation of the same layer. */
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_target_list(cfg, &mts, 1));
    TU_OK(road_config_set_group_size(cfg, 8));
    TU_OK(road_adapter_set_add(s, "c", cfg, 3));
    road_config_free(cfg);
    const char *ac[2] = {"a", "c"};
    TU_FAILS(road_adapter_set_set_active(s, ac, 2), ROAD_ERR_UNSUPPORTED, "rotates it");
    road_model_free(m);
}

static void test_oom(void **state) {
    (void)state;
    road_model *m;
    TU_OK(road_model_load(MODEL, NULL, &m));
    road_adapter_set *s = road_model_adapters(m);
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    const char *targets[2] = {"q_proj", "v_proj"}, *mts[2] = {"lm_head", "embed_tokens"};
    TU_OK(road_config_set_target_list(cfg, targets, 2));
    TU_OK(road_config_set_group_size(cfg, 8));
    TU_OK(road_config_set_modules_to_save(cfg, mts, 2));
    /* Warm up: the set keeps the room for names and adapters that add reserves. */
    TU_OK(road_adapter_set_add(s, "a", cfg, 1));
    TU_OK(road_adapter_set_delete(s, "a"));
    const int64_t live0 = road__alloc_live_bytes();
    int64_t k = 0;
    for (;; k++) {
        road__alloc_fail_after(k);
        road_status st = road_adapter_set_add(s, "a", cfg, 1);
        road__alloc_fail_after(-1);
        if (st == ROAD_OK) break;
        assert_int_equal(st, ROAD_ERR_NO_MEMORY);
        assert_int_equal(road_adapter_set_count(s), 0);
        assert_int_equal(road__alloc_live_bytes(), live0);
    }
    assert_true(k > 2);
    assert_int_equal(road_adapter_set_copy_count(s, "a"), 2);
    TU_OK(road_adapter_set_delete(s, "a"));
    assert_int_equal(road__alloc_live_bytes(), live0);
    road_config_free(cfg);
    road_model_free(m);
}

static int cleanup(void **state) {
    (void)state;
    if (tmp_root[0]) tu_rm_rf(tmp_root);
    return 0;
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_uses_copy),
        cmocka_unit_test(test_lm_head_gradient),
        cmocka_unit_test(test_embedding_gradient),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_train_and_checkpoint),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_bf16_base_copies),
    };
    return cmocka_run_group_tests_name("modules_to_save", tests, NULL, cleanup);
}
