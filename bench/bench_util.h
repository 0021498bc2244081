/*
 * bench/bench_util.h - what every benchmark program repeats: a monotonic clock, exiting with
 * road's message on a failed call, a fixed-seed random stream for made-up weights, sorting
 * timings, the peak resident memory, and writing a Llama-shaped model folder with random
 * weights (and removing it afterwards).
 * Define BENCH_NAME (the program's name, for messages) before including it.
 *
 * Each benchmark runs with the thread environment the `road` command uses: before main, a
 * constructor calls road_threads_prepare_env and, if it set anything, executes the program
 * again so that libgomp and OpenBLAS load with it. Set GOMP_SPINCOUNT (libgomp's default is
 * 300000), OMP_WAIT_POLICY or OMP_NUM_THREADS to measure with other values.
 */
#ifndef ROAD_BENCH_UTIL_H
#define ROAD_BENCH_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "road/road.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

/* glibc passes constructors main's arguments; the executable's run after every library's. */
__attribute__((constructor)) static void bench_thread_env(int argc, char **argv, char **envp) {
    (void)argc, (void)envp;
    if (road_threads_prepare_env()) execv("/proc/self/exe", argv);
}

/* Seconds on CLOCK_MONOTONIC. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Exit with "BENCH_NAME: what: <road's message>" unless s is ROAD_OK. */
static inline void die(road_status s, const char *what) {
    if (s != ROAD_OK) {
        fprintf(stderr, BENCH_NAME ": %s: %s\n", what, road_last_error());
        exit(1);
    }
}

/* Uniform in [-0.5, 0.5) from xorshift64 with a fixed seed: the same weights every run. */
static uint64_t bench_rng_state = 88172645463325252ULL;
static inline float rnd(void) {
    uint64_t x = bench_rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    bench_rng_state = x;
    return (float)((double)(x >> 11) * 0x1.0p-53 - 0.5);
}

/* qsort comparator for doubles, ascending. */
static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Peak resident memory of this process in kB (VmHWM), -1 when /proc is unreadable. */
static inline long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* Remove the n files named in `files` from folder dir, then the folder itself. */
static inline void remove_folder(const char *dir, const char *const *files, size_t n) {
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* Add tensor `name` of shape [d0, d1] ([d0] when d1 is 0) to w, every element
 * offset + scale * rnd(), stored as dtype (ROAD_DTYPE_F32 or ROAD_DTYPE_BF16). */
static inline void add_random(road_st_writer *w, const char *name, road_dtype dtype, int64_t d0,
                              int64_t d1, float scale, float offset) {
    const bool bf16 = dtype == ROAD_DTYPE_BF16;
    int64_t n = d0 * (d1 > 0 ? d1 : 1);
    void *buf = malloc((bf16 ? sizeof(uint16_t) : sizeof(float)) * (size_t)n);
    if (!buf) exit(1);
    for (int64_t i = 0; i < n; i++) {
        const float v = offset + scale * rnd();
        if (bf16) ((uint16_t *)buf)[i] = road_f32_to_bf16(v);
        else ((float *)buf)[i] = v;
    }
    int64_t shape[2] = {d0, d1};
    die(road_st_writer_add(w, name, dtype, d1 > 0 ? 2 : 1, shape, buf), "add tensor");
    free(buf);
}

/* The shape of a Llama-style model written with random weights. */
typedef struct bench_llama_shape {
    int hidden, inter, layers, heads, kv_heads, head_dim, vocab;
} bench_llama_shape;

/* Decoder layer l's weights: its 7 projections uniform times `scale` (0: times 2 / sqrt(in) of
 * each projection), its 2 RMSNorm weights 1 + 0.1 * uniform. */
static inline void add_llama_layer(road_st_writer *w, road_dtype dtype, const bench_llama_shape *s,
                                   int l, float scale) {
    const int64_t q = (int64_t)s->heads * s->head_dim, kv = (int64_t)s->kv_heads * s->head_dim;
    const struct {
        const char *name;
        int64_t out, in;
    } p[7] = {{"self_attn.q_proj", q, s->hidden},      {"self_attn.k_proj", kv, s->hidden},
              {"self_attn.v_proj", kv, s->hidden},     {"self_attn.o_proj", s->hidden, q},
              {"mlp.gate_proj", s->inter, s->hidden},  {"mlp.up_proj", s->inter, s->hidden},
              {"mlp.down_proj", s->hidden, s->inter}};
    char n[128];
    for (int k = 0; k < 7; k++) {
        snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, p[k].name);
        add_random(w, n, dtype, p[k].out, p[k].in, scale > 0 ? scale : 2.0f / sqrtf((float)p[k].in),
                   0);
    }
    snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
    add_random(w, n, dtype, s->hidden, 0, 0.1f, 1.0f);
    snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
    add_random(w, n, dtype, s->hidden, 0, 0.1f, 1.0f);
}

/* Save w as dir/model.safetensors (metadata format=pt, as transformers writes it) and free it. */
static inline void save_model(road_st_writer *w, const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    die(road_st_writer_set_metadata(w, "format", "pt"), "metadata");
    die(road_st_writer_save(w, path), "save");
    road_st_writer_free(w);
}

/* A Llama-3-style model folder in dir (config.json with llama3 RoPE scaling, model.safetensors):
 * embedding uniform * 0.04, final norm 1 + 0.1 * uniform, lm_head (when not tied) and every
 * projection uniform * 2 / sqrt(hidden), stored as dtype (F32 or BF16). */
static inline void write_llama3_model(const char *dir, const bench_llama_shape *s, road_dtype dtype,
                                      bool tied) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) exit(1);
    fprintf(f,
            "{\"model_type\": \"llama\", \"hidden_size\": %d, \"intermediate_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
            "\"head_dim\": %d, \"vocab_size\": %d, \"rms_norm_eps\": 1e-05, "
            "\"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", "
            "\"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
            "\"original_max_position_embeddings\": 8192}, "
            "\"max_position_embeddings\": 131072, \"tie_word_embeddings\": %s, "
            "\"hidden_act\": \"silu\", \"bos_token_id\": %d, \"eos_token_id\": %d, "
            "\"torch_dtype\": \"%s\"}\n",
            s->hidden, s->inter, s->layers, s->heads, s->kv_heads, s->head_dim, s->vocab,
            tied ? "true" : "false", s->vocab > 128001 ? 128000 : 1, s->vocab > 128001 ? 128001 : 2,
            dtype == ROAD_DTYPE_BF16 ? "bfloat16" : "float32");
    fclose(f);
    road_st_writer *w;
    die(road_st_writer_create(&w), "writer");
    add_random(w, "model.embed_tokens.weight", dtype, s->vocab, s->hidden, 0.04f, 0);
    add_random(w, "model.norm.weight", dtype, s->hidden, 0, 0.1f, 1.0f);
    const float sc = 2.0f / sqrtf((float)s->hidden);
    if (!tied) add_random(w, "lm_head.weight", dtype, s->vocab, s->hidden, sc, 0);
    for (int l = 0; l < s->layers; l++) add_llama_layer(w, dtype, s, l, sc);
    save_model(w, dir);
}

#endif
