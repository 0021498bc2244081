/*
 * tests/testutil.c - shared helpers for road's tests (see testutil.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

void tu_assert_close(const char *what, const float *a, const float *b, int64_t n, double atol,
                     double rtol) {
    int64_t bad = -1, nbad = 0;
    double worst = 0.0;
    int64_t worst_i = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double tol = atol + rtol * fabs((double)b[i]);
        int ok = d <= tol || (isnan(a[i]) && isnan(b[i])) ||
                 (isinf(a[i]) && isinf(b[i]) && (a[i] > 0) == (b[i] > 0));
        if (!ok) {
            if (bad < 0) bad = i;
            nbad++;
        }
        if (d > worst) {
            worst = d;
            worst_i = i;
        }
    }
    if (bad >= 0) {
        print_error("%s: %lld of %lld elements differ; first at [%lld]: got %.9g, want %.9g "
                    "(atol %.3g, rtol %.3g); worst |diff| %.3g at [%lld]\n",
                    what, (long long)nbad, (long long)n, (long long)bad, (double)a[bad],
                    (double)b[bad], atol, rtol, worst, (long long)worst_i);
        fail();
    }
}

void tu_assert_equal_f32(const char *what, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            print_error("%s: not bit-identical at [%lld] of %lld: got %.9g, want %.9g\n", what,
                        (long long)i, (long long)n, (double)a[i], (double)b[i]);
            fail();
        }
    }
}

void tu_check_ok(road_status s, const char *expr, const char *file, int line) {
    if (s != ROAD_OK) {
        print_error("%s:%d: %s returned %s: %s\n", file, line, expr, road_status_name(s),
                    road_last_error());
        fail();
    }
}

void tu_check_fails(road_status s, road_status want, const char *needle, const char *expr,
                    const char *file, int line) {
    if (s != want) {
        print_error("%s:%d: %s returned %s, expected %s (message: %s)\n", file, line, expr,
                    road_status_name(s), road_status_name(want), road_last_error());
        fail();
    }
    if (needle && !strstr(road_last_error(), needle)) {
        print_error("%s:%d: %s: message \"%s\" does not mention \"%s\"\n", file, line, expr,
                    road_last_error(), needle);
        fail();
    }
}

const char *tu_fixture(const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", ROAD_FIXTURES, rel);
    return buf;
}

road_st_file *tu_open_golden(const char *rel) {
    road_st_file *f = NULL;
    road_status s = road_st_open(tu_fixture(rel), &f);
    if (s != ROAD_OK) {
        print_error("cannot open fixture %s: %s\n", rel, road_last_error());
        fail();
    }
    return f;
}

const road_st_tensor *tu_golden_info(const road_st_file *f, const char *case_id,
                                     const char *name) {
    char key[512];
    snprintf(key, sizeof key, "%s/%s", case_id, name);
    return road_st_find(f, key);
}

const float *tu_golden(const road_st_file *f, const char *case_id, const char *name, int64_t *n) {
    const road_st_tensor *t = tu_golden_info(f, case_id, name);
    if (!t) return NULL;
    if (t->dtype != ROAD_DTYPE_F32) {
        print_error("golden %s/%s is %s, expected F32\n", case_id, name, road_dtype_name(t->dtype));
        fail();
    }
    if (n) *n = t->numel;
    return (const float *)t->data;
}

const float *tu_golden_req(const road_st_file *f, const char *case_id, const char *name,
                           int64_t *n) {
    const float *p = tu_golden(f, case_id, name, n);
    if (!p) {
        print_error("golden tensor %s/%s is missing\n", case_id, name);
        fail();
    }
    return p;
}

void tu_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
    }
}

void *tu_alloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        print_error("test out of memory (%zu bytes)\n", n);
        fail();
    }
    return p;
}

struct cJSON *tu_load_json(const char *rel) {
    FILE *fp = fopen(tu_fixture(rel), "rb");
    if (!fp) {
        print_error("cannot open fixture %s\n", rel);
        fail();
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = tu_alloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        print_error("cannot read fixture %s\n", rel);
        fail();
    }
    fclose(fp);
    cJSON *j = cJSON_ParseWithLength(buf, (size_t)n);
    free(buf);
    if (!j) {
        print_error("fixture %s is not valid JSON\n", rel);
        fail();
    }
    return j;
}

void tu_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                tu_rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

void tu_copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) {
        print_error("cannot copy %s to %s\n", from, to);
        fail();
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) {
        if (fwrite(buf, 1, n, b) != n) {
            print_error("cannot write %s\n", to);
            fail();
        }
    }
    fclose(a);
    fclose(b);
}

void tu_make_text_model(char *dir, size_t cap) {
    char path[512];
    snprintf(dir, cap, "/tmp/road-text-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_copy_file(ROAD_FIXTURES "/llama/tiny-llama/config.json", path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tu_copy_file(ROAD_FIXTURES "/llama/tiny-llama/model.safetensors", path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    tu_copy_file(ROAD_FIXTURES "/tokenizers/llama2/tokenizer_config.json", path);
    cJSON *t = tu_load_json("tokenizers/llama2/tokenizer.json");
    cJSON *model = cJSON_GetObjectItem(t, "model");
    cJSON *vocab = cJSON_CreateObject();
    cJSON_AddNumberToObject(vocab, "<unk>", 0);
    cJSON_AddNumberToObject(vocab, "<s>", 1);
    cJSON_AddNumberToObject(vocab, "</s>", 2);
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        cJSON_AddNumberToObject(vocab, piece, 3 + b);
    }
    cJSON_AddNumberToObject(vocab, "\xe2\x96\x81", 259);
    cJSON_ReplaceItemInObject(model, "vocab", vocab);
    cJSON_ReplaceItemInObject(model, "merges", cJSON_CreateArray());
    /* keep only the three special added tokens (ids 0..2) */
    cJSON *added = cJSON_GetObjectItem(t, "added_tokens");
    while (cJSON_GetArraySize(added) > 3) cJSON_DeleteItemFromArray(added, 3);
    char *text = cJSON_PrintUnformatted(t);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(t);
}

void tu_write_pattern_task(const char *path, int n, int seq, int seed) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        int t = (i * 13 + seed) % 64;
        fprintf(f, "{\"input_ids\": [");
        for (int j = 0; j < seq; j++) {
            fprintf(f, "%s%d", j ? ", " : "", t);
            t = (t + 7) % 64;
        }
        fprintf(f, "]}\n");
    }
    fclose(f);
}

bool tu_record_loss(const road_train_metrics *m, void *user) {
    tu_loss_log *l = user;
    if (l->n < 64) l->loss[l->n++] = m->loss;
    return !(l->stop_at && m->step == l->stop_at);
}

road_status tu_byte_tokenize(void *u, const char *text, size_t len, bool add_special,
                             int32_t **ids, int64_t *n) {
    (void)u;
    int64_t k = (int64_t)len + (add_special ? 1 : 0);
    int32_t *v = road_ids_alloc(k);
    if (!v) return ROAD_ERR_NO_MEMORY;
    int64_t j = 0;
    if (add_special) v[j++] = 1; /* bos */
    for (size_t i = 0; i < len; i++) v[j++] = (unsigned char)text[i] % 320;
    *ids = v;
    *n = k;
    return ROAD_OK;
}

static char scratch_root[256];

int tu_scratch_make(const char *name) {
    snprintf(scratch_root, sizeof scratch_root, "/tmp/road_%s_XXXXXX", name);
    return mkdtemp(scratch_root) ? 0 : -1;
}

const char *tu_scratch_root(void) {
    return scratch_root;
}

const char *tu_scratch_at(const char *rel) {
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", scratch_root, rel);
    return buf[k];
}

int tu_scratch_remove(void) {
    tu_rm_rf(scratch_root);
    return 0;
}
