/*
 * tokenizer/jinja_eval.c - the renderer: statements and expressions of the parsed tree, with
 * jinja2's scoping, and the entry points of jinja.h.
 *
 * Scopes as jinja2 has them: the render's variables and top-level `set`s live in the root
 * frame; every iteration of a for gets a fresh frame (a `set` inside a loop is gone after the
 * iteration: that is why templates use namespace()); if-blocks share their frame; a macro
 * runs in a frame whose parent is the root (it sees top-level variables at call time, not the
 * caller's locals).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/jinja_internal.h"

struct road__jinja {
    jj_ctx c; /* the parse arena: tokens, tree, literals */
    jj_node *root;
};

typedef struct jj_frame {
    struct jj_frame *parent;
    jv vars; /* dict */
} jj_frame;

struct jj_loop {
    jj_list *items;
    size_t i;
};

typedef struct span_list {
    road__jinja_span *v;
    size_t n, cap;
} span_list;

struct jj_render {
    jj_ctx *c;
    jj_frame *root;
    int capture;    /* > 0 while rendering into a variable (set block, macro, filter block) */
    int call_depth; /* macros running */
    int depth;      /* recursion of exec/eval */
    int ctrl;       /* 1 break, 2 continue: unwinding to the innermost for */
    int64_t now;
    size_t max_output;
    span_list spans;
};

enum { CTRL_NONE, CTRL_BREAK, CTRL_CONTINUE };

jj_ctx *road__jj_render_ctx(jj_render *r) {
    return r->c;
}
int64_t road__jj_render_now(jj_render *r) {
    return r->now;
}

static void exec_body(jj_render *r, jj_frame *f, jj_node *const *body, size_t n, jj_buf *out);
static jv eval(jj_render *r, jj_frame *f, const jj_node *n);

static void enter(jj_render *r, uint32_t line) {
    if (++r->depth > 4 * ROAD_JINJA_MAX_DEPTH)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "rendering nests deeper than %d levels",
                      4 * ROAD_JINJA_MAX_DEPTH);
}

static jj_frame *frame_new(jj_render *r, jj_frame *parent) {
    jj_frame *f = road__jj_alloc(r->c, sizeof *f);
    f->parent = parent;
    f->vars = road__jv_dict(r->c, 4);
    return f;
}

static const char *const GLOBALS[] = {"range",        "namespace", "raise_exception",
                                      "strftime_now", "dict",      NULL};

static jv lookup(jj_render *r, jj_frame *f, const char *name, size_t n) {
    for (; f; f = f->parent) {
        jv *v = road__jv_dict_get(f->vars, name, n);
        if (v) return *v;
    }
    for (int k = 0; GLOBALS[k]; k++) {
        if (strlen(GLOBALS[k]) == n && memcmp(GLOBALS[k], name, n) == 0) {
            jv v = {.k = JV_FUNC};
            v.u.fn = road__jj_alloc(r->c, sizeof(jj_func));
            v.u.fn->name = GLOBALS[k];
            return v;
        }
    }
    return jv_undef(name);
}

static void assign(jj_render *r, jj_frame *f, const char *name, jv v) {
    road__jv_dict_set(r->c, f->vars, jv_strref(name, strlen(name)), v);
}

static jv loop_value(jj_render *r, struct jj_loop *L) {
    (void)r;
    jv v = {.k = JV_LOOP};
    v.u.loop = L;
    return v;
}

/* ---- attribute and item access ---- */
static jv loop_attr(jj_render *r, struct jj_loop *L, const char *name) {
    int64_t n = (int64_t)L->items->n, i = (int64_t)L->i;
    if (!strcmp(name, "index")) return jv_int(i + 1);
    if (!strcmp(name, "index0")) return jv_int(i);
    if (!strcmp(name, "revindex")) return jv_int(n - i);
    if (!strcmp(name, "revindex0")) return jv_int(n - i - 1);
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i == n - 1);
    if (!strcmp(name, "length")) return jv_int(n);
    if (!strcmp(name, "depth")) return jv_int(1);
    if (!strcmp(name, "depth0")) return jv_int(0);
    if (!strcmp(name, "previtem")) return i > 0 ? L->items->v[i - 1] : jv_undef("previtem");
    if (!strcmp(name, "nextitem")) return i + 1 < n ? L->items->v[i + 1] : jv_undef("nextitem");
    return road__jj_method(r, loop_value(r, L), name);
}

/* Byte offset of code point `idx` in s (idx <= character count). */
static size_t cp_offset(const char *s, size_t n, size_t idx) {
    size_t k = 0, i = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
        if (k == idx) return i;
        k++;
    }
    return n;
}

jv road__jj_getitem(jj_render *r, uint32_t line, jv obj, jv key) {
    switch (obj.k) {
    case JV_UNDEF:
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "'%s' is undefined",
                      obj.u.undef ? obj.u.undef : "value");
    case JV_DICT:
    case JV_NS: {
        jv *v = road__jv_dict_getv(obj, key);
        if (v) return *v;
        if (key.k == JV_STR) return road__jj_getattr(r, line, obj, key.u.s.p, key.u.s.n);
        return jv_undef(NULL);
    }
    case JV_LIST:
    case JV_STR: {
        if (key.k == JV_STR) return road__jj_getattr(r, line, obj, key.u.s.p, key.u.s.n);
        if (key.k != JV_INT && key.k != JV_BOOL) return jv_undef(NULL);
        int64_t i = key.k == JV_BOOL ? key.u.b : key.u.i;
        int64_t len = obj.k == JV_LIST ? (int64_t)obj.u.l->n
                                       : (int64_t)road__jv_utf8_len(obj.u.s.p, obj.u.s.n);
        if (i < 0) i += len;
        if (i < 0 || i >= len) return jv_undef(NULL);
        if (obj.k == JV_LIST) return obj.u.l->v[i];
        size_t a = cp_offset(obj.u.s.p, obj.u.s.n, (size_t)i),
               b = cp_offset(obj.u.s.p, obj.u.s.n, (size_t)i + 1);
        return jv_strref(obj.u.s.p + a, b - a);
    }
    case JV_LOOP:
        if (key.k == JV_STR) return road__jj_getattr(r, line, obj, key.u.s.p, key.u.s.n);
        return jv_undef(NULL);
    default:
        return jv_undef(NULL);
    }
}

jv road__jj_getattr(jj_render *r, uint32_t line, jv obj, const char *name, size_t n) {
    char nm[64];
    if (obj.k == JV_UNDEF)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "'%s' is undefined",
                      obj.u.undef ? obj.u.undef : "value");
    if (n >= sizeof nm) return jv_undef(NULL);
    memcpy(nm, name, n);
    nm[n] = '\0';
    if (obj.k == JV_LOOP) return loop_attr(r, obj.u.loop, nm);
    jv m = road__jj_method(r, obj, nm);
    if (m.k != JV_UNDEF) return m;
    if (obj.k == JV_DICT || obj.k == JV_NS) {
        jv *v = road__jv_dict_get(obj, name, n);
        if (v) return *v;
    }
    return jv_undef(road__jj_strndup(r->c, name, n));
}

/* ---- operators ---- */
static jv arith(jj_render *r, uint32_t line, const char *op, jv a, jv b) {
    jj_ctx *c = r->c;
    if (op[0] == '~') {
        jj_buf buf = {0};
        buf.max = r->max_output;
        road__jv_to_str(c, &buf, a);
        road__jv_to_str(c, &buf, b);
        return jv_strref(buf.p ? buf.p : "", buf.len);
    }
    if (road__jv_is_number(a) && road__jv_is_number(b)) {
        bool ints = a.k != JV_FLOAT && b.k != JV_FLOAT;
        int64_t x = a.k == JV_BOOL ? a.u.b : a.u.i, y = b.k == JV_BOOL ? b.u.b : b.u.i, z;
        double p = road__jv_as_double(a), q = road__jv_as_double(b);
        switch (op[0]) {
        case '+':
            if (ints) {
                if (__builtin_add_overflow(x, y, &z)) goto overflow;
                return jv_int(z);
            }
            return jv_float(p + q);
        case '-':
            if (ints) {
                if (__builtin_sub_overflow(x, y, &z)) goto overflow;
                return jv_int(z);
            }
            return jv_float(p - q);
        case '*':
            if (op[1] == '*') {
                if (ints && y >= 0) {
                    int64_t acc = 1;
                    for (int64_t k = 0; k < y; k++) {
                        if (__builtin_mul_overflow(acc, x, &acc)) goto overflow;
                        if (acc == 0 || acc == 1) break;
                        road__jj_step(c, line, 1);
                    }
                    if (acc == 1 && x == -1) acc = (y % 2) ? -1 : 1;
                    return jv_int(acc);
                }
                return jv_float(__builtin_pow(p, q));
            }
            if (ints) {
                if (__builtin_mul_overflow(x, y, &z)) goto overflow;
                return jv_int(z);
            }
            return jv_float(p * q);
        case '/':
            if (q == 0.0) road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "division by zero");
            if (op[1] == '/') {
                if (ints) {
                    if (x == INT64_MIN && y == -1) goto overflow;
                    int64_t d = x / y;
                    if ((x % y != 0) && ((x < 0) != (y < 0))) d--;
                    return jv_int(d);
                }
                return jv_float(__builtin_floor(p / q));
            }
            return jv_float(p / q);
        case '%':
            if (q == 0.0) road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "modulo by zero");
            if (ints) {
                if (y == -1) return jv_int(0);
                int64_t m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) m += y;
                return jv_int(m);
            } else {
                double m = __builtin_fmod(p, q);
                if (m != 0 && ((m < 0) != (q < 0))) m += q;
                return jv_float(m);
            }
        }
    }
    if (op[0] == '+' && a.k == JV_STR && b.k == JV_STR) return arith(r, line, "~", a, b);
    if (op[0] == '+' && a.k == JV_LIST && b.k == JV_LIST && a.u.l->tuple == b.u.l->tuple) {
        jv l = road__jv_list(c, a.u.l->n + b.u.l->n);
        l.u.l->tuple = a.u.l->tuple;
        for (size_t i = 0; i < a.u.l->n; i++) road__jv_list_push(c, l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++) road__jv_list_push(c, l, b.u.l->v[i]);
        road__jj_step(c, line, (int64_t)l.u.l->n);
        return l;
    }
    if (op[0] == '*' && op[1] == '\0' && (a.k == JV_INT || b.k == JV_INT) &&
        (a.k == JV_STR || b.k == JV_STR || a.k == JV_LIST || b.k == JV_LIST)) {
        jv s = a.k == JV_INT ? b : a;
        int64_t times = a.k == JV_INT ? a.u.i : b.u.i;
        if (times < 0) times = 0;
        size_t unit = s.k == JV_STR ? s.u.s.n : s.u.l->n;
        if (unit && (uint64_t)times > (uint64_t)r->max_output / unit)
            road__jj_fail(c, ROAD_ERR_INVALID_ARG, line,
                          "repeating %zu items %lld times is too long", unit, (long long)times);
        road__jj_step(c, line, times * (int64_t)(unit ? unit : 1) / 16 + 1);
        if (s.k == JV_STR) {
            jj_buf buf = {0};
            for (int64_t k = 0; k < times; k++) road__jj_put(c, &buf, s.u.s.p, s.u.s.n);
            return jv_strref(buf.p ? buf.p : "", buf.len);
        }
        jv l = road__jv_list(c, unit * (size_t)times);
        for (int64_t k = 0; k < times; k++)
            for (size_t i = 0; i < unit; i++) road__jv_list_push(c, l, s.u.l->v[i]);
        return l;
    }
    if (op[0] == '%' && a.k == JV_STR)
        road__jj_fail(c, ROAD_ERR_UNSUPPORTED, line,
                      "printf-style formatting with %% is not supported; use ~ or format");
    road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "unsupported operand types for %s: '%s' and '%s'",
                  op, road__jv_type_name(a), road__jv_type_name(b));
overflow:
    road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "integer overflow in %s", op);
}

static bool contains(jj_render *r, uint32_t line, jv item, jv seq) {
    switch (seq.k) {
    case JV_STR:
        if (item.k != JV_STR)
            road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line,
                          "'in <string>' requires string as left operand, not %s",
                          road__jv_type_name(item));
        if (item.u.s.n == 0) return true;
        for (size_t i = 0; i + item.u.s.n <= seq.u.s.n; i++)
            if (memcmp(seq.u.s.p + i, item.u.s.p, item.u.s.n) == 0) return true;
        return false;
    case JV_LIST:
        road__jj_step(r->c, line, (int64_t)seq.u.l->n);
        for (size_t i = 0; i < seq.u.l->n; i++)
            if (road__jv_eq(seq.u.l->v[i], item)) return true;
        return false;
    case JV_DICT:
    case JV_NS:
        return road__jv_dict_getv(seq, item) != NULL;
    case JV_UNDEF:
        return false;
    default:
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "argument of type '%s' is not iterable",
                      road__jv_type_name(seq));
    }
}

static bool compare(jj_render *r, uint32_t line, const char *op, jv a, jv b) {
    if (!strcmp(op, "==")) return road__jv_eq(a, b);
    if (!strcmp(op, "!=")) return !road__jv_eq(a, b);
    if (!strcmp(op, "in")) return contains(r, line, a, b);
    if (!strcmp(op, "ni")) return !contains(r, line, a, b);
    int c = road__jv_cmp(r->c, line, a, b);
    if (!strcmp(op, "<")) return c < 0;
    if (!strcmp(op, "<=")) return c <= 0;
    if (!strcmp(op, ">")) return c > 0;
    return c >= 0;
}

/* Python's slice indices for a sequence of len items. */
static void slice_bounds(int64_t len, const jv *sv, int64_t *start, int64_t *stop, int64_t *step) {
    *step = sv[2].k == JV_INT ? sv[2].u.i : 1;
    bool neg = *step < 0;
    int64_t lo = neg ? -1 : 0, hi = neg ? len - 1 : len;
    for (int k = 0; k < 2; k++) {
        int64_t *x = k == 0 ? start : stop;
        if (sv[k].k != JV_INT) {
            *x = k == 0 ? (neg ? hi : lo) : (neg ? lo : hi);
            continue;
        }
        *x = sv[k].u.i;
        if (*x < 0) {
            *x += len;
            if (*x < lo) *x = lo;
        } else if (*x > hi) {
            *x = hi;
        }
    }
}

static jv slice(jj_render *r, uint32_t line, jv obj, const jv *sv) {
    for (int k = 0; k < 3; k++)
        if (sv[k].k != JV_INT && sv[k].k != JV_NONE && sv[k].k != JV_UNDEF)
            road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line,
                          "slice indices must be integers or None");
    if (sv[2].k == JV_INT && sv[2].u.i == 0)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "slice step cannot be zero");
    bool is_str = obj.k == JV_STR;
    if (!is_str && obj.k != JV_LIST)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "cannot slice a %s",
                      road__jv_type_name(obj));
    size_t *offs = NULL;
    int64_t len;
    if (is_str) {
        len = (int64_t)road__jv_utf8_len(obj.u.s.p, obj.u.s.n);
        offs = road__jj_alloc(r->c, ((size_t)len + 1) * sizeof(size_t));
        size_t k = 0;
        for (size_t i = 0; i < obj.u.s.n; i++)
            if (((unsigned char)obj.u.s.p[i] & 0xC0) != 0x80) offs[k++] = i;
        offs[k] = obj.u.s.n;
    } else {
        len = (int64_t)obj.u.l->n;
    }
    int64_t start, stop, step;
    slice_bounds(len, sv, &start, &stop, &step);
    road__jj_step(r->c, line, len / 16 + 1);
    jj_buf b = {0};
    jv l = is_str ? jv_none() : road__jv_list(r->c, 0);
    if (!is_str) l.u.l->tuple = obj.u.l->tuple;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (is_str)
            road__jj_put(r->c, &b, obj.u.s.p + offs[i], offs[i + 1] - offs[i]);
        else
            road__jv_list_push(r->c, l, obj.u.l->v[i]);
    }
    return is_str ? jv_strref(b.p ? b.p : "", b.len) : l;
}

/* ---- calls ---- */
static void eval_args(jj_render *r, jj_frame *f, const jj_node *n, jj_args *a) {
    memset(a, 0, sizeof *a);
    a->npos = n->nargs;
    a->nkw = n->nkw;
    a->kwnames = n->kwnames;
    if (n->nargs) a->pos = road__jj_alloc(r->c, n->nargs * sizeof(jv));
    if (n->nkw) a->kw = road__jj_alloc(r->c, n->nkw * sizeof(jv));
    for (size_t i = 0; i < n->nargs; i++) a->pos[i] = eval(r, f, n->args[i]);
    for (size_t i = 0; i < n->nkw; i++) a->kw[i] = eval(r, f, n->kwvals[i]);
}

static jv call_macro(jj_render *r, uint32_t line, const jj_node *m, const jj_args *a) {
    if (a->npos > m->ntargets)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line,
                      "macro '%s' takes not more than %zu argument(s)", m->name, m->ntargets);
    if (r->call_depth >= ROAD_JINJA_MAX_CALL_DEPTH)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line,
                      "macro calls nest deeper than %d (ROAD_JINJA_MAX_CALL_DEPTH)",
                      ROAD_JINJA_MAX_CALL_DEPTH);
    jj_frame *f = frame_new(r, r->root);
    for (size_t k = 0; k < a->nkw; k++) {
        bool found = false;
        for (size_t p = 0; p < m->ntargets; p++)
            found = found || !strcmp(m->targets[p], a->kwnames[k]);
        if (!found)
            road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "macro '%s' has no parameter '%s'",
                          m->name, a->kwnames[k]);
    }
    for (size_t p = 0; p < m->ntargets; p++) {
        jv v = jv_undef(m->targets[p]);
        bool set = false;
        if (p < a->npos) {
            v = a->pos[p];
            set = true;
        }
        for (size_t k = 0; k < a->nkw; k++)
            if (!strcmp(m->targets[p], a->kwnames[k])) {
                v = a->kw[k];
                set = true;
            }
        if (!set && m->args[p]) v = eval(r, f, m->args[p]);
        assign(r, f, m->targets[p], v);
    }
    jj_buf out = {0};
    out.max = r->max_output;
    r->call_depth++;
    r->capture++;
    exec_body(r, f, m->body, m->nbody, &out);
    r->capture--;
    r->call_depth--;
    r->ctrl = CTRL_NONE;
    return jv_strref(out.p ? out.p : "", out.len);
}

jv road__jj_call_value(jj_render *r, uint32_t line, jv callee, const jj_args *a) {
    if (callee.k == JV_MACRO) return call_macro(r, line, callee.u.macro, a);
    if (callee.k == JV_FUNC) return road__jj_call_func(r, line, callee.u.fn, a);
    if (callee.k == JV_UNDEF)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "'%s' is undefined",
                      callee.u.undef ? callee.u.undef : "value");
    road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, line, "'%s' object is not callable",
                  road__jv_type_name(callee));
}

/* ---- expressions ---- */
static jv eval(jj_render *r, jj_frame *f, const jj_node *n) {
    road__jj_step(r->c, n->line, 1);
    enter(r, n->line);
    jv v;
    switch (n->type) {
    case JN_LIT:
        v = n->lit;
        break;
    case JN_NAME:
        v = lookup(r, f, n->name, n->name_len);
        break;
    case JN_LIST:
    case JN_TUPLE:
        v = road__jv_list(r->c, n->nargs);
        v.u.l->tuple = n->type == JN_TUPLE;
        for (size_t i = 0; i < n->nargs; i++) road__jv_list_push(r->c, v, eval(r, f, n->args[i]));
        break;
    case JN_DICT:
        v = road__jv_dict(r->c, n->nargs);
        for (size_t i = 0; i < n->nargs; i++) {
            jv k = eval(r, f, n->args[i]);
            if ((k.k == JV_LIST && !k.u.l->tuple) || k.k == JV_DICT || k.k == JV_UNDEF)
                road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, n->line,
                              "unhashable dict key of type '%s'", road__jv_type_name(k));
            road__jv_dict_set(r->c, v, k, eval(r, f, n->kwvals[i]));
        }
        break;
    case JN_GETATTR:
        v = road__jj_getattr(r, n->line, eval(r, f, n->a), n->name, n->name_len);
        break;
    case JN_GETITEM: {
        jv o = eval(r, f, n->a);
        v = road__jj_getitem(r, n->line, o, eval(r, f, n->b));
        break;
    }
    case JN_SLICE: {
        jv o = eval(r, f, n->a), sv[3];
        for (int k = 0; k < 3; k++) sv[k] = n->args[k] ? eval(r, f, n->args[k]) : jv_none();
        v = slice(r, n->line, o, sv);
        break;
    }
    case JN_CALL: {
        jv callee = eval(r, f, n->a);
        jj_args a;
        eval_args(r, f, n, &a);
        v = road__jj_call_value(r, n->line, callee, &a);
        break;
    }
    case JN_FILTER: {
        jv x = eval(r, f, n->a);
        jj_args a;
        eval_args(r, f, n, &a);
        v = road__jj_filter(r, n->line, n->name, x, &a);
        break;
    }
    case JN_TEST: {
        jv x = eval(r, f, n->a);
        jj_args a;
        eval_args(r, f, n, &a);
        v = jv_bool(road__jj_test(r, n->line, n->name, x, &a) != (bool)n->neg);
        break;
    }
    case JN_BINOP: {
        jv x = eval(r, f, n->a);
        v = arith(r, n->line, n->op, x, eval(r, f, n->b));
        break;
    }
    case JN_NEG:
    case JN_POS: {
        jv x = eval(r, f, n->a);
        if (!road__jv_is_number(x))
            road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, n->line,
                          "bad operand type for unary %c: '%s'", n->type == JN_NEG ? '-' : '+',
                          road__jv_type_name(x));
        if (x.k == JV_BOOL) x = jv_int(x.u.b);
        if (n->type == JN_POS)
            v = x;
        else if (x.k == JV_FLOAT)
            v = jv_float(-x.u.f);
        else if (x.u.i == INT64_MIN)
            road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, n->line, "integer overflow in -");
        else
            v = jv_int(-x.u.i);
        break;
    }
    case JN_NOT:
        v = jv_bool(!road__jv_truthy(eval(r, f, n->a)));
        break;
    case JN_AND: {
        jv x = eval(r, f, n->a);
        v = road__jv_truthy(x) ? eval(r, f, n->b) : x;
        break;
    }
    case JN_OR: {
        jv x = eval(r, f, n->a);
        v = road__jv_truthy(x) ? x : eval(r, f, n->b);
        break;
    }
    case JN_CMP: {
        jv x = eval(r, f, n->a);
        v = jv_bool(compare(r, n->line, n->op, x, eval(r, f, n->b)));
        break;
    }
    case JN_COND:
        if (road__jv_truthy(eval(r, f, n->b)))
            v = eval(r, f, n->a);
        else
            v = n->c ? eval(r, f, n->c) : jv_undef(NULL);
        break;
    default:
        road__jj_fail(r->c, ROAD_ERR_INTERNAL, n->line, "not an expression (node %d)", n->type);
    }
    r->depth--;
    return v;
}

/* ---- statements ---- */
static jj_list *iter_list(jj_render *r, uint32_t line, jv it) {
    jj_ctx *c = r->c;
    switch (it.k) {
    case JV_LIST:
        return it.u.l;
    case JV_UNDEF:
        return road__jv_list(c, 0).u.l;
    case JV_DICT:
    case JV_NS: {
        jv l = road__jv_list(c, it.u.d->n);
        for (size_t i = 0; i < it.u.d->n; i++) road__jv_list_push(c, l, it.u.d->k[i]);
        return l.u.l;
    }
    case JV_STR: {
        jv l = road__jv_list(c, 0);
        for (size_t i = 0; i < it.u.s.n;) {
            size_t j = i + 1;
            while (j < it.u.s.n && ((unsigned char)it.u.s.p[j] & 0xC0) == 0x80) j++;
            road__jv_list_push(c, l, jv_strref(it.u.s.p + i, j - i));
            i = j;
        }
        road__jj_step(c, line, (int64_t)l.u.l->n);
        return l.u.l;
    }
    default:
        road__jj_fail(c, ROAD_ERR_INVALID_ARG, line, "'%s' object is not iterable",
                      road__jv_type_name(it));
    }
}

static void bind_targets(jj_render *r, jj_frame *f, const jj_node *n, jv item) {
    if (n->ntargets == 1) {
        assign(r, f, n->targets[0], item);
        return;
    }
    jj_list *l = iter_list(r, n->line, item);
    if (l->n != n->ntargets)
        road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, n->line,
                      "cannot unpack %zu values into %zu names", l->n, n->ntargets);
    for (size_t i = 0; i < l->n; i++) assign(r, f, n->targets[i], l->v[i]);
}

static void exec_for(jj_render *r, jj_frame *f, const jj_node *n, jj_buf *out) {
    jj_list *items = iter_list(r, n->line, eval(r, f, n->a));
    if (n->b) { /* for x in xs if cond: the loop sees only the items that pass */
        jv kept = road__jv_list(r->c, 0);
        jj_frame *tf = frame_new(r, f);
        for (size_t i = 0; i < items->n; i++) {
            tf->vars.u.d->n = 0;
            bind_targets(r, tf, n, items->v[i]);
            if (road__jv_truthy(eval(r, tf, n->b))) road__jv_list_push(r->c, kept, items->v[i]);
        }
        items = kept.u.l;
    }
    if (items->n == 0) {
        exec_body(r, f, n->els, n->nels, out);
        return;
    }
    struct jj_loop *L = road__jj_alloc(r->c, sizeof *L);
    L->items = items;
    jj_frame *it = frame_new(r, f);
    for (L->i = 0; L->i < items->n; L->i++) {
        road__jj_step(r->c, n->line, 1);
        it->vars.u.d->n = 0; /* a fresh scope per iteration */
        bind_targets(r, it, n, items->v[L->i]);
        assign(r, it, "loop", loop_value(r, L));
        exec_body(r, it, n->body, n->nbody, out);
        if (r->ctrl == CTRL_BREAK) {
            r->ctrl = CTRL_NONE;
            break;
        }
        r->ctrl = CTRL_NONE;
    }
}

static void exec_stmt(jj_render *r, jj_frame *f, const jj_node *n, jj_buf *out) {
    road__jj_step(r->c, n->line, 1);
    enter(r, n->line);
    switch (n->type) {
    case JN_TEXT:
        road__jj_put(r->c, out, n->name, n->name_len);
        break;
    case JN_OUTPUT:
        road__jv_to_str(r->c, out, eval(r, f, n->a));
        break;
    case JN_IF:
        if (road__jv_truthy(eval(r, f, n->a)))
            exec_body(r, f, n->body, n->nbody, out);
        else
            exec_body(r, f, n->els, n->nels, out);
        break;
    case JN_FOR:
        exec_for(r, f, n, out);
        break;
    case JN_SET: {
        jv v = eval(r, f, n->b);
        if (n->a) {
            jv ns = eval(r, f, n->a);
            if (ns.k != JV_NS)
                road__jj_fail(r->c, ROAD_ERR_INVALID_ARG, n->line,
                              "cannot assign attribute on non-namespace object ('%s' is a %s)",
                              n->a->name, road__jv_type_name(ns));
            road__jv_dict_set(r->c, ns, jv_strref(n->name, strlen(n->name)), v);
        } else {
            bind_targets(r, f, n, v);
        }
        break;
    }
    case JN_SETBLOCK:
    case JN_FILTERBLOCK: {
        jj_buf b = {0};
        b.max = r->max_output;
        r->capture++;
        exec_body(r, f, n->body, n->nbody, &b);
        r->capture--;
        jv v = jv_strref(b.p ? b.p : "", b.len);
        if (n->a) { /* the filter chain, innermost first, applied to the captured text */
            const jj_node *chain[ROAD_JINJA_MAX_DEPTH + 1];
            int k = 0;
            for (const jj_node *x = n->a; x && k <= ROAD_JINJA_MAX_DEPTH; x = x->a) chain[k++] = x;
            while (k-- > 0) {
                jj_args a;
                eval_args(r, f, chain[k], &a);
                v = road__jj_filter(r, chain[k]->line, chain[k]->name, v, &a);
            }
        }
        if (n->type == JN_SETBLOCK)
            assign(r, f, n->targets[0], v);
        else
            road__jv_to_str(r->c, out, v);
        break;
    }
    case JN_MACRO: {
        jv m = {.k = JV_MACRO};
        m.u.macro = n;
        assign(r, f, n->name, m);
        break;
    }
    case JN_GENERATION: {
        size_t begin = out->len;
        exec_body(r, f, n->body, n->nbody, out);
        if (r->capture == 0) {
            span_list *s = &r->spans;
            if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 8;
                road__jinja_span *v = road__jj_alloc(r->c, cap * sizeof *v);
                if (s->n) memcpy(v, s->v, s->n * sizeof *v);
                s->v = v;
                s->cap = cap;
            }
            s->v[s->n].begin = begin;
            s->v[s->n++].end = out->len;
        }
        break;
    }
    case JN_BREAK:
        r->ctrl = CTRL_BREAK;
        break;
    case JN_CONTINUE:
        r->ctrl = CTRL_CONTINUE;
        break;
    default:
        road__jj_fail(r->c, ROAD_ERR_INTERNAL, n->line, "not a statement (node %d)", n->type);
    }
    r->depth--;
}

static void exec_body(jj_render *r, jj_frame *f, jj_node *const *body, size_t n, jj_buf *out) {
    for (size_t i = 0; i < n && r->ctrl == CTRL_NONE; i++) exec_stmt(r, f, body[i], out);
}

/* ---- entry points ---- */
road_status road__jinja_parse(const char *src, size_t len, road__jinja **out) {
    *out = NULL;
    if (src == NULL && len > 0) return road__error(ROAD_ERR_INVALID_ARG, "chat template: no text");
    road__jinja *t = road__calloc(1, sizeof *t);
    if (t == NULL) return ROAD_ERR_NO_MEMORY;
    jmp_buf jump;
    t->c.jump = &jump;
    t->c.cap = ROAD_JINJA_MAX_MEMORY;
    t->c.max_steps = INT64_MAX;
    if (setjmp(jump) != 0) {
        road_status s = t->c.status;
        road__jj_arena_free(&t->c);
        road__free(t);
        return s;
    }
    jj_toks toks = {0};
    road__jj_lex(&t->c, src ? src : "", len, &toks);
    t->root = road__jj_parse(&t->c, &toks);
    t->c.jump = NULL;
    *out = t;
    return ROAD_OK;
}

void road__jinja_free(road__jinja *t) {
    if (t == NULL) return;
    road__jj_arena_free(&t->c);
    road__free(t);
}

static int64_t clock_now(void) {
    const char *e = getenv("SOURCE_DATE_EPOCH");
    if (e && *e) {
        char *stop;
        long long v = strtoll(e, &stop, 10);
        if (*stop == '\0') return v;
    }
    return (int64_t)time(NULL);
}

/* What a render allocates before its setjmp: on the heap, so that nothing the error path
 * reads lives in a local variable changed after setjmp. */
typedef struct render_state {
    jj_ctx c;
    jj_render r;
    jmp_buf jump;
} render_state;

road_status road__jinja_render(const road__jinja *t, const cJSON *vars,
                               const road__jinja_opts *opts, road__jinja_result *out) {
    memset(out, 0, sizeof *out);
    if (t == NULL) return road__error(ROAD_ERR_INVALID_ARG, "chat template: no program");
    if (vars && !cJSON_IsObject(vars))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "chat template: the variables must be a JSON object");
    render_state *st = road__calloc(1, sizeof *st);
    if (st == NULL) return ROAD_ERR_NO_MEMORY;
    jj_ctx *c = &st->c;
    jj_render *r = &st->r;
    c->jump = &st->jump;
    c->cap = opts && opts->max_memory ? opts->max_memory : ROAD_JINJA_MAX_MEMORY;
    c->max_steps = opts && opts->max_steps ? opts->max_steps : ROAD_JINJA_MAX_STEPS;
    r->c = c;
    r->max_output = opts && opts->max_output ? opts->max_output : ROAD_JINJA_MAX_OUTPUT;
    r->now = opts && opts->now != ROAD_JINJA_NOW_AUTO ? opts->now : clock_now();
    if (setjmp(st->jump) != 0) {
        road_status s = c->status;
        road__jj_arena_free(c);
        road__free(st);
        return s;
    }
    r->root = frame_new(r, NULL);
    if (vars)
        for (const cJSON *e = vars->child; e; e = e->next)
            if (e->string)
                assign(r, r->root, road__jj_strndup(c, e->string, strlen(e->string)),
                       road__jv_from_json(c, e, 0));
    jj_buf buf = {0};
    buf.max = r->max_output;
    exec_body(r, r->root, t->root->body, t->root->nbody, &buf);
    size_t n_spans = r->spans.n;
    char *text = road__malloc(buf.len + 1);
    road__jinja_span *spans = n_spans ? road__malloc(n_spans * sizeof *spans) : NULL;
    road_status s = ROAD_OK;
    if (text == NULL || (n_spans && spans == NULL)) {
        road__free(text);
        road__free(spans);
        s = ROAD_ERR_NO_MEMORY;
    } else {
        if (buf.len) memcpy(text, buf.p, buf.len);
        text[buf.len] = '\0';
        if (n_spans) memcpy(spans, r->spans.v, n_spans * sizeof *spans);
        out->text = text;
        out->len = buf.len;
        out->spans = spans;
        out->n_spans = n_spans;
    }
    road__jj_arena_free(c);
    road__free(st);
    return s;
}

void road__jinja_result_free(road__jinja_result *r) {
    if (r == NULL) return;
    road__free(r->text);
    road__free(r->spans);
    memset(r, 0, sizeof *r);
}
