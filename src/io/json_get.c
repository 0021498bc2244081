/*
 * io/json_get.c - lookups and typed getters over parsed JSON trees, and the short quotes and
 * descriptions of values that road's error messages use (see json.h for the contract).
 *
 * Apart from the parser and printer (json.c) because they only read trees: an int is told from
 * a float, and an integer past 2^53 read exactly, through the source text the parser keeps
 * with each number (road__json_number_text).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/json.h"

/* Below this magnitude every integral double is an exact integer. */
#define EXACT_INT_LIMIT 9007199254740992.0 /* 2^53 */
/* Longest excerpt of a string quoted in an error message. */
#define DESCRIBE_STRING_MAX 40

static bool is_int_text(const char *t) {
    return strpbrk(t, ".eE") == NULL;
}

/* ---- lookup and typed getters ------------------------------------------------------------- */

const cJSON *road__json_get(const cJSON *obj, const char *key) {
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *found = NULL;
    for (const cJSON *c = obj->child; c; c = c->next) {
        if (c->string && strcmp(c->string, key) == 0) found = c;
    }
    return found;
}

bool road__json_is_int(const cJSON *v) {
    if (!cJSON_IsNumber(v)) return false;
    const char *t = road__json_number_text(v);
    if (t) return is_int_text(t);
    return isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
}

void road__json_quote(const char *str, char *buf, size_t cap) {
    /* Each byte takes at most 6 characters ("\u001f"). */
    char q[DESCRIBE_STRING_MAX * 6 + 8];
    const unsigned char *s = (const unsigned char *)str;
    size_t k = 0, i = 0;
    while (s[i] && i < DESCRIBE_STRING_MAX) {
        if (s[i] < 0x20 || s[i] == '"' || s[i] == '\\') {
            k += (size_t)snprintf(q + k, sizeof q - k, s[i] < 0x20 ? "\\u%04x" : "\\%c", s[i]);
            i++;
            continue;
        }
        size_t clen = 1;
        while ((s[i + clen] & 0xC0) == 0x80) clen++;
        if (i + clen > DESCRIBE_STRING_MAX) break;
        memcpy(q + k, s + i, clen);
        k += clen, i += clen;
    }
    q[k] = '\0';
    snprintf(buf, cap, "\"%s%s\"", q, s[i] ? "..." : "");
}

void road__json_describe(const cJSON *v, char *buf, size_t cap) {
    if (!v) {
        snprintf(buf, cap, "nothing");
        return;
    }
    switch (v->type & 0xFF) {
    case cJSON_NULL:
        snprintf(buf, cap, "null");
        return;
    case cJSON_True:
        snprintf(buf, cap, "true");
        return;
    case cJSON_False:
        snprintf(buf, cap, "false");
        return;
    case cJSON_Array:
        snprintf(buf, cap, "a list");
        return;
    case cJSON_Object:
        snprintf(buf, cap, "an object");
        return;
    case cJSON_Number: {
        const char *t = road__json_number_text(v);
        if (t && is_int_text(t)) {
            snprintf(buf, cap, "%.*s%s", DESCRIBE_STRING_MAX, t,
                     strlen(t) > DESCRIBE_STRING_MAX ? "..." : "");
        } else if (!t && road__json_is_int(v) && fabs(v->valuedouble) <= EXACT_INT_LIMIT) {
            snprintf(buf, cap, "%lld", (long long)v->valuedouble);
        } else {
            road__json_format_double(v->valuedouble, buf, cap);
        }
        return;
    }
    case cJSON_String: {
        char q[DESCRIBE_STRING_MAX * 6 + 8];
        road__json_quote(v->valuestring ? v->valuestring : "", q, sizeof q);
        snprintf(buf, cap, "%s (a string)", q);
        return;
    }
    default:
        snprintf(buf, cap, "an unknown cJSON item");
        return;
    }
}

static const cJSON *require(const cJSON *obj, const char *key) {
    const cJSON *v = road__json_get(obj, key);
    if (!v) road__error(ROAD_ERR_NOT_FOUND, "%s is missing", key);
    return v;
}

static road_status type_error(const char *key, const char *allowed, const cJSON *v) {
    char got[DESCRIBE_STRING_MAX * 6 + 32];
    road__json_describe(v, got, sizeof got);
    return road__error(ROAD_ERR_CONFIG, "%s must be %s, got %s", key, allowed, got);
}

/* The exact integer value of an int number in [lo, hi]. */
static road_status get_integer(const cJSON *obj, const char *key, int64_t lo, int64_t hi,
                               int64_t *out) {
    const cJSON *v = require(obj, key);
    if (!v) return ROAD_ERR_NOT_FOUND;
    if (!road__json_is_int(v)) return type_error(key, "an integer", v);
    const char *t = road__json_number_text(v);
    bool in_range;
    int64_t x = 0;
    if (t) {
        /* From the text: doubles lose integers past 2^53. */
        bool neg = t[0] == '-';
        uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        in_range = true;
        for (const char *c = t + neg; *c; c++) {
            uint64_t d = (uint64_t)(*c - '0');
            if (mag > (limit - d) / 10) {
                in_range = false;
                break;
            }
            mag = mag * 10 + d;
        }
        if (in_range) x = !neg ? (int64_t)mag : mag == 0 ? 0 : -(int64_t)(mag - 1) - 1;
    } else {
        double d = v->valuedouble;
        in_range = d >= -9223372036854775808.0 && d < 9223372036854775808.0;
        if (in_range) x = (int64_t)d;
    }
    if (!in_range || x < lo || x > hi) {
        char got[64];
        road__json_describe(v, got, sizeof got);
        return road__error(ROAD_ERR_CONFIG, "%s must be an integer from %lld to %lld, got %s", key,
                           (long long)lo, (long long)hi, got);
    }
    *out = x;
    return ROAD_OK;
}

road_status road__json_get_int(const cJSON *obj, const char *key, int32_t *out) {
    int64_t x;
    road_status s = get_integer(obj, key, INT32_MIN, INT32_MAX, &x);
    if (s == ROAD_OK) *out = (int32_t)x;
    return s;
}

road_status road__json_get_i64(const cJSON *obj, const char *key, int64_t *out) {
    return get_integer(obj, key, INT64_MIN, INT64_MAX, out);
}

road_status road__json_get_double(const cJSON *obj, const char *key, double *out) {
    const cJSON *v = require(obj, key);
    if (!v) return ROAD_ERR_NOT_FOUND;
    if (!cJSON_IsNumber(v)) return type_error(key, "a number", v);
    *out = v->valuedouble;
    return ROAD_OK;
}

road_status road__json_get_bool(const cJSON *obj, const char *key, bool *out) {
    const cJSON *v = require(obj, key);
    if (!v) return ROAD_ERR_NOT_FOUND;
    if (!cJSON_IsBool(v)) return type_error(key, "true or false", v);
    *out = cJSON_IsTrue(v);
    return ROAD_OK;
}

road_status road__json_get_string(const cJSON *obj, const char *key, bool allow_null,
                                  const char **out) {
    const cJSON *v = require(obj, key);
    if (!v) return ROAD_ERR_NOT_FOUND;
    if (allow_null && cJSON_IsNull(v)) {
        *out = NULL;
        return ROAD_OK;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return type_error(key, allow_null ? "a string or null" : "a string", v);
    *out = v->valuestring;
    return ROAD_OK;
}
