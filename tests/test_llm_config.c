/*
 * tests/test_llm_config.c - config.json and generation_config.json of Llama-family models
 * (src/llm/config.c).
 *
 * The three fixture checkpoints (tests/fixtures/llama/) are read field by field; hand-written
 * configs cover what the fixtures do not: mistral, linear RoPE scaling, transformers v5's
 * rope_parameters and dtype, eos lists, defaults. Every refusal is checked for its status and
 * for a message naming the field. Out-of-memory injection runs every allocation of a load to
 * failure and checks that nothing leaks.
 *
 * JSON in this file is written with single quotes for readability; json() turns them into
 * double quotes (no test string needs an apostrophe).
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "testutil.h"

/* A small llama config every hand-written case starts from; later duplicate keys win (as in a
 * Python dict), so a case appends the fields it changes. */
#define BASE                                                                                       \
    "{'model_type':'llama','vocab_size':320,'hidden_size':64,'intermediate_size':176,"             \
    "'num_hidden_layers':2,'num_attention_heads':4,'num_key_value_heads':2"

/* ---- helpers -------------------------------------------------------------------------------- */

static int setup_live(void **state) {
    int64_t *start = malloc(sizeof *start);
    if (!start) return -1;
    *start = road__alloc_live_bytes();
    *state = start;
    return 0;
}

static int teardown_live(void **state) {
    int64_t *start = *state;
    int64_t now = road__alloc_live_bytes();
    int leaked = now != *start;
    if (leaked) print_error("leak: %lld bytes still allocated\n", (long long)(now - *start));
    free(start);
    return leaked ? -1 : 0;
}

/* s with ' turned into " (static buffer, valid until the next call). */
static const char *json(const char *s) {
    static char buf[8192];
    size_t n = strlen(s);
    assert_true(n < sizeof buf);
    for (size_t i = 0; i <= n; i++) buf[i] = s[i] == '\'' ? '"' : s[i];
    return buf;
}

/* BASE + extra + "}" parsed. */
static road_status parse_extra(const char *extra, road_llm_config *c) {
    char text[8192];
    snprintf(text, sizeof text, "%s%s}", BASE, extra);
    const char *j = json(text);
    return road_llm_config_parse(j, strlen(j), c);
}

/* The parse must fail with `want` and a message containing `needle`; *out stays untouched. */
static void expect_refused(const char *extra, road_status want, const char *needle, int line) {
    road_llm_config c;
    memset(&c, 0xAB, sizeof c);
    road_llm_config before = c;
    road_status s = parse_extra(extra, &c);
    char what[512];
    snprintf(what, sizeof what, "BASE + %s", extra);
    tu_check_fails(s, want, needle, what, __FILE__, line);
    if (memcmp(&c, &before, sizeof c) != 0) {
        print_error("%s:%d: a refused parse changed *out\n", __FILE__, line);
        fail();
    }
}
#define REFUSED(extra, status, needle) expect_refused((extra), (status), (needle), __LINE__)

static void parse_ok(const char *extra, road_llm_config *c) {
    road_status s = parse_extra(extra, c);
    if (s != ROAD_OK) {
        print_error("BASE + %s: %s: %s\n", extra, road_status_name(s), road_last_error());
        fail();
    }
}

static char *make_temp_dir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/road_llm_config_XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    char *copy = strdup(d);
    assert_non_null(copy);
    return copy;
}

static void write_file(const char *dir, const char *name, const char *text, size_t len) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

static void check_shape(const road_llm_config *c) {
    assert_int_equal(c->vocab_size, 320);
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->intermediate_size, 176);
    assert_int_equal(c->n_layers, 2);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_dim, 16);
}

/* ---- the fixtures ---------------------------------------------------------------------------- */

static void test_fixture_tiny_llama(void **state) {
    (void)state;
    road_llm_config c;
    TU_OK(road_llm_config_load(tu_fixture("llama/tiny-llama"), &c));
    assert_string_equal(c.model_type, "llama");
    check_shape(&c);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_true(c.rope_factor == 1.0);
    assert_int_equal(c.max_position_embeddings, 128);
    assert_int_equal(c.sliding_window, 0);
    assert_false(c.tie_word_embeddings);
    assert_false(c.qkv_bias);
    assert_false(c.o_bias);
    assert_false(c.mlp_bias);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_token_ids[0], 2);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F32);

    /* The file itself reads the same as its folder. */
    road_llm_config f;
    TU_OK(road_llm_config_load(tu_fixture("llama/tiny-llama/config.json"), &f));
    assert_memory_equal(&c, &f, sizeof c);
}

static void test_fixture_tiny_qwen2(void **state) {
    (void)state;
    road_llm_config c;
    TU_OK(road_llm_config_load(tu_fixture("llama/tiny-qwen2"), &c));
    assert_string_equal(c.model_type, "qwen2");
    check_shape(&c); /* head_dim derived: no head_dim key in the file */
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_int_equal(c.max_position_embeddings, 128);
    assert_int_equal(c.sliding_window, 0); /* use_sliding_window false, sliding_window null */
    assert_true(c.tie_word_embeddings);
    assert_true(c.qkv_bias);
    assert_false(c.o_bias);
    assert_false(c.mlp_bias);
    assert_int_equal(c.bos_token_id, 318);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_token_ids[0], 319);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_BF16);
}

static void test_fixture_tiny_llama3_rope(void **state) {
    (void)state;
    road_llm_config c;
    TU_OK(road_llm_config_load(tu_fixture("llama/tiny-llama3-rope"), &c));
    assert_string_equal(c.model_type, "llama");
    check_shape(&c);
    assert_true(c.rope_theta == 500000.0);
    assert_int_equal(c.rope_type, ROAD_ROPE_LLAMA3);
    assert_true(c.rope_factor == 8.0);
    assert_true(c.rope_low_freq_factor == 1.0);
    assert_true(c.rope_high_freq_factor == 4.0);
    assert_int_equal(c.rope_original_max_pos, 32);
    assert_int_equal(c.max_position_embeddings, 128);
    assert_false(c.tie_word_embeddings);
    assert_false(c.qkv_bias || c.o_bias || c.mlp_bias);
    assert_int_equal(c.bos_token_id, 1);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos_token_ids[0], 2);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F32);
}

static void test_fixture_generation_configs(void **state) {
    (void)state;
    static const struct {
        const char *dir;
        int32_t bos, eos;
    } cases[] = {{"llama/tiny-llama", 1, 2},
                 {"llama/tiny-qwen2", 318, 319},
                 {"llama/tiny-llama3-rope", 1, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        road_llm_config c;
        road_generation_config g;
        TU_OK(road_llm_config_load(tu_fixture(cases[i].dir), &c));
        TU_OK(road_generation_config_load(tu_fixture(cases[i].dir), &c, &g));
        assert_int_equal(g.bos_token_id, cases[i].bos);
        assert_int_equal(g.n_eos, 1);
        assert_int_equal(g.eos_token_ids[0], cases[i].eos);
        assert_int_equal(g.pad_token_id, -1);
        assert_false(g.do_sample);
        assert_true(g.temperature == 1.0f);
        assert_int_equal(g.top_k, 50);
        assert_true(g.top_p == 1.0f);
        assert_int_equal(g.max_new_tokens, 0);
    }
}

/* ---- hand-written configs -------------------------------------------------------------------- */

static void test_defaults(void **state) {
    (void)state;
    road_llm_config c;
    /* Only the required keys: everything else is the class default. */
    const char *min =
        json("{'model_type':'llama','vocab_size':1000,'hidden_size':96,"
             "'intermediate_size':256,'num_hidden_layers':3,'num_attention_heads':6}");
    TU_OK(road_llm_config_parse(min, strlen(min), &c));
    assert_int_equal(c.n_kv_heads, 6);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_true(c.rope_factor == 1.0);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_int_equal(c.sliding_window, 0);
    assert_false(c.tie_word_embeddings || c.qkv_bias || c.o_bias || c.mlp_bias);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.n_eos, 0);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F32);

    parse_ok(",'model_type':'qwen2'", &c);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_true(c.qkv_bias);
    assert_false(c.o_bias || c.mlp_bias || c.tie_word_embeddings);
    assert_int_equal(c.sliding_window, 0);

    /* null num_key_value_heads / head_dim / bos / eos / rope_scaling / dtype: as absent. */
    parse_ok(",'num_key_value_heads':null,'head_dim':null,'bos_token_id':null,"
             "'eos_token_id':null,'rope_scaling':null,'torch_dtype':null",
             &c);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.n_eos, 0);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F32);

    /* Integers where floats belong are fine (Python compares them equal). */
    parse_ok(",'rope_theta':500000,'rms_norm_eps':1e-05,'hidden_act':'swish'", &c);
    assert_true(c.rope_theta == 500000.0);
    assert_true(c.rms_norm_eps == 1e-5);
}

static void test_mistral(void **state) {
    (void)state;
    road_llm_config c;
    parse_ok(",'model_type':'mistral','sliding_window':4096,'max_position_embeddings':32768,"
             "'rope_theta':1000000.0,'torch_dtype':'bfloat16'",
             &c);
    assert_string_equal(c.model_type, "mistral");
    check_shape(&c);
    assert_int_equal(c.sliding_window, 4096);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_true(c.rope_theta == 1e6);
    assert_false(c.qkv_bias || c.o_bias || c.mlp_bias);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_BF16);

    /* MistralConfig's defaults: window 4096, 4096 * 32 positions, 8 kv heads. */
    const char *min =
        json("{'model_type':'mistral','vocab_size':1000,'hidden_size':256,"
             "'intermediate_size':512,'num_hidden_layers':2,'num_attention_heads':16}");
    TU_OK(road_llm_config_parse(min, strlen(min), &c));
    assert_int_equal(c.sliding_window, 4096);
    assert_int_equal(c.max_position_embeddings, 131072);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 16);

    /* Mistral 7B v0.2 and later: no window. */
    parse_ok(",'model_type':'mistral','sliding_window':null", &c);
    assert_int_equal(c.sliding_window, 0);

    /* Mistral-Nemo style: head_dim given and not hidden_size / heads. */
    parse_ok(",'model_type':'mistral','hidden_size':80,'head_dim':32", &c);
    assert_int_equal(c.head_dim, 32);
    assert_int_equal(c.hidden_size, 80);
    /* attention_bias / mlp_bias false are fine for mistral and qwen2. */
    parse_ok(",'model_type':'mistral','attention_bias':false,'mlp_bias':false", &c);
    parse_ok(",'model_type':'qwen2','attention_bias':false,'mlp_bias':false", &c);
    assert_true(c.qkv_bias);
}

static void test_llama_options(void **state) {
    (void)state;
    road_llm_config c;
    parse_ok(",'attention_bias':true", &c);
    assert_true(c.qkv_bias && c.o_bias);
    assert_false(c.mlp_bias);
    parse_ok(",'mlp_bias':true", &c);
    assert_false(c.qkv_bias || c.o_bias);
    assert_true(c.mlp_bias);
    /* head_dim larger than hidden_size / heads (llama honours it). */
    parse_ok(",'head_dim':32", &c);
    assert_int_equal(c.head_dim, 32);
    /* A qwen2 head_dim equal to the derived one is fine. */
    parse_ok(",'model_type':'qwen2','head_dim':16", &c);
    assert_int_equal(c.head_dim, 16);
    /* sliding_window means nothing to llama and qwen2 (without use_sliding_window). */
    parse_ok(",'sliding_window':4096", &c);
    assert_int_equal(c.sliding_window, 0);
    parse_ok(",'model_type':'qwen2','use_sliding_window':false,'sliding_window':4096,"
             "'max_window_layers':28",
             &c);
    assert_int_equal(c.sliding_window, 0);
    /* pretraining_tp only slices 4.x matmuls: same model. */
    parse_ok(",'pretraining_tp':2", &c);
    parse_ok(",'partial_rotary_factor':1.0", &c);
    parse_ok(",'layer_types':['full_attention','full_attention']", &c);
    parse_ok(",'tie_word_embeddings':true", &c);
    assert_true(c.tie_word_embeddings);
    parse_ok(",'quantization_config':null", &c);
}

static void test_rope_scaling(void **state) {
    (void)state;
    road_llm_config c;
    parse_ok(",'rope_scaling':{'rope_type':'linear','factor':4}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_factor == 4.0);
    /* The older spelling. */
    parse_ok(",'rope_scaling':{'type':'linear','factor':2.0}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_factor == 2.0);
    /* Both spellings, agreeing. */
    parse_ok(",'rope_scaling':{'type':'linear','rope_type':'linear','factor':2.0}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    parse_ok(",'rope_scaling':{'rope_type':'default'}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_true(c.rope_factor == 1.0);
    /* An empty dict is no scaling (transformers v5 treats it as unset). */
    parse_ok(",'rope_scaling':{}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    parse_ok(",'rope_scaling':{'rope_type':'llama3','factor':32.0,'low_freq_factor':1.0,"
             "'high_freq_factor':4.0,'original_max_position_embeddings':8192}",
             &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LLAMA3);
    assert_true(c.rope_factor == 32.0);
    assert_true(c.rope_low_freq_factor == 1.0);
    assert_true(c.rope_high_freq_factor == 4.0);
    assert_int_equal(c.rope_original_max_pos, 8192);
    /* A rope_theta inside rope_scaling that agrees with the top level. */
    parse_ok(",'rope_theta':500000.0,'rope_scaling':{'rope_type':'linear','factor':2.0,"
             "'rope_theta':500000.0}",
             &c);
    assert_true(c.rope_theta == 500000.0);
}

static void test_rope_parameters_v5(void **state) {
    (void)state;
    road_llm_config c;
    /* transformers v5: rope_theta and the scaling in one dict, "dtype" for torch_dtype. */
    parse_ok(",'rope_parameters':{'rope_type':'llama3','rope_theta':500000.0,'factor':8.0,"
             "'low_freq_factor':1.0,'high_freq_factor':4.0,"
             "'original_max_position_embeddings':8192},'dtype':'bfloat16'",
             &c);
    assert_true(c.rope_theta == 500000.0);
    assert_int_equal(c.rope_type, ROAD_ROPE_LLAMA3);
    assert_true(c.rope_factor == 8.0);
    assert_int_equal(c.rope_original_max_pos, 8192);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_BF16);

    parse_ok(",'rope_parameters':{'rope_type':'default','rope_theta':1000000.0}", &c);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    /* No type in rope_parameters: "default" (v5). */
    parse_ok(",'rope_parameters':{'rope_theta':250000.0}", &c);
    assert_true(c.rope_theta == 250000.0);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    parse_ok(",'rope_parameters':{'rope_type':'linear','factor':2.0}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_theta == 10000.0);
    /* A non-empty rope_scaling takes the place of rope_parameters, as in v5. */
    parse_ok(",'rope_scaling':{'rope_type':'linear','factor':3.0},"
             "'rope_parameters':{'rope_type':'default'}",
             &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_factor == 3.0);
    parse_ok(",'rope_scaling':null,'rope_parameters':{'rope_type':'linear','factor':5.0}", &c);
    assert_true(c.rope_factor == 5.0);
    parse_ok(",'rope_parameters':{'rope_type':'default','rope_theta':10000.0,"
             "'partial_rotary_factor':1.0}",
             &c);
}

static void test_tokens_and_dtype(void **state) {
    (void)state;
    road_llm_config c;
    parse_ok(",'bos_token_id':0,'eos_token_id':[317,318,319]", &c);
    assert_int_equal(c.bos_token_id, 0);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos_token_ids[0], 317);
    assert_int_equal(c.eos_token_ids[1], 318);
    assert_int_equal(c.eos_token_ids[2], 319);
    parse_ok(",'eos_token_id':[]", &c);
    assert_int_equal(c.n_eos, 0);
    parse_ok(",'eos_token_id':[1,2,3,4,5,6,7,8]", &c);
    assert_int_equal(c.n_eos, ROAD_MAX_EOS);
    assert_int_equal(c.eos_token_ids[7], 8);

    parse_ok(",'torch_dtype':'float16'", &c);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F16);
    parse_ok(",'dtype':'float32'", &c);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F32);
    /* v5's dtype wins over torch_dtype; a null dtype falls back to torch_dtype. */
    parse_ok(",'torch_dtype':'float16','dtype':'bfloat16'", &c);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_BF16);
    parse_ok(",'torch_dtype':'float16','dtype':null", &c);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F16);
}

static void test_unknown_fields_ignored(void **state) {
    (void)state;
    road_llm_config a, b;
    parse_ok("", &a);
    parse_ok(",'architectures':['LlamaForCausalLM'],'initializer_range':0.02,'use_cache':true,"
             "'transformers_version':'4.48.0','_attn_implementation_autoset':true,"
             "'attention_dropout':0.1,'_name_or_path':'x','pad_token_id':null,"
             "'something_new':{'nested':[1,2,{'deep':null}]},'max_window_layers':28",
             &b);
    assert_memory_equal(&a, &b, sizeof a);
    /* Parsing twice gives identical bytes (padding included). */
    parse_ok("", &b);
    assert_memory_equal(&a, &b, sizeof a);
}

/* ---- refusals -------------------------------------------------------------------------------- */

static void test_refused_documents(void **state) {
    (void)state;
    road_llm_config c;
    const char *bad[] = {"", "{", "{'model_type':'llama',}", "nul", "{} x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *j = json(bad[i]);
        TU_FAILS(road_llm_config_parse(j, strlen(j), &c), ROAD_ERR_FORMAT, NULL);
    }
    const char *list = json("[1, 2]");
    TU_FAILS(road_llm_config_parse(list, strlen(list), &c), ROAD_ERR_FORMAT,
             "must hold a JSON object, got a list");
    const char *no_type = json("{'vocab_size':320}");
    TU_FAILS(road_llm_config_parse(no_type, strlen(no_type), &c), ROAD_ERR_CONFIG,
             "model_type is missing");
    TU_FAILS(road_llm_config_parse(NULL, 0, &c), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_llm_config_parse("{}", 2, NULL), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_llm_config_load(NULL, &c), ROAD_ERR_INVALID_ARG, NULL);
}

static void test_refused_model(void **state) {
    (void)state;
    REFUSED(",'model_type':'gemma'", ROAD_ERR_UNSUPPORTED,
            "model_type \"gemma\" is not supported; road runs \"llama\", \"mistral\", "
            "\"qwen2\", \"qwen3\", \"gemma2\", \"gemma3_text\", \"phi3\" and \"olmo2\"");
    REFUSED(",'model_type':'mixtral'", ROAD_ERR_UNSUPPORTED, "\"mixtral\"");
    REFUSED(",'model_type':'gemma3'", ROAD_ERR_UNSUPPORTED, "use a checkpoint saved as "
            "Gemma3ForCausalLM");
    REFUSED(",'model_type':'Llama'", ROAD_ERR_UNSUPPORTED, "\"Llama\"");
    REFUSED(",'model_type':5", ROAD_ERR_CONFIG, "model_type must be a string, got 5");
    REFUSED(",'hidden_act':'gelu'", ROAD_ERR_UNSUPPORTED,
            "hidden_act \"gelu\" is not supported; road implements \"silu\"");
    REFUSED(",'hidden_act':null", ROAD_ERR_CONFIG, "hidden_act must be a string, got null");
    REFUSED(",'quantization_config':{'quant_method':'gptq','bits':4}", ROAD_ERR_UNSUPPORTED,
            "quantization_config (quant_method \"gptq\")");
    REFUSED(",'quantization_config':{}", ROAD_ERR_UNSUPPORTED, "quantization_config");
    REFUSED(",'pretraining_tp':0", ROAD_ERR_CONFIG, "pretraining_tp must be an integer from 1");
    REFUSED(",'partial_rotary_factor':0.5", ROAD_ERR_UNSUPPORTED,
            "partial_rotary_factor 0.5 is not supported");
    REFUSED(",'partial_rotary_factor':'half'", ROAD_ERR_CONFIG, "partial_rotary_factor must be");
}

static void test_refused_sizes(void **state) {
    (void)state;
    const char *missing = json("{'model_type':'llama','hidden_size':64,'intermediate_size':176,"
                               "'num_hidden_layers':2,'num_attention_heads':4}");
    road_llm_config c;
    TU_FAILS(road_llm_config_parse(missing, strlen(missing), &c), ROAD_ERR_CONFIG,
             "vocab_size is missing");
    REFUSED(",'vocab_size':0", ROAD_ERR_CONFIG,
            "vocab_size must be an integer from 1 to 2147483647, got 0");
    REFUSED(",'vocab_size':2147483648", ROAD_ERR_CONFIG, "got 2147483648");
    REFUSED(",'hidden_size':64.0", ROAD_ERR_CONFIG,
            "hidden_size must be an integer from 1 to "
            "2147483647, got 64.0");
    REFUSED(",'intermediate_size':'176'", ROAD_ERR_CONFIG,
            "intermediate_size must be an integer from 1 to 2147483647, got \"176\" (a string)");
    REFUSED(",'num_hidden_layers':-1", ROAD_ERR_CONFIG, "num_hidden_layers must be");
    REFUSED(",'num_hidden_layers':null", ROAD_ERR_CONFIG, "num_hidden_layers must be");
    REFUSED(",'num_attention_heads':true", ROAD_ERR_CONFIG, "num_attention_heads must be");
    REFUSED(",'num_attention_heads':1e400", ROAD_ERR_CONFIG, "num_attention_heads must be");
    REFUSED(",'num_key_value_heads':3", ROAD_ERR_CONFIG,
            "num_attention_heads (4) must be a multiple of num_key_value_heads (3)");
    REFUSED(",'num_key_value_heads':8", ROAD_ERR_CONFIG, "must be a multiple");
    REFUSED(",'num_key_value_heads':0", ROAD_ERR_CONFIG, "num_key_value_heads must be");
    REFUSED(",'head_dim':15", ROAD_ERR_CONFIG, "head_dim must be even");
    REFUSED(",'head_dim':0", ROAD_ERR_CONFIG, "head_dim must be an integer from 1");
    REFUSED(",'hidden_size':66", ROAD_ERR_CONFIG,
            "hidden_size (66) must be a multiple of num_attention_heads (4)");
    REFUSED(",'hidden_size':36", ROAD_ERR_CONFIG, "head_dim must be even"); /* 36 / 4 = 9 */
    REFUSED(",'num_attention_heads':65536,'num_key_value_heads':1,'head_dim':65536",
            ROAD_ERR_CONFIG, "num_attention_heads * head_dim = 4294967296 is too large");
    REFUSED(",'model_type':'qwen2','head_dim':32", ROAD_ERR_UNSUPPORTED,
            "qwen2 head_dim 32 differs from hidden_size / num_attention_heads = 16");
    REFUSED(",'max_position_embeddings':0", ROAD_ERR_CONFIG, "max_position_embeddings must be");
    REFUSED(",'rms_norm_eps':0", ROAD_ERR_CONFIG,
            "rms_norm_eps must be a finite number > 0, got 0");
    REFUSED(",'rms_norm_eps':-1e-06", ROAD_ERR_CONFIG, "rms_norm_eps must be");
    REFUSED(",'rms_norm_eps':NaN", ROAD_ERR_CONFIG, "got NaN");
    REFUSED(",'rms_norm_eps':null", ROAD_ERR_CONFIG, "got null");
}

static void test_refused_rope(void **state) {
    (void)state;
    REFUSED(",'rope_theta':-1.0", ROAD_ERR_CONFIG, "rope_theta must be a finite number > 0");
    REFUSED(",'rope_theta':Infinity", ROAD_ERR_CONFIG, "got Infinity");
    REFUSED(",'rope_theta':null", ROAD_ERR_CONFIG, "rope_theta must be");
    REFUSED(",'rope_scaling':'linear'", ROAD_ERR_CONFIG,
            "rope_scaling must be an object or null, got \"linear\" (a string)");
    REFUSED(",'rope_parameters':[1]", ROAD_ERR_CONFIG, "rope_parameters must be an object or null");
    REFUSED(",'rope_scaling':{'rope_type':'ntk','factor':2.0}", ROAD_ERR_UNSUPPORTED,
            "rope_scaling.rope_type \"ntk\" is not supported; road implements \"default\", "
            "\"linear\", \"llama3\", \"dynamic\", \"yarn\" and \"longrope\"");
    REFUSED(",'rope_parameters':{'rope_type':'proportional','rope_theta':10000.0}",
            ROAD_ERR_UNSUPPORTED, "rope_parameters.rope_type \"proportional\"");
    REFUSED(",'rope_scaling':{'type':'su','short_factor':[1],'long_factor':[1]}",
            ROAD_ERR_UNSUPPORTED, "\"su\" is phi3's older name of \"longrope\"");
    REFUSED(",'rope_scaling':{'factor':2.0}", ROAD_ERR_CONFIG, "rope_scaling has no \"rope_type\"");
    REFUSED(",'rope_scaling':{'type':'linear','rope_type':'dynamic','factor':2.0}", ROAD_ERR_CONFIG,
            "rope_scaling.rope_type \"dynamic\" and rope_scaling.type \"linear\" disagree");
    REFUSED(",'rope_scaling':{'rope_type':3}", ROAD_ERR_CONFIG,
            "rope_scaling.rope_type must be a string");
    REFUSED(",'rope_scaling':{'rope_type':'linear'}", ROAD_ERR_CONFIG,
            "rope_scaling.factor must be a finite number > 0, got nothing");
    REFUSED(",'rope_scaling':{'rope_type':'linear','factor':0}", ROAD_ERR_CONFIG,
            "rope_scaling.factor must be");
    REFUSED(",'rope_scaling':{'rope_type':'linear','factor':'2'}", ROAD_ERR_CONFIG,
            "rope_scaling.factor must be");
    REFUSED(",'rope_scaling':{'rope_type':'llama3','factor':8.0,'high_freq_factor':4.0,"
            "'original_max_position_embeddings':8192}",
            ROAD_ERR_CONFIG, "rope_scaling.low_freq_factor must be");
    REFUSED(",'rope_scaling':{'rope_type':'llama3','factor':8.0,'low_freq_factor':4.0,"
            "'high_freq_factor':4.0,'original_max_position_embeddings':8192}",
            ROAD_ERR_CONFIG,
            "rope_scaling.high_freq_factor (4) must be greater than low_freq_factor (4)");
    REFUSED(",'rope_scaling':{'rope_type':'llama3','factor':8.0,'low_freq_factor':1.0,"
            "'high_freq_factor':4.0}",
            ROAD_ERR_CONFIG, "rope_scaling.original_max_position_embeddings must be an integer");
    REFUSED(",'rope_scaling':{'rope_type':'llama3','factor':8.0,'low_freq_factor':1.0,"
            "'high_freq_factor':4.0,'original_max_position_embeddings':8192.5}",
            ROAD_ERR_CONFIG, "got 8192.5");
    REFUSED(",'rope_theta':10000.0,'rope_parameters':{'rope_type':'default','rope_theta':500000.0}",
            ROAD_ERR_CONFIG, "rope_theta (10000) and rope_parameters.rope_theta (500000) disagree");
    REFUSED(",'rope_parameters':{'rope_type':'default','partial_rotary_factor':0.25}",
            ROAD_ERR_UNSUPPORTED, "rope_parameters.partial_rotary_factor 0.25 is not supported");
    /* v5's per-layer-type form: one dict for full attention is the plain case; anything
     * else would give layers different RoPE. */
    road_llm_config c;
    parse_ok(",'rope_parameters':{'full_attention':{'rope_type':'linear','factor':2.0,"
             "'rope_theta':20000.0}}",
             &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_theta == 20000.0);
    REFUSED(",'rope_parameters':{'full_attention':{'rope_type':'default'},"
            "'sliding_attention':{'rope_type':'default'}}",
            ROAD_ERR_UNSUPPORTED,
            "a RoPE setting for sliding-attention layers is not supported for llama");
    REFUSED(",'rope_parameters':{'full_attention':{'rope_type':'default'},"
            "'chunked_attention':{'rope_type':'default'}}",
            ROAD_ERR_UNSUPPORTED, "rope_parameters holds RoPE settings per layer type");
    REFUSED(",'rope_parameters':{'full_attention':{'rope_type':'ntk','factor':2.0}}",
            ROAD_ERR_UNSUPPORTED, "rope_parameters.full_attention.rope_type \"ntk\"");
    REFUSED(",'rope_parameters':{'full_attention':{'rope_type':'yarn','factor':2.0,"
            "'truncate':false}}",
            ROAD_ERR_UNSUPPORTED, "reads truncate from the outer dict only");
}

/* phi3 (head_dim 16, partial_rotary_factor 0.5: 8 rotary dims, 4 longrope factors) */
#define PHI3 ",'model_type':'phi3','partial_rotary_factor':0.5"
#define FACTORS4 "'short_factor':[1,1.5,2,2.5],'long_factor':[1,3,9,27]"

static void test_rope_types(void **state) {
    (void)state;
    road_llm_config c;
    /* dynamic */
    parse_ok(",'max_position_embeddings':4096,'rope_scaling':{'type':'dynamic','factor':2.0}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_DYNAMIC);
    assert_true(c.rope_factor == 2.0 && c.rope_attn_factor == 1.0);
    /* yarn: defaults, the attention factor 0.1 ln(factor) + 1 */
    parse_ok(",'rope_scaling':{'rope_type':'yarn','factor':4.0,"
             "'original_max_position_embeddings':1024}",
             &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_YARN);
    assert_int_equal(c.rope_original_max_pos, 1024);
    assert_true(c.rope_beta_fast == 32.0 && c.rope_beta_slow == 1.0 && c.rope_truncate);
    assert_true(fabs(c.rope_attn_factor - (0.1 * log(4.0) + 1.0)) < 1e-15);
    /* given values; 0 means "not given" as in transformers' `or` */
    parse_ok(",'rope_scaling':{'rope_type':'yarn','factor':4.0,'beta_fast':0,'beta_slow':2,"
             "'truncate':false,'attention_factor':0.5}",
             &c);
    assert_true(c.rope_beta_fast == 32.0 && c.rope_beta_slow == 2.0 && !c.rope_truncate);
    assert_true(c.rope_attn_factor == 0.5);
    assert_int_equal(c.rope_original_max_pos, 2048); /* llama's max_position_embeddings */
    parse_ok(",'rope_scaling':{'rope_type':'yarn','factor':40.0,'mscale':1.0,'mscale_all_dim':1.0}",
             &c);
    assert_true(c.rope_attn_factor == 1.0);
    /* v5: a top-level original_max_position_embeddings is read into rope_parameters */
    parse_ok(",'original_max_position_embeddings':512,"
             "'rope_parameters':{'rope_type':'yarn','factor':4.0}",
             &c);
    assert_int_equal(c.rope_original_max_pos, 512);
    /* longrope on phi3, every spelling of its type; the attention factor from
     * max_position_embeddings / original (phi3's default 4096) */
    const char *types[] = {"'type':'longrope'", "'rope_type':'longrope'", "'type':'su'",
                           "'type':'yarn'", "'rope_type':'su'"};
    for (int i = 0; i < 5; i++) {
        char extra[512];
        snprintf(extra, sizeof extra, PHI3 ",'max_position_embeddings':131072,'rope_scaling':{%s,"
                 FACTORS4 "}", types[i]);
        parse_ok(extra, &c);
        assert_int_equal(c.rope_type, ROAD_ROPE_LONGROPE);
        assert_int_equal(c.rotary_dim, 8);
        assert_int_equal(c.rope_original_max_pos, 4096);
        assert_true(c.rope_short_factor[1] == 1.5f && c.rope_long_factor[3] == 27.0f);
        assert_true(fabs(c.rope_attn_factor - sqrt(1.0 + log(32.0) / log(4096.0))) < 1e-15);
    }
    parse_ok(PHI3 ",'max_position_embeddings':8192,'original_max_position_embeddings':8192,"
             "'rope_scaling':{'type':'longrope'," FACTORS4 "}",
             &c);
    assert_true(c.rope_attn_factor == 1.0); /* factor 1 */
    /* v5's rope_parameters: factor wins over the ratio */
    parse_ok(PHI3 ",'max_position_embeddings':131072,'rope_parameters':{'rope_type':'longrope',"
             "'factor':2.0," FACTORS4 "}",
             &c);
    assert_true(fabs(c.rope_attn_factor - sqrt(1.0 + log(2.0) / log(4096.0))) < 1e-15);
    /* a llama with longrope: the original length is max_position_embeddings when not given */
    parse_ok(",'head_dim':8,'rope_scaling':{'rope_type':'longrope','factor':4.0,"
             "'short_factor':[1,1,1,1],'long_factor':[2,2,2,2]}",
             &c);
    assert_int_equal(c.rope_original_max_pos, 2048);
    assert_true(fabs(c.rope_attn_factor - sqrt(1.0 + log(4.0) / log(2048.0))) < 1e-15);
}

static void test_refused_rope_types(void **state) {
    (void)state;
    /* dynamic */
    REFUSED(",'rope_scaling':{'rope_type':'dynamic'}", ROAD_ERR_CONFIG,
            "rope_scaling.factor must be a finite number > 0, got nothing");
    REFUSED(",'rope_scaling':{'rope_type':'dynamic','factor':-2}", ROAD_ERR_CONFIG,
            "rope_scaling.factor must be");
    /* yarn */
    REFUSED(",'rope_scaling':{'rope_type':'yarn','original_max_position_embeddings':32}",
            ROAD_ERR_CONFIG, "rope_scaling.factor must be");
    REFUSED(",'rope_scaling':{'rope_type':'yarn','factor':4.0,'beta_fast':-1}", ROAD_ERR_CONFIG,
            "rope_scaling.beta_fast must be a finite number >= 0, got -1");
    REFUSED(",'rope_scaling':{'rope_type':'yarn','factor':4.0,'mscale':'x'}", ROAD_ERR_CONFIG,
            "rope_scaling.mscale must be");
    REFUSED(",'rope_scaling':{'rope_type':'yarn','factor':4.0,'truncate':1}", ROAD_ERR_CONFIG,
            "rope_scaling.truncate must be true or false, got 1");
    REFUSED(",'rope_scaling':{'rope_type':'yarn','factor':4.0,'attention_factor':0}",
            ROAD_ERR_CONFIG, "rope_scaling.attention_factor must be a finite number > 0");
    REFUSED(",'rope_scaling':{'rope_type':'yarn','factor':4.0,"
            "'original_max_position_embeddings':0}",
            ROAD_ERR_CONFIG, "rope_scaling.original_max_position_embeddings must be an integer");
    REFUSED(",'original_max_position_embeddings':1024,'rope_scaling':{'rope_type':'yarn',"
            "'factor':4.0,'original_max_position_embeddings':512}",
            ROAD_ERR_CONFIG,
            "original_max_position_embeddings (1024) and "
            "rope_scaling.original_max_position_embeddings (512) disagree; keep one");
    REFUSED(",'original_max_position_embeddings':1024,'rope_scaling':{'rope_type':'yarn',"
            "'factor':4.0}",
            ROAD_ERR_CONFIG,
            "original_max_position_embeddings 1024 is read by transformers v5 but not 4.x, which "
            "reads yarn's in rope_scaling only (2048 instead); write it in rope_scaling");
    /* longrope */
    REFUSED(PHI3 ",'rope_scaling':{'type':'longrope','short_factor':[1,1,1],'long_factor':[1,1,1,1]}",
            ROAD_ERR_CONFIG,
            "rope_scaling.short_factor must be a list of 4 finite numbers > 0 (rotary dims / 2)");
    REFUSED(PHI3 ",'rope_scaling':{'type':'longrope','short_factor':[1,1,1,1]}", ROAD_ERR_CONFIG,
            "rope_scaling.long_factor must be a list of 4");
    REFUSED(PHI3 ",'rope_scaling':{'type':'longrope','short_factor':[1,1,0,1],"
            "'long_factor':[1,1,1,1]}",
            ROAD_ERR_CONFIG, "rope_scaling.short_factor[2] must be a finite number > 0, got 0");
    REFUSED(PHI3 ",'rope_scaling':{'type':'longrope','short_factor':[1,1,'a',1],"
            "'long_factor':[1,1,1,1]}",
            ROAD_ERR_CONFIG, "rope_scaling.short_factor[2] must be");
    REFUSED(PHI3 ",'max_position_embeddings':131072,'rope_scaling':{'type':'longrope',"
            "'factor':2.0," FACTORS4 "}",
            ROAD_ERR_CONFIG,
            "rope_scaling.factor (2) differs from max_position_embeddings / "
            "original_max_position_embeddings (131072 / 4096)");
    REFUSED(PHI3 ",'rope_scaling':{'type':'longrope','original_max_position_embeddings':2048,"
            FACTORS4 "}",
            ROAD_ERR_CONFIG,
            "phi3 reads original_max_position_embeddings at the top level (default 4096), not "
            "rope_scaling.original_max_position_embeddings (2048); move it to the top level");
    REFUSED(",'head_dim':8,'rope_scaling':{'rope_type':'longrope','short_factor':[1,1,1,1],"
            "'long_factor':[2,2,2,2],'original_max_position_embeddings':512}",
            ROAD_ERR_CONFIG,
            "original_max_position_embeddings 512 is read by transformers v5 but not 4.x, which "
            "reads longrope's at the top level only (2048 instead); write it at the top level");
    REFUSED(",'head_dim':8,'original_max_position_embeddings':1,'rope_scaling':{"
            "'rope_type':'longrope','short_factor':[1,1,1,1],'long_factor':[2,2,2,2]}",
            ROAD_ERR_CONFIG, "original_max_position_embeddings 1 gives longrope no attention factor");
    /* phi3 takes longrope (or none) only, as its config class */
    REFUSED(PHI3 ",'rope_scaling':{'rope_type':'linear','factor':2.0}", ROAD_ERR_UNSUPPORTED,
            "rope_scaling.rope_type \"linear\" is not supported; phi3 models use \"longrope\"");
}

static void test_refused_options(void **state) {
    (void)state;
    REFUSED(",'attention_bias':'false'", ROAD_ERR_CONFIG, "attention_bias must be true or false");
    REFUSED(",'mlp_bias':1", ROAD_ERR_CONFIG, "mlp_bias must be true or false, got 1");
    REFUSED(",'tie_word_embeddings':0", ROAD_ERR_CONFIG,
            "tie_word_embeddings must be true or false");
    REFUSED(",'model_type':'mistral','attention_bias':true", ROAD_ERR_UNSUPPORTED,
            "attention_bias true is not supported for mistral models");
    REFUSED(",'model_type':'mistral','mlp_bias':true", ROAD_ERR_UNSUPPORTED,
            "mlp_bias true is not supported for mistral");
    REFUSED(",'model_type':'qwen2','mlp_bias':true", ROAD_ERR_UNSUPPORTED, "for qwen2 models");
    REFUSED(",'model_type':'qwen2','attention_bias':true", ROAD_ERR_UNSUPPORTED, "Qwen2");
    REFUSED(",'model_type':'mistral','sliding_window':0", ROAD_ERR_CONFIG,
            "sliding_window must be an integer from 1 to 2147483647, got 0");
    REFUSED(",'model_type':'mistral','sliding_window':'4096'", ROAD_ERR_CONFIG,
            "sliding_window must be");
    REFUSED(",'model_type':'qwen2','use_sliding_window':true,'sliding_window':4096",
            ROAD_ERR_UNSUPPORTED, "use_sliding_window true is not supported");
    REFUSED(",'model_type':'qwen2','use_sliding_window':'no'", ROAD_ERR_CONFIG,
            "use_sliding_window must be true or false");
    REFUSED(",'layer_types':['full_attention','sliding_attention']", ROAD_ERR_CONFIG,
            "layer_types lists sliding_attention layers but sliding_window is not set");
    REFUSED(",'layer_types':['full_attention','chunked_attention']", ROAD_ERR_UNSUPPORTED,
            "layer_types[1] \"chunked_attention\" is not supported");
    REFUSED(",'layer_types':['full_attention']", ROAD_ERR_CONFIG,
            "layer_types lists 1 layers but num_hidden_layers is 2");
    REFUSED(",'layer_types':'full_attention'", ROAD_ERR_CONFIG,
            "layer_types must be a list or null");
    REFUSED(",'layer_types':['full_attention',7]", ROAD_ERR_CONFIG,
            "layer_types[1] must be a string");
}

static void test_refused_tokens_dtype(void **state) {
    (void)state;
    REFUSED(",'bos_token_id':320", ROAD_ERR_CONFIG,
            "bos_token_id must be an integer from 0 to 319, got 320");
    REFUSED(",'bos_token_id':-1", ROAD_ERR_CONFIG, "bos_token_id must be");
    REFUSED(",'bos_token_id':'1'", ROAD_ERR_CONFIG, "bos_token_id must be");
    REFUSED(",'eos_token_id':1.5", ROAD_ERR_CONFIG, "eos_token_id must be");
    REFUSED(",'eos_token_id':[2,'x']", ROAD_ERR_CONFIG, "eos_token_id[1] must be an integer");
    REFUSED(",'eos_token_id':[2,400]", ROAD_ERR_CONFIG,
            "eos_token_id[1] must be an integer from 0 to 319");
    REFUSED(",'eos_token_id':{'a':1}", ROAD_ERR_CONFIG, "eos_token_id must be");
    REFUSED(",'eos_token_id':[1,2,3,4,5,6,7,8,9]", ROAD_ERR_UNSUPPORTED,
            "eos_token_id lists 9 ids; road keeps at most 8");
    REFUSED(",'torch_dtype':'float64'", ROAD_ERR_UNSUPPORTED,
            "torch_dtype \"float64\" is not supported; road reads \"float32\", \"bfloat16\" and "
            "\"float16\"");
    REFUSED(",'torch_dtype':'auto'", ROAD_ERR_UNSUPPORTED, "\"auto\"");
    REFUSED(",'dtype':'float8_e4m3fn'", ROAD_ERR_UNSUPPORTED, "dtype \"float8_e4m3fn\"");
    REFUSED(",'torch_dtype':32", ROAD_ERR_CONFIG, "torch_dtype must be a string, got 32");
}

/* ---- files ----------------------------------------------------------------------------------- */

static void test_load_errors(void **state) {
    (void)state;
    road_llm_config c;
    char *dir = make_temp_dir();
    TU_FAILS(road_llm_config_load(dir, &c), ROAD_ERR_NOT_FOUND, "has no config.json");
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/nothing-here", dir);
    TU_FAILS(road_llm_config_load(missing, &c), ROAD_ERR_NOT_FOUND, "does not exist");

    /* A bad value: the message starts with the file's path. */
    const char *bad = json("{'model_type':'gpt2'}");
    write_file(dir, "config.json", bad, strlen(bad));
    char file[1024];
    snprintf(file, sizeof file, "%s/config.json", dir);
    TU_FAILS(road_llm_config_load(dir, &c), ROAD_ERR_UNSUPPORTED, file);
    TU_FAILS(road_llm_config_load(file, &c), ROAD_ERR_UNSUPPORTED, "\"gpt2\"");
    write_file(dir, "config.json", "{\"model_type\": ", 15);
    TU_FAILS(road_llm_config_load(dir, &c), ROAD_ERR_FORMAT, file);

    /* Over 1 MiB: refused before parsing (a weight file passed by mistake). */
    size_t big = ((size_t)1 << 20) + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    write_file(dir, "config.json", text, big);
    free(text);
    TU_FAILS(road_llm_config_load(dir, &c), ROAD_ERR_FORMAT, "more than the 1048576 allowed");
    remove_dir(dir);
    free(dir);
}

static void gen_write(const char *dir, const char *text) {
    const char *j = json(text);
    write_file(dir, "generation_config.json", j, strlen(j));
}

static void capture_log(road_log_level level, const char *message, void *user) {
    if (level == ROAD_LOG_WARN) snprintf(user, 512, "%s", message);
}

static void test_generation_config(void **state) {
    (void)state;
    road_llm_config c;
    road_generation_config g;
    TU_OK(road_llm_config_load(tu_fixture("llama/tiny-llama"), &c));
    char *dir = make_temp_dir();

    /* No file: config's ids and GenerationConfig's defaults. */
    TU_OK(road_generation_config_load(dir, &c, &g));
    assert_int_equal(g.bos_token_id, 1);
    assert_int_equal(g.n_eos, 1);
    assert_int_equal(g.eos_token_ids[0], 2);
    assert_int_equal(g.pad_token_id, -1);
    assert_false(g.do_sample);
    assert_true(g.temperature == 1.0f && g.top_k == 50 && g.top_p == 1.0f);
    assert_int_equal(g.max_new_tokens, 0);

    /* Everything set (Llama 3 instruct style), max_length ignored. */
    gen_write(dir, "{'bos_token_id':5,'eos_token_id':[7,8,9],'pad_token_id':0,'do_sample':true,"
                   "'temperature':0.6,'top_k':20,'top_p':0.9,'max_new_tokens':256,"
                   "'max_length':4096,'transformers_version':'4.45.0'}");
    TU_OK(road_generation_config_load(dir, &c, &g));
    assert_int_equal(g.bos_token_id, 5);
    assert_int_equal(g.n_eos, 3);
    assert_int_equal(g.eos_token_ids[0], 7);
    assert_int_equal(g.eos_token_ids[2], 9);
    assert_int_equal(g.pad_token_id, 0);
    assert_true(g.do_sample);
    assert_true(g.temperature == 0.6f);
    assert_int_equal(g.top_k, 20);
    assert_true(g.top_p == 0.9f);
    assert_int_equal(g.max_new_tokens, 256);

    /* null: bos/eos none; temperature 1, top-k and top-p off. */
    gen_write(dir, "{'bos_token_id':null,'eos_token_id':null,'pad_token_id':null,"
                   "'do_sample':null,'temperature':null,'top_k':null,'top_p':null,"
                   "'max_new_tokens':null}");
    TU_OK(road_generation_config_load(dir, &c, &g));
    assert_int_equal(g.bos_token_id, -1);
    assert_int_equal(g.n_eos, 0);
    assert_int_equal(g.pad_token_id, -1);
    assert_false(g.do_sample);
    assert_true(g.temperature == 1.0f && g.top_k == 0 && g.top_p == 1.0f);
    assert_int_equal(g.max_new_tokens, 0);

    /* A single eos id replaces the config's; greedy temperature 0 is fine. */
    gen_write(dir, "{'eos_token_id':11,'temperature':0,'top_k':0}");
    TU_OK(road_generation_config_load(dir, &c, &g));
    assert_int_equal(g.bos_token_id, 1);
    assert_int_equal(g.n_eos, 1);
    assert_int_equal(g.eos_token_ids[0], 11);
    assert_true(g.temperature == 0.0f);
    assert_int_equal(g.top_k, 0);

    /* Sampling knobs road does not have: read, logged, not refused. */
    char logged[512] = "";
    road_log_set_callback(capture_log, logged);
    gen_write(dir, "{'repetition_penalty':1.0,'num_beams':1}");
    TU_OK(road_generation_config_load(dir, &c, &g));
    assert_string_equal(logged, "");
    gen_write(dir, "{'repetition_penalty':1.2}");
    TU_OK(road_generation_config_load(dir, &c, &g));
    road_log_set_callback(NULL, NULL);
    if (!strstr(logged, "repetition_penalty = 1.2"))
        fail_msg("expected a warning about repetition_penalty, got \"%s\"", logged);

    static const struct {
        const char *text;
        road_status want;
        const char *needle;
    } bad[] = {
        {"{'temperature':-1.0}", ROAD_ERR_CONFIG, "temperature must be a finite number >= 0"},
        {"{'temperature':'hot'}", ROAD_ERR_CONFIG, "temperature must be"},
        {"{'temperature':Infinity}", ROAD_ERR_CONFIG, "temperature must be"},
        {"{'temperature':1e39}", ROAD_ERR_CONFIG, "temperature must be"},
        {"{'top_p':0}", ROAD_ERR_CONFIG, "top_p must be a number in (0, 1], got 0"},
        {"{'top_p':1.5}", ROAD_ERR_CONFIG, "top_p must be"},
        {"{'top_p':NaN}", ROAD_ERR_CONFIG, "top_p must be"},
        {"{'top_k':-1}", ROAD_ERR_CONFIG, "top_k must be an integer from 0"},
        {"{'top_k':2.5}", ROAD_ERR_CONFIG, "top_k must be"},
        {"{'max_new_tokens':0}", ROAD_ERR_CONFIG, "max_new_tokens must be an integer from 1"},
        {"{'do_sample':'yes'}", ROAD_ERR_CONFIG, "do_sample must be true or false"},
        {"{'eos_token_id':[2,320]}", ROAD_ERR_CONFIG,
         "eos_token_id[1] must be an integer from 0 to 319"},
        {"{'eos_token_id':[1,2,3,4,5,6,7,8,9]}", ROAD_ERR_UNSUPPORTED, "at most 8"},
        {"{'pad_token_id':-1}", ROAD_ERR_CONFIG, "pad_token_id must be"},
        {"{'bos_token_id':true}", ROAD_ERR_CONFIG, "bos_token_id must be"},
        {"[]", ROAD_ERR_FORMAT, "must hold a JSON object"},
        {"{'top_k':", ROAD_ERR_FORMAT, NULL},
    };
    char file[1024];
    snprintf(file, sizeof file, "%s/generation_config.json", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gen_write(dir, bad[i].text);
        memset(&g, 0x5A, sizeof g);
        road_generation_config before = g;
        road_status s = road_generation_config_load(dir, &c, &g);
        tu_check_fails(s, bad[i].want, bad[i].needle, bad[i].text, __FILE__, __LINE__);
        tu_check_fails(s, bad[i].want, file, bad[i].text, __FILE__, __LINE__);
        assert_memory_equal(&g, &before, sizeof g);
    }

    char missing[1024];
    snprintf(missing, sizeof missing, "%s/nothing-here", dir);
    TU_FAILS(road_generation_config_load(missing, &c, &g), ROAD_ERR_NOT_FOUND, "is not a folder");
    TU_FAILS(road_generation_config_load(dir, NULL, &g), ROAD_ERR_INVALID_ARG, NULL);
    remove_dir(dir);
    free(dir);
}

/* ---- out of memory --------------------------------------------------------------------------- */

typedef road_status (*oom_op)(const void *arg);

static void oom_loop(const char *what, oom_op op, const void *arg) {
    int64_t start = road__alloc_live_bytes();
    for (int64_t k = 0;; k++) {
        road__alloc_fail_after(k);
        road_status s = op(arg);
        road__alloc_fail_after(-1);
        if (road__alloc_live_bytes() != start) {
            print_error("%s: failing allocation %lld leaks %lld bytes\n", what, (long long)k,
                        (long long)(road__alloc_live_bytes() - start));
            fail();
        }
        if (s == ROAD_OK) break;
        if (s != ROAD_ERR_NO_MEMORY) {
            print_error("%s: failing allocation %lld gave %s: %s\n", what, (long long)k,
                        road_status_name(s), road_last_error());
            fail();
        }
        if (k > 100000) fail_msg("%s never succeeds", what);
    }
}

static road_status op_load(const void *arg) {
    road_llm_config c;
    return road_llm_config_load(arg, &c);
}

static road_status op_parse(const void *arg) {
    road_llm_config c;
    const char *text = arg;
    return road_llm_config_parse(text, strlen(text), &c);
}

static road_status op_generation(const void *arg) {
    road_llm_config c;
    road_generation_config g;
    road_status s = road_llm_config_load(arg, &c);
    if (s == ROAD_OK) s = road_generation_config_load(arg, &c, &g);
    return s;
}

static void test_out_of_memory(void **state) {
    (void)state;
    for (const char *const *d = (const char *const[]){"llama/tiny-llama", "llama/tiny-qwen2",
                                                      "llama/tiny-llama3-rope", NULL};
         *d; d++) {
        char path[1024];
        snprintf(path, sizeof path, "%s", tu_fixture(*d));
        oom_loop(path, op_load, path);
        oom_loop(path, op_generation, path);
    }
    char *text = strdup(json(BASE ",'rope_scaling':{'rope_type':'llama3','factor':8.0,"
                                  "'low_freq_factor':1.0,'high_freq_factor':4.0,"
                                  "'original_max_position_embeddings':32},'eos_token_id':[1,2]}"));
    assert_non_null(text);
    oom_loop("parse", op_parse, text);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fixture_tiny_llama, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_fixture_tiny_qwen2, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_fixture_tiny_llama3_rope, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_fixture_generation_configs, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_defaults, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_mistral, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_llama_options, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_rope_scaling, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_rope_parameters_v5, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_tokens_and_dtype, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_unknown_fields_ignored, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_documents, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_model, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_sizes, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_rope, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_rope_types, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_rope_types, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_options, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused_tokens_dtype, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_load_errors, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_generation_config, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup_live, teardown_live),
    };
    return cmocka_run_group_tests_name("llm_config", tests, NULL, NULL);
}
