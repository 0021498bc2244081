/*
 * io/json.c - a strict JSON parser into cJSON trees and a printer that writes what Python's
 * json.dumps(obj, indent=2, sort_keys=True) writes (see json.h for the contract).
 *
 * Why not cJSON_Parse / cJSON_Print: cJSON accepts text Python refuses ("01", "1.", control
 * characters and trailing garbage), forgets whether a number was written as an int or a
 * float, and prints with tabs, unsorted keys and raw UTF-8. A rewritten adapter_config.json
 * must be byte-identical to PEFT's, so both directions follow Python's rules here.
 *
 * Numbers never go through the C library in a locale-dependent way: the printer reads only
 * the digits and the exponent of printf's "%e" output, and strtod is only ever given text of
 * the form "DIGITSe[-]EXP" (no decimal point), so LC_NUMERIC cannot change the results.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"

/* Python writes the int/float distinction; below this magnitude every integral double is an
 * exact integer, so a number built in C and integral within it prints as an int. */
#define EXACT_INT_LIMIT 9007199254740992.0 /* 2^53 */
/* 17 significant digits identify every double, so the shortest repr never needs more. */
#define DOUBLE_MAX_DIGITS 17
/* Bytes a number's rewritten text ("[-]DIGITSe-EXP", see number_value) may need beyond the
 * token's own length: "e", a sign, 19 exponent digits and the NUL. */
#define NUMBER_SCRATCH_EXTRA 24
/* Python (3.11 on) refuses to read integers with more digits than this (its default
 * sys.get_int_max_str_digits()); road refuses them too, which also bounds the work per number. */
#define PYTHON_INT_MAX_DIGITS 4300
/* Exponents are saturated while reading: any |exponent| past this gives 0 or infinity anyway,
 * and saturating keeps the arithmetic in range for texts of any length. */
#define EXPONENT_SATURATE 1000000000LL

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Decode one UTF-8 sequence at s (n bytes available). Returns its length and sets *cp, or 0 if
 * it is malformed (overlong, surrogate, past U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

bool road__json_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t k = utf8_decode(p + i, len - i, &cp);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

/* ---- number text -------------------------------------------------------------------------- */

static bool is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

/* Length of the JSON number -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)? at s, or 0 with
 * *why and *bad (the offending offset) set when the text there is not one. */
static size_t scan_number(const unsigned char *s, size_t n, const char **why, size_t *bad) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) {
        *why = "expected a digit after '-'", *bad = i;
        return 0;
    }
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || !is_digit(s[i])) {
            *why = "expected a digit after the decimal point", *bad = i;
            return 0;
        }
        while (i < n && is_digit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !is_digit(s[i])) {
            *why = "expected a digit in the exponent", *bad = i;
            return 0;
        }
        while (i < n && is_digit(s[i])) i++;
    }
    return i;
}

static bool is_int_text(const char *t) {
    return strpbrk(t, ".eE") == NULL;
}

/* The double a JSON number token denotes, correctly rounded. The token is rewritten as
 * "[-]DIGITSeEXP" (no decimal point, so no locale dependence) into scratch, which must hold
 * n + NUMBER_SCRATCH_EXTRA bytes. */
static double number_value(const unsigned char *s, size_t n, char *scratch) {
    size_t i = 0, k = 0;
    long long frac_digits = 0, exp = 0;
    if (s[0] == '-') scratch[k++] = '-', i++;
    for (; i < n && is_digit(s[i]); i++) scratch[k++] = (char)s[i];
    if (i < n && s[i] == '.') {
        for (i++; i < n && is_digit(s[i]); i++) scratch[k++] = (char)s[i], frac_digits++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int neg = 0;
        if (s[i] == '+' || s[i] == '-') neg = s[i++] == '-';
        for (; i < n && is_digit(s[i]); i++) {
            if (exp < EXPONENT_SATURATE) exp = exp * 10 + (s[i] - '0');
        }
        if (neg) exp = -exp;
    }
    snprintf(scratch + k, NUMBER_SCRATCH_EXTRA, "e%lld", exp - frac_digits);
    return strtod(scratch, NULL);
}

const char *road__json_number_text(const cJSON *v) {
    const char *t = v->valuestring;
    if (!t) return NULL;
    size_t n = strlen(t);
    const char *why;
    size_t bad;
    if (n == 0 || scan_number((const unsigned char *)t, n, &why, &bad) != n) return NULL;
    char small[64];
    char *scratch =
        n + NUMBER_SCRATCH_EXTRA <= sizeof small ? small : road__malloc(n + NUMBER_SCRATCH_EXTRA);
    if (!scratch) return NULL;
    double d = number_value((const unsigned char *)t, n, scratch);
    if (scratch != small) road__free(scratch);
    return d == v->valuedouble ? t : NULL;
}

/* ---- Python float repr ---------------------------------------------------------------------- */

/* The double nearest to the decimal m * 10^e10. */
static double decimal_value(uint64_t m, int e10) {
    char t[48];
    snprintf(t, sizeof t, "%llue%d", (unsigned long long)m, e10);
    return strtod(t, NULL);
}

/* Shortest decimal digits of a > 0 (finite) that read back as a, the closest to a among the
 * shortest, as Python's repr (David Gay's mode 0). *decpt: a = 0.DIGITS * 10^decpt.
 * printf rounds exactly, so "%.{p-1}e" gives the p-digit decimal nearest to a. When that one
 * fails to read back but lies below a, its upper neighbour may still succeed: the rounding
 * interval of a power of two is twice as wide above as below. */
static int shortest_digits(double a, char *digits, int *decpt) {
    for (int p = 1; p <= DOUBLE_MAX_DIGITS; p++) {
        char t[48];
        snprintf(t, sizeof t, "%.*e", p - 1, a);
        uint64_t m = 0;
        const char *s = t;
        for (; *s && *s != 'e'; s++) {
            if (is_digit((unsigned char)*s)) m = m * 10 + (uint64_t)(*s - '0');
        }
        int e10 = *s ? atoi(s + 1) : 0; /* exponent of the first digit */
        int scale = e10 - (p - 1);
        double back = decimal_value(m, scale);
        bool ok = back == a;
        if (!ok && back < a) {
            uint64_t pow = 1;
            for (int i = 0; i < p; i++) pow *= 10;
            m++;
            if (m == pow) m /= 10, e10++, scale++;
            ok = decimal_value(m, scale) == a;
        }
        if (ok || p == DOUBLE_MAX_DIGITS) {
            int n = snprintf(digits, DOUBLE_MAX_DIGITS + 8, "%llu", (unsigned long long)m);
            while (n > 1 && digits[n - 1] == '0') digits[--n] = '\0';
            *decpt = e10 + 1;
            return n;
        }
    }
    return 0; /* not reached: DOUBLE_MAX_DIGITS digits always read back */
}

void road__json_format_double(double v, char *buf, size_t cap) {
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, v < 0 ? "-Infinity" : "Infinity");
        return;
    }
    const char *sign = signbit(v) ? "-" : "";
    if (v == 0) {
        snprintf(buf, cap, "%s0.0", sign);
        return;
    }
    char d[DOUBLE_MAX_DIGITS + 8];
    int decpt = 0;
    int n = shortest_digits(fabs(v), d, &decpt);
    /* Python's repr switches to exponent form outside 1e-4 <= |v| < 1e16. */
    if (decpt <= -4 || decpt > 16) {
        int e = decpt - 1;
        snprintf(buf, cap, "%s%c%s%se%c%02d", sign, d[0], n > 1 ? "." : "", d + 1,
                 e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (decpt <= 0) {
        snprintf(buf, cap, "%s0.%.*s%s", sign, -decpt, "0000", d);
    } else if (decpt >= n) {
        snprintf(buf, cap, "%s%s%.*s.0", sign, d, decpt - n, "0000000000000000");
    } else {
        snprintf(buf, cap, "%s%.*s.%s", sign, decpt, d, d + decpt);
    }
}

/* ---- parser ------------------------------------------------------------------------------- */

/* One step of the path from the top to the value being read: a member's key or an item's
 * index. Frames live on the parser's own (recursive) stack; only a refusal renders them. */
typedef struct path_frame {
    const struct path_frame *up;
    const char *key; /* NULL: an array item */
    size_t index;
} path_frame;

typedef struct parser {
    const unsigned char *start, *p, *end;
    /* Decoded strings and rewritten numbers are written at their own offset in here (len +
     * NUMBER_SCRATCH_EXTRA bytes): decoding never makes text longer, so a key stays intact while
     * its value, later in the text, is decoded. One allocation per parse. */
    char *scratch;
    road_status status;
    const path_frame *path; /* the innermost member or item being read; NULL at the top */
    road_json_where *where; /* filled on a refusal when not NULL */
} parser;

static bool is_ident_char(char c, bool first) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && is_digit((unsigned char)c));
}

/* A key written .key in a path (else ["key"]). */
static bool is_identifier(const char *k) {
    if (!is_ident_char(*k, true)) return false;
    for (; *k; k++)
        if (!is_ident_char(*k, false)) return false;
    return true;
}

/* The path to f into buf: "messages[1].content", a key that is not an identifier as ["a b"].
 * Past the buffer, "..." ends it. Iterative (frames are at most ROAD_JSON_MAX_DEPTH + 1 deep):
 * a refusal deep in a document must not cost a deep stack. */
static void path_render(const path_frame *f, char *buf, size_t cap) {
    const path_frame *chain[ROAD_JSON_MAX_DEPTH + 2];
    size_t depth = 0;
    for (; f && depth < sizeof chain / sizeof *chain; f = f->up) chain[depth++] = f;
    size_t k = 0;
    buf[0] = '\0';
    while (depth > 0) {
        f = chain[--depth];
        char part[ROAD_JSON_PATH_MAX + 8];
        if (!f->key) {
            snprintf(part, sizeof part, "[%zu]", f->index);
        } else if (is_identifier(f->key)) {
            snprintf(part, sizeof part, "%s%.*s", k ? "." : "", ROAD_JSON_PATH_MAX, f->key);
        } else {
            char q[ROAD_JSON_PATH_MAX];
            road__json_quote(f->key, q, sizeof q);
            snprintf(part, sizeof part, "[%s]", q);
        }
        size_t n = strlen(part);
        if (k + n + 4 > cap) { /* room for "..." and the NUL */
            snprintf(buf + k, cap - k, "...");
            return;
        }
        memcpy(buf + k, part, n + 1);
        k += n;
    }
}

static road_status parse_fail(parser *ps, const unsigned char *at, const char *what) {
    if (ps->status != ROAD_OK) return ps->status;
    size_t line = 1, col = 1;
    for (const unsigned char *q = ps->start; q < at; q++) {
        if (*q == '\n') {
            line++, col = 1;
        } else if ((*q & 0xC0) != 0x80) {
            col++;
        }
    }
    if (ps->where) {
        road_json_where *w = ps->where;
        w->line = line, w->column = col, w->offset = (size_t)(at - ps->start);
        path_render(ps->path, w->path, sizeof w->path);
        snprintf(w->what, sizeof w->what, "%s", what);
    }
    ps->status =
        road__error(ROAD_ERR_FORMAT, "invalid JSON at line %zu, column %zu: %s", line, col, what);
    return ps->status;
}

/* A refusal of text that is valid JSON (road's own limits). */
static road_status parse_refuse(parser *ps, const unsigned char *at, const char *what) {
    bool first = ps->status == ROAD_OK;
    parse_fail(ps, at, what);
    if (first && ps->where) ps->where->valid_json = true;
    return ps->status;
}

/* A refusal about a string's content: "<what> the string at messages[1].content<why>" (or "in
 * a key of the object at ..."), so the message names the field whatever the input was. */
static void string_fail(parser *ps, const unsigned char *at, bool is_key, const char *what,
                        const char *why, bool valid_json) {
    char path[ROAD_JSON_PATH_MAX], msg[ROAD_JSON_WHAT_MAX];
    path_render(ps->path, path, sizeof path);
    if (is_key)
        snprintf(msg, sizeof msg, "%s a key of the object%s%s%s", what, path[0] ? " at " : "", path,
                 why);
    else
        snprintf(msg, sizeof msg, "%s the string%s%s%s", what, path[0] ? " at " : "", path, why);
    if (valid_json)
        parse_refuse(ps, at, msg);
    else
        parse_fail(ps, at, msg);
}

static road_status parse_oom(parser *ps) {
    if (ps->status == ROAD_OK) {
        ps->status = road__error(ROAD_ERR_NO_MEMORY, "out of memory while parsing JSON");
    }
    return ps->status;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return false;
    ps->p += n;
    return true;
}

static int hex4(const unsigned char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Decode the string at ps->p (its opening quote) into scratch; returns it NUL-terminated.
 * is_key: the string is an object's key (only the wording of a refusal differs). */
static const char *parse_string(parser *ps, bool is_key) {
    const unsigned char *q = ps->p + 1;
    unsigned char *out = (unsigned char *)ps->scratch + (ps->p - ps->start);
    unsigned char *o = out;
    for (;;) {
        if (q >= ps->end) {
            parse_fail(ps, ps->p, "unterminated string");
            return NULL;
        }
        unsigned char c = *q;
        if (c == '"') break;
        if (c < 0x20) {
            string_fail(ps, q, is_key, c == 0 ? "a raw NUL byte in" : "control character in",
                        c == 0 ? " (road refuses NUL in strings rather than cut them short "
                                 "there: remove it)"
                               : " (write it as an escape such as \\n or \\u0001)",
                        false);
            return NULL;
        }
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = utf8_decode(q, (size_t)(ps->end - q), &cp);
            if (k == 0) {
                string_fail(ps, q, is_key, "invalid UTF-8 in", " (the text must be UTF-8)", false);
                return NULL;
            }
            memcpy(o, q, k);
            o += k, q += k;
            continue;
        }
        if (c != '\\') {
            *o++ = c, q++;
            continue;
        }
        if (q + 1 >= ps->end) {
            parse_fail(ps, ps->p, "unterminated string");
            return NULL;
        }
        unsigned char e = q[1];
        static const char escapes[] = "\"\\/bfnrt";
        static const char decoded[] = "\"\\/\b\f\n\r\t";
        const char *simple = e != '\0' ? strchr(escapes, e) : NULL;
        if (simple) {
            *o++ = (unsigned char)decoded[simple - escapes];
            q += 2;
            continue;
        }
        if (e != 'u') {
            string_fail(ps, q, is_key, "invalid escape in",
                        " (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)", false);
            return NULL;
        }
        int cp = ps->end - q >= 6 ? hex4(q + 2) : -1;
        if (cp < 0) {
            parse_fail(ps, q, "\\u must be followed by 4 hex digits");
            return NULL;
        }
        q += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = ps->end - q >= 6 && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
                string_fail(ps, q - 6, is_key, "unpaired UTF-16 surrogate escape in",
                            " (it has no UTF-8 form)", true);
                return NULL;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            q += 6;
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            string_fail(ps, q - 6, is_key, "unpaired UTF-16 surrogate escape in",
                        " (it has no UTF-8 form)", true);
            return NULL;
        } else if (cp == 0) {
            /* cJSON strings end at the first NUL: keeping one would cut the string short there
             * without a word, so it is refused, naming where it is. */
            char what[ROAD_JSON_WHAT_MAX], path[ROAD_JSON_PATH_MAX];
            path_render(ps->path, path, sizeof path);
            if (is_key)
                snprintf(what, sizeof what, "a key of the object%s%s holds \\u0000 (NUL)",
                         path[0] ? " at " : "", path);
            else
                snprintf(what, sizeof what, "the string%s%s holds \\u0000 (NUL)",
                         path[0] ? " at " : "", path);
            size_t n = strlen(what);
            snprintf(what + n, sizeof what - n,
                     "; road refuses NUL in strings rather than cut them short there: remove it");
            parse_refuse(ps, q - 6, what);
            return NULL;
        }
        o += utf8_encode((uint32_t)cp, o);
    }
    *o = '\0';
    ps->p = q + 1;
    return (const char *)out;
}

static cJSON *parse_value(parser *ps, int depth);

static cJSON *parse_number(parser *ps) {
    const char *why = NULL;
    size_t bad = 0;
    size_t n = scan_number(ps->p, (size_t)(ps->end - ps->p), &why, &bad);
    if (n == 0) {
        parse_fail(ps, ps->p + bad, why);
        return NULL;
    }
    size_t digits = n - (ps->p[0] == '-');
    if (digits > PYTHON_INT_MAX_DIGITS && memchr(ps->p, '.', n) == NULL &&
        memchr(ps->p, 'e', n) == NULL && memchr(ps->p, 'E', n) == NULL) {
        char msg[128];
        snprintf(msg, sizeof msg, "an integer with %zu digits; Python reads at most %d", digits,
                 PYTHON_INT_MAX_DIGITS);
        parse_fail(ps, ps->p, msg);
        return NULL;
    }
    char *scratch = ps->scratch + (ps->p - ps->start);
    double d = number_value(ps->p, n, scratch);
    cJSON *item = cJSON_CreateNumber(d);
    char *text = cJSON_malloc(n + 1);
    if (!item || !text) {
        cJSON_Delete(item);
        cJSON_free(text);
        parse_oom(ps);
        return NULL;
    }
    memcpy(text, ps->p, n);
    text[n] = '\0';
    item->valuestring = text;
    ps->p += n;
    return item;
}

/* Python's extensions: NaN, Infinity, -Infinity. cJSON_CreateNumber would convert NaN to int
 * (undefined behaviour), so the value is stored directly. */
static cJSON *make_special(parser *ps, double v) {
    cJSON *item = cJSON_CreateNumber(0);
    if (!item) {
        parse_oom(ps);
        return NULL;
    }
    item->valuedouble = v;
    return item;
}

static cJSON *parse_container(parser *ps, int depth, bool is_object) {
    const unsigned char *open = ps->p;
    if (depth >= ROAD_JSON_MAX_DEPTH) {
        char msg[96];
        snprintf(msg, sizeof msg, "nested deeper than %d levels", ROAD_JSON_MAX_DEPTH);
        parse_refuse(ps, open, msg);
        return NULL;
    }
    cJSON *c = is_object ? cJSON_CreateObject() : cJSON_CreateArray();
    if (!c) {
        parse_oom(ps);
        return NULL;
    }
    char close = is_object ? '}' : ']';
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        return c;
    }
    size_t index = 0;
    for (;;) {
        const char *key = NULL;
        if (is_object) {
            if (ps->p >= ps->end || *ps->p != '"') {
                parse_fail(ps, ps->p, "expected a key in double quotes");
                goto fail;
            }
            key = parse_string(ps, true);
            if (!key) goto fail;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                parse_fail(ps, ps->p, "expected ':' after the key");
                goto fail;
            }
            ps->p++;
        }
        path_frame frame = {ps->path, key, index++};
        ps->path = &frame;
        cJSON *v = parse_value(ps, depth + 1);
        ps->path = frame.up;
        if (!v) goto fail;
        if (!(is_object ? cJSON_AddItemToObject(c, key, v) : cJSON_AddItemToArray(c, v))) {
            cJSON_Delete(v);
            parse_oom(ps);
            goto fail;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            return c;
        }
        parse_fail(ps, ps->p,
                   is_object ? "expected ',' or '}' after an object member"
                             : "expected ',' or ']' after a list item");
        goto fail;
    }
fail:
    cJSON_Delete(c);
    return NULL;
}

static cJSON *parse_value(parser *ps, int depth) {
    skip_ws(ps);
    if (ps->p >= ps->end) {
        parse_fail(ps, ps->p, "expected a value, found the end of the text");
        return NULL;
    }
    cJSON *item;
    switch (*ps->p) {
    case '{':
        return parse_container(ps, depth, true);
    case '[':
        return parse_container(ps, depth, false);
    case '"': {
        const char *s = parse_string(ps, false);
        if (!s) return NULL;
        item = cJSON_CreateString(s);
        break;
    }
    case 't':
        if (!literal(ps, "true")) goto bad;
        item = cJSON_CreateTrue();
        break;
    case 'f':
        if (!literal(ps, "false")) goto bad;
        item = cJSON_CreateFalse();
        break;
    case 'n':
        if (!literal(ps, "null")) goto bad;
        item = cJSON_CreateNull();
        break;
    case 'N':
        if (!literal(ps, "NaN")) goto bad;
        return make_special(ps, NAN);
    case 'I':
        if (!literal(ps, "Infinity")) goto bad;
        return make_special(ps, INFINITY);
    case '-':
        if (literal(ps, "-Infinity")) return make_special(ps, -INFINITY);
        return parse_number(ps);
    default:
        if (is_digit(*ps->p)) return parse_number(ps);
        goto bad;
    }
    if (!item) parse_oom(ps);
    return item;
bad:
    parse_fail(ps, ps->p,
               "expected a value (an object, list, string, number, true, false or "
               "null)");
    return NULL;
}

road_status road__json_parse_at(const char *text, size_t len, cJSON **out, road_json_where *where) {
    *out = NULL;
    if (where) memset(where, 0, sizeof *where);
    if (!text && len > 0) return road__error(ROAD_ERR_INVALID_ARG, "JSON text is NULL");
    parser ps = {(const unsigned char *)text, (const unsigned char *)text,
                 (const unsigned char *)text + len, NULL, ROAD_OK, NULL, where};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        return parse_fail(&ps, ps.start,
                          "the text starts with a UTF-8 byte order mark; save it without one");
    ps.scratch = road__malloc(len + NUMBER_SCRATCH_EXTRA);
    if (!ps.scratch) return ROAD_ERR_NO_MEMORY;
    cJSON *root = parse_value(&ps, 0);
    if (root) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            parse_fail(&ps, ps.p, "extra text after the JSON value");
            cJSON_Delete(root);
            root = NULL;
        }
    }
    road__free(ps.scratch);
    if (!root) {
        if (ps.status != ROAD_OK) return ps.status;
        return parse_oom(&ps);
    }
    *out = root;
    return ROAD_OK;
}

road_status road_json_parse(const char *text, size_t len, cJSON **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_json_parse: out is NULL");
    return road__json_parse_at(text, len, out, NULL);
}

/* ---- printer ------------------------------------------------------------------------------ */

typedef struct sbuf {
    char *buf;
    size_t len, cap;
    road_status status;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->status != ROAD_OK) return;
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= n) {
            if (cap > SIZE_MAX / 2) {
                b->status = road__error(ROAD_ERR_NO_MEMORY, "JSON text too large");
                return;
            }
            cap *= 2;
        }
        char *nb = road__realloc(b->buf, cap);
        if (!nb) {
            b->status = ROAD_ERR_NO_MEMORY;
            return;
        }
        b->buf = nb, b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_indent(sbuf *b, int depth) {
    static const char spaces[] = "                                ";
    size_t n = (size_t)depth * 2;
    sb_put(b, "\n", 1);
    while (n > 0) {
        size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
        sb_put(b, spaces, k);
        n -= k;
    }
}

/* Python's ensure_ascii string form. */
static void sb_string(sbuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    sb_put(b, "\"", 1);
    size_t i = 0;
    while (i < n && b->status == ROAD_OK) {
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x7F && p[run] != '"' && p[run] != '\\') run++;
        sb_put(b, s + i, run - i);
        i = run;
        if (i >= n) break;
        char esc[16];
        uint32_t cp;
        size_t k = utf8_decode(p + i, n - i, &cp);
        if (k == 0) {
            b->status = road__error(ROAD_ERR_INVALID_ARG,
                                    "string is not valid UTF-8 (byte 0x%02x "
                                    "at offset %zu of \"%.20s...\")",
                                    p[i], i, s);
            return;
        }
        i += k;
        switch (cp) {
        case '"':
            sb_put(b, "\\\"", 2);
            continue;
        case '\\':
            sb_put(b, "\\\\", 2);
            continue;
        case '\n':
            sb_put(b, "\\n", 2);
            continue;
        case '\r':
            sb_put(b, "\\r", 2);
            continue;
        case '\t':
            sb_put(b, "\\t", 2);
            continue;
        case '\b':
            sb_put(b, "\\b", 2);
            continue;
        case '\f':
            sb_put(b, "\\f", 2);
            continue;
        default:
            break;
        }
        if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            snprintf(esc, sizeof esc, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)),
                     (unsigned)(0xDC00 + (v & 0x3FF)));
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
        }
        sb_str(b, esc);
    }
    sb_put(b, "\"", 1);
}

static void sb_number(sbuf *b, const cJSON *v) {
    const char *t = road__json_number_text(v);
    if (t && is_int_text(t)) {
        sb_str(b, strcmp(t, "-0") == 0 ? "0" : t); /* Python has no negative zero int */
        return;
    }
    char buf[ROAD_JSON_NUMBER_MAX];
    double d = v->valuedouble;
    if (!t && isfinite(d) && d == floor(d) && fabs(d) <= EXACT_INT_LIMIT &&
        !(d == 0 && signbit(d))) {
        snprintf(buf, sizeof buf, "%lld", (long long)d);
    } else {
        road__json_format_double(d, buf, sizeof buf);
    }
    sb_str(b, buf);
}

typedef struct member {
    const cJSON *item;
    size_t index;
} member;

static int member_cmp(const void *pa, const void *pb) {
    const member *a = pa, *b = pb;
    int c = strcmp(a->item->string, b->item->string); /* unsigned bytes = code point order */
    if (c != 0) return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

static void sb_value(sbuf *b, const cJSON *v, int depth);

static void sb_object(sbuf *b, const cJSON *v, int depth) {
    size_t n = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!c->string) {
            b->status = road__error(ROAD_ERR_INVALID_ARG, "object member without a key");
            return;
        }
        n++;
    }
    if (n == 0) {
        sb_put(b, "{}", 2);
        return;
    }
    member *m = road__calloc(n, sizeof *m);
    if (!m) {
        b->status = ROAD_ERR_NO_MEMORY;
        return;
    }
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) m[i] = (member){c, i};
    qsort(m, n, sizeof *m, member_cmp);
    sb_put(b, "{", 1);
    bool first = true;
    for (i = 0; i < n && b->status == ROAD_OK; i++) {
        /* A repeated key: the last one wins, as in a Python dict. */
        if (i + 1 < n && strcmp(m[i].item->string, m[i + 1].item->string) == 0) continue;
        if (!first) sb_put(b, ",", 1);
        first = false;
        sb_indent(b, depth + 1);
        sb_string(b, m[i].item->string);
        sb_put(b, ": ", 2);
        sb_value(b, m[i].item, depth + 1);
    }
    sb_indent(b, depth);
    sb_put(b, "}", 1);
    road__free(m);
}

static void sb_value(sbuf *b, const cJSON *v, int depth) {
    if (b->status != ROAD_OK) return;
    if (depth > ROAD_JSON_MAX_DEPTH) {
        b->status = road__error(ROAD_ERR_INVALID_ARG, "JSON nested deeper than %d levels",
                                ROAD_JSON_MAX_DEPTH);
        return;
    }
    switch (v->type & 0xFF) {
    case cJSON_NULL:
        sb_put(b, "null", 4);
        return;
    case cJSON_True:
        sb_put(b, "true", 4);
        return;
    case cJSON_False:
        sb_put(b, "false", 5);
        return;
    case cJSON_Number:
        sb_number(b, v);
        return;
    case cJSON_String:
        if (!v->valuestring) break;
        sb_string(b, v->valuestring);
        return;
    case cJSON_Array:
        if (!v->child) {
            sb_put(b, "[]", 2);
            return;
        }
        sb_put(b, "[", 1);
        for (const cJSON *c = v->child; c && b->status == ROAD_OK; c = c->next) {
            sb_indent(b, depth + 1);
            sb_value(b, c, depth + 1);
            if (c->next) sb_put(b, ",", 1);
        }
        sb_indent(b, depth);
        sb_put(b, "]", 1);
        return;
    case cJSON_Object:
        sb_object(b, v, depth);
        return;
    default:
        break;
    }
    b->status = road__error(ROAD_ERR_INVALID_ARG, "cannot write a cJSON item of type %d as JSON",
                            v->type & 0xFF);
}

road_status road__json_dump(const cJSON *item, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    if (!item) return road__error(ROAD_ERR_INVALID_ARG, "no JSON value to write");
    sbuf b = {NULL, 0, 0, ROAD_OK};
    sb_value(&b, item, 0);
    if (b.status != ROAD_OK) {
        road__free(b.buf);
        return b.status;
    }
    *out = b.buf;
    if (len) *len = b.len;
    return ROAD_OK;
}

/* ---- string literals of any bytes ---------------------------------------------------------- */

road_status road__json_string_literal(const char *s, size_t n, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!s && n) return road__error(ROAD_ERR_INVALID_ARG, "road__json_string_literal: s is NULL");
    const unsigned char *p = (const unsigned char *)s;
    sbuf b = {NULL, 0, 0, ROAD_OK};
    sb_put(&b, "\"", 1);
    size_t i = 0;
    while (i < n && b.status == ROAD_OK) {
        size_t run = i;
        while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\') run++;
        sb_put(&b, s + i, run - i);
        i = run;
        if (i >= n) break;
        unsigned char c = p[i];
        if (c >= 0x80) {
            uint32_t cp;
            size_t k = utf8_decode(p + i, n - i, &cp);
            if (k == 0) {
                sb_put(&b, "\\ufffd", 6); /* not part of a valid character */
                i++;
            } else {
                sb_put(&b, s + i, k);
                i += k;
            }
            continue;
        }
        static const char plain[] = "\"\\\n\r\t\b\f";
        static const char named[] = "\"\\nrtbf";
        const char *hit = memchr(plain, c, sizeof plain - 1);
        char esc[8];
        if (hit)
            snprintf(esc, sizeof esc, "\\%c", named[hit - plain]);
        else
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c); /* NUL and other controls */
        sb_str(&b, esc);
        i++;
    }
    sb_put(&b, "\"", 1);
    if (b.status != ROAD_OK) {
        road__free(b.buf);
        return b.status;
    }
    *out = b.buf;
    if (out_len) *out_len = b.len;
    return ROAD_OK;
}
