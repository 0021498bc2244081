/*
 * tests/test_dtype.c - the dtype table and the float16 / bfloat16 conversions.
 *
 * References are independent of core/dtype.c: known bit patterns from the IEEE 754 and
 * bfloat16 definitions, a float16 decoder written here with ldexp, and round-to-nearest-even
 * checked at every midpoint between neighbouring half-precision values (the midpoint is exact
 * in float32, so it must round to the even neighbour, and one float32 ulp either side must go
 * to the nearer one).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float float_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* float16 value from its definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m for e == 0. */
static double f16_reference(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -24);
    else
        v = ldexp(1024.0 + m, e - 25);
    return s ? -v : v;
}

static void expect_u16(const char *what, uint16_t got, uint16_t want) {
    if (got != want) {
        print_error("%s: got 0x%04x, want 0x%04x\n", what, got, want);
        fail();
    }
}

static void expect_f32_bits(const char *what, float got, uint32_t want) {
    if (bits_of(got) != want) {
        print_error("%s: got %.9g (0x%08x), want 0x%08x\n", what, (double)got, bits_of(got), want);
        fail();
    }
}

static void test_table(void **state) {
    (void)state;
    static const struct {
        const char *name;
        road_dtype t;
        size_t size;
    } rows[] = {
        {"F32", ROAD_DTYPE_F32, 4},   {"F16", ROAD_DTYPE_F16, 2}, {"BF16", ROAD_DTYPE_BF16, 2},
        {"F64", ROAD_DTYPE_F64, 8},   {"I64", ROAD_DTYPE_I64, 8}, {"I32", ROAD_DTYPE_I32, 4},
        {"I16", ROAD_DTYPE_I16, 2},   {"I8", ROAD_DTYPE_I8, 1},   {"U8", ROAD_DTYPE_U8, 1},
        {"BOOL", ROAD_DTYPE_BOOL, 1},
    };
    assert_int_equal(sizeof rows / sizeof rows[0], ROAD_DTYPE_COUNT_);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        road_dtype t = ROAD_DTYPE_COUNT_;
        TU_OK(road_dtype_parse(rows[i].name, &t));
        assert_int_equal(t, rows[i].t);
        assert_string_equal(road_dtype_name(t), rows[i].name);
        assert_int_equal(road_dtype_size(t), rows[i].size);
    }
    assert_string_equal(road_dtype_name(ROAD_DTYPE_COUNT_), "?");
    assert_string_equal(road_dtype_name((road_dtype)-1), "?");
    assert_int_equal(road_dtype_size(ROAD_DTYPE_COUNT_), 0);
}

static void test_parse_errors(void **state) {
    (void)state;
    road_dtype t;
    static const char *const unsupported[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F4",  "F6_E2M3",
                                              "F6_E3M2", "U16",     "U32",     "U64", "C64"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        TU_FAILS(road_dtype_parse(unsupported[i], &t), ROAD_ERR_UNSUPPORTED, unsupported[i]);
        /* The message says what road does read. */
        assert_non_null(strstr(road_last_error(), "F32, F16, BF16"));
    }
    TU_FAILS(road_dtype_parse("F33", &t), ROAD_ERR_FORMAT, "unknown dtype 'F33'");
    TU_FAILS(road_dtype_parse("f32", &t), ROAD_ERR_FORMAT, "unknown dtype"); /* case matters */
    TU_FAILS(road_dtype_parse("", &t), ROAD_ERR_FORMAT, "unknown dtype");
    TU_FAILS(road_dtype_parse("F32 ", &t), ROAD_ERR_FORMAT, "unknown dtype");
    TU_FAILS(road_dtype_parse(NULL, &t), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_dtype_parse("F32", NULL), ROAD_ERR_INVALID_ARG, NULL);
    /* A huge name is quoted back truncated, not overflowing the message. */
    char big[4000];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    TU_FAILS(road_dtype_parse(big, &t), ROAD_ERR_FORMAT, "unknown dtype 'AAAA");
}

static void test_bf16_known(void **state) {
    (void)state;
    expect_u16("bf16(1)", road_f32_to_bf16(1.0f), 0x3f80);
    expect_u16("bf16(-2)", road_f32_to_bf16(-2.0f), 0xc000);
    expect_u16("bf16(0)", road_f32_to_bf16(0.0f), 0x0000);
    expect_u16("bf16(-0)", road_f32_to_bf16(-0.0f), 0x8000);
    expect_u16("bf16(inf)", road_f32_to_bf16(INFINITY), 0x7f80);
    expect_u16("bf16(-inf)", road_f32_to_bf16(-INFINITY), 0xff80);
    /* pi = 0x40490fdb: dropped half 0x0fdb < 0x8000, rounds down to 0x4049. */
    expect_u16("bf16(pi)", road_f32_to_bf16(float_of(0x40490fdb)), 0x4049);
    /* Ties: 0x3f808000 is halfway between 0x3f80 (even) and 0x3f81 -> 0x3f80;
     * 0x3f818000 is halfway between 0x3f81 and 0x3f82 (even) -> 0x3f82. */
    expect_u16("bf16(tie down)", road_f32_to_bf16(float_of(0x3f808000)), 0x3f80);
    expect_u16("bf16(tie up)", road_f32_to_bf16(float_of(0x3f818000)), 0x3f82);
    expect_u16("bf16(just above tie)", road_f32_to_bf16(float_of(0x3f808001)), 0x3f81);
    /* The largest float32 is above the largest bf16 plus half an ulp: overflows to inf. */
    expect_u16("bf16(FLT_MAX)", road_f32_to_bf16(float_of(0x7f7fffff)), 0x7f80);
    expect_u16("bf16(max bf16)", road_f32_to_bf16(float_of(0x7f7f0000)), 0x7f7f);
    /* Subnormals: the smallest float32 subnormal rounds to 0, 0x00008000 is a tie -> 0,
     * 0x00018000 a tie -> 0x0002. */
    expect_u16("bf16(min sub)", road_f32_to_bf16(float_of(0x00000001)), 0x0000);
    expect_u16("bf16(sub tie)", road_f32_to_bf16(float_of(0x00008000)), 0x0000);
    expect_u16("bf16(sub tie up)", road_f32_to_bf16(float_of(0x00018000)), 0x0002);
    expect_u16("bf16(sub)", road_f32_to_bf16(float_of(0x00010000)), 0x0001);
    /* NaN stays NaN and quiet, even one whose payload lives only in the dropped bits. */
    uint16_t n = road_f32_to_bf16(float_of(0x7f800001));
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x007f) != 0 && (n & 0x0040));
    n = road_f32_to_bf16(float_of(0xffc00000));
    assert_true(n == 0xffc0);
    expect_f32_bits("bf16->f32(0x3f80)", road_bf16_to_f32(0x3f80), 0x3f800000);
    expect_f32_bits("bf16->f32(0x8001)", road_bf16_to_f32(0x8001), 0x80010000);
    assert_true(isnan(road_bf16_to_f32(0x7f81)));
    assert_true(bits_of(road_bf16_to_f32(0x7f81)) & 0x00400000); /* quieted */
}

static void test_f16_known(void **state) {
    (void)state;
    expect_u16("f16(1)", road_f32_to_f16(1.0f), 0x3c00);
    expect_u16("f16(-2)", road_f32_to_f16(-2.0f), 0xc000);
    expect_u16("f16(0.5)", road_f32_to_f16(0.5f), 0x3800);
    expect_u16("f16(-0)", road_f32_to_f16(-0.0f), 0x8000);
    expect_u16("f16(65504)", road_f32_to_f16(65504.0f), 0x7bff);
    expect_u16("f16(65519.99)", road_f32_to_f16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    expect_u16("f16(65520)", road_f32_to_f16(65520.0f), 0x7c00);
    expect_u16("f16(-65520)", road_f32_to_f16(-65520.0f), 0xfc00);
    expect_u16("f16(1e10)", road_f32_to_f16(1e10f), 0x7c00);
    expect_u16("f16(inf)", road_f32_to_f16(INFINITY), 0x7c00);
    expect_u16("f16(2^-14)", road_f32_to_f16(0x1p-14f), 0x0400);
    expect_u16("f16(2^-24)", road_f32_to_f16(0x1p-24f), 0x0001);
    expect_u16("f16(-2^-24)", road_f32_to_f16(-0x1p-24f), 0x8001);
    /* 2^-25 is the tie between 0 and the smallest subnormal: to even (0). A hair above: 1. */
    expect_u16("f16(2^-25)", road_f32_to_f16(0x1p-25f), 0x0000);
    expect_u16("f16(2^-25+)", road_f32_to_f16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    expect_u16("f16(1.5*2^-24)", road_f32_to_f16(0x1.8p-24f), 0x0002); /* tie 1|2 -> 2 */
    expect_u16("f16(2.5*2^-24)", road_f32_to_f16(0x1.4p-23f), 0x0002); /* tie 2|3 -> 2 */
    /* Largest subnormal + half an ulp ties to the smallest normal (even mantissa 0). */
    expect_u16("f16(sub->normal)", road_f32_to_f16((1023.5f) * 0x1p-24f), 0x0400);
    /* Normal ties: 1 + 2^-11 is halfway between 0x3c00 and 0x3c01 -> 0x3c00;
     * 1 + 3*2^-11 halfway between 0x3c01 and 0x3c02 -> 0x3c02. */
    expect_u16("f16(tie down)", road_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    expect_u16("f16(tie up)", road_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    expect_u16("f16(2048+1)", road_f32_to_f16(2049.0f), 0x6800); /* tie -> 2048 */
    expect_u16("f16(2048+3)", road_f32_to_f16(2051.0f), 0x6802); /* tie -> 2052 */
    expect_u16("f16(tiny)", road_f32_to_f16(1e-10f), 0x0000);
    uint16_t n = road_f32_to_f16(NAN);
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x03ff) != 0);
    n = road_f32_to_f16(float_of(0x7f800001)); /* payload only in dropped bits */
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x0200));
    n = road_f32_to_f16(float_of(0xff800001));
    assert_true((n & 0xfc00) == 0xfc00 && (n & 0x03ff) != 0);
    expect_f32_bits("f16->f32(0x3c00)", road_f16_to_f32(0x3c00), 0x3f800000);
    expect_f32_bits("f16->f32(0x7bff)", road_f16_to_f32(0x7bff), bits_of(65504.0f));
    expect_f32_bits("f16->f32(0x0001)", road_f16_to_f32(0x0001), bits_of(0x1p-24f));
    expect_f32_bits("f16->f32(0x8000)", road_f16_to_f32(0x8000), 0x80000000);
    expect_f32_bits("f16->f32(0xfc00)", road_f16_to_f32(0xfc00), 0xff800000);
    assert_true(isnan(road_f16_to_f32(0x7c01)));
    assert_true(bits_of(road_f16_to_f32(0x7c01)) & 0x00400000);
}

/* Every float16: decode matches the definition and encode gives the same bits back. */
static void test_f16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = road_f16_to_f32((uint16_t)h);
        double want = f16_reference((uint16_t)h);
        if (isnan(want)) {
            assert_true(isnan(f));
            assert_true(isnan(road_f16_to_f32(road_f32_to_f16(f))));
            continue;
        }
        if ((double)f != want || !signbit(f) != !signbit(want)) {
            print_error("f16 0x%04x: decoded %.9g, want %.9g\n", h, (double)f, want);
            fail();
        }
        expect_u16("f16 round trip", road_f32_to_f16(f), (uint16_t)h);
    }
}

static void test_bf16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = road_bf16_to_f32((uint16_t)h);
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
            assert_true(isnan(f));
            uint16_t back = road_f32_to_bf16(f);
            assert_true((back & 0x7f80) == 0x7f80 && (back & 0x7f));
            continue;
        }
        /* bf16 is the top half of a float32, by definition. */
        expect_f32_bits("bf16 decode", f, h << 16);
        expect_u16("bf16 round trip", road_f32_to_bf16(f), (uint16_t)h);
    }
}

/* Rounding at every midpoint between consecutive non-negative finite values of a 16-bit format
 * (and the one between the largest finite value and the next power of two, which must
 * overflow to infinity when the tie goes up, or stay finite one ulp below). */
static void check_midpoints(const char *fmt, float (*dec)(uint16_t), uint16_t (*enc)(float),
                            uint16_t max_finite) {
    for (uint32_t h = 0; h <= max_finite; h++) {
        double lo = (double)dec((uint16_t)h);
        double hi = h < max_finite ? (double)dec((uint16_t)(h + 1))
                                   /* the value the next encoding would have without the limit */
                                   : 2 * lo - (double)dec((uint16_t)(h - 1));
        float mid = (float)((lo + hi) / 2);
        if ((double)mid != (lo + hi) / 2) {
            print_error("%s: midpoint of 0x%04x not exact in float32\n", fmt, h);
            fail();
        }
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        uint16_t got = enc(mid);
        uint16_t got_below = enc(nextafterf(mid, 0.0f));
        uint16_t got_above = enc(nextafterf(mid, INFINITY));
        uint16_t got_neg = enc(-mid);
        if (got != even || got_below != h || got_above != h + 1 || got_neg != (even | 0x8000)) {
            print_error("%s: around the midpoint %.9g of 0x%04x and 0x%04x: got 0x%04x (want "
                        "0x%04x), below 0x%04x, above 0x%04x, negated 0x%04x\n",
                        fmt, (double)mid, h, h + 1, got, even, got_below, got_above, got_neg);
            fail();
        }
    }
}

static void test_rounding_midpoints(void **state) {
    (void)state;
    /* 0x7bff / 0x7f7f: the largest finite float16 / bfloat16; h + 1 is then infinity. */
    check_midpoints("f16", road_f16_to_f32, road_f32_to_f16, 0x7bff);
    check_midpoints("bf16", road_bf16_to_f32, road_f32_to_bf16, 0x7f7f);
}

static void test_to_f32(void **state) {
    (void)state;
    float out[8];
    /* Sources start at an odd address: tensor data in a file need not be aligned. */
    unsigned char raw[1 + 8 * 8];

    const double f64[3] = {1.5, -1e300, 0.1};
    memcpy(raw + 1, f64, sizeof f64);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_F64, raw + 1, out, 3));
    assert_true(out[0] == 1.5f && isinf(out[1]) && out[1] < 0 && out[2] == 0.1f);

    const int64_t i64[2] = {-5, (int64_t)1 << 40};
    memcpy(raw + 1, i64, sizeof i64);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_I64, raw + 1, out, 2));
    assert_true(out[0] == -5.0f && out[1] == 0x1p40f);

    const int32_t i32[2] = {-7, 16777217}; /* 2^24 + 1 rounds to even, 2^24 */
    memcpy(raw + 1, i32, sizeof i32);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_I32, raw + 1, out, 2));
    assert_true(out[0] == -7.0f && out[1] == 16777216.0f);

    const int16_t i16[2] = {-32768, 32767};
    memcpy(raw + 1, i16, sizeof i16);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_I16, raw + 1, out, 2));
    assert_true(out[0] == -32768.0f && out[1] == 32767.0f);

    const unsigned char bytes[4] = {0x80, 0xff, 0x01, 0x00};
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_I8, bytes, out, 4));
    assert_true(out[0] == -128.0f && out[1] == -1.0f && out[2] == 1.0f && out[3] == 0.0f);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_U8, bytes, out, 4));
    assert_true(out[0] == 128.0f && out[1] == 255.0f && out[2] == 1.0f && out[3] == 0.0f);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_BOOL, bytes, out, 4));
    assert_true(out[0] == 1.0f && out[1] == 1.0f && out[2] == 1.0f && out[3] == 0.0f);

    /* Little-endian half-precision bytes: 1.0, -2.0 in each format. */
    const unsigned char f16[4] = {0x00, 0x3c, 0x00, 0xc0};
    raw[0] = 0;
    memcpy(raw + 1, f16, sizeof f16);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_F16, raw + 1, out, 2));
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    const unsigned char bf16[4] = {0x80, 0x3f, 0x00, 0xc0};
    memcpy(raw + 1, bf16, sizeof bf16);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_BF16, raw + 1, out, 2));
    assert_true(out[0] == 1.0f && out[1] == -2.0f);

    const float f32[2] = {3.25f, -0.0f};
    memcpy(raw + 1, f32, sizeof f32);
    TU_OK(road_dtype_to_f32(ROAD_DTYPE_F32, raw + 1, out, 2));
    tu_assert_equal_f32("F32 copy", out, f32, 2);

    TU_OK(road_dtype_to_f32(ROAD_DTYPE_F32, NULL, NULL, 0));
    TU_FAILS(road_dtype_to_f32(ROAD_DTYPE_COUNT_, raw, out, 1), ROAD_ERR_INVALID_ARG, "dtype");
    TU_FAILS(road_dtype_to_f32(ROAD_DTYPE_F32, NULL, out, 1), ROAD_ERR_INVALID_ARG, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_bf16_known),
        cmocka_unit_test(test_f16_known),
        cmocka_unit_test(test_f16_exhaustive),
        cmocka_unit_test(test_bf16_exhaustive),
        cmocka_unit_test(test_rounding_midpoints),
        cmocka_unit_test(test_to_f32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
