/*
 * llm/kv_read_avx2.c - AVX2 kernels that read a KV cache (see kv_read.h): 8 elements loaded
 * (f32) or widened (bf16: zero-extend and shift into a float32's top half; f16: F16C's
 * vcvtph2ps; both exact) per instruction, dot products four keys at a time, the weighted sum
 * of values with 32 outputs held in registers; the same order of operations for all three
 * types. Compiled for every x86-64 with a target attribute and chosen at run time
 * (core/cpu.h).
 */
#include "llm/kv_read.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>

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

/* Four keys' dot products at once: q's 8 floats loaded once for the four, one accumulator per
 * key, then the four reduced together (three hadds and one add: the same tree for every key
 * and every type). Elements past the last multiple of 8 are added one at a time after. */
#define KV_AVX2_DOTS4(T, load8, widen1)                                                            \
    {                                                                                              \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                \
        int64_t i = 0;                                                                             \
        for (; i + 8 <= d; i += 8) {                                                               \
            const __m256 qv = _mm256_loadu_ps(q + i);                                              \
            a0 = _mm256_fmadd_ps(qv, load8(k0 + i), a0);                                           \
            a1 = _mm256_fmadd_ps(qv, load8(k1 + i), a1);                                           \
            a2 = _mm256_fmadd_ps(qv, load8(k2 + i), a2);                                           \
            a3 = _mm256_fmadd_ps(qv, load8(k3 + i), a3);                                           \
        }                                                                                          \
        const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));           \
        _mm_storeu_ps(r, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));      \
        for (; i < d; i++) {                                                                       \
            r[0] += q[i] * widen1(k0[i]), r[1] += q[i] * widen1(k1[i]);                            \
            r[2] += q[i] * widen1(k2[i]), r[3] += q[i] * widen1(k3[i]);                            \
        }                                                                                          \
    }

/* The kernels of one type T whose 8 elements load8 makes a float32 vector (widen1: one). The
 * last n % 4 keys go through the same 4-key body (the last key repeated), so a key's dot
 * product does not depend on where it falls. wsum keeps 32 of o's floats in registers over
 * all the keys, each o[i] an FMA chain over t in order. */
#define KV_AVX2_KERNELS(tag, T, load8, widen1)                                                     \
    KV_AVX2 static void tag##_dots(float *s, const float *q, const void *kp, int64_t n,            \
                                   int64_t stride, int64_t d) {                                    \
        const T *k = kp;                                                                           \
        float r[4];                                                                                \
        for (int64_t t = 0; t < n; t += 4) {                                                       \
            const T *k0 = k + t * stride;                                                          \
            const T *k1 = t + 1 < n ? k0 + stride : k0, *k2 = t + 2 < n ? k0 + 2 * stride : k0;    \
            const T *k3 = t + 3 < n ? k0 + 3 * stride : k0;                                        \
            KV_AVX2_DOTS4(T, load8, widen1)                                                        \
            for (int j = 0; j < 4 && t + j < n; j++) s[t + j] = r[j];                              \
        }                                                                                          \
    }                                                                                              \
    KV_AVX2 static void tag##_wsum(float *o, const float *w, const void *vp, int64_t n,            \
                                   int64_t stride, int64_t d) {                                    \
        const T *v = vp;                                                                           \
        int64_t i = 0;                                                                             \
        for (; i + 32 <= d; i += 32) {                                                             \
            __m256 o0 = _mm256_loadu_ps(o + i), o1 = _mm256_loadu_ps(o + i + 8);                   \
            __m256 o2 = _mm256_loadu_ps(o + i + 16), o3 = _mm256_loadu_ps(o + i + 24);             \
            for (int64_t t = 0; t < n; t++) {                                                      \
                const __m256 wv = _mm256_set1_ps(w[t]);                                            \
                const T *vt = v + t * stride + i;                                                  \
                o0 = _mm256_fmadd_ps(wv, load8(vt), o0);                                           \
                o1 = _mm256_fmadd_ps(wv, load8(vt + 8), o1);                                       \
                o2 = _mm256_fmadd_ps(wv, load8(vt + 16), o2);                                      \
                o3 = _mm256_fmadd_ps(wv, load8(vt + 24), o3);                                      \
            }                                                                                      \
            _mm256_storeu_ps(o + i, o0), _mm256_storeu_ps(o + i + 8, o1);                          \
            _mm256_storeu_ps(o + i + 16, o2), _mm256_storeu_ps(o + i + 24, o3);                    \
        }                                                                                          \
        for (; i + 8 <= d; i += 8) {                                                               \
            __m256 o0 = _mm256_loadu_ps(o + i);                                                    \
            for (int64_t t = 0; t < n; t++)                                                        \
                o0 = _mm256_fmadd_ps(_mm256_set1_ps(w[t]), load8(v + t * stride + i), o0);         \
            _mm256_storeu_ps(o + i, o0);                                                           \
        }                                                                                          \
        for (; i < d; i++)                                                                         \
            for (int64_t t = 0; t < n; t++) o[i] = fmaf(w[t], widen1(v[t * stride + i]), o[i]);    \
    }

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

const kv_reader road__kv_reader_f32_avx2 = {f32_dots, f32_wsum, NULL};
const kv_reader road__kv_reader_bf16_avx2 = {bf16_dots, bf16_wsum, bf16_widen};
const kv_reader road__kv_reader_f16_avx2 = {f16_dots, f16_wsum, f16_widen};

#else
typedef int kv_read_avx2_unused; /* ISO C wants a declaration in every file */
#endif
