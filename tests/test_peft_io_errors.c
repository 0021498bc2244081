/*
 * tests/test_peft_io_errors.c - PEFT adapter folders road did not save as-is, for
 * road_adapter_set_load and road_adapter_set_save:
 *  1. fixtures rewritten with F16/BF16/F64 tensors are read (each value rounded as the dtype
 *     says); every refusal (missing folder or file, unmatched targets, missing / misshapen /
 *     mistyped / unexpected keys, LoRA, modules_to_save, duplicate names) with its status and
 *     message, and the set unchanged afterwards;
 *  2. out-of-memory injection at every allocation of load and save: no crash, no leak, set
 *     unchanged.
 * Loading and saving PEFT's own folders is test_peft_io.c; the shared helpers are in
 * peft_io_common.h.
 *
 * Folders are written under a fresh mkdtemp folder that each test removes again.
 */
#include "peft_io_common.h"

/* Adapters a snapshot of the set remembers. */
#define SNAP_MAX_ADAPTERS 8
/* Allocation failures tried before the OOM loop gives up (load needs about a hundred). */
#define OOM_MAX_STEPS 100000

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

/* ---- 1. other dtypes and refusals ------------------------------------------------------- */

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
    const char *poison;     /* key whose element poison_at becomes poison_value, or NULL */
    int64_t poison_at;
    double poison_value; /* written in the tensor's dtype (F64 keeps values beyond float32) */
} rewrite;

/* n floats converted to dtype t (road__malloc'd is not needed: plain heap). */
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
        if (rw->poison && strcmp(t->name, rw->poison) == 0) {
            assert_true(rw->poison_at < t->numel);
            if (rw->dtype == ROAD_DTYPE_F64)
                ((double *)data)[rw->poison_at] = rw->poison_value;
            else if (rw->dtype == ROAD_DTYPE_F16)
                ((uint16_t *)data)[rw->poison_at] = road_f32_to_f16((float)rw->poison_value);
            else
                ((float *)data)[rw->poison_at] = (float)rw->poison_value;
        }
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
    TU_OK(road__mkdir_p(buf));
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
    assert_true(
        road_adapter_set_has_copy(m->set, "X", road_adapter_set_find_layer(m->set, "lm_head")));
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

/* Numbers that cannot be right are refused at load, naming the tensor and the first bad
 * index: NaN, +-Inf, an F64 value beyond float32's range, an F16 Inf; the set is unchanged,
 * and the library setter refuses the same values. */
static void test_nonfinite(void **state) {
    const char *root = ((fixture *)*state)->root;
    char dir[1024], a[1024];
    snprintf(a, sizeof a, "%s", llama_adapter_dir("A"));
    test_model *m = llama_model();
    TU_OK(road_adapter_set_load(m->set, "C", llama_adapter_dir("C")));
    snapshot before;
    snap(m->set, &before);
    const struct {
        const char *name, *key, *needle;
        road_dtype dtype;
        int64_t at;
        double value;
    } cases[] = {
        {"nan", KEY(Q0, "theta"), "holds nan at index 5", ROAD_DTYPE_F32, 5, NAN},
        {"inf", KEY(V1, "alpha"), "holds inf at index 15", ROAD_DTYPE_F32, 15, INFINITY},
        {"ninf", KEY(V1, "theta"), "holds -inf at index 0", ROAD_DTYPE_F32, 0, -INFINITY},
        {"f64_big", KEY(Q0, "alpha"), "beyond float32's range", ROAD_DTYPE_F64, 7, 1e300},
        {"f16_inf", KEY(Q0, "alpha"), "holds inf at index 2", ROAD_DTYPE_F16, 2, INFINITY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        case_dir(dir, root, cases[i].name);
        write_config(dir, a, NULL, NULL);
        rewrite rw = {.src = a,
                      .dtype = cases[i].dtype,
                      .poison = cases[i].key,
                      .poison_at = cases[i].at,
                      .poison_value = cases[i].value};
        write_weights(dir, &rw);
        LOAD_FAILS(m, dir, ROAD_ERR_NUMERIC, cases[i].needle);
        assert_non_null(strstr(road_last_error(), cases[i].key));
        assert_unchanged(m->set, &before, cases[i].name);
    }
    /* modules_to_save copies are adapter parameters too. */
    case_dir(dir, root, "mts_nan");
    write_config(dir, a, NULL, "lm_head");
    rewrite mts = {.src = a,
                   .dtype = ROAD_DTYPE_F32,
                   .extra = {PEFT_PREFIX "lm_head.weight"},
                   .extra_shape = {320, 64},
                   .poison = NULL};
    write_weights(dir, &mts);
    TU_OK(road_adapter_set_load(m->set, "X", dir)); /* zeros: fine */
    TU_OK(road_adapter_set_delete(m->set, "X"));
    {
        /* poison the copy: rewrite the file with a NaN at [3][9] */
        char path[1024];
        road_st_file *f = NULL;
        TU_OK(road_st_open(join(path, dir, "adapter_model.safetensors"), &f));
        road_st_writer *w = NULL;
        TU_OK(road_st_writer_create(&w));
        for (int64_t t = 0; t < road_st_count(f); t++) {
            const road_st_tensor *x = road_st_at(f, t);
            float *d = tu_alloc((size_t)x->numel * sizeof(float));
            memcpy(d, x->data, (size_t)x->numel * sizeof(float));
            if (strcmp(x->name, PEFT_PREFIX "lm_head.weight") == 0) d[3 * 64 + 9] = NAN;
            TU_OK(road_st_writer_add(w, x->name, x->dtype, x->ndim, x->shape, d));
            free(d);
        }
        road_st_close(f);
        TU_OK(road_st_writer_save(w, path));
        road_st_writer_free(w);
    }
    LOAD_FAILS(m, dir, ROAD_ERR_NUMERIC, "'" PEFT_PREFIX "lm_head.weight' holds nan at index 201");
    assert_unchanged(m->set, &before, "mts_nan");

    /* The library setter: nothing changes. */
    int32_t li = 0;
    while (!road_adapter_set_on_layer(m->set, "C", li)) li++;
    road_linear *l = road_adapter_set_layer(m->set, li);
    float *th = NULL, *al = NULL;
    int64_t n = 0;
    TU_OK(road_linear_adapter_params(l, "C", &th, &al, &n));
    float *t2 = tu_alloc((size_t)n * sizeof(float)), *a2 = tu_alloc((size_t)n * sizeof(float));
    memcpy(t2, th, (size_t)n * sizeof(float));
    memcpy(a2, al, (size_t)n * sizeof(float));
    a2[n - 1] = NAN;
    TU_FAILS(road_linear_set_params(l, "C", t2, a2, n), ROAD_ERR_NUMERIC, "alpha[");
    assert_unchanged(m->set, &before, "set_params");
    free(t2);
    free(a2);
    model_free(m);
}

/* ---- 2. out of memory ----------------------------------------------------------------------- */

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
    const int64_t start = road__alloc_live_bytes();
    int64_t k = 0;
    for (;; k++) {
        road__alloc_fail_after(k);
        road_status s = road_adapter_set_load(m->set, "B", llama_adapter_dir("B"));
        road__alloc_fail_after(-1);
        if (s == ROAD_OK) break;
        if (s != ROAD_ERR_NO_MEMORY)
            fail_msg("failing allocation %lld gave %s: %s", (long long)k, road_status_name(s),
                     road_last_error());
        assert_unchanged(m->set, &before, "load under OOM");
        if (road__alloc_live_bytes() != start)
            fail_msg("failing allocation %lld leaks %lld bytes", (long long)k,
                     (long long)(road__alloc_live_bytes() - start));
        if (k > OOM_MAX_STEPS) fail_msg("load never succeeds");
    }
    assert_true(k > 0);
    assert_params_equal_file(m->set, "B", llama_adapter_dir("B"));
    TU_OK(road_adapter_set_delete(m->set, "B"));
    assert_int_equal(road__alloc_live_bytes(), start);
    model_free(m);
}

static void test_oom_save(void **state) {
    const char *root = ((fixture *)*state)->root;
    test_model *m = llama_model();
    load_llama_abc(m);
    const int64_t start = road__alloc_live_bytes();
    int64_t k = 0;
    for (;; k++) {
        road__alloc_fail_after(k);
        road_status s = road_adapter_set_save(m->set, root, NULL, 0);
        road__alloc_fail_after(-1);
        if (road__alloc_live_bytes() != start)
            fail_msg("failing allocation %lld leaks %lld bytes", (long long)k,
                     (long long)(road__alloc_live_bytes() - start));
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_other_dtypes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oom_save, setup, teardown),
    };
    return cmocka_run_group_tests_name("peft_io_errors", tests, NULL, NULL);
}
