/*
 * tests/test_text_e2e.c - text end to end on a model with a tokenizer: the tiny-llama weights
 * with a SentencePiece-style tokenizer.json made from the Llama-2 fixture's structure (its
 * normalizer, decoder and post-processor) but a 260-token vocabulary that fits the model
 * (<unk>, <s>, </s>, the 256 byte-fallback tokens, "▁"):
 *   - text round-trips through the model's tokenizer, ids within the model's vocabulary;
 *   - `road generate --prompt` (plain and --chat) and `road train` on text JSONL run;
 *   - training examples: text, prompt/completion (loss on the completion only) and chat
 *     messages (loss on the assistant turn only) get the right loss masks.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char dir[64];

static const char *in_dir(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void make_model(void) { tu_make_text_model(dir, sizeof dir); }

static void test_tokenizer_fits(void **state) {
    (void)state;
    road_tokenizer *tok;
    TU_OK(road_tokenizer_load(dir, &tok));
    const char *s = "Hello wörld, 12 ☃!";
    int32_t ids[256];
    size_t n;
    TU_OK(road_tokenizer_encode(tok, s, strlen(s), true, ids, 256, &n));
    assert_int_equal(ids[0], 1); /* <s> */
    for (size_t i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < 320);
    char *back;
    size_t bl;
    TU_OK(road_tokenizer_decode(tok, ids, n, true, &back, &bl));
    assert_string_equal(back, s);
    road_string_free(back);
    road_tokenizer_free(tok);
}

static void test_data_masks(void **state) {
    (void)state;
    road_tokenizer *tok;
    TU_OK(road_tokenizer_load(dir, &tok));
    FILE *f = fopen(in_dir("d.jsonl"), "w");
    fputs("{\"text\": \"abc\"}\n"
          "{\"prompt\": \"Q: 1+1?\", \"completion\": \" A: 2\"}\n"
          "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n",
          f);
    fclose(f);
    road_data_params dp = road_data_default_params();
    dp.tok = tok;
    TU_OK(road_tokenizer_set_chat_template(tok, "mistral"));
    road_dataset *d;
    TU_OK(road_dataset_load_jsonl(in_dir("d.jsonl"), &dp, &d));
    assert_int_equal(road_dataset_count(d), 3);
    const int32_t *ids, *lab;
    int64_t n;
    /* text: <s> ▁ a b c, loss everywhere */
    TU_OK(road_dataset_example(d, 0, &ids, &lab, &n));
    for (int64_t i = 0; i < n; i++) assert_int_equal(lab[i], ids[i]);
    /* prompt/completion: the prompt's tokens carry no loss, the completion's do */
    TU_OK(road_dataset_example(d, 1, &ids, &lab, &n));
    size_t np;
    TU_OK(road_tokenizer_encode(tok, "Q: 1+1?", 7, true, NULL, 0, &np));
    for (int64_t i = 0; i < n; i++) assert_int_equal(lab[i], i < (int64_t)np ? -100 : ids[i]);
    /* chat: only the assistant turn ("yo" and its end) carries loss; its text decodes to it */
    TU_OK(road_dataset_example(d, 2, &ids, &lab, &n));
    int32_t loss_ids[64];
    size_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (lab[i] != -100) loss_ids[k++] = ids[i];
    assert_true(k >= 2);
    char *txt;
    size_t tl;
    TU_OK(road_tokenizer_decode(tok, loss_ids, k, true, &txt, &tl));
    assert_non_null(strstr(txt, "yo"));
    assert_null(strstr(txt, "hi"));
    road_string_free(txt);
    road_dataset_free(d);
    road_tokenizer_free(tok);
}

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    return pclose(p);
}

static void test_cli_text(void **state) {
    (void)state;
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "%s/road generate --model %s --prompt 'Hello' --max-new-tokens 4 2>&1",
             ROAD_BINARY_DIR, dir);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s failed: %s", cmd, out);
    snprintf(cmd, sizeof cmd, "%s/road generate --model %s --prompt 'Hello' --chat-template mistral "
             "--max-new-tokens 3 --prompt 'again' 2>&1", ROAD_BINARY_DIR, dir);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s failed: %s", cmd, out);
    snprintf(cmd, sizeof cmd, "%s/road tokenize --model %s --text 'Hi' 2>&1", ROAD_BINARY_DIR, dir);
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s failed: %s", cmd, out);
    assert_non_null(strstr(out, "1 259"));
    FILE *f = fopen(in_dir("t.jsonl"), "w");
    for (int i = 0; i < 8; i++) fprintf(f, "{\"prompt\": \"say %d:\", \"completion\": \" %d %d\"}\n", i, i, i + 1);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s/road train --model %s --data %s --out %s --group-size 8 --max-steps 2 "
             "--batch-size 4 2>&1", ROAD_BINARY_DIR, dir, in_dir("t.jsonl"), in_dir("out"));
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s failed: %s", cmd, out);
    assert_non_null(strstr(out, "adapter written to"));
    /* road eval on the same JSONL: loss printed, logits written */
    snprintf(cmd, sizeof cmd, "%s/road eval --model %s --input %s --dump %s 2>&1", ROAD_BINARY_DIR,
             dir, in_dir("t.jsonl"), in_dir("e.safetensors"));
    if (run(cmd, out, sizeof out) != 0) fail_msg("%s failed: %s", cmd, out);
    assert_non_null(strstr(out, "loss "));
    assert_non_null(strstr(out, "logits [8, "));
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state) {
    (void)state;
    make_model();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_fits),
        cmocka_unit_test(test_data_masks),
        cmocka_unit_test(test_cli_text),
    };
    return cmocka_run_group_tests_name("text_e2e", tests, setup, teardown);
}
