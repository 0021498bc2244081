/*
 * core/cpu.c - run-time CPU facts (see cpu.h for why they are never taken at build time): the
 * features the kernels choose by, and the physical cores road's default thread count is.
 */
#define _GNU_SOURCE /* sched_getaffinity, cpu_set_t */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
/* F16C (CPUID leaf 1, ECX bit 29), read directly: clang's __builtin_cpu_supports does not know
 * "f16c". It uses the ymm state the AVX check below already requires of the OS. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

bool road__cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* __builtin_cpu_init is idempotent and reads CPUID into libgcc's data; calling it here
     * keeps the answer right even when asked from a constructor before libgcc's own. */
    __builtin_cpu_init();
    /* every AVX2 CPU has F16C too; the 16-bit weight kernels use it, so ask */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
#else
    return false;
#endif
}

bool road__cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* libgcc answers "avx512*" only when CPUID has the feature and the OS saves the zmm state
     * (XCR0 bits 5-7, read with xgetbv once OSXSAVE is set), so a kernel that asks never
     * faults on a kernel or hypervisor that disabled AVX-512. */
    __builtin_cpu_init();
    return road__cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
#else
    return false;
#endif
}

bool road__cpu_has_avx512_vnni(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return road__cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
#else
    return false;
#endif
}

/* A sysfs CPU list is a few bytes per range; a machine's longest is far below this. */
#define CPU_LIST_BYTES 4096

/* One unsigned decimal number at *p (advanced past it); -1 if there is none or it is >= max. */
static int parse_cpu(const char **p, int max) {
    if (**p < '0' || **p > '9') return -1;
    long v = 0;
    while (**p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        if (v >= max) return -1;
        (*p)++;
    }
    return (int)v;
}

int road__cpu_list_parse(const char *text, bool *set, int max) {
    const char *p = text;
    int count = 0;
    if (*p == '\0' || *p == '\n') return 0; /* an empty list (no CPU online in a group) */
    for (;;) {
        int lo = parse_cpu(&p, max), hi = lo;
        if (lo < 0) return -1;
        if (*p == '-') {
            p++;
            hi = parse_cpu(&p, max);
            if (hi < lo) return -1;
        }
        for (int c = lo; c <= hi; c++) set[c] = true;
        count += hi - lo + 1;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\n') p++;
        return *p == '\0' ? count : -1;
    }
}

/* The file at path, NUL-terminated, into buf[0..cap); false if it cannot be read whole. */
static bool read_small_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0) {
            close(fd);
            return false;
        }
        if (k == 0) break;
        n += (size_t)k;
        if (n == cap - 1) { /* full: longer than any list we expect */
            close(fd);
            return false;
        }
    }
    close(fd);
    buf[n] = '\0';
    return true;
}

int road__cpu_count_cores(const char *cpu_dir, const bool *allowed, int n) {
    if (n > ROAD_CPU_MAX) n = ROAD_CPU_MAX;
    bool *core_seen = calloc(ROAD_CPU_MAX, sizeof(bool));
    bool *siblings = calloc(ROAD_CPU_MAX, sizeof(bool));
    char *text = malloc(CPU_LIST_BYTES);
    int cores = 0;
    for (int c = 0; core_seen && siblings && text && c < n; c++) {
        if (!allowed[c]) continue;
        char path[512];
        if (snprintf(path, sizeof path, "%s/cpu%d/topology/thread_siblings_list", cpu_dir, c) >=
                (int)sizeof path ||
            !read_small_file(path, text, CPU_LIST_BYTES)) {
            cores = 0;
            break;
        }
        for (int s = 0; s < ROAD_CPU_MAX; s++) siblings[s] = false;
        if (road__cpu_list_parse(text, siblings, ROAD_CPU_MAX) <= 0 || !siblings[c]) {
            cores = 0; /* a CPU is always its own sibling: anything else is not a topology */
            break;
        }
        int first = 0;
        while (!siblings[first]) first++;
        if (!core_seen[first]) cores++;
        core_seen[first] = true;
    }
    free(text);
    free(siblings);
    free(core_seen);
    return cores;
}

static int physical_cores;
static pthread_once_t physical_once = PTHREAD_ONCE_INIT;

static void count_physical_cores(void) {
    bool allowed[ROAD_CPU_MAX] = {false};
    int n_allowed = 0;
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        for (int c = 0; c < ROAD_CPU_MAX && c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &mask)) allowed[c] = true, n_allowed++;
    } else {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < online && c < ROAD_CPU_MAX; c++) allowed[c] = true, n_allowed++;
    }
    int cores = road__cpu_count_cores("/sys/devices/system/cpu", allowed, ROAD_CPU_MAX);
    physical_cores = cores > 0 ? cores : n_allowed > 0 ? n_allowed : 1;
}

int road__cpu_physical_cores(void) {
    pthread_once(&physical_once, count_physical_cores);
    return physical_cores;
}
