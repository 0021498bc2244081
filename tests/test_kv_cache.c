/*
 * tests/test_kv_cache.c - KV caches in bf16 and f16 (road_kv_cache_create_ex):
 *   - the rounding the cache stores with: ties to even, NaN, infinities, subnormals, and the
 *     saturation of finite values past the largest 16-bit value;
 *   - the readers attention widens them with: AVX2 against the scalar reference;
 *   - the cache's size: half of a float32 cache's bytes;
 *   - on every fixture model, prefill (the GEMM path) then decode (the per-row path) with a
 *     16-bit cache against its float32 twin, a float32 cache holding the same rounded values
 *     (road__kv_cache_round_as): equal bit for bit (widening is exact and the readers of all
 *     types sum in one order), so the only difference a 16-bit cache makes is the rounding of
 *     K and V; the same over a prompt of two query blocks, a later prefill chunk and decode.
 *     Against a plain float32 cache the logits move by the bound stated below; greedy tokens
 *     agree but at near ties.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "llm/kv_read.h"
#include "llm/model_internal.h"
#include "testutil.h"

/* 16-bit cache vs float32 cache, max |logit difference| over prefill and decode on the
 * fixtures (max |logit| 0.53..2.1). Each key and value moves by at most 2^-9 (bf16) or 2^-12
 * (f16) of itself, and the logits move by a few of those relative units. Measured on the
 * fixtures: bf16 <= 6.0e-3 (gemma2; 3e-4..3e-3 for the others), f16 <= 7.2e-4, 8x less as
 * its 3 more bits say; the bounds leave 2x room. */
#define BF16_ATOL 1.2e-2
#define F16_ATOL 1.5e-3
#define PROMPT 24 /* >= 8 (forward.c's ATTN_GEMM_MIN): the prompt takes the GEMM path */
#define DECODE 16

static const char *const models[] = {"tiny-llama", "tiny-gemma2",     "tiny-gemma3",
                                     "tiny-qwen2", "tiny-qwen3",      "tiny-phi3",
                                     "tiny-olmo2", "tiny-llama3-rope"};
#define N_MODELS (int)(sizeof models / sizeof models[0])

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static void test_round_f16(void **state) {
    (void)state;
    /* ties to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 */
    assert_int_equal(road__f32_to_f16_sat(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(road__f32_to_f16_sat(1.0f + 3 * 0x1p-11f), 0x3c02);
    assert_int_equal(road__f32_to_f16_sat(-1.0f - 0x1p-11f), 0xbc00);
    /* subnormals: 2^-24 is the smallest; 2^-25 is the tie with 0 (even: 0); 3 x 2^-25 -> 2 */
    assert_int_equal(road__f32_to_f16_sat(0x1p-24f), 0x0001);
    assert_int_equal(road__f32_to_f16_sat(0x1p-25f), 0x0000);
    assert_int_equal(road__f32_to_f16_sat(3 * 0x1p-25f), 0x0002);
    assert_int_equal(road__f32_to_f16_sat(-0.0f), 0x8000);
    /* the largest float16 and saturation past it (road_f32_to_f16 gives infinity there) */
    assert_int_equal(road__f32_to_f16_sat(65504.0f), 0x7bff);
    assert_int_equal(road__f32_to_f16_sat(65519.0f), 0x7bff);
    assert_int_equal(road_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(road__f32_to_f16_sat(65520.0f), 0x7bff);
    assert_int_equal(road__f32_to_f16_sat(1e30f), 0x7bff);
    assert_int_equal(road__f32_to_f16_sat(-FLT_MAX), 0xfbff);
    /* infinities and NaN stay */
    assert_int_equal(road__f32_to_f16_sat(INFINITY), 0x7c00);
    assert_int_equal(road__f32_to_f16_sat(-INFINITY), 0xfc00);
    uint16_t n = road__f32_to_f16_sat(NAN);
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
}

static void test_round_bf16(void **state) {
    (void)state;
    /* ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
    assert_int_equal(road__f32_to_bf16_sat(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(road__f32_to_bf16_sat(1.0f + 3 * 0x1p-8f), 0x3f82);
    assert_int_equal(road__f32_to_bf16_sat(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    /* float32 subnormals round like any other value (bf16 has them too) */
    assert_int_equal(road__f32_to_bf16_sat(bits_f32(0x00008000u)), 0x0000); /* tie -> even 0 */
    assert_int_equal(road__f32_to_bf16_sat(bits_f32(0x00018000u)), 0x0002); /* tie -> even 2 */
    assert_int_equal(road__f32_to_bf16_sat(bits_f32(0x00010001u)), 0x0001);
    /* FLT_MAX rounds to infinity (road_f32_to_bf16); the cache keeps the largest bf16 */
    assert_int_equal(road_f32_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(road__f32_to_bf16_sat(FLT_MAX), 0x7f7f);
    assert_int_equal(road__f32_to_bf16_sat(-FLT_MAX), 0xff7f);
    assert_int_equal(road__f32_to_bf16_sat(INFINITY), 0x7f80);
    assert_int_equal(road__f32_to_bf16_sat(-INFINITY), 0xff80);
    uint16_t n = road__f32_to_bf16_sat(NAN);
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
    /* road__kv_round: the same per element; F32 copies */
    const float src[4] = {1.0f + 0x1p-8f, 65520.0f, -3.0f, 0x1p-24f};
    uint16_t h[4];
    road__kv_round(ROAD_DTYPE_BF16, h, src, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(h[i], road__f32_to_bf16_sat(src[i]));
    road__kv_round(ROAD_DTYPE_F16, h, src, 4);
    for (int i = 0; i < 4; i++) assert_int_equal(h[i], road__f32_to_f16_sat(src[i]));
    float f[4];
    road__kv_round(ROAD_DTYPE_F32, f, src, 4);
    tu_assert_equal_f32("f32 copy", f, src, 4);
}

/* AVX2 readers against the scalar ones: widen exactly equal, dot products and weighted sums
 * to float rounding of the sums (|terms| <= 1, d <= 128: 1e-5 absolute); the AVX2 sums of a
 * 16-bit row equal bit for bit those of its float32 widening; a key's dot product does not
 * depend on how many keys are read with it (the 4-key groups and the rest). */
#define READER_ATOL 1e-5
#define NK 11 /* keys: two groups of 4 and 3 more */
static void test_readers(void **state) {
    (void)state;
    if (!road__cpu_has_avx2_fma()) skip();
    const int64_t dims[] = {8, 16, 64, 96, 100, 128};
    const road_dtype types[] = {ROAD_DTYPE_BF16, ROAD_DTYPE_F16, ROAD_DTYPE_F32};
    static float q[128], kf[NK * 130], wide[NK * 130], w[NK], o0[128], o1[128], o2[128];
    static float s0[NK], s1[NK], s2[NK];
    static uint16_t k16[NK * 130];
    const kv_reader *f32 = road__kv_reader(ROAD_DTYPE_F32, true);
    tu_fill_uniform(w, NK, 5, 0.0f, 0.2f);
    for (int ti = 0; ti < 3; ti++) {
        const kv_reader *ref = road__kv_reader(types[ti], false),
                        *fast = road__kv_reader(types[ti], true);
        assert_ptr_not_equal(ref, fast);
        const bool is32 = types[ti] == ROAD_DTYPE_F32;
        for (int di = 0; di < 6; di++) {
            const int64_t d = dims[di], stride = d + 2; /* rows apart, as a cache's heads are */
            tu_fill_uniform(q, d, 7 + (uint64_t)di, -1.0f, 1.0f);
            tu_fill_uniform(kf, NK * stride, 99 + (uint64_t)di, -1.0f, 1.0f);
            kf[0] = 0x1p-20f; /* a subnormal f16 */
            const void *k = kf;
            if (!is32) {
                road__kv_round(types[ti], k16, kf, NK * stride);
                ref->widen(wide, k16, NK * stride);
                fast->widen(o1, k16, d);
                tu_assert_equal_f32("widen", o1, wide, d);
                k = k16;
            }
            ref->dots(s0, q, k, NK, stride, d);
            fast->dots(s1, q, k, NK, stride, d);
            tu_assert_close("dots", s1, s0, NK, READER_ATOL, 0);
            for (int64_t n = 1; n < NK; n++) { /* fewer keys: the same values */
                fast->dots(s2, q, k, n, stride, d);
                tu_assert_equal_f32("dots of fewer keys", s2, s1, n);
            }
            for (int64_t i = 0; i < d; i++) o0[i] = o1[i] = o2[i] = q[i];
            ref->wsum(o0, w, k, NK, stride, d);
            fast->wsum(o1, w, k, NK, stride, d);
            tu_assert_close("wsum", o1, o0, d, READER_ATOL, 0);
            if (!is32) { /* the 16-bit reader = the f32 reader on the widened values */
                f32->dots(s2, q, wide, NK, stride, d);
                tu_assert_equal_f32("dots vs f32 of the widened", s1, s2, NK);
                f32->wsum(o2, w, wide, NK, stride, d);
                tu_assert_equal_f32("wsum vs f32 of the widened", o1, o2, d);
            }
        }
    }
}

static road_model *load(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/llama/%s", ROAD_FIXTURES, name);
    road_model *m;
    TU_OK(road_model_load(dir, NULL, &m));
    return m;
}

static void test_bytes(void **state) {
    (void)state;
    road_model *m = load("tiny-llama");
    const road_llm_config *c = road_model_config(m);
    const int64_t cap = 100, elems = c->n_layers * c->n_kv_heads * cap * c->head_dim;
    road_kv_cache *f32, *bf16, *f16, *bad = (road_kv_cache *)&bad;
    TU_OK(road_kv_cache_create(m, cap, &f32));
    TU_OK(road_kv_cache_create_ex(m, cap, ROAD_DTYPE_BF16, &bf16));
    TU_OK(road_kv_cache_create_ex(m, cap, ROAD_DTYPE_F16, &f16));
    assert_int_equal(road_kv_cache_dtype(f32), ROAD_DTYPE_F32);
    assert_int_equal(road_kv_cache_dtype(bf16), ROAD_DTYPE_BF16);
    assert_int_equal(road_kv_cache_dtype(f16), ROAD_DTYPE_F16);
    assert_int_equal(road_kv_cache_bytes(f32), 2 * elems * 4);
    assert_int_equal(road_kv_cache_bytes(bf16), 2 * elems * 2);
    assert_int_equal(road_kv_cache_bytes(f16), road_kv_cache_bytes(f32) / 2);
    TU_FAILS(road_kv_cache_create_ex(m, cap, ROAD_DTYPE_F64, &bad), ROAD_ERR_INVALID_ARG,
             "F32, BF16 or F16");
    assert_null(bad);
    TU_FAILS(road_kv_cache_create_ex(m, 0, ROAD_DTYPE_BF16, &bad), ROAD_ERR_INVALID_ARG,
             "1 to 128 tokens");
    road_kv_cache_free(f32);
    road_kv_cache_free(bf16);
    road_kv_cache_free(f16);
    road_model_free(m);
}

/* Prefill PROMPT tokens then decode DECODE, one at a time, into cache kv; logits of the
 * prefill's last row then of each decode step into out ((1 + DECODE) x V). */
static void run_n(road_model *m, road_kv_cache *kv, const int32_t *tok, float *out, int64_t V,
                  int64_t prompt, int64_t decode) {
    road_seq s = {tok, prompt, kv, NULL, false};
    TU_OK(road_model_forward(m, &s, 1, out));
    for (int64_t i = 0; i < decode; i++) {
        road_seq one = {&tok[prompt + i], 1, kv, NULL, false};
        TU_OK(road_model_forward(m, &one, 1, out + (1 + i) * V));
    }
}

static void run(road_model *m, road_kv_cache *kv, const int32_t *tok, float *out, int64_t V) {
    run_n(m, kv, tok, out, V, PROMPT, DECODE);
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static double max_abs(const float *a, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i]));
    return d;
}

static void test_models(void **state) {
    (void)state;
    const road_dtype types[] = {ROAD_DTYPE_BF16, ROAD_DTYPE_F16};
    const double bound[] = {BF16_ATOL, F16_ATOL};
    double worst[2] = {0, 0};
    for (int mi = 0; mi < N_MODELS; mi++) {
        road_model *m = load(models[mi]);
        const int64_t V = road_model_config(m)->vocab_size, n = (1 + DECODE) * V;
        int32_t tok[PROMPT + DECODE];
        for (int i = 0; i < PROMPT + DECODE; i++) tok[i] = (int32_t)((53 * i + 7 * mi + 3) % V);
        float *ref = tu_alloc(sizeof(float) * (size_t)n),
              *twin = tu_alloc(sizeof(float) * (size_t)n);
        float *got = tu_alloc(sizeof(float) * (size_t)n);
        road_kv_cache *kv;
        TU_OK(road_kv_cache_create(m, PROMPT + DECODE, &kv));
        run(m, kv, tok, ref, V);
        road_kv_cache_free(kv);
        for (int ti = 0; ti < 2; ti++) {
            TU_OK(road_kv_cache_create(m, PROMPT + DECODE, &kv));
            road__kv_cache_round_as(kv, types[ti]);
            run(m, kv, tok, twin, V);
            road_kv_cache_free(kv);
            TU_OK(road_kv_cache_create_ex(m, PROMPT + DECODE, types[ti], &kv));
            run(m, kv, tok, got, V);
            road_kv_cache_free(kv);
            const double dd = max_diff(got, ref, n);
            printf("# %-17s %-4s vs f32: max |dlogit| %.3g, max |logit| %.3g\n", models[mi],
                   road_dtype_name(types[ti]), dd, max_abs(ref, n));
            char what[96];
            snprintf(what, sizeof what, "%s %s cache vs its f32 twin", models[mi],
                     road_dtype_name(types[ti]));
            tu_assert_equal_f32(what, got, twin, n);
            snprintf(what, sizeof what, "%s %s cache vs f32 cache", models[mi],
                     road_dtype_name(types[ti]));
            tu_assert_close(what, got, ref, n, bound[ti], 0);
            worst[ti] = fmax(worst[ti], dd);
        }
        free(ref);
        free(twin);
        free(got);
        road_model_free(m);
    }
    printf("# worst: bf16 %.3g (bound %g), f16 %.3g (bound %g)\n", worst[0], (double)BF16_ATOL,
           worst[1], (double)F16_ATOL);
}

/* A prompt of several query blocks (ATTN_QBLOCK 64: blocks of 64 and 36 queries, the second
 * against 100 keys), then a chunk of 9 tokens after it (the GEMM path from p0 > 0), then
 * decode: the 16-bit caches still equal their float32 twins bit for bit, on a full-attention
 * and a sliding-window family. */
#define LONG_PROMPT 100
#define LONG_CHUNK 9
static void test_long_prompt(void **state) {
    (void)state;
    const char *names[] = {"tiny-llama", "tiny-gemma2"};
    const road_dtype types[] = {ROAD_DTYPE_BF16, ROAD_DTYPE_F16};
    for (int mi = 0; mi < 2; mi++) {
        road_model *m = load(names[mi]);
        const int64_t V = road_model_config(m)->vocab_size, total = LONG_PROMPT + LONG_CHUNK + 4;
        int32_t tok[LONG_PROMPT + LONG_CHUNK + 4];
        for (int i = 0; i < total; i++) tok[i] = (int32_t)((29 * i + 11) % V);
        float *a = tu_alloc(sizeof(float) * (size_t)(LONG_CHUNK + 5) * V);
        float *b = tu_alloc(sizeof(float) * (size_t)(LONG_CHUNK + 5) * V);
        for (int ti = 0; ti < 2; ti++) {
            road_kv_cache *kv[2];
            float *out[2] = {a, b};
            for (int w = 0; w < 2; w++) {
                TU_OK(road_kv_cache_create_ex(m, total, w ? types[ti] : ROAD_DTYPE_F32, &kv[w]));
                if (!w) road__kv_cache_round_as(kv[w], types[ti]);
                road_seq s = {tok, LONG_PROMPT, kv[w], NULL, false};
                TU_OK(road_model_forward(m, &s, 1, out[w]));
                road_seq c = {tok + LONG_PROMPT, LONG_CHUNK, kv[w], NULL, true};
                TU_OK(road_model_forward(m, &c, 1, out[w] + V));
                /* then 4 decode steps: rows 1 + LONG_CHUNK .. */
                run_n(m, kv[w], tok + LONG_PROMPT + LONG_CHUNK, out[w] + (1 + LONG_CHUNK) * V, V, 1,
                      3);
                road_kv_cache_free(kv[w]);
            }
            char what[96];
            snprintf(what, sizeof what, "%s %s long prompt vs its f32 twin", names[mi],
                     road_dtype_name(types[ti]));
            tu_assert_equal_f32(what, b, a, (LONG_CHUNK + 5) * V);
        }
        free(a);
        free(b);
        road_model_free(m);
    }
}

typedef struct collected {
    int32_t tok[64];
    int n;
} collected;

static bool collect(int64_t seq, road_token t, void *user) {
    (void)seq;
    collected *c = user;
    c->tok[c->n++] = t;
    return true;
}

static int32_t argmax(const float *z, int64_t V) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (z[i] > z[best]) best = i;
    return best;
}

/* Greedy generation with a 16-bit cache (road_generate_params.kv_dtype) gives the tokens of
 * a step-by-step greedy loop on a cache of that type; and at every step the float32 cache, fed
 * the same tokens, picks the same token, or one whose logit is within 2 x the bound above of
 * it (a near tie the rounding may flip: random tiny models have them). */
#define N_GEN 24
#define GEN_PROMPT 12
static void test_greedy(void **state) {
    (void)state;
    const road_dtype types[] = {ROAD_DTYPE_BF16, ROAD_DTYPE_F16};
    const double bound[] = {BF16_ATOL, F16_ATOL};
    int flips[2] = {0, 0};
    for (int mi = 0; mi < N_MODELS; mi++) {
        road_model *m = load(models[mi]);
        const int64_t V = road_model_config(m)->vocab_size;
        int32_t p0[GEN_PROMPT];
        for (int i = 0; i < GEN_PROMPT; i++) p0[i] = (int32_t)((31 * i + mi + 1) % V);
        const int32_t *prompts[1] = {p0};
        const int64_t lens[1] = {GEN_PROMPT};
        float *z = tu_alloc(sizeof(float) * (size_t)V), *zf = tu_alloc(sizeof(float) * (size_t)V);
        for (int ti = 0; ti < 2; ti++) {
            road_generate_params gp = {N_GEN, NULL, 0, road_sampler_default_params(), types[ti]};
            collected got = {0};
            TU_OK(road_model_generate(m, prompts, lens, NULL, 1, &gp, collect, &got));
            assert_int_equal(got.n, N_GEN);
            road_kv_cache *kv, *kf;
            TU_OK(road_kv_cache_create_ex(m, GEN_PROMPT + N_GEN, types[ti], &kv));
            TU_OK(road_kv_cache_create(m, GEN_PROMPT + N_GEN, &kf));
            road_seq s = {p0, GEN_PROMPT, kv, NULL, false}, sf = {p0, GEN_PROMPT, kf, NULL, false};
            for (int i = 0; i < N_GEN; i++) {
                TU_OK(road_model_forward(m, &s, 1, z));
                TU_OK(road_model_forward(m, &sf, 1, zf));
                const int32_t t = argmax(z, V), tf = argmax(zf, V);
                if (t != got.tok[i])
                    fail_msg("%s %s step %d: generate gave %d, the loop %d", models[mi],
                             road_dtype_name(types[ti]), i, got.tok[i], t);
                if (t != tf) {
                    flips[ti]++;
                    if (zf[tf] - zf[t] > 2 * bound[ti])
                        fail_msg("%s %s step %d: token %d, f32 cache %d by %g > 2 x %g", models[mi],
                                 road_dtype_name(types[ti]), i, t, tf, (double)(zf[tf] - zf[t]),
                                 bound[ti]);
                }
                s = (road_seq){&got.tok[i], 1, kv, NULL, false};
                sf = (road_seq){&got.tok[i], 1, kf, NULL, false};
            }
            road_kv_cache_free(kv);
            road_kv_cache_free(kf);
        }
        road_generate_params gp = {N_GEN, NULL, 0, road_sampler_default_params(), ROAD_DTYPE_I8};
        collected got = {0};
        TU_FAILS(road_model_generate(m, prompts, lens, NULL, 1, &gp, collect, &got),
                 ROAD_ERR_INVALID_ARG, "F32, BF16 or F16");
        free(z);
        free(zf);
        road_model_free(m);
    }
    printf("# greedy tokens that differ from the f32 cache's (near ties), of %d: bf16 %d, f16 %d\n",
           N_MODELS * N_GEN, flips[0], flips[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_f16), cmocka_unit_test(test_round_bf16),
        cmocka_unit_test(test_readers),   cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_models),    cmocka_unit_test(test_long_prompt),
        cmocka_unit_test(test_greedy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
