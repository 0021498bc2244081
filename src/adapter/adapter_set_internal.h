/*
 * adapter/adapter_set_internal.h - the adapter manager's state, shared by adapter_set.c (the
 * lifecycle) and adapter_mixed.c (mixed-batch plans and GEMMs) (private to adapter/).
 */
#ifndef ROAD_ADAPTER_SET_INTERNAL_H
#define ROAD_ADAPTER_SET_INTERNAL_H

#include "road/adapter_set.h"

/* Adapter names are at most 128 bytes (road_linear's limit) plus the NUL. */
#define ACTIVE_SLOT 129
/* Active lists longer than this are truncated when an adapter is deleted from them (a model
 * with more simultaneously active adapters than this is not a use anyone has). */
#define ACTIVE_KEEP_MAX 256

/* Names of missing adapters listed in a mixed-batch error before "...". */
#define PLAN_MAX_LISTED 16

typedef struct set_layer {
    char *name;
    road_layer_kind kind;
    int64_t in, out;
    float *w, *b;    /* w NULL when the base weight is packed (q) */
    road_qtensor *q; /* a packed base weight: quantized, or 16-bit as stored (a linear layer or
                        an embedding; a tied head shares its embedding's) */
    bool head;
    road_linear *lin;    /* NULL for embeddings */
    float *own_w;        /* the set's copy of a float weight that was shared with another layer (a
                            tied head), made before the first merge into it; else NULL */
    road_qtensor *own_q; /* the same for a shared packed weight (a tied head kept in 16 bits) */
    float *wide_w;       /* the set's float32 widening of a 16-bit q (road_adapter_set_widen_layer);
                            the layers that shared q share it */
} set_layer;

/* One modules_to_save copy: weight [out x in], bias [out] (when the layer has one), and
 * their gradients, carved from one allocation (block). */
typedef struct set_copy {
    int32_t layer;
    float *block;
    float *w, *b, *dw, *db;
} set_copy;

typedef struct set_adapter {
    char *name;
    road_config *cfg;
    set_copy *copies; /* [n_copies], ascending layer order */
    int32_t n_copies;
} set_adapter;

struct road_adapter_set {
    char *model_type;
    set_layer *layers;
    int32_t n_layers;
    int64_t base_params;
    set_adapter *ad;
    int32_t n_ad, cap_ad;
    /* The active list in fixed slots with reserved capacity (and pointers to them, for the
     * layer calls), so changing it never allocates: see road_adapter_set_add. */
    char (*act)[ACTIVE_SLOT];
    const char **active;
    int32_t n_active, cap_active;
    bool disabled;
    bool training;
};

struct road_batch_plan {
    const road_adapter_set *set; /* the set that planned it: plans do not travel */
    int64_t n_seq;
    int32_t n_layers;
    char **names; /* [n_seq], NULL for base */
};

/* Helpers of adapter_set.c used by adapter_mixed.c. */
road_status road__aset_linear_layer(road_adapter_set *s, int32_t layer, const char *fn);
int32_t road__aset_find_adapter(const road_adapter_set *s, const char *name);
set_copy *road__aset_find_copy(const set_adapter *a, int32_t layer);

#endif
