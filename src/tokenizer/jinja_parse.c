/*
 * tokenizer/jinja_parse.c - tokens -> tree, a recursive descent over jinja2's grammar.
 *
 * Operator precedence is jinja2's (parser.py), loosest first: `x if c else y`, or, and, not,
 * comparisons (==, !=, <, <=, >, >=, in, not in; chained), + -, ~, * / // %, **, unary - +,
 * then a primary with its postfixes (.attr, [item], [a:b:c], (call)) and filters / tests
 * (`x | f(args)`, `x is [not] t(args)`). Depth is capped (ROAD_JINJA_MAX_DEPTH) so that no
 * template can overflow the stack here or in the renderer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

typedef struct parser {
    jj_ctx *c;
    const jj_tok *t;
    size_t n, i;
    int depth;
} parser;

static const jj_tok *cur(parser *P) {
    return &P->t[P->i];
}

static const char *tok_desc(const jj_tok *t, char *buf, size_t cap) {
    switch (t->type) {
    case JT_EOF:
        return "end of template";
    case JT_VAR_END:
        return "'}}'";
    case JT_BLOCK_END:
        return "'%}'";
    case JT_TEXT:
        return "text";
    case JT_STRING:
        return "a string";
    case JT_INT:
    case JT_FLOAT:
        return "a number";
    default:
        snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
        return buf;
    }
}

__attribute__((format(printf, 4, 5))) _Noreturn static void
fail_at(parser *P, const jj_tok *t, road_status s, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    road__jj_fail(P->c, s, t->line, "column %u: %s", (unsigned)t->col, what);
}

_Noreturn static void unexpected(parser *P, const char *wanted) {
    char buf[64], msg[160];
    snprintf(msg, sizeof msg, "expected %s, found %s", wanted, tok_desc(cur(P), buf, sizeof buf));
    fail_at(P, cur(P), ROAD_ERR_FORMAT, "%s", msg);
}

static bool is_op(const jj_tok *t, const char *op) {
    return t->type == JT_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0;
}
static bool is_name(const jj_tok *t, const char *name) {
    return t->type == JT_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}
static bool accept_op(parser *P, const char *op) {
    if (!is_op(cur(P), op)) return false;
    P->i++;
    return true;
}
static bool accept_name(parser *P, const char *name) {
    if (!is_name(cur(P), name)) return false;
    P->i++;
    return true;
}
static void expect_op(parser *P, const char *op) {
    char w[16];
    snprintf(w, sizeof w, "'%s'", op);
    if (!accept_op(P, op)) unexpected(P, w);
}
static const char *expect_ident(parser *P) {
    if (cur(P)->type != JT_NAME) unexpected(P, "a name");
    const jj_tok *t = &P->t[P->i++];
    return road__jj_strndup(P->c, t->p, t->n);
}
static void expect_block_end(parser *P) {
    if (cur(P)->type != JT_BLOCK_END) unexpected(P, "'%}'");
    P->i++;
}

static jj_node *node(parser *P, jj_node_type type, const jj_tok *at) {
    jj_node *n = road__jj_alloc(P->c, sizeof *n);
    n->type = (uint8_t)type;
    n->line = at->line;
    return n;
}

static void enter(parser *P) {
    if (++P->depth > ROAD_JINJA_MAX_DEPTH)
        fail_at(P, cur(P), ROAD_ERR_FORMAT, "nesting deeper than %s levels",
                "200 (ROAD_JINJA_MAX_DEPTH)");
}

/* A growable array of node pointers. */
typedef struct nodes {
    jj_node **v;
    size_t n, cap;
    const char **names;
} nodes;
static void nodes_push(parser *P, nodes *a, jj_node *x, const char *name) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        jj_node **v = road__jj_alloc(P->c, cap * sizeof *v);
        const char **nm = road__jj_alloc(P->c, cap * sizeof *nm);
        if (a->n) {
            memcpy(v, a->v, a->n * sizeof *v);
            memcpy(nm, a->names, a->n * sizeof *nm);
        }
        a->v = v;
        a->names = nm;
        a->cap = cap;
    }
    a->names[a->n] = name;
    a->v[a->n++] = x;
}

static jj_node *parse_expr(parser *P, bool condexpr);
static jj_node *parse_unary(parser *P, bool with_filter);
static jj_node *parse_primary(parser *P);

/* (args) after '(' was consumed: positional then keyword arguments. */
static void parse_call_args(parser *P, jj_node *n) {
    nodes pos = {0}, kw = {0};
    while (!accept_op(P, ")")) {
        if (pos.n + kw.n > 0) expect_op(P, ",");
        if (accept_op(P, ")")) break;
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            fail_at(P, cur(P), ROAD_ERR_UNSUPPORTED, "%s",
                    "*args and **kwargs in calls are not supported");
        if (cur(P)->type == JT_NAME && is_op(&P->t[P->i + 1], "=")) {
            const char *name = expect_ident(P);
            P->i++;
            nodes_push(P, &kw, parse_expr(P, true), name);
        } else {
            if (kw.n) unexpected(P, "a keyword argument (positional after keyword)");
            nodes_push(P, &pos, parse_expr(P, true), NULL);
        }
    }
    n->args = pos.v;
    n->nargs = pos.n;
    n->kwvals = kw.v;
    n->kwnames = kw.names;
    n->nkw = kw.n;
}

static const char *dotted_name(parser *P) {
    const char *name = expect_ident(P);
    while (is_op(cur(P), ".") && P->t[P->i + 1].type == JT_NAME) {
        P->i++;
        const jj_tok *t = &P->t[P->i++];
        size_t a = strlen(name);
        char *j = road__jj_alloc(P->c, a + t->n + 2);
        memcpy(j, name, a);
        j[a] = '.';
        memcpy(j + a + 1, t->p, t->n);
        name = j;
    }
    return name;
}

static jj_node *parse_filter(parser *P, jj_node *operand) {
    jj_node *f = node(P, JN_FILTER, cur(P));
    f->a = operand;
    f->name = dotted_name(P);
    if (accept_op(P, "(")) parse_call_args(P, f);
    return f;
}

static jj_node *parse_postfix(parser *P, jj_node *n) {
    for (;;) {
        const jj_tok *t = cur(P);
        if (accept_op(P, ".")) {
            jj_node *g;
            if (cur(P)->type == JT_NAME) {
                g = node(P, JN_GETATTR, t);
                g->name = expect_ident(P);
                g->name_len = strlen(g->name);
            } else if (cur(P)->type == JT_INT) {
                g = node(P, JN_GETITEM, t);
                jj_node *k = node(P, JN_LIT, t);
                k->lit = jv_int(cur(P)->i);
                P->i++;
                g->b = k;
            } else {
                unexpected(P, "a name after '.'");
            }
            g->a = n;
            n = g;
        } else if (accept_op(P, "[")) {
            jj_node *parts[3] = {NULL, NULL, NULL};
            int k = 0;
            bool slice = false;
            for (;;) {
                if (is_op(cur(P), ":")) {
                    P->i++;
                    slice = true;
                    if (++k > 2) unexpected(P, "']'");
                    continue;
                }
                if (accept_op(P, "]")) break;
                if (parts[k]) unexpected(P, "':' or ']'");
                parts[k] = parse_expr(P, true);
                if (!slice && is_op(cur(P), ","))
                    fail_at(P, cur(P), ROAD_ERR_UNSUPPORTED, "%s",
                            "tuple subscripts are not supported");
            }
            jj_node *g = node(P, slice ? JN_SLICE : JN_GETITEM, t);
            g->a = n;
            if (slice) {
                g->args = road__jj_alloc(P->c, 3 * sizeof(jj_node *));
                memcpy(g->args, parts, sizeof parts);
                g->nargs = 3;
            } else {
                if (!parts[0]) unexpected(P, "an index");
                g->b = parts[0];
            }
            n = g;
        } else if (accept_op(P, "(")) {
            jj_node *call = node(P, JN_CALL, t);
            call->a = n;
            parse_call_args(P, call);
            n = call;
        } else {
            return n;
        }
    }
}

static jj_node *parse_filter_expr(parser *P, jj_node *n) {
    for (;;) {
        const jj_tok *t = cur(P);
        if (accept_op(P, "|")) {
            n = parse_filter(P, n);
        } else if (is_name(t, "is")) {
            P->i++;
            jj_node *test = node(P, JN_TEST, t);
            test->a = n;
            test->neg = accept_name(P, "not");
            test->name = dotted_name(P);
            const jj_tok *u = cur(P);
            if (accept_op(P, "(")) {
                parse_call_args(P, test);
            } else if ((u->type == JT_NAME || u->type == JT_STRING || u->type == JT_INT ||
                        u->type == JT_FLOAT || is_op(u, "[") || is_op(u, "{")) &&
                       !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and")) {
                if (is_name(u, "is")) unexpected(P, "a test argument");
                test->args = road__jj_alloc(P->c, sizeof(jj_node *));
                test->args[0] = parse_postfix(P, parse_primary(P));
                test->nargs = 1;
            }
            n = test;
        } else if (accept_op(P, "(")) {
            jj_node *call = node(P, JN_CALL, t);
            call->a = n;
            parse_call_args(P, call);
            n = call;
        } else {
            return n;
        }
    }
}

static jj_node *lit(parser *P, const jj_tok *t, jv v) {
    jj_node *n = node(P, JN_LIT, t);
    n->lit = v;
    return n;
}

static jj_node *parse_primary(parser *P) {
    const jj_tok *t = cur(P);
    enter(P);
    jj_node *n = NULL;
    if (t->type == JT_NAME) {
        P->i++;
        if (is_name(t, "true") || is_name(t, "True"))
            n = lit(P, t, jv_bool(true));
        else if (is_name(t, "false") || is_name(t, "False"))
            n = lit(P, t, jv_bool(false));
        else if (is_name(t, "none") || is_name(t, "None"))
            n = lit(P, t, jv_none());
        else {
            n = node(P, JN_NAME, t);
            n->name = road__jj_strndup(P->c, t->p, t->n);
            n->name_len = t->n;
        }
    } else if (t->type == JT_STRING) {
        jj_buf b = {0}; /* adjacent literals join, as in Python */
        while (cur(P)->type == JT_STRING) {
            road__jj_put(P->c, &b, cur(P)->p, cur(P)->n);
            P->i++;
        }
        n = lit(P, t, jv_strref(b.p ? b.p : "", b.len));
    } else if (t->type == JT_INT) {
        P->i++;
        n = lit(P, t, jv_int(t->i));
    } else if (t->type == JT_FLOAT) {
        P->i++;
        n = lit(P, t, jv_float(t->f));
    } else if (accept_op(P, "(")) {
        if (accept_op(P, ")")) {
            n = node(P, JN_TUPLE, t);
        } else {
            n = parse_expr(P, true);
            if (is_op(cur(P), ",")) {
                nodes items = {0};
                nodes_push(P, &items, n, NULL);
                while (accept_op(P, ",")) {
                    if (is_op(cur(P), ")")) break;
                    nodes_push(P, &items, parse_expr(P, true), NULL);
                }
                n = node(P, JN_TUPLE, t);
                n->args = items.v;
                n->nargs = items.n;
            }
            expect_op(P, ")");
        }
    } else if (accept_op(P, "[")) {
        nodes items = {0};
        while (!accept_op(P, "]")) {
            if (items.n) expect_op(P, ",");
            if (accept_op(P, "]")) break;
            nodes_push(P, &items, parse_expr(P, true), NULL);
        }
        n = node(P, JN_LIST, t);
        n->args = items.v;
        n->nargs = items.n;
    } else if (accept_op(P, "{")) {
        nodes keys = {0}, vals = {0};
        while (!accept_op(P, "}")) {
            if (keys.n) expect_op(P, ",");
            if (accept_op(P, "}")) break;
            nodes_push(P, &keys, parse_expr(P, true), NULL);
            expect_op(P, ":");
            nodes_push(P, &vals, parse_expr(P, true), NULL);
        }
        n = node(P, JN_DICT, t);
        n->args = keys.v;
        n->kwvals = vals.v;
        n->nargs = keys.n;
    } else {
        unexpected(P, "an expression");
    }
    P->depth--;
    return n;
}

static jj_node *binop(parser *P, const jj_tok *t, jj_node_type type, const char *op, jj_node *a,
                      jj_node *b) {
    jj_node *n = node(P, type, t);
    snprintf(n->op, sizeof n->op, "%s", op);
    n->a = a;
    n->b = b;
    return n;
}

static jj_node *parse_unary(parser *P, bool with_filter) {
    const jj_tok *t = cur(P);
    enter(P);
    jj_node *n;
    if (accept_op(P, "-")) {
        n = node(P, JN_NEG, t);
        n->a = parse_unary(P, false);
    } else if (accept_op(P, "+")) {
        n = node(P, JN_POS, t);
        n->a = parse_unary(P, false);
    } else {
        n = parse_postfix(P, parse_primary(P));
    }
    if (with_filter) n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static jj_node *parse_pow(parser *P) {
    jj_node *n = parse_unary(P, true);
    while (is_op(cur(P), "**")) {
        const jj_tok *t = &P->t[P->i++];
        n = binop(P, t, JN_BINOP, "**", n, parse_unary(P, true));
    }
    return n;
}

static jj_node *parse_math2(parser *P) {
    jj_node *n = parse_pow(P);
    for (;;) {
        const jj_tok *t = cur(P);
        const char *op = is_op(t, "*")    ? "*"
                         : is_op(t, "/")  ? "/"
                         : is_op(t, "//") ? "//"
                         : is_op(t, "%")  ? "%"
                                          : NULL;
        if (!op) return n;
        P->i++;
        n = binop(P, t, JN_BINOP, op, n, parse_pow(P));
    }
}

static jj_node *parse_concat(parser *P) {
    jj_node *n = parse_math2(P);
    while (is_op(cur(P), "~")) {
        const jj_tok *t = &P->t[P->i++];
        n = binop(P, t, JN_BINOP, "~", n, parse_math2(P));
    }
    return n;
}

static jj_node *parse_math1(parser *P) {
    jj_node *n = parse_concat(P);
    for (;;) {
        const jj_tok *t = cur(P);
        const char *op = is_op(t, "+") ? "+" : is_op(t, "-") ? "-" : NULL;
        if (!op) return n;
        P->i++;
        n = binop(P, t, JN_BINOP, op, n, parse_concat(P));
    }
}

static jj_node *parse_compare(parser *P) {
    jj_node *n = parse_math1(P), *result = NULL;
    static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
    for (;;) {
        const jj_tok *t = cur(P);
        const char *op = NULL;
        for (size_t k = 0; k < sizeof ops / sizeof *ops && !op; k++)
            if (is_op(t, ops[k])) op = ops[k];
        if (op) {
            P->i++;
        } else if (is_name(t, "in")) {
            P->i++;
            op = "in";
        } else if (is_name(t, "not") && is_name(&P->t[P->i + 1], "in")) {
            P->i += 2;
            op = "ni";
        } else {
            return result ? result : n;
        }
        jj_node *rhs = parse_math1(P);
        /* a < b < c is (a < b) and (b < c) */
        jj_node *cmp = binop(P, t, JN_CMP, op, n, rhs);
        result = result ? binop(P, t, JN_AND, "and", result, cmp) : cmp;
        n = rhs;
    }
}

static jj_node *parse_not(parser *P) {
    const jj_tok *t = cur(P);
    if (accept_name(P, "not")) {
        enter(P);
        jj_node *n = node(P, JN_NOT, t);
        n->a = parse_not(P);
        P->depth--;
        return n;
    }
    return parse_compare(P);
}

static jj_node *parse_and(parser *P) {
    jj_node *n = parse_not(P);
    while (is_name(cur(P), "and")) {
        const jj_tok *t = &P->t[P->i++];
        n = binop(P, t, JN_AND, "and", n, parse_not(P));
    }
    return n;
}

static jj_node *parse_or(parser *P) {
    jj_node *n = parse_and(P);
    while (is_name(cur(P), "or")) {
        const jj_tok *t = &P->t[P->i++];
        n = binop(P, t, JN_OR, "or", n, parse_and(P));
    }
    return n;
}

static jj_node *parse_expr(parser *P, bool condexpr) {
    enter(P);
    jj_node *n = parse_or(P);
    while (condexpr && is_name(cur(P), "if")) {
        const jj_tok *t = &P->t[P->i++];
        jj_node *cond = node(P, JN_COND, t);
        cond->a = n;
        cond->b = parse_or(P);
        if (accept_name(P, "else")) cond->c = parse_expr(P, true);
        n = cond;
    }
    P->depth--;
    return n;
}

/* expr or an implicit tuple "a, b" (in {{ }} and set values) */
static jj_node *parse_tuple(parser *P, bool condexpr) {
    const jj_tok *t = cur(P);
    jj_node *n = parse_expr(P, condexpr);
    if (!is_op(cur(P), ",")) return n;
    nodes items = {0};
    nodes_push(P, &items, n, NULL);
    while (accept_op(P, ",")) {
        if (cur(P)->type == JT_VAR_END || cur(P)->type == JT_BLOCK_END) break;
        nodes_push(P, &items, parse_expr(P, condexpr), NULL);
    }
    jj_node *tup = node(P, JN_TUPLE, t);
    tup->args = items.v;
    tup->nargs = items.n;
    return tup;
}

/* ---- statements ---- */
static void parse_body(parser *P, const char *const *ends, const jj_tok *opener, nodes *out);

static void body_until(parser *P, const char *const *ends, const jj_tok *opener, jj_node ***v,
                       size_t *n) {
    nodes b = {0};
    parse_body(P, ends, opener, &b);
    *v = b.v;
    *n = b.n;
}

static void target_list(parser *P, jj_node *n) {
    nodes t = {0};
    do nodes_push(P, &t, NULL, expect_ident(P));
    while (accept_op(P, ","));
    n->targets = t.names;
    n->ntargets = t.n;
}

static jj_node *parse_if(parser *P, const jj_tok *t) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    static const char *const endif[] = {"endif", NULL};
    jj_node *n = node(P, JN_IF, t);
    n->a = parse_tuple(P, true);
    expect_block_end(P);
    body_until(P, ends, t, &n->body, &n->nbody);
    const jj_tok *e = cur(P);
    P->i++;
    if (is_name(e, "elif")) {
        n->els = road__jj_alloc(P->c, sizeof(jj_node *));
        n->els[0] = parse_if(P, e);
        n->nels = 1;
        return n;
    }
    if (is_name(e, "else")) {
        expect_block_end(P);
        body_until(P, endif, t, &n->els, &n->nels);
        P->i++;
    }
    expect_block_end(P);
    return n;
}

static jj_node *parse_stmt(parser *P) {
    const jj_tok *t = cur(P);
    if (t->type != JT_NAME) unexpected(P, "a statement name");
    P->i++;
    jj_node *n;
    if (is_name(t, "if")) return parse_if(P, t);
    if (is_name(t, "for")) {
        static const char *const ends[] = {"else", "endfor", NULL};
        static const char *const endfor[] = {"endfor", NULL};
        n = node(P, JN_FOR, t);
        target_list(P, n);
        if (!accept_name(P, "in")) unexpected(P, "'in'");
        n->a = parse_tuple(P, false);
        if (accept_name(P, "if")) n->b = parse_expr(P, true);
        if (is_name(cur(P), "recursive"))
            fail_at(P, cur(P), ROAD_ERR_UNSUPPORTED, "%s", "recursive for loops are not supported");
        expect_block_end(P);
        body_until(P, ends, t, &n->body, &n->nbody);
        if (accept_name(P, "else")) {
            expect_block_end(P);
            body_until(P, endfor, t, &n->els, &n->nels);
        }
        P->i++;
        expect_block_end(P);
        return n;
    }
    if (is_name(t, "set")) {
        static const char *const ends[] = {"endset", NULL};
        const char *first = expect_ident(P);
        if (is_op(cur(P), ".")) { /* set ns.attr = value */
            P->i++;
            n = node(P, JN_SET, t);
            jj_node *tgt = node(P, JN_NAME, t);
            tgt->name = first;
            tgt->name_len = strlen(first);
            n->a = tgt;
            n->name = expect_ident(P);
            expect_op(P, "=");
            n->b = parse_tuple(P, true);
            expect_block_end(P);
            return n;
        }
        nodes tg = {0};
        nodes_push(P, &tg, NULL, first);
        while (accept_op(P, ",")) nodes_push(P, &tg, NULL, expect_ident(P));
        if (accept_op(P, "=")) {
            n = node(P, JN_SET, t);
            n->b = parse_tuple(P, true);
        } else {
            if (tg.n != 1) unexpected(P, "'='");
            n = node(P, JN_SETBLOCK, t);
            jj_node *chain = NULL;
            while (accept_op(P, "|")) chain = parse_filter(P, chain);
            n->a = chain;
            expect_block_end(P);
            body_until(P, ends, t, &n->body, &n->nbody);
            P->i++;
        }
        n->targets = tg.names;
        n->ntargets = tg.n;
        expect_block_end(P);
        return n;
    }
    if (is_name(t, "macro")) {
        static const char *const ends[] = {"endmacro", NULL};
        n = node(P, JN_MACRO, t);
        n->name = expect_ident(P);
        expect_op(P, "(");
        nodes params = {0};
        while (!accept_op(P, ")")) {
            if (params.n) expect_op(P, ",");
            if (accept_op(P, ")")) break;
            const char *pn = expect_ident(P);
            nodes_push(P, &params, accept_op(P, "=") ? parse_expr(P, true) : NULL, pn);
        }
        n->targets = params.names;
        n->args = params.v;
        n->ntargets = n->nargs = params.n;
        expect_block_end(P);
        body_until(P, ends, t, &n->body, &n->nbody);
        P->i++;
        if (cur(P)->type == JT_NAME) P->i++; /* {% endmacro name %} */
        expect_block_end(P);
        return n;
    }
    if (is_name(t, "filter")) {
        static const char *const ends[] = {"endfilter", NULL};
        n = node(P, JN_FILTERBLOCK, t);
        jj_node *chain = parse_filter(P, NULL);
        while (accept_op(P, "|")) chain = parse_filter(P, chain);
        n->a = chain;
        expect_block_end(P);
        body_until(P, ends, t, &n->body, &n->nbody);
        P->i++;
        expect_block_end(P);
        return n;
    }
    if (is_name(t, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        n = node(P, JN_GENERATION, t);
        expect_block_end(P);
        body_until(P, ends, t, &n->body, &n->nbody);
        P->i++;
        expect_block_end(P);
        return n;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        n = node(P, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, t);
        expect_block_end(P);
        return n;
    }
    char name[48];
    snprintf(name, sizeof name, "%.*s", (int)(t->n > 40 ? 40 : t->n), t->p);
    static const char *const known[] = {"call",  "include", "import", "from",       "extends",
                                        "block", "with",    "do",     "autoescape", NULL};
    for (int k = 0; known[k]; k++)
        if (is_name(t, known[k]))
            fail_at(P, t, ROAD_ERR_UNSUPPORTED, "{%% %s %%} is not supported", name);
    fail_at(P, t, ROAD_ERR_FORMAT,
            "unknown statement '%s' (or a closing tag without its opening one)", name);
}

static bool in_list(const jj_tok *t, const char *const *names) {
    for (int k = 0; names && names[k]; k++)
        if (is_name(t, names[k])) return true;
    return false;
}

/* Statements until a block whose name is in ends (left at that name), or the end. */
static void parse_body(parser *P, const char *const *ends, const jj_tok *opener, nodes *out) {
    enter(P);
    for (;;) {
        const jj_tok *t = cur(P);
        if (t->type == JT_EOF) {
            if (ends) {
                char what[160];
                size_t k = 0;
                while (ends[k + 1]) k++;
                snprintf(what, sizeof what,
                         "unexpected end of template: {%% %s %%} missing for the '%.*s' of line %u",
                         ends[k], (int)(opener->n > 20 ? 20 : opener->n), opener->p,
                         (unsigned)opener->line);
                fail_at(P, t, ROAD_ERR_FORMAT, "%s", what);
            }
            break;
        }
        if (t->type == JT_TEXT) {
            jj_node *n = node(P, JN_TEXT, t);
            n->name = t->p;
            n->name_len = t->n;
            nodes_push(P, out, n, NULL);
            P->i++;
        } else if (t->type == JT_VAR_BEGIN) {
            P->i++;
            jj_node *n = node(P, JN_OUTPUT, t);
            n->a = parse_tuple(P, true);
            if (cur(P)->type != JT_VAR_END) unexpected(P, "'}}'");
            P->i++;
            nodes_push(P, out, n, NULL);
        } else if (t->type == JT_BLOCK_BEGIN) {
            if (in_list(&P->t[P->i + 1], ends)) {
                P->i++;
                break;
            }
            P->i++;
            nodes_push(P, out, parse_stmt(P), NULL);
        } else {
            unexpected(P, "text or a tag");
        }
    }
    P->depth--;
}

jj_node *road__jj_parse(jj_ctx *c, const jj_toks *toks) {
    parser P = {c, toks->v, toks->n, 0, 0};
    jj_node *root = node(&P, JN_IF, &toks->v[0]);
    nodes body = {0};
    parse_body(&P, NULL, NULL, &body);
    root->body = body.v;
    root->nbody = body.n;
    return root;
}
