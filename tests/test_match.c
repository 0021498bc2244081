/*
 * tests/test_match.c - target selection (which layers an adapter lands on), checked against
 * PEFT's rules as written in BaseTuner._check_target_module_exists and RoadConfig:
 *   - a list entry matches a layer whose name equals it or ends with "." + entry;
 *   - one string is a regex that must match the whole name (Python's re.fullmatch);
 *   - "all-linear" is every linear layer but the output head; embeddings never;
 *   - null takes the model type's default (q_proj, v_proj for the Llama family);
 * and the errors: nothing matched, a group_size that does not divide a matched layer, an
 * embedding selected by name, an unknown model type with null targets, a bad regex.
 * Every case goes through the public road_adapter_set_match on a set built from
 * road_layer_desc arrays; the expected layer names are written out by hand from the rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter/match.h"
#include "testutil.h"

/* Every layer's in_features: matching never reads weights, so they stay small and zero. */
#define IN_FEATURES 4
/* Layers per test model, at most. */
#define MAX_LAYERS 24
/* Length of the "name,name,..." strings the matched layers are compared as. */
#define NAMES_CAP 2048

typedef struct layer_spec {
    const char *name;
    road_layer_kind kind;
    int64_t out;
    bool head;
} layer_spec;

typedef struct model {
    road_adapter_set *s;
    float *w; /* one zeroed buffer holding every layer's weight */
} model;

static model model_make(const char *model_type, const layer_spec *ls, int n) {
    assert_true(n <= MAX_LAYERS);
    road_layer_desc d[MAX_LAYERS];
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += ls[i].out * IN_FEATURES;
    model m = {NULL, tu_alloc((size_t)total * sizeof(float))};
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        memset(&d[i], 0, sizeof d[i]);
        d[i].name = ls[i].name;
        d[i].kind = ls[i].kind;
        d[i].in_features = IN_FEATURES;
        d[i].out_features = ls[i].out;
        d[i].weight = m.w + off;
        d[i].is_output_head = ls[i].head;
        off += ls[i].out * IN_FEATURES;
    }
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = model_type;
    p.layers = d;
    p.n_layers = n;
    TU_OK(road_adapter_set_create(&p, &m.s));
    assert_int_equal(road_adapter_set_layer_count(m.s), n);
    return m;
}

static void model_free(model *m) {
    road_adapter_set_free(m->s);
    free(m->w);
}

/* A config with group_size 2 (divides every even layer) and the given targets. */
static road_config *cfg_list(const char *const *names, int32_t n) {
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_group_size(c, 2));
    TU_OK(road_config_set_target_list(c, names, n));
    return c;
}

static road_config *cfg_regex(const char *re) {
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_group_size(c, 2));
    TU_OK(road_config_set_target_regex(c, re));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_REGEX);
    return c;
}

/* The layers cfg matches as "name,name,..." in layer order ("" if none); the status too. */
static road_status matched(const model *m, const road_config *cfg, char *buf) {
    int32_t idx[MAX_LAYERS], n = -1;
    for (int i = 0; i < MAX_LAYERS; i++) idx[i] = -7;
    road_status s = road_adapter_set_match(m->s, cfg, idx, MAX_LAYERS, &n);
    buf[0] = '\0';
    if (s != ROAD_OK) return s;
    assert_true(n >= 0 && n <= road_adapter_set_layer_count(m->s));
    size_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        assert_true(idx[i] >= 0 && idx[i] < road_adapter_set_layer_count(m->s));
        if (i > 0) assert_true(idx[i] > idx[i - 1]); /* ascending, no duplicates */
        k += (size_t)snprintf(buf + k, NAMES_CAP - k, "%s%s", i ? "," : "",
                              road_adapter_set_layer_name(m->s, idx[i]));
        assert_true(k < NAMES_CAP);
    }
    return s;
}

/* cfg must match exactly the layers in `want` ("a,b,c", in layer order). */
#define EXPECT_MATCH(m, cfg, want) expect_match((m), (cfg), (want), __LINE__)
static void expect_match(const model *m, const road_config *cfg, const char *want, int line) {
    char got[NAMES_CAP];
    road_status s = matched(m, cfg, got);
    if (s != ROAD_OK) {
        print_error("line %d: match failed with %s: %s (wanted %s)\n", line, road_status_name(s),
                    road_last_error(), want);
        fail();
    }
    if (strcmp(got, want) != 0) {
        print_error("line %d: matched layers\n  got:  %s\n  want: %s\n", line, got, want);
        fail();
    }
}

/* Same, for a config that must be refused with `status` and a message containing `needle`. */
#define EXPECT_REFUSED(m, cfg, status, needle)                                                     \
    expect_refused((m), (cfg), (status), (needle), __LINE__)
static void expect_refused(const model *m, const road_config *cfg, road_status status,
                           const char *needle, int line) {
    char got[NAMES_CAP];
    road_status s = matched(m, cfg, got);
    char where[64];
    snprintf(where, sizeof where, "match (line %d)", line);
    tu_check_fails(s, status, needle, where, __FILE__, line);
}

/* ---- list entries ----------------------------------------------------------------------- */

#define L(name)                                                                                    \
    { name, ROAD_LAYER_LINEAR, 8, false }

static const layer_spec list_model[] = {
    {"model.embed_tokens", ROAD_LAYER_EMBEDDING, 8, false},
    L("model.layers.0.self_attn.q_proj"),
    L("model.layers.0.self_attn.xq_proj"),
    L("model.layers.0.self_attn.v_proj"),
    L("model.layers.1.self_attn.q_proj"),
    L("model.layers.1.self_attn.v_proj"),
    L("model.layers.10.self_attn.q_proj"),
    L("q_proj"),
    {"lm_head", ROAD_LAYER_LINEAR, 8, true},
};
#define N_LIST_MODEL ((int)(sizeof list_model / sizeof list_model[0]))

static void test_list_entry_rule(void **state) {
    (void)state;
    /* The rule itself (PEFT: key == target or key.endswith("." + target)). */
    assert_true(road__match_list_entry("a.b.q_proj", "q_proj"));
    assert_true(road__match_list_entry("q_proj", "q_proj"));
    assert_true(road__match_list_entry("a.b.q_proj", "b.q_proj"));
    assert_true(road__match_list_entry("a.b.q_proj", "a.b.q_proj"));
    assert_false(road__match_list_entry("a.b.xq_proj", "q_proj"));
    assert_false(road__match_list_entry("a.b.q_proj", "proj"));
    assert_false(road__match_list_entry("a.b.q_proj", "q_pro"));
    assert_false(road__match_list_entry("q_proj", "a.q_proj")); /* entry longer than the name */
    assert_false(road__match_list_entry("a.b1.q_proj", "1.q_proj"));
    assert_false(road__match_list_entry("a.b.q_proj", ""));

    model m = model_make("llama", list_model, N_LIST_MODEL);
    static const char *const q[] = {"q_proj"};
    road_config *c = cfg_list(q, 1);
    EXPECT_MATCH(&m, c,
                 "model.layers.0.self_attn.q_proj,model.layers.1.self_attn.q_proj,"
                 "model.layers.10.self_attn.q_proj,q_proj");
    road_config_free(c);

    static const char *const sq[] = {"self_attn.q_proj"};
    c = cfg_list(sq, 1);
    EXPECT_MATCH(&m, c,
                 "model.layers.0.self_attn.q_proj,model.layers.1.self_attn.q_proj,"
                 "model.layers.10.self_attn.q_proj");
    road_config_free(c);

    /* "layers.0..." must not catch layer 10 ("...layers.10.self_attn.q_proj" ends with
     * "0.self_attn.q_proj" preceded by '1', not '.'). */
    static const char *const l0[] = {"layers.0.self_attn.q_proj"};
    c = cfg_list(l0, 1);
    EXPECT_MATCH(&m, c, "model.layers.0.self_attn.q_proj");
    road_config_free(c);

    static const char *const full[] = {"model.layers.1.self_attn.v_proj"};
    c = cfg_list(full, 1);
    EXPECT_MATCH(&m, c, "model.layers.1.self_attn.v_proj");
    road_config_free(c);

    /* The output head is left out of "all-linear" only; a list may name it (PEFT too). */
    static const char *const head[] = {"lm_head"};
    c = cfg_list(head, 1);
    EXPECT_MATCH(&m, c, "lm_head");
    road_config_free(c);

    /* Duplicates collapse (PEFT keeps target_modules as a set): each layer once. */
    static const char *const dup[] = {"v_proj", "q_proj", "v_proj", "layers.1.self_attn.v_proj"};
    c = cfg_list(dup, 4);
    EXPECT_MATCH(&m, c,
                 "model.layers.0.self_attn.q_proj,model.layers.0.self_attn.v_proj,"
                 "model.layers.1.self_attn.q_proj,model.layers.1.self_attn.v_proj,"
                 "model.layers.10.self_attn.q_proj,q_proj");
    road_config_free(c);

    /* The same through adapter_config.json. */
    static const char json[] = "{\"peft_type\": \"ROAD\", \"group_size\": 2, "
                               "\"target_modules\": [\"v_proj\", \"v_proj\", \"xq_proj\"]}";
    c = NULL;
    TU_OK(road_config_parse(json, strlen(json), &c));
    EXPECT_MATCH(&m, c,
                 "model.layers.0.self_attn.xq_proj,model.layers.0.self_attn.v_proj,"
                 "model.layers.1.self_attn.v_proj");
    road_config_free(c);

    /* A suffix that is not a whole dotted component matches nothing. */
    static const char *const part[] = {"proj", "_proj", "self_attn"};
    c = cfg_list(part, 3);
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, "matched no layer");
    road_config_free(c);
    model_free(&m);
}

/* road_adapter_set_match writes at most `cap` indices and reports the full count. */
static void test_match_cap(void **state) {
    (void)state;
    model m = model_make("llama", list_model, N_LIST_MODEL);
    static const char *const q[] = {"q_proj"};
    road_config *c = cfg_list(q, 1);
    int32_t idx[4] = {-7, -7, -7, -7}, n = -1;
    TU_OK(road_adapter_set_match(m.s, c, idx, 2, &n));
    assert_int_equal(n, 4);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 4);
    assert_int_equal(idx[2], -7); /* beyond cap: untouched */
    n = -1;
    TU_OK(road_adapter_set_match(m.s, c, NULL, 0, &n)); /* count only */
    assert_int_equal(n, 4);
    TU_FAILS(road_adapter_set_match(m.s, NULL, idx, 4, &n), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_adapter_set_match(m.s, c, idx, 4, NULL), ROAD_ERR_INVALID_ARG, NULL);
    road_config_free(c);
    model_free(&m);
}

/* ---- regex: Python re.fullmatch ----------------------------------------------------------- */

static void test_regex_fullmatch(void **state) {
    (void)state;
    static const layer_spec ls[] = {
        L("a.q_proj"), L("q_proj"), L("a.xq_proj"), L("a.q_proj_x"), L("a.q_proj.lora"),
    };
    model m = model_make("llama", ls, 5);
    road_config *c = cfg_regex(".*q_proj");
    EXPECT_MATCH(&m, c, "a.q_proj,q_proj,a.xq_proj");
    road_config_free(c);
    /* As one string, "q_proj" is a regex: it full-matches only a layer named exactly so. */
    c = cfg_regex("q_proj");
    EXPECT_MATCH(&m, c, "q_proj");
    road_config_free(c);
    /* No implicit anchoring at one end only: neither a prefix nor a suffix match counts. */
    c = cfg_regex("a\\.q_proj");
    EXPECT_MATCH(&m, c, "a.q_proj");
    road_config_free(c);
    c = cfg_regex("xq_proj|.*lora");
    EXPECT_MATCH(&m, c, "a.q_proj.lora");
    road_config_free(c);
    model_free(&m);

    static const layer_spec ll[] = {
        L("model.layers.0.self_attn.q_proj"),  L("model.layers.0.self_attn.k_proj"),
        L("model.layers.0.self_attn.v_proj"),  L("model.layers.1.self_attn.q_proj"),
        L("model.layers.1.self_attn.v_proj"),  L("model.layers.2.self_attn.q_proj"),
        L("model.layers.10.self_attn.v_proj"), L("xmodel.layers.0.self_attn.q_proj"),
    };
    m = model_make("llama", ll, 8);
    c = cfg_regex("model\\.layers\\.[01]\\.self_attn\\.(q|v)_proj");
    EXPECT_MATCH(&m, c,
                 "model.layers.0.self_attn.q_proj,model.layers.0.self_attn.v_proj,"
                 "model.layers.1.self_attn.q_proj,model.layers.1.self_attn.v_proj");
    road_config_free(c);
    model_free(&m);

    /* re.fullmatch("a|ab", "ab") matches: fullmatch backtracks into the longer alternative
     * rather than taking the first alternative that matches a prefix. */
    static const layer_spec alt[] = {L("a"), L("ab"), L("abc"), L("b")};
    m = model_make(NULL, alt, 4);
    c = cfg_regex("a|ab");
    EXPECT_MATCH(&m, c, "a,ab");
    road_config_free(c);
    c = cfg_regex("(a|ab)(c|bcd)?");
    EXPECT_MATCH(&m, c, "a,ab,abc");
    road_config_free(c);
    c = cfg_regex("a*?");
    EXPECT_MATCH(&m, c, "a");
    road_config_free(c);
    model_free(&m);
}

/* Python 3's \d and \w on str patterns are Unicode-aware: PCRE2_UCP. */
static void test_regex_unicode(void **state) {
    (void)state;
    static const layer_spec ls[] = {
        L("model.layers.3.mlp"),
        L("model.layers.\xd9\xa3.mlp"), /* U+0663 ARABIC-INDIC DIGIT THREE (Nd) */
        L("model.layers.x.mlp"),
        L("model.\xc3\xa9t\xc3\xa9.mlp"), /* "été" */
        L("model.a-b.mlp"),
    };
    model m = model_make(NULL, ls, 5);
    road_config *c = cfg_regex("model\\.layers\\.\\d\\.mlp");
    EXPECT_MATCH(&m, c, "model.layers.3.mlp,model.layers.\xd9\xa3.mlp");
    road_config_free(c);
    c = cfg_regex("model\\.\\w+\\.mlp");
    EXPECT_MATCH(&m, c, "model.\xc3\xa9t\xc3\xa9.mlp");
    road_config_free(c);
    /* "." is one character (UTF mode), not one byte: "layers\\..\\.mlp" takes U+0663. */
    c = cfg_regex("model\\.layers\\..\\.mlp");
    EXPECT_MATCH(&m, c, "model.layers.3.mlp,model.layers.\xd9\xa3.mlp,model.layers.x.mlp");
    road_config_free(c);
    model_free(&m);
}

/* A regex that does not compile is refused where the config is made, with PCRE2's message. */
static void test_regex_bad(void **state) {
    (void)state;
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_FAILS(road_config_set_target_regex(c, "("), ROAD_ERR_CONFIG,
             "does not compile: missing closing parenthesis");
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_DEFAULT); /* unchanged */
    TU_FAILS(road_config_set_targets_from_string(c, "(q|v"), ROAD_ERR_CONFIG,
             "missing closing parenthesis");
    TU_FAILS(road_config_set_target_regex(c, "a)"), ROAD_ERR_CONFIG, "does not compile");
    road_config_free(c);
    static const char json[] = "{\"peft_type\": \"ROAD\", \"target_modules\": \"(\"}";
    c = (road_config *)(uintptr_t)1;
    TU_FAILS(road_config_parse(json, strlen(json), &c), ROAD_ERR_CONFIG,
             "missing closing parenthesis");
    assert_null(c);
}

/* ---- all-linear ----------------------------------------------------------------------------- */

static void test_all_linear(void **state) {
    (void)state;
    static const layer_spec ls[] = {
        {"model.embed_tokens", ROAD_LAYER_EMBEDDING, 8, false},
        L("model.layers.0.self_attn.q_proj"),
        L("model.layers.0.mlp.down_proj"),
        {"model.norm_proj_table", ROAD_LAYER_EMBEDDING, 8, false},
        L("score"),
        {"lm_head", ROAD_LAYER_LINEAR, 8, true},
    };
    model m = model_make("llama", ls, 6);
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_group_size(c, 2));
    TU_OK(road_config_set_target_all_linear(c));
    EXPECT_MATCH(&m, c, "model.layers.0.self_attn.q_proj,model.layers.0.mlp.down_proj,score");
    /* Any ASCII case, as PEFT's target_modules.lower() == "all-linear". */
    TU_OK(road_config_set_target_regex(c, "ALL-Linear"));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_ALL_LINEAR);
    EXPECT_MATCH(&m, c, "model.layers.0.self_attn.q_proj,model.layers.0.mlp.down_proj,score");
    model_free(&m);

    /* A model whose only linear layer is the head: nothing to adapt. */
    static const layer_spec head_only[] = {
        {"model.embed_tokens", ROAD_LAYER_EMBEDDING, 8, false},
        {"lm_head", ROAD_LAYER_LINEAR, 8, true},
    };
    m = model_make("llama", head_only, 2);
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, "'all-linear'");
    road_config_free(c);
    model_free(&m);
}

/* ---- null: the model type's defaults -------------------------------------------------------- */

static const layer_spec llama_layer[] = {
    {"model.embed_tokens", ROAD_LAYER_EMBEDDING, 8, false},
    L("model.layers.0.self_attn.q_proj"),
    L("model.layers.0.self_attn.k_proj"),
    L("model.layers.0.self_attn.v_proj"),
    L("model.layers.0.self_attn.o_proj"),
    L("model.layers.0.mlp.gate_proj"),
    L("model.layers.0.mlp.up_proj"),
    L("model.layers.0.mlp.down_proj"),
    {"lm_head", ROAD_LAYER_LINEAR, 8, true},
};
#define N_LLAMA_LAYER ((int)(sizeof llama_layer / sizeof llama_layer[0]))

static void test_default_targets(void **state) {
    (void)state;
    static const char *const types[] = {"llama", "mistral", "qwen2", "qwen3"};
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_group_size(c, 2));
    assert_int_equal(road_config_target_kind(c), ROAD_TARGET_DEFAULT);
    for (int t = 0; t < 4; t++) {
        const char *const *d = road__default_targets(types[t]);
        assert_non_null(d);
        assert_string_equal(d[0], "q_proj");
        assert_string_equal(d[1], "v_proj");
        assert_null(d[2]);
        model m = model_make(types[t], llama_layer, N_LLAMA_LAYER);
        EXPECT_MATCH(&m, c, "model.layers.0.self_attn.q_proj,model.layers.0.self_attn.v_proj");
        model_free(&m);
    }
    assert_null(road__default_targets("gpt2"));
    assert_null(road__default_targets(NULL));
    assert_null(road__default_targets("Llama")); /* model_type is case-sensitive in PEFT too */

    model m = model_make("gpt2", llama_layer, N_LLAMA_LAYER);
    EXPECT_REFUSED(&m, c, ROAD_ERR_CONFIG, "set target_modules");
    EXPECT_REFUSED(&m, c, ROAD_ERR_CONFIG, "'gpt2'");
    model_free(&m);
    m = model_make(NULL, llama_layer, N_LLAMA_LAYER);
    EXPECT_REFUSED(&m, c, ROAD_ERR_CONFIG, "set target_modules");
    model_free(&m);
    road_config_free(c);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_no_match_message(void **state) {
    (void)state;
    model m = model_make("llama", llama_layer, N_LLAMA_LAYER);
    static const char *const t[] = {"c_attn", "c_proj"};
    road_config *c = cfg_list(t, 2);
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, "'c_attn', 'c_proj'");
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, "model.layers.0.self_attn.q_proj");
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, "9 layers");
    int32_t n = -1;
    (void)road_adapter_set_match(m.s, c, NULL, 0, &n);
    assert_int_equal(n, 0);
    road_config_free(c);

    c = cfg_regex(".*\\.c_attn");
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, ".*\\.c_attn");
    EXPECT_REFUSED(&m, c, ROAD_ERR_NOT_FOUND, "model.layers.0.self_attn.q_proj");
    road_config_free(c);

    /* The default targets on a model without them: NOT_FOUND naming q_proj and v_proj. */
    static const layer_spec gpt[] = {L("h.0.attn.c_attn"), L("h.0.attn.c_proj")};
    model g = model_make("llama", gpt, 2);
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_group_size(c, 2));
    EXPECT_REFUSED(&g, c, ROAD_ERR_NOT_FOUND, "'q_proj', 'v_proj'");
    EXPECT_REFUSED(&g, c, ROAD_ERR_NOT_FOUND, "h.0.attn.c_attn");
    EXPECT_REFUSED(&g, c, ROAD_ERR_NOT_FOUND, "2 layers");
    road_config_free(c);
    model_free(&g);
    model_free(&m);
}

static void test_group_size_error(void **state) {
    (void)state;
    static const layer_spec ls[] = {
        {"model.layers.0.self_attn.q_proj", ROAD_LAYER_LINEAR, 16, false},
        {"model.layers.0.self_attn.v_proj", ROAD_LAYER_LINEAR, 12, false},
        {"model.layers.0.mlp.odd_proj", ROAD_LAYER_LINEAR, 7, false},
    };
    model m = model_make("llama", ls, 3);
    road_config *c = NULL;
    TU_OK(road_config_create(&c));
    TU_OK(road_config_set_group_size(c, 8));
    /* Default targets: v_proj (12) is not a multiple of 8. */
    EXPECT_REFUSED(&m, c, ROAD_ERR_SHAPE, "model.layers.0.self_attn.v_proj");
    EXPECT_REFUSED(&m, c, ROAD_ERR_SHAPE, "not divisible by group_size 8");
    TU_OK(road_config_set_group_size(c, 4));
    EXPECT_MATCH(&m, c, "model.layers.0.self_attn.q_proj,model.layers.0.self_attn.v_proj");
    /* all-linear reaches the odd layer. */
    TU_OK(road_config_set_target_all_linear(c));
    EXPECT_REFUSED(&m, c, ROAD_ERR_SHAPE, "model.layers.0.mlp.odd_proj");
    TU_OK(road_config_set_target_regex(c, ".*\\.q_proj"));
    EXPECT_MATCH(&m, c, "model.layers.0.self_attn.q_proj");
    road_config_free(c);
    model_free(&m);
}

static void test_embedding_selected(void **state) {
    (void)state;
    model m = model_make("llama", llama_layer, N_LLAMA_LAYER);
    static const char *const t[] = {"q_proj", "embed_tokens"};
    road_config *c = cfg_list(t, 2);
    EXPECT_REFUSED(&m, c, ROAD_ERR_CONFIG, "'model.embed_tokens'");
    EXPECT_REFUSED(&m, c, ROAD_ERR_CONFIG, "linear layers only");
    road_config_free(c);
    c = cfg_regex("model\\.(embed_tokens|layers\\.0\\.mlp\\.up_proj)");
    EXPECT_REFUSED(&m, c, ROAD_ERR_CONFIG, "'model.embed_tokens'");
    road_config_free(c);
    /* Refused in road_adapter_set_add too, and nothing is added. */
    c = cfg_list(t, 2);
    TU_FAILS(road_adapter_set_add(m.s, "emb", c, 1), ROAD_ERR_CONFIG, "model.embed_tokens");
    assert_int_equal(road_adapter_set_count(m.s), 0);
    for (int32_t i = 0; i < road_adapter_set_layer_count(m.s); i++)
        assert_false(road_adapter_set_on_layer(m.s, "emb", i));
    road_config_free(c);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_entry_rule),  cmocka_unit_test(test_match_cap),
        cmocka_unit_test(test_regex_fullmatch),  cmocka_unit_test(test_regex_unicode),
        cmocka_unit_test(test_regex_bad),        cmocka_unit_test(test_all_linear),
        cmocka_unit_test(test_default_targets),  cmocka_unit_test(test_no_match_message),
        cmocka_unit_test(test_group_size_error), cmocka_unit_test(test_embedding_selected),
    };
    return cmocka_run_group_tests_name("match", tests, NULL, NULL);
}
