/*
 * tokenizer/jinja_value.c - the bottom of the Jinja engine: the arena every parse and render
 * allocates from, errors (longjmp to the entry point), and values with Python's semantics:
 * truth, ==, <, str(), repr(), json.dumps (transformers' tojson) and conversion from JSON.
 *
 * Python's formatting is the contract here because templates print values with it:
 * str(1.0) is "1.0", str(True) is "True", str(['a']) is "['a']".
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "tokenizer/jinja_internal.h"
#include "tokenizer/text_util.h"

/* Arena chunks: big enough that a chat template's render takes a handful. */
#define JJ_CHUNK_MIN ((size_t)64 << 10)

struct jj_chunk {
    jj_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

_Noreturn void road__jj_fail(jj_ctx *c, road_status s, uint32_t line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->status = s;
    if (line > 0)
        road__error(s, "chat template line %u: %s", (unsigned)line, msg);
    else
        road__error(s, "chat template: %s", msg);
    longjmp(*c->jump, 1);
}

void *road__jj_alloc(jj_ctx *c, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jj_chunk *h = c->chunks;
    if (h == NULL || h->size - h->used < n) {
        size_t size = n > JJ_CHUNK_MIN ? n : JJ_CHUNK_MIN;
        if (n > c->cap || c->used > c->cap - size - sizeof(jj_chunk))
            road__jj_fail(c, ROAD_ERR_NO_MEMORY, 0,
                          "the template needs more than %zu MiB of memory (ROAD_JINJA_MAX_MEMORY)",
                          c->cap >> 20);
        h = road__malloc(sizeof(jj_chunk) + size);
        if (h == NULL) road__jj_fail(c, ROAD_ERR_NO_MEMORY, 0, "out of memory");
        h->next = c->chunks;
        h->used = 0;
        h->size = size;
        c->chunks = h;
        c->used += sizeof(jj_chunk) + size;
    }
    void *p = h->data + h->used;
    h->used += n;
    memset(p, 0, n);
    return p;
}

void road__jj_arena_free(jj_ctx *c) {
    for (jj_chunk *h = c->chunks, *next; h != NULL; h = next) {
        next = h->next;
        road__free(h);
    }
    c->chunks = NULL;
    c->used = 0;
}

char *road__jj_strndup(jj_ctx *c, const char *s, size_t n) {
    char *p = road__jj_alloc(c, n + 1);
    if (n) memcpy(p, s, n);
    return p;
}

void road__jj_step(jj_ctx *c, uint32_t line, int64_t n) {
    c->steps += n;
    if (c->steps > c->max_steps)
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, line,
                      "the template runs more than %lld steps (a loop too long?)",
                      (long long)c->max_steps);
}

/* ---- buffers ---- */
void road__jj_put(jj_ctx *c, jj_buf *b, const char *s, size_t n) {
    if (n == 0) return;
    if (b->max && (n > b->max || b->len > b->max - n))
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, 0, "the rendered text passes %zu MiB", b->max >> 20);
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = road__jj_alloc(c, cap);
        if (b->len) memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void road__jj_putc(jj_ctx *c, jj_buf *b, char ch) {
    road__jj_put(c, b, &ch, 1);
}

void road__jj_printf(jj_ctx *c, jj_buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    road__jj_put(c, b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---- construction ---- */
jv road__jv_str(jj_ctx *c, const char *s, size_t n) {
    return jv_strref(road__jj_strndup(c, s, n), n);
}

jv road__jv_list(jj_ctx *c, size_t cap) {
    jv v = {.k = JV_LIST};
    v.u.l = road__jj_alloc(c, sizeof(jj_list));
    if (cap) {
        v.u.l->v = road__jj_alloc(c, cap * sizeof(jv));
        v.u.l->cap = cap;
    }
    return v;
}

void road__jv_list_push(jj_ctx *c, jv list, jv item) {
    jj_list *l = list.u.l;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *p = road__jj_alloc(c, cap * sizeof(jv));
        if (l->n) memcpy(p, l->v, l->n * sizeof(jv));
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = item;
}

jv road__jv_dict(jj_ctx *c, size_t cap) {
    jv v = {.k = JV_DICT};
    v.u.d = road__jj_alloc(c, sizeof(jj_dict));
    if (cap) {
        v.u.d->k = road__jj_alloc(c, cap * sizeof(jv));
        v.u.d->v = road__jj_alloc(c, cap * sizeof(jv));
        v.u.d->cap = cap;
    }
    return v;
}

jv *road__jv_dict_getv(jv dict, jv key) {
    jj_dict *d = dict.u.d;
    for (size_t i = 0; i < d->n; i++)
        if (road__jv_eq(d->k[i], key)) return &d->v[i];
    return NULL;
}

jv *road__jv_dict_get(jv dict, const char *key, size_t n) {
    return road__jv_dict_getv(dict, jv_strref(key, n));
}

void road__jv_dict_set(jj_ctx *c, jv dict, jv key, jv val) {
    jv *have = road__jv_dict_getv(dict, key);
    if (have) {
        *have = val;
        return;
    }
    jj_dict *d = dict.u.d;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *k = road__jj_alloc(c, cap * sizeof(jv)), *v = road__jj_alloc(c, cap * sizeof(jv));
        if (d->n) {
            memcpy(k, d->k, d->n * sizeof(jv));
            memcpy(v, d->v, d->n * sizeof(jv));
        }
        d->k = k;
        d->v = v;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = val;
}

/* ---- Python semantics ---- */
const char *road__jv_type_name(jv v) {
    switch (v.k) {
    case JV_UNDEF:
        return "Undefined";
    case JV_NONE:
        return "NoneType";
    case JV_BOOL:
        return "bool";
    case JV_INT:
        return "int";
    case JV_FLOAT:
        return "float";
    case JV_STR:
        return "str";
    case JV_LIST:
        return v.u.l->tuple ? "tuple" : "list";
    case JV_DICT:
        return "dict";
    case JV_NS:
        return "Namespace";
    case JV_MACRO:
        return "Macro";
    case JV_FUNC:
        return "function";
    default:
        return "LoopContext";
    }
}

bool road__jv_truthy(jv v) {
    switch (v.k) {
    case JV_UNDEF:
    case JV_NONE:
        return false;
    case JV_BOOL:
        return v.u.b;
    case JV_INT:
        return v.u.i != 0;
    case JV_FLOAT:
        return v.u.f != 0.0;
    case JV_STR:
        return v.u.s.n > 0;
    case JV_LIST:
        return v.u.l->n > 0;
    case JV_DICT:
        return v.u.d->n > 0;
    default:
        return true;
    }
}

bool road__jv_is_number(jv v) {
    return v.k == JV_INT || v.k == JV_FLOAT || v.k == JV_BOOL;
}

double road__jv_as_double(jv v) {
    return v.k == JV_FLOAT ? v.u.f : v.k == JV_INT ? (double)v.u.i : v.k == JV_BOOL ? v.u.b : 0.0;
}

static int64_t as_i64(jv v) {
    return v.k == JV_BOOL ? v.u.b : v.u.i;
}

bool road__jv_eq(jv a, jv b) {
    if (road__jv_is_number(a) && road__jv_is_number(b)) {
        if (a.k != JV_FLOAT && b.k != JV_FLOAT) return as_i64(a) == as_i64(b);
        return road__jv_as_double(a) == road__jv_as_double(b);
    }
    if (a.k != b.k) return false;
    switch (a.k) {
    case JV_UNDEF:
    case JV_NONE:
        return true;
    case JV_STR:
        return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case JV_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!road__jv_eq(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = road__jv_dict_getv(b, a.u.d->k[i]);
            if (o == NULL || !road__jv_eq(a.u.d->v[i], *o)) return false;
        }
        return true;
    case JV_NS:
        return a.u.d == b.u.d;
    case JV_MACRO:
        return a.u.macro == b.u.macro;
    case JV_FUNC:
        return a.u.fn == b.u.fn;
    default:
        return a.u.loop == b.u.loop;
    }
}

int road__jv_cmp(jj_ctx *c, uint32_t line, jv a, jv b) {
    if (road__jv_is_number(a) && road__jv_is_number(b)) {
        if (a.k != JV_FLOAT && b.k != JV_FLOAT)
            return (as_i64(a) > as_i64(b)) - (as_i64(a) < as_i64(b));
        double x = road__jv_as_double(a), y = road__jv_as_double(b);
        return (x > y) - (x < y);
    }
    if (a.k == JV_STR && b.k == JV_STR) {
        /* UTF-8 byte order is code point order, Python's order for str */
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
        if (r) return r < 0 ? -1 : 1;
        return (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    if (a.k == JV_LIST && b.k == JV_LIST && a.u.l->tuple == b.u.l->tuple) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (road__jv_eq(a.u.l->v[i], b.u.l->v[i])) continue;
            return road__jv_cmp(c, line, a.u.l->v[i], b.u.l->v[i]);
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "cannot order a %s and a %s",
                  road__jv_type_name(a), road__jv_type_name(b));
}

size_t road__jv_utf8_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* ---- str, repr ---- */
static void put_float(jj_ctx *c, jj_buf *b, double f) {
    char tmp[ROAD_JSON_NUMBER_MAX];
    if (isnan(f)) {
        road__jj_put(c, b, "nan", 3);
        return;
    }
    if (isinf(f)) {
        road__jj_put(c, b, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3);
        return;
    }
    road__json_format_double(f, tmp, sizeof tmp);
    road__jj_put(c, b, tmp, strlen(tmp));
}

/* Code points past U+00A0 that Python's str.isprintable() calls unprintable, so repr escapes
 * them: the separators (Zs, Zl, Zp), the format characters (Cf) and the private use and
 * noncharacter ranges. Unassigned code points (Cn) are not known here and print as they are. */
static bool unprintable(uint32_t cp) {
    return cp == 0x061C || cp == 0x06DD || cp == 0x070F || cp == 0x1680 ||
           cp == 0x180E || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
           (cp >= 0x205F && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 ||
           (cp >= 0xE000 && cp <= 0xF8FF) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
           cp == 0xFFFE || cp == 0xFFFF || cp == 0x110BD || (cp >= 0x1D173 && cp <= 0x1D17A) ||
           cp == 0xE0001 || (cp >= 0xE0020 && cp <= 0xE007F) || cp >= 0xF0000;
}

/* Python's repr of a str: single quotes unless the text has ' and no ". */
static void repr_str(jj_ctx *c, jj_buf *b, const char *s, size_t n) {
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    road__jj_putc(c, b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == (unsigned char)q || ch == '\\') {
            road__jj_putc(c, b, '\\');
            road__jj_putc(c, b, (char)ch);
        } else if (ch == '\n') {
            road__jj_put(c, b, "\\n", 2);
        } else if (ch == '\r') {
            road__jj_put(c, b, "\\r", 2);
        } else if (ch == '\t') {
            road__jj_put(c, b, "\\t", 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            road__jj_printf(c, b, "\\x%02x", ch);
        } else if (ch == 0xC2 && i + 1 < n &&
                   ((unsigned char)s[i + 1] <= 0xA0 || (unsigned char)s[i + 1] == 0xAD)) {
            /* U+0080..U+00A0 and the soft hyphen are not printable for Python */
            road__jj_printf(c, b, "\\x%02x", (unsigned char)s[i + 1]);
            i++;
        } else if (ch >= 0xE0) {
            uint32_t cp = 0;
            int k = road__tok_utf8_decode((const unsigned char *)s + i, n - i, &cp);
            if (k > 0 && unprintable(cp)) {
                road__jj_printf(c, b, cp > 0xFFFF ? "\\U%08x" : "\\u%04x", (unsigned)cp);
                i += (size_t)k - 1;
            } else {
                road__jj_putc(c, b, (char)ch);
            }
        } else {
            road__jj_putc(c, b, (char)ch);
        }
    }
    road__jj_putc(c, b, q);
}

void road__jv_repr(jj_ctx *c, jj_buf *b, jv v) {
    switch (v.k) {
    case JV_STR:
        repr_str(c, b, v.u.s.p, v.u.s.n);
        return;
    case JV_LIST: {
        jj_list *l = v.u.l;
        road__jj_putc(c, b, l->tuple ? '(' : '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) road__jj_put(c, b, ", ", 2);
            road__jj_step(c, 0, 1);
            road__jv_repr(c, b, l->v[i]);
        }
        if (l->tuple && l->n == 1) road__jj_putc(c, b, ',');
        road__jj_putc(c, b, l->tuple ? ')' : ']');
        return;
    }
    case JV_DICT:
    case JV_NS: {
        jj_dict *d = v.u.d;
        if (v.k == JV_NS) road__jj_put(c, b, "<Namespace ", 11);
        road__jj_putc(c, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            if (i) road__jj_put(c, b, ", ", 2);
            road__jj_step(c, 0, 1);
            road__jv_repr(c, b, d->k[i]);
            road__jj_put(c, b, ": ", 2);
            road__jv_repr(c, b, d->v[i]);
        }
        road__jj_putc(c, b, '}');
        if (v.k == JV_NS) road__jj_putc(c, b, '>');
        return;
    }
    default:
        road__jv_to_str(c, b, v);
    }
}

void road__jv_to_str(jj_ctx *c, jj_buf *b, jv v) {
    switch (v.k) {
    case JV_UNDEF:
        return;
    case JV_NONE:
        road__jj_put(c, b, "None", 4);
        return;
    case JV_BOOL:
        road__jj_put(c, b, v.u.b ? "True" : "False", v.u.b ? 4 : 5);
        return;
    case JV_INT:
        road__jj_printf(c, b, "%lld", (long long)v.u.i);
        return;
    case JV_FLOAT:
        put_float(c, b, v.u.f);
        return;
    case JV_STR:
        road__jj_put(c, b, v.u.s.p, v.u.s.n);
        return;
    case JV_MACRO:
        road__jj_printf(c, b, "<Macro '%s'>", v.u.macro->name);
        return;
    case JV_FUNC:
        road__jj_printf(c, b, "<built-in function %s>", v.u.fn->name);
        return;
    case JV_LOOP:
        road__jj_put(c, b, "<LoopContext>", 13);
        return;
    default:
        road__jv_repr(c, b, v);
    }
}

jv road__jv_stringify(jj_ctx *c, jv v) {
    if (v.k == JV_STR) return v;
    jj_buf b = {0};
    road__jv_to_str(c, &b, v);
    return jv_strref(b.p ? b.p : "", b.len);
}

/* ---- JSON ---- */
static void json_str(jj_ctx *c, jj_buf *b, const char *s, size_t n, bool ascii) {
    road__jj_putc(c, b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[16];
        if (ascii && ch >= 0x80) { /* \uXXXX, a surrogate pair past U+FFFF */
            uint32_t cp = 0;
            int len = road__tok_utf8_decode((const unsigned char *)s + i, n - i, &cp);
            if (len == 0) cp = 0xFFFD, len = 1;
            if (cp >= 0x10000)
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
                         0xDC00 + ((cp - 0x10000) & 0x3FF));
            else
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            road__jj_put(c, b, s + run, i - run);
            road__jj_put(c, b, tmp, strlen(tmp));
            i += (size_t)len - 1;
            run = i + 1;
            continue;
        }
        if (ch == '"')
            esc = "\\\"";
        else if (ch == '\\')
            esc = "\\\\";
        else if (ch == '\n')
            esc = "\\n";
        else if (ch == '\r')
            esc = "\\r";
        else if (ch == '\t')
            esc = "\\t";
        else if (ch == '\b')
            esc = "\\b";
        else if (ch == '\f')
            esc = "\\f";
        else if (ch < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
            esc = tmp;
        }
        if (esc) {
            road__jj_put(c, b, s + run, i - run);
            road__jj_put(c, b, esc, strlen(esc));
            run = i + 1;
        }
    }
    road__jj_put(c, b, s + run, n - run);
    road__jj_putc(c, b, '"');
}

typedef struct json_opts {
    const char *indent, *item_sep, *key_sep;
    bool sort_keys, ascii;
    uint32_t line;
} json_opts;

static void json_newline(jj_ctx *c, jj_buf *b, const json_opts *o, int level) {
    road__jj_putc(c, b, '\n');
    for (int i = 0; i < level; i++) road__jj_put(c, b, o->indent, strlen(o->indent));
}

static void json_value(jj_ctx *c, jj_buf *b, jv v, const json_opts *o, int level) {
    road__jj_step(c, o->line, 1);
    if (level > ROAD_JINJA_MAX_DEPTH)
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, o->line, "tojson: nesting deeper than %d",
                      ROAD_JINJA_MAX_DEPTH);
    switch (v.k) {
    case JV_NONE:
        road__jj_put(c, b, "null", 4);
        return;
    case JV_BOOL:
        road__jj_put(c, b, v.u.b ? "true" : "false", v.u.b ? 4 : 5);
        return;
    case JV_INT:
        road__jj_printf(c, b, "%lld", (long long)v.u.i);
        return;
    case JV_FLOAT: {
        char tmp[ROAD_JSON_NUMBER_MAX];
        road__json_format_double(v.u.f, tmp, sizeof tmp);
        road__jj_put(c, b, tmp, strlen(tmp));
        return;
    }
    case JV_STR:
        json_str(c, b, v.u.s.p, v.u.s.n, o->ascii);
        return;
    case JV_LIST: {
        jj_list *l = v.u.l;
        if (l->n == 0) {
            road__jj_put(c, b, "[]", 2);
            return;
        }
        road__jj_putc(c, b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) road__jj_put(c, b, o->item_sep, strlen(o->item_sep));
            if (o->indent) json_newline(c, b, o, level + 1);
            json_value(c, b, l->v[i], o, level + 1);
        }
        if (o->indent) json_newline(c, b, o, level);
        road__jj_putc(c, b, ']');
        return;
    }
    case JV_DICT:
    case JV_NS: {
        jj_dict *d = v.u.d;
        if (d->n == 0) {
            road__jj_put(c, b, "{}", 2);
            return;
        }
        size_t *order = road__jj_alloc(c, d->n * sizeof(size_t));
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->k[i];
            if (k.k != JV_STR && k.k != JV_INT && k.k != JV_FLOAT && k.k != JV_BOOL &&
                k.k != JV_NONE)
                road__jj_fail(c, ROAD_ERR_INVALID_ARG, o->line,
                              "tojson: keys must be str, int, float, bool or None, not %s",
                              road__jv_type_name(k));
            order[i] = i;
        }
        if (o->sort_keys) { /* insertion sort: dicts in templates are small; stable */
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                road__jj_step(c, o->line, (int64_t)i);
                while (j > 0 && road__jv_cmp(c, o->line, d->k[order[j - 1]], d->k[x]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        road__jj_putc(c, b, '{');
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->k[order[i]];
            if (i) road__jj_put(c, b, o->item_sep, strlen(o->item_sep));
            if (o->indent) json_newline(c, b, o, level + 1);
            if (k.k == JV_STR) {
                json_str(c, b, k.u.s.p, k.u.s.n, o->ascii);
            } else {
                /* json.dumps turns other keys into their JSON text, quoted */
                jj_buf kb = {0};
                json_value(c, &kb, k, o, level + 1);
                json_str(c, b, kb.p, kb.len, o->ascii);
            }
            road__jj_put(c, b, o->key_sep, strlen(o->key_sep));
            json_value(c, b, d->v[order[i]], o, level + 1);
        }
        if (o->indent) json_newline(c, b, o, level);
        road__jj_putc(c, b, '}');
        return;
    }
    default:
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, o->line,
                      "tojson: Object of type %s is not JSON serializable", road__jv_type_name(v));
    }
}

void road__jv_tojson(jj_ctx *c, uint32_t line, jj_buf *b, jv v, const char *indent,
                     const char *item_sep, const char *key_sep, bool sort_keys, bool ensure_ascii) {
    json_opts o = {indent, item_sep, key_sep, sort_keys, ensure_ascii, line};
    if (o.item_sep == NULL) o.item_sep = indent ? "," : ", ";
    if (o.key_sep == NULL) o.key_sep = ": ";
    json_value(c, b, v, &o, 0);
}

jv road__jv_from_json(jj_ctx *c, const cJSON *j, int depth) {
    if (depth > ROAD_JSON_MAX_DEPTH)
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, 0, "a variable nests deeper than %d",
                      ROAD_JSON_MAX_DEPTH);
    if (cJSON_IsNull(j)) return jv_none();
    if (cJSON_IsBool(j)) return jv_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (road__json_is_int(j)) {
            const char *t = road__json_number_text(j);
            if (t) {
                long long x = 0;
                if (sscanf(t, "%lld", &x) == 1 && (double)x == d) return jv_int(x);
                if (fabs(d) < 9.2e18) return jv_int((int64_t)d);
                road__jj_fail(c, ROAD_ERR_INVALID_ARG, 0, "integer %s is beyond 64 bits", t);
            }
            if (fabs(d) < 9.2e18) return jv_int((int64_t)d);
        }
        return jv_float(d);
    }
    if (cJSON_IsString(j)) return road__jv_str(c, j->valuestring, strlen(j->valuestring));
    if (cJSON_IsArray(j)) {
        jv l = road__jv_list(c, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *e = j->child; e; e = e->next)
            road__jv_list_push(c, l, road__jv_from_json(c, e, depth + 1));
        return l;
    }
    if (cJSON_IsObject(j)) {
        jv d = road__jv_dict(c, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *e = j->child; e; e = e->next) {
            const char *k = e->string ? e->string : "";
            road__jv_dict_set(c, d, road__jv_str(c, k, strlen(k)),
                              road__jv_from_json(c, e, depth + 1));
        }
        return d;
    }
    road__jj_fail(c, ROAD_ERR_INVALID_ARG, 0, "a variable holds a JSON value of unknown type");
}
