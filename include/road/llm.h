/*
 * road/llm.h - decoder LLMs (llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3, olmo2) from
 * Hugging Face checkpoint folders:
 * configuration, weights, a KV cache per sequence, the forward pass over a ragged batch with a
 * RoAd adapter per sequence, the causal-LM loss, sampling and generation.
 *
 * Numerics follow transformers' eager Llama/Qwen2/Mistral in float32 (bf16/f16 weights are
 * kept as stored and widened exactly where they are read). Legend: B batch, T tokens, H hidden,
 * V vocab, L layers.
 */
#ifndef ROAD_LLM_H
#define ROAD_LLM_H

#include "road/adapter_set.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration (config.json) ---------------------------------------------------------- */

/* RoPE scaling, as transformers' modeling_rope_utils computes it. The types that depend on a
 * sequence's length (dynamic, longrope) take the length of each sequence of a batch: the
 * tokens it holds after the call (its KV cache plus its new tokens); see docs/architecture.md. */
typedef enum road_rope_type {
    ROAD_ROPE_DEFAULT = 0, /* rope_scaling null */
    ROAD_ROPE_LINEAR = 1,  /* positions divided by factor */
    ROAD_ROPE_LLAMA3 = 2,  /* Llama 3.1/3.2 frequency remap */
    ROAD_ROPE_DYNAMIC = 3, /* dynamic NTK: a sequence longer than max_position_embeddings
                              gets a larger base */
    ROAD_ROPE_YARN = 4,    /* YaRN: frequencies blended by a ramp, cos/sin x attention factor */
    ROAD_ROPE_LONGROPE = 5 /* LongRoPE (phi3's "longrope", older "su"): per-frequency short or
                              long factors, cos/sin x attention factor */
} road_rope_type;

/* The most entries of longrope's short_factor / long_factor (rotary dims / 2). */
#define ROAD_MAX_ROPE_FACTORS 256

#define ROAD_MAX_EOS 8
/* Models whose layers differ in attention (sliding or full) list them for up to this many
 * layers. */
#define ROAD_MAX_PATTERN_LAYERS 1024

/* The gated MLP's activation: down(act(gate(x)) * up(x)). */
typedef enum road_act {
    ROAD_ACT_SILU = 0,     /* silu / swish: llama, mistral, qwen2, qwen3, phi3, olmo2 */
    ROAD_ACT_GELU_TANH = 1 /* gelu_pytorch_tanh: gemma2, gemma3 */
} road_act;

/* Where a decoder block's norms sit. */
typedef enum road_norm_place {
    ROAD_NORM_PRE = 0,      /* x += attn(norm(x)); x += mlp(norm(x)) (llama, qwen, phi3) */
    ROAD_NORM_SANDWICH = 1, /* x += norm(attn(norm(x))); x += norm(mlp(norm(x))) (gemma) */
    ROAD_NORM_POST = 2      /* x += norm(attn(x)); x += norm(mlp(x)) (olmo2) */
} road_norm_place;

/* RMSNorm of queries and keys after their projections, before RoPE. */
typedef enum road_qk_norm {
    ROAD_QK_NORM_NONE = 0,
    ROAD_QK_NORM_HEAD = 1, /* each head over head_dim (qwen3, gemma3) */
    ROAD_QK_NORM_ALL = 2   /* the whole projection output (olmo2) */
} road_qk_norm;

typedef struct road_llm_config {
    char model_type[16]; /* "llama", "mistral", "qwen2", "qwen3", "gemma2",
                            "gemma3_text", "phi3" or "olmo2" */
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t n_layers;   /* num_hidden_layers */
    int64_t n_heads;    /* num_attention_heads */
    int64_t n_kv_heads; /* num_key_value_heads (GQA) */
    int64_t head_dim;   /* head_dim, or hidden_size / n_heads */
    double rms_norm_eps;
    double rope_theta;
    road_rope_type rope_type;
    double rope_factor;            /* linear, llama3, dynamic, yarn; longrope: the one its
                                      attention factor comes from (the file's, else
                                      max_position_embeddings / original) */
    double rope_low_freq_factor;   /* llama3 */
    double rope_high_freq_factor;  /* llama3 */
    int64_t rope_original_max_pos; /* llama3, yarn, longrope: original_max_position_embeddings
                                      (longrope: longer sequences take long_factor) */
    double rope_attn_factor;       /* yarn, longrope: cos and sin times this (the file's
                                      attention_factor, else as transformers derives it); 1 */
    double rope_beta_fast;         /* yarn: the ramp's bounds in rotations (32 and 1 if absent) */
    double rope_beta_slow;
    bool rope_truncate; /* yarn: the ramp's bounds rounded to whole dims (true) */
    float rope_short_factor[ROAD_MAX_ROPE_FACTORS]; /* longrope: rotary_dim / 2 each, */
    float rope_long_factor[ROAD_MAX_ROPE_FACTORS];  /* as float32 (as transformers uses them) */
    int64_t max_position_embeddings;
    int64_t sliding_window; /* 0: none (qwen2 with use_sliding_window false, llama) */
    bool tie_word_embeddings;
    bool qkv_bias;        /* qwen2; llama's attention_bias (then o_proj too) */
    bool o_bias;          /* llama attention_bias */
    bool mlp_bias;        /* llama mlp_bias */
    int32_t bos_token_id; /* -1 if absent */
    int32_t eos_token_ids[ROAD_MAX_EOS];
    int32_t n_eos;
    road_dtype torch_dtype; /* dtype the checkpoint declares (F32 if absent) */
    /* What differs between the families (the defaults are llama's). */
    road_act hidden_act;
    road_norm_place norm_place;
    bool norm_plus_one; /* RMSNorm scales by (1 + w) (gemma), else by w */
    road_qk_norm qk_norm;
    bool fused_proj;         /* qkv_proj and gate_up_proj, rows [q | k | v], [gate | up]
                                (phi3) */
    bool embed_scale;        /* embeddings times sqrt(hidden_size) (gemma) */
    double attn_scale;       /* attention logits' scale: head_dim^-0.5, or gemma's
                                query_pre_attn_scalar^-0.5 */
    double attn_softcap;     /* logits c tanh(s / c) before the mask (gemma2); 0: none */
    double final_softcap;    /* the same on the output logits (gemma2); 0: none */
    int64_t rotary_dim;      /* dims of each head RoPE rotates: head_dim x
                                partial_rotary_factor (phi3), else head_dim */
    double rope_local_theta; /* RoPE base of sliding layers, never scaled (gemma3's
                                rope_local_base_freq); 0: the global rope_theta */
    bool sliding_all;        /* every layer slides (mistral); else sliding_layers */
    uint64_t sliding_layers[ROAD_MAX_PATTERN_LAYERS / 64]; /* bit l: layer l slides */
} road_llm_config;

/* The tensors a checkpoint of this config holds, as road reads them: Hugging Face names,
 * shapes (shape[1] 0 for a vector) and roles; index 0 .. count-1 in the order of
 * llm/layout.c (embedding, each block's projections and norms, final norm, lm_head unless
 * tied). `road inspect` checks a folder against it; road_model_init_folder writes it. */
typedef enum road_tensor_role {
    ROAD_TENSOR_EMBED,      /* model.embed_tokens.weight */
    ROAD_TENSOR_LINEAR,     /* a projection's weight [out, in] (what RoAd targets) */
    ROAD_TENSOR_BIAS,       /* a projection's bias */
    ROAD_TENSOR_NORM,       /* a block norm's weight */
    ROAD_TENSOR_FINAL_NORM, /* model.norm.weight */
    ROAD_TENSOR_HEAD        /* lm_head.weight */
} road_tensor_role;
typedef struct road_llm_tensor {
    char name[112];
    int32_t ndim;
    int64_t shape[2];
    road_tensor_role role;
    int64_t layer; /* its block, or -1 */
} road_llm_tensor;
ROAD_API int64_t road_llm_config_tensor_count(const road_llm_config *c);
ROAD_API road_status road_llm_config_tensor(const road_llm_config *c, int64_t i,
                                            road_llm_tensor *out);

/* The longest sequence (prompt and generated tokens) road runs for this config, which bounds
 * a KV cache: max_position_embeddings, or with dynamic NTK scaling (which exists to go past
 * it) max_position_embeddings x factor, the length the factor was chosen for. */
ROAD_API int64_t road_llm_config_max_tokens(const road_llm_config *c);

/* Does layer `layer` attend through the sliding window (sliding_window keys)? */
ROAD_API bool road_llm_config_layer_slides(const road_llm_config *c, int64_t layer);

/* Parse config.json text. Unsupported model types, activations or values are refused with a
 * message naming the field and what road supports (never a silently different model). */
ROAD_API road_status road_llm_config_parse(const char *json, size_t len, road_llm_config *out);
/* Load `path`: config.json, or a folder holding it. */
ROAD_API road_status road_llm_config_load(const char *path, road_llm_config *out);

/* generation_config.json defaults (absent file: bos/eos from config, greedy, no limits). */
typedef struct road_generation_config {
    int32_t bos_token_id;
    int32_t eos_token_ids[ROAD_MAX_EOS];
    int32_t n_eos;
    int32_t pad_token_id; /* -1 if absent */
    bool do_sample;
    float temperature;      /* 1.0 if absent */
    int32_t top_k;          /* 50 if absent (transformers' default); 0 = off */
    float top_p;            /* 1.0 if absent */
    int64_t max_new_tokens; /* 0 if absent: the caller decides */
} road_generation_config;

ROAD_API road_status road_generation_config_load(const char *dir, const road_llm_config *cfg,
                                                 road_generation_config *out);

/* ---- the model ------------------------------------------------------------------------------ */

/* Threads: one forward, backward or generate at a time per model, and no other call on the
 * model or on its adapter set meanwhile (the model keeps one workspace, its layers' caches and
 * its gradients); different models in parallel on different threads (but see n_threads on
 * OpenBLAS's count). Its config and generation config are read-only: any threads. */
typedef struct road_model road_model;

typedef struct road_model_params {
    /* The model's own thread count: road_model_load, road_model_forward(_padded),
     * road_model_loss_backward and road_model_generate run with it (OpenMP's count of the
     * calling thread and OpenBLAS's, for the call), then give the previous counts back, so the
     * model never changes what the rest of the process uses. > 0: that many; < 0: all cores;
     * 0 (default): the calling thread's count (road_get_num_threads). OpenBLAS keeps one count
     * for the process and an sgemm's last bits depend on it: models with different counts
     * running at the same time on different threads get results that depend on timing. */
    int n_threads;
    /* Quantize the linear layers' weights while loading (road/quant.h; default NONE: float32).
     * The embedding stays in its stored type (a 16-bit table as stored, an F32 one float32;
     * bitsandbytes does not quantize embeddings either), the norms float32. lm_head is left
     * as it is unless quantize_lm_head: an untied one float32 (or 16-bit as stored), a tied
     * one the embedding's own array; quantize_lm_head gives lm_head a quantized copy of its
     * own (a tied one too: the tie is then broken, and saved untied).
     * Each weight is quantized right after it is read and its float copy dropped, so memory
     * stays near the quantized size. A checkpoint saved quantized (road_model_save_quantized,
     * bitsandbytes / transformers) loads quantized whatever this says. */
    road_qformat quantize;
    bool quantize_lm_head;
    bool double_quant; /* 4-bit: quantize the absmax values too (bnb_4bit_use_double_quant) */
    /* BF16/F16 linear weights and embedding are kept as stored (default false): mapped from
     * the file and read by the matmuls and lookups in 16 bits, so a model takes its file's
     * size in memory. true widens them to float32 at load (full fine-tuning needs float32
     * weights). */
    bool float32_weights;
    /* The forward of int8 / NF4 / FP4 layers (decode and prefill; cols a multiple of 64)
     * rounds x to int8 per row and block of 64 and runs int8 dot products (AVX512-VNNI), as
     * llama.cpp's Q8 activations do: faster, and a row's outputs are the same bits whatever
     * the number of rows, but no longer exact products of the dequantized weights (bound and
     * measured error: docs/quant.md, ROAD_QKERNEL_VNNI_Q8). Default false. road_model_load
     * refuses it (ROAD_ERR_UNSUPPORTED) on a CPU without AVX512-VNNI. Other layers, the
     * backward (training) and merges stay exact. */
    bool int8_activations;
} road_model_params;

ROAD_API road_model_params road_model_default_params(void);
/* Load a Hugging Face checkpoint folder: config.json, model.safetensors or shards listed in
 * model.safetensors.index.json, generation_config.json when present. Weights are mapped
 * (copy-on-write: merging adapters copies only the pages it changes). F32 and the BF16/F16
 * weights of the linear layers are used as stored (road_model_params.float32_weights widens
 * the latter), the embedding too (looked up a row at a time, widened exactly; a tied lm_head
 * runs the 16-bit matmuls on it); the norms of a BF16/F16 checkpoint are widened once.
 * Missing or mis-shaped tensors are named in the error. */
ROAD_API road_status road_model_load(const char *dir, const road_model_params *p, road_model **out);
ROAD_API void road_model_free(road_model *m);
ROAD_API const road_llm_config *road_model_config(const road_model *m);
ROAD_API const road_generation_config *road_model_generation_config(const road_model *m);
/* The model's adapter manager (its linear layers, by Hugging Face names): load adapters,
 * activate, merge... through road/adapter_set.h. Owned by the model. */
ROAD_API road_adapter_set *road_model_adapters(road_model *m);
/* Bytes of weights the model holds: float32 tensors (mapped or in memory) plus quantized
 * and 16-bit ones at their packed size (a tied lm_head's array counted once). */
ROAD_API int64_t road_model_weight_bytes(const road_model *m);
/* Linear layers whose base weight is quantized, and the format of the first (NONE if none). */
ROAD_API int32_t road_model_quantized_layers(const road_model *m, road_qformat *format);
/* Linear layers kept in a checkpoint's 16-bit format (ROAD_QFORMAT_BF16 / F16), and the
 * format of the first. */
ROAD_API int32_t road_model_stored_layers(const road_model *m, road_qformat *format);
/* The embedding table's format in memory: ROAD_QFORMAT_BF16 / F16 when kept as the checkpoint
 * stores it, NONE when float32; *bytes (may be NULL) its size in memory. */
ROAD_API road_qformat road_model_embedding_format(const road_model *m, int64_t *bytes);

/* Write the model as a checkpoint folder with quantized linear layers, in the layout
 * bitsandbytes / transformers serialize (docs/quant.md): per layer "<name>.weight" packed U8 +
 * ".weight.absmax", ".weight.quant_map" (+ ".weight.nested_absmax", ".weight.nested_quant_map"
 * with double quantization) + ".weight.quant_state.bitsandbytes__<nf4|fp4>" (the JSON state
 * as bytes); int8: "<name>.weight" I8 + "<name>.SCB". config.json gets a bitsandbytes
 * quantization_config. Layers already quantized in `format` are written as they are (merged
 * adapters included); float ones are quantized now; other tensors (embedding, norms, biases,
 * lm_head unless quantize_lm_head) go as float_dtype (F32, BF16, F16). format NONE writes
 * every tensor as float_dtype, quantized layers dequantized. Atomic as road_model_save. */
ROAD_API road_status road_model_save_quantized(road_model *m, const char *dir,
                                               road_dtype float_dtype, road_qformat format,
                                               bool double_quant, bool quantize_lm_head);

/* ---- KV cache (one per sequence) ------------------------------------------------------------ */

/* Threads: belongs to one sequence of one model; the model's forward writes it, so it follows
 * the model's rule. Different caches of different models in parallel. */
typedef struct road_kv_cache road_kv_cache;

/* Room for max_tokens positions (at most max_position_embeddings), keys and values kept in
 * float32: road_kv_cache_create_ex with ROAD_DTYPE_F32. */
ROAD_API road_status road_kv_cache_create(const road_model *m, int64_t max_tokens,
                                          road_kv_cache **out);
/* The same with the keys and values stored as dtype: ROAD_DTYPE_F32 (4 bytes each, what the
 * model computes), ROAD_DTYPE_BF16 or ROAD_DTYPE_F16 (2 bytes: half the memory and half the
 * bytes attention reads per token); any other type is ROAD_ERR_INVALID_ARG. Each key and value
 * is rounded once, when the forward writes it (after RoPE), to the nearest 16-bit value (ties
 * to even); attention widens them back to float32 as it reads them and computes in float32.
 * bf16 keeps float32's range and 8 significant bits (relative error <= 2^-9); f16 keeps 11
 * (<= 2^-12) but only |x| <= 65504: a finite value beyond that is stored as +-65504
 * (saturated, so attention never sees an infinity the model did not make; bf16 saturates the
 * same way at its largest value, ~3.39e38), and values below 2^-14 lose bits as subnormals.
 * Infinities and NaNs stay what they are. Training never uses a
 * cache (its keys are the batch's own float32 rows). */
ROAD_API road_status road_kv_cache_create_ex(const road_model *m, int64_t max_tokens,
                                             road_dtype dtype, road_kv_cache **out);
ROAD_API void road_kv_cache_free(road_kv_cache *c);
/* The element type its keys and values are stored as. */
ROAD_API road_dtype road_kv_cache_dtype(const road_kv_cache *c);
/* Bytes its keys and values take: 2 x layers x kv heads x capacity x head_dim x the element
 * size (4 for F32, 2 for BF16 and F16), all allocated when it is created. */
ROAD_API int64_t road_kv_cache_bytes(const road_kv_cache *c);
/* Tokens held (the position of the next token). */
ROAD_API int64_t road_kv_cache_length(const road_kv_cache *c);
ROAD_API int64_t road_kv_cache_capacity(const road_kv_cache *c);
/* Keep the first n tokens (n <= length): rewind a sequence. */
ROAD_API road_status road_kv_cache_truncate(road_kv_cache *c, int64_t n);

/* ---- forward -------------------------------------------------------------------------------- */

/* One sequence of a ragged batch: new tokens appended to its cache (positions continue from
 * the cache length; without a cache they start at 0 and nothing is kept). */
typedef struct road_seq {
    const road_token *tokens;
    int64_t n_tokens;
    road_kv_cache *cache; /* NULL: no cache */
    const char *adapter;  /* NULL: the model's active adapters (then every sequence must say
                             NULL); else this sequence's adapter name or ROAD_BASE_NAME */
    bool all_logits;      /* true: logits for every new token; false: only the last */
} road_seq;

/* Rows of logits road_model_forward writes for this batch. */
ROAD_API int64_t road_seq_logit_rows(const road_seq *seqs, int64_t n_seq);
/* Forward a ragged batch; logits [road_seq_logit_rows x V], sequence after sequence. All
 * sequences run in one pass: every linear layer is one GEMM over all rows, and in a mixed
 * batch every sequence gets its own adapter inside that same pass. */
ROAD_API road_status road_model_forward(road_model *m, const road_seq *seqs, int64_t n_seq,
                                        float *logits);

/* A padded batch as transformers takes it: input_ids and attention_mask [B x T] (mask NULL: all
 * ones); adapters NULL (active adapters) or one name per row. Writes logits [B x T x V]; rows'
 * padding positions are set to 0 (transformers' values there are not meaningful). */
ROAD_API road_status road_model_forward_padded(road_model *m, const int64_t *input_ids,
                                               const int64_t *attention_mask, int64_t B, int64_t T,
                                               const char *const *adapters, float *logits);

/* A label that takes no loss: PyTorch's CrossEntropyLoss ignore_index, as transformers' labels
 * use it (prompt tokens, padding). Training data, the loss and its gradient all read this one. */
#define ROAD_LABEL_IGNORE (-100)

/* transformers' causal-LM loss: logits[b, t] predicts labels[b, t + 1]; ROAD_LABEL_IGNORE (-100)
 * is ignored; mean over the remaining tokens of the whole batch. ROAD_ERR_INVALID_ARG if no
 * label counts, or (attention_mask given) if a counted label is predicted from a padding
 * position, whose logits are not meaningful: set labels to ROAD_LABEL_IGNORE there. */
ROAD_API road_status road_causal_lm_loss(const float *logits, const int64_t *labels,
                                         const int64_t *attention_mask, int64_t B, int64_t T,
                                         int64_t V, double *loss);

/* The same loss for a padded batch, and its gradient with respect to every parameter of the
 * active adapters, accumulated (+=) into their gradient buffers (road_linear_adapter_grads on
 * road_adapter_set_layer(...)). Base weights are frozen (no weight-gradient GEMMs) unless full
 * training is on (road_model_set_full_training): then every model tensor's gradient too. Refused
 * while adapters are merged. Backward goes through the whole model: cross-entropy, lm_head,
 * RMSNorm, SwiGLU, attention (GQA, causal, sliding window), RoPE, and every RoAd layer. */
ROAD_API road_status road_model_loss_backward(road_model *m, const int64_t *input_ids,
                                              const int64_t *attention_mask, const int64_t *labels,
                                              int64_t B, int64_t T, double *loss);

/* The same for a ragged batch, the form training runs natively (the padded call above is a
 * wrapper of it): sequence s has its tokens at positions 0..n_tokens-1 and targets[s], its
 * n_tokens targets: the token each position's logits should predict, or ROAD_LABEL_IGNORE.
 * These are transformers' labels shifted by one (targets[i] = labels[i + 1]; the last token's
 * target is ignored unless the caller knows the token that follows). The loss is the mean over
 * every counted target of the batch. Sequences have no KV cache and name no adapter (the
 * active adapters train); all_logits is ignored. Equal to the padded call on the same tokens,
 * bit for bit. */
ROAD_API road_status road_model_loss_backward_seqs(road_model *m, const road_seq *seqs,
                                                   const road_token *const *targets, int64_t n_seq,
                                                   double *loss);

/* Activation memory of backward: off (default), every block's activations are kept from the
 * forward; on, only each block's input is kept and the block is run again during backward
 * (one more forward's worth of compute; activation memory about 1/L of the default's plus the
 * block inputs). Gradients are the same either way (bit for bit). */
ROAD_API void road_model_set_recompute(road_model *m, bool on);
/* Bytes of activations and working buffers the last road_model_loss_backward used. They live
 * in a workspace the model keeps from step to step (grown when a batch needs more, freed with
 * the model), so the peak over a run is the memory training holds. */
ROAD_API int64_t road_model_backward_bytes(const road_model *m);

/* ---- the model's own tensors, full fine-tuning, saving ------------------------------------ */

/* One of the model's tensors, by its Hugging Face name, in transformers' named_parameters()
 * order (embed_tokens; per layer q/k/v/o (+ biases), gate/up/down, the two norms; norm;
 * lm_head unless tied). `param` is the live float32 array the model computes with (merged
 * adapters included); `grad` is its gradient while full training is on, else NULL. */
typedef struct road_model_tensor {
    const char *name; /* owned by the model */
    float *param;
    float *grad;
    int64_t n;
    int32_t ndim; /* 1 or 2 */
    int64_t shape[2];
    bool decay; /* Trainer's rule: weight decay for weights, not for biases and norms */
} road_model_tensor;

ROAD_API int32_t road_model_tensor_count(road_model *m);
ROAD_API road_status road_model_tensor_get(road_model *m, int32_t i, road_model_tensor *out);

/* Full fine-tuning: on, every tensor above gets a gradient buffer (as much memory as the
 * weights) and road_model_loss_backward accumulates (+=) the gradient of every weight, bias
 * and norm too (tied embeddings get both uses). The tensor table widens a 16-bit model's
 * layers and embedding to float32 for good (float32_weights does it at load). Off frees
 * them. Refused while adapters are merged (the weights would absorb them) or when a layer's
 * weight is quantized (int8 / 4-bit). */
ROAD_API road_status road_model_set_full_training(road_model *m, bool on);
ROAD_API bool road_model_full_training(const road_model *m);
/* Zero every full-training gradient. */
ROAD_API void road_model_zero_grads(road_model *m);

/* Write the model as a Hugging Face checkpoint folder `dir`: config.json (torch_dtype set to
 * dtype), model.safetensors in F32, BF16 or F16 with transformers' names (merged adapters
 * included; a tied lm_head is not written), generation_config.json and the tokenizer files of
 * the folder it was loaded from. Atomic: written aside and renamed into place; an existing
 * folder at `dir` is replaced only when everything was written, and only when it is a model
 * folder road would write: never the folder the model was read from, the current or the home
 * folder (road/outdir.h; the same for road_model_save_quantized and road_model_init_folder). */
ROAD_API road_status road_model_save(road_model *m, const char *dir, road_dtype dtype);
/* The same files written into `dir` (created if needed) as one unit, leaving the folder's
 * other files alone: for an output folder that also holds checkpoints. The files are written
 * aside and swapped in with the folder's other entries (hard-linked, not copied), so a reader
 * finds the old model files or the new ones, never a mix. */
ROAD_API road_status road_model_save_files(road_model *m, const char *dir, road_dtype dtype);

/* Make a checkpoint folder with freshly initialised weights for the architecture in
 * config_path (a config.json): as transformers' LlamaPreTrainedModel._init_weights, every
 * linear and embedding weight ~ N(0, initializer_range) (read from the config, default 0.02),
 * biases 0, norms 1, drawn from `seed`. The config is written as given (torch_dtype set to
 * dtype); files in copy_from (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
 * generation_config.json; NULL: none) are copied. Atomic as road_model_save. */
ROAD_API road_status road_model_init_folder(const char *config_path, const char *copy_from,
                                            uint64_t seed, road_dtype dtype, const char *dir);

/* ---- sampling and generation ---------------------------------------------------------------- */

/* A bias added to one token's logit (OpenAI's logit_bias). */
typedef struct road_logit_bias {
    road_token id;
    float bias;
} road_logit_bias;

/* Start from road_sampler_default_params(): the options added after top_p are off at 0. */
typedef struct road_sampler_params {
    float temperature; /* 0: greedy (argmax, lowest id on ties) */
    int32_t top_k;     /* 0: off */
    float top_p;       /* 1: off */
    uint64_t seed;
    float min_p; /* 0: off; else keep the tokens whose probability (after temperature) is at
                    least min_p times the most likely one's (vLLM's min_p), in [0, 1] */
    /* Penalties on the tokens already seen, as OpenAI and vLLM define them: the sampler counts
     * the tokens it returns (the output) and is told the prompt (road_sampler_set_prompt). */
    float presence_penalty;   /* logit -= presence_penalty once the token is in the output */
    float frequency_penalty;  /* logit -= frequency_penalty x its count in the output */
    float repetition_penalty; /* tokens in the prompt or the output: a logit > 0 is divided
                                 by it, one < 0 multiplied (transformers, vLLM); > 0; 0 or 1:
                                 off */
    const road_logit_bias *logit_bias; /* added to the logits first (copied by create); ids
                                          < vocab, biases finite */
    int32_t n_logit_bias;
} road_sampler_params;

/* Threads: one thread at a time per sampler (sampling advances its random state); different
 * samplers in parallel. */
typedef struct road_sampler road_sampler;

ROAD_API road_sampler_params road_sampler_default_params(void); /* greedy */
/* Refused: negative temperature, top_p outside (0, 1], negative top_k, min_p outside [0, 1],
 * a negative repetition_penalty, a logit_bias id outside the vocabulary, NaN or infinite
 * values. */
ROAD_API road_status road_sampler_create(const road_sampler_params *p, int64_t vocab,
                                         road_sampler **out);
ROAD_API void road_sampler_free(road_sampler *s);
/* The prompt the output continues: its tokens count for repetition_penalty (a no-op without
 * one). Ids outside the vocabulary are ignored. Replaces an earlier prompt. */
ROAD_API road_status road_sampler_set_prompt(road_sampler *s, const road_token *ids, int64_t n);
/* Next token from logits [vocab] (not modified). Order, as vLLM's: logit_bias, repetition
 * penalty, frequency and presence penalties, then temperature, min_p, top-k, top-p
 * (transformers' order for the last three). The token returned counts as output for the
 * penalties. */
ROAD_API road_token road_sampler_sample(road_sampler *s, const float *logits);

/* Log-probabilities of the model's distribution (log_softmax of the logits as given, in
 * double; what OpenAI's logprobs report and `road eval` sums): *chosen_lp gets token's, and
 * the n_top most likely tokens (most likely first, lower id on ties) go to top_ids / top_lps
 * (n_top 0..ROAD_MAX_TOP_LOGPROBS; either array NULL when n_top is 0). */
#define ROAD_MAX_TOP_LOGPROBS 20
ROAD_API road_status road_logprobs(const float *logits, int64_t vocab, road_token token,
                                   int32_t n_top, float *chosen_lp, road_token *top_ids,
                                   float *top_lps);

typedef struct road_generate_params {
    int64_t max_new_tokens;     /* > 0 */
    const road_token *stop_ids; /* generation of a sequence ends after one of these */
    int32_t n_stop;
    road_sampler_params sampling;
    road_dtype kv_dtype; /* the KV caches' element type (road_kv_cache_create_ex): 0 is
                            ROAD_DTYPE_F32; ROAD_DTYPE_BF16 or ROAD_DTYPE_F16 halve them */
} road_generate_params;

/* Called for every generated token; return false to stop that sequence. */
typedef bool (*road_token_fn)(int64_t seq, road_token token, void *user);

/* Generate for n_seq prompts at once (one batch, KV caches, each sequence with its own adapter
 * when adapters != NULL). Each sequence gets its own sampler seeded seed + seq index, so a
 * sequence's tokens do not depend on what else is in the batch. */
ROAD_API road_status road_model_generate(road_model *m, const road_token *const *prompts,
                                         const int64_t *prompt_lens, const char *const *adapters,
                                         int64_t n_seq, const road_generate_params *p,
                                         road_token_fn on_token, void *user);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_LLM_H */
