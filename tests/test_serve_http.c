/*
 * tests/test_serve_http.c - `road serve`'s HTTP server in-process (road_server on an ephemeral
 * loopback port) against raw requests from C sockets: the malformed and refused ones each get
 * their 4xx with an OpenAI-shaped error ({"error": {"message", "type", "param", "code"}}) and
 * the server keeps serving; a client that leaves mid-request cancels it; a full queue is 429;
 * SSE framing; drain. (The openai-client test is tests/serve/, run by the serve_node test.)
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define ADAPTERS ROAD_FIXTURES "/llama/tiny-llama/adapters"
#define KEY "test-key"

static char dir[64];
static road_server *srv;
static int port;

/* The step hook can hold the engine (to fill its queue deterministically). */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_closed;
static int gate_waiting;

static void gate(const road_engine_step_info *info, void *user) {
    (void)info;
    (void)user;
    pthread_mutex_lock(&gate_mu);
    gate_waiting++;
    while (gate_closed) pthread_cond_wait(&gate_cv, &gate_mu);
    gate_waiting--;
    pthread_mutex_unlock(&gate_mu);
}

static void gate_set(bool closed) {
    pthread_mutex_lock(&gate_mu);
    gate_closed = closed;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
}

static int setup(void **state) {
    (void)state;
    tu_make_text_model(dir, sizeof dir);
    road_server_params p = road_server_default_params();
    const char *names[] = {"A", "B"}, *dirs[] = {ADAPTERS "/A", ADAPTERS "/B"};
    p.model_dir = dir;
    p.adapter_names = names;
    p.adapter_dirs = dirs;
    p.n_adapters = 2;
    p.served_model_name = "tiny";
    p.port = 0;
    p.api_key = KEY;
    p.chat_template = ROAD_CHAT_LLAMA2;
    p.max_body_bytes = 4096;
    p.engine.max_batch = 1;
    p.engine.max_waiting = 1;
    p.engine.on_step = gate;
    if (road_server_create(&p, &srv) != ROAD_OK || road_server_start(srv) != ROAD_OK) {
        fprintf(stderr, "server: %s\n", road_last_error());
        return -1;
    }
    port = road_server_port(srv);
    return port > 0 ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    road_server_free(srv);
    tu_rm_rf(dir);
    return 0;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) return; /* the server may close early (oversize bodies) */
        s += k;
        n -= (size_t)k;
    }
}

/* Send raw bytes, read the whole reply (Connection: close); returns the status code (0: none)
 * and the body in out. */
static int exchange(const char *raw, size_t n, char *out, size_t cap) {
    int fd = dial();
    send_all(fd, raw, n);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < cap && (k = recv(fd, out + got, cap - 1 - got, 0)) > 0) got += (size_t)k;
    out[got] = '\0';
    close(fd);
    int code = 0;
    if (sscanf(out, "HTTP/1.%*d %d", &code) != 1) return 0;
    char *body = strstr(out, "\r\n\r\n");
    if (body) memmove(out, body + 4, strlen(body + 4) + 1);
    return code;
}

static int post(const char *path, const char *key, const char *body, char *out, size_t cap) {
    size_t n = strlen(body) + 512;
    char *req = tu_alloc(n);
    snprintf(req, n, "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%sContent-Type: "
             "application/json\r\nContent-Length: %zu\r\n\r\n%s", path, key ? "Authorization: Bearer " : "",
             key ? key : "", key ? "\r\n" : "", strlen(body), body);
    int code = exchange(req, strlen(req), out, cap);
    free(req);
    return code;
}

static int get(const char *path, char *out, size_t cap) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
             "Bearer " KEY "\r\n\r\n", path);
    return exchange(req, strlen(req), out, cap);
}

/* The body is an OpenAI error; returns its code (or "") and checks the shape. */
static void expect_error(int got, int want, const char *body, const char *code) {
    if (got != want) fail_msg("HTTP %d, expected %d: %s", got, want, body);
    cJSON *o = cJSON_Parse(body);
    if (!o) fail_msg("not JSON: %s", body);
    cJSON *e = cJSON_GetObjectItem(o, "error");
    assert_non_null(e);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "type")));
    assert_non_null(cJSON_GetObjectItem(e, "param"));
    cJSON *c = cJSON_GetObjectItem(e, "code");
    assert_non_null(c);
    if (code) {
        if (!cJSON_IsString(c) || strcmp(c->valuestring, code) != 0) fail_msg("code: %s", body);
    }
    cJSON_Delete(o);
}

static void expect_healthy(void) {
    char out[65536];
    int code = post("/v1/completions", KEY, "{\"model\":\"A\",\"prompt\":\"Hi\",\"max_tokens\":3}", out, sizeof out);
    if (code != 200) fail_msg("server not serving: %d %s", code, out);
    cJSON *o = cJSON_Parse(out);
    assert_non_null(o);
    cJSON *u = cJSON_GetObjectItem(o, "usage");
    assert_int_equal(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 3);
    cJSON_Delete(o);
}

static void test_malformed(void **state) {
    (void)state;
    char out[65536];
    expect_error(post("/v1/completions", KEY, "{\"prompt\": ", out, sizeof out), 400, out, NULL);
    expect_error(post("/v1/completions", KEY, "\xff\xfe garbage", out, sizeof out), 400, out, NULL);
    expect_error(post("/v1/completions", KEY, "", out, sizeof out), 400, out, NULL);
    expect_error(post("/v1/chat/completions", KEY, "{\"messages\": \"hi\"}", out, sizeof out), 400, out, NULL);
    expect_error(post("/v1/completions", KEY, "{\"model\": \"nope\", \"prompt\": \"x\"}", out, sizeof out), 404,
                 out, "model_not_found");
    expect_error(post("/v1/completions", KEY, "{\"prompt\": \"x\", \"temperature\": -1}", out, sizeof out), 400,
                 out, NULL);
    expect_error(post("/v1/completions", KEY, "{\"prompt\": \"x\", \"max_tokens\": 500}", out, sizeof out), 400,
                 out, "context_length_exceeded");
    char long_prompt[2048];
    memset(long_prompt, 'a', 200);
    long_prompt[200] = '\0';
    char body[4096];
    snprintf(body, sizeof body, "{\"prompt\": \"%.200s\"}", long_prompt);
    expect_error(post("/v1/completions", KEY, body, out, sizeof out), 400, out, "context_length_exceeded");
    expect_error(post("/v1/completions", KEY, "{\"prompt\": [1, 2, 99999]}", out, sizeof out), 400, out, NULL);
    /* API key */
    expect_error(post("/v1/completions", NULL, "{\"prompt\": \"x\"}", out, sizeof out), 401, out, "invalid_api_key");
    expect_error(post("/v1/completions", "wrong", "{\"prompt\": \"x\"}", out, sizeof out), 401, out, "invalid_api_key");
    expect_error(post("/v1/completions", KEY "x", "{\"prompt\": \"x\"}", out, sizeof out), 401, out, NULL);
    /* routes and methods */
    expect_error(get("/v1/nothing", out, sizeof out), 404, out, NULL);
    expect_error(get("/v1/completions", out, sizeof out), 405, out, NULL);
    /* oversize bodies: declared, and chunked */
    char *big = tu_alloc(8192 + 256);
    memset(big, 'x', 8192);
    big[8192] = '\0';
    expect_error(post("/v1/completions", KEY, big, out, sizeof out), 413, out, "body_too_large");
    char *req = tu_alloc(16384);
    int n = snprintf(req, 16384, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Bearer " KEY "\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 4; i++) n += snprintf(req + n, (size_t)(16384 - n), "800\r\n%.2048s\r\n", big);
    n += snprintf(req + n, (size_t)(16384 - n), "0\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 413, out, "body_too_large");
    free(req);
    free(big);
    /* not HTTP at all: no crash, the server goes on */
    exchange("\x01\x02\x03 nonsense\r\n\r\n", 17, out, sizeof out);
    expect_healthy();
    /* health and metrics need no key */
    assert_int_equal(get("/health", out, sizeof out), 200);
    assert_int_equal(get("/metrics", out, sizeof out), 200);
    assert_non_null(strstr(out, "road_http_responses_total{code=\"401\"} 3"));
    assert_non_null(strstr(out, "road_http_responses_total{code=\"413\"} 2"));
}

static void test_models_and_adapters(void **state) {
    (void)state;
    char out[65536];
    assert_int_equal(get("/v1/models", out, sizeof out), 200);
    cJSON *o = cJSON_Parse(out);
    cJSON *data = cJSON_GetObjectItem(o, "data");
    assert_int_equal(cJSON_GetArraySize(data), 3);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "id")->valuestring, "tiny");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 2), "id")->valuestring, "B");
    cJSON_Delete(o);
    expect_error(post("/v1/load_lora_adapter", KEY, "{\"lora_name\": \"C\", \"lora_path\": \"/nonexistent\"}",
                      out, sizeof out), 400, out, NULL);
    expect_error(post("/v1/load_lora_adapter", KEY, "{\"lora_name\": \"A\", \"lora_path\": \"" ADAPTERS "/C\"}",
                      out, sizeof out), 400, out, "adapter_exists");
    expect_error(post("/v1/load_lora_adapter", KEY, "{\"lora_path\": \"x\"}", out, sizeof out), 400, out, NULL);
    assert_int_equal(post("/v1/load_lora_adapter", KEY, "{\"lora_name\": \"C\", \"lora_path\": \"" ADAPTERS "/C\"}",
                          out, sizeof out), 200);
    assert_non_null(strstr(out, "Success"));
    int code = post("/v1/completions", KEY, "{\"model\":\"C\",\"prompt\":\"Hi\",\"max_tokens\":2}", out, sizeof out);
    assert_int_equal(code, 200);
    assert_int_equal(post("/v1/unload_lora_adapter", KEY, "{\"lora_name\": \"C\"}", out, sizeof out), 200);
    expect_error(post("/v1/unload_lora_adapter", KEY, "{\"lora_name\": \"C\"}", out, sizeof out), 404, out, NULL);
    expect_error(post("/v1/completions", KEY, "{\"model\":\"C\",\"prompt\":\"Hi\"}", out, sizeof out), 404, out,
                 "model_not_found");
    /* chat through the template, the base model by its served name */
    code = post("/v1/chat/completions", KEY, "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\","
                "\"content\":\"hi\"}],\"max_tokens\":4,\"temperature\":0}", out, sizeof out);
    assert_int_equal(code, 200);
    o = cJSON_Parse(out);
    assert_string_equal(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
    cJSON_Delete(o);
}

static void test_stream_framing(void **state) {
    (void)state;
    char out[65536];
    int code = post("/v1/completions", KEY, "{\"model\":\"B\",\"prompt\":\"Hi\",\"max_tokens\":5,\"stream\":true,"
                    "\"ignore_eos\":true,\"stream_options\":{\"include_usage\":true}}", out, sizeof out);
    assert_int_equal(code, 200);
    /* chunked transfer encoding around the events: count the events and the end */
    int events = 0, finish = 0;
    for (const char *p = out; (p = strstr(p, "data: {")) != NULL; p++) events++;
    for (const char *p = out; (p = strstr(p, "\"finish_reason\":\"length\"")) != NULL; p++) finish++;
    assert_int_equal(finish, 1);
    assert_true(events >= 2 && events <= 7); /* token chunks + the usage chunk */
    assert_non_null(strstr(out, "\"completion_tokens\":5"));
    assert_non_null(strstr(out, "data: [DONE]"));
}

/* A client that leaves mid-request: the request is cancelled (it never runs to its end). */
static void test_client_leaves_and_queue_full(void **state) {
    (void)state;
    char out[65536];
    gate_set(true); /* the engine stops at its next step */
    const char *body = "{\"model\":\"A\",\"prompt\":\"Hi\",\"max_tokens\":100,\"ignore_eos\":true}";
    char req[1024];
    snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
             "\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    int running = dial(); /* occupies the one batch slot (held by the gate) */
    send_all(running, req, strlen(req));
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&gate_mu);
        int w = gate_waiting;
        pthread_mutex_unlock(&gate_mu);
        if (w) break;
        sleep_ms(1);
    }
    int waiting = dial(); /* the one waiting place */
    send_all(waiting, req, strlen(req));
    int64_t nw = 0;
    for (int i = 0; i < 2000 && nw < 1; i++) {
        road_engine_load(road_server_engine(srv), &nw, NULL);
        sleep_ms(1);
    }
    assert_int_equal(nw, 1);
    expect_error(post("/v1/completions", KEY, body, out, sizeof out), 429, out, "rate_limit_exceeded");
    /* both clients leave; the engine resumes and drops them */
    close(running);
    close(waiting);
    sleep_ms(300); /* connection threads notice within WAIT_MS (100 ms) */
    gate_set(false);
    int64_t nr = 1;
    for (int i = 0; i < 5000 && (nw || nr); i++) {
        road_engine_load(road_server_engine(srv), &nw, &nr);
        sleep_ms(1);
    }
    assert_int_equal(nw + nr, 0);
    assert_int_equal(get("/metrics", out, sizeof out), 200);
    assert_non_null(strstr(out, "road_requests_finished_total{reason=\"cancelled\"} 2"));
    expect_healthy();
}

static void test_drain(void **state) {
    (void)state;
    road_server_stop(srv); /* nothing running: stops at once */
    char out[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0); /* no longer listening */
    close(fd);
    (void)out;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_models_and_adapters),
        cmocka_unit_test(test_stream_framing),
        cmocka_unit_test(test_client_leaves_and_queue_full),
        cmocka_unit_test(test_drain),
    };
    return cmocka_run_group_tests_name("serve_http", tests, setup, teardown);
}
