/*
 * tests/test_llm_load.c - road_model_load on checkpoints that are wrong in one way, and the
 * edges of the KV cache and of generation.
 *
 * Every broken checkpoint is a copy of the tiny-llama fixture (tests/fixtures/llama) written
 * into a fresh mkdtemp folder with road_st_writer, with one thing changed: a tensor dropped,
 * transposed or stored as I32, the weights stored as F16, split into shards with a bad index,
 * config.json edited. Each refusal is checked for its status and for the words that tell the
 * user what is wrong (the tensor's name, the expected and the found shape, the file).
 * Loading under injected allocation failures must fail cleanly and free everything.
 * Generation: max_new_tokens 0, stop ids, seeded sampling, prompts that do not fit the context.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "llm/model_internal.h"
#include "testutil.h"

/* Two models whose float32 weights hold the same values (F16 widened vs F32 rounded through
 * F16; lm_head tied vs lm_head a copy of the embedding; one file vs two shards) run the same
 * arithmetic, so their logits agree to float32 noise at most; 1e-6 is ~10x below the smallest
 * logit change any real mistake makes (fixture README, "What typical mistakes look like"). */
#define SAME_WEIGHTS_ATOL 1e-6
/* Rounding the weights (N(0, 0.02)) to F16 moves them by <= 2^-11 of themselves; the logits
 * must move (the F16 path really changed values) but stay well below a real bug's 1e-3. */
#define F16_DRIFT_MAX 1e-3
/* Allocations road_model_load makes for tiny-llama are in the hundreds; a loop that never
 * succeeds is a bug. */
#define OOM_MAX_STEPS 5000
/* A cached forward vs the same tokens without a cache: the same math in another GEMM
 * blocking; the golden tests hold both to the reference's 1e-5. */
#define CACHE_ATOL 1e-5
/* A bf16 model kept as stored vs the same model widened to float32: the same products, summed
 * in another order by the 16-bit kernels (loss: a relative bound; adapter gradients: the
 * golden tests' 1e-4 relative plus an absolute floor for entries near zero). */
#define STORED_RTOL 1e-5
#define STORED_GRAD_ATOL 1e-6
#define STORED_GRAD_RTOL 1e-4
/* Merged vs unmerged: rows a, b of W become a 2-term combination rounded once (float32 noise
 * in every weight); 1e-5 is the golden tests' tolerance for the same comparison. */
#define MERGE_ATOL 1e-5
/* Tokens generated in the greedy / sampling checks. */
#define N_GEN 12
/* Temperature high enough that seeded sampling leaves the greedy path within N_GEN tokens. */
#define SAMPLE_TEMPERATURE 1.5f
#define SAMPLE_SEED 1234u

#define PATH_CAP 1024
#define FIXTURE_MODEL "tiny-llama"

/* ---- temporary folders --------------------------------------------------------------------- */

typedef struct fixture {
    char root[512];
    int64_t start; /* road__alloc_live_bytes() when the test began */
} fixture;

/* buf[PATH_CAP] = a "/" b */
static const char *join(char *buf, const char *a, const char *b) {
    int n = snprintf(buf, PATH_CAP, "%s/%s", a, b);
    if (n < 0 || n >= PATH_CAP) fail_msg("path too long: %s/%s", a, b);
    return buf;
}

/* A fresh sub-folder of the test's root: buf[PATH_CAP]. */
static const char *new_dir(const fixture *fx, const char *name, char *buf) {
    join(buf, fx->root, name);
    if (mkdir(buf, 0755) != 0) fail_msg("cannot create %s", buf);
    return buf;
}

static const char *model_fixture(const char *name) {
    static char buf[PATH_CAP];
    snprintf(buf, sizeof buf, "%s/llama/%s", ROAD_FIXTURES, name);
    return buf;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = tu_alloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) fail_msg("cannot read %s", path);
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* dir/config.json = the fixture's, with the first `from` replaced by `to` (from NULL: as is). */
static void write_config(const char *dir, const char *from, const char *to) {
    char src[PATH_CAP], dst[PATH_CAP];
    char *text = read_text(join(src, model_fixture(FIXTURE_MODEL), "config.json"));
    char *out = text;
    if (from) {
        char *at = strstr(text, from);
        if (!at) fail_msg("config.json has no '%s'", from);
        size_t head = (size_t)(at - text), fl = strlen(from), tl = strlen(to);
        out = tu_alloc(strlen(text) - fl + tl + 1);
        memcpy(out, text, head);
        memcpy(out + head, to, tl);
        strcpy(out + head + tl, at + fl);
    }
    write_text(join(dst, dir, "config.json"), out);
    if (out != text) free(out);
    free(text);
}

/* ---- checkpoints written from the fixture's tensors ---------------------------------------- */

typedef enum store_kind {
    STORE_F32,        /* as in the fixture */
    STORE_F16,        /* every tensor as F16 */
    STORE_F32_VIA_F16 /* F32 holding the values F16 would give */
} store_kind;

typedef enum edit_kind {
    EDIT_NONE,
    EDIT_DROP,      /* leave `target` out */
    EDIT_TRANSPOSE, /* `target` (2-D) with its two sizes swapped */
    EDIT_I32,       /* `target` stored as I32 */
    EDIT_COPY_EMBED /* `target` holding model.embed_tokens.weight's values */
} edit_kind;

typedef struct ckpt {
    store_kind store;
    edit_kind edit;
    const char *target;
    int shard; /* -1: every tensor; 0 or 1: only those shard_of() puts there */
} ckpt;

static const ckpt CKPT_AS_IS = {STORE_F32, EDIT_NONE, NULL, -1};

/* Two-shard split: the second block, the final norm and lm_head go to shard 1. */
static int shard_of(const char *name) {
    return strstr(name, ".layers.1.") || strcmp(name, "model.norm.weight") == 0 ||
           strcmp(name, "lm_head.weight") == 0;
}

static const char *const shard_files[2] = {"model-00001-of-00002.safetensors",
                                           "model-00002-of-00002.safetensors"};

static void add_tensor(road_st_writer *w, const char *name, const road_st_tensor *t,
                       store_kind store, edit_kind edit) {
    int64_t shape[ROAD_ST_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    const float *x = t->data;
    assert_int_equal(t->dtype, ROAD_DTYPE_F32);
    if (edit == EDIT_TRANSPOSE) {
        assert_int_equal(t->ndim, 2);
        shape[0] = t->shape[1];
        shape[1] = t->shape[0];
    }
    if (edit == EDIT_I32) {
        int32_t *v = tu_alloc(sizeof(int32_t) * (size_t)t->numel);
        for (int64_t i = 0; i < t->numel; i++) v[i] = (int32_t)lrintf(x[i] * 1000.0f);
        TU_OK(road_st_writer_add(w, name, ROAD_DTYPE_I32, t->ndim, shape, v));
        free(v);
    } else if (store == STORE_F16) {
        uint16_t *v = tu_alloc(sizeof(uint16_t) * (size_t)t->numel);
        for (int64_t i = 0; i < t->numel; i++) v[i] = road_f32_to_f16(x[i]);
        TU_OK(road_st_writer_add(w, name, ROAD_DTYPE_F16, t->ndim, shape, v));
        free(v);
    } else if (store == STORE_F32_VIA_F16) {
        float *v = tu_alloc(sizeof(float) * (size_t)t->numel);
        for (int64_t i = 0; i < t->numel; i++) v[i] = road_f16_to_f32(road_f32_to_f16(x[i]));
        TU_OK(road_st_writer_add(w, name, ROAD_DTYPE_F32, t->ndim, shape, v));
        free(v);
    } else {
        TU_OK(road_st_writer_add(w, name, ROAD_DTYPE_F32, t->ndim, shape, x));
    }
}

/* Write `path` from the fixture's model.safetensors, changed as `c` says. */
static void write_weights(const char *path, const ckpt *c) {
    char src[PATH_CAP];
    road_st_file *f = NULL;
    TU_OK(road_st_open(join(src, model_fixture(FIXTURE_MODEL), "model.safetensors"), &f));
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *t = road_st_at(f, i);
        if (c->shard >= 0 && shard_of(t->name) != c->shard) continue;
        bool hit = c->target && strcmp(t->name, c->target) == 0;
        if (hit && c->edit == EDIT_DROP) continue;
        if (hit && c->edit == EDIT_COPY_EMBED)
            add_tensor(w, t->name, road_st_find(f, "model.embed_tokens.weight"), c->store,
                       EDIT_NONE);
        else
            add_tensor(w, t->name, t, c->store, hit ? c->edit : EDIT_NONE);
    }
    TU_OK(road_st_writer_set_metadata(w, "format", "pt"));
    TU_OK(road_st_writer_save(w, path));
    road_st_writer_free(w);
    road_st_close(f);
}

/* A model folder fx->root/name: config.json (edited: from -> to) and model.safetensors. */
static const char *make_model(const fixture *fx, const char *name, const char *from, const char *to,
                              const ckpt *c, char *dir) {
    char path[PATH_CAP];
    new_dir(fx, name, dir);
    write_config(dir, from, to);
    write_weights(join(path, dir, "model.safetensors"), c);
    return dir;
}

/* model.safetensors.index.json mapping every fixture tensor to its shard_of() file, except
 * that tensors of shard `redirect` are mapped to `to` instead (redirect -1: none). */
static void write_index(const char *dir, int redirect, const char *to) {
    char src[PATH_CAP], path[PATH_CAP];
    road_st_file *f = NULL;
    TU_OK(road_st_open(join(src, model_fixture(FIXTURE_MODEL), "model.safetensors"), &f));
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *map = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "metadata", meta);
    cJSON_AddItemToObject(root, "weight_map", map);
    int64_t total = 0;
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *t = road_st_at(f, i);
        int s = shard_of(t->name);
        cJSON_AddStringToObject(map, t->name, s == redirect ? to : shard_files[s]);
        total += (int64_t)t->nbytes;
    }
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    char *text = cJSON_Print(root);
    write_text(join(path, dir, "model.safetensors.index.json"), text);
    free(text);
    cJSON_Delete(root);
    road_st_close(f);
}

/* ---- running a model on the fixture batch -------------------------------------------------- */

typedef struct batch {
    road_st_file *cases;
    const int64_t *ids, *mask;
    int64_t B, T, V;
} batch;

static void batch_open(batch *b) {
    char rel[PATH_CAP];
    snprintf(rel, sizeof rel, "llama/%s/cases.safetensors", FIXTURE_MODEL);
    b->cases = tu_open_golden(rel);
    const road_st_tensor *t = road_st_find(b->cases, "inputs.input_ids");
    assert_non_null(t);
    b->ids = t->data;
    b->B = t->shape[0];
    b->T = t->shape[1];
    b->mask = road_st_find(b->cases, "inputs.attention_mask")->data;
    b->V = road_st_find(b->cases, "base.logits")->shape[2];
}

/* Logits [B, T, V] of the model in dir on the fixture batch (malloc'd). */
static float *run_batch(const batch *b, const char *dir) {
    road_model *m = NULL;
    TU_OK(road_model_load(dir, NULL, &m));
    assert_int_equal(road_model_config(m)->vocab_size, b->V);
    float *logits = tu_alloc(sizeof(float) * (size_t)(b->B * b->T * b->V));
    TU_OK(road_model_forward_padded(m, b->ids, b->mask, b->B, b->T, NULL, logits));
    road_model_free(m);
    return logits;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* ---- refusals ------------------------------------------------------------------------------- */

static void expect_refused(const char *dir, road_status want, const char *needle) {
    road_model *m = (road_model *)&m; /* must be reset to NULL */
    TU_FAILS(road_model_load(dir, NULL, &m), want, needle);
    assert_null(m);
    if (!strstr(road_last_error(), dir))
        fail_msg("message '%s' does not name the folder '%s'", road_last_error(), dir);
}

static void test_load_refusals(void **state) {
    fixture *fx = *state;
    char dir[PATH_CAP], path[PATH_CAP];

    expect_refused(join(dir, fx->root, "no-such-model"), ROAD_ERR_NOT_FOUND, "does not exist");

    new_dir(fx, "no-config", dir);
    write_weights(join(path, dir, "model.safetensors"), &CKPT_AS_IS);
    expect_refused(dir, ROAD_ERR_NOT_FOUND, "has no config.json");

    make_model(fx, "gemma", "\"model_type\": \"llama\"", "\"model_type\": \"gemma\"", &CKPT_AS_IS,
               dir);
    expect_refused(dir, ROAD_ERR_UNSUPPORTED, "model_type \"gemma\" is not supported");

    new_dir(fx, "no-weights", dir);
    write_config(dir, NULL, NULL);
    expect_refused(dir, ROAD_ERR_NOT_FOUND,
                   "neither model.safetensors nor model.safetensors.index.json");

    /* a missing tensor is named, with the shape road wanted */
    static const struct {
        const char *name, *shape;
    } missing[] = {{"model.layers.1.mlp.down_proj.weight", "[64, 176]"},
                   {"model.embed_tokens.weight", "[320, 64]"},
                   {"model.layers.0.post_attention_layernorm.weight", "[64]"},
                   {"model.norm.weight", "[64]"},
                   {"lm_head.weight", "[320, 64]"}};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        char sub[64], needle[256];
        snprintf(sub, sizeof sub, "missing-%zu", i);
        const ckpt c = {STORE_F32, EDIT_DROP, missing[i].name, -1};
        make_model(fx, sub, NULL, NULL, &c, dir);
        snprintf(needle, sizeof needle, "no tensor '%s' %s", missing[i].name, missing[i].shape);
        expect_refused(dir, ROAD_ERR_NOT_FOUND, needle);
    }

    const ckpt transposed = {STORE_F32, EDIT_TRANSPOSE, "model.layers.0.self_attn.k_proj.weight",
                             -1};
    make_model(fx, "transposed", NULL, NULL, &transposed, dir);
    expect_refused(dir, ROAD_ERR_SHAPE,
                   "tensor 'model.layers.0.self_attn.k_proj.weight' in model.safetensors is "
                   "[64, 32], expected [32, 64]");

    /* config.json and weights disagree: the first tensor whose shape differs is named */
    make_model(fx, "wider", "\"intermediate_size\": 176", "\"intermediate_size\": 192", &CKPT_AS_IS,
               dir);
    expect_refused(dir, ROAD_ERR_SHAPE, "is [176, 64], expected [192, 64]");

    const ckpt i32 = {STORE_F32, EDIT_I32, "model.layers.1.self_attn.o_proj.weight", -1};
    make_model(fx, "i32", NULL, NULL, &i32, dir);
    expect_refused(dir, ROAD_ERR_UNSUPPORTED,
                   "'model.layers.1.self_attn.o_proj.weight' in model.safetensors is I32; road "
                   "reads F32, BF16 and F16");

    /* sizes road allocates from are checked against the files before any allocation: a
     * num_hidden_layers of 1e8 with 2 layers of weights fails at once, naming the field */
    make_model(fx, "layers1e8", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 100000000",
               &CKPT_AS_IS, dir);
    int64_t live = road__alloc_live_bytes();
    expect_refused(dir, ROAD_ERR_SHAPE,
                   "num_hidden_layers = 100000000, but the weight files hold 2 layers");
    assert_int_equal(road__alloc_live_bytes(), live);
    make_model(fx, "layers3", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", &CKPT_AS_IS,
               dir);
    expect_refused(dir, ROAD_ERR_SHAPE, "(model.layers.0 to model.layers.1)");
    make_model(fx, "vocab", "\"vocab_size\": 320", "\"vocab_size\": 2000000000", &CKPT_AS_IS, dir);
    expect_refused(dir, ROAD_ERR_SHAPE,
                   "vocab_size = 2000000000 and hidden_size = 64, but model.embed_tokens.weight "
                   "is [320, 64]");

    /* not a safetensors file at all */
    new_dir(fx, "garbage", dir);
    write_config(dir, NULL, NULL);
    write_text(join(path, dir, "model.safetensors"), "this is not a checkpoint");
    expect_refused(dir, ROAD_ERR_FORMAT, "model.safetensors");
}

/* ---- shards --------------------------------------------------------------------------------- */

static const char *make_sharded(const fixture *fx, const char *name, char *dir) {
    char path[PATH_CAP];
    new_dir(fx, name, dir);
    write_config(dir, NULL, NULL);
    for (int s = 0; s < 2; s++) {
        const ckpt c = {STORE_F32, EDIT_NONE, NULL, s};
        write_weights(join(path, dir, shard_files[s]), &c);
    }
    return dir;
}

static void test_load_shards(void **state) {
    fixture *fx = *state;
    char dir[PATH_CAP], path[PATH_CAP];
    batch b;
    batch_open(&b);

    /* two shards + index: the same model as the single file */
    make_sharded(fx, "sharded", dir);
    write_index(dir, -1, NULL);
    float *one = run_batch(&b, model_fixture(FIXTURE_MODEL));
    float *two = run_batch(&b, dir);
    tu_assert_close("two shards vs one file", two, one, b.B * b.T * b.V, SAME_WEIGHTS_ATOL, 0);
    free(one);
    free(two);

    /* an index naming a file outside the folder */
    make_sharded(fx, "escape", dir);
    write_index(dir, 1, "../x.safetensors");
    expect_refused(dir, ROAD_ERR_FORMAT,
                   "names the file '../x.safetensors'; shard names must be "
                   "plain file names inside the model folder");
    make_sharded(fx, "dotdot", dir);
    write_index(dir, 1, "..");
    expect_refused(dir, ROAD_ERR_FORMAT, "plain file names");

    /* an index naming a shard that is not there */
    make_sharded(fx, "lost-shard", dir);
    assert_int_equal(unlink(join(path, dir, shard_files[1])), 0);
    write_index(dir, -1, NULL);
    expect_refused(dir, ROAD_ERR_IO, shard_files[1]);

    /* an index sending a tensor to a shard that does not hold it */
    make_sharded(fx, "wrong-shard", dir);
    write_index(dir, 1, shard_files[0]);
    expect_refused(dir, ROAD_ERR_NOT_FOUND, "(the index names file model-00001-of-00002");

    /* malformed indexes */
    make_sharded(fx, "bad-index", dir);
    write_text(join(path, dir, "model.safetensors.index.json"), "{\"metadata\": {}}");
    expect_refused(dir, ROAD_ERR_FORMAT, "is not a shard index");
    write_text(path, "{\"weight_map\": {}}");
    expect_refused(dir, ROAD_ERR_FORMAT, "weight_map is empty");
    write_text(path, "{\"weight_map\": {\"lm_head.weight\": 7}}");
    expect_refused(dir, ROAD_ERR_FORMAT, "weight_map[\"lm_head.weight\"] is not a file name");
    write_text(path, "[1, 2");
    expect_refused(dir, ROAD_ERR_FORMAT, "is not a shard index");
    /* an index that exists but cannot be read is that error, not "no index" */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_refused(dir, ROAD_ERR_IO, "model.safetensors.index.json' is a folder");
    road_st_close(b.cases);
}

/* ---- dtypes and tied embeddings ------------------------------------------------------------ */

/* Weights of the linear layers kept in a 16-bit format as stored. */
static int64_t stored_numel(road_model *m) {
    road_adapter_set *set = road_model_adapters(m);
    int64_t n = 0;
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
        road_linear *l = road_adapter_set_layer(set, i);
        const road_qtensor *q = l ? road_linear_qweight(l) : NULL;
        if (q && !road_qformat_is_quantized(q->format)) n += q->rows * q->cols;
    }
    return n;
}

static void test_load_f16(void **state) {
    fixture *fx = *state;
    char d16[PATH_CAP], d32[PATH_CAP];
    batch b;
    batch_open(&b);
    const ckpt as_f16 = {STORE_F16, EDIT_NONE, NULL, -1};
    const ckpt via_f16 = {STORE_F32_VIA_F16, EDIT_NONE, NULL, -1};
    make_model(fx, "f16", "\"torch_dtype\": \"float32\"", "\"torch_dtype\": \"float16\"", &as_f16,
               d16);
    make_model(fx, "f32-via-f16", NULL, NULL, &via_f16, d32);
    road_model *m16 = NULL, *m32 = NULL;
    TU_OK(road_model_load(d16, NULL, &m16));
    TU_OK(road_model_load(d32, NULL, &m32));
    assert_int_equal(road_model_config(m16)->torch_dtype, ROAD_DTYPE_F16);
    /* F16 linear weights and the embedding are kept as stored (2 bytes), the norms widened;
     * F32 ones are mapped */
    assert_true(stored_numel(m16) > 0);
    assert_int_equal(stored_numel(m32), 0);
    const road_llm_config *c16 = road_model_config(m16);
    int64_t e16 = 0, e32 = 0;
    assert_int_equal(road_model_embedding_format(m16, &e16), ROAD_QFORMAT_F16);
    assert_int_equal(road_model_embedding_format(m32, &e32), ROAD_QFORMAT_NONE);
    assert_int_equal(e16, 2 * c16->vocab_size * c16->hidden_size);
    assert_int_equal(e32, 2 * e16);
    assert_int_equal(road_model_weight_bytes(m16),
                     road_model_weight_bytes(m32) - 2 * stored_numel(m16) - e16);
    road_model_free(m16);
    road_model_free(m32);

    const int64_t n = b.B * b.T * b.V;
    float *h = run_batch(&b, d16), *r = run_batch(&b, d32),
          *f = run_batch(&b, model_fixture(FIXTURE_MODEL));
    tu_assert_close("F16 weights vs F32 rounded through F16", h, r, n, SAME_WEIGHTS_ATOL, 0);
    double drift = max_abs_diff(h, f, n);
    if (!(drift > 0 && drift <= F16_DRIFT_MAX))
        fail_msg("F16 model vs the F32 fixture: max |diff| %.3g, expected in (0, %.1g]", drift,
                 F16_DRIFT_MAX);
    free(h);
    free(r);
    free(f);
    road_st_close(b.cases);
}

/* Float32 bytes a Llama-family model of this config holds (lm_head once when tied). */
static int64_t expected_weight_bytes(const road_llm_config *c) {
    const int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    const int64_t qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int64_t block = 2 * H + qd * H + 2 * kvd * H + H * qd + 3 * H * I;
    if (c->qkv_bias) block += qd + 2 * kvd;
    int64_t n = V * H + H + c->n_layers * block + (c->tie_word_embeddings ? 0 : V * H);
    return n * (int64_t)sizeof(float);
}

/* Elements in a fixture's model.safetensors. */
static int64_t file_numel(const char *model) {
    char path[PATH_CAP];
    road_st_file *f = NULL;
    TU_OK(road_st_open(join(path, model_fixture(model), "model.safetensors"), &f));
    int64_t n = 0;
    for (int64_t i = 0; i < road_st_count(f); i++) n += road_st_at(f, i)->numel;
    road_st_close(f);
    return n;
}

static void test_bf16_and_tied(void **state) {
    fixture *fx = *state;
    /* tiny-qwen2: BF16, q/k/v biases, tied embeddings */
    road_model *m = NULL;
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), NULL, &m));
    const road_llm_config *c = road_model_config(m);
    assert_int_equal(c->torch_dtype, ROAD_DTYPE_BF16);
    assert_true(c->tie_word_embeddings);
    /* the linear layers kept in bf16 (2 bytes a weight), the embedding and norms widened */
    const int64_t kept = stored_numel(m);
    assert_true(kept > 0);
    assert_int_equal(road_model_weight_bytes(m), expected_weight_bytes(c) - 2 * kept);
    assert_int_equal(road_model_weight_bytes(m),
                     file_numel("tiny-qwen2") * (int64_t)sizeof(float) - 2 * kept);
    road_adapter_set *set = road_model_adapters(m);
    int32_t head = road_adapter_set_find_layer(set, "lm_head");
    assert_true(head >= 0);
    road_linear *l = road_adapter_set_layer(set, head);
    assert_non_null(l);
    assert_ptr_equal(road_linear_weight(l), m->embed); /* the embedding is the head */
    road_model_free(m);

    /* f32 tiny-llama: every weight mapped, none widened */
    TU_OK(road_model_load(model_fixture(FIXTURE_MODEL), NULL, &m));
    assert_int_equal(road_model_weight_bytes(m), expected_weight_bytes(road_model_config(m)));
    assert_int_equal(road__weights_owned_bytes(m->weights), 0);
    road_model_free(m);

    /* tie_word_embeddings true without lm_head.weight == false with lm_head a copy of the
     * embedding */
    char tied[PATH_CAP], copied[PATH_CAP];
    const ckpt no_head = {STORE_F32, EDIT_DROP, "lm_head.weight", -1};
    const ckpt embed_head = {STORE_F32, EDIT_COPY_EMBED, "lm_head.weight", -1};
    make_model(fx, "tied", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true",
               &no_head, tied);
    make_model(fx, "copied", NULL, NULL, &embed_head, copied);
    batch b;
    batch_open(&b);
    float *x = run_batch(&b, tied), *y = run_batch(&b, copied);
    tu_assert_close("tied lm_head vs copied embedding", x, y, b.B * b.T * b.V, SAME_WEIGHTS_ATOL,
                    0);
    free(x);
    free(y);
    road_st_close(b.cases);
}

/* Merging an adapter that rotates lm_head of a tied model gives the head its own weight: the
 * embedding does not change, the merged logits are the unmerged ones, unmerge gives the base
 * back, and the model's tensor table then lists lm_head.weight on its own. */
/* A BF16 checkpoint's linear weights are kept as stored: 2 bytes a weight, the same logits as
 * the model widened to float32 (the same products; only the summation order of the kernels
 * differs), and a merge into such a layer gives exactly the bf16 rounding of the float32
 * model's merged weight (the rotation computed in float32, rounded once, as saving the merged
 * float32 model in bf16 would). */
static void test_bf16_kept_as_stored(void **state) {
    (void)state;
    road_model *ms = NULL, *mf = NULL;
    road_model_params f32 = road_model_default_params();
    f32.float32_weights = true;
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), NULL, &ms));
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), &f32, &mf));
    road_qformat f = ROAD_QFORMAT_NONE;
    const int32_t n16 = road_model_stored_layers(ms, &f);
    assert_true(n16 > 0);
    assert_int_equal(f, ROAD_QFORMAT_BF16);
    assert_int_equal(road_model_stored_layers(mf, NULL), 0);
    assert_int_equal(road_model_quantized_layers(ms, NULL), 0);
    road_adapter_set *ss = road_model_adapters(ms), *sf = road_model_adapters(mf);
    /* the embedding too: 2 bytes an entry, and the tied lm_head runs on that same array */
    const road_llm_config *c = road_model_config(ms);
    const int64_t V = c->vocab_size, H = c->hidden_size;
    int64_t ebytes = 0;
    assert_int_equal(road_model_embedding_format(ms, &ebytes), ROAD_QFORMAT_BF16);
    assert_int_equal(ebytes, 2 * V * H);
    assert_int_equal(road_model_embedding_format(mf, NULL), ROAD_QFORMAT_NONE);
    assert_true(road__model_head_tied(ms));
    const int32_t head = road_adapter_set_find_layer(ss, "lm_head");
    assert_ptr_equal(road_linear_qweight(road_adapter_set_layer(ss, head)), ms->embed_q);
    /* lookups widen each row exactly: bit for bit the widened model's table */
    float *row = tu_alloc(sizeof(float) * (size_t)H);
    for (int64_t v = 0; v < V; v++) {
        TU_OK(road_qtensor_dequantize_rows(ms->embed_q, v, 1, row));
        if (memcmp(row, mf->embed + v * H, sizeof(float) * (size_t)H) != 0)
            tu_assert_equal_f32("embedding row, kept vs widened", row, mf->embed + v * H, H);
    }
    free(row);
    int64_t lin_params = 0;
    for (int32_t i = 0; i < road_adapter_set_layer_count(ss); i++) {
        road_linear *l = road_adapter_set_layer(ss, i);
        const road_qtensor *q = l ? road_linear_qweight(l) : NULL;
        if (q) lin_params += q->rows * q->cols;
    }
    /* 2 bytes instead of 4 for every kept weight (the tied head's is the embedding's) */
    assert_int_equal(road_model_weight_bytes(mf) - road_model_weight_bytes(ms), 2 * lin_params);
    const int64_t T = 12, n = T * V;
    int64_t ids[12], mask[12];
    for (int i = 0; i < T; i++) ids[i] = (i * 37 + 5) % V, mask[i] = 1;
    float *ys = tu_alloc(sizeof(float) * (size_t)n), *yf = tu_alloc(sizeof(float) * (size_t)n);
    const char *act[1] = {"A"};
    char adir[1100];
    snprintf(adir, sizeof adir, "%s/adapters/A", model_fixture("tiny-qwen2"));
    TU_OK(road_adapter_set_load(ss, "A", adir));
    TU_OK(road_adapter_set_load(sf, "A", adir));
    TU_OK(road_adapter_set_set_active(ss, act, 1));
    TU_OK(road_adapter_set_set_active(sf, act, 1));
    TU_OK(road_model_forward_padded(ms, ids, mask, 1, T, NULL, ys));
    TU_OK(road_model_forward_padded(mf, ids, mask, 1, T, NULL, yf));
    tu_assert_close("bf16 kept vs widened, adapter A (prefill)", ys, yf, n, 1e-5, 1e-5);
    /* decode: one row through the streaming kernel */
    TU_OK(road_model_forward_padded(ms, ids, mask, 1, 1, NULL, ys));
    TU_OK(road_model_forward_padded(mf, ids, mask, 1, 1, NULL, yf));
    tu_assert_close("bf16 kept vs widened, adapter A (one row)", ys, yf, V, 1e-5, 1e-5);
    TU_OK(road_adapter_set_merge(ss, NULL, 0, true));
    TU_OK(road_adapter_set_merge(sf, NULL, 0, true));
    int checked = 0;
    for (int32_t i = 0; i < road_adapter_set_layer_count(ss); i++) {
        road_linear *ls = road_adapter_set_layer(ss, i), *lf = road_adapter_set_layer(sf, i);
        if (!ls || !road_linear_qweight(ls) || road_linear_merged_count(ls) == 0) continue;
        const int64_t k = road_linear_out_features(ls) * road_linear_in_features(ls);
        float *w = tu_alloc(sizeof(float) * (size_t)k);
        TU_OK(road_linear_dequantized_weight(ls, w));
        const float *wf = road_linear_weight(lf);
        for (int64_t e = 0; e < k; e++)
            if (w[e] != road_bf16_to_f32(road_f32_to_bf16(wf[e])))
                fail_msg("%s[%lld]: merged %.9g, the bf16 rounding of the float32 merge %.9g",
                         road_adapter_set_layer_name(ss, i), (long long)e, (double)w[e],
                         (double)road_bf16_to_f32(road_f32_to_bf16(wf[e])));
        free(w);
        checked++;
    }
    assert_true(checked > 0);
    free(ys);
    free(yf);
    road_model_free(ms);
    road_model_free(mf);
}

/* Training on a bf16 base kept as stored: one loss and backward with adapter A gives the loss
 * and A's gradients of the widened model (the backward through the tied lm_head, dx = dz W,
 * runs on the 16-bit embedding: summation order only). */
static void test_bf16_training_step(void **state) {
    (void)state;
    road_model *ms = NULL, *mf = NULL;
    road_model_params f32 = road_model_default_params();
    f32.float32_weights = true;
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), NULL, &ms));
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), &f32, &mf));
    const int64_t V = road_model_config(ms)->vocab_size, T = 12;
    int64_t ids[12], mask[12], lab[12];
    for (int i = 0; i < T; i++) ids[i] = (i * 37 + 5) % V, mask[i] = 1, lab[i] = (i * 11 + 3) % V;
    char adir[1100];
    snprintf(adir, sizeof adir, "%s/adapters/A", model_fixture("tiny-qwen2"));
    road_model *ms2[2] = {ms, mf};
    double loss[2];
    const char *act[1] = {"A"};
    for (int k = 0; k < 2; k++) {
        road_adapter_set *set = road_model_adapters(ms2[k]);
        TU_OK(road_adapter_set_load(set, "A", adir));
        TU_OK(road_adapter_set_set_active(set, act, 1));
        road_adapter_set_train(set, true);
        TU_OK(road_model_loss_backward(ms2[k], ids, mask, lab, 1, T, &loss[k]));
    }
    if (!(fabs(loss[0] - loss[1]) <= STORED_RTOL * fabs(loss[1])))
        fail_msg("loss on the bf16 base %.9g, widened %.9g", loss[0], loss[1]);
    road_adapter_set *ss = road_model_adapters(ms), *sf = road_model_adapters(mf);
    int checked = 0;
    for (int32_t i = 0; i < road_adapter_set_layer_count(ss); i++) {
        road_linear *ls = road_adapter_set_layer(ss, i), *lf = road_adapter_set_layer(sf, i);
        if (!ls || !road_linear_has_adapter(ls, "A")) continue;
        float *ths, *als, *thf, *alf;
        int64_t n;
        TU_OK(road_linear_adapter_grads(ls, "A", &ths, &als, &n));
        TU_OK(road_linear_adapter_grads(lf, "A", &thf, &alf, &n));
        tu_assert_close("dtheta, bf16 base vs widened", ths, thf, n, STORED_GRAD_ATOL,
                        STORED_GRAD_RTOL);
        tu_assert_close("dalpha, bf16 base vs widened", als, alf, n, STORED_GRAD_ATOL,
                        STORED_GRAD_RTOL);
        checked++;
    }
    assert_true(checked > 0);
    road_model_free(ms);
    road_model_free(mf);
}

/* A tied lm_head kept in bf16: merging into it gives the head its own 16-bit copy (the
 * embedding's bytes never change, merged or unmerged), the merged head is the bf16 rounding of
 * the float32 model's merged head, and the saved model is untied with the embedding written
 * byte for byte as the checkpoint had it. */
static void test_tied_head_merge_bf16(void **state) {
    road_model *ms = NULL, *mf = NULL;
    road_model_params f32 = road_model_default_params();
    f32.float32_weights = true;
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), NULL, &ms));
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), &f32, &mf));
    const road_llm_config *c = road_model_config(ms);
    const int64_t V = c->vocab_size, H = c->hidden_size;
    uint8_t *e0 = tu_alloc((size_t)(2 * V * H));
    memcpy(e0, ms->embed_q->data, (size_t)(2 * V * H));
    road_model *both[2] = {ms, mf};
    for (int k = 0; k < 2; k++) {
        road_config *cfg = NULL;
        TU_OK(road_config_create(&cfg));
        const char *targets[] = {"lm_head", "v_proj"};
        TU_OK(road_config_set_target_list(cfg, targets, 2));
        TU_OK(road_config_set_group_size(cfg, 8));
        road_config_set_init_weights(cfg, false); /* random: a real rotation */
        TU_OK(road_adapter_set_add(road_model_adapters(both[k]), "head", cfg, 7));
        road_config_free(cfg);
        TU_OK(road_adapter_set_merge(road_model_adapters(both[k]), NULL, 0, true));
    }
    road_adapter_set *ss = road_model_adapters(ms), *sf = road_model_adapters(mf);
    const int32_t head = road_adapter_set_find_layer(ss, "lm_head");
    const road_qtensor *hq = road_linear_qweight(road_adapter_set_layer(ss, head));
    assert_non_null(hq);
    assert_true(hq != ms->embed_q);
    assert_int_equal(hq->format, ROAD_QFORMAT_BF16);
    assert_false(road__model_head_tied(ms));
    assert_memory_equal(ms->embed_q->data, e0, (size_t)(2 * V * H));
    float *w = tu_alloc(sizeof(float) * (size_t)(V * H));
    TU_OK(road_qtensor_dequantize_rows(hq, 0, V, w));
    const float *wf = road_linear_weight(road_adapter_set_layer(sf, head));
    for (int64_t e = 0; e < V * H; e++)
        if (w[e] != road_bf16_to_f32(road_f32_to_bf16(wf[e])))
            fail_msg("lm_head[%lld]: merged %.9g, the bf16 rounding of the float32 merge %.9g",
                     (long long)e, (double)w[e], (double)road_bf16_to_f32(road_f32_to_bf16(wf[e])));
    /* saved: untied, lm_head.weight the head's own bytes, the embedding the input's */
    char dir[PATH_CAP], path[PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/tied-merged-bf16", ((fixture *)*state)->root);
    TU_OK(road_model_save(ms, dir, ROAD_DTYPE_BF16));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    road_st_file *f = NULL;
    TU_OK(road_st_open(path, &f));
    const road_st_tensor *te = road_st_find(f, "model.embed_tokens.weight");
    const road_st_tensor *th = road_st_find(f, "lm_head.weight");
    assert_non_null(te);
    assert_non_null(th);
    assert_int_equal(te->dtype, ROAD_DTYPE_BF16);
    assert_memory_equal(te->data, e0, (size_t)(2 * V * H));
    assert_memory_equal(th->data, hq->data, (size_t)(2 * V * H));
    road_st_close(f);
    road_model *m2 = NULL;
    TU_OK(road_model_load(dir, NULL, &m2));
    assert_false(road_model_config(m2)->tie_word_embeddings);
    road_model_free(m2);
    TU_OK(road_adapter_set_unmerge(ss));
    assert_memory_equal(ms->embed_q->data, e0, (size_t)(2 * V * H));
    free(w);
    free(e0);
    road_model_free(ms);
    road_model_free(mf);
}

/* Saved in its own dtype, an unchanged bf16 model is its input file again: every tensor's
 * dtype, shape and bytes (the embedding and the 16-bit layers written as they are held). */
static void test_bf16_save_round_trip(void **state) {
    road_model *m = NULL;
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), NULL, &m));
    char dir[PATH_CAP], in[PATH_CAP + 32], out[PATH_CAP + 32];
    snprintf(dir, sizeof dir, "%s/bf16-again", ((fixture *)*state)->root);
    TU_OK(road_model_save(m, dir, ROAD_DTYPE_BF16));
    snprintf(in, sizeof in, "%s/model.safetensors", model_fixture("tiny-qwen2"));
    snprintf(out, sizeof out, "%s/model.safetensors", dir);
    road_st_file *a = NULL, *b = NULL;
    TU_OK(road_st_open(in, &a));
    TU_OK(road_st_open(out, &b));
    assert_int_equal(road_st_count(a), road_st_count(b));
    for (int64_t i = 0; i < road_st_count(a); i++) {
        const road_st_tensor *ta = road_st_at(a, i), *tb = road_st_find(b, ta->name);
        if (!tb) fail_msg("'%s' is missing from the saved file", ta->name);
        assert_int_equal(ta->dtype, tb->dtype);
        assert_int_equal(ta->ndim, tb->ndim);
        for (int32_t d = 0; d < ta->ndim; d++) assert_int_equal(ta->shape[d], tb->shape[d]);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, (size_t)ta->nbytes) != 0)
            fail_msg("'%s': saved bytes differ from the input's", ta->name);
    }
    road_st_close(a);
    road_st_close(b);
    road_model_free(m);
}

/* gemma2 (tied embeddings, scaled by sqrt(hidden), capped logits) written in bf16: kept as
 * stored, the lookup widens rows and the scale applies after (as on the float32 table), and
 * the tied head runs on the 16-bit table: the widened model's logits up to summation order. */
static void test_bf16_gemma_embed_scale(void **state) {
    fixture *fx = *state;
    char dir[PATH_CAP], src[PATH_CAP], dst[PATH_CAP];
    new_dir(fx, "gemma2-bf16", dir);
    char *text = read_text(join(src, model_fixture("tiny-gemma2"), "config.json"));
    write_text(join(dst, dir, "config.json"), text);
    free(text);
    road_st_file *f = NULL;
    TU_OK(road_st_open(join(src, model_fixture("tiny-gemma2"), "model.safetensors"), &f));
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *t = road_st_at(f, i);
        assert_int_equal(t->dtype, ROAD_DTYPE_F32);
        uint16_t *v = tu_alloc(sizeof(uint16_t) * (size_t)t->numel);
        for (int64_t k = 0; k < t->numel; k++) v[k] = road_f32_to_bf16(((const float *)t->data)[k]);
        TU_OK(road_st_writer_add(w, t->name, ROAD_DTYPE_BF16, t->ndim, t->shape, v));
        free(v);
    }
    TU_OK(road_st_writer_save(w, join(dst, dir, "model.safetensors")));
    road_st_writer_free(w);
    road_st_close(f);
    road_model *ms = NULL, *mf = NULL;
    road_model_params f32 = road_model_default_params();
    f32.float32_weights = true;
    TU_OK(road_model_load(dir, NULL, &ms));
    TU_OK(road_model_load(dir, &f32, &mf));
    assert_true(road_model_config(ms)->embed_scale);
    assert_int_equal(road_model_embedding_format(ms, NULL), ROAD_QFORMAT_BF16);
    assert_true(road__model_head_tied(ms));
    const int64_t V = road_model_config(ms)->vocab_size, T = 10, n = T * V;
    int64_t ids[10], mask[10];
    for (int i = 0; i < T; i++) ids[i] = (i * 53 + 7) % V, mask[i] = 1;
    float *ys = tu_alloc(sizeof(float) * (size_t)n), *yf = tu_alloc(sizeof(float) * (size_t)n);
    TU_OK(road_model_forward_padded(ms, ids, mask, 1, T, NULL, ys));
    TU_OK(road_model_forward_padded(mf, ids, mask, 1, T, NULL, yf));
    tu_assert_close("gemma2 bf16 kept vs widened (prefill)", ys, yf, n, STORED_RTOL, STORED_RTOL);
    TU_OK(road_model_forward_padded(ms, ids, mask, 1, 1, NULL, ys));
    TU_OK(road_model_forward_padded(mf, ids, mask, 1, 1, NULL, yf));
    tu_assert_close("gemma2 bf16 kept vs widened (one row)", ys, yf, V, STORED_RTOL, STORED_RTOL);
    free(ys);
    free(yf);
    road_model_free(ms);
    road_model_free(mf);
}

static void test_tied_head_merge(void **state) {
    road_model *m = NULL;
    road_model_params f32 = road_model_default_params();
    f32.float32_weights = true; /* the merge compared at float32 precision */
    TU_OK(road_model_load(model_fixture("tiny-qwen2"), &f32, &m));
    const road_llm_config *c = road_model_config(m);
    const int64_t V = c->vocab_size, H = c->hidden_size;
    float *embed0 = tu_alloc(sizeof(float) * (size_t)(V * H));
    memcpy(embed0, m->embed, sizeof(float) * (size_t)(V * H));
    road_config *cfg = NULL;
    TU_OK(road_config_create(&cfg));
    const char *targets[] = {"lm_head", "v_proj"};
    TU_OK(road_config_set_target_list(cfg, targets, 2));
    TU_OK(road_config_set_group_size(cfg, 8));
    road_config_set_init_weights(cfg, false); /* random: a real rotation */
    road_adapter_set *set = road_model_adapters(m);
    TU_OK(road_adapter_set_add(set, "head", cfg, 7));
    road_config_free(cfg);
    const int64_t T = 6, n = T * V;
    const int32_t ids[6] = {1, 5, 9, 33, 2, 100};
    float *base = tu_alloc(sizeof(float) * (size_t)n),
          *adapted = tu_alloc(sizeof(float) * (size_t)n);
    float *merged = tu_alloc(sizeof(float) * (size_t)n);
    int64_t ids64[6], mask[6];
    for (int i = 0; i < 6; i++) ids64[i] = ids[i], mask[i] = 1;
    TU_OK(road_adapter_set_enable(set, false));
    TU_OK(road_model_forward_padded(m, ids64, mask, 1, T, NULL, base));
    TU_OK(road_adapter_set_enable(set, true));
    TU_OK(road_model_forward_padded(m, ids64, mask, 1, T, NULL, adapted));
    assert_true(max_abs_diff(base, adapted, n) > 1e-3); /* the adapter does something */
    const int32_t head = road_adapter_set_find_layer(set, "lm_head");
    TU_OK(road_adapter_set_merge(set, NULL, 0, true));
    assert_true(road_linear_weight(road_adapter_set_layer(set, head)) != m->embed);
    tu_assert_equal_f32("embedding after merge", m->embed, embed0, V * H);
    TU_OK(road_model_forward_padded(m, ids64, mask, 1, T, NULL, merged));
    tu_assert_close("merged vs unmerged logits", merged, adapted, n, MERGE_ATOL, 0);
    bool listed = false;
    for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
        road_model_tensor t;
        TU_OK(road_model_tensor_get(m, i, &t));
        if (strcmp(t.name, "lm_head.weight") == 0) listed = true;
    }
    assert_true(listed);
    /* Saved, the merged model is an untied one whose logits are the merged ones. */
    char dir[PATH_CAP];
    snprintf(dir, sizeof dir, "%s/tied-merged", ((fixture *)*state)->root);
    TU_OK(road_model_save(m, dir, ROAD_DTYPE_F32));
    road_model *m2 = NULL;
    TU_OK(road_model_load(dir, NULL, &m2));
    assert_false(road_model_config(m2)->tie_word_embeddings);
    float *reloaded = tu_alloc(sizeof(float) * (size_t)n);
    TU_OK(road_model_forward_padded(m2, ids64, mask, 1, T, NULL, reloaded));
    tu_assert_close("saved merged model vs merged", reloaded, adapted, n, MERGE_ATOL, 0);
    tu_assert_equal_f32("saved embedding", m2->embed, embed0, V * H);
    free(reloaded);
    road_model_free(m2);
    TU_OK(road_adapter_set_unmerge(set));
    TU_OK(road_adapter_set_enable(set, false));
    TU_OK(road_model_forward_padded(m, ids64, mask, 1, T, NULL, merged));
    tu_assert_close("unmerged base logits", merged, base, n, MERGE_ATOL, 0);
    tu_assert_equal_f32("embedding after unmerge", m->embed, embed0, V * H);
    free(base);
    free(adapted);
    free(merged);
    free(embed0);
    road_model_free(m);
}

/* ---- out of memory ------------------------------------------------------------------------- */

/* Fail the k-th allocation of road_model_load for k = 0, 1, ...: every attempt fails with
 * ROAD_ERR_NO_MEMORY and frees what it took, until one succeeds. */
static void test_load_oom(void **state) {
    (void)state;
    static const char *const models[] = {"tiny-llama", "tiny-qwen2", "tiny-llama3-rope"};
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        char dir[PATH_CAP];
        snprintf(dir, sizeof dir, "%s", model_fixture(models[k]));
        const int64_t before = road__alloc_live_bytes(), before_n = road__alloc_live_count();
        int64_t step = 0;
        for (;; step++) {
            if (step > OOM_MAX_STEPS) fail_msg("%s: road_model_load never succeeds", models[k]);
            road_model *m = NULL;
            road__alloc_fail_after(step);
            road_status s = road_model_load(dir, NULL, &m);
            road__alloc_fail_after(-1);
            if (s == ROAD_OK) {
                road_model_free(m);
                break;
            }
            if (s != ROAD_ERR_NO_MEMORY)
                fail_msg("%s, allocation %lld failing: %s (%s), expected no_memory", models[k],
                         (long long)step, road_status_name(s), road_last_error());
            assert_null(m);
            if (road__alloc_live_bytes() != before || road__alloc_live_count() != before_n)
                fail_msg("%s, allocation %lld failing: %lld bytes in %lld blocks leaked", models[k],
                         (long long)step, (long long)(road__alloc_live_bytes() - before),
                         (long long)(road__alloc_live_count() - before_n));
        }
        assert_true(step > 0);
        assert_int_equal(road__alloc_live_bytes(), before);
    }
}

/* ---- generation ---------------------------------------------------------------------------- */

typedef struct collected {
    int32_t tok[2][N_GEN];
    int64_t n[2];
} collected;

static bool collect(int64_t seq, int32_t token, void *user) {
    collected *c = user;
    if (seq < 0 || seq > 1 || c->n[seq] >= N_GEN)
        fail_msg("token for sequence %lld past the end", (long long)seq);
    c->tok[seq][c->n[seq]++] = token;
    return true;
}

/* Generate for one prompt (or two), returning what the callback got. */
static road_status gen(road_model *m, const int32_t *prompt, int64_t len, int64_t n_seq,
                       const road_generate_params *gp, collected *out) {
    const int32_t *prompts[2] = {prompt, prompt};
    const int64_t lens[2] = {len, len};
    memset(out, 0, sizeof *out);
    return road_model_generate(m, prompts, lens, NULL, n_seq, gp, collect, out);
}

/* The same OOM loop for one generation call on a loaded model (caches, samplers, forwards). */
static void test_generate_oom(void **state) {
    (void)state;
    road_model *m = NULL;
    TU_OK(road_model_load(model_fixture(FIXTURE_MODEL), NULL, &m));
    const int32_t prompt[4] = {5, 9, 77, 3};
    road_generate_params gp = {4, NULL, 0, road_sampler_default_params(), ROAD_DTYPE_F32};
    gp.sampling.temperature = SAMPLE_TEMPERATURE;
    gp.sampling.top_k = 20;
    gp.sampling.top_p = 0.9f;
    collected ref, got;
    TU_OK(gen(m, prompt, 4, 2, &gp, &ref));
    const int64_t before = road__alloc_live_bytes();
    int64_t step = 0;
    for (;; step++) {
        if (step > OOM_MAX_STEPS) fail_msg("road_model_generate never succeeds");
        road__alloc_fail_after(step);
        road_status s = gen(m, prompt, 4, 2, &gp, &got);
        road__alloc_fail_after(-1);
        if (s == ROAD_OK) break;
        if (s != ROAD_ERR_NO_MEMORY)
            fail_msg("allocation %lld failing: %s (%s)", (long long)step, road_status_name(s),
                     road_last_error());
        assert_int_equal(road__alloc_live_bytes(), before);
    }
    assert_true(step > 0);
    /* a failed call leaves nothing behind: the one that succeeds gives the same tokens */
    assert_memory_equal(&got, &ref, sizeof got);
    road_model_free(m);
}

static void test_kv_cache_edges(void **state) {
    (void)state;
    road_model *m = NULL;
    TU_OK(road_model_load(model_fixture(FIXTURE_MODEL), NULL, &m));
    const int64_t ctx = road_model_config(m)->max_position_embeddings;
    assert_int_equal(ctx, 128);
    road_kv_cache *kv = (road_kv_cache *)&kv;
    TU_FAILS(road_kv_cache_create(m, 0, &kv), ROAD_ERR_INVALID_ARG, "1 to 128 tokens");
    assert_null(kv);
    TU_FAILS(road_kv_cache_create(m, -5, &kv), ROAD_ERR_INVALID_ARG, "asked for -5");
    TU_FAILS(road_kv_cache_create(m, ctx + 1, &kv), ROAD_ERR_INVALID_ARG, "asked for 129");
    TU_OK(road_kv_cache_create(m, ctx, &kv));
    assert_int_equal(road_kv_cache_capacity(kv), ctx);
    road_kv_cache_free(kv);

    TU_OK(road_kv_cache_create(m, 8, &kv));
    assert_int_equal(road_kv_cache_length(kv), 0);
    TU_FAILS(road_kv_cache_truncate(kv, 1), ROAD_ERR_INVALID_ARG, "of 0 tokens to 1");
    const int32_t toks[5] = {3, 1, 4, 1, 5};
    const int64_t V = road_model_config(m)->vocab_size;
    float *logits = tu_alloc(sizeof(float) * (size_t)(2 * V));
    road_seq s = {toks, 5, kv, NULL, false};
    TU_OK(road_model_forward(m, &s, 1, logits));
    assert_int_equal(road_kv_cache_length(kv), 5);
    TU_FAILS(road_kv_cache_truncate(kv, 6), ROAD_ERR_INVALID_ARG, "of 5 tokens to 6");
    TU_FAILS(road_kv_cache_truncate(kv, -1), ROAD_ERR_INVALID_ARG, "to -1");
    assert_int_equal(road_kv_cache_length(kv), 5);
    /* rewinding to 2 and feeding 4 more == a cache that saw the 6 tokens in one go */
    TU_OK(road_kv_cache_truncate(kv, 2));
    const int32_t more[4] = {9, 2, 6, 5};
    s = (road_seq){more, 4, kv, NULL, false};
    TU_OK(road_model_forward(m, &s, 1, logits));
    assert_int_equal(road_kv_cache_length(kv), 6);
    const int32_t all[6] = {3, 1, 9, 2, 6, 5};
    road_seq whole = {all, 6, NULL, NULL, false};
    TU_OK(road_model_forward(m, &whole, 1, logits + V));
    tu_assert_close("rewound cache vs fresh", logits, logits + V, V, CACHE_ATOL, 0);
    /* full: 2 more positions, not 3 */
    s = (road_seq){toks, 3, kv, NULL, false};
    TU_FAILS(road_model_forward(m, &s, 1, logits), ROAD_ERR_STATE, "needs 9 positions");
    assert_int_equal(road_kv_cache_length(kv), 6); /* a refused forward leaves the cache */
    TU_OK(road_kv_cache_truncate(kv, 0));
    road_kv_cache_free(kv);
    road_kv_cache_free(NULL);
    free(logits);
    road_model_free(m);
}

static void test_generate_edges(void **state) {
    (void)state;
    road_model *m = NULL;
    TU_OK(road_model_load(model_fixture(FIXTURE_MODEL), NULL, &m));
    const int64_t ctx = road_model_config(m)->max_position_embeddings;
    const int32_t prompt[6] = {102, 16, 34, 42, 248, 64};
    collected greedy, got;
    road_generate_params gp = {N_GEN, NULL, 0, road_sampler_default_params(), ROAD_DTYPE_F32};

    gp.max_new_tokens = 0;
    TU_FAILS(gen(m, prompt, 6, 1, &gp, &got), ROAD_ERR_INVALID_ARG,
             "max_new_tokens must be positive, got 0");
    gp.max_new_tokens = -3;
    TU_FAILS(gen(m, prompt, 6, 1, &gp, &got), ROAD_ERR_INVALID_ARG, "got -3");
    gp.max_new_tokens = N_GEN;
    TU_FAILS(gen(m, prompt, 0, 1, &gp, &got), ROAD_ERR_INVALID_ARG, "prompt 0 is empty");
    gp.n_stop = 1; /* ids missing */
    TU_FAILS(gen(m, prompt, 6, 1, &gp, &got), ROAD_ERR_INVALID_ARG, "stop token list");
    gp.n_stop = 0;
    assert_int_equal(got.n[0], 0);

    /* greedy runs to max_new_tokens */
    TU_OK(gen(m, prompt, 6, 1, &gp, &greedy));
    assert_int_equal(greedy.n[0], N_GEN);

    /* a stop id: emitted, then the sequence ends (at its first occurrence) */
    const int32_t stop = greedy.tok[0][2];
    int64_t first = 0;
    while (greedy.tok[0][first] != stop) first++;
    gp.stop_ids = &stop;
    gp.n_stop = 1;
    TU_OK(gen(m, prompt, 6, 1, &gp, &got));
    assert_int_equal(got.n[0], first + 1);
    assert_memory_equal(got.tok[0], greedy.tok[0], sizeof(int32_t) * (size_t)(first + 1));
    gp.stop_ids = NULL;
    gp.n_stop = 0;

    /* seeded sampling: the same seed, the same tokens; not the greedy ones at T = 1.5; each
     * sequence of a batch samples with seed + index, whatever else shares the batch */
    gp.sampling.temperature = SAMPLE_TEMPERATURE;
    gp.sampling.seed = SAMPLE_SEED;
    collected a, b, pair;
    TU_OK(gen(m, prompt, 6, 1, &gp, &a));
    TU_OK(gen(m, prompt, 6, 1, &gp, &b));
    assert_int_equal(a.n[0], N_GEN);
    assert_memory_equal(a.tok[0], b.tok[0], sizeof a.tok[0]);
    assert_memory_not_equal(a.tok[0], greedy.tok[0], sizeof a.tok[0]);
    TU_OK(gen(m, prompt, 6, 2, &gp, &pair));
    assert_memory_equal(pair.tok[0], a.tok[0], sizeof a.tok[0]);
    assert_memory_not_equal(pair.tok[1], a.tok[0], sizeof a.tok[0]); /* seed + 1 */
    gp.sampling.seed = SAMPLE_SEED + 1;
    TU_OK(gen(m, prompt, 6, 1, &gp, &b));
    assert_memory_equal(b.tok[0], pair.tok[1], sizeof b.tok[0]);
    gp.sampling = road_sampler_default_params();

    /* prompts that do not fit the context */
    int32_t *longp = tu_alloc(sizeof(int32_t) * (size_t)(ctx + 1));
    for (int64_t i = 0; i <= ctx; i++) longp[i] = (int32_t)(i % 300);
    TU_FAILS(gen(m, longp, ctx + 1, 1, &gp, &got), ROAD_ERR_INVALID_ARG,
             "prompt 0 has 129 tokens; the model's context is 128");
    TU_FAILS(gen(m, longp, ctx, 1, &gp, &got), ROAD_ERR_INVALID_ARG, "has 128 tokens");
    assert_int_equal(got.n[0], 0);
    /* a prompt of ctx - 1 tokens: position ctx - 1 takes the first new token, whose logits
     * give the second; then the context is full */
    TU_OK(gen(m, longp, ctx - 1, 1, &gp, &got));
    assert_int_equal(got.n[0], 2);
    free(longp);
    road_model_free(m);
}

/* ---- main ---------------------------------------------------------------------------------- */

static int setup(void **state) {
    fixture *fx = malloc(sizeof *fx);
    if (!fx) return -1;
    const char *base = getenv("TMPDIR");
    snprintf(fx->root, sizeof fx->root, "%s/road_llm_load_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fx->root)) {
        free(fx);
        return -1;
    }
    fx->start = road__alloc_live_bytes();
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    road__alloc_fail_after(-1);
    tu_rm_rf(fx->root);
    int64_t now = road__alloc_live_bytes();
    int leaked = now != fx->start;
    if (leaked) print_error("leak: %lld bytes still allocated\n", (long long)(now - fx->start));
    free(fx);
    return leaked ? -1 : 0;
}

int main(void) {
    road_set_num_threads(2);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_load_refusals),
        T(test_load_shards),
        T(test_load_f16),
        T(test_bf16_and_tied),
        T(test_tied_head_merge),
        T(test_bf16_kept_as_stored),
        T(test_bf16_training_step),
        T(test_tied_head_merge_bf16),
        T(test_bf16_save_round_trip),
        T(test_bf16_gemma_embed_scale),
        T(test_load_oom),
        T(test_generate_oom),
        T(test_kv_cache_edges),
        T(test_generate_edges),
    };
#undef T
    return cmocka_run_group_tests_name("llm_load", tests, NULL, NULL);
}
