/*
 * tests/test_safetensors.c - the safetensors reader and writer.
 *
 * Independent references: the golden files (written by the Python safetensors library), a file
 * image laid out byte by byte in this test, and the reference implementation's rules for
 * malformed files. Every failing open is also checked for leaks (road's allocation counters,
 * file descriptors and mappings), and the reader and writer are run under out-of-memory
 * injection at every allocation.
 *
 * Headers in this file are written with ' for " to keep them readable; make_image swaps them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "testutil.h"

/* Upper bound on allocations in one open or save, so a broken injection loop cannot spin. */
#define OOM_MAX_STEPS 1000

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/road_st_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    static const char *const files[] = {"empty",
                                        "seven",
                                        "short",
                                        "huge",
                                        "rt.safetensors",
                                        "tiny.safetensors",
                                        "copy.safetensors",
                                        "bf16.safetensors",
                                        "oom.safetensors",
                                        "empty.safetensors",
                                        "esc.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(tmp_path(files[i]));
    return rmdir(tmpdir);
}

/* A file image: 8-byte little-endian header length, the header (' turned into "), then
 * data_len bytes of data (0, 1, 2, ...). Free with free(). */
static unsigned char *make_image(const char *header, size_t data_len, size_t *len) {
    size_t n = strlen(header);
    unsigned char *img = tu_alloc(8 + n + data_len);
    for (int i = 0; i < 8; i++) img[i] = (unsigned char)((uint64_t)n >> (8 * i));
    for (size_t i = 0; i < n; i++) img[8 + i] = header[i] == '\'' ? '"' : (unsigned char)header[i];
    for (size_t i = 0; i < data_len; i++) img[8 + n + i] = (unsigned char)i;
    *len = 8 + n + data_len;
    return img;
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (len) assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_whole(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        print_error("cannot open %s: %s\n", path, strerror(errno));
        fail();
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = tu_alloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* The lowest free descriptor: if an open leaked one, this number goes up. */
static int next_fd(void) {
    int fd = open("/dev/null", O_RDONLY);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

/* Whether `path` is mapped into this process (Linux; false where /proc is absent). */
static int is_mapped(const char *path) {
    FILE *fp = fopen("/proc/self/maps", "r");
    if (!fp) return 0;
    char line[4096];
    int found = 0;
    size_t n = strlen(path);
    while (fgets(line, sizeof line, fp)) {
        /* The path ends the line; match it whole, not as a prefix of a longer name. */
        size_t m = strcspn(line, "\n");
        if (m >= n && memcmp(line + m - n, path, n) == 0) found = 1;
    }
    fclose(fp);
    return found;
}

/* Whether the bytes hold the string (memmem is not in strict C11 + POSIX). */
static int contains(const unsigned char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(hay + i, needle, m) == 0) return 1;
    }
    return 0;
}

static void check_no_leak(const char *what, int64_t live_before) {
    int64_t now = road__alloc_live_bytes();
    if (now != live_before) {
        print_error("%s: %lld bytes leaked\n", what, (long long)(now - live_before));
        fail();
    }
}

/* Open an image in memory and expect a specific failure, with nothing left allocated. */
static void expect_bad_image(const unsigned char *img, size_t len, road_status want,
                             const char *needle, const char *what) {
    int64_t live = road__alloc_live_bytes();
    road_st_file *f = (road_st_file *)&f; /* must be reset to NULL on failure */
    road_status s = road_st_open_memory(img, len, &f);
    if (s != want || (needle && !strstr(road_last_error(), needle))) {
        print_error("case %s: got %s \"%s\", want %s mentioning \"%s\"\n", what,
                    road_status_name(s), road_last_error(), road_status_name(want),
                    needle ? needle : "");
        fail();
    }
    assert_null(f);
    check_no_leak(what, live);
}

static void expect_bad_header(const char *header, size_t data_len, road_status want,
                              const char *needle) {
    size_t len;
    unsigned char *img = make_image(header, data_len, &len);
    expect_bad_image(img, len, want, needle, header);
    free(img);
}

/* Open a file by path and expect a failure, with no leaked memory, descriptor or mapping. */
static void expect_bad_file(const char *path, road_status want, const char *needle) {
    int64_t live = road__alloc_live_bytes();
    int fd = next_fd();
    road_st_file *f = NULL;
    TU_FAILS(road_st_open(path, &f), want, needle);
    assert_null(f);
    check_no_leak(path, live);
    assert_int_equal(next_fd(), fd);
    assert_false(is_mapped(path));
}

/* ---- golden files ---------------------------------------------------------------------------- */

static void test_golden_apply(void **state) {
    (void)state;
    int64_t live = road__alloc_live_bytes();
    road_st_file *f = tu_open_golden("golden/apply.safetensors");
    assert_true(road_st_count(f) > 100);
    assert_true(is_mapped(tu_fixture("golden/apply.safetensors"))); /* the leak check works */
    const road_st_tensor *t = road_st_find(f, "road_1_g2_o8_2d/x");
    assert_non_null(t);
    assert_int_equal(t->dtype, ROAD_DTYPE_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 8);
    assert_int_equal(t->numel, 16);
    assert_int_equal(t->nbytes, 64);
    assert_string_equal(t->name, "road_1_g2_o8_2d/x");
    assert_string_equal(road_st_metadata(f, "category"), "apply");
    assert_true(road_st_metadata_count(f) >= 1);
    assert_null(road_st_metadata(f, "no such key"));
    assert_null(road_st_find(f, "road_1_g2_o8_2d/nope"));

    /* road_st_at: in data-offset order, covering the data section exactly. */
    const road_st_tensor *prev = NULL;
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *u = road_st_at(f, i);
        assert_non_null(u);
        if (prev) assert_ptr_equal((const unsigned char *)prev->data + prev->nbytes, u->data);
        assert_ptr_equal(road_st_find(f, u->name), u);
        prev = u;
    }
    assert_null(road_st_at(f, road_st_count(f)));
    assert_null(road_st_at(f, -1));

    const int64_t shape[2] = {2, 8};
    const float *x = NULL;
    const road_st_tensor *info = NULL;
    TU_OK(road_st_get_f32(f, "road_1_g2_o8_2d/x", 2, shape, &x, &info));
    assert_ptr_equal(x, t->data);
    assert_ptr_equal(info, t);
    TU_OK(road_st_get_f32(f, "road_1_g2_o8_2d/x", -1, NULL, &x, NULL));
    const int64_t wrong[2] = {8, 2};
    TU_FAILS(road_st_get_f32(f, "road_1_g2_o8_2d/x", 2, wrong, &x, NULL), ROAD_ERR_SHAPE,
             "tensor 'road_1_g2_o8_2d/x' is F32 [2, 8], expected F32 [8, 2]");
    assert_null(x);
    TU_FAILS(road_st_get_f32(f, "road_1_g2_o8_2d/x", 1, shape, &x, NULL), ROAD_ERR_SHAPE,
             "expected F32 [2]");
    TU_FAILS(road_st_get_f32(f, "missing", 1, shape, &x, NULL), ROAD_ERR_NOT_FOUND,
             "no tensor named 'missing'");
    assert_non_null(strstr(road_last_error(), "apply.safetensors"));
    road_st_close(f);
    check_no_leak("golden apply", live);
    assert_false(is_mapped(tu_fixture("golden/apply.safetensors")));
}

static const char *const mlp_names[4] = {
    "base_model.model.lin0.road_alpha", "base_model.model.lin0.road_theta",
    "base_model.model.lin1.road_alpha", "base_model.model.lin1.road_theta"};
static const int64_t mlp_sizes[4] = {10, 10, 1, 1};

static void test_golden_adapter(void **state) {
    (void)state;
    road_st_file *f = tu_open_golden("golden/e2e_adapters/mlp/adapter_model.safetensors");
    assert_int_equal(road_st_count(f), 4);
    assert_int_equal(road_st_metadata_count(f), 1);
    assert_string_equal(road_st_metadata_key(f, 0), "format");
    assert_string_equal(road_st_metadata(f, "format"), "pt");
    assert_null(road_st_metadata_key(f, 1));
    for (int i = 0; i < 4; i++) {
        const road_st_tensor *t = road_st_at(f, i);
        assert_string_equal(t->name, mlp_names[i]); /* offsets follow name order here */
        assert_int_equal(t->ndim, 1);
        assert_int_equal(t->shape[0], mlp_sizes[i]);
        assert_int_equal(t->dtype, ROAD_DTYPE_F32);
    }
    road_st_close(f);
    road_st_close(NULL);
}

/* ---- writer ---------------------------------------------------------------------------------- */

/* The exact bytes of a tiny file, laid out by hand: header length 136 (130 bytes of JSON padded
 * with 6 spaces), metadata first, tensors in name order ("a" before "b" although added after). */
static void test_writer_exact_bytes(void **state) {
    (void)state;
    static const char header[] = "{\"__metadata__\":{\"k\":\"v\"},"
                                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]}}";
    unsigned char want[8 + 136 + 9];
    assert_int_equal(strlen(header), 130);
    const unsigned char len_le[8] = {0x88, 0, 0, 0, 0, 0, 0, 0};
    memcpy(want, len_le, 8);
    memcpy(want + 8, header, 130);
    memset(want + 8 + 130, ' ', 6);
    const unsigned char data[9] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x07};
    memcpy(want + 144, data, 9);

    int64_t live = road__alloc_live_bytes();
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    const uint8_t seven = 7;
    TU_OK(road_st_writer_add(w, "b", ROAD_DTYPE_U8, 0, NULL, &seven));
    const float a[2] = {1.0f, -2.0f};
    const int64_t shape[1] = {2};
    TU_OK(road_st_writer_add(w, "a", ROAD_DTYPE_F32, 1, shape, a));
    TU_OK(road_st_writer_set_metadata(w, "k", "old"));
    TU_OK(road_st_writer_set_metadata(w, "k", "v")); /* replaces */
    TU_OK(road_st_writer_save(w, tmp_path("tiny.safetensors")));
    road_st_writer_free(w);
    check_no_leak("writer", live);

    size_t len;
    unsigned char *got = read_whole(tmp_path("tiny.safetensors"), &len);
    assert_int_equal(len, sizeof want);
    for (size_t i = 0; i < len; i++) {
        if (got[i] != want[i]) {
            print_error("byte %zu: got 0x%02x '%c', want 0x%02x '%c'\n", i, got[i],
                        got[i] >= 32 && got[i] < 127 ? got[i] : '?', want[i],
                        want[i] >= 32 && want[i] < 127 ? want[i] : '?');
            fail();
        }
    }
    free(got);
}

/* Re-writing the PEFT checkpoint gives the identical file: same JSON, same padding. */
static void test_writer_matches_reference(void **state) {
    (void)state;
    const char *rel = "golden/e2e_adapters/mlp/adapter_model.safetensors";
    road_st_file *f = tu_open_golden(rel);
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    for (int64_t i = road_st_count(f) - 1; i >= 0; i--) {
        const road_st_tensor *t = road_st_at(f, i);
        TU_OK(road_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
    }
    TU_OK(road_st_writer_set_metadata(w, "format", "pt"));
    TU_OK(road_st_writer_save(w, tmp_path("copy.safetensors")));
    road_st_writer_free(w);
    road_st_close(f);
    size_t a_len, b_len;
    unsigned char *a = read_whole(tu_fixture(rel), &a_len);
    unsigned char *b = read_whole(tmp_path("copy.safetensors"), &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    free(a);
    free(b);
}

static void test_writer_round_trip(void **state) {
    (void)state;
    int64_t live = road__alloc_live_bytes();
    struct {
        const char *name;
        road_dtype dtype;
        int32_t ndim;
        int64_t shape[3];
    } specs[] = {
        {"f32", ROAD_DTYPE_F32, 2, {2, 3}},
        {"bf16", ROAD_DTYPE_BF16, 1, {4}},
        {"f16", ROAD_DTYPE_F16, 1, {3}},
        {"f64", ROAD_DTYPE_F64, 1, {2}},
        {"i64", ROAD_DTYPE_I64, 1, {1}},
        {"i32", ROAD_DTYPE_I32, 2, {2, 2}},
        {"i16", ROAD_DTYPE_I16, 1, {3}},
        {"i8", ROAD_DTYPE_I8, 3, {1, 2, 3}},
        {"scalar", ROAD_DTYPE_U8, 0, {0}},
        {"bool", ROAD_DTYPE_BOOL, 1, {2}},
        {"empty", ROAD_DTYPE_F32, 2, {0, 4}},
        {"q\"uote\\ \n\t\x01 \xc3\xa9", ROAD_DTYPE_F32, 0, {0}},
    };
    enum { N_SPECS = sizeof specs / sizeof specs[0] };
    unsigned char bytes[N_SPECS][64];
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    for (int i = 0; i < N_SPECS; i++) {
        for (int j = 0; j < 64; j++) bytes[i][j] = (unsigned char)(i * 31 + j * 7);
        TU_OK(road_st_writer_add(w, specs[i].name, specs[i].dtype, specs[i].ndim, specs[i].shape,
                                 bytes[i]));
    }
    TU_OK(road_st_writer_set_metadata(w, "z", "last"));
    TU_OK(road_st_writer_set_metadata(w, "a \"key\"", "line\nbreak \xe2\x82\xac"));
    TU_OK(road_st_writer_save(w, tmp_path("rt.safetensors")));
    /* Saving twice replaces the file (and the writer is still usable). */
    TU_OK(road_st_writer_save(w, tmp_path("rt.safetensors")));
    road_st_writer_free(w);

    /* Names are escaped as serde_json escapes them. */
    size_t raw_len;
    unsigned char *raw = read_whole(tmp_path("rt.safetensors"), &raw_len);
    const char *escaped = "\"q\\\"uote\\\\ \\n\\t\\u0001 \xc3\xa9\":{";
    assert_true(raw_len > 8 + strlen(escaped));
    assert_true(contains(raw, raw_len, escaped));
    free(raw);

    road_st_file *f = NULL;
    TU_OK(road_st_open(tmp_path("rt.safetensors"), &f));
    assert_int_equal(road_st_count(f), N_SPECS);
    for (int i = 0; i < N_SPECS; i++) {
        const road_st_tensor *t = road_st_find(f, specs[i].name);
        if (!t) {
            print_error("tensor '%s' missing after the round trip\n", specs[i].name);
            fail();
        }
        assert_int_equal(t->dtype, specs[i].dtype);
        assert_int_equal(t->ndim, specs[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], specs[i].shape[d]);
            numel *= specs[i].shape[d];
        }
        assert_int_equal(t->numel, numel);
        assert_int_equal(t->nbytes, (size_t)numel * road_dtype_size(specs[i].dtype));
        if (t->nbytes) assert_memory_equal(t->data, bytes[i], t->nbytes);
    }
    /* The reference writer's layout: larger element sizes first (then dtype, then name), so
     * every tensor's data is aligned to its element size. */
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *t = road_st_at(f, i);
        assert_int_equal((uintptr_t)t->data % road_dtype_size(t->dtype), 0);
        if (i == 0) continue;
        const road_st_tensor *p = road_st_at(f, i - 1);
        assert_true(road_dtype_size(p->dtype) >= road_dtype_size(t->dtype));
        if (p->dtype == t->dtype) assert_true(strcmp(p->name, t->name) < 0);
    }
    assert_int_equal(road_st_metadata_count(f), 2);
    assert_string_equal(road_st_metadata_key(f, 0), "a \"key\"");
    assert_string_equal(road_st_metadata(f, "a \"key\""), "line\nbreak \xe2\x82\xac");
    assert_string_equal(road_st_metadata(f, "z"), "last");

    /* The wrong dtype is reported with both descriptions. */
    const int64_t bshape[1] = {4};
    TU_FAILS(road_st_get_f32(f, "bf16", 1, bshape, NULL, NULL), ROAD_ERR_FORMAT,
             "tensor 'bf16' is BF16 [4], expected F32 [4]");
    TU_FAILS(road_st_get_f32(f, "scalar", -1, NULL, NULL, NULL), ROAD_ERR_FORMAT,
             "is U8 [], expected F32 of any shape");
    road_st_close(f);
    check_no_leak("round trip", live);
}

static void test_writer_empty(void **state) {
    (void)state;
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    TU_OK(road_st_writer_save(w, tmp_path("empty.safetensors")));
    road_st_writer_free(w);
    size_t len;
    unsigned char *got = read_whole(tmp_path("empty.safetensors"), &len);
    static const unsigned char want[16] = {8,   0,   0,   0,   0,   0,   0,   0,
                                           '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    assert_int_equal(len, sizeof want);
    assert_memory_equal(got, want, sizeof want);
    free(got);
    road_st_file *f = NULL;
    TU_OK(road_st_open(tmp_path("empty.safetensors"), &f));
    assert_int_equal(road_st_count(f), 0);
    assert_null(road_st_find(f, "x"));
    assert_null(road_st_at(f, 0));
    road_st_close(f);
}

static void test_writer_errors(void **state) {
    (void)state;
    int64_t live = road__alloc_live_bytes();
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    const float x[4] = {0};
    const int64_t shape[2] = {2, 2};
    const int64_t neg[2] = {2, -2};
    const int64_t huge[3] = {(int64_t)1 << 40, (int64_t)1 << 40, 0};
    TU_OK(road_st_writer_add(w, "x", ROAD_DTYPE_F32, 2, shape, x));
    TU_FAILS(road_st_writer_add(w, "x", ROAD_DTYPE_F32, 2, shape, x), ROAD_ERR_EXISTS,
             "'x' was already added");
    TU_FAILS(road_st_writer_add(w, "__metadata__", ROAD_DTYPE_F32, 2, shape, x),
             ROAD_ERR_INVALID_ARG, "reserved");
    TU_FAILS(road_st_writer_add(w, "n", ROAD_DTYPE_F32, 2, neg, x), ROAD_ERR_INVALID_ARG,
             "negative");
    TU_FAILS(road_st_writer_add(w, "h", ROAD_DTYPE_F32, 3, huge, x), ROAD_ERR_INVALID_ARG,
             "overflows");
    TU_FAILS(road_st_writer_add(w, "d", ROAD_DTYPE_F32, 2, shape, NULL), ROAD_ERR_INVALID_ARG,
             "data is NULL");
    TU_FAILS(road_st_writer_add(w, "k", ROAD_DTYPE_F32, 9, shape, x), ROAD_ERR_INVALID_ARG, "ndim");
    TU_FAILS(road_st_writer_add(w, "t", ROAD_DTYPE_COUNT_, 2, shape, x), ROAD_ERR_INVALID_ARG,
             "dtype");
    TU_FAILS(road_st_writer_add(w, "bad\xff", ROAD_DTYPE_F32, 2, shape, x), ROAD_ERR_INVALID_ARG,
             "UTF-8");
    TU_FAILS(road_st_writer_set_metadata(w, "k", "\xc0\x80"), ROAD_ERR_INVALID_ARG, "UTF-8");
    TU_FAILS(road_st_writer_add(NULL, "x", ROAD_DTYPE_F32, 2, shape, x), ROAD_ERR_INVALID_ARG,
             NULL);
    TU_FAILS(road_st_writer_save(w, tmp_path("no/such/folder/x.safetensors")), ROAD_ERR_IO,
             "no/such/folder");
    road_st_writer_free(w);
    road_st_writer_free(NULL);
    check_no_leak("writer errors", live);
}

/* ---- malformed files ------------------------------------------------------------------------- */

#define ENTRY_A "'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}"

static void test_malformed_headers(void **state) {
    (void)state;
    static const struct {
        const char *header;
        size_t data_len;
        road_status status;
        const char *needle;
    } cases[] = {
        {"", 0, ROAD_ERR_FORMAT, "not valid JSON"},
        {"{'a':", 8, ROAD_ERR_FORMAT, "not valid JSON"},
        {"{" ENTRY_A "} x", 8, ROAD_ERR_FORMAT, "not valid JSON"},
        {"[1,2]", 0, ROAD_ERR_FORMAT, "must be a JSON object"},
        {"'a'", 0, ROAD_ERR_FORMAT, "must be a JSON object"},
        {"{'a':5}", 0, ROAD_ERR_FORMAT, "tensor 'a': entry must be a JSON object"},
        {"{'a':{'shape':[2],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT, "'a' has no \"dtype\""},
        {"{'a':{'dtype':'F32','data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT, "no \"shape\""},
        {"{'a':{'dtype':'F32','shape':[2]}}", 8, ROAD_ERR_FORMAT, "no \"data_offsets\""},
        {"{'a':{'dtype':5,'shape':[2],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "\"dtype\" must be a string"},
        {"{'a':{'dtype':'F99','shape':[2],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "unknown dtype 'F99'"},
        {"{'a':{'dtype':'F8_E4M3','shape':[8],'data_offsets':[0,8]}}", 8, ROAD_ERR_UNSUPPORTED,
         "tensor 'a': dtype 'F8_E4M3'"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8],'dtype':'F32'}}", 8, ROAD_ERR_FORMAT,
         "\"dtype\" appears twice"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offset':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "unknown key \"data_offset\""},
        {"{'a':{'dtype':'F32','shape':[-2],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "shape[0] is not a non-negative integer"},
        {"{'a':{'dtype':'F32','shape':[1.5],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "shape[0] is not"},
        {"{'a':{'dtype':'F32','shape':[2,'2'],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "shape[1] is not"},
        {"{'a':{'dtype':'F32','shape':[9007199254740992],'data_offsets':[0,8]}}", 8,
         ROAD_ERR_FORMAT, "below 2^53"},
        {"{'a':{'dtype':'F32','shape':[1e400],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "shape[0]"},
        {"{'a':{'dtype':'F32','shape':2,'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "\"shape\" must be an array"},
        {"{'a':{'dtype':'F32','shape':[1,1,1,1,1,1,1,1,2],'data_offsets':[0,8]}}", 8,
         ROAD_ERR_UNSUPPORTED, "9 dimensions"},
        /* 2^32 cubed overflows 64 bits; the zero after it does not rescue it (as in the
         * reference, which multiplies in order). */
        {"{'a':{'dtype':'F32','shape':[4294967296,4294967296,4294967296],'data_offsets':[0,8]}}", 8,
         ROAD_ERR_FORMAT, "overflows"},
        {"{'a':{'dtype':'F32','shape':[4294967296,4294967296,0],'data_offsets':[0,0]}}", 0,
         ROAD_ERR_FORMAT, "overflows"},
        /* numel 2^62 fits, times 4 bytes does not. */
        {"{'a':{'dtype':'F32','shape':[2147483648,2147483648],'data_offsets':[0,8]}}", 8,
         ROAD_ERR_FORMAT, "overflows"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[8,0]}}", 8, ROAD_ERR_FORMAT,
         "[8, 0] end before they begin"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,16]}}", 8, ROAD_ERR_FORMAT,
         "out of bounds: the data section has 8 bytes"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[0]}}", 8, ROAD_ERR_FORMAT,
         "\"data_offsets\" must be [begin, end]"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8,8]}}", 8, ROAD_ERR_FORMAT,
         "\"data_offsets\" must be"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8.5]}}", 8, ROAD_ERR_FORMAT,
         "\"data_offsets\" must be"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':[-8,0]}}", 8, ROAD_ERR_FORMAT,
         "\"data_offsets\" must be"},
        {"{'a':{'dtype':'F32','shape':[2],'data_offsets':'0,8'}}", 8, ROAD_ERR_FORMAT,
         "\"data_offsets\" must be"},
        {"{'a':{'dtype':'F32','shape':[3],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "'a' is F32 [3] = 12 bytes, but its data_offsets [0, 8] span 8 bytes"},
        {"{'a':{'dtype':'BF16','shape':[2],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "BF16 [2] = 4 bytes"},
        {"{" ENTRY_A ",'b':{'dtype':'F32','shape':[2],'data_offsets':[4,12]}}", 12, ROAD_ERR_FORMAT,
         "tensors 'a' and 'b' overlap"},
        {"{'z':{'dtype':'F32','shape':[0],'data_offsets':[4,4]}," ENTRY_A "}", 8, ROAD_ERR_FORMAT,
         "overlap"},
        {"{" ENTRY_A ",'b':{'dtype':'F32','shape':[2],'data_offsets':[12,20]}}", 20,
         ROAD_ERR_FORMAT, "data section has 4 bytes not covered by any tensor"},
        {"{" ENTRY_A "}", 12, ROAD_ERR_FORMAT, "data section has 4 bytes not covered"},
        {"{}", 1, ROAD_ERR_FORMAT, "data section has 1 bytes not covered"},
        {"{'b':{'dtype':'F32','shape':[2],'data_offsets':[8,16]}}", 16, ROAD_ERR_FORMAT,
         "8 bytes not covered"},
        {"{" ENTRY_A "," ENTRY_A "}", 8, ROAD_ERR_FORMAT,
         "tensor name 'a' appears twice in the header"},
        {"{'__metadata__':{'k':1}," ENTRY_A "}", 8, ROAD_ERR_FORMAT,
         "\"__metadata__\" value of 'k' is not a string"},
        {"{'__metadata__':{'k':null}}", 0, ROAD_ERR_FORMAT, "is not a string"},
        {"{'__metadata__':'x'}", 0, ROAD_ERR_FORMAT, "must be an object of string values"},
        {"{'__metadata__':{},'__metadata__':{}}", 0, ROAD_ERR_FORMAT, "appears twice"},
        {"{'__metadata__':{'k':'a','k':'b'}}", 0, ROAD_ERR_FORMAT, "key 'k' appears twice"},
        {"{'a\xff':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 8, ROAD_ERR_FORMAT,
         "not valid UTF-8 (byte 0xff at header offset 3)"},
        {"{'a\xc0\xaf':{}}", 0, ROAD_ERR_FORMAT, "not valid UTF-8"},         /* overlong '/' */
        {"{'a\xed\xa0\x80':{}}", 0, ROAD_ERR_FORMAT, "not valid UTF-8"},     /* surrogate */
        {"{'a\xf4\x90\x80\x80':{}}", 0, ROAD_ERR_FORMAT, "not valid UTF-8"}, /* > U+10FFFF */
        {"{'a\xe2\x82':{}}", 0, ROAD_ERR_FORMAT, "not valid UTF-8"},         /* cut short */
        {"{'a\nb':{}}", 0, ROAD_ERR_FORMAT, "raw control character 0x0a"},
        {"{'a\\u0000b':{}}", 0, ROAD_ERR_FORMAT, "\\u0000"},
        /* Escapes are skipped properly: an escaped quote does not end the string, so the
         * \u0000 is still inside it; and "\\" followed by u0000 is plain text. */
        {"{'a\\'\\u0000':{}}", 0, ROAD_ERR_FORMAT, "\\u0000"},
        {"{'a\\\\u0000':{'dtype':'F32','shape':[2],'data_offsets':[0,9]}}", 8, ROAD_ERR_FORMAT,
         "out of bounds"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_bad_header(cases[i].header, cases[i].data_len, cases[i].status, cases[i].needle);
}

static void test_malformed_binary(void **state) {
    (void)state;
    size_t len;
    unsigned char *img = make_image("{}", 0, &len);
    expect_bad_image(img, 0, ROAD_ERR_FORMAT, "file is 0 bytes, too short", "len 0");
    expect_bad_image(img, 7, ROAD_ERR_FORMAT, "file is 7 bytes", "len 7");
    expect_bad_image(img, 9, ROAD_ERR_FORMAT, "header length 2 exceeds the file size 9",
                     "header cut");
    free(img);

    /* A header length beyond the file, and one beyond the format's 100 MB limit. */
    unsigned char small[120] = {0};
    const uint64_t lens[3] = {9999999, 100000001, UINT64_MAX};
    const char *const needles[3] = {("header length 9999999 exceeds the file size 120; the file "
                                     "is truncated or not a safetensors file"),
                                    "header length 100000001 exceeds the 100000000-byte limit",
                                    "exceeds the 100000000-byte limit"};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 8; i++) small[i] = (unsigned char)(lens[k] >> (8 * i));
        expect_bad_image(small, sizeof small, ROAD_ERR_FORMAT, needles[k], needles[k]);
    }

    /* A NUL byte inside the header. */
    img = make_image("{'a':{}}", 0, &len);
    img[8 + 3] = 0;
    expect_bad_image(img, len, ROAD_ERR_FORMAT, "NUL byte at header offset 3", "NUL");
    free(img);

    /* Nesting far beyond cJSON's limit is refused, not a stack overflow. */
    enum { DEPTH = 100000 };
    char *deep = tu_alloc(2 * DEPTH + 1);
    memset(deep, '[', DEPTH);
    memset(deep + DEPTH, ']', DEPTH);
    img = make_image(deep, 0, &len);
    expect_bad_image(img, len, ROAD_ERR_FORMAT, "not valid JSON", "deep");
    free(img);
    free(deep);

    TU_FAILS(road_st_open_memory(NULL, 8, NULL), ROAD_ERR_INVALID_ARG, NULL);
    road_st_file *f = NULL;
    TU_FAILS(road_st_open_memory(NULL, 8, &f), ROAD_ERR_INVALID_ARG, NULL);
    TU_FAILS(road_st_open(NULL, &f), ROAD_ERR_INVALID_ARG, NULL);
}

static void test_malformed_files(void **state) {
    (void)state;
    write_file(tmp_path("empty"), "", 0);
    expect_bad_file(tmp_path("empty"), ROAD_ERR_FORMAT, "file is 0 bytes");
    assert_non_null(strstr(road_last_error(), "/empty'"));
    write_file(tmp_path("seven"), "\x02\0\0\0\0\0\0", 7);
    expect_bad_file(tmp_path("seven"), ROAD_ERR_FORMAT, "file is 7 bytes");
    unsigned char hdr[120] = {0x7f, 0x96, 0x98, 0}; /* 9999999 little-endian */
    write_file(tmp_path("short"), hdr, sizeof hdr);
    expect_bad_file(tmp_path("short"), ROAD_ERR_FORMAT,
                    "header length 9999999 exceeds the file size 120; the file is truncated");
    /* Fails after mapping: the mapping must be gone too. */
    size_t len;
    unsigned char *img =
        make_image("{'a':{'dtype':'F32','shape':[2],'data_offsets':[0,8]}}", 4, &len);
    write_file(tmp_path("huge"), img, len);
    free(img);
    expect_bad_file(tmp_path("huge"), ROAD_ERR_FORMAT, "out of bounds");
    expect_bad_file(tmp_path("does-not-exist"), ROAD_ERR_IO, "cannot open");
    expect_bad_file(tmpdir, ROAD_ERR_IO, "not a regular file");
}

/* ---- valid corner cases ---------------------------------------------------------------------- */

static void test_valid_corners(void **state) {
    (void)state;
    /* Offsets in a different order from the JSON; an empty tensor sharing an offset; a header
     * length that is not a multiple of 8 (allowed when reading); integral numbers written
     * with an exponent. */
    const char *header = "{'b':{'dtype':'F32','shape':[1,2],'data_offsets':[8,16]},"
                         "'c':{'dtype':'F32','shape':[0,3],'data_offsets':[8,8]},"
                         "'a':{'dtype':'I8','shape':[8],'data_offsets':[0,8e0]}}";
    size_t len;
    unsigned char *img = make_image(header, 16, &len);
    int64_t live = road__alloc_live_bytes();
    road_st_file *f = NULL;
    TU_OK(road_st_open_memory(img, len, &f));
    assert_int_equal(road_st_count(f), 3);
    assert_string_equal(road_st_at(f, 0)->name, "a");
    assert_string_equal(road_st_at(f, 1)->name, "c");
    assert_string_equal(road_st_at(f, 2)->name, "b");
    assert_int_equal(road_st_at(f, 1)->numel, 0);
    assert_int_equal(road_st_metadata_count(f), 0);
    assert_null(road_st_metadata(f, "x"));
    const road_st_tensor *a = road_st_find(f, "a");
    assert_ptr_equal(a->data, img + 8 + strlen(header));
    assert_int_equal(((const unsigned char *)a->data)[7], 7);

    /* The data section starts at 8 + header length; whether 'b' is float-aligned depends on
     * that length, and road_st_get_f32 must refuse exactly when it is not. */
    const float *p = NULL;
    road_status s = road_st_get_f32(f, "b", -1, NULL, &p, NULL);
    const road_st_tensor *b = road_st_find(f, "b");
    int b_aligned = (uintptr_t)b->data % 4 == 0;
    if (b_aligned) {
        TU_OK(s);
        assert_ptr_equal(p, b->data);
    } else {
        TU_FAILS(s, ROAD_ERR_FORMAT, "not a multiple of 4");
    }
    road_st_close(f);
    check_no_leak("corners", live);

    /* Shift the whole image by one byte so that 'b' is misaligned whatever it was before. */
    unsigned char *shifted = tu_alloc(len + 1);
    unsigned char *start = shifted + (b_aligned ? 1 : 0);
    memcpy(start, img, len);
    TU_OK(road_st_open_memory(start, len, &f));
    TU_FAILS(road_st_get_f32(f, "b", 2, (const int64_t[2]){1, 2}, &p, NULL), ROAD_ERR_FORMAT,
             "tensor 'b' starts at file offset");
    assert_null(p);
    road_st_close(f);
    free(shifted);
    free(img);

    /* No tensors, no data. */
    img = make_image("{}", 0, &len);
    TU_OK(road_st_open_memory(img, len, &f));
    assert_int_equal(road_st_count(f), 0);
    road_st_close(f);
    free(img);
}

/* ---- out of memory --------------------------------------------------------------------------- */

static void test_oom_open(void **state) {
    (void)state;
    const char *path = tu_fixture("golden/e2e_adapters/mlp/adapter_model.safetensors");
    int64_t live = road__alloc_live_bytes();
    int k;
    for (k = 0; k < OOM_MAX_STEPS; k++) {
        road_st_file *f = NULL;
        road__alloc_fail_after(k);
        road_status s = road_st_open(path, &f);
        road__alloc_fail_after(-1);
        if (s == ROAD_OK) {
            assert_int_equal(road_st_count(f), 4);
            road_st_close(f);
            break;
        }
        TU_FAILS(s, ROAD_ERR_NO_MEMORY, "out of memory");
        assert_null(f);
        check_no_leak("oom open", live);
        assert_false(is_mapped(path));
    }
    assert_true(k > 0 && k < OOM_MAX_STEPS); /* it did allocate, and it did finish */
    check_no_leak("oom open", live);
}

static void test_oom_writer(void **state) {
    (void)state;
    const float x[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[2] = {2, 3};
    const char *path = tmp_path("oom.safetensors");
    int64_t live = road__alloc_live_bytes();
    int k;
    for (k = 0; k < OOM_MAX_STEPS; k++) {
        unlink(path);
        road_st_writer *w = NULL;
        road__alloc_fail_after(k);
        road_status s = road_st_writer_create(&w);
        for (int i = 0; s == ROAD_OK && i < 20; i++) { /* enough to make the arrays grow */
            char name[16];
            snprintf(name, sizeof name, "t%02d", i);
            s = road_st_writer_add(w, name, ROAD_DTYPE_F32, 2, shape, x);
        }
        if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt");
        if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt2");
        if (s == ROAD_OK) s = road_st_writer_save(w, path);
        road__alloc_fail_after(-1);
        road_st_writer_free(w);
        check_no_leak("oom writer", live);
        if (s == ROAD_OK) break;
        TU_FAILS(s, ROAD_ERR_NO_MEMORY, NULL);
        assert_int_equal(access(path, F_OK), -1); /* nothing half-written */
    }
    assert_true(k > 20 && k < OOM_MAX_STEPS);
    road_st_file *f = NULL;
    TU_OK(road_st_open(path, &f));
    assert_int_equal(road_st_count(f), 20);
    assert_string_equal(road_st_metadata(f, "format"), "pt2");
    road_st_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_apply),       cmocka_unit_test(test_golden_adapter),
        cmocka_unit_test(test_writer_exact_bytes), cmocka_unit_test(test_writer_matches_reference),
        cmocka_unit_test(test_writer_round_trip),  cmocka_unit_test(test_writer_empty),
        cmocka_unit_test(test_writer_errors),      cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_malformed_binary),   cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_valid_corners),      cmocka_unit_test(test_oom_open),
        cmocka_unit_test(test_oom_writer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
