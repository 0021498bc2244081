/*
 * road/quant.h - quantized base weights: int8 (LLM.int8's weight format) and 4-bit NF4 / FP4
 * (bitsandbytes' Linear4bit formats), quantize / dequantize, and the matmuls of a linear layer
 * whose weight is quantized.
 *
 * A road_qtensor holds one weight matrix W [rows x cols] (a linear layer's [out x in]):
 *
 *   int8  one absmax per row (bitsandbytes' SCB): q = round(w * 127 / absmax) in [-127, 127],
 *         w' = q * (absmax / 127). data is rows*cols int8, row-major.
 *   nf4   the matrix flattened row-major and cut into blocks of 64 elements (the last block may
 *   fp4   be short; blocks may cross rows when cols is not a multiple of 64); one absmax per
 *         block; each element becomes the index of the nearest entry of a 16-value code table
 *         (bitsandbytes' NF4 or FP4 table) after dividing by the block's absmax, and
 *         w' = code[q] * absmax. Two indices per byte, the first element in the high nibble
 *         (bitsandbytes' packing); an odd count leaves the last low nibble 0.
 *   double quantization (4-bit only, bitsandbytes' compress_statistics): the absmax values
 *         less their mean (offset) are quantized in blocks of 256 with bitsandbytes' dynamic
 *         8-bit map; absmax' = map[qabsmax] * nested_absmax[block / 256] + offset.
 *
 * docs/quant.md gives the byte layouts and the checkpoint format. Tensors are plain data with
 * documented fields; road_qtensor_quantize allocates one (free it with road_qtensor_free);
 * road_qtensor_wrap describes arrays the caller owns (a mapped checkpoint).
 *
 *   bf16  the weights as a checkpoint stores them, 2 bytes each (rows*cols, row-major), no
 *   f16   absmax (block 0, n_blocks 0): the layers of a BF16/F16 checkpoint are kept as stored
 *         and run by the same matmuls (decode streams the 2-byte weights; prefill widens tiles
 *         for sgemm). "Quantizing" float32 into them rounds to nearest even.
 */
#ifndef ROAD_QUANT_H
#define ROAD_QUANT_H

#include "road/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum road_qformat {
    ROAD_QFORMAT_NONE = 0, /* float32: not quantized */
    ROAD_QFORMAT_INT8 = 1, /* int8, one absmax per row */
    ROAD_QFORMAT_NF4 = 2,  /* 4-bit NormalFloat, blocks of 64 */
    ROAD_QFORMAT_FP4 = 3,  /* 4-bit float (1 sign, 2 exponent, 1 mantissa), blocks of 64 */
    ROAD_QFORMAT_BF16 = 4, /* bfloat16, as a checkpoint stores it (no scale) */
    ROAD_QFORMAT_F16 = 5   /* IEEE float16, as a checkpoint stores it (no scale) */
} road_qformat;
/* int8, nf4, fp4: the formats with scales (bf16 and f16 are a checkpoint's own 16-bit floats,
 * kept as stored rather than widened). */
ROAD_API bool road_qformat_is_quantized(road_qformat f);

/* Elements per absmax of the 4-bit formats (bitsandbytes' default blocksize). */
#define ROAD_QBLOCK 64
/* absmax values per nested absmax in double quantization (bitsandbytes' nested blocksize). */
#define ROAD_QNESTED_BLOCK 256

/* "none", "int8", "nf4", "fp4", "bf16", "f16"; "?" for an invalid value. */
ROAD_API const char *road_qformat_name(road_qformat f);
/* Parse "none" | "int8" | "nf4" | "fp4" | "bf16" | "f16"; anything else is
 * ROAD_ERR_INVALID_ARG naming them. */
ROAD_API road_status road_qformat_parse(const char *s, road_qformat *out);

/* The code tables: NF4 and FP4 [16] (index = 4-bit code), the dynamic 8-bit map [256] of
 * double quantization (ascending). Static data. */
ROAD_API const float *road_qcode_table(road_qformat f);
ROAD_API const float *road_qdynamic_map(void);

/* Threads: the matmuls only read it (any number of threads at once); quantizing into it and
 * merging an adapter into its layer (re-quantizing in place) need it to themselves. */
typedef struct road_qtensor {
    road_qformat format;
    int64_t rows, cols; /* W [rows x cols] */
    int32_t block;      /* elements per absmax: cols (int8) or ROAD_QBLOCK */
    int64_t n_blocks;   /* absmax values: rows (int8) or ceil(rows*cols / 64) */
    uint8_t *data;      /* int8: rows*cols bytes (int8_t); 4-bit: ceil(rows*cols / 2) */
    const float *code;  /* 4-bit: the 16-entry code table (road_qcode_table or a file's) */
    /* absmax, plain (double_quant false): [n_blocks] */
    float *absmax;
    /* absmax, double-quantized (double_quant true, 4-bit only) */
    bool double_quant;
    uint8_t *qabsmax;         /* [n_blocks] indices into nested_code */
    float *nested_absmax;     /* [ceil(n_blocks / 256)] */
    const float *nested_code; /* [256] the map (road_qdynamic_map or a file's) */
    float nested_offset;      /* mean of the absmax values, added back */
    bool owned;               /* road_qtensor_free frees the arrays too */
} road_qtensor;

/* Quantize W [rows x cols] (row-major float32) into a new tensor. double_quant applies to the
 * 4-bit formats only (ignored for int8). Refused: format NONE or invalid, non-positive sizes,
 * a NaN or Inf weight (ROAD_ERR_NUMERIC naming the row and column). All-zero blocks are kept
 * exactly (absmax 0, every weight 0). */
ROAD_API road_status road_qtensor_quantize(road_qformat f, int64_t rows, int64_t cols,
                                           const float *w, bool double_quant, road_qtensor **out);
/* Quantize W again into q's own arrays (same format, sizes and double_quant): used to merge an
 * adapter into a quantized layer. Refused (q unchanged) like road_qtensor_quantize. */
ROAD_API road_status road_qtensor_requantize(road_qtensor *q, const float *w);
/* A tensor over arrays the caller owns (they must outlive it; merging writes into them).
 * `t` gives format, sizes, double_quant and the array pointers; block, n_blocks and owned are
 * set here. Every array size is checked by the caller: the sizes road_qtensor_*_bytes say. */
ROAD_API road_status road_qtensor_wrap(const road_qtensor *t, road_qtensor **out);
ROAD_API void road_qtensor_free(road_qtensor *q);
/* A deep copy with arrays of its own (owned); the code tables stay shared (static or the
 * source's: they must outlive the copy). */
ROAD_API road_status road_qtensor_copy(const road_qtensor *q, road_qtensor **out);

/* Sizes in bytes: the packed data, the absmax state (plain floats, or qabsmax + nested
 * absmax), and the whole tensor. */
ROAD_API int64_t road_qtensor_data_bytes(road_qformat f, int64_t rows, int64_t cols);
ROAD_API int64_t road_qtensor_bytes(const road_qtensor *q);

/* Dequantize rows [r0, r0 + n) into out [n x cols]. */
ROAD_API road_status road_qtensor_dequantize_rows(const road_qtensor *q, int64_t r0, int64_t n,
                                                  float *out);
/* The absmax of block b (double quantization decoded). */
ROAD_API float road_qtensor_block_absmax(const road_qtensor *q, int64_t b);

/* y [rows x out] = x [rows x in] W^T (+ bias [out] if not NULL): a linear layer's forward
 * with a quantized weight (out = q->rows, in = q->cols). Up to 16 rows (decode): weights are
 * dequantized in registers and dotted with every row, streaming the packed weights once; more
 * rows (prefill, training): tiles of W are dequantized and multiplied with sgemm. */
ROAD_API road_status road_qtensor_xwt(const road_qtensor *q, int64_t rows, const float *x,
                                      const float *bias, float *y);
/* dx [rows x in] = dy [rows x out] W: the input gradient, through the dequantized weight. */
ROAD_API road_status road_qtensor_dyw(const road_qtensor *q, int64_t rows, const float *dy,
                                      float *dx);

/* Kernel implementations of the quantized matmuls, for tests and benchmarks: reference
 * (scalar: dequantize a row, dot it), a named x86 one, or the fastest the CPU supports (AUTO:
 * AVX-512, else AVX2, else reference). Per thread; selecting one the CPU lacks fails with
 * ROAD_ERR_UNSUPPORTED and leaves the choice as it was. */
typedef enum road_qkernel {
    ROAD_QKERNEL_AUTO = 0,
    ROAD_QKERNEL_REFERENCE = 1,
    ROAD_QKERNEL_AVX2 = 2,   /* AVX2 + FMA + F16C */
    ROAD_QKERNEL_AVX512 = 3, /* AVX-512 F, BW, VL, DQ (Intel Skylake-X and later, AMD Zen 4) */
    /* Approximate, never chosen by AUTO: decode (up to 16 rows) of int8 / NF4 / FP4 weights
     * with x rounded to int8 per block of 64 (and the 4-bit tables to int8 steps), dotted
     * with AVX512-VNNI; other formats and paths as ROAD_QKERNEL_AVX512. Error bound and
     * measured error: docs/quant.md. */
    ROAD_QKERNEL_VNNI_Q8 = 4
} road_qkernel;
ROAD_API road_status road_qkernel_select(road_qkernel k);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_QUANT_H */
