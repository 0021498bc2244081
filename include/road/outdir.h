/*
 * road/outdir.h - output folders: what road may replace, checked before any heavy work.
 *
 * Every writer of a folder (road_model_save, road_model_init_folder, road_adapter_set_save,
 * checkpoints, road_train's output) follows one rule (docs/cli.md, "What each command does to
 * an existing output folder"): a folder is replaced only when it is one road itself would
 * write, recognised by its files; anything else is refused with a message that names the
 * folder and a few of its entries. The current folder, the home folder, `/`, and any input
 * (or a folder holding an input) are never replaced. Replacement is atomic (Linux
 * renameat2(RENAME_EXCHANGE)): a reader finds the old folder or the new one.
 *
 * The library writers replace a folder of their own kind without asking (their contract);
 * road_out_check adds the caller's "may I replace an existing one?" (the CLI's --overwrite)
 * and lets a command fail in milliseconds, before it loads a model.
 */
#ifndef ROAD_OUTDIR_H
#define ROAD_OUTDIR_H

#include <stdbool.h>
#include <stdint.h>

#include "road/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The kinds of folder road writes. */
typedef enum road_out_kind {
    ROAD_OUT_MODEL,      /* config.json, model*.safetensors, tokenizer / generation files */
    ROAD_OUT_ADAPTER,    /* adapter_config.json + adapter_model.safetensors (+ <name>/ ones) */
    ROAD_OUT_CHECKPOINT, /* checkpoint-<step>: adapters or model.safetensors, optimizer,
                            trainer_state.json, run_config.json */
    ROAD_OUT_TRAIN_RUN,  /* road train's --out: the final adapters or model, checkpoint-<step>/,
                            best/, trainer_state.json, run_config.json, train_log.jsonl */
    ROAD_OUT_CONFIG,     /* road config --out: adapter_config.json alone */
} road_out_kind;

/* What road_out_check found at the path. */
typedef enum road_out_state {
    ROAD_OUT_ABSENT,   /* nothing there: it will be created */
    ROAD_OUT_EMPTY,    /* an empty folder */
    ROAD_OUT_EXISTING, /* a non-empty folder of the right kind (replaced only with overwrite) */
} road_out_state;

/* Check that `dir` may be written as a folder of `kind`, before doing the work:
 * - repairs what a killed writer left next to it (a folder moved aside is put back, stale
 *   temporary folders are removed);
 * - refuses the current folder, $HOME, `/`, any of their parents, and any of `inputs` (paths
 *   the command reads: model folder, adapter folders, data files) or a folder holding one
 *   (ROAD_ERR_INVALID_ARG);
 * - refuses a path that is not a folder (ROAD_ERR_IO), a folder holding anything road would
 *   not write there (ROAD_ERR_EXISTS, naming a few entries), and a non-empty folder of the
 *   right kind unless `overwrite` (ROAD_ERR_EXISTS, saying how to replace it);
 * - creates the missing parent folders and proves the parent writable (ROAD_ERR_IO).
 * `state` (may be NULL) says what is there. */
ROAD_API road_status road_out_check(const char *dir, road_out_kind kind, bool overwrite,
                                    const char *const *inputs, int32_t n_inputs,
                                    road_out_state *state);

/* The kind's name in messages ("model folder", "adapter folder", ...). */
ROAD_API const char *road_out_kind_name(road_out_kind kind);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_OUTDIR_H */
