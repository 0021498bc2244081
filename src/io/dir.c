/*
 * io/dir.c - folders written as a whole, and what road may replace.
 *
 * Why: a model, an adapter or a checkpoint is several files that must agree with each other,
 * and an output path may name a folder that holds someone's work. So every folder road writes
 * is made aside under a temporary name, then put in place in one step, and only over a folder
 * that road itself would have written (recognised by its files; road/outdir.h has the rule).
 *
 * One step: Linux renameat2(RENAME_EXCHANGE) swaps the new folder and the old one atomically,
 * so a reader always finds one of them; the old one (now under the temporary name) is then
 * removed. Filesystems that cannot swap (EINVAL, ENOSYS) get the two-rename fallback: the old
 * folder goes to "<dir>.old.XXXXXX", the new one is renamed in. A crash between the two leaves
 * no folder at the path for a moment, and road__dir_repair (run by the next writer and by
 * road_out_check) puts the old one back. Temporary folders are made with mkdir(0777), so they
 * get the mode the umask gives, as any new folder (mkdtemp's 0700 stayed on installed folders).
 */
#define _GNU_SOURCE /* syscall(), for renameat2 where glibc lacks the wrapper */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/dir.h"
#include "io/file.h"

/* Paths built while removing a folder (no allocation there: cleanup must work when memory is
 * out); also the cap of the paths the rule compares. */
#define RM_PATH_CAP 4096
/* The random part of a temporary name: six characters, as mkdtemp's XXXXXX. */
#define TEMP_CHARS 6
/* Names tried before giving up on a free temporary name (each collision is 1 in 62^6). */
#define TEMP_TRIES 100
/* Foreign entries quoted in a refusal: enough to recognise the folder, short enough to read. */
#define QUOTE_MAX 4
/* renameat2's flag (linux/fs.h), for headers that lack it. */
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* ---- small helpers ------------------------------------------------------------------------ */

/* ---- leftovers of live writers -----------------------------------------------------------
 *
 * A writer holds flock(LOCK_EX) on each temporary folder it made (and on a folder it moved
 * aside) until it is done with it. flock locks die with their process, so a repair that finds
 * the lock free knows the writer is gone (killed) and may clean up; one that finds it held
 * leaves the folder alone: two road commands writing next to each other never remove each
 * other's work in progress. The table maps paths to the descriptors holding the locks. */

#define HELD_MAX 64 /* temporary folders one process works on at once: a few */

static struct {
    pthread_mutex_t mu;
    char *path[HELD_MAX];
    int fd[HELD_MAX];
} held = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}};

/* Hold the lock of folder `path` (best effort: a filesystem without flock, or a full table,
 * only loses the protection). */
static void hold(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return;
    }
    char *copy = road__strdup(path);
    pthread_mutex_lock(&held.mu);
    int i = 0;
    while (i < HELD_MAX && held.path[i]) i++;
    if (copy && i < HELD_MAX) {
        held.path[i] = copy;
        held.fd[i] = fd;
        copy = NULL;
        fd = -1;
    }
    pthread_mutex_unlock(&held.mu);
    road__free(copy);
    if (fd >= 0) close(fd);
}

/* Let go of `path`'s lock, if this process holds it. */
static void release(const char *path) {
    pthread_mutex_lock(&held.mu);
    for (int i = 0; i < HELD_MAX; i++) {
        if (!held.path[i] || strcmp(held.path[i], path) != 0) continue;
        close(held.fd[i]);
        road__free(held.path[i]);
        held.path[i] = NULL;
    }
    pthread_mutex_unlock(&held.mu);
}

/* Is a live writer (this process or another) still working on folder `path`? */
static bool in_use(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* drops the lock if this probe took it */
    return busy;
}

void road__dir_remove_tree(const char *path, int depth) {
    release(path);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char sub[RM_PATH_CAP];
            int k = snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            if (k < 0 || (size_t)k >= sizeof sub) continue;
            struct stat st;
            if (lstat(sub, &st) != 0) continue;
            if (S_ISDIR(st.st_mode)) {
                if (depth > 0) road__dir_remove_tree(sub, depth - 1);
            } else {
                (void)unlink(sub);
            }
        }
        closedir(d);
    }
    (void)rmdir(path);
}

void road__dir_fsync(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

char *road__dir_trim(const char *path) {
    char *p = road__strdup(path);
    if (!p) return NULL;
    for (size_t n = strlen(p); n > 1 && p[n - 1] == '/'; n--) p[n - 1] = '\0';
    return p;
}

char *road__path_parent(const char *path) {
    char *p = road__dir_trim(path);
    if (!p) return NULL;
    char *slash = strrchr(p, '/');
    if (!slash)
        strcpy(p, ".");
    else if (slash == p)
        slash[1] = '\0';
    else
        *slash = '\0';
    return p;
}

/* The last component of a trimmed path (a pointer into it). */
static const char *base_name(const char *p) {
    const char *slash = strrchr(p, '/');
    return slash && slash[1] ? slash + 1 : p;
}

static bool is_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Does `name` read "<base><tag>XXXXXX" (base NULL: any non-empty base)? */
static bool is_temp_of(const char *name, const char *base, const char *tag) {
    const size_t n = strlen(name), t = strlen(tag);
    if (n < t + TEMP_CHARS + 1) return false;
    const size_t b = n - t - TEMP_CHARS;
    if (base && (strlen(base) != b || strncmp(name, base, b) != 0)) return false;
    if (strncmp(name + b, tag, t) != 0) return false;
    for (size_t i = n - TEMP_CHARS; i < n; i++)
        if (!is_alnum(name[i])) return false;
    return true;
}

/* What a killed writer of road leaves: "<x>.tmp.XXXXXX" (files and folders), "<x>.old.XXXXXX". */
static bool is_leftover(const char *name) {
    return is_temp_of(name, NULL, ".tmp.") || is_temp_of(name, NULL, ".old.");
}

/* ---- temporary folders ---------------------------------------------------------------------- */

/* Six characters from a counter, the time and the process id, mixed (splitmix64): names need
 * to be unlikely to collide, not secret; mkdir refuses a name that exists. */
static void temp_chars(char out[TEMP_CHARS + 1]) {
    static const char cs[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ULL ^
                 (uint64_t)ts.tv_nsec * 0xbf58476d1ce4e5b9ULL ^ (uint64_t)ts.tv_sec ^
                 (uint64_t)getpid() << 32;
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    for (int i = 0; i < TEMP_CHARS; i++, x /= 62) out[i] = cs[x % 62];
    out[TEMP_CHARS] = '\0';
}

road_status road__dir_make_temp(const char *dir, const char *tag, char **out) {
    char *target = road__dir_trim(dir);
    if (!target) return ROAD_ERR_NO_MEMORY;
    size_t n = strlen(target), t = strlen(tag);
    char *p = road__malloc(n + t + TEMP_CHARS + 1);
    if (!p) {
        road__free(target);
        return ROAD_ERR_NO_MEMORY;
    }
    memcpy(p, target, n);
    memcpy(p + n, tag, t);
    road__free(target);
    int err = EEXIST;
    for (int i = 0; i < TEMP_TRIES && err == EEXIST; i++) {
        temp_chars(p + n + t);
        err = mkdir(p, 0777) == 0 ? 0 : errno; /* 0777: the umask decides, as for any folder */
    }
    if (err) {
        road_status s = road__error(
            ROAD_ERR_IO, "cannot create a temporary folder next to '%s': %s", dir, strerror(err));
        road__free(p);
        return s;
    }
    hold(p);
    *out = p;
    return ROAD_OK;
}

/* ---- repair ------------------------------------------------------------------------------- */

void road__dir_repair(const char *dir, const char *keep) {
    char *target = road__dir_trim(dir);
    char *parent = target ? road__path_parent(target) : NULL;
    DIR *d = parent ? opendir(parent) : NULL;
    if (d) {
        const char *base = base_name(target);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            const bool old = is_temp_of(e->d_name, base, ".old.");
            if (!old && !is_temp_of(e->d_name, base, ".tmp.")) continue;
            char path[RM_PATH_CAP];
            int k = snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
            struct stat st;
            if (k < 0 || (size_t)k >= sizeof path || lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
                continue;
            if (keep && strcmp(base_name(keep), e->d_name) == 0) continue;
            if (in_use(path)) continue; /* a live writer's work in progress */
            struct stat tb;
            if (old && lstat(target, &tb) != 0 && errno == ENOENT && rename(path, target) == 0)
                continue; /* the crash came between the two renames: the old folder is back */
            road__dir_remove_tree(path, ROAD_DIR_DEPTH);
        }
        closedir(d);
    }
    road__free(parent);
    road__free(target);
}

void road__dir_repair_inside(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_leftover(e->d_name)) continue;
        char path[RM_PATH_CAP];
        int k = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (k < 0 || (size_t)k >= sizeof path || lstat(path, &st) != 0) continue;
        if (!S_ISDIR(st.st_mode)) {
            if (is_temp_of(e->d_name, NULL, ".tmp.")) (void)unlink(path); /* a file's temp */
            continue;
        }
        path[k - (int)strlen(".tmp.") - TEMP_CHARS] = '\0'; /* the folder it belongs to */
        road__dir_repair(path, NULL);
    }
    closedir(d);
}

/* ---- install ------------------------------------------------------------------------------ */

static int exchange(const char *a, const char *b) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    (void)a, (void)b;
    errno = ENOSYS;
    return -1;
#endif
}

road_status road__dir_install(const char *tmp, const char *dir) {
    road__dir_repair(dir, tmp);
    const char *hook = getenv(ROAD_DIR_FALLBACK_ENV);
    const bool fallback = hook && *hook && strcmp(hook, "0") != 0;
    struct stat sb;
    if (lstat(dir, &sb) != 0) {
        if (errno != ENOENT)
            return road__error(ROAD_ERR_IO, "cannot look at '%s': %s", dir, strerror(errno));
        if (rename(tmp, dir) != 0)
            return road__error(ROAD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, dir,
                               strerror(errno));
        release(tmp);
        return ROAD_OK;
    }
    if (!S_ISDIR(sb.st_mode))
        return road__error(ROAD_ERR_IO, "'%s' exists and is not a folder", dir);
    if (!fallback) {
        if (exchange(tmp, dir) == 0) {
            road__dir_remove_tree(tmp, ROAD_DIR_DEPTH); /* tmp now names the old folder */
            return ROAD_OK;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
            return road__error(ROAD_ERR_IO, "cannot swap '%s' into '%s': %s", tmp, dir,
                               strerror(errno));
    }
    /* Two renames; rename() replaces an empty folder only, so the old one goes aside first. */
    char *old = NULL;
    road_status s = road__dir_make_temp(dir, ".old.", &old);
    if (s != ROAD_OK) return s;
    release(old); /* the lock goes with the folder moved there, taken below */
    hold(dir);    /* held through the move: a repair elsewhere must not put it back meanwhile */
    if (rename(dir, old) != 0) {
        s = road__error(ROAD_ERR_IO, "cannot move the previous '%s' aside: %s", dir,
                        strerror(errno));
        release(dir);
        (void)rmdir(old);
        road__free(old);
        return s;
    }
    if (hook && strcmp(hook, "crash") == 0) (void)kill(getpid(), SIGKILL); /* as kill -9 */
    if (rename(tmp, dir) != 0) {
        s = road__error(ROAD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno));
        (void)rename(old, dir); /* put the previous folder back */
        release(dir);
        road__free(old);
        return s;
    }
    release(tmp);
    release(dir); /* the moved folder's lock, held under the name it had */
    road__dir_remove_tree(old, ROAD_DIR_DEPTH);
    road__free(old);
    return ROAD_OK;
}

/* ---- update: new entries plus the folder's others --------------------------------------- */

static bool is_config_name(const char *name) {
    return strcmp(name, "adapter_config.json") == 0 || strcmp(name, "config.json") == 0;
}

/* Hard-link (files), re-create (folders) or copy (symbolic links) every entry of src that
 * dst lacks. Leftovers of killed writers are dropped. *refused: the filesystem said no to a
 * hard link (the caller falls back). */
static road_status link_rest(const char *src, const char *dst, int depth, bool *refused) {
    DIR *d = opendir(src);
    if (!d) return road__error(ROAD_ERR_IO, "cannot read folder '%s': %s", src, strerror(errno));
    road_status s = ROAD_OK;
    struct dirent *e;
    while (s == ROAD_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || is_leftover(e->d_name))
            continue;
        char from[RM_PATH_CAP], to[RM_PATH_CAP];
        int a = snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        int b = snprintf(to, sizeof to, "%s/%s", dst, e->d_name);
        if (a < 0 || b < 0 || (size_t)a >= sizeof from || (size_t)b >= sizeof to) {
            s = road__error(ROAD_ERR_IO, "path too long under '%s'", src);
            break;
        }
        struct stat st, ex;
        if (lstat(to, &ex) == 0) continue; /* the new entry wins */
        if (lstat(from, &st) != 0) continue;
        if (S_ISREG(st.st_mode)) {
            if (link(from, to) != 0) {
                *refused = errno == EPERM || errno == EMLINK || errno == ENOTSUP ||
                           errno == EXDEV || errno == ENOSYS;
                s = road__error(ROAD_ERR_IO, "cannot link '%s' to '%s': %s", from, to,
                                strerror(errno));
            }
        } else if (S_ISDIR(st.st_mode)) {
            if (depth <= 0)
                s = road__error(ROAD_ERR_UNSUPPORTED,
                                "'%s' is deeper than the %d levels road writes; it is not one of "
                                "road's folders",
                                from, ROAD_DIR_DEPTH);
            else if (mkdir(to, st.st_mode & 07777) != 0)
                s = road__error(ROAD_ERR_IO, "cannot create '%s': %s", to, strerror(errno));
            else
                s = link_rest(from, to, depth - 1, refused);
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(from, target, sizeof target - 1);
            if (n < 0 || (target[n] = '\0', symlink(target, to) != 0))
                s = road__error(ROAD_ERR_IO, "cannot copy the link '%s': %s", from,
                                strerror(errno));
        } else {
            s = road__error(ROAD_ERR_EXISTS, "'%s' is not a file or a folder; road leaves it alone",
                            from);
        }
    }
    closedir(d);
    return s;
}

/* The names tmp holds (its own entries, before anything is linked in); NULL-terminated. */
static road_status list_names(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    if (!d) return road__error(ROAD_ERR_IO, "cannot read folder '%s': %s", dir, strerror(errno));
    size_t n = 0, cap = 8;
    char **v = road__calloc(cap, sizeof *v);
    road_status s = v ? ROAD_OK : ROAD_ERR_NO_MEMORY;
    struct dirent *e;
    while (s == ROAD_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n + 1 >= cap) {
            char **w = road__calloc(cap * 2, sizeof *w);
            if (!w) {
                s = ROAD_ERR_NO_MEMORY;
                break;
            }
            memcpy(w, v, n * sizeof *v);
            road__free(v);
            v = w;
            cap *= 2;
        }
        if (!(v[n] = road__strdup(e->d_name)))
            s = ROAD_ERR_NO_MEMORY;
        else n++;
    }
    closedir(d);
    if (s != ROAD_OK && v) {
        for (size_t i = 0; i < n; i++) road__free(v[i]);
        road__free(v);
        v = NULL;
    }
    *out = v;
    return s;
}

static void free_names(char **v) {
    for (size_t i = 0; v && v[i]; i++) road__free(v[i]);
    road__free(v);
}

/* Move tmp's own entries into dir one by one: old configuration files removed first, new
 * ones renamed in last, so weights and configuration never mismatch (a reader may find no
 * configuration for a moment: "not an adapter yet", never a wrong one). */
static road_status move_in(const char *tmp, const char *dir, char **names) {
    road_status s = ROAD_OK;
    char from[RM_PATH_CAP], to[RM_PATH_CAP];
    for (int pass = 0; pass < 3 && s == ROAD_OK; pass++) {
        for (size_t i = 0; names[i] && s == ROAD_OK; i++) {
            const bool cfg = is_config_name(names[i]);
            if ((pass == 0 || pass == 2) != cfg) continue;
            snprintf(from, sizeof from, "%s/%s", tmp, names[i]);
            snprintf(to, sizeof to, "%s/%s", dir, names[i]);
            struct stat st;
            if (pass == 0) {
                if (unlink(to) != 0 && errno != ENOENT)
                    s = road__error(ROAD_ERR_IO, "cannot remove '%s': %s", to, strerror(errno));
            } else if (lstat(from, &st) == 0 && S_ISDIR(st.st_mode)) {
                s = road__dir_install(from, to); /* a sub-folder: swapped as a unit */
            } else if (rename(from, to) != 0) {
                s = road__error(ROAD_ERR_IO, "cannot rename '%s' to '%s': %s", from, to,
                                strerror(errno));
            }
        }
    }
    if (s == ROAD_OK) {
        release(tmp);
        (void)rmdir(tmp);
        road__dir_fsync(dir);
    }
    return s;
}

static road_status check_not_home_or_cwd(const char *dir);

road_status road__dir_update(const char *tmp, const char *dir) {
    struct stat sb;
    if (lstat(dir, &sb) != 0) return road__dir_install(tmp, dir);
    if (!S_ISDIR(sb.st_mode))
        return road__error(ROAD_ERR_IO, "'%s' exists and is not a folder", dir);
    char **names = NULL;
    road_status s = list_names(tmp, &names);
    if (s != ROAD_OK) return s;
    /* Which of tmp's entries replace one of dir's? A folder replaced must be road's. */
    bool replaces = false;
    char path[RM_PATH_CAP], why[512];
    for (size_t i = 0; names[i] && s == ROAD_OK; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        replaces = true;
        if (S_ISDIR(st.st_mode) && !road__dir_is_kind(path, ROAD_OUT_ADAPTER, why, sizeof why) &&
            !road__dir_is_kind(path, ROAD_OUT_MODEL, NULL, 0))
            s = road__error(ROAD_ERR_EXISTS, "%s; road replaces only folders it writes", why);
    }
    if (s == ROAD_OK && !replaces) { /* nothing old to mix with: just move the new files in */
        s = move_in(tmp, dir, names);
        free_names(names);
        return s;
    }
    if (s == ROAD_OK) s = check_not_home_or_cwd(dir);
    bool refused = false;
    if (s == ROAD_OK) s = link_rest(dir, tmp, ROAD_DIR_DEPTH, &refused);
    if (s == ROAD_OK && !getenv(ROAD_DIR_FALLBACK_ENV)) {
        s = road__dir_install(tmp, dir);
    } else if (s == ROAD_OK || refused) {
        /* no hard links here (or the test hook): drop what was linked, move the new in */
        DIR *d = opendir(tmp);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            bool own = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
            for (size_t i = 0; names[i] && !own; i++) own = strcmp(names[i], e->d_name) == 0;
            if (own) continue;
            snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                road__dir_remove_tree(path, ROAD_DIR_DEPTH);
            else
                (void)unlink(path);
        }
        if (d) closedir(d);
        s = move_in(tmp, dir, names);
    }
    free_names(names);
    return s;
}

/* ---- the rule: what road recognises as its own ------------------------------------------ */

static bool in_list(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0) return true;
    return false;
}
#define IN(name, list) in_list(name, list, sizeof list / sizeof *list)

static const char *const model_files[] = {
    "config.json",           "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "model.safetensors",     "model.safetensors.index.json"};
static const char *const adapter_files[] = {"adapter_config.json", "adapter_model.safetensors"};
static const char *const checkpoint_files[] = {"optimizer.safetensors", "trainer_state.json",
                                               "run_config.json", "model.safetensors"};
static const char *const run_files[] = {"trainer_state.json", "run_config.json",
                                        "train_log.jsonl"};

static bool is_model_file(const char *n) {
    const size_t len = strlen(n), suf = strlen(".safetensors");
    return IN(n, model_files) ||
           (strncmp(n, "model-", 6) == 0 && len > 6 + suf && strcmp(n + len - suf, ".safetensors") == 0);
}

/* "checkpoint-<digits>" */
static bool is_checkpoint_name(const char *n) {
    if (strncmp(n, "checkpoint-", 11) != 0 || !n[11]) return false;
    for (const char *c = n + 11; *c; c++)
        if (*c < '0' || *c > '9') return false;
    return true;
}

typedef struct scan {
    int n_entries, n_foreign;
    bool has_required;
    char quoted[QUOTE_MAX][64];
} scan;

static bool folder_is(const char *dir, road_out_kind kind, int depth, scan *sc);

/* Is the entry `name` (a file when !folder) something road writes in a folder of `kind`? */
static bool entry_ok(const char *dir, const char *name, bool folder, road_out_kind kind, int depth,
                     scan *sc) {
    if (is_leftover(name)) return true;
    char sub[RM_PATH_CAP];
    if (folder) {
        int k = snprintf(sub, sizeof sub, "%s/%s", dir, name);
        if (k < 0 || (size_t)k >= sizeof sub || depth <= 0) return false;
    }
    switch (kind) {
    case ROAD_OUT_MODEL:
        if (!folder && strcmp(name, "config.json") == 0) sc->has_required = true;
        return !folder && is_model_file(name);
    case ROAD_OUT_CONFIG:
        if (!folder && strcmp(name, "adapter_config.json") == 0) sc->has_required = true;
        return !folder && strcmp(name, "adapter_config.json") == 0;
    case ROAD_OUT_ADAPTER:
    case ROAD_OUT_CHECKPOINT:
        if (folder) { /* another adapter, in its sub-folder (PEFT) */
            const bool ok = folder_is(sub, ROAD_OUT_ADAPTER, 0, NULL);
            if (ok && kind == ROAD_OUT_ADAPTER) sc->has_required = true;
            return ok;
        }
        if (kind == ROAD_OUT_ADAPTER && strcmp(name, "adapter_config.json") == 0)
            sc->has_required = true;
        if (kind == ROAD_OUT_CHECKPOINT && strcmp(name, "trainer_state.json") == 0)
            sc->has_required = true;
        return IN(name, adapter_files) || (kind == ROAD_OUT_CHECKPOINT && IN(name, checkpoint_files));
    case ROAD_OUT_TRAIN_RUN:
        if (!folder) return is_model_file(name) || IN(name, adapter_files) || IN(name, run_files);
        if (strcmp(name, "best") == 0)
            return folder_is(sub, ROAD_OUT_ADAPTER, depth - 1, NULL) ||
                   folder_is(sub, ROAD_OUT_MODEL, depth - 1, NULL);
        if (is_checkpoint_name(name)) return folder_is(sub, ROAD_OUT_CHECKPOINT, depth - 1, NULL);
        return folder_is(sub, ROAD_OUT_ADAPTER, 0, NULL); /* --name NAME: OUT/NAME/ */
    }
    return false;
}

/* Scan `dir`: every entry must be road's for `kind`, and the kind's key file must be there.
 * An empty folder is of every kind. sc (may be NULL) collects what does not fit. */
static bool folder_is(const char *dir, road_out_kind kind, int depth, scan *sc) {
    scan local;
    if (!sc) sc = &local;
    memset(sc, 0, sizeof *sc);
    DIR *d = opendir(dir);
    if (!d) return false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        sc->n_entries++;
        char path[RM_PATH_CAP];
        int k = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        bool ok = k >= 0 && (size_t)k < sizeof path && lstat(path, &st) == 0;
        /* files may be links (a model folder of the Hugging Face cache is); folders are real */
        ok = ok && (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode)) &&
             entry_ok(dir, e->d_name, S_ISDIR(st.st_mode), kind, depth, sc);
        if (!ok) {
            if (sc->n_foreign < QUOTE_MAX)
                snprintf(sc->quoted[sc->n_foreign], sizeof sc->quoted[0], "%.60s%s", e->d_name,
                         k >= 0 && (size_t)k < sizeof path && lstat(path, &st) == 0 &&
                                 S_ISDIR(st.st_mode)
                             ? "/"
                             : "");
            sc->n_foreign++;
        }
    }
    closedir(d);
    if (sc->n_entries == 0) return true;
    return sc->n_foreign == 0 && (sc->has_required || kind == ROAD_OUT_TRAIN_RUN);
}

const char *road_out_kind_name(road_out_kind kind) {
    switch (kind) {
    case ROAD_OUT_MODEL: return "model folder";
    case ROAD_OUT_ADAPTER: return "adapter folder";
    case ROAD_OUT_CHECKPOINT: return "checkpoint folder";
    case ROAD_OUT_TRAIN_RUN: return "training output folder";
    case ROAD_OUT_CONFIG: return "adapter config folder";
    }
    return "folder";
}

/* "a" or "an" before the kind's name. */
static const char *article(road_out_kind kind) {
    return kind == ROAD_OUT_ADAPTER || kind == ROAD_OUT_CONFIG ? "an" : "a";
}

/* The file a kind cannot be without (for the refusal's wording). */
static const char *required_file(road_out_kind kind) {
    switch (kind) {
    case ROAD_OUT_MODEL: return "config.json";
    case ROAD_OUT_CHECKPOINT: return "trainer_state.json";
    default: return "adapter_config.json";
    }
}

bool road__dir_is_kind(const char *dir, road_out_kind kind, char *why, size_t why_cap) {
    scan sc;
    if (folder_is(dir, kind, ROAD_DIR_DEPTH - 1, &sc)) return true;
    if (why && why_cap) {
        if (sc.n_foreign == 0) {
            snprintf(why, why_cap, "'%s' is not %s %s road wrote (it has no %s)", dir,
                     article(kind), road_out_kind_name(kind), required_file(kind));
        } else {
            int k = snprintf(why, why_cap, "'%s' holds %s road does not write in %s %s:", dir,
                             sc.n_foreign > 1 ? "entries" : "an entry", article(kind),
                             road_out_kind_name(kind));
            for (int i = 0; i < sc.n_foreign && i < QUOTE_MAX && k >= 0 && (size_t)k < why_cap; i++)
                k += snprintf(why + k, why_cap - (size_t)k, "%s '%s'", i ? "," : "", sc.quoted[i]);
            if (sc.n_foreign > QUOTE_MAX && k >= 0 && (size_t)k < why_cap)
                snprintf(why + k, why_cap - (size_t)k, " and %d more", sc.n_foreign - QUOTE_MAX);
        }
    }
    return false;
}

/* ---- the rule: paths never replaced --------------------------------------------------------- */

/* inner == outer, or inner inside outer (both absolute, resolved). */
static bool path_within(const char *inner, const char *outer) {
    const size_t n = strlen(outer);
    if (strcmp(outer, "/") == 0) return true;
    return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* Refuse replacing `real` (a resolved folder) when it is, or holds, the current folder or
 * the home folder (or is "/"). */
static road_status check_special(const char *dir, const char *real) {
    char cwd[PATH_MAX], rc[PATH_MAX], home[PATH_MAX];
    if (strcmp(real, "/") == 0)
        return road__error(ROAD_ERR_INVALID_ARG, "'%s' is the root folder: road never replaces it",
                           dir);
    if (getcwd(cwd, sizeof cwd) && realpath(cwd, rc) && path_within(rc, real))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "'%s' is %s current folder: road never replaces it (write to a new "
                           "sub-folder instead)",
                           dir, strcmp(rc, real) == 0 ? "the" : "a folder holding the");
    const char *h = getenv("HOME");
    if (h && *h && realpath(h, home) && path_within(home, real))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "'%s' is %s home folder: road never replaces it (write to a new "
                           "sub-folder instead)",
                           dir, strcmp(home, real) == 0 ? "the" : "a folder holding the");
    return ROAD_OK;
}

static road_status check_not_home_or_cwd(const char *dir) {
    char real[PATH_MAX];
    if (!realpath(dir, real)) return ROAD_OK; /* gone: nothing to protect */
    return check_special(dir, real);
}

road_status road__dir_check_target(const char *dir, road_out_kind kind, bool replace,
                                   const char *const *inputs, int n_inputs, road_out_state *state) {
    if (!dir || !*dir) return road__error(ROAD_ERR_INVALID_ARG, "an output folder is required");
    char *target = road__dir_trim(dir);
    if (!target) return ROAD_ERR_NO_MEMORY;
    road__dir_repair(target, NULL);
    road_status s = ROAD_OK;
    road_out_state found = ROAD_OUT_ABSENT;
    struct stat sb;
    char real[PATH_MAX], in[PATH_MAX], why[512];
    if (lstat(target, &sb) != 0) {
        if (errno != ENOENT)
            s = road__error(ROAD_ERR_IO, "cannot look at '%s': %s", target, strerror(errno));
    } else if (S_ISLNK(sb.st_mode)) {
        s = road__error(ROAD_ERR_INVALID_ARG,
                        "'%s' is a symbolic link: give the folder it points to, or a new path",
                        target);
    } else if (!S_ISDIR(sb.st_mode)) {
        s = road__error(ROAD_ERR_IO, "'%s' exists and is not a folder", target);
    } else if (!realpath(target, real)) {
        s = road__error(ROAD_ERR_IO, "cannot resolve '%s': %s", target, strerror(errno));
    } else {
        s = check_special(target, real);
        for (int i = 0; i < n_inputs && s == ROAD_OK; i++) {
            if (inputs[i] && realpath(inputs[i], in) && path_within(in, real))
                s = road__error(ROAD_ERR_INVALID_ARG,
                                "'%s' is %s input '%s': road never writes over what it reads "
                                "(choose another output folder)",
                                target, strcmp(in, real) == 0 ? "the" : "a folder holding the",
                                inputs[i]);
        }
        scan sc;
        if (s == ROAD_OK) {
            found = folder_is(target, kind, ROAD_DIR_DEPTH - 1, &sc) && sc.n_entries == 0
                        ? ROAD_OUT_EMPTY
                        : ROAD_OUT_EXISTING;
            if (found == ROAD_OUT_EXISTING && !road__dir_is_kind(target, kind, why, sizeof why))
                s = road__error(
                    ROAD_ERR_EXISTS,
                    "%s; road replaces only %s %s it wrote itself: choose a new or empty "
                    "folder",
                    why, article(kind), road_out_kind_name(kind));
            else if (found == ROAD_OUT_EXISTING && !replace)
                s = road__error(ROAD_ERR_EXISTS,
                                "'%s' already holds %s %s (%d entr%s); add --overwrite to replace "
                                "it, or choose a new folder",
                                target, article(kind), road_out_kind_name(kind), sc.n_entries,
                                sc.n_entries == 1 ? "y" : "ies");
        }
    }
    /* The parent must exist and take a new folder: prove it with a temporary one. */
    char *parent = s == ROAD_OK ? road__path_parent(target) : NULL;
    if (s == ROAD_OK && !parent) s = ROAD_ERR_NO_MEMORY;
    if (s == ROAD_OK) s = road__mkdir_p(parent);
    char *probe = NULL;
    if (s == ROAD_OK) s = road__dir_make_temp(target, ".tmp.", &probe);
    if (probe) road__dir_remove_tree(probe, 0);
    if (s != ROAD_OK && s != ROAD_ERR_EXISTS && s != ROAD_ERR_INVALID_ARG)
        road__error_prefix("cannot write '%s'", target);
    road__free(probe);
    road__free(parent);
    road__free(target);
    if (s == ROAD_OK && state) *state = found;
    return s;
}

road_status road_out_check(const char *dir, road_out_kind kind, bool overwrite,
                           const char *const *inputs, int32_t n_inputs, road_out_state *state) {
    return road__dir_check_target(dir, kind, overwrite, inputs, n_inputs, state);
}
