/*
 * tests/install/kernels.c - a program that wants only the RoAd kernels: it links road-core
 * (pkg-config road-core, CMake road::core) and must run without PCRE2 or libmicrohttpd.
 *
 * One road_1 rotation on a pair of features, checked against the formula of
 * docs/architecture.md ("The RoAd kernels"), computed here in double.
 */
#include <math.h>
#include <stdio.h>

#include <road/road.h>

/* float32 rounding of c1, c2 and of two products and a sum: a few ulps of values near 4. */
#define TOL 1e-5

int main(void) {
    const float theta[1] = {0.5f}, alpha[1] = {2.0f};
    float c1[2], c2[2];
    if (road_coeffs_compute(ROAD_VARIANT_1, 2, 2, theta, alpha, c1, c2) != ROAD_OK) {
        fprintf(stderr, "road_coeffs_compute: %s\n", road_last_error());
        return 1;
    }
    road_rot r = {.out = 2, .group_size = 2, .c1 = c1, .c2 = c2};
    float y[2] = {1.0f, 2.0f};
    if (road_rot_forward(&r, 1, y, 2) != ROAD_OK) {
        fprintf(stderr, "road_rot_forward: %s\n", road_last_error());
        return 1;
    }
    /* y'[a] = c1 y[a] - c2 y[b], y'[b] = c1 y[b] + c2 y[a] */
    double a = 2.0 * cos(0.5), b = 2.0 * sin(0.5);
    double want0 = a * 1.0 - b * 2.0, want1 = a * 2.0 + b * 1.0;
    printf("road %s: rotated (1, 2) -> (%.6f, %.6f)\n", road_version(), y[0], y[1]);
    if (fabs(y[0] - want0) > TOL || fabs(y[1] - want1) > TOL) {
        fprintf(stderr, "expected (%.6f, %.6f)\n", want0, want1);
        return 1;
    }
    return 0;
}
