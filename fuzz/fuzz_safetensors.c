/*
 * fuzz/fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * The input is a whole file image. Whatever it is, road_st_open_memory must either refuse it
 * with a message or hand out tensors whose every byte lies inside the input, so the target
 * touches all of them (ASan then catches any pointer the validation let through) and runs the
 * lookups the rest of road uses.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "road/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest tensor converted to float32 per input; bigger ones are only read byte by byte. */
#define FUZZ_CONVERT_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    road_st_file *f = NULL;
    if (road_st_open_memory(data, size, &f) != ROAD_OK) {
        /* A refusal must come with a message. */
        if (f != NULL || road_last_error()[0] == '\0') __builtin_trap();
        return 0;
    }
    static float scratch[FUZZ_CONVERT_MAX];
    unsigned sum = 0;
    int64_t n = road_st_count(f);
    for (int64_t i = 0; i < n; i++) {
        const road_st_tensor *t = road_st_at(f, i);
        const unsigned char *p = t->data;
        if (p < data || p + t->nbytes > data + size) __builtin_trap();
        for (size_t b = 0; b < t->nbytes; b++) sum += p[b];
        if ((size_t)t->numel <= FUZZ_CONVERT_MAX)
            road_dtype_to_f32(t->dtype, t->data, scratch, (size_t)t->numel);
        if (road_st_find(f, t->name) != t) __builtin_trap();
        const float *x = NULL;
        road_st_get_f32(f, t->name, t->ndim, t->shape, &x, NULL);
    }
    for (int64_t i = 0; i < road_st_metadata_count(f); i++) {
        const char *key = road_st_metadata_key(f, i);
        const char *value = road_st_metadata(f, key);
        if (!value) __builtin_trap();
        sum += (unsigned)strlen(value);
    }
    road_st_close(f);
    /* Keep the reads from being optimised away. */
    volatile unsigned sink = sum;
    (void)sink;
    return 0;
}
