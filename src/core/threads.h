/*
 * core/threads.h - how many threads road's kernels use (private; the public pair
 * road_set_num_threads / road_get_num_threads is in road/core.h).
 *
 * Two counts decide it: OpenMP's, which belongs to the calling thread (libgomp keeps
 * nthreads-var per thread; a thread started later begins from OMP_NUM_THREADS, or all cores),
 * and OpenBLAS's, which is one for the whole process (core/blas.c). A model has its own count
 * (road_model_params.n_threads): its calls lend it to the calling thread for their duration
 * with a thread scope and give the previous counts back afterwards, so loading or running a
 * model never changes what the rest of the process uses. Kernels read the count with
 * road_get_num_threads() (1 without OpenMP: the code is correct with OpenMP off).
 */
#ifndef ROAD_CORE_THREADS_H
#define ROAD_CORE_THREADS_H

#include <stdbool.h>

#include "road/core.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* What road__thread_scope_enter changed, so that leaving can put it back. */
typedef struct road_thread_scope {
    bool changed;  /* false: the counts already were n, nothing to restore */
    int omp_prev;  /* the calling thread's OpenMP count before */
    int blas_prev; /* OpenBLAS's count before */
} road_thread_scope;

/* Run the calling thread with n threads until road__thread_scope_leave: n > 0 that many,
 * n < 0 all cores, n == 0 leave the counts as they are. OpenBLAS's count is process-wide, so
 * while a scope with another count is open, BLAS calls of other threads run with it too, and
 * an sgemm's last bits depend on its thread count (OpenBLAS 0.3.21: 1 and 2 threads give
 * different bits for most shapes beyond a few rows): code running models with different counts on
 * several threads at once gets results that depend on timing, and should give its models one count.
 */
road_thread_scope road__thread_scope_enter(int n);
/* Give back the counts saved by road__thread_scope_enter (same thread, scopes nested LIFO). */
void road__thread_scope_leave(const road_thread_scope *s);

/* Open a thread scope for the rest of the enclosing block: the counts come back on every way
 * out of it (return included), through the cleanup attribute of GCC and Clang, so a public
 * entry point needs one line and no rewrite of its error paths. */
#define ROAD_THREAD_SCOPE(n)                                                                       \
    road_thread_scope road_thread_scope_                                                           \
        __attribute__((cleanup(road__thread_scope_leave), unused)) = road__thread_scope_enter(n)

#endif
