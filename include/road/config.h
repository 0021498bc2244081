/*
 * road/config.h - RoAd adapter configuration (PEFT's RoadConfig) and adapter_config.json.
 *
 * A road_config holds the fields of PEFT's RoadConfig that matter to road (variant,
 * group_size, init_weights, target_modules, modules_to_save) plus the bookkeeping fields PEFT
 * writes (peft_type, task_type, base_model_name_or_path, revision, inference_mode,
 * auto_mapping, peft_version). Fields road does not know are kept and written back unchanged.
 * Written JSON is byte-for-byte what PEFT's save_pretrained writes for the same values: keys
 * sorted, 2-space indentation, non-ASCII escaped as \uXXXX, no trailing newline.
 */
#ifndef ROAD_CONFIG_H
#define ROAD_CONFIG_H

#include "road/linear.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How target_modules selects layers. */
typedef enum road_target_kind {
    ROAD_TARGET_DEFAULT = 0, /* null: the model type's default targets */
    ROAD_TARGET_LIST = 1,    /* list of names: exact name or suffix after "." */
    ROAD_TARGET_REGEX = 2,   /* one string: a regex matched against the whole name */
    ROAD_TARGET_ALL_LINEAR = 3 /* "all-linear": every linear layer but the output head */
} road_target_kind;

/* Threads: one thread at a time while it is changed (the setters); reading it (the getters,
 * road_adapter_set_add, which keeps its own copy) from any number of threads at once. */
typedef struct road_config road_config;

/* A config with PEFT's defaults: road_1, group_size 64, init_weights true, target_modules and
 * modules_to_save null, peft_type "ROAD", task_type null, inference_mode false. */
ROAD_API road_status road_config_create(road_config **out);
ROAD_API void road_config_free(road_config *c);
ROAD_API road_status road_config_clone(const road_config *c, road_config **out);

/* Parse adapter_config.json text. Every field's type and value is checked; the error names the
 * field, what was found and what is allowed. */
ROAD_API road_status road_config_parse(const char *json, size_t len, road_config **out);
/* Load `path`: a file, or a folder holding adapter_config.json. */
ROAD_API road_status road_config_load(const char *path, road_config **out);
/* Serialize exactly as PEFT does. *out is allocated; free it with road_string_free. */
ROAD_API road_status road_config_to_json(const road_config *c, char **out);
/* Write `dir`/adapter_config.json atomically (the folder must exist). */
ROAD_API road_status road_config_save(const road_config *c, const char *dir);
ROAD_API void road_string_free(char *s);

ROAD_API road_variant road_config_variant(const road_config *c);
ROAD_API int32_t road_config_group_size(const road_config *c);
ROAD_API bool road_config_init_weights(const road_config *c);
ROAD_API road_target_kind road_config_target_kind(const road_config *c);
/* LIST: the number of names; REGEX / ALL_LINEAR: 1 (the string); DEFAULT: 0. */
ROAD_API int32_t road_config_target_count(const road_config *c);
ROAD_API const char *road_config_target(const road_config *c, int32_t i);
/* -1 when modules_to_save is null. */
ROAD_API int32_t road_config_modules_to_save_count(const road_config *c);
ROAD_API const char *road_config_module_to_save(const road_config *c, int32_t i);
/* NULL when the field is null. */
ROAD_API const char *road_config_task_type(const road_config *c);
ROAD_API const char *road_config_base_model(const road_config *c);
ROAD_API const char *road_config_revision(const road_config *c);
ROAD_API bool road_config_inference_mode(const road_config *c);
ROAD_API const char *road_config_peft_version(const road_config *c);

ROAD_API road_status road_config_set_variant(road_config *c, road_variant v);
/* Positive and even, as PEFT requires. */
ROAD_API road_status road_config_set_group_size(road_config *c, int64_t group_size);
ROAD_API void road_config_set_init_weights(road_config *c, bool init_weights);
ROAD_API road_status road_config_set_target_list(road_config *c, const char *const *names,
                                                 int32_t n);
/* The regex must compile (Python `re` syntax as PCRE2 accepts it). */
ROAD_API road_status road_config_set_target_regex(road_config *c, const char *regex);
ROAD_API road_status road_config_set_target_all_linear(road_config *c);
ROAD_API void road_config_set_target_default(road_config *c);
/* n < 0 (or names == NULL): null. */
ROAD_API road_status road_config_set_modules_to_save(road_config *c, const char *const *names,
                                                     int32_t n);
/* NULL writes JSON null. */
ROAD_API road_status road_config_set_task_type(road_config *c, const char *task_type);
ROAD_API road_status road_config_set_base_model(road_config *c, const char *name_or_path);
ROAD_API road_status road_config_set_revision(road_config *c, const char *revision);
ROAD_API void road_config_set_inference_mode(road_config *c, bool inference_mode);
ROAD_API road_status road_config_set_peft_version(road_config *c, const char *version);

/* Parse a target_modules value as the CLI takes it: "all-linear"; a comma-separated list of
 * names made of letters, digits, '_', '-' and '.' ("q_proj,v_proj", "self_attn.q_proj"); or
 * else a regex matched against the whole module name (".*\\.(q|v)_proj"). */
ROAD_API road_status road_config_set_targets_from_string(road_config *c, const char *spec);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_CONFIG_H */
