/*
 * llm/model_internal.h - the model's layout, shared by the files of llm/ (private).
 *
 * Legend: R rows (tokens of a ragged batch), H hidden, I intermediate, V vocab, nh query heads,
 * nkv key/value heads, d head_dim, L layers.
 */
#ifndef ROAD_LLM_MODEL_INTERNAL_H
#define ROAD_LLM_MODEL_INTERNAL_H

#include "llm/weights.h"
#include "road/llm.h"

/* Linear layers of one decoder block, in registration order. */
enum { PROJ_Q, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, N_PROJ };

/* What one decoder layer computes: the one place a family's differences live. model.c fills
 * it from the config when the model loads; the block (block.c) reads it and dispatches to the
 * ops (ops.c), so no op tests a family. A new family sets these from its config, adding a kind
 * (and its op) only for a norm, activation or attention option not here yet. */
typedef enum road_norm_kind {
    ROAD_NORM_RMS = 0 /* weight * x / sqrt(mean(x^2) + eps) (llama, mistral, qwen2) */
} road_norm_kind;
typedef enum road_act_kind {
    ROAD_ACT_SILU = 0 /* the gated MLP's act(gate) * up with silu (SwiGLU) */
} road_act_kind;
typedef struct road_layer_spec {
    road_norm_kind norm;    /* the kind of the layer's norms (and, for head_spec, the final one) */
    double norm_eps;
    road_act_kind act;
    int64_t window;         /* attention's sliding window (0: every earlier key) */
    float attn_scale;       /* attention's logit scale: 1 / sqrt(head_dim) */
    const float *inv_freq;  /* (d/2) the RoPE frequencies of its positions (the model's) */
} road_layer_spec;

typedef struct road_block {
    float *attn_norm;    /* (H) input_layernorm */
    float *mlp_norm;     /* (H) post_attention_layernorm */
    int32_t proj[N_PROJ]; /* indices into the adapter set */
    road_layer_spec spec;
} road_block;

/* Scratch for one forward, grown as needed (one forward at a time per model). */
typedef struct road_workspace {
    float *buf;
    size_t cap; /* floats */
} road_workspace;

/* The model's own tensors by Hugging Face name, and their gradients for full fine-tuning
 * (full.c). Built on first use. */
typedef struct road_full {
    int32_t n;
    road_model_tensor *t; /* [n], names point into `names` */
    char *names;
    float *grads;         /* one block for every tensor's gradient, NULL unless training on */
    int64_t numel;
    int32_t *lin_w, *lin_b; /* per adapter-set layer: tensor index of its weight / bias, or -1 */
    int32_t *attn_norm, *mlp_norm; /* per block */
    int32_t embed, final_norm;
    bool on;
    bool head_tied; /* lm_head was the embedding's array when the table was built */
} road_full;

struct road_model {
    road_llm_config cfg;
    char *dir;            /* the folder it was loaded from (save copies its tokenizer files) */
    road_full *full;      /* tensors and full fine-tuning state (full.c), NULL until used */
    road_generation_config gen;
    road_weights *weights;
    road_adapter_set *set;
    float *embed;       /* (V, H) */
    float *final_norm;  /* (H) */
    int32_t lm_head;    /* adapter-set index of lm_head */
    int32_t embed_layer; /* adapter-set index of model.embed_tokens */
    road_block *blocks; /* [L] */
    road_layer_spec head_spec; /* the final norm's kind and eps */
    float *inv_freq;    /* (d/2) RoPE inverse frequencies, scaling applied */
    road_workspace ws;
    /* The backward's buffers (grad.c), kept from step to step and grown when a batch needs
     * more: activations and working floats, and per-row bookkeeping (indices, targets, loss
     * statistics, the saved-block table). One backward at a time per model; freed with it. */
    road_workspace bwd_act, bwd_rows;
    int64_t weight_bytes;
    bool recompute;         /* backward recomputes block activations (road_model_set_recompute) */
    int64_t backward_bytes; /* activation memory the last backward used (of bwd_act) */
    road_qtensor **qt;      /* [n_qt] quantized linear weights (the adapter set borrows them) */
    int32_t n_qt;
    int n_threads; /* road_model_params.n_threads: its calls run in a thread scope of it */
};

struct road_kv_cache {
    int64_t n_layers, n_kv, d, cap, len;
    float *k, *v; /* (L, nkv, cap, d) each */
};

/* Full fine-tuning (full.c): the gradient of tensor i, or NULL when full training is off. */
float *road__full_grad(road_model *m, int32_t tensor);
void road__full_free(road_full *f);
/* Does lm_head compute with the embedding's own array? True for a tied config until a merge
 * into lm_head gives the head its own copy (adapter/adapter_set.c: the embedding never
 * changes); savers then write lm_head.weight and tie_word_embeddings false. */
bool road__model_head_tied(const road_model *m);

/* Reserve workspace for `floats` floats; returns its base or NULL (message set). */
float *road__workspace_get(road_workspace *ws, size_t floats);

#endif
