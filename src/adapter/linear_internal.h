/*
 * adapter/linear_internal.h - what the adapter manager needs from road_linear beyond the public
 * API (private to adapter/).
 */
#ifndef ROAD_ADAPTER_LINEAR_INTERNAL_H
#define ROAD_ADAPTER_LINEAR_INTERNAL_H

#include "road/linear.h"

/* Would road_linear_merge(l, names, n) be refused for numerical reasons? Checks every named
 * adapter present on the layer and not yet merged, changing nothing. */
road_status road__linear_check_merge(road_linear *l, const char *const *names, int32_t n);
/* Make room for `cap` active and `cap` merged names, so later changes to those lists (set
 * active, delete, merge bookkeeping) cannot fail for memory. */
road_status road__linear_reserve_names(road_linear *l, int32_t cap);
/* Unmerge the k most recently merged adapters (last merged first). */
road_status road__linear_unmerge_last(road_linear *l, int32_t k);
/* Forget every adapter (merged ones included: their rotation stays in W). */
void road__linear_drop_all(road_linear *l);
/* Point a float layer at another weight array of the same shape (the caller's; borrowed): the
 * manager gives a layer whose weight is shared with another (a tied LM head) its own copy
 * before merging into it. */
void road__linear_rebind_weight(road_linear *l, float *w);
/* Point a layer whose weight is packed (borrowed road_qtensor) at a float weight of the same
 * shape instead (borrowed): the adapter manager widens a 16-bit layer for full training. */
void road__linear_unpack_weight(road_linear *l, float *w);
/* Point a layer whose weight is packed (borrowed road_qtensor) at another packed weight of the
 * same shape and format (borrowed): the manager gives a tied LM head kept in 16 bits its own
 * copy of the embedding's array before merging into it. */
void road__linear_rebind_qweight(road_linear *l, road_qtensor *q);
/* Is `name` among this layer's merged adapters? */
bool road__linear_is_merged(const road_linear *l, const char *name);

#endif
