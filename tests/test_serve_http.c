/*
 * tests/test_serve_http.c - `road serve`'s HTTP server in-process (road_server on an ephemeral
 * loopback port) against raw requests from C sockets: the malformed and refused ones each get
 * their 4xx with an OpenAI-shaped error ({"error": {"message", "type", "param", "code"}}) and
 * the server keeps serving; a client that leaves mid-request cancels it; a full queue is 429;
 * SSE framing; drain. (The openai-client test is tests/serve/, run by the serve_node test.)
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve_common.h"
#include "testutil.h"

#define ADAPTERS ROAD_FIXTURES "/llama/tiny-llama/adapters"
#define KEY "test-key"

static serve_fixture fx;

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
    road_server_params p = road_server_default_params();
    const char *names[] = {"A", "B"}, *dirs[] = {ADAPTERS "/A", ADAPTERS "/B"};
    p.adapter_names = names;
    p.adapter_dirs = dirs;
    p.n_adapters = 2;
    p.served_model_name = "tiny";
    p.api_key = KEY;
    p.chat_template = "llama2";
    p.max_body_bytes = 4096;
    p.engine.max_batch = 1;
    p.engine.max_waiting = 1;
    p.engine.on_step = gate;
    return serve_fixture_start(&fx, &p);
}

static int teardown(void **state) {
    (void)state;
    serve_fixture_stop(&fx);
    return 0;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Send raw bytes to this file's server, read the whole reply (Connection: close); returns the
 * status code (0: none) and the body in out. */
static int exchange(const char *raw, size_t n, char *out, size_t cap) {
    return serve_exchange(fx.port, raw, n, out, cap);
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
    /* chunked bodies are refused: their framing errors would get libmicrohttpd's HTML */
    expect_error(exchange(req, (size_t)n, out, sizeof out), 411, out, "length_required");
    free(req);
    free(big);
    /* not HTTP at all: no crash, the server goes on */
    exchange("\x01\x02\x03 nonsense\r\n\r\n", 17, out, sizeof out);
    expect_healthy();
    /* health and metrics need no key */
    assert_int_equal(get("/health", out, sizeof out), 200);
    assert_int_equal(get("/metrics", out, sizeof out), 200);
    assert_non_null(strstr(out, "road_http_responses_total{code=\"401\"} 3"));
    assert_non_null(strstr(out, "road_http_responses_total{code=\"413\"} 1"));
    assert_non_null(strstr(out, "road_http_responses_total{code=\"411\"} 1"));
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

/* road_http_responses_total{code="499"}: clients that left before their reply. */
static int64_t count_499(char *out, size_t cap) {
    assert_int_equal(get("/metrics", out, cap), 200);
    const char *key = "road_http_responses_total{code=\"499\"} ";
    const char *p = strstr(out, key);
    assert_non_null(p);
    return strtoll(p + strlen(key), NULL, 10);
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
    int running = serve_dial(fx.port); /* occupies the one batch slot (held by the gate) */
    serve_send_all(running, req, strlen(req));
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&gate_mu);
        int w = gate_waiting;
        pthread_mutex_unlock(&gate_mu);
        if (w) break;
        sleep_ms(1);
    }
    int waiting = serve_dial(fx.port); /* the one waiting place */
    serve_send_all(waiting, req, strlen(req));
    int64_t nw = 0;
    for (int i = 0; i < 2000 && nw < 1; i++) {
        road_engine_load(road_server_engine(fx.srv), &nw, NULL);
        sleep_ms(1);
    }
    assert_int_equal(nw, 1);
    expect_error(post("/v1/completions", KEY, body, out, sizeof out), 429, out, "rate_limit_exceeded");
    /* both clients leave; the engine resumes and drops them. The connection threads notice
     * within WAIT_MS (100 ms) when the machine is idle, far later under load: wait until both
     * have cancelled (each counts a 499) before the engine may run on. */
    int64_t gone0 = count_499(out, sizeof out);
    close(running);
    close(waiting);
    for (int i = 0; i < 3000 && count_499(out, sizeof out) < gone0 + 2; i++) sleep_ms(10);
    assert_int_equal(count_499(out, sizeof out), gone0 + 2);
    gate_set(false);
    int64_t nr = 1;
    for (int i = 0; i < 5000 && (nw || nr); i++) {
        road_engine_load(road_server_engine(fx.srv), &nw, &nr);
        sleep_ms(1);
    }
    assert_int_equal(nw + nr, 0);
    assert_int_equal(get("/metrics", out, sizeof out), 200);
    assert_non_null(strstr(out, "road_requests_finished_total{reason=\"cancelled\"} 2"));
    expect_healthy();
}

/* Errors libmicrohttpd would have answered itself, with HTML: the door answers them first, in
 * the documented JSON shape. */
static void test_http_level_errors(void **state) {
    (void)state;
    char out[65536];
    size_t cap = 40000;
    char *req = tu_alloc(cap);
    /* 414: a request target past 8 KiB */
    int n = snprintf(req, cap, "GET /");
    memset(req + n, 'a', 9000);
    n += 9000;
    n += snprintf(req + n, cap - (size_t)n, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 414, out, NULL);
    /* 431: headers past 16 KiB, and too many header lines */
    n = snprintf(req, cap, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ");
    memset(req + n, 'b', 20000);
    n += 20000;
    n += snprintf(req + n, cap - (size_t)n, "\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 431, out, NULL);
    n = snprintf(req, cap, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < 150; i++) n += snprintf(req + n, cap - (size_t)n, "X-H%d: 1\r\n", i);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 431, out, NULL);
    /* Content-Length: malformed, overflowing, two different values; with chunked */
    const char *bad_cl[] = {"12abc", "-5", "", "99999999999999999999999"};
    for (int i = 0; i < 4; i++) {
        n = snprintf(req, cap, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " KEY
                     "\r\nContent-Length: %s\r\n\r\n{}", bad_cl[i]);
        expect_error(exchange(req, (size_t)n, out, sizeof out), i == 3 ? 413 : 400, out, NULL);
    }
    n = snprintf(req, cap, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n"
                 "Content-Length: 3\r\n\r\n{}");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 400, out, NULL);
    n = snprintf(req, cap, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n{}");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 411, out, "length_required");
    /* a bad chunk size line: libmicrohttpd's HTML 400 before; refused at the head now */
    n = snprintf(req, cap, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 411, out, "length_required");
    /* a head cut short by a half-close: answered, not left to the deadline */
    {
        int fd = serve_dial(fx.port);
        const char *part = "GET /health HTTP/1.1\r\nHost: x\r\n";
        serve_send_all(fd, part, strlen(part));
        shutdown(fd, SHUT_WR);
        expect_error(serve_read_reply(fd, out, sizeof out), 400, out, NULL);
    }
    /* versions and malformed request lines */
    n = snprintf(req, cap, "GET /health HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 505, out, NULL);
    n = snprintf(req, cap, "GET /health HTTP/1.1\r\nno colon here\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 400, out, NULL);
    n = snprintf(req, cap, "HELLO\r\n\r\n");
    expect_error(exchange(req, (size_t)n, out, sizeof out), 400, out, NULL);
    free(req);
    expect_healthy();
}

/* The Authorization scheme is case-insensitive (RFC 9110 11.1). */
static void test_bearer_any_case(void **state) {
    (void)state;
    const char *schemes[] = {"bearer", "BEARER", "Bearer  "};
    const char *body = "{\"model\":\"A\",\"prompt\":\"Hi\",\"max_tokens\":1}";
    for (int i = 0; i < 3; i++) {
        char req[1024], out[65536];
        int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: %s "
                         KEY "\r\nContent-Length: %zu\r\n\r\n%s", schemes[i], strlen(body), body);
        int code = exchange(req, (size_t)n, out, sizeof out);
        if (code != 200) fail_msg("'%s': HTTP %d %s", schemes[i], code, out);
    }
}

/* A FIFO as an adapter's weights: refused at once with the path named; the server goes on. */
static void test_load_fifo(void **state) {
    (void)state;
    char tmp[] = "/tmp/road_fifo_http_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char cmd[512], fifo[256], body[512], out[65536];
    snprintf(cmd, sizeof cmd, "cp '%s/C/adapter_config.json' '%s/'", ADAPTERS, tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(fifo, sizeof fifo, "%s/adapter_model.safetensors", tmp);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(body, sizeof body, "{\"lora_name\": \"F\", \"lora_path\": \"%s\"}", tmp);
    expect_error(post("/v1/load_lora_adapter", KEY, body, out, sizeof out), 400, out, NULL);
    assert_non_null(strstr(out, "FIFO"));
    expect_healthy();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    assert_int_equal(system(cmd), 0);
}

/* ---- slow clients (issue 13): a server of its own with small limits ------------------------------ */

#define SLOW_MAX_CONN 32
#define SLOW_PER_CLIENT 4
#define SLOW_CLIENTS 40      /* more than SLOW_MAX_CONN: the old server was full with these */
#define SLOW_GIVE_UP_S 20.0  /* a liveness bound, far above the 1 s deadline: not a timing */

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A connection to port from 127.0.0.<host> (all of 127/8 is loopback on Linux). */
static int dial_from(int to_port, int host) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)host);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    a.sin_port = htons((uint16_t)to_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Status of the reply waiting on fd (0: none yet or closed without one); -1: closed. */
static int poll_reply(int fd, char *out, size_t cap) {
    ssize_t k = recv(fd, out, cap - 1, MSG_DONTWAIT);
    if (k == 0) return -1;
    if (k < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    out[k] = '\0';
    int code = serve_reply_split(out);
    return code ? code : -1;
}

static int health_on(int to_port, char *out, size_t cap) {
    int fd = dial_from(to_port, 1);
    const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    serve_send_all(fd, req, strlen(req));
    return serve_read_reply(fd, out, cap);
}

static void test_slow_clients(void **state) {
    (void)state;
    road_server_params p = road_server_default_params();
    p.model_dir = fx.dir;
    p.port = 0;
    p.max_connections = SLOW_MAX_CONN;
    p.max_connections_per_client = SLOW_PER_CLIENT;
    p.request_timeout_s = 1;
    road_server *s2 = NULL;
    TU_OK(road_server_create(&p, &s2));
    TU_OK(road_server_start(s2));
    int p2 = road_server_port(s2);
    char out[4096];
    /* heads that trickle in from SLOW_CLIENTS addresses, and one body that does */
    int slow[SLOW_CLIENTS + 1], code[SLOW_CLIENTS + 1];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        slow[i] = dial_from(p2, 10 + i);
        const char *part = "GET /health HTTP/1.1\r\nX-Slow: ";
        serve_send_all(slow[i], part, strlen(part));
        code[i] = 0;
    }
    slow[SLOW_CLIENTS] = dial_from(p2, 9);
    const char *head = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
    serve_send_all(slow[SLOW_CLIENTS], head, strlen(head));
    code[SLOW_CLIENTS] = 0;
    /* the per-address cap: SLOW_PER_CLIENT open from 127.0.0.5, the next one is refused */
    int mine[SLOW_PER_CLIENT];
    for (int i = 0; i < SLOW_PER_CLIENT; i++) {
        mine[i] = dial_from(p2, 5);
        serve_send_all(mine[i], "GET /", 5);
    }
    int extra = dial_from(p2, 5);
    int c = 0;
    for (double t0 = mono_s(); c == 0 && mono_s() - t0 < SLOW_GIVE_UP_S;) {
        c = poll_reply(extra, out, sizeof out);
        sleep_ms(10);
    }
    expect_error(c, 429, out, "too_many_connections");
    close(extra);
    for (int i = 0; i < SLOW_PER_CLIENT; i++) close(mine[i]);
    /* everyone else is still served while the slow ones hold on */
    assert_int_equal(health_on(p2, out, sizeof out), 200);
    /* trickle a byte each 100 ms: the deadline (1 s) still ends every slow request with a 408 */
    int open_left = SLOW_CLIENTS + 1;
    for (double t0 = mono_s(); open_left > 0 && mono_s() - t0 < SLOW_GIVE_UP_S;) {
        open_left = 0;
        for (int i = 0; i <= SLOW_CLIENTS; i++) {
            if (slow[i] < 0) continue;
            int r = poll_reply(slow[i], out, sizeof out);
            if (r != 0) {
                code[i] = r;
                if (r > 0) expect_error(r, 408, out, "request_timeout");
                close(slow[i]);
                slow[i] = -1;
                continue;
            }
            (void)!send(slow[i], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            open_left++;
        }
        sleep_ms(100);
    }
    if (open_left) fail_msg("%d slow connections still open after %.0f s", open_left, SLOW_GIVE_UP_S);
    int n408 = 0;
    for (int i = 0; i <= SLOW_CLIENTS; i++) n408 += code[i] == 408;
    assert_true(n408 >= SLOW_CLIENTS / 2); /* most get their 408 (the rest: closed after it) */
    assert_int_equal(health_on(p2, out, sizeof out), 200);
    road_server_free(s2);
}

static void test_drain(void **state) {
    (void)state;
    road_server_stop(fx.srv); /* nothing running: stops at once */
    char out[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)fx.port);
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
        cmocka_unit_test(test_http_level_errors),
        cmocka_unit_test(test_bearer_any_case),
        cmocka_unit_test(test_load_fifo),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_drain),
    };
    return cmocka_run_group_tests_name("serve_http", tests, setup, teardown);
}
