/*
 * tests/test_trainer.c - training data and the training loop on the tiny-llama fixture:
 *   - JSONL examples: pre-tokenized, text and prompt/completion (loss mask on the completion),
 *     truncation, bad lines reported with their line number, files with no usable example;
 *   - the loop learns: a RoAd adapter on every linear layer lowers the eval loss of a simple
 *     synthetic task well below the base model's;
 *   - resume is exact: a run stopped and resumed from its checkpoint gives the same losses, bit
 *     for bit, as an uninterrupted run; the final adapter folder is PEFT's and loads back.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"


#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
#define N_TRAIN 48
#define SEQ 12
#define STEPS 12
/* The synthetic task (each token is the previous + 7 mod 64) is learnable far beyond this;
 * the base model (random weights) is near log(320) = 5.77. */
#define REQUIRED_DROP 0.5

static char tmp[64];

static const char *path_in(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}



static void test_data(void **state) {
    (void)state;
    road_data_params dp = road_data_default_params();
    dp.max_len = 8;
    road_dataset *d;
    write_text(path_in("a.jsonl"), "{\"input_ids\": [1, 2, 3]}\n\n{\"input_ids\": [4, 5, 6, 7], "
                                   "\"labels\": [-100, -100, 6, 7]}\n");
    TU_OK(road_dataset_load_jsonl(path_in("a.jsonl"), &dp, &d));
    assert_int_equal(road_dataset_count(d), 2);
    const int32_t *ids, *lab;
    int64_t n;
    TU_OK(road_dataset_example(d, 1, &ids, &lab, &n));
    assert_int_equal(n, 4);
    assert_int_equal(lab[0], -100);
    assert_int_equal(lab[3], 7);
    road_dataset_free(d);
    /* errors name the line */
    write_text(path_in("b.jsonl"), "{\"input_ids\": [1, 2]}\n{\"input_ids\": [1, -3]}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("b.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "line 2");
    write_text(path_in("c.jsonl"), "{\"input_ids\": [1, 2]}\nnot json\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("c.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "line 2 is not valid JSON");
    write_text(path_in("d.jsonl"), "{\"text\": \"hello\"}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("d.jsonl"), &dp, &d), ROAD_ERR_UNSUPPORTED, "need a tokenizer");
    write_text(path_in("e.jsonl"), "\n{\"input_ids\": [5]}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("e.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "no usable example");
    write_text(path_in("f.jsonl"), "{\"input_ids\": [1, 2], \"labels\": [1]}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("f.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "\"labels\" has 1 entries");
    /* found by fuzzing: huge or non-numeric entries are refused (no out-of-range conversion) */
    write_text(path_in("i.jsonl"), "{\"input_ids\": [1e300, 2]}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("i.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "[0] is not a token id");
    write_text(path_in("j.jsonl"), "{\"input_ids\": [false, 3]}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("j.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "[0] is not a token id");
    write_text(path_in("k.jsonl"), "{\"input_ids\": [1, 2], \"labels\": [-1e19, 2]}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("k.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "token id or -100");
    write_text(path_in("g.jsonl"), "{\"foo\": 1}\n");
    TU_FAILS(road_dataset_load_jsonl(path_in("g.jsonl"), &dp, &d), ROAD_ERR_FORMAT, "no \"input_ids\"");
    /* text and prompt/completion with a tokenizer; truncation to max_len */
    road_data_params tp = road_data_default_params();
    tp.max_len = 6;
    tp.tokenize = tu_byte_tokenize;
    write_text(path_in("h.jsonl"), "{\"text\": \"abcdefgh\"}\n{\"prompt\": \"ab\", \"completion\": \"cd\"}\n");
    TU_OK(road_dataset_load_jsonl(path_in("h.jsonl"), &tp, &d));
    TU_OK(road_dataset_example(d, 0, &ids, &lab, &n));
    assert_int_equal(n, 6); /* bos + 8 bytes, truncated */
    assert_int_equal(ids[0], 1);
    assert_int_equal(lab[1], 'a');
    TU_OK(road_dataset_example(d, 1, &ids, &lab, &n));
    assert_int_equal(n, 5); /* bos a b | c d */
    assert_int_equal(lab[2], -100);
    assert_int_equal(lab[3], 'c');
    road_dataset_free(d);
    /* packing: 3 examples of 5 tokens into sequences of 4 (not truncated one by one);
     * labels travel with their tokens */
    write_text(path_in("p.jsonl"), "{\"input_ids\": [1, 2, 3, 4, 5], \"labels\": [-100, 2, 3, 4, 5]}\n"
                                   "{\"input_ids\": [6, 7, 8, 9, 10]}\n{\"input_ids\": [11, 12, 13, 14, 15]}\n");
    road_data_params pp = road_data_default_params();
    pp.max_len = 4;
    pp.pack = true;
    TU_OK(road_dataset_load_jsonl(path_in("p.jsonl"), &pp, &d));
    assert_int_equal(road_dataset_count(d), 4);
    TU_OK(road_dataset_example(d, 0, &ids, &lab, &n));
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(lab[0], -100);
    assert_int_equal(lab[3], 4);
    TU_OK(road_dataset_example(d, 1, &ids, &lab, &n));
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 6);
    TU_OK(road_dataset_example(d, 3, &ids, &lab, &n));
    assert_int_equal(n, 3);
    assert_int_equal(ids[2], 15);
    road_dataset_free(d);
}


static road_model *model_with_adapter(void) {
    road_model *m;
    TU_OK(road_model_load(MODEL, NULL, &m));
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_target_all_linear(cfg));
    TU_OK(road_config_set_group_size(cfg, 8));
    TU_OK(road_adapter_set_add(road_model_adapters(m), "task", cfg, 1));
    road_config_free(cfg);
    return m;
}

static road_train_params params(const char *out) {
    road_train_params p = road_train_default_params();
    p.adamw.lr = 2e-2;
    p.batch_size = 4;
    p.grad_accum = 2;
    p.max_steps = STEPS;
    p.save_every = 4;
    p.out_dir = out;
    p.seed = 5;
    return p;
}

static void test_learns_and_resumes(void **state) {
    (void)state;
    road_data_params dp = road_data_default_params();
    dp.max_len = SEQ;
    tu_write_pattern_task(path_in("train.jsonl"), N_TRAIN, SEQ, 1);
    tu_write_pattern_task(path_in("eval.jsonl"), 8, SEQ, 3);
    road_dataset *train, *eval;
    TU_OK(road_dataset_load_jsonl(path_in("train.jsonl"), &dp, &train));
    TU_OK(road_dataset_load_jsonl(path_in("eval.jsonl"), &dp, &eval));

    /* uninterrupted */
    road_model *m = model_with_adapter();
    road_train_params p = params(path_in("run1"));
    p.max_steps = 60;
    p.save_every = 0;
    p.adamw.lr = 1e-1;
    tu_loss_log full = {{0}, 0, 0};
    TU_OK(road_train(m, train, eval, &p, tu_record_loss, &full));
    assert_int_equal(full.n, 60);
    if (!(full.loss[59] < full.loss[0] - REQUIRED_DROP))
        fail_msg("training did not learn: first loss %.4f, last %.4f", full.loss[0], full.loss[59]);
    road_model_free(m);
    /* the final adapter is a PEFT folder that loads back; best/ exists */
    m = NULL;
    TU_OK(road_model_load(MODEL, NULL, &m));
    TU_OK(road_adapter_set_load(road_model_adapters(m), "task", path_in("run1/task")));
    assert_int_equal(access(path_in("run1/best/task/adapter_config.json"), F_OK), 0);
    road_model_free(m);

    /* 12 steps straight vs 6, stop, resume to 12 */
    m = model_with_adapter();
    p = params(path_in("run2"));
    tu_loss_log a = {{0}, 0, 0};
    TU_OK(road_train(m, train, NULL, &p, tu_record_loss, &a));
    road_model_free(m);
    m = model_with_adapter();
    p = params(path_in("run3"));
    tu_loss_log b = {{0}, 0, 6};
    TU_OK(road_train(m, train, NULL, &p, tu_record_loss, &b));
    assert_int_equal(b.n, 6);
    assert_int_equal(access(path_in("run3/checkpoint-6/trainer_state.json"), F_OK), 0);
    road_model_free(m);
    m = model_with_adapter();
    p.resume = true;
    TU_OK(road_train(m, train, NULL, &p, tu_record_loss, &b));
    assert_int_equal(b.n, STEPS);
    for (int i = 0; i < STEPS; i++)
        if (memcmp(&a.loss[i], &b.loss[i], sizeof(double)) != 0)
            fail_msg("step %d: loss %.9g uninterrupted, %.9g resumed", i + 1, a.loss[i], b.loss[i]);
    road_model_free(m);
    road_dataset_free(train);
    road_dataset_free(eval);
}

static void test_errors(void **state) {
    (void)state;
    road_data_params dp = road_data_default_params();
    dp.max_len = SEQ;
    tu_write_pattern_task(path_in("t.jsonl"), 4, SEQ, 1);
    road_dataset *d;
    TU_OK(road_dataset_load_jsonl(path_in("t.jsonl"), &dp, &d));
    road_model *m;
    TU_OK(road_model_load(MODEL, NULL, &m));
    road_train_params p = params(path_in("err"));
    TU_FAILS(road_train(m, d, NULL, &p, NULL, NULL), ROAD_ERR_STATE, "no active adapter");
    road_model_free(m);
    m = model_with_adapter();
    p.batch_size = 0;
    TU_FAILS(road_train(m, d, NULL, &p, NULL, NULL), ROAD_ERR_INVALID_ARG, "batch_size");
    p = params(NULL);
    TU_FAILS(road_train(m, d, NULL, &p, NULL, NULL), ROAD_ERR_INVALID_ARG, "output folder");
    road_model_free(m);
    road_dataset_free(d);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp, sizeof tmp, "/tmp/road-trainer-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data),
        cmocka_unit_test(test_learns_and_resumes),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("trainer", tests, setup, teardown);
}
