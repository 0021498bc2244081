/*
 * io/file.h - whole-file reads, atomic writes, folders (private).
 *
 * Atomic write: the data goes to a temporary file in the target's folder, is fsynced, then
 * renamed over the target, and the folder is fsynced; a crash leaves either the old file or
 * the new one, never a half-written file.
 */
#ifndef ROAD_IO_FILE_H
#define ROAD_IO_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "road/core.h"

/* Open a regular file for reading; *fd (O_CLOEXEC, blocking) and *size on success. Anything
 * else (a FIFO, a device, a socket, a folder) is refused with ROAD_ERR_IO naming the path and
 * what it is, without blocking: opening a FIFO for reading would wait for a writer forever. */
road_status road__file_open_regular(const char *path, int *fd, uint64_t *size);
/* Read a whole file (NUL-terminated for convenience; *len excludes the NUL). Files larger than
 * max_bytes are refused (a guard against reading a model file as a config). Free with road__free.
 */
road_status road__file_read(const char *path, size_t max_bytes, char **data, size_t *len);
/* Replace `path` atomically with `len` bytes of `data`. */
road_status road__file_write_atomic(const char *path, const void *data, size_t len);
/* Same, with the content given as several pieces written one after the other. */
road_status road__file_write_atomic_parts(const char *path, const void *const *parts,
                                          const size_t *lens, int n_parts);
/* mkdir -p; existing folders are fine. */
road_status road__mkdir_p(const char *path);
/* True if path is an existing folder. */
int road__is_dir(const char *path);
/* Join a folder and a name into a new string ("dir/name"); free with road__free. */
char *road__path_join(const char *dir, const char *name);

#endif
