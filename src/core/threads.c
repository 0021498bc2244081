/*
 * core/threads.c - the thread count of road's kernels and BLAS: the public setter and getter,
 * and the thread scope a model's calls run in (threads.h says which count belongs to whom).
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/threads.h"
#include "core/blas.h"
#include "core/cpu.h"

/* The count n asks for (n <= 0: all cores, counted as physical cores: core/cpu.h says why). */
static int resolve(int n) {
#ifdef _OPENMP
    return n > 0 ? n : road__cpu_physical_cores();
#else
    return n > 0 ? n : 1;
#endif
}

void road_set_num_threads(int n) {
    n = resolve(n);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    road__blas_set_threads(n);
}

int road_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

road_thread_scope road__thread_scope_enter(int n) {
    road_thread_scope s = {.changed = false, .omp_prev = 0, .blas_prev = 0};
    if (n == 0) return s;
    n = resolve(n);
    s.omp_prev = road_get_num_threads();
    s.blas_prev = road__blas_threads();
#ifdef _OPENMP
    const bool omp_same = s.omp_prev == n;
#else
    const bool omp_same = true;
#endif
    if (omp_same && s.blas_prev == n) return s;
    s.changed = true;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    road__blas_set_threads(n);
    return s;
}

void road__thread_scope_leave(const road_thread_scope *s) {
    if (!s->changed) return;
#ifdef _OPENMP
    omp_set_num_threads(s->omp_prev);
#endif
    road__blas_set_threads(s->blas_prev);
}

/* libgomp spins this many pause instructions at a barrier or at the end of a parallel region
 * before it sleeps on a futex. A pause takes ~60 ns on the AMD EPYC of bench/README.md, so
 * this is ~60 us: longer than most serial gaps between the parallel regions of a step (the
 * partner is back before it expires), far shorter than a scheduler slice (when another process
 * has descheduled the partner, spinning for it only steals its core). bench/README.md
 * ("Threads on a shared machine") has the measurements behind the value. */
#define SPIN_PAUSES "1000"
/* OpenBLAS (pthreads build) worker threads wait 2^N cycles before sleeping; N = 4 is the least
 * it accepts (its default, 28, is ~0.1 s). The OpenMP build, road's default, ignores it. */
#define BLAS_THREAD_TIMEOUT "4"

/* setenv(name, value) unless name is set; true if it set it. */
static bool set_default(const char *name, const char *value) {
    return !getenv(name) && setenv(name, value, 0) == 0;
}

bool road_threads_prepare_env(void) {
    bool set = false;
    if (!getenv("OMP_WAIT_POLICY")) set |= set_default("GOMP_SPINCOUNT", SPIN_PAUSES);
    set |= set_default("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT);
    char cores[16];
    snprintf(cores, sizeof cores, "%d", road__cpu_physical_cores());
    set |= set_default("OMP_NUM_THREADS", cores);
    return set;
}
