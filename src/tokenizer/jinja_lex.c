/*
 * tokenizer/jinja_lex.c - template source -> tokens, as jinja2's lexer with trim_blocks=True,
 * lstrip_blocks=True and keep_trailing_newline=False (transformers' settings).
 *
 * What jinja2 does before and around tags, and so this file:
 *  - the source's line ends (\r\n, \r, and the others str.splitlines knows) become "\n", and
 *    one final newline is dropped;
 *  - "{%-", "{{-", "{#-" strip all whitespace before the tag; "-%}", "-}}", "-#}" all after;
 *  - lstrip_blocks: spaces and tabs from the start of a line to a "{%" or "{#" go (not before
 *    "{{", not with "{%+");
 *  - trim_blocks: the first newline after "%}" or "#}" goes (not after "+%}");
 *  - inside a tag, "}}" / "%}" only end it outside brackets (so {{ {'a': {}} }} works);
 *  - {% raw %}...{% endraw %} is text.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"
#include "tokenizer/text_util.h"

typedef struct lexer {
    jj_ctx *c;
    const char *s;
    size_t n, pos;
    jj_toks *out;
} lexer;

/* Python's str.isspace for the ASCII range (the source's other line ends are "\n" by now). */
static bool is_space(unsigned char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f' ||
           (ch >= 0x1c && ch <= 0x1f);
}

static bool is_ident(char ch) {
    return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9');
}

static void pos_of(const lexer *L, size_t at, uint32_t *line, uint32_t *col) {
    uint32_t ln = 1, cl = 1;
    for (size_t i = 0; i < at && i < L->n; i++) {
        if (L->s[i] == '\n') {
            ln++;
            cl = 1;
        } else if (((unsigned char)L->s[i] & 0xC0) != 0x80) {
            cl++;
        }
    }
    *line = ln;
    *col = cl;
}

_Noreturn static void lex_fail(lexer *L, size_t at, const char *what) {
    uint32_t line, col;
    pos_of(L, at, &line, &col);
    road__jj_fail(L->c, ROAD_ERR_FORMAT, line, "column %u: %s", (unsigned)col, what);
}

static jj_tok *push(lexer *L, jj_tok_type type, size_t at, const char *p, size_t n) {
    jj_toks *t = L->out;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        jj_tok *v = road__jj_alloc(L->c, cap * sizeof(jj_tok));
        if (t->n) memcpy(v, t->v, t->n * sizeof(jj_tok));
        t->v = v;
        t->cap = cap;
    }
    jj_tok *k = &t->v[t->n++];
    memset(k, 0, sizeof *k);
    k->type = (uint8_t)type;
    pos_of(L, at, &k->line, &k->col);
    k->p = p;
    k->n = n;
    return k;
}

/* The normalized source: line ends as "\n", one trailing newline dropped. */
static char *normalize(jj_ctx *c, const char *s, size_t n, size_t *out_n) {
    char *o = road__jj_alloc(c, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r') {
            if (i + 1 < n && s[i + 1] == '\n') i++;
            o[k++] = '\n';
        } else if (ch == '\v' || ch == '\f' || (ch >= 0x1c && ch <= 0x1e)) {
            o[k++] = '\n';
        } else if (ch == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0x85) {
            o[k++] = '\n';
            i++;
        } else if (ch == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
                   ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9)) {
            o[k++] = '\n';
            i += 2;
        } else {
            o[k++] = (char)ch;
        }
    }
    if (k > 0 && o[k - 1] == '\n') k--;
    o[k] = '\0';
    *out_n = k;
    return o;
}

static size_t skip_space(const lexer *L, size_t i) {
    while (i < L->n && is_space((unsigned char)L->s[i])) i++;
    return i;
}

static bool at(const lexer *L, size_t i, const char *lit) {
    size_t m = strlen(lit);
    return i + m <= L->n && memcmp(L->s + i, lit, m) == 0;
}

/* Decode a string literal's body as Python's unicode-escape (jinja2 does). */
static void string_lit(lexer *L, size_t start, size_t end, jj_tok *t) {
    jj_buf b = {0};
    for (size_t i = start; i < end; i++) {
        char ch = L->s[i];
        if (ch != '\\' || i + 1 >= end) {
            road__jj_putc(L->c, &b, ch);
            continue;
        }
        char e = L->s[++i];
        static const char from[] = "nrtabfv\\'\"\n", to[] = "\n\r\t\a\b\f\v\\'\"";
        const char *simple = e != '\0' ? strchr(from, e) : NULL;
        if (simple) {
            if (e != '\n') road__jj_putc(L->c, &b, to[simple - from]); /* "\<newline>" is nothing */
            continue;
        }
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (e >= '0' && e <= '7') { /* octal, up to 3 digits */
            unsigned v = 0;
            int k = 0;
            while (k < 3 && i < end && L->s[i] >= '0' && L->s[i] <= '7')
                v = v * 8 + (unsigned)(L->s[i++] - '0'), k++;
            i--;
            char u[4];
            int m = road__tok_utf8_encode(v, u);
            road__jj_put(L->c, &b, u, (size_t)m);
            continue;
        }
        if (digits == 0) { /* unknown escapes stay as written */
            road__jj_putc(L->c, &b, '\\');
            road__jj_putc(L->c, &b, e);
            continue;
        }
        if (i + (size_t)digits >= end)
            lex_fail(L, i, "truncated \\x, \\u or \\U escape in a string");
        char hex[9];
        memcpy(hex, L->s + i + 1, (size_t)digits);
        hex[digits] = '\0';
        char *stop;
        unsigned long v = strtoul(hex, &stop, 16);
        if (*stop != '\0' || strchr(hex, '-') || strchr(hex, '+') || strchr(hex, ' ') ||
            v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            lex_fail(L, i, "bad \\x, \\u or \\U escape in a string");
        i += (size_t)digits;
        char u[4];
        int m = road__tok_utf8_encode((unsigned)v, u);
        road__jj_put(L->c, &b, u, (size_t)m);
    }
    t->p = b.p ? b.p : "";
    t->n = b.len;
}

/* Tokens of one tag's inside, from i to its end marker; returns the position after the tag
 * (trailing whitespace rules applied). */
static size_t lex_tag(lexer *L, size_t i, bool block, bool *line_starting) {
    int depth = 0;
    const char *close = block ? "%}" : "}}";
    for (;;) {
        i = skip_space(L, i);
        if (i >= L->n)
            lex_fail(L, i,
                     block ? "unexpected end of template: '%}' missing"
                           : "unexpected end of template: '}}' missing");
        if (depth == 0) {
            size_t end = 0;
            bool strip = false, trim = block;
            if (L->s[i] == '-' && at(L, i + 1, close))
                end = i + 3, strip = true;
            else if (block && L->s[i] == '+' && at(L, i + 1, close))
                end = i + 3, trim = false;
            else if (at(L, i, close))
                end = i + 2;
            if (end) {
                push(L, block ? JT_BLOCK_END : JT_VAR_END, i, NULL, 0);
                if (strip)
                    end = skip_space(L, end);
                else if (trim && end < L->n && L->s[end] == '\n')
                    end++;
                *line_starting = end > 0 && L->s[end - 1] == '\n';
                return end;
            }
        }
        unsigned char ch = (unsigned char)L->s[i];
        size_t st = i;
        if (is_ident((char)ch) && !(ch >= '0' && ch <= '9')) {
            while (i < L->n && is_ident(L->s[i])) i++;
            push(L, JT_NAME, st, L->s + st, i - st);
        } else if (ch >= '0' && ch <= '9') {
            char num[64];
            size_t k = 0;
            bool is_float = false;
            while (i < L->n && ((L->s[i] >= '0' && L->s[i] <= '9') || L->s[i] == '_')) {
                if (L->s[i] != '_' && k < sizeof num - 1) num[k++] = L->s[i];
                i++;
            }
            if (i + 1 < L->n && L->s[i] == '.' && L->s[i + 1] >= '0' && L->s[i + 1] <= '9' &&
                !(st > 0 && L->s[st - 1] == '.')) {
                is_float = true;
                num[k++] = L->s[i++];
                while (i < L->n && ((L->s[i] >= '0' && L->s[i] <= '9') || L->s[i] == '_')) {
                    if (L->s[i] != '_' && k < sizeof num - 1) num[k++] = L->s[i];
                    i++;
                }
            }
            if (i < L->n && (L->s[i] | 0x20) == 'e' && !(st > 0 && L->s[st - 1] == '.')) {
                size_t j = i + 1;
                if (j < L->n && (L->s[j] == '+' || L->s[j] == '-')) j++;
                if (j < L->n && L->s[j] >= '0' && L->s[j] <= '9') {
                    is_float = true;
                    if (k < sizeof num - 1) num[k++] = 'e';
                    for (i++; i < L->n && ((L->s[i] >= '0' && L->s[i] <= '9') || L->s[i] == '+' ||
                                           L->s[i] == '-' || L->s[i] == '_');
                         i++)
                        if (L->s[i] != '_' && k < sizeof num - 1) num[k++] = L->s[i];
                }
            }
            num[k] = '\0';
            jj_tok *t = push(L, is_float ? JT_FLOAT : JT_INT, st, L->s + st, i - st);
            if (is_float) {
                t->f = strtod(num, NULL);
            } else {
                char *stop;
                unsigned long long v = strtoull(num, &stop, 10);
                if (k > 18 && (v > (unsigned long long)INT64_MAX || k > 19))
                    lex_fail(L, st, "integer literal beyond 64 bits");
                t->i = (int64_t)v;
            }
        } else if (ch == '\'' || ch == '"') {
            size_t j = i + 1;
            while (j < L->n && L->s[j] != (char)ch) j += L->s[j] == '\\' ? 2 : 1;
            if (j >= L->n) lex_fail(L, st, "unterminated string");
            jj_tok *t = push(L, JT_STRING, st, NULL, 0);
            string_lit(L, i + 1, j, t);
            i = j + 1;
        } else {
            static const char *const ops2[] = {"//", "**", "==", "!=", ">=", "<="};
            size_t len = 0;
            for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
                if (at(L, i, ops2[k])) len = 2;
            if (len == 0 && ch && strchr("+-/*%~[](){}<>=.:|,;", ch)) len = 1;
            if (len == 0) lex_fail(L, i, "unexpected character in a tag");
            if (ch == '(' || ch == '[' || ch == '{') depth++;
            if (ch == ')' || ch == ']' || ch == '}') {
                if (depth == 0) lex_fail(L, i, "unbalanced closing bracket");
                depth--;
            }
            push(L, JT_OP, st, L->s + st, len);
            i += len;
        }
    }
}

/* After "{% raw %}": the text up to "{% endraw %}" (with its own whitespace control). */
static size_t lex_raw(lexer *L, size_t i, bool *line_starting) {
    for (size_t k = i; k + 1 < L->n; k++) {
        if (L->s[k] != '{' || L->s[k + 1] != '%') continue;
        size_t j = k + 2;
        bool strip_before = false;
        if (j < L->n && (L->s[j] == '-' || L->s[j] == '+')) strip_before = L->s[j++] == '-';
        j = skip_space(L, j);
        if (!at(L, j, "endraw")) continue;
        j = skip_space(L, j + 6);
        size_t end = 0;
        bool strip = false, trim = true;
        if (at(L, j, "-%}"))
            end = j + 3, strip = true;
        else if (at(L, j, "+%}"))
            end = j + 3, trim = false;
        else if (at(L, j, "%}"))
            end = j + 2;
        if (!end) continue;
        size_t tn = k - i;
        if (strip_before)
            while (tn > 0 && is_space((unsigned char)L->s[i + tn - 1])) tn--;
        if (tn) push(L, JT_TEXT, i, L->s + i, tn);
        if (strip)
            end = skip_space(L, end);
        else if (trim && end < L->n && L->s[end] == '\n')
            end++;
        *line_starting = end > 0 && L->s[end - 1] == '\n';
        return end;
    }
    lex_fail(L, i, "{% raw %} without {% endraw %}");
}

void road__jj_lex(jj_ctx *c, const char *src, size_t len, jj_toks *out) {
    lexer L = {c, NULL, 0, 0, out};
    L.s = normalize(c, src, len, &L.n);
    bool line_starting = true;
    size_t pos = 0;
    while (pos < L.n) {
        size_t i = pos;
        while (i + 1 < L.n &&
               !(L.s[i] == '{' && (L.s[i + 1] == '{' || L.s[i + 1] == '%' || L.s[i + 1] == '#')))
            i++;
        if (i + 1 >= L.n) {
            push(&L, JT_TEXT, pos, L.s + pos, L.n - pos);
            break;
        }
        char kind = L.s[i + 1];
        size_t j = i + 2, tn = i - pos;
        char mod = j < L.n ? L.s[j] : '\0';
        if (mod == '-') {
            while (tn > 0 && is_space((unsigned char)L.s[pos + tn - 1])) tn--;
            j++;
        } else if (mod == '+') {
            j++;
        } else if (kind != '{') { /* lstrip_blocks */
            size_t l = tn;
            while (l > 0 && L.s[pos + l - 1] != '\n') l--;
            if (l > 0 || line_starting) {
                bool blank = true;
                for (size_t k = l; k < tn; k++)
                    blank = blank && is_space((unsigned char)L.s[pos + k]);
                if (blank) tn = l;
            }
        }
        if (tn) push(&L, JT_TEXT, pos, L.s + pos, tn);
        if (kind == '#') {
            size_t k = j;
            for (;; k++) {
                if (k + 1 >= L.n) lex_fail(&L, i, "unterminated comment: '#}' missing");
                if (L.s[k] == '#' && L.s[k + 1] == '}') break;
                if ((L.s[k] == '-' || L.s[k] == '+') && at(&L, k + 1, "#}")) break;
            }
            size_t end;
            if (L.s[k] == '-')
                end = skip_space(&L, k + 3);
            else if (L.s[k] == '+')
                end = k + 3;
            else
                end = k + 2 + (k + 2 < L.n && L.s[k + 2] == '\n');
            line_starting = end > 0 && L.s[end - 1] == '\n';
            pos = end;
            continue;
        }
        size_t first = out->n;
        push(&L, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, i, NULL, 0);
        pos = lex_tag(&L, j, kind == '%', &line_starting);
        if (kind == '%' && out->n == first + 3 && out->v[first + 1].type == JT_NAME &&
            out->v[first + 1].n == 3 && memcmp(out->v[first + 1].p, "raw", 3) == 0) {
            out->n = first; /* {% raw %} is no statement: its body is text */
            pos = lex_raw(&L, pos, &line_starting);
        }
    }
    push(&L, JT_EOF, L.n, NULL, 0);
}
