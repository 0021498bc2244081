/*
 * adapter/linear.c - the adapted linear layer (PEFT's road.Linear).
 *
 * A base linear y = x W^T + b holding named adapters. Semantics follow PEFT's Linear.forward,
 * merge and unmerge exactly (see road/linear.h); what differs is cost: adapters are applied
 * in place on the GEMM output, coefficients are cached per adapter and rebuilt only when the
 * parameters' version changes, and merge/unmerge work on the 2x2 blocks.
 *
 * The base weight is float32 (W) or quantized (road/quant.h: int8, NF4, FP4). A quantized layer
 * runs its GEMMs through the quantized matmuls; merging into it dequantizes W, rotates and
 * quantizes again, which rounds the weights anew (logged as a warning, as PEFT warns).
 *
 * Active and merged adapters are kept by name, as PEFT does, so deleting or re-adding an
 * adapter never leaves a dangling index; a name that is active but absent from this layer is
 * skipped (the adapter may target other layers of the model).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adapter/kernels.h"
#include "core/alloc.h"
#include "road/quant.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/finite.h"
#include "core/rng.h"
#include "adapter/linear_internal.h"

/* Adapter names become safetensors keys and folder names: keep them short and plain. */
#define ROAD_MAX_NAME 128

typedef struct adapter {
    char *name;
    road_variant variant;
    int32_t group_size;
    int64_t n;              /* entries in theta and in alpha */
    float *theta, *alpha;   /* [n] */
    float *dtheta, *dalpha; /* [n], allocated at the first backward */
    float *c1, *c2;         /* [out] coefficient cache */
    uint64_t version;       /* bumped when theta/alpha change */
    uint64_t cached;        /* version the cache was built from (0 = never) */
} adapter;

/* Active and merged names live in fixed-size slots with spare capacity: once capacity is
 * reserved (road__linear_reserve_names), changing the lists never allocates, which lets the
 * adapter manager change many layers without a failure halfway. */
#define NAME_SLOT (ROAD_MAX_NAME + 1)
typedef struct name_list {
    char (*slot)[NAME_SLOT];
    int32_t n, cap;
} name_list;

struct road_linear {
    int64_t in, out;
    float *w, *b;    /* w is NULL when the weight is quantized */
    road_qtensor *q; /* the quantized weight, or NULL */
    bool owned;
    adapter *ad;
    int32_t n_ad, cap_ad;
    name_list active;
    name_list merged; /* stack: last merged last */
    bool disabled;
};

/* ---- name lists -------------------------------------------------------------------------- */

static void names_free(name_list *l) {
    road__free(l->slot);
    l->slot = NULL;
    l->n = l->cap = 0;
}

static road_status names_reserve(name_list *l, int32_t cap) {
    if (cap <= l->cap) return ROAD_OK;
    int32_t c = l->cap ? 2 * l->cap : 4;
    if (c < cap) c = cap;
    char(*ns)[NAME_SLOT] = road__realloc(l->slot, sizeof(*ns) * (size_t)c);
    if (!ns) return ROAD_ERR_NO_MEMORY;
    l->slot = ns;
    l->cap = c;
    return ROAD_OK;
}

static int32_t names_find(const name_list *l, const char *name) {
    for (int32_t i = 0; i < l->n; i++)
        if (strcmp(l->slot[i], name) == 0) return i;
    return -1;
}

/* Names are checked to fit a slot (check_name) before they get here. */
static road_status names_push(name_list *l, const char *name) {
    ROAD_ASSERT(strlen(name) < NAME_SLOT);
    road_status s = names_reserve(l, l->n + 1);
    if (s != ROAD_OK) return s;
    strcpy(l->slot[l->n++], name);
    return ROAD_OK;
}

static void names_remove(name_list *l, int32_t i) {
    memmove(l->slot + i, l->slot + i + 1, sizeof(*l->slot) * (size_t)(l->n - i - 1));
    l->n--;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

road_linear_params road_linear_default_params(void) {
    road_linear_params p;
    memset(&p, 0, sizeof p);
    return p;
}

road_status road_linear_create(const road_linear_params *p, road_linear **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_linear_create: out is NULL");
    *out = NULL;
    if (!p || (!p->weight && !p->qweight))
        return road__error(ROAD_ERR_INVALID_ARG, "road_linear_create: the weight is required");
    if (p->weight && p->qweight)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_linear_create: give either a float weight or a quantized one");
    if (p->in_features <= 0 || p->out_features <= 0)
        return road__error(ROAD_ERR_SHAPE,
                           "road_linear_create: in_features and out_features must be positive, "
                           "got %lld and %lld",
                           (long long)p->in_features, (long long)p->out_features);
    size_t nw;
    if (road__size_mul((size_t)p->in_features, (size_t)p->out_features, &nw) != 0 ||
        road__size_mul(nw, sizeof(float), &nw) != 0)
        return road__error(ROAD_ERR_SHAPE, "road_linear_create: weight size overflows");
    if (p->qweight && (p->qweight->rows != p->out_features || p->qweight->cols != p->in_features))
        return road__error(ROAD_ERR_SHAPE,
                           "road_linear_create: the quantized weight is %lld x %lld, the layer "
                           "%lld x %lld",
                           (long long)p->qweight->rows, (long long)p->qweight->cols,
                           (long long)p->out_features, (long long)p->in_features);
    road_linear *l = road__calloc(1, sizeof *l);
    if (!l) return ROAD_ERR_NO_MEMORY;
    l->in = p->in_features;
    l->out = p->out_features;
    l->owned = !p->borrow;
    if (p->qweight) {
        road_status s = ROAD_OK;
        if (p->borrow)
            l->q = p->qweight;
        else
            s = road_qtensor_copy(p->qweight, &l->q);
        if (s == ROAD_OK && p->bias) {
            l->b = p->borrow ? p->bias : road__malloc((size_t)l->out * sizeof(float));
            if (!l->b)
                s = ROAD_ERR_NO_MEMORY;
            else if (!p->borrow)
                memcpy(l->b, p->bias, (size_t)l->out * sizeof(float));
        }
        if (s != ROAD_OK) {
            road_linear_free(l);
            return s;
        }
    } else if (p->borrow) {
        l->w = p->weight;
        l->b = p->bias;
    } else {
        l->w = road__malloc(nw);
        l->b = p->bias ? road__malloc((size_t)l->out * sizeof(float)) : NULL;
        if (!l->w || (p->bias && !l->b)) {
            road_linear_free(l);
            return ROAD_ERR_NO_MEMORY;
        }
        memcpy(l->w, p->weight, nw);
        if (p->bias) memcpy(l->b, p->bias, (size_t)l->out * sizeof(float));
    }
    *out = l;
    return ROAD_OK;
}

static void adapter_free(adapter *a) {
    road__free(a->name);
    road__free(a->theta);
    road__free(a->alpha);
    road__free(a->dtheta);
    road__free(a->dalpha);
    road__free(a->c1);
    road__free(a->c2);
}

void road_linear_free(road_linear *l) {
    if (!l) return;
    for (int32_t i = 0; i < l->n_ad; i++) adapter_free(&l->ad[i]);
    road__free(l->ad);
    names_free(&l->active);
    names_free(&l->merged);
    if (l->owned) {
        road__free(l->w);
        road__free(l->b);
        road_qtensor_free(l->q);
    }
    road__free(l);
}

int64_t road_linear_in_features(const road_linear *l) {
    return l->in;
}
int64_t road_linear_out_features(const road_linear *l) {
    return l->out;
}
const float *road_linear_weight(const road_linear *l) {
    return l->w;
}
void road__linear_rebind_weight(road_linear *l, float *w) {
    ROAD_ASSERT(l->w && !l->owned && w);
    l->w = w;
}

void road__linear_unpack_weight(road_linear *l, float *w) {
    ROAD_ASSERT(l->q && !l->owned && w);
    l->w = w;
    l->q = NULL;
}

void road__linear_rebind_qweight(road_linear *l, road_qtensor *q) {
    ROAD_ASSERT(l->q && !l->owned && q && q->rows == l->out && q->cols == l->in);
    l->q = q;
}

const float *road_linear_bias(const road_linear *l) {
    return l->b;
}
const road_qtensor *road_linear_qweight(const road_linear *l) {
    return l->q;
}

road_status road_linear_base_forward(road_linear *l, int64_t rows, const float *x, float *y) {
    if (rows < 0 || (rows > 0 && (!x || !y)))
        return road__error(ROAD_ERR_INVALID_ARG, "road_linear_base_forward: bad rows or NULL x, y");
    if (rows == 0) return ROAD_OK;
    if (l->q) return road_qtensor_xwt(l->q, rows, x, l->b, y);
    road__sgemm_xwt(rows, l->out, l->in, x, l->w, l->b, y);
    return ROAD_OK;
}

/* dx (rows, in) = dy (rows, out) W, through the dequantized weight for a quantized layer. */
static road_status base_dyw(const road_linear *l, int64_t rows, const float *dy, float *dx) {
    if (l->q) return road_qtensor_dyw(l->q, rows, dy, dx);
    road__sgemm_dyw(rows, l->out, l->in, dy, l->w, dx);
    return ROAD_OK;
}

road_status road_linear_dequantized_weight(const road_linear *l, float *w) {
    if (l->q) return road_qtensor_dequantize_rows(l->q, 0, l->out, w);
    memcpy(w, l->w, sizeof(float) * (size_t)l->out * (size_t)l->in);
    return ROAD_OK;
}

/* ---- adapters ------------------------------------------------------------------------------ */

static adapter *find(const road_linear *l, const char *name) {
    if (!name) return NULL;
    for (int32_t i = 0; i < l->n_ad; i++)
        if (strcmp(l->ad[i].name, name) == 0) return &l->ad[i];
    return NULL;
}

static road_status not_found(const road_linear *l, const char *name) {
    char have[512] = "";
    size_t k = 0;
    for (int32_t i = 0; i < l->n_ad && k + 4 < sizeof have; i++)
        k += (size_t)snprintf(have + k, sizeof have - k, "%s'%s'", i ? ", " : "", l->ad[i].name);
    return road__error(ROAD_ERR_NOT_FOUND, "no adapter named '%s' on this layer (it has %s)",
                       name ? name : "(null)", l->n_ad ? have : "no adapters");
}

static road_status check_name(const char *name) {
    if (!name || !*name)
        return road__error(ROAD_ERR_INVALID_ARG, "an adapter name must not be empty");
    size_t n = strlen(name);
    if (n > ROAD_MAX_NAME)
        return road__error(ROAD_ERR_INVALID_ARG, "adapter name is %zu characters; the limit is %d",
                           n, ROAD_MAX_NAME);
    if (strcmp(name, ROAD_BASE_NAME) == 0)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "'%s' is reserved for rows without an adapter; choose another name",
                           ROAD_BASE_NAME);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= ' ' || c == '.' || c == '/' || c == '\\' || c == 0x7f)
            return road__error(ROAD_ERR_INVALID_ARG,
                               "adapter name '%s' contains '%c' (0x%02x); names may not contain "
                               "spaces, control characters, '.', '/' or '\\' (they become "
                               "checkpoint keys and folder names)",
                               name, c > ' ' ? c : '?', c);
    }
    return ROAD_OK;
}

road_status road_linear_add_adapter(road_linear *l, const char *name, road_variant v,
                                    int32_t group_size, bool init_weights, uint64_t seed) {
    road_status s = check_name(name);
    if (s != ROAD_OK) return s;
    if (find(l, name))
        return road__error(ROAD_ERR_EXISTS, "an adapter named '%s' already exists on this layer",
                           name);
    s = road_check_shape(v, group_size, l->out, NULL);
    if (s != ROAD_OK) return s;
    if (l->n_ad == l->cap_ad) {
        int32_t cap = l->cap_ad ? 2 * l->cap_ad : 4;
        adapter *na = road__realloc(l->ad, sizeof(adapter) * (size_t)cap);
        if (!na) return ROAD_ERR_NO_MEMORY;
        l->ad = na;
        l->cap_ad = cap;
    }
    adapter a;
    memset(&a, 0, sizeof a);
    a.variant = v;
    a.group_size = group_size;
    a.n = road_param_count(v, l->out);
    a.version = 1;
    a.name = road__strdup(name);
    a.theta = road__malloc((size_t)a.n * sizeof(float));
    a.alpha = road__malloc((size_t)a.n * sizeof(float));
    if (!a.name || !a.theta || !a.alpha) {
        adapter_free(&a);
        return ROAD_ERR_NO_MEMORY;
    }
    if (init_weights) {
        for (int64_t i = 0; i < a.n; i++) {
            a.theta[i] = 0.0f;
            a.alpha[i] = 1.0f;
        }
    } else {
        /* PEFT's reset_parameters(init_weights=False): theta ~ N(0, 0.5), alpha ~ N(1, 0.5). */
        road_rng rng;
        road__rng_seed(&rng, seed);
        road__rng_fill_normal(&rng, a.theta, a.n, 0.0f, 0.5f);
        road__rng_fill_normal(&rng, a.alpha, a.n, 1.0f, 0.5f);
    }
    /* PEFT: a layer's first adapter becomes the active one. */
    if (l->n_ad == 0 && l->active.n == 0) {
        s = names_push(&l->active, name);
        if (s != ROAD_OK) {
            adapter_free(&a);
            return s;
        }
    }
    l->ad[l->n_ad++] = a;
    return ROAD_OK;
}

road_status road_linear_delete_adapter(road_linear *l, const char *name) {
    adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    if (names_find(&l->merged, name) >= 0)
        return road__error(ROAD_ERR_STATE,
                           "adapter '%s' is merged into the weights; unmerge before deleting it",
                           name);
    int32_t ai = (int32_t)(a - l->ad);
    int32_t act = names_find(&l->active, name);
    adapter_free(a);
    memmove(l->ad + ai, l->ad + ai + 1, sizeof(adapter) * (size_t)(l->n_ad - ai - 1));
    l->n_ad--;
    if (act >= 0) {
        names_remove(&l->active, act);
        /* PEFT: if no active adapter is left, the first remaining one becomes active. */
        bool any = false;
        for (int32_t i = 0; i < l->active.n; i++) any |= find(l, l->active.slot[i]) != NULL;
        if (!any && l->n_ad > 0) {
            l->active.n = 0;
            /* Cannot fail: the list held `name` a moment ago, so it has a slot. */
            road_status s = names_push(&l->active, l->ad[0].name);
            ROAD_ASSERT(s == ROAD_OK);
            road__log(ROAD_LOG_WARN, "adapter '%s' was active and is now deleted; '%s' is active",
                      name, l->ad[0].name);
        }
    }
    return ROAD_OK;
}

int32_t road_linear_adapter_count(const road_linear *l) {
    return l->n_ad;
}

const char *road_linear_adapter_name(const road_linear *l, int32_t i) {
    return i >= 0 && i < l->n_ad ? l->ad[i].name : NULL;
}

bool road_linear_has_adapter(const road_linear *l, const char *name) {
    return find(l, name) != NULL;
}

road_status road_linear_adapter_info(const road_linear *l, const char *name, road_variant *v,
                                     int32_t *group_size, int64_t *n_params) {
    const adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    if (v) *v = a->variant;
    if (group_size) *group_size = a->group_size;
    if (n_params) *n_params = a->n;
    return ROAD_OK;
}

road_status road_linear_adapter_params(road_linear *l, const char *name, float **theta,
                                       float **alpha, int64_t *n) {
    adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    if (theta) *theta = a->theta;
    if (alpha) *alpha = a->alpha;
    if (n) *n = a->n;
    return ROAD_OK;
}

road_status road_linear_params_changed(road_linear *l, const char *name) {
    adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    a->version++;
    return ROAD_OK;
}

road_status road_linear_set_params(road_linear *l, const char *name, const float *theta,
                                   const float *alpha, int64_t n) {
    adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    if (n != a->n)
        return road__error(
            ROAD_ERR_SHAPE,
            "adapter '%s' (%s, %lld features) has %lld parameters per tensor, got %lld", name,
            road_variant_name(a->variant), (long long)l->out, (long long)a->n, (long long)n);
    if (!theta || !alpha) return road__error(ROAD_ERR_INVALID_ARG, "theta and alpha are required");
    for (int k = 0; k < 2; k++) {
        int64_t bad = road_first_nonfinite(k ? alpha : theta, n);
        if (bad >= 0)
            return road__error(ROAD_ERR_NUMERIC,
                               "adapter '%s': %s[%lld] is %g; RoAd parameters must be finite "
                               "(nothing was changed)",
                               name, k ? "alpha" : "theta", (long long)bad,
                               (double)(k ? alpha : theta)[bad]);
    }
    memcpy(a->theta, theta, (size_t)n * sizeof(float));
    memcpy(a->alpha, alpha, (size_t)n * sizeof(float));
    a->version++;
    return ROAD_OK;
}

/* The cache: rebuilt only when the parameter version moved since it was built. */
static road_status adapter_rot(const road_linear *l, adapter *a, road_rot *r) {
    if (a->cached != a->version) {
        if (!a->c1) {
            a->c1 = road__malloc((size_t)l->out * sizeof(float));
            a->c2 = road__malloc((size_t)l->out * sizeof(float));
            if (!a->c1 || !a->c2) {
                road__free(a->c1);
                road__free(a->c2);
                a->c1 = a->c2 = NULL;
                return ROAD_ERR_NO_MEMORY;
            }
        }
        road_status s = road_coeffs_compute(a->variant, a->group_size, l->out, a->theta, a->alpha,
                                            a->c1, a->c2);
        if (s != ROAD_OK) return s;
        a->cached = a->version;
    }
    r->out = l->out;
    r->group_size = a->group_size;
    r->c1 = a->c1;
    r->c2 = a->c2;
    return ROAD_OK;
}

road_status road_linear_adapter_rot(road_linear *l, const char *name, road_rot *out) {
    adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    return adapter_rot(l, a, out);
}

/* ---- active / enabled ---------------------------------------------------------------------- */

road_status road_linear_set_active(road_linear *l, const char *const *names, int32_t n) {
    if (n < 0 || (n > 0 && !names))
        return road__error(ROAD_ERR_INVALID_ARG, "road_linear_set_active: bad name list");
    for (int32_t i = 0; i < n; i++) {
        road_status s = check_name(names[i]);
        if (s != ROAD_OK) return s;
        for (int32_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "adapter '%s' is listed twice in the active adapters", names[i]);
    }
    road_status s = names_reserve(&l->active, n);
    if (s != ROAD_OK) return s;
    l->active.n = 0;
    for (int32_t i = 0; i < n; i++) strcpy(l->active.slot[l->active.n++], names[i]);
    return ROAD_OK;
}

int32_t road_linear_active_count(const road_linear *l) {
    return l->active.n;
}

const char *road_linear_active_name(const road_linear *l, int32_t i) {
    return i >= 0 && i < l->active.n ? l->active.slot[i] : NULL;
}

void road_linear_enable_adapters(road_linear *l, bool enabled) {
    l->disabled = !enabled;
}

bool road_linear_adapters_enabled(const road_linear *l) {
    return !l->disabled;
}

/* ---- merge / unmerge ----------------------------------------------------------------------- */

int32_t road_linear_merged_count(const road_linear *l) {
    return l->merged.n;
}

const char *road_linear_merged_name(const road_linear *l, int32_t i) {
    return i >= 0 && i < l->merged.n ? l->merged.slot[i] : NULL;
}

static bool all_finite(const float *x, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}

/* Merge (or unmerge) R into a quantized layer: dequantize W, rotate in float32 (as
 * road_rot_merge does for float layers), quantize again. The result is checked for NaN / Inf
 * (requantize refuses them) before anything changes; W and b then change together. The second
 * rounding moves outputs slightly (PEFT warns the same for bitsandbytes layers), so unmerge
 * gives back W only up to that rounding. */
static road_status qmerge(road_linear *l, const road_rot *r, const char *name, bool undo) {
    const size_t nw = (size_t)l->out * (size_t)l->in;
    float *w2 = road__malloc(nw * sizeof(float));
    float *b2 = l->b ? road__malloc((size_t)l->out * sizeof(float)) : NULL;
    road_status s = (!w2 || (l->b && !b2)) ? ROAD_ERR_NO_MEMORY : ROAD_OK;
    if (s == ROAD_OK) s = road_qtensor_dequantize_rows(l->q, 0, l->out, w2);
    if (s == ROAD_OK && b2) memcpy(b2, l->b, (size_t)l->out * sizeof(float));
    if (s == ROAD_OK)
        s = undo ? road_rot_unmerge(r, l->in, w2, l->in, b2)
                 : road_rot_merge(r, l->in, w2, l->in, b2);
    if (s == ROAD_OK && b2 && !all_finite(b2, l->out))
        s = road__error(ROAD_ERR_NUMERIC, "NaN or Inf in the merged bias; weights left unchanged");
    if (s == ROAD_OK) s = road_qtensor_requantize(l->q, w2);
    if (s == ROAD_OK) {
        if (b2) memcpy(l->b, b2, (size_t)l->out * sizeof(float));
        if (road_qformat_is_quantized(l->q->format))
            road__log(ROAD_LOG_WARN,
                      "%s adapter '%s' %s a %s-quantized layer: the weights are dequantized, "
                      "rotated and quantized again, so outputs change by the new rounding",
                      undo ? "unmerging" : "merging", name, undo ? "from" : "into",
                      road_qformat_name(l->q->format));
        else /* a 16-bit layer kept as stored: rounded once, as a merged model saved in it */
            road__log(ROAD_LOG_INFO, "%s adapter '%s' %s a %s layer: the result is rounded to %s",
                      undo ? "unmerging" : "merging", name, undo ? "from" : "into",
                      road_qformat_name(l->q->format), road_qformat_name(l->q->format));
    }
    road__free(w2);
    road__free(b2);
    return s;
}

static road_status merge_one(road_linear *l, adapter *a, bool safe) {
    road_rot r;
    road_status s = adapter_rot(l, a, &r);
    if (s != ROAD_OK) return s;
    /* Record the name before touching W, so a merge that fails has only the name to drop:
     * undoing a done merge would not give W back bit for bit. */
    s = names_push(&l->merged, a->name);
    if (s != ROAD_OK) return s;
    size_t nw = (size_t)l->out * (size_t)l->in;
    if (l->q) {
        s = qmerge(l, &r, a->name, false);
    } else if (!safe) {
        s = road_rot_merge(&r, l->in, l->w, l->in, l->b);
    } else {
        /* PEFT's safe_merge: merge into a copy, refuse NaN/Inf, then commit. */
        float *w2 = road__malloc(nw * sizeof(float));
        float *b2 = l->b ? road__malloc((size_t)l->out * sizeof(float)) : NULL;
        if (!w2 || (l->b && !b2)) {
            road__free(w2);
            road__free(b2);
            names_remove(&l->merged, l->merged.n - 1);
            return ROAD_ERR_NO_MEMORY;
        }
        memcpy(w2, l->w, nw * sizeof(float));
        if (b2) memcpy(b2, l->b, (size_t)l->out * sizeof(float));
        s = road_rot_merge(&r, l->in, w2, l->in, b2);
        if (s == ROAD_OK && (!all_finite(w2, (int64_t)nw) || (b2 && !all_finite(b2, l->out))))
            s = road__error(ROAD_ERR_NUMERIC,
                            "NaN or Inf in the merged weights: adapter '%s' seems to be broken; "
                            "weights left unchanged",
                            a->name);
        if (s == ROAD_OK) {
            memcpy(l->w, w2, nw * sizeof(float));
            if (b2) memcpy(l->b, b2, (size_t)l->out * sizeof(float));
        }
        road__free(w2);
        road__free(b2);
    }
    if (s != ROAD_OK) {
        names_remove(&l->merged, l->merged.n - 1);
        road__error_prefix("adapter '%s'", a->name);
        return s;
    }
    return ROAD_OK;
}

road_status road_linear_merge(road_linear *l, const char *const *names, int32_t n, bool safe) {
    int32_t count = names ? n : l->active.n;
    if (count < 0) return road__error(ROAD_ERR_INVALID_ARG, "road_linear_merge: negative count");
    for (int32_t i = 0; i < count; i++) {
        const char *name = names ? names[i] : l->active.slot[i];
        if (names_find(&l->merged, name) >= 0) {
            road__log(ROAD_LOG_WARN, "adapter '%s' is already merged; skipped", name);
            continue;
        }
        adapter *a = find(l, name);
        if (!a) {
            /* PEFT skips adapters this layer does not have (they may live on other layers);
             * an explicit name that no layer has is the model's job to refuse. */
            continue;
        }
        road_status s = merge_one(l, a, safe);
        if (s != ROAD_OK) return s;
    }
    return ROAD_OK;
}

road_status road_linear_unmerge(road_linear *l) {
    if (l->merged.n == 0) {
        road__log(ROAD_LOG_WARN, "already unmerged; nothing to do");
        return ROAD_OK;
    }
    return road__linear_unmerge_last(l, l->merged.n);
}

road_status road__linear_unmerge_last(road_linear *l, int32_t k) {
    for (; k > 0 && l->merged.n > 0; k--) {
        const char *name = l->merged.slot[l->merged.n - 1];
        adapter *a = find(l, name);
        ROAD_ASSERT(a != NULL); /* delete refuses merged adapters */
        road_rot r;
        road_status s = adapter_rot(l, a, &r);
        if (s == ROAD_OK)
            s = l->q ? qmerge(l, &r, name, true) : road_rot_unmerge(&r, l->in, l->w, l->in, l->b);
        if (s != ROAD_OK) {
            road__error_prefix("adapter '%s'", name);
            return s;
        }
        names_remove(&l->merged, l->merged.n - 1);
    }
    return ROAD_OK;
}

/* ---- forward / backward -------------------------------------------------------------------- */

static road_status check_io(const road_linear *l, int64_t rows, const void *x, const void *y,
                            const char *fn) {
    if (rows < 0)
        return road__error(ROAD_ERR_SHAPE, "%s: rows must be >= 0, got %lld", fn, (long long)rows);
    if (rows > 0 && (!x || !y))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: NULL input or output", fn);
    (void)l;
    return ROAD_OK;
}

road_status road_linear_forward(road_linear *l, int64_t rows, const float *x, float *y) {
    road_status s = check_io(l, rows, x, y, "road_linear_forward");
    if (s != ROAD_OK) return s;
    if (l->disabled && l->merged.n > 0) {
        s = road_linear_unmerge(l);
        if (s != ROAD_OK) return s;
    }
    if (rows == 0) return ROAD_OK;
    s = road_linear_base_forward(l, rows, x, y);
    return s != ROAD_OK ? s : road_linear_apply(l, rows, y, l->out);
}

road_status road_linear_apply(road_linear *l, int64_t rows, float *y, int64_t ld) {
    if (rows < 0 || ld < l->out || (rows > 0 && !y))
        return road__error(ROAD_ERR_SHAPE,
                           "road_linear_apply: bad rows (%lld) or row stride (%lld)",
                           (long long)rows, (long long)ld);
    if (l->disabled || l->merged.n > 0) return ROAD_OK;
    for (int32_t i = 0; i < l->active.n; i++) {
        adapter *a = find(l, l->active.slot[i]);
        if (!a) continue;
        road_rot r;
        road_status s = adapter_rot(l, a, &r);
        if (s == ROAD_OK) s = road_rot_forward(&r, rows, y, ld);
        if (s != ROAD_OK) return s;
    }
    return ROAD_OK;
}

road_status road_linear_forward_mixed(road_linear *l, int64_t n_seq, int64_t rows_per_seq,
                                      const char *const *names, int64_t n_names, const float *x,
                                      float *y) {
    const char *fn = "road_linear_forward_mixed";
    if (n_seq < 0 || rows_per_seq < 0)
        return road__error(ROAD_ERR_SHAPE, "%s: negative batch shape", fn);
    if (n_names != n_seq)
        return road__error(ROAD_ERR_SHAPE,
                           "%s: got %lld adapter names for a batch of %lld sequences; give one "
                           "name (or '%s') per sequence",
                           fn, (long long)n_names, (long long)n_seq, ROAD_BASE_NAME);
    if (n_names > 0 && !names) return road__error(ROAD_ERR_INVALID_ARG, "%s: names is NULL", fn);
    if (l->merged.n > 0 && !l->disabled)
        return road__error(ROAD_ERR_STATE,
                           "%s: cannot use per-sequence adapters while adapters are merged into "
                           "the weights; unmerge first",
                           fn);
    int64_t rows = n_seq * rows_per_seq;
    road_status s = check_io(l, rows, x, y, fn);
    if (s != ROAD_OK) return s;
    if (l->disabled) return road_linear_forward(l, rows, x, y);
    for (int64_t i = 0; i < n_seq; i++)
        if (!names[i])
            return road__error(ROAD_ERR_INVALID_ARG, "%s: name %lld is NULL", fn, (long long)i);
    if (rows == 0) return ROAD_OK;
    s = road_linear_base_forward(l, rows, x, y);
    if (s != ROAD_OK) return s;

    /* slot per row: index into this layer's adapters, -1 for base or absent names. */
    int32_t nad = l->n_ad;
    int32_t *slot = road__malloc(sizeof(int32_t) * (size_t)rows);
    road_rot *rots = road__calloc((size_t)(nad ? nad : 1), sizeof(road_rot));
    const road_rot **rp = road__calloc((size_t)(nad ? nad : 1), sizeof(road_rot *));
    bool *used = road__calloc((size_t)(nad ? nad : 1), sizeof(bool));
    if (!slot || !rots || !rp || !used) {
        s = ROAD_ERR_NO_MEMORY;
        goto done;
    }
    for (int64_t i = 0; i < n_seq; i++) {
        const adapter *a = strcmp(names[i], ROAD_BASE_NAME) == 0 ? NULL : find(l, names[i]);
        int32_t k = a ? (int32_t)(a - l->ad) : -1;
        if (k >= 0) used[k] = true;
        for (int64_t t = 0; t < rows_per_seq; t++) slot[i * rows_per_seq + t] = k;
    }
    /* Build coefficients only for adapters some row uses; the others borrow a used one's
     * (no row selects them, they only need to pass validation). */
    int32_t any = -1;
    for (int32_t k = 0; k < nad; k++) {
        if (!used[k]) continue;
        s = adapter_rot(l, &l->ad[k], &rots[k]);
        if (s != ROAD_OK) goto done;
        any = k;
    }
    if (any < 0) goto done; /* every row is base */
    for (int32_t k = 0; k < nad; k++) {
        if (!used[k]) rots[k] = rots[any];
        rp[k] = &rots[k];
    }
    s = road_rot_forward_mixed(rp, nad, slot, rows, y, l->out);
done:
    road__free(slot);
    road__free(rots);
    road__free(rp);
    road__free(used);
    return s;
}

/* The gradient buffers, zeroed, at first use. Each is checked on its own: after a failed
 * allocation one of them may already exist (and must neither leak nor stay NULL). */
static road_status adapter_alloc_grads(adapter *a) {
    if (!a->dtheta) a->dtheta = road__calloc((size_t)a->n, sizeof(float));
    if (!a->dalpha) a->dalpha = road__calloc((size_t)a->n, sizeof(float));
    return a->dtheta && a->dalpha ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

road_status road_linear_backward(road_linear *l, int64_t rows, const float *y_base, const float *dy,
                                 float *dx) {
    const char *fn = "road_linear_backward";
    if (rows < 0) return road__error(ROAD_ERR_SHAPE, "%s: rows must be >= 0", fn);
    if (rows > 0 && (!dy || !y_base))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: NULL input", fn);
    if (l->merged.n > 0 && !l->disabled)
        return road__error(ROAD_ERR_STATE,
                           "%s: adapters are merged into the weights, so they cannot be trained; "
                           "unmerge first",
                           fn);
    if (rows == 0) return ROAD_OK;
    /* The active adapters present on this layer, in order. */
    int32_t m = 0;
    adapter **act = road__malloc(sizeof(adapter *) * (size_t)(l->active.n ? l->active.n : 1));
    if (!act) return ROAD_ERR_NO_MEMORY;
    if (!l->disabled)
        for (int32_t i = 0; i < l->active.n; i++) {
            adapter *a = find(l, l->active.slot[i]);
            if (a) act[m++] = a;
        }
    size_t blk = (size_t)rows * (size_t)l->out;
    /* z[k] = input of adapter k (z[0] = y_base, recomputed z[1..m-1]); g = running gradient;
     * dc = coefficient gradients of the adapter at hand. */
    float *buf = road__malloc(sizeof(float) * (blk * (size_t)(m > 1 ? m : 1) + 2 * (size_t)l->out));
    road_status s = ROAD_OK;
    if (!buf) {
        road__free(act);
        return ROAD_ERR_NO_MEMORY;
    }
    float *g = buf;
    float *zs = buf + blk; /* m-1 blocks */
    float *dc1 = buf + blk * (size_t)(m > 1 ? m : 1), *dc2 = dc1 + l->out;
    road_rot *rots = road__malloc(sizeof(road_rot) * (size_t)(m ? m : 1));
    if (!rots) {
        s = ROAD_ERR_NO_MEMORY;
        goto done;
    }
    for (int32_t k = 0; k < m; k++) {
        s = adapter_rot(l, act[k], &rots[k]);
        if (s != ROAD_OK) goto done;
        s = adapter_alloc_grads(act[k]);
        if (s != ROAD_OK) goto done;
    }
    for (int32_t k = 1; k < m; k++) {
        float *zk = zs + (size_t)(k - 1) * blk;
        memcpy(zk, k == 1 ? y_base : zk - blk, blk * sizeof(float));
        s = road_rot_forward(&rots[k - 1], rows, zk, l->out);
        if (s != ROAD_OK) goto done;
    }
    memcpy(g, dy, blk * sizeof(float));
    for (int32_t k = m - 1; k >= 0; k--) {
        const float *zin = k == 0 ? y_base : zs + (size_t)(k - 1) * blk;
        memset(dc1, 0, 2 * (size_t)l->out * sizeof(float));
        s = road_rot_backward(&rots[k], rows, zin, l->out, g, l->out, g, l->out, dc1, dc2);
        if (s == ROAD_OK)
            s = road_coeffs_backward(act[k]->variant, act[k]->group_size, l->out, act[k]->theta,
                                     act[k]->alpha, dc1, dc2, act[k]->dtheta, act[k]->dalpha);
        if (s != ROAD_OK) goto done;
    }
    if (dx) s = base_dyw(l, rows, g, dx);
done:
    road__free(rots);
    road__free(buf);
    road__free(act);
    return s;
}

road_status road_linear_adapter_grads(road_linear *l, const char *name, float **dtheta,
                                      float **dalpha, int64_t *n) {
    adapter *a = find(l, name);
    if (!a) return not_found(l, name);
    road_status s = adapter_alloc_grads(a);
    if (s != ROAD_OK) return s;
    if (dtheta) *dtheta = a->dtheta;
    if (dalpha) *dalpha = a->dalpha;
    if (n) *n = a->n;
    return ROAD_OK;
}

void road_linear_zero_grads(road_linear *l) {
    for (int32_t i = 0; i < l->n_ad; i++) {
        if (l->ad[i].dtheta) memset(l->ad[i].dtheta, 0, (size_t)l->ad[i].n * sizeof(float));
        if (l->ad[i].dalpha) memset(l->ad[i].dalpha, 0, (size_t)l->ad[i].n * sizeof(float));
    }
}

/* ---- for the adapter manager (linear_internal.h) ------------------------------------------ */

road_status road__linear_check_merge(road_linear *l, const char *const *names, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        adapter *a = find(l, names[i]);
        if (!a || names_find(&l->merged, names[i]) >= 0) continue;
        road_rot r;
        road_status s = adapter_rot(l, a, &r);
        if (s == ROAD_OK) s = road__rot_check_blocks(&r, "merge");
        if (s != ROAD_OK) {
            road__error_prefix("adapter '%s'", a->name);
            return s;
        }
    }
    return ROAD_OK;
}

void road__linear_drop_all(road_linear *l) {
    for (int32_t i = 0; i < l->n_ad; i++) adapter_free(&l->ad[i]);
    l->n_ad = 0;
    l->active.n = 0;
    l->merged.n = 0;
}

bool road__linear_is_merged(const road_linear *l, const char *name) {
    return names_find(&l->merged, name) >= 0;
}

road_status road__linear_reserve_names(road_linear *l, int32_t cap) {
    road_status s = names_reserve(&l->active, cap);
    return s == ROAD_OK ? names_reserve(&l->merged, cap) : s;
}
