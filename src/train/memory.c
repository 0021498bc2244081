/*
 * train/memory.c - what a training run will hold, before it holds it
 * (road_train_memory_estimate, road/train.h).
 *
 * The activation formula is read off llm/grad.c's carve of the backward workspace and
 * llm/block.c's block_acts / block_grads: every buffer there is (rows x a width) floats, apart
 * from attention's scratch (per thread, a square of the longest sequence). So the bytes are a
 * per-token coefficient times the rows, plus that square: with every sequence as long as the
 * longest, the bound is met exactly; a ragged batch holds less. tests/test_train_memory.c
 * checks the bound against road_model_backward_bytes measured on the fixture models.
 *
 * Legend: H hidden, I intermediate, V vocab, L layers, d head_dim, qd = n_heads x d,
 * kvd = n_kv_heads x d, rot the rotary dims.
 */
#include <string.h>

#include "core/error.h"
#include "llm/model_threads.h"
#include "road/train.h"

/* Upper bounds of backward's per-row bookkeeping (llm/grad.c's bwd_rows): per row its position,
 * sequence and target (int64) and loss statistics (3 doubles), and the trainer's target list
 * (a token id); per sequence three int64 and attention's view (under 64 bytes); per layer the
 * table of its saved arrays (under 32 pointers). */
#define ROWS_BYTES_PER_TOKEN (3 * 8 + 3 * 8 + 4)
#define ROWS_BYTES_PER_SEQ (3 * 8 + 64)
#define ROWS_BYTES_PER_LAYER (32 * 8)
/* The loop's own small tables (the optimizer's tensor list and names, the micro-batch's index
 * and token lists, a checkpoint's key strings): a few kB on the fixture models, measured by
 * tests/test_train_memory.c; this allowance is several times that. */
#define FIXED_BYTES (64 * 1024)
/* Eval's forward (llm/forward.c) runs queries in blocks of this many rows (ops.h's
 * ATTN_QBLOCK), which bounds its attention scratch per thread. */
#define EVAL_QBLOCK 64

/* Floats per row of what one block keeps for its backward (block_acts): the block input, the
 * two normed inputs, the residual after attention, down_proj's pre-adapter output (H each);
 * o_proj's pre-adapter output (H), q's pre-adapter, adapted and attention outputs (qd each);
 * k and v before and after the adapters (kvd each); gate and up before and after the adapters
 * and act(gate) x up (I each); q and k before their norms (q/k norms); the adapted sublayer
 * outputs an output norm reads again (post norms). A fused projection keeps the same widths in
 * one array. */
static int64_t block_floats(const road_llm_config *c, bool qk_norm, int n_post) {
    const int64_t H = c->hidden_size, I = c->intermediate_size, d = c->head_dim;
    const int64_t qd = c->n_heads * d, kvd = c->n_kv_heads * d;
    return 6 * H + 3 * qd + 4 * kvd + 5 * I + (qk_norm ? qd + kvd : 0) + n_post * H;
}

/* Floats per row of backward's working buffers (grad.c): the residual, the head's normed input,
 * a shared temporary, the residual's gradient and recompute's residual (H each); the head's
 * pre-adapter and adapted logits (V each, a third with a logit softcap); the gradients of
 * q and the attention output (qd), of k and v (kvd), of gate and up (I); the post norms'
 * gradient (H); the q/k norms' (qd + kvd); a fused projection's gradient and adapted split
 * outputs (2 x (qd + 2 kvd + 2 I)); two RoPE tables (rot each). */
static int64_t work_floats(const road_llm_config *c, bool qk_norm, int n_post) {
    const int64_t H = c->hidden_size, I = c->intermediate_size, d = c->head_dim;
    const int64_t V = c->vocab_size, qd = c->n_heads * d, kvd = c->n_kv_heads * d;
    int64_t f = 5 * H + (c->final_softcap > 0 ? 3 : 2) * V + 2 * qd + 2 * kvd + 2 * I;
    if (n_post) f += H;
    if (qk_norm) f += qd + kvd;
    if (c->fused_proj) f += 2 * (qd + 2 * kvd + 2 * I);
    return f + 2 * c->rotary_dim;
}

/* Floats per padded token of one eval batch: the forward's buffers (llm/forward.c: residual,
 * normed input, q, attention output, k, v, gate, up, two RoPE tables, fused outputs, the
 * selected rows) and the logits twice (the ragged forward's, then the padded copy the loss
 * reads, train/trainer.c). */
static int64_t eval_floats(const road_llm_config *c) {
    const int64_t H = c->hidden_size, I = c->intermediate_size, d = c->head_dim;
    const int64_t qd = c->n_heads * d, kvd = c->n_kv_heads * d;
    int64_t f = 3 * H + 2 * qd + 2 * kvd + 2 * I + 2 * c->rotary_dim + 2 * c->vocab_size;
    if (c->fused_proj) f += qd + 2 * kvd + 2 * I;
    return f;
}

/* Parameters training updates: the active adapters' (RoAd parameters and modules_to_save
 * copies), or every model tensor with full fine-tuning. */
static int64_t trainable_params(road_model *m, bool full) {
    if (!full) return road_adapter_set_param_report(road_model_adapters(m)).trainable;
    int64_t n = 0;
    for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
        road_model_tensor t;
        if (road_model_tensor_get(m, i, &t) == ROAD_OK) n += t.n;
    }
    return n;
}

/* The active adapters' rotation coefficients, cached per layer (two floats per output;
 * adapter/linear.c builds them on the first forward and after every update). */
static int64_t adapter_cache_floats(const road_adapter_set *s) {
    int64_t n = 0;
    for (int32_t a = 0; a < road_adapter_set_active_count(s); a++) {
        const char *name = road_adapter_set_active_name(s, a);
        for (int32_t l = 0; l < road_adapter_set_layer_count(s); l++) {
            int64_t out = 0, in = 0;
            if (road_adapter_set_on_layer(s, name, l) &&
                road_adapter_set_layer_shape(s, l, &out, &in) == ROAD_OK)
                n += 2 * out;
        }
    }
    return n;
}

road_status road_train_memory_estimate(road_model *m, const road_train_params *p,
                                       int64_t max_seq_len, bool with_eval,
                                       road_train_memory *out) {
    if (!m || !p || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "train_memory_estimate: NULL argument");
    if (p->batch_size <= 0 || max_seq_len <= 0)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "train_memory_estimate: batch_size and max_seq_len must be positive "
                           "(got %lld, %lld)",
                           (long long)p->batch_size, (long long)max_seq_len);
    const road_llm_config *c = road_model_config(m);
    const bool qk_norm = c->qk_norm != ROAD_QK_NORM_NONE;
    const int n_post = c->norm_place == ROAD_NORM_PRE ? 0 : 2; /* sandwich, post: both sublayers */
    const int64_t L = c->n_layers, H = c->hidden_size, f = (int64_t)sizeof(float);
    const int64_t T = max_seq_len, R = p->batch_size * T;
    const int64_t threads = road__model_threads(m);
    memset(out, 0, sizeof *out);
    out->tokens = R;
    const int64_t n_train = trainable_params(m, p->full);
    out->weights = road_model_weight_bytes(m) + (p->full ? 0 : n_train * f);
    out->gradients = n_train * f;
    out->optimizer = 2 * n_train * f;
    /* kept: every block's arrays; with recompute, one block's arrays (refilled block by block
     * in backward) and every other block's input */
    const int64_t blk = block_floats(c, qk_norm, n_post), work = work_floats(c, qk_norm, n_post);
    out->act_per_token = f * (L * blk + work);
    out->act_per_token_recompute = f * (blk + (L - 1) * H + work);
    out->attention = f * threads * (c->attn_softcap > 0 ? 3 : 2) * T * T;
    out->activations =
        R * (p->recompute ? out->act_per_token_recompute : out->act_per_token) + out->attention;
    out->workspaces = R * ROWS_BYTES_PER_TOKEN + p->batch_size * ROWS_BYTES_PER_SEQ +
                      L * ROWS_BYTES_PER_LAYER + FIXED_BYTES;
    if (!p->full) out->workspaces += f * adapter_cache_floats(road_model_adapters(m));
    if (with_eval) {
        const int64_t qb = T < EVAL_QBLOCK ? T : EVAL_QBLOCK;
        out->workspaces += f * (R * eval_floats(c) + threads * qb * T);
    }
    out->total =
        out->weights + out->gradients + out->optimizer + out->activations + out->workspaces;
    return ROAD_OK;
}
