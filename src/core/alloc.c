/*
 * core/alloc.c - counting, failure-injecting allocation wrapper.
 *
 * Each block carries a 64-byte header holding its size, so frees can update the live counters
 * and the user pointer stays 64-byte aligned.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"

#define HEADER ROAD_ALIGN

static atomic_llong live_bytes;
static atomic_llong live_count;
static atomic_llong fail_countdown = -1;

static int should_fail(void) {
    long long c = atomic_load(&fail_countdown);
    while (c >= 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1)) return c == 0;
    }
    return 0;
}

int road__size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

void *road__malloc(size_t n) {
    if (n > SIZE_MAX - 2 * HEADER || should_fail()) {
        road__error(ROAD_ERR_NO_MEMORY, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    size_t total = (n + HEADER + HEADER - 1) / HEADER * HEADER;
    void *base = NULL;
    if (posix_memalign(&base, ROAD_ALIGN, total) != 0) {
        road__error(ROAD_ERR_NO_MEMORY, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    *(size_t *)base = n;
    atomic_fetch_add(&live_bytes, (long long)n);
    atomic_fetch_add(&live_count, 1);
    return (char *)base + HEADER;
}

void *road__calloc(size_t count, size_t size) {
    size_t n;
    if (road__size_mul(count, size, &n) != 0) {
        road__error(ROAD_ERR_NO_MEMORY, "allocation size overflows (%zu x %zu)", count, size);
        return NULL;
    }
    void *p = road__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void road__free(void *p) {
    if (!p) return;
    char *base = (char *)p - HEADER;
    size_t n = *(size_t *)base;
    atomic_fetch_sub(&live_bytes, (long long)n);
    atomic_fetch_sub(&live_count, 1);
    free(base);
}

void *road__realloc(void *p, size_t n) {
    if (!p) return road__malloc(n);
    size_t old = *(size_t *)((char *)p - HEADER);
    void *q = road__malloc(n);
    if (!q) return NULL;
    memcpy(q, p, old < n ? old : n);
    road__free(p);
    return q;
}

char *road__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = road__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int64_t road__alloc_live_bytes(void) {
    return atomic_load(&live_bytes);
}

int64_t road__alloc_live_count(void) {
    return atomic_load(&live_count);
}

void road__alloc_fail_after(int64_t n) {
    atomic_store(&fail_countdown, n < 0 ? -1 : n);
}
