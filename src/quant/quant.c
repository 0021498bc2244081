/*
 * quant/quant.c - the quantized weight formats: code tables, quantize, dequantize, double
 * quantization (see road/quant.h and docs/quant.md).
 *
 * The formats are bitsandbytes' so that checkpoints move both ways: LLM.int8's row-wise int8
 * weights (Linear8bitLt: CB and SCB) and Linear4bit's NF4 / FP4 blocks of 64 with the same code
 * tables, nibble order and nested (double) quantization of the absmax values with the dynamic
 * 8-bit map. The rounding rules are written out here rather than borrowed: each value goes to
 * the nearest code (ties to the lower code value for NF4 and the dynamic map, to the smaller
 * magnitude for FP4, as bitsandbytes' decision trees compare with '>'); weights are scaled by
 * the reciprocal of the absmax (bitsandbytes multiplies by 1/absmax too). tools/quantref
 * computes the same independently in numpy; tests/test_quant.c compares.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "quant/quant_internal.h"

/* ---- formats and tables ------------------------------------------------------------------ */

const char *road_qformat_name(road_qformat f) {
    switch (f) {
    case ROAD_QFORMAT_NONE:
        return "none";
    case ROAD_QFORMAT_INT8:
        return "int8";
    case ROAD_QFORMAT_NF4:
        return "nf4";
    case ROAD_QFORMAT_FP4:
        return "fp4";
    case ROAD_QFORMAT_BF16:
        return "bf16";
    case ROAD_QFORMAT_F16:
        return "f16";
    }
    return "?";
}

road_status road_qformat_parse(const char *s, road_qformat *out) {
    static const road_qformat all[] = {ROAD_QFORMAT_NONE, ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4,
                                       ROAD_QFORMAT_FP4,  ROAD_QFORMAT_BF16, ROAD_QFORMAT_F16};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, road_qformat_name(all[i])) == 0) {
            *out = all[i];
            return ROAD_OK;
        }
    return road__error(ROAD_ERR_INVALID_ARG,
                       "unknown weight format '%s'; choose none, int8, nf4, fp4, bf16 or f16",
                       s ? s : "(null)");
}

/* bitsandbytes' NF4 table (QLoRA, appendix E): quantiles of N(0, 1) scaled to [-1, 1], with an
 * exact 0. Index = code. */
static const float NF4_TABLE[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* bitsandbytes' FP4 (sign bit 3, two exponent bits, one mantissa bit): the values
 * {0, 0.0625, 8, 12, 4, 6, 2, 3} and their negatives, divided by the largest (12) in float32. */
static const float FP4_TABLE[16] = {
    0.0f,          0.0625f / 12.0f, 8.0f / 12.0f,  12.0f / 12.0f,    4.0f / 12.0f,  6.0f / 12.0f,
    2.0f / 12.0f,  3.0f / 12.0f,    -0.0f,         -0.0625f / 12.0f, -8.0f / 12.0f, -12.0f / 12.0f,
    -4.0f / 12.0f, -6.0f / 12.0f,   -2.0f / 12.0f, -3.0f / 12.0f,
};
#define FP4_SIGN 8u

const float *road_qcode_table(road_qformat f) {
    return f == ROAD_QFORMAT_NF4 ? NF4_TABLE : f == ROAD_QFORMAT_FP4 ? FP4_TABLE : NULL;
}

/* bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), computed
 * as torch (1.13, CPU) does in float32: for exponent i = 0..6, 2^i + 1 points of
 * linspace(0.1, 1), the 2^i midpoints of neighbours, times 10^(i-6) (rounded to float32) and
 * its negative; then 0 and 1; sorted. 256 values. Checkpoints carry their own map
 * (nested_quant_map), so this one matters only for what road writes; tests/test_quant.c checks
 * it against torch bit for bit. */
#define DYN_MAP_SIZE 256
static float g_dyn_map[DYN_MAP_SIZE];
static int g_dyn_ready;

/* torch.linspace(start, end, n) in float32 as torch's CPU kernel computes it: step =
 * (end - start) / (n - 1); the first half counted from start, the second back from end, each
 * as one fused multiply-add; but in runs of 16 the values come as two 8-wide vectors whose
 * first element is computed so and the others as first + k * step (unfused). */
static float linspace_point(float start, float end, float step, int64_t n, int64_t j) {
    return j < n / 2 ? fmaf(step, (float)j, start) : fmaf(-step, (float)(n - j - 1), end);
}

static void linspace_f32(float start, float end, int64_t n, float *out) {
    const float step = (end - start) / (float)(n - 1);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int64_t v = i; v < i + 16; v += 8) {
            const float base = linspace_point(start, end, step, n, v);
            out[v] = base;
            for (int k = 1; k < 8; k++) out[v + k] = base + (float)k * step;
        }
    for (; i < n; i++) out[i] = linspace_point(start, end, step, n, i);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void dyn_map_build(float *m) {
    static const double decade[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    int k = 0;
    for (int i = 0; i < 7; i++) {
        const int64_t n = ((int64_t)1 << i) + 1; /* linspace points */
        float b[65];
        linspace_f32(0.1f, 1.0f, n, b);
        const float scale = (float)decade[i];
        for (int64_t j = 0; j + 1 < n; j++) {
            float mean = (b[j] + b[j + 1]) / 2.0f;
            m[k++] = scale * mean;
            m[k++] = -scale * mean;
        }
    }
    m[k++] = 0.0f;
    m[k++] = 1.0f;
    ROAD_ASSERT(k == DYN_MAP_SIZE);
    qsort(m, DYN_MAP_SIZE, sizeof(float), cmp_float);
}

const float *road_qdynamic_map(void) {
    /* Built once; the result is the same in every thread, so a race only writes equal bytes.
     * Use an atomic flag so the check itself is well defined. */
    if (!__atomic_load_n(&g_dyn_ready, __ATOMIC_ACQUIRE)) {
        float m[DYN_MAP_SIZE];
        dyn_map_build(m);
#pragma omp critical(road_qdyn_map)
        {
            if (!__atomic_load_n(&g_dyn_ready, __ATOMIC_RELAXED)) {
                memcpy(g_dyn_map, m, sizeof m);
                __atomic_store_n(&g_dyn_ready, 1, __ATOMIC_RELEASE);
            }
        }
    }
    return g_dyn_map;
}

/* ---- nearest-code search ------------------------------------------------------------------- */

/* A code table sorted ascending, with the midpoints between neighbours: the code of x is the
 * one whose interval holds it; x on a midpoint goes to the lower value. */
typedef struct sorted_code {
    int32_t n;
    float mid[DYN_MAP_SIZE];     /* [n - 1] */
    uint8_t index[DYN_MAP_SIZE]; /* [n] code of the k-th smallest value */
} sorted_code;

static void sorted_code_init(sorted_code *s, const float *table, int32_t n) {
    float v[DYN_MAP_SIZE];
    s->n = n;
    for (int32_t i = 0; i < n; i++) {
        v[i] = table[i];
        s->index[i] = (uint8_t)i;
    }
    /* insertion sort by value (stable: equal values keep the lower index first) */
    for (int32_t i = 1; i < n; i++)
        for (int32_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            float t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
            uint8_t u = s->index[j];
            s->index[j] = s->index[j - 1];
            s->index[j - 1] = u;
        }
    for (int32_t i = 0; i + 1 < n; i++) s->mid[i] = (v[i] + v[i + 1]) * 0.5f;
}

static uint8_t sorted_code_find(const sorted_code *s, float x) {
    /* the number of midpoints strictly below x */
    int32_t lo = 0, hi = s->n - 1;
    while (lo < hi) {
        int32_t m = (lo + hi) / 2;
        if (x > s->mid[m])
            lo = m + 1;
        else
            hi = m;
    }
    return s->index[lo];
}

/* FP4 as bitsandbytes does it: the sign bit, then the nearest magnitude of codes 0..7. */
typedef struct code4 {
    bool fp4;
    sorted_code s; /* FP4: magnitudes of codes 0..7; else the whole table */
} code4;

static void code4_init(code4 *c, road_qformat f, const float *table) {
    c->fp4 = f == ROAD_QFORMAT_FP4 && table == FP4_TABLE;
    sorted_code_init(&c->s, table, c->fp4 ? 8 : 16);
}

static uint8_t code4_find(const code4 *c, float x) {
    if (!c->fp4) return sorted_code_find(&c->s, x);
    uint8_t sign = x < 0.0f ? FP4_SIGN : 0u;
    return (uint8_t)(sign | sorted_code_find(&c->s, fabsf(x)));
}

/* ---- sizes ----------------------------------------------------------------------------------- */

static bool is_4bit(road_qformat f) {
    return f == ROAD_QFORMAT_NF4 || f == ROAD_QFORMAT_FP4;
}

bool road_qformat_is_quantized(road_qformat f) {
    return f == ROAD_QFORMAT_INT8 || is_4bit(f);
}

int64_t road_qtensor_data_bytes(road_qformat f, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return 0;
    if (f == ROAD_QFORMAT_INT8) return rows * cols;
    if (is_4bit(f)) return (rows * cols + 1) / 2;
    if (q_is_half(f)) return rows * cols * 2;
    return 0;
}

static int64_t n_blocks_of(road_qformat f, int64_t rows, int64_t cols) {
    if (q_is_half(f)) return 0;
    return f == ROAD_QFORMAT_INT8 ? rows : (rows * cols + ROAD_QBLOCK - 1) / ROAD_QBLOCK;
}

/* Elements per absmax: a row (int8), ROAD_QBLOCK (4-bit), none (bf16 / f16). */
static int32_t block_of(road_qformat f, int64_t cols) {
    if (q_is_half(f)) return 0;
    return f == ROAD_QFORMAT_INT8 ? (int32_t)(cols < INT32_MAX ? cols : INT32_MAX) : ROAD_QBLOCK;
}

static int64_t n_nested(int64_t n_blocks) {
    return (n_blocks + ROAD_QNESTED_BLOCK - 1) / ROAD_QNESTED_BLOCK;
}

int64_t road_qtensor_bytes(const road_qtensor *q) {
    if (!q) return 0;
    int64_t b = road_qtensor_data_bytes(q->format, q->rows, q->cols);
    if (q->double_quant)
        b += q->n_blocks + n_nested(q->n_blocks) * (int64_t)sizeof(float);
    else
        b += q->n_blocks * (int64_t)sizeof(float);
    return b;
}

/* ---- element access -------------------------------------------------------------------------- */

float road_qtensor_block_absmax(const road_qtensor *q, int64_t b) {
    return q_is_half(q->format) ? 1.0f : q_absmax(q, b);
}

void road__q_dequant_range(const road_qtensor *q, int64_t e0, int64_t n, float *out) {
    if (q_is_half(q->format)) {
        const uint16_t *d = (const uint16_t *)(const void *)q->data + e0;
        if (q->format == ROAD_QFORMAT_BF16)
            for (int64_t i = 0; i < n; i++) out[i] = road_bf16_to_f32(d[i]);
        else
            for (int64_t i = 0; i < n; i++) out[i] = road_f16_to_f32(d[i]);
        return;
    }
    if (q->format == ROAD_QFORMAT_INT8) {
        const int8_t *d = (const int8_t *)q->data;
        int64_t e = e0;
        while (e < e0 + n) {
            const int64_t r = e / q->cols,
                          end = (r + 1) * q->cols < e0 + n ? (r + 1) * q->cols : e0 + n;
            const float s = q->absmax[r] / (float)QINT8_MAX;
            for (; e < end; e++) out[e - e0] = (float)d[e] * s;
        }
        return;
    }
    int64_t e = e0;
    while (e < e0 + n) {
        const int64_t b = e / ROAD_QBLOCK;
        const int64_t end = (b + 1) * ROAD_QBLOCK < e0 + n ? (b + 1) * ROAD_QBLOCK : e0 + n;
        const float a = q_absmax(q, b);
        for (; e < end; e++) out[e - e0] = q->code[q4_get(q->data, e)] * a;
    }
}

/* ---- quantize ------------------------------------------------------------------------------- */

static road_status check_finite(int64_t rows, int64_t cols, const float *w) {
    const int64_t n = rows * cols;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= !isfinite(w[i]);
    if (!bad) return ROAD_OK;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return road__error(ROAD_ERR_NUMERIC,
                               "cannot quantize a weight that is %s (row %lld, column %lld of a "
                               "%lld x %lld matrix); the checkpoint is broken",
                               isnan(w[i]) ? "NaN" : "infinite", (long long)(i / cols),
                               (long long)(i % cols), (long long)rows, (long long)cols);
    return ROAD_OK;
}

static void quantize_int8(road_qtensor *q, const float *w) {
    int8_t *d = (int8_t *)q->data;
#pragma omp parallel for schedule(static) if (q->rows * q->cols >= (1 << 16))
    for (int64_t r = 0; r < q->rows; r++) {
        const float *wr = w + r * q->cols;
        float a = 0.0f;
        for (int64_t k = 0; k < q->cols; k++) a = fmaxf(a, fabsf(wr[k]));
        q->absmax[r] = a;
        const float s = a > 0.0f ? (float)QINT8_MAX / a : 0.0f;
        for (int64_t k = 0; k < q->cols; k++) {
            float v = rintf(wr[k] * s); /* round half to even, as torch.round */
            v = v > QINT8_MAX ? QINT8_MAX : v < -QINT8_MAX ? -QINT8_MAX : v;
            d[r * q->cols + k] = (int8_t)v;
        }
    }
}

/* 4-bit blocks over the flattened matrix; absmax into `absmax` [n_blocks]. */
static void quantize_4bit(road_qtensor *q, const float *w, float *absmax) {
    code4 c;
    code4_init(&c, q->format, q->code);
    const int64_t n = q->rows * q->cols;
    /* blocks come in pairs of bytes cleanly: ROAD_QBLOCK is even, so a block never shares a
     * byte with the next one and blocks can be done in parallel */
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t b = 0; b < q->n_blocks; b++) {
        const int64_t e0 = b * ROAD_QBLOCK, e1 = e0 + ROAD_QBLOCK < n ? e0 + ROAD_QBLOCK : n;
        float a = 0.0f;
        for (int64_t e = e0; e < e1; e++) a = fmaxf(a, fabsf(w[e]));
        absmax[b] = a;
        const float inv = a > 0.0f ? 1.0f / a : 0.0f;
        for (int64_t e = e0; e < e1; e += 2) {
            uint8_t hi = code4_find(&c, w[e] * inv);
            uint8_t lo = e + 1 < e1 ? code4_find(&c, w[e + 1] * inv) : 0u;
            q->data[e >> 1] = (uint8_t)((hi << 4) | lo);
        }
    }
}

/* Double quantization of absmax [n_blocks] into q's qabsmax, nested_absmax, nested_offset. */
static void quantize_nested(road_qtensor *q, const float *absmax) {
    double sum = 0.0;
    for (int64_t b = 0; b < q->n_blocks; b++) sum += absmax[b];
    const float offset = (float)(sum / (double)q->n_blocks);
    q->nested_offset = offset;
    sorted_code s;
    sorted_code_init(&s, q->nested_code, DYN_MAP_SIZE);
    const int64_t nn = n_nested(q->n_blocks);
    for (int64_t j = 0; j < nn; j++) {
        const int64_t b0 = j * ROAD_QNESTED_BLOCK;
        const int64_t b1 =
            b0 + ROAD_QNESTED_BLOCK < q->n_blocks ? b0 + ROAD_QNESTED_BLOCK : q->n_blocks;
        float a = 0.0f;
        for (int64_t b = b0; b < b1; b++) a = fmaxf(a, fabsf(absmax[b] - offset));
        q->nested_absmax[j] = a;
        for (int64_t b = b0; b < b1; b++) {
            const float v = absmax[b] - offset;
            q->qabsmax[b] = sorted_code_find(&s, a > 0.0f ? v / a : 0.0f);
        }
    }
}

/* bf16 / f16: each weight rounded to nearest even; a finite weight past f16's range is
 * refused (it would become infinite). */
static road_status quantize_half(road_qtensor *q, const float *w) {
    uint16_t *d = (uint16_t *)(void *)q->data;
    const int64_t n = q->rows * q->cols;
    if (q->format == ROAD_QFORMAT_BF16) {
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
        for (int64_t i = 0; i < n; i++) d[i] = road_f32_to_bf16(w[i]);
        return ROAD_OK;
    }
    int64_t over = -1;
    for (int64_t i = 0; i < n && over < 0; i++)
        if (fabsf(w[i]) >= 65520.0f) over = i; /* rounds to infinity in f16 */
    if (over >= 0)
        return road__error(ROAD_ERR_NUMERIC,
                           "weight %g (row %lld, column %lld) is past float16's range (65504); "
                           "keep this layer in bf16 or float32",
                           (double)w[over], (long long)(over / q->cols),
                           (long long)(over % q->cols));
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t i = 0; i < n; i++) d[i] = road_f32_to_f16(w[i]);
    return ROAD_OK;
}

/* Quantize w into q's arrays (sizes already set). */
static road_status quantize_into(road_qtensor *q, const float *w) {
    if (q_is_half(q->format)) return quantize_half(q, w);
    if (q->format == ROAD_QFORMAT_INT8) {
        quantize_int8(q, w);
        return ROAD_OK;
    }
    if (!q->double_quant) {
        quantize_4bit(q, w, q->absmax);
        return ROAD_OK;
    }
    float *tmp = road__malloc(sizeof(float) * (size_t)q->n_blocks);
    if (!tmp) return ROAD_ERR_NO_MEMORY;
    quantize_4bit(q, w, tmp);
    quantize_nested(q, tmp);
    road__free(tmp);
    return ROAD_OK;
}

static road_status check_sizes(road_qformat f, int64_t rows, int64_t cols, const char *fn) {
    if (f != ROAD_QFORMAT_INT8 && !is_4bit(f) && !q_is_half(f))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: format %d is not int8, nf4, fp4, bf16 or f16",
                           fn, (int)f);
    size_t n;
    if (rows <= 0 || cols <= 0 || road__size_mul((size_t)rows, (size_t)cols, &n) != 0 ||
        n > (size_t)INT64_MAX / 8)
        return road__error(ROAD_ERR_SHAPE, "%s: bad matrix size %lld x %lld", fn, (long long)rows,
                           (long long)cols);
    return ROAD_OK;
}

road_status road_qtensor_quantize(road_qformat f, int64_t rows, int64_t cols, const float *w,
                                  bool double_quant, road_qtensor **out) {
    const char *fn = "road_qtensor_quantize";
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    road_status st = check_sizes(f, rows, cols, fn);
    if (st != ROAD_OK) return st;
    if (!w) return road__error(ROAD_ERR_INVALID_ARG, "%s: no weights", fn);
    if ((st = check_finite(rows, cols, w)) != ROAD_OK) return st;
    road_qtensor *q = road__calloc(1, sizeof *q);
    if (!q) return ROAD_ERR_NO_MEMORY;
    q->format = f;
    q->rows = rows;
    q->cols = cols;
    q->owned = true;
    q->block = block_of(f, cols);
    q->n_blocks = n_blocks_of(f, rows, cols);
    q->double_quant = double_quant && is_4bit(f);
    q->code = road_qcode_table(f);
    q->data = road__malloc((size_t)road_qtensor_data_bytes(f, rows, cols));
    if (!q->data) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK && q->double_quant) {
        q->nested_code = road_qdynamic_map();
        q->qabsmax = road__malloc((size_t)q->n_blocks);
        q->nested_absmax = road__malloc(sizeof(float) * (size_t)n_nested(q->n_blocks));
        if (!q->qabsmax || !q->nested_absmax) st = ROAD_ERR_NO_MEMORY;
    } else if (st == ROAD_OK && q->n_blocks > 0) {
        if (!(q->absmax = road__malloc(sizeof(float) * (size_t)q->n_blocks)))
            st = ROAD_ERR_NO_MEMORY;
    }
    if (st == ROAD_OK) st = quantize_into(q, w);
    if (st != ROAD_OK) {
        road_qtensor_free(q);
        return st;
    }
    *out = q;
    return ROAD_OK;
}

road_status road_qtensor_requantize(road_qtensor *q, const float *w) {
    if (!q || !w)
        return road__error(ROAD_ERR_INVALID_ARG, "road_qtensor_requantize: NULL argument");
    road_status st = check_finite(q->rows, q->cols, w);
    return st != ROAD_OK ? st : quantize_into(q, w);
}

road_status road_qtensor_wrap(const road_qtensor *t, road_qtensor **out) {
    const char *fn = "road_qtensor_wrap";
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!t) return road__error(ROAD_ERR_INVALID_ARG, "%s: no description", fn);
    road_status st = check_sizes(t->format, t->rows, t->cols, fn);
    if (st != ROAD_OK) return st;
    const bool dq = t->double_quant && is_4bit(t->format);
    if (!t->data || (is_4bit(t->format) && !t->code) ||
        (!dq && !t->absmax && !q_is_half(t->format)) ||
        (dq && (!t->qabsmax || !t->nested_absmax || !t->nested_code)))
        return road__error(ROAD_ERR_INVALID_ARG, "%s: a %s%s tensor needs data, %s", fn,
                           road_qformat_name(t->format), dq ? " double-quantized" : "",
                           dq                   ? "code, qabsmax, nested_absmax and nested_code"
                           : is_4bit(t->format) ? "code and absmax"
                                                : "absmax");
    road_qtensor *q = road__malloc(sizeof *q);
    if (!q) return ROAD_ERR_NO_MEMORY;
    *q = *t;
    q->double_quant = dq;
    q->owned = false;
    q->block = block_of(t->format, t->cols);
    q->n_blocks = n_blocks_of(t->format, t->rows, t->cols);
    if (!is_4bit(t->format)) q->code = NULL;
    if (q_is_half(t->format)) q->absmax = NULL;
    *out = q;
    return ROAD_OK;
}

void road_qtensor_free(road_qtensor *q) {
    if (!q) return;
    if (q->owned) {
        road__free(q->data);
        road__free(q->absmax);
        road__free(q->qabsmax);
        road__free(q->nested_absmax);
    }
    road__free(q);
}

road_status road_qtensor_copy(const road_qtensor *src, road_qtensor **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_qtensor_copy: out is NULL");
    *out = NULL;
    if (!src) return road__error(ROAD_ERR_INVALID_ARG, "road_qtensor_copy: no tensor");
    road_qtensor *q = road__calloc(1, sizeof *q);
    if (!q) return ROAD_ERR_NO_MEMORY;
    *q = *src;
    q->owned = true;
    q->data = NULL;
    q->absmax = q->nested_absmax = NULL;
    q->qabsmax = NULL;
    const size_t nd = (size_t)road_qtensor_data_bytes(src->format, src->rows, src->cols);
    const size_t nb = (size_t)src->n_blocks, nn = (size_t)n_nested(src->n_blocks);
    road_status st = ROAD_OK;
    if (!(q->data = road__malloc(nd)))
        st = ROAD_ERR_NO_MEMORY;
    else
        memcpy(q->data, src->data, nd);
    if (st == ROAD_OK && src->double_quant) {
        q->qabsmax = road__malloc(nb);
        q->nested_absmax = road__malloc(nn * sizeof(float));
        if (!q->qabsmax || !q->nested_absmax)
            st = ROAD_ERR_NO_MEMORY;
        else {
            memcpy(q->qabsmax, src->qabsmax, nb);
            memcpy(q->nested_absmax, src->nested_absmax, nn * sizeof(float));
        }
    } else if (st == ROAD_OK && nb > 0) {
        if (!(q->absmax = road__malloc(nb * sizeof(float))))
            st = ROAD_ERR_NO_MEMORY;
        else
            memcpy(q->absmax, src->absmax, nb * sizeof(float));
    }
    if (st != ROAD_OK) {
        road_qtensor_free(q);
        return st;
    }
    *out = q;
    return ROAD_OK;
}

road_status road_qtensor_dequantize_rows(const road_qtensor *q, int64_t r0, int64_t n, float *out) {
    if (!q || (n > 0 && !out) || r0 < 0 || n < 0 || r0 + n > q->rows)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_qtensor_dequantize_rows: rows [%lld, %lld) out of range (0..%lld)",
                           (long long)r0, (long long)(r0 + n), q ? (long long)q->rows : 0LL);
    if (n > 0) road__qkernels_current()->dequant(q, r0, n, out);
    return ROAD_OK;
}
