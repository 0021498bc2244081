/*
 * tokenizer/text.c - text before the model: the normalizers and pre-tokenizers of
 * tokenizer.json (loading and running them).
 *
 * Split regexes run through PCRE2 in UTF + UCP mode, compiled once at load (JIT when the
 * platform has it). Hugging Face runs them with Oniguruma, whose \s is Unicode White_Space;
 * PCRE2's \s also takes U+180E, so \s and \S are rewritten into the explicit White_Space set
 * before compiling. Input reaching PCRE2 is always valid UTF-8 (road__tok_utf8_sanitize), so
 * matching skips PCRE2's own UTF check.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- loading -------------------------------------------------------------------------------- */

static void *pcre_alloc(size_t n, void *ud) {
    (void)ud;
    return road__malloc(n);
}
static void pcre_free(void *p, void *ud) {
    (void)ud;
    road__free(p);
}

/* Unicode White_Space, as Oniguruma's \s has it (without brackets, to sit inside a class). */
#define WS_SET "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static road_status rewrite_pattern(const char *p, tok_buf *o) {
    bool in_class = false;
    road_status s = ROAD_OK;
    for (size_t i = 0; p[i] && s == ROAD_OK; i++) {
        char c = p[i];
        if (c == '\\' && p[i + 1]) {
            char n = p[++i];
            if (n == 's')
                s = in_class ? road__tok_buf_put(o, WS_SET, strlen(WS_SET))
                             : road__tok_buf_put(o, "[" WS_SET "]", strlen(WS_SET) + 2);
            else if (n == 'S' && !in_class)
                s = road__tok_buf_put(o, "[^" WS_SET "]", strlen(WS_SET) + 3);
            else if (n == 'S')
                return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: \\S inside a [...] class "
                                                         "of a Split regex is not supported");
            else {
                char two[2] = {'\\', n};
                s = road__tok_buf_put(o, two, 2);
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            s = road__tok_buf_put(o, "[", 1);
            /* a ']' right after '[' or '[^' is a literal */
            if (p[i + 1] == '^') s = road__tok_buf_put(o, "^", 1), i++;
            if (s == ROAD_OK && p[i + 1] == ']') s = road__tok_buf_put(o, "]", 1), i++;
            continue;
        }
        if (in_class && c == '[' && p[i + 1] == ':') {
            const char *end = strstr(p + i, ":]");
            size_t n = end ? (size_t)(end - (p + i)) + 2 : 1;
            s = road__tok_buf_put(o, p + i, n);
            i += n - 1;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        s = road__tok_buf_put(o, &c, 1);
    }
    return s;
}

static road_status compile_regex(road_tokenizer *t, const char *pattern, pcre2_code **out) {
    if (!t->pcre_ctx) {
        t->pcre_ctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
        if (!t->pcre_ctx) return ROAD_ERR_NO_MEMORY;
    }
    tok_buf b = {0};
    road_status s = rewrite_pattern(pattern, &b);
    if (s != ROAD_OK || (s = road__tok_buf_put(&b, "", 0)) != ROAD_OK) {
        road__free(b.p);
        return s;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(t->pcre_ctx);
    if (!cc) {
        road__free(b.p);
        return ROAD_ERR_NO_MEMORY;
    }
    int err;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)b.p, b.len, PCRE2_UTF | PCRE2_UCP, &err, &at, cc);
    pcre2_compile_context_free(cc);
    road__free(b.p);
    if (!*out) {
        if (err == PCRE2_ERROR_NOMEMORY) return ROAD_ERR_NO_MEMORY;
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        char q[64];
        road__json_quote(pattern, q, sizeof q);
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Split regex %s does not compile: %s",
                           q, (const char *)msg);
    }
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    return ROAD_OK;
}

static road_status type_of(const cJSON *o, const char *where, const char **type) {
    if (!cJSON_IsObject(o) || road__json_get_string(o, "type", false, type) != ROAD_OK)
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: %s needs a \"type\"", where);
    return ROAD_OK;
}

static road_status dup_string(const cJSON *o, const char *key, const char *where, char **out) {
    const char *v;
    if (road__json_get_string(o, key, false, &v) != ROAD_OK) {
        road__error_prefix("tokenizer.json: %s", where);
        return ROAD_ERR_FORMAT;
    }
    *out = road__strdup(v);
    return *out ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

road_status road__tok_load_normalizer(road_tokenizer *t, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return ROAD_OK;
    const char *type;
    road_status s = type_of(n, "normalizer", &type);
    if (s != ROAD_OK) return s;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = road__json_get(n, "normalizers");
        if (!cJSON_IsArray(list))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: normalizer.normalizers must be a "
                                                "list");
        for (const cJSON *e = list->child; e; e = e->next)
            if ((s = road__tok_load_normalizer(t, e)) != ROAD_OK) return s;
        return ROAD_OK;
    }
    if (t->n_norm == TOK_MAX_STEPS)
        return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: more than %d normalizers",
                           TOK_MAX_STEPS);
    tok_norm *st = &t->norm[t->n_norm];
    if (strcmp(type, "NFC") == 0) {
        st->kind = TOK_NORM_NFC;
    } else if (strcmp(type, "Prepend") == 0) {
        st->kind = TOK_NORM_PREPEND;
        if ((s = dup_string(n, "prepend", "normalizer Prepend", &st->a)) != ROAD_OK) return s;
    } else if (strcmp(type, "Replace") == 0) {
        st->kind = TOK_NORM_REPLACE;
        const cJSON *pat = road__json_get(n, "pattern");
        if (!cJSON_IsObject(pat) || !road__json_get(pat, "String"))
            return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: normalizer Replace with a "
                                                     "Regex pattern is not supported (only "
                                                     "{\"String\": ...})");
        if ((s = dup_string(pat, "String", "normalizer Replace pattern", &st->a)) != ROAD_OK ||
            (s = dup_string(n, "content", "normalizer Replace", &st->b)) != ROAD_OK) {
            t->n_norm++; /* so that the strings get freed */
            return s;
        }
        if (!st->a[0]) {
            t->n_norm++;
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: normalizer Replace has an empty "
                                                "pattern");
        }
    } else {
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "tokenizer.json: normalizer \"%.40s\" is not "
                           "supported (road reads NFC, Prepend, Replace, "
                           "Sequence)",
                           type);
    }
    t->n_norm++;
    return ROAD_OK;
}

/* GPT-2's own split, used by ByteLevel with use_regex = true. */
static const char *const GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

road_status road__tok_load_pre_tokenizer(road_tokenizer *t, const cJSON *p) {
    if (!p || cJSON_IsNull(p)) return ROAD_OK;
    const char *type;
    road_status s = type_of(p, "pre_tokenizer", &type);
    if (s != ROAD_OK) return s;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = road__json_get(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: pre_tokenizer.pretokenizers must "
                                                "be a list");
        for (const cJSON *e = list->child; e; e = e->next)
            if ((s = road__tok_load_pre_tokenizer(t, e)) != ROAD_OK) return s;
        return ROAD_OK;
    }
    if (t->n_pre == TOK_MAX_STEPS)
        return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: more than %d pre-tokenizers",
                           TOK_MAX_STEPS);
    tok_pre *st = &t->pre[t->n_pre];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "Split") == 0) {
        st->kind = TOK_PRE_SPLIT;
        const cJSON *pat = road__json_get(p, "pattern"), *beh = road__json_get(p, "behavior");
        const cJSON *inv = road__json_get(p, "invert");
        const cJSON *re = cJSON_IsObject(pat) ? road__json_get(pat, "Regex") : NULL;
        if (!cJSON_IsString(re))
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "tokenizer.json: Split pre-tokenizer needs "
                               "pattern {\"Regex\": \"...\"} (String patterns "
                               "are not supported)");
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0)
            return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: Split behavior must be "
                                                     "\"Isolated\" (the only one Llama-family "
                                                     "files use)");
        if (inv && !cJSON_IsFalse(inv))
            return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: Split with invert is not "
                                                     "supported");
        if ((s = compile_regex(t, re->valuestring, &st->re)) != ROAD_OK) return s;
    } else if (strcmp(type, "ByteLevel") == 0) {
        st->kind = TOK_PRE_BYTELEVEL;
        const cJSON *aps = road__json_get(p, "add_prefix_space"),
                    *ur = road__json_get(p, "use_regex");
        st->add_prefix_space = aps && cJSON_IsTrue(aps);
        if (!ur || cJSON_IsTrue(ur)) { /* use_regex defaults to true */
            if ((s = compile_regex(t, GPT2_PATTERN, &st->re)) != ROAD_OK) return s;
        }
        t->byte_level = true;
    } else if (strcmp(type, "Metaspace") == 0) {
        st->kind = TOK_PRE_METASPACE;
        const cJSON *sch = road__json_get(p, "prepend_scheme"), *sp = road__json_get(p, "split");
        const cJSON *aps = road__json_get(p, "add_prefix_space");
        st->prepend = TOK_PREPEND_ALWAYS;
        if (cJSON_IsString(sch)) {
            if (strcmp(sch->valuestring, "first") == 0) st->prepend = TOK_PREPEND_FIRST;
            else if (strcmp(sch->valuestring, "never") == 0) st->prepend = TOK_PREPEND_NEVER;
            else if (strcmp(sch->valuestring, "always") != 0)
                return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Metaspace prepend_scheme must "
                                                    "be \"always\", \"first\" or \"never\"");
        } else if (aps && cJSON_IsFalse(aps)) {
            st->prepend = TOK_PREPEND_NEVER; /* older files */
        }
        st->split = !sp || cJSON_IsTrue(sp);
        t->n_pre++;
        if ((s = dup_string(p, "replacement", "Metaspace", &st->replacement)) != ROAD_OK) return s;
        uint32_t cp;
        if (!st->replacement[0] ||
            road__tok_utf8_decode((const unsigned char *)st->replacement, strlen(st->replacement),
                                  &cp) != (int)strlen(st->replacement))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Metaspace replacement must be "
                                                "one character");
        return ROAD_OK;
    } else {
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "tokenizer.json: pre-tokenizer \"%.40s\" is not "
                           "supported (road reads Split, ByteLevel, "
                           "Metaspace, Sequence)",
                           type);
    }
    t->n_pre++;
    return ROAD_OK;
}

void road__tok_free_pipeline(road_tokenizer *t) {
    for (int i = 0; i < t->n_norm; i++) {
        road__free(t->norm[i].a);
        road__free(t->norm[i].b);
    }
    for (int i = 0; i < t->n_pre; i++) {
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
        road__free(t->pre[i].replacement);
    }
    if (t->pcre_ctx) pcre2_general_context_free(t->pcre_ctx);
    t->n_norm = t->n_pre = 0;
}

/* ---- running -------------------------------------------------------------------------------- */

static road_status replace_all(const char *in, size_t len, const char *a, const char *b,
                               tok_buf *out) {
    size_t al = strlen(a), bl = strlen(b);
    out->len = 0;
    road_status s = road__tok_buf_reserve(out, len);
    for (size_t i = 0; i < len && s == ROAD_OK;) {
        if (i + al <= len && memcmp(in + i, a, al) == 0) {
            s = road__tok_buf_put(out, b, bl);
            i += al;
        } else {
            size_t j = i + 1;
            while (j < len && in[j] != a[0]) j++;
            s = road__tok_buf_put(out, in + i, j - i);
            i = j;
        }
    }
    if (s == ROAD_OK) s = road__tok_buf_put(out, "", 0);
    return s;
}

road_status road__tok_normalize(const road_tokenizer *t, const char *in, size_t len, tok_buf *out) {
    tok_buf tmp = {0};
    out->len = 0;
    road_status s = road__tok_buf_put(out, in, len);
    for (int i = 0; i < t->n_norm && s == ROAD_OK; i++) {
        const tok_norm *n = &t->norm[i];
        tmp.len = 0;
        if (n->kind == TOK_NORM_NFC)
            s = road__tok_nfc(out->p, out->len, &tmp);
        else if (n->kind == TOK_NORM_PREPEND) {
            if (out->len == 0) continue; /* Prepend leaves empty text empty */
            if ((s = road__tok_buf_put(&tmp, n->a, strlen(n->a))) == ROAD_OK)
                s = road__tok_buf_put(&tmp, out->p, out->len);
        } else {
            s = replace_all(out->p, out->len, n->a, n->b, &tmp);
        }
        if (s == ROAD_OK) {
            tok_buf x = *out;
            *out = tmp;
            tmp = x;
        }
    }
    road__free(tmp.p);
    return s;
}

/* Isolated split of every piece by re: matches and the text between them become pieces. */
static road_status split_regex(const pcre2_code *re, const tok_buf *text, const tok_pieces *in,
                               tok_pieces *out, tok_scratch *sc) {
    if (!sc->md || pcre2_get_ovector_count(sc->md) < 1) {
        if (sc->md) pcre2_match_data_free(sc->md);
        sc->md = pcre2_match_data_create(4, NULL);
        if (!sc->md) return ROAD_ERR_NO_MEMORY;
    }
    out->n = 0;
    road_status s = ROAD_OK;
    for (size_t k = 0; k < in->n && s == ROAD_OK; k++) {
        const char *subj = text->p + in->v[k].off;
        size_t len = in->v[k].len, pos = 0, last = 0;
        while (pos <= len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)subj, len, pos, PCRE2_NO_UTF_CHECK, sc->md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0)
                return road__error(ROAD_ERR_INTERNAL, "PCRE2 match failed (%d) in a Split regex",
                                   rc);
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) { /* empty match: step over one character */
                pos = ms + 1;
                while (pos < len && ((unsigned char)subj[pos] & 0xC0) == 0x80) pos++;
                continue;
            }
            if (ms > last &&
                (s = road__tok_pieces_push(out, in->v[k].off + last, ms - last)) != ROAD_OK)
                return s;
            if ((s = road__tok_pieces_push(out, in->v[k].off + ms, me - ms)) != ROAD_OK) return s;
            last = pos = me;
        }
        if (last < len) s = road__tok_pieces_push(out, in->v[k].off + last, len - last);
    }
    return s;
}

/* Rewrite text piece by piece: Metaspace (spaces -> replacement, prepend, split) or ByteLevel's
 * add_prefix_space. */
static road_status rewrite_pieces(const tok_pre *st, const tok_buf *text, const tok_pieces *in,
                                  bool at_start, tok_buf *ntext, tok_pieces *out) {
    ntext->len = 0;
    out->n = 0;
    road_status s = ROAD_OK;
    const char *rep = st->kind == TOK_PRE_METASPACE ? st->replacement : " ";
    size_t rl = strlen(rep);
    for (size_t k = 0; k < in->n && s == ROAD_OK; k++) {
        const char *p = text->p + in->v[k].off;
        size_t len = in->v[k].len, start = ntext->len;
        bool starts = len >= rl && memcmp(p, rep, rl) == 0;
        if (st->kind == TOK_PRE_BYTELEVEL) {
            if (st->add_prefix_space && !starts) s = road__tok_buf_put(ntext, " ", 1);
            if (s == ROAD_OK) s = road__tok_buf_put(ntext, p, len);
        } else {
            tok_buf tmp = {0};
            s = replace_all(p, len, " ", rep, &tmp);
            starts = s == ROAD_OK && tmp.len >= rl && memcmp(tmp.p, rep, rl) == 0;
            bool pre = st->prepend == TOK_PREPEND_ALWAYS ||
                       (st->prepend == TOK_PREPEND_FIRST && at_start && in->v[k].off == 0);
            if (s == ROAD_OK && pre && !starts) s = road__tok_buf_put(ntext, rep, rl);
            if (s == ROAD_OK) s = road__tok_buf_put(ntext, tmp.p, tmp.len);
            road__free(tmp.p);
        }
        if (s != ROAD_OK) break;
        size_t end = ntext->len;
        if (st->kind == TOK_PRE_METASPACE && st->split) {
            /* each replacement starts a new piece (MergedWithNext) */
            size_t from = start;
            for (size_t i = start + 1; i + rl <= end && s == ROAD_OK; i++) {
                if (memcmp(ntext->p + i, rep, rl) == 0) {
                    s = road__tok_pieces_push(out, from, i - from);
                    from = i;
                }
            }
            if (s == ROAD_OK && end > from) s = road__tok_pieces_push(out, from, end - from);
        } else if (end > start) {
            s = road__tok_pieces_push(out, start, end - start);
        }
    }
    return s;
}

road_status road__tok_pre_tokenize(const road_tokenizer *t, tok_buf *text, bool at_start,
                                   tok_pieces *out, tok_scratch *sc) {
    out->n = 0;
    road_status s = ROAD_OK;
    if (text->len == 0) return ROAD_OK;
    if ((s = road__tok_pieces_push(out, 0, text->len)) != ROAD_OK) return s;
    for (int i = 0; i < t->n_pre && s == ROAD_OK; i++) {
        const tok_pre *st = &t->pre[i];
        tok_pieces tmp;
        if (st->kind == TOK_PRE_METASPACE || (st->kind == TOK_PRE_BYTELEVEL && st->add_prefix_space)) {
            s = rewrite_pieces(st, text, out, at_start, &sc->text2, &sc->pieces2);
            if (s != ROAD_OK) break;
            tok_buf tb = *text;
            *text = sc->text2;
            sc->text2 = tb;
            tmp = *out, *out = sc->pieces2, sc->pieces2 = tmp;
        }
        if (st->re) {
            s = split_regex(st->re, text, out, &sc->pieces2, sc);
            tmp = *out, *out = sc->pieces2, sc->pieces2 = tmp;
        }
    }
    return s;
}
