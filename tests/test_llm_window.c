/*
 * tests/test_llm_window.c - Mistral's sliding-window attention (no reference fixture exists, so
 * it is checked by its defining properties on the tiny-llama weights run as a mistral model):
 *   - a window at least as long as the sequence gives exactly the llama logits;
 *   - with window W, L layers, the logits at position p depend only on tokens
 *     p - L*(W-1) .. p: changing an earlier token leaves them bit-identical, while it changes
 *     the logits of positions inside its reach;
 *   - the KV-cache decode with a window equals the full recompute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#define WINDOW 3
#define SEQ 12
/* Cached decode vs full recompute: same float32 operations in another grouping (1e-5, the
 * fixture README's logit tolerance). */
#define LOGIT_ATOL 1e-5

static char dir[64];

static road_model *load_mistral(int window) {
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* tiny-llama's shapes, as a mistral model */
    fprintf(f, "{\"model_type\": \"mistral\", \"vocab_size\": 320, \"hidden_size\": 64, "
               "\"intermediate_size\": 176, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
               "\"num_key_value_heads\": 2, \"head_dim\": 16, \"rms_norm_eps\": 1e-06, "
               "\"rope_theta\": 10000.0, \"max_position_embeddings\": 128, \"sliding_window\": %d, "
               "\"tie_word_embeddings\": false}",
            window);
    fclose(f);
    road_model *m;
    TU_OK(road_model_load(dir, NULL, &m));
    return m;
}

static void test_window(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/road-window-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tu_copy_file(ROAD_FIXTURES "/llama/tiny-llama/model.safetensors", path);
    road_model *llama, *wide = load_mistral(SEQ), *narrow = load_mistral(WINDOW);
    TU_OK(road_model_load(ROAD_FIXTURES "/llama/tiny-llama", NULL, &llama));
    const int64_t V = 320, L = 2;
    int32_t tok[SEQ], tok2[SEQ];
    for (int i = 0; i < SEQ; i++) tok[i] = tok2[i] = (int32_t)((37 * i + 11) % V);
    tok2[0] = 300; /* an early change */
    float *a = tu_alloc(sizeof(float) * SEQ * V), *b = tu_alloc(sizeof(float) * SEQ * V);
    float *c = tu_alloc(sizeof(float) * SEQ * V);
    road_seq s = {tok, SEQ, NULL, NULL, true};
    TU_OK(road_model_forward(llama, &s, 1, a));
    TU_OK(road_model_forward(wide, &s, 1, b));
    tu_assert_equal_f32("window >= sequence == llama", b, a, SEQ * V);
    TU_OK(road_model_forward(narrow, &s, 1, b));
    road_seq s2 = {tok2, SEQ, NULL, NULL, true};
    TU_OK(road_model_forward(narrow, &s2, 1, c));
    const int64_t reach = L * (WINDOW - 1); /* token 0 reaches positions 0 .. reach */
    for (int64_t p = 0; p < SEQ; p++) {
        int same = memcmp(b + p * V, c + p * V, sizeof(float) * V) == 0;
        if (p > reach && !same) fail_msg("position %lld changed although token 0 is out of reach", (long long)p);
        if (p <= reach && same) fail_msg("position %lld did not change although token 0 is in reach", (long long)p);
    }
    /* outside the first window the narrow model differs from llama */
    assert_true(memcmp(a + (SEQ - 1) * V, b + (SEQ - 1) * V, sizeof(float) * V) != 0);
    /* cached decode == full recompute, one token at a time */
    road_kv_cache *kv;
    TU_OK(road_kv_cache_create(narrow, SEQ, &kv));
    for (int i = 0; i < SEQ; i++) {
        road_seq one = {&tok[i], 1, kv, NULL, false};
        TU_OK(road_model_forward(narrow, &one, 1, c));
        char what[64];
        snprintf(what, sizeof what, "cached step %d", i);
        tu_assert_close(what, c, b + i * V, V, LOGIT_ATOL, 0);
    }
    road_kv_cache_free(kv);
    free(a), free(b), free(c);
    road_model_free(llama);
    road_model_free(wide);
    road_model_free(narrow);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_window)};
    return cmocka_run_group_tests_name("llm_window", tests, NULL, NULL);
}
