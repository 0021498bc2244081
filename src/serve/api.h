/*
 * serve/api.h - the OpenAI-compatible JSON of `road serve` (private to serve/): parsing request
 * bodies into checked values, and formatting replies, stream chunks and errors. Pure functions
 * of their inputs (no engine, no sockets), so the parser is fuzzed on its own
 * (fuzz/fuzz_serve_request.c) and tested without HTTP.
 */
#ifndef ROAD_SERVE_API_H
#define ROAD_SERVE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "road/llm.h"
#include "road/tokenizer.h"

/* Limits a request body must respect (docs/serve.md): OpenAI allows 4 stop strings, road 16. */
#define API_MAX_STOP 16
#define API_MAX_STOP_LEN 256 /* bytes per stop string */
#define API_MAX_STOP_IDS 64
#define API_MAX_LOGIT_BIAS 1024
#define API_MAX_PROMPT_IDS 1048576 /* ids in a token-id prompt (the context refuses far fewer) */
#define API_MAX_MESSAGES 4096

typedef enum api_kind { API_COMPLETIONS = 0, API_CHAT = 1 } api_kind;

typedef struct api_request {
    api_kind kind;
    char *model;         /* NULL: not given (the base model) */
    char *prompt;        /* completions with a text prompt */
    int32_t *prompt_ids; /* completions with a token-id prompt */
    int64_t n_prompt_ids;
    /* chat: the messages as the chat template gets them (owned; roles checked, "developer"
     * renamed "system", text parts joined, tool-call arguments parsed), and the template's
     * other arguments (NULL when not sent) */
    struct cJSON *messages;
    struct cJSON *tools, *documents, *chat_template_kwargs;
    bool add_generation_prompt; /* true unless sent false */
    bool continue_final_message;
    bool stream, include_usage, ignore_eos;
    int64_t max_tokens; /* -1: not given */
    float temperature;  /* 1 unless given (OpenAI's default) */
    float top_p;        /* 1 unless given */
    int32_t top_k;      /* 0 (off) unless given; -1 also means off */
    bool has_seed;
    uint64_t seed;
    char **stop;
    int32_t n_stop;
    int32_t *stop_ids; /* vLLM's stop_token_ids */
    int32_t n_stop_ids;
    float presence_penalty, frequency_penalty; /* 0 unless given */
    float repetition_penalty;                  /* 1 unless given */
    float min_p;                               /* 0 unless given */
    road_logit_bias *logit_bias;               /* OpenAI's {"id": bias} */
    int32_t n_logit_bias;
    int64_t min_tokens; /* 0 unless given */
} api_request;

typedef struct api_error {
    int http;         /* 400, 401, 404, ... */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    const char *code; /* NULL: null */
    char param[64];   /* "": null */
    char message[512];
} api_error;

void road__api_error_set(api_error *e, int http, const char *type, const char *code,
                         const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* {"error":{"message","type","param","code"}}; malloc'd (free()). NULL only on no memory. */
char *road__api_error_json(const api_error *e);

/* Parse and check a /v1/completions or /v1/chat/completions body. On failure fills *err (400
 * with the offending param) and returns false; *out is then empty. */
bool road__api_parse_request(api_kind kind, const char *body, size_t len, api_request *out,
                             api_error *err);
void road__api_request_free(api_request *r);

/* {"lora_name", "lora_path"} of vLLM's load/unload endpoints (path required when need_path).
 * *name, *path malloc'd. */
bool road__api_parse_lora(const char *body, size_t len, bool need_path, char **name, char **path,
                          api_error *err);

/* ---- replies (malloc'd JSON text, free(); NULL on no memory) --------------------------------- */

typedef struct api_reply {
    api_kind kind;
    const char *id;    /* "cmpl-..." / "chatcmpl-..." */
    long long created; /* unix seconds */
    const char *model;
    const char *text;
    size_t text_len;
    const char *finish_reason; /* NULL: null (a chunk before the end) */
    int64_t prompt_tokens, completion_tokens;
} api_reply;

/* The whole non-streaming reply, usage included. */
char *road__api_reply_json(const api_reply *r);
/* One stream chunk: text delta (chat: first adds role "assistant"), finish_reason when given,
 * "usage" when with_usage (the final usage chunk has no choices: usage_only). */
char *road__api_chunk_json(const api_reply *r, bool first, bool usage_only);

#endif
