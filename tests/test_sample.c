/*
 * tests/test_sample.c - the sampler (src/llm/sample.c): greedy, temperature, top-k, top-p,
 * min_p, logit_bias, repetition / frequency / presence penalties, and road_logprobs.
 *
 * The penalties are checked against a direct implementation of OpenAI's and transformers'
 * formulas written here (per step: logit + bias, then repetition penalty on prompt and output
 * ids, then minus frequency x count minus presence), over greedy runs long enough to repeat
 * tokens and through the distribution they give at temperature 1. road_logprobs against
 * log-softmax in long double.
 *
 * Distributions are checked statistically: N_DRAWS samples from a small vocabulary, and each
 * token's empirical frequency must lie within FREQ_SIGMAS standard errors of the probability
 * the specification gives (softmax of logits / T, restricted and renormalized by top-k and
 * top-p). Tokens outside the kept set must never appear, which is exact. The seeds are fixed,
 * so each run is deterministic; the bound says how unlikely a false failure would be for a
 * fresh seed (5 sigma: ~6e-7 per token and check).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "testutil.h"

#define N_DRAWS 200000
#define FREQ_SIGMAS 5.0
/* The 128k-vocabulary run: Llama 3's vocabulary is 128,256 tokens. */
#define BIG_VOCAB 131072

static int setup_live(void **state) {
    int64_t *start = malloc(sizeof *start);
    if (!start) return -1;
    *start = road__alloc_live_bytes();
    *state = start;
    return 0;
}

static int teardown_live(void **state) {
    int64_t *start = *state;
    int64_t now = road__alloc_live_bytes();
    int leaked = now != *start;
    if (leaked) print_error("leak: %lld bytes still allocated\n", (long long)(now - *start));
    free(start);
    return leaked ? -1 : 0;
}

static road_sampler *make(float temperature, int32_t top_k, float top_p, uint64_t seed,
                          int64_t vocab) {
    road_sampler_params p = {
        .temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
    road_sampler *s = NULL;
    TU_OK(road_sampler_create(&p, vocab, &s));
    assert_non_null(s);
    return s;
}

/* softmax(logits / T) in double. */
static void softmax(const float *logits, int n, double T, double *p) {
    double mx = -INFINITY, z = 0.0;
    for (int i = 0; i < n; i++) mx = fmax(mx, (double)logits[i] / T);
    for (int i = 0; i < n; i++) z += p[i] = exp((double)logits[i] / T - mx);
    for (int i = 0; i < n; i++) p[i] /= z;
}

/* Draw N_DRAWS tokens and compare frequencies with `want` (probabilities summing to 1; 0 for
 * tokens that must never appear). */
static void check_distribution(const char *what, road_sampler *s, const float *logits, int n,
                               const double *want) {
    int64_t *count = calloc((size_t)n, sizeof *count);
    assert_non_null(count);
    for (int i = 0; i < N_DRAWS; i++) {
        int32_t t = road_sampler_sample(s, logits);
        if (t < 0 || t >= n) fail_msg("%s: token %d out of range", what, (int)t);
        count[t]++;
    }
    for (int i = 0; i < n; i++) {
        double f = (double)count[i] / N_DRAWS;
        if (want[i] == 0.0) {
            if (count[i] != 0)
                fail_msg("%s: token %d was drawn %lld times but must never be", what, i,
                         (long long)count[i]);
            continue;
        }
        double se = sqrt(want[i] * (1.0 - want[i]) / N_DRAWS);
        if (fabs(f - want[i]) > FREQ_SIGMAS * se)
            fail_msg("%s: token %d frequency %.5f, expected %.5f (+- %.1f x %.5f)", what, i, f,
                     want[i], FREQ_SIGMAS, se);
    }
    free(count);
}

static int cmp_desc(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a < b) - (a > b);
}

/* ---- parameters ------------------------------------------------------------------------------ */

static void test_params(void **state) {
    (void)state;
    road_sampler_params d = road_sampler_default_params();
    assert_true(d.temperature == 0.0f);
    assert_int_equal(d.top_k, 0);
    assert_true(d.top_p == 1.0f);

    road_sampler *s = (road_sampler *)0x1;
    road_sampler_params p = d;
    TU_FAILS(road_sampler_create(NULL, 10, &s), ROAD_ERR_INVALID_ARG, NULL);
    assert_null(s);
    TU_FAILS(road_sampler_create(&p, 10, NULL), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_sampler_create(&p, 0, &s), ROAD_ERR_INVALID_ARG, "vocab must be from 1");
    TU_FAILS(road_sampler_create(&p, (int64_t)INT32_MAX + 1, &s), ROAD_ERR_INVALID_ARG, "vocab");
    p.temperature = -0.5f;
    TU_FAILS(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG, "temperature must be");
    p.temperature = NAN;
    TU_FAILS(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG, "got nan");
    p.temperature = INFINITY;
    TU_FAILS(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG, "temperature must be");
    p = d;
    p.top_k = -1;
    TU_FAILS(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG, "top_k must be >= 0");
    p = d;
    const float bad_top_p[] = {0.0f, -0.1f, 1.0001f, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_top_p / sizeof bad_top_p[0]; i++) {
        p.top_p = bad_top_p[i];
        TU_FAILS(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG, "top_p must be in (0, 1]");
        assert_null(s);
    }
    /* top_k larger than the vocabulary is fine (it keeps everything). */
    p = d;
    p.temperature = 1.0f;
    p.top_k = 1000;
    TU_OK(road_sampler_create(&p, 10, &s));
    road_sampler_free(s);
    road_sampler_free(NULL);
    assert_int_equal(road_sampler_sample(NULL, (const float[]){1.0f}), -1);
}

/* ---- greedy ---------------------------------------------------------------------------------- */

static void test_greedy(void **state) {
    (void)state;
    road_sampler *s = NULL;
    road_sampler_params d = road_sampler_default_params();
    TU_OK(road_sampler_create(&d, 6, &s));
    const float a[] = {0.1f, 2.0f, -1.0f, 1.9f, 2.0f, 0.0f};
    assert_int_equal(road_sampler_sample(s, a), 1); /* tie 1 / 4: lowest id */
    const float b[] = {-3.0f, -2.0f, -1.0f, -4.0f, -1.0f, -5.0f};
    assert_int_equal(road_sampler_sample(s, b), 2);
    const float c[] = {NAN, 1.0f, NAN, 3.0f, NAN, 2.0f};
    assert_int_equal(road_sampler_sample(s, c), 3);
    const float e[] = {1.0f, INFINITY, 5.0f, INFINITY, NAN, 2.0f};
    assert_int_equal(road_sampler_sample(s, e), 1);
    const float f[] = {-INFINITY, -INFINITY, NAN, -INFINITY, NAN, -INFINITY};
    assert_int_equal(road_sampler_sample(s, f), 0);
    const float g[] = {NAN, NAN, NAN, NAN, NAN, NAN};
    assert_int_equal(road_sampler_sample(s, g), 0);
    const float h[] = {NAN, -INFINITY, -INFINITY, -7.0f, NAN, -INFINITY};
    assert_int_equal(road_sampler_sample(s, h), 3);
    road_sampler_free(s);

    /* top-k / top-p change nothing for greedy. */
    s = make(0.0f, 2, 0.1f, 1, 6);
    assert_int_equal(road_sampler_sample(s, a), 1);
    road_sampler_free(s);

    /* top-k 1 is greedy at any temperature, ties included. */
    road_rng rng;
    road__rng_seed(&rng, 42);
    float row[257];
    s = make(1.3f, 1, 1.0f, 7, 257);
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < 257; i++) row[i] = (float)(int)(road__rng_normal(&rng) * 3.0);
        int32_t best = 0;
        for (int i = 1; i < 257; i++)
            if (row[i] > row[best]) best = i;
        assert_int_equal(road_sampler_sample(s, row), best);
    }
    road_sampler_free(s);

    /* A tiny temperature is greedy in effect, without overflow on huge logits. */
    s = make(1e-30f, 0, 1.0f, 3, 4);
    const float big[] = {3e38f, -3e38f, 3.3e38f, 1.0f};
    for (int i = 0; i < 100; i++) assert_int_equal(road_sampler_sample(s, big), 2);
    road_sampler_free(s);
}

/* ---- temperature ----------------------------------------------------------------------------- */

static void test_temperature_distribution(void **state) {
    (void)state;
    const float logits[] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.0f};
    const double temps[] = {1.0, 0.7, 2.5};
    double want[6];
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        road_sampler *s = make((float)temps[t], 0, 1.0f, 1234 + t, 6);
        softmax(logits, 6, (double)(float)temps[t], want);
        char what[64];
        snprintf(what, sizeof what, "temperature %.2f", temps[t]);
        check_distribution(what, s, logits, 6, want);
        road_sampler_free(s);
    }
}

/* ---- top-k ----------------------------------------------------------------------------------- */

static void test_top_k(void **state) {
    (void)state;
    /* Top 3 of 8 (ids 6, 1, 4), renormalized. */
    const float logits[] = {0.1f, 2.0f, -0.3f, 0.4f, 1.2f, -2.0f, 2.5f, 0.9f};
    double p[8], want[8] = {0};
    softmax(logits, 8, 1.0, p);
    double z = p[6] + p[1] + p[4];
    want[6] = p[6] / z;
    want[1] = p[1] / z;
    want[4] = p[4] / z;
    road_sampler *s = make(1.0f, 3, 1.0f, 99, 8);
    check_distribution("top-k 3", s, logits, 8, want);
    road_sampler_free(s);

    /* Ties at the k-th value: the lower ids are kept, exactly k tokens remain. */
    const float ties[] = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f, 2.0f};
    double want_ties[6] = {0, 0.5, 0.5, 0, 0, 0};
    s = make(1.0f, 2, 1.0f, 5, 6);
    check_distribution("top-k 2 with ties", s, ties, 6, want_ties);
    road_sampler_free(s);
    const float flat[10] = {0};
    double want_flat[10] = {1.0 / 3, 1.0 / 3, 1.0 / 3};
    s = make(0.8f, 3, 1.0f, 6, 10);
    check_distribution("top-k 3 of equal logits", s, flat, 10, want_flat);
    road_sampler_free(s);

    /* Larger rows: every draw is among the true top k (found by the test with qsort), for
     * random rows and for rows in ascending and descending order (the selection's worst and
     * best case), k from 1 to V - 1. */
    enum { V = 5000 };
    float *row = tu_alloc(V * sizeof *row), *sorted = tu_alloc(V * sizeof *sorted);
    road_rng rng;
    road__rng_seed(&rng, 2024);
    const int32_t ks[] = {1, 17, 2500, V - 1};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
        const int32_t K = ks[ki];
        s = make(2.0f, K, 1.0f, 8 + ki, V);
        for (int trial = 0; trial < 12; trial++) {
            for (int i = 0; i < V; i++) {
                row[i] = trial == 0   ? (float)i * 1e-3f
                         : trial == 1 ? -(float)i * 1e-3f
                                      : (float)road__rng_normal(&rng);
            }
            memcpy(sorted, row, V * sizeof *row);
            qsort(sorted, V, sizeof *sorted, cmp_desc);
            for (int d = 0; d < 20; d++) {
                int32_t t = road_sampler_sample(s, row);
                assert_true(t >= 0 && t < V);
                if (row[t] < sorted[K - 1])
                    fail_msg("k %d, trial %d: token %d (logit %g) is below the k-th largest "
                             "logit %g",
                             (int)K, trial, (int)t, (double)row[t], (double)sorted[K - 1]);
            }
        }
        road_sampler_free(s);
    }
    free(row);
    free(sorted);
}

/* ---- top-p ----------------------------------------------------------------------------------- */

static void test_top_p(void **state) {
    (void)state;
    /* Probabilities 0.5, 0.3, 0.15, 0.05, stored out of order (ids 1, 3, 0, 2). */
    const float logits[] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
    double p[4];
    softmax(logits, 4, 1.0, p);

    /* 0.5 + 0.3 reaches 0.8: two tokens. */
    double want2[4] = {0, p[1] / (p[1] + p[3]), 0, p[3] / (p[1] + p[3])};
    road_sampler *s = make(1.0f, 0, 0.8f, 11, 4);
    check_distribution("top-p 0.8", s, logits, 4, want2);
    road_sampler_free(s);

    /* 0.81 needs the third. */
    double z3 = p[1] + p[3] + p[0];
    double want3[4] = {p[0] / z3, p[1] / z3, 0, p[3] / z3};
    s = make(1.0f, 0, 0.81f, 12, 4);
    check_distribution("top-p 0.81", s, logits, 4, want3);
    road_sampler_free(s);

    /* A tiny top_p keeps the most likely token only; 1.0 keeps all. */
    double want1[4] = {0, 1, 0, 0};
    s = make(1.0f, 0, 1e-6f, 13, 4);
    check_distribution("top-p 1e-6", s, logits, 4, want1);
    road_sampler_free(s);
    s = make(1.0f, 0, 1.0f, 14, 4);
    check_distribution("top-p 1.0", s, logits, 4, p);
    road_sampler_free(s);

    /* top-k first, then top-p on the renormalized k: probabilities 0.4, 0.3, 0.2, 0.1 and
     * top_p 0.75. Alone, top-p keeps three (0.4 + 0.3 < 0.75); after top-k 3 the masses are
     * 0.444, 0.333, 0.222 and two reach 0.75. */
    const float q[] = {logf(0.1f), logf(0.3f), logf(0.4f), logf(0.2f)};
    double pq[4];
    softmax(q, 4, 1.0, pq);
    double zq = pq[2] + pq[1] + pq[3];
    double want_p[4] = {0, pq[1] / zq, pq[2] / zq, pq[3] / zq};
    s = make(1.0f, 0, 0.75f, 15, 4);
    check_distribution("top-p 0.75", s, q, 4, want_p);
    road_sampler_free(s);
    double want_kp[4] = {0, pq[1] / (pq[1] + pq[2]), pq[2] / (pq[1] + pq[2]), 0};
    s = make(1.0f, 3, 0.75f, 16, 4);
    check_distribution("top-k 3 then top-p 0.75", s, q, 4, want_kp);
    road_sampler_free(s);
    /* ... and top_p 0.4 keeps only the best of the k (0.444 alone reaches it). */
    double want_k1[4] = {0, 0, 1, 0};
    s = make(1.0f, 3, 0.4f, 18, 4);
    check_distribution("top-k 3 then top-p 0.4", s, q, 4, want_k1);
    road_sampler_free(s);

    /* Temperature applies before top-p: at T = 0.5 the probabilities become 0.5^2 : 0.3^2 :
     * 0.15^2 : 0.05^2 (normalized: 0.6849, 0.2466, 0.0616, 0.0068), and top_p 0.9 keeps two. */
    double pt[4];
    softmax(logits, 4, 0.5, pt);
    double want_t[4] = {0, pt[1] / (pt[1] + pt[3]), 0, pt[3] / (pt[1] + pt[3])};
    s = make(0.5f, 0, 0.9f, 17, 4);
    check_distribution("T 0.5, top-p 0.9", s, logits, 4, want_t);
    road_sampler_free(s);
}

static void test_top_p_random_rows(void **state) {
    (void)state;
    /* Every draw lies in the nucleus the test computes by a full sort. */
    enum { V = 3000 };
    float *row = tu_alloc(V * sizeof *row);
    double *prob = tu_alloc(V * sizeof *prob);
    int *order = tu_alloc(V * sizeof *order);
    bool *in = tu_alloc(V * sizeof *in);
    road_rng rng;
    road__rng_seed(&rng, 77);
    const float top_p = 0.6f;
    road_sampler *s = make(1.0f, 0, top_p, 21, V);
    for (int trial = 0; trial < 30; trial++) {
        for (int i = 0; i < V; i++) row[i] = (float)(road__rng_normal(&rng) * 2.5);
        double mx = -INFINITY, z = 0.0;
        for (int i = 0; i < V; i++) mx = fmax(mx, row[i]);
        for (int i = 0; i < V; i++) z += prob[i] = exp(row[i] - mx);
        for (int i = 0; i < V; i++) {
            prob[i] /= z;
            order[i] = i;
            in[i] = false;
        }
        /* insertion sort by probability, descending (V is small) */
        for (int i = 1; i < V; i++) {
            int v = order[i], j = i;
            while (j > 0 && prob[order[j - 1]] < prob[v]) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = v;
        }
        double cum = 0.0;
        for (int i = 0; i < V; i++) {
            in[order[i]] = true;
            cum += prob[order[i]];
            if (cum >= top_p) break;
        }
        for (int d = 0; d < 50; d++) {
            int32_t t = road_sampler_sample(s, row);
            assert_true(t >= 0 && t < V);
            if (!in[t])
                fail_msg("trial %d: token %d (p %g) is outside the nucleus", trial, (int)t,
                         prob[t]);
        }
    }
    road_sampler_free(s);
    free(row);
    free(prob);
    free(order);
    free(in);
}

/* ---- seeds ----------------------------------------------------------------------------------- */

static void test_seeds(void **state) {
    (void)state;
    enum { V = 50, N = 2000 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 37) % 11) * 0.3f;
    int32_t *a = tu_alloc(N * sizeof *a), *b = tu_alloc(N * sizeof *b),
            *c = tu_alloc(N * sizeof *c);
    road_sampler *sa = make(1.0f, 20, 0.95f, 123, V), *sb = make(1.0f, 20, 0.95f, 123, V);
    road_sampler *sc = make(1.0f, 20, 0.95f, 124, V);
    for (int i = 0; i < N; i++) {
        a[i] = road_sampler_sample(sa, logits);
        b[i] = road_sampler_sample(sb, logits);
        c[i] = road_sampler_sample(sc, logits);
    }
    assert_memory_equal(a, b, N * sizeof *a);
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == c[i];
    /* Two seeds agree by chance on about sum p^2 of the draws (< 20% here), never on all. */
    if (same > N / 2) fail_msg("seeds 123 and 124 agree on %d of %d draws", same, N);
    road_sampler_free(sa);
    road_sampler_free(sb);
    road_sampler_free(sc);

    /* One uniform per call whatever the logits: a one-candidate row does not shift the
     * stream, so later draws match a sampler that saw a normal row there. */
    float one[V];
    for (int i = 0; i < V; i++) one[i] = -INFINITY;
    one[7] = 0.0f;
    sa = make(1.0f, 0, 1.0f, 9, V);
    sb = make(1.0f, 0, 1.0f, 9, V);
    assert_int_equal(road_sampler_sample(sa, one), 7);
    (void)road_sampler_sample(sb, logits);
    for (int i = 0; i < 100; i++)
        assert_int_equal(road_sampler_sample(sa, logits), road_sampler_sample(sb, logits));
    road_sampler_free(sa);
    road_sampler_free(sb);
    free(a);
    free(b);
    free(c);
}

/* ---- non-finite logits ----------------------------------------------------------------------- */

static void test_nonfinite(void **state) {
    (void)state;
    /* +Inf dominates: uniform over the +Inf tokens. */
    const float inf2[] = {5.0f, INFINITY, NAN, INFINITY, 1e30f};
    double want_inf[5] = {0, 0.5, 0, 0.5, 0};
    road_sampler *s = make(1.0f, 0, 1.0f, 31, 5);
    check_distribution("+Inf logits", s, inf2, 5, want_inf);
    road_sampler_free(s);
    /* ... then top-k filters the tie by id. */
    double want_inf_k[5] = {0, 1, 0, 0, 0};
    s = make(1.0f, 1, 1.0f, 32, 5);
    check_distribution("+Inf logits, top-k 1", s, inf2, 5, want_inf_k);
    road_sampler_free(s);

    /* NaN is -Inf: never drawn; the rest keep their softmax. */
    const float withnan[] = {NAN, 1.0f, -INFINITY, 0.0f, NAN};
    double e = exp(1.0), want_nan[5] = {0, e / (e + 1.0), 0, 1.0 / (e + 1.0), 0};
    s = make(1.0f, 0, 1.0f, 33, 5);
    check_distribution("NaN logits", s, withnan, 5, want_nan);
    road_sampler_free(s);

    /* Nothing above -Inf: token 0, with and without filters. */
    const float none[] = {-INFINITY, NAN, -INFINITY, NAN, -INFINITY};
    for (int k = 0; k <= 2; k++) {
        s = make(0.7f, k, k == 2 ? 0.5f : 1.0f, 34, 5);
        for (int i = 0; i < 10; i++) assert_int_equal(road_sampler_sample(s, none), 0);
        road_sampler_free(s);
    }
    /* Very large finite logits at a small temperature: no overflow, no NaN. */
    const float huge[] = {3.4e38f, 3.3e38f, -3.4e38f};
    s = make(1e-3f, 0, 0.9f, 35, 3);
    for (int i = 0; i < 100; i++) assert_int_equal(road_sampler_sample(s, huge), 0);
    road_sampler_free(s);
}

/* ---- a Llama 3 sized vocabulary -------------------------------------------------------------- */

static void test_big_vocab(void **state) {
    (void)state;
    float *row = tu_alloc(BIG_VOCAB * sizeof *row);
    road_rng rng;
    road__rng_seed(&rng, 128);
    for (int64_t i = 0; i < BIG_VOCAB; i++) row[i] = (float)(road__rng_normal(&rng) * 4.0);
    float mx = row[0];
    for (int64_t i = 1; i < BIG_VOCAB; i++) mx = fmaxf(mx, row[i]);
    static const struct {
        float t;
        int32_t k;
        float p;
    } settings[] = {{0.0f, 0, 1.0f},  {1.0f, 0, 1.0f},      {0.8f, 50, 0.9f},
                    {1.0f, 0, 0.95f}, {1.0f, 40000, 0.99f}, {1.0f, 0, 1e-7f}};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        road_sampler *s = make(settings[i].t, settings[i].k, settings[i].p, 40 + i, BIG_VOCAB);
        for (int d = 0; d < 20; d++) {
            int32_t t = road_sampler_sample(s, row);
            assert_true(t >= 0 && t < BIG_VOCAB);
            if (settings[i].t == 0.0f || settings[i].p < 1e-6f) assert_true(row[t] == mx);
        }
        road_sampler_free(s);
    }
    free(row);
}

static void test_out_of_memory(void **state) {
    (void)state;
    road_sampler_params p = {.temperature = 1.0f, .top_k = 5, .top_p = 0.9f, .seed = 1};
    int64_t start = road__alloc_live_bytes();
    for (int64_t k = 0;; k++) {
        road_sampler *s = NULL;
        road__alloc_fail_after(k);
        road_status st = road_sampler_create(&p, 1000, &s);
        road__alloc_fail_after(-1);
        if (st == ROAD_OK) {
            road_sampler_free(s);
            assert_int_equal(road__alloc_live_bytes(), start);
            break;
        }
        assert_int_equal(st, ROAD_ERR_NO_MEMORY);
        assert_null(s);
        assert_int_equal(road__alloc_live_bytes(), start);
        assert_true(k < 100);
    }
}

/* ---- logit processing ----------------------------------------------------------------------- */

/* The processed row per the specifications, for the output so far (out[0..n_out)) and a
 * prompt (prompt[0..n_prompt)). */
static void reference_process(const float *logits, int V, const road_sampler_params *p,
                              const int32_t *prompt, int n_prompt, const int32_t *out, int n_out,
                              double *row) {
    for (int i = 0; i < V; i++) row[i] = logits[i];
    for (int b = 0; b < p->n_logit_bias; b++) row[p->logit_bias[b].id] += p->logit_bias[b].bias;
    for (int i = 0; i < V; i++) {
        int count = 0;
        bool seen = false;
        for (int j = 0; j < n_out; j++) count += out[j] == i;
        for (int j = 0; j < n_prompt; j++) seen |= prompt[j] == i;
        seen |= count > 0;
        const double rp = p->repetition_penalty;
        if (seen && rp != 0.0 && rp != 1.0) row[i] = row[i] > 0 ? row[i] / rp : row[i] * rp;
        if (count > 0) row[i] -= (double)p->frequency_penalty * count + (double)p->presence_penalty;
    }
}

static void test_penalties_greedy(void **state) {
    (void)state;
    enum { V = 7, STEPS = 24 };
    /* values chosen (by a search) so that no step of any case is a near tie: margins >= 0.035 */
    const float logits[V] = {-1.347f, 2.078f, 2.402f, -0.075f, -0.617f, -1.021f, -1.595f};
    const int32_t prompt[] = {4, 2, 4};
    const road_logit_bias bias[] = {{6, 1.553f}, {0, -0.261f}};
    const struct {
        float presence, frequency, repetition;
        int n_bias;
    } cases[] = {{0.213f, 0.407f, 0.0f, 0},
                 {0.0f, 0.0f, 1.313f, 0},
                 {0.517f, 0.109f, 1.21f, 2},
                 {-0.031f, 0.0f, 0.83f, 2},
                 {0.0f, 0.0f, 1.0f, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        road_sampler_params p = road_sampler_default_params();
        p.presence_penalty = cases[c].presence;
        p.frequency_penalty = cases[c].frequency;
        p.repetition_penalty = cases[c].repetition;
        p.logit_bias = bias;
        p.n_logit_bias = cases[c].n_bias;
        road_sampler *s = NULL;
        TU_OK(road_sampler_create(&p, V, &s));
        TU_OK(road_sampler_set_prompt(s, prompt, 3));
        int32_t out[STEPS];
        bool changed = false; /* the output moved off its first token */
        for (int t = 0; t < STEPS; t++) {
            double row[V];
            reference_process(logits, V, &p, prompt, 3, out, t, row);
            int best = 0;
            for (int i = 1; i < V; i++)
                if (row[i] > row[best]) best = i;
            for (int i = 0; i < V; i++)
                if (i != best && fabs(row[i] - row[best]) < 1e-3)
                    fail_msg("case %zu step %d: a near tie (%d, %d): pick other values", c, t, best,
                             i);
            out[t] = road_sampler_sample(s, logits);
            if (out[t] != best)
                fail_msg("case %zu step %d: sampled %d, the specification's argmax is %d", c, t,
                         (int)out[t], best);
            changed |= out[t] != out[0];
        }
        /* the first three cases discourage repeats and must move off their first token (the
         * fourth encourages them, the last is a bias only) */
        assert_true(changed || c >= 3);
        road_sampler_free(s);
    }
}

/* At temperature 1 the draws follow softmax of the processed row (here after a fixed output
 * history: the sampler is fed that history as greedy picks from a copy of its state would be
 * awkward, so a prompt-only repetition penalty plus a bias is checked statistically). */
static void test_penalties_distribution(void **state) {
    (void)state;
    enum { V = 6 };
    const float logits[V] = {1.0f, 0.5f, -0.2f, 0.0f, -1.0f, 0.8f};
    const int32_t prompt[] = {0, 2};
    const road_logit_bias bias[] = {{4, 1.7f}, {5, -100.0f}};
    road_sampler_params p = road_sampler_default_params();
    p.temperature = 1.0f;
    p.repetition_penalty = 1.5f;
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    p.seed = 9;
    road_sampler *s = NULL;
    TU_OK(road_sampler_create(&p, V, &s));
    TU_OK(road_sampler_set_prompt(s, prompt, 2));
    double row[V], want[V];
    reference_process(logits, V, &p, prompt, 2, NULL, 0, row);
    float rowf[V];
    for (int i = 0; i < V; i++) rowf[i] = (float)row[i];
    softmax(rowf, V, 1.0, want);
    /* sampling records its draws as output; repetition_penalty on the output changes later
     * steps, so this checks the first draw of many fresh samplers instead */
    road_sampler_free(s);
    int64_t count[V] = {0};
    const int n = 20000;
    for (int d = 0; d < n; d++) {
        p.seed = 1000 + (uint64_t)d;
        TU_OK(road_sampler_create(&p, V, &s));
        TU_OK(road_sampler_set_prompt(s, prompt, 2));
        int32_t t = road_sampler_sample(s, logits);
        assert_true(t >= 0 && t < V);
        count[t]++;
        road_sampler_free(s);
    }
    for (int i = 0; i < V; i++) {
        const double f = (double)count[i] / n, se = sqrt(want[i] * (1 - want[i]) / n) + 1e-12;
        if (fabs(f - want[i]) > FREQ_SIGMAS * se)
            fail_msg("token %d frequency %.4f, expected %.4f", i, f, want[i]);
    }
}

/* The caller's logits are never written, and set_prompt replaces the earlier prompt. */
static void test_processing_leaves_logits(void **state) {
    (void)state;
    enum { V = 5 };
    float logits[V] = {2.0f, 1.9f, 0.0f, -1.0f, 0.5f};
    const float copy[V] = {2.0f, 1.9f, 0.0f, -1.0f, 0.5f};
    const road_logit_bias bias[] = {{3, 0.5f}};
    road_sampler_params p = road_sampler_default_params();
    p.repetition_penalty = 2.0f;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    road_sampler *s = NULL;
    TU_OK(road_sampler_create(&p, V, &s));
    const int32_t first[] = {0};
    TU_OK(road_sampler_set_prompt(s, first, 1));
    assert_int_equal(road_sampler_sample(s, logits), 1); /* 0 halved: 1.0 < 1.9 */
    assert_memory_equal(logits, copy, sizeof logits);
    road_sampler_free(s);
    TU_OK(road_sampler_create(&p, V, &s));
    TU_OK(road_sampler_set_prompt(s, first, 1));
    const int32_t second[] = {1, 4, 99, -3}; /* out-of-range ids are ignored */
    TU_OK(road_sampler_set_prompt(s, second, 4));
    assert_int_equal(road_sampler_sample(s, logits), 0); /* 0 no longer penalized; 1 is */
    road_sampler_free(s);
}

/* min_p keeps the tokens whose probability is at least min_p times the largest. */
static void test_min_p(void **state) {
    (void)state;
    enum { V = 6 };
    const float logits[V] = {2.0f, 1.5f, 0.0f, 1.9f, -1.0f, 1.2f};
    double p_all[V];
    softmax(logits, V, 0.7, p_all);
    const float min_p = 0.4f;
    double want[V], z = 0.0, pmax = 0.0;
    for (int i = 0; i < V; i++) pmax = fmax(pmax, p_all[i]);
    for (int i = 0; i < V; i++) z += want[i] = p_all[i] >= min_p * pmax ? p_all[i] : 0.0;
    for (int i = 0; i < V; i++) want[i] /= z;
    int kept = 0;
    for (int i = 0; i < V; i++) kept += want[i] > 0;
    assert_true(kept > 1 && kept < V); /* the case filters something and keeps a choice */
    road_sampler_params p = road_sampler_default_params();
    p.temperature = 0.7f;
    p.min_p = min_p;
    p.seed = 3;
    road_sampler *s = NULL;
    TU_OK(road_sampler_create(&p, V, &s));
    check_distribution("min_p", s, logits, V, want);
    road_sampler_free(s);
    p.min_p = 1.0f; /* only the most likely */
    TU_OK(road_sampler_create(&p, V, &s));
    for (int i = 0; i < 100; i++) assert_int_equal(road_sampler_sample(s, logits), 0);
    road_sampler_free(s);
}

static void test_processing_params(void **state) {
    (void)state;
    road_sampler *s = NULL;
    const road_logit_bias out_of_range[] = {{10, 1.0f}}, nan_bias[] = {{1, NAN}};
    road_sampler_params p = road_sampler_default_params();
    p.min_p = 1.5f;
    assert_int_equal(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG);
    assert_non_null(strstr(road_last_error(), "min_p"));
    p = road_sampler_default_params();
    p.repetition_penalty = -1.0f;
    assert_int_equal(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG);
    assert_non_null(strstr(road_last_error(), "repetition_penalty"));
    p = road_sampler_default_params();
    p.presence_penalty = INFINITY;
    assert_int_equal(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG);
    assert_non_null(strstr(road_last_error(), "presence_penalty"));
    p = road_sampler_default_params();
    p.logit_bias = out_of_range;
    p.n_logit_bias = 1;
    assert_int_equal(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG);
    assert_non_null(strstr(road_last_error(), "token id 10"));
    p.logit_bias = nan_bias;
    assert_int_equal(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG);
    p.logit_bias = NULL;
    assert_int_equal(road_sampler_create(&p, 10, &s), ROAD_ERR_INVALID_ARG);
    assert_null(s);
}

/* ---- log-probabilities ---------------------------------------------------------------------- */

static void test_logprobs(void **state) {
    (void)state;
    enum { V = 1000 };
    float *logits = malloc(sizeof(float) * V);
    assert_non_null(logits);
    road_rng rng;
    road__rng_seed(&rng, 5);
    for (int i = 0; i < V; i++) logits[i] = (float)(8.0 * road__rng_uniform(&rng) - 4.0);
    logits[17] = logits[400] = 6.0f; /* a tie at the top: lower id first */
    long double mx = -INFINITY, z = 0;
    for (int i = 0; i < V; i++) mx = fmaxl(mx, logits[i]);
    for (int i = 0; i < V; i++) z += expl((long double)logits[i] - mx);
    const long double lse = mx + logl(z);
    road_token ids[ROAD_MAX_TOP_LOGPROBS];
    float lps[ROAD_MAX_TOP_LOGPROBS], chosen;
    for (int tok = 0; tok < V; tok += 37) {
        TU_OK(road_logprobs(logits, V, tok, 5, &chosen, ids, lps));
        assert_true(fabsl((long double)chosen - ((long double)logits[tok] - lse)) < 1e-5L);
    }
    TU_OK(road_logprobs(logits, V, 3, ROAD_MAX_TOP_LOGPROBS, &chosen, ids, lps));
    assert_int_equal(ids[0], 17);
    assert_int_equal(ids[1], 400);
    /* the list is the 20 largest, in order, each with its log-softmax */
    float *sorted = malloc(sizeof(float) * V);
    assert_non_null(sorted);
    memcpy(sorted, logits, sizeof(float) * V);
    qsort(sorted, V, sizeof(float), cmp_desc);
    for (int j = 0; j < ROAD_MAX_TOP_LOGPROBS; j++) {
        assert_true(logits[ids[j]] == sorted[j]);
        assert_true(fabsl((long double)lps[j] - ((long double)logits[ids[j]] - lse)) < 1e-5L);
        if (j > 0) assert_true(lps[j] <= lps[j - 1]);
    }
    /* probabilities sum to 1 */
    long double total = 0;
    for (int i = 0; i < V; i++) {
        TU_OK(road_logprobs(logits, V, i, 0, &chosen, NULL, NULL));
        total += expl((long double)chosen);
    }
    assert_true(fabsl(total - 1.0L) < 1e-4L);
    /* bad arguments */
    assert_int_equal(road_logprobs(logits, V, V, 0, &chosen, NULL, NULL), ROAD_ERR_INVALID_ARG);
    assert_int_equal(road_logprobs(logits, V, 0, ROAD_MAX_TOP_LOGPROBS + 1, &chosen, ids, lps),
                     ROAD_ERR_INVALID_ARG);
    assert_int_equal(road_logprobs(logits, V, 0, 3, &chosen, NULL, lps), ROAD_ERR_INVALID_ARG);
    /* NaN counts as -Inf */
    logits[5] = NAN;
    TU_OK(road_logprobs(logits, V, 5, 0, &chosen, NULL, NULL));
    assert_true(isinf(chosen) && chosen < 0);
    free(sorted);
    free(logits);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_params, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_greedy, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_temperature_distribution, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_top_k, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_top_p, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_top_p_random_rows, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_seeds, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_nonfinite, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_big_vocab, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_penalties_greedy, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_penalties_distribution, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_processing_leaves_logits, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_min_p, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_processing_params, setup_live, teardown_live),
        cmocka_unit_test_setup_teardown(test_logprobs, setup_live, teardown_live),
    };
    return cmocka_run_group_tests_name("sample", tests, NULL, NULL);
}
