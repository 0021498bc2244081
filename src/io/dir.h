/*
 * io/dir.h - folders written as a whole (private).
 *
 * Pattern: road_dir_make_temp(target, ".tmp.", &tmp); write every file into tmp;
 * road_dir_fsync(tmp); road_dir_install(tmp, target); road_dir_fsync(parent). On failure,
 * road_dir_remove_tree(tmp, ROAD_DIR_DEPTH).
 */
#ifndef ROAD_IO_DIR_H
#define ROAD_IO_DIR_H

#include "road/core.h"

/* How deep road_dir_remove_tree goes: road's folders hold at most one level of sub-folders
 * (adapters in a checkpoint); margin. */
#define ROAD_DIR_DEPTH 4

/* rm -r of a folder road wrote (regular files and sub-folders only, depth-limited). */
void road_dir_remove_tree(const char *path, int depth);
/* fsync a folder (errors ignored: best effort after the files themselves were fsynced). */
void road_dir_fsync(const char *path);
/* The folder holding `path` ("." if none); road_malloc'd. */
char *road_path_parent(const char *path);
/* "<dir><tag>XXXXXX" created as a fresh folder next to dir; *out road_malloc'd. */
road_status road_dir_make_temp(const char *dir, const char *tag, char **out);
/* Put the finished temporary folder `tmp` at `dir`, replacing an existing folder (moved aside,
 * then removed); on failure the previous folder is put back. */
road_status road_dir_install(const char *tmp, const char *dir);

#endif
