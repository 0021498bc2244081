/*
 * llm/model.c - loading a decoder checkpoint folder (every family config.c reads) into a
 * road_model: the weights by Hugging Face name, the family's norms and (fused) projections,
 * and each layer's spec (describe_layers).
 *
 * Every linear layer is registered with the model's adapter set under its Hugging Face name
 * (model.layers.<i>.self_attn.q_proj, ..., lm_head), so PEFT adapter folders load and target
 * exactly as they do on a transformers model. The weights stay where road_weights put them
 * (mapped copy-on-write, or widened copies); the set borrows them, so merging writes into them.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/threads.h"
#include "llm/model_internal.h"
#include "quant/qcheckpoint.h"

#define NAME_MAX_LEN 96

road_model_params road_model_default_params(void) {
    road_model_params p = {0};
    return p;
}

float *road__workspace_get(road_workspace *ws, size_t floats) {
    if (floats <= ws->cap) return ws->buf;
    float *nb = road__malloc(floats * sizeof(float));
    if (!nb) return NULL;
    road__free(ws->buf);
    ws->buf = nb;
    ws->cap = floats;
    return nb;
}

void road_model_free(road_model *m) {
    if (!m) return;
    road_adapter_set_free(m->set);
    road__weights_close(m->weights);
    road__full_free(m->full);
    road__free(m->dir);
    for (int32_t i = 0; i < m->n_qt; i++) road_qtensor_free(m->qt[i]);
    road__free(m->qt);
    road_qtensor_free(m->embed_q);
    road__free(m->blocks);
    road__rope_free(&m->rope);
    road__rope_free(&m->rope_local);
    road__free(m->ws.buf);
    road__free(m->bwd_act.buf);
    road__free(m->bwd_rows.buf);
    road__free(m);
}

const road_llm_config *road_model_config(const road_model *m) {
    return &m->cfg;
}

const road_generation_config *road_model_generation_config(const road_model *m) {
    return &m->gen;
}

bool road__model_head_tied(const road_model *m) {
    if (!m->cfg.tie_word_embeddings) return false;
    road_linear *head = road_adapter_set_layer(m->set, m->lm_head);
    if (!head) return false;
    return m->embed_q ? road_linear_qweight(head) == m->embed_q
                      : road_linear_weight(head) == m->embed;
}

road_status road__model_widen_embedding(road_model *m) {
    if (!m->embed_q) return ROAD_OK;
    road_status st = road_adapter_set_widen_layer(m->set, m->embed_layer);
    const float *w = NULL;
    if (st == ROAD_OK) st = road_adapter_set_base_weight(m->set, m->embed_layer, &w, NULL);
    if (st != ROAD_OK) return st;
    ROAD_ASSERT(w);
    const int64_t n = m->cfg.vocab_size * m->cfg.hidden_size;
    const int64_t packed = road_qtensor_bytes(m->embed_q);
    road__weights_drop(m->embed_q->data, (size_t)packed); /* only read: the file has them */
    m->weight_bytes += n * (int64_t)sizeof(float) - packed;
    road_qtensor_free(m->embed_q);
    m->embed_q = NULL;
    m->embed = (float *)(uintptr_t)w; /* the set's, as a float embedding's array is borrowed */
    return ROAD_OK;
}

road_qformat road_model_embedding_format(const road_model *m, int64_t *bytes) {
    const int64_t n = m->cfg.vocab_size * m->cfg.hidden_size;
    if (bytes) *bytes = m->embed_q ? road_qtensor_bytes(m->embed_q) : n * (int64_t)sizeof(float);
    return m->embed_q ? m->embed_q->format : ROAD_QFORMAT_NONE;
}

road_adapter_set *road_model_adapters(road_model *m) {
    return m->set;
}

int64_t road_model_weight_bytes(const road_model *m) {
    return m->weight_bytes;
}

int32_t road_model_quantized_layers(const road_model *m, road_qformat *format) {
    int32_t n = 0;
    if (format) *format = ROAD_QFORMAT_NONE;
    for (int32_t i = 0; i < m->n_qt; i++) {
        if (!road_qformat_is_quantized(m->qt[i]->format)) continue;
        if (format && n == 0) *format = m->qt[i]->format;
        n++;
    }
    return n;
}

int32_t road_model_stored_layers(const road_model *m, road_qformat *format) {
    int32_t n = 0;
    if (format) *format = ROAD_QFORMAT_NONE;
    for (int32_t i = 0; i < m->n_qt; i++) {
        if (road_qformat_is_quantized(m->qt[i]->format)) continue;
        if (format && n == 0) *format = m->qt[i]->format;
        n++;
    }
    return n;
}

static const road_st_tensor *find_tensor(void *ctx, const char *name) {
    return road__weights_find(ctx, name);
}

/* A 16-bit tensor kept as stored: a road_qtensor over the mapped (copy-on-write) file. */
static road_status wrap_stored(road_model *m, const char *key, int64_t rows, int64_t cols,
                               road_qtensor **q) {
    const int64_t shape[2] = {rows, cols};
    const road_st_tensor *t = NULL;
    road_status st = road__weights_get_raw(m->weights, key, 2, shape, &t);
    if (st != ROAD_OK) return st;
    road_qtensor desc;
    memset(&desc, 0, sizeof desc);
    desc.format = t->dtype == ROAD_DTYPE_BF16 ? ROAD_QFORMAT_BF16 : ROAD_QFORMAT_F16;
    desc.rows = rows, desc.cols = cols;
    desc.data = (uint8_t *)(uintptr_t)t->data; /* private writable mapping */
    return road_qtensor_wrap(&desc, q);
}

static bool is_16bit(const road_st_tensor *t) {
    return t && (t->dtype == ROAD_DTYPE_BF16 || t->dtype == ROAD_DTYPE_F16);
}

/* A linear layer's weight into d: quantized as stored (a checkpoint saved quantized), or
 * float32, quantized now when p asks for it (the float copy is then given back at once, so
 * only one layer's float weight is held at a time). `tied` is the embedding for a tied
 * lm_head (never given back). */
static road_status load_linear(road_model *m, const road_model_params *p, const char *name,
                               int64_t out, int64_t in, bool head, const float *tied,
                               road_layer_desc *d) {
    road_qtensor *q = NULL;
    road_status st = ROAD_OK;
    const road_qformat f = p ? p->quantize : ROAD_QFORMAT_NONE;
    const bool quantize = f != ROAD_QFORMAT_NONE && !(head && !p->quantize_lm_head);
    char key[NAME_MAX_LEN + 16];
    snprintf(key, sizeof key, "%s.weight", name);
    const road_st_tensor *t = tied ? NULL : road__weights_find(m->weights, key);
    if (!tied && road__qckpt_is_quantized(find_tensor, m->weights, name)) {
        st = road__qckpt_read(find_tensor, m->weights, name, out, in, &q);
    } else if (is_16bit(t) && !quantize && !(p && p->float32_weights)) {
        /* a 16-bit weight kept as stored: the matmuls read the mapped (copy-on-write) file */
        st = wrap_stored(m, key, out, in, &q);
    } else {
        float *w = (float *)tied;
        if (!w) {
            int64_t shape[2] = {out, in};
            st = road__weights_get(m->weights, key, 2, shape, &w);
        }
        if (st != ROAD_OK || !quantize) {
            d->weight = w;
            return st;
        }
        st = road_qtensor_quantize(f, out, in, w, p->double_quant, &q);
        if (st == ROAD_OK && !tied) road__weights_release(m->weights, w, out * in);
        /* the tied table was read whole; the lookup will fault in only the rows it reads */
        if (st == ROAD_OK && tied) road__weights_evict(m->weights, w, out * in);
        if (st != ROAD_OK) road__error_prefix("quantizing '%s'", name);
    }
    if (st != ROAD_OK) return st;
    m->qt[m->n_qt++] = q;
    d->qweight = q;
    return ROAD_OK;
}

static road_status get(road_model *m, const char *name, int64_t d0, int64_t d1, float **out) {
    int64_t shape[2] = {d0, d1};
    return road__weights_get(m->weights, name, d1 > 0 ? 2 : 1, shape, out);
}

/* The embedding: a 16-bit table kept as stored (embed_q) unless p asks for float32 weights,
 * else float32 (mapped, or widened). Quantizing a base never touches it (bitsandbytes
 * quantizes linear layers only). */
static road_status load_embedding(road_model *m, const road_model_params *p) {
    static const char key[] = "model.embed_tokens.weight";
    const int64_t V = m->cfg.vocab_size, H = m->cfg.hidden_size;
    if (is_16bit(road__weights_find(m->weights, key)) && !(p && p->float32_weights))
        return wrap_stored(m, key, V, H, &m->embed_q);
    return get(m, key, V, H, &m->embed);
}

/* lm_head of a tied config: the embedding's own array (float32, or the 16-bit table as stored,
 * which the 16-bit matmuls run), or, when p quantizes lm_head (quantize_lm_head) into another
 * format, a quantized copy of its own (transformers' bitsandbytes path unties it too). */
static road_status load_tied_head(road_model *m, const road_model_params *p, road_layer_desc *d) {
    const road_qformat f = p ? p->quantize : ROAD_QFORMAT_NONE;
    const bool quantize = f != ROAD_QFORMAT_NONE && p->quantize_lm_head;
    const int64_t V = d->out_features, H = d->in_features;
    if (!m->embed_q) return load_linear(m, p, "lm_head", V, H, true, m->embed, d);
    if (!quantize || f == m->embed_q->format) {
        d->qweight = m->embed_q;
        return ROAD_OK;
    }
    /* the float copy quantizing needs lives for this call only */
    float *w = road__malloc(sizeof(float) * (size_t)(V * H));
    if (!w) return ROAD_ERR_NO_MEMORY;
    road_qtensor *q = NULL;
    road_status st = road_qtensor_dequantize_rows(m->embed_q, 0, V, w);
    if (st == ROAD_OK) st = road_qtensor_quantize(f, V, H, w, p->double_quant, &q);
    road__free(w);
    /* the mapped table was read whole; the lookup will fault in only the rows it reads */
    road__weights_drop(m->embed_q->data, (size_t)road_qtensor_bytes(m->embed_q));
    if (st != ROAD_OK) {
        road__error_prefix("quantizing 'lm_head'");
        return st;
    }
    m->qt[m->n_qt++] = q;
    d->qweight = q;
    return ROAD_OK;
}

int64_t road__model_norm_len(const road_model *m, int n) {
    int64_t len = 0;
    road__layout_norm(&m->cfg, n, &len);
    return len;
}

/* config.json against the files, before anything is allocated from it: every size road
 * allocates by at load (blocks, layer tables) must be one the weights can back, so a config
 * with num_hidden_layers 1e8 fails in milliseconds, naming the field, instead of allocating
 * for 1e8 blocks first. The per-tensor shapes (every [out, in] the config implies) are checked
 * as each tensor is read, before its own memory is allocated. */
static road_status check_config_against_files(const road_llm_config *c, const road_weights *w) {
    const int64_t have = road__weights_layer_count(w, "model.layers.");
    if (c->n_layers > have)
        return road__error(ROAD_ERR_SHAPE,
                           "config.json says num_hidden_layers = %lld, but the weight files hold "
                           "%lld layer%s (model.layers.0 to model.layers.%lld); fix "
                           "num_hidden_layers or add the missing shards",
                           (long long)c->n_layers, (long long)have, have == 1 ? "" : "s",
                           (long long)have - 1);
    const road_st_tensor *e = road__weights_find(w, "model.embed_tokens.weight");
    if (e && (e->ndim != 2 || e->shape[0] != c->vocab_size || e->shape[1] != c->hidden_size))
        return road__error(ROAD_ERR_SHAPE,
                           "config.json says vocab_size = %lld and hidden_size = %lld, but "
                           "model.embed_tokens.weight is %s[%lld, %lld]; the config does not "
                           "belong to these weights",
                           (long long)c->vocab_size, (long long)c->hidden_size,
                           e->ndim == 2 ? "" : "not 2-D: ", (long long)e->shape[0],
                           (long long)(e->ndim > 1 ? e->shape[1] : 0));
    if (have > c->n_layers)
        road__log(ROAD_LOG_WARN,
                  "the weight files hold %lld layers; config.json's num_hidden_layers = %lld uses "
                  "the first %lld only (as transformers does)",
                  (long long)have, (long long)c->n_layers, (long long)c->n_layers);
    return ROAD_OK;
}

/* Each layer's spec from the config: the norm kind and eps, the activation, the window of a
 * sliding layer, the attention scale and cap, the RoPE of its kind (gemma3's sliding layers
 * their own base). head_spec: the final norm, the logit cap, the embedding scale. */
static void describe_layers(road_model *m) {
    const road_llm_config *c = &m->cfg;
    road_layer_spec s = {0};
    s.norm = c->norm_plus_one ? ROAD_NORM_RMS_1P : ROAD_NORM_RMS;
    s.norm_eps = c->rms_norm_eps;
    s.act = c->hidden_act;
    s.attn_scale = (float)c->attn_scale;
    s.attn_softcap = (float)c->attn_softcap;
    s.rotary_dim = c->rotary_dim;
    s.embed_scale = 1.0f;
    for (int64_t l = 0; l < c->n_layers; l++) {
        road_layer_spec ls = s;
        const bool slides = road_llm_config_layer_slides(c, l);
        ls.window = slides ? c->sliding_window : 0;
        ls.rope = slides && m->rope_local.inv_freq ? &m->rope_local : &m->rope;
        m->blocks[l].spec = ls;
    }
    m->head_spec = s;
    m->head_spec.rope = &m->rope;
    m->head_spec.final_softcap = (float)c->final_softcap;
    /* transformers: torch.tensor(hidden_size ** 0.5, dtype=float32) */
    if (c->embed_scale) m->head_spec.embed_scale = (float)sqrt((double)c->hidden_size);
}

road_status road_model_load(const char *dir, const road_model_params *p, road_model **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_model_load: out is NULL");
    *out = NULL;
    if (!dir) return road__error(ROAD_ERR_INVALID_ARG, "road_model_load: no folder given");
    /* the model's own thread count, for the load's work (quantizing) as for its later calls */
    ROAD_THREAD_SCOPE(p ? p->n_threads : 0);
    road_model *m = road__calloc(1, sizeof *m);
    if (!m) return ROAD_ERR_NO_MEMORY;
    m->n_threads = p ? p->n_threads : 0;
    m->qkernel = ROAD_QKERNEL_AUTO;
    if (p && p->int8_activations) {
        if (!road__cpu_has_avx512_vnni()) {
            road__free(m);
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "int8 activations (--int8-activations) need a CPU with "
                               "AVX512-VNNI, and this one has none; leave the option off");
        }
        m->qkernel = ROAD_QKERNEL_VNNI_Q8;
    }
    road_status st = road_llm_config_load(dir, &m->cfg);
    if (st == ROAD_OK && !(m->dir = road__strdup(dir))) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK) st = road_generation_config_load(dir, &m->cfg, &m->gen);
    if (st == ROAD_OK) st = road__weights_open(dir, &m->weights);
    if (st == ROAD_OK) st = check_config_against_files(&m->cfg, m->weights);
    const road_llm_config *c = &m->cfg;
    const int64_t L = c->n_layers, H = c->hidden_size, V = c->vocab_size;
    /* 7 projections per block + lm_head (+ embed_tokens) */
    const int32_t n_desc = (int32_t)(L * N_PROJ + 2);
    road_layer_desc *desc = NULL;
    char(*names)[NAME_MAX_LEN] = NULL;
    if (st == ROAD_OK) {
        m->blocks = road__calloc((size_t)L, sizeof(road_block));
        desc = road__calloc((size_t)n_desc, sizeof(road_layer_desc));
        names = road__calloc((size_t)n_desc, sizeof(*names));
        m->qt = road__calloc((size_t)n_desc, sizeof(road_qtensor *));
        if (!m->blocks || !desc || !names || !m->qt) st = ROAD_ERR_NO_MEMORY;
    }
    if (st == ROAD_OK) st = load_embedding(m, p);
    if (st == ROAD_OK) st = get(m, "model.norm.weight", H, 0, &m->final_norm);
    /* the projections and norms of the family (layout.c): phi3's fused qkv_proj and
     * gate_up_proj in the places of q_proj and gate_proj */
    for (int n = 0; n < N_NORM; n++) m->norm_names[n] = road__layout_norm(c, n, NULL);
    const bool per_head = c->qk_norm == ROAD_QK_NORM_HEAD;
    int32_t nd = 0;
    int64_t params = V * H + H;
    /* A tied lm_head first, while nothing else is loaded: quantizing it reads the whole table
     * (and a 16-bit one through a float32 copy), so the load's peak memory is that or the
     * finished model, not both */
    road_layer_desc head = {.out_features = V, .in_features = H};
    if (st == ROAD_OK && c->tie_word_embeddings) st = load_tied_head(m, p, &head);
    for (int64_t l = 0; l < L && st == ROAD_OK; l++) {
        road_block *b = &m->blocks[l];
        b->fused = c->fused_proj;
        b->qk_norm_per_head = per_head;
        char key[NAME_MAX_LEN + 16];
        for (int n = 0; n < N_NORM && st == ROAD_OK; n++) {
            if (!m->norm_names[n]) continue;
            snprintf(key, sizeof key, "model.layers.%lld.%s.weight", (long long)l,
                     m->norm_names[n]);
            st = get(m, key, road__model_norm_len(m, n), 0, &b->norm[n]);
            params += road__model_norm_len(m, n);
        }
        for (int p2 = 0; p2 < N_PROJ && st == ROAD_OK; p2++) {
            int64_t out_f, in_f;
            bool bias;
            const char *pn = road__layout_proj(c, p2, &out_f, &in_f, &bias);
            b->proj[p2] = -1;
            if (!pn) continue;
            road_layer_desc *d = &desc[nd];
            snprintf(names[nd], NAME_MAX_LEN, "model.layers.%lld.%s", (long long)l, pn);
            d->name = names[nd];
            d->kind = ROAD_LAYER_LINEAR;
            d->in_features = in_f;
            d->out_features = out_f;
            st = load_linear(m, p, names[nd], out_f, in_f, false, NULL, d);
            if (st == ROAD_OK && bias) {
                snprintf(key, sizeof key, "%s.bias", names[nd]);
                st = get(m, key, out_f, 0, &d->bias);
            }
            params += out_f * in_f + (bias ? out_f : 0);
            b->proj[p2] = nd++;
        }
    }
    if (st == ROAD_OK) {
        road_layer_desc *d = &desc[nd];
        snprintf(names[nd], NAME_MAX_LEN, "lm_head");
        d->name = names[nd];
        d->kind = ROAD_LAYER_LINEAR;
        d->in_features = H;
        d->out_features = V;
        d->is_output_head = true;
        /* transformers ties lm_head to the embedding (quantized, lm_head gets its own copy) */
        if (c->tie_word_embeddings)
            d->weight = head.weight, d->qweight = head.qweight;
        else
            st = load_linear(m, p, "lm_head", V, H, true, NULL, d);
        if (!c->tie_word_embeddings) params += V * H;
        m->lm_head = nd++;
    }
    if (st == ROAD_OK) {
        road_layer_desc *d = &desc[nd];
        snprintf(names[nd], NAME_MAX_LEN, "model.embed_tokens");
        d->name = names[nd];
        d->kind = ROAD_LAYER_EMBEDDING;
        d->in_features = H;
        d->out_features = V;
        d->weight = m->embed;
        d->qweight = m->embed_q;
        m->embed_layer = nd++;
        road_adapter_set_params sp = road_adapter_set_default_params();
        sp.model_type = c->model_type;
        sp.layers = desc;
        sp.n_layers = nd;
        sp.base_param_count = params;
        st = road_adapter_set_create(&sp, &m->set);
    }
    road__free(desc);
    road__free(names);
    /* head_dim is backed by the q_proj shapes checked above */
    if (st == ROAD_OK) st = road__rope_init(&m->rope, c, c->rope_theta, true);
    if (st == ROAD_OK && c->rope_local_theta > 0)
        st = road__rope_init(&m->rope_local, c, c->rope_local_theta, false);
    if (st != ROAD_OK) {
        road__error_prefix("loading the model in '%s'", dir);
        road_model_free(m);
        return st;
    }
    describe_layers(m);
    m->weight_bytes =
        road__weights_mapped_bytes(m->weights) + road__weights_owned_bytes(m->weights);
    for (int32_t i = 0; i < m->n_qt; i++) m->weight_bytes += road_qtensor_bytes(m->qt[i]);
    if (m->embed_q) m->weight_bytes += road_qtensor_bytes(m->embed_q);
    *out = m;
    return ROAD_OK;
}
