/*
 * llm/weights.h - the tensors of a Hugging Face checkpoint folder (private).
 *
 * One model.safetensors, or shards listed in model.safetensors.index.json. Every tensor is
 * handed out as float32: F32 tensors point into a private, writable (copy-on-write) mapping of
 * their file, so merging adapters into them copies only the pages it changes and never touches
 * the file; BF16 and F16 tensors are widened once into memory the weights object owns.
 */
#ifndef ROAD_LLM_WEIGHTS_H
#define ROAD_LLM_WEIGHTS_H

#include "road/core.h"
#include "road/safetensors.h"

typedef struct road_weights road_weights;

road_status road__weights_open(const char *dir, road_weights **out);
void road__weights_close(road_weights *w);
bool road__weights_has(const road_weights *w, const char *name);
/* The tensor as float32 with exactly this shape; the error names the tensor, the file, the
 * expected and the found shape (or says it is missing). */
road_status road__weights_get(road_weights *w, const char *name, int32_t ndim, const int64_t *shape,
                              float **out);
/* The raw tensor `name` (any dtype; data in a private writable mapping), NULL if absent. */
const road_st_tensor *road__weights_find(const road_weights *w, const char *name);
/* The tensor `name` as stored (mapped copy-on-write: writes stay private), checked against
 * `shape` and for alignment to its element size (the caller counts its bytes: a road_qtensor
 * over it does). */
road_status road__weights_get_raw(road_weights *w, const char *name, int32_t ndim,
                                  const int64_t *shape, const road_st_tensor **out);
/* Give back a float32 tensor road__weights_get handed out and the caller no longer needs (it
 * was quantized): a widened copy is freed, a mapped one's pages are dropped from memory. The
 * byte counts below go down by its size. */
void road__weights_release(road_weights *w, float *p, int64_t numel);
/* Drop the resident pages of mapped tensor bytes [p, p + n) that were only read and are used no
 * more (a 16-bit tensor widened for good): a later read would fetch them from the file again. */
void road__weights_drop(const void *p, size_t n);
/* The pages of a float32 tensor road__weights_get gave, dropped from memory when they are the
 * mapped file's (a later read faults in what it touches); a converted copy is left alone. For
 * a table that was read whole once (quantizing a tied lm_head) but is then read a row at a
 * time (the embedding lookup). */
void road__weights_evict(const road_weights *w, const float *p, int64_t numel);
/* 1 + the highest n of any tensor named "<prefix><n>.<...>" (0 when there is none): how many
 * blocks the files hold, read from the names alone (no tensor is touched). */
int64_t road__weights_layer_count(const road_weights *w, const char *prefix);
/* Bytes of float32 handed out so far: mapped from files, and widened into memory. */
int64_t road__weights_mapped_bytes(const road_weights *w);
int64_t road__weights_owned_bytes(const road_weights *w);

#endif
