/*
 * tokenizer/chat.c - chat prompts: the model's own chat templates run as written.
 *
 * A tokenizer holds its model's templates by name (tokenizer_config.json's chat_template, a
 * string or a named list; chat_template.jinja; additional_chat_templates/NAME.jinja), each
 * parsed once by the Jinja engine (tokenizer/jinja.h), and optionally one chosen by
 * road_tokenizer_set_chat_template (a file, one of the model's names, or a built-in of
 * chat_builtin.c). A render passes the variables transformers' apply_chat_template passes, so
 * the prompt an adapter is trained and served with is the one PEFT/TRL and transformers build
 * for the same model; nothing is guessed from the template's markers (issue 16).
 *
 * On top of the engine, apply_chat_template's own steps: the choice of template ("tool_use"
 * when tools are passed), continue_final_message (the render cut after the last message's
 * content, by transformers' rule), and the assistant spans training needs ({% generation %}
 * markers, else renders of prefixes, as TRL does).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "tokenizer/jinja.h"
#include "tokenizer/text_util.h"
#include "tokenizer/tokenizer_internal.h"

/* A template file is a few KiB; anything past this is not a template. */
#define CHAT_MAX_FILE_BYTES ((size_t)4 << 20)

road_chat_params road_chat_default_params(void) {
    road_chat_params p;
    memset(&p, 0, sizeof p);
    p.add_generation_prompt = true;
    return p;
}

/* ---- the templates a tokenizer holds -------------------------------------------------------- */

/* Whether the text has a {% generation %} tag (transformers' AssistantTracker): "{%", an
 * optional '-' or '+', blanks, "generation", then a blank, '-' or '%'. */
static bool has_generation(const char *s, size_t n) {
    static const char kw[] = "generation";
    for (size_t i = 0; i + 2 <= n; i++) {
        if (s[i] != '{' || s[i + 1] != '%') continue;
        size_t j = i + 2;
        if (j < n && (s[j] == '-' || s[j] == '+')) j++;
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) j++;
        if (n - j > sizeof kw - 1 && memcmp(s + j, kw, sizeof kw - 1) == 0) {
            char c = s[j + sizeof kw - 1];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '-' || c == '%')
                return true;
        }
    }
    return false;
}

static void tmpl_clear(tok_chat_tmpl *c) {
    road__jinja_free(c->prog);
    road__free(c->name);
    road__free(c->text);
    road__free(c->source);
    road__free(c->err_msg);
    memset(c, 0, sizeof *c);
}

/* Fill c (zeroed) with a copy of the template and its parse. A parse error is kept in c
 * (err, err_msg) and is not an error here; only ROAD_ERR_NO_MEMORY is returned. */
static road_status tmpl_init(tok_chat_tmpl *c, const char *name, const char *text, size_t len,
                             const char *source) {
    c->name = road__strdup(name);
    c->source = road__strdup(source);
    c->text = road__malloc(len + 1);
    if (!c->name || !c->source || !c->text) {
        tmpl_clear(c);
        return ROAD_ERR_NO_MEMORY;
    }
    memcpy(c->text, text, len);
    c->text[len] = '\0';
    c->generation = has_generation(text, len);
    road_status s = road__jinja_parse(text, len, &c->prog);
    if (s == ROAD_OK) return ROAD_OK;
    if (s == ROAD_ERR_NO_MEMORY) {
        tmpl_clear(c);
        return s;
    }
    c->err = s;
    c->err_msg = road__strdup(road_last_error());
    road_clear_error();
    if (!c->err_msg) {
        tmpl_clear(c);
        return ROAD_ERR_NO_MEMORY;
    }
    return ROAD_OK;
}

static tok_chat_tmpl *find(const road_tokenizer *t, const char *name) {
    for (int i = 0; i < t->n_chats; i++)
        if (strcmp(t->chats[i].name, name) == 0) return &t->chats[i];
    return NULL;
}

road_status road__tok_chat_add(road_tokenizer *t, const char *name, const char *text, size_t len,
                               const char *source) {
    tok_chat_tmpl fresh;
    memset(&fresh, 0, sizeof fresh);
    road_status s = tmpl_init(&fresh, name, text, len, source);
    if (s != ROAD_OK) return s;
    tok_chat_tmpl *old = find(t, name);
    if (old) { /* chat_template.jinja replaces the config's default */
        tmpl_clear(old);
        *old = fresh;
        return ROAD_OK;
    }
    tok_chat_tmpl *v = road__realloc(t->chats, (size_t)(t->n_chats + 1) * sizeof *v);
    if (!v) {
        tmpl_clear(&fresh);
        return ROAD_ERR_NO_MEMORY;
    }
    t->chats = v;
    t->chats[t->n_chats++] = fresh;
    return ROAD_OK;
}

void road__tok_chat_free(road_tokenizer *t) {
    for (int i = 0; i < t->n_chats; i++) tmpl_clear(&t->chats[i]);
    road__free(t->chats);
    if (t->chosen) tmpl_clear(t->chosen);
    road__free(t->chosen);
    t->chats = t->chosen = NULL;
    t->n_chats = 0;
}

/* "a, b, c" into buf: the model's template names, or the built-ins. */
static const char *list_names(const road_tokenizer *t, bool builtins, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    const char *const *b = road_chat_builtin_names();
    for (int i = 0; builtins ? b[i] != NULL : i < t->n_chats; i++) {
        int w =
            snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", builtins ? b[i] : t->chats[i].name);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
    return buf;
}

#define TEMPLATE_HINT "pass --chat-template FILE|NAME (a Jinja file, or a built-in: %s)"

static bool looks_like_file(const char *spec) {
    size_t n = strlen(spec);
    struct stat st;
    return strchr(spec, '/') != NULL || (n > 6 && strcmp(spec + n - 6, ".jinja") == 0) ||
           stat(spec, &st) == 0;
}

road_status road_tokenizer_set_chat_template(road_tokenizer *t, const char *spec) {
    if (!t) return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_set_chat_template: NULL");
    if (!spec) {
        if (t->chosen) tmpl_clear(t->chosen);
        road__free(t->chosen);
        t->chosen = NULL;
        return ROAD_OK;
    }
    char names[512], builtins[256], source[600];
    char *file_text = NULL;
    const char *text = NULL;
    size_t len = 0;
    road_status s = ROAD_OK;
    const tok_chat_tmpl *own = find(t, spec);
    if (own) {
        text = own->text, len = strlen(own->text);
        snprintf(source, sizeof source, "%s", own->source);
    } else if (looks_like_file(spec)) {
        if ((s = road__file_read(spec, CHAT_MAX_FILE_BYTES, &file_text, &len)) != ROAD_OK) {
            road__error_prefix("chat template %s", spec);
            return s;
        }
        text = file_text;
        snprintf(source, sizeof source, "chat template %.500s", spec);
    } else if ((text = road__chat_builtin(spec)) != NULL) {
        len = strlen(text);
        snprintf(source, sizeof source, "built-in chat template %.100s", spec);
    } else {
        return road__error(ROAD_ERR_NOT_FOUND,
                           "chat template \"%.100s\" is not a file, not one of the model's "
                           "templates (%s) and not a built-in (%s)",
                           spec, t->n_chats ? list_names(t, false, names, sizeof names) : "none",
                           list_names(t, true, builtins, sizeof builtins));
    }
    tok_chat_tmpl *c = road__calloc(1, sizeof *c);
    if (!c || (s = tmpl_init(c, spec, text, len, source)) != ROAD_OK) {
        road__free(c);
        road__free(file_text);
        return ROAD_ERR_NO_MEMORY;
    }
    road__free(file_text);
    if (!c->prog) {
        s = road__error(c->err, "%s: %s", c->source, c->err_msg);
        tmpl_clear(c);
        road__free(c);
        return s;
    }
    road_tokenizer_set_chat_template(t, NULL);
    t->chosen = c;
    return ROAD_OK;
}

static bool has_tools(const road_chat_params *p) {
    return p && p->tools && !cJSON_IsNull(p->tools);
}

/* The template a render uses, as transformers picks it; an error when there is none or it did
 * not parse. */
static road_status pick(const road_tokenizer *t, const road_chat_params *p,
                        const tok_chat_tmpl **out) {
    char names[512], builtins[256];
    const tok_chat_tmpl *c = t->chosen;
    if (!c && has_tools(p)) c = find(t, "tool_use");
    if (!c) c = find(t, "default");
    if (!c && t->n_chats)
        return road__error(ROAD_ERR_NOT_FOUND,
                           "the model's chat templates are named %s and none is \"default\"; "
                           "pass --chat-template NAME",
                           list_names(t, false, names, sizeof names));
    if (!c)
        return road__error(ROAD_ERR_NOT_FOUND,
                           "the model has no chat template (tokenizer_config.json has no "
                           "chat_template and there is no chat_template.jinja); " TEMPLATE_HINT,
                           list_names(t, true, builtins, sizeof builtins));
    if (!c->prog)
        return road__error(c->err, "%s: %s; fix the template or " TEMPLATE_HINT, c->source,
                           c->err_msg ? c->err_msg : "cannot be parsed",
                           list_names(t, true, builtins, sizeof builtins));
    *out = c;
    return ROAD_OK;
}

road_status road_tokenizer_chat_template(const road_tokenizer *t, const char **source) {
    if (!t) return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_chat_template: NULL");
    const tok_chat_tmpl *c = NULL;
    road_status s = pick(t, NULL, &c);
    if (s == ROAD_OK && source) *source = c->source;
    return s;
}

/* ---- rendering ------------------------------------------------------------------------------- */

static const char *const RESERVED[] = {"messages", "tools", "documents", "add_generation_prompt"};

/* Messages as the templates expect them: a list of objects, each with a string role. */
static road_status check_messages(const cJSON *messages) {
    if (!cJSON_IsArray(messages))
        return road__error(ROAD_ERR_INVALID_ARG, "the messages must be a JSON list of objects");
    int64_t i = 0;
    for (const cJSON *m = messages->child; m; m = m->next, i++) {
        const cJSON *role = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "role") : NULL;
        if (!cJSON_IsString(role))
            return road__error(ROAD_ERR_INVALID_ARG,
                               "message %lld: each message must be an object with a string "
                               "\"role\"",
                               (long long)i);
    }
    return ROAD_OK;
}

/* apply_chat_template's variables. The caller's JSON is referenced, not copied: the object
 * must not outlive messages, tools, documents and kwargs. */
static road_status chat_vars(const cJSON *base, const road_chat_params *p, const cJSON *messages,
                             bool add_generation_prompt, cJSON **out) {
    *out = NULL;
    if ((p->tools && !cJSON_IsNull(p->tools) && !cJSON_IsArray(p->tools)) ||
        (p->documents && !cJSON_IsNull(p->documents) && !cJSON_IsArray(p->documents)))
        return road__error(ROAD_ERR_INVALID_ARG, "tools and documents must be JSON lists");
    if (p->kwargs && !cJSON_IsObject(p->kwargs))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "the chat template's keyword arguments must be "
                           "a JSON object, e.g. {\"enable_thinking\": false}");
    for (const cJSON *k = p->kwargs ? p->kwargs->child : NULL; k; k = k->next)
        for (size_t i = 0; i < sizeof RESERVED / sizeof RESERVED[0]; i++)
            if (strcmp(k->string, RESERVED[i]) == 0)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "the chat template's keyword arguments cannot set \"%s\" "
                                   "(it has its own argument)",
                                   RESERVED[i]);
    cJSON *v = cJSON_CreateObject();
    bool ok = v && cJSON_AddItemReferenceToObject(v, "messages", (cJSON *)messages);
    ok = ok && (p->tools ? cJSON_AddItemReferenceToObject(v, "tools", (cJSON *)p->tools)
                         : cJSON_AddNullToObject(v, "tools") != NULL);
    ok = ok && (p->documents ? cJSON_AddItemReferenceToObject(v, "documents", (cJSON *)p->documents)
                             : cJSON_AddNullToObject(v, "documents") != NULL);
    ok = ok && cJSON_AddBoolToObject(v, "add_generation_prompt", add_generation_prompt);
    for (const cJSON *k = base ? base->child : NULL; ok && k; k = k->next)
        if (!cJSON_GetObjectItemCaseSensitive(v, k->string))
            ok = cJSON_AddItemReferenceToObject(v, k->string, (cJSON *)k);
    for (const cJSON *k = p->kwargs ? p->kwargs->child : NULL; ok && k; k = k->next) {
        cJSON_DeleteItemFromObjectCaseSensitive(v, k->string); /* kwargs win over the tokens */
        ok = cJSON_AddItemReferenceToObject(v, k->string, (cJSON *)k);
    }
    if (!ok) {
        cJSON_Delete(v);
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory building a chat's variables");
    }
    *out = v;
    return ROAD_OK;
}

/* The special tokens the tokenizer's config sets, as template variables (absent ones are left
 * undefined). NULL on no memory. */
static cJSON *token_vars(const road_tokenizer *t) {
    cJSON *v = cJSON_CreateObject();
    const char *const tokens[][2] = {{"bos_token", t->bos_text},
                                     {"eos_token", t->eos_text},
                                     {"unk_token", t->unk_text},
                                     {"pad_token", t->pad_text}};
    for (size_t i = 0; v && i < sizeof tokens / sizeof tokens[0]; i++)
        if (tokens[i][1] && !cJSON_AddStringToObject(v, tokens[i][0], tokens[i][1])) {
            cJSON_Delete(v);
            return NULL;
        }
    return v;
}

static road_status render(const cJSON *base, const tok_chat_tmpl *c, const road_chat_params *p,
                          const cJSON *messages, bool gen, road__jinja_result *r) {
    cJSON *vars = NULL;
    road_status s = chat_vars(base, p, messages, gen, &vars);
    if (s != ROAD_OK) return s;
    s = road__jinja_render(c->prog, vars, NULL, r);
    cJSON_Delete(vars);
    if (s != ROAD_OK && s != ROAD_ERR_NO_MEMORY) road__error_prefix("%s", c->source);
    return s;
}

/* The messages as apply_chat_template (transformers 5) hands them to the template: a copy in
 * which keys whose value is null are dropped (OpenAI's content: null, tool_calls: null) and the
 * reasoning of a message (reasoning_content, thinking or reasoning, the first not null) is
 * under both "thinking" and "reasoning_content". NULL on no memory. */
static cJSON *normalize(const cJSON *messages) {
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    cJSON *list = cJSON_CreateArray();
    for (const cJSON *m = messages->child; list && m; m = m->next) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(list, o)) {
            cJSON_Delete(o);
            cJSON_Delete(list);
            return NULL;
        }
        const cJSON *reasoning = NULL;
        for (size_t i = 0; !reasoning && i < sizeof reasoning_keys / sizeof reasoning_keys[0];
             i++) {
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(m, reasoning_keys[i]);
            if (r && !cJSON_IsNull(r)) reasoning = r;
        }
        bool ok = true;
        /* {"thinking": reasoning, **message, "reasoning_content": reasoning} */
        const cJSON *own = cJSON_GetObjectItemCaseSensitive(m, "thinking");
        if (reasoning && (!own || cJSON_IsNull(own)))
            ok = cJSON_AddItemToObject(o, "thinking", cJSON_Duplicate(reasoning, true));
        for (const cJSON *k = m->child; ok && k; k = k->next) {
            if (cJSON_IsNull(k)) continue;
            const bool alias = reasoning && (strcmp(k->string, "thinking") == 0 ||
                                             strcmp(k->string, "reasoning_content") == 0);
            cJSON *v = cJSON_Duplicate(alias ? reasoning : k, true);
            ok = v && cJSON_AddItemToObject(o, k->string, v);
            if (!ok) cJSON_Delete(v);
        }
        if (ok && reasoning && !cJSON_GetObjectItemCaseSensitive(o, "reasoning_content")) {
            cJSON *v = cJSON_Duplicate(reasoning, true);
            ok = v && cJSON_AddItemToObject(o, "reasoning_content", v);
            if (!ok) cJSON_Delete(v);
        }
        if (!ok) {
            cJSON_Delete(list);
            return NULL;
        }
    }
    return list;
}

/* transformers' continue_final_message: the final message's content (for a list of parts, the
 * last part with a "text") gets a tag appended; the render is cut where the tag is, after the
 * whitespace before it where the template did not keep the tag's own trailing space. */
#define CONTINUE_TAG "CONTINUE_FINAL_MESSAGE_TAG "

static road_status tag_final(const tok_chat_tmpl *c, cJSON *messages, char **final) {
    cJSON *last = cJSON_GetArrayItem(messages, cJSON_GetArraySize(messages) - 1);
    cJSON *content = last ? cJSON_GetObjectItemCaseSensitive(last, "content") : NULL;
    if (!last)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "continue_final_message is set but the conversation is empty");
    if (!content)
        return road__error(ROAD_ERR_INVALID_ARG, "continue_final_message is set but the final "
                                                 "message has no \"content\" to continue");
    if (!strstr(c->text, "content"))
        return road__error(ROAD_ERR_INVALID_ARG, "continue_final_message: the chat template "
                                                 "never reads a message's \"content\"");
    cJSON *target = NULL;
    if (cJSON_IsArray(content)) {
        for (cJSON *part = content->child; part; part = part->next) {
            cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (tx) target = tx;
        }
        if (!target)
            return road__error(ROAD_ERR_INVALID_ARG, "continue_final_message is set but the "
                                                     "final message has no text part to continue");
    } else {
        target = content;
    }
    if (!cJSON_IsString(target))
        return road__error(ROAD_ERR_INVALID_ARG, "continue_final_message: the final message's "
                                                 "text to continue is not a string");
    size_t n = strlen(target->valuestring);
    char *tagged = road__malloc(n + sizeof CONTINUE_TAG);
    *final = road__strdup(target->valuestring);
    if (!tagged || !*final) {
        road__free(tagged);
        road__free(*final);
        *final = NULL;
        return ROAD_ERR_NO_MEMORY;
    }
    memcpy(tagged, target->valuestring, n);
    memcpy(tagged + n, CONTINUE_TAG, sizeof CONTINUE_TAG);
    bool ok = cJSON_SetValuestring(target, tagged) != NULL;
    road__free(tagged);
    return ok ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

static const char *find_last(const char *hay, size_t n, const char *needle, size_t nl) {
    for (size_t i = n + 1 >= nl + 1 ? n - nl + 1 : 0; i-- > 0;)
        if (memcmp(hay + i, needle, nl) == 0) return hay + i;
    return NULL;
}

static road_status cut_at_tag(const char *final, const char *text, size_t *len) {
    const char *st = final;
    size_t sl = strlen(final);
    road__tok_py_strip(&st, &sl, true, true);
    static const char tag[] = CONTINUE_TAG;
    const size_t tag_len = sizeof tag - 1, word_len = tag_len - 1; /* without its space */
    const char *at = find_last(text, *len, tag, word_len);
    if (!at || !find_last(text, *len, st, sl))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "continue_final_message is set but the final message does not appear "
                           "in the render (the chat template changes or drops it); render "
                           "without continue_final_message or change the message");
    size_t loc = (size_t)(at - text);
    if (!(loc + tag_len <= *len && memcmp(at, tag, tag_len) == 0)) {
        const char *p = text;
        road__tok_py_strip(&p, &loc, false, true); /* rstrip */
    }
    *len = loc;
    return ROAD_OK;
}

/* apply_chat_template's steps with template c and the variables `base` (special tokens). */
static road_status apply(const tok_chat_tmpl *c, const cJSON *base, const road_chat_params *p,
                         const cJSON *messages, char **text, size_t *len) {
    *text = NULL;
    if (p->add_generation_prompt && p->continue_final_message)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "add_generation_prompt and continue_final_message cannot both be set: "
                           "one starts a new assistant turn, the other leaves the last message "
                           "open");
    road_status s = check_messages(messages);
    if (s != ROAD_OK) return s;
    cJSON *chat = normalize(messages);
    char *final = NULL;
    if (!chat) return road__error(ROAD_ERR_NO_MEMORY, "out of memory rendering a chat");
    if (p->continue_final_message) s = tag_final(c, chat, &final);
    road__jinja_result r;
    if (s == ROAD_OK) s = render(base, c, p, chat, p->add_generation_prompt, &r);
    cJSON_Delete(chat);
    if (s == ROAD_OK && final && (s = cut_at_tag(final, r.text, &r.len)) != ROAD_OK)
        road__jinja_result_free(&r);
    road__free(final);
    if (s != ROAD_OK) return s;
    r.text[r.len] = '\0';
    road__free(r.spans);
    *text = r.text;
    if (len) *len = r.len;
    return ROAD_OK;
}

road_status road_tokenizer_apply_chat_json(const road_tokenizer *t, const road_chat_params *p,
                                           const cJSON *messages, char **text, size_t *len) {
    if (!t || !p || !text)
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_apply_chat_json: NULL argument");
    *text = NULL;
    const tok_chat_tmpl *c = NULL;
    road_status s = pick(t, p, &c);
    if (s != ROAD_OK) return s;
    cJSON *base = token_vars(t);
    if (!base) return road__error(ROAD_ERR_NO_MEMORY, "out of memory rendering a chat");
    s = apply(c, base, p, messages, text, len);
    cJSON_Delete(base);
    return s;
}

road_status road_chat_template_apply(const char *tmpl, size_t tmpl_len, const cJSON *variables,
                                     const road_chat_params *p, const cJSON *messages, char **text,
                                     size_t *len) {
    if (!tmpl || !p || !text || (variables && !cJSON_IsObject(variables)))
        return road__error(ROAD_ERR_INVALID_ARG, "road_chat_template_apply: NULL template, "
                                                 "params or text, or variables that are not a "
                                                 "JSON object");
    *text = NULL;
    tok_chat_tmpl c;
    memset(&c, 0, sizeof c);
    road_status s = tmpl_init(&c, "template", tmpl, tmpl_len, "chat template");
    if (s != ROAD_OK) return s;
    if (!c.prog)
        s = road__error(c.err, "%s", c.err_msg);
    else
        s = apply(&c, variables, p, messages, text, len);
    tmpl_clear(&c);
    return s;
}

/* road_chat_message[] as the JSON list the templates get. */
static road_status messages_json(const road_chat_message *msgs, size_t n, cJSON **out) {
    cJSON *list = cJSON_CreateArray();
    bool ok = list != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            cJSON_Delete(list);
            return road__error(ROAD_ERR_INVALID_ARG, "message %zu has no role or content", i);
        }
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(list, m)) {
            cJSON_Delete(m); /* not in the list: still ours */
            ok = false;
            break;
        }
        ok = cJSON_AddStringToObject(m, "role", msgs[i].role) &&
             cJSON_AddStringToObject(m, "content", msgs[i].content);
    }
    if (!ok) {
        cJSON_Delete(list);
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory building a chat");
    }
    *out = list;
    return ROAD_OK;
}

road_status road_tokenizer_apply_chat(const road_tokenizer *t, const road_chat_params *p,
                                      const road_chat_message *msgs, size_t n, char **text,
                                      size_t *len) {
    if (!t || !p || !text || (!msgs && n))
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_apply_chat: NULL argument");
    *text = NULL;
    cJSON *list = NULL;
    road_status s = messages_json(msgs, n, &list);
    if (s != ROAD_OK) return s;
    s = road_tokenizer_apply_chat_json(t, p, list, text, len);
    cJSON_Delete(list);
    return s;
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

/* ---- assistant spans, for training ------------------------------------------------------- */

void road_chat_spans_free(road_chat_span *spans) {
    road__free(spans);
}

static bool is_assistant(const cJSON *m) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    return cJSON_IsString(role) && strcmp(role->valuestring, "assistant") == 0;
}

/* messages[:k] as a list of references (valid while messages is). */
static cJSON *head(const cJSON *messages, int64_t k) {
    cJSON *list = cJSON_CreateArray();
    int64_t i = 0;
    for (const cJSON *m = messages->child; list && m && i < k; m = m->next, i++)
        if (!cJSON_AddItemReferenceToArray(list, (cJSON *)m)) {
            cJSON_Delete(list);
            return NULL;
        }
    return list;
}

static road_status render_head(const cJSON *base, const tok_chat_tmpl *c, const road_chat_params *p,
                               const cJSON *messages, int64_t k, bool gen, road__jinja_result *r) {
    cJSON *h = head(messages, k);
    if (!h) return road__error(ROAD_ERR_NO_MEMORY, "out of memory rendering a chat");
    road_status s = render(base, c, p, h, gen, r);
    cJSON_Delete(h);
    return s;
}

static bool starts_with(const char *s, size_t n, const char *pre, size_t pn) {
    return pn <= n && memcmp(s, pre, pn) == 0;
}

/* Where the text of assistant message m, rendered as an earlier turn, ends in the whole
 * render `full` from `from` on: the turn's content (stripped; for a content with reasoning,
 * also the text after its last "</think>", which templates such as Qwen3's keep alone in
 * earlier turns) followed by `closing`, the text the template puts after the content when
 * the turn is the last one. 0 when it is not there. */
static size_t find_turn_end(const cJSON *m, const char *full, size_t full_len, size_t from,
                            const char *closing, size_t closing_len) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsString(content)) return 0;
    const char *cands[2] = {content->valuestring, NULL};
    const char *think = NULL;
    for (const char *q = strstr(content->valuestring, "</think>"); q; q = strstr(q + 1, "</think>"))
        think = q;
    if (think) cands[1] = think + 8;
    for (int k = 0; k < 2 && cands[k]; k++) {
        const char *cs = cands[k];
        size_t cl = strlen(cs);
        road__tok_py_strip(&cs, &cl, true, true);
        for (size_t i = from; i + cl + closing_len <= full_len; i++)
            if (memcmp(full + i, cs, cl) == 0 && memcmp(full + i + cl, closing, closing_len) == 0)
                return i + cl + closing_len;
    }
    return 0;
}

/* The text the template renders after a last assistant turn's content: what follows the last
 * occurrence of the stripped content in `turn` (the render of that turn alone, after the
 * generation prompt). */
static bool closing_of(const cJSON *m, const char *turn, size_t turn_len, const char **closing,
                       size_t *closing_len) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!cJSON_IsString(content)) return false;
    const char *cs = content->valuestring;
    size_t cl = strlen(cs);
    road__tok_py_strip(&cs, &cl, true, true);
    for (size_t i = turn_len + 1 >= cl + 1 ? turn_len - cl + 1 : 0; i-- > 0;)
        if (memcmp(turn + i, cs, cl) == 0) {
            *closing = turn + i + cl;
            *closing_len = turn_len - i - cl;
            return true;
        }
    return false;
}

#define SPLIT_HINT                                                                                 \
    "the template renders the conversation up to it differently from the whole conversation; "     \
    "use a chat template whose assistant turns are marked with {%% generation %%} ... "            \
    "{%% endgeneration %%} (--chat-template FILE)"

/* The assistant spans by prefixes (the template has no {% generation %} markers). */
static road_status spans_by_prefixes(const cJSON *base, const tok_chat_tmpl *c,
                                     const road_chat_params *p, const cJSON *messages,
                                     const road__jinja_result *full, road_chat_span *spans,
                                     size_t *n_spans) {
    road_status s = ROAD_OK;
    size_t done = 0, n = 0;
    int64_t k = 0;
    for (const cJSON *m = messages->child; m && s == ROAD_OK; m = m->next, k++) {
        if (!is_assistant(m)) continue;
        road__jinja_result pre, post;
        memset(&pre, 0, sizeof pre);
        memset(&post, 0, sizeof post);
        s = render_head(base, c, p, messages, k, true, &pre);
        if (s != ROAD_OK && s != ROAD_ERR_NO_MEMORY && k == 0)
            s = road__error(ROAD_ERR_UNSUPPORTED,
                            "message 0 (assistant): the conversation starts with the assistant "
                            "and the chat template cannot render the empty conversation before "
                            "it (%s); start with a user or system message, or use a chat "
                            "template whose assistant turns are marked with {%% generation %%}",
                            road_last_error());
        if (s == ROAD_OK &&
            (s = render_head(base, c, p, messages, k + 1, false, &post)) == ROAD_OK) {
            size_t a = pre.len, b = 0;
            if (a < done || !starts_with(full->text, full->len, pre.text, pre.len) ||
                !starts_with(post.text, post.len, pre.text, pre.len)) {
                s = road__error(ROAD_ERR_UNSUPPORTED,
                                "message %lld (assistant): its turn cannot be found: " SPLIT_HINT,
                                (long long)k);
            } else if (post.len > a && starts_with(full->text, full->len, post.text, post.len)) {
                b = post.len;
            } else {
                const char *closing = NULL;
                size_t closing_len = 0;
                if (closing_of(m, post.text + a, post.len - a, &closing, &closing_len))
                    b = find_turn_end(m, full->text, full->len, a, closing, closing_len);
                if (b == 0)
                    s = road__error(ROAD_ERR_UNSUPPORTED,
                                    "message %lld (assistant): the end of its turn cannot be "
                                    "found: " SPLIT_HINT,
                                    (long long)k);
            }
            if (s == ROAD_OK) {
                spans[n].begin = a, spans[n].end = b;
                n++;
                done = b;
            }
        }
        road__jinja_result_free(&pre);
        road__jinja_result_free(&post);
    }
    *n_spans = n;
    return s;
}

road_status road_tokenizer_chat_spans(const road_tokenizer *t, const road_chat_params *p,
                                      const cJSON *messages, char **text, size_t *len,
                                      road_chat_span **spans, size_t *n_spans) {
    if (!t || !p || !text || !spans || !n_spans)
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_chat_spans: NULL argument");
    *text = NULL, *spans = NULL, *n_spans = 0;
    road_chat_params q = *p;
    q.add_generation_prompt = q.continue_final_message = false;
    road_status s = check_messages(messages);
    const tok_chat_tmpl *c = NULL;
    if (s == ROAD_OK) s = pick(t, &q, &c);
    if (s != ROAD_OK) return s;
    cJSON *chat = normalize(messages), *base = token_vars(t);
    if (!chat || !base) {
        cJSON_Delete(chat);
        cJSON_Delete(base);
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory rendering a chat");
    }
    road__jinja_result full;
    if ((s = render(base, c, &q, chat, false, &full)) != ROAD_OK) {
        cJSON_Delete(chat);
        cJSON_Delete(base);
        return s;
    }
    size_t cap = (size_t)cJSON_GetArraySize(messages) + full.n_spans + 1, n = 0;
    road_chat_span *v = road__calloc(cap, sizeof *v);
    if (!v) s = ROAD_ERR_NO_MEMORY;
    if (s == ROAD_OK && c->generation) {
        for (size_t i = 0; i < full.n_spans; i++) {
            if (full.spans[i].end == full.spans[i].begin) continue;
            if (n && full.spans[i].begin == v[n - 1].end) { /* adjacent blocks: one turn */
                v[n - 1].end = full.spans[i].end;
                continue;
            }
            v[n].begin = full.spans[i].begin, v[n].end = full.spans[i].end;
            n++;
        }
    } else if (s == ROAD_OK) {
        s = spans_by_prefixes(base, c, &q, chat, &full, v, &n);
    }
    cJSON_Delete(chat);
    cJSON_Delete(base);
    if (s != ROAD_OK) {
        road__free(v);
        road__jinja_result_free(&full);
        return s;
    }
    road__free(full.spans);
    *text = full.text;
    if (len) *len = full.len;
    *spans = v;
    *n_spans = n;
    return ROAD_OK;
}
