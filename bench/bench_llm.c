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
 *   [4] peak resident memory vs the float32 weights;
 *   [5] long context: a prompt of --context tokens (2048), then decode with a float32 KV cache
 *       and with a --kv-dtype one (bf16 or f16), alternated: ms/token, the caches' bytes, and
 *       how far the 16-bit cache moves the logits (max |difference|, greedy token agreement);
 *       then decode attention alone (road__attention_forward, one row, every head, one
 *       layer's keys) for f32, bf16 and f16 caches, and the per-row loop before the AVX2
 *       readers (one float accumulator, single thread) against the AVX2 one.
 *
 * Usage: bench_llm [--threads N] [--layers L] [--dir DIR] [--context N] [--kv-dtype bf16|f16]
 * [--kv-only]. --layers shrinks the model for a quick run; --kv-only runs [5] alone. The model
 * folder is made in a temporary folder (or DIR) and removed at the end.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/blas.h"
#include "llm/kv_read.h"
#include "llm/ops.h"
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
    mm_bufs b = {malloc(sizeof(float) * (size_t)INTER * HIDDEN),
                 malloc(sizeof(float) * (size_t)(R * INTER)),
                 malloc(sizeof(float) * (size_t)(R * INTER)),
                 malloc(sizeof(float) * (size_t)VOCAB * HIDDEN), malloc(sizeof(float) * VOCAB)};
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
    const int64_t outs[7] = {
        N_HEADS * HEAD_DIM, N_KV * HEAD_DIM, N_KV * HEAD_DIM, HIDDEN, INTER, INTER, HIDDEN};
    const int64_t ins[7] = {HIDDEN, HIDDEN, HIDDEN, N_HEADS * HEAD_DIM, HIDDEN, HIDDEN, INTER};
    double t0 = now_s();
    for (int l = 0; l < layers; l++)
        for (int k = 0; k < 7; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)outs[k], (int)ins[k],
                        1.0f, b->x, (int)ins[k], b->w, (int)ins[k], 0.0f, b->y, (int)outs[k]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, VOCAB, HIDDEN, 1.0f, b->x, HIDDEN,
                b->head, HIDDEN, 0.0f, b->lg, VOCAB);
    return now_s() - t0;
}

/* [5a] decode at a long context: f32 cache vs a `kvt` cache, on the same prompt. */
#define KV_STEPS 8
#define KV_REPS 4
#define PREFILL_REPS 2
static void long_context(road_model *m, int layers, int context, road_dtype kvt) {
    const char *tn = kvt == ROAD_DTYPE_BF16 ? "bf16" : "f16";
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)context);
    float *lg[2] = {malloc(sizeof(float) * VOCAB * KV_STEPS),
                    malloc(sizeof(float) * VOCAB * KV_STEPS)};
    if (!prompt || !lg[0] || !lg[1]) exit(1);
    for (int i = 0; i < context; i++) prompt[i] = (int32_t)((i * 7919 + 13) % VOCAB);
    road_kv_cache *kv[2];
    const road_dtype types[2] = {ROAD_DTYPE_F32, kvt};
    double t_pre[2];
    road_seq warm = {prompt, 16, NULL, NULL, false}; /* fault the weights in first */
    die(road_model_forward(m, &warm, 1, lg[0]), "warm-up");
    for (int w = 0; w < 2; w++)
        die(road_kv_cache_create_ex(m, context + KV_STEPS + 1, types[w], &kv[w]), "cache");
    t_pre[0] = t_pre[1] = 1e30;
    for (int r = 0; r < PREFILL_REPS; r++) /* alternated, best of */
        for (int w = 0; w < 2; w++) {
            die(road_kv_cache_truncate(kv[w], 0), "truncate");
            road_seq s = {prompt, context, kv[w], NULL, false};
            double a = now_s();
            die(road_model_forward(m, &s, 1, lg[w]), "prefill");
            t_pre[w] = fmin(t_pre[w], now_s() - a);
        }
    int32_t toks[KV_STEPS];
    for (int i = 0; i < KV_STEPS; i++) toks[i] = (int32_t)((i * 104729 + 5) % VOCAB);
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < KV_REPS; r++)
        for (int w = 0; w < 2; w++) {
            die(road_kv_cache_truncate(kv[w], context), "truncate");
            double a = now_s();
            for (int i = 0; i < KV_STEPS; i++) {
                road_seq s = {&toks[i], 1, kv[w], NULL, false};
                die(road_model_forward(m, &s, 1, lg[w] + (size_t)i * VOCAB), "decode");
            }
            double t = (now_s() - a) / KV_STEPS;
            if (t < best[w]) best[w] = t;
        }
    double dmax = 0, zmax = 0;
    int agree = 0;
    for (int i = 0; i < KV_STEPS; i++) {
        const float *a = lg[0] + (size_t)i * VOCAB, *b = lg[1] + (size_t)i * VOCAB;
        int ia = 0, ib = 0;
        for (int v = 0; v < VOCAB; v++) {
            dmax = fmax(dmax, fabs((double)a[v] - b[v]));
            zmax = fmax(zmax, fabs((double)a[v]));
            if (a[v] > a[ia]) ia = v;
            if (b[v] > b[ib]) ib = v;
        }
        agree += ia == ib;
    }
    printf(
        "[5] context %d, %d layers, decode batch 1 (best of %d alternated rounds of %d tokens):\n"
        "    f32 cache:  %.1f ms/token (%.2f tokens/s), cache %.1f MB, prefill %.1f s (best of 2)\n"
        "    %-4s cache: %.1f ms/token (%.2f tokens/s), cache %.1f MB, prefill %.1f s\n"
        "    %s / f32 time per token %.3f; logits max |diff| %.3g (max |logit| %.3g), argmax "
        "agrees %d/%d\n",
        context, layers, KV_REPS, KV_STEPS, 1e3 * best[0], 1.0 / best[0],
        road_kv_cache_bytes(kv[0]) / 1e6, t_pre[0], tn, 1e3 * best[1], 1.0 / best[1],
        road_kv_cache_bytes(kv[1]) / 1e6, t_pre[1], tn, best[1] / best[0], dmax, zmax, agree,
        KV_STEPS);
    for (int w = 0; w < 2; w++) road_kv_cache_free(kv[w]), free(lg[w]);
    free(prompt);
}

/* [5b] decode attention alone: one query row, every head, against `context` keys of each of
 * `layers` layers (each its own keys: together larger than the caches, as in a decode step),
 * as road__attention_forward runs it for each cache type; and the per-row loop of before
 * (scalar f32 reader: one float accumulator) against the AVX2 one, one thread, one layer. */
#define ATT_REPS 10
static void attention_alone(int context, int layers) {
    const int64_t C = context, n = (int64_t)N_KV * C * HEAD_DIM, nl = n * layers;
    float *kf = malloc(sizeof(float) * (size_t)nl), *vf = malloc(sizeof(float) * (size_t)nl);
    uint16_t *kh = malloc(2 * (size_t)nl), *vh = malloc(2 * (size_t)nl);
    float *q = malloc(sizeof(float) * N_HEADS * HEAD_DIM),
          *o = malloc(sizeof(float) * N_HEADS * HEAD_DIM);
    const int64_t stride = road__attention_scratch(ATTN_QBLOCK, C, 0);
    float *scratch = malloc(sizeof(float) * (size_t)(stride * road_get_num_threads()));
    if (!kf || !vf || !kh || !vh || !q || !o || !scratch) exit(1);
    for (int64_t i = 0; i < nl; i++)
        kf[i] = (float)((i * 37) % 101) / 101.0f - 0.5f, vf[i] = kf[i] * 0.5f;
    for (int i = 0; i < N_HEADS * HEAD_DIM; i++) q[i] = (float)(i % 7) / 7.0f - 0.5f;
    const road_dtype types[3] = {ROAD_DTYPE_F32, ROAD_DTYPE_BF16, ROAD_DTYPE_F16};
    double best[3] = {1e30, 1e30, 1e30};
    const int64_t row_seq = 0;
    for (int w = 0; w < 3; w++) /* warm the pages */
        for (int64_t i = 0; i < nl; i++) kh[i] = vh[i] = 0;
    for (int r = 0; r < ATT_REPS; r++)
        for (int w = 0; w < 3; w++) {
            if (w > 0) /* the 16-bit copy of the same keys (not timed) */
                for (int64_t i = 0; i < nl; i++) {
                    kh[i] = w == 1 ? road_f32_to_bf16(kf[i]) : road_f32_to_f16(kf[i]);
                    vh[i] = w == 1 ? road_f32_to_bf16(vf[i]) : road_f32_to_f16(vf[i]);
                }
            double a = now_s();
            for (int l = 0; l < layers; l++) {
                const void *k = w ? (const void *)(kh + l * n) : (const void *)(kf + l * n);
                const void *v = w ? (const void *)(vh + l * n) : (const void *)(vf + l * n);
                attn_seq sq = {0, 1, C - 1, k, v, C * HEAD_DIM, HEAD_DIM, types[w]};
                attn_batch ab = {&sq,      1, &row_seq, 1,    N_HEADS, N_KV,
                                 HEAD_DIM, 0, 0.125f,   0.0f, 8,       ATTN_QBLOCK};
                road__attention_forward(o, q, &ab, scratch, stride);
            }
            double t = now_s() - a;
            if (t < best[w]) best[w] = t;
        }
    /* one thread, one layer, the per-row path's reads: scalar (the loops of before) vs AVX2
     * readers, f32 keys and values */
    double one[2] = {1e30, 1e30};
    float *sc = malloc(sizeof(float) * (size_t)C);
    if (!sc) exit(1);
    for (int64_t t = 0; t < C; t++) sc[t] = 1.0f / (float)C;
    for (int r = 0; r < 5; r++)
        for (int simd = 0; simd < 2; simd++) {
            const kv_reader *rd = road__kv_reader(ROAD_DTYPE_F32, simd == 1);
            double a = now_s();
            for (int h = 0; h < N_HEADS; h++) {
                const float *kb = kf + (int64_t)(h / (N_HEADS / N_KV)) * C * HEAD_DIM;
                rd->dots(sc, q + h * HEAD_DIM, kb, C, HEAD_DIM, HEAD_DIM);
                for (int64_t t = 0; t < C; t++) sc[t] = 1.0f / (float)C;
                rd->wsum(o, sc, kb, C, HEAD_DIM, HEAD_DIM);
            }
            double t = now_s() - a;
            if (t < one[simd]) one[simd] = t;
        }
    free(sc);
    const float sink = o[0];
    printf(
        "    decode attention alone, %d layers (%d heads, %d kv heads of %d, %d keys; %.1f MB of "
        "f32 keys+values): f32 %.2f ms, bf16 %.2f ms, f16 %.2f ms per token (best of %d)\n"
        "    one thread, one layer, f32 keys: per-row loops before (scalar) %.2f ms, "
        "AVX2 readers %.2f ms (%.1fx)%s\n",
        layers, N_HEADS, N_KV, HEAD_DIM, context, 2.0 * nl * 4 / 1e6, 1e3 * best[0], 1e3 * best[1],
        1e3 * best[2], ATT_REPS, 1e3 * one[0], 1e3 * one[1], one[0] / one[1],
        sink == 1234.5f ? " " : "");
    free(kf), free(vf), free(kh), free(vh), free(q), free(o), free(scratch);
}

int main(int argc, char **argv) {
    int threads = 0, layers = 16, context = 2048;
    bool kv_only = false;
    road_dtype kvt = ROAD_DTYPE_BF16;
    const char *dir_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir_arg = argv[++i];
        else if (strcmp(argv[i], "--context") == 0 && i + 1 < argc)
            context = atoi(argv[++i]);
        else if (strcmp(argv[i], "--kv-only") == 0)
            kv_only = true;
        else if (strcmp(argv[i], "--kv-dtype") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "bf16") == 0 || strcmp(argv[i + 1], "f16") == 0))
            kvt = strcmp(argv[++i], "bf16") == 0 ? ROAD_DTYPE_BF16 : ROAD_DTYPE_F16;
        else {
            fprintf(stderr, "usage: bench_llm [--threads N] [--layers L] [--dir DIR] [--context N] "
                            "[--kv-dtype bf16|f16] [--kv-only]\n");
            return 2;
        }
    }
    if (context < 16 || context > 131072) {
        fprintf(stderr, "bench_llm: --context must be from 16 to 131072\n");
        return 2;
    }
    road_set_num_threads(threads);
    char tmpl[] = "/tmp/road-bench-llm-XXXXXX";
    const char *dir = dir_arg ? dir_arg : mkdtemp(tmpl);
    if (!dir) return 1;
    printf("road %s LLM benchmark: Llama-3.2-1B shape, %d layers, %d threads\n", road_version(),
           layers, road_get_num_threads());
    double t0 = now_s();
    write_model(dir, layers);
    printf("  wrote random bf16 weights in %.1f s\n", now_s() - t0);

    road_model *m;
    t0 = now_s();
    die(road_model_load(dir, NULL, &m), "load");
    const double wbytes = (double)road_model_weight_bytes(m);
    printf("  loaded in %.1f s: %.2f GB of float32 weights\n\n", now_s() - t0, wbytes / 1e9);

    if (kv_only) {
        long_context(m, layers, context, kvt);
        attention_alone(context, layers);
        road_model_free(m);
        if (!dir_arg) {
            const char *files[] = {"config.json", "model.safetensors"};
            remove_folder(dir, files, sizeof files / sizeof files[0]);
        }
        return 0;
    }

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
    double flops = 2.0 * PREFILL *
                       ((double)layers * (2.0 * HIDDEN * N_HEADS * HEAD_DIM +
                                          2.0 * HIDDEN * N_KV * HEAD_DIM + 3.0 * HIDDEN * INTER)) +
                   2.0 * HIDDEN * VOCAB;
    printf("[1] prefill %d tokens: %.3f s = %.1f tokens/s; its matmuls alone (sgemm, same shapes) "
           "%.3f s "
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
                for (int b = 0; b < N_BATCH; b++)
                    s[b] = (road_seq){&toks[b], 1, kvs[b], which ? eight[b] : one[b], false};
                die(road_model_forward(m, s, N_BATCH, logits), "decode batch");
            }
            t[which] = (now_s() - a) / DECODE_STEPS;
        }
        ratio[r] = t[1] / t[0];
        t1 += t[0] / REPS;
        t8 += t[1] / REPS;
    }
    double rmed = ratio[0];
    for (int r = 1; r < REPS; r++)
        if (ratio[r] < rmed) rmed = ratio[r]; /* min over reps */
    printf(
        "[3] decode, %d sequences: one adapter %.1f ms/step, %d adapters %.1f ms/step: ratio %.3f "
        "(best of %d; target <= 1.05)\n\n",
        N_BATCH, 1e3 * t1, N_BATCH, 1e3 * t8, rmed, REPS);

    long peak = peak_rss_kb();
    printf(
        "[4] peak resident memory %.2f GB = %.2fx the float32 weights (%.2f GB); the bf16 file is "
        "mapped while loading\n",
        peak / 1e6, peak * 1e3 / wbytes, wbytes / 1e9);

    printf("\n");
    long_context(m, layers, context, kvt);
    attention_alone(context, layers);

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
