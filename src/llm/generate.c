/*
 * llm/generate.c - batched generation with KV caches and per-sequence adapters.
 *
 * All prompts are prefilled in one forward; then every step runs the still-active sequences
 * together, one new token each. Each sequence samples with its own sampler (seed + index), so
 * its tokens do not depend on what else shares the batch.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "llm/model_internal.h"

road_status road_model_generate(road_model *m, const int32_t *const *prompts,
                                const int64_t *prompt_lens, const char *const *adapters,
                                int64_t n_seq, const road_generate_params *p,
                                road_token_fn on_token, void *user) {
    ROAD_MODEL_SCOPE(m);
    if (n_seq <= 0 || !prompts || !prompt_lens || !p || !on_token)
        return road__error(ROAD_ERR_INVALID_ARG, "generate: no prompts, parameters or callback");
    if (p->max_new_tokens <= 0)
        return road__error(ROAD_ERR_INVALID_ARG,
                           "generate: max_new_tokens must be positive, got %lld",
                           (long long)p->max_new_tokens);
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop_ids))
        return road__error(ROAD_ERR_INVALID_ARG, "generate: bad stop token list");
    const int64_t V = m->cfg.vocab_size;
    road_kv_cache **caches = road__calloc((size_t)n_seq, sizeof(road_kv_cache *));
    road_sampler **samplers = road__calloc((size_t)n_seq, sizeof(road_sampler *));
    road_seq *seqs = road__calloc((size_t)n_seq, sizeof(road_seq));
    int64_t *live = road__malloc(sizeof(int64_t) * (size_t)n_seq);
    int32_t *next = road__malloc(sizeof(int32_t) * (size_t)n_seq);
    float *logits = road__malloc(sizeof(float) * (size_t)(n_seq * V));
    road_status st = ROAD_OK;
    if (!caches || !samplers || !seqs || !live || !next || !logits) st = ROAD_ERR_NO_MEMORY;
    for (int64_t s = 0; s < n_seq && st == ROAD_OK; s++) {
        if (prompt_lens[s] <= 0) {
            st = road__error(ROAD_ERR_INVALID_ARG, "generate: prompt %lld is empty", (long long)s);
            break;
        }
        int64_t need = prompt_lens[s] + p->max_new_tokens;
        const int64_t most = road_llm_config_max_tokens(&m->cfg);
        if (need > most) need = most;
        if (prompt_lens[s] >= need) {
            st = road__error(ROAD_ERR_INVALID_ARG,
                             "generate: prompt %lld has %lld tokens; the model's context is %lld",
                             (long long)s, (long long)prompt_lens[s], (long long)most);
            break;
        }
        st = road_kv_cache_create_ex(m, need, p->kv_dtype, &caches[s]);
        road_sampler_params sp = p->sampling;
        sp.seed = p->sampling.seed + (uint64_t)s;
        if (st == ROAD_OK) st = road_sampler_create(&sp, V, &samplers[s]);
        seqs[s] =
            (road_seq){prompts[s], prompt_lens[s], caches[s], adapters ? adapters[s] : NULL, false};
        live[s] = s;
    }
    int64_t n_live = n_seq;
    road_seq *step = st == ROAD_OK ? road__calloc((size_t)n_seq, sizeof(road_seq)) : NULL;
    if (st == ROAD_OK && !step) st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK) st = road_model_forward(m, seqs, n_seq, logits);
    for (int64_t produced = 0; st == ROAD_OK && n_live > 0; produced++) {
        /* sample one token per live sequence from the rows of the last forward */
        int64_t kept = 0;
        for (int64_t i = 0; i < n_live; i++) {
            int64_t s = live[i];
            int32_t t = road_sampler_sample(samplers[s], logits + i * V);
            bool go = on_token(s, t, user);
            for (int32_t j = 0; j < p->n_stop && go; j++) go = t != p->stop_ids[j];
            if (go && produced + 1 < p->max_new_tokens &&
                road_kv_cache_length(caches[s]) < road_kv_cache_capacity(caches[s])) {
                next[s] = t;
                live[kept++] = s;
            }
        }
        n_live = kept;
        if (n_live == 0) break;
        for (int64_t i = 0; i < n_live; i++) {
            int64_t s = live[i];
            step[i] = (road_seq){&next[s], 1, caches[s], adapters ? adapters[s] : NULL, false};
        }
        st = road_model_forward(m, step, n_live, logits);
    }
    for (int64_t s = 0; s < n_seq; s++) {
        if (caches) road_kv_cache_free(caches[s]);
        if (samplers) road_sampler_free(samplers[s]);
    }
    road__free(caches);
    road__free(samplers);
    road__free(seqs);
    road__free(step);
    road__free(live);
    road__free(next);
    road__free(logits);
    return st;
}
