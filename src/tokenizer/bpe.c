/*
 * tokenizer/bpe.c - the BPE merge loop for one pre-token.
 *
 * Symbols start as single bytes (byte-level models) or single characters (SentencePiece-style,
 * with <0xNN> byte fallback or unk for characters missing from the vocabulary) and sit in a
 * doubly linked list. Every adjacent pair that has a merge goes into a binary min-heap keyed by
 * (rank, position); popping the lowest applies Hugging Face's order (lowest rank first, leftmost
 * on ties). A popped entry is stale when its left symbol was merged away or its pair changed;
 * it is recognised by looking the current pair up again. Each merge pushes at most two pairs, so
 * a word of n symbols costs O(n log n): no quadratic rescans, which matters for SentencePiece
 * models where a whole line without spaces is one pre-token.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends; id < 0 once merged away */
} sym;

road_status road__tok_ids_push(tok_ids *o, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *v = road__realloc(o->v, cap * sizeof *v);
        if (!v) return ROAD_ERR_NO_MEMORY;
        o->v = v, o->cap = cap;
    }
    o->v[o->n++] = id;
    return ROAD_OK;
}

void road__tok_scratch_free(tok_scratch *sc) {
    road__free(sc->text.p);
    road__free(sc->text2.p);
    road__free(sc->conv.p);
    road__free(sc->pieces.v);
    road__free(sc->pieces2.v);
    if (sc->md) pcre2_match_data_free(sc->md);
    road__free(sc->sym);
    road__free(sc->heap);
    memset(sc, 0, sizeof *sc);
}

static road_status reserve(tok_scratch *sc, size_t n) {
    if (n <= sc->sym_cap) return ROAD_OK;
    size_t cap = sc->sym_cap ? sc->sym_cap : 64;
    while (cap < n) cap *= 2;
    sym *s = road__realloc(sc->sym, cap * sizeof(sym));
    if (!s) return ROAD_ERR_NO_MEMORY;
    sc->sym = s;
    /* each merge pushes at most 2 pairs: n - 1 initial + 2 (n - 1) */
    uint64_t *h = road__realloc(sc->heap, 3 * cap * sizeof *h);
    if (!h) return ROAD_ERR_NO_MEMORY;
    sc->heap = h;
    sc->sym_cap = cap;
    return ROAD_OK;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}

static void push_pair(const road_tokenizer *t, const sym *s, int32_t pos, uint64_t *h, size_t *n) {
    if (pos < 0 || s[pos].next < 0) return;
    uint32_t rank;
    int32_t nid;
    if (road__tok_merge_find(t, s[pos].id, s[s[pos].next].id, &rank, &nid))
        heap_push(h, n, (uint64_t)rank << 32 | (uint32_t)pos);
}

static road_status unknown(const road_tokenizer *t, const char *w, size_t at) {
    (void)t;
    return road__error(ROAD_ERR_INVALID_ARG,
                       "the tokenizer has no token for byte 0x%02X at offset %zu of a pre-token "
                       "and no unk_token to stand for it",
                       (unsigned)(unsigned char)w[at], at);
}

/* Fill the initial symbols; returns their count in *n. */
static road_status initial_symbols(const road_tokenizer *t, const char *w, size_t len, sym *s,
                                   int32_t *n) {
    int32_t k = 0;
    const unsigned char *u = (const unsigned char *)w;
    for (size_t i = 0; i < len;) {
        if (t->byte_level) {
            int32_t id = t->byte_id[u[i]];
            if (id < 0) {
                if (t->unk_id < 0) return unknown(t, w, i);
                id = t->unk_id;
            }
            if (!(id == t->unk_id && t->fuse_unk && k > 0 && s[k - 1].id == t->unk_id)) s[k++].id = id;
            i++;
            continue;
        }
        uint32_t cp;
        int cl = road__tok_utf8_decode(u + i, len - i, &cp);
        if (cl <= 0) cl = 1; /* cannot happen: input is sanitized */
        int32_t id = road__tok_lookup(t, w + i, (size_t)cl);
        if (id >= 0) {
            s[k++].id = id;
        } else {
            bool all = t->byte_fallback;
            for (int b = 0; b < cl && all; b++) all = t->byte_id[u[i + b]] >= 0;
            if (all) {
                for (int b = 0; b < cl; b++) s[k++].id = t->byte_id[u[i + b]];
            } else {
                if (t->unk_id < 0) return unknown(t, w, i);
                if (!(t->fuse_unk && k > 0 && s[k - 1].id == t->unk_id)) s[k++].id = t->unk_id;
            }
        }
        i += (size_t)cl;
    }
    *n = k;
    return ROAD_OK;
}

/* Byte-level models look whole words up by their GPT-2 characters. */
static int32_t whole_word(const road_tokenizer *t, const char *w, size_t len, tok_scratch *sc) {
    if (!t->byte_level) return road__tok_lookup(t, w, len);
    sc->conv.len = 0;
    if (road__tok_buf_reserve(&sc->conv, len * 2) != ROAD_OK) return -2;
    for (size_t i = 0; i < len; i++) {
        char e[4];
        int n = road__tok_utf8_encode(road__tok_byte_to_cp((uint8_t)w[i]), e);
        memcpy(sc->conv.p + sc->conv.len, e, (size_t)n);
        sc->conv.len += (size_t)n;
    }
    return road__tok_lookup(t, sc->conv.p, sc->conv.len);
}

road_status road__tok_bpe_word(const road_tokenizer *t, const char *w, size_t len, tok_scratch *sc,
                               tok_ids *out) {
    if (len == 0) return ROAD_OK;
    if (len > INT32_MAX / 4)
        return road__error(ROAD_ERR_INVALID_ARG, "a pre-token of %zu bytes is too long", len);
    if (t->ignore_merges) {
        int32_t id = whole_word(t, w, len, sc);
        if (id == -2) return ROAD_ERR_NO_MEMORY;
        if (id >= 0) return road__tok_ids_push(out, id);
    }
    road_status st = reserve(sc, len * 4); /* byte fallback: up to 4 symbols per character */
    if (st != ROAD_OK) return st;
    sym *s = sc->sym;
    int32_t n;
    if ((st = initial_symbols(t, w, len, s, &n)) != ROAD_OK) return st;
    for (int32_t i = 0; i < n; i++) {
        s[i].prev = i - 1;
        s[i].next = i + 1 < n ? i + 1 : -1;
    }
    size_t hn = 0;
    uint64_t *h = sc->heap;
    for (int32_t i = 0; i + 1 < n; i++) push_pair(t, s, i, h, &hn);
    while (hn > 0) {
        uint64_t top = heap_pop(h, &hn);
        int32_t pos = (int32_t)(uint32_t)top, nx = s[pos].next;
        if (s[pos].id < 0 || nx < 0) continue;
        uint32_t rank;
        int32_t nid;
        if (!road__tok_merge_find(t, s[pos].id, s[nx].id, &rank, &nid) ||
            rank != (uint32_t)(top >> 32))
            continue; /* stale: the pair changed since it was pushed */
        s[pos].id = nid;
        s[pos].next = s[nx].next;
        if (s[nx].next >= 0) s[s[nx].next].prev = pos;
        s[nx].id = -1;
        push_pair(t, s, s[pos].prev, h, &hn);
        push_pair(t, s, pos, h, &hn);
    }
    for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = s[i].next)
        if ((st = road__tok_ids_push(out, s[i].id)) != ROAD_OK) return st;
    return ROAD_OK;
}
