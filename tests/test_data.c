/*
 * tests/test_data.c - JSONL training data (train/data.c): nothing dropped or cut without a count.
 *   - every non-blank line ends kept whole, kept truncated to max_len, or skipped for one
 *     reason (completion past max_len, no token with a loss, fewer than 2 tokens); the counts
 *     are in road_dataset_stats and one warning line through the log callback says them;
 *   - strings are data, whole: \u0000 (or a raw NUL) in a text field is refused naming the
 *     line and the field, never cut short; invalid JSON (text after the object, raw control
 *     characters) is refused with its line.
 * A byte tokenizer (one id per byte) keeps token counts obvious.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"


static char warned[2048];
static int n_warned;

static void capture(road_log_level level, const char *message, void *user) {
    (void)user;
    if (level != ROAD_LOG_WARN) return;
    n_warned++;
    snprintf(warned, sizeof warned, "%s", message);
}

static road_data_params params(int64_t max_len) {
    road_data_params dp = road_data_default_params();
    dp.max_len = max_len;
    dp.tokenize = tu_byte_tokenize;
    return dp;
}

static road_dataset *load(const char *text, const road_data_params *dp) {
    road_dataset *d = NULL;
    n_warned = 0;
    warned[0] = '\0';
    road_log_set_callback(capture, NULL);
    road_status s = road_dataset_parse_jsonl(text, strlen(text), dp, &d);
    road_log_set_callback(NULL, NULL);
    if (s != ROAD_OK) fail_msg("load: %s", road_last_error());
    return d;
}

static void expect_warned(const char *needle) {
    if (!strstr(warned, needle)) fail_msg("warning '%s' lacks '%s'", warned, needle);
}

/* The case: 20 prompt/completion lines, half with prompts longer than max_len, gave
 * "10 examples" and no word about the other 10. */
static void test_skipped_past_max_len_counted(void **state) {
    (void)state;
    char text[8192];
    size_t k = 0;
    for (int i = 0; i < 20; i++) {
        const char *prompt = i % 2 ? "a prompt far longer than the sixteen tokens allowed" : "short";
        k += (size_t)snprintf(text + k, sizeof text - k,
                              "{\"prompt\": \"%s\", \"completion\": \" answer\"}\n", prompt);
    }
    road_data_params dp = params(16);
    road_dataset *d = load(text, &dp);
    assert_int_equal(road_dataset_count(d), 10);
    road_data_stats st = road_dataset_stats(d);
    assert_int_equal(st.lines, 20);
    assert_int_equal(st.examples, 10);
    assert_int_equal(st.skipped_past_max_len, 10);
    assert_int_equal(st.skipped_no_loss + st.skipped_short + st.truncated, 0);
    assert_int_equal(st.max_len, 16);
    assert_int_equal(n_warned, 1);
    expect_warned("(memory): 20 lines -> 10 examples; 10 skipped: every token with a loss");
    expect_warned("max_len 16 (raise max_len or shorten the prompts)");
    road_dataset_free(d);
}

static void test_every_reason(void **state) {
    (void)state;
    const char *text =
        "{\"text\": \"abcdefghij\"}\n"                                    /* kept whole (11) */
        "{\"text\": \"abcdefghijklmnopqrstuvwxyz\"}\n"                    /* truncated 27 -> 12 */
        "{\"prompt\": \"abc\", \"completion\": \"defghijklmnopq\"}\n"    /* truncated 18 -> 12 */
        "{\"prompt\": \"abcdefghijklmnop\", \"completion\": \"x\"}\n"    /* past max_len */
        "{\"prompt\": \"abc\", \"completion\": \"\"}\n"                  /* no loss */
        "{\"input_ids\": [5, 6, 7], \"labels\": [-100, -100, -100]}\n"   /* no loss */
        "\n   \n"                                                        /* blank: not records */
        "{\"input_ids\": [5]}\n";                                        /* short */
    road_data_params dp = params(12);
    road_dataset *d = load(text, &dp);
    road_data_stats st = road_dataset_stats(d);
    assert_int_equal(st.lines, 7);
    assert_int_equal(st.examples, 3);
    assert_int_equal(road_dataset_count(d), 3);
    assert_int_equal(st.truncated, 2);
    assert_int_equal(st.truncated_tokens, (27 - 12) + (18 - 12));
    assert_int_equal(st.skipped_past_max_len, 1);
    assert_int_equal(st.skipped_no_loss, 2);
    assert_int_equal(st.skipped_short, 1);
    assert_int_equal(st.lines, st.examples + st.skipped_past_max_len + st.skipped_no_loss + st.skipped_short);
    expect_warned("7 lines -> 3 examples; 1 skipped: every token with a loss");
    expect_warned("; 2 skipped: no token carries a loss");
    expect_warned("; 1 skipped: fewer than 2 tokens");
    expect_warned("; 2 truncated to max_len 12 (21 tokens past it not trained on)");
    const int32_t *ids, *lab;
    int64_t n;
    TU_OK(road_dataset_example(d, 1, &ids, &lab, &n));
    assert_int_equal(n, 12);
    road_dataset_free(d);
    /* nothing to report: no warning */
    d = load("{\"text\": \"abc\"}\n", &dp);
    assert_int_equal(n_warned, 0);
    assert_int_equal(road_dataset_stats(d).examples, 1);
    road_dataset_free(d);
    /* packing cuts nothing, so nothing is truncated; the stats count records, not sequences */
    dp.pack = true;
    d = load("{\"text\": \"abcdefghijklmnopqrstuvwxyz\"}\n{\"text\": \"abcdefghij\"}\n", &dp);
    st = road_dataset_stats(d);
    assert_int_equal(st.examples, 2);
    assert_int_equal(st.truncated, 0);
    assert_int_equal(road_dataset_count(d), 4); /* 27 + 11 tokens in 12-token sequences */
    road_dataset_free(d);
    assert_int_equal(road_dataset_stats(NULL).lines, 0);
    /* a file with nothing usable says why, per reason */
    road_data_params dq = params(4);
    const char *none = "{\"prompt\": \"abcdef\", \"completion\": \"x\"}\n";
    TU_FAILS(road_dataset_parse_jsonl(none, strlen(none), &dq, &d), ROAD_ERR_FORMAT,
             "no usable example: 1 lines; 1 skipped: every token with a loss");
}

static void test_strings_whole_or_refused(void **state) {
    (void)state;
    road_data_params dp = params(64);
    road_dataset *d = NULL;
    /* \u0000 used to cut the completion to " ans" silently */
    const char *nul = "{\"text\": \"fine\"}\n{\"prompt\": \"q\", \"completion\": \" ans\\u0000wer\"}\n";
    TU_FAILS(road_dataset_parse_jsonl(nul, strlen(nul), &dp, &d), ROAD_ERR_FORMAT,
             "(memory): line 2 is refused (column 36): the string at completion holds \\u0000 (NUL)");
    const char *msg = "{\"input_ids\": [1, 2]}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000\"}]}\n";
    TU_FAILS(road_dataset_parse_jsonl(msg, strlen(msg), &dp, &d), ROAD_ERR_FORMAT,
             "line 3 is refused (column 45): the string at messages[0].content holds \\u0000");
    const char raw[] = "{\"text\": \"a\0b\"}\n";
    TU_FAILS(road_dataset_parse_jsonl(raw, sizeof raw - 1, &dp, &d), ROAD_ERR_FORMAT,
             "line 1 is not valid JSON (column 12): a raw NUL byte in the string at text");
    /* invalid JSON the old parser (cJSON) took */
    const char *trail = "{\"text\": \"abc\"} {\"text\": \"def\"}\n";
    TU_FAILS(road_dataset_parse_jsonl(trail, strlen(trail), &dp, &d), ROAD_ERR_FORMAT,
             "line 1 is not valid JSON (column 17): extra text after the JSON value");
    const char *ctrl = "  {\"text\": \"a\tb\"}\n";
    TU_FAILS(road_dataset_parse_jsonl(ctrl, strlen(ctrl), &dp, &d), ROAD_ERR_FORMAT,
             "line 1 is not valid JSON (column 14): control character in the string at text");
    /* a duplicate key: the last wins, as Python's json reads it */
    d = load("{\"text\": \"a\", \"text\": \"abcd\"}\n", &dp);
    const int32_t *ids, *lab;
    int64_t n;
    TU_OK(road_dataset_example(d, 0, &ids, &lab, &n));
    assert_int_equal(n, 5);
    road_dataset_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skipped_past_max_len_counted),
        cmocka_unit_test(test_every_reason),
        cmocka_unit_test(test_strings_whole_or_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
