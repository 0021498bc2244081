/*
 * llm/ops.c - the model's ops, each forward directly followed by its backward (see ops.h).
 *
 * One home per op: inference (eval.c's loss) and training (grad.c) call the same function, so
 * a change to an op changes both, and the two can never disagree by a rounding. The
 * arithmetic is double where transformers' float32 loss would lose digits that the tests
 * compare (a sum of exps over the vocabulary).
 *
 * Legend: R rows (positions that predict a token), V vocab.
 */
#include <math.h>
#include <string.h>

#include "llm/ops.h"
#include "road/llm.h"

/* ---- cross-entropy ------------------------------------------------------------------------- */

void cross_entropy_forward(double *losses, double *row_max, double *row_sum, const float *logits,
                           const int64_t *targets, int64_t R, int64_t V) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const int64_t y = targets[r];
        if (y == ROAD_LABEL_IGNORE) continue;
        const float *z = logits + r * V;
        double mx = -INFINITY, se = 0.0;
        for (int64_t i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        for (int64_t i = 0; i < V; i++) se += exp((double)z[i] - mx);
        losses[r] = mx + log(se) - (double)z[y];
        if (row_max) row_max[r] = mx;
        if (row_sum) row_sum[r] = se;
    }
}

void cross_entropy_backward(float *dlogits, int64_t n_counted, const float *logits,
                            const int64_t *targets, const double *row_max, const double *row_sum,
                            int64_t R, int64_t V) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const int64_t y = targets[r];
        float *dz = dlogits + r * V;
        if (y == ROAD_LABEL_IGNORE) {
            memset(dz, 0, sizeof(float) * (size_t)V);
            continue;
        }
        const float *z = logits + r * V;
        const double mx = row_max[r], se = row_sum[r];
        for (int64_t i = 0; i < V; i++)
            dz[i] = (float)(exp((double)z[i] - mx) / se / (double)n_counted);
        dz[y] -= (float)(1.0 / (double)n_counted);
    }
}
