/*
 * tests/test_full.c - full fine-tuning, saving models, initialising models:
 *   - the loss and the gradient of every model tensor against PyTorch in float64
 *     (tools/torchref/full_grads.py) on tiny-llama (untied) and tiny-qwen2 (tied embeddings,
 *     q/k/v biases), with and without recompute;
 *   - the tensor table (names in transformers' order, shapes) against the checkpoint file;
 *   - refusals: an active adapter during full backward, merged adapters;
 *   - road_train --full learns, resumes bit-exactly from a checkpoint, and writes a model
 *     folder that loads and gives the trained model's logits;
 *   - road_model_save in F32 (bit-exact round trip) and BF16 (every value the bf16 rounding of
 *     the float one); a failed save leaves the existing folder unchanged; a quantized model
 *     saved as float computes what it computed;
 *   - road_model_init_folder: shapes, the initializer's statistics, determinism by seed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "testutil.h"

/* Gradients: road in float32 against float64 PyTorch. Per tensor, max |road - ref| must stay
 * below this fraction of the largest |ref| of the whole model (the adapter gradients of
 * test_llm_golden meet 1e-4 of max; full gradients sum over more rows, so the same bound). */
#define GRAD_TOL 1e-4
/* The loss: float32 accumulation over a few dozen labels. */
#define LOSS_TOL 1e-5
#define N_TRAIN 48
#define SEQ 12
#define STEPS 12
/* 60 steps of full fine-tuning at lr 1e-2 on a repeating pattern drop the loss by far more. */
#define REQUIRED_DROP 1.0
/* road_model_init_folder: the sample standard deviation of a 64x64 or larger weight is within
 * a few percent of initializer_range (4096 normal draws: relative std error ~1.1%). */
#define INIT_STD_TOL 0.06

/* Full fine-tuning trains float32 weights: 16-bit checkpoints are widened at load. */
static const road_model_params f32 = {.float32_weights = true};

static char tmp[64];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static void check_grads(const char *model, bool recompute) {
    char rel[128], mdir[256];
    snprintf(rel, sizeof rel, "torchref/full_grads_%s.safetensors", model);
    snprintf(mdir, sizeof mdir, ROAD_FIXTURES "/llama/%s", model);
    road_st_file *ref = tu_open_golden(rel);
    snprintf(rel, sizeof rel, "llama/%s/cases.safetensors", model);
    road_st_file *cases = tu_open_golden(rel);
    const road_st_tensor *t = road_st_find(cases, "inputs.input_ids");
    const int64_t B = t->shape[0], T = t->shape[1];
    const int64_t *ids = t->data, *mask = road_st_find(cases, "inputs.attention_mask")->data;
    const int64_t *lab = road_st_find(cases, "inputs.labels")->data;
    road_model *m;
    TU_OK(road_model_load(mdir, &f32, &m));
    road_model_set_recompute(m, recompute);
    TU_OK(road_model_set_full_training(m, true));
    assert_true(road_model_full_training(m));
    double loss;
    TU_OK(road_model_loss_backward(m, ids, mask, lab, B, T, &loss));
    const double ref_loss = *(const double *)road_st_find(ref, "loss")->data;
    if (!(fabs(loss - ref_loss) <= LOSS_TOL * fabs(ref_loss)))
        fail_msg("%s: loss %.9g, PyTorch %.9g", model, loss, ref_loss);
    const int32_t n = road_model_tensor_count(m);
    assert_int_equal(road_st_count(ref), n + 1); /* every tensor's gradient, and the loss */
    double gmax = 0;
    for (int64_t i = 0; i < road_st_count(ref); i++) {
        const road_st_tensor *r = road_st_at(ref, i);
        if (strcmp(r->name, "loss") == 0) continue;
        const float *g = r->data;
        for (int64_t k = 0; k < r->numel; k++) gmax = fmax(gmax, fabs(g[k]));
    }
    for (int32_t i = 0; i < n; i++) {
        road_model_tensor mt;
        TU_OK(road_model_tensor_get(m, i, &mt));
        char key[160];
        snprintf(key, sizeof key, "grad.%s", mt.name);
        const float *g;
        TU_OK(road_st_get_f32(ref, key, mt.ndim, mt.shape, &g, NULL));
        double worst = 0;
        int64_t at = 0;
        for (int64_t k = 0; k < mt.n; k++) {
            double d = fabs((double)mt.grad[k] - g[k]);
            if (d > worst) worst = d, at = k;
        }
        if (!(worst <= GRAD_TOL * gmax))
            fail_msg("%s%s: gradient of %s differs at %lld: road %.8g, PyTorch %.8g (max |g| "
                     "%.3g)",
                     model, recompute ? " (recompute)" : "", mt.name, (long long)at,
                     (double)mt.grad[at], (double)g[at], gmax);
    }
    /* accumulation: a second backward doubles every gradient; zero_grads clears */
    road_model_tensor first;
    TU_OK(road_model_tensor_get(m, 0, &first));
    const float g0 = first.grad[1];
    TU_OK(road_model_loss_backward(m, ids, mask, lab, B, T, &loss));
    assert_float_equal(first.grad[1], 2 * g0, fabs(g0) * 1e-5 + 1e-12);
    road_model_zero_grads(m);
    assert_true(first.grad[1] == 0.0f);
    TU_OK(road_model_set_full_training(m, false));
    assert_false(road_model_full_training(m));
    road_model_free(m);
    road_st_close(cases);
    road_st_close(ref);
}

static void test_grads_vs_pytorch(void **state) {
    (void)state;
    check_grads("tiny-llama", false);
    check_grads("tiny-llama", true);
    check_grads("tiny-qwen2", false);
}

static void test_tensor_table(void **state) {
    (void)state;
    road_model *m;
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-qwen2", &f32, &m));
    road_st_file *f = tu_open_golden("llama/tiny-qwen2/model.safetensors");
    const int32_t n = road_model_tensor_count(m);
    /* tied: the file may hold lm_head.weight, the model does not list it */
    int64_t in_file = road_st_count(f) - (road_st_find(f, "lm_head.weight") ? 1 : 0);
    assert_int_equal(n, in_file);
    static const char *const order[] = {
        "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.weight"};
    for (int i = 0; i < 4; i++) {
        road_model_tensor t;
        TU_OK(road_model_tensor_get(m, i, &t));
        assert_string_equal(t.name, order[i]);
        assert_null(t.grad);
    }
    for (int32_t i = 0; i < n; i++) {
        road_model_tensor t;
        TU_OK(road_model_tensor_get(m, i, &t));
        const road_st_tensor *ft = road_st_find(f, t.name);
        assert_non_null(ft);
        assert_int_equal(ft->ndim, t.ndim);
        for (int d = 0; d < t.ndim; d++) assert_int_equal(ft->shape[d], t.shape[d]);
        assert_int_equal(t.decay, t.ndim == 2);
    }
    road_model_tensor t;
    TU_OK(road_model_tensor_get(m, n - 1, &t));
    assert_string_equal(t.name, "model.norm.weight");
    TU_FAILS(road_model_tensor_get(m, n, &t), ROAD_ERR_INVALID_ARG, "out of range");
    road_st_close(f);
    road_model_free(m);
}

/* Full fine-tuning of a bf16 model loaded as stored (no float32_weights): the tensor table
 * widens the embedding and the 16-bit layers for good, the tied head staying on the
 * embedding's array, so the tensors, the loss and every gradient are those of the model
 * widened at load (gradients: summation order only, the GRAD_TOL bound). */
static void test_full_widens_stored(void **state) {
    (void)state;
    road_st_file *cases = tu_open_golden("llama/tiny-qwen2/cases.safetensors");
    const road_st_tensor *t = road_st_find(cases, "inputs.input_ids");
    const int64_t B = t->shape[0], T = t->shape[1];
    const int64_t *ids = t->data, *mask = road_st_find(cases, "inputs.attention_mask")->data;
    const int64_t *lab = road_st_find(cases, "inputs.labels")->data;
    road_model *m[2];
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-qwen2", NULL, &m[0]));
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-qwen2", &f32, &m[1]));
    assert_int_equal(road_model_embedding_format(m[0], NULL), ROAD_QFORMAT_BF16);
    double loss[2];
    for (int k = 0; k < 2; k++) {
        TU_OK(road_model_set_full_training(m[k], true));
        TU_OK(road_model_loss_backward(m[k], ids, mask, lab, B, T, &loss[k]));
    }
    int64_t bytes = 0;
    assert_int_equal(road_model_embedding_format(m[0], &bytes), ROAD_QFORMAT_NONE);
    const road_llm_config *c = road_model_config(m[0]);
    assert_int_equal(bytes, 4 * c->vocab_size * c->hidden_size);
    assert_int_equal(road_model_weight_bytes(m[0]), road_model_weight_bytes(m[1]));
    if (!(fabs(loss[0] - loss[1]) <= LOSS_TOL * fabs(loss[1])))
        fail_msg("loss: widened by the table %.9g, at load %.9g", loss[0], loss[1]);
    const int32_t n = road_model_tensor_count(m[0]);
    assert_int_equal(n, road_model_tensor_count(m[1]));
    for (int32_t i = 0; i < n; i++) {
        road_model_tensor a, b;
        TU_OK(road_model_tensor_get(m[0], i, &a));
        TU_OK(road_model_tensor_get(m[1], i, &b));
        assert_string_equal(a.name, b.name);
        assert_int_equal(a.n, b.n);
        tu_assert_equal_f32(a.name, a.param, b.param, a.n);
        double gmax = 0;
        for (int64_t k = 0; k < b.n; k++) gmax = fmax(gmax, fabs((double)b.grad[k]));
        tu_assert_close(a.name, a.grad, b.grad, a.n, GRAD_TOL * gmax, 0.0);
    }
    for (int k = 0; k < 2; k++) road_model_free(m[k]);
    road_st_close(cases);
}

static void test_refusals(void **state) {
    (void)state;
    road_model *m;
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-llama", &f32, &m));
    road_adapter_set *set = road_model_adapters(m);
    TU_OK(road_adapter_set_load(set, "A", ROAD_FIXTURES "/llama/tiny-llama/adapters/A"));
    TU_OK(road_model_set_full_training(m, true));
    const int64_t ids[4] = {1, 2, 3, 4}, lab[4] = {1, 2, 3, 4};
    double loss;
    TU_FAILS(road_model_loss_backward(m, ids, NULL, lab, 1, 4, &loss), ROAD_ERR_STATE,
             "full fine-tuning");
    TU_OK(road_adapter_set_enable(set, false)); /* disabled adapters: the base trains */
    TU_OK(road_model_loss_backward(m, ids, NULL, lab, 1, 4, &loss));
    TU_OK(road_adapter_set_enable(set, true));
    TU_OK(road_model_set_full_training(m, false));
    TU_OK(road_adapter_set_merge(set, NULL, 0, true));
    TU_FAILS(road_model_set_full_training(m, true), ROAD_ERR_STATE, "merged");
    road_model_free(m);
}

static road_train_params params(const char *out) {
    road_train_params p = road_train_default_params();
    p.full = true;
    p.adamw.lr = 1e-3;
    p.adamw.weight_decay = 0.01;
    p.batch_size = 4;
    p.grad_accum = 2;
    p.max_steps = STEPS;
    p.save_every = 4;
    p.out_dir = out;
    p.seed = 5;
    return p;
}

/* Logits of the batch "1 2 3 4 5" (V floats per position, 5 positions). */
static float *logits_of(road_model *m) {
    const int64_t ids[5] = {1, 2, 3, 4, 5};
    const int64_t V = road_model_config(m)->vocab_size;
    float *out = tu_alloc(sizeof(float) * (size_t)(5 * V));
    TU_OK(road_model_forward_padded(m, ids, NULL, 1, 5, NULL, out));
    return out;
}

static void test_train_full(void **state) {
    (void)state;
    road_data_params dp = road_data_default_params();
    dp.max_len = SEQ;
    tu_write_pattern_task(path_in("train.jsonl"), N_TRAIN, SEQ, 1);
    tu_write_pattern_task(path_in("eval.jsonl"), 8, SEQ, 3);
    road_dataset *train, *eval;
    TU_OK(road_dataset_load_jsonl(path_in("train.jsonl"), &dp, &train));
    TU_OK(road_dataset_load_jsonl(path_in("eval.jsonl"), &dp, &eval));
    const char *base = ROAD_FIXTURES "/llama/tiny-llama";

    road_model *m;
    TU_OK(road_model_load(base, &f32, &m));
    road_train_params p = params(path_in("run1"));
    p.max_steps = 60;
    p.save_every = 0;
    p.adamw.lr = 1e-2;
    tu_loss_log full = {{0}, 0, 0};
    TU_OK(road_train(m, train, eval, &p, tu_record_loss, &full));
    assert_int_equal(full.n, 60);
    if (!(full.loss[59] < full.loss[0] - REQUIRED_DROP))
        fail_msg("full training did not learn: first loss %.4f, last %.4f", full.loss[0],
                 full.loss[59]);
    assert_false(road_model_full_training(m)); /* gradients freed at the end */
    float *trained = logits_of(m);
    const int64_t V = road_model_config(m)->vocab_size;
    road_model_free(m);
    /* the output folder is a model: it loads and computes what the trained model computed */
    TU_OK(road_model_load(path_in("run1"), &f32, &m));
    float *reloaded = logits_of(m);
    tu_assert_equal_f32("logits of the saved model", trained, reloaded, 5 * V);
    road_model_free(m);
    assert_int_equal(access(path_in("run1/best/model.safetensors"), F_OK), 0);
    assert_int_equal(access(path_in("run1/generation_config.json"), F_OK), 0);
    free(trained);
    free(reloaded);

    /* 12 steps straight vs 6, stop, resume to 12: the same losses bit for bit */
    TU_OK(road_model_load(base, &f32, &m));
    p = params(path_in("run2"));
    tu_loss_log a = {{0}, 0, 0};
    TU_OK(road_train(m, train, NULL, &p, tu_record_loss, &a));
    float *straight = logits_of(m);
    road_model_free(m);
    TU_OK(road_model_load(base, &f32, &m));
    p = params(path_in("run3"));
    tu_loss_log b = {{0}, 0, 6};
    TU_OK(road_train(m, train, NULL, &p, tu_record_loss, &b));
    assert_int_equal(b.n, 6);
    assert_int_equal(access(path_in("run3/checkpoint-6/model.safetensors"), F_OK), 0);
    road_model_free(m);
    TU_OK(road_model_load(base, &f32, &m));
    p.resume = true;
    TU_OK(road_train(m, train, NULL, &p, tu_record_loss, &b));
    assert_int_equal(b.n, STEPS);
    for (int i = 0; i < STEPS; i++)
        if (memcmp(&a.loss[i], &b.loss[i], sizeof(double)) != 0)
            fail_msg("step %d: loss %.9g uninterrupted, %.9g resumed", i + 1, a.loss[i], b.loss[i]);
    float *resumed = logits_of(m);
    tu_assert_equal_f32("logits after resume", straight, resumed, 5 * V);
    free(straight);
    free(resumed);
    road_model_free(m);

    /* an adapter checkpoint does not resume a full run, and the reverse */
    TU_OK(road_model_load(base, &f32, &m));
    road_optimizer *o;
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_group_size(cfg, 8));
    TU_OK(road_adapter_set_add(road_model_adapters(m), "x", cfg, 1));
    road_config_free(cfg);
    TU_OK(road_optimizer_create(road_model_adapters(m), NULL, 0, NULL, &o));
    TU_FAILS(road_checkpoint_load(o, path_in("run3/checkpoint-6"), NULL, NULL), ROAD_ERR_SHAPE,
             "full fine-tuning");
    road_optimizer_free(o);
    /* and full training with an active adapter is refused by the trainer */
    p = params(path_in("run4"));
    TU_FAILS(road_train(m, train, NULL, &p, NULL, NULL), ROAD_ERR_STATE, "adapter 'x'");
    road_model_free(m);
    road_dataset_free(train);
    road_dataset_free(eval);
}

static void test_save(void **state) {
    (void)state;
    road_model *m, *m2;
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-qwen2", &f32, &m));
    /* merged adapters are part of what is saved */
    road_adapter_set *set = road_model_adapters(m);
    TU_OK(road_adapter_set_load(set, "A", ROAD_FIXTURES "/llama/tiny-qwen2/adapters/A"));
    float *adapted = logits_of(m);
    TU_OK(road_adapter_set_merge(set, NULL, 0, true));
    const int64_t V = road_model_config(m)->vocab_size;
    TU_OK(road_model_save(m, path_in("saved32"), ROAD_DTYPE_F32));
    TU_OK(road_model_load(path_in("saved32"), NULL, &m2));
    float *again = logits_of(m2);
    tu_assert_close("merged model saved and loaded vs adapter", again, adapted, 5 * V, 1e-5, 1e-5);
    /* F32: every tensor bit-exact */
    for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
        road_model_tensor a, b;
        TU_OK(road_model_tensor_get(m, i, &a));
        TU_OK(road_model_tensor_get(m2, i, &b));
        assert_string_equal(a.name, b.name);
        tu_assert_equal_f32(a.name, a.param, b.param, a.n);
    }
    road_model_free(m2);
    cJSON *c = tu_load_json("llama/tiny-qwen2/config.json");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(c, "tie_word_embeddings")));
    cJSON_Delete(c);
    /* BF16: each value is the bf16 rounding of the float one; config says so */
    TU_OK(road_model_save(m, path_in("saved16"), ROAD_DTYPE_BF16));
    TU_OK(road_model_load(path_in("saved16"), NULL, &m2));
    for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
        road_model_tensor a, b;
        TU_OK(road_model_tensor_get(m, i, &a));
        TU_OK(road_model_tensor_get(m2, i, &b));
        for (int64_t k = 0; k < a.n; k++)
            if (road_bf16_to_f32(road_f32_to_bf16(a.param[k])) != b.param[k])
                fail_msg("%s[%lld]: %.9g saved as bf16 reads %.9g", a.name, (long long)k,
                         (double)a.param[k], (double)b.param[k]);
    }
    assert_int_equal(road_model_config(m2)->torch_dtype, ROAD_DTYPE_BF16);
    road_model_free(m2);
    /* refused dtype; a folder that cannot be written leaves the existing one as it was */
    TU_FAILS(road_model_save(m, path_in("saved8"), ROAD_DTYPE_I8), ROAD_ERR_UNSUPPORTED,
             "F32, BF16");
    FILE *f = fopen(path_in("afile"), "w");
    fclose(f);
    TU_FAILS(road_model_save(m, path_in("afile/sub"), ROAD_DTYPE_F32), ROAD_ERR_IO, "");
    TU_OK(road_model_load(path_in("saved32"), NULL, &m2));
    road_model_free(m2);
    road_model_free(m);
    free(adapted);
    free(again);
    /* a quantized model saves as float through the dequantizing writer: the float folder
     * computes what the quantized model computed (float rounding of another matmul path) */
    road_model_params mp = road_model_default_params();
    mp.quantize = ROAD_QFORMAT_NF4;
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-llama", &mp, &m));
    float *ql = logits_of(m);
    TU_FAILS(road_model_set_full_training(m, true), ROAD_ERR_UNSUPPORTED, "quantized");
    TU_OK(road_model_save(m, path_in("dequant"), ROAD_DTYPE_F32));
    TU_OK(road_model_load(path_in("dequant"), NULL, &m2));
    float *fl = logits_of(m2);
    tu_assert_close("float save of a quantized model", fl, ql, 5 * road_model_config(m)->vocab_size,
                    1e-4, 1e-4);
    free(ql);
    free(fl);
    road_model_free(m2);
    road_model_free(m);
}

static void test_init(void **state) {
    (void)state;
    const char *cfg = ROAD_FIXTURES "/llama/tiny-llama/config.json";
    TU_OK(road_model_init_folder(cfg, ROAD_FIXTURES "/llama/tiny-llama", 7, ROAD_DTYPE_F32,
                                 path_in("init7")));
    TU_OK(road_model_init_folder(cfg, NULL, 7, ROAD_DTYPE_F32, path_in("init7b")));
    TU_OK(road_model_init_folder(cfg, NULL, 8, ROAD_DTYPE_F32, path_in("init8")));
    road_model *a, *b, *c;
    TU_OK(road_model_load(path_in("init7"), NULL, &a));
    TU_OK(road_model_load(path_in("init7b"), NULL, &b));
    TU_OK(road_model_load(path_in("init8"), NULL, &c));
    assert_int_equal(access(path_in("init7/generation_config.json"), F_OK), 0);
    for (int32_t i = 0; i < road_model_tensor_count(a); i++) {
        road_model_tensor ta, tb, tc;
        TU_OK(road_model_tensor_get(a, i, &ta));
        TU_OK(road_model_tensor_get(b, i, &tb));
        TU_OK(road_model_tensor_get(c, i, &tc));
        tu_assert_equal_f32(ta.name, ta.param, tb.param, ta.n); /* same seed, same weights */
        if (ta.ndim == 1) {                                     /* norms */
            for (int64_t k = 0; k < ta.n; k++) assert_true(ta.param[k] == 1.0f);
            continue;
        }
        double s = 0, s2 = 0;
        for (int64_t k = 0; k < ta.n; k++)
            s += ta.param[k], s2 += (double)ta.param[k] * ta.param[k];
        const double mean = s / (double)ta.n, sd = sqrt(s2 / (double)ta.n - mean * mean);
        if (!(fabs(sd - 0.02) <= INIT_STD_TOL * 0.02) || !(fabs(mean) < 0.02 * 0.1))
            fail_msg("%s: mean %.3g, std %.4g; initializer_range is 0.02", ta.name, mean, sd);
        assert_true(memcmp(ta.param, tc.param, sizeof(float) * (size_t)ta.n) != 0);
    }
    road_model_free(a);
    road_model_free(b);
    road_model_free(c);
    TU_FAILS(road_model_init_folder(path_in("nope.json"), NULL, 1, ROAD_DTYPE_F32, path_in("x")),
             ROAD_ERR_NOT_FOUND, "nope.json");
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/road-full-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tu_rm_rf(tmp);
    return 0;
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grads_vs_pytorch),
        cmocka_unit_test(test_tensor_table),
        cmocka_unit_test(test_full_widens_stored),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_train_full),
        cmocka_unit_test(test_save),
        cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests_name("full", tests, setup, teardown);
}
