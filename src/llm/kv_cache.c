/*
 * llm/kv_cache.c - a per-sequence cache of keys and values (after RoPE, after any RoAd on
 * k_proj/v_proj), laid out (layer, kv head, position, head_dim) so that attention reads each
 * head's keys as one contiguous run.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "llm/model_internal.h"

road_status road_kv_cache_create(const road_model *m, int64_t max_tokens, road_kv_cache **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_kv_cache_create: out is NULL");
    *out = NULL;
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
    size_t n;
    if (road__size_mul((size_t)(kv->n_layers * kv->n_kv), (size_t)(kv->cap * kv->d), &n) != 0) {
        road__free(kv);
        return road__error(ROAD_ERR_NO_MEMORY, "KV cache size overflows");
    }
    kv->k = road__malloc(n * sizeof(float));
    kv->v = road__malloc(n * sizeof(float));
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
