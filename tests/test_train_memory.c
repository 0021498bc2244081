/*
 * tests/test_train_memory.c - road_train_memory_estimate against what training measures.
 *
 *   - on every fixture family (llama, qwen2, qwen3, gemma2, gemma3, phi3, olmo2: plain, fused,
 *     q/k-normed, sandwich- and post-normed blocks, logit softcaps), for several batch shapes,
 *     with and without recomputation: the estimated activations bound the bytes backward used
 *     (road_model_backward_bytes) from above, and by at most ACT_MARGIN when every sequence is
 *     as long as the longest (a ragged batch holds less, so only the bound is checked);
 *   - through road_train, the activation_bytes the trainer reports, and the heap that training
 *     adds (road's allocator's live bytes in the step callback, less those before the run):
 *     gradients, optimizer state, activations and workspaces bound it, by at most TOTAL_MARGIN;
 *   - full fine-tuning: gradients and optimizer state of every weight;
 *   - bad arguments.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "testutil.h"

/* The bound: the estimate is at most 1.25x what a batch of full-length sequences
 * measures (it is exact there by construction; the margin leaves room for the per-row
 * bookkeeping a future backward may add before the formula follows). */
#define ACT_MARGIN 1.25
/* What road_train adds on the heap besides the estimate's parts: the epoch's order and the
 * micro-batch's token lists, the optimizer's tables, the adapters' coefficient caches: a few kB
 * on models whose activations are tens of kB. */
#define TOTAL_MARGIN 1.5

static const char *const families[] = {"tiny-llama",  "tiny-qwen2",      "tiny-qwen3",
                                       "tiny-gemma2", "tiny-gemma3",     "tiny-phi3",
                                       "tiny-olmo2",  "tiny-llama3-rope"};
#define N_FAMILIES (int)(sizeof families / sizeof families[0])

static char model_dir[256];

static road_model *load_with_adapter(const char *family) {
    snprintf(model_dir, sizeof model_dir, "%s/llama/%s", ROAD_FIXTURES, family);
    road_model *m = NULL;
    TU_OK(road_model_load(model_dir, NULL, &m));
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_target_all_linear(cfg));
    TU_OK(road_config_set_group_size(cfg, 8));
    road_adapter_set *set = road_model_adapters(m);
    TU_OK(road_adapter_set_add(set, "task", cfg, 1));
    road_config_free(cfg);
    const char *act[1] = {"task"};
    TU_OK(road_adapter_set_set_active(set, act, 1));
    return m;
}

/* One backward on B sequences of lengths len[0..B) (token ids from a fixed pattern). */
static int64_t measure(road_model *m, int64_t B, const int64_t *len) {
    const int64_t V = road_model_config(m)->vocab_size;
    road_seq seqs[8];
    const road_token *tg[8];
    static road_token tok[8][64], tgt[8][64];
    for (int64_t s = 0; s < B; s++) {
        for (int64_t i = 0; i < len[s]; i++) {
            tok[s][i] = (road_token)((s * 31 + i * 7 + 3) % V);
            tgt[s][i] =
                i + 1 < len[s] ? (road_token)((s * 31 + (i + 1) * 7 + 3) % V) : ROAD_LABEL_IGNORE;
        }
        seqs[s] = (road_seq){.tokens = tok[s], .n_tokens = len[s]};
        tg[s] = tgt[s];
    }
    double loss = 0.0;
    TU_OK(road_model_loss_backward_seqs(m, seqs, tg, B, &loss));
    return road_model_backward_bytes(m);
}

static void test_activations_bound(void **state) {
    (void)state;
    /* batch shapes: sequences per micro-batch, and each one's length (the first is the
     * longest); the last two are ragged */
    static const struct {
        int64_t B, len[8];
        bool ragged;
    } shapes[] = {
        {1, {8}, false},
        {2, {16, 16}, false},
        {4, {5, 5, 5, 5}, false},
        {3, {40, 40, 40}, false},
        {6, {12, 12, 12, 12, 12, 12}, false},
        {3, {32, 9, 2}, true},
        {5, {20, 20, 1, 7, 19}, true},
    };
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    printf("%-17s %-6s %-10s %12s %12s %7s\n", "model", "B x T", "recompute", "measured",
           "estimate", "ratio");
    for (int f = 0; f < N_FAMILIES; f++) {
        road_model *m = load_with_adapter(families[f]);
        road_adapter_set_train(road_model_adapters(m), true);
        for (int rc = 0; rc < 2; rc++) {
            road_model_set_recompute(m, rc);
            for (int k = 0; k < n_shapes; k++) {
                const int64_t got = measure(m, shapes[k].B, shapes[k].len);
                road_train_params p = road_train_default_params();
                p.batch_size = shapes[k].B;
                p.recompute = rc;
                road_train_memory est;
                TU_OK(road_train_memory_estimate(m, &p, shapes[k].len[0], false, &est));
                const double ratio = (double)est.activations / (double)got;
                printf("%-17s %lldx%-4lld %-10s %12lld %12lld %7.3f%s\n", families[f],
                       (long long)shapes[k].B, (long long)shapes[k].len[0], rc ? "on" : "off",
                       (long long)got, (long long)est.activations, ratio,
                       shapes[k].ragged ? " (ragged)" : "");
                if (est.activations < got)
                    fail_msg("%s, %lld sequences of up to %lld tokens, recompute %d: estimate "
                             "%lld bytes < measured %lld",
                             families[f], (long long)shapes[k].B, (long long)shapes[k].len[0], rc,
                             (long long)est.activations, (long long)got);
                if (!shapes[k].ragged && ratio > ACT_MARGIN)
                    fail_msg("%s, %lld x %lld, recompute %d: estimate %lld bytes is %.3fx the "
                             "measured %lld (more than %.2fx)",
                             families[f], (long long)shapes[k].B, (long long)shapes[k].len[0], rc,
                             (long long)est.activations, ratio, (long long)got, ACT_MARGIN);
                /* the per-token parts: recompute keeps less as soon as there are two blocks */
                if (road_model_config(m)->n_layers > 1 &&
                    !(est.act_per_token_recompute < est.act_per_token))
                    fail_msg("%s: recompute's %lld bytes per token not below %lld", families[f],
                             (long long)est.act_per_token_recompute, (long long)est.act_per_token);
            }
        }
        road_model_free(m);
    }
}

typedef struct probe {
    int64_t base_live, peak_added, act_bytes;
} probe;

static bool on_step(const road_train_metrics *mt, void *user) {
    probe *pr = user;
    const int64_t added = road__alloc_live_bytes() - pr->base_live;
    if (added > pr->peak_added) pr->peak_added = added;
    pr->act_bytes = mt->activation_bytes;
    return true;
}

/* road_train on tiny-llama (adapters, or full with `full`), B examples of T tokens a batch. */
static void run_and_check(bool full, int64_t B, int64_t T, bool recompute, bool with_eval) {
    char dir[] = "/tmp/road-trainmem-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char data[300], out[300];
    snprintf(data, sizeof data, "%s/train.jsonl", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    tu_write_pattern_task(data, 12, (int)T, 1);
    road_data_params dp = road_data_default_params();
    dp.max_len = T;
    road_dataset *d = NULL;
    TU_OK(road_dataset_load_jsonl(data, &dp, &d));
    road_model *m = NULL;
    if (full) {
        snprintf(model_dir, sizeof model_dir, "%s/llama/tiny-llama", ROAD_FIXTURES);
        TU_OK(road_model_load(model_dir, NULL, &m));
    } else {
        m = load_with_adapter("tiny-llama");
    }
    road_train_params p = road_train_default_params();
    p.batch_size = B;
    p.max_steps = 2;
    p.out_dir = out;
    p.recompute = recompute;
    p.full = full;
    road_train_memory est;
    TU_OK(road_train_memory_estimate(m, &p, T, with_eval, &est));
    probe pr = {road__alloc_live_bytes(), 0, 0};
    TU_OK(road_train(m, d, with_eval ? d : NULL, &p, on_step, &pr));
    const int64_t added_est = est.gradients + est.optimizer + est.activations + est.workspaces;
    printf("%s B %lld T %lld recompute %d eval %d: activations measured %lld, estimate %lld; "
           "heap added %lld, estimate %lld (%.3fx)\n",
           full ? "full" : "adapter", (long long)B, (long long)T, recompute, with_eval,
           (long long)pr.act_bytes, (long long)est.activations, (long long)pr.peak_added,
           (long long)added_est, (double)added_est / (double)pr.peak_added);
    if (!(pr.act_bytes <= est.activations && est.activations <= ACT_MARGIN * pr.act_bytes))
        fail_msg("activation_bytes %lld vs estimate %lld", (long long)pr.act_bytes,
                 (long long)est.activations);
    /* the heap training adds while a step's buffers are held (eval's are freed by then: the
     * callback sees its forward workspace only, which the estimate counts too) */
    if (!(pr.peak_added <= added_est && added_est <= TOTAL_MARGIN * pr.peak_added))
        fail_msg("heap added by training %lld vs estimate %lld (gradients %lld, optimizer %lld, "
                 "activations %lld, workspaces %lld)",
                 (long long)pr.peak_added, (long long)added_est, (long long)est.gradients,
                 (long long)est.optimizer, (long long)est.activations, (long long)est.workspaces);
    road_model_free(m);
    road_dataset_free(d);
    tu_rm_rf(dir);
}

static void test_train_run(void **state) {
    (void)state;
    run_and_check(false, 4, 16, false, false);
    run_and_check(false, 2, 32, true, false);
    run_and_check(false, 3, 24, false, true);
    run_and_check(true, 2, 16, false, false);
}

static void test_errors(void **state) {
    (void)state;
    road_model *m = load_with_adapter("tiny-llama");
    road_train_params p = road_train_default_params();
    road_train_memory est;
    TU_FAILS(road_train_memory_estimate(NULL, &p, 8, false, &est), ROAD_ERR_INVALID_ARG, "NULL");
    TU_FAILS(road_train_memory_estimate(m, &p, 0, false, &est), ROAD_ERR_INVALID_ARG,
             "max_seq_len");
    p.batch_size = 0;
    TU_FAILS(road_train_memory_estimate(m, &p, 8, false, &est), ROAD_ERR_INVALID_ARG, "batch_size");
    /* the parts add up, and a larger batch needs more */
    p.batch_size = 2;
    TU_OK(road_train_memory_estimate(m, &p, 8, false, &est));
    assert_int_equal(est.total, est.weights + est.gradients + est.optimizer + est.activations +
                                    est.workspaces);
    assert_int_equal(est.tokens, 16);
    const int64_t t2 = est.total;
    p.batch_size = 4;
    TU_OK(road_train_memory_estimate(m, &p, 8, false, &est));
    assert_true(est.total > t2);
    road_model_free(m);
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations_bound),
        cmocka_unit_test(test_train_run),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("train_memory", tests, NULL, NULL);
}
