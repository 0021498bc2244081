/*
 * road/json.h - road's strict JSON reader, for programs (the road command among them) that read
 * JSON files beside road and want them read exactly as road reads its own.
 *
 * The text must be what Python's json.loads accepts (RFC 8259 plus NaN / Infinity /
 * -Infinity), in UTF-8; road also refuses strings holding \u0000 (the tree's strings are C
 * strings, so a NUL would cut one short without a word), lone surrogates and nesting deeper
 * than 512 levels. Trailing text after the value, raw control characters in strings and
 * invalid UTF-8 are refused. A refusal's message gives the line and column, what was expected,
 * and for a string's content the path of the value ("the string at messages[1].content holds
 * \u0000 (NUL) ...").
 *
 * The tree is cJSON's (include <cjson/cJSON.h> to walk it; free it with cJSON_Delete). Each
 * parsed number also keeps its source text in valuestring (cJSON frees it with the item).
 *
 * Threads: road_json_parse keeps no state between calls: any threads at once; a tree belongs
 * to its caller.
 */
#ifndef ROAD_JSON_H
#define ROAD_JSON_H

#include "road/core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* Parse len bytes of JSON text (no NUL terminator needed). ROAD_ERR_FORMAT with the message
 * above for text that is not valid JSON, ROAD_ERR_NO_MEMORY. *out: the tree, NULL on failure. */
ROAD_API road_status road_json_parse(const char *text, size_t len, struct cJSON **out);

#ifdef __cplusplus
}
#endif

#endif
