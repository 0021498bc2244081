/*
 * fuzz/fuzz_jsonl.c - libFuzzer target for the training-data parser (road_dataset_parse_jsonl).
 *
 * Pre-tokenized lines need no tokenizer; text lines go through a stand-in tokenizer (one id per
 * byte) so the prompt/completion path and its loss mask are exercised too. Whatever the input,
 * the parser refuses it with a message or yields examples that are consistent: lengths within
 * max_len, ids non-negative, labels -100 or non-negative, and every line counted as kept or
 * skipped for one reason (road_dataset_stats).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "road/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_LEN 64

static road_status byte_tok(void *u, const char *text, size_t len, bool special, int32_t **ids,
                            int64_t *n) {
    (void)u;
    int32_t *v = road_ids_alloc((int64_t)len + 1);
    if (!v) return ROAD_ERR_NO_MEMORY;
    int64_t k = 0;
    if (special) v[k++] = 1;
    for (size_t i = 0; i < len; i++) v[k++] = (unsigned char)text[i];
    *ids = v;
    *n = k;
    return ROAD_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    road_data_params p = road_data_default_params();
    p.max_len = FUZZ_MAX_LEN;
    p.tokenize = byte_tok;
    p.pack = size > 0 && (data[0] & 1);
    road_dataset *d = NULL;
    if (road_dataset_parse_jsonl((const char *)data, size, &p, &d) != ROAD_OK) {
        if (d != NULL || road_last_error()[0] == '\0') __builtin_trap();
        return 0;
    }
    /* every non-blank line is kept or skipped for exactly one counted reason */
    road_data_stats st = road_dataset_stats(d);
    if (st.lines != st.examples + st.skipped_past_max_len + st.skipped_no_loss + st.skipped_short ||
        st.truncated > st.examples || (!p.pack && st.examples != road_dataset_count(d)))
        __builtin_trap();
    for (int64_t i = 0; i < road_dataset_count(d); i++) {
        const int32_t *ids, *lab;
        int64_t n;
        if (road_dataset_example(d, i, &ids, &lab, &n) != ROAD_OK) __builtin_trap();
        if (n < 1 || n > FUZZ_MAX_LEN) __builtin_trap();
        for (int64_t t = 0; t < n; t++)
            if (ids[t] < 0 || (lab[t] != -100 && lab[t] < 0)) __builtin_trap();
    }
    road_dataset_free(d);
    return 0;
}
