/*
 * llm/ops.h - the model's ops, each forward beside its backward (private to llm/).
 *
 * Written as llm.c's train_gpt2.c writes its layers: `<op>_forward(outputs, saved, inputs,
 * sizes)` then `<op>_backward(input gradients, output gradient, inputs, saved, sizes)`, the
 * arguments mirrored, every pointer's shape in a comment. Legend: R rows, V vocab.
 */
#ifndef ROAD_LLM_OPS_H
#define ROAD_LLM_OPS_H

#include <stdint.h>

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
