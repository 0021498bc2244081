/*
 * bench/bench_train.c - one RoAd training step (forward + causal-LM loss + backward, gradients
 * for the RoAd parameters only, base weights frozen) through road_model_loss_backward, on a
 * Llama-shaped model with random weights written at bench time (by default Llama-3.2-1B's
 * shape: hidden 2048, 32 heads / 8 KV heads of 64, intermediate 8192, vocab 128256, tied
 * embeddings; --layers of them, 4 by default; any other shape with --hidden/--inter/--heads/
 * --kv-heads/--head-dim/--vocab/--untied), RoAd road_1 g=64 on every linear layer but the
 * head, a batch of 2 x 128 tokens (--batch/--seq):
 *
 *   [1] training step: median of 5 after 2 warm-ups;
 *   [2] forward only (road_model_forward_padded + road_causal_lm_loss), for reference;
 *   [3] peak resident memory;
 *   [4] with --torch: the same step in plain PyTorch (bench/torch_train_step.py, run with the
 *       same threads on the same model file, adapter parameters and batch), the ratio
 *       torch step / road step, and the numerics check: both losses, and the relative L2 error
 *       between road's and torch's gradients of every theta/alpha.
 *
 * The model is stored as F32 safetensors (road maps it; the Python script reads the same file)
 * and written by a child process, so the writer's buffers do not count in the peak RSS.
 *
 * Usage: bench_train [--threads N] [--layers L] [--batch B] [--seq T] [--hidden H] [--inter I]
 *                    [--heads NH] [--kv-heads NKV] [--head-dim D] [--vocab V] [--untied]
 *                    [--recompute] [--reps R] [--torch] [--python PATH] [--script PATH] [--dir DIR]
 * The small Llama shape (bench/README.md):
 *   bench_train --layers 12 --hidden 768 --heads 12 --kv-heads 12 --inter 3072 --vocab 32000
 *               --untied --seq 256 --batch 4 --torch
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "road/road.h"

#define BENCH_NAME "bench_train"
#include "bench_util.h"

/* The model's shape (defaults: Llama-3.2-1B's), set by --hidden/--inter/--heads/--kv-heads/
 * --head-dim/--vocab/--untied. */
static int g_hidden = 2048, g_inter = 8192, g_heads = 32, g_kv = 8, g_head_dim = 64, g_vocab = 128256;
static bool g_tied = true;
#define WARMUP 2
#define MAX_REPS 64
#define ADAPTER "default"




static void write_model(const char *dir, int layers) {
    const bench_llama_shape shape = {g_hidden, g_inter, layers, g_heads, g_kv, g_head_dim, g_vocab};
    write_llama3_model(dir, &shape, ROAD_DTYPE_F32, g_tied);
}

/* Write the model in a child process: the writer holds every tensor until it saves, which
 * would otherwise be this process's peak RSS. */
static void write_model_child(const char *dir, int layers) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) exit(1);
    if (pid == 0) {
        write_model(dir, layers);
        _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_train: writing the model failed\n");
        exit(1);
    }
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void zero_grads(road_adapter_set *set) {
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
        road_linear *l = road_adapter_set_layer(set, i);
        if (l && road_adapter_set_on_layer(set, ADAPTER, i)) road_linear_zero_grads(l);
    }
}

/* The adapter's parameters (grads false) or gradients (grads true) of every layer, as
 * "<layer>.theta" / "<layer>.alpha" (or .dtheta / .dalpha) F32 tensors. */
static void write_adapter_tensors(road_adapter_set *set, const char *path, bool grads) {
    road_st_writer *w;
    die(road_st_writer_create(&w), "writer");
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
        road_linear *l = road_adapter_set_layer(set, i);
        if (!l || !road_adapter_set_on_layer(set, ADAPTER, i)) continue;
        float *a, *b;
        int64_t n;
        if (grads) die(road_linear_adapter_grads(l, ADAPTER, &a, &b, &n), "grads");
        else die(road_linear_adapter_params(l, ADAPTER, &a, &b, &n), "params");
        char name[256];
        snprintf(name, sizeof name, "%s.%s", road_adapter_set_layer_name(set, i), grads ? "dtheta" : "theta");
        die(road_st_writer_add(w, name, ROAD_DTYPE_F32, 1, &n, a), "add");
        snprintf(name, sizeof name, "%s.%s", road_adapter_set_layer_name(set, i), grads ? "dalpha" : "alpha");
        die(road_st_writer_add(w, name, ROAD_DTYPE_F32, 1, &n, b), "add");
    }
    die(road_st_writer_save(w, path), "save");
    road_st_writer_free(w);
}

/* A number after "key": in a one-line JSON object; NAN if absent. */
static double json_num(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static bool python_has_torch(const char *py) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch, numpy' >/dev/null 2>&1", py);
    return system(cmd) == 0;
}

static void script_dir(char *out, size_t cap) {
    /* this file's folder (CMake compiles it by absolute path) */
    snprintf(out, cap, "%s", __FILE__);
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
    else snprintf(out, cap, "bench");
}

int main(int argc, char **argv) {
    int threads = 0, layers = 4, reps = 5;
    int64_t B = 2, T = 128;
    bool with_torch = false, recompute = false;
    const char *dir_arg = NULL, *python = NULL, *script = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc) layers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) B = atoll(argv[++i]);
        else if (strcmp(argv[i], "--seq") == 0 && i + 1 < argc) T = atoll(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir_arg = argv[++i];
        else if (strcmp(argv[i], "--python") == 0 && i + 1 < argc) python = argv[++i];
        else if (strcmp(argv[i], "--script") == 0 && i + 1 < argc) script = argv[++i];
        else if (strcmp(argv[i], "--hidden") == 0 && i + 1 < argc) g_hidden = atoi(argv[++i]);
        else if (strcmp(argv[i], "--inter") == 0 && i + 1 < argc) g_inter = atoi(argv[++i]);
        else if (strcmp(argv[i], "--heads") == 0 && i + 1 < argc) g_heads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--kv-heads") == 0 && i + 1 < argc) g_kv = atoi(argv[++i]);
        else if (strcmp(argv[i], "--head-dim") == 0 && i + 1 < argc) g_head_dim = atoi(argv[++i]);
        else if (strcmp(argv[i], "--vocab") == 0 && i + 1 < argc) g_vocab = atoi(argv[++i]);
        else if (strcmp(argv[i], "--untied") == 0) g_tied = false;
        else if (strcmp(argv[i], "--recompute") == 0) recompute = true;
        else if (strcmp(argv[i], "--torch") == 0) with_torch = true;
        else {
            fprintf(stderr, "usage: bench_train [--threads N] [--layers L] [--batch B] [--seq T] "
                            "[--hidden H] [--inter I] [--heads NH] [--kv-heads NKV] [--head-dim D] "
                            "[--vocab V] [--untied] [--recompute] [--reps R] [--torch] [--python PATH] "
                            "[--script PATH] [--dir DIR]\n");
            return 2;
        }
    }
    if (layers < 1 || B < 1 || T < 2 || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "bench_train: bad --layers/--batch/--seq/--reps\n");
        return 2;
    }
    if (g_hidden < 2 || g_inter < 2 || g_heads < 1 || g_kv < 1 || g_heads % g_kv != 0 || g_head_dim < 2 ||
        g_head_dim % 2 || g_vocab < 2 || g_hidden % 64 || g_inter % 64 || (g_kv * g_head_dim) % 64 ||
        (g_heads * g_head_dim) % 64) {
        fprintf(stderr, "bench_train: bad shape (heads must be a multiple of kv-heads; every "
                        "projection's width a multiple of the RoAd group, 64)\n");
        return 2;
    }
    road_set_num_threads(threads);
    threads = road_get_num_threads();
    char tmpl[] = "/tmp/road-bench-train-XXXXXX";
    const char *dir = dir_arg ? dir_arg : mkdtemp(tmpl);
    if (!dir) return 1;
    printf("road %s training-step benchmark: hidden %d, inter %d, %d heads / %d kv of %d, vocab %d "
           "(%s), %d layers, batch %lld x %lld, RoAd road_1 g=64 on all linear layers, %d threads\n",
           road_version(), g_hidden, g_inter, g_heads, g_kv, g_head_dim, g_vocab,
           g_tied ? "tied lm_head" : "own lm_head", layers, (long long)B, (long long)T, threads);
    double t0 = now_s();
    write_model_child(dir, layers);
    printf("  wrote random f32 weights in %.1f s\n", now_s() - t0);

    road_model *m;
    road_model_params mp = road_model_default_params();
    mp.n_threads = threads;
    t0 = now_s();
    die(road_model_load(dir, &mp, &m), "load");
    const double wbytes = (double)road_model_weight_bytes(m);
    printf("  loaded in %.1f s: %.2f GB of float32 weights\n", now_s() - t0, wbytes / 1e9);

    road_model_set_recompute(m, recompute); /* --recompute: keep only block inputs in forward */
    road_adapter_set *set = road_model_adapters(m);
    road_config *cfg;
    die(road_config_create(&cfg), "config");
    die(road_config_set_target_all_linear(cfg), "targets");
    road_config_set_init_weights(cfg, false);
    die(road_adapter_set_add(set, ADAPTER, cfg, 1234), "add adapter");
    const char *act[1] = {ADAPTER};
    die(road_adapter_set_set_active(set, act, 1), "activate");
    road_adapter_set_train(set, true);
    char report[256];
    road_param_report rep = road_adapter_set_param_report(set);
    road_param_report_format(&rep, report, sizeof report);
    printf("  %s\n\n", report);

    const int64_t BT = B * T;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)BT);
    float *logits = malloc(sizeof(float) * (size_t)BT * (size_t)g_vocab);
    if (!ids || !logits) return 1;
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int64_t i = 0; i < BT; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = (int64_t)(s % g_vocab);
    }
    const int64_t *labels = ids;

    /* [1] training step */
    double ts[MAX_REPS], tf[MAX_REPS], loss = 0, floss = 0;
    for (int r = 0; r < WARMUP + reps; r++) {
        zero_grads(set);
        double a = now_s();
        die(road_model_loss_backward(m, ids, NULL, labels, B, T, &loss), "loss_backward");
        if (r >= WARMUP) ts[r - WARMUP] = now_s() - a;
    }
    const double t_step = median(ts, reps);
    const double t_min = ts[0]; /* sorted by median() */
    printf("[1] training step (forward + loss + backward): %.3f s median of %d (min %.3f), %.1f "
           "tokens/s; loss %.6f\n", t_step, reps, t_min, (double)BT / t_step, loss);

    /* [2] forward only */
    for (int r = 0; r < 1 + reps; r++) {
        double a = now_s();
        die(road_model_forward_padded(m, ids, NULL, B, T, NULL, logits), "forward");
        die(road_causal_lm_loss(logits, labels, NULL, B, T, g_vocab, &floss), "loss");
        if (r >= 1) tf[r - 1] = now_s() - a;
    }
    const double t_fwd = median(tf, reps);
    printf("[2] forward only (forward_padded + causal_lm_loss): %.3f s median of %d; loss %.6f; "
           "step / forward %.2f\n", t_fwd, reps, floss, t_step / t_fwd);

    /* gradients of exactly one step, for the comparison */
    zero_grads(set);
    die(road_model_loss_backward(m, ids, NULL, labels, B, T, &loss), "loss_backward");

    long peak = peak_rss_kb();
    printf("[3] peak resident memory %.2f GB (float32 weights %.2f GB, mapped from the f32 file; "
           "backward's activations and buffers %.2f GB%s)\n",
           peak / 1e6, wbytes / 1e9, (double)road_model_backward_bytes(m) / 1e9,
           recompute ? ", recomputing blocks" : "");

    double torch_step = NAN, torch_fwd = NAN, torch_loss = NAN, grel = NAN, gworst = NAN;
    char apath[1024], gpath[1024], ipath[1024];
    snprintf(apath, sizeof apath, "%s/road_params.safetensors", dir);
    snprintf(gpath, sizeof gpath, "%s/road_grads.safetensors", dir);
    snprintf(ipath, sizeof ipath, "%s/ids.txt", dir);
    if (with_torch) {
        const char *py = python;
        if (!py) py = python_has_torch("python3") ? "python3" : "/usr/bin/python3";
        char sdir[1024];
        script_dir(sdir, sizeof sdir);
        char spath[1200];
        snprintf(spath, sizeof spath, "%s/torch_train_step.py", sdir);
        if (!script) script = spath;
        if (!python_has_torch(py)) {
            printf("[4] torch: %s cannot import torch and numpy; skipped (apt-get install python3-torch)\n", py);
        } else {
            write_adapter_tensors(set, apath, false);
            write_adapter_tensors(set, gpath, true);
            FILE *f = fopen(ipath, "w");
            if (!f) return 1;
            for (int64_t i = 0; i < BT; i++) fprintf(f, "%lld\n", (long long)ids[i]);
            fclose(f);
            char cmd[8192];
            snprintf(cmd, sizeof cmd,
                     "OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d %s %s --threads %d --batch %lld "
                     "--seq %lld --reps %d --warmup %d --model %s --adapter %s --ids %s --grads %s",
                     threads, threads, py, script, threads, (long long)B, (long long)T, reps, WARMUP,
                     dir, apath, ipath, gpath);
            printf("[4] running: %s\n", cmd);
            fflush(stdout);
            FILE *p = popen(cmd, "r");
            char line[8192], last[8192] = "";
            while (p && fgets(line, sizeof line, p))
                if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
            int rc = p ? pclose(p) : -1;
            if (rc != 0 || !last[0]) {
                printf("    torch run failed (status %d)\n", rc);
            } else {
                torch_step = json_num(last, "step_s");
                torch_fwd = json_num(last, "fwd_s");
                torch_loss = json_num(last, "loss");
                grel = json_num(last, "grad_rel_l2");
                gworst = json_num(last, "grad_worst_rel_l2");
                printf("    torch %s", last);
                printf("    torch step %.3f s, forward %.3f s (peak RSS %.2f GB)\n", torch_step, torch_fwd,
                       json_num(last, "peak_rss_mb") / 1e3);
                printf("    ** torch step / road step: %.2f ** (forward only: %.2f)\n", torch_step / t_step,
                       torch_fwd / t_fwd);
                printf("    numerics: loss road %.7f torch %.7f, relative difference %.2e; gradients "
                       "rel. L2 error %.2e (worst tensor %.2e)\n",
                       loss, torch_loss, fabs(loss - torch_loss) / fabs(torch_loss), grel, gworst);
            }
        }
    }
    char tj[512] = "";
    if (!isnan(torch_step))
        snprintf(tj, sizeof tj, ", \"torch_step_s\": %.6f, \"torch_fwd_s\": %.6f, \"torch_loss\": %.9g, "
                 "\"ratio\": %.4f, \"grad_rel_l2\": %.3e, \"grad_worst_rel_l2\": %.3e",
                 torch_step, torch_fwd, torch_loss, torch_step / t_step, grel, gworst);
    printf("{\"bench\": \"train\", \"hidden\": %d, \"inter\": %d, \"heads\": %d, \"kv_heads\": %d, "
           "\"vocab\": %d, \"tied\": %s, \"threads\": %d, \"layers\": %d, \"batch\": %lld, \"seq\": %lld, "
           "\"road_step_s\": %.6f, \"road_fwd_s\": %.6f, \"road_loss\": %.9g, \"peak_rss_gb\": %.3f%s}\n",
           g_hidden, g_inter, g_heads, g_kv, g_vocab, g_tied ? "true" : "false", threads, layers,
           (long long)B, (long long)T, t_step, t_fwd, loss, peak / 1e6, tj);

    road_config_free(cfg);
    road_model_free(m);
    free(ids), free(logits);
    if (!dir_arg) {
        const char *files[] = {"config.json", "model.safetensors", "road_params.safetensors",
                               "road_grads.safetensors", "ids.txt"};
        remove_folder(dir, files, sizeof files / sizeof files[0]);
    }
    return 0;
}
