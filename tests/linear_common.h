/*
 * tests/linear_common.h - helpers shared by test_linear.c and test_linear_golden.c: JSON and
 * golden access, layer construction, and the independent double-precision reference layer
 * written from the math in road/linear.h and the golden README. Header-only (static inline)
 * because each test is its own executable.
 *
 * Legend: R = rows (batch x tokens), I = in_features, D = out_features, P = entries of theta
 * (and of alpha) of one adapter. Row-major everywhere: x [R x I], y [R x D], W [D x I].
 */
#ifndef ROAD_TEST_LINEAR_COMMON_H
#define ROAD_TEST_LINEAR_COMMON_H

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "testutil.h"

/* Outputs vs PEFT use GOLDEN_ATOL / GOLDEN_RTOL (testutil.h, from the golden README). */

/* Unmerge outputs (golden README, "Tolerances"): atol = the case's suggested_unmerge_atol,
 * plus this rtol. */
#define UNMERGE_RTOL 1e-5
/* Where no case gives an atol (compose, our own round trips) we apply the README's rule that
 * produced suggested_unmerge_atol: 8 * eps_f32 * (block condition) * max(|W|, |W_merged|).
 * road unmerges with exact 2x2 inverses in double, so its error is below 1 * eps * cond * max;
 * the factor 8 is the README's margin. */
#define UNMERGE_EPS_FACTOR 8.0
/* Central differences of the double reference: truncation error ~h^2 (1e-8 relative), roundoff
 * ~1e-16/h (1e-12); both far below the float32 tolerance below. */
#define FD_STEP 1e-4
/* road's float32 gradients vs exact ones: the golden README's float32 bound (PEFT float32 vs
 * float64 shows the same magnitudes). A wrong sign, index or order gives O(1) errors. */
#define FD_ATOL GOLDEN_ATOL
#define FD_RTOL GOLDEN_RTOL

/* Tolerances scale with the block condition number (as PEFT's suggested_unmerge_atol does);
 * above this one they would say little, so such data is refused rather than tested loosely.
 * The golden files reach about 140. */
#define MAX_TOL_CONDITION 1000.0

/* Case counts from the golden README's table: a missing file or case fails the test. */
#define N_MERGE_CASES 10
#define N_COMPOSE_CASES 5
#define N_MIXED_CASES 3
#define N_E2E_CASES 2

/* Longest name list a case uses (adapters per layer, sequences per batch). */
#define MAX_NAMES 16

/* ---- small helpers ----------------------------------------------------------------------- */

static inline const cJSON *jget(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        print_error("JSON field '%s' is missing\n", key);
        fail();
    }
    return v;
}

static inline const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static inline int64_t jint(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    assert_true(cJSON_IsNumber(v));
    return (int64_t)v->valuedouble;
}

static inline double jnum(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static inline bool jbool(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    assert_true(cJSON_IsBool(v));
    return cJSON_IsTrue(v);
}

/* The strings of a JSON array into names[MAX_NAMES]; returns how many. */
static inline int jnames(const cJSON *arr, const char **names) {
    assert_true(cJSON_IsArray(arr));
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        assert_true(cJSON_IsString(e));
        assert_true(n < MAX_NAMES);
        names[n++] = e->valuestring;
    }
    return n;
}

/* The "cases" array of a sidecar, checked against the expected count. */
static inline const cJSON *golden_cases(const cJSON *root, int expected) {
    const cJSON *cases = jget(root, "cases");
    assert_true(cJSON_IsArray(cases));
    assert_int_equal(cJSON_GetArraySize(cases), expected);
    assert_int_equal(jint(root, "num_cases"), expected);
    return cases;
}

/* Rows of an input shape [..., last]: the product of the leading dims; checks last == in. */
static inline int64_t shape_rows(const cJSON *shape, int64_t in) {
    int n = cJSON_GetArraySize(shape);
    assert_true(n >= 1);
    int64_t rows = 1;
    for (int i = 0; i < n - 1; i++) rows *= (int64_t)cJSON_GetArrayItem(shape, i)->valuedouble;
    assert_int_equal((int64_t)cJSON_GetArrayItem(shape, n - 1)->valuedouble, in);
    return rows;
}

/* "<case>/<name>" for messages (static buffer). */
static inline const char *what(const char *id, const char *name) {
    static char buf[512];
    if (snprintf(buf, sizeof buf, "%s/%s", id, name) >= (int)sizeof buf) fail();
    return buf;
}

/* A golden tensor that must exist with exactly n elements. */
static inline const float *gold(const road_st_file *f, const char *id, const char *name, int64_t n) {
    int64_t have = -1;
    const float *p = tu_golden_req(f, id, name, &have);
    if (have != n) {
        print_error("golden %s/%s has %lld elements, expected %lld\n", id, name, (long long)have,
                    (long long)n);
        fail();
    }
    return p;
}

/* Written here rather than road_variant_parse, so a parsing bug cannot hide a layer bug. */
static inline road_variant variant_of(const char *s) {
    if (strcmp(s, "road_1") == 0) return ROAD_VARIANT_1;
    if (strcmp(s, "road_2") == 0) return ROAD_VARIANT_2;
    if (strcmp(s, "road_4") == 0) return ROAD_VARIANT_4;
    print_error("unknown variant '%s'\n", s);
    fail();
    return ROAD_VARIANT_1;
}

/* P for a layer with d outputs (golden README, "Per-element coefficients"). */
static inline int64_t n_params(road_variant v, int64_t d) {
    return v == ROAD_VARIANT_1 ? d / 2 : v == ROAD_VARIANT_2 ? d : 2 * d;
}

static inline float *falloc(int64_t n) {
    return tu_alloc((size_t)n * sizeof(float));
}

static inline double *dalloc(int64_t n) {
    return tu_alloc((size_t)n * sizeof(double));
}

static inline double max_abs(const float *x, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

/* A layer that copies w and b (borrow = false: the read-only golden mapping is never written). */
static inline road_linear *make_layer(int64_t in, int64_t d, const float *w, const float *b) {
    road_linear_params p = road_linear_default_params();
    p.in_features = in;
    p.out_features = d;
    p.weight = (float *)w;
    p.bias = (float *)b;
    road_linear *l = NULL;
    TU_OK(road_linear_create(&p, &l));
    assert_non_null(l);
    return l;
}

/* Add an adapter and give it the parameters theta, alpha [n]. */
static inline void add_with_params(road_linear *l, const char *name, road_variant v, int32_t gs,
                            const float *theta, const float *alpha, int64_t n) {
    TU_OK(road_linear_add_adapter(l, name, v, gs, true, 0));
    road_variant hv = ROAD_VARIANT_1;
    int32_t hgs = 0;
    int64_t hn = 0;
    TU_OK(road_linear_adapter_info(l, name, &hv, &hgs, &hn));
    assert_int_equal(hv, v);
    assert_int_equal(hgs, gs);
    assert_int_equal(hn, n);
    TU_OK(road_linear_set_params(l, name, theta, alpha, n));
}

/* The base output (adapters disabled); the layer must not be merged. */
static inline void forward_base(road_linear *l, int64_t rows, const float *x, float *y) {
    assert_int_equal(road_linear_merged_count(l), 0);
    bool was = road_linear_adapters_enabled(l);
    road_linear_enable_adapters(l, false);
    TU_OK(road_linear_forward(l, rows, x, y));
    road_linear_enable_adapters(l, was);
}

/* Random test data: a layer [d x in] with bias, x [rows x in]. */
typedef struct rand_layer {
    int64_t in, d, rows;
    float *w, *b, *x;
} rand_layer;

static inline rand_layer rand_layer_make(int64_t in, int64_t d, int64_t rows, uint64_t seed) {
    rand_layer r = {in, d, rows, falloc(d * in), falloc(d), falloc(rows * in)};
    tu_fill_uniform(r.w, d * in, seed, -1.0f, 1.0f);
    tu_fill_uniform(r.b, d, seed + 1, -0.5f, 0.5f);
    tu_fill_uniform(r.x, rows * in, seed + 2, -1.0f, 1.0f);
    return r;
}

static inline void rand_layer_free(rand_layer *r) {
    free(r->w);
    free(r->b);
    free(r->x);
}

/* Random parameters over a wide range (angles up to 1.2 rad, alpha from 0.6 to 1.4). road_1
 * blocks are scaled rotations; road_2 / road_4 blocks can be ill-conditioned, so tolerances
 * that depend on it use ref_block_condition, which refuses a seed drawing a near-singular one. */
static inline void rand_params(float *theta, float *alpha, int64_t n, uint64_t seed) {
    tu_fill_uniform(theta, n, seed, -1.2f, 1.2f);
    tu_fill_uniform(alpha, n, seed + 7, 0.6f, 1.4f);
}

/* ---- the double-precision reference layer (golden README, "RoAd conventions") ------------- */

typedef struct ref_adapter {
    road_variant v;
    int64_t gs, n;
    double *theta, *alpha; /* [P] */
} ref_adapter;

static inline ref_adapter ref_make(road_variant v, int64_t gs, int64_t d, const float *theta,
                            const float *alpha) {
    ref_adapter a = {v, gs, n_params(v, d), NULL, NULL};
    a.theta = dalloc(a.n);
    a.alpha = dalloc(a.n);
    for (int64_t i = 0; i < a.n; i++) {
        a.theta[i] = theta[i];
        a.alpha[i] = alpha[i];
    }
    return a;
}

static inline void ref_free(ref_adapter *a) {
    free(a->theta);
    free(a->alpha);
}

/* Per-feature f (c1) and s (c2), [D]: road_1 shares (g*h + j) over a pair, road_2 is per
 * feature, road_4 takes the cos part from the first gs entries of a group's 2*gs block and
 * the sin part from the next gs. */
static inline void ref_coeffs(const ref_adapter *a, int64_t d, double *c1, double *c2) {
    const int64_t gs = a->gs, h = gs / 2;
    for (int64_t i = 0; i < d; i++) {
        int64_t g = i / gs, k = i % gs, pc, ps;
        if (a->v == ROAD_VARIANT_1) {
            pc = ps = g * h + k % h;
        } else if (a->v == ROAD_VARIANT_2) {
            pc = ps = i;
        } else {
            pc = g * 2 * gs + k;
            ps = pc + gs;
        }
        c1[i] = a->alpha[pc] * cos(a->theta[pc]);
        c2[i] = a->alpha[ps] * sin(a->theta[ps]);
    }
}

/* y [R x D] <- RoAd(y): y'[a] = f[a] y[a] - s[a] y[b], y'[b] = f[b] y[b] + s[b] y[a]. */
static inline void ref_rotate(const ref_adapter *a, int64_t d, int64_t rows, double *y) {
    double *c1 = dalloc(d), *c2 = dalloc(d);
    ref_coeffs(a, d, c1, c2);
    const int64_t h = a->gs / 2;
    for (int64_t r = 0; r < rows; r++) {
        double *yr = y + r * d;
        for (int64_t ia = 0; ia < d; ia++) {
            if (ia % a->gs >= h) continue;
            int64_t ib = ia + h;
            double ya = yr[ia], yb = yr[ib];
            yr[ia] = c1[ia] * ya - c2[ia] * yb;
            yr[ib] = c1[ib] * yb + c2[ib] * ya;
        }
    }
    free(c1);
    free(c2);
}

/* y [R x D] = RoAd_last(... RoAd_first(x W^T + b)). w [D x I], b [D] or NULL, x [R x I]. */
static inline void ref_forward(int64_t in, int64_t d, const double *w, const double *b,
                        const ref_adapter *ads, int n_ad, int64_t rows, const double *x,
                        double *y) {
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t o = 0; o < d; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t k = 0; k < in; k++) acc += x[r * in + k] * w[o * in + k];
            y[r * d + o] = acc;
        }
    }
    for (int i = 0; i < n_ad; i++) ref_rotate(&ads[i], d, rows, y);
}

/* Largest condition number of the 2x2 blocks [[f_a, -s_a], [s_b, f_b]]: sigma_max / sigma_min
 * from sigma_max^2 + sigma_min^2 = |M|_F^2 and sigma_max * sigma_min = |det M|. For
 * tolerances only: fails above MAX_TOL_CONDITION. */
static inline double ref_block_condition(const ref_adapter *a, int64_t d) {
    double *c1 = dalloc(d), *c2 = dalloc(d), worst = 1.0;
    ref_coeffs(a, d, c1, c2);
    const int64_t h = a->gs / 2;
    for (int64_t ia = 0; ia < d; ia++) {
        if (ia % a->gs >= h) continue;
        int64_t ib = ia + h;
        double det = fabs(c1[ia] * c1[ib] + c2[ia] * c2[ib]);
        double fro = c1[ia] * c1[ia] + c2[ia] * c2[ia] + c1[ib] * c1[ib] + c2[ib] * c2[ib];
        double big = 0.5 * (fro + sqrt(fmax(fro * fro - 4.0 * det * det, 0.0)));
        worst = fmax(worst, det > 0.0 ? big / det : INFINITY);
    }
    free(c1);
    free(c2);
    assert_true(worst < MAX_TOL_CONDITION);
    return worst;
}

static inline double *to_double(const float *x, int64_t n) {
    double *y = dalloc(n > 0 ? n : 1);
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static inline void to_float(const double *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
}


#endif
