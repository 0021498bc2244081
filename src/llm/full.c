/*
 * llm/full.c - the model's own tensors by Hugging Face name, and full fine-tuning: a gradient
 * buffer for every weight, bias and norm, filled by road_model_loss_backward (grad.c).
 *
 * Why a table built once: saving a checkpoint, the optimizer and the backward pass all need
 * "which array is model.layers.3.mlp.up_proj.weight, and where is its gradient". The table
 * holds the names in transformers' named_parameters() order (so saved files and optimizer
 * state read like PyTorch's), the live arrays (the linear layers' arrays are the adapter set's,
 * so merges show), and index maps from the set's layers and the blocks to tensors, which is
 * what backward looks up. Gradients are one block, allocated when full training is turned on.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "llm/model_internal.h"

#define NAME_CAP 128

void road__full_free(road_full *f) {
    if (!f) return;
    road__free(f->t);
    road__free(f->names);
    road__free(f->grads);
    road__free(f->lin_w);
    road__free(f->lin_b);
    road__free(f->norm);
    road__free(f);
}

typedef struct builder {
    road_full *f;
    road_status st;
} builder;

static int32_t add(builder *b, const char *name, const float *p, int64_t d0, int64_t d1,
                   bool decay) {
    road_full *f = b->f;
    if (b->st != ROAD_OK) return -1;
    if (!p) {
        b->st = road__error(ROAD_ERR_UNSUPPORTED,
                            "'%s' is not held as float32 (a quantized layer): full fine-tuning "
                            "and float saving need float weights",
                            name);
        return -1;
    }
    road_model_tensor *t = &f->t[f->n];
    snprintf(f->names + (size_t)f->n * NAME_CAP, NAME_CAP, "%s", name);
    t->name = f->names + (size_t)f->n * NAME_CAP;
    t->param = (float *)p; /* the model's own array (the adapter set borrows it) */
    t->grad = NULL;
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1 > 0 ? d1 : 1;
    t->n = d0 * t->shape[1];
    t->decay = decay;
    return f->n++;
}

/* The linear layer `layer` of the set: weight (+ bias). */
static void add_linear(builder *b, road_model *m, int32_t layer) {
    /* a 16-bit layer kept as stored trains as float32 (its own widened copy); the mapped pages
     * it was read from are dropped (an owned copy, a merge's, is freed by the set) */
    const road_qtensor *q = NULL;
    if (b->st == ROAD_OK) b->st = road_adapter_set_base_weight(m->set, layer, NULL, &q);
    const bool narrow = q && !road_qformat_is_quantized(q->format), mapped = narrow && !q->owned;
    const void *data = q ? q->data : NULL;
    const int64_t numel = q ? q->rows * q->cols : 0, packed = q ? road_qtensor_bytes(q) : 0;
    if (b->st == ROAD_OK) b->st = road_adapter_set_widen_layer(m->set, layer);
    if (b->st == ROAD_OK && narrow) {
        if (mapped) road__weights_drop(data, (size_t)packed);
        m->weight_bytes += numel * (int64_t)sizeof(float) - packed;
    }
    road_linear *l = road_adapter_set_layer(m->set, layer);
    const char *lname = road_adapter_set_layer_name(m->set, layer);
    char name[NAME_CAP];
    snprintf(name, sizeof name, "%s.weight", lname);
    b->f->lin_w[layer] =
        add(b, name, l ? road_linear_weight(l) : NULL, l ? road_linear_out_features(l) : 0,
            l ? road_linear_in_features(l) : 0, true);
    if (l && road_linear_bias(l)) {
        snprintf(name, sizeof name, "%s.bias", lname);
        b->f->lin_b[layer] =
            add(b, name, road_linear_bias(l), road_linear_out_features(l), 0, false);
    }
}

static road_status build(road_model *m) {
    /* A merge into a tied head gave it its own array since the table was built: rebuild
     * (full training refuses merged adapters, so no gradient is lost). */
    if (m->full && !m->full->on && m->full->head_tied != road__model_head_tied(m)) {
        road__full_free(m->full);
        m->full = NULL;
    }
    if (m->full) return ROAD_OK;
    /* a 16-bit embedding becomes float32 (a tied head with it: they stay one array) */
    road_status wst = road__model_widen_embedding(m);
    if (wst != ROAD_OK) return wst;
    const road_llm_config *c = &m->cfg;
    const int64_t L = c->n_layers, H = c->hidden_size, V = c->vocab_size;
    const int32_t n_layers = road_adapter_set_layer_count(m->set);
    /* at most: embed, 7 weights + 7 biases + N_NORM norms per block, norm, lm_head */
    const int32_t cap = (int32_t)(3 + (14 + N_NORM) * L);
    road_full *f = road__calloc(1, sizeof *f);
    if (!f) return ROAD_ERR_NO_MEMORY;
    f->t = road__calloc((size_t)cap, sizeof *f->t);
    f->names = road__calloc((size_t)cap, NAME_CAP);
    f->lin_w = road__malloc(sizeof(int32_t) * (size_t)n_layers);
    f->lin_b = road__malloc(sizeof(int32_t) * (size_t)n_layers);
    f->norm = road__malloc(sizeof(int32_t) * (size_t)(L * N_NORM));
    if (!f->t || !f->names || !f->lin_w || !f->lin_b || !f->norm) {
        road__full_free(f);
        return ROAD_ERR_NO_MEMORY;
    }
    for (int32_t i = 0; i < n_layers; i++) f->lin_w[i] = f->lin_b[i] = -1;
    builder b = {f, ROAD_OK};
    f->embed = add(&b, "model.embed_tokens.weight", m->embed, V, H, true);
    for (int64_t l = 0; l < L; l++) {
        const road_block *blk = &m->blocks[l];
        for (int p = 0; p < N_PROJ; p++)
            if (blk->proj[p] >= 0) add_linear(&b, m, blk->proj[p]);
        for (int n = 0; n < N_NORM; n++) {
            f->norm[l * N_NORM + n] = -1;
            if (!blk->norm[n]) continue;
            char name[NAME_CAP];
            snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l,
                     m->norm_names[n]);
            f->norm[l * N_NORM + n] =
                add(&b, name, blk->norm[n], road__model_norm_len(m, n), 0, false);
        }
    }
    f->final_norm = add(&b, "model.norm.weight", m->final_norm, H, 0, false);
    f->head_tied = road__model_head_tied(m);
    if (f->head_tied)
        f->lin_w[m->lm_head] = f->embed; /* one array, both uses */
    else
        add_linear(&b, m, m->lm_head);
    if (b.st != ROAD_OK) {
        road__full_free(f);
        return b.st;
    }
    for (int32_t i = 0; i < f->n; i++) f->numel += f->t[i].n;
    m->full = f;
    return ROAD_OK;
}

int32_t road_model_tensor_count(road_model *m) {
    if (!m || build(m) != ROAD_OK) return 0;
    return m->full->n;
}

road_status road_model_tensor_get(road_model *m, int32_t i, road_model_tensor *out) {
    if (!m || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_model_tensor_get: NULL argument");
    road_status s = build(m);
    if (s != ROAD_OK) return s;
    if (i < 0 || i >= m->full->n)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor %d out of range (the model has %d)", i,
                           m->full->n);
    *out = m->full->t[i];
    return ROAD_OK;
}

road_status road_model_set_full_training(road_model *m, bool on) {
    if (!m) return road__error(ROAD_ERR_INVALID_ARG, "road_model_set_full_training: NULL model");
    if (!on) {
        if (m->full) {
            road__free(m->full->grads);
            m->full->grads = NULL;
            for (int32_t i = 0; i < m->full->n; i++) m->full->t[i].grad = NULL;
            m->full->on = false;
        }
        return ROAD_OK;
    }
    if (road_adapter_set_merged(m->set))
        return road__error(ROAD_ERR_STATE, "full fine-tuning: adapters are merged into the "
                                           "weights; unmerge (or save the merged model and load "
                                           "it) first");
    road_status s = build(m);
    if (s != ROAD_OK) return s;
    road_full *f = m->full;
    if (f->on) return ROAD_OK;
    size_t bytes;
    if (road__size_mul((size_t)f->numel, sizeof(float), &bytes) != 0) return ROAD_ERR_NO_MEMORY;
    f->grads = road__calloc(1, bytes);
    if (!f->grads) return ROAD_ERR_NO_MEMORY;
    int64_t off = 0;
    for (int32_t i = 0; i < f->n; i++) {
        f->t[i].grad = f->grads + off;
        off += f->t[i].n;
    }
    f->on = true;
    return ROAD_OK;
}

bool road_model_full_training(const road_model *m) {
    return m && m->full && m->full->on;
}

void road_model_zero_grads(road_model *m) {
    if (road_model_full_training(m))
        memset(m->full->grads, 0, sizeof(float) * (size_t)m->full->numel);
}

float *road__full_grad(road_model *m, int32_t tensor) {
    if (!road_model_full_training(m) || tensor < 0) return NULL;
    return m->full->t[tensor].grad;
}
