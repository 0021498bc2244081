/*
 * tests/test_grad_fd.c - the whole-model gradient of road_model_loss_backward checked by finite
 * differences, independently of the golden files: along the gradient's own direction u = g/|g|
 * the directional derivative of the loss is |g|, so
 *     (L(p + h u) - L(p - h u)) / (2h)  ~  |g|
 * for every adapter variant on the tiny-llama fixture. One loss evaluation per side keeps the
 * float32 noise of a single loss (a few 1e-7 at 5.8) far below the signal h |g|.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
/* Step along the unit direction: large enough that h |g| (|g| ~ 1e-2 here) dwarfs the loss's
 * float32 noise (~5e-7), small enough that the curvature term h^2 stays below 1e-4 relative. */
#define FD_H 3e-2
/* Central differences at this h agree to a few 1e-3 relative; wrong signs, indices or a
 * missing term give errors of order 1. */
#define FD_REL_TOL 2e-2

static double loss_at(road_model *m, const int64_t *ids, const int64_t *mask, const int64_t *lab,
                      int64_t B, int64_t T) {
    int64_t V = road_model_config(m)->vocab_size;
    float *logits = tu_alloc(sizeof(float) * (size_t)(B * T * V));
    double l;
    TU_OK(road_model_forward_padded(m, ids, mask, B, T, NULL, logits));
    TU_OK(road_causal_lm_loss(logits, lab, mask, B, T, V, &l));
    free(logits);
    return l;
}

/* Move every parameter of `name` by step * its gradient / |g| (all layers). */
static void move(road_adapter_set *set, const char *name, double step, double gnorm) {
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
        road_linear *l = road_adapter_set_layer(set, i);
        if (!l || !road_adapter_set_on_layer(set, name, i)) continue;
        float *th, *al, *gt, *ga;
        int64_t n;
        TU_OK(road_linear_adapter_params(l, name, &th, &al, &n));
        TU_OK(road_linear_adapter_grads(l, name, &gt, &ga, &n));
        for (int64_t k = 0; k < n; k++) {
            th[k] += (float)(step * gt[k] / gnorm);
            al[k] += (float)(step * ga[k] / gnorm);
        }
        TU_OK(road_linear_params_changed(l, name));
    }
}

static void test_directional(void **state) {
    (void)state;
    road_st_file *cases = tu_open_golden("llama/tiny-llama/cases.safetensors");
    const road_st_tensor *t = road_st_find(cases, "inputs.input_ids");
    const int64_t B = t->shape[0], T = t->shape[1];
    const int64_t *ids = t->data, *mask = road_st_find(cases, "inputs.attention_mask")->data;
    const int64_t *lab = road_st_find(cases, "inputs.labels")->data;
    const road_variant vs[3] = {ROAD_VARIANT_1, ROAD_VARIANT_2, ROAD_VARIANT_4};
    for (int k = 0; k < 3; k++) {
        road_model *m;
        TU_OK(road_model_load(MODEL, NULL, &m));
        road_adapter_set *set = road_model_adapters(m);
        road_config *cfg;
        TU_OK(road_config_create(&cfg));
        TU_OK(road_config_set_target_all_linear(cfg));
        TU_OK(road_config_set_group_size(cfg, 8));
        TU_OK(road_config_set_variant(cfg, vs[k]));
        road_config_set_init_weights(cfg, false);
        TU_OK(road_adapter_set_add(set, "x", cfg, 11 + (uint64_t)k));
        road_config_free(cfg);
        double loss;
        TU_OK(road_model_loss_backward(m, ids, mask, lab, B, T, &loss));
        double g2 = 0;
        for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
            road_linear *l = road_adapter_set_layer(set, i);
            if (!l || !road_adapter_set_on_layer(set, "x", i)) continue;
            float *gt, *ga;
            int64_t n;
            TU_OK(road_linear_adapter_grads(l, "x", &gt, &ga, &n));
            for (int64_t j = 0; j < n; j++) g2 += (double)gt[j] * gt[j] + (double)ga[j] * ga[j];
        }
        const double gnorm = sqrt(g2);
        assert_true(gnorm > 0);
        move(set, "x", FD_H, gnorm);
        double lp = loss_at(m, ids, mask, lab, B, T);
        move(set, "x", -2 * FD_H, gnorm);
        double lm = loss_at(m, ids, mask, lab, B, T);
        double fd = (lp - lm) / (2 * FD_H);
        if (!(fabs(fd - gnorm) <= FD_REL_TOL * gnorm))
            fail_msg("%s: directional derivative %.6g by finite differences, |g| = %.6g",
                     road_variant_name(vs[k]), fd, gnorm);
        road_model_free(m);
    }
    road_st_close(cases);
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_directional)};
    return cmocka_run_group_tests_name("grad_fd", tests, NULL, NULL);
}
