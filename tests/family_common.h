/*
 * tests/family_common.h - what test_families.c and test_families_serve.c share: the eight
 * fixture checkpoints of tests/fixtures/llama (one per family or family feature), with one or
 * two norm weights of each whose gradient is checked by finite differences, and the fixture's
 * padded batch (3 x 9, left and right padding, labels). Header-only (static inline) because
 * each test is its own executable.
 */
#ifndef ROAD_TEST_FAMILY_COMMON_H
#define ROAD_TEST_FAMILY_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* The fixture README's tolerance for float32 logits against each other (valid positions):
 * 1e-5 abs; observed float32-vs-float64 noise up to 1.8e-6 (tiny-gemma2). */
#define FAM_LOGIT_ATOL 1e-5

typedef struct family {
    const char *name;     /* folder under tests/fixtures/llama */
    const char *norms[2]; /* norm weights (Hugging Face names) for the finite-difference check:
                             one the family adds or changes where it has one */
} family;

static const family fam_list[] = {
    {"tiny-llama", {"model.layers.1.post_attention_layernorm.weight", "model.norm.weight"}},
    {"tiny-qwen2", {"model.layers.0.input_layernorm.weight", NULL}},
    {"tiny-llama3-rope", {"model.layers.0.post_attention_layernorm.weight", NULL}},
    /* per-head RMSNorm over head_dim (w x) */
    {"tiny-qwen3",
     {"model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight"}},
    /* (1 + w) norms: the sandwich's post-MLP norm, the final norm before the logit soft-cap */
    {"tiny-gemma2", {"model.layers.0.post_feedforward_layernorm.weight", "model.norm.weight"}},
    /* (1 + w) per-head k_norm (one kv head), the pre-MLP norm of a global layer */
    {"tiny-gemma3",
     {"model.layers.0.self_attn.k_norm.weight", "model.layers.1.pre_feedforward_layernorm.weight"}},
    /* the norm between the fused qkv / gate_up projections */
    {"tiny-phi3",
     {"model.layers.0.post_attention_layernorm.weight", "model.layers.1.input_layernorm.weight"}},
    /* q_norm over the whole projection, the post-MLP norm before the residual add */
    {"tiny-olmo2",
     {"model.layers.0.self_attn.q_norm.weight",
      "model.layers.1.post_feedforward_layernorm.weight"}},
};
#define FAM_N ((int)(sizeof fam_list / sizeof fam_list[0]))

/* A RoAd group size that divides every linear layer's output width of fixture `name`: 8, but
 * 32 for tiny-phi3, where groups then straddle k and v of qkv_proj (rows 64..79 are k, 80..95
 * v) and gate and up of gate_up_proj (176 is not a multiple of 32). */
static inline int fam_group(const char *name) {
    return strcmp(name, "tiny-phi3") == 0 ? 32 : 8;
}

/* The folder of fixture `name` (static buffer, valid until the next call). */
static inline const char *fam_dir(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/llama/%s", ROAD_FIXTURES, name);
    return dir;
}

/* A fixture's adapter folder: A, B or C (static buffer, valid until the next call). */
static inline const char *fam_adapter(const char *name, const char *adapter) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/llama/%s/adapters/%s", ROAD_FIXTURES, name, adapter);
    return dir;
}

/* The fixture's batch (inputs.* of cases.safetensors). */
typedef struct fam_batch {
    road_st_file *cases;
    const int64_t *ids, *mask, *labels; /* [B, T] */
    int64_t B, T;
} fam_batch;

static inline void fam_batch_open(fam_batch *b, const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "llama/%s/cases.safetensors", name);
    b->cases = tu_open_golden(rel);
    const road_st_tensor *t = road_st_find(b->cases, "inputs.input_ids");
    assert_non_null(t);
    b->B = t->shape[0];
    b->T = t->shape[1];
    b->ids = t->data;
    b->mask = road_st_find(b->cases, "inputs.attention_mask")->data;
    b->labels = road_st_find(b->cases, "inputs.labels")->data;
}

static inline void fam_batch_close(fam_batch *b) {
    road_st_close(b->cases);
    memset(b, 0, sizeof *b);
}

static inline road_model *fam_load(const char *name, road_qformat q) {
    road_model_params p = road_model_default_params();
    p.quantize = q;
    road_model *m = NULL;
    TU_OK(road_model_load(fam_dir(name), &p, &m));
    return m;
}

/* The same with every linear weight widened to float32 (road_model_params.float32_weights):
 * for tests that train every weight, or write merged or dequantized weights in place and
 * compare them at float32 precision. */
static inline road_model *fam_load_f32(const char *name) {
    road_model_params p = road_model_default_params();
    p.float32_weights = true;
    road_model *m = NULL;
    TU_OK(road_model_load(fam_dir(name), &p, &m));
    return m;
}

/* Logits of the batch: [B, T, V], allocated. */
static inline float *fam_logits(road_model *m, const fam_batch *b) {
    const int64_t V = road_model_config(m)->vocab_size;
    float *y = tu_alloc(sizeof(float) * (size_t)(b->B * b->T * V));
    TU_OK(road_model_forward_padded(m, b->ids, b->mask, b->B, b->T, NULL, y));
    return y;
}

/* The causal-LM loss of the batch, by forward only (no gradient touched). */
static inline double fam_loss(road_model *m, const fam_batch *b) {
    float *y = fam_logits(m, b);
    double loss = 0;
    TU_OK(road_causal_lm_loss(y, b->labels, b->mask, b->B, b->T, road_model_config(m)->vocab_size,
                              &loss));
    free(y);
    return loss;
}

/* |a - ref| <= atol at every valid position (padding positions are not normative). */
static inline void fam_assert_close_valid(const char *what, const float *a, const float *ref,
                                          const fam_batch *b, int64_t V, double atol) {
    for (int64_t i = 0; i < b->B * b->T; i++)
        if (b->mask[i]) tu_assert_close(what, a + i * V, ref + i * V, V, atol, 0);
}

/* A fresh RoAd adapter `name` on every linear layer (PEFT's all-linear: lm_head excluded; phi3's
 * fused qkv_proj / gate_up_proj as they are), made active. */
static inline void fam_add_adapter(road_model *m, const char *name, road_variant v, int group) {
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_target_all_linear(cfg));
    TU_OK(road_config_set_group_size(cfg, group));
    TU_OK(road_config_set_variant(cfg, v));
    TU_OK(road_adapter_set_add(road_model_adapters(m), name, cfg, 1));
    road_config_free(cfg);
    const char *act[1] = {name};
    TU_OK(road_adapter_set_set_active(road_model_adapters(m), act, 1));
}

#endif
