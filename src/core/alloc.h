/*
 * core/alloc.h - the one allocation wrapper (private).
 *
 * All heap memory of libroad goes through these functions so that tests can count live bytes
 * and inject failures (SQLite-style out-of-memory testing). Alignment is 64 bytes, enough for
 * any SIMD width road uses and one cache line.
 */
#ifndef ROAD_CORE_ALLOC_H
#define ROAD_CORE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define ROAD_ALIGN 64

void *road__malloc(size_t n);                  /* aligned, NULL on failure (message set) */
void *road__calloc(size_t count, size_t size); /* zeroed, overflow-checked */
void *road__realloc(void *p, size_t n);        /* not aligned beyond malloc's guarantee */
void road__free(void *p);
char *road__strdup(const char *s);

/* Size arithmetic that refuses overflow: returns 0 and sets *out on success, -1 on overflow. */
int road__size_mul(size_t a, size_t b, size_t *out);

/* Test hooks: live bytes/allocations, and failing the allocation after `n` more succeed
 * (n < 0 turns injection off). Counters are process-wide and atomic. */
int64_t road__alloc_live_bytes(void);
int64_t road__alloc_live_count(void);
void road__alloc_fail_after(int64_t n);

#endif
