/*
 * serve/request.c - a request's lifecycle (road/serve.h): submit, the tokens and text it
 * receives, waiting for them, cancel and release.
 *
 * A request is shared by the thread that submitted it (a connection) and the engine thread, and
 * may outlive the engine: it has its own lock (its output, finish state, cancel flag) and a
 * reference count (the caller's and the engine's). The engine thread hands it each sampled token
 * (road__request_take_token), which decodes it with the request's streaming decoder, holds back the
 * tail that could still start a stop string, and publishes token, text and end together; a stop
 * string found ends the request, with the text cut right before it. road__request_finish is the one
 * way out of the engine: model state freed, the end counted, then published.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "road/serve.h"
#include "serve/engine_internal.h"

double road__request_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    case ROAD_FINISH_STOP:
        return "stop";
    case ROAD_FINISH_LENGTH:
        return "length";
    case ROAD_FINISH_CANCELLED:
        return "cancelled";
    case ROAD_FINISH_ERROR:
        return "error";
    default:
        return "";
    }
}

/* ---- life and end -----------------------------------------------------------------------------
 */

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
    for (int32_t i = 0; i < r->n_stop; i++) road__free(r->stop[i]);
    road__free(r->stop);
    road__free(r->stop_ids);
    road__free(r->prompt);
    road__free(r->adapter);
    road__free(r->toks);
    road__free(r->text);
    road__free(r->pend);
    road__free(r);
}

/* Append text (under r->mu). Returns false on no memory. */
static bool text_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (*len + n + 1 > nc) nc *= 2;
        char *nb = road__realloc(*buf, nc);
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
void road__request_finish(road_engine *e, road_request *r, road_finish_reason why,
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
    if (!e || !p || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "submit: engine, params or out is NULL");
    *out = NULL;
    if (p->n_prompt < 1 || !p->prompt)
        return road__error(ROAD_ERR_INVALID_ARG, "the prompt is empty: give at least one token");
    for (int64_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= e->V)
            return road__error(ROAD_ERR_INVALID_ARG,
                               "prompt token %lld is %d; the model's ids are 0..%lld", (long long)i,
                               (int)p->prompt[i], (long long)(e->V - 1));
    if (p->max_tokens < 1 || p->max_tokens > e->p.max_tokens_limit)
        return road__error(ROAD_ERR_INVALID_ARG, "max_tokens must be from 1 to %lld, got %lld",
                           (long long)e->p.max_tokens_limit, (long long)p->max_tokens);
    if (p->n_prompt >= e->p.max_seq_len)
        return road__error(ROAD_ERR_SHAPE,
                           "the prompt has %lld tokens; this server's context is %lld tokens "
                           "(prompt and completion together), so prompts may have at most %lld",
                           (long long)p->n_prompt, (long long)e->p.max_seq_len,
                           (long long)(e->p.max_seq_len - 1));
    if (p->min_tokens < 0 || p->min_tokens > p->max_tokens)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "min_tokens must be from 0 to max_tokens (%lld), got %lld",
                           (long long)p->max_tokens, (long long)p->min_tokens);
    if (p->n_stop_ids < 0 || (p->n_stop_ids && !p->stop_ids) || p->n_stop < 0 ||
        (p->n_stop && !p->stop))
        return road__error(ROAD_ERR_INVALID_ARG, "bad stop list");
    if (p->n_stop && !e->p.tokenizer)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "stop strings need the model's tokenizer (none is loaded)");
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i] || !p->stop[i][0])
            return road__error(ROAD_ERR_INVALID_ARG, "stop strings must not be empty");
    road_request *r = road__calloc(1, sizeof *r);
    if (!r) return ROAD_ERR_NO_MEMORY;
    r->refs = 2; /* the caller's and the engine's */
    r->adapter_idx = -1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    road_status st = road_sampler_create(&p->sampling, e->V, &r->sampler);
    if (st == ROAD_OK) st = road_sampler_set_prompt(r->sampler, p->prompt, p->n_prompt);
    const char *an =
        p->adapter && strcmp(p->adapter, ROAD_BASE_NAME) != 0 ? p->adapter : ROAD_BASE_NAME;
    if (st == ROAD_OK) {
        r->n_prompt = p->n_prompt;
        r->max_tokens = p->max_tokens;
        r->ignore_eos = p->ignore_eos;
        r->min_tokens = p->min_tokens;
        r->prompt = road__malloc(sizeof(int32_t) * (size_t)p->n_prompt);
        r->toks = road__malloc(sizeof(int32_t) * (size_t)p->max_tokens);
        r->adapter = road__strdup(an);
        if (p->n_stop_ids) r->stop_ids = road__malloc(sizeof(int32_t) * (size_t)p->n_stop_ids);
        if (p->n_stop) r->stop = road__calloc((size_t)p->n_stop, sizeof(char *));
        if (!r->prompt || !r->toks || !r->adapter || (p->n_stop_ids && !r->stop_ids) ||
            (p->n_stop && !r->stop))
            st = ROAD_ERR_NO_MEMORY;
    }
    if (st == ROAD_OK) {
        memcpy(r->prompt, p->prompt, sizeof(int32_t) * (size_t)p->n_prompt);
        if (p->n_stop_ids)
            memcpy(r->stop_ids, p->stop_ids, sizeof(int32_t) * (size_t)p->n_stop_ids);
        r->n_stop_ids = p->n_stop_ids;
        for (int32_t i = 0; i < p->n_stop && st == ROAD_OK; i++) {
            if (!(r->stop[i] = road__strdup(p->stop[i]))) st = ROAD_ERR_NO_MEMORY;
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
    r->t_submit = road__request_now_s();
    pthread_mutex_lock(&e->mu);
    if (e->draining || e->stopping) {
        st = road__error(ROAD_ERR_STATE, "the server is shutting down");
    } else if (e->n_waiting >= e->p.max_waiting) {
        st = road__error(ROAD_ERR_STATE, "too many requests are waiting (%d); retry later",
                         (int)e->n_waiting);
    } else if (strcmp(an, ROAD_BASE_NAME) != 0) {
        int32_t i = road__adapters_find(e, an);
        if (i < 0 || !e->ad[i].loaded || e->ad[i].draining)
            st = road__error(ROAD_ERR_NOT_FOUND, "no adapter named '%s'%s", an,
                             i >= 0 && e->ad[i].draining ? " (it is being unloaded)" : "");
        else
            r->adapter_idx = i;
    }
    if (st == ROAD_OK && e->n_waiting == e->cap_waiting) {
        int64_t cap = e->cap_waiting ? 2 * e->cap_waiting : 16;
        road_request **nw = road__realloc(e->waiting, sizeof *nw * (size_t)cap);
        if (!nw)
            st = ROAD_ERR_NO_MEMORY;
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

uint64_t road_request_id(const road_request *r) {
    return r ? r->id : 0;
}

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
        if (timeout_ms < 0)
            pthread_cond_wait(&r->cv, &r->mu);
        else if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) != 0)
            break;
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

bool road__request_is_cancelled(road_request *r) {
    pthread_mutex_lock(&r->mu);
    bool c = r->cancelled;
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* ---- tokens (the stepping thread only) -------------------------------------------------- */

/* Longest suffix of s[0..n) that is a proper prefix of one of the stop strings. */
static size_t stop_prefix_tail(const road_request *r, const char *s, size_t n) {
    size_t lim = r->max_stop_len ? r->max_stop_len - 1 : 0;
    for (size_t l = n < lim ? n : lim; l > 0; l--)
        for (int32_t i = 0; i < r->n_stop; i++)
            if (strlen(r->stop[i]) > l && memcmp(r->stop[i], s + n - l, l) == 0) return l;
    return 0;
}

/* A token for r: update text, decide whether r ends, publish. Returns true when r finished
 * (and was handed to road__request_finish). */
bool road__request_take_token(road_engine *e, road_request *r, int32_t t) {
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
    if (stop_tok)
        why = ROAD_FINISH_STOP;
    else if (r->n_gen >= r->max_tokens || r->n_prompt + r->n_gen >= e->p.max_seq_len)
        why = ROAD_FINISH_LENGTH;
    size_t release = r->pend_len;
    bool cut = false;
    /* stop strings count from min_tokens on */
    for (int32_t i = 0; i < r->n_stop && r->pend && r->n_gen >= r->min_tokens; i++) {
        /* by length: generated text may hold a NUL byte, where strstr would stop looking */
        size_t sl = strlen(r->stop[i]);
        for (size_t at = 0; at + sl <= r->pend_len && at < release; at++)
            if (memcmp(r->pend + at, r->stop[i], sl) == 0) {
                release = at;
                cut = true;
                break;
            }
    }
    if (cut)
        why = ROAD_FINISH_STOP;
    else if (why != ROAD_FINISH_NONE && r->stream) {
        if (road_tokenizer_stream_flush(r->stream, &piece, &pl) == ROAD_OK && pl)
            oom |= !text_append(&r->pend, &r->pend_len, &r->pend_cap, piece, pl);
        release = r->pend_len;
    } else if (why == ROAD_FINISH_NONE && r->n_stop) {
        release -= stop_prefix_tail(r, r->pend, r->pend_len);
    }
    double t_now = road__request_now_s();
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
        road__request_finish(e, r, ROAD_FINISH_ERROR, "out of memory for the request's text");
        return true;
    }
    if (why != ROAD_FINISH_NONE) {
        road__request_finish(e, r, why, NULL);
        return true;
    }
    return false;
}
