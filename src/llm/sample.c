/*
 * llm/sample.c - the next token from a row of logits (see road/llm.h).
 *
 * Order and meaning follow transformers' sampling warpers: logits / temperature, then top-k
 * (keep the k largest), then top-p (the smallest set of most likely tokens whose probability
 * reaches top_p, at least one), then a draw from the renormalized rest. Temperature 0 is
 * greedy: the largest logit, the lowest id among equal ones. Two choices differ on purpose:
 *  - top-k keeps exactly k tokens: among tokens tied with the k-th value the lower ids stay
 *    (transformers keeps every tied token), so the kept set never depends on ties' count.
 *  - non-finite logits: +Inf dominates (if any logit is +Inf, the draw is uniform over the
 *    +Inf ones, then filtered like any other tie), NaN counts as -Inf, and a row with nothing
 *    above -Inf gives token 0. transformers would produce NaN probabilities there.
 *
 * Cost: one pass over V scales the logits; without top-k / top-p one more computes the weights
 * and a scan draws. Nothing is ever fully sorted:
 *  - top-k selects with a k-sized min-heap of the best so far, sorted at the end: O(V log k)
 *    at worst, about one comparison per token on real rows (few tokens enter the heap).
 *  - top-p alone heapifies the candidates in O(V) and pops the most likely ones until their
 *    mass reaches top_p: O(V + m log V) for a nucleus of m tokens, O(V log V) at worst.
 *  - top-p after top-k walks the k sorted tokens.
 * Heaps order by the scaled logits (not by their exps, which can round two different logits
 * to one weight), so "the k largest" is exact; exp runs once per token that can still be
 * drawn. Arithmetic after the temperature is in double: logit / T cannot overflow and the
 * cumulative sums of top-p keep the small probabilities. The buffers are allocated once by
 * road_sampler_create; sampling itself never allocates.
 *
 * Logit processing before all that (vLLM's order): logit_bias added, then the repetition
 * penalty on every token of the prompt or the output, then frequency and presence penalties on
 * the output's tokens, into a float copy of the row (the caller's logits are never written).
 * The output's counts are kept per token id, and the processing touches only the ids seen, so
 * a step costs O(V) for the copy plus O(distinct tokens seen). min_p (after temperature) keeps
 * the tokens whose weight exp(x - max x) is at least min_p, before top-k and top-p.
 *
 * Reproducibility: every non-greedy call draws exactly one uniform number from the sampler's
 * own xoshiro256** stream (core/rng.h), whatever the logits, so a seed fixes the whole
 * sequence of draws. A sampler is not thread-safe; use one per sequence.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "road/llm.h"

/* top_p is a float (0.8f is 0.800000012) and probabilities come from float32 logits (their
 * rounding moves a probability by ~1e-7 of itself), so a prefix whose exact mass equals top_p
 * can land a few 1e-8 on either side of it. The nucleus is complete once its mass is within
 * this much of top_p: far below any difference between two meaningful top_p settings, and
 * it makes "probabilities 0.5, 0.3, ... with top_p 0.8" keep exactly two tokens. */
#define TOP_P_SLACK 1e-6

struct road_sampler {
    road_sampler_params p;
    int64_t vocab;
    road_rng rng;
    double *x;    /* (V) logits / temperature; -Inf: not a candidate */
    double *w;    /* (V) exp(x - max x): unnormalized probabilities of the candidates */
    int32_t *ids; /* (V) candidate ids, arranged as a heap while filtering */
    /* logit processing (NULL when the params ask for none) */
    road_logit_bias *bias; /* p.logit_bias's copy */
    float *adj;            /* (V) the processed row */
    int32_t *count;        /* (V) times each id was returned */
    uint8_t *in_prompt;    /* (V) 1: in the prompt */
    int32_t *seen;         /* ids with count > 0 or in the prompt, each once */
    int64_t n_seen;
};

road_sampler_params road_sampler_default_params(void) {
    road_sampler_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    return p;
}

static bool penalized(const road_sampler_params *p) {
    return p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f ||
           (p->repetition_penalty != 0.0f && p->repetition_penalty != 1.0f);
}

/* A finite number, named for the message. */
static road_status check_finite(const char *name, float v) {
    if (isfinite(v)) return ROAD_OK;
    return road__error(ROAD_ERR_INVALID_ARG, "%s must be a finite number, got %g", name, (double)v);
}

road_status road_sampler_create(const road_sampler_params *p, int64_t vocab, road_sampler **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_sampler_create: out is NULL");
    *out = NULL;
    if (!p) return road__error(ROAD_ERR_INVALID_ARG, "road_sampler_create: params is NULL");
    if (vocab < 1 || vocab > INT32_MAX)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "vocab must be from 1 to %d (token ids are int32), got %lld", INT32_MAX,
                           (long long)vocab);
    if (!isfinite(p->temperature) || p->temperature < 0.0f)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "temperature must be a finite number >= 0 (0: greedy), got %g",
                           (double)p->temperature);
    if (p->top_k < 0)
        return road__error(ROAD_ERR_INVALID_ARG, "top_k must be >= 0 (0: off), got %d",
                           (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return road__error(ROAD_ERR_INVALID_ARG, "top_p must be in (0, 1] (1: off), got %g",
                           (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return road__error(ROAD_ERR_INVALID_ARG, "min_p must be in [0, 1] (0: off), got %g",
                           (double)p->min_p);
    road_status cs = check_finite("presence_penalty", p->presence_penalty);
    if (cs == ROAD_OK) cs = check_finite("frequency_penalty", p->frequency_penalty);
    if (cs == ROAD_OK) cs = check_finite("repetition_penalty", p->repetition_penalty);
    if (cs != ROAD_OK) return cs;
    if (p->repetition_penalty < 0.0f)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "repetition_penalty must be > 0 (1: off; > 1 discourages repeats), "
                           "got %g",
                           (double)p->repetition_penalty);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return road__error(ROAD_ERR_INVALID_ARG, "logit_bias: %d entries but no array",
                           (int)p->n_logit_bias);
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias[i].id < 0 || p->logit_bias[i].id >= vocab)
            return road__error(ROAD_ERR_INVALID_ARG,
                               "logit_bias: token id %d is outside the vocabulary (0..%lld)",
                               (int)p->logit_bias[i].id, (long long)(vocab - 1));
        if (!isfinite(p->logit_bias[i].bias))
            return road__error(ROAD_ERR_INVALID_ARG, "logit_bias of token %d must be finite",
                               (int)p->logit_bias[i].id);
    }
    road_sampler *s = road__calloc(1, sizeof *s);
    if (!s) return ROAD_ERR_NO_MEMORY;
    s->p = *p;
    s->p.logit_bias = NULL;
    s->vocab = vocab;
    road__rng_seed(&s->rng, p->seed);
    bool ok = true;
    /* Greedy needs no buffers. */
    if (p->temperature > 0.0f) {
        s->x = road__calloc((size_t)vocab, sizeof *s->x);
        s->w = road__calloc((size_t)vocab, sizeof *s->w);
        s->ids = road__calloc((size_t)vocab, sizeof *s->ids);
        ok = s->x && s->w && s->ids;
    }
    if (ok && p->n_logit_bias > 0) {
        s->bias = road__malloc(sizeof *s->bias * (size_t)p->n_logit_bias);
        if ((ok = s->bias != NULL))
            memcpy(s->bias, p->logit_bias, sizeof *s->bias * (size_t)p->n_logit_bias);
        s->p.logit_bias = s->bias;
    }
    if (ok && (p->n_logit_bias > 0 || penalized(p)))
        ok = (s->adj = road__malloc(sizeof *s->adj * (size_t)vocab)) != NULL;
    if (ok && penalized(p)) {
        s->count = road__calloc((size_t)vocab, sizeof *s->count);
        s->in_prompt = road__calloc((size_t)vocab, sizeof *s->in_prompt);
        s->seen = road__calloc((size_t)vocab, sizeof *s->seen);
        ok = s->count && s->in_prompt && s->seen;
    }
    if (!ok) {
        road_sampler_free(s);
        return ROAD_ERR_NO_MEMORY;
    }
    *out = s;
    return ROAD_OK;
}

void road_sampler_free(road_sampler *s) {
    if (!s) return;
    road__free(s->x);
    road__free(s->w);
    road__free(s->ids);
    road__free(s->bias);
    road__free(s->adj);
    road__free(s->count);
    road__free(s->in_prompt);
    road__free(s->seen);
    road__free(s);
}

road_status road_sampler_set_prompt(road_sampler *s, const road_token *ids, int64_t n) {
    if (!s || n < 0 || (n > 0 && !ids))
        return road__error(ROAD_ERR_INVALID_ARG, "road_sampler_set_prompt: bad arguments");
    if (!s->in_prompt) return ROAD_OK; /* no penalties */
    /* forget the old prompt: drop ids seen only there */
    int64_t m = 0;
    for (int64_t j = 0; j < s->n_seen; j++) {
        const int32_t id = s->seen[j];
        s->in_prompt[id] = 0;
        if (s->count[id] > 0) s->seen[m++] = id;
    }
    s->n_seen = m;
    for (int64_t i = 0; i < n; i++) {
        const road_token id = ids[i];
        if (id < 0 || id >= s->vocab || s->in_prompt[id]) continue;
        s->in_prompt[id] = 1;
        if (s->count[id] == 0) s->seen[s->n_seen++] = id;
    }
    return ROAD_OK;
}

/* The row after logit_bias and the penalties (s->adj), or logits itself when there are none. */
static const float *process(road_sampler *s, const float *logits) {
    if (!s->adj) return logits;
    float *a = s->adj;
    memcpy(a, logits, sizeof *a * (size_t)s->vocab);
    for (int32_t i = 0; i < s->p.n_logit_bias; i++) a[s->bias[i].id] += s->bias[i].bias;
    if (!s->count) return a;
    const float rp = s->p.repetition_penalty;
    const bool rep = rp != 0.0f && rp != 1.0f;
    for (int64_t j = 0; j < s->n_seen; j++) {
        const int32_t id = s->seen[j];
        float l = a[id];
        if (rep) l = l > 0.0f ? l / rp : l * rp;
        const int32_t c = s->count[id];
        if (c > 0) l -= s->p.frequency_penalty * (float)c + s->p.presence_penalty;
        a[id] = l;
    }
    return a;
}

/* Count token t as output. */
static road_token record(road_sampler *s, road_token t) {
    if (s->count && t >= 0 && t < s->vocab) {
        if (s->count[t] == 0 && !s->in_prompt[t]) s->seen[s->n_seen++] = t;
        if (s->count[t] < INT32_MAX) s->count[t]++;
    }
    return t;
}

/* The largest logit, lowest id on ties; NaN never wins; 0 if nothing beats -Inf. */
static int32_t argmax(const float *logits, int64_t V) {
    int64_t best = 0;
    float bx = isnan(logits[0]) ? -INFINITY : logits[0];
    for (int64_t i = 1; i < V; i++) {
        if (logits[i] > bx) { /* false for NaN */
            bx = logits[i];
            best = i;
        }
    }
    return (int32_t)best;
}

/* ---- binary heaps of ids ordered by x descending, then id ascending ---------------------------
 */

/* a ranks before b: larger x, or equal x and smaller id. */
static bool above(const double *x, int32_t a, int32_t b) {
    return x[a] > x[b] || (x[a] == x[b] && a < b);
}

/* Restore the heap h[0..n) below i: a max-heap (best on top), or with `worst_on_top` a
 * min-heap (the k-th best on top, for selection). */
static void sift_down(const double *x, int32_t *h, int64_t n, int64_t i, bool worst_on_top) {
    int32_t v = h[i];
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && above(x, h[c + 1], h[c]) != worst_on_top) c++;
        if (above(x, h[c], v) == worst_on_top) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static void heapify(const double *x, int32_t *h, int64_t n, bool worst_on_top) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(x, h, n, i, worst_on_top);
}

/* Move the top of the heap h[0..n) to h[n-1] (heapsort order) and return it. */
static int32_t pop(const double *x, int32_t *h, int64_t n, bool worst_on_top) {
    int32_t top = h[0];
    h[0] = h[n - 1];
    h[n - 1] = top;
    if (n > 2) sift_down(x, h, n - 1, 0, worst_on_top);
    return top;
}

/* The k best of ids[0..n) (0 < k < n), moved to ids[0..k) and sorted best first. */
static void select_top_k(const double *x, int32_t *ids, int64_t n, int64_t k) {
    heapify(x, ids, k, true);
    for (int64_t j = k; j < n; j++) {
        if (above(x, ids[j], ids[0])) {
            ids[0] = ids[j];
            sift_down(x, ids, k, 0, true);
        }
    }
    /* Popping the worst to the back leaves the k sorted best first. */
    for (int64_t m = k; m > 1; m--) pop(x, ids, m, true);
}

/* ---- sampling -------------------------------------------------------------------------------- */

/* Draw from ids[0..n) with weights w[id] summing to z, given u in [0, 1). */
static int32_t draw(const double *w, const int32_t *ids, int64_t n, double z, double u) {
    const double target = u * z;
    double acc = 0.0;
    int32_t last = ids[0];
    for (int64_t j = 0; j < n; j++) {
        int32_t id = ids[j];
        if (w[id] <= 0.0) continue; /* underflowed: never drawn */
        acc += w[id];
        last = id;
        if (acc > target) return id;
    }
    return last; /* rounding left target >= acc: the last token with weight */
}

static int32_t sample_row(road_sampler *s, const float *logits);

int32_t road_sampler_sample(road_sampler *s, const float *logits) {
    if (!s || !logits) return -1;
    return record(s, sample_row(s, process(s, logits)));
}

static int32_t sample_row(road_sampler *s, const float *logits) {
    const int64_t V = s->vocab;
    if (s->p.temperature == 0.0f) return argmax(logits, V);
    const double u = road__rng_uniform(&s->rng); /* one draw per call, always */
    const double T = (double)s->p.temperature;
    double *x = s->x;
    int32_t *ids = s->ids;

    bool any_pinf = false;
    for (int64_t i = 0; i < V && !any_pinf; i++) any_pinf = logits[i] == INFINITY;
    int64_t n = 0;
    double xmax = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        float l = logits[i];
        double xi;
        if (any_pinf) {
            xi = l == INFINITY ? 0.0 : -INFINITY;
        } else {
            xi = isnan(l) || l == -INFINITY ? -INFINITY : (double)l / T;
        }
        x[i] = xi;
        if (xi > -INFINITY) {
            ids[n++] = (int32_t)i;
            if (xi > xmax) xmax = xi;
        }
    }
    if (n == 0) return 0;
    if (n == 1) return ids[0];
    if (s->p.min_p > 0.0f) {
        /* keep exp(x - xmax) >= min_p, i.e. x >= xmax + log(min_p); the best always stays */
        const double floor_x = xmax + log((double)s->p.min_p);
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++)
            if (x[ids[j]] >= floor_x) ids[m++] = ids[j];
        n = m;
        if (n == 1) return ids[0];
    }

    double *w = s->w;
    const int64_t k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    const bool nucleus = s->p.top_p < 1.0f;
    const double want = (double)s->p.top_p - TOP_P_SLACK;
    if (k < n) {
        /* top-k first; top-p then works on the k tokens renormalized. */
        select_top_k(x, ids, n, k);
        double zk = 0.0;
        for (int64_t j = 0; j < k; j++) zk += w[ids[j]] = exp(x[ids[j]] - xmax);
        if (!nucleus) return draw(w, ids, k, zk, u);
        int64_t m = 0;
        double zkept = 0.0;
        while (m < k) {
            zkept += w[ids[m++]];
            if (zkept >= want * zk) break;
        }
        return draw(w, ids, m, zkept, u);
    }
    double z = 0.0;
    for (int64_t j = 0; j < n; j++) z += w[ids[j]] = exp(x[ids[j]] - xmax);
    if (!nucleus) return draw(w, ids, n, z, u);
    /* Pop the most likely tokens until their mass reaches top_p. */
    heapify(x, ids, n, false);
    int64_t kept = 0; /* popped so far: ids[n-kept .. n-1], best at n-1 */
    double zkept = 0.0;
    while (kept < n) {
        zkept += w[pop(x, ids, n - kept, false)];
        kept++;
        if (zkept >= want * z) break;
    }
    /* The draw does not care about the order of the kept tokens. */
    return draw(w, ids + (n - kept), kept, zkept, u);
}

/* ---- log-probabilities --------------------------------------------------------------------- */

/* A logit as the distribution sees it: NaN counts as -Inf (as in the sampler). */
static double lp_logit(float l) {
    return isnan(l) ? -INFINITY : (double)l;
}

road_status road_logprobs(const float *logits, int64_t vocab, road_token token, int32_t n_top,
                          float *chosen_lp, road_token *top_ids, float *top_lps) {
    if (!logits || vocab < 1 || token < 0 || token >= vocab || !chosen_lp)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_logprobs: logits, vocabulary size or token out of range");
    if (n_top < 0 || n_top > ROAD_MAX_TOP_LOGPROBS || (n_top > 0 && (!top_ids || !top_lps)))
        return road__error(ROAD_ERR_INVALID_ARG, "road_logprobs: n_top must be 0..%d, got %d",
                           ROAD_MAX_TOP_LOGPROBS, (int)n_top);
    if (n_top > vocab) n_top = (int32_t)vocab;
    /* max, and whether +Inf is present (then the +Inf ones share the mass equally) */
    double mx = -INFINITY;
    int64_t n_pinf = 0;
    for (int64_t i = 0; i < vocab; i++) {
        const double l = lp_logit(logits[i]);
        if (l > mx) mx = l;
        n_pinf += l == INFINITY;
    }
    double lse;
    if (n_pinf > 0 || mx == -INFINITY) {
        lse = 0.0; /* handled per token below */
    } else {
        double sum = 0.0;
        for (int64_t i = 0; i < vocab; i++) sum += exp(lp_logit(logits[i]) - mx);
        lse = mx + log(sum);
    }
    /* the log-probability of id i */
#define LP_OF(i)                                                                                   \
    (n_pinf > 0        ? (lp_logit(logits[i]) == INFINITY ? -log((double)n_pinf) : -INFINITY)      \
     : mx == -INFINITY ? -log((double)vocab)                                                       \
                       : lp_logit(logits[i]) - lse)
    *chosen_lp = (float)LP_OF(token);
    if (n_top == 0) return ROAD_OK;
    /* the n_top best ids, kept sorted (best first, lower id first on ties: ids go by in
     * ascending order and only a strictly better one moves ahead of a kept one) */
    int32_t kept = 0;
    double best[ROAD_MAX_TOP_LOGPROBS];
    for (int64_t i = 0; i < vocab; i++) {
        const double l = LP_OF(i);
        if (kept == n_top && !(l > best[kept - 1])) continue;
        int32_t j = kept < n_top ? kept++ : kept - 1;
        while (j > 0 && l > best[j - 1]) {
            best[j] = best[j - 1];
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        best[j] = l;
        top_ids[j] = (road_token)i;
    }
#undef LP_OF
    for (int32_t j = 0; j < n_top; j++) top_lps[j] = (float)best[j];
    return ROAD_OK;
}
