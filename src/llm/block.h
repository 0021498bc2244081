/*
 * llm/block.h - one decoder block, forward and backward, for inference and training alike
 * (private to llm/).
 *
 * forward.c (inference: road_model_forward) and grad.c (training: road_model_loss_backward)
 * both describe their ragged batch as an llm_batch and run every layer through
 * road__block_forward; training's backward walks the same block in reverse with
 * road__block_backward. What a layer computes (its norm, activation, attention options, RoPE) is
 * read from its road_layer_spec (model_internal.h), never tested by family name here.
 *
 * Legend: R rows (new tokens of the batch), H hidden, I intermediate, V vocab, nh/nkv heads,
 * d head_dim, qd = nh x d, kvd = nkv x d.
 */
#ifndef ROAD_LLM_BLOCK_H
#define ROAD_LLM_BLOCK_H

#include "llm/model_internal.h"
#include "llm/ops.h"

/* A ragged batch as the blocks run it. */
typedef struct llm_batch {
    road_model *m;
    const road_seq *seqs;
    int64_t n_seq, R;
    road_batch_plan *plan;       /* a mixed batch (each sequence names its adapter), else NULL */
    int64_t *seq_rows;           /* (n_seq) new rows of each sequence */
    int64_t *seq_r0;             /* (n_seq) its first row */
    int64_t *seq_p0;             /* (n_seq) the position of its first new row */
    int64_t *row_seq;            /* (R) the sequence of each row */
    int64_t *row_pos;            /* (R) the position of each row */
    float *cs[2];                /* (R, rotary_dim) RoPE tables of the rows' positions, */
    const road_rope *cs_rope[2]; /* for these RoPEs (NULL: not made yet); two, so layers
                                    that alternate RoPE bases (gemma3) make each once */
    attn_seq *attn;              /* (n_seq) attention's view of the sequences, per layer */
    int64_t attn_gemm_min;       /* attn_batch.gemm_min and qblock (ops.h): inference 8 and */
    int64_t attn_qblock;         /* ATTN_QBLOCK; training 1 and its longest sequence */
    float *scratch;              /* attention scratch, scratch_stride floats per thread */
    int64_t scratch_stride;
} llm_batch;

/* Where one block's activations go. Training gives every one its own array (backward reads
 * them) and keeps the pre-adapter outputs (qb .. db: what the RoAd backward differentiates
 * from). Inference keeps nothing: x_in, x_mid, the pre-adapter outputs and the pre-norm copies
 * are NULL, and the (R, H) outputs share arrays (see forward.c). Arrays a block does not use
 * (fused ones without fused projections, post-norm outputs without post norms) may be NULL. */
typedef struct block_acts {
    float *x_in;            /* (R, H) the block's input */
    float *h1;              /* (R, H) attention norm of x_in (the attention's input) */
    float *qb, *kb, *vb;    /* (R, qd), (R, kvd), (R, kvd) before the adapters */
    float *qkvb, *qkv;      /* (R, qd + 2 kvd) a fused qkv_proj's output before / after them */
    float *q, *k, *v;       /* after the adapters; q and k then normed (q/k norm) and rotated */
    float *qn, *kn;         /* (R, qd), (R, kvd) q and k before their norms (training) */
    float *att;             /* (R, qd) attention output */
    float *ob, *o;          /* (R, H) o_proj output before / after the adapters */
    float *po;              /* (R, H) o after the attention's output norm (may be o) */
    float *x_mid;           /* (R, H) the residual after attention */
    float *h2;              /* (R, H) MLP norm of x_mid (the MLP's input) */
    float *gb, *ub, *g, *u; /* (R, I) gate and up before / after the adapters */
    float *gub, *gu;        /* (R, 2 I) a fused gate_up_proj's output before / after them */
    float *a;               /* (R, I) act(g) * u */
    float *db, *dn;         /* (R, H) down_proj output before / after the adapters */
    float *pdn;             /* (R, H) dn after the MLP's output norm (may be dn) */
} block_acts;

/* Working arrays of block_backward (each distinct from the acts; the last five only for the
 * blocks that need them: post norms, q/k norms, fused projections). */
typedef struct block_grads {
    float *dh, *dh2;  /* (R, H) */
    float *datt, *dq; /* (R, qd) */
    float *dk, *dv;   /* (R, kvd) */
    float *dg, *du;   /* (R, I) */
    float *dpost;     /* (R, H) */
    float *dqn, *dkn; /* (R, qd), (R, kvd) */
    float *dqkv;      /* (R, qd + 2 kvd) */
    float *dgu;       /* (R, 2 I) */
} block_grads;

/* y (rows, out) = linear layer `layer` of x (rows, in) with the model's adapter state, or
 * each sequence's adapter in a mixed batch (seq_rows[s] rows each). y_base (training): also
 * keep the pre-adapter output there. */
road_status road__block_linear(llm_batch *c, int32_t layer, int64_t rows, const int64_t *seq_rows,
                               const float *x, float *y, float *y_base);

/* x (R, H) = each row's token embedding: its sequence's table (the adapter's modules_to_save
 * copy of embed_tokens, if any, else the model's). */
road_status road__block_embed(llm_batch *c, float *x);

/* One decoder block on the residual x (R, H), in place, its activations where `a` says.
 * Stores layer l's keys and values into the sequences' KV caches (those that have one). */
road_status road__block_forward(llm_batch *c, int64_t l, float *x, const block_acts *a);

/* Backward of road__block_forward from dx = d(block output) (R, H), which becomes d(block input)
 * (accumulated through the residuals). Adapter gradients (and full fine-tuning's weight and
 * norm gradients) accumulate. need_dx false: nothing needs d(block input) (block 0 under a
 * frozen embedding), so the q/k/v backward stops at the adapters and dx is left partial. */
road_status road__block_backward(llm_batch *c, int64_t l, float *dx, const block_acts *a,
                                 const block_grads *g, bool need_dx);

/* Backward of road__block_linear for one layer: dx (rows, in) = d(input), NULL to skip; adapter
 * gradients, an active modules_to_save copy's dW and db, and with full fine-tuning the layer's
 * own weight and bias gradients accumulate. */
road_status road__block_linear_backward(llm_batch *c, int32_t layer, int64_t rows, const float *x,
                                        const float *y_base, const float *dy, float *dx);

/* The model's final norm of x (rows, H) into h, then lm_head into logits (rows, V); seq_rows
 * as road__block_linear's. z_base (training): keep lm_head's pre-adapter output. */
road_status road__head_forward(llm_batch *c, int64_t rows, const int64_t *seq_rows, const float *x,
                               float *h, float *logits, float *z_base);

/* d(embedding rows) for the rows' tokens: egrad[token] += dx[row] * the embedding scale. */
void road__block_embed_backward(llm_batch *c, float *egrad, const float *dx);

/* The norm a layer spec names, forward and backward (dweight NULL: frozen). */
void road__block_norm_forward(const road_layer_spec *s, float *out, const float *inp,
                              const float *weight, int64_t R, int64_t H);
void road__block_norm_backward(const road_layer_spec *s, float *dinp, float *dweight,
                               const float *dout, const float *inp, const float *weight, int64_t R,
                               int64_t H);

#endif
