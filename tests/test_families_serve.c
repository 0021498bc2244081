/*
 * tests/test_families_serve.c - every model family merges, saves and serves mixed-adapter
 * batches, on the eight fixture checkpoints of tests/fixtures/llama (family_common.h):
 *   - merge_and_unload of adapter B (every projection; phi3: groups of 32 that straddle q/k/v
 *     and gate/up) and of A then C stacked, road_model_save (float32) to a folder, load: the
 *     logits equal the unmerged adapters' and the PyTorch/PEFT reference's (cases.safetensors
 *     B.logits, A+C.logits) within the fixture tolerance; the saved config.json reads back as
 *     the same configuration (every family field: norms, soft-caps, sliding pattern, RoPE);
 *   - adapter B merged into an nf4 (+ double quantization) base, saved in bitsandbytes' layout
 *     and loaded: bit-identical logits; the merge moves logits within the nf4 bound;
 *   - the serving engine (road/serve.h, no HTTP): requests naming A, B, C and __base__ in one
 *     batch, joining at different steps, one prompt prefilled in chunks, give exactly the
 *     greedy tokens each gives alone; adapter A alone continues the fixture's decode prompts
 *     with the reference's greedy tokens (decode.A.row<r>.generated_ids).
 * Training and quantized bases per family are in test_families.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "family_common.h"

/* Merged-then-saved logits vs unmerged ones and vs the reference: the fixture README's logit
 * tolerance (its merged_vs_unmerged check observed up to 1.8e-6, tiny-gemma2). */
#define MERGE_ATOL FAM_LOGIT_ATOL
/* Merging into a 4-bit layer quantizes the merged weights again: an error of the kind and size
 * of quantizing the base. So the merge may move the logits (max |merged - unmerged| / max
 * |unmerged|, valid positions) by at most this many times what nf4 itself moves them from the
 * float model with the same adapter (measured: 0.85x, tiny-gemma2, to 1.14x, tiny-olmo2). */
#define NF4_MERGE_FACTOR 2.0
/* The same weights through two kernels (a 16-bit lm_head's streaming kernel vs sgemm on the
 * widened array): float summation order only, a few ulps of the partial sums. */
#define SUM_ORDER_ATOL 1e-6
#define SUM_ORDER_RTOL 1e-5

/* ---- merge, save, reload ------------------------------------------------------------------- */

static void merge_case(const char *name, const fam_batch *b, const char *const *act, int32_t n_act,
                       const char *golden_case) {
    char label[64] = "";
    for (int32_t i = 0; i < n_act; i++)
        snprintf(label + strlen(label), sizeof label - strlen(label), "%s%s", i ? "+" : "", act[i]);
    /* float32 weights: the merge is compared at float32 precision (a 16-bit layer rounds its
     * merged weight to its format, tests/test_llm_load.c) */
    road_model *m = fam_load_f32(name);
    road_adapter_set *set = road_model_adapters(m);
    for (int32_t i = 0; i < n_act; i++)
        TU_OK(road_adapter_set_load(set, act[i], fam_adapter(name, act[i])));
    TU_OK(road_adapter_set_set_active(set, act, n_act));
    const int64_t V = road_model_config(m)->vocab_size;
    float *unmerged = fam_logits(m, b);
    TU_OK(road_adapter_set_merge_and_unload(set, NULL, 0, true));
    assert_int_equal(road_adapter_set_count(set), 0);
    float *merged = fam_logits(m, b);
    char what[256];
    snprintf(what, sizeof what, "%s %s: merged in memory vs unmerged", name, label);
    fam_assert_close_valid(what, merged, unmerged, b, V, MERGE_ATOL);

    char dir[300];
    snprintf(dir, sizeof dir, "%s/%s-%s", tu_scratch_root(), name, label);
    TU_OK(road_model_save(m, dir, ROAD_DTYPE_F32));
    road_model *r = NULL;
    TU_OK(road_model_load(dir, NULL, &r));
    assert_int_equal(road_adapter_set_count(road_model_adapters(r)), 0);
    /* the saved config is the same model (the dtype is what was written: float32) */
    road_llm_config want = *road_model_config(m), got = *road_model_config(r);
    assert_int_equal(got.torch_dtype, ROAD_DTYPE_F32);
    want.torch_dtype = got.torch_dtype;
    if (memcmp(&want, &got, sizeof want) != 0)
        fail_msg("%s: the saved config.json reads back differently (model_type %s -> %s, "
                 "sliding_window %lld -> %lld, rotary_dim %lld -> %lld, softcaps %g/%g -> %g/%g, "
                 "tie %d -> %d)",
                 name, want.model_type, got.model_type, (long long)want.sliding_window,
                 (long long)got.sliding_window, (long long)want.rotary_dim,
                 (long long)got.rotary_dim, want.attn_softcap, want.final_softcap, got.attn_softcap,
                 got.final_softcap, want.tie_word_embeddings, got.tie_word_embeddings);
    float *reloaded = fam_logits(r, b);
    snprintf(what, sizeof what, "%s %s: merged, saved and loaded vs unmerged", name, label);
    fam_assert_close_valid(what, reloaded, unmerged, b, V, MERGE_ATOL);
    char key[64];
    snprintf(key, sizeof key, "%s.logits", golden_case);
    const float *ref;
    const int64_t shape[3] = {b->B, b->T, V};
    TU_OK(road_st_get_f32(b->cases, key, 3, shape, &ref, NULL));
    snprintf(what, sizeof what, "%s %s: merged, saved and loaded vs PyTorch/PEFT %s", name, label,
             key);
    fam_assert_close_valid(what, reloaded, ref, b, V, MERGE_ATOL);
    free(unmerged);
    free(merged);
    free(reloaded);
    road_model_free(r);
    road_model_free(m);
    tu_rm_rf(dir);
}

static void test_merge_save_reload(void **state) {
    (void)state;
    static const char *const b_only[1] = {"B"}, *const a_then_c[2] = {"A", "C"};
    for (int f = 0; f < FAM_N; f++) {
        fam_batch b;
        fam_batch_open(&b, fam_list[f].name);
        merge_case(fam_list[f].name, &b, b_only, 1, "B");
        merge_case(fam_list[f].name, &b, a_then_c, 2, "A+C");
        fam_batch_close(&b);
    }
}

/* max |a - ref| / max |ref| over the valid positions. */
static double rel_err(const float *a, const float *ref, const fam_batch *b, int64_t V) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < b->B * b->T; i++) {
        if (!b->mask[i]) continue;
        for (int64_t v = 0; v < V; v++) {
            num = fmax(num, fabs((double)a[i * V + v] - ref[i * V + v]));
            den = fmax(den, fabs((double)ref[i * V + v]));
        }
    }
    return num / den;
}

/* Adapter B merged into an nf4 base (dequantize, rotate, quantize again; phi3's fused layers
 * with groups across q/k/v and gate/up), then saved quantized (bitsandbytes' layout) and
 * loaded: the same logits bit for bit (the quantized bytes are written as they are); the merge
 * moves the logits by a requantization of the merged weights at most. */
static void test_merge_quantized(void **state) {
    (void)state;
    for (int f = 0; f < FAM_N; f++) {
        const char *name = fam_list[f].name;
        fam_batch b;
        fam_batch_open(&b, name);
        road_model_params qp = road_model_default_params();
        qp.quantize = ROAD_QFORMAT_NF4;
        qp.double_quant = true;
        road_model *m = NULL;
        TU_OK(road_model_load(fam_dir(name), &qp, &m));
        const int32_t n_q = road_model_quantized_layers(m, NULL);
        road_adapter_set *set = road_model_adapters(m);
        TU_OK(road_adapter_set_load(set, "B", fam_adapter(name, "B")));
        const char *act[1] = {"B"};
        TU_OK(road_adapter_set_set_active(set, act, 1));
        const int64_t V = road_model_config(m)->vocab_size;
        float *unmerged = fam_logits(m, &b);
        TU_OK(road_adapter_set_merge_and_unload(set, NULL, 0, true));
        float *merged = fam_logits(m, &b);
        road_model *mf = fam_load(name, ROAD_QFORMAT_NONE);
        TU_OK(road_adapter_set_load(road_model_adapters(mf), "B", fam_adapter(name, "B")));
        TU_OK(road_adapter_set_set_active(road_model_adapters(mf), act, 1));
        float *exact = fam_logits(mf, &b);
        road_model_free(mf);
        const double e_quant = rel_err(unmerged, exact, &b, V);
        const double e_merge = rel_err(merged, unmerged, &b, V);
        print_message("%s: nf4+dq moves B's logits %.4f of max |logit|, merging B into it %.4f\n",
                      name, e_quant, e_merge);
        if (!(e_merge <= NF4_MERGE_FACTOR * e_quant))
            fail_msg("%s: merging B into the nf4 base moved the logits %.4f of max |logit|, "
                     "more than %.0fx what quantizing did (%.4f)",
                     name, e_merge, NF4_MERGE_FACTOR, e_quant);

        char dir[300];
        snprintf(dir, sizeof dir, "%s/%s-nf4", tu_scratch_root(), name);
        TU_OK(road_model_save_quantized(m, dir, ROAD_DTYPE_F32, ROAD_QFORMAT_NF4, true, false));
        road_model *r = NULL;
        TU_OK(road_model_load(dir, NULL, &r)); /* loads quantized: the file says so */
        road_qformat got;
        assert_int_equal(road_model_quantized_layers(r, &got), n_q);
        assert_int_equal(got, ROAD_QFORMAT_NF4);
        float *again = fam_logits(r, &b);
        char what[160];
        snprintf(what, sizeof what, "%s: merged nf4 model saved quantized and loaded", name);
        /* the same weights; a bf16 embedding kept as stored comes back float32 (written F32),
         * so a tied lm_head runs sgemm instead of the 16-bit kernel: summation order only */
        if (road_model_embedding_format(m, NULL) == ROAD_QFORMAT_NONE)
            tu_assert_equal_f32(what, again, merged, b.B * b.T * V);
        else
            tu_assert_close(what, again, merged, b.B * b.T * V, SUM_ORDER_ATOL, SUM_ORDER_RTOL);
        free(unmerged);
        free(merged);
        free(again);
        free(exact);
        road_model_free(r);
        road_model_free(m);
        tu_rm_rf(dir);
        fam_batch_close(&b);
    }
}

/* ---- serving mixed batches --------------------------------------------------------------------
 */

enum { N_JOBS = 6, N_NEW = 8, MAX_PROMPT = 32 };

typedef struct job {
    const char *adapter;
    road_token prompt[MAX_PROMPT];
    int64_t n_prompt;
} job;

/* Jobs 0-2: adapter A on the fixture's three decode prompts (reference tokens known); then B,
 * the base model (by its name) and C; job 4 has a prompt longer than a step's token budget. */
static void make_jobs(const fam_batch *b, job *jobs) {
    static const char *const names[N_JOBS] = {"A", "A", "A", "B", ROAD_BASE_NAME, "C"};
    for (int i = 0; i < N_JOBS; i++) {
        job *j = &jobs[i];
        j->adapter = names[i];
        if (i < 3) {
            char key[64];
            snprintf(key, sizeof key, "decode.A.row%d.prompt_ids", i);
            const road_st_tensor *t = road_st_find(b->cases, key);
            assert_non_null(t);
            assert_true(t->numel <= MAX_PROMPT);
            j->n_prompt = t->numel;
            for (int64_t k = 0; k < t->numel; k++)
                j->prompt[k] = (road_token)((const int64_t *)t->data)[k];
        } else {
            j->n_prompt = i == 4 ? 27 : 5 + i;
            for (int64_t k = 0; k < j->n_prompt; k++)
                j->prompt[k] = (road_token)(3 + (k * 37 + i * 11) % 300);
        }
    }
}

static road_engine *new_engine(road_model *m) {
    road_engine_params p = road_engine_default_params();
    p.max_batch = 4;
    p.step_tokens = 16; /* job 4's 27-token prompt takes two steps */
    road_engine *e;
    TU_OK(road_engine_create(m, &p, &e));
    return e;
}

static road_request *submit(road_engine *e, const job *j) {
    road_request_params p = road_request_default_params(); /* greedy */
    p.prompt = j->prompt;
    p.n_prompt = j->n_prompt;
    p.adapter = j->adapter;
    p.max_tokens = N_NEW;
    p.ignore_eos = true;
    road_request *r;
    TU_OK(road_engine_submit(e, &p, &r));
    return r;
}

static void run_until_idle(road_engine *e) {
    int64_t n = 1;
    for (int guard = 0; n > 0 && guard < 1000; guard++) TU_OK(road_engine_step(e, &n));
    assert_int_equal(n, 0);
}

/* Family `name` on base weights q: alone vs mixed; on float weights also the reference. */
static void serve_family(const char *name, road_qformat q) {
    {
        const char *qn = q == ROAD_QFORMAT_NONE ? "float" : road_qformat_name(q);
        fam_batch b;
        fam_batch_open(&b, name);
        road_model *m = fam_load(name, q);
        road_adapter_set *set = road_model_adapters(m);
        const char *ad[3] = {"A", "B", "C"};
        for (int i = 0; i < 3; i++)
            TU_OK(road_adapter_set_load(set, ad[i], fam_adapter(name, ad[i])));
        TU_OK(road_adapter_set_set_active(set, NULL, 0));
        job jobs[N_JOBS];
        make_jobs(&b, jobs);

        /* each alone, in an engine of its own */
        road_token alone[N_JOBS][N_NEW];
        for (int i = 0; i < N_JOBS; i++) {
            road_engine *e = new_engine(m);
            road_request *r = submit(e, &jobs[i]);
            run_until_idle(e);
            assert_int_equal(road_request_tokens(r, 0, alone[i], N_NEW), N_NEW);
            road_request_release(r);
            road_engine_free(e);
        }
        /* adapter A alone on the reference prompts: the reference's greedy tokens */
        for (int i = 0; i < 3 && q == ROAD_QFORMAT_NONE; i++) {
            char key[64];
            snprintf(key, sizeof key, "decode.A.row%d.generated_ids", i);
            const road_st_tensor *t = road_st_find(b.cases, key);
            assert_non_null(t);
            for (int64_t k = 0; k < t->numel && k < N_NEW; k++)
                if (alone[i][k] != (road_token)((const int64_t *)t->data)[k])
                    fail_msg("%s: served with adapter A, prompt row %d: token %lld is %d, the "
                             "reference's %lld",
                             name, i, (long long)k, (int)alone[i][k],
                             (long long)((const int64_t *)t->data)[k]);
        }

        /* together: 4 slots for 6 requests, two join after three steps */
        road_engine *e = new_engine(m);
        road_request *r[N_JOBS];
        r[0] = submit(e, &jobs[3]);
        r[1] = submit(e, &jobs[4]);
        for (int k = 0; k < 3; k++) TU_OK(road_engine_step(e, NULL));
        static const int order[N_JOBS] = {3, 4, 0, 5, 1, 2};
        for (int i = 2; i < N_JOBS; i++) r[i] = submit(e, &jobs[order[i]]);
        run_until_idle(e);
        for (int i = 0; i < N_JOBS; i++) {
            const int j = order[i];
            road_token got[N_NEW];
            assert_int_equal(road_request_tokens(r[i], 0, got, N_NEW), N_NEW);
            for (int k = 0; k < N_NEW; k++)
                if (got[k] != alone[j][k])
                    fail_msg("%s (%s base): request %d (adapter %s): token %d is %d in the mixed "
                             "batch, %d alone",
                             name, qn, j, jobs[j].adapter, k, (int)got[k], (int)alone[j][k]);
            road_request_release(r[i]);
        }
        print_message("%s (%s base): 6 requests (A x3, B, __base__, C) mixed = alone\n", name, qn);
        road_engine_free(e);
        road_model_free(m);
        fam_batch_close(&b);
    }
}

static void test_serve_mixed(void **state) {
    (void)state;
    for (int f = 0; f < FAM_N; f++) serve_family(fam_list[f].name, ROAD_QFORMAT_NONE);
}

/* docs/serve.md: "a request's tokens do not depend on what else shares its batch" - also on a
 * quantized base (decode rows alone take the fused dequantize-dot kernels, in a step with
 * prompt rows the dequantized tiles and sgemm). */
static void test_serve_mixed_nf4(void **state) {
    (void)state;
    for (int f = 0; f < FAM_N; f++) serve_family(fam_list[f].name, ROAD_QFORMAT_NF4);
}

static int setup(void **state) {
    (void)state;
    return tu_scratch_make("test_families_serve");
}

static int teardown(void **state) {
    (void)state;
    return tu_scratch_remove();
}

int main(void) {
    road_set_num_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_save_reload),
        cmocka_unit_test(test_merge_quantized),
        cmocka_unit_test(test_serve_mixed),
        cmocka_unit_test(test_serve_mixed_nf4),
    };
    return cmocka_run_group_tests_name("families_serve", tests, setup, teardown);
}
