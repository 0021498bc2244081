/*
 * tests/test_jinja.c - the Jinja engine of chat templates (tokenizer/jinja.h).
 *
 *  - tests/fixtures/jinja/cases.json (tools/jinjaref/render_cases.py, rendered by Python's
 *    jinja2 configured as transformers configures it): every case renders byte for byte as
 *    jinja2 renders it, or fails where jinja2 fails, with the expected words in the message;
 *  - {% generation %} spans; strftime_now's clock (opts.now, SOURCE_DATE_EPOCH);
 *  - malformed templates and hostile ones (deep nesting, huge loops, runaway recursion, huge
 *    output) end in an error naming the problem, within the bounds of jinja.h;
 *  - out-of-memory at every allocation of parse and render leaks nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "tokenizer/jinja.h"
#include "testutil.h"

/* Render src with vars (JSON text or NULL); the status, *out (caller frees) set on success. */
static road_status render(const char *src, const char *vars_json, const road__jinja_opts *opts,
                          road__jinja_result *out) {
    road__jinja *t = NULL;
    road_status s = road__jinja_parse(src, strlen(src), &t);
    if (s != ROAD_OK) {
        assert_null(t);
        memset(out, 0, sizeof *out);
        return s;
    }
    cJSON *vars = NULL;
    if (vars_json) TU_OK(road_json_parse(vars_json, strlen(vars_json), &vars));
    s = road__jinja_render(t, vars, opts, out);
    cJSON_Delete(vars);
    road__jinja_free(t);
    return s;
}

static void expect_text(const char *src, const char *vars, const char *want) {
    road__jinja_result res;
    road_status s = render(src, vars, NULL, &res);
    if (s != ROAD_OK) fail_msg("template %s failed: %s", src, road_last_error());
    if (strcmp(res.text, want) != 0)
        fail_msg("template %s\n  got  [%s]\n  want [%s]", src, res.text, want);
    road__jinja_result_free(&res);
}

static void expect_error(const char *src, const char *vars, const road__jinja_opts *opts,
                         const char *needle) {
    road__jinja_result res;
    road_status s = render(src, vars, opts, &res);
    if (s == ROAD_OK)
        fail_msg("template %.80s rendered [%.80s], expected an error with \"%s\"", src, res.text,
                 needle);
    assert_null(res.text);
    if (strstr(road_last_error(), needle) == NULL)
        fail_msg("template %.80s: message \"%s\" lacks \"%s\"", src, road_last_error(), needle);
}

/* The fixture through road's own JSON parser, which keeps numbers' text (9007199254740993 stays
 * an exact int), as the callers of the engine read messages. */
static cJSON *load_cases(void) {
    FILE *fp = fopen(tu_fixture("jinja/cases.json"), "rb");
    assert_non_null(fp);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_true(n > 0 && n < sizeof buf);
    cJSON *doc = NULL;
    TU_OK(road_json_parse(buf, n, &doc));
    return doc;
}

static void test_reference_cases(void **state) {
    (void)state;
    cJSON *doc = load_cases();
    road__jinja_opts opts = {0};
    opts.now = (int64_t)cJSON_GetObjectItem(doc, "now")->valuedouble;
    int n = 0, failed = 0;
    int64_t live = road__alloc_live_bytes();
    for (const cJSON *c = cJSON_GetObjectItem(doc, "cases")->child; c; c = c->next, n++) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *src = cJSON_GetObjectItem(c, "template")->valuestring;
        const cJSON *expect = cJSON_GetObjectItem(c, "expect"),
                    *error = cJSON_GetObjectItem(c, "error");
        road__jinja *t = NULL;
        road__jinja_result res = {0};
        road_status s = road__jinja_parse(src, strlen(src), &t);
        if (s == ROAD_OK) s = road__jinja_render(t, cJSON_GetObjectItem(c, "vars"), &opts, &res);
        road__jinja_free(t);
        if (expect) {
            const char *want = expect->valuestring;
            size_t want_len = strlen(want);
            if (s != ROAD_OK) {
                printf("FAIL %s: %s\n", name, road_last_error());
                failed++;
            } else if (res.len != want_len || memcmp(res.text, want, want_len) != 0) {
                printf("FAIL %s:\n  got  [%s]\n  want [%s]\n", name, res.text, want);
                failed++;
            }
        } else if (s == ROAD_OK) {
            printf("FAIL %s: rendered [%s], jinja2 refuses it\n", name, res.text);
            failed++;
        } else if (strstr(road_last_error(), error->valuestring) == NULL) {
            printf("FAIL %s: message \"%s\" lacks \"%s\"\n", name, road_last_error(),
                   error->valuestring);
            failed++;
        }
        road__jinja_result_free(&res);
    }
    printf("%d reference cases, %d failed\n", n, failed);
    cJSON_Delete(doc);
    assert_int_equal(road__alloc_live_bytes(), live);
    assert_int_equal(failed, 0);
    assert_true(n >= 100);
}

static void test_generation_spans(void **state) {
    (void)state;
    const char *src =
        "{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' %}{% generation %}"
        "{{ m.content }}</s>{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}";
    road__jinja_result res;
    TU_OK(render(
        src,
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":"
        "\"yo\"},{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]"
        "}",
        NULL, &res));
    assert_string_equal(res.text, "<user>hi<assistant>yo</s><user>q<assistant>a</s>");
    assert_int_equal(res.n_spans, 2);
    assert_int_equal(res.spans[0].begin, 19);
    assert_int_equal(res.spans[0].end, 25);
    assert_memory_equal(res.text + res.spans[1].begin, "a</s>", 5);
    assert_int_equal(res.spans[1].end, res.len);
    road__jinja_result_free(&res);
    /* inside a captured block: not recorded */
    TU_OK(render("{% set x %}{% generation %}a{% endgeneration %}{% endset %}{{ x }}", NULL, NULL,
                 &res));
    assert_string_equal(res.text, "a");
    assert_int_equal(res.n_spans, 0);
    assert_null(res.spans);
    road__jinja_result_free(&res);
}

static void test_clock(void **state) {
    (void)state;
    road__jinja_opts opts = {0};
    opts.now = 86400 * 365; /* 1971-01-01 */
    road__jinja_result res;
    TU_OK(render("{{ strftime_now('%d %B %Y') }}", NULL, &opts, &res));
    assert_string_equal(res.text, "01 January 1971");
    road__jinja_result_free(&res);
    setenv("SOURCE_DATE_EPOCH", "0", 1);
    opts.now = ROAD_JINJA_NOW_AUTO;
    TU_OK(render("{{ strftime_now('%Y-%m-%d') }}", NULL, &opts, &res));
    assert_string_equal(res.text, "1970-01-01");
    road__jinja_result_free(&res);
    TU_OK(render("{{ strftime_now('%Y') }}", NULL, NULL, &res));
    assert_string_equal(res.text, "1970");
    road__jinja_result_free(&res);
    unsetenv("SOURCE_DATE_EPOCH");
}

static void test_small_semantics(void **state) {
    (void)state;
    /* a program renders many times, with different variables */
    road__jinja *t = NULL;
    TU_OK(road__jinja_parse("{{ a }}-{{ b | default(1) }}", 28, &t));
    for (int i = 0; i < 3; i++) {
        char vars[64];
        snprintf(vars, sizeof vars, "{\"a\": %d}", i);
        cJSON *v = cJSON_Parse(vars);
        road__jinja_result res;
        TU_OK(road__jinja_render(t, v, NULL, &res));
        char want[16];
        snprintf(want, sizeof want, "%d-1", i);
        assert_string_equal(res.text, want);
        road__jinja_result_free(&res);
        cJSON_Delete(v);
    }
    road__jinja_free(t);
    road__jinja_free(NULL);
    expect_text("", NULL, "");
    expect_text("{{ x }}", "{\"x\": 1.0}", "1.0");
    expect_text("{{ x }}", "{\"x\": 100}", "100");
    expect_text("{{ {'a': {'b': 1}} }}", NULL, "{'a': {'b': 1}}");
    expect_text("{% if x %}a{% endif %}", "{\"x\": []}", "");
    expect_text("{{ 'a' if x is defined else 'b' }}", NULL, "b");
}

static void test_malformed(void **state) {
    (void)state;
    static const struct {
        const char *src, *needle;
    } cases[] = {
        {"{% if %}", "expected an expression"},
        {"{% for in xs %}{% endfor %}", "expected 'in'"},
        {"{% for x xs %}{% endfor %}", "expected 'in'"},
        {"{% if x %}{% else %}{% else %}{% endif %}", "unknown statement 'else'"},
        {"{% endfor %}", "endfor"},
        {"{% include 'x' %}", "not supported"},
        {"{% extends 'x' %}", "not supported"},
        {"{% for x in y recursive %}{% endfor %}", "recursive"},
        {"{{ }}", "expected an expression"},
        {"{{ (1, }}", "unbalanced"},
        {"{{ [1, 2 }}", "unbalanced"},
        {"{{ 1 ) }}", "unbalanced"},
        {"{{ a[1:2:3:4] }}", "expected"},
        {"{{ 'a' | }}", "expected a name"},
        {"{{ x is }}", "expected a name"},
        {"{{ @ }}", "unexpected character"},
        {"{{ '\\x4' }}", "escape"},
        {"{{ 99999999999999999999 }}", "64 bits"},
        {"{% macro m( %}{% endmacro %}", "expected"},
        {"{% set %}", "expected a name"},
        {"{% raw %}abc", "endraw"},
        {"line1\nline2 {{ 1 + }}", "line 2"},
        {"{% set x = 1 %}{% set ns.y = 2 %}", "ns"},
    };
    int64_t live = road__alloc_live_bytes();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_error(cases[i].src, NULL, NULL, cases[i].needle);
    /* bytes that are not a template at all */
    const char junk[] = "{{\0\xff\xfe}}{%\x01%}";
    road__jinja *t = NULL;
    assert_int_not_equal(road__jinja_parse(junk, sizeof junk, &t), ROAD_OK);
    assert_null(t);
    assert_int_equal(road__alloc_live_bytes(), live);
}

static void test_bounds(void **state) {
    (void)state;
    int64_t live = road__alloc_live_bytes();
    /* nesting: parentheses, blocks, filters */
    size_t n = 5000;
    char *deep = malloc(2 * n + 16);
    memset(deep, '(', n);
    strcpy(deep + n, "1");
    memset(deep + n + 1, ')', n);
    deep[2 * n + 1] = '\0';
    char *src = malloc(2 * n + 32);
    sprintf(src, "{{ %s }}", deep);
    expect_error(src, NULL, NULL, "nesting deeper");
    free(src);
    free(deep);
    char *ifs = malloc(n * 10 + 1);
    for (size_t i = 0; i < n; i++) memcpy(ifs + 10 * i, "{% if 1 %}", 10);
    ifs[10 * n] = '\0';
    expect_error(ifs, NULL, NULL, "nesting deeper");
    free(ifs);
    /* huge loops end on the step bound */
    road__jinja_opts opts = {0};
    opts.now = 0;
    opts.max_steps = 100000;
    expect_error("{% for i in range(1000000000000) %}{% endfor %}", NULL, &opts, "steps");
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                 NULL, &opts, "steps");
    /* runaway recursion */
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL,
                 "macro calls nest deeper");
    /* output and memory */
    opts.max_steps = 0;
    opts.max_output = 1 << 20;
    expect_error("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", NULL, &opts,
                 "rendered text passes");
    expect_error("{{ 'x' * 100000000 }}", NULL, &opts, "too long");
    opts.max_output = 0;
    opts.max_memory = 8 << 20;
    expect_error("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s "
                 "%}{% endfor %}",
                 NULL, &opts, "memory");
    assert_int_equal(road__alloc_live_bytes(), live);
}

static void test_oom(void **state) {
    (void)state;
    const char *src =
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% generation %}{{ m.content | upper }}{% endgeneration %}{% endfor %}{{ ns.n }}";
    cJSON *vars = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    int64_t live = road__alloc_live_bytes();
    bool done = false;
    for (int64_t k = 0; k < 100 && !done; k++) {
        road__jinja *t = NULL;
        road__jinja_result res = {0};
        road__alloc_fail_after(k);
        road_status s = road__jinja_parse(src, strlen(src), &t);
        if (s == ROAD_OK) s = road__jinja_render(t, vars, NULL, &res);
        road__alloc_fail_after(-1);
        if (s == ROAD_OK) {
            assert_string_equal(res.text, "HI1");
            done = true;
        } else {
            assert_int_equal(s, ROAD_ERR_NO_MEMORY);
            assert_null(res.text);
        }
        road__jinja_result_free(&res);
        road__jinja_free(t);
        assert_int_equal(road__alloc_live_bytes(), live);
    }
    assert_true(done);
    cJSON_Delete(vars);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_cases),
        cmocka_unit_test(test_generation_spans),
        cmocka_unit_test(test_clock),
        cmocka_unit_test(test_small_semantics),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
