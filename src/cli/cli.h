/*
 * cli/cli.h - shared pieces of the `road` command (private to cli/).
 *
 * The CLI is a thin layer over libroad's public API: every command here could be written by a
 * user linking libroad. Exit codes: 0 success, 1 the operation failed, 2 bad usage.
 */
#ifndef ROAD_CLI_H
#define ROAD_CLI_H

#include "road/road.h"
#include "cli/cli_flags.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/* Print "road <cmd>: error: <fmt>" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "road <cmd>: <what>: <road_last_error()>" and return CLI_EXIT_FAIL. */
int cli_fail(const char *cmd, const char *what, road_status s);

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
int cli_attach_adapters(const char *cmd, road_model *m, const cli_list *specs, const char *use);

/* --quantize FMT, --quantize-lm-head, --double-quant, --int8-activations: how a command loads
 * and runs a model. An options
 * struct holds one as its member `qz`; CLI_QUANT_FLAGS(T) are its table rows. */
typedef struct cli_quant {
    const char *format; /* NULL: not given */
    bool lm_head, double_quant, int8_activations;
} cli_quant;
#define CLI_QUANT_FLAGS(T)                                                                         \
    {CLI_STR("--quantize", T, qz.format, "FMT", NULL,                                              \
             "int8, nf4 or fp4 (or bf16, f16: float32 weights rounded to 16 bits): quantize the "  \
             "linear layers while loading (the embedding, norms and lm_head stay float; "          \
             "docs/quant.md)")},                                                                   \
        {CLI_SW("--quantize-lm-head", T, qz.lm_head, "quantize lm_head too")},                     \
        {CLI_SW("--double-quant", T, qz.double_quant,                                              \
                "4-bit: quantize the absmax values too (bitsandbytes' double quant)")},            \
    {                                                                                              \
        CLI_SW("--int8-activations", T, qz.int8_activations,                                       \
               "run int8/nf4/fp4 layers with x rounded to int8 (AVX512-VNNI; faster decode "       \
               "and prefill, not exact: docs/quant.md)")                                           \
    }
/* The command owns the process: --threads N > 0 sets the process-wide count (OpenMP and
 * OpenBLAS: model calls, merges, sampling all use N) and is returned for the model's
 * n_threads; 0 leaves the default (all cores). */
int cli_threads(int64_t n);
/* A whole input file, NUL-terminated (malloc'd; free it), at most 1 GiB: 0, or -1 with the
 * error printed under `cmd`. */
int cli_read_file(const char *cmd, const char *path, char **out, size_t *len);
/* --threads N, as every model command takes it. */
#define CLI_THREADS_FLAG(T)                                                                        \
    { CLI_INT("--threads", T, threads, "N", 0, 1024, "0", "worker threads (0: all cores)") }
/* --kv-dtype f32|bf16|f16: the element type of the KV caches (road_kv_cache_create_ex) of
 * road generate and road serve; the options struct's `road_dtype kv_dtype` holds it. */
#define CLI_KV_DTYPE_FLAG(T)                                                                       \
    {                                                                                              \
        CLI_DTYPE("--kv-dtype", T, kv_dtype, "f32",                                                \
                  "keys and values of the KV cache as f32, or rounded to bf16 or f16: half the "   \
                  "cache memory (docs/cli.md)")                                                    \
    }
/* Put the flags into model params; -1 (message printed) on an unknown format. */
int cli_quant_apply(const char *cmd, const cli_quant *q, road_model_params *mp);

/* --chat-template FILE|NAME and --chat-kwargs JSON, as every command that renders chats takes
 * them. An options struct holds one as its member `chat_opts`; CLI_CHAT_FLAGS(T) are its rows. */
typedef struct cli_chat {
    const char *template_spec, *kwargs;
} cli_chat;
#define CLI_CHAT_FLAGS(T)                                                                          \
    {CLI_STR("--chat-template", T, chat_opts.template_spec, "FILE|NAME", NULL,                     \
             "the chat template: a Jinja file, one of the model's named templates, or a "          \
             "built-in (chatml, llama3, llama2, mistral, zephyr, gemma); default: the model's "    \
             "own, run as written"),                                                               \
     .json = "chat_template"},                                                                     \
    {                                                                                              \
        CLI_STR("--chat-kwargs", T, chat_opts.kwargs, "JSON", NULL,                                \
                "extra chat template variables, a JSON object (e.g. "                              \
                "'{\"enable_thinking\": false}')"),                                                \
            .json = "chat_kwargs"                                                                  \
    }
/* Apply them: the template chosen on tok (when given), the kwargs parsed into *kwargs (NULL
 * when not given; free with cJSON_Delete). 0, or a CLI exit code with the error printed. */
int cli_chat_setup(const char *cmd, const cli_chat *c, road_tokenizer *tok, struct cJSON **kwargs);

/* Write a loaded (merged) model folder as road merge and road quantize do (cmd_merge.c): float
 * tensors in dtype when dtype_given, else the base's stored dtype; linear layers in fmt's
 * quantized format when asked, or quantized as loaded. Prints "<what> into OUT (...)". */
int cli_model_write(const char *cmd, road_model *m, const char *model, const char *out,
                    road_dtype dtype, bool dtype_given, const cli_quant *qz,
                    const road_model_params *fmt, const char *what);

/* An always-on check of the CLI's own tables (a broken one is a bug, not a usage error). */
#define ROAD_CLI_ASSERT(c) ((c) ? (void)0 : cli_assert_fail(#c, __FILE__, __LINE__))
_Noreturn void cli_assert_fail(const char *what, const char *file, int line);

/* A command: `road <name> ...` runs fn(argc - 1, argv + 1); summary is its line in `road help`. */
typedef struct cli_command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} cli_command;

int cmd_inspect(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
