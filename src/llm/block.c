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
    case ROAD_NORM_RMS_1P:
        road__rmsnorm1p_forward(out, inp, weight, R, H, s->norm_eps);
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
    case ROAD_NORM_RMS_1P:
        road__rmsnorm1p_backward(dinp, dweight, dout, inp, weight, R, H, s->norm_eps);
        break;
    }
}

static void act_forward(const road_layer_spec *s, float *out, const float *gate, const float *up,
                        int64_t N) {
    switch (s->act) {
    case ROAD_ACT_SILU:
        road__swiglu_forward(out, gate, up, N);
        break;
    case ROAD_ACT_GELU_TANH:
        road__geglu_forward(out, gate, up, N);
        break;
    }
}

static void act_backward(const road_layer_spec *s, float *dgate, float *dup, const float *dout,
                         const float *gate, const float *up, int64_t N) {
    switch (s->act) {
    case ROAD_ACT_SILU:
        road__swiglu_backward(dgate, dup, dout, gate, up, N);
        break;
    case ROAD_ACT_GELU_TANH:
        road__geglu_backward(dgate, dup, dout, gate, up, N);
        break;
    }
}

/* The batch's RoPE table for this spec's RoPE: one of two slots, made again only when
 * neither holds it. */
static const float *rope_cs(llm_batch *c, const road_layer_spec *s) {
    for (int i = 0; i < 2; i++)
        if (c->cs_rope[i] == s->rope) return c->cs[i];
    const int slot = c->cs_rope[0] == NULL ? 0 : 1;
    road__rope_fill(c->cs[slot], s->rope, c->row_pos, c->R, c->seq_r0, c->seq_rows, c->seq_p0,
                    c->n_seq);
    c->cs_rope[slot] = s->rope;
    return c->cs[slot];
}

/* Block l's norm n, or NULL; its weight's gradient under full fine-tuning, or NULL. */
static float *norm_grad(road_model *m, int64_t l, int n) {
    return road_model_full_training(m) ? road__full_grad(m, m->full->norm[l * N_NORM + n]) : NULL;
}

/* Columns [c0, c0 + w) of src (R, ld) into dst (R, w), or back (to_src). */
static void split_cols(float *dst, float *src, int64_t R, int64_t ld, int64_t c0, int64_t w,
                       bool to_src) {
    for (int64_t r = 0; r < R; r++) {
        if (to_src)
            memcpy(src + r * ld + c0, dst + r * w, sizeof(float) * (size_t)w);
        else
            memcpy(dst + r * w, src + r * ld + c0, sizeof(float) * (size_t)w);
    }
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
        /* no float table: the base embedding kept in 16 bits, its rows widened exactly */
        ROAD_ASSERT(st != ROAD_OK || table || m->embed_q);
        for (int64_t i = 0; st == ROAD_OK && i < c->seq_rows[s]; i++, r++)
            if (table)
                memcpy(x + r * H, table + (int64_t)c->seqs[s].tokens[i] * H,
                       sizeof(float) * (size_t)H);
            else
                st = road_qtensor_dequantize_rows(m->embed_q, c->seqs[s].tokens[i], 1, x + r * H);
    }
    const float scale = m->head_spec.embed_scale;
    if (st == ROAD_OK && scale != 1.0f)
        for (int64_t i = 0; i < c->R * H; i++) x[i] *= scale;
    return st;
}

void road__block_embed_backward(llm_batch *c, float *egrad, const float *dx) {
    const int64_t H = c->m->cfg.hidden_size;
    const float scale = c->m->head_spec.embed_scale;
    /* serial: rows repeat tokens */
    for (int64_t s = 0, r = 0; s < c->n_seq; s++)
        for (int64_t i = 0; i < c->seq_rows[s]; i++, r++) {
            float *gw = egrad + (int64_t)c->seqs[s].tokens[i] * H;
            const float *dr = dx + r * H;
            if (scale != 1.0f)
                for (int64_t k = 0; k < H; k++) gw[k] += dr[k] * scale;
            else
                for (int64_t k = 0; k < H; k++) gw[k] += dr[k];
        }
}

road_status road__head_forward(llm_batch *c, int64_t rows, const int64_t *seq_rows, const float *x,
                               float *h, float *logits, float *z_base) {
    road_model *m = c->m;
    road__block_norm_forward(&m->head_spec, h, x, m->final_norm, rows, m->cfg.hidden_size);
    road_status st = road__block_linear(c, m->lm_head, rows, seq_rows, h, logits, z_base);
    if (st == ROAD_OK && m->head_spec.final_softcap > 0.0f)
        road__softcap_forward(logits, rows * m->cfg.vocab_size, m->head_spec.final_softcap);
    return st;
}

/* ---- the block ------------------------------------------------------------------------------ */

/* Store this layer's new keys and values into each sequence's cache (rounded there to a
 * 16-bit cache's type: kv_cache.c). */
static void cache_store(llm_batch *c, int64_t layer, const float *k, const float *v) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t nkv = cfg->n_kv_heads, d = cfg->head_dim;
    for (int64_t s = 0; s < c->n_seq; s++) {
        road_kv_cache *kv = c->seqs[s].cache;
        if (!kv) continue;
        for (int64_t i = 0; i < c->seq_rows[s]; i++) {
            int64_t r = c->seq_r0[s] + i, p = c->seq_p0[s] + i;
            for (int64_t h = 0; h < nkv; h++)
                road__kv_store(kv, layer, h, p, k + (r * nkv + h) * d, v + (r * nkv + h) * d);
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
            size_t off = (size_t)(layer * nkv * kv->cap * d) * road__kv_elem_size(kv->dtype);
            a->k = (const char *)kv->k + off, a->v = (const char *)kv->v + off;
            a->head_stride = kv->cap * d, a->pos_stride = d, a->dtype = kv->dtype;
        } else {
            a->k = k + a->r0 * nkv * d, a->v = v + a->r0 * nkv * d;
            a->head_stride = d, a->pos_stride = nkv * d, a->dtype = ROAD_DTYPE_F32;
        }
    }
    return (attn_batch){c->attn,
                        c->n_seq,
                        c->row_seq,
                        c->R,
                        cfg->n_heads,
                        nkv,
                        d,
                        spec->window,
                        spec->attn_scale,
                        spec->attn_softcap,
                        c->attn_gemm_min,
                        c->attn_qblock};
}

/* q, k, v of the attention's input h (R, H): three projections or one fused qkv_proj split
 * into them; then the q/k norms (keeping their inputs in training). */
static road_status qkv_forward(llm_batch *c, const road_block *b, const float *h,
                               const block_acts *a) {
    const road_llm_config *cfg = &c->m->cfg;
    const int64_t R = c->R, d = cfg->head_dim, qd = cfg->n_heads * d, kvd = cfg->n_kv_heads * d;
    const int64_t *sr = c->seq_rows;
    road_status st;
    if (b->fused) {
        const int64_t w = qd + 2 * kvd;
        st = road__block_linear(c, b->proj[PROJ_QKV], R, sr, h, a->qkv, a->qkvb);
        if (st != ROAD_OK) return st;
        split_cols(a->q, a->qkv, R, w, 0, qd, false);
        split_cols(a->k, a->qkv, R, w, qd, kvd, false);
        split_cols(a->v, a->qkv, R, w, qd + kvd, kvd, false);
    } else {
        st = road__block_linear(c, b->proj[PROJ_Q], R, sr, h, a->q, a->qb);
        if (st == ROAD_OK) st = road__block_linear(c, b->proj[PROJ_K], R, sr, h, a->k, a->kb);
        if (st == ROAD_OK) st = road__block_linear(c, b->proj[PROJ_V], R, sr, h, a->v, a->vb);
        if (st != ROAD_OK) return st;
    }
    if (b->norm[NORM_Q]) { /* per head: rows of head_dim; else the whole projection */
        const int64_t hq = b->qk_norm_per_head ? cfg->n_heads : 1;
        const int64_t hk = b->qk_norm_per_head ? cfg->n_kv_heads : 1;
        if (a->qn) memcpy(a->qn, a->q, sizeof(float) * (size_t)(R * qd));
        if (a->kn) memcpy(a->kn, a->k, sizeof(float) * (size_t)(R * kvd));
        road__block_norm_forward(&b->spec, a->q, a->q, b->norm[NORM_Q], R * hq, qd / hq);
        road__block_norm_forward(&b->spec, a->k, a->k, b->norm[NORM_K], R * hk, kvd / hk);
    }
    return ROAD_OK;
}

/* gate and up of the MLP's input h: two projections or one fused gate_up_proj split. */
static road_status gate_up_forward(llm_batch *c, const road_block *b, const float *h,
                                   const block_acts *a) {
    const int64_t R = c->R, I = c->m->cfg.intermediate_size;
    const int64_t *sr = c->seq_rows;
    if (b->fused) {
        road_status st = road__block_linear(c, b->proj[PROJ_GATE_UP], R, sr, h, a->gu, a->gub);
        if (st != ROAD_OK) return st;
        split_cols(a->g, a->gu, R, 2 * I, 0, I, false);
        split_cols(a->u, a->gu, R, 2 * I, I, I, false);
        return ROAD_OK;
    }
    road_status st = road__block_linear(c, b->proj[PROJ_GATE], R, sr, h, a->g, a->gb);
    return st != ROAD_OK ? st : road__block_linear(c, b->proj[PROJ_UP], R, sr, h, a->u, a->ub);
}

/* x += norm(y) (the sublayer's output norm, into `normed`), or x += y. */
static void residual_add(const road_layer_spec *spec, float *x, const float *y, float *normed,
                         const float *w, int64_t R, int64_t H) {
    if (w) {
        road__block_norm_forward(spec, normed, y, w, R, H);
        y = normed;
    }
    for (int64_t i = 0; i < R * H; i++) x[i] += y[i];
}

road_status road__block_forward(llm_batch *c, int64_t l, float *x, const block_acts *a) {
    const road_model *m = c->m;
    const road_llm_config *cfg = &m->cfg;
    const road_block *b = &m->blocks[l];
    const road_layer_spec *spec = &b->spec;
    const int64_t R = c->R, H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t *sr = c->seq_rows;
    /* attention: its input is norm(x), or x itself (olmo2; read before x changes) */
    const float *h1 = x;
    if (b->norm[NORM_ATTN_IN]) {
        road__block_norm_forward(spec, a->h1, x, b->norm[NORM_ATTN_IN], R, H);
        h1 = a->h1;
    } else if (a->x_in) {
        h1 = a->x_in;
    }
    road_status st = qkv_forward(c, b, h1, a);
    if (st != ROAD_OK) return st;
    const float *cs = rope_cs(c, spec);
    road__rope_forward(a->q, cs, R, nh, d, spec->rotary_dim);
    road__rope_forward(a->k, cs, R, nkv, d, spec->rotary_dim);
    cache_store(c, l, a->k, a->v);
    attn_batch ab = attn_view(c, l, spec, a->k, a->v);
    road__attention_forward(a->att, a->q, &ab, c->scratch, c->scratch_stride);
    st = road__block_linear(c, b->proj[PROJ_O], R, sr, a->att, a->o, a->ob);
    if (st != ROAD_OK) return st;
    residual_add(spec, x, a->o, a->po, b->norm[NORM_ATTN_OUT], R, H);
    if (a->x_mid) memcpy(a->x_mid, x, sizeof(float) * (size_t)(R * H));
    /* MLP: its input is norm(x), or x itself */
    const float *h2 = x;
    if (b->norm[NORM_MLP_IN]) {
        road__block_norm_forward(spec, a->h2, x, b->norm[NORM_MLP_IN], R, H);
        h2 = a->h2;
    } else if (a->x_mid) {
        h2 = a->x_mid;
    }
    st = gate_up_forward(c, b, h2, a);
    if (st != ROAD_OK) return st;
    act_forward(spec, a->a, a->g, a->u, R * I);
    st = road__block_linear(c, b->proj[PROJ_DOWN], R, sr, a->a, a->dn, a->db);
    if (st != ROAD_OK) return st;
    residual_add(spec, x, a->dn, a->pdn, b->norm[NORM_MLP_OUT], R, H);
    return ROAD_OK;
}

/* The gradient of a sublayer's output y from d(x) (residual): through its output norm
 * (into g->dpost) when it has one, else dx itself. */
static const float *residual_backward(llm_batch *c, int64_t l, int n, const float *dx,
                                      const float *y, const block_grads *g) {
    const road_block *b = &c->m->blocks[l];
    if (!b->norm[n]) return dx;
    const int64_t R = c->R, H = c->m->cfg.hidden_size;
    memset(g->dpost, 0, sizeof(float) * (size_t)(R * H));
    road__block_norm_backward(&b->spec, g->dpost, norm_grad(c->m, l, n), dx, y, b->norm[n], R, H);
    return g->dpost;
}

/* d(sublayer input) dh into d(x): through the input norm (inp its input) or added as is. */
static void input_backward(llm_batch *c, int64_t l, int n, float *dx, const float *dh,
                           const float *inp) {
    const road_block *b = &c->m->blocks[l];
    const int64_t R = c->R, H = c->m->cfg.hidden_size;
    if (b->norm[n])
        road__block_norm_backward(&b->spec, dx, norm_grad(c->m, l, n), dh, inp, b->norm[n], R, H);
    else
        for (int64_t i = 0; i < R * H; i++) dx[i] += dh[i];
}

road_status road__block_backward(llm_batch *c, int64_t l, float *dx, const block_acts *a,
                                 const block_grads *g, bool need_dx) {
    road_model *m = c->m;
    const road_llm_config *cfg = &m->cfg;
    const road_block *b = &m->blocks[l];
    const road_layer_spec *spec = &b->spec;
    const int64_t R = c->R, H = cfg->hidden_size, I = cfg->intermediate_size;
    const int64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, d = cfg->head_dim;
    const int64_t qd = nh * d, kvd = nkv * d;
    float *dh = g->dh, *dh2 = g->dh2;
    const float *h2 = b->norm[NORM_MLP_IN] ? a->h2 : a->x_mid;
    const float *h1 = b->norm[NORM_ATTN_IN] ? a->h1 : a->x_in;
    /* MLP: x_out = x_mid + post(down(act(gate(h2)) * up(h2))), h2 = norm(x_mid) */
    const float *ddn = residual_backward(c, l, NORM_MLP_OUT, dx, a->dn, g);
    road_status st = road__block_linear_backward(c, b->proj[PROJ_DOWN], R, a->a, a->db, ddn, g->dg);
    if (st != ROAD_OK) return st; /* g->dg = d(a) for now */
    act_backward(spec, g->dg, g->du, g->dg, a->g, a->u, R * I);
    if (b->fused) {
        split_cols(g->dg, g->dgu, R, 2 * I, 0, I, true);
        split_cols(g->du, g->dgu, R, 2 * I, I, I, true);
        st = road__block_linear_backward(c, b->proj[PROJ_GATE_UP], R, h2, a->gub, g->dgu, dh);
        if (st != ROAD_OK) return st;
    } else {
        st = road__block_linear_backward(c, b->proj[PROJ_GATE], R, h2, a->gb, g->dg, dh);
        if (st == ROAD_OK)
            st = road__block_linear_backward(c, b->proj[PROJ_UP], R, h2, a->ub, g->du, dh2);
        if (st != ROAD_OK) return st;
        for (int64_t i = 0; i < R * H; i++) dh[i] += dh2[i];
    }
    input_backward(c, l, NORM_MLP_IN, dx, dh, a->x_mid);
    /* attention: x_mid = x_in + post(o(attn(rope(qn(q(h1))), rope(kn(k(h1))), v(h1)))) */
    const float *dout = residual_backward(c, l, NORM_ATTN_OUT, dx, a->o, g);
    st = road__block_linear_backward(c, b->proj[PROJ_O], R, a->att, a->ob, dout, g->datt);
    if (st != ROAD_OK) return st;
    attn_batch ab = attn_view(c, l, spec, a->k, a->v);
    road__attention_backward(g->dq, g->dk, g->dv, g->datt, a->q, a->k, a->v, &ab, c->scratch,
                             c->scratch_stride);
    const float *cs = rope_cs(c, spec);
    road__rope_backward(g->dq, cs, R, nh, d, spec->rotary_dim);
    road__rope_backward(g->dk, cs, R, nkv, d, spec->rotary_dim);
    const float *dq = g->dq, *dk = g->dk;
    if (b->norm[NORM_Q]) {
        const int64_t hq = b->qk_norm_per_head ? nh : 1, hk = b->qk_norm_per_head ? nkv : 1;
        memset(g->dqn, 0, sizeof(float) * (size_t)(R * qd));
        memset(g->dkn, 0, sizeof(float) * (size_t)(R * kvd));
        road__block_norm_backward(spec, g->dqn, norm_grad(m, l, NORM_Q), g->dq, a->qn,
                                  b->norm[NORM_Q], R * hq, qd / hq);
        road__block_norm_backward(spec, g->dkn, norm_grad(m, l, NORM_K), g->dk, a->kn,
                                  b->norm[NORM_K], R * hk, kvd / hk);
        dq = g->dqn, dk = g->dkn;
    }
    /* need_dx false: the adapters' gradients only (no dY W GEMMs, no norm backward) */
    float *dqx = need_dx ? dh : NULL;
    if (b->fused) {
        const int64_t w = qd + 2 * kvd;
        split_cols((float *)dq, g->dqkv, R, w, 0, qd, true);
        split_cols((float *)dk, g->dqkv, R, w, qd, kvd, true);
        split_cols(g->dv, g->dqkv, R, w, qd + kvd, kvd, true);
        st = road__block_linear_backward(c, b->proj[PROJ_QKV], R, h1, a->qkvb, g->dqkv, dqx);
        if (st != ROAD_OK || !need_dx) return st;
    } else {
        st = road__block_linear_backward(c, b->proj[PROJ_Q], R, h1, a->qb, dq, dqx);
        if (st == ROAD_OK)
            st = road__block_linear_backward(c, b->proj[PROJ_K], R, h1, a->kb, dk,
                                             need_dx ? dh2 : NULL);
        if (st != ROAD_OK) return st;
        if (need_dx)
            for (int64_t i = 0; i < R * H; i++) dh[i] += dh2[i];
        st = road__block_linear_backward(c, b->proj[PROJ_V], R, h1, a->vb, g->dv,
                                         need_dx ? dh2 : NULL);
        if (st != ROAD_OK || !need_dx) return st;
        for (int64_t i = 0; i < R * H; i++) dh[i] += dh2[i];
    }
    input_backward(c, l, NORM_ATTN_IN, dx, dh, a->x_in);
    return ROAD_OK;
}
