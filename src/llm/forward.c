/*
 * llm/forward.c - the forward pass of a Llama-family decoder over a ragged batch.
 *
 * A batch is a list of sequences, each adding n new tokens after what its KV cache holds. All
 * new tokens of all sequences are stacked into R rows, so every linear layer is one GEMM over
 * the whole batch (prefill and decode rows alike), and a mixed batch rotates each sequence's
 * rows with its own adapter inside that GEMM's output (road_adapter_set_forward_mixed).
 * modules_to_save copies (embed_tokens, lm_head) replace the base table or weight for the
 * sequences whose adapter holds them.
 * The layers are block.c's, the ones training runs; inference keeps no activations, and its
 * attention reads keys from each sequence's KV cache. Attention is the only per-sequence step.
 * Numerics follow transformers' eager path in float32 (ops.h states each op's).
 *
 * Legend: R rows, H hidden, I intermediate, V vocab, nh/nkv heads, d head_dim, qd = nh*d,
 * kvd = nkv*d. Row-major everywhere: x (R, H), q (R, qd), k and v (R, kvd).
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"
#include "llm/block.h"

/* Sequences with at least this many new tokens (prefill) run attention as GEMMs over blocks of
 * queries; shorter ones (decode) take the per-row loops (ops.h, attn_batch.gemm_min). */
#define ATTN_GEMM_MIN 8

int64_t road_seq_logit_rows(const road_seq *seqs, int64_t n_seq) {
    int64_t n = 0;
    for (int64_t s = 0; s < n_seq; s++) n += seqs[s].all_logits ? seqs[s].n_tokens : 1;
    return n;
}

static road_status validate(road_model *m, const road_seq *seqs, int64_t n_seq, bool *mixed) {
    const road_llm_config *cfg = &m->cfg;
    if (n_seq <= 0 || !seqs)
        return road__error(ROAD_ERR_INVALID_ARG, "forward: the batch has no sequences");
    int64_t named = 0;
    for (int64_t s = 0; s < n_seq; s++) {
        const road_seq *q = &seqs[s];
        if (q->n_tokens <= 0 || !q->tokens)
            return road__error(ROAD_ERR_INVALID_ARG, "forward: sequence %lld has no new tokens",
                               (long long)s);
        for (int64_t i = 0; i < q->n_tokens; i++)
            if (q->tokens[i] < 0 || q->tokens[i] >= cfg->vocab_size)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "forward: sequence %lld, token %lld is id %d, outside the "
                                   "vocabulary (0..%lld)",
                                   (long long)s, (long long)i, (int)q->tokens[i],
                                   (long long)cfg->vocab_size - 1);
        if (q->cache) {
            const road_kv_cache *kv = q->cache;
            if (kv->n_layers != cfg->n_layers || kv->n_kv != cfg->n_kv_heads ||
                kv->d != cfg->head_dim)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "forward: sequence %lld's KV cache belongs to another model",
                                   (long long)s);
            if (kv->len + q->n_tokens > kv->cap)
                return road__error(ROAD_ERR_STATE,
                                   "forward: sequence %lld needs %lld positions but its KV cache "
                                   "holds %lld (create it with more room)",
                                   (long long)s, (long long)(kv->len + q->n_tokens),
                                   (long long)kv->cap);
            for (int64_t t = 0; t < s; t++)
                if (seqs[t].cache == kv)
                    return road__error(ROAD_ERR_INVALID_ARG,
                                       "forward: sequences %lld and %lld share one KV cache",
                                       (long long)t, (long long)s);
        }
        named += q->adapter != NULL;
    }
    if (named != 0 && named != n_seq)
        return road__error(
            ROAD_ERR_INVALID_ARG,
            "forward: %lld of %lld sequences name an adapter; in a mixed batch every "
            "sequence names one (or '%s')",
            (long long)named, (long long)n_seq, ROAD_BASE_NAME);
    *mixed = named > 0;
    return ROAD_OK;
}

road_status road_model_forward(road_model *m, const road_seq *seqs, int64_t n_seq, float *logits) {
    ROAD_MODEL_SCOPE(m);
    bool mixed = false;
    road_status st = validate(m, seqs, n_seq, &mixed);
    if (st != ROAD_OK) return st;
    if (!logits) return road__error(ROAD_ERR_INVALID_ARG, "forward: logits is NULL");
    const road_llm_config *cfg = &m->cfg;
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t qd = nh * d, kvd = nkv * d;
    llm_batch c = {.m = m,
                   .seqs = seqs,
                   .n_seq = n_seq,
                   .attn_gemm_min = ATTN_GEMM_MIN,
                   .attn_qblock = ATTN_QBLOCK};
    int64_t max_keys = 1, n_sel = road_seq_logit_rows(seqs, n_seq), widen_d = 0;
    for (int64_t s = 0; s < n_seq; s++) {
        c.R += seqs[s].n_tokens;
        if (seqs[s].cache && seqs[s].cache->dtype != ROAD_DTYPE_F32) widen_d = d;
        int64_t keys = (seqs[s].cache ? seqs[s].cache->len : 0) + seqs[s].n_tokens;
        if (keys > max_keys) max_keys = keys;
    }
    const int64_t R = c.R;
    /* per row its sequence and position; per sequence its rows, first row, first position,
     * logit rows and attention view */
    int64_t *meta = road__malloc(sizeof(int64_t) * (size_t)(2 * R + 4 * n_seq) +
                                 sizeof(attn_seq) * (size_t)n_seq);
    if (!meta) return ROAD_ERR_NO_MEMORY;
    c.row_seq = meta;
    c.row_pos = meta + R;
    c.seq_rows = meta + 2 * R;
    c.seq_r0 = c.seq_rows + n_seq;
    c.seq_p0 = c.seq_r0 + n_seq;
    int64_t *sel_rows = c.seq_p0 + n_seq;
    c.attn = (attn_seq *)(sel_rows + n_seq);
    for (int64_t s = 0, r = 0; s < n_seq; s++) {
        c.seq_rows[s] = seqs[s].n_tokens;
        c.seq_r0[s] = r;
        c.seq_p0[s] = seqs[s].cache ? seqs[s].cache->len : 0;
        sel_rows[s] = seqs[s].all_logits ? seqs[s].n_tokens : 1;
        for (int64_t i = 0; i < seqs[s].n_tokens; i++, r++) {
            c.row_seq[r] = s;
            c.row_pos[r] = c.seq_p0[s] + i;
        }
    }
    if (mixed) {
        const char **names = road__malloc(sizeof(char *) * (size_t)n_seq);
        if (!names) {
            road__free(meta);
            return ROAD_ERR_NO_MEMORY;
        }
        for (int64_t s = 0; s < n_seq; s++) names[s] = seqs[s].adapter;
        st = road_adapter_set_plan(m->set, names, n_seq, &c.plan);
        road__free(names);
        if (st != ROAD_OK) {
            road__free(meta);
            return st;
        }
    }
    const int nthreads = road_get_num_threads();
    c.scratch_stride = road__attention_scratch(ATTN_QBLOCK, max_keys, widen_d);
    const bool fused = m->blocks[0].fused;
    const int64_t rot = m->blocks[0].spec.rotary_dim;
    const int64_t n_fused = fused ? R * (qd + 2 * kvd + 2 * I) : 0;
    size_t n_ws = (size_t)(R * (2 * H + 2 * qd + 2 * kvd + 2 * I + 2 * rot) + n_fused + n_sel * H +
                           (int64_t)nthreads * c.scratch_stride);
    float *ws = road__workspace_get(&m->ws, n_ws);
    if (!ws) {
        road_batch_plan_free(c.plan);
        road__free(meta);
        return ROAD_ERR_NO_MEMORY;
    }
    /* inference keeps no activations: the block's (R, H) outputs share h (norms in place),
     * act(g) * u goes to g */
    float *x = ws, *h = x + R * H, *q = h + R * H, *att = q + R * qd, *k = att + R * qd;
    float *v = k + R * kvd, *g = v + R * kvd, *u = g + R * I;
    c.cs[0] = u + R * I;
    c.cs[1] = c.cs[0] + R * rot;
    float *qkv = c.cs[1] + R * rot, *gu = fused ? qkv + R * (qd + 2 * kvd) : qkv;
    float *sel = qkv + n_fused;
    c.scratch = sel + n_sel * H;
    const block_acts acts = {.h1 = h,
                             .q = q,
                             .k = k,
                             .v = v,
                             .att = att,
                             .o = h,
                             .po = h,
                             .h2 = h,
                             .g = g,
                             .u = u,
                             .a = g,
                             .dn = h,
                             .pdn = h,
                             .qkv = fused ? qkv : NULL,
                             .gu = fused ? gu : NULL};
    st = road__block_embed(&c, x);
    for (int64_t l = 0; l < cfg->n_layers && st == ROAD_OK; l++)
        st = road__block_forward(&c, l, x, &acts);
    if (st == ROAD_OK) {
        /* the rows whose logits are wanted, then the final norm and lm_head */
        int64_t n = 0;
        for (int64_t s = 0; s < n_seq; s++) {
            int64_t first = seqs[s].all_logits ? c.seq_r0[s] : c.seq_r0[s] + seqs[s].n_tokens - 1;
            for (int64_t i = 0; i < sel_rows[s]; i++, n++)
                memcpy(h + n * H, x + (first + i) * H, sizeof(float) * (size_t)H);
        }
        st = road__head_forward(&c, n_sel, sel_rows, h, sel, logits, NULL);
    }
    if (st == ROAD_OK)
        for (int64_t s = 0; s < n_seq; s++)
            if (seqs[s].cache) seqs[s].cache->len += seqs[s].n_tokens;
    road_batch_plan_free(c.plan);
    road__free(meta);
    return st;
}
