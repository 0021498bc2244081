/*
 * core/dtype.c - the element types road reads from safetensors files, and the float16 /
 * bfloat16 conversions.
 *
 * One table row per dtype (name, size, converter to float32), in the spirit of ggml's type
 * traits: adding a type means adding a row, and every query goes through the table, so name,
 * size and conversion cannot drift apart.
 *
 * Converters read their source with memcpy one element at a time because tensor data comes
 * straight from an mmap and is only as aligned as the file's layout makes it (see
 * io/safetensors.c); compilers turn these memcpys into plain loads.
 *
 * The half-precision conversions work on the bit patterns with integers only, so they are exact
 * (IEEE round-to-nearest-even, subnormals included) whatever the FPU's rounding mode or
 * flush-to-zero setting, and give the same bits on every machine. NaNs stay NaNs and come out
 * quiet, keeping their sign and the top payload bits.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"

typedef void (*dtype_to_f32_fn)(const void *src, float *dst, size_t n);

/* ---- float16 / bfloat16 ---------------------------------------------------------------------- */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#define F32_ABS_MASK 0x7fffffffu
#define F32_INF_BITS 0x7f800000u
#define F32_QUIET_BIT 0x00400000u
#define F16_INF_BITS 0x7c00u
#define F16_QUIET_BIT 0x0200u
#define BF16_QUIET_BIT 0x0040u
/* |x| >= 65520 (halfway between 65504, the largest float16, and 65536) rounds to infinity:
 * 65504's mantissa is odd, so the tie goes up. */
#define F32_BITS_F16_OVERFLOW 0x477ff000u
/* |x| >= 2^-14, the smallest normal float16. */
#define F32_BITS_F16_MIN_NORMAL 0x38800000u
/* |x| <= 2^-25, half the smallest subnormal float16, rounds to zero (the tie goes to even 0). */
#define F32_BITS_F16_HALF_MIN_SUB 0x33000000u
/* float32 exponent bias 127 minus float16 exponent bias 15. */
#define F32_F16_BIAS_DIFF 112u

uint16_t road_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & F32_ABS_MASK) > F32_INF_BITS) return (uint16_t)((u >> 16) | BF16_QUIET_BIT);
    /* bfloat16 is the top half of a float32, so rounding is adding just under half an ulp plus
     * the lowest kept bit (ties to even); a carry out of the mantissa bumps the exponent, and
     * out of the largest exponent gives infinity, both of which are the right answers. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float road_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    if ((u & F32_ABS_MASK) > F32_INF_BITS) u |= F32_QUIET_BIT;
    return f32_from_bits(u);
}

/* Shift m right by `shift` bits (1..31), rounding to nearest, ties to even. */
static uint32_t shift_round_even(uint32_t m, unsigned shift) {
    uint32_t kept = m >> shift;
    uint32_t rest = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (kept & 1u))) kept++;
    return kept;
}

uint16_t road_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & F32_ABS_MASK;
    if (a > F32_INF_BITS)
        return (uint16_t)(sign | F16_INF_BITS | F16_QUIET_BIT | ((a >> 13) & 0x3ffu));
    if (a >= F32_BITS_F16_OVERFLOW) return (uint16_t)(sign | F16_INF_BITS);
    if (a >= F32_BITS_F16_MIN_NORMAL) {
        /* Rebias the exponent in place; a rounding carry into the exponent field is correct
         * (and cannot reach infinity, which the overflow test above already handled). */
        return (uint16_t)(sign | shift_round_even(a - (F32_F16_BIAS_DIFF << 23), 13));
    }
    if (a <= F32_BITS_F16_HALF_MIN_SUB) return sign;
    /* Subnormal result: value / 2^-24 = m * 2^(e - 126) with m the 24-bit significand and e the
     * biased float32 exponent (102..112 here), so shift m right by 126 - e (14..24). Rounding
     * up to 0x400 yields the smallest normal, whose encoding is exactly that. */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    unsigned shift = 126u - (a >> 23);
    return (uint16_t)(sign | shift_round_even(m, shift));
}

float road_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f) {
        if (m == 0) return f32_from_bits(sign | F32_INF_BITS);
        return f32_from_bits(sign | F32_INF_BITS | F32_QUIET_BIT | (m << 13));
    }
    if (e == 0) {
        if (m == 0) return f32_from_bits(sign);
        /* Subnormal: normalise so the leading 1 sits at bit 10, lowering the exponent. */
        e = 1;
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        m &= 0x3ffu;
    }
    /* e may have wrapped below zero for subnormals; unsigned arithmetic brings it back once the
     * bias difference is added (the smallest result exponent is 103). */
    return f32_from_bits(sign | ((e + F32_F16_BIAS_DIFF) << 23) | (m << 13));
}

/* ---- converters ------------------------------------------------------------------------------ */

static void f32_to_f32(const void *src, float *dst, size_t n) {
    if (n) memcpy(dst, src, n * sizeof(float));
}

/* One converter per stored type: read element i (memcpy: src need not be aligned), convert it
 * with `conv`. Plain casts round to nearest (large I64 values lose digits, which is what
 * converting them to float32 means). */
#define ROAD_CAST_TO_F32_(v) ((float)(v))
#define ROAD_DEFINE_TO_F32_(fname, ctype, conv)                                                    \
    static void fname(const void *src, float *dst, size_t n) {                                     \
        const unsigned char *s = src;                                                              \
        for (size_t i = 0; i < n; i++) {                                                           \
            ctype v;                                                                               \
            memcpy(&v, s + i * sizeof v, sizeof v);                                                \
            dst[i] = conv(v);                                                                      \
        }                                                                                          \
    }
ROAD_DEFINE_TO_F32_(f16_to_f32, uint16_t, road_f16_to_f32)
ROAD_DEFINE_TO_F32_(bf16_to_f32, uint16_t, road_bf16_to_f32)
ROAD_DEFINE_TO_F32_(f64_to_f32, double, ROAD_CAST_TO_F32_)
ROAD_DEFINE_TO_F32_(i64_to_f32, int64_t, ROAD_CAST_TO_F32_)
ROAD_DEFINE_TO_F32_(i32_to_f32, int32_t, ROAD_CAST_TO_F32_)
ROAD_DEFINE_TO_F32_(i16_to_f32, int16_t, ROAD_CAST_TO_F32_)
ROAD_DEFINE_TO_F32_(i8_to_f32, int8_t, ROAD_CAST_TO_F32_)
ROAD_DEFINE_TO_F32_(u8_to_f32, uint8_t, ROAD_CAST_TO_F32_)
#undef ROAD_DEFINE_TO_F32_
#undef ROAD_CAST_TO_F32_

/* safetensors BOOL is one byte per element; anything non-zero counts as true. */
static void bool_to_f32(const void *src, float *dst, size_t n) {
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = s[i] ? 1.0f : 0.0f;
}

/* ---- the table ------------------------------------------------------------------------------- */

typedef struct dtype_row {
    const char *name; /* as spelled in safetensors headers */
    size_t size;      /* bytes per element */
    dtype_to_f32_fn to_f32;
} dtype_row;

static const dtype_row dtype_table[] = {
    [ROAD_DTYPE_F32] = {"F32", 4, f32_to_f32},    [ROAD_DTYPE_F16] = {"F16", 2, f16_to_f32},
    [ROAD_DTYPE_BF16] = {"BF16", 2, bf16_to_f32}, [ROAD_DTYPE_F64] = {"F64", 8, f64_to_f32},
    [ROAD_DTYPE_I64] = {"I64", 8, i64_to_f32},    [ROAD_DTYPE_I32] = {"I32", 4, i32_to_f32},
    [ROAD_DTYPE_I16] = {"I16", 2, i16_to_f32},    [ROAD_DTYPE_I8] = {"I8", 1, i8_to_f32},
    [ROAD_DTYPE_U8] = {"U8", 1, u8_to_f32},       [ROAD_DTYPE_BOOL] = {"BOOL", 1, bool_to_f32},
};
_Static_assert(sizeof dtype_table / sizeof dtype_table[0] == ROAD_DTYPE_COUNT_,
               "one dtype_table row per road_dtype");

/* Valid safetensors dtypes (as of safetensors 0.5) that road does not read: 8-, 6- and 4-bit
 * floats, unsigned integers wider than a byte and complex numbers. Telling these apart from
 * typos lets the message say "convert the file" instead of "the file is broken". */
static const char *const unsupported_dtypes[] = {
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "U16", "U32", "U64", "C64",
};

/* Longest dtype name quoted back in a message (a hostile header may hold anything). */
#define DTYPE_NAME_ECHO_MAX 40

/* "F32, F16, ..." built from the table, so the message lists exactly what parse accepts. */
static void known_dtype_list(char *buf, size_t cap) {
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < ROAD_DTYPE_COUNT_ && pos < cap; i++) {
        int w = snprintf(buf + pos, cap - pos, "%s%s", i ? ", " : "", dtype_table[i].name);
        if (w < 0) break;
        pos += (size_t)w;
    }
}

const char *road_dtype_name(road_dtype t) {
    if ((unsigned)t >= ROAD_DTYPE_COUNT_) return "?";
    return dtype_table[t].name;
}

size_t road_dtype_size(road_dtype t) {
    if ((unsigned)t >= ROAD_DTYPE_COUNT_) return 0;
    return dtype_table[t].size;
}

road_status road_dtype_parse(const char *name, road_dtype *out) {
    if (!name || !out) return road__error(ROAD_ERR_INVALID_ARG, "road_dtype_parse: NULL argument");
    for (int i = 0; i < ROAD_DTYPE_COUNT_; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (road_dtype)i;
            return ROAD_OK;
        }
    }
    char known[128];
    known_dtype_list(known, sizeof known);
    for (size_t i = 0; i < sizeof unsupported_dtypes / sizeof unsupported_dtypes[0]; i++) {
        if (strcmp(name, unsupported_dtypes[i]) == 0) {
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "dtype '%s' is a safetensors dtype that road does not read; road "
                               "reads %s (convert the tensor to one of these, e.g. F32 or BF16)",
                               name, known);
        }
    }
    return road__error(ROAD_ERR_FORMAT,
                       "unknown dtype '%.*s'; safetensors dtypes road reads are %s",
                       DTYPE_NAME_ECHO_MAX, name, known);
}

road_status road_dtype_to_f32(road_dtype t, const void *src, float *dst, size_t n) {
    if ((unsigned)t >= ROAD_DTYPE_COUNT_)
        return road__error(ROAD_ERR_INVALID_ARG, "road_dtype_to_f32: invalid dtype %d", (int)t);
    if (n == 0) return ROAD_OK;
    if (!src || !dst) return road__error(ROAD_ERR_INVALID_ARG, "road_dtype_to_f32: NULL buffer");
    dtype_table[t].to_f32(src, dst, n);
    return ROAD_OK;
}
