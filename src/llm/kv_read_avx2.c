/*
 * llm/kv_read_avx2.c - AVX2 kernels that read a KV cache (see kv_read.h): 8 elements loaded
 * (f32) or widened (bf16: zero-extend and shift into a float32's top half; f16: F16C's
 * vcvtph2ps; both exact) per instruction, the dot product in two 8-lane FMA accumulators, the
 * same order for all three types. Compiled for
 * every x86-64 with a target attribute and chosen at run time (core/cpu.h).
 */
#include "llm/kv_read.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "road/core.h"

#define KV_AVX2 __attribute__((target("avx2,fma,f16c")))

KV_AVX2 static inline __m256 bf16x8(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

KV_AVX2 static inline __m256 f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

KV_AVX2 static inline __m256 f32x8(const float *p) {
    return _mm256_loadu_ps(p);
}

KV_AVX2 static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The kernels of one type T whose 8 elements load8 makes a float32 vector (widen1: one). */
#define KV_AVX2_KERNELS(tag, T, load8, widen1)                                                     \
    KV_AVX2 static float tag##_dot(const float *q, const void *kp, int64_t d) {                    \
        const T *k = kp;                                                                           \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                 \
        int64_t i = 0;                                                                             \
        for (; i + 16 <= d; i += 16) {                                                             \
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), a0);                        \
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), load8(k + i + 8), a1);                \
        }                                                                                          \
        for (; i + 8 <= d; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(k + i), a0); \
        float dot = hsum(_mm256_add_ps(a0, a1));                                                   \
        for (; i < d; i++) dot += q[i] * widen1(k[i]);                                             \
        return dot;                                                                                \
    }                                                                                              \
    KV_AVX2 static void tag##_axpy(float *o, float w, const void *vp, int64_t d) {                 \
        const T *v = vp;                                                                           \
        const __m256 wv = _mm256_set1_ps(w);                                                       \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= d; i += 8)                                                                 \
            _mm256_storeu_ps(o + i, _mm256_fmadd_ps(wv, load8(v + i), _mm256_loadu_ps(o + i)));    \
        for (; i < d; i++) o[i] += w * widen1(v[i]);                                               \
    }

/* And the widening of a 16-bit type, for the GEMM path. */
#define KV_AVX2_WIDEN(tag, load8, widen1)                                                          \
    KV_AVX2 static void tag##_widen(float *dst, const uint16_t *src, int64_t n) {                  \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8(src + i));                      \
        for (; i < n; i++) dst[i] = widen1(src[i]);                                                \
    }

#define KV_F32_ID(x) (x)
KV_AVX2_KERNELS(f32, float, f32x8, KV_F32_ID)
KV_AVX2_KERNELS(bf16, uint16_t, bf16x8, road_bf16_to_f32)
KV_AVX2_KERNELS(f16, uint16_t, f16x8, road_f16_to_f32)
KV_AVX2_WIDEN(bf16, bf16x8, road_bf16_to_f32)
KV_AVX2_WIDEN(f16, f16x8, road_f16_to_f32)

const kv_reader road__kv_reader_f32_avx2 = {f32_dot, f32_axpy, NULL};
const kv_reader road__kv_reader_bf16_avx2 = {bf16_dot, bf16_axpy, bf16_widen};
const kv_reader road__kv_reader_f16_avx2 = {f16_dot, f16_axpy, f16_widen};

#else
typedef int kv_read_avx2_unused; /* ISO C wants a declaration in every file */
#endif
