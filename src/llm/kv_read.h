/*
 * llm/kv_read.h - how attention's per-row (decode) path reads a KV cache of float32, bfloat16
 * or float16 keys and values, and how the GEMM (prefill) path widens a 16-bit one (private to
 * llm/).
 *
 * One kernel set per element type and instruction set: the 16-bit ones widen the stored
 * elements to float32 in registers as they use them, so nothing the size of the cache is ever
 * converted ahead of time. The scalar sets are the reference (one element at a time, one float
 * accumulator); the AVX2 sets (F16C for f16, a shift for bf16, 8-lane FMA) are chosen at run
 * time when the CPU has them and agree with the scalar ones to float rounding of the sums.
 * Within one instruction set the three types sum in the same order, and widening is exact, so
 * a 16-bit cache gives bit for bit what a float32 cache holding the same rounded values gives.
 *
 * Legend: d head_dim, n elements; "16-bit" pointers are uint16_t, "any" pointers the cache's
 * own type.
 */
#ifndef ROAD_LLM_KV_READ_H
#define ROAD_LLM_KV_READ_H

#include <stdbool.h>
#include <stdint.h>

#include "road/core.h"

typedef struct kv_reader {
    /* s[t] = sum_i q[i] k[t stride + i] for the n keys t < n (one head's keys, stride
     * elements apart).   s (n), q (d) float32, k (n, stride) any */
    void (*dots)(float *s, const float *q, const void *k, int64_t n, int64_t stride, int64_t d);
    /* o[i] += sum_t w[t] v[t stride + i], t in order (each o[i] a running sum over t).
     *   o (d), w (n), v (n, stride) any */
    void (*wsum)(float *o, const float *w, const void *v, int64_t n, int64_t stride, int64_t d);
    /* dst[i] = src[i] widened.   dst (n), src (n) 16-bit (NULL for float32) */
    void (*widen)(float *dst, const uint16_t *src, int64_t n);
} kv_reader;

/* The kernels for a cache of type t (ROAD_DTYPE_F32, _BF16 or _F16): the AVX2 ones when simd
 * is true (the caller asked road__cpu_has_avx2_fma()), else the scalar reference. */
const kv_reader *road__kv_reader(road_dtype t, bool simd);

/* The AVX2 sets (kv_read_avx2.c); call only where road__cpu_has_avx2_fma() is true. */
extern const kv_reader road__kv_reader_f32_avx2, road__kv_reader_bf16_avx2,
    road__kv_reader_f16_avx2;

#endif
