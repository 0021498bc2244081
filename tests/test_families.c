/*
 * tests/test_families.c - every model family trains and runs on a quantized base, on the eight
 * fixture checkpoints of tests/fixtures/llama (llama, qwen2, llama3 RoPE, qwen3, gemma2,
 * gemma3_text, phi3, olmo2; family_common.h):
 *   - RoAd training: road_train with a fresh all-linear adapter (phi3: groups of 32 that
 *     straddle k/v and gate/up) lowers the loss of held-out examples of a learnable pattern; a
 *     run stopped at its checkpoint and resumed gives the uninterrupted run's losses and final
 *     logits bit for bit; the saved PEFT folder loads back to the same logits;
 *   - full fine-tuning: the gradient of one or two norm weights per family (q/k norms, gemma's
 *     (1 + w) norms, sandwich and post norms) against a central finite difference of the loss
 *     along a +-1 direction; every gradient the same bit for bit with recomputation; one AdamW
 *     step over every weight lowers the loss; road_train --full resumed from its checkpoint
 *     gives the uninterrupted run's losses and logits bit for bit;
 *   - quantized bases (int8, nf4, nf4 + double quantization): the logits equal those of the
 *     float model whose linear weights are replaced by their quantize-dequantize round trip
 *     (road's quantized matmuls are weight-only, so this is the exact reference up to summation
 *     order), and an AdamW step of a RoAd adapter on the quantized base lowers the loss;
 *   - loading qwen3, gemma2, gemma3, phi3, olmo2 (float and nf4) with each allocation failing in
 *     turn: no_memory every time, nothing leaked;
 *   - road_model_init_folder (road init) on each family's config.json: a folder that loads with
 *     the family's tensors, norms initialised as transformers does (1, or 0 for Gemma's (1 + w)).
 * Merging, saving and serving mixed batches per family are in test_families_serve.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "family_common.h"

/* Training data: the pattern task of testutil (each token the previous + 7 mod 64). */
#define N_TRAIN 32
#define N_EVAL 8
#define SEQ 12
/* Uninterrupted run; the interrupted one stops (and checkpoints) at STOP_AT, then resumes. */
#define STEPS 12
#define STOP_AT 6
#define TRAIN_LR 5e-2
/* 12 AdamW steps at lr 5e-2 on an all-linear adapter lower the held-out loss of the pattern by
 * 0.18 (tiny-qwen2) to 1.14 (tiny-gemma2) from about log(320) = 5.8 on this tree; about half
 * the smallest drop is a clear "it learns" (training is deterministic: no noise to allow for). */
#define REQUIRED_DROP 0.08
/* Finite differences: central, step h along a +-1 direction over a whole norm weight (a few
 * dozen elements). The loss is computed in float32 (|loss| ~ 6: rounding ~ 1e-6, i.e. ~5e-5 in
 * the quotient at h = 1e-2); the h^2 term is small for a smooth function of a norm scale.
 * Allowed: FD_RTOL of the larger of the two values plus FD_ATOL (observed: at most 1.3e-3 of
 * the value, tiny-olmo2's q_norm). */
#define FD_H 1e-2
#define FD_RTOL 1e-2
#define FD_ATOL 2e-4
/* One full-training AdamW step (every weight moves by about lr) must lower the batch loss. */
#define FULL_LR 1e-3
/* road_train --full: straight run and where the interrupted one stops. */
#define FULL_STEPS 4
#define FULL_STOP_AT 2
/* Quantized model vs float model with dequantized weights: the same products in another
 * order (fused dequantize-dot kernels for decode, dequantized tiles times sgemm for prefill);
 * the fixture README's float32 logit tolerance. */
#define QUANT_REF_ATOL FAM_LOGIT_ATOL
#define QUANT_LR 1e-2
/* Allocation-failure loop: more attempts than one load makes allocations. */
#define OOM_MAX_STEPS 5000

static road_dataset *train_set, *eval_set;

static int setup(void **state) {
    (void)state;
    if (tu_scratch_make("test_families") != 0) return -1;
    road_data_params dp = road_data_default_params();
    dp.max_len = SEQ;
    tu_write_pattern_task(tu_scratch_at("train.jsonl"), N_TRAIN, SEQ, 1);
    tu_write_pattern_task(tu_scratch_at("eval.jsonl"), N_EVAL, SEQ, 3);
    if (road_dataset_load_jsonl(tu_scratch_at("train.jsonl"), &dp, &train_set) != ROAD_OK ||
        road_dataset_load_jsonl(tu_scratch_at("eval.jsonl"), &dp, &eval_set) != ROAD_OK)
        return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    road_dataset_free(train_set);
    road_dataset_free(eval_set);
    return tu_scratch_remove();
}

/* ---- RoAd training, resume ------------------------------------------------------------------ */

/* The held-out examples as one unpadded batch (all SEQ long): loss and logits. */
static double eval_loss(road_model *m, float **logits_out) {
    const int64_t B = road_dataset_count(eval_set), T = SEQ;
    const int64_t V = road_model_config(m)->vocab_size;
    int64_t *ids = tu_alloc(sizeof(int64_t) * (size_t)(B * T));
    int64_t *lab = tu_alloc(sizeof(int64_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B; i++) {
        const road_token *x, *l;
        int64_t n;
        TU_OK(road_dataset_example(eval_set, i, &x, &l, &n));
        assert_int_equal(n, T);
        for (int64_t t = 0; t < T; t++) ids[i * T + t] = x[t], lab[i * T + t] = l[t];
    }
    float *y = tu_alloc(sizeof(float) * (size_t)(B * T * V));
    TU_OK(road_model_forward_padded(m, ids, NULL, B, T, NULL, y));
    double loss = 0;
    TU_OK(road_causal_lm_loss(y, lab, NULL, B, T, V, &loss));
    free(ids);
    free(lab);
    if (logits_out)
        *logits_out = y;
    else
        free(y);
    return loss;
}

static road_train_params train_params(const char *out) {
    road_train_params p = road_train_default_params();
    p.adamw.lr = TRAIN_LR;
    p.adamw.weight_decay = 0.01;
    p.batch_size = 4;
    p.grad_accum = 2;
    p.max_steps = STEPS;
    p.save_every = STOP_AT;
    p.max_grad_norm = 1.0;
    p.out_dir = out;
    p.seed = 11;
    return p;
}

static road_model *with_adapter(const char *name) {
    road_model *m = fam_load(name, ROAD_QFORMAT_NONE);
    fam_add_adapter(m, "task", ROAD_VARIANT_2, fam_group(name));
    return m;
}

static void test_train_and_resume(void **state) {
    (void)state;
    for (int f = 0; f < FAM_N; f++) {
        const char *name = fam_list[f].name;
        char out[3][300];
        for (int k = 0; k < 3; k++)
            snprintf(out[k], sizeof out[k], "%s/%s-run%d", tu_scratch_root(), name, k);

        /* uninterrupted; it learns */
        road_model *m = with_adapter(name);
        const int64_t V = road_model_config(m)->vocab_size;
        const double before = eval_loss(m, NULL);
        road_train_params p = train_params(out[0]);
        tu_loss_log a = {{0}, 0, 0};
        TU_OK(road_train(m, train_set, NULL, &p, tu_record_loss, &a));
        assert_int_equal(a.n, STEPS);
        float *straight = NULL;
        const double after = eval_loss(m, &straight);
        print_message("%s: held-out loss %.4f -> %.4f after %d steps (train %.4f -> %.4f)\n", name,
                      before, after, STEPS, a.loss[0], a.loss[STEPS - 1]);
        if (!(after < before - REQUIRED_DROP))
            fail_msg("%s: training did not learn: held-out loss %.5f before, %.5f after", name,
                     before, after);
        road_model_free(m);

        /* stopped at STOP_AT (checkpoint), then resumed in a fresh model */
        m = with_adapter(name);
        p = train_params(out[1]);
        tu_loss_log b = {{0}, 0, STOP_AT};
        TU_OK(road_train(m, train_set, NULL, &p, tu_record_loss, &b));
        assert_int_equal(b.n, STOP_AT);
        road_model_free(m);
        m = with_adapter(name);
        p.resume = true;
        TU_OK(road_train(m, train_set, NULL, &p, tu_record_loss, &b));
        assert_int_equal(b.n, STEPS);
        for (int i = 0; i < STEPS; i++)
            if (memcmp(&a.loss[i], &b.loss[i], sizeof(double)) != 0)
                fail_msg("%s: step %d: loss %.9g uninterrupted, %.9g resumed", name, i + 1,
                         a.loss[i], b.loss[i]);
        float *resumed = NULL;
        (void)eval_loss(m, &resumed);
        char what[128];
        snprintf(what, sizeof what, "%s: held-out logits, resumed vs uninterrupted", name);
        tu_assert_equal_f32(what, resumed, straight, N_EVAL * SEQ * V);
        road_model_free(m);

        /* the saved adapter is a PEFT folder that loads back and computes what training left */
        m = fam_load(name, ROAD_QFORMAT_NONE);
        char adir[320];
        snprintf(adir, sizeof adir, "%s/task", out[0]);
        TU_OK(road_adapter_set_load(road_model_adapters(m), "task", adir));
        const char *act[1] = {"task"};
        TU_OK(road_adapter_set_set_active(road_model_adapters(m), act, 1));
        float *loaded = NULL;
        (void)eval_loss(m, &loaded);
        snprintf(what, sizeof what, "%s: held-out logits, saved adapter vs trained", name);
        tu_assert_equal_f32(what, loaded, straight, N_EVAL * SEQ * V);
        road_model_free(m);
        free(straight);
        free(resumed);
        free(loaded);
        for (int k = 0; k < 2; k++) tu_rm_rf(out[k]);
    }
}

/* ---- full fine-tuning ------------------------------------------------------------------------ */

static int32_t tensor_index(road_model *m, const char *name) {
    for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
        road_model_tensor t;
        TU_OK(road_model_tensor_get(m, i, &t));
        if (strcmp(t.name, name) == 0) return i;
    }
    fail_msg("no tensor named %s", name);
    return -1;
}

/* d loss / d w along u (+-1 entries), by central differences; w is restored bit for bit. */
static double fd_directional(road_model *m, const fam_batch *b, float *w, const float *u,
                             int64_t n) {
    float *keep = tu_alloc(sizeof(float) * (size_t)n);
    memcpy(keep, w, sizeof(float) * (size_t)n);
    for (int64_t k = 0; k < n; k++) w[k] = keep[k] + (float)FD_H * u[k];
    const double up = fam_loss(m, b);
    for (int64_t k = 0; k < n; k++) w[k] = keep[k] - (float)FD_H * u[k];
    const double down = fam_loss(m, b);
    memcpy(w, keep, sizeof(float) * (size_t)n);
    free(keep);
    return (up - down) / (2 * FD_H);
}

/* road_train --full: FULL_STEPS straight vs stopped at FULL_STOP_AT and resumed from the
 * checkpoint (every tensor and its AdamW state saved by name): the same losses and the same
 * final logits, bit for bit. */
static void full_resume(const char *name) {
    char out[2][300];
    for (int k = 0; k < 2; k++)
        snprintf(out[k], sizeof out[k], "%s/%s-full%d", tu_scratch_root(), name, k);
    road_train_params p = train_params(out[0]);
    p.full = true;
    p.adamw.lr = FULL_LR;
    p.max_steps = FULL_STEPS;
    p.save_every = FULL_STOP_AT;
    road_model *m = fam_load(name, ROAD_QFORMAT_NONE);
    tu_loss_log a = {{0}, 0, 0};
    TU_OK(road_train(m, train_set, NULL, &p, tu_record_loss, &a));
    assert_int_equal(a.n, FULL_STEPS);
    float *straight = NULL;
    (void)eval_loss(m, &straight);
    const int64_t V = road_model_config(m)->vocab_size;
    road_model_free(m);
    p.out_dir = out[1];
    m = fam_load(name, ROAD_QFORMAT_NONE);
    tu_loss_log b = {{0}, 0, FULL_STOP_AT};
    TU_OK(road_train(m, train_set, NULL, &p, tu_record_loss, &b));
    assert_int_equal(b.n, FULL_STOP_AT);
    road_model_free(m);
    m = fam_load(name, ROAD_QFORMAT_NONE);
    p.resume = true;
    TU_OK(road_train(m, train_set, NULL, &p, tu_record_loss, &b));
    assert_int_equal(b.n, FULL_STEPS);
    for (int i = 0; i < FULL_STEPS; i++)
        if (memcmp(&a.loss[i], &b.loss[i], sizeof(double)) != 0)
            fail_msg("%s (full): step %d: loss %.9g uninterrupted, %.9g resumed", name, i + 1,
                     a.loss[i], b.loss[i]);
    if (!(a.loss[FULL_STEPS - 1] < a.loss[0]))
        fail_msg("%s (full): loss %.6f at step 1, %.6f at step %d", name, a.loss[0],
                 a.loss[FULL_STEPS - 1], FULL_STEPS);
    float *resumed = NULL;
    (void)eval_loss(m, &resumed);
    char what[128];
    snprintf(what, sizeof what, "%s (full): held-out logits, resumed vs uninterrupted", name);
    tu_assert_equal_f32(what, resumed, straight, N_EVAL * SEQ * V);
    road_model_free(m);
    free(straight);
    free(resumed);
    for (int k = 0; k < 2; k++) tu_rm_rf(out[k]);
}

static void test_full_training(void **state) {
    (void)state;
    for (int f = 0; f < FAM_N; f++) {
        const char *name = fam_list[f].name;
        fam_batch b;
        fam_batch_open(&b, name);
        road_model *m = fam_load_f32(name);
        TU_OK(road_model_set_full_training(m, true));
        road_adamw_params hp = road_adamw_default_params();
        hp.lr = FULL_LR;
        road_optimizer *o;
        TU_OK(road_optimizer_create_full(m, &hp, &o));
        TU_OK(road_optimizer_zero_grad(o));
        double loss0 = 0;
        TU_OK(road_model_loss_backward(m, b.ids, b.mask, b.labels, b.B, b.T, &loss0));
        const double fwd = fam_loss(m, &b);
        if (!(fabs(fwd - loss0) <= 1e-6 * fabs(fwd)))
            fail_msg("%s: loss %.9g from backward, %.9g from forward", name, loss0, fwd);

        /* recomputing the blocks in backward gives the same gradients, bit for bit (llm.h) */
        road_model *rm = fam_load_f32(name);
        road_model_set_recompute(rm, true);
        TU_OK(road_model_set_full_training(rm, true));
        double loss_rc = 0;
        TU_OK(road_model_loss_backward(rm, b.ids, b.mask, b.labels, b.B, b.T, &loss_rc));
        assert_memory_equal(&loss_rc, &loss0, sizeof loss0);
        assert_int_equal(road_model_tensor_count(rm), road_model_tensor_count(m));
        for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
            road_model_tensor t, r;
            TU_OK(road_model_tensor_get(m, i, &t));
            TU_OK(road_model_tensor_get(rm, i, &r));
            char what[200];
            snprintf(what, sizeof what, "%s: gradient of %s, recompute vs stored activations", name,
                     t.name);
            tu_assert_equal_f32(what, r.grad, t.grad, t.n);
        }
        road_model_free(rm);

        /* norm gradients against finite differences (before any step changes the weights) */
        for (int k = 0; k < 2 && fam_list[f].norms[k]; k++) {
            road_model_tensor t;
            TU_OK(road_model_tensor_get(m, tensor_index(m, fam_list[f].norms[k]), &t));
            assert_int_equal(t.ndim, 1);
            assert_false(t.decay);
            float *u = tu_alloc(sizeof(float) * (size_t)t.n);
            tu_fill_uniform(u, t.n, 17 + (uint64_t)k, -1, 1);
            double analytic = 0;
            for (int64_t i = 0; i < t.n; i++) {
                u[i] = u[i] < 0 ? -1.0f : 1.0f;
                analytic += (double)t.grad[i] * u[i];
            }
            const double fd = fd_directional(m, &b, t.param, u, t.n);
            print_message("%s: d loss / d %s along +-1: backward %.6g, finite difference %.6g\n",
                          name, t.name, analytic, fd);
            if (!(fabs(analytic - fd) <= FD_ATOL + FD_RTOL * fmax(fabs(analytic), fabs(fd))))
                fail_msg("%s: gradient of %s along +-1: backward %.8g, central difference %.8g",
                         name, t.name, analytic, fd);
            assert_true(fabs(fd) > 10 * FD_ATOL); /* the norm matters to the loss */
            free(u);
        }

        TU_OK(road_optimizer_step(o, NULL, NULL));
        const double loss1 = fam_loss(m, &b);
        print_message("%s: full fine-tuning, one AdamW step: loss %.6f -> %.6f\n", name, loss0,
                      loss1);
        if (!(loss1 < loss0))
            fail_msg("%s: one full AdamW step did not lower the loss: %.8f -> %.8f", name, loss0,
                     loss1);
        road_optimizer_free(o);
        road_model_free(m);
        fam_batch_close(&b);
        full_resume(name);
    }
}

/* road_model_init_folder (road init, pretraining from scratch) on each fixture's config.json:
 * the folder loads, holds the tensors the family's checkpoint holds (names and shapes, as
 * transformers' model has them), norms as transformers initialises them (weight 1; Gemma's
 * (1 + w) norms 0, Gemma2RMSNorm / Gemma3RMSNorm zero-init) and weights ~ N(0,
 * initializer_range). */
/* One family's initialised folder; false with the reason in why. */
static bool init_folder_ok(const char *name, char *why, size_t cap) {
    char cfg[600], out[300];
    snprintf(cfg, sizeof cfg, "%s/config.json", fam_dir(name));
    snprintf(out, sizeof out, "%s/%s-init", tu_scratch_root(), name);
    road_model *ref = fam_load(name, ROAD_QFORMAT_NONE);
    const bool plus_one = road_model_config(ref)->norm_plus_one;
    road_model *m = NULL;
    road_status st = road_model_init_folder(cfg, NULL, 7, ROAD_DTYPE_F32, out);
    if (st == ROAD_OK) st = road_model_load(out, NULL, &m);
    bool ok = st == ROAD_OK;
    if (!ok)
        snprintf(why, cap, "road_model_init_folder + road_model_load: %s: %s", road_status_name(st),
                 road_last_error());
    for (int32_t i = 0; ok && i < road_model_tensor_count(ref); i++) {
        road_model_tensor want, got;
        TU_OK(road_model_tensor_get(ref, i, &want));
        int32_t j = 0;
        for (; j < road_model_tensor_count(m); j++) {
            TU_OK(road_model_tensor_get(m, j, &got));
            if (strcmp(got.name, want.name) == 0) break;
        }
        if (j == road_model_tensor_count(m)) {
            snprintf(why, cap, "no %s", want.name);
            ok = false;
        } else if (got.shape[0] != want.shape[0] || got.shape[1] != want.shape[1]) {
            snprintf(why, cap, "%s is [%lld, %lld], the checkpoint's [%lld, %lld]", want.name,
                     (long long)got.shape[0], (long long)got.shape[1], (long long)want.shape[0],
                     (long long)want.shape[1]);
            ok = false;
        }
    }
    if (ok && road_model_tensor_count(m) != road_model_tensor_count(ref)) {
        snprintf(why, cap, "%d tensors, the checkpoint %d", (int)road_model_tensor_count(m),
                 (int)road_model_tensor_count(ref));
        ok = false;
    }
    for (int32_t i = 0; ok && i < road_model_tensor_count(m); i++) {
        road_model_tensor t;
        TU_OK(road_model_tensor_get(m, i, &t));
        if (t.ndim != 1 || !strstr(t.name, "norm")) continue;
        const float want = plus_one ? 0.0f : 1.0f;
        for (int64_t k = 0; ok && k < t.n; k++)
            if (t.param[k] != want) {
                snprintf(why, cap, "%s[%lld] is initialised to %g; transformers: %g", t.name,
                         (long long)k, (double)t.param[k], (double)want);
                ok = false;
            }
    }
    road_model_free(m);
    road_model_free(ref);
    tu_rm_rf(out);
    return ok;
}

static void test_init_folder(void **state) {
    (void)state;
    int failed = 0;
    for (int f = 0; f < FAM_N; f++) {
        char why[1024] = "";
        if (init_folder_ok(fam_list[f].name, why, sizeof why)) continue;
        print_error("%s: road_model_init_folder: %s\n", fam_list[f].name, why);
        failed++;
    }
    if (failed) fail_msg("road_model_init_folder is wrong for %d of %d families", failed, FAM_N);
}

/* ---- loading under allocation failures ------------------------------------------------------- */

/* Fail the k-th allocation of road_model_load (float and nf4) for k = 0, 1, ... on the families
 * test_llm_load.c does not cover: each attempt fails with ROAD_ERR_NO_MEMORY and frees what it
 * took (fused projections split, extra norms, q/k norms), until one succeeds. */
static void test_load_oom(void **state) {
    (void)state;
    for (int f = 3; f < FAM_N; f++) {
        const char *name = fam_list[f].name;
        for (int quant = 0; quant < 2; quant++) {
            road_model_params p = road_model_default_params();
            p.quantize = quant ? ROAD_QFORMAT_NF4 : ROAD_QFORMAT_NONE;
            const int64_t before = road__alloc_live_bytes(), before_n = road__alloc_live_count();
            int64_t step = 0;
            for (;; step++) {
                if (step > OOM_MAX_STEPS) fail_msg("%s: road_model_load never succeeds", name);
                road_model *m = NULL;
                road__alloc_fail_after(step);
                road_status s = road_model_load(fam_dir(name), &p, &m);
                road__alloc_fail_after(-1);
                if (s == ROAD_OK) {
                    road_model_free(m);
                    break;
                }
                if (s != ROAD_ERR_NO_MEMORY)
                    fail_msg("%s%s, allocation %lld failing: %s (%s), expected no_memory", name,
                             quant ? " (nf4)" : "", (long long)step, road_status_name(s),
                             road_last_error());
                assert_null(m);
                if (road__alloc_live_bytes() != before || road__alloc_live_count() != before_n)
                    fail_msg("%s%s, allocation %lld failing: %lld bytes in %lld blocks leaked",
                             name, quant ? " (nf4)" : "", (long long)step,
                             (long long)(road__alloc_live_bytes() - before),
                             (long long)(road__alloc_live_count() - before_n));
            }
            assert_true(step > 0);
            assert_int_equal(road__alloc_live_bytes(), before);
        }
    }
}

/* ---- quantized bases ---------------------------------------------------------------------- */

static bool is_linear_weight(const road_model_tensor *t) {
    const size_t n = strlen(t->name);
    static const char suffix[] = "_proj.weight";
    return t->ndim == 2 && n > sizeof suffix &&
           strcmp(t->name + n - (sizeof suffix - 1), suffix) == 0;
}

/* Replace every linear weight of float model m by its q round trip; returns how many. */
static int32_t dequantize_in_place(road_model *m, road_qformat q, bool double_quant) {
    int32_t count = 0;
    for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
        road_model_tensor t;
        TU_OK(road_model_tensor_get(m, i, &t));
        if (!is_linear_weight(&t)) continue;
        road_qtensor *qt = NULL;
        TU_OK(road_qtensor_quantize(q, t.shape[0], t.shape[1], t.param, double_quant, &qt));
        TU_OK(road_qtensor_dequantize_rows(qt, 0, t.shape[0], t.param));
        road_qtensor_free(qt);
        count++;
    }
    return count;
}

static void test_quantized(void **state) {
    (void)state;
    const road_qformat fmts[3] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4, ROAD_QFORMAT_NF4};
    const bool dqs[3] = {false, false, true};
    for (int f = 0; f < FAM_N; f++) {
        const char *name = fam_list[f].name;
        fam_batch b;
        fam_batch_open(&b, name);
        road_model *mf = fam_load(name, ROAD_QFORMAT_NONE);
        const int64_t V = road_model_config(mf)->vocab_size, N = b.B * b.T * V;
        float *exact = fam_logits(mf, &b);
        road_model_free(mf);
        for (int fi = 0; fi < 3; fi++) {
            const char *fmt = dqs[fi] ? "nf4+dq" : road_qformat_name(fmts[fi]);
            road_model_params qp = road_model_default_params();
            qp.quantize = fmts[fi];
            qp.double_quant = dqs[fi];
            road_model *mq = NULL;
            TU_OK(road_model_load(fam_dir(name), &qp, &mq));
            road_model *ref = fam_load_f32(name);
            const int32_t n_lin = dequantize_in_place(ref, fmts[fi], dqs[fi]);
            road_qformat got;
            assert_int_equal(road_model_quantized_layers(mq, &got), n_lin);
            assert_int_equal(got, fmts[fi]);
            float *yq = fam_logits(mq, &b), *yr = fam_logits(ref, &b);
            double moved = 0;
            for (int64_t i = 0; i < N; i++) moved = fmax(moved, fabs((double)yq[i] - exact[i]));
            print_message("%s %s: %d quantized layers; logits move %.4f from the float model\n",
                          name, fmt, (int)n_lin, moved);
            assert_true(moved > 0.0); /* it did quantize */
            char what[128];
            snprintf(what, sizeof what, "%s %s logits vs float model with dequantized weights",
                     name, fmt);
            fam_assert_close_valid(what, yq, yr, &b, V, QUANT_REF_ATOL);
            free(yq);
            free(yr);
            road_model_free(ref);

            /* a RoAd adapter trains on the quantized base: one AdamW step lowers the loss */
            fam_add_adapter(mq, "q", ROAD_VARIANT_1, fam_group(name));
            road_adapter_set *set = road_model_adapters(mq);
            road_adapter_set_train(set, true);
            road_adamw_params hp = road_adamw_default_params();
            hp.lr = QUANT_LR;
            road_optimizer *o;
            TU_OK(road_optimizer_create(set, NULL, 0, &hp, &o));
            TU_OK(road_optimizer_zero_grad(o));
            double loss0 = 0;
            TU_OK(road_model_loss_backward(mq, b.ids, b.mask, b.labels, b.B, b.T, &loss0));
            TU_OK(road_optimizer_step(o, NULL, NULL));
            road_adapter_set_train(set, false);
            const double loss1 = fam_loss(mq, &b);
            print_message("%s %s: one adapter step, loss %.6f -> %.6f\n", name, fmt, loss0, loss1);
            if (!(loss1 < loss0))
                fail_msg("%s on %s: an adapter step did not lower the loss: %.8f -> %.8f", name,
                         fmt, loss0, loss1);
            road_optimizer_free(o);
            road_model_free(mq);
        }
        free(exact);
        fam_batch_close(&b);
    }
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_and_resume), cmocka_unit_test(test_full_training),
        cmocka_unit_test(test_quantized),        cmocka_unit_test(test_init_folder),
        cmocka_unit_test(test_load_oom),
    };
    return cmocka_run_group_tests_name("families", tests, setup, teardown);
}
