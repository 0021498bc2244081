/*
 * fuzz/fuzz_config.c - libFuzzer target for adapter_config.json and the JSON layer under it.
 *
 * The input is a whole file. Two properties are checked, both as fixed points, because the
 * contract is "write exactly what Python would", and a text road wrote must read back to the
 * same text:
 *  - road_config_parse either refuses with a message, or yields a config whose to_json text
 *    parses again to the very same text (and a clone writes it too);
 *  - road_json_parse either refuses, or its road__json_dump text parses and dumps identically.
 * road's allocation counter must be back where it started after each input (no leaks on the
 * refusal paths).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "road/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_config(const char *text, size_t size) {
    road_config *c = NULL;
    road_clear_error();
    if (road_config_parse(text, size, &c) != ROAD_OK) {
        if (c != NULL || road_last_error()[0] == '\0') __builtin_trap();
        return;
    }
    char *first = NULL, *second = NULL, *cloned = NULL;
    road_config *again = NULL, *copy = NULL;
    if (road_config_to_json(c, &first) != ROAD_OK) __builtin_trap();
    if (road_config_parse(first, strlen(first), &again) != ROAD_OK) __builtin_trap();
    if (road_config_to_json(again, &second) != ROAD_OK) __builtin_trap();
    if (strcmp(first, second) != 0) __builtin_trap();
    if (road_config_clone(c, &copy) != ROAD_OK) __builtin_trap();
    if (road_config_to_json(copy, &cloned) != ROAD_OK) __builtin_trap();
    if (strcmp(first, cloned) != 0) __builtin_trap();
    /* What the getters report agrees with itself. */
    int32_t n = road_config_target_count(c);
    for (int32_t i = 0; i < n; i++) {
        if (road_config_target(c, i) == NULL) __builtin_trap();
    }
    if (road_config_target(c, n) != NULL) __builtin_trap();
    road_string_free(first);
    road_string_free(second);
    road_string_free(cloned);
    road_config_free(c);
    road_config_free(again);
    road_config_free(copy);
}

static void check_json(const char *text, size_t size) {
    cJSON *j = NULL, *again = NULL;
    if (road_json_parse(text, size, &j) != ROAD_OK) {
        if (j != NULL) __builtin_trap();
        return;
    }
    char *first = NULL, *second = NULL;
    size_t n1 = 0, n2 = 0;
    /* A parsed tree is valid UTF-8 and within the depth limit: it can always be written. */
    if (road__json_dump(j, &first, &n1) != ROAD_OK) __builtin_trap();
    if (road_json_parse(first, n1, &again) != ROAD_OK) __builtin_trap();
    if (road__json_dump(again, &second, &n2) != ROAD_OK) __builtin_trap();
    if (n1 != n2 || memcmp(first, second, n1) != 0) __builtin_trap();
    road__free(first);
    road__free(second);
    cJSON_Delete(j);
    cJSON_Delete(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t live = road__alloc_live_bytes();
    check_config((const char *)data, size);
    check_json((const char *)data, size);
    if (road__alloc_live_bytes() != live) __builtin_trap();
    return 0;
}
