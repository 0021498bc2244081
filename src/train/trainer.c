/*
 * train/trainer.c - the training loop: shuffled ragged micro-batches, gradient accumulation,
 * clipping, AdamW with a schedule, evaluation, checkpoints and exact resume.
 *
 * Determinism is what makes resume exact: epoch e's order is a Fisher-Yates shuffle drawn
 * from seed and e alone, and the position in the data (epoch, micro-batch) is saved with each
 * checkpoint, so a resumed run sees the same batches in the same order, and the optimizer state
 * and step count come back bit for bit.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/rng.h"
#include "io/file.h"
#include "road/train.h"
#include "train/train_internal.h"

road_train_params road_train_default_params(void) {
    road_train_params p;
    memset(&p, 0, sizeof p);
    p.adamw = road_adamw_default_params();
    p.schedule = road_schedule_default();
    p.epochs = 1;
    p.batch_size = 8;   /* Hugging Face's per_device_train_batch_size */
    p.grad_accum = 1;
    p.max_grad_norm = 1.0; /* Hugging Face's default */
    p.seed = 42;
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The order of epoch e: a permutation drawn from (seed, e) only. */
static void epoch_order(uint64_t seed, int64_t epoch, int64_t n, int64_t *perm) {
    road_rng r;
    road__rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(epoch + 1)));
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(road__rng_u64(&r) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* Padded batch of examples idx[0..B): right padding, mask 0 and labels -100 there. */
typedef struct batch {
    int64_t *ids, *mask, *labels;
    int64_t B, T, tokens;
} batch;

/* The longest of examples idx[0..B) (at least 1) and their tokens in all, checking each index. */
static road_status measure(const road_dataset *d, const int64_t *idx, int64_t B, int64_t *longest,
                           int64_t *total) {
    *longest = 1, *total = 0;
    for (int64_t i = 0; i < B; i++) {
        const road_token *ids, *lab;
        int64_t n;
        road_status s = road_dataset_example(d, idx[i], &ids, &lab, &n);
        if (s != ROAD_OK) return s;
        if (n > *longest) *longest = n;
        *total += n;
    }
    return ROAD_OK;
}

static road_status make_batch(const road_dataset *d, const int64_t *idx, int64_t B, batch *b) {
    int64_t T, total;
    road_status s = measure(d, idx, B, &T, &total);
    if (s != ROAD_OK) return s;
    size_t cells = (size_t)(B * T);
    b->ids = road__malloc(sizeof(int64_t) * cells);
    b->mask = road__malloc(sizeof(int64_t) * cells);
    b->labels = road__malloc(sizeof(int64_t) * cells);
    if (!b->ids || !b->mask || !b->labels) return ROAD_ERR_NO_MEMORY;
    b->B = B;
    b->T = T;
    b->tokens = 0;
    for (int64_t i = 0; i < B; i++) {
        const road_token *ids, *lab;
        int64_t n;
        (void)road_dataset_example(d, idx[i], &ids, &lab, &n);
        for (int64_t t = 0; t < T; t++) {
            bool real = t < n;
            b->ids[i * T + t] = real ? ids[t] : 0;
            b->mask[i * T + t] = real;
            b->labels[i * T + t] = real ? lab[t] : ROAD_LABEL_IGNORE;
        }
        b->tokens += n;
    }
    return ROAD_OK;
}

static void free_batch(batch *b) {
    road__free(b->ids);
    road__free(b->mask);
    road__free(b->labels);
    memset(b, 0, sizeof *b);
}

/* The ragged micro-batch training runs: examples idx[0..B) as sequences over the dataset's
 * own token arrays, each with its targets (its labels shifted by one; the last ignored). */
typedef struct seq_batch {
    road_seq *seqs;
    const road_token **targets;
    road_token *mem;
    int64_t n, tokens;
} seq_batch;

static road_status make_seqs(const road_dataset *d, const int64_t *idx, int64_t B, seq_batch *b) {
    int64_t longest, total;
    road_status s = measure(d, idx, B, &longest, &total);
    if (s != ROAD_OK) return s;
    b->seqs = road__calloc((size_t)B, sizeof(road_seq));
    b->targets = road__calloc((size_t)B, sizeof(road_token *));
    b->mem = road__malloc(sizeof(road_token) * (size_t)(total > 0 ? total : 1));
    if (!b->seqs || !b->targets || !b->mem) return ROAD_ERR_NO_MEMORY;
    road_token *t = b->mem;
    for (int64_t i = 0; i < B; i++) {
        const road_token *ids, *lab;
        int64_t n;
        (void)road_dataset_example(d, idx[i], &ids, &lab, &n);
        if (n <= 0) continue;
        for (int64_t k = 0; k < n; k++) t[k] = k + 1 < n ? lab[k + 1] : ROAD_LABEL_IGNORE;
        b->seqs[b->n] = (road_seq){.tokens = ids, .n_tokens = n};
        b->targets[b->n++] = t;
        t += n;
        b->tokens += n;
    }
    return ROAD_OK;
}

static void free_seqs(seq_batch *b) {
    road__free(b->seqs);
    road__free(b->targets);
    road__free(b->mem);
    memset(b, 0, sizeof *b);
}

/* Token-weighted mean loss over a dataset (forward only). */
static road_status eval_loss(road_model *m, const road_dataset *d, int64_t batch_size,
                             double *out) {
    const int64_t n = road_dataset_count(d), V = road_model_config(m)->vocab_size;
    double sum = 0.0;
    int64_t counted = 0;
    int64_t *idx = road__malloc(sizeof(int64_t) * (size_t)batch_size);
    if (!idx) return ROAD_ERR_NO_MEMORY;
    road_status s = ROAD_OK;
    for (int64_t i0 = 0; i0 < n && s == ROAD_OK; i0 += batch_size) {
        int64_t B = n - i0 < batch_size ? n - i0 : batch_size;
        for (int64_t i = 0; i < B; i++) idx[i] = i0 + i;
        batch b = {0};
        s = make_batch(d, idx, B, &b);
        float *logits = s == ROAD_OK ? road__malloc(sizeof(float) * (size_t)(b.B * b.T * V)) : NULL;
        if (s == ROAD_OK && !logits) s = ROAD_ERR_NO_MEMORY;
        if (s == ROAD_OK) s = road_model_forward_padded(m, b.ids, b.mask, b.B, b.T, NULL, logits);
        double l = 0.0;
        if (s == ROAD_OK) s = road_causal_lm_loss(logits, b.labels, b.mask, b.B, b.T, V, &l);
        int64_t c = 0;
        for (int64_t r = 0; r < b.B && s == ROAD_OK; r++)
            for (int64_t t = 1; t < b.T; t++) c += b.labels[r * b.T + t] != ROAD_LABEL_IGNORE;
        sum += l * (double)c;
        counted += c;
        road__free(logits);
        free_batch(&b);
    }
    road__free(idx);
    if (s == ROAD_OK) *out = counted ? sum / (double)counted : NAN;
    return s;
}

static road_status save_adapters(road_adapter_set *set, const char *dir) {
    const int32_t n = road_adapter_set_active_count(set);
    const char *names[64];
    for (int32_t i = 0; i < n && i < 64; i++) names[i] = road_adapter_set_active_name(set, i);
    return road_adapter_set_save(set, dir, names, n < 64 ? n : 64);
}

road_status road_train(road_model *m, const road_dataset *train, const road_dataset *eval,
                       const road_train_params *p, road_train_fn on_step, void *user) {
    if (!m || !train || !p) return road__error(ROAD_ERR_INVALID_ARG, "road_train: NULL argument");
    if (!p->out_dir)
        return road__error(ROAD_ERR_INVALID_ARG, "road_train: an output folder is required");
    if (p->batch_size <= 0 || p->grad_accum <= 0 || (p->epochs <= 0 && p->max_steps <= 0))
        return road__error(ROAD_ERR_INVALID_ARG,
                           "road_train: batch_size and grad_accum must be positive, and epochs or "
                           "max_steps too (got %lld, %lld, %lld, %lld)",
                           (long long)p->batch_size, (long long)p->grad_accum, (long long)p->epochs,
                           (long long)p->max_steps);
    road_status s = road_adamw_params_check(&p->adamw);
    if (s != ROAD_OK) return s;
    road_adapter_set *set = road_model_adapters(m);
    if (p->full && road_adapter_set_enabled(set) && road_adapter_set_active_count(set) > 0)
        return road__error(ROAD_ERR_STATE,
                           "road_train: full fine-tuning trains the base weights, but adapter '%s' "
                           "is active (disable adapters, or train adapters without full)",
                           road_adapter_set_active_name(set, 0));
    if (!p->full && road_adapter_set_active_count(set) == 0)
        return road__error(ROAD_ERR_STATE,
                           "road_train: no active adapter to train (add one and make it active)");
    const int64_t n = road_dataset_count(train);
    const int64_t micro_per_epoch = (n + p->batch_size - 1) / p->batch_size;
    const int64_t steps_per_epoch = (micro_per_epoch + p->grad_accum - 1) / p->grad_accum;
    const int64_t total = p->max_steps > 0 ? p->max_steps : p->epochs * steps_per_epoch;
    road_schedule sched = p->schedule;
    if (sched.training_steps == 0) sched.training_steps = total;
    if ((s = road_schedule_check(&sched)) != ROAD_OK) return s;
    /* the output folder: the rule, this run's own checkpoints only, a finished run not redone */
    road_train_out out;
    if ((s = road_train_prepare_out(p, &out)) != ROAD_OK) return s;
    if (out.finished) {
        road__log(ROAD_LOG_INFO, "the run in %s finished at step %lld: nothing to train",
                  p->out_dir, (long long)out.step);
        return ROAD_OK;
    }
    char *identity = NULL;
    if ((s = road__train_identity(p, &identity)) != ROAD_OK) return s;

    if (p->config_json) { /* the run's configuration, for reproducibility */
        char *path = road__path_join(p->out_dir, "run_config.json");
        s = path ? road__file_write_atomic(path, p->config_json, strlen(p->config_json))
                 : ROAD_ERR_NO_MEMORY;
        road__free(path);
        if (s != ROAD_OK) {
            road__free(identity);
            return s;
        }
    }
    road_optimizer *opt = NULL;
    s = p->full ? road_optimizer_create_full(m, &p->adamw, &opt)
                : road_optimizer_create(set, NULL, 0, &p->adamw, &opt);
    if (s != ROAD_OK) {
        road__free(identity);
        return s;
    }
    int64_t epoch = 0, micro = 0; /* position: next micro-batch of epoch */
    if (p->resume) {
        char *path = NULL;
        int64_t step = 0;
        s = road_checkpoint_find_last(p->out_dir, &path, &step);
        if (s == ROAD_OK) {
            road_checkpoint_state st;
            s = road_checkpoint_load(opt, path, &st, NULL);
            if (s == ROAD_OK && st.n_data_pos >= 2) {
                epoch = st.data_pos[0];
                micro = st.data_pos[1];
                road__log(ROAD_LOG_INFO, "resuming from %s (step %lld)", path, (long long)step);
            } else if (s == ROAD_OK) {
                s = road__error(ROAD_ERR_FORMAT, "%s holds no data position; cannot resume", path);
            }
            road_string_free(path);
        } else if (s == ROAD_ERR_NOT_FOUND) {
            s = ROAD_OK; /* nothing to resume: start */
        }
        if (s == ROAD_OK && road_optimizer_step_count(opt) > total)
            s = road__error(ROAD_ERR_STATE,
                            "the run in '%s' resumes at step %lld, past this run's end (step "
                            "%lld): a run cannot be shortened after the fact; stop at a later "
                            "step, or start again with --overwrite",
                            p->out_dir, (long long)road_optimizer_step_count(opt),
                            (long long)total);
        if (s != ROAD_OK) {
            road_optimizer_free(opt);
            road__free(identity);
            return s;
        }
    }
    int64_t *perm = road__malloc(sizeof(int64_t) * (size_t)n);
    int64_t *idx = road__malloc(sizeof(int64_t) * (size_t)p->batch_size);
    if (!perm || !idx) s = ROAD_ERR_NO_MEMORY;
    if (s == ROAD_OK) epoch_order(p->seed, epoch, n, perm);
    road_adapter_set_train(set, true);
    road_model_set_recompute(m, p->recompute);
    int64_t peak_bytes = 0;
    const double t0 = now_s();
    int64_t tokens_total = 0, start_step = road_optimizer_step_count(opt);
    double best_eval = INFINITY;
    bool stopped = false;
    while (s == ROAD_OK && road_optimizer_step_count(opt) < total && !stopped) {
        if ((s = road_optimizer_zero_grad(opt)) != ROAD_OK) break;
        double loss_sum = 0.0;
        int64_t n_micro = 0, step_tokens = 0;
        for (int64_t a = 0; a < p->grad_accum && s == ROAD_OK; a++) {
            if (micro >= micro_per_epoch) { /* next epoch */
                if (p->max_steps <= 0 && epoch + 1 >= p->epochs) break;
                epoch++;
                micro = 0;
                epoch_order(p->seed, epoch, n, perm);
            }
            int64_t i0 = micro * p->batch_size, B = n - i0 < p->batch_size ? n - i0 : p->batch_size;
            for (int64_t i = 0; i < B; i++) idx[i] = perm[i0 + i];
            seq_batch b = {0};
            double l = 0.0;
            s = make_seqs(train, idx, B, &b);
            if (s == ROAD_OK) s = road_model_loss_backward_seqs(m, b.seqs, b.targets, b.n, &l);
            if (road_model_backward_bytes(m) > peak_bytes) peak_bytes = road_model_backward_bytes(m);
            step_tokens += b.tokens;
            free_seqs(&b);
            loss_sum += l;
            n_micro++;
            micro++;
            /* a step does not straddle epochs: an epoch's last step may have fewer micro-batches */
            if (micro >= micro_per_epoch) break;
        }
        if (s != ROAD_OK || n_micro == 0) break;
        road_train_metrics mt;
        memset(&mt, 0, sizeof mt);
        if (n_micro > 1) s = road_optimizer_scale_grads(opt, 1.0f / (float)n_micro);
        if (s == ROAD_OK)
            s = road_optimizer_clip_grad_norm(opt, p->max_grad_norm > 0 ? p->max_grad_norm : DBL_MAX,
                                              &mt.grad_norm);
        if (s == ROAD_OK) s = road_optimizer_step(opt, &sched, &mt.lr);
        if (s != ROAD_OK) break;
        tokens_total += step_tokens;
        mt.step = road_optimizer_step_count(opt);
        mt.total_steps = total;
        mt.epoch = epoch;
        mt.loss = loss_sum / (double)n_micro;
        mt.tokens = step_tokens;
        mt.elapsed_s = now_s() - t0;
        mt.tokens_per_s = mt.elapsed_s > 0 ? (double)tokens_total / mt.elapsed_s : 0.0;
        int64_t done = mt.step - start_step;
        mt.eta_s = done > 0 ? mt.elapsed_s / (double)done * (double)(total - mt.step) : 0.0;
        mt.eval_loss = NAN;
        mt.activation_bytes = peak_bytes;
        bool last = mt.step >= total;
        if (eval && ((p->eval_every > 0 && mt.step % p->eval_every == 0) || last)) {
            road_adapter_set_train(set, false);
            s = eval_loss(m, eval, p->batch_size, &mt.eval_loss);
            road_adapter_set_train(set, true);
            if (s == ROAD_OK && mt.eval_loss < best_eval) {
                best_eval = mt.eval_loss;
                char *best = road__path_join(p->out_dir, "best");
                s = !best ? ROAD_ERR_NO_MEMORY
                    : p->full ? road_model_save(m, best, p->save_dtype)
                              : save_adapters(set, best);
                road__free(best);
            }
            if (s != ROAD_OK) break;
        }
        if (on_step && !on_step(&mt, user)) stopped = true;
        if (p->stop && *p->stop) stopped = true;
        if ((p->save_every > 0 && mt.step % p->save_every == 0) || (stopped && !last)) {
            road_checkpoint_state st;
            memset(&st, 0, sizeof st);
            st.schedule = sched;
            st.n_data_pos = 2;
            st.data_pos[0] = epoch;
            st.data_pos[1] = micro;
            st.run_json = identity;
            char *path = NULL;
            s = road_checkpoint_path(p->out_dir, mt.step, &path);
            if (s == ROAD_OK) s = road_checkpoint_save(opt, &st, p->config_json, path);
            road_string_free(path);
        }
    }
    road_adapter_set_train(set, false);
    road_model_set_recompute(m, false);
    /* stopped on the last step: the run is complete all the same */
    if (stopped && road_optimizer_step_count(opt) >= total) stopped = false;
    if (s == ROAD_OK && !stopped)
        s = p->full ? road_model_save_files(m, p->out_dir, p->save_dtype)
                    : save_adapters(set, p->out_dir);
    /* after the final output: a crash before this resumes from the last checkpoint */
    if (s == ROAD_OK && !stopped)
        s = road__train_mark_finished(p->out_dir, identity, road_optimizer_step_count(opt));
    road__free(identity);
    if (p->full) road_model_set_full_training(m, false); /* frees the gradients */
    road__free(perm);
    road__free(idx);
    road_optimizer_free(opt);
    return s;
}
