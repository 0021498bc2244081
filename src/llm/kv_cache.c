/*
 * llm/kv_cache.c - a per-sequence cache of keys and values (after RoPE, after any RoAd on
 * k_proj/v_proj), laid out (layer, kv head, position, head_dim) so that attention reads each
 * head's keys as one contiguous run.
 *
 * Elements are float32, bfloat16 or float16 (road_kv_cache_create_ex). A 16-bit cache halves
 * the memory that grows with the context, and the bytes a decode step reads from it: every
 * new token reads every key and value of its sequence. Values are rounded once, here, when the
 * forward stores them; attention (ops.c, kv_read.c) widens them to float32 in registers.
 */
#include <float.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "llm/model_internal.h"

/* The largest finite float16, 65504 (0x7bff): where road__f32_to_f16_sat saturates. */
#define F16_MAX_BITS 0x7bffu
#define F16_MAX 65504.0f
/* bfloat16's infinity and largest finite value (about 3.39e38). */
#define BF16_INF_BITS 0x7f80u
#define BF16_MAX_BITS 0x7f7fu

uint16_t road__f32_to_f16_sat(float x) {
    /* NaN and +-inf convert as they are; a finite value past the largest float16 would round
     * to infinity (from 65520 up), and one infinite key makes every score of its head inf or
     * NaN, so it is kept at +-65504 instead. */
    if (x > F16_MAX && x <= FLT_MAX) return F16_MAX_BITS;
    if (x < -F16_MAX && x >= -FLT_MAX) return 0x8000u | F16_MAX_BITS;
    return road_f32_to_f16(x);
}

uint16_t road__f32_to_bf16_sat(float x) {
    /* bfloat16 has float32's exponent range, but the last half ulp below FLT_MAX still rounds
     * up to infinity; the same policy as f16's keeps it at the largest bfloat16 */
    uint16_t h = road_f32_to_bf16(x);
    if ((h & 0x7fffu) == BF16_INF_BITS && x >= -FLT_MAX && x <= FLT_MAX)
        return (uint16_t)((h & 0x8000u) | BF16_MAX_BITS);
    return h;
}

void road__kv_round(road_dtype t, void *dst, const float *src, int64_t n) {
    switch (t) {
    case ROAD_DTYPE_BF16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = road__f32_to_bf16_sat(src[i]);
        return;
    }
    case ROAD_DTYPE_F16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++) h[i] = road__f32_to_f16_sat(src[i]);
        return;
    }
    default:
        memcpy(dst, src, sizeof(float) * (size_t)n);
        return;
    }
}

/* One row into dst as c stores it: rounded to its type, or for the F32 twin of a 16-bit cache
 * (road__kv_cache_round_as) rounded to that type and widened back. */
static void store_row(const road_kv_cache *c, void *dst, const float *src) {
    if (c->dtype != ROAD_DTYPE_F32 || c->round == ROAD_DTYPE_F32) {
        road__kv_round(c->dtype, dst, src, c->d);
        return;
    }
    float *o = dst;
    for (int64_t i = 0; i < c->d; i++)
        o[i] = c->round == ROAD_DTYPE_BF16 ? road_bf16_to_f32(road__f32_to_bf16_sat(src[i]))
                                           : road_f16_to_f32(road__f32_to_f16_sat(src[i]));
}

void road__kv_store(road_kv_cache *c, int64_t layer, int64_t head, int64_t pos, const float *k,
                    const float *v) {
    const size_t off =
        (size_t)(((layer * c->n_kv + head) * c->cap + pos) * c->d) * road__kv_elem_size(c->dtype);
    store_row(c, (char *)c->k + off, k);
    store_row(c, (char *)c->v + off, v);
}

void road__kv_cache_round_as(road_kv_cache *c, road_dtype t) {
    ROAD_ASSERT(c->dtype == ROAD_DTYPE_F32);
    c->round = t;
}

road_status road_kv_cache_create(const road_model *m, int64_t max_tokens, road_kv_cache **out) {
    return road_kv_cache_create_ex(m, max_tokens, ROAD_DTYPE_F32, out);
}

road_status road_kv_cache_create_ex(const road_model *m, int64_t max_tokens, road_dtype dtype,
                                    road_kv_cache **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_kv_cache_create: out is NULL");
    *out = NULL;
    if (dtype != ROAD_DTYPE_F32 && dtype != ROAD_DTYPE_BF16 && dtype != ROAD_DTYPE_F16)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "a KV cache holds F32, BF16 or F16 keys and values, not %s",
                           road_dtype_name(dtype));
    const road_llm_config *c = &m->cfg;
    const int64_t most = road_llm_config_max_tokens(c);
    if (max_tokens <= 0 || max_tokens > most)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "a KV cache holds 1 to %lld tokens (%s), asked for %lld",
                           (long long)most,
                           most == c->max_position_embeddings
                               ? "max_position_embeddings"
                               : "max_position_embeddings x the dynamic RoPE factor",
                           (long long)max_tokens);
    road_kv_cache *kv = road__calloc(1, sizeof *kv);
    if (!kv) return ROAD_ERR_NO_MEMORY;
    kv->n_layers = c->n_layers;
    kv->n_kv = c->n_kv_heads;
    kv->d = c->head_dim;
    kv->cap = max_tokens;
    kv->dtype = dtype;
    kv->round = ROAD_DTYPE_F32;
    size_t n;
    if (road__size_mul((size_t)(kv->n_layers * kv->n_kv), (size_t)(kv->cap * kv->d), &n) != 0 ||
        road__size_mul(n, road__kv_elem_size(dtype), &n) != 0) {
        road__free(kv);
        return road__error(ROAD_ERR_NO_MEMORY, "KV cache size overflows");
    }
    kv->k = road__malloc(n);
    kv->v = road__malloc(n);
    if (!kv->k || !kv->v) {
        road_kv_cache_free(kv);
        return ROAD_ERR_NO_MEMORY;
    }
    *out = kv;
    return ROAD_OK;
}

void road_kv_cache_free(road_kv_cache *c) {
    if (!c) return;
    road__free(c->k);
    road__free(c->v);
    road__free(c);
}

road_dtype road_kv_cache_dtype(const road_kv_cache *c) {
    return c->dtype;
}

int64_t road_kv_cache_bytes(const road_kv_cache *c) {
    return 2 * c->n_layers * c->n_kv * c->cap * c->d * (int64_t)road__kv_elem_size(c->dtype);
}

int64_t road_kv_cache_length(const road_kv_cache *c) {
    return c->len;
}

int64_t road_kv_cache_capacity(const road_kv_cache *c) {
    return c->cap;
}

road_status road_kv_cache_truncate(road_kv_cache *c, int64_t n) {
    if (n < 0 || n > c->len)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "cannot truncate a KV cache of %lld tokens to %lld", (long long)c->len,
                           (long long)n);
    c->len = n;
    return ROAD_OK;
}
