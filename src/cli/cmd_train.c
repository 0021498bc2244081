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

static void help(void) {
    printf("usage: road train --model DIR --data FILE.jsonl --out DIR [options]\n"
           "\n"
           "data (one JSON object per line): {\"input_ids\": [...]} (+ optional \"labels\", -100 =\n"
           "no loss); {\"text\": ...} and {\"prompt\": ..., \"completion\": ...} need the model's\n"
           "tokenizer.\n"
           "\n"
           "  --eval FILE.jsonl          held-out data: eval loss every --eval-every steps and at\n"
           "                             the end; the best adapter goes to OUT/best\n"
           "  --name NAME                adapter name (default: default, saved at the top of OUT)\n"
           "  --variant road_1|road_2|road_4   (default road_1)\n"
           "  --group-size N             (default 64)\n"
           "  --targets SPEC             all-linear | q_proj,v_proj | regex (default: model's)\n"
           "  --lr X                     (default 1e-3, PEFT's RoAd recommendation)\n"
           "  --schedule constant|constant_with_warmup|linear|cosine   (default linear)\n"
           "  --warmup N                 warmup steps (default 0)\n"
           "  --weight-decay X           (default 0)\n"
           "  --epochs N                 (default 1)  | --max-steps N  (overrides epochs)\n"
           "  --batch-size N             (default 8)  --grad-accum N (default 1)\n"
           "  --max-len N                truncate examples (default 512)\n"
           "  --max-grad-norm X          (default 1.0; 0 = no clipping)\n"
           "  --seed N                   (default 42)\n"
           "  --eval-every N --save-every N   steps (default 0: at the end only / none)\n"
           "  --resume                   continue the run in OUT from its last checkpoint (only a\n"
           "                             run with the same model, data and settings; a finished\n"
           "                             run is reported and not trained again)\n"
           "  --overwrite                replace a training run OUT already holds (without it, a\n"
           "                             fresh run into such a folder is refused)\n"
           "  --recompute                recompute activations in backward (less memory)\n"
           "  --pack                     concatenate examples into --max-len sequences\n"
           "  --full                     full fine-tuning: train every weight (no adapter); OUT\n"
           "                             becomes a model folder (config, weights, tokenizer)\n"
           "  --save-dtype f32|bf16|f16  with --full: dtype of the saved weights (default f32)\n"
           "  --log FILE.jsonl           every step's metrics (default OUT/train_log.jsonl)\n"
           "  --threads N\n" CLI_QUANT_HELP);
}

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
        fprintf(p->log, "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.6f, \"lr\": %.6g, "
                        "\"grad_norm\": %.6g, \"tokens\": %lld, \"tokens_per_s\": %.1f, \"elapsed_s\": %.2f",
                (long long)m->step, (long long)m->epoch, m->loss, m->lr, m->grad_norm,
                (long long)m->tokens, m->tokens_per_s, m->elapsed_s);
        if (!isnan(m->eval_loss)) fprintf(p->log, ", \"eval_loss\": %.6f", m->eval_loss);
        fprintf(p->log, "}\n");
        fflush(p->log);
    }
    char ev[32] = "";
    if (!isnan(m->eval_loss)) snprintf(ev, sizeof ev, "  eval %.4f", m->eval_loss);
    fprintf(stderr, "%sstep %lld/%lld  loss %.4f%s  lr %.3g  %.0f tok/s  %.0fs elapsed, ETA %.0fs%s",
            p->tty ? "\r" : "", (long long)m->step, (long long)m->total_steps, m->loss, ev, m->lr,
            m->tokens_per_s, m->elapsed_s, m->eta_s, p->tty ? "\033[K" : "\n");
    if (!isnan(m->eval_loss) && p->tty) fprintf(stderr, "\n");
    return true;
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
static char *run_identity(const char *model, const char *data, const road_config *cfg,
                          bool full, int64_t max_len, bool packing, const cli_quant *qz) {
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
    const char *model = NULL, *data = NULL, *evalf = NULL, *out = NULL, *name = "default";
    const char *variant = NULL, *gs = NULL, *targets = NULL, *lr = NULL, *sched = NULL;
    const char *warm = NULL, *wd = NULL, *epochs = NULL, *steps = NULL, *bs = NULL, *acc = NULL;
    const char *maxlen = NULL, *clip = NULL, *seed = NULL, *eevery = NULL, *severy = NULL;
    const char *logp = NULL, *thr = NULL;
    const char *save_dtype = NULL;
    int resume = 0, recompute = 0, packing = 0, full = 0, overwrite = 0;
    cli_quant qz = {NULL, false, false};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_quant_flag(CMD, argc, argv, &i, &qz)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help();
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--resume") == 0) {
            resume = 1;
            continue;
        }
        if (strcmp(argv[i], "--overwrite") == 0) {
            overwrite = 1;
            continue;
        }
        if (strcmp(argv[i], "--recompute") == 0) {
            recompute = 1;
            continue;
        }
        if (strcmp(argv[i], "--pack") == 0) {
            packing = 1;
            continue;
        }
        if (strcmp(argv[i], "--full") == 0) {
            full = 1;
            continue;
        }
        CLI_FLAG("--model", model) CLI_FLAG("--data", data) CLI_FLAG("--eval", evalf) CLI_FLAG("--out", out)
        CLI_FLAG("--name", name) CLI_FLAG("--variant", variant) CLI_FLAG("--group-size", gs)
        CLI_FLAG("--targets", targets) CLI_FLAG("--lr", lr) CLI_FLAG("--schedule", sched) CLI_FLAG("--warmup", warm)
        CLI_FLAG("--weight-decay", wd) CLI_FLAG("--epochs", epochs) CLI_FLAG("--max-steps", steps)
        CLI_FLAG("--batch-size", bs) CLI_FLAG("--grad-accum", acc) CLI_FLAG("--max-len", maxlen)
        CLI_FLAG("--max-grad-norm", clip) CLI_FLAG("--seed", seed) CLI_FLAG("--eval-every", eevery)
        CLI_FLAG("--save-every", severy) CLI_FLAG("--log", logp) CLI_FLAG("--threads", thr)
        CLI_FLAG("--save-dtype", save_dtype)
        cli_error(CMD, "unknown option '%s' (see road train --help)", argv[i]);
        return CLI_EXIT_USAGE;
    }
    if (!model || !data || !out) {
        cli_error(CMD, "--model, --data and --out are required (see road train --help)");
        return CLI_EXIT_USAGE;
    }
    if (resume && overwrite) {
        cli_error(CMD, "--resume continues the run in '%s' and --overwrite replaces it: choose one",
                  out);
        return CLI_EXIT_USAGE;
    }
    road_train_params tp = road_train_default_params();
    tp.schedule.kind = ROAD_SCHEDULE_LINEAR;
    long long iv;
    double dv;
    char *end;
#define INT_OPT(str, fl, lo, hi, dst)                                                              \
    if (str) {                                                                                     \
        if (cli_parse_int(CMD, fl, str, lo, hi, &iv) != 0) return CLI_EXIT_USAGE;                  \
        dst = iv;                                                                                  \
    }
#define DBL_OPT(str, fl, lo, hi, dst)                                                              \
    if (str) {                                                                                     \
        dv = strtod(str, &end);                                                                    \
        if (end == str || *end || !(dv >= lo && dv <= hi)) {                                       \
            cli_error(CMD, "%s must be a number from %g to %g, got '%s'", fl, (double)lo,          \
                      (double)hi, str);                                                            \
            return CLI_EXIT_USAGE;                                                                 \
        }                                                                                          \
        dst = dv;                                                                                  \
    }
    int64_t max_len = 512, threads = 0;
    INT_OPT(epochs, "--epochs", 1, 1000000, tp.epochs)
    INT_OPT(steps, "--max-steps", 1, 1LL << 40, tp.max_steps)
    INT_OPT(bs, "--batch-size", 1, 1 << 20, tp.batch_size)
    INT_OPT(acc, "--grad-accum", 1, 1 << 20, tp.grad_accum)
    INT_OPT(maxlen, "--max-len", 2, 1 << 24, max_len)
    INT_OPT(warm, "--warmup", 0, 1LL << 40, tp.schedule.warmup_steps)
    INT_OPT(eevery, "--eval-every", 0, 1LL << 40, tp.eval_every)
    INT_OPT(severy, "--save-every", 0, 1LL << 40, tp.save_every)
    INT_OPT(thr, "--threads", 0, 1024, threads)
    if (seed) {
        if (cli_parse_int(CMD, "--seed", seed, 0, INT64_MAX, &iv) != 0) return CLI_EXIT_USAGE;
        tp.seed = (uint64_t)iv;
    }
    DBL_OPT(lr, "--lr", 0.0, 10.0, tp.adamw.lr)
    DBL_OPT(wd, "--weight-decay", 0.0, 10.0, tp.adamw.weight_decay)
    DBL_OPT(clip, "--max-grad-norm", 0.0, 1e30, tp.max_grad_norm)
#undef INT_OPT
#undef DBL_OPT
    road_status s;
    tp.full = full;
    if (save_dtype) {
        if (!full) {
            cli_error(CMD, "--save-dtype applies to --full (adapters are saved in float32)");
            return CLI_EXIT_USAGE;
        }
        if (cli_parse_float_dtype(CMD, "--save-dtype", save_dtype, &tp.save_dtype) != 0)
            return CLI_EXIT_USAGE;
    }
    if (full && (variant || gs || targets || strcmp(name, "default") != 0)) {
        cli_error(CMD, "--full trains every weight of the model: --variant, --group-size, "
                       "--targets and --name are for adapters");
        return CLI_EXIT_USAGE;
    }
    if (sched && (s = road_schedule_parse(sched, &tp.schedule.kind)) != ROAD_OK) {
        cli_error(CMD, "%s", road_last_error());
        return CLI_EXIT_USAGE;
    }
    road_config *cfg = NULL;
    if ((s = road_config_create(&cfg)) != ROAD_OK) return cli_fail(CMD, "config", s);
    int rc = CLI_EXIT_USAGE;
    road_model *m = NULL;
    road_tokenizer *tok = NULL;
    road_dataset *dtrain = NULL, *deval = NULL;
    FILE *logf = NULL;
    char *cfg_json = NULL, *run_json = NULL;
    const char *inputs[3] = {model, data, evalf};
    if (variant) {
        road_variant vv;
        if ((s = road_variant_parse(variant, &vv)) != ROAD_OK) goto bad;
        road_config_set_variant(cfg, vv);
    }
    if (gs) {
        if (cli_parse_int(CMD, "--group-size", gs, 2, 1 << 30, &iv) != 0) goto done;
        if ((s = road_config_set_group_size(cfg, iv)) != ROAD_OK) goto bad;
    }
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
    mp.n_threads = (int)threads;
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
        snprintf(param_line, sizeof param_line, "full fine-tuning: %lld trainable parameters "
                 "(every weight)", (long long)np);
    }
    fprintf(stderr, "road train: %lld examples, %s\n", (long long)road_dataset_count(dtrain), param_line);
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
        cJSON_AddNumberToObject(run, "lr", tp.adamw.lr);
        cJSON_AddNumberToObject(run, "weight_decay", tp.adamw.weight_decay);
        cJSON_AddStringToObject(run, "schedule", road_schedule_name(tp.schedule.kind));
        cJSON_AddNumberToObject(run, "warmup_steps", (double)tp.schedule.warmup_steps);
        cJSON_AddNumberToObject(run, "epochs", (double)tp.epochs);
        cJSON_AddNumberToObject(run, "max_steps", (double)tp.max_steps);
        cJSON_AddNumberToObject(run, "batch_size", (double)tp.batch_size);
        cJSON_AddNumberToObject(run, "grad_accum", (double)tp.grad_accum);
        cJSON_AddNumberToObject(run, "max_len", (double)max_len);
        cJSON_AddNumberToObject(run, "max_grad_norm", tp.max_grad_norm);
        cJSON_AddNumberToObject(run, "seed", (double)tp.seed);
        cJSON_AddBoolToObject(run, "pack", packing);
        cJSON_AddBoolToObject(run, "recompute", recompute);
        cfg_json = cJSON_Print(run);
        cJSON_Delete(run);
        road_string_free(adapter_json);
        if (!cfg_json) {
            cli_error(CMD, "out of memory");
            goto done;
        }
    }
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
        printf("stopped: a checkpoint is in %s; continue with the same command and --resume\n", out);
    } else if (full) {
        printf("done: final loss %.4f; model written to %s (Hugging Face checkpoint folder)\n",
               pr.last_loss, out);
        if (deval) printf("best eval model in %s/best\n", out);
    } else {
        printf("done: final loss %.4f; adapter written to %s%s%s (PEFT format)\n", pr.last_loss, out,
               strcmp(name, "default") ? "/" : "", strcmp(name, "default") ? name : "");
        if (deval) printf("best eval adapter in %s/best\n", out);
    }
    printf("memory: backward activations and buffers %.1f MB (peak), process peak %.1f MB, "
           "model weights %.1f MB\n", pr.act_bytes / 1e6, peak_rss() / 1e6,
           road_model_weight_bytes(m) / 1e6);
    rc = CLI_EXIT_OK;
    goto done;
bad:
    cli_error(CMD, "%s", road_last_error());
done:
    if (logf) fclose(logf);
    road_tokenizer_free(tok);
    free(cfg_json);
    free(run_json);
    road_dataset_free(dtrain);
    road_dataset_free(deval);
    road_model_free(m);
    road_config_free(cfg);
    return rc;
}
