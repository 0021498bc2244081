/*
 * core/status.c - status names and messages (from ROAD_STATUS_TABLE), the thread-local error
 * message, logging and the version string.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Long enough for a message that lists a few names and a fix; longer ones are truncated. */
#define ROAD_ERROR_MAX 1024

static _Thread_local char tls_error[ROAD_ERROR_MAX];

static const char *const status_names[] = {
#define ROAD_STATUS_NAME_(name, short_name, msg) short_name,
    ROAD_STATUS_TABLE(ROAD_STATUS_NAME_)
#undef ROAD_STATUS_NAME_
};
static const char *const status_messages[] = {
#define ROAD_STATUS_MSG_(name, short_name, msg) msg,
    ROAD_STATUS_TABLE(ROAD_STATUS_MSG_)
#undef ROAD_STATUS_MSG_
};
_Static_assert(sizeof(status_names) / sizeof(status_names[0]) == ROAD_STATUS_COUNT_,
               "one name per status");

const char *road_status_name(road_status s) {
    if ((unsigned)s >= ROAD_STATUS_COUNT_) return "unknown";
    return status_names[s];
}

const char *road_status_message(road_status s) {
    if ((unsigned)s >= ROAD_STATUS_COUNT_) return "unknown status";
    return status_messages[s];
}

const char *road_last_error(void) {
    return tls_error;
}

void road_clear_error(void) {
    tls_error[0] = '\0';
}

road_status road__error(road_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_error, sizeof tls_error, fmt, ap);
    va_end(ap);
    return s;
}

void road__error_prefix(const char *fmt, ...) {
    char prefix[ROAD_ERROR_MAX];
    char old[ROAD_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, tls_error, sizeof old);
    /* Truncation is fine here: the head of the message says the most. */
    size_t k = strlen(prefix);
    if (k > sizeof tls_error - 3) k = sizeof tls_error - 3;
    memcpy(tls_error, prefix, k);
    tls_error[k++] = ':';
    tls_error[k++] = ' ';
    size_t rest = strlen(old);
    if (rest > sizeof tls_error - 1 - k) rest = sizeof tls_error - 1 - k;
    memcpy(tls_error + k, old, rest);
    tls_error[k + rest] = '\0';
}

_Noreturn void road__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "road: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}

/* The one process-wide setting (see road_log_set_callback). */
static road_log_fn log_fn;
static void *log_user;

void road_log_set_callback(road_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

void road__log(road_log_level level, const char *fmt, ...) {
    road_log_fn fn = log_fn;
    if (!fn) return;
    char msg[ROAD_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(level, msg, log_user);
}

const char *road_version(void) {
    return ROAD_VERSION;
}
