/*
 * adapter/kernels.h - the RoAd kernel implementations behind road_rot_* (private).
 *
 * Every implementation provides the same two row kernels; road_rot_forward / _backward choose
 * one at run time (road_kernel_select) and split rows across OpenMP threads. The reference
 * implementation is the specification: plain scalar loops in the order of the math. Every
 * other implementation must give bit-identical results (same operations, no FMA contraction),
 * which tests/test_kernels.c checks.
 *
 * Legend: R = rows, D = out features, g = group_size, h = g/2.
 */
#ifndef ROAD_ADAPTER_KERNELS_H
#define ROAD_ADAPTER_KERNELS_H

#include "road/rot.h"

typedef struct road_kernel_ops {
    const char *name;
    /* y (R,D) row stride ld: y <- RoAd(y), in place. */
    void (*forward)(const road_rot *r, int64_t rows, float *y, int64_t ld);
    /* x (R,D) forward input, dy (R,D) upstream grad -> dx (R,D) = R^T dy (may alias dy; NULL
     * skips). dc1, dc2 (D) double accumulators += sum over rows (NULL skips). */
    void (*backward)(const road_rot *r, int64_t rows, const float *x, int64_t ldx, const float *dy,
                     int64_t lddy, float *dx, int64_t lddx, double *dc1, double *dc2);
} road_kernel_ops;

extern const road_kernel_ops road__kernels_reference;
extern const road_kernel_ops road__kernels_generic;
#if defined(__x86_64__)
extern const road_kernel_ops road__kernels_avx2;
#define ROAD_HAVE_AVX2_KERNELS 1
#endif

/* ROAD_ERR_NUMERIC (message names the features) if a 2x2 block of r is not finite or is
 * singular in float32, which merge and unmerge refuse. `fn` prefixes the message. */
road_status road__rot_check_blocks(const road_rot *r, const char *fn);

/* The ops chosen for this thread (road_kernel_select; AUTO resolved). */
const road_kernel_ops *road__kernels_current(void);

#endif
