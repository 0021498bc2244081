/*
 * adapter/adapter_mixed.c - mixed batches in the adapter manager: plans (names checked once
 * for the whole model), per-sequence RoAd on a layer's output, and the GEMMs of layers where
 * sequences use different modules_to_save copies (one GEMM per distinct weight).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/adapter_set_internal.h"
#include "adapter/linear_internal.h"
#include "core/alloc.h"
#include "core/blas.h"
#include "core/error.h"

/* ---- mixed batches ---------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void road_batch_plan_free(road_batch_plan *p) {
    if (!p) return;
    for (int64_t i = 0; i < p->n_seq; i++) road__free(p->names[i]);
    road__free(p->names);
    road__free(p);
}

int64_t road_batch_plan_sequences(const road_batch_plan *p) {
    return p->n_seq;
}

road_status road_adapter_set_plan(road_adapter_set *s, const char *const *names, int64_t n_seq,
                                  road_batch_plan **out) {
    const char *fn = "mixed batch";
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_plan: out is NULL");
    *out = NULL;
    if (n_seq < 0 || (n_seq > 0 && !names))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: bad name list", fn);
    if (s->training)
        return road__error(ROAD_ERR_STATE,
                           "%s: per-sequence adapters are for inference; the model is in training "
                           "mode (switch it to eval mode first)",
                           fn);
    if (road_adapter_set_merged(s))
        return road__error(ROAD_ERR_STATE,
                           "%s: cannot use per-sequence adapters while adapters are merged into "
                           "the weights; unmerge first",
                           fn);
    /* Names that exist nowhere: collect, sort, de-duplicate, list them all. */
    const char **missing = road__malloc(sizeof(char *) * (size_t)(n_seq ? n_seq : 1));
    if (!missing) return ROAD_ERR_NO_MEMORY;
    int64_t nm = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        if (!names[i]) {
            road__free(missing);
            return road__error(ROAD_ERR_INVALID_ARG, "%s: name %lld is NULL", fn, (long long)i);
        }
        if (strcmp(names[i], ROAD_BASE_NAME) != 0 && road__aset_find_adapter(s, names[i]) < 0)
            missing[nm++] = names[i];
    }
    if (nm > 0) {
        qsort(missing, (size_t)nm, sizeof(char *), cmp_str);
        char list[768];
        size_t k = 0;
        int64_t shown = 0;
        for (int64_t i = 0; i < nm && k + 8 < sizeof list; i++) {
            if (i > 0 && strcmp(missing[i], missing[i - 1]) == 0) continue;
            if (shown == PLAN_MAX_LISTED) {
                k += (size_t)snprintf(list + k, sizeof list - k, ", ...");
                break;
            }
            k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s'", shown ? ", " : "", missing[i]);
            shown++;
        }
        road__free(missing);
        return road__error(
            ROAD_ERR_NOT_FOUND,
            "%s: unknown adapter name(s) %s; use the name of a loaded adapter or '%s'", fn, list,
            ROAD_BASE_NAME);
    }
    road__free(missing);
    road_batch_plan *p = road__calloc(1, sizeof *p);
    if (!p) return ROAD_ERR_NO_MEMORY;
    p->names = road__calloc((size_t)(n_seq ? n_seq : 1), sizeof(char *));
    if (!p->names) {
        road__free(p);
        return ROAD_ERR_NO_MEMORY;
    }
    p->set = s;
    p->n_seq = n_seq;
    p->n_layers = s->n_layers;
    for (int64_t i = 0; i < n_seq; i++) {
        if (strcmp(names[i], ROAD_BASE_NAME) == 0) continue;
        if (!(p->names[i] = road__strdup(names[i]))) {
            road_batch_plan_free(p);
            return ROAD_ERR_NO_MEMORY;
        }
    }
    *out = p;
    return ROAD_OK;
}

road_status road_adapter_set_apply_mixed(road_adapter_set *s, const road_batch_plan *p,
                                         int32_t layer, int64_t rows_per_seq,
                                         const int64_t *seq_rows, float *y) {
    road_status st = road__aset_linear_layer(s, layer, "road_adapter_set_apply_mixed");
    if (st != ROAD_OK) return st;
    if (!p || p->set != s || p->n_layers != s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_apply_mixed: plan is NULL or "
                                                 "from another model");
    if (s->training)
        return road__error(ROAD_ERR_STATE, "mixed batch: the model was switched to training mode "
                                           "after the batch was planned (switch it to eval mode)");
    if (s->disabled) return ROAD_OK;
    if (road_adapter_set_merged(s))
        return road__error(ROAD_ERR_STATE, "mixed batch: adapters were merged after the batch was "
                                           "planned; unmerge first");
    road_linear *l = s->layers[layer].lin;
    const int64_t out = road_linear_out_features(l);
    int64_t rows = 0;
    for (int64_t i = 0; i < p->n_seq; i++) {
        int64_t r = seq_rows ? seq_rows[i] : rows_per_seq;
        if (r < 0)
            return road__error(ROAD_ERR_SHAPE, "mixed batch: sequence %lld has %lld rows",
                               (long long)i, (long long)r);
        rows += r;
    }
    if (rows == 0) return ROAD_OK;
    int32_t na = road_linear_adapter_count(l);
    int32_t *slot = road__malloc(sizeof(int32_t) * (size_t)rows);
    road_rot *rots = road__calloc((size_t)(na ? na : 1), sizeof(road_rot));
    const road_rot **rp = road__calloc((size_t)(na ? na : 1), sizeof(road_rot *));
    if (!slot || !rots || !rp) {
        st = ROAD_ERR_NO_MEMORY;
        goto done;
    }
    int32_t any = -1;
    for (int64_t i = 0, r0 = 0; i < p->n_seq; i++) {
        int64_t r = seq_rows ? seq_rows[i] : rows_per_seq;
        int32_t k = -1;
        if (p->names[i]) {
            for (int32_t j = 0; j < na; j++)
                if (strcmp(road_linear_adapter_name(l, j), p->names[i]) == 0) k = j;
            if (k < 0 && road__aset_find_adapter(s, p->names[i]) < 0) {
                /* Not on this layer is fine (PEFT); gone from the model is a stale plan. */
                st = road__error(ROAD_ERR_STATE,
                                 "mixed batch: adapter '%s' was deleted after the "
                                 "batch was planned; plan the batch again",
                                 p->names[i]);
                goto done;
            }
            if (k >= 0 && !rots[k].c1) {
                st = road_linear_adapter_rot(l, p->names[i], &rots[k]);
                if (st != ROAD_OK) goto done;
                any = k;
            }
        }
        for (int64_t t = 0; t < r; t++) slot[r0 + t] = k;
        r0 += r;
    }
    if (any < 0) goto done; /* no row has an adapter on this layer */
    for (int32_t j = 0; j < na; j++) {
        if (!rots[j].c1) rots[j] = rots[any]; /* unused slots only need to validate */
        rp[j] = &rots[j];
    }
    st = road_rot_forward_mixed(rp, na, slot, rows, y, out);
done:
    road__free(slot);
    road__free(rots);
    road__free(rp);
    return st;
}

road_status road_adapter_set_plan_layer_weight(const road_adapter_set *s,
                                               const road_batch_plan *p, int32_t layer,
                                               int64_t seq, const float **w, const float **b) {
    if (!p || p->set != s || p->n_layers != s->n_layers)
        return road__error(
            ROAD_ERR_INVALID_ARG,
            "road_adapter_set_plan_layer_weight: plan is NULL or from another model");
    if (layer < 0 || layer >= s->n_layers || seq < 0 || seq >= p->n_seq)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_adapter_set_plan_layer_weight: layer %d or sequence %lld out of "
                           "range",
                           (int)layer, (long long)seq);
    const set_layer *L = &s->layers[layer];
    const set_copy *c = NULL;
    if (!s->disabled && p->names[seq]) {
        int32_t k = road__aset_find_adapter(s, p->names[seq]);
        if (k < 0)
            return road__error(ROAD_ERR_STATE,
                               "mixed batch: adapter '%s' was deleted after the "
                               "batch was planned; plan the batch again",
                               p->names[seq]);
        c = road__aset_find_copy(&s->ad[k], layer);
    }
    if (w) *w = c ? c->w : L->lin ? road_linear_weight(L->lin) : L->w;
    if (b) *b = c ? c->b : L->lin ? road_linear_bias(L->lin) : L->b;
    return ROAD_OK;
}

/* y = x W^T + b with a float weight w (a copy), or the layer's base when w is NULL (a
 * quantized base has no float weight). */
static road_status gemm_with(road_adapter_set *s, int32_t layer, const float *w, const float *b,
                             int64_t rows, const float *x, float *y) {
    if (!w) return road_linear_base_forward(s->layers[layer].lin, rows, x, y);
    road__sgemm_xwt(rows, s->layers[layer].out, s->layers[layer].in, x, w, b, y);
    return ROAD_OK;
}

/* y = x W_s^T + b_s where each sequence s runs its adapter's modules_to_save copy or the
 * base: one GEMM per distinct weight, over the gathered rows of the sequences that use it. */
static road_status mixed_gemm(road_adapter_set *s, const road_batch_plan *p, int32_t layer,
                              int64_t rows_per_seq, const int64_t *seq_rows, int64_t rows,
                              const float *x, float *y) {
    const int64_t out = s->layers[layer].out, in = s->layers[layer].in;
    road_status st = ROAD_OK;
    bool copies = false;
    for (int32_t k = 0; k < s->n_ad && !copies; k++)
        copies = road__aset_find_copy(&s->ad[k], layer) != NULL;
    if (!copies || s->disabled) {
        /* the common case: every sequence runs the base weight (float or quantized) */
        return road_linear_base_forward(s->layers[layer].lin, rows, x, y);
    }
    const int64_t n = p->n_seq;
    const float **ws = road__malloc(sizeof(float *) * 2 * (size_t)(n ? n : 1));
    int64_t *r0 = road__malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    bool *done = road__calloc((size_t)(n ? n : 1), sizeof(bool));
    float *xg = NULL, *yg = NULL;
    if (!ws || !r0 || !done) {
        st = ROAD_ERR_NO_MEMORY;
        goto out;
    }
    const float **bs = ws + n;
    for (int64_t i = 0, r = 0; i < n && st == ROAD_OK; i++) {
        st = road_adapter_set_plan_layer_weight(s, p, layer, i, &ws[i], &bs[i]);
        r0[i] = r;
        r += seq_rows ? seq_rows[i] : rows_per_seq;
    }
    if (st != ROAD_OK) goto out;
    for (int64_t i = 0; i < n; i++) {
        if (done[i]) continue;
        /* every sequence with the same weight as sequence i */
        int64_t gr = 0;
        for (int64_t j = i; j < n; j++)
            if (ws[j] == ws[i]) gr += seq_rows ? seq_rows[j] : rows_per_seq;
        if (gr == rows) { /* one weight for the whole batch */
            st = gemm_with(s, layer, ws[i], bs[i], rows, x, y);
            break;
        }
        if (!xg) {
            xg = road__malloc(sizeof(float) * (size_t)(rows * in));
            yg = road__malloc(sizeof(float) * (size_t)(rows * out));
            if (!xg || !yg) {
                st = ROAD_ERR_NO_MEMORY;
                goto out;
            }
        }
        int64_t g = 0;
        for (int64_t j = i; j < n; j++) {
            if (ws[j] != ws[i]) continue;
            const int64_t nr = seq_rows ? seq_rows[j] : rows_per_seq;
            memcpy(xg + g * in, x + r0[j] * in, sizeof(float) * (size_t)(nr * in));
            g += nr;
        }
        if (gr > 0 && (st = gemm_with(s, layer, ws[i], bs[i], gr, xg, yg)) != ROAD_OK) goto out;
        g = 0;
        for (int64_t j = i; j < n; j++) {
            if (ws[j] != ws[i]) continue;
            const int64_t nr = seq_rows ? seq_rows[j] : rows_per_seq;
            memcpy(y + r0[j] * out, yg + g * out, sizeof(float) * (size_t)(nr * out));
            g += nr;
            done[j] = true;
        }
    }
out:
    road__free(ws);
    road__free(r0);
    road__free(done);
    road__free(xg);
    road__free(yg);
    return st;
}

road_status road_adapter_set_forward_mixed(road_adapter_set *s, const road_batch_plan *p,
                                           int32_t layer, int64_t rows_per_seq,
                                           const int64_t *seq_rows, const float *x, float *y) {
    road_status st = road__aset_linear_layer(s, layer, "road_adapter_set_forward_mixed");
    if (st != ROAD_OK) return st;
    if (!p || p->set != s || p->n_layers != s->n_layers)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_forward_mixed: plan is NULL or "
                                                 "from another model");
    int64_t rows = 0;
    for (int64_t i = 0; i < p->n_seq; i++) {
        const int64_t r = seq_rows ? seq_rows[i] : rows_per_seq;
        if (r < 0)
            return road__error(ROAD_ERR_SHAPE, "mixed batch: sequence %lld has %lld rows",
                               (long long)i, (long long)r);
        rows += r;
    }
    if (rows == 0) return ROAD_OK;
    if (!x || !y)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_forward_mixed: NULL x or y");
    st = mixed_gemm(s, p, layer, rows_per_seq, seq_rows, rows, x, y);
    if (st != ROAD_OK) return st;
    return road_adapter_set_apply_mixed(s, p, layer, rows_per_seq, seq_rows, y);
}
