/*
 * road/safetensors.h - reading and writing safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
 * N bytes of UTF-8 JSON mapping tensor names to {"dtype", "shape", "data_offsets"} plus an
 * optional "__metadata__" object of string values, then the data section. Reading mmaps the
 * file and hands out zero-copy pointers; every size and offset is validated before use.
 * Writing lays tensors out as the reference writer does (largest dtype first, then by name, so
 * every tensor is aligned to its element size), pads the header to 8 bytes, and replaces the
 * target file atomically.
 */
#ifndef ROAD_SAFETENSORS_H
#define ROAD_SAFETENSORS_H

#include "road/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ROAD_ST_MAX_DIMS 8

typedef struct road_st_tensor {
    const char *name;               /* owned by the file handle */
    road_dtype dtype;
    int32_t ndim;                   /* 0 for a scalar */
    int64_t shape[ROAD_ST_MAX_DIMS];
    int64_t numel;                  /* product of shape (1 for a scalar) */
    const void *data;               /* into the mapping; valid while the file is open */
    size_t nbytes;
} road_st_tensor;

/* Threads: read-only once open (the index is built by the open): any threads at once. */
typedef struct road_st_file road_st_file;

/* Open and validate a file (mmap, read-only). */
ROAD_API road_status road_st_open(const char *path, road_st_file **out);
/* Like road_st_open, but the mapping is private and writable (copy-on-write): the tensor data
 * may be changed through a cast, which changes this process's view only (pages are copied as
 * they are written; the file is never modified). Used for weights that merging may change. */
ROAD_API road_status road_st_open_private(const char *path, road_st_file **out);
/* Parse a file image already in memory (no copy; `data` must outlive the handle). */
ROAD_API road_status road_st_open_memory(const void *data, size_t len, road_st_file **out);
ROAD_API void road_st_close(road_st_file *f);

ROAD_API int64_t road_st_count(const road_st_file *f);
/* Tensors in the order of their data offsets. */
ROAD_API const road_st_tensor *road_st_at(const road_st_file *f, int64_t i);
/* NULL if absent (no error set). */
ROAD_API const road_st_tensor *road_st_find(const road_st_file *f, const char *name);
/* A __metadata__ value, or NULL. */
ROAD_API const char *road_st_metadata(const road_st_file *f, const char *key);
ROAD_API int64_t road_st_metadata_count(const road_st_file *f);
ROAD_API const char *road_st_metadata_key(const road_st_file *f, int64_t i);

/* Find `name` and check it is F32 with the given shape (ndim < 0: any shape). On success
 * *data points to its floats. The error names the tensor, the expected and the found shape. */
ROAD_API road_status road_st_get_f32(const road_st_file *f, const char *name, int32_t ndim,
                                     const int64_t *shape, const float **data,
                                     const road_st_tensor **info);

/* Threads: one thread at a time per writer. */
typedef struct road_st_writer road_st_writer;

ROAD_API road_status road_st_writer_create(road_st_writer **out);
ROAD_API void road_st_writer_free(road_st_writer *w);
/* Add a tensor. The data is copied. Duplicate names are refused. */
ROAD_API road_status road_st_writer_add(road_st_writer *w, const char *name, road_dtype dtype,
                                        int32_t ndim, const int64_t *shape, const void *data);
ROAD_API road_status road_st_writer_set_metadata(road_st_writer *w, const char *key,
                                                 const char *value);
/* Write to `path` atomically (temp file in the same folder, fsync, rename). */
ROAD_API road_status road_st_writer_save(road_st_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_SAFETENSORS_H */
