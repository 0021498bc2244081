/*
 * io/json.h - JSON as Python's json module reads and writes it, over cJSON trees (private).
 *
 * road writes files that PEFT and Hugging Face tools also write (adapter_config.json), and a
 * file road rewrites must come out byte for byte as Python would have written it. cJSON is
 * the tree type; parsing and printing are road's own because cJSON's differ from Python's:
 *
 *  - road_json_parse (declared in road/json.h: the CLI reads JSON through it too) accepts
 *    exactly what json.loads accepts (strict RFC 8259 plus Python's NaN / Infinity /
 *    -Infinity), with three refusals Python does not make: strings holding \u0000 (cJSON
 *    strings end at NUL, so such a string would be cut short without a word; the refusal names
 *    the string's path), lone surrogates (not representable in UTF-8), and nesting deeper than
 *    ROAD_JSON_MAX_DEPTH. Input must be UTF-8 (no BOM). Every JSON text road reads goes through
 *    it: configs, safetensors headers, JSONL lines, HTTP bodies.
 *  - road__json_string_literal writes any bytes as a JSON string whole, NUL included: text road
 *    produces (generated text) is never cut at a NUL.
 *  - Duplicate keys are kept in the tree as parsed; road__json_get and road__json_dump both let
 *    the last one win, as a Python dict does.
 *  - A parsed number keeps its source text in its `valuestring` (cJSON frees and duplicates
 *    it like any other valuestring). That is how the printer tells the int 100 from the float
 *    100.0 and writes integers beyond 2^53 exactly, as Python does. Numbers built without it
 *    (cJSON_CreateNumber) print as integers when integral and within +-2^53, else as floats:
 *    such a 100.0 prints "100" (cJSON cannot tell), and -0.0 prints "-0.0". Code that changes
 *    a parsed number with cJSON_SetNumberValue is safe: a text that no longer matches the
 *    value is ignored.
 *
 * cJSON's own allocations stay with cJSON's default allocator (road does not call
 * cJSON_InitHooks: that is process-wide state and would break an application that uses cJSON
 * itself). Buffers this module returns are road__malloc'd.
 */
#ifndef ROAD_IO_JSON_H
#define ROAD_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "road/core.h"
#include "road/json.h"

/* Deeper nesting is refused by the parser and the printer: both recurse, and no file road
 * reads has a reason to nest more than a few levels. Python's own limit is about 1000. */
#define ROAD_JSON_MAX_DEPTH 512

/* Room for any number road__json_format_double writes ("-2.2250738585072014e-308" is 24). */
#define ROAD_JSON_NUMBER_MAX 32

/* Longest path kept for a refusal ("messages[1].content"); a longer one ends in "...". */
#define ROAD_JSON_PATH_MAX 128
/* Room for the description of what is wrong in a refusal. */
#define ROAD_JSON_WHAT_MAX 256

/* Where and why road__json_parse_at refused a text, for callers that word the message for their
 * own input (a line of a JSONL file, an HTTP body). */
typedef struct road_json_where {
    size_t line, column; /* 1-based; the column counts characters */
    size_t offset;       /* bytes from the start of the text */
    /* The value being read when it failed: "" for the top level, else keys and indices from
     * the top, "messages[1].content" (a key that is not an identifier: ["a b"]). */
    char path[ROAD_JSON_PATH_MAX];
    char what[ROAD_JSON_WHAT_MAX]; /* "extra text after the JSON value", ... */
    /* The text is JSON (RFC 8259 would take it) that road refuses for its own reasons: a
     * \u0000 in a string, a lone surrogate escape, nesting past ROAD_JSON_MAX_DEPTH. */
    bool valid_json;
} road_json_where;

/* road_json_parse (road/json.h: "invalid JSON at line L, column C: WHAT"), and on failure, when
 * where != NULL, *where filled (zeroed on success and on no memory). */
road_status road__json_parse_at(const char *text, size_t len, cJSON **out, road_json_where *where);

/* The source text of a parsed number, if it has one that is a JSON number for its value (a
 * number changed with cJSON_SetNumberValue or built in C has none): NULL otherwise. */
const char *road__json_number_text(const cJSON *v);

/* s[0..n) as a JSON string literal, quotes included, every byte kept: '"', '\\' and control
 * characters escaped (\n, \t, ..., \u0000 for a NUL), other valid UTF-8 written as it is, and
 * each byte that is not part of a valid UTF-8 character written as \ufffd (U+FFFD, what
 * Python's bytes.decode(errors="replace") gives). *out is road__malloc'd and holds no NUL byte
 * before its terminator, so it can go where a C string goes (cJSON_CreateRaw); *out_len (may
 * be NULL) excludes the terminator. */
road_status road__json_string_literal(const char *s, size_t n, char **out, size_t *out_len);

/* Serialize as Python's json.dumps(obj, indent=2, sort_keys=True) (ensure_ascii=True): keys
 * sorted by code point, ", " / ": " separators with one item per line, "\uXXXX" escapes for
 * non-ASCII, no trailing newline. *out is NUL-terminated and road__malloc'd; *len (may be NULL)
 * excludes the NUL. ROAD_ERR_INVALID_ARG for a string that is not valid UTF-8, a cJSON raw or
 * invalid item, or nesting deeper than ROAD_JSON_MAX_DEPTH. */
road_status road__json_dump(const cJSON *item, char **out, size_t *len);

/* Python's repr of a float as JSON writes it: shortest digits that round-trip, exponent form
 * ("1e-05", "1e+16") when the decimal exponent is < -4 or >= 16, "100.0" otherwise; "NaN",
 * "Infinity", "-Infinity" for the non-finite. buf must hold ROAD_JSON_NUMBER_MAX bytes. */
void road__json_format_double(double v, char *buf, size_t cap);

/* True if s[0..len) is well-formed UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF), as Python's UTF-8 decoder requires. */
bool road__json_utf8_valid(const char *s, size_t len);

/* The member `key` of object `obj` (the last one if the key repeats), or NULL. */
const cJSON *road__json_get(const cJSON *obj, const char *key);

/* s in double quotes for an error message: control characters, quotes and backslashes
 * escaped, cut (with "...") after 40 bytes on a character boundary. cap >= 8. */
void road__json_quote(const char *s, char *buf, size_t cap);

/* A short description of a value for error messages: the number as Python prints it, a
 * string quoted (and shortened past 40 characters) followed by " (a string)", true, false,
 * null, "a list", "an object". */
void road__json_describe(const cJSON *v, char *buf, size_t cap);

/* True if `v` is a number that Python reads as an int (written without '.', 'e' or 'E'), or a
 * number built in C whose value is integral. */
bool road__json_is_int(const cJSON *v);

/* Typed getters of member `key`. All of them: ROAD_ERR_NOT_FOUND (message "KEY is missing")
 * when the key is absent, *out untouched; ROAD_ERR_CONFIG when it is present with the wrong
 * type or out of range, with a message naming the key, what was found and what is allowed
 * ("group_size must be an integer, got 64.5"). Booleans are never numbers and numbers never
 * booleans, unlike in Python. */
road_status road__json_get_int(const cJSON *obj, const char *key, int32_t *out);
road_status road__json_get_i64(const cJSON *obj, const char *key, int64_t *out);
road_status road__json_get_double(const cJSON *obj, const char *key, double *out);
road_status road__json_get_bool(const cJSON *obj, const char *key, bool *out);
/* *out points into the tree. With allow_null, JSON null gives *out = NULL. */
road_status road__json_get_string(const cJSON *obj, const char *key, bool allow_null,
                                  const char **out);

#endif
