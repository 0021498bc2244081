/*
 * cli/cli_flags.c - the flag table's three readers: the argv parser, the --help printer and
 * the JSON dumper (cli_flags.h says why one table drives all three).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* --help layout: options start at column 2, their help text at HELP_COLUMN, lines end by
 * HELP_WIDTH (a terminal's 80 columns). A flag and metavar too long for the column put the
 * text on the next line. */
#define HELP_COLUMN 30
#define HELP_WIDTH 80
/* Longest choice value list a CLI_CHOICE metavar may hold ("a|b|c"). */
#define MAX_CHOICES 8

static void *field(void *opts, const cli_flag *f) {
    return (char *)opts + f->offset;
}

static uint64_t *given_mask(const cli_spec *spec, void *opts) {
    return (uint64_t *)((char *)opts + spec->given);
}

/* The choices of a CLI_CHOICE / CLI_DTYPE metavar "a|b|c": index of s, or -1. */
static int choice_index(const char *values, const char *s) {
    int i = 0;
    for (const char *p = values;; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (strlen(s) == len && strncmp(p, s, len) == 0) return i;
        if (!bar) return -1;
        p = bar + 1;
    }
}

/* "a|b|c" as "a, b or c", for messages. */
static void choice_words(const char *values, char *out, size_t cap) {
    size_t k = 0;
    out[0] = '\0';
    const char *p = values;
    while (k < cap) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        const char *sep = p == values ? "" : bar ? ", " : " or ";
        k += (size_t)snprintf(out + k, cap - k, "%s%.*s", sep, (int)len, p);
        if (!bar) break;
        p = bar + 1;
    }
}

static const road_dtype dtype_of_choice[] = {ROAD_DTYPE_F32, ROAD_DTYPE_BF16, ROAD_DTYPE_F16};

/* Text -> the row's field; -1 (message printed) when the text is not a value of the row. */
static int convert(const cli_spec *spec, const cli_flag *f, const char *s, void *opts) {
    void *dst = field(opts, f);
    switch (f->kind) {
    case CLI_STRING:
        *(const char **)dst = s;
        return 0;
    case CLI_INT: {
        long long v;
        if (cli_parse_int(spec->name, f->name, s, f->lo, f->hi, &v) != 0) return -1;
        *(int64_t *)dst = v;
        return 0;
    }
    case CLI_FLOAT: {
        char *end;
        double v = strtod(s, &end);
        if (end == s || *end || !(v >= f->flo && v <= f->fhi)) { /* !(in range): NaN fails */
            cli_error(spec->name, "%s must be a number from %g to %g, got '%s'", f->name, f->flo,
                      f->fhi, s);
            return -1;
        }
        *(double *)dst = v;
        return 0;
    }
    case CLI_CHOICE:
    case CLI_DTYPE: {
        int i = choice_index(f->metavar, s);
        if (i < 0 || i >= MAX_CHOICES) {
            char words[256];
            choice_words(f->metavar, words, sizeof words);
            cli_error(spec->name, "%s must be %s, got '%s'", f->name, words, s);
            return -1;
        }
        if (f->kind == CLI_CHOICE)
            *(int *)dst = i;
        else
            *(road_dtype *)dst = dtype_of_choice[i];
        return 0;
    }
    case CLI_SWITCH:
    case CLI_LIST:
        break;
    }
    return -1; /* switches and lists take their values while argv is walked */
}

/* "--name=value" or "--name value" -> *value: 1 if argv[*i] is the row's flag, 0 if not, -1
 * (message printed) if its value is missing. */
static int flag_value(const cli_spec *spec, const cli_flag *f, int argc, char **argv, int *i,
                      const char **value) {
    const char *a = argv[*i];
    size_t n = strlen(f->name);
    if (strncmp(a, f->name, n) != 0) return 0;
    if (f->kind == CLI_SWITCH) return a[n] == '\0';
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        cli_error(spec->name, "%s needs a value", f->name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

/* "--model, --data and --out are required" (a list: "at least one --adapter"): every required
 * row is named, so the message is the same whichever of them is missing. */
static void report_required(const cli_spec *spec, const int *required, int n) {
    char text[512];
    size_t k = 0;
    for (int j = 0; j < n && k < sizeof text; j++) {
        const cli_flag *f = &spec->flags[required[j]];
        const char *sep = j == 0 ? "" : j == n - 1 ? " and " : ", ";
        k += (size_t)snprintf(text + k, sizeof text - k, "%s%s%s", sep,
                              f->kind == CLI_LIST ? "at least one " : "", f->name);
        if (n == 1 && f->metavar && k < sizeof text)
            k += (size_t)snprintf(text + k, sizeof text - k, " %s", f->metavar);
    }
    cli_error(spec->name, "%s %s required (see road %s --help)", text, n == 1 ? "is" : "are",
              spec->name);
}

int cli_parse(const cli_spec *spec, int argc, char **argv, void *opts) {
    ROAD_CLI_ASSERT(spec->n_flags <= CLI_MAX_FLAGS);
    const char *raw[CLI_MAX_FLAGS] = {0};
    uint64_t *given = given_mask(spec, opts);
    *given = 0;
    for (int r = 0; r < spec->n_flags; r++) { /* defaults first: argv overrides them */
        const cli_flag *f = &spec->flags[r];
        if (f->kind == CLI_LIST) ((cli_list *)field(opts, f))->n = 0;
        if (f->kind == CLI_SWITCH) *(bool *)field(opts, f) = false;
        /* a default that is not a value of its row is a mistake in the table */
        if (f->def) ROAD_CLI_ASSERT(convert(spec, f, f->def, opts) == 0);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_help(spec, stdout);
            return CLI_EXIT_OK;
        }
        int r = 0, got = 0;
        const char *v = NULL;
        for (; r < spec->n_flags && got == 0; r++)
            got = flag_value(spec, &spec->flags[r], argc, argv, &i, &v);
        if (got < 0) return CLI_EXIT_USAGE;
        if (got > 0) {
            const cli_flag *f = &spec->flags[r - 1];
            *given |= (uint64_t)1 << (r - 1);
            if (f->kind == CLI_SWITCH) {
                *(bool *)field(opts, f) = true;
            } else if (f->kind == CLI_LIST) {
                cli_list *l = field(opts, f);
                const long long most = f->hi > 0 ? f->hi : CLI_LIST_MAX;
                if (l->n >= most) {
                    cli_error(spec->name, "at most %lld %s flags", most, f->name);
                    return CLI_EXIT_USAGE;
                }
                l->flag[l->n] = f->name;
                l->v[l->n++] = v;
            } else {
                raw[r - 1] = v; /* the last one given counts */
            }
            continue;
        }
        if (a[0] == '-' || !spec->positional) {
            cli_error(spec->name, "unknown option '%s' (see road %s --help)", a, spec->name);
            return CLI_EXIT_USAGE;
        }
        const char **pos = (const char **)((char *)opts + spec->positional_offset);
        if (*pos) {
            cli_error(spec->name, "give one %s, got '%s' and '%s'", spec->positional, *pos, a);
            return CLI_EXIT_USAGE;
        }
        *pos = a;
    }
    int required[CLI_MAX_FLAGS], n_required = 0;
    bool missing = false;
    for (int r = 0; r < spec->n_flags; r++) {
        if (!(spec->flags[r].flags & CLI_REQUIRED)) continue;
        required[n_required++] = r;
        missing |= !(*given >> r & 1);
    }
    if (missing) {
        report_required(spec, required, n_required);
        return CLI_EXIT_USAGE;
    }
    for (int r = 0; r < spec->n_flags; r++)
        if (raw[r] && convert(spec, &spec->flags[r], raw[r], opts) != 0) return CLI_EXIT_USAGE;
    return CLI_CONTINUE;
}

bool cli_given(const cli_spec *spec, const void *opts, const char *flag) {
    for (int r = 0; r < spec->n_flags; r++)
        if (strcmp(spec->flags[r].name, flag) == 0)
            return *given_mask(spec, (void *)opts) >> r & 1;
    ROAD_CLI_ASSERT(!"cli_given: no such flag in the table");
    return false;
}

/* Print `text` from column `col` (the cursor is at column `at`), wrapped at HELP_WIDTH. */
static void put_wrapped(FILE *to, const char *text, int col, int at) {
    const char *p = text;
    while (*p) {
        while (*p == ' ') p++;
        size_t word = strcspn(p, " ");
        if (at > col && at + 1 + (int)word > HELP_WIDTH) {
            fprintf(to, "\n%*s", col, "");
            at = col;
        } else if (at > col) {
            fputc(' ', to);
            at++;
        }
        if (at < col) {
            fprintf(to, "%*s", col - at, "");
            at = col;
        }
        fwrite(p, 1, word, to);
        at += (int)word;
        p += word;
    }
    fputc('\n', to);
}

void cli_help(const cli_spec *spec, FILE *to) {
    fprintf(to, "usage: road %s ", spec->name);
    if (spec->usage) {
        fprintf(to, "%s\n", spec->usage);
    } else {
        for (int r = 0; r < spec->n_flags; r++) {
            const cli_flag *f = &spec->flags[r];
            if (f->flags & CLI_REQUIRED) fprintf(to, "%s %s ", f->name, f->metavar);
        }
        fprintf(to, "[options]\n");
    }
    if (spec->about) fprintf(to, "\n%s", spec->about);
    if (spec->n_flags > 0) fprintf(to, "\noptions:\n");
    for (int r = 0; r < spec->n_flags; r++) {
        const cli_flag *f = &spec->flags[r];
        char left[128], text[1024];
        int at = snprintf(left, sizeof left, "  %s%s%s%s", f->name, f->metavar ? " " : "",
                          f->metavar ? f->metavar : "", f->kind == CLI_LIST ? "..." : "");
        fputs(left, to);
        if (at >= HELP_COLUMN - 1) {
            fputc('\n', to);
            at = 0;
        }
        snprintf(text, sizeof text, "%s%s%s%s%s", f->help, f->def ? " (default " : "",
                 f->def ? f->def : "", f->def ? ")" : "",
                 f->flags & CLI_REQUIRED ? " (required)" : "");
        put_wrapped(to, text, HELP_COLUMN, at);
    }
}

void cli_json_add(cJSON *obj, const cli_spec *spec, const void *opts) {
    for (int r = 0; r < spec->n_flags; r++) {
        const cli_flag *f = &spec->flags[r];
        const void *v = (const char *)opts + f->offset;
        if (!f->json) continue;
        switch (f->kind) {
        case CLI_STRING:
            if (*(const char *const *)v)
                cJSON_AddStringToObject(obj, f->json, *(const char *const *)v);
            else
                cJSON_AddNullToObject(obj, f->json);
            break;
        case CLI_INT: cJSON_AddNumberToObject(obj, f->json, (double)*(const int64_t *)v); break;
        case CLI_FLOAT: cJSON_AddNumberToObject(obj, f->json, *(const double *)v); break;
        case CLI_SWITCH: cJSON_AddBoolToObject(obj, f->json, *(const bool *)v); break;
        case CLI_DTYPE:
            cJSON_AddStringToObject(obj, f->json, road_dtype_name(*(const road_dtype *)v));
            break;
        case CLI_CHOICE: {
            const char *p = f->metavar; /* the index's name among "a|b|c" */
            for (int i = 0; i < *(const int *)v && strchr(p, '|'); i++) p = strchr(p, '|') + 1;
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(p, "|"), p);
            cJSON_AddStringToObject(obj, f->json, name);
            break;
        }
        case CLI_LIST: {
            cJSON *a = cJSON_AddArrayToObject(obj, f->json);
            for (int i = 0; a && i < ((const cli_list *)v)->n; i++)
                cJSON_AddItemToArray(a, cJSON_CreateString(((const cli_list *)v)->v[i]));
            break;
        }
        }
    }
}
