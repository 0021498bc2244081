/*
 * tests/install/serve.c - a program of the server library: it links road-serve (pkg-config
 * road-serve, CMake road::serve) and reads the serving engine's defaults.
 */
#include <stdio.h>

#include <road/road.h>

int main(void) {
    road_engine_params p = road_engine_default_params();
    printf("engine: max_batch %d, step_tokens %lld\n", (int)p.max_batch, (long long)p.step_tokens);
    return p.max_batch > 0 && p.step_tokens >= p.max_batch ? 0 : 1;
}
