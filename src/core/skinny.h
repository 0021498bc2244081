/*
 * core/skinny.h - the matmul for a few rows (decode), see gemm_skinny.c (private).
 */
#ifndef ROAD_CORE_SKINNY_H
#define ROAD_CORE_SKINNY_H

#include <stdint.h>

/* Up to this many rows road_sgemm_xwt streams W once itself instead of calling sgemm
 * (measured on the bench machine: sgemm's packing of W costs more than it saves below this). */
#define ROAD_SKINNY_MAX_ROWS 8

/* y (rows, out) = x (rows, in) W^T (out, in) (+ bias); rows <= ROAD_SKINNY_MAX_ROWS. */
void road_skinny_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                     const float *bias, float *y);
/* Plain loops: the reference for tests. */
void road_skinny_reference(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                           const float *bias, float *y);

#endif
