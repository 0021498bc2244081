/*
 * tests/test_attention.c - road__attention_forward (llm/ops.h) against a direct double-precision
 * evaluation of softmax(scale q.k) v written here:
 *   - the per-row (decode) path, which takes the query heads of a kv group together and the
 *     keys in blocks of 64: grouped-query shapes (1, 2, 4 and 8 query heads per kv head),
 *     contexts shorter than the group, of exactly one block, and spanning several blocks with
 *     a partial last one, head sizes with and without an 8-lane tail, a sliding window, a
 *     softcap, and a KV-cache layout (head-major) as well as the batch's own rows;
 *   - the GEMM (prefill) path on the same inputs;
 *   - batch invariance: a row's output is bit-identical whether it is alone in the call or
 *     next to other sequences, and with one thread or two.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/ops.h"
#include "road/road.h"
#include "testutil.h"

/* A deterministic value in [-1, 1). */
static float val(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct shape {
    int64_t nh, nkv, d, ctx, rows, window;
    float softcap;
    bool cache_layout; /* (nkv, cap, d) as a KV cache holds it, else (positions, nkv x d) */
} shape;

/* Everything one case needs: keys/values of positions 0..ctx-1 of one sequence whose last
 * `rows` positions are the new rows. */
typedef struct inputs {
    float *q, *k, *v;
    int64_t head_stride, pos_stride;
} inputs;

static inputs make_inputs(const shape *s, uint64_t seed) {
    inputs in;
    const int64_t kvn = s->ctx * s->nkv * s->d;
    in.q = malloc(sizeof(float) * (size_t)(s->rows * s->nh * s->d));
    in.k = malloc(sizeof(float) * (size_t)kvn);
    in.v = malloc(sizeof(float) * (size_t)kvn);
    assert_non_null(in.q);
    assert_non_null(in.k);
    assert_non_null(in.v);
    for (int64_t i = 0; i < s->rows * s->nh * s->d; i++) in.q[i] = 2.0f * val(&seed);
    for (int64_t i = 0; i < kvn; i++) in.k[i] = val(&seed);
    for (int64_t i = 0; i < kvn; i++) in.v[i] = val(&seed);
    in.head_stride = s->cache_layout ? s->ctx * s->d : s->d;
    in.pos_stride = s->cache_layout ? s->d : s->nkv * s->d;
    return in;
}

static void free_inputs(inputs *in) {
    free(in->q);
    free(in->k);
    free(in->v);
}

/* The reference: row r (position ctx - rows + r), query head h, in double. */
static void reference(const shape *s, const inputs *in, float scale, double *out) {
    const int64_t group = s->nh / s->nkv;
    double *w = malloc(sizeof(double) * (size_t)s->ctx);
    assert_non_null(w);
    for (int64_t r = 0; r < s->rows; r++) {
        const int64_t p = s->ctx - s->rows + r;
        const int64_t lo = s->window > 0 && p - s->window + 1 > 0 ? p - s->window + 1 : 0;
        for (int64_t h = 0; h < s->nh; h++) {
            const int64_t hk = h / group;
            const float *qv = in->q + (r * s->nh + h) * s->d;
            double mx = -INFINITY, sum = 0.0;
            for (int64_t t = lo; t <= p; t++) {
                const float *kt = in->k + hk * in->head_stride + t * in->pos_stride;
                double dot = 0.0;
                for (int64_t i = 0; i < s->d; i++) dot += (double)qv[i] * kt[i];
                dot *= scale;
                if (s->softcap > 0.0f) dot = s->softcap * tanh(dot / s->softcap);
                w[t] = dot;
                if (dot > mx) mx = dot;
            }
            for (int64_t t = lo; t <= p; t++) sum += (w[t] = exp(w[t] - mx));
            double *o = out + (r * s->nh + h) * s->d;
            for (int64_t i = 0; i < s->d; i++) {
                double a = 0.0;
                for (int64_t t = lo; t <= p; t++)
                    a += w[t] / sum * in->v[hk * in->head_stride + t * in->pos_stride + i];
                o[i] = a;
            }
        }
    }
    free(w);
}

/* road__attention_forward on one sequence (gemm_min picks the path). */
static void run(const shape *s, const inputs *in, float scale, int64_t gemm_min, float *att) {
    const int64_t R = s->rows;
    attn_seq seq = {.r0 = 0,
                    .n = R,
                    .p0 = s->ctx - R,
                    .k = in->k,
                    .v = in->v,
                    .head_stride = in->head_stride,
                    .pos_stride = in->pos_stride,
                    .dtype = ROAD_DTYPE_F32};
    int64_t *row_seq = calloc((size_t)R, sizeof(int64_t));
    assert_non_null(row_seq);
    attn_batch a = {.seqs = &seq,
                    .n_seq = 1,
                    .row_seq = row_seq,
                    .R = R,
                    .nh = s->nh,
                    .nkv = s->nkv,
                    .d = s->d,
                    .window = s->window,
                    .scale = scale,
                    .softcap = s->softcap,
                    .gemm_min = gemm_min,
                    .qblock = ATTN_QBLOCK};
    const int64_t stride = road__attention_scratch(ATTN_QBLOCK, s->ctx, 0);
    const int nt = road_get_num_threads() > 2 ? road_get_num_threads() : 2;
    float *scratch = malloc(sizeof(float) * (size_t)(stride * nt));
    assert_non_null(scratch);
    road__attention_forward(att, in->q, &a, scratch, stride);
    free(scratch);
    free(row_seq);
}

static const shape SHAPES[] = {
    /* nh nkv  d  ctx rows window softcap cache */
    {8, 2, 64, 1, 1, 0, 0.0f, true},     /* one key, fewer than the group */
    {8, 2, 64, 3, 1, 0, 0.0f, false},    /* 3 keys < group of 4 */
    {8, 2, 64, 64, 1, 0, 0.0f, true},    /* one full key block */
    {8, 2, 64, 150, 2, 0, 0.0f, true},   /* 3 blocks, a partial last one */
    {32, 8, 64, 300, 1, 0, 0.0f, true},  /* Llama-3.2-1B's heads */
    {12, 2, 40, 131, 3, 0, 0.0f, false}, /* group of 6, d with an 8-lane tail */
    {8, 1, 24, 97, 2, 0, 0.0f, true},    /* group of 8 (MQA) */
    {4, 4, 64, 200, 1, 0, 0.0f, true},   /* no grouping */
    {8, 2, 64, 200, 2, 50, 0.0f, true},  /* sliding window */
    {8, 4, 32, 90, 1, 0, 30.0f, false},  /* softcap */
};

static void test_against_reference(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof SHAPES / sizeof SHAPES[0]; c++) {
        const shape *s = &SHAPES[c];
        inputs in = make_inputs(s, 1000 + c);
        const float scale = 1.0f / sqrtf((float)s->d);
        const int64_t n = s->rows * s->nh * s->d;
        double *want = malloc(sizeof(double) * (size_t)n);
        float *rows_path = malloc(sizeof(float) * (size_t)n),
              *gemm = malloc(sizeof(float) * (size_t)n);
        assert_non_null(want);
        assert_non_null(rows_path);
        assert_non_null(gemm);
        reference(s, &in, scale, want);
        run(s, &in, scale, 1 << 20, rows_path); /* per-row path */
        run(s, &in, scale, 1, gemm);            /* GEMM path */
        double worst_rows = 0.0, worst_gemm = 0.0;
        for (int64_t i = 0; i < n; i++) {
            worst_rows = fmax(worst_rows, fabs(rows_path[i] - want[i]));
            worst_gemm = fmax(worst_gemm, fabs(gemm[i] - want[i]));
        }
        if (worst_rows > 2e-6 || worst_gemm > 2e-6)
            fail_msg("shape %zu: |per-row - reference| %.3g, |gemm - reference| %.3g", c,
                     worst_rows, worst_gemm);
        free(want);
        free(rows_path);
        free(gemm);
        free_inputs(&in);
    }
}

/* A decode row's output alone in the call, next to another sequence's rows (some taking the
 * GEMM path), and with 1 or 2 threads: bit-identical. */
static void test_batch_invariance(void **state) {
    (void)state;
    const shape s = {8, 2, 64, 150, 1, 0, 0.0f, true};
    inputs in = make_inputs(&s, 77);
    const float scale = 0.125f;
    const int64_t hd = s.nh * s.d;
    float *alone = malloc(sizeof(float) * (size_t)hd);
    assert_non_null(alone);
    const int threads0 = road_get_num_threads();
    road_set_num_threads(1);
    run(&s, &in, scale, 1 << 20, alone);

    /* the same row as the last of a batch: 9 rows of a second sequence (its own 9 keys, GEMM
     * path with gemm_min 8) first */
    const shape s2 = {8, 2, 64, 9, 9, 0, 0.0f, false};
    inputs in2 = make_inputs(&s2, 78);
    const int64_t R = 10;
    float *q = malloc(sizeof(float) * (size_t)(R * hd)),
          *att = malloc(sizeof(float) * (size_t)(R * hd));
    assert_non_null(q);
    assert_non_null(att);
    memcpy(q, in2.q, sizeof(float) * (size_t)(9 * hd));
    memcpy(q + 9 * hd, in.q, sizeof(float) * (size_t)hd);
    attn_seq seqs[2] = {{.r0 = 0,
                         .n = 9,
                         .p0 = 0,
                         .k = in2.k,
                         .v = in2.v,
                         .head_stride = in2.head_stride,
                         .pos_stride = in2.pos_stride,
                         .dtype = ROAD_DTYPE_F32},
                        {.r0 = 9,
                         .n = 1,
                         .p0 = s.ctx - 1,
                         .k = in.k,
                         .v = in.v,
                         .head_stride = in.head_stride,
                         .pos_stride = in.pos_stride,
                         .dtype = ROAD_DTYPE_F32}};
    int64_t row_seq[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    attn_batch a = {.seqs = seqs,
                    .n_seq = 2,
                    .row_seq = row_seq,
                    .R = R,
                    .nh = s.nh,
                    .nkv = s.nkv,
                    .d = s.d,
                    .scale = scale,
                    .gemm_min = 8,
                    .qblock = ATTN_QBLOCK};
    const int64_t stride = road__attention_scratch(ATTN_QBLOCK, s.ctx, 0);
    float *scratch = malloc(sizeof(float) * (size_t)(stride * 2));
    assert_non_null(scratch);
    for (int threads = 1; threads <= 2; threads++) {
        road_set_num_threads(threads);
        road__attention_forward(att, q, &a, scratch, stride);
        assert_memory_equal(att + 9 * hd, alone, sizeof(float) * (size_t)hd);
    }
    road_set_num_threads(threads0);
    free(scratch);
    free(q);
    free(att);
    free(alone);
    free_inputs(&in);
    free_inputs(&in2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_batch_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
