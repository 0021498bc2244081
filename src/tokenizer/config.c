/*
 * tokenizer/config.c - the parts of a tokenizer around the model: added/special tokens,
 * the post-processor (bos/eos around the ids), and tokenizer_config.json (bos/eos/pad tokens,
 * add_bos_token / add_eos_token, chat_template).
 *
 * add_bos_token / add_eos_token: when tokenizer_config.json states either one, the template is
 * rebuilt as [bos if add_bos] text [eos if add_eos] from the config's tokens, as transformers'
 * Llama tokenizers do when they load (update_post_processor); otherwise tokenizer.json's
 * post-processor stands, which is what the `tokenizers` library alone gives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

static road_status opt_bool(const cJSON *o, const char *key, const char *where, int64_t i,
                            bool *out) {
    const cJSON *v = road__json_get(o, key);
    *out = false;
    if (!v || cJSON_IsNull(v)) return ROAD_OK;
    if (!cJSON_IsBool(v))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: %s[%lld].%s must be true or false",
                           where, (long long)i, key);
    *out = cJSON_IsTrue(v);
    return ROAD_OK;
}

static int cmp_added(const void *pa, const void *pb, const char *pool) {
    const tok_added *a = pa, *b = pb;
    uint8_t ca = (uint8_t)pool[a->off], cb = (uint8_t)pool[b->off];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->id < b->id ? -1 : a->id > b->id;
}

/* qsort has no context argument in C11: a small insertion sort keeps it simple (real files
 * have at most a few hundred added tokens). */
static void sort_added(tok_added *v, int32_t n, const char *pool) {
    for (int32_t i = 1; i < n; i++) {
        tok_added x = v[i];
        int32_t j = i - 1;
        while (j >= 0 && cmp_added(&v[j], &x, pool) > 0) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

road_status road__tok_load_added(road_tokenizer *t, const cJSON *added) {
    int64_t n = added ? cJSON_GetArraySize(added) : 0;
    if (n > 0) {
        t->added = road__calloc((size_t)n, sizeof *t->added);
        if (!t->added) return ROAD_ERR_NO_MEMORY;
    }
    int64_t i = 0;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next, i++) {
        tok_added *a = &t->added[t->n_added];
        int32_t id = 0;
        const char *content = NULL;
        road_status s = road__json_get_int(e, "id", &id); /* range checked by scan_max_id */
        if (s == ROAD_OK) s = road__json_get_string(e, "content", false, &content);
        if (s != ROAD_OK) {
            road__error_prefix("tokenizer.json: added_tokens[%lld]", (long long)i);
            return ROAD_ERR_FORMAT;
        }
        if (!content[0])
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer.json: added_tokens[%lld] has an empty "
                               "content",
                               (long long)i);
        bool normalized;
        if ((s = opt_bool(e, "lstrip", "added_tokens", i, &a->lstrip)) != ROAD_OK ||
            (s = opt_bool(e, "rstrip", "added_tokens", i, &a->rstrip)) != ROAD_OK ||
            (s = opt_bool(e, "single_word", "added_tokens", i, &a->single_word)) != ROAD_OK ||
            (s = opt_bool(e, "special", "added_tokens", i, &a->special)) != ROAD_OK ||
            (s = opt_bool(e, "normalized", "added_tokens", i, &normalized)) != ROAD_OK)
            return s;
        /* Matching a "normalized" token on the raw text is the same for every normalizer road
         * reads except Prepend/Replace of the token's own characters, which real files never
         * combine; see docs/tokenizer.md. */
        size_t len = strlen(content);
        if (t->flags[id] & TOK_F_PRESENT) {
            const tok_span *p = &t->piece[id];
            if (p->len != len || memcmp(t->pool + p->off, content, len) != 0) {
                char q1[64], q2[64];
                road__json_quote(content, q1, sizeof q1);
                road__json_quote(t->pool + p->off, q2, sizeof q2);
                return road__error(ROAD_ERR_FORMAT,
                                   "tokenizer.json: added_tokens[%lld] %s has id %d, which "
                                   "model.vocab (or an earlier added token) gives to %s",
                                   (long long)i, q1, id, q2);
            }
        } else {
            if (road__tok_lookup(t, content, len) >= 0) {
                char q[64];
                road__json_quote(content, q, sizeof q);
                return road__error(ROAD_ERR_FORMAT,
                                   "tokenizer.json: added_tokens[%lld] %s has id %d but "
                                   "model.vocab gives it id %d",
                                   (long long)i, q, id, road__tok_lookup(t, content, len));
            }
            if ((s = road__tok_pool_add(t, content, len, &t->piece[id])) != ROAD_OK) return s;
        }
        t->flags[id] |= TOK_F_PRESENT | TOK_F_ADDED | (a->special ? TOK_F_SPECIAL : 0);
        a->id = id;
        a->off = t->piece[id].off;
        a->len = (uint32_t)len;
        t->n_added++;
    }
    sort_added(t->added, t->n_added, t->pool);
    int32_t k = 0;
    for (int c = 0; c <= 256; c++) {
        while (k < t->n_added && (uint8_t)t->pool[t->added[k].off] < c) k++;
        t->added_first[c] = k;
    }
    return ROAD_OK;
}

/* ---- post-processor ------------------------------------------------------------------------- */

static road_status template_ids(road_tokenizer *t, const cJSON *pp) {
    const cJSON *single = road__json_get(pp, "single"),
                *specials = road__json_get(pp, "special_tokens");
    if (!single || !cJSON_IsArray(single))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: post_processor.single must be a list");
    bool seen_a = false;
    int64_t i = 0;
    for (const cJSON *e = single->child; e; e = e->next, i++) {
        const cJSON *st = road__json_get(e, "SpecialToken"), *sq = road__json_get(e, "Sequence");
        if (sq && cJSON_IsObject(sq)) {
            if (seen_a)
                return road__error(ROAD_ERR_FORMAT, "tokenizer.json: post_processor.single names "
                                                    "the sequence twice");
            seen_a = true;
            continue;
        }
        const char *name = NULL;
        if (!st || road__json_get_string(st, "id", false, &name) != ROAD_OK)
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer.json: post_processor.single[%lld] must "
                               "be {\"SpecialToken\": {\"id\": ...}} or "
                               "{\"Sequence\": ...}",
                               (long long)i);
        const cJSON *spec = specials ? road__json_get(specials, name) : NULL;
        const cJSON *ids = spec ? road__json_get(spec, "ids") : NULL;
        if (!ids || !cJSON_IsArray(ids)) {
            char q[64];
            road__json_quote(name, q, sizeof q);
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer.json: post_processor.special_tokens "
                               "has no \"ids\" list for %s",
                               q);
        }
        for (const cJSON *x = ids->child; x; x = x->next) {
            if (!road__json_is_int(x) || x->valuedouble < 0 || x->valuedouble >= t->n_ids ||
                !(t->flags[(int32_t)x->valuedouble] & TOK_F_PRESENT))
                return road__error(ROAD_ERR_FORMAT,
                                   "tokenizer.json: post_processor.special_tokens"
                                   ": an id of %.40s is not a token id",
                                   name);
            int *n = seen_a ? &t->n_tmpl_post : &t->n_tmpl_pre;
            int32_t *v = seen_a ? t->tmpl_post : t->tmpl_pre;
            if (*n >= TOK_MAX_TEMPLATE)
                return road__error(ROAD_ERR_UNSUPPORTED,
                                   "tokenizer.json: post_processor adds "
                                   "more than %d tokens",
                                   TOK_MAX_TEMPLATE);
            v[(*n)++] = (int32_t)x->valuedouble;
        }
    }
    if (!seen_a)
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: post_processor.single has no "
                                            "Sequence");
    return ROAD_OK;
}

road_status road__tok_load_post(road_tokenizer *t, const cJSON *pp) {
    if (!pp || cJSON_IsNull(pp)) return ROAD_OK;
    const char *type = NULL;
    if (!cJSON_IsObject(pp) || road__json_get_string(pp, "type", false, &type) != ROAD_OK)
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: post_processor needs a \"type\"");
    if (strcmp(type, "ByteLevel") == 0) return ROAD_OK; /* offsets only: ids unchanged */
    if (strcmp(type, "TemplateProcessing") == 0) return template_ids(t, pp);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = road__json_get(pp, "processors");
        if (!list || !cJSON_IsArray(list))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: post_processor.processors must "
                                                "be a list");
        for (const cJSON *e = list->child; e; e = e->next) {
            road_status s = road__tok_load_post(t, e);
            if (s != ROAD_OK) return s;
        }
        return ROAD_OK;
    }
    return road__error(ROAD_ERR_UNSUPPORTED,
                       "tokenizer.json: post_processor type \"%.40s\" is not "
                       "supported (road reads TemplateProcessing, ByteLevel "
                       "and Sequence)",
                       type);
}

/* ---- tokenizer_config.json ------------------------------------------------------------------ */

/* A token field: "<s>", {"content": "<s>", ...} (older files) or null. */
static road_status config_token(road_tokenizer *t, const cJSON *cfg, const char *key,
                                int32_t *id, char **text) {
    const cJSON *v = road__json_get(cfg, key);
    if (!v || cJSON_IsNull(v)) return ROAD_OK;
    const char *s = NULL;
    if (cJSON_IsString(v)) s = v->valuestring;
    else if (cJSON_IsObject(v) && cJSON_IsString(road__json_get(v, "content")))
        s = road__json_get(v, "content")->valuestring;
    if (!s)
        return road__error(ROAD_ERR_FORMAT, "tokenizer_config.json: %s must be a token string",
                           key);
    int32_t found = road_tokenizer_token_to_id(t, s);
    if (found < 0) {
        char q[64];
        road__json_quote(s, q, sizeof q);
        return road__error(ROAD_ERR_FORMAT,
                           "tokenizer_config.json: %s %s is not a token of "
                           "tokenizer.json",
                           key, q);
    }
    *id = found;
    if (text) {
        *text = road__strdup(s);
        if (!*text) return ROAD_ERR_NO_MEMORY;
    }
    return ROAD_OK;
}

/* chat_template: a string (the default), or named templates [{"name": ..., "template": ...},
 * ...], of which transformers uses "default" unless told otherwise ("tool_use" when tools are
 * passed and there is one). */
static road_status config_chat_template(road_tokenizer *t, const cJSON *ct) {
    if (!ct || cJSON_IsNull(ct)) return ROAD_OK;
    if (cJSON_IsString(ct))
        return road__tok_chat_add(t, "default", ct->valuestring, strlen(ct->valuestring),
                                  "tokenizer_config.json's chat_template");
    if (!cJSON_IsArray(ct))
        return road__error(ROAD_ERR_FORMAT, "tokenizer_config.json: chat_template must be a "
                                            "string or a list of named templates");
    int64_t i = 0;
    for (const cJSON *e = ct->child; e; e = e->next, i++) {
        const cJSON *nm = road__json_get(e, "name"), *tp = road__json_get(e, "template");
        if (!cJSON_IsObject(e) || !cJSON_IsString(nm) || !cJSON_IsString(tp))
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer_config.json: chat_template[%lld] must be "
                               "{\"name\": string, \"template\": string}",
                               (long long)i);
        char src[160];
        snprintf(src, sizeof src, "tokenizer_config.json's chat_template \"%.100s\"",
                 nm->valuestring);
        road_status s = road__tok_chat_add(t, nm->valuestring, tp->valuestring,
                                           strlen(tp->valuestring), src);
        if (s != ROAD_OK) return s;
    }
    return ROAD_OK;
}

static road_status jinja_file(road_tokenizer *t, const char *jinja, size_t jinja_len) {
    if (!jinja) return ROAD_OK;
    return road__tok_chat_add(t, "default", jinja, jinja_len, "chat_template.jinja");
}

road_status road__tok_load_config(road_tokenizer *t, const char *json, size_t len,
                                  const char *jinja, size_t jinja_len) {
    /* Without a config: bos is the first id the template puts before the text. */
    if (t->n_tmpl_pre > 0) t->bos_id = t->tmpl_pre[0];
    if (!json) return jinja_file(t, jinja, jinja_len);
    cJSON *cfg = NULL;
    road_status s = road_json_parse(json, len, &cfg);
    if (s != ROAD_OK) {
        road__error_prefix("tokenizer_config.json");
        return s;
    }
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return road__error(ROAD_ERR_FORMAT, "tokenizer_config.json must hold a JSON object");
    }
    int32_t unused = -1;
    if ((s = config_token(t, cfg, "bos_token", &t->bos_id, &t->bos_text)) != ROAD_OK ||
        (s = config_token(t, cfg, "eos_token", &t->eos_id, &t->eos_text)) != ROAD_OK ||
        (s = config_token(t, cfg, "pad_token", &t->pad_id, &t->pad_text)) != ROAD_OK ||
        (s = config_token(t, cfg, "unk_token", &unused, &t->unk_text)) != ROAD_OK)
        goto done;
    const cJSON *ab = road__json_get(cfg, "add_bos_token"),
                *ae = road__json_get(cfg, "add_eos_token");
    if ((ab && !cJSON_IsBool(ab)) || (ae && !cJSON_IsBool(ae))) {
        s = road__error(ROAD_ERR_FORMAT, "tokenizer_config.json: add_bos_token and add_eos_token "
                                         "must be true or false");
        goto done;
    }
    if (ab || ae) {
        bool add_bos = ab && cJSON_IsTrue(ab), add_eos = ae && cJSON_IsTrue(ae);
        if ((add_bos && t->bos_id < 0) || (add_eos && t->eos_id < 0)) {
            s = road__error(ROAD_ERR_FORMAT,
                            "tokenizer_config.json: add_%s_token is true but "
                            "%s_token is not set",
                            add_bos && t->bos_id < 0 ? "bos" : "eos",
                            add_bos && t->bos_id < 0 ? "bos" : "eos");
            goto done;
        }
        t->n_tmpl_pre = t->n_tmpl_post = 0;
        if (add_bos) t->tmpl_pre[t->n_tmpl_pre++] = t->bos_id;
        if (add_eos) t->tmpl_post[t->n_tmpl_post++] = t->eos_id;
    }
    if ((s = config_chat_template(t, road__json_get(cfg, "chat_template"))) == ROAD_OK)
        s = jinja_file(t, jinja, jinja_len);
done:
    cJSON_Delete(cfg);
    return s;
}
