/*
 * serve/api.c - OpenAI-shaped JSON for `road serve` (see serve/api.h).
 *
 * Parsing is strict about what would change the answer and lenient about the rest: fields road
 * does not implement but a client may send with a neutral value (n = 1, penalties 0,
 * logprobs null/false, echo false) are accepted; a non-neutral value is refused by name rather
 * than silently ignored. Unknown fields are ignored, as OpenAI's clients add new ones often.
 *
 * The body goes through road's strict JSON parser (io/json.c), as every JSON road reads: text
 * after the object, raw control characters and invalid UTF-8 are refused, and so is \u0000 in
 * a string, with the string's path as `param` (strings go on as C strings; a NUL would cut a
 * prompt short without a word). Duplicate keys: the last wins, as in Python. Sampling values
 * are checked as the sampler will hold them (floats), so a request the API accepts is never
 * refused later by road_sampler_create. Replies write text with its length (a NUL in generated
 * text comes out as \u0000, never cutting the text).
 */
#include <float.h>
#include <stddef.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "io/json.h"
#include "serve/api.h"

#define BAD "invalid_request_error"

static void error_vset(api_error *e, int http, const char *type, const char *code,
                       const char *param, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));
static void error_vset(api_error *e, int http, const char *type, const char *code,
                       const char *param, const char *fmt, va_list ap) {
    e->http = http;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
}

void road__api_error_set(api_error *e, int http, const char *type, const char *code,
                         const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vset(e, http, type, code, param, fmt, ap);
    va_end(ap);
}

/* Keep only valid UTF-8 (other bytes become '?'): messages may quote what a client sent. */
static char *clean_utf8(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t j = 1; ok && j < len; j++) ok = ((unsigned char)s[i + j] >> 6) == 2;
        if (!ok) {
            o[k++] = '?';
            i++;
            continue;
        }
        memcpy(o + k, s + i, len);
        k += len;
        i += len;
    }
    o[k] = '\0';
    return o;
}

char *road__api_error_json(const api_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_CreateObject();
    char *msg = clean_utf8(e->message), *param = clean_utf8(e->param);
    char *out = NULL;
    if (root && err && msg && param) {
        cJSON_AddItemToObject(root, "error", err);
        err = NULL;
        cJSON *x = cJSON_GetObjectItem(root, "error");
        cJSON_AddStringToObject(x, "message", msg);
        cJSON_AddStringToObject(x, "type", e->type ? e->type : BAD);
        if (param[0])
            cJSON_AddStringToObject(x, "param", param);
        else
            cJSON_AddNullToObject(x, "param");
        if (e->code)
            cJSON_AddStringToObject(x, "code", e->code);
        else
            cJSON_AddNullToObject(x, "code");
        out = cJSON_PrintUnformatted(root);
    }
    cJSON_Delete(err);
    cJSON_Delete(root);
    free(msg);
    free(param);
    return out;
}

/* ---- request parsing ---------------------------------------------------------------------- */

static bool bad(api_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool bad(api_error *err, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, 400, BAD, NULL, param, fmt, ap);
    va_end(ap);
    return false;
}

/* An integer-valued JSON number in [lo, hi]. */
static bool get_int(const cJSON *v, const char *name, double lo, double hi, int64_t *out,
                    api_error *err) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
        road__api_error_set(err, 400, BAD, NULL, name, "'%s' must be an integer from %.0f to %.0f",
                            name, lo, hi);
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

/* A number in [lo, hi] ((lo, hi] when lo_open), checked as the float the sampler will hold:
 * a value in range as a double but not as a float (top_p 1e-50 rounds to 0) is refused here,
 * naming the parameter, instead of by road_sampler_create after the request was accepted. */
static bool get_num(const cJSON *v, const char *name, double lo, double hi, bool lo_open,
                    float *out, api_error *err) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    float f = isfinite(d) && fabs(d) <= FLT_MAX ? (float)d : NAN;
    bool in = isfinite(d) && d <= hi && (lo_open ? d > lo : d >= lo);
    if (in && !(isfinite(f) && f <= (float)hi && (lo_open ? f > (float)lo : f >= (float)lo))) {
        char got[ROAD_JSON_NUMBER_MAX];
        road__json_format_double(d, got, sizeof got);
        road__api_error_set(
            err, 400, BAD, NULL, name,
            "'%s' must be a number in %s%g, %g], got %s, which is %g as the 32-bit float "
            "the sampler uses",
            name, lo_open ? "(" : "[", lo, hi, got, (double)f);
        return false;
    }
    if (!in) {
        road__api_error_set(err, 400, BAD, NULL, name, "'%s' must be a number in %s%g, %g]", name,
                            lo_open ? "(" : "[", lo, hi);
        return false;
    }
    *out = f;
    return true;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (o) memcpy(o, s, n + 1);
    return o;
}

static bool oom(api_error *err) {
    road__api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return false;
}

/* An array of token ids. */
static bool get_ids(const cJSON *a, const char *name, int64_t max, int32_t **ids, int64_t *n,
                    api_error *err) {
    int64_t k = cJSON_GetArraySize(a);
    if (k < 1 || k > max) {
        road__api_error_set(err, 400, BAD, NULL, name, "'%s' must hold 1 to %lld token ids", name,
                            (long long)max);
        return false;
    }
    int32_t *v = malloc(sizeof(int32_t) * (size_t)k);
    if (!v) return oom(err);
    int64_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        int64_t t;
        if (!get_int(x, name, 0, INT32_MAX, &t, err)) {
            free(v);
            return false;
        }
        v[i++] = (int32_t)t;
    }
    *ids = v;
    *n = k;
    return true;
}

static bool parse_prompt(const cJSON *p, api_request *r, api_error *err) {
    if (cJSON_IsString(p)) return (r->prompt = dup_str(p->valuestring)) != NULL || oom(err);
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return bad(err, "prompt", "%s",
                   "'prompt' must be a string, an array of token ids, or an "
                   "array holding one of those");
    const cJSON *first = cJSON_GetArrayItem(p, 0);
    if (cJSON_IsNumber(first))
        return get_ids(p, "prompt", API_MAX_PROMPT_IDS, &r->prompt_ids, &r->n_prompt_ids, err);
    if (cJSON_GetArraySize(p) != 1)
        return bad(err, "prompt", "%s",
                   "road serves one prompt per request: send the prompts of a "
                   "batch as separate (concurrent) requests");
    if (cJSON_IsString(first)) return (r->prompt = dup_str(first->valuestring)) != NULL || oom(err);
    if (cJSON_IsArray(first))
        return get_ids(first, "prompt", API_MAX_PROMPT_IDS, &r->prompt_ids, &r->n_prompt_ids, err);
    return bad(err, "prompt", "%s",
               "'prompt' must be a string, an array of token ids, or an array "
               "holding one of those");
}

/* content: a string; null (an assistant message with tool_calls) as ""; or an array of
 * {"type": "text", "text": ...} parts, joined with "\n" as vLLM joins them. */
static cJSON *message_content(const cJSON *c, api_error *err) {
    cJSON *out = NULL;
    if (cJSON_IsString(c) || cJSON_IsNull(c)) {
        out = cJSON_CreateString(cJSON_IsString(c) ? c->valuestring : "");
        if (!out) oom(err);
        return out;
    }
    if (!cJSON_IsArray(c)) {
        bad(err, "messages", "%s",
            "a message's 'content' must be a string or an array of text parts");
        return NULL;
    }
    size_t n = 1;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *t = road__json_get(part, "type");
        const cJSON *x = road__json_get(part, "text");
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text") != 0 || !cJSON_IsString(x)) {
            bad(err, "messages", "%s",
                "road takes text content parts only ({\"type\": \"text\", "
                "\"text\": ...})");
            return NULL;
        }
        n += strlen(x->valuestring) + 1;
    }
    char *s = malloc(n);
    if (!s) {
        oom(err);
        return NULL;
    }
    size_t k = 0;
    cJSON_ArrayForEach(part, c) {
        const char *x = road__json_get(part, "text")->valuestring;
        size_t l = strlen(x);
        if (k) s[k++] = '\n';
        memcpy(s + k, x, l);
        k += l;
    }
    s[k] = '\0';
    out = cJSON_CreateString(s);
    free(s);
    if (!out) oom(err);
    return out;
}

/* tool_calls as OpenAI sends them: [{"id", "type": "function", "function": {"name",
 * "arguments": JSON text}}]. The arguments are parsed into their object, as vLLM passes them
 * to chat templates (which print them with tojson). */
static bool tool_calls(cJSON *calls, api_error *err) {
    if (!cJSON_IsArray(calls))
        return bad(err, "messages", "%s", "'tool_calls' must be an array of tool calls");
    cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        cJSON *fn = cJSON_IsObject(c) ? cJSON_GetObjectItemCaseSensitive(c, "function") : NULL;
        const cJSON *name = fn ? cJSON_GetObjectItemCaseSensitive(fn, "name") : NULL;
        cJSON *args = fn ? cJSON_GetObjectItemCaseSensitive(fn, "arguments") : NULL;
        if (!cJSON_IsObject(fn) || !cJSON_IsString(name) ||
            (args && !cJSON_IsString(args) && !cJSON_IsObject(args)))
            return bad(err, "messages", "%s",
                       "a tool call must be {\"id\", \"type\": \"function\", "
                       "\"function\": {\"name\": string, \"arguments\": JSON text}}");
        if (cJSON_IsString(args)) {
            cJSON *parsed = NULL;
            if (road_json_parse(args->valuestring, strlen(args->valuestring), &parsed) != ROAD_OK ||
                !cJSON_IsObject(parsed)) {
                cJSON_Delete(parsed);
                road_clear_error();
                return bad(err, "messages",
                           "a tool call's 'arguments' must be a JSON object "
                           "(as text), not %.60s",
                           args->valuestring);
            }
            if (!cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", parsed)) {
                cJSON_Delete(parsed);
                return oom(err);
            }
        }
    }
    return true;
}

static bool parse_messages(const cJSON *m, api_request *r, api_error *err) {
    int n = cJSON_GetArraySize(m);
    if (!cJSON_IsArray(m) || n < 1 || n > API_MAX_MESSAGES)
        return bad(err, "messages", "'messages' must be an array of 1 to %s messages", "4096");
    if (!(r->messages = cJSON_Duplicate(m, true))) return oom(err);
    cJSON *x;
    cJSON_ArrayForEach(x, r->messages) {
        cJSON *role = cJSON_IsObject(x) ? cJSON_GetObjectItemCaseSensitive(x, "role") : NULL;
        if (!cJSON_IsString(role))
            return bad(err, "messages", "%s",
                       "every message needs a 'role' string and a 'content'");
        const char *rs = role->valuestring;
        if (strcmp(rs, "developer") == 0) { /* OpenAI's newer name for it */
            if (!cJSON_SetValuestring(role, "system")) return oom(err);
            rs = role->valuestring;
        }
        if (strcmp(rs, "system") != 0 && strcmp(rs, "user") != 0 && strcmp(rs, "assistant") != 0 &&
            strcmp(rs, "tool") != 0)
            return bad(err, "messages", "unknown role '%.40s' (system, user, assistant, tool)", rs);
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(x, "tool_calls");
        bool has_calls = calls && !cJSON_IsNull(calls);
        if (has_calls && strcmp(rs, "assistant") != 0)
            return bad(err, "messages", "%s", "only assistant messages have 'tool_calls'");
        if (has_calls && !tool_calls(calls, err)) return false;
        cJSON *content = cJSON_GetObjectItemCaseSensitive(x, "content");
        if (!content && !has_calls)
            return bad(err, "messages", "%s",
                       "every message needs a 'role' string and a 'content'");
        cJSON *c = content ? message_content(content, err) : cJSON_CreateString("");
        if (!c) return content ? false : oom(err);
        if (!(content ? cJSON_ReplaceItemInObjectCaseSensitive(x, "content", c)
                      : cJSON_AddItemToObject(x, "content", c))) {
            cJSON_Delete(c);
            return oom(err);
        }
    }
    return true;
}

/* The chat template's arguments beyond the messages (vLLM's names). */
static bool parse_chat_args(const cJSON *root, api_request *r, api_error *err) {
    static const char *const lists[] = {"tools", "documents"};
    cJSON **dst[] = {&r->tools, &r->documents};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = road__json_get(root, lists[i]);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsArray(v)) return bad(err, lists[i], "'%s' must be an array", lists[i]);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) if (!cJSON_IsObject(e)) return bad(
            err, lists[i], "every entry of '%s' must be an object", lists[i]);
        if (i == 0) {
            cJSON_ArrayForEach(e, v) {
                const cJSON *fn = road__json_get(e, "function");
                const cJSON *type = road__json_get(e, "type");
                if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 ||
                    !cJSON_IsObject(fn) || !cJSON_IsString(road__json_get(fn, "name")))
                    return bad(
                        err, "tools", "%s",
                        "a tool must be {\"type\": \"function\", "
                        "\"function\": {\"name\": string, \"description\", \"parameters\"}}");
            }
        }
        if (cJSON_GetArraySize(v) > 0 && !(*dst[i] = cJSON_Duplicate(v, true))) return oom(err);
    }
    const cJSON *v = road__json_get(root, "tool_choice");
    if (v && !cJSON_IsNull(v) &&
        !(cJSON_IsString(v) &&
          (strcmp(v->valuestring, "auto") == 0 || strcmp(v->valuestring, "none") == 0)))
        return bad(err, "tool_choice", "%s",
                   "road serve takes 'tool_choice' \"auto\" or \"none\": "
                   "the tools go to the chat template and the model's answer comes back as text");
    v = road__json_get(root, "chat_template_kwargs");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v))
            return bad(err, "chat_template_kwargs", "%s",
                       "'chat_template_kwargs' must be an object, "
                       "e.g. {\"enable_thinking\": false}");
        if (!(r->chat_template_kwargs = cJSON_Duplicate(v, true))) return oom(err);
    }
    static const char *const flags[] = {"add_generation_prompt", "continue_final_message"};
    bool *fdst[] = {&r->add_generation_prompt, &r->continue_final_message};
    for (int i = 0; i < 2; i++) {
        v = road__json_get(root, flags[i]);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsBool(v)) return bad(err, flags[i], "'%s' must be true or false", flags[i]);
        *fdst[i] = cJSON_IsTrue(v);
    }
    if (r->add_generation_prompt && r->continue_final_message)
        return bad(err, "continue_final_message", "%s",
                   "'continue_final_message' continues the last "
                   "message: send it with 'add_generation_prompt': false");
    return true;
}

static bool parse_stop(const cJSON *s, api_request *r, api_error *err) {
    if (!s || cJSON_IsNull(s)) return true;
    int n = cJSON_IsString(s) ? 1 : cJSON_IsArray(s) ? cJSON_GetArraySize(s) : -1;
    if (n < 0 || n > API_MAX_STOP)
        return bad(err, "stop", "'stop' must be a string or an array of at most %s strings", "16");
    if (n == 0) return true;
    r->stop = calloc((size_t)n, sizeof(char *));
    if (!r->stop) return oom(err);
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_IsString(s) ? s : cJSON_GetArrayItem(s, i);
        if (!cJSON_IsString(x) || !x->valuestring[0] || strlen(x->valuestring) > API_MAX_STOP_LEN)
            return bad(err, "stop", "stop strings must be non-empty strings of at most %s bytes",
                       "256");
        if (!(r->stop[i] = dup_str(x->valuestring))) return oom(err);
        r->n_stop = i + 1;
    }
    return true;
}

/* presence_penalty, frequency_penalty ([-2, 2], OpenAI's range), repetition_penalty (> 0),
 * min_p ([0, 1]), min_tokens (>= 0; <= max_tokens is checked at submit) and logit_bias
 * ({"token id": bias in [-100, 100]}, at most API_MAX_LOGIT_BIAS entries; ids past the
 * vocabulary are refused at submit, where it is known). */
static bool parse_penalties(const cJSON *root, api_request *r, api_error *err) {
    static const struct {
        const char *name;
        double lo, hi;
        bool lo_open;
        size_t off;
    } nums[] = {
        {"presence_penalty", -2, 2, false, offsetof(api_request, presence_penalty)},
        {"frequency_penalty", -2, 2, false, offsetof(api_request, frequency_penalty)},
        {"repetition_penalty", 0, 100, true, offsetof(api_request, repetition_penalty)},
        {"min_p", 0, 1, false, offsetof(api_request, min_p)},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        const cJSON *v = road__json_get(root, nums[i].name);
        if (v && !cJSON_IsNull(v) &&
            !get_num(v, nums[i].name, nums[i].lo, nums[i].hi, nums[i].lo_open,
                     (float *)(void *)((char *)r + nums[i].off), err))
            return false;
    }
    const cJSON *v = road__json_get(root, "min_tokens");
    if (v && !cJSON_IsNull(v) && !get_int(v, "min_tokens", 0, 1e9, &r->min_tokens, err))
        return false;
    v = road__json_get(root, "logit_bias");
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsObject(v))
        return bad(err, "logit_bias", "%s",
                   "'logit_bias' must be an object mapping token ids (as strings) to biases "
                   "from -100 to 100");
    int n = cJSON_GetArraySize(v);
    if (n > API_MAX_LOGIT_BIAS)
        return bad(err, "logit_bias", "'logit_bias' may have at most %d entries, got %d",
                   API_MAX_LOGIT_BIAS, n);
    if (n == 0) return true;
    r->logit_bias = calloc((size_t)n, sizeof *r->logit_bias);
    if (!r->logit_bias) return oom(err);
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        const char *k = e->string;
        char *end = NULL;
        long id = k && *k >= '0' && *k <= '9' ? strtol(k, &end, 10) : -1;
        if (id < 0 || !end || *end || id > INT32_MAX)
            return bad(err, "logit_bias",
                       "'logit_bias' keys must be token ids (decimal strings), got \"%.40s\"",
                       k ? k : "");
        if (!cJSON_IsNumber(e) || !(e->valuedouble >= -100 && e->valuedouble <= 100))
            return bad(err, "logit_bias", "the bias of token %ld must be a number from -100 to 100",
                       id);
        r->logit_bias[r->n_logit_bias].id = (road_token)id;
        r->logit_bias[r->n_logit_bias].bias = (float)e->valuedouble;
        r->n_logit_bias++;
    }
    return true;
}

/* A field that road does not implement, accepted only with its neutral value: null, false, an
 * empty list or object, and 0 or (n, best_of, repetition_penalty) 1. */
static bool neutral(const cJSON *root, const char *name, api_error *err) {
    const cJSON *v = road__json_get(root, name);
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v)) return true;
    bool one = strcmp(name, "n") == 0 || strcmp(name, "best_of") == 0 ||
               strcmp(name, "repetition_penalty") == 0;
    if (cJSON_IsNumber(v) && v->valuedouble == (one ? 1 : 0)) return true;
    if (strcmp(name, "n") == 0 || strcmp(name, "best_of") == 0)
        return bad(err, name,
                   "'%s' must be 1: road returns one choice per request (send "
                   "concurrent requests for more)",
                   name);
    if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && cJSON_GetArraySize(v) == 0) return true;
    return bad(err, name, "'%s' is not supported by road serve (only its neutral value, %s)", name,
               one ? "1" : "0, null or false");
}

static bool parse_body(api_kind kind, const cJSON *root, api_request *r, api_error *err) {
    if (!cJSON_IsObject(root)) return bad(err, NULL, "%s", "the body must be a JSON object");
    const cJSON *v = road__json_get(root, "model");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v)) return bad(err, "model", "%s", "'model' must be a string");
        if (!(r->model = dup_str(v->valuestring))) return oom(err);
    }
    if (kind == API_COMPLETIONS) {
        v = road__json_get(root, "prompt");
        if (!v) return bad(err, "prompt", "%s", "'prompt' is required");
        if (!parse_prompt(v, r, err)) return false;
    } else {
        v = road__json_get(root, "messages");
        if (!v) return bad(err, "messages", "%s", "'messages' is required");
        if (!parse_messages(v, r, err) || !parse_chat_args(root, r, err)) return false;
    }
    /* OpenAI's fields, then vLLM's sampling extensions road's sampler does not have: sent
     * with a real value, they would change the answer, so they are refused by name. */
    static const char *const unsupported[] = {
        "n",      "best_of",   "logprobs",        "top_logprobs",    "echo",
        "suffix", "functions", "response_format", "prompt_logprobs", "use_beam_search"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
        if (!neutral(root, unsupported[i], err)) return false;
    v = road__json_get(root, "stream");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) return bad(err, "stream", "%s", "'stream' must be true or false");
        r->stream = cJSON_IsTrue(v);
    }
    v = road__json_get(root, "stream_options");
    if (v && !cJSON_IsNull(v)) {
        const cJSON *u = road__json_get(v, "include_usage");
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u)))
            return bad(err, "stream_options", "%s",
                       "'stream_options' must be {\"include_usage\": bool}");
        r->include_usage = cJSON_IsTrue(u);
    }
    v = road__json_get(root, "ignore_eos");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v))
            return bad(err, "ignore_eos", "%s", "'ignore_eos' must be true or false");
        r->ignore_eos = cJSON_IsTrue(v);
    }
    const char *mt = "max_tokens";
    v = road__json_get(root, mt);
    if ((!v || cJSON_IsNull(v)) && kind == API_CHAT)
        v = road__json_get(root, mt = "max_completion_tokens");
    if (v && !cJSON_IsNull(v) && !get_int(v, mt, 1, 1e9, &r->max_tokens, err)) return false;
    v = road__json_get(root, "temperature");
    if (v && !cJSON_IsNull(v) && !get_num(v, "temperature", 0, 2, false, &r->temperature, err))
        return false;
    v = road__json_get(root, "top_p");
    if (v && !cJSON_IsNull(v) && !get_num(v, "top_p", 0, 1, true, &r->top_p, err)) return false;
    v = road__json_get(root, "top_k");
    int64_t x;
    if (v && !cJSON_IsNull(v)) {
        if (!get_int(v, "top_k", -1, 1e9, &x, err)) return false;
        r->top_k = (int32_t)x;
    }
    v = road__json_get(root, "seed");
    if (v && !cJSON_IsNull(v)) {
        /* 2^53: integers a double holds exactly */
        if (!get_int(v, "seed", -9007199254740992.0, 9007199254740992.0, &x, err)) return false;
        r->has_seed = true;
        r->seed = (uint64_t)x;
    }
    if (!parse_penalties(root, r, err)) return false;
    if (!parse_stop(road__json_get(root, "stop"), r, err)) return false;
    v = road__json_get(root, "stop_token_ids");
    if (v && !cJSON_IsNull(v)) {
        int64_t n = 0;
        if (!cJSON_IsArray(v))
            return bad(err, "stop_token_ids", "%s", "'stop_token_ids' must be an array of ids");
        if (cJSON_GetArraySize(v) > 0) {
            if (!get_ids(v, "stop_token_ids", API_MAX_STOP_IDS, &r->stop_ids, &n, err))
                return false;
            r->n_stop_ids = (int32_t)n;
        }
    }
    return true;
}

/* The body through road's strict parser. A refusal names where: the line and column, and as
 * `param` the path of the value being read ("messages[1].content") when inside one. */
static bool parse_json(const char *body, size_t len, cJSON **root, api_error *err) {
    road_json_where w;
    road_status st = road__json_parse_at(body ? body : "", body ? len : 0, root, &w);
    if (st == ROAD_OK) return true;
    if (st == ROAD_ERR_NO_MEMORY) return oom(err);
    road__api_error_set(err, 400, BAD, NULL, w.path[0] ? w.path : NULL,
                        "%s at line %zu, column %zu: %s",
                        w.valid_json ? "road refuses the body" : "the body is not valid JSON",
                        w.line, w.column, w.what);
    return false;
}

bool road__api_parse_request(api_kind kind, const char *body, size_t len, api_request *out,
                             api_error *err) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->max_tokens = -1;
    out->temperature = 1.0f;
    out->top_p = 1.0f;
    out->repetition_penalty = 1.0f;
    out->add_generation_prompt = true;
    cJSON *root = NULL;
    if (!parse_json(body, len, &root, err)) return false;
    bool ok = parse_body(kind, root, out, err);
    cJSON_Delete(root);
    if (!ok) {
        road__api_request_free(out);
        out->kind = kind;
    }
    return ok;
}

void road__api_request_free(api_request *r) {
    free(r->model);
    free(r->prompt);
    free(r->prompt_ids);
    cJSON_Delete(r->messages);
    cJSON_Delete(r->tools);
    cJSON_Delete(r->documents);
    cJSON_Delete(r->chat_template_kwargs);
    for (int32_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->stop_ids);
    free(r->logit_bias);
    memset(r, 0, sizeof *r);
}

bool road__api_parse_lora(const char *body, size_t len, bool need_path, char **name, char **path,
                          api_error *err) {
    *name = *path = NULL;
    cJSON *root = NULL;
    if (!parse_json(body, len, &root, err)) return false;
    const cJSON *n = road__json_get(root, "lora_name");
    const cJSON *p = road__json_get(root, "lora_path");
    bool ok = false;
    if (!cJSON_IsString(n) || !n->valuestring[0])
        bad(err, "lora_name", "%s", "'lora_name' (a non-empty string) is required");
    else if (need_path && (!cJSON_IsString(p) || !p->valuestring[0]))
        bad(err, "lora_path", "%s", "'lora_path' (the adapter folder on the server) is required");
    else if (!(*name = dup_str(n->valuestring)) ||
             (need_path && !(*path = dup_str(p->valuestring))))
        oom(err);
    else
        ok = true;
    if (!ok) {
        free(*name);
        free(*path);
        *name = *path = NULL;
    }
    cJSON_Delete(root);
    return ok;
}

/* ---- replies ------------------------------------------------------------------------------- */

/* Text as a JSON string with its length: cJSON_CreateString would stop at a NUL the model
 * generated (byte-fallback tokens decode to any byte), so the literal is written here (a NUL
 * as \u0000) and put in the tree raw. */
static cJSON *text_item(const char *s, size_t n) {
    char *lit = NULL;
    if (road__json_string_literal(s, n, &lit, NULL) != ROAD_OK) return NULL;
    cJSON *x = cJSON_CreateRaw(lit);
    road__free(lit);
    return x;
}

static void add_usage(cJSON *o, const api_reply *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->prompt_tokens + r->completion_tokens));
}

static cJSON *head(const api_reply *r, const char *object) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    return o;
}

static char *finish(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Append choice {"index": 0} to choices (NULL: fails) and make the reply's text item for it in
 * *text (not yet attached: the caller places it); NULL, with nothing left allocated, when out of
 * memory. */
static cJSON *add_choice(cJSON *choices, const api_reply *r, cJSON **text) {
    cJSON *c = cJSON_CreateObject(), *t = text_item(r->text, r->text_len);
    if (!choices || !c || !t) {
        cJSON_Delete(c);
        cJSON_Delete(t);
        return NULL;
    }
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    *text = t;
    return c;
}

char *road__api_reply_json(const api_reply *r) {
    bool chat = r->kind == API_CHAT;
    cJSON *o = head(r, chat ? "chat.completion" : "text_completion");
    cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    cJSON *t = NULL, *c = add_choice(choices, r, &t);
    if (!c) {
        cJSON_Delete(o);
        return NULL;
    }
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        if (m) {
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddItemToObject(m, "content", t);
        } else {
            cJSON_Delete(t);
        }
    } else {
        cJSON_AddItemToObject(c, "text", t);
    }
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddStringToObject(c, "finish_reason", r->finish_reason ? r->finish_reason : "stop");
    add_usage(o, r);
    return finish(o);
}

char *road__api_chunk_json(const api_reply *r, bool first, bool usage_only) {
    bool chat = r->kind == API_CHAT;
    cJSON *o = head(r, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = o ? cJSON_AddArrayToObject(o, "choices") : NULL;
    if (!choices) {
        cJSON_Delete(o);
        return NULL;
    }
    if (usage_only) {
        add_usage(o, r);
        return finish(o);
    }
    cJSON *t = NULL, *c = add_choice(choices, r, &t);
    if (!c) {
        cJSON_Delete(o);
        return NULL;
    }
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (d && first) cJSON_AddStringToObject(d, "role", "assistant");
        if (d && (r->text_len || first))
            cJSON_AddItemToObject(d, "content", t);
        else
            cJSON_Delete(t);
    } else {
        cJSON_AddItemToObject(c, "text", t);
    }
    cJSON_AddNullToObject(c, "logprobs");
    if (r->finish_reason)
        cJSON_AddStringToObject(c, "finish_reason", r->finish_reason);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    return finish(o);
}
