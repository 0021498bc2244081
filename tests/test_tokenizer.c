/*
 * tests/test_tokenizer.c - the tokenizer's own checks (the comparison with Hugging Face's ids is
 * test_tokenizer_ref.c): malformed tokenizer.json / tokenizer_config.json files give clear
 * errors, chat templates give the text transformers' apply_chat_template gives (expected
 * strings worked out by hand from the Jinja templates in the fixture configs), streaming holds
 * back split characters, buffer sizing, round trips, and out-of-memory at every allocation of
 * load / encode / decode leaks nothing.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "road/tokenizer.h"
#include "testutil.h"

/* A tiny SentencePiece-style tokenizer (Llama-2 layout) used by the malformed and OOM tests. */
#define SP_HEAD                                                                                    \
    "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"  \
    "\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]}," \
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":"          \
    "{\"String\":\"\\u2581\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}," \
    "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"                             \
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"  \
    "\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":"     \
    "{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"                                 \
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":"  \
    "\"<s>\",\"special\":true},{\"id\":11,\"content\":\"<x>\",\"lstrip\":true,\"rstrip\":true,"    \
    "\"special\":false}],"
#define SP_MODEL                                                                                   \
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"fuse_unk\":"     \
    "true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"<0xC3>\":2,\"<0xA9>\":3,\"\\u2581\":4,\"a\":5,"       \
    "\"b\":6,\"\\u2581a\":7,\"ab\":8,\"\\u2581ab\":9,\"\\u2581b\":10},\"merges\":[\"\\u2581 a\","   \
    "\"a b\",\"\\u2581a b\",\"\\u2581 b\"]}}"
static const char SP_JSON[] = SP_HEAD SP_MODEL;

static road_tokenizer *load_str(const char *json) {
    road_tokenizer *t = NULL;
    TU_OK(road_tokenizer_load_json(json, strlen(json), NULL, 0, &t));
    return t;
}

static road_tokenizer *load_fixture(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    road_tokenizer *t = NULL;
    TU_OK(road_tokenizer_load(tu_fixture(rel), &t));
    return t;
}

static void expect_load_fails(const char *json, road_status want, const char *needle) {
    road_tokenizer *t = NULL;
    TU_FAILS(road_tokenizer_load_json(json, strlen(json), NULL, 0, &t), want, needle);
    assert_null(t);
}

static void expect_cfg_fails(const char *cfg, road_status want, const char *needle) {
    road_tokenizer *t = NULL;
    TU_FAILS(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t), want,
             needle);
    assert_null(t);
}

static void test_small_sp(void **state) {
    (void)state;
    road_tokenizer *t = load_str(SP_JSON);
    int32_t ids[64];
    size_t n = 0;
    /* "ab ab": "▁ab▁ab"; é has no token: byte fallback; "c" neither: unk */
    TU_OK(road_tokenizer_encode(t, "ab ab\xC3\xA9" "cc", 9, true, ids, 64, &n));
    int32_t want[] = {1, 9, 9, 2, 3, 0};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    char *text = NULL;
    size_t len = 0;
    TU_OK(road_tokenizer_decode(t, ids, n, false, &text, &len));
    assert_string_equal(text, "<s> ab ab\xC3\xA9<unk>");
    road_string_free(text);
    /* an added token with lstrip/rstrip swallows the spaces beside it */
    TU_OK(road_tokenizer_encode(t, "a <x> b", 7, false, ids, 64, &n));
    int32_t want2[] = {7, 11, 10};
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], want2[i]);
    /* sizing: NULL counts, a short buffer is ROAD_ERR_SHAPE with the full count */
    TU_OK(road_tokenizer_encode(t, "ab ab", 5, true, NULL, 0, &n));
    assert_int_equal(n, 3);
    TU_FAILS(road_tokenizer_encode(t, "ab ab", 5, true, ids, 2, &n), ROAD_ERR_SHAPE, "buffer");
    assert_int_equal(n, 3);
    assert_true(road_tokenizer_max_tokens(t, 5) >= 3);
    /* bad ids */
    int32_t bad[] = {5, 99};
    TU_FAILS(road_tokenizer_decode(t, bad, 2, false, &text, &len), ROAD_ERR_INVALID_ARG, "id 99");
    assert_int_equal(road_tokenizer_bos_id(t), 1);
    assert_int_equal(road_tokenizer_eos_id(t), -1);
    assert_true(road_tokenizer_is_special(t, 1));
    assert_false(road_tokenizer_is_special(t, 11));
    assert_int_equal(road_tokenizer_token_to_id(t, "<x>"), 11);
    assert_int_equal(road_tokenizer_token_to_id(t, "\xE2\x96\x81" "ab"), 9);
    assert_string_equal(road_tokenizer_token_to_piece(t, 2, NULL), "<0xC3>");
    assert_null(road_tokenizer_token_to_piece(t, 12, NULL));
    road_tokenizer_free(t);
    road_tokenizer_free(NULL);
}

static void test_malformed(void **state) {
    (void)state;
    expect_load_fails("not json", ROAD_ERR_FORMAT, "tokenizer.json");
    expect_load_fails("[]", ROAD_ERR_FORMAT, "JSON object");
    expect_load_fails("{}", ROAD_ERR_FORMAT, "no \"model\"");
    expect_load_fails("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", ROAD_ERR_UNSUPPORTED,
                      "Unigram");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", ROAD_ERR_FORMAT,
                      "merges must be a list");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}",
                      ROAD_ERR_FORMAT, "model.merges[0]");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
                      ROAD_ERR_FORMAT, "\"b\" is not in model.vocab");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\",\"b\"]]}}",
                      ROAD_ERR_FORMAT, "(the merged token)");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}",
                      ROAD_ERR_FORMAT, "model.vocab[\"a\"] must be an id");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e9},\"merges\":[]}}",
                      ROAD_ERR_FORMAT, "must be an id");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
                      ROAD_ERR_FORMAT, "gives id 0 to both");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
                      ROAD_ERR_FORMAT, "empty");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"added_tokens\":[{\"id\":0,\"content\":\"<x>\"}]}",
                      ROAD_ERR_FORMAT, "has id 0");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"added_tokens\":[{\"content\":\"<x>\"}]}",
                      ROAD_ERR_FORMAT, "added_tokens[0]");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],"
                      "\"unk_token\":\"<unk>\"}}", ROAD_ERR_FORMAT, "unk_token");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                      "\"behavior\":\"Isolated\",\"invert\":false}}",
                      ROAD_ERR_FORMAT, "does not compile");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"normalizer\":{\"type\":\"NFKD\"}}", ROAD_ERR_UNSUPPORTED, "NFKD");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}}", ROAD_ERR_UNSUPPORTED,
                      "UnicodeScripts");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},"
                      "\"behavior\":\"Merged\",\"invert\":false}}",
                      ROAD_ERR_FORMAT, "MergedWithPrevious");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Glob\":\" \"},"
                      "\"behavior\":\"Removed\"}}",
                      ROAD_ERR_FORMAT, "{\"String\"");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"}}}",
                      ROAD_ERR_FORMAT, "needs a \"behavior\"");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"decoder\":{\"type\":\"WordPiece\"}}", ROAD_ERR_UNSUPPORTED, "WordPiece");
    expect_load_fails("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{"
                      "\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],"
                      "\"special_tokens\":{}}}", ROAD_ERR_FORMAT, "\"<s>\"");
    /* tokenizer_config.json */
    road_tokenizer *t = NULL;
    const char *cfg = "{\"bos_token\": \"<nope>\"}";
    TU_FAILS(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t),
             ROAD_ERR_FORMAT, "bos_token \"<nope>\" is not a token");
    cfg = "{\"add_eos_token\": true}";
    TU_FAILS(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t),
             ROAD_ERR_FORMAT, "eos_token is not set");
    /* files */
    TU_FAILS(road_tokenizer_load("/nonexistent/dir/tokenizer.json", &t), ROAD_ERR_IO, NULL);
}

static void test_add_bos_override(void **state) {
    (void)state;
    road_tokenizer *t = NULL;
    const char *cfg = "{\"bos_token\": \"<s>\", \"add_bos_token\": false}";
    TU_OK(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t));
    int32_t ids[8];
    size_t n = 0;
    TU_OK(road_tokenizer_encode(t, "a", 1, true, ids, 8, &n));
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 7);
    road_tokenizer_free(t);
}

/* apply_chat with the given template (NULL: the tokenizer's own) must give `want`. */
static void check_chat(road_tokenizer *t, const char *tmpl, bool gen, const char *kwargs,
                       const road_chat_message *m, size_t n, const char *want) {
    TU_OK(road_tokenizer_set_chat_template(t, tmpl));
    road_chat_params p = road_chat_default_params();
    p.add_generation_prompt = gen;
    cJSON *kw = NULL;
    if (kwargs) TU_OK(road_json_parse(kwargs, strlen(kwargs), &kw));
    p.kwargs = kw;
    char *text = NULL;
    size_t len = 0;
    TU_OK(road_tokenizer_apply_chat(t, &p, m, n, &text, &len));
    if (strcmp(text, want) != 0) fprintf(stderr, "got:  [%s]\nwant: [%s]\n", text, want);
    assert_string_equal(text, want);
    assert_int_equal(len, strlen(want));
    road_string_free(text);
    cJSON_Delete(kw);
    TU_OK(road_tokenizer_set_chat_template(t, NULL));
}

static void test_chat(void **state) {
    (void)state;
    road_tokenizer *l3 = load_fixture("llama3"), *q3 = load_fixture("qwen3"), *l2 = load_fixture("llama2");
    const char *src = NULL;
    /* a template of the model's own is run as written, never mapped to a built-in */
    TU_OK(road_tokenizer_chat_template(l3, &src));
    assert_string_equal(src, "tokenizer_config.json's chat_template");
    TU_OK(road_tokenizer_chat_template(q3, NULL));
    TU_FAILS(road_tokenizer_chat_template(l2, &src), ROAD_ERR_NOT_FOUND, "no chat_template");
    TU_FAILS(road_tokenizer_chat_template(l2, &src), ROAD_ERR_NOT_FOUND, "--chat-template FILE|NAME");
    TU_FAILS(road_tokenizer_chat_template(l2, &src), ROAD_ERR_NOT_FOUND, "chatml, llama3");
    TU_FAILS(road_tokenizer_set_chat_template(l2, "vicuna"), ROAD_ERR_NOT_FOUND, "llama3");
    TU_FAILS(road_tokenizer_set_chat_template(l2, "vicuna"), ROAD_ERR_NOT_FOUND, "not a file");
    TU_FAILS(road_tokenizer_set_chat_template(l2, "no/such.jinja"), ROAD_ERR_IO,
             "no/such.jinja");
    TU_OK(road_tokenizer_set_chat_template(l2, "mistral"));
    TU_OK(road_tokenizer_chat_template(l2, &src));
    assert_string_equal(src, "built-in chat template mistral");
    TU_OK(road_tokenizer_set_chat_template(l2, NULL));
    TU_FAILS(road_tokenizer_chat_template(l2, &src), ROAD_ERR_NOT_FOUND, NULL);

    /* Llama-3: content |trim; the fixture's template writes the assistant header always. */
    road_chat_message m1[] = {{"system", "You are helpful."}, {"user", " Hi there \n"}};
    const char *w1 = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are "
                     "helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there"
                     "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    check_chat(l3, NULL, true, NULL, m1, 2, w1);
    check_chat(l3, NULL, false, NULL, m1, 2, w1);
    check_chat(l3, "llama3", true, NULL, m1, 2, w1); /* the built-in, for a model without one */

    /* Qwen3: an earlier assistant turn loses its <think> block; the last one keeps it. */
    road_chat_message m2[] = {{"system", "S"},
                              {"user", "Q1"},
                              {"assistant", "<think>\nr1\n</think>\n\nA1"},
                              {"user", "Q2"}};
    check_chat(q3, NULL, true, NULL, m2, 4,
               "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n"
               "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
               "<|im_start|>assistant\n");
    road_chat_message m3[] = {{"user", "Q"}, {"assistant", "<think>\nR\n</think>\n\nA"}};
    check_chat(q3, NULL, false, NULL, m3, 2,
               "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\nR\n</think>\n\n"
               "A<|im_end|>\n");
    check_chat(q3, NULL, true, "{\"enable_thinking\": false}", m3, 1,
               "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    check_chat(q3, "chatml", true, NULL, m3, 1, "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n");

    /* Llama-2 and Mistral, named (the fixture config has no template). */
    road_chat_message m4[] = {{"system", "SYS"}, {"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}};
    check_chat(l2, "llama2", true, NULL, m4, 4,
               "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]");
    check_chat(l2, "mistral", true, NULL, m4 + 1, 3,
               "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]");
    road_chat_params p = road_chat_default_params();
    TU_OK(road_tokenizer_set_chat_template(l2, "mistral"));
    char *text = NULL;
    TU_FAILS(road_tokenizer_apply_chat(l2, &p, m4, 4, &text, NULL), ROAD_ERR_INVALID_ARG, "alternate");
    TU_FAILS(road_tokenizer_apply_chat(l2, &p, m4 + 2, 2, &text, NULL), ROAD_ERR_INVALID_ARG,
             "alternate");
    TU_OK(road_tokenizer_set_chat_template(l2, NULL));
    TU_FAILS(road_tokenizer_apply_chat(l2, &p, m4, 4, &text, NULL), ROAD_ERR_NOT_FOUND, NULL);
    road_tokenizer_free(l3);
    road_tokenizer_free(q3);
    road_tokenizer_free(l2);

    /* any template is run as written, markers or not */
    road_tokenizer *t = NULL;
    const char *cfg = "{\"bos_token\": \"<s>\", \"chat_template\": \"{{ bos_token }}{% for m in "
                      "messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ eos_token is defined "
                      "}}{{ tools is none }}{% if add_generation_prompt %}A:{% endif %}\"}";
    TU_OK(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t));
    TU_OK(road_tokenizer_chat_template(t, NULL));
    road_chat_message m5[] = {{"user", "hi"}, {"assistant", "yo"}};
    check_chat(t, NULL, true, NULL, m5, 2, "<s>user=hi;assistant=yo;FalseTrueA:");
    check_chat(t, NULL, false, NULL, m5, 2, "<s>user=hi;assistant=yo;FalseTrue");
    /* kwargs are variables, and may stand in for a special token; not for messages */
    check_chat(t, NULL, false, "{\"bos_token\": \"B\", \"eos_token\": 1}", m5, 2,
               "Buser=hi;assistant=yo;TrueTrue");
    cJSON *bad = NULL;
    TU_OK(road_json_parse("{\"messages\": []}", 16, &bad));
    p.kwargs = bad;
    TU_FAILS(road_tokenizer_apply_chat(t, &p, m5, 2, &text, NULL), ROAD_ERR_INVALID_ARG, "messages");
    p.kwargs = NULL;
    cJSON_Delete(bad);
    road_tokenizer_free(t);

    /* a template the engine cannot parse: the tokenizer loads (encoding does not need it), the
     * chat fails with the line and a way out */
    cfg = "{\"chat_template\": \"ok\\n{% include 'x' %}\"}";
    TU_OK(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t));
    TU_FAILS(road_tokenizer_chat_template(t, NULL), ROAD_ERR_UNSUPPORTED, "line 2");
    TU_FAILS(road_tokenizer_apply_chat(t, &p, m5, 1, &text, NULL), ROAD_ERR_UNSUPPORTED,
             "--chat-template FILE|NAME");
    TU_OK(road_tokenizer_set_chat_template(t, "chatml")); /* the way out */
    TU_OK(road_tokenizer_apply_chat(t, &p, m5, 1, &text, NULL));
    assert_string_equal(text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    road_string_free(text);
    road_tokenizer_free(t);
    cfg = "{\"chat_template\": \"{% if %}\"}";
    TU_OK(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t));
    TU_FAILS(road_tokenizer_apply_chat(t, &p, m5, 1, &text, NULL), ROAD_ERR_FORMAT, "chat_template");
    road_tokenizer_free(t);
    /* named templates: "default" is used, "tool_use" when tools are passed; any by name; a
     * list without "default" has none to use unless one is named */
    cfg = "{\"chat_template\": [{\"name\": \"rag\", \"template\": \"R\"}, {\"name\": \"tool_use\", "
          "\"template\": \"T{{ tools | length }}\"}]}";
    TU_OK(road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t));
    TU_FAILS(road_tokenizer_chat_template(t, NULL), ROAD_ERR_NOT_FOUND, "rag, tool_use");
    cJSON *tools = NULL;
    TU_OK(road_json_parse("[{\"type\": \"function\"}]", 22, &tools));
    p.tools = tools;
    TU_OK(road_tokenizer_apply_chat(t, &p, m5, 1, &text, NULL));
    assert_string_equal(text, "T1");
    road_string_free(text);
    p.tools = NULL;
    TU_OK(road_tokenizer_set_chat_template(t, "rag"));
    TU_OK(road_tokenizer_chat_template(t, &src));
    assert_string_equal(src, "tokenizer_config.json's chat_template \"rag\"");
    TU_OK(road_tokenizer_apply_chat(t, &p, m5, 1, &text, NULL));
    assert_string_equal(text, "R");
    road_string_free(text);
    cJSON_Delete(tools);
    road_tokenizer_free(t);
    expect_cfg_fails("{\"chat_template\": [\"x\"]}", ROAD_ERR_FORMAT, "chat_template[0]");
    expect_cfg_fails("{\"chat_template\": 3}", ROAD_ERR_FORMAT, "chat_template");
}

/* Streaming: characters split over byte tokens come out whole, nothing is lost. */
static void check_stream(const char *name, const char *text, bool expect_hold) {
    road_tokenizer *t = load_fixture(name);
    size_t len = strlen(text), cap = road_tokenizer_max_tokens(t, len), n = 0;
    int32_t *ids = tu_alloc(cap * sizeof *ids);
    TU_OK(road_tokenizer_encode(t, text, len, true, ids, cap, &n));
    road_tokenizer_stream *s = NULL;
    TU_OK(road_tokenizer_stream_create(t, true, &s));
    char acc[512];
    size_t al = 0;
    bool held = false;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t pl;
        TU_OK(road_tokenizer_stream_push(s, ids[i], &p, &pl));
        if (pl == 0 && !road_tokenizer_is_special(t, ids[i])) held = true;
        assert_null(strstr(p, "\xEF\xBF\xBD"));
        memcpy(acc + al, p, pl);
        al += pl;
    }
    const char *p;
    size_t pl;
    TU_OK(road_tokenizer_stream_flush(s, &p, &pl));
    assert_int_equal(pl, 0);
    acc[al] = '\0';
    assert_string_equal(acc, text);
    if (expect_hold) assert_true(held);
    road_tokenizer_stream_free(s);
    free(ids);
    road_tokenizer_free(t);
}

static void test_stream(void **state) {
    (void)state;
    check_stream("llama2", "robot \xF0\x9F\xA4\x96 and \xF0\xA0\x80\x80 done", true);
    check_stream("llama3", "\xF0\xA0\x80\x80\xF0\xA0\x80\x81 ext-B", true);
    check_stream("qwen3", "caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87", false);
    /* a stream ending inside a character gives U+FFFD at flush */
    road_tokenizer *t = load_fixture("llama2");
    int32_t id = road_tokenizer_token_to_id(t, "<0xF0>");
    assert_true(id >= 0);
    road_tokenizer_stream *s = NULL;
    TU_OK(road_tokenizer_stream_create(t, false, &s));
    const char *p;
    size_t pl;
    TU_OK(road_tokenizer_stream_push(s, id, &p, &pl));
    assert_int_equal(pl, 0);
    TU_OK(road_tokenizer_stream_flush(s, &p, &pl));
    assert_string_equal(p, "\xEF\xBF\xBD");
    TU_FAILS(road_tokenizer_stream_push(s, -3, &p, &pl), ROAD_ERR_INVALID_ARG, "id -3");
    road_tokenizer_stream_free(s);
    road_tokenizer_free(t);
}

/* decode(encode(s)) == s for valid UTF-8 on the byte-level tokenizers (Hugging Face guarantees
 * it there; the SentencePiece ones lose the leading space, which Strip removes). */
static void test_roundtrip(void **state) {
    (void)state;
    const char *texts[] = {"Hello  world\n\n\tx", " leading", "caf\xC3\xA9 \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
                           "<|im_start|>user\nhi<|im_end|>", "1234567 don't"};
    const char *names[] = {"llama3", "qwen3"};
    for (int k = 0; k < 2; k++) {
        road_tokenizer *t = load_fixture(names[k]);
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            size_t len = strlen(texts[i]), cap = road_tokenizer_max_tokens(t, len), n = 0;
            int32_t *ids = tu_alloc(cap * sizeof *ids);
            TU_OK(road_tokenizer_encode(t, texts[i], len, false, ids, cap, &n));
            char *out = NULL;
            TU_OK(road_tokenizer_decode(t, ids, n, false, &out, NULL));
            assert_string_equal(out, texts[i]);
            road_string_free(out);
            free(ids);
        }
        road_tokenizer_free(t);
    }
}

/* Out of memory at every allocation of load, encode, decode and streaming: a clean
 * ROAD_ERR_NO_MEMORY and no leak. */
static void test_oom(void **state) {
    (void)state;
    const char *cfg = "{\"bos_token\": \"<s>\", \"chat_template\": \"<|im_start|>\"}";
    int64_t base = road__alloc_live_bytes();
    bool done = false;
    int64_t k;
    for (k = 0; !done && k < 100000; k++) {
        road__alloc_fail_after(k);
        road_tokenizer *t = NULL;
        road_status s = road_tokenizer_load_json(SP_JSON, strlen(SP_JSON), cfg, strlen(cfg), &t);
        int32_t ids[64];
        size_t n = 0;
        char *text = NULL;
        road_tokenizer_stream *st = NULL;
        if (s == ROAD_OK) s = road_tokenizer_encode(t, "ab ab\xC3\xA9 <x> c", 14, true, ids, 64, &n);
        if (s == ROAD_OK) s = road_tokenizer_decode(t, ids, n, false, &text, NULL);
        if (s == ROAD_OK) s = road_tokenizer_stream_create(t, false, &st);
        for (size_t i = 0; s == ROAD_OK && i < n; i++) {
            const char *p;
            size_t pl;
            s = road_tokenizer_stream_push(st, ids[i], &p, &pl);
        }
        road_chat_message m = {"user", "hi"};
        road_chat_params cp = road_chat_default_params();
        char *chat = NULL;
        if (s == ROAD_OK) s = road_tokenizer_apply_chat(t, &cp, &m, 1, &chat, NULL);
        road__alloc_fail_after(-1);
        if (s != ROAD_OK && s != ROAD_ERR_NO_MEMORY)
            fail_msg("allocation %lld: %s (%s)", (long long)k, road_status_name(s), road_last_error());
        done = s == ROAD_OK;
        road_string_free(chat);
        road_tokenizer_stream_free(st);
        road_string_free(text);
        road_tokenizer_free(t);
        if (road__alloc_live_bytes() != base)
            fail_msg("allocation %lld failing leaks %lld bytes", (long long)k,
                     (long long)(road__alloc_live_bytes() - base));
    }
    assert_true(done);
    printf("OOM: %lld allocation failure points checked\n", (long long)k);
}

/* The byte-level fixtures through the same OOM loop would take minutes; one point in the
 * middle of loading the real Qwen3 file (regex, NFC, 150K merges) is checked instead. */
static void test_oom_real(void **state) {
    (void)state;
    int64_t base = road__alloc_live_bytes();
    for (int64_t k = 0; k < 40; k += 3) {
        road__alloc_fail_after(k);
        road_tokenizer *t = NULL;
        road_status s = road_tokenizer_load(tu_fixture("tokenizers/qwen3"), &t);
        road__alloc_fail_after(-1);
        assert_true(s == ROAD_OK || s == ROAD_ERR_NO_MEMORY);
        road_tokenizer_free(t);
        assert_int_equal(road__alloc_live_bytes(), base);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_sp),  cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_add_bos_override), cmocka_unit_test(test_chat),
        cmocka_unit_test(test_stream),    cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_oom),       cmocka_unit_test(test_oom_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
