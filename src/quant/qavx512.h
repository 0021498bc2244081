/*
 * quant/qavx512.h - the AVX-512 weight decoders shared by qkernels_avx512.c (decode) and
 * qgemm_avx512.c (prefill GEMM) (private). Include only from x86-64 code: every function
 * carries the AVX-512 target attribute and is called only after road__cpu_has_avx512().
 */
#ifndef ROAD_QAVX512_H
#define ROAD_QAVX512_H
#if defined(__x86_64__)
#include <immintrin.h>

#include "quant/quant_internal.h"

#define Q512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define Q512_INLINE Q512 static inline __attribute__((always_inline))

/* How the weights of a row are stored (compile-time at every call, so the switches fold). */
enum { W_INT8, W_BF16, W_F16, W_Q4 };

/* 16 weights of an int8 / bf16 / f16 row at element k, as floats (int8 unscaled). */
Q512_INLINE __m512 wload(const int F, const void *row, int64_t k) {
    if (F == W_INT8)
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)row + k))));
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k));
    if (F == W_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* The same for the n < 16 weights at k (lanes past n are 0; nothing past them is read). */
Q512_INLINE __m512 wload_part(const int F, const void *row, int64_t k, __mmask16 m) {
    if (F == W_INT8)
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const int8_t *)row + k)));
    const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k);
    if (F == W_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* Interleave patterns: (even[0], odd[0], even[1], odd[1], ...) over the low 8 and high 8. */
#define ILV_LO _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define ILV_HI _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)

/* 32 weights from 16 packed bytes at p, looked up in the scaled table st, in element order
 * (dequant). */
Q512_INLINE void decode32(const uint8_t *p, __m512 st, __m512i ilo, __m512i ihi, __m512 *w0,
                          __m512 *w1) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    const __m512 we = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), st);
    const __m512 wo = _mm512_permutexvar_ps(v, st);
    *w0 = _mm512_permutex2var_ps(we, ilo, wo);
    *w1 = _mm512_permutex2var_ps(we, ihi, wo);
}

#endif
#endif
