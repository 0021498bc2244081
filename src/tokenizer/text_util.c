/*
 * tokenizer/text_util.c - the bottom of the tokenizer: growable buffers, UTF-8, the GPT-2 byte
 * map, the string pool and the two lookup tables (token strings, merges).
 *
 * Every other file of tokenizer/ uses these and this file uses none of them, so the files above
 * depend on each other in one direction only (load.c on config.c, decode.c and text.c; text.c on
 * nfc.c; encode.c on bpe.c and text.c), never in a circle.
 *
 * Why the string pool and id-keyed merges: a 150K-token vocabulary with 150K merges is loaded
 * into four flat arrays and two open-addressing tables (no per-token allocation), and the BPE
 * loop looks merges up by the ids it already has, never by building strings.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/text_util.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- growable buffers ----------------------------------------------------------------------- */

road_status road__tok_buf_reserve(tok_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len) return road__error(ROAD_ERR_NO_MEMORY, "text too large");
    if (b->len + extra + 1 <= b->cap) return ROAD_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = road__realloc(b->p, cap);
    if (!p) return ROAD_ERR_NO_MEMORY;
    b->p = p, b->cap = cap;
    return ROAD_OK;
}

road_status road__tok_buf_put(tok_buf *b, const void *s, size_t n) {
    road_status st = road__tok_buf_reserve(b, n);
    if (st != ROAD_OK) return st;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return ROAD_OK;
}

road_status road__tok_pieces_push(tok_pieces *p, size_t off, size_t len) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        tok_span *v = road__realloc(p->v, cap * sizeof *v);
        if (!v) return ROAD_ERR_NO_MEMORY;
        p->v = v, p->cap = cap;
    }
    p->v[p->n].off = (uint32_t)off;
    p->v[p->n].len = (uint32_t)len;
    p->n++;
    return ROAD_OK;
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

int road__tok_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    if (len == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    uint32_t v, lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len) return 0;
        unsigned d = s[i];
        if (d < lo || d > hi) return 0;
        lo = 0x80, hi = 0xBF;
        v = v << 6 | (d & 0x3F);
    }
    *cp = v;
    return n;
}

/* Python's str.isspace(): the ASCII separators and the Unicode White_Space characters (Zs,
 * and the bidi B/S/WS classes Python counts). */
static bool py_space_cp(uint32_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f) || c == 0x85 ||
           c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

size_t road__tok_py_space(const char *s, size_t n) {
    uint32_t cp;
    int k = road__tok_utf8_decode((const unsigned char *)s, n, &cp);
    return k > 0 && py_space_cp(cp) ? (size_t)k : 0;
}

void road__tok_py_strip(const char **s, size_t *n, bool left, bool right) {
    const unsigned char *u = (const unsigned char *)*s;
    size_t a = 0, b = *n;
    uint32_t cp;
    int k;
    while (left && a < b && (k = road__tok_utf8_decode(u + a, b - a, &cp)) > 0 && py_space_cp(cp))
        a += (size_t)k;
    while (right && b > a) {
        size_t st = b - 1; /* back to the lead byte of the last character */
        while (st > a && (u[st] & 0xC0) == 0x80 && b - st < 4) st--;
        if ((k = road__tok_utf8_decode(u + st, b - st, &cp)) <= 0 || st + (size_t)k != b ||
            !py_space_cp(cp))
            break;
        b = st;
    }
    *s += a;
    *n = b - a;
}

int road__tok_utf8_encode(uint32_t cp, char *o) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the maximal prefix of an invalid sequence at s that could start a valid one
 * (WHATWG / Unicode "maximal subpart"): at least 1. */
static size_t invalid_run(const unsigned char *s, size_t len) {
    unsigned c = s[0];
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    size_t i = 1;
    while ((int)i < n && i < len && s[i] >= lo && s[i] <= hi) {
        lo = 0x80, hi = 0xBF;
        i++;
    }
    return i;
}

road_status road__tok_utf8_sanitize(const char *s, size_t len, tok_buf *out) {
    out->len = 0;
    road_status st = road__tok_buf_reserve(out, len);
    if (st != ROAD_OK) return st;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        uint32_t cp;
        int n = 0;
        while (i < len && (u[i] < 0x80 || (n = road__tok_utf8_decode(u + i, len - i, &cp)) > 0))
            i += u[i] < 0x80 ? 1 : (size_t)n;
        if ((st = road__tok_buf_put(out, s + start, i - start)) != ROAD_OK) return st;
        if (i < len) {
            i += invalid_run(u + i, len - i);
            if ((st = road__tok_buf_put(out, "\xEF\xBF\xBD", 3)) != ROAD_OK) return st;
        }
    }
    return road__tok_buf_put(out, "", 0); /* NUL-terminated even when empty */
}

/* ---- GPT-2 byte map ------------------------------------------------------------------------- */

/* Printable bytes (!..~, ¡..¬, ®..ÿ) stand for themselves; the other 68 bytes take the code
 * points 256, 257, ... in byte order, so every byte is a visible character. */
static bool byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t road__tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (int i = 0; i < b; i++) k += !byte_is_printable(i);
    return 256 + k;
}

int road__tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    for (int b = 0; b < 256; b++) {
        if (!byte_is_printable(b) && k-- == 0) return b;
    }
    return -1;
}

/* ---- string pool and lookups ---------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* The merge table's key of the pair (a, b); 0 marks an empty slot. */
static uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
}

static uint32_t hash_pair(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

road_status road__tok_pool_add(road_tokenizer *t, const char *s, size_t len, tok_span *out) {
    if (len > UINT32_MAX / 2 || t->pool_len + len + 1 > UINT32_MAX)
        return road__error(ROAD_ERR_FORMAT, "tokenizer strings exceed 4 GiB");
    if (t->pool_len + len + 1 > t->pool_cap) {
        size_t cap = t->pool_cap ? t->pool_cap : 1 << 16;
        while (cap < t->pool_len + len + 1) cap *= 2;
        char *p = road__realloc(t->pool, cap);
        if (!p) return ROAD_ERR_NO_MEMORY;
        t->pool = p, t->pool_cap = cap;
    }
    memcpy(t->pool + t->pool_len, s, len);
    t->pool[t->pool_len + len] = '\0';
    out->off = (uint32_t)t->pool_len;
    out->len = (uint32_t)len;
    t->pool_len += len + 1;
    return ROAD_OK;
}

int32_t road__tok_lookup(const road_tokenizer *t, const char *s, size_t len) {
    if (!t->piece_hash) return -1;
    for (uint32_t i = hash_bytes(s, len) & t->piece_hash_mask;; i = (i + 1) & t->piece_hash_mask) {
        uint32_t v = t->piece_hash[i];
        if (v == 0) return -1;
        const tok_span *p = &t->piece[v - 1];
        if (p->len == len && memcmp(t->pool + p->off, s, len) == 0) return (int32_t)(v - 1);
    }
}

bool road__tok_piece_insert(road_tokenizer *t, int32_t id) {
    const tok_span *p = &t->piece[id];
    const char *s = t->pool + p->off;
    for (uint32_t i = hash_bytes(s, p->len) & t->piece_hash_mask;; i = (i + 1) & t->piece_hash_mask) {
        uint32_t v = t->piece_hash[i];
        if (v == 0) {
            t->piece_hash[i] = (uint32_t)id + 1;
            return true;
        }
        const tok_span *q = &t->piece[v - 1];
        if (q->len == p->len && memcmp(t->pool + q->off, s, p->len) == 0) return false;
    }
}

bool road__tok_merge_find(const road_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                          int32_t *new_id) {
    if (!t->merge_key) return false;
    uint64_t k = pair_key(a, b);
    for (uint32_t i = hash_pair(k) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        if (t->merge_key[i] == 0) return false;
        if (t->merge_key[i] == k) {
            *rank = t->merge_rank[i];
            *new_id = t->merge_new[i];
            return true;
        }
    }
}

void road__tok_merge_insert(road_tokenizer *t, int32_t a, int32_t b, uint32_t rank,
                            int32_t new_id) {
    uint64_t k = pair_key(a, b);
    uint32_t j = hash_pair(k) & t->merge_mask;
    while (t->merge_key[j] != 0 && t->merge_key[j] != k) j = (j + 1) & t->merge_mask;
    /* A repeated pair takes its later rank, as Hugging Face's map insertion does. */
    t->merge_key[j] = k;
    t->merge_rank[j] = rank;
    t->merge_new[j] = new_id;
}

int32_t road_tokenizer_token_to_id(const road_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    size_t n = strlen(piece);
    int32_t id = road__tok_lookup(t, piece, n);
    if (id >= 0) return id;
    for (int32_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        if (a->len == n && memcmp(t->pool + a->off, piece, n) == 0) return a->id;
    }
    return -1;
}
