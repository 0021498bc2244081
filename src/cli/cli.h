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
/* Strict integer parsing with range; prints an error naming the flag on failure. */
int cli_parse_int(const char *cmd, const char *flag, const char *s, long long lo, long long hi,
                  long long *out);

int cmd_inspect(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_demo(int argc, char **argv);

#endif
