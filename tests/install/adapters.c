/*
 * tests/install/adapters.c - a program of the road library (no server): an adapter config with
 * a regex target, which road checks with PCRE2. It links road (pkg-config road, CMake
 * road::road) and must run without libmicrohttpd.
 */
#include <stdio.h>

#include <road/road.h>

int main(void) {
    road_config *c = NULL;
    if (road_config_create(&c) != ROAD_OK) {
        fprintf(stderr, "road_config_create: %s\n", road_last_error());
        return 1;
    }
    road_status good = road_config_set_target_regex(c, ".*\\.(q|v)_proj");
    road_status bad = road_config_set_target_regex(c, "(");
    printf("regex target: %s, broken regex: %s\n", road_status_name(good), road_status_name(bad));
    road_config_free(c);
    return good == ROAD_OK && bad == ROAD_ERR_CONFIG ? 0 : 1;
}
