/*
 * llm/config_rope.c - RoPE in config.json: rope_theta, rope_scaling (4.x) or rope_parameters
 * (v5, flat or per layer type), partial_rotary_factor, gemma3's rope_local_base_freq, and the
 * scaling types (linear, llama3, dynamic, yarn, longrope) with their parameters, refused where
 * transformers versions would read a file differently (see config.c's header comment).
 */
#include "llm/config_read.h"

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

/* partial_rotary_factor (top level or in the rope dict): phi3 rotates the first
 * head_dim x factor dims of each head; the other classes rotate the whole head (1 only). */
static road_status parse_partial_rotary(const cJSON *obj, const char *where, const family_info *f,
                                        road_llm_config *c) {
    const cJSON *v = member(obj, "partial_rotary_factor");
    if (!present(v)) return ROAD_OK;
    double x = 0.0;
    road_status s = want_positive(v, where, "partial_rotary_factor", &x);
    if (s != ROAD_OK) return s;
    if (x == 1.0) return ROAD_OK;
    if (f->f != FAMILY_PHI3 || x > 1.0)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s%spartial_rotary_factor %g is not supported for %s; road applies "
                           "RoPE to the whole head (1.0)%s",
                           where ? where : "", where ? "." : "", x, f->name,
                           f->f == FAMILY_PHI3 ? "" : " (phi3 models may rotate a part)");
    /* transformers: int(head_dim * partial_rotary_factor) */
    int64_t rot = (int64_t)((double)c->head_dim * x);
    if (rot < 2 || rot % 2 != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "%s%spartial_rotary_factor %g gives %lld rotary dims of head_dim %lld; "
                           "RoPE needs an even number >= 2",
                           where ? where : "", where ? "." : "", x, (long long)rot,
                           (long long)c->head_dim);
    c->rotary_dim = rot;
    return ROAD_OK;
}

/* transformers v5 may hold one rope dict per layer type ({"full_attention": {...},
 * "sliding_attention": {...}}); a flat dict has no object members. The full-attention dict is
 * the model's RoPE; a sliding-attention one is read by the caller (gemma3's local base). */
static road_status per_layer_type(const cJSON **rope, const char **where, const cJSON **sliding) {
    bool nested = false;
    *sliding = NULL;
    for (const cJSON *e = (*rope)->child; e; e = e->next) nested = nested || cJSON_IsObject(e);
    if (!nested) return ROAD_OK;
    const cJSON *full = member(*rope, "full_attention");
    const cJSON *slide = member(*rope, "sliding_attention");
    const int n = cJSON_GetArraySize(*rope);
    if (!cJSON_IsObject(full) || n != 1 + (slide != NULL) || (slide && !cJSON_IsObject(slide)))
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s holds RoPE settings per layer type; road reads "
                           "\"full_attention\" and \"sliding_attention\" only",
                           *where);
    *sliding = slide;
    *where = strcmp(*where, "rope_scaling") == 0 ? "rope_scaling.full_attention"
                                                 : "rope_parameters.full_attention";
    *rope = full;
    return ROAD_OK;
}

/* The sliding layers' RoPE: gemma3's rope_local_base_freq, or v5's
 * rope_parameters.sliding_attention (its rope_theta, default type only). */
static road_status parse_local_rope(const cJSON *root, const cJSON *sliding, const family_info *f,
                                    road_llm_config *c) {
    road_status s;
    const cJSON *lb = member(root, "rope_local_base_freq");
    c->rope_local_theta = 0.0;
    if (f->f != FAMILY_GEMMA3) {
        if (sliding)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "a RoPE setting for sliding-attention layers is not supported for "
                               "%s (gemma3_text models have one)",
                               f->name);
        return ROAD_OK;
    }
    c->rope_local_theta = 10000.0; /* Gemma3TextConfig's default */
    if (present(lb) &&
        (s = want_positive(lb, NULL, "rope_local_base_freq", &c->rope_local_theta)) != ROAD_OK)
        return s;
    if (!sliding) return ROAD_OK;
    const char *where = "rope_parameters.sliding_attention";
    const char *type = NULL;
    const cJSON *rt = member(sliding, "rope_type");
    if (present(rt) && (s = want_string(rt, where, "rope_type", &type)) != ROAD_OK) return s;
    if (type && strcmp(type, "default") != 0)
        return unsupported_string("rope_parameters.sliding_attention.rope_type", type,
                                  "gemma3's sliding layers use plain RoPE (\"default\")");
    const cJSON *th = member(sliding, "rope_theta");
    double theta = 0.0;
    if (present(th)) {
        if ((s = want_positive(th, where, "rope_theta", &theta)) != ROAD_OK) return s;
        if (present(lb) && theta != c->rope_local_theta)
            return road__error(
                ROAD_ERR_CONFIG,
                "rope_local_base_freq (%g) and %s.rope_theta (%g) disagree; keep one",
                c->rope_local_theta, where, theta);
        c->rope_local_theta = theta;
    }
    return ROAD_OK;
}

/* ---- yarn and longrope ------------------------------------------------------------------------
 */

/* An optional number >= 0 (absent or null: *out = 0). transformers reads yarn's mscale,
 * mscale_all_dim, beta_fast and beta_slow with `or`: 0 counts as not given. */
static road_status opt_nonneg(const cJSON *obj, const char *where, const char *key, double *out) {
    const cJSON *v = member(obj, key);
    *out = 0.0;
    if (!present(v)) return ROAD_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || !(v->valuedouble >= 0.0))
        return bad(ROAD_ERR_CONFIG, where, key, "a finite number >= 0", v);
    *out = v->valuedouble;
    return ROAD_OK;
}

/* original_max_position_embeddings of yarn or longrope: in the rope dict and/or at the top
 * level (where phi3 keeps it). Both set must agree. transformers 4.x reads only one place (yarn:
 * the rope dict; longrope: the top level, phi3's class default 4096 when absent); v5 takes the
 * top level first, then the rope dict. A rope_scaling (4.x's spelling) whose value 4.x would
 * not see, and that differs from what 4.x uses instead (max_position_embeddings), is refused;
 * in v5's rope_parameters v5's reading holds. *top_set: the top level (or phi3's default)
 * gives it, which 4.x's longrope also takes as its factor's source. */
static road_status parse_original_max(const cJSON *root, const cJSON *rope, const char *where,
                                      bool from_scaling, bool longrope, const family_info *f,
                                      road_llm_config *c, bool *top_set) {
    road_status s;
    const char *key = "original_max_position_embeddings";
    const cJSON *tv = member(root, key), *iv = member(rope, key);
    int64_t top = 0, in = 0;
    if (present(tv) && (s = want_int(tv, NULL, key, 1, DIM_MAX, &top)) != ROAD_OK) return s;
    if (present(iv) && (s = want_int(iv, where, key, 1, DIM_MAX, &in)) != ROAD_OK) return s;
    if (top && in && top != in)
        return road__error(ROAD_ERR_CONFIG, "%s (%lld) and %s.%s (%lld) disagree; keep one", key,
                           (long long)top, where, key, (long long)in);
    if (!top && longrope && f->f == FAMILY_PHI3) { /* Phi3Config's attribute, default 4096 */
        if (in && in != 4096)
            return road__error(ROAD_ERR_CONFIG,
                               "phi3 reads %s at the top level (default 4096), not %s.%s (%lld); "
                               "move it to the top level",
                               key, where, key, (long long)in);
        top = 4096;
    }
    *top_set = top != 0;
    /* what 4.x reads: yarn the rope dict's, longrope the top level's, else max_position_embeddings
     */
    const int64_t v4 = (longrope ? top : in) ? (longrope ? top : in) : c->max_position_embeddings;
    const int64_t v5 = top ? top : in ? in : c->max_position_embeddings;
    if (from_scaling && v4 != v5)
        return road__error(ROAD_ERR_CONFIG,
                           "%s %lld is read by transformers v5 but not 4.x, which reads %s %s "
                           "(%lld instead); write it %s",
                           key, (long long)v5, longrope ? "longrope's" : "yarn's",
                           longrope ? "at the top level only" : "in rope_scaling only",
                           (long long)v4, longrope ? "at the top level" : "in rope_scaling");
    c->rope_original_max_pos = v5;
    return ROAD_OK;
}

/* yarn (_compute_yarn_parameters, the same in 4.x and v5 given the factor and the original
 * length): factor, original_max_position_embeddings, beta_fast / beta_slow (32 / 1), truncate
 * (true), and the attention factor: attention_factor, else mscale(factor, mscale) /
 * mscale(factor, mscale_all_dim) when both are given, else mscale(factor, 1), where
 * mscale(s, m) = 0.1 m ln(s) + 1 for s > 1, else 1. */
static double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

static road_status parse_yarn(const cJSON *root, const cJSON *rope, const char *where,
                              bool from_scaling, road_llm_config *c) {
    road_status s;
    bool top_set = false;
    c->rope_type = ROAD_ROPE_YARN;
    if ((s = parse_original_max(root, rope, where, from_scaling, false, NULL, c, &top_set)) !=
        ROAD_OK)
        return s;
    double mscale = 0.0, mscale_all = 0.0;
    if ((s = opt_nonneg(rope, where, "beta_fast", &c->rope_beta_fast)) != ROAD_OK) return s;
    if ((s = opt_nonneg(rope, where, "beta_slow", &c->rope_beta_slow)) != ROAD_OK) return s;
    if ((s = opt_nonneg(rope, where, "mscale", &mscale)) != ROAD_OK) return s;
    if ((s = opt_nonneg(rope, where, "mscale_all_dim", &mscale_all)) != ROAD_OK) return s;
    if (c->rope_beta_fast == 0.0) c->rope_beta_fast = 32.0;
    if (c->rope_beta_slow == 0.0) c->rope_beta_slow = 1.0;
    c->rope_truncate = true;
    const cJSON *tr = member(rope, "truncate");
    if (present(tr)) {
        if ((s = want_bool(tr, where, "truncate", &c->rope_truncate)) != ROAD_OK) return s;
        /* v5 reads truncate from the outer rope_parameters, never from a per-layer-type dict */
        if (strchr(where, '.') && !c->rope_truncate)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "%s.truncate false is not supported: transformers v5 reads "
                               "truncate from the outer dict only; use a flat rope dict",
                               where);
    }
    const cJSON *af = member(rope, "attention_factor");
    if (present(af)) return want_positive(af, where, "attention_factor", &c->rope_attn_factor);
    c->rope_attn_factor =
        mscale > 0.0 && mscale_all > 0.0
            ? yarn_mscale(c->rope_factor, mscale) / yarn_mscale(c->rope_factor, mscale_all)
            : yarn_mscale(c->rope_factor, 1.0);
    return ROAD_OK;
}

/* longrope's short_factor or long_factor: rotary_dim / 2 finite numbers > 0, kept as float32
 * (transformers: torch.tensor(list, dtype=float32)). */
static road_status want_factors(const cJSON *rope, const char *where, const char *key,
                                const road_llm_config *c, float *out) {
    const cJSON *v = member(rope, key);
    const int64_t want = c->rotary_dim / 2;
    if (want > ROAD_MAX_ROPE_FACTORS)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "%s.%s: longrope with %lld rotary dims is not supported (at most %d)",
                           where, key, (long long)c->rotary_dim, 2 * ROAD_MAX_ROPE_FACTORS);
    char allowed[96];
    snprintf(allowed, sizeof allowed, "a list of %lld finite numbers > 0 (rotary dims / 2)",
             (long long)want);
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != want)
        return bad(ROAD_ERR_CONFIG, where, key, allowed, v);
    int64_t i = 0;
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || !(e->valuedouble > 0.0) ||
            !((float)e->valuedouble > 0.0f) || !isfinite((float)e->valuedouble)) {
            char k[64];
            snprintf(k, sizeof k, "%s[%lld]", key, (long long)i);
            return bad(ROAD_ERR_CONFIG, where, k, "a finite number > 0", e);
        }
        out[i] = (float)e->valuedouble;
    }
    return ROAD_OK;
}

/* longrope (_compute_longrope_parameters and the rotary embedding's update): short_factor for
 * sequences of at most original_max_position_embeddings tokens, long_factor for longer ones;
 * cos and sin times attention_factor, else sqrt(1 + ln(factor) / ln(original)) for factor > 1
 * (else 1). The factor: 4.x takes max_position_embeddings / original whenever the original is
 * set at the top level (always for phi3), v5 the rope dict's factor first; a rope_scaling where
 * the two differ is refused. */
static road_status parse_longrope(const cJSON *root, const cJSON *rope, const char *where,
                                  bool from_scaling, const family_info *f, road_llm_config *c) {
    road_status s;
    bool top_set = false;
    c->rope_type = ROAD_ROPE_LONGROPE;
    if ((s = want_factors(rope, where, "short_factor", c, c->rope_short_factor)) != ROAD_OK)
        return s;
    if ((s = want_factors(rope, where, "long_factor", c, c->rope_long_factor)) != ROAD_OK) return s;
    if ((s = parse_original_max(root, rope, where, from_scaling, true, f, c, &top_set)) != ROAD_OK)
        return s;
    const double ratio = (double)c->max_position_embeddings / (double)c->rope_original_max_pos;
    const cJSON *fv = member(rope, "factor"), *af = member(rope, "attention_factor");
    double factor = ratio;
    if (present(fv) && (s = want_positive(fv, where, "factor", &factor)) != ROAD_OK) return s;
    if (present(af)) {
        if ((s = want_positive(af, where, "attention_factor", &c->rope_attn_factor)) != ROAD_OK)
            return s;
    } else if (from_scaling && top_set && present(fv) && factor != ratio) {
        return road__error(ROAD_ERR_CONFIG,
                           "%s.factor (%g) differs from max_position_embeddings / "
                           "original_max_position_embeddings (%lld / %lld): transformers 4.x "
                           "derives the attention factor from the ratio, v5 from factor; give "
                           "attention_factor or make them agree",
                           where, factor, (long long)c->max_position_embeddings,
                           (long long)c->rope_original_max_pos);
    } else if (factor <= 1.0) {
        c->rope_attn_factor = 1.0;
    } else if (c->rope_original_max_pos < 2) {
        return road__error(ROAD_ERR_CONFIG,
                           "original_max_position_embeddings 1 gives longrope no attention factor "
                           "(ln 1 = 0 divides); give %s.attention_factor",
                           where);
    } else {
        c->rope_attn_factor = sqrt(1.0 + log(factor) / log((double)c->rope_original_max_pos));
    }
    c->rope_factor = factor;
    return ROAD_OK;
}

/* rope_theta and rope_scaling, or v5's rope_parameters holding both. As in transformers v5, a
 * non-empty rope_scaling takes the place of rope_parameters. */
road_status road__config_parse_rope(const cJSON *root, const family_info *f, road_llm_config *c) {
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
    const cJSON *sliding = NULL;
    if (rope && (s = per_layer_type(&rope, &where, &sliding)) != ROAD_OK) return s;
    if ((s = parse_local_rope(root, sliding, f, c)) != ROAD_OK) return s;
    const cJSON *top = member(root, "rope_theta");
    const cJSON *inner = rope ? member(rope, "rope_theta") : NULL;
    double theta_top = f->theta, theta_in = 0.0;
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
    c->rotary_dim = c->head_dim;
    if ((s = parse_partial_rotary(root, NULL, f, c)) != ROAD_OK) return s;

    c->rope_type = ROAD_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    c->rope_attn_factor = 1.0;
    if (!rope) return ROAD_OK;
    if ((s = parse_partial_rotary(rope, where, f, c)) != ROAD_OK) return s;
    const char *type = NULL;
    if ((s = rope_type_name(rope, where, &type)) != ROAD_OK) return s;
    if (!type) {
        /* transformers v5 reads rope_parameters without a type as "default"; 4.x fails on a
         * rope_scaling without one, and its factor would be silently dropped. */
        if (!from_scaling) return ROAD_OK;
        return road__error(ROAD_ERR_CONFIG,
                           "rope_scaling has no \"rope_type\"; use \"linear\", \"llama3\", "
                           "\"dynamic\", \"yarn\" or \"longrope\" (with their parameters), or "
                           "null for plain RoPE");
    }
    char field[48];
    snprintf(field, sizeof field, "%s.rope_type", where);
    if (f->f == FAMILY_PHI3) {
        /* Phi3Config (4.x and v5) reads the older "su" and "yarn" as "longrope" and refuses any
         * other scaling. */
        if (strcmp(type, "su") == 0 || strcmp(type, "yarn") == 0) type = "longrope";
        if (strcmp(type, "default") != 0 && strcmp(type, "longrope") != 0)
            return unsupported_string(field, type,
                                      "phi3 models use \"longrope\" (older names \"su\", "
                                      "\"yarn\") or none, as transformers' Phi3Config");
    }
    if (strcmp(type, "default") == 0) return ROAD_OK;
    if (strcmp(type, "longrope") == 0) return parse_longrope(root, rope, where, from_scaling, f, c);
    if (strcmp(type, "su") == 0)
        return unsupported_string(
            field, type, "\"su\" is phi3's older name of \"longrope\"; write \"longrope\"");
    if (strcmp(type, "linear") != 0 && strcmp(type, "llama3") != 0 &&
        strcmp(type, "dynamic") != 0 && strcmp(type, "yarn") != 0)
        return unsupported_string(field, type,
                                  "road implements \"default\", \"linear\", \"llama3\", "
                                  "\"dynamic\", \"yarn\" and \"longrope\"");
    const cJSON *factor = member(rope, "factor");
    if ((s = want_positive(factor, where, "factor", &c->rope_factor)) != ROAD_OK) return s;
    if (strcmp(type, "linear") == 0) {
        c->rope_type = ROAD_ROPE_LINEAR;
        return ROAD_OK;
    }
    if (strcmp(type, "dynamic") == 0) {
        /* base x (...)^(d / (d - 2)): transformers divides by zero for 2 rotary dims */
        if (c->rotary_dim <= 2)
            return road__error(ROAD_ERR_CONFIG,
                               "%s \"dynamic\" needs more than 2 rotary dims, got %lld", field,
                               (long long)c->rotary_dim);
        c->rope_type = ROAD_ROPE_DYNAMIC;
        return ROAD_OK;
    }
    if (strcmp(type, "yarn") == 0) return parse_yarn(root, rope, where, from_scaling, c);
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
