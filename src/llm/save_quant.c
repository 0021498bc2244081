/*
 * llm/save_quant.c - writing a model whose linear layers are (or become) quantized, as a
 * checkpoint folder bitsandbytes / transformers read (docs/quant.md): quantized layers under
 * bitsandbytes' serialization names (quant/qcheckpoint.c), every other tensor in a float
 * dtype, config.json with a bitsandbytes quantization_config. With format NONE the same
 * writer dequantizes every quantized layer and writes a float checkpoint (road_model_save,
 * llm/save.c, refuses quantized layers: it hands out the model's live float arrays).
 *
 * The folder is written aside and renamed into place (road__save_folder), like road_model_save.
 * Memory: one layer's float weight at a time besides the writer's copy of the tensors.
 */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "llm/model_internal.h"
#include "llm/save_internal.h"
#include "quant/qcheckpoint.h"
#include "road/safetensors.h"

#define QS_NAME_CAP 160

typedef struct qsave {
    road_model *m;
    road_dtype dtype;
    road_qformat format;
    bool dq, lm_head;
} qsave;

/* One linear layer of the adapter set: weight (quantized or float) and bias. */
static road_status add_linear(qsave *c, road_st_writer *w, int32_t layer, bool head) {
    road_linear *l = road_adapter_set_layer(c->m->set, layer);
    const char *name = road_adapter_set_layer_name(c->m->set, layer);
    const int64_t out = road_linear_out_features(l), in = road_linear_in_features(l);
    const road_qtensor *q = road_linear_qweight(l);
    const bool quantize = c->format != ROAD_QFORMAT_NONE && (!head || c->lm_head);
    const bool dq = c->dq && c->format != ROAD_QFORMAT_INT8;
    char key[QS_NAME_CAP];
    road_status s = ROAD_OK;
    if (quantize && q && q->format == c->format && q->double_quant == dq) {
        s = road__qckpt_write(w, name, q,
                              road__save_torch_name(c->m->cfg.torch_dtype)); /* as it is */
    } else if (!quantize && q && !road_qformat_is_quantized(q->format)) {
        snprintf(key, sizeof key, "%s.weight", name); /* 16-bit as stored: no float copy */
        s = road__save_add_packed16(w, key, c->dtype, q);
    } else {
        float *buf = NULL;
        const float *wf = road_linear_weight(l);
        if (!wf) {
            buf = road__malloc(sizeof(float) * (size_t)(out * in));
            if (!buf) return ROAD_ERR_NO_MEMORY;
            s = road_linear_dequantized_weight(l, buf);
            wf = buf;
        }
        if (s == ROAD_OK && quantize) {
            road_qtensor *nq = NULL;
            s = road_qtensor_quantize(c->format, out, in, wf, dq, &nq);
            if (s == ROAD_OK)
                s = road__qckpt_write(w, name, nq, road__save_torch_name(c->m->cfg.torch_dtype));
            road_qtensor_free(nq);
        } else if (s == ROAD_OK) {
            const int64_t shape[2] = {out, in};
            snprintf(key, sizeof key, "%s.weight", name);
            s = road__save_add_floats(w, key, c->dtype, 2, shape, wf, out * in);
        }
        road__free(buf);
    }
    const float *b = road_linear_bias(l);
    if (s == ROAD_OK && b) {
        snprintf(key, sizeof key, "%s.bias", name);
        s = road__save_add_floats(w, key, c->dtype, 1, &out, b, out);
    }
    if (s != ROAD_OK) road__error_prefix("layer '%s'", name);
    return s;
}

/* bitsandbytes' BitsAndBytesConfig.to_dict() for what was written. */
static cJSON *quant_config(const qsave *c) {
    cJSON *q = cJSON_CreateObject();
    if (!q) return NULL;
    const bool four = c->format != ROAD_QFORMAT_INT8;
    cJSON_AddStringToObject(q, "quant_method", "bitsandbytes");
    cJSON_AddBoolToObject(q, "_load_in_4bit", four);
    cJSON_AddBoolToObject(q, "_load_in_8bit", !four);
    cJSON_AddBoolToObject(q, "load_in_4bit", four);
    cJSON_AddBoolToObject(q, "load_in_8bit", !four);
    cJSON_AddStringToObject(q, "bnb_4bit_compute_dtype", "float32");
    cJSON_AddStringToObject(q, "bnb_4bit_quant_storage", "uint8");
    cJSON_AddStringToObject(q, "bnb_4bit_quant_type",
                            c->format == ROAD_QFORMAT_FP4 ? "fp4" : "nf4");
    cJSON_AddBoolToObject(q, "bnb_4bit_use_double_quant", four && c->dq);
    cJSON_AddBoolToObject(q, "llm_int8_enable_fp32_cpu_offload", false);
    cJSON_AddBoolToObject(q, "llm_int8_has_fp16_weight", false);
    cJSON_AddNumberToObject(q, "llm_int8_threshold", 6.0);
    if (c->lm_head) {
        cJSON_AddNullToObject(q, "llm_int8_skip_modules");
    } else {
        cJSON *skip = cJSON_AddArrayToObject(q, "llm_int8_skip_modules");
        if (skip) cJSON_AddItemToArray(skip, cJSON_CreateString("lm_head"));
    }
    return q;
}

static road_status save_into(void *ctx, const char *tmp) {
    qsave *c = ctx;
    road_model *m = c->m;
    const road_llm_config *k = &m->cfg;
    const int64_t H = k->hidden_size, V = k->vocab_size;
    road_st_writer *w = NULL;
    road_status s = road_st_writer_create(&w);
    if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt");
    const int64_t emb[2] = {V, H};
    /* the embedding as it is held: a 16-bit table kept as stored goes out bit for bit when
     * dtype is its own */
    if (s == ROAD_OK && m->embed_q)
        s = road__save_add_packed16(w, "model.embed_tokens.weight", c->dtype, m->embed_q);
    else if (s == ROAD_OK)
        s = road__save_add_floats(w, "model.embed_tokens.weight", c->dtype, 2, emb, m->embed,
                                  V * H);
    char key[QS_NAME_CAP];
    for (int64_t l = 0; l < k->n_layers && s == ROAD_OK; l++) {
        const road_block *b = &m->blocks[l];
        for (int p = 0; p < N_PROJ && s == ROAD_OK; p++)
            if (b->proj[p] >= 0) s = add_linear(c, w, b->proj[p], false);
        for (int n = 0; n < N_NORM && s == ROAD_OK; n++) {
            if (!b->norm[n]) continue;
            const int64_t len = road__model_norm_len(m, n);
            snprintf(key, sizeof key, "model.layers.%lld.%s.weight", (long long)l,
                     m->norm_names[n]);
            s = road__save_add_floats(w, key, c->dtype, 1, &len, b->norm[n], len);
        }
    }
    if (s == ROAD_OK)
        s = road__save_add_floats(w, "model.norm.weight", c->dtype, 1, &H, m->final_norm, H);
    const bool head_tied = road__model_head_tied(m); /* a merge or quantization may untie it */
    if (s == ROAD_OK && !head_tied) s = add_linear(c, w, m->lm_head, true);
    char *path = NULL;
    if (s == ROAD_OK) {
        path = road__path_join(tmp, ROAD_SAVE_WEIGHTS_FILE);
        s = path ? road_st_writer_save(w, path) : ROAD_ERR_NO_MEMORY;
    }
    char *cfg = s == ROAD_OK ? road__path_join(m->dir, ROAD_SAVE_CONFIG_FILE) : NULL;
    if (s == ROAD_OK && !cfg) s = ROAD_ERR_NO_MEMORY;
    if (s == ROAD_OK) {
        cJSON *q = NULL;
        if (c->format != ROAD_QFORMAT_NONE && !(q = quant_config(c))) s = ROAD_ERR_NO_MEMORY;
        if (s == ROAD_OK)
            s = road__save_config(cfg, c->dtype, q, k->tie_word_embeddings && !head_tied, tmp);
    }
    if (s == ROAD_OK) s = road__save_side_files(m->dir, tmp);
    road__free(cfg);
    road__free(path);
    road_st_writer_free(w);
    return s;
}

road_status road_model_save_quantized(road_model *m, const char *dir, road_dtype float_dtype,
                                      road_qformat format, bool double_quant,
                                      bool quantize_lm_head) {
    if (!m || !dir || !*dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_model_save_quantized: NULL argument");
    road_status s = road__save_check_dtype(float_dtype);
    if (s != ROAD_OK) return s;
    if (format != ROAD_QFORMAT_NONE && format != ROAD_QFORMAT_INT8 && format != ROAD_QFORMAT_NF4 &&
        format != ROAD_QFORMAT_FP4)
        return road__error(ROAD_ERR_INVALID_ARG, "road_model_save_quantized: unknown format %d",
                           (int)format);
    if (road_adapter_set_count(m->set) > 0 && !road_adapter_set_merged(m->set))
        road__log(ROAD_LOG_WARN,
                  "saving the base model: adapters that are not merged are not in it");
    qsave c = {m, float_dtype, format, double_quant, quantize_lm_head};
    return road__save_folder(dir, m->dir, save_into, &c);
}
