/*
 * llm/block.c - one decoder block, forward and backward (see block.h), and the pieces around
 * it that inference and training share: the linear layers with their adapters, the token
 * embedding and the head.
 *
 * A llama-family block on the residual x:
 *   h1 = norm(x);  q, k, v = q_proj(h1), k_proj(h1), v_proj(h1);  q, k = rope(q), rope(k)
 *   x += o_proj(attention(q, k, v))
 *   h2 = norm(x);  x += down_proj(act(gate_proj(h2)) * up_proj(h2))
 * Every linear layer runs its base GEMM then the active RoAd rotations (or, in a mixed batch,
 * each sequence's own). The norm, the activation and attention's options come from the layer's
 * road_layer_spec.
 *
 * Backward (training) mirrors it from the activations the forward kept. Only adapter
 * parameters learn, usually, so a linear layer's backward is its input gradient dY W plus the
 * element-wise RoAd chain rule (road_adapter_set_backward, from the layer's pre-adapter output);
 * no weight-gradient GEMM runs for base weights. Layers with an active modules_to_save copy
 * get dW += dY^T X; with full fine-tuning (full.c) every weight, bias and norm learns.
 *
 * Legend: R rows, H hidden, I intermediate, V vocab, nh/nkv heads, d head_dim, qd = nh x d,
 * kvd = nkv x d.
 */
#include <math.h>
#include <string.h>

#include "core/blas.h"
#include "core/error.h"
#include "llm/block.h"

/* ---- the layer spec's dispatch -------------------------------------------------------------- */

void road__block_norm_forward(const road_layer_spec *s, float *out, const float *inp,
                              const float *weight, int64_t R, int64_t H) {
    switch (s->norm) {
    case ROAD_NORM_RMS:
        road__rmsnorm_forward(out, inp, weight, R, H, s->norm_eps);
        break;
    }
}

void road__block_norm_backward(const road_layer_spec *s, float *dinp, float *dweight,
                               const float *dout, const float *inp, const float *weight, int64_t R,
                               int64_t H) {
    switch (s->norm) {
    case ROAD_NORM_RMS:
        road__rmsnorm_backward(dinp, dweight, dout, inp, weight, R, H, s->norm_eps);
        break;
    }
}

static void act_forward(const road_layer_spec *s, float *out, const float *gate, const float *up,
                        int64_t N) {
    switch (s->act) {
    case ROAD_ACT_SILU:
        road__swiglu_forward(out, gate, up, N);
        break;
    }
}

static void act_backward(const road_layer_spec *s, float *dgate, float *dup, const float *dout,
                         const float *gate, const float *up, int64_t N) {
    switch (s->act) {
    case ROAD_ACT_SILU:
        road__swiglu_backward(dgate, dup, dout, gate, up, N);
        break;
    }
}

/* The batch's RoPE table for this spec's frequencies (made again only when they change). */
static const float *rope_cs(llm_batch *c, const road_layer_spec *s) {
    if (c->cs_freq != s->inv_freq) {
        road__rope_table(c->cs, c->row_pos, s->inv_freq, c->R, c->m->cfg.head_dim);
        c->cs_freq = s->inv_freq;
    }
    return c->cs;
}

/* ---- linear layers, embedding, head ------------------------------------------------------- */

road_status road__block_linear(llm_batch *c, int32_t layer, int64_t rows, const int64_t *seq_rows,
                               const float *x, float *y, float *y_base) {
    road_adapter_set *set = c->m->set;
    if (!y_base) {
        if (c->plan) return road_adapter_set_forward_mixed(set, c->plan, layer, 0, seq_rows, x, y);
        return road_adapter_set_forward(set, layer, rows, x, y);
    }
    /* the copy, the float base or the quantized base (dequantized tiles + sgemm) */
    road_status st = road_adapter_set_base_forward(set, layer, rows, x, y_base);
    if (st != ROAD_OK) return st;
    const int64_t out = road_linear_out_features(road_adapter_set_layer(set, layer));
    memcpy(y, y_base, sizeof(float) * (size_t)(rows * out));
    if (c->plan) return road_adapter_set_apply_mixed(set, c->plan, layer, 0, seq_rows, y);
    return road_adapter_set_apply(set, layer, rows, y);
}

road_status road__block_linear_backward(llm_batch *c, int32_t layer, int64_t rows, const float *x,
                                        const float *y_base, const float *dy, float *dx) {
    road_model *m = c->m;
    road_status st = road_adapter_set_backward(m->set, layer, rows, x, y_base, dy, dx);
    if (st != ROAD_OK || !road_model_full_training(m)) return st;
    /* Full fine-tuning (no adapter active, so dy is the base output's gradient):
     * dW (out, in) += dy^T x, db += column sums of dy. */
    road_full *f = m->full;
    float *dw = road__full_grad(m, f->lin_w[layer]), *db = road__full_grad(m, f->lin_b[layer]);
    road_linear *l = road_adapter_set_layer(m->set, layer);
    const int64_t out = road_linear_out_features(l), in = road_linear_in_features(l);
    if (dw) road__sgemm(true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < out; i++) db[i] += dy[r * out + i];
    return ROAD_OK;
}

road_status road__block_embed(llm_batch *c, float *x) {
    road_model *m = c->m;
    const int64_t H = m->cfg.hidden_size;
    road_status st = ROAD_OK;
    for (int64_t s = 0, r = 0; s < c->n_seq && st == ROAD_OK; s++) {
        const float *table = NULL;
        st = c->plan ? road_adapter_set_plan_layer_weight(m->set, c->plan, m->embed_layer, s,
                                                          &table, NULL)
                     : road_adapter_set_layer_weight(m->set, m->embed_layer, &table, NULL);
        for (int64_t i = 0; st == ROAD_OK && i < c->seq_rows[s]; i++, r++)
            memcpy(x + r * H, table + (int64_t)c->seqs[s].tokens[i] * H, sizeof(float) * (size_t)H);
    }
    return st;
}

road_status road__head_forward(llm_batch *c, int64_t rows, const int64_t *seq_rows, const float *x,
                               float *h, float *logits, float *z_base) {
    road_model *m = c->m;
    road__block_norm_forward(&m->head_spec, h, x, m->final_norm, rows, m->cfg.hidden_size);
    return road__block_linear(c, m->lm_head, rows, seq_rows, h, logits, z_base);
}

/* ---- the block ------------------------------------------------------------------------------ */

/* Store this layer's new keys and values into each sequence's cache. */
static void cache_store(llm_batch *c, int64_t layer, const float *k, const float *v) {
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

/* Attention's view of layer l: each sequence's keys from its cache (new ones stored already),
 * or, without one, from this batch's rows k, v (R, kvd). */
static attn_batch attn_view(llm_batch *c, int64_t layer, const road_layer_spec *spec,
                            const float *k, const float *v) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nkv = cfg->n_kv_heads, d = cfg->head_dim;
    for (int64_t s = 0; s < c->n_seq; s++) {
        const road_kv_cache *kv = c->seqs[s].cache;
        attn_seq *a = &c->attn[s];
        a->r0 = c->seq_r0[s], a->n = c->seq_rows[s], a->p0 = c->seq_p0[s];
        if (kv) {
            size_t off = (size_t)(layer * nkv * kv->cap * d);
            a->k = kv->k + off, a->v = kv->v + off, a->head_stride = kv->cap * d, a->pos_stride = d;
        } else {
            a->k = k + a->r0 * nkv * d, a->v = v + a->r0 * nkv * d;
            a->head_stride = d, a->pos_stride = nkv * d;
        }
    }
    return (attn_batch){c->attn, c->n_seq, c->row_seq, c->R, cfg->n_heads, nkv, d,
                        spec->window, spec->attn_scale, c->attn_gemm_min, c->attn_qblock};
}

road_status road__block_forward(llm_batch *c, int64_t l, float *x, const block_acts *a) {
    const road_model *m = c->m;
    const road_llm_config *cfg = &m->cfg;
    const road_block *b = &m->blocks[l];
    const road_layer_spec *spec = &b->spec;
    const int64_t R = c->R, H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t *sr = c->seq_rows;
    road__block_norm_forward(spec, a->h1, x, b->attn_norm, R, H);
    road_status st = road__block_linear(c, b->proj[PROJ_Q], R, sr, a->h1, a->q, a->qb);
    if (st == ROAD_OK) st = road__block_linear(c, b->proj[PROJ_K], R, sr, a->h1, a->k, a->kb);
    if (st == ROAD_OK) st = road__block_linear(c, b->proj[PROJ_V], R, sr, a->h1, a->v, a->vb);
    if (st != ROAD_OK) return st;
    const float *cs = rope_cs(c, spec);
    road__rope_forward(a->q, cs, R, nh, d);
    road__rope_forward(a->k, cs, R, nkv, d);
    cache_store(c, l, a->k, a->v);
    attn_batch ab = attn_view(c, l, spec, a->k, a->v);
    road__attention_forward(a->att, a->q, &ab, c->scratch, c->scratch_stride);
    st = road__block_linear(c, b->proj[PROJ_O], R, sr, a->att, a->o, a->ob);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) x[i] += a->o[i];
    if (a->x_mid) memcpy(a->x_mid, x, sizeof(float) * (size_t)(R * H));
    road__block_norm_forward(spec, a->h2, x, b->mlp_norm, R, H);
    st = road__block_linear(c, b->proj[PROJ_GATE], R, sr, a->h2, a->g, a->gb);
    if (st == ROAD_OK) st = road__block_linear(c, b->proj[PROJ_UP], R, sr, a->h2, a->u, a->ub);
    if (st != ROAD_OK) return st;
    act_forward(spec, a->a, a->g, a->u, R * I);
    st = road__block_linear(c, b->proj[PROJ_DOWN], R, sr, a->a, a->dn, a->db);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) x[i] += a->dn[i];
    return ROAD_OK;
}

road_status road__block_backward(llm_batch *c, int64_t l, float *dx, const block_acts *a,
                                 const block_grads *g, bool need_dx) {
    road_model *m = c->m;
    const road_llm_config *cfg = &m->cfg;
    const road_block *b = &m->blocks[l];
    const road_layer_spec *spec = &b->spec;
    const int64_t R = c->R, H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const bool full = road_model_full_training(m);
    float *dh = g->dh, *dh2 = g->dh2;
    /* MLP: x_out = x_mid + down(act(gate(h2)) * up(h2)), h2 = norm(x_mid) */
    road_status st = road__block_linear_backward(c, b->proj[PROJ_DOWN], R, a->a, a->db, dx, g->dg);
    if (st != ROAD_OK) return st; /* g->dg = d(a) for now */
    act_backward(spec, g->dg, g->du, g->dg, a->g, a->u, R * I);
    st = road__block_linear_backward(c, b->proj[PROJ_GATE], R, a->h2, a->gb, g->dg, dh);
    if (st == ROAD_OK)
        st = road__block_linear_backward(c, b->proj[PROJ_UP], R, a->h2, a->ub, g->du, dh2);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) dh[i] += dh2[i];
    road__block_norm_backward(spec, dx, full ? road__full_grad(m, m->full->mlp_norm[l]) : NULL, dh,
                              a->x_mid, b->mlp_norm, R, H);
    /* attention: x_mid = x_in + o(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = norm(x_in) */
    st = road__block_linear_backward(c, b->proj[PROJ_O], R, a->att, a->ob, dx, g->datt);
    if (st != ROAD_OK) return st;
    attn_batch ab = attn_view(c, l, spec, a->k, a->v);
    road__attention_backward(g->dq, g->dk, g->dv, g->datt, a->q, a->k, a->v, &ab, c->scratch,
                             c->scratch_stride);
    const float *cs = rope_cs(c, spec);
    road__rope_backward(g->dq, cs, R, nh, d);
    road__rope_backward(g->dk, cs, R, nkv, d);
    if (!need_dx) { /* the adapters' gradients only: no dY W GEMMs, no norm backward */
        st = road__block_linear_backward(c, b->proj[PROJ_Q], R, a->h1, a->qb, g->dq, NULL);
        if (st == ROAD_OK)
            st = road__block_linear_backward(c, b->proj[PROJ_K], R, a->h1, a->kb, g->dk, NULL);
        if (st == ROAD_OK)
            st = road__block_linear_backward(c, b->proj[PROJ_V], R, a->h1, a->vb, g->dv, NULL);
        return st;
    }
    st = road__block_linear_backward(c, b->proj[PROJ_Q], R, a->h1, a->qb, g->dq, dh);
    if (st == ROAD_OK)
        st = road__block_linear_backward(c, b->proj[PROJ_K], R, a->h1, a->kb, g->dk, dh2);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) dh[i] += dh2[i];
    st = road__block_linear_backward(c, b->proj[PROJ_V], R, a->h1, a->vb, g->dv, dh2);
    if (st != ROAD_OK) return st;
    for (int64_t i = 0; i < R * H; i++) dh[i] += dh2[i];
    road__block_norm_backward(spec, dx, full ? road__full_grad(m, m->full->attn_norm[l]) : NULL, dh,
                              a->x_in, b->attn_norm, R, H);
    return ROAD_OK;
}
