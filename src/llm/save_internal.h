/*
 * llm/save_internal.h - what the two model writers share (save.c: float folders and fresh
 * models; save_quant.c: quantized folders). Private to llm/.
 */
#ifndef ROAD_LLM_SAVE_INTERNAL_H
#define ROAD_LLM_SAVE_INTERNAL_H

#include <cjson/cJSON.h>

#include "road/llm.h"
#include "road/quant.h"
#include "road/safetensors.h"

#define ROAD_SAVE_WEIGHTS_FILE "model.safetensors"
#define ROAD_SAVE_CONFIG_FILE "config.json"

/* transformers' torch_dtype name of a float dtype ("float32", "bfloat16", "float16"). */
const char *road__save_torch_name(road_dtype t);
/* F32, BF16 or F16, else ROAD_ERR_UNSUPPORTED naming the choices. */
road_status road__save_check_dtype(road_dtype t);
/* Add n floats to w as `dtype` (bf16 / f16 rounded to nearest even). */
road_status road__save_add_floats(road_st_writer *w, const char *name, road_dtype dtype,
                                  int32_t ndim, const int64_t *shape, const float *x, int64_t n);
/* Add a 16-bit tensor kept as stored (q: ROAD_QFORMAT_BF16 / F16) as `dtype`: its bytes as
 * they are when dtype is its own (a round trip is bit-identical), else widened and converted. */
road_status road__save_add_packed16(road_st_writer *w, const char *name, road_dtype dtype,
                                    const road_qtensor *q);
/* dir/config.json from the config.json at `src`, with torch_dtype (and v5's "dtype" when
 * present) set to dtype, quantization_config replaced by `qcfg` (taken over; NULL: the key is
 * removed), and with `untie` "tie_word_embeddings": false (the file then holds lm_head.weight:
 * a merge gave the head its own weight, or the head is quantized apart from the embedding). */
road_status road__save_config(const char *src, road_dtype dtype, cJSON *qcfg, bool untie,
                              const char *dir);
/* Copy the tokenizer and generation files `from` holds into dir. */
road_status road__save_side_files(const char *from, const char *dir);
/* Check dir by the rule (io/dir.h: a model folder road wrote may be replaced, nothing else,
 * never `input`, the path read from; may be NULL), run write(ctx, tmp) into a temporary
 * folder next to dir, then swap it into place. */
road_status road__save_folder(const char *dir, const char *input,
                              road_status (*write)(void *, const char *), void *ctx);

#endif
