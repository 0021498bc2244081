/*
 * tests/test_serve.c - the serving engine driven in-process (road/serve.h), no HTTP:
 *   - mixed adapters: requests for A, B, C and the base model sharing batches, joining at
 *     different steps, with chunked prefill, give exactly the tokens each gives alone (same seed);
 *   - the schedule (through the step hook): every step within the token budget, decodes never
 *     starved by a long prompt, finished and cancelled sequences gone at the next step;
 *   - stop ids, stop strings (text cut before the match), max_tokens and context limits;
 *   - refusals: unknown adapter, prompt longer than the context, bad sampling, full queue;
 *   - adapters at run time: a broken folder changes nothing, unload refuses or waits;
 *   - the request parser of serve/api.c on good and malformed bodies; the metrics text.
 * The model is tiny-llama with a 260-token byte tokenizer (tu_make_text_model).
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/api.h"
#include "testutil.h"

#define ADAPTERS ROAD_FIXTURES "/llama/tiny-llama/adapters"
#define MAX_OUT 128

static char dir[64];
static road_model *model;
static road_tokenizer *tok;

static int setup(void **state) {
    (void)state;
    tu_make_text_model(dir, sizeof dir);
    road_model_params mp = road_model_default_params();
    if (road_model_load(dir, &mp, &model) != ROAD_OK) return -1;
    if (road_tokenizer_load(dir, &tok) != ROAD_OK) return -1;
    road_adapter_set *set = road_model_adapters(model);
    if (road_adapter_set_load(set, "A", ADAPTERS "/A") != ROAD_OK ||
        road_adapter_set_load(set, "B", ADAPTERS "/B") != ROAD_OK ||
        road_adapter_set_load(set, "C", ADAPTERS "/C") != ROAD_OK)
        return -1;
    return road_adapter_set_set_active(set, NULL, 0) == ROAD_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    road_tokenizer_free(tok);
    road_model_free(model);
    tu_rm_rf(dir);
    return 0;
}

/* ---- schedule recording ---------------------------------------------------------------------- */

#define MAX_STEPS 512
typedef struct trace {
    int64_t n;
    int64_t n_seq[MAX_STEPS], rows[MAX_STEPS];
    uint64_t ids[MAX_STEPS][16];
    int64_t toks[MAX_STEPS][16];
} trace;

static void on_step(const road_engine_step_info *info, void *user) {
    trace *t = user;
    if (t->n >= MAX_STEPS) return;
    t->n_seq[t->n] = info->n_seq;
    t->rows[t->n] = info->n_tokens;
    for (int64_t i = 0; i < info->n_seq && i < 16; i++) {
        t->ids[t->n][i] = info->request_ids[i];
        t->toks[t->n][i] = info->seqs[i].n_tokens;
    }
    t->n++;
}

static bool step_has(const trace *t, int64_t step, uint64_t id, int64_t *n_tok) {
    for (int64_t i = 0; i < t->n_seq[step] && i < 16; i++)
        if (t->ids[step][i] == id) {
            if (n_tok) *n_tok = t->toks[step][i];
            return true;
        }
    return false;
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

typedef struct job {
    const char *adapter;
    int32_t prompt[100];
    int64_t n_prompt;
    uint64_t seed;
    int64_t max_tokens;
} job;

static road_engine *new_engine(int32_t max_batch, int64_t step_tokens, trace *t) {
    road_engine_params p = road_engine_default_params();
    p.max_batch = max_batch;
    p.step_tokens = step_tokens;
    p.tokenizer = tok;
    p.on_step = t ? on_step : NULL;
    p.on_step_user = t;
    road_engine *e;
    TU_OK(road_engine_create(model, &p, &e));
    return e;
}

static road_request *submit(road_engine *e, const job *j) {
    road_request_params p = road_request_default_params();
    p.prompt = j->prompt;
    p.n_prompt = j->n_prompt;
    p.adapter = j->adapter;
    p.sampling.temperature = 0.9f;
    p.sampling.top_k = 40;
    p.sampling.seed = j->seed;
    p.max_tokens = j->max_tokens;
    p.ignore_eos = true;
    road_request *r;
    TU_OK(road_engine_submit(e, &p, &r));
    return r;
}

static void run_until_idle(road_engine *e) {
    int64_t n = 1;
    for (int guard = 0; n > 0 && guard < 10000; guard++) TU_OK(road_engine_step(e, &n));
}

static road_finish_reason finish_of(road_request *r) {
    road_request_state st;
    road_request_wait(r, 0, 0, 0, &st);
    return st.finish;
}

static void make_jobs(job *jobs, int n) {
    static const char *const names[] = {"A", "B", NULL, "C", "A", ROAD_BASE_NAME};
    for (int i = 0; i < n; i++) {
        jobs[i].adapter = names[i % 6];
        jobs[i].n_prompt = i == 2 ? 70 : 3 + i; /* job 2: a long prompt, prefilled in chunks */
        for (int64_t k = 0; k < jobs[i].n_prompt; k++)
            jobs[i].prompt[k] = (int32_t)(3 + (k * 7 + i * 13) % 250);
        jobs[i].seed = 1000 + (uint64_t)i;
        jobs[i].max_tokens = 10 + 3 * i;
    }
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_mixed_equals_alone(void **state) {
    (void)state;
    enum { N = 6 };
    job jobs[N];
    make_jobs(jobs, N);
    int32_t alone[N][MAX_OUT];
    int64_t n_alone[N];
    for (int i = 0; i < N; i++) { /* each alone, one engine each */
        road_engine *e = new_engine(4, 16, NULL);
        road_request *r = submit(e, &jobs[i]);
        run_until_idle(e);
        assert_int_equal(finish_of(r), ROAD_FINISH_LENGTH);
        n_alone[i] = road_request_tokens(r, 0, alone[i], MAX_OUT);
        assert_int_equal(n_alone[i], jobs[i].max_tokens);
        road_request_release(r);
        road_engine_free(e);
    }
    /* together: 4 slots for 6 requests (two wait), budget 16 tokens per step (job 2's 70-token
     * prompt takes several steps), and requests joining while others decode */
    trace t;
    memset(&t, 0, sizeof t);
    road_engine *e = new_engine(4, 16, &t);
    road_request *r[N];
    r[0] = submit(e, &jobs[0]);
    r[1] = submit(e, &jobs[1]);
    for (int k = 0; k < 3; k++) TU_OK(road_engine_step(e, NULL));
    for (int i = 2; i < N; i++) r[i] = submit(e, &jobs[i]);
    run_until_idle(e);
    for (int i = 0; i < N; i++) {
        int32_t got[MAX_OUT];
        int64_t n = road_request_tokens(r[i], 0, got, MAX_OUT);
        assert_int_equal(finish_of(r[i]), ROAD_FINISH_LENGTH);
        assert_int_equal(n, n_alone[i]);
        for (int64_t k = 0; k < n; k++)
            if (got[k] != alone[i][k])
                fail_msg("request %d (adapter %s): token %lld is %d in the mixed batch, %d alone",
                         i, jobs[i].adapter ? jobs[i].adapter : "base", (long long)k, got[k],
                         alone[i][k]);
    }
    /* the schedule: within budget; sequences of several adapters shared steps */
    int64_t max_seq = 0;
    for (int64_t s = 0; s < t.n; s++) {
        assert_true(t.rows[s] <= 16);
        assert_true(t.n_seq[s] <= 4);
        if (t.n_seq[s] > max_seq) max_seq = t.n_seq[s];
    }
    assert_int_equal(max_seq, 4);
    /* job 2 (70 tokens) was prefilled in chunks while the others kept decoding */
    uint64_t id2 = road_request_id(r[2]);
    int chunks = 0;
    for (int64_t s = 0; s < t.n; s++) {
        int64_t nt;
        if (step_has(&t, s, id2, &nt) && nt > 1) {
            chunks++;
            /* a sequence already decoding (job 0 or 1, still short of its tokens) ran too */
            assert_true(t.n_seq[s] >= 2);
        }
    }
    assert_true(chunks >= 5); /* 70 tokens at <= 16 a step */
    for (int i = 0; i < N; i++) road_request_release(r[i]);
    road_engine_free(e);
}

static void test_schedule_join_leave_cancel(void **state) {
    (void)state;
    trace t;
    memset(&t, 0, sizeof t);
    road_engine *e = new_engine(8, 32, &t);
    job jobs[3];
    make_jobs(jobs, 3);
    jobs[0].max_tokens = 3; /* leaves after 3 tokens */
    jobs[1].max_tokens = 40;
    jobs[2].max_tokens = 40;
    road_request *a = submit(e, &jobs[0]), *b = submit(e, &jobs[1]);
    int64_t n;
    TU_OK(road_engine_step(e, &n)); /* prefill both */
    assert_int_equal(n, 2);
    road_request *c = submit(e, &jobs[2]); /* 70-token prompt joins the running batch */
    TU_OK(road_engine_step(e, &n));
    /* step 1: a and b decode (1 token each) and c's prompt gets the remaining 30 */
    int64_t nt;
    assert_true(step_has(&t, 1, road_request_id(a), &nt) && nt == 1);
    assert_true(step_has(&t, 1, road_request_id(b), &nt) && nt == 1);
    assert_true(step_has(&t, 1, road_request_id(c), &nt) && nt == 30);
    TU_OK(road_engine_step(e, &n)); /* a's third token: it finishes */
    assert_int_equal(finish_of(a), ROAD_FINISH_LENGTH);
    TU_OK(road_engine_step(e, &n));
    assert_false(step_has(&t, 3, road_request_id(a), NULL)); /* gone at once */
    assert_true(step_has(&t, 3, road_request_id(b), &nt) && nt == 1);
    /* cancel b: it leaves at the next step, c goes on */
    road_request_cancel(b);
    TU_OK(road_engine_step(e, &n));
    assert_false(step_has(&t, 4, road_request_id(b), NULL));
    assert_true(step_has(&t, 4, road_request_id(c), NULL));
    assert_int_equal(finish_of(b), ROAD_FINISH_CANCELLED);
    /* releasing a running request cancels it too */
    road_request_release(c);
    TU_OK(road_engine_step(e, &n));
    assert_int_equal(n, 0);
    road_request_release(a);
    road_request_release(b);
    char *m;
    TU_OK(road_engine_metrics(e, &m));
    assert_non_null(strstr(m, "road_requests_finished_total{reason=\"cancelled\"} 2"));
    assert_non_null(strstr(m, "road_requests_finished_total{reason=\"length\"} 1"));
    assert_non_null(strstr(m, "road_adapter_requests_total{adapter=\"A\"} 1"));
    assert_non_null(strstr(m, "road_batch_occupancy"));
    road_string_free(m);
    road_engine_free(e);
}

static void test_stops(void **state) {
    (void)state;
    road_engine *e = new_engine(4, 64, NULL);
    const char *prompt = "Hello there";
    int32_t ids[64];
    size_t n_ids;
    TU_OK(road_tokenizer_encode(tok, prompt, strlen(prompt), true, ids, 64, &n_ids));
    road_request_params p = road_request_default_params();
    p.prompt = ids;
    p.n_prompt = (int64_t)n_ids;
    p.adapter = "B";
    p.max_tokens = 40;
    p.ignore_eos = true;
    road_request *r;
    TU_OK(road_engine_submit(e, &p, &r));
    run_until_idle(e);
    int32_t toks[64];
    int64_t nt = road_request_tokens(r, 0, toks, 64);
    char text[1024];
    road_request_state st;
    road_request_wait(r, 0, 0, 0, &st);
    size_t tl = road_request_text(r, 0, text, sizeof text - 1);
    text[tl] = '\0';
    assert_int_equal(nt, 40);
    assert_int_equal(st.finish, ROAD_FINISH_LENGTH);
    /* the text is what streaming-decoding the ids gives (ids past the tokenizer's 260 have no
     * text; a stream and a whole decode differ on invalid byte runs, see road/tokenizer.h) */
    char dec[1024];
    size_t dl = 0;
    road_tokenizer_stream *ts;
    TU_OK(road_tokenizer_stream_create(tok, true, &ts));
    for (int64_t i = 0; i <= nt; i++) {
        const char *piece;
        size_t pl;
        if (i < nt && toks[i] >= road_tokenizer_vocab_size(tok)) continue;
        TU_OK(i < nt ? road_tokenizer_stream_push(ts, toks[i], &piece, &pl)
                     : road_tokenizer_stream_flush(ts, &piece, &pl));
        memcpy(dec + dl, piece, pl);
        dl += pl;
    }
    road_tokenizer_stream_free(ts);
    assert_int_equal(dl, tl);
    assert_memory_equal(dec, text, tl);
    road_request_release(r);

    /* a stop id: generation ends with it */
    int32_t stop_id = toks[5];
    int64_t first = 0;
    while (toks[first] != stop_id) first++;
    p.stop_ids = &stop_id;
    p.n_stop_ids = 1;
    TU_OK(road_engine_submit(e, &p, &r));
    run_until_idle(e);
    road_request_wait(r, 0, 0, 0, &st);
    assert_int_equal(st.finish, ROAD_FINISH_STOP);
    assert_int_equal(st.n_tokens, first + 1);
    road_request_release(r);

    /* min_tokens past the stop id's first place: the id is not sampled before min_tokens
     * (greedy takes the next best there), and generation ends at its first later sampling */
    p.min_tokens = first + 3;
    TU_OK(road_engine_submit(e, &p, &r));
    run_until_idle(e);
    road_request_wait(r, 0, 0, 0, &st);
    int32_t mt[64];
    int64_t nm = road_request_tokens(r, 0, mt, 64);
    assert_true(nm >= p.min_tokens);
    for (int64_t i = 0; i < p.min_tokens; i++) assert_int_not_equal(mt[i], stop_id);
    for (int64_t i = 0; i <= first; i++) assert_int_equal(mt[i], i < first ? toks[i] : mt[i]);
    assert_int_not_equal(mt[first], toks[first]);
    if (st.finish == ROAD_FINISH_STOP) assert_int_equal(mt[nm - 1], stop_id);
    road_request_release(r);
    p.min_tokens = 41; /* > max_tokens */
    assert_int_equal(road_engine_submit(e, &p, &r), ROAD_ERR_INVALID_ARG);
    assert_non_null(strstr(road_last_error(), "min_tokens"));
    p.min_tokens = 0;
    p.stop_ids = NULL;
    p.n_stop_ids = 0;

    /* a logit_bias of -100 on the greedy run's first token moves the first pick; a strong
     * frequency penalty keeps 40 greedy tokens from repeating any token more than the
     * unpenalized run does */
    const road_logit_bias ban = {toks[0], -100.0f};
    p.sampling.logit_bias = &ban;
    p.sampling.n_logit_bias = 1;
    TU_OK(road_engine_submit(e, &p, &r));
    run_until_idle(e);
    assert_int_equal(road_request_tokens(r, 0, mt, 64), 40);
    for (int64_t i = 0; i < 40; i++) assert_int_not_equal(mt[i], toks[0]);
    road_request_release(r);
    p.sampling.logit_bias = NULL;
    p.sampling.n_logit_bias = 0;
    p.sampling.frequency_penalty = 2.0f;
    p.sampling.presence_penalty = 2.0f;
    TU_OK(road_engine_submit(e, &p, &r));
    run_until_idle(e);
    assert_int_equal(road_request_tokens(r, 0, mt, 64), 40);
    int max_rep = 0, max_rep0 = 0;
    for (int64_t i = 0; i < 40; i++) {
        int c = 0, c0 = 0;
        for (int64_t j = 0; j < 40; j++) c += mt[j] == mt[i], c0 += toks[j] == toks[i];
        max_rep = c > max_rep ? c : max_rep;
        max_rep0 = c0 > max_rep0 ? c0 : max_rep0;
    }
    assert_true(max_rep <= max_rep0);
    assert_true(max_rep0 > 1); /* the fixture's greedy run repeats: the check can fail */
    road_request_release(r);
    p.sampling.frequency_penalty = 0.0f;
    p.sampling.presence_penalty = 0.0f;

    /* a stop string taken from the middle of the text: the text ends right before it */
    if (tl >= 12) {
        char stop[4];
        size_t at = tl / 2;
        while (at < tl && ((unsigned char)text[at] & 0xC0) == 0x80) at++; /* a char boundary */
        memcpy(stop, text + at, 1);
        stop[1] = '\0';
        const char *first_hit = strstr(text, stop);
        const char *stops[] = {"\x01never", stop};
        p.stop = stops;
        p.n_stop = 2;
        TU_OK(road_engine_submit(e, &p, &r));
        run_until_idle(e);
        road_request_wait(r, 0, 0, 0, &st);
        char t2[1024];
        size_t l2 = road_request_text(r, 0, t2, sizeof t2);
        assert_int_equal(st.finish, ROAD_FINISH_STOP);
        assert_int_equal(l2, (size_t)(first_hit - text));
        assert_memory_equal(t2, text, l2);
        road_request_release(r);
    }
    /* max_tokens beyond the context: ends at max_seq_len (128) with "length" */
    p.stop = NULL;
    p.n_stop = 0;
    p.max_tokens = 1000;
    TU_OK(road_engine_submit(e, &p, &r));
    run_until_idle(e);
    road_request_wait(r, 0, 0, 0, &st);
    assert_int_equal(st.finish, ROAD_FINISH_LENGTH);
    assert_int_equal(st.n_prompt + st.n_tokens, 128);
    road_request_release(r);
    road_engine_free(e);
}

static void test_refusals(void **state) {
    (void)state;
    road_engine_params ep = road_engine_default_params();
    ep.max_waiting = 2;
    ep.tokenizer = tok;
    road_engine *e;
    TU_OK(road_engine_create(model, &ep, &e));
    int32_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = 5;
    road_request_params p = road_request_default_params();
    p.prompt = ids;
    p.n_prompt = 4;
    road_request *r = NULL, *q1, *q2;
    p.adapter = "nope";
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_NOT_FOUND, "nope");
    p.adapter = "A";
    p.n_prompt = 128;
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_SHAPE, "context");
    p.n_prompt = 4;
    p.sampling.temperature = -1;
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_INVALID_ARG, "temperature");
    p.sampling.temperature = 0;
    p.sampling.top_p = 0;
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_INVALID_ARG, "top_p");
    p.sampling.top_p = 1;
    p.max_tokens = 0;
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_INVALID_ARG, "max_tokens");
    p.max_tokens = 4;
    ids[0] = 320;
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_INVALID_ARG, "0..319");
    ids[0] = 5;
    const char *empty[] = {""};
    p.stop = empty;
    p.n_stop = 1;
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_INVALID_ARG, "stop");
    p.stop = NULL;
    p.n_stop = 0;
    assert_null(r);
    TU_OK(road_engine_submit(e, &p, &q1));
    TU_OK(road_engine_submit(e, &p, &q2));
    TU_FAILS(road_engine_submit(e, &p, &r), ROAD_ERR_STATE, "waiting");
    run_until_idle(e);
    TU_OK(road_engine_submit(e, &p, &r)); /* room again */
    road_request_release(r);
    road_request_release(q1);
    road_request_release(q2);
    ep.step_tokens = 8;
    ep.max_batch = 16;
    road_engine *bad;
    TU_FAILS(road_engine_create(model, &ep, &bad), ROAD_ERR_INVALID_ARG, "step_tokens");
    road_engine_free(e);
}

/* --kv-dtype's engine side: every sequence's cache is of the type asked for (seen from the
 * step callback), and generation runs on it; a type a cache cannot hold is refused. */
typedef struct kv_seen {
    int steps, wrong;
    int64_t bytes;
} kv_seen;

static void on_step_kv(const road_engine_step_info *info, void *user) {
    kv_seen *k = user;
    k->steps++;
    for (int64_t i = 0; i < info->n_seq; i++) {
        const road_kv_cache *c = info->seqs[i].cache;
        if (!c || road_kv_cache_dtype(c) != ROAD_DTYPE_BF16)
            k->wrong++;
        else
            k->bytes = road_kv_cache_bytes(c);
    }
}

static void test_kv_dtype(void **state) {
    (void)state;
    road_engine_params ep = road_engine_default_params();
    kv_seen seen = {0};
    ep.kv_dtype = ROAD_DTYPE_BF16;
    ep.on_step = on_step_kv;
    ep.on_step_user = &seen;
    road_engine *e;
    TU_OK(road_engine_create(model, &ep, &e));
    job jobs[3];
    make_jobs(jobs, 3);
    road_request *r[3];
    for (int i = 0; i < 3; i++) r[i] = submit(e, &jobs[i]);
    run_until_idle(e);
    for (int i = 0; i < 3; i++) {
        int32_t got[MAX_OUT];
        assert_int_equal(finish_of(r[i]), ROAD_FINISH_LENGTH);
        assert_int_equal(road_request_tokens(r[i], 0, got, MAX_OUT), jobs[i].max_tokens);
        road_request_release(r[i]);
    }
    assert_true(seen.steps > 0);
    assert_int_equal(seen.wrong, 0);
    const road_llm_config *c = road_model_config(model);
    assert_true(seen.bytes > 0 &&
                seen.bytes % (2 * 2 * c->n_layers * c->n_kv_heads * c->head_dim) == 0);
    road_engine_free(e);
    ep.kv_dtype = ROAD_DTYPE_I32;
    road_engine *bad;
    TU_FAILS(road_engine_create(model, &ep, &bad), ROAD_ERR_INVALID_ARG, "kv_dtype");
}

typedef struct unload_arg {
    road_engine *e;
    road_status st;
} unload_arg;

static void *unload_thread(void *arg) {
    unload_arg *u = arg;
    u->st = road_engine_unload_adapter(u->e, "C", true);
    return NULL;
}

static void test_adapters_at_run_time(void **state) {
    (void)state;
    job jobs[1];
    make_jobs(jobs, 1);
    jobs[0].adapter = "B";
    jobs[0].max_tokens = 20;
    int32_t ref[MAX_OUT];
    road_engine *e = new_engine(4, 32, NULL);
    road_request *r = submit(e, &jobs[0]);
    run_until_idle(e);
    int64_t n_ref = road_request_tokens(r, 0, ref, MAX_OUT);
    road_request_release(r);

    /* broken folders mid-request: refused, the running request's tokens are unchanged */
    r = submit(e, &jobs[0]);
    for (int k = 0; k < 5; k++) TU_OK(road_engine_step(e, NULL));
    char broken[256];
    snprintf(broken, sizeof broken, "%s/broken", dir);
    char path[300];
    tu_rm_rf(broken);
    assert_int_equal(mkdir(broken, 0755), 0);
    snprintf(path, sizeof path, "%s/adapter_config.json", broken);
    FILE *f = fopen(path, "w");
    fputs("{\"peft_type\": \"ROAD\", \"group_size\": ", f);
    fclose(f);
    TU_FAILS(road_engine_load_adapter(e, "X", broken), ROAD_ERR_FORMAT, NULL);
    TU_FAILS(road_engine_load_adapter(e, "X", "/nonexistent/adapter"), ROAD_ERR_NOT_FOUND, NULL);
    TU_FAILS(road_engine_load_adapter(e, "B", ADAPTERS "/A"), ROAD_ERR_EXISTS, "B");
    TU_FAILS(road_engine_load_adapter(e, ROAD_BASE_NAME, ADAPTERS "/A"), ROAD_ERR_INVALID_ARG,
             NULL);
    assert_false(road_engine_has_adapter(e, "X"));
    /* a good one joins while B runs; B cannot be unloaded without waiting while in use */
    TU_OK(road_engine_load_adapter(e, "A2", ADAPTERS "/A"));
    assert_true(road_engine_has_adapter(e, "A2"));
    TU_FAILS(road_engine_unload_adapter(e, "B", false), ROAD_ERR_STATE, "used by 1");
    run_until_idle(e);
    int32_t got[MAX_OUT];
    int64_t n = road_request_tokens(r, 0, got, MAX_OUT);
    assert_int_equal(n, n_ref);
    assert_memory_equal(got, ref, sizeof(int32_t) * (size_t)n);
    road_request_release(r);
    /* the reloaded copy of A gives A's tokens */
    job ja = jobs[0];
    ja.adapter = "A";
    road_request *ra = submit(e, &ja);
    ja.adapter = "A2";
    road_request *ra2 = submit(e, &ja);
    run_until_idle(e);
    int32_t t1[MAX_OUT], t2[MAX_OUT];
    assert_int_equal(road_request_tokens(ra, 0, t1, MAX_OUT),
                     road_request_tokens(ra2, 0, t2, MAX_OUT));
    assert_memory_equal(t1, t2, sizeof(int32_t) * 20);
    road_request_release(ra);
    road_request_release(ra2);
    TU_OK(road_engine_unload_adapter(e, "A2", false));
    TU_FAILS(road_engine_unload_adapter(e, "A2", false), ROAD_ERR_NOT_FOUND, NULL);

    /* with the engine thread: unload waits for C's request, which finishes normally; new
     * requests for C are refused from the moment the unload starts */
    TU_OK(road_engine_start(e));
    job jc = jobs[0];
    jc.adapter = "C";
    jc.max_tokens = 100;
    road_request *rc = submit(e, &jc);
    unload_arg u = {e, ROAD_ERR_INTERNAL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unload_thread, &u), 0);
    pthread_join(th, NULL);
    TU_OK(u.st);
    road_request_state st;
    road_request_wait(rc, 0, 0, 0, &st);
    assert_int_equal(st.finish, ROAD_FINISH_LENGTH);
    assert_false(road_engine_has_adapter(e, "C"));
    road_request *none = NULL;
    road_request_params p = road_request_default_params();
    p.prompt = jc.prompt;
    p.n_prompt = jc.n_prompt;
    p.adapter = "C";
    TU_FAILS(road_engine_submit(e, &p, &none), ROAD_ERR_NOT_FOUND, "C");
    TU_OK(road_engine_load_adapter(e, "C", ADAPTERS "/C")); /* put it back for other tests */
    road_request_release(rc);
    road_engine_stop(e, true);
    road_engine_free(e);
    tu_rm_rf(broken);
}

static void test_engine_thread_drain(void **state) {
    (void)state;
    road_engine *e = new_engine(2, 32, NULL);
    TU_OK(road_engine_start(e));
    job jobs[4];
    make_jobs(jobs, 4);
    road_request *r[4];
    for (int i = 0; i < 4; i++) r[i] = submit(e, &jobs[i]);
    road_request_state st;
    road_request_wait(r[0], 0, 0, -1, &st); /* wakes at the first token */
    assert_true(st.n_tokens >= 1 || st.finish != ROAD_FINISH_NONE);
    road_engine_stop(e, true); /* drain: all four finish */
    for (int i = 0; i < 4; i++) {
        road_request_wait(r[i], 0, 0, 0, &st);
        assert_int_equal(st.finish, ROAD_FINISH_LENGTH);
        assert_int_equal(st.n_tokens, jobs[i].max_tokens);
        road_request_release(r[i]);
    }
    road_request *x;
    road_request_params p = road_request_default_params();
    p.prompt = jobs[0].prompt;
    p.n_prompt = 3;
    TU_FAILS(road_engine_submit(e, &p, &x), ROAD_ERR_STATE, "shutting down");
    road_engine_free(e);
}

/* ---- issue 13: loads off the engine thread, one naming rule, finishes counted in time
 * ------------ */

static road_finish_reason wait_end(road_request *r) {
    road_request_state rs;
    road_request_wait(r, 0, 0, 0, &rs);
    while (rs.finish == ROAD_FINISH_NONE) road_request_wait(r, rs.n_tokens, rs.text_len, -1, &rs);
    return rs.finish;
}

/* A FIFO where the adapter's weights should be: opening it for reading used to wait for a writer
 * forever, on the engine thread (every request stalled while /health said ok). Refused now, at
 * once, naming the path; the engine keeps generating. */
static void test_adapter_fifo_refused(void **state) {
    (void)state;
    char tmp[] = "/tmp/road_fifo_XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char cfg[256], st[256], cmd[512];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", tmp);
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", tmp);
    snprintf(cmd, sizeof cmd, "cp '%s/C/adapter_config.json' '%s'", ADAPTERS, cfg);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkfifo(st, 0600), 0);
    road_engine *e = new_engine(2, 32, NULL);
    TU_OK(road_engine_start(e));
    job jobs[1];
    make_jobs(jobs, 1);
    road_request *r = submit(e, &jobs[0]);
    TU_FAILS(road_engine_load_adapter(e, "fifo", tmp), ROAD_ERR_IO, "FIFO");
    assert_non_null(strstr(road_last_error(), st));
    assert_int_equal(wait_end(r), ROAD_FINISH_LENGTH); /* generation went on */
    road_request_release(r);
    assert_false(road_engine_has_adapter(e, "fifo"));
    /* a good folder still loads (prepared on this thread, added by the engine thread) */
    TU_OK(road_engine_load_adapter(e, "C2", ADAPTERS "/C"));
    assert_true(road_engine_has_adapter(e, "C2"));
    TU_OK(road_engine_unload_adapter(e, "C2", true));
    road_engine_free(e);
    /* the root: the file helpers refuse non-regular files for every caller */
    road_st_file *f = NULL;
    TU_FAILS(road_st_open(st, &f), ROAD_ERR_IO, "FIFO");
    TU_FAILS(road_st_open("/dev/zero", &f), ROAD_ERR_IO, "character device");
    road_adapter_set *set = road_model_adapters(model);
    TU_FAILS(road_adapter_set_load(set, "fifo", tmp), ROAD_ERR_IO, "not a regular file");
    unlink(st);
    unlink(cfg);
    rmdir(tmp);
}

/* One rule for adapter names (the CLI's --adapter, road_server_create, the load endpoint). A
 * quote in a name used to reach /metrics unescaped and break the whole scrape. */
static void test_adapter_names(void **state) {
    (void)state;
    TU_OK(road_engine_check_adapter_name("math-v2.{x}"));
    TU_FAILS(road_engine_check_adapter_name("a\"b"), ROAD_ERR_INVALID_ARG, "quotes");
    TU_FAILS(road_engine_check_adapter_name("a\\b"), ROAD_ERR_INVALID_ARG, "backslashes");
    TU_FAILS(road_engine_check_adapter_name("a\nb"), ROAD_ERR_INVALID_ARG, "control");
    TU_FAILS(road_engine_check_adapter_name(""), ROAD_ERR_INVALID_ARG, "1 to 255");
    TU_FAILS(road_engine_check_adapter_name(ROAD_BASE_NAME), ROAD_ERR_INVALID_ARG, ROAD_BASE_NAME);
    /* the server refuses a bad name before loading anything (it took it before) */
    road_server_params sp = road_server_default_params();
    const char *names[] = {"a\"b"}, *dirs[] = {ADAPTERS "/A"};
    sp.model_dir = dir;
    sp.adapter_names = names;
    sp.adapter_dirs = dirs;
    sp.n_adapters = 1;
    road_server *srv = NULL;
    TU_FAILS(road_server_create(&sp, &srv), ROAD_ERR_INVALID_ARG, "quotes");
    assert_null(srv);
    /* a name with braces is served and its metric lines stay well-formed */
    road_engine *e = new_engine(2, 32, NULL);
    TU_OK(road_engine_load_adapter(e, "x{y}", ADAPTERS "/A"));
    char *text = NULL;
    TU_OK(road_engine_metrics(e, &text));
    assert_non_null(strstr(text, "road_adapter_requests_total{adapter=\"x{y}\"} 0\n"));
    road_string_free(text);
    road_engine_free(e);
}

/* The engine's lock, taken by the test to freeze the engine thread at its next use of it. */
#include "serve/engine_internal.h"

/* Parks the engine thread right after the forward of step `at` (before it samples and
 * publishes) until the test says go. */
typedef struct park {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int steps, at;
    bool parked, go;
} park;

static void park_hook(const road_engine_step_info *info, void *user) {
    (void)info;
    park *h = user;
    pthread_mutex_lock(&h->mu);
    if (++h->steps == h->at) {
        h->parked = true;
        pthread_cond_broadcast(&h->cv);
        while (!h->go) pthread_cond_wait(&h->cv, &h->mu);
    }
    pthread_mutex_unlock(&h->mu);
}

/* A request's end is counted in /metrics before anyone waiting for it can see the end (and
 * answer its client): a scrape right after a reply counts that reply's request. The engine is
 * parked after the forward of the request's last token; the test then takes the engine's lock
 * and lets it go. The old engine published the end first (the waiter woke with the counter
 * still short) and counted after; now it must count first, so it blocks on the lock and the
 * waiter sees no end until the count is in. */
static void test_finished_counted_before_published(void **state) {
    (void)state;
    job jobs[1];
    make_jobs(jobs, 1);
    jobs[0].max_tokens = 4; /* one step of prefill and first token, then 3 decodes */
    park h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 4, false, false};
    road_engine_params p = road_engine_default_params();
    p.max_batch = 2;
    p.step_tokens = 32;
    p.tokenizer = tok;
    p.on_step = park_hook;
    p.on_step_user = &h;
    road_engine *e;
    TU_OK(road_engine_create(model, &p, &e));
    TU_OK(road_engine_start(e));
    road_request *r = submit(e, &jobs[0]);
    pthread_mutex_lock(&h.mu);
    while (!h.parked) pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    road_request_state rs;
    road_request_wait(r, 0, 0, 0, &rs); /* what is out so far (3 tokens and their text) */
    int64_t seen_tokens = rs.n_tokens;
    size_t seen_text = rs.text_len;
    pthread_mutex_lock(&e->mu);
    int64_t before = e->stats.finished[ROAD_FINISH_LENGTH];
    pthread_mutex_lock(&h.mu);
    h.go = true;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    road_request_wait(r, seen_tokens, seen_text, 300,
                      &rs); /* the last token and the end come together */
    int64_t counted = e->stats.finished[ROAD_FINISH_LENGTH];
    pthread_mutex_unlock(&e->mu);
    if (rs.finish != ROAD_FINISH_NONE && counted == before)
        fail_msg("the request's end (%s) was visible before /metrics counted it",
                 road_finish_reason_name(rs.finish));
    assert_int_equal(wait_end(r), ROAD_FINISH_LENGTH);
    road_request_release(r);
    char *text = NULL;
    TU_OK(road_engine_metrics(e, &text));
    assert_non_null(strstr(text, "road_requests_finished_total{reason=\"length\"} 1\n"));
    road_string_free(text);
    road_engine_free(e);
}

/* ---- the request parser ------------------------------------------------------------------------
 */

static void expect_bad(api_kind k, const char *body, const char *param, const char *needle) {
    api_request q;
    api_error err;
    if (road__api_parse_request(k, body, strlen(body), &q, &err)) fail_msg("accepted: %s", body);
    assert_int_equal(err.http, 400);
    if (strcmp(err.param, param) != 0)
        fail_msg("%s: param '%s', expected '%s'", body, err.param, param);
    if (needle && !strstr(err.message, needle))
        fail_msg("%s: message '%s' lacks '%s'", body, err.message, needle);
    char *j = road__api_error_json(&err);
    cJSON *o = cJSON_Parse(j);
    cJSON *e = cJSON_GetObjectItem(o, "error");
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "type")));
    assert_non_null(cJSON_GetObjectItem(e, "param"));
    assert_non_null(cJSON_GetObjectItem(e, "code"));
    cJSON_Delete(o);
    free(j);
}

static void test_api_parse(void **state) {
    (void)state;
    api_request q;
    api_error err;
    const char *ok =
        "{\"model\":\"A\",\"prompt\":\"hi\",\"max_tokens\":5,\"temperature\":0.5,\"top_p\":0.9,"
        "\"top_k\":-1,\"seed\":7,\"stop\":[\"x\",\"yz\"],\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true},\"n\":1,\"presence_penalty\":0,"
        "\"logprobs\":null,\"user\":\"ignored\",\"stop_token_ids\":[2]}";
    assert_true(road__api_parse_request(API_COMPLETIONS, ok, strlen(ok), &q, &err));
    assert_string_equal(q.model, "A");
    assert_string_equal(q.prompt, "hi");
    assert_int_equal(q.max_tokens, 5);
    assert_true(q.stream && q.include_usage && q.has_seed && q.seed == 7);
    assert_int_equal(q.n_stop, 2);
    assert_string_equal(q.stop[1], "yz");
    assert_int_equal(q.n_stop_ids, 1);
    assert_int_equal(q.top_k, -1);
    road__api_request_free(&q);
    const char *ids = "{\"prompt\":[[1,2,3]]}";
    assert_true(road__api_parse_request(API_COMPLETIONS, ids, strlen(ids), &q, &err));
    assert_int_equal(q.n_prompt_ids, 3);
    assert_null(q.model);
    assert_int_equal(q.max_tokens, -1);
    road__api_request_free(&q);
    const char *chat =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
        "\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
        "\"max_completion_tokens\":3}";
    assert_true(road__api_parse_request(API_CHAT, chat, strlen(chat), &q, &err));
    assert_int_equal(cJSON_GetArraySize(q.messages), 2);
    /* text parts are joined with "\n", as vLLM joins them */
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(q.messages, 1), "content")->valuestring, "a\nb");
    assert_int_equal(q.max_tokens, 3);
    assert_true(q.add_generation_prompt && !q.continue_final_message);
    assert_null(q.tools);
    road__api_request_free(&q);
    /* the chat template's arguments, OpenAI tool calls (arguments parsed, as vLLM passes them),
     * "developer" as "system", a null content with tool calls */
    const char *chat2 =
        "{\"messages\":[{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"user\",\"content\":"
        "\"u\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\": 1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"2\"},{\"role\":\"assistant\","
        "\"content\":\"It\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
        "\"tool_choice\":\"auto\",\"chat_template_kwargs\":{\"enable_thinking\":false},"
        "\"add_generation_prompt\":false,\"continue_final_message\":true,\"documents\":[{\"t\":"
        "\"x\"}]}";
    assert_true(road__api_parse_request(API_CHAT, chat2, strlen(chat2), &q, &err));
    const cJSON *m0 = cJSON_GetArrayItem(q.messages, 0), *m2 = cJSON_GetArrayItem(q.messages, 2);
    assert_string_equal(cJSON_GetObjectItem(m0, "role")->valuestring, "system");
    assert_string_equal(cJSON_GetObjectItem(m2, "content")->valuestring, "");
    const cJSON *args = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(m2, "tool_calls"), 0),
                            "function"),
        "arguments");
    assert_true(cJSON_IsObject(args));
    assert_int_equal(cJSON_GetObjectItem(args, "x")->valueint, 1);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetArrayItem(q.messages, 3), "tool_call_id")->valuestring, "c1");
    assert_int_equal(cJSON_GetArraySize(q.tools), 1);
    assert_int_equal(cJSON_GetArraySize(q.documents), 1);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(q.chat_template_kwargs, "enable_thinking")));
    assert_true(!q.add_generation_prompt && q.continue_final_message);
    road__api_request_free(&q);

    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\"", "", "not valid JSON");
    expect_bad(API_COMPLETIONS, "[1,2]", "", "object");
    expect_bad(API_COMPLETIONS, "{}", "prompt", "required");
    expect_bad(API_COMPLETIONS, "{\"prompt\": 5}", "prompt", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": [\"a\", \"b\"]}", "prompt", "one prompt");
    expect_bad(API_COMPLETIONS, "{\"prompt\": [1, -2]}", "prompt", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": [1.5]}", "prompt", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"model\": 3}", "model", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"temperature\": 3}", "temperature", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature",
               NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"top_p\": 0}", "top_p", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"top_k\": -2}", "top_k", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": 0}", "max_tokens", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"max_tokens\": 2.5}", "max_tokens", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"seed\": 1e300}", "seed", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"stop\": [\"\"]}", "stop", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"stop\": 4}", "stop", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"n\": 2}", "n", "one choice");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"echo\": true}", "echo", "not supported");
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"frequency_penalty\": 2.5}",
               "frequency_penalty", NULL);
    expect_bad(API_COMPLETIONS, "{\"prompt\": \"x\", \"stream\": 1}", "stream", NULL);
    expect_bad(API_CHAT, "{\"messages\": []}", "messages", NULL);
    expect_bad(API_CHAT, "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", "messages",
               "wizard");
    expect_bad(API_CHAT, "{\"messages\": [{\"content\": \"x\"}]}", "messages", NULL);
    expect_bad(API_CHAT,
               "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}",
               "messages", "text");
#define U "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], "
    expect_bad(API_CHAT, U "\"tools\": {}}", "tools", "array");
    expect_bad(API_CHAT, U "\"tools\": [{\"type\": \"function\"}]}", "tools", "name");
    expect_bad(API_CHAT, U "\"tool_choice\": \"required\"}", "tool_choice", "auto");
    expect_bad(API_CHAT, U "\"chat_template_kwargs\": [1]}", "chat_template_kwargs", "object");
    expect_bad(API_CHAT, U "\"continue_final_message\": true}", "continue_final_message",
               "add_generation_prompt");
    expect_bad(API_CHAT, U "\"add_generation_prompt\": 1}", "add_generation_prompt", NULL);
    expect_bad(API_CHAT, U "\"documents\": [1]}", "documents", "object");
#undef U
    expect_bad(API_CHAT,
               "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": "
               "{\"name\": \"f\", \"arguments\": \"not json\"}}]}]}",
               "messages", "arguments");
    expect_bad(API_CHAT, "{\"messages\": [{\"role\": \"user\", \"tool_calls\": []}]}", "messages",
               "assistant");
    expect_bad(API_CHAT, "{\"messages\": [{\"role\": \"assistant\"}]}", "messages", "content");
    char *name, *path;
    assert_false(road__api_parse_lora("{\"lora_name\": \"a\"}", 18, true, &name, &path, &err));
    assert_string_equal(err.param, "lora_path");
    assert_true(road__api_parse_lora("{\"lora_name\": \"a\"}", 18, false, &name, &path, &err));
    assert_string_equal(name, "a");
    free(name);
}

static void test_replies(void **state) {
    (void)state;
    api_reply r = {API_CHAT, "chatcmpl-1", 5, "A", "h\"i", 3, "stop", 4, 2};
    char *j = road__api_reply_json(&r);
    cJSON *o = cJSON_Parse(j);
    assert_string_equal(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
    cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "content")->valuestring, "h\"i");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint,
                     6);
    cJSON_Delete(o);
    free(j);
    r.kind = API_COMPLETIONS;
    r.finish_reason = NULL;
    j = road__api_chunk_json(&r, true, false);
    o = cJSON_Parse(j);
    c = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(c, "text")->valuestring, "h\"i");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "finish_reason")));
    cJSON_Delete(o);
    free(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_equals_alone),
        cmocka_unit_test(test_schedule_join_leave_cancel),
        cmocka_unit_test(test_stops),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_kv_dtype),
        cmocka_unit_test(test_adapters_at_run_time),
        cmocka_unit_test(test_engine_thread_drain),
        cmocka_unit_test(test_adapter_fifo_refused),
        cmocka_unit_test(test_adapter_names),
        cmocka_unit_test(test_finished_counted_before_published),
        cmocka_unit_test(test_api_parse),
        cmocka_unit_test(test_replies),
    };
    return cmocka_run_group_tests_name("serve", tests, setup, teardown);
}
