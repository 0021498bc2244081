/*
 * tests/test_peft_io.c - PEFT adapter folders: road_adapter_set_load and road_adapter_set_save.
 *
 * The contract is "reads what PEFT saves, writes what PEFT would save", so the checks are:
 *  1. the golden e2e MLPs: load PEFT's checkpoint and reproduce PEFT's outputs (adapters on,
 *     disabled, merged) and merged weights;
 *  2. saving that adapter gives PEFT's folder back: same config, same tensors bit for bit,
 *     and both files byte-identical;
 *  3. the tiny-llama adapters A, B, C in one set: each lands exactly on the layers its
 *     target_modules select with the file's values; saved folders match the fixtures byte for
 *     byte and reload to the same parameters; "default" goes to the top-level folder;
 *  4. every refusal (missing folder or file, unmatched targets, missing / misshapen /
 *     mistyped / unexpected keys, LoRA, modules_to_save, duplicate names) with its status and
 *     message, and the set unchanged afterwards; F16/BF16/F64 files are read;
 *  5. out-of-memory injection at every allocation of load and save: no crash, no leak, set
 *     unchanged.
 *
 * Folders are written under a fresh mkdtemp folder that each test removes again.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#include "road/adapters.h" /* not yet in road/road.h */

#include "core/alloc.h"
#include "io/file.h"

/* Biggest file compared byte for byte (the fixtures are at most 23 KB). */
#define MAX_COMPARE_BYTES (1u << 24)
/* Layers of the test models (tiny-llama: 2 x 7 projections + lm_head + embed_tokens). */
#define MODEL_MAX_LAYERS 32
#define LAYER_NAME_MAX 96
/* Adapters a snapshot of the set remembers. */
#define SNAP_MAX_ADAPTERS 8
/* Allocation failures tried before the OOM loop gives up (load needs about a hundred). */
#define OOM_MAX_STEPS 100000

#define PEFT_PREFIX "base_model.model."
#define LLAMA_DIR "llama/tiny-llama"

/* ---- files and folders ------------------------------------------------------------------- */

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* path = a "/" b into buf[1024]. */
static const char *join(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, 1024, "%s/%s", a, b);
    if (n < 0 || n >= 1024) fail_msg("path too long: %s/%s", a, b);
    return buf;
}

static void assert_same_bytes(const char *got_path, const char *want_path) {
    char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    TU_OK(road_file_read(got_path, MAX_COMPARE_BYTES, &a, &na));
    TU_OK(road_file_read(want_path, MAX_COMPARE_BYTES, &b, &nb));
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    if (na != nb || i != na) {
        print_error("%s differs from %s: %zu vs %zu bytes, first difference at byte %zu\n",
                    got_path, want_path, na, nb, i);
        road_free(a);
        road_free(b);
        fail();
    }
    road_free(a);
    road_free(b);
}

static void write_text(const char *path, const char *text) {
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

static float *copy_floats(const float *src, int64_t n) {
    float *p = tu_alloc((size_t)n * sizeof(float));
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

static void model_add(test_model *m, const char *name, road_layer_kind kind, int64_t out,
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

static void model_create(test_model *m, const char *model_type) {
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = model_type;
    p.layers = m->desc;
    p.n_layers = m->n;
    TU_OK(road_adapter_set_create(&p, &m->set));
}

static void model_free(test_model *m) {
    road_adapter_set_free(m->set);
    for (int32_t i = 0; i < m->n; i++) {
        free(m->w[i]);
        free(m->b[i]);
    }
    free(m);
}

/* The e2e MLP of golden case `id`: lin0, lin1 from "<id>/base.<layer>.weight|bias". */
static test_model *mlp_model(const road_st_file *g, const char *id) {
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

static int64_t json_int(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("config.json: '%s' is missing or not a number", key);
    return (int64_t)v->valuedouble;
}

/* A float tensor of the checkpoint as a layer; F32 in tiny-llama. */
static void llama_add(test_model *m, const road_st_file *f, const char *name, road_layer_kind kind,
                      bool head) {
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
static test_model *llama_model(void) {
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

/* ---- the set's state ---------------------------------------------------------------------- */

/* What a failed load must leave alone: adapters (names, order), active ones, per-layer lists. */
typedef struct snapshot {
    int32_t n_ad, n_active;
    char names[SNAP_MAX_ADAPTERS][32], active[SNAP_MAX_ADAPTERS][32];
    int32_t per_layer[MODEL_MAX_LAYERS];
    char first_on_layer[MODEL_MAX_LAYERS][32];
} snapshot;

static void snap(road_adapter_set *s, snapshot *out) {
    memset(out, 0, sizeof *out);
    out->n_ad = road_adapter_set_count(s);
    out->n_active = road_adapter_set_active_count(s);
    assert_true(out->n_ad <= SNAP_MAX_ADAPTERS && out->n_active <= SNAP_MAX_ADAPTERS);
    for (int32_t i = 0; i < out->n_ad; i++)
        snprintf(out->names[i], 32, "%s", road_adapter_set_name(s, i));
    for (int32_t i = 0; i < out->n_active; i++)
        snprintf(out->active[i], 32, "%s", road_adapter_set_active_name(s, i));
    const int32_t n = road_adapter_set_layer_count(s);
    assert_true(n <= MODEL_MAX_LAYERS);
    for (int32_t i = 0; i < n; i++) {
        road_linear *l = road_adapter_set_layer(s, i);
        out->per_layer[i] = l ? road_linear_adapter_count(l) : -1;
        if (l && road_linear_adapter_count(l) > 0)
            snprintf(out->first_on_layer[i], 32, "%s", road_linear_adapter_name(l, 0));
    }
}

static void assert_unchanged(road_adapter_set *s, const snapshot *before, const char *what) {
    snapshot now;
    snap(s, &now);
    if (memcmp(&now, before, sizeof now) != 0) {
        print_error("%s: the set changed (adapters %d -> %d, active %d -> %d)\n", what,
                    before->n_ad, now.n_ad, before->n_active, now.n_active);
        for (int32_t i = 0; i < MODEL_MAX_LAYERS; i++)
            if (now.per_layer[i] != before->per_layer[i])
                print_error("  layer %d: %d -> %d adapters\n", i, before->per_layer[i],
                            now.per_layer[i]);
        fail();
    }
}

/* ---- comparing adapter folders ------------------------------------------------------------ */

static void assert_same_str(const char *what, const char *a, const char *b) {
    if (!a || !b) {
        if (a != b) fail_msg("%s: '%s' vs '%s'", what, a ? a : "(null)", b ? b : "(null)");
        return;
    }
    if (strcmp(a, b) != 0) fail_msg("%s: '%s' vs '%s'", what, a, b);
}

/* Every getter of two configs agrees, and both serialize to the same JSON. */
static void assert_same_config(const road_config *a, const road_config *b) {
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
static void assert_same_folder(const char *got, const char *want) {
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
static void assert_params_equal_file(road_adapter_set *s, const char *name, const char *dir) {
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

/* Two sets hold the same parameters for `name` on the same layers. */
static void assert_same_params(road_adapter_set *a, road_adapter_set *b, const char *name) {
    assert_int_equal(road_adapter_set_layer_count(a), road_adapter_set_layer_count(b));
    for (int32_t li = 0; li < road_adapter_set_layer_count(a); li++) {
        assert_int_equal(road_adapter_set_on_layer(a, name, li),
                         road_adapter_set_on_layer(b, name, li));
        if (!road_adapter_set_on_layer(a, name, li)) continue;
        float *pa[2], *pb[2];
        int64_t na = 0, nb = 0;
        TU_OK(road_linear_adapter_params(road_adapter_set_layer(a, li), name, &pa[0], &pa[1], &na));
        TU_OK(road_linear_adapter_params(road_adapter_set_layer(b, li), name, &pb[0], &pb[1], &nb));
        assert_int_equal(na, nb);
        tu_assert_equal_f32("theta", pb[0], pa[0], na);
        tu_assert_equal_f32("alpha", pb[1], pa[1], na);
    }
}

/* ---- 1 + 2. the golden e2e MLPs ------------------------------------------------------------ */

static const struct {
    const char *id, *dir;
} e2e_cases[] = {
    {"e2e_mlp", "golden/e2e_adapters/mlp"},
    {"e2e_mlp_wide", "golden/e2e_adapters/mlp_wide"},
};

/* out[r] = log_softmax(z[r]) over n classes, in double, rounded once. */
static void log_softmax(const float *z, int64_t rows, int64_t n, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * n;
        double mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < n; j++) mx = fmax(mx, zr[j]);
        for (int64_t j = 0; j < n; j++) sum += exp((double)zr[j] - mx);
        for (int64_t j = 0; j < n; j++) out[r * n + j] = (float)((double)zr[j] - mx - log(sum));
    }
}

/* lin0 -> ReLU -> lin1 -> LogSoftmax through the set (Dropout is the identity in eval). */
static void mlp_forward(test_model *m, int64_t rows, const float *x, float *out) {
    const int64_t d0 = m->desc[0].out_features, d1 = m->desc[1].out_features;
    float *h = tu_alloc((size_t)(rows * d0) * sizeof(float));
    float *z = tu_alloc((size_t)(rows * d1) * sizeof(float));
    TU_OK(
        road_adapter_set_forward(m->set, road_adapter_set_find_layer(m->set, "lin0"), rows, x, h));
    for (int64_t i = 0; i < rows * d0; i++) h[i] = h[i] > 0.0f ? h[i] : 0.0f;
    TU_OK(
        road_adapter_set_forward(m->set, road_adapter_set_find_layer(m->set, "lin1"), rows, h, z));
    log_softmax(z, rows, d1, out);
    free(h);
    free(z);
}

static void test_e2e_outputs(void **state) {
    (void)state;
    road_st_file *g = tu_open_golden("golden/e2e.safetensors");
    for (size_t c = 0; c < sizeof e2e_cases / sizeof e2e_cases[0]; c++) {
        const char *id = e2e_cases[c].id;
        test_model *m = mlp_model(g, id);
        TU_OK(road_adapter_set_load(m->set, "default", tu_fixture(e2e_cases[c].dir)));
        assert_int_equal(road_adapter_set_count(m->set), 1);
        assert_int_equal(road_adapter_set_active_count(m->set), 1);
        assert_string_equal(road_adapter_set_active_name(m->set, 0), "default");
        assert_true(road_adapter_set_on_layer(m->set, "default", 0));
        assert_true(road_adapter_set_on_layer(m->set, "default", 1));
        assert_params_equal_file(m->set, "default", tu_fixture(e2e_cases[c].dir));

        const road_st_tensor *xi = tu_golden_info(g, id, "X");
        assert_non_null(xi);
        const int64_t rows = xi->numel / m->desc[0].in_features;
        const int64_t nout = rows * m->desc[1].out_features;
        const float *x = tu_golden_req(g, id, "X", NULL);
        float *out = tu_alloc((size_t)nout * sizeof(float));

        mlp_forward(m, rows, x, out);
        tu_assert_close("out", out, tu_golden_req(g, id, "out", NULL), nout, GOLDEN_ATOL,
                        GOLDEN_RTOL);
        TU_OK(road_adapter_set_enable(m->set, false));
        mlp_forward(m, rows, x, out);
        tu_assert_close("out_base", out, tu_golden_req(g, id, "out_base", NULL), nout, GOLDEN_ATOL,
                        GOLDEN_RTOL);
        TU_OK(road_adapter_set_enable(m->set, true));
        TU_OK(road_adapter_set_merge(m->set, NULL, 0, false));
        assert_true(road_adapter_set_merged(m->set));
        mlp_forward(m, rows, x, out);
        tu_assert_close("out_merged", out, tu_golden_req(g, id, "out_merged", NULL), nout,
                        GOLDEN_ATOL, GOLDEN_RTOL);
        for (int32_t i = 0; i < 2; i++) {
            char key[128];
            const int64_t nw = m->desc[i].out_features * m->desc[i].in_features;
            snprintf(key, sizeof key, "merged.%s.weight", m->names[i]);
            const float *w = road_linear_weight(road_adapter_set_layer(m->set, i));
            assert_ptr_equal(w, m->w[i]); /* borrowed: merge wrote the caller's array */
            tu_assert_close(key, w, tu_golden_req(g, id, key, NULL), nw, GOLDEN_ATOL, GOLDEN_RTOL);
            snprintf(key, sizeof key, "merged.%s.bias", m->names[i]);
            tu_assert_close(key, m->b[i], tu_golden_req(g, id, key, NULL), m->desc[i].out_features,
                            GOLDEN_ATOL, GOLDEN_RTOL);
        }
        free(out);
        model_free(m);
    }
    road_st_close(g);
}

static void test_e2e_save_matches_peft(void **state) {
    (void)state;
    road_st_file *g = tu_open_golden("golden/e2e.safetensors");
    const char *root = ((fixture *)*state)->root;
    char dir[1024], path[1024];
    for (size_t c = 0; c < sizeof e2e_cases / sizeof e2e_cases[0]; c++) {
        const char *peft = tu_fixture(e2e_cases[c].dir);
        char peft_dir[1024];
        snprintf(peft_dir, sizeof peft_dir, "%s", peft);
        test_model *m = mlp_model(g, e2e_cases[c].id);
        TU_OK(road_adapter_set_load(m->set, "default", peft_dir));

        /* "default" is saved at the top of the folder, which save creates. */
        snprintf(dir, sizeof dir, "%s/%s/new/folder", root, e2e_cases[c].id);
        TU_OK(road_adapter_set_save(m->set, dir, NULL, 0));
        assert_false(exists(join(path, dir, "default")));
        assert_same_folder(dir, peft_dir);

        /* Merged: the saved values are still the adapter's own theta/alpha. */
        TU_OK(road_adapter_set_merge(m->set, NULL, 0, false));
        const char *names[1] = {"default"};
        snprintf(dir, sizeof dir, "%s/%s/merged", root, e2e_cases[c].id);
        TU_OK(road_adapter_set_save(m->set, dir, names, 1));
        assert_same_folder(dir, peft_dir);
        model_free(m);
    }
    road_st_close(g);
}

/* ---- 3. the tiny-llama adapters ------------------------------------------------------------ */

static const char *const llama_adapters[3] = {"A", "B", "C"};

static const char *llama_adapter_dir(const char *name) {
    static char buf[1024];
    char rel[64];
    snprintf(rel, sizeof rel, LLAMA_DIR "/adapters/%s", name);
    snprintf(buf, sizeof buf, "%s", tu_fixture(rel));
    return buf;
}

/* PEFT's list rule, written independently: the name equals a target or ends in "." + it. */
static bool list_selects(const road_config *cfg, const char *layer) {
    assert_int_equal(road_config_target_kind(cfg), ROAD_TARGET_LIST);
    size_t n = strlen(layer);
    for (int32_t i = 0; i < road_config_target_count(cfg); i++) {
        const char *t = road_config_target(cfg, i);
        size_t k = strlen(t);
        if (strcmp(layer, t) == 0) return true;
        if (n > k && layer[n - k - 1] == '.' && strcmp(layer + n - k, t) == 0) return true;
    }
    return false;
}

static void load_llama_abc(test_model *m) {
    for (int i = 0; i < 3; i++)
        TU_OK(
            road_adapter_set_load(m->set, llama_adapters[i], llama_adapter_dir(llama_adapters[i])));
}

static void test_llama_load(void **state) {
    (void)state;
    test_model *m = llama_model();
    load_llama_abc(m);
    assert_int_equal(road_adapter_set_count(m->set), 3);
    assert_int_equal(road_adapter_set_active_count(m->set), 1);
    assert_string_equal(road_adapter_set_active_name(m->set, 0), "A");
    for (int a = 0; a < 3; a++) {
        const char *name = llama_adapters[a];
        const road_config *cfg = road_adapter_set_config(m->set, name);
        assert_non_null(cfg);
        int32_t on = 0;
        for (int32_t li = 0; li < m->n; li++) {
            const bool want =
                m->desc[li].kind == ROAD_LAYER_LINEAR && list_selects(cfg, m->names[li]);
            if (road_adapter_set_on_layer(m->set, name, li) != want)
                fail_msg("adapter %s on layer %s: %d, expected %d", name, m->names[li], !want,
                         want);
            on += want;
        }
        assert_true(on > 0);
        assert_params_equal_file(m->set, name, llama_adapter_dir(name));
    }
    /* The output head and the embedding carry no adapter. */
    road_linear *head =
        road_adapter_set_layer(m->set, road_adapter_set_find_layer(m->set, "lm_head"));
    assert_int_equal(road_linear_adapter_count(head), 0);
    assert_null(
        road_adapter_set_layer(m->set, road_adapter_set_find_layer(m->set, "model.embed_tokens")));
    model_free(m);
}

static void test_llama_save_reload(void **state) {
    const char *root = ((fixture *)*state)->root;
    char dir[1024], path[1024];
    test_model *m = llama_model();
    load_llama_abc(m);

    /* All adapters: none is "default", so each goes to its own sub-folder. */
    snprintf(dir, sizeof dir, "%s/all", root);
    TU_OK(road_adapter_set_save(m->set, dir, NULL, 0));
    assert_false(exists(join(path, dir, "adapter_config.json")));
    assert_false(exists(join(path, dir, "adapter_model.safetensors")));
    test_model *r = llama_model();
    for (int a = 0; a < 3; a++) {
        char sub[1024];
        join(sub, dir, llama_adapters[a]);
        assert_same_folder(sub, llama_adapter_dir(llama_adapters[a]));
        TU_OK(road_adapter_set_load(r->set, llama_adapters[a], sub));
    }
    for (int a = 0; a < 3; a++) assert_same_params(m->set, r->set, llama_adapters[a]);
    model_free(r);

    /* A selection: only the named adapter's folder is written. */
    const char *only_b[1] = {"B"};
    snprintf(dir, sizeof dir, "%s/only_b", root);
    TU_OK(road_adapter_set_save(m->set, dir, only_b, 1));
    assert_true(exists(join(path, dir, "B/adapter_model.safetensors")));
    assert_false(exists(join(path, dir, "A")));
    assert_false(exists(join(path, dir, "C")));

    /* Refused selections write nothing. */
    const char *bad[2] = {"A", "nope"};
    snprintf(dir, sizeof dir, "%s/bad", root);
    TU_FAILS(road_adapter_set_save(m->set, dir, bad, 2), ROAD_ERR_NOT_FOUND, "'nope'");
    const char *twice[2] = {"A", "A"};
    TU_FAILS(road_adapter_set_save(m->set, dir, twice, 2), ROAD_ERR_INVALID_ARG, "twice");
    assert_false(exists(dir));
    model_free(m);

    /* "default" is written at the top of the folder (PEFT's layout), next to sub-folders. */
    m = llama_model();
    TU_OK(road_adapter_set_load(m->set, "default", llama_adapter_dir("A")));
    TU_OK(road_adapter_set_load(m->set, "C", llama_adapter_dir("C")));
    snprintf(dir, sizeof dir, "%s/with_default", root);
    TU_OK(road_adapter_set_save(m->set, dir, NULL, 0));
    assert_false(exists(join(path, dir, "default")));
    assert_same_folder(dir, llama_adapter_dir("A"));
    assert_same_folder(join(path, dir, "C"), llama_adapter_dir("C"));
    r = llama_model();
    TU_OK(road_adapter_set_load(r->set, "default", dir));
    assert_same_params(m->set, r->set, "default");
    model_free(r);
    model_free(m);

    /* An adapter made in road (random init, inference_mode false): the saved config says
     * inference_mode true, as PEFT's save_pretrained writes it; everything else round-trips. */
    m = llama_model();
    road_config *cfg = NULL;
    TU_OK(road_config_create(&cfg));
    const char *targets[2] = {"k_proj", "up_proj"};
    TU_OK(road_config_set_target_list(cfg, targets, 2));
    TU_OK(road_config_set_variant(cfg, ROAD_VARIANT_2));
    TU_OK(road_config_set_group_size(cfg, 16));
    road_config_set_init_weights(cfg, false);
    TU_OK(road_adapter_set_add(m->set, "fresh", cfg, 7));
    snprintf(dir, sizeof dir, "%s/fresh_root", root);
    TU_OK(road_adapter_set_save(m->set, dir, NULL, 0));
    road_config *saved = NULL;
    TU_OK(road_config_load(join(path, dir, "fresh"), &saved));
    assert_true(road_config_inference_mode(saved));
    road_config_set_inference_mode(cfg, true);
    assert_same_config(saved, cfg);
    road_config_free(saved);
    road_config_free(cfg);
    r = llama_model();
    TU_OK(road_adapter_set_load(r->set, "fresh", join(path, dir, "fresh")));
    assert_same_params(m->set, r->set, "fresh");
    assert_params_equal_file(m->set, "fresh", path);
    model_free(r);

    /* A file where the folder should be. */
    write_text(join(path, root, "a_file"), "x");
    TU_FAILS(road_adapter_set_save(m->set, path, NULL, 0), ROAD_ERR_IO, "not a folder");
    model_free(m);

    /* Nothing to save. */
    m = llama_model();
    TU_FAILS(road_adapter_set_save(m->set, dir, NULL, 0), ROAD_ERR_STATE, "no adapters");
    model_free(m);
}

/* ---- 4. other dtypes and refusals ------------------------------------------------------- */

/* How the keys of a rewritten fixture are spelled. */
typedef enum key_form {
    KEYS_AS_SAVED = 0,  /* base_model.model.<layer>.road_theta */
    KEYS_IN_MEMORY = 1, /* ... with ".default" appended (PEFT's in-memory names) */
    KEYS_NO_PREFIX = 2  /* without "base_model.model." */
} key_form;

typedef struct rewrite {
    const char *src; /* fixture adapter folder */
    key_form form;
    const char *drop;    /* key left out, or NULL */
    road_dtype dtype;    /* dtype of every tensor written (F32, F16, BF16, F64, I32) */
    const char *reshape; /* key written with shape `shape` (zeros), or NULL */
    int32_t ndim;
    int64_t shape[2];
    const char *extra[8];   /* extra keys, written as F32 [4] zeros (or `extra_shape`) */
    int64_t extra_shape[2]; /* [0] == 0: [4] */
} rewrite;

/* n floats converted to dtype t (road_malloc'd is not needed: plain heap). */
static void *convert(const float *x, int64_t n, road_dtype t) {
    void *out = tu_alloc((size_t)n * 8);
    for (int64_t i = 0; i < n; i++) {
        switch (t) {
        case ROAD_DTYPE_F32:
            ((float *)out)[i] = x[i];
            break;
        case ROAD_DTYPE_F64:
            ((double *)out)[i] = x[i];
            break;
        case ROAD_DTYPE_F16:
            ((uint16_t *)out)[i] = road_f32_to_f16(x[i]);
            break;
        case ROAD_DTYPE_BF16:
            ((uint16_t *)out)[i] = road_f32_to_bf16(x[i]);
            break;
        case ROAD_DTYPE_I32:
            ((int32_t *)out)[i] = (int32_t)x[i];
            break;
        default:
            fail_msg("convert: dtype %s not handled", road_dtype_name(t));
        }
    }
    return out;
}

/* dir/adapter_model.safetensors from the fixture's tensors as `rw` says. */
static void write_weights(const char *dir, const rewrite *rw) {
    char path[1024], key[512];
    road_st_file *src = NULL;
    TU_OK(road_st_open(join(path, rw->src, "adapter_model.safetensors"), &src));
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    TU_OK(road_st_writer_set_metadata(w, "format", "pt"));
    for (int64_t i = 0; i < road_st_count(src); i++) {
        const road_st_tensor *t = road_st_at(src, i);
        if (rw->drop && strcmp(t->name, rw->drop) == 0) continue;
        if (rw->form == KEYS_IN_MEMORY)
            snprintf(key, sizeof key, "%s.default", t->name);
        else if (rw->form == KEYS_NO_PREFIX)
            snprintf(key, sizeof key, "%s", t->name + strlen(PEFT_PREFIX));
        else
            snprintf(key, sizeof key, "%s", t->name);
        if (rw->reshape && strcmp(t->name, rw->reshape) == 0) {
            int64_t n = rw->shape[0] * (rw->ndim == 2 ? rw->shape[1] : 1);
            float *z = tu_alloc((size_t)n * sizeof(float));
            TU_OK(road_st_writer_add(w, key, ROAD_DTYPE_F32, rw->ndim, rw->shape, z));
            free(z);
            continue;
        }
        const float *x = NULL;
        TU_OK(road_st_get_f32(src, t->name, -1, NULL, &x, NULL));
        void *data = convert(x, t->numel, rw->dtype);
        TU_OK(road_st_writer_add(w, key, rw->dtype, 1, t->shape, data));
        free(data);
    }
    for (int i = 0; i < 8 && rw->extra[i]; i++) {
        const int64_t four[1] = {4};
        const int64_t *shape = rw->extra_shape[0] ? rw->extra_shape : four;
        const int32_t nd = rw->extra_shape[0] ? (rw->extra_shape[1] ? 2 : 1) : 1;
        int64_t n = shape[0] * (nd == 2 ? shape[1] : 1);
        float *z = tu_alloc((size_t)n * sizeof(float));
        TU_OK(road_st_writer_add(w, rw->extra[i], ROAD_DTYPE_F32, nd, shape, z));
        free(z);
    }
    TU_OK(road_st_writer_save(w, join(path, dir, "adapter_model.safetensors")));
    road_st_writer_free(w);
    road_st_close(src);
}

/* dir/adapter_config.json: the fixture's config, optionally with other targets and
 * modules_to_save. */
static void write_config(const char *dir, const char *src, const char *target,
                         const char *module_to_save) {
    road_config *c = NULL;
    TU_OK(road_config_load(src, &c));
    if (target) TU_OK(road_config_set_target_list(c, &target, 1));
    if (module_to_save) TU_OK(road_config_set_modules_to_save(c, &module_to_save, 1));
    TU_OK(road_config_save(c, dir));
    road_config_free(c);
}

/* A fresh case folder root/<name>. */
static const char *case_dir(char *buf, const char *root, const char *name) {
    join(buf, root, name);
    TU_OK(road_mkdir_p(buf));
    return buf;
}

static void test_other_dtypes(void **state) {
    const char *root = ((fixture *)*state)->root;
    char dir[1024];
    const road_dtype dtypes[3] = {ROAD_DTYPE_F64, ROAD_DTYPE_F16, ROAD_DTYPE_BF16};
    char a[1024]; /* llama_adapter_dir's buffer is reused by the next call */
    snprintf(a, sizeof a, "%s", llama_adapter_dir("A"));
    char src_path[1024];
    road_st_file *src = NULL;
    TU_OK(road_st_open(join(src_path, a, "adapter_model.safetensors"), &src));
    for (int d = 0; d < 3; d++) {
        test_model *m = llama_model();
        case_dir(dir, root, road_dtype_name(dtypes[d]));
        write_config(dir, a, NULL, NULL);
        rewrite rw = {.src = a, .dtype = dtypes[d]};
        write_weights(dir, &rw);
        TU_OK(road_adapter_set_load(m->set, "A", dir));
        /* Each value is the fixture's float32 rounded to the dtype and back (exact for F64). */
        for (int32_t li = 0; li < m->n; li++) {
            if (!road_adapter_set_on_layer(m->set, "A", li)) continue;
            float *p[2];
            int64_t n = 0;
            TU_OK(road_linear_adapter_params(road_adapter_set_layer(m->set, li), "A", &p[0], &p[1],
                                             &n));
            for (int k = 0; k < 2; k++) {
                char key[256];
                snprintf(key, sizeof key, PEFT_PREFIX "%s.road_%s", m->names[li],
                         k ? "alpha" : "theta");
                const float *x = NULL;
                TU_OK(road_st_get_f32(src, key, 1, &n, &x, NULL));
                float *want = tu_alloc((size_t)n * sizeof(float));
                for (int64_t i = 0; i < n; i++) {
                    if (dtypes[d] == ROAD_DTYPE_F16)
                        want[i] = road_f16_to_f32(road_f32_to_f16(x[i]));
                    else if (dtypes[d] == ROAD_DTYPE_BF16)
                        want[i] = road_bf16_to_f32(road_f32_to_bf16(x[i]));
                    else
                        want[i] = x[i];
                }
                tu_assert_equal_f32(key, p[k], want, n);
                free(want);
            }
        }
        model_free(m);
    }
    road_st_close(src);
}

/* A file whose only tensor is F8_E4M3, written by hand (road's writer has no F8). */
static void write_f8_file(const char *dir, const char *key) {
    char header[512], path[1024];
    int n = snprintf(header, sizeof header,
                     "{\"__metadata__\":{\"format\":\"pt\"},\"%s\":{\"dtype\":\"F8_E4M3\","
                     "\"shape\":[32],\"data_offsets\":[0,32]}}",
                     key);
    while (n % 8) header[n++] = ' ';
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(((uint64_t)n >> (8 * i)) & 0xff);
    unsigned char data[32] = {0};
    FILE *fp = fopen(join(path, dir, "adapter_model.safetensors"), "wb");
    assert_non_null(fp);
    fwrite(len, 1, 8, fp);
    fwrite(header, 1, (size_t)n, fp);
    fwrite(data, 1, sizeof data, fp);
    fclose(fp);
}

#define Q0 "model.layers.0.self_attn.q_proj"
#define V1 "model.layers.1.self_attn.v_proj"
#define KEY(layer, p) PEFT_PREFIX layer ".road_" p

/* Expect load of `dir` as "X" to fail with `want` and `needle`, and the set untouched. */
#define LOAD_FAILS(m, dir, want, needle)                                                           \
    do {                                                                                           \
        snapshot before_;                                                                          \
        snap((m)->set, &before_);                                                                  \
        TU_FAILS(road_adapter_set_load((m)->set, "X", (dir)), (want), (needle));                   \
        assert_unchanged((m)->set, &before_, (dir));                                               \
    } while (0)

static void test_refusals(void **state) {
    const char *root = ((fixture *)*state)->root;
    char dir[1024], path[1024];
    char a[1024]; /* llama_adapter_dir's buffer is reused by the next call */
    snprintf(a, sizeof a, "%s", llama_adapter_dir("A"));
    test_model *m = llama_model();
    /* A set that already holds an adapter: failures must not touch it either. */
    TU_OK(road_adapter_set_load(m->set, "C", llama_adapter_dir("C")));

    /* Folders and files. */
    join(dir, root, "missing");
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "does not exist");
    case_dir(dir, root, "empty");
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "adapter_config.json");
    write_text(join(path, root, "a_file"), "x");
    LOAD_FAILS(m, path, ROAD_ERR_INVALID_ARG, "not a folder");
    case_dir(dir, root, "no_weights");
    write_config(dir, a, NULL, NULL);
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "adapter_model.safetensors' does not exist");
    case_dir(dir, root, "bin");
    write_config(dir, a, NULL, NULL);
    write_text(join(path, dir, "adapter_model.bin"), "PK");
    LOAD_FAILS(m, dir, ROAD_ERR_UNSUPPORTED, "adapter_model.bin");
    assert_true(strstr(road_last_error(), "safe_serialization") != NULL);

    /* Configs. */
    case_dir(dir, root, "lora");
    write_text(join(path, dir, "adapter_config.json"),
               "{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\"]}");
    LOAD_FAILS(m, dir, ROAD_ERR_UNSUPPORTED, "LORA");
    case_dir(dir, root, "no_match");
    write_config(dir, a, "query_key_value", NULL);
    rewrite plain = {.src = a, .dtype = ROAD_DTYPE_F32};
    write_weights(dir, &plain);
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "matched no layer");
    assert_true(strstr(road_last_error(), "adapter 'X'") != NULL);

    /* Keys. */
    case_dir(dir, root, "missing_key");
    write_config(dir, a, NULL, NULL);
    rewrite drop = {.src = a, .dtype = ROAD_DTYPE_F32, .drop = KEY(V1, "theta")};
    write_weights(dir, &drop);
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND,
               "adapter 'X': adapter_model.safetensors has no '" KEY(
                   V1, "theta") "' for layer " V1 ", which the config's target_modules select");

    case_dir(dir, root, "in_memory");
    write_config(dir, a, NULL, NULL);
    rewrite mem = {.src = a, .dtype = ROAD_DTYPE_F32, .form = KEYS_IN_MEMORY};
    write_weights(dir, &mem);
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "in-memory name");
    assert_true(strstr(road_last_error(), KEY(Q0, "theta") ".default") != NULL);

    case_dir(dir, root, "no_prefix");
    write_config(dir, a, NULL, NULL);
    rewrite nop = {.src = a, .dtype = ROAD_DTYPE_F32, .form = KEYS_NO_PREFIX};
    write_weights(dir, &nop);
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "prefix 'base_model.model.'");

    case_dir(dir, root, "shape");
    write_config(dir, a, NULL, NULL);
    rewrite shp = {
        .src = a, .dtype = ROAD_DTYPE_F32, .reshape = KEY(Q0, "alpha"), .ndim = 1, .shape = {31}};
    write_weights(dir, &shp);
    LOAD_FAILS(m, dir, ROAD_ERR_SHAPE, "'" KEY(Q0, "alpha") "' (layer " Q0);
    assert_true(strstr(road_last_error(), "has shape [31]; expected [32]") != NULL);
    case_dir(dir, root, "shape2d");
    write_config(dir, a, NULL, NULL);
    rewrite shp2 = {
        .src = a, .dtype = ROAD_DTYPE_F32, .reshape = KEY(Q0, "theta"), .ndim = 2, .shape = {4, 8}};
    write_weights(dir, &shp2);
    LOAD_FAILS(m, dir, ROAD_ERR_SHAPE, "has shape [4, 8]; expected [32]");

    case_dir(dir, root, "int");
    write_config(dir, a, NULL, NULL);
    rewrite i32 = {.src = a, .dtype = ROAD_DTYPE_I32};
    write_weights(dir, &i32);
    LOAD_FAILS(m, dir, ROAD_ERR_FORMAT, "is I32");
    assert_true(strstr(road_last_error(), "(layer " Q0 ")") != NULL);

    case_dir(dir, root, "f8");
    write_config(dir, a, NULL, NULL);
    write_f8_file(dir, KEY(Q0, "theta"));
    LOAD_FAILS(m, dir, ROAD_ERR_UNSUPPORTED, "F8_E4M3");
    assert_true(strstr(road_last_error(), KEY(Q0, "theta")) != NULL);

    case_dir(dir, root, "extra");
    write_config(dir, a, NULL, NULL);
    rewrite extra = {.src = a,
                     .dtype = ROAD_DTYPE_F32,
                     .extra = {KEY("model.layers.0.self_attn.k_proj", "theta")}};
    write_weights(dir, &extra);
    LOAD_FAILS(m, dir, ROAD_ERR_FORMAT,
               "1 unexpected tensor (neither the road_theta/road_alpha of a layer the config's "
               "target_modules select): '" KEY("model.layers.0.self_attn.k_proj", "theta") "'");
    assert_true(strstr(road_last_error(), "do not select") != NULL);

    case_dir(dir, root, "extra7");
    write_config(dir, a, NULL, NULL);
    rewrite extra7 = {
        .src = a,
        .dtype = ROAD_DTYPE_F32,
        .extra = {KEY(Q0, "theta") ".default", "a", "b", "c", "d", "e", "lora_A.weight"}};
    write_weights(dir, &extra7);
    LOAD_FAILS(m, dir, ROAD_ERR_FORMAT, "7 unexpected tensors");
    assert_true(strstr(road_last_error(), "and 2 more") != NULL);
    assert_true(strstr(road_last_error(), "'lora_A.weight'") == NULL); /* only 5 listed */
    assert_true(strstr(road_last_error(), "in-memory names") != NULL);

    case_dir(dir, root, "other_model");
    write_config(dir, a, NULL, NULL);
    rewrite other = {.src = a,
                     .dtype = ROAD_DTYPE_F32,
                     .extra = {KEY("model.layers.7.self_attn.q_proj", "theta")}};
    write_weights(dir, &other);
    LOAD_FAILS(m, dir, ROAD_ERR_FORMAT, "this model does not have");

    /* modules_to_save: a listed copy must be in the file (strict, like RoAd tensors); present
     * with the layer's shape, it is loaded (tests/test_modules_to_save.c checks the values). */
    case_dir(dir, root, "mts_absent");
    write_config(dir, a, NULL, "lm_head");
    write_weights(dir, &plain);
    LOAD_FAILS(m, dir, ROAD_ERR_NOT_FOUND, "modules_to_save copy of layer lm_head");

    case_dir(dir, root, "mts");
    write_config(dir, a, NULL, "lm_head");
    rewrite mts = {.src = a,
                   .dtype = ROAD_DTYPE_F32,
                   .extra = {PEFT_PREFIX "lm_head.weight"},
                   .extra_shape = {320, 64}};
    write_weights(dir, &mts);
    TU_OK(road_adapter_set_load(m->set, "X", dir));
    assert_int_equal(road_config_modules_to_save_count(road_adapter_set_config(m->set, "X")), 1);
    assert_true(road_adapter_set_has_copy(m->set, "X", road_adapter_set_find_layer(m->set, "lm_head")));
    TU_OK(road_adapter_set_delete(m->set, "X"));
    case_dir(dir, root, "mts_shape");
    write_config(dir, a, NULL, "lm_head");
    rewrite mts_bad = {.src = a,
                       .dtype = ROAD_DTYPE_F32,
                       .extra = {PEFT_PREFIX "lm_head.weight"},
                       .extra_shape = {64, 320}};
    write_weights(dir, &mts_bad);
    LOAD_FAILS(m, dir, ROAD_ERR_SHAPE, "the layer's weight is [320, 64]");
    case_dir(dir, root, "mts_unlisted");
    write_config(dir, a, NULL, NULL);
    write_weights(dir, &mts);
    LOAD_FAILS(m, dir, ROAD_ERR_FORMAT, "'" PEFT_PREFIX "lm_head.weight'");

    /* Names. */
    TU_FAILS(road_adapter_set_load(m->set, "C", llama_adapter_dir("C")), ROAD_ERR_EXISTS, "'C'");
    case_dir(dir, root, "ok");
    write_config(dir, a, NULL, NULL);
    write_weights(dir, &plain);
    snapshot before;
    snap(m->set, &before);
    TU_FAILS(road_adapter_set_load(m->set, "bad.name", dir), ROAD_ERR_INVALID_ARG, "'.'");
    assert_unchanged(m->set, &before, "bad name");
    TU_FAILS(road_adapter_set_load(m->set, NULL, dir), ROAD_ERR_INVALID_ARG, NULL);

    /* After all that, a good folder still loads. */
    TU_OK(road_adapter_set_load(m->set, "X", dir));
    assert_params_equal_file(m->set, "X", a);
    model_free(m);
}

/* ---- 5. out of memory ----------------------------------------------------------------------- */

static void test_oom_load(void **state) {
    (void)state;
    test_model *m = llama_model();
    TU_OK(road_adapter_set_load(m->set, "C", llama_adapter_dir("C")));
    /* Warm up: the layers' adapter arrays grow on first use and keep their capacity, which is
     * not a leak; measure after one load and delete of B. */
    TU_OK(road_adapter_set_load(m->set, "B", llama_adapter_dir("B")));
    TU_OK(road_adapter_set_delete(m->set, "B"));
    snapshot before;
    snap(m->set, &before);
    const int64_t start = road_alloc_live_bytes();
    int64_t k = 0;
    for (;; k++) {
        road_alloc_fail_after(k);
        road_status s = road_adapter_set_load(m->set, "B", llama_adapter_dir("B"));
        road_alloc_fail_after(-1);
        if (s == ROAD_OK) break;
        if (s != ROAD_ERR_NO_MEMORY)
            fail_msg("failing allocation %lld gave %s: %s", (long long)k, road_status_name(s),
                     road_last_error());
        assert_unchanged(m->set, &before, "load under OOM");
        if (road_alloc_live_bytes() != start)
            fail_msg("failing allocation %lld leaks %lld bytes", (long long)k,
                     (long long)(road_alloc_live_bytes() - start));
        if (k > OOM_MAX_STEPS) fail_msg("load never succeeds");
    }
    assert_true(k > 0);
    assert_params_equal_file(m->set, "B", llama_adapter_dir("B"));
    TU_OK(road_adapter_set_delete(m->set, "B"));
    assert_int_equal(road_alloc_live_bytes(), start);
    model_free(m);
}

static void test_oom_save(void **state) {
    const char *root = ((fixture *)*state)->root;
    test_model *m = llama_model();
    load_llama_abc(m);
    const int64_t start = road_alloc_live_bytes();
    int64_t k = 0;
    for (;; k++) {
        road_alloc_fail_after(k);
        road_status s = road_adapter_set_save(m->set, root, NULL, 0);
        road_alloc_fail_after(-1);
        if (road_alloc_live_bytes() != start)
            fail_msg("failing allocation %lld leaks %lld bytes", (long long)k,
                     (long long)(road_alloc_live_bytes() - start));
        if (s == ROAD_OK) break;
        if (s != ROAD_ERR_NO_MEMORY)
            fail_msg("failing allocation %lld gave %s: %s", (long long)k, road_status_name(s),
                     road_last_error());
        if (k > OOM_MAX_STEPS) fail_msg("save never succeeds");
    }
    assert_true(k > 0);
    char sub[1024];
    for (int a = 0; a < 3; a++)
        assert_same_folder(join(sub, root, llama_adapters[a]),
                           llama_adapter_dir(llama_adapters[a]));
    model_free(m);
}

/* ---- main --------------------------------------------------------------------------------- */

static int setup(void **state) {
    fixture *fx = malloc(sizeof *fx);
    if (!fx) return -1;
    const char *base = getenv("TMPDIR");
    snprintf(fx->root, sizeof fx->root, "%s/road_peft_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fx->root)) {
        free(fx);
        return -1;
    }
    fx->start = road_alloc_live_bytes();
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    road_alloc_fail_after(-1);
    tu_rm_rf(fx->root);
    int64_t now = road_alloc_live_bytes();
    int leaked = now != fx->start;
    if (leaked) print_error("leak: %lld bytes still allocated\n", (long long)(now - fx->start));
    free(fx);
    return leaked ? -1 : 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_e2e_outputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_save_matches_peft, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_save_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_dtypes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_save, setup, teardown),
    };
    return cmocka_run_group_tests_name("peft_io", tests, NULL, NULL);
}
