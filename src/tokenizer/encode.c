/*
 * tokenizer/encode.c - text to ids: added tokens first, then normalizer, pre-tokenizers and
 * BPE on the text between them, then the post-processor's bos/eos.
 *
 * Added tokens are found as Hugging Face finds them: on the raw text, leftmost match first and
 * the longest one at that position (its Aho-Corasick "leftmost-longest"), special and ordinary
 * added tokens alike, whether or not special tokens are being added. lstrip / rstrip swallow the
 * whitespace beside a match; a single_word token only matches between non-word characters.
 * Candidates are bucketed by first byte, longest first, so a position costs one table read
 * unless it starts like an added token.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"

/* Unicode White_Space (Rust's char::is_whitespace, which lstrip/rstrip use). */
static bool is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Word characters for single_word: ASCII letters, digits and '_', and any non-ASCII character
 * other than whitespace (an approximation of Unicode alphanumerics; no Llama-family file sets
 * single_word). */
static bool is_word(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return !is_ws(c);
}

/* The code point ending just before s[at] (text is valid UTF-8). */
static uint32_t cp_before(const char *s, size_t at) {
    size_t i = at;
    do i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    uint32_t cp = 0;
    road__tok_utf8_decode((const unsigned char *)s + i, at - i, &cp);
    return cp;
}

static uint32_t cp_at(const char *s, size_t len, size_t at) {
    uint32_t cp = 0;
    road__tok_utf8_decode((const unsigned char *)s + at, len - at, &cp);
    return cp;
}

/* The added token matching at s[i], or NULL. */
static const tok_added *match_at(const road_tokenizer *t, const char *s, size_t len, size_t i) {
    uint8_t c = (uint8_t)s[i];
    for (int32_t k = t->added_first[c]; k < t->added_first[c + 1]; k++) {
        const tok_added *a = &t->added[k];
        if (a->len > len - i || memcmp(t->pool + a->off, s + i, a->len) != 0) continue;
        if (a->single_word) {
            if (i > 0 && is_word(cp_before(s, i))) continue;
            if (i + a->len < len && is_word(cp_at(s, len, i + a->len))) continue;
        }
        return a;
    }
    return NULL;
}

/* Encode the text between added tokens. */
static road_status encode_segment(const road_tokenizer *t, const char *s, size_t len,
                                  bool at_start, tok_scratch *sc, tok_ids *out) {
    if (len == 0) return ROAD_OK;
    road_status st = road__tok_normalize(t, s, len, &sc->text);
    if (st != ROAD_OK) return st;
    if ((st = road__tok_pre_tokenize(t, &sc->text, at_start, &sc->pieces, sc)) != ROAD_OK)
        return st;
    for (size_t k = 0; k < sc->pieces.n && st == ROAD_OK; k++)
        st = road__tok_bpe_word(t, sc->text.p + sc->pieces.v[k].off, sc->pieces.v[k].len, sc, out);
    return st;
}

static road_status encode_all(const road_tokenizer *t, const char *text, size_t len,
                              bool add_special, tok_scratch *sc, tok_buf *clean, tok_ids *out) {
    road_status st = road__tok_utf8_sanitize(text, len, clean);
    if (st != ROAD_OK) return st;
    const char *s = clean->p;
    size_t n = clean->len;
    if (add_special)
        for (int i = 0; i < t->n_tmpl_pre && st == ROAD_OK; i++)
            st = road__tok_ids_push(out, t->tmpl_pre[i]);
    size_t seg = 0; /* start of the text not yet encoded */
    for (size_t i = 0; i < n && st == ROAD_OK;) {
        const tok_added *a = t->n_added ? match_at(t, s, n, i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        size_t ms = i, me = i + a->len;
        if (a->lstrip)
            while (ms > seg && is_ws(cp_before(s, ms))) {
                size_t j = ms;
                do j--;
                while (j > seg && ((unsigned char)s[j] & 0xC0) == 0x80);
                ms = j;
            }
        if (a->rstrip)
            while (me < n && is_ws(cp_at(s, n, me))) {
                uint32_t cp;
                me += (size_t)road__tok_utf8_decode((const unsigned char *)s + me, n - me, &cp);
            }
        st = encode_segment(t, s + seg, ms - seg, seg == 0, sc, out);
        if (st == ROAD_OK) st = road__tok_ids_push(out, a->id);
        seg = i = me;
    }
    if (st == ROAD_OK) st = encode_segment(t, s + seg, n - seg, seg == 0, sc, out);
    if (add_special)
        for (int i = 0; i < t->n_tmpl_post && st == ROAD_OK; i++)
            st = road__tok_ids_push(out, t->tmpl_post[i]);
    return st;
}

size_t road_tokenizer_max_tokens(const road_tokenizer *t, size_t len) {
    /* Each token covers at least one byte of the processed text; sanitizing (U+FFFD for one
     * byte), NFC and " " -> "▁" grow text at most 3x each, Prepend adds one character per piece
     * of text between added tokens. */
    if (!t || len > SIZE_MAX / 16 - 64) return SIZE_MAX;
    return 12 * len + 8 + (size_t)t->n_tmpl_pre + (size_t)t->n_tmpl_post;
}

road_status road_tokenizer_encode(const road_tokenizer *t, const char *text, size_t len,
                                  bool add_special, int32_t *ids, size_t cap, size_t *n_ids) {
    if (!t || (!text && len) || !n_ids)
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_encode: NULL argument");
    *n_ids = 0;
    tok_scratch sc;
    memset(&sc, 0, sizeof sc);
    tok_buf clean = {0};
    tok_ids out = {0};
    road_status st = encode_all(t, text ? text : "", len, add_special, &sc, &clean, &out);
    if (st == ROAD_OK) {
        *n_ids = out.n;
        if (ids) {
            size_t k = out.n < cap ? out.n : cap;
            if (k) memcpy(ids, out.v, k * sizeof *ids);
            if (out.n > cap)
                st = road__error(ROAD_ERR_SHAPE,
                                 "the text encodes to %zu ids but the buffer holds "
                                 "%zu; size it with road_tokenizer_max_tokens",
                                 out.n, cap);
        }
    }
    road__tok_scratch_free(&sc);
    road__free(clean.p);
    road__free(out.v);
    return st;
}
