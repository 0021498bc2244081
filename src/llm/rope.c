/*
 * llm/rope.c - RoPE frequencies of every scaling type and a batch's cos/sin table (see
 * llm/rope.h for the sequence-length rule).
 *
 * Each type is computed as transformers' modeling_rope_utils computes it (4.57 and 5.x agree
 * on every config road accepts), in float32 where torch computes in float32: powf for torch's
 * float pow, a float product or quotient wherever a float32 tensor meets a Python number.
 * Python-side numbers (yarn's ramp bounds, the attention factors, dynamic's base at init) are
 * doubles. tools/torchref/rope_ref.py writes the reference tests/test_rope.c checks.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "llm/ops.h"
#include "llm/rope.h"

/* 2 pi as transformers' llama3 code writes it (float32 math.pi) */
#define TWO_PI_F 6.283185307179586f
#define PI_D 3.141592653589793

/* exponent 2i/d as transformers: arange(0, d, 2).float() / d, in float32 */
static float exponent(int64_t i, int64_t d) {
    return (float)(2 * i) / (float)d;
}

/* default, linear, llama3: 1 / theta^(2i/d), then (scaled) the remap. Kept as it was before
 * the other types came, so these three stay bit-identical. */
static void classic_freqs(const road_llm_config *c, double theta, bool scaled, float *inv) {
    const int64_t d = c->rotary_dim, half = d / 2;
    for (int64_t i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)d;
        inv[i] = 1.0f / powf((float)theta, e);
    }
    if (!scaled) return;
    if (c->rope_type == ROAD_ROPE_LINEAR) {
        for (int64_t i = 0; i < half; i++) inv[i] = inv[i] / (float)c->rope_factor;
    } else if (c->rope_type == ROAD_ROPE_LLAMA3) {
        const float factor = (float)c->rope_factor, lo_f = (float)c->rope_low_freq_factor;
        const float hi_f = (float)c->rope_high_freq_factor, orig = (float)c->rope_original_max_pos;
        const float low_wl = orig / lo_f, high_wl = orig / hi_f;
        for (int64_t i = 0; i < half; i++) {
            float wl = TWO_PI_F / inv[i];
            if (wl > low_wl) {
                inv[i] = inv[i] / factor;
            } else if (wl >= high_wl) { /* medium band, boundaries included */
                float s = (orig / wl - lo_f) / (hi_f - lo_f);
                inv[i] = (1.0f - s) * inv[i] / factor + s * inv[i];
            }
        }
    }
}

/* dynamic at init (seq_len None: max_position_embeddings), in Python doubles:
 * base = theta (factor max / max - (factor - 1))^(d / (d - 2)), then 1 / base^(2i/d) in float. */
static void dynamic_init_freqs(const road_llm_config *c, double theta, float *inv) {
    const int64_t d = c->rotary_dim;
    const double M = (double)c->max_position_embeddings, f = c->rope_factor;
    const double base = theta * pow(f * M / M - (f - 1.0), (double)d / (double)(d - 2));
    for (int64_t i = 0; i < d / 2; i++) inv[i] = 1.0f / powf((float)base, exponent(i, d));
}

/* dynamic for a longer sequence: the rotary embedding passes seq_len as an int64 tensor, so
 * the base is a float32 0-dim tensor: every step below rounds to float as torch does (its
 * tensor ** Python-float power raises the float to the double exponent). */
static void dynamic_long_freqs(const road_rope *r, int64_t seq_len, float *inv) {
    const int64_t d = r->rot;
    float t = (float)r->factor * (float)seq_len;
    t = t / (float)r->long_after;
    t = t - (float)(r->factor - 1.0);
    const float p = (float)pow((double)t, (double)d / (double)(d - 2));
    const float base = (float)r->theta * p;
    for (int64_t i = 0; i < d / 2; i++) inv[i] = 1.0f / powf(base, exponent(i, d));
}

/* yarn's correction dim: d ln(orig / (rotations 2 pi)) / (2 ln theta) */
static double yarn_dim(double rotations, int64_t d, double theta, double orig) {
    return ((double)d * log(orig / (rotations * 2.0 * PI_D))) / (2.0 * log(theta));
}

/* yarn: interpolated 1 / (factor theta^e) and extrapolated 1 / theta^e blended by a linear
 * ramp over the dims between the beta_fast and beta_slow correction dims. */
static void yarn_freqs(const road_llm_config *c, double theta, float *inv) {
    const int64_t d = c->rotary_dim, half = d / 2;
    const double orig = (double)c->rope_original_max_pos;
    double low = yarn_dim(c->rope_beta_fast, d, theta, orig);
    double high = yarn_dim(c->rope_beta_slow, d, theta, orig);
    if (c->rope_truncate) low = floor(low), high = ceil(high);
    if (low < 0.0) low = 0.0;
    if (high > (double)(d - 1)) high = (double)(d - 1);
    if (low == high) high += 0.001; /* transformers: "prevent singularity" */
    const float lo_f = (float)low, span = (float)(high - low), factor = (float)c->rope_factor;
    for (int64_t i = 0; i < half; i++) {
        const float pos = powf((float)theta, exponent(i, d));
        const float extra = 1.0f / pos, inter = 1.0f / (factor * pos);
        float ramp = ((float)i - lo_f) / span;
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        const float ef = 1.0f - ramp; /* the extrapolation's share */
        inv[i] = inter * (1.0f - ef) + extra * ef;
    }
}

/* longrope: 1 / (factor_i theta^e_i) */
static void longrope_freqs(const road_llm_config *c, double theta, const float *ext, float *inv) {
    const int64_t d = c->rotary_dim;
    for (int64_t i = 0; i < d / 2; i++)
        inv[i] = 1.0f / (ext[i] * powf((float)theta, exponent(i, d)));
}

road_status road__rope_init(road_rope *r, const road_llm_config *c, double theta, bool scaled) {
    memset(r, 0, sizeof *r);
    const road_rope_type type = scaled ? c->rope_type : ROAD_ROPE_DEFAULT;
    const int64_t half = c->rotary_dim / 2;
    const bool second = type == ROAD_ROPE_LONGROPE || type == ROAD_ROPE_DYNAMIC;
    float *mem = road__malloc(sizeof(float) * (size_t)((second ? 2 : 1) * half + 1));
    if (!mem) return ROAD_ERR_NO_MEMORY;
    r->type = type;
    r->rot = c->rotary_dim;
    r->inv_freq = mem;
    r->attn_factor = 1.0f;
    r->theta = theta;
    r->factor = c->rope_factor;
    switch (type) {
    case ROAD_ROPE_DEFAULT:
    case ROAD_ROPE_LINEAR:
    case ROAD_ROPE_LLAMA3:
        classic_freqs(c, theta, scaled, r->inv_freq);
        break;
    case ROAD_ROPE_DYNAMIC:
        r->scratch = mem + half;
        r->long_after = c->max_position_embeddings;
        dynamic_init_freqs(c, theta, r->inv_freq);
        break;
    case ROAD_ROPE_YARN:
        r->attn_factor = (float)c->rope_attn_factor;
        yarn_freqs(c, theta, r->inv_freq);
        break;
    case ROAD_ROPE_LONGROPE:
        r->inv_freq_long = mem + half;
        r->long_after = c->rope_original_max_pos;
        r->attn_factor = (float)c->rope_attn_factor;
        longrope_freqs(c, theta, c->rope_short_factor, r->inv_freq);
        longrope_freqs(c, theta, c->rope_long_factor, r->inv_freq_long);
        break;
    }
    return ROAD_OK;
}

void road__rope_free(road_rope *r) {
    if (!r) return;
    road__free(r->inv_freq);
    memset(r, 0, sizeof *r);
}

const float *road__rope_freqs(const road_rope *r, int64_t seq_len) {
    if (seq_len <= r->long_after) return r->inv_freq;
    if (r->type == ROAD_ROPE_LONGROPE) return r->inv_freq_long;
    if (r->type == ROAD_ROPE_DYNAMIC) {
        dynamic_long_freqs(r, seq_len, r->scratch);
        return r->scratch;
    }
    return r->inv_freq;
}

void road__rope_fill(float *cs, const road_rope *r, const int64_t *pos, int64_t R,
                     const int64_t *seq_r0, const int64_t *seq_rows, const int64_t *seq_p0,
                     int64_t n_seq) {
    const int64_t rot = r->rot;
    if (r->type != ROAD_ROPE_DYNAMIC && r->type != ROAD_ROPE_LONGROPE) {
        road__rope_table(cs, pos, r->inv_freq, R, rot);
    } else {
        for (int64_t s = 0; s < n_seq; s++) {
            const int64_t r0 = seq_r0[s];
            road__rope_table(cs + r0 * rot, pos + r0, road__rope_freqs(r, seq_p0[s] + seq_rows[s]),
                             seq_rows[s], rot);
        }
    }
    if (r->attn_factor != 1.0f) /* transformers: emb.cos() * attention_scaling, in float32 */
        for (int64_t i = 0; i < R * rot; i++) cs[i] *= r->attn_factor;
}
