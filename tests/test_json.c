/*
 * tests/test_json.c - what road's JSON reader refuses and how it says so, and the writer of
 * string literals that never cuts text (io/json.c):
 *   - \u0000 and raw NUL in a string are refused with the path of the string (keys, indices,
 *     keys that are not identifiers, long paths cut with "..."); road_json_where gives line,
 *     column, offset, path and whether the text was valid JSON at all;
 *   - text after the value and raw control characters are refused (what cJSON_Parse accepts);
 *   - road__json_string_literal keeps every byte: NUL as \u0000, controls escaped, invalid
 *     UTF-8 as \ufffd, and what it writes (without NUL) parses back to the same bytes.
 * The grammar itself (numbers, escapes, depth) is tested in test_config.c.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "testutil.h"

/* Parse text (strlen or n bytes) expecting a refusal; check the message and the where. */
static void expect_refused(const char *text, size_t n, const char *path, bool valid_json,
                           const char *needle) {
    cJSON *j = (cJSON *)0x1;
    road_json_where w;
    road_status s = road__json_parse_at(text, n, &j, &w);
    if (s != ROAD_ERR_FORMAT) fail_msg("accepted or wrong status %d: %s", (int)s, text);
    assert_null(j);
    if (strcmp(w.path, path) != 0) fail_msg("%s: path '%s', expected '%s'", text, w.path, path);
    if (w.valid_json != valid_json)
        fail_msg("%s: valid_json %d, expected %d", text, (int)w.valid_json, (int)valid_json);
    if (!strstr(road_last_error(), needle))
        fail_msg("%s: message '%s' lacks '%s'", text, road_last_error(), needle);
    if (!strstr(w.what, needle) && !strstr(needle, "line "))
        fail_msg("%s: what '%s' lacks '%s'", text, w.what, needle);
}

static void test_nul_names_the_string(void **state) {
    (void)state;
    const char *chat = "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"},\n"
                       " {\"role\": \"user\", \"content\": \"x\\u0000y\"}]}";
    expect_refused(chat, strlen(chat), "messages[1].content", true,
                   "the string at messages[1].content holds \\u0000 (NUL)");
    expect_refused(chat, strlen(chat), "messages[1].content", true, "line 2, column 32");
    /* the top level, a list, a key that is not an identifier, a key itself */
    expect_refused("\"a\\u0000\"", 9, "", true, "the string holds \\u0000");
    expect_refused("[1, [\"\", \"\\u0000\"]]", 19, "[1][1]", true, "the string at [1][1] holds");
    const char *odd = "{\"stop words\": [\"\\u0000\"]}";
    expect_refused(odd, strlen(odd), "[\"stop words\"][0]", true, "at [\"stop words\"][0] holds");
    const char *key = "{\"a\": {\"k\\u0000\": 1}}";
    expect_refused(key, strlen(key), "a", true, "a key of the object at a holds \\u0000");
    /* a raw NUL byte (a control character: invalid JSON) */
    const char raw[] = "{\"prompt\": \"ab\0cd\"}";
    expect_refused(raw, sizeof raw - 1, "prompt", false, "a raw NUL byte in the string at prompt");
    /* other string faults name the string too */
    expect_refused("{\"p\": \"a\nb\"}", 11, "p", false, "control character in the string at p");
    expect_refused("{\"p\": \"\xff\"}", 9, "p", false, "invalid UTF-8 in the string at p");
    expect_refused("{\"p\": [\"\\ud800\"]}", 16, "p[0]", true, "surrogate escape in the string at p[0]");
    /* a deep path is cut with "...", never overflowing */
    char deep[4096];
    size_t k = 0;
    for (int i = 0; i < 200; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"key%d\":", i);
    k += (size_t)snprintf(deep + k, sizeof deep - k, "\"\\u0000\"");
    for (int i = 0; i < 200; i++) deep[k++] = '}';
    cJSON *j = NULL;
    road_json_where w;
    TU_FAILS(road__json_parse_at(deep, k, &j, &w), ROAD_ERR_FORMAT, "holds \\u0000");
    assert_true(strlen(w.path) < ROAD_JSON_PATH_MAX);
    assert_non_null(strstr(w.path, "key0.key1.key2"));
    assert_string_equal(w.path + strlen(w.path) - 3, "...");
    /* the public road_json_parse says the same */
    TU_FAILS(road_json_parse(chat, strlen(chat), &j), ROAD_ERR_FORMAT,
             "invalid JSON at line 2, column 32: the string at messages[1].content holds \\u0000");
}

static void test_invalid_json_refused(void **state) {
    (void)state;
    /* cJSON_ParseWithLength accepts each of these (it stops at the end of the first value and
     * takes raw control characters): road's parser, now behind every JSON road reads, does not */
    const char *trailing = "{\"prompt\": \"hi\"} garbage";
    cJSON *c = cJSON_ParseWithLength(trailing, strlen(trailing));
    assert_non_null(c); /* what the old code took */
    cJSON_Delete(c);
    expect_refused(trailing, strlen(trailing), "", false, "line 1, column 18: extra text");
    expect_refused("{\"a\": 1}{\"b\": 2}", 16, "", false, "extra text after the JSON value");
    expect_refused("{\"a\": \"x\ty\"}", 12, "a", false, "control character");
    road_json_where w;
    cJSON *j = NULL;
    TU_FAILS(road__json_parse_at("{\"a\": [1 2]}", 12, &j, &w), ROAD_ERR_FORMAT, "expected ','");
    assert_string_equal(w.path, "a");
    assert_int_equal(w.offset, 9);
    assert_int_equal(w.column, 10);
    /* success clears where */
    TU_OK(road__json_parse_at("{\"a\": [1, 2]}  \n", 16, &j, &w));
    assert_int_equal(w.line, 0);
    assert_string_equal(w.path, "");
    cJSON_Delete(j);
}

/* The literal of n bytes, checked to hold no NUL byte before its end. */
static char *literal(const char *s, size_t n) {
    char *out = NULL;
    size_t len = 0;
    TU_OK(road__json_string_literal(s, n, &out, &len));
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_string_literal(void **state) {
    (void)state;
    const char with_nul[] = "ab\0cd";
    char *l = literal(with_nul, 5);
    assert_string_equal(l, "\"ab\\u0000cd\"");
    road__free(l);
    l = literal("q\"b\\\n\r\t\b\f\x01\x7f", 11);
    assert_string_equal(l, "\"q\\\"b\\\\\\n\\r\\t\\b\\f\\u0001\x7f\"");
    road__free(l);
    l = literal("h\xc3\xa9 \xf0\x9f\x98\x80", 8); /* valid UTF-8 stays as it is */
    assert_string_equal(l, "\"h\xc3\xa9 \xf0\x9f\x98\x80\"");
    road__free(l);
    l = literal("a\xff" "b\xe2\x82", 5); /* a stray byte, a cut character */
    assert_string_equal(l, "\"a\\ufffdb\\ufffd\\ufffd\"");
    road__free(l);
    l = literal("", 0);
    assert_string_equal(l, "\"\"");
    road__free(l);
    /* every byte but NUL round-trips through the parser */
    char all[255];
    for (int i = 0; i < 127; i++) all[i] = (char)(i + 1);
    memcpy(all + 127, "\xc3\xa9\xe2\x82\xac", 5);
    l = literal(all, 132);
    cJSON *j = NULL;
    TU_OK(road_json_parse(l, strlen(l), &j));
    assert_true(cJSON_IsString(j));
    assert_int_equal(strlen(j->valuestring), 132);
    assert_memory_equal(j->valuestring, all, 132);
    cJSON_Delete(j);
    road__free(l);
    /* the old way, cJSON_CreateString, cuts at the NUL */
    cJSON *old = cJSON_CreateString(with_nul);
    char *printed = cJSON_PrintUnformatted(old);
    assert_string_equal(printed, "\"ab\"");
    free(printed);
    cJSON_Delete(old);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_names_the_string),
        cmocka_unit_test(test_invalid_json_refused),
        cmocka_unit_test(test_string_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
