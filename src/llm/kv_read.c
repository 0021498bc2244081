/*
 * llm/kv_read.c - the scalar reference kernels that read a 16-bit KV cache, and the choice
 * between them and the AVX2 ones (see kv_read.h).
 */
#include "llm/kv_read.h"

#include "road/core.h"

/* One body per 16-bit type: `widen` is a constant in each, so it is inlined. The dot product
 * runs in one float accumulator, element by element, as ops.c's float32 loop does. */
#define KV_SCALAR_KERNELS(tag, widen1)                                                             \
    static float tag##_dot(const float *q, const uint16_t *k, int64_t d) {                         \
        float dot = 0.0f;                                                                          \
        for (int64_t i = 0; i < d; i++) dot += q[i] * widen1(k[i]);                                \
        return dot;                                                                                \
    }                                                                                              \
    static void tag##_axpy(float *o, float w, const uint16_t *v, int64_t d) {                      \
        for (int64_t i = 0; i < d; i++) o[i] += w * widen1(v[i]);                                  \
    }                                                                                              \
    static void tag##_widen(float *dst, const uint16_t *src, int64_t n) {                          \
        for (int64_t i = 0; i < n; i++) dst[i] = widen1(src[i]);                                   \
    }                                                                                              \
    static const kv_reader tag##_reader = {tag##_dot, tag##_axpy, tag##_widen};

KV_SCALAR_KERNELS(bf16, road_bf16_to_f32)
KV_SCALAR_KERNELS(f16, road_f16_to_f32)

const kv_reader *road__kv_reader(road_dtype t, bool simd) {
#if defined(__x86_64__) || defined(__i386__)
    if (simd) return t == ROAD_DTYPE_F16 ? &road__kv_reader_f16_avx2 : &road__kv_reader_bf16_avx2;
#else
    (void)simd;
#endif
    return t == ROAD_DTYPE_F16 ? &f16_reader : &bf16_reader;
}
