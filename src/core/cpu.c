/*
 * core/cpu.c - run-time CPU feature detection (see cpu.h for why it is never done at build
 * time). The one place road asks the CPU what it supports.
 */
#include "core/cpu.h"

bool road__cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* __builtin_cpu_init is idempotent and reads CPUID into libgcc's data; calling it here
     * keeps the answer right even when asked from a constructor before libgcc's own. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}
