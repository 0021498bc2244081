/*
 * llm/layout.c - the tensors a family's checkpoint holds, by Hugging Face name and shape: the
 * one table the loader (model.c), `road inspect` and road_model_init_folder read, so a family's
 * names live in one place.
 *
 * Order (what road_llm_config_tensor enumerates): model.embed_tokens.weight; per block l the
 * projections (each weight, then its bias) and then the norms, in slot order (NORM_ATTN_IN,
 * NORM_MLP_IN, NORM_ATTN_OUT, NORM_MLP_OUT, NORM_Q, NORM_K); model.norm.weight; lm_head.weight
 * unless tied.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "llm/model_internal.h"

static const char *const proj_names[N_PROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
/* phi3: qkv_proj (rows [q | k | v]) and gate_up_proj (rows [gate | up]) take the places of
 * q_proj and gate_proj */
static const char *const fused_names[N_PROJ] = {
    "self_attn.qkv_proj", NULL, NULL,           "self_attn.o_proj",
    "mlp.gate_up_proj",   NULL, "mlp.down_proj"};

const char *road__layout_proj(const road_llm_config *c, int p, int64_t *out, int64_t *in,
                              bool *bias) {
    const int64_t H = c->hidden_size, I = c->intermediate_size;
    const int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    const bool f = c->fused_proj;
    const int64_t outs[N_PROJ] = {f ? qd + 2 * kvd : qd, kvd, kvd, H, f ? 2 * I : I, I, H};
    const int64_t ins[N_PROJ] = {H, H, H, qd, H, H, I};
    const bool has_bias[N_PROJ] = {c->qkv_bias, c->qkv_bias, c->qkv_bias, c->o_bias,
                                   c->mlp_bias, c->mlp_bias, c->mlp_bias};
    if (out) *out = outs[p];
    if (in) *in = ins[p];
    if (bias) *bias = has_bias[p];
    return f ? fused_names[p] : proj_names[p];
}

/* The block norms by placement and slot (NORM_ATTN_IN, NORM_MLP_IN, NORM_ATTN_OUT,
 * NORM_MLP_OUT): pre-norm (llama's post_attention_layernorm is the MLP's input norm), gemma's
 * sandwich (its post_attention_layernorm is the attention's output norm), olmo2's post norms. */
static const char *const norm_names[3][NORM_MLP_OUT + 1] = {
    [ROAD_NORM_PRE] = {"input_layernorm", "post_attention_layernorm", NULL, NULL},
    [ROAD_NORM_SANDWICH] = {"input_layernorm", "pre_feedforward_layernorm",
                            "post_attention_layernorm", "post_feedforward_layernorm"},
    [ROAD_NORM_POST] = {NULL, NULL, "post_attention_layernorm", "post_feedforward_layernorm"},
};

const char *road__layout_norm(const road_llm_config *c, int n, int64_t *len) {
    const char *name = n <= NORM_MLP_OUT ? norm_names[c->norm_place][n] : NULL;
    if ((n == NORM_Q || n == NORM_K) && c->qk_norm != ROAD_QK_NORM_NONE)
        name = n == NORM_Q ? "self_attn.q_norm" : "self_attn.k_norm";
    if (len) {
        if (n != NORM_Q && n != NORM_K)
            *len = c->hidden_size;
        else if (c->qk_norm == ROAD_QK_NORM_HEAD)
            *len = c->head_dim;
        else
            *len = (n == NORM_Q ? c->n_heads : c->n_kv_heads) * c->head_dim;
    }
    return name;
}

/* The tensors of one block, in order. */
static int block_tensors(const road_llm_config *c, int64_t l, road_llm_tensor *t) {
    int k = 0;
    for (int p = 0; p < N_PROJ; p++) {
        int64_t out, in;
        bool bias;
        const char *name = road__layout_proj(c, p, &out, &in, &bias);
        if (!name) continue;
        t[k] = (road_llm_tensor){
            .ndim = 2, .shape = {out, in}, .role = ROAD_TENSOR_LINEAR, .layer = l};
        snprintf(t[k++].name, sizeof t->name, "model.layers.%lld.%s.weight", (long long)l, name);
        if (!bias) continue;
        t[k] =
            (road_llm_tensor){.ndim = 1, .shape = {out, 0}, .role = ROAD_TENSOR_BIAS, .layer = l};
        snprintf(t[k++].name, sizeof t->name, "model.layers.%lld.%s.bias", (long long)l, name);
    }
    for (int n = 0; n < N_NORM; n++) {
        int64_t len;
        const char *name = road__layout_norm(c, n, &len);
        if (!name) continue;
        t[k] =
            (road_llm_tensor){.ndim = 1, .shape = {len, 0}, .role = ROAD_TENSOR_NORM, .layer = l};
        snprintf(t[k++].name, sizeof t->name, "model.layers.%lld.%s.weight", (long long)l, name);
    }
    return k;
}

/* A config road_llm_config_parse could have made (callers may fill one by hand). */
static bool sane(const road_llm_config *c) {
    return c && (unsigned)c->norm_place <= ROAD_NORM_POST &&
           (unsigned)c->qk_norm <= ROAD_QK_NORM_ALL && c->n_layers >= 0 && c->hidden_size > 0 &&
           c->head_dim > 0;
}

int64_t road_llm_config_tensor_count(const road_llm_config *c) {
    if (!sane(c)) return 0;
    road_llm_tensor t[2 * N_PROJ + N_NORM];
    return 2 + (c->tie_word_embeddings ? 0 : 1) + c->n_layers * block_tensors(c, 0, t);
}

road_status road_llm_config_tensor(const road_llm_config *c, int64_t i, road_llm_tensor *out) {
    if (!sane(c) || !out)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_llm_config_tensor: NULL argument or a config that "
                           "road_llm_config_parse did not make");
    const int64_t n = road_llm_config_tensor_count(c);
    if (i < 0 || i >= n)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_llm_config_tensor: index %lld out of range "
                           "(the checkpoint has %lld tensors)",
                           (long long)i, (long long)n);
    const int64_t H = c->hidden_size, V = c->vocab_size;
    road_llm_tensor t[2 * N_PROJ + N_NORM];
    const int per = block_tensors(c, 0, t);
    if (i == 0) {
        *out =
            (road_llm_tensor){.ndim = 2, .shape = {V, H}, .role = ROAD_TENSOR_EMBED, .layer = -1};
        snprintf(out->name, sizeof out->name, "model.embed_tokens.weight");
    } else if (i <= c->n_layers * per) {
        const int64_t l = (i - 1) / per;
        block_tensors(c, l, t);
        *out = t[(i - 1) % per];
    } else if (i == c->n_layers * per + 1) {
        *out = (road_llm_tensor){
            .ndim = 1, .shape = {H, 0}, .role = ROAD_TENSOR_FINAL_NORM, .layer = -1};
        snprintf(out->name, sizeof out->name, "model.norm.weight");
    } else {
        *out = (road_llm_tensor){.ndim = 2, .shape = {V, H}, .role = ROAD_TENSOR_HEAD, .layer = -1};
        snprintf(out->name, sizeof out->name, "lm_head.weight");
    }
    return ROAD_OK;
}
