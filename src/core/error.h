/*
 * core/error.h - setting the thread-local error message (private).
 *
 * Usage: return road__error(ROAD_ERR_SHAPE, "out_features %lld is not divisible by group_size %d; "
 *                          "choose a group_size that divides it", ...);
 * Messages say what was wrong and what is allowed, so the CLI can print them as they are.
 */
#ifndef ROAD_CORE_ERROR_H
#define ROAD_CORE_ERROR_H

#include "road/core.h"

/* Record a formatted message for this thread and return s. */
road_status road__error(road_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current thread's message with "context: " (for callers adding where it happened). */
void road__error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Always-on check of an internal invariant: prints file:line and aborts. Not for user input. */
#define ROAD_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) road__assert_fail(#cond, __FILE__, __LINE__);                                 \
    } while (0)
_Noreturn void road__assert_fail(const char *expr, const char *file, int line);

/* Logging from inside the library (goes to the callback set by road_log_set_callback). */
void road__log(road_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
