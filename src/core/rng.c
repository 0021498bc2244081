/*
 * core/rng.c - xoshiro256** (Blackman & Vigna) with splitmix64 seeding, Box-Muller normals.
 */
#include <math.h>

#include "core/rng.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void road__rng_seed(road_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    r->has_spare = 0;
    r->spare = 0.0;
}

uint64_t road__rng_u64(road_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double road__rng_uniform(road_rng *r) {
    return (double)(road__rng_u64(r) >> 11) * 0x1.0p-53;
}

double road__rng_normal(road_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1;
    do u1 = road__rng_uniform(r);
    while (u1 <= 0.0);
    double u2 = road__rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    double ang = 2.0 * 3.14159265358979323846 * u2;
    r->spare = rad * sin(ang);
    r->has_spare = 1;
    return rad * cos(ang);
}

void road__rng_fill_normal(road_rng *r, float *x, int64_t n, float mean, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(mean + std * road__rng_normal(r));
}
