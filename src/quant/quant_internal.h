/*
 * quant/quant_internal.h - what the files of quant/ share (private): element access, the
 * kernel table of the quantized matmuls, and the block layouts pinned by static asserts.
 *
 * Legend: O = q->rows (out features), K = q->cols (in features), R = rows of x.
 */
#ifndef ROAD_QUANT_INTERNAL_H
#define ROAD_QUANT_INTERNAL_H

#include "road/quant.h"

/* Layouts (docs/quant.md). A 4-bit block of ROAD_QBLOCK elements is ROAD_QBLOCK / 2 bytes;
 * the AVX2 kernels decode 8 elements (4 bytes) at a time, so a block is 8 such groups. */
#define QBLOCK_BYTES (ROAD_QBLOCK / 2)
_Static_assert(ROAD_QBLOCK == 64, "bitsandbytes' 4-bit blocksize is 64");
_Static_assert(QBLOCK_BYTES == 32, "one 4-bit block is 32 bytes: 64 nibbles");
_Static_assert(ROAD_QBLOCK % 8 == 0, "the AVX2 kernels decode 8 nibbles (4 bytes) at a time");
_Static_assert(ROAD_QNESTED_BLOCK == 256, "bitsandbytes' nested blocksize is 256");
_Static_assert(sizeof(float) == 4 && sizeof(int8_t) == 1, "absmax is float32, int8 data 1 byte");

/* bf16 and f16: the weights as stored, 2 bytes each, no absmax. */
static inline bool q_is_half(road_qformat f) {
    return f == ROAD_QFORMAT_BF16 || f == ROAD_QFORMAT_F16;
}

/* int8 values are at most this in magnitude (LLM.int8: round(w * 127 / absmax)). */
#define QINT8_MAX 127

/* Up to this many rows of x the matmul streams the packed weights once (decode, and a
 * serving batch of up to 16 sequences); above it, tiles are dequantized for sgemm (as
 * road__sgemm_xwt does with core/skinny.h). The AVX2 and AVX-512 kernels keep at most QKERNEL_ROWS
 * rows' accumulators in registers and take more rows in groups of that many, each output row of W
 * decoded again from L1 for the next group (read from memory once). */
#define QSKINNY_MAX_ROWS 16
#define QKERNEL_ROWS 8
/* Output rows per dequantized tile of the sgemm path: the tile (QTILE_ROWS x K floats) stays
 * in L2 for K up to ~2048 while sgemm reads it, and is wide enough for sgemm's blocking. */
#define QTILE_ROWS 128

/* The 4-bit code of flattened element e (high nibble first). */
static inline unsigned q4_get(const uint8_t *data, int64_t e) {
    uint8_t b = data[e >> 1];
    return (e & 1) ? (b & 0x0fu) : (b >> 4);
}

/* The absmax of block b, double quantization decoded (road_qtensor_block_absmax, inlined). */
static inline float q_absmax(const road_qtensor *q, int64_t b) {
    if (!q->double_quant) return q->absmax[b];
    return q->nested_code[q->qabsmax[b]] * q->nested_absmax[b / ROAD_QNESTED_BLOCK] +
           q->nested_offset;
}

/* Kernels of the quantized matmul; the reference is the specification, every other
 * implementation is tested against it (tests/test_quant_matmul.c). */
typedef struct road_qkernel_ops {
    const char *name;
    /* y[r * ldy + o] = dot(x row r, dequantized W row o) for o in [o0, o1), r < R <= 16. */
    void (*xwt)(const road_qtensor *q, int64_t R, const float *x, int64_t o0, int64_t o1, float *y,
                int64_t ldy);
    /* out [n x K] = W rows [r0, r0 + n), dequantized. */
    void (*dequant)(const road_qtensor *q, int64_t r0, int64_t n, float *out);
    /* Optional (NULL: none). x_floats: how many floats of scratch xwt wants x rearranged into
     * for q and R rows (0: x as given); x_pack writes the rearrangement. road_qtensor_xwt packs
     * once per call, before the threads split W's rows, and hands xwt the packed x. */
    int64_t (*x_floats)(const road_qtensor *q, int64_t R);
    void (*x_pack)(const road_qtensor *q, int64_t R, const float *x, float *xp);
} road_qkernel_ops;

extern const road_qkernel_ops road__qkernels_reference;
#if defined(__x86_64__)
extern const road_qkernel_ops road__qkernels_avx2;
extern const road_qkernel_ops road__qkernels_avx512;
extern const road_qkernel_ops road__qkernels_vnni_q8;
#endif
#if defined(__x86_64__)
/* The VNNI-Q8 kernel's many-row matmul (prefill): y (R, O) = x (R, K) W^T with x rounded to
 * int8 as the decode kernel does, each row bit-identical to its decode result; on nt threads.
 * Takes int8 / NF4 / FP4 tensors with cols % 64 == 0 (road__qvnni_gemm_takes); the others
 * go the exact way. ROAD_ERR_NO_MEMORY when its buffers cannot be had. */
bool road__qvnni_gemm_takes(const road_qtensor *q);
road_status road__qvnni_gemm(const road_qtensor *q, int64_t R, const float *x, float *y, int nt);
#endif
/* The ops for this thread (road_qkernel_select; AUTO resolved). */
const road_qkernel_ops *road__qkernels_current(void);

/* Run the calling thread with kernel k (one the CPU has: road_qkernel_select checked it) until
 * road__qkernel_scope_leave; AUTO leaves the thread's choice as it is. A model's calls open one
 * with the model's choice (road_model_params.int8_activations) and give the caller's back. */
typedef struct road_qkernel_scope {
    road_qkernel prev;
    bool set;
} road_qkernel_scope;
road_qkernel_scope road__qkernel_scope_enter(road_qkernel k);
void road__qkernel_scope_leave(const road_qkernel_scope *s);
#define ROAD_QKERNEL_SCOPE(k)                                                                      \
    road_qkernel_scope road_qkernel_scope_                                                         \
        __attribute__((cleanup(road__qkernel_scope_leave), unused)) = road__qkernel_scope_enter(k)

/* The many-row matmuls as one AVX-512 GEMM that dequantizes W while packing it (qgemm_avx512.c):
 * out = in W^T (in: rows x K, out: rows x O) or, grad_input, out = in W (in: rows x O, out:
 * rows x K), out overwritten. _takes: whether the calling thread's kernel ops (AVX-512 or
 * VNNI) and q's layout (not 4-bit with cols % 64 != 0) send q there; false off x86-64. */
bool road__qgemm_avx512_takes(const road_qkernel_ops *ops, const road_qtensor *q);
road_status road__qgemm_avx512(const road_qtensor *q, int64_t rows, const float *in, float *out,
                               bool grad_input);

/* Dequantize flattened elements [e0, e0 + n) into out (any layout, any alignment). */
void road__q_dequant_range(const road_qtensor *q, int64_t e0, int64_t n, float *out);

#endif
