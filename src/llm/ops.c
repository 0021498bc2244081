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

#include "core/blas.h"
#include "core/cpu.h"
#include "core/threads.h"
#include "llm/kv_read.h"
#include "llm/ops.h"
#include "road/llm.h"

/* Element-wise ops on fewer elements than this run on one thread: below it, starting the
 * OpenMP team costs more than the work. Every element is computed alone, so the threads never
 * change a result. */
#define OPS_PARALLEL_MIN (1 << 16)

/* ---- rmsnorm ------------------------------------------------------------------------------- */

/* One body for both scales: w (plus_one false) or 1 + w (gemma). plus_one is a constant in
 * each caller, so the compiler drops the other branch. */
static inline void rmsnorm_fwd(float *out, const float *inp, const float *weight, int64_t R,
                               int64_t H, double eps, bool plus_one) {
#pragma omp parallel for schedule(static) if (R * H >= OPS_PARALLEL_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = inp + r * H;
        double ss = 0.0;
        for (int64_t i = 0; i < H; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)H + eps));
        float *o = out + r * H;
        for (int64_t i = 0; i < H; i++)
            o[i] = (plus_one ? 1.0f + weight[i] : weight[i]) * (xr[i] * inv);
    }
}

static inline void rmsnorm_bwd(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, int64_t R, int64_t H, double eps,
                               bool plus_one) {
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
            const float w = plus_one ? 1.0f + weight[i] : weight[i];
            ss += (double)xr[i] * xr[i];
            dot += (double)gr[i] * w * xr[i];
        }
        const double rr = 1.0 / sqrt(ss / (double)H + eps);
        const double k = rr * rr * rr * dot / (double)H;
        float *o = dinp + r * H;
        for (int64_t i = 0; i < H; i++) {
            const float w = plus_one ? 1.0f + weight[i] : weight[i];
            o[i] += (float)(rr * (double)gr[i] * w - k * xr[i]);
        }
    }
}

void road__rmsnorm_forward(float *out, const float *inp, const float *weight, int64_t R, int64_t H,
                           double eps) {
    rmsnorm_fwd(out, inp, weight, R, H, eps, false);
}

void road__rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int64_t R, int64_t H, double eps) {
    rmsnorm_bwd(dinp, dweight, dout, inp, weight, R, H, eps, false);
}

void road__rmsnorm1p_forward(float *out, const float *inp, const float *weight, int64_t R,
                             int64_t H, double eps) {
    rmsnorm_fwd(out, inp, weight, R, H, eps, true);
}

void road__rmsnorm1p_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, int64_t R, int64_t H, double eps) {
    rmsnorm_bwd(dinp, dweight, dout, inp, weight, R, H, eps, true);
}

/* ---- rope ---------------------------------------------------------------------------------- */

void road__rope_table(float *cs, const int64_t *pos, const float *inv_freq, int64_t R,
                      int64_t rot) {
    for (int64_t r = 0; r < R; r++) {
        float *cr = cs + r * rot, *sr = cr + rot / 2;
        for (int64_t i = 0; i < rot / 2; i++) {
            float angle = (float)pos[r] * inv_freq[i];
            cr[i] = cosf(angle);
            sr[i] = sinf(angle);
        }
    }
}

/* The rotation of every head by each row's angles, times sin_sign: +1 rotates by +angle (the
 * forward), -1 by -angle (the backward, the transposed rotation). Negating sin is exact, so
 * the backward's a c + b s is the same float as a c - b (-s). Dims rot.. of a head pass. */
static void rope_rotate(float *x, const float *cs, int64_t R, int64_t heads, int64_t d, int64_t rot,
                        float sin_sign) {
    const int64_t half = rot / 2;
#pragma omp parallel for schedule(static) if (R * heads * d >= OPS_PARALLEL_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *cr = cs + r * rot, *sr = cr + half;
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

void road__rope_forward(float *x, const float *cs, int64_t R, int64_t heads, int64_t d,
                        int64_t rot) {
    rope_rotate(x, cs, R, heads, d, rot, 1.0f);
}

void road__rope_backward(float *dx, const float *cs, int64_t R, int64_t heads, int64_t d,
                         int64_t rot) {
    rope_rotate(dx, cs, R, heads, d, rot, -1.0f);
}

/* ---- swiglu -------------------------------------------------------------------------------- */

void road__swiglu_forward(float *out, const float *gate, const float *up, int64_t N) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void road__swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, int64_t N) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float gi = gate[i], sg = 1.0f / (1.0f + expf(-gi)), da = dout[i];
        dup[i] = da * gi * sg;
        dgate[i] = da * up[i] * sg * (1.0f + gi * (1.0f - sg));
    }
}

/* ---- geglu -------------------------------------------------------------------------------- */

/* torch's tanh-approximated GELU in float: 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))). */
#define GELU_BETA 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_KAPPA 0.044715f

/* 0.5 (1 + tanh(u)) = sigmoid(2u): one expf per element, as silu costs; the two agree to
 * float rounding. */
void road__geglu_forward(float *out, const float *gate, const float *up, int64_t N) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float z = gate[i], u = GELU_BETA * (z + GELU_KAPPA * z * z * z);
        out[i] = z / (1.0f + expf(-2.0f * u)) * up[i];
    }
}

void road__geglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t N) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float z = gate[i], u = GELU_BETA * (z + GELU_KAPPA * z * z * z);
        const float s = 1.0f / (1.0f + expf(-2.0f * u)), da = dout[i];
        /* d/dz [z s(2u)] = s + z * 2 s (1 - s) * du/dz,  du/dz = beta (1 + 3 kappa z^2) */
        const float dgelu =
            s + z * 2.0f * s * (1.0f - s) * GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * z * z);
        dup[i] = da * z * s;
        dgate[i] = da * up[i] * dgelu;
    }
}

/* ---- softcap ------------------------------------------------------------------------------- */

void road__softcap_forward(float *x, int64_t N, float cap) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) x[i] = cap * tanhf(x[i] / cap);
}

void road__softcap_backward(float *dx, const float *y, int64_t N, float cap) {
#pragma omp parallel for schedule(static) if (N >= OPS_PARALLEL_MIN)
    for (int64_t i = 0; i < N; i++) {
        const float t = y[i] / cap;
        dx[i] *= 1.0f - t * t;
    }
}

/* ---- attention ----------------------------------------------------------------------------- */

int64_t road__attention_scratch(int64_t qblock, int64_t max_keys, int64_t widen_d) {
    return (qblock < max_keys ? qblock : max_keys) * (max_keys > 0 ? max_keys : 1) +
           widen_d * max_keys;
}

/* Bytes of one element of a K/V view: float32, or a 16-bit cache's. */
static size_t kv_elem_bytes(road_dtype t) {
    return t == ROAD_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t);
}

static float *thread_scratch(float *scratch, int64_t stride) {
#ifdef _OPENMP
    return scratch + (size_t)omp_get_thread_num() * (size_t)stride;
#else
    (void)stride;
    return scratch;
#endif
}

/* The first key position row position p sees. */
static int64_t attn_lo(int64_t p, int64_t window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}

/* Keys per block of the per-row path: a block's keys (or values) of one kv head, 16 KiB in
 * float32 at head_dim 64, stay in L1 while every query head of its group reads them. */
#define ATTN_KEY_BLOCK 64

/* The scaled, capped softmax of one head's nk scores in place (max-shifted in float, the sum in
 * double). */
static void softmax_row(float *sc, int64_t nk, float scale, float cap) {
    float mx = -INFINITY;
    for (int64_t t = 0; t < nk; t++) {
        float dot = sc[t] * scale;
        if (cap > 0.0f) dot = cap * tanhf(dot / cap);
        sc[t] = dot;
        if (dot > mx) mx = dot;
    }
    double sum = 0.0;
    for (int64_t t = 0; t < nk; t++) {
        float e = expf(sc[t] - mx);
        sc[t] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t t = 0; t < nk; t++) sc[t] *= inv;
}

/* Per-row path (decode): one (row, kv head) per item, the query heads of its group together
 * (grouped-query attention: nh / nkv of them read the same keys and values). Keys and values
 * go by in blocks of ATTN_KEY_BLOCK, each block read from memory once and by the group's other
 * heads from L1, through the cache type's reader (kv_read.h: AVX2 when simd, else the scalar
 * loops). A block boundary changes no sum: dots are per key, and wsum's o[i] is one running
 * sum over the keys in order, carried through memory from block to block. So each head's
 * result is bit for bit what one call over all its keys gives. The scratch holds at least
 * min(qblock, nk) rows of nk scores (road__attention_scratch), so heads go min(group, qblock,
 * nk) at a time. */
static void attention_rows(float *att, const float *q, const attn_batch *a, float *scratch,
                           int64_t scratch_stride, bool simd) {
    const int64_t nh = a->nh, d = a->d, group = a->nh / a->nkv;
    const int64_t items = a->R * a->nkv;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        const int64_t r = it / a->nkv, hk = it % a->nkv;
        const attn_seq *sq = &a->seqs[a->row_seq[r]];
        if (sq->n >= a->gemm_min) continue; /* attention_blocks' */
        const int64_t p = sq->p0 + (r - sq->r0), lo = attn_lo(p, a->window);
        float *sc = thread_scratch(scratch, scratch_stride);
        const kv_reader *rd = road__kv_reader(sq->dtype, simd);
        const size_t es = kv_elem_bytes(sq->dtype), ps = (size_t)sq->pos_stride * es;
        const char *kb =
            (const char *)sq->k + (size_t)(hk * sq->head_stride) * es + (size_t)lo * ps;
        const char *vb =
            (const char *)sq->v + (size_t)(hk * sq->head_stride) * es + (size_t)lo * ps;
        const int64_t nk = p - lo + 1;
        int64_t per = group < a->qblock ? group : a->qblock;
        if (per > nk) per = nk;
        for (int64_t g0 = 0; g0 < group; g0 += per) {
            const int64_t ng = group - g0 < per ? group - g0 : per, hq0 = hk * group + g0;
            const float *qv = q + (r * nh + hq0) * d;
            float *o = att + (r * nh + hq0) * d;
            for (int64_t t0 = 0; t0 < nk; t0 += ATTN_KEY_BLOCK) {
                const int64_t nt = nk - t0 < ATTN_KEY_BLOCK ? nk - t0 : ATTN_KEY_BLOCK;
                for (int64_t g = 0; g < ng; g++)
                    rd->dots(sc + g * nk + t0, qv + g * d, kb + (size_t)t0 * ps, nt, sq->pos_stride,
                             d);
            }
            for (int64_t g = 0; g < ng; g++) softmax_row(sc + g * nk, nk, a->scale, a->softcap);
            for (int64_t i = 0; i < ng * d; i++) o[i] = 0.0f;
            for (int64_t t0 = 0; t0 < nk; t0 += ATTN_KEY_BLOCK) {
                const int64_t nt = nk - t0 < ATTN_KEY_BLOCK ? nk - t0 : ATTN_KEY_BLOCK;
                for (int64_t g = 0; g < ng; g++)
                    rd->wsum(o + g * d, sc + g * nk + t0, vb + (size_t)t0 * ps, nt, sq->pos_stride,
                             d);
            }
        }
    }
}

/* P (ni x nk, row stride nk) = the masked softmax of S in place: row i (position p0 + i) keeps
 * keys lo..p0+i, the rest 0; those kept are first capped (cap > 0: cap tanh(s / cap)). */
static void softmax_masked(float *P, int64_t ni, int64_t nk, int64_t p0, int64_t window,
                           float cap) {
    for (int64_t i = 0; i < ni; i++) {
        float *row = P + i * nk;
        const int64_t p = p0 + i, lo = attn_lo(p, window);
        if (cap > 0.0f)
            for (int64_t t = lo; t <= p; t++) row[t] = cap * tanhf(row[t] / cap);
        float mx = -INFINITY;
        for (int64_t t = lo; t <= p; t++) mx = row[t] > mx ? row[t] : mx;
        double sum = 0.0;
        for (int64_t t = lo; t <= p; t++) {
            row[t] = expf(row[t] - mx);
            sum += row[t];
        }
        const float inv = (float)(1.0 / sum);
        for (int64_t t = 0; t < nk; t++) row[t] = (t >= lo && t <= p) ? row[t] * inv : 0.0f;
    }
}

/* Keys (or values) 0..nk-1 of one head of a 16-bit cache, widened into w (nk, d). */
static void widen_rows(float *w, const uint16_t *src, int64_t nk, int64_t d, int64_t stride,
                       const kv_reader *rd) {
    for (int64_t t = 0; t < nk; t++) rd->widen(w + t * d, src + t * stride, d);
}

/* GEMM path (prefill, training): one (sequence, head, block of qblock queries) per item, the
 * block against all keys up to its last query. Memory is linear in the context: the block's
 * scores S (ni x nk, ni <= qblock) and, for a 16-bit cache, the head's keys then values
 * widened to float32 (nk x d) in the same scratch, after S. */
static void attention_blocks(float *att, const float *q, const attn_batch *a, float *scratch,
                             int64_t scratch_stride, bool simd) {
    const int64_t nh = a->nh, d = a->d, group = a->nh / a->nkv, QB = a->qblock;
    int64_t items = 0;
    for (int64_t s = 0; s < a->n_seq; s++)
        if (a->seqs[s].n >= a->gemm_min) items += nh * ((a->seqs[s].n + QB - 1) / QB);
    if (items == 0) return;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; it++) {
        int64_t rest = it, s = 0, nb = 0;
        for (s = 0; s < a->n_seq; s++) {
            if (a->seqs[s].n < a->gemm_min) continue;
            nb = (a->seqs[s].n + QB - 1) / QB;
            if (rest < nh * nb) break;
            rest -= nh * nb;
        }
        const attn_seq *sq = &a->seqs[s];
        const int64_t hq = rest / nb, blk = rest % nb, hk = hq / group;
        const int64_t i0 = blk * QB;
        const int64_t ni = sq->n - i0 < QB ? sq->n - i0 : QB;
        const int64_t r0 = sq->r0 + i0, p0 = sq->p0 + i0;
        const int64_t nk = p0 + ni; /* keys 0 .. p0 + ni - 1 */
        float *S = thread_scratch(scratch, scratch_stride);
        const float *kb, *vb;
        int64_t ld = sq->pos_stride;
        float *W = S + ni * nk; /* (nk, d) widened keys, then values (16-bit caches) */
        const kv_reader *rd = sq->dtype == ROAD_DTYPE_F32 ? NULL : road__kv_reader(sq->dtype, simd);
        if (rd) {
            widen_rows(W, (const uint16_t *)sq->k + hk * sq->head_stride, nk, d, ld, rd);
            kb = vb = W, ld = d;
        } else {
            kb = (const float *)sq->k + hk * sq->head_stride;
            vb = (const float *)sq->v + hk * sq->head_stride;
        }
        road__sgemm(false, true, ni, nk, d, a->scale, q + (r0 * nh + hq) * d, nh * d, kb, ld, 0.0f,
                    S, nk);
        softmax_masked(S, ni, nk, p0, a->window, a->softcap);
        if (rd)
            widen_rows(W, (const uint16_t *)sq->v + hk * sq->head_stride, nk, d, sq->pos_stride,
                       rd);
        road__sgemm(false, false, ni, d, nk, 1.0f, S, nk, vb, ld, 0.0f, att + (r0 * nh + hq) * d,
                    nh * d);
    }
}

void road__attention_forward(float *att, const float *q, const attn_batch *a, float *scratch,
                             int64_t scratch_stride) {
    const bool simd = road__cpu_has_avx2_fma();
    attention_rows(att, q, a, scratch, scratch_stride, simd);
    attention_blocks(att, q, a, scratch, scratch_stride, simd);
}

void road__attention_backward(float *dq, float *dk, float *dv, const float *datt, const float *q,
                              const float *k, const float *v, const attn_batch *a, float *scratch,
                              int64_t scratch_stride) {
    const int64_t nh = a->nh, nkv = a->nkv, d = a->d, grp = nh / nkv;
    memset(dk, 0, sizeof(float) * (size_t)(a->R * nkv * d));
    memset(dv, 0, sizeof(float) * (size_t)(a->R * nkv * d));
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t it = 0; it < a->n_seq * nkv; it++) {
        const int64_t s = it / nkv, hk = it % nkv, n = a->seqs[s].n, r0 = a->seqs[s].r0;
        float *P = thread_scratch(scratch, scratch_stride);
        float *dP = P + n * n, *Sc = a->softcap > 0.0f ? dP + n * n : NULL;
        const float *kh = k + (r0 * nkv + hk) * d, *vh = v + (r0 * nkv + hk) * d;
        float *dkh = dk + (r0 * nkv + hk) * d, *dvh = dv + (r0 * nkv + hk) * d;
        for (int64_t hq = hk * grp; hq < (hk + 1) * grp; hq++) {
            const float *qh = q + (r0 * nh + hq) * d, *go = datt + (r0 * nh + hq) * d;
            road__sgemm(false, true, n, n, d, a->scale, qh, nh * d, kh, nkv * d, 0.0f, P, n);
            if (Sc) /* keep the capped logits: the cap's derivative is 1 - (s / cap)^2 */
                for (int64_t i = 0; i < n; i++) {
                    const int64_t lo = attn_lo(i, a->window);
                    for (int64_t t = lo; t <= i; t++)
                        Sc[i * n + t] = a->softcap * tanhf(P[i * n + t] / a->softcap);
                }
            softmax_masked(P, n, n, 0, a->window, a->softcap);
            road__sgemm(false, true, n, n, d, 1.0f, go, nh * d, vh, nkv * d, 0.0f, dP, n);
            road__sgemm(true, false, n, d, n, 1.0f, P, n, go, nh * d, 1.0f, dvh, nkv * d);
            for (int64_t i = 0; i < n; i++) { /* dS into dP */
                float *pr = P + i * n, *dr = dP + i * n;
                double pdp = 0.0;
                for (int64_t t = 0; t <= i; t++) pdp += (double)pr[t] * dr[t];
                for (int64_t t = 0; t < n; t++)
                    dr[t] = t <= i ? pr[t] * (dr[t] - (float)pdp) : 0.0f;
                if (Sc) {
                    const float *sc = Sc + i * n;
                    for (int64_t t = attn_lo(i, a->window); t <= i; t++) {
                        const float u = sc[t] / a->softcap;
                        dr[t] *= 1.0f - u * u;
                    }
                }
            }
            road__sgemm(false, false, n, d, n, a->scale, dP, n, kh, nkv * d, 0.0f,
                        dq + (r0 * nh + hq) * d, nh * d);
            road__sgemm(true, false, n, d, n, a->scale, dP, n, qh, nh * d, 1.0f, dkh, nkv * d);
        }
    }
}

/* ---- cross-entropy ---- */

void road__cross_entropy_forward(double *losses, double *row_max, double *row_sum,
                                 const float *logits, const int64_t *targets, int64_t R,
                                 int64_t V) {
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

void road__cross_entropy_backward(float *dlogits, int64_t n_counted, const float *logits,
                                  const int64_t *targets, const double *row_max,
                                  const double *row_sum, int64_t R, int64_t V) {
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
