/*
 * llm/kv_read.c - the scalar reference kernels that read a KV cache, and the choice between
 * them and the AVX2 ones (see kv_read.h).
 */
#include "llm/kv_read.h"

#include "road/core.h"

/* One body per type T: `widen1` (a constant in each) widens one element. Each dot product
 * runs in one float accumulator, element by element, and each o[i] sums over the keys in
 * order: the loops attention's per-row path always had. */
#define KV_SCALAR_KERNELS(tag, T, widen1)                                                          \
    static void tag##_dots(float *s, const float *q, const void *kp, int64_t n, int64_t stride,    \
                           int64_t d) {                                                            \
        const T *k = kp;                                                                           \
        for (int64_t t = 0; t < n; t++) {                                                          \
            const T *kt = k + t * stride;                                                          \
            float dot = 0.0f;                                                                      \
            for (int64_t i = 0; i < d; i++) dot += q[i] * widen1(kt[i]);                           \
            s[t] = dot;                                                                            \
        }                                                                                          \
    }                                                                                              \
    static void tag##_wsum(float *o, const float *w, const void *vp, int64_t n, int64_t stride,    \
                           int64_t d) {                                                            \
        const T *v = vp;                                                                           \
        for (int64_t t = 0; t < n; t++)                                                            \
            for (int64_t i = 0; i < d; i++) o[i] += w[t] * widen1(v[t * stride + i]);              \
    }

#define KV_SCALAR_WIDEN(tag, widen1)                                                               \
    static void tag##_widen(float *dst, const uint16_t *src, int64_t n) {                          \
        for (int64_t i = 0; i < n; i++) dst[i] = widen1(src[i]);                                   \
    }

#define KV_F32_ID(x) (x)
KV_SCALAR_KERNELS(f32, float, KV_F32_ID)
KV_SCALAR_KERNELS(bf16, uint16_t, road_bf16_to_f32)
KV_SCALAR_KERNELS(f16, uint16_t, road_f16_to_f32)
KV_SCALAR_WIDEN(bf16, road_bf16_to_f32)
KV_SCALAR_WIDEN(f16, road_f16_to_f32)

static const kv_reader f32_reader = {f32_dots, f32_wsum, NULL};
static const kv_reader bf16_reader = {bf16_dots, bf16_wsum, bf16_widen};
static const kv_reader f16_reader = {f16_dots, f16_wsum, f16_widen};

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
