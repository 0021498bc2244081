/*
 * llm/kv_read.c - the scalar reference kernels that read a KV cache, and the choice between
 * them and the AVX2 ones (see kv_read.h).
 */
#include "llm/kv_read.h"

#include "road/core.h"

/* One body per 16-bit type: `widen1` is a constant in each, so it is inlined. The dot
 * product runs in one float accumulator, element by element: the float32 loop below with each
 * element widened first. */
#define KV_SCALAR_KERNELS(tag, widen1)                                                             \
    static float tag##_dot(const float *q, const void *kp, int64_t d) {                            \
        const uint16_t *k = kp;                                                                    \
        float dot = 0.0f;                                                                          \
        for (int64_t i = 0; i < d; i++) dot += q[i] * widen1(k[i]);                                \
        return dot;                                                                                \
    }                                                                                              \
    static void tag##_axpy(float *o, float w, const void *vp, int64_t d) {                         \
        const uint16_t *v = vp;                                                                    \
        for (int64_t i = 0; i < d; i++) o[i] += w * widen1(v[i]);                                  \
    }                                                                                              \
    static void tag##_widen(float *dst, const uint16_t *src, int64_t n) {                          \
        for (int64_t i = 0; i < n; i++) dst[i] = widen1(src[i]);                                   \
    }                                                                                              \
    static const kv_reader tag##_reader = {tag##_dot, tag##_axpy, tag##_widen};

/* float32: the loops attention's per-row path always had. */
static float f32_dot(const float *q, const void *kp, int64_t d) {
    const float *k = kp;
    float dot = 0.0f;
    for (int64_t i = 0; i < d; i++) dot += q[i] * k[i];
    return dot;
}
static void f32_axpy(float *o, float w, const void *vp, int64_t d) {
    const float *v = vp;
    for (int64_t i = 0; i < d; i++) o[i] += w * v[i];
}
static const kv_reader f32_reader = {f32_dot, f32_axpy, NULL};

KV_SCALAR_KERNELS(bf16, road_bf16_to_f32)
KV_SCALAR_KERNELS(f16, road_f16_to_f32)

const kv_reader *road__kv_reader(road_dtype t, bool simd) {
#if defined(__x86_64__) || defined(__i386__)
    if (simd)
        return t == ROAD_DTYPE_F16    ? &road__kv_reader_f16_avx2
               : t == ROAD_DTYPE_BF16 ? &road__kv_reader_bf16_avx2
                                      : &road__kv_reader_f32_avx2;
#else
    (void)simd;
#endif
    return t == ROAD_DTYPE_F16 ? &f16_reader : t == ROAD_DTYPE_BF16 ? &bf16_reader : &f32_reader;
}
