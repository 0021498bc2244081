/*
 * bench/bench_tokenizer.c - encode throughput (MB/s) of road's tokenizer on the fixture
 * tokenizers, on the same mixed text tools/tokref/bench.js feeds Hugging Face's `tokenizers`
 * (run both in the same session and compare; bench/run.sh style: nothing asserted on timings).
 *
 * Text: the corpus cases of tests/fixtures/tokenizers/ref_<name>.json (code, prose in many
 * scripts, emoji, whitespace runs, special tokens), joined by "\n" into documents of at least
 * DOC_BYTES, repeated until TOTAL_BYTES; each document is one encode call.
 *
 * Load time: each tokenizer.json is loaded LOAD_RUNS times (read, parse, tables, free) and the
 * best and median are printed; Gemma 3's file (262,144 tokens, 515K merges, 33 MB) is the
 * largest a listed family ships.
 *
 * usage: bench_tokenizer [FIXTURES_DIR] [REPEATS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "road/tokenizer.h"

#define DOC_BYTES 16384          /* a long prompt or a short document per call */
#define TOTAL_BYTES (4u << 20)   /* "a few MB" */
#define LOAD_RUNS 5              /* loads per file for the load-time columns */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[n] = '\0', *len = (size_t)n;
    return b;
}

/* The documents: offsets into one buffer. */
typedef struct docs {
    char *text;
    size_t len, n, *off, *dlen;
} docs;

static int build_docs(const char *ref_path, docs *d) {
    size_t jl;
    char *js = read_file(ref_path, &jl);
    if (!js) return -1;
    cJSON *ref = cJSON_Parse(js);
    free(js);
    if (!ref) return -1;
    const cJSON *cases = cJSON_GetObjectItem(ref, "cases");
    d->text = malloc(TOTAL_BYTES + 2 * DOC_BYTES + 65536);
    d->off = malloc(sizeof(size_t) * (TOTAL_BYTES / DOC_BYTES + 2));
    d->dlen = malloc(sizeof(size_t) * (TOTAL_BYTES / DOC_BYTES + 2));
    d->len = d->n = 0;
    size_t doc_start = 0;
    while (d->len < TOTAL_BYTES) {
        for (const cJSON *c = cases->child; c && d->len < TOTAL_BYTES; c = c->next) {
            const char *hex = cJSON_GetObjectItem(c, "hex")->valuestring;
            size_t n = strlen(hex) / 2;
            if (d->len > doc_start) d->text[d->len++] = '\n';
            for (size_t i = 0; i < n; i++) {
                unsigned v;
                sscanf(hex + 2 * i, "%2x", &v);
                d->text[d->len++] = (char)v;
            }
            if (d->len - doc_start >= DOC_BYTES) {
                d->off[d->n] = doc_start, d->dlen[d->n++] = d->len - doc_start;
                doc_start = d->len;
            }
        }
    }
    if (d->len > doc_start) d->off[d->n] = doc_start, d->dlen[d->n++] = d->len - doc_start;
    cJSON_Delete(ref);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/tokenizers";
    int repeats = argc > 2 ? atoi(argv[2]) : 3;
    const char *names[] = {"llama3", "qwen3", "llama2", "gemma3", "gpt4o"};
    enum { N_NAMES = sizeof names / sizeof names[0] };
    printf("%-8s %10s %10s %12s %10s %16s\n", "model", "MB", "docs", "tokens", "MB/s",
           "load best/median");
    for (int k = 0; k < N_NAMES; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        road_tokenizer *t = NULL;
        double loads[LOAD_RUNS];
        for (int r = 0; r < LOAD_RUNS; r++) {
            road_tokenizer_free(t);
            t = NULL;
            double t0 = now();
            if (road_tokenizer_load(path, &t) != ROAD_OK) {
                fprintf(stderr, "cannot load %s: %s\n", path, road_last_error());
                return 1;
            }
            loads[r] = now() - t0;
        }
        qsort(loads, LOAD_RUNS, sizeof loads[0], cmp_double);
        snprintf(path, sizeof path, "%s/ref_%s.json", dir, names[k]);
        docs d;
        if (build_docs(path, &d) != 0) {
            fprintf(stderr, "cannot read %s\n", path);
            return 1;
        }
        size_t cap = road_tokenizer_max_tokens(t, DOC_BYTES * 2 + 65536);
        int32_t *ids = malloc(cap * sizeof *ids);
        double best = 1e30;
        size_t total = 0;
        for (int r = 0; r < repeats; r++) {
            total = 0;
            double s0 = now();
            for (size_t i = 0; i < d.n; i++) {
                size_t n = 0;
                if (road_tokenizer_encode(t, d.text + d.off[i], d.dlen[i], false, ids, cap, &n) !=
                    ROAD_OK) {
                    fprintf(stderr, "encode failed: %s\n", road_last_error());
                    return 1;
                }
                total += n;
            }
            double e = now() - s0;
            if (e < best) best = e;
        }
        printf("%-8s %10.2f %10zu %12zu %10.2f %7.3f/%.3f s\n", names[k], (double)d.len / 1e6,
               d.n, total, (double)d.len / 1e6 / best, loads[0], loads[LOAD_RUNS / 2]);
        free(ids);
        free(d.text);
        free(d.off);
        free(d.dlen);
        road_tokenizer_free(t);
    }
    return 0;
}
