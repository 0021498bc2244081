/*
 * tests/test_serve_api.c - what serve/api.c lets in and what it writes out, with the strings and
 * numbers a hostile client sends:
 *   - \u0000 (or a raw NUL) in any string of a body (prompt, message content, text parts, stop,
 *     model, lora_name) is a 400 whose `param` is the string's path, never a string cut short;
 *     text after the object and raw control characters are 400s too, every one the OpenAI
 *     error shape;
 *   - sampling values are checked as the sampler holds them: every value the API accepts,
 *     road_sampler_create accepts (a top_p that rounds to 0 as a float is refused by name);
 *     vLLM's sampling fields road does not have are refused unless neutral;
 *   - replies and stream chunks keep generated text whole, a NUL written as \u0000;
 *   - over HTTP (an in-process server on the tiny text model, serve_common.h): the same 400s
 *     with their param, and a token-id prompt outside the vocabulary named as `prompt`.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "io/json.h"
#include "serve/api.h"
#include "serve_common.h"
#include "testutil.h"

/* The error body road__api_error_json writes, read back with road's strict parser: the OpenAI shape
 * {"error": {"message", "type", "param", "code"}} with param as given. */
static void check_error_shape(const char *body, size_t len, const char *param) {
    cJSON *o = NULL;
    if (road_json_parse(body, len, &o) != ROAD_OK) fail_msg("not strict JSON: %s", body);
    const cJSON *e = road__json_get(o, "error");
    assert_true(cJSON_IsObject(e));
    assert_true(cJSON_IsString(road__json_get(e, "message")));
    assert_true(cJSON_IsString(road__json_get(e, "type")));
    const cJSON *p = road__json_get(e, "param"), *c = road__json_get(e, "code");
    assert_non_null(c);
    assert_true(cJSON_IsNull(c) || cJSON_IsString(c));
    if (param[0]) {
        if (!cJSON_IsString(p) || strcmp(p->valuestring, param) != 0)
            fail_msg("param in %s, expected \"%s\"", body, param);
    } else if (!cJSON_IsNull(p)) {
        fail_msg("param in %s, expected null", body);
    }
    cJSON_Delete(o);
}

/* road__api_parse_request on n bytes must refuse with 400, this param, a message holding needle. */
static void expect_bad_n(api_kind k, const char *body, size_t n, const char *param,
                         const char *needle) {
    api_request q;
    api_error err;
    if (road__api_parse_request(k, body, n, &q, &err)) {
        road__api_request_free(&q);
        fail_msg("accepted: %s", body);
    }
    if (err.http != 400) fail_msg("%s: HTTP %d", body, err.http);
    if (strcmp(err.param, param) != 0)
        fail_msg("%s: param '%s', expected '%s'", body, err.param, param);
    if (needle && !strstr(err.message, needle))
        fail_msg("%s: message '%s' lacks '%s'", body, err.message, needle);
    char *j = road__api_error_json(&err);
    assert_non_null(j);
    check_error_shape(j, strlen(j), param);
    free(j);
}

static void expect_bad(api_kind k, const char *body, const char *param, const char *needle) {
    expect_bad_n(k, body, strlen(body), param, needle);
}

static void test_strings_whole_or_refused(void **state) {
    (void)state;
    const char *nul = "holds \\u0000 (NUL)";
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"abc\\u0000def\", \"max_tokens\": 4}", "prompt",
               nul);
    expect_bad(API_COMPLETIONS, "{\"prompt\": [\"abc\\u0000\"]}", "prompt[0]", nul);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"a\", \"stop\": [\"x\", \"\\u0000\"]}", "stop[1]",
               nul);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"a\", \"stop\": \"\\u0000x\"}", "stop", nul);
    expect_bad(API_COMPLETIONS, "{\"model\": \"A\\u0000B\", \"prompt\": \"a\"}", "model", nul);
    expect_bad(API_CHAT,
               "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", "
               "\"content\": \"hi\\u0000there\"}]}",
               "messages[1].content", "the string at messages[1].content holds \\u0000");
    expect_bad(API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
               "\"a\"}, {\"type\": \"text\", \"text\": \"\\u0000\"}]}]}",
               "messages[0].content[1].text", nul);
    expect_bad(API_CHAT, "{\"messages\": [{\"role\": \"us\\u0000er\", \"content\": \"x\"}]}",
               "messages[0].role", nul);
    /* a raw NUL byte: invalid JSON, still named */
    const char raw[] = "{\"prompt\": \"ab\0cd\"}";
    expect_bad_n(API_COMPLETIONS, raw, sizeof raw - 1, "prompt", "raw NUL byte");
    /* the load endpoint's body too */
    char *name = NULL, *path = NULL;
    api_error err;
    const char *lora = "{\"lora_name\": \"a\\u0000b\", \"lora_path\": \"/x\"}";
    assert_false(road__api_parse_lora(lora, strlen(lora), true, &name, &path, &err));
    assert_int_equal(err.http, 400);
    assert_string_equal(err.param, "lora_name");
    assert_null(name);
    /* a duplicate key: the last one wins, as in Python (cJSON_GetObjectItem took the first) */
    api_request q;
    const char *dup =
        "{\"prompt\": \"first\", \"prompt\": \"second\", \"max_tokens\": 1, \"max_tokens\": 2}";
    assert_true(road__api_parse_request(API_COMPLETIONS, dup, strlen(dup), &q, &err));
    assert_string_equal(q.prompt, "second");
    assert_int_equal(q.max_tokens, 2);
    road__api_request_free(&q);
}

static void test_invalid_json(void **state) {
    (void)state;
    /* cJSON_ParseWithLength took each of these as a valid request */
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"hi\"} trailing", "",
               "not valid JSON at line 1, column 18: extra text");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"hi\"}{\"prompt\": \"2\"}", "", "extra text");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"hi\"}\x01", "", "extra text");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"a\tb\"}", "prompt",
               "control character in the string at prompt");
    expect_bad(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\nb\"}]}",
               "messages[0].content", "control character");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"\xc0\xaf\"}", "prompt", "invalid UTF-8");
    expect_bad(API_COMPLETIONS, "{\"prompt\": 01}", "", "not valid JSON");
    expect_bad(API_COMPLETIONS, "", "", "not valid JSON");
    /* still fine: whitespace after the object */
    api_request q;
    api_error err;
    const char *ok = "{\"prompt\": \"hi\"}\r\n\t ";
    assert_true(road__api_parse_request(API_COMPLETIONS, ok, strlen(ok), &q, &err));
    road__api_request_free(&q);
}

/* The body with one sampling field set to the JSON text v. */
static bool parse_with(const char *field, const char *v, api_request *q, api_error *err) {
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\": \"x\", \"%s\": %s}", field, v);
    return road__api_parse_request(API_COMPLETIONS, body, strlen(body), q, err);
}

static void test_sampling_mirrors_the_sampler(void **state) {
    (void)state;
    api_request q;
    api_error err;
    /* the case: a top_p that is 0 as a float */
    assert_false(parse_with("top_p", "1e-50", &q, &err));
    assert_string_equal(err.param, "top_p");
    assert_non_null(strstr(err.message, "32-bit float"));
    /* Every value the API accepts must be one road_sampler_create accepts, with the request's
     * parameters mapped as serve/completions.c maps them. */
    const char *values[] = {
        "0",      "-0",           "-0.0",       "1e-50",     "1e-46",        "1.4e-45",
        "1e-45",  "1e-40",        "1e-38",      "1e-7",      "0.5",          "0.99999999",
        "1",      "1.0000000001", "1.00000006", "2",         "2.0000000001", "2.00000012",
        "3",      "-1",           "-2",         "1e9",       "1e10",         "2147483647",
        "-1e-50", "NaN",          "Infinity",   "-Infinity", "1e308",        "true",
        "\"1\"",  "null"};
    const char *fields[] = {
        "temperature",        "top_p", "top_k", "presence_penalty", "frequency_penalty",
        "repetition_penalty", "min_p"};
    int accepted = 0;
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
        for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
            if (!parse_with(fields[f], values[i], &q, &err)) {
                if (err.http != 400 || strcmp(err.param, fields[f]) != 0)
                    fail_msg("%s = %s: HTTP %d, param '%s'", fields[f], values[i], err.http,
                             err.param);
                continue;
            }
            accepted++;
            road_sampler_params sp = road_sampler_default_params();
            sp.temperature = q.temperature;
            sp.top_p = q.top_p;
            sp.top_k = q.top_k < 0 ? 0 : q.top_k;
            sp.presence_penalty = q.presence_penalty;
            sp.frequency_penalty = q.frequency_penalty;
            sp.repetition_penalty = q.repetition_penalty;
            sp.min_p = q.min_p;
            road_sampler *s = NULL;
            if (road_sampler_create(&sp, 4, &s) != ROAD_OK)
                fail_msg("%s = %s passes the API but the sampler refuses it: %s", fields[f],
                         values[i], road_last_error());
            road_sampler_free(s);
            road__api_request_free(&q);
        }
    assert_true(accepted > 30);
    /* the ranges: OpenAI's [-2, 2] for presence / frequency, vLLM's > 0 for repetition */
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"presence_penalty\": 2.5}",
               "presence_penalty", "[-2, 2]");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"repetition_penalty\": 0}",
               "repetition_penalty", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"min_p\": 1.5}", "min_p", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"min_tokens\": -1}", "min_tokens", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"min_tokens\": 1.5}", "min_tokens", NULL);
    /* logit_bias: {"id": bias} */
    assert_true(parse_with("logit_bias", "{\"5\": -100, \"17\": 2.5}", &q, &err));
    assert_int_equal(q.n_logit_bias, 2);
    assert_int_equal(q.logit_bias[0].id, 5);
    assert_true(q.logit_bias[0].bias == -100.0f);
    assert_int_equal(q.logit_bias[1].id, 17);
    assert_true(q.logit_bias[1].bias == 2.5f);
    road__api_request_free(&q);
    assert_true(parse_with("logit_bias", "{}", &q, &err));
    assert_int_equal(q.n_logit_bias, 0);
    road__api_request_free(&q);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": [1]}", "logit_bias", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"a\": 1}}", "logit_bias",
               "token ids");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"-1\": 1}}", "logit_bias",
               "token ids");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"3\": 101}}", "logit_bias",
               "-100 to 100");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"logit_bias\": {\"3\": \"1\"}}", "logit_bias",
               NULL);
}

/* The string value at "key": "..." in json, decoded by hand (cJSON would stop at \u0000):
 * returns its byte length and copies it to out. */
static size_t raw_string_after(const char *json, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (!p) fail_msg("no %s in %s", key, json);
    p += strlen(pat);
    size_t k = 0;
    while (*p != '"' && k < cap) {
        if (p[0] == '\\' && p[1] == 'u') {
            unsigned v = 0;
            sscanf(p + 2, "%4x", &v);
            out[k++] = (char)v; /* ASCII only in these tests */
            p += 6;
        } else if (p[0] == '\\') {
            out[k++] = p[1] == 'n' ? '\n' : p[1];
            p += 2;
        } else {
            out[k++] = *p++;
        }
    }
    return k;
}

static void test_replies_keep_text_whole(void **state) {
    (void)state;
    const char text[] = "before\0after \"q\"\n";
    size_t n = sizeof text - 1;
    api_reply r = {API_CHAT, "chatcmpl-1", 5, "tiny", text, n, "stop", 4, 3};
    char got[64];
    char *j = road__api_reply_json(&r);
    assert_non_null(j);
    assert_non_null(strstr(j, "before\\u0000after"));
    assert_int_equal(raw_string_after(j, "content", got, sizeof got), n);
    assert_memory_equal(got, text, n);
    /* still well-formed JSON around it (cJSON reads the rest) */
    cJSON *o = cJSON_Parse(j);
    assert_non_null(o);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint,
                     7);
    cJSON_Delete(o);
    free(j);
    r.kind = API_COMPLETIONS;
    r.finish_reason = NULL;
    j = road__api_chunk_json(&r, false, false);
    assert_int_equal(raw_string_after(j, "text", got, sizeof got), n);
    assert_memory_equal(got, text, n);
    free(j);
    r.kind = API_CHAT;
    j = road__api_chunk_json(&r, true, false);
    assert_int_equal(raw_string_after(j, "content", got, sizeof got), n);
    assert_non_null(strstr(j, "\"role\":\"assistant\""));
    free(j);
    /* bytes that are not UTF-8 (a cut character) come out as U+FFFD, the JSON stays valid */
    r.text = "ok\xe2\x82";
    r.text_len = 4;
    j = road__api_reply_json(&r);
    cJSON *v = NULL;
    TU_OK(road_json_parse(j, strlen(j), &v));
    cJSON_Delete(v);
    assert_non_null(strstr(j, "ok\\ufffd\\ufffd"));
    free(j);
}

/* ---- over HTTP ------------------------------------------------------------------------------ */

static serve_fixture fx;

static int setup_server(void **state) {
    (void)state;
    road_server_params p = road_server_default_params();
    p.served_model_name = "tiny";
    p.chat_template = "llama2";
    p.engine.max_batch = 2;
    return serve_fixture_start(&fx, &p);
}

static int teardown_server(void **state) {
    (void)state;
    serve_fixture_stop(&fx);
    return 0;
}

/* POST n bytes of body; returns the status, the body in out. */
static int post_n(const char *path, const char *body, size_t n, char *out, size_t cap) {
    int fd = serve_dial(fx.port);
    char head[256];
    int h = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, n);
    assert_int_equal(send(fd, head, (size_t)h, MSG_NOSIGNAL), h);
    assert_int_equal(send(fd, body, n, MSG_NOSIGNAL), (ssize_t)n);
    return serve_read_reply(fd, out, cap);
}

static void expect_http_400(const char *path, const char *body, size_t n, const char *param,
                            const char *needle) {
    char out[8192];
    int code = post_n(path, body, n, out, sizeof out);
    if (code != 400) fail_msg("%s: HTTP %d %s", body, code, out);
    check_error_shape(out, strlen(out), param);
    if (!strstr(out, needle)) fail_msg("%s: reply %s lacks %s", body, out, needle);
}

static void test_http(void **state) {
    (void)state;
    const char *nul = "{\"prompt\": \"Hi\\u0000 there\", \"max_tokens\": 2}";
    expect_http_400("/v1/completions", nul, strlen(nul), "prompt", "holds \\\\u0000 (NUL)");
    const char *chat = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000\"}]}";
    expect_http_400("/v1/chat/completions", chat, strlen(chat), "messages[0].content", "NUL");
    const char *trail = "{\"prompt\": \"Hi\", \"max_tokens\": 2} {}";
    expect_http_400("/v1/completions", trail, strlen(trail), "", "extra text after the JSON value");
    const char raw[] = "{\"prompt\": \"H\x01i\"}";
    expect_http_400("/v1/completions", raw, sizeof raw - 1, "prompt", "control character");
    const char *top_p = "{\"prompt\": \"Hi\", \"top_p\": 1e-50}";
    expect_http_400("/v1/completions", top_p, strlen(top_p), "top_p", "32-bit float");
    /* a token id past the vocabulary (260) is refused naming the prompt, not with param null */
    const char *ids = "{\"prompt\": [1, 2, 99999], \"max_tokens\": 1}";
    expect_http_400("/v1/completions", ids, strlen(ids), "prompt", "99999");
    /* and the server serves */
    char out[8192];
    const char *ok = "{\"prompt\": \"Hi\", \"max_tokens\": 2, \"temperature\": 0}";
    int code = post_n("/v1/completions", ok, strlen(ok), out, sizeof out);
    if (code != 200) fail_msg("HTTP %d %s", code, out);
}

/* ---- the chat template's arguments over HTTP ---------------------------------------------- */

/* A template that shows what it got: n times "x" (server default 5 from --chat-kwargs, a
 * request's chat_template_kwargs over it), the contents, the number of tools and documents,
 * the generation prompt; it raises for more than three messages. */
static const char CHAT_TEMPLATE[] =
    "{% if messages | length > 3 %}{{ raise_exception('at most three messages') }}{% endif %}"
    "{{ 'x' * n }}|{% for m in messages %}{{ m.content }};{% endfor %}"
    "{% if tools %}tools={{ tools | length }}{% endif %}"
    "{% if documents %}docs={{ documents | length }}{% endif %}"
    "{% if add_generation_prompt %}>{% endif %}";
static char chat_template_path[64];

static int setup_chat_server(void **state) {
    (void)state;
    snprintf(chat_template_path, sizeof chat_template_path, "/tmp/road_serve_api_%d.jinja",
             (int)getpid());
    FILE *f = fopen(chat_template_path, "w");
    if (!f || fputs(CHAT_TEMPLATE, f) < 0 || fclose(f) != 0) return -1;
    road_server_params p = road_server_default_params();
    p.served_model_name = "tiny";
    p.chat_template = chat_template_path;
    p.chat_template_kwargs = "{\"n\": 5}";
    return serve_fixture_start(&fx, &p);
}

static int teardown_chat_server(void **state) {
    unlink(chat_template_path);
    return teardown_server(state);
}

/* The prompt's token count of a chat request's reply (the request must succeed). */
static long prompt_tokens(const char *extra) {
    char body[1024], out[8192];
    snprintf(body, sizeof body,
             "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
             "\"max_tokens\": 1, \"temperature\": 0%s}",
             extra);
    int code = post_n("/v1/chat/completions", body, strlen(body), out, sizeof out);
    if (code != 200) fail_msg("%s: HTTP %d %s", body, code, out);
    cJSON *o = cJSON_Parse(out);
    long n =
        (long)cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "prompt_tokens")->valuedouble;
    cJSON_Delete(o);
    return n;
}

static void test_chat_template_args(void **state) {
    (void)state;
    const long base = prompt_tokens("");
    /* chat_template_kwargs reach the template and override the server's defaults */
    assert_true(prompt_tokens(", \"chat_template_kwargs\": {\"n\": 60}") > base);
    assert_int_equal(prompt_tokens(", \"chat_template_kwargs\": {\"n\": 5}"), base);
    /* tools and documents are passed through; add_generation_prompt false drops the ">" */
    const char *tools = ", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, "
                        "{\"type\": \"function\", \"function\": {\"name\": \"g\"}}]";
    assert_true(prompt_tokens(tools) > base);
    assert_true(prompt_tokens(", \"documents\": [{\"text\": \"d\"}]") > base);
    assert_true(prompt_tokens(", \"add_generation_prompt\": false") < base);
    /* continue_final_message: the last message left open */
    char out[8192];
    const char *cont = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                       "\"assistant\", \"content\": \"The\"}], \"max_tokens\": 1, "
                       "\"add_generation_prompt\": false, \"continue_final_message\": true}";
    int code = post_n("/v1/chat/completions", cont, strlen(cont), out, sizeof out);
    if (code != 200) fail_msg("HTTP %d %s", code, out);
    /* the template's raise_exception is a 400 carrying its message */
    const char *four =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", "
        "\"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}, {\"role\": "
        "\"user\", \"content\": \"d\"}]}";
    expect_http_400("/v1/chat/completions", four, strlen(four), "messages",
                    "at most three messages");
    const char *reserved = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], "
                           "\"chat_template_kwargs\": {\"messages\": []}}";
    expect_http_400("/v1/chat/completions", reserved, strlen(reserved), "messages", "cannot set");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings_whole_or_refused),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_sampling_mirrors_the_sampler),
        cmocka_unit_test(test_replies_keep_text_whole),
        cmocka_unit_test_setup_teardown(test_http, setup_server, teardown_server),
        cmocka_unit_test_setup_teardown(test_chat_template_args, setup_chat_server,
                                        teardown_chat_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
