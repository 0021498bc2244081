/*
 * llm/eval.c - padded batches as transformers takes them, and the causal-LM loss.
 *
 * A padded row's valid tokens (attention_mask 1) get positions 0..n-1 (transformers'
 * cumsum(mask) - 1), which is exactly that row run alone; so a padded batch is run as a
 * ragged batch of its valid tokens and the logits are put back at their columns. The loss is
 * ops.c's cross-entropy, the one training differentiates.
 */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/threads.h"
#include "llm/model_internal.h"
#include "llm/ops.h"

road_status road_model_forward_padded(road_model *m, const int64_t *input_ids,
                                      const int64_t *attention_mask, int64_t B, int64_t T,
                                      const char *const *adapters, float *logits) {
    ROAD_MODEL_SCOPE(m);
    if (B <= 0 || T <= 0 || !input_ids || !logits)
        return road__error(ROAD_ERR_INVALID_ARG, "forward_padded: empty batch or NULL buffers");
    const int64_t V = m->cfg.vocab_size;
    road_seq *seqs = road__calloc((size_t)B, sizeof(road_seq));
    road_token *tok = road__malloc(sizeof(road_token) * (size_t)(B * T));
    int64_t *rows = road__malloc(sizeof(int64_t) * (size_t)B);
    road_status st = ROAD_OK;
    if (!seqs || !tok || !rows) st = ROAD_ERR_NO_MEMORY;
    int64_t n_seq = 0, total = 0;
    for (int64_t b = 0; b < B && st == ROAD_OK; b++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++) {
            int64_t mk = attention_mask ? attention_mask[b * T + t] : 1;
            if (mk != 0 && mk != 1) {
                st = road__error(ROAD_ERR_INVALID_ARG,
                                 "attention_mask[%lld][%lld] is %lld; it must "
                                 "be 0 or 1",
                                 (long long)b, (long long)t, (long long)mk);
                break;
            }
            if (!mk) continue;
            int64_t id = input_ids[b * T + t];
            if (id < 0 || id >= V) {
                st = road__error(ROAD_ERR_INVALID_ARG,
                                 "input_ids[%lld][%lld] is %lld, outside the "
                                 "vocabulary (0..%lld)",
                                 (long long)b, (long long)t, (long long)id, (long long)V - 1);
                break;
            }
            tok[b * T + n++] = (road_token)id;
        }
        rows[b] = n;
        if (n == 0) continue; /* an all-padding row: its logits stay 0 */
        road_seq *q = &seqs[n_seq++];
        q->tokens = tok + b * T;
        q->n_tokens = n;
        q->all_logits = true;
        q->adapter = adapters ? adapters[b] : NULL;
        total += n;
    }
    float *out = NULL;
    if (st == ROAD_OK && n_seq == 0)
        st = road__error(ROAD_ERR_INVALID_ARG, "forward_padded: every row is padding");
    if (st == ROAD_OK && !(out = road__malloc(sizeof(float) * (size_t)(total * V))))
        st = ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK) st = road_model_forward(m, seqs, n_seq, out);
    if (st == ROAD_OK) {
        memset(logits, 0, sizeof(float) * (size_t)(B * T * V));
        int64_t r = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                if (!attention_mask || attention_mask[b * T + t])
                    memcpy(logits + (b * T + t) * V, out + (r++) * V, sizeof(float) * (size_t)V);
    }
    road__free(out);
    road__free(seqs);
    road__free(tok);
    road__free(rows);
    return st;
}

road_status road_causal_lm_loss(const float *logits, const int64_t *labels,
                                const int64_t *attention_mask, int64_t B, int64_t T, int64_t V,
                                double *loss) {
    if (!logits || !labels || !loss || B <= 0 || T <= 0 || V <= 0)
        return road__error(ROAD_ERR_INVALID_ARG, "causal_lm_loss: empty batch or NULL buffers");
    int64_t count = 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t + 1 < T; t++) {
            int64_t y = labels[b * T + t + 1];
            if (y == ROAD_LABEL_IGNORE) continue;
            if (y < 0 || y >= V)
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "labels[%lld][%lld] is %lld; labels are "
                                   "token ids (0..%lld) or -100 (ignored)",
                                   (long long)b, (long long)(t + 1), (long long)y,
                                   (long long)V - 1);
            if (attention_mask && !attention_mask[b * T + t])
                return road__error(ROAD_ERR_INVALID_ARG,
                                   "labels[%lld][%lld] counts, but it is predicted from position "
                                   "%lld, which is padding (its logits mean nothing); set that "
                                   "label to -100",
                                   (long long)b, (long long)(t + 1), (long long)t);
            count++;
        }
    }
    if (count == 0)
        return road__error(ROAD_ERR_INVALID_ARG, "causal_lm_loss: no label counts (all -100 after "
                                                 "the shift); nothing to average");
    /* Row b's logits at 0..T-2 predict its labels at 1..T-1 (T > 1 since a label counted): the
     * shift is an offset. The sum runs serially in (b, t) order, so the loss does not depend
     * on the thread count. */
    double *losses = road__malloc(sizeof(double) * (size_t)(T - 1));
    if (!losses) return ROAD_ERR_NO_MEMORY;
    double sum = 0.0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *targets = labels + b * T + 1;
        road__cross_entropy_forward(losses, NULL, NULL, logits + b * T * V, targets, T - 1, V);
        for (int64_t t = 0; t + 1 < T; t++)
            if (targets[t] != ROAD_LABEL_IGNORE) sum += losses[t];
    }
    road__free(losses);
    *loss = sum / (double)count;
    return ROAD_OK;
}
