/*
 * tests/test_cli_llm.c - `road eval` and `road generate` end to end, against the PyTorch/PEFT
 * reference of tests/fixtures/llama/tiny-llama.
 *
 * The fixture's batch (inputs.input_ids / attention_mask / labels of cases.safetensors) is
 * written under transformers' names into a temporary IN.safetensors, the real road binary runs
 * on it (posix_spawn, stdout and stderr captured into files), and what it dumps is compared
 * with the reference logits at valid positions and with the reference loss. Then greedy
 * generation, and the CLI's refusals: exit status 2 for bad usage, 1 for a failed operation,
 * and a message on stderr that names the problem. This is the contract docs/cli.md states.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

extern char **environ;

/* From tests/fixtures/llama/README.md, "Numerical tolerances": logits <= 1e-5 abs at valid
 * positions, losses <= 1e-5 abs. The dumped loss is float32 (its rounding, <= 3e-7 at 5.8,
 * fits well inside). */
#define LOGIT_ATOL 1e-5
#define LOSS_ATOL 1e-5
#define N_DECODE 5

#define PATH_CAP 1024
#define MAX_ARGS 32
#define ROAD_EXE ROAD_BINARY_DIR "/road"
#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
#define ADAPTER_A "A=" MODEL "/adapters/A"
#define ADAPTER_B "B=" MODEL "/adapters/B"
#define ADAPTER_C "C=" MODEL "/adapters/C"

typedef struct fixture {
    char root[512];
    road_st_file *cases;
    cJSON *json;
    const int64_t *ids, *mask, *labels;
    int64_t B, T, V;
    char in[PATH_CAP], out[PATH_CAP]; /* the good input, and where dumps go */
} fixture;

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = tu_alloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) fail_msg("cannot read %s", path);
    fclose(f);
    return buf;
}

/* ---- running road ------------------------------------------------------------------------- */

typedef struct run_result {
    int code;  /* exit status; -1 if it did not exit normally */
    char *out; /* stdout, malloc'd */
    char *err; /* stderr, malloc'd */
} run_result;

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* Run `road args...` (NULL-terminated) with stdout and stderr captured. */
static run_result run_argv(const fixture *fx, const char *const *args) {
    char *argv[MAX_ARGS + 2];
    int n = 0;
    argv[n++] = (char *)ROAD_EXE;
    for (; args[n - 1]; n++) {
        if (n > MAX_ARGS) fail_msg("too many arguments");
        argv[n] = (char *)args[n - 1];
    }
    argv[n] = NULL;
    char out_path[PATH_CAP], err_path[PATH_CAP];
    snprintf(out_path, sizeof out_path, "%s/stdout.txt", fx->root);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", fx->root);
    posix_spawn_file_actions_t fa;
    assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
    assert_int_equal(
        posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), 0);
    assert_int_equal(
        posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), 0);
    pid_t pid;
    int rc = posix_spawn(&pid, ROAD_EXE, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) fail_msg("cannot run %s: %s (is the road target built?)", ROAD_EXE, strerror(rc));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    run_result r = {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(out_path),
                    read_text(err_path)};
    return r;
}

static void print_cmd(const char *const *args) {
    print_error("    road");
    for (int i = 0; args[i]; i++) print_error(" '%s'", args[i]);
    print_error("\n");
}

/* road args... must exit with `code`; stderr (code != 0) or stdout must contain needle. */
static void expect_argv(const fixture *fx, int code, const char *needle, const char *const *args) {
    run_result r = run_argv(fx, args);
    const char *where = code == 0 ? r.out : r.err;
    if (r.code != code || (needle && !strstr(where, needle))) {
        print_error("expected exit %d and '%s' on %s; got exit %d\n", code, needle ? needle : "",
                    code == 0 ? "stdout" : "stderr", r.code);
        print_cmd(args);
        print_error("stdout: %s\nstderr: %s\n", r.out, r.err);
        run_free(&r);
        fail();
    }
    run_free(&r);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define EXPECT(fx, code, needle, ...) expect_argv((fx), (code), (needle), ARGS(__VA_ARGS__))

/* ---- inputs and outputs ------------------------------------------------------------------- */

/* A safetensors file at fx->root/name holding the fixture batch, changed as `edit` says. */
typedef enum input_edit {
    IN_GOOD,
    IN_NO_IDS,      /* no input_ids */
    IN_SHORT_MASK,  /* attention_mask [B, T-1] */
    IN_LABEL_RANGE, /* one counted label is BAD_LABEL, outside the vocabulary */
    IN_NO_LABELS,   /* input_ids and attention_mask only */
    IN_F32_IDS      /* input_ids as F32 */
} input_edit;

#define BAD_LABEL 999 /* the fixtures' vocabulary is 320 */

static const char *write_input(const fixture *fx, const char *name, input_edit edit, char *path) {
    snprintf(path, PATH_CAP, "%s/%s", fx->root, name);
    road_st_writer *w = NULL;
    TU_OK(road_st_writer_create(&w));
    int64_t shape[2] = {fx->B, fx->T}, n = fx->B * fx->T;
    if (edit == IN_F32_IDS) {
        float *f = tu_alloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) f[i] = (float)fx->ids[i];
        TU_OK(road_st_writer_add(w, "input_ids", ROAD_DTYPE_F32, 2, shape, f));
        free(f);
    } else if (edit != IN_NO_IDS) {
        TU_OK(road_st_writer_add(w, "input_ids", ROAD_DTYPE_I64, 2, shape, fx->ids));
    }
    if (edit == IN_SHORT_MASK) {
        int64_t s2[2] = {fx->B, fx->T - 1};
        TU_OK(road_st_writer_add(w, "attention_mask", ROAD_DTYPE_I64, 2, s2, fx->mask));
    } else {
        TU_OK(road_st_writer_add(w, "attention_mask", ROAD_DTYPE_I64, 2, shape, fx->mask));
    }
    if (edit == IN_LABEL_RANGE) {
        int64_t *l = tu_alloc(sizeof(int64_t) * (size_t)n);
        memcpy(l, fx->labels, sizeof(int64_t) * (size_t)n);
        assert_int_not_equal(l[5], -100); /* row 0 is unpadded: position 5 counts */
        l[5] = BAD_LABEL;
        TU_OK(road_st_writer_add(w, "labels", ROAD_DTYPE_I64, 2, shape, l));
        free(l);
    } else if (edit != IN_NO_LABELS) {
        TU_OK(road_st_writer_add(w, "labels", ROAD_DTYPE_I64, 2, shape, fx->labels));
    }
    TU_OK(road_st_writer_save(w, path));
    road_st_writer_free(w);
    return path;
}

static const cJSON *find_case(const fixture *fx, const char *name) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(fx->json, "cases")) {
        const cJSON *n = cJSON_GetObjectItem(c, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return c;
    }
    fail_msg("cases.json has no case '%s'", name);
    return NULL;
}

/* The dump at fx->out against case `name`: logits at valid positions (0 at padding), and the
 * loss when the case has one (want_loss: the dump must hold one). */
static void check_dump(const fixture *fx, const char *name, bool want_loss) {
    const cJSON *c = find_case(fx, name);
    const road_st_tensor *ref =
        road_st_find(fx->cases, cJSON_GetObjectItem(c, "logits")->valuestring);
    assert_non_null(ref);
    road_st_file *f = NULL;
    TU_OK(road_st_open(fx->out, &f));
    const road_st_tensor *lg = road_st_find(f, "logits");
    assert_non_null(lg);
    assert_int_equal(lg->dtype, ROAD_DTYPE_F32);
    assert_int_equal(lg->ndim, 3);
    assert_int_equal(lg->shape[0], fx->B);
    assert_int_equal(lg->shape[1], fx->T);
    assert_int_equal(lg->shape[2], fx->V);
    const float *got = lg->data, *want = ref->data;
    for (int64_t b = 0; b < fx->B; b++)
        for (int64_t t = 0; t < fx->T; t++) {
            char what[128];
            int64_t off = (b * fx->T + t) * fx->V;
            snprintf(what, sizeof what, "road eval %s: logits[%lld][%lld]", name, (long long)b,
                     (long long)t);
            if (fx->mask[b * fx->T + t]) {
                tu_assert_close(what, got + off, want + off, fx->V, LOGIT_ATOL, 0);
            } else {
                for (int64_t i = 0; i < fx->V; i++)
                    if (got[off + i] != 0.0f)
                        fail_msg("%s[%lld] is %g at padding, expected 0", what, (long long)i,
                                 (double)got[off + i]);
            }
        }
    const road_st_tensor *loss = road_st_find(f, "loss");
    if (want_loss) {
        assert_non_null(loss);
        assert_int_equal(loss->dtype, ROAD_DTYPE_F32);
        assert_int_equal(loss->ndim, 0);
        const cJSON *ref_loss = cJSON_GetObjectItem(c, "loss");
        if (ref_loss) {
            double l = *(const float *)loss->data;
            if (!(fabs(l - ref_loss->valuedouble) <= LOSS_ATOL))
                fail_msg("road eval %s: loss %.9g, reference %.9g", name, l, ref_loss->valuedouble);
        }
    } else {
        assert_null(loss);
    }
    road_st_close(f);
    assert_int_equal(unlink(fx->out), 0);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_eval_matches_reference(void **state) {
    fixture *fx = *state;
    EXPECT(fx, 0, "loss 5.82488", "eval", "--model", MODEL, "--adapter", ADAPTER_A, "--use", "A",
           "--input", fx->in, "--dump", fx->out);
    check_dump(fx, "A", true);
    /* stacked, in the order given */
    EXPECT(fx, 0, "wrote", "eval", "--model", MODEL, "--adapter", ADAPTER_A, "--adapter", ADAPTER_C,
           "--use", "A,C", "--input", fx->in, "--dump", fx->out);
    check_dump(fx, "A+C", true);
    /* a mixed batch: one adapter per row */
    EXPECT(fx, 0, "wrote", "eval", "--model", MODEL, "--adapter", ADAPTER_A, "--adapter", ADAPTER_B,
           "--rows", "A,__base__,B", "--input", fx->in, "--dump", fx->out, "--threads", "1");
    check_dump(fx, "mixed", true);
    /* no adapters; an attached adapter is not used without --use */
    EXPECT(fx, 0, "logits [3, 9, 320], loss", "eval", "--model", MODEL, "--input", fx->in, "--dump",
           fx->out);
    check_dump(fx, "base", true);
    EXPECT(fx, 0, "loss 5.79849", "eval", "--model", MODEL, "--adapter", ADAPTER_A, "--input",
           fx->in, "--dump", fx->out);
    check_dump(fx, "base", true);
    /* without labels: logits only */
    char path[PATH_CAP];
    write_input(fx, "nolabels.safetensors", IN_NO_LABELS, path);
    EXPECT(fx, 0, "logits [3, 9, 320])", "eval", "--model", MODEL, "--input", path, "--dump",
           fx->out);
    check_dump(fx, "base", false);
}

static void test_generate_matches_reference(void **state) {
    fixture *fx = *state;
    char prompts[3][512], want[3][128], both[256];
    for (int row = 0; row < 3; row++) {
        char name[64];
        snprintf(name, sizeof name, "decode.A.row%d.prompt_ids", row);
        const road_st_tensor *p = road_st_find(fx->cases, name);
        snprintf(name, sizeof name, "decode.A.row%d.generated_ids", row);
        const road_st_tensor *g = road_st_find(fx->cases, name);
        assert_non_null(p);
        assert_non_null(g);
        assert_int_equal(g->numel, N_DECODE);
        size_t k = 0;
        for (int64_t i = 0; i < p->numel; i++)
            k += (size_t)snprintf(prompts[row] + k, sizeof prompts[row] - k, "%s%lld", i ? " " : "",
                                  (long long)((const int64_t *)p->data)[i]);
        k = 0;
        for (int64_t i = 0; i < g->numel; i++)
            k += (size_t)snprintf(want[row] + k, sizeof want[row] - k, "%s%lld", i ? " " : "",
                                  (long long)((const int64_t *)g->data)[i]);
        snprintf(want[row] + k, sizeof want[row] - k, "\n");
    }
    /* the whole of stdout: the generated ids of row 0, nothing else */
    run_result r = run_argv(fx, ARGS("generate", "--model", MODEL, "--adapter", ADAPTER_A, "--use",
                                     "A", "--prompt-ids", prompts[0], "--max-new-tokens", "5"));
    if (r.code != 0 || strcmp(r.out, want[0]) != 0)
        fail_msg("road generate: exit %d, stdout '%s', expected '%s' (stderr: %s)", r.code, r.out,
                 want[0], r.err);
    run_free(&r);
    /* two prompts as one batch, one adapter each (comma-separated ids work too) */
    size_t k = strlen(prompts[1]);
    for (size_t i = 0; i < k; i++)
        if (prompts[1][i] == ' ') prompts[1][i] = ',';
    snprintf(both, sizeof both, "%s%s", want[1], want[2]);
    r = run_argv(fx, ARGS("generate", "--model", MODEL, "--adapter", ADAPTER_A, "--rows", "A,A",
                          "--prompt-ids", prompts[1], "--prompt-ids", prompts[2],
                          "--max-new-tokens=5", "--temperature", "0"));
    if (r.code != 0 || strcmp(r.out, both) != 0)
        fail_msg("road generate (2 prompts): exit %d, stdout '%s', expected '%s' (stderr: %s)",
                 r.code, r.out, both, r.err);
    run_free(&r);
    /* --stop-ids: the stop token is printed, then the sequence ends */
    char stop[32];
    const int64_t *g0 = road_st_find(fx->cases, "decode.A.row0.generated_ids")->data;
    snprintf(stop, sizeof stop, "%lld", (long long)g0[1]);
    char partial[64];
    snprintf(partial, sizeof partial, "%lld %lld\n", (long long)g0[0], (long long)g0[1]);
    r = run_argv(fx, ARGS("generate", "--model", MODEL, "--adapter", ADAPTER_A, "--use", "A",
                          "--prompt-ids", prompts[0], "--max-new-tokens", "5", "--stop-ids", stop));
    if (r.code != 0 || strcmp(r.out, partial) != 0)
        fail_msg("road generate --stop-ids %s: exit %d, stdout '%s', expected '%s'", stop, r.code,
                 r.out, partial);
    run_free(&r);
    /* without --max-new-tokens, generation_config.json's max_new_tokens applies */
    char dir[PATH_CAP], path[PATH_CAP + 32], three[64];
    snprintf(dir, sizeof dir, "%s/gen3", fx->root);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(symlink(MODEL "/config.json", path), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(symlink(MODEL "/model.safetensors", path), 0);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *gf = fopen(path, "wb");
    assert_non_null(gf);
    fputs("{\"eos_token_id\": 2, \"max_new_tokens\": 3}\n", gf);
    assert_int_equal(fclose(gf), 0);
    snprintf(three, sizeof three, "%lld %lld %lld\n", (long long)g0[0], (long long)g0[1],
             (long long)g0[2]);
    r = run_argv(fx, ARGS("generate", "--model", dir, "--adapter", ADAPTER_A, "--use", "A",
                          "--prompt-ids", prompts[0]));
    if (r.code != 0 || strcmp(r.out, three) != 0)
        fail_msg("road generate (generation_config max_new_tokens 3): exit %d, stdout '%s', "
                 "expected '%s' (stderr: %s)",
                 r.code, r.out, three, r.err);
    run_free(&r);
    /* seeded sampling is reproducible run to run */
    run_result s1 =
        run_argv(fx, ARGS("generate", "--model", MODEL, "--prompt-ids", "1 2 3", "--temperature",
                          "1.5", "--seed", "7", "--max-new-tokens", "8"));
    run_result s2 =
        run_argv(fx, ARGS("generate", "--model", MODEL, "--prompt-ids", "1 2 3", "--temperature",
                          "1.5", "--seed", "7", "--max-new-tokens", "8"));
    assert_int_equal(s1.code, 0);
    assert_int_equal(s2.code, 0);
    assert_string_equal(s1.out, s2.out);
    run_free(&s1);
    run_free(&s2);
}

/* --grads: every road_theta / road_alpha gradient of the active adapter, under PEFT's key
 * names, against the reference (README: <= 1e-4 x max |reference| per tensor). */
#define GRAD_REL 1e-4
static void test_eval_grads(void **state) {
    fixture *fx = *state;
    EXPECT(fx, 0, "loss 5.79766", "eval", "--model", MODEL, "--adapter", ADAPTER_B, "--use", "B",
           "--input", fx->in, "--dump", fx->out, "--grads");
    road_st_file *f = NULL;
    TU_OK(road_st_open(fx->out, &f));
    const cJSON *grads = cJSON_GetObjectItem(find_case(fx, "grad_B"), "gradients");
    int n = 0;
    const cJSON *g;
    cJSON_ArrayForEach(g, grads) {
        char ref_name[400];
        snprintf(ref_name, sizeof ref_name, "grad.B.%s", g->string);
        const road_st_tensor *ref = road_st_find(fx->cases, ref_name), *got = road_st_find(f, g->string);
        if (!got) fail_msg("road eval --grads wrote no '%s'", g->string);
        assert_non_null(ref);
        assert_int_equal(got->numel, ref->numel);
        float mx = 0;
        for (int64_t i = 0; i < ref->numel; i++) mx = fmaxf(mx, fabsf(((const float *)ref->data)[i]));
        tu_assert_close(g->string, got->data, ref->data, ref->numel, GRAD_REL * mx, 0);
        n++;
    }
    assert_int_equal(n, 28); /* 7 projections x 2 layers x (theta, alpha) */
    assert_int_equal(road_st_count(f), 2 + n); /* + logits, loss */
    road_st_close(f);
    assert_int_equal(unlink(fx->out), 0);
    EXPECT(fx, 2, "--grads needs --use", "eval", "--model", MODEL, "--input", fx->in, "--dump",
           fx->out, "--grads");
}

static void test_eval_errors(void **state) {
    fixture *fx = *state;
    char path[PATH_CAP];
    const char *in = fx->in, *out = fx->out;
    EXPECT(fx, 2, "--rows names 2 adapters for a batch of 3 rows", "eval", "--model", MODEL,
           "--adapter", ADAPTER_A, "--rows", "A,A", "--input", in, "--dump", out);
    EXPECT(fx, 2, "not both", "eval", "--model", MODEL, "--adapter", ADAPTER_A, "--use", "A",
           "--rows", "A,A,A", "--input", in, "--dump", out);
    EXPECT(fx, 1, "no adapter named 'nope'", "eval", "--model", MODEL, "--adapter", ADAPTER_A,
           "--use", "nope", "--input", in, "--dump", out);
    EXPECT(fx, 1, "'nope'", "eval", "--model", MODEL, "--adapter", ADAPTER_A, "--rows",
           "A,nope,__base__", "--input", in, "--dump", out);
    EXPECT(fx, 2, "--adapter takes NAME=DIR", "eval", "--model", MODEL, "--adapter",
           MODEL "/adapters/A", "--input", in, "--dump", out);
    EXPECT(fx, 2, "--adapter takes NAME=DIR", "eval", "--model", MODEL, "--adapter",
           "A=", "--input", in, "--dump", out);
    EXPECT(fx, 1, "loading an adapter", "eval", "--model", MODEL, "--adapter",
           "A=" MODEL "/adapters/none", "--input", in, "--dump", out);
    EXPECT(fx, 2, "--model, --input and --dump are required", "eval", "--model", MODEL, "--dump",
           out);
    EXPECT(fx, 2, "--dump needs a value", "eval", "--model", MODEL, "--input", in, "--dump");
    EXPECT(fx, 2, "unknown option '--bogus'", "eval", "--bogus");
    EXPECT(fx, 2, "--threads must be an integer", "eval", "--model", MODEL, "--input", in, "--dump",
           out, "--threads", "two");
    EXPECT(fx, 1, "does not exist", "eval", "--model", ROAD_FIXTURES "/llama/none", "--input", in,
           "--dump", out);
    EXPECT(fx, 1, "reading --input", "eval", "--model", MODEL, "--input", "/nonexistent/in.st",
           "--dump", out);
    EXPECT(fx, 1, "has no 'input_ids' tensor (I64 [B, T])", "eval", "--model", MODEL, "--input",
           write_input(fx, "noids.safetensors", IN_NO_IDS, path), "--dump", out);
    EXPECT(fx, 1, "'input_ids' must be I64 [B, T], got F32 [3, 9]", "eval", "--model", MODEL,
           "--input", write_input(fx, "f32ids.safetensors", IN_F32_IDS, path), "--dump", out);
    EXPECT(fx, 1, "'attention_mask' must be I64 [3, 9] like input_ids, got I64 [3, 8]", "eval",
           "--model", MODEL, "--input", write_input(fx, "mask.safetensors", IN_SHORT_MASK, path),
           "--dump", out);
    EXPECT(fx, 1, "labels[0][5] is 999", "eval", "--model", MODEL, "--input",
           write_input(fx, "labels.safetensors", IN_LABEL_RANGE, path), "--dump", out);
    EXPECT(fx, 1, "writing --dump", "eval", "--model", MODEL, "--input", in, "--dump",
           "/nonexistent/out.safetensors");
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0); /* no failed run left a dump behind */
    EXPECT(fx, 0, "usage: road eval", "eval", "--help");
}

static void test_generate_errors(void **state) {
    fixture *fx = *state;
    EXPECT(fx, 2, "'x 3' is not a token id", "generate", "--model", MODEL, "--prompt-ids", "1 x 3");
    EXPECT(fx, 2, "'-4' is not a token id", "generate", "--model", MODEL, "--prompt-ids", "1 -4");
    EXPECT(fx, 2, "--prompt-ids: no token ids given", "generate", "--model", MODEL, "--prompt-ids",
           " , ");
    EXPECT(fx, 2, "--max-new-tokens must be an integer from 1", "generate", "--model", MODEL,
           "--prompt-ids", "1 2 3", "--max-new-tokens", "0");
    EXPECT(fx, 2, "--temperature must be a number from 0", "generate", "--model", MODEL,
           "--prompt-ids", "1", "--temperature", "-1");
    EXPECT(fx, 2, "--top-p must be a number", "generate", "--model", MODEL, "--prompt-ids", "1",
           "--top-p", "0");
    EXPECT(fx, 2, "at least one --prompt or --prompt-ids are required", "generate", "--model",
           MODEL);
    EXPECT(fx, 2, "--rows names 1 adapters for 2 prompts", "generate", "--model", MODEL,
           "--adapter", ADAPTER_A, "--rows", "A", "--prompt-ids", "1", "--prompt-ids", "2");
    EXPECT(fx, 2, "not both", "generate", "--model", MODEL, "--adapter", ADAPTER_A, "--use", "A",
           "--rows", "A", "--prompt-ids", "1");
    EXPECT(fx, 2, "--adapter takes NAME=DIR", "generate", "--model", MODEL, "--adapter", "A",
           "--prompt-ids", "1");
    EXPECT(fx, 1, "no adapter named 'B'", "generate", "--model", MODEL, "--adapter", ADAPTER_A,
           "--use", "B", "--prompt-ids", "1");
    EXPECT(fx, 1, "outside the vocabulary", "generate", "--model", MODEL, "--prompt-ids", "1 320");
    EXPECT(fx, 0, "usage: road generate", "generate", "--help");
}

/* ---- main ---------------------------------------------------------------------------------- */

static int setup(void **state) {
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    const char *base = getenv("TMPDIR");
    snprintf(fx->root, sizeof fx->root, "%s/road_cli_llm_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fx->root)) {
        free(fx);
        return -1;
    }
    *state = fx;
    fx->cases = tu_open_golden("llama/tiny-llama/cases.safetensors");
    fx->json = tu_load_json("llama/tiny-llama/cases.json");
    const road_st_tensor *t = road_st_find(fx->cases, "inputs.input_ids");
    if (!t || t->dtype != ROAD_DTYPE_I64 || t->ndim != 2) return -1;
    fx->ids = t->data;
    fx->B = t->shape[0];
    fx->T = t->shape[1];
    fx->mask = road_st_find(fx->cases, "inputs.attention_mask")->data;
    fx->labels = road_st_find(fx->cases, "inputs.labels")->data;
    fx->V = road_st_find(fx->cases, "base.logits")->shape[2];
    write_input(fx, "in.safetensors", IN_GOOD, fx->in);
    snprintf(fx->out, sizeof fx->out, "%s/out.safetensors", fx->root);
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    road_st_close(fx->cases);
    cJSON_Delete(fx->json);
    tu_rm_rf(fx->root);
    free(fx);
    return 0;
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_eval_grads),
        T(test_eval_matches_reference),
        T(test_generate_matches_reference),
        T(test_eval_errors),
        T(test_generate_errors),
    };
#undef T
    return cmocka_run_group_tests_name("cli_llm", tests, NULL, NULL);
}
