/*
 * core/rng.h - a small, seedable, reproducible random number generator (private).
 *
 * xoshiro256** seeded through splitmix64; normals by the Box-Muller transform. State lives in
 * the caller's struct (no globals), so two runs with one seed draw the same numbers on every
 * machine and thread count.
 */
#ifndef ROAD_CORE_RNG_H
#define ROAD_CORE_RNG_H

#include <stdint.h>

typedef struct road_rng {
    uint64_t s[4];
    double spare;   /* second Box-Muller value */
    int has_spare;
} road_rng;

void road__rng_seed(road_rng *r, uint64_t seed);
uint64_t road__rng_u64(road_rng *r);
double road__rng_uniform(road_rng *r); /* [0, 1) with 53 random bits */
double road__rng_normal(road_rng *r);  /* N(0, 1) */
void road__rng_fill_normal(road_rng *r, float *x, int64_t n, float mean, float std);

#endif
