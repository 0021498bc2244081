/*
 * road/serve.h - serving many RoAd adapters from one model: a continuous-batching engine and an
 * OpenAI-compatible HTTP server on top of it (docs/serve.md).
 *
 * The engine owns the model while it runs. Requests (prompt ids, an adapter name, sampling) are
 * submitted from any thread; each step the engine admits waiting requests into the running
 * batch, runs ONE road_model_forward over every running sequence (each with its own adapter and
 * KV cache: RoAd's element-wise rotation lets a mixed batch cost what one adapter costs), and
 * hands each sequence its next token. Decodes go first in a step (one token each); what is left
 * of the step's token budget goes to prompt chunks (chunked prefill), so a long prompt never
 * stalls the running decodes. Finished and cancelled sequences leave the batch at once.
 *
 * Threads: either the caller drives the engine with road_engine_step (tests), or
 * road_engine_start runs an engine thread that does (the server). Submitting, waiting, reading
 * and cancelling requests are thread-safe in both modes.
 *
 * The server (libmicrohttpd, a thread per connection) parses and formats JSON on its connection
 * threads and leaves the model to the engine thread.
 */
#ifndef ROAD_SERVE_H
#define ROAD_SERVE_H

#include "road/llm.h"
#include "road/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the engine ------------------------------------------------------------------------- */

/* Threads: submit, wait, read and cancel from any thread; step, start, stop and free from one
 * controlling thread; the model and its adapter set belong to the engine while it exists (load
 * and unload adapters through it). */
typedef struct road_engine road_engine;
/* Threads: a request has its own lock and reference count: any thread, while it holds it. */
typedef struct road_request road_request;

/* What one step ran: the sequences of its forward, in order (tokens, n_tokens, adapter name as
 * road_model_forward got them) and the request each belongs to. Valid during the call only. */
typedef struct road_engine_step_info {
    const road_seq *seqs;
    const uint64_t *request_ids;
    int64_t n_seq;
    int64_t n_tokens;  /* rows of the forward: sum of n_tokens */
    int64_t n_waiting; /* requests still waiting to join after this step's admissions */
} road_engine_step_info;
/* Called by the stepping thread right after each forward (tests check the schedule with it;
 * bench_serve adds a LoRA-style baseline's per-row work with it). */
typedef void (*road_engine_step_fn)(const road_engine_step_info *info, void *user);

/* Defaults (named constants in src/serve/engine.c, documented in docs/serve.md). */
typedef struct road_engine_params {
    int32_t max_batch;        /* running sequences at most (16) */
    int64_t max_seq_len;      /* prompt + generated tokens per sequence; 0: the model's context */
    int64_t step_tokens;      /* token budget of one step, >= max_batch (256) */
    int32_t max_waiting;      /* submit refuses (ROAD_ERR_STATE) past this many waiting (256) */
    int64_t max_tokens_limit; /* largest max_tokens a request may ask for (4096) */
    road_dtype kv_dtype;      /* each sequence's KV cache (road_kv_cache_create_ex): F32, BF16
                                 or F16 (F32) */
    const road_tokenizer *tokenizer; /* text output and stop strings; NULL: ids only. Borrowed:
                                        must outlive the engine */
    road_engine_step_fn on_step;
    void *on_step_user;
} road_engine_params;

ROAD_API road_engine_params road_engine_default_params(void);
/* The engine borrows the model (which must outlive it) and takes over its adapter set: from now
 * on load and unload adapters through the engine. The adapters already in the set are served. */
ROAD_API road_status road_engine_create(road_model *m, const road_engine_params *p,
                                        road_engine **out);
/* Stops the engine thread (without draining), cancels what is left, frees. Requests still held
 * by callers stay readable until they release them. NULL is a no-op. */
ROAD_API void road_engine_free(road_engine *e);

typedef struct road_request_params {
    const road_token *prompt; /* n_prompt >= 1 ids (copied), each < the model's vocabulary */
    int64_t n_prompt;
    const char *adapter; /* an adapter of the engine; NULL or ROAD_BASE_NAME: base model */
    road_sampler_params sampling;
    int64_t max_tokens;         /* 1..max_tokens_limit; generation also ends at max_seq_len */
    const road_token *stop_ids; /* generation ends after one of these (copied) */
    int32_t n_stop_ids;
    const char *const *stop; /* stop strings (copied; need the tokenizer): the text ends right
                                before the first one found, which is not returned */
    int32_t n_stop;
    bool ignore_eos;    /* keep going past the model's eos ids */
    int64_t min_tokens; /* 0..max_tokens: before this many tokens, eos ids and stop_ids are
                           not sampled and stop strings do not end the text (vLLM's) */
} road_request_params;

ROAD_API road_request_params road_request_default_params(void); /* greedy, 16 tokens */

/* Queue a request. Errors: ROAD_ERR_INVALID_ARG (bad parameters, named), ROAD_ERR_NOT_FOUND
 * (no such adapter, or it is being unloaded), ROAD_ERR_SHAPE (prompt leaves no room in
 * max_seq_len), ROAD_ERR_STATE (max_waiting requests already wait, or the engine is stopping).
 * *out belongs to the caller: road_request_release it. */
ROAD_API road_status road_engine_submit(road_engine *e, const road_request_params *p,
                                        road_request **out);
/* One step by the calling thread (not while the engine thread runs): adapter commands, cancels,
 * admissions, one forward, sampling. *n_seq (may be NULL) gets the sequences it ran (0: idle). */
ROAD_API road_status road_engine_step(road_engine *e, int64_t *n_seq);
/* Run steps on an engine thread until road_engine_stop. */
ROAD_API road_status road_engine_start(road_engine *e);
/* drain: refuse new requests, let the queued and running ones finish, then stop; else cancel
 * them. Returns when the engine thread has ended. Harmless if not started. */
ROAD_API void road_engine_stop(road_engine *e, bool drain);
/* Waiting and running requests. */
ROAD_API void road_engine_load(const road_engine *e, int64_t *waiting, int64_t *running);

/* Load a PEFT adapter folder under `name` (vLLM's load_lora_adapter). The files are read and
 * checked on the calling thread while the engine keeps stepping; the engine thread then only
 * adds the finished adapter between two steps, so a slow disk never stalls generation. A folder
 * that fails to load leaves every adapter as it was. ROAD_ERR_EXISTS if the name is taken. */
ROAD_API road_status road_engine_load_adapter(road_engine *e, const char *name, const char *dir);
/* Unload an adapter. New requests for it are refused at once (ROAD_ERR_NOT_FOUND); with wait,
 * returns once the requests using it have finished and it is gone (needs the engine thread, or
 * no request using it); without, refuses (ROAD_ERR_STATE) while any request uses it. */
ROAD_API road_status road_engine_unload_adapter(road_engine *e, const char *name, bool wait);
/* Calls fn for every adapter served (not being unloaded), in load order. */
ROAD_API void road_engine_foreach_adapter(road_engine *e, void (*fn)(const char *name, void *user),
                                          void *user);
ROAD_API bool road_engine_has_adapter(road_engine *e, const char *name);
/* The rule for served adapter names, one for the CLI, road_server_create and the load
 * endpoint: 1 to 255 bytes, no control characters, quotes or backslashes, not ROAD_BASE_NAME.
 * ROAD_ERR_INVALID_ARG with the rule in the message otherwise. */
ROAD_API road_status road_engine_check_adapter_name(const char *name);
/* Prometheus text exposition of the engine's counters (docs/serve.md lists them); allocated,
 * free with road_string_free. */
ROAD_API road_status road_engine_metrics(road_engine *e, char **text);

/* ---- requests ---------------------------------------------------------------------------- */

typedef enum road_finish_reason {
    ROAD_FINISH_NONE = 0,  /* still waiting or generating */
    ROAD_FINISH_STOP,      /* an eos id, a stop id or a stop string */
    ROAD_FINISH_LENGTH,    /* max_tokens, or max_seq_len reached */
    ROAD_FINISH_CANCELLED, /* road_request_cancel / release, or the engine stopped */
    ROAD_FINISH_ERROR      /* the forward failed (road_request_error says why) */
} road_finish_reason;

/* "stop", "length", "cancelled", "error" ("" for NONE): OpenAI's finish_reason words. */
ROAD_API const char *road_finish_reason_name(road_finish_reason f);

typedef struct road_request_state {
    road_finish_reason finish;
    int64_t n_prompt;
    int64_t n_tokens; /* generated so far (the stopping token counts) */
    size_t text_len;  /* bytes of text released so far (needs the tokenizer) */
    double queue_s;   /* submit -> joining the batch (0 while waiting) */
    double ttft_s;    /* submit -> first token (0 before it) */
} road_request_state;

ROAD_API uint64_t road_request_id(const road_request *r);
/* Wait until the request has more than tokens_seen tokens or more than text_seen bytes of text,
 * or has finished, or timeout_ms passes (0: do not wait, < 0: no limit); fills *st. */
ROAD_API void road_request_wait(road_request *r, int64_t tokens_seen, size_t text_seen,
                                int timeout_ms, road_request_state *st);
/* Copy generated ids [from, from + cap) into out; returns how many were copied. */
ROAD_API int64_t road_request_tokens(road_request *r, int64_t from, road_token *out, int64_t cap);
/* Copy text bytes [from, from + cap) into out (not NUL-terminated); returns the count. Text is
 * released once it cannot be the start of a stop string, and is always whole UTF-8. */
ROAD_API size_t road_request_text(road_request *r, size_t from, char *out, size_t cap);
/* Why a request ended in ROAD_FINISH_ERROR ("" otherwise); valid until release. */
ROAD_API const char *road_request_error(road_request *r);
/* Ask the engine to drop the request; it leaves the batch at the next step. */
ROAD_API void road_request_cancel(road_request *r);
/* Give the request back (cancelling it if it is still running). NULL is a no-op. */
ROAD_API void road_request_release(road_request *r);

/* ---- the HTTP server --------------------------------------------------------------------- */

/* Threads: create, start, run and free from one thread; road_server_stop from any other (not
 * a signal handler). The server's engine follows road_engine's rule. */
typedef struct road_server road_server;

typedef struct road_server_params {
    const char *model_dir;            /* Hugging Face folder; tokenizer.json there gives text I/O */
    const char *const *adapter_names; /* served from the start (PEFT folders) */
    const char *const *adapter_dirs;
    int32_t n_adapters;
    const char *served_model_name; /* the base model's name in the API; NULL: the folder name */
    const char *host;              /* "127.0.0.1"; an IPv4 or IPv6 address */
    int port;                      /* 0: any free port (road_server_port tells which) */
    const char *api_key;           /* NULL: none; else "Authorization: Bearer KEY" on /v1/ */
    /* NULL: the model's own chat template, run as written; else a Jinja file, one of the
     * model's named templates or a built-in (road_tokenizer_set_chat_template) */
    const char *chat_template;
    /* JSON object text: chat template variables for every chat request ({"enable_thinking":
     * false}); a request's chat_template_kwargs override them. NULL: none */
    const char *chat_template_kwargs;
    road_model_params model;
    road_engine_params engine;          /* tokenizer is set by the server */
    size_t max_body_bytes;              /* larger request bodies get 413 (1 MiB) */
    int32_t max_connections;            /* open connections at most (4096; lowered to what
                                           RLIMIT_NOFILE allows) */
    int32_t max_connections_per_client; /* per client address (256); 0: no cap */
    double request_timeout_s;           /* accept -> whole request (head and body) received, however
                                           its bytes trickle (60); a reply's own idle limit is apart */
    int32_t default_max_tokens;         /* completions without max_tokens (16, OpenAI's) */
    bool allow_adapter_loading;         /* the load/unload endpoints (true) */
} road_server_params;

ROAD_API road_server_params road_server_default_params(void);
/* Load the model, its tokenizer (when present) and the adapters; no socket yet. */
ROAD_API road_status road_server_create(const road_server_params *p, road_server **out);
/* Bind and listen, start the engine thread; returns at once. */
ROAD_API road_status road_server_start(road_server *s);
/* The port listened on (after start). */
ROAD_API int road_server_port(const road_server *s);
/* road_server_start, then block until road_server_stop is called from another thread. */
ROAD_API road_status road_server_run(road_server *s);
/* Drain (new requests get 503, queued and running ones finish), then close the listening socket
 * and the connections. Any thread but a signal handler; the CLI calls it after sigwait. */
ROAD_API void road_server_stop(road_server *s);
ROAD_API road_engine *road_server_engine(road_server *s);
ROAD_API void road_server_free(road_server *s); /* stops first if needed; NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif /* ROAD_SERVE_H */
