/*
 * cli/main.c - the `road` command: the table of subcommands (dispatch and `road help` read
 * it), the warning callback every command shares, and the error helpers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "road %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_fail(const char *cmd, const char *what, road_status s) {
    fprintf(stderr, "road %s: %s failed (%s): %s\n", cmd, what, road_status_name(s),
            road_last_error());
    return CLI_EXIT_FAIL;
}

_Noreturn void cli_assert_fail(const char *what, const char *file, int line) {
    fprintf(stderr, "road: internal error at %s:%d: %s\n", file, line, what);
    abort();
}

int cli_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi,
                  long long *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        cli_error(cmd, "%s must be an integer from %lld to %lld, got '%s'", flag, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Warnings the library raises (an ignored generation_config field, a requantizing merge, a
 * config that uses fewer layers than the files hold, skipped training lines) reach the user on
 * every command: this callback is installed before any command runs. `serve` installs its own
 * (timestamped lines); info and debug messages stay quiet here. */
static struct {
    char last[1024]; /* the last message printed (the library's messages are shorter) */
    long repeats;              /* times it came again since, not printed */
} warned;

static void flush_repeats(void) {
    if (warned.repeats > 0)
        fprintf(stderr, "  (the same warning %ld more time%s)\n", warned.repeats,
                warned.repeats == 1 ? "" : "s");
    warned.repeats = 0;
}

/* One warning per layer (a requantizing merge of 200 layers) is printed once, then counted. */
static void log_warnings(road_log_level level, const char *message, void *user) {
    if (level < ROAD_LOG_WARN) return;
    if (strcmp(message, warned.last) == 0) {
        warned.repeats++;
        return;
    }
    flush_repeats();
    snprintf(warned.last, sizeof warned.last, "%s", message);
    fprintf(stderr, "road %s: %s: %s\n", (const char *)user,
            level >= ROAD_LOG_ERROR ? "error" : "warning", message);
}

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

/* Every command, in the order `road help` lists them. */
static const cli_command commands[] = {
    {"demo", cmd_demo, "train adapters on the shipped model, serve them in one batch, merge"},
    {"generate", cmd_generate, "continue prompts with a model (and adapters, one per sequence)"},
    {"eval", cmd_eval, "logits and loss of a batch, to compare with PyTorch"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server: many adapters, one batch"},
    {"train", cmd_train,
     "fine-tune a RoAd adapter on a JSONL file (PEFT adapter folder out); --full trains every "
     "weight (pretraining, full fine-tuning)"},
    {"init", cmd_init, "a model folder with freshly initialised weights for a config.json"},
    {"merge", cmd_merge, "fold adapters into the weights: a new model folder (float or quantized)"},
    {"quantize", cmd_quantize, "write a model folder with its linear layers quantized (int8, nf4, fp4)"},
    {"tokenize", cmd_tokenize, "text -> token ids with a model's tokenizer.json"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"chat-template", cmd_chat_template,
     "render a chat with a model's chat template, exactly as transformers does"},
    {"inspect", cmd_inspect, "describe an adapter folder (PEFT/road) or a model folder"},
    {"config", cmd_config, "write an adapter_config.json as PEFT would"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "this text"},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))
/* `road help`: names in a column this wide, summaries wrapped at this width */
#define NAME_WIDTH 10
#define HELP_WIDTH 80

static void usage(FILE *to) {
    fprintf(to, "road %s - fine-tune and serve LLMs with RoAd adapters\n\n"
                "usage: road <command> [options]\n\ncommands:\n",
            road_version());
    const int col = 2 + NAME_WIDTH + 2;
    for (int c = 0; c < N_COMMANDS; c++) {
        int at = fprintf(to, "  %-*s  ", NAME_WIDTH, commands[c].name);
        for (const char *p = commands[c].summary; *p;) {
            size_t word = strcspn(p, " ");
            if (at > col && at + 1 + (int)word > HELP_WIDTH) at = fprintf(to, "\n%*s", col, "") - 1;
            else if (at > col) at += fprintf(to, " ");
            at += (int)fwrite(p, 1, word, to);
            p += word;
            while (*p == ' ') p++;
        }
        fputc('\n', to);
    }
    fprintf(to, "\n`road <command> --help` describes a command's options. docs/cli.md has them all.\n");
}

static int cmd_help(int argc, char **argv) {
    (void)argc, (void)argv;
    usage(stdout);
    return CLI_EXIT_OK;
}

static int cmd_version(int argc, char **argv) {
    (void)argc, (void)argv;
    printf("road %s\n", road_version());
    return CLI_EXIT_OK;
}

/* libgomp and OpenBLAS read their environment when they load, before main. When
 * road_threads_prepare_env sets some of it (how long waiting threads spin, the default thread
 * count: where the user has not set them), the command starts over with the same arguments so
 * that they load with it. Once only: the second time everything is set. Without /proc (the
 * exec fails) the command runs with the runtimes' defaults. docs/architecture.md, "Threads". */
static void restart_with_thread_env(char **argv) {
    if (road_threads_prepare_env()) execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    restart_with_thread_env(argv);
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) return cmd_help(argc, argv);
    if (strcmp(cmd, "--version") == 0) return cmd_version(argc, argv);
    for (int c = 0; c < N_COMMANDS; c++) {
        if (strcmp(cmd, commands[c].name) != 0) continue;
        road_log_set_callback(log_warnings, (void *)cmd);
        atexit(flush_repeats);
        return commands[c].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "road: unknown command '%s'; run `road help` for the list\n", cmd);
    return CLI_EXIT_USAGE;
}
