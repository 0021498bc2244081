/*
 * bench/bench_road.c - RoAd kernel benchmark: every figure against a baseline timed in the same
 * run, on the same buffers and thread count.
 *
 *   [1] forward apply in place (road_rot_forward)   vs memcpy, and vs y *= s in place
 *   [2] rotation after the base linear               vs the sgemm it follows (overhead %)
 *   [3] mixed batch, 4 adapters + __base__ rows      vs one adapter on every row
 *   [4] merge / unmerge on the 2x2 blocks            vs PEFT's dense R build + R @ W sgemm
 *   [5] backward (dx and dc1/dc2)                    vs forward on the same buffer
 *
 * Every timing is the median of several repetitions after warm-up calls, read with
 * clock_gettime(CLOCK_MONOTONIC). A baseline and what it is compared with run alternately and
 * the comparison is the median of per-repetition ratios: on a shared VM bandwidth and free
 * cores change in phases, and alternating puts both sides in the same phase. Each section
 * also reports how much CPU other processes took meanwhile. Nothing here asserts on a timing:
 * targets are printed as "met" / "MISSED" and the exit status only reflects errors. The last
 * line of stdout is one JSON object with every figure (--json FILE writes it to FILE too).
 *
 * Memory: one arena (about 210 MiB for the full sizes) is carved into all buffers up front and
 * freed once at the end; the run ends by reporting road's live-byte counter.
 *
 * Legend: R = rows of activations, D = features (out = in for the square layers used here),
 * G = rows of the sgemm in [2], g = group_size.
 */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/blas.h"
#include "core/rng.h"
#include "road/road.h"

#define BENCH_NAME "bench_road"
#include "bench_util.h"

/* ---- sizes and repetition counts ----------------------------------------------------------- */

/* The shapes: a 4096-wide layer (Llama-7B hidden size), 4096 rows of activations
 * (a 64 MiB f32 buffer: 2x the 32 MiB L3 of the machines we run on, so DRAM-bound), and a
 * 512-row prefill batch for the sgemm comparison. --quick shrinks everything so a smoke run
 * takes a second; its figures are not representative (buffers fit in cache). */
#define BENCH_FULL_ROWS 4096
#define BENCH_FULL_DIM 4096
#define BENCH_FULL_GEMM_ROWS 512
#define BENCH_QUICK_ROWS 1024
#define BENCH_QUICK_DIM 1024
#define BENCH_QUICK_GEMM_ROWS 128

/* Warm-up calls fault the pages in and settle the thread pools; the median of the timed
 * repetitions is robust to the odd descheduling on a shared VM. */
#define BENCH_MAX_REPS 64
#define BENCH_FULL_WARMUP 2
#define BENCH_FULL_REPS 15
#define BENCH_FULL_ROT_REPS 50   /* [2]: the rotation of an 8 MiB output is short: more reps */
#define BENCH_FULL_GEMM_REPS 7   /* [2]: one 512x4096x4096 sgemm is ~0.1 s per thread count */
#define BENCH_FULL_DENSE_REPS 3  /* [4]: the dense baseline is a 4096^3 sgemm (~0.5 s) */
#define BENCH_QUICK_WARMUP 1
#define BENCH_QUICK_REPS 3

/* Adapter coefficients: theta ~ U(-BENCH_THETA, BENCH_THETA), alpha ~ U(1 -/+ BENCH_ALPHA).
 * Kept near a rotation on purpose: the timed loops apply the same R in place tens of times,
 * and road_2 / road_4 blocks are not orthogonal, so wide ranges would drift the buffer into
 * Inf or subnormals and time the FPU's slow paths instead of the kernel. The buffers are
 * checked for that after each section. */
#define BENCH_THETA 0.3
#define BENCH_ALPHA 0.05

/* [3]: rows per sequence block (a short sequence's tokens), and the adapters in play. */
#define BENCH_MIXED_BLOCK 16
#define BENCH_N_ADAPTERS 4

/* Targets from the issue, printed next to the figures. */
#define TARGET_APPLY_VS_MEMCPY 0.8 /* apply GB/s / memcpy GB/s, >= */
#define TARGET_OVERHEAD_PCT 2.0    /* t_rot / t_sgemm, % , < */
#define TARGET_MIXED_RATIO 1.1     /* mixed / single time, <= */
#define TARGET_MERGE_SPEEDUP 100.0 /* dense / ours, >= */

/* [3]: the order in which sequence blocks take adapter slots (-1 = __base__). */
static const int32_t mixed_pattern[] = {0, 1, -1, 2, 3};     /* a, b, __base__, c, d */
static const int32_t mixed_pattern_nobase[] = {0, 1, 2, 3}; /* a, b, c, d */

/* ---- options ------------------------------------------------------------------------------ */

typedef struct bench_opts {
    int threads;         /* 0 = all cores */
    bool quick;
    road_kernel_impl kernel;
    const char *json_path; /* NULL: stdout only */
} bench_opts;

typedef struct bench_sizes {
    int64_t rows, dim, gemm_rows;
    int warmup, reps, rot_reps, gemm_reps, dense_reps;
} bench_sizes;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_road [--threads N] [--quick] [--kernel auto|generic|reference|avx2]\n"
            "                  [--json FILE]\n"
            "  --threads N   threads for road's kernels and OpenBLAS (default: all cores)\n"
            "  --quick       small sizes and few repetitions (smoke run; figures not meaningful)\n"
            "  --kernel K    RoAd kernel implementation (default auto)\n"
            "  --json FILE   also write the final JSON line to FILE\n");
}

static int parse_kernel(const char *s, road_kernel_impl *out) {
    static const road_kernel_impl all[] = {ROAD_KERNEL_AUTO, ROAD_KERNEL_GENERIC,
                                           ROAD_KERNEL_REFERENCE, ROAD_KERNEL_AVX2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, road_kernel_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

/* 0: run; 1: --help printed; -1: usage error (message printed). */
static int parse_args(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){0, false, ROAD_KERNEL_AUTO, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(a, "--threads") == 0 && val) {
            char *end = NULL;
            long n = strtol(val, &end, 10);
            if (*val == '\0' || *end != '\0' || n < 0 || n > 1024) {
                fprintf(stderr, "bench_road: --threads wants a number from 0 to 1024, got '%s'\n",
                        val);
                return -1;
            }
            o->threads = (int)n;
            i++;
        } else if (strcmp(a, "--kernel") == 0 && val) {
            if (parse_kernel(val, &o->kernel) != 0) {
                fprintf(stderr,
                        "bench_road: unknown kernel '%s'; choose auto, generic, reference or "
                        "avx2\n",
                        val);
                return -1;
            }
            i++;
        } else if (strcmp(a, "--json") == 0 && val) {
            o->json_path = val;
            i++;
        } else {
            fprintf(stderr, "bench_road: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

/* ---- timing ------------------------------------------------------------------------------- */

typedef road_status (*bench_fn)(void *ctx);

typedef struct timing {
    double median, min; /* seconds */
} timing;

/* Two operations timed in alternation (A, B, A, B, ...): a baseline and what it is compared
 * with see the same machine state, so a slow phase on a shared VM (another process taking a
 * core, a neighbour's memory traffic) hits both. ratio is the median over repetitions of
 * t_B / t_A, which is what the comparisons report. */
typedef struct pair_timing {
    timing a, b;
    double ratio;
} pair_timing;


static timing summarize(double *t, int n) {
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    return (timing){med, t[0]};
}

static int clamp_reps(int reps) {
    return reps < 1 ? 1 : reps > BENCH_MAX_REPS ? BENCH_MAX_REPS : reps;
}

/* Call fn `warmup` times untimed, then `reps` times timed; median and min of the timed calls. */
static road_status time_fn(bench_fn fn, void *ctx, int warmup, int reps, timing *out) {
    double t[BENCH_MAX_REPS];
    reps = clamp_reps(reps);
    for (int i = -warmup; i < reps; i++) {
        double t0 = now_s();
        road_status s = fn(ctx);
        if (s != ROAD_OK) return s;
        if (i >= 0) t[i] = now_s() - t0;
    }
    *out = summarize(t, reps);
    return ROAD_OK;
}

static road_status time_pair(bench_fn fa, void *ca, bench_fn fb, void *cb, int warmup, int reps,
                             pair_timing *out) {
    double ta[BENCH_MAX_REPS], tb[BENCH_MAX_REPS], q[BENCH_MAX_REPS];
    reps = clamp_reps(reps);
    for (int i = -warmup; i < reps; i++) {
        double t0 = now_s();
        road_status s = fa(ca);
        double t1 = now_s();
        if (s == ROAD_OK) s = fb(cb);
        double t2 = now_s();
        if (s != ROAD_OK) return s;
        if (i >= 0) {
            ta[i] = t1 - t0;
            tb[i] = t2 - t1;
            q[i] = tb[i] / ta[i];
        }
    }
    out->a = summarize(ta, reps);
    out->b = summarize(tb, reps);
    out->ratio = summarize(q, reps).median;
    return ROAD_OK;
}

/* CPU used by other processes while a section ran, in cores: busy time of the whole machine
 * (/proc/stat, including steal) minus this process's CPU time, over the wall time. Above
 * about 0.1 core the figures of that section are contended; the report says so. */
typedef struct load_mark {
    double wall, own, busy; /* seconds */
} load_mark;

static load_mark load_now(void) {
    load_mark m = {now_s(), 0.0, -1.0};
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
        m.own = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return m;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    long tck = sysconf(_SC_CLK_TCK);
    if (n == 8 && tck > 0) /* user nice system [idle iowait] irq softirq steal */
        m.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)tck;
    return m;
}

/* Cores used by others between two marks; -1 when /proc/stat is unreadable. */
static double load_others(load_mark a, load_mark b) {
    if (a.busy < 0.0 || b.busy < 0.0 || b.wall <= a.wall) return -1.0;
    double o = ((b.busy - a.busy) - (b.own - a.own)) / (b.wall - a.wall);
    return o < 0.0 ? 0.0 : o;
}

#define BENCH_CONTENDED_CORES 0.1

static double section_end(load_mark start) {
    double o = load_others(start, load_now());
    if (o >= BENCH_CONTENDED_CORES)
        printf("  NOTE: other processes used %.2f cores during this section: figures contended\n",
               o);
    return o;
}

/* ---- the timed operations ----------------------------------------------------------------- */

typedef struct copy_ctx {
    void *dst;
    const void *src;
    size_t bytes;
    int threads;
} copy_ctx;

/* Call fn(ctx, i0, i1) on `threads` contiguous chunks [i0, i1) of [0, n), one per thread (the
 * same split road uses for rows), so a baseline gets the same parallelism as the kernel it is
 * compared with. */
static void run_chunks(size_t n, int threads, void (*fn)(void *ctx, size_t i0, size_t i1),
                       void *ctx) {
    const int nt = threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++)
        fn(ctx, n * (size_t)t / (size_t)nt, n * (size_t)(t + 1) / (size_t)nt);
}

static void copy_chunk(void *p, size_t b0, size_t b1) {
    copy_ctx *c = p;
    memcpy((char *)c->dst + b0, (const char *)c->src + b0, b1 - b0);
}

/* memcpy split into `threads` chunks, one per thread. */
static road_status run_memcpy(void *p) {
    copy_ctx *c = p;
    run_chunks(c->bytes, c->threads, copy_chunk, c);
    return ROAD_OK;
}

typedef struct scale_ctx {
    float *y;
    size_t n;
    float s;
    int threads;
} scale_ctx;

static void scale_chunk(void *p, size_t i0, size_t i1) {
    scale_ctx *c = p;
    float *restrict y = c->y;
    const float s = c->s;
    for (size_t i = i0; i < i1; i++) y[i] *= s;
}

/* y *= s in place: the simplest read-modify-write stream, the roofline an in-place kernel can
 * reach (memcpy streams to a second buffer with non-temporal stores; this does not). */
static road_status run_scale(void *p) {
    scale_ctx *c = p;
    run_chunks(c->n, c->threads, scale_chunk, c);
    return ROAD_OK;
}

typedef struct fwd_ctx {
    const road_rot *r;
    int64_t rows, ld;
    float *y; /* (R, D) */
} fwd_ctx;

static road_status run_forward(void *p) {
    fwd_ctx *c = p;
    return road_rot_forward(c->r, c->rows, c->y, c->ld);
}

typedef struct mixed_ctx {
    const road_rot *const *rots;
    int32_t n_rots;
    const int32_t *slot; /* (R) */
    int64_t rows, ld;
    float *y; /* (R, D) */
} mixed_ctx;

static road_status run_mixed(void *p) {
    mixed_ctx *c = p;
    return road_rot_forward_mixed(c->rots, c->n_rots, c->slot, c->rows, c->y, c->ld);
}

typedef struct gemm_ctx {
    int64_t rows, out, in;
    const float *x; /* (G, D) */
    const float *w; /* (D, D) */
    float *y;       /* (G, D) */
} gemm_ctx;

static road_status run_gemm(void *p) {
    gemm_ctx *c = p;
    road__sgemm_xwt(c->rows, c->out, c->in, c->x, c->w, NULL, c->y);
    return ROAD_OK;
}

typedef struct bwd_ctx {
    const road_rot *r;
    int64_t rows, ld;
    const float *x, *dy; /* (R, D) */
    float *dx;           /* (R, D) */
    float *dc1, *dc2;    /* (D), NULL to skip */
} bwd_ctx;

static road_status run_backward(void *p) {
    bwd_ctx *c = p;
    return road_rot_backward(c->r, c->rows, c->x, c->ld, c->dy, c->ld, c->dx, c->ld, c->dc1,
                             c->dc2);
}

/* ---- data --------------------------------------------------------------------------------- */

static void fill_uniform(road_rng *g, float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * road__rng_uniform(g));
}

/* Values that would make a timing measure the FPU's slow path (Inf, NaN, subnormals). */
static int64_t count_suspect(const float *x, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int c = fpclassify(x[i]);
        bad += c == FP_NAN || c == FP_INFINITE || c == FP_SUBNORMAL;
    }
    return bad;
}

static void warn_suspect(const char *where, const float *x, int64_t n) {
    int64_t bad = count_suspect(x, n);
    if (bad)
        printf("  WARNING: %s holds %lld Inf/NaN/subnormal values: its timings may be off\n",
               where, (long long)bad);
}

/* One adapter's coefficients: random (theta, alpha) of variant v through road_coeffs_compute. */
typedef struct bench_adapter {
    road_rot rot;
    float *c1, *c2; /* (D), carved from the arena */
} bench_adapter;

static road_status adapter_init(bench_adapter *a, road_variant v, int32_t group_size, int64_t dim,
                                uint64_t seed, float *theta, float *alpha) {
    road_rng g;
    road__rng_seed(&g, seed);
    int64_t n = road_param_count(v, dim);
    fill_uniform(&g, theta, n, -BENCH_THETA, BENCH_THETA);
    fill_uniform(&g, alpha, n, 1.0 - BENCH_ALPHA, 1.0 + BENCH_ALPHA);
    a->rot = (road_rot){dim, group_size, a->c1, a->c2};
    return road_coeffs_compute(v, group_size, dim, theta, alpha, a->c1, a->c2);
}

/* The arena: every buffer of the run, carved from one allocation. */
typedef struct bench_mem {
    void *base;
    float *a, *b, *c;        /* (max(R, D), D) each */
    float *gx, *gy;          /* (G, D): sgemm input and output */
    float *c1[BENCH_N_ADAPTERS], *c2[BENCH_N_ADAPTERS]; /* (D) */
    float *theta, *alpha;    /* (2 D): scratch for road_coeffs_compute */
    float *dc1, *dc2;        /* (D) */
    int32_t *slot;           /* (R) */
    size_t bytes;
} bench_mem;

/* The next `bytes` of the arena (64-byte aligned); with base == NULL only sizes are summed. */
static void *carve(char *base, size_t *off, size_t bytes) {
    void *p = base ? base + *off : NULL;
    *off += (bytes + ROAD_ALIGN - 1) / ROAD_ALIGN * ROAD_ALIGN;
    return p;
}

/* Two passes over one layout: sizing (base == NULL), then carving. */
static size_t mem_layout(bench_mem *m, const bench_sizes *z, char *base) {
    const size_t D = (size_t)z->dim, R = (size_t)z->rows, G = (size_t)z->gemm_rows;
    const size_t big = (R > D ? R : D) * D * sizeof(float), vec = D * sizeof(float);
    size_t off = 0;
    m->a = carve(base, &off, big);
    m->b = carve(base, &off, big);
    m->c = carve(base, &off, big);
    m->gx = carve(base, &off, G * D * sizeof(float));
    m->gy = carve(base, &off, G * D * sizeof(float));
    for (int i = 0; i < BENCH_N_ADAPTERS; i++) {
        m->c1[i] = carve(base, &off, vec);
        m->c2[i] = carve(base, &off, vec);
    }
    m->theta = carve(base, &off, 2 * vec);
    m->alpha = carve(base, &off, 2 * vec);
    m->dc1 = carve(base, &off, vec);
    m->dc2 = carve(base, &off, vec);
    m->slot = carve(base, &off, R * sizeof(int32_t));
    return off;
}

static road_status mem_alloc(bench_mem *m, const bench_sizes *z) {
    bench_mem dry;
    m->bytes = mem_layout(&dry, z, NULL);
    m->base = road__malloc(m->bytes);
    if (!m->base) return ROAD_ERR_NO_MEMORY;
    mem_layout(m, z, m->base);
    return ROAD_OK;
}

/* ---- results ------------------------------------------------------------------------------ */

#define BENCH_GROUPS 3
static const int32_t apply_groups[BENCH_GROUPS] = {64, 8, 2};
static const road_variant all_variants[3] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};
enum { SEC_APPLY, SEC_OVERHEAD, SEC_MIXED, SEC_MERGE, SEC_BACKWARD, SEC_COUNT };

/* Times in ms; ratios as the sections define them (medians of per-repetition ratios). */
typedef struct results {
    double memcpy1_gbps;
    double apply_ms[3][BENCH_GROUPS], apply_gbps[3][BENCH_GROUPS];
    double apply_memcpy_gbps[3][BENCH_GROUPS], apply_ratio[3][BENCH_GROUPS];
    double apply_scale_ratio[3][BENCH_GROUPS];
    double rot_iso_ms[3], sgemm_ms[3], rot_after_ms[3], overhead_pct[3];
    double single_ms, mixed_ms, mixed_ratio, nobase_ms, nobase_ratio, slot0_ms, slot0_ratio;
    double merge_ms, unmerge_ms, dense_ms, dense_build_ms, dense_gemm_ms;
    double fwd_ms, bwd_ms, bwd_ratio, bwd_dx_ms, bwd_dx_ratio;
    double others[SEC_COUNT]; /* cores used by other processes per section, -1 unknown */
} results;

static double ms(timing t) {
    return 1e3 * t.median;
}

static const char *verdict(bool met) {
    return met ? "met" : "MISSED";
}

/* ---- [1] apply vs memcpy ------------------------------------------------------------------ */

static road_status bench_apply(const bench_sizes *z, bench_mem *m, int threads, results *res) {
    const int64_t R = z->rows, D = z->dim, n = R * D;
    const size_t bytes = (size_t)n * sizeof(float);
    const double moved = 2.0 * (double)bytes; /* read + write */
    road_rng g;
    road__rng_seed(&g, 1);
    fill_uniform(&g, m->a, n, -1.0, 1.0);
    memset(m->b, 0, bytes); /* fault the destination in before timing */
    printf("\n[1] forward apply in place, %lld x %lld f32 (%.0f MiB read + %.0f MiB written per "
           "call)\n",
           (long long)R, (long long)D, (double)bytes / 1048576.0, (double)bytes / 1048576.0);
    timing t;
    copy_ctx c1 = {m->b, m->a, bytes, 1}, cn = {m->b, m->a, bytes, threads};
    road_status s = time_fn(run_memcpy, &c1, z->warmup, z->reps, &t);
    if (s != ROAD_OK) return s;
    res->memcpy1_gbps = moved / t.median / 1e9;
    printf("  memcpy with 1 thread: %.2f GB/s (for reference). Each row alternates the apply "
           "with a %d-thread\n  memcpy of the same buffer (vs memcpy = median of t_memcpy / "
           "t_apply), then with y *= s in place\n  (vs y*=s: the in-place streaming roofline, "
           "same traffic pattern as the apply).\n",
           res->memcpy1_gbps, threads);
    printf("  %-8s %4s %8s %8s %12s %10s %10s %8s\n", "variant", "g", "ms", "GB/s", "memcpy GB/s",
           "vs memcpy", "vs y*=s", "target");
    scale_ctx sc = {m->a, (size_t)n, 1.0f, threads};
    for (int v = 0; v < 3; v++) {
        for (int gi = 0; gi < BENCH_GROUPS; gi++) {
            bench_adapter ad = {.c1 = m->c1[0], .c2 = m->c2[0]};
            s = adapter_init(&ad, all_variants[v], apply_groups[gi], D, 100 + (uint64_t)v,
                             m->theta, m->alpha);
            if (s != ROAD_OK) return s;
            fill_uniform(&g, m->a, n, -1.0, 1.0);
            fwd_ctx fc = {&ad.rot, R, D, m->a};
            pair_timing p, q;
            s = time_pair(run_memcpy, &cn, run_forward, &fc, z->warmup, z->reps, &p);
            if (s == ROAD_OK) s = time_pair(run_scale, &sc, run_forward, &fc, 0, z->reps, &q);
            if (s != ROAD_OK) return s;
            warn_suspect("the apply buffer", m->a, n);
            double ratio = 1.0 / p.ratio;
            res->apply_ms[v][gi] = ms(p.b);
            res->apply_gbps[v][gi] = moved / p.b.median / 1e9;
            res->apply_memcpy_gbps[v][gi] = moved / p.a.median / 1e9;
            res->apply_ratio[v][gi] = ratio;
            res->apply_scale_ratio[v][gi] = 1.0 / q.ratio;
            printf("  %-8s %4d %8.2f %8.2f %12.2f %10.3f %10.3f %8s\n",
                   road_variant_name(all_variants[v]), (int)apply_groups[gi], ms(p.b),
                   res->apply_gbps[v][gi], res->apply_memcpy_gbps[v][gi], ratio,
                   res->apply_scale_ratio[v][gi],
                   apply_groups[gi] == 64 ? verdict(ratio >= TARGET_APPLY_VS_MEMCPY) : "");
        }
    }
    return ROAD_OK;
}

/* ---- [2] overhead over the base linear's sgemm ------------------------------------------- */

static road_status bench_overhead(const bench_sizes *z, bench_mem *m, results *res) {
    const int64_t G = z->gemm_rows, D = z->dim;
    road_rng g;
    road__rng_seed(&g, 2);
    const double wscale = 1.0 / sqrt((double)D); /* keeps y = x W^T of order 1 */
    fill_uniform(&g, m->a, D * D, -wscale, wscale);
    fill_uniform(&g, m->gx, G * D, -1.0, 1.0);
    fill_uniform(&g, m->gy, G * D, -1.0, 1.0);
    printf("\n[2] RoAd after the base linear: y = x W^T (x %lld x %lld, W %lld x %lld), then "
           "road_rot_forward on y (g = %d)\n",
           (long long)G, (long long)D, (long long)D, (long long)D, ROAD_DEFAULT_GROUP_SIZE);
    bench_adapter ad[3];
    for (int v = 0; v < 3; v++) {
        ad[v] = (bench_adapter){.c1 = m->c1[v], .c2 = m->c2[v]};
        road_status s = adapter_init(&ad[v], all_variants[v], ROAD_DEFAULT_GROUP_SIZE, D,
                                     200 + (uint64_t)v, m->theta, m->alpha);
        if (s != ROAD_OK) return s;
    }
    /* The rotation in isolation first: OpenBLAS's workers keep spinning for a while after an
     * sgemm returns, so timing it later would measure that contention, not the kernel. */
    for (int v = 0; v < 3; v++) {
        fwd_ctx fc = {&ad[v].rot, G, D, m->gy};
        timing t;
        road_status s = time_fn(run_forward, &fc, z->warmup, z->rot_reps, &t);
        if (s != ROAD_OK) return s;
        res->rot_iso_ms[v] = ms(t);
    }
    warn_suspect("the sgemm output", m->gy, G * D);
    /* Then as in a forward pass: each sgemm immediately followed by the rotation of its output
     * (hot in cache). overhead = median of t_rot / t_sgemm over the pairs. */
    printf("  %-8s %11s %14s %11s %12s %8s\n", "variant", "sgemm ms", "rot after, ms",
           "overhead %", "rot alone ms", "target");
    gemm_ctx gc = {G, D, D, m->gx, m->a, m->gy};
    for (int v = 0; v < 3; v++) {
        fwd_ctx fc = {&ad[v].rot, G, D, m->gy};
        pair_timing p;
        road_status s = time_pair(run_gemm, &gc, run_forward, &fc, 1, z->gemm_reps, &p);
        if (s != ROAD_OK) return s;
        res->sgemm_ms[v] = ms(p.a);
        res->rot_after_ms[v] = ms(p.b);
        res->overhead_pct[v] = 100.0 * p.ratio;
        printf("  %-8s %11.2f %14.4f %11.3f %12.4f %8s\n", road_variant_name(all_variants[v]),
               res->sgemm_ms[v], res->rot_after_ms[v], res->overhead_pct[v], res->rot_iso_ms[v],
               verdict(res->overhead_pct[v] < TARGET_OVERHEAD_PCT));
    }
    printf("  sgemm runs at %.1f GFLOP/s; overhead %% = median of t_rot / t_sgemm over the pairs\n",
           2.0 * (double)G * (double)D * (double)D / (res->sgemm_ms[0] * 1e-3) / 1e9);
    return ROAD_OK;
}

/* ---- [3] mixed batch ---------------------------------------------------------------------- */

static void fill_slots(int32_t *slot, int64_t rows, const int32_t *pattern, size_t n_pattern) {
    for (int64_t i = 0; i < rows; i++)
        slot[i] = pattern[(size_t)(i / BENCH_MIXED_BLOCK) % n_pattern];
}

static road_status bench_mixed(const bench_sizes *z, bench_mem *m, results *res) {
    const int64_t R = z->rows, D = z->dim, n = R * D;
    /* Mixed variants, one group size: the variant only changes how c1/c2 are built, so the
     * kernel work per row is the single-adapter case's. */
    static const road_variant kinds[BENCH_N_ADAPTERS] = {ROAD_VARIANT_1, ROAD_VARIANT_2,
                                                         ROAD_VARIANT_4, ROAD_VARIANT_2};
    static const int32_t only_a[] = {0};
    static const struct {
        const char *label;
        const int32_t *pattern;
        size_t n;
    } cases[3] = {
        {"4 adapters + __base__ (1 block in 5)", mixed_pattern,
         sizeof mixed_pattern / sizeof mixed_pattern[0]},
        {"4 adapters, no __base__ rows", mixed_pattern_nobase,
         sizeof mixed_pattern_nobase / sizeof mixed_pattern_nobase[0]},
        {"adapter a on every row, mixed entry", only_a, 1},
    };
    bench_adapter ad[BENCH_N_ADAPTERS];
    const road_rot *rots[BENCH_N_ADAPTERS];
    for (int i = 0; i < BENCH_N_ADAPTERS; i++) {
        ad[i] = (bench_adapter){.c1 = m->c1[i], .c2 = m->c2[i]};
        road_status s = adapter_init(&ad[i], kinds[i], ROAD_DEFAULT_GROUP_SIZE, D,
                                     300 + (uint64_t)i, m->theta, m->alpha);
        if (s != ROAD_OK) return s;
        rots[i] = &ad[i].rot;
    }
    road_rng g;
    road__rng_seed(&g, 3);
    fill_uniform(&g, m->a, n, -1.0, 1.0);
    printf("\n[3] mixed batch (road_rot_forward_mixed), %lld x %lld, blocks of %d rows cycling "
           "a, b, __base__, c, d\n    (road_1, road_2, road_4, road_2; g = %d) vs adapter a on "
           "every row (road_rot_forward), alternated\n",
           (long long)R, (long long)D, BENCH_MIXED_BLOCK, ROAD_DEFAULT_GROUP_SIZE);
    printf("  %-40s %10s %9s %10s %8s\n", "", "single ms", "mixed ms", "vs single", "target");
    fwd_ctx fc = {rots[0], R, D, m->a};
    mixed_ctx mc = {rots, BENCH_N_ADAPTERS, m->slot, R, D, m->a};
    double *ms_out[3] = {&res->mixed_ms, &res->nobase_ms, &res->slot0_ms};
    double *ratio_out[3] = {&res->mixed_ratio, &res->nobase_ratio, &res->slot0_ratio};
    for (int c = 0; c < 3; c++) {
        fill_slots(m->slot, R, cases[c].pattern, cases[c].n);
        pair_timing p;
        road_status s = time_pair(run_forward, &fc, run_mixed, &mc, z->warmup, z->reps, &p);
        if (s != ROAD_OK) return s;
        if (c == 0) res->single_ms = ms(p.a);
        *ms_out[c] = ms(p.b);
        *ratio_out[c] = p.ratio;
        printf("  %-40s %10.2f %9.2f %10.3f %8s\n", cases[c].label, ms(p.a), ms(p.b), p.ratio,
               c == 0 ? verdict(p.ratio <= TARGET_MIXED_RATIO) : "");
    }
    warn_suspect("the mixed buffer", m->a, n);
    return ROAD_OK;
}

/* ---- [4] merge / unmerge vs dense ---------------------------------------------------------- */

static road_status bench_merge(const bench_sizes *z, bench_mem *m, results *res) {
    const int64_t D = z->dim;
    float *w = m->a, *dense = m->b, *merged = m->c; /* (D, D) each */
    bench_adapter ad = {.c1 = m->c1[0], .c2 = m->c2[0]};
    road_status s = adapter_init(&ad, ROAD_VARIANT_2, ROAD_DEFAULT_GROUP_SIZE, D, 400, m->theta,
                                 m->alpha);
    if (s != ROAD_OK) return s;
    road_rng g;
    road__rng_seed(&g, 4);
    fill_uniform(&g, w, D * D, -0.05, 0.05);
    memset(merged, 0, (size_t)(D * D) * sizeof(float));
    printf("\n[4] merge / unmerge of a %lld x %lld layer (road_2, g = %d)\n", (long long)D,
           (long long)D, ROAD_DEFAULT_GROUP_SIZE);

    /* Ours, in place; merge and unmerge alternate so W stays where it started. */
    double tm[BENCH_MAX_REPS], tu[BENCH_MAX_REPS];
    const int reps = clamp_reps(z->reps);
    for (int i = -z->warmup; i < reps; i++) {
        double t0 = now_s();
        s = road_rot_merge(&ad.rot, D, w, D, NULL);
        double t1 = now_s();
        if (s == ROAD_OK) s = road_rot_unmerge(&ad.rot, D, w, D, NULL);
        double t2 = now_s();
        if (s != ROAD_OK) return s;
        if (i >= 0) {
            tm[i] = t1 - t0;
            tu[i] = t2 - t1;
        }
    }
    res->merge_ms = ms(summarize(tm, reps));
    res->unmerge_ms = ms(summarize(tu, reps));

    /* PEFT: R = _get_delta_weight() (dense, out x out), then R @ W into a new tensor. The
     * speedups (a factor of ~100) dwarf the noise, so the dense runs are not interleaved. */
    double tb[BENCH_MAX_REPS], tg[BENCH_MAX_REPS], tt[BENCH_MAX_REPS];
    const int dreps = clamp_reps(z->dense_reps);
    for (int i = -1; i < dreps; i++) {
        double t0 = now_s();
        s = road_rot_dense(&ad.rot, dense);
        double t1 = now_s();
        if (s != ROAD_OK) return s;
        road__sgemm(false, false, D, D, D, 1.0f, dense, D, w, D, 0.0f, merged, D);
        double t2 = now_s();
        if (i >= 0) {
            tb[i] = t1 - t0;
            tg[i] = t2 - t1;
            tt[i] = t2 - t0;
        }
    }
    res->dense_build_ms = ms(summarize(tb, dreps));
    res->dense_gemm_ms = ms(summarize(tg, dreps));
    res->dense_ms = ms(summarize(tt, dreps));
    double sp_m = res->dense_ms / res->merge_ms, sp_u = res->dense_ms / res->unmerge_ms;
    printf("  %-46s %10s %10s %8s\n", "", "ms", "speedup", "target");
    printf("  %-46s %10.2f %10s\n", "dense (PEFT): build R + sgemm R @ W (baseline)",
           res->dense_ms, "1");
    printf("  %-46s %10.2f\n", "  of which build R (road_rot_dense)", res->dense_build_ms);
    printf("  %-46s %10.2f\n", "  of which sgemm R @ W", res->dense_gemm_ms);
    printf("  %-46s %10.2f %10.1f %8s\n", "road_rot_merge", res->merge_ms, sp_m,
           verdict(sp_m >= TARGET_MERGE_SPEEDUP));
    printf("  %-46s %10.2f %10.1f %8s\n", "road_rot_unmerge (vs dense, a lower bound *)",
           res->unmerge_ms, sp_u, verdict(sp_u >= TARGET_MERGE_SPEEDUP));
    printf("  * PEFT's unmerge also inverts R densely (LU, O(D^3)); not modelled here, so the "
           "true speedup is larger.\n");
    warn_suspect("the weight", w, D * D);
    return ROAD_OK;
}

/* ---- [5] backward vs forward -------------------------------------------------------------- */

static road_status bench_backward(const bench_sizes *z, bench_mem *m, results *res) {
    const int64_t R = z->rows, D = z->dim, n = R * D;
    const double bytes = (double)n * sizeof(float);
    bench_adapter ad = {.c1 = m->c1[0], .c2 = m->c2[0]};
    road_status s = adapter_init(&ad, ROAD_VARIANT_2, ROAD_DEFAULT_GROUP_SIZE, D, 500, m->theta,
                                 m->alpha);
    if (s != ROAD_OK) return s;
    road_rng g;
    road__rng_seed(&g, 5);
    float *x = m->a, *dy = m->b, *dx = m->c, *y = m->b; /* y: the forward's buffer (see below) */
    fill_uniform(&g, x, n, -1.0, 1.0);
    fill_uniform(&g, dx, n, -1.0, 1.0);
    memset(m->dc1, 0, (size_t)D * sizeof(float));
    memset(m->dc2, 0, (size_t)D * sizeof(float));
    printf("\n[5] backward vs forward, %lld x %lld (road_2, g = %d), each alternated with the "
           "forward\n",
           (long long)R, (long long)D, ROAD_DEFAULT_GROUP_SIZE);
    printf("  %-48s %9s %9s %10s\n", "", "ms", "GB/s", "vs fwd");
    /* The forward rotates dy in place between backward calls: dy stays a random-looking
     * gradient (R is near a rotation) and the three 64 MiB buffers are all that is needed. */
    fill_uniform(&g, dy, n, -1.0, 1.0);
    fwd_ctx fc = {&ad.rot, R, D, y};
    bwd_ctx bc = {&ad.rot, R, D, x, dy, dx, m->dc1, m->dc2};
    pair_timing full, dxo;
    s = time_pair(run_forward, &fc, run_backward, &bc, z->warmup, z->reps, &full);
    if (s != ROAD_OK) return s;
    bc.dc1 = bc.dc2 = NULL;
    s = time_pair(run_forward, &fc, run_backward, &bc, z->warmup, z->reps, &dxo);
    if (s != ROAD_OK) return s;
    warn_suspect("the forward buffer", y, n);
    res->fwd_ms = ms(full.a);
    res->bwd_ms = ms(full.b);
    res->bwd_ratio = full.ratio;
    res->bwd_dx_ms = ms(dxo.b);
    res->bwd_dx_ratio = dxo.ratio;
    printf("  %-48s %9.2f %9.2f %10s\n", "forward, in place (reads y, writes y)", res->fwd_ms,
           2.0 * bytes / full.a.median / 1e9, "1");
    printf("  %-48s %9.2f %9.2f %10.3f\n", "backward, dx + dc1/dc2 (reads x, dy; writes dx)",
           res->bwd_ms, 3.0 * bytes / full.b.median / 1e9, res->bwd_ratio);
    printf("  %-48s %9.2f %9.2f %10.3f\n", "backward, dx only (reads dy; writes dx)",
           res->bwd_dx_ms, 2.0 * bytes / dxo.b.median / 1e9, res->bwd_dx_ratio);
    return ROAD_OK;
}

/* ---- machine, summary and JSON ------------------------------------------------------------- */

static void read_cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(buf, n, "%s", v);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(f);
}

static int online_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Numbers in the JSON keep 4 significant digits (the noise is larger than that). */
static double sig4(double x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.4g", x);
    return strtod(buf, NULL);
}

static void add_num(cJSON *o, const char *k, double v) {
    cJSON_AddNumberToObject(o, k, sig4(v));
}

static const char *const section_names[SEC_COUNT] = {"apply", "overhead", "mixed", "merge",
                                                     "backward"};

typedef struct run_info {
    const bench_opts *opts;
    const bench_sizes *sizes;
    const char *cpu, *kernel;
    int threads;
    int64_t live_bytes;
} run_info;

static char *results_json(const run_info *ri, const results *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "bench", "road");
    cJSON_AddStringToObject(root, "version", road_version());
    cJSON_AddBoolToObject(root, "quick", ri->opts->quick);
    cJSON *mach = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(mach, "cpu", ri->cpu);
    cJSON_AddNumberToObject(mach, "cores", online_cores());
    cJSON_AddNumberToObject(mach, "threads", ri->threads);
    cJSON_AddStringToObject(mach, "kernel", ri->kernel);
    cJSON_AddStringToObject(mach, "kernel_requested", road_kernel_name(ri->opts->kernel));
    cJSON_AddStringToObject(mach, "openblas", openblas_get_config());
    cJSON_AddStringToObject(mach, "openblas_core", openblas_get_corename());
    cJSON *sz = cJSON_AddObjectToObject(root, "sizes");
    cJSON_AddNumberToObject(sz, "rows", (double)ri->sizes->rows);
    cJSON_AddNumberToObject(sz, "dim", (double)ri->sizes->dim);
    cJSON_AddNumberToObject(sz, "gemm_rows", (double)ri->sizes->gemm_rows);
    cJSON_AddNumberToObject(sz, "warmup", ri->sizes->warmup);
    cJSON_AddNumberToObject(sz, "reps", ri->sizes->reps);
    cJSON *ot = cJSON_AddObjectToObject(root, "other_load_cores");
    for (int i = 0; i < SEC_COUNT; i++) add_num(ot, section_names[i], r->others[i]);

    cJSON *ap = cJSON_AddObjectToObject(root, "apply");
    add_num(ap, "memcpy_1t_GBps", r->memcpy1_gbps);
    cJSON *rows = cJSON_AddArrayToObject(ap, "rows");
    for (int v = 0; v < 3; v++) {
        for (int gi = 0; gi < BENCH_GROUPS; gi++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "variant", road_variant_name(all_variants[v]));
            cJSON_AddNumberToObject(e, "group_size", apply_groups[gi]);
            add_num(e, "ms", r->apply_ms[v][gi]);
            add_num(e, "GBps", r->apply_gbps[v][gi]);
            add_num(e, "memcpy_GBps", r->apply_memcpy_gbps[v][gi]);
            add_num(e, "ratio_vs_memcpy", r->apply_ratio[v][gi]);
            add_num(e, "ratio_vs_inplace_scale", r->apply_scale_ratio[v][gi]);
            cJSON_AddItemToArray(rows, e);
        }
    }
    cJSON *ov = cJSON_AddObjectToObject(root, "overhead");
    rows = cJSON_AddArrayToObject(ov, "rows");
    for (int v = 0; v < 3; v++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "variant", road_variant_name(all_variants[v]));
        add_num(e, "sgemm_ms", r->sgemm_ms[v]);
        add_num(e, "rot_after_sgemm_ms", r->rot_after_ms[v]);
        add_num(e, "overhead_pct", r->overhead_pct[v]);
        add_num(e, "rot_alone_ms", r->rot_iso_ms[v]);
        add_num(e, "overhead_alone_pct", 100.0 * r->rot_iso_ms[v] / r->sgemm_ms[v]);
        cJSON_AddItemToArray(rows, e);
    }
    cJSON *mx = cJSON_AddObjectToObject(root, "mixed");
    add_num(mx, "single_ms", r->single_ms);
    add_num(mx, "mixed_ms", r->mixed_ms);
    add_num(mx, "ratio", r->mixed_ratio);
    add_num(mx, "nobase_ms", r->nobase_ms);
    add_num(mx, "ratio_nobase", r->nobase_ratio);
    add_num(mx, "one_adapter_mixed_ms", r->slot0_ms);
    add_num(mx, "ratio_one_adapter_mixed", r->slot0_ratio);
    cJSON *mg = cJSON_AddObjectToObject(root, "merge");
    add_num(mg, "merge_ms", r->merge_ms);
    add_num(mg, "unmerge_ms", r->unmerge_ms);
    add_num(mg, "dense_ms", r->dense_ms);
    add_num(mg, "dense_build_ms", r->dense_build_ms);
    add_num(mg, "dense_sgemm_ms", r->dense_gemm_ms);
    add_num(mg, "speedup_merge", r->dense_ms / r->merge_ms);
    add_num(mg, "speedup_unmerge_lower_bound", r->dense_ms / r->unmerge_ms);
    cJSON *bw = cJSON_AddObjectToObject(root, "backward");
    add_num(bw, "forward_ms", r->fwd_ms);
    add_num(bw, "backward_ms", r->bwd_ms);
    add_num(bw, "ratio", r->bwd_ratio);
    add_num(bw, "backward_dx_only_ms", r->bwd_dx_ms);
    add_num(bw, "ratio_dx_only", r->bwd_dx_ratio);
    cJSON_AddNumberToObject(root, "live_bytes_at_exit", (double)ri->live_bytes);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void print_summary(const results *r) {
    double worst_apply = INFINITY, worst_ov = 0.0;
    for (int v = 0; v < 3; v++) {
        if (r->apply_ratio[v][0] < worst_apply) worst_apply = r->apply_ratio[v][0]; /* g 64 */
        if (r->overhead_pct[v] > worst_ov) worst_ov = r->overhead_pct[v];
    }
    double sp_m = r->dense_ms / r->merge_ms, sp_u = r->dense_ms / r->unmerge_ms;
    printf("\nsummary (worst variant where there are several)\n");
    printf("  %-44s %10s %10s %8s\n", "figure", "measured", "target", "");
    printf("  %-44s %10.3f %10s %8s\n", "[1] apply GB/s / memcpy GB/s, g = 64", worst_apply,
           ">= 0.8", verdict(worst_apply >= TARGET_APPLY_VS_MEMCPY));
    printf("  %-44s %10.3f %10s %8s\n", "[2] t_rot / t_sgemm, %", worst_ov, "< 2",
           verdict(worst_ov < TARGET_OVERHEAD_PCT));
    printf("  %-44s %10.3f %10s %8s\n", "[3] mixed / single time", r->mixed_ratio, "<= 1.1",
           verdict(r->mixed_ratio <= TARGET_MIXED_RATIO));
    printf("  %-44s %10.1f %10s %8s\n", "[4] merge speedup, dense / ours", sp_m, ">= 100",
           verdict(sp_m >= TARGET_MERGE_SPEEDUP));
    printf("  %-44s %10.1f %10s %8s\n", "[4] unmerge speedup (lower bound)", sp_u, ">= 100",
           verdict(sp_u >= TARGET_MERGE_SPEEDUP));
    printf("  %-44s %10.3f %10s\n", "[5] backward / forward time", r->bwd_ratio, "-");
    double worst_load = 0.0;
    for (int i = 0; i < SEC_COUNT; i++)
        if (r->others[i] > worst_load) worst_load = r->others[i];
    if (worst_load >= BENCH_CONTENDED_CORES)
        printf("  NOTE: other processes used up to %.2f cores during the run (see the sections "
               "marked NOTE)\n",
               worst_load);
}

/* ---- main --------------------------------------------------------------------------------- */

typedef road_status (*section_fn)(const bench_sizes *z, bench_mem *m, results *res);

static road_status run_all(const bench_sizes *z, bench_mem *m, int threads, results *res) {
    static const section_fn later[SEC_COUNT - 1] = {bench_overhead, bench_mixed, bench_merge,
                                                    bench_backward};
    load_mark t0 = load_now();
    road_status s = bench_apply(z, m, threads, res);
    res->others[SEC_APPLY] = section_end(t0);
    for (int i = 0; s == ROAD_OK && i < SEC_COUNT - 1; i++) {
        t0 = load_now();
        s = later[i](z, m, res);
        res->others[i + 1] = section_end(t0);
    }
    return s;
}

int main(int argc, char **argv) {
    bench_opts o;
    int pa = parse_args(argc, argv, &o);
    if (pa != 0) return pa > 0 ? 0 : 2;

    road_set_num_threads(o.threads);
    const int threads = road_get_num_threads();
    if (road_kernel_select(o.kernel) != ROAD_OK) {
        fprintf(stderr, "bench_road: %s\n", road_last_error());
        return 1;
    }
    const char *kernel =
        road_kernel_name(o.kernel == ROAD_KERNEL_AUTO ? road_kernel_active() : o.kernel);

    bench_sizes z;
    if (o.quick)
        z = (bench_sizes){BENCH_QUICK_ROWS, BENCH_QUICK_DIM, BENCH_QUICK_GEMM_ROWS,
                          BENCH_QUICK_WARMUP, BENCH_QUICK_REPS, BENCH_QUICK_REPS,
                          BENCH_QUICK_REPS, 1};
    else
        z = (bench_sizes){BENCH_FULL_ROWS,   BENCH_FULL_DIM,       BENCH_FULL_GEMM_ROWS,
                          BENCH_FULL_WARMUP, BENCH_FULL_REPS,      BENCH_FULL_ROT_REPS,
                          BENCH_FULL_GEMM_REPS, BENCH_FULL_DENSE_REPS};

    char cpu[256];
    read_cpu_model(cpu, sizeof cpu);
    printf("road benchmark %s%s\n", road_version(),
           o.quick ? "  (--quick: smoke run, figures not representative)" : "");
    printf("  cpu       %s, %d cores online\n", cpu, online_cores());
    printf("  threads   %d (road_set_num_threads: OpenMP and OpenBLAS)\n", threads);
    printf("  kernel    %s (requested %s)\n", kernel, road_kernel_name(o.kernel));
    printf("  OpenBLAS  %s (core %s)\n", openblas_get_config(), openblas_get_corename());
    printf("  timing    median of %d after %d warm-up (CLOCK_MONOTONIC)\n", z.reps, z.warmup);

    bench_mem m;
    if (mem_alloc(&m, &z) != ROAD_OK) {
        fprintf(stderr, "bench_road: %s\n", road_last_error());
        return 1;
    }
    printf("  memory    %.0f MiB in one arena\n", (double)m.bytes / 1048576.0);

    results res;
    memset(&res, 0, sizeof res);
    road_status s = run_all(&z, &m, threads, &res);
    road__free(m.base);
    if (s != ROAD_OK) {
        fprintf(stderr, "bench_road: %s: %s\n", road_status_name(s), road_last_error());
        return 1;
    }
    print_summary(&res);

    run_info ri = {&o, &z, cpu, kernel, threads, road__alloc_live_bytes()};
    char *json = results_json(&ri, &res);
    if (!json) {
        fprintf(stderr, "bench_road: out of memory formatting the JSON\n");
        return 1;
    }
    int rc = 0;
    if (o.json_path) {
        FILE *f = fopen(o.json_path, "w");
        bool ok = f && fprintf(f, "%s\n", json) >= 0;
        if (f && fclose(f) != 0) ok = false;
        if (!ok) {
            fprintf(stderr, "bench_road: cannot write %s\n", o.json_path);
            rc = 1;
        }
    }
    printf("  live bytes after freeing the arena: %lld\n", (long long)ri.live_bytes);
    printf("%s\n", json);
    cJSON_free(json);
    return rc;
}
