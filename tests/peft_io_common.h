/*
 * tests/peft_io_common.h - helpers shared by test_peft_io.c and test_peft_io_errors.c (PEFT
 * adapter folders: road_adapter_set_load and road_adapter_set_save): files and folders, the
 * per-test fixture (a fresh mkdtemp folder that teardown removes, and a leak check), the test
 * models (the golden e2e MLPs and tiny-llama as named layers), comparisons of adapter folders,
 * configs and parameters, and the tiny-llama adapters A, B, C. Header-only (static inline)
 * because each test is its own executable.
 */
#ifndef ROAD_TEST_PEFT_IO_COMMON_H
#define ROAD_TEST_PEFT_IO_COMMON_H

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "road/adapter_set.h" /* not yet in road/road.h */

#include "core/alloc.h"
#include "io/file.h"

/* Biggest file compared byte for byte (the fixtures are at most 23 KB). */
#define MAX_COMPARE_BYTES (1u << 24)
/* Layers of the test models (tiny-llama: 2 x 7 projections + lm_head + embed_tokens). */
#define MODEL_MAX_LAYERS 32
#define LAYER_NAME_MAX 96

#define PEFT_PREFIX "base_model.model."
#define LLAMA_DIR "llama/tiny-llama"

/* ---- files and folders ------------------------------------------------------------------- */

static inline bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* path = a "/" b into buf[1024]. */
static inline const char *join(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, 1024, "%s/%s", a, b);
    if (n < 0 || n >= 1024) fail_msg("path too long: %s/%s", a, b);
    return buf;
}

static inline void assert_same_bytes(const char *got_path, const char *want_path) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    TU_OK(road__file_read(got_path, MAX_COMPARE_BYTES, &a, &na));
    TU_OK(road__file_read(want_path, MAX_COMPARE_BYTES, &b, &nb));
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    if (na != nb || i != na) {
        print_error("%s differs from %s: %zu vs %zu bytes, first difference at byte %zu\n",
                    got_path, want_path, na, nb, i);
        road__free(a);
        road__free(b);
        fail();
    }
    road__free(a);
    road__free(b);
}

static inline void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (!fp) fail_msg("cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
}

/* Per test: road's live bytes at the start (must be back at the end) and a fresh folder
 * that teardown removes, so a failing test leaves nothing behind either. */
typedef struct fixture {
    int64_t start;
    char root[256];
} fixture;

/* ---- test models -------------------------------------------------------------------------- */

/* A model registered with an adapter set; weights are test-owned copies (merge writes them). */
typedef struct test_model {
    road_adapter_set *set;
    int32_t n;
    road_layer_desc desc[MODEL_MAX_LAYERS];
    char names[MODEL_MAX_LAYERS][LAYER_NAME_MAX];
    float *w[MODEL_MAX_LAYERS], *b[MODEL_MAX_LAYERS];
} test_model;

static inline float *copy_floats(const float *src, int64_t n) {
    float *p = tu_alloc((size_t)n * sizeof(float));
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

static inline void model_add(test_model *m, const char *name, road_layer_kind kind, int64_t out,
                             int64_t in, const float *w, const float *b, bool head) {
    assert_true(m->n < MODEL_MAX_LAYERS);
    int32_t i = m->n++;
    snprintf(m->names[i], LAYER_NAME_MAX, "%s", name);
    m->w[i] = copy_floats(w, out * in);
    m->b[i] = b ? copy_floats(b, out) : NULL;
    m->desc[i] = (road_layer_desc){.name = m->names[i],
                                   .kind = kind,
                                   .in_features = in,
                                   .out_features = out,
                                   .weight = m->w[i],
                                   .bias = m->b[i],
                                   .is_output_head = head};
}

static inline void model_create(test_model *m, const char *model_type) {
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = model_type;
    p.layers = m->desc;
    p.n_layers = m->n;
    TU_OK(road_adapter_set_create(&p, &m->set));
}

static inline void model_free(test_model *m) {
    road_adapter_set_free(m->set);
    for (int32_t i = 0; i < m->n; i++) {
        free(m->w[i]);
        free(m->b[i]);
    }
    free(m);
}

/* The e2e MLP of golden case `id`: lin0, lin1 from "<id>/base.<layer>.weight|bias". */
static inline test_model *mlp_model(const road_st_file *g, const char *id) {
    test_model *m = tu_alloc(sizeof *m);
    static const char *const layers[2] = {"lin0", "lin1"};
    char key[128];
    for (int i = 0; i < 2; i++) {
        snprintf(key, sizeof key, "base.%s.weight", layers[i]);
        const road_st_tensor *t = tu_golden_info(g, id, key);
        assert_non_null(t);
        assert_int_equal(t->ndim, 2);
        const float *w = tu_golden_req(g, id, key, NULL);
        snprintf(key, sizeof key, "base.%s.bias", layers[i]);
        const float *b = tu_golden_req(g, id, key, NULL);
        model_add(m, layers[i], ROAD_LAYER_LINEAR, t->shape[0], t->shape[1], w, b, false);
    }
    model_create(m, NULL);
    return m;
}

static inline int64_t json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("config.json: '%s' is missing or not a number", key);
    return (int64_t)v->valuedouble;
}

/* A float tensor of the checkpoint as a layer; F32 in tiny-llama. */
static inline void llama_add(test_model *m, const road_st_file *f, const char *name,
                             road_layer_kind kind, bool head) {
    char key[160];
    snprintf(key, sizeof key, "%s.weight", name);
    const float *w = NULL;
    const road_st_tensor *t = NULL;
    TU_OK(road_st_get_f32(f, key, -1, NULL, &w, &t));
    assert_int_equal(t->ndim, 2);
    /* Embedding: [vocab, hidden] = out_features x in_features, as adapters.h defines. */
    model_add(m, name, kind, t->shape[0], t->shape[1], w, NULL, head);
}

/* tiny-llama as named layers: embed_tokens (an embedding), per decoder layer q/k/v/o and
 * gate/up/down, and lm_head (the output head). */
static inline test_model *llama_model(void) {
    cJSON *cfg = tu_load_json(LLAMA_DIR "/config.json");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    assert_true(cJSON_IsString(mt));
    assert_string_equal(mt->valuestring, "llama");
    const int64_t n_layers = json_int(cfg, "num_hidden_layers");
    assert_int_equal(n_layers, 2);
    cJSON_Delete(cfg);

    road_st_file *f = tu_open_golden(LLAMA_DIR "/model.safetensors");
    test_model *m = tu_alloc(sizeof *m);
    static const char *const attn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    static const char *const mlp[3] = {"gate_proj", "up_proj", "down_proj"};
    char name[LAYER_NAME_MAX];
    llama_add(m, f, "model.embed_tokens", ROAD_LAYER_EMBEDDING, false);
    for (int64_t l = 0; l < n_layers; l++) {
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "model.layers.%lld.self_attn.%s", (long long)l, attn[i]);
            llama_add(m, f, name, ROAD_LAYER_LINEAR, false);
        }
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "model.layers.%lld.mlp.%s", (long long)l, mlp[i]);
            llama_add(m, f, name, ROAD_LAYER_LINEAR, false);
        }
    }
    llama_add(m, f, "lm_head", ROAD_LAYER_LINEAR, true);
    road_st_close(f);
    model_create(m, "llama");
    return m;
}

/* ---- comparing adapter folders ------------------------------------------------------------ */

static inline void assert_same_str(const char *what, const char *a, const char *b) {
    if (!a || !b) {
        if (a != b) fail_msg("%s: '%s' vs '%s'", what, a ? a : "(null)", b ? b : "(null)");
        return;
    }
    if (strcmp(a, b) != 0) fail_msg("%s: '%s' vs '%s'", what, a, b);
}

/* Every getter of two configs agrees, and both serialize to the same JSON. */
static inline void assert_same_config(const road_config *a, const road_config *b) {
    assert_int_equal(road_config_variant(a), road_config_variant(b));
    assert_int_equal(road_config_group_size(a), road_config_group_size(b));
    assert_int_equal(road_config_init_weights(a), road_config_init_weights(b));
    assert_int_equal(road_config_target_kind(a), road_config_target_kind(b));
    assert_int_equal(road_config_target_count(a), road_config_target_count(b));
    for (int32_t i = 0; i < road_config_target_count(a); i++)
        assert_same_str("target", road_config_target(a, i), road_config_target(b, i));
    assert_int_equal(road_config_modules_to_save_count(a), road_config_modules_to_save_count(b));
    for (int32_t i = 0; i < road_config_modules_to_save_count(a); i++)
        assert_same_str("modules_to_save", road_config_module_to_save(a, i),
                        road_config_module_to_save(b, i));
    assert_same_str("task_type", road_config_task_type(a), road_config_task_type(b));
    assert_same_str("base_model", road_config_base_model(a), road_config_base_model(b));
    assert_same_str("revision", road_config_revision(a), road_config_revision(b));
    assert_int_equal(road_config_inference_mode(a), road_config_inference_mode(b));
    assert_same_str("peft_version", road_config_peft_version(a), road_config_peft_version(b));
    char *ja = NULL, *jb = NULL;
    TU_OK(road_config_to_json(a, &ja));
    TU_OK(road_config_to_json(b, &jb));
    assert_string_equal(ja, jb);
    road_string_free(ja);
    road_string_free(jb);
}

/* The folder road saved equals PEFT's: config fields, tensors bit for bit, file bytes. */
static inline void assert_same_folder(const char *got, const char *want) {
    char pa[1024], pb[1024];
    road_config *ca = NULL, *cb = NULL;
    TU_OK(road_config_load(got, &ca));
    TU_OK(road_config_load(want, &cb));
    assert_same_config(ca, cb);
    road_config_free(ca);
    road_config_free(cb);
    assert_same_bytes(join(pa, got, "adapter_config.json"), join(pb, want, "adapter_config.json"));

    road_st_file *fa = NULL, *fb = NULL;
    TU_OK(road_st_open(join(pa, got, "adapter_model.safetensors"), &fa));
    TU_OK(road_st_open(join(pb, want, "adapter_model.safetensors"), &fb));
    assert_int_equal(road_st_count(fa), road_st_count(fb));
    for (int64_t i = 0; i < road_st_count(fb); i++) {
        const road_st_tensor *tb = road_st_at(fb, i);
        const road_st_tensor *ta = road_st_find(fa, tb->name);
        if (!ta) fail_msg("%s: road's file lacks '%s'", got, tb->name);
        assert_int_equal(ta->dtype, tb->dtype);
        assert_int_equal(ta->ndim, tb->ndim);
        for (int32_t d = 0; d < tb->ndim; d++) assert_int_equal(ta->shape[d], tb->shape[d]);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, tb->nbytes) != 0)
            fail_msg("%s: tensor '%s' differs from PEFT's", got, tb->name);
    }
    assert_int_equal(road_st_metadata_count(fa), road_st_metadata_count(fb));
    assert_same_str("format", road_st_metadata(fa, "format"), "pt");
    assert_same_str("format", road_st_metadata(fb, "format"), "pt");
    road_st_close(fa);
    road_st_close(fb);
    /* road's writer lays files out as the reference safetensors writer does. */
    assert_same_bytes(join(pa, got, "adapter_model.safetensors"),
                      join(pb, want, "adapter_model.safetensors"));
}

/* Every layer's theta/alpha of `name` equals the F32 tensors of the PEFT file in `dir`, bit
 * for bit, and the adapter is on exactly the layers the file has keys for. */
static inline void assert_params_equal_file(road_adapter_set *s, const char *name,
                                            const char *dir) {
    char path[1024], key[256];
    road_st_file *f = NULL;
    TU_OK(road_st_open(join(path, dir, "adapter_model.safetensors"), &f));
    int64_t used = 0;
    for (int32_t li = 0; li < road_adapter_set_layer_count(s); li++) {
        if (!road_adapter_set_on_layer(s, name, li)) continue;
        float *p[2];
        int64_t n = 0;
        TU_OK(road_linear_adapter_params(road_adapter_set_layer(s, li), name, &p[0], &p[1], &n));
        for (int k = 0; k < 2; k++) {
            snprintf(key, sizeof key, PEFT_PREFIX "%s.road_%s", road_adapter_set_layer_name(s, li),
                     k ? "alpha" : "theta");
            const float *want = NULL;
            TU_OK(road_st_get_f32(f, key, 1, &n, &want, NULL));
            tu_assert_equal_f32(key, p[k], want, n);
            used++;
        }
    }
    assert_int_equal(used, road_st_count(f));
    road_st_close(f);
}

/* ---- the tiny-llama adapters --------------------------------------------------------------- */

static const char *const llama_adapters[3] = {"A", "B", "C"};

static inline const char *llama_adapter_dir(const char *name) {
    static char buf[1024];
    char rel[64];
    snprintf(rel, sizeof rel, LLAMA_DIR "/adapters/%s", name);
    snprintf(buf, sizeof buf, "%s", tu_fixture(rel));
    return buf;
}

static inline void load_llama_abc(test_model *m) {
    for (int i = 0; i < 3; i++)
        TU_OK(
            road_adapter_set_load(m->set, llama_adapters[i], llama_adapter_dir(llama_adapters[i])));
}

/* ---- the per-test fixture ----------------------------------------------------------------- */

static inline int setup(void **state) {
    fixture *fx = malloc(sizeof *fx);
    if (!fx) return -1;
    const char *base = getenv("TMPDIR");
    snprintf(fx->root, sizeof fx->root, "%s/road_peft_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fx->root)) {
        free(fx);
        return -1;
    }
    fx->start = road__alloc_live_bytes();
    *state = fx;
    return 0;
}

static inline int teardown(void **state) {
    fixture *fx = *state;
    road__alloc_fail_after(-1);
    tu_rm_rf(fx->root);
    int64_t now = road__alloc_live_bytes();
    int leaked = now != fx->start;
    if (leaked) print_error("leak: %lld bytes still allocated\n", (long long)(now - fx->start));
    free(fx);
    return leaked ? -1 : 0;
}

#endif
