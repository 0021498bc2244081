/*
 * llm/grad.c - the loss of a padded batch and its gradient for the active RoAd adapters:
 * a training forward that keeps the activations backward needs, then backward through the
 * whole decoder, each op's backward mirroring its forward.
 *
 * Usually only adapter parameters learn, so no weight-gradient GEMM is run for base weights: each
 * linear layer's backward is its input gradient dY W plus the element-wise RoAd chain rule
 * (road_adapter_set_backward, from the layer's saved pre-adapter output). Layers with an
 * active modules_to_save copy (lm_head, a classifier) are the exception: their copy gets
 * dW += dY^T X; an embed_tokens copy gets block 0's input gradient scattered into its rows. The forward here
 * runs without a KV cache, on the valid tokens of each row (positions 0..n-1, as transformers
 * gives them with cumsum(mask) - 1), keeping per layer: the block input, both normed inputs,
 * every projection's pre-adapter output and its adapted output, the attention output and the
 * SwiGLU product. Attention probabilities are recomputed in backward. With full fine-tuning
 * (full.c) every weight learns: each linear layer also gets dW += dY^T X (and db), each norm
 * dw, the embedding its rows' gradients (a tied lm_head adds into the same buffer).
 *
 * The loss is ops.c's cross-entropy (eval's loss too). Every buffer lives in the model's
 * backward workspaces (bwd_act, bwd_rows), grown when a batch needs more and kept for the
 * next step, so a training step allocates nothing once its largest batch has run.
 *
 * Legend: R rows (valid tokens of the batch), H hidden, I intermediate, V vocab, nh/nkv heads,
 * d head_dim, qd = nh*d, kvd = nkv*d.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/blas.h"
#include "core/error.h"
#include "core/threads.h"
#include "llm/model_internal.h"
#include "llm/ops.h"

/* Saved activations of one decoder block (all (R, .) row-major). */
typedef struct saved_block {
    float *x_in, *h1, *qb, *kb, *vb, *q, *k, *v, *att, *ob, *x_mid, *h2, *gb, *ub, *g, *u, *a, *db;
} saved_block;

typedef struct grad_ctx {
    road_model *m;
    int64_t R, n_seq;
    int64_t *seq_r0, *seq_n, *row_pos, *row_seq;
    float *cs; /* (R, d) RoPE table */
} grad_ctx;

/* y_base (saved) = x W^T + b; y = adapters(y_base). W, b: the layer's active modules_to_save
 * copy, else the base. */
static road_status lin_fwd(grad_ctx *c, int32_t layer, const float *x, float *y_base, float *y,
                           int64_t out) {
    /* the copy, the float base or the quantized base (dequantized tiles + sgemm) */
    road_status st = road_adapter_set_base_forward(c->m->set, layer, c->R, x, y_base);
    if (st != ROAD_OK) return st;
    memcpy(y, y_base, sizeof(float) * (size_t)(c->R * out));
    return road_adapter_set_apply(c->m->set, layer, c->R, y);
}

/* dx (R, in) = backward of lin_fwd for dy (R, out), x (R, in) the layer's input; adapter
 * gradients (and an active modules_to_save copy's dW, db) accumulate. */
static road_status lin_bwd(grad_ctx *c, int32_t layer, const float *x, const float *y_base, const float *dy,
                           float *dx) {
    road_status st = road_adapter_set_backward(c->m->set, layer, c->R, x, y_base, dy, dx);
    road_full *f = c->m->full;
    if (st != ROAD_OK || !road_model_full_training(c->m)) return st;
    /* Full fine-tuning (no adapter active, so dy is the base output's gradient):
     * dW (out, in) += dy^T x, db += column sums of dy. */
    float *dw = road_full_grad(c->m, f->lin_w[layer]), *db = road_full_grad(c->m, f->lin_b[layer]);
    road_linear *l = road_adapter_set_layer(c->m->set, layer);
    const int64_t out = road_linear_out_features(l), in = road_linear_in_features(l);
    if (dw) road_sgemm(true, false, out, in, c->R, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db)
        for (int64_t r = 0; r < c->R; r++)
            for (int64_t i = 0; i < out; i++) db[i] += dy[r * out + i];
    return ROAD_OK;
}

/* Attention of a training batch, per sequence and head, as small GEMMs: S = Q K^T / sqrt(d)
 * (n x n for a sequence of n tokens), a causal (and sliding-window) softmax per row, O = P V.
 * Backward recomputes P the same way and runs dP = dO V^T, dV += P^T dO,
 * dS = P (dP - rowsum(P dP)), dQ = dS K / sqrt(d), dK += dS^T Q / sqrt(d). Q, K, V, O are
 * views into the (R, heads x d) buffers with their row strides, so nothing is copied. Each
 * thread owns 2 n x n scratch matrices. */

/* P (n x n, row stride n) = masked softmax of S in place: row i keeps keys lo(i)..i. */
static void softmax_causal(float *P, int64_t n, int64_t window) {
    for (int64_t i = 0; i < n; i++) {
        float *row = P + i * n;
        const int64_t lo = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
        float mx = -INFINITY;
        for (int64_t t = lo; t <= i; t++) mx = row[t] > mx ? row[t] : mx;
        double sum = 0.0;
        for (int64_t t = lo; t <= i; t++) {
            row[t] = expf(row[t] - mx);
            sum += row[t];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t t = 0; t < lo; t++) row[t] = 0.0f;
        for (int64_t t = lo; t <= i; t++) row[t] *= inv;
        for (int64_t t = i + 1; t < n; t++) row[t] = 0.0f;
    }
}

/* P for sequence s, query head hq (n x n into P). */
static void seq_probs(const grad_ctx *c, const float *q, const float *k, int64_t s, int64_t hq,
                      float *P) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t hk = hq / (nh / nkv), n = c->seq_n[s], r0 = c->seq_r0[s];
    const float scale = 1.0f / sqrtf((float)d);
    road_sgemm(false, true, n, n, d, scale, q + (r0 * nh + hq) * d, nh * d,
               k + (r0 * nkv + hk) * d, nkv * d, 0.0f, P, n);
    softmax_causal(P, n, cfg->sliding_window);
}

static void attention_fwd(const grad_ctx *c, const float *q, const float *k, const float *v,
                          float *att, float *scratch, int64_t max_len) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < c->n_seq * nh; it++) {
        const int64_t s = it / nh, hq = it % nh, hk = hq / (nh / nkv);
        const int64_t n = c->seq_n[s], r0 = c->seq_r0[s];
#ifdef _OPENMP
        float *P = scratch + (size_t)omp_get_thread_num() * (size_t)(2 * max_len * max_len);
#else
        float *P = scratch;
#endif
        seq_probs(c, q, k, s, hq, P);
        road_sgemm(false, false, n, d, n, 1.0f, P, n, v + (r0 * nkv + hk) * d, nkv * d, 0.0f,
                   att + (r0 * nh + hq) * d, nh * d);
    }
}

/* Attention backward for one (sequence, kv head) per work item: its query heads write dq, and
 * dk, dv of the kv head accumulate over them, so there are no races between items. */
static void attention_bwd(const grad_ctx *c, const float *q, const float *k, const float *v,
                          const float *datt, float *dq, float *dk, float *dv, float *scratch,
                          int64_t max_len) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim, grp = nh / nkv;
    const float scale = 1.0f / sqrtf((float)d);
    memset(dk, 0, sizeof(float) * (size_t)(c->R * nkv * d));
    memset(dv, 0, sizeof(float) * (size_t)(c->R * nkv * d));
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < c->n_seq * nkv; it++) {
        const int64_t s = it / nkv, hk = it % nkv, n = c->seq_n[s], r0 = c->seq_r0[s];
#ifdef _OPENMP
        float *P = scratch + (size_t)omp_get_thread_num() * (size_t)(2 * max_len * max_len);
#else
        float *P = scratch;
#endif
        float *dP = P + n * n;
        const float *kh = k + (r0 * nkv + hk) * d, *vh = v + (r0 * nkv + hk) * d;
        float *dkh = dk + (r0 * nkv + hk) * d, *dvh = dv + (r0 * nkv + hk) * d;
        for (int64_t hq = hk * grp; hq < (hk + 1) * grp; hq++) {
            const float *qh = q + (r0 * nh + hq) * d, *go = datt + (r0 * nh + hq) * d;
            seq_probs(c, q, k, s, hq, P);
            road_sgemm(false, true, n, n, d, 1.0f, go, nh * d, vh, nkv * d, 0.0f, dP, n);
            road_sgemm(true, false, n, d, n, 1.0f, P, n, go, nh * d, 1.0f, dvh, nkv * d);
            for (int64_t i = 0; i < n; i++) { /* dS into dP */
                float *pr = P + i * n, *dr = dP + i * n;
                double pdp = 0.0;
                for (int64_t t = 0; t <= i; t++) pdp += (double)pr[t] * dr[t];
                for (int64_t t = 0; t < n; t++) dr[t] = t <= i ? pr[t] * (dr[t] - (float)pdp) : 0.0f;
            }
            road_sgemm(false, false, n, d, n, scale, dP, n, kh, nkv * d, 0.0f,
                       dq + (r0 * nh + hq) * d, nh * d);
            road_sgemm(true, false, n, d, n, scale, dP, n, qh, nh * d, 1.0f, dkh, nkv * d);
        }
    }
}

/* One decoder block forward on the residual x (R, H), in place, keeping in s what backward
 * needs (s->x_in is filled by the caller). */
static road_status block_fwd(grad_ctx *c, int64_t l, float *x, saved_block *s, float *tmp,
                             float *scratch, int64_t max_len) {
    const road_model *m = c->m;
    const road_llm_config *cfg = &m->cfg;
    const int64_t R = c->R, H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t qd = nh * d, kvd = nkv * d;
    const road_block *b = &m->blocks[l];
    rmsnorm_forward(s->h1, x, b->attn_norm, R, H, cfg->rms_norm_eps);
    road_status st = lin_fwd(c, b->proj[PROJ_Q], s->h1, s->qb, s->q, qd);
    if (st == ROAD_OK) st = lin_fwd(c, b->proj[PROJ_K], s->h1, s->kb, s->k, kvd);
    if (st == ROAD_OK) st = lin_fwd(c, b->proj[PROJ_V], s->h1, s->vb, s->v, kvd);
    if (st != ROAD_OK) return st;
    rope_forward(s->q, c->cs, R, nh, d);
    rope_forward(s->k, c->cs, R, nkv, d);
    attention_fwd(c, s->q, s->k, s->v, s->att, scratch, max_len);
    st = lin_fwd(c, b->proj[PROJ_O], s->att, s->ob, tmp, H);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) x[i] += tmp[i];
    memcpy(s->x_mid, x, sizeof(float) * (size_t)(R * H));
    rmsnorm_forward(s->h2, x, b->mlp_norm, R, H, cfg->rms_norm_eps);
    st = lin_fwd(c, b->proj[PROJ_GATE], s->h2, s->gb, s->g, I);
    if (st == ROAD_OK) st = lin_fwd(c, b->proj[PROJ_UP], s->h2, s->ub, s->u, I);
    if (st != ROAD_OK) return st;
    swiglu_forward(s->a, s->g, s->u, R * I);
    st = lin_fwd(c, b->proj[PROJ_DOWN], s->a, s->db, tmp, H);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) x[i] += tmp[i];
    return ROAD_OK;
}

void road_model_set_recompute(road_model *m, bool on) {
    m->recompute = on;
}

int64_t road_model_backward_bytes(const road_model *m) {
    return m->backward_bytes;
}

road_status road_model_loss_backward(road_model *m, const int64_t *input_ids,
                                     const int64_t *attention_mask, const int64_t *labels,
                                     int64_t B, int64_t T, double *loss) {
    ROAD_THREAD_SCOPE(m ? m->n_threads : 0);
    if (!input_ids || !labels || !loss || B <= 0 || T <= 0)
        return road_error(ROAD_ERR_INVALID_ARG, "loss_backward: empty batch or NULL buffers");
    if (road_adapter_set_merged(m->set))
        return road_error(ROAD_ERR_STATE, "loss_backward: adapters are merged into the weights, so "
                                          "they cannot be trained; unmerge first");
    const bool full = road_model_full_training(m);
    if (full && road_adapter_set_enabled(m->set) && road_adapter_set_active_count(m->set) > 0)
        return road_error(ROAD_ERR_STATE,
                          "loss_backward: full fine-tuning trains the base weights, but adapter "
                          "'%s' is active; disable adapters (road_adapter_set_enable) or turn "
                          "full training off",
                          road_adapter_set_active_name(m->set, 0));
    const road_llm_config *cfg = &m->cfg;
    const int64_t H = cfg->hidden_size, I = cfg->intermediate_size, V = cfg->vocab_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim, L = cfg->n_layers;
    const int64_t qd = nh * d, kvd = nkv * d;
    grad_ctx c = {m, 0, 0, NULL, NULL, NULL, NULL, NULL};
    road_status st = ROAD_OK;
    /* Per-row bookkeeping, sized for the most rows a [B x T] batch can have (every column
     * valid), carved from bwd_rows: rows (the valid tokens) with their position, sequence,
     * padded column and batch row, and their target (the next column's label); per sequence
     * its first row and length; per row its loss and softmax statistics; the saved blocks.
     * Every region is a multiple of 8 bytes, so each starts aligned for its type. */
    const size_t BT = (size_t)(B * T);
    const size_t rows_bytes = sizeof(int64_t) * (5 * BT + 2 * (size_t)B) +
                              sizeof(double) * 3 * BT + sizeof(saved_block) * (size_t)L;
    char *rows_mem = (char *)road_workspace_get(&m->bwd_rows, (rows_bytes + sizeof(float) - 1) /
                                                                  sizeof(float));
    if (!rows_mem) return ROAD_ERR_NO_MEMORY;
    int64_t *meta = (int64_t *)rows_mem;
    c.row_pos = meta;
    c.row_seq = meta + BT;
    int64_t *row_col = meta + 2 * BT, *row_b = meta + 3 * BT, *targets = meta + 4 * BT;
    c.seq_r0 = meta + 5 * BT;
    c.seq_n = c.seq_r0 + B;
    double *row_loss = (double *)(c.seq_n + B), *row_max = row_loss + BT, *row_sum = row_max + BT;
    saved_block *sb = (saved_block *)(row_sum + BT);
    memset(sb, 0, sizeof(saved_block) * (size_t)L);
    int64_t max_len = 1;
    for (int64_t b = 0; b < B && st == ROAD_OK; b++) {
        int64_t n = 0;
        c.seq_r0[c.n_seq] = c.R;
        for (int64_t t = 0; t < T; t++) {
            int64_t mk = attention_mask ? attention_mask[b * T + t] : 1;
            if (mk != 0 && mk != 1) {
                st = road_error(ROAD_ERR_INVALID_ARG, "attention_mask values must be 0 or 1");
                break;
            }
            if (!mk) continue;
            int64_t id = input_ids[b * T + t];
            if (id < 0 || id >= V) {
                st = road_error(ROAD_ERR_INVALID_ARG, "input_ids[%lld][%lld] is %lld, outside the "
                                "vocabulary", (long long)b, (long long)t, (long long)id);
                break;
            }
            c.row_pos[c.R] = n++;
            c.row_seq[c.R] = c.n_seq;
            row_col[c.R] = t;
            row_b[c.R] = b;
            targets[c.R] = t + 1 < T ? labels[b * T + t + 1] : ROAD_LABEL_IGNORE;
            c.R++;
        }
        if (n > 0) {
            c.seq_n[c.n_seq++] = n;
            if (n > max_len) max_len = n;
        }
    }
    const int64_t R = c.R;
    if (st == ROAD_OK && R == 0) st = road_error(ROAD_ERR_INVALID_ARG, "loss_backward: every row is padding");
    /* the loss, and which rows count */
    int64_t count = 0;
    for (int64_t b = 0; b < B && st == ROAD_OK; b++)
        for (int64_t t = 0; t + 1 < T; t++) {
            int64_t y = labels[b * T + t + 1];
            if (y == ROAD_LABEL_IGNORE) continue;
            if (y < 0 || y >= V) {
                st = road_error(ROAD_ERR_INVALID_ARG, "labels[%lld][%lld] is %lld; labels are token "
                                "ids or -100", (long long)b, (long long)(t + 1), (long long)y);
                break;
            }
            if (attention_mask && !attention_mask[b * T + t]) {
                st = road_error(ROAD_ERR_INVALID_ARG,
                                "labels[%lld][%lld] counts, but it is predicted from position "
                                "%lld, which is padding; set that label to -100",
                                (long long)b, (long long)(t + 1), (long long)t);
                break;
            }
            count++;
        }
    if (st == ROAD_OK && count == 0)
        st = road_error(ROAD_ERR_INVALID_ARG, "loss_backward: no label counts (all -100 after the shift)");
    if (st != ROAD_OK) return st;

    /* memory: saved blocks (with recompute: every block's input, and one block's worth of
     * activations refilled block by block in backward), then the working buffers */
    const size_t per_block = (size_t)(R * (6 * H + 2 * qd + 2 * qd + 4 * kvd + 5 * I)) + (size_t)(R * qd);
    const bool rc = m->recompute;
    const size_t saved = rc ? per_block + (size_t)(L * R * H) : per_block * (size_t)L;
    const int nthreads = road_get_num_threads();
    const size_t work = (size_t)(R * (5 * H + 2 * V + 2 * qd + 2 * kvd + 2 * I + d)) +
                        (size_t)nthreads * (size_t)(2 * max_len * max_len);
    float *mem = road_workspace_get(&m->bwd_act, saved + work);
    if (!mem) return ROAD_ERR_NO_MEMORY;
    m->backward_bytes = (int64_t)(sizeof(float) * (saved + work));
    float *p = mem;
#define TAKE(n) (p += (n), p - (n))
    for (int64_t l = 0; l < L; l++) {
        saved_block *s = &sb[l];
        if (rc && l > 0) { /* share block 0's activation storage; keep an own input */
            *s = sb[0];
            s->x_in = TAKE(R * H);
            continue;
        }
        s->x_in = TAKE(R * H), s->h1 = TAKE(R * H), s->qb = TAKE(R * qd), s->kb = TAKE(R * kvd);
        s->vb = TAKE(R * kvd), s->q = TAKE(R * qd), s->k = TAKE(R * kvd), s->v = TAKE(R * kvd);
        s->att = TAKE(R * qd), s->ob = TAKE(R * H), s->x_mid = TAKE(R * H), s->h2 = TAKE(R * H);
        s->gb = TAKE(R * I), s->ub = TAKE(R * I), s->g = TAKE(R * I), s->u = TAKE(R * I);
        s->a = TAKE(R * I), s->db = TAKE(R * H);
    }
    float *x = TAKE(R * H), *hf = TAKE(R * H), *tmp = TAKE(R * H), *dx = TAKE(R * H);
    float *xr = TAKE(R * H); /* recompute: the residual a block is re-run on */
    float *zb = TAKE(R * V), *z = TAKE(R * V), *dq = TAKE(R * qd), *datt = TAKE(R * qd);
    float *dk = TAKE(R * kvd), *dv = TAKE(R * kvd), *dg = TAKE(R * I), *du = TAKE(R * I);
    c.cs = TAKE(R * d);
    float *scratch = TAKE((int64_t)nthreads * 2 * max_len * max_len);
#undef TAKE
    rope_table(c.cs, c.row_pos, m->inv_freq, R, d);
    /* The embedding table: the active modules_to_save copy of embed_tokens, if any; then
     * backward also needs block 0's input gradient, to scatter into the copy's rows. */
    road_module_copy ecopy;
    const bool embed_trains = road_adapter_set_active_copy(m->set, m->embed_layer, &ecopy);
    const float *table = embed_trains ? ecopy.weight : m->embed;
    for (int64_t r = 0; r < R; r++)
        memcpy(x + r * H, table + input_ids[row_b[r] * T + row_col[r]] * H, sizeof(float) * (size_t)H);

    /* ---- forward, saving (or, with recompute, keeping only each block's input) ---- */
    for (int64_t l = 0; l < L && st == ROAD_OK; l++) {
        saved_block *s = &sb[l];
        memcpy(s->x_in, x, sizeof(float) * (size_t)(R * H));
        st = block_fwd(&c, l, x, s, tmp, scratch, max_len);
    }
    if (st == ROAD_OK) {
        rmsnorm_forward(hf, x, m->final_norm, R, H, cfg->rms_norm_eps);
        st = lin_fwd(&c, m->lm_head, hf, zb, z, V);
    }
    /* ---- loss and dlogits (into z) ---- */
    if (st == ROAD_OK) {
        cross_entropy_forward(row_loss, row_max, row_sum, z, targets, R, V);
        /* the sum as an OpenMP reduction over rows in static chunks: per thread count, the
         * same additions in the same order every step */
        double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
        for (int64_t r = 0; r < R; r++)
            if (targets[r] != ROAD_LABEL_IGNORE) total += row_loss[r];
        *loss = total / (double)count;
        cross_entropy_backward(z, count, z, targets, row_max, row_sum, R, V);
    }
    /* ---- backward ---- */
    if (st == ROAD_OK) st = lin_bwd(&c, m->lm_head, hf, zb, z, tmp);
    if (st == ROAD_OK) {
        memset(dx, 0, sizeof(float) * (size_t)(R * H));
        rmsnorm_backward(dx, full ? road_full_grad(m, m->full->final_norm) : NULL, tmp, x,
                         m->final_norm, R, H, cfg->rms_norm_eps);
    }
    for (int64_t l = L - 1; l >= 0 && st == ROAD_OK; l--) {
        const road_block *b = &m->blocks[l];
        saved_block *s = &sb[l];
        if (rc) { /* refill this block's activations from its input */
            memcpy(xr, s->x_in, sizeof(float) * (size_t)(R * H));
            float *dh = hf; /* lin_fwd's scratch output; hf is free by now */
            st = block_fwd(&c, l, xr, s, dh, scratch, max_len);
            if (st != ROAD_OK) break;
        }
        /* MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2)), h2 = norm(x_mid) */
        st = lin_bwd(&c, b->proj[PROJ_DOWN], s->a, s->db, dx, dg); /* dg = d(a) for now */
        if (st != ROAD_OK) break;
        swiglu_backward(dg, du, dg, s->g, s->u, R * I);
        st = lin_bwd(&c, b->proj[PROJ_GATE], s->h2, s->gb, dg, tmp);
        if (st != ROAD_OK) break;
        float *dh2 = hf; /* free now: reuse as a second (R, H) buffer */
        st = lin_bwd(&c, b->proj[PROJ_UP], s->h2, s->ub, du, dh2);
        if (st != ROAD_OK) break;
        for (int64_t i = 0; i < R * H; i++) tmp[i] += dh2[i];
        rmsnorm_backward(dx, full ? road_full_grad(m, m->full->mlp_norm[l]) : NULL, tmp, s->x_mid,
                         b->mlp_norm, R, H, cfg->rms_norm_eps);
        /* attention: x_mid = x_in + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x_in) */
        st = lin_bwd(&c, b->proj[PROJ_O], s->att, s->ob, dx, datt);
        if (st != ROAD_OK) break;
        attention_bwd(&c, s->q, s->k, s->v, datt, dq, dk, dv, scratch, max_len);
        rope_backward(dq, c.cs, R, nh, d);
        rope_backward(dk, c.cs, R, nkv, d);
        if (l == 0 && !embed_trains && !full) {
            /* The embedding is frozen: block 0's input gradient has no use, so its q/k/v
             * backward stops at the adapters (no dY W GEMMs, no norm backward). */
            st = lin_bwd(&c, b->proj[PROJ_Q], s->h1, s->qb, dq, NULL);
            if (st == ROAD_OK) st = lin_bwd(&c, b->proj[PROJ_K], s->h1, s->kb, dk, NULL);
            if (st == ROAD_OK) st = lin_bwd(&c, b->proj[PROJ_V], s->h1, s->vb, dv, NULL);
            break;
        }
        st = lin_bwd(&c, b->proj[PROJ_Q], s->h1, s->qb, dq, tmp);
        if (st == ROAD_OK) st = lin_bwd(&c, b->proj[PROJ_K], s->h1, s->kb, dk, dh2);
        if (st != ROAD_OK) break;
        for (int64_t i = 0; i < R * H; i++) tmp[i] += dh2[i];
        st = lin_bwd(&c, b->proj[PROJ_V], s->h1, s->vb, dv, dh2);
        if (st != ROAD_OK) break;
        for (int64_t i = 0; i < R * H; i++) tmp[i] += dh2[i];
        rmsnorm_backward(dx, full ? road_full_grad(m, m->full->attn_norm[l]) : NULL, tmp, s->x_in,
                         b->attn_norm, R, H, cfg->rms_norm_eps);
    }
    /* dx is now d(block 0's input) = d(embedding rows): scatter-add into the trained copy or,
     * with full fine-tuning, the embedding's gradient (serial: rows repeat tokens). */
    float *egrad = embed_trains ? ecopy.dweight : full ? road_full_grad(m, m->full->embed) : NULL;
    if (st == ROAD_OK && egrad)
        for (int64_t r = 0; r < R; r++) {
            float *g = egrad + input_ids[row_b[r] * T + row_col[r]] * H;
            const float *dr = dx + r * H;
            for (int64_t i = 0; i < H; i++) g[i] += dr[i];
        }
    return st;
}
