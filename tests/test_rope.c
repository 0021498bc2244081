/*
 * tests/test_rope.c - RoPE scaling (src/llm/rope.c): dynamic, yarn and longrope (and default,
 * linear, llama3 beside them) against transformers' own code, and end to end in a model.
 *
 *   - tests/fixtures/rope/rope_v4.json and rope_v5.json (tools/torchref/rope_ref.py, run with
 *     transformers 4.57 and 5.x): for each config.json and sequence length, the frequencies the
 *     model family's rotary embedding used, its attention factor and cos/sin rows. road parses
 *     the same config.json and must give them: the same config read alike whichever version's
 *     spelling (rope_scaling or rope_parameters) it uses.
 *   - A model (tiny-llama's weights) with each scaling runs forward and training; its logits
 *     differ from default RoPE's; a sequence's logits do not depend on the batch it runs in;
 *     yarn's cached decode equals recomputing.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llm/rope.h"
#include "testutil.h"

/* Frequencies: powf against torch's (vectorised) pow may differ by an ulp (6e-8); the golden
 * RoPE tolerance of test_llm_golden.c. */
#define FREQ_RTOL 1e-6
/* cos/sin: an ulp of the frequency times the position moves the angle by up to pos x 6e-8 x
 * inv_freq; observed differences are 0 or an ulp of cos/sin at these positions. */
#define CS_ATOL 2e-6
/* The attention factor is the same double arithmetic as Python's. */
#define ATTN_RTOL 1e-12
/* Batched vs alone: the GEMMs' row blocking may change the last bits. */
#define LOGIT_ATOL 1e-5

static void check_case(const cJSON *cs, const char *file) {
    const char *name = cJSON_GetObjectItem(cs, "name")->valuestring;
    const int64_t L = (int64_t)cJSON_GetObjectItem(cs, "seq_len")->valuedouble;
    char what[160];
    snprintf(what, sizeof what, "%s %s L=%lld", file, name, (long long)L);
    char *cfg = cJSON_PrintUnformatted(cJSON_GetObjectItem(cs, "config"));
    road_llm_config c;
    road_status st = road_llm_config_parse(cfg, strlen(cfg), &c);
    if (st != ROAD_OK) fail_msg("%s: %s: %s", what, road_status_name(st), road_last_error());
    free(cfg);
    road_rope r;
    TU_OK(road__rope_init(&r, &c, c.rope_theta, true));
    const int64_t half = r.rot / 2;
    const cJSON *inv = cJSON_GetObjectItem(cs, "inv_freq");
    assert_int_equal(cJSON_GetArraySize(inv), half);
    float *want = tu_alloc(sizeof(float) * (size_t)(2 * half));
    int64_t i = 0;
    for (const cJSON *e = inv->child; e; e = e->next) want[i++] = (float)e->valuedouble;
    tu_assert_close(what, road__rope_freqs(&r, L), want, half, 0, FREQ_RTOL);
    const double att = cJSON_GetObjectItem(cs, "attention_factor")->valuedouble;
    if (!(fabs(c.rope_attn_factor - att) <= ATTN_RTOL * att))
        fail_msg("%s: attention factor %.17g, transformers %.17g", what, c.rope_attn_factor, att);
    /* the table of one sequence of L tokens at positions 0..L-1 */
    int64_t *pos = tu_alloc(sizeof(int64_t) * (size_t)L);
    float *table = tu_alloc(sizeof(float) * (size_t)(L * r.rot));
    for (int64_t p = 0; p < L; p++) pos[p] = p;
    const int64_t r0 = 0, p0 = 0;
    road__rope_fill(table, &r, pos, L, &r0, &L, &p0, 1);
    const cJSON *ps = cJSON_GetObjectItem(cs, "positions");
    const cJSON *cosr = cJSON_GetObjectItem(cs, "cos")->child;
    const cJSON *sinr = cJSON_GetObjectItem(cs, "sin")->child;
    for (const cJSON *pe = ps->child; pe; pe = pe->next, cosr = cosr->next, sinr = sinr->next) {
        const int64_t p = (int64_t)pe->valuedouble;
        i = 0;
        for (const cJSON *e = cosr->child; e; e = e->next) want[i++] = (float)e->valuedouble;
        for (const cJSON *e = sinr->child; e; e = e->next) want[i++] = (float)e->valuedouble;
        assert_int_equal(i, 2 * half);
        char w2[200];
        snprintf(w2, sizeof w2, "%s cos|sin at %lld", what, (long long)p);
        tu_assert_close(w2, table + p * r.rot, want, 2 * half, CS_ATOL, 0);
    }
    free(pos), free(table), free(want);
    road__rope_free(&r);
}

static void check_file(const char *rel, int min_cases) {
    cJSON *j = tu_load_json(rel);
    const cJSON *cases = cJSON_GetObjectItem(j, "cases");
    assert_true(cJSON_GetArraySize(cases) >= min_cases);
    int seen[6] = {0};
    for (const cJSON *cs = cases->child; cs; cs = cs->next) {
        check_case(cs, rel);
        const char *t = cJSON_GetObjectItem(cs, "rope_type")->valuestring;
        seen[strcmp(t, "dynamic") == 0    ? 1
             : strcmp(t, "yarn") == 0     ? 2
             : strcmp(t, "longrope") == 0 ? 3
                                          : 0]++;
    }
    assert_true(seen[1] > 0 && seen[2] > 0 && seen[3] > 0);
    cJSON_Delete(j);
}

static void test_transformers_4(void **state) {
    (void)state;
    check_file("rope/rope_v4.json", 20);
}

static void test_transformers_5(void **state) {
    (void)state;
    check_file("rope/rope_v5.json", 25);
}

/* ---- in a model ------------------------------------------------------------------------------ */

#define SEQ 40
#define V 320
static char dir[64];

/* tiny-llama's weights with max_position_embeddings max_pos and `rope` as its rope_scaling. */
static road_model *load_with(const char *rope, int max_pos) {
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"model_type\": \"llama\", \"vocab_size\": 320, \"hidden_size\": 64, "
            "\"intermediate_size\": 176, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
            "\"num_key_value_heads\": 2, \"head_dim\": 16, \"rms_norm_eps\": 1e-06, "
            "\"rope_theta\": 10000.0, \"max_position_embeddings\": %d, "
            "\"tie_word_embeddings\": false, \"rope_scaling\": %s}",
            max_pos, rope);
    fclose(f);
    road_model *m;
    TU_OK(road_model_load(dir, NULL, &m));
    return m;
}

static const char *const scalings[] = {
    "{\"rope_type\": \"dynamic\", \"factor\": 2.0}",
    "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 8}",
    "{\"rope_type\": \"longrope\", \"short_factor\": [1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7], "
    "\"long_factor\": [1, 2, 4, 8, 16, 32, 64, 128], \"factor\": 4.0}",
};

static void test_model(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/road-rope-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tu_copy_file(ROAD_FIXTURES "/llama/tiny-llama/model.safetensors", path);
    road_token tok[SEQ];
    for (int i = 0; i < SEQ; i++) tok[i] = (road_token)((37 * i + 11) % V);
    float *base = tu_alloc(sizeof(float) * SEQ * V), *a = tu_alloc(sizeof(float) * SEQ * V);
    float *b = tu_alloc(sizeof(float) * (SEQ + 8) * V);
    road_model *plain = load_with("null", 32);
    road_seq s = {tok, SEQ, NULL, NULL, true};
    TU_OK(road_model_forward(plain, &s, 1, base));
    road_model_free(plain);
    for (size_t k = 0; k < sizeof scalings / sizeof scalings[0]; k++) {
        road_model *m = load_with(scalings[k], 32);
        TU_OK(road_model_forward(m, &s, 1, a));
        for (int64_t i = 0; i < SEQ * V; i++) assert_true(isfinite(a[i]));
        assert_true(memcmp(a, base, sizeof(float) * SEQ * V) != 0);
        /* the same sequence beside a short one: its own length decides, not the batch's */
        road_seq two[2] = {{tok, 8, NULL, NULL, true}, {tok, SEQ, NULL, NULL, true}};
        TU_OK(road_model_forward(m, two, 2, b));
        tu_assert_close(scalings[k], b + 8 * V, a, SEQ * V, LOGIT_ATOL, 0);
        road_seq shortone = {tok, 8, NULL, NULL, true};
        TU_OK(road_model_forward(m, &shortone, 1, a));
        tu_assert_close(scalings[k], b, a, 8 * V, LOGIT_ATOL, 0);
        /* training: full fine-tuning's loss and gradients are finite */
        TU_OK(road_model_set_full_training(m, true));
        int64_t ids[SEQ], labels[SEQ];
        for (int i = 0; i < SEQ; i++) ids[i] = labels[i] = tok[i];
        double loss = 0;
        TU_OK(road_model_loss_backward(m, ids, NULL, labels, 1, SEQ, &loss));
        assert_true(isfinite(loss) && loss > 0);
        road_model_free(m);
    }
    /* yarn does not depend on the length: cached decode == one prefill */
    road_model *m = load_with(scalings[1], SEQ);
    TU_OK(road_model_forward(m, &s, 1, a));
    road_kv_cache *kv;
    TU_OK(road_kv_cache_create(m, SEQ, &kv));
    for (int i = 0; i < SEQ; i++) {
        road_seq one = {&tok[i], 1, kv, NULL, false};
        TU_OK(road_model_forward(m, &one, 1, b));
        tu_assert_close("yarn cached step", b, a + i * V, V, LOGIT_ATOL, 0);
    }
    road_kv_cache_free(kv);
    road_model_free(m);
    /* dynamic NTK exists to run past max_position_embeddings: a cache holds up to
     * max_position_embeddings x factor (32 x 2) tokens, no more; plain RoPE stops at 32 */
    m = load_with(scalings[0], 32);
    assert_int_equal(road_llm_config_max_tokens(road_model_config(m)), 64);
    TU_OK(road_kv_cache_create(m, SEQ, &kv));
    road_seq whole = {tok, SEQ, kv, NULL, false};
    TU_OK(road_model_forward(m, &whole, 1, a));
    road_kv_cache_free(kv);
    road_kv_cache *too_big = NULL;
    TU_FAILS(road_kv_cache_create(m, 65, &too_big), ROAD_ERR_INVALID_ARG,
             "1 to 64 tokens (max_position_embeddings x the dynamic RoPE factor)");
    road_model_free(m);
    m = load_with("null", 32);
    assert_int_equal(road_llm_config_max_tokens(road_model_config(m)), 32);
    TU_FAILS(road_kv_cache_create(m, 33, &too_big), ROAD_ERR_INVALID_ARG,
             "1 to 32 tokens (max_position_embeddings)");
    road_model_free(m);
    free(base), free(a), free(b);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transformers_4),
        cmocka_unit_test(test_transformers_5),
        cmocka_unit_test(test_model),
    };
    return cmocka_run_group_tests_name("rope", tests, NULL, NULL);
}
