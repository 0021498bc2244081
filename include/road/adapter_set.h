/*
 * road/adapter_set.h - the adapter manager (PEFT's RoadModel): a model described as named linear
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
 * modules_to_save (PEFT's ModulesToSaveWrapper): an adapter whose config lists modules there
 * holds its own full copy (weight, bias, gradients) of each matching layer, linear or
 * embedding. While that adapter is active and adapters are enabled, the copy replaces the base
 * weight of the layer (road_adapter_set_layer_weight); the base weights are never written.
 * Only one active adapter may hold a copy of a given layer (as in PEFT), and a layer with an
 * active copy is not rotated by another active adapter at the same time (refused by
 * road_adapter_set_set_active).
 *
 * Ownership: the set copies names and configs; weights stay the caller's and must outlive it.
 * modules_to_save copies are the set's, freed with their adapter.
 */
#ifndef ROAD_ADAPTER_SET_H
#define ROAD_ADAPTER_SET_H

#include "road/linear.h"
#include "road/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum road_layer_kind {
    ROAD_LAYER_LINEAR = 0,   /* y = x W^T + b: may carry RoAd adapters */
    ROAD_LAYER_EMBEDDING = 1 /* a lookup table: never a RoAd target, may be in modules_to_save */
} road_layer_kind;

typedef struct road_layer_desc {
    const char *name; /* dotted module path, unique in the model */
    road_layer_kind kind;
    int64_t in_features;   /* embedding: the hidden size */
    int64_t out_features;  /* embedding: the vocabulary size (rows of the table) */
    float *weight;         /* [out x in] float32, row-major; the caller's, mutable; NULL when
                              qweight is given */
    float *bias;           /* [out] or NULL */
    bool is_output_head;   /* the LM head: left out of "all-linear" */
    road_qtensor *qweight; /* instead of weight, a packed one (road/quant.h): quantized, or a
                              checkpoint's 16-bit array kept as stored (ROAD_QFORMAT_BF16 / F16),
                              for a linear layer or an embedding; the caller's, mutable (merging
                              re-quantizes it in place). Two layers may share one (a tied head
                              and its embedding): a merge into one gives it its own copy first. */
} road_layer_desc;

/* Threads: one call at a time per set, counting calls on its layers (road_adapter_set_layer)
 * and, for a model's set, calls on the model; different sets in parallel. The one exception is
 * road_adapter_set_load_prepare (below). */
typedef struct road_adapter_set road_adapter_set;

typedef struct road_adapter_set_params {
    const char *model_type;        /* "llama", "mistral", "qwen2", ...; NULL: no default targets */
    const road_layer_desc *layers; /* copied (names too); weights borrowed */
    int32_t n_layers;
    int64_t base_param_count; /* every base parameter, for the trainable report; 0: the
                                 sum over the registered layers */
} road_adapter_set_params;

ROAD_API road_adapter_set_params road_adapter_set_default_params(void);
ROAD_API road_status road_adapter_set_create(const road_adapter_set_params *p,
                                             road_adapter_set **out);
ROAD_API void road_adapter_set_free(road_adapter_set *s);

/* ---- layers ---------------------------------------------------------------------------- */

ROAD_API int32_t road_adapter_set_layer_count(const road_adapter_set *s);
/* Give layer i (linear or embedding), kept in a checkpoint's 16-bit format (ROAD_QFORMAT_BF16
 * / F16), its own float32 weight, widened exactly (the set owns it; the 16-bit array is no
 * longer used): what full fine-tuning needs. Every layer registered with the same 16-bit array
 * (a tied head and its embedding) moves to the one widened copy and stays tied. A float32
 * layer is left as it is; a quantized (int8 / 4-bit) layer is refused. */
ROAD_API road_status road_adapter_set_widen_layer(road_adapter_set *s, int32_t i);
/* A layer's own base weight, modules_to_save copies aside: *w its float32 array (current,
 * possibly merged), or *q its packed weight (quantized or 16-bit as stored); the other is NULL.
 * An engine looks an embedding's rows up in *q with road_qtensor_dequantize_rows (exact for
 * 16-bit). Either output may be NULL. */
ROAD_API road_status road_adapter_set_base_weight(const road_adapter_set *s, int32_t layer,
                                                  const float **w, const road_qtensor **q);
ROAD_API const char *road_adapter_set_layer_name(const road_adapter_set *s, int32_t layer);
/* A layer's sizes: out_features and in_features as registered (an embedding: vocabulary and
 * hidden size). */
ROAD_API road_status road_adapter_set_layer_shape(const road_adapter_set *s, int32_t layer,
                                                  int64_t *out, int64_t *in);
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

/* The layers cfg's modules_to_save select (indices, ascending; *n the count, at most cap
 * written): a layer whose name equals an entry or ends with "." + entry. Errors
 * (ROAD_ERR_CONFIG): an entry that selects no layer (named), a layer that is also one of
 * cfg's RoAd targets (named), and road_adapter_set_match's errors. */
ROAD_API road_status road_adapter_set_match_modules_to_save(const road_adapter_set *s,
                                                            const road_config *cfg, int32_t *layers,
                                                            int32_t cap, int32_t *n);

/* ---- adapters ---------------------------------------------------------------------------- */

/* Add an adapter on every layer cfg targets (PEFT's get_peft_model / add_adapter): identity
 * init (cfg's init_weights true) or PEFT's random init drawn from `seed`; and a copy of the
 * current weight (and bias) of every layer its modules_to_save select, with zero gradients.
 * All-or-nothing: on error no layer changes. The first adapter added becomes active. Refused
 * (ROAD_ERR_CONFIG, naming it): a modules_to_save entry matching no layer, a layer both
 * targeted and in modules_to_save. */
ROAD_API road_status road_adapter_set_add(road_adapter_set *s, const char *name,
                                          const road_config *cfg, uint64_t seed);
/* Load a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) under `name`.
 * Keys, shapes and dtypes are checked against the layers the config targets; missing and
 * unexpected keys are named with their layer. F32, F16, BF16 and F64 tensors are read.
 * modules_to_save copies are read from "base_model.model.<layer>.weight" (and ".bias" when the
 * layer has a bias), which the file must hold for every layer modules_to_save selects. */
ROAD_API road_status road_adapter_set_load(road_adapter_set *s, const char *name, const char *dir);
/* road_adapter_set_load in two halves, for a server that must keep running while a folder is
 * read. Prepare reads and checks everything (files, keys, shapes, values) without changing the
 * set, and may run on another thread while the set is in use (it reads only the set's layer
 * list, which never changes); commit adds the prepared adapter without touching a file (the
 * thread that owns the set calls it). name and dir are borrowed until the load is freed.
 * Threads: a load is used by one thread at a time; prepared on one, it may be committed on
 * another. */
typedef struct road_adapter_load road_adapter_load;
ROAD_API road_status road_adapter_set_load_prepare(road_adapter_set *s, const char *name,
                                                   const char *dir, road_adapter_load **out);
ROAD_API road_status road_adapter_set_load_commit(road_adapter_set *s, road_adapter_load *l);
ROAD_API void road_adapter_load_free(road_adapter_load *l); /* NULL is a no-op */
/* Save adapters as PEFT does: the adapter named "default" at `dir`, every other one in
 * `dir`/<name>/. names == NULL: all adapters. The adapters are written as one unit (aside, then
 * swapped in with dir's other entries, which stay): a reader never finds new weights beside an
 * old config. modules_to_save
 * copies are written as "base_model.model.<layer>.weight" / ".bias" (PEFT's saved keys, with
 * the ".modules_to_save.<adapter>" part removed). */
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
ROAD_API bool road_adapter_set_on_layer(const road_adapter_set *s, const char *name, int32_t layer);

/* Active adapters, applied in this order on every layer that has them. Every name must be an
 * adapter of the set. Only active adapters are trainable. Refused (nothing changes): two of
 * them holding a modules_to_save copy of one layer (ROAD_ERR_CONFIG, naming both and the
 * layer), or one holding a copy of a layer another one rotates (ROAD_ERR_UNSUPPORTED). */
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

/* PEFT's print_trainable_parameters: trainable = parameters of the active adapters (RoAd
 * parameters and modules_to_save copies); all = base parameters + every adapter's parameters,
 * copies included (as PEFT counts its ModulesToSaveWrapper copies). */
typedef struct road_param_report {
    int64_t trainable;
    int64_t all;
    double percent; /* 100 * trainable / all */
} road_param_report;
ROAD_API road_param_report road_adapter_set_param_report(const road_adapter_set *s);
/* "trainable params: 1,234 || all params: 5,678 || trainable%: 0.0217" into buf. */
ROAD_API void road_param_report_format(const road_param_report *r, char *buf, size_t cap);

/* ---- modules_to_save copies ------------------------------------------------------------------ */

/* One adapter's full copy of one layer. Pointers are the set's, valid until the adapter is
 * deleted; write weight/bias to change the copy (e.g. to load or train it). Gradients
 * accumulate (+=) in dweight/dbias (road_adapter_set_backward; the embedding's rows in
 * road_model_loss_backward) until the caller zeroes them. */
typedef struct road_module_copy {
    int32_t layer;   /* index in the set */
    int64_t out, in; /* weight [out x in]; an embedding: [vocab x hidden] */
    float *weight;
    float *bias;    /* [out], NULL when the layer has no bias */
    float *dweight; /* [out x in] */
    float *dbias;   /* [out] or NULL */
} road_module_copy;

/* Copies an adapter holds (0 for an unknown name), and the i-th (ascending layer order). */
ROAD_API int32_t road_adapter_set_copy_count(const road_adapter_set *s, const char *name);
ROAD_API road_status road_adapter_set_copy_at(road_adapter_set *s, const char *name, int32_t i,
                                              road_module_copy *out);
/* The adapter's copy of `layer`; ROAD_ERR_NOT_FOUND if it holds none. */
ROAD_API road_status road_adapter_set_copy(road_adapter_set *s, const char *name, int32_t layer,
                                           road_module_copy *out);
ROAD_API bool road_adapter_set_has_copy(const road_adapter_set *s, const char *name, int32_t layer);
/* The copy `layer` runs now (an active adapter's, adapters enabled): true and *out filled
 * (out may be NULL), or false when the layer runs its base weight. */
ROAD_API bool road_adapter_set_active_copy(road_adapter_set *s, int32_t layer,
                                           road_module_copy *out);
/* The weight and bias (NULL: none) `layer` uses now: the active adapter's copy when one
 * active adapter holds a copy of it (and adapters are enabled), else the base (for a linear
 * layer, its current, possibly merged, weight). Engines running their own GEMM use this
 * before road_adapter_set_apply. Either output may be NULL. *w is NULL when the layer runs a
 * packed base weight, quantized or 16-bit as stored (road_adapter_set_base_weight's *q;
 * road_adapter_set_base_forward runs a linear one). */
ROAD_API road_status road_adapter_set_layer_weight(const road_adapter_set *s, int32_t layer,
                                                   const float **w, const float **b);
/* y [rows x out] = x W^T + b with the weight road_adapter_set_layer_weight names (a copy, the
 * float base or the quantized base), before any RoAd rotation: the pre-adapter output. */
ROAD_API road_status road_adapter_set_base_forward(road_adapter_set *s, int32_t layer, int64_t rows,
                                                   const float *x, float *y);

/* ---- running the layers -------------------------------------------------------------------- */

/* Forward of one linear layer with the set's state (active adapters in order, disabled,
 * merged, an active modules_to_save copy): y[rows x out] = layer(x[rows x in]). */
ROAD_API road_status road_adapter_set_forward(road_adapter_set *s, int32_t layer, int64_t rows,
                                              const float *x, float *y);
/* For engines that run their own GEMM: rotate y = x W^T + b in place by the active adapters
 * of this layer (nothing when disabled or merged). W, b must be road_adapter_set_layer_weight's
 * (a layer with an active modules_to_save copy runs the copy). */
ROAD_API road_status road_adapter_set_apply(road_adapter_set *s, int32_t layer, int64_t rows,
                                            float *y);

/* A mixed batch: one adapter name (or ROAD_BASE_NAME) per sequence, checked once for the whole
 * model and then used on every layer. Refused: a name no layer has (all such names listed,
 * sorted), training mode, merged adapters.
 * Threads: read-only once made; it is used with its set, under the set's rule. */
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
/* The weight and bias sequence `seq` of a plan uses on `layer`: its adapter's
 * modules_to_save copy when that adapter holds one (and adapters are enabled), else the base.
 * Refused: a plan of another set, an index out of range, the sequence's adapter deleted. */
ROAD_API road_status road_adapter_set_plan_layer_weight(const road_adapter_set *s,
                                                        const road_batch_plan *p, int32_t layer,
                                                        int64_t seq, const float **w,
                                                        const float **b);
/* GEMM + road_adapter_set_apply_mixed. Sequences whose adapter holds a modules_to_save copy of
 * the layer run that copy: one GEMM per distinct weight, over the rows of its sequences. */
ROAD_API road_status road_adapter_set_forward_mixed(road_adapter_set *s, const road_batch_plan *p,
                                                    int32_t layer, int64_t rows_per_seq,
                                                    const int64_t *seq_rows, const float *x,
                                                    float *y);

/* Backward of road_adapter_set_forward for one layer (training mode): accumulates the active
 * adapters' gradients and writes dx (NULL to skip). x [rows x in] is the layer's input, y_base
 * [rows x out] its pre-adapter output. When the layer runs an active modules_to_save copy, its
 * gradients accumulate: dW += dy^T x, db += sum of dy over rows (the only weight-gradient GEMM
 * road runs), and dx = dy W_copy; x is then required (else it may be NULL). */
ROAD_API road_status road_adapter_set_backward(road_adapter_set *s, int32_t layer, int64_t rows,
                                               const float *x, const float *y_base, const float *dy,
                                               float *dx);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_ADAPTER_SET_H */
