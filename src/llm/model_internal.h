/*
 * llm/model_internal.h - the model's layout, shared by the files of llm/ (private).
 *
 * Legend: R rows (tokens of a ragged batch), H hidden, I intermediate, V vocab, nh query heads,
 * nkv key/value heads, d head_dim, L layers.
 */
#ifndef ROAD_LLM_MODEL_INTERNAL_H
#define ROAD_LLM_MODEL_INTERNAL_H

#include "core/threads.h"
#include "quant/quant_internal.h"
#include "llm/rope.h"
#include "llm/weights.h"
#include "road/llm.h"

/* Linear layers of one decoder block, in registration order. */
enum { PROJ_Q, PROJ_K, PROJ_V, PROJ_O, PROJ_GATE, PROJ_UP, PROJ_DOWN, N_PROJ };

/* What one decoder layer computes: the one place a family's differences live. model.c fills
 * it from the config when the model loads; the block (block.c) reads it and dispatches to the
 * ops (ops.c), so no op tests a family. A new family sets these from its config, adding a kind
 * (and its op) only for a norm, activation or attention option not here yet. Which norms a
 * block has (pre, post, q/k) is said by which weights it holds (road_block). */
typedef enum road_norm_kind {
    ROAD_NORM_RMS = 0,   /* weight * x / sqrt(mean(x^2) + eps) (llama, qwen, phi3, olmo2) */
    ROAD_NORM_RMS_1P = 1 /* (1 + weight) * x / sqrt(mean(x^2) + eps) (gemma) */
} road_norm_kind;
typedef struct road_layer_spec {
    road_norm_kind norm; /* the kind of the layer's norms (and, for head_spec, the final one) */
    double norm_eps;
    road_act act;          /* the gated MLP's activation */
    int64_t window;        /* attention's sliding window (0: every earlier key) */
    float attn_scale;      /* attention's logit scale */
    float attn_softcap;    /* attention logits c tanh(s / c) (0: none) */
    float final_softcap;   /* head_spec only: the output logits' cap (0: none) */
    float embed_scale;     /* head_spec only: embeddings times this (1: none) */
    int64_t rotary_dim;    /* dims of each head RoPE rotates */
    const road_rope *rope; /* its RoPE (frequencies, scaling; the model's rope or rope_local) */
} road_layer_spec;

/* Linear layers of a block with fused projections (phi3): qkv_proj's rows are [q | k | v],
 * gate_up_proj's [gate | up]; they take the places of PROJ_Q and PROJ_GATE (PROJ_K, PROJ_V and
 * PROJ_UP are then -1). */
#define PROJ_QKV PROJ_Q
#define PROJ_GATE_UP PROJ_GATE

/* The norms a block may hold, by where they sit (road_llm_config.norm_place says which a
 * family has; model.c's norm_names their Hugging Face names). */
enum {
    NORM_ATTN_IN,  /* the attention's input (input_layernorm) */
    NORM_MLP_IN,   /* the MLP's input (llama's post_attention_layernorm, gemma's
                      pre_feedforward_layernorm) */
    NORM_ATTN_OUT, /* the attention's output (gemma's and olmo2's post_attention_layernorm) */
    NORM_MLP_OUT,  /* the MLP's output (post_feedforward_layernorm) */
    NORM_Q,        /* queries after q_proj (q_norm) */
    NORM_K,        /* keys after k_proj (k_norm) */
    N_NORM
};

typedef struct road_block {
    float *norm[N_NORM]; /* each norm's weight, NULL where the block has none; NORM_Q and
                            NORM_K have head_dim floats when per head, else the projection's
                            width; the others hidden */
    bool qk_norm_per_head;
    bool fused;           /* PROJ_QKV and PROJ_GATE_UP are fused layers */
    int32_t proj[N_PROJ]; /* indices into the adapter set (-1: none) */
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
    float *grads; /* one block for every tensor's gradient, NULL unless training on */
    int64_t numel;
    int32_t *lin_w, *lin_b; /* per adapter-set layer: tensor index of its weight / bias, or -1 */
    int32_t *norm;          /* [L x N_NORM]: tensor index of block l's norm n, or -1 */
    int32_t embed, final_norm;
    bool on;
    bool head_tied; /* lm_head was the embedding's array when the table was built */
} road_full;

struct road_model {
    road_llm_config cfg;
    char *dir;       /* the folder it was loaded from (save copies its tokenizer files) */
    road_full *full; /* tensors and full fine-tuning state (full.c), NULL until used */
    road_generation_config gen;
    road_weights *weights;
    road_adapter_set *set;
    float *embed;                   /* (V, H) float32 (an F32 checkpoint, or widened), or NULL
                                       when embed_q holds it */
    road_qtensor *embed_q;          /* (V, H) a BF16/F16 checkpoint's table as stored (mapped
                                       copy-on-write): lookups widen rows, a tied lm_head runs on
                                       it; the model's own (not in qt) */
    float *final_norm;              /* (H) */
    int32_t lm_head;                /* adapter-set index of lm_head */
    int32_t embed_layer;            /* adapter-set index of model.embed_tokens */
    road_block *blocks;             /* [L] */
    road_layer_spec head_spec;      /* the final norm's kind and eps, the logit cap, the embedding
                                       scale */
    const char *norm_names[N_NORM]; /* the family's names of the block norms ("input_layernorm",
                                       "self_attn.q_norm", ...), NULL for norms it lacks */
    road_rope rope;                 /* RoPE with the config's scaling */
    road_rope rope_local; /* the sliding layers' own, unscaled (gemma3); inv_freq NULL if none */
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
    int n_threads;        /* road_model_params.n_threads: its calls run in a thread scope of it */
    road_qkernel qkernel; /* VNNI_Q8 with road_model_params.int8_activations, else AUTO */
};

struct road_kv_cache {
    int64_t n_layers, n_kv, d, cap, len;
    road_dtype dtype; /* ROAD_DTYPE_F32, _BF16 or _F16: the elements of k and v */
    road_dtype round; /* tests only: an F32 cache whose values are first rounded to this type
                         (BF16/F16), the f32 twin of a 16-bit cache; else ROAD_DTYPE_F32 */
    void *k, *v;      /* (L, nkv, cap, d) each */
};

/* Bytes of one cache element of type t (F32, BF16 or F16). */
static inline size_t road__kv_elem_size(road_dtype t) {
    return t == ROAD_DTYPE_F32 ? 4u : 2u;
}

/* dst (n elements of type t) = src (n floats) rounded to t: bf16 to nearest even, f16 to
 * nearest even with finite values beyond +-65504 saturated to +-65504, bf16 likewise at its
 * largest finite value (road_kv_cache_create_ex states the policy); F32 copies. */
void road__kv_round(road_dtype t, void *dst, const float *src, int64_t n);

/* Store the key and value (d floats each) of one kv head at one position of a layer into c,
 * rounded to its type. */
void road__kv_store(road_kv_cache *c, int64_t layer, int64_t head, int64_t pos, const float *k,
                    const float *v);

/* One float rounded to f16 / bf16 as road__kv_round stores it: to nearest even, a finite
 * value that would round to infinity saturated to the largest finite value. */
uint16_t road__f32_to_f16_sat(float x);
uint16_t road__f32_to_bf16_sat(float x);

/* Tests: make the F32 cache c round every value it stores to `t` first (then widen it back),
 * so it holds exactly the values a t cache would, in float32. */
void road__kv_cache_round_as(road_kv_cache *c, road_dtype t);

/* Full fine-tuning (full.c): the gradient of tensor i, or NULL when full training is off. */
float *road__full_grad(road_model *m, int32_t tensor);
void road__full_free(road_full *f);
/* Does lm_head compute with the embedding's own array? True for a tied config until a merge
 * into lm_head gives the head its own copy (adapter/adapter_set.c: the embedding never
 * changes); savers then write lm_head.weight and tie_word_embeddings false. */
bool road__model_head_tied(const road_model *m);
/* Widen a 16-bit embedding (embed_q) to float32 for good: the set's embedding layer and a tied
 * head move to one widened array, m->embed points at it, the mapped pages are dropped. What
 * full fine-tuning and the float tensor table need; a no-op for a float32 embedding. */
road_status road__model_widen_embedding(road_model *m);

/* Floats of block norm n's weight (model.c). */
int64_t road__model_norm_len(const road_model *m, int n);

/* The family's name (under model.layers.<i>.) of projection p with its [out, in] and whether
 * it has a bias, or NULL where the family has none (PROJ_K, PROJ_V, PROJ_UP when fused); the
 * name of block norm n and its length, or NULL (layout.c). */
const char *road__layout_proj(const road_llm_config *c, int p, int64_t *out, int64_t *in,
                              bool *bias);
const char *road__layout_norm(const road_llm_config *c, int n, int64_t *len);

/* Reserve workspace for `floats` floats; returns its base or NULL (message set). */
float *road__workspace_get(road_workspace *ws, size_t floats);

/* Open the scopes a model's public call runs in, for the rest of the enclosing block: its
 * thread count (core/threads.h) and its quantized-kernel choice (quant/quant_internal.h). */
#define ROAD_MODEL_SCOPE(m)                                                                        \
    ROAD_THREAD_SCOPE((m) ? (m)->n_threads : 0);                                                   \
    ROAD_QKERNEL_SCOPE((m) ? (m)->qkernel : ROAD_QKERNEL_AUTO)

#endif
