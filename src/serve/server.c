/*
 * serve/server.c - `road serve`'s HTTP server (road/serve.h, docs/serve.md): the model, its
 * tokenizer and the engine; libmicrohttpd with a thread per connection behind the front door
 * (serve/door.c: listening, heads, connection limits, deadlines); routing, the API key,
 * request bodies within a size limit, and the small endpoints (health, metrics, models,
 * adapter load/unload). Generation is serve/completions.c.
 *
 * Why a thread per connection: a connection thread may block (waiting for its request's tokens)
 * without stalling any other client, and a streamed reply is a content-reader callback that
 * simply waits for the engine's next token. The engine thread alone runs the model. A thread
 * is only given to a connection whose head is complete and sound (the door holds the others
 * in one epoll set), and every reply closes its connection, so each request passes the door.
 */
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "serve/door.h"
#include "serve/server_internal.h"

/* Defaults of road_server_params (docs/serve.md). */
#define SERVER_DEFAULT_MAX_BODY (1u << 20)  /* 1 MiB: ~250k tokens of text, far past any context */
#define SERVER_DEFAULT_MAX_CONNECTIONS 4096 /* within RLIMIT_NOFILE (checked at start) */
#define SERVER_DEFAULT_MAX_PER_CLIENT 256   /* one address: max-waiting's worth of requests */
#define SERVER_DEFAULT_REQUEST_TIMEOUT_S 60 /* accept -> whole request in: 1 MiB at 17 KiB/s */
#define SERVER_DEFAULT_MAX_TOKENS 16        /* OpenAI's default for completions */
#define SERVER_DISCARD_FACTOR 16            /* past 16x the limit, a refused body closes the connection */
#define SERVER_CONNECTION_TIMEOUT_S 600     /* a reply whose client reads nothing this long */
/* libmicrohttpd's per-connection memory (head, header records, read buffer): well above the
 * door's head limit (16 KiB), so libmicrohttpd never refuses a head itself (with HTML) */
#define SERVER_MHD_CONNECTION_MEMORY (64 * 1024)
/* libmicrohttpd's own connection cap, above the door's: it counts a closed connection until its
 * cleanup, a moment after the door has freed the slot */
#define SERVER_MHD_LIMIT_MARGIN 256

const int road__server_codes[SERVER_N_CODES] = {200, 400, 401, 403, 404, 405, 408, 411,
                                                413, 414, 429, 431, 499, 500, 503, 505};

road_server_params road_server_default_params(void) {
    road_server_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1";
    p.port = 8080;
    p.model = road_model_default_params();
    p.engine = road_engine_default_params();
    p.max_body_bytes = SERVER_DEFAULT_MAX_BODY;
    p.max_connections = SERVER_DEFAULT_MAX_CONNECTIONS;
    p.max_connections_per_client = SERVER_DEFAULT_MAX_PER_CLIENT;
    p.request_timeout_s = SERVER_DEFAULT_REQUEST_TIMEOUT_S;
    p.default_max_tokens = SERVER_DEFAULT_MAX_TOKENS;
    p.allow_adapter_loading = true;
    return p;
}

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

/* "models/llama-3.2-1b/" -> "llama-3.2-1b" */
static char *folder_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    char *o = malloc(n - b + 1);
    if (!o) return NULL;
    memcpy(o, dir + b, n - b);
    o[n - b] = '\0';
    return o;
}

road_status road_server_create(const road_server_params *p, road_server **out) {
    if (!p || !out || !p->model_dir)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_server_create: params, model_dir or out is NULL");
    *out = NULL;
    if (p->port < 0 || p->port > 65535)
        return road__error(ROAD_ERR_INVALID_ARG, "port must be from 0 to 65535, got %d", p->port);
    if (p->max_body_bytes < 64)
        return road__error(ROAD_ERR_INVALID_ARG, "max_body_bytes must be at least 64");
    if (p->n_adapters < 0 || (p->n_adapters && (!p->adapter_names || !p->adapter_dirs)))
        return road__error(ROAD_ERR_INVALID_ARG, "bad adapter list");
    if (p->max_connections < 1 || p->max_connections_per_client < 0)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "max_connections must be at least 1 and "
                           "max_connections_per_client at least 0 (0: no cap)");
    if (!(p->request_timeout_s > 0) || p->request_timeout_s > 86400)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "request_timeout_s must be from 0 to 86400 s, got %g",
                           p->request_timeout_s);
    for (int32_t i = 0; i < p->n_adapters; i++) {
        road_status ns = road_engine_check_adapter_name(p->adapter_names[i]);
        if (ns != ROAD_OK) return ns;
    }
    road_server *s = calloc(1, sizeof *s);
    if (!s) return ROAD_ERR_NO_MEMORY;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->p = *p;
    s->model_dir = dup_or_null(p->model_dir);
    s->served_name = p->served_model_name ? dup_or_null(p->served_model_name) : folder_name(p->model_dir);
    s->host = dup_or_null(p->host ? p->host : "127.0.0.1");
    s->api_key = dup_or_null(p->api_key);
    road_status st = ROAD_OK;
    if (!s->model_dir || !s->served_name || !s->host || (p->api_key && !s->api_key)) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK && (!s->served_name[0] || strcmp(s->served_name, ROAD_BASE_NAME) == 0))
        st = road__error(ROAD_ERR_INVALID_ARG, "the served model name must not be empty or %s",
                         ROAD_BASE_NAME);
    if (st == ROAD_OK) st = road_model_load(p->model_dir, &p->model, &s->m);
    if (st == ROAD_OK) {
        road_status ts = road_tokenizer_load(p->model_dir, &s->tok);
        if (ts == ROAD_ERR_NOT_FOUND || ts == ROAD_ERR_IO) {
            s->tok = NULL; /* ids only */
            snprintf(s->tmpl_err, sizeof s->tmpl_err, "the model folder has no tokenizer.json");
        } else if (ts != ROAD_OK) {
            st = ts;
            road__error_prefix("loading the tokenizer");
        }
    }
    if (st == ROAD_OK && !s->tok && (p->chat_template || p->chat_template_kwargs))
        st = road__error(ROAD_ERR_INVALID_ARG, "a chat template needs the model's tokenizer.json, "
                                               "and the model folder has none");
    if (st == ROAD_OK && p->chat_template_kwargs) {
        st = road_json_parse(p->chat_template_kwargs, strlen(p->chat_template_kwargs), &s->chat_kwargs);
        if (st == ROAD_OK && !cJSON_IsObject(s->chat_kwargs))
            st = road__error(ROAD_ERR_INVALID_ARG, "must be a JSON object, e.g. {\"enable_thinking\": false}");
        if (st != ROAD_OK) road__error_prefix("chat template kwargs");
    }
    if (st == ROAD_OK && s->tok && p->chat_template)
        st = road_tokenizer_set_chat_template(s->tok, p->chat_template);
    if (st == ROAD_OK && s->tok) {
        if (road_tokenizer_chat_template(s->tok, NULL) == ROAD_OK) {
            s->has_template = true;
        } else {
            snprintf(s->tmpl_err, sizeof s->tmpl_err,
                     "chat needs a chat template and the model has none road can run (%.300s)",
                     road_last_error());
            road_clear_error();
        }
    }
    road_adapter_set *set = st == ROAD_OK ? road_model_adapters(s->m) : NULL;
    for (int32_t i = 0; st == ROAD_OK && i < p->n_adapters; i++) {
        if (strcmp(p->adapter_names[i], s->served_name) == 0) {
            st = road__error(ROAD_ERR_INVALID_ARG, "adapter name '%s' is the base model's name",
                             p->adapter_names[i]);
            break;
        }
        st = road_adapter_set_load(set, p->adapter_names[i], p->adapter_dirs[i]);
        if (st != ROAD_OK)
            road__error_prefix("adapter '%s' (%s)", p->adapter_names[i], p->adapter_dirs[i]);
    }
    if (st == ROAD_OK) st = road_adapter_set_set_active(set, NULL, 0);
    if (st == ROAD_OK) {
        road_engine_params ep = p->engine;
        ep.tokenizer = s->tok;
        st = road_engine_create(s->m, &ep, &s->e);
    }
    if (st == ROAD_OK) { /* as the engine settles it: 0 or too large -> the model's context */
        const road_llm_config *cfg = road_model_config(s->m);
        if (s->p.engine.max_seq_len <= 0 || s->p.engine.max_seq_len > road_llm_config_max_tokens(cfg))
            s->p.engine.max_seq_len = road_llm_config_max_tokens(cfg);
    }
    if (st != ROAD_OK) {
        road_server_free(s);
        return st;
    }
    *out = s;
    return ROAD_OK;
}

void road_server_free(road_server *s) {
    if (!s) return;
    road_server_stop(s);
    road_engine_free(s->e);
    road_tokenizer_free(s->tok);
    cJSON_Delete(s->chat_kwargs);
    road_model_free(s->m);
    free(s->model_dir);
    free(s->served_name);
    free(s->host);
    free(s->api_key);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

road_engine *road_server_engine(road_server *s) { return s ? s->e : NULL; }
int road_server_port(const road_server *s) { return s ? s->port : 0; }

/* ---- replies ---------------------------------------------------------------------------------- */

void road__server_count(road_server *s, int code) {
    int k = SERVER_N_CODES;
    for (int i = 0; i < SERVER_N_CODES; i++)
        if (road__server_codes[i] == code) k = i;
    pthread_mutex_lock(&s->mu);
    s->responses[k]++;
    pthread_mutex_unlock(&s->mu);
}

uint64_t road__server_next_id(road_server *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t id = ++s->next_id;
    pthread_mutex_unlock(&s->mu);
    return id;
}

enum MHD_Result road__server_send(road_server *s, struct MHD_Connection *c, int code,
                                  const char *type, const char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Connection", "close"); /* the next request passes the door */
    enum MHD_Result ret = MHD_queue_response(c, (unsigned int)code, r);
    MHD_destroy_response(r);
    road__server_count(s, code);
    return ret;
}

enum MHD_Result road__server_send_error(road_server *s, struct MHD_Connection *c,
                                        const api_error *err) {
    char *j = road__api_error_json(err);
    if (!j) return MHD_NO;
    road__log(err->http >= 500 ? ROAD_LOG_WARN : ROAD_LOG_INFO, "road serve: %d %s", err->http,
              err->message);
    enum MHD_Result r = road__server_send(s, c, err->http, "application/json", j, strlen(j));
    free(j);
    return r;
}

bool road__server_client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return true;
    char ch;
    return (p.revents & POLLIN) && recv(fd, &ch, 1, MSG_PEEK) == 0;
}

/* ---- small endpoints -------------------------------------------------------------------------- */

typedef struct models_ctx {
    cJSON *data;
    const char *base;
    long long created;
} models_ctx;

static void add_model(cJSON *data, const char *id, const char *parent, long long created) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "owned_by", "road");
    cJSON_AddStringToObject(o, "root", parent ? parent : id);
    if (parent) cJSON_AddStringToObject(o, "parent", parent);
    else cJSON_AddNullToObject(o, "parent");
    cJSON_AddItemToArray(data, o);
}

static void add_adapter_model(const char *name, void *user) {
    models_ctx *m = user;
    add_model(m->data, name, m->base, m->created);
}

static enum MHD_Result send_models(road_server *s, struct MHD_Connection *c) {
    cJSON *root = cJSON_CreateObject();
    cJSON *data = root ? cJSON_AddArrayToObject(root, "data") : NULL;
    if (!data) {
        cJSON_Delete(root);
        return MHD_NO;
    }
    cJSON_AddStringToObject(root, "object", "list");
    add_model(data, s->served_name, NULL, s->created);
    models_ctx m = {data, s->served_name, s->created};
    road_engine_foreach_adapter(s->e, add_adapter_model, &m);
    char *j = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!j) return MHD_NO;
    enum MHD_Result r = road__server_send(s, c, 200, "application/json", j, strlen(j));
    free(j);
    return r;
}

static enum MHD_Result send_metrics(road_server *s, struct MHD_Connection *c) {
    char *text = NULL;
    if (road_engine_metrics(s->e, &text) != ROAD_OK) return MHD_NO;
    size_t n = strlen(text), cap = n + 2048;
    char *all = malloc(cap);
    if (!all) {
        road_string_free(text);
        return MHD_NO;
    }
    memcpy(all, text, n);
    road_string_free(text);
    n += (size_t)snprintf(all + n, cap - n,
                          "# HELP road_http_responses_total HTTP replies by status code (499: the "
                          "client left before the reply).\n# TYPE road_http_responses_total counter\n");
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i <= SERVER_N_CODES && n < cap; i++) {
        char code[8];
        if (i < SERVER_N_CODES)
            snprintf(code, sizeof code, "%d", road__server_codes[i]);
        else snprintf(code, sizeof code, "other");
        n += (size_t)snprintf(all + n, cap - n, "road_http_responses_total{code=\"%s\"} %lld\n", code,
                              (long long)s->responses[i]);
    }
    pthread_mutex_unlock(&s->mu);
    enum MHD_Result r =
        road__server_send(s, c, 200, "text/plain; version=0.0.4", all, n < cap ? n : cap - 1);
    free(all);
    return r;
}

static enum MHD_Result lora(road_server *s, struct MHD_Connection *c, bool load, const char *body,
                            size_t len) {
    api_error err;
    char *name = NULL, *path = NULL;
    if (!s->p.allow_adapter_loading) {
        road__api_error_set(&err, 403, "invalid_request_error", NULL, NULL,
                            "adapter loading is disabled on this server");
        return road__server_send_error(s, c, &err);
    }
    if (!road__api_parse_lora(body, len, load, &name, &path, &err))
        return road__server_send_error(s, c, &err);
    road_status st;
    if (load && (strcmp(name, s->served_name) == 0 || strcmp(name, ROAD_BASE_NAME) == 0))
        st = road__error(ROAD_ERR_INVALID_ARG, "'%s' is the base model's name", name);
    else
        st = load ? road_engine_load_adapter(s->e, name, path) : road_engine_unload_adapter(s->e, name, true);
    enum MHD_Result r;
    if (st == ROAD_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "Success: LoRA adapter '%.255s' %s successfully.", name,
                 load ? "added" : "removed");
        road__log(ROAD_LOG_INFO, "road serve: %s", msg);
        r = road__server_send(s, c, 200, "text/plain; charset=utf-8", msg, strlen(msg));
    } else {
        int code = st == ROAD_ERR_NOT_FOUND && !load ? 404 : st == ROAD_ERR_NO_MEMORY ? 500 : 400;
        road__api_error_set(&err, code, code == 404 ? "not_found_error" : "invalid_request_error",
                            st == ROAD_ERR_EXISTS ? "adapter_exists" : NULL, "lora_name", "%s",
                            road_last_error());
        r = road__server_send_error(s, c, &err);
    }
    free(name);
    free(path);
    return r;
}

/* ---- routing ---------------------------------------------------------------------------------- */

typedef enum route {
    R_NONE, R_HEALTH, R_METRICS, R_MODELS, R_COMPLETIONS, R_CHAT, R_LOAD, R_UNLOAD
} route;

static const struct {
    const char *path;
    const char *method;
    route r;
} routes[] = {
    {"/health", "GET", R_HEALTH},
    {"/metrics", "GET", R_METRICS},
    {"/v1/models", "GET", R_MODELS},
    {"/v1/completions", "POST", R_COMPLETIONS},
    {"/v1/chat/completions", "POST", R_CHAT},
    {"/v1/load_lora_adapter", "POST", R_LOAD},
    {"/v1/unload_lora_adapter", "POST", R_UNLOAD},
};

/* A connection's request while its body arrives. */
typedef struct conn {
    route r;
    api_error err; /* err.http != 0: answer this once the body is in */
    bool answered; /* a reply is queued already */
    char *body;
    size_t len, cap, discarded;
} conn;

static bool key_ok(road_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    /* the scheme is case-insensitive (RFC 9110 11.1), then one or more spaces */
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return false;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t a = strlen(h), b = strlen(s->api_key);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)(h[i] ^ s->api_key[i % (b ? b : 1)]);
    return diff == 0; /* compared in full: no early exit on the first wrong byte */
}

static void classify(road_server *s, struct MHD_Connection *c, const char *url, const char *method,
                     conn *x) {
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        path_known = true;
        if (strcmp(method, routes[i].method) == 0) x->r = routes[i].r;
    }
    if (x->r == R_NONE) {
        if (path_known)
            road__api_error_set(&x->err, 405, "invalid_request_error", "method_not_allowed", NULL,
                                "%.10s is not allowed on %.100s", method, url);
        else
            road__api_error_set(&x->err, 404, "not_found_error", "not_found", NULL,
                                "no endpoint %.10s %.200s (see docs/serve.md)", method, url);
        return;
    }
    if (strncmp(url, "/v1/", 4) == 0 && !key_ok(s, c)) {
        road__api_error_set(&x->err, 401, "invalid_request_error", "invalid_api_key", NULL,
                            "Incorrect or missing API key: send 'Authorization: Bearer <key>'");
        return;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->p.max_body_bytes)
        road__api_error_set(&x->err, 413, "invalid_request_error", "body_too_large", NULL,
                            "the request body is larger than this server's limit of %zu bytes",
                            s->p.max_body_bytes);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    road_server *s = cls;
    conn *x = *con_cls;
    if (!x) {
        if (!(x = calloc(1, sizeof *x))) return MHD_NO;
        *con_cls = x;
        classify(s, c, url, method, x);
        /* refuse a declared oversize body before reading it (MHD then closes the connection) */
        if (x->err.http == 413) {
            x->answered = true;
            road__door_set_phase(c, DOOR_ANSWERED);
            return road__server_send_error(s, c, &x->err);
        }
        return MHD_YES;
    }
    if (x->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (x->err.http) { /* discard the body of a refused request, up to a point */
            x->discarded += n;
            return x->discarded > SERVER_DISCARD_FACTOR * s->p.max_body_bytes ? MHD_NO : MHD_YES;
        }
        if (x->len + n > s->p.max_body_bytes) {
            /* answered once the body is in: a reply sent while the client still writes is lost
             * to the reset that closing an unread socket causes */
            road__api_error_set(&x->err, 413, "invalid_request_error", "body_too_large", NULL,
                                "the request body is larger than this server's limit of %zu bytes",
                                s->p.max_body_bytes);
            free(x->body);
            x->body = NULL;
            x->len = x->cap = 0;
            x->discarded = n;
            return MHD_YES;
        }
        if (x->len + n + 1 > x->cap) {
            size_t nc = (x->len + n + 1) * 2;
            if (nc > s->p.max_body_bytes + 1) nc = s->p.max_body_bytes + 1;
            char *nb = realloc(x->body, nc);
            if (!nb) return MHD_NO;
            x->body = nb;
            x->cap = nc;
        }
        memcpy(x->body + x->len, upload, n);
        x->len += n;
        x->body[x->len] = '\0';
        return MHD_YES;
    }
    road__door_set_phase(c, DOOR_RECEIVED); /* the whole request is in: its deadline is met */
    if (x->err.http) return road__server_send_error(s, c, &x->err);
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    const char *body = x->body ? x->body : "";
    switch (x->r) {
    case R_HEALTH: {
        const char *b = draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}";
        return road__server_send(s, c, draining ? 503 : 200, "application/json", b, strlen(b));
    }
    case R_METRICS: return send_metrics(s, c);
    case R_MODELS: return send_models(s, c);
    case R_COMPLETIONS:
        return road__completions_generate(s, c, API_COMPLETIONS, body, x->len);
    case R_CHAT:
        return road__completions_generate(s, c, API_CHAT, body, x->len);
    case R_LOAD: return lora(s, c, true, body, x->len);
    case R_UNLOAD: return lora(s, c, false, body, x->len);
    default: return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    conn *x = *con_cls;
    if (!x) return;
    free(x->body);
    free(x);
    *con_cls = NULL;
}

/* libmicrohttpd hands its own printf-style format: declare it so, for -Wformat-nonliteral. */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = '\0';
    road__log(ROAD_LOG_WARN, "road serve (libmicrohttpd): %s", msg);
}

/* ---- life ------------------------------------------------------------------------------------ */

static void door_count(void *user, int code) {
    road__server_count(user, code);
}

road_status road_server_start(road_server *s) {
    if (!s) return road__error(ROAD_ERR_INVALID_ARG, "road_server_start: server is NULL");
    pthread_mutex_lock(&s->mu);
    bool started = s->started;
    pthread_mutex_unlock(&s->mu);
    if (started) return road__error(ROAD_ERR_STATE, "the server is already started");
    door_params dp = {s->host, s->p.port, s->p.max_connections, s->p.max_connections_per_client,
                      s->p.request_timeout_s, s->p.max_body_bytes, door_count, s};
    road_status st = road__door_open(&dp, &s->door, &s->port);
    if (st != ROAD_OK) return st;
    /* poll, not select: descriptors past FD_SETSIZE (1024) must work */
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_NO_LISTEN_SOCKET;
    unsigned int mhd_limit =
        (unsigned int)road__door_max_connections(s->door) + SERVER_MHD_LIMIT_MARGIN;
    if ((st = road_engine_start(s->e)) != ROAD_OK) {
        road__door_free(s->door);
        s->door = NULL;
        return st;
    }
    s->created = (long long)time(NULL);
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        road__door_notify, s->door, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)SERVER_CONNECTION_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SERVER_MHD_CONNECTION_MEMORY, MHD_OPTION_END);
    if (s->d)
        st = road__door_start(s->door, s->d);
    else
        st = road__error(ROAD_ERR_IO, "cannot start libmicrohttpd");
    if (st != ROAD_OK) {
        if (s->d) MHD_stop_daemon(s->d);
        s->d = NULL;
        road_engine_stop(s->e, false);
        road__door_free(s->door);
        s->door = NULL;
        return st;
    }
    pthread_mutex_lock(&s->mu);
    s->started = true;
    s->draining = s->stopped = false;
    pthread_mutex_unlock(&s->mu);
    road__log(ROAD_LOG_INFO,
              "road serve: listening on http://%s:%d (at most %d connections, %d per "
              "client address; requests must arrive within %g s)",
              s->host, s->port, (int)road__door_max_connections(s->door),
              (int)s->p.max_connections_per_client, s->p.request_timeout_s);
    return ROAD_OK;
}

road_status road_server_run(road_server *s) {
    road_status st = road_server_start(s);
    if (st != ROAD_OK) return st;
    pthread_mutex_lock(&s->mu);
    while (!s->stopped) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    return ROAD_OK;
}

void road_server_stop(road_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    bool go = s->started && !s->draining;
    if (go) s->draining = true;
    pthread_mutex_unlock(&s->mu);
    if (!go) return;
    road__log(ROAD_LOG_INFO, "road serve: draining (finishing the requests under way)");
    road_engine_stop(s->e, true); /* waits for the queued and running requests */
    road__door_stop(s->door);     /* no new connections; those still at the door close */
    MHD_stop_daemon(s->d);        /* closes the connections, joins their threads */
    s->d = NULL;
    road__door_free(s->door);
    s->door = NULL;
    pthread_mutex_lock(&s->mu);
    s->started = false;
    s->stopped = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    road__log(ROAD_LOG_INFO, "road serve: stopped");
}
