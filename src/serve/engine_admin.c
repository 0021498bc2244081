/*
 * serve/engine_admin.c - the engine's life and administration (road/serve.h): creation and
 * freeing, loading and unloading adapters while requests run, and the Prometheus metrics.
 *
 * Adapter commands go to the stepping thread, which runs them between two forwards: the model
 * and its adapter set are only ever changed by that thread. A load reads and checks its folder
 * on the caller's thread first (a slow disk or a FIFO must not stall generation); the stepping
 * thread only adds the finished adapter. Without an engine thread the caller is the stepping
 * thread, so commands run at once.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "serve/engine_internal.h"

road_status road_engine_create(road_model *m, const road_engine_params *p, road_engine **out) {
    if (!m || !out) return road_error(ROAD_ERR_INVALID_ARG, "road_engine_create: model or out is NULL");
    *out = NULL;
    road_engine_params q = p ? *p : road_engine_default_params();
    const road_llm_config *cfg = road_model_config(m);
    if (q.max_seq_len <= 0 || q.max_seq_len > cfg->max_position_embeddings)
        q.max_seq_len = cfg->max_position_embeddings;
    if (q.max_batch < 1 || q.max_batch > 4096)
        return road_error(ROAD_ERR_INVALID_ARG, "max_batch must be from 1 to 4096, got %d", (int)q.max_batch);
    if (q.step_tokens < q.max_batch)
        return road_error(ROAD_ERR_INVALID_ARG,
                          "step_tokens (%lld) must be at least max_batch (%d): every running "
                          "sequence decodes one token per step",
                          (long long)q.step_tokens, (int)q.max_batch);
    if (q.max_waiting < 1)
        return road_error(ROAD_ERR_INVALID_ARG, "max_waiting must be at least 1, got %d", (int)q.max_waiting);
    if (q.max_tokens_limit < 1)
        return road_error(ROAD_ERR_INVALID_ARG, "max_tokens_limit must be at least 1");
    road_adapter_set *set = road_model_adapters(m);
    if (road_adapter_set_merged(set))
        return road_error(ROAD_ERR_STATE, "the model has merged adapters: serving needs them unmerged "
                                          "(each request picks its own)");
    road_engine *e = road_calloc(1, sizeof *e);
    if (!e) return ROAD_ERR_NO_MEMORY;
    e->m = m;
    e->p = q;
    e->V = cfg->vocab_size;
    const road_generation_config *gc = road_model_generation_config(m);
    for (int32_t i = 0; i < gc->n_eos; i++) e->eos[e->n_eos++] = gc->eos_token_ids[i];
    if (e->n_eos == 0 && q.tokenizer && road_tokenizer_eos_id(q.tokenizer) >= 0)
        e->eos[e->n_eos++] = road_tokenizer_eos_id(q.tokenizer);
    e->tok_vocab = q.tokenizer ? road_tokenizer_vocab_size(q.tokenizer) : 0;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work_cv, NULL);
    pthread_cond_init(&e->cmd_cv, NULL);
    size_t B = (size_t)q.max_batch;
    e->running = road_calloc(B, sizeof *e->running);
    e->run_done = road_calloc(B, sizeof *e->run_done);
    e->gone = road_calloc((size_t)q.max_waiting, sizeof *e->gone);
    e->seqs = road_calloc(B, sizeof *e->seqs);
    e->seq_ids = road_calloc(B, sizeof *e->seq_ids);
    e->seq_run = road_calloc(B, sizeof *e->seq_run);
    e->seq_ad = road_calloc(B, sizeof *e->seq_ad);
    e->seq_tok = road_calloc(B, sizeof *e->seq_tok);
    e->logits = road_calloc(B * (size_t)e->V, sizeof(float));
    road_status st = ROAD_OK;
    if (!e->running || !e->run_done || !e->gone || !e->seqs || !e->seq_ids || !e->seq_run ||
        !e->seq_ad || !e->seq_tok || !e->logits)
        st = ROAD_ERR_NO_MEMORY;
    /* serve the adapters already in the set (under the same naming rule as loads) */
    for (int32_t i = 0; st == ROAD_OK && i < road_adapter_set_count(set); i++) {
        st = road_engine_check_adapter_name(road_adapter_set_name(set, i));
        if (st == ROAD_OK && add_adapter_entry_(e, road_adapter_set_name(set, i)) < 0)
            st = ROAD_ERR_NO_MEMORY;
    }
    if (st != ROAD_OK) {
        road_engine_free(e);
        return st;
    }
    *out = e;
    return ROAD_OK;
}

void road_engine_free(road_engine *e) {
    if (!e) return;
    if (e->running) road_engine_stop(e, false);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work_cv);
    pthread_cond_destroy(&e->cmd_cv);
    for (int32_t i = 0; i < e->n_ad; i++) road_free(e->ad[i].name);
    road_free(e->ad);
    road_free(e->waiting);
    road_free(e->running);
    road_free(e->run_done);
    road_free(e->gone);
    road_free(e->seqs);
    road_free(e->seq_ids);
    road_free(e->seq_run);
    road_free(e->seq_ad);
    road_free(e->seq_tok);
    road_free(e->logits);
    road_free(e);
}

/* ---- adapters ------------------------------------------------------------------------------ */

static road_status run_cmd(road_engine *e, engine_cmd *c) {
    pthread_mutex_lock(&e->mu);
    if (!e->started) {
        pthread_mutex_unlock(&e->mu);
        c->next = NULL;
        engine_run_command_now_(e, c);
    } else {
        engine_cmd **tail = &e->cmds;
        while (*tail) tail = &(*tail)->next;
        c->next = NULL;
        *tail = c;
        pthread_cond_broadcast(&e->work_cv);
        while (!c->done) pthread_cond_wait(&e->cmd_cv, &e->mu);
        pthread_mutex_unlock(&e->mu);
    }
    if (c->status != ROAD_OK) return road_error(c->status, "%s", c->err);
    return ROAD_OK;
}

/* Longest adapter name: it is echoed in replies, logs and metric labels. */
#define ENGINE_ADAPTER_NAME_MAX 255

road_status road_engine_check_adapter_name(const char *name) {
    bool ok = name && name[0] && strlen(name) <= ENGINE_ADAPTER_NAME_MAX &&
              strcmp(name, ROAD_BASE_NAME) != 0;
    for (const char *p = name; ok && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') ok = false;
    if (ok) return ROAD_OK;
    return road_error(ROAD_ERR_INVALID_ARG,
                      "adapter name '%.40s%s' is not allowed: names are 1 to %d bytes without "
                      "control characters, quotes or backslashes, and not %s",
                      name ? name : "(null)", name && strlen(name) > 40 ? "..." : "",
                      ENGINE_ADAPTER_NAME_MAX, ROAD_BASE_NAME);
}

road_status road_engine_load_adapter(road_engine *e, const char *name, const char *dir) {
    if (!e || !dir) return road_error(ROAD_ERR_INVALID_ARG, "load_adapter: engine or folder is NULL");
    road_status st = road_engine_check_adapter_name(name);
    if (st != ROAD_OK) return st;
    pthread_mutex_lock(&e->mu);
    int32_t i = engine_find_adapter_(e, name);
    bool taken = i >= 0 && (e->ad[i].loaded || e->ad[i].draining);
    pthread_mutex_unlock(&e->mu);
    if (taken) return road_error(ROAD_ERR_EXISTS, "an adapter named '%s' is already loaded", name);
    /* read and check the folder here, on the caller's thread, while the engine steps on */
    engine_cmd c;
    memset(&c, 0, sizeof c);
    st = road_adapter_set_load_prepare(road_model_adapters(e->m), name, dir, &c.prepared);
    if (st != ROAD_OK) return st;
    c.kind = ENGINE_CMD_LOAD;
    c.name = name;
    st = run_cmd(e, &c);
    road_adapter_load_free(c.prepared);
    return st;
}

road_status road_engine_unload_adapter(road_engine *e, const char *name, bool wait) {
    if (!e || !name) return road_error(ROAD_ERR_INVALID_ARG, "unload_adapter: engine or name is NULL");
    pthread_mutex_lock(&e->mu);
    int32_t i = engine_find_adapter_(e, name);
    road_status st = ROAD_OK;
    if (i < 0 || !e->ad[i].loaded || e->ad[i].draining)
        st = road_error(ROAD_ERR_NOT_FOUND, "no adapter named '%s' is loaded%s", name,
                        i >= 0 && e->ad[i].draining ? " (it is being unloaded already)" : "");
    else if (e->ad[i].in_use > 0 && (!wait || !e->started))
        st = road_error(ROAD_ERR_STATE, "adapter '%s' is used by %lld request(s); unload it when they "
                        "are done", name, (long long)e->ad[i].in_use);
    else
        e->ad[i].draining = true; /* from now on new requests for it are refused */
    pthread_mutex_unlock(&e->mu);
    if (st != ROAD_OK) return st;
    engine_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = ENGINE_CMD_UNLOAD;
    c.name = name;
    return run_cmd(e, &c);
}

void road_engine_foreach_adapter(road_engine *e, void (*fn)(const char *name, void *user),
                                 void *user) {
    pthread_mutex_lock(&e->mu);
    for (int32_t i = 0; i < e->n_ad; i++)
        if (e->ad[i].loaded && !e->ad[i].draining) fn(e->ad[i].name, user);
    pthread_mutex_unlock(&e->mu);
}

bool road_engine_has_adapter(road_engine *e, const char *name) {
    pthread_mutex_lock(&e->mu);
    int32_t i = engine_find_adapter_(e, name);
    bool has = i >= 0 && e->ad[i].loaded && !e->ad[i].draining;
    pthread_mutex_unlock(&e->mu);
    return has;
}

/* ---- metrics --------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)k;
        char *ns = road_realloc(b->s, nc);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
}

/* One sample with an adapter label. Label values are escaped as the Prometheus text format
 * requires (backslash, double quote, newline), whatever the name holds: one odd name must not
 * break the whole scrape. */
static void sb_adapter_sample(sbuf *b, const char *metric, const char *name, long long v) {
    sb_printf(b, "%s{adapter=\"", metric);
    for (const char *p = name; *p; p++) {
        if (*p == '\\') sb_printf(b, "\\\\");
        else if (*p == '"') sb_printf(b, "\\\"");
        else if (*p == '\n') sb_printf(b, "\\n");
        else sb_printf(b, "%c", *p);
    }
    sb_printf(b, "\"} %lld\n", v);
}

#define METRIC(b, type, name, help) sb_printf(b, "# HELP " name " " help "\n# TYPE " name " " type "\n")

road_status road_engine_metrics(road_engine *e, char **text) {
    if (!e || !text) return road_error(ROAD_ERR_INVALID_ARG, "metrics: engine or text is NULL");
    *text = NULL;
    sbuf b = {road_malloc(4096), 0, 4096, false};
    if (!b.s) return ROAD_ERR_NO_MEMORY;
    b.s[0] = '\0';
    pthread_mutex_lock(&e->mu);
    const engine_stats *s = &e->stats;
    METRIC(&b, "counter", "road_requests_received_total", "Requests the engine accepted.");
    sb_printf(&b, "road_requests_received_total %lld\n", (long long)s->received);
    METRIC(&b, "counter", "road_requests_finished_total", "Requests that ended, by finish reason.");
    for (int f = ROAD_FINISH_STOP; f <= ROAD_FINISH_ERROR; f++)
        sb_printf(&b, "road_requests_finished_total{reason=\"%s\"} %lld\n",
                  road_finish_reason_name((road_finish_reason)f), (long long)s->finished[f]);
    METRIC(&b, "gauge", "road_requests_waiting", "Requests queued, not yet in the batch.");
    sb_printf(&b, "road_requests_waiting %lld\n", (long long)e->n_waiting);
    METRIC(&b, "gauge", "road_requests_running", "Sequences in the running batch.");
    sb_printf(&b, "road_requests_running %lld\n", (long long)e->n_running);
    METRIC(&b, "gauge", "road_batch_capacity", "max_batch: sequences one step may run.");
    sb_printf(&b, "road_batch_capacity %d\n", (int)e->p.max_batch);
    METRIC(&b, "gauge", "road_batch_occupancy", "Sequences in the last step / max_batch.");
    sb_printf(&b, "road_batch_occupancy %.6f\n", (double)s->last_batch / (double)e->p.max_batch);
    METRIC(&b, "counter", "road_engine_steps_total", "Forward passes run.");
    sb_printf(&b, "road_engine_steps_total %lld\n", (long long)s->steps);
    METRIC(&b, "counter", "road_engine_step_sequences_total",
           "Sequences over all steps (divided by steps: mean batch size).");
    sb_printf(&b, "road_engine_step_sequences_total %lld\n", (long long)s->step_seqs);
    METRIC(&b, "counter", "road_engine_step_tokens_total", "Token rows over all steps (prefill and decode).");
    sb_printf(&b, "road_engine_step_tokens_total %lld\n", (long long)s->step_rows);
    METRIC(&b, "counter", "road_prompt_tokens_total", "Prompt tokens prefilled.");
    sb_printf(&b, "road_prompt_tokens_total %lld\n", (long long)s->prompt_tokens);
    METRIC(&b, "counter", "road_generation_tokens_total", "Tokens generated.");
    sb_printf(&b, "road_generation_tokens_total %lld\n", (long long)s->gen_tokens);
    METRIC(&b, "summary", "road_time_to_first_token_seconds", "Submit to first token.");
    sb_printf(&b, "road_time_to_first_token_seconds_sum %.6f\n", s->ttft_sum);
    sb_printf(&b, "road_time_to_first_token_seconds_count %lld\n", (long long)s->ttft_count);
    METRIC(&b, "gauge", "road_adapters_loaded", "Adapters served.");
    int32_t loaded = 0;
    for (int32_t i = 0; i < e->n_ad; i++) loaded += e->ad[i].loaded;
    sb_printf(&b, "road_adapters_loaded %d\n", (int)loaded);
    METRIC(&b, "counter", "road_adapter_requests_total", "Requests accepted per adapter (__base__: none).");
    sb_adapter_sample(&b, "road_adapter_requests_total", ROAD_BASE_NAME, (long long)e->base_requests);
    for (int32_t i = 0; i < e->n_ad; i++)
        sb_adapter_sample(&b, "road_adapter_requests_total", e->ad[i].name, (long long)e->ad[i].requests);
    METRIC(&b, "counter", "road_adapter_generation_tokens_total", "Tokens generated per adapter.");
    sb_adapter_sample(&b, "road_adapter_generation_tokens_total", ROAD_BASE_NAME,
                      (long long)e->base_gen_tokens);
    for (int32_t i = 0; i < e->n_ad; i++)
        sb_adapter_sample(&b, "road_adapter_generation_tokens_total", e->ad[i].name,
                          (long long)e->ad[i].gen_tokens);
    METRIC(&b, "gauge", "road_adapter_requests_active", "Waiting and running requests per adapter.");
    for (int32_t i = 0; i < e->n_ad; i++)
        if (e->ad[i].loaded)
            sb_adapter_sample(&b, "road_adapter_requests_active", e->ad[i].name, (long long)e->ad[i].in_use);
    pthread_mutex_unlock(&e->mu);
    if (b.oom) {
        road_free(b.s);
        return ROAD_ERR_NO_MEMORY;
    }
    *text = b.s;
    return ROAD_OK;
}
