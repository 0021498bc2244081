/*
 * road/adapters.h - the adapter manager (PEFT's RoadModel): a model described as named linear
 * layers, RoAd adapters attached to the layers their config targets, their whole lifecycle,
 * mixed batches, and PEFT adapter folders.
 *
 * A model is a set of named layers (dotted Hugging Face paths, "model.layers.0.self_attn.q_proj")
 * whose weights the caller owns: road's Llama runtime registers its layers here, and so can
 * any engine. The set wraps every linear layer in a road_linear (borrowing the weights: merge
 * writes into the caller's arrays) and keeps lifecycle state consistent across layers.
 *
 * Target selection is PEFT's: a list matches a layer whose name equals an entry or ends with
 * "." + entry; one string is a regex that must match the whole name (Python `re` syntax through
 * PCRE2); "all-linear" is every linear layer but the output head; null is the model type's
 * default (q_proj and v_proj for llama, mistral, qwen2, ...).
 *
 * Ownership: the set copies names and configs; weights stay the caller's and must outlive it.
 */
#ifndef ROAD_ADAPTERS_H
#define ROAD_ADAPTERS_H

#include "road/adapter.h"
#include "road/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum road_layer_kind {
    ROAD_LAYER_LINEAR = 0,   /* y = x W^T + b: may carry RoAd adapters */
    ROAD_LAYER_EMBEDDING = 1 /* a lookup table: never a RoAd target, may be in modules_to_save */
} road_layer_kind;

typedef struct road_layer_desc {
    const char *name;     /* dotted module path, unique in the model */
    road_layer_kind kind;
    int64_t in_features;  /* embedding: the hidden size */
    int64_t out_features; /* embedding: the vocabulary size (rows of the table) */
    float *weight;        /* [out x in] float32, row-major; the caller's, mutable */
    float *bias;          /* [out] or NULL */
    bool is_output_head;  /* the LM head: left out of "all-linear" */
} road_layer_desc;

typedef struct road_adapter_set road_adapter_set;

typedef struct road_adapter_set_params {
    const char *model_type;        /* "llama", "mistral", "qwen2", ...; NULL: no default targets */
    const road_layer_desc *layers; /* copied (names too); weights borrowed */
    int32_t n_layers;
    int64_t base_param_count;      /* every base parameter, for the trainable report; 0: the
                                      sum over the registered layers */
} road_adapter_set_params;

ROAD_API road_adapter_set_params road_adapter_set_default_params(void);
ROAD_API road_status road_adapter_set_create(const road_adapter_set_params *p,
                                             road_adapter_set **out);
ROAD_API void road_adapter_set_free(road_adapter_set *s);

/* ---- layers ---------------------------------------------------------------------------- */

ROAD_API int32_t road_adapter_set_layer_count(const road_adapter_set *s);
ROAD_API const char *road_adapter_set_layer_name(const road_adapter_set *s, int32_t layer);
/* Index of a layer by full name, -1 if absent. */
ROAD_API int32_t road_adapter_set_find_layer(const road_adapter_set *s, const char *name);
/* The wrapped linear layer (NULL for embeddings). Use it for forward/backward and parameter
 * access; change lifecycle state (active, merged, enabled) through the set only. */
ROAD_API road_linear *road_adapter_set_layer(road_adapter_set *s, int32_t layer);

/* The layers a config targets, as PEFT would match them on this model (indices into the
 * layers, ascending). *n gets the count; at most `cap` are written. Errors: no layer matched
 * (the message names the targets and a few layer names), a bad regex, no default targets for
 * the model type, a matched layer whose out_features group_size does not divide. */
ROAD_API road_status road_adapter_set_match(const road_adapter_set *s, const road_config *cfg,
                                            int32_t *layers, int32_t cap, int32_t *n);

/* ---- adapters ---------------------------------------------------------------------------- */

/* Add an adapter on every layer cfg targets (PEFT's get_peft_model / add_adapter): identity
 * init (cfg's init_weights true) or PEFT's random init drawn from `seed`. All-or-nothing: on
 * error no layer changes. The first adapter added becomes active. */
ROAD_API road_status road_adapter_set_add(road_adapter_set *s, const char *name,
                                          const road_config *cfg, uint64_t seed);
/* Load a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) under `name`.
 * Keys, shapes and dtypes are checked against the layers the config targets; missing and
 * unexpected keys are named with their layer. F32, F16, BF16 and F64 tensors are read. */
ROAD_API road_status road_adapter_set_load(road_adapter_set *s, const char *name,
                                           const char *dir);
/* Save adapters as PEFT does: the adapter named "default" at `dir`, every other one in
 * `dir`/<name>/. names == NULL: all adapters. Files are written atomically. */
ROAD_API road_status road_adapter_set_save(road_adapter_set *s, const char *dir,
                                           const char *const *names, int32_t n);
/* Delete an adapter from every layer. If it was active, the remaining active ones stay; if
 * none remains, the first remaining adapter becomes active (PEFT). Refused while merged. */
ROAD_API road_status road_adapter_set_delete(road_adapter_set *s, const char *name);

ROAD_API int32_t road_adapter_set_count(const road_adapter_set *s);
ROAD_API const char *road_adapter_set_name(const road_adapter_set *s, int32_t i);
ROAD_API bool road_adapter_set_has(const road_adapter_set *s, const char *name);
/* The adapter's config (owned by the set), NULL if absent. */
ROAD_API const road_config *road_adapter_set_config(const road_adapter_set *s, const char *name);
/* Is `name` on this layer? */
ROAD_API bool road_adapter_set_on_layer(const road_adapter_set *s, const char *name,
                                        int32_t layer);

/* Active adapters, applied in this order on every layer that has them. Every name must be an
 * adapter of the set. Only active adapters are trainable. */
ROAD_API road_status road_adapter_set_set_active(road_adapter_set *s, const char *const *names,
                                                 int32_t n);
ROAD_API int32_t road_adapter_set_active_count(const road_adapter_set *s);
ROAD_API const char *road_adapter_set_active_name(const road_adapter_set *s, int32_t i);
/* Disable (enabled = false) or enable all adapters. Disabling a merged model unmerges it first
 * (PEFT does so at the next forward; doing it here keeps weights an engine reads right). */
ROAD_API road_status road_adapter_set_enable(road_adapter_set *s, bool enabled);
ROAD_API bool road_adapter_set_enabled(const road_adapter_set *s);
/* Training mode (PEFT's model.train()): mixed batches are refused while training. */
ROAD_API void road_adapter_set_train(road_adapter_set *s, bool training);
ROAD_API bool road_adapter_set_training(const road_adapter_set *s);

/* Merge the named adapters (names == NULL: the active ones) into the weights of every layer
 * that has them. All-or-nothing across layers: a refused block leaves every layer unchanged.
 * Refused (ROAD_ERR_STATE) while adapters are disabled: a disabled model runs its base weights
 * (merge_and_unload is allowed). */
ROAD_API road_status road_adapter_set_merge(road_adapter_set *s, const char *const *names,
                                            int32_t n, bool safe);
ROAD_API road_status road_adapter_set_unmerge(road_adapter_set *s);
ROAD_API bool road_adapter_set_merged(const road_adapter_set *s);
/* Merge (names == NULL: active adapters), then drop every adapter: the caller's weights hold
 * the merged model. */
ROAD_API road_status road_adapter_set_merge_and_unload(road_adapter_set *s,
                                                       const char *const *names, int32_t n,
                                                       bool safe);
/* Drop every adapter without merging. As in PEFT, weights already merged stay merged (unmerge
 * first to get the original weights back). */
ROAD_API road_status road_adapter_set_unload(road_adapter_set *s);

/* PEFT's print_trainable_parameters: trainable = parameters of the active adapters; all =
 * base parameters + every adapter's parameters. (modules_to_save is kept in the config and
 * written back, but road does not hold or train those copies yet.) */
typedef struct road_param_report {
    int64_t trainable;
    int64_t all;
    double percent; /* 100 * trainable / all */
} road_param_report;
ROAD_API road_param_report road_adapter_set_param_report(const road_adapter_set *s);
/* "trainable params: 1,234 || all params: 5,678 || trainable%: 0.0217" into buf. */
ROAD_API void road_param_report_format(const road_param_report *r, char *buf, size_t cap);

/* ---- running the layers -------------------------------------------------------------------- */

/* Forward of one linear layer with the set's state (active adapters in order, disabled,
 * merged): y[rows x out] = layer(x[rows x in]). */
ROAD_API road_status road_adapter_set_forward(road_adapter_set *s, int32_t layer, int64_t rows,
                                              const float *x, float *y);
/* For engines that run their own GEMM: rotate y = x W^T + b in place by the active adapters
 * of this layer (nothing when disabled or merged). */
ROAD_API road_status road_adapter_set_apply(road_adapter_set *s, int32_t layer, int64_t rows,
                                            float *y);

/* A mixed batch: one adapter name (or ROAD_BASE_NAME) per sequence, checked once for the whole
 * model and then used on every layer. Refused: a name no layer has (all such names listed,
 * sorted), training mode, merged adapters. */
typedef struct road_batch_plan road_batch_plan;
ROAD_API road_status road_adapter_set_plan(road_adapter_set *s, const char *const *names,
                                           int64_t n_seq, road_batch_plan **out);
ROAD_API void road_batch_plan_free(road_batch_plan *p);
ROAD_API int64_t road_batch_plan_sequences(const road_batch_plan *p);
/* Rotate y in place, sequence by sequence. Sequence i owns seq_rows[i] contiguous rows, or
 * rows_per_seq rows each when seq_rows == NULL. A layer without a sequence's adapter passes
 * its rows through (PEFT). Refused: a plan made by another set, training mode, merged
 * adapters, or an adapter of the plan deleted since (plan the batch again). */
ROAD_API road_status road_adapter_set_apply_mixed(road_adapter_set *s, const road_batch_plan *p,
                                                  int32_t layer, int64_t rows_per_seq,
                                                  const int64_t *seq_rows, float *y);
/* GEMM + road_adapter_set_apply_mixed. */
ROAD_API road_status road_adapter_set_forward_mixed(road_adapter_set *s,
                                                    const road_batch_plan *p, int32_t layer,
                                                    int64_t rows_per_seq, const int64_t *seq_rows,
                                                    const float *x, float *y);

/* Backward of road_adapter_set_forward for one layer (training mode): accumulates the active
 * adapters' gradients and writes dx (NULL to skip). y_base is the layer's pre-adapter output. */
ROAD_API road_status road_adapter_set_backward(road_adapter_set *s, int32_t layer, int64_t rows,
                                               const float *y_base, const float *dy, float *dx);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_ADAPTERS_H */
