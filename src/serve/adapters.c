/*
 * serve/adapters.c - the engine's adapter registry (road/serve.h): names, load and unload while
 * requests run, the commands that commit them on the engine thread, and the per-adapter entries
 * that carry the counters of /metrics.
 *
 * Adapter commands go to the stepping thread, which runs them between two forwards: the model
 * and its adapter set are only ever changed by that thread. A load reads and checks its folder
 * on the caller's thread first (a slow disk or a FIFO must not stall generation); the stepping
 * thread only adds the finished adapter. An unload first marks the entry draining (new requests
 * for it are refused), and the command waits until no request uses it. Without an engine thread
 * the caller is the stepping thread, so commands run at once. An entry stays after an unload,
 * so its counters survive a reload.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "serve/engine_internal.h"

/* ---- entries (under e->mu) ---------------------------------------------------------------- */

int32_t road__adapters_find(const road_engine *e, const char *name) {
    for (int32_t i = 0; i < e->n_ad; i++)
        if (strcmp(e->ad[i].name, name) == 0) return i;
    return -1;
}

int32_t road__adapters_add_entry(road_engine *e, const char *name) {
    int32_t i = road__adapters_find(e, name);
    if (i >= 0) {
        e->ad[i].loaded = true;
        e->ad[i].draining = false;
        return i;
    }
    if (e->n_ad == e->cap_ad) {
        int32_t cap = e->cap_ad ? 2 * e->cap_ad : 8;
        engine_adapter *na = road__realloc(e->ad, sizeof *na * (size_t)cap);
        if (!na) return -1;
        e->ad = na;
        e->cap_ad = cap;
    }
    engine_adapter *a = &e->ad[e->n_ad];
    memset(a, 0, sizeof *a);
    if (!(a->name = road__strdup(name))) return -1;
    a->loaded = true;
    return e->n_ad++;
}

/* ---- commands (committed on the stepping thread) ------------------------------------------ */

/* Execute queued adapter commands (the stepping thread; e->mu not held). */
void road__adapters_run_commands(road_engine *e) {
    pthread_mutex_lock(&e->mu);
    engine_cmd *list = e->cmds, *keep = NULL, **keep_tail = &keep;
    e->cmds = NULL;
    while (list) {
        engine_cmd *c = list;
        list = c->next;
        c->next = NULL;
        road_status st = ROAD_OK;
        if (c->kind == ENGINE_CMD_LOAD) {
            pthread_mutex_unlock(&e->mu);
            st = road_adapter_set_load_commit(road_model_adapters(e->m), c->prepared);
            if (st != ROAD_OK) snprintf(c->err, sizeof c->err, "%s", road_last_error());
            pthread_mutex_lock(&e->mu);
            if (st == ROAD_OK && road__adapters_add_entry(e, c->name) < 0) {
                road_adapter_set_delete(road_model_adapters(e->m), c->name);
                st = ROAD_ERR_NO_MEMORY;
                snprintf(c->err, sizeof c->err, "out of memory");
            }
        } else {
            int32_t i = road__adapters_find(e, c->name);
            if (i >= 0 && e->ad[i].in_use > 0) { /* still used: try again next step */
                *keep_tail = c;
                keep_tail = &c->next;
                continue;
            }
            pthread_mutex_unlock(&e->mu);
            st = road_adapter_set_delete(road_model_adapters(e->m), c->name);
            if (st != ROAD_OK) snprintf(c->err, sizeof c->err, "%s", road_last_error());
            pthread_mutex_lock(&e->mu);
            if (i >= 0) {
                e->ad[i].draining = false;
                if (st == ROAD_OK) e->ad[i].loaded = false;
            }
        }
        c->status = st;
        c->done = true;
        pthread_cond_broadcast(&e->cmd_cv);
    }
    *keep_tail = e->cmds; /* commands queued meanwhile go after the kept ones */
    e->cmds = keep;
    pthread_mutex_unlock(&e->mu);
}

static void run_command_now(road_engine *e, engine_cmd *c) {
    pthread_mutex_lock(&e->mu);
    engine_cmd **tail = &e->cmds;
    while (*tail) tail = &(*tail)->next;
    *tail = c;
    pthread_mutex_unlock(&e->mu);
    road__adapters_run_commands(e);
}

/* ---- load and unload (any thread) ----------------------------------------------------------- */

static road_status run_cmd(road_engine *e, engine_cmd *c) {
    pthread_mutex_lock(&e->mu);
    if (!e->started) {
        pthread_mutex_unlock(&e->mu);
        c->next = NULL;
        run_command_now(e, c);
    } else {
        engine_cmd **tail = &e->cmds;
        while (*tail) tail = &(*tail)->next;
        c->next = NULL;
        *tail = c;
        pthread_cond_broadcast(&e->work_cv);
        while (!c->done) pthread_cond_wait(&e->cmd_cv, &e->mu);
        pthread_mutex_unlock(&e->mu);
    }
    if (c->status != ROAD_OK) return road__error(c->status, "%s", c->err);
    return ROAD_OK;
}

/* Longest adapter name: it is echoed in replies, logs and metric labels. */
#define ENGINE_ADAPTER_NAME_MAX 255

road_status road_engine_check_adapter_name(const char *name) {
    bool ok = name && name[0] && strlen(name) <= ENGINE_ADAPTER_NAME_MAX &&
              strcmp(name, ROAD_BASE_NAME) != 0;
    for (const char *p = name; ok && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') ok = false;
    if (ok) return ROAD_OK;
    return road__error(ROAD_ERR_INVALID_ARG,
                       "adapter name '%.40s%s' is not allowed: names are 1 to %d bytes without "
                       "control characters, quotes or backslashes, and not %s",
                       name ? name : "(null)", name && strlen(name) > 40 ? "..." : "",
                       ENGINE_ADAPTER_NAME_MAX, ROAD_BASE_NAME);
}

road_status road_engine_load_adapter(road_engine *e, const char *name, const char *dir) {
    if (!e || !dir)
        return road__error(ROAD_ERR_INVALID_ARG, "load_adapter: engine or folder is NULL");
    road_status st = road_engine_check_adapter_name(name);
    if (st != ROAD_OK) return st;
    pthread_mutex_lock(&e->mu);
    int32_t i = road__adapters_find(e, name);
    bool taken = i >= 0 && (e->ad[i].loaded || e->ad[i].draining);
    pthread_mutex_unlock(&e->mu);
    if (taken) return road__error(ROAD_ERR_EXISTS, "an adapter named '%s' is already loaded", name);
    /* read and check the folder here, on the caller's thread, while the engine steps on */
    engine_cmd c;
    memset(&c, 0, sizeof c);
    st = road_adapter_set_load_prepare(road_model_adapters(e->m), name, dir, &c.prepared);
    if (st != ROAD_OK) return st;
    c.kind = ENGINE_CMD_LOAD;
    c.name = name;
    st = run_cmd(e, &c);
    road_adapter_load_free(c.prepared);
    return st;
}

road_status road_engine_unload_adapter(road_engine *e, const char *name, bool wait) {
    if (!e || !name)
        return road__error(ROAD_ERR_INVALID_ARG, "unload_adapter: engine or name is NULL");
    pthread_mutex_lock(&e->mu);
    int32_t i = road__adapters_find(e, name);
    road_status st = ROAD_OK;
    if (i < 0 || !e->ad[i].loaded || e->ad[i].draining)
        st = road__error(ROAD_ERR_NOT_FOUND, "no adapter named '%s' is loaded%s", name,
                         i >= 0 && e->ad[i].draining ? " (it is being unloaded already)" : "");
    else if (e->ad[i].in_use > 0 && (!wait || !e->started))
        st = road__error(ROAD_ERR_STATE,
                         "adapter '%s' is used by %lld request(s); unload it when they "
                         "are done",
                         name, (long long)e->ad[i].in_use);
    else
        e->ad[i].draining = true; /* from now on new requests for it are refused */
    pthread_mutex_unlock(&e->mu);
    if (st != ROAD_OK) return st;
    engine_cmd c;
    memset(&c, 0, sizeof c);
    c.kind = ENGINE_CMD_UNLOAD;
    c.name = name;
    return run_cmd(e, &c);
}

void road_engine_foreach_adapter(road_engine *e, void (*fn)(const char *name, void *user),
                                 void *user) {
    pthread_mutex_lock(&e->mu);
    for (int32_t i = 0; i < e->n_ad; i++)
        if (e->ad[i].loaded && !e->ad[i].draining) fn(e->ad[i].name, user);
    pthread_mutex_unlock(&e->mu);
}

bool road_engine_has_adapter(road_engine *e, const char *name) {
    pthread_mutex_lock(&e->mu);
    int32_t i = road__adapters_find(e, name);
    bool has = i >= 0 && e->ad[i].loaded && !e->ad[i].draining;
    pthread_mutex_unlock(&e->mu);
    return has;
}
