/*
 * tokenizer/nfc.c - Unicode NFC (canonical decomposition, canonical ordering, canonical
 * composition), for tokenizer.json's "NFC" normalizer (Qwen2/3).
 *
 * The textbook algorithm of UAX #15 over a code point array, with the tables of
 * nfc_tables.c (binary search) and Hangul done arithmetically. Text whose code points
 * are all below U+0300 is already NFC (no combining marks, and no precomposed character there
 * changes), which is nearly every string in practice: that case is a copy.
 */
#include <string.h>

#include "core/alloc.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/nfc.h"

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7 };
enum { L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };
/* Deepest canonical decomposition is 4 code points (e.g. U+1F82). */
#define NFC_MAX_DECOMP 8

static uint32_t ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = road__nfc_ccc_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (road__nfc_ccc_table[mid].cp < cp)
            lo = mid + 1;
        else hi = mid;
    }
    return lo < road__nfc_ccc_count && road__nfc_ccc_table[lo].cp == cp
               ? road__nfc_ccc_table[lo].ccc
               : 0;
}

static const road_nfc_pair *decomp_of(uint32_t cp) {
    size_t lo = 0, hi = road__nfc_decomp_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (road__nfc_decomp_table[mid].a < cp)
            lo = mid + 1;
        else hi = mid;
    }
    return lo < road__nfc_decomp_count && road__nfc_decomp_table[lo].a == cp
               ? &road__nfc_decomp_table[lo]
               : NULL;
}

static uint32_t compose_of(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = road__nfc_compose_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const road_nfc_pair *p = &road__nfc_compose_table[mid];
        if (p->a < a || (p->a == a && p->b < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < road__nfc_compose_count && road__nfc_compose_table[lo].a == a &&
        road__nfc_compose_table[lo].b == b)
        return road__nfc_compose_table[lo].c;
    return 0;
}

/* Full canonical decomposition of cp appended to out (room for NFC_MAX_DECOMP). */
static size_t decompose(uint32_t cp, uint32_t *out) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (t) out[2] = T_BASE + t;
        return t ? 3 : 2;
    }
    const road_nfc_pair *d = cp >= 0xC0 ? decomp_of(cp) : NULL;
    if (!d) {
        out[0] = cp;
        return 1;
    }
    size_t n = decompose(d->b, out);
    if (d->c) out[n++] = d->c; /* the second part never decomposes further */
    return n;
}

road_status road__tok_nfc(const char *s, size_t len, tok_buf *out) {
    out->len = 0;
    const unsigned char *u = (const unsigned char *)s;
    bool simple = true;
    for (size_t i = 0; i < len && simple; i++) simple = u[i] < 0xCC; /* lead bytes below U+0300 */
    if (simple) return road__tok_buf_put(out, s, len);

    uint32_t *cps = road__malloc((len * NFC_MAX_DECOMP + 1) * sizeof *cps);
    if (!cps) return ROAD_ERR_NO_MEMORY;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = road__tok_utf8_decode(u + i, len - i, &cp);
        if (k <= 0) cp = 0xFFFD, k = 1; /* cannot happen: input is sanitized */
        n += decompose(cp, cps + n);
        i += (size_t)k;
    }
    /* canonical ordering: stable sort of each run of non-starters by combining class */
    for (size_t i = 1; i < n; i++) {
        uint32_t c = cps[i], cc = ccc_of(c);
        if (cc == 0) continue;
        size_t j = i;
        while (j > 0 && ccc_of(cps[j - 1]) > cc) {
            cps[j] = cps[j - 1];
            j--;
        }
        cps[j] = c;
    }
    /* canonical composition */
    size_t m = 0;
    long starter = -1;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i], cc = ccc_of(c);
        if (starter >= 0) {
            bool blocked = false;
            if ((size_t)starter != m - 1) {
                uint32_t lc = ccc_of(cps[m - 1]);
                blocked = lc == 0 || lc >= cc;
            }
            uint32_t comp = blocked ? 0 : compose_of(cps[starter], c);
            if (comp) {
                cps[starter] = comp;
                continue;
            }
        }
        cps[m++] = c;
        if (cc == 0) starter = (long)(m - 1);
    }
    road_status st = road__tok_buf_reserve(out, m * 4);
    for (size_t i = 0; i < m && st == ROAD_OK; i++) {
        char e[4];
        st = road__tok_buf_put(out, e, (size_t)road__tok_utf8_encode(cps[i], e));
    }
    road__free(cps);
    return st;
}
