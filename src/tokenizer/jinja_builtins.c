/*
 * tokenizer/jinja_builtins.c - the filters, tests, methods and global functions templates
 * call, each with jinja2's (or Python's) behaviour and argument names.
 *
 * Case mapping (upper, lower, title, capitalize) and whitespace (strip, trim, split) cover
 * ASCII only: chat templates apply them to role names and markers. Non-ASCII bytes pass
 * through unchanged (Python would also map non-ASCII letters).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/jinja_internal.h"
#include "tokenizer/text_util.h"

#define FAIL(...) road__jj_fail(road__jj_render_ctx(r), ROAD_ERR_INVALID_ARG, line, __VA_ARGS__)

/* Argument `idx` (positional) or `name` (keyword), or NULL. */
static const jv *arg(const jj_args *a, size_t idx, const char *name) {
    for (size_t k = 0; k < a->nkw; k++)
        if (name && !strcmp(a->kwnames[k], name)) return &a->kw[k];
    return idx < a->npos ? &a->pos[idx] : NULL;
}

/* Fail on more positional arguments than `maxpos` or a keyword not in names. */
static void check_args(jj_render *r, uint32_t line, const char *what, const jj_args *a,
                       size_t maxpos, const char *const *names) {
    if (a->npos > maxpos)
        FAIL("%s takes at most %zu positional argument(s), got %zu", what, maxpos, a->npos);
    for (size_t k = 0; k < a->nkw; k++) {
        bool ok = false;
        for (int i = 0; names && names[i]; i++) ok = ok || !strcmp(names[i], a->kwnames[k]);
        if (!ok) FAIL("%s got an unexpected keyword argument '%s'", what, a->kwnames[k]);
    }
}

static jv str_arg(jj_render *r, uint32_t line, const char *what, const jv *v) {
    if (v == NULL || v->k != JV_STR)
        FAIL("%s needs a string argument, not %s", what, v ? road__jv_type_name(*v) : "nothing");
    return *v;
}

static bool is_space(unsigned char ch) {
    return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f);
}
static char up(char ch) {
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
}
static char low(char ch) {
    return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}
static bool is_alpha(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static jv str_copy_map(jj_ctx *c, jv s, char (*fn)(char)) {
    char *p = road__jj_alloc(c, s.u.s.n + 1);
    for (size_t i = 0; i < s.u.s.n; i++) p[i] = fn(s.u.s.p[i]);
    return jv_strref(p, s.u.s.n);
}

/* Python's str.strip family: which = 1 left, 2 right, 3 both; chars NULL for whitespace. */
static jv strip(jv s, const jv *chars, int which) {
    size_t a = 0, b = s.u.s.n;
    bool ws = chars == NULL || chars->k == JV_NONE;
    if (ws) { /* Python's whitespace, Unicode's included (U+00A0, U+3000, ...) */
        const char *p = s.u.s.p;
        size_t n = s.u.s.n;
        road__tok_py_strip(&p, &n, which & 1, which & 2);
        return jv_strref(p, n);
    }
    const char *set = ws ? NULL : chars->u.s.p;
    size_t setn = ws ? 0 : chars->u.s.n;
#define STRIPPED(ch) (ws ? is_space((unsigned char)(ch)) : memchr(set, (ch), setn) != NULL)
    if (which & 1)
        while (a < b && STRIPPED(s.u.s.p[a])) a++;
    if (which & 2)
        while (b > a && STRIPPED(s.u.s.p[b - 1])) b--;
#undef STRIPPED
    return jv_strref(s.u.s.p + a, b - a);
}

static bool has_prefix(jv s, jv p, bool suffix) {
    if (p.u.s.n > s.u.s.n) return false;
    return memcmp(s.u.s.p + (suffix ? s.u.s.n - p.u.s.n : 0), p.u.s.p, p.u.s.n) == 0;
}

static jv replace(jj_render *r, uint32_t line, jv s, jv old, jv new, int64_t count) {
    jj_ctx *c = road__jj_render_ctx(r);
    jj_buf b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (old.u.s.n == 0) { /* Python inserts `new` before every character and at the end */
        for (; i <= s.u.s.n; i++) {
            if (count < 0 || done < count) {
                road__jj_put(c, &b, new.u.s.p, new.u.s.n);
                done++;
            }
            if (i < s.u.s.n) road__jj_putc(c, &b, s.u.s.p[i]);
            road__jj_step(c, line, 1);
        }
        return jv_strref(b.p ? b.p : "", b.len);
    }
    while (i < s.u.s.n) {
        if ((count < 0 || done < count) && i + old.u.s.n <= s.u.s.n &&
            memcmp(s.u.s.p + i, old.u.s.p, old.u.s.n) == 0) {
            road__jj_put(c, &b, new.u.s.p, new.u.s.n);
            i += old.u.s.n;
            done++;
            road__jj_step(c, line, 1);
        } else {
            road__jj_putc(c, &b, s.u.s.p[i++]);
        }
    }
    return jv_strref(b.p ? b.p : "", b.len);
}

static jv split(jj_render *r, uint32_t line, jv s, const jv *sep, int64_t maxsplit) {
    jj_ctx *c = road__jj_render_ctx(r);
    jv l = road__jv_list(c, 0);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    if (sep == NULL || sep->k == JV_NONE) { /* runs of whitespace, no empty strings */
        size_t k;
        for (;;) {
            while (i < n && (k = road__tok_py_space(p + i, n - i)) > 0) i += k;
            if (i >= n) break;
            size_t j = i;
            if (maxsplit >= 0 && (int64_t)l.u.l->n >= maxsplit) { /* the rest, as it is */
                road__jv_list_push(c, l, jv_strref(p + i, n - i));
                break;
            }
            while (j < n && road__tok_py_space(p + j, n - j) == 0) j++;
            road__jv_list_push(c, l, jv_strref(p + i, j - i));
            i = j;
            road__jj_step(c, line, 1);
        }
        return l;
    }
    if (sep->k != JV_STR) FAIL("split: the separator must be a string");
    if (sep->u.s.n == 0) FAIL("split: empty separator");
    size_t start = 0;
    while (i + sep->u.s.n <= n && (maxsplit < 0 || (int64_t)l.u.l->n < maxsplit)) {
        if (memcmp(p + i, sep->u.s.p, sep->u.s.n) == 0) {
            road__jv_list_push(c, l, jv_strref(p + start, i - start));
            i += sep->u.s.n;
            start = i;
            road__jj_step(c, line, 1);
        } else {
            i++;
        }
    }
    road__jv_list_push(c, l, jv_strref(p + start, n - start));
    return l;
}

/* Python's str.title: a letter after a non-letter goes up, others down. */
static jv py_title(jj_ctx *c, jv s) {
    char *p = road__jj_alloc(c, s.u.s.n + 1);
    bool prev = false;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        p[i] = prev ? low(ch) : up(ch);
        prev = is_alpha(ch);
    }
    return jv_strref(p, s.u.s.n);
}

/* jinja2's title filter: words start after '-', whitespace, or an opening bracket. */
static jv jinja_title(jj_ctx *c, jv s) {
    char *p = road__jj_alloc(c, s.u.s.n + 1);
    bool start = true;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        bool sep = ch == '-' || is_space((unsigned char)ch) || ch == '(' || ch == '{' ||
                   ch == '[' || ch == '<';
        p[i] = sep ? ch : start ? up(ch) : low(ch);
        start = sep;
    }
    return jv_strref(p, s.u.s.n);
}

static jv capitalize(jj_ctx *c, jv s) {
    jv v = str_copy_map(c, s, low);
    if (v.u.s.n) ((char *)v.u.s.p)[0] = up(v.u.s.p[0]);
    return v;
}

static jv list_of(jj_render *r, uint32_t line, jv v, const char *what) {
    jj_ctx *c = road__jj_render_ctx(r);
    switch (v.k) {
    case JV_LIST:
        return v;
    case JV_UNDEF:
        return road__jv_list(c, 0);
    case JV_DICT:
    case JV_NS: {
        jv l = road__jv_list(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) road__jv_list_push(c, l, v.u.d->k[i]);
        return l;
    }
    case JV_STR: {
        jv l = road__jv_list(c, 0);
        for (size_t i = 0; i < v.u.s.n;) {
            size_t j = i + 1;
            while (j < v.u.s.n && ((unsigned char)v.u.s.p[j] & 0xC0) == 0x80) j++;
            road__jv_list_push(c, l, jv_strref(v.u.s.p + i, j - i));
            i = j;
        }
        return l;
    }
    default:
        FAIL("%s: '%s' object is not iterable", what, road__jv_type_name(v));
    }
}

/* Attribute path "a.b.0" of an item, as jinja2's make_attrgetter. */
static jv attr_path(jj_render *r, uint32_t line, jv item, jv path) {
    if (path.k == JV_INT) return road__jj_getitem(r, line, item, path);
    if (path.k != JV_STR) FAIL("attribute must be a string");
    const char *p = path.u.s.p, *end = p + path.u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) digits = digits && p[i] >= '0' && p[i] <= '9';
        if (item.k == JV_UNDEF) return item;
        item = digits ? road__jj_getitem(r, line, item, jv_int(atoll(p)))
                      : road__jj_getitem(r, line, item, jv_strref(p, n));
        if (!dot) break;
        p = dot + 1;
    }
    return item;
}

static jv lowered(jj_ctx *c, jv v) {
    return v.k == JV_STR ? str_copy_map(c, v, low) : v;
}

/* Stable merge sort of items by key (with the render's comparison). */
static void sort_items(jj_render *r, uint32_t line, jv *items, jv *keys, size_t n, bool reverse) {
    jj_ctx *c = road__jj_render_ctx(r);
    if (n < 2) return;
    jv *ti = road__jj_alloc(c, n * sizeof(jv)), *tk = road__jj_alloc(c, n * sizeof(jv));
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo,
                   j = mid, k = lo;
            while (i < mid || j < hi) {
                bool take_left = j >= hi;
                if (i < mid && j < hi) {
                    int cmp = road__jv_cmp(c, line, keys[i], keys[j]);
                    take_left = reverse ? cmp >= 0 : cmp <= 0;
                }
                size_t s = take_left ? i++ : j++;
                ti[k] = items[s];
                tk[k++] = keys[s];
            }
        }
        memcpy(items, ti, n * sizeof(jv));
        memcpy(keys, tk, n * sizeof(jv));
        road__jj_step(c, line, (int64_t)n);
    }
}

static jv do_tojson(jj_render *r, uint32_t line, jv v, const jj_args *a) {
    static const char *const names[] = {"indent", "ensure_ascii", "separators", "sort_keys", NULL};
    check_args(r, line, "tojson", a, 4, names);
    jj_ctx *c = road__jj_render_ctx(r);
    /* transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
     * a first positional argument is ensure_ascii, not jinja2's indent */
    const jv *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"),
             *sep = arg(a, 2, "separators"), *sk = arg(a, 3, "sort_keys");
    const char *indent = NULL;
    if (ind && ind->k == JV_INT) {
        int64_t n = ind->u.i < 0 ? 0 : ind->u.i > 64 ? 64 : ind->u.i;
        char *p = road__jj_alloc(c, (size_t)n + 1);
        memset(p, ' ', (size_t)n);
        indent = p;
    } else if (ind && ind->k == JV_STR) {
        indent = road__jj_strndup(c, ind->u.s.p, ind->u.s.n);
    } else if (ind && ind->k != JV_NONE) {
        FAIL("tojson: indent must be an int, a string or None");
    }
    const char *is = NULL, *ks = NULL;
    if (sep && sep->k != JV_NONE) {
        if (sep->k != JV_LIST || sep->u.l->n != 2 || sep->u.l->v[0].k != JV_STR ||
            sep->u.l->v[1].k != JV_STR)
            FAIL("tojson: separators must be a pair of strings");
        is = road__jj_strndup(c, sep->u.l->v[0].u.s.p, sep->u.l->v[0].u.s.n);
        ks = road__jj_strndup(c, sep->u.l->v[1].u.s.p, sep->u.l->v[1].u.s.n);
    }
    jj_buf b = {0};
    road__jv_tojson(c, line, &b, v, indent, is, ks, sk && road__jv_truthy(*sk),
                    ea && road__jv_truthy(*ea));
    return jv_strref(b.p ? b.p : "", b.len);
}

static int64_t length(jj_render *r, uint32_t line, jv v) {
    switch (v.k) {
    case JV_STR:
        return (int64_t)road__jv_utf8_len(v.u.s.p, v.u.s.n);
    case JV_LIST:
        return (int64_t)v.u.l->n;
    case JV_DICT:
    case JV_NS:
        return (int64_t)v.u.d->n;
    case JV_UNDEF:
        return 0;
    default:
        FAIL("object of type '%s' has no len()", road__jv_type_name(v));
    }
}

static jv to_int(jj_render *r, uint32_t line, jv v, jv dflt) {
    (void)r;
    (void)line;
    switch (v.k) {
    case JV_INT:
        return v;
    case JV_BOOL:
        return jv_int(v.u.b);
    case JV_FLOAT:
        if (!isfinite(v.u.f) || fabs(v.u.f) >= 9.2e18) return dflt;
        return jv_int((int64_t)v.u.f);
    case JV_STR: {
        char buf[64];
        jv t = strip(v, NULL, 3);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof buf) return dflt;
        size_t k = 0;
        for (size_t i = 0; i < t.u.s.n; i++)
            if (t.u.s.p[i] != '_') buf[k++] = t.u.s.p[i];
        buf[k] = '\0';
        char *stop;
        long long x = strtoll(buf, &stop, 10);
        if (*stop == '\0') return jv_int(x);
        double d = strtod(buf, &stop);
        if (*stop == '\0' && isfinite(d) && fabs(d) < 9.2e18) return jv_int((int64_t)d);
        return dflt;
    }
    default:
        return dflt;
    }
}

static jv to_float(jv v, jv dflt) {
    switch (v.k) {
    case JV_INT:
    case JV_BOOL:
    case JV_FLOAT:
        return jv_float(road__jv_as_double(v));
    case JV_STR: {
        char buf[64];
        jv t = strip(v, NULL, 3);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof buf) return dflt;
        memcpy(buf, t.u.s.p, t.u.s.n);
        buf[t.u.s.n] = '\0';
        char *stop;
        double d = strtod(buf, &stop);
        return *stop == '\0' ? jv_float(d) : dflt;
    }
    default:
        return dflt;
    }
}

static jv select_items(jj_render *r, uint32_t line, jv v, const jj_args *a, bool by_attr,
                       bool keep) {
    jj_ctx *c = road__jj_render_ctx(r);
    jv l = list_of(r, line, v, by_attr ? "selectattr" : "select"), out = road__jv_list(c, 0);
    size_t first = by_attr ? 1 : 0;
    if (by_attr && a->npos < 1) FAIL("selectattr / rejectattr need an attribute name");
    const jv *test = arg(a, first, NULL);
    if (test && test->k != JV_STR) FAIL("select / selectattr: the test must be named by a string");
    jj_args targs = {0};
    if (a->npos > first + 1) {
        targs.pos = a->pos + first + 1;
        targs.npos = a->npos - first - 1;
    }
    char name[64];
    if (test) snprintf(name, sizeof name, "%.*s", (int)test->u.s.n, test->u.s.p);
    for (size_t i = 0; i < l.u.l->n; i++) {
        jv item = l.u.l->v[i], x = by_attr ? attr_path(r, line, item, a->pos[0]) : item;
        bool t = test ? road__jj_test(r, line, name, x, &targs) : road__jv_truthy(x);
        if (t == keep) road__jv_list_push(c, out, item);
        road__jj_step(c, line, 1);
    }
    return out;
}

static jv html_escape(jj_ctx *c, jv s) {
    jj_buf b = {0};
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        const char *e = ch == '&'    ? "&amp;"
                        : ch == '<'  ? "&lt;"
                        : ch == '>'  ? "&gt;"
                        : ch == '"'  ? "&#34;"
                        : ch == '\'' ? "&#39;"
                                     : NULL;
        if (e)
            road__jj_put(c, &b, e, strlen(e));
        else
            road__jj_putc(c, &b, ch);
    }
    return jv_strref(b.p ? b.p : "", b.len);
}

static bool name_is(const char *name, const char *a, const char *b) {
    return !strcmp(name, a) || (b && !strcmp(name, b));
}

jv road__jj_filter(jj_render *r, uint32_t line, const char *name, jv v, const jj_args *a) {
    jj_ctx *c = road__jj_render_ctx(r);
    road__jj_step(c, line, 1);
    if (name_is(name, "default", "d")) {
        const jv *d = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        bool use = v.k == JV_UNDEF || (boolean && road__jv_truthy(*boolean) && !road__jv_truthy(v));
        return use ? (d ? *d : jv_strref("", 0)) : v;
    }
    if (name_is(name, "tojson", NULL)) return do_tojson(r, line, v, a);
    if (name_is(name, "safe", NULL)) return v;
    if (name_is(name, "string", NULL)) return road__jv_stringify(c, v);
    if (name_is(name, "length", "count")) return jv_int(length(r, line, v));
    if (name_is(name, "list", NULL)) {
        jv l = list_of(r, line, v, "list"), copy = road__jv_list(c, l.u.l->n);
        for (size_t i = 0; i < l.u.l->n; i++) road__jv_list_push(c, copy, l.u.l->v[i]);
        return copy;
    }
    if (name_is(name, "items", NULL)) {
        if (v.k == JV_UNDEF) return road__jv_list(c, 0);
        if (v.k != JV_DICT && v.k != JV_NS)
            FAIL("items: expected a mapping, got %s", road__jv_type_name(v));
        jv l = road__jv_list(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++) {
            jv pair = road__jv_list(c, 2);
            pair.u.l->tuple = true;
            road__jv_list_push(c, pair, v.u.d->k[i]);
            road__jv_list_push(c, pair, v.u.d->v[i]);
            road__jv_list_push(c, l, pair);
        }
        return l;
    }
    if (name_is(name, "first", "last")) {
        bool last = name[0] == 'l';
        if (v.k == JV_STR) {
            jv l = list_of(r, line, v, name);
            v = l;
        }
        jv l = list_of(r, line, v, name);
        if (l.u.l->n == 0) return jv_undef(NULL);
        return l.u.l->v[last ? l.u.l->n - 1 : 0];
    }
    if (name_is(name, "int", NULL)) {
        const jv *d = arg(a, 0, "default");
        return to_int(r, line, v, d ? *d : jv_int(0));
    }
    if (name_is(name, "float", NULL)) {
        const jv *d = arg(a, 0, "default");
        return to_float(v, d ? *d : jv_float(0.0));
    }
    if (name_is(name, "abs", NULL)) {
        if (v.k == JV_FLOAT) return jv_float(fabs(v.u.f));
        if (v.k == JV_INT || v.k == JV_BOOL) {
            int64_t x = v.k == JV_BOOL ? v.u.b : v.u.i;
            if (x == INT64_MIN) FAIL("integer overflow in abs");
            return jv_int(x < 0 ? -x : x);
        }
        FAIL("bad operand type for abs(): '%s'", road__jv_type_name(v));
    }
    if (name_is(name, "round", NULL)) {
        const jv *prec = arg(a, 0, "precision"), *method = arg(a, 1, "method");
        if (!road__jv_is_number(v)) FAIL("round: expected a number, got %s", road__jv_type_name(v));
        double x = road__jv_as_double(v),
               scale = pow(10.0, prec && prec->k == JV_INT ? (double)prec->u.i : 0.0);
        double y = x * scale;
        if (method && method->k == JV_STR && method->u.s.n == 4 &&
            !memcmp(method->u.s.p, "ceil", 4))
            y = ceil(y);
        else if (method && method->k == JV_STR && method->u.s.n == 5 &&
                 !memcmp(method->u.s.p, "floor", 5))
            y = floor(y);
        else if (method && !(method->k == JV_STR && method->u.s.n == 6 &&
                             !memcmp(method->u.s.p, "common", 6)))
            FAIL("round: method must be common, ceil or floor");
        else
            y = nearbyint(y); /* Python's round: half to even */
        return jv_float(y / scale);
    }
    if (name_is(name, "join", NULL)) {
        const jv *sep = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
        jv l = list_of(r, line, v, "join");
        jj_buf b = {0};
        for (size_t i = 0; i < l.u.l->n; i++) {
            if (i && sep) road__jv_to_str(c, &b, *sep);
            road__jv_to_str(c, &b, attr ? attr_path(r, line, l.u.l->v[i], *attr) : l.u.l->v[i]);
            road__jj_step(c, line, 1);
        }
        return jv_strref(b.p ? b.p : "", b.len);
    }
    if (name_is(name, "map", NULL)) {
        jv l = list_of(r, line, v, "map"), out = road__jv_list(c, l.u.l->n);
        const jv *attr = arg(a, 99, "attribute"), *dflt = arg(a, 99, "default");
        if (!attr && (a->npos < 1 || a->pos[0].k != JV_STR))
            FAIL("map needs attribute=NAME or a filter name");
        char fname[64];
        jj_args fa = {0};
        if (!attr) {
            snprintf(fname, sizeof fname, "%.*s", (int)a->pos[0].u.s.n, a->pos[0].u.s.p);
            fa.pos = a->pos + 1;
            fa.npos = a->npos - 1;
        }
        for (size_t i = 0; i < l.u.l->n; i++) {
            jv x;
            if (attr) {
                x = attr_path(r, line, l.u.l->v[i], *attr);
                if (x.k == JV_UNDEF && dflt) x = *dflt;
            } else {
                x = road__jj_filter(r, line, fname, l.u.l->v[i], &fa);
            }
            road__jv_list_push(c, out, x);
        }
        return out;
    }
    if (name_is(name, "selectattr", NULL)) return select_items(r, line, v, a, true, true);
    if (name_is(name, "rejectattr", NULL)) return select_items(r, line, v, a, true, false);
    if (name_is(name, "select", NULL)) return select_items(r, line, v, a, false, true);
    if (name_is(name, "reject", NULL)) return select_items(r, line, v, a, false, false);
    if (name_is(name, "unique", NULL)) {
        const jv *cs = arg(a, 0, "case_sensitive"), *attr = arg(a, 1, "attribute");
        jv l = list_of(r, line, v, "unique"), out = road__jv_list(c, 0), seen = road__jv_list(c, 0);
        for (size_t i = 0; i < l.u.l->n; i++) {
            jv k = attr ? attr_path(r, line, l.u.l->v[i], *attr) : l.u.l->v[i];
            if (!(cs && road__jv_truthy(*cs))) k = lowered(c, k);
            bool dup = false;
            road__jj_step(c, line, (int64_t)seen.u.l->n);
            for (size_t j = 0; j < seen.u.l->n && !dup; j++) dup = road__jv_eq(seen.u.l->v[j], k);
            if (!dup) {
                road__jv_list_push(c, seen, k);
                road__jv_list_push(c, out, l.u.l->v[i]);
            }
        }
        return out;
    }
    if (name_is(name, "reverse", NULL)) {
        jv l = list_of(r, line, v, "reverse"), out = road__jv_list(c, l.u.l->n);
        for (size_t i = l.u.l->n; i-- > 0;) road__jv_list_push(c, out, l.u.l->v[i]);
        if (v.k != JV_STR) return out;
        jj_buf b = {0};
        for (size_t i = 0; i < out.u.l->n; i++) road__jv_to_str(c, &b, out.u.l->v[i]);
        return jv_strref(b.p ? b.p : "", b.len);
    }
    if (name_is(name, "sort", "dictsort")) {
        bool dictsort = name[0] == 'd';
        const jv *rev = arg(a, dictsort ? 2 : 0, "reverse"),
                 *cs = arg(a, dictsort ? 0 : 1, "case_sensitive"),
                 *attr = dictsort ? NULL : arg(a, 2, "attribute"),
                 *by = dictsort ? arg(a, 1, "by") : NULL;
        jv l;
        if (dictsort) {
            jj_args none = {0};
            l = road__jj_filter(r, line, "items", v, &none);
        } else {
            jv src = list_of(r, line, v, "sort");
            l = road__jv_list(c, src.u.l->n);
            for (size_t i = 0; i < src.u.l->n; i++) road__jv_list_push(c, l, src.u.l->v[i]);
        }
        size_t n = l.u.l->n;
        jv *keys = road__jj_alloc(c, (n ? n : 1) * sizeof(jv));
        bool by_value = by && by->k == JV_STR && by->u.s.n == 5 && !memcmp(by->u.s.p, "value", 5);
        for (size_t i = 0; i < n; i++) {
            jv k = dictsort ? l.u.l->v[i].u.l->v[by_value ? 1 : 0]
                   : attr   ? attr_path(r, line, l.u.l->v[i], *attr)
                            : l.u.l->v[i];
            keys[i] = cs && road__jv_truthy(*cs) ? k : lowered(c, k);
        }
        sort_items(r, line, l.u.l->v, keys, n, rev && road__jv_truthy(*rev));
        return l;
    }
    if (name_is(name, "escape", "e")) return html_escape(c, road__jv_stringify(c, v));
    /* the rest take a string (jinja2 converts with str()) */
    jv s = road__jv_stringify(c, v);
    if (name_is(name, "trim", NULL)) return strip(s, arg(a, 0, "chars"), 3);
    if (name_is(name, "upper", NULL)) return str_copy_map(c, s, up);
    if (name_is(name, "lower", NULL)) return str_copy_map(c, s, low);
    if (name_is(name, "title", NULL)) return jinja_title(c, s);
    if (name_is(name, "capitalize", NULL)) return capitalize(c, s);
    if (name_is(name, "replace", NULL)) {
        const jv *cnt = arg(a, 2, "count");
        jv old = road__jv_stringify(c, a->npos > 0 ? a->pos[0] : jv_strref("", 0));
        jv new = road__jv_stringify(c, a->npos > 1 ? a->pos[1] : jv_strref("", 0));
        if (a->npos < 2) FAIL("replace needs two arguments");
        return replace(r, line, s, old, new, cnt && cnt->k == JV_INT ? cnt->u.i : -1);
    }
    if (name_is(name, "indent", NULL)) {
        const jv *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
        jv ind;
        if (w && w->k == JV_STR) {
            ind = *w;
        } else {
            int64_t n = w && (w->k == JV_INT) ? w->u.i : 4;
            if (n < 0) n = 0;
            if (n > 1024) FAIL("indent: width %lld is too large", (long long)n);
            char *p = road__jj_alloc(c, (size_t)n + 1);
            memset(p, ' ', (size_t)n);
            ind = jv_strref(p, (size_t)n);
        }
        jj_buf b = {0};
        b.max = ROAD_JINJA_MAX_OUTPUT;
        if (first && road__jv_truthy(*first)) road__jj_put(c, &b, ind.u.s.p, ind.u.s.n);
        /* lines of s + "\n" (splitlines), joined by "\n" + indent (blank lines only if blank) */
        size_t i = 0;
        bool line0 = true;
        while (i < s.u.s.n) {
            size_t j = i;
            while (j < s.u.s.n && s.u.s.p[j] != '\n' && s.u.s.p[j] != '\r') j++;
            if (!line0) {
                road__jj_putc(c, &b, '\n');
                if (j > i || (blank && road__jv_truthy(*blank)))
                    road__jj_put(c, &b, ind.u.s.p, ind.u.s.n);
            }
            road__jj_put(c, &b, s.u.s.p + i, j - i);
            line0 = false;
            if (j < s.u.s.n && s.u.s.p[j] == '\r' && j + 1 < s.u.s.n && s.u.s.p[j + 1] == '\n') j++;
            i = j + 1;
            road__jj_step(c, line, 1);
        }
        return jv_strref(b.p ? b.p : "", b.len);
    }
    road__jj_fail(c, ROAD_ERR_UNSUPPORTED, line, "filter '%s' is not supported", name);
}

bool road__jj_test(jj_render *r, uint32_t line, const char *name, jv v, const jj_args *a) {
    jj_ctx *c = road__jj_render_ctx(r);
    const jv *x = arg(a, 0, NULL);
    road__jj_step(c, line, 1);
    if (name_is(name, "defined", NULL)) return v.k != JV_UNDEF;
    if (name_is(name, "undefined", NULL)) return v.k == JV_UNDEF;
    if (name_is(name, "none", NULL)) return v.k == JV_NONE;
    if (name_is(name, "string", NULL)) return v.k == JV_STR;
    if (name_is(name, "number", NULL)) return road__jv_is_number(v);
    if (name_is(name, "integer", NULL)) return v.k == JV_INT;
    if (name_is(name, "float", NULL)) return v.k == JV_FLOAT;
    if (name_is(name, "boolean", NULL)) return v.k == JV_BOOL;
    if (name_is(name, "true", NULL)) return v.k == JV_BOOL && v.u.b;
    if (name_is(name, "false", NULL)) return v.k == JV_BOOL && !v.u.b;
    if (name_is(name, "mapping", NULL)) return v.k == JV_DICT;
    if (name_is(name, "iterable", NULL))
        return v.k == JV_STR || v.k == JV_LIST || v.k == JV_DICT || v.k == JV_UNDEF;
    if (name_is(name, "sequence", NULL))
        return v.k == JV_STR || v.k == JV_LIST || v.k == JV_DICT || v.k == JV_UNDEF;
    if (name_is(name, "callable", NULL)) return v.k == JV_MACRO || v.k == JV_FUNC;
    if (name_is(name, "escaped", NULL)) return false;
    if (name_is(name, "lower", "upper")) {
        if (v.k != JV_STR) FAIL("test '%s' needs a string", name);
        bool any = false;
        for (size_t i = 0; i < v.u.s.n; i++) {
            char ch = v.u.s.p[i];
            if (is_alpha(ch)) {
                any = true;
                if ((name[0] == 'l') != (ch >= 'a' && ch <= 'z')) return false;
            }
        }
        return any;
    }
    if (name_is(name, "odd", "even") || name_is(name, "divisibleby", NULL)) {
        if (v.k != JV_INT && v.k != JV_BOOL) FAIL("test '%s' needs an integer", name);
        int64_t n = v.k == JV_BOOL ? v.u.b : v.u.i;
        if (name[0] == 'o') return n % 2 != 0;
        if (name[0] == 'e') return n % 2 == 0;
        if (!x || x->k != JV_INT || x->u.i == 0) FAIL("divisibleby needs a non-zero integer");
        return x->u.i == -1 || n % x->u.i == 0;
    }
    if (!x) FAIL("test '%s' needs an argument (or is not supported)", name);
    if (name_is(name, "eq", "equalto") || !strcmp(name, "==")) return road__jv_eq(v, *x);
    if (name_is(name, "ne", "!=")) return !road__jv_eq(v, *x);
    if (name_is(name, "sameas", NULL)) return road__jv_eq(v, *x) && v.k == x->k;
    if (name_is(name, "in", NULL)) {
        if (x->k == JV_STR) {
            if (v.k != JV_STR) FAIL("'in <string>' requires string as left operand");
            for (size_t i = 0; i + v.u.s.n <= x->u.s.n; i++)
                if (memcmp(x->u.s.p + i, v.u.s.p, v.u.s.n) == 0) return true;
            return false;
        }
        if (x->k == JV_LIST) {
            for (size_t i = 0; i < x->u.l->n; i++)
                if (road__jv_eq(x->u.l->v[i], v)) return true;
            return false;
        }
        if (x->k == JV_DICT) return road__jv_dict_getv(*x, v) != NULL;
        FAIL("test 'in': argument of type '%s' is not iterable", road__jv_type_name(*x));
    }
    int cmp;
    if (name_is(name, "lt", "lessthan") || !strcmp(name, "<"))
        return (cmp = road__jv_cmp(c, line, v, *x)) < 0;
    if (name_is(name, "le", "<=")) return road__jv_cmp(c, line, v, *x) <= 0;
    if (name_is(name, "gt", "greaterthan") || !strcmp(name, ">"))
        return road__jv_cmp(c, line, v, *x) > 0;
    if (name_is(name, "ge", ">=")) return road__jv_cmp(c, line, v, *x) >= 0;
    road__jj_fail(c, ROAD_ERR_UNSUPPORTED, line, "test '%s' is not supported", name);
}

/* ---- methods ---- */
static const char *const STR_METHODS[] = {
    "strip",      "lstrip",  "rstrip",  "split",      "startswith", "endswith", "upper",
    "lower",      "replace", "title",   "capitalize", "find",       "count",    "join",
    "splitlines", "isdigit", "isspace", "isalpha",    NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", NULL};
static const char *const LIST_METHODS[] = {"index", "count", NULL};
static const char *const UNSAFE[] = {"append", "extend",     "insert",  "pop",  "remove",  "clear",
                                     "update", "setdefault", "popitem", "sort", "reverse", NULL};

/* The table's own copy of name (static storage), or NULL. */
static const char *listed(const char *const *names, const char *name) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], name)) return names[i];
    return NULL;
}

jv road__jj_method(jj_render *r, jv obj, const char *name) {
    static const char *const CYCLE[] = {"cycle", NULL};
    const char *known = obj.k == JV_STR    ? listed(STR_METHODS, name)
                        : obj.k == JV_DICT ? listed(DICT_METHODS, name)
                        : obj.k == JV_LIST ? listed(LIST_METHODS, name)
                        : obj.k == JV_LOOP ? listed(CYCLE, name)
                                           : NULL;
    if (!known && (obj.k == JV_LIST || obj.k == JV_DICT)) known = listed(UNSAFE, name);
    if (!known) return jv_undef(NULL);
    name = known; /* the caller's buffer does not live as long as the value */
    jv v = {.k = JV_FUNC};
    v.u.fn = road__jj_alloc(road__jj_render_ctx(r), sizeof(jj_func));
    v.u.fn->name = name;
    v.u.fn->self = obj;
    return v;
}

static int64_t find(jv s, jv sub) {
    for (size_t i = 0; i + sub.u.s.n <= s.u.s.n; i++)
        if (memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0)
            return (int64_t)road__jv_utf8_len(s.u.s.p, i);
    return -1;
}

static jv str_method(jj_render *r, uint32_t line, const char *name, jv s, const jj_args *a) {
    jj_ctx *c = road__jj_render_ctx(r);
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        const jv *chars = arg(a, 0, NULL);
        if (chars && chars->k != JV_STR && chars->k != JV_NONE)
            FAIL("%s arg must be None or str", name);
        return strip(s, chars, name[0] == 's' ? 3 : name[0] == 'l' ? 1 : 2);
    }
    if (!strcmp(name, "split")) {
        const jv *ms = arg(a, 1, "maxsplit");
        return split(r, line, s, arg(a, 0, "sep"), ms && ms->k == JV_INT ? ms->u.i : -1);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        const jv *p = arg(a, 0, NULL);
        bool suffix = name[0] == 'e';
        if (p && p->k == JV_LIST) {
            for (size_t i = 0; i < p->u.l->n; i++)
                if (has_prefix(s, str_arg(r, line, name, &p->u.l->v[i]), suffix))
                    return jv_bool(true);
            return jv_bool(false);
        }
        return jv_bool(has_prefix(s, str_arg(r, line, name, p), suffix));
    }
    if (!strcmp(name, "upper")) return str_copy_map(c, s, up);
    if (!strcmp(name, "lower")) return str_copy_map(c, s, low);
    if (!strcmp(name, "title")) return py_title(c, s);
    if (!strcmp(name, "capitalize")) return capitalize(c, s);
    if (!strcmp(name, "replace")) {
        const jv *cnt = arg(a, 2, "count");
        return replace(r, line, s, str_arg(r, line, name, arg(a, 0, NULL)),
                       str_arg(r, line, name, arg(a, 1, NULL)),
                       cnt && cnt->k == JV_INT ? cnt->u.i : -1);
    }
    if (!strcmp(name, "find")) return jv_int(find(s, str_arg(r, line, name, arg(a, 0, NULL))));
    if (!strcmp(name, "count")) {
        jv sub = str_arg(r, line, name, arg(a, 0, NULL));
        if (sub.u.s.n == 0) return jv_int((int64_t)road__jv_utf8_len(s.u.s.p, s.u.s.n) + 1);
        int64_t n = 0;
        for (size_t i = 0; i + sub.u.s.n <= s.u.s.n;)
            if (memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n) == 0)
                n++, i += sub.u.s.n;
            else
                i++;
        return jv_int(n);
    }
    if (!strcmp(name, "join")) {
        const jv *it = arg(a, 0, NULL);
        jv l = list_of(r, line, it ? *it : jv_undef(NULL), "join");
        jj_buf b = {0};
        for (size_t i = 0; i < l.u.l->n; i++) {
            if (i) road__jj_put(c, &b, s.u.s.p, s.u.s.n);
            road__jj_put(c, &b, str_arg(r, line, "join", &l.u.l->v[i]).u.s.p, l.u.l->v[i].u.s.n);
        }
        return jv_strref(b.p ? b.p : "", b.len);
    }
    if (!strcmp(name, "splitlines")) {
        jv l = road__jv_list(c, 0);
        for (size_t i = 0; i < s.u.s.n;) {
            size_t j = i;
            while (j < s.u.s.n && s.u.s.p[j] != '\n' && s.u.s.p[j] != '\r') j++;
            road__jv_list_push(c, l, jv_strref(s.u.s.p + i, j - i));
            if (j < s.u.s.n && s.u.s.p[j] == '\r' && j + 1 < s.u.s.n && s.u.s.p[j + 1] == '\n') j++;
            i = j + 1;
        }
        return l;
    }
    bool all = s.u.s.n > 0;
    if (!strcmp(name, "isspace")) {
        for (size_t i = 0, k; all && i < s.u.s.n; i += k)
            all = (k = road__tok_py_space(s.u.s.p + i, s.u.s.n - i)) > 0;
        return jv_bool(all);
    }
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        if (!strcmp(name, "isdigit"))
            all = all && ch >= '0' && ch <= '9';
        else if (!strcmp(name, "isspace"))
            all = all && is_space((unsigned char)ch);
        else
            all = all && is_alpha(ch);
    }
    return jv_bool(all);
}

static jv range(jj_render *r, uint32_t line, const jj_args *a) {
    jj_ctx *c = road__jj_render_ctx(r);
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3 || a->nkw) FAIL("range takes 1 to 3 integers");
    for (size_t i = 0; i < a->npos; i++) {
        if (a->pos[i].k != JV_INT && a->pos[i].k != JV_BOOL)
            FAIL("range: '%s' object cannot be interpreted as an integer",
                 road__jv_type_name(a->pos[i]));
    }
    if (a->npos == 1)
        v[1] = a->pos[0].k == JV_BOOL ? a->pos[0].u.b : a->pos[0].u.i;
    else
        for (size_t i = 0; i < a->npos; i++)
            v[i] = a->pos[i].k == JV_BOOL ? a->pos[i].u.b : a->pos[i].u.i;
    if (v[2] == 0) FAIL("range() arg 3 must not be zero");
    double count = v[2] > 0 ? ((double)v[1] - (double)v[0]) / (double)v[2]
                            : ((double)v[0] - (double)v[1]) / (double)-v[2];
    if (count > 0) road__jj_step(c, line, (int64_t)fmin(ceil(count), 9e18));
    jv l = road__jv_list(c, count > 0 ? (size_t)ceil(count) : 0);
    for (int64_t x = v[0]; v[2] > 0 ? x < v[1] : x > v[1];) {
        road__jv_list_push(c, l, jv_int(x));
        if (__builtin_add_overflow(x, v[2], &x)) break;
    }
    return l;
}

jv road__jj_call_func(jj_render *r, uint32_t line, const jj_func *f, const jj_args *a) {
    jj_ctx *c = road__jj_render_ctx(r);
    const char *name = f->name;
    jv self = f->self;
    road__jj_step(c, line, 1);
    if (self.k == JV_STR) return str_method(r, line, name, self, a);
    if (self.k == JV_LIST || self.k == JV_DICT) {
        if (listed(UNSAFE, name))
            FAIL("access to attribute '%s' of '%s' object is unsafe (templates cannot change their "
                 "inputs)",
                 name, road__jv_type_name(self));
    }
    if (self.k == JV_DICT) {
        if (!strcmp(name, "get")) {
            const jv *k = arg(a, 0, NULL), *d = arg(a, 1, NULL);
            if (!k) FAIL("get expected at least 1 argument");
            jv *v = road__jv_dict_getv(self, *k);
            return v ? *v : d ? *d : jv_none();
        }
        jj_args none = {0};
        if (!strcmp(name, "items")) return road__jj_filter(r, line, "items", self, &none);
        jv l = road__jv_list(c, self.u.d->n);
        for (size_t i = 0; i < self.u.d->n; i++)
            road__jv_list_push(c, l, name[0] == 'k' ? self.u.d->k[i] : self.u.d->v[i]);
        return l;
    }
    if (self.k == JV_LIST) {
        const jv *x = arg(a, 0, NULL);
        if (!x) FAIL("list.%s needs an argument", name);
        int64_t n = 0;
        for (size_t i = 0; i < self.u.l->n; i++) {
            if (road__jv_eq(self.u.l->v[i], *x)) {
                if (name[0] == 'i') return jv_int((int64_t)i);
                n++;
            }
        }
        if (name[0] == 'i') FAIL("list.index(x): x not in list");
        return jv_int(n);
    }
    if (self.k == JV_LOOP) { /* loop.cycle(a, b, ...) */
        if (a->npos == 0) FAIL("no items for cycling given");
        jv index = road__jj_getattr(r, line, self, "index0", 6);
        return a->pos[index.u.i % (int64_t)a->npos];
    }
    if (!strcmp(name, "range")) return range(r, line, a);
    if (!strcmp(name, "namespace") || !strcmp(name, "dict")) {
        jv d = road__jv_dict(c, a->nkw);
        if (a->npos > 1) FAIL("%s takes at most one positional argument", name);
        if (a->npos == 1) {
            if (a->pos[0].k != JV_DICT && a->pos[0].k != JV_NS)
                FAIL("%s: expected a mapping", name);
            for (size_t i = 0; i < a->pos[0].u.d->n; i++)
                road__jv_dict_set(c, d, a->pos[0].u.d->k[i], a->pos[0].u.d->v[i]);
        }
        for (size_t i = 0; i < a->nkw; i++)
            road__jv_dict_set(c, d, jv_strref(a->kwnames[i], strlen(a->kwnames[i])), a->kw[i]);
        if (name[0] == 'n') d.k = JV_NS;
        return d;
    }
    if (!strcmp(name, "raise_exception")) {
        jv msg = road__jv_stringify(c, a->npos ? a->pos[0] : jv_strref("", 0));
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "raise_exception: %.*s",
                      (int)(msg.u.s.n > 400 ? 400 : msg.u.s.n), msg.u.s.p);
    }
    if (!strcmp(name, "strftime_now")) {
        jv fmt = str_arg(r, line, "strftime_now", arg(a, 0, "format"));
        time_t t = (time_t)road__jj_render_now(r);
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL) FAIL("strftime_now: the time is out of range");
        char spec[256], out[512];
        snprintf(spec, sizeof spec, "%.*s", (int)(fmt.u.s.n > 200 ? 200 : fmt.u.s.n), fmt.u.s.p);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        size_t n =
            strftime(out, sizeof out, spec, &tm); /* the template's format, as Python passes it */
#pragma GCC diagnostic pop
        return road__jv_str(c, out, n);
    }
    FAIL("'%s' is not callable", name);
}
