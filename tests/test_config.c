/*
 * tests/test_config.c - adapter_config.json: PEFT's bytes, malformed input, out of memory.
 *
 * The contract is "byte-for-byte what PEFT's save_pretrained writes", so the main checks are
 * byte comparisons against files PEFT wrote (tests/fixtures/golden/e2e_adapters) and against
 * expected texts written by hand from Python's json.dumps rules (escapes, float repr). Every
 * test also checks that road's allocation counter is back where it started.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

#include "core/alloc.h"
#include "io/file.h"
#include "io/json.h"

static const char *const golden_dirs[] = {
    "golden/e2e_adapters/mlp",
    "golden/e2e_adapters/mlp_wide",
    "golden/e2e_adapters/example_causal_lm_config",
};

/* ---- helpers ------------------------------------------------------------------------------ */

static int setup_live(void **state) {
    int64_t *start = malloc(sizeof *start);
    if (!start) return -1;
    *start = road__alloc_live_bytes();
    *state = start;
    return 0;
}

static int teardown_live(void **state) {
    int64_t *start = *state;
    int64_t now = road__alloc_live_bytes();
    int leaked = now != *start;
    if (leaked) print_error("leak: %lld bytes still allocated\n", (long long)(now - *start));
    free(start);
    return leaked ? -1 : 0;
}

/* The golden adapter_config.json of `dir` (road__malloc'd). */
static char *read_golden(const char *dir, size_t *len) {
    char rel[256];
    snprintf(rel, sizeof rel, "%s/adapter_config.json", dir);
    char *data = NULL;
    TU_OK(road__file_read(tu_fixture(rel), 1 << 20, &data, len));
    return data;
}

/* Fail with both texts and the first differing byte unless a == b. */
static void assert_same_text(const char *what, const char *got, const char *want) {
    if (strcmp(got, want) == 0) return;
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    print_error("%s: texts differ at byte %zu\n--- got:\n%s\n--- want:\n%s\n", what, i, got, want);
    fail();
}

static road_config *parse_ok(const char *json) {
    road_config *c = NULL;
    TU_OK(road_config_parse(json, strlen(json), &c));
    return c;
}

static char *to_json(const road_config *c) {
    char *s = NULL;
    TU_OK(road_config_to_json(c, &s));
    return s;
}

/* parse -> to_json must reproduce `want` exactly. */
static void assert_rewrites_to(const char *json, const char *want) {
    road_config *c = parse_ok(json);
    char *s = to_json(c);
    assert_same_text(json, s, want);
    road_string_free(s);
    road_config_free(c);
}

/* A minimal valid config with `fields` spliced in, e.g. "\"group_size\": 8". */
static void expect_refused(const char *fields, road_status want, const char *needle) {
    char json[1024];
    snprintf(json, sizeof json, "{\"peft_type\": \"ROAD\"%s%s}", fields[0] ? ", " : "", fields);
    road_config *c = (road_config *)0x1;
    road_status s = road_config_parse(json, strlen(json), &c);
    if (s == ROAD_OK) road_config_free(c);
    tu_check_fails(s, want, needle, json, __FILE__, __LINE__);
    assert_null(c);
}

static char *make_temp_dir(void) {
    char tmpl[] = "/tmp/road_test_config_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *copy = strdup(d);
    assert_non_null(copy);
    return copy;
}

/* Remove the files of a flat folder and the folder; returns how many files it held. */
static int remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
        n++;
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    return n;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    }
    closedir(d);
    return n;
}

static char *dump_json(const cJSON *j) {
    char *s = NULL;
    TU_OK(road__json_dump(j, &s, NULL));
    return s;
}

/* ---- PEFT's own files --------------------------------------------------------------------- */

static void test_golden_round_trip(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof golden_dirs / sizeof golden_dirs[0]; i++) {
        size_t len;
        char *want = read_golden(golden_dirs[i], &len);
        road_config *c = NULL;
        TU_OK(road_config_parse(want, len, &c));
        char *got = to_json(c);
        assert_same_text(golden_dirs[i], got, want);
        assert_int_equal(strlen(got), len);
        road_string_free(got);
        road_config_free(c);

        /* The same through road_config_load, given the folder and given the file. */
        char rel[256];
        snprintf(rel, sizeof rel, "%s/adapter_config.json", golden_dirs[i]);
        for (int as_file = 0; as_file < 2; as_file++) {
            c = NULL;
            TU_OK(road_config_load(tu_fixture(as_file ? rel : golden_dirs[i]), &c));
            got = to_json(c);
            assert_same_text(rel, got, want);
            road_string_free(got);
            road_config_free(c);
        }
        road__free(want);
    }
}

static void test_golden_values(void **state) {
    (void)state;
    road_config *c = NULL;
    TU_OK(road_config_load(tu_fixture(golden_dirs[0]), &c));
    assert_int_equal(road_config_variant(c), ROAD_VARIANT_1);
    assert_int_equal(road_config_group_size(c), 2);
    assert_false(road_config_init_weights(c));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_LIST);
    assert_int_equal(road_config_target_count(c), 2);
    assert_string_equal(road_config_target(c, 0), "lin1");
    assert_string_equal(road_config_target(c, 1), "lin0");
    assert_null(road_config_target(c, 2));
    assert_null(road_config_target(c, -1));
    assert_int_equal(road_config_modules_to_save_count(c), -1);
    assert_null(road_config_task_type(c));
    assert_null(road_config_base_model(c));
    assert_null(road_config_revision(c));
    assert_true(road_config_inference_mode(c));
    assert_string_equal(road_config_peft_version(c), "0.20.1.dev0@UNKNOWN");
    road_config_free(c);

    TU_OK(road_config_load(tu_fixture(golden_dirs[1]), &c));
    assert_int_equal(road_config_variant(c), ROAD_VARIANT_4);
    assert_int_equal(road_config_group_size(c), 8);
    road_config_free(c);

    TU_OK(road_config_load(tu_fixture(golden_dirs[2]), &c));
    assert_int_equal(road_config_group_size(c), 64);
    assert_true(road_config_init_weights(c));
    assert_string_equal(road_config_task_type(c), "CAUSAL_LM");
    road_config_free(c);
}

/* Sort the target_modules list of a parsed config text and print it again: PEFT writes a set,
 * so two texts that differ only in that order are the same config. */
static char *canonical_targets(const char *json) {
    cJSON *j = NULL;
    TU_OK(road_json_parse(json, strlen(json), &j));
    cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    assert_true(cJSON_IsArray(t));
    int n = cJSON_GetArraySize(t);
    for (int a = 0; a < n; a++) {
        for (int b = a + 1; b < n; b++) {
            cJSON *x = cJSON_GetArrayItem(t, a), *y = cJSON_GetArrayItem(t, b);
            if (strcmp(x->valuestring, y->valuestring) > 0) {
                char *tmp = x->valuestring;
                x->valuestring = y->valuestring;
                y->valuestring = tmp;
            }
        }
    }
    char *s = dump_json(j);
    cJSON_Delete(j);
    return s;
}

static void test_build_causal_lm_from_scratch(void **state) {
    (void)state;
    size_t len;
    char *want = read_golden(golden_dirs[2], &len);

    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    assert_null(road_config_peft_version(c)); /* road's default: see config.c */
    TU_OK(road_config_set_task_type(c, "CAUSAL_LM"));
    TU_OK(road_config_set_targets_from_string(c, "q_proj,v_proj"));
    TU_OK(road_config_set_peft_version(c, "0.20.1.dev0@UNKNOWN"));
    road_config_set_inference_mode(c, true);
    char *got = to_json(c);
    char *a = canonical_targets(got), *b = canonical_targets(want);
    assert_same_text("built from setters (targets sorted)", a, b);
    road_string_free(a);
    road_string_free(b);
    road_string_free(got);

    /* With the names in PEFT's (arbitrary) order the bytes are identical. */
    const char *names[] = {"v_proj", "q_proj"};
    TU_OK(road_config_set_target_list(c, names, 2));
    got = to_json(c);
    assert_same_text("built from setters", got, want);
    road_string_free(got);
    road_config_free(c);
    road__free(want);
}

static void test_defaults(void **state) {
    (void)state;
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    char *got = to_json(c);
    assert_same_text("default config", got,
                     "{\n"
                     "  \"auto_mapping\": null,\n"
                     "  \"base_model_name_or_path\": null,\n"
                     "  \"group_size\": 64,\n"
                     "  \"inference_mode\": false,\n"
                     "  \"init_weights\": true,\n"
                     "  \"modules_to_save\": null,\n"
                     "  \"peft_type\": \"ROAD\",\n"
                     "  \"peft_version\": null,\n"
                     "  \"revision\": null,\n"
                     "  \"target_modules\": null,\n"
                     "  \"task_type\": null,\n"
                     "  \"variant\": \"road_1\"\n"
                     "}");
    road_string_free(got);
    road_config_free(c);

    /* Only peft_type given: PEFT's defaults fill the rest. */
    c = parse_ok("{\"peft_type\": \"ROAD\"}");
    assert_int_equal(road_config_variant(c), ROAD_VARIANT_1);
    assert_int_equal(road_config_group_size(c), 64);
    assert_true(road_config_init_weights(c));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_DEFAULT);
    assert_int_equal(road_config_target_count(c), 0);
    assert_false(road_config_inference_mode(c));
    road_config_free(c);
}

/* ---- unknown fields, escapes, numbers ----------------------------------------------------- */

static void test_unknown_fields_kept(void **state) {
    (void)state;
    const char *in =
        "{\"peft_type\":\"ROAD\",\"zeta\":{\"b\":[1,2.50,{\"x\":null}],\"a\":\"h\xc3\xa9llo "
        "\xe2\x98\x83 \xf0\x9f\x98\x80\"},\"alpha\":100.0,\"big\":12345678901234567890,"
        "\"neg0\":-0,\"tiny\":1E-5,\"empty_list\":[],\"empty_obj\":{},\"dup\":1,\"dup\":2,"
        "\"esc\":\"\\u00e9\\n\\/\",\"nan\":NaN,\"inf\":-Infinity,\"group_size\":2}";
    /* Written by hand from Python's rules: keys sorted, ensure_ascii escapes (surrogate pair
     * for U+1F600), 100.0 stays a float, 12345678901234567890 stays an exact int, -0 is the int
     * 0, 1E-5 is 1e-05, the last "dup" wins, NaN / -Infinity as Python writes them. */
    const char *want = "{\n"
                       "  \"alpha\": 100.0,\n"
                       "  \"auto_mapping\": null,\n"
                       "  \"base_model_name_or_path\": null,\n"
                       "  \"big\": 12345678901234567890,\n"
                       "  \"dup\": 2,\n"
                       "  \"empty_list\": [],\n"
                       "  \"empty_obj\": {},\n"
                       "  \"esc\": \"\\u00e9\\n/\",\n"
                       "  \"group_size\": 2,\n"
                       "  \"inf\": -Infinity,\n"
                       "  \"inference_mode\": false,\n"
                       "  \"init_weights\": true,\n"
                       "  \"modules_to_save\": null,\n"
                       "  \"nan\": NaN,\n"
                       "  \"neg0\": 0,\n"
                       "  \"peft_type\": \"ROAD\",\n"
                       "  \"peft_version\": null,\n"
                       "  \"revision\": null,\n"
                       "  \"target_modules\": null,\n"
                       "  \"task_type\": null,\n"
                       "  \"tiny\": 1e-05,\n"
                       "  \"variant\": \"road_1\",\n"
                       "  \"zeta\": {\n"
                       "    \"a\": \"h\\u00e9llo \\u2603 \\ud83d\\ude00\",\n"
                       "    \"b\": [\n"
                       "      1,\n"
                       "      2.5,\n"
                       "      {\n"
                       "        \"x\": null\n"
                       "      }\n"
                       "    ]\n"
                       "  }\n"
                       "}";
    assert_rewrites_to(in, want);
    /* The output is a fixed point. */
    assert_rewrites_to(want, want);

    /* Unknown fields survive clone and save / load too. */
    road_config *c = parse_ok(in), *d = NULL;
    TU_OK(road_config_clone(c, &d));
    char *s = to_json(d);
    assert_same_text("clone", s, want);
    road_string_free(s);
    road_config_free(c);
    road_config_free(d);
}

static void test_duplicate_known_key_last_wins(void **state) {
    (void)state;
    /* As Python's dict: the first (invalid) group_size is overridden. */
    road_config *c = parse_ok("{\"peft_type\":\"ROAD\",\"group_size\":7,\"group_size\":4,"
                              "\"variant\":\"road_2\"}");
    assert_int_equal(road_config_group_size(c), 4);
    assert_int_equal(road_config_variant(c), ROAD_VARIANT_2);
    road_config_free(c);
}

static void test_string_escapes(void **state) {
    (void)state;
    cJSON *s = cJSON_CreateString("\"\\\n\r\t\b\f\x01\x1f\x7f/ ~\xc3\xa9\xe2\x98\x83"
                                  "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
    char *out = dump_json(s);
    assert_same_text("escapes", out,
                     "\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f/ ~\\u00e9\\u2603"
                     "\\ud83d\\ude00\\udbff\\udfff\"");
    road__free(out);
    cJSON_Delete(s);

    /* Keys are escaped and sorted by code point ("Z" < "a" < "\u00e9" < "\U0001F600"). */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "\xf0\x9f\x98\x80", 4);
    cJSON_AddNumberToObject(o, "\xc3\xa9", 3);
    cJSON_AddNumberToObject(o, "a", 2);
    cJSON_AddNumberToObject(o, "Z", 1);
    out = dump_json(o);
    assert_same_text("key order", out,
                     "{\n  \"Z\": 1,\n  \"a\": 2,\n  \"\\u00e9\": 3,\n  \"\\ud83d\\ude00\": 4\n}");
    road__free(out);
    cJSON_Delete(o);

    /* Invalid UTF-8 cannot be written as Python would (Python strings are code points). */
    const char *bad[] = {"\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = cJSON_CreateString(bad[i]);
        out = (char *)0x1;
        TU_FAILS(road__json_dump(s, &out, NULL), ROAD_ERR_INVALID_ARG, "not valid UTF-8");
        assert_null(out);
        cJSON_Delete(s);
    }
}

static void check_repr(double v, const char *want) {
    char buf[ROAD_JSON_NUMBER_MAX];
    road__json_format_double(v, buf, sizeof buf);
    if (strcmp(buf, want) != 0) {
        print_error("repr(%.17g): got \"%s\", want \"%s\"\n", v, buf, want);
        fail();
    }
}

static void test_float_repr(void **state) {
    (void)state;
    /* Expected strings are Python's repr / json.dumps output. */
    check_repr(0.1, "0.1");
    check_repr(1e-05, "1e-05");
    check_repr(1e16, "1e+16");
    check_repr(123456789.123, "123456789.123");
    check_repr(-0.0, "-0.0");
    check_repr(0.0, "0.0");
    check_repr(5e-324, "5e-324");
    check_repr(100.0, "100.0");
    check_repr(1e15, "1000000000000000.0");
    check_repr(0.0001, "0.0001");
    check_repr(1.5, "1.5");
    check_repr(-2.5e-7, "-2.5e-07");
    check_repr(1.7976931348623157e308, "1.7976931348623157e+308");
    check_repr(2.2250738585072014e-308, "2.2250738585072014e-308");
    check_repr(0.30000000000000004, "0.30000000000000004");
    check_repr(9007199254740993.0, "9007199254740992.0");
    check_repr(123e300, "1.23e+302");
    /* A power of two (2^-1017) whose nearest 16-digit decimal does not read back but the one
     * above does: printf's nearest digits alone would give 17 digits here. */
    check_repr(0x1p-1017, "7.120236347223045e-307");
    check_repr(NAN, "NaN");
    check_repr(INFINITY, "Infinity");
    check_repr(-INFINITY, "-Infinity");

    /* Numbers built in C: integral within 2^53 print as ints (cJSON cannot tell 100 from
     * 100.0), others as floats; parsed numbers keep their int / float form. */
    cJSON *a = cJSON_CreateArray();
    const double vals[] = {100.0, -3.0, 0.1, -0.0, 1e16, 9007199254740992.0};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(vals[i]));
    char *out = dump_json(a);
    assert_same_text("C numbers", out,
                     "[\n  100,\n  -3,\n  0.1,\n  -0.0,\n  1e+16,\n  9007199254740992\n]");
    road__free(out);
    cJSON_Delete(a);

    const char *in =
        "[100, 100.0, 1e2, 1E+2, -0, -0.0, 0.10, 1e400, 123456789012345678901234567890]";
    TU_OK(road_json_parse(in, strlen(in), &a));
    out = dump_json(a);
    assert_same_text("parsed numbers", out,
                     "[\n  100,\n  100.0,\n  100.0,\n  100.0,\n  0,\n  -0.0,\n  0.1,\n"
                     "  Infinity,\n  123456789012345678901234567890\n]");
    road__free(out);
    /* A parsed number changed in C prints its new value, not the stale text. */
    cJSON_SetNumberValue(cJSON_GetArrayItem(a, 0), 7);
    out = dump_json(a);
    assert_non_null(strstr(out, "[\n  7,\n"));
    road__free(out);
    cJSON_Delete(a);
}

static void test_json_parser_strictness(void **state) {
    (void)state;
    /* What Python's json.loads refuses, road refuses, with the place and the reason. */
    static const struct {
        const char *text;
        const char *needle;
    } bad[] = {
        {"", "line 1, column 1: expected a value"},
        {"{", "expected a key"},
        {"{\"a\":1,}", "expected a key"},
        {"[1,]", "expected a value"},
        {"01", "extra text"},
        {"1.", "digit after the decimal point"},
        {"-", "digit after '-'"},
        {"1e", "digit in the exponent"},
        {"+1", "expected a value"},
        {".5", "expected a value"},
        {"tru", "expected a value"},
        {"[1] x", "line 1, column 5: extra text"},
        {"{\"a\" 1}", "expected ':'"},
        {"[1 2]", "expected ',' or ']'"},
        {"\"abc", "unterminated string"},
        {"\"a\\x\"", "invalid escape"},
        {"\"\\u12g4\"", "4 hex digits"},
        {"\"\\ud800\"", "surrogate"},
        {"\"\\udc00\\ud800\"", "surrogate"},
        {"\"\\u0000\"", "\\u0000"},
        {"\"a\nb\"", "control character"},
        {"\"\xff\"", "invalid UTF-8"},
        {"\"\xc0\xaf\"", "invalid UTF-8"},
        {"\xef\xbb\xbf{}", "byte order mark"},
        {"{}\x01", "extra text"},
        {"{\n  \"a\": [1,\n  }", "line 3, column 3"},
        {"nan", "expected a value"},
        {"[\"a\" \"b\"]", "expected ',' or ']'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *j = (cJSON *)0x1;
        road_status s = road_json_parse(bad[i].text, strlen(bad[i].text), &j);
        tu_check_fails(s, ROAD_ERR_FORMAT, bad[i].needle, bad[i].text, __FILE__, __LINE__);
        assert_null(j);
    }
    /* Nesting is bounded. */
    char deep[2 * ROAD_JSON_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i <= ROAD_JSON_MAX_DEPTH; i++) deep[n++] = '[';
    for (int i = 0; i <= ROAD_JSON_MAX_DEPTH; i++) deep[n++] = ']';
    cJSON *j = NULL;
    TU_FAILS(road_json_parse(deep, n, &j), ROAD_ERR_FORMAT, "nested deeper");
    TU_OK(road_json_parse(deep + 1, n - 2, &j));
    cJSON_Delete(j);
    /* Python 3.11+ refuses integers longer than 4300 digits; so does road. */
    char digits[4302];
    memset(digits, '7', sizeof digits);
    TU_FAILS(road_json_parse(digits, 4301, &j), ROAD_ERR_FORMAT,
             "an integer with 4301 digits; Python reads at most 4300");
    TU_OK(road_json_parse(digits, 4300, &j));
    cJSON_Delete(j);
    /* Whitespace Python allows, and a top-level scalar. */
    const char *ws = " \t\r\n[ 1 , \"\\/\" ]\n";
    TU_OK(road_json_parse(ws, strlen(ws), &j));
    cJSON_Delete(j);
    TU_OK(road_json_parse("5", 1, &j));
    cJSON_Delete(j);
}

static void test_json_getters(void **state) {
    (void)state;
    const char *in = "{\"i\":64,\"f\":64.5,\"s\":\"64\",\"b\":true,\"n\":null,\"big\":3000000000,"
                     "\"huge\":99999999999999999999,\"fi\":64.0,\"neg\":-9223372036854775808}";
    cJSON *j = NULL;
    TU_OK(road_json_parse(in, strlen(in), &j));
    int32_t v = 0;
    TU_OK(road__json_get_int(j, "i", &v));
    assert_int_equal(v, 64);
    TU_FAILS(road__json_get_int(j, "f", &v), ROAD_ERR_CONFIG, "f must be an integer, got 64.5");
    TU_FAILS(road__json_get_int(j, "s", &v), ROAD_ERR_CONFIG,
             "s must be an integer, got \"64\" (a string)");
    TU_FAILS(road__json_get_int(j, "b", &v), ROAD_ERR_CONFIG, "b must be an integer, got true");
    TU_FAILS(road__json_get_int(j, "n", &v), ROAD_ERR_CONFIG, "got null");
    TU_FAILS(road__json_get_int(j, "fi", &v), ROAD_ERR_CONFIG, "got 64.0");
    TU_FAILS(road__json_get_int(j, "big", &v), ROAD_ERR_CONFIG,
             "big must be an integer from -2147483648 to 2147483647, got 3000000000");
    TU_FAILS(road__json_get_int(j, "nope", &v), ROAD_ERR_NOT_FOUND, "nope is missing");
    assert_int_equal(v, 64);
    int64_t w = 0;
    TU_OK(road__json_get_i64(j, "big", &w));
    assert_int_equal(w, 3000000000LL);
    TU_OK(road__json_get_i64(j, "neg", &w));
    assert_true(w == INT64_MIN);
    TU_FAILS(road__json_get_i64(j, "huge", &w), ROAD_ERR_CONFIG, "got 99999999999999999999");
    double d = 0;
    TU_OK(road__json_get_double(j, "f", &d));
    assert_true(d == 64.5);
    TU_OK(road__json_get_double(j, "i", &d));
    TU_FAILS(road__json_get_double(j, "b", &d), ROAD_ERR_CONFIG, "b must be a number, got true");
    bool b = false;
    TU_OK(road__json_get_bool(j, "b", &b));
    assert_true(b);
    TU_FAILS(road__json_get_bool(j, "i", &b), ROAD_ERR_CONFIG, "must be true or false, got 64");
    const char *s = NULL;
    TU_OK(road__json_get_string(j, "s", false, &s));
    assert_string_equal(s, "64");
    TU_OK(road__json_get_string(j, "n", true, &s));
    assert_null(s);
    TU_FAILS(road__json_get_string(j, "n", false, &s), ROAD_ERR_CONFIG,
             "must be a string, got null");
    cJSON_Delete(j);
}

/* ---- invalid configs ---------------------------------------------------------------------- */

static void test_invalid_values(void **state) {
    (void)state;
    expect_refused("\"variant\": \"road_3\"", ROAD_ERR_CONFIG,
                   "variant must be \"road_1\", \"road_2\" or \"road_4\", got \"road_3\"");
    expect_refused("\"variant\": 1", ROAD_ERR_CONFIG, "variant must be a string");
    expect_refused("\"variant\": null", ROAD_ERR_CONFIG, "got null");
    expect_refused("\"group_size\": 0", ROAD_ERR_CONFIG,
                   "group_size must be a positive even number (elements are rotated in pairs), "
                   "got 0");
    expect_refused("\"group_size\": -2", ROAD_ERR_CONFIG, "positive even number");
    expect_refused("\"group_size\": 7", ROAD_ERR_CONFIG,
                   "group_size must be a positive even number (elements are rotated in pairs), "
                   "got 7");
    expect_refused("\"group_size\": 64.5", ROAD_ERR_CONFIG,
                   "group_size must be an integer, got 64.5");
    expect_refused("\"group_size\": 64.0", ROAD_ERR_CONFIG,
                   "group_size must be an integer, got 64.0");
    expect_refused("\"group_size\": \"64\"", ROAD_ERR_CONFIG,
                   "group_size must be an integer, got \"64\" (a string)");
    expect_refused("\"group_size\": true", ROAD_ERR_CONFIG,
                   "group_size must be an integer, got true");
    expect_refused("\"group_size\": 4294967296", ROAD_ERR_CONFIG, "at most 2147483646");
    expect_refused("\"group_size\": 99999999999999999999", ROAD_ERR_CONFIG,
                   "group_size must be a positive even number (elements are rotated in pairs) up "
                   "to 2147483646, got 99999999999999999999");
    expect_refused("\"init_weights\": \"yes\"", ROAD_ERR_CONFIG,
                   "init_weights must be true or false, got \"yes\" (a string)");
    expect_refused("\"init_weights\": 1", ROAD_ERR_CONFIG, "init_weights must be true or false");
    expect_refused("\"inference_mode\": null", ROAD_ERR_CONFIG, "inference_mode must be true");
    expect_refused("\"target_modules\": 5", ROAD_ERR_CONFIG,
                   "target_modules must be a list of module names, a regex string, "
                   "\"all-linear\" or null, got 5");
    expect_refused("\"target_modules\": {}", ROAD_ERR_CONFIG, "got an object");
    expect_refused("\"target_modules\": [1]", ROAD_ERR_CONFIG,
                   "target_modules[0] must be a module name (a string), got 1");
    expect_refused("\"target_modules\": [\"q\", null]", ROAD_ERR_CONFIG,
                   "target_modules[1] must be a module name (a string), got null");
    expect_refused("\"target_modules\": [\"\"]", ROAD_ERR_CONFIG,
                   "target_modules[0] is an empty string");
    expect_refused("\"target_modules\": \"(\"", ROAD_ERR_CONFIG,
                   "target_modules regex \"(\" does not compile: missing closing parenthesis "
                   "(at offset 1)");
    expect_refused("\"target_modules\": \"\"", ROAD_ERR_CONFIG, "must not be an empty string");
    expect_refused("\"modules_to_save\": \"lm_head\"", ROAD_ERR_CONFIG,
                   "modules_to_save must be a list of module names or null, got the string "
                   "\"lm_head\"; write it as [\"lm_head\"]");
    expect_refused("\"modules_to_save\": [\"\"]", ROAD_ERR_CONFIG,
                   "modules_to_save[0] is an empty");
    expect_refused("\"modules_to_save\": [true]", ROAD_ERR_CONFIG, "modules_to_save[0] must be");
    expect_refused("\"task_type\": 3", ROAD_ERR_CONFIG,
                   "task_type must be a string or null, got 3");
    expect_refused("\"base_model_name_or_path\": []", ROAD_ERR_CONFIG,
                   "base_model_name_or_path must be a string or null, got a list");
    expect_refused("\"revision\": false", ROAD_ERR_CONFIG, "revision must be a string or null");
    expect_refused("\"peft_version\": 0.18", ROAD_ERR_CONFIG,
                   "peft_version must be a string or "
                   "null, got 0.18");
    expect_refused("\"auto_mapping\": \"x\"", ROAD_ERR_CONFIG, "auto_mapping must be an object");
}

static void test_invalid_documents(void **state) {
    (void)state;
    road_config *c = NULL;
    const char *lora = "{\"peft_type\": \"LORA\", \"r\": 8}";
    TU_FAILS(road_config_parse(lora, strlen(lora), &c), ROAD_ERR_UNSUPPORTED,
             "this adapter is a LORA adapter (peft_type \"LORA\"); road reads RoAd adapters only "
             "(peft_type \"ROAD\")");
    const char *lower = "{\"peft_type\": \"road\"}";
    TU_FAILS(road_config_parse(lower, strlen(lower), &c), ROAD_ERR_UNSUPPORTED, "\"road\"");
    const char *none = "{\"variant\": \"road_1\", \"group_size\": 64}";
    TU_FAILS(road_config_parse(none, strlen(none), &c), ROAD_ERR_CONFIG, "peft_type is missing");
    const char *num = "{\"peft_type\": 5}";
    TU_FAILS(road_config_parse(num, strlen(num), &c), ROAD_ERR_CONFIG,
             "peft_type must be \"ROAD\", got 5");
    TU_FAILS(road_config_parse("[1, 2]", 6, &c), ROAD_ERR_CONFIG,
             "adapter_config.json must be a JSON object ({...}), got a list");
    TU_FAILS(road_config_parse("\"ROAD\"", 6, &c), ROAD_ERR_CONFIG, "got \"ROAD\" (a string)");
    TU_FAILS(road_config_parse("", 0, &c), ROAD_ERR_FORMAT, "expected a value");
    assert_null(c);

    /* Every proper prefix of a PEFT file is truncated JSON. */
    size_t len;
    char *full = read_golden(golden_dirs[2], &len);
    for (size_t n = 0; n < len; n++) {
        road_status s = road_config_parse(full, n, &c);
        if (s != ROAD_ERR_FORMAT) {
            print_error("prefix of %zu bytes: got %s (%s), want format\n", n, road_status_name(s),
                        road_last_error());
            road_config_free(c);
            fail();
        }
    }
    TU_FAILS(road_config_parse(full, len - 1, &c), ROAD_ERR_FORMAT,
             "line 17, column 1: expected ',' or '}'");
    road__free(full);

    TU_FAILS(road_config_parse(NULL, 1, &c), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_config_parse("{}", 2, NULL), ROAD_ERR_INVALID_ARG, NULL);
}

static void test_load_errors(void **state) {
    (void)state;
    road_config *c = NULL;
    char *dir = make_temp_dir();

    /* A folder without adapter_config.json. */
    TU_FAILS(road_config_load(dir, &c), ROAD_ERR_NOT_FOUND, "has no adapter_config.json");
    assert_null(c);

    /* A missing file. */
    char path[512];
    snprintf(path, sizeof path, "%s/missing.json", dir);
    TU_FAILS(road_config_load(path, &c), ROAD_ERR_IO, "missing.json");

    /* A file over 1 MB is refused before it is read, even if it is valid JSON. */
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("{\"peft_type\": \"ROAD\", \"pad\": \"", fp);
    for (int i = 0; i < (1 << 20); i++) fputc('x', fp);
    fputs("\"}", fp);
    fclose(fp);
    TU_FAILS(road_config_load(dir, &c), ROAD_ERR_FORMAT, "bytes, more than the 1048576");
    assert_null(c);

    /* A broken file: the message names it. */
    fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("{\"peft_type\": \"ROAD\", \"group_size\": 7}", fp);
    fclose(fp);
    TU_FAILS(road_config_load(dir, &c), ROAD_ERR_CONFIG, "adapter_config.json: group_size must");

    assert_int_equal(remove_dir(dir), 1);
    free(dir);
}

/* ---- targets and setters ------------------------------------------------------------------ */

static void test_targets(void **state) {
    (void)state;
    road_config *c = parse_ok("{\"peft_type\":\"ROAD\",\"target_modules\":[\"q\",\"v\",\"q\","
                              "\"k\",\"v\"]}");
    /* A set in PEFT: duplicates collapse, first occurrences keep their order. */
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_LIST);
    assert_int_equal(road_config_target_count(c), 3);
    assert_string_equal(road_config_target(c, 0), "q");
    assert_string_equal(road_config_target(c, 1), "v");
    assert_string_equal(road_config_target(c, 2), "k");
    road_config_free(c);

    /* An empty list is a valid PEFT config (it matches no layer). */
    c = parse_ok("{\"peft_type\":\"ROAD\",\"target_modules\":[]}");
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_LIST);
    assert_int_equal(road_config_target_count(c), 0);
    char *s = to_json(c);
    assert_non_null(strstr(s, "\"target_modules\": [],"));
    road_string_free(s);
    road_config_free(c);

    c = parse_ok("{\"peft_type\":\"ROAD\",\"target_modules\":\"All-Linear\"}");
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_ALL_LINEAR);
    assert_int_equal(road_config_target_count(c), 1);
    assert_string_equal(road_config_target(c, 0), "All-Linear"); /* written back as it was */
    road_config_free(c);

    c = parse_ok("{\"peft_type\":\"ROAD\",\"target_modules\":\".*\\\\.(q|v)_proj$\"}");
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_REGEX);
    assert_string_equal(road_config_target(c, 0), ".*\\.(q|v)_proj$");
    road_config_free(c);

    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_targets_from_string(c, "all-linear"));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_ALL_LINEAR);
    TU_OK(road_config_set_targets_from_string(c, " q_proj , v_proj,self_attn.o-proj "));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_LIST);
    assert_int_equal(road_config_target_count(c), 3);
    assert_string_equal(road_config_target(c, 0), "q_proj");
    assert_string_equal(road_config_target(c, 1), "v_proj");
    assert_string_equal(road_config_target(c, 2), "self_attn.o-proj");
    TU_OK(road_config_set_targets_from_string(c, "q_proj"));
    assert_int_equal(road_config_target_count(c), 1);
    TU_OK(road_config_set_targets_from_string(c, "model\\.layers\\.\\d+\\.(q|v)_proj"));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_REGEX);
    TU_FAILS(road_config_set_targets_from_string(c, "q_proj,,v_proj"), ROAD_ERR_CONFIG,
             "name 2 of 3 is empty");
    TU_FAILS(road_config_set_targets_from_string(c, "q_proj,"), ROAD_ERR_CONFIG, "is empty");
    TU_FAILS(road_config_set_targets_from_string(c, "q proj"), ROAD_ERR_CONFIG, "contains a space");
    TU_FAILS(road_config_set_targets_from_string(c, "  "), ROAD_ERR_CONFIG, "is empty");
    TU_FAILS(road_config_set_targets_from_string(c, "(q|v"), ROAD_ERR_CONFIG, "does not compile");
    TU_FAILS(road_config_set_targets_from_string(c, NULL), ROAD_ERR_INVALID_ARG, NULL);
    /* Failures leave the previous targets. */
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_REGEX);

    const char *dup[] = {"a", "b", "a"};
    TU_OK(road_config_set_target_list(c, dup, 3));
    assert_int_equal(road_config_target_count(c), 2);
    TU_OK(road_config_set_target_list(c, NULL, 0));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_LIST);
    assert_int_equal(road_config_target_count(c), 0);
    const char *empty[] = {"a", ""};
    TU_FAILS(road_config_set_target_list(c, empty, 2), ROAD_ERR_CONFIG, "target_modules[1]");
    const char *bad_utf8[] = {"\xff"};
    TU_FAILS(road_config_set_target_list(c, bad_utf8, 1), ROAD_ERR_INVALID_ARG, "UTF-8");
    TU_FAILS(road_config_set_target_regex(c, "a)"), ROAD_ERR_CONFIG, "does not compile");
    TU_OK(road_config_set_target_regex(c, "ALL-linear"));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_ALL_LINEAR);
    TU_OK(road_config_set_target_all_linear(c));
    assert_string_equal(road_config_target(c, 0), "all-linear");
    road_config_set_target_default(c);
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_DEFAULT);
    assert_null(road_config_target(c, 0));
    road_config_free(c);
}

static void test_setters(void **state) {
    (void)state;
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_variant(c, ROAD_VARIANT_4));
    TU_FAILS(road_config_set_variant(c, (road_variant)3), ROAD_ERR_INVALID_ARG, "variant 3");
    assert_int_equal(road_config_variant(c), ROAD_VARIANT_4);
    TU_OK(road_config_set_group_size(c, 128));
    TU_FAILS(road_config_set_group_size(c, 7), ROAD_ERR_CONFIG, "positive even number");
    TU_FAILS(road_config_set_group_size(c, 0), ROAD_ERR_CONFIG, "positive even number");
    TU_FAILS(road_config_set_group_size(c, (int64_t)1 << 32), ROAD_ERR_CONFIG, "at most");
    assert_int_equal(road_config_group_size(c), 128);
    road_config_set_init_weights(c, false);
    const char *mts[] = {"lm_head", "score", "lm_head"};
    TU_OK(road_config_set_modules_to_save(c, mts, 3));
    assert_int_equal(road_config_modules_to_save_count(c), 3); /* a list, not a set, in PEFT */
    assert_string_equal(road_config_module_to_save(c, 1), "score");
    assert_null(road_config_module_to_save(c, 3));
    TU_OK(road_config_set_base_model(c, "meta-llama/Llama-3.2-1B"));
    TU_OK(road_config_set_revision(c, "main"));
    TU_FAILS(road_config_set_revision(c, "\xc3"), ROAD_ERR_INVALID_ARG, "revision is not valid");
    assert_string_equal(road_config_revision(c), "main");
    char *s = to_json(c);
    assert_same_text("setters", s,
                     "{\n"
                     "  \"auto_mapping\": null,\n"
                     "  \"base_model_name_or_path\": \"meta-llama/Llama-3.2-1B\",\n"
                     "  \"group_size\": 128,\n"
                     "  \"inference_mode\": false,\n"
                     "  \"init_weights\": false,\n"
                     "  \"modules_to_save\": [\n"
                     "    \"lm_head\",\n"
                     "    \"score\",\n"
                     "    \"lm_head\"\n"
                     "  ],\n"
                     "  \"peft_type\": \"ROAD\",\n"
                     "  \"peft_version\": null,\n"
                     "  \"revision\": \"main\",\n"
                     "  \"target_modules\": null,\n"
                     "  \"task_type\": null,\n"
                     "  \"variant\": \"road_4\"\n"
                     "}");
    /* The text reads back to the same config. */
    road_config *d = parse_ok(s);
    char *t = to_json(d);
    assert_same_text("reparse", t, s);
    road_string_free(t);
    road_string_free(s);
    road_config_free(d);

    TU_OK(road_config_set_modules_to_save(c, NULL, 0));
    assert_int_equal(road_config_modules_to_save_count(c), -1);
    TU_OK(road_config_set_modules_to_save(c, mts, 0));
    assert_int_equal(road_config_modules_to_save_count(c), 0);
    TU_OK(road_config_set_base_model(c, NULL));
    assert_null(road_config_base_model(c));
    TU_OK(road_config_set_task_type(c, "SEQ_CLS"));
    TU_OK(road_config_set_peft_version(c, NULL));
    road_config_free(c);
    road_config_free(NULL); /* a no-op */
}

/* ---- files -------------------------------------------------------------------------------- */

static void test_save_load(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    road_config *c = parse_ok("{\"peft_type\":\"ROAD\",\"variant\":\"road_2\",\"group_size\":32,"
                              "\"target_modules\":[\"q_proj\"],\"extra\":{\"k\":[1.5]}}");
    TU_OK(road_config_save(c, dir));
    road_config *d = NULL;
    TU_OK(road_config_load(dir, &d));
    char *a = to_json(c), *b = to_json(d);
    assert_same_text("save / load", b, a);
    road_string_free(b);
    road_config_free(d);

    /* The file holds exactly to_json's text (no trailing newline). */
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *data = NULL;
    size_t len = 0;
    TU_OK(road__file_read(path, 1 << 20, &data, &len));
    assert_int_equal(len, strlen(a));
    assert_memory_equal(data, a, len);
    road__free(data);
    road_string_free(a);

    /* Saving over the existing file replaces it and leaves no temporary file behind. */
    TU_OK(road_config_set_group_size(c, 16));
    TU_OK(road_config_save(c, dir));
    assert_int_equal(count_files(dir), 1);
    TU_OK(road_config_load(path, &d));
    assert_int_equal(road_config_group_size(d), 16);
    road_config_free(d);

    /* A folder that does not exist. */
    snprintf(path, sizeof path, "%s/no/such/folder", dir);
    TU_FAILS(road_config_save(c, path), ROAD_ERR_NOT_FOUND, "does not exist");
    assert_int_equal(remove_dir(dir), 1);
    free(dir);
    road_config_free(c);
}

/* ---- out of memory ------------------------------------------------------------------------ */

/* Runs op with the k-th road allocation failing, for k = 0, 1, ... until op succeeds: every
 * failure must be a clean ROAD_ERR_NO_MEMORY with nothing leaked. */
typedef road_status (*oom_op)(const void *arg);

static void oom_loop(const char *what, oom_op op, const void *arg) {
    int64_t start = road__alloc_live_bytes();
    for (int64_t k = 0;; k++) {
        road__alloc_fail_after(k);
        road_status s = op(arg);
        road__alloc_fail_after(-1);
        if (road__alloc_live_bytes() != start) {
            print_error("%s: failing allocation %lld leaks %lld bytes\n", what, (long long)k,
                        (long long)(road__alloc_live_bytes() - start));
            fail();
        }
        if (s == ROAD_OK) break;
        if (s != ROAD_ERR_NO_MEMORY) {
            print_error("%s: failing allocation %lld gave %s: %s\n", what, (long long)k,
                        road_status_name(s), road_last_error());
            fail();
        }
        if (k > 100000) fail_msg("%s never succeeds", what);
    }
}

static const char oom_json[] =
    "{\"peft_type\":\"ROAD\",\"variant\":\"road_4\",\"group_size\":8,\"target_modules\":"
    "[\"a\",\"b\",\"a\",\"c\"],\"modules_to_save\":[\"lm_head\"],\"task_type\":\"CAUSAL_LM\","
    "\"base_model_name_or_path\":\"m\",\"revision\":\"r\",\"peft_version\":\"0.18.0\","
    "\"auto_mapping\":{\"x\":1},\"u1\":[1,2.5,\"\\u00e9\"],\"u2\":{\"z\":null}}";

static road_status op_parse(const void *arg) {
    const char *json = arg;
    road_config *c = NULL;
    road_status s = road_config_parse(json, strlen(json), &c);
    road_config_free(c);
    return s;
}

static road_status op_parse_regex(const void *arg) {
    (void)arg;
    const char *json = "{\"peft_type\":\"ROAD\",\"target_modules\":\"model\\\\.(q|v)_proj\"}";
    return op_parse(json);
}

static road_status op_to_json(const void *arg) {
    char *s = NULL;
    road_status st = road_config_to_json(arg, &s);
    road_string_free(s);
    return st;
}

static road_status op_clone(const void *arg) {
    road_config *d = NULL;
    road_status s = road_config_clone(arg, &d);
    road_config_free(d);
    return s;
}

static road_status op_from_string(const void *arg) {
    road_config *c = NULL;
    road_status s = road_config_create(&c);
    if (s == ROAD_OK) s = road_config_set_targets_from_string(c, arg);
    road_config_free(c);
    return s;
}

static road_status op_load(const void *arg) {
    road_config *c = NULL;
    road_status s = road_config_load(arg, &c);
    road_config_free(c);
    return s;
}

static void test_out_of_memory(void **state) {
    (void)state;
    oom_loop("parse", op_parse, oom_json);
    oom_loop("parse regex", op_parse_regex, NULL);
    road_config *c = parse_ok(oom_json);
    oom_loop("to_json", op_to_json, c);
    oom_loop("clone", op_clone, c);
    oom_loop("targets from string", op_from_string, "q_proj, k_proj,v_proj");
    oom_loop("targets regex from string", op_from_string, "model\\.(q|v)_proj");
    road_config_free(c);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_fixture(golden_dirs[0]));
    oom_loop("load", op_load, dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_golden_round_trip, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_golden_values, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_build_causal_lm_from_scratch, setup_live,
                                        teardown_live),
        cmocka_unit_test_setup_teardown(test_defaults, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_unknown_fields_kept, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_duplicate_known_key_last_wins, setup_live,
                                        teardown_live),
        cmocka_unit_test_setup_teardown(test_string_escapes, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_float_repr, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_json_parser_strictness, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_json_getters, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_invalid_values, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_invalid_documents, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_load_errors, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_targets, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_setters, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_save_load, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup_live, teardown_live),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
