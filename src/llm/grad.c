/*
 * llm/grad.c - training's loss and its gradient: road_model_loss_backward_seqs on a ragged
 * batch (tokens and targets per sequence), and road_model_loss_backward, its padded wrapper.
 *
 * The forward runs the same blocks as inference (block.c), without a KV cache, keeping in
 * each block's block_acts what its backward reads: the block input, both normed inputs, every
 * projection's pre-adapter and adapted output, the attention output and the MLP product.
 * Attention probabilities are recomputed in backward. With recomputation on, only each block's
 * input is kept and the block runs again just before its backward. The loss is ops.c's
 * cross-entropy (eval's loss too); backward walks the head, then every block in reverse
 * (road__block_backward), then scatters block 0's input gradient into a trained embedding.
 *
 * Every buffer lives in the model's backward workspaces (bwd_act, bwd_rows), grown when a
 * batch needs more and kept for the next step, so a training step allocates nothing once its
 * largest batch has run (the padded wrapper allocates its token lists).
 *
 * Legend: R rows (tokens of the batch), H hidden, I intermediate, V vocab, nh/nkv heads,
 * d head_dim, qd = nh*d, kvd = nkv*d.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"
#include "llm/block.h"

void road_model_set_recompute(road_model *m, bool on) {
    m->recompute = on;
}

int64_t road_model_backward_bytes(const road_model *m) {
    return m->backward_bytes;
}

/* Can the model train now? Not with merged adapters, nor full fine-tuning beside an active
 * adapter. */
static road_status check_state(const road_model *m) {
    if (road_adapter_set_merged(m->set))
        return road__error(ROAD_ERR_STATE,
                           "loss_backward: adapters are merged into the weights, so "
                           "they cannot be trained; unmerge first");
    if (road_model_full_training(m) && road_adapter_set_enabled(m->set) &&
        road_adapter_set_active_count(m->set) > 0)
        return road__error(ROAD_ERR_STATE,
                           "loss_backward: full fine-tuning trains the base weights, but adapter "
                           "'%s' is active; disable adapters (road_adapter_set_enable) or turn "
                           "full training off",
                           road_adapter_set_active_name(m->set, 0));
    return ROAD_OK;
}

/* A training batch's checks: every sequence has tokens in the vocabulary and targets that are
 * token ids or ignored, no KV cache (training runs whole sequences from position 0) and no
 * adapter name (the active adapters train), and some target counts. */
static road_status validate(const road_model *m, const road_seq *seqs,
                            const road_token *const *targets, int64_t n_seq, int64_t *count) {
    const int64_t V = m->cfg.vocab_size;
    if (n_seq <= 0 || !seqs || !targets)
        return road__error(ROAD_ERR_INVALID_ARG, "loss_backward: the batch has no sequences or no "
                                                 "targets");
    *count = 0;
    for (int64_t s = 0; s < n_seq; s++) {
        const road_seq *q = &seqs[s];
        if (q->n_tokens <= 0 || !q->tokens || !targets[s])
            return road__error(ROAD_ERR_INVALID_ARG, "loss_backward: sequence %lld has no %s",
                               (long long)s, q->n_tokens <= 0 || !q->tokens ? "tokens" : "targets");
        if (q->cache)
            return road__error(ROAD_ERR_INVALID_ARG,
                               "loss_backward: sequence %lld has a KV cache; training runs whole "
                               "sequences from position 0 (set cache to NULL)",
                               (long long)s);
        if (q->adapter)
            return road__error(ROAD_ERR_INVALID_ARG,
                               "loss_backward: sequence %lld names adapter '%s'; training trains "
                               "the active adapters (set adapter to NULL and activate it)",
                               (long long)s, q->adapter);
        for (int64_t i = 0; i < q->n_tokens; i++) {
            if (q->tokens[i] < 0 || q->tokens[i] >= V)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "loss_backward: sequence %lld, token %lld "
                                   "is id %d, outside the vocabulary (0..%lld)",
                                   (long long)s, (long long)i, (int)q->tokens[i], (long long)V - 1);
            const road_token y = targets[s][i];
            if (y == ROAD_LABEL_IGNORE) continue;
            if (y < 0 || y >= V)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "loss_backward: sequence %lld, target "
                                   "%lld is %d; targets are token ids (0..%lld) or %d (ignored)",
                                   (long long)s, (long long)i, (int)y, (long long)V - 1,
                                   ROAD_LABEL_IGNORE);
            (*count)++;
        }
    }
    if (*count == 0)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "loss_backward: no label counts (all -100 after the shift)");
    return ROAD_OK;
}

road_status road_model_loss_backward_seqs(road_model *m, const road_seq *seqs,
                                          const road_token *const *targets, int64_t n_seq,
                                          double *loss) {
    ROAD_THREAD_SCOPE(m ? m->n_threads : 0); /* training: exact kernels only */
    if (!m || !loss) return road__error(ROAD_ERR_INVALID_ARG, "loss_backward: NULL model or loss");
    road_status st = check_state(m);
    int64_t count = 0;
    if (st == ROAD_OK) st = validate(m, seqs, targets, n_seq, &count);
    if (st != ROAD_OK) return st;
    const bool full = road_model_full_training(m);
    const road_llm_config *cfg = &m->cfg;
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim, L = cfg->n_layers;
    const int64_t qd = nh * d, kvd = nkv * d;
    llm_batch c = {.m = m, .seqs = seqs, .n_seq = n_seq, .attn_gemm_min = 1};
    int64_t max_len = 1;
    for (int64_t s = 0; s < n_seq; s++) {
        c.R += seqs[s].n_tokens;
        if (seqs[s].n_tokens > max_len) max_len = seqs[s].n_tokens;
    }
    const int64_t R = c.R;
    c.attn_qblock = max_len;
    /* Per-row bookkeeping, carved from bwd_rows: per row its position, sequence and target,
     * its loss and softmax statistics; per sequence its rows, first row, first position and
     * attention view; the saved blocks. Every region is a multiple of 8 bytes, so each starts
     * aligned for its type. */
    const size_t rows_bytes = sizeof(int64_t) * (3 * (size_t)R + 3 * (size_t)n_seq) +
                              sizeof(double) * 3 * (size_t)R + sizeof(attn_seq) * (size_t)n_seq +
                              sizeof(block_acts) * (size_t)L;
    char *rows_mem =
        (char *)road__workspace_get(&m->bwd_rows, (rows_bytes + sizeof(float) - 1) / sizeof(float));
    if (!rows_mem) return ROAD_ERR_NO_MEMORY;
    c.row_pos = (int64_t *)rows_mem;
    c.row_seq = c.row_pos + R;
    int64_t *row_tgt = c.row_seq + R;
    c.seq_rows = row_tgt + R;
    c.seq_r0 = c.seq_rows + n_seq;
    c.seq_p0 = c.seq_r0 + n_seq;
    double *row_loss = (double *)(c.seq_p0 + n_seq), *row_max = row_loss + R,
           *row_sum = row_max + R;
    c.attn = (attn_seq *)(row_sum + R);
    block_acts *sb = (block_acts *)(c.attn + n_seq);
    memset(sb, 0, sizeof(block_acts) * (size_t)L);
    for (int64_t s = 0, r = 0; s < n_seq; s++) {
        c.seq_rows[s] = seqs[s].n_tokens;
        c.seq_r0[s] = r;
        c.seq_p0[s] = 0;
        for (int64_t i = 0; i < seqs[s].n_tokens; i++, r++) {
            c.row_pos[r] = i;
            c.row_seq[r] = s;
            row_tgt[r] = targets[s][i];
        }
    }

    /* memory: saved blocks (with recompute: every block's input, and one block's worth of
     * activations refilled block by block in backward), then the working buffers; counted by
     * a first carve with no base, then carved */
    const bool rc = m->recompute;
    const road_block *b0 = &m->blocks[0]; /* every block has the same structure */
    const bool fused = b0->fused, qkn = b0->norm[NORM_Q] != NULL;
    const bool post_attn = b0->norm[NORM_ATTN_OUT] != NULL,
               post_mlp = b0->norm[NORM_MLP_OUT] != NULL;
    const bool cap = m->head_spec.final_softcap > 0.0f;
    const int nthreads = road_get_num_threads();
    /* road__attention_backward's (3 n^2 with a softcap), > the forward's */
    c.scratch_stride = (b0->spec.attn_softcap > 0.0f ? 3 : 2) * max_len * max_len;
    const int64_t rot = b0->spec.rotary_dim;
    float *mem = NULL, *x = NULL, *hf = NULL, *tmp = NULL, *dx = NULL, *xr = NULL, *zb = NULL;
    float *z = NULL, *zc = NULL;
    block_grads gr = {0};
    for (int pass = 0; pass < 2; pass++) {
        float *p = mem;
        size_t n = 0;
#define TAKE(k) (n += (size_t)(k), p ? p + n - (size_t)(k) : NULL)
        x = TAKE(R * H), hf = TAKE(R * H), tmp = TAKE(R * H), dx = TAKE(R * H);
        xr = TAKE(R * H); /* recompute: the residual a block is re-run on */
        for (int64_t l = 0; l < L; l++) {
            block_acts *s = &sb[l];
            if (rc && l > 0) { /* share block 0's activation storage; keep an own input */
                *s = sb[0];
                s->x_in = TAKE(R * H);
                continue;
            }
            memset(s, 0, sizeof *s);
            s->x_in = TAKE(R * H), s->h1 = TAKE(R * H);
            if (fused) {
                s->qkvb = TAKE(R * (qd + 2 * kvd));
                s->gub = TAKE(R * 2 * I);
            } else {
                s->qb = TAKE(R * qd), s->kb = TAKE(R * kvd), s->vb = TAKE(R * kvd);
                s->gb = TAKE(R * I), s->ub = TAKE(R * I);
            }
            s->q = TAKE(R * qd), s->k = TAKE(R * kvd), s->v = TAKE(R * kvd);
            if (qkn) s->qn = TAKE(R * qd), s->kn = TAKE(R * kvd);
            s->att = TAKE(R * qd), s->ob = TAKE(R * H), s->x_mid = TAKE(R * H), s->h2 = TAKE(R * H);
            s->g = TAKE(R * I), s->u = TAKE(R * I), s->a = TAKE(R * I), s->db = TAKE(R * H);
            /* the projections' adapted outputs are added to x at once, unless an output norm
             * needs them again in backward */
            s->o = post_attn ? TAKE(R * H) : tmp;
            s->dn = post_mlp ? TAKE(R * H) : tmp;
            s->po = s->pdn = tmp;
        }
        zb = TAKE(R * V), z = TAKE(R * V);
        if (cap) zc = TAKE(R * V);
        gr = (block_grads){.dh = tmp, .dh2 = hf}; /* one TAKE per statement: a fixed order */
        gr.dq = TAKE(R * qd);
        gr.datt = TAKE(R * qd);
        gr.dk = TAKE(R * kvd), gr.dv = TAKE(R * kvd), gr.dg = TAKE(R * I), gr.du = TAKE(R * I);
        if (post_attn || post_mlp) gr.dpost = TAKE(R * H);
        if (qkn) gr.dqn = TAKE(R * qd), gr.dkn = TAKE(R * kvd);
        if (fused) {
            gr.dqkv = TAKE(R * (qd + 2 * kvd)), gr.dgu = TAKE(R * 2 * I);
            float *qkv = TAKE(R * (qd + 2 * kvd)), *gu = TAKE(R * 2 * I); /* adapted, split */
            for (int64_t l = 0; l < L; l++) sb[l].qkv = qkv, sb[l].gu = gu;
        }
        c.cs[0] = TAKE(R * rot), c.cs[1] = TAKE(R * rot);
        c.scratch = TAKE((int64_t)nthreads * c.scratch_stride);
#undef TAKE
        if (pass == 0) {
            mem = road__workspace_get(&m->bwd_act, n);
            if (!mem) return ROAD_ERR_NO_MEMORY;
            m->backward_bytes = (int64_t)(sizeof(float) * n);
        }
    }
    /* Does backward need block 0's input gradient? For a trained embedding only: the active
     * modules_to_save copy of embed_tokens, or full fine-tuning's embedding. */
    road_module_copy ecopy;
    const bool embed_trains = road_adapter_set_active_copy(m->set, m->embed_layer, &ecopy);
    st = road__block_embed(&c, x);

    /* ---- forward, saving (or, with recompute, keeping only each block's input) ---- */
    for (int64_t l = 0; l < L && st == ROAD_OK; l++) {
        memcpy(sb[l].x_in, x, sizeof(float) * (size_t)(R * H));
        st = road__block_forward(&c, l, x, &sb[l]);
    }
    if (st == ROAD_OK) st = road__head_forward(&c, R, c.seq_rows, x, hf, z, zb);
    if (st == ROAD_OK && cap) memcpy(zc, z, sizeof(float) * (size_t)(R * V)); /* capped */
    /* ---- loss and dlogits (into z) ---- */
    if (st == ROAD_OK) {
        road__cross_entropy_forward(row_loss, row_max, row_sum, z, row_tgt, R, V);
        /* the sum as an OpenMP reduction over rows in static chunks: per thread count, the
         * same additions in the same order every step */
        double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (int64_t r = 0; r < R; r++)
            if (row_tgt[r] != ROAD_LABEL_IGNORE) total += row_loss[r];
        *loss = total / (double)count;
        road__cross_entropy_backward(z, count, z, row_tgt, row_max, row_sum, R, V);
        if (cap) road__softcap_backward(z, zc, R * V, m->head_spec.final_softcap);
    }
    /* ---- backward ---- */
    if (st == ROAD_OK) st = road__block_linear_backward(&c, m->lm_head, R, hf, zb, z, tmp);
    if (st == ROAD_OK) {
        memset(dx, 0, sizeof(float) * (size_t)(R * H));
        road__block_norm_backward(&m->head_spec, dx,
                                  full ? road__full_grad(m, m->full->final_norm) : NULL, tmp, x,
                                  m->final_norm, R, H);
    }
    for (int64_t l = L - 1; l >= 0 && st == ROAD_OK; l--) {
        if (rc) { /* refill this block's activations from its input */
            memcpy(xr, sb[l].x_in, sizeof(float) * (size_t)(R * H));
            block_acts a = sb[l];
            a.po = a.pdn = hf; /* hf is free by now */
            if (!post_attn) a.o = hf;
            if (!post_mlp) a.dn = hf;
            st = road__block_forward(&c, l, xr, &a);
            if (st != ROAD_OK) break;
        }
        st = road__block_backward(&c, l, dx, &sb[l], &gr, l > 0 || embed_trains || full);
    }
    /* dx is now d(block 0's input) = d(embedding rows): scatter-add into the trained copy or,
     * with full fine-tuning, the embedding's gradient. */
    float *egrad = embed_trains ? ecopy.dweight : full ? road__full_grad(m, m->full->embed) : NULL;
    if (st == ROAD_OK && egrad) road__block_embed_backward(&c, egrad, dx);
    return st;
}

/* The padded form: each row's valid tokens (attention_mask 1) become one sequence at positions
 * 0..n-1 (transformers' cumsum(mask) - 1), its targets the next column's labels. */
road_status road_model_loss_backward(road_model *m, const int64_t *input_ids,
                                     const int64_t *attention_mask, const int64_t *labels,
                                     int64_t B, int64_t T, double *loss) {
    if (!m || !input_ids || !labels || !loss || B <= 0 || T <= 0)
        return road__error(ROAD_ERR_INVALID_ARG, "loss_backward: empty batch or NULL buffers");
    const int64_t V = m->cfg.vocab_size;
    road_status st = check_state(m);
    int64_t valid = 0;
    for (int64_t b = 0; b < B && st == ROAD_OK; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t mk = attention_mask ? attention_mask[b * T + t] : 1;
            if (mk != 0 && mk != 1) {
                st = road__error(ROAD_ERR_INVALID_ARG, "attention_mask values must be 0 or 1");
                break;
            }
            int64_t id = input_ids[b * T + t];
            if (mk && (id < 0 || id >= V)) {
                st = road__error(ROAD_ERR_INVALID_ARG,
                                 "input_ids[%lld][%lld] is %lld, outside the "
                                 "vocabulary",
                                 (long long)b, (long long)t, (long long)id);
                break;
            }
            valid += mk;
        }
    if (st == ROAD_OK && valid == 0)
        st = road__error(ROAD_ERR_INVALID_ARG, "loss_backward: every row is padding");
    for (int64_t b = 0; b < B && st == ROAD_OK; b++)
        for (int64_t t = 0; t + 1 < T; t++) {
            int64_t y = labels[b * T + t + 1];
            if (y == ROAD_LABEL_IGNORE) continue;
            if (y < 0 || y >= V) {
                st = road__error(ROAD_ERR_INVALID_ARG,
                                 "labels[%lld][%lld] is %lld; labels are token "
                                 "ids or -100",
                                 (long long)b, (long long)(t + 1), (long long)y);
                break;
            }
            if (attention_mask && !attention_mask[b * T + t]) {
                st = road__error(ROAD_ERR_INVALID_ARG,
                                 "labels[%lld][%lld] counts, but it is predicted from position "
                                 "%lld, which is padding; set that label to -100",
                                 (long long)b, (long long)(t + 1), (long long)t);
                break;
            }
        }
    if (st != ROAD_OK) return st;
    road_seq *seqs = road__calloc((size_t)B, sizeof(road_seq));
    const road_token **tgts = road__calloc((size_t)B, sizeof(road_token *));
    road_token *tok = road__malloc(sizeof(road_token) * (size_t)(2 * B * T));
    if (!seqs || !tgts || !tok) {
        road__free(seqs);
        road__free(tgts);
        road__free(tok);
        return ROAD_ERR_NO_MEMORY;
    }
    road_token *tgt = tok + B * T;
    int64_t n_seq = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++) {
            if (attention_mask && !attention_mask[b * T + t]) continue;
            tok[b * T + n] = (road_token)input_ids[b * T + t];
            tgt[b * T + n++] = t + 1 < T ? (road_token)labels[b * T + t + 1] : ROAD_LABEL_IGNORE;
        }
        if (n == 0) continue; /* an all-padding row */
        tgts[n_seq] = tgt + b * T;
        seqs[n_seq++] = (road_seq){.tokens = tok + b * T, .n_tokens = n};
    }
    st = road_model_loss_backward_seqs(m, seqs, tgts, n_seq, loss);
    road__free(seqs);
    road__free(tgts);
    road__free(tok);
    return st;
}
