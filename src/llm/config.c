/*
 * llm/config.c - a Llama-family config.json and generation_config.json (see road/llm.h).
 *
 * The reading follows what transformers' LlamaConfig, MistralConfig and Qwen2Config do with a
 * config.json (4.4x, plus the v5 spellings "dtype" and "rope_parameters"), so a file means the
 * same model here as there: per-type defaults (max_position_embeddings 2048 / 131072 (4096*32)
 * / 32768, mistral's sliding_window 4096 and num_key_value_heads 8 when the key is absent),
 * head_dim from the file or hidden_size / num_attention_heads, rope_scaling's older "type"
 * spelling, qwen2's fixed q/k/v biases.
 *
 * The rule is "never a silently different model": a field that changes the computation in a
 * way road does not implement is refused with ROAD_ERR_UNSUPPORTED naming the field, the value
 * and what road supports (other rope types, other activations, sliding windows per layer,
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
 * versions use it). attention_bias / mlp_bias true are refused for mistral and qwen2: their
 * transformers classes ignore the keys and fix the biases, so such a file and its checkpoint
 * disagree.
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
#include "road/llm.h"

#define CONFIG_FILE_NAME "config.json"
#define GENERATION_FILE_NAME "generation_config.json"
/* Real config.json files are a few KB; a bigger file is a weight file or a dataset passed by
 * mistake, and reading it whole would waste memory. */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)
/* Room for a described JSON value in a message (road__json_describe shortens long strings). */
#define DESCRIBE_MAX 320
/* Largest size of any one dimension (see the header comment). */
#define DIM_MAX ((int64_t)INT32_MAX)

/* transformers' defaults when a key is absent (GenerationConfig for the sampling fields). */
#define DEFAULT_RMS_NORM_EPS 1e-6
#define DEFAULT_ROPE_THETA 10000.0
#define DEFAULT_MISTRAL_SLIDING_WINDOW 4096
#define DEFAULT_MISTRAL_KV_HEADS 8
#define DEFAULT_TEMPERATURE 1.0f
#define DEFAULT_TOP_K 50
#define DEFAULT_TOP_P 1.0f

typedef enum family { FAMILY_LLAMA, FAMILY_MISTRAL, FAMILY_QWEN2 } family;

static const struct {
    family f;
    const char *name;
    int64_t max_position_embeddings; /* the class default */
} families[] = {
    {FAMILY_LLAMA, "llama", 2048},
    {FAMILY_MISTRAL, "mistral", 4096 * 32},
    {FAMILY_QWEN2, "qwen2", 32768},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

/* ---- typed members with messages naming "parent.key" ---------------------------------------- */

/* The member, or NULL when absent. JSON null is returned as a cJSON null item. */
static const cJSON *member(const cJSON *obj, const char *key) {
    return road__json_get(obj, key);
}

static bool present(const cJSON *v) {
    return v != NULL && !cJSON_IsNull(v);
}

static road_status bad(road_status s, const char *parent, const char *key, const char *allowed,
                       const cJSON *v) {
    char got[DESCRIBE_MAX];
    road__json_describe(v, got, sizeof got);
    return road__error(s, "%s%s%s must be %s, got %s", parent ? parent : "", parent ? "." : "", key,
                       allowed, got);
}

/* An integer in [lo, hi] (both within +-2^53, where a double holds every integer exactly). */
static road_status want_int(const cJSON *v, const char *parent, const char *key, int64_t lo,
                            int64_t hi, int64_t *out) {
    if (!v || !road__json_is_int(v) || !(v->valuedouble >= (double)lo) ||
        !(v->valuedouble <= (double)hi)) {
        char allowed[96];
        snprintf(allowed, sizeof allowed, "an integer from %lld to %lld", (long long)lo,
                 (long long)hi);
        return bad(ROAD_ERR_CONFIG, parent, key, allowed, v);
    }
    *out = (int64_t)v->valuedouble;
    return ROAD_OK;
}

/* A finite number > 0. */
static road_status want_positive(const cJSON *v, const char *parent, const char *key, double *out) {
    if (!v || !cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble > 0.0))
        return bad(ROAD_ERR_CONFIG, parent, key, "a finite number > 0", v);
    *out = v->valuedouble;
    return ROAD_OK;
}

static road_status want_bool(const cJSON *v, const char *parent, const char *key, bool *out) {
    if (!cJSON_IsBool(v)) return bad(ROAD_ERR_CONFIG, parent, key, "true or false", v);
    *out = cJSON_IsTrue(v);
    return ROAD_OK;
}

static road_status want_string(const cJSON *v, const char *parent, const char *key,
                               const char **out) {
    if (!cJSON_IsString(v) || !v->valuestring)
        return bad(ROAD_ERR_CONFIG, parent, key, "a string", v);
    *out = v->valuestring;
    return ROAD_OK;
}

/* Optional boolean member: *out keeps its default when absent. */
static road_status opt_bool(const cJSON *obj, const char *key, bool *out) {
    const cJSON *v = member(obj, key);
    return v ? want_bool(v, NULL, key, out) : ROAD_OK;
}

/* A required size: an integer from 1 to DIM_MAX. */
static road_status req_dim(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *v = member(obj, key);
    if (!v)
        return road__error(ROAD_ERR_CONFIG,
                           "%s is missing; a Llama-family config.json gives it as an integer", key);
    return want_int(v, NULL, key, 1, DIM_MAX, out);
}

static road_status unsupported_string(const char *field, const char *value, const char *what) {
    char q[DESCRIBE_MAX];
    road__json_quote(value, q, sizeof q);
    return road__error(ROAD_ERR_UNSUPPORTED, "%s %s is not supported; %s", field, q, what);
}

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

static road_status parse_family(const cJSON *root, family *f, road_llm_config *c) {
    const cJSON *v = member(root, "model_type");
    if (!v)
        return road__error(ROAD_ERR_CONFIG,
                           "model_type is missing; road reads config.json of \"llama\", "
                           "\"mistral\" and \"qwen2\" models");
    const char *name = NULL;
    road_status s = want_string(v, NULL, "model_type", &name);
    if (s != ROAD_OK) return s;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        if (strcmp(name, families[i].name) == 0) {
            *f = families[i].f;
            snprintf(c->model_type, sizeof c->model_type, "%s", families[i].name);
            return ROAD_OK;
        }
    }
    return unsupported_string("model_type", name,
                              "road runs \"llama\", \"mistral\" and \"qwen2\" models");
}

static road_status parse_activation(const cJSON *root) {
    const cJSON *v = member(root, "hidden_act");
    if (!v) return ROAD_OK; /* every supported class defaults to silu */
    const char *name = NULL;
    road_status s = want_string(v, NULL, "hidden_act", &name);
    if (s != ROAD_OK) return s;
    /* transformers maps "swish" to the same SiLU module. */
    if (strcmp(name, "silu") == 0 || strcmp(name, "swish") == 0) return ROAD_OK;
    return unsupported_string("hidden_act", name,
                              "road implements \"silu\" (the SwiGLU MLP of llama, mistral "
                              "and qwen2)");
}

static road_status parse_shape(const cJSON *root, family f, road_llm_config *c) {
    road_status s;
    if ((s = req_dim(root, "vocab_size", &c->vocab_size)) != ROAD_OK) return s;
    if ((s = req_dim(root, "hidden_size", &c->hidden_size)) != ROAD_OK) return s;
    if ((s = req_dim(root, "intermediate_size", &c->intermediate_size)) != ROAD_OK) return s;
    if ((s = req_dim(root, "num_hidden_layers", &c->n_layers)) != ROAD_OK) return s;
    if ((s = req_dim(root, "num_attention_heads", &c->n_heads)) != ROAD_OK) return s;

    /* num_key_value_heads: null means "as many as query heads" in every class; an absent key
     * is the class default, which is 8 for MistralConfig. */
    const cJSON *kv = member(root, "num_key_value_heads");
    if (present(kv)) {
        if ((s = want_int(kv, NULL, "num_key_value_heads", 1, DIM_MAX, &c->n_kv_heads)) != ROAD_OK)
            return s;
    } else {
        c->n_kv_heads = !kv && f == FAMILY_MISTRAL ? DEFAULT_MISTRAL_KV_HEADS : c->n_heads;
    }
    if (c->n_heads % c->n_kv_heads != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "num_attention_heads (%lld) must be a multiple of num_key_value_heads "
                           "(%lld): each key/value head serves a whole group of query heads",
                           (long long)c->n_heads, (long long)c->n_kv_heads);

    const cJSON *hd = member(root, "head_dim");
    const bool has_hd = present(hd);
    if (has_hd && (s = want_int(hd, NULL, "head_dim", 1, DIM_MAX, &c->head_dim)) != ROAD_OK)
        return s;
    if (!has_hd || f == FAMILY_QWEN2) {
        if (c->hidden_size % c->n_heads != 0)
            return road__error(ROAD_ERR_CONFIG,
                               "hidden_size (%lld) must be a multiple of num_attention_heads "
                               "(%lld) when head_dim is not given",
                               (long long)c->hidden_size, (long long)c->n_heads);
        int64_t derived = c->hidden_size / c->n_heads;
        if (has_hd && c->head_dim != derived)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "qwen2 head_dim %lld differs from hidden_size / num_attention_heads "
                               "= %lld; transformers versions disagree on which one a qwen2 "
                               "model uses, so road does not guess",
                               (long long)c->head_dim, (long long)derived);
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

/* The rope dict's type: "rope_type", or the older "type"; both set must agree. NULL if
 * neither is set. */
static road_status rope_type_name(const cJSON *rope, const char *where, const char **out) {
    const cJSON *rt = member(rope, "rope_type"), *ty = member(rope, "type");
    const char *a = NULL, *b = NULL;
    road_status s;
    if (present(rt) && (s = want_string(rt, where, "rope_type", &a)) != ROAD_OK) return s;
    if (present(ty) && (s = want_string(ty, where, "type", &b)) != ROAD_OK) return s;
    if (a && b && strcmp(a, b) != 0) {
        char qa[DESCRIBE_MAX], qb[DESCRIBE_MAX];
        road__json_quote(a, qa, sizeof qa);
        road__json_quote(b, qb, sizeof qb);
        return road__error(ROAD_ERR_CONFIG,
                           "%s.rope_type %s and %s.type %s disagree (transformers 4.x reads "
                           "\"type\", v5 \"rope_type\"); keep one",
                           where, qa, where, qb);
    }
    *out = a ? a : b;
    return ROAD_OK;
}

/* partial_rotary_factor (top level or in the rope dict): only 1 (rotate the whole head). */
static road_status check_partial_rotary(const cJSON *obj, const char *where) {
    const cJSON *v = member(obj, "partial_rotary_factor");
    if (!present(v)) return ROAD_OK;
    double x = 0.0;
    road_status s = want_positive(v, where, "partial_rotary_factor", &x);
    if (s != ROAD_OK) return s;
    if (x != 1.0)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s%spartial_rotary_factor %g is not supported; road applies RoPE to "
                           "the whole head (1.0)",
                           where ? where : "", where ? "." : "", x);
    return ROAD_OK;
}

/* transformers v5 may hold one rope dict per layer type ({"full_attention": {...}, ...}); a
 * flat dict has no object members. Only full attention everywhere is the plain case. */
static road_status per_layer_type(const cJSON **rope, const char **where) {
    bool nested = false;
    for (const cJSON *e = (*rope)->child; e; e = e->next) nested = nested || cJSON_IsObject(e);
    if (!nested) return ROAD_OK;
    const cJSON *full = member(*rope, "full_attention");
    if (!cJSON_IsObject(full) || cJSON_GetArraySize(*rope) != 1)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s holds one RoPE setting per layer type; road implements one "
                           "setting for all layers (\"full_attention\" only)",
                           *where);
    *where = strcmp(*where, "rope_scaling") == 0 ? "rope_scaling.full_attention"
                                                 : "rope_parameters.full_attention";
    *rope = full;
    return ROAD_OK;
}

/* rope_theta and rope_scaling, or v5's rope_parameters holding both. As in transformers v5, a
 * non-empty rope_scaling takes the place of rope_parameters. */
static road_status parse_rope(const cJSON *root, road_llm_config *c) {
    const cJSON *rs = member(root, "rope_scaling"), *rp = member(root, "rope_parameters");
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
        return bad(ROAD_ERR_CONFIG, NULL, "rope_scaling", "an object or null", rs);
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return bad(ROAD_ERR_CONFIG, NULL, "rope_parameters", "an object or null", rp);
    const cJSON *rope = NULL;
    const char *where = NULL;
    bool from_scaling = false;
    if (cJSON_IsObject(rs) && rs->child) {
        rope = rs;
        where = "rope_scaling";
        from_scaling = true;
    } else if (cJSON_IsObject(rp) && rp->child) {
        rope = rp;
        where = "rope_parameters";
    }

    road_status s;
    if (rope && (s = per_layer_type(&rope, &where)) != ROAD_OK) return s;
    const cJSON *top = member(root, "rope_theta");
    const cJSON *inner = rope ? member(rope, "rope_theta") : NULL;
    double theta_top = DEFAULT_ROPE_THETA, theta_in = 0.0;
    if (top && (s = want_positive(top, NULL, "rope_theta", &theta_top)) != ROAD_OK) return s;
    if (present(inner)) {
        if ((s = want_positive(inner, where, "rope_theta", &theta_in)) != ROAD_OK) return s;
        if (top && theta_in != theta_top)
            return road__error(ROAD_ERR_CONFIG,
                               "rope_theta (%g) and %s.rope_theta (%g) disagree; keep one",
                               theta_top, where, theta_in);
        c->rope_theta = theta_in;
    } else {
        c->rope_theta = theta_top;
    }
    if ((s = check_partial_rotary(root, NULL)) != ROAD_OK) return s;

    c->rope_type = ROAD_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (!rope) return ROAD_OK;
    if ((s = check_partial_rotary(rope, where)) != ROAD_OK) return s;
    const char *type = NULL;
    if ((s = rope_type_name(rope, where, &type)) != ROAD_OK) return s;
    if (!type) {
        /* transformers v5 reads rope_parameters without a type as "default"; 4.x fails on a
         * rope_scaling without one, and its factor would be silently dropped. */
        if (!from_scaling) return ROAD_OK;
        return road__error(ROAD_ERR_CONFIG,
                           "rope_scaling has no \"rope_type\"; use \"linear\" or \"llama3\" (with "
                           "their parameters), or null for plain RoPE");
    }
    char field[48];
    snprintf(field, sizeof field, "%s.rope_type", where);
    if (strcmp(type, "default") == 0) return ROAD_OK;
    if (strcmp(type, "linear") != 0 && strcmp(type, "llama3") != 0)
        return unsupported_string(field, type,
                                  "road implements \"default\", \"linear\" and \"llama3\"");
    const cJSON *factor = member(rope, "factor");
    if ((s = want_positive(factor, where, "factor", &c->rope_factor)) != ROAD_OK) return s;
    if (strcmp(type, "linear") == 0) {
        c->rope_type = ROAD_ROPE_LINEAR;
        return ROAD_OK;
    }
    c->rope_type = ROAD_ROPE_LLAMA3;
    if ((s = want_positive(member(rope, "low_freq_factor"), where, "low_freq_factor",
                           &c->rope_low_freq_factor)) != ROAD_OK)
        return s;
    if ((s = want_positive(member(rope, "high_freq_factor"), where, "high_freq_factor",
                           &c->rope_high_freq_factor)) != ROAD_OK)
        return s;
    /* The medium band interpolates by (orig/wavelength - low) / (high - low). */
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
        return road__error(ROAD_ERR_CONFIG,
                           "%s.high_freq_factor (%g) must be greater than low_freq_factor (%g)",
                           where, c->rope_high_freq_factor, c->rope_low_freq_factor);
    return want_int(member(rope, "original_max_position_embeddings"), where,
                    "original_max_position_embeddings", 1, DIM_MAX, &c->rope_original_max_pos);
}

/* Biases: llama's attention_bias (q/k/v/o) and mlp_bias; qwen2's q/k/v biases are fixed. */
static road_status parse_biases(const cJSON *root, family f, road_llm_config *c) {
    bool attention_bias = false, mlp_bias = false;
    road_status s;
    if ((s = opt_bool(root, "attention_bias", &attention_bias)) != ROAD_OK) return s;
    if ((s = opt_bool(root, "mlp_bias", &mlp_bias)) != ROAD_OK) return s;
    if (f == FAMILY_LLAMA) {
        c->qkv_bias = c->o_bias = attention_bias;
        c->mlp_bias = mlp_bias;
        return ROAD_OK;
    }
    if (attention_bias || mlp_bias)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s true is not supported for %s models: transformers' %s ignores it "
                           "(%s), so the checkpoint does not match the class it names",
                           attention_bias ? "attention_bias" : "mlp_bias", c->model_type,
                           f == FAMILY_QWEN2 ? "Qwen2" : "Mistral",
                           f == FAMILY_QWEN2 ? "q/k/v always have biases, o_proj and the MLP none"
                                             : "no layer has a bias");
    c->qkv_bias = f == FAMILY_QWEN2;
    c->o_bias = c->mlp_bias = false;
    return ROAD_OK;
}

/* The sliding window: mistral's sliding_window; qwen2's only with use_sliding_window, which
 * applies it to some layers only (max_window_layers) and is not implemented. */
static road_status parse_window(const cJSON *root, family f, road_llm_config *c) {
    road_status s;
    c->sliding_window = 0;
    if (f == FAMILY_MISTRAL) {
        const cJSON *v = member(root, "sliding_window");
        if (!v) {
            c->sliding_window = DEFAULT_MISTRAL_SLIDING_WINDOW;
        } else if (!cJSON_IsNull(v)) {
            if ((s = want_int(v, NULL, "sliding_window", 1, DIM_MAX, &c->sliding_window)) !=
                ROAD_OK)
                return s;
        }
    } else if (f == FAMILY_QWEN2) {
        bool use = false;
        if ((s = opt_bool(root, "use_sliding_window", &use)) != ROAD_OK) return s;
        if (use)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "use_sliding_window true is not supported: qwen2 applies the "
                               "window to the layers from max_window_layers on, and road has no "
                               "per-layer windows");
    }
    /* Newer configs list each layer's attention; only full attention everywhere is read. */
    const cJSON *lt = member(root, "layer_types");
    if (!present(lt)) return ROAD_OK;
    if (!cJSON_IsArray(lt)) return bad(ROAD_ERR_CONFIG, NULL, "layer_types", "a list or null", lt);
    int n = cJSON_GetArraySize(lt);
    if ((int64_t)n != c->n_layers)
        return road__error(ROAD_ERR_CONFIG,
                           "layer_types lists %d layers but num_hidden_layers is %lld", n,
                           (long long)c->n_layers);
    int i = 0;
    for (const cJSON *e = lt->child; e; e = e->next, i++) {
        char key[48];
        snprintf(key, sizeof key, "layer_types[%d]", i);
        const char *name = NULL;
        if ((s = want_string(e, NULL, key, &name)) != ROAD_OK) return s;
        if (strcmp(name, "full_attention") != 0)
            return unsupported_string(key, name,
                                      "road implements \"full_attention\" in every layer");
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
    family f = FAMILY_LLAMA;
    road_status s;
    if ((s = parse_family(root, &f, c)) != ROAD_OK) return s;
    if ((s = check_refused(root)) != ROAD_OK) return s;
    if ((s = parse_activation(root)) != ROAD_OK) return s;
    if ((s = parse_shape(root, f, c)) != ROAD_OK) return s;

    c->rms_norm_eps = DEFAULT_RMS_NORM_EPS;
    const cJSON *eps = member(root, "rms_norm_eps");
    if (eps && (s = want_positive(eps, NULL, "rms_norm_eps", &c->rms_norm_eps)) != ROAD_OK)
        return s;
    if ((s = parse_rope(root, c)) != ROAD_OK) return s;

    c->max_position_embeddings = 0;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        if (families[i].f == f) c->max_position_embeddings = families[i].max_position_embeddings;
    }
    const cJSON *mp = member(root, "max_position_embeddings");
    if (mp && (s = want_int(mp, NULL, "max_position_embeddings", 1, DIM_MAX,
                            &c->max_position_embeddings)) != ROAD_OK)
        return s;

    if ((s = parse_biases(root, f, c)) != ROAD_OK) return s;
    if ((s = parse_window(root, f, c)) != ROAD_OK) return s;
    c->tie_word_embeddings = false; /* the default of all three classes */
    if ((s = opt_bool(root, "tie_word_embeddings", &c->tie_word_embeddings)) != ROAD_OK) return s;
    if ((s = parse_tokens(root, c)) != ROAD_OK) return s;
    return parse_dtype(root, c);
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
