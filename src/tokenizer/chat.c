/*
 * tokenizer/chat.c - chat prompts.
 *
 * ROAD_CHAT_AUTO runs the tokenizer's own chat template (tokenizer_config.json's chat_template
 * or chat_template.jinja) as written, with the Jinja engine (tokenizer/jinja.h) and the
 * variables transformers' apply_chat_template passes: the prompt an adapter is trained and
 * served with is the one PEFT/TRL and transformers build for the same model. Recognising a
 * template by its markers and substituting a look-alike was wrong for the main Instruct
 * models (issue 16), so nothing is guessed: a model without a template is an error asking for
 * a name.
 *
 * The named templates (llama3, llama2, mistral, chatml, qwen3) are built-in renderers for a
 * base model that has no template of its own; they write what those families' templates write
 * for plain system/user/assistant chats (tests check strings worked out from the Jinja).
 */
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer_internal.h"

static const char *const NAMES[ROAD_CHAT_COUNT_] = {"auto", "llama3", "llama2", "mistral",
                                                    "chatml", "qwen3"};

road_chat_params road_chat_default_params(void) {
    road_chat_params p = {ROAD_CHAT_AUTO, true, true};
    return p;
}

const char *road_chat_template_name(road_chat_template t) {
    return (unsigned)t < ROAD_CHAT_COUNT_ ? NAMES[t] : "?";
}

road_status road_chat_template_from_name(const char *name, road_chat_template *out) {
    for (int i = 0; name && i < ROAD_CHAT_COUNT_; i++) {
        if (strcmp(name, NAMES[i]) == 0) {
            *out = (road_chat_template)i;
            return ROAD_OK;
        }
    }
    return road__error(ROAD_ERR_INVALID_ARG,
                       "unknown chat template \"%.40s\"; road knows llama3, "
                       "llama2, mistral, chatml, qwen3",
                       name ? name : "(null)");
}

#define NO_TEMPLATE_HINT                                                                           \
    "pass --chat-template NAME (a built-in: llama3, llama2, mistral, chatml, qwen3)"

road_status road__tok_chat_compile(road_tokenizer *t) {
    if (!t->chat_template) return ROAD_OK;
    road_status s = road__jinja_parse(t->chat_template, strlen(t->chat_template), &t->chat_prog);
    if (s == ROAD_OK || s == ROAD_ERR_NO_MEMORY) return s;
    t->chat_err = s;
    t->chat_err_msg = road__strdup(road_last_error());
    road_clear_error();
    return t->chat_err_msg ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

void road__tok_chat_free(road_tokenizer *t) {
    road__jinja_free(t->chat_prog);
    road__free(t->chat_template);
    road__free(t->chat_err_msg);
}

road_status road_tokenizer_chat_template(const road_tokenizer *t, road_chat_template *out) {
    if (!t || !out) return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_chat_template: NULL");
    if (t->chat_prog) {
        *out = ROAD_CHAT_AUTO;
        return ROAD_OK;
    }
    if (t->chat_template)
        return road__error(t->chat_err, "%s: %s; fix the template or " NO_TEMPLATE_HINT,
                           t->chat_source, t->chat_err_msg ? t->chat_err_msg : "cannot be parsed");
    return road__error(ROAD_ERR_NOT_FOUND,
                       "the model has no chat template (tokenizer_config.json has no "
                       "chat_template and there is no chat_template.jinja); " NO_TEMPLATE_HINT);
}

/* The variables transformers passes: messages, add_generation_prompt, the special tokens the
 * config sets (absent ones stay undefined), tools and documents null, and the extra keyword
 * arguments: enable_thinking only when it is turned off (on is every template's default, and
 * passing it would make `enable_thinking is defined` true where transformers' is not). */
static road_status chat_vars(const road_tokenizer *t, const road_chat_params *p,
                             const road_chat_message *msgs, size_t n, cJSON **out) {
    cJSON *v = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(v, "messages");
    bool ok = v && list;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(list, m)) {
            cJSON_Delete(m); /* not in the list: still ours */
            ok = false;
            break;
        }
        ok = cJSON_AddStringToObject(m, "role", msgs[i].role) &&
             cJSON_AddStringToObject(m, "content", msgs[i].content);
    }
    const char *const tokens[][2] = {{"bos_token", t->bos_text},
                                     {"eos_token", t->eos_text},
                                     {"unk_token", t->unk_text},
                                     {"pad_token", t->pad_text}};
    for (size_t i = 0; ok && i < sizeof tokens / sizeof tokens[0]; i++)
        if (tokens[i][1]) ok = cJSON_AddStringToObject(v, tokens[i][0], tokens[i][1]) != NULL;
    ok = ok && cJSON_AddBoolToObject(v, "add_generation_prompt", p->add_generation_prompt) &&
         cJSON_AddNullToObject(v, "tools") && cJSON_AddNullToObject(v, "documents");
    if (ok && !p->enable_thinking) ok = cJSON_AddFalseToObject(v, "enable_thinking") != NULL;
    if (!ok) {
        cJSON_Delete(v);
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory building a chat's variables");
    }
    *out = v;
    return ROAD_OK;
}

static road_status render_own(const road_tokenizer *t, const road_chat_params *p,
                              const road_chat_message *msgs, size_t n, char **text, size_t *len) {
    cJSON *vars = NULL;
    road_status s = chat_vars(t, p, msgs, n, &vars);
    if (s != ROAD_OK) return s;
    road__jinja_result r;
    s = road__jinja_render(t->chat_prog, vars, NULL, &r);
    cJSON_Delete(vars);
    if (s != ROAD_OK) {
        if (s != ROAD_ERR_NO_MEMORY) road__error_prefix("%s", t->chat_source);
        return s;
    }
    road__free(r.spans);
    *text = r.text;
    if (len) *len = r.len;
    return ROAD_OK;
}

road_status road_chat_template_render(const char *tmpl, size_t tmpl_len, const cJSON *vars,
                                      char **text, size_t *len) {
    if (!tmpl || !text || (vars && !cJSON_IsObject(vars)))
        return road__error(ROAD_ERR_INVALID_ARG, "road_chat_template_render: NULL template or "
                                                 "text, or variables that are not a JSON object");
    *text = NULL;
    road__jinja *prog = NULL;
    road_status s = road__jinja_parse(tmpl, tmpl_len, &prog);
    road__jinja_result r;
    if (s == ROAD_OK) s = road__jinja_render(prog, vars, NULL, &r);
    road__jinja_free(prog);
    if (s != ROAD_OK) return s;
    road__free(r.spans);
    *text = r.text;
    if (len) *len = r.len;
    return ROAD_OK;
}

typedef struct out_t {
    tok_buf b;
    road_status s;
} out_t;

static void put(out_t *o, const char *s) {
    if (o->s == ROAD_OK && s) o->s = road__tok_buf_put(&o->b, s, strlen(s));
}
static void putn(out_t *o, const char *s, size_t n) {
    if (o->s == ROAD_OK) o->s = road__tok_buf_put(&o->b, s, n);
}

/* Python's str.strip() of whitespace (Jinja's |trim and .strip()) and of one character set. */
static bool py_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static void span_strip(const char **s, size_t *n, bool left, bool right, const char *set) {
    while (left && *n && (set ? strchr(set, (*s)[0]) != NULL : py_ws((*s)[0]))) (*s)++, (*n)--;
    while (right && *n && (set ? strchr(set, (*s)[*n - 1]) != NULL : py_ws((*s)[*n - 1]))) (*n)--;
}
static void put_stripped(out_t *o, const char *s, bool left, bool right, const char *set) {
    size_t n = strlen(s);
    span_strip(&s, &n, left, right, set);
    putn(o, s, n);
}

static bool is_role(const road_chat_message *m, const char *r) { return strcmp(m->role, r) == 0; }

static road_status alternation(const road_chat_message *m, size_t n, bool allow_system) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (allow_system && i == 0 && is_role(&m[0], "system")) continue;
        bool user = is_role(&m[i], "user");
        if (!user && !is_role(&m[i], "assistant"))
            return road__error(ROAD_ERR_INVALID_ARG,
                               "message %zu: role \"%.20s\" is not allowed by "
                               "this template (user/assistant%s)",
                               i, m[i].role, allow_system ? ", and system first" : "");
        if (user != (k % 2 == 0))
            return road__error(ROAD_ERR_INVALID_ARG,
                               "Conversation roles must alternate "
                               "user/assistant/user/assistant/... (message %zu)",
                               i);
        k++;
    }
    return ROAD_OK;
}

static void llama3(out_t *o, const road_tokenizer *t, const road_chat_message *m, size_t n,
                   bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) put(o, t->bos_text);
        put(o, "<|start_header_id|>");
        put(o, m[i].role);
        put(o, "<|end_header_id|>\n\n");
        put_stripped(o, m[i].content, true, true, NULL);
        put(o, "<|eot_id|>");
    }
    /* The template of this family's tokenizer_config.json (and of the fixture) writes the
     * assistant header unconditionally; Meta's later files guard it by add_generation_prompt. */
    bool guarded = t->chat_template && strstr(t->chat_template, "add_generation_prompt");
    if (gen || !guarded) put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static road_status llama2(out_t *o, const road_tokenizer *t, const road_chat_message *m,
                          size_t n, bool mistral) {
    road_status s = alternation(m, n, !mistral);
    if (s != ROAD_OK) return s;
    const char *system = NULL;
    if (!mistral && n && is_role(&m[0], "system")) system = m[0].content, m++, n--;
    if (mistral) put(o, t->bos_text);
    for (size_t i = 0; i < n; i++) {
        if (is_role(&m[i], "user")) {
            if (!mistral) put(o, t->bos_text);
            put(o, "[INST] ");
            if (mistral) {
                put(o, m[i].content);
            } else if (i == 0 && system) {
                /* '<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content, then .strip() */
                tok_buf tmp = {0};
                out_t c = {tmp, ROAD_OK};
                put(&c, "<<SYS>>\n");
                put(&c, system);
                put(&c, "\n<</SYS>>\n\n");
                put(&c, m[i].content);
                put(&c, "");
                if (c.s == ROAD_OK) put_stripped(o, c.b.p, true, true, NULL);
                else o->s = c.s;
                road__free(c.b.p);
            } else {
                put_stripped(o, m[i].content, true, true, NULL);
            }
            put(o, " [/INST]");
        } else {
            if (!mistral) put(o, " ");
            if (mistral) put(o, m[i].content);
            else put_stripped(o, m[i].content, true, true, NULL);
            if (!mistral) put(o, " ");
            put(o, t->eos_text);
        }
    }
    return ROAD_OK;
}

static void chatml(out_t *o, const road_chat_message *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        put(o, "<|im_start|>");
        put(o, m[i].role);
        put(o, "\n");
        put(o, m[i].content);
        put(o, "<|im_end|>\n");
    }
    if (gen) put(o, "<|im_start|>assistant\n");
}

static bool starts_ends(const char *s, const char *a, const char *b) {
    size_t n = strlen(s), al = strlen(a), bl = strlen(b);
    return n >= al && n >= bl && strncmp(s, a, al) == 0 && strcmp(s + n - bl, b) == 0;
}

/* Qwen3's template without tools (tools and tool_calls are not part of road's message type). */
static void qwen3(out_t *o, const road_chat_message *m, size_t n, const road_chat_params *p) {
    if (n && is_role(&m[0], "system")) {
        put(o, "<|im_start|>system\n");
        put(o, m[0].content);
        put(o, "<|im_end|>\n");
    }
    size_t last_query = n ? n - 1 : 0;
    for (size_t k = n; k-- > 0;) {
        if (is_role(&m[k], "user") && !starts_ends(m[k].content, "<tool_response>", "</tool_response>")) {
            last_query = k;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *c = m[i].content;
        if (is_role(&m[i], "user") || (is_role(&m[i], "system") && i > 0)) {
            put(o, "<|im_start|>");
            put(o, m[i].role);
            put(o, "\n");
            put(o, c);
            put(o, "<|im_end|>\n");
        } else if (is_role(&m[i], "assistant")) {
            /* content after the last </think> (lstrip '\n'); reasoning between <think> and it */
            const char *body = c, *rs = "";
            size_t bl = strlen(c), rl = 0;
            const char *end = NULL;
            for (const char *q = strstr(c, "</think>"); q; q = strstr(q + 1, "</think>")) end = q;
            if (end) {
                const char *first_end = strstr(c, "</think>");
                body = end + 8, bl = strlen(body);
                span_strip(&body, &bl, true, false, "\n");
                /* split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
                const char *r0 = c;
                size_t r0l = (size_t)(first_end - c);
                span_strip(&r0, &r0l, false, true, "\n");
                const char *st = r0;
                for (const char *q = r0; q + 7 <= r0 + r0l; q++)
                    if (strncmp(q, "<think>", 7) == 0) st = q + 7;
                rl = r0l - (size_t)(st - r0);
                rs = st;
                span_strip(&rs, &rl, true, false, "\n");
            }
            put(o, "<|im_start|>assistant\n");
            if (i > last_query && (i == n - 1 || rl > 0)) {
                put(o, "<think>\n");
                const char *r = rs;
                size_t l = rl;
                span_strip(&r, &l, true, true, "\n");
                putn(o, r, l);
                put(o, "\n</think>\n\n");
                span_strip(&body, &bl, true, false, "\n");
            }
            putn(o, body, bl);
            put(o, "<|im_end|>\n");
        } else if (is_role(&m[i], "tool")) {
            if (i == 0 || !is_role(&m[i - 1], "tool")) put(o, "<|im_start|>user");
            put(o, "\n<tool_response>\n");
            put(o, c);
            put(o, "\n</tool_response>");
            if (i == n - 1 || !is_role(&m[i + 1], "tool")) put(o, "<|im_end|>\n");
        }
    }
    if (p->add_generation_prompt) {
        put(o, "<|im_start|>assistant\n");
        if (!p->enable_thinking) put(o, "<think>\n\n</think>\n\n");
    }
}

road_status road_tokenizer_apply_chat(const road_tokenizer *t, const road_chat_params *p,
                                      const road_chat_message *msgs, size_t n, char **text,
                                      size_t *len) {
    if (!t || !p || !text || (!msgs && n))
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_apply_chat: NULL argument");
    *text = NULL;
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return road__error(ROAD_ERR_INVALID_ARG, "message %zu has no role or content", i);
    road_chat_template k = p->tmpl;
    road_status s = ROAD_OK;
    if (k == ROAD_CHAT_AUTO) {
        if ((s = road_tokenizer_chat_template(t, &k)) != ROAD_OK) return s;
        return render_own(t, p, msgs, n, text, len);
    }
    if ((unsigned)k >= ROAD_CHAT_COUNT_)
        return road__error(ROAD_ERR_INVALID_ARG, "chat template %d does not exist", (int)k);
    if ((k == ROAD_CHAT_LLAMA2 || k == ROAD_CHAT_MISTRAL) && (!t->bos_text || !t->eos_text))
        return road__error(ROAD_ERR_CONFIG,
                           "the %s template needs bos_token and eos_token in "
                           "tokenizer_config.json",
                           NAMES[k]);
    out_t o = {{0}, ROAD_OK};
    put(&o, "");
    switch (k) {
    case ROAD_CHAT_LLAMA3: llama3(&o, t, msgs, n, p->add_generation_prompt); break;
    case ROAD_CHAT_LLAMA2: s = llama2(&o, t, msgs, n, false); break;
    case ROAD_CHAT_MISTRAL: s = llama2(&o, t, msgs, n, true); break;
    case ROAD_CHAT_CHATML: chatml(&o, msgs, n, p->add_generation_prompt); break;
    default: qwen3(&o, msgs, n, p); break;
    }
    if (s == ROAD_OK) s = o.s;
    if (s != ROAD_OK) {
        road__free(o.b.p);
        return s;
    }
    *text = o.b.p;
    if (len) *len = o.b.len;
    return ROAD_OK;
}
