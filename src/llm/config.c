/*
 * llm/config.c - config.json of every family road runs (llama, mistral, qwen2, qwen3, gemma2,
 * gemma3_text, phi3, olmo2) and generation_config.json (see road/llm.h); RoPE is read by
 * config_rope.c, the helpers both use are in config_read.h.
 *
 * The reading follows what transformers' config classes (LlamaConfig, ..., Olmo2Config) do with
 * a config.json (4.4x-4.5x, plus the v5 spellings "dtype" and "rope_parameters"), so a file means
 * the same model here as there: per-type defaults (max_position_embeddings 2048 / 131072 (4096*32)
 * / 32768, mistral's sliding_window 4096 and num_key_value_heads 8 when the key is absent),
 * head_dim from the file or hidden_size / num_attention_heads, rope_scaling's older "type"
 * spelling, qwen2's fixed q/k/v biases.
 *
 * The rule is "never a silently different model": a field that changes the computation in a
 * way road does not implement is refused with ROAD_ERR_UNSUPPORTED naming the field, the value
 * and what road supports (unknown rope types, other activations, sliding windows per layer,
 * quantized checkpoints, partial rotary embeddings); a value that is wrong in itself (a
 * negative size, heads that do not divide, a string where a number belongs) is ROAD_ERR_CONFIG
 * with the field, the value found and what is allowed. Fields that do not change the model
 * (architectures, initializer_range, use_cache, attention_dropout, transformers_version, ...)
 * are ignored, as transformers ignores them at inference.
 *
 * Where the transformers versions disagree on what a file means, the file is refused rather
 * than read one way: rope_scaling with both "type" and "rope_type" set differently (4.x lets
 * "type" win, v5 "rope_type"); a rope_theta at the top level and inside the rope dict that
 * differ; a qwen2 head_dim other than hidden_size / num_attention_heads (4.46 ignores it, later
 * versions use it); for yarn and longrope, an original_max_position_embeddings or a longrope
 * factor in a rope_scaling that 4.x and v5 would read differently (see parse_original_max and
 * parse_longrope; a v5 rope_parameters is read as v5 reads it). RoPE scaling follows 4.57 and
 * 5.x (tools/torchref/rope_ref.py checks both). attention_bias / mlp_bias true are refused for
 * mistral and qwen2: their transformers classes ignore the keys and fix the biases, so such a file
 * and its checkpoint disagree.
 *
 * All sizes are integers written as JSON integers ("64", not "64.0": transformers would fail
 * on a float size too) from 1 to 2^31 - 1, which keeps token ids within int32 and any product
 * of two sizes within int64. Token ids (bos, eos, pad) must lie in [0, vocab_size).
 *
 * generation_config.json overrides the config's bos/eos and GenerationConfig's defaults (greedy,
 * temperature 1, top_k 50, top_p 1); JSON null there means what it means to transformers (no
 * such step: top_k 0, top_p 1, temperature 1; no bos/eos/pad). max_length is ignored (the
 * caller bounds generation with max_new_tokens); sampling knobs road has no equivalent for
 * (repetition_penalty, num_beams, ...) are logged as warnings, not refused.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "llm/config_read.h"

#define CONFIG_FILE_NAME "config.json"
#define GENERATION_FILE_NAME "generation_config.json"
/* Real config.json files are a few KB; a bigger file is a weight file or a dataset passed by
 * mistake, and reading it whole would waste memory. */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)

/* transformers' defaults when a key is absent (GenerationConfig for the sampling fields). */
#define DEFAULT_RMS_NORM_EPS 1e-6
#define DEFAULT_MISTRAL_SLIDING_WINDOW 4096
#define DEFAULT_TEMPERATURE 1.0f
#define DEFAULT_TOP_K 50
#define DEFAULT_TOP_P 1.0f

static const family_info families[] = {
    {FAMILY_LLAMA, "llama", "Llama", 2048, 0, 0, true, 1e-6, 1e4, false, ROAD_ACT_SILU,
     ROAD_NORM_PRE, false, ROAD_QK_NORM_NONE, false, false},
    {FAMILY_MISTRAL, "mistral", "Mistral", 4096 * 32, DEFAULT_MISTRAL_KV_HEADS, 0, true, 1e-6, 1e4,
     false, ROAD_ACT_SILU, ROAD_NORM_PRE, false, ROAD_QK_NORM_NONE, false, false},
    {FAMILY_QWEN2, "qwen2", "Qwen2", 32768, 0, 0, false, 1e-6, 1e4, false, ROAD_ACT_SILU,
     ROAD_NORM_PRE, false, ROAD_QK_NORM_NONE, false, false},
    {FAMILY_QWEN3, "qwen3", "Qwen3", 32768, 32, 128, true, 1e-6, 1e4, false, ROAD_ACT_SILU,
     ROAD_NORM_PRE, false, ROAD_QK_NORM_HEAD, false, false},
    {FAMILY_GEMMA2, "gemma2", "Gemma2", 8192, 4, 256, true, 1e-6, 1e4, true, ROAD_ACT_GELU_TANH,
     ROAD_NORM_SANDWICH, true, ROAD_QK_NORM_NONE, false, true},
    {FAMILY_GEMMA3, "gemma3_text", "Gemma3Text", 131072, 4, 256, true, 1e-6, 1e6, true,
     ROAD_ACT_GELU_TANH, ROAD_NORM_SANDWICH, true, ROAD_QK_NORM_HEAD, false, true},
    {FAMILY_PHI3, "phi3", "Phi3", 4096, 0, 0, false, 1e-5, 1e4, false, ROAD_ACT_SILU, ROAD_NORM_PRE,
     false, ROAD_QK_NORM_NONE, true, false},
    {FAMILY_OLMO2, "olmo2", "Olmo2", 2048, 0, 0, true, 1e-5, 1e4, false, ROAD_ACT_SILU,
     ROAD_NORM_POST, false, ROAD_QK_NORM_ALL, false, false},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

/* ---- token ids ------------------------------------------------------------------------------ */

/* A token id: an integer from 0 to vocab - 1. */
static road_status want_token(const cJSON *v, const char *key, int64_t vocab, int32_t *out) {
    int64_t x = 0;
    road_status s = want_int(v, NULL, key, 0, vocab - 1, &x);
    if (s == ROAD_OK) *out = (int32_t)x;
    return s;
}

/* eos_token_id: an id, a list of ids (at most ROAD_MAX_EOS) or null (none). */
static road_status parse_eos(const cJSON *v, int64_t vocab, int32_t *ids, int32_t *n) {
    if (cJSON_IsNull(v)) {
        *n = 0;
        return ROAD_OK;
    }
    if (!cJSON_IsArray(v)) {
        road_status s = want_token(v, "eos_token_id", vocab, &ids[0]);
        if (s == ROAD_OK) *n = 1;
        return s;
    }
    int count = cJSON_GetArraySize(v);
    if (count > ROAD_MAX_EOS)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "eos_token_id lists %d ids; road keeps at most %d end-of-sequence ids",
                           count, ROAD_MAX_EOS);
    int32_t k = 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        char key[48];
        snprintf(key, sizeof key, "eos_token_id[%d]", (int)k);
        road_status s = want_token(e, key, vocab, &ids[k]);
        if (s != ROAD_OK) return s;
        k++;
    }
    *n = k;
    return ROAD_OK;
}

/* ---- config.json: the parts ----------------------------------------------------------------- */

#define FAMILY_NAMES                                                                               \
    "\"llama\", \"mistral\", \"qwen2\", \"qwen3\", \"gemma2\", \"gemma3_text\", \"phi3\" and "     \
    "\"olmo2\""

static road_status parse_family(const cJSON *root, const family_info **f, road_llm_config *c) {
    const cJSON *v = member(root, "model_type");
    if (!v)
        return road__error(ROAD_ERR_CONFIG,
                           "model_type is missing; road reads config.json of " FAMILY_NAMES
                           " models");
    const char *name = NULL;
    road_status s = want_string(v, NULL, "model_type", &name);
    if (s != ROAD_OK) return s;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        if (strcmp(name, families[i].name) == 0) {
            *f = &families[i];
            snprintf(c->model_type, sizeof c->model_type, "%s", families[i].name);
            c->norm_place = families[i].place;
            c->norm_plus_one = families[i].plus_one;
            c->qk_norm = families[i].qk_norm;
            c->fused_proj = families[i].fused;
            c->embed_scale = families[i].gemma;
            return ROAD_OK;
        }
    }
    if (strcmp(name, "gemma3") == 0)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "model_type \"gemma3\" is the multimodal Gemma 3 (text_config inside); "
                           "road runs its text model: use a checkpoint saved as Gemma3ForCausalLM "
                           "(model_type \"gemma3_text\")");
    return unsupported_string("model_type", name, "road runs " FAMILY_NAMES " models");
}

/* The MLP's activation: hidden_act (gemma: hidden_activation, the key its classes read). */
static road_status parse_activation(const cJSON *root, const family_info *f, road_llm_config *c) {
    const char *key = f->gemma ? "hidden_activation" : "hidden_act";
    c->hidden_act = f->act;
    const cJSON *v = member(root, key);
    if (!v) return ROAD_OK; /* the class default */
    const char *name = NULL;
    road_status s = want_string(v, NULL, key, &name);
    if (s != ROAD_OK) return s;
    /* transformers maps "swish" to the same SiLU module. */
    if (strcmp(name, "silu") == 0 || strcmp(name, "swish") == 0) {
        c->hidden_act = ROAD_ACT_SILU;
        return ROAD_OK;
    }
    if (strcmp(name, "gelu_pytorch_tanh") == 0) {
        c->hidden_act = ROAD_ACT_GELU_TANH;
        return ROAD_OK;
    }
    return unsupported_string(key, name,
                              "road implements \"silu\" (SwiGLU) and \"gelu_pytorch_tanh\" "
                              "(GeGLU with tanh-approximated GELU)");
}

static road_status parse_shape(const cJSON *root, const family_info *f, road_llm_config *c) {
    road_status s;
    if ((s = req_dim(root, "vocab_size", &c->vocab_size)) != ROAD_OK) return s;
    if ((s = req_dim(root, "hidden_size", &c->hidden_size)) != ROAD_OK) return s;
    if ((s = req_dim(root, "intermediate_size", &c->intermediate_size)) != ROAD_OK) return s;
    if ((s = req_dim(root, "num_hidden_layers", &c->n_layers)) != ROAD_OK) return s;
    if ((s = req_dim(root, "num_attention_heads", &c->n_heads)) != ROAD_OK) return s;

    /* num_key_value_heads: null means "as many as query heads" in every class; an absent key
     * is the class default (8 for MistralConfig, 4 for Gemma's). */
    const cJSON *kv = member(root, "num_key_value_heads");
    if (present(kv)) {
        if ((s = want_int(kv, NULL, "num_key_value_heads", 1, DIM_MAX, &c->n_kv_heads)) != ROAD_OK)
            return s;
    } else {
        c->n_kv_heads = !kv && f->kv_heads > 0 ? f->kv_heads : c->n_heads;
    }
    if (c->n_heads % c->n_kv_heads != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "num_attention_heads (%lld) must be a multiple of num_key_value_heads "
                           "(%lld): each key/value head serves a whole group of query heads",
                           (long long)c->n_heads, (long long)c->n_kv_heads);

    /* head_dim: read by most classes (absent: their default, or hidden / heads); qwen2 (4.46)
     * and phi3 derive it whatever the file says. */
    const cJSON *hd = member(root, "head_dim");
    const bool has_hd = present(hd);
    if (has_hd && (s = want_int(hd, NULL, "head_dim", 1, DIM_MAX, &c->head_dim)) != ROAD_OK)
        return s;
    if (!has_hd && f->head_dim > 0 && !hd) {
        c->head_dim = f->head_dim;
    } else if (!has_hd || !f->head_dim_key) {
        if (c->hidden_size % c->n_heads != 0)
            return road__error(ROAD_ERR_CONFIG,
                               "hidden_size (%lld) must be a multiple of num_attention_heads "
                               "(%lld) when head_dim is not given",
                               (long long)c->hidden_size, (long long)c->n_heads);
        int64_t derived = c->hidden_size / c->n_heads;
        if (has_hd && c->head_dim != derived)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "%s head_dim %lld differs from hidden_size / num_attention_heads "
                               "= %lld; transformers versions disagree on which one a %s "
                               "model uses, so road does not guess",
                               f->name, (long long)c->head_dim, (long long)derived, f->name);
        c->head_dim = derived;
    }
    if (c->head_dim % 2 != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "head_dim must be even (RoPE rotates the two halves of each head), "
                           "got %lld",
                           (long long)c->head_dim);
    if (c->n_heads * c->head_dim > DIM_MAX)
        return road__error(ROAD_ERR_CONFIG,
                           "num_attention_heads * head_dim = %lld is too large (at most %lld)",
                           (long long)(c->n_heads * c->head_dim), (long long)DIM_MAX);
    return ROAD_OK;
}

/* Biases: llama's attention_bias (q/k/v/o) and mlp_bias; qwen3, gemma and olmo2 read
 * attention_bias (q/k/v/o) only; qwen2's q/k/v biases are fixed; mistral and phi3 have none. */
static road_status parse_biases(const cJSON *root, const family_info *f, road_llm_config *c) {
    bool attention_bias = false, mlp_bias = false;
    road_status s;
    if ((s = opt_bool(root, "attention_bias", &attention_bias)) != ROAD_OK) return s;
    if ((s = opt_bool(root, "mlp_bias", &mlp_bias)) != ROAD_OK) return s;
    const bool reads_attention =
        f->f != FAMILY_MISTRAL && f->f != FAMILY_QWEN2 && f->f != FAMILY_PHI3;
    const bool reads_mlp = f->f == FAMILY_LLAMA;
    if ((attention_bias && !reads_attention) || (mlp_bias && !reads_mlp))
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s true is not supported for %s models: transformers' %s ignores "
                           "it (%s), so the checkpoint does not match the class it names",
                           attention_bias && !reads_attention ? "attention_bias" : "mlp_bias",
                           c->model_type, f->cls,
                           f->f == FAMILY_QWEN2
                               ? "q/k/v always have biases, o_proj and the MLP none"
                           : reads_attention ? "the MLP has no bias"
                                             : "no layer has a bias");
    c->qkv_bias = f->f == FAMILY_QWEN2 || attention_bias;
    c->o_bias = attention_bias;
    c->mlp_bias = mlp_bias;
    return ROAD_OK;
}

static void set_sliding(road_llm_config *c, int64_t layer) {
    c->sliding_layers[layer / 64] |= (uint64_t)1 << (layer % 64);
}

/* A per-layer pattern needs its layers listed (ROAD_MAX_PATTERN_LAYERS at most). */
static road_status pattern_fits(const road_llm_config *c, const char *key) {
    if (c->n_layers <= ROAD_MAX_PATTERN_LAYERS) return ROAD_OK;
    return road__error(ROAD_ERR_UNSUPPORTED,
                       "%s describes %lld layers one by one; road lists at most %d layers with "
                       "different attention",
                       key, (long long)c->n_layers, ROAD_MAX_PATTERN_LAYERS);
}

/* layer_types (transformers >= 4.53): each layer's attention; the list decides. */
static road_status parse_layer_types(const cJSON *lt, road_llm_config *c, bool *any_sliding) {
    road_status s;
    if (!cJSON_IsArray(lt)) return bad(ROAD_ERR_CONFIG, NULL, "layer_types", "a list or null", lt);
    int n = cJSON_GetArraySize(lt);
    if ((int64_t)n != c->n_layers)
        return road__error(ROAD_ERR_CONFIG,
                           "layer_types lists %d layers but num_hidden_layers is %lld", n,
                           (long long)c->n_layers);
    if ((s = pattern_fits(c, "layer_types")) != ROAD_OK) return s;
    int i = 0;
    *any_sliding = false;
    for (const cJSON *e = lt->child; e; e = e->next, i++) {
        char key[48];
        snprintf(key, sizeof key, "layer_types[%d]", i);
        const char *name = NULL;
        if ((s = want_string(e, NULL, key, &name)) != ROAD_OK) return s;
        if (strcmp(name, "sliding_attention") == 0) {
            set_sliding(c, i);
            *any_sliding = true;
        } else if (strcmp(name, "full_attention") != 0) {
            return unsupported_string(key, name,
                                      "road implements \"full_attention\" and "
                                      "\"sliding_attention\"");
        }
    }
    return ROAD_OK;
}

/* The sliding window and which layers use it: every layer for mistral and phi3 (when set);
 * gemma2 the even layers; gemma3 all but every sliding_window_pattern-th; layer_types, when
 * given, lists them (and must agree with the pattern). qwen2/qwen3's use_sliding_window
 * (windows from max_window_layers on) is not implemented. */
static road_status parse_window(const cJSON *root, const family_info *f, road_llm_config *c) {
    road_status s;
    c->sliding_window = 0;
    c->sliding_all = false;
    memset(c->sliding_layers, 0, sizeof c->sliding_layers);
    const cJSON *v = member(root, "sliding_window");
    const bool reads_window = f->f == FAMILY_MISTRAL || f->f == FAMILY_PHI3 || f->gemma;
    if (reads_window) {
        if (!v && f->f != FAMILY_PHI3) {
            c->sliding_window = f->f == FAMILY_MISTRAL ? DEFAULT_MISTRAL_SLIDING_WINDOW : 4096;
        } else if (present(v)) {
            if ((s = want_int(v, NULL, "sliding_window", 1, DIM_MAX, &c->sliding_window)) !=
                ROAD_OK)
                return s;
        }
    } else if (f->f == FAMILY_QWEN2 || f->f == FAMILY_QWEN3) {
        bool use = false;
        if ((s = opt_bool(root, "use_sliding_window", &use)) != ROAD_OK) return s;
        if (use)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "use_sliding_window true is not supported: %s applies the window "
                               "to the layers from max_window_layers on, and transformers "
                               "versions disagree on which",
                               f->name);
    }
    /* the family's pattern */
    bool pattern = false;
    if (c->sliding_window > 0 && f->gemma) {
        int64_t period = 2; /* gemma2: layer i slides iff i is even */
        if (f->f == FAMILY_GEMMA3) {
            const cJSON *p = member(root, "sliding_window_pattern");
            if (!present(p)) p = member(root, "_sliding_window_pattern");
            period = 6;
            if (present(p) &&
                (s = want_int(p, NULL, "sliding_window_pattern", 1, DIM_MAX, &period)) != ROAD_OK)
                return s;
        }
        if ((s = pattern_fits(c, "sliding_window_pattern")) != ROAD_OK) return s;
        for (int64_t l = 0; l < c->n_layers; l++)
            if ((l + 1) % period != 0) set_sliding(c, l);
        pattern = true;
    } else if (c->sliding_window > 0) {
        c->sliding_all = true;
    }
    const cJSON *lt = member(root, "layer_types");
    if (!present(lt)) return ROAD_OK;
    road_llm_config listed = *c;
    memset(listed.sliding_layers, 0, sizeof listed.sliding_layers);
    bool any = false;
    if ((s = parse_layer_types(lt, &listed, &any)) != ROAD_OK) return s;
    if (any && c->sliding_window == 0)
        return road__error(ROAD_ERR_CONFIG,
                           "layer_types lists sliding_attention layers but sliding_window is not "
                           "set");
    if (pattern && memcmp(listed.sliding_layers, c->sliding_layers, sizeof c->sliding_layers) != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "layer_types and %s's sliding-window pattern disagree on which layers "
                           "slide; keep one",
                           f->name);
    memcpy(c->sliding_layers, listed.sliding_layers, sizeof c->sliding_layers);
    c->sliding_all = false;
    return ROAD_OK;
}

/* Attention's logit scale and the soft-caps: head_dim^-0.5, or gemma's query_pre_attn_scalar;
 * gemma2's attn_logit_softcapping and final_logit_softcapping (null: none). */
static road_status parse_attention(const cJSON *root, const family_info *f, road_llm_config *c) {
    road_status s;
    double qpas = (double)c->head_dim;
    c->attn_softcap = c->final_softcap = 0.0;
    if (f->gemma) {
        const cJSON *q = member(root, "query_pre_attn_scalar");
        qpas = 256.0; /* the Gemma classes' default */
        if (present(q) && (s = want_positive(q, NULL, "query_pre_attn_scalar", &qpas)) != ROAD_OK)
            return s;
    }
    c->attn_scale = pow(qpas, -0.5);
    static const char *const caps[2] = {"attn_logit_softcapping", "final_logit_softcapping"};
    double *dst[2] = {&c->attn_softcap, &c->final_softcap};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = member(root, caps[i]);
        if (f->f == FAMILY_GEMMA2) {
            *dst[i] = i == 0 ? 50.0 : 30.0; /* Gemma2Config's defaults */
            if (v && cJSON_IsNull(v))
                *dst[i] = 0.0;
            else if (v && (s = want_positive(v, NULL, caps[i], dst[i])) != ROAD_OK)
                return s;
        } else if (present(v)) {
            /* gemma3's classes read final_logit_softcapping, and only from 4.5x on */
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "%s is not supported for %s models (gemma2 caps logits; "
                               "transformers versions disagree on others)",
                               caps[i], f->name);
        }
    }
    return ROAD_OK;
}

static road_status parse_dtype(const cJSON *root, road_llm_config *c) {
    /* v5 writes "dtype"; it wins over "torch_dtype" there. */
    const char *key = "dtype";
    const cJSON *v = member(root, key);
    if (!present(v)) {
        key = "torch_dtype";
        v = member(root, key);
    }
    c->torch_dtype = ROAD_DTYPE_F32;
    if (!present(v)) return ROAD_OK;
    const char *name = NULL;
    road_status s = want_string(v, NULL, key, &name);
    if (s != ROAD_OK) return s;
    static const struct {
        const char *name;
        road_dtype t;
    } dtypes[] = {
        {"float32", ROAD_DTYPE_F32}, {"bfloat16", ROAD_DTYPE_BF16}, {"float16", ROAD_DTYPE_F16}};
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            c->torch_dtype = dtypes[i].t;
            return ROAD_OK;
        }
    }
    return unsupported_string(key, name,
                              "road reads \"float32\", \"bfloat16\" and \"float16\" checkpoints");
}

static road_status parse_tokens(const cJSON *root, road_llm_config *c) {
    road_status s;
    c->bos_token_id = -1;
    c->n_eos = 0;
    const cJSON *bos = member(root, "bos_token_id");
    if (present(bos) &&
        (s = want_token(bos, "bos_token_id", c->vocab_size, &c->bos_token_id)) != ROAD_OK)
        return s;
    const cJSON *eos = member(root, "eos_token_id");
    if (eos && (s = parse_eos(eos, c->vocab_size, c->eos_token_ids, &c->n_eos)) != ROAD_OK)
        return s;
    return ROAD_OK;
}

/* Keys that would change the model road builds and have no other home. */
static road_status check_refused(const cJSON *root) {
    const cJSON *q = member(root, "quantization_config");
    const cJSON *qm = cJSON_IsObject(q) ? member(q, "quant_method") : NULL;
    /* bitsandbytes' int8 / 4-bit weights are read (docs/quant.md): each layer says how it is
     * stored, so the config needs nothing from it */
    if (present(q) && !(cJSON_IsString(qm) && strcmp(qm->valuestring, "bitsandbytes") == 0)) {
        const cJSON *m = qm;
        char got[DESCRIBE_MAX] = "";
        if (cJSON_IsString(m))
            road__json_quote(m->valuestring, got, sizeof got);
        else if (m)
            road__json_describe(m, got, sizeof got);
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "config.json has a quantization_config%s%s%s; road loads float32, "
                           "bfloat16 and float16 checkpoints and bitsandbytes' int8 / nf4 / fp4",
                           m ? " (quant_method " : "", got, m ? ")" : "");
    }
    /* pretraining_tp > 1 only splits transformers' 4.x matmuls into slices and sums them: the
     * same model up to rounding, so any positive value is read. */
    const cJSON *tp = member(root, "pretraining_tp");
    int64_t x = 0;
    if (present(tp)) return want_int(tp, NULL, "pretraining_tp", 1, DIM_MAX, &x);
    return ROAD_OK;
}

static road_status parse_tree(const cJSON *root, road_llm_config *c) {
    const family_info *f = NULL;
    road_status s;
    if ((s = parse_family(root, &f, c)) != ROAD_OK) return s;
    if ((s = check_refused(root)) != ROAD_OK) return s;
    if ((s = parse_activation(root, f, c)) != ROAD_OK) return s;
    if ((s = parse_shape(root, f, c)) != ROAD_OK) return s;

    c->rms_norm_eps = f->eps;
    const cJSON *eps = member(root, "rms_norm_eps");
    if (eps && (s = want_positive(eps, NULL, "rms_norm_eps", &c->rms_norm_eps)) != ROAD_OK)
        return s;
    c->max_position_embeddings = f->max_position_embeddings;
    const cJSON *mp = member(root, "max_position_embeddings");
    if (mp && (s = want_int(mp, NULL, "max_position_embeddings", 1, DIM_MAX,
                            &c->max_position_embeddings)) != ROAD_OK)
        return s;
    /* after max_position_embeddings: dynamic, yarn and longrope read it */
    if ((s = road__config_parse_rope(root, f, c)) != ROAD_OK) return s;

    if ((s = parse_biases(root, f, c)) != ROAD_OK) return s;
    if ((s = parse_window(root, f, c)) != ROAD_OK) return s;
    if ((s = parse_attention(root, f, c)) != ROAD_OK) return s;
    c->tie_word_embeddings = f->tie;
    if ((s = opt_bool(root, "tie_word_embeddings", &c->tie_word_embeddings)) != ROAD_OK) return s;
    if ((s = parse_tokens(root, c)) != ROAD_OK) return s;
    return parse_dtype(root, c);
}

int64_t road_llm_config_max_tokens(const road_llm_config *c) {
    if (!c) return 0;
    if (c->rope_type != ROAD_ROPE_DYNAMIC || !(c->rope_factor > 1.0))
        return c->max_position_embeddings;
    const double n = (double)c->max_position_embeddings * c->rope_factor;
    return n < (double)DIM_MAX ? (int64_t)n : DIM_MAX;
}

bool road_llm_config_layer_slides(const road_llm_config *c, int64_t layer) {
    if (!c || c->sliding_window <= 0 || layer < 0 || layer >= c->n_layers) return false;
    if (c->sliding_all) return true;
    return layer < ROAD_MAX_PATTERN_LAYERS &&
           (c->sliding_layers[layer / 64] >> (layer % 64) & 1) != 0;
}

/* ---- public: config.json -------------------------------------------------------------------- */

road_status road_llm_config_parse(const char *json, size_t len, road_llm_config *out) {
    if (!json || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_llm_config_parse: NULL argument");
    cJSON *root = NULL;
    road_status s = road_json_parse(json, len, &root);
    if (s != ROAD_OK) return s;
    if (!cJSON_IsObject(root)) {
        char got[DESCRIBE_MAX];
        road__json_describe(root, got, sizeof got);
        cJSON_Delete(root);
        return road__error(ROAD_ERR_FORMAT, "config.json must hold a JSON object, got %s", got);
    }
    road_llm_config c;
    memset(&c, 0, sizeof c); /* padding too: equal configs compare equal byte for byte */
    s = parse_tree(root, &c);
    cJSON_Delete(root);
    if (s == ROAD_OK) *out = c;
    return s;
}

/* path names a folder: `path/name`, or NOT_FOUND naming what is missing. Else a copy of path.
 * A path that does not exist is NOT_FOUND too. */
static road_status resolve(const char *path, const char *name, char **out) {
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return road__error(ROAD_ERR_NOT_FOUND, "'%s' does not exist", path);
    char *file = road__is_dir(path) ? road__path_join(path, name) : road__strdup(path);
    if (!file) return ROAD_ERR_NO_MEMORY;
    if (stat(file, &st) != 0 && errno == ENOENT) {
        road__free(file);
        return road__error(ROAD_ERR_NOT_FOUND,
                           "'%s' has no %s; pass a Hugging Face checkpoint folder or its %s", path,
                           name, name);
    }
    *out = file;
    return ROAD_OK;
}

road_status road_llm_config_load(const char *path, road_llm_config *out) {
    if (!path || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_llm_config_load: NULL argument");
    char *file = NULL, *data = NULL;
    size_t len = 0;
    road_status s = resolve(path, CONFIG_FILE_NAME, &file);
    if (s == ROAD_OK) s = road__file_read(file, CONFIG_MAX_BYTES, &data, &len);
    if (s == ROAD_OK) {
        s = road_llm_config_parse(data, len, out);
        if (s != ROAD_OK && s != ROAD_ERR_NO_MEMORY) road__error_prefix("%s", file);
    }
    road__free(data);
    road__free(file);
    return s;
}

/* ---- generation_config.json ----------------------------------------------------------------- */

/* Sampling knobs of transformers' GenerationConfig that road's sampler does not have, with the
 * value that leaves generation unchanged. Other values are read but only logged: the file
 * still gives road's sampler its settings, and the caller decides what to use. */
static const struct {
    const char *key;
    double neutral;
} ignored_knobs[] = {
    {"repetition_penalty", 1.0},   {"num_beams", 1.0},      {"typical_p", 1.0},  {"min_p", 0.0},
    {"no_repeat_ngram_size", 0.0}, {"epsilon_cutoff", 0.0}, {"eta_cutoff", 0.0},
};

static road_status parse_generation(const cJSON *root, int64_t vocab, road_generation_config *g) {
    road_status s;
    const cJSON *v;
    if ((v = member(root, "bos_token_id")) != NULL) {
        g->bos_token_id = -1;
        if (present(v) && (s = want_token(v, "bos_token_id", vocab, &g->bos_token_id)) != ROAD_OK)
            return s;
    }
    if ((v = member(root, "eos_token_id")) != NULL &&
        (s = parse_eos(v, vocab, g->eos_token_ids, &g->n_eos)) != ROAD_OK)
        return s;
    if (present(v = member(root, "pad_token_id")) &&
        (s = want_token(v, "pad_token_id", vocab, &g->pad_token_id)) != ROAD_OK)
        return s;
    if (present(v = member(root, "do_sample")) &&
        (s = want_bool(v, NULL, "do_sample", &g->do_sample)) != ROAD_OK)
        return s;
    /* null is "no such step" in transformers: temperature 1, top-k off, top-p off. */
    if ((v = member(root, "temperature")) != NULL) {
        g->temperature = DEFAULT_TEMPERATURE;
        if (present(v)) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0) || !(v->valuedouble <= FLT_MAX))
                return bad(ROAD_ERR_CONFIG, NULL, "temperature", "a finite number >= 0 (0: greedy)",
                           v);
            g->temperature = (float)v->valuedouble;
        }
    }
    if ((v = member(root, "top_k")) != NULL) {
        int64_t k = 0;
        if (present(v) && (s = want_int(v, NULL, "top_k", 0, INT32_MAX, &k)) != ROAD_OK) return s;
        g->top_k = (int32_t)k;
    }
    if ((v = member(root, "top_p")) != NULL) {
        g->top_p = DEFAULT_TOP_P;
        if (present(v)) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble > 0.0) || !(v->valuedouble <= 1.0))
                return bad(ROAD_ERR_CONFIG, NULL, "top_p", "a number in (0, 1]", v);
            g->top_p = (float)v->valuedouble;
            if (!(g->top_p > 0.0f)) g->top_p = FLT_MIN; /* a tiny top_p rounded to 0 */
        }
    }
    if ((v = member(root, "max_new_tokens")) != NULL) {
        g->max_new_tokens = 0;
        if (present(v) && (s = want_int(v, NULL, "max_new_tokens", 1, (int64_t)1 << 53,
                                        &g->max_new_tokens)) != ROAD_OK)
            return s;
    }
    for (size_t i = 0; i < sizeof ignored_knobs / sizeof ignored_knobs[0]; i++) {
        v = member(root, ignored_knobs[i].key);
        if (cJSON_IsNumber(v) && v->valuedouble != ignored_knobs[i].neutral)
            road__log(ROAD_LOG_WARN, "%s sets %s = %g; road's sampler does not implement it",
                      GENERATION_FILE_NAME, ignored_knobs[i].key, v->valuedouble);
    }
    return ROAD_OK;
}

road_status road_generation_config_load(const char *dir, const road_llm_config *cfg,
                                        road_generation_config *out) {
    if (!dir || !cfg || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_generation_config_load: NULL argument");
    if (!road__is_dir(dir)) return road__error(ROAD_ERR_NOT_FOUND, "'%s' is not a folder", dir);
    road_generation_config g;
    memset(&g, 0, sizeof g);
    g.bos_token_id = cfg->bos_token_id;
    g.n_eos = cfg->n_eos > 0 && cfg->n_eos <= ROAD_MAX_EOS ? cfg->n_eos : 0;
    memcpy(g.eos_token_ids, cfg->eos_token_ids, (size_t)g.n_eos * sizeof g.eos_token_ids[0]);
    g.pad_token_id = -1;
    g.do_sample = false;
    g.temperature = DEFAULT_TEMPERATURE;
    g.top_k = DEFAULT_TOP_K;
    g.top_p = DEFAULT_TOP_P;
    g.max_new_tokens = 0;

    char *file = road__path_join(dir, GENERATION_FILE_NAME);
    if (!file) return ROAD_ERR_NO_MEMORY;
    struct stat st;
    if (stat(file, &st) != 0 && errno == ENOENT) {
        road__free(file);
        *out = g;
        return ROAD_OK;
    }
    char *data = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    road_status s = road__file_read(file, CONFIG_MAX_BYTES, &data, &len);
    if (s == ROAD_OK) {
        s = road_json_parse(data, len, &root);
        if (s == ROAD_OK && !cJSON_IsObject(root)) {
            char got[DESCRIBE_MAX];
            road__json_describe(root, got, sizeof got);
            s = road__error(ROAD_ERR_FORMAT, "the file must hold a JSON object, got %s", got);
        }
        if (s == ROAD_OK) s = parse_generation(root, cfg->vocab_size, &g);
        if (s != ROAD_OK && s != ROAD_ERR_NO_MEMORY) road__error_prefix("%s", file);
    }
    cJSON_Delete(root);
    road__free(data);
    road__free(file);
    if (s == ROAD_OK) *out = g;
    return s;
}
