/*
 * train/schedule.c - learning-rate multipliers as transformers' get_scheduler computes them
 * (transformers/optimization.py: get_constant_schedule, get_constant_schedule_with_warmup,
 * get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup with num_cycles 0.5).
 *
 * The formulas are evaluated in double, in the same order as the Python lambdas, so the
 * learning rate handed to AdamW (base_lr * multiplier, a Python float in PyTorch's LambdaLR)
 * is the same double. The step is the scheduler's count: the Trainer steps the scheduler after
 * the optimizer, so the update that makes step count s + 1 uses multiplier(s).
 */
#include <math.h>
#include <string.h>

#include "core/error.h"
#include "road/train.h"

/* transformers' cosine schedule default: half a cosine wave from 1 down to 0. */
#define COSINE_NUM_CYCLES 0.5
/* Python's math.pi (M_PI is not part of strict C11). */
#define SCHEDULE_PI 3.141592653589793

static const char *const kind_names[] = {"constant", "constant_with_warmup", "linear", "cosine"};
#define N_KINDS ((int)(sizeof kind_names / sizeof kind_names[0]))

road_schedule road_schedule_default(void) {
    road_schedule s = {.kind = ROAD_SCHEDULE_CONSTANT, .warmup_steps = 0, .training_steps = 0};
    return s;
}

const char *road_schedule_name(road_schedule_kind k) {
    return (int)k >= 0 && (int)k < N_KINDS ? kind_names[k] : "?";
}

road_status road_schedule_parse(const char *name, road_schedule_kind *out) {
    for (int i = 0; name && i < N_KINDS; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (road_schedule_kind)i;
            return ROAD_OK;
        }
    }
    return road__error(ROAD_ERR_CONFIG,
                       "unknown learning-rate schedule '%s' (choose constant, "
                       "constant_with_warmup, linear or cosine)",
                       name ? name : "(null)");
}

road_status road_schedule_check(const road_schedule *s) {
    if (!s) return road__error(ROAD_ERR_INVALID_ARG, "schedule is NULL");
    if ((int)s->kind < 0 || (int)s->kind >= N_KINDS)
        return road__error(ROAD_ERR_CONFIG, "invalid schedule kind %d", (int)s->kind);
    if (s->warmup_steps < 0)
        return road__error(ROAD_ERR_CONFIG, "warmup steps %lld must be >= 0",
                           (long long)s->warmup_steps);
    if (s->training_steps < 0)
        return road__error(ROAD_ERR_CONFIG, "training steps %lld must be >= 0",
                           (long long)s->training_steps);
    return ROAD_OK;
}

static double max1(int64_t x) {
    return x > 1 ? (double)x : 1.0;
}

double road_schedule_multiplier(const road_schedule *sched, int64_t step) {
    if (!sched || sched->kind == ROAD_SCHEDULE_CONSTANT) return 1.0;
    const int64_t w = sched->warmup_steps, n = sched->training_steps;
    if (step < w) return (double)step / max1(w);
    switch (sched->kind) {
    case ROAD_SCHEDULE_CONSTANT_WITH_WARMUP:
        return 1.0;
    case ROAD_SCHEDULE_LINEAR:
        return fmax(0.0, (double)(n - step) / max1(n - w));
    case ROAD_SCHEDULE_COSINE: {
        const double progress = (double)(step - w) / max1(n - w);
        return fmax(0.0, 0.5 * (1.0 + cos(SCHEDULE_PI * COSINE_NUM_CYCLES * 2.0 * progress)));
    }
    default:
        return 1.0;
    }
}
