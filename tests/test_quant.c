/*
 * tests/test_quant.c - quant/ formats: the code tables and every quantization case of
 * tests/fixtures/quant (computed by tools/quantref/quantref.py with numpy and torch, see its
 * PROVENANCE.md), bit for bit: packed codes, absmax, double-quantization state, dequantized
 * weights. Also: all-zero blocks and rows, sizes not divisible by the block, NaN / Inf refusal,
 * requantize, wrap, sizes, format names, and out-of-memory at every allocation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "testutil.h"

#define FIXTURE "quant/quant.safetensors"

static const road_st_tensor *req(const road_st_file *f, const char *c, const char *name,
                                 road_dtype dt) {
    const road_st_tensor *t = tu_golden_info(f, c, name);
    if (!t || t->dtype != dt) {
        print_error("fixture %s/%s missing or not %s\n", c, name, road_dtype_name(dt));
        fail();
    }
    return t;
}

static void assert_bytes(const char *what, const uint8_t *a, const uint8_t *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            print_error("%s: byte %lld is 0x%02x, reference 0x%02x\n", what, (long long)i, a[i],
                        b[i]);
            fail();
        }
}

static void test_tables(void **state) {
    (void)state;
    road_st_file *f = tu_open_golden(FIXTURE);
    int64_t n;
    const float *nf4 = tu_golden_req(f, "tables", "nf4", &n);
    assert_int_equal(n, 16);
    tu_assert_equal_f32("nf4 table", road_qcode_table(ROAD_QFORMAT_NF4), nf4, 16);
    const float *fp4 = tu_golden_req(f, "tables", "fp4", &n);
    tu_assert_equal_f32("fp4 table", road_qcode_table(ROAD_QFORMAT_FP4), fp4, 16);
    const float *dm = tu_golden_req(f, "tables", "dynamic_map", &n);
    assert_int_equal(n, 256);
    tu_assert_equal_f32("dynamic map", road_qdynamic_map(), dm, 256);
    assert_null(road_qcode_table(ROAD_QFORMAT_INT8));
    road_st_close(f);
}

static road_qformat fmt_of(const char *s) {
    road_qformat q = ROAD_QFORMAT_NONE;
    TU_OK(road_qformat_parse(s, &q));
    return q;
}

/* Every fixture case: quantize its w, compare everything, dequantize, compare. */
static void test_fixture_cases(void **state) {
    (void)state;
    road_st_file *f = tu_open_golden(FIXTURE);
    cJSON *js = tu_load_json("quant/quant.json");
    const cJSON *cases = cJSON_GetObjectItem(js, "cases");
    int checked = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        road_qformat fmt = fmt_of(cJSON_GetObjectItem(c, "format")->valuestring);
        int64_t rows = (int64_t)cJSON_GetObjectItem(c, "rows")->valuedouble;
        int64_t cols = (int64_t)cJSON_GetObjectItem(c, "cols")->valuedouble;
        bool dq = cJSON_IsTrue(cJSON_GetObjectItem(c, "double_quant"));
        const float *w = (const float *)req(f, name, "w", ROAD_DTYPE_F32)->data;
        road_qtensor *q = NULL;
        TU_OK(road_qtensor_quantize(fmt, rows, cols, w, dq, &q));
        assert_int_equal(q->double_quant, dq);
        const road_st_tensor *data = req(f, name, "data", ROAD_DTYPE_U8);
        assert_int_equal(data->numel, road_qtensor_data_bytes(fmt, rows, cols));
        char what[128];
        snprintf(what, sizeof what, "%s data", name);
        assert_bytes(what, q->data, data->data, data->numel);
        if (dq) {
            const road_st_tensor *qa = req(f, name, "qabsmax", ROAD_DTYPE_U8);
            assert_int_equal(qa->numel, q->n_blocks);
            snprintf(what, sizeof what, "%s qabsmax", name);
            assert_bytes(what, q->qabsmax, qa->data, qa->numel);
            const road_st_tensor *na = req(f, name, "nested_absmax", ROAD_DTYPE_F32);
            tu_assert_equal_f32("nested absmax", q->nested_absmax, na->data, na->numel);
            const float *off = req(f, name, "nested_offset", ROAD_DTYPE_F32)->data;
            tu_assert_equal_f32("nested offset", &q->nested_offset, off, 1);
        } else {
            const road_st_tensor *a = req(f, name, "absmax", ROAD_DTYPE_F32);
            assert_int_equal(a->numel, q->n_blocks);
            tu_assert_equal_f32("absmax", q->absmax, a->data, a->numel);
        }
        /* dequantize with every kernel, and rows one at a time and all together */
        const float *deq = (const float *)req(f, name, "deq", ROAD_DTYPE_F32)->data;
        float *out = tu_alloc(sizeof(float) * (size_t)(rows * cols));
        for (int k = ROAD_QKERNEL_REFERENCE; k <= ROAD_QKERNEL_AVX2; k++) {
            if (road_qkernel_select((road_qkernel)k) != ROAD_OK) continue;
            memset(out, 0xff, sizeof(float) * (size_t)(rows * cols));
            TU_OK(road_qtensor_dequantize_rows(q, 0, rows, out));
            snprintf(what, sizeof what, "%s dequantized (kernel %d)", name, k);
            tu_assert_equal_f32(what, out, deq, rows * cols);
            for (int64_t r = 0; r < rows; r++)
                TU_OK(road_qtensor_dequantize_rows(q, r, 1, out + r * cols));
            tu_assert_equal_f32(what, out, deq, rows * cols);
        }
        TU_OK(road_qkernel_select(ROAD_QKERNEL_AUTO));
        /* requantizing the dequantized weights of a tensor with plain absmax is a fixed point
         * for int8 and 4-bit: every value is already a code times its absmax (up to the sign
         * of FP4's -0, so values are compared, not codes) */
        if (!dq) {
            road_qtensor *q2 = NULL;
            TU_OK(road_qtensor_quantize(fmt, rows, cols, deq, false, &q2));
            TU_OK(road_qtensor_dequantize_rows(q2, 0, rows, out));
            snprintf(what, sizeof what, "%s requantized", name);
            tu_assert_close(what, out, deq, rows * cols, 0.0, 0.0);
            road_qtensor_free(q2);
        }
        /* requantize in place from w gives the same bytes */
        memset(q->data, 0, (size_t)data->numel);
        TU_OK(road_qtensor_requantize(q, w));
        assert_bytes("requantize", q->data, data->data, data->numel);
        free(out);
        road_qtensor_free(q);
        checked++;
    }
    assert_true(checked >= 8);
    cJSON_Delete(js);
    road_st_close(f);
}

/* A block of zeros stays zeros (absmax 0, no NaN), including with double quantization. */
static void test_zero_blocks(void **state) {
    (void)state;
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4, ROAD_QFORMAT_FP4};
    float w[3 * 70];
    memset(w, 0, sizeof w);
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++)
        for (int dq = 0; dq < 2; dq++) {
            road_qtensor *q = NULL;
            TU_OK(road_qtensor_quantize(fmts[i], 3, 70, w, dq, &q));
            float out[3 * 70];
            TU_OK(road_qtensor_dequantize_rows(q, 0, 3, out));
            tu_assert_equal_f32("all-zero matrix", out, w, 3 * 70);
            road_qtensor_free(q);
        }
}

static void test_refuses_nonfinite(void **state) {
    (void)state;
    float w[4 * 64];
    tu_fill_uniform(w, 4 * 64, 3, -1, 1);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        float v = w[2 * 64 + 5];
        w[2 * 64 + 5] = bad[i];
        road_qtensor *q = (road_qtensor *)1;
        TU_FAILS(road_qtensor_quantize(ROAD_QFORMAT_NF4, 4, 64, w, true, &q), ROAD_ERR_NUMERIC,
                 "row 2, column 5");
        assert_null(q);
        TU_FAILS(road_qtensor_quantize(ROAD_QFORMAT_INT8, 4, 64, w, false, &q), ROAD_ERR_NUMERIC,
                 i == 0 ? "NaN" : "infinite");
        w[2 * 64 + 5] = v;
    }
    /* requantize refuses and leaves the tensor as it was */
    road_qtensor *q = NULL;
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_FP4, 4, 64, w, false, &q));
    uint8_t before[128];
    memcpy(before, q->data, 128);
    w[7] = NAN;
    TU_FAILS(road_qtensor_requantize(q, w), ROAD_ERR_NUMERIC, "NaN");
    assert_memory_equal(before, q->data, 128);
    road_qtensor_free(q);
}

static void test_args_and_sizes(void **state) {
    (void)state;
    road_qformat f;
    TU_OK(road_qformat_parse("nf4", &f));
    assert_int_equal(f, ROAD_QFORMAT_NF4);
    TU_OK(road_qformat_parse("none", &f));
    assert_int_equal(f, ROAD_QFORMAT_NONE);
    TU_FAILS(road_qformat_parse("q4_0", &f), ROAD_ERR_INVALID_ARG, "int8, nf4, fp4, bf16 or f16");
    assert_string_equal(road_qformat_name(ROAD_QFORMAT_FP4), "fp4");
    assert_string_equal(road_qformat_name((road_qformat)9), "?");
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    road_qtensor *q = NULL;
    TU_FAILS(road_qtensor_quantize(ROAD_QFORMAT_NONE, 2, 4, w, false, &q), ROAD_ERR_INVALID_ARG,
             "format");
    TU_FAILS(road_qtensor_quantize(ROAD_QFORMAT_NF4, 0, 4, w, false, &q), ROAD_ERR_SHAPE, "size");
    TU_FAILS(road_qtensor_quantize(ROAD_QFORMAT_NF4, 2, 4, NULL, false, &q), ROAD_ERR_INVALID_ARG,
             NULL);
    /* bytes: 4-bit 4096 x 4096 = 8 MiB of codes + 262144 absmax (1 MiB), or with double quant
     * 256 KiB of qabsmax + 1024 nested floats */
    assert_int_equal(road_qtensor_data_bytes(ROAD_QFORMAT_NF4, 4096, 4096), 8 << 20);
    assert_int_equal(road_qtensor_data_bytes(ROAD_QFORMAT_FP4, 3, 5), 8);
    assert_int_equal(road_qtensor_data_bytes(ROAD_QFORMAT_INT8, 3, 5), 15);
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_NF4, 2, 4, w, true, &q));
    assert_int_equal(q->n_blocks, 1);
    assert_int_equal(road_qtensor_bytes(q), 4 + 1 + 4);
    /* int8 ignores double_quant */
    road_qtensor *q8 = NULL;
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_INT8, 2, 4, w, true, &q8));
    assert_false(q8->double_quant);
    assert_int_equal(road_qtensor_bytes(q8), 8 + 2 * 4);
    /* wrap: a view over q's arrays dequantizes the same */
    road_qtensor t = *q, *v = NULL;
    TU_OK(road_qtensor_wrap(&t, &v));
    assert_false(v->owned);
    float a[8], b[8];
    TU_OK(road_qtensor_dequantize_rows(q, 0, 2, a));
    TU_OK(road_qtensor_dequantize_rows(v, 0, 2, b));
    tu_assert_equal_f32("wrapped", a, b, 8);
    road_qtensor_free(v); /* frees the view only */
    t.qabsmax = NULL;
    TU_FAILS(road_qtensor_wrap(&t, &v), ROAD_ERR_INVALID_ARG, "qabsmax");
    TU_FAILS(road_qtensor_dequantize_rows(q, 1, 2, a), ROAD_ERR_INVALID_ARG, "out of range");
    road_qtensor_free(q);
    road_qtensor_free(q8);
    road_qtensor_free(NULL);
}

/* Out of memory at every allocation of quantize and of the matmuls: an error, no leak. */
/* bf16 / f16 "quantization" is the checkpoint's own rounding: each weight rounded to nearest
 * even (road_f32_to_bf16 / road_f32_to_f16, checked bit for bit against numpy in
 * test_dtype), widened back exactly; 2 bytes a weight, no absmax; copies and wraps keep the
 * values; a weight past f16's range is refused rather than made infinite. */
static void test_half_formats(void **state) {
    (void)state;
    enum { R = 5, C = 37 };
    float w[R * C], back[R * C];
    tu_fill_uniform(w, R * C, 11, -3, 3);
    w[0] = 1.0f + 1.0f / 256.0f; /* a tie for bf16: rounds to even (1.0) */
    const road_qformat fmts[] = {ROAD_QFORMAT_BF16, ROAD_QFORMAT_F16};
    for (int fi = 0; fi < 2; fi++) {
        const bool bf = fmts[fi] == ROAD_QFORMAT_BF16;
        assert_false(road_qformat_is_quantized(fmts[fi]));
        road_qtensor *q = NULL, *c = NULL, *wq = NULL;
        TU_OK(road_qtensor_quantize(fmts[fi], R, C, w, false, &q));
        assert_int_equal(road_qtensor_bytes(q), 2 * R * C);
        assert_int_equal(q->n_blocks, 0);
        assert_null(q->absmax);
        TU_OK(road_qtensor_dequantize_rows(q, 0, R, back));
        for (int i = 0; i < R * C; i++) {
            const float want = bf ? road_bf16_to_f32(road_f32_to_bf16(w[i]))
                                  : road_f16_to_f32(road_f32_to_f16(w[i]));
            if (back[i] != want) fail_msg("%s[%d]: %.9g, want %.9g", road_qformat_name(fmts[fi]), i,
                                          (double)back[i], (double)want);
        }
        if (bf) assert_true(back[0] == 1.0f);
        TU_OK(road_qtensor_copy(q, &c));
        road_qtensor desc = *q;
        TU_OK(road_qtensor_wrap(&desc, &wq));
        float b2[R * C], b3[R * C];
        TU_OK(road_qtensor_dequantize_rows(c, 0, R, b2));
        TU_OK(road_qtensor_dequantize_rows(wq, 0, R, b3));
        assert_memory_equal(b2, back, sizeof back);
        assert_memory_equal(b3, back, sizeof back);
        road_qtensor_free(wq);
        road_qtensor_free(c);
        road_qtensor_free(q);
    }
    assert_true(road_qformat_is_quantized(ROAD_QFORMAT_NF4));
    w[3] = 70000.0f;
    road_qtensor *q = NULL;
    TU_FAILS(road_qtensor_quantize(ROAD_QFORMAT_F16, R, C, w, false, &q), ROAD_ERR_NUMERIC,
             "float16's range");
    TU_OK(road_qtensor_quantize(ROAD_QFORMAT_BF16, R, C, w, false, &q));
    road_qtensor_free(q);
}

static void test_oom(void **state) {
    (void)state;
    enum { R = 40, K = 192, ROWS = 12 };
    float *w = tu_alloc(sizeof(float) * R * K), *x = tu_alloc(sizeof(float) * ROWS * K);
    float *y = tu_alloc(sizeof(float) * ROWS * R), *dx = tu_alloc(sizeof(float) * ROWS * K);
    tu_fill_uniform(w, R * K, 1, -1, 1);
    tu_fill_uniform(x, ROWS * K, 2, -1, 1);
    const road_qformat fmts[] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4};
    for (size_t i = 0; i < 2; i++)
        for (int dq = 0; dq < 2; dq++) {
            int64_t base = road__alloc_live_bytes();
            bool done = false;
            for (int64_t k = 0; !done && k < 64; k++) {
                road__alloc_fail_after(k);
                road_qtensor *q = NULL;
                road_status s = road_qtensor_quantize(fmts[i], R, K, w, dq, &q);
                if (s == ROAD_OK) s = road_qtensor_xwt(q, ROWS, x, NULL, y);
                if (s == ROAD_OK) s = road_qtensor_dyw(q, ROWS, y, dx);
                road__alloc_fail_after(-1);
                if (s == ROAD_OK)
                    done = true;
                else
                    assert_int_equal(s, ROAD_ERR_NO_MEMORY);
                road_qtensor_free(q);
                assert_int_equal(road__alloc_live_bytes(), base);
            }
            assert_true(done);
        }
    free(w);
    free(x);
    free(y);
    free(dx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),         cmocka_unit_test(test_fixture_cases),
        cmocka_unit_test(test_zero_blocks),    cmocka_unit_test(test_refuses_nonfinite),
        cmocka_unit_test(test_args_and_sizes), cmocka_unit_test(test_oom),
        cmocka_unit_test(test_half_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
