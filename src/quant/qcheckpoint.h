/*
 * quant/qcheckpoint.h - quantized linear weights in safetensors checkpoints, under the names
 * bitsandbytes / transformers serialize them (private; docs/quant.md has the layout).
 *
 * For a layer prefix P ("model.layers.0.mlp.up_proj"):
 *   4-bit  P.weight U8 [ceil(n/2), 1] packed codes, P.weight.absmax F32 [blocks] (U8 with
 *          double quantization), P.weight.quant_map F32 [16], P.weight.nested_absmax F32,
 *          P.weight.nested_quant_map F32 [256], P.weight.quant_state.bitsandbytes__nf4 (or
 *          __fp4) U8: the JSON {"quant_type", "blocksize", "dtype", "shape", and with double
 *          quantization "nested_blocksize", "nested_dtype", "nested_offset"}.
 *   int8   P.weight I8 [out, in], P.SCB F32 [out] (P.weight_format, when present, ignored).
 */
#ifndef ROAD_QUANT_QCHECKPOINT_H
#define ROAD_QUANT_QCHECKPOINT_H

#include "road/quant.h"
#include "road/safetensors.h"

/* Tensor lookup by full name in whatever holds the checkpoint (NULL: absent). */
typedef const road_st_tensor *(*road_qckpt_find)(void *ctx, const char *name);

/* Is P.weight stored quantized (a U8 or I8 tensor)? */
bool road__qckpt_is_quantized(road_qckpt_find find, void *ctx, const char *prefix);

/* Read P's quantized weight for a [rows x cols] layer. Every tensor's dtype, shape and
 * alignment, the quant_state JSON (format, blocksize 64, nested blocksize 256, shape) and the
 * finiteness of the absmax state and maps are checked; errors name the tensor. The result
 * borrows the tensors' data (they must outlive it; a private mapping lets merges write). */
road_status road__qckpt_read(road_qckpt_find find, void *ctx, const char *prefix, int64_t rows,
                             int64_t cols, road_qtensor **out);

/* Add P's tensors for q to a writer. orig_dtype is the quant_state "dtype" ("float32",
 * "bfloat16", "float16"): the float type the weight had. */
road_status road__qckpt_write(road_st_writer *w, const char *prefix, const road_qtensor *q,
                              const char *orig_dtype);

#endif
