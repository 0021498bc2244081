/*
 * core/threads.c - the thread count of road's kernels and BLAS: the public setter and getter,
 * and the thread scope a model's calls run in (threads.h says which count belongs to whom).
 */
#include "core/threads.h"
#include "core/blas.h"

/* The count n asks for (n <= 0: all cores), as road_set_num_threads always read it. */
static int resolve(int n) {
#ifdef _OPENMP
    return n > 0 ? n : omp_get_num_procs();
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
