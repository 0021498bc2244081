/*
 * tests/test_train_seqs.c - training on a ragged batch (road_model_loss_backward_seqs).
 *
 * Checked three ways, none of which reads the code under test for its expected value:
 *  - the padded call on the same tokens (left and right padding) gives the same loss and
 *    gradients bit for bit (it is documented as a wrapper);
 *  - the loss equals the cross-entropy computed here, in double, from the inference forward's
 *    logits of each sequence run alone (another attention path: not bit-equal, close);
 *  - the batch's loss and gradient are count-weighted means of each sequence's alone
 *    (sequences in a batch must not see each other);
 * and every malformed batch is refused with a message naming the problem.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
enum { NS = 3 };
static const int64_t LENS[NS] = {5, 70, 23}; /* 70 > 64: more than one query block */

typedef struct batch {
    road_token tok[NS][80], tgt[NS][80];
    road_seq seqs[NS];
    const road_token *tgts[NS];
} batch;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 20);
}

static void make_batch(batch *b, int64_t V) {
    for (int s = 0; s < NS; s++) {
        for (int64_t i = 0; i < LENS[s]; i++) b->tok[s][i] = (road_token)(rnd() % (uint32_t)V);
        /* targets: the next token, some ignored (prompt-like), the last one ignored */
        for (int64_t i = 0; i < LENS[s]; i++)
            b->tgt[s][i] = i + 1 < LENS[s] && rnd() % 5 ? b->tok[s][i + 1] : ROAD_LABEL_IGNORE;
        b->seqs[s] = (road_seq){.tokens = b->tok[s], .n_tokens = LENS[s]};
        b->tgts[s] = b->tgt[s];
    }
}

static road_model *load_with_adapter(void) {
    road_model *m;
    TU_OK(road_model_load(MODEL, NULL, &m));
    road_adapter_set *set = road_model_adapters(m);
    road_config *cfg;
    TU_OK(road_config_create(&cfg));
    TU_OK(road_config_set_target_all_linear(cfg));
    TU_OK(road_config_set_group_size(cfg, 8));
    TU_OK(road_config_set_variant(cfg, ROAD_VARIANT_2));
    road_config_set_init_weights(cfg, false);
    TU_OK(road_adapter_set_add(set, "x", cfg, 5));
    road_config_free(cfg);
    road_adapter_set_train(set, true);
    return m;
}

/* Every gradient of adapter "x", concatenated (n floats); zeroes them afterwards. */
static float *take_grads(road_model *m, int64_t *n_out) {
    road_adapter_set *set = road_model_adapters(m);
    int64_t n = 0;
    float *all = NULL;
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++) {
        road_linear *l = road_adapter_set_layer(set, i);
        if (!l || !road_adapter_set_on_layer(set, "x", i)) continue;
        float *gt, *ga;
        int64_t k;
        TU_OK(road_linear_adapter_grads(l, "x", &gt, &ga, &k));
        all = realloc(all, sizeof(float) * (size_t)(n + 2 * k));
        assert_non_null(all);
        memcpy(all + n, gt, sizeof(float) * (size_t)k);
        memcpy(all + n + k, ga, sizeof(float) * (size_t)k);
        n += 2 * k;
        road_linear_zero_grads(l);
    }
    *n_out = n;
    return all;
}

static void test_padded_is_the_same_bits(void **state) {
    (void)state;
    road_model *m = load_with_adapter();
    const int64_t V = road_model_config(m)->vocab_size;
    batch b;
    make_batch(&b, V);
    double loss_r, loss_p;
    TU_OK(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss_r));
    int64_t n1, n2;
    float *g1 = take_grads(m, &n1);
    /* the same as a padded [NS x T] batch: row 0 right-padded, rows 1.. left-padded */
    const int64_t T = 72;
    int64_t *ids = calloc((size_t)(NS * T), sizeof(int64_t)),
            *mask = calloc((size_t)(NS * T), sizeof(int64_t));
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)(NS * T));
    for (int64_t k = 0; k < NS * T; k++) lab[k] = ROAD_LABEL_IGNORE;
    for (int s = 0; s < NS; s++) {
        const int64_t c0 = s == 0 ? 0 : T - LENS[s];
        for (int64_t i = 0; i < LENS[s]; i++) {
            ids[s * T + c0 + i] = b.tok[s][i];
            mask[s * T + c0 + i] = 1;
            if (c0 + i + 1 < T) lab[s * T + c0 + i + 1] = b.tgt[s][i];
        }
    }
    TU_OK(road_model_loss_backward(m, ids, mask, lab, NS, T, &loss_p));
    float *g2 = take_grads(m, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(&loss_r, &loss_p, sizeof loss_r);
    tu_assert_equal_f32("gradients", g1, g2, n1);
    free(g1), free(g2), free(ids), free(mask), free(lab);
    road_model_free(m);
}

/* Cross-entropy of one logits row against target y, in double. */
static double ce(const float *z, int64_t V, int64_t y) {
    double mx = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    for (int64_t i = 0; i < V; i++) s += exp((double)z[i] - mx);
    return log(s) + mx - z[y];
}

static void test_loss_from_inference_and_batch_independence(void **state) {
    (void)state;
    road_model *m = load_with_adapter();
    const int64_t V = road_model_config(m)->vocab_size;
    batch b;
    make_batch(&b, V);
    double loss;
    TU_OK(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss));
    int64_t n;
    float *g = take_grads(m, &n);
    double *acc = calloc((size_t)n, sizeof(double));
    double sum = 0.0, sum_alone = 0.0;
    int64_t count = 0;
    float *logits = malloc(sizeof(float) * (size_t)(80 * V));
    const char *act[] = {"x"};
    for (int s = 0; s < NS; s++) {
        /* inference: the sequence alone, every position's logits */
        road_seq q = b.seqs[s];
        q.all_logits = true;
        road_adapter_set_train(road_model_adapters(m), false);
        TU_OK(road_adapter_set_set_active(road_model_adapters(m), act, 1));
        TU_OK(road_model_forward(m, &q, 1, logits));
        int64_t c = 0;
        for (int64_t i = 0; i < LENS[s]; i++)
            if (b.tgt[s][i] != ROAD_LABEL_IGNORE) sum += ce(logits + i * V, V, b.tgt[s][i]), c++;
        /* training: the sequence alone */
        road_adapter_set_train(road_model_adapters(m), true);
        double l;
        TU_OK(road_model_loss_backward_seqs(m, &b.seqs[s], &b.tgts[s], 1, &l));
        int64_t k;
        float *gs = take_grads(m, &k);
        assert_int_equal(k, n);
        for (int64_t j = 0; j < n; j++) acc[j] += (double)c * gs[j];
        sum_alone += (double)c * l;
        count += c;
        free(gs);
    }
    assert_true(fabs(loss - sum / (double)count) < 1e-5);
    assert_true(fabs(loss - sum_alone / (double)count) < 1e-5);
    double gmax = 0.0, err = 0.0;
    for (int64_t j = 0; j < n; j++) {
        gmax = fmax(gmax, fabs(g[j]));
        err = fmax(err, fabs(g[j] - acc[j] / (double)count));
    }
    assert_true(gmax > 1e-4);       /* a gradient to compare */
    assert_true(err < 1e-4 * gmax); /* float32 sums in another order, nothing more */
    free(g), free(acc), free(logits);
    road_model_free(m);
}

static void test_refusals(void **state) {
    (void)state;
    road_model *m = load_with_adapter();
    const int64_t V = road_model_config(m)->vocab_size;
    batch b;
    make_batch(&b, V);
    double loss;
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, NULL, NS, &loss), ROAD_ERR_INVALID_ARG,
             "targets");
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, 0, &loss), ROAD_ERR_INVALID_ARG,
             "no sequences");
    road_kv_cache *kv;
    TU_OK(road_kv_cache_create(m, 100, &kv));
    b.seqs[1].cache = kv;
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss), ROAD_ERR_INVALID_ARG,
             "sequence 1 has a KV cache");
    b.seqs[1].cache = NULL;
    road_kv_cache_free(kv);
    b.seqs[2].adapter = "x";
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss), ROAD_ERR_INVALID_ARG,
             "names adapter 'x'");
    b.seqs[2].adapter = NULL;
    b.tgt[0][1] = (road_token)V;
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss), ROAD_ERR_INVALID_ARG,
             "sequence 0, target 1");
    b.tgt[0][1] = ROAD_LABEL_IGNORE;
    b.tok[2][4] = -3;
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss), ROAD_ERR_INVALID_ARG,
             "outside the vocabulary");
    b.tok[2][4] = 1;
    b.seqs[1].n_tokens = 0;
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss), ROAD_ERR_INVALID_ARG,
             "sequence 1 has no tokens");
    b.seqs[1].n_tokens = LENS[1];
    for (int s = 0; s < NS; s++)
        for (int64_t i = 0; i < LENS[s]; i++) b.tgt[s][i] = ROAD_LABEL_IGNORE;
    TU_FAILS(road_model_loss_backward_seqs(m, b.seqs, b.tgts, NS, &loss), ROAD_ERR_INVALID_ARG,
             "no label counts");
    road_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_padded_is_the_same_bits),
        cmocka_unit_test(test_loss_from_inference_and_batch_independence),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
