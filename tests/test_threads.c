/*
 * tests/test_threads.c - whose thread count is whose (core/threads.h).
 *
 * The process (here: the calling thread's OpenMP count and OpenBLAS's count) keeps the count
 * road_set_num_threads gave it; a model with its own road_model_params.n_threads runs its calls
 * with that count and gives the previous one back, so loading or running it changes nothing
 * for other models or for the rest of the process. Its numbers are those it computed when
 * road_model_load still set the count process-wide: the same counts run the same kernels.
 * On tiny-llama 1 and 2 threads give different bits (BLAS splits its tiles by thread count),
 * so the bit-identical comparison also shows that the model's calls ran with its count.
 */
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/cpu.h"
#include "core/rng.h"
#include "core/threads.h"
#include "testutil.h"

#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
/* The process count of the tests and the model's own, different so that a leak shows. */
#define PROCESS_THREADS 2
#define MODEL_THREADS 1
/* Tokens generated while checking the count the token callback sees. */
#define N_GENERATE 3

/* Both counts (OpenMP's is 1 without OpenMP, whatever was asked). */
static void assert_counts(int want) {
#ifdef _OPENMP
    assert_int_equal(road_get_num_threads(), want);
#else
    assert_int_equal(road_get_num_threads(), 1);
#endif
    assert_int_equal(road__blas_threads(), want);
}

/* A function leaving its scope early: the cleanup must restore the counts on that path too. */
static int early_return(bool leave_early) {
    ROAD_THREAD_SCOPE(MODEL_THREADS);
    if (leave_early) return road__blas_threads();
    return -road__blas_threads();
}

static void test_scope(void **state) {
    (void)state;
    road_set_num_threads(PROCESS_THREADS);
    assert_counts(PROCESS_THREADS);
    {
        road_thread_scope s = road__thread_scope_enter(MODEL_THREADS);
        assert_true(s.changed);
        assert_counts(MODEL_THREADS);
        road_thread_scope inner = road__thread_scope_enter(PROCESS_THREADS + 1);
        assert_counts(PROCESS_THREADS + 1);
        road__thread_scope_leave(&inner);
        assert_counts(MODEL_THREADS);
        road__thread_scope_leave(&s);
    }
    assert_counts(PROCESS_THREADS);
    /* 0: the counts as they are, nothing to restore */
    road_thread_scope none = road__thread_scope_enter(0);
    assert_false(none.changed);
    assert_counts(PROCESS_THREADS);
    road__thread_scope_leave(&none);
    /* the count the process already has: nothing changed either */
    road_thread_scope same = road__thread_scope_enter(PROCESS_THREADS);
    assert_false(same.changed);
    road__thread_scope_leave(&same);
    /* < 0: all cores (physical ones), as road_set_num_threads reads it */
    road_thread_scope all = road__thread_scope_enter(-1);
#ifdef _OPENMP
    assert_int_equal(road_get_num_threads(), road__cpu_physical_cores());
#endif
    road__thread_scope_leave(&all);
    assert_counts(PROCESS_THREADS);
    assert_int_equal(early_return(true), MODEL_THREADS);
    assert_counts(PROCESS_THREADS);
    assert_int_equal(early_return(false), -MODEL_THREADS);
    assert_counts(PROCESS_THREADS);
}

/* ---- a model with its own count ------------------------------------------------------------ */

/* A padded batch of made-up tokens: B rows of T, row b padded on the right by b * PAD_STEP. */
#define BATCH_B 3
#define BATCH_T 24
#define PAD_STEP 5
typedef struct batch {
    int64_t ids[BATCH_B * BATCH_T], mask[BATCH_B * BATCH_T], labels[BATCH_B * BATCH_T];
    int64_t B, T, V;
} batch;

static void batch_make(batch *b, int64_t vocab) {
    b->B = BATCH_B, b->T = BATCH_T, b->V = vocab;
    road_rng rng;
    road__rng_seed(&rng, 5);
    for (int64_t i = 0; i < BATCH_B * BATCH_T; i++) {
        const int64_t row = i / BATCH_T, col = i % BATCH_T;
        b->ids[i] = (int64_t)(road__rng_u64(&rng) % (uint64_t)vocab);
        b->mask[i] = col < BATCH_T - row * PAD_STEP;
        b->labels[i] = b->mask[i] ? b->ids[i] : -100; /* transformers' ignore_index */
    }
}

/* What one model computes: padded logits, loss and the adapter's gradients after a backward. */
typedef struct result {
    float *logits;
    double loss;
    float *grads;
    int64_t n_grads;
} result;

static road_model *load(int n_threads) {
    road_model_params p = road_model_default_params();
    p.n_threads = n_threads;
    road_model *m = NULL;
    TU_OK(road_model_load(MODEL, &p, &m));
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_target_all_linear(cfg));
    TU_OK(road_config_set_group_size(cfg, 8));
    road_config_set_init_weights(cfg, false); /* random angles: a gradient that is not trivial */
    TU_OK(road_adapter_set_add(road_model_adapters(m), "x", cfg, 7));
    road_config_free(cfg);
    return m;
}

/* Run m on the batch; after each call the process count must still be `process`. */
static result run(road_model *m, const batch *b, int process) {
    result r = {0};
    r.logits = tu_alloc(sizeof(float) * (size_t)(b->B * b->T * b->V));
    TU_OK(road_model_forward_padded(m, b->ids, b->mask, b->B, b->T, NULL, r.logits));
    assert_counts(process);
    TU_OK(road_model_loss_backward(m, b->ids, b->mask, b->labels, b->B, b->T, &r.loss));
    assert_counts(process);
    /* every gradient, in the optimizer's order of the adapter's tensors */
    road_adamw_params hp = road_adamw_default_params();
    road_optimizer *o;
    TU_OK(road_optimizer_create(road_model_adapters(m), NULL, 0, &hp, &o));
    r.n_grads = road_optimizer_numel(o);
    r.grads = tu_alloc(sizeof(float) * (size_t)r.n_grads);
    int64_t k = 0;
    for (int32_t i = 0; i < road_optimizer_tensor_count(o); i++) {
        road_optim_tensor t;
        TU_OK(road_optimizer_tensor(o, i, &t));
        memcpy(r.grads + k, t.grad, sizeof(float) * (size_t)t.n);
        k += t.n;
    }
    road_optimizer_free(o);
    return r;
}

static void result_free(result *r) {
    free(r->logits);
    free(r->grads);
}

static void test_model_count_stays_the_models(void **state) {
    (void)state;
    batch b;
    /* before: road_model_load(n_threads = 1) set the process count to 1; the same run today */
    road_set_num_threads(MODEL_THREADS);
    road_model *m = load(0);
    batch_make(&b, road_model_config(m)->vocab_size);
    result before = run(m, &b, MODEL_THREADS);
    road_model_free(m);

    road_set_num_threads(PROCESS_THREADS);
    m = load(MODEL_THREADS);
    assert_counts(PROCESS_THREADS); /* loading did not change the process count */
    result now = run(m, &b, PROCESS_THREADS);
    road_model_free(m);

    tu_assert_equal_f32("logits (model count vs process count)", now.logits, before.logits,
                        b.B * b.T * b.V);
    if (memcmp(&now.loss, &before.loss, sizeof now.loss) != 0)
        fail_msg("loss %.17g with the model's count, %.17g with the process count", now.loss,
                 before.loss);
    assert_int_equal(now.n_grads, before.n_grads);
    tu_assert_equal_f32("adapter gradients", now.grads, before.grads, now.n_grads);
    result_free(&before);
    result_free(&now);
}

/* The token callback runs inside road_model_generate, so it sees the model's count. */
typedef struct seen {
    int want;
    int calls;
} seen;

static bool on_token(int64_t seq, int32_t token, void *user) {
    (void)seq, (void)token;
    seen *s = user;
    assert_counts(s->want);
    s->calls++;
    return true;
}

static void generate_sees(road_model *m, int want) {
    const int32_t prompt[] = {1, 5, 9, 2};
    const int32_t *prompts[] = {prompt};
    const int64_t lens[] = {(int64_t)(sizeof prompt / sizeof prompt[0])};
    road_generate_params gp = {N_GENERATE, NULL, 0, road_sampler_default_params(), ROAD_DTYPE_F32};
    seen s = {want, 0};
    TU_OK(road_model_generate(m, prompts, lens, NULL, 1, &gp, on_token, &s));
    assert_int_equal(s.calls, N_GENERATE);
}

static void test_two_models(void **state) {
    (void)state;
    road_set_num_threads(PROCESS_THREADS);
    road_model *own = load(MODEL_THREADS);
    road_model *plain = load(0); /* 0: runs with whatever the calling thread has */
    generate_sees(own, MODEL_THREADS);
    assert_counts(PROCESS_THREADS);
    generate_sees(plain, PROCESS_THREADS);
    generate_sees(own, MODEL_THREADS);
    assert_counts(PROCESS_THREADS);
    road_model_free(own);
    road_model_free(plain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scope),
        cmocka_unit_test(test_model_count_stays_the_models),
        cmocka_unit_test(test_two_models),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
