/*
 * road/train.h - training RoAd adapters: AdamW, learning-rate schedules, gradient clipping and
 * accumulation, and checkpoints that resume a run exactly.
 *
 * The numbers follow what Hugging Face's Trainer does with PyTorch, so that a road run and a
 * PyTorch + PEFT run from the same start agree to float32 noise:
 *
 *  - AdamW is torch.optim.AdamW (amsgrad=False, maximize=False): decoupled weight decay, then
 *    the moments, then the bias-corrected step. Optimizer state (m, v) is float32 as in PyTorch.
 *  - Schedules are transformers' get_scheduler lambdas (constant, constant_with_warmup, linear,
 *    cosine with num_cycles 0.5). The Trainer calls scheduler.step() after optimizer.step(), so
 *    the update that makes step count s + 1 uses the multiplier of step s: the first update uses
 *    multiplier(0) (0 with warmup: the first update only applies weight decay and moves m, v).
 *  - Clipping is torch.nn.utils.clip_grad_norm_ over all trainable gradients.
 *
 * docs/training.md has the formulas, the order of operations and every choice made.
 *
 * Ownership: an optimizer borrows its adapter set (which must outlive it) and copies the names.
 */
#ifndef ROAD_TRAIN_H
#define ROAD_TRAIN_H

#include "road/llm.h"
#include "road/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- AdamW ------------------------------------------------------------------------------- */

/* Hyperparameters, double as PyTorch holds them (Python floats). Defaults are the issue's
 * (Hugging Face Trainer for RoAd per PEFT's docs): lr 1e-3, betas 0.9 / 0.999, eps 1e-8,
 * weight_decay 0. */
typedef struct road_adamw_params {
    double lr;           /* base learning rate; a schedule multiplies it */
    double beta1;        /* in [0, 1) */
    double beta2;        /* in [0, 1) */
    double eps;          /* >= 0 */
    double weight_decay; /* >= 0, decoupled: p *= 1 - lr * weight_decay */
} road_adamw_params;

ROAD_API road_adamw_params road_adamw_default_params(void);
/* Check ranges (the error names the field and the allowed range), as PyTorch's constructor. */
ROAD_API road_status road_adamw_params_check(const road_adamw_params *p);

/* One AdamW update of n float32 values, in place: step t (1-based, the count after this
 * update) with learning rate lr (this step's: base lr x schedule multiplier; hp->lr is not
 * read). Per element, in float32:
 *     p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
 *     p += -(lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 * The per-step scalars are computed in double, then rounded to float once (PyTorch computes
 * them as Python floats). m and v start at zero. */
ROAD_API road_status road_adamw_update(const road_adamw_params *hp, double lr, int64_t t, int64_t n,
                                       float *param, const float *grad, float *m, float *v);

/* ---- learning-rate schedules (transformers' get_scheduler) -------------------------------- */

typedef enum road_schedule_kind {
    ROAD_SCHEDULE_CONSTANT = 0,             /* 1 */
    ROAD_SCHEDULE_CONSTANT_WITH_WARMUP = 1, /* s / max(1, w) while s < w, then 1 */
    ROAD_SCHEDULE_LINEAR = 2,               /* warmup, then max(0, (N - s) / max(1, N - w)) */
    ROAD_SCHEDULE_COSINE = 3                /* warmup, then max(0, 0.5 (1 + cos(pi * progress)))
                                               with progress = (s - w) / max(1, N - w) */
} road_schedule_kind;

typedef struct road_schedule {
    road_schedule_kind kind;
    int64_t warmup_steps;   /* w >= 0 (ignored by constant) */
    int64_t training_steps; /* N >= 0 (read by linear and cosine) */
} road_schedule;

/* Constant, no warmup. */
ROAD_API road_schedule road_schedule_default(void);
/* transformers' names: "constant", "constant_with_warmup", "linear", "cosine". */
ROAD_API const char *road_schedule_name(road_schedule_kind k);
ROAD_API road_status road_schedule_parse(const char *name, road_schedule_kind *out);
ROAD_API road_status road_schedule_check(const road_schedule *s);
/* The multiplier of the base lr at scheduler step `step` (>= 0), in double as transformers'
 * lambdas compute it. sched == NULL: constant 1. */
ROAD_API double road_schedule_multiplier(const road_schedule *sched, int64_t step);

/* ---- the optimizer over an adapter set ---------------------------------------------------- */

/* Threads: one thread at a time per optimizer; a step writes the parameters of its set (or
 * model), so it follows that object's rule too. */
typedef struct road_optimizer road_optimizer;

/* AdamW over the parameters of the named adapters (names == NULL: the set's active adapters at
 * this call). Every name must be an active adapter of the set (only active adapters receive
 * gradients). Parameter tensors, in order: for each name, for each layer holding it
 * (ascending), its theta then its alpha. State (m, v) is one block, zeroed. */
ROAD_API road_status road_optimizer_create(road_adapter_set *set, const char *const *names,
                                           int32_t n, const road_adamw_params *hp,
                                           road_optimizer **out);
ROAD_API void road_optimizer_free(road_optimizer *o);
/* AdamW over every tensor of the model (full fine-tuning): turns full training on
 * (road_model_set_full_training); tensors in road_model_tensor_get order, keyed by their
 * Hugging Face names. Weight decay applies to weights only (not biases and norms), as the
 * Trainer's default parameter groups do. The adapter count is 0. */
ROAD_API road_status road_optimizer_create_full(road_model *m, const road_adamw_params *hp,
                                                road_optimizer **out);

ROAD_API const road_adamw_params *road_optimizer_params(const road_optimizer *o);
/* Updates done so far (PyTorch's state "step"; the scheduler's step count). */
ROAD_API int64_t road_optimizer_step_count(const road_optimizer *o);
ROAD_API int32_t road_optimizer_adapter_count(const road_optimizer *o);
ROAD_API const char *road_optimizer_adapter_name(const road_optimizer *o, int32_t i);

/* What a parameter tensor is: a RoAd parameter, or a modules_to_save copy's weight or bias
 * (copies are trained fully, with AdamW's weight decay applied to them as to every
 * parameter, as torch.optim.AdamW over PEFT's trainable parameters does). */
typedef enum road_optim_kind {
    ROAD_OPTIM_THETA = 0,
    ROAD_OPTIM_ALPHA = 1,
    ROAD_OPTIM_COPY_WEIGHT = 2, /* [out x in] */
    ROAD_OPTIM_COPY_BIAS = 3,   /* [out] */
    ROAD_OPTIM_MODEL = 4        /* a model tensor (full fine-tuning; road_model_tensor_get) */
} road_optim_kind;

/* One parameter tensor and its state (pointers valid until the set or optimizer changes).
 * Tensors come in this order: per trained adapter, per layer ascending, theta then alpha;
 * then per trained adapter, its modules_to_save copies (weight, then bias when present). */
typedef struct road_optim_tensor {
    const char *adapter;
    int32_t layer; /* index in the set */
    bool is_alpha; /* kind == ROAD_OPTIM_ALPHA */
    road_optim_kind kind;
    int32_t ndim;     /* 1, or 2 for a copy's weight */
    int64_t shape[2]; /* shape[0] * (ndim == 2 ? shape[1] : 1) == n */
    int64_t n;
    float *param; /* the layer's own array */
    float *grad;  /* the layer's gradient buffer */
    float *m, *v; /* the optimizer's state */
} road_optim_tensor;
ROAD_API int32_t road_optimizer_tensor_count(const road_optimizer *o);
ROAD_API int64_t road_optimizer_numel(const road_optimizer *o); /* sum of n */
ROAD_API road_status road_optimizer_tensor(road_optimizer *o, int32_t i, road_optim_tensor *out);
/* "base_model.model.<layer>.road_theta.<adapter>" (PEFT's in-memory state-dict key, which
 * names the adapter so several can be trained at once; ".road_alpha", and ".weight" / ".bias"
 * for modules_to_save copies) into buf; ROAD_ERR_INVALID_ARG if it does not fit. */
ROAD_API road_status road_optimizer_tensor_key(const road_optimizer *o, int32_t i, char *buf,
                                               size_t cap);

/* One update of every parameter with the gradients in the layers' buffers. The learning rate
 * is hp->lr x road_schedule_multiplier(sched, step count before this update) (sched NULL:
 * constant); *lr_used (may be NULL) gets it. Marks every updated adapter's parameters changed
 * so coefficient caches rebuild. Refused while adapters are merged, or when a tensor no longer
 * exists or changed size (adapter deleted/re-added since create). Gradients are left as they
 * are (call road_optimizer_zero_grad). */
ROAD_API road_status road_optimizer_step(road_optimizer *o, const road_schedule *sched,
                                         double *lr_used);
/* Zero the gradients of every layer the optimizer touches (PyTorch's zero_grad with
 * set_to_none=False; road_linear_zero_grads clears every adapter of those layers). */
ROAD_API road_status road_optimizer_zero_grad(road_optimizer *o);
/* Multiply every trainable gradient by `factor` (float32). Gradient accumulation over k
 * micro-batches: accumulate (road_model_loss_backward adds), then scale by 1/k once; see
 * docs/training.md for how this relates to Hugging Face dividing the loss. */
ROAD_API road_status road_optimizer_scale_grads(road_optimizer *o, float factor);
/* torch.nn.utils.clip_grad_norm_: total = 2-norm over all trainable gradients (summed in
 * double); if max_norm / (total + 1e-6) < 1 every gradient is multiplied by it (as float32).
 * *total_norm (may be NULL) gets the norm before clipping. A non-finite norm leaves gradients
 * unchanged and returns ROAD_ERR_NUMERIC (PyTorch would spread NaN through every parameter).
 * max_norm must be positive. */
ROAD_API road_status road_optimizer_clip_grad_norm(road_optimizer *o, double max_norm,
                                                   double *total_norm);

/* ---- checkpoints ------------------------------------------------------------------------- */

/* Most int64 values of data position a checkpoint holds (epoch, index, shuffle seed, ...). */
#define ROAD_CHECKPOINT_MAX_DATA_POS 16

/* The state of the random generator a run draws from (road's xoshiro256** + Box-Muller spare,
 * core/rng.h), as plain words so it can be saved exactly. */
typedef struct road_rng_state {
    uint64_t s[4];
    double spare;
    int32_t has_spare;
} road_rng_state;

/* What a checkpoint holds besides parameters and optimizer state. */
typedef struct road_checkpoint_state {
    road_schedule schedule; /* saved and given back; its step is the optimizer's count */
    road_rng_state rng;
    int32_t n_data_pos;                             /* 0..ROAD_CHECKPOINT_MAX_DATA_POS */
    int64_t data_pos[ROAD_CHECKPOINT_MAX_DATA_POS]; /* opaque to road */
    const char *run_json; /* save: what identifies the run (a JSON object's text, NULL: none),
                             kept in trainer_state.json as "run"; load leaves it NULL (read it
                             with road_checkpoint_read_run) */
} road_checkpoint_state;

/* Write a checkpoint folder `dir` (e.g. road_checkpoint_path(root, step)): the trainable
 * adapters as PEFT adapter folders (loadable by PEFT as they are), the optimizer state
 * (optimizer.safetensors), the step, schedule, RNG and data position (trainer_state.json), and
 * config_json (may be NULL) verbatim as run_config.json. Atomic: everything is written and
 * fsynced in a temporary folder next to `dir`, which is then renamed into place; on failure
 * the temporary folder is removed and an existing `dir` is unchanged. An existing `dir` is
 * replaced in one step (io/dir.h: swapped, then the old one removed) only when it is a
 * checkpoint folder; anything else there is refused (ROAD_ERR_EXISTS). */
ROAD_API road_status road_checkpoint_save(road_optimizer *o, const road_checkpoint_state *st,
                                          const char *config_json, const char *dir);
/* Load a checkpoint into an optimizer built over the same adapters and layers: parameters,
 * m, v and the step count. Everything is validated (adapters, layers, shapes, dtypes, the
 * adapters' variant and group size, state values) before anything changes: on error the set
 * and the optimizer are untouched and the message names the file and what differs.
 * st (may be NULL) gets the saved state; *config_json (may be NULL) gets run_config.json's text
 * (NULL if none was saved; free with road_string_free). */
ROAD_API road_status road_checkpoint_load(road_optimizer *o, const char *dir,
                                          road_checkpoint_state *st, char **config_json);
/* "<root>/checkpoint-<step>" (Hugging Face's name); free with road_string_free. */
ROAD_API road_status road_checkpoint_path(const char *root, int64_t step, char **out);
/* The checkpoint-<step> folder in `root` with the highest step (Trainer's "last checkpoint");
 * temporary folders of interrupted saves are ignored. ROAD_ERR_NOT_FOUND if none. */
ROAD_API road_status road_checkpoint_find_last(const char *root, char **path, int64_t *step);
/* The run identity stored in `dir`'s trainer_state.json (a checkpoint, or a finished run's
 * output folder) and its step, without loading anything else. *run_json: the "run" object's
 * text (NULL when the checkpoint carries none; free with road_string_free); finished (may be
 * NULL): whether dir is a finished run's output folder rather than a checkpoint. */
ROAD_API road_status road_checkpoint_read_run(const char *dir, char **run_json, int64_t *step,
                                              bool *finished);

/* ---- data ----------------------------------------------------------------------------------- */

/* Turns text into token ids (a tokenizer). *ids must come from road's allocator: the dataset
 * frees it with road_ids_free. add_special: add bos/eos as the model's tokenizer does. */
typedef road_status (*road_tokenize_fn)(void *tokenizer, const char *text, size_t len,
                                        bool add_special, road_token **ids, int64_t *n);

/* Threads: read-only once loaded: any threads at once (road_train only reads it). */
typedef struct road_dataset road_dataset;

typedef struct road_data_params {
    int64_t max_len;           /* truncate examples to this many tokens (> 0) */
    const road_tokenizer *tok; /* the model's tokenizer (text, prompt/completion, messages) */
    road_chat_params chat;     /* how "messages" examples are rendered (tok's template) */
    road_tokenize_fn tokenize; /* alternatively any tokenizer as a function (no "messages") */
    void *tokenizer;
    bool pack;                 /* concatenate examples (labels kept) into max_len sequences */
} road_data_params;

/* Defaults: max_len 512, no tokenizer, the tokenizer's own chat template. */
ROAD_API road_data_params road_data_default_params(void);

/* Load a JSONL file, one example per line:
 *   {"input_ids": [...]}                   loss on every token (pre-tokenized)
 *   {"input_ids": [...], "labels": [...]}  labels as transformers takes them (-100 = no loss)
 *   {"text": "..."}                        loss on every token (needs a tokenizer)
 *   {"prompt": "...", "completion": "..."} loss on the completion only (needs a tokenizer)
 *   {"messages": [{"role": ..., "content": ...}, ...]}  a chat rendered with the chat template;
 *                                          loss on the assistant turns (needs p->tok) 
 * Blank lines are skipped. A bad line is reported with its line number and what is wrong;
 * a file with no usable example is refused. */
ROAD_API road_status road_dataset_load_jsonl(const char *path, const road_data_params *p,
                                             road_dataset **out);
/* The same from text in memory (errors name "(memory)" instead of a file). */
ROAD_API road_status road_dataset_parse_jsonl(const char *text, size_t len,
                                              const road_data_params *p, road_dataset **out);
ROAD_API void road_dataset_free(road_dataset *d);
ROAD_API int64_t road_dataset_count(const road_dataset *d);

/* What loading did with the file's lines, per reason. Each non-blank line is one record and
 * ends in exactly one of: kept whole, kept truncated, or skipped for one reason. Loading also
 * logs one ROAD_LOG_WARN line with these counts when anything was truncated or skipped. */
typedef struct road_data_stats {
    int64_t lines;              /* non-blank lines (records) read */
    int64_t examples;           /* records kept (before packing: road_dataset_count counts the
                                   packed sequences) */
    int64_t truncated;          /* kept, cut to max_len tokens: the tokens past it unused */
    int64_t truncated_tokens;   /* tokens those cuts dropped */
    int64_t skipped_past_max_len; /* every token with a loss lies at or past max_len (a prompt
                                     of max_len tokens or more): nothing left to learn */
    int64_t skipped_no_loss;    /* no token carries a loss even uncut (an empty completion,
                                   labels all -100) */
    int64_t skipped_short;      /* fewer than 2 tokens: nothing to predict */
    int64_t max_len;            /* the max_len it was loaded with */
} road_data_stats;
/* The counts of the load that made d (zeros for NULL). */
ROAD_API road_data_stats road_dataset_stats(const road_dataset *d);
/* Tokens of example i (ids and labels, each n long; labels -100 where no loss). */
ROAD_API road_status road_dataset_example(const road_dataset *d, int64_t i, const road_token **ids,
                                          const road_token **labels, int64_t *n);
ROAD_API void road_ids_free(road_token *ids);
/* Room for n ids from road's allocator (for road_tokenize_fn implementations). */
ROAD_API road_token *road_ids_alloc(int64_t n);

/* ---- the training loop ---------------------------------------------------------------------- */

typedef struct road_train_metrics {
    int64_t step, total_steps, epoch;
    double loss;        /* mean of the step's micro-batch losses (as Hugging Face logs it) */
    double lr;          /* used by this step */
    double grad_norm;   /* before clipping */
    int64_t tokens;     /* tokens this step */
    double tokens_per_s, elapsed_s, eta_s;
    double eval_loss;   /* NaN unless evaluated at this step */
    int64_t activation_bytes; /* the largest backward's activations and buffers so far */
} road_train_metrics;

/* Called after every optimizer step; return false to stop (a checkpoint is written first). */
typedef bool (*road_train_fn)(const road_train_metrics *m, void *user);

typedef struct road_train_params {
    road_adamw_params adamw;
    road_schedule schedule;     /* training_steps is filled in from the data when 0 */
    int64_t epochs;             /* > 0 */
    int64_t max_steps;          /* > 0: stop after this many optimizer steps (overrides epochs) */
    int64_t batch_size;         /* examples per micro-batch */
    int64_t grad_accum;         /* micro-batches per optimizer step */
    double max_grad_norm;       /* <= 0: no clipping (HF default 1.0) */
    uint64_t seed;              /* shuffling */
    int64_t eval_every;         /* steps; 0: only at the end (if an eval set is given) */
    int64_t save_every;         /* steps; 0: no intermediate checkpoints */
    const char *out_dir;        /* checkpoints (checkpoint-<step>), best/ and final adapters */
    bool resume;                /* continue from the last checkpoint in out_dir */
    const volatile int *stop;   /* set non-zero (e.g. from a signal handler) to stop cleanly */
    const char *config_json;    /* the run's configuration (any JSON text): written to
                                   out_dir/run_config.json and into every checkpoint; may be NULL */
    bool recompute;             /* recompute block activations in backward (less memory) */
    bool full;                  /* full fine-tuning: train every weight of the model instead of
                                   adapters (adapters must be disabled or absent); the model is
                                   saved to out_dir (and best/) as a checkpoint folder */
    road_dtype save_dtype;      /* full: dtype of the saved weights (F32 default, BF16, F16) */
    bool overwrite;             /* a fresh run (resume false) may replace a training run that
                                   out_dir holds (checkpoints, a final output); else refused */
    const char *run_json;       /* what identifies the run besides road_train's own settings (a
                                   JSON object's text: model, data files, adapter config...; may
                                   be NULL); with the settings that change the result it goes
                                   into every checkpoint, and resume refuses a checkpoint whose
                                   identity differs (docs/training.md) */
    const char *const *inputs;  /* paths the run reads (model folder, data files): out_dir may
                                   not be one of them nor hold one; may be NULL */
    int32_t n_inputs;
} road_train_params;

ROAD_API road_train_params road_train_default_params(void);

/* Train the model's active adapter(s) on `train` (and evaluate on `eval`, may be NULL).
 * Batches of padded examples (right padding, labels -100 there), shuffled each epoch from the
 * seed; gradients accumulated over grad_accum micro-batches and divided by it, clipped, one
 * AdamW step with the schedule's learning rate. Checkpoints every save_every steps and when
 * stopped; with resume, the run continues from the last checkpoint so that the sequence of
 * losses is the one an uninterrupted run gives. At the end the adapters are saved to out_dir
 * and, with an eval set, the best-eval ones to out_dir/best, as PEFT saves them (an adapter
 * named "default" at the top of the folder, any other in a sub-folder named after it), each
 * save one unit; then out_dir/trainer_state.json marks the run finished. out_dir is checked
 * first (road_train_prepare_out); resuming a finished run returns ROAD_OK at once, training
 * nothing (on_step is not called). */
ROAD_API road_status road_train(road_model *m, const road_dataset *train,
                                const road_dataset *eval, const road_train_params *p,
                                road_train_fn on_step, void *user);

/* What road_train_check_out found in out_dir. */
typedef struct road_train_out {
    bool has_run;  /* out_dir holds a training run: checkpoints, or a final output */
    bool finished; /* resume: the run finished already, with this identity: nothing to train */
    int64_t step;  /* resume: the step it continues from (0: the start), or finished at */
} road_train_out;

/* Check out_dir for this run without touching it (besides repairing what a killed writer left
 * and creating its parent folders), in milliseconds, before the model is loaded: the rule of
 * road/outdir.h (a training output folder road wrote; never an input, the current or home
 * folder); a fresh run (resume false) into a folder that holds a run is refused unless
 * overwrite (ROAD_ERR_EXISTS); resume refuses a checkpoint or finished run whose identity
 * differs (ROAD_ERR_STATE, naming the differing fields). The identity is p->run_json plus the
 * settings that change the result (docs/training.md). */
ROAD_API road_status road_train_check_out(const road_train_params *p, road_train_out *info);
/* road_train_check_out, then make out_dir ready: a fresh run with overwrite replaces the run
 * it holds by an empty folder (in one step). road_train calls it; call it yourself before
 * opening files inside out_dir. */
ROAD_API road_status road_train_prepare_out(const road_train_params *p, road_train_out *info);

/* ---- memory ---------------------------------------------------------------------------------- */

/* What a road_train run holds at its peak, in bytes, by part (docs/training.md has the formula
 * and how it is checked). A micro-batch holds at most batch_size sequences of at most
 * max_seq_len tokens: tokens = batch_size x max_seq_len bounds its rows. */
typedef struct road_train_memory {
    int64_t tokens;      /* batch_size x max_seq_len: the rows of the largest micro-batch */
    int64_t weights;     /* road_model_weight_bytes + the trained adapters' parameters */
    int64_t gradients;   /* one float per trainable parameter */
    int64_t optimizer;   /* AdamW's m and v: two floats per trainable parameter */
    /* backward's activations and working buffers per token of the micro-batch (the per-token
     * part of what road_model_backward_bytes reports), without and with recomputation */
    int64_t act_per_token;
    int64_t act_per_token_recompute;
    int64_t attention;   /* attention's backward scratch: threads x (2, or 3 with a logit
                            softcap) x max_seq_len^2 floats */
    int64_t activations; /* tokens x act_per_token(_recompute, as p->recompute says) + attention:
                            an upper bound of road_model_backward_bytes for every micro-batch */
    int64_t workspaces;  /* per-row bookkeeping of backward, the adapters' cached rotation
                            coefficients, the loop's small tables (64 kB allowed), and with an
                            eval set the eval forward's buffers and logits */
    int64_t total;       /* weights + gradients + optimizer + activations + workspaces */
} road_train_memory;

/* The memory road_train(m, ..., p) will hold for micro-batches of p->batch_size sequences of at
 * most max_seq_len tokens (the longest example; eval batches too when with_eval): before any of
 * it is spent. The trained parameters are the model's active adapters, or every tensor with
 * p->full. The model's own thread count sizes attention's scratch. Not counted: the data sets
 * and the tokenizer (loaded before), and the epoch's order (8 bytes per example). */
ROAD_API road_status road_train_memory_estimate(road_model *m, const road_train_params *p,
                                                int64_t max_seq_len, bool with_eval,
                                                road_train_memory *out);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_TRAIN_H */
