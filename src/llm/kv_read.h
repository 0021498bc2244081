/*
 * llm/kv_read.h - attention's reads of a 16-bit KV cache (private to llm/).
 *
 * A bf16 or f16 cache is read through one of these kernel sets: each widens the stored
 * elements to float32 in registers as it uses them, so nothing the size of the cache is ever
 * converted ahead of time. The scalar set is the reference (one element at a time, in the
 * order of the float32 loops in ops.c, so a 16-bit cache read through it gives exactly what a
 * float32 cache holding the same rounded values gives); the AVX2 set (F16C for f16, a shift
 * for bf16, FMA, 8 lanes) is chosen at run time when the CPU has it and agrees with the scalar
 * one to float rounding of the sums.
 *
 * Legend: d head_dim, n elements.
 */
#ifndef ROAD_LLM_KV_READ_H
#define ROAD_LLM_KV_READ_H

#include <stdbool.h>
#include <stdint.h>

#include "road/core.h"

typedef struct kv_reader {
    /* sum_i q[i] k[i].   q (d) float32, k (d) 16-bit */
    float (*dot)(const float *q, const uint16_t *k, int64_t d);
    /* o[i] += w v[i].   o (d), v (d) 16-bit */
    void (*axpy)(float *o, float w, const uint16_t *v, int64_t d);
    /* dst[i] = v[i] widened.   dst (n), src (n) 16-bit */
    void (*widen)(float *dst, const uint16_t *src, int64_t n);
} kv_reader;

/* The kernels for a cache of type t (ROAD_DTYPE_BF16 or ROAD_DTYPE_F16): the AVX2 ones when
 * simd is true (the caller asked road__cpu_has_avx2_fma()), else the scalar reference. */
const kv_reader *road__kv_reader(road_dtype t, bool simd);

/* The AVX2 sets (kv_read_avx2.c); call only where road__cpu_has_avx2_fma() is true. */
extern const kv_reader road__kv_reader_bf16_avx2, road__kv_reader_f16_avx2;

#endif
