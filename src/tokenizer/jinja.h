/*
 * tokenizer/jinja.h - a Jinja2 engine for chat templates (private).
 *
 * Renders the templates of tokenizer_config.json as transformers' apply_chat_template does:
 * Python's jinja2 in an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks on,
 * autoescape off, the default Undefined, the loopcontrols extension (break / continue), the
 * `{% generation %}` tag of transformers' AssistantTracker, its tojson filter (json.dumps with
 * ensure_ascii=False) and its globals raise_exception and strftime_now. Only the subset of
 * Jinja chat templates use is implemented (docs/tokenizer.md lists it); anything else is an
 * error naming the line and what is unsupported, never a different text.
 *
 * A template is parsed once into a program (read-only afterwards: several threads may render
 * one program at once) and rendered with a cJSON object whose members are the variables
 * (messages, tools, bos_token, add_generation_prompt, any extra keyword arguments).
 *
 * Every render is bounded (steps, output size, memory, nesting, macro recursion), so no
 * template can hang or exhaust memory; the bounds are the ROAD_JINJA_MAX_* constants and can
 * be lowered per render (the fuzz target does).
 */
#ifndef ROAD_TOKENIZER_JINJA_H
#define ROAD_TOKENIZER_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "road/core.h"

/* Nesting of blocks and expressions in a template. Parsing and rendering recurse once per
 * level; real chat templates nest under 10 levels, and 200 keeps the C stack use far below
 * any thread's stack (each level costs well under 1 KiB). */
#define ROAD_JINJA_MAX_DEPTH 200
/* Macro calls in progress at once (a macro calling itself). Each call also recurses through
 * the macro's body, so this times the body's depth must stay within the stack. */
#define ROAD_JINJA_MAX_CALL_DEPTH 64
/* Work per render: one step per expression evaluated, statement run, loop iteration and item
 * a filter touches. A long chat renders in well under a million steps; 50 million is a few
 * seconds at most, so a template with a huge loop ends with an error instead of hanging. */
#define ROAD_JINJA_MAX_STEPS 50000000LL
/* Bytes of rendered text: far more than any model's context holds (1M tokens are ~4 MiB). */
#define ROAD_JINJA_MAX_OUTPUT ((size_t)64 << 20)
/* Bytes of memory one render may use for its values, strings and buffers (all of it is freed
 * when the render returns). */
#define ROAD_JINJA_MAX_MEMORY ((size_t)512 << 20)

typedef struct road__jinja road__jinja;

/* Parse a template (UTF-8, len bytes, NUL bytes allowed) into *out. ROAD_ERR_FORMAT with
 * "chat template line L, column C: ..." for a syntax error, ROAD_ERR_UNSUPPORTED for a
 * construct the engine does not have (include, extends, ...). */
road_status road__jinja_parse(const char *src, size_t len, road__jinja **out);
void road__jinja_free(road__jinja *t); /* NULL is fine */

/* Strftime_now's clock: the caller's time (tests), else SOURCE_DATE_EPOCH, else time(). */
#define ROAD_JINJA_NOW_AUTO INT64_MIN

typedef struct road__jinja_opts {
    int64_t now;       /* seconds since the epoch (UTC) for strftime_now, or ROAD_JINJA_NOW_AUTO */
    int64_t max_steps; /* 0: ROAD_JINJA_MAX_STEPS; a smaller bound is used as given */
    size_t max_output; /* 0: ROAD_JINJA_MAX_OUTPUT */
    size_t max_memory; /* 0: ROAD_JINJA_MAX_MEMORY */
} road__jinja_opts;

/* Bytes [begin, end) of the output rendered inside one {% generation %} block (transformers'
 * AssistantTracker: the assistant's part of a chat, for training masks). Blocks rendered into
 * a variable ({% set x %}, a macro's result, a filter block) are not recorded. */
typedef struct road__jinja_span {
    size_t begin, end;
} road__jinja_span;

typedef struct road__jinja_result {
    char *text; /* NUL-terminated (the text itself may hold NULs from the variables) */
    size_t len;
    road__jinja_span *spans; /* in output order; NULL when n_spans == 0 */
    size_t n_spans;
} road__jinja_result;

/* Render t with the members of `vars` (a cJSON object, or NULL for none) as variables. On
 * success *out owns road__malloc'd buffers (road__jinja_result_free). On failure *out is
 * zeroed and the message says the line and what went wrong; raise_exception(msg) in the
 * template gives ROAD_ERR_INVALID_ARG with msg in the message. opts may be NULL. */
road_status road__jinja_render(const road__jinja *t, const cJSON *vars,
                               const road__jinja_opts *opts, road__jinja_result *out);
void road__jinja_result_free(road__jinja_result *r);

#endif
