/*
 * train/train_internal.h - what optim.c and checkpoint.c share (private to train/): the
 * optimizer's layout, PEFT's key pieces, and conversions between core/rng.h's generator and
 * the public road_rng_state (so the trainer can save and restore its generator exactly).
 */
#ifndef ROAD_TRAIN_INTERNAL_H
#define ROAD_TRAIN_INTERNAL_H

#include "core/rng.h"
#include "road/train.h"

/* PEFT's state-dict key pieces (peft/utils/save_and_load.py): the optimizer's keys keep the
 * adapter name at the end, as PEFT's in-memory state dict does. */
#define ROAD_TRAIN_KEY_PREFIX "base_model.model."
#define ROAD_TRAIN_THETA_SUFFIX ".road_theta"
#define ROAD_TRAIN_ALPHA_SUFFIX ".road_alpha"

#define ROAD_TRAIN_WEIGHT_SUFFIX ".weight"
#define ROAD_TRAIN_BIAS_SUFFIX ".bias"

/* One parameter tensor: theta or alpha of one adapter on one layer, the weight or bias of
 * one adapter's modules_to_save copy of a layer, or (full fine-tuning) a model tensor; its m and v live at `off` in the state block
 * (m: state[off..], v: state[numel + off..]). */
typedef struct otensor {
    int32_t adapter; /* index into names */
    int32_t layer;
    road_optim_kind kind;
    int64_t rows; /* a copy's weight: out (the tensor is [rows x n/rows]); else 0 */
    int64_t n;
    int64_t off;
} otensor;

/* The saved-key suffix of a tensor kind (".road_theta", ".road_alpha", ".weight", ".bias"). */
static inline const char *road_optim_suffix(road_optim_kind k) {
    switch (k) {
    case ROAD_OPTIM_THETA: return ROAD_TRAIN_THETA_SUFFIX;
    case ROAD_OPTIM_ALPHA: return ROAD_TRAIN_ALPHA_SUFFIX;
    case ROAD_OPTIM_COPY_WEIGHT: return ROAD_TRAIN_WEIGHT_SUFFIX;
    case ROAD_OPTIM_COPY_BIAS: return ROAD_TRAIN_BIAS_SUFFIX;
    case ROAD_OPTIM_MODEL: return "";
    }
    return "";
}

struct road_optimizer {
    road_adapter_set *set; /* borrowed */
    road_model *model;     /* borrowed; non-NULL: full fine-tuning (every tensor ROAD_OPTIM_MODEL,
                              `layer` is the model tensor index) */
    road_adamw_params hp;
    int64_t step; /* updates done */
    char **names; /* [n_names] trainable adapters, owned */
    int32_t n_names;
    otensor *t; /* [n_t]: per adapter, per layer ascending, theta then alpha */
    int32_t n_t;
    int64_t numel; /* sum of t[].n */
    float *state;  /* [2 * numel]: m for every tensor, then v */
};

/* The run's identity (train/run.c): p->run_json's object plus road_train's settings that
 * change the result, as JSON text (road__malloc'd). */
road_status road__train_identity(const road_train_params *p, char **out);
/* out/trainer_state.json: the run finished at `step`, with this identity. */
road_status road__train_mark_finished(const char *out, const char *identity, int64_t step);

/* The live pointers of tensor i, checked against the layout (errors name adapter and layer). */
road_status road__optim_fetch(road_optimizer *o, int32_t i, road_optim_tensor *out);

static inline road_rng_state road_rng_state_get(const road_rng *r) {
    road_rng_state s;
    for (int i = 0; i < 4; i++) s.s[i] = r->s[i];
    s.spare = r->spare;
    s.has_spare = r->has_spare;
    return s;
}

static inline void road_rng_state_set(road_rng *r, const road_rng_state *s) {
    for (int i = 0; i < 4; i++) r->s[i] = s->s[i];
    r->spare = s->spare;
    r->has_spare = s->has_spare;
}

#endif
