/*
 * cli/main.c - the `road` command: dispatch to subcommands, shared flag helpers.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cli_flag_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                   const char **value) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        cli_error(cmd, "%s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
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

static void usage(FILE *to) {
    fprintf(to,
            "road %s - fine-tune and serve LLMs with RoAd adapters\n"
            "\n"
            "usage: road <command> [options]\n"
            "\n"
            "commands:\n"
            "  demo      train adapters on the shipped model, serve them in one batch, merge\n"
            "  generate  continue prompts with a model (and adapters, one per sequence)\n"
            "  eval      logits and loss of a batch, to compare with PyTorch\n"
            "  serve     an OpenAI-compatible HTTP server: many adapters, one batch\n"
            "  train     fine-tune a RoAd adapter on a JSONL file (PEFT adapter folder out);\n"
            "            --full trains every weight (pretraining, full fine-tuning)\n"
            "  init      a model folder with freshly initialised weights for a config.json\n"
            "  merge     fold adapters into the weights: a new model folder (float or quantized)\n"
            "  tokenize  text -> token ids with a model's tokenizer.json\n"
            "  detokenize token ids -> text\n"
            "  inspect   describe an adapter folder (PEFT/road) or a model folder\n"
            "  config    write an adapter_config.json as PEFT would\n"
            "  version   print the version\n"
            "  help      this text\n"
            "\n"
            "`road <command> --help` describes a command's options. docs/cli.md has them all.\n",
            road_version());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("road %s\n", road_version());
        return CLI_EXIT_OK;
    }
    road_log_set_callback(log_warnings, (void *)cmd);
    atexit(flush_repeats);
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0) return cmd_config(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "init") == 0) return cmd_init(argc - 1, argv + 1);
    if (strcmp(cmd, "merge") == 0) return cmd_merge(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "detokenize") == 0) return cmd_detokenize(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "road: unknown command '%s'; run `road help` for the list\n", cmd);
    return CLI_EXIT_USAGE;
}
