/*
 * llm/save.c - writing checkpoint folders transformers loads: a model as it is now (merged
 * adapters and fine-tuned weights included), and a freshly initialised model for pretraining.
 *
 * Both write config.json, model.safetensors (transformers' tensor names, one file) and copies
 * of the tokenizer files into a temporary folder next to the target, then swap it into place
 * (io/dir.h): a reader never sees half a model, a failed save leaves an existing folder as it
 * was, and only a model folder road wrote is ever replaced (never the folder read from). Weights
 * are converted per tensor, so the extra memory is one tensor's worth plus the writer's copy.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/dir.h"
#include "io/file.h"
#include "io/json.h"
#include "llm/model_internal.h"
#include "llm/save_internal.h"
#include "road/safetensors.h"

#define WEIGHTS_FILE ROAD_SAVE_WEIGHTS_FILE
#define CONFIG_FILE ROAD_SAVE_CONFIG_FILE
/* config.json files are small; a larger one is not a config. */
#define CONFIG_MAX_BYTES (4u << 20)
/* transformers' PretrainedConfig default initializer_range. */
#define DEFAULT_INIT_STD 0.02
#define NAME_CAP 128

/* Files copied from the source folder when present: tokenizer and generation settings. */
static const char *const side_files[] = {"generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "special_tokens_map.json",
                                         "tokenizer.model"};

const char *road__save_torch_name(road_dtype t) {
    return t == ROAD_DTYPE_BF16 ? "bfloat16" : t == ROAD_DTYPE_F16 ? "float16" : "float32";
}

road_status road__save_check_dtype(road_dtype t) {
    if (t != ROAD_DTYPE_F32 && t != ROAD_DTYPE_BF16 && t != ROAD_DTYPE_F16)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "cannot save weights as %s: choose F32, BF16 or F16",
                           road_dtype_name(t));
    return ROAD_OK;
}

road_status road__save_add_floats(road_st_writer *w, const char *name, road_dtype dtype,
                                  int32_t ndim, const int64_t *shape, const float *x, int64_t n) {
    if (dtype == ROAD_DTYPE_F32) return road_st_writer_add(w, name, dtype, ndim, shape, x);
    uint16_t *h = road__malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
    if (!h) return ROAD_ERR_NO_MEMORY;
    for (int64_t i = 0; i < n; i++)
        h[i] = dtype == ROAD_DTYPE_BF16 ? road_f32_to_bf16(x[i]) : road_f32_to_f16(x[i]);
    road_status s = road_st_writer_add(w, name, dtype, ndim, shape, h);
    road__free(h);
    return s;
}

road_status road__save_add_packed16(road_st_writer *w, const char *name, road_dtype dtype,
                                    const road_qtensor *q) {
    const int64_t shape[2] = {q->rows, q->cols};
    const road_dtype stored = q->format == ROAD_QFORMAT_BF16 ? ROAD_DTYPE_BF16 : ROAD_DTYPE_F16;
    ROAD_ASSERT(q->format == ROAD_QFORMAT_BF16 || q->format == ROAD_QFORMAT_F16);
    if (dtype == stored) return road_st_writer_add(w, name, dtype, 2, shape, q->data);
    const int64_t n = q->rows * q->cols;
    float *x = road__malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!x) return ROAD_ERR_NO_MEMORY;
    road_status s = road_qtensor_dequantize_rows(q, 0, q->rows, x);
    if (s == ROAD_OK) s = road__save_add_floats(w, name, dtype, 2, shape, x, n);
    road__free(x);
    return s;
}

road_status road__save_config(const char *src, road_dtype dtype, cJSON *qcfg, bool untie,
                              const char *dir) {
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    road_status s = road__file_read(src, CONFIG_MAX_BYTES, &text, &len);
    if (s == ROAD_OK) s = road_json_parse(text, len, &root);
    road__free(text);
    text = NULL;
    if (s == ROAD_OK && !cJSON_IsObject(root))
        s = road__error(ROAD_ERR_FORMAT, "'%s' is not a JSON object", src);
    if (s == ROAD_OK) {
        const bool v5 = road__json_get(root, "dtype") != NULL;
        cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "dtype");
        cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
        if (!cJSON_AddStringToObject(root, "torch_dtype", road__save_torch_name(dtype)) ||
            (v5 && !cJSON_AddStringToObject(root, "dtype", road__save_torch_name(dtype))))
            s = ROAD_ERR_NO_MEMORY;
        if (s == ROAD_OK && untie) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "tie_word_embeddings");
            if (!cJSON_AddFalseToObject(root, "tie_word_embeddings")) s = ROAD_ERR_NO_MEMORY;
        }
        if (s == ROAD_OK && qcfg) {
            if (cJSON_AddItemToObject(root, "quantization_config", qcfg))
                qcfg = NULL;
            else
                s = ROAD_ERR_NO_MEMORY;
        }
    }
    cJSON_Delete(qcfg);
    if (s == ROAD_OK) s = road__json_dump(root, &text, &len);
    cJSON_Delete(root);
    if (s != ROAD_OK) return s;
    text[len] = '\n'; /* road__json_dump leaves room for the NUL; a text file ends in a newline */
    char *path = road__path_join(dir, CONFIG_FILE);
    s = path ? road__file_write_atomic(path, text, len + 1) : ROAD_ERR_NO_MEMORY;
    road__free(path);
    road__free(text);
    return s;
}

road_status road__save_side_files(const char *from, const char *dir) {
    road_status s = ROAD_OK;
    for (size_t i = 0; i < sizeof side_files / sizeof *side_files && s == ROAD_OK; i++) {
        char *src = road__path_join(from, side_files[i]);
        char *dst = road__path_join(dir, side_files[i]);
        char *data = NULL;
        size_t len = 0;
        if (!src || !dst) s = ROAD_ERR_NO_MEMORY;
        FILE *probe = s == ROAD_OK ? fopen(src, "rb") : NULL;
        if (probe) {
            fclose(probe);
            s = road__file_read(src, (size_t)1 << 30, &data, &len);
            if (s == ROAD_OK) s = road__file_write_atomic(dst, data, len);
        }
        road__free(data);
        road__free(src);
        road__free(dst);
    }
    return s;
}

road_status road__save_folder(const char *dir, const char *input,
                              road_status (*write)(void *, const char *), void *ctx) {
    char *target = road__dir_trim(dir);
    if (!target) return ROAD_ERR_NO_MEMORY;
    /* the rule (road/outdir.h): only a model folder road wrote is replaced, never the input */
    const char *inputs[1] = {input};
    road_status s =
        road__dir_check_target(target, ROAD_OUT_MODEL, true, inputs, input ? 1 : 0, NULL);
    char *parent = s == ROAD_OK ? road__path_parent(target) : NULL, *tmp = NULL;
    if (s == ROAD_OK && !parent) s = ROAD_ERR_NO_MEMORY;
    if (s == ROAD_OK) s = road__dir_make_temp(target, ".tmp.", &tmp);
    if (s == ROAD_OK) s = write(ctx, tmp);
    if (s == ROAD_OK) {
        road__dir_fsync(tmp);
        s = road__dir_install(tmp, target);
    }
    if (s == ROAD_OK) {
        road__dir_fsync(parent);
    } else {
        if (tmp) road__dir_remove_tree(tmp, ROAD_DIR_DEPTH);
        road__error_prefix("writing '%s' (an existing folder there is unchanged)", target);
    }
    road__free(tmp);
    road__free(parent);
    road__free(target);
    return s;
}

/* ---- the model as it is ------------------------------------------------------------------- */

typedef struct save_ctx {
    road_model *m;
    road_dtype dtype;
} save_ctx;

static road_status save_into(void *p, const char *tmp) {
    save_ctx *c = p;
    road_model *m = c->m;
    road_st_writer *w = NULL;
    road_status s = road_st_writer_create(&w);
    if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt");
    const int32_t n = road_model_tensor_count(m);
    road_model_tensor first; /* builds the tensor table; its error names a non-float layer */
    if (s == ROAD_OK) s = road_model_tensor_get(m, 0, &first);
    for (int32_t i = 0; i < n && s == ROAD_OK; i++) {
        road_model_tensor t;
        s = road_model_tensor_get(m, i, &t);
        if (s == ROAD_OK)
            s = road__save_add_floats(w, t.name, c->dtype, t.ndim, t.shape, t.param, t.n);
    }
    char *path = NULL, *cfg = NULL;
    if (s == ROAD_OK) {
        path = road__path_join(tmp, WEIGHTS_FILE);
        s = path ? road_st_writer_save(w, path) : ROAD_ERR_NO_MEMORY;
    }
    if (s == ROAD_OK) {
        cfg = road__path_join(m->dir, CONFIG_FILE);
        const bool untie = m->cfg.tie_word_embeddings && !road__model_head_tied(m);
        s = cfg ? road__save_config(cfg, c->dtype, NULL, untie, tmp) : ROAD_ERR_NO_MEMORY;
    }
    if (s == ROAD_OK) s = road__save_side_files(m->dir, tmp);
    road__free(cfg);
    road__free(path);
    road_st_writer_free(w);
    return s;
}

road_status road_model_save_files(road_model *m, const char *dir, road_dtype dtype) {
    if (!m || !dir || !*dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_model_save_files: NULL argument");
    road_status s = road__save_check_dtype(dtype);
    if (s != ROAD_OK) return s;
    /* The files are written aside, then swapped in with the folder's other entries (io/dir.h
     * road__dir_update): a reader finds the old model files or the new ones, never a mix. */
    char *target = road__dir_trim(dir), *parent = NULL, *tmp = NULL;
    if (!target) return ROAD_ERR_NO_MEMORY;
    if (!(parent = road__path_parent(target))) s = ROAD_ERR_NO_MEMORY;
    if (s == ROAD_OK) s = road__mkdir_p(parent);
    if (s == ROAD_OK) s = road__dir_make_temp(target, ".tmp.", &tmp);
    save_ctx c = {m, dtype};
    if (s == ROAD_OK) s = save_into(&c, tmp);
    if (s == ROAD_OK) {
        road__dir_fsync(tmp);
        s = road__dir_update(tmp, target);
    }
    if (s == ROAD_OK) {
        road__dir_fsync(parent);
    } else {
        if (tmp) road__dir_remove_tree(tmp, ROAD_DIR_DEPTH);
        road__error_prefix("writing the model into '%s' (its files there are unchanged)", target);
    }
    road__free(tmp);
    road__free(parent);
    road__free(target);
    return s;
}

road_status road_model_save(road_model *m, const char *dir, road_dtype dtype) {
    if (!m || !dir || !*dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_model_save: NULL argument");
    road_status s = road__save_check_dtype(dtype);
    if (s != ROAD_OK) return s;
    /* quantized and 16-bit layers have no float array to hand out: the quantized writer
     * widens them */
    if (m->n_qt > 0 || m->embed_q)
        return road_model_save_quantized(m, dir, dtype, ROAD_QFORMAT_NONE, false, false);
    if (road_adapter_set_count(m->set) > 0 && !road_adapter_set_merged(m->set))
        road__log(ROAD_LOG_WARN,
                  "saving the base model: adapters that are not merged are not in it");
    save_ctx c = {m, dtype};
    return road__save_folder(dir, m->dir, save_into, &c);
}

/* ---- a freshly initialised model ------------------------------------------------------------ */

typedef struct init_ctx {
    const char *config_path, *copy_from;
    road_llm_config cfg;
    double std;
    uint64_t seed;
    road_dtype dtype;
} init_ctx;

/* One tensor: N(0, std) (normal) or all `fill`. */
static road_status init_tensor(road_st_writer *w, road_rng *rng, init_ctx *c, const char *name,
                               int64_t d0, int64_t d1, bool normal, float fill) {
    const int64_t shape[2] = {d0, d1};
    const int64_t n = d0 * (d1 > 0 ? d1 : 1);
    float *x = road__malloc(sizeof(float) * (size_t)n);
    if (!x) return ROAD_ERR_NO_MEMORY;
    if (normal)
        road__rng_fill_normal(rng, x, n, 0.0f, (float)c->std);
    else
        for (int64_t i = 0; i < n; i++) x[i] = fill;
    road_status s = road__save_add_floats(w, name, c->dtype, d1 > 0 ? 2 : 1, shape, x, n);
    road__free(x);
    return s;
}

static road_status init_into(void *p, const char *tmp) {
    init_ctx *c = p;
    const road_llm_config *k = &c->cfg;
    road_rng rng;
    road__rng_seed(&rng, c->seed);
    road_st_writer *w = NULL;
    road_status s = road_st_writer_create(&w);
    if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt");
    /* every tensor of the family's checkpoint (llm/layout.c), in its order: matrices
     * N(0, std), biases 0, norms 1 (gemma's, which scale by 1 + w, 0) */
    const float norm_fill = k->norm_plus_one ? 0.0f : 1.0f;
    const int64_t n = road_llm_config_tensor_count(k);
    for (int64_t i = 0; i < n && s == ROAD_OK; i++) {
        road_llm_tensor t;
        s = road_llm_config_tensor(k, i, &t);
        if (s != ROAD_OK) break;
        const bool normal = t.ndim == 2;
        const float fill = t.role == ROAD_TENSOR_BIAS ? 0.0f : norm_fill;
        s = init_tensor(w, &rng, c, t.name, t.shape[0], t.ndim == 2 ? t.shape[1] : 0, normal, fill);
    }
    char *path = NULL;
    if (s == ROAD_OK) {
        path = road__path_join(tmp, WEIGHTS_FILE);
        s = path ? road_st_writer_save(w, path) : ROAD_ERR_NO_MEMORY;
    }
    if (s == ROAD_OK) s = road__save_config(c->config_path, c->dtype, NULL, false, tmp);
    if (s == ROAD_OK && c->copy_from) s = road__save_side_files(c->copy_from, tmp);
    road__free(path);
    road_st_writer_free(w);
    return s;
}

road_status road_model_init_folder(const char *config_path, const char *copy_from, uint64_t seed,
                                   road_dtype dtype, const char *dir) {
    if (!config_path || !dir || !*dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_model_init_folder: NULL argument");
    road_status s = road__save_check_dtype(dtype);
    if (s != ROAD_OK) return s;
    char *joined = road__is_dir(config_path) ? road__path_join(config_path, CONFIG_FILE) : NULL;
    if (joined) config_path = joined;
    init_ctx c;
    memset(&c, 0, sizeof c);
    c.config_path = config_path;
    c.copy_from = copy_from;
    c.std = DEFAULT_INIT_STD;
    c.seed = seed;
    c.dtype = dtype;
    s = road_llm_config_load(config_path, &c.cfg);
    /* initializer_range: the config's, as transformers reads it */
    char *text = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    if (s == ROAD_OK) s = road__file_read(config_path, CONFIG_MAX_BYTES, &text, &len);
    if (s == ROAD_OK) s = road_json_parse(text, len, &root);
    road__free(text);
    if (s != ROAD_OK) {
        road__free(joined);
        return s;
    }
    const cJSON *r = road__json_get(root, "initializer_range");
    if (r && (!cJSON_IsNumber(r) || !(r->valuedouble > 0.0) || !isfinite(r->valuedouble)))
        s = road__error(ROAD_ERR_CONFIG, "%s: initializer_range must be a positive number",
                        config_path);
    else if (r)
        c.std = r->valuedouble;
    cJSON_Delete(root);
    if (s == ROAD_OK) s = road__save_folder(dir, config_path, init_into, &c);
    road__free(joined);
    return s;
}
