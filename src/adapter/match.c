/*
 * adapter/match.c - target selection exactly as PEFT does it.
 *
 * PEFT (BaseTuner._check_target_module_exists) checks, for each module name:
 *   - target_modules a string: re.fullmatch(target_modules, name);
 *   - a list: name == entry or name.endswith("." + entry);
 *   - "all-linear": every nn.Linear except the output embedding (lm_head);
 *   - null: the model type's entry of its target-module mapping (RoAd uses LoRA's).
 * Python's re.fullmatch is PCRE2 with the match anchored at both ends; PCRE2_UCP gives \d, \w
 * and friends Python 3's Unicode meaning.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#include "adapter/match.h"
#include "core/alloc.h"
#include "core/error.h"

/* How many layer names an error message lists as examples. */
#define MATCH_EXAMPLES 4

bool road__match_list_entry(const char *name, const char *entry) {
    size_t n = strlen(name), e = strlen(entry);
    if (n == e) return strcmp(name, entry) == 0;
    return n > e && name[n - e - 1] == '.' && strcmp(name + n - e, entry) == 0;
}

/* PEFT's TRANSFORMERS_MODELS_TO_ROAD_TARGET_MODULES_MAPPING for the families road runs and
 * their close relatives (the mapping is LoRA's; it has no entry for olmo2, so an olmo2 config
 * must name its targets, as in PEFT). */
static const char *const q_v[] = {"q_proj", "v_proj", NULL};
static const char *const phi3[] = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", NULL};
static const struct {
    const char *type;
    const char *const *targets;
} default_targets[] = {
    {"llama", q_v},  {"llama4", q_v}, {"mistral", q_v}, {"mixtral", q_v}, {"qwen2", q_v},
    {"qwen3", q_v},  {"gemma", q_v},  {"gemma2", q_v},  {"gemma3_text", q_v},
    {"stablelm", q_v}, {"phi3", phi3},
};

const char *const *road__default_targets(const char *model_type) {
    if (!model_type) return NULL;
    for (size_t i = 0; i < sizeof default_targets / sizeof default_targets[0]; i++)
        if (strcmp(default_targets[i].type, model_type) == 0) return default_targets[i].targets;
    return NULL;
}

/* "q_proj, v_proj" or the regex, for messages. */
static void describe_targets(const road_config *cfg, const char *const *list, char *buf,
                             size_t cap) {
    size_t k = 0;
    buf[0] = '\0';
    if (road_config_target_kind(cfg) == ROAD_TARGET_REGEX) {
        snprintf(buf, cap, "regex '%s'", road_config_target(cfg, 0));
        return;
    }
    for (int32_t i = 0; list[i] && k + 8 < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s'%s'", i ? ", " : "[", list[i]);
    if (k + 2 < cap) snprintf(buf + k, cap - k, "%s", k ? "]" : "[]");
}

static void describe_layers(const road_match_layer *layers, int32_t n, char *buf, size_t cap) {
    size_t k = 0;
    int shown = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < n && shown < MATCH_EXAMPLES && k + 8 < cap; i++) {
        if (!layers[i].is_linear) continue;
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", shown ? ", " : "", layers[i].name);
        shown++;
    }
    if (k + 2 < cap) snprintf(buf + k, cap - k, " (%d layers in all)", (int)n);
}

static road_status match_regex(const char *pattern, const road_match_layer *layers, int32_t n,
                               bool *matched) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return road__error(ROAD_ERR_CONFIG,
                           "target_modules regex '%s' does not compile: %s at offset %zu", pattern,
                           (const char *)msg, (size_t)off);
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) {
        pcre2_code_free(re);
        return road__error(ROAD_ERR_NO_MEMORY, "out of memory matching target_modules");
    }
    road_status s = ROAD_OK;
    for (int32_t i = 0; i < n; i++) {
        int rc = pcre2_match(re, (PCRE2_SPTR)layers[i].name, PCRE2_ZERO_TERMINATED, 0,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED, md, NULL);
        if (rc >= 0) {
            matched[i] = true;
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            s = road__error(ROAD_ERR_CONFIG, "target_modules regex '%s' failed on '%s': %s",
                            pattern, layers[i].name, (const char *)msg);
            break;
        }
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return s;
}

road_status road__match_targets(const road_config *cfg, const char *model_type,
                                const road_match_layer *layers, int32_t n, bool *matched) {
    for (int32_t i = 0; i < n; i++) matched[i] = false;
    road_target_kind kind = road_config_target_kind(cfg);
    const char *const *list = NULL;
    const char *tmp[2] = {NULL, NULL};
    const char **owned = NULL;
    road_status s = ROAD_OK;
    switch (kind) {
    case ROAD_TARGET_DEFAULT:
        list = road__default_targets(model_type);
        if (!list)
            return road__error(ROAD_ERR_CONFIG,
                               "target_modules is not set and road has no default targets for "
                               "model type '%s'; set target_modules (for example \"all-linear\" "
                               "or a list such as q_proj,v_proj)",
                               model_type ? model_type : "(unknown)");
        break;
    case ROAD_TARGET_ALL_LINEAR:
        for (int32_t i = 0; i < n; i++)
            matched[i] = layers[i].is_linear && !layers[i].is_output_head;
        tmp[0] = "all-linear";
        list = tmp;
        break;
    case ROAD_TARGET_REGEX:
        s = match_regex(road_config_target(cfg, 0), layers, n, matched);
        if (s != ROAD_OK) return s;
        break;
    case ROAD_TARGET_LIST: {
        int32_t k = road_config_target_count(cfg);
        owned = road__malloc(sizeof(char *) * (size_t)(k + 1));
        if (!owned) return ROAD_ERR_NO_MEMORY;
        for (int32_t j = 0; j < k; j++) owned[j] = road_config_target(cfg, j);
        owned[k] = NULL;
        list = owned;
        break;
    }
    }
    if (kind == ROAD_TARGET_DEFAULT || kind == ROAD_TARGET_LIST) {
        for (int32_t i = 0; i < n; i++)
            for (int32_t j = 0; list[j] && !matched[i]; j++)
                matched[i] = road__match_list_entry(layers[i].name, list[j]);
    }
    char tdesc[512], ldesc[512];
    describe_targets(cfg, list ? list : tmp, tdesc, sizeof tdesc);
    int32_t count = 0;
    for (int32_t i = 0; i < n && s == ROAD_OK; i++) {
        if (!matched[i]) continue;
        if (!layers[i].is_linear) {
            s = road__error(
                ROAD_ERR_CONFIG,
                "target_modules %s selects '%s', which is not a linear layer; RoAd "
                "adapts linear layers only (put it in modules_to_save to train it fully)",
                tdesc, layers[i].name);
            break;
        }
        s = road_check_shape(road_config_variant(cfg), road_config_group_size(cfg),
                             layers[i].out_features, layers[i].name);
        count++;
    }
    if (s == ROAD_OK && count == 0) {
        describe_layers(layers, n, ldesc, sizeof ldesc);
        s = road__error(ROAD_ERR_NOT_FOUND,
                        "target_modules %s matched no layer of the model; its linear layers "
                        "include %s",
                        tdesc, ldesc);
    }
    road__free(owned);
    return s;
}

bool road__match_modules_to_save(const road_config *cfg, const char *name) {
    int32_t k = road_config_modules_to_save_count(cfg);
    for (int32_t j = 0; j < k; j++)
        if (road__match_list_entry(name, road_config_module_to_save(cfg, j))) return true;
    return false;
}
