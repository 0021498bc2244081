/*
 * tests/test_peft_io.c - PEFT adapter folders that road reads and writes as PEFT does:
 * road_adapter_set_load and road_adapter_set_save on PEFT's own folders.
 *
 * The contract is "reads what PEFT saves, writes what PEFT would save", so the checks are:
 *  1. the golden e2e MLPs: load PEFT's checkpoint and reproduce PEFT's outputs (adapters on,
 *     disabled, merged) and merged weights;
 *  2. saving that adapter gives PEFT's folder back: same config, same tensors bit for bit,
 *     and both files byte-identical;
 *  3. the tiny-llama adapters A, B, C in one set: each lands exactly on the layers its
 *     target_modules select with the file's values; saved folders match the fixtures byte for
 *     byte and reload to the same parameters; "default" goes to the top-level folder.
 * Other dtypes, every refusal and out-of-memory injection are in test_peft_io_errors.c; the
 * shared helpers in peft_io_common.h.
 *
 * Folders are written under a fresh mkdtemp folder that each test removes again.
 */
#include "peft_io_common.h"

/* ---- comparing parameters ----------------------------------------------------------------- */

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

/* ---- main --------------------------------------------------------------------------------- */

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_e2e_outputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_e2e_save_matches_peft, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_llama_save_reload, setup, teardown),
    };
    return cmocka_run_group_tests_name("peft_io", tests, NULL, NULL);
}
