/*
 * adapter/peft_io.c - PEFT adapter folders: road_adapter_set_load and road_adapter_set_save.
 *
 * A folder holds adapter_config.json and adapter_model.safetensors with one
 * "base_model.model.<layer>.road_theta" and ".road_alpha" per RoAd layer (PEFT's
 * save_pretrained drops the adapter name from the key). Loading re-runs target matching with
 * the folder's config, as PEFT does, so the layers an adapter lands on are decided by its
 * config, not by which keys happen to be in the file; the file must then hold exactly the
 * tensors of those layers. Anything else is refused with a message that names the key and the
 * layer, because a silently half-loaded adapter gives plausible but wrong outputs (PEFT only
 * warns about missing keys).
 *
 * Loading is all-or-nothing: every tensor is checked and converted to float32 into one
 * scratch block before the adapter is added, so after validation nothing can fail but the
 * add itself (all-or-nothing in the manager); if a later step still fails the adapter is
 * deleted again. Only the public adapter-manager API is used, so this file knows nothing of
 * the manager's internals.
 *
 * modules_to_save: PEFT stores full copies of those modules under their own keys
 * ("base_model.model.<module>.weight" / ".bias": get_peft_model_state_dict drops the
 * ".modules_to_save.<adapter>" part). The layers they belong to are matched from the config
 * as the manager matches them (road_adapter_set_match_modules_to_save); the file must hold
 * the weight (and the bias, when the layer has one) of each, with the layer's exact shape, and
 * they are written into the adapter's copies once it is added.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/finite.h"
#include "io/dir.h"
#include "io/file.h"
#include "io/st_save.h"
#include "road/adapter_set.h"
#include "road/safetensors.h"

/* PEFT's names (peft/utils/save_and_load.py, peft/utils/constants.py). */
#define PEFT_KEY_PREFIX "base_model.model."
#define PEFT_THETA_SUFFIX ".road_theta"
#define PEFT_ALPHA_SUFFIX ".road_alpha"
#define PEFT_WEIGHT_SUFFIX ".weight"
#define PEFT_BIAS_SUFFIX ".bias"
#define PEFT_CONFIG_FILE "adapter_config.json"
#define PEFT_WEIGHTS_FILE "adapter_model.safetensors"
#define PEFT_LEGACY_WEIGHTS_FILE "adapter_model.bin"
/* The adapter PEFT saves at the top of the folder; every other one goes to a sub-folder. */
#define PEFT_DEFAULT_ADAPTER "default"

/* Unexpected keys quoted in one message: enough to show the pattern, short enough to read. */
#define UNEXPECTED_LIST_MAX 5
/* Longest key or layer name quoted back in a message: a hostile file may hold any name, and
 * the thread's message buffer holds about 1 KB. */
#define ECHO_MAX 120
/* A message assembled piece by piece (road__error truncates to its own buffer anyway). */
#define MSG_CAP 1024

static const char *const param_suffix[2] = {PEFT_THETA_SUFFIX, PEFT_ALPHA_SUFFIX};

/* ---- small helpers --------------------------------------------------------------------- */

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A message built in pieces; silently truncated at MSG_CAP. */
typedef struct msgbuf {
    char text[MSG_CAP];
    size_t len;
} msgbuf;

__attribute__((format(printf, 2, 3))) static void msg_add(msgbuf *m, const char *fmt, ...) {
    if (m->len + 1 >= sizeof m->text) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(m->text + m->len, sizeof m->text - m->len, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    m->len += (size_t)w;
    if (m->len >= sizeof m->text) m->len = sizeof m->text - 1;
}

/* "[a, b]" into buf (a tensor has at most ROAD_ST_MAX_DIMS dimensions, so 96 bytes do). */
static void shape_text(const road_st_tensor *t, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = '\0';
    for (int32_t d = 0; d <= t->ndim && k + 1 < cap; d++) {
        int w = d == t->ndim
                    ? snprintf(buf + k, cap - k, "]")
                    : snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "[", (long long)t->shape[d]);
        if (w < 0) break;
        k += (size_t)w;
    }
    if (t->ndim == 0) snprintf(buf, cap, "[]");
}

/* ---- load ------------------------------------------------------------------------------- */

/* What one load needs; everything here is freed by load_ctx_free. */
typedef struct load_ctx {
    const char *name; /* the adapter's name in the set */
    road_adapter_set *s;
    road_config *cfg;
    road_st_file *f;
    int32_t n_all; /* layers of the set */
    int32_t *idx;  /* [n_all] matched layers, ascending; n_matched used */
    int32_t n_matched;
    bool *matched;   /* [n_all] */
    int64_t *offset; /* [n_matched + 1] start of each layer's theta in params */
    float *params;   /* [2 * offset[n_matched]]: layer i's theta then its alpha */
    char *scratch;   /* key / layer-name buffer */
    size_t scratch_cap;
    int32_t *cp_idx; /* [n_all] layers modules_to_save selects, ascending; n_cp used */
    int32_t n_cp;
    bool *is_copy;                 /* [n_all] */
    const road_st_tensor **cp_src; /* [2 * n_cp]: each copy's weight, then bias (or NULL) */
} load_ctx;

static void load_ctx_free(load_ctx *c) {
    road_config_free(c->cfg);
    road_st_close(c->f);
    road__free(c->idx);
    road__free(c->matched);
    road__free(c->offset);
    road__free(c->params);
    road__free(c->scratch);
    road__free(c->cp_idx);
    road__free(c->is_copy);
    road__free(c->cp_src);
}

/* Number of theta (= alpha) entries of matched layer i. */
static int64_t layer_params(const load_ctx *c, int32_t i) {
    return c->offset[i + 1] - c->offset[i];
}

/* The folder, its config and its weights file, opened. */
static road_status open_folder(load_ctx *c, const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0)
        return road__error(ROAD_ERR_NOT_FOUND,
                           "adapter '%s': the adapter folder '%s' does not exist (%s)", c->name,
                           dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "adapter '%s': '%s' is not a folder; pass the folder holding %s and %s",
                           c->name, dir, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE);
    road_status s = road_config_load(dir, &c->cfg);
    if (s != ROAD_OK) {
        road__error_prefix("adapter '%s'", c->name);
        return s;
    }
    char *path = road__path_join(dir, PEFT_WEIGHTS_FILE);
    if (!path) return ROAD_ERR_NO_MEMORY;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        char *legacy = road__path_join(dir, PEFT_LEGACY_WEIGHTS_FILE);
        bool has_legacy = legacy && stat(legacy, &st) == 0;
        road__free(legacy);
        if (has_legacy)
            s = road__error(ROAD_ERR_UNSUPPORTED,
                            "adapter '%s': '%s' has %s (PyTorch pickle, written by older PEFT) but "
                            "no %s; road reads safetensors only: convert it with PEFT "
                            "(PeftModel.from_pretrained(...).save_pretrained(dir, "
                            "safe_serialization=True))",
                            c->name, dir, PEFT_LEGACY_WEIGHTS_FILE, PEFT_WEIGHTS_FILE);
        else if (legacy)
            s = road__error(ROAD_ERR_NOT_FOUND,
                            "adapter '%s': '%s' does not exist; an adapter folder holds %s and %s",
                            c->name, path, PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE);
        else
            s = ROAD_ERR_NO_MEMORY;
        road__free(path);
        return s;
    }
    s = road_st_open(path, &c->f);
    road__free(path);
    if (s != ROAD_OK) road__error_prefix("adapter '%s'", c->name);
    return s;
}

/* Match the config's targets and size everything: one allocation each for the indices, the
 * per-layer offsets, the parameters and the key buffer. */
static road_status plan_layers(load_ctx *c) {
    c->n_all = road_adapter_set_layer_count(c->s);
    size_t n_all = c->n_all > 0 ? (size_t)c->n_all : 1;
    c->idx = road__malloc(n_all * sizeof *c->idx);
    c->matched = road__calloc(n_all, sizeof *c->matched);
    if (!c->idx || !c->matched) return ROAD_ERR_NO_MEMORY;
    road_status s = road_adapter_set_match(c->s, c->cfg, c->idx, c->n_all, &c->n_matched);
    if (s != ROAD_OK) {
        road__error_prefix("adapter '%s'", c->name);
        return s;
    }
    if (c->n_matched <= 0 || c->n_matched > c->n_all)
        return road__error(ROAD_ERR_INTERNAL,
                           "adapter '%s': road_adapter_set_match reported %d layers of %d", c->name,
                           c->n_matched, c->n_all);

    c->cp_idx = road__malloc(n_all * sizeof *c->cp_idx);
    c->is_copy = road__calloc(n_all, sizeof *c->is_copy);
    c->cp_src = road__calloc(2 * n_all, sizeof *c->cp_src);
    if (!c->cp_idx || !c->is_copy || !c->cp_src) return ROAD_ERR_NO_MEMORY;
    s = road_adapter_set_match_modules_to_save(c->s, c->cfg, c->cp_idx, c->n_all, &c->n_cp);
    if (s != ROAD_OK) {
        road__error_prefix("adapter '%s'", c->name);
        return s;
    }
    for (int32_t i = 0; i < c->n_cp; i++) c->is_copy[c->cp_idx[i]] = true;

    c->offset = road__malloc(((size_t)c->n_matched + 1) * sizeof *c->offset);
    if (!c->offset) return ROAD_ERR_NO_MEMORY;
    const road_variant v = road_config_variant(c->cfg);
    size_t longest = 0;
    c->offset[0] = 0;
    for (int32_t i = 0; i < c->n_matched; i++) {
        road_linear *l = road_adapter_set_layer(c->s, c->idx[i]);
        const char *lname = road_adapter_set_layer_name(c->s, c->idx[i]);
        if (!l)
            return road__error(ROAD_ERR_INTERNAL,
                               "adapter '%s': matching selected '%s', which is not a linear layer",
                               c->name, lname);
        c->matched[c->idx[i]] = true;
        int64_t p = road_param_count(v, road_linear_out_features(l));
        ROAD_ASSERT(p > 0);
        c->offset[i + 1] = c->offset[i] + p;
        size_t k = strlen(lname);
        if (k > longest) longest = k;
    }
    size_t bytes = 0;
    if (road__size_mul(2 * (size_t)c->offset[c->n_matched], sizeof(float), &bytes) != 0)
        return road__error(ROAD_ERR_NO_MEMORY, "adapter '%s': too many parameters", c->name);
    c->params = road__malloc(bytes);
    if (!c->params) return ROAD_ERR_NO_MEMORY;

    /* The buffer holds an expected key, and also any file key (less its prefix) when
     * classifying the file's tensors. */
    for (int64_t t = 0; t < road_st_count(c->f); t++) {
        size_t k = strlen(road_st_at(c->f, t)->name);
        if (k > longest) longest = k;
    }
    for (int32_t i = 0; i < c->n_cp; i++) {
        size_t k = strlen(road_adapter_set_layer_name(c->s, c->cp_idx[i]));
        if (k > longest) longest = k;
    }
    c->scratch_cap = strlen(PEFT_KEY_PREFIX) + longest + strlen(PEFT_THETA_SUFFIX) + 1;
    c->scratch = road__malloc(c->scratch_cap);
    return c->scratch ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

/* A file key that looks like the expected one in another form, for the missing-key hint. */
static void missing_key_hint(const load_ctx *c, const char *layer, const char *suffix, msgbuf *m) {
    const char *key = c->scratch;
    size_t klen = strlen(key), llen = strlen(layer);
    for (int64_t t = 0; t < road_st_count(c->f); t++) {
        const char *k = road_st_at(c->f, t)->name;
        if (strncmp(k, key, klen) == 0 && k[klen] == '.') {
            msg_add(m,
                    "; the file has '%.*s' instead: that is PEFT's in-memory name with the "
                    "adapter name appended, which save_pretrained removes",
                    ECHO_MAX, k);
            return;
        }
        if (strncmp(k, layer, llen) == 0 && strcmp(k + llen, suffix) == 0) {
            msg_add(m,
                    "; the file has '%.*s' instead: PEFT writes every key with the prefix "
                    "'" PEFT_KEY_PREFIX "'",
                    ECHO_MAX, k);
            return;
        }
    }
    msg_add(m, "; was the adapter saved for another model, or its config edited?");
}

/* Check and convert theta and alpha of every matched layer into c->params. */
/* A tensor of the file, converted to float32 in x[0..n), must be finite: NaN or Inf (or an
 * F64 value beyond float32's range, which becomes Inf) would give plausible-looking garbage
 * with every request. The message names the tensor and the first bad index. */
static road_status refuse_nonfinite(const load_ctx *c, const road_st_tensor *t, const float *x,
                                    int64_t n) {
    int64_t bad = road_first_nonfinite(x, n);
    if (bad < 0) return ROAD_OK;
    return road__error(ROAD_ERR_NUMERIC,
                       "adapter '%s': " PEFT_WEIGHTS_FILE " tensor '%.*s' holds %g at index %lld "
                       "(as float32%s); adapter parameters must be finite: the adapter is "
                       "broken (a diverged training run?), retrain or fix it",
                       c->name, ECHO_MAX, t->name, (double)x[bad], (long long)bad,
                       t->dtype == ROAD_DTYPE_F64 ? ", from F64: beyond float32's range?" : "");
}

/* The dtypes RoAd parameters and modules_to_save copies are read from (converted to float32). */
static bool float_dtype(road_dtype d) {
    return d == ROAD_DTYPE_F32 || d == ROAD_DTYPE_F16 || d == ROAD_DTYPE_BF16 ||
           d == ROAD_DTYPE_F64;
}

static road_status read_layer_params(load_ctx *c) {
    const road_variant v = road_config_variant(c->cfg);
    for (int32_t i = 0; i < c->n_matched; i++) {
        const char *layer = road_adapter_set_layer_name(c->s, c->idx[i]);
        const int64_t p = layer_params(c, i);
        const int64_t out = road_linear_out_features(road_adapter_set_layer(c->s, c->idx[i]));
        for (int k = 0; k < 2; k++) {
            snprintf(c->scratch, c->scratch_cap, "%s%s%s", PEFT_KEY_PREFIX, layer, param_suffix[k]);
            const road_st_tensor *t = road_st_find(c->f, c->scratch);
            if (!t) {
                msgbuf m = {.len = 0};
                m.text[0] = '\0';
                missing_key_hint(c, layer, param_suffix[k], &m);
                return road__error(ROAD_ERR_NOT_FOUND,
                                   "adapter '%s': " PEFT_WEIGHTS_FILE " has no '%.*s' for layer "
                                   "%.*s, which the config's target_modules select%s",
                                   c->name, ECHO_MAX, c->scratch, ECHO_MAX, layer, m.text);
            }
            if (!float_dtype(t->dtype))
                return road__error(ROAD_ERR_FORMAT,
                                   "adapter '%s': '%.*s' (layer %.*s) is %s; RoAd parameters are "
                                   "read from F32, F16, BF16 or F64 tensors",
                                   c->name, ECHO_MAX, t->name, ECHO_MAX, layer,
                                   road_dtype_name(t->dtype));
            if (t->ndim != 1 || t->shape[0] != p) {
                char got[96];
                shape_text(t, got, sizeof got);
                return road__error(ROAD_ERR_SHAPE,
                                   "adapter '%s': '%.*s' (layer %.*s, %lld output features, %s "
                                   "group_size %d) has shape %s; expected [%lld]",
                                   c->name, ECHO_MAX, t->name, ECHO_MAX, layer, (long long)out,
                                   road_variant_name(v), road_config_group_size(c->cfg), got,
                                   (long long)p);
            }
            float *dst = c->params + 2 * c->offset[i] + k * p;
            road_status s = road_dtype_to_f32(t->dtype, t->data, dst, (size_t)p);
            if (s == ROAD_OK) s = refuse_nonfinite(c, t, dst, p);
            if (s != ROAD_OK) return s;
        }
    }
    return ROAD_OK;
}

typedef enum key_kind {
    KEY_ROAD = 0,            /* theta or alpha of a matched layer */
    KEY_MODULES_TO_SAVE = 1, /* weight or bias of a layer modules_to_save selects */
    KEY_UNEXPECTED = 2
} key_kind;

/* Classify one file key. For a RoAd-looking key of a layer that is not matched, *layer gets
 * that layer's index (or -1 when the model has no such layer), for the hint. */
static key_kind classify_key(load_ctx *c, const char *key, int32_t *layer) {
    *layer = -2;
    if (!starts_with(key, PEFT_KEY_PREFIX)) return KEY_UNEXPECTED;
    const char *rest = key + strlen(PEFT_KEY_PREFIX);
    size_t n = strlen(rest);
    for (int k = 0; k < 2; k++) {
        if (!ends_with(rest, n, param_suffix[k])) continue;
        size_t ln = n - strlen(param_suffix[k]);
        memcpy(c->scratch, rest, ln);
        c->scratch[ln] = '\0';
        int32_t li = road_adapter_set_find_layer(c->s, c->scratch);
        if (li >= 0 && c->matched[li]) return KEY_ROAD;
        *layer = li;
        break;
    }
    for (int k = 0; k < 2; k++) {
        const char *suffix = k ? PEFT_BIAS_SUFFIX : PEFT_WEIGHT_SUFFIX;
        if (!ends_with(rest, n, suffix)) continue;
        size_t ln = n - strlen(suffix);
        memcpy(c->scratch, rest, ln);
        c->scratch[ln] = '\0';
        int32_t li = road_adapter_set_find_layer(c->s, c->scratch);
        if (li < 0 || !c->is_copy[li]) break;
        const float *b = NULL;
        (void)road_adapter_set_layer_weight(c->s, li, NULL, &b);
        if (k == 0 || b) return KEY_MODULES_TO_SAVE;
        break;
    }
    return KEY_UNEXPECTED;
}

/* Hints for unexpected keys, most telling first: one of them is given. */
typedef enum hint_kind {
    HINT_IN_MEMORY = 0,     /* "...road_theta.<adapter name>" */
    HINT_NOT_TARGETED = 1,  /* a layer of the model that target_modules do not select */
    HINT_UNKNOWN_LAYER = 2, /* RoAd tensors of a layer the model lacks */
    HINT_NO_PREFIX = 3,     /* no "base_model.model." */
    HINT_NONE = 4
} hint_kind;

static hint_kind hint_of(const char *key, int32_t layer) {
    if (strstr(key, PEFT_THETA_SUFFIX ".") || strstr(key, PEFT_ALPHA_SUFFIX "."))
        return HINT_IN_MEMORY;
    if (!starts_with(key, PEFT_KEY_PREFIX)) return HINT_NO_PREFIX;
    if (layer >= 0) return HINT_NOT_TARGETED;
    if (layer == -1) return HINT_UNKNOWN_LAYER;
    return HINT_NONE;
}

static void add_hint(const load_ctx *c, hint_kind h, const char *key, int32_t layer, msgbuf *m) {
    switch (h) {
    case HINT_IN_MEMORY:
        msg_add(m,
                "; keys like '%.*s' are PEFT's in-memory names with the adapter name appended: "
                "a saved file has '" PEFT_KEY_PREFIX "<layer>.road_theta' (save with PEFT's "
                "save_pretrained)",
                ECHO_MAX, key);
        break;
    case HINT_NOT_TARGETED:
        msg_add(m, "; layer %.*s has RoAd tensors but the config's target_modules do not select it",
                ECHO_MAX, road_adapter_set_layer_name(c->s, layer));
        break;
    case HINT_UNKNOWN_LAYER:
        msg_add(m,
                "; '%.*s' is a RoAd tensor of a layer this model does not have (was the "
                "adapter trained on another model?)",
                ECHO_MAX, key);
        break;
    case HINT_NO_PREFIX:
        msg_add(m,
                "; PEFT writes every key with the prefix '" PEFT_KEY_PREFIX "' ('%.*s' lacks it)",
                ECHO_MAX, key);
        break;
    case HINT_NONE:
        break;
    }
}

/* Every file key must be a RoAd tensor of a matched layer or a modules_to_save tensor. */
static road_status check_unexpected(load_ctx *c) {
    const int64_t n = road_st_count(c->f);
    const char *listed[UNEXPECTED_LIST_MAX];
    int64_t n_bad = 0;
    hint_kind best = HINT_NONE;
    const char *best_key = NULL;
    int32_t best_layer = -2;
    for (int64_t t = 0; t < n; t++) {
        const char *key = road_st_at(c->f, t)->name;
        int32_t layer;
        key_kind kind = classify_key(c, key, &layer);
        if (kind != KEY_UNEXPECTED) continue;
        if (n_bad < UNEXPECTED_LIST_MAX) listed[n_bad] = key;
        n_bad++;
        hint_kind h = hint_of(key, layer);
        if (h < best) {
            best = h;
            best_key = key;
            best_layer = layer;
        }
    }
    if (n_bad == 0) return ROAD_OK;
    msgbuf m = {.len = 0};
    m.text[0] = '\0';
    msg_add(&m,
            "adapter '%s': " PEFT_WEIGHTS_FILE " has %lld unexpected tensor%s (neither the "
            "road_theta/road_alpha of a layer the config's target_modules select%s): ",
            c->name, (long long)n_bad, n_bad == 1 ? "" : "s",
            road_config_modules_to_save_count(c->cfg) > 0
                ? " nor the weight/bias of a layer modules_to_save selects"
                : "");
    for (int64_t i = 0; i < n_bad && i < UNEXPECTED_LIST_MAX; i++)
        msg_add(&m, "%s'%.*s'", i ? ", " : "", ECHO_MAX, listed[i]);
    if (n_bad > UNEXPECTED_LIST_MAX)
        msg_add(&m, " and %lld more", (long long)(n_bad - UNEXPECTED_LIST_MAX));
    add_hint(c, best, best_key, best_layer, &m);
    return road__error(ROAD_ERR_FORMAT, "%s", m.text);
}

/* Find and check every modules_to_save tensor: the weight [out, in] of each selected layer
 * and its bias [out] when the layer has one, in a float dtype. Fills c->cp_src. */
static road_status read_copies(load_ctx *c) {
    for (int32_t i = 0; i < c->n_cp; i++) {
        const int32_t li = c->cp_idx[i];
        const char *layer = road_adapter_set_layer_name(c->s, li);
        int64_t out = 0, in = 0;
        const float *bias = NULL;
        road_status s = road_adapter_set_layer_shape(c->s, li, &out, &in);
        if (s == ROAD_OK) s = road_adapter_set_layer_weight(c->s, li, NULL, &bias);
        if (s != ROAD_OK) return s;
        for (int k = 0; k < (bias ? 2 : 1); k++) {
            snprintf(c->scratch, c->scratch_cap, "%s%s%s", PEFT_KEY_PREFIX, layer,
                     k ? PEFT_BIAS_SUFFIX : PEFT_WEIGHT_SUFFIX);
            const road_st_tensor *t = road_st_find(c->f, c->scratch);
            if (!t)
                return road__error(ROAD_ERR_NOT_FOUND,
                                   "adapter '%s': " PEFT_WEIGHTS_FILE " has no '%.*s', the "
                                   "modules_to_save copy of layer %.*s that the config lists",
                                   c->name, ECHO_MAX, c->scratch, ECHO_MAX, layer);
            if (!float_dtype(t->dtype))
                return road__error(ROAD_ERR_FORMAT,
                                   "adapter '%s': '%.*s' (modules_to_save copy of layer %.*s) is "
                                   "%s; copies are read from F32, F16, BF16 or F64 tensors",
                                   c->name, ECHO_MAX, t->name, ECHO_MAX, layer,
                                   road_dtype_name(t->dtype));
            const bool ok = k == 0 ? t->ndim == 2 && t->shape[0] == out && t->shape[1] == in
                                   : t->ndim == 1 && t->shape[0] == out;
            if (!ok) {
                char got[96];
                shape_text(t, got, sizeof got);
                if (k == 0)
                    return road__error(ROAD_ERR_SHAPE,
                                       "adapter '%s': '%.*s' (modules_to_save copy of layer %.*s) "
                                       "has shape %s; the layer's weight is [%lld, %lld]",
                                       c->name, ECHO_MAX, t->name, ECHO_MAX, layer, got,
                                       (long long)out, (long long)in);
                return road__error(ROAD_ERR_SHAPE,
                                   "adapter '%s': '%.*s' (modules_to_save copy of layer %.*s) has "
                                   "shape %s; the layer's bias is [%lld]",
                                   c->name, ECHO_MAX, t->name, ECHO_MAX, layer, got,
                                   (long long)out);
            }
            c->cp_src[2 * i + k] = t;
        }
    }
    return ROAD_OK;
}

/* Add the validated adapter and give every layer its parameters; undo the add on failure. */
static road_status install(load_ctx *c) {
    road_status s = road_adapter_set_add(c->s, c->name, c->cfg, 0);
    /* add is all-or-nothing; should it ever fail with the adapter registered, undo it below. */
    if (s != ROAD_OK && !road_adapter_set_has(c->s, c->name)) return s;
    for (int32_t li = 0; li < c->n_all && s == ROAD_OK; li++) {
        if (road_adapter_set_on_layer(c->s, c->name, li) != c->matched[li])
            s = road__error(ROAD_ERR_INTERNAL,
                            "adapter '%s': road_adapter_set_add put it on a different set of "
                            "layers than road_adapter_set_match selected (layer %s)",
                            c->name, road_adapter_set_layer_name(c->s, li));
    }
    for (int32_t i = 0; i < c->n_matched && s == ROAD_OK; i++) {
        road_linear *l = road_adapter_set_layer(c->s, c->idx[i]);
        const int64_t p = layer_params(c, i);
        const float *theta = c->params + 2 * c->offset[i];
        s = road_linear_set_params(l, c->name, theta, theta + p, p);
    }
    for (int32_t i = 0; i < c->n_cp && s == ROAD_OK; i++) {
        road_module_copy mc;
        s = road_adapter_set_copy(c->s, c->name, c->cp_idx[i], &mc);
        for (int k = 0; k < 2 && s == ROAD_OK; k++) {
            const road_st_tensor *t = c->cp_src[2 * i + k];
            if (!t) continue;
            float *dst = k ? mc.bias : mc.weight;
            const int64_t n = k ? mc.out : mc.out * mc.in;
            s = road_dtype_to_f32(t->dtype, t->data, dst, (size_t)n);
            if (s == ROAD_OK) s = refuse_nonfinite(c, t, dst, n);
        }
    }
    if (s == ROAD_OK) return ROAD_OK;
    char why[MSG_CAP];
    snprintf(why, sizeof why, "%s", road_last_error());
    road_status d = road_adapter_set_delete(c->s, c->name);
    if (d != ROAD_OK)
        return road__error(ROAD_ERR_INTERNAL,
                           "%s; removing the half-loaded adapter '%s' then failed too: %s", why,
                           c->name, road_last_error());
    return road__error(s, "%s", why);
}

road_status road_adapter_set_load(road_adapter_set *s, const char *name, const char *dir) {
    if (!s || !name || !dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_load: NULL argument");
    if (road_adapter_set_has(s, name))
        return road__error(ROAD_ERR_EXISTS,
                           "an adapter named '%s' is already loaded; delete it first or load "
                           "this one under another name",
                           name);
    road_adapter_load *l = NULL;
    road_status st = road_adapter_set_load_prepare(s, name, dir, &l);
    if (st == ROAD_OK) st = road_adapter_set_load_commit(s, l);
    road_adapter_load_free(l);
    return st;
}

/* The two halves, for a server that keeps generating while a folder is read (road/adapter_set.h).
 * Prepare touches only the set's layer list (fixed for the set's life) and its own memory. */
struct road_adapter_load {
    load_ctx c;
};

road_status road_adapter_set_load_prepare(road_adapter_set *s, const char *name, const char *dir,
                                          road_adapter_load **out) {
    if (!s || !name || !dir || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_load_prepare: NULL argument");
    *out = NULL;
    road_adapter_load *l = road__calloc(1, sizeof *l);
    if (!l) return ROAD_ERR_NO_MEMORY;
    l->c.name = name;
    l->c.s = s;
    load_ctx *c = &l->c;
    road_status st = open_folder(c, dir);
    if (st == ROAD_OK) st = plan_layers(c);
    if (st == ROAD_OK) st = read_layer_params(c);
    if (st == ROAD_OK) st = read_copies(c);
    if (st == ROAD_OK) st = check_unexpected(c);
    /* the copies are read from the mapping at commit: fault their pages in now, here */
    volatile unsigned char sink = 0;
    for (int32_t i = 0; st == ROAD_OK && i < 2 * c->n_cp; i++) {
        const road_st_tensor *t = c->cp_src[i];
        for (size_t k = 0; t && k < t->nbytes; k += 4096) sink ^= ((const unsigned char *)t->data)[k];
    }
    (void)sink;
    if (st != ROAD_OK) {
        road_adapter_load_free(l);
        return st;
    }
    *out = l;
    return ROAD_OK;
}

road_status road_adapter_set_load_commit(road_adapter_set *s, road_adapter_load *l) {
    if (!s || !l || l->c.s != s)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_load_commit: NULL argument, or "
                                                 "prepared for another set");
    if (road_adapter_set_has(s, l->c.name))
        return road__error(ROAD_ERR_EXISTS, "an adapter named '%s' is already loaded", l->c.name);
    return install(&l->c);
}

void road_adapter_load_free(road_adapter_load *l) {
    if (!l) return;
    load_ctx_free(&l->c);
    road__free(l);
}

/* ---- save ------------------------------------------------------------------------------- */

/* Write one adapter's adapter_model.safetensors into `folder`. */
static road_status save_weights(road_adapter_set *s, const char *name, const char *folder) {
    road_st_writer *w = NULL;
    road_status st = road_st_writer_create(&w);
    if (st != ROAD_OK) return st;
    st = road_st_writer_set_metadata(w, "format", "pt");
    char *key = NULL;
    size_t key_cap = 0;
    const int32_t n_all = road_adapter_set_layer_count(s);
    for (int32_t li = 0; li < n_all && st == ROAD_OK; li++) {
        if (!road_adapter_set_on_layer(s, name, li)) continue;
        const char *layer = road_adapter_set_layer_name(s, li);
        size_t need = strlen(PEFT_KEY_PREFIX) + strlen(layer) + strlen(PEFT_THETA_SUFFIX) + 1;
        if (need > key_cap) {
            road__free(key);
            key = road__malloc(need);
            key_cap = key ? need : 0;
            if (!key) {
                st = ROAD_ERR_NO_MEMORY;
                break;
            }
        }
        float *p[2];
        int64_t n = 0;
        st = road_linear_adapter_params(road_adapter_set_layer(s, li), name, &p[0], &p[1], &n);
        for (int k = 0; k < 2 && st == ROAD_OK; k++) {
            snprintf(key, key_cap, "%s%s%s", PEFT_KEY_PREFIX, layer, param_suffix[k]);
            const int64_t shape[1] = {n};
            st = road_st_writer_add(w, key, ROAD_DTYPE_F32, 1, shape, p[k]);
        }
    }
    const int32_t n_cp = road_adapter_set_copy_count(s, name);
    for (int32_t i = 0; i < n_cp && st == ROAD_OK; i++) {
        road_module_copy mc;
        st = road_adapter_set_copy_at(s, name, i, &mc);
        const char *layer = road_adapter_set_layer_name(s, mc.layer);
        size_t need = strlen(PEFT_KEY_PREFIX) + strlen(layer) + strlen(PEFT_WEIGHT_SUFFIX) + 1;
        if (st == ROAD_OK && need > key_cap) {
            road__free(key);
            key = road__malloc(need);
            key_cap = key ? need : 0;
            if (!key) st = ROAD_ERR_NO_MEMORY;
        }
        if (st == ROAD_OK) {
            snprintf(key, key_cap, "%s%s%s", PEFT_KEY_PREFIX, layer, PEFT_WEIGHT_SUFFIX);
            const int64_t shape[2] = {mc.out, mc.in};
            st = road_st_writer_add(w, key, ROAD_DTYPE_F32, 2, shape, mc.weight);
        }
        if (st == ROAD_OK && mc.bias) {
            snprintf(key, key_cap, "%s%s%s", PEFT_KEY_PREFIX, layer, PEFT_BIAS_SUFFIX);
            const int64_t shape[1] = {mc.out};
            st = road_st_writer_add(w, key, ROAD_DTYPE_F32, 1, shape, mc.bias);
        }
    }
    road__free(key);
    return road__st_writer_finish(w, st, folder, PEFT_WEIGHTS_FILE);
}

/* Write one adapter's adapter_config.json: its config with inference_mode true, as PEFT's
 * save_pretrained writes it. */
static road_status save_config(const road_adapter_set *s, const char *name, const char *folder) {
    road_config *cfg = NULL;
    road_status st = road_config_clone(road_adapter_set_config(s, name), &cfg);
    if (st != ROAD_OK) return st;
    road_config_set_inference_mode(cfg, true);
    st = road_config_save(cfg, folder);
    road_config_free(cfg);
    return st;
}

static road_status save_one(road_adapter_set *s, const char *name, const char *dir) {
    char *sub = NULL;
    if (strcmp(name, PEFT_DEFAULT_ADAPTER) != 0) {
        sub = road__path_join(dir, name);
        if (!sub) return ROAD_ERR_NO_MEMORY;
    }
    const char *folder = sub ? sub : dir;
    road_status st = road__mkdir_p(folder);
    if (st == ROAD_OK) st = save_weights(s, name, folder);
    if (st == ROAD_OK) st = save_config(s, name, folder);
    if (st != ROAD_OK) road__error_prefix("saving adapter '%s' to '%s'", name, folder);
    road__free(sub);
    return st;
}

/* Every requested name is an adapter of the set, once. */
static road_status check_names(const road_adapter_set *s, const char *const *names, int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        if (!names[i])
            return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_save: name %d is NULL", i);
        if (!road_adapter_set_has(s, names[i])) {
            msgbuf m = {.len = 0};
            m.text[0] = '\0';
            for (int32_t k = 0; k < road_adapter_set_count(s); k++)
                msg_add(&m, "%s'%s'", k ? ", " : "", road_adapter_set_name(s, k));
            return road__error(ROAD_ERR_NOT_FOUND,
                               "cannot save adapter '%.*s': no such adapter "
                               "(the set has %s)",
                               ECHO_MAX, names[i], m.len ? m.text : "none");
        }
        for (int32_t k = 0; k < i; k++) {
            if (strcmp(names[k], names[i]) == 0)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "road_adapter_set_save: adapter '%s' is listed twice", names[i]);
        }
    }
    return ROAD_OK;
}

road_status road_adapter_set_save(road_adapter_set *s, const char *dir, const char *const *names,
                                  int32_t n) {
    if (!s || !dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_save: NULL argument");
    if (names && n < 0)
        return road__error(ROAD_ERR_INVALID_ARG, "road_adapter_set_save: negative count %d", n);
    if (!names && road_adapter_set_count(s) == 0)
        return road__error(ROAD_ERR_STATE, "cannot save to '%s': the set has no adapters", dir);
    road_status st = names ? check_names(s, names, n) : ROAD_OK;
    /* One unit (io/dir.h): every adapter is written into a temporary folder next to dir, then
     * swapped in with dir's other entries, so weights and config change together. */
    char *target = st == ROAD_OK ? road__dir_trim(dir) : NULL;
    char *parent = target ? road__path_parent(target) : NULL, *tmp = NULL;
    if (st == ROAD_OK && !parent) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK) st = road__mkdir_p(parent);
    if (st == ROAD_OK) st = road__dir_make_temp(target, ".tmp.", &tmp);
    const int32_t count = names ? n : road_adapter_set_count(s);
    for (int32_t i = 0; i < count && st == ROAD_OK; i++)
        st = save_one(s, names ? names[i] : road_adapter_set_name(s, i), tmp);
    if (st == ROAD_OK) {
        road__dir_fsync(tmp);
        st = road__dir_update(tmp, target);
        if (st != ROAD_OK)
            road__error_prefix("saving adapters to '%s' (its files are unchanged)", target);
    }
    if (st == ROAD_OK)
        road__dir_fsync(parent);
    else if (tmp)
        road__dir_remove_tree(tmp, ROAD_DIR_DEPTH);
    road__free(tmp);
    road__free(parent);
    road__free(target);
    return st;
}
