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
/* Oniguruma's Unicode \w: Letter | Mark | Number | Connector_Punctuation (PCRE2 10.42's is
 * letters, numbers and '_'). */
#define WORD_SET "\\p{L}\\p{M}\\p{N}\\p{Pc}"

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
            else if (n == 'w')
                s = in_class ? road__tok_buf_put(o, WORD_SET, strlen(WORD_SET))
                             : road__tok_buf_put(o, "[" WORD_SET "]", strlen(WORD_SET) + 2);
            else if (n == 'W' && !in_class)
                s = road__tok_buf_put(o, "[^" WORD_SET "]", strlen(WORD_SET) + 3);
            else if (n == 'S' || n == 'W')
                return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: \\%c inside a [...] "
                                                         "class of a Split regex is not supported",
                                   n);
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

/* Compile a Split pattern: a regex (rewritten for Oniguruma's \\s and \\w first) or, with
 * `literal`, a string matched as it is (Hugging Face escapes String patterns into a regex). */
static road_status compile_regex(road_tokenizer *t, const char *pattern, bool literal,
                                 pcre2_code **out) {
    if (!t->pcre_ctx) {
        t->pcre_ctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
        if (!t->pcre_ctx) return ROAD_ERR_NO_MEMORY;
    }
    tok_buf b = {0};
    road_status s = literal ? road__tok_buf_put(&b, pattern, strlen(pattern))
                            : rewrite_pattern(pattern, &b);
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
    *out = pcre2_compile((PCRE2_SPTR)b.p, b.len,
                         literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP, &err, &at, cc);
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

/* Punctuation as the Punctuation and BertPreTokenizer pre-tokenizers see it: Rust's
 * is_ascii_punctuation (which takes $+<=>^`|~ too) or Unicode's P* categories. */
#define PUNCT_CLASS "[\\p{P}\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E]"

static road_status split_behavior(const cJSON *b, const char *where, tok_split_behavior *out) {
    static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    if (!b) return ROAD_OK; /* the caller's default */
    for (int i = 0; cJSON_IsString(b) && i < 5; i++)
        if (strcmp(b->valuestring, names[i]) == 0) {
            *out = (tok_split_behavior)i;
            return ROAD_OK;
        }
    return road__error(ROAD_ERR_FORMAT, "tokenizer.json: %s behavior must be \"Isolated\", "
                                        "\"Removed\", \"MergedWithPrevious\", "
                                        "\"MergedWithNext\" or \"Contiguous\"", where);
}

/* Split: pattern {"Regex": ...} or {"String": ...}, a behavior, invert. */
static road_status load_split(road_tokenizer *t, const cJSON *p, tok_pre *st) {
    const cJSON *pat = road__json_get(p, "pattern"), *inv = road__json_get(p, "invert");
    const cJSON *re = cJSON_IsObject(pat) ? road__json_get(pat, "Regex") : NULL;
    const cJSON *str = cJSON_IsObject(pat) ? road__json_get(pat, "String") : NULL;
    if (!cJSON_IsString(re) && !cJSON_IsString(str))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Split pre-tokenizer needs pattern "
                                            "{\"Regex\": \"...\"} or {\"String\": \"...\"}");
    if (!road__json_get(p, "behavior"))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Split pre-tokenizer needs a "
                                            "\"behavior\"");
    road_status s = split_behavior(road__json_get(p, "behavior"), "Split", &st->behavior);
    if (s != ROAD_OK) return s;
    if (inv && !cJSON_IsBool(inv))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Split invert must be true or false");
    st->invert = cJSON_IsTrue(inv);
    if (str && !str->valuestring[0]) {
        /* Hugging Face: an empty String pattern matches nothing; a never-matching regex */
        return compile_regex(t, "(*FAIL)", false, &st->re);
    }
    return compile_regex(t, re ? re->valuestring : str->valuestring, !re, &st->re);
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
        if ((s = load_split(t, p, st)) != ROAD_OK) return s;
    } else if (strcmp(type, "Digits") == 0) {
        /* char::is_numeric (Nd, Nl, No): each digit alone, or runs of digits together */
        const cJSON *ind = road__json_get(p, "individual_digits");
        if (ind && !cJSON_IsBool(ind))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: Digits.individual_digits must "
                                                "be true or false");
        st->behavior = cJSON_IsTrue(ind) ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS;
        if ((s = compile_regex(t, "\\p{N}", false, &st->re)) != ROAD_OK) return s;
    } else if (strcmp(type, "Punctuation") == 0) {
        st->behavior = TOK_SPLIT_ISOLATED;
        if ((s = split_behavior(road__json_get(p, "behavior"), "Punctuation", &st->behavior)) !=
                ROAD_OK ||
            (s = compile_regex(t, PUNCT_CLASS, false, &st->re)) != ROAD_OK)
            return s;
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        st->behavior = TOK_SPLIT_REMOVED;
        if ((s = compile_regex(t, "\\s", false, &st->re)) != ROAD_OK) return s;
    } else if (strcmp(type, "Whitespace") == 0) {
        st->behavior = TOK_SPLIT_REMOVED;
        st->invert = true;
        if ((s = compile_regex(t, "\\w+|[^\\w\\s]+", false, &st->re)) != ROAD_OK) return s;
    } else if (strcmp(type, "CharDelimiterSplit") == 0) {
        const char *d = NULL;
        uint32_t cp;
        if (road__json_get_string(p, "delimiter", false, &d) != ROAD_OK || !d[0] ||
            road__tok_utf8_decode((const unsigned char *)d, strlen(d), &cp) != (int)strlen(d))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: CharDelimiterSplit needs a "
                                                "one-character \"delimiter\"");
        st->behavior = TOK_SPLIT_REMOVED;
        if ((s = compile_regex(t, d, true, &st->re)) != ROAD_OK) return s;
    } else if (strcmp(type, "BertPreTokenizer") == 0) {
        /* whitespace removed, then each punctuation character alone: two steps */
        st->behavior = TOK_SPLIT_REMOVED;
        if ((s = compile_regex(t, "\\s", false, &st->re)) != ROAD_OK) return s;
        t->n_pre++;
        if (t->n_pre == TOK_MAX_STEPS)
            return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: more than %d "
                                                     "pre-tokenizers", TOK_MAX_STEPS);
        st = &t->pre[t->n_pre];
        memset(st, 0, sizeof *st);
        st->kind = TOK_PRE_SPLIT;
        st->behavior = TOK_SPLIT_ISOLATED;
        if ((s = compile_regex(t, PUNCT_CLASS, false, &st->re)) != ROAD_OK) return s;
    } else if (strcmp(type, "ByteLevel") == 0) {
        st->kind = TOK_PRE_BYTELEVEL;
        const cJSON *aps = road__json_get(p, "add_prefix_space"),
                    *ur = road__json_get(p, "use_regex");
        st->add_prefix_space = aps && cJSON_IsTrue(aps);
        if (!ur || cJSON_IsTrue(ur)) { /* use_regex defaults to true */
            if ((s = compile_regex(t, GPT2_PATTERN, false, &st->re)) != ROAD_OK) return s;
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
                           "tokenizer.json: pre-tokenizer \"%.40s\" is not supported (road "
                           "reads Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, "
                           "WhitespaceSplit, CharDelimiterSplit, BertPreTokenizer, Sequence)",
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

/* Hugging Face's NormalizedString::split, one piece at a time and without building the list
 * of segments: the pattern cuts a piece into segments (the matches and the text between them,
 * `is_match` flipped by invert), then the behavior decides which segments join and which go:
 *   Isolated            every segment is a piece;
 *   Removed             the matches go;
 *   MergedWithPrevious  a match joins the segment before it (unless that one is a match);
 *   MergedWithNext      a match joins the segment after it (unless that one is a match);
 *   Contiguous          neighbouring segments of the same kind join.
 * Empty segments take part (an empty match changes what its neighbours do), but empty pieces
 * are dropped at the end. The matches are Oniguruma's find_iter: leftmost, non-overlapping,
 * and an empty match right where the previous match ended is skipped. */
typedef struct split_state {
    const tok_pre *st;
    tok_pieces *out;
    size_t base;               /* offset of the piece in the text */
    size_t p_start, p_end;     /* the pending group */
    bool have, prev_match;     /* a group is pending; the kind of the last segment */
} split_state;

static road_status flush_group(split_state *g) {
    road_status s = ROAD_OK;
    if (g->have && g->p_end > g->p_start)
        s = road__tok_pieces_push(g->out, g->base + g->p_start, g->p_end - g->p_start);
    g->have = false;
    return s;
}

static road_status add_segment(split_state *g, size_t start, size_t end, bool is_match) {
    road_status s = ROAD_OK;
    if (g->st->invert) is_match = !is_match;
    switch (g->st->behavior) {
    case TOK_SPLIT_ISOLATED:
        if (end > start) s = road__tok_pieces_push(g->out, g->base + start, end - start);
        break;
    case TOK_SPLIT_REMOVED:
        if (!is_match && end > start)
            s = road__tok_pieces_push(g->out, g->base + start, end - start);
        break;
    case TOK_SPLIT_MERGED_PREV:
    case TOK_SPLIT_CONTIGUOUS: {
        bool join = g->st->behavior == TOK_SPLIT_CONTIGUOUS ? is_match == g->prev_match
                                                           : is_match && !g->prev_match;
        if (join && g->have) {
            g->p_end = end;
        } else {
            s = flush_group(g);
            g->p_start = start, g->p_end = end, g->have = true;
        }
        break;
    }
    case TOK_SPLIT_MERGED_NEXT:
        /* the pending group is a lone match when prev_match: a non-match joins it */
        if (g->have && g->prev_match && !is_match) {
            g->p_end = end;
        } else {
            s = flush_group(g);
            g->p_start = start, g->p_end = end, g->have = true;
        }
        break;
    }
    g->prev_match = is_match;
    return s;
}

static road_status split_pieces(const tok_pre *st, const tok_buf *text, const tok_pieces *in,
                                tok_pieces *out, tok_scratch *sc) {
    if (!sc->md) {
        sc->md = pcre2_match_data_create(4, NULL);
        if (!sc->md) return ROAD_ERR_NO_MEMORY;
    }
    out->n = 0;
    road_status s = ROAD_OK;
    for (size_t k = 0; k < in->n && s == ROAD_OK; k++) {
        const char *subj = text->p + in->v[k].off;
        size_t len = in->v[k].len, pos = 0, last = 0; /* last: end of the last match */
        split_state g = {st, out, in->v[k].off, 0, 0, false, false};
        bool matched = false;
        while (pos <= len && s == ROAD_OK) {
            int rc = pcre2_match(st->re, (PCRE2_SPTR)subj, len, pos, PCRE2_NO_UTF_CHECK, sc->md,
                                 NULL);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0)
                return road__error(ROAD_ERR_INTERNAL, "PCRE2 match failed (%d) in a Split regex",
                                   rc);
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sc->md);
            size_t ms = ov[0], me = ov[1];
            pos = me;
            if (me == ms) { /* empty: search on from the next character */
                pos = me + 1;
                while (pos < len && ((unsigned char)subj[pos] & 0xC0) == 0x80) pos++;
                if (matched && me == last) continue; /* right after the previous match */
            }
            if (ms > last) s = add_segment(&g, last, ms, false);
            if (s == ROAD_OK) s = add_segment(&g, ms, me, true);
            last = me;
            matched = true;
        }
        if (s == ROAD_OK && last < len) s = add_segment(&g, last, len, false);
        if (s == ROAD_OK) s = flush_group(&g);
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
            s = split_pieces(st, text, out, &sc->pieces2, sc);
            tmp = *out, *out = sc->pieces2, sc->pieces2 = tmp;
        }
    }
    return s;
}
