/*
 * train/optim.c - AdamW (torch.optim.AdamW's update) on plain arrays and over the trainable
 * parameters of an adapter set, plus gradient scaling and global-norm clipping.
 *
 * Why this shape: RoAd parameters live inside each road_linear (theta, alpha and their
 * gradient buffers) and modules_to_save copies inside the adapter set, so the optimizer does
 * not own parameters; it holds a list of (adapter, layer, theta|alpha|weight|bias) tensors and one block of float32 state (m then v for every
 * tensor, in list order), sized once at create. Layer pointers are looked up again at every
 * step rather than cached, so an adapter deleted or re-added since create is an error and not
 * a write through a stale pointer; every tensor is checked before any is updated.
 *
 * Numerics: per element everything is float32, in the order of PyTorch's single-tensor AdamW
 * (decay, moments, then p += -step_size * m / (sqrt(v) / sqrt(bc2) + eps)). The scalars of a
 * step (1 - lr*wd, bias corrections, step_size) are double, as Python computes them, rounded
 * to float once. The clipping norm is summed in double (documented in road/train.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "road/train.h"
#include "train/train_internal.h"

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing (avoids 0/0). */
#define CLIP_NORM_EPS 1e-6

road_adamw_params road_adamw_default_params(void) {
    road_adamw_params p = {
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
    return p;
}

road_status road_adamw_params_check(const road_adamw_params *p) {
    if (!p) return road__error(ROAD_ERR_INVALID_ARG, "AdamW: NULL parameters");
    /* Written as !(ok) so that NaN fails too. */
    if (!(p->lr >= 0.0) || isinf(p->lr))
        return road__error(ROAD_ERR_CONFIG, "AdamW: learning rate %g must be finite and >= 0",
                           p->lr);
    if (!(p->eps >= 0.0) || isinf(p->eps))
        return road__error(ROAD_ERR_CONFIG, "AdamW: eps %g must be finite and >= 0", p->eps);
    if (!(p->beta1 >= 0.0 && p->beta1 < 1.0))
        return road__error(ROAD_ERR_CONFIG, "AdamW: beta1 %g must be in [0, 1)", p->beta1);
    if (!(p->beta2 >= 0.0 && p->beta2 < 1.0))
        return road__error(ROAD_ERR_CONFIG, "AdamW: beta2 %g must be in [0, 1)", p->beta2);
    if (!(p->weight_decay >= 0.0) || isinf(p->weight_decay))
        return road__error(ROAD_ERR_CONFIG, "AdamW: weight_decay %g must be finite and >= 0",
                           p->weight_decay);
    return ROAD_OK;
}

road_status road_adamw_update(const road_adamw_params *hp, double lr, int64_t t, int64_t n,
                              float *param, const float *grad, float *m, float *v) {
    road_status s = road_adamw_params_check(hp);
    if (s != ROAD_OK) return s;
    if (!(lr >= 0.0) || isinf(lr))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "AdamW: step learning rate %g must be finite and >= 0", lr);
    if (t < 1)
        return road__error(ROAD_ERR_INVALID_ARG, "AdamW: step %lld must be >= 1", (long long)t);
    if (n < 0) return road__error(ROAD_ERR_INVALID_ARG, "AdamW: negative size %lld", (long long)n);
    if (n > 0 && (!param || !grad || !m || !v))
        return road__error(ROAD_ERR_INVALID_ARG, "AdamW: NULL array");
    /* Per-step scalars in double (Python floats in PyTorch), rounded once. */
    const double bc1 = 1.0 - pow(hp->beta1, (double)t);
    const double bc2 = 1.0 - pow(hp->beta2, (double)t);
    const float decay = (float)(1.0 - lr * hp->weight_decay);
    const float b1 = (float)hp->beta1, one_b1 = (float)(1.0 - hp->beta1);
    const float b2 = (float)hp->beta2, one_b2 = (float)(1.0 - hp->beta2);
    const float neg_step = (float)(-(lr / bc1));
    const float bc2_sqrt = (float)sqrt(bc2);
    const float eps = (float)hp->eps;
    for (int64_t i = 0; i < n; i++) {
        const float g = grad[i];
        const float p = param[i] * decay;
        const float mi = b1 * m[i] + one_b1 * g;
        const float vi = b2 * v[i] + (one_b2 * g) * g;
        const float denom = sqrtf(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + (neg_step * mi) / denom;
    }
    return ROAD_OK;
}

/* ---- the optimizer over an adapter set ---------------------------------------------------- */

static bool is_active(const road_adapter_set *set, const char *name) {
    for (int32_t i = 0; i < road_adapter_set_active_count(set); i++)
        if (strcmp(road_adapter_set_active_name(set, i), name) == 0) return true;
    return false;
}

void road_optimizer_free(road_optimizer *o) {
    if (!o) return;
    for (int32_t i = 0; i < o->n_names; i++) road__free(o->names[i]);
    road__free(o->names);
    road__free(o->t);
    road__free(o->state);
    road__free(o);
}

/* The AdamW state of o's `numel` parameters once their layout is set: m and v, zero, in one
 * allocation (at least one pair, so numel 0 allocates too). */
static road_status alloc_state(road_optimizer *o, int64_t numel) {
    o->numel = numel;
    size_t bytes;
    if (road__size_mul((size_t)(numel > 0 ? numel : 1), 2 * sizeof(float), &bytes) != 0)
        return ROAD_ERR_NO_MEMORY;
    o->state = road__calloc(1, bytes);
    return o->state ? ROAD_OK : ROAD_ERR_NO_MEMORY;
}

road_status road_optimizer_create(road_adapter_set *set, const char *const *names, int32_t n,
                                  const road_adamw_params *hp, road_optimizer **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_create: out is NULL");
    *out = NULL;
    if (!set) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_create: set is NULL");
    road_adamw_params def = road_adamw_default_params();
    if (!hp) hp = &def;
    road_status s = road_adamw_params_check(hp);
    if (s != ROAD_OK) return s;
    if (!names) n = road_adapter_set_active_count(set);
    if (n <= 0)
        return road__error(ROAD_ERR_STATE, "nothing to train: %s",
                           names ? "the adapter list is empty" : "the set has no active adapter");
    for (int32_t i = 0; names && i < n; i++) {
        if (!names[i])
            return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_create: name %d is NULL", i);
        if (!road_adapter_set_has(set, names[i]))
            return road__error(ROAD_ERR_NOT_FOUND,
                               "cannot train adapter '%s': the set has no such adapter", names[i]);
        if (!is_active(set, names[i]))
            return road__error(
                ROAD_ERR_STATE,
                "cannot train adapter '%s': it is not active (only active adapters get "
                "gradients; make it active with road_adapter_set_set_active)",
                names[i]);
        for (int32_t k = 0; k < i; k++)
            if (strcmp(names[k], names[i]) == 0)
                return road__error(ROAD_ERR_INVALID_ARG, "adapter '%s' is listed twice", names[i]);
    }
    road_optimizer *o = road__calloc(1, sizeof *o);
    if (!o) return ROAD_ERR_NO_MEMORY;
    o->set = set;
    o->hp = *hp;
    o->names = road__calloc((size_t)n, sizeof *o->names);
    if (!o->names) goto oom;
    o->n_names = n;
    for (int32_t i = 0; i < n; i++) {
        o->names[i] = road__strdup(names ? names[i] : road_adapter_set_active_name(set, i));
        if (!o->names[i]) goto oom;
    }
    /* Size first: count the tensors and their elements. */
    const int32_t n_layers = road_adapter_set_layer_count(set);
    int32_t n_t = 0;
    for (int32_t a = 0; a < n; a++) {
        for (int32_t l = 0; l < n_layers; l++)
            if (road_adapter_set_on_layer(set, o->names[a], l)) n_t += 2;
        n_t += 2 * road_adapter_set_copy_count(set, o->names[a]); /* weight (+ bias) */
    }
    o->t = road__calloc((size_t)(n_t > 0 ? n_t : 1), sizeof *o->t);
    if (!o->t) goto oom;
    int64_t off = 0;
    for (int32_t a = 0; a < n; a++) {
        for (int32_t l = 0; l < n_layers; l++) {
            if (!road_adapter_set_on_layer(set, o->names[a], l)) continue;
            int64_t np = 0;
            s = road_linear_adapter_info(road_adapter_set_layer(set, l), o->names[a], NULL, NULL,
                                         &np);
            if (s != ROAD_OK) goto fail;
            for (int k = 0; k < 2; k++) {
                otensor *t = &o->t[o->n_t++];
                t->adapter = a;
                t->layer = l;
                t->kind = k == 1 ? ROAD_OPTIM_ALPHA : ROAD_OPTIM_THETA;
                t->n = np;
                t->off = off;
                off += np;
            }
        }
    }
    /* modules_to_save copies, trained fully */
    for (int32_t a = 0; a < n; a++) {
        for (int32_t i = 0; i < road_adapter_set_copy_count(set, o->names[a]); i++) {
            road_module_copy mc;
            s = road_adapter_set_copy_at(set, o->names[a], i, &mc);
            if (s != ROAD_OK) goto fail;
            for (int k = 0; k < (mc.bias ? 2 : 1); k++) {
                otensor *t = &o->t[o->n_t++];
                t->adapter = a;
                t->layer = mc.layer;
                t->kind = k ? ROAD_OPTIM_COPY_BIAS : ROAD_OPTIM_COPY_WEIGHT;
                t->rows = k ? 0 : mc.out;
                t->n = k ? mc.out : mc.out * mc.in;
                t->off = off;
                off += t->n;
            }
        }
    }
    if ((s = alloc_state(o, off)) != ROAD_OK) goto fail;
    *out = o;
    return ROAD_OK;
oom:
    s = ROAD_ERR_NO_MEMORY;
fail:
    road_optimizer_free(o);
    return s;
}

road_status road_optimizer_create_full(road_model *m, const road_adamw_params *hp,
                                       road_optimizer **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_create_full: out is NULL");
    *out = NULL;
    if (!m) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_create_full: model is NULL");
    road_adamw_params def = road_adamw_default_params();
    if (!hp) hp = &def;
    road_status s = road_adamw_params_check(hp);
    if (s == ROAD_OK) s = road_model_set_full_training(m, true);
    if (s != ROAD_OK) return s;
    road_optimizer *o = road__calloc(1, sizeof *o);
    const int32_t n = road_model_tensor_count(m);
    if (!o) return ROAD_ERR_NO_MEMORY;
    o->set = road_model_adapters(m);
    o->model = m;
    o->hp = *hp;
    o->t = road__calloc((size_t)(n > 0 ? n : 1), sizeof *o->t);
    if (!o->t) goto oom;
    int64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        road_model_tensor mt;
        if ((s = road_model_tensor_get(m, i, &mt)) != ROAD_OK) goto fail;
        otensor *t = &o->t[o->n_t++];
        t->layer = i;
        t->kind = ROAD_OPTIM_MODEL;
        t->rows = mt.ndim == 2 ? mt.shape[0] : 0;
        t->n = mt.n;
        t->off = off;
        off += mt.n;
    }
    if ((s = alloc_state(o, off)) != ROAD_OK) goto fail;
    *out = o;
    return ROAD_OK;
oom:
    s = ROAD_ERR_NO_MEMORY;
fail:
    road_optimizer_free(o);
    return s;
}

/* Model tensor t of a full fine-tuning optimizer (checked against the layout). */
static road_status fetch_model(road_optimizer *o, const otensor *t, road_optim_tensor *out) {
    road_model_tensor mt;
    road_status s = road_model_tensor_get(o->model, t->layer, &mt);
    if (s == ROAD_OK && mt.n != t->n)
        s = road__error(ROAD_ERR_STATE,
                        "model tensor '%s' has %lld values, the optimizer was "
                        "built with %lld",
                        mt.name, (long long)mt.n, (long long)t->n);
    if (s == ROAD_OK && !mt.grad)
        s = road__error(ROAD_ERR_STATE, "full training was turned off since the optimizer was "
                                        "created (road_model_set_full_training)");
    if (s != ROAD_OK) return s;
    out->adapter = "";
    out->layer = t->layer;
    out->is_alpha = false;
    out->kind = ROAD_OPTIM_MODEL;
    out->ndim = mt.ndim;
    out->shape[0] = mt.shape[0];
    out->shape[1] = mt.shape[1];
    out->n = mt.n;
    out->param = mt.param;
    out->grad = mt.grad;
    out->m = o->state + t->off;
    out->v = o->state + o->numel + t->off;
    return ROAD_OK;
}

const road_adamw_params *road_optimizer_params(const road_optimizer *o) {
    return o ? &o->hp : NULL;
}
int64_t road_optimizer_step_count(const road_optimizer *o) {
    return o ? o->step : 0;
}
int32_t road_optimizer_adapter_count(const road_optimizer *o) {
    return o ? o->n_names : 0;
}
const char *road_optimizer_adapter_name(const road_optimizer *o, int32_t i) {
    return o && i >= 0 && i < o->n_names ? o->names[i] : NULL;
}
int32_t road_optimizer_tensor_count(const road_optimizer *o) {
    return o ? o->n_t : 0;
}
int64_t road_optimizer_numel(const road_optimizer *o) {
    return o ? o->numel : 0;
}

road_status road__optim_fetch(road_optimizer *o, int32_t i, road_optim_tensor *out) {
    const otensor *t = &o->t[i];
    if (t->kind == ROAD_OPTIM_MODEL) return fetch_model(o, t, out);
    const char *name = o->names[t->adapter];
    road_linear *l = road_adapter_set_layer(o->set, t->layer);
    float *pp[2] = {NULL, NULL}, *gg[2] = {NULL, NULL};
    int64_t np = -1, ng = -1;
    const bool copy = t->kind == ROAD_OPTIM_COPY_WEIGHT || t->kind == ROAD_OPTIM_COPY_BIAS;
    road_status s = ROAD_OK;
    if (copy) {
        road_module_copy mc;
        s = road_adapter_set_copy(o->set, name, t->layer, &mc);
        if (s == ROAD_OK) {
            const bool w = t->kind == ROAD_OPTIM_COPY_WEIGHT;
            pp[0] = w ? mc.weight : mc.bias;
            gg[0] = w ? mc.dweight : mc.dbias;
            np = ng = !pp[0] ? -1 : w ? mc.out * mc.in : mc.out;
            if (w && mc.out != t->rows) np = ng = -1;
        }
    } else {
        s = l ? road_linear_adapter_params(l, name, &pp[0], &pp[1], &np)
              : road__error(ROAD_ERR_STATE, "layer %d is not a linear layer", t->layer);
        if (s == ROAD_OK) s = road_linear_adapter_grads(l, name, &gg[0], &gg[1], &ng);
    }
    if (s == ROAD_OK && (np != t->n || ng != t->n))
        s = road__error(ROAD_ERR_STATE,
                        "has %lld parameters per tensor, the optimizer was built with %lld",
                        (long long)np, (long long)t->n);
    if (s != ROAD_OK) {
        road__error_prefix("optimizer: adapter '%s' on layer '%s' changed since the optimizer was "
                           "created (create a new optimizer)",
                           name, road_adapter_set_layer_name(o->set, t->layer));
        return s;
    }
    const int slot = t->kind == ROAD_OPTIM_ALPHA;
    out->adapter = name;
    out->layer = t->layer;
    out->is_alpha = t->kind == ROAD_OPTIM_ALPHA;
    out->kind = t->kind;
    out->ndim = t->rows > 0 ? 2 : 1;
    out->shape[0] = t->rows > 0 ? t->rows : t->n;
    out->shape[1] = t->rows > 0 ? t->n / t->rows : 1;
    out->n = t->n;
    out->param = pp[slot];
    out->grad = gg[slot];
    out->m = o->state + t->off;
    out->v = o->state + o->numel + t->off;
    return ROAD_OK;
}

road_status road_optimizer_tensor(road_optimizer *o, int32_t i, road_optim_tensor *out) {
    if (!o || !out)
        return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_tensor: NULL argument");
    if (i < 0 || i >= o->n_t)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor %d out of range (the optimizer has %d)", i,
                           o->n_t);
    return road__optim_fetch(o, i, out);
}

road_status road_optimizer_tensor_key(const road_optimizer *o, int32_t i, char *buf, size_t cap) {
    if (!o || !buf)
        return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_tensor_key: NULL argument");
    if (i < 0 || i >= o->n_t)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor %d out of range (the optimizer has %d)", i,
                           o->n_t);
    const otensor *t = &o->t[i];
    road_model_tensor mt;
    int k = t->kind == ROAD_OPTIM_MODEL
                ? (road_model_tensor_get(o->model, t->layer, &mt) == ROAD_OK
                       ? snprintf(buf, cap, "%s", mt.name)
                       : -1)
                : snprintf(
        buf, cap, "%s%s%s.%s", ROAD_TRAIN_KEY_PREFIX, road_adapter_set_layer_name(o->set, t->layer),
        road_optim_suffix(t->kind), o->names[t->adapter]);
    if (k < 0 || (size_t)k >= cap)
        return road__error(ROAD_ERR_INVALID_ARG, "tensor key of %d bytes does not fit in %zu", k,
                           cap);
    return ROAD_OK;
}

/* Fetch every tensor (checks them all before anything changes). */
static road_status fetch_all(road_optimizer *o, road_optim_tensor *ts) {
    for (int32_t i = 0; i < o->n_t; i++) {
        road_status s = road__optim_fetch(o, i, &ts[i]);
        if (s != ROAD_OK) return s;
    }
    return ROAD_OK;
}

/* Scratch array of all tensors (small: two per layer and adapter). */
static road_status with_tensors(road_optimizer *o, road_optim_tensor **ts) {
    *ts = road__calloc((size_t)(o->n_t > 0 ? o->n_t : 1), sizeof **ts);
    if (!*ts) return ROAD_ERR_NO_MEMORY;
    road_status s = fetch_all(o, *ts);
    if (s != ROAD_OK) {
        road__free(*ts);
        *ts = NULL;
    }
    return s;
}

road_status road_optimizer_step(road_optimizer *o, const road_schedule *sched, double *lr_used) {
    if (!o) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_step: NULL optimizer");
    if (sched) {
        road_status s = road_schedule_check(sched);
        if (s != ROAD_OK) return s;
    }
    if (road_adapter_set_merged(o->set))
        return road__error(ROAD_ERR_STATE, "cannot update adapters while they are merged into the "
                                           "weights (unmerge first)");
    road_optim_tensor *ts = NULL;
    road_status s = with_tensors(o, &ts);
    if (s != ROAD_OK) return s;
    const double lr = o->hp.lr * road_schedule_multiplier(sched, o->step);
    const int64_t t = o->step + 1;
    road_adamw_params no_decay = o->hp; /* full fine-tuning: biases and norms */
    no_decay.weight_decay = 0.0;
    for (int32_t i = 0; i < o->n_t && s == ROAD_OK; i++) {
        const bool decay = o->t[i].kind != ROAD_OPTIM_MODEL || ts[i].ndim == 2;
        s = road_adamw_update(decay ? &o->hp : &no_decay, lr, t, ts[i].n, ts[i].param,
                              ts[i].grad, ts[i].m, ts[i].v);
    }
    /* RoAd tensors come in (theta, alpha) pairs of one adapter and layer: one cache bump
     * each (copies are plain weights: nothing cached). */
    for (int32_t i = 0; i < o->n_t && s == ROAD_OK; i++)
        if (o->t[i].kind == ROAD_OPTIM_THETA)
            s = road_linear_params_changed(road_adapter_set_layer(o->set, o->t[i].layer),
                                           ts[i].adapter);
    road__free(ts);
    ROAD_ASSERT(s == ROAD_OK); /* everything was validated by fetch_all */
    o->step = t;
    if (lr_used) *lr_used = lr;
    return ROAD_OK;
}

road_status road_optimizer_zero_grad(road_optimizer *o) {
    if (!o) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_zero_grad: NULL optimizer");
    if (o->model) {
        road_model_zero_grads(o->model);
        return ROAD_OK;
    }
    for (int32_t i = 0; i < o->n_t; i++) {
        const otensor *t = &o->t[i];
        if (t->kind == ROAD_OPTIM_COPY_WEIGHT || t->kind == ROAD_OPTIM_COPY_BIAS) {
            road_module_copy mc;
            if (road_adapter_set_copy(o->set, o->names[t->adapter], t->layer, &mc) != ROAD_OK)
                continue; /* gone: step reports it */
            float *g = t->kind == ROAD_OPTIM_COPY_WEIGHT ? mc.dweight : mc.dbias;
            const int64_t n = t->kind == ROAD_OPTIM_COPY_WEIGHT ? mc.out * mc.in : mc.out;
            if (g) memset(g, 0, sizeof(float) * (size_t)n);
            continue;
        }
        road_linear *l = road_adapter_set_layer(o->set, t->layer);
        if (l) road_linear_zero_grads(l);
    }
    road_clear_error();
    return ROAD_OK;
}

road_status road_optimizer_scale_grads(road_optimizer *o, float factor) {
    if (!o) return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_scale_grads: NULL optimizer");
    if (!isfinite(factor))
        return road__error(ROAD_ERR_INVALID_ARG, "gradient scale %g is not finite", (double)factor);
    road_optim_tensor *ts = NULL;
    road_status s = with_tensors(o, &ts);
    if (s != ROAD_OK) return s;
    for (int32_t i = 0; i < o->n_t; i++)
        for (int64_t k = 0; k < ts[i].n; k++) ts[i].grad[k] *= factor;
    road__free(ts);
    return ROAD_OK;
}

road_status road_optimizer_clip_grad_norm(road_optimizer *o, double max_norm, double *total_norm) {
    if (!o)
        return road__error(ROAD_ERR_INVALID_ARG, "road_optimizer_clip_grad_norm: NULL optimizer");
    if (!(max_norm > 0.0))
        return road__error(ROAD_ERR_INVALID_ARG, "max_grad_norm %g must be > 0", max_norm);
    road_optim_tensor *ts = NULL;
    road_status s = with_tensors(o, &ts);
    if (s != ROAD_OK) return s;
    double sum = 0.0;
    for (int32_t i = 0; i < o->n_t; i++)
        for (int64_t k = 0; k < ts[i].n; k++) sum += (double)ts[i].grad[k] * (double)ts[i].grad[k];
    const double total = sqrt(sum);
    if (total_norm) *total_norm = total;
    if (!isfinite(total)) {
        road__free(ts);
        return road__error(ROAD_ERR_NUMERIC,
                           "the gradient norm is %g: a gradient holds NaN or Inf (gradients left "
                           "unchanged; skip this step or lower the learning rate)",
                           total);
    }
    const double coef = max_norm / (total + CLIP_NORM_EPS);
    if (coef < 1.0) {
        const float c = (float)coef;
        for (int32_t i = 0; i < o->n_t; i++)
            for (int64_t k = 0; k < ts[i].n; k++) ts[i].grad[k] *= c;
    }
    road__free(ts);
    return ROAD_OK;
}
