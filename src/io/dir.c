/*
 * io/dir.c - folders written as a whole: made aside under a temporary name, then renamed into
 * place, so a reader sees the old folder or the new one, never a half-written one (checkpoints,
 * saved models).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/dir.h"

/* Paths built while removing a temporary folder (no allocation there: cleanup must work when
 * memory is out). */
#define RM_PATH_CAP 4096

/* rm -r of a folder road wrote (regular files and sub-folders only, depth-limited). */
void road_dir_remove_tree(const char *path, int depth) {
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
                if (depth > 0) road_dir_remove_tree(sub, depth - 1);
            } else {
                (void)unlink(sub);
            }
        }
        closedir(d);
    }
    (void)rmdir(path);
}

void road_dir_fsync(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* The folder holding `path` ("." if none); road_malloc'd. */
char *road_path_parent(const char *path) {
    char *p = road_strdup(path);
    if (!p) return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash)
        strcpy(p, ".");
    else if (slash == p)
        slash[1] = '\0';
    else
        *slash = '\0';
    return p;
}

/* "<dir><tag>XXXXXX" created as a fresh folder; road_malloc'd. */
road_status road_dir_make_temp(const char *dir, const char *tag, char **out) {
    size_t n = strlen(dir), t = strlen(tag);
    char *p = road_malloc(n + t + 7);
    if (!p) return ROAD_ERR_NO_MEMORY;
    memcpy(p, dir, n);
    memcpy(p + n, tag, t);
    memcpy(p + n + t, "XXXXXX", 7);
    if (!mkdtemp(p)) {
        road_status s = road_error(ROAD_ERR_IO, "cannot create a temporary folder next to '%s': %s",
                                   dir, strerror(errno));
        road_free(p);
        return s;
    }
    *out = p;
    return ROAD_OK;
}

/* Put the finished temporary folder `tmp` at `dir`, replacing an existing one. */
road_status road_dir_install(const char *tmp, const char *dir) {
    char *old = NULL;
    road_status s = ROAD_OK;
    struct stat sb;
    if (lstat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return road_error(ROAD_ERR_IO, "'%s' exists and is not a folder", dir);
        /* rename() replaces an empty folder only: move the old folder aside first. */
        s = road_dir_make_temp(dir, ".old.", &old);
        if (s != ROAD_OK) return s;
        if (rename(dir, old) != 0) {
            s = road_error(ROAD_ERR_IO, "cannot move the previous '%s' aside: %s", dir,
                           strerror(errno));
            (void)rmdir(old);
            road_free(old);
            return s;
        }
    }
    if (rename(tmp, dir) != 0) {
        s = road_error(ROAD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno));
        if (old) (void)rename(old, dir); /* put the previous folder back */
        road_free(old);
        return s;
    }
    if (old) {
        road_dir_remove_tree(old, ROAD_DIR_DEPTH);
        road_free(old);
    }
    return ROAD_OK;
}

