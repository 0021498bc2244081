/*
 * cli/cmd_demo.c - `road demo`: road's main job on the model that ships in the repository
 * (demo/model, pretrained by road itself: demo/README.md), with nothing to download.
 *
 *   1. the base model's exact-match score on each demo task (demo/tasks/<task>/eval.jsonl);
 *   2. one RoAd adapter trained per task (live progress), saved as PEFT adapter folders;
 *   3. the scores with each adapter;
 *   4. one mixed batch: the same prompts, each sequence with its own adapter or __base__;
 *   5. one adapter merged into the weights gives the answers the unmerged adapter gave.
 *
 * The demo model answers "<word> =" with one of four transformations of the word (copy,
 * reverse, upper, shift); which one is left open by its pretraining text. Each task asks for
 * one of them without naming it, so the base scores low and a trained adapter high. Every step
 * goes through libroad's public API, as a user's program would.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"

#define CMD "demo"
#ifndef ROAD_DEMO_DIR
#define ROAD_DEMO_DIR "demo"
#endif
#define N_TASKS 3
#define MAX_EXAMPLES 4096
#define MAX_NEW_TOKENS 16
/* Training per adapter: enough for every task to pass 90% on 2 cores in well under a minute
 * each; --quick (CI) uses QUICK_STEPS. */
#define DEFAULT_STEPS 150
#define QUICK_STEPS 60
#define DEMO_STR_(x) #x
#define DEMO_STR(x) DEMO_STR_(x) /* a number as text, for the help */
#define DEFAULT_LR 2e-2
#define BATCH 16
#define MIXED_WORDS 2

static const char *const task_names[N_TASKS] = {"reverse", "upper", "shift"};
static const char *const task_what[N_TASKS] = {"the word backwards", "the word in capitals",
                                               "every letter moved one on (z to a)"};

typedef struct example {
    char *prompt, *completion;
} example;

typedef struct task {
    const char *name;
    example *ev;
    int n_ev;
    double base, tuned;
} task;

static void free_examples(example *v, int n) {
    for (int i = 0; v && i < n; i++) {
        free(v[i].prompt);
        free(v[i].completion);
    }
    free(v);
}

/* {"prompt": ..., "completion": ...} lines, read whole (getline: no line length limit) and
 * parsed by road's strict parser, so a bad line is refused, never cut or half-read. */
static int load_examples(const char *path, example **out, int *n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error(CMD, "cannot read '%s' (give the task folders with --tasks)", path);
        return -1;
    }
    example *v = calloc(MAX_EXAMPLES, sizeof *v);
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int k = 0, lineno = 0, rc = 0;
    while (v && k < MAX_EXAMPLES && (len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        size_t blank = 0;
        while (blank < (size_t)len && (line[blank] == ' ' || line[blank] == '\t' ||
                                       line[blank] == '\r' || line[blank] == '\n'))
            blank++;
        if (blank == (size_t)len) continue;
        cJSON *j = NULL;
        if (road_json_parse(line, (size_t)len, &j) != ROAD_OK) {
            cli_error(CMD, "%s:%d: %s", path, lineno, road_last_error());
            rc = -1;
            break;
        }
        cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "completion");
        if (!cJSON_IsString(p) || !cJSON_IsString(c)) {
            cli_error(CMD, "%s:%d: expected {\"prompt\": \"...\", \"completion\": \"...\"}", path,
                      lineno);
            cJSON_Delete(j);
            rc = -1;
            break;
        }
        v[k].prompt = strdup(p->valuestring);
        v[k].completion = strdup(c->valuestring);
        cJSON_Delete(j);
        if (!v[k++].completion) break;
    }
    free(line);
    fclose(f);
    if (!v || rc != 0 || k == 0) {
        if (v && rc == 0) cli_error(CMD, "'%s' holds no example", path);
        free_examples(v, k);
        return -1;
    }
    *out = v;
    *n = k;
    return 0;
}

/* What a completion should read as generated: without its final newline (the stop token). */
static size_t answer_len(const char *s) {
    size_t n = strlen(s);
    return n > 0 && s[n - 1] == '\n' ? n - 1 : n;
}

typedef struct gen_out {
    int32_t (*tok)[MAX_NEW_TOKENS];
    int *n;
} gen_out;

static bool collect(int64_t seq, int32_t token, void *user) {
    gen_out *g = user;
    if (g->n[seq] < MAX_NEW_TOKENS) g->tok[seq][g->n[seq]++] = token;
    return true;
}

/* Greedy answers to `n` prompts in one batch; adapters[i] per sequence (NULL: the active
 * ones). answers[i] gets the decoded text up to the stop token (malloc'd). */
static int answer(road_model *m, const road_tokenizer *tok, const char *const *prompts, int n,
                  const char *const *adapters, char **answers) {
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int64_t *lens = calloc((size_t)n, sizeof *lens);
    gen_out g = {calloc((size_t)n, sizeof *g.tok), calloc((size_t)n, sizeof *g.n)};
    int rc = -1;
    road_status s = ROAD_OK;
    if (!ids || !lens || !g.tok || !g.n) goto done;
    for (int i = 0; i < n && s == ROAD_OK; i++) {
        size_t len = strlen(prompts[i]), cap = road_tokenizer_max_tokens(tok, len), got = 0;
        if (!(ids[i] = malloc(sizeof(int32_t) * cap))) goto done;
        s = road_tokenizer_encode(tok, prompts[i], len, true, ids[i], cap, &got);
        lens[i] = (int64_t)got;
    }
    /* stop at the end of the line, or at an end-of-sequence token */
    const int32_t newline = road_tokenizer_token_to_id(tok, "\xC4\x8A"); /* byte-level "\n" */
    int32_t stops[4];
    int32_t n_stop = 0;
    if (newline >= 0) stops[n_stop++] = newline;
    const road_generation_config *gc = road_model_generation_config(m);
    for (int32_t i = 0; i < gc->n_eos && n_stop < 4; i++) stops[n_stop++] = gc->eos_token_ids[i];
    road_generate_params gp = {MAX_NEW_TOKENS, stops, n_stop, road_sampler_default_params(),
                               ROAD_DTYPE_F32};
    if (s == ROAD_OK)
        s = road_model_generate(m, (const int32_t *const *)ids, lens, adapters, n, &gp, collect,
                                &g);
    for (int i = 0; i < n && s == ROAD_OK; i++) {
        int k = g.n[i];
        if (k > 0 &&
            (g.tok[i][k - 1] == newline || road_tokenizer_is_special(tok, g.tok[i][k - 1])))
            k--; /* the stop token */
        size_t tl = 0;
        s = road_tokenizer_decode(tok, g.tok[i], (size_t)k, true, &answers[i], &tl);
    }
    if (s != ROAD_OK) {
        cli_fail(CMD, "generating answers", s);
        goto done;
    }
    rc = 0;
done:
    if (rc != 0 && s == ROAD_OK) cli_error(CMD, "out of memory");
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
    free(lens);
    free(g.tok);
    free(g.n);
    return rc;
}

/* Exact-match score of the task's eval set with `adapter` on every sequence (NULL: base). */
static int score(road_model *m, const road_tokenizer *tok, const task *t, const char *adapter,
                 double *out, char **answers_out) {
    const char **prompts = calloc((size_t)t->n_ev, sizeof *prompts);
    const char **names = calloc((size_t)t->n_ev, sizeof *names);
    char **answers = answers_out ? answers_out : calloc((size_t)t->n_ev, sizeof *answers);
    int rc = -1;
    if (prompts && names && answers) {
        for (int i = 0; i < t->n_ev; i++) {
            prompts[i] = t->ev[i].prompt;
            names[i] = adapter ? adapter : ROAD_BASE_NAME;
        }
        rc = answer(m, tok, prompts, t->n_ev, names, answers);
    }
    int hits = 0;
    for (int i = 0; rc == 0 && i < t->n_ev; i++) {
        size_t n = answer_len(t->ev[i].completion);
        hits += strlen(answers[i]) == n && memcmp(answers[i], t->ev[i].completion, n) == 0;
    }
    if (rc == 0) *out = (double)hits / t->n_ev;
    if (!answers_out)
        for (int i = 0; answers && i < t->n_ev; i++) road_string_free(answers[i]);
    if (!answers_out) free(answers);
    free(prompts);
    free(names);
    return rc;
}

typedef struct live {
    const char *name;
    int tty;
    double loss;
} live;

static bool progress(const road_train_metrics *mt, void *user) {
    live *l = user;
    l->loss = mt->loss;
    if (l->tty || mt->step == mt->total_steps)
        fprintf(stderr, "%s   %-8s step %3lld/%lld  loss %.4f  %5.0f tok/s  %4.1fs%s",
                l->tty ? "\r" : "", l->name, (long long)mt->step, (long long)mt->total_steps,
                mt->loss, mt->tokens_per_s, mt->elapsed_s, l->tty ? "\033[K" : "\n");
    return true;
}

static int train_adapter(road_model *m, const road_tokenizer *tok, const char *tasks_dir,
                         const char *name, const char *out, int64_t steps) {
    road_adapter_set *set = road_model_adapters(m);
    road_config *cfg = NULL;
    road_status s = road_config_create(&cfg);
    if (s == ROAD_OK) s = road_config_set_target_all_linear(cfg);
    if (s == ROAD_OK) s = road_config_set_task_type(cfg, "CAUSAL_LM");
    if (s == ROAD_OK) s = road_adapter_set_add(set, name, cfg, 1);
    road_config_free(cfg);
    const char *act[1] = {name};
    if (s == ROAD_OK) s = road_adapter_set_set_active(set, act, 1);
    if (s != ROAD_OK) return cli_fail(CMD, "adding an adapter", s);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/train.jsonl", tasks_dir, name);
    road_data_params dp = road_data_default_params();
    dp.tok = tok;
    dp.max_len = 64;
    road_dataset *d = NULL;
    if ((s = road_dataset_load_jsonl(path, &dp, &d)) != ROAD_OK) return cli_fail(CMD, path, s);
    road_train_params tp = road_train_default_params();
    tp.adamw.lr = DEFAULT_LR;
    tp.schedule.kind = ROAD_SCHEDULE_LINEAR;
    tp.schedule.warmup_steps = steps / 10;
    tp.max_steps = steps;
    tp.batch_size = BATCH;
    tp.out_dir = out;
    tp.overwrite = true; /* the demo's own folder: a rerun replaces the adapter it trained */
    live l = {name, isatty(STDERR_FILENO), NAN};
    s = road_train(m, d, NULL, &tp, progress, &l);
    road_dataset_free(d);
    if (l.tty) fprintf(stderr, "\n");
    if (s != ROAD_OK) return cli_fail(CMD, "training", s);
    return 0;
}

static int write_report(const char *path, const task *tasks, int merged_same, int merged_n) {
    cJSON *r = cJSON_CreateObject(), *ts = cJSON_AddObjectToObject(r, "tasks");
    for (int i = 0; i < N_TASKS; i++) {
        cJSON *t = cJSON_AddObjectToObject(ts, tasks[i].name);
        cJSON_AddNumberToObject(t, "base", tasks[i].base);
        cJSON_AddNumberToObject(t, "adapted", tasks[i].tuned);
        cJSON_AddNumberToObject(t, "n", tasks[i].n_ev);
        /* the same as counts of exact matches (integers: easy to compare in any tool) */
        cJSON_AddNumberToObject(t, "base_hits", lround(tasks[i].base * tasks[i].n_ev));
        cJSON_AddNumberToObject(t, "adapted_hits", lround(tasks[i].tuned * tasks[i].n_ev));
    }
    cJSON_AddNumberToObject(r, "merged_identical", merged_same);
    cJSON_AddNumberToObject(r, "merged_n", merged_n);
    char *text = cJSON_Print(r);
    cJSON_Delete(r);
    FILE *f = text ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "%s\n", text);
        fclose(f);
    }
    free(text);
    if (!f) cli_error(CMD, "cannot write the report '%s'", path);
    return f ? 0 : -1;
}

typedef struct demo_opts {
    const char *model, *tasks, *out, *report;
    int64_t steps, threads;
    cli_quant qz;
    bool quick;
    uint64_t given;
} demo_opts;

static const cli_flag flags[] = {
    {CLI_STR("--model", demo_opts, model, "DIR", ROAD_DEMO_DIR "/model", "base model")},
    {CLI_STR("--tasks", demo_opts, tasks, "DIR", ROAD_DEMO_DIR "/tasks",
             "task folders <task>/train.jsonl, eval.jsonl")},
    {CLI_STR("--out", demo_opts, out, "DIR", "road-demo-out", "where adapters and logs go")},
    {CLI_INT("--steps", demo_opts, steps, "N", 1, 1000000, NULL,
             "optimizer steps per adapter (default " DEMO_STR(DEFAULT_STEPS) "; --quick: " DEMO_STR(
                 QUICK_STEPS) ")")},
    {CLI_SW("--quick", demo_opts, quick, "fewer steps (CI)")},
    {CLI_STR("--report", demo_opts, report, "FILE.json", NULL, "write the scores as JSON")},
    CLI_THREADS_FLAG(demo_opts),
    CLI_QUANT_FLAGS(demo_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .usage = "[options]",
    .about =
        "Trains one RoAd adapter per demo task on the model shipped with road and shows what\n"
        "changed: scores before and after, a mixed batch with one adapter per sequence, and a\n"
        "merged adapter answering as the unmerged one.\n",
    CLI_TABLE(flags, demo_opts),
};

int cmd_demo(int argc, char **argv) {
    demo_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    const char *model = o.model, *tasks_dir = o.tasks, *out = o.out, *report = o.report;
    const cli_quant qz = o.qz;
    const long long steps = cli_given(&spec, &o, "--steps") ? o.steps
                            : o.quick                       ? QUICK_STEPS
                                                            : DEFAULT_STEPS;

    int rc = CLI_EXIT_FAIL;
    road_model *m = NULL;
    road_tokenizer *tok = NULL;
    task tasks[N_TASKS];
    memset(tasks, 0, sizeof tasks);
    char **merged_ans = NULL, **unmerged_ans = NULL;
    int merged_same = 0;
    road_model_params mp = road_model_default_params();
    mp.n_threads = cli_threads(o.threads);
    if (cli_quant_apply(CMD, &qz, &mp) != 0) return CLI_EXIT_USAGE;
    road_status s = road_model_load(model, &mp, &m);
    if (s != ROAD_OK) {
        cli_fail(CMD, "loading the demo model (give another with --model)", s);
        goto done;
    }
    if ((s = road_tokenizer_load(model, &tok)) != ROAD_OK) {
        cli_fail(CMD, "loading the demo model's tokenizer", s);
        goto done;
    }
    for (int i = 0; i < N_TASKS; i++) {
        char path[4096];
        tasks[i].name = task_names[i];
        snprintf(path, sizeof path, "%s/%s/eval.jsonl", tasks_dir, task_names[i]);
        if (load_examples(path, &tasks[i].ev, &tasks[i].n_ev) != 0) goto done;
    }
    /* before any adapter: every parameter is the base's */
    const int64_t n_params = road_adapter_set_param_report(road_model_adapters(m)).all;
    const road_llm_config *c = road_model_config(m);
    printf("road demo: RoAd adapters on a small Llama that road pretrained itself\n"
           "  model  %s: %lld layers, hidden %lld, %.2fM parameters%s%s\n"
           "  tasks  %s: a prompt \"<word> =\" asks for\n",
           model, (long long)c->n_layers, (long long)c->hidden_size, n_params / 1e6,
           qz.format ? ", linear layers quantized to " : "", qz.format ? qz.format : "", tasks_dir);
    for (int i = 0; i < N_TASKS; i++)
        printf("           %-8s %s (\"%s\" -> \"%.*s\")\n", task_names[i], task_what[i],
               tasks[i].ev[0].prompt, (int)answer_len(tasks[i].ev[0].completion) - 1,
               tasks[i].ev[0].completion + 1);

    printf("\n1. the base model, exact match on each task's %d held-out words\n", tasks[0].n_ev);
    for (int i = 0; i < N_TASKS; i++) {
        if (score(m, tok, &tasks[i], NULL, &tasks[i].base, NULL) != 0) goto done;
        printf("   %-8s %5.1f%%\n", task_names[i], 100 * tasks[i].base);
    }
    printf(
        "   (the base picks among copy, reverse, upper and shift: a prompt does not say which)\n");

    printf("\n2. one RoAd adapter per task (road_1, all linear layers, %lld steps of %d)\n", steps,
           BATCH);
    char adir[4096];
    snprintf(adir, sizeof adir, "%s/adapters", out);
    for (int i = 0; i < N_TASKS; i++)
        if (train_adapter(m, tok, tasks_dir, task_names[i], adir, steps) != 0) goto done;
    road_adapter_set *set = road_model_adapters(m);
    road_param_report rep = road_adapter_set_param_report(set);
    char line[160];
    road_param_report_format(&rep, line, sizeof line);
    printf("   saved in PEFT format: %s/<task>/\n   each adapter: %s\n", adir, line);

    printf("\n3. with the adapters (each task's eval set, one adapter per task)\n");
    for (int i = 0; i < N_TASKS; i++) {
        char **keep =
            i == 0 ? (unmerged_ans = calloc((size_t)tasks[i].n_ev, sizeof(char *))) : NULL;
        if (i == 0 && !keep) goto done;
        if (score(m, tok, &tasks[i], task_names[i], &tasks[i].tuned, keep) != 0) goto done;
        printf("   %-8s %5.1f%%  ->  %5.1f%%\n", task_names[i], 100 * tasks[i].base,
               100 * tasks[i].tuned);
    }

    printf("\n4. one batch, every sequence with its own adapter\n");
    {
        const char *prompts[MIXED_WORDS * (N_TASKS + 1)], *names[MIXED_WORDS * (N_TASKS + 1)];
        char *ans[MIXED_WORDS * (N_TASKS + 1)] = {0};
        int n = 0;
        for (int w = 0; w < MIXED_WORDS; w++)
            for (int a = 0; a <= N_TASKS; a++, n++) {
                prompts[n] = tasks[0].ev[w + 1].prompt;
                names[n] = a < N_TASKS ? task_names[a] : ROAD_BASE_NAME;
            }
        if (answer(m, tok, prompts, n, names, ans) != 0) goto done;
        printf("   %-14s %-10s %s\n", "prompt", "adapter", "answer");
        for (int i = 0; i < n; i++) {
            printf("   %-14s %-10s%s\n", prompts[i], names[i], ans[i]);
            road_string_free(ans[i]);
        }
    }

    printf("\n5. merge '%s' into the weights and answer its eval set again\n", task_names[0]);
    {
        const char *act[1] = {task_names[0]};
        merged_ans = calloc((size_t)tasks[0].n_ev, sizeof(char *));
        const char **prompts = calloc((size_t)tasks[0].n_ev, sizeof *prompts);
        if (!merged_ans || !prompts) {
            free(prompts);
            goto done;
        }
        for (int i = 0; i < tasks[0].n_ev; i++) prompts[i] = tasks[0].ev[i].prompt;
        s = road_adapter_set_set_active(set, act, 1);
        if (s == ROAD_OK) s = road_adapter_set_merge(set, act, 1, true);
        int arc = s == ROAD_OK ? answer(m, tok, prompts, tasks[0].n_ev, NULL, merged_ans) : -1;
        free(prompts);
        if (s != ROAD_OK) cli_fail(CMD, "merging", s);
        if (arc != 0) goto done;
        if ((s = road_adapter_set_unmerge(set)) != ROAD_OK) {
            cli_fail(CMD, "unmerging", s);
            goto done;
        }
        for (int i = 0; i < tasks[0].n_ev; i++)
            merged_same += strcmp(merged_ans[i], unmerged_ans[i]) == 0;
        printf("   merged model vs adapter: %d of %d answers identical; unmerged again\n",
               merged_same, tasks[0].n_ev);
        if (qz.format)
            printf("   (a merge into %s weights rounds them again, so some answers may change;\n"
                   "   PEFT warns the same)\n",
                   qz.format);
    }
    if (report && write_report(report, tasks, merged_same, tasks[0].n_ev) != 0) goto done;

    printf("\nwritten: adapters in %s/{reverse,upper,shift} (PEFT format), training logs beside "
           "them\n"
           "next:\n"
           "  road generate --model %s --adapter shift=%s/shift --use shift --stop-ids 10 --prompt "
           "\"kobalu =\"\n"
           "  road serve --model %s --adapter reverse=%s/reverse --adapter upper=%s/upper\n"
           "  road train --model YOUR_HF_FOLDER --data YOUR.jsonl --out my-adapter  (README.md)\n",
           adir, model, adir, model, adir, adir);
    rc = CLI_EXIT_OK;
done:
    for (int i = 0; i < N_TASKS; i++) free_examples(tasks[i].ev, tasks[i].n_ev);
    if (merged_ans)
        for (int i = 0; i < tasks[0].n_ev; i++) road_string_free(merged_ans[i]);
    if (unmerged_ans)
        for (int i = 0; i < tasks[0].n_ev; i++) road_string_free(unmerged_ans[i]);
    free(merged_ans);
    free(unmerged_ans);
    road_tokenizer_free(tok);
    road_model_free(m);
    return rc;
}
