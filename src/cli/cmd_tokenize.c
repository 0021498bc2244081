/*
 * cli/cmd_tokenize.c - `road tokenize` and `road detokenize`: the everyday tools for checking
 * what ids a prompt becomes and what text ids stand for, with the model's own tokenizer.json.
 *
 *   road tokenize   --model DIR | --tokenizer FILE (--text STR | --file F) [--no-special] [--pieces]
 *   road detokenize --model DIR | --tokenizer FILE (--ids "1 2 3" | --file F) [--skip-special]
 *
 * tokenize prints the ids on one line, space-separated; --pieces adds a second line with each
 * token's string as tokenizer.json writes it (JSON-escaped, space-separated). --file's bytes are
 * taken as they are (no newline stripped). detokenize prints the text and a newline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "road/tokenizer.h"

static void print_piece(const char *p, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

typedef struct tok_args {
    const char *model, *tokenizer, *text, *file, *ids;
    bool no_special, pieces, skip_special;
    uint64_t given;
} tok_args;

/* The rows both commands have: where the tokenizer comes from, and --file. */
#define TOKENIZER_FLAGS(file_help)                                                                \
    {CLI_STR("--model", tok_args, model, "DIR", NULL, "a model folder holding tokenizer.json")},   \
        {CLI_STR("--tokenizer", tok_args, tokenizer, "FILE", NULL,                                \
                 "a tokenizer.json; give this or --model")},                       \
        {CLI_STR("--file", tok_args, file, "F", NULL, file_help)}

static const cli_flag tokenize_flags[] = {
    TOKENIZER_FLAGS("the text to encode, its bytes as they are (no newline stripped)"),
    {CLI_STR("--text", tok_args, text, "STR", NULL, "the text to encode; give this or --file")},
    {CLI_SW("--no-special", tok_args, no_special, "leave out the bos/eos the tokenizer adds")},
    {CLI_SW("--pieces", tok_args, pieces,
            "a second line: each token's string as tokenizer.json writes it (JSON-escaped)")},
};
static const cli_flag detokenize_flags[] = {
    TOKENIZER_FLAGS("the ids to decode (separated by spaces, commas or newlines)"),
    {CLI_STR("--ids", tok_args, ids, "\"1 2 3\"", NULL,
             "the ids to decode (separated by spaces or commas); give this or --file")},
    {CLI_SW("--skip-special", tok_args, skip_special, "leave special tokens out of the text")},
};
static const cli_spec tokenize_spec = {
    .name = "tokenize",
    .usage = "--model DIR | --tokenizer FILE (--text STR | --file F) [--no-special] [--pieces]",
    .about = "Prints the ids on one line, space-separated.\n",
    CLI_TABLE(tokenize_flags, tok_args),
};
static const cli_spec detokenize_spec = {
    .name = "detokenize",
    .usage = "--model DIR | --tokenizer FILE (--ids \"1 2 3\" | --file F) [--skip-special]",
    .about = "Prints the text of the ids and a newline.\n",
    CLI_TABLE(detokenize_flags, tok_args),
};

/* CLI_CONTINUE, or the exit code (message printed). */
static int parse(const cli_spec *spec, int argc, char **argv, tok_args *a, bool detok) {
    memset(a, 0, sizeof *a);
    int r = cli_parse(spec, argc, argv, a);
    if (r != CLI_CONTINUE) return r;
    if (!a->model == !a->tokenizer) {
        cli_error(spec->name, "give exactly one of --model DIR or --tokenizer FILE");
        return CLI_EXIT_USAGE;
    }
    const char *input = detok ? a->ids : a->text;
    if (!input == !a->file) {
        cli_error(spec->name, "give exactly one of %s or --file F",
                  detok ? "--ids \"1 2 3\"" : "--text STR");
        return CLI_EXIT_USAGE;
    }
    return CLI_CONTINUE;
}

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    tok_args a;
    int r = parse(&tokenize_spec, argc, argv, &a, false);
    if (r != CLI_CONTINUE) return r;
    road_tokenizer *t = NULL;
    road_status s = road_tokenizer_load(a.model ? a.model : a.tokenizer, &t);
    if (s != ROAD_OK) return cli_fail(cmd, "loading the tokenizer", s);
    char *text = NULL;
    size_t len = 0;
    if (a.file) {
        if (cli_read_file(cmd, a.file, &text, &len) != 0) {
            road_tokenizer_free(t);
            return CLI_EXIT_FAIL;
        }
    }
    const char *in = a.file ? text : a.text;
    if (!a.file) len = strlen(a.text);
    size_t cap = road_tokenizer_max_tokens(t, len), n = 0;
    int32_t *ids = cap < ((size_t)1 << 40) / sizeof *ids ? malloc((cap + 1) * sizeof *ids) : NULL;
    int rc = CLI_EXIT_OK;
    if (!ids) {
        cli_error(cmd, "out of memory");
        rc = CLI_EXIT_FAIL;
    } else if ((s = road_tokenizer_encode(t, in, len, !a.no_special, ids, cap, &n)) != ROAD_OK) {
        rc = cli_fail(cmd, "encoding", s);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        if (a.pieces) {
            for (size_t i = 0; i < n; i++) {
                size_t pl = 0;
                const char *p = road_tokenizer_token_to_piece(t, ids[i], &pl);
                if (i) putchar(' ');
                print_piece(p ? p : "", p ? pl : 0);
            }
            putchar('\n');
        }
    }
    free(ids);
    free(text);
    road_tokenizer_free(t);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *cmd = "detokenize";
    tok_args a;
    int r = parse(&detokenize_spec, argc, argv, &a, true);
    if (r != CLI_CONTINUE) return r;
    char *file_text = NULL;
    size_t flen = 0;
    if (a.file && cli_read_file(cmd, a.file, &file_text, &flen) != 0) return CLI_EXIT_FAIL;
    /* a file may hold ids over several lines: newlines and tabs count as separators */
    for (size_t i = 0; file_text && i < flen; i++)
        if (file_text[i] == '\n' || file_text[i] == '\r' || file_text[i] == '\t') file_text[i] = ' ';
    if (file_text) {
        size_t e = flen;
        while (e > 0 && file_text[e - 1] == ' ') file_text[--e] = '\0';
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    if (cli_parse_ids(cmd, a.file ? "--file" : "--ids", a.file ? file_text : a.ids, &ids, &n) != 0) {
        free(file_text);
        return CLI_EXIT_USAGE;
    }
    free(file_text);
    road_tokenizer *t = NULL;
    road_status s = road_tokenizer_load(a.model ? a.model : a.tokenizer, &t);
    if (s != ROAD_OK) {
        free(ids);
        return cli_fail(cmd, "loading the tokenizer", s);
    }
    char *text = NULL;
    size_t len = 0;
    int rc = CLI_EXIT_OK;
    s = road_tokenizer_decode(t, ids, (size_t)n, a.skip_special, &text, &len);
    if (s != ROAD_OK) {
        rc = cli_fail(cmd, "decoding", s);
    } else {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    road_string_free(text);
    free(ids);
    road_tokenizer_free(t);
    return rc;
}
