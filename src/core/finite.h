/*
 * core/finite.h - the one scan for NaN / Inf (private).
 *
 * Numbers that cannot be right are refused where they enter road (adapter files, library
 * setters, checkpoints): each entry point reports the tensor and the first bad index, so the
 * user can find it in their own tools.
 */
#ifndef ROAD_CORE_FINITE_H
#define ROAD_CORE_FINITE_H

#include <math.h>
#include <stdint.h>

/* Index of the first NaN or +-Inf in x[0..n), or -1 when every value is finite. */
static inline int64_t road_first_nonfinite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

#endif
