/*
 * io/file.c - whole-file reads and atomic (temp + fsync + rename) writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a folder";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "a special file";
}

road_status road__file_open_regular(const char *path, int *fd_out, uint64_t *size) {
    *fd_out = -1;
    *size = 0;
    /* O_NONBLOCK: a FIFO opens at once instead of waiting for a writer; cleared below */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return road__error(ROAD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return road__error(ROAD_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return road__error(ROAD_ERR_IO, "'%s' is %s, not a regular file", path,
                           file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return ROAD_OK;
}

road_status road__file_read(const char *path, size_t max_bytes, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int fd;
    uint64_t fsize;
    road_status os = road__file_open_regular(path, &fd, &fsize);
    if (os != ROAD_OK) return os;
    if (fsize > (uint64_t)max_bytes) {
        close(fd);
        return road__error(ROAD_ERR_FORMAT, "'%s' is %llu bytes, more than the %zu allowed here",
                           path, (unsigned long long)fsize, max_bytes);
    }
    size_t n = (size_t)fsize;
    char *buf = road__malloc(n + 1);
    if (!buf) {
        close(fd);
        return ROAD_ERR_NO_MEMORY;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            road__free(buf);
            return road__error(ROAD_ERR_IO, "cannot read '%s': %s", path,
                               r == 0 ? "file shrank while reading" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return ROAD_OK;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync the folder holding `path` so the rename itself is durable. */
static void sync_parent(const char *path) {
    char *dir = road__strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    if (slash == dir) slash[1] = '\0';
    else if (slash) *slash = '\0';
    else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    road__free(dir);
}

road_status road__file_write_atomic_parts(const char *path, const void *const *parts,
                                          const size_t *lens, int n_parts) {
    size_t plen = strlen(path);
    char *tmp = road__malloc(plen + 16);
    if (!tmp) return ROAD_ERR_NO_MEMORY;
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        road_status s = road__error(ROAD_ERR_IO, "cannot create a temporary file next to '%s': %s",
                                    path, strerror(errno));
        road__free(tmp);
        return s;
    }
    for (int i = 0; i < n_parts; i++) {
        if (write_all(fd, parts[i], lens[i]) != 0) goto fail;
    }
    /* mkstemp makes 0600 files; give the file the usual permissions of a new file. */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) goto fail;
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) goto fail;
    sync_parent(path);
    road__free(tmp);
    return ROAD_OK;
fail : {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    road__free(tmp);
    return road__error(ROAD_ERR_IO,
                       "cannot write '%s': %s (the previous file, if any, is unchanged)", path,
                       strerror(e));
}
}

road_status road__file_write_atomic(const char *path, const void *data, size_t len) {
    const void *parts[1] = {data};
    size_t lens[1] = {len};
    return road__file_write_atomic_parts(path, parts, lens, 1);
}

int road__is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

road_status road__mkdir_p(const char *path) {
    char *p = road__strdup(path);
    if (!p) return ROAD_ERR_NO_MEMORY;
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                road_status s =
                    road__error(ROAD_ERR_IO, "cannot create folder '%s': %s", p, strerror(errno));
                road__free(p);
                return s;
            }
            p[i] = c;
        }
    }
    road__free(p);
    if (!road__is_dir(path))
        return road__error(ROAD_ERR_IO, "'%s' exists and is not a folder", path);
    return ROAD_OK;
}

char *road__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = road__malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}
