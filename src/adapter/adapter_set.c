/*
 * adapter/adapter_set.c - the adapter manager (PEFT's RoadModel), see road/adapter_set.h.
 *
 * Every registered linear layer is wrapped in a road_linear that borrows the caller's weights.
 * The set owns the model-level truth (which adapters exist, their configs, the active list,
 * enabled, training) and pushes it to the layers after every change, so all layers agree.
 * Operations that touch several layers are all-or-nothing: they validate everything first
 * (target matching, shapes, merge numerics) and only then change layers.
 *
 * modules_to_save (PEFT's ModulesToSaveWrapper): an adapter keeps its own full copy of each
 * layer its config lists there (weight, bias, and their gradient buffers, one allocation per
 * copy). While that adapter is active (and adapters are enabled) the copy replaces the base
 * weight in every GEMM of the layer; the base is never written. The set keeps the invariant
 * that at most one active adapter holds a copy of a layer, and that no other active adapter
 * rotates that layer (checked when the active list changes), so a layer's forward is always
 * "one weight, then the RoAd adapters active on it".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/linear_internal.h"
#include "adapter/match.h"
#include "core/alloc.h"
#include "core/blas.h"
#include "core/error.h"
#include "adapter/adapter_set_internal.h"
#include "road/adapter_set.h"

/* ---- creation ------------------------------------------------------------------------------ */

static void adapter_free(set_adapter *a) {
    road__free(a->name);
    road_config_free(a->cfg);
    for (int32_t i = 0; i < a->n_copies; i++) road__free(a->copies[i].block);
    road__free(a->copies);
    a->name = NULL;
    a->cfg = NULL;
    a->copies = NULL;
    a->n_copies = 0;
}

road_adapter_set_params road_adapter_set_default_params(void) {
    road_adapter_set_params p;
    memset(&p, 0, sizeof p);
    return p;
}

void road_adapter_set_free(road_adapter_set *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->n_layers; i++) {
        road__free(s->layers[i].name);
        road_linear_free(s->layers[i].lin);
        road__free(s->layers[i].own_w);
        road_qtensor_free(s->layers[i].own_q);
        road__free(s->layers[i].wide_w);
    }
    road__free(s->layers);
    for (int32_t i = 0; i < s->n_ad; i++) adapter_free(&s->ad[i]);
    road__free(s->ad);
    road__free(s->act);
    road__free(s->active);
    road__free(s->model_type);
    road__free(s);
}

road_status road_adapter_set_create(const road_adapter_set_params *p, road_adapter_set **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_create: out is NULL");
    *out = NULL;
    if (!p || p->n_layers < 0 || (p->n_layers > 0 && !p->layers))
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_create: no layer list");
    road_adapter_set *s = road__calloc(1, sizeof *s);
    if (!s) return ROAD_ERR_NO_MEMORY;
    road_status st = ROAD_OK;
    if (p->model_type && !(s->model_type = road__strdup(p->model_type))) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK && p->n_layers > 0 &&
        !(s->layers = road__calloc((size_t)p->n_layers, sizeof(set_layer))))
        st = ROAD_ERR_NO_MEMORY;
    int64_t params = 0;
    for (int32_t i = 0; st == ROAD_OK && i < p->n_layers; i++) {
        const road_layer_desc *d = &p->layers[i];
        if (!d->name || !*d->name) {
            st = road__error(ROAD_ERR_INVALID_ARG, "layer %d has no name", (int)i);
            break;
        }
        for (int32_t j = 0; j < i; j++)
            if (strcmp(p->layers[j].name, d->name) == 0) {
                st = road__error(ROAD_ERR_INVALID_ARG, "layer name '%s' is registered twice",
                                 d->name);
                break;
            }
        if (st != ROAD_OK) break;
        if (d->kind != ROAD_LAYER_LINEAR && d->kind != ROAD_LAYER_EMBEDDING) {
            st = road__error(ROAD_ERR_INVALID_ARG, "layer '%s': unknown kind %d", d->name,
                             (int)d->kind);
            break;
        }
        if (d->qweight && d->weight) {
            st = road__error(ROAD_ERR_INVALID_ARG,
                             "layer '%s': give a float weight or a packed one (qweight), not both",
                             d->name);
            break;
        }
        if (d->qweight &&
            (d->qweight->rows != d->out_features || d->qweight->cols != d->in_features)) {
            st = road__error(ROAD_ERR_SHAPE,
                             "layer '%s': qweight is [%lld x %lld], not [%lld x %lld]", d->name,
                             (long long)d->qweight->rows, (long long)d->qweight->cols,
                             (long long)d->out_features, (long long)d->in_features);
            break;
        }
        if ((!d->weight && !d->qweight) || d->in_features <= 0 || d->out_features <= 0) {
            st = road__error(ROAD_ERR_SHAPE,
                             "layer '%s': needs a weight and positive sizes (got %lld x %lld)",
                             d->name, (long long)d->out_features, (long long)d->in_features);
            break;
        }
        set_layer *L = &s->layers[i];
        s->n_layers = i + 1;
        L->kind = d->kind;
        L->in = d->in_features;
        L->out = d->out_features;
        L->w = d->weight;
        L->q = d->qweight;
        L->b = d->bias;
        L->head = d->is_output_head;
        if (!(L->name = road__strdup(d->name))) {
            st = ROAD_ERR_NO_MEMORY;
            break;
        }
        params += L->in * L->out + (L->b ? L->out : 0);
        if (d->kind == ROAD_LAYER_LINEAR) {
            road_linear_params lp = road_linear_default_params();
            lp.in_features = L->in;
            lp.out_features = L->out;
            lp.weight = L->w;
            lp.qweight = L->q;
            lp.bias = L->b;
            lp.borrow = true;
            st = road_linear_create(&lp, &L->lin);
            if (st != ROAD_OK) road__error_prefix("layer '%s'", L->name);
        }
    }
    if (st != ROAD_OK) {
        road_adapter_set_free(s);
        return st;
    }
    s->n_layers = p->n_layers;
    s->base_params = p->base_param_count > 0 ? p->base_param_count : params;
    *out = s;
    return ROAD_OK;
}

/* ---- layers ---------------------------------------------------------------------------------- */

int32_t road_adapter_set_layer_count(const road_adapter_set *s) {
    return s->n_layers;
}

const char *road_adapter_set_layer_name(const road_adapter_set *s, int32_t layer) {
    return layer >= 0 && layer < s->n_layers ? s->layers[layer].name : NULL;
}

road_status road_adapter_set_layer_shape(const road_adapter_set *s, int32_t layer, int64_t *out,
                                         int64_t *in) {
    if (layer < 0 || layer >= s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_adapter_set_layer_shape: layer %d out of "
                           "range (0..%d)",
                           (int)layer, (int)s->n_layers - 1);
    if (out) *out = s->layers[layer].out;
    if (in) *in = s->layers[layer].in;
    return ROAD_OK;
}

int32_t road_adapter_set_find_layer(const road_adapter_set *s, const char *name) {
    for (int32_t i = 0; name && i < s->n_layers; i++)
        if (strcmp(s->layers[i].name, name) == 0) return i;
    return -1;
}

road_linear *road_adapter_set_layer(road_adapter_set *s, int32_t layer) {
    return layer >= 0 && layer < s->n_layers ? s->layers[layer].lin : NULL;
}

road_status road__aset_linear_layer(road_adapter_set *s, int32_t layer, const char *fn) {
    if (layer < 0 || layer >= s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG, "%s: layer index %d out of range (0..%d)", fn,
                           (int)layer, (int)s->n_layers - 1);
    if (!s->layers[layer].lin)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "%s: layer '%s' is an embedding, not a linear layer", fn,
                           s->layers[layer].name);
    return ROAD_OK;
}

/* matched [n_layers], caller-allocated */
static road_status match(const road_adapter_set *s, const road_config *cfg, bool *matched) {
    road_match_layer *ml =
        road__malloc(sizeof(road_match_layer) * (size_t)(s->n_layers ? s->n_layers : 1));
    if (!ml) return ROAD_ERR_NO_MEMORY;
    for (int32_t i = 0; i < s->n_layers; i++) {
        ml[i].name = s->layers[i].name;
        ml[i].is_linear = s->layers[i].kind == ROAD_LAYER_LINEAR;
        ml[i].is_output_head = s->layers[i].head;
        ml[i].out_features = s->layers[i].out;
    }
    road_status st = road__match_targets(cfg, s->model_type, ml, s->n_layers, matched);
    road__free(ml);
    return st;
}

/* The layers cfg's modules_to_save select (copy[i] set), as PEFT matches them: a layer whose
 * name equals an entry or ends with "." + entry. Refused (ROAD_ERR_CONFIG): an entry that
 * selects no layer, and a layer that is also one of cfg's RoAd targets (targets[i]), which
 * PEFT refuses too. */
static road_status match_copies(const road_adapter_set *s, const road_config *cfg,
                                const bool *targets, bool *copy) {
    const int32_t k = road_config_modules_to_save_count(cfg); /* -1: null */
    for (int32_t j = 0; j < k; j++) {
        const char *entry = road_config_module_to_save(cfg, j);
        bool any = false;
        for (int32_t i = 0; i < s->n_layers; i++) {
            if (!road__match_list_entry(s->layers[i].name, entry)) continue;
            any = true;
            if (targets[i])
                return road__error(ROAD_ERR_CONFIG,
                                   "layer '%s' is both a RoAd target (target_modules) and in "
                                   "modules_to_save (entry '%s'); a module is either adapted or "
                                   "trained fully, not both (PEFT refuses this too)",
                                   s->layers[i].name, entry);
            copy[i] = true;
        }
        if (!any)
            return road__error(ROAD_ERR_CONFIG,
                               "modules_to_save entry '%s' matches no layer of the model (an entry "
                               "selects a layer whose name equals it or ends with '.%s'; road "
                               "holds copies of linear and embedding layers only)",
                               entry, entry);
    }
    return ROAD_OK;
}

road_status road_adapter_set_match_modules_to_save(const road_adapter_set *s,
                                                   const road_config *cfg, int32_t *layers,
                                                   int32_t cap, int32_t *n) {
    if (!cfg || !n)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_adapter_set_match_modules_to_save: NULL argument");
    *n = 0;
    const size_t nl = (size_t)(s->n_layers ? s->n_layers : 1);
    bool *m = road__calloc(2 * nl, sizeof(bool));
    if (!m) return ROAD_ERR_NO_MEMORY;
    road_status st = match(s, cfg, m);
    if (st == ROAD_OK) st = match_copies(s, cfg, m, m + nl);
    int32_t k = 0;
    if (st == ROAD_OK)
        for (int32_t i = 0; i < s->n_layers; i++) {
            if (!m[nl + (size_t)i]) continue;
            if (layers && k < cap) layers[k] = i;
            k++;
        }
    *n = k;
    road__free(m);
    return st;
}

road_status road_adapter_set_match(const road_adapter_set *s, const road_config *cfg,
                                   int32_t *layers, int32_t cap, int32_t *n) {
    if (!cfg || !n)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_match: NULL argument");
    bool *m = road__calloc((size_t)(s->n_layers ? s->n_layers : 1), sizeof(bool));
    if (!m) return ROAD_ERR_NO_MEMORY;
    road_status st = match(s, cfg, m);
    int32_t k = 0;
    if (st == ROAD_OK)
        for (int32_t i = 0; i < s->n_layers; i++) {
            if (!m[i]) continue;
            if (layers && k < cap) layers[k] = i;
            k++;
        }
    *n = k;
    road__free(m);
    return st;
}

/* ---- adapters -------------------------------------------------------------------------------- */

int32_t road__aset_find_adapter(const road_adapter_set *s, const char *name) {
    for (int32_t i = 0; name && i < s->n_ad; i++)
        if (strcmp(s->ad[i].name, name) == 0) return i;
    return -1;
}

set_copy *road__aset_find_copy(const set_adapter *a, int32_t layer) {
    for (int32_t i = 0; i < a->n_copies; i++)
        if (a->copies[i].layer == layer) return &a->copies[i];
    return NULL;
}

/* The copy a layer runs now: the one an active adapter holds (at most one: see
 * check_active_copies), none while adapters are disabled. */
static set_copy *active_copy(const road_adapter_set *s, int32_t layer) {
    if (s->disabled) return NULL;
    for (int32_t j = 0; j < s->n_active; j++) {
        int32_t k = road__aset_find_adapter(s, s->active[j]);
        set_copy *c = k >= 0 ? road__aset_find_copy(&s->ad[k], layer) : NULL;
        if (c) return c;
    }
    return NULL;
}

/* One allocation for a copy of layer L: weight, bias, then their gradients (zero). */
static road_status copy_alloc(const set_layer *L, int32_t layer, set_copy *c) {
    size_t wn = 0, total = 0;
    if (road__size_mul((size_t)L->out, (size_t)L->in, &wn) != 0 ||
        road__size_mul(2 * (wn + (L->b ? (size_t)L->out : 0)), sizeof(float), &total) != 0)
        return road__error(ROAD_ERR_NO_MEMORY, "modules_to_save copy of '%s' is too large",
                           L->name);
    c->layer = layer;
    c->block = road__calloc(1, total);
    if (!c->block) return ROAD_ERR_NO_MEMORY;
    const size_t bn = L->b ? (size_t)L->out : 0;
    c->w = c->block;
    c->b = L->b ? c->w + wn : NULL;
    c->dw = c->w + wn + bn;
    c->db = L->b ? c->dw + wn : NULL;
    /* a packed layer's copy (quantized, or 16-bit as stored) is its weight widened to float32
     * (trainable) */
    if (L->lin || L->q) {
        road_status st = L->lin ? road_linear_dequantized_weight(L->lin, c->w)
                                : road_qtensor_dequantize_rows(L->q, 0, L->out, c->w);
        if (st != ROAD_OK) {
            road__free(c->block);
            c->block = NULL;
            return st;
        }
    } else {
        memcpy(c->w, L->w, wn * sizeof(float));
    }
    if (L->b) memcpy(c->b, L->b, bn * sizeof(float));
    return ROAD_OK;
}

static void copy_export(const road_adapter_set *s, const set_copy *c, road_module_copy *out) {
    const set_layer *L = &s->layers[c->layer];
    out->layer = c->layer;
    out->out = L->out;
    out->in = L->in;
    out->weight = c->w;
    out->bias = c->b;
    out->dweight = c->dw;
    out->dbias = c->db;
}

int32_t road_adapter_set_copy_count(const road_adapter_set *s, const char *name) {
    int32_t k = road__aset_find_adapter(s, name);
    return k >= 0 ? s->ad[k].n_copies : 0;
}

road_status road_adapter_set_copy_at(road_adapter_set *s, const char *name, int32_t i,
                                     road_module_copy *out) {
    int32_t k = road__aset_find_adapter(s, name);
    if (k < 0 || !out)
        return road__error(ROAD_ERR_NOT_FOUND, "no adapter named '%s'", name ? name : "(null)");
    if (i < 0 || i >= s->ad[k].n_copies)
        return road__error(ROAD_ERR_INVALID_ARG, "adapter '%s': copy %d out of range (it has %d)",
                           name, (int)i, (int)s->ad[k].n_copies);
    copy_export(s, &s->ad[k].copies[i], out);
    return ROAD_OK;
}

road_status road_adapter_set_copy(road_adapter_set *s, const char *name, int32_t layer,
                                  road_module_copy *out) {
    int32_t k = road__aset_find_adapter(s, name);
    if (k < 0 || !out)
        return road__error(ROAD_ERR_NOT_FOUND, "no adapter named '%s'", name ? name : "(null)");
    const set_copy *c = road__aset_find_copy(&s->ad[k], layer);
    if (!c)
        return road__error(ROAD_ERR_NOT_FOUND,
                           "adapter '%s' holds no modules_to_save copy of layer %s", name,
                           layer >= 0 && layer < s->n_layers ? s->layers[layer].name : "(none)");
    copy_export(s, c, out);
    return ROAD_OK;
}

bool road_adapter_set_has_copy(const road_adapter_set *s, const char *name, int32_t layer) {
    int32_t k = road__aset_find_adapter(s, name);
    return k >= 0 && road__aset_find_copy(&s->ad[k], layer) != NULL;
}

bool road_adapter_set_active_copy(road_adapter_set *s, int32_t layer, road_module_copy *out) {
    if (layer < 0 || layer >= s->n_layers) return false;
    const set_copy *c = active_copy(s, layer);
    if (c && out) copy_export(s, c, out);
    return c != NULL;
}

road_status road_adapter_set_layer_weight(const road_adapter_set *s, int32_t layer, const float **w,
                                          const float **b) {
    if (layer < 0 || layer >= s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_adapter_set_layer_weight: layer %d out of "
                           "range (0..%d)",
                           (int)layer, (int)s->n_layers - 1);
    const set_layer *L = &s->layers[layer];
    const set_copy *c = active_copy(s, layer);
    if (w) *w = c ? c->w : L->lin ? road_linear_weight(L->lin) : L->w;
    if (b) *b = c ? c->b : L->lin ? road_linear_bias(L->lin) : L->b;
    return ROAD_OK;
}

road_status road_adapter_set_base_weight(const road_adapter_set *s, int32_t layer, const float **w,
                                         const road_qtensor **q) {
    if (layer < 0 || layer >= s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_adapter_set_base_weight: layer %d out of range (0..%d)",
                           (int)layer, (int)s->n_layers - 1);
    const set_layer *L = &s->layers[layer];
    if (w) *w = L->lin ? road_linear_weight(L->lin) : L->w;
    if (q) *q = L->lin ? road_linear_qweight(L->lin) : L->q;
    return ROAD_OK;
}

/* Would `names` as the active list give a layer two copies, or a copy and another active
 * adapter's rotation? (PEFT runs one ModulesToSaveWrapper copy per module.) */
static road_status check_active_copies(const road_adapter_set *s, const char *const *names,
                                       int32_t n) {
    for (int32_t i = 0; i < s->n_layers; i++) {
        int32_t holder = -1;
        for (int32_t j = 0; j < n; j++) {
            int32_t k = road__aset_find_adapter(s, names[j]);
            if (k < 0 || !road__aset_find_copy(&s->ad[k], i)) continue;
            if (holder >= 0)
                return road__error(ROAD_ERR_CONFIG,
                                   "adapters '%s' and '%s' both hold a modules_to_save copy of "
                                   "layer %s; only one of them can be active at a time (as in "
                                   "PEFT)",
                                   names[holder], names[j], s->layers[i].name);
            holder = j;
        }
        if (holder < 0 || !s->layers[i].lin) continue;
        for (int32_t j = 0; j < n; j++)
            if (j != holder && road_linear_has_adapter(s->layers[i].lin, names[j]))
                return road__error(ROAD_ERR_UNSUPPORTED,
                                   "adapter '%s' trains layer %s fully (modules_to_save) and "
                                   "adapter '%s' rotates it (RoAd); road does not run both on "
                                   "one layer at once: activate them separately",
                                   names[holder], s->layers[i].name, names[j]);
    }
    return ROAD_OK;
}

int32_t road_adapter_set_count(const road_adapter_set *s) {
    return s->n_ad;
}

const char *road_adapter_set_name(const road_adapter_set *s, int32_t i) {
    return i >= 0 && i < s->n_ad ? s->ad[i].name : NULL;
}

bool road_adapter_set_has(const road_adapter_set *s, const char *name) {
    return road__aset_find_adapter(s, name) >= 0;
}

const road_config *road_adapter_set_config(const road_adapter_set *s, const char *name) {
    int32_t i = road__aset_find_adapter(s, name);
    return i >= 0 ? s->ad[i].cfg : NULL;
}

bool road_adapter_set_on_layer(const road_adapter_set *s, const char *name, int32_t layer) {
    return layer >= 0 && layer < s->n_layers && s->layers[layer].lin &&
           road_linear_has_adapter(s->layers[layer].lin, name);
}

static road_status unknown_adapter(const road_adapter_set *s, const char *name) {
    char have[512] = "";
    size_t k = 0;
    for (int32_t i = 0; i < s->n_ad && k + 4 < sizeof have; i++)
        k += (size_t)snprintf(have + k, sizeof have - k, "%s'%s'", i ? ", " : "", s->ad[i].name);
    return road__error(ROAD_ERR_NOT_FOUND, "no adapter named '%s' (the model has %s)",
                       name ? name : "(null)", s->n_ad ? have : "no adapters");
}

/* Room for `cap` names in the set's active list and in every layer's lists. Done before any
 * change, so the changes that follow cannot fail halfway. */
static road_status reserve_names(road_adapter_set *s, int32_t cap) {
    if (cap > s->cap_active) {
        char(*na)[ACTIVE_SLOT] = road__realloc(s->act, sizeof(*na) * (size_t)cap);
        if (!na) return ROAD_ERR_NO_MEMORY;
        s->act = na;
        /* act may have moved: re-point the list now, in case the next realloc fails. */
        for (int32_t i = 0; i < s->n_active; i++) s->active[i] = s->act[i];
        const char **np = road__realloc(s->active, sizeof(char *) * (size_t)cap);
        if (!np) return ROAD_ERR_NO_MEMORY; /* act grew; harmless */
        s->active = np;
        s->cap_active = cap;
    }
    for (int32_t i = 0; i < s->n_layers; i++) {
        if (!s->layers[i].lin) continue;
        road_status st = road__linear_reserve_names(s->layers[i].lin, cap);
        if (st != ROAD_OK) return st;
    }
    return ROAD_OK;
}

/* Replace the active list (room reserved; names exist, so they fit a slot). */
static void active_assign(road_adapter_set *s, const char *const *names, int32_t n) {
    ROAD_ASSERT(n <= s->cap_active);
    /* names may point into act itself in another order (road_adapter_set_active_name's
     * pointers, permuted): take each adapter's own copy of its name first, then copy. */
    for (int32_t i = 0; i < n; i++) {
        int32_t k = road__aset_find_adapter(s, names[i]);
        ROAD_ASSERT(k >= 0 && strlen(names[i]) < ACTIVE_SLOT);
        s->active[i] = s->ad[k].name;
    }
    for (int32_t i = 0; i < n; i++) {
        memcpy(s->act[i], s->active[i], strlen(s->active[i]) + 1);
        s->active[i] = s->act[i];
    }
    s->n_active = n;
}

/* Push the set's active list and enabled flag to every layer. Never fails: every layer has
 * room for as many names as the set has adapters (reserve_names). */
static void push_state(road_adapter_set *s) {
    for (int32_t i = 0; i < s->n_layers; i++) {
        road_linear *l = s->layers[i].lin;
        if (!l) continue;
        road_status st = road_linear_set_active(l, s->active, s->n_active);
        ROAD_ASSERT(st == ROAD_OK);
        road_linear_enable_adapters(l, !s->disabled);
    }
}

/* A layer-specific seed, so layers with the same shape do not get the same random init. */
static uint64_t layer_seed(uint64_t seed, int32_t layer) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(layer + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

road_status road_adapter_set_add(road_adapter_set *s, const char *name, const road_config *cfg,
                                 uint64_t seed) {
    if (!cfg) return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_add: config is NULL");
    if (!name) return road__error(ROAD_ERR_INVALID_ARG, "an adapter name must not be empty");
    if (road__aset_find_adapter(s, name) >= 0)
        return road__error(ROAD_ERR_EXISTS, "an adapter named '%s' already exists", name);
    const size_t nl = (size_t)(s->n_layers ? s->n_layers : 1);
    bool *m = road__calloc(2 * nl, sizeof(bool));
    if (!m) return ROAD_ERR_NO_MEMORY;
    bool *cp = m + nl; /* modules_to_save copies */
    road_status st = match(s, cfg, m);
    if (st == ROAD_OK) st = match_copies(s, cfg, m, cp);
    if (st != ROAD_OK) {
        road__error_prefix("adapter '%s'", name);
        road__free(m);
        return st;
    }
    /* Everything that can fail for memory happens before the first change. */
    if (s->n_ad == s->cap_ad) {
        int32_t cap = s->cap_ad ? 2 * s->cap_ad : 4;
        set_adapter *na = road__realloc(s->ad, sizeof(set_adapter) * (size_t)cap);
        if (!na) {
            road__free(m);
            return ROAD_ERR_NO_MEMORY;
        }
        s->ad = na;
        s->cap_ad = cap;
    }
    set_adapter a = {road__strdup(name), NULL, NULL, 0};
    if (!a.name) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK) st = road_config_clone(cfg, &a.cfg);
    int32_t nc = 0;
    for (int32_t i = 0; i < s->n_layers; i++) nc += cp[i];
    if (st == ROAD_OK && nc > 0 && !(a.copies = road__calloc((size_t)nc, sizeof(set_copy))))
        st = ROAD_ERR_NO_MEMORY;
    for (int32_t i = 0; i < s->n_layers && st == ROAD_OK; i++) {
        if (!cp[i]) continue;
        st = copy_alloc(&s->layers[i], i, &a.copies[a.n_copies]);
        if (st == ROAD_OK) a.n_copies++;
    }
    if (st == ROAD_OK) st = reserve_names(s, s->n_ad + 1);
    int32_t done = 0;
    for (int32_t i = 0; i < s->n_layers && st == ROAD_OK; i++) {
        if (!m[i]) continue;
        st = road_linear_add_adapter(s->layers[i].lin, name, road_config_variant(cfg),
                                     road_config_group_size(cfg), road_config_init_weights(cfg),
                                     layer_seed(seed, i));
        if (st == ROAD_OK) done = i + 1;
    }
    if (st != ROAD_OK) {
        /* Deleting an adapter that was just added does not allocate. */
        for (int32_t i = 0; i < done; i++)
            if (m[i]) (void)road_linear_delete_adapter(s->layers[i].lin, name);
        push_state(s);
        adapter_free(&a);
        road__free(m);
        return st;
    }
    road__free(m);
    s->ad[s->n_ad++] = a;
    /* PEFT: the first adapter is the active one. */
    if (s->n_active == 0 && s->n_ad == 1) {
        const char *first[1] = {a.name};
        active_assign(s, first, 1);
    }
    push_state(s);
    return ROAD_OK;
}

road_status road_adapter_set_delete(road_adapter_set *s, const char *name) {
    int32_t k = road__aset_find_adapter(s, name);
    if (k < 0) return unknown_adapter(s, name);
    for (int32_t i = 0; i < s->n_layers; i++)
        if (s->layers[i].lin && road__linear_is_merged(s->layers[i].lin, name))
            return road__error(ROAD_ERR_STATE,
                               "adapter '%s' is merged into the weights (layer %s); unmerge before "
                               "deleting it",
                               name, s->layers[i].name);
    /* Nothing below allocates: removal only, and the lists have their room. */
    for (int32_t i = 0; i < s->n_layers; i++)
        if (s->layers[i].lin && road_linear_has_adapter(s->layers[i].lin, name))
            (void)road_linear_delete_adapter(s->layers[i].lin, name);
    for (int32_t i = 0; i < s->n_active; i++) {
        if (strcmp(s->active[i], name) != 0) continue;
        const char *rest[ACTIVE_KEEP_MAX];
        int32_t nr = 0;
        for (int32_t j = 0; j < s->n_active && nr < ACTIVE_KEEP_MAX; j++)
            if (j != i) rest[nr++] = s->act[j];
        if (nr == 0 && s->n_ad > 1) {
            /* PEFT: the first remaining adapter becomes active. */
            rest[nr++] = s->ad[k == 0 ? 1 : 0].name;
            road__log(ROAD_LOG_WARN, "adapter '%s' was active and is now deleted; '%s' is active",
                      name, rest[0]);
        }
        active_assign(s, rest, nr);
        break;
    }
    adapter_free(&s->ad[k]);
    memmove(s->ad + k, s->ad + k + 1, sizeof(set_adapter) * (size_t)(s->n_ad - k - 1));
    s->n_ad--;
    push_state(s);
    return ROAD_OK;
}

/* ---- active / enabled / training ------------------------------------------------------------- */

road_status road_adapter_set_set_active(road_adapter_set *s, const char *const *names, int32_t n) {
    if (n < 0 || (n > 0 && !names))
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_set_active: bad name list");
    for (int32_t i = 0; i < n; i++) {
        if (road__aset_find_adapter(s, names[i]) < 0) return unknown_adapter(s, names[i]);
        for (int32_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return road__error(ROAD_ERR_INVALID_ARG, "adapter '%s' is listed twice", names[i]);
    }
    road_status st = check_active_copies(s, names, n);
    if (st != ROAD_OK) return st;
    /* n distinct existing names: n <= adapter count <= reserved room. */
    active_assign(s, names, n);
    push_state(s);
    return ROAD_OK;
}

int32_t road_adapter_set_active_count(const road_adapter_set *s) {
    return s->n_active;
}

const char *road_adapter_set_active_name(const road_adapter_set *s, int32_t i) {
    return i >= 0 && i < s->n_active ? s->active[i] : NULL;
}

road_status road_adapter_set_enable(road_adapter_set *s, bool enabled) {
    if (!enabled && road_adapter_set_merged(s)) {
        road_status st = road_adapter_set_unmerge(s);
        if (st != ROAD_OK) return st;
    }
    s->disabled = !enabled;
    push_state(s);
    return ROAD_OK;
}

bool road_adapter_set_enabled(const road_adapter_set *s) {
    return !s->disabled;
}

void road_adapter_set_train(road_adapter_set *s, bool training) {
    s->training = training;
}

bool road_adapter_set_training(const road_adapter_set *s) {
    return s->training;
}

/* ---- merge ------------------------------------------------------------------------------------
 */

bool road_adapter_set_merged(const road_adapter_set *s) {
    for (int32_t i = 0; i < s->n_layers; i++)
        if (s->layers[i].lin && road_linear_merged_count(s->layers[i].lin) > 0) return true;
    return false;
}

/* Will merging `list` write into layer i's weight? */
static bool merge_touches(const road_adapter_set *s, int32_t i, const char *const *list,
                          int32_t count) {
    road_linear *l = s->layers[i].lin;
    if (!l) return false;
    for (int32_t j = 0; j < count; j++)
        if (road_linear_has_adapter(l, list[j]) && !road__linear_is_merged(l, list[j])) return true;
    return false;
}

/* A float weight array registered for two layers (an LM head tied to the embedding) must not
 * be rotated for both: merging into one gives that layer its own copy first, so the other
 * (the embedding) keeps its values, as the unmerged model computes. The copy is the set's. */
static road_status untie_before_merge(road_adapter_set *s, const char *const *list, int32_t count) {
    for (int32_t i = 0; i < s->n_layers; i++) {
        set_layer *L = &s->layers[i];
        if (L->q && !L->own_q && merge_touches(s, i, list, count)) {
            /* a packed weight (a tied head kept in 16 bits) shared the same way */
            int32_t other = -1;
            for (int32_t j = 0; j < s->n_layers && other < 0; j++)
                if (j != i && s->layers[j].q == L->q) other = j;
            if (other < 0) continue;
            road_qtensor *own = NULL;
            road_status st = road_qtensor_copy(L->q, &own);
            if (st != ROAD_OK) return st;
            L->own_q = L->q = own;
            road__linear_rebind_qweight(L->lin, own);
            road__log(ROAD_LOG_INFO,
                      "layer %s shares its %s weight with %s (tied embeddings): it gets its own "
                      "copy (%lld bytes) so that merging rotates %s only",
                      L->name, road_qformat_name(own->format), s->layers[other].name,
                      (long long)road_qtensor_bytes(own), L->name);
            continue;
        }
        if (!L->w || L->own_w || !merge_touches(s, i, list, count)) continue;
        int32_t other = -1;
        for (int32_t j = 0; j < s->n_layers && other < 0; j++)
            if (j != i && s->layers[j].w == L->w) other = j;
        if (other < 0) continue;
        size_t bytes;
        if (road__size_mul((size_t)L->out * (size_t)L->in, sizeof(float), &bytes) != 0)
            return ROAD_ERR_NO_MEMORY;
        float *own = road__malloc(bytes);
        if (!own) return ROAD_ERR_NO_MEMORY;
        memcpy(own, L->w, bytes);
        L->own_w = L->w = own;
        road__linear_rebind_weight(L->lin, own);
        road__log(ROAD_LOG_INFO,
                  "layer %s shares its weight with %s (tied embeddings): it gets its own copy "
                  "(%zu bytes) so that merging rotates %s only",
                  L->name, s->layers[other].name, bytes, L->name);
    }
    return ROAD_OK;
}

static road_status merge_layers(road_adapter_set *s, const char *const *names, int32_t n,
                                bool safe) {
    const char *const *list = names ? names : s->active;
    int32_t count = names ? n : s->n_active;
    if (count < 0)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_merge: negative count");
    for (int32_t j = 0; j < count; j++)
        if (road__aset_find_adapter(s, list[j]) < 0) return unknown_adapter(s, list[j]);
    /* Validate every layer before touching any. */
    for (int32_t i = 0; i < s->n_layers; i++) {
        if (!s->layers[i].lin) continue;
        road_status st = road__linear_check_merge(s->layers[i].lin, list, count);
        if (st != ROAD_OK) {
            road__error_prefix("layer %s", s->layers[i].name);
            return st;
        }
    }
    road_status st = untie_before_merge(s, list, count);
    if (st != ROAD_OK) return st;
    int32_t *before = road__calloc((size_t)(s->n_layers ? s->n_layers : 1), sizeof(int32_t));
    if (!before) return ROAD_ERR_NO_MEMORY;
    int32_t i = 0;
    for (; i < s->n_layers; i++) {
        if (!s->layers[i].lin) continue;
        before[i] = road_linear_merged_count(s->layers[i].lin);
        st = road_linear_merge(s->layers[i].lin, list, count, safe);
        if (st != ROAD_OK) break;
    }
    if (st != ROAD_OK) {
        /* Only a safe merge's NaN/Inf check (or memory) fails here, the numerics having been
         * checked above. Take out what this call merged (exact 2x2 inverses: the weights come
         * back to float rounding) so the model is in one state. */
        road__error_prefix("layer %s", s->layers[i].name);
        char keep[1024];
        snprintf(keep, sizeof keep, "%s", road_last_error());
        for (int32_t k = i; k >= 0; k--) {
            road_linear *l = s->layers[k].lin;
            if (l) (void)road__linear_unmerge_last(l, road_linear_merged_count(l) - before[k]);
        }
        road__free(before);
        return road__error(st, "%s", keep);
    }
    road__free(before);
    return ROAD_OK;
}

road_status road_adapter_set_merge(road_adapter_set *s, const char *const *names, int32_t n,
                                   bool safe) {
    /* A disabled model runs its base weights (enable(false) unmerges for that reason); merged
     * weights would reach engines and mixed batches, and a forward would unmerge one layer. */
    if (s->disabled)
        return road__error(ROAD_ERR_STATE, "merge: adapters are disabled, so the model runs its "
                                           "base weights; enable them before merging");
    return merge_layers(s, names, n, safe);
}

road_status road_adapter_set_unmerge(road_adapter_set *s) {
    for (int32_t i = s->n_layers - 1; i >= 0; i--) {
        road_linear *l = s->layers[i].lin;
        if (!l || road_linear_merged_count(l) == 0) continue;
        road_status st = road_linear_unmerge(l);
        if (st != ROAD_OK) {
            road__error_prefix("layer %s", s->layers[i].name);
            return st;
        }
    }
    return ROAD_OK;
}

static void drop_all(road_adapter_set *s) {
    for (int32_t i = 0; i < s->n_layers; i++)
        if (s->layers[i].lin) road__linear_drop_all(s->layers[i].lin);
    for (int32_t i = 0; i < s->n_ad; i++) adapter_free(&s->ad[i]);
    s->n_ad = 0;
    s->n_active = 0;
    s->disabled = false;
    push_state(s);
}

road_status road_adapter_set_merge_and_unload(road_adapter_set *s, const char *const *names,
                                              int32_t n, bool safe) {
    road_status st = merge_layers(s, names, n, safe); /* disabled or not, as PEFT */
    if (st != ROAD_OK) return st;
    drop_all(s);
    return ROAD_OK;
}

road_status road_adapter_set_unload(road_adapter_set *s) {
    if (road_adapter_set_merged(s))
        road__log(ROAD_LOG_WARN, "unload: merged adapters stay in the weights (as in PEFT)");
    drop_all(s);
    return ROAD_OK;
}

/* ---- the trainable-parameter report -----------------------------------------------------------
 */

road_param_report road_adapter_set_param_report(const road_adapter_set *s) {
    road_param_report r = {0, s->base_params, 0.0};
    for (int32_t i = 0; i < s->n_layers; i++) {
        road_linear *l = s->layers[i].lin;
        if (!l) continue;
        for (int32_t k = 0; k < road_linear_adapter_count(l); k++) {
            const char *name = road_linear_adapter_name(l, k);
            int64_t np = 0;
            (void)road_linear_adapter_info(l, name, NULL, NULL, &np);
            r.all += 2 * np;
            for (int32_t j = 0; j < s->n_active; j++)
                if (strcmp(s->active[j], name) == 0) r.trainable += 2 * np;
        }
    }
    for (int32_t k = 0; k < s->n_ad; k++) {
        bool active = false;
        for (int32_t j = 0; j < s->n_active; j++)
            active |= strcmp(s->active[j], s->ad[k].name) == 0;
        for (int32_t c = 0; c < s->ad[k].n_copies; c++) {
            const set_layer *L = &s->layers[s->ad[k].copies[c].layer];
            const int64_t np = L->out * L->in + (L->b ? L->out : 0);
            r.all += np;
            if (active) r.trainable += np;
        }
    }
    r.percent = r.all > 0 ? 100.0 * (double)r.trainable / (double)r.all : 0.0;
    return r;
}

/* 1234567 -> "1,234,567" */
static void with_commas(int64_t v, char *buf, size_t cap) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
    size_t n = strlen(digits), k = 0;
    if (v < 0 && k + 1 < cap) buf[k++] = '-';
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        if (i > 0 && (n - i) % 3 == 0 && k + 1 < cap) buf[k++] = ',';
        if (k + 1 < cap) buf[k++] = digits[i];
    }
    buf[k] = '\0';
}

void road_param_report_format(const road_param_report *r, char *buf, size_t cap) {
    char t[40], a[40];
    with_commas(r->trainable, t, sizeof t);
    with_commas(r->all, a, sizeof a);
    snprintf(buf, cap, "trainable params: %s || all params: %s || trainable%%: %.4f", t, a,
             r->percent);
}

/* ---- running layers ------------------------------------------------------------------------- */

road_status road_adapter_set_forward(road_adapter_set *s, int32_t layer, int64_t rows,
                                     const float *x, float *y) {
    road_status st = road__aset_linear_layer(s, layer, "road_adapter_set_forward");
    if (st != ROAD_OK) return st;
    const set_copy *c = active_copy(s, layer);
    road_linear *l = s->layers[layer].lin;
    if (!c) return road_linear_forward(l, rows, x, y);
    if (rows < 0) return road__error(ROAD_ERR_SHAPE, "road_adapter_set_forward: rows must be >= 0");
    if (rows == 0) return ROAD_OK;
    if (!x || !y) return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_forward: NULL x or y");
    const int64_t out = s->layers[layer].out;
    road__sgemm_xwt(rows, out, s->layers[layer].in, x, c->w, c->b, y);
    return road_linear_apply(l, rows, y, out);
}

road_status road_adapter_set_base_forward(road_adapter_set *s, int32_t layer, int64_t rows,
                                          const float *x, float *y) {
    road_status st = road__aset_linear_layer(s, layer, "road_adapter_set_base_forward");
    if (st != ROAD_OK) return st;
    const set_copy *c = active_copy(s, layer);
    if (!c) return road_linear_base_forward(s->layers[layer].lin, rows, x, y);
    if (rows < 0 || (rows > 0 && (!x || !y)))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_adapter_set_base_forward: bad rows or NULL x, y");
    if (rows > 0)
        road__sgemm_xwt(rows, s->layers[layer].out, s->layers[layer].in, x, c->w, c->b, y);
    return ROAD_OK;
}

road_status road_adapter_set_apply(road_adapter_set *s, int32_t layer, int64_t rows, float *y) {
    road_status st = road__aset_linear_layer(s, layer, "road_adapter_set_apply");
    road_linear *l = st == ROAD_OK ? s->layers[layer].lin : NULL;
    return st != ROAD_OK ? st : road_linear_apply(l, rows, y, road_linear_out_features(l));
}

road_status road_adapter_set_backward(road_adapter_set *s, int32_t layer, int64_t rows,
                                      const float *x, const float *y_base, const float *dy,
                                      float *dx) {
    const char *fn = "road_adapter_set_backward";
    road_status st = road__aset_linear_layer(s, layer, fn);
    if (st != ROAD_OK) return st;
    set_copy *c = active_copy(s, layer);
    if (!c) return road_linear_backward(s->layers[layer].lin, rows, y_base, dy, dx);
    /* A trained copy: no other active adapter rotates this layer (check_active_copies), so
     * dy is the gradient of x W_c^T + b_c itself. */
    if (rows < 0) return road__error(ROAD_ERR_SHAPE, "%s: rows must be >= 0", fn);
    if (rows == 0) return ROAD_OK;
    if (!x || !dy)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "%s: layer %s trains a modules_to_save copy, which needs the layer "
                           "input x and dy",
                           fn, s->layers[layer].name);
    const int64_t out = s->layers[layer].out, in = s->layers[layer].in;
    /* dW (out, in) += dy^T (out, rows) x (rows, in); db += column sums of dy */
    road__sgemm(true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, c->dw, in);
    if (c->db)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < out; o++) c->db[o] += dy[r * out + o];
    if (dx) road__sgemm_dyw(rows, out, in, dy, c->w, dx);
    return ROAD_OK;
}

road_status road_adapter_set_widen_layer(road_adapter_set *s, int32_t i) {
    if (!s || i < 0 || i >= s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_widen_layer: no layer %d",
                           (int)i);
    set_layer *L = &s->layers[i];
    if (!L->q) return ROAD_OK; /* float32 already */
    if (road_qformat_is_quantized(L->q->format))
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "layer '%s' is quantized (%s): its float32 weight is not the "
                           "checkpoint's; load the model without quantization",
                           L->name, road_qformat_name(L->q->format));
    size_t bytes;
    if (road__size_mul((size_t)L->out * (size_t)L->in, sizeof(float), &bytes) != 0)
        return ROAD_ERR_NO_MEMORY;
    float *own = road__malloc(bytes);
    if (!own) return ROAD_ERR_NO_MEMORY;
    road_qtensor *old = L->q;
    road_status st = road_qtensor_dequantize_rows(old, 0, L->out, own);
    if (st != ROAD_OK) {
        road__free(own);
        return st;
    }
    /* every layer registered with this array (a tied head and its embedding) moves to the one
     * widened copy, so they stay tied: a later merge into the head copies it first
     * (untie_before_merge) */
    for (int32_t j = 0; j < s->n_layers; j++) {
        set_layer *J = &s->layers[j];
        if (J->q != old) continue;
        J->q = NULL;
        J->w = own;
        if (J->lin) road__linear_unpack_weight(J->lin, own);
    }
    road__free(L->wide_w);
    L->wide_w = own;
    if (L->own_q == old) {
        road_qtensor_free(old);
        L->own_q = NULL;
    }
    return ROAD_OK;
}
