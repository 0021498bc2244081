/*
 * tokenizer/jinja_internal.h - what the files of the Jinja engine share (private).
 *
 * The engine's files, bottom up: jinja_value.c (arenas, values, Python's str/repr/==/<,
 * JSON in and out), jinja_lex.c (source -> tokens, whitespace control), jinja_parse.c
 * (tokens -> tree), jinja_builtins.c (filters, tests, methods, globals), jinja_eval.c (the
 * renderer and the entry points of jinja.h).
 *
 * Memory and errors: a parse or a render allocates only from its arena (one road__malloc per
 * chunk, all freed at once), and an error anywhere longjmps back to the entry point, which
 * frees the arena. So no code path can leak, every allocation failure is an error like any
 * other, and the code reads as the straight-line Python semantics it copies.
 */
#ifndef ROAD_TOKENIZER_JINJA_INTERNAL_H
#define ROAD_TOKENIZER_JINJA_INTERNAL_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/jinja.h"

/* ---- arena and errors ---- */
typedef struct jj_chunk jj_chunk;
typedef struct jj_ctx {
    jj_chunk *chunks;
    size_t used, cap; /* bytes taken from road__malloc, and the bound */
    jmp_buf *jump;    /* where an error goes */
    int64_t steps, max_steps;
    road_status status; /* of the failure being unwound */
} jj_ctx;

/* Record the message (road__error) and longjmp out. line 0: no line known. */
_Noreturn void road__jj_fail(jj_ctx *c, road_status s, uint32_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void *road__jj_alloc(jj_ctx *c, size_t n); /* zeroed, 16-byte aligned; never NULL */
void road__jj_arena_free(jj_ctx *c);
char *road__jj_strndup(jj_ctx *c, const char *s, size_t n); /* NUL-terminated copy */
/* One step of work; fails past max_steps. */
void road__jj_step(jj_ctx *c, uint32_t line, int64_t n);

/* A growable byte buffer in the arena. */
typedef struct jj_buf {
    char *p;
    size_t len, cap, max;
} jj_buf;
void road__jj_put(jj_ctx *c, jj_buf *b, const char *s, size_t n);
void road__jj_putc(jj_ctx *c, jj_buf *b, char ch);
void road__jj_printf(jj_ctx *c, jj_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- values ---- */
typedef enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, /* list or tuple (l->tuple) */
    JV_DICT,
    JV_NS,    /* namespace(): a dict whose attributes can be set */
    JV_MACRO, /* a {% macro %} */
    JV_FUNC,  /* a builtin: global function or bound method (name, self) */
    JV_LOOP,  /* the `loop` variable of a for */
} jv_kind;

struct jj_node;
struct jj_loop;

typedef struct jv {
    uint8_t k;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct jj_list *l;
        struct jj_dict *d; /* JV_DICT, JV_NS */
        const struct jj_node *macro;
        struct jj_func *fn;
        struct jj_loop *loop;
        const char *undef; /* the name that was undefined, for messages (may be NULL) */
    } u;
} jv;

typedef struct jj_list {
    size_t n, cap;
    jv *v;
    bool tuple;
} jj_list;
typedef struct jj_dict { /* insertion-ordered; keys are usually strings; linear lookup */
    size_t n, cap;
    jv *k, *v;
} jj_dict;
typedef struct jj_func {
    const char *name;
    jv self; /* JV_UNDEF for a global */
} jj_func;

jv road__jv_str(jj_ctx *c, const char *s, size_t n); /* copies */
static inline jv jv_strref(const char *s, size_t n) {
    jv v = {.k = JV_STR};
    v.u.s.p = s;
    v.u.s.n = n;
    return v;
}
static inline jv jv_int(int64_t i) {
    jv v = {.k = JV_INT};
    v.u.i = i;
    return v;
}
static inline jv jv_float(double f) {
    jv v = {.k = JV_FLOAT};
    v.u.f = f;
    return v;
}
static inline jv jv_bool(bool b) {
    jv v = {.k = JV_BOOL};
    v.u.b = b;
    return v;
}
static inline jv jv_none(void) {
    jv v = {.k = JV_NONE};
    return v;
}
static inline jv jv_undef(const char *name) {
    jv v = {.k = JV_UNDEF};
    v.u.undef = name;
    return v;
}
jv road__jv_list(jj_ctx *c, size_t cap);
void road__jv_list_push(jj_ctx *c, jv list, jv item);
jv road__jv_dict(jj_ctx *c, size_t cap);
void road__jv_dict_set(jj_ctx *c, jv dict, jv key, jv val); /* replaces an equal key */
/* The value under `key` (a string), or NULL. */
jv *road__jv_dict_get(jv dict, const char *key, size_t n);
jv *road__jv_dict_getv(jv dict, jv key);

const char *road__jv_type_name(jv v); /* Python's: "str", "int", "list", "dict", "NoneType" */
bool road__jv_truthy(jv v);
bool road__jv_eq(jv a, jv b);
/* Python's a < b for numbers, strings and sequences; fails (line) for other pairs. */
int road__jv_cmp(jj_ctx *c, uint32_t line, jv a, jv b);
bool road__jv_is_number(jv v); /* int, float or bool */
double road__jv_as_double(jv v);
/* str(v) appended to b (Undefined prints nothing, None "None", 1.0 "1.0", lists as repr). */
void road__jv_to_str(jj_ctx *c, jj_buf *b, jv v);
jv road__jv_stringify(jj_ctx *c, jv v); /* str(v) as a value (a string is itself) */
void road__jv_repr(jj_ctx *c, jj_buf *b, jv v);
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys): indent < 0 for None;
 * item_sep/key_sep NULL for the defaults. */
void road__jv_tojson(jj_ctx *c, uint32_t line, jj_buf *b, jv v, const char *indent,
                     const char *item_sep, const char *key_sep, bool sort_keys, bool ensure_ascii);
jv road__jv_from_json(jj_ctx *c, const struct cJSON *j, int depth);
size_t road__jv_utf8_len(const char *s, size_t n); /* characters in valid UTF-8 */

/* ---- tokens and tree ---- */
typedef enum {
    JT_TEXT,
    JT_VAR_BEGIN,
    JT_VAR_END,
    JT_BLOCK_BEGIN,
    JT_BLOCK_END,
    JT_NAME,
    JT_STRING,
    JT_INT,
    JT_FLOAT,
    JT_OP,
    JT_EOF
} jj_tok_type;
typedef struct jj_tok {
    uint8_t type;
    uint32_t line, col;
    const char *p; /* text (JT_TEXT, JT_NAME, JT_OP) or the decoded string (JT_STRING) */
    size_t n;
    int64_t i;
    double f;
} jj_tok;
typedef struct jj_toks {
    jj_tok *v;
    size_t n, cap;
} jj_toks;
/* Tokenize src as jinja2's lexer with trim_blocks and lstrip_blocks: text tokens come out with
 * whitespace control already applied. */
void road__jj_lex(jj_ctx *c, const char *src, size_t len, jj_toks *out);

typedef enum {
    /* expressions */
    JN_LIT,
    JN_NAME,
    JN_LIST,
    JN_TUPLE,
    JN_DICT,
    JN_GETATTR,
    JN_GETITEM,
    JN_SLICE,
    JN_CALL,
    JN_FILTER,
    JN_TEST,
    JN_BINOP,
    JN_NEG,
    JN_POS,
    JN_NOT,
    JN_AND,
    JN_OR,
    JN_CMP,
    JN_COND,
    JN_CONCAT,
    /* statements */
    JN_TEXT,
    JN_OUTPUT,
    JN_IF,
    JN_FOR,
    JN_SET,
    JN_SETBLOCK,
    JN_MACRO,
    JN_FILTERBLOCK,
    JN_GENERATION,
    JN_BREAK,
    JN_CONTINUE,
    JN_CALLBLOCK,
} jj_node_type;

typedef struct jj_node {
    uint8_t type;
    uint8_t neg; /* JN_TEST: "is not" */
    uint32_t line;
    char op[4]; /* JN_BINOP, JN_CMP: "+", "//", "==", "in", "ni" (not in) */
    const struct jj_node *a, *b, *c;
    const char *name; /* JN_NAME, JN_GETATTR, JN_FILTER, JN_TEST, JN_MACRO, JN_TEXT (bytes) */
    size_t name_len;
    jv lit;
    struct jj_node **args; /* call/filter/test args, list items, dict keys, param defaults */
    size_t nargs;
    struct jj_node **kwvals; /* keyword arguments, dict values */
    const char **kwnames;
    size_t nkw;
    const char **targets; /* for / set targets, macro parameters */
    size_t ntargets;
    struct jj_node **body, **els; /* statement lists */
    size_t nbody, nels;
} jj_node;

/* Parse tokens into a statement list (the root: JN_IF-less list in body). */
jj_node *road__jj_parse(jj_ctx *c, const jj_toks *toks);

/* ---- the renderer, as the builtins see it ---- */
typedef struct jj_render jj_render;
typedef struct jj_args {
    jv *pos;
    size_t npos;
    const char **kwnames;
    jv *kw;
    size_t nkw;
} jj_args;
/* A filter (name, applied to v), a test, a call of a builtin function or method. Each fails
 * with the line and the name for an unknown name or a wrong argument. */
jv road__jj_filter(jj_render *r, uint32_t line, const char *name, jv v, const jj_args *a);
bool road__jj_test(jj_render *r, uint32_t line, const char *name, jv v, const jj_args *a);
jv road__jj_call_func(jj_render *r, uint32_t line, const jj_func *f, const jj_args *a);
/* obj.name: a method of a str / dict / list / loop as a JV_FUNC, or JV_UNDEF if none. */
jv road__jj_method(jj_render *r, jv obj, const char *name);
jj_ctx *road__jj_render_ctx(jj_render *r);
int64_t road__jj_render_now(jj_render *r);
/* Call a macro value (for the map / selectattr machinery, unused today) or any callable. */
jv road__jj_call_value(jj_render *r, uint32_t line, jv callee, const jj_args *a);
/* Python's x[key] / getattr for jinja2: attribute or item as jinja2's getattr/getitem do. */
jv road__jj_getattr(jj_render *r, uint32_t line, jv obj, const char *name, size_t n);
jv road__jj_getitem(jj_render *r, uint32_t line, jv obj, jv key);

#endif
