/*
 * tests/test_llm_golden.c - every family's runtime against the PyTorch/PEFT reference in
 * tests/fixtures/llama (tiny-llama: f32, one file; tiny-qwen2: bf16, q/k/v biases, tied
 * embeddings; tiny-llama3-rope: llama3 RoPE scaling, two shards + index; tiny-qwen3: per-head
 * q/k norms; tiny-gemma2: sandwich norms (1 + w), GeGLU, soft-caps, alternating sliding
 * windows, scaled embeddings; tiny-gemma3: q/k norms, a local RoPE base, linear scaling;
 * tiny-phi3: fused qkv_proj / gate_up_proj, partial rotary; tiny-olmo2: post norms, q/k norms
 * over the whole projection):
 *   - RoPE inverse frequencies;
 *   - logits of a padded batch (left and right padding) with no adapter, each of A, B, C,
 *     stacked adapters in both orders, and a mixed batch (one adapter per row), at valid
 *     positions; the causal-LM loss of each case;
 *   - greedy decoding with the KV cache: every step's logits and token;
 *   - merging adapter A: the merged weights (and biases), and logits after merging;
 *   - the gradient of the loss with respect to every road_theta / road_alpha of A and of B
 *     (backward through the whole model).
 * Tolerances are the fixture README's recommended acceptance for a float32 implementation.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/model_internal.h"
#include "testutil.h"

/* From tests/fixtures/llama/README.md, "Numerical tolerances": logits, decode step logits and
 * activations <= 1e-5 abs (valid positions); losses <= 1e-5 abs; merged weights <= 1e-6 abs;
 * decoded token ids exact. (Observed float32 noise there: 1.6e-7 to 3.5e-7 on logits.) */
#define LOGIT_ATOL 1e-5
#define LOSS_ATOL 1e-5
#define MERGED_ATOL 1e-6
/* RoPE tables: observed float32-vs-float64 1.3e-7; powf and torch.pow may differ by an ulp. */
#define ROPE_RTOL 1e-6
#define N_DECODE 5
/* README: gradients <= 1e-4 x max |reference| of the same tensor (observed float32 noise:
 * up to 2.2e-6 of max). */
#define GRAD_REL 1e-4

static const char *const models[] = {"tiny-llama", "tiny-qwen2",  "tiny-llama3-rope",
                                     "tiny-qwen3", "tiny-gemma2", "tiny-gemma3",
                                     "tiny-phi3",  "tiny-olmo2"};
#define N_MODELS 8

typedef struct fixture {
    road_model *m;
    road_st_file *cases;
    cJSON *json;
    const int64_t *ids, *mask, *labels;
    int64_t B, T, V;
    char dir[512];
} fixture;

/* The model as road loads it by default (a 16-bit checkpoint's linear weights kept as stored),
 * or with float32_weights (for comparing merged weights at float32 precision). */
static void fixture_open_as(fixture *f, const char *name, bool f32) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s/llama/%s", ROAD_FIXTURES, name);
    road_model_params p = road_model_default_params();
    p.float32_weights = f32;
    TU_OK(road_model_load(f->dir, &p, &f->m));
    char rel[512];
    snprintf(rel, sizeof rel, "llama/%s/cases.safetensors", name);
    f->cases = tu_open_golden(rel);
    snprintf(rel, sizeof rel, "llama/%s/cases.json", name);
    f->json = tu_load_json(rel);
    const road_st_tensor *t = road_st_find(f->cases, "inputs.input_ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, ROAD_DTYPE_I64);
    f->B = t->shape[0];
    f->T = t->shape[1];
    f->ids = t->data;
    f->mask = road_st_find(f->cases, "inputs.attention_mask")->data;
    f->labels = road_st_find(f->cases, "inputs.labels")->data;
    f->V = road_model_config(f->m)->vocab_size;
    road_adapter_set *set = road_model_adapters(f->m);
    const char *ad[3] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) {
        char adir[600];
        snprintf(adir, sizeof adir, "%s/adapters/%s", f->dir, ad[i]);
        TU_OK(road_adapter_set_load(set, ad[i], adir));
    }
}

static void fixture_open(fixture *f, const char *name) {
    fixture_open_as(f, name, false);
}

static void fixture_close(fixture *f) {
    road_model_free(f->m);
    road_st_close(f->cases);
    cJSON_Delete(f->json);
}

static const float *tensor(const fixture *f, const char *name, int64_t *n) {
    const road_st_tensor *t = road_st_find(f->cases, name);
    if (!t) {
        print_error("%s: cases.safetensors has no '%s'\n", f->dir, name);
        fail();
    }
    if (n) *n = t->numel;
    return t->data;
}

/* Max |a - b| over valid positions (attention_mask 1) of [B, T, V] logits must be <= atol. */
static void check_logits(const fixture *f, const char *what, const float *got, const float *want) {
    double worst = 0;
    int64_t wb = 0, wt = 0;
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t t = 0; t < f->T; t++) {
            if (!f->mask[b * f->T + t]) continue;
            for (int64_t i = 0; i < f->V; i++) {
                double d =
                    fabs((double)got[(b * f->T + t) * f->V + i] - want[(b * f->T + t) * f->V + i]);
                if (!(d <= worst)) worst = d, wb = b, wt = t;
            }
        }
    if (!(worst <= LOGIT_ATOL)) {
        print_error("%s %s: logits differ by %.3g at row %lld, position %lld (tolerance %.1g)\n",
                    f->dir, what, worst, (long long)wb, (long long)wt, LOGIT_ATOL);
        fail();
    }
}

static void test_rope(void **state) {
    (void)state;
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        fixture_open(&f, models[k]);
        int64_t n;
        const float *inv = tensor(&f, "rope.inv_freq", &n);
        assert_int_equal(n, f.m->cfg.rotary_dim / 2); /* phi3: partial rotary */
        tu_assert_close("rope.inv_freq", f.m->rope.inv_freq, inv, n, 0, ROPE_RTOL);
        /* gemma3's sliding layers: their own base, unscaled */
        const road_st_tensor *loc = road_st_find(f.cases, "rope.local.inv_freq");
        assert_true((loc != NULL) == (f.m->rope_local.inv_freq != NULL));
        if (loc)
            tu_assert_close("rope.local.inv_freq", f.m->rope_local.inv_freq, loc->data, n, 0,
                            ROPE_RTOL);
        fixture_close(&f);
    }
}

static void set_active_json(road_adapter_set *set, const cJSON *list) {
    const char *names[8];
    int32_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) names[n++] = e->valuestring;
    TU_OK(road_adapter_set_set_active(set, names, n));
}

static void test_cases(void **state) {
    (void)state;
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        fixture_open(&f, models[k]);
        road_adapter_set *set = road_model_adapters(f.m);
        float *logits = tu_alloc(sizeof(float) * (size_t)(f.B * f.T * f.V));
        int checked = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(f.json, "cases")) {
            const cJSON *lg = cJSON_GetObjectItem(c, "logits");
            if (!lg) continue;
            const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
            const cJSON *per_row = cJSON_GetObjectItem(c, "adapter_names_per_row");
            if (per_row) {
                const char *rows[8];
                int64_t n = 0;
                const cJSON *e;
                cJSON_ArrayForEach(e, per_row) rows[n++] = e->valuestring;
                assert_int_equal(n, f.B);
                TU_OK(road_adapter_set_set_active(set, NULL, 0));
                TU_OK(road_model_forward_padded(f.m, f.ids, f.mask, f.B, f.T, rows, logits));
            } else {
                set_active_json(set, cJSON_GetObjectItem(c, "active_adapters"));
                TU_OK(road_model_forward_padded(f.m, f.ids, f.mask, f.B, f.T, NULL, logits));
            }
            check_logits(&f, name, logits, tensor(&f, lg->valuestring, NULL));
            const cJSON *loss = cJSON_GetObjectItem(c, "loss");
            if (loss) {
                double got;
                TU_OK(road_causal_lm_loss(logits, f.labels, f.mask, f.B, f.T, f.V, &got));
                if (!(fabs(got - loss->valuedouble) <= LOSS_ATOL)) {
                    print_error("%s %s: loss %.9g, reference %.9g\n", f.dir, name, got,
                                loss->valuedouble);
                    fail();
                }
            }
            checked++;
        }
        assert_int_equal(checked, 8); /* base, A, B, C, A+C, A+B, B+A, mixed */
        free(logits);
        fixture_close(&f);
    }
}

static void test_decode(void **state) {
    (void)state;
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        fixture_open(&f, models[k]);
        const char *a[1] = {"A"};
        TU_OK(road_adapter_set_set_active(road_model_adapters(f.m), a, 1));
        float *logits = tu_alloc(sizeof(float) * (size_t)f.V);
        for (int64_t row = 0; row < f.B; row++) {
            char name[128];
            snprintf(name, sizeof name, "decode.A.row%lld.prompt_ids", (long long)row);
            const road_st_tensor *pt = road_st_find(f.cases, name);
            assert_non_null(pt);
            snprintf(name, sizeof name, "decode.A.row%lld.generated_ids", (long long)row);
            const int64_t *gen = road_st_find(f.cases, name)->data;
            snprintf(name, sizeof name, "decode.A.row%lld.step_logits", (long long)row);
            const float *steps = tensor(&f, name, NULL);
            int32_t prompt[64];
            for (int64_t i = 0; i < pt->numel; i++)
                prompt[i] = (int32_t)((const int64_t *)pt->data)[i];
            road_kv_cache *kv;
            TU_OK(road_kv_cache_create(f.m, pt->numel + N_DECODE, &kv));
            road_seq s = {prompt, pt->numel, kv, NULL, false};
            int32_t tok = 0;
            for (int step = 0; step < N_DECODE; step++) {
                TU_OK(road_model_forward(f.m, &s, 1, logits));
                snprintf(name, sizeof name, "%s row %lld step %d logits", models[k], (long long)row,
                         step);
                tu_assert_close(name, logits, steps + step * f.V, f.V, LOGIT_ATOL, 0);
                tok = 0;
                for (int64_t i = 1; i < f.V; i++)
                    if (logits[i] > logits[tok]) tok = (int32_t)i;
                assert_int_equal(tok, gen[step]);
                s = (road_seq){&tok, 1, kv, NULL, false};
            }
            assert_int_equal(road_kv_cache_length(kv), pt->numel + N_DECODE - 1);
            road_kv_cache_free(kv);
        }
        free(logits);
        fixture_close(&f);
    }
}

/* road_model_generate over all rows at once (one batch, greedy) gives the reference tokens. */
typedef struct collected {
    int32_t tok[4][N_DECODE];
    int n[4];
} collected;

static bool collect(int64_t seq, int32_t token, void *user) {
    collected *c = user;
    c->tok[seq][c->n[seq]++] = token;
    return true;
}

static void test_generate_batch(void **state) {
    (void)state;
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        fixture_open(&f, models[k]);
        const int32_t *prompts[3];
        int64_t lens[3];
        int32_t buf[3][64];
        const char *ads[3] = {"A", "A", "A"};
        for (int64_t row = 0; row < 3; row++) {
            char name[128];
            snprintf(name, sizeof name, "decode.A.row%lld.prompt_ids", (long long)row);
            const road_st_tensor *pt = road_st_find(f.cases, name);
            for (int64_t i = 0; i < pt->numel; i++)
                buf[row][i] = (int32_t)((const int64_t *)pt->data)[i];
            prompts[row] = buf[row];
            lens[row] = pt->numel;
        }
        road_generate_params gp = {N_DECODE, NULL, 0, road_sampler_default_params(),
                                   ROAD_DTYPE_F32};
        collected got;
        memset(&got, 0, sizeof got);
        /* per-sequence adapter names (a mixed batch that happens to use one adapter) */
        TU_OK(road_model_generate(f.m, prompts, lens, ads, 3, &gp, collect, &got));
        for (int64_t row = 0; row < 3; row++) {
            char name[128];
            snprintf(name, sizeof name, "decode.A.row%lld.generated_ids", (long long)row);
            const int64_t *gen = road_st_find(f.cases, name)->data;
            assert_int_equal(got.n[row], N_DECODE);
            for (int i = 0; i < N_DECODE; i++) assert_int_equal(got.tok[row][i], gen[i]);
        }
        fixture_close(&f);
    }
}

static void test_merge(void **state) {
    (void)state;
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        fixture_open_as(&f, models[k], true);
        road_adapter_set *set = road_model_adapters(f.m);
        const char *a[1] = {"A"};
        TU_OK(road_adapter_set_set_active(set, a, 1));
        TU_OK(road_adapter_set_merge(set, NULL, 0, true));
        int checked = 0;
        for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
            road_linear *l = road_adapter_set_layer(set, i);
            if (!l) continue;
            char name[256];
            snprintf(name, sizeof name, "merged.A.%s.weight", road_adapter_set_layer_name(set, i));
            const road_st_tensor *t = road_st_find(f.cases, name);
            if (!t) continue;
            tu_assert_close(name, road_linear_weight(l), t->data, t->numel, MERGED_ATOL, 0);
            snprintf(name, sizeof name, "merged.A.%s.bias", road_adapter_set_layer_name(set, i));
            t = road_st_find(f.cases, name);
            if (t) tu_assert_close(name, road_linear_bias(l), t->data, t->numel, MERGED_ATOL, 0);
            checked++;
        }
        /* every merged weight the reference lists (A's layers: q_proj and v_proj, or phi3's
         * qkv_proj, of every block) was compared */
        int listed = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(f.json, "tensors")) {
            const size_t len = strlen(t->string);
            listed += strncmp(t->string, "merged.A.", 9) == 0 && len > 7 &&
                      strcmp(t->string + len - 7, ".weight") == 0;
        }
        assert_true(listed > 0);
        assert_int_equal(checked, listed);
        float *logits = tu_alloc(sizeof(float) * (size_t)(f.B * f.T * f.V));
        TU_OK(road_model_forward_padded(f.m, f.ids, f.mask, f.B, f.T, NULL, logits));
        check_logits(&f, "merged A", logits, tensor(&f, "A.logits", NULL));
        TU_OK(road_adapter_set_unmerge(set));
        TU_OK(road_adapter_set_set_active(set, NULL, 0));
        TU_OK(road_model_forward_padded(f.m, f.ids, f.mask, f.B, f.T, NULL, logits));
        check_logits(&f, "base after unmerge", logits, tensor(&f, "base.logits", NULL));
        free(logits);
        fixture_close(&f);
    }
}

/* A batch mixing prefill and decode rows, each sequence with its own adapter and cache, gives
 * the logits each sequence gets alone (up to GEMM blocking: 1e-5). */
static void test_ragged_mixed_decode(void **state) {
    (void)state;
    fixture f;
    fixture_open(&f, "tiny-llama");
    const int32_t p0[6] = {5, 9, 77, 3, 100, 42}, p1[3] = {11, 12, 13}, p2[1] = {250};
    const char *names[3] = {"B", "__base__", "C"};
    road_kv_cache *kv[3], *solo;
    for (int i = 0; i < 3; i++) TU_OK(road_kv_cache_create(f.m, 16, &kv[i]));
    /* sequence 1 already has 3 tokens in its cache */
    road_seq pre = {p1, 3, kv[1], "__base__", false};
    float *lg = tu_alloc(sizeof(float) * (size_t)(20 * f.V)),
          *one = tu_alloc(sizeof(float) * (size_t)(20 * f.V));
    TU_OK(road_model_forward(f.m, &pre, 1, lg));
    const int32_t next1[1] = {7};
    road_seq batch[3] = {{p0, 6, kv[0], names[0], true},
                         {next1, 1, kv[1], names[1], true},
                         {p2, 1, kv[2], names[2], false}};
    assert_int_equal(road_seq_logit_rows(batch, 3), 8);
    TU_OK(road_model_forward(f.m, batch, 3, lg));
    /* alone */
    TU_OK(road_kv_cache_create(f.m, 16, &solo));
    road_seq s0 = {p0, 6, solo, "B", true};
    TU_OK(road_model_forward(f.m, &s0, 1, one));
    tu_assert_close("seq 0 alone", lg, one, 6 * f.V, LOGIT_ATOL, 0);
    TU_OK(road_kv_cache_truncate(solo, 0));
    int32_t full1[4] = {11, 12, 13, 7};
    road_seq s1 = {full1, 4, solo, "__base__", false};
    TU_OK(road_model_forward(f.m, &s1, 1, one));
    tu_assert_close("seq 1 (cached prefix) vs full", lg + 6 * f.V, one, f.V, LOGIT_ATOL, 0);
    road_seq s2 = {p2, 1, NULL, "C", false};
    TU_OK(road_model_forward(f.m, &s2, 1, one));
    tu_assert_close("seq 2 alone", lg + 7 * f.V, one, f.V, LOGIT_ATOL, 0);
    /* errors */
    road_seq bad = {p2, 1, NULL, "nope", false};
    TU_FAILS(road_model_forward(f.m, &bad, 1, one), ROAD_ERR_NOT_FOUND, "'nope'");
    road_seq half[2] = {{p2, 1, NULL, "A", false}, {p2, 1, NULL, NULL, false}};
    TU_FAILS(road_model_forward(f.m, half, 2, one), ROAD_ERR_INVALID_ARG, "every sequence names");
    int32_t big = (int32_t)f.V;
    road_seq oob = {&big, 1, NULL, NULL, false};
    TU_FAILS(road_model_forward(f.m, &oob, 1, one), ROAD_ERR_INVALID_ARG, "outside the vocabulary");
    road_seq shared[2] = {{p2, 1, kv[2], NULL, false}, {p2, 1, kv[2], NULL, false}};
    TU_FAILS(road_model_forward(f.m, shared, 2, one), ROAD_ERR_INVALID_ARG, "share one KV cache");
    road_kv_cache *tiny;
    TU_OK(road_kv_cache_create(f.m, 2, &tiny));
    road_seq over = {p0, 3, tiny, NULL, false};
    TU_FAILS(road_model_forward(f.m, &over, 1, one), ROAD_ERR_STATE, "KV cache holds 2");
    road_kv_cache_free(tiny);
    road_kv_cache_free(solo);
    for (int i = 0; i < 3; i++) road_kv_cache_free(kv[i]);
    free(lg), free(one);
    fixture_close(&f);
}

static void zero_all_grads(road_adapter_set *set) {
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
        road_linear *l = road_adapter_set_layer(set, i);
        if (l) road_linear_zero_grads(l);
    }
}

static void test_grads(void **state) {
    (void)state;
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        fixture_open(&f, models[k]);
        road_adapter_set *set = road_model_adapters(f.m);
        int cases = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(f.json, "cases")) {
            const cJSON *grads = cJSON_GetObjectItem(c, "gradients");
            if (!grads) continue;
            const cJSON *act = cJSON_GetObjectItem(c, "active_adapters");
            const char *name = cJSON_GetArrayItem(act, 0)->valuestring;
            set_active_json(set, act);
            zero_all_grads(set);
            double loss;
            TU_OK(road_model_loss_backward(f.m, f.ids, f.mask, f.labels, f.B, f.T, &loss));
            double want = cJSON_GetObjectItem(c, "loss")->valuedouble;
            if (!(fabs(loss - want) <= LOSS_ATOL)) {
                print_error("%s grad_%s: loss %.9g, reference %.9g\n", f.dir, name, loss, want);
                fail();
            }
            /* recomputing block activations in backward gives the same gradients, bit for bit,
             * with less activation memory */
            {
                int64_t bytes_keep = road_model_backward_bytes(f.m);
                road_model_set_recompute(f.m, true);
                float *keep_t = NULL, *keep_a = NULL;
                int32_t first = 0; /* the first layer that has the adapter */
                while (!road_adapter_set_on_layer(set, name, first)) first++;
                road_linear *l0 = road_adapter_set_layer(set, first);
                float *dth0, *dal0;
                int64_t np0;
                TU_OK(road_linear_adapter_grads(l0, name, &dth0, &dal0, &np0));
                keep_t = tu_alloc(sizeof(float) * (size_t)np0);
                keep_a = tu_alloc(sizeof(float) * (size_t)np0);
                memcpy(keep_t, dth0, sizeof(float) * (size_t)np0);
                memcpy(keep_a, dal0, sizeof(float) * (size_t)np0);
                zero_all_grads(set);
                double loss2;
                TU_OK(road_model_loss_backward(f.m, f.ids, f.mask, f.labels, f.B, f.T, &loss2));
                assert_true(loss2 == loss);
                tu_assert_equal_f32("recompute dtheta", dth0, keep_t, np0);
                tu_assert_equal_f32("recompute dalpha", dal0, keep_a, np0);
                assert_true(road_model_backward_bytes(f.m) < bytes_keep);
                road_model_set_recompute(f.m, false);
                free(keep_t), free(keep_a);
                zero_all_grads(set);
                TU_OK(road_model_loss_backward(f.m, f.ids, f.mask, f.labels, f.B, f.T, &loss2));
            }
            int n = 0;
            const cJSON *g;
            cJSON_ArrayForEach(g, grads) {
                /* key "base_model.model.<layer>.road_theta" -> layer and tensor */
                const char *key = g->string;
                char layer[256];
                const char *start = key + strlen("base_model.model.");
                const char *dot = strrchr(key, '.');
                snprintf(layer, sizeof layer, "%.*s", (int)(dot - start), start);
                int32_t li = road_adapter_set_find_layer(set, layer);
                assert_true(li >= 0);
                float *dth, *dal;
                int64_t np;
                TU_OK(road_linear_adapter_grads(road_adapter_set_layer(set, li), name, &dth, &dal,
                                                &np));
                char tname[400];
                snprintf(tname, sizeof tname, "grad.%s.%s", name, key);
                int64_t nref;
                const float *ref = tensor(&f, tname, &nref);
                assert_int_equal(nref, np);
                float mx = 0;
                for (int64_t i = 0; i < nref; i++) mx = fmaxf(mx, fabsf(ref[i]));
                const float *got = strcmp(dot, ".road_theta") == 0 ? dth : dal;
                char what[480];
                snprintf(what, sizeof what, "%s %s", models[k], tname);
                tu_assert_close(what, got, ref, nref, GRAD_REL * mx, 0);
                n++;
            }
            /* the reference holds theta and alpha of every layer the adapter is on */
            int on = 0;
            for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++)
                on += road_adapter_set_on_layer(set, name, i);
            assert_true(on >= 2);
            assert_int_equal(n, 2 * on);
            cases++;
        }
        assert_int_equal(cases, 2); /* grad_A, grad_B */
        /* merged adapters cannot be trained */
        const char *a[1] = {"A"};
        TU_OK(road_adapter_set_set_active(set, a, 1));
        TU_OK(road_adapter_set_merge(set, NULL, 0, false));
        double loss;
        TU_FAILS(road_model_loss_backward(f.m, f.ids, f.mask, f.labels, f.B, f.T, &loss),
                 ROAD_ERR_STATE, "unmerge first");
        TU_OK(road_adapter_set_unmerge(set));
        fixture_close(&f);
    }
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rope),   cmocka_unit_test(test_cases),
        cmocka_unit_test(test_decode), cmocka_unit_test(test_generate_batch),
        cmocka_unit_test(test_merge),  cmocka_unit_test(test_ragged_mixed_decode),
        cmocka_unit_test(test_grads),
    };
    return cmocka_run_group_tests_name("llm_golden", tests, NULL, NULL);
}
