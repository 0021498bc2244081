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

/* ---- rmsnorm ---- */

/* out[r] = weight * inp[r] / sqrt(mean(inp[r]^2) + eps), the mean taken in double, the scale
 * rounded to float (transformers' LlamaRMSNorm in float32).
 *   out (R, H), inp (R, H), weight (H) */
void rmsnorm_forward(float *out, const float *inp, const float *weight, int64_t R, int64_t H,
                     double eps);

/* With r = 1/sqrt(mean(inp^2) + eps): dinp (+=) = r * dout * weight - r^3 * inp *
 * sum(dout * weight * inp) / H, in double per element; dweight (+=) = sum over rows of
 * dout * inp * r (NULL when the weight is frozen). Nothing is saved by the forward: r is
 * recomputed from inp.
 *   dinp (R, H), dweight (H) or NULL, dout (R, H), inp (R, H), weight (H) */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, int64_t R, int64_t H, double eps);

/* ---- rope ---- */

/* The cos/sin table of each row's position: cs[r] = cos(pos[r] * inv_freq) then
 * sin(pos[r] * inv_freq), the angle rounded to float as transformers computes it in float32.
 *   cs (R, d), pos (R), inv_freq (d/2) */
void rope_table(float *cs, const int64_t *pos, const float *inv_freq, int64_t R, int64_t d);

/* Rotate-half RoPE, in place on each of the `heads` heads of every row: with a, b the two
 * halves of a head, (a, b) <- (a cos - b sin, b cos + a sin).
 *   x (R, heads x d), cs (R, d) from rope_table */
void rope_forward(float *x, const float *cs, int64_t R, int64_t heads, int64_t d);

/* The transposed rotation (angle -> -angle), in place: dx holds d(out) and becomes d(inp).
 *   dx (R, heads x d), cs (R, d) */
void rope_backward(float *dx, const float *cs, int64_t R, int64_t heads, int64_t d);

/* ---- swiglu (the gated MLP activation of llama, mistral, qwen2) ---- */

/* out = silu(gate) * up, silu(z) = z / (1 + exp(-z)) in float. out may be gate itself.
 *   out (N), gate (N), up (N); N = R x I */
void swiglu_forward(float *out, const float *gate, const float *up, int64_t N);

/* With s = sigmoid(gate): dup = dout * gate * s, dgate = dout * up * s * (1 + gate (1 - s))
 * (both written). dgate may be dout itself (each element is read before it is written).
 *   dgate (N), dup (N), dout (N), gate (N), up (N) */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int64_t N);

/* ---- cross-entropy ---- */

/* Cross-entropy of each row's logits against its target, as torch's cross_entropy computes it
 * (max-shifted log-sum-exp, in double): losses[r] = log(sum_i exp(logits[r, i])) -
 * logits[r, targets[r]]. Rows whose target is ROAD_LABEL_IGNORE are skipped (losses[r] is left
 * as it is). row_max and row_sum keep each row's max logit and sum of exp(logit - max) for the
 * backward; both NULL when no backward follows. Targets must be in [0, V) or ignored.
 *   losses (R), row_max (R), row_sum (R), logits (R, V), targets (R) */
void cross_entropy_forward(double *losses, double *row_max, double *row_sum, const float *logits,
                           const int64_t *targets, int64_t R, int64_t V);

/* Gradient of the mean loss over the n_counted rows that count:
 * dlogits[r] = (softmax(logits[r]) - onehot(targets[r])) / n_counted, 0 on ignored rows.
 * dlogits may be logits itself (each element is read before it is written).
 *   dlogits (R, V), logits (R, V), targets (R), row_max (R), row_sum (R) */
void cross_entropy_backward(float *dlogits, int64_t n_counted, const float *logits,
                            const int64_t *targets, const double *row_max, const double *row_sum,
                            int64_t R, int64_t V);

#endif
