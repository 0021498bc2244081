/*
 * road/core.h - status codes, error messages, logging, threads and version.
 *
 * Every public function that can fail on its input returns a road_status. On failure a
 * thread-local message (road_last_error()) says what was wrong and how to fix it; the message
 * stays valid until the next failing road call on the same thread. Success never clears it.
 *
 * Threads: each handle type's header says what may run at once on it (a line starting
 * "Threads:" at its typedef). Handles share no hidden state: two objects of one type may be
 * used from two threads at once unless that line says otherwise. Process-wide: the log
 * callback and the thread counts below.
 */
#ifndef ROAD_CORE_H
#define ROAD_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(ROAD_BUILDING_LIBRARY)
#define ROAD_API __attribute__((visibility("default")))
#else
#define ROAD_API
#endif

/* One row per status: enum name, short name, generic message. */
#define ROAD_STATUS_TABLE(X)                                                                       \
    X(ROAD_OK, "ok", "success")                                                                    \
    X(ROAD_ERR_INVALID_ARG, "invalid_argument", "invalid argument")                               \
    X(ROAD_ERR_NO_MEMORY, "no_memory", "out of memory")                                           \
    X(ROAD_ERR_IO, "io", "input/output error")                                                    \
    X(ROAD_ERR_FORMAT, "format", "malformed file or data")                                        \
    X(ROAD_ERR_CONFIG, "config", "invalid configuration")                                         \
    X(ROAD_ERR_SHAPE, "shape", "shape mismatch")                                                  \
    X(ROAD_ERR_NOT_FOUND, "not_found", "not found")                                               \
    X(ROAD_ERR_EXISTS, "exists", "already exists")                                                \
    X(ROAD_ERR_STATE, "state", "operation not allowed in the current state")                      \
    X(ROAD_ERR_NUMERIC, "numeric", "numerical error (singular, NaN or Inf)")                      \
    X(ROAD_ERR_UNSUPPORTED, "unsupported", "unsupported feature")                                 \
    X(ROAD_ERR_INTERNAL, "internal", "internal error")

typedef enum road_status {
#define ROAD_STATUS_ENUM_(name, short_name, msg) name,
    ROAD_STATUS_TABLE(ROAD_STATUS_ENUM_)
#undef ROAD_STATUS_ENUM_
        ROAD_STATUS_COUNT_
} road_status;

/* Short identifier of a status ("shape"); never NULL. */
ROAD_API const char *road_status_name(road_status s);
/* Generic one-line description of a status; never NULL. */
ROAD_API const char *road_status_message(road_status s);
/* Detail of the last failure on this thread ("" if none). Owned by road; valid until the
 * next failing call on this thread. */
ROAD_API const char *road_last_error(void);
/* Forget the last error message of this thread. */
ROAD_API void road_clear_error(void);

/* Library version, "MAJOR.MINOR.PATCH". */
ROAD_API const char *road_version(void);

/* Logging. The library never prints; it hands messages to this callback (default: none).
 * This is process-wide, like an allocator hook: set it once before using road from threads. */
typedef enum road_log_level {
    ROAD_LOG_DEBUG = 0,
    ROAD_LOG_INFO = 1,
    ROAD_LOG_WARN = 2,
    ROAD_LOG_ERROR = 3
} road_log_level;
typedef void (*road_log_fn)(road_log_level level, const char *message, void *user);
ROAD_API void road_log_set_callback(road_log_fn fn, void *user);

/* A token id: an index into a model's vocabulary (and its tokenizer's). The tokenizer, the
 * forward pass and generation all take and give token ids as road_token. */
typedef int32_t road_token;

/* Element types of tensors (the safetensors dtypes road understands). One table row per type in
 * core/dtype.c gives its name and size. */
typedef enum road_dtype {
    ROAD_DTYPE_F32 = 0,
    ROAD_DTYPE_F16,
    ROAD_DTYPE_BF16,
    ROAD_DTYPE_F64,
    ROAD_DTYPE_I64,
    ROAD_DTYPE_I32,
    ROAD_DTYPE_I16,
    ROAD_DTYPE_I8,
    ROAD_DTYPE_U8,
    ROAD_DTYPE_BOOL,
    ROAD_DTYPE_COUNT_
} road_dtype;

/* safetensors name ("F32", "BF16", ...), or "?" for an invalid value. */
ROAD_API const char *road_dtype_name(road_dtype t);
/* Bytes per element (0 for an invalid value). */
ROAD_API size_t road_dtype_size(road_dtype t);
/* Parse a safetensors dtype name; unknown or unsupported names (F8_E4M3, ...) are
 * ROAD_ERR_UNSUPPORTED / ROAD_ERR_FORMAT with a message naming the dtype. */
ROAD_API road_status road_dtype_parse(const char *name, road_dtype *out);
/* Convert n elements of src (type t) to float32 (F32, F16, BF16, F64 and integer types). */
ROAD_API road_status road_dtype_to_f32(road_dtype t, const void *src, float *dst, size_t n);
/* float32 -> bf16 / f16 with round-to-nearest-even (NaN stays NaN, overflow -> Inf). */
ROAD_API uint16_t road_f32_to_bf16(float x);
ROAD_API float road_bf16_to_f32(uint16_t h);
ROAD_API uint16_t road_f32_to_f16(float x);
ROAD_API float road_f16_to_f32(uint16_t h);

/* Threads used by road's OpenMP kernels and by BLAS. n <= 0 means "all cores" (physical
 * cores: SMT siblings are not counted). Two counts
 * make it: OpenMP's, which belongs to the calling thread (a thread started later begins from
 * OMP_NUM_THREADS, or all cores), and OpenBLAS's, one for the whole process; set them once,
 * from the thread that will run road (a program's main). A model loaded with its own
 * road_model_params.n_threads uses that count in its own calls and leaves these alone. */
ROAD_API void road_set_num_threads(int n);
/* The calling thread's OpenMP count (1 without OpenMP); inside a model's call (its token
 * callback, say) the model's count. */
ROAD_API int road_get_num_threads(void);

/* Set, where the user has not, the environment that the OpenMP runtime (libgomp) and OpenBLAS
 * read when they load, so that road's threads behave on a machine shared with other busy
 * processes:
 *   GOMP_SPINCOUNT  a thread waiting at a barrier spins briefly (~60 us), then sleeps; libgomp
 *                   spins 300,000 pauses (~18 ms) by default, and while it spins for a partner
 *                   that another process has descheduled it holds the core the partner needs.
 *                   Left alone when OMP_WAIT_POLICY is set.
 *   OPENBLAS_THREAD_TIMEOUT  the same for a pthreads OpenBLAS's workers (the OpenMP one ignores it)
 *   OMP_NUM_THREADS the physical cores this process may run on: the default thread count
 * Results do not change (this is how threads wait, not how the work is split). Those libraries
 * read their environment before main, so a program calls this first thing in main and, when
 * it returns true (something was set), executes itself again: the `road` command does (docs/
 * cli.md), and so do the benchmarks. Otherwise it only affects child processes. Not
 * thread-safe (setenv). */
ROAD_API bool road_threads_prepare_env(void);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_CORE_H */
