/*
 * tests/test_quant_model.c - quantized base weights in the Llama runtime (tests/fixtures/llama):
 *   - logits of tiny-llama (f32) and tiny-qwen2 (bf16, tied embeddings, biases) loaded with
 *     int8 / nf4 / fp4 (+ double quantization, + lm_head) against the float model: within
 *     bounds measured here and documented in docs/quant.md; memory smaller;
 *   - a RoAd adapter trained on a 4-bit base lowers the loss as on the float base;
 *   - merge / unmerge into quantized layers: a warning, outputs close to the unmerged ones;
 *   - saving quantized and loading back gives the same logits bit for bit; saving dequantized
 *     (float) gives the same logits to float32 noise; quantizing at save = quantizing at load;
 *   - malformed quantized checkpoints are refused with the tensor named;
 *   - int8 activations (road_model_params.int8_activations): decode logits near the exact
 *     kernels' (bound below), prefill untouched, the caller's kernel choice given back; refused
 *     at load on a CPU without AVX512-VNNI;
 *   - prefill through the AVX-512 GEMM equals the tiles + sgemm path to float32 noise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "quant/qcheckpoint.h"
#include "quant/quant_internal.h"
#include "testutil.h"

/* Bounds on max |logit_quantized - logit_float| / max |logit_float| over the valid positions
 * of the fixture batch (3 x 9), measured on this tree (docs/quant.md, "Accuracy"), 2x margin
 * over the worst measured case of each format: int8 0.012 (tiny-llama with lm_head), nf4
 * 0.152, fp4 0.246 (same). Random weights of a 2-layer model with hidden size 64 are a harsh
 * case (nothing averages out); the bounds still catch a broken format (a wrong code table or
 * nibble order scrambles weights: errors of order 1). */
#define INT8_LOGIT_REL 0.025
#define NF4_LOGIT_REL 0.30
#define FP4_LOGIT_REL 0.50
#define Q4_LOGIT_REL NF4_LOGIT_REL
/* Merging into a 4-bit layer rounds the weights again: the merged model is another
 * quantization of the same merged weights, so its logits stay within the nf4 bound of the
 * unmerged (float-rotated) outputs (measured 0.108). */
#define MERGE_LOGIT_REL Q4_LOGIT_REL
/* Saving dequantized float32 weights and computing with sgemm instead of the fused kernels:
 * float32 summation-order noise (tests/fixtures/llama/README.md's logit tolerance). */
#define FLOAT_SAVE_ATOL 1e-5
/* Training: SGD steps on adapter B (tiny-llama's fixture adapter) lower the loss on the 4-bit
 * base by at least this fraction of what they do on the float base (measured: 1.03). */
#define TRAIN_STEPS 10
#define TRAIN_LR 0.5f
#define TRAIN_MIN_RATIO 0.6
/* int8 activations vs the exact kernels on the same quantized model, decode of 8 tokens and a
 * prefill of PREFILL_T (all positions' logits): max |difference| / max |logit|. x rounded to int8
 * per block of 64 (relative error up to 1/254 of the block's max) and, for 4-bit, the code table
 * rounded to int8 steps: measured 0.005-0.013 on these models (docs/quant.md); 3x margin. */
#define Q8_ACT_LOGIT_REL 0.04
/* Tokens of the int8-activation prefill check: past QSKINNY_MAX_ROWS (16), so the prefill GEMM,
 * and not a multiple of its 4-row register block. */
#define PREFILL_T 27

typedef struct batch {
    road_st_file *cases;
    const int64_t *ids, *mask, *labels;
    int64_t B, T;
} batch;

static void batch_open(batch *b, const char *model) {
    char rel[256];
    snprintf(rel, sizeof rel, "llama/%s/cases.safetensors", model);
    b->cases = tu_open_golden(rel);
    const road_st_tensor *t = road_st_find(b->cases, "inputs.input_ids");
    assert_non_null(t);
    b->B = t->shape[0];
    b->T = t->shape[1];
    b->ids = t->data;
    b->mask = road_st_find(b->cases, "inputs.attention_mask")->data;
    b->labels = road_st_find(b->cases, "inputs.labels")->data;
}

static const char *model_dir(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/llama/%s", ROAD_FIXTURES, name);
    return dir;
}

static road_model *load(const char *dir, road_qformat f, bool dq, bool head) {
    road_model_params p = road_model_default_params();
    p.quantize = f;
    p.double_quant = dq;
    p.quantize_lm_head = head;
    road_model *m = NULL;
    TU_OK(road_model_load(dir, &p, &m));
    return m;
}

static float *logits(road_model *m, const batch *b) {
    const int64_t V = road_model_config(m)->vocab_size;
    float *y = tu_alloc(sizeof(float) * (size_t)(b->B * b->T * V));
    TU_OK(road_model_forward_padded(m, b->ids, b->mask, b->B, b->T, NULL, y));
    return y;
}

/* max |a - b| / max |ref| over the valid positions. */
static double rel_err(const float *a, const float *ref, const batch *b, int64_t V) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < b->B * b->T; i++) {
        if (!b->mask[i]) continue;
        for (int64_t v = 0; v < V; v++) {
            num = fmax(num, fabs((double)a[i * V + v] - ref[i * V + v]));
            den = fmax(den, fabs((double)ref[i * V + v]));
        }
    }
    return num / den;
}

static void test_logits_within_bounds(void **state) {
    (void)state;
    const char *models[] = {"tiny-llama", "tiny-qwen2"};
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4, ROAD_QFORMAT_FP4};
    for (int mi = 0; mi < 2; mi++) {
        batch b;
        batch_open(&b, models[mi]);
        road_model *mf = load(model_dir(models[mi]), ROAD_QFORMAT_NONE, false, false);
        const int64_t V = road_model_config(mf)->vocab_size;
        float *ref = logits(mf, &b);
        assert_int_equal(road_model_quantized_layers(mf, NULL), 0);
        for (int fi = 0; fi < 3; fi++)
            for (int variant = 0; variant < 3; variant++) {
                const bool dq = variant == 1, head = variant == 2;
                road_model *mq = load(model_dir(models[mi]), fmts[fi], dq, head);
                road_qformat got;
                const int32_t nq = road_model_quantized_layers(mq, &got);
                assert_int_equal(got, fmts[fi]);
                assert_int_equal(nq, 2 * 7 + (head ? 1 : 0));
                assert_true(road_model_weight_bytes(mq) < road_model_weight_bytes(mf));
                float *y = logits(mq, &b);
                const double e = rel_err(y, ref, &b, V);
                const double bound = fmts[fi] == ROAD_QFORMAT_INT8  ? INT8_LOGIT_REL
                                     : fmts[fi] == ROAD_QFORMAT_NF4 ? NF4_LOGIT_REL
                                                                    : FP4_LOGIT_REL;
                print_message("%s %s%s%s: max logit error %.4f of max |logit| (bound %.3f), "
                              "weights %lld -> %lld bytes\n",
                              models[mi], road_qformat_name(fmts[fi]), dq ? "+dq" : "",
                              head ? "+lm_head" : "", e, bound,
                              (long long)road_model_weight_bytes(mf),
                              (long long)road_model_weight_bytes(mq));
                assert_true(e <= bound);
                assert_true(e > 0.0); /* it did quantize */
                free(y);
                road_model_free(mq);
            }
        free(ref);
        road_model_free(mf);
        road_st_close(b.cases);
    }
}

/* SGD on adapter B's parameters for TRAIN_STEPS steps; returns first and last loss. */
static void train(road_model *m, const batch *b, double *first, double *last) {
    road_adapter_set *set = road_model_adapters(m);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/adapters/B", model_dir("tiny-llama"));
    TU_OK(road_adapter_set_load(set, "B", dir));
    const char *act[] = {"B"};
    TU_OK(road_adapter_set_set_active(set, act, 1));
    road_adapter_set_train(set, true);
    for (int step = 0; step < TRAIN_STEPS; step++) {
        for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
            road_linear *l = road_adapter_set_layer(set, i);
            if (l) road_linear_zero_grads(l);
        }
        double loss = 0;
        TU_OK(road_model_loss_backward(m, b->ids, b->mask, b->labels, b->B, b->T, &loss));
        if (step == 0) *first = loss;
        *last = loss;
        for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
            road_linear *l = road_adapter_set_layer(set, i);
            if (!l || !road_linear_has_adapter(l, "B")) continue;
            float *th, *al, *dth, *dal;
            int64_t n;
            TU_OK(road_linear_adapter_params(l, "B", &th, &al, &n));
            TU_OK(road_linear_adapter_grads(l, "B", &dth, &dal, &n));
            for (int64_t k = 0; k < n; k++) {
                th[k] -= TRAIN_LR * dth[k];
                al[k] -= TRAIN_LR * dal[k];
            }
            TU_OK(road_linear_params_changed(l, "B"));
        }
    }
}

static void test_training_on_4bit(void **state) {
    (void)state;
    batch b;
    batch_open(&b, "tiny-llama");
    double f0, f1, q0, q1;
    road_model *mf = load(model_dir("tiny-llama"), ROAD_QFORMAT_NONE, false, false);
    train(mf, &b, &f0, &f1);
    road_model *mq = load(model_dir("tiny-llama"), ROAD_QFORMAT_NF4, true, false);
    train(mq, &b, &q0, &q1);
    print_message("loss float %.5f -> %.5f, nf4+dq %.5f -> %.5f\n", f0, f1, q0, q1);
    assert_true(f1 < f0);
    assert_true(q1 < q0);
    assert_true((q0 - q1) >= TRAIN_MIN_RATIO * (f0 - f1));
    road_model_free(mf);
    road_model_free(mq);
    road_st_close(b.cases);
}

static int warnings;
static void count_warn(road_log_level level, const char *msg, void *user) {
    (void)user;
    if (level == ROAD_LOG_WARN && strstr(msg, "quantized")) warnings++;
}

static char root[256];

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "/tmp/road_test_quant_model_XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tu_rm_rf(root);
    return 0;
}

static void test_merge_save_reload(void **state) {
    (void)state;
    batch b;
    batch_open(&b, "tiny-llama");
    road_model *m = load(model_dir("tiny-llama"), ROAD_QFORMAT_NF4, true, false);
    const int64_t V = road_model_config(m)->vocab_size;
    road_adapter_set *set = road_model_adapters(m);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/adapters/A", model_dir("tiny-llama"));
    TU_OK(road_adapter_set_load(set, "A", dir));
    const char *act[] = {"A"};
    TU_OK(road_adapter_set_set_active(set, act, 1));
    float *unmerged = logits(m, &b);
    warnings = 0;
    road_log_set_callback(count_warn, NULL);
    TU_OK(road_adapter_set_merge(set, NULL, 0, true));
    assert_true(warnings > 0);
    float *merged = logits(m, &b);
    const double e = rel_err(merged, unmerged, &b, V);
    print_message("merge into nf4: logits move %.4f of max |logit| (bound %.3f)\n", e,
                  MERGE_LOGIT_REL);
    assert_true(e <= MERGE_LOGIT_REL);

    /* save quantized (as it is: merged, requantized) and load back: the same tensors */
    char qdir[300], fdir[300];
    snprintf(qdir, sizeof qdir, "%s/nf4", root);
    snprintf(fdir, sizeof fdir, "%s/f32", root);
    TU_OK(road_model_save_quantized(m, qdir, ROAD_DTYPE_F32, ROAD_QFORMAT_NF4, true, false));
    road_model *r = load(qdir, ROAD_QFORMAT_NONE, false, false);
    road_qformat f;
    assert_int_equal(road_model_quantized_layers(r, &f), 14);
    assert_int_equal(f, ROAD_QFORMAT_NF4);
    float *again = logits(r, &b);
    tu_assert_equal_f32("reloaded nf4 logits", again, merged, b.B * b.T * V);
    /* the loaded tensors borrow the file mapping; merging writes into it (copy-on-write) */
    snprintf(dir, sizeof dir, "%s/adapters/C", model_dir("tiny-llama"));
    TU_OK(road_adapter_set_load(road_model_adapters(r), "C", dir));
    TU_OK(road_adapter_set_merge(road_model_adapters(r), NULL, 0, false));
    road_model_free(r);

    /* save dequantized as float32: the same logits up to summation order */
    TU_OK(road_model_save_quantized(m, fdir, ROAD_DTYPE_F32, ROAD_QFORMAT_NONE, false, false));
    r = load(fdir, ROAD_QFORMAT_NONE, false, false);
    assert_int_equal(road_model_quantized_layers(r, NULL), 0);
    float *fl = logits(r, &b);
    for (int64_t i = 0; i < b.B * b.T; i++)
        if (b.mask[i])
            tu_assert_close("float-saved logits", fl + i * V, merged + i * V, V, FLOAT_SAVE_ATOL,
                            0);
    road_model_free(r);
    road_log_set_callback(NULL, NULL);
    TU_OK(road_adapter_set_unmerge(set));
    float *back = logits(m, &b);
    road_model_free(m);

    /* quantizing at save (int8, bf16 rest) = quantizing at load from the same float weights */
    road_model *mf = load(model_dir("tiny-llama"), ROAD_QFORMAT_NONE, false, false);
    snprintf(qdir, sizeof qdir, "%s/int8", root);
    TU_OK(road_model_save_quantized(mf, qdir, ROAD_DTYPE_F32, ROAD_QFORMAT_INT8, false, false));
    road_model *a = load(qdir, ROAD_QFORMAT_NONE, false, false);
    road_model *c = load(model_dir("tiny-llama"), ROAD_QFORMAT_INT8, false, false);
    float *ya = logits(a, &b), *yc = logits(c, &b);
    tu_assert_equal_f32("int8 saved vs loaded", ya, yc, b.B * b.T * V);
    road_model_free(a);
    road_model_free(c);
    road_model_free(mf);
    free(ya);
    free(yc);
    free(unmerged);
    free(merged);
    free(again);
    free(fl);
    free(back);
    road_st_close(b.cases);
}

/* Quantizing a base leaves the embedding in its stored type (bitsandbytes quantizes linear
 * layers only): tiny-qwen2's bf16 table stays bf16, 2 bytes an entry, and its tied lm_head
 * runs on that same array unless quantize_lm_head gives the head a quantized copy of its own;
 * tiny-llama's f32 table stays f32. Saved quantized with bf16 float tensors and loaded back,
 * the bf16 base computes what it computed, bit for bit. */
static void test_embedding_stays_stored(void **state) {
    (void)state;
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4};
    for (int fi = 0; fi < 2; fi++)
        for (int head = 0; head < 2; head++) {
            road_model *m = load(model_dir("tiny-qwen2"), fmts[fi], false, head);
            const road_llm_config *c = road_model_config(m);
            int64_t bytes = 0;
            assert_int_equal(road_model_embedding_format(m, &bytes), ROAD_QFORMAT_BF16);
            assert_int_equal(bytes, 2 * c->vocab_size * c->hidden_size);
            road_adapter_set *s = road_model_adapters(m);
            const road_qtensor *qe = NULL, *qh = NULL;
            TU_OK(road_adapter_set_base_weight(
                s, road_adapter_set_find_layer(s, "model.embed_tokens"), NULL, &qe));
            TU_OK(road_adapter_set_base_weight(s, road_adapter_set_find_layer(s, "lm_head"), NULL,
                                               &qh));
            assert_non_null(qe);
            assert_non_null(qh);
            if (head) {
                assert_true(qh != qe);
                assert_int_equal(qh->format, fmts[fi]);
            } else {
                assert_ptr_equal(qh, qe); /* tied: one array */
            }
            road_model_free(m);
        }
    road_model *mf = load(model_dir("tiny-llama"), ROAD_QFORMAT_NF4, false, false);
    assert_int_equal(road_model_embedding_format(mf, NULL), ROAD_QFORMAT_NONE);
    road_model_free(mf);

    batch b;
    batch_open(&b, "tiny-qwen2");
    road_model *m = load(model_dir("tiny-qwen2"), ROAD_QFORMAT_NF4, true, false);
    const int64_t V = road_model_config(m)->vocab_size;
    float *y = logits(m, &b);
    char qdir[300];
    snprintf(qdir, sizeof qdir, "%s/qwen2-nf4-bf16", root);
    TU_OK(road_model_save_quantized(m, qdir, ROAD_DTYPE_BF16, ROAD_QFORMAT_NF4, true, false));
    road_model *r = load(qdir, ROAD_QFORMAT_NONE, false, false);
    assert_int_equal(road_model_embedding_format(r, NULL), ROAD_QFORMAT_BF16);
    assert_true(road_model_config(r)->tie_word_embeddings);
    assert_int_equal(road_model_weight_bytes(r), road_model_weight_bytes(m));
    float *again = logits(r, &b);
    tu_assert_equal_f32("nf4 + bf16 embedding, saved and loaded", again, y, b.B * b.T * V);
    free(y);
    free(again);
    road_model_free(r);
    road_model_free(m);
    road_st_close(b.cases);
}

/* ---- malformed checkpoints ------------------------------------------------------------------ */

static const road_st_tensor *find_in(void *ctx, const char *name) {
    return road_st_find(ctx, name);
}

/* Write q under "L" with one part changed by `mutate`, read it back. */
static road_status roundtrip(const road_qtensor *q, int mutate) {
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    TU_OK(road__qckpt_write(w, "L", q, "float32"));
    const float bad[16] = {NAN};
    const int64_t s16[1] = {16}, s3[1] = {3};
    if (mutate == 1)
        TU_OK(road_st_writer_add(w, "L.weight.quant_map_", ROAD_DTYPE_F32, 1, s16, bad));
    char path[300];
    snprintf(path, sizeof path, "%s/q%d.safetensors", root, mutate);
    if (mutate == 2) {
        /* a second file with the quant_map NaN and a short absmax */
        road_st_writer_free(w);
        TU_OK(road_st_writer_create(&w));
        const int64_t ws[2] = {q->rows * q->cols / 2, 1};
        TU_OK(road_st_writer_add(w, "L.weight", ROAD_DTYPE_U8, 2, ws, q->data));
        TU_OK(road_st_writer_add(w, "L.weight.absmax", ROAD_DTYPE_F32, 1, s3, q->absmax));
        TU_OK(road_st_writer_add(w, "L.weight.quant_map", ROAD_DTYPE_F32, 1, s16, bad));
        const char js[] = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [4, 64]}";
        const int64_t sj[1] = {(int64_t)strlen(js)};
        TU_OK(road_st_writer_add(w, "L.weight.quant_state.bitsandbytes__nf4", ROAD_DTYPE_U8, 1, sj,
                                 js));
    }
    if (mutate == 3) {
        road_st_writer_free(w);
        TU_OK(road_st_writer_create(&w));
        const int64_t ws[2] = {q->rows * q->cols / 2, 1}, sb[1] = {q->n_blocks};
        TU_OK(road_st_writer_add(w, "L.weight", ROAD_DTYPE_U8, 2, ws, q->data));
        TU_OK(road_st_writer_add(w, "L.weight.absmax", ROAD_DTYPE_F32, 1, sb, q->absmax));
        TU_OK(road_st_writer_add(w, "L.weight.quant_map", ROAD_DTYPE_F32, 1, s16, q->code));
        const char js[] = "{\"quant_type\": \"nf4\", \"blocksize\": 128, \"shape\": [4, 64]}";
        const int64_t sj[1] = {(int64_t)strlen(js)};
        TU_OK(road_st_writer_add(w, "L.weight.quant_state.bitsandbytes__nf4", ROAD_DTYPE_U8, 1, sj,
                                 js));
    }
    TU_OK(road_st_writer_save(w, path));
    road_st_writer_free(w);
    road_st_file *f = NULL;
    TU_OK(road_st_open(path, &f));
    road_qtensor *r = NULL;
    road_status s = road__qckpt_read(find_in, f, "L", q->rows, q->cols, &r);
    if (s == ROAD_OK) {
        float a[256], b2[256];
        TU_OK(road_qtensor_dequantize_rows(q, 0, q->rows, a));
        TU_OK(road_qtensor_dequantize_rows(r, 0, r->rows, b2));
        tu_assert_equal_f32("read back", b2, a, q->rows * q->cols);
    }
    road_qtensor_free(r);
    road_st_close(f);
    return s;
}

/* Logits of one sequence of n tokens through a fresh KV cache (n rows: the decode kernels). */
static float *decode_logits(road_model *m, const int32_t *ids, int64_t n) {
    const int64_t V = road_model_config(m)->vocab_size;
    road_kv_cache *kv = NULL;
    TU_OK(road_kv_cache_create(m, n, &kv));
    float *y = tu_alloc(sizeof(float) * (size_t)V);
    road_seq s = {ids, n, kv, NULL, false};
    TU_OK(road_model_forward(m, &s, 1, y));
    road_kv_cache_free(kv);
    return y;
}

static void test_int8_activations(void **state) {
    (void)state;
    road_model_params p = road_model_default_params();
    p.quantize = ROAD_QFORMAT_NF4;
    p.int8_activations = true;
    road_model *m = NULL;
    if (!road__cpu_has_avx512_vnni()) {
        assert_int_equal(road_model_load(model_dir("tiny-qwen2"), &p, &m), ROAD_ERR_UNSUPPORTED);
        assert_non_null(strstr(road_last_error(), "AVX512-VNNI"));
        print_message("int8 activations: this CPU has no AVX512-VNNI; the refusal was tested\n");
        return;
    }
    const int32_t ids[8] = {5, 17, 3, 42, 9, 11, 2, 30};
    const char *models[] = {"tiny-llama", "tiny-qwen2"};
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4, ROAD_QFORMAT_FP4};
    for (int mi = 0; mi < 2; mi++)
        for (int fi = 0; fi < 3; fi++) {
            road_model *exact = load(model_dir(models[mi]), fmts[fi], false, true);
            p.quantize = fmts[fi];
            p.quantize_lm_head = true;
            TU_OK(road_model_load(model_dir(models[mi]), &p, &m));
            const int64_t V = road_model_config(m)->vocab_size;
            /* the caller's choice (AVX2 here) is used by exact and given back by m */
            TU_OK(road_qkernel_select(ROAD_QKERNEL_AVX2));
            float *ref = decode_logits(exact, ids, 8);
            float *y = decode_logits(m, ids, 8);
            assert_string_equal(road__qkernels_current()->name, road__qkernels_avx2.name);
            TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
            double num = 0, den = 0;
            for (int64_t v = 0; v < V; v++) {
                num = fmax(num, fabs((double)y[v] - ref[v]));
                den = fmax(den, fabs((double)ref[v]));
            }
            print_message("%s %s int8 activations: max logit difference %.4f of max |logit| "
                          "(bound %.2f)\n",
                          models[mi], road_qformat_name(fmts[fi]), num / den, Q8_ACT_LOGIT_REL);
            assert_true(num / den <= Q8_ACT_LOGIT_REL);
            assert_true(num > 0.0); /* the int8 path ran */
            free(ref);
            free(y);
            /* prefill: PREFILL_T rows through every linear layer, the int8 GEMM (rows > 16)
             * for those with in features % 64 == 0, the exact kernels for the rest */
            int64_t pids[PREFILL_T], pmask[PREFILL_T];
            for (int64_t t = 0; t < PREFILL_T; t++) pids[t] = (t * 37 + 5) % V, pmask[t] = 1;
            float *pref = tu_alloc(sizeof(float) * (size_t)(PREFILL_T * V));
            float *py = tu_alloc(sizeof(float) * (size_t)(PREFILL_T * V));
            TU_OK(road_model_forward_padded(exact, pids, pmask, 1, PREFILL_T, NULL, pref));
            TU_OK(road_model_forward_padded(m, pids, pmask, 1, PREFILL_T, NULL, py));
            num = 0, den = 0;
            for (int64_t i = 0; i < PREFILL_T * V; i++) {
                num = fmax(num, fabs((double)py[i] - pref[i]));
                den = fmax(den, fabs((double)pref[i]));
            }
            print_message("%s %s int8 activations, prefill of %d: max logit difference %.4f of "
                          "max |logit| (bound %.2f)\n",
                          models[mi], road_qformat_name(fmts[fi]), PREFILL_T, num / den,
                          Q8_ACT_LOGIT_REL);
            assert_true(num / den <= Q8_ACT_LOGIT_REL);
            assert_true(num > 0.0);
            free(pref);
            free(py);
            road_model_free(m);
            road_model_free(exact);
        }
}

/* Prefill through the AVX-512 GEMM (qgemm_avx512.c, under the AVX-512 kernel) against the
 * dequantized tiles + sgemm path (under AVX2): tiny-qwen2's bf16 weights as stored and
 * quantized (int8, nf4), the fixture batch (27 rows: the many-row path). Both are exact
 * products summed in float32 in different orders: float32 noise (FLOAT_SAVE_ATOL). */
static void test_prefill_gemm_vs_sgemm(void **state) {
    (void)state;
    if (!road__cpu_has_avx512()) {
        print_message("prefill gemm: this CPU has no AVX-512; skipped\n");
        skip();
    }
    batch b;
    batch_open(&b, "tiny-qwen2");
    const road_qformat fmts[] = {ROAD_QFORMAT_NONE, ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4};
    for (int fi = 0; fi < 3; fi++) {
        road_model *m =
            load(model_dir("tiny-qwen2"), fmts[fi], false, fmts[fi] != ROAD_QFORMAT_NONE);
        const int64_t V = road_model_config(m)->vocab_size;
        TU_OK(road_qkernel_select(ROAD_QKERNEL_AVX2));
        float *ref = logits(m, &b);
        TU_OK(road_qkernel_select(ROAD_QKERNEL_AVX512));
        float *y = logits(m, &b);
        TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
        double num = 0;
        for (int64_t i = 0; i < b.B * b.T; i++)
            if (b.mask[i])
                for (int64_t v = 0; v < V; v++)
                    num = fmax(num, fabs((double)y[i * V + v] - ref[i * V + v]));
        print_message("tiny-qwen2 %s: prefill logits, AVX-512 GEMM vs tiles + sgemm: max "
                      "difference %.3g (bound %.0e)\n",
                      fmts[fi] == ROAD_QFORMAT_NONE ? "bf16" : road_qformat_name(fmts[fi]), num,
                      FLOAT_SAVE_ATOL);
        tu_assert_close("prefill gemm vs sgemm", y, ref, b.B * b.T * V, FLOAT_SAVE_ATOL, 0.0);
        free(ref);
        free(y);
        road_model_free(m);
    }
    road_st_close(b.cases);
}

static void test_checkpoint_parts(void **state) {
    (void)state;
    float w[4 * 64];
    tu_fill_uniform(w, 4 * 64, 9, -1, 1);
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4, ROAD_QFORMAT_FP4};
    for (int i = 0; i < 3; i++)
        for (int dq = 0; dq < 2; dq++) {
            road_qtensor *q = NULL;
            TU_OK(road_qtensor_quantize(fmts[i], 4, 64, w, dq, &q));
            TU_OK(roundtrip(q, 0));
            road_qtensor_free(q);
        }
    road_qtensor *q = NULL;
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_NF4, 4, 64, w, false, &q));
    TU_OK(roundtrip(q, 1)); /* an extra tensor is ignored */
    TU_FAILS(roundtrip(q, 2), ROAD_ERR_FORMAT, "L.weight.absmax");
    TU_FAILS(roundtrip(q, 3), ROAD_ERR_UNSUPPORTED, "blocksize");
    road_qtensor_free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_within_bounds),   cmocka_unit_test(test_training_on_4bit),
        cmocka_unit_test(test_embedding_stays_stored), cmocka_unit_test(test_merge_save_reload),
        cmocka_unit_test(test_checkpoint_parts),       cmocka_unit_test(test_int8_activations),
        cmocka_unit_test(test_prefill_gemm_vs_sgemm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
