/*
 * road/rot.h - the RoAd rotation: variants, coefficients and kernels (for any engine that owns
 * its linear layers; road/linear.h wraps them in PEFT's adapted linear layer).
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
#ifndef ROAD_ROT_H
#define ROAD_ROT_H

#include "road/core.h"

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

#ifdef __cplusplus
}
#endif
#endif /* ROAD_ROT_H */
