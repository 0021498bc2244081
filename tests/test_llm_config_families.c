/*
 * tests/test_llm_config_families.c - config.json of the families beyond llama / mistral / qwen2
 * (qwen3, gemma2, gemma3_text, phi3, olmo2; src/llm/config.c).
 *
 * Expected values come from transformers' documented class defaults (Qwen3Config,
 * Gemma2Config, Gemma3TextConfig, Phi3Config, Olmo2Config) and from the fixture README
 * (tests/fixtures/llama/README.md), not from road's code:
 *   - the five fixture configs, field by field (norm placement, (1 + w), q/k norms, fused
 *     projections, embedding scale, attention scale, soft-caps, sliding layers, RoPE);
 *   - each family's defaults when keys are absent: qwen3 head_dim 128 and 32 kv heads; gemma2
 *     soft-caps 50 / 30, query_pre_attn_scalar 256, window 4096 on even layers; gemma3
 *     sliding_window_pattern 6, rope_local_base_freq 10000, rope_theta 1e6; phi3 rotary_dim
 *     from partial_rotary_factor, rms_norm_eps 1e-5; olmo2 rms_norm_eps 1e-5; tie defaults
 *     (gemma true, the others false); max_position_embeddings per class;
 *   - layer_types (transformers >= 4.53) agreeing or disagreeing with a family's pattern;
 *   - transformers v5's rope_parameters, per layer type for gemma3 (full_attention /
 *     sliding_attention), and partial_rotary_factor inside it for phi3;
 *   - refusals, each with its status and a message naming the field: the multimodal gemma3,
 *     phi3 rotary dims that are odd, qwen3's use_sliding_window, soft-caps on gemma3, ...
 * JSON is written with single quotes; json() turns them into double quotes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "testutil.h"

/* Required keys only, per family; a case appends keys (later duplicates win, as in a Python
 * dict) and the closing brace. Head counts fit each class's default num_key_value_heads
 * (qwen3: 32, gemma: 4). */
#define QWEN3                                                                                      \
    "{'model_type':'qwen3','vocab_size':320,'hidden_size':64,'intermediate_size':176,"             \
    "'num_hidden_layers':2,'num_attention_heads':32"
#define GEMMA2                                                                                     \
    "{'model_type':'gemma2','vocab_size':320,'hidden_size':64,'intermediate_size':176,"            \
    "'num_hidden_layers':4,'num_attention_heads':8"
#define GEMMA3                                                                                     \
    "{'model_type':'gemma3_text','vocab_size':320,'hidden_size':64,'intermediate_size':176,"       \
    "'num_hidden_layers':12,'num_attention_heads':8"
#define PHI3                                                                                       \
    "{'model_type':'phi3','vocab_size':320,'hidden_size':64,'intermediate_size':176,"              \
    "'num_hidden_layers':2,'num_attention_heads':4"
#define OLMO2                                                                                      \
    "{'model_type':'olmo2','vocab_size':320,'hidden_size':64,'intermediate_size':176,"             \
    "'num_hidden_layers':2,'num_attention_heads':4"

/* Scales are pow(x, -0.5) in double; 1/sqrt(x) may differ in the last bit. */
#define SCALE_RTOL 1e-15

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

/* base + extra + "}", ' turned into ". */
static road_status parse(const char *base, const char *extra, road_llm_config *c) {
    char text[8192];
    snprintf(text, sizeof text, "%s%s}", base, extra);
    for (char *p = text; *p; p++)
        if (*p == '\'') *p = '"';
    return road_llm_config_parse(text, strlen(text), c);
}

static void parse_ok_at(const char *base, const char *extra, road_llm_config *c, int line) {
    road_status s = parse(base, extra, c);
    if (s != ROAD_OK)
        fail_msg("line %d: %s + %s: %s: %s", line, base, extra, road_status_name(s),
                 road_last_error());
}
#define OK(base, extra, c) parse_ok_at((base), (extra), (c), __LINE__)

static void refused_at(const char *base, const char *extra, road_status want, const char *needle,
                       int line) {
    road_llm_config c;
    memset(&c, 0xAB, sizeof c);
    road_llm_config before = c;
    char what[8192 + 16];
    snprintf(what, sizeof what, "%s + %s", base, extra);
    tu_check_fails(parse(base, extra, &c), want, needle, what, __FILE__, line);
    if (memcmp(&c, &before, sizeof c) != 0) fail_msg("line %d: a refused parse changed *out", line);
}
#define REFUSED(base, extra, status, needle)                                                       \
    refused_at((base), (extra), (status), (needle), __LINE__)

static void assert_scale(double got, double qpas) {
    const double want = 1.0 / sqrt(qpas);
    if (!(fabs(got - want) <= SCALE_RTOL * want))
        fail_msg("attention scale %.17g, want %.17g (1/sqrt(%g))", got, want, qpas);
}

/* Which layers slide, as a string of 's' (sliding) and 'f' (full). */
static const char *pattern_of(const road_llm_config *c) {
    static char buf[64];
    int64_t n = c->n_layers < 63 ? c->n_layers : 63;
    for (int64_t l = 0; l < n; l++) buf[l] = road_llm_config_layer_slides(c, l) ? 's' : 'f';
    buf[n] = '\0';
    return buf;
}

static road_llm_config load_fixture(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama/%s", ROAD_FIXTURES, name);
    road_llm_config c;
    TU_OK(road_llm_config_load(dir, &c));
    return c;
}

/* ---- the fixtures (README: "Extension families") -------------------------------------------- */

static void test_fixtures(void **state) {
    (void)state;
    road_llm_config c = load_fixture("tiny-qwen3");
    assert_string_equal(c.model_type, "qwen3");
    assert_int_equal(c.head_dim, 24); /* not hidden / heads = 16 */
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_HEAD);
    assert_int_equal(c.norm_place, ROAD_NORM_PRE);
    assert_false(c.norm_plus_one || c.fused_proj || c.embed_scale || c.qkv_bias);
    assert_int_equal(c.hidden_act, ROAD_ACT_SILU);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.rotary_dim, 24);
    assert_int_equal(c.sliding_window, 0);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_BF16);
    assert_scale(c.attn_scale, 24);
    assert_true(c.attn_softcap == 0 && c.final_softcap == 0);

    c = load_fixture("tiny-gemma2");
    assert_string_equal(c.model_type, "gemma2");
    assert_int_equal(c.hidden_act, ROAD_ACT_GELU_TANH);
    assert_int_equal(c.norm_place, ROAD_NORM_SANDWICH);
    assert_true(c.norm_plus_one && c.embed_scale);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_NONE);
    assert_scale(c.attn_scale, 16); /* query_pre_attn_scalar, not head_dim 24 */
    assert_true(c.attn_softcap == 1.5 && c.final_softcap == 2.0);
    assert_int_equal(c.sliding_window, 4);
    assert_string_equal(pattern_of(&c), "sf"); /* even layers slide */
    assert_true(c.tie_word_embeddings);        /* absent: Gemma's default */
    assert_true(c.rope_local_theta == 0);

    c = load_fixture("tiny-gemma3");
    assert_string_equal(c.model_type, "gemma3_text");
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_kv_heads, 1);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_HEAD);
    assert_true(c.norm_plus_one && c.embed_scale);
    assert_scale(c.attn_scale, 20);
    assert_true(c.attn_softcap == 0 && c.final_softcap == 0); /* null: none */
    assert_int_equal(c.sliding_window, 4);
    assert_string_equal(pattern_of(&c), "sfs"); /* sliding_window_pattern 2 */
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_factor == 8.0);
    assert_true(c.rope_local_theta == 1e4);
    assert_true(c.tie_word_embeddings);

    c = load_fixture("tiny-phi3");
    assert_string_equal(c.model_type, "phi3");
    assert_true(c.fused_proj);
    assert_int_equal(c.head_dim, 8);   /* hidden / heads */
    assert_int_equal(c.rotary_dim, 6); /* int(8 x 0.75) */
    assert_int_equal(c.norm_place, ROAD_NORM_PRE);
    assert_int_equal(c.sliding_window, 0); /* null */
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.tie_word_embeddings);
    assert_scale(c.attn_scale, 8);

    c = load_fixture("tiny-olmo2");
    assert_string_equal(c.model_type, "olmo2");
    assert_int_equal(c.norm_place, ROAD_NORM_POST);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_ALL);
    assert_false(c.norm_plus_one || c.fused_proj || c.embed_scale);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 5e5);
    assert_false(c.tie_word_embeddings);
}

/* ---- class defaults ------------------------------------------------------------------------- */

static void test_defaults(void **state) {
    (void)state;
    road_llm_config c;
    /* Qwen3Config: head_dim 128, num_key_value_heads 32, rms_norm_eps 1e-6, rope_theta 1e4,
     * max_position_embeddings 32768, tie_word_embeddings false, attention_bias false,
     * use_sliding_window false. */
    OK(QWEN3, "", &c);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.rotary_dim, 128);
    assert_int_equal(c.n_kv_heads, 32);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 1e4);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_false(c.tie_word_embeddings || c.qkv_bias || c.o_bias);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_HEAD);
    assert_scale(c.attn_scale, 128);
    /* null num_key_value_heads: as many as query heads (every class) */
    OK(QWEN3, ",'num_key_value_heads':null", &c);
    assert_int_equal(c.n_kv_heads, 32);
    OK(QWEN3, ",'num_attention_heads':4,'num_key_value_heads':2,'attention_bias':true", &c);
    assert_true(c.qkv_bias && c.o_bias); /* qwen3 reads attention_bias: q/k/v/o */

    /* Gemma2Config: num_key_value_heads 4, head_dim 256, query_pre_attn_scalar 256,
     * attn_logit_softcapping 50, final_logit_softcapping 30, sliding_window 4096 on even
     * layers, tie_word_embeddings true, hidden_activation gelu_pytorch_tanh, rms_norm_eps
     * 1e-6, rope_theta 1e4, max_position_embeddings 8192. */
    OK(GEMMA2, "", &c);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 256);
    assert_scale(c.attn_scale, 256);
    assert_true(c.attn_softcap == 50.0 && c.final_softcap == 30.0);
    assert_int_equal(c.sliding_window, 4096);
    assert_string_equal(pattern_of(&c), "sfsf");
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.hidden_act, ROAD_ACT_GELU_TANH);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 1e4);
    assert_int_equal(c.max_position_embeddings, 8192);
    assert_true(c.rope_local_theta == 0);
    /* null soft-caps: none; Gemma reads hidden_activation, not hidden_act */
    OK(GEMMA2, ",'attn_logit_softcapping':null,'final_logit_softcapping':null,'hidden_act':'gelu'",
       &c);
    assert_true(c.attn_softcap == 0 && c.final_softcap == 0);
    assert_int_equal(c.hidden_act, ROAD_ACT_GELU_TANH);
    OK(GEMMA2, ",'tie_word_embeddings':false,'query_pre_attn_scalar':144", &c);
    assert_false(c.tie_word_embeddings);
    assert_scale(c.attn_scale, 144);

    /* Gemma3TextConfig: as Gemma2 but rope_theta 1e6, rope_local_base_freq 1e4,
     * sliding_window_pattern 6 (layers 5, 11, ... global), no soft-caps,
     * max_position_embeddings 131072. */
    OK(GEMMA3, "", &c);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 256);
    assert_scale(c.attn_scale, 256);
    assert_true(c.attn_softcap == 0 && c.final_softcap == 0);
    assert_int_equal(c.sliding_window, 4096);
    assert_string_equal(pattern_of(&c), "sssssfsssssf");
    assert_true(c.rope_theta == 1e6);
    assert_true(c.rope_local_theta == 1e4);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_int_equal(c.max_position_embeddings, 131072);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_HEAD);
    /* the 4.53+ spelling of the pattern */
    OK(GEMMA3, ",'_sliding_window_pattern':4", &c);
    assert_string_equal(pattern_of(&c), "sssfsssfsssf");

    /* Phi3Config: num_key_value_heads = heads, head_dim = hidden / heads, partial_rotary_factor
     * 1, rms_norm_eps 1e-5, rope_theta 1e4, max_position_embeddings 4096, sliding_window None,
     * tie_word_embeddings false. */
    OK(PHI3, "", &c);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.rotary_dim, 16);
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.rope_theta == 1e4);
    assert_int_equal(c.max_position_embeddings, 4096);
    assert_int_equal(c.sliding_window, 0);
    assert_false(c.tie_word_embeddings || c.qkv_bias || c.o_bias || c.mlp_bias);
    assert_true(c.fused_proj);
    /* rotary_dim = int(head_dim x partial_rotary_factor) */
    OK(PHI3, ",'partial_rotary_factor':0.75", &c);
    assert_int_equal(c.rotary_dim, 12);
    OK(PHI3, ",'partial_rotary_factor':0.5", &c);
    assert_int_equal(c.rotary_dim, 8);
    OK(PHI3, ",'partial_rotary_factor':0.3", &c); /* int(4.8): transformers truncates */
    assert_int_equal(c.rotary_dim, 4);
    /* Phi-3-mini's sliding_window: every layer */
    OK(PHI3, ",'sliding_window':2047", &c);
    assert_int_equal(c.sliding_window, 2047);
    assert_string_equal(pattern_of(&c), "ss");

    /* Olmo2Config: num_key_value_heads = heads, rms_norm_eps 1e-5, rope_theta 1e4,
     * max_position_embeddings 2048, tie_word_embeddings false, attention_bias false. */
    OK(OLMO2, "", &c);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.rope_theta == 1e4);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_false(c.tie_word_embeddings || c.qkv_bias);
    assert_int_equal(c.norm_place, ROAD_NORM_POST);
    assert_int_equal(c.qk_norm, ROAD_QK_NORM_ALL);
    assert_int_equal(c.sliding_window, 0);
}

/* ---- layer_types (transformers >= 4.53) ------------------------------------------------------ */

static void test_layer_types(void **state) {
    (void)state;
    road_llm_config c;
    /* gemma2: the list agrees with "even layers slide" */
    OK(GEMMA2,
       ",'sliding_window':8,'layer_types':['sliding_attention','full_attention',"
       "'sliding_attention','full_attention']",
       &c);
    assert_string_equal(pattern_of(&c), "sfsf");
    assert_int_equal(c.sliding_window, 8);
    REFUSED(GEMMA2,
            ",'layer_types':['full_attention','sliding_attention','full_attention',"
            "'sliding_attention']",
            ROAD_ERR_CONFIG, "layer_types and gemma2's sliding-window pattern disagree");

    /* gemma3: the list as 4.53 writes it (with _sliding_window_pattern), and alone with the
     * default pattern 6 */
    static const char *const six =
        ",'layer_types':['sliding_attention','sliding_attention','sliding_attention',"
        "'sliding_attention','sliding_attention','full_attention','sliding_attention',"
        "'sliding_attention','sliding_attention','sliding_attention','sliding_attention',"
        "'full_attention']";
    OK(GEMMA3, six, &c);
    assert_string_equal(pattern_of(&c), "sssssfsssssf");
    char text[2048];
    snprintf(text, sizeof text, "%s,'_sliding_window_pattern':6", six);
    OK(GEMMA3, text, &c);
    assert_string_equal(pattern_of(&c), "sssssfsssssf");
    snprintf(text, sizeof text, "%s,'sliding_window_pattern':3", six);
    REFUSED(GEMMA3, text, ROAD_ERR_CONFIG, "disagree");
    OK(GEMMA3,
       ",'num_hidden_layers':4,'sliding_window_pattern':2,'layer_types':['sliding_attention',"
       "'full_attention','sliding_attention','full_attention']",
       &c);
    assert_string_equal(pattern_of(&c), "sfsf");
    REFUSED(GEMMA3, ",'num_hidden_layers':2,'layer_types':['sliding_attention']", ROAD_ERR_CONFIG,
            "layer_types lists 1 layers but num_hidden_layers is 2");
    REFUSED(GEMMA3,
            ",'num_hidden_layers':2,'sliding_window_pattern':2,'layer_types':"
            "['chunked_attention','full_attention']",
            ROAD_ERR_UNSUPPORTED, "layer_types[0] \"chunked_attention\" is not supported");
    REFUSED(GEMMA3, ",'layer_types':'sliding_attention'", ROAD_ERR_CONFIG,
            "layer_types must be a list");

    /* qwen3 4.53+ writes every layer full when use_sliding_window is false */
    OK(QWEN3, ",'layer_types':['full_attention','full_attention'],'use_sliding_window':false", &c);
    assert_string_equal(pattern_of(&c), "ff");
    assert_int_equal(c.sliding_window, 0);
    REFUSED(QWEN3, ",'layer_types':['full_attention','sliding_attention']", ROAD_ERR_CONFIG,
            "sliding_window is not set");
    /* phi3 / olmo2: a list of full layers is harmless */
    OK(OLMO2, ",'layer_types':['full_attention','full_attention']", &c);
    assert_string_equal(pattern_of(&c), "ff");
}

/* ---- transformers v5: rope_parameters, dtype ---------------------------------------------------
 */

static void test_rope_parameters_v5(void **state) {
    (void)state;
    road_llm_config c;
    /* gemma3 (Gemma 3 4B style): linear scaling on global layers, plain RoPE with its own
     * base on sliding ones; v5 drops rope_theta and rope_local_base_freq at the top level */
    OK(GEMMA3,
       ",'rope_parameters':{'full_attention':{'rope_type':'linear','factor':8.0,"
       "'rope_theta':1000000.0},'sliding_attention':{'rope_type':'default','rope_theta':10000.0}}"
       ",'dtype':'bfloat16'",
       &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_factor == 8.0);
    assert_true(c.rope_theta == 1e6);
    assert_true(c.rope_local_theta == 1e4);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_BF16);
    /* the sliding layers' base from sliding_attention alone */
    OK(GEMMA3,
       ",'rope_parameters':{'full_attention':{'rope_type':'default','rope_theta':500000.0},"
       "'sliding_attention':{'rope_type':'default','rope_theta':20000.0}}",
       &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_DEFAULT);
    assert_true(c.rope_theta == 5e5);
    assert_true(c.rope_local_theta == 2e4);
    /* full_attention alone: the sliding base keeps its default */
    OK(GEMMA3, ",'rope_parameters':{'full_attention':{'rope_type':'default','rope_theta':1e6}}",
       &c);
    assert_true(c.rope_local_theta == 1e4);
    REFUSED(GEMMA3,
            ",'rope_local_base_freq':10000.0,'rope_parameters':{'full_attention':{'rope_type':"
            "'default'},'sliding_attention':{'rope_type':'default','rope_theta':20000.0}}",
            ROAD_ERR_CONFIG, "rope_local_base_freq (10000) and");
    REFUSED(GEMMA3,
            ",'rope_parameters':{'full_attention':{'rope_type':'default'},'sliding_attention':"
            "{'rope_type':'linear','factor':2.0}}",
            ROAD_ERR_UNSUPPORTED, "rope_parameters.sliding_attention.rope_type \"linear\"");
    REFUSED(GEMMA3,
            ",'rope_parameters':{'full_attention':{'rope_type':'default'},'chunked_attention':"
            "{'rope_type':'default'}}",
            ROAD_ERR_UNSUPPORTED, "\"full_attention\" and \"sliding_attention\" only");
    REFUSED(GEMMA3,
            ",'rope_theta':1e6,'rope_parameters':{'full_attention':{'rope_type':'default',"
            "'rope_theta':5e5}}",
            ROAD_ERR_CONFIG, "disagree");
    /* a sliding-attention RoPE only makes sense for gemma3 */
    REFUSED(QWEN3,
            ",'rope_parameters':{'full_attention':{'rope_type':'default'},'sliding_attention':"
            "{'rope_type':'default','rope_theta':10000.0}}",
            ROAD_ERR_UNSUPPORTED, "sliding-attention layers is not supported for qwen3");
    /* v5 flat dicts for the other families */
    OK(QWEN3, ",'rope_parameters':{'rope_type':'default','rope_theta':1000000.0},'dtype':'float16'",
       &c);
    assert_true(c.rope_theta == 1e6);
    assert_int_equal(c.torch_dtype, ROAD_DTYPE_F16);
    OK(PHI3,
       ",'rope_parameters':{'rope_type':'default','rope_theta':250000.0,'partial_rotary_factor':0."
       "75}",
       &c);
    assert_true(c.rope_theta == 2.5e5);
    assert_int_equal(c.rotary_dim, 12);
    OK(OLMO2, ",'rope_parameters':{'rope_type':'linear','factor':2.0,'rope_theta':500000.0}", &c);
    assert_int_equal(c.rope_type, ROAD_ROPE_LINEAR);
    assert_true(c.rope_factor == 2.0 && c.rope_theta == 5e5);
}

/* ---- refusals -----------------------------------------------------------------------------------
 */

static void test_refused(void **state) {
    (void)state;
    /* the multimodal Gemma 3 (text_config inside) */
    REFUSED(GEMMA3, ",'model_type':'gemma3'", ROAD_ERR_UNSUPPORTED,
            "model_type \"gemma3\" is the multimodal Gemma 3");
    /* phi3: rotary dims must be even (and at least 2); factors above 1 do not exist */
    REFUSED(PHI3, ",'partial_rotary_factor':0.5625", ROAD_ERR_CONFIG,
            "partial_rotary_factor 0.5625 gives 9 rotary dims of head_dim 16");
    REFUSED(PHI3, ",'partial_rotary_factor':0.0625", ROAD_ERR_CONFIG, "gives 1 rotary dims");
    REFUSED(PHI3, ",'rope_parameters':{'rope_type':'default','partial_rotary_factor':0.2}",
            ROAD_ERR_CONFIG, "rope_parameters.partial_rotary_factor 0.2 gives 3 rotary dims");
    REFUSED(PHI3, ",'partial_rotary_factor':1.5", ROAD_ERR_UNSUPPORTED,
            "partial_rotary_factor 1.5 is not supported for phi3");
    REFUSED(PHI3, ",'partial_rotary_factor':0", ROAD_ERR_CONFIG, "partial_rotary_factor must be");
    /* the other families rotate whole heads */
    REFUSED(QWEN3, ",'partial_rotary_factor':0.5", ROAD_ERR_UNSUPPORTED,
            "partial_rotary_factor 0.5 is not supported for qwen3");
    REFUSED(OLMO2, ",'partial_rotary_factor':0.5", ROAD_ERR_UNSUPPORTED, "olmo2");
    /* phi3: head_dim is hidden / heads in 4.4x, read from the file later: road does not guess */
    REFUSED(PHI3, ",'head_dim':32", ROAD_ERR_UNSUPPORTED,
            "phi3 head_dim 32 differs from hidden_size / num_attention_heads = 16");
    /* phi3's projections have no bias whatever the file says */
    REFUSED(PHI3, ",'attention_bias':true", ROAD_ERR_UNSUPPORTED,
            "attention_bias true is not supported for phi3");
    REFUSED(OLMO2, ",'mlp_bias':true", ROAD_ERR_UNSUPPORTED, "mlp_bias true is not supported");
    /* qwen3's sliding windows from max_window_layers on are not implemented */
    REFUSED(QWEN3, ",'use_sliding_window':true,'sliding_window':4096,'max_window_layers':1",
            ROAD_ERR_UNSUPPORTED, "use_sliding_window true is not supported: qwen3");
    REFUSED(QWEN3, ",'use_sliding_window':'no'", ROAD_ERR_CONFIG,
            "use_sliding_window must be true or false");
    /* gemma: activation, scalar and caps checked */
    REFUSED(GEMMA2, ",'hidden_activation':'gelu'", ROAD_ERR_UNSUPPORTED,
            "hidden_activation \"gelu\" is not supported");
    REFUSED(GEMMA2, ",'query_pre_attn_scalar':0", ROAD_ERR_CONFIG,
            "query_pre_attn_scalar must be a finite number > 0");
    REFUSED(GEMMA2, ",'attn_logit_softcapping':-50.0", ROAD_ERR_CONFIG,
            "attn_logit_softcapping must be a finite number > 0");
    REFUSED(GEMMA2, ",'final_logit_softcapping':'30'", ROAD_ERR_CONFIG,
            "final_logit_softcapping must be");
    REFUSED(GEMMA3, ",'final_logit_softcapping':30.0", ROAD_ERR_UNSUPPORTED,
            "final_logit_softcapping is not supported for gemma3_text");
    REFUSED(QWEN3, ",'attn_logit_softcapping':50.0", ROAD_ERR_UNSUPPORTED,
            "attn_logit_softcapping is not supported for qwen3");
    /* gemma3's pattern and local base */
    REFUSED(GEMMA3, ",'sliding_window_pattern':0", ROAD_ERR_CONFIG,
            "sliding_window_pattern must be an integer from 1");
    REFUSED(GEMMA3, ",'rope_local_base_freq':-1", ROAD_ERR_CONFIG,
            "rope_local_base_freq must be a finite number > 0");
    REFUSED(GEMMA2, ",'sliding_window':0", ROAD_ERR_CONFIG, "sliding_window must be an integer");
    /* heads that do not divide (qwen3's default 32 kv heads with 8 query heads) */
    REFUSED(QWEN3, ",'num_attention_heads':8", ROAD_ERR_CONFIG,
            "num_attention_heads (8) must be a multiple of num_key_value_heads (32)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fixtures, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_defaults, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_layer_types, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_rope_parameters_v5, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_refused, setup_live, teardown_live),
    };
    return cmocka_run_group_tests_name("llm_config_families", tests, NULL, NULL);
}
