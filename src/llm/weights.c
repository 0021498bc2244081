/*
 * llm/weights.c - checkpoint tensors as float32 (see weights.h).
 *
 * The shard index is {"metadata": {...}, "weight_map": {tensor name: file name}}; file names
 * must be plain names inside the folder (no '/', no ".."), so a hostile index cannot point
 * outside it. Every shard the index names is opened (and validated) once.
 */
/* madvise (MADV_DONTNEED) is not POSIX: ask glibc for it in this file only. */
#define _DEFAULT_SOURCE
#include <cjson/cJSON.h>
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "llm/weights.h"
#include "road/safetensors.h"

/* An index is a small JSON file; anything larger is not one. */
#define WEIGHTS_INDEX_MAX_BYTES (64u << 20)
#define WEIGHTS_MAX_SHARDS 4096

typedef struct shard {
    char *name;
    road_st_file *f;
} shard;

typedef struct owned_buf {
    float *p;
    struct owned_buf *next;
} owned_buf;

struct road_weights {
    char *dir;
    shard *shards;
    int32_t n_shards;
    cJSON *map; /* weight_map, NULL for a single file */
    owned_buf *owned;
    int64_t mapped_bytes, owned_bytes;
};

void road__weights_close(road_weights *w) {
    if (!w) return;
    for (int32_t i = 0; i < w->n_shards; i++) {
        road_st_close(w->shards[i].f);
        road__free(w->shards[i].name);
    }
    road__free(w->shards);
    cJSON_Delete(w->map);
    while (w->owned) {
        owned_buf *n = w->owned->next;
        road__free(w->owned->p);
        road__free(w->owned);
        w->owned = n;
    }
    road__free(w->dir);
    road__free(w);
}

static road_status add_shard(road_weights *w, const char *name) {
    for (int32_t i = 0; i < w->n_shards; i++)
        if (strcmp(w->shards[i].name, name) == 0) return ROAD_OK;
    if (w->n_shards >= WEIGHTS_MAX_SHARDS)
        return road__error(ROAD_ERR_FORMAT, "model.safetensors.index.json names more than %d files",
                           WEIGHTS_MAX_SHARDS);
    if (!*name || strchr(name, '/') || strcmp(name, "..") == 0 || strcmp(name, ".") == 0)
        return road__error(ROAD_ERR_FORMAT,
                           "model.safetensors.index.json names the file '%s'; shard names must be "
                           "plain file names inside the model folder",
                           name);
    shard *ns = road__realloc(w->shards, sizeof(shard) * (size_t)(w->n_shards + 1));
    if (!ns) return ROAD_ERR_NO_MEMORY;
    w->shards = ns;
    shard *s = &w->shards[w->n_shards];
    s->f = NULL;
    if (!(s->name = road__strdup(name))) return ROAD_ERR_NO_MEMORY;
    char *path = road__path_join(w->dir, name);
    if (!path) {
        road__free(s->name);
        return ROAD_ERR_NO_MEMORY;
    }
    road_status st = road_st_open_private(path, &s->f);
    road__free(path);
    if (st != ROAD_OK) {
        road__free(s->name);
        return st;
    }
    w->n_shards++;
    return ROAD_OK;
}

road_status road__weights_open(const char *dir, road_weights **out) {
    *out = NULL;
    road_weights *w = road__calloc(1, sizeof *w);
    if (!w) return ROAD_ERR_NO_MEMORY;
    road_status st = ROAD_OK;
    if (!(w->dir = road__strdup(dir))) st = ROAD_ERR_NO_MEMORY;
    char *single = st == ROAD_OK ? road__path_join(dir, "model.safetensors") : NULL;
    char *index = st == ROAD_OK ? road__path_join(dir, "model.safetensors.index.json") : NULL;
    if (st == ROAD_OK && (!single || !index)) st = ROAD_ERR_NO_MEMORY;
    char *text = NULL;
    size_t len = 0;
    /* An index that exists but cannot be read (no memory, too big, a folder) is that error,
     * not "no index". */
    bool has_index = st == ROAD_OK && access(index, F_OK) == 0;
    if (has_index) st = road__file_read(index, WEIGHTS_INDEX_MAX_BYTES, &text, &len);
    if (has_index && st == ROAD_OK) {
        cJSON *root = NULL;
        road_status js = road_json_parse(text, len, &root);
        road__free(text);
        const cJSON *map = root ? road__json_get(root, "weight_map") : NULL;
        if (js == ROAD_ERR_NO_MEMORY) {
            st = js;
        } else if (js != ROAD_OK) {
            road__error_prefix("'%s' is not a shard index (invalid JSON)", index);
            st = ROAD_ERR_FORMAT;
        } else if (!cJSON_IsObject(root) || !cJSON_IsObject(map)) {
            st = road__error(ROAD_ERR_FORMAT,
                             "'%s' is not a shard index (a JSON object with a \"weight_map\" "
                             "object mapping tensor names to file names)",
                             index);
            cJSON_Delete(root);
        } else {
            w->map = cJSON_DetachItemFromObjectCaseSensitive(root, "weight_map");
            cJSON_Delete(root);
            const cJSON *e;
            cJSON_ArrayForEach(e, w->map) {
                if (!cJSON_IsString(e)) {
                    st = road__error(ROAD_ERR_FORMAT, "'%s': weight_map[\"%s\"] is not a file name",
                                     index, e->string);
                    break;
                }
                if ((st = add_shard(w, e->valuestring)) != ROAD_OK) break;
            }
            if (st == ROAD_OK && w->n_shards == 0)
                st = road__error(ROAD_ERR_FORMAT, "'%s': weight_map is empty", index);
        }
    } else if (st == ROAD_OK) {
        if (!road__is_dir(dir)) {
            st = road__error(ROAD_ERR_NOT_FOUND, "model folder '%s' does not exist", dir);
        } else {
            if (access(single, F_OK) == 0)
                st = add_shard(w, "model.safetensors");
            else
                st = road__error(
                    ROAD_ERR_NOT_FOUND,
                    "'%s' has neither model.safetensors nor model.safetensors.index.json "
                    "(road reads safetensors checkpoints; convert .bin/.pt weights with "
                    "transformers' save_pretrained(safe_serialization=True))",
                    dir);
        }
    }
    road__free(single);
    road__free(index);
    if (st != ROAD_OK) {
        road__weights_close(w);
        return st;
    }
    *out = w;
    return ROAD_OK;
}

/* The shard holding `name`, NULL if none does. */
static shard *locate(const road_weights *w, const char *name, const road_st_tensor **t) {
    *t = NULL;
    if (w->map) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(w->map, name);
        if (!e) return NULL;
        for (int32_t i = 0; i < w->n_shards; i++)
            if (strcmp(w->shards[i].name, e->valuestring) == 0) {
                *t = road_st_find(w->shards[i].f, name);
                return &w->shards[i];
            }
        return NULL;
    }
    *t = road_st_find(w->shards[0].f, name);
    return *t ? &w->shards[0] : NULL;
}

bool road__weights_has(const road_weights *w, const char *name) {
    const road_st_tensor *t;
    return locate(w, name, &t) && t;
}

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* The tensor `name` checked against `shape` (the error names both when they differ). */
static road_status find_shaped(road_weights *w, const char *name, int32_t ndim,
                               const int64_t *shape, const road_st_tensor **out, shard **sh) {
    const road_st_tensor *t;
    shard *s = locate(w, name, &t);
    char want[128], got[128];
    shape_str(want, sizeof want, ndim, shape);
    if (!s || !t)
        return road__error(ROAD_ERR_NOT_FOUND, "the checkpoint has no tensor '%s' %s%s%s", name,
                           want, s ? " (the index names file " : "", s ? s->name : "");
    bool same = t->ndim == ndim;
    for (int32_t i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        return road__error(ROAD_ERR_SHAPE,
                           "tensor '%s' in %s is %s, expected %s (does config.json "
                           "match the weights?)",
                           name, s->name, got, want);
    }
    *out = t;
    *sh = s;
    return ROAD_OK;
}

road_status road__weights_get_raw(road_weights *w, const char *name, int32_t ndim,
                                  const int64_t *shape, const road_st_tensor **out) {
    shard *s = NULL;
    road_status st = find_shaped(w, name, ndim, shape, out, &s);
    if (st != ROAD_OK) return st;
    if ((uintptr_t)(*out)->data % road_dtype_size((*out)->dtype) != 0)
        return road__error(ROAD_ERR_FORMAT,
                           "tensor '%s' in %s is not aligned to its %zu-byte elements; re-save "
                           "the checkpoint with safetensors",
                           name, s->name, road_dtype_size((*out)->dtype));
    return ROAD_OK;
}

/* Drop the mapped pages of a tensor that was read and converted (they would otherwise stay
 * resident beside the converted copy until the file is unmapped). */
static void drop_pages(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) / page * page;
    uintptr_t e = ((uintptr_t)p + n) / page * page;
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

void road__weights_drop(const void *p, size_t n) {
    drop_pages(p, n);
}

void road__weights_evict(const road_weights *w, const float *p, int64_t numel) {
    if (!p) return;
    for (const owned_buf *b = w->owned; b; b = b->next)
        if (b->p == p) return; /* a converted copy: its pages are the only ones it has */
    drop_pages(p, sizeof(float) * (size_t)numel);
}

road_status road__weights_get(road_weights *w, const char *name, int32_t ndim, const int64_t *shape,
                              float **out) {
    *out = NULL;
    const road_st_tensor *t = NULL;
    shard *s = NULL;
    road_status found = find_shaped(w, name, ndim, shape, &t, &s);
    if (found != ROAD_OK) return found;
    if (t->dtype == ROAD_DTYPE_F32) {
        if ((uintptr_t)t->data % sizeof(float) != 0)
            return road__error(ROAD_ERR_FORMAT,
                               "tensor '%s' in %s is not 4-byte aligned; re-save "
                               "the checkpoint with safetensors",
                               name, s->name);
        *out = (float *)(uintptr_t)t->data; /* private writable mapping */
        w->mapped_bytes += (int64_t)t->nbytes;
        return ROAD_OK;
    }
    if (t->dtype != ROAD_DTYPE_BF16 && t->dtype != ROAD_DTYPE_F16)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "tensor '%s' in %s is %s; road reads F32, BF16 and "
                           "F16 weights",
                           name, s->name, road_dtype_name(t->dtype));
    owned_buf *b = road__malloc(sizeof *b);
    float *p = road__malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    if (!b || !p) {
        road__free(b);
        road__free(p);
        return ROAD_ERR_NO_MEMORY;
    }
    road_status st = road_dtype_to_f32(t->dtype, t->data, p, (size_t)t->numel);
    if (st != ROAD_OK) {
        road__free(b);
        road__free(p);
        return st;
    }
    drop_pages(t->data, (size_t)t->nbytes);
    b->p = p;
    b->next = w->owned;
    w->owned = b;
    w->owned_bytes += t->numel * (int64_t)sizeof(float);
    *out = p;
    return ROAD_OK;
}

const road_st_tensor *road__weights_find(const road_weights *w, const char *name) {
    const road_st_tensor *t;
    return locate(w, name, &t) ? t : NULL;
}

void road__weights_release(road_weights *w, float *p, int64_t numel) {
    if (!p) return;
    for (owned_buf **b = &w->owned; *b; b = &(*b)->next)
        if ((*b)->p == p) {
            owned_buf *dead = *b;
            *b = dead->next;
            road__free(dead->p);
            road__free(dead);
            w->owned_bytes -= numel * (int64_t)sizeof(float);
            return;
        }
    /* mapped: drop the whole pages inside the tensor (they were only read; a later read would
     * fetch them from the file again) */
    drop_pages(p, sizeof(float) * (size_t)numel);
    w->mapped_bytes -= numel * (int64_t)sizeof(float);
}

/* n if `name` is "<prefix><n>." followed by anything (n a plain decimal), else -1. */
static int64_t layer_index(const char *name, const char *prefix, size_t plen) {
    if (strncmp(name, prefix, plen) != 0) return -1;
    const char *p = name + plen;
    int64_t n = 0;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (INT64_MAX - 9) / 10) return -1;
        n = n * 10 + (*p - '0');
    }
    return *p == '.' ? n : -1;
}

int64_t road__weights_layer_count(const road_weights *w, const char *prefix) {
    const size_t plen = strlen(prefix);
    int64_t top = -1;
    if (w->map) {
        const cJSON *e;
        cJSON_ArrayForEach(e, w->map) {
            int64_t i = layer_index(e->string, prefix, plen);
            if (i > top) top = i;
        }
    } else {
        for (int64_t t = 0; t < road_st_count(w->shards[0].f); t++) {
            int64_t i = layer_index(road_st_at(w->shards[0].f, t)->name, prefix, plen);
            if (i > top) top = i;
        }
    }
    return top + 1;
}

int64_t road__weights_mapped_bytes(const road_weights *w) {
    return w->mapped_bytes;
}

int64_t road__weights_owned_bytes(const road_weights *w) {
    return w->owned_bytes;
}
