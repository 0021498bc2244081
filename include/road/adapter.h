/*
 * road/adapter.h - RoAd adapters: variants, kernels, and the adapted linear layer.
 *
 * A RoAd adapter rotates pairs of output features of a linear layer y = W x + b. Outputs are
 * cut into groups of group_size (g); inside a group, element i (i < g/2) pairs with i + g/2:
 *
 *     y'[a] = c1[a] * y[a] - c2[a] * y[b]        (a = group start + i, b = a + g/2)
 *     y'[b] = c1[b] * y[b] + c2[b] * y[a]
 *
 * c1 = alpha * cos(theta), c2 = alpha * sin(theta) per output feature, built from the trained
 * parameters as the variant says (road_1: one (theta, alpha) per pair, out/2 each; road_2: one
 * per feature, out each; road_4: separate ones for the cos and sin entries, 2*out each).
 * This is exactly PEFT's RoAd (src/peft/tuners/road/layer.py); docs/formats.md gives the
 * parameter layouts.
 *
 * Layouts: row-major everywhere. Y is [rows x out] with a leading dimension (row stride, in
 * floats) ld >= out. W is [out x in] as Hugging Face stores it.
 */
#ifndef ROAD_ADAPTER_H
#define ROAD_ADAPTER_H

#include "road/core.h"
#include "road/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- variants --------------------------------------------------------------------------- */

typedef enum road_variant {
    ROAD_VARIANT_1 = 1, /* "road_1": theta, alpha of size out/2 */
    ROAD_VARIANT_2 = 2, /* "road_2": size out */
    ROAD_VARIANT_4 = 4  /* "road_4": size 2*out */
} road_variant;

/* The default group size of PEFT's RoadConfig. */
#define ROAD_DEFAULT_GROUP_SIZE 64
/* The name a mixed batch uses for "no adapter on this row" (as PEFT). */
#define ROAD_BASE_NAME "__base__"

/* "road_1" / "road_2" / "road_4", or "?" for an invalid value. */
ROAD_API const char *road_variant_name(road_variant v);
/* Parse "road_1" | "road_2" | "road_4"; anything else is ROAD_ERR_CONFIG naming the choices. */
ROAD_API road_status road_variant_parse(const char *s, road_variant *out);
/* Number of theta (and of alpha) entries for a layer with `out` features; 0 if invalid. */
ROAD_API int64_t road_param_count(road_variant v, int64_t out);
/* Check that (variant, group_size, out) make a valid adapter: group_size positive and even,
 * out positive and divisible by group_size. The error names the layer when `layer` != NULL. */
ROAD_API road_status road_check_shape(road_variant v, int64_t group_size, int64_t out,
                                      const char *layer);

/* ---- kernels ----------------------------------------------------------------------------- */

/* Rotation coefficients of one adapter on one layer: c1, c2 each of length out. Plain data;
 * the caller owns the arrays. This is what an embedding engine passes to the kernels.
 * Threads: the kernels only read it; any number of threads may use one at once. */
typedef struct road_rot {
    int64_t out;        /* output features */
    int32_t group_size; /* even, divides out */
    const float *c1;    /* [out] alpha * cos(theta), per output feature */
    const float *c2;    /* [out] alpha * sin(theta), per output feature */
} road_rot;

/* c1, c2 [out] from theta, alpha [road_param_count(v, out)]. */
ROAD_API road_status road_coeffs_compute(road_variant v, int32_t group_size, int64_t out,
                                         const float *theta, const float *alpha, float *c1,
                                         float *c2);
/* Chain rule from coefficient gradients to parameter gradients (accumulated, +=):
 * dc1, dc2 [out] -> dtheta, dalpha [road_param_count(v, out)]. */
ROAD_API road_status road_coeffs_backward(road_variant v, int32_t group_size, int64_t out,
                                          const float *theta, const float *alpha,
                                          const float *dc1, const float *dc2, float *dtheta,
                                          float *dalpha);

/* Forward in place: Y[rows x out] (row stride ld) <- RoAd(Y). */
ROAD_API road_status road_rot_forward(const road_rot *r, int64_t rows, float *y, int64_t ld);

/* Mixed batch in place: row i uses rots[slot[i]], or passes through if slot[i] < 0. All rots
 * must have the same out. One pass over the rows, no gather/scatter copies. */
ROAD_API road_status road_rot_forward_mixed(const road_rot *const *rots, int32_t n_rots,
                                            const int32_t *slot, int64_t rows, float *y,
                                            int64_t ld);

/* Backward of y = RoAd(x). x [rows x out] is the input the forward saw, dy the upstream
 * gradient. Writes dx = R^T dy (dx may alias dy; pass NULL to skip). Accumulates (+=) the
 * coefficient gradients dc1, dc2 [out] summed over rows (NULL to skip). */
ROAD_API road_status road_rot_backward(const road_rot *r, int64_t rows, const float *x,
                                       int64_t ldx, const float *dy, int64_t lddy, float *dx,
                                       int64_t lddx, float *dc1, float *dc2);

/* Merge R into a float linear layer: W [out x in] (row stride ldw) <- R W, b [out] <- R b
 * (b may be NULL). O(out * in), two rows at a time; never forms R. Refused (W, b untouched)
 * with ROAD_ERR_NUMERIC when a coefficient is not finite or a 2x2 block is singular. */
ROAD_API road_status road_rot_merge(const road_rot *r, int64_t in, float *w, int64_t ldw,
                                    float *b);
/* Undo road_rot_merge with the exact inverse of each 2x2 block: W <- R^-1 W, b <- R^-1 b.
 * Refused (W, b untouched) when a block is singular or not finite. */
ROAD_API road_status road_rot_unmerge(const road_rot *r, int64_t in, float *w, int64_t ldw,
                                      float *b);
/* The dense R [out x out] (for tests and inspection only: O(out^2) memory). */
ROAD_API road_status road_rot_dense(const road_rot *r, float *dense);

/* Largest condition number of R's 2x2 blocks (1 for pure rotations, inf if singular). */
ROAD_API double road_rot_block_condition(const road_rot *r);

/* Kernel implementations, selectable for tests and benchmarks. AUTO picks the fastest one the
 * CPU supports at run time. */
typedef enum road_kernel_impl {
    ROAD_KERNEL_AUTO = 0,
    ROAD_KERNEL_REFERENCE = 1, /* plain scalar loops: the specification */
    ROAD_KERNEL_GENERIC = 2,   /* portable, vectorizable C + OpenMP */
    ROAD_KERNEL_AVX2 = 3       /* x86-64 AVX2 + FMA */
} road_kernel_impl;
/* Select the implementation used by this thread's kernel calls (default AUTO). Returns
 * ROAD_ERR_UNSUPPORTED if the CPU lacks it. */
ROAD_API road_status road_kernel_select(road_kernel_impl impl);
/* The implementation AUTO resolves to on this machine, and a name for it. */
ROAD_API road_kernel_impl road_kernel_active(void);
ROAD_API const char *road_kernel_name(road_kernel_impl impl);

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
#endif /* ROAD_ADAPTER_H */
