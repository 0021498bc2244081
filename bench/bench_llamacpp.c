/*
 * bench/bench_llamacpp.c - road's side of the road vs llama.cpp comparison (bench/llamacpp/):
 * one process = one sample of every figure, so that bench/llamacpp/run.sh can alternate road
 * and llama.cpp processes (a shared VM's bandwidth drifts in phases of seconds; alternating
 * puts both sides in the same phase). The protocol is the one bench/llamacpp/bench.mjs runs on
 * llama.cpp, step for step:
 *
 *   warm-up   one forward of 8 tokens (maps / touches every weight);
 *   prefill   512 tokens of one sequence, logits of the last one: tokens/s;
 *   decode 1  128 tokens prefilled (not timed), then 8 steps of one token with its logits:
 *             1 / the median step time (the machine is shared: see median());
 *   decode 8  8 sequences prefilled with 64 tokens each (not timed), then 8 steps of one token
 *             per sequence in one batch: 8 / the median step time;
 *   bandwidth a read-only pass (XOR-reduce) over 1 GiB with the same threads, best of 3, taken
 *             right before decode 1: decode 1 / (bandwidth / weight bytes read per token);
 *   memory    peak resident set (VmHWM) of the process.
 *
 * Token ids are i * 7919 mod vocab, as on the llama.cpp side.
 *
 * Modes:
 *   bench_llamacpp --model DIR [--quantize none|int8|nf4|fp4] [--quantize-lm-head]
 * [--int8-activations]
 *                  [--threads N]                 run the protocol, print one JSON line
 *   bench_llamacpp --bandwidth [--threads N]     only the bandwidth pass (JSON line): run.sh
 *                                                takes it next to each llama.cpp sample
 *   bench_llamacpp --write-model DIR --dtype f32|bf16 [--layers L]
 *                                                a Llama-3.2-1B-shaped folder, random weights
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "road/road.h"

#define BENCH_NAME "bench_llamacpp"
#include "bench_util.h"

/* Llama-3.2-1B: 16 layers, hidden 2048, 32 / 8 heads of 64, intermediate 8192, tied. */
#define HIDDEN 2048
#define INTER 8192
#define N_HEADS 32
#define N_KV 8
#define HEAD_DIM 64
#define VOCAB 128256

#define WARMUP_TOKENS 8
#define PREFILL_TOKENS 512
#define DECODE_CONTEXT 128
#define DECODE_STEPS 8
#define N_SEQS 8
#define SEQ_CONTEXT 64
#define BW_BYTES ((size_t)1 << 30) /* 1 GiB: 32x the 32 MiB L3 here */

static double read_bandwidth(const uint64_t *b, size_t bytes) {
    size_t n = bytes / sizeof(uint64_t);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        uint64_t acc = 0;
#pragma omp parallel for reduction(^ : acc) schedule(static)
        for (size_t i = 0; i < n; i++) acc ^= b[i];
        double t = now_s() - t0;
        if (acc == 42) fputc(' ', stderr); /* keep the loop */
        double gbs = (double)bytes / t / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* The read bandwidth now. Its 1 GiB buffer is not road's memory: the peak resident set is read
 * before it and the kernel's high-water mark reset after it (/proc/self/clear_refs 5), so
 * *peak_kb keeps the larger of road's peaks on either side (llama.cpp's bandwidth is measured in
 * another process). */
static double bandwidth_now(long *peak_kb) {
    *peak_kb = peak_rss_kb();
    uint64_t *buf = malloc(BW_BYTES);
    if (!buf) exit(1);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < BW_BYTES / 8; i++) buf[i] = i;
    double g = read_bandwidth(buf, BW_BYTES);
    free(buf);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) == EOF || fclose(f) != 0) {
        fprintf(stderr, BENCH_NAME ": cannot reset the peak RSS (/proc/self/clear_refs)\n");
        exit(1);
    }
    return g;
}

/* The median of n step times (sorts t): a step that a neighbour's burst of work slowed down
 * moves the mean by its whole delay, the median not at all. */
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static road_qformat parse_qformat(const char *s) {
    if (strcmp(s, "none") == 0) return ROAD_QFORMAT_NONE;
    if (strcmp(s, "int8") == 0) return ROAD_QFORMAT_INT8;
    if (strcmp(s, "nf4") == 0) return ROAD_QFORMAT_NF4;
    if (strcmp(s, "fp4") == 0) return ROAD_QFORMAT_FP4;
    fprintf(stderr, BENCH_NAME ": unknown --quantize '%s'\n", s);
    exit(2);
}

static void forward(road_model *m, road_seq *s, int n, float *logits, const char *what) {
    die(road_model_forward(m, s, n, logits), what);
}

static int run(const char *dir, road_qformat q, bool q_head, bool q8_act) {
    road_model_params p = road_model_default_params();
    p.quantize = q;
    p.quantize_lm_head = q_head;
    p.int8_activations = q8_act;
    road_model *m;
    double t0 = now_s();
    die(road_model_load(dir, &p, &m), "load");
    const double load_s = now_s() - t0;
    const road_llm_config *cfg = road_model_config(m);
    const int64_t V = cfg->vocab_size;
    /* Bytes read per decoded token: every weight once; a tied embedding is read as lm_head
     * (in its stored type: 2 bytes an entry for bf16), unless lm_head is a quantized copy,
     * then only that copy (the lookup reads one row). */
    double wbytes = (double)road_model_weight_bytes(m);
    int64_t embed_bytes = 0;
    (void)road_model_embedding_format(m, &embed_bytes);
    if (cfg->tie_word_embeddings && q != ROAD_QFORMAT_NONE && q_head) wbytes -= (double)embed_bytes;

    int32_t *ids = malloc(sizeof(int32_t) * PREFILL_TOKENS);
    float *logits = malloc(sizeof(float) * (size_t)(N_SEQS * V));
    if (!ids || !logits) return 1;
    for (int i = 0; i < PREFILL_TOKENS; i++) ids[i] = (int32_t)(((int64_t)i * 7919) % V);
    road_kv_cache *kv;
    die(road_kv_cache_create(m, PREFILL_TOKENS + 1, &kv), "cache");

    road_seq s = {ids, WARMUP_TOKENS, kv, NULL, false};
    forward(m, &s, 1, logits, "warm-up");

    die(road_kv_cache_truncate(kv, 0), "truncate");
    s = (road_seq){ids, PREFILL_TOKENS, kv, NULL, false};
    t0 = now_s();
    forward(m, &s, 1, logits, "prefill");
    const double t_prefill = now_s() - t0;

    long peak_before_bw_kb;
    const double bw = bandwidth_now(&peak_before_bw_kb);
    die(road_kv_cache_truncate(kv, 0), "truncate");
    s = (road_seq){ids, DECODE_CONTEXT, kv, NULL, false};
    forward(m, &s, 1, logits, "decode context");
    int32_t tok = 1;
    double steps1[DECODE_STEPS], steps8[DECODE_STEPS];
    for (int step = 0; step < DECODE_STEPS; step++) {
        s = (road_seq){&tok, 1, kv, NULL, false};
        t0 = now_s();
        forward(m, &s, 1, logits, "decode");
        steps1[step] = now_s() - t0;
    }
    const double t_dec1 = median(steps1, DECODE_STEPS);

    road_kv_cache *kvs[N_SEQS];
    road_seq b[N_SEQS];
    int32_t toks[N_SEQS];
    for (int i = 0; i < N_SEQS; i++) {
        die(road_kv_cache_create(m, SEQ_CONTEXT + DECODE_STEPS + 1, &kvs[i]), "cache");
        b[i] = (road_seq){ids + i, SEQ_CONTEXT, kvs[i], NULL, false};
        toks[i] = 100 + i;
    }
    forward(m, b, N_SEQS, logits, "decode 8 context");
    for (int step = 0; step < DECODE_STEPS; step++) {
        for (int i = 0; i < N_SEQS; i++) b[i] = (road_seq){&toks[i], 1, kvs[i], NULL, false};
        t0 = now_s();
        forward(m, b, N_SEQS, logits, "decode 8");
        steps8[step] = now_s() - t0;
    }
    const double t_dec8 = median(steps8, DECODE_STEPS);
    long peak_kb = peak_rss_kb();
    if (peak_before_bw_kb > peak_kb) peak_kb = peak_before_bw_kb;

    printf("{\"engine\": \"road\", \"version\": \"%s\", \"threads\": %d, \"load_s\": %.3f, "
           "\"prefill_tps\": %.3f, \"decode1_tps\": %.4f, \"decode8_tps\": %.4f, "
           "\"read_gbs\": %.3f, \"bytes_per_token\": %.0f, \"bound_tps\": %.4f, "
           "\"decode1_of_bound\": %.4f, \"peak_rss_mb\": %.1f}\n",
           road_version(), road_get_num_threads(), load_s, PREFILL_TOKENS / t_prefill, 1.0 / t_dec1,
           N_SEQS / t_dec8, bw, wbytes, bw * 1e9 / wbytes, (1.0 / t_dec1) / (bw * 1e9 / wbytes),
           peak_kb / 1024.0);
    for (int i = 0; i < N_SEQS; i++) road_kv_cache_free(kvs[i]);
    road_kv_cache_free(kv);
    road_model_free(m);
    free(ids), free(logits);
    return 0;
}

int main(int argc, char **argv) {
    int threads = 0, layers = 16;
    const char *dir = NULL, *write_dir = NULL, *dtype = "bf16";
    road_qformat q = ROAD_QFORMAT_NONE;
    bool q_head = false, bw_only = false, q8_act = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--quantize") == 0 && i + 1 < argc)
            q = parse_qformat(argv[++i]);
        else if (strcmp(argv[i], "--quantize-lm-head") == 0)
            q_head = true;
        else if (strcmp(argv[i], "--int8-activations") == 0)
            q8_act = true;
        else if (strcmp(argv[i], "--bandwidth") == 0)
            bw_only = true;
        else if (strcmp(argv[i], "--write-model") == 0 && i + 1 < argc)
            write_dir = argv[++i];
        else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc)
            dtype = argv[++i];
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            layers = atoi(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_llamacpp --model DIR [--quantize none|int8|nf4|fp4] "
                    "[--quantize-lm-head] [--int8-activations] [--threads N]\n"
                    "       bench_llamacpp --bandwidth [--threads N]\n"
                    "       bench_llamacpp --write-model DIR --dtype f32|bf16 [--layers L]\n");
            return 2;
        }
    }
    road_set_num_threads(threads);
    if (write_dir) {
        const bool bf16 = strcmp(dtype, "bf16") == 0;
        if (!bf16 && strcmp(dtype, "f32") != 0) return 2;
        mkdir(write_dir, 0755);
        const bench_llama_shape shape = {HIDDEN, INTER, layers, N_HEADS, N_KV, HEAD_DIM, VOCAB};
        write_llama3_model(write_dir, &shape, bf16 ? ROAD_DTYPE_BF16 : ROAD_DTYPE_F32, true);
        return 0;
    }
    if (bw_only) {
        printf("{\"threads\": %d, \"read_gbs\": %.3f}\n", road_get_num_threads(),
               bandwidth_now(&(long){0}));
        return 0;
    }
    if (!dir) {
        fprintf(stderr, BENCH_NAME ": --model DIR is required\n");
        return 2;
    }
    return run(dir, q, q_head, q8_act);
}
