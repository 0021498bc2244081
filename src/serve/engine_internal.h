/*
 * serve/engine_internal.h - the engine's state, private to serve/: the adapter registry's
 * entries and commands (serve/adapters.c), a request (serve/request.c) and the engine
 * (serve/engine.c), which the metrics text (serve/metrics.c) reads. One header for the three
 * because their structs point at each other and every file takes the same two locks.
 *
 * Names shared between serve/ files are `<object>_<verb>`, the object being the file that
 * defines them (adapters_, request_, engine_, server_, completions_, api_, door_): the file a
 * name lives in is read off the name (docs/architecture.md).
 *
 * Locking: e->mu guards the queue, the running count, the adapter registry, commands and
 * counters; r->mu guards a request's output, finish state and cancel flag. Never take e->mu
 * while holding r->mu (the scheduler takes r->mu alone, or e->mu then r->mu to read a flag).
 */
#ifndef ROAD_SERVE_ENGINE_INTERNAL_H
#define ROAD_SERVE_ENGINE_INTERNAL_H

#include <pthread.h>

#include "road/adapter_set.h"
#include "road/serve.h"

typedef struct engine_adapter {
    char *name;
    bool loaded;      /* false after an unload (the entry stays for its counters) */
    bool draining;    /* being unloaded: new requests are refused */
    int64_t in_use;   /* waiting + running requests naming it */
    int64_t requests; /* counters for /metrics */
    int64_t gen_tokens;
} engine_adapter;

typedef enum engine_cmd_kind { ENGINE_CMD_LOAD, ENGINE_CMD_UNLOAD } engine_cmd_kind;

/* An adapter command, on the caller's stack until done. A load arrives prepared (its files
 * read and checked on the caller's thread): the engine thread only commits it. */
typedef struct engine_cmd {
    engine_cmd_kind kind;
    const char *name;
    road_adapter_load *prepared;
    bool done;
    road_status status;
    char err[512];
    struct engine_cmd *next;
} engine_cmd;

typedef struct engine_stats {
    int64_t received;
    int64_t finished[ROAD_FINISH_ERROR + 1];
    int64_t prompt_tokens, gen_tokens;
    int64_t steps, step_seqs, step_rows, last_batch;
    double ttft_sum;
    int64_t ttft_count;
} engine_stats;

struct road_request {
    road_engine *engine;
    uint64_t id;
    /* fixed at submit */
    int32_t *prompt;
    int64_t n_prompt;
    char *adapter;       /* name for road_seq (ROAD_BASE_NAME for the base model) */
    int32_t adapter_idx; /* registry entry, -1 base */
    int64_t max_tokens;
    int32_t *stop_ids;
    int32_t n_stop_ids;
    char **stop;
    int32_t n_stop;
    size_t max_stop_len;
    bool ignore_eos;
    int64_t min_tokens;
    double t_submit;
    /* the stepping thread's */
    road_sampler *sampler;
    road_kv_cache *cache;
    road_tokenizer_stream *stream;
    int64_t n_done_prompt; /* prompt tokens in the cache */
    int64_t n_gen;
    int32_t last; /* last token, fed next step */
    bool counted; /* its end is in stats.finished already */
    char *pend;   /* decoded text not released yet (could start a stop string) */
    size_t pend_len, pend_cap;
    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool cancelled;
    road_finish_reason finish;
    int32_t *toks; /* [max_tokens] */
    int64_t n_toks;
    char *text;
    size_t text_len, text_cap;
    char err[256];
    double queue_s, ttft_s;
};

struct road_engine {
    road_model *m;
    road_engine_params p;
    int64_t V;
    int32_t eos[ROAD_MAX_EOS];
    int32_t n_eos;
    int32_t tok_vocab; /* ids at or past it have no text */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* the engine thread waits for work */
    pthread_cond_t cmd_cv;  /* callers wait for their command */
    pthread_t thread;
    int n_threads; /* the OpenMP/BLAS threads of the thread that started the engine */
    /* under mu */
    bool started, stopping, draining;
    uint64_t next_id;
    road_request **waiting; /* FIFO */
    int64_t n_waiting, cap_waiting;
    int64_t n_running;
    engine_cmd *cmds;
    engine_adapter *ad;
    int32_t n_ad, cap_ad;
    int64_t base_requests, base_gen_tokens;
    engine_stats stats;
    /* the stepping thread's (sized max_batch, or max_waiting for gone) */
    road_request **running;
    bool *run_done;
    road_request **gone;
    road_seq *seqs;
    uint64_t *seq_ids;
    int64_t *seq_run;
    int32_t *seq_ad;
    bool *seq_tok;
    float *logits; /* [max_batch x V] */
};

/* ---- serve/adapters.c ---- */
/* The registry entry of `name`, or -1 (e->mu held). */
int32_t road__adapters_find(const road_engine *e, const char *name);
/* Mark `name` loaded, adding its entry if new (e->mu held). -1: no memory. */
int32_t road__adapters_add_entry(road_engine *e, const char *name);
/* Execute queued adapter commands (the stepping thread; e->mu not held). */
void road__adapters_run_commands(road_engine *e);

/* ---- serve/request.c ---- */
/* The clock of a request's times (submit, queue, first token): monotonic seconds. */
double road__request_now_s(void);
bool road__request_is_cancelled(road_request *r);
/* The engine is done with r: free its model state, publish the end, drop the engine's ref. */
void road__request_finish(road_engine *e, road_request *r, road_finish_reason why, const char *err);
/* A sampled token for r (the stepping thread): update text, decide whether r ends, publish.
 * True when r finished (and was handed to road__request_finish: r may be gone). */
bool road__request_take_token(road_engine *e, road_request *r, int32_t t);

#endif
