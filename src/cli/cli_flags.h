/*
 * cli/cli_flags.h - one table row per flag drives a command's parsing, its --help and the JSON
 * dump of its settings (road train's run_config.json).
 *
 * A command declares an options struct (with a `uint64_t given` member) and a table of
 * cli_flag rows, each naming the flag, its kind and range, its default as typed, where its
 * value goes (offsetof into the options struct) and its help text. cli_parse walks argv
 * against the table; cli_help prints the usage line and the aligned options from the same
 * rows; cli_json_add writes the rows that carry a JSON key. A new flag is one row, and the
 * code that reads its field.
 *
 * Parsing order (the messages and exit codes every command has always given): argv is walked
 * first (--help / -h prints the help and exits 0; an unknown option, a missing value or too
 * many values of a list exits 2), then the required flags are checked, then each value is
 * converted and range-checked in table order ("--lr must be a number from 0 to 10, got 'x'").
 */
#ifndef ROAD_CLI_FLAGS_H
#define ROAD_CLI_FLAGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "road/road.h"

/* The most values one list flag (--adapter, --prompt) can hold; a row's `hi` may ask fewer. */
#define CLI_LIST_MAX 256
/* Rows one table may hold: one bit each in the options struct's `given` mask. */
#define CLI_MAX_FLAGS 64
/* cli_parse's answer when the command should go on (anything else is its exit code). */
#define CLI_CONTINUE (-1)

typedef enum cli_kind {
    CLI_STRING, /* const char *: the argument as typed */
    CLI_INT,    /* int64_t in [lo, hi], base 10 */
    CLI_FLOAT,  /* double in [flo, fhi] */
    CLI_SWITCH, /* bool: true when present; takes no value */
    CLI_LIST,   /* cli_list: repeatable, one value per occurrence (at most hi, if hi > 0) */
    CLI_CHOICE, /* int: the index of the value among the metavar's "a|b|c" */
    CLI_DTYPE,  /* road_dtype: f32, bf16 or f16 */
} cli_kind;

/* A row's flags. */
#define CLI_REQUIRED 1u /* must be given (a list: at least once) */

typedef struct cli_flag {
    const char *name;    /* "--lr" */
    cli_kind kind;
    size_t offset;       /* where the value goes in the command's options struct */
    const char *metavar; /* "N", "DIR"; CLI_CHOICE and CLI_DTYPE: the values, "a|b|c" */
    long long lo, hi;    /* CLI_INT: range; CLI_LIST: hi = most values (0: CLI_LIST_MAX) */
    double flo, fhi;     /* CLI_FLOAT: range */
    const char *def;     /* default as typed, parsed before argv and shown in --help; NULL: the
                            field keeps what the command put there (the help says what) */
    const char *help;    /* one sentence or a few; wrapped by cli_help */
    const char *json;    /* key written by cli_json_add; NULL: not written */
    unsigned flags;      /* CLI_REQUIRED */
} cli_flag;

/* The values of a repeatable flag, in argv order; two rows may share one list (generate's
 * --prompt and --prompt-ids), and flag[i] says which row gave v[i]. Strings point into argv. */
typedef struct cli_list {
    int n;
    const char *v[CLI_LIST_MAX];
    const char *flag[CLI_LIST_MAX];
} cli_list;

typedef struct cli_spec {
    const char *name;       /* "train" */
    const char *usage;      /* what follows "usage: road <name> "; NULL: the required flags
                               and "[options]" */
    const char *about;      /* paragraphs printed after the usage line; NULL: none */
    const cli_flag *flags;
    int n_flags;
    size_t given;           /* offsetof the options struct's uint64_t mask of flags given */
    const char *positional; /* one plain argument ("DIR"), NULL: none accepted */
    size_t positional_offset; /* where it goes (const char *) */
} cli_spec;

/* Row builders (designated-initializer contents: a table row is `{CLI_INT(...)}`, to which
 * `.json = "key"` or `.flags = CLI_REQUIRED` can be added). T is the options struct. */
#define CLI_STR(nm, T, f, meta, dflt, hlp)                                                        \
    .name = nm, .kind = CLI_STRING, .offset = offsetof(T, f), .metavar = meta, .def = dflt,        \
    .help = hlp
#define CLI_INT(nm, T, f, meta, low, high, dflt, hlp)                                             \
    .name = nm, .kind = CLI_INT, .offset = offsetof(T, f), .metavar = meta, .lo = low,             \
    .hi = high, .def = dflt, .help = hlp
#define CLI_FLOAT(nm, T, f, meta, low, high, dflt, hlp)                                           \
    .name = nm, .kind = CLI_FLOAT, .offset = offsetof(T, f), .metavar = meta, .flo = low,          \
    .fhi = high, .def = dflt, .help = hlp
#define CLI_SW(nm, T, f, hlp) .name = nm, .kind = CLI_SWITCH, .offset = offsetof(T, f), .help = hlp
#define CLI_LST(nm, T, f, meta, most, hlp)                                                        \
    .name = nm, .kind = CLI_LIST, .offset = offsetof(T, f), .metavar = meta, .hi = most,           \
    .help = hlp
#define CLI_CHOICE(nm, T, f, values, dflt, hlp)                                                   \
    .name = nm, .kind = CLI_CHOICE, .offset = offsetof(T, f), .metavar = values, .def = dflt,      \
    .help = hlp
#define CLI_DTYPE(nm, T, f, dflt, hlp)                                                            \
    .name = nm, .kind = CLI_DTYPE, .offset = offsetof(T, f), .metavar = "f32|bf16|f16",            \
    .def = dflt, .help = hlp
#define CLI_N_FLAGS(table) ((int)(sizeof(table) / sizeof((table)[0])))
/* A cli_spec's table of rows and its options struct T (designated-initializer contents). */
#define CLI_TABLE(table, T)                                                                       \
    .flags = table, .n_flags = CLI_N_FLAGS(table), .given = offsetof(T, given)

/* Walk argv (argv[0] is the command name) into opts. Returns CLI_CONTINUE, or the exit code
 * the command returns at once (CLI_EXIT_OK after --help, CLI_EXIT_USAGE, message printed). */
int cli_parse(const cli_spec *spec, int argc, char **argv, void *opts);
/* Whether `flag` (a row of spec) was on the command line. */
bool cli_given(const cli_spec *spec, const void *opts, const char *flag);
/* The --help text: usage line, about, then one aligned entry per row. */
void cli_help(const cli_spec *spec, FILE *to);
/* Each row with a JSON key, with its value in opts, added to the object `obj`. */
void cli_json_add(cJSON *obj, const cli_spec *spec, const void *opts);

#endif
