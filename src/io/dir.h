/*
 * io/dir.h - folders written as a whole, and the rule for what road may replace (private).
 *
 * Pattern: road__dir_check_target(target, kind, ...) before any work; road__dir_make_temp(target,
 * ".tmp.", &tmp); write every file into tmp; road__dir_fsync(tmp); road__dir_install(tmp,
 * target) (or road__dir_update when the target also holds files of others, e.g. road train's
 * output folder); road__dir_fsync(parent). On failure, road__dir_remove_tree(tmp, ROAD_DIR_DEPTH).
 *
 * The process holds flock(LOCK_EX) on each temporary folder from road__dir_make_temp until it
 * is installed or removed: repairs (road__dir_repair, run by every check and install) skip
 * leftovers whose lock is held, so they only clean up after writers that died.
 */
#ifndef ROAD_IO_DIR_H
#define ROAD_IO_DIR_H

#include <stdbool.h>

#include "road/core.h"
#include "road/outdir.h"

/* How deep road__dir_remove_tree (and the linking of road__dir_update) goes: road's deepest
 * folder is a training run's checkpoint-N/<adapter>/ (two levels); margin. */
#define ROAD_DIR_DEPTH 4

/* Test hook: the environment variable ROAD_TEST_DIR_FALLBACK set to "1" makes
 * road__dir_install take the two-rename fallback (as on a filesystem without RENAME_EXCHANGE);
 * "crash" also kills the process (SIGKILL, as kill -9) between the two renames. */
#define ROAD_DIR_FALLBACK_ENV "ROAD_TEST_DIR_FALLBACK"

/* rm -r of a folder road wrote (regular files and sub-folders only, depth-limited). */
void road__dir_remove_tree(const char *path, int depth);
/* fsync a folder (errors ignored: best effort after the files themselves were fsynced). */
void road__dir_fsync(const char *path);
/* The folder holding `path` ("." if none); road__malloc'd. */
char *road__path_parent(const char *path);
/* A copy of `path` without trailing slashes ("a/b/" names "a/b"); road__malloc'd. */
char *road__dir_trim(const char *path);
/* "<dir><tag>XXXXXX" created as a fresh folder next to dir, with the mode a new folder gets
 * (0777 less the umask); *out road__malloc'd. */
road_status road__dir_make_temp(const char *dir, const char *tag, char **out);
/* Put the finished temporary folder `tmp` at `dir`. An existing folder is swapped with it in
 * one step (renameat2 RENAME_EXCHANGE) and then removed; where the filesystem cannot swap,
 * the old folder is renamed to "<dir>.old.XXXXXX" first and the new one renamed in (a crash
 * between the two is repaired by the next road__dir_repair). */
road_status road__dir_install(const char *tmp, const char *dir);
/* Make `dir` hold tmp's entries and, besides them, every other entry it holds now, in one
 * step: the other entries are hard-linked into tmp (files; folders re-created, links
 * copied), then tmp is installed. Nothing of dir's other entries is lost or copied. Where hard
 * links are refused (some filesystems), tmp's entries are moved in one by one instead, the
 * configuration files (adapter_config.json, config.json) removed first and put in last, so
 * a reader never finds new weights beside an old configuration. */
road_status road__dir_update(const char *tmp, const char *dir);
/* Undo what a killed writer left next to `dir`: "<dir>.old.XXXXXX" is put back when dir is
 * missing (else removed); "<dir>.tmp.XXXXXX" folders are removed, except `keep`. */
void road__dir_repair(const char *dir, const char *keep);
/* road__dir_repair for every entry of the folder `dir` (a training run's checkpoints). */
void road__dir_repair_inside(const char *dir);
/* The rule (road/outdir.h, road_out_check), for library writers too: `replace` says whether
 * a non-empty folder of the right kind may be replaced. Inputs may be NULL / missing. */
road_status road__dir_check_target(const char *dir, road_out_kind kind, bool replace,
                                   const char *const *inputs, int n_inputs, road_out_state *state);
/* Is `dir` (an existing folder) made only of what road writes for `kind`? On false, `why`
 * (may be NULL) gets a sentence naming a few foreign entries. */
bool road__dir_is_kind(const char *dir, road_out_kind kind, char *why, size_t why_cap);

#endif
