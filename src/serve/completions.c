/*
 * serve/completions.c - POST /v1/completions and /v1/chat/completions (docs/serve.md).
 *
 * On the connection's thread: parse and check the body, pick the adapter from "model", turn the
 * prompt (text, token ids, or chat messages through the chat template) into ids, submit to the
 * engine, then either wait for the end (checking every WAIT_MS that the client is still there,
 * and cancelling when it is not) or stream server-sent events from a content-reader callback
 * that blocks until the engine has news. The model itself is never touched here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/server_internal.h"

/* How often a connection thread waiting for tokens checks that its client is still connected. */
#define WAIT_MS 100

static const char *model_name(road_server *s, const api_request *q) {
    return q->model ? q->model : s->served_name;
}

/* The adapter a "model" names: NULL for the base model; *err set when unknown. */
static bool pick_adapter(road_server *s, const api_request *q, const char **adapter,
                         api_error *err) {
    *adapter = NULL;
    if (!q->model || strcmp(q->model, s->served_name) == 0 || strcmp(q->model, ROAD_BASE_NAME) == 0)
        return true;
    if (!road_engine_has_adapter(s->e, q->model)) {
        road__api_error_set(
            err, 404, "invalid_request_error", "model_not_found", "model",
            "The model '%.200s' does not exist: GET /v1/models lists the base model and "
            "the adapters served",
            q->model);
        return false;
    }
    *adapter = q->model;
    return true;
}

/* The prompt as ids (malloc'd). */
static bool prompt_ids(road_server *s, const api_request *q, int32_t **ids, int64_t *n,
                       api_error *err) {
    *ids = NULL;
    if (q->prompt_ids) {
        /* the engine refuses these too, but only here does the refusal name the field */
        int64_t vocab = road_model_config(s->m)->vocab_size;
        for (int64_t i = 0; i < q->n_prompt_ids; i++)
            if (q->prompt_ids[i] >= vocab) {
                road__api_error_set(err, 400, "invalid_request_error", NULL, "prompt",
                                    "prompt token %lld is %d; the model's ids are 0..%lld",
                                    (long long)i, (int)q->prompt_ids[i], (long long)(vocab - 1));
                return false;
            }
        if (!(*ids = malloc(sizeof(int32_t) * (size_t)q->n_prompt_ids))) goto oom;
        memcpy(*ids, q->prompt_ids, sizeof(int32_t) * (size_t)q->n_prompt_ids);
        *n = q->n_prompt_ids;
        return true;
    }
    if (!s->tok) {
        road__api_error_set(err, 400, "invalid_request_error", NULL,
                            q->kind == API_CHAT ? "messages" : "prompt",
                            "the model folder has no tokenizer.json: send the prompt as token ids");
        return false;
    }
    char *text = NULL;
    const char *src = q->prompt;
    size_t len = q->prompt ? strlen(q->prompt) : 0;
    if (q->kind == API_CHAT) {
        if (!s->has_template) {
            road__api_error_set(err, 400, "invalid_request_error", NULL, "messages", "%s",
                                s->tmpl_err);
            return false;
        }
        road_chat_params cp = road_chat_default_params();
        cp.add_generation_prompt = q->add_generation_prompt;
        cp.continue_final_message = q->continue_final_message;
        cp.tools = q->tools;
        cp.documents = q->documents;
        /* the server's --chat-kwargs, then the request's chat_template_kwargs over them */
        cJSON *kw = NULL;
        if (s->chat_kwargs || q->chat_template_kwargs) {
            kw = s->chat_kwargs ? cJSON_Duplicate(s->chat_kwargs, true) : cJSON_CreateObject();
            for (const cJSON *k = q->chat_template_kwargs ? q->chat_template_kwargs->child : NULL;
                 kw && k; k = k->next) {
                cJSON *dup = cJSON_Duplicate(k, true);
                cJSON_DeleteItemFromObjectCaseSensitive(kw, k->string);
                if (!dup || !cJSON_AddItemToObject(kw, k->string, dup)) {
                    cJSON_Delete(dup);
                    cJSON_Delete(kw);
                    kw = NULL;
                }
            }
            if (!kw) {
                road__api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
                return false;
            }
        }
        cp.kwargs = kw;
        road_status st = road_tokenizer_apply_chat_json(s->tok, &cp, q->messages, &text, &len);
        cJSON_Delete(kw);
        if (st != ROAD_OK) {
            road__api_error_set(err, 400, "invalid_request_error", NULL, "messages",
                                "the chat template refused the messages: %s", road_last_error());
            return false;
        }
        src = text;
    }
    size_t cap = road_tokenizer_max_tokens(s->tok, len), k = 0;
    *ids = malloc(sizeof(int32_t) * (cap ? cap : 1));
    road_status st =
        *ids ? road_tokenizer_encode(s->tok, src, len, q->kind == API_COMPLETIONS, *ids, cap, &k)
             : ROAD_ERR_NO_MEMORY;
    road_string_free(text);
    if (st == ROAD_OK && k == 0) {
        road__api_error_set(err, 400, "invalid_request_error", NULL,
                            q->kind == API_CHAT ? "messages" : "prompt", "the prompt is empty");
        free(*ids);
        *ids = NULL;
        return false;
    }
    if (st != ROAD_OK) {
        free(*ids);
        *ids = NULL;
        if (st == ROAD_ERR_NO_MEMORY) goto oom;
        road__api_error_set(err, 400, "invalid_request_error", NULL, "prompt",
                            "cannot tokenize the prompt: %s", road_last_error());
        return false;
    }
    *n = (int64_t)k;
    return true;
oom:
    road__api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return false;
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer: spread a counter into a seed */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---- streaming ---------------------------------------------------------------------------- */

typedef struct stream_ctx {
    road_server *s;
    road_request *r;
    api_reply rep;
    char id[48], *model;
    int fd;
    bool include_usage, first, done;
    int64_t toks_seen;
    size_t text_seen;
    char *out; /* bytes ready to send */
    size_t out_len, out_pos, out_cap;
    char *text;
    size_t text_cap;
} stream_ctx;

static bool out_add(stream_ctx *x, const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = b ? strlen(b) : 0, lc = strlen(c);
    size_t need = x->out_len + la + lb + lc;
    if (need > x->out_cap) {
        size_t nc = need * 2;
        char *no = realloc(x->out, nc);
        if (!no) return false;
        x->out = no;
        x->out_cap = nc;
    }
    memcpy(x->out + x->out_len, a, la);
    if (lb) memcpy(x->out + x->out_len + la, b, lb);
    memcpy(x->out + x->out_len + la + lb, c, lc);
    x->out_len = need;
    return true;
}

static bool add_chunk(stream_ctx *x, bool usage_only) {
    char *j = road__api_chunk_json(&x->rep, x->first, usage_only);
    if (!j) return false;
    bool ok = out_add(x, "data: ", j, "\n\n");
    free(j);
    x->first = false;
    return ok;
}

/* Wait for the engine's next news and turn it into SSE bytes. false: give up the stream. */
static bool stream_next(stream_ctx *x) {
    road_request_state st;
    for (;;) {
        road_request_wait(x->r, x->toks_seen, x->text_seen, WAIT_MS, &st);
        if (st.finish != ROAD_FINISH_NONE || st.n_tokens > x->toks_seen ||
            st.text_len > x->text_seen)
            break;
        if (road__server_client_gone(x->fd)) return false;
    }
    size_t n = st.text_len - x->text_seen;
    if (n + 1 > x->text_cap) {
        char *nt = realloc(x->text, n + 1);
        if (!nt) return false;
        x->text = nt;
        x->text_cap = n + 1;
    }
    n = road_request_text(x->r, x->text_seen, x->text, n);
    x->text_seen += n;
    x->toks_seen = st.n_tokens;
    x->rep.text = x->text;
    x->rep.text_len = n;
    x->rep.finish_reason = NULL;
    x->rep.prompt_tokens = st.n_prompt;
    x->rep.completion_tokens = st.n_tokens;
    if (st.finish == ROAD_FINISH_CANCELLED) return false;
    if (st.finish == ROAD_FINISH_ERROR) {
        api_error e;
        road__api_error_set(&e, 500, "server_error", NULL, NULL, "%s", road_request_error(x->r));
        char *j = road__api_error_json(&e);
        bool ok = j && out_add(x, "data: ", j, "\n\ndata: [DONE]\n\n");
        free(j);
        x->done = true;
        return ok;
    }
    if (st.finish != ROAD_FINISH_NONE) {
        x->rep.finish_reason = road_finish_reason_name(st.finish);
        x->done = true;
    }
    if (!add_chunk(x, false)) return false;
    if (x->done) {
        if (x->include_usage && !add_chunk(x, true)) return false;
        if (!out_add(x, "data: [DONE]", NULL, "\n\n")) return false;
    }
    return true;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *x = cls;
    while (x->out_pos == x->out_len) {
        if (x->done) return MHD_CONTENT_READER_END_OF_STREAM;
        x->out_len = x->out_pos = 0;
        if (!stream_next(x)) {
            road_request_cancel(x->r);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    size_t n = x->out_len - x->out_pos;
    if (n > max) n = max;
    memcpy(buf, x->out + x->out_pos, n);
    x->out_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_ctx *x = cls;
    road_request_release(x->r); /* cancels it if the client left early */
    free(x->model);
    free(x->out);
    free(x->text);
    free(x);
}

/* ---- the endpoint ------------------------------------------------------------------------- */

static int fd_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static enum MHD_Result reply_whole(road_server *s, struct MHD_Connection *c, road_request *r,
                                   api_reply *rep) {
    road_request_state st;
    int fd = fd_of(c);
    for (;;) {
        road_request_wait(r, INT64_MAX, (size_t)-1, WAIT_MS, &st);
        if (st.finish != ROAD_FINISH_NONE) break;
        if (road__server_client_gone(fd)) {
            road_request_release(r); /* cancels */
            road__server_count(s, 499);
            return MHD_NO;
        }
    }
    api_error err;
    enum MHD_Result ret;
    if (st.finish == ROAD_FINISH_ERROR || st.finish == ROAD_FINISH_CANCELLED) {
        road__api_error_set(
            &err, st.finish == ROAD_FINISH_ERROR ? 500 : 503, "server_error", NULL, NULL, "%s",
            st.finish == ROAD_FINISH_ERROR ? road_request_error(r)
                                           : "the request was cancelled (server stopping)");
        road_request_release(r);
        return road__server_send_error(s, c, &err);
    }
    char *text = malloc(st.text_len + 1);
    if (!text) {
        road_request_release(r);
        return MHD_NO;
    }
    size_t n = road_request_text(r, 0, text, st.text_len);
    rep->text = text;
    rep->text_len = n;
    rep->finish_reason = road_finish_reason_name(st.finish);
    rep->prompt_tokens = st.n_prompt;
    rep->completion_tokens = st.n_tokens;
    road_request_release(r);
    char *j = road__api_reply_json(rep);
    free(text);
    if (!j) return MHD_NO;
    ret = road__server_send(s, c, 200, "application/json", j, strlen(j));
    free(j);
    return ret;
}

enum MHD_Result road__completions_generate(road_server *s, struct MHD_Connection *c, api_kind kind,
                                           const char *body, size_t len) {
    api_request q;
    api_error err;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    road_request *r = NULL;
    enum MHD_Result ret;
    if (!road__api_parse_request(kind, body, len, &q, &err))
        return road__server_send_error(s, c, &err);
    const char *adapter;
    const road_engine_params *ep = &s->p.engine;
    if (!pick_adapter(s, &q, &adapter, &err) || !prompt_ids(s, &q, &ids, &n_ids, &err)) goto fail;
    if (n_ids >= ep->max_seq_len) {
        road__api_error_set(
            &err, 400, "invalid_request_error", "context_length_exceeded",
            kind == API_CHAT ? "messages" : "prompt",
            "This model's maximum context length is %lld tokens. However, your prompt has "
            "%lld tokens (leave room for at least one generated token).",
            (long long)ep->max_seq_len, (long long)n_ids);
        goto fail;
    }
    int64_t room = ep->max_seq_len - n_ids, max_tokens = q.max_tokens;
    if (max_tokens > 0 && max_tokens > room) {
        road__api_error_set(
            &err, 400, "invalid_request_error", "context_length_exceeded", "max_tokens",
            "This model's maximum context length is %lld tokens. However, you requested "
            "%lld tokens (%lld in the prompt, %lld for the completion).",
            (long long)ep->max_seq_len, (long long)(n_ids + max_tokens), (long long)n_ids,
            (long long)max_tokens);
        goto fail;
    }
    if (max_tokens > ep->max_tokens_limit) {
        road__api_error_set(&err, 400, "invalid_request_error", NULL, "max_tokens",
                            "max_tokens may be at most %lld on this server",
                            (long long)ep->max_tokens_limit);
        goto fail;
    }
    if (max_tokens < 0) {
        max_tokens = kind == API_COMPLETIONS ? s->p.default_max_tokens : room;
        if (max_tokens > room) max_tokens = room;
        if (max_tokens > ep->max_tokens_limit) max_tokens = ep->max_tokens_limit;
    }
    road_request_params rp = road_request_default_params();
    rp.prompt = ids;
    rp.n_prompt = n_ids;
    rp.adapter = adapter;
    rp.max_tokens = max_tokens;
    rp.sampling.temperature = q.temperature;
    rp.sampling.top_p = q.top_p;
    rp.sampling.top_k = q.top_k < 0 ? 0 : q.top_k;
    uint64_t idn = road__server_next_id(s);
    rp.sampling.seed = q.has_seed ? q.seed : mix64(idn ^ ((uint64_t)time(NULL) << 20));
    rp.stop = (const char *const *)q.stop;
    rp.n_stop = q.n_stop;
    rp.stop_ids = q.stop_ids;
    rp.n_stop_ids = q.n_stop_ids;
    rp.ignore_eos = q.ignore_eos;
    rp.min_tokens = q.min_tokens;
    rp.sampling.presence_penalty = q.presence_penalty;
    rp.sampling.frequency_penalty = q.frequency_penalty;
    rp.sampling.repetition_penalty = q.repetition_penalty;
    rp.sampling.min_p = q.min_p;
    rp.sampling.logit_bias = q.logit_bias;
    rp.sampling.n_logit_bias = q.n_logit_bias;
    if (q.n_stop && !s->tok) {
        road__api_error_set(&err, 400, "invalid_request_error", NULL, "stop",
                            "stop strings need the model's tokenizer.json; use stop_token_ids");
        goto fail;
    }
    pthread_mutex_lock(&s->mu);
    bool draining = s->draining;
    pthread_mutex_unlock(&s->mu);
    road_status st = draining ? ROAD_ERR_STATE : road_engine_submit(s->e, &rp, &r);
    if (st != ROAD_OK) {
        if (draining)
            road__api_error_set(&err, 503, "server_error", "server_shutting_down", NULL,
                                "the server is shutting down");
        else if (st == ROAD_ERR_NOT_FOUND)
            road__api_error_set(&err, 404, "invalid_request_error", "model_not_found", "model",
                                "%s", road_last_error());
        else if (st == ROAD_ERR_SHAPE)
            road__api_error_set(&err, 400, "invalid_request_error", "context_length_exceeded",
                                "prompt", "%s", road_last_error());
        else if (st == ROAD_ERR_STATE)
            road__api_error_set(&err, 429, "rate_limit_error", "rate_limit_exceeded", NULL, "%s",
                                road_last_error());
        else if (st == ROAD_ERR_NO_MEMORY)
            road__api_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
        else
            road__api_error_set(&err, 400, "invalid_request_error", NULL, NULL, "%s",
                                road_last_error());
        goto fail;
    }
    free(ids);
    ids = NULL;
    char idbuf[48];
    /* ids differ across requests and across server runs (the start time is mixed in) */
    snprintf(idbuf, sizeof idbuf, "%s-%016llx", kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)mix64(idn ^ ((uint64_t)s->created << 32)));
    api_reply rep = {kind, idbuf, s->created, model_name(s, &q), "", 0, NULL, 0, 0};
    if (!q.stream) {
        ret = reply_whole(s, c, r, &rep);
        road__api_request_free(&q);
        return ret;
    }
    stream_ctx *x = calloc(1, sizeof *x);
    if (!x || !(x->model = malloc(strlen(rep.model) + 1))) {
        free(x);
        road_request_release(r);
        road__api_request_free(&q);
        return MHD_NO;
    }
    strcpy(x->model, rep.model);
    memcpy(x->id, idbuf, sizeof idbuf);
    x->s = s;
    x->r = r;
    x->rep = rep;
    x->rep.id = x->id;
    x->rep.model = x->model;
    x->fd = fd_of(c);
    x->first = true;
    x->include_usage = q.include_usage;
    road__api_request_free(&q);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, x, stream_free);
    if (!resp) {
        stream_free(x);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "Connection", "close"); /* the next request passes the door */
    ret = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    road__server_count(s, 200);
    return ret;
fail:
    free(ids);
    road__api_request_free(&q);
    return road__server_send_error(s, c, &err);
}
