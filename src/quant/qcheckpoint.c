/*
 * quant/qcheckpoint.c - reading and writing quantized linear weights in checkpoints, under
 * bitsandbytes' serialization names (see qcheckpoint.h), so road loads what transformers
 * saves with a BitsAndBytesConfig and transformers loads what road saves.
 *
 * Everything read is checked before use: the names, dtypes and element counts of every part,
 * 4-byte alignment of float parts (they are used in place), the quant_state JSON (the format
 * in its key must match its quant_type, blocksize 64, nested blocksize 256, shape = the
 * layer's), and that absmax values, maps and the nested offset are finite. A fuzz target
 * (fuzz/fuzz_qcheckpoint.c) feeds this reader arbitrary files.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/json.h"
#include "quant/qcheckpoint.h"

#define QNAME_CAP 512
/* A quant_state JSON is a few hundred bytes; anything much larger is not one. */
#define QSTATE_MAX_BYTES 4096

static const road_st_tensor *part(road_qckpt_find find, void *ctx, const char *prefix,
                                  const char *suffix) {
    char name[QNAME_CAP];
    int n = snprintf(name, sizeof name, "%s%s", prefix, suffix);
    if (n < 0 || (size_t)n >= sizeof name) return NULL;
    return find(ctx, name);
}

bool road__qckpt_is_quantized(road_qckpt_find find, void *ctx, const char *prefix) {
    const road_st_tensor *w = part(find, ctx, prefix, ".weight");
    return w && (w->dtype == ROAD_DTYPE_U8 || w->dtype == ROAD_DTYPE_I8);
}

/* The part must exist with this dtype and element count; floats must be aligned. */
static road_status want(road_qckpt_find find, void *ctx, const char *prefix, const char *suffix,
                        road_dtype dt, int64_t numel, const road_st_tensor **out) {
    const road_st_tensor *t = part(find, ctx, prefix, suffix);
    *out = t;
    if (!t)
        return road__error(ROAD_ERR_NOT_FOUND, "quantized layer '%s' has no tensor '%s%s'", prefix,
                           prefix, suffix);
    if (t->dtype != dt || (numel >= 0 && t->numel != numel))
        return road__error(ROAD_ERR_FORMAT,
                           "tensor '%s%s' is %s with %lld elements, expected %s with %lld", prefix,
                           suffix, road_dtype_name(t->dtype), (long long)t->numel,
                           road_dtype_name(dt), (long long)numel);
    if (dt == ROAD_DTYPE_F32 && (uintptr_t)t->data % sizeof(float) != 0)
        return road__error(ROAD_ERR_FORMAT, "tensor '%s%s' is not 4-byte aligned", prefix, suffix);
    return ROAD_OK;
}

static road_status finite(const road_st_tensor *t, const char *prefix, const char *suffix) {
    const float *x = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(x[i]))
            return road__error(ROAD_ERR_FORMAT, "tensor '%s%s' holds a NaN or Inf at %lld", prefix,
                               suffix, (long long)i);
    return ROAD_OK;
}

/* *t: a view (no copy) of the checkpoint's packed weight w as a [rows, cols] tensor of format f,
 * every other field zero (the caller points it at the scales). */
static void wrap_packed(road_qtensor *t, road_qformat f, int64_t rows, int64_t cols,
                        const road_st_tensor *w) {
    memset(t, 0, sizeof *t);
    t->format = f;
    t->rows = rows;
    t->cols = cols;
    t->data = (uint8_t *)(uintptr_t)w->data;
}

static road_status read_int8(road_qckpt_find find, void *ctx, const char *prefix, int64_t rows,
                             int64_t cols, road_qtensor **out) {
    const road_st_tensor *w, *scb;
    road_status st = want(find, ctx, prefix, ".weight", ROAD_DTYPE_I8, rows * cols, &w);
    if (st == ROAD_OK && (w->ndim != 2 || w->shape[0] != rows || w->shape[1] != cols))
        st = road__error(ROAD_ERR_SHAPE, "tensor '%s.weight' is not [%lld, %lld]", prefix,
                         (long long)rows, (long long)cols);
    if (st == ROAD_OK) st = want(find, ctx, prefix, ".SCB", ROAD_DTYPE_F32, rows, &scb);
    if (st == ROAD_OK) st = finite(scb, prefix, ".SCB");
    if (st != ROAD_OK) return st;
    road_qtensor t;
    wrap_packed(&t, ROAD_QFORMAT_INT8, rows, cols, w);
    t.absmax = (float *)(uintptr_t)scb->data;
    return road_qtensor_wrap(&t, out);
}

/* A JSON integer member equal to `v`. */
static road_status json_int_is(const cJSON *o, const char *key, int64_t v, const char *prefix) {
    const cJSON *x = road__json_get(o, key);
    if (!cJSON_IsNumber(x) || x->valuedouble != (double)v)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "layer '%s': quant_state \"%s\" must be %lld (road reads bitsandbytes' "
                           "default block sizes)",
                           prefix, key, (long long)v);
    return ROAD_OK;
}

/* The quant_state JSON of a 4-bit layer: its format and, with double quantization, the
 * nested offset. */
static road_status read_state(const road_st_tensor *t, const char *prefix, road_qformat f,
                              int64_t rows, int64_t cols, bool dq, float *offset) {
    if (t->numel <= 0 || t->numel > QSTATE_MAX_BYTES)
        return road__error(ROAD_ERR_FORMAT, "layer '%s': the quant_state tensor has %lld bytes",
                           prefix, (long long)t->numel);
    cJSON *root = NULL;
    road_status st = road_json_parse(t->data, (size_t)t->numel, &root);
    if (st != ROAD_OK) {
        road__error_prefix("layer '%s': quant_state", prefix);
        return st;
    }
    const cJSON *qt = road__json_get(root, "quant_type");
    if (!cJSON_IsObject(root) || !cJSON_IsString(qt) ||
        strcmp(qt->valuestring, road_qformat_name(f)) != 0)
        st = road__error(ROAD_ERR_FORMAT, "layer '%s': quant_state's quant_type is not \"%s\"",
                         prefix, road_qformat_name(f));
    if (st == ROAD_OK) st = json_int_is(root, "blocksize", ROAD_QBLOCK, prefix);
    if (st == ROAD_OK) {
        const cJSON *sh = road__json_get(root, "shape");
        const cJSON *s0 = cJSON_IsArray(sh) ? cJSON_GetArrayItem(sh, 0) : NULL;
        const cJSON *s1 = cJSON_IsArray(sh) ? cJSON_GetArrayItem(sh, 1) : NULL;
        if (cJSON_GetArraySize(sh) != 2 || !cJSON_IsNumber(s0) || !cJSON_IsNumber(s1) ||
            s0->valuedouble != (double)rows || s1->valuedouble != (double)cols)
            st = road__error(ROAD_ERR_SHAPE, "layer '%s': quant_state's shape is not [%lld, %lld]",
                             prefix, (long long)rows, (long long)cols);
    }
    if (st == ROAD_OK && dq) {
        st = json_int_is(root, "nested_blocksize", ROAD_QNESTED_BLOCK, prefix);
        const cJSON *off = road__json_get(root, "nested_offset");
        if (st == ROAD_OK && (!cJSON_IsNumber(off) || !isfinite(off->valuedouble) ||
                              fabs(off->valuedouble) > 3.0e38))
            st = road__error(ROAD_ERR_FORMAT, "layer '%s': quant_state has no finite nested_offset",
                             prefix);
        if (st == ROAD_OK) *offset = (float)off->valuedouble;
    }
    cJSON_Delete(root);
    return st;
}

static road_status read_4bit(road_qckpt_find find, void *ctx, const char *prefix, int64_t rows,
                             int64_t cols, road_qtensor **out) {
    road_qformat f = ROAD_QFORMAT_NF4;
    const road_st_tensor *state = part(find, ctx, prefix, ".weight.quant_state.bitsandbytes__nf4");
    if (!state) {
        state = part(find, ctx, prefix, ".weight.quant_state.bitsandbytes__fp4");
        f = ROAD_QFORMAT_FP4;
    }
    if (!state)
        return road__error(
            ROAD_ERR_NOT_FOUND,
            "layer '%s' has a U8 weight but no '%s.weight.quant_state.bitsandbytes__nf4' "
            "(or __fp4): not a bitsandbytes 4-bit layer",
            prefix, prefix);
    if (state->dtype != ROAD_DTYPE_U8)
        return road__error(ROAD_ERR_FORMAT, "layer '%s': the quant_state tensor is not U8", prefix);
    const int64_t n = rows * cols, nb = (n + ROAD_QBLOCK - 1) / ROAD_QBLOCK;
    const int64_t nn = (nb + ROAD_QNESTED_BLOCK - 1) / ROAD_QNESTED_BLOCK;
    const road_st_tensor *w, *am, *qm, *na = NULL, *nm = NULL;
    road_status st = want(find, ctx, prefix, ".weight", ROAD_DTYPE_U8, (n + 1) / 2, &w);
    if (st != ROAD_OK) return st;
    am = part(find, ctx, prefix, ".weight.absmax");
    const bool dq = am && am->dtype == ROAD_DTYPE_U8;
    st = want(find, ctx, prefix, ".weight.absmax", dq ? ROAD_DTYPE_U8 : ROAD_DTYPE_F32, nb, &am);
    if (st == ROAD_OK) st = want(find, ctx, prefix, ".weight.quant_map", ROAD_DTYPE_F32, 16, &qm);
    if (st == ROAD_OK) st = finite(qm, prefix, ".weight.quant_map");
    if (st == ROAD_OK && !dq) st = finite(am, prefix, ".weight.absmax");
    if (st == ROAD_OK && dq)
        st = want(find, ctx, prefix, ".weight.nested_absmax", ROAD_DTYPE_F32, nn, &na);
    if (st == ROAD_OK && dq)
        st = want(find, ctx, prefix, ".weight.nested_quant_map", ROAD_DTYPE_F32, 256, &nm);
    if (st == ROAD_OK && dq) st = finite(na, prefix, ".weight.nested_absmax");
    if (st == ROAD_OK && dq) st = finite(nm, prefix, ".weight.nested_quant_map");
    float offset = 0.0f;
    if (st == ROAD_OK) st = read_state(state, prefix, f, rows, cols, dq, &offset);
    if (st != ROAD_OK) return st;
    road_qtensor t;
    wrap_packed(&t, f, rows, cols, w);
    t.code = qm->data;
    t.double_quant = dq;
    if (dq) {
        t.qabsmax = (uint8_t *)(uintptr_t)am->data;
        t.nested_absmax = (float *)(uintptr_t)na->data;
        t.nested_code = nm->data;
        t.nested_offset = offset;
    } else {
        t.absmax = (float *)(uintptr_t)am->data;
    }
    return road_qtensor_wrap(&t, out);
}

road_status road__qckpt_read(road_qckpt_find find, void *ctx, const char *prefix, int64_t rows,
                             int64_t cols, road_qtensor **out) {
    *out = NULL;
    const road_st_tensor *w = part(find, ctx, prefix, ".weight");
    if (!w)
        return road__error(ROAD_ERR_NOT_FOUND, "the checkpoint has no tensor '%s.weight'", prefix);
    if (rows <= 0 || cols <= 0 || rows > INT64_MAX / cols)
        return road__error(ROAD_ERR_SHAPE, "layer '%s': bad size", prefix);
    if (w->dtype == ROAD_DTYPE_I8) return read_int8(find, ctx, prefix, rows, cols, out);
    if (w->dtype == ROAD_DTYPE_U8) return read_4bit(find, ctx, prefix, rows, cols, out);
    return road__error(ROAD_ERR_FORMAT, "tensor '%s.weight' is %s, not a quantized weight", prefix,
                       road_dtype_name(w->dtype));
}

/* ---- writing ------------------------------------------------------------------------------- */

static road_status add(road_st_writer *w, const char *prefix, const char *suffix, road_dtype dt,
                       int32_t ndim, const int64_t *shape, const void *data) {
    char name[QNAME_CAP];
    int n = snprintf(name, sizeof name, "%s%s", prefix, suffix);
    if (n < 0 || (size_t)n >= sizeof name)
        return road__error(ROAD_ERR_INVALID_ARG, "layer name '%s' is too long", prefix);
    return road_st_writer_add(w, name, dt, ndim, shape, data);
}

road_status road__qckpt_write(road_st_writer *w, const char *prefix, const road_qtensor *q,
                              const char *orig_dtype) {
    if (q->format == ROAD_QFORMAT_INT8) {
        const int64_t ws[2] = {q->rows, q->cols}, ss[1] = {q->rows};
        road_status st = add(w, prefix, ".weight", ROAD_DTYPE_I8, 2, ws, q->data);
        return st == ROAD_OK ? add(w, prefix, ".SCB", ROAD_DTYPE_F32, 1, ss, q->absmax) : st;
    }
    const int64_t n = q->rows * q->cols;
    const int64_t ws[2] = {(n + 1) / 2, 1}, bs[1] = {q->n_blocks}, cs[1] = {16};
    const int64_t ns[1] = {(q->n_blocks + ROAD_QNESTED_BLOCK - 1) / ROAD_QNESTED_BLOCK},
                  ms[1] = {256};
    road_status st = add(w, prefix, ".weight", ROAD_DTYPE_U8, 2, ws, q->data);
    if (st == ROAD_OK)
        st = q->double_quant ? add(w, prefix, ".weight.absmax", ROAD_DTYPE_U8, 1, bs, q->qabsmax)
                             : add(w, prefix, ".weight.absmax", ROAD_DTYPE_F32, 1, bs, q->absmax);
    if (st == ROAD_OK) st = add(w, prefix, ".weight.quant_map", ROAD_DTYPE_F32, 1, cs, q->code);
    if (st == ROAD_OK && q->double_quant)
        st = add(w, prefix, ".weight.nested_absmax", ROAD_DTYPE_F32, 1, ns, q->nested_absmax);
    if (st == ROAD_OK && q->double_quant)
        st = add(w, prefix, ".weight.nested_quant_map", ROAD_DTYPE_F32, 1, ms, q->nested_code);
    if (st != ROAD_OK) return st;
    /* the state as bitsandbytes' pack_dict_to_tensor writes it: json.dumps of the non-tensor
     * items in as_dict's order, as UTF-8 bytes */
    char js[QSTATE_MAX_BYTES], off[ROAD_JSON_NUMBER_MAX];
    int len;
    if (q->double_quant) {
        road__json_format_double((double)q->nested_offset, off, sizeof off);
        len = snprintf(js, sizeof js,
                       "{\"quant_type\": \"%s\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": "
                       "[%lld, %lld], \"nested_blocksize\": %d, \"nested_dtype\": \"float32\", "
                       "\"nested_offset\": %s}",
                       road_qformat_name(q->format), ROAD_QBLOCK, orig_dtype, (long long)q->rows,
                       (long long)q->cols, ROAD_QNESTED_BLOCK, off);
    } else {
        len = snprintf(js, sizeof js,
                       "{\"quant_type\": \"%s\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": "
                       "[%lld, %lld]}",
                       road_qformat_name(q->format), ROAD_QBLOCK, orig_dtype, (long long)q->rows,
                       (long long)q->cols);
    }
    if (len < 0 || len >= (int)sizeof js)
        return road__error(ROAD_ERR_INTERNAL, "quant_state too long");
    const int64_t js_shape[1] = {len};
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".weight.quant_state.bitsandbytes__%s",
             road_qformat_name(q->format));
    return add(w, prefix, suffix, ROAD_DTYPE_U8, 1, js_shape, js);
}
