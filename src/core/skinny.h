/*
 * core/skinny.h - the matmul for a few rows (decode), see gemm_skinny.c (private).
 */
#ifndef ROAD_CORE_SKINNY_H
#define ROAD_CORE_SKINNY_H

#include <stdint.h>

/* Up to this many rows road__sgemm_xwt streams W once itself instead of calling sgemm
 * (measured on the bench machine with the 3x4 tiles, 2 threads, Llama-3.2-1B layer shapes:
 * 2.1-4.0x sgemm's speed at 8 rows, 1.2-1.8x at 16, even at 32). 16 is the server's default
 * batch. */
#define ROAD_SKINNY_MAX_ROWS 16

/* y (rows, out) = x (rows, in) W^T (out, in) (+ bias); rows <= ROAD_SKINNY_MAX_ROWS. */
void road__skinny_xwt(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                      const float *bias, float *y);
#if defined(__x86_64__)
/* The x86 versions road__skinny_xwt chooses from, for tests and benchmarks: call one only when
 * road__cpu_has_avx2_fma() / road__cpu_has_avx512() says the CPU has it. */
void road__skinny_avx2(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                       const float *bias, float *y);
void road__skinny_avx512(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                         const float *bias, float *y);
#endif
/* Plain loops: the reference for tests. */
void road__skinny_reference(int64_t rows, int64_t out, int64_t in, const float *x, const float *w,
                            const float *bias, float *y);

#endif
