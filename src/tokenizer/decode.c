/*
 * tokenizer/decode.c - ids to text: the decoder of tokenizer.json, batch and streaming.
 *
 * Every decoder road reads (ByteLevel, Metaspace, Sequence of Replace / ByteFallback / Fuse /
 * Strip) acts token by token except for two whole-output effects, so it is applied once at load
 * to each token's string, giving the bytes that token contributes (tok->bytes):
 *  - byte-level: GPT-2 characters back to bytes; Replace "▁" -> " "; <0xNN> -> that byte;
 *  - whole output: Strip / Metaspace remove leading spaces, and the bytes are read as UTF-8
 *    with U+FFFD for invalid sequences (a run of byte-fallback tokens that is not valid UTF-8
 *    gives one U+FFFD per byte, as Hugging Face's ByteFallback does).
 * Decoding is then a concatenation, which is also what makes streaming simple.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- loading -------------------------------------------------------------------------------- */

typedef enum { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_BYTELEVEL } dec_kind;
typedef struct dec_step {
    dec_kind kind;
    const char *a, *b; /* Replace a -> b (point into the JSON tree, valid during load) */
} dec_step;

typedef struct dec_plan {
    dec_step step[TOK_MAX_STEPS * 2];
    int n;
} dec_plan;

static road_status add_step(dec_plan *p, dec_kind k, const char *a, const char *b) {
    if (p->n == (int)(sizeof p->step / sizeof p->step[0]))
        return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: decoder has too many steps");
    p->step[p->n++] = (dec_step){k, a, b};
    return ROAD_OK;
}

static road_status plan_decoder(road_tokenizer *t, const cJSON *d, dec_plan *p, bool top) {
    const char *type;
    if (!cJSON_IsObject(d) || road__json_get_string(d, "type", false, &type) != ROAD_OK)
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: decoder needs a \"type\"");
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = road__json_get(d, "decoders");
        if (!top || !cJSON_IsArray(list))
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: decoder.decoders must be a list");
        for (const cJSON *e = list->child; e; e = e->next) {
            road_status s = plan_decoder(t, e, p, false);
            if (s != ROAD_OK) return s;
        }
        return ROAD_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return add_step(p, DEC_BYTELEVEL, NULL, NULL);
    if (strcmp(type, "ByteFallback") == 0) return add_step(p, DEC_BYTEFALLBACK, NULL, NULL);
    if (strcmp(type, "Fuse") == 0) return ROAD_OK; /* joining is what road does anyway */
    if (strcmp(type, "Replace") == 0) {
        const cJSON *pat = road__json_get(d, "pattern"), *c = road__json_get(d, "content");
        const cJSON *s = cJSON_IsObject(pat) ? road__json_get(pat, "String") : NULL;
        if (!cJSON_IsString(s) || !s->valuestring[0] || !cJSON_IsString(c))
            return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: decoder Replace needs "
                                                     "pattern {\"String\": \"...\"} and a "
                                                     "content string");
        return add_step(p, DEC_REPLACE, s->valuestring, c->valuestring);
    }
    if (strcmp(type, "Strip") == 0) {
        int32_t start = 0, stop = 0;
        const char *content = NULL;
        if (road__json_get_string(d, "content", false, &content) != ROAD_OK ||
            road__json_get_int(d, "start", &start) != ROAD_OK ||
            road__json_get_int(d, "stop", &stop) != ROAD_OK)
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: decoder Strip needs content, "
                                                "start and stop");
        if (strcmp(content, " ") != 0 || stop != 0 || start < 0 || start > 16)
            return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: decoder Strip is supported "
                                                     "for content \" \", stop 0 and a small "
                                                     "start only");
        t->strip_leading = start;
        return ROAD_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep;
        if (road__json_get_string(d, "replacement", false, &rep) != ROAD_OK || !rep[0])
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: decoder Metaspace needs a "
                                                "replacement");
        const cJSON *sch = road__json_get(d, "prepend_scheme"),
                    *aps = road__json_get(d, "add_prefix_space");
        bool prepends = cJSON_IsString(sch) ? strcmp(sch->valuestring, "never") != 0
                                            : !(aps && cJSON_IsFalse(aps));
        if (prepends) t->strip_leading = 1;
        return add_step(p, DEC_REPLACE, rep, " ");
    }
    return road__error(ROAD_ERR_UNSUPPORTED,
                       "tokenizer.json: decoder \"%.40s\" is not supported "
                       "(road reads ByteLevel, Metaspace, Replace, "
                       "ByteFallback, Fuse, Strip, Sequence)",
                       type);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Run the plan over one token's string (cur) into next; may set TOK_F_BYTE. */
static road_status apply_plan(road_tokenizer *t, const dec_plan *p, int32_t id, tok_buf *cur,
                              tok_buf *next) {
    road_status s = ROAD_OK;
    for (int k = 0; k < p->n && s == ROAD_OK; k++) {
        const dec_step *st = &p->step[k];
        next->len = 0;
        if (st->kind == DEC_REPLACE) {
            size_t al = strlen(st->a), bl = strlen(st->b);
            for (size_t i = 0; i < cur->len && s == ROAD_OK;) {
                if (i + al <= cur->len && memcmp(cur->p + i, st->a, al) == 0) {
                    s = road__tok_buf_put(next, st->b, bl);
                    i += al;
                } else {
                    s = road__tok_buf_put(next, cur->p + i, 1);
                    i++;
                }
            }
        } else if (st->kind == DEC_BYTEFALLBACK) {
            int hi, lo;
            if (cur->len == 6 && memcmp(cur->p, "<0x", 3) == 0 && cur->p[5] == '>' &&
                (hi = hexval(cur->p[3])) >= 0 && (lo = hexval(cur->p[4])) >= 0) {
                char b = (char)(hi << 4 | lo);
                s = road__tok_buf_put(next, &b, 1);
                t->flags[id] |= TOK_F_BYTE;
            } else {
                s = road__tok_buf_put(next, cur->p, cur->len);
            }
        } else { /* ByteLevel: every character must map back to a byte, else the raw string */
            bool ok = true;
            for (size_t i = 0; i < cur->len && ok && s == ROAD_OK;) {
                uint32_t cp;
                int n = road__tok_utf8_decode((const unsigned char *)cur->p + i, cur->len - i, &cp);
                int b = n > 0 ? road__tok_cp_to_byte(cp) : -1;
                if (b < 0) {
                    ok = false;
                    break;
                }
                char c = (char)b;
                s = road__tok_buf_put(next, &c, 1);
                i += (size_t)n;
            }
            if (!ok) {
                next->len = 0;
                s = road__tok_buf_put(next, cur->p, cur->len);
            }
        }
        tok_buf x = *cur;
        *cur = *next;
        *next = x;
    }
    return s;
}

road_status road__tok_load_decoder(road_tokenizer *t, const cJSON *d) {
    dec_plan plan;
    plan.n = 0;
    road_status s = ROAD_OK;
    if (!d || cJSON_IsNull(d)) t->dec_join_spaces = true;
    else if ((s = plan_decoder(t, d, &plan, true)) != ROAD_OK) return s;
    tok_buf cur = {0}, next = {0};
    for (int32_t id = 0; id < t->n_ids && s == ROAD_OK; id++) {
        if (!(t->flags[id] & TOK_F_PRESENT)) continue;
        cur.len = 0;
        if ((s = road__tok_buf_put(&cur, t->pool + t->piece[id].off, t->piece[id].len)) != ROAD_OK)
            break;
        if ((s = apply_plan(t, &plan, id, &cur, &next)) != ROAD_OK) break;
        s = road__tok_pool_add(t, cur.p, cur.len, &t->bytes[id]);
    }
    road__free(cur.p);
    road__free(next.p);
    return s;
}

/* ---- decoding ------------------------------------------------------------------------------- */

/* Bytes a complete sequence starting with this lead byte has (0 for a byte that cannot lead). */
static int utf8_need(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

/* Is s[0..len) (len < its needed length) the start of a valid sequence? */
static bool utf8_incomplete(const unsigned char *s, size_t len) {
    int need = utf8_need(s[0]);
    if (need <= 1 || (size_t)need <= len) return false;
    unsigned lo = 0x80, hi = 0xBF;
    if (s[0] == 0xE0) lo = 0xA0;
    if (s[0] == 0xED) hi = 0x9F;
    if (s[0] == 0xF0) lo = 0x90;
    if (s[0] == 0xF4) hi = 0x8F;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < lo || s[i] > hi) return false;
        lo = 0x80, hi = 0xBF;
    }
    return true;
}

static road_status check_id(const road_tokenizer *t, int32_t id, size_t i) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & TOK_F_PRESENT))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "id %d (at position %zu) is not a token of this "
                           "tokenizer (ids are 0..%d)",
                           id, i, t->n_ids - 1);
    return ROAD_OK;
}

/* A run of byte-fallback bytes: as they are when valid UTF-8, else U+FFFD per byte. */
static road_status flush_group(tok_buf *out, size_t group_start) {
    size_t n = out->len - group_start;
    if (n == 0) return ROAD_OK;
    const unsigned char *g = (const unsigned char *)out->p + group_start;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        int k = g[i] < 0x80 ? 1 : road__tok_utf8_decode(g + i, n - i, &cp);
        if (k <= 0) break;
        i += (size_t)k;
    }
    if (i == n) return ROAD_OK;
    out->len = group_start;
    road_status s = ROAD_OK;
    for (size_t k = 0; k < n && s == ROAD_OK; k++) s = road__tok_buf_put(out, "\xEF\xBF\xBD", 3);
    return s;
}

road_status road_tokenizer_decode(const road_tokenizer *t, const int32_t *ids, size_t n,
                                  bool skip_special, char **text, size_t *len) {
    if (!t || !text || (!ids && n))
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_decode: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    tok_buf raw = {0}, out = {0};
    road_status s = road__tok_buf_put(&raw, "", 0);
    size_t group = SIZE_MAX; /* start of the current byte-fallback run */
    bool first = true;
    for (size_t i = 0; i < n && s == ROAD_OK; i++) {
        if ((s = check_id(t, ids[i], i)) != ROAD_OK) break;
        uint8_t f = t->flags[ids[i]];
        if (skip_special && (f & TOK_F_SPECIAL)) continue;
        if (!(f & TOK_F_BYTE) && group != SIZE_MAX) {
            s = flush_group(&raw, group);
            group = SIZE_MAX;
        }
        if (f & TOK_F_BYTE && group == SIZE_MAX) group = raw.len;
        if (t->dec_join_spaces && !first && s == ROAD_OK) s = road__tok_buf_put(&raw, " ", 1);
        const tok_span *b = t->dec_join_spaces ? &t->piece[ids[i]] : &t->bytes[ids[i]];
        if (s == ROAD_OK) s = road__tok_buf_put(&raw, t->pool + b->off, b->len);
        first = false;
    }
    if (s == ROAD_OK && group != SIZE_MAX) s = flush_group(&raw, group);
    size_t skip = 0;
    while (s == ROAD_OK && (int)skip < t->strip_leading && skip < raw.len && raw.p[skip] == ' ') skip++;
    if (s == ROAD_OK) s = road__tok_utf8_sanitize(raw.p + skip, raw.len - skip, &out);
    road__free(raw.p);
    if (s != ROAD_OK) {
        road__free(out.p);
        return s;
    }
    *text = out.p;
    if (len) *len = out.len;
    return ROAD_OK;
}

/* ---- streaming ------------------------------------------------------------------------------ */

struct road_tokenizer_stream {
    const road_tokenizer *t;
    bool skip_special;
    int strip_left; /* leading spaces still to strip */
    bool started;   /* a token was output (for joining pieces by spaces) */
    tok_buf pending, out;
};

road_status road_tokenizer_stream_create(const road_tokenizer *t, bool skip_special,
                                         road_tokenizer_stream **out) {
    if (!t || !out) return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_stream_create: NULL");
    *out = road__calloc(1, sizeof **out);
    if (!*out) return ROAD_ERR_NO_MEMORY;
    (*out)->t = t;
    (*out)->skip_special = skip_special;
    (*out)->strip_left = t->strip_leading;
    return ROAD_OK;
}

void road_tokenizer_stream_free(road_tokenizer_stream *s) {
    if (!s) return;
    road__free(s->pending.p);
    road__free(s->out.p);
    road__free(s);
}

/* Move the complete part of pending to out; with `final`, nothing is held back. */
static road_status stream_emit(road_tokenizer_stream *s, bool final) {
    s->out.len = 0;
    road_status st = road__tok_buf_put(&s->out, "", 0);
    const unsigned char *p = (const unsigned char *)s->pending.p;
    size_t n = s->pending.len, i = 0;
    while (i < n && st == ROAD_OK) {
        uint32_t cp;
        int k = p[i] < 0x80 ? 1 : road__tok_utf8_decode(p + i, n - i, &cp);
        if (k > 0) {
            st = road__tok_buf_put(&s->out, p + i, (size_t)k);
            i += (size_t)k;
            continue;
        }
        if (!final && utf8_incomplete(p + i, n - i)) break; /* wait for the next token */
        size_t r = 1; /* maximal invalid subpart */
        while (i + r < n && r < (size_t)(utf8_need(p[i]) ? utf8_need(p[i]) : 1) &&
               utf8_incomplete(p + i, r + 1))
            r++;
        st = road__tok_buf_put(&s->out, "\xEF\xBF\xBD", 3);
        i += r;
    }
    if (st != ROAD_OK) return st;
    if (i > 0 && n > i) memmove(s->pending.p, s->pending.p + i, n - i);
    s->pending.len = n - i;
    return ROAD_OK;
}

road_status road_tokenizer_stream_push(road_tokenizer_stream *s, int32_t id, const char **text,
                                       size_t *len) {
    if (!s || !text || !len) return road__error(ROAD_ERR_INVALID_ARG, "stream_push: NULL argument");
    *text = "";
    *len = 0;
    const road_tokenizer *t = s->t;
    road_status st = check_id(t, id, 0);
    if (st != ROAD_OK) return st;
    if (s->skip_special && (t->flags[id] & TOK_F_SPECIAL)) return ROAD_OK;
    if (t->dec_join_spaces && s->started &&
        (st = road__tok_buf_put(&s->pending, " ", 1)) != ROAD_OK)
        return st;
    const tok_span *b = t->dec_join_spaces ? &t->piece[id] : &t->bytes[id];
    if ((st = road__tok_buf_put(&s->pending, t->pool + b->off, b->len)) != ROAD_OK) return st;
    s->started = true;
    while (s->strip_left > 0 && s->pending.len > 0) {
        if (s->pending.p[0] != ' ') {
            s->strip_left = 0;
            break;
        }
        memmove(s->pending.p, s->pending.p + 1, --s->pending.len);
        s->strip_left--;
    }
    if ((st = stream_emit(s, false)) != ROAD_OK) return st;
    *text = s->out.p;
    *len = s->out.len;
    return ROAD_OK;
}

road_status road_tokenizer_stream_flush(road_tokenizer_stream *s, const char **text, size_t *len) {
    if (!s || !text || !len)
        return road__error(ROAD_ERR_INVALID_ARG, "stream_flush: NULL argument");
    road_status st = stream_emit(s, true);
    if (st != ROAD_OK) return st;
    *text = s->out.p;
    *len = s->out.len;
    return ROAD_OK;
}
