/*
 * tests/chat_refs.h - reading tests/fixtures/chat (templates.json, conversations.json,
 * renders.json, disagreements.json, transformers.json), shared by test_chat_templates.c (the
 * engine) and test_chat_apply.c (apply_chat_template's steps). Header-only (static inline):
 * each test is its own executable.
 */
#ifndef ROAD_TEST_CHAT_REFS_H
#define ROAD_TEST_CHAT_REFS_H

#include <stdbool.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "io/file.h"
#include "road/json.h"
#include "testutil.h"

/* A fixture file parsed as road parses JSON (numbers keep their text: 1.0 stays a float). */
static inline cJSON *chat_refs_load(const char *rel) {
    char *text = NULL;
    size_t len = 0;
    TU_OK(road__file_read(tu_fixture(rel), (size_t)64 << 20, &text, &len));
    cJSON *j = NULL;
    TU_OK(road_json_parse(text, len, &j));
    road__free(text);
    return j;
}

/* The entry of `list` whose string member `key` is `value`, or NULL. */
static inline const cJSON *chat_refs_find(const cJSON *list, const char *key, const char *value) {
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *v = cJSON_GetObjectItem(e, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, value) == 0) return e;
    }
    return NULL;
}

/* Whether two records describe the same case (template, conversation, flags, kwargs). */
static inline bool chat_refs_same_case(const cJSON *a, const cJSON *b) {
    static const char *const keys[] = {"template", "conversation", "add_generation_prompt",
                                       "continue_final_message", "kwargs"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!cJSON_Compare(cJSON_GetObjectItem(a, keys[i]), cJSON_GetObjectItem(b, keys[i]), true))
            return false;
    return true;
}

#endif
