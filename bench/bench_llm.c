/*
 * bench/bench_llm.c - the Llama runtime on a Llama-3.2-1B-shaped model with random weights
 * written at bench time (16 layers, hidden 2048, 32 heads / 8 KV heads of 64, intermediate
 * 8192, vocab 128256, tied embeddings; stored bf16, run in float32):
 *
 *   [1] prefill tokens/s vs the same run's sgemm time for exactly the matmuls of that prefill
 *       (the 7 projections of every layer and lm_head on the last row): share of the time spent
 *       in matmuls; target >= 0.6;
 *   [2] decode tokens/s (batch 1) vs the bound set by reading every weight once per token at
 *       the memory bandwidth measured in the same run; target >= 0.6 of the bound;
 *   [3] decode with 8 sequences on 8 different adapters (RoAd on every linear layer) vs the
 *       same 8 sequences on one adapter; target <= 1.05;
 *   [4] peak resident memory vs the float32 weights.
 *
 * Usage: bench_llm [--threads N] [--layers L] [--dir DIR]. --layers shrinks the model for a
 * quick run. The model folder is made in a temporary folder (or DIR) and removed at the end.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "road/road.h"

#define BENCH_NAME "bench_llm"
#include "bench_util.h"

#define HIDDEN 2048
#define INTER 8192
#define N_HEADS 32
#define N_KV 8
#define HEAD_DIM 64
#define VOCAB 128256
#define PREFILL 128
#define DECODE_STEPS 16
#define N_BATCH 8
#define REPS 3

static void write_model(const char *dir, int layers) {
    const bench_llama_shape shape = {HIDDEN, INTER, layers, N_HEADS, N_KV, HEAD_DIM, VOCAB};
    write_llama3_model(dir, &shape, ROAD_DTYPE_BF16, true);
}

/* Read-only bandwidth: XOR-reduce a buffer larger than the caches with the model's threads.
 * Integer XOR is associative, so the compiler vectorizes it and the loop is bound by memory,
 * not by an add latency chain. Best of a few passes. */
static double read_bandwidth(const uint64_t *b, size_t bytes) {
    size_t n = bytes / sizeof(uint64_t);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        uint64_t acc = 0;
#pragma omp parallel for reduction(^ : acc) schedule(static)
        for (size_t i = 0; i < n; i++) acc ^= b[i];
        double t = now_s() - t0;
        if (acc == 42) printf(" ");
        double gbs = (double)bytes / t / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* The matmuls of a prefill of R rows with sgemm, as the model does them (weights of the right
 * shapes, filled once; one pass). */
typedef struct mm_bufs {
    float *w, *x, *y, *head, *lg;
} mm_bufs;

static mm_bufs mm_alloc(int64_t R) {
    mm_bufs b = {malloc(sizeof(float) * (size_t)INTER * HIDDEN), malloc(sizeof(float) * (size_t)(R * INTER)),
                 malloc(sizeof(float) * (size_t)(R * INTER)), malloc(sizeof(float) * (size_t)VOCAB * HIDDEN),
                 malloc(sizeof(float) * VOCAB)};
    if (!b.w || !b.x || !b.y || !b.head || !b.lg) exit(1);
    for (size_t i = 0; i < (size_t)INTER * HIDDEN; i++) b.w[i] = 0.01f;
    for (size_t i = 0; i < (size_t)(R * INTER); i++) b.x[i] = b.y[i] = 0.01f;
    for (size_t i = 0; i < (size_t)VOCAB * HIDDEN; i++) b.head[i] = 0.01f;
    return b;
}

static void mm_free(mm_bufs *b) {
    free(b->w), free(b->x), free(b->y), free(b->head), free(b->lg);
}

static double matmul_time(const mm_bufs *b, int layers, int64_t R) {
    const int64_t outs[7] = {N_HEADS * HEAD_DIM, N_KV * HEAD_DIM, N_KV * HEAD_DIM, HIDDEN, INTER, INTER, HIDDEN};
    const int64_t ins[7] = {HIDDEN, HIDDEN, HIDDEN, N_HEADS * HEAD_DIM, HIDDEN, HIDDEN, INTER};
    double t0 = now_s();
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < 7; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)outs[k], (int)ins[k], 1.0f,
                        b->x, (int)ins[k], b->w, (int)ins[k], 0.0f, b->y, (int)outs[k]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, VOCAB, HIDDEN, 1.0f, b->x, HIDDEN, b->head,
                HIDDEN, 0.0f, b->lg, VOCAB);
    return now_s() - t0;
}

int main(int argc, char **argv) {
    int threads = 0, layers = 16;
    const char *dir_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc) layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir_arg = argv[++i];
        else {
            fprintf(stderr, "usage: bench_llm [--threads N] [--layers L] [--dir DIR]\n");
            return 2;
        }
    }
    road_set_num_threads(threads);
    char tmpl[] = "/tmp/road-bench-llm-XXXXXX";
    const char *dir = dir_arg ? dir_arg : mkdtemp(tmpl);
    if (!dir) return 1;
    printf("road %s LLM benchmark: Llama-3.2-1B shape, %d layers, %d threads\n", road_version(), layers,
           road_get_num_threads());
    double t0 = now_s();
    write_model(dir, layers);
    printf("  wrote random bf16 weights in %.1f s\n", now_s() - t0);

    road_model *m;
    t0 = now_s();
    die(road_model_load(dir, NULL, &m), "load");
    const double wbytes = (double)road_model_weight_bytes(m);
    printf("  loaded in %.1f s: %.2f GB of float32 weights\n\n", now_s() - t0, wbytes / 1e9);

    /* [1] prefill */
    int32_t *prompt = malloc(sizeof(int32_t) * PREFILL);
    for (int i = 0; i < PREFILL; i++) prompt[i] = (int32_t)((i * 7919) % VOCAB);
    float *logits = malloc(sizeof(float) * (size_t)N_BATCH * VOCAB);
    road_kv_cache *kv;
    die(road_kv_cache_create(m, PREFILL + DECODE_STEPS + 1, &kv), "cache");
    /* prefill and its matmuls alone, alternated so both see the same machine state */
    mm_bufs mb = mm_alloc(PREFILL);
    double t_pre = 1e30, t_mm = 1e30;
    for (int r = 0; r < REPS; r++) {
        die(road_kv_cache_truncate(kv, 0), "truncate");
        road_seq s = {prompt, PREFILL, kv, NULL, false};
        double a = now_s();
        die(road_model_forward(m, &s, 1, logits), "prefill");
        double t = now_s() - a;
        if (t < t_pre) t_pre = t;
        t = matmul_time(&mb, layers, PREFILL);
        if (t < t_mm) t_mm = t;
    }
    mm_free(&mb);
    double flops = 2.0 * PREFILL * ((double)layers * (2.0 * HIDDEN * N_HEADS * HEAD_DIM + 2.0 * HIDDEN * N_KV * HEAD_DIM +
                                                       3.0 * HIDDEN * INTER)) + 2.0 * HIDDEN * VOCAB;
    printf("[1] prefill %d tokens: %.3f s = %.1f tokens/s; its matmuls alone (sgemm, same shapes) %.3f s "
           "(%.1f GFLOP/s)\n    matmul share of prefill time: %.2f (target >= 0.6)\n\n",
           PREFILL, t_pre, PREFILL / t_pre, t_mm, flops / t_mm / 1e9, t_mm / t_pre);

    /* [2] decode, batch 1 */
    const size_t bw_bytes = (size_t)1 << 30;
    uint64_t *bwbuf = malloc(bw_bytes);
    if (!bwbuf) return 1;
    for (size_t i = 0; i < bw_bytes / 8; i++) bwbuf[i] = i;
    int32_t tok = 1;
    double t_dec = 1e30, bw = 0;
    for (int r = 0; r < REPS; r++) {
        double g = read_bandwidth(bwbuf, bw_bytes);
        if (g > bw) bw = g;
        die(road_kv_cache_truncate(kv, PREFILL), "truncate");
        double a = now_s();
        for (int step = 0; step < DECODE_STEPS; step++) {
            road_seq s = {&tok, 1, kv, NULL, false};
            die(road_model_forward(m, &s, 1, logits), "decode");
        }
        double t = (now_s() - a) / DECODE_STEPS;
        if (t < t_dec) t_dec = t;
    }
    free(bwbuf);
    /* every weight is read once per token; the tied embedding once (as lm_head) */
    double bound = bw * 1e9 / wbytes;
    printf("[2] decode (batch 1, context %d): %.2f tokens/s (%.1f ms/token)\n"
           "    read bandwidth %.1f GB/s, %.2f GB of weights per token -> bound %.2f tokens/s\n"
           "    share of the bound: %.2f (target >= 0.6)\n\n",
           PREFILL, 1.0 / t_dec, 1e3 * t_dec, bw, wbytes / 1e9, bound, (1.0 / t_dec) / bound);

    /* [3] 8 sequences, 8 adapters vs 1 adapter */
    road_adapter_set *set = road_model_adapters(m);
    road_config *cfg;
    die(road_config_create(&cfg), "config");
    die(road_config_set_target_all_linear(cfg), "targets");
    road_config_set_init_weights(cfg, false);
    char names[N_BATCH][8];
    const char *one[N_BATCH], *eight[N_BATCH];
    for (int a = 0; a < N_BATCH; a++) {
        snprintf(names[a], sizeof names[a], "a%d", a);
        die(road_adapter_set_add(set, names[a], cfg, 1000 + (uint64_t)a), "add adapter");
        eight[a] = names[a];
        one[a] = names[0];
    }
    road_kv_cache *kvs[N_BATCH];
    int32_t toks[N_BATCH];
    for (int b = 0; b < N_BATCH; b++) {
        die(road_kv_cache_create(m, 64 + DECODE_STEPS + 1, &kvs[b]), "cache");
        toks[b] = 100 + b;
    }
    double ratio[REPS], t1 = 0, t8 = 0;
    for (int r = 0; r < REPS; r++) {
        double t[2];
        for (int which = 0; which < 2; which++) {
            road_seq s[N_BATCH];
            for (int b = 0; b < N_BATCH; b++) {
                die(road_kv_cache_truncate(kvs[b], 0), "truncate");
                road_seq p = {prompt, 64, kvs[b], which ? eight[b] : one[b], false};
                s[b] = p;
            }
            die(road_model_forward(m, s, N_BATCH, logits), "prefill batch");
            double a = now_s();
            for (int step = 0; step < DECODE_STEPS; step++) {
                for (int b = 0; b < N_BATCH; b++) s[b] = (road_seq){&toks[b], 1, kvs[b], which ? eight[b] : one[b], false};
                die(road_model_forward(m, s, N_BATCH, logits), "decode batch");
            }
            t[which] = (now_s() - a) / DECODE_STEPS;
        }
        ratio[r] = t[1] / t[0];
        t1 += t[0] / REPS;
        t8 += t[1] / REPS;
    }
    double rmed = ratio[0];
    for (int r = 1; r < REPS; r++) if (ratio[r] < rmed) rmed = ratio[r]; /* min over reps */
    printf("[3] decode, %d sequences: one adapter %.1f ms/step, %d adapters %.1f ms/step: ratio %.3f "
           "(best of %d; target <= 1.05)\n\n", N_BATCH, 1e3 * t1, N_BATCH, 1e3 * t8, rmed, REPS);

    long peak = peak_rss_kb();
    printf("[4] peak resident memory %.2f GB = %.2fx the float32 weights (%.2f GB); the bf16 file is "
           "mapped while loading\n", peak / 1e6, peak * 1e3 / wbytes, wbytes / 1e9);

    for (int b = 0; b < N_BATCH; b++) road_kv_cache_free(kvs[b]);
    road_kv_cache_free(kv);
    road_config_free(cfg);
    road_model_free(m);
    free(prompt), free(logits);
    if (!dir_arg) {
        const char *files[] = {"config.json", "model.safetensors"};
        remove_folder(dir, files, sizeof files / sizeof files[0]);
    }
    return 0;
}
