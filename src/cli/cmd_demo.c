/*
 * cli/cmd_demo.c - `road demo`: a tour of what road does today, on one linear layer.
 *
 * Builds a layer with random weights, attaches three RoAd adapters (one per variant), answers
 * a mixed batch where every sequence picks its own adapter or the base, checks each sequence
 * against running that adapter alone, times the adapters against the layer's GEMM, merges and
 * unmerges, and saves the adapters as PEFT adapter folders. (The full demo, training adapters
 * on a small shipped model, grows out of this as the model and training land.)
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"

#define CMD "demo"
#define N_ADAPTERS 3
#define SEQ_LEN 16

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *x, int64_t n, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 7;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = scale * (2.0f * (float)((s >> 40) * (1.0 / 16777216.0)) - 1.0f);
    }
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

static int save_adapter(road_linear *l, const char *name, const char *root, road_variant v,
                        int32_t gs) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        cli_error(CMD, "cannot create '%s': %s", dir, strerror(errno));
        return -1;
    }
    road_config *c = NULL;
    road_st_writer *w = NULL;
    float *theta = NULL, *alpha = NULL;
    int64_t n = 0;
    road_status s = road_config_create(&c);
    if (s == ROAD_OK) s = road_config_set_variant(c, v);
    if (s == ROAD_OK) s = road_config_set_group_size(c, gs);
    const char *targets[1] = {"proj"};
    if (s == ROAD_OK) s = road_config_set_target_list(c, targets, 1);
    if (s == ROAD_OK) road_config_set_init_weights(c, false), road_config_set_inference_mode(c, true);
    if (s == ROAD_OK) s = road_config_save(c, dir);
    if (s == ROAD_OK) s = road_linear_adapter_params(l, name, &theta, &alpha, &n);
    if (s == ROAD_OK) s = road_st_writer_create(&w);
    int64_t shape[1] = {n};
    if (s == ROAD_OK) s = road_st_writer_add(w, "base_model.model.proj.road_alpha", ROAD_DTYPE_F32, 1, shape, alpha);
    if (s == ROAD_OK) s = road_st_writer_add(w, "base_model.model.proj.road_theta", ROAD_DTYPE_F32, 1, shape, theta);
    if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (s == ROAD_OK) s = road_st_writer_save(w, path);
    road_st_writer_free(w);
    road_config_free(c);
    if (s != ROAD_OK) {
        cli_fail(CMD, "saving the adapter", s);
        return -1;
    }
    return 0;
}

int cmd_demo(int argc, char **argv) {
    const char *out = "road-demo-out";
    long long size = 2048, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: road demo [--out DIR] [--size N] [--threads N]\n\n"
                   "A tour of the RoAd layer: three adapters on one N x N linear layer, a mixed\n"
                   "batch, timings against the layer's GEMM, merge/unmerge, and PEFT adapter\n"
                   "folders written under DIR (default road-demo-out).\n");
            return CLI_EXIT_OK;
        }
        if ((r = cli_flag_value(CMD, argc, argv, &i, "--out", &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            out = v;
            continue;
        }
        if ((r = cli_flag_value(CMD, argc, argv, &i, "--size", &v)) != 0) {
            if (r < 0 || cli_parse_int(CMD, "--size", v, 64, 16384, &size) != 0) return CLI_EXIT_USAGE;
            if (size % 64 != 0) {
                cli_error(CMD, "--size must be a multiple of 64 (the demo's largest group size), got %lld", size);
                return CLI_EXIT_USAGE;
            }
            continue;
        }
        if ((r = cli_flag_value(CMD, argc, argv, &i, "--threads", &v)) != 0) {
            if (r < 0 || cli_parse_int(CMD, "--threads", v, 0, 1024, &threads) != 0) return CLI_EXIT_USAGE;
            continue;
        }
        cli_error(CMD, "unknown option '%s' (see road demo --help)", argv[i]);
        return CLI_EXIT_USAGE;
    }
    road_set_num_threads((int)threads);
    const int64_t D = size, n_seq = 8, rows = n_seq * SEQ_LEN;
    printf("road %s demo: RoAd adapters on one %lld x %lld linear layer (%d threads, %s kernels)\n\n",
           road_version(), (long long)D, (long long)D, road_get_num_threads(),
           road_kernel_name(road_kernel_active()));

    float *w = malloc(sizeof(float) * (size_t)(D * D)), *b = malloc(sizeof(float) * (size_t)D);
    float *x = malloc(sizeof(float) * (size_t)(rows * D)), *y = malloc(sizeof(float) * (size_t)(rows * D));
    float *y1 = malloc(sizeof(float) * (size_t)(rows * D)), *w0 = malloc(sizeof(float) * (size_t)(D * D));
    road_linear *l = NULL;
    int rc = CLI_EXIT_FAIL;
    road_status s;
    if (!w || !b || !x || !y || !y1 || !w0) {
        cli_error(CMD, "out of memory for a %lld x %lld layer; try a smaller --size", size, size);
        goto done;
    }
    fill(w, D * D, 1, 1.0f / sqrtf((float)D));
    fill(b, D, 2, 0.1f);
    fill(x, rows * D, 3, 1.0f);
    memcpy(w0, w, sizeof(float) * (size_t)(D * D));
    road_linear_params p = road_linear_default_params();
    p.in_features = p.out_features = D;
    p.weight = w;
    p.bias = b;
    if ((s = road_linear_create(&p, &l)) != ROAD_OK) {
        rc = cli_fail(CMD, "creating the layer", s);
        goto done;
    }
    const char *names[N_ADAPTERS] = {"sentiment", "math", "code"};
    const road_variant vars[N_ADAPTERS] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};
    const int32_t gss[N_ADAPTERS] = {64, 64, 32};
    printf("1. adapters (random init, as after training):\n");
    for (int k = 0; k < N_ADAPTERS; k++) {
        if ((s = road_linear_add_adapter(l, names[k], vars[k], gss[k], false, 100 + (uint64_t)k)) != ROAD_OK) {
            rc = cli_fail(CMD, "adding an adapter", s);
            goto done;
        }
        int64_t n;
        road_linear_adapter_info(l, names[k], NULL, NULL, &n);
        printf("   %-10s %s group_size %-3d %7lld params (%.3f%% of the layer's %lld)\n", names[k],
               road_variant_name(vars[k]), (int)gss[k], (long long)(2 * n),
               100.0 * 2.0 * (double)n / (double)(D * D + D), (long long)(D * D + D));
    }

    printf("\n2. one mixed batch: %lld sequences x %d tokens, each with its own adapter\n",
           (long long)n_seq, SEQ_LEN);
    const char *batch[8] = {"sentiment", "math", "__base__", "code", "math", "sentiment", "code", "__base__"};
    if ((s = road_linear_forward_mixed(l, n_seq, SEQ_LEN, batch, n_seq, x, y)) != ROAD_OK) {
        rc = cli_fail(CMD, "mixed forward", s);
        goto done;
    }
    /* Reference: the whole batch with one adapter active (or none), this sequence's rows
     * taken from it. (Same batch, so the GEMM sums in the same order: equal bit for bit.) */
    double worst = 0;
    for (int64_t q = 0; q < n_seq; q++) {
        if (strcmp(batch[q], "__base__") == 0) {
            road_linear_enable_adapters(l, false);
            s = road_linear_forward(l, rows, x, y1);
            road_linear_enable_adapters(l, true);
        } else {
            s = road_linear_set_active(l, &batch[q], 1);
            if (s == ROAD_OK) s = road_linear_forward(l, rows, x, y1);
        }
        if (s != ROAD_OK) {
            rc = cli_fail(CMD, "single-adapter forward", s);
            goto done;
        }
        const int64_t off = q * SEQ_LEN * D;
        double d = max_abs_diff(y + off, y1 + off, SEQ_LEN * D);
        worst = fmax(worst, d);
        printf("   sequence %lld  %-10s  y[0..2] = %+.4f %+.4f %+.4f   vs alone: max |diff| %.1g\n",
               (long long)q, batch[q], (double)y[off], (double)y[off + 1], (double)y[off + 2], d);
    }
    printf("   every sequence matches its adapter run alone: %s\n", worst == 0.0 ? "yes, bit for bit" : "NO");

    printf("\n3. cost (median of 5): the layer's GEMM vs the adapters on top of it\n");
    double t_base = 1e30, t_mixed = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        road_linear_enable_adapters(l, false);
        double t0 = now_s();
        road_linear_forward(l, rows, x, y1);
        double t1 = now_s();
        road_linear_enable_adapters(l, true);
        road_linear_forward_mixed(l, n_seq, SEQ_LEN, batch, n_seq, x, y);
        double t2 = now_s();
        t_base = fmin(t_base, t1 - t0);
        t_mixed = fmin(t_mixed, t2 - t1);
    }
    printf("   base layer %.3f ms, with a mixed batch of 3 adapters %.3f ms: adapters add %.1f%%\n",
           1e3 * t_base, 1e3 * t_mixed, 100.0 * (t_mixed - t_base) / t_base);

    printf("\n4. merge 'math' into the weights, then unmerge\n");
    const char *math[1] = {"math"};
    road_linear_set_active(l, math, 1);
    road_linear_forward(l, rows, x, y1);
    double t0 = now_s();
    if ((s = road_linear_merge(l, math, 1, true)) != ROAD_OK) {
        rc = cli_fail(CMD, "merge", s);
        goto done;
    }
    double t1 = now_s();
    road_linear_forward(l, rows, x, y);
    printf("   merged in %.1f ms; merged layer vs adapter: max |diff| %.2g\n", 1e3 * (t1 - t0),
           max_abs_diff(y, y1, rows * D));
    t0 = now_s();
    if ((s = road_linear_unmerge(l)) != ROAD_OK) {
        rc = cli_fail(CMD, "unmerge", s);
        goto done;
    }
    t1 = now_s();
    printf("   unmerged in %.1f ms; weights vs original: max |diff| %.2g\n", 1e3 * (t1 - t0),
           max_abs_diff(road_linear_weight(l), w0, D * D));

    printf("\n5. saving the adapters as PEFT adapter folders\n");
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        cli_error(CMD, "cannot create '%s': %s", out, strerror(errno));
        goto done;
    }
    for (int k = 0; k < N_ADAPTERS; k++) {
        if (save_adapter(l, names[k], out, vars[k], gss[k]) != 0) goto done;
        printf("   %s/%s/\n", out, names[k]);
    }
    printf("\nnext: road inspect %s/math    (describe an adapter folder)\n", out);
    printf("      road config --print --variant road_2 --targets q_proj,v_proj\n");
    rc = CLI_EXIT_OK;
done:
    road_linear_free(l);
    free(w), free(b), free(x), free(y), free(y1), free(w0);
    return rc;
}
