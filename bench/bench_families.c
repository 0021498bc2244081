/*
 * bench/bench_families.c - a new family must not be slower per weight byte than llama:
 * prefill and decode of a Qwen3-0.6B-shaped and a Gemma-3-1B-shaped model against the
 * Llama-3.2-1B shape, all with random weights made by road_model_init_folder (float32 on disk,
 * so loading maps them), the same thread count, runs alternated model by model.
 *
 * Per model: prefill of 128 tokens (best of the rounds) as GFLOP/s of its block projections
 * (2 x their parameters x tokens), with the share of its time that the same matmuls take in
 * OpenBLAS sgemm alone (smaller matrices run sgemm slower, so the share tells road's own
 * overhead apart from GEMM efficiency), and decode (batch 1, context 128; best ms/token) as
 * GB/s of float32 weights read per token. The ratio to llama's figure of the same run is the
 * measure (>= ~1: no slower per weight byte).
 *
 * Usage: bench_families [--threads N] [--layers L] [--rounds R]. --layers (default 4) cuts
 * every model to L blocks; vocabularies stay full size, as lm_head is part of what decode reads.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "road/road.h"

#define BENCH_NAME "bench_families"
#include "bench_util.h"

#define PREFILL 128
#define DECODE_STEPS 16
#define N_MODELS 3

typedef struct shape {
    const char *label;
    const char *json; /* config.json without its closing brace and num_hidden_layers */
} shape;

static const shape shapes[N_MODELS] = {
    {"llama-3.2-1B",
     "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"hidden_size\":2048,"
     "\"intermediate_size\":8192,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
     "\"head_dim\":64,\"vocab_size\":128256,"
     "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-5,\"rope_theta\":500000.0,"
     "\"tie_word_embeddings\":true,\"torch_dtype\":\"float32\""},
    {"qwen3-0.6B",
     "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\",\"hidden_size\":1024,"
     "\"intermediate_size\":3072,\"num_attention_heads\":16,\"num_key_value_heads\":8,"
     "\"head_dim\":128,\"vocab_size\":151936,"
     "\"max_position_embeddings\":40960,\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,"
     "\"tie_word_embeddings\":true,\"use_sliding_window\":false,\"torch_dtype\":\"float32\""},
    {"gemma-3-1B",
     "{\"architectures\":[\"Gemma3ForCausalLM\"],\"model_type\":\"gemma3_text\","
     "\"hidden_size\":1152,\"intermediate_size\":6912,\"num_attention_heads\":4,"
     "\"num_key_value_heads\":1,\"head_dim\":256,"
     "\"vocab_size\":262144,\"max_position_embeddings\":32768,\"rms_norm_eps\":1e-6,"
     "\"rope_theta\":1000000.0,\"rope_local_base_freq\":10000.0,\"sliding_window\":512,"
     "\"sliding_window_pattern\":6,\"query_pre_attn_scalar\":256,"
     "\"hidden_activation\":\"gelu_pytorch_tanh\",\"torch_dtype\":\"float32\""},
};

typedef struct result {
    double prefill_s, decode_s, weight_bytes, linear_params, matmul_s;
} result;

/* The prefill's matmuls alone with OpenBLAS sgemm: every block projection over PREFILL rows,
 * lm_head over the last row (weights and inputs of the right shapes, filled once). */
static double matmul_time(const road_llm_config *c) {
    const int64_t n = road_llm_config_tensor_count(c);
    int64_t maxw = 0, maxin = 0, maxout = 0;
    for (int64_t i = 0; i < n; i++) {
        road_llm_tensor t;
        if (road_llm_config_tensor(c, i, &t) != ROAD_OK || t.ndim != 2) continue;
        if (t.shape[0] * t.shape[1] > maxw) maxw = t.shape[0] * t.shape[1];
        if (t.shape[1] > maxin) maxin = t.shape[1];
        if (t.shape[0] > maxout) maxout = t.shape[0];
    }
    float *w = calloc((size_t)maxw, sizeof(float)),
          *x = calloc((size_t)(PREFILL * maxin), sizeof(float));
    float *y = calloc((size_t)(PREFILL * maxout), sizeof(float));
    if (!w || !x || !y) exit(1);
    double t0 = now_s();
    for (int64_t i = 0; i < n; i++) {
        road_llm_tensor t;
        if (road_llm_config_tensor(c, i, &t) != ROAD_OK) continue;
        const bool block = t.role == ROAD_TENSOR_LINEAR;
        const bool head =
            t.role == ROAD_TENSOR_HEAD || (t.role == ROAD_TENSOR_EMBED && c->tie_word_embeddings);
        if (!block && !head) continue;
        const int rows = block ? PREFILL : 1;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, (int)t.shape[0], (int)t.shape[1],
                    1.0f, x, (int)t.shape[1], w, (int)t.shape[1], 0.0f, y, (int)t.shape[0]);
    }
    double t = now_s() - t0;
    free(w), free(x), free(y);
    return t;
}

/* Parameters of the linear layers a prefill multiplies (every block's, lm_head's once). */
static double linear_params(const road_llm_config *c) {
    double p = 0;
    const int64_t n = road_llm_config_tensor_count(c);
    for (int64_t i = 0; i < n; i++) {
        road_llm_tensor t;
        if (road_llm_config_tensor(c, i, &t) == ROAD_OK && t.role == ROAD_TENSOR_LINEAR)
            p += (double)t.shape[0] * (double)t.shape[1];
    }
    return p;
}

static void run(const char *dir, result *best) {
    road_model *m;
    die(road_model_load(dir, NULL, &m), "load");
    const road_llm_config *c = road_model_config(m);
    const int64_t V = c->vocab_size;
    best->weight_bytes = (double)road_model_weight_bytes(m);
    best->linear_params = linear_params(c);
    int32_t prompt[PREFILL];
    for (int i = 0; i < PREFILL; i++) prompt[i] = (int32_t)((i * 7919) % V);
    float *logits = malloc(sizeof(float) * (size_t)V);
    road_kv_cache *kv;
    die(road_kv_cache_create(m, PREFILL + DECODE_STEPS + 1, &kv), "cache");
    road_seq s = {prompt, PREFILL, kv, NULL, false};
    double a = now_s();
    die(road_model_forward(m, &s, 1, logits), "prefill");
    double t = now_s() - a;
    if (t < best->prefill_s) best->prefill_s = t;
    t = matmul_time(c);
    if (t < best->matmul_s) best->matmul_s = t;
    int32_t tok = 1;
    a = now_s();
    for (int step = 0; step < DECODE_STEPS; step++) {
        road_seq d = {&tok, 1, kv, NULL, false};
        die(road_model_forward(m, &d, 1, logits), "decode");
    }
    t = (now_s() - a) / DECODE_STEPS;
    if (t < best->decode_s) best->decode_s = t;
    road_kv_cache_free(kv);
    free(logits);
    road_model_free(m);
}

int main(int argc, char **argv) {
    int threads = 0, layers = 4, rounds = 3;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_families [--threads N] [--layers L] [--rounds R]\n");
            return 2;
        }
    }
    if (layers < 1 || rounds < 1) return 2;
    road_set_num_threads(threads);
    char tmpl[] = "/tmp/road-bench-families-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    char dirs[N_MODELS][256];
    printf("road %s families benchmark: %d layers each, %d threads, %d rounds alternated\n",
           road_version(), layers, road_get_num_threads(), rounds);
    for (int k = 0; k < N_MODELS; k++) {
        char cfg_path[600], json[2048];
        snprintf(json, sizeof json, "%s,\"num_hidden_layers\":%d}", shapes[k].json, layers);
        snprintf(cfg_path, sizeof cfg_path, "%s/%d.json", tmpl, k);
        FILE *f = fopen(cfg_path, "w");
        if (!f || fputs(json, f) < 0 || fclose(f) != 0) return 1;
        snprintf(dirs[k], sizeof dirs[k], "%s/m%d", tmpl, k);
        double t0 = now_s();
        die(road_model_init_folder(cfg_path, NULL, 1 + (uint64_t)k, ROAD_DTYPE_F32, dirs[k]),
            "init");
        printf("  %-14s random float32 weights written in %.1f s\n", shapes[k].label, now_s() - t0);
    }
    result r[N_MODELS];
    for (int k = 0; k < N_MODELS; k++) r[k] = (result){1e30, 1e30, 0, 0, 1e30};
    for (int round = 0; round < rounds; round++)
        for (int k = 0; k < N_MODELS; k++) run(dirs[k], &r[k]);
    printf("\n%-14s %10s %14s %15s %13s %13s %12s\n", "model", "weights GB", "prefill tok/s",
           "prefill GFLOP/s", "matmul share", "decode tok/s", "decode GB/s");
    double pf[N_MODELS], dg[N_MODELS];
    for (int k = 0; k < N_MODELS; k++) {
        pf[k] = 2.0 * r[k].linear_params * PREFILL / r[k].prefill_s / 1e9;
        dg[k] = r[k].weight_bytes / r[k].decode_s / 1e9;
        printf("%-14s %10.2f %14.1f %15.1f %13.2f %13.2f %12.1f\n", shapes[k].label,
               r[k].weight_bytes / 1e9, PREFILL / r[k].prefill_s, pf[k],
               r[k].matmul_s / r[k].prefill_s, 1.0 / r[k].decode_s, dg[k]);
    }
    printf("\nagainst llama in this run (>= ~1: no slower): prefill GFLOP/s, prefill matmul "
           "share (the time outside OpenBLAS's own GEMMs), decode GB/s of weights\n");
    for (int k = 1; k < N_MODELS; k++)
        printf("  %-14s prefill %.2f, matmul share %.2f, decode %.2f\n", shapes[k].label,
               pf[k] / pf[0], (r[k].matmul_s / r[k].prefill_s) / (r[0].matmul_s / r[0].prefill_s),
               dg[k] / dg[0]);
    for (int k = 0; k < N_MODELS; k++) {
        static const char *const files[] = {"config.json", "model.safetensors"};
        char cfg_path[600];
        remove_folder(dirs[k], files, 2);
        snprintf(cfg_path, sizeof cfg_path, "%s/%d.json", tmpl, k);
        unlink(cfg_path);
    }
    rmdir(tmpl);
    return 0;
}
