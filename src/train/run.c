/*
 * train/run.c - what identifies a training run, and road_train's output folder.
 *
 * Why: `--resume` used to take the highest checkpoint-N in the output folder whatever run wrote
 * it, so a "new" run with other data, adapter or model could silently finish with the old
 * run's adapter. Every checkpoint (and the finished run's trainer_state.json at the top of the
 * folder) now carries the run's identity: the caller's part (road train: the model's path,
 * config hash and weight bytes; each data file's path, size and hash; the adapter config; the
 * data settings) plus road_train's own settings that change the result (below). Resume
 * compares the two field by field and refuses a difference, naming the fields.
 *
 * Not in the identity, because they do not change the trained weights: eval data and
 * eval_every (they only choose best/), save_every, recompute (bit-identical), threads, the log.
 */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/dir.h"
#include "io/file.h"
#include "io/json.h"
#include "train/train_internal.h"

#define RUN_STATE_FILE "trainer_state.json"
#define RUN_FORMAT "road-run"
#define RUN_VERSION 1
/* The identity's member that says where the run stops, when that does not change the steps
 * before it (constant schedules); not compared on resume. */
#define STOP_KEY "stop"
/* Differing fields named in a refusal; the rest are counted. */
#define DIFF_SHOWN 6
/* Longest value quoted back in a refusal (a path or a hash fits). */
#define VALUE_SHOWN 48
#define MSG_CAP 900

/* Does the learning rate at step s depend on the run's length? (linear and cosine decay over
 * it; the constant schedules do not.) */
static bool schedule_reads_length(const road_train_params *p) {
    return p->schedule.kind == ROAD_SCHEDULE_LINEAR || p->schedule.kind == ROAD_SCHEDULE_COSINE;
}

/* road_train's own settings that change what is trained. With a constant schedule, max_steps
 * and epochs only say where the run stops (step s is the same whatever comes after it): they
 * go to STOP_KEY, which resume does not compare, so a finished run can be continued further. */
static cJSON *trainer_fields(const road_train_params *p, cJSON *stop) {
    cJSON *t = cJSON_CreateObject();
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, p->seed); /* a string: 64 bits do not fit a double */
    bool ok = t != NULL;
    ok = ok && cJSON_AddNumberToObject(t, "lr", p->adamw.lr);
    ok = ok && cJSON_AddNumberToObject(t, "beta1", p->adamw.beta1);
    ok = ok && cJSON_AddNumberToObject(t, "beta2", p->adamw.beta2);
    ok = ok && cJSON_AddNumberToObject(t, "eps", p->adamw.eps);
    ok = ok && cJSON_AddNumberToObject(t, "weight_decay", p->adamw.weight_decay);
    ok = ok && cJSON_AddStringToObject(t, "schedule", road_schedule_name(p->schedule.kind));
    ok = ok && cJSON_AddNumberToObject(t, "warmup_steps", (double)p->schedule.warmup_steps);
    cJSON *len = schedule_reads_length(p) ? t : stop;
    if (schedule_reads_length(p))
        ok = ok && cJSON_AddNumberToObject(t, "schedule_steps", (double)p->schedule.training_steps);
    ok = ok && cJSON_AddNumberToObject(len, "epochs", (double)p->epochs);
    ok = ok && cJSON_AddNumberToObject(len, "max_steps", (double)p->max_steps);
    ok = ok && cJSON_AddNumberToObject(t, "batch_size", (double)p->batch_size);
    ok = ok && cJSON_AddNumberToObject(t, "grad_accum", (double)p->grad_accum);
    ok = ok && cJSON_AddNumberToObject(t, "max_grad_norm", p->max_grad_norm);
    ok = ok && cJSON_AddStringToObject(t, "seed", seed);
    ok = ok && cJSON_AddBoolToObject(t, "full", p->full);
    if (p->full) ok = ok && cJSON_AddStringToObject(t, "save_dtype", road_dtype_name(p->save_dtype));
    if (!ok) {
        cJSON_Delete(t);
        return NULL;
    }
    return t;
}

road_status road__train_identity(const road_train_params *p, char **out) {
    *out = NULL;
    cJSON *root = NULL;
    road_status s = ROAD_OK;
    if (p->run_json) {
        s = road_json_parse(p->run_json, strlen(p->run_json), &root);
        if (s == ROAD_OK && !cJSON_IsObject(root))
            s = road__error(ROAD_ERR_INVALID_ARG, "road_train: run_json is not a JSON object");
        if (s != ROAD_OK) {
            cJSON_Delete(root);
            return s;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(root, "trainer");
        cJSON_DeleteItemFromObjectCaseSensitive(root, STOP_KEY);
    } else if (!(root = cJSON_CreateObject())) {
        return ROAD_ERR_NO_MEMORY;
    }
    cJSON *stop = cJSON_CreateObject();
    cJSON *t = stop ? trainer_fields(p, stop) : NULL;
    if (!t || !cJSON_AddItemToObject(root, "trainer", t)) {
        cJSON_Delete(t);
        cJSON_Delete(stop);
        cJSON_Delete(root);
        return ROAD_ERR_NO_MEMORY;
    }
    if (!cJSON_AddItemToObject(root, STOP_KEY, stop)) {
        cJSON_Delete(stop);
        cJSON_Delete(root);
        return ROAD_ERR_NO_MEMORY;
    }
    size_t len = 0;
    s = road__json_dump(root, out, &len);
    cJSON_Delete(root);
    return s;
}

/* ---- comparing two identities ------------------------------------------------------------- */

typedef struct diff {
    int n;
    size_t len;
    char text[MSG_CAP];
} diff;

static void value_text(const cJSON *v, char *buf, size_t cap) {
    if (!v)
        snprintf(buf, cap, "absent");
    else if (cJSON_IsString(v))
        snprintf(buf, cap, "\"%.*s%s\"", VALUE_SHOWN, v->valuestring,
                 strlen(v->valuestring) > VALUE_SHOWN ? "..." : "");
    else if (cJSON_IsNumber(v))
        snprintf(buf, cap, "%.17g", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNull(v))
        snprintf(buf, cap, "null");
    else
        snprintf(buf, cap, "%s", cJSON_IsArray(v) ? "a list" : "an object");
}

static void diff_add(diff *d, const char *path, const cJSON *was, const cJSON *now) {
    if (d->n++ >= DIFF_SHOWN || d->len >= sizeof d->text) return;
    char a[VALUE_SHOWN + 8], b[VALUE_SHOWN + 8];
    value_text(was, a, sizeof a);
    value_text(now, b, sizeof b);
    int k = snprintf(d->text + d->len, sizeof d->text - d->len, "%s%s (was %s, now %s)",
                     d->len ? "; " : "", *path ? path : "(the whole identity)", a, b);
    if (k > 0) d->len += (size_t)k;
}

/* Record every leaf where `was` (saved) and `now` differ, with its dotted path. */
static void diff_walk(diff *d, const char *path, const cJSON *was, const cJSON *now) {
    char sub[256];
    if (cJSON_IsObject(was) && cJSON_IsObject(now)) {
        const cJSON *c;
        cJSON_ArrayForEach(c, was) {
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", c->string);
            diff_walk(d, sub, c, road__json_get(now, c->string));
        }
        cJSON_ArrayForEach(c, now) {
            if (road__json_get(was, c->string)) continue;
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", c->string);
            diff_add(d, sub, NULL, c);
        }
        return;
    }
    if (cJSON_IsArray(was) && cJSON_IsArray(now) &&
        cJSON_GetArraySize(was) == cJSON_GetArraySize(now)) {
        for (int i = 0; i < cJSON_GetArraySize(was); i++) {
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            diff_walk(d, sub, cJSON_GetArrayItem(was, i), cJSON_GetArrayItem(now, i));
        }
        return;
    }
    if (!was || !now || !cJSON_Compare(was, now, true)) diff_add(d, path, was, now);
}

/* Refuse (ROAD_ERR_STATE) when the identity saved in `where` differs from this run's.
 * *moved_stop (may be NULL) tells whether the stopping point (STOP_KEY) differs. */
static road_status compare(const char *saved, const char *mine, const char *where, int64_t step,
                           bool finished, const char *out, bool *moved_stop) {
    cJSON *a = NULL, *b = NULL;
    road_status s = road_json_parse(saved, strlen(saved), &a);
    if (s == ROAD_OK) s = road_json_parse(mine, strlen(mine), &b);
    diff d = {0, 0, {0}};
    if (s == ROAD_OK) {
        if (moved_stop)
            *moved_stop =
                !cJSON_Compare(road__json_get(a, STOP_KEY), road__json_get(b, STOP_KEY), true);
        cJSON_DeleteItemFromObjectCaseSensitive(a, STOP_KEY);
        cJSON_DeleteItemFromObjectCaseSensitive(b, STOP_KEY);
        diff_walk(&d, "", a, b);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    if (s != ROAD_OK || d.n == 0) return s;
    char more[48] = "";
    if (d.n > DIFF_SHOWN) snprintf(more, sizeof more, " (and %d more)", d.n - DIFF_SHOWN);
    return road__error(ROAD_ERR_STATE,
                       "%s '%s' (step %lld) was written by another run: %d field%s differ%s: "
                       "%s%s. "
                       "Resume with the same model, data and settings, or start again with "
                       "--overwrite (replaces the run in '%s')",
                       finished ? "the finished run in" : "checkpoint", where, (long long)step, d.n,
                       d.n > 1 ? "s" : "", d.n > 1 ? "" : "s", d.text, more, out);
}

/* ---- the output folder -------------------------------------------------------------------- */

/* Does the folder hold a run (anything besides the run's configuration and log)? */
static bool holds_run(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                strcmp(e->d_name, "run_config.json") != 0 &&
                strcmp(e->d_name, "train_log.jsonl") != 0;
    closedir(d);
    return found;
}

static road_status check_identity(const road_train_params *p, road_train_out *info) {
    char *mine = NULL, *saved = NULL, *path = NULL;
    road_status s = road__train_identity(p, &mine);
    int64_t step = 0;
    bool finished = false;
    char *top = s == ROAD_OK ? road__path_join(p->out_dir, RUN_STATE_FILE) : NULL;
    if (s == ROAD_OK && !top) s = ROAD_ERR_NO_MEMORY;
    struct stat sb;
    if (s == ROAD_OK && stat(top, &sb) == 0) {
        s = road_checkpoint_read_run(p->out_dir, &saved, &step, &finished);
        bool moved = false;
        if (s == ROAD_OK && finished) {
            s = saved ? compare(saved, mine, p->out_dir, step, true, p->out_dir, &moved)
                      : road__error(ROAD_ERR_STATE, "'%s' holds no run identity", top);
            if (s == ROAD_OK && !moved) {
                info->finished = true;
                info->step = step;
            }
            /* a constant-schedule run told to stop elsewhere continues from its checkpoints */
            if (s != ROAD_OK || !moved) goto done;
        }
        road_string_free(saved);
        saved = NULL;
    }
    if (s != ROAD_OK) goto done;
    s = road_checkpoint_find_last(p->out_dir, &path, &step);
    if (s == ROAD_ERR_NOT_FOUND) { /* a run killed before its first checkpoint: start over */
        s = ROAD_OK;
        goto done;
    }
    if (s == ROAD_OK) s = road_checkpoint_read_run(path, &saved, &step, NULL);
    if (s == ROAD_OK && !saved)
        s = road__error(ROAD_ERR_STATE,
                        "checkpoint '%s' carries no run identity (written by an older road): "
                        "road cannot tell whether it belongs to this run; start again with "
                        "--overwrite (replaces the run in '%s')",
                        path, p->out_dir);
    if (s == ROAD_OK) s = compare(saved, mine, path, step, false, p->out_dir, NULL);
    if (s == ROAD_OK) info->step = step;
done:
    road_string_free(saved);
    road_string_free(path);
    road__free(top);
    road__free(mine);
    return s;
}

road_status road_train_check_out(const road_train_params *p, road_train_out *info) {
    road_train_out local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    if (!p || !p->out_dir || !*p->out_dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_train: an output folder is required");
    if (p->resume && p->overwrite)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "resume continues the run in '%s' and overwrite replaces it: choose one",
                           p->out_dir);
    road_out_state state = ROAD_OUT_ABSENT;
    road_status s = road__dir_check_target(p->out_dir, ROAD_OUT_TRAIN_RUN, true, p->inputs,
                                           p->n_inputs, &state);
    if (s != ROAD_OK || state != ROAD_OUT_EXISTING) return s;
    road__dir_repair_inside(p->out_dir); /* checkpoints a killed save left aside */
    if (!holds_run(p->out_dir)) return ROAD_OK;
    info->has_run = true;
    if (!p->resume) {
        if (p->overwrite) return ROAD_OK;
        return road__error(ROAD_ERR_EXISTS,
                           "'%s' already holds a training run (checkpoints or a final output): "
                           "continue it with --resume, or replace it with --overwrite",
                           p->out_dir);
    }
    return check_identity(p, info);
}

road_status road_train_prepare_out(const road_train_params *p, road_train_out *info) {
    road_train_out local;
    if (!info) info = &local;
    road_status s = road_train_check_out(p, info);
    if (s != ROAD_OK) return s;
    if (!p->resume && info->has_run && p->overwrite) {
        /* replace the old run by an empty folder, in one step */
        char *tmp = NULL;
        s = road__dir_make_temp(p->out_dir, ".tmp.", &tmp);
        if (s == ROAD_OK) s = road__dir_install(tmp, p->out_dir);
        if (s != ROAD_OK && tmp) road__dir_remove_tree(tmp, 0);
        road__free(tmp);
        if (s != ROAD_OK) return s;
        info->has_run = false;
    }
    return road__mkdir_p(p->out_dir);
}

road_status road__train_mark_finished(const char *out, const char *identity, int64_t step) {
    cJSON *root = cJSON_CreateObject(), *run = NULL;
    road_status s = root ? road_json_parse(identity, strlen(identity), &run) : ROAD_ERR_NO_MEMORY;
    bool ok = s == ROAD_OK;
    ok = ok && cJSON_AddStringToObject(root, "format", RUN_FORMAT);
    ok = ok && cJSON_AddNumberToObject(root, "version", RUN_VERSION);
    ok = ok && cJSON_AddBoolToObject(root, "finished", true);
    ok = ok && cJSON_AddNumberToObject(root, "global_step", (double)step);
    ok = ok && cJSON_AddItemToObject(root, "run", run);
    if (ok) run = NULL;
    if (s == ROAD_OK && !ok) s = ROAD_ERR_NO_MEMORY;
    cJSON_Delete(run);
    char *text = NULL, *path = NULL;
    size_t len = 0;
    if (s == ROAD_OK) s = road__json_dump(root, &text, &len);
    cJSON_Delete(root);
    if (s == ROAD_OK) {
        text[len] = '\n'; /* road__json_dump leaves room for the NUL */
        path = road__path_join(out, RUN_STATE_FILE);
        s = path ? road__file_write_atomic(path, text, len + 1) : ROAD_ERR_NO_MEMORY;
    }
    road__free(path);
    road__free(text);
    return s;
}
