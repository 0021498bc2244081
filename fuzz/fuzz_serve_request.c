/*
 * fuzz/fuzz_serve_request.c - libFuzzer target for `road serve`'s request parser
 * (serve/api.c): the bodies of POST /v1/completions, /v1/chat/completions and the adapter
 * load/unload endpoints.
 *
 * The first byte picks the endpoint, the rest is the body. Whatever the input, the parser either
 * refuses it with a 4xx/5xx error whose JSON is valid and complete, or yields a request within
 * the documented limits (one prompt or 1..API_MAX_MESSAGES messages, sampling values in range
 * as the floats the sampler takes, at most API_MAX_STOP non-empty stop strings, no string cut
 * at a NUL); a parsed request formats into a reply and a stream chunk that road's strict
 * parser reads back. Nothing leaks (ASan).
 */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "serve/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What road writes must pass road's own strict parser (no trailing text, escapes right). */
static void check_json(char *s) {
    if (!s) return; /* no memory */
    cJSON *o = NULL;
    if (road_json_parse(s, strlen(s), &o) != ROAD_OK) __builtin_trap();
    cJSON_Delete(o);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    int which = data[0] % 4;
    api_error err;
    memset(&err, 0, sizeof err);
    if (which >= 2) {
        char *name = NULL, *path = NULL;
        if (road__api_parse_lora(body, len, which == 2, &name, &path, &err)) {
            if (!name || !name[0] || (which == 2 && (!path || !path[0]))) __builtin_trap();
        } else if (err.http < 400 || name || path) {
            __builtin_trap();
        }
        free(name);
        free(path);
        return 0;
    }
    api_request q;
    api_kind kind = which == 0 ? API_COMPLETIONS : API_CHAT;
    if (!road__api_parse_request(kind, body, len, &q, &err)) {
        if (err.http < 400 || !err.message[0] || q.prompt || q.messages || q.stop) __builtin_trap();
        check_json(road__api_error_json(&err));
        return 0;
    }
    if (kind == API_COMPLETIONS && !q.prompt && !(q.prompt_ids && q.n_prompt_ids >= 1)) __builtin_trap();
    const int n_messages = q.messages ? cJSON_GetArraySize(q.messages) : 0;
    if (kind == API_CHAT && (n_messages < 1 || n_messages > API_MAX_MESSAGES)) __builtin_trap();
    /* every message the template gets has a known role and a string content */
    for (const cJSON *m = q.messages ? q.messages->child : NULL; m; m = m->next) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) __builtin_trap();
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant") && strcmp(role->valuestring, "tool"))
            __builtin_trap();
    }
    if (q.add_generation_prompt && q.continue_final_message) __builtin_trap();
    if (!(q.temperature >= 0 && q.temperature <= 2) || !(q.top_p > 0 && q.top_p <= 1) || q.top_k < -1)
        __builtin_trap();
    if (q.max_tokens != -1 && q.max_tokens < 1) __builtin_trap();
    if (q.n_stop < 0 || q.n_stop > API_MAX_STOP) __builtin_trap();
    for (int32_t i = 0; i < q.n_stop; i++)
        if (!q.stop[i][0] || strlen(q.stop[i]) > API_MAX_STOP_LEN) __builtin_trap();
    for (int64_t i = 0; i < q.n_prompt_ids; i++)
        if (q.prompt_ids[i] < 0) __builtin_trap();
    const char *text =
        q.prompt ? q.prompt
                 : n_messages ? cJSON_GetObjectItemCaseSensitive(q.messages->child, "content")->valuestring
                              : "";
    api_reply r = {kind, "id-1", 1, q.model ? q.model : "m", text, strlen(text), "stop", 3, 4};
    check_json(road__api_reply_json(&r));
    r.finish_reason = NULL;
    check_json(road__api_chunk_json(&r, true, false));
    check_json(road__api_chunk_json(&r, false, true));
    road__api_request_free(&q);
    return 0;
}
