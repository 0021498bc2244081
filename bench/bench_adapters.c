/*
 * bench/bench_adapters.c - the adapter manager on a Llama-3-8B-shaped model (32 layers,
 * hidden 4096, 8 KV heads of 128, intermediate 14336; RoAd on all 224 linear layers):
 *
 *   [1] loading a PEFT adapter folder and attaching it: time, and memory road keeps beyond the
 *       adapter's own parameters (before and after the first forward builds the coefficient
 *       caches);
 *   [2] a mixed batch through the manager (8 adapters and __base__ rows, one per sequence) vs
 *       the same batch with one adapter active: prefill (16 x 32 rows) and decode (16 x 1),
 *       on a 4096 x 4096 layer, GEMM included.
 *
 * Baselines run in the same process, alternating with what they are compared with; figures
 * are medians. Nothing asserts on timings. The weights of all layers share one buffer (this
 * benchmark never merges), so the run needs about 300 MB instead of 30 GB.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "road/road.h"

#define BENCH_NAME "bench_adapters"
#include "bench_util.h"

#define N_BLOCKS 32
#define HIDDEN 4096
#define KV_DIM 1024
#define INTER 14336
#define N_PROJ 7
#define REPS 7
#define N_ADAPTERS 8
#define N_SEQ 16
#define PREFILL_TOKENS 32


static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    return t[n / 2];
}

static void check(road_status s, const char *what) {
    if (s != ROAD_OK) {
        fprintf(stderr, "bench_adapters: %s failed: %s\n", what, road_last_error());
        exit(1);
    }
}

static void fill(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 40) / 16777216.0 - 0.5) * 0.04f;
    }
}

int main(int argc, char **argv) {
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_adapters [--threads N]\n");
            return 2;
        }
    }
    road_set_num_threads(threads);
    static const char *proj[N_PROJ] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};
    static const int64_t outs[N_PROJ] = {HIDDEN, KV_DIM, KV_DIM, HIDDEN, INTER, INTER, HIDDEN};
    static const int64_t ins[N_PROJ] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, INTER};
    float *w = malloc(sizeof(float) * (size_t)INTER * HIDDEN);
    if (!w) return 1;
    fill(w, (int64_t)INTER * HIDDEN, 1);
    road_layer_desc layers[N_BLOCKS * N_PROJ];
    char names[N_BLOCKS * N_PROJ][64];
    int64_t adapter_params = 0;
    for (int b = 0; b < N_BLOCKS; b++)
        for (int p = 0; p < N_PROJ; p++) {
            int k = b * N_PROJ + p;
            snprintf(names[k], sizeof names[k], "model.layers.%d.%s", b, proj[p]);
            layers[k] = (road_layer_desc){names[k], ROAD_LAYER_LINEAR, ins[p], outs[p], w, NULL, false, NULL};
            adapter_params += outs[p]; /* road_1: out/2 theta + out/2 alpha */
        }
    road_adapter_set_params sp = road_adapter_set_default_params();
    sp.model_type = "llama";
    sp.layers = layers;
    sp.n_layers = N_BLOCKS * N_PROJ;

    printf("road %s adapter-manager benchmark: %d layers (Llama-3-8B shapes), %d threads\n\n",
           road_version(), sp.n_layers, road_get_num_threads());

    /* [1] save one all-linear road_1 adapter, then time loading it into a fresh set */
    road_adapter_set *src = NULL;
    check(road_adapter_set_create(&sp, &src), "create");
    road_config *cfg = NULL;
    check(road_config_create(&cfg), "config");
    check(road_config_set_target_all_linear(cfg), "targets");
    road_config_set_init_weights(cfg, false);
    check(road_adapter_set_add(src, "default", cfg, 7), "add");
    char dir[] = "/tmp/road-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    check(road_adapter_set_save(src, dir, NULL, 0), "save");
    road_adapter_set_free(src);

    road_adapter_set *s = NULL;
    check(road_adapter_set_create(&sp, &s), "create");
    double t_load[REPS];
    int64_t mem_attach = 0, mem_cache = 0;
    for (int r = 0; r < REPS; r++) {
        int64_t before = road__alloc_live_bytes();
        double t0 = now_s();
        check(road_adapter_set_load(s, "x", dir), "load");
        t_load[r] = now_s() - t0;
        mem_attach = road__alloc_live_bytes() - before;
        if (r == REPS - 1) {
            /* the first forward builds c1/c2 for every layer: apply on one row each */
            float *y = calloc((size_t)INTER, sizeof(float));
            int64_t b2 = road__alloc_live_bytes();
            for (int32_t k = 0; k < sp.n_layers; k++) check(road_adapter_set_apply(s, k, 1, y), "apply");
            mem_cache = road__alloc_live_bytes() - b2;
            free(y);
        } else {
            check(road_adapter_set_delete(s, "x"), "delete");
        }
    }
    double own = (double)adapter_params * sizeof(float);
    printf("[1] load + attach a PEFT adapter folder (road_1, all 224 linear layers, %.2f MB of parameters)\n",
           own / 1e6);
    printf("    time (median of %d)          %8.2f ms\n", REPS, 1e3 * median(t_load, REPS));
    printf("    memory held after attach     %8.2f MB (%.2fx the parameters: the parameters themselves plus %.3f MB of bookkeeping)\n",
           (double)mem_attach / 1e6, (double)mem_attach / own, ((double)mem_attach - own) / 1e6);
    printf("    coefficient caches (first forward) %5.2f MB (c1, c2: 2 floats per output feature)\n\n",
           (double)mem_cache / 1e6);

    /* [2] mixed batch vs one adapter, through the manager, on model.layers.0.self_attn.q_proj */
    for (int a = 0; a < N_ADAPTERS; a++) {
        char nm[16];
        snprintf(nm, sizeof nm, "a%d", a);
        check(road_adapter_set_add(s, nm, cfg, 100 + (uint64_t)a), "add");
    }
    const int32_t layer = 0;
    const int64_t max_rows = N_SEQ * PREFILL_TOKENS;
    float *x = malloc(sizeof(float) * (size_t)(max_rows * HIDDEN));
    float *y = malloc(sizeof(float) * (size_t)(max_rows * HIDDEN));
    fill(x, max_rows * HIDDEN, 3);
    const char *seq_names[N_SEQ];
    static char nmbuf[N_SEQ][16];
    for (int q = 0; q < N_SEQ; q++) {
        if (q % 5 == 4) seq_names[q] = "__base__";
        else {
            snprintf(nmbuf[q], sizeof nmbuf[q], "a%d", q % N_ADAPTERS);
            seq_names[q] = nmbuf[q];
        }
    }
    road_batch_plan *plan = NULL;
    check(road_adapter_set_plan(s, seq_names, N_SEQ, &plan), "plan");
    const char *one[1] = {"a0"};
    check(road_adapter_set_set_active(s, one, 1), "active");
    const int64_t tokens[2] = {PREFILL_TOKENS, 1};
    const char *label[2] = {"prefill 16 x 32 rows", "decode  16 x 1 rows "};
    printf("[2] mixed batch (8 adapters + __base__, one per sequence) vs one adapter, layer 4096 x 4096\n");
    for (int c = 0; c < 2; c++) {
        const int64_t rows = N_SEQ * tokens[c];
        double ts[REPS], tm[REPS], ratio[REPS];
        for (int r = -2; r < REPS; r++) {
            double t0 = now_s();
            check(road_adapter_set_forward(s, layer, rows, x, y), "forward");
            double t1 = now_s();
            check(road_adapter_set_forward_mixed(s, plan, layer, tokens[c], NULL, x, y), "mixed");
            double t2 = now_s();
            if (r >= 0) {
                ts[r] = t1 - t0;
                tm[r] = t2 - t1;
                ratio[r] = tm[r] / ts[r];
            }
        }
        printf("    %s  single %7.3f ms  mixed %7.3f ms  mixed/single %.3f\n", label[c],
               1e3 * median(ts, REPS), 1e3 * median(tm, REPS), median(ratio, REPS));
    }
    road_batch_plan_free(plan);
    road_adapter_set_free(s);
    road_config_free(cfg);
    free(x), free(y), free(w);
    /* remove the saved folder */
    const char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
    remove_folder(dir, files, sizeof files / sizeof files[0]);
    printf("\nlive bytes at exit: %lld\n", (long long)road__alloc_live_bytes());
    return 0;
}
