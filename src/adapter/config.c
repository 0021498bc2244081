/*
 * adapter/config.c - PEFT's RoadConfig and adapter_config.json (see include/road/config.h).
 *
 * Reading follows PEFT's RoadConfig.__post_init__ and adds the type checks Python leaves to
 * chance: peft_type must be "ROAD"; variant, group_size and init_weights default as in PEFT
 * (road_1, 64, true); every field's JSON type is checked, and the message names the field,
 * what was found and what is allowed. Fields road does not know are kept in a cJSON object
 * and written back unchanged, so a load / save cycle loses nothing.
 *
 * Writing gives the exact bytes of PEFT's save_pretrained: all twelve fields PEFT writes (null
 * where unset) plus the kept unknown ones, through io/json.c's json.dumps(indent=2,
 * sort_keys=True) printer. A config is a fixed point: parse(to_json(c)) writes the same text.
 *
 * Decisions where PEFT leaves room:
 *  - target_modules: a list is a set in PEFT, so duplicates collapse (the first occurrence
 *    keeps its place; PEFT's own order is arbitrary). An empty list is accepted, because PEFT
 *    accepts and writes it; it selects no layer, so applying it to a model fails there, as in
 *    PEFT. Empty names are refused (PEFT would match nothing, or the root module). A string is
 *    "all-linear" when it equals that ignoring ASCII case (PEFT compares .lower()), else a
 *    regex, which must compile with PCRE2 in UTF mode.
 *  - modules_to_save is a list in PEFT, not a set: kept as written, empty names refused.
 *  - peft_version of a new config is null. It records which PEFT wrote a file and PEFT reads
 *    it only to warn about files from a newer PEFT. road is not a PEFT version, and a made-up
 *    string ("road-0.1.0") might not survive PEFT's version parsing; null is the field's own
 *    default, which PEFT treats like the files written before the field existed. Loaded
 *    values are kept, and road_config_set_peft_version sets any string.
 *  - task_type is any string or null: PEFT checks it against its TaskType list, which grows
 *    between releases; road does not use it.
 *  - init_weights, inference_mode and group_size must be JSON booleans / integers; Python
 *    would let some wrong types through and fail later.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "road/config.h"

#define CONFIG_FILE_NAME "adapter_config.json"
/* PEFT's adapter_config.json is under 1 KB; a file this big is something else passed by
 * mistake (weights, a dataset), and reading it whole would waste memory. */
#define CONFIG_MAX_BYTES ((size_t)1 << 20)
/* Room for a described JSON value in a message (see road__json_describe). */
#define DESCRIBE_MAX 320

typedef struct strlist {
    char **v;
    int32_t n; /* -1: JSON null */
} strlist;

struct road_config {
    road_variant variant;
    int32_t group_size;
    bool init_weights;
    road_target_kind target_kind;
    strlist targets; /* LIST: the names; REGEX / ALL_LINEAR: the one string; DEFAULT: empty */
    strlist modules_to_save;
    char *task_type; /* NULL: JSON null, as for the three below */
    char *base_model;
    char *revision;
    char *peft_version;
    bool inference_mode;
    cJSON *auto_mapping; /* an object, or NULL for null */
    cJSON *extra;        /* unknown fields, an object or NULL */
};

/* ---- small helpers ------------------------------------------------------------------------- */

static const struct {
    road_variant v;
    const char *name;
} variants[] = {{ROAD_VARIANT_1, "road_1"}, {ROAD_VARIANT_2, "road_2"}, {ROAD_VARIANT_4, "road_4"}};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

/* Private to this file so the config does not depend on the kernels' road_variant_parse. */
static bool variant_from_name(const char *s, road_variant *out) {
    for (size_t i = 0; i < N_VARIANTS; i++) {
        if (strcmp(s, variants[i].name) == 0) {
            *out = variants[i].v;
            return true;
        }
    }
    return false;
}

static const char *variant_to_name(road_variant v) {
    for (size_t i = 0; i < N_VARIANTS; i++) {
        if (variants[i].v == v) return variants[i].name;
    }
    return NULL;
}

static bool ascii_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
        if (x != y) return false;
    }
    return *a == *b;
}

static road_status describe_error(road_status s, const char *field, const char *allowed,
                                  const cJSON *v) {
    char got[DESCRIBE_MAX];
    road__json_describe(v, got, sizeof got);
    return road__error(s, "%s must be %s, got %s", field, allowed, got);
}

static road_status check_text(const char *field, const char *s) {
    if (!road__json_utf8_valid(s, strlen(s)))
        return road__error(ROAD_ERR_INVALID_ARG, "%s is not valid UTF-8", field);
    return ROAD_OK;
}

static void list_free(strlist *l) {
    for (int32_t i = 0; i < l->n; i++) road__free(l->v[i]);
    road__free(l->v);
    l->v = NULL;
    l->n = -1;
}

/* A copy of names[0..n) checked as module names of `field`: non-empty UTF-8. */
static road_status list_make(const char *field, const char *const *names, int32_t n, strlist *out) {
    out->v = NULL;
    out->n = 0;
    if (n > 0 && !names) return road__error(ROAD_ERR_INVALID_ARG, "%s: names is NULL", field);
    for (int32_t i = 0; i < n; i++) {
        if (!names[i]) return road__error(ROAD_ERR_INVALID_ARG, "%s[%d] is NULL", field, i);
        if (names[i][0] == '\0')
            return road__error(ROAD_ERR_CONFIG,
                               "%s[%d] is an empty string; module names are "
                               "non-empty",
                               field, i);
        road_status s = check_text(field, names[i]);
        if (s != ROAD_OK) return s;
    }
    if (n > 0) {
        out->v = road__calloc((size_t)n, sizeof *out->v);
        if (!out->v) return ROAD_ERR_NO_MEMORY;
    }
    for (int32_t i = 0; i < n; i++) {
        out->v[i] = road__strdup(names[i]);
        if (!out->v[i]) {
            out->n = i;
            list_free(out);
            return ROAD_ERR_NO_MEMORY;
        }
    }
    out->n = n;
    return ROAD_OK;
}

static road_status list_copy(const strlist *src, strlist *dst) {
    if (src->n < 0) {
        dst->v = NULL;
        dst->n = -1;
        return ROAD_OK;
    }
    return list_make("list", (const char *const *)src->v, src->n, dst);
}

typedef struct ranked {
    const char *s;
    int32_t index;
} ranked;

static int ranked_cmp(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    int c = strcmp(a->s, b->s);
    if (c != 0) return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Drop repeated names, keeping each first occurrence in place (PEFT holds a set). Sorting
 * keeps this O(n log n) for lists of any length. */
static road_status list_dedup(strlist *l) {
    if (l->n < 2) return ROAD_OK;
    ranked *r = road__calloc((size_t)l->n, sizeof *r);
    bool *drop = road__calloc((size_t)l->n, sizeof *drop);
    if (!r || !drop) {
        road__free(r);
        road__free(drop);
        return ROAD_ERR_NO_MEMORY;
    }
    for (int32_t i = 0; i < l->n; i++) r[i] = (ranked){l->v[i], i};
    qsort(r, (size_t)l->n, sizeof *r, ranked_cmp);
    for (int32_t i = 1; i < l->n; i++) {
        if (strcmp(r[i].s, r[i - 1].s) == 0) drop[r[i].index] = true;
    }
    int32_t k = 0;
    for (int32_t i = 0; i < l->n; i++) {
        if (drop[i]) {
            road__free(l->v[i]);
        } else {
            l->v[k++] = l->v[i];
        }
    }
    l->n = k;
    road__free(r);
    road__free(drop);
    return ROAD_OK;
}

/* Replace *slot with a copy of s (NULL for JSON null). */
static road_status set_text(char **slot, const char *field, const char *s) {
    char *copy = NULL;
    if (s) {
        road_status st = check_text(field, s);
        if (st != ROAD_OK) return st;
        copy = road__strdup(s);
        if (!copy) return ROAD_ERR_NO_MEMORY;
    }
    road__free(*slot);
    *slot = copy;
    return ROAD_OK;
}

/* ---- the regex check: PCRE2 allocating through road__malloc ------------------------------- */

static void *pcre_alloc(PCRE2_SIZE n, void *user) {
    (void)user;
    return road__malloc(n);
}

static void pcre_release(void *p, void *user) {
    (void)user;
    road__free(p);
}

static road_status check_regex(const char *re) {
    if (re[0] == '\0')
        return road__error(ROAD_ERR_CONFIG, "target_modules must not be an empty string; use "
                                            "null for the model's default targets");
    road_status s = check_text("target_modules", re);
    if (s != ROAD_OK) return s;
    pcre2_general_context *g = pcre2_general_context_create(pcre_alloc, pcre_release, NULL);
    pcre2_compile_context *cc = g ? pcre2_compile_context_create(g) : NULL;
    if (!cc) {
        pcre2_general_context_free(g);
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory compiling target_modules");
    }
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(g);
    if (code) {
        pcre2_code_free(code);
        return ROAD_OK;
    }
    if (err == PCRE2_ERROR_HEAP_FAILED)
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory compiling target_modules");
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(err, msg, sizeof msg) < 0) msg[0] = '\0';
    char q[DESCRIBE_MAX];
    road__json_quote(re, q, sizeof q);
    return road__error(ROAD_ERR_CONFIG,
                       "target_modules regex %s does not compile: %s (at offset "
                       "%zu)",
                       q, (const char *)msg, (size_t)off);
}

/* ---- create, free, clone ------------------------------------------------------------------ */

road_status road_config_create(road_config **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_config_create: out is NULL");
    *out = NULL;
    road_config *c = road__calloc(1, sizeof *c);
    if (!c) return ROAD_ERR_NO_MEMORY;
    c->variant = ROAD_VARIANT_1;
    c->group_size = ROAD_DEFAULT_GROUP_SIZE;
    c->init_weights = true;
    c->target_kind = ROAD_TARGET_DEFAULT;
    c->targets.n = 0;
    c->modules_to_save.n = -1;
    *out = c;
    return ROAD_OK;
}

void road_config_free(road_config *c) {
    if (!c) return;
    list_free(&c->targets);
    list_free(&c->modules_to_save);
    road__free(c->task_type);
    road__free(c->base_model);
    road__free(c->revision);
    road__free(c->peft_version);
    cJSON_Delete(c->auto_mapping);
    cJSON_Delete(c->extra);
    road__free(c);
}

static road_status dup_json(const cJSON *src, cJSON **dst) {
    *dst = NULL;
    if (!src) return ROAD_OK;
    *dst = cJSON_Duplicate(src, 1);
    return *dst ? ROAD_OK : road__error(ROAD_ERR_NO_MEMORY, "out of memory copying JSON");
}

road_status road_config_clone(const road_config *c, road_config **out) {
    if (!c || !out) return road__error(ROAD_ERR_INVALID_ARG, "road_config_clone: NULL argument");
    *out = NULL;
    road_config *d;
    road_status s = road_config_create(&d);
    if (s != ROAD_OK) return s;
    d->variant = c->variant;
    d->group_size = c->group_size;
    d->init_weights = c->init_weights;
    d->target_kind = c->target_kind;
    d->inference_mode = c->inference_mode;
    if ((s = list_copy(&c->targets, &d->targets)) != ROAD_OK ||
        (s = list_copy(&c->modules_to_save, &d->modules_to_save)) != ROAD_OK ||
        (s = set_text(&d->task_type, "task_type", c->task_type)) != ROAD_OK ||
        (s = set_text(&d->base_model, "base_model_name_or_path", c->base_model)) != ROAD_OK ||
        (s = set_text(&d->revision, "revision", c->revision)) != ROAD_OK ||
        (s = set_text(&d->peft_version, "peft_version", c->peft_version)) != ROAD_OK ||
        (s = dup_json(c->auto_mapping, &d->auto_mapping)) != ROAD_OK ||
        (s = dup_json(c->extra, &d->extra)) != ROAD_OK) {
        road_config_free(d);
        return s;
    }
    *out = d;
    return ROAD_OK;
}

void road_string_free(char *s) {
    road__free(s);
}

/* ---- getters ------------------------------------------------------------------------------ */

road_variant road_config_variant(const road_config *c) {
    return c->variant;
}
int32_t road_config_group_size(const road_config *c) {
    return c->group_size;
}
bool road_config_init_weights(const road_config *c) {
    return c->init_weights;
}
road_target_kind road_config_target_kind(const road_config *c) {
    return c->target_kind;
}
int32_t road_config_target_count(const road_config *c) {
    return c->target_kind == ROAD_TARGET_DEFAULT ? 0 : c->targets.n;
}
const char *road_config_target(const road_config *c, int32_t i) {
    return i >= 0 && i < road_config_target_count(c) ? c->targets.v[i] : NULL;
}
int32_t road_config_modules_to_save_count(const road_config *c) {
    return c->modules_to_save.n;
}
const char *road_config_module_to_save(const road_config *c, int32_t i) {
    return i >= 0 && i < c->modules_to_save.n ? c->modules_to_save.v[i] : NULL;
}
const char *road_config_task_type(const road_config *c) {
    return c->task_type;
}
const char *road_config_base_model(const road_config *c) {
    return c->base_model;
}
const char *road_config_revision(const road_config *c) {
    return c->revision;
}
bool road_config_inference_mode(const road_config *c) {
    return c->inference_mode;
}
const char *road_config_peft_version(const road_config *c) {
    return c->peft_version;
}

/* ---- setters ------------------------------------------------------------------------------ */

road_status road_config_set_variant(road_config *c, road_variant v) {
    if (!variant_to_name(v))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "variant %d is not one of ROAD_VARIANT_1, "
                           "ROAD_VARIANT_2, ROAD_VARIANT_4",
                           (int)v);
    c->variant = v;
    return ROAD_OK;
}

static road_status check_group_size(int64_t g) {
    if (g <= 0 || g % 2 != 0)
        return road__error(ROAD_ERR_CONFIG,
                           "group_size must be a positive even number (elements "
                           "are rotated in pairs), got %lld",
                           (long long)g);
    if (g > INT32_MAX - 1)
        return road__error(ROAD_ERR_CONFIG, "group_size must be at most %d, got %lld",
                           INT32_MAX - 1, (long long)g);
    return ROAD_OK;
}

road_status road_config_set_group_size(road_config *c, int64_t group_size) {
    road_status s = check_group_size(group_size);
    if (s == ROAD_OK) c->group_size = (int32_t)group_size;
    return s;
}

void road_config_set_init_weights(road_config *c, bool init_weights) {
    c->init_weights = init_weights;
}

/* Take a freshly built list (or its build error) as the targets: duplicates collapse as in
 * PEFT's set; on any error the old targets stay. */
static road_status adopt_target_list(road_config *c, strlist l, road_status s) {
    if (s == ROAD_OK) s = list_dedup(&l);
    if (s != ROAD_OK) {
        if (l.v) list_free(&l);
        return s;
    }
    list_free(&c->targets);
    c->targets = l;
    c->target_kind = ROAD_TARGET_LIST;
    return ROAD_OK;
}

road_status road_config_set_target_list(road_config *c, const char *const *names, int32_t n) {
    if (n < 0) return road__error(ROAD_ERR_INVALID_ARG, "target_modules: negative count %d", n);
    strlist l = {NULL, 0};
    road_status s = list_make("target_modules", names, n, &l);
    return adopt_target_list(c, l, s);
}

/* One string: "all-linear" in any ASCII case (as PEFT's .lower() test), else a regex. The
 * string is kept as written so it is written back unchanged. */
static road_status set_target_string(road_config *c, const char *str) {
    bool all_linear = ascii_ieq(str, "all-linear");
    if (!all_linear) {
        road_status s = check_regex(str);
        if (s != ROAD_OK) return s;
    }
    strlist l = {NULL, 0};
    road_status s = list_make("target_modules", &str, 1, &l);
    if (s != ROAD_OK) return s;
    list_free(&c->targets);
    c->targets = l;
    c->target_kind = all_linear ? ROAD_TARGET_ALL_LINEAR : ROAD_TARGET_REGEX;
    return ROAD_OK;
}

road_status road_config_set_target_regex(road_config *c, const char *regex) {
    if (!regex) return road__error(ROAD_ERR_INVALID_ARG, "target_modules regex is NULL");
    return set_target_string(c, regex);
}

road_status road_config_set_target_all_linear(road_config *c) {
    /* Fails only for memory; on failure the targets stay as they were. */
    return set_target_string(c, "all-linear");
}

void road_config_set_target_default(road_config *c) {
    list_free(&c->targets);
    c->targets.n = 0;
    c->target_kind = ROAD_TARGET_DEFAULT;
}

road_status road_config_set_modules_to_save(road_config *c, const char *const *names, int32_t n) {
    strlist l = {NULL, -1};
    if (n >= 0 && names) {
        road_status s = list_make("modules_to_save", names, n, &l);
        if (s != ROAD_OK) return s;
    }
    list_free(&c->modules_to_save);
    c->modules_to_save = l;
    return ROAD_OK;
}

road_status road_config_set_task_type(road_config *c, const char *task_type) {
    return set_text(&c->task_type, "task_type", task_type);
}
road_status road_config_set_base_model(road_config *c, const char *name_or_path) {
    return set_text(&c->base_model, "base_model_name_or_path", name_or_path);
}
road_status road_config_set_revision(road_config *c, const char *revision) {
    return set_text(&c->revision, "revision", revision);
}
void road_config_set_inference_mode(road_config *c, bool inference_mode) {
    c->inference_mode = inference_mode;
}
road_status road_config_set_peft_version(road_config *c, const char *version) {
    return set_text(&c->peft_version, "peft_version", version);
}

static bool is_list_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-' || ch == ',' || ch == ' ' || ch == '\t';
}

road_status road_config_set_targets_from_string(road_config *c, const char *spec) {
    if (!spec) return road__error(ROAD_ERR_INVALID_ARG, "target_modules spec is NULL");
    const char *p = spec;
    while (*p == ' ' || *p == '\t') p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    if (n == 0)
        return road__error(ROAD_ERR_CONFIG, "target_modules is empty; give \"all-linear\", "
                                            "names separated by commas (q_proj,v_proj) or a regex");
    bool list = true;
    for (size_t i = 0; i < n; i++) list = list && is_list_char(p[i]);
    if (n == 10 && ascii_ieq(p, "all-linear")) list = false;
    if (!list) {
        /* "all-linear" or a regex, taken as written (a regex may mean its spaces). */
        return set_target_string(c, spec);
    }
    /* Split "a, b ,c" into trimmed names; refuse "a,,b" and names with inner spaces. */
    char *buf = road__malloc(n + 1);
    if (!buf) return ROAD_ERR_NO_MEMORY;
    memcpy(buf, p, n);
    buf[n] = '\0';
    int32_t count = 1;
    for (size_t i = 0; i < n; i++) count += buf[i] == ',';
    const char **names = road__calloc((size_t)count, sizeof *names);
    if (!names) {
        road__free(buf);
        return ROAD_ERR_NO_MEMORY;
    }
    road_status s = ROAD_OK;
    char *item = buf;
    for (int32_t k = 0; k < count; k++) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        while (*item == ' ' || *item == '\t') item++;
        size_t len = strlen(item);
        while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t')) item[--len] = '\0';
        if (len == 0) {
            s = road__error(ROAD_ERR_CONFIG,
                            "target_modules \"%s\": name %d of %d is empty; "
                            "separate names with single commas",
                            spec, k + 1, count);
            break;
        }
        if (strpbrk(item, " \t")) {
            s = road__error(ROAD_ERR_CONFIG,
                            "target_modules \"%s\": module name \"%s\" contains "
                            "a space; separate names with commas",
                            spec, item);
            break;
        }
        names[k] = item;
        item = comma ? comma + 1 : item + len;
    }
    if (s == ROAD_OK) s = road_config_set_target_list(c, names, count);
    road__free(names);
    road__free(buf);
    return s;
}

/* ---- parse -------------------------------------------------------------------------------- */

static const char *const known_fields[] = {
    "auto_mapping", "base_model_name_or_path", "group_size", "inference_mode",
    "init_weights", "modules_to_save",         "peft_type",  "peft_version",
    "revision",     "target_modules",          "task_type",  "variant"};
#define N_KNOWN (sizeof known_fields / sizeof known_fields[0])

static bool is_known(const char *key) {
    for (size_t i = 0; i < N_KNOWN; i++) {
        if (strcmp(key, known_fields[i]) == 0) return true;
    }
    return false;
}

static road_status read_peft_type(const cJSON *root) {
    const cJSON *v = road__json_get(root, "peft_type");
    if (!v)
        return road__error(ROAD_ERR_CONFIG, "peft_type is missing; a RoAd adapter_config.json "
                                            "has \"peft_type\": \"ROAD\"");
    if (!cJSON_IsString(v)) return describe_error(ROAD_ERR_CONFIG, "peft_type", "\"ROAD\"", v);
    if (strcmp(v->valuestring, "ROAD") == 0) return ROAD_OK;
    const char *t = v->valuestring;
    bool plain = t[0] != '\0' && strlen(t) <= 32;
    for (const char *q = t; *q && plain; q++) plain = (*q >= 'A' && *q <= 'Z') || *q == '_';
    if (plain)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "this adapter is a %s adapter (peft_type \"%s\"); "
                           "road reads RoAd adapters only (peft_type \"ROAD\")",
                           t, t);
    return describe_error(ROAD_ERR_UNSUPPORTED, "peft_type",
                          "\"ROAD\" (road reads RoAd "
                          "adapters only)",
                          v);
}

static road_status read_string_list(const cJSON *v, const char *field, strlist *out) {
    int32_t n = 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            char name[64];
            snprintf(name, sizeof name, "%s[%d]", field, n);
            return describe_error(ROAD_ERR_CONFIG, name, "a module name (a string)", e);
        }
        if (n == INT32_MAX) return road__error(ROAD_ERR_CONFIG, "%s has too many entries", field);
        n++;
    }
    const char **names = n > 0 ? road__calloc((size_t)n, sizeof *names) : NULL;
    if (n > 0 && !names) return ROAD_ERR_NO_MEMORY;
    int32_t i = 0;
    for (const cJSON *e = v->child; e; e = e->next) names[i++] = e->valuestring;
    road_status s = list_make(field, names, n, out);
    road__free(names);
    return s;
}

static road_status read_targets(road_config *c, const cJSON *root) {
    const cJSON *v = road__json_get(root, "target_modules");
    if (!v || cJSON_IsNull(v)) {
        road_config_set_target_default(c);
        return ROAD_OK;
    }
    if (cJSON_IsString(v)) return set_target_string(c, v->valuestring);
    if (!cJSON_IsArray(v))
        return describe_error(ROAD_ERR_CONFIG, "target_modules",
                              "a list of module names, a regex string, \"all-linear\" or null", v);
    strlist l = {NULL, 0};
    road_status s = read_string_list(v, "target_modules", &l);
    return adopt_target_list(c, l, s);
}

static road_status read_modules_to_save(road_config *c, const cJSON *root) {
    const cJSON *v = road__json_get(root, "modules_to_save");
    if (!v || cJSON_IsNull(v)) return ROAD_OK; /* already null */
    if (!cJSON_IsArray(v)) {
        if (cJSON_IsString(v)) {
            char q[DESCRIBE_MAX];
            road__json_quote(v->valuestring, q, sizeof q);
            return road__error(ROAD_ERR_CONFIG,
                               "modules_to_save must be a list of module names "
                               "or null, got the string %s; write it as [%s]",
                               q, q);
        }
        return describe_error(ROAD_ERR_CONFIG, "modules_to_save", "a list of module names or null",
                              v);
    }
    strlist l = {NULL, 0};
    road_status s = read_string_list(v, "modules_to_save", &l);
    if (s != ROAD_OK) return s;
    list_free(&c->modules_to_save);
    c->modules_to_save = l;
    return ROAD_OK;
}

/* A string-or-null field; absent is null. */
static road_status read_text(const cJSON *root, const char *field, char **slot) {
    if (!road__json_get(root, field)) return ROAD_OK;
    const char *s = NULL;
    road_status st = road__json_get_string(root, field, true, &s);
    if (st != ROAD_OK) return st;
    return set_text(slot, field, s);
}

/* A boolean field; absent keeps the default. */
static road_status read_bool(const cJSON *root, const char *field, bool *out) {
    if (!road__json_get(root, field)) return ROAD_OK;
    return road__json_get_bool(root, field, out);
}

static road_status read_fields(road_config *c, cJSON *root) {
    road_status s = read_peft_type(root);
    if (s != ROAD_OK) return s;

    const cJSON *v = road__json_get(root, "variant");
    if (v) {
        if (!cJSON_IsString(v))
            return describe_error(ROAD_ERR_CONFIG, "variant",
                                  "a string (\"road_1\", \"road_2\" or \"road_4\")", v);
        if (!variant_from_name(v->valuestring, &c->variant)) {
            char q[DESCRIBE_MAX];
            road__json_quote(v->valuestring, q, sizeof q);
            return road__error(ROAD_ERR_CONFIG,
                               "variant must be \"road_1\", \"road_2\" or "
                               "\"road_4\", got %s",
                               q);
        }
    }
    v = road__json_get(root, "group_size");
    if (v) {
        int64_t g;
        if ((s = road__json_get_i64(root, "group_size", &g)) != ROAD_OK) {
            /* An integer past int64: say what is allowed, not int64's range. */
            if (road__json_is_int(v))
                return describe_error(ROAD_ERR_CONFIG, "group_size",
                                      "a positive even number "
                                      "(elements are rotated in pairs) up to 2147483646",
                                      v);
            return s;
        }
        if ((s = road_config_set_group_size(c, g)) != ROAD_OK) return s;
    }
    if ((s = read_bool(root, "init_weights", &c->init_weights)) != ROAD_OK ||
        (s = read_targets(c, root)) != ROAD_OK || (s = read_modules_to_save(c, root)) != ROAD_OK ||
        (s = read_text(root, "task_type", &c->task_type)) != ROAD_OK ||
        (s = read_text(root, "base_model_name_or_path", &c->base_model)) != ROAD_OK ||
        (s = read_text(root, "revision", &c->revision)) != ROAD_OK ||
        (s = read_text(root, "peft_version", &c->peft_version)) != ROAD_OK ||
        (s = read_bool(root, "inference_mode", &c->inference_mode)) != ROAD_OK)
        return s;

    v = road__json_get(root, "auto_mapping");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v))
            return describe_error(ROAD_ERR_CONFIG, "auto_mapping", "an object or null", v);
        c->auto_mapping = cJSON_DetachItemViaPointer(root, (cJSON *)v);
    }

    /* Everything else is kept as it is, in file order (duplicates too: the printer lets the
     * last one win, as Python's dict did when PEFT read the file). */
    cJSON *next;
    for (cJSON *m = root->child; m; m = next) {
        next = m->next;
        if (is_known(m->string)) continue;
        if (!c->extra && !(c->extra = cJSON_CreateObject()))
            return road__error(ROAD_ERR_NO_MEMORY, "out of memory keeping unknown fields");
        cJSON_DetachItemViaPointer(root, m);
        if (!cJSON_AddItemToObject(c->extra, m->string, m)) {
            cJSON_Delete(m);
            return road__error(ROAD_ERR_NO_MEMORY, "out of memory keeping unknown fields");
        }
    }
    return ROAD_OK;
}

road_status road_config_parse(const char *json, size_t len, road_config **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_config_parse: out is NULL");
    *out = NULL;
    if (!json && len > 0)
        return road__error(ROAD_ERR_INVALID_ARG, "road_config_parse: json is NULL");
    cJSON *root;
    road_status s = road_json_parse(json ? json : "", len, &root);
    if (s != ROAD_OK) return s;
    if (!cJSON_IsObject(root)) {
        s = describe_error(ROAD_ERR_CONFIG, "adapter_config.json", "a JSON object ({...})", root);
        cJSON_Delete(root);
        return s;
    }
    road_config *c;
    s = road_config_create(&c);
    if (s == ROAD_OK) s = read_fields(c, root);
    cJSON_Delete(root);
    if (s != ROAD_OK) {
        road_config_free(c);
        return s;
    }
    *out = c;
    return ROAD_OK;
}

road_status road_config_load(const char *path, road_config **out) {
    if (!path || !out) return road__error(ROAD_ERR_INVALID_ARG, "road_config_load: NULL argument");
    *out = NULL;
    char *file = NULL;
    if (road__is_dir(path)) {
        file = road__path_join(path, CONFIG_FILE_NAME);
        if (!file) return ROAD_ERR_NO_MEMORY;
        struct stat st;
        if (stat(file, &st) != 0 && errno == ENOENT) {
            road__free(file);
            return road__error(ROAD_ERR_NOT_FOUND,
                               "'%s' has no %s; pass an adapter folder (the one "
                               "holding %s and adapter_model.safetensors) or the file itself",
                               path, CONFIG_FILE_NAME, CONFIG_FILE_NAME);
        }
    }
    const char *name = file ? file : path;
    char *data = NULL;
    size_t len = 0;
    road_status s = road__file_read(name, CONFIG_MAX_BYTES, &data, &len);
    if (s == ROAD_OK) {
        s = road_config_parse(data, len, out);
        if (s != ROAD_OK) road__error_prefix("%s", name);
    }
    road__free(data);
    road__free(file);
    return s;
}

/* ---- write -------------------------------------------------------------------------------- */

static cJSON *text_or_null(const char *s) {
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *list_json(const strlist *l) {
    if (l->n < 0) return cJSON_CreateNull();
    cJSON *a = cJSON_CreateArray();
    for (int32_t i = 0; a && i < l->n; i++) {
        cJSON *e = cJSON_CreateString(l->v[i]);
        if (!e || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

static cJSON *targets_json(const road_config *c) {
    switch (c->target_kind) {
    case ROAD_TARGET_LIST:
        return list_json(&c->targets);
    case ROAD_TARGET_REGEX:
    case ROAD_TARGET_ALL_LINEAR:
        return cJSON_CreateString(c->targets.v[0]);
    default:
        return cJSON_CreateNull();
    }
}

/* Adds item under key; on failure deletes it and returns false. */
static bool put(cJSON *obj, const char *key, cJSON *item) {
    if (item && cJSON_AddItemToObject(obj, key, item)) return true;
    cJSON_Delete(item);
    return false;
}

road_status road_config_to_json(const road_config *c, char **out) {
    if (!c || !out) return road__error(ROAD_ERR_INVALID_ARG, "road_config_to_json: NULL argument");
    *out = NULL;
    cJSON *root = c->extra ? cJSON_Duplicate(c->extra, 1) : cJSON_CreateObject();
    bool ok = root != NULL;
    ok = ok && put(root, "auto_mapping",
                   c->auto_mapping ? cJSON_Duplicate(c->auto_mapping, 1) : cJSON_CreateNull());
    ok = ok && put(root, "base_model_name_or_path", text_or_null(c->base_model));
    ok = ok && put(root, "group_size", cJSON_CreateNumber(c->group_size));
    ok = ok && put(root, "inference_mode", cJSON_CreateBool(c->inference_mode));
    ok = ok && put(root, "init_weights", cJSON_CreateBool(c->init_weights));
    ok = ok && put(root, "modules_to_save", list_json(&c->modules_to_save));
    ok = ok && put(root, "peft_type", cJSON_CreateString("ROAD"));
    ok = ok && put(root, "peft_version", text_or_null(c->peft_version));
    ok = ok && put(root, "revision", text_or_null(c->revision));
    ok = ok && put(root, "target_modules", targets_json(c));
    ok = ok && put(root, "task_type", text_or_null(c->task_type));
    ok = ok && put(root, "variant", cJSON_CreateString(variant_to_name(c->variant)));
    road_status s = ok ? road__json_dump(root, out, NULL)
                       : road__error(ROAD_ERR_NO_MEMORY, "out of memory writing the config");
    cJSON_Delete(root);
    return s;
}

road_status road_config_save(const road_config *c, const char *dir) {
    if (!c || !dir) return road__error(ROAD_ERR_INVALID_ARG, "road_config_save: NULL argument");
    if (!road__is_dir(dir))
        return road__error(ROAD_ERR_NOT_FOUND, "cannot save the config: folder '%s' does not exist",
                           dir);
    char *json = NULL;
    road_status s = road_config_to_json(c, &json);
    if (s != ROAD_OK) return s;
    char *file = road__path_join(dir, CONFIG_FILE_NAME);
    s = file ? road__file_write_atomic(file, json, strlen(json)) : ROAD_ERR_NO_MEMORY;
    road__free(file);
    road__free(json);
    return s;
}
