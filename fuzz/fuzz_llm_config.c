/*
 * fuzz/fuzz_llm_config.c - libFuzzer target for a Llama-family config.json
 * (road_llm_config_parse, src/llm/config.c).
 *
 * The input is a whole file. The parser either refuses it with a message and leaves the
 * output untouched, or returns a config that holds every guarantee the model code builds on
 * (the invariants below): a broken one would become an out-of-bounds index or a division by
 * zero in forward.c rather than an error message, so any violation traps. Parsing is also
 * deterministic to the byte, and nothing stays allocated afterwards.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "road/llm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The largest size the parser admits for one dimension (its DIM_MAX). */
#define FUZZ_DIM_MAX ((int64_t)INT32_MAX)

static bool dim_ok(int64_t x) {
    return x >= 1 && x <= FUZZ_DIM_MAX;
}

static bool finite_positive(double x) {
    return isfinite(x) && x > 0.0;
}

static bool token_ok(int64_t id, int64_t vocab) {
    return id >= 0 && id < vocab;
}

static void check_invariants(const road_llm_config *c) {
    const bool llama = strcmp(c->model_type, "llama") == 0;
    const bool mistral = strcmp(c->model_type, "mistral") == 0;
    const bool qwen2 = strcmp(c->model_type, "qwen2") == 0;
    if (!llama && !mistral && !qwen2) __builtin_trap();

    if (!dim_ok(c->vocab_size) || !dim_ok(c->hidden_size) || !dim_ok(c->intermediate_size) ||
        !dim_ok(c->n_layers) || !dim_ok(c->n_heads) || !dim_ok(c->n_kv_heads) ||
        !dim_ok(c->head_dim) || !dim_ok(c->max_position_embeddings))
        __builtin_trap();
    if (c->n_heads % c->n_kv_heads != 0) __builtin_trap();
    if (c->head_dim % 2 != 0) __builtin_trap();
    if (c->n_heads * c->head_dim > FUZZ_DIM_MAX) __builtin_trap();
    /* qwen2 always derives head_dim; the others may set their own. */
    if (qwen2 && c->head_dim * c->n_heads != c->hidden_size) __builtin_trap();

    if (!finite_positive(c->rms_norm_eps) || !finite_positive(c->rope_theta)) __builtin_trap();
    switch (c->rope_type) {
    case ROAD_ROPE_DEFAULT:
        if (c->rope_factor != 1.0) __builtin_trap();
        break;
    case ROAD_ROPE_LINEAR:
        if (!finite_positive(c->rope_factor)) __builtin_trap();
        break;
    case ROAD_ROPE_LLAMA3:
        if (!finite_positive(c->rope_factor) || !finite_positive(c->rope_low_freq_factor) ||
            !finite_positive(c->rope_high_freq_factor) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
            !dim_ok(c->rope_original_max_pos))
            __builtin_trap();
        break;
    default:
        __builtin_trap();
    }

    if (c->sliding_window < 0 || c->sliding_window > FUZZ_DIM_MAX) __builtin_trap();
    if (!mistral && c->sliding_window != 0) __builtin_trap();
    if (qwen2 && (!c->qkv_bias || c->o_bias || c->mlp_bias)) __builtin_trap();
    if (mistral && (c->qkv_bias || c->o_bias || c->mlp_bias)) __builtin_trap();
    if (llama && c->qkv_bias != c->o_bias) __builtin_trap();

    if (c->bos_token_id != -1 && !token_ok(c->bos_token_id, c->vocab_size)) __builtin_trap();
    if (c->n_eos < 0 || c->n_eos > ROAD_MAX_EOS) __builtin_trap();
    for (int32_t i = 0; i < c->n_eos; i++) {
        if (!token_ok(c->eos_token_ids[i], c->vocab_size)) __builtin_trap();
    }
    if (c->torch_dtype != ROAD_DTYPE_F32 && c->torch_dtype != ROAD_DTYPE_BF16 &&
        c->torch_dtype != ROAD_DTYPE_F16)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t live = road__alloc_live_bytes();
    road_llm_config c, again;
    memset(&c, 0x5A, sizeof c);
    const road_llm_config before = c;
    road_clear_error();
    road_status s = road_llm_config_parse((const char *)data, size, &c);
    if (s != ROAD_OK) {
        if (road_last_error()[0] == '\0') __builtin_trap();
        if (memcmp(&c, &before, sizeof c) != 0) __builtin_trap();
    } else {
        check_invariants(&c);
        if (road_llm_config_parse((const char *)data, size, &again) != ROAD_OK) __builtin_trap();
        if (memcmp(&c, &again, sizeof c) != 0) __builtin_trap();
    }
    if (road__alloc_live_bytes() != live) __builtin_trap();
    return 0;
}
