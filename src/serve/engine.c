/*
 * serve/engine.c - the continuous-batching engine (road/serve.h): creation, the scheduler loop
 * on its own thread, and the batch step.
 *
 * One thread steps the engine and is the only one touching the model; everything else talks to
 * it through two locks: the engine's (queue, adapter registry, commands, counters) and each
 * request's own (its output, finish state, cancel flag), so a request can outlive the engine.
 * A request's own life (submit, tokens and text, wait, cancel) is serve/request.c; the adapter
 * registry and its commands are serve/adapters.c; the metrics text is serve/metrics.c.
 *
 * A step: run adapter commands (load, unload once unused), drop cancelled requests, admit
 * waiting ones (FIFO) up to max_batch, then build one ragged batch: first every decoding
 * sequence (one token), then prompt chunks of the prefilling ones in admission order until the
 * step's token budget is spent (chunked prefill). One road_model_forward runs it all, each
 * sequence naming its own adapter. A sequence whose prompt is complete samples its next token;
 * finished ones leave the batch in the same step, so their slot is free for the next admission.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

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

road_engine_params road_engine_default_params(void) {
    road_engine_params p;
    memset(&p, 0, sizeof p);
    p.max_batch = ENGINE_DEFAULT_MAX_BATCH;
    p.step_tokens = ENGINE_DEFAULT_STEP_TOKENS;
    p.max_waiting = ENGINE_DEFAULT_MAX_WAITING;
    p.max_tokens_limit = ENGINE_DEFAULT_MAX_TOKENS_LIMIT;
    return p;
}

road_status road_engine_create(road_model *m, const road_engine_params *p, road_engine **out) {
    if (!m || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_engine_create: model or out is NULL");
    *out = NULL;
    road_engine_params q = p ? *p : road_engine_default_params();
    const road_llm_config *cfg = road_model_config(m);
    if (q.max_seq_len <= 0 || q.max_seq_len > road_llm_config_max_tokens(cfg))
        q.max_seq_len = road_llm_config_max_tokens(cfg);
    if (q.max_batch < 1 || q.max_batch > 4096)
        return road__error(ROAD_ERR_INVALID_ARG, "max_batch must be from 1 to 4096, got %d",
                           (int)q.max_batch);
    if (q.step_tokens < q.max_batch)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "step_tokens (%lld) must be at least max_batch (%d): every running "
                           "sequence decodes one token per step",
                           (long long)q.step_tokens, (int)q.max_batch);
    if (q.max_waiting < 1)
        return road__error(ROAD_ERR_INVALID_ARG, "max_waiting must be at least 1, got %d",
                           (int)q.max_waiting);
    if (q.max_tokens_limit < 1)
        return road__error(ROAD_ERR_INVALID_ARG, "max_tokens_limit must be at least 1");
    if (q.kv_dtype != ROAD_DTYPE_F32 && q.kv_dtype != ROAD_DTYPE_BF16 &&
        q.kv_dtype != ROAD_DTYPE_F16)
        return road__error(ROAD_ERR_INVALID_ARG, "kv_dtype must be F32, BF16 or F16, got %s",
                           road_dtype_name(q.kv_dtype));
    road_adapter_set *set = road_model_adapters(m);
    if (road_adapter_set_merged(set))
        return road__error(ROAD_ERR_STATE,
                           "the model has merged adapters: serving needs them unmerged "
                           "(each request picks its own)");
    road_engine *e = road__calloc(1, sizeof *e);
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
    e->running = road__calloc(B, sizeof *e->running);
    e->run_done = road__calloc(B, sizeof *e->run_done);
    e->gone = road__calloc((size_t)q.max_waiting, sizeof *e->gone);
    e->seqs = road__calloc(B, sizeof *e->seqs);
    e->seq_ids = road__calloc(B, sizeof *e->seq_ids);
    e->seq_run = road__calloc(B, sizeof *e->seq_run);
    e->seq_ad = road__calloc(B, sizeof *e->seq_ad);
    e->seq_tok = road__calloc(B, sizeof *e->seq_tok);
    e->logits = road__calloc(B * (size_t)e->V, sizeof(float));
    road_status st = ROAD_OK;
    if (!e->running || !e->run_done || !e->gone || !e->seqs || !e->seq_ids || !e->seq_run ||
        !e->seq_ad || !e->seq_tok || !e->logits)
        st = ROAD_ERR_NO_MEMORY;
    /* serve the adapters already in the set (under the same naming rule as loads) */
    for (int32_t i = 0; st == ROAD_OK && i < road_adapter_set_count(set); i++) {
        st = road_engine_check_adapter_name(road_adapter_set_name(set, i));
        if (st == ROAD_OK && road__adapters_add_entry(e, road_adapter_set_name(set, i)) < 0)
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
    for (int32_t i = 0; i < e->n_ad; i++) road__free(e->ad[i].name);
    road__free(e->ad);
    road__free(e->waiting);
    road__free(e->running);
    road__free(e->run_done);
    road__free(e->gone);
    road__free(e->seqs);
    road__free(e->seq_ids);
    road__free(e->seq_run);
    road__free(e->seq_ad);
    road__free(e->seq_tok);
    road__free(e->logits);
    road__free(e);
}

/* ---- one step (the stepping thread only) ------------------------------------------------ */

/* Give r its KV cache and text decoder when it joins the batch. */
static road_status prepare(road_engine *e, road_request *r) {
    int64_t need = r->n_prompt + r->max_tokens;
    if (need > e->p.max_seq_len) need = e->p.max_seq_len;
    road_status st = road_kv_cache_create_ex(e->m, need, e->p.kv_dtype, &r->cache);
    if (st == ROAD_OK && e->p.tokenizer)
        st = road_tokenizer_stream_create(e->p.tokenizer, true, &r->stream);
    return st;
}

static int64_t engine_step(road_engine *e) {
    road__adapters_run_commands(e);
    /* cancelled waiting requests leave; admissions (FIFO) */
    pthread_mutex_lock(&e->mu);
    int64_t kept = 0, n_gone = 0;
    for (int64_t i = 0; i < e->n_waiting; i++) {
        road_request *r = e->waiting[i];
        if (road__request_is_cancelled(r))
            e->gone[n_gone++] = r;
        else
            e->waiting[kept++] = r;
    }
    e->n_waiting = kept;
    double t_now = road__request_now_s();
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
    for (int64_t i = 0; i < n_gone; i++)
        road__request_finish(e, e->gone[i], ROAD_FINISH_CANCELLED, NULL);

    /* cancelled running requests leave; newly admitted ones get their caches */
    int64_t n_run = 0;
    for (int64_t i = 0; i < e->n_running; i++) {
        road_request *r = e->running[i];
        if (road__request_is_cancelled(r)) {
            road__request_finish(e, r, ROAD_FINISH_CANCELLED, NULL);
            continue;
        }
        if (!r->cache) {
            road_status st = prepare(e, r);
            if (st != ROAD_OK) {
                road__request_finish(e, r, ROAD_FINISH_ERROR, road_last_error());
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
            road__request_finish(e, r, ROAD_FINISH_ERROR, err);
            e->run_done[j] = true;
            continue;
        }
        if (r->n_done_prompt < r->n_prompt) {
            r->n_done_prompt += e->seqs[i].n_tokens;
            if (r->n_done_prompt < r->n_prompt) continue;
            prompt_done += r->n_prompt;
        }
        float *row = e->logits + i * e->V;
        if (r->n_gen < r->min_tokens) { /* nothing that would end it yet */
            if (!r->ignore_eos)
                for (int32_t q = 0; q < e->n_eos; q++)
                    if (e->eos[q] >= 0 && e->eos[q] < e->V) row[e->eos[q]] = -INFINITY;
            for (int32_t q = 0; q < r->n_stop_ids; q++)
                if (r->stop_ids[q] >= 0 && r->stop_ids[q] < e->V) row[r->stop_ids[q]] = -INFINITY;
        }
        int32_t t = road_sampler_sample(r->sampler, row);
        gen++;
        e->seq_tok[i] = true;
        e->run_done[j] = road__request_take_token(e, r, t); /* r may be gone after this */
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
        if (e->seq_ad[i] >= 0)
            e->ad[e->seq_ad[i]].gen_tokens++;
        else
            e->base_gen_tokens++;
    }
    pthread_mutex_unlock(&e->mu);
    return k;
}

road_status road_engine_step(road_engine *e, int64_t *n_seq) {
    if (!e) return road__error(ROAD_ERR_INVALID_ARG, "road_engine_step: engine is NULL");
    pthread_mutex_lock(&e->mu);
    bool started = e->started;
    pthread_mutex_unlock(&e->mu);
    if (started)
        return road__error(ROAD_ERR_STATE, "road_engine_step: the engine thread is running; "
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
    if (!e) return road__error(ROAD_ERR_INVALID_ARG, "road_engine_start: engine is NULL");
    pthread_mutex_lock(&e->mu);
    if (e->started) {
        pthread_mutex_unlock(&e->mu);
        return road__error(ROAD_ERR_STATE, "the engine is already running");
    }
    e->started = true;
    e->stopping = e->draining = false;
    e->n_threads = road_get_num_threads();
    int rc = pthread_create(&e->thread, NULL, engine_main, e);
    if (rc != 0) e->started = false;
    pthread_mutex_unlock(&e->mu);
    if (rc != 0)
        return road__error(ROAD_ERR_INTERNAL, "cannot start the engine thread (error %d)", rc);
    return ROAD_OK;
}

/* Cancel everything still queued or running (no engine thread running). */
static void cancel_all(road_engine *e) {
    pthread_mutex_lock(&e->mu);
    int64_t nw = e->n_waiting;
    e->n_waiting = 0;
    pthread_mutex_unlock(&e->mu);
    for (int64_t i = 0; i < nw; i++)
        road__request_finish(e, e->waiting[i], ROAD_FINISH_CANCELLED, NULL);
    for (int64_t i = 0; i < e->n_running; i++)
        road__request_finish(e, e->running[i], ROAD_FINISH_CANCELLED, NULL);
    pthread_mutex_lock(&e->mu);
    e->n_running = 0;
    /* commands that were waiting for requests: done now (unload can proceed) */
    pthread_mutex_unlock(&e->mu);
    road__adapters_run_commands(e);
}

void road_engine_stop(road_engine *e, bool drain) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    bool started = e->started;
    if (drain)
        e->draining = true;
    else
        e->stopping = true;
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
