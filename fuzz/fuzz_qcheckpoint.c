/*
 * fuzz/fuzz_qcheckpoint.c - libFuzzer target for the quantized-checkpoint reader
 * (quant/qcheckpoint.c).
 *
 * The input is a safetensors file image. Whatever it holds, road__qckpt_read for layer "L" must
 * either refuse with a message or return a tensor whose every part lies inside the input, with
 * the sizes the layer needs: the target dequantizes it and runs a decode and a prefill matmul
 * (ASan catches any read the validation let through). Layer shapes tried: the seed corpus's
 * (4 x 64) and a few others, including ones that do not match.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant/qcheckpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const road_st_tensor *find(void *ctx, const char *name) {
    return road_st_find(ctx, name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    road_st_file *f = NULL;
    if (road_st_open_memory(data, size, &f) != ROAD_OK) return 0;
    static const int64_t shapes[][2] = {{4, 64}, {3, 5}, {1, 1}, {64, 4}, {9, 45}};
    static float w[9 * 64], x[9 * 64], y[9 * 64];
    memset(x, 0, sizeof x);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t rows = shapes[s][0], cols = shapes[s][1];
        (void)road__qckpt_is_quantized(find, f, "L");
        road_qtensor *q = NULL;
        if (road__qckpt_read(find, f, "L", rows, cols, &q) != ROAD_OK) {
            if (q != NULL || road_last_error()[0] == '\0') __builtin_trap();
            continue;
        }
        if (q->rows != rows || q->cols != cols) __builtin_trap();
        if (road_qtensor_dequantize_rows(q, 0, rows, w) != ROAD_OK) __builtin_trap();
        if (road_qtensor_xwt(q, 1, x, NULL, y) != ROAD_OK) __builtin_trap();
        if (rows * cols <= 9 * 64 && road_qtensor_xwt(q, 9, x, NULL, y) != ROAD_OK)
            __builtin_trap();
        road_qtensor_free(q);
    }
    road_st_close(f);
    return 0;
}
