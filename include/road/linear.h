/*
 * road/linear.h - the adapted linear layer (PEFT's road.Linear): a linear layer y = x W^T + b
 * (float or quantized weight) with named RoAd adapters (road/rot.h) applied to its output.
 *
 * Layouts: row-major everywhere. X is [rows x in], Y [rows x out]; W is [out x in] as Hugging
 * Face stores it.
 */
#ifndef ROAD_LINEAR_H
#define ROAD_LINEAR_H

#include "road/core.h"
#include "road/quant.h"
#include "road/rot.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the adapted linear layer (PEFT's road.Linear) --------------------------------------- */

/* Threads: one call at a time per layer, forward included (it rebuilds an adapter's
 * coefficient cache when the parameters changed since the last use; backward adds into the
 * adapter's gradients); different layers in parallel. A layer of an adapter set or a model is
 * part of that object and follows its rule. */
typedef struct road_linear road_linear;

typedef struct road_linear_params {
    int64_t in_features;
    int64_t out_features;
    float *weight;      /* [out x in]; this or qweight is required */
    float *bias;        /* [out] or NULL */
    bool borrow;        /* true: use the caller's arrays (merge writes into them; they must
                           outlive the layer); false (default): copy them */
    road_qtensor *qweight; /* instead of weight: a quantized [out x in] weight (road/quant.h),
                              borrowed or copied as above; merging re-quantizes it in place */
} road_linear_params;

ROAD_API road_linear_params road_linear_default_params(void);
ROAD_API road_status road_linear_create(const road_linear_params *p, road_linear **out);
ROAD_API void road_linear_free(road_linear *l);

ROAD_API int64_t road_linear_in_features(const road_linear *l);
ROAD_API int64_t road_linear_out_features(const road_linear *l);
/* Current weight and bias (reflect merges). Owned by the layer (or the caller if borrowed).
 * The weight is NULL when it is quantized: see road_linear_qweight. */
ROAD_API const float *road_linear_weight(const road_linear *l);
ROAD_API const float *road_linear_bias(const road_linear *l);
/* The quantized weight, or NULL for a float32 layer. */
ROAD_API const road_qtensor *road_linear_qweight(const road_linear *l);
/* The base output y [rows x out] = x W^T + b, without adapters, float or quantized weight. */
ROAD_API road_status road_linear_base_forward(road_linear *l, int64_t rows, const float *x,
                                              float *y);
/* The current weight as float32 into w [out x in] (dequantized for a quantized layer). */
ROAD_API road_status road_linear_dequantized_weight(const road_linear *l, float *w);

/* Add an adapter. init_weights = true: identity (theta 0, alpha 1); false: PEFT's random init
 * theta ~ N(0, 0.5), alpha ~ N(1, 0.5) drawn from `seed`. The first adapter added becomes the
 * active one. Errors: bad name, duplicate, invalid (variant, group_size) for this layer. */
ROAD_API road_status road_linear_add_adapter(road_linear *l, const char *name, road_variant v,
                                             int32_t group_size, bool init_weights,
                                             uint64_t seed);
/* Delete an adapter. If it was active, the remaining adapters stay active; if none remain
 * active, the first remaining adapter (if any) becomes active. Refused while it is merged. */
ROAD_API road_status road_linear_delete_adapter(road_linear *l, const char *name);
ROAD_API int32_t road_linear_adapter_count(const road_linear *l);
ROAD_API const char *road_linear_adapter_name(const road_linear *l, int32_t i);
ROAD_API bool road_linear_has_adapter(const road_linear *l, const char *name);

/* Adapter configuration and parameters. road_linear_adapter_params returns pointers to the
 * layer's own theta/alpha [n]: write to them, then call road_linear_params_changed so the
 * coefficient cache is rebuilt (it is rebuilt only when parameters change). */
ROAD_API road_status road_linear_adapter_info(const road_linear *l, const char *name,
                                              road_variant *v, int32_t *group_size,
                                              int64_t *n_params);
ROAD_API road_status road_linear_adapter_params(road_linear *l, const char *name, float **theta,
                                                float **alpha, int64_t *n);
ROAD_API road_status road_linear_params_changed(road_linear *l, const char *name);
/* Copy theta and alpha [n] in. A NaN or Inf is refused (ROAD_ERR_NUMERIC, naming the array
 * and the first bad index) and nothing changes. */
ROAD_API road_status road_linear_set_params(road_linear *l, const char *name, const float *theta,
                                            const float *alpha, int64_t n);
/* The coefficients of an adapter (built on demand from the cache). */
ROAD_API road_status road_linear_adapter_rot(road_linear *l, const char *name, road_rot *out);

/* Active adapters: applied in this order. As in PEFT, a name that is not an adapter of this
 * layer is allowed and skipped (in a model, an adapter may target other layers only); the
 * adapter manager checks that every name exists somewhere in the model. */
ROAD_API road_status road_linear_set_active(road_linear *l, const char *const *names, int32_t n);
ROAD_API int32_t road_linear_active_count(const road_linear *l);
ROAD_API const char *road_linear_active_name(const road_linear *l, int32_t i);
/* Disable (enabled = false) or enable all adapters. */
ROAD_API void road_linear_enable_adapters(road_linear *l, bool enabled);
ROAD_API bool road_linear_adapters_enabled(const road_linear *l);

/* Merge the named adapters (or, with names == NULL, the active ones) into W and b, in order.
 * Already merged adapters are skipped. safe: compute into a copy and refuse NaN/Inf results
 * (W, b untouched). A singular or non-finite block is always refused. A quantized weight is
 * dequantized, rotated and quantized again (a warning is logged: the new rounding changes
 * outputs slightly, and unmerge restores W only up to that rounding). */
ROAD_API road_status road_linear_merge(road_linear *l, const char *const *names, int32_t n,
                                       bool safe);
/* Unmerge every merged adapter, last merged first, with exact 2x2 inverses. */
ROAD_API road_status road_linear_unmerge(road_linear *l);
ROAD_API int32_t road_linear_merged_count(const road_linear *l);
ROAD_API const char *road_linear_merged_name(const road_linear *l, int32_t i);

/* Forward y[rows x out] = layer(x[rows x in]) with PEFT's semantics: adapters disabled -> the
 * base output (a merged layer is unmerged first); merged -> the base path with merged
 * weights; otherwise the base output rotated by each active adapter in order. */
ROAD_API road_status road_linear_forward(road_linear *l, int64_t rows, const float *x, float *y);

/* For engines that run the GEMM themselves: rotate y [rows x out] (row stride ld), the base
 * output x W^T + b, in place by the active adapters in order; nothing when adapters are
 * disabled or merged. */
ROAD_API road_status road_linear_apply(road_linear *l, int64_t rows, float *y, int64_t ld);

/* Mixed batch: x is [n_seq x rows_per_seq x in]; names[s] picks sequence s's adapter, or
 * ROAD_BASE_NAME. A name that is not an adapter of this layer passes its rows through as base
 * (PEFT's layer semantics; the model checks that every name exists somewhere). Refused while
 * adapters are merged. */
ROAD_API road_status road_linear_forward_mixed(road_linear *l, int64_t n_seq,
                                               int64_t rows_per_seq, const char *const *names,
                                               int64_t n_names, const float *x, float *y);

/* Backward of road_linear_forward (adapters enabled and not merged). y_base [rows x out] is
 * x W^T + b as computed in forward (the layer's pre-adapter output), dy [rows x out] the
 * upstream gradient. Writes dx [rows x in] (NULL to skip); accumulates (+=) the gradients of
 * every active adapter's theta/alpha into the layer's gradient buffers. */
ROAD_API road_status road_linear_backward(road_linear *l, int64_t rows, const float *y_base,
                                          const float *dy, float *dx);
/* Gradient buffers of an adapter ([n] each, zero until the first backward). */
ROAD_API road_status road_linear_adapter_grads(road_linear *l, const char *name,
                                               float **dtheta, float **dalpha, int64_t *n);
ROAD_API void road_linear_zero_grads(road_linear *l);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_LINEAR_H */
