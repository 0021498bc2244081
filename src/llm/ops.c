/*
 * llm/ops.c - the model's ops, each forward directly followed by its backward (see ops.h).
 *
 * One home per op: inference (eval.c's loss) and training (grad.c) call the same function, so
 * a change to an op changes both, and the two can never disagree by a rounding. The
 * arithmetic is double where transformers' float32 loss would lose digits that the tests
 * compare (a sum of exps over the vocabulary).
 *
 * Each op's arithmetic (types, order of operations) is what the golden tests pin: float where
 * transformers computes in float32, double where a sum would otherwise lose digits. Change it
 * only on purpose; -ffp-contract=off keeps the compiler from fusing it differently.
 *
 * Legend: R rows (tokens; for cross-entropy, positions that predict a token), H hidden,
 * I intermediate, V vocab, heads the heads in a row, d head_dim, N elements.
 */
#include <math.h>
#include <string.h>

#include "llm/ops.h"
#include "road/llm.h"

/* Element-wise ops on fewer elements than this run on one thread: below it, starting the
 * OpenMP team costs more than the work. Every element is computed alone, so the threads never
 * change a result. */
#define OPS_PARALLEL_MIN (1 << 16)

/* ---- rmsnorm ------------------------------------------------------------------------------- */

void rmsnorm_forward(float *out, const float *inp, const float *weight, int64_t R, int64_t H,
                     double eps) {
#pragma omp parallel for schedule(static) if (R * H >= OPS_PARALLEL_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = inp + r * H;
        double ss = 0.0;
        for (int64_t i = 0; i < H; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)H + eps));
        float *o = out + r * H;
        for (int64_t i = 0; i < H; i++) o[i] = weight[i] * (xr[i] * inv);
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, int64_t R, int64_t H, double eps) {
    /* dweight sums over rows: serial, so its additions keep one order at any thread count */
    if (dweight) {
        for (int64_t r = 0; r < R; r++) {
            const float *xr = inp + r * H, *gr = dout + r * H;
            double ss = 0.0;
            for (int64_t i = 0; i < H; i++) ss += (double)xr[i] * xr[i];
            const float rr = (float)(1.0 / sqrt(ss / (double)H + eps));
            for (int64_t i = 0; i < H; i++) dweight[i] += gr[i] * xr[i] * rr;
        }
    }
#pragma omp parallel for schedule(static) if (R * H >= OPS_PARALLEL_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = inp + r * H, *gr = dout + r * H;
        double ss = 0.0, dot = 0.0;
        for (int64_t i = 0; i < H; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)gr[i] * weight[i] * xr[i];
        }
        const double rr = 1.0 / sqrt(ss / (double)H + eps);
        const double k = rr * rr * rr * dot / (double)H;
        float *o = dinp + r * H;
        for (int64_t i = 0; i < H; i++) o[i] += (float)(rr * (double)gr[i] * weight[i] - k * xr[i]);
    }
}

/* ---- rope ---------------------------------------------------------------------------------- */

void rope_table(float *cs, const int64_t *pos, const float *inv_freq, int64_t R, int64_t d) {
    for (int64_t r = 0; r < R; r++) {
        float *cr = cs + r * d, *sr = cr + d / 2;
        for (int64_t i = 0; i < d / 2; i++) {
            float angle = (float)pos[r] * inv_freq[i];
            cr[i] = cosf(angle);
            sr[i] = sinf(angle);
        }
    }
}

/* The rotation of every head by each row's angles, times sin_sign: +1 rotates by +angle (the
 * forward), -1 by -angle (the backward, the transposed rotation). Negating sin is exact, so
 * the backward's a c + b s is the same float as a c - b (-s). */
static void rope_rotate(float *x, const float *cs, int64_t R, int64_t heads, int64_t d,
                        float sin_sign) {
    const int64_t half = d / 2;
#pragma omp parallel for schedule(static) if (R * heads * d >= OPS_PARALLEL_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *cr = cs + r * d, *sr = cr + half;
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + (r * heads + h) * d;
            for (int64_t i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half], sn = sin_sign * sr[i];
                v[i] = a * cr[i] - b * sn;
                v[i + half] = b * cr[i] + a * sn;
            }
        }
    }
}

void rope_forward(float *x, const float *cs, int64_t R, int64_t heads, int64_t d) {
    rope_rotate(x, cs, R, heads, d, 1.0f);
}

void rope_backward(float *dx, const float *cs, int64_t R, int64_t heads, int64_t d) {
    rope_rotate(dx, cs, R, heads, d, -1.0f);
}

/* ---- swiglu -------------------------------------------------------------------------------- */

void swiglu_forward(float *out, const float *gate, const float *up, int64_t N) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int64_t N) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float gi = gate[i], sg = 1.0f / (1.0f + expf(-gi)), da = dout[i];
        dup[i] = da * gi * sg;
        dgate[i] = da * up[i] * sg * (1.0f + gi * (1.0f - sg));
    }
}

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
