/*
 * bench/bench_util.h - what every benchmark program repeats: a monotonic clock, exiting with
 * road's message on a failed call, and a fixed-seed random stream for made-up weights.
 * Define BENCH_NAME (the program's name, for messages) before including it.
 */
#ifndef ROAD_BENCH_UTIL_H
#define ROAD_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "road/road.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

/* Seconds on CLOCK_MONOTONIC. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Exit with "BENCH_NAME: what: <road's message>" unless s is ROAD_OK. */
static inline void die(road_status s, const char *what) {
    if (s != ROAD_OK) {
        fprintf(stderr, BENCH_NAME ": %s: %s\n", what, road_last_error());
        exit(1);
    }
}

/* Uniform in [-0.5, 0.5) from xorshift64 with a fixed seed: the same weights every run. */
static uint64_t bench_rng_state = 88172645463325252ULL;
static inline float rnd(void) {
    uint64_t x = bench_rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    bench_rng_state = x;
    return (float)((double)(x >> 11) * 0x1.0p-53 - 0.5);
}

#endif
