/*
 * serve/metrics.c - the engine's counters as Prometheus text (road_engine_metrics; the server
 * adds its HTTP reply counts for GET /metrics).
 *
 * Apart from the engine and the registry because it is their only reader of every counter at
 * once: a new metric is a counter bumped where its event happens and a few lines here. The
 * whole text is formatted under the engine's lock, so one scrape is one consistent snapshot.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "serve/engine_internal.h"

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
        char *ns = road__realloc(b->s, nc);
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
    if (!e || !text) return road__error(ROAD_ERR_INVALID_ARG, "metrics: engine or text is NULL");
    *text = NULL;
    sbuf b = {road__malloc(4096), 0, 4096, false};
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
        road__free(b.s);
        return ROAD_ERR_NO_MEMORY;
    }
    *text = b.s;
    return ROAD_OK;
}
