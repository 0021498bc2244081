/*
 * cli/cmd_train.c - `road train`: fine-tune a RoAd adapter on a JSONL file and write a PEFT
 * adapter folder. A live progress line on a terminal, a JSONL log of every step, checkpoints,
 * --resume, and Ctrl-C writing a checkpoint before it exits.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"

#define CMD "train"
/* Bytes read at a time while hashing a data file. */
#define HASH_CHUNK (1 << 16)

static volatile int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

typedef struct train_opts {
    const char *model, *data, *eval, *out, *name, *variant, *targets, *schedule, *log;
    int64_t group_size, warmup, epochs, max_steps, batch_size, grad_accum, max_len, seed;
    int64_t eval_every, save_every, threads;
    double lr, weight_decay, max_grad_norm;
    road_dtype save_dtype;
    cli_quant qz;
    cli_chat chat_opts;
    bool resume, overwrite, recompute, pack, full, ignore_memory;
    uint64_t given;
} train_opts;

/* The rows with a JSON key go to OUT/run_config.json in this order (cli_json_add). The
 * defaults are road_train_default_params()'s, but for the schedule (linear, as the Trainer's)
 * and the data settings, which are the CLI's. */
static const cli_flag flags[] = {
    {CLI_STR("--model", train_opts, model, "DIR", NULL, "the base model folder"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--data", train_opts, data, "FILE.jsonl", NULL, "training examples"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--out", train_opts, out, "DIR", NULL,
             "the adapter folder (with --full: the model folder) to write"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--eval", train_opts, eval, "FILE.jsonl", NULL,
             "held-out data: eval loss every --eval-every steps and at the end; the best adapter "
             "goes to OUT/best")},
    {CLI_STR("--name", train_opts, name, "NAME", "default",
             "adapter name: the default one is saved at the top of OUT, another in OUT/NAME")},
    {CLI_STR("--variant", train_opts, variant, "road_1|road_2|road_4", NULL,
             "RoAd variant (default road_1)")},
    {CLI_INT("--group-size", train_opts, group_size, "N", 2, 1 << 30, NULL,
             "RoAd group size (default 64)")},
    {CLI_STR("--targets", train_opts, targets, "SPEC", NULL,
             "all-linear | q_proj,v_proj | regex (default: the model's)")},
    {CLI_FLOAT("--lr", train_opts, lr, "X", 0.0, 10.0, "1e-3",
               "peak learning rate (PEFT's RoAd recommendation)"),
     .json = "lr"},
    {CLI_FLOAT("--weight-decay", train_opts, weight_decay, "X", 0.0, 10.0, "0",
               "AdamW's decoupled weight decay"),
     .json = "weight_decay"},
    {CLI_STR("--schedule", train_opts, schedule, "constant|constant_with_warmup|linear|cosine",
             "linear", "learning-rate schedule"),
     .json = "schedule"},
    {CLI_INT("--warmup", train_opts, warmup, "N", 0, 1LL << 40, "0", "warmup steps"),
     .json = "warmup_steps"},
    {CLI_INT("--epochs", train_opts, epochs, "N", 1, 1000000, "1", "passes over the data"),
     .json = "epochs"},
    {CLI_INT("--max-steps", train_opts, max_steps, "N", 1, 1LL << 40, NULL,
             "optimizer steps (overrides --epochs)"),
     .json = "max_steps"},
    {CLI_INT("--batch-size", train_opts, batch_size, "N", 1, 1 << 20, "8",
             "examples per micro-batch"),
     .json = "batch_size"},
    {CLI_INT("--grad-accum", train_opts, grad_accum, "N", 1, 1 << 20, "1",
             "micro-batches per optimizer step"),
     .json = "grad_accum"},
    {CLI_INT("--max-len", train_opts, max_len, "N", 2, 1 << 24, "512", "truncate examples"),
     .json = "max_len"},
    {CLI_FLOAT("--max-grad-norm", train_opts, max_grad_norm, "X", 0.0, 1e30, "1.0",
               "gradient clipping (0: none)"),
     .json = "max_grad_norm"},
    {CLI_INT("--seed", train_opts, seed, "N", 0, INT64_MAX, "42", "adapter init and shuffling"),
     .json = "seed"},
    {CLI_SW("--ignore-memory-check", train_opts, ignore_memory,
            "train even when the memory estimate exceeds the memory available (MemAvailable, or "
            "$ROAD_TRAIN_MEMORY_BUDGET)")},
    {CLI_SW("--pack", train_opts, pack, "concatenate examples into --max-len sequences"),
     .json = "pack"},
    {CLI_SW("--recompute", train_opts, recompute,
            "recompute activations in backward (less memory)"),
     .json = "recompute"},
    CLI_CHAT_FLAGS(train_opts),
    {CLI_INT("--eval-every", train_opts, eval_every, "N", 0, 1LL << 40, "0",
             "steps between eval losses (0: at the end only)")},
    {CLI_INT("--save-every", train_opts, save_every, "N", 0, 1LL << 40, "0",
             "steps between checkpoints (0: none)")},
    {CLI_SW("--resume", train_opts, resume,
            "continue the run in OUT from its last checkpoint (only a run with the same model, "
            "data and settings; a finished run is reported and not trained again)")},
    {CLI_SW("--overwrite", train_opts, overwrite,
            "replace a training run OUT already holds (without it, a fresh run into such a "
            "folder is refused)")},
    {CLI_SW("--full", train_opts, full,
            "full fine-tuning: train every weight (no adapter); OUT becomes a model folder "
            "(config, weights, tokenizer)")},
    {CLI_DTYPE("--save-dtype", train_opts, save_dtype, NULL,
               "with --full: dtype of the saved weights (default f32)")},
    {CLI_STR("--log", train_opts, log, "FILE.jsonl", NULL,
             "every step's metrics (default OUT/train_log.jsonl)")},
    CLI_THREADS_FLAG(train_opts),
    CLI_QUANT_FLAGS(train_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .about =
        "data (one JSON object per line): {\"input_ids\": [...]} (+ optional \"labels\", -100 =\n"
        "no loss); {\"text\": ...} and {\"prompt\": ..., \"completion\": ...} need the model's\n"
        "tokenizer.\n",
    CLI_TABLE(flags, train_opts),
};

typedef struct progress {
    FILE *log;
    int tty;
    double last_loss;
    int64_t act_bytes;
} progress;

/* Peak resident memory of this process (VmHWM), in bytes; -1 if unknown. */
static long long peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atoll(line + 6);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

static bool on_step(const road_train_metrics *m, void *user) {
    progress *p = user;
    p->last_loss = m->loss;
    p->act_bytes = m->activation_bytes;
    if (p->log) {
        fprintf(
            p->log,
            "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.6f, \"lr\": %.6g, "
            "\"grad_norm\": %.6g, \"tokens\": %lld, \"tokens_per_s\": %.1f, \"elapsed_s\": %.2f",
            (long long)m->step, (long long)m->epoch, m->loss, m->lr, m->grad_norm,
            (long long)m->tokens, m->tokens_per_s, m->elapsed_s);
        if (!isnan(m->eval_loss)) fprintf(p->log, ", \"eval_loss\": %.6f", m->eval_loss);
        fprintf(p->log, "}\n");
        fflush(p->log);
    }
    char ev[32] = "";
    if (!isnan(m->eval_loss)) snprintf(ev, sizeof ev, "  eval %.4f", m->eval_loss);
    fprintf(stderr,
            "%sstep %lld/%lld  loss %.4f%s  lr %.3g  %.0f tok/s  %.0fs elapsed, ETA %.0fs%s",
            p->tty ? "\r" : "", (long long)m->step, (long long)m->total_steps, m->loss, ev, m->lr,
            m->tokens_per_s, m->elapsed_s, m->eta_s, p->tty ? "\033[K" : "\n");
    if (!isnan(m->eval_loss) && p->tty) fprintf(stderr, "\n");
    return true;
}

/* ---- the memory check ---------------------------------------------------------------------- */

/* The environment variable that sets the memory a run may hold in all (bytes, or with a k, M
 * or G suffix, powers of 1024), instead of what /proc/meminfo says is available. */
#define BUDGET_ENV "ROAD_TRAIN_MEMORY_BUDGET"

/* MemAvailable from /proc/meminfo in bytes; -1 if unknown. */
static long long mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0) kb = atoll(line + 13);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* "123", "512M", "1.5G" as bytes; -1 if malformed. */
static long long parse_size(const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return -1;
    double mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024.0, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1024.0 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end || v * mul > 9e18) return -1;
    return (long long)(v * mul);
}

/* The longest example of a data set (0 for NULL). */
static int64_t longest_example(const road_dataset *d) {
    int64_t best = 0;
    for (int64_t i = 0; d && i < road_dataset_count(d); i++) {
        const road_token *ids, *lab;
        int64_t n = 0;
        if (road_dataset_example(d, i, &ids, &lab, &n) == ROAD_OK && n > best) best = n;
    }
    return best;
}

/* Bytes for people: "812.3 MB", "19.04 GB" (decimal units, as `road train` prints them). */
typedef struct size_text {
    char s[32];
} size_text;
static size_text human(long long bytes) {
    size_text t;
    if (bytes >= 1000000000LL)
        snprintf(t.s, sizeof t.s, "%.2f GB", (double)bytes / 1e9);
    else
        snprintf(t.s, sizeof t.s, "%.1f MB", (double)bytes / 1e6);
    return t;
}

/* What must fit: the whole run against a budget, or, against MemAvailable read after the model
 * loaded, what the run will still allocate (its weights are in memory already). */
static int64_t need_of(const road_train_memory *e, bool budget) {
    return budget ? e->total : e->total - e->weights;
}

/* The estimate for this batch size and recompute setting (never fits if it cannot be made). */
static road_train_memory estimate_at(road_model *m, const road_train_params *tp, int64_t batch,
                                     bool recompute, int64_t len, bool with_eval) {
    road_train_params q = *tp;
    q.batch_size = batch;
    q.recompute = recompute;
    road_train_memory e;
    if (road_train_memory_estimate(m, &q, len, with_eval, &e) != ROAD_OK) {
        memset(&e, 0, sizeof e);
        e.total = INT64_MAX;
    }
    return e;
}

/* The largest batch size <= hi whose estimate fits (0: none); the estimate grows with it. */
static int64_t largest_batch(road_model *m, const road_train_params *tp, int64_t hi, bool rc,
                             int64_t len, bool with_eval, bool budget, long long avail) {
    int64_t lo = 0;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        road_train_memory e = estimate_at(m, tp, mid, rc, len, with_eval);
        if (need_of(&e, budget) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* The longest --max-len at which one sequence a micro-batch, recomputing, fits (0: none). */
static int64_t largest_len(road_model *m, const road_train_params *tp, int64_t hi, bool with_eval,
                           bool budget, long long avail) {
    int64_t lo = 0;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo + 1) / 2;
        road_train_memory e = estimate_at(m, tp, 1, true, mid, with_eval);
        if (need_of(&e, budget) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Print the estimate (stderr) and refuse a run that will not fit, naming settings that would:
 * returns CLI_EXIT_OK to train. */
static int memory_check(road_model *m, const road_train_params *tp, const road_dataset *train,
                        const road_dataset *eval, bool ignore, road_train_memory *est) {
    const int64_t lt = longest_example(train), le = longest_example(eval);
    const int64_t len = lt > le ? lt : le > 0 ? le : 1, B = tp->batch_size;
    const bool with_eval = eval != NULL, rc = tp->recompute;
    road_train_memory e;
    road_status s = road_train_memory_estimate(m, tp, len, with_eval, &e);
    if (s != ROAD_OK) return cli_fail(CMD, "estimating memory", s);
    *est = e;
    const int64_t act_rc = e.act_per_token_recompute * e.tokens + e.attention;
    const int64_t act_full = e.act_per_token * e.tokens + e.attention;
    fprintf(stderr,
            "road train: memory for micro-batches of %lld x %lld tokens (the longest example)%s:\n"
            "  weights      %12s\n"
            "  gradients    %12s\n"
            "  optimizer    %12s  (AdamW's m and v)\n"
            "  activations  %12s  (%.1f kB a token %s, %.1f kB %s: %s; attention scratch %s)\n"
            "  workspaces   %12s\n"
            "  total        %12s\n",
            (long long)B, (long long)len, rc ? ", --recompute" : "", human(e.weights).s,
            human(e.gradients).s, human(e.optimizer).s, human(e.activations).s,
            (rc ? e.act_per_token_recompute : e.act_per_token) / 1e3, rc ? "recomputing" : "kept",
            (rc ? e.act_per_token : e.act_per_token_recompute) / 1e3,
            rc ? "without --recompute" : "with --recompute", human(rc ? act_full : act_rc).s,
            human(e.attention).s, human(e.workspaces).s, human(e.total).s);
    const char *env = getenv(BUDGET_ENV);
    const bool budget = env && *env;
    const long long avail = budget ? parse_size(env) : mem_available();
    if (budget && avail < 0) {
        cli_error(CMD, "%s='%s' is not a size (bytes, or a number with k, M or G)", BUDGET_ENV,
                  env);
        return CLI_EXIT_USAGE;
    }
    if (avail < 0) {
        fprintf(stderr,
                "road train: MemAvailable unknown (no /proc/meminfo): memory not checked\n");
        return CLI_EXIT_OK;
    }
    const int64_t need = need_of(&e, budget);
    const char *against = budget ? BUDGET_ENV : "MemAvailable";
    if (budget)
        fprintf(stderr, "road train: needs %s of %s (%s)%s\n", human(need).s, human(avail).s,
                against, need <= avail ? "" : ": does not fit");
    else
        fprintf(stderr,
                "road train: needs %s more (the weights are loaded) of %s available (%s)%s\n",
                human(need).s, human(avail).s, against, need <= avail ? "" : ": does not fit");
    if (need <= avail) return CLI_EXIT_OK;
    if (ignore) {
        fprintf(stderr, "road train: warning: training anyway (--ignore-memory-check)\n");
        return CLI_EXIT_OK;
    }
    cli_error(CMD, "not enough memory: %lld x %lld tokens%s need %s, %s has %s. Settings that fit:",
              (long long)B, (long long)len, rc ? " with --recompute" : "", human(need).s, against,
              human(avail).s);
    const int64_t per_step = B * tp->grad_accum;
    bool any = false;
    if (!rc) {
        road_train_memory r = estimate_at(m, tp, B, true, len, with_eval);
        if (need_of(&r, budget) <= avail) {
            fprintf(stderr, "  %-44s(needs %s)\n", "--recompute", human(need_of(&r, budget)).s);
            any = true;
        }
    }
    for (int k = rc; k < 2; k++) {
        int64_t b = largest_batch(m, tp, B - 1, k, len, with_eval, budget, avail);
        while (b > 1 && per_step % b != 0) b--; /* the same examples a step */
        if (b <= 0) continue;
        road_train_memory r = estimate_at(m, tp, b, k, len, with_eval);
        char sug[96];
        snprintf(sug, sizeof sug, "--batch-size %lld --grad-accum %lld%s", (long long)b,
                 (long long)(per_step / b), k ? " --recompute" : "");
        fprintf(stderr, "  %-44s(needs %s; %lld examples a step, as now)\n", sug,
                human(need_of(&r, budget)).s, (long long)per_step);
        any = true;
    }
    if (!any) { /* not even one sequence: a shorter --max-len */
        const int64_t l = largest_len(m, tp, len - 1, with_eval, budget, avail);
        if (l >= 2) {
            char sug[96];
            snprintf(sug, sizeof sug, "--batch-size 1 --grad-accum %lld --recompute --max-len %lld",
                     (long long)per_step, (long long)l);
            fprintf(stderr, "  %s\n", sug);
        } else {
            fprintf(stderr, "  none: the weights, gradients and optimizer state alone need "
                            "more; use a machine with more memory\n");
        }
    }
    fprintf(stderr,
            "  (--ignore-memory-check trains anyway; %s=SIZE sets the memory to check "
            "against)\n",
            BUDGET_ENV);
    return CLI_EXIT_FAIL;
}

/* FNV-1a 64 of a file's bytes: enough to notice that a data file changed (not a security
 * hash). -1 when the file cannot be read. */
static int hash_file(const char *path, long long *bytes, char hex[17]) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static unsigned char buf[HASH_CHUNK];
    uint64_t h = 0xcbf29ce484222325ULL;
    long long total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001b3ULL;
        total += (long long)n;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) return -1;
    *bytes = total;
    snprintf(hex, 17, "%016" PRIx64, h);
    return 0;
}

/* {"path": realpath, "bytes": n, "hash": fnv} of a file (NULL if unreadable). */
static cJSON *file_identity(const char *path) {
    char real[PATH_MAX], hex[17];
    long long bytes = 0;
    if (!realpath(path, real) || hash_file(path, &bytes, hex) != 0) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", real);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddStringToObject(o, "hash", hex);
    return o;
}

/* What identifies the run besides road_train's own settings (docs/training.md): the model
 * (folder, config.json and tokenizer.json hashes, bytes of its weight files), the data file,
 * the adapter config, the data settings and the quantization the base is trained under. */
static char *run_identity(const char *model, const char *data, const road_config *cfg, bool full,
                          int64_t max_len, bool packing, const cli_quant *qz) {
    cJSON *run = cJSON_CreateObject(), *mo = cJSON_AddObjectToObject(run, "model");
    char real[PATH_MAX], path[PATH_MAX + 32];
    cJSON_AddStringToObject(mo, "path", realpath(model, real) ? real : model);
    static const char *const files[] = {"config.json", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        char hex[17] = "absent";
        long long bytes = 0;
        snprintf(path, sizeof path, "%s/%s", model, files[i]);
        if (hash_file(path, &bytes, hex) != 0) snprintf(hex, sizeof hex, "absent");
        cJSON_AddStringToObject(mo, i ? "tokenizer_hash" : "config_hash", hex);
    }
    long long wbytes = 0;
    DIR *d = opendir(model);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", model, e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0 && stat(path, &st) == 0)
            wbytes += (long long)st.st_size;
    }
    if (d) closedir(d);
    cJSON_AddNumberToObject(mo, "weights_bytes", (double)wbytes);
    cJSON *df = file_identity(data);
    if (df) cJSON_AddItemToObject(run, "data", df);
    cJSON *dset = cJSON_AddObjectToObject(run, "data_settings");
    cJSON_AddNumberToObject(dset, "max_len", (double)max_len);
    cJSON_AddBoolToObject(dset, "pack", packing);
    cJSON *q = cJSON_AddObjectToObject(run, "quantize");
    cJSON_AddStringToObject(q, "format", qz->format ? qz->format : "none");
    cJSON_AddBoolToObject(q, "lm_head", qz->lm_head);
    cJSON_AddBoolToObject(q, "double_quant", qz->double_quant);
    char *adapter_json = NULL;
    if (!full && road_config_to_json(cfg, &adapter_json) == ROAD_OK) {
        cJSON *a = NULL;
        if (road_json_parse(adapter_json, strlen(adapter_json), &a) != ROAD_OK) a = NULL;
        /* the model is identified above by its resolved path, whatever path was typed */
        cJSON_DeleteItemFromObjectCaseSensitive(a, "base_model_name_or_path");
        if (a) cJSON_AddItemToObject(run, "adapter", a);
    }
    road_string_free(adapter_json);
    char *text = cJSON_PrintUnformatted(run);
    cJSON_Delete(run);
    return text;
}

int cmd_train(int argc, char **argv) {
    train_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    const char *model = o.model, *data = o.data, *evalf = o.eval, *out = o.out, *name = o.name;
    const char *variant = o.variant, *targets = o.targets, *logp = o.log;
    const bool resume = o.resume, overwrite = o.overwrite, recompute = o.recompute;
    const bool packing = o.pack, full = o.full, gs = cli_given(&spec, &o, "--group-size");
    const int64_t max_len = o.max_len;
    const cli_quant qz = o.qz;
    if (resume && overwrite) {
        cli_error(CMD, "--resume continues the run in '%s' and --overwrite replaces it: choose one",
                  out);
        return CLI_EXIT_USAGE;
    }
    road_train_params tp = road_train_default_params();
    tp.epochs = o.epochs;
    tp.max_steps = o.max_steps;
    tp.batch_size = o.batch_size;
    tp.grad_accum = o.grad_accum;
    tp.schedule.warmup_steps = o.warmup;
    tp.eval_every = o.eval_every;
    tp.save_every = o.save_every;
    tp.seed = (uint64_t)o.seed;
    tp.adamw.lr = o.lr;
    tp.adamw.weight_decay = o.weight_decay;
    tp.max_grad_norm = o.max_grad_norm;
    road_status s;
    tp.full = full;
    if (cli_given(&spec, &o, "--save-dtype")) {
        if (!full) {
            cli_error(CMD, "--save-dtype applies to --full (adapters are saved in float32)");
            return CLI_EXIT_USAGE;
        }
        tp.save_dtype = o.save_dtype;
    }
    if (full && (variant || gs || targets || strcmp(name, "default") != 0)) {
        cli_error(CMD, "--full trains every weight of the model: --variant, --group-size, "
                       "--targets and --name are for adapters");
        return CLI_EXIT_USAGE;
    }
    if ((s = road_schedule_parse(o.schedule, &tp.schedule.kind)) != ROAD_OK) {
        cli_error(CMD, "%s", road_last_error());
        return CLI_EXIT_USAGE;
    }
    road_config *cfg = NULL;
    if ((s = road_config_create(&cfg)) != ROAD_OK) return cli_fail(CMD, "config", s);
    int rc = CLI_EXIT_USAGE;
    road_model *m = NULL;
    road_tokenizer *tok = NULL;
    cJSON *chat_kwargs = NULL;
    road_dataset *dtrain = NULL, *deval = NULL;
    FILE *logf = NULL;
    char *cfg_json = NULL, *run_json = NULL;
    road_train_memory est = {0};
    const char *inputs[3] = {model, data, evalf};
    if (variant) {
        road_variant vv;
        if ((s = road_variant_parse(variant, &vv)) != ROAD_OK) goto bad;
        road_config_set_variant(cfg, vv);
    }
    if (gs && (s = road_config_set_group_size(cfg, o.group_size)) != ROAD_OK) goto bad;
    if (targets && (s = road_config_set_targets_from_string(cfg, targets)) != ROAD_OK) goto bad;
    road_config_set_task_type(cfg, "CAUSAL_LM");
    road_config_set_base_model(cfg, model);
    rc = CLI_EXIT_FAIL;
    /* The output folder first, in milliseconds, before the model is loaded: the rule for
     * output folders, and with --resume whether the run there is this one (or finished). */
    tp.out_dir = out;
    tp.resume = resume;
    tp.overwrite = overwrite;
    tp.inputs = inputs;
    tp.n_inputs = evalf ? 3 : 2;
    tp.full = full;
    if (!(run_json = run_identity(model, data, cfg, full, max_len, packing, &qz))) {
        cli_error(CMD, "out of memory");
        goto done;
    }
    tp.run_json = run_json;
    road_train_out where;
    if ((s = road_train_check_out(&tp, &where)) != ROAD_OK) {
        rc = cli_fail(CMD, "output folder", s);
        goto done;
    }
    if (where.finished) {
        printf("the run in %s already finished at step %lld (same model, data and settings): "
               "nothing to train; its %s is in %s. To train it again from the start, use "
               "--overwrite instead of --resume\n",
               out, (long long)where.step, full ? "model" : "adapter", out);
        rc = CLI_EXIT_OK;
        goto done;
    }
    if (resume && where.step > 0)
        fprintf(stderr, "road train: resuming from step %lld\n", (long long)where.step);
    road_model_params mp = road_model_default_params();
    mp.n_threads = cli_threads(o.threads);
    mp.float32_weights = full; /* every weight trains: float32 master weights */
    if (cli_quant_apply(CMD, &qz, &mp) != 0) {
        rc = CLI_EXIT_USAGE;
        goto done;
    }
    if ((s = road_model_load(model, &mp, &m)) != ROAD_OK) {
        rc = cli_fail(CMD, "loading the model", s);
        goto done;
    }
    road_adapter_set *set = road_model_adapters(m);
    if (!full && (s = road_adapter_set_add(set, name, cfg, tp.seed)) != ROAD_OK) {
        rc = cli_fail(CMD, "adding the adapter", s);
        goto done;
    }
    const char *act[1] = {name};
    if (!full && (s = road_adapter_set_set_active(set, act, 1)) != ROAD_OK) {
        rc = cli_fail(CMD, "activating the adapter", s);
        goto done;
    }
    road_data_params dp = road_data_default_params();
    dp.max_len = max_len;
    dp.pack = packing;
    {
        /* text, prompt/completion and messages need the model's tokenizer.json */
        char tpath[4096];
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model);
        if (access(tpath, F_OK) == 0) {
            if ((s = road_tokenizer_load(model, &tok)) != ROAD_OK) {
                rc = cli_fail(CMD, "loading the tokenizer", s);
                goto done;
            }
            dp.tok = tok;
            if ((rc = cli_chat_setup(CMD, &o.chat_opts, tok, &chat_kwargs)) != CLI_EXIT_OK)
                goto done;
            rc = CLI_EXIT_FAIL;
            dp.chat.kwargs = chat_kwargs;
        } else if (o.chat_opts.template_spec || o.chat_opts.kwargs) {
            cli_error(CMD, "--chat-template and --chat-kwargs need the model's tokenizer.json");
            rc = CLI_EXIT_USAGE;
            goto done;
        }
    }
    if ((s = road_dataset_load_jsonl(data, &dp, &dtrain)) != ROAD_OK) {
        rc = cli_fail(CMD, "reading --data", s);
        goto done;
    }
    if (evalf && (s = road_dataset_load_jsonl(evalf, &dp, &deval)) != ROAD_OK) {
        rc = cli_fail(CMD, "reading --eval", s);
        goto done;
    }
    char param_line[160];
    road_param_report rep = road_adapter_set_param_report(set);
    road_param_report_format(&rep, param_line, sizeof param_line);
    if (full) {
        int64_t np = 0;
        for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
            road_model_tensor t;
            if (road_model_tensor_get(m, i, &t) == ROAD_OK) np += t.n;
        }
        snprintf(param_line, sizeof param_line,
                 "full fine-tuning: %lld trainable parameters "
                 "(every weight)",
                 (long long)np);
    }
    fprintf(stderr, "road train: %lld examples, %s\n", (long long)road_dataset_count(dtrain),
            param_line);
    {
        /* the run's configuration: every argument as given, and the adapter config */
        char *adapter_json = NULL;
        if ((s = road_config_to_json(cfg, &adapter_json)) != ROAD_OK) {
            rc = cli_fail(CMD, "config", s);
            goto done;
        }
        cJSON *run = cJSON_CreateObject(), *args = cJSON_AddArrayToObject(run, "argv");
        for (int i = 0; i < argc; i++) cJSON_AddItemToArray(args, cJSON_CreateString(argv[i]));
        cJSON_AddStringToObject(run, "road_version", road_version());
        if (full)
            cJSON_AddBoolToObject(run, "full", true);
        else {
            cJSON *ac = NULL; /* road's own text: the strict parser takes it */
            if (road_json_parse(adapter_json, strlen(adapter_json), &ac) == ROAD_OK)
                cJSON_AddItemToObject(run, "adapter_config", ac);
        }
        cli_json_add(run, &spec, &o); /* the settings: the table's rows with a JSON key */
        cfg_json = cJSON_Print(run);
        cJSON_Delete(run);
        road_string_free(adapter_json);
        if (!cfg_json) {
            cli_error(CMD, "out of memory");
            goto done;
        }
    }
    /* the memory the run will hold, before any of it is spent (and before --overwrite
     * removes anything) */
    tp.recompute = recompute;
    if ((rc = memory_check(m, &tp, dtrain, deval, o.ignore_memory, &est)) != CLI_EXIT_OK) goto done;
    rc = CLI_EXIT_FAIL;
    /* --overwrite: the old run goes now (in one step), before the log is opened in OUT */
    if ((s = road_train_prepare_out(&tp, &where)) != ROAD_OK) {
        rc = cli_fail(CMD, "output folder", s);
        goto done;
    }
    char logpath[4096];
    snprintf(logpath, sizeof logpath, "%s/train_log.jsonl", out);
    logf = fopen(logp ? logp : logpath, resume ? "a" : "w");
    if (!logf) {
        cli_error(CMD, "cannot write the log '%s'", logp ? logp : logpath);
        goto done;
    }
    progress pr = {logf, isatty(STDERR_FILENO), NAN, 0};
    tp.stop = &stop_flag;
    tp.config_json = cfg_json;
    tp.recompute = recompute;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    s = road_train(m, dtrain, deval, &tp, on_step, &pr);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (pr.tty) fprintf(stderr, "\n");
    if (s != ROAD_OK) {
        rc = cli_fail(CMD, "training", s);
        goto done;
    }
    if (stop_flag) {
        printf("stopped: a checkpoint is in %s; continue with the same command and --resume\n",
               out);
    } else if (full) {
        printf("done: final loss %.4f; model written to %s (Hugging Face checkpoint folder)\n",
               pr.last_loss, out);
        if (deval) printf("best eval model in %s/best\n", out);
    } else {
        printf("done: final loss %.4f; adapter written to %s%s%s (PEFT format)\n", pr.last_loss,
               out, strcmp(name, "default") ? "/" : "", strcmp(name, "default") ? name : "");
        if (deval) printf("best eval adapter in %s/best\n", out);
    }
    printf("memory: backward activations and buffers %.1f MB (peak; estimated %.1f MB), process "
           "peak %.1f MB, model weights %.1f MB\n",
           pr.act_bytes / 1e6, est.activations / 1e6, peak_rss() / 1e6,
           road_model_weight_bytes(m) / 1e6);
    rc = CLI_EXIT_OK;
    goto done;
bad:
    cli_error(CMD, "%s", road_last_error());
done:
    if (logf) fclose(logf);
    road_tokenizer_free(tok);
    cJSON_Delete(chat_kwargs);
    free(cfg_json);
    free(run_json);
    road_dataset_free(dtrain);
    road_dataset_free(deval);
    road_model_free(m);
    road_config_free(cfg);
    return rc;
}
