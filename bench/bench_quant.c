/*
 * bench/bench_quant.c - quantized base weights on a Llama-3.2-1B-shaped model with random
 * weights made at bench time (16 layers, hidden 2048, q 2048 / kv 512, intermediate 8192,
 * vocab 128256, tied embeddings):
 *
 *   [1] memory: the model in f32, bf16 (as stored), and as road holds it quantized int8 / nf4 /
 *       nf4 + double quant / fp4 (embedding, norms and the tied lm_head in float32, the linear
 *       layers at their packed size with absmax state): bytes and ratio to f32;
 *   [2] decode: one token through the matmuls of every linear layer and lm_head (the weights a
 *       decode step reads; attention over a short cache is small beside them), float32 vs each
 *       format in the same run: tokens/s and the weight bytes read per second;
 *   [3] prefill matmul: y = x W^T for 128 and 512 rows in the model's projection shapes,
 *       quantized, per kernel of --qkernel (avx2 and reference: dequantized tiles + sgemm;
 *       avx512: the fused AVX-512 GEMM; vnni-q8: its int8 GEMM for int8/nf4/fp4, the fused
 *       GEMM for bf16/f16) vs sgemm on float32 weights: GFLOP/s (2 R O K / time,
 *       "equivalent" for the int8 GEMM), a line per kernel.
 *
 * Every layer has its own weights (no reuse that a 32 MiB cache could hold). Usage:
 * bench_quant [--threads N] [--layers L] [--quick] [--reps N] [--rows R] [--qkernel K]
 *             [--no-prefill] [--no-decode]
 * --quick: 2 layers, vocab 32000, 1 rep. --rows: rows of x per decode step (a serving batch;
 * tokens/s counts them all). --qkernel auto|reference|avx2|avx512|vnni-q8 runs the quantized
 * matmuls with that kernel; a comma-separated list (compare = avx2,avx512) times each in the
 * same run, rotating which goes first rep by rep (a noisy machine drifts between runs), and
 * prints each one's median and best.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/blas.h"
#include "core/cpu.h"
#include "road/road.h"

#define BENCH_NAME "bench_quant"
#include "bench_util.h"

#define HIDDEN 2048
#define INTER 8192
#define QDIM 2048
#define KVDIM 512
#define N_PROJ 7

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_quant: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
#pragma omp parallel for schedule(static) firstprivate(s)
    for (int64_t b = 0; b < n; b += 4096) {
        uint64_t t = s ^ (uint64_t)b * 0xbf58476d1ce4e5b9ULL;
        for (int64_t i = b; i < n && i < b + 4096; i++) {
            t ^= t << 13, t ^= t >> 7, t ^= t << 17;
            x[i] = scale * (float)((double)(t >> 11) * 0x1.0p-53 - 0.5);
        }
    }
}

static const int64_t OUTS[N_PROJ] = {QDIM, KVDIM, KVDIM, HIDDEN, INTER, INTER, HIDDEN};
static const int64_t INS[N_PROJ] = {HIDDEN, HIDDEN, HIDDEN, QDIM, HIDDEN, HIDDEN, INTER};

enum { F_INT8, F_NF4, F_NF4DQ, F_FP4, F_BF16, F_F16, N_FMT };
static const road_qformat FMT[N_FMT] = {ROAD_QFORMAT_INT8, ROAD_QFORMAT_NF4,  ROAD_QFORMAT_NF4,
                                        ROAD_QFORMAT_FP4,  ROAD_QFORMAT_BF16, ROAD_QFORMAT_F16};
static const char *const FMT_NAME[N_FMT] = {"int8", "nf4", "nf4+dq", "fp4", "bf16", "f16"};

/* --qkernel: the kernels a run times, in turn (a comma-separated list; compare = avx2,avx512). */
#define MAX_KERNELS 4
typedef struct kernel_choice {
    int n;
    road_qkernel k[MAX_KERNELS];
    const char *name[MAX_KERNELS];
} kernel_choice;

static kernel_choice parse_qkernel(const char *arg) {
    static const struct {
        const char *name;
        road_qkernel k;
    } known[] = {{"auto", ROAD_QKERNEL_AUTO},
                 {"reference", ROAD_QKERNEL_REFERENCE},
                 {"avx2", ROAD_QKERNEL_AVX2},
                 {"avx512", ROAD_QKERNEL_AVX512},
                 {"vnni-q8", ROAD_QKERNEL_VNNI_Q8}};
    kernel_choice c = {0, {ROAD_QKERNEL_AUTO}, {NULL}};
    const char *s = strcmp(arg, "compare") == 0 ? "avx2,avx512" : arg;
    while (*s) {
        const size_t len = strcspn(s, ",");
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] &&
               (strlen(known[i].name) != len || strncmp(known[i].name, s, len) != 0))
            i++;
        if (i == sizeof known / sizeof known[0] || c.n == MAX_KERNELS) {
            fprintf(stderr,
                    "bench_quant: --qkernel takes up to %d of auto, reference, avx2, "
                    "avx512, vnni-q8 (comma-separated), or compare\n",
                    MAX_KERNELS);
            exit(2);
        }
        c.k[c.n] = known[i].k, c.name[c.n] = known[i].name, c.n++;
        s += len + (s[len] == ',');
    }
    if (c.n == 0) c.k[0] = ROAD_QKERNEL_AUTO, c.name[0] = "auto", c.n = 1;
    for (int i = 0; i < c.n; i++) die(road_qkernel_select(c.k[i]), c.name[i]);
    die(road_qkernel_select(c.k[0]), c.name[0]);
    return c;
}

/* Median of n timings (sorted in place). */
static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int main(int argc, char **argv) {
    int layers = 16, reps = 5, threads = 0, drows = 1;
    bool prefill = true, decode = true;
    const char *qkernel = "auto";
    int64_t vocab = 128256;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
            drows = atoi(argv[++i]);
        else if (strcmp(argv[i], "--qkernel") == 0 && i + 1 < argc)
            qkernel = argv[++i];
        else if (strcmp(argv[i], "--no-prefill") == 0)
            prefill = false;
        else if (strcmp(argv[i], "--no-decode") == 0)
            decode = false;
        else if (strcmp(argv[i], "--quick") == 0)
            layers = 2, vocab = 32000, reps = 1;
        else {
            fprintf(stderr, "usage: bench_quant [--threads N] [--layers L] [--quick] [--reps N] "
                            "[--rows R] [--qkernel K[,K..]|compare] "
                            "[--no-prefill] [--no-decode]\n");
            return 2;
        }
    }
    if (reps < 1 || drows < 1 || drows > 16 || layers < 1) {
        fprintf(stderr, "bench_quant: --reps >= 1, --rows 1..16, --layers >= 1\n");
        return 2;
    }
    const kernel_choice kc = parse_qkernel(qkernel);
    road_set_num_threads(threads);
    const int n_lin = layers * N_PROJ;
    printf("bench_quant: Llama-3.2-1B shape, %d layers, vocab %lld, %d threads, qkernel %s "
           "(cpu: avx2 %s, avx512 %s)\n",
           layers, (long long)vocab, road_get_num_threads(), qkernel,
           road__cpu_has_avx2_fma() ? "yes" : "no", road__cpu_has_avx512() ? "yes" : "no");

    /* weights: float32 per linear layer, the embedding (tied lm_head) */
    float **w = xmalloc(sizeof(float *) * (size_t)n_lin);
    int64_t lin_params = 0;
    for (int k = 0; k < n_lin; k++) {
        const int p = k % N_PROJ;
        w[k] = xmalloc(sizeof(float) * (size_t)(OUTS[p] * INS[p]));
        fill(w[k], OUTS[p] * INS[p], (uint64_t)k + 1, 0.04f);
        lin_params += OUTS[p] * INS[p];
    }
    float *embed = xmalloc(sizeof(float) * (size_t)(vocab * HIDDEN));
    fill(embed, vocab * HIDDEN, 999, 0.04f);
    const int64_t norm_params = (int64_t)layers * 2 * HIDDEN + HIDDEN;
    const int64_t params = lin_params + vocab * HIDDEN + norm_params;

    /* [1] memory */
    road_qtensor **q[N_FMT];
    int64_t qbytes[N_FMT] = {0};
    double tq = now_s();
    for (int f = 0; f < N_FMT; f++) {
        q[f] = xmalloc(sizeof(road_qtensor *) * (size_t)n_lin);
        for (int k = 0; k < n_lin; k++) {
            const int p = k % N_PROJ;
            die(road_qtensor_quantize(FMT[f], OUTS[p], INS[p], w[k], f == F_NF4DQ, &q[f][k]),
                "quantize");
            qbytes[f] += road_qtensor_bytes(q[f][k]);
        }
    }
    tq = now_s() - tq;
    const double f32 = 4.0 * (double)params;
    const double floats_kept = 4.0 * (double)(vocab * HIDDEN + norm_params);
    printf("\n[1] memory (%lld parameters; %lld in linear layers; quantizing all formats took %.1f "
           "s)\n",
           (long long)params, (long long)lin_params, tq);
    printf("    %-28s %10s %8s  %s\n", "", "MiB", "vs f32", "linear layers vs f32");
    printf("    %-28s %10.0f %8.3f  %.3f\n", "f32", f32 / 1048576.0, 1.0, 1.0);
    printf("    %-28s %10.0f %8.3f  %.3f\n", "bf16 (on disk)", f32 / 2 / 1048576.0, 0.5, 0.5);
    for (int f = 0; f < N_FMT; f++) {
        const double tot = floats_kept + (double)qbytes[f];
        char label[64];
        snprintf(label, sizeof label, "%s (embedding f32)", FMT_NAME[f]);
        printf("    %-28s %10.0f %8.3f  %.3f\n", label, tot / 1048576.0, tot / f32,
               (double)qbytes[f] / (4.0 * (double)lin_params));
    }

    /* [2] decode: drows rows through every linear layer, then lm_head (float, tied embedding) */
    float *x = xmalloc(sizeof(float) * (size_t)(drows * INTER)),
          *y = xmalloc(sizeof(float) * (size_t)(drows * (vocab > INTER ? vocab : INTER)));
    fill(x, drows * INTER, 5, 1.0f);
    double *times = xmalloc(sizeof(double) * (size_t)(MAX_KERNELS * reps));
    printf("\n[2] decode, %d row%s: every linear layer + lm_head (median and best of %d)\n", drows,
           drows > 1 ? "s" : "", reps);
    printf("    %-30s %10s %10s %10s %12s %10s\n", "weights", "ms/step", "best ms", "tokens/s",
           "weight GB/s", "vs f32");
    double base_tps = 0;
    for (int f = -1; f < (decode ? N_FMT : -1); f++)
        for (int head_q = 0; head_q < (f < 0 ? 1 : 2); head_q++) {
            road_qtensor *qhead = NULL;
            if (head_q)
                die(road_qtensor_quantize(FMT[f], vocab, HIDDEN, embed, f == F_NF4DQ, &qhead),
                    "quantize lm_head");
            const int nk = f < 0 ? 1 : kc.n;
            for (int r = 0; r < reps + 1; r++)
                for (int j = 0; j < nk; j++) {
                    const int ki = (j + r) % nk; /* rotate which kernel goes first */
                    die(road_qkernel_select(kc.k[ki]), "qkernel");
                    double t0 = now_s();
                    for (int k = 0; k < n_lin; k++) {
                        const int p = k % N_PROJ;
                        if (f < 0)
                            road__sgemm_xwt(drows, OUTS[p], INS[p], x, w[k], NULL, y);
                        else
                            die(road_qtensor_xwt(q[f][k], drows, x, NULL, y), "xwt");
                    }
                    if (qhead)
                        die(road_qtensor_xwt(qhead, drows, x, NULL, y), "xwt");
                    else
                        road__sgemm_xwt(drows, vocab, HIDDEN, x, embed, NULL, y);
                    if (r > 0) times[ki * reps + r - 1] = now_s() - t0; /* r 0 warms up */
                }
            const double bytes =
                (f < 0 ? 4.0 * (double)lin_params : (double)qbytes[f]) +
                (qhead ? (double)road_qtensor_bytes(qhead) : 4.0 * (double)(vocab * HIDDEN));
            for (int ki = 0; ki < nk; ki++) {
                const double med = median(times + ki * reps, reps), best = times[ki * reps];
                const double tps = drows / med;
                if (f < 0) base_tps = tps;
                char label[64];
                snprintf(label, sizeof label, "%s%s%s%s", f < 0 ? "f32" : FMT_NAME[f],
                         head_q ? " + lm_head" : "", f >= 0 && kc.n > 1 ? " " : "",
                         f >= 0 && kc.n > 1 ? kc.name[ki] : "");
                printf("    %-30s %10.2f %10.2f %10.2f %12.1f %10.2f\n", label, 1e3 * med,
                       1e3 * best, tps, bytes / med / 1e9, tps / base_tps);
            }
            road_qtensor_free(qhead);
        }
    die(road_qkernel_select(kc.k[0]), "qkernel");
    free(times);

    /* [3] prefill matmul GFLOP/s: every kernel of --qkernel in turn, rotating which goes first
     * rep by rep (avx2 = dequantized tiles + sgemm; avx512 = qgemm_avx512.c's fused GEMM) */
    printf("\n[3] prefill matmul y = x W^T, GFLOP/s (best of %d)%s\n", reps,
           prefill ? "" : ": skipped (--no-prefill)");
    printf("    %-16s %6s %-9s %10s", "shape (out x in)", "rows", "kernel", "sgemm f32");
    for (int f = 0; f < N_FMT; f++) printf(" %10s", FMT_NAME[f]);
    printf("   (vs sgemm)\n");
    const int shapes[3] = {0, 4, 6}; /* q_proj 2048x2048, gate 8192x2048, down 2048x8192 */
    const int64_t rows_list[2] = {128, 512};
    float *xp = xmalloc(sizeof(float) * (size_t)(512 * INTER)),
          *yp = xmalloc(sizeof(float) * (size_t)(512 * INTER));
    fill(xp, 512 * INTER, 6, 1.0f);
    for (int si = 0; si < (prefill ? 3 : 0); si++)
        for (int ri = 0; ri < 2; ri++) {
            const int p = shapes[si];
            const int64_t R = rows_list[ri], O = OUTS[p], K = INS[p];
            const double flops = 2.0 * (double)R * (double)O * (double)K;
            double g0 = 0.0, g[MAX_KERNELS][N_FMT];
            for (int f = -1; f < N_FMT; f++) {
                /* each kernel in turn, which goes first rotating rep by rep */
                const int nk = f < 0 ? 1 : kc.n;
                double best[MAX_KERNELS];
                for (int ki = 0; ki < nk; ki++) best[ki] = 1e30;
                for (int r = 0; r < reps + 1; r++)
                    for (int j = 0; j < nk; j++) {
                        const int ki = (j + r) % nk;
                        if (f >= 0) die(road_qkernel_select(kc.k[ki]), "qkernel");
                        double t0 = now_s();
                        if (f < 0)
                            road__sgemm_xwt(R, O, K, xp, w[p], NULL, yp);
                        else
                            die(road_qtensor_xwt(q[f][p], R, xp, NULL, yp), "xwt");
                        double t = now_s() - t0;
                        if (r > 0 && t < best[ki]) best[ki] = t;
                    }
                for (int ki = 0; ki < nk; ki++) {
                    if (f < 0)
                        g0 = flops / best[ki] / 1e9;
                    else
                        g[ki][f] = flops / best[ki] / 1e9;
                }
            }
            char label[32];
            snprintf(label, sizeof label, "%lld x %lld", (long long)O, (long long)K);
            for (int ki = 0; ki < kc.n; ki++) {
                printf("    %-16s %6lld %-9s %10.1f", label, (long long)R, kc.name[ki], g0);
                for (int f = 0; f < N_FMT; f++) printf(" %10.1f", g[ki][f]);
                printf("   (");
                for (int f = 0; f < N_FMT; f++) printf("%s%.2f", f ? " " : "", g[ki][f] / g0);
                printf(")\n");
            }
        }
    die(road_qkernel_select(kc.k[0]), "qkernel");

    for (int f = 0; f < N_FMT; f++) {
        for (int k = 0; k < n_lin; k++) road_qtensor_free(q[f][k]);
        free(q[f]);
    }
    for (int k = 0; k < n_lin; k++) free(w[k]);
    free(w);
    free(embed);
    free(x);
    free(y);
    free(xp);
    free(yp);
    return 0;
}
