/*
 * serve/engine.c - the continuous-batching engine (road/serve.h).
 *
 * One thread steps the engine and is the only one touching the model; everything else talks to
 * it through two locks: the engine's (queue, adapter registry, commands, counters) and each
 * request's own (its output, finish state, cancel flag), so a request can outlive the engine.
 *
 * A step: run adapter commands (load, unload once unused), drop cancelled requests, admit
 * waiting ones (FIFO) up to max_batch, then build one ragged batch: first every decoding
 * sequence (one token), then prompt chunks of the prefilling ones in admission order until the
 * step's token budget is spent (chunked prefill). One road_model_forward runs it all, each
 * sequence naming its own adapter. A sequence whose prompt is complete samples its next token;
 * finished ones leave the batch in the same step, so their slot is free for the next admission.
 *
 * Text: the engine decodes each request's tokens with a streaming decoder and holds back the
 * tail that could still start a stop string; a stop string found ends the request, with the
 * text cut right before it.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "road/serve.h"
#include "serve/engine_internal.h"

/* Defaults of road_engine_params (docs/serve.md): a batch of 16 keeps 2-core decode steps
 * under ~30 ms on the bench model; 256 tokens of prefill per step bound how long decodes wait
 * for a long prompt; 256 waiting requests is about a minute of work at bench rates. */
#define ENGINE_DEFAULT_MAX_BATCH 16
#define ENGINE_DEFAULT_STEP_TOKENS 256
#define ENGINE_DEFAULT_MAX_WAITING 256
#define ENGINE_DEFAULT_MAX_TOKENS_LIMIT 4096

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

road_engine_params road_engine_default_params(void) {
    road_engine_params p;
    memset(&p, 0, sizeof p);
    p.max_batch = ENGINE_DEFAULT_MAX_BATCH;
    p.step_tokens = ENGINE_DEFAULT_STEP_TOKENS;
    p.max_waiting = ENGINE_DEFAULT_MAX_WAITING;
    p.max_tokens_limit = ENGINE_DEFAULT_MAX_TOKENS_LIMIT;
    return p;
}

road_request_params road_request_default_params(void) {
    road_request_params p;
    memset(&p, 0, sizeof p);
    p.sampling = road_sampler_default_params();
    p.max_tokens = 16;
    return p;
}

const char *road_finish_reason_name(road_finish_reason f) {
    switch (f) {
    case ROAD_FINISH_STOP: return "stop";
    case ROAD_FINISH_LENGTH: return "length";
    case ROAD_FINISH_CANCELLED: return "cancelled";
    case ROAD_FINISH_ERROR: return "error";
    default: return "";
    }
}

/* ---- adapter registry (under e->mu) ------------------------------------------------------- */

int32_t engine_find_adapter_(const road_engine *e, const char *name) {
    for (int32_t i = 0; i < e->n_ad; i++)
        if (strcmp(e->ad[i].name, name) == 0) return i;
    return -1;
}

int32_t add_adapter_entry_(road_engine *e, const char *name) {
    int32_t i = engine_find_adapter_(e, name);
    if (i >= 0) {
        e->ad[i].loaded = true;
        e->ad[i].draining = false;
        return i;
    }
    if (e->n_ad == e->cap_ad) {
        int32_t cap = e->cap_ad ? 2 * e->cap_ad : 8;
        engine_adapter *na = road_realloc(e->ad, sizeof *na * (size_t)cap);
        if (!na) return -1;
        e->ad = na;
        e->cap_ad = cap;
    }
    engine_adapter *a = &e->ad[e->n_ad];
    memset(a, 0, sizeof *a);
    if (!(a->name = road_strdup(name))) return -1;
    a->loaded = true;
    return e->n_ad++;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void request_unref(road_request *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    road_sampler_free(r->sampler);
    road_kv_cache_free(r->cache);
    road_tokenizer_stream_free(r->stream);
    for (int32_t i = 0; i < r->n_stop; i++) road_free(r->stop[i]);
    road_free(r->stop);
    road_free(r->stop_ids);
    road_free(r->prompt);
    road_free(r->adapter);
    road_free(r->toks);
    road_free(r->text);
    road_free(r->pend);
    road_free(r);
}

/* Append text (under r->mu). Returns false on no memory. */
static bool text_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (*len + n + 1 > nc) nc *= 2;
        char *nb = road_realloc(*buf, nc);
        if (!nb) return false;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

/* Count r's end in the metrics. Before the end is published: whoever waits for r may answer
 * its client at once, and a scrape after that answer must already count it. */
static void count_finish(road_engine *e, road_request *r, road_finish_reason why) {
    if (r->counted) return;
    r->counted = true;
    pthread_mutex_lock(&e->mu);
    e->stats.finished[why]++;
    pthread_mutex_unlock(&e->mu);
}

/* The engine is done with r: free its model state, publish the end, drop the engine's ref. */
static void finish_request(road_engine *e, road_request *r, road_finish_reason why,
                           const char *err) {
    road_kv_cache_free(r->cache);
    r->cache = NULL;
    road_tokenizer_stream_free(r->stream);
    r->stream = NULL;
    /* only the stepping thread sets finish, so it cannot change between these two locks */
    pthread_mutex_lock(&r->mu);
    road_finish_reason end = r->finish != ROAD_FINISH_NONE ? r->finish : why;
    pthread_mutex_unlock(&r->mu);
    count_finish(e, r, end);
    pthread_mutex_lock(&e->mu);
    if (r->adapter_idx >= 0) e->ad[r->adapter_idx].in_use--;
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_lock(&r->mu);
    if (r->finish == ROAD_FINISH_NONE) r->finish = why;
    if (err && r->finish == ROAD_FINISH_ERROR) snprintf(r->err, sizeof r->err, "%s", err);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    request_unref(r);
}

road_status road_engine_submit(road_engine *e, const road_request_params *p, road_request **out) {
    if (!e || !p || !out) return road_error(ROAD_ERR_INVALID_ARG, "submit: engine, params or out is NULL");
    *out = NULL;
    if (p->n_prompt < 1 || !p->prompt)
        return road_error(ROAD_ERR_INVALID_ARG, "the prompt is empty: give at least one token");
    for (int64_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= e->V)
            return road_error(ROAD_ERR_INVALID_ARG, "prompt token %lld is %d; the model's ids are 0..%lld",
                              (long long)i, (int)p->prompt[i], (long long)(e->V - 1));
    if (p->max_tokens < 1 || p->max_tokens > e->p.max_tokens_limit)
        return road_error(ROAD_ERR_INVALID_ARG, "max_tokens must be from 1 to %lld, got %lld",
                          (long long)e->p.max_tokens_limit, (long long)p->max_tokens);
    if (p->n_prompt >= e->p.max_seq_len)
        return road_error(ROAD_ERR_SHAPE,
                          "the prompt has %lld tokens; this server's context is %lld tokens "
                          "(prompt and completion together), so prompts may have at most %lld",
                          (long long)p->n_prompt, (long long)e->p.max_seq_len,
                          (long long)(e->p.max_seq_len - 1));
    if (p->n_stop_ids < 0 || (p->n_stop_ids && !p->stop_ids) || p->n_stop < 0 || (p->n_stop && !p->stop))
        return road_error(ROAD_ERR_INVALID_ARG, "bad stop list");
    if (p->n_stop && !e->p.tokenizer)
        return road_error(ROAD_ERR_INVALID_ARG, "stop strings need the model's tokenizer (none is loaded)");
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return road_error(ROAD_ERR_INVALID_ARG, "stop strings must not be empty");
    road_request *r = road_calloc(1, sizeof *r);
    if (!r) return ROAD_ERR_NO_MEMORY;
    r->refs = 2; /* the caller's and the engine's */
    r->adapter_idx = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    road_status st = road_sampler_create(&p->sampling, e->V, &r->sampler);
    const char *an = p->adapter && strcmp(p->adapter, ROAD_BASE_NAME) != 0 ? p->adapter : ROAD_BASE_NAME;
    if (st == ROAD_OK) {
        r->n_prompt = p->n_prompt;
        r->max_tokens = p->max_tokens;
        r->ignore_eos = p->ignore_eos;
        r->prompt = road_malloc(sizeof(int32_t) * (size_t)p->n_prompt);
        r->toks = road_malloc(sizeof(int32_t) * (size_t)p->max_tokens);
        r->adapter = road_strdup(an);
        if (p->n_stop_ids) r->stop_ids = road_malloc(sizeof(int32_t) * (size_t)p->n_stop_ids);
        if (p->n_stop) r->stop = road_calloc((size_t)p->n_stop, sizeof(char *));
        if (!r->prompt || !r->toks || !r->adapter || (p->n_stop_ids && !r->stop_ids) ||
            (p->n_stop && !r->stop))
            st = ROAD_ERR_NO_MEMORY;
    }
    if (st == ROAD_OK) {
        memcpy(r->prompt, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
        if (p->n_stop_ids) memcpy(r->stop_ids, p->stop_ids, sizeof(int32_t) * (size_t)p->n_stop_ids);
        r->n_stop_ids = p->n_stop_ids;
        for (int32_t i = 0; i < p->n_stop && st == ROAD_OK; i++) {
            if (!(r->stop[i] = road_strdup(p->stop[i]))) st = ROAD_ERR_NO_MEMORY;
            r->n_stop = i + 1;
            size_t l = strlen(p->stop[i]);
            if (l > r->max_stop_len) r->max_stop_len = l;
        }
    }
    if (st != ROAD_OK) {
        r->refs = 1;
        request_unref(r);
        return st;
    }
    r->t_submit = now_s();
    pthread_mutex_lock(&e->mu);
    if (e->draining || e->stopping) {
        st = road_error(ROAD_ERR_STATE, "the server is shutting down");
    } else if (e->n_waiting >= e->p.max_waiting) {
        st = road_error(ROAD_ERR_STATE, "too many requests are waiting (%d); retry later",
                        (int)e->n_waiting);
    } else if (strcmp(an, ROAD_BASE_NAME) != 0) {
        int32_t i = engine_find_adapter_(e, an);
        if (i < 0 || !e->ad[i].loaded || e->ad[i].draining)
            st = road_error(ROAD_ERR_NOT_FOUND, "no adapter named '%s'%s", an,
                            i >= 0 && e->ad[i].draining ? " (it is being unloaded)" : "");
        else
            r->adapter_idx = i;
    }
    if (st == ROAD_OK && e->n_waiting == e->cap_waiting) {
        int64_t cap = e->cap_waiting ? 2 * e->cap_waiting : 16;
        road_request **nw = road_realloc(e->waiting, sizeof *nw * (size_t)cap);
        if (!nw) st = ROAD_ERR_NO_MEMORY;
        else {
            e->waiting = nw;
            e->cap_waiting = cap;
        }
    }
    if (st == ROAD_OK) {
        r->id = ++e->next_id;
        r->engine = e;
        e->waiting[e->n_waiting++] = r;
        if (r->adapter_idx >= 0) {
            e->ad[r->adapter_idx].in_use++;
            e->ad[r->adapter_idx].requests++;
        } else {
            e->base_requests++;
        }
        e->stats.received++;
        pthread_cond_broadcast(&e->work_cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (st != ROAD_OK) {
        r->refs = 1;
        request_unref(r);
        return st;
    }
    *out = r;
    return ROAD_OK;
}

/* ---- request access (any thread) ------------------------------------------------------------ */

uint64_t road_request_id(const road_request *r) { return r ? r->id : 0; }

void road_request_wait(road_request *r, int64_t tokens_seen, size_t text_seen, int timeout_ms,
                       road_request_state *st) {
    struct timespec dl;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&r->mu);
    while (timeout_ms != 0 && r->finish == ROAD_FINISH_NONE && r->n_toks <= tokens_seen &&
           r->text_len <= text_seen) {
        if (timeout_ms < 0) pthread_cond_wait(&r->cv, &r->mu);
        else if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0) break;
    }
    if (st) {
        st->finish = r->finish;
        st->n_prompt = r->n_prompt;
        st->n_tokens = r->n_toks;
        st->text_len = r->text_len;
        st->queue_s = r->queue_s;
        st->ttft_s = r->ttft_s;
    }
    pthread_mutex_unlock(&r->mu);
}

int64_t road_request_tokens(road_request *r, int64_t from, int32_t *out, int64_t cap) {
    pthread_mutex_lock(&r->mu);
    int64_t n = from >= 0 && from < r->n_toks ? r->n_toks - from : 0;
    if (n > cap) n = cap;
    if (n > 0) memcpy(out, r->toks + from, sizeof(int32_t) * (size_t)n);
    pthread_mutex_unlock(&r->mu);
    return n < 0 ? 0 : n;
}

size_t road_request_text(road_request *r, size_t from, char *out, size_t cap) {
    pthread_mutex_lock(&r->mu);
    size_t n = from < r->text_len ? r->text_len - from : 0;
    if (n > cap) n = cap;
    if (n) memcpy(out, r->text + from, n);
    pthread_mutex_unlock(&r->mu);
    return n;
}

const char *road_request_error(road_request *r) {
    pthread_mutex_lock(&r->mu);
    const char *s = r->finish == ROAD_FINISH_ERROR ? r->err : "";
    pthread_mutex_unlock(&r->mu);
    return s;
}

void road_request_cancel(road_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->cancelled = true;
    pthread_mutex_unlock(&r->mu);
}

void road_request_release(road_request *r) {
    if (!r) return;
    road_request_cancel(r);
    request_unref(r);
}

static bool is_cancelled(road_request *r) {
    pthread_mutex_lock(&r->mu);
    bool c = r->cancelled;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* ---- one step (the stepping thread only) ------------------------------------------------ */

/* Longest suffix of s[0..n) that is a proper prefix of one of the stop strings. */
static size_t stop_prefix_tail(const road_request *r, const char *s, size_t n) {
    size_t lim = r->max_stop_len ? r->max_stop_len - 1 : 0;
    for (size_t l = n < lim ? n : lim; l > 0; l--)
        for (int32_t i = 0; i < r->n_stop; i++)
            if (strlen(r->stop[i]) > l && memcmp(r->stop[i], s + n - l, l) == 0) return l;
    return 0;
}

/* A token for r: update text, decide whether r ends, publish. Returns true when r finished
 * (and was handed to finish_request). */
static bool take_token(road_engine *e, road_request *r, int32_t t) {
    r->n_gen++;
    bool stop_tok = false;
    if (!r->ignore_eos)
        for (int32_t i = 0; i < e->n_eos; i++) stop_tok |= t == e->eos[i];
    for (int32_t i = 0; i < r->n_stop_ids; i++) stop_tok |= t == r->stop_ids[i];
    road_finish_reason why = ROAD_FINISH_NONE;
    bool oom = false;
    const char *piece;
    size_t pl = 0;
    if (!stop_tok && r->stream && t < e->tok_vocab &&
        road_tokenizer_stream_push(r->stream, t, &piece, &pl) == ROAD_OK && pl)
        oom |= !text_append(&r->pend, &r->pend_len, &r->pend_cap, piece, pl);
    if (stop_tok) why = ROAD_FINISH_STOP;
    else if (r->n_gen >= r->max_tokens || r->n_prompt + r->n_gen >= e->p.max_seq_len)
        why = ROAD_FINISH_LENGTH;
    size_t release = r->pend_len;
    bool cut = false;
    for (int32_t i = 0; i < r->n_stop && r->pend; i++) {
        /* by length: generated text may hold a NUL byte, where strstr would stop looking */
        size_t sl = strlen(r->stop[i]);
        for (size_t at = 0; at + sl <= r->pend_len && at < release; at++)
            if (memcmp(r->pend + at, r->stop[i], sl) == 0) {
                release = at;
                cut = true;
                break;
            }
    }
    if (cut) why = ROAD_FINISH_STOP;
    else if (why != ROAD_FINISH_NONE && r->stream) {
        if (road_tokenizer_stream_flush(r->stream, &piece, &pl) == ROAD_OK && pl)
            oom |= !text_append(&r->pend, &r->pend_len, &r->pend_cap, piece, pl);
        release = r->pend_len;
    } else if (why == ROAD_FINISH_NONE && r->n_stop) {
        release -= stop_prefix_tail(r, r->pend, r->pend_len);
    }
    double t_now = now_s();
    if (why != ROAD_FINISH_NONE && !oom) count_finish(e, r, why);
    pthread_mutex_lock(&r->mu);
    /* the last token and the end are published together: a reader never sees one without the
     * other (its stream's last chunk carries both) */
    if (why != ROAD_FINISH_NONE && !oom && r->finish == ROAD_FINISH_NONE) r->finish = why;
    r->toks[r->n_toks++] = t;
    if (r->n_toks == 1) r->ttft_s = t_now - r->t_submit;
    if (release) oom |= !text_append(&r->text, &r->text_len, &r->text_cap, r->pend, release);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (release) {
        memmove(r->pend, r->pend + release, r->pend_len - release);
        r->pend_len -= release;
        r->pend[r->pend_len] = '\0';
    }
    if (r->n_gen == 1) {
        pthread_mutex_lock(&e->mu);
        e->stats.ttft_sum += r->ttft_s;
        e->stats.ttft_count++;
        pthread_mutex_unlock(&e->mu);
    }
    r->last = t;
    if (oom) {
        finish_request(e, r, ROAD_FINISH_ERROR, "out of memory for the request's text");
        return true;
    }
    if (why != ROAD_FINISH_NONE) {
        finish_request(e, r, why, NULL);
        return true;
    }
    return false;
}

/* Execute queued adapter commands (the stepping thread; e->mu not held). */
static void run_commands(road_engine *e) {
    pthread_mutex_lock(&e->mu);
    engine_cmd *list = e->cmds, *keep = NULL, **keep_tail = &keep;
    e->cmds = NULL;
    while (list) {
        engine_cmd *c = list;
        list = c->next;
        c->next = NULL;
        road_status st = ROAD_OK;
        if (c->kind == ENGINE_CMD_LOAD) {
            pthread_mutex_unlock(&e->mu);
            st = road_adapter_set_load_commit(road_model_adapters(e->m), c->prepared);
            if (st != ROAD_OK) snprintf(c->err, sizeof c->err, "%s", road_last_error());
            pthread_mutex_lock(&e->mu);
            if (st == ROAD_OK && add_adapter_entry_(e, c->name) < 0) {
                road_adapter_set_delete(road_model_adapters(e->m), c->name);
                st = ROAD_ERR_NO_MEMORY;
                snprintf(c->err, sizeof c->err, "out of memory");
            }
        } else {
            int32_t i = engine_find_adapter_(e, c->name);
            if (i >= 0 && e->ad[i].in_use > 0) { /* still used: try again next step */
                *keep_tail = c;
                keep_tail = &c->next;
                continue;
            }
            pthread_mutex_unlock(&e->mu);
            st = road_adapter_set_delete(road_model_adapters(e->m), c->name);
            if (st != ROAD_OK) snprintf(c->err, sizeof c->err, "%s", road_last_error());
            pthread_mutex_lock(&e->mu);
            if (i >= 0) {
                e->ad[i].draining = false;
                if (st == ROAD_OK) e->ad[i].loaded = false;
            }
        }
        c->status = st;
        c->done = true;
        pthread_cond_broadcast(&e->cmd_cv);
    }
    *keep_tail = e->cmds; /* commands queued meanwhile go after the kept ones */
    e->cmds = keep;
    pthread_mutex_unlock(&e->mu);
}

void engine_run_command_now_(road_engine *e, engine_cmd *c) {
    pthread_mutex_lock(&e->mu);
    engine_cmd **tail = &e->cmds;
    while (*tail) tail = &(*tail)->next;
    *tail = c;
    pthread_mutex_unlock(&e->mu);
    run_commands(e);
}

/* Give r its KV cache and text decoder when it joins the batch. */
static road_status prepare(road_engine *e, road_request *r) {
    int64_t need = r->n_prompt + r->max_tokens;
    if (need > e->p.max_seq_len) need = e->p.max_seq_len;
    road_status st = road_kv_cache_create(e->m, need, &r->cache);
    if (st == ROAD_OK && e->p.tokenizer)
        st = road_tokenizer_stream_create(e->p.tokenizer, true, &r->stream);
    return st;
}

static int64_t engine_step(road_engine *e) {
    run_commands(e);
    /* cancelled waiting requests leave; admissions (FIFO) */
    pthread_mutex_lock(&e->mu);
    int64_t kept = 0, n_gone = 0;
    for (int64_t i = 0; i < e->n_waiting; i++) {
        road_request *r = e->waiting[i];
        if (is_cancelled(r)) e->gone[n_gone++] = r;
        else e->waiting[kept++] = r;
    }
    e->n_waiting = kept;
    double t_now = now_s();
    int64_t n_admit = 0;
    while (e->n_running < e->p.max_batch && n_admit < e->n_waiting) {
        road_request *r = e->waiting[n_admit++];
        r->queue_s = t_now - r->t_submit;
        e->running[e->n_running++] = r;
    }
    e->n_waiting -= n_admit;
    memmove(e->waiting, e->waiting + n_admit, sizeof *e->waiting * (size_t)e->n_waiting);
    int64_t n_waiting = e->n_waiting;
    pthread_mutex_unlock(&e->mu);
    for (int64_t i = 0; i < n_gone; i++) finish_request(e, e->gone[i], ROAD_FINISH_CANCELLED, NULL);

    /* cancelled running requests leave; newly admitted ones get their caches */
    int64_t n_run = 0;
    for (int64_t i = 0; i < e->n_running; i++) {
        road_request *r = e->running[i];
        if (is_cancelled(r)) {
            finish_request(e, r, ROAD_FINISH_CANCELLED, NULL);
            continue;
        }
        if (!r->cache) {
            road_status st = prepare(e, r);
            if (st != ROAD_OK) {
                finish_request(e, r, ROAD_FINISH_ERROR, road_last_error());
                continue;
            }
        }
        e->run_done[n_run] = false;
        e->running[n_run++] = r;
    }
    /* the batch: decodes first (one token each), then prompt chunks within the budget */
    int64_t budget = e->p.step_tokens, k = 0, rows = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t j = 0; j < n_run && budget > 0; j++) {
            road_request *r = e->running[j];
            bool decoding = r->n_done_prompt >= r->n_prompt;
            if (decoding != (pass == 0)) continue;
            int64_t c = decoding ? 1 : r->n_prompt - r->n_done_prompt;
            if (c > budget) c = budget;
            const int32_t *tok = decoding ? &r->last : r->prompt + r->n_done_prompt;
            e->seqs[k] = (road_seq){tok, c, r->cache, r->adapter, false};
            e->seq_run[k] = j;
            e->seq_ad[k] = r->adapter_idx;
            e->seq_ids[k++] = r->id;
            budget -= c;
            rows += c;
        }
    }
    pthread_mutex_lock(&e->mu);
    e->n_running = n_run;
    pthread_mutex_unlock(&e->mu);
    if (k == 0) return 0;

    road_status st = road_model_forward(e->m, e->seqs, k, e->logits);
    if (e->p.on_step) {
        road_engine_step_info info = {e->seqs, e->seq_ids, k, rows, n_waiting};
        e->p.on_step(&info, e->p.on_step_user);
    }
    char err[256] = "";
    if (st != ROAD_OK) snprintf(err, sizeof err, "the forward pass failed: %s", road_last_error());
    int64_t gen = 0, prompt_done = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = e->seq_run[i];
        road_request *r = e->running[j];
        e->seq_tok[i] = false;
        if (st != ROAD_OK) {
            finish_request(e, r, ROAD_FINISH_ERROR, err);
            e->run_done[j] = true;
            continue;
        }
        if (r->n_done_prompt < r->n_prompt) {
            r->n_done_prompt += e->seqs[i].n_tokens;
            if (r->n_done_prompt < r->n_prompt) continue;
            prompt_done += r->n_prompt;
        }
        int32_t t = road_sampler_sample(r->sampler, e->logits + i * e->V);
        gen++;
        e->seq_tok[i] = true;
        e->run_done[j] = take_token(e, r, t); /* r may be gone after this */
    }
    n_run = 0;
    for (int64_t j = 0; j < e->n_running; j++)
        if (!e->run_done[j]) e->running[n_run++] = e->running[j];
    pthread_mutex_lock(&e->mu);
    e->n_running = n_run;
    e->stats.steps++;
    e->stats.step_seqs += k;
    e->stats.step_rows += rows;
    e->stats.last_batch = k;
    e->stats.prompt_tokens += prompt_done;
    e->stats.gen_tokens += gen;
    for (int64_t i = 0; i < k; i++) {
        if (!e->seq_tok[i]) continue;
        if (e->seq_ad[i] >= 0) e->ad[e->seq_ad[i]].gen_tokens++;
        else e->base_gen_tokens++;
    }
    pthread_mutex_unlock(&e->mu);
    return k;
}

road_status road_engine_step(road_engine *e, int64_t *n_seq) {
    if (!e) return road_error(ROAD_ERR_INVALID_ARG, "road_engine_step: engine is NULL");
    pthread_mutex_lock(&e->mu);
    bool started = e->started;
    pthread_mutex_unlock(&e->mu);
    if (started)
        return road_error(ROAD_ERR_STATE, "road_engine_step: the engine thread is running; "
                                          "stop it first or let it step");
    int64_t k = engine_step(e);
    if (n_seq) *n_seq = k;
    return ROAD_OK;
}

static bool has_work(const road_engine *e) {
    return e->n_waiting > 0 || e->n_running > 0 || e->cmds != NULL;
}

static void *engine_main(void *arg) {
    road_engine *e = arg;
    /* OpenMP's thread count is per thread: take the starting thread's (the model's own count,
     * if it has one, applies inside its forward) */
    road_set_num_threads(e->n_threads);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && !has_work(e) && !e->draining) pthread_cond_wait(&e->work_cv, &e->mu);
        if (e->stopping) break;
        if (e->draining && !has_work(e)) break;
        pthread_mutex_unlock(&e->mu);
        engine_step(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

road_status road_engine_start(road_engine *e) {
    if (!e) return road_error(ROAD_ERR_INVALID_ARG, "road_engine_start: engine is NULL");
    pthread_mutex_lock(&e->mu);
    if (e->started) {
        pthread_mutex_unlock(&e->mu);
        return road_error(ROAD_ERR_STATE, "the engine is already running");
    }
    e->started = true;
    e->stopping = e->draining = false;
    e->n_threads = road_get_num_threads();
    int rc = pthread_create(&e->thread, NULL, engine_main, e);
    if (rc != 0) e->started = false;
    pthread_mutex_unlock(&e->mu);
    if (rc != 0) return road_error(ROAD_ERR_INTERNAL, "cannot start the engine thread (error %d)", rc);
    return ROAD_OK;
}

/* Cancel everything still queued or running (no engine thread running). */
static void cancel_all(road_engine *e) {
    pthread_mutex_lock(&e->mu);
    int64_t nw = e->n_waiting;
    e->n_waiting = 0;
    pthread_mutex_unlock(&e->mu);
    for (int64_t i = 0; i < nw; i++) finish_request(e, e->waiting[i], ROAD_FINISH_CANCELLED, NULL);
    for (int64_t i = 0; i < e->n_running; i++)
        finish_request(e, e->running[i], ROAD_FINISH_CANCELLED, NULL);
    pthread_mutex_lock(&e->mu);
    e->n_running = 0;
    /* commands that were waiting for requests: done now (unload can proceed) */
    pthread_mutex_unlock(&e->mu);
    run_commands(e);
}

void road_engine_stop(road_engine *e, bool drain) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    bool started = e->started;
    if (drain) e->draining = true;
    else e->stopping = true;
    pthread_cond_broadcast(&e->work_cv);
    pthread_mutex_unlock(&e->mu);
    if (started) pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->mu);
    e->started = false;
    e->stopping = true; /* refuse new submissions from now on */
    pthread_mutex_unlock(&e->mu);
    cancel_all(e);
}

void road_engine_load(const road_engine *e, int64_t *waiting, int64_t *running) {
    road_engine *me = (road_engine *)e;
    pthread_mutex_lock(&me->mu);
    if (waiting) *waiting = e->n_waiting;
    if (running) *running = e->n_running;
    pthread_mutex_unlock(&me->mu);
}
