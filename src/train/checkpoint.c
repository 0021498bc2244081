/*
 * train/checkpoint.c - checkpoint folders that resume a training run exactly.
 *
 * Layout of checkpoint-<step>/ (Hugging Face Trainer's names where it has one):
 *   adapter_config.json, adapter_model.safetensors   the adapter "default", PEFT's own format
 *   <name>/adapter_config.json, ...                  every other trainable adapter (as PEFT)
 *   model.safetensors       instead of the adapters, with full fine-tuning: every model tensor
 *                           (F32, transformers' names)
 *   optimizer.safetensors   "<PEFT key>.<adapter>.exp_avg" / ".exp_avg_sq", F32, per tensor
 *                           (full fine-tuning: "<tensor name>.exp_avg" / ".exp_avg_sq")
 *   trainer_state.json      step, adapters, schedule, RNG words, data position (road's own)
 *   run_config.json         the caller's run configuration, verbatim (only if given)
 *
 * Why a folder written aside and renamed: a checkpoint is several files that must agree with
 * each other. Every file is written (each one fsynced by io/file.c's atomic writers) into
 * "<dir>.tmp.XXXXXX" next to the target, the folder is fsynced, then renamed into place and
 * the parent fsynced; an interrupted save leaves only a temporary folder, which the loader
 * never reads (and road_checkpoint_find_last skips). Values that must round-trip bit for bit
 * (64-bit RNG words, the double spare) are stored as hex strings, since JSON numbers are
 * doubles to most readers.
 *
 * Loading checks everything (state file, adapter configs, every key, dtype and shape, finite
 * values) against the optimizer before it copies anything, so a refused checkpoint leaves the
 * set and the optimizer as they were.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/dir.h"
#include "io/file.h"
#include "io/st_save.h"
#include "io/st_save.h"
#include "io/json.h"
#include "road/safetensors.h"
#include "train/train_internal.h"

#define CKPT_FORMAT "road-checkpoint"
#define CKPT_VERSION 1
/* A finished run's output folder holds a trainer_state.json of this format (train/run.c). */
#define RUN_FORMAT "road-run"
#define STATE_FILE "trainer_state.json"
#define OPTIM_FILE "optimizer.safetensors"
#define CONFIG_FILE "run_config.json"
#define ADAPTER_WEIGHTS "adapter_model.safetensors"
#define MODEL_WEIGHTS "model.safetensors" /* full fine-tuning */
#define PEFT_DEFAULT_ADAPTER "default"
#define CKPT_PREFIX "checkpoint-"
#define M_SUFFIX ".exp_avg"
#define V_SUFFIX ".exp_avg_sq"
/* trainer_state.json and run_config.json are small; anything larger is not one of ours. */
#define STATE_MAX_BYTES (1u << 20)
#define RUN_CONFIG_MAX_BYTES (16u << 20)
/* Room for a tensor key: PEFT prefix + a layer path + suffixes + an adapter name. */
#define KEY_CAP 1024
/* JSON integers we accept exactly (doubles hold every integer up to 2^53). */
#define JSON_INT_MAX 9007199254740992.0

/* The folder of adapter `name` inside a checkpoint (PEFT: "default" at the top). */
static char *adapter_dir(const char *dir, const char *name) {
    return strcmp(name, PEFT_DEFAULT_ADAPTER) == 0 ? road__strdup(dir) : road__path_join(dir, name);
}

/* ---- save ----------------------------------------------------------------------------------- */

static road_status write_optimizer(road_optimizer *o, const char *dir) {
    road_st_writer *w = NULL;
    road_status s = road_st_writer_create(&w);
    if (s != ROAD_OK) return s;
    char step[32];
    snprintf(step, sizeof step, "%" PRId64, o->step);
    s = road_st_writer_set_metadata(w, "format", CKPT_FORMAT);
    if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "step", step);
    char key[KEY_CAP + 16];
    for (int32_t i = 0; i < o->n_t && s == ROAD_OK; i++) {
        road_optim_tensor t;
        s = road__optim_fetch(o, i, &t);
        if (s == ROAD_OK) s = road_optimizer_tensor_key(o, i, key, KEY_CAP);
        size_t k = strlen(key);
        /* m and v have the parameter's shape (a copy's weight is 2-D) */
        if (s == ROAD_OK) {
            memcpy(key + k, M_SUFFIX, sizeof M_SUFFIX);
            s = road_st_writer_add(w, key, ROAD_DTYPE_F32, t.ndim, t.shape, t.m);
        }
        if (s == ROAD_OK) {
            memcpy(key + k, V_SUFFIX, sizeof V_SUFFIX);
            s = road_st_writer_add(w, key, ROAD_DTYPE_F32, t.ndim, t.shape, t.v);
        }
    }
    return road__st_writer_finish(w, s, dir, OPTIM_FILE);
}

/* Full fine-tuning: every model tensor, F32, under its Hugging Face name. */
static road_status write_model(road_optimizer *o, const char *dir) {
    road_st_writer *w = NULL;
    road_status s = road_st_writer_create(&w);
    if (s == ROAD_OK) s = road_st_writer_set_metadata(w, "format", "pt");
    char key[KEY_CAP];
    for (int32_t i = 0; i < o->n_t && s == ROAD_OK; i++) {
        road_optim_tensor t;
        s = road__optim_fetch(o, i, &t);
        if (s == ROAD_OK) s = road_optimizer_tensor_key(o, i, key, KEY_CAP);
        if (s == ROAD_OK) s = road_st_writer_add(w, key, ROAD_DTYPE_F32, t.ndim, t.shape, t.param);
    }
    return road__st_writer_finish(w, s, dir, MODEL_WEIGHTS);
}

static void hex64(char buf[19], uint64_t x) {
    snprintf(buf, 19, "0x%016" PRIx64, x);
}

/* Build trainer_state.json's tree; NULL when cJSON runs out of memory. */
static cJSON *state_json(const road_optimizer *o, const road_checkpoint_state *st, cJSON *run) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    ok = ok && cJSON_AddStringToObject(root, "format", CKPT_FORMAT);
    ok = ok && cJSON_AddNumberToObject(root, "version", CKPT_VERSION);
    ok = ok && cJSON_AddNumberToObject(root, "global_step", (double)o->step);
    ok = ok && cJSON_AddBoolToObject(root, "full_training", o->model != NULL);
    cJSON *ad = ok ? cJSON_AddArrayToObject(root, "adapters") : NULL;
    ok = ad != NULL;
    for (int32_t i = 0; ok && i < o->n_names; i++) {
        cJSON *n = cJSON_CreateString(o->names[i]);
        ok = n && cJSON_AddItemToArray(ad, n);
    }
    cJSON *opt = ok ? cJSON_AddObjectToObject(root, "optimizer") : NULL;
    ok = opt != NULL;
    ok = ok && cJSON_AddStringToObject(opt, "name", "adamw");
    ok = ok && cJSON_AddNumberToObject(opt, "lr", o->hp.lr);
    ok = ok && cJSON_AddNumberToObject(opt, "beta1", o->hp.beta1);
    ok = ok && cJSON_AddNumberToObject(opt, "beta2", o->hp.beta2);
    ok = ok && cJSON_AddNumberToObject(opt, "eps", o->hp.eps);
    ok = ok && cJSON_AddNumberToObject(opt, "weight_decay", o->hp.weight_decay);
    cJSON *sc = ok ? cJSON_AddObjectToObject(root, "schedule") : NULL;
    ok = sc != NULL;
    ok = ok && cJSON_AddStringToObject(sc, "name", road_schedule_name(st->schedule.kind));
    ok = ok && cJSON_AddNumberToObject(sc, "warmup_steps", (double)st->schedule.warmup_steps);
    ok = ok && cJSON_AddNumberToObject(sc, "training_steps", (double)st->schedule.training_steps);
    ok = ok && cJSON_AddNumberToObject(sc, "step", (double)o->step);
    cJSON *rng = ok ? cJSON_AddObjectToObject(root, "rng") : NULL;
    cJSON *words = rng ? cJSON_AddArrayToObject(rng, "s") : NULL;
    ok = words != NULL;
    char hex[19];
    for (int i = 0; ok && i < 4; i++) {
        hex64(hex, st->rng.s[i]);
        cJSON *w = cJSON_CreateString(hex);
        ok = w && cJSON_AddItemToArray(words, w);
    }
    uint64_t bits;
    memcpy(&bits, &st->rng.spare, sizeof bits);
    hex64(hex, bits);
    ok = ok && cJSON_AddStringToObject(rng, "spare_bits", hex);
    ok = ok && cJSON_AddBoolToObject(rng, "has_spare", st->rng.has_spare != 0);
    cJSON *dp = ok ? cJSON_AddArrayToObject(root, "data_position") : NULL;
    ok = dp != NULL;
    for (int32_t i = 0; ok && i < st->n_data_pos; i++) {
        char num[24];
        snprintf(num, sizeof num, "%" PRId64, st->data_pos[i]);
        cJSON *v = cJSON_CreateString(num);
        ok = v && cJSON_AddItemToArray(dp, v);
    }
    if (ok && run) { /* what identifies the run (checked on resume: train/run.c) */
        ok = cJSON_AddItemToObject(root, "run", run);
        if (ok) run = NULL;
    }
    cJSON_Delete(run);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static road_status write_json_file(const char *dir, const char *name, const char *text,
                                   size_t len) {
    char *path = road__path_join(dir, name);
    if (!path) return ROAD_ERR_NO_MEMORY;
    road_status s = road__file_write_atomic(path, text, len);
    road__free(path);
    return s;
}

static road_status write_state(const road_optimizer *o, const road_checkpoint_state *st,
                               const char *dir) {
    cJSON *run = NULL;
    if (st->run_json) {
        road_status s = road_json_parse(st->run_json, strlen(st->run_json), &run);
        if (s == ROAD_OK && !cJSON_IsObject(run)) {
            cJSON_Delete(run);
            s = road__error(ROAD_ERR_INVALID_ARG, "the run identity is not a JSON object");
        }
        if (s != ROAD_OK) return s;
    }
    cJSON *root = state_json(o, st, run); /* takes run */
    if (!root) return road__error(ROAD_ERR_NO_MEMORY, "out of memory building " STATE_FILE);
    char *text = NULL;
    size_t len = 0;
    road_status s = road__json_dump(root, &text, &len);
    cJSON_Delete(root);
    if (s != ROAD_OK) return s;
    /* Python's json.dump writes no final newline; a text file reads better with one. */
    text[len] = '\n';
    s = write_json_file(dir, STATE_FILE, text, len + 1);
    road__free(text);
    return s;
}

road_status road_checkpoint_save(road_optimizer *o, const road_checkpoint_state *st,
                                 const char *config_json, const char *dir) {
    if (!o || !dir || !*dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_checkpoint_save: NULL argument");
    road_checkpoint_state zero;
    if (!st) {
        memset(&zero, 0, sizeof zero);
        zero.schedule = road_schedule_default();
        st = &zero;
    }
    road_status s = road_schedule_check(&st->schedule);
    if (s != ROAD_OK) return s;
    if (st->n_data_pos < 0 || st->n_data_pos > ROAD_CHECKPOINT_MAX_DATA_POS)
        return road__error(ROAD_ERR_INVALID_ARG, "data position has %d values; 0 to %d are allowed",
                           st->n_data_pos, ROAD_CHECKPOINT_MAX_DATA_POS);
    /* "a/ckpt/" names the folder "a/ckpt": drop trailing slashes so the temporary folder is
     * made next to it, not inside it. */
    char *target = road__dir_trim(dir);
    if (!target) return ROAD_ERR_NO_MEMORY;
    dir = target;
    char *parent = road__path_parent(dir);
    if (!parent) {
        road__free(target);
        return ROAD_ERR_NO_MEMORY;
    }
    /* the rule (road/outdir.h): only a checkpoint folder is replaced; creates the parent */
    s = road__dir_check_target(dir, ROAD_OUT_CHECKPOINT, true, NULL, 0, NULL);
    char *tmp = NULL;
    if (s == ROAD_OK) s = road__dir_make_temp(dir, ".tmp.", &tmp);
    if (s == ROAD_OK)
        s = o->model ? write_model(o, tmp)
                     : road_adapter_set_save(o->set, tmp, (const char *const *)o->names, o->n_names);
    if (s == ROAD_OK) s = write_optimizer(o, tmp);
    if (s == ROAD_OK) s = write_state(o, st, tmp);
    if (s == ROAD_OK && config_json)
        s = write_json_file(tmp, CONFIG_FILE, config_json, strlen(config_json));
    if (s == ROAD_OK) {
        road__dir_fsync(tmp);
        s = road__dir_install(tmp, dir);
    }
    if (s == ROAD_OK) {
        road__dir_fsync(parent);
    } else {
        if (tmp) road__dir_remove_tree(tmp, ROAD_DIR_DEPTH);
        road__error_prefix("saving checkpoint '%s' (an existing checkpoint there is unchanged)",
                           dir);
    }
    road__free(tmp);
    road__free(parent);
    road__free(target);
    return s;
}

static road_status bad_state(const char *what);
static road_status json_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                            int64_t *out);

road_status road_checkpoint_read_run(const char *dir, char **run_json, int64_t *step,
                                     bool *finished) {
    if (!dir || !run_json)
        return road__error(ROAD_ERR_INVALID_ARG, "road_checkpoint_read_run: NULL argument");
    *run_json = NULL;
    char *path = road__path_join(dir, STATE_FILE), *text = NULL;
    if (!path) return ROAD_ERR_NO_MEMORY;
    size_t len = 0;
    cJSON *root = NULL;
    road_status s = road__file_read(path, STATE_MAX_BYTES, &text, &len);
    if (s == ROAD_OK) s = road_json_parse(text, len, &root);
    road__free(text);
    const cJSON *fmt = road__json_get(root, "format");
    const bool run_state = cJSON_IsString(fmt) && strcmp(fmt->valuestring, RUN_FORMAT) == 0;
    if (s == ROAD_OK && !run_state &&
        !(cJSON_IsString(fmt) && strcmp(fmt->valuestring, CKPT_FORMAT) == 0))
        s = road__error(ROAD_ERR_FORMAT, "'format' is not \"" CKPT_FORMAT "\" nor \"" RUN_FORMAT
                                         "\" (not written by road)");
    int64_t gs = 0;
    if (s == ROAD_OK) s = json_int(root, "global_step", 0, (int64_t)JSON_INT_MAX, &gs);
    const cJSON *run = road__json_get(root, "run");
    if (s == ROAD_OK && run && !cJSON_IsObject(run)) s = bad_state("'run' is not an object");
    size_t rlen = 0;
    if (s == ROAD_OK && run) s = road__json_dump(run, run_json, &rlen);
    cJSON_Delete(root);
    if (s != ROAD_OK) road__error_prefix("reading '%s'", path);
    road__free(path);
    if (s == ROAD_OK) {
        if (step) *step = gs;
        if (finished) *finished = run_state;
    }
    return s;
}

road_status road_checkpoint_path(const char *root, int64_t step, char **out) {
    if (!root || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_checkpoint_path: NULL argument");
    if (step < 0)
        return road__error(ROAD_ERR_INVALID_ARG, "step %lld is negative", (long long)step);
    char name[48];
    snprintf(name, sizeof name, CKPT_PREFIX "%" PRId64, step);
    *out = road__path_join(root, name);
    return *out ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

/* "checkpoint-<digits>" exactly: the step, or -1. */
static int64_t checkpoint_step(const char *name) {
    size_t p = strlen(CKPT_PREFIX);
    if (strncmp(name, CKPT_PREFIX, p) != 0 || !name[p]) return -1;
    int64_t v = 0;
    for (const char *c = name + p; *c; c++) {
        if (*c < '0' || *c > '9' || v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*c - '0');
    }
    return v;
}

road_status road_checkpoint_find_last(const char *root, char **path, int64_t *step) {
    if (!root || !path)
        return road__error(ROAD_ERR_INVALID_ARG, "road_checkpoint_find_last: NULL argument");
    *path = NULL;
    DIR *d = opendir(root);
    if (!d)
        return road__error(ROAD_ERR_NOT_FOUND, "no checkpoint in '%s': %s", root, strerror(errno));
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t k = checkpoint_step(e->d_name);
        if (k <= best) continue;
        char *full = road__path_join(root, e->d_name);
        if (!full) {
            closedir(d);
            return ROAD_ERR_NO_MEMORY;
        }
        if (road__is_dir(full)) best = k;
        road__free(full);
    }
    closedir(d);
    if (best < 0)
        return road__error(ROAD_ERR_NOT_FOUND, "no " CKPT_PREFIX "<step> folder in '%s'", root);
    if (step) *step = best;
    return road_checkpoint_path(root, best, path);
}

/* ---- load ------------------------------------------------------------------------------------ */

typedef struct load_ctx {
    road_optimizer *o;
    const char *dir;
    road_checkpoint_state st;
    int64_t step;
    road_st_file **adapters; /* [n_names] */
    road_st_file *optim;
    road_optim_tensor *live; /* [n_t] */
    const float **src;       /* [3 * n_t]: param, m, v per tensor */
    char *config;
} load_ctx;

static void load_ctx_free(load_ctx *c) {
    const int32_t n_files = c->o->model ? 1 : c->o->n_names;
    for (int32_t i = 0; c->adapters && i < n_files; i++) road_st_close(c->adapters[i]);
    road__free(c->adapters);
    road_st_close(c->optim);
    road__free(c->live);
    road__free(c->src);
    road__free(c->config);
}

static road_status bad_state(const char *what) {
    return road__error(ROAD_ERR_FORMAT, STATE_FILE ": %s", what);
}

/* A JSON integer in [lo, hi] (exact in double). */
static road_status json_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                            int64_t *out) {
    const cJSON *v = road__json_get(obj, key);
    if (!v || !cJSON_IsNumber(v) || !road__json_is_int(v) || fabs(v->valuedouble) > JSON_INT_MAX ||
        v->valuedouble < (double)lo || v->valuedouble > (double)hi) {
        char desc[80] = "missing";
        if (v) road__json_describe(v, desc, sizeof desc);
        return road__error(ROAD_ERR_FORMAT,
                           STATE_FILE ": '%s' must be an integer in [%lld, %lld], found %s", key,
                           (long long)lo, (long long)hi, desc);
    }
    *out = (int64_t)v->valuedouble;
    return ROAD_OK;
}

static bool parse_hex64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsString(v) || strlen(v->valuestring) != 18 || strncmp(v->valuestring, "0x", 2) != 0)
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v->valuestring + 2, &end, 16);
    if (errno || *end || v->valuestring[2] == '-' || v->valuestring[2] == '+') return false;
    *out = (uint64_t)x;
    return true;
}

static road_status parse_state(load_ctx *c, const cJSON *root) {
    road_optimizer *o = c->o;
    if (!cJSON_IsObject(root)) return bad_state("not a JSON object");
    const cJSON *fmt = road__json_get(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, CKPT_FORMAT) != 0)
        return bad_state("'format' is not \"" CKPT_FORMAT "\" (not a road checkpoint)");
    int64_t ver = 0;
    road_status s = json_int(root, "version", 0, INT32_MAX, &ver);
    if (s != ROAD_OK) return s;
    if (ver != CKPT_VERSION)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           STATE_FILE ": version %lld; this road reads version %d", (long long)ver,
                           CKPT_VERSION);
    s = json_int(root, "global_step", 0, (int64_t)JSON_INT_MAX, &c->step);
    if (s != ROAD_OK) return s;
    const cJSON *ft = road__json_get(root, "full_training");
    const bool full = cJSON_IsTrue(ft);
    if (ft && !cJSON_IsBool(ft)) return bad_state("'full_training' must be true or false");
    if (full != (o->model != NULL))
        return road__error(ROAD_ERR_SHAPE, "the checkpoint %s; this optimizer %s",
                           full ? "is of full fine-tuning (every weight)" : "trains adapters",
                           o->model ? "does full fine-tuning" : "trains adapters");
    /* The trainable adapters must be the optimizer's, in order (the state's tensor order). */
    const cJSON *ad = road__json_get(root, "adapters");
    bool same = cJSON_IsArray(ad) && cJSON_GetArraySize(ad) == o->n_names;
    for (int32_t i = 0; same && i < o->n_names; i++) {
        const cJSON *n = cJSON_GetArrayItem(ad, i);
        same = cJSON_IsString(n) && strcmp(n->valuestring, o->names[i]) == 0;
    }
    if (!same) {
        char *txt = ad ? cJSON_PrintUnformatted(ad) : NULL;
        s = road__error(ROAD_ERR_SHAPE,
                        "the checkpoint trains adapters %s; this optimizer trains %d starting with "
                        "'%s' (build the optimizer over the same adapters, in the same order)",
                        txt ? txt : "(missing)", o->n_names, o->n_names ? o->names[0] : "");
        free(txt);
        return s;
    }
    const cJSON *sc = road__json_get(root, "schedule");
    if (!cJSON_IsObject(sc)) return bad_state("'schedule' is missing or not an object");
    const cJSON *sn = road__json_get(sc, "name");
    if (!cJSON_IsString(sn)) return bad_state("'schedule.name' is missing");
    s = road_schedule_parse(sn->valuestring, &c->st.schedule.kind);
    if (s == ROAD_OK)
        s = json_int(sc, "warmup_steps", 0, (int64_t)JSON_INT_MAX, &c->st.schedule.warmup_steps);
    if (s == ROAD_OK)
        s = json_int(sc, "training_steps", 0, (int64_t)JSON_INT_MAX,
                     &c->st.schedule.training_steps);
    int64_t sstep = 0;
    if (s == ROAD_OK) s = json_int(sc, "step", 0, (int64_t)JSON_INT_MAX, &sstep);
    if (s != ROAD_OK) return s;
    if (sstep != c->step)
        return road__error(ROAD_ERR_FORMAT,
                           STATE_FILE ": schedule step %lld differs from global_step %lld",
                           (long long)sstep, (long long)c->step);
    const cJSON *rng = road__json_get(root, "rng");
    const cJSON *words = cJSON_IsObject(rng) ? road__json_get(rng, "s") : NULL;
    if (!cJSON_IsArray(words) || cJSON_GetArraySize(words) != 4)
        return bad_state("'rng.s' must be a list of 4 hex strings");
    for (int i = 0; i < 4; i++)
        if (!parse_hex64(cJSON_GetArrayItem(words, i), &c->st.rng.s[i]))
            return bad_state("'rng.s' must hold 4 strings \"0x\" + 16 hex digits");
    uint64_t bits = 0;
    if (!parse_hex64(road__json_get(rng, "spare_bits"), &bits))
        return bad_state("'rng.spare_bits' must be \"0x\" + 16 hex digits");
    memcpy(&c->st.rng.spare, &bits, sizeof bits);
    const cJSON *hs = road__json_get(rng, "has_spare");
    if (!cJSON_IsBool(hs)) return bad_state("'rng.has_spare' must be true or false");
    c->st.rng.has_spare = cJSON_IsTrue(hs) ? 1 : 0;
    const cJSON *dp = road__json_get(root, "data_position");
    if (!cJSON_IsArray(dp) || cJSON_GetArraySize(dp) > ROAD_CHECKPOINT_MAX_DATA_POS)
        return bad_state("'data_position' must be a list of at most 16 integer strings");
    c->st.n_data_pos = cJSON_GetArraySize(dp);
    for (int32_t i = 0; i < c->st.n_data_pos; i++) {
        const cJSON *v = cJSON_GetArrayItem(dp, i);
        char *end = NULL;
        errno = 0;
        long long x = cJSON_IsString(v) ? strtoll(v->valuestring, &end, 10) : 0;
        if (!cJSON_IsString(v) || !v->valuestring[0] || errno || *end)
            return bad_state("'data_position' must hold decimal integer strings");
        c->st.data_pos[i] = (int64_t)x;
    }
    return ROAD_OK;
}

static road_status read_state(load_ctx *c) {
    char *path = road__path_join(c->dir, STATE_FILE);
    if (!path) return ROAD_ERR_NO_MEMORY;
    char *text = NULL;
    size_t len = 0;
    road_status s = road__file_read(path, STATE_MAX_BYTES, &text, &len);
    road__free(path);
    if (s != ROAD_OK) return s;
    cJSON *root = NULL;
    s = road_json_parse(text, len, &root);
    road__free(text);
    if (s != ROAD_OK) {
        road__error_prefix(STATE_FILE);
        return s;
    }
    s = parse_state(c, root);
    cJSON_Delete(root);
    return s;
}

/* The adapter's saved config must give the same variant and group size as the live one
 * (a different group size pairs other features with the same parameter count). */
static road_status check_adapter_config(const road_optimizer *o, const char *name,
                                        const char *folder) {
    road_config *cfg = NULL;
    road_status s = road_config_load(folder, &cfg);
    if (s != ROAD_OK) return s;
    const road_config *live = road_adapter_set_config(o->set, name);
    if (!live)
        s = road__error(ROAD_ERR_STATE, "adapter '%s' is no longer in the set", name);
    else if (road_config_variant(cfg) != road_config_variant(live) ||
             road_config_group_size(cfg) != road_config_group_size(live))
        s = road__error(
            ROAD_ERR_SHAPE,
            "adapter '%s' was saved as %s with group_size %d; the set has it as %s with "
            "group_size %d",
            name, road_variant_name(road_config_variant(cfg)), road_config_group_size(cfg),
            road_variant_name(road_config_variant(live)), road_config_group_size(live));
    road_config_free(cfg);
    return s;
}

/* Open every adapter's weights and check configs; keys are checked per tensor later. */
static road_status open_adapters(load_ctx *c) {
    road_optimizer *o = c->o;
    if (o->model) { /* full fine-tuning: one file of model tensors, read as "adapter" 0 */
        c->adapters = road__calloc(1, sizeof *c->adapters);
        char *path = road__path_join(c->dir, MODEL_WEIGHTS);
        road_status s = c->adapters && path ? road_st_open(path, &c->adapters[0]) : ROAD_ERR_NO_MEMORY;
        if (s == ROAD_OK && road_st_count(c->adapters[0]) != o->n_t)
            s = road__error(ROAD_ERR_SHAPE, "'%s' holds %lld tensors; the model has %d", path,
                            (long long)road_st_count(c->adapters[0]), o->n_t);
        road__free(path);
        return s;
    }
    c->adapters = road__calloc((size_t)o->n_names, sizeof *c->adapters);
    if (!c->adapters) return ROAD_ERR_NO_MEMORY;
    road_status s = ROAD_OK;
    for (int32_t a = 0; a < o->n_names && s == ROAD_OK; a++) {
        char *folder = adapter_dir(c->dir, o->names[a]);
        char *path = folder ? road__path_join(folder, ADAPTER_WEIGHTS) : NULL;
        s = path ? check_adapter_config(o, o->names[a], folder) : ROAD_ERR_NO_MEMORY;
        if (s == ROAD_OK) s = road_st_open(path, &c->adapters[a]);
        if (s == ROAD_OK) {
            int64_t want = 0;
            for (int32_t i = 0; i < o->n_t; i++) want += o->t[i].adapter == a;
            if (road_st_count(c->adapters[a]) != want)
                s = road__error(ROAD_ERR_SHAPE,
                                "'%s' holds %lld tensors; adapter '%s' has %lld on this model "
                                "(the checkpoint was made on other layers or targets)",
                                path, (long long)road_st_count(c->adapters[a]), o->names[a],
                                (long long)want);
        }
        road__free(path);
        road__free(folder);
    }
    return s;
}

static road_status check_finite(const char *what, const char *key, const float *x, int64_t n,
                                bool nonneg) {
    for (int64_t k = 0; k < n; k++) {
        if (!isfinite(x[k]) || (nonneg && x[k] < 0.0f))
            return road__error(ROAD_ERR_NUMERIC, "%s: '%s'[%lld] is %g, expected a finite%s value",
                               what, key, (long long)k, (double)x[k],
                               nonneg ? " non-negative" : "");
    }
    return ROAD_OK;
}

/* Every tensor: present, F32 [n], finite (v >= 0). Fills c->src. */
static road_status check_tensors(load_ctx *c) {
    road_optimizer *o = c->o;
    char key[KEY_CAP + 16], pkey[KEY_CAP];
    const size_t nt = (size_t)(o->n_t > 0 ? o->n_t : 1);
    c->live = road__calloc(nt, sizeof *c->live);
    c->src = road__calloc(3 * nt, sizeof *c->src);
    if (!c->live || !c->src) return ROAD_ERR_NO_MEMORY;
    road_status s = ROAD_OK;
    if (road_st_count(c->optim) != 2 * (int64_t)o->n_t)
        return road__error(ROAD_ERR_SHAPE,
                           OPTIM_FILE
                           " holds %lld tensors; this optimizer has %d parameter tensors "
                           "(2 state tensors each)",
                           (long long)road_st_count(c->optim), o->n_t);
    const char *fmt = road_st_metadata(c->optim, "format");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0)
        return road__error(ROAD_ERR_FORMAT,
                           OPTIM_FILE ": metadata 'format' is not '" CKPT_FORMAT "'");
    for (int32_t i = 0; i < o->n_t && s == ROAD_OK; i++) {
        const otensor *t = &o->t[i];
        /* a copy's weight is [rows x n/rows], everything else [n] */
        const int32_t ndim = t->rows > 0 ? 2 : 1;
        const int64_t shape[2] = {t->rows > 0 ? t->rows : t->n, t->rows > 0 ? t->n / t->rows : 1};
        s = road__optim_fetch(o, i, &c->live[i]);
        /* The adapter file uses PEFT's saved keys (no adapter name); a model file the tensor
         * names. */
        if (s == ROAD_OK && t->kind == ROAD_OPTIM_MODEL)
            s = road_optimizer_tensor_key(o, i, pkey, sizeof pkey);
        else if (s == ROAD_OK)
            s = snprintf(pkey, sizeof pkey, "%s%s%s", ROAD_TRAIN_KEY_PREFIX,
                         road_adapter_set_layer_name(o->set, t->layer),
                         road_optim_suffix(t->kind)) < (int)sizeof pkey
                    ? ROAD_OK
                    : road__error(ROAD_ERR_INVALID_ARG, "layer name too long");
        if (s == ROAD_OK)
            s = road_st_get_f32(c->adapters[t->adapter], pkey, ndim, shape, &c->src[3 * i], NULL);
        if (s == ROAD_OK) s = check_finite("adapter weights", pkey, c->src[3 * i], t->n, false);
        if (s == ROAD_OK) s = road_optimizer_tensor_key(o, i, key, KEY_CAP);
        size_t k = strlen(key);
        for (int j = 0; j < 2 && s == ROAD_OK; j++) {
            const char *suffix = j ? V_SUFFIX : M_SUFFIX;
            memcpy(key + k, suffix, strlen(suffix) + 1);
            s = road_st_get_f32(c->optim, key, ndim, shape, &c->src[3 * i + 1 + j], NULL);
            if (s == ROAD_OK)
                s = check_finite(OPTIM_FILE, key, c->src[3 * i + 1 + j], t->n, j == 1);
        }
    }
    return s;
}

static road_status read_config(load_ctx *c) {
    char *path = road__path_join(c->dir, CONFIG_FILE);
    if (!path) return ROAD_ERR_NO_MEMORY;
    road_status s = ROAD_OK;
    struct stat sb;
    if (stat(path, &sb) == 0) {
        size_t len = 0;
        s = road__file_read(path, RUN_CONFIG_MAX_BYTES, &c->config, &len);
    }
    road__free(path);
    return s;
}

road_status road_checkpoint_load(road_optimizer *o, const char *dir, road_checkpoint_state *st,
                                 char **config_json) {
    if (config_json) *config_json = NULL;
    if (!o || !dir) return road__error(ROAD_ERR_INVALID_ARG, "road_checkpoint_load: NULL argument");
    if (!road__is_dir(dir))
        return road__error(ROAD_ERR_NOT_FOUND, "checkpoint '%s' is not a folder", dir);
    if (road_adapter_set_merged(o->set))
        return road__error(ROAD_ERR_STATE, "cannot load a checkpoint while adapters are merged "
                                           "(unmerge first)");
    load_ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.dir = dir;
    road_status s = read_state(&c);
    if (s == ROAD_OK) s = open_adapters(&c);
    char *opath = NULL;
    if (s == ROAD_OK) {
        opath = road__path_join(dir, OPTIM_FILE);
        s = opath ? road_st_open(opath, &c.optim) : ROAD_ERR_NO_MEMORY;
    }
    road__free(opath);
    if (s == ROAD_OK) s = check_tensors(&c);
    if (s == ROAD_OK && config_json) s = read_config(&c);
    if (s != ROAD_OK) {
        road__error_prefix("loading checkpoint '%s' (nothing was changed)", dir);
        load_ctx_free(&c);
        return s;
    }
    /* Everything is checked: nothing below can fail. */
    for (int32_t i = 0; i < o->n_t; i++) {
        const size_t bytes = (size_t)o->t[i].n * sizeof(float);
        memcpy(c.live[i].param, c.src[3 * i], bytes);
        memcpy(c.live[i].m, c.src[3 * i + 1], bytes);
        memcpy(c.live[i].v, c.src[3 * i + 2], bytes);
    }
    for (int32_t i = 0; i < o->n_t; i++) {
        if (o->t[i].kind != ROAD_OPTIM_THETA) continue; /* one bump per (theta, alpha) pair */
        /* (model tensors of full fine-tuning have no cache) */
        s = road_linear_params_changed(road_adapter_set_layer(o->set, o->t[i].layer),
                                       c.live[i].adapter);
        ROAD_ASSERT(s == ROAD_OK);
    }
    o->step = c.step;
    if (st) *st = c.st;
    if (config_json) {
        *config_json = c.config;
        c.config = NULL;
    }
    load_ctx_free(&c);
    return ROAD_OK;
}
