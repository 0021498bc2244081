/*
 * llm/forward.c - the forward pass of a Llama-family decoder over a ragged batch.
 *
 * A batch is a list of sequences, each adding n new tokens after what its KV cache holds. All
 * new tokens of all sequences are stacked into R rows, so every linear layer is one GEMM over
 * the whole batch (prefill and decode rows alike), and a mixed batch rotates each sequence's
 * rows with its own adapter inside that GEMM's output (road_adapter_set_forward_mixed).
 * modules_to_save copies (embed_tokens, lm_head) replace the base table or weight for the
 * sequences whose adapter holds them.
 * Attention is the only per-sequence step. Numerics follow transformers' eager path in
 * float32: RMSNorm w * x / sqrt(mean(x^2) + eps); RoPE rotate-half with angles pos * inv_freq
 * rounded to float; softmax over causal keys (and a sliding window where configured).
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
#include "llm/model_internal.h"
#include "llm/ops.h"

/* Attention items (row, head) per OpenMP chunk: a decode row is short work. */
#define ATTN_CHUNK 4
/* Sequences with at least this many new tokens (prefill) run attention as GEMMs over blocks of
 * ATTN_QBLOCK queries: S = Q K^T for the block against all its keys, a masked softmax, O = P V.
 * Shorter ones (decode) take the per-row loops. The block bounds the scratch per thread to
 * ATTN_QBLOCK x keys floats whatever the prompt length. */
#define ATTN_GEMM_MIN 8
#define ATTN_QBLOCK 64

typedef struct fwd_ctx {
    road_model *m;
    const road_seq *seqs;
    int64_t n_seq, R;
    road_batch_plan *plan;  /* mixed batch, else NULL */
    int64_t *seq_rows;      /* (n_seq) new tokens per sequence */
    int64_t *row_seq;       /* (R) sequence of each row */
    int64_t *row_pos;       /* (R) position of each row */
    int64_t *seq_r0;        /* (n_seq) first row of each sequence */
    int64_t *seq_p0;        /* (n_seq) position of its first new token */
} fwd_ctx;

/* y (rows, out) = layer(x) with the model's adapter state, or per sequence in a mixed batch
 * (seq_rows gives each sequence's rows). */
static road_status linear(fwd_ctx *c, int32_t layer, int64_t rows, const int64_t *seq_rows,
                          const float *x, float *y) {
    if (c->plan)
        return road_adapter_set_forward_mixed(c->m->set, c->plan, layer, 0, seq_rows, x, y);
    return road_adapter_set_forward(c->m->set, layer, rows, x, y);
}

/* Store this layer's new keys and values into each sequence's cache. */
static void cache_store(fwd_ctx *c, int64_t layer, const float *k, const float *v) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nkv = cfg->n_kv_heads, d = cfg->head_dim;
    for (int64_t s = 0; s < c->n_seq; s++) {
        road_kv_cache *kv = c->seqs[s].cache;
        if (!kv) continue;
        for (int64_t i = 0; i < c->seq_rows[s]; i++) {
            int64_t r = c->seq_r0[s] + i, p = c->seq_p0[s] + i;
            for (int64_t h = 0; h < nkv; h++) {
                size_t off = (size_t)(((layer * nkv + h) * kv->cap + p) * d);
                memcpy(kv->k + off, k + (r * nkv + h) * d, sizeof(float) * (size_t)d);
                memcpy(kv->v + off, v + (r * nkv + h) * d, sizeof(float) * (size_t)d);
            }
        }
    }
}

/* att (R, qd): softmax(q k^T / sqrt(d) + causal mask) v per sequence and head. Keys come from
 * the sequence's cache (new ones already stored) or, without a cache, from this call's rows. */
static void attention_rows(fwd_ctx *c, int64_t layer, const float *q, const float *k,
                             const float *v, float *att, float *scratch, int64_t max_keys) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t group = nh / nkv, W = cfg->sliding_window;
    const float scale = 1.0f / sqrtf((float)d);
    const int64_t items = c->R * nh;
#pragma omp parallel for schedule(dynamic, ATTN_CHUNK)
    for (int64_t it = 0; it < items; it++) {
        const int64_t r = it / nh, hq = it % nh, hk = hq / group;
        const int64_t s = c->row_seq[r], p = c->row_pos[r];
        if (c->seq_rows[s] >= ATTN_GEMM_MIN) continue; /* done by attention_gemm */
        const road_kv_cache *kv = c->seqs[s].cache;
#ifdef _OPENMP
        float *sc = scratch + (size_t)omp_get_thread_num() * (size_t)max_keys;
#else
        float *sc = scratch;
#endif
        const float *kb, *vb;
        int64_t kstride;
        if (kv) {
            size_t off = (size_t)((layer * nkv + hk) * kv->cap * d);
            kb = kv->k + off;
            vb = kv->v + off;
            kstride = d;
        } else { /* positions 0.. are this sequence's rows */
            kb = k + (c->seq_r0[s] * nkv + hk) * d;
            vb = v + (c->seq_r0[s] * nkv + hk) * d;
            kstride = nkv * d;
        }
        const int64_t lo = W > 0 && p - W + 1 > 0 ? p - W + 1 : 0;
        const float *qv = q + (r * nh + hq) * d;
        float mx = -INFINITY;
        for (int64_t t = lo; t <= p; t++) {
            const float *kt = kb + t * kstride;
            float dot = 0.0f;
            for (int64_t i = 0; i < d; i++) dot += qv[i] * kt[i];
            dot *= scale;
            sc[t - lo] = dot;
            if (dot > mx) mx = dot;
        }
        double sum = 0.0;
        for (int64_t t = lo; t <= p; t++) {
            float e = expf(sc[t - lo] - mx);
            sc[t - lo] = e;
            sum += e;
        }
        const float inv = (float)(1.0 / sum);
        float *o = att + (r * nh + hq) * d;
        for (int64_t i = 0; i < d; i++) o[i] = 0.0f;
        for (int64_t t = lo; t <= p; t++) {
            const float w = sc[t - lo] * inv;
            const float *vt = vb + t * kstride;
            for (int64_t i = 0; i < d; i++) o[i] += w * vt[i];
        }
    }
}

/* The GEMM path for sequences of >= ATTN_GEMM_MIN new tokens (see ATTN_QBLOCK). */
static void attention_gemm(fwd_ctx *c, int64_t layer, const float *q, const float *k,
                           const float *v, float *att, float *scratch, int64_t max_keys) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t group = nh / nkv, W = cfg->sliding_window;
    const float scale = 1.0f / sqrtf((float)d);
    /* work items: (sequence, head, query block) of the long sequences */
    int64_t items = 0;
    for (int64_t s = 0; s < c->n_seq; s++)
        if (c->seq_rows[s] >= ATTN_GEMM_MIN) items += nh * ((c->seq_rows[s] + ATTN_QBLOCK - 1) / ATTN_QBLOCK);
    if (items == 0) return;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        int64_t rest = it, s = 0, nb = 0;
        for (s = 0; s < c->n_seq; s++) {
            if (c->seq_rows[s] < ATTN_GEMM_MIN) continue;
            nb = (c->seq_rows[s] + ATTN_QBLOCK - 1) / ATTN_QBLOCK;
            if (rest < nh * nb) break;
            rest -= nh * nb;
        }
        const int64_t hq = rest / nb, blk = rest % nb, hk = hq / group;
        const int64_t i0 = blk * ATTN_QBLOCK;
        const int64_t ni = c->seq_rows[s] - i0 < ATTN_QBLOCK ? c->seq_rows[s] - i0 : ATTN_QBLOCK;
        const int64_t r0 = c->seq_r0[s] + i0, p0 = c->seq_p0[s] + i0;
        const int64_t nk = p0 + ni; /* keys 0 .. p0 + ni - 1 */
        const road_kv_cache *kv = c->seqs[s].cache;
#ifdef _OPENMP
        float *S = scratch + (size_t)omp_get_thread_num() * (size_t)(ATTN_QBLOCK * max_keys);
#else
        float *S = scratch;
#endif
        const float *kb, *vb;
        int64_t ld;
        if (kv) {
            size_t off = (size_t)((layer * nkv + hk) * kv->cap * d);
            kb = kv->k + off, vb = kv->v + off, ld = d;
        } else {
            kb = k + (c->seq_r0[s] * nkv + hk) * d, vb = v + (c->seq_r0[s] * nkv + hk) * d, ld = nkv * d;
        }
        road_sgemm(false, true, ni, nk, d, scale, q + (r0 * nh + hq) * d, nh * d, kb, ld, 0.0f, S, nk);
        for (int64_t i = 0; i < ni; i++) {
            float *row = S + i * nk;
            const int64_t p = p0 + i, lo = W > 0 && p - W + 1 > 0 ? p - W + 1 : 0;
            float mx = -INFINITY;
            for (int64_t t = lo; t <= p; t++) mx = row[t] > mx ? row[t] : mx;
            double sum = 0.0;
            for (int64_t t = lo; t <= p; t++) {
                row[t] = expf(row[t] - mx);
                sum += row[t];
            }
            const float inv = (float)(1.0 / sum);
            for (int64_t t = 0; t < nk; t++) row[t] = (t >= lo && t <= p) ? row[t] * inv : 0.0f;
        }
        road_sgemm(false, false, ni, d, nk, 1.0f, S, nk, vb, ld, 0.0f, att + (r0 * nh + hq) * d, nh * d);
    }
}

static road_status attention(fwd_ctx *c, int64_t layer, const float *q, const float *k,
                             const float *v, float *att, float *scratch, int64_t max_keys) {
    attention_rows(c, layer, q, k, v, att, scratch, max_keys);
    attention_gemm(c, layer, q, k, v, att, scratch, max_keys);
    return ROAD_OK;
}

int64_t road_seq_logit_rows(const road_seq *seqs, int64_t n_seq) {
    int64_t n = 0;
    for (int64_t s = 0; s < n_seq; s++) n += seqs[s].all_logits ? seqs[s].n_tokens : 1;
    return n;
}

static road_status validate(road_model *m, const road_seq *seqs, int64_t n_seq, bool *mixed) {
    const road_llm_config *cfg = &m->cfg;
    if (n_seq <= 0 || !seqs)
        return road_error(ROAD_ERR_INVALID_ARG, "forward: the batch has no sequences");
    int64_t named = 0;
    for (int64_t s = 0; s < n_seq; s++) {
        const road_seq *q = &seqs[s];
        if (q->n_tokens <= 0 || !q->tokens)
            return road_error(ROAD_ERR_INVALID_ARG, "forward: sequence %lld has no new tokens",
                              (long long)s);
        for (int64_t i = 0; i < q->n_tokens; i++)
            if (q->tokens[i] < 0 || q->tokens[i] >= cfg->vocab_size)
                return road_error(ROAD_ERR_INVALID_ARG,
                                  "forward: sequence %lld, token %lld is id %d, outside the "
                                  "vocabulary (0..%lld)",
                                  (long long)s, (long long)i, (int)q->tokens[i],
                                  (long long)cfg->vocab_size - 1);
        if (q->cache) {
            const road_kv_cache *kv = q->cache;
            if (kv->n_layers != cfg->n_layers || kv->n_kv != cfg->n_kv_heads || kv->d != cfg->head_dim)
                return road_error(ROAD_ERR_INVALID_ARG,
                                  "forward: sequence %lld's KV cache belongs to another model",
                                  (long long)s);
            if (kv->len + q->n_tokens > kv->cap)
                return road_error(ROAD_ERR_STATE,
                                  "forward: sequence %lld needs %lld positions but its KV cache "
                                  "holds %lld (create it with more room)",
                                  (long long)s, (long long)(kv->len + q->n_tokens), (long long)kv->cap);
            for (int64_t t = 0; t < s; t++)
                if (seqs[t].cache == kv)
                    return road_error(ROAD_ERR_INVALID_ARG,
                                      "forward: sequences %lld and %lld share one KV cache",
                                      (long long)t, (long long)s);
        }
        named += q->adapter != NULL;
    }
    if (named != 0 && named != n_seq)
        return road_error(ROAD_ERR_INVALID_ARG,
                          "forward: %lld of %lld sequences name an adapter; in a mixed batch every "
                          "sequence names one (or '%s')",
                          (long long)named, (long long)n_seq, ROAD_BASE_NAME);
    *mixed = named > 0;
    return ROAD_OK;
}

road_status road_model_forward(road_model *m, const road_seq *seqs, int64_t n_seq,
                               float *logits) {
    ROAD_THREAD_SCOPE(m ? m->n_threads : 0);
    bool mixed = false;
    road_status st = validate(m, seqs, n_seq, &mixed);
    if (st != ROAD_OK) return st;
    if (!logits) return road_error(ROAD_ERR_INVALID_ARG, "forward: logits is NULL");
    const road_llm_config *cfg = &m->cfg;
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t qd = nh * d, kvd = nkv * d;
    fwd_ctx c = {m, seqs, n_seq, 0, NULL, NULL, NULL, NULL, NULL, NULL};
    int64_t max_keys = 1, n_sel = road_seq_logit_rows(seqs, n_seq);
    for (int64_t s = 0; s < n_seq; s++) {
        c.R += seqs[s].n_tokens;
        int64_t keys = (seqs[s].cache ? seqs[s].cache->len : 0) + seqs[s].n_tokens;
        if (keys > max_keys) max_keys = keys;
    }
    const int64_t R = c.R;
    int64_t *meta = road_malloc(sizeof(int64_t) * (size_t)(2 * R + 4 * n_seq));
    if (!meta) return ROAD_ERR_NO_MEMORY;
    c.row_seq = meta;
    c.row_pos = meta + R;
    c.seq_rows = meta + 2 * R;
    c.seq_r0 = c.seq_rows + n_seq;
    c.seq_p0 = c.seq_r0 + n_seq;
    int64_t *sel_rows = c.seq_p0 + n_seq;
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
        const char **names = road_malloc(sizeof(char *) * (size_t)n_seq);
        if (!names) {
            road_free(meta);
            return ROAD_ERR_NO_MEMORY;
        }
        for (int64_t s = 0; s < n_seq; s++) names[s] = seqs[s].adapter;
        st = road_adapter_set_plan(m->set, names, n_seq, &c.plan);
        road_free(names);
        if (st != ROAD_OK) {
            road_free(meta);
            return st;
        }
    }
    int nthreads = road_get_num_threads();
    size_t n_ws = (size_t)(R * (2 * H + 2 * qd + 2 * kvd + 2 * I + d) + n_sel * H +
                           (int64_t)nthreads * ATTN_QBLOCK * max_keys);
    float *ws = road_workspace_get(&m->ws, n_ws);
    if (!ws) {
        road_batch_plan_free(c.plan);
        road_free(meta);
        return ROAD_ERR_NO_MEMORY;
    }
    float *x = ws, *h = x + R * H, *q = h + R * H, *att = q + R * qd, *k = att + R * qd;
    float *v = k + R * kvd, *g = v + R * kvd, *u = g + R * I, *cs = u + R * I;
    float *sel = cs + R * d, *scratch = sel + n_sel * H;

    /* embeddings (a sequence's table is its adapter's modules_to_save copy of embed_tokens,
     * if any), and the RoPE cos/sin of every row's position */
    for (int64_t s = 0, r = 0; s < n_seq && st == ROAD_OK; s++) {
        const float *table = NULL;
        st = c.plan ? road_adapter_set_plan_layer_weight(m->set, c.plan, m->embed_layer, s,
                                                         &table, NULL)
                    : road_adapter_set_layer_weight(m->set, m->embed_layer, &table, NULL);
        for (int64_t i = 0; st == ROAD_OK && i < seqs[s].n_tokens; i++, r++)
            memcpy(x + r * H, table + (int64_t)seqs[s].tokens[i] * H, sizeof(float) * (size_t)H);
    }
    rope_table(cs, c.row_pos, m->inv_freq, R, d);
    for (int64_t l = 0; l < cfg->n_layers && st == ROAD_OK; l++) {
        const road_block *b = &m->blocks[l];
        rmsnorm_forward(h, x, b->attn_norm, R, H, cfg->rms_norm_eps);
        st = linear(&c, b->proj[PROJ_Q], R, c.seq_rows, h, q);
        if (st == ROAD_OK) st = linear(&c, b->proj[PROJ_K], R, c.seq_rows, h, k);
        if (st == ROAD_OK) st = linear(&c, b->proj[PROJ_V], R, c.seq_rows, h, v);
        if (st != ROAD_OK) break;
        rope_forward(q, cs, R, nh, d);
        rope_forward(k, cs, R, nkv, d);
        cache_store(&c, l, k, v);
        attention(&c, l, q, k, v, att, scratch, max_keys);
        st = linear(&c, b->proj[PROJ_O], R, c.seq_rows, att, h);
        if (st != ROAD_OK) break;
        for (int64_t i = 0; i < R * H; i++) x[i] += h[i];
        rmsnorm_forward(h, x, b->mlp_norm, R, H, cfg->rms_norm_eps);
        st = linear(&c, b->proj[PROJ_GATE], R, c.seq_rows, h, g);
        if (st == ROAD_OK) st = linear(&c, b->proj[PROJ_UP], R, c.seq_rows, h, u);
        if (st != ROAD_OK) break;
        swiglu_forward(g, g, u, R * I);
        st = linear(&c, b->proj[PROJ_DOWN], R, c.seq_rows, g, h);
        if (st != ROAD_OK) break;
        for (int64_t i = 0; i < R * H; i++) x[i] += h[i];
    }
    if (st == ROAD_OK) {
        /* final norm on the rows whose logits are wanted, then lm_head */
        int64_t n = 0;
        for (int64_t s = 0; s < n_seq; s++) {
            int64_t first = seqs[s].all_logits ? c.seq_r0[s] : c.seq_r0[s] + seqs[s].n_tokens - 1;
            for (int64_t i = 0; i < sel_rows[s]; i++, n++)
                memcpy(h + n * H, x + (first + i) * H, sizeof(float) * (size_t)H);
        }
        rmsnorm_forward(sel, h, m->final_norm, n_sel, H, cfg->rms_norm_eps);
        st = linear(&c, m->lm_head, n_sel, sel_rows, sel, logits);
    }
    if (st == ROAD_OK)
        for (int64_t s = 0; s < n_seq; s++)
            if (seqs[s].cache) seqs[s].cache->len += seqs[s].n_tokens;
    (void)V;
    road_batch_plan_free(c.plan);
    road_free(meta);
    return st;
}
