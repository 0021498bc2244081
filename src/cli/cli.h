/*
 * cli/cli.h - shared pieces of the `road` command (private to cli/).
 *
 * The CLI is a thin layer over libroad's public API: every command here could be written by a
 * user linking libroad. Exit codes: 0 success, 1 the operation failed, 2 bad usage.
 */
#ifndef ROAD_CLI_H
#define ROAD_CLI_H

#include "road/road.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* Print "road <cmd>: error: <fmt>" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "road <cmd>: <what>: <road_last_error()>" and return CLI_EXIT_FAIL. */
int cli_fail(const char *cmd, const char *what, road_status s);

/* Flag parsing: returns 1 if argv[*i] is `name` (taking the value from "--name=v" or the next
 * argument into *value), 0 if not, -1 (message printed) if the value is missing. */
int cli_flag_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                   const char **value);
/* In a command's flag loop (with `int i`, `int r`, `const char *v`, argc, argv and CMD in
 * scope): if argv[i] is flag `name`, put its value in `var` and go on to the next argument;
 * a missing value returns CLI_EXIT_USAGE (message printed). */
#define CLI_FLAG(name, var)                                                                        \
    if ((r = cli_flag_value(CMD, argc, argv, &i, name, &v)) != 0) {                                \
        if (r < 0) return CLI_EXIT_USAGE;                                                          \
        var = v;                                                                                   \
        continue;                                                                                  \
    }
/* "f32", "bf16" or "f16" (NULL: f32) -> *out; prints an error naming the flag otherwise. */
int cli_parse_float_dtype(const char *cmd, const char *flag, const char *s, road_dtype *out);

/* Strict integer parsing with range; prints an error naming the flag on failure. */
int cli_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi,
                  long long *out);

/* "a,b,c" -> a fresh array of fresh strings (free with cli_free_list). -1 on no memory. */
int cli_split(const char *s, char sep, char ***out, int32_t *n);
void cli_free_list(char **v, int32_t n);
/* "1 2 3" or "1,2,3" -> token ids (malloc'd). Prints an error naming the flag on failure. */
int cli_parse_ids(const char *cmd, const char *flag, const char *s, int32_t **ids, int64_t *n);
/* Load --adapter NAME=DIR folders into the model's adapter set and apply --use (NULL: none
 * active). Returns a CLI exit code. */
int cli_attach_adapters(const char *cmd, road_model *m, char **specs, int n_specs,
                        const char *use);

/* --quantize FMT, --quantize-lm-head, --double-quant: how a command loads a model. */
typedef struct cli_quant {
    const char *format; /* NULL: not given */
    bool lm_head, double_quant;
} cli_quant;
/* 1 if argv[*i] is one of the quantization flags (consumed), 0 if not, -1 (message printed) if
 * its value is missing. */
int cli_quant_flag(const char *cmd, int argc, char **argv, int *i, cli_quant *q);
/* Put the flags into model params; -1 (message printed) on an unknown format. */
int cli_quant_apply(const char *cmd, const cli_quant *q, road_model_params *mp);
#define CLI_QUANT_HELP                                                                             \
    "  --quantize FMT       int8, nf4 or fp4: quantize the linear layers while loading (the\n"     \
    "                       embedding, norms and lm_head stay float; docs/quant.md)\n"             \
    "  --quantize-lm-head   quantize lm_head too\n"                                                \
    "  --double-quant       4-bit: quantize the absmax values too (bitsandbytes' double quant)\n"

int cmd_inspect(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
