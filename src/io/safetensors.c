/*
 * io/safetensors.c - the safetensors reader and writer (see road/safetensors.h).
 *
 * Files come from the internet, so the reader trusts nothing: every length, offset, shape and
 * string is checked before a pointer is formed, and the rules are those of the reference (Rust)
 * implementation: header at most 100 MB, valid UTF-8 JSON object, tensors packed in the data
 * section without overlaps, gaps or trailing bytes. A file road accepts is one the safetensors
 * library accepts too, and vice versa for the dtypes road reads.
 *
 * Reading: the header is copied into a NUL-terminated buffer before cJSON sees it (the mmap is
 * not NUL-terminated, and the copy lets us pre-check bytes cJSON is lax about). After
 * validation, everything the handle keeps (tensor table, name index, metadata, strings) is
 * sized first and carved from one allocation, so a handle is two mallocs at most and the
 * out-of-memory paths are few and tested. cJSON allocates its tree with the system allocator
 * (its hooks are process-wide and road does not take them over); that tree lives only inside
 * road_st_open*.
 *
 * Alignment: tensor data pointers point into the mapping at 8 + header length + begin. Writers
 * (road's and the safetensors library) pad the header to a multiple of 8 and real files keep
 * each tensor aligned to its element size, but nothing in the format forces it. road_dtype_to_f32
 * reads with memcpy and works on any address; road_st_get_f32, which hands out a float pointer,
 * refuses data that is not 4-byte aligned rather than give the compiler a misaligned float*.
 *
 * A mapped file must not be truncated while open (that is SIGBUS, as for any mmap); files
 * replaced by road's atomic writer are safe, since rename leaves the old inode mapped.
 *
 * Writing lays tensors out in name order, writes the header as compact JSON with the same
 * escaping as serde_json (so a file road writes is byte-identical to the one the safetensors
 * library writes for the same F32 tensors), pads it with spaces to a multiple of 8 and
 * replaces the target atomically.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "io/st_save.h"
#include "road/safetensors.h"

/* The reference implementation's MAX_HEADER_SIZE; real headers are a few hundred KB at most. */
#define ST_HEADER_MAX 100000000u
/* Bytes of the little-endian u64 header length that starts every file. */
#define ST_LEN_BYTES 8u
/* Header padding: writers pad so the data section starts 8-byte aligned. */
#define ST_HEADER_ALIGN 8u
/* cJSON stores numbers as doubles; integers at or above 2^53 may not be what the file says. */
#define ST_JSON_INT_LIMIT 9007199254740992.0
/* How much of a hostile name or path to quote back in a message (messages are 1 KB). */
#define ST_ECHO_MAX 200
/* Room for "[d0, d1, ...]" with ROAD_ST_MAX_DIMS 20-digit dims. */
#define ST_SHAPE_STR_MAX (ROAD_ST_MAX_DIMS * 22 + 4)
#define ST_METADATA_KEY "__metadata__"

typedef struct st_meta {
    const char *key;
    const char *value;
} st_meta;

struct road_st_file {
    void *map; /* our mmap (NULL for road_st_open_memory) */
    size_t map_len;
    const unsigned char *base; /* start of the file image, for offsets in messages */
    const char *label;         /* "'path'" or "safetensors buffer", for messages */
    int64_t n_tensors;
    road_st_tensor *tensors;        /* sorted by data offset */
    const road_st_tensor **by_name; /* sorted by name, for bsearch */
    int64_t n_meta;
    st_meta *meta; /* sorted by key */
};

/* ---- errors ---------------------------------------------------------------------------------- */

/* Where a parse is, for messages. */
typedef struct st_ctx {
    const char *path; /* NULL for an in-memory image */
} st_ctx;

/* Prefix every reader message with the file, so the CLI can print it as is. */
__attribute__((format(printf, 3, 4))) static road_status st_fail(const st_ctx *c, road_status s,
                                                                 const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->path) return road__error(s, "'%s': %s", c->path, msg);
    return road__error(s, "safetensors buffer: %s", msg);
}

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t pos = 0;
    int w = snprintf(buf, cap, "[");
    pos = w > 0 ? (size_t)w : 0;
    for (int32_t i = 0; i < ndim && pos < cap; i++) {
        w = snprintf(buf + pos, cap - pos, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (w < 0) return;
        pos += (size_t)w;
    }
    if (pos < cap) snprintf(buf + pos, cap - pos, "]");
}

/* ---- header text checks ---------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. Strict: no overlong
 * forms, no surrogates, nothing above U+10FFFF, as Rust's str::from_utf8. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    }
    return len;
}

/* What cJSON lets through but JSON (and the reference implementation) does not: invalid UTF-8,
 * raw control characters inside strings, and NUL bytes (raw or as \u0000, which would cut a
 * name short in C and let two different names compare equal). */
static road_status check_header_text(const st_ctx *c, const unsigned char *h, size_t n) {
    int in_string = 0;
    for (size_t i = 0; i < n;) {
        unsigned char ch = h[i];
        size_t len = utf8_seq_len(h + i, n - i);
        if (len == 0)
            return st_fail(c, ROAD_ERR_FORMAT,
                           "header is not valid UTF-8 (byte 0x%02x at header offset %zu)", ch, i);
        if (ch == 0)
            return st_fail(c, ROAD_ERR_FORMAT, "header contains a NUL byte at header offset %zu",
                           i);
        if (in_string) {
            if (ch < 0x20)
                return st_fail(c, ROAD_ERR_FORMAT,
                               "header has a raw control character 0x%02x inside a string at "
                               "header offset %zu; JSON requires it to be escaped",
                               ch, i);
            if (ch == '"') {
                in_string = 0;
            } else if (ch == '\\' && i + 1 < n) {
                /* Skip the escaped character so an escaped quote does not end the string. */
                if (i + 5 < n && memcmp(h + i + 1, "u0000", 5) == 0)
                    return st_fail(c, ROAD_ERR_FORMAT,
                                   "header has a \\u0000 escape at header offset %zu; names and "
                                   "strings may not contain NUL",
                                   i);
                i += 2;
                continue;
            }
        } else if (ch == '"') {
            in_string = 1;
        }
        i += len;
    }
    return ROAD_OK;
}

/* ---- header values --------------------------------------------------------------------------- */

/* A JSON number that is a non-negative integer exactly representable in a double. */
static int json_uint(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d < ST_JSON_INT_LIMIT)) return 0; /* also refuses NaN */
    int64_t i = (int64_t)d;
    if ((double)i != d) return 0;
    *out = i;
    return 1;
}

typedef struct st_entry_fields {
    const cJSON *dtype, *shape, *offsets;
} st_entry_fields;

/* Pick out the three fields of a tensor entry; anything else, or a field twice, is refused
 * (the reference refuses duplicates, and an unknown key is most likely a misspelt one). */
static road_status entry_fields(const st_ctx *c, const cJSON *e, const char *name,
                                st_entry_fields *f) {
    memset(f, 0, sizeof *f);
    if (!cJSON_IsObject(e))
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': entry must be a JSON object with \"dtype\", \"shape\" and "
                       "\"data_offsets\"",
                       ST_ECHO_MAX, name);
    const cJSON *k;
    cJSON_ArrayForEach(k, e) {
        const cJSON **slot = NULL;
        if (strcmp(k->string, "dtype") == 0)
            slot = &f->dtype;
        else if (strcmp(k->string, "shape") == 0)
            slot = &f->shape;
        else if (strcmp(k->string, "data_offsets") == 0)
            slot = &f->offsets;
        if (!slot)
            return st_fail(c, ROAD_ERR_FORMAT,
                           "tensor '%.*s': unknown key \"%.*s\"; an entry has exactly \"dtype\", "
                           "\"shape\" and \"data_offsets\"",
                           ST_ECHO_MAX, name, ST_ECHO_MAX, k->string);
        if (*slot)
            return st_fail(c, ROAD_ERR_FORMAT, "tensor '%.*s': key \"%s\" appears twice",
                           ST_ECHO_MAX, name, k->string);
        *slot = k;
    }
    const char *missing = !f->dtype     ? "dtype"
                          : !f->shape   ? "shape"
                          : !f->offsets ? "data_offsets"
                                        : NULL;
    if (missing)
        return st_fail(c, ROAD_ERR_FORMAT, "tensor '%.*s' has no \"%s\"", ST_ECHO_MAX, name,
                       missing);
    return ROAD_OK;
}

/* Fill t from entry e (whose name is already in t->name), checking it against a data section
 * of data_size bytes starting at data. */
static road_status parse_entry(const st_ctx *c, const cJSON *e, road_st_tensor *t,
                               const unsigned char *data, size_t data_size) {
    const char *name = t->name;
    st_entry_fields f;
    road_status s = entry_fields(c, e, name, &f);
    if (s != ROAD_OK) return s;

    if (!cJSON_IsString(f.dtype))
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': \"dtype\" must be a string such as \"F32\"", ST_ECHO_MAX,
                       name);
    s = road_dtype_parse(f.dtype->valuestring, &t->dtype);
    if (s != ROAD_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", road_last_error());
        return st_fail(c, s, "tensor '%.*s': %s", ST_ECHO_MAX, name, why);
    }

    if (!cJSON_IsArray(f.shape))
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': \"shape\" must be an array of non-negative integers",
                       ST_ECHO_MAX, name);
    int ndim = cJSON_GetArraySize(f.shape);
    if (ndim > ROAD_ST_MAX_DIMS)
        return st_fail(c, ROAD_ERR_UNSUPPORTED,
                       "tensor '%.*s' has %d dimensions; road supports at most %d", ST_ECHO_MAX,
                       name, ndim, ROAD_ST_MAX_DIMS);
    t->ndim = ndim;
    /* Multiply in order and stop at the first overflow, as the reference does (so a zero
     * dimension after an overflowing prefix does not rescue the shape). */
    int64_t numel = 1;
    int overflow = 0;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, f.shape) {
        if (!json_uint(d, &t->shape[i]))
            return st_fail(c, ROAD_ERR_FORMAT,
                           "tensor '%.*s': shape[%d] is not a non-negative integer below 2^53",
                           ST_ECHO_MAX, name, i);
        if (!overflow && t->shape[i] != 0 && numel > INT64_MAX / t->shape[i]) overflow = 1;
        if (!overflow) numel *= t->shape[i];
        i++;
    }
    char shp[ST_SHAPE_STR_MAX];
    shape_str(shp, sizeof shp, t->ndim, t->shape);
    size_t esize = road_dtype_size(t->dtype);
    if (overflow || (uint64_t)numel > SIZE_MAX / esize)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': shape %s overflows (its element count times the dtype size "
                       "does not fit in 64 bits)",
                       ST_ECHO_MAX, name, shp);
    t->numel = numel;
    t->nbytes = (size_t)numel * esize;

    int64_t begin = 0, end = 0;
    if (!cJSON_IsArray(f.offsets) || cJSON_GetArraySize(f.offsets) != 2 ||
        !json_uint(cJSON_GetArrayItem(f.offsets, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(f.offsets, 1), &end))
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': \"data_offsets\" must be [begin, end], two non-negative "
                       "integers",
                       ST_ECHO_MAX, name);
    if (begin > end)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': data_offsets [%lld, %lld] end before they begin",
                       ST_ECHO_MAX, name, (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s': data_offsets [%lld, %lld] are out of bounds: the data "
                       "section has %zu bytes; the file is truncated or the header is wrong",
                       ST_ECHO_MAX, name, (long long)begin, (long long)end, data_size);
    if ((uint64_t)(end - begin) != (uint64_t)t->nbytes)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "tensor '%.*s' is %s %s = %zu bytes, but its data_offsets [%lld, %lld] "
                       "span %lld bytes",
                       ST_ECHO_MAX, name, road_dtype_name(t->dtype), shp, t->nbytes,
                       (long long)begin, (long long)end, (long long)(end - begin));
    t->data = data + begin;
    return ROAD_OK;
}

static road_status check_metadata(const st_ctx *c, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return st_fail(c, ROAD_ERR_FORMAT,
                       "\"" ST_METADATA_KEY "\" must be an object of string values");
    const cJSON *v;
    cJSON_ArrayForEach(v, m) {
        if (!cJSON_IsString(v))
            return st_fail(c, ROAD_ERR_FORMAT,
                           "\"" ST_METADATA_KEY "\" value of '%.*s' is not a string; metadata "
                           "values must all be strings",
                           ST_ECHO_MAX, v->string);
    }
    return ROAD_OK;
}

/* ---- sorting --------------------------------------------------------------------------------- */

/* By data offset, then size (so an empty tensor sorts before one starting where it sits), then
 * name, so the order is fully determined. All data pointers are into one image, so comparing
 * them is comparing offsets. */
static int cmp_by_offset(const void *a, const void *b) {
    const road_st_tensor *x = a, *y = b;
    const unsigned char *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b) {
    const road_st_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_meta(const void *a, const void *b) {
    const st_meta *x = a, *y = b;
    return strcmp(x->key, y->key);
}

/* Tensors sorted by offset must tile the data section exactly, as the reference requires. */
static road_status check_layout(const st_ctx *c, const road_st_tensor *t, int64_t n,
                                const unsigned char *data, size_t data_size) {
    size_t cursor = 0, uncovered = 0;
    const char *prev = NULL;
    for (int64_t i = 0; i < n; i++) {
        size_t begin = (size_t)((const unsigned char *)t[i].data - data);
        if (begin < cursor)
            return st_fail(c, ROAD_ERR_FORMAT,
                           "tensors '%.*s' and '%.*s' overlap in the data section (bytes %zu to "
                           "%zu are claimed by both)",
                           ST_ECHO_MAX, prev, ST_ECHO_MAX, t[i].name, begin,
                           cursor < begin + t[i].nbytes ? cursor : begin + t[i].nbytes);
        uncovered += begin - cursor;
        if (t[i].nbytes) {
            cursor = begin + t[i].nbytes;
            prev = t[i].name;
        }
    }
    uncovered += data_size - cursor;
    if (uncovered)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "data section has %zu bytes not covered by any tensor; safetensors "
                       "requires tensors to be packed without gaps or trailing bytes",
                       uncovered);
    return ROAD_OK;
}

/* ---- the parse ------------------------------------------------------------------------------- */

static size_t align_up(size_t n) {
    const size_t a = sizeof(void *) > sizeof(int64_t) ? sizeof(void *) : sizeof(int64_t);
    return (n + a - 1) / a * a;
}

static size_t copy_str(char *pool, size_t *pos, const char *s) {
    size_t at = *pos, n = strlen(s) + 1;
    memcpy(pool + at, s, n);
    *pos += n;
    return at;
}

/* Validate `root` (the header object) and build the handle. */
static road_status build_file(const st_ctx *c, const cJSON *root, const unsigned char *image,
                              const unsigned char *data, size_t data_size, road_st_file **out) {
    /* Pass 1: count, check the metadata, and size the strings. */
    int64_t n = 0, n_meta = 0;
    size_t str_bytes = 0;
    const cJSON *meta = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, ST_METADATA_KEY) == 0) {
            if (meta) return st_fail(c, ROAD_ERR_FORMAT, "\"" ST_METADATA_KEY "\" appears twice");
            road_status s = check_metadata(c, e);
            if (s != ROAD_OK) return s;
            meta = e;
            const cJSON *v;
            cJSON_ArrayForEach(v, e) {
                n_meta++;
                str_bytes += strlen(v->string) + strlen(v->valuestring) + 2;
            }
        } else {
            n++;
            str_bytes += strlen(e->string) + 1;
        }
    }
    const char *label = c->path ? c->path : "safetensors buffer";
    str_bytes += strlen(label) + 3; /* quotes */

    /* One allocation: handle, tensor table, name index, metadata, strings. */
    size_t off_tensors = align_up(sizeof(road_st_file));
    size_t off_by_name = align_up(off_tensors + (size_t)n * sizeof(road_st_tensor));
    size_t off_meta = align_up(off_by_name + (size_t)n * sizeof(road_st_tensor *));
    size_t off_str = align_up(off_meta + (size_t)n_meta * sizeof(st_meta));
    unsigned char *block = road__malloc(off_str + str_bytes);
    if (!block) return ROAD_ERR_NO_MEMORY;
    memset(block, 0, off_str);
    road_st_file *f = (road_st_file *)block;
    f->base = image;
    f->tensors = (road_st_tensor *)(block + off_tensors);
    f->by_name = (const road_st_tensor **)(block + off_by_name);
    f->meta = (st_meta *)(block + off_meta);
    char *pool = (char *)(block + off_str);
    size_t pos = 0;
    if (c->path) {
        pool[pos++] = '\'';
        copy_str(pool, &pos, label);
        pool[pos - 1] = '\'';
        pool[pos++] = '\0';
        f->label = pool;
    } else {
        f->label = pool + copy_str(pool, &pos, label);
    }

    /* Pass 2: fill and check every tensor. */
    road_status s = ROAD_OK;
    int64_t i = 0;
    cJSON_ArrayForEach(e, root) {
        if (e == meta) continue;
        road_st_tensor *t = &f->tensors[i++];
        t->name = pool + copy_str(pool, &pos, e->string);
        s = parse_entry(c, e, t, data, data_size);
        if (s != ROAD_OK) goto fail;
    }
    f->n_tensors = n;
    if (meta) {
        int64_t k = 0;
        cJSON_ArrayForEach(e, meta) {
            f->meta[k].key = pool + copy_str(pool, &pos, e->string);
            f->meta[k].value = pool + copy_str(pool, &pos, e->valuestring);
            k++;
        }
    }
    f->n_meta = n_meta;
    ROAD_ASSERT(pos <= str_bytes);

    if (n > 1) qsort(f->tensors, (size_t)n, sizeof *f->tensors, cmp_by_offset);
    for (int64_t j = 0; j < n; j++) f->by_name[j] = &f->tensors[j];
    if (n > 1) qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_by_name);
    for (int64_t j = 1; j < n; j++) {
        if (strcmp(f->by_name[j - 1]->name, f->by_name[j]->name) == 0) {
            s = st_fail(c, ROAD_ERR_FORMAT,
                        "tensor name '%.*s' appears twice in the header; names must be unique",
                        ST_ECHO_MAX, f->by_name[j]->name);
            goto fail;
        }
    }
    if (n_meta > 1) qsort(f->meta, (size_t)n_meta, sizeof *f->meta, cmp_meta);
    for (int64_t j = 1; j < n_meta; j++) {
        if (strcmp(f->meta[j - 1].key, f->meta[j].key) == 0) {
            s = st_fail(c, ROAD_ERR_FORMAT,
                        "\"" ST_METADATA_KEY "\" key '%.*s' appears twice; keys must be unique",
                        ST_ECHO_MAX, f->meta[j].key);
            goto fail;
        }
    }
    s = check_layout(c, f->tensors, n, data, data_size);
    if (s != ROAD_OK) goto fail;
    *out = f;
    return ROAD_OK;
fail:
    road__free(block);
    return s;
}

static road_status too_short(const st_ctx *c, size_t len) {
    return st_fail(c, ROAD_ERR_FORMAT,
                   "file is %zu bytes, too short for a safetensors file (it starts with an 8-byte "
                   "header length); the file is truncated or not a safetensors file",
                   len);
}

static road_status parse_image(const st_ctx *c, const unsigned char *image, size_t len,
                               road_st_file **out) {
    if (len < ST_LEN_BYTES) return too_short(c, len);
    uint64_t hlen = 0;
    for (unsigned i = 0; i < ST_LEN_BYTES; i++) hlen |= (uint64_t)image[i] << (8 * i);
    if (hlen > ST_HEADER_MAX)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "header length %llu exceeds the %u-byte limit of the safetensors format; "
                       "the file is corrupt or not a safetensors file",
                       (unsigned long long)hlen, ST_HEADER_MAX);
    if (hlen > len - ST_LEN_BYTES)
        return st_fail(c, ROAD_ERR_FORMAT,
                       "header length %llu exceeds the file size %zu; the file is truncated or "
                       "not a safetensors file",
                       (unsigned long long)hlen, len);
    size_t n = (size_t)hlen;
    const unsigned char *data = image + ST_LEN_BYTES + n;
    size_t data_size = len - ST_LEN_BYTES - n;

    road_status s = check_header_text(c, image + ST_LEN_BYTES, n);
    if (s != ROAD_OK) return s;
    /* road's strict parser, as for every JSON road reads: text after the object (other than
     * the format's space padding) and malformed numbers are refused, not skipped. */
    cJSON *root = NULL;
    road_json_where w;
    s = road__json_parse_at((const char *)image + ST_LEN_BYTES, n, &root, &w);
    if (s == ROAD_ERR_FORMAT) {
        s = st_fail(c, ROAD_ERR_FORMAT, "header is not valid JSON at header offset %zu%s%s: %s",
                    w.offset, w.path[0] ? ", in " : "", w.path, w.what);
    } else if (s == ROAD_OK && !cJSON_IsObject(root)) {
        s = st_fail(c, ROAD_ERR_FORMAT,
                    "header must be a JSON object mapping tensor names to entries");
    } else if (s == ROAD_OK) {
        s = build_file(c, root, image, data, data_size, out);
    }
    cJSON_Delete(root);
    return s;
}

/* ---- public reader API ----------------------------------------------------------------------- */

road_status road_st_open_memory(const void *data, size_t len, road_st_file **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_st_open_memory: out is NULL");
    *out = NULL;
    if (!data && len) return road__error(ROAD_ERR_INVALID_ARG, "road_st_open_memory: data is NULL");
    st_ctx c = {NULL};
    return parse_image(&c, data, len, out);
}

static road_status st_open(const char *path, int prot, road_st_file **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_st_open: out is NULL");
    *out = NULL;
    if (!path) return road__error(ROAD_ERR_INVALID_ARG, "road_st_open: path is NULL");
    st_ctx c = {path};
    int fd;
    uint64_t fsize;
    road_status os = road__file_open_regular(path, &fd, &fsize); /* refuses FIFOs, devices... */
    if (os != ROAD_OK) return os;
    if (fsize > SIZE_MAX) {
        close(fd);
        return st_fail(&c, ROAD_ERR_IO, "file is too large to map on this machine");
    }
    size_t len = (size_t)fsize;
    if (len < ST_LEN_BYTES) {
        close(fd);
        return too_short(&c, len);
    }
    void *map = mmap(NULL, len, prot, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED)
        return road__error(ROAD_ERR_IO, "cannot map '%s': %s", path, strerror(map_errno));
    road_st_file *f = NULL;
    road_status s = parse_image(&c, map, len, &f);
    if (s != ROAD_OK) {
        munmap(map, len);
        return s;
    }
    f->map = map;
    f->map_len = len;
    *out = f;
    return ROAD_OK;
}

road_status road_st_open(const char *path, road_st_file **out) {
    return st_open(path, PROT_READ, out);
}

road_status road_st_open_private(const char *path, road_st_file **out) {
    return st_open(path, PROT_READ | PROT_WRITE, out);
}

void road_st_close(road_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    road__free(f);
}

int64_t road_st_count(const road_st_file *f) {
    return f ? f->n_tensors : 0;
}

const road_st_tensor *road_st_at(const road_st_file *f, int64_t i) {
    if (!f || i < 0 || i >= f->n_tensors) return NULL;
    return &f->tensors[i];
}

static int cmp_name_key(const void *key, const void *elem) {
    const road_st_tensor *const *t = elem;
    return strcmp(key, (*t)->name);
}

const road_st_tensor *road_st_find(const road_st_file *f, const char *name) {
    if (!f || !name || f->n_tensors == 0) return NULL;
    const road_st_tensor **hit =
        bsearch(name, f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_name_key);
    return hit ? *hit : NULL;
}

static int cmp_meta_key(const void *key, const void *elem) {
    const st_meta *m = elem;
    return strcmp(key, m->key);
}

const char *road_st_metadata(const road_st_file *f, const char *key) {
    if (!f || !key || f->n_meta == 0) return NULL;
    const st_meta *m = bsearch(key, f->meta, (size_t)f->n_meta, sizeof *f->meta, cmp_meta_key);
    return m ? m->value : NULL;
}

int64_t road_st_metadata_count(const road_st_file *f) {
    return f ? f->n_meta : 0;
}

const char *road_st_metadata_key(const road_st_file *f, int64_t i) {
    if (!f || i < 0 || i >= f->n_meta) return NULL;
    return f->meta[i].key;
}

road_status road_st_get_f32(const road_st_file *f, const char *name, int32_t ndim,
                            const int64_t *shape, const float **data, const road_st_tensor **info) {
    if (data) *data = NULL;
    if (info) *info = NULL;
    if (!f || !name || (ndim > 0 && !shape) || ndim > ROAD_ST_MAX_DIMS)
        return road__error(ROAD_ERR_INVALID_ARG, "road_st_get_f32: invalid arguments");
    const road_st_tensor *t = road_st_find(f, name);
    if (!t)
        return road__error(ROAD_ERR_NOT_FOUND, "%s: no tensor named '%.*s' (the file has %lld)",
                           f->label, ST_ECHO_MAX, name, (long long)f->n_tensors);
    int shape_ok =
        ndim < 0 || (t->ndim == ndim &&
                     (ndim == 0 || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape) == 0));
    if (t->dtype != ROAD_DTYPE_F32 || !shape_ok) {
        char found[ST_SHAPE_STR_MAX], want[ST_SHAPE_STR_MAX];
        shape_str(found, sizeof found, t->ndim, t->shape);
        if (ndim < 0)
            snprintf(want, sizeof want, "of any shape");
        else
            shape_str(want, sizeof want, ndim, shape);
        return road__error(t->dtype != ROAD_DTYPE_F32 ? ROAD_ERR_FORMAT : ROAD_ERR_SHAPE,
                           "%s: tensor '%.*s' is %s %s, expected F32 %s", f->label, ST_ECHO_MAX,
                           name, road_dtype_name(t->dtype), found, want);
    }
    if ((uintptr_t)t->data % _Alignof(float) != 0)
        return road__error(
            ROAD_ERR_FORMAT,
            "%s: tensor '%.*s' starts at file offset %zu, which is not a multiple of "
            "4, so it cannot be used as float32 in place; re-save the file with "
            "aligned tensors (road and the safetensors library both do)",
            f->label, ST_ECHO_MAX, name, (size_t)((const unsigned char *)t->data - f->base));
    if (data) *data = t->data;
    if (info) *info = t;
    return ROAD_OK;
}

/* ---- writer ---------------------------------------------------------------------------------- */

typedef struct st_wtensor {
    char *name; /* shares one allocation with data: data first (aligned), then the name */
    void *data;
    road_dtype dtype;
    int32_t ndim;
    int64_t shape[ROAD_ST_MAX_DIMS];
    size_t nbytes;
} st_wtensor;

typedef struct st_wmeta {
    char *key;
    char *value;
} st_wmeta;

struct road_st_writer {
    st_wtensor *t;
    int64_t n, cap;
    st_wmeta *m;
    int64_t n_meta, cap_meta;
};

/* Whole string valid UTF-8 without control-character problems for the reader: everything is
 * escaped on output, so only UTF-8 validity matters. */
static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq_len(p + i, n - i);
        if (!len) return 0;
        i += len;
    }
    return 1;
}

road_status road_st_writer_create(road_st_writer **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_st_writer_create: out is NULL");
    *out = road__calloc(1, sizeof **out);
    return *out ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

void road_st_writer_free(road_st_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n; i++) road__free(w->t[i].data);
    for (int64_t i = 0; i < w->n_meta; i++) {
        road__free(w->m[i].key);
        road__free(w->m[i].value);
    }
    road__free(w->t);
    road__free(w->m);
    road__free(w);
}

/* Make room for one more element of size `elem` in *arr (count n, capacity *cap). */
static road_status grow(void **arr, int64_t n, int64_t *cap, size_t elem) {
    if (n < *cap) return ROAD_OK;
    int64_t nc = *cap ? *cap * 2 : 16;
    void *p = road__realloc(*arr, (size_t)nc * elem);
    if (!p) return ROAD_ERR_NO_MEMORY;
    *arr = p;
    *cap = nc;
    return ROAD_OK;
}

road_status road_st_writer_add(road_st_writer *w, const char *name, road_dtype dtype, int32_t ndim,
                               const int64_t *shape, const void *data) {
    if (!w || !name)
        return road__error(ROAD_ERR_INVALID_ARG, "road_st_writer_add: writer or name is NULL");
    if (strcmp(name, ST_METADATA_KEY) == 0)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "tensor name '" ST_METADATA_KEY "' is reserved by the format");
    if (!utf8_valid(name))
        return road__error(ROAD_ERR_INVALID_ARG, "tensor name '%.*s' is not valid UTF-8",
                           ST_ECHO_MAX, name);
    if ((unsigned)dtype >= ROAD_DTYPE_COUNT_)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor '%.*s': invalid dtype %d", ST_ECHO_MAX,
                           name, (int)dtype);
    if (ndim < 0 || ndim > ROAD_ST_MAX_DIMS || (ndim > 0 && !shape))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "tensor '%.*s': ndim %d is not in 0..%d (or shape is NULL)", ST_ECHO_MAX,
                           name, (int)ndim, ROAD_ST_MAX_DIMS);
    /* Same overflow rule as the reader, so every file written here can be read back. */
    int64_t numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return road__error(ROAD_ERR_INVALID_ARG, "tensor '%.*s': shape[%d] = %lld is negative",
                               ST_ECHO_MAX, name, (int)i, (long long)shape[i]);
        if (shape[i] != 0 && numel > INT64_MAX / shape[i])
            return road__error(ROAD_ERR_INVALID_ARG, "tensor '%.*s': shape overflows", ST_ECHO_MAX,
                               name);
        numel *= shape[i];
    }
    size_t esize = road_dtype_size(dtype);
    /* Offsets must stay below 2^53 for the reader (and any JSON reader) to take them. */
    if ((double)numel * (double)esize >= ST_JSON_INT_LIMIT)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor '%.*s' is too large for safetensors",
                           ST_ECHO_MAX, name);
    size_t nbytes = (size_t)numel * esize;
    if (nbytes && !data)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor '%.*s': data is NULL", ST_ECHO_MAX, name);
    for (int64_t i = 0; i < w->n; i++) {
        if (strcmp(w->t[i].name, name) == 0)
            return road__error(ROAD_ERR_EXISTS,
                               "tensor '%.*s' was already added; names must be unique", ST_ECHO_MAX,
                               name);
    }
    road_status s = grow((void **)&w->t, w->n, &w->cap, sizeof *w->t);
    if (s != ROAD_OK) return s;
    size_t name_len = strlen(name) + 1;
    unsigned char *mem = road__malloc(nbytes + name_len);
    if (!mem) return ROAD_ERR_NO_MEMORY;
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (nbytes) memcpy(mem, data, nbytes);
    memcpy(mem + nbytes, name, name_len);
    t->data = mem;
    t->name = (char *)mem + nbytes;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->n++;
    return ROAD_OK;
}

road_status road_st_writer_set_metadata(road_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value)
        return road__error(ROAD_ERR_INVALID_ARG, "road_st_writer_set_metadata: NULL argument");
    if (!utf8_valid(key) || !utf8_valid(value))
        return road__error(ROAD_ERR_INVALID_ARG, "metadata '%.*s' is not valid UTF-8", ST_ECHO_MAX,
                           key);
    char *v = road__strdup(value);
    if (!v) return ROAD_ERR_NO_MEMORY;
    for (int64_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->m[i].key, key) == 0) {
            road__free(w->m[i].value);
            w->m[i].value = v;
            return ROAD_OK;
        }
    }
    char *k = road__strdup(key);
    if (!k || grow((void **)&w->m, w->n_meta, &w->cap_meta, sizeof *w->m) != ROAD_OK) {
        road__free(k);
        road__free(v);
        return ROAD_ERR_NO_MEMORY;
    }
    w->m[w->n_meta].key = k;
    w->m[w->n_meta].value = v;
    w->n_meta++;
    return ROAD_OK;
}

/* Header output goes through a sink that either counts (buf NULL) or writes, so the header is
 * sized first and allocated once. */
typedef struct st_sink {
    char *buf;
    size_t len;
} st_sink;

static void sink_put(st_sink *k, const char *p, size_t n) {
    if (k->buf) memcpy(k->buf + k->len, p, n);
    k->len += n;
}

static void sink_str(st_sink *k, const char *s) {
    sink_put(k, s, strlen(s));
}

/* A JSON string, escaped exactly as serde_json does: the two-character forms for " \ \b \f \n
 * \r \t, \u00xx (lowercase hex) for other control characters, everything else verbatim. */
static void sink_json_string(st_sink *k, const char *s) {
    static const char hex[] = "0123456789abcdef";
    static const char short_from[] = "\"\\\b\f\n\r\t", short_to[] = "\"\\bfnrt";
    sink_put(k, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *hit = memchr(short_from, *p, sizeof short_from - 1);
        if (hit) {
            char esc[2] = {'\\', short_to[hit - short_from]};
            sink_put(k, esc, 2);
        } else if (*p < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            sink_put(k, esc, 6);
        } else {
            sink_put(k, (const char *)p, 1);
        }
    }
    sink_put(k, "\"", 1);
}

static void sink_int(st_sink *k, long long v) {
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    sink_put(k, num, (size_t)n);
}

/* The header JSON for tensors already sorted (cmp_wtensor) with offsets assigned in that order. */
static void emit_header(st_sink *k, const road_st_writer *w) {
    int first = 1;
    sink_put(k, "{", 1);
    if (w->n_meta) {
        sink_json_string(k, ST_METADATA_KEY);
        sink_put(k, ":{", 2);
        for (int64_t i = 0; i < w->n_meta; i++) {
            if (i) sink_put(k, ",", 1);
            sink_json_string(k, w->m[i].key);
            sink_put(k, ":", 1);
            sink_json_string(k, w->m[i].value);
        }
        sink_put(k, "}", 1);
        first = 0;
    }
    size_t offset = 0;
    for (int64_t i = 0; i < w->n; i++) {
        const st_wtensor *t = &w->t[i];
        if (!first) sink_put(k, ",", 1);
        first = 0;
        sink_json_string(k, t->name);
        sink_str(k, ":{\"dtype\":");
        sink_json_string(k, road_dtype_name(t->dtype));
        sink_str(k, ",\"shape\":[");
        for (int32_t d = 0; d < t->ndim; d++) {
            if (d) sink_put(k, ",", 1);
            sink_int(k, (long long)t->shape[d]);
        }
        sink_str(k, "],\"data_offsets\":[");
        sink_int(k, (long long)offset);
        sink_put(k, ",", 1);
        offset += t->nbytes;
        sink_int(k, (long long)offset);
        sink_str(k, "]}");
    }
    sink_put(k, "}", 1);
}

/* The reference writer's order: dtypes by its enum order, largest first (which keeps every
 * tensor aligned to its element size when the data section starts 8-byte aligned), then by
 * name. For a file of one dtype this is plain name order. */
static int dtype_rank(road_dtype t) {
    switch (t) {
    case ROAD_DTYPE_I64: return 9;
    case ROAD_DTYPE_F64: return 8;
    case ROAD_DTYPE_F32: return 7;
    case ROAD_DTYPE_I32: return 6;
    case ROAD_DTYPE_BF16: return 5;
    case ROAD_DTYPE_F16: return 4;
    case ROAD_DTYPE_I16: return 3;
    case ROAD_DTYPE_I8: return 2;
    case ROAD_DTYPE_U8: return 1;
    default: return 0; /* BOOL */
    }
}

static int cmp_wtensor(const void *a, const void *b) {
    const st_wtensor *x = a, *y = b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_wmeta(const void *a, const void *b) {
    const st_wmeta *x = a, *y = b;
    return strcmp(x->key, y->key);
}

road_status road_st_writer_save(road_st_writer *w, const char *path) {
    if (!w || !path)
        return road__error(ROAD_ERR_INVALID_ARG, "road_st_writer_save: writer or path is NULL");
    if (w->n > INT_MAX - 1)
        return road__error(ROAD_ERR_INVALID_ARG, "'%s': too many tensors (%lld)", path,
                           (long long)w->n);
    /* A fixed order makes the file independent of the order tensors were added in. */
    if (w->n > 1) qsort(w->t, (size_t)w->n, sizeof *w->t, cmp_wtensor);
    if (w->n_meta > 1) qsort(w->m, (size_t)w->n_meta, sizeof *w->m, cmp_wmeta);
    double total = 0;
    for (int64_t i = 0; i < w->n; i++) total += (double)w->t[i].nbytes;
    if (total >= ST_JSON_INT_LIMIT)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "'%s': tensors total %.0f bytes, too large for safetensors", path,
                           total);

    st_sink k = {NULL, 0};
    emit_header(&k, w);
    size_t hlen = (k.len + ST_HEADER_ALIGN - 1) / ST_HEADER_ALIGN * ST_HEADER_ALIGN;
    int n_parts = (int)w->n + 1; /* length + header, then each tensor's bytes */
    size_t alloc = ST_LEN_BYTES + hlen;
    size_t parts_off = align_up(alloc);
    size_t lens_off = parts_off + (size_t)n_parts * sizeof(void *);
    unsigned char *mem = road__malloc(lens_off + (size_t)n_parts * sizeof(size_t));
    if (!mem) return ROAD_ERR_NO_MEMORY;
    for (unsigned i = 0; i < ST_LEN_BYTES; i++) mem[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    k.buf = (char *)mem + ST_LEN_BYTES;
    k.len = 0;
    emit_header(&k, w);
    memset(k.buf + k.len, ' ', hlen - k.len); /* the format pads with spaces */

    const void **parts = (const void **)(mem + parts_off);
    size_t *lens = (size_t *)(mem + lens_off);
    parts[0] = mem;
    lens[0] = ST_LEN_BYTES + hlen;
    for (int64_t i = 0; i < w->n; i++) {
        parts[i + 1] = w->t[i].data;
        lens[i + 1] = w->t[i].nbytes;
    }
    road_status s = road__file_write_atomic_parts(path, parts, lens, n_parts);
    road__free(mem);
    return s;
}

road_status road__st_writer_finish(road_st_writer *w, road_status s, const char *dir,
                                   const char *name) {
    char *path = NULL;
    if (s == ROAD_OK) {
        path = road__path_join(dir, name);
        s = path ? road_st_writer_save(w, path) : ROAD_ERR_NO_MEMORY;
    }
    road__free(path);
    road_st_writer_free(w);
    return s;
}
