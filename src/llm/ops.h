/*
 * llm/ops.h - the model's ops, each forward beside its backward (private to llm/).
 *
 * Written as llm.c's train_gpt2.c writes its layers: `<op>_forward(outputs, saved, inputs,
 * sizes)` then `<op>_backward(input gradients, output gradient, inputs, saved, sizes)`, the
 * arguments mirrored, every pointer's shape in a comment. Parameter gradients accumulate (+=);
 * activation gradients accumulate where the op's input feeds a residual (rmsnorm) and are
 * written otherwise, as each contract says.
 *
 * Legend: R rows, H hidden, I intermediate, V vocab, heads the heads of a (R, heads x d) row,
 * d head_dim.
 */
#ifndef ROAD_LLM_OPS_H
#define ROAD_LLM_OPS_H

#include <stdint.h>

#include "road/core.h"

/* ---- rmsnorm ---- */

/* out[r] = weight * inp[r] / sqrt(mean(inp[r]^2) + eps), the mean taken in double, the scale
 * rounded to float (transformers' LlamaRMSNorm in float32).
 *   out (R, H), inp (R, H), weight (H) */
void road__rmsnorm_forward(float *out, const float *inp, const float *weight, int64_t R, int64_t H,
                           double eps);

/* With r = 1/sqrt(mean(inp^2) + eps): dinp (+=) = r * dout * weight - r^3 * inp *
 * sum(dout * weight * inp) / H, in double per element; dweight (+=) = sum over rows of
 * dout * inp * r (NULL when the weight is frozen). Nothing is saved by the forward: r is
 * recomputed from inp.
 *   dinp (R, H), dweight (H) or NULL, dout (R, H), inp (R, H), weight (H) */
void road__rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int64_t R, int64_t H, double eps);

/* Gemma's RMSNorm: the same with (1 + weight) in place of weight (the checkpoint stores w near
 * 0). Mirrored arguments; dweight gets the same sum as rmsnorm's.
 *   out, inp (R, H), weight (H) */
void road__rmsnorm1p_forward(float *out, const float *inp, const float *weight, int64_t R,
                             int64_t H, double eps);
void road__rmsnorm1p_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, int64_t R, int64_t H, double eps);

/* ---- rope ---- */

/* The cos/sin table of each row's position over the rot rotary dims: cs[r] = cos(pos[r] *
 * inv_freq) then sin(pos[r] * inv_freq), the angle rounded to float as transformers computes
 * it in float32.
 *   cs (R, rot), pos (R), inv_freq (rot/2) */
void road__rope_table(float *cs, const int64_t *pos, const float *inv_freq, int64_t R, int64_t rot);

/* Rotate-half RoPE, in place on each of the `heads` heads (d dims each) of every row, over the
 * first rot dims (rot = d but for partial rotary, phi3): with a, b the two halves of those
 * dims, (a, b) <- (a cos - b sin, b cos + a sin); dims rot..d-1 pass unchanged.
 *   x (R, heads x d), cs (R, rot) from rope_table */
void road__rope_forward(float *x, const float *cs, int64_t R, int64_t heads, int64_t d,
                        int64_t rot);

/* The transposed rotation (angle -> -angle), in place: dx holds d(out) and becomes d(inp).
 *   dx (R, heads x d), cs (R, rot) */
void road__rope_backward(float *dx, const float *cs, int64_t R, int64_t heads, int64_t d,
                         int64_t rot);

/* ---- swiglu (the gated MLP activation of llama, mistral, qwen2) ---- */

/* out = silu(gate) * up, silu(z) = z / (1 + exp(-z)) in float. out may be gate itself.
 *   out (N), gate (N), up (N); N = R x I */
void road__swiglu_forward(float *out, const float *gate, const float *up, int64_t N);

/* With s = sigmoid(gate): dup = dout * gate * s, dgate = dout * up * s * (1 + gate (1 - s))
 * (both written). dgate may be dout itself (each element is read before it is written).
 *   dgate (N), dup (N), dout (N), gate (N), up (N) */
void road__swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t N);

/* ---- geglu (gemma's gated MLP activation) ---- */

/* out = gelu_tanh(gate) * up, gelu_tanh(z) = 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))
 * (torch's approximate="tanh"), computed in float as z sigmoid(2 sqrt(2/pi) (z + 0.044715 z^3)),
 * the same function. out may be gate itself.
 *   out (N), gate (N), up (N) */
void road__geglu_forward(float *out, const float *gate, const float *up, int64_t N);

/* dup = dout * gelu_tanh(gate), dgate = dout * up * gelu_tanh'(gate) (both written); dgate
 * may be dout itself.
 *   dgate (N), dup (N), dout (N), gate (N), up (N) */
void road__geglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t N);

/* ---- softcap (gemma2's logit cap) ---- */

/* x <- cap tanh(x / cap), in place.   x (N) */
void road__softcap_forward(float *x, int64_t N, float cap);
/* dx *= 1 - (y / cap)^2, y the capped values softcap_forward wrote.   dx (N), y (N) */
void road__softcap_backward(float *dx, const float *y, int64_t N, float cap);

/* ---- attention (causal, grouped-query, optional sliding window) ---- */

/* One sequence of a ragged batch: its rows r0..r0+n-1 of q and att are positions p0..p0+n-1,
 * and the row at position p attends to the keys at positions lo(p)..p, lo(p) = 0 or, with a
 * window W, max(0, p - W + 1). Keys and values of every position 0..p0+n-1 are read through
 * k and v (position 0, kv head 0) with the strides given, in elements of type dtype: a KV
 * cache's (L, nkv, cap, d) layout (head_stride cap x d, pos_stride d) or the batch's own
 * (R, nkv x d) float32 rows (head_stride d, pos_stride nkv x d). dtype is ROAD_DTYPE_F32
 * (the batch's rows: training; a float32 cache) or ROAD_DTYPE_BF16 / _F16 (a 16-bit cache,
 * widened to float32 as it is read: kv_read.h). */
typedef struct attn_seq {
    int64_t r0, n, p0;
    const void *k, *v;
    int64_t head_stride, pos_stride;
    road_dtype dtype;
} attn_seq;

/* The batch: its sequences, the sequence of every row, the heads and the logit scale. Query
 * head hq reads kv head hq / (nh / nkv). Sequences of at least gemm_min new rows run as GEMMs
 * over blocks of qblock queries (S = scale Q K^T, masked softmax, O = P V), each block against
 * the keys up to its last query; shorter ones (decode) take per-row loops. Inference uses
 * blocks of ATTN_QBLOCK, which bound the scratch per thread whatever the prompt length;
 * training uses one block per sequence (qblock >= its longest) and gemm_min 1, so the forward
 * computes P exactly as road__attention_backward recomputes it. */
typedef struct attn_batch {
    const attn_seq *seqs;
    int64_t n_seq;
    const int64_t *row_seq; /* (R) */
    int64_t R, nh, nkv, d, window;
    float scale;
    float softcap; /* > 0: logits s become softcap tanh(s / softcap) before the mask (gemma2) */
    int64_t gemm_min, qblock;
} attn_batch;

#define ATTN_QBLOCK 64

/* Scratch floats one thread needs for keys 0..max_keys-1 in blocks of qblock queries
 * (road__attention_forward): the scores of one block, min(qblock, max_keys) x max_keys, plus,
 * when a sequence reads a 16-bit cache (widen_d = d; else 0), one head's keys or values
 * widened to float32 for the GEMMs, max_keys x d. Linear in the context either way: a prompt
 * of n tokens never needs an n x n array. */
int64_t road__attention_scratch(int64_t qblock, int64_t max_keys, int64_t widen_d);

/* att[r, hq] = sum_t softmax_t(scale q[r, hq] . k[t, hk]) v[t, hk] over the row's keys, the
 * softmax max-shifted in float with its sum in double. The per-row path reads keys and values
 * through kv_read.h's readers (AVX2 where the CPU has it: 8-lane FMA sums, the same order for
 * every cache type); the GEMM path through road__sgemm, a 16-bit cache's head widened first.
 * scratch holds road__attention_scratch floats per thread, scratch_stride apart
 * (>= road__attention_scratch(qblock, max_keys, widen_d)).
 *   att (R, nh x d), q (R, nh x d), keys and values as a->seqs say */
void road__attention_forward(float *att, const float *q, const attn_batch *a, float *scratch,
                             int64_t scratch_stride);

/* Backward of road__attention_forward for sequences whose keys are their own rows (p0 = 0, k and v
 * the batch's (R, nkv x d) rows), recomputing each head's probabilities P as the forward's
 * GEMM path does (train with gemm_min 1 so the forward took it for every sequence): with
 * dP = dO V^T and dS = P (dP - rowsum(P dP)), dq = scale dS K (written), dk = scale dS^T Q and
 * dv = P^T dO (written: summed over the kv head's query heads). One work item per (sequence,
 * kv head), so no two threads write the same rows. scratch: 2 n x n floats per thread for the
 * longest sequence n (3 n x n with a softcap: the capped logits too), scratch_stride apart.
 *   dq (R, nh x d), dk, dv (R, nkv x d), datt (R, nh x d), q (R, nh x d), k, v (R, nkv x d) */
void road__attention_backward(float *dq, float *dk, float *dv, const float *datt, const float *q,
                              const float *k, const float *v, const attn_batch *a, float *scratch,
                              int64_t scratch_stride);

/* ---- cross-entropy ---- */

/* Cross-entropy of each row's logits against its target, as torch's cross_entropy computes it
 * (max-shifted log-sum-exp, in double): losses[r] = log(sum_i exp(logits[r, i])) -
 * logits[r, targets[r]]. Rows whose target is ROAD_LABEL_IGNORE are skipped (losses[r] is left
 * as it is). row_max and row_sum keep each row's max logit and sum of exp(logit - max) for the
 * backward; both NULL when no backward follows. Targets must be in [0, V) or ignored.
 *   losses (R), row_max (R), row_sum (R), logits (R, V), targets (R) */
void road__cross_entropy_forward(double *losses, double *row_max, double *row_sum,
                                 const float *logits, const int64_t *targets, int64_t R, int64_t V);

/* Gradient of the mean loss over the n_counted rows that count:
 * dlogits[r] = (softmax(logits[r]) - onehot(targets[r])) / n_counted, 0 on ignored rows.
 * dlogits may be logits itself (each element is read before it is written).
 *   dlogits (R, V), logits (R, V), targets (R), row_max (R), row_sum (R) */
void road__cross_entropy_backward(float *dlogits, int64_t n_counted, const float *logits,
                                  const int64_t *targets, const double *row_max,
                                  const double *row_sum, int64_t R, int64_t V);

#endif
