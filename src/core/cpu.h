/*
 * core/cpu.h - what the CPU running road supports, read at run time (private).
 *
 * Never at build time: one binary runs on every x86-64 and each kernel family (adapter/rot.c,
 * quant/qmatmul.c, core/gemm_skinny.c) picks the fastest version the machine supports. The
 * answers do not change while the process runs; any thread may ask.
 */
#ifndef ROAD_CORE_CPU_H
#define ROAD_CORE_CPU_H

#include <stdbool.h>

/* True when the CPU (and OS) support AVX2 and FMA. */
bool road__cpu_has_avx2_fma(void);

#endif
