/*
 * llm/config_read.h - what the config.json readers of llm/ share (config.c, config_rope.c):
 * the families' descriptions and typed members with messages naming "parent.key" (private).
 */
#ifndef ROAD_LLM_CONFIG_READ_H
#define ROAD_LLM_CONFIG_READ_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"
#include "road/llm.h"

/* Room for a described JSON value in a message (road__json_describe shortens long strings). */
#define DESCRIBE_MAX 320
/* Largest size of any one dimension (see config.c's header comment). */
#define DIM_MAX ((int64_t)INT32_MAX)
#define DEFAULT_MISTRAL_KV_HEADS 8

typedef enum family {
    FAMILY_LLAMA,
    FAMILY_MISTRAL,
    FAMILY_QWEN2,
    FAMILY_QWEN3,
    FAMILY_GEMMA2,
    FAMILY_GEMMA3,
    FAMILY_PHI3,
    FAMILY_OLMO2
} family;

/* Each family's class defaults (what transformers uses when config.json lacks a key) and the
 * structure its modeling file builds. */
typedef struct family_info {
    family f;
    const char *name;
    const char *cls; /* transformers' class name, for messages */
    int64_t max_position_embeddings;
    int64_t kv_heads;  /* absent num_key_value_heads; 0: as many as query heads */
    int64_t head_dim;  /* absent head_dim; 0: hidden_size / num_attention_heads */
    bool head_dim_key; /* the class reads a head_dim key (else it derives it, see parse_shape) */
    double eps;        /* absent rms_norm_eps */
    double theta;      /* absent rope_theta */
    bool tie;          /* absent tie_word_embeddings */
    road_act act;
    road_norm_place place;
    bool plus_one; /* RMSNorm by (1 + w) */
    road_qk_norm qk_norm;
    bool fused; /* qkv_proj, gate_up_proj */
    bool gemma; /* embeddings scaled, query_pre_attn_scalar, hidden_activation */
} family_info;

/* ---- typed members with messages naming "parent.key" ---------------------------------------- */

/* The member, or NULL when absent. JSON null is returned as a cJSON null item. */
static inline const cJSON *member(const cJSON *obj, const char *key) {
    return road__json_get(obj, key);
}

static inline bool present(const cJSON *v) {
    return v != NULL && !cJSON_IsNull(v);
}

static inline road_status bad(road_status s, const char *parent, const char *key,
                              const char *allowed, const cJSON *v) {
    char got[DESCRIBE_MAX];
    road__json_describe(v, got, sizeof got);
    return road__error(s, "%s%s%s must be %s, got %s", parent ? parent : "", parent ? "." : "", key,
                       allowed, got);
}

/* An integer in [lo, hi] (both within +-2^53, where a double holds every integer exactly). */
static inline road_status want_int(const cJSON *v, const char *parent, const char *key, int64_t lo,
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
static inline road_status want_positive(const cJSON *v, const char *parent, const char *key,
                                        double *out) {
    if (!v || !cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble > 0.0))
        return bad(ROAD_ERR_CONFIG, parent, key, "a finite number > 0", v);
    *out = v->valuedouble;
    return ROAD_OK;
}

static inline road_status want_bool(const cJSON *v, const char *parent, const char *key,
                                    bool *out) {
    if (!cJSON_IsBool(v)) return bad(ROAD_ERR_CONFIG, parent, key, "true or false", v);
    *out = cJSON_IsTrue(v);
    return ROAD_OK;
}

static inline road_status want_string(const cJSON *v, const char *parent, const char *key,
                                      const char **out) {
    if (!cJSON_IsString(v) || !v->valuestring)
        return bad(ROAD_ERR_CONFIG, parent, key, "a string", v);
    *out = v->valuestring;
    return ROAD_OK;
}

/* Optional boolean member: *out keeps its default when absent. */
static inline road_status opt_bool(const cJSON *obj, const char *key, bool *out) {
    const cJSON *v = member(obj, key);
    return v ? want_bool(v, NULL, key, out) : ROAD_OK;
}

/* A required size: an integer from 1 to DIM_MAX. */
static inline road_status req_dim(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *v = member(obj, key);
    if (!v)
        return road__error(ROAD_ERR_CONFIG,
                           "%s is missing; a Llama-family config.json gives it as an integer", key);
    return want_int(v, NULL, key, 1, DIM_MAX, out);
}

static inline road_status unsupported_string(const char *field, const char *value,
                                             const char *what) {
    char q[DESCRIBE_MAX];
    road__json_quote(value, q, sizeof q);
    return road__error(ROAD_ERR_UNSUPPORTED, "%s %s is not supported; %s", field, q, what);
}

/* rope_theta, rope_scaling / rope_parameters, partial rotary and gemma3's local base into c
 * (config_rope.c). */
road_status road__config_parse_rope(const cJSON *root, const family_info *f, road_llm_config *c);

#endif
