/*
 * tests/testutil.h - shared helpers for road's cmocka tests.
 *
 * Float comparisons print the index and both values of the first failing element and the
 * worst error, so a failure says what went wrong without a debugger.
 */
#ifndef ROAD_TESTUTIL_H
#define ROAD_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "road/road.h"

/* The tolerance the golden README recommends for float32 results vs PEFT:
 * |c - golden| <= 1e-5 + 1e-5 * |golden| (largest observed use: 6.4% of it). */
#define GOLDEN_ATOL 1e-5
#define GOLDEN_RTOL 1e-5

/* Elementwise |a - b| <= atol + rtol * |b|; on failure prints what/where and fails the test. */
void tu_assert_close(const char *what, const float *a, const float *b, int64_t n, double atol,
                     double rtol);
/* Bitwise equality (NaN == NaN); prints the first difference. */
void tu_assert_equal_f32(const char *what, const float *a, const float *b, int64_t n);
/* Fail the test with the status name and road_last_error() unless s == ROAD_OK. */
#define TU_OK(expr) tu_check_ok((expr), #expr, __FILE__, __LINE__)
void tu_check_ok(road_status s, const char *expr, const char *file, int line);
/* Expect a specific failure whose message contains `needle` (NULL: any message). */
#define TU_FAILS(expr, status, needle) tu_check_fails((expr), (status), (needle), #expr, __FILE__, __LINE__)
void tu_check_fails(road_status s, road_status want, const char *needle, const char *expr,
                    const char *file, int line);

/* Path of a fixture file: ROAD_FIXTURES "/" rel (static buffer, valid until the next call). */
const char *tu_fixture(const char *rel);

/* Golden file access: open a fixture safetensors (fails the test if missing). */
road_st_file *tu_open_golden(const char *rel);
/* F32 tensor "<case>/<name>", NULL if absent; *n gets its element count. */
const float *tu_golden(const road_st_file *f, const char *case_id, const char *name, int64_t *n);
/* Same but the tensor must exist. */
const float *tu_golden_req(const road_st_file *f, const char *case_id, const char *name,
                           int64_t *n);
/* The whole tensor info, NULL if absent. */
const road_st_tensor *tu_golden_info(const road_st_file *f, const char *case_id,
                                     const char *name);

/* Parse a fixture JSON file (fails the test if unreadable). Free with cJSON_Delete. */
struct cJSON *tu_load_json(const char *rel);

/* Deterministic test data. */
void tu_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* Files and folders for tests that build model or adapter folders. */
void tu_rm_rf(const char *path);                    /* remove a file or a whole folder */
void tu_copy_file(const char *from, const char *to); /* fails the test on error */

/* A model folder with text I/O in a fresh temporary folder (its path into dir, cap >= 32): the
 * tiny-llama fixture's weights with a SentencePiece-style tokenizer.json made from the Llama-2
 * fixture's structure but a 260-token vocabulary that fits the model (<unk>, <s>, </s>, the 256
 * byte-fallback tokens, "\u2581"). Remove it with tu_rm_rf. */
void tu_make_text_model(char *dir, size_t cap);

/* A stand-in tokenizer for data tests (road_tokenize_fn): one id per byte (mod 320, the tiny
 * models' vocabulary), after a bos id 1 when add_special. */
road_status tu_byte_tokenize(void *u, const char *text, size_t len, bool add_special,
                             int32_t **ids, int64_t *n);

/* A scratch folder for one test file: tu_scratch_make("name") creates /tmp/road_<name>_XXXXXX
 * (0 on success, for a cmocka setup), tu_scratch_at("rel") is "<it>/rel" (8 rotating
 * buffers), tu_scratch_remove() removes it (0, for a teardown). */
int tu_scratch_make(const char *name);
const char *tu_scratch_at(const char *rel);
const char *tu_scratch_root(void);
int tu_scratch_remove(void);

/* Scratch allocation that fails the test on OOM. */
void *tu_alloc(size_t n);

/* Training data for the trainer tests: n JSONL lines of `seq` pre-tokenized ids each, an
 * arithmetic pattern (t, t+7, t+14, ... mod 64, t from the line number and seed) that a model
 * can learn quickly. */
void tu_write_pattern_task(const char *path, int n, int seq, int seed);

/* A road_train_fn that records every step's loss (up to 64) and stops after step stop_at
 * (0: never). */
typedef struct tu_loss_log {
    double loss[64];
    int n, stop_at;
} tu_loss_log;
bool tu_record_loss(const road_train_metrics *m, void *user);

#endif
