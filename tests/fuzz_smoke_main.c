/*
 * tests/fuzz_smoke_main.c - runs a libFuzzer target (fuzz/fuzz_<name>.c) without libFuzzer, as
 * a short smoke test inside ctest: every seed in fuzz/corpus/<name>/, then a fixed number of
 * deterministic mutations of them (bit flips, byte changes, truncations, insertions, splices of
 * two seeds). Built with the normal compiler, so it runs everywhere the tests run; under
 * -DROAD_SANITIZE=ON the sanitizers watch it. Real fuzzing: see fuzz/README.md.
 *
 * usage: fuzz_smoke_<name> CORPUS_DIR [ITERATIONS]
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SEEDS 256
#define MAX_INPUT (1 << 20)

typedef struct seed {
    uint8_t *data;
    size_t size;
} seed;

static uint64_t rng_state = 0x5eed5eedULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int load(const char *path, seed *s) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > MAX_INPUT) {
        fclose(f);
        return -1;
    }
    s->data = malloc((size_t)n + 1);
    s->size = s->data ? fread(s->data, 1, (size_t)n, f) : 0;
    fclose(f);
    return s->data ? 0 : -1;
}

/* One input: the target gets its own heap copy, exactly sized, so ASan sees over-reads. */
static void run(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) exit(2);
    memcpy(copy, data, size);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [ITERATIONS]\n", argv[0]);
        return 2;
    }
    long iters = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    seed seeds[MAX_SEEDS];
    int n = 0;
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "cannot open corpus folder %s\n", argv[1]);
        return 2;
    }
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL && n < MAX_SEEDS) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        if (load(path, &seeds[n]) == 0) n++;
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "no seeds in %s\n", argv[1]);
        return 2;
    }
    run((const uint8_t *)"", 0);
    for (int i = 0; i < n; i++) run(seeds[i].data, seeds[i].size);
    uint8_t *buf = malloc(2 * MAX_INPUT + 16);
    if (!buf) return 2;
    for (long it = 0; it < iters; it++) {
        const seed *s = &seeds[rnd() % (uint64_t)n];
        size_t len = s->size;
        memcpy(buf, s->data, len);
        int muts = 1 + (int)(rnd() % 4);
        for (int m = 0; m < muts; m++) {
            uint64_t r = rnd();
            size_t pos = len ? (size_t)(rnd() % len) : 0;
            switch (r % 6) {
            case 0: if (len) buf[pos] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: if (len) buf[pos] = (uint8_t)rnd(); break;
            case 2: len = pos; break; /* truncate */
            case 3: /* insert a byte */
                if (len < 2 * MAX_INPUT) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = "{}[]\",:0123456789-eE \\u"[rnd() % 24];
                    len++;
                }
                break;
            case 4: if (len) buf[pos] = (uint8_t)"0123456789"[rnd() % 10]; break;
            default: { /* splice the tail of another seed */
                const seed *o = &seeds[rnd() % (uint64_t)n];
                size_t from = o->size ? (size_t)(rnd() % o->size) : 0;
                size_t add = o->size - from;
                if (pos + add <= 2 * MAX_INPUT) {
                    memcpy(buf + pos, o->data + from, add);
                    len = pos + add;
                }
            }
            }
        }
        run(buf, len);
    }
    free(buf);
    for (int i = 0; i < n; i++) free(seeds[i].data);
    printf("%d seeds and %ld mutations ran without a crash\n", n, iters);
    return 0;
}
