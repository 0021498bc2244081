/*
 * adapter/match.h - PEFT's rules for which layers an adapter targets (private).
 */
#ifndef ROAD_ADAPTER_MATCH_H
#define ROAD_ADAPTER_MATCH_H

#include "road/config.h"

/* One layer as the matcher sees it. */
typedef struct road_match_layer {
    const char *name;
    bool is_linear;
    bool is_output_head;
    int64_t out_features;
} road_match_layer;

/* PEFT's list rule: name equals entry, or ends with "." + entry. */
bool road__match_list_entry(const char *name, const char *entry);

/* PEFT's default target_modules for a model type (its RoAd mapping, the same as LoRA's), as a
 * NULL-terminated list; NULL for an unknown or NULL type. */
const char *const *road__default_targets(const char *model_type);

/* Select layers for cfg: matched[i] is set for each selected layer. Errors (message names the
 * targets and some layer names): nothing matched; a non-linear layer selected by name; a
 * selected layer that group_size does not divide; a regex that does not compile; no default
 * targets for model_type. */
road_status road__match_targets(const road_config *cfg, const char *model_type,
                                const road_match_layer *layers, int32_t n, bool *matched);

/* modules_to_save rule (the list rule over every layer, linear or not). */
bool road__match_modules_to_save(const road_config *cfg, const char *name);

#endif
