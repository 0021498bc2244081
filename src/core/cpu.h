/*
 * core/cpu.h - what the CPU running road supports, read at run time (private).
 *
 * Never at build time: one binary runs on every x86-64 and each kernel family (adapter/rot.c,
 * quant/qmatmul.c, core/gemm_skinny.c) picks the fastest version the machine supports. The
 * answers do not change while the process runs; any thread may ask.
 *
 * Also the number of physical cores, road's default thread count: SMT siblings share one
 * core's FMA units and caches, so a second thread on a sibling adds no GEMM throughput and
 * only adds a thread to wait for at every barrier.
 */
#ifndef ROAD_CORE_CPU_H
#define ROAD_CORE_CPU_H

#include <stdbool.h>

/* True when the CPU (and OS) support AVX2 and FMA. */
bool road__cpu_has_avx2_fma(void);
/* True when the CPU and OS support AVX-512 F, BW, VL and DQ (zmm state saved by the OS), and
 * AVX2 + FMA + F16C. */
bool road__cpu_has_avx512(void);
/* True when road__cpu_has_avx512() and the CPU has AVX512-VNNI (vpdpbusd). */
bool road__cpu_has_avx512_vnni(void);

/* The most CPUs the core count looks at: glibc's cpu_set_t (sched_getaffinity) holds 1024. */
#define ROAD_CPU_MAX 1024

/* Parse a Linux CPU list as sysfs writes it ("0-3,8,10-11", a newline at the end allowed)
 * into set[0..max): set[c] becomes true for every listed CPU (others are left as they are).
 * Returns the number of CPUs listed, -1 on malformed text or a CPU >= max. */
int road__cpu_list_parse(const char *text, bool *set, int max);

/* The number of physical cores holding at least one of the CPUs c < n with allowed[c], read
 * from cpu_dir (normally /sys/devices/system/cpu): CPUs whose cpuN/topology/
 * thread_siblings_list have the same lowest CPU share a core. 0 when a list cannot be read or
 * parsed (the caller falls back to counting CPUs). */
int road__cpu_count_cores(const char *cpu_dir, const bool *allowed, int n);

/* The physical cores this process may run on (its affinity mask, as omp_get_num_procs reads
 * it, counted by core), at least 1; the CPUs when the topology is unreadable. Computed once. */
int road__cpu_physical_cores(void);

#endif
