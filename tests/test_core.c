/*
 * tests/test_core.c - core/: status table and messages, the allocation wrapper (counting,
 * alignment, failure injection), the RNG (reproducible, right moments), BLAS wrappers against
 * naive double loops.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/blas.h"
#include "core/cpu.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/skinny.h"
#include <cblas.h>
#include "testutil.h"

static void test_status_table(void **state) {
    (void)state;
    assert_string_equal(road_status_name(ROAD_OK), "ok");
    assert_string_equal(road_status_name(ROAD_ERR_SHAPE), "shape");
    assert_string_equal(road_status_name(ROAD_ERR_NUMERIC), "numeric");
    assert_string_equal(road_status_name((road_status)999), "unknown");
    assert_string_equal(road_status_message((road_status)-1), "unknown status");
    for (int s = 0; s < ROAD_STATUS_COUNT_; s++) {
        assert_true(strlen(road_status_name((road_status)s)) > 0);
        assert_true(strlen(road_status_message((road_status)s)) > 0);
        for (int t = 0; t < s; t++)
            assert_true(
                strcmp(road_status_name((road_status)s), road_status_name((road_status)t)) != 0);
    }
}

static void test_error_message(void **state) {
    (void)state;
    road_clear_error();
    assert_string_equal(road_last_error(), "");
    assert_int_equal(road__error(ROAD_ERR_SHAPE, "bad %d", 7), ROAD_ERR_SHAPE);
    assert_string_equal(road_last_error(), "bad 7");
    road__error_prefix("layer %s", "q_proj");
    assert_string_equal(road_last_error(), "layer q_proj: bad 7");
    /* a long message is truncated, never overflowed */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    road__error(ROAD_ERR_IO, "%s", big);
    road__error_prefix("%s", big);
    assert_true(strlen(road_last_error()) < 1024);
    assert_true(strlen(road_version()) >= 5);
}

static int log_calls;
static char log_last[256];
static void log_cb(road_log_level level, const char *msg, void *user) {
    (void)user;
    log_calls += level == ROAD_LOG_WARN;
    strncpy(log_last, msg, sizeof log_last - 1);
}

static void test_log_callback(void **state) {
    (void)state;
    road__log(ROAD_LOG_WARN, "dropped %d", 1); /* no callback: nothing happens */
    road_log_set_callback(log_cb, NULL);
    road__log(ROAD_LOG_WARN, "hello %s", "there");
    assert_int_equal(log_calls, 1);
    assert_string_equal(log_last, "hello there");
    road_log_set_callback(NULL, NULL);
}

static void test_alloc(void **state) {
    (void)state;
    int64_t b0 = road__alloc_live_bytes(), c0 = road__alloc_live_count();
    void *p = road__malloc(100), *q = road__calloc(10, 8);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)p % ROAD_ALIGN, 0);
    assert_int_equal((uintptr_t)q % ROAD_ALIGN, 0);
    for (int i = 0; i < 80; i++) assert_int_equal(((unsigned char *)q)[i], 0);
    assert_int_equal(road__alloc_live_bytes() - b0, 180);
    assert_int_equal(road__alloc_live_count() - c0, 2);
    memset(p, 7, 100);
    p = road__realloc(p, 1000);
    assert_int_equal(((unsigned char *)p)[99], 7);
    road__free(p);
    road__free(q);
    road__free(NULL);
    assert_int_equal(road__alloc_live_bytes(), b0);
    /* overflow refused with a message, not wrapped around */
    assert_null(road__calloc(SIZE_MAX / 2, 4));
    assert_non_null(strstr(road_last_error(), "overflows"));
    assert_null(road__malloc(SIZE_MAX - 8));
    size_t out;
    assert_int_equal(road__size_mul(SIZE_MAX, 2, &out), -1);
    assert_int_equal(road__size_mul(3, 4, &out), 0);
    assert_int_equal(out, 12);
    /* failure injection: the third allocation fails */
    road__alloc_fail_after(2);
    void *a = road__malloc(1), *b = road__malloc(1), *c = road__malloc(1), *d = road__malloc(1);
    road__alloc_fail_after(-1);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_non_null(d);
    road__free(a), road__free(b), road__free(d);
    char *s = road__strdup("road");
    assert_string_equal(s, "road");
    road__free(s);
    assert_int_equal(road__alloc_live_bytes(), b0);
}

static void test_rng(void **state) {
    (void)state;
    road_rng a, b;
    road__rng_seed(&a, 42);
    road__rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) assert_true(road__rng_u64(&a) == road__rng_u64(&b));
    road__rng_seed(&b, 43);
    assert_true(road__rng_u64(&a) != road__rng_u64(&b));
    /* N(1, 0.5): sample mean and std within 5 standard errors (n = 200000) */
    enum { N = 200000 };
    float *x = tu_alloc(sizeof(float) * N);
    road__rng_seed(&a, 7);
    road__rng_fill_normal(&a, x, N, 1.0f, 0.5f);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += x[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (x[i] - m) * (x[i] - m);
    v /= N - 1;
    assert_true(fabs(m - 1.0) < 5 * 0.5 / sqrt(N));
    assert_true(fabs(sqrt(v) - 0.5) < 5 * 0.5 / sqrt(2.0 * N));
    double u = 0;
    for (int i = 0; i < N; i++) {
        double r = road__rng_uniform(&a);
        assert_true(r >= 0.0 && r < 1.0);
        u += r;
    }
    assert_true(fabs(u / N - 0.5) < 5 * sqrt(1.0 / 12 / N));
    free(x);
}

static void test_sgemm(void **state) {
    (void)state;
    const int64_t rows = 5, out = 7, in = 9;
    float x[45], w[63], b[7], y[35], dy[35], dx[45];
    tu_fill_uniform(x, 45, 1, -1, 1);
    tu_fill_uniform(w, 63, 2, -1, 1);
    tu_fill_uniform(b, 7, 3, -1, 1);
    tu_fill_uniform(dy, 35, 4, -1, 1);
    road__sgemm_xwt(rows, out, in, x, w, b, y);
    road__sgemm_dyw(rows, out, in, dy, w, dx);
    float want[45];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b[o];
            for (int64_t k = 0; k < in; k++) s += (double)x[r * in + k] * w[o * in + k];
            want[r * out + o] = (float)s;
        }
    tu_assert_close("x W^T + b", y, want, rows * out, 1e-6, 1e-6);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < in; k++) {
            double s = 0;
            for (int64_t o = 0; o < out; o++) s += (double)dy[r * out + o] * w[o * in + k];
            want[r * in + k] = (float)s;
        }
    tu_assert_close("dY W", dx, want, rows * in, 1e-6, 1e-6);
    road__sgemm_xwt(rows, out, in, x, w, NULL, y);
    for (int64_t o = 0; o < out; o++) {
        double s = 0;
        for (int64_t k = 0; k < in; k++) s += (double)x[k] * w[o * in + k];
        assert_true(fabs(y[o] - s) < 1e-5);
    }
}

/* The few-rows matmul (decode path of road__sgemm_xwt) against a double-precision reference:
 * float dot products of length `in` with values in [-1, 1] are off by at most about
 * in * eps * max|x||w| in the worst case; 1e-4 relative to sqrt(in) is far above the
 * typical error and far below any indexing mistake. */
#define SKINNY_TOL 1e-4

/* Every x86 version the CPU has (not only the one dispatch picks), against want, and batch
 * invariant (a row alone gives the bits it gives in the batch); a version the CPU lacks is
 * reported once, not passed. */
static void check_skinny_variants(int64_t rows, int64_t out, int64_t in, const float *x,
                                  const float *w, const float *bias, const float *want,
                                  double tol) {
#if defined(__x86_64__)
    typedef void (*skinny_fn)(int64_t, int64_t, int64_t, const float *, const float *,
                              const float *, float *);
    const skinny_fn fns[] = {road__skinny_avx2, road__skinny_avx512};
    const char *const names[] = {"skinny avx2", "skinny avx512"};
    const bool has[] = {road__cpu_has_avx2_fma(), road__cpu_has_avx512()};
    static bool noted[2];
    float *y = tu_alloc(sizeof(float) * (size_t)(rows * out));
    float *y1 = tu_alloc(sizeof(float) * (size_t)out);
    for (int v = 0; v < 2; v++) {
        if (!has[v]) {
            if (!noted[v]) print_message("%s skipped: this CPU lacks it\n", names[v]);
            noted[v] = true;
            continue;
        }
        fns[v](rows, out, in, x, w, bias, y);
        tu_assert_close(names[v], y, want, rows * out, tol, 0);
        for (int64_t r = 0; r < rows; r++) {
            fns[v](1, out, in, x + r * in, w, bias, y1);
            tu_assert_equal_f32(names[v], y1, y + r * out, out);
        }
    }
    free(y), free(y1);
#else
    (void)rows, (void)out, (void)in, (void)x, (void)w, (void)bias, (void)want, (void)tol;
#endif
}

static void test_skinny(void **state) {
    (void)state;
    const int64_t ins[] = {1, 7, 8, 9, 64, 333, 2048};
    const int64_t outs[] = {1, 5, 33, 300};
    for (int64_t rows = 1; rows <= ROAD_SKINNY_MAX_ROWS; rows++)
        for (size_t a = 0; a < sizeof ins / sizeof ins[0]; a++)
            for (size_t b = 0; b < sizeof outs / sizeof outs[0]; b++) {
                const int64_t in = ins[a], out = outs[b];
                float *x = tu_alloc(sizeof(float) * (size_t)(rows * in));
                float *w = tu_alloc(sizeof(float) * (size_t)(out * in));
                float *bias = tu_alloc(sizeof(float) * (size_t)out);
                float *y = tu_alloc(sizeof(float) * (size_t)(rows * out));
                float *yr = tu_alloc(sizeof(float) * (size_t)(rows * out));
                float *want = tu_alloc(sizeof(float) * (size_t)(rows * out));
                tu_fill_uniform(x, rows * in, 1 + (uint64_t)a, -1, 1);
                tu_fill_uniform(w, out * in, 2 + (uint64_t)b, -1, 1);
                tu_fill_uniform(bias, out, 3, -1, 1);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t o = 0; o < out; o++) {
                        double acc = bias[o];
                        for (int64_t k = 0; k < in; k++)
                            acc += (double)x[r * in + k] * w[o * in + k];
                        want[r * out + o] = (float)acc;
                    }
                road__sgemm_xwt(rows, out, in, x, w, bias, y);
                road__skinny_reference(rows, out, in, x, w, bias, yr);
                double tol = SKINNY_TOL * sqrt((double)in);
                tu_assert_close("skinny (dispatched)", y, want, rows * out, tol, 0);
                tu_assert_close("skinny (reference)", yr, want, rows * out, tol, 0);
                check_skinny_variants(rows, out, in, x, w, bias, want, tol);
                /* batch invariance: each row alone gives the same bits as in the batch (the
                 * serving engine relies on it: a sequence's tokens must not depend on its
                 * neighbours) */
                for (int64_t r = 0; r < rows; r++) {
                    road__sgemm_xwt(1, out, in, x + r * in, w, bias, yr);
                    tu_assert_equal_f32("skinny row alone vs in the batch", yr, y + r * out, out);
                }
                free(x), free(w), free(bias), free(y), free(yr), free(want);
            }
}

static void test_threads(void **state) {
    (void)state;
#ifdef ROAD_BLAS_IS_OPENMP
    /* The build linked the OpenMP OpenBLAS; the run-time path must load that one too (both
     * builds share a soname). openblas_get_parallel(): 0 serial, 1 pthreads, 2 OpenMP. */
    assert_int_equal(openblas_get_parallel(), 2);
#endif
    road_set_num_threads(1);
    assert_int_equal(road_get_num_threads(), 1);
    road_set_num_threads(2);
#ifdef _OPENMP
    assert_int_equal(road_get_num_threads(), 2);
#endif
    road_set_num_threads(0);
    assert_true(road_get_num_threads() >= 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_table), cmocka_unit_test(test_error_message),
        cmocka_unit_test(test_log_callback), cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_rng),          cmocka_unit_test(test_sgemm),
        cmocka_unit_test(test_skinny),       cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
