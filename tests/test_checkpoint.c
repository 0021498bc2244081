/*
 * tests/test_checkpoint.c - checkpoint folders (road/train.h): resume is exact, saves are
 * atomic, bad checkpoints are refused with messages that say what differs, no leaks.
 *
 * The "training" here is deterministic and cheap but behaves like the real thing where it
 * matters: gradients depend on the current parameters (g = p - target + a step-dependent
 * ripple), steps go through a warmup+linear schedule, clipping and the RNG, so a resumed run
 * only matches an uninterrupted one if parameters, m, v, the step, the schedule and the RNG all
 * come back exactly. Two adapters are trained together ("default" at the top of the folder,
 * "extra" in a sub-folder, as PEFT saves them).
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "road/train.h"
#include "testutil.h"
#include "train/train_internal.h"

/* Steps of the uninterrupted run and where the interrupted one saves. */
enum { N_STEPS = 9, K_STEPS = 4 };
/* The clipping threshold: low enough that some steps clip. */
#define MAX_NORM 1.5
/* Attempts of the out-of-memory loops: more than the allocations one save or load makes. */
#define OOM_TRIES 400

/* ---- a tiny model ------------------------------------------------------------------------ */

enum { HID = 8, KVD = 4, N_DEC = 2, N_PROJ = 3, N_LAYERS = N_DEC * N_PROJ };
static const char *const proj[N_PROJ] = {"self_attn.q_proj", "self_attn.k_proj",
                                         "self_attn.v_proj"};
static const int64_t proj_out[N_PROJ] = {HID, KVD, KVD};

typedef struct tiny {
    road_adapter_set *s;
    road_optimizer *o;
    road_layer_desc d[N_LAYERS];
    char names[N_LAYERS][48];
    float *w[N_LAYERS];
    road_rng rng;
} tiny;

static road_status add_adapter(tiny *t, const char *name, road_variant var, int group,
                               const char *target, uint64_t seed) {
    road_config *cfg = NULL;
    road_status st = road_config_create(&cfg);
    if (st == ROAD_OK) st = road_config_set_variant(cfg, var);
    if (st == ROAD_OK) st = road_config_set_group_size(cfg, group);
    if (st == ROAD_OK) road_config_set_init_weights(cfg, false);
    if (st == ROAD_OK) st = road_config_set_target_list(cfg, &target, 1);
    if (st == ROAD_OK) st = road_adapter_set_add(t->s, name, cfg, seed);
    road_config_free(cfg);
    return st;
}

/* The model with adapters "default" (road_2 on q_proj) and "extra" (road_1 on v_proj), both
 * active and trained; `seed` picks their initial values. */
static void tiny_make(tiny *t, uint64_t seed, road_variant var) {
    memset(t, 0, sizeof *t);
    for (int l = 0; l < N_DEC; l++) {
        for (int p = 0; p < N_PROJ; p++) {
            const int i = l * N_PROJ + p;
            snprintf(t->names[i], sizeof t->names[i], "model.layers.%d.%s", l, proj[p]);
            t->w[i] = tu_alloc((size_t)(proj_out[p] * HID) * sizeof(float));
            tu_fill_uniform(t->w[i], proj_out[p] * HID, 50 + (uint64_t)i, -0.3f, 0.3f);
            t->d[i] = (road_layer_desc){.name = t->names[i],
                                        .kind = ROAD_LAYER_LINEAR,
                                        .in_features = HID,
                                        .out_features = proj_out[p],
                                        .weight = t->w[i]};
        }
    }
    road_adapter_set_params p = road_adapter_set_default_params();
    p.model_type = "llama";
    p.layers = t->d;
    p.n_layers = N_LAYERS;
    TU_OK(road_adapter_set_create(&p, &t->s));
    TU_OK(add_adapter(t, "default", var, 4, "q_proj", seed));
    TU_OK(add_adapter(t, "extra", ROAD_VARIANT_1, 2, "v_proj", seed + 1));
    const char *act[2] = {"default", "extra"};
    TU_OK(road_adapter_set_set_active(t->s, act, 2));
    road_adamw_params hp = road_adamw_default_params();
    hp.lr = 0.05;
    hp.weight_decay = 0.01;
    TU_OK(road_optimizer_create(t->s, NULL, 0, &hp, &t->o));
    road__rng_seed(&t->rng, 1234);
}

static void tiny_free(tiny *t) {
    road_optimizer_free(t->o);
    road_adapter_set_free(t->s);
    for (int i = 0; i < N_LAYERS; i++) free(t->w[i]);
}

static const road_schedule sched = {ROAD_SCHEDULE_LINEAR, 2, N_STEPS};

/* One training step: gradients from the parameters and an RNG draw, clip, update. */
static void train_step(tiny *t) {
    TU_OK(road_optimizer_zero_grad(t->o));
    const double ripple =
        road__rng_normal(&t->rng); /* uses the Box-Muller spare every other call */
    const int64_t step = road_optimizer_step_count(t->o);
    for (int32_t i = 0; i < road_optimizer_tensor_count(t->o); i++) {
        road_optim_tensor ti;
        TU_OK(road_optimizer_tensor(t->o, i, &ti));
        for (int64_t k = 0; k < ti.n; k++)
            ti.grad[k] = ti.param[k] - (ti.is_alpha ? 1.5f : 0.25f) +
                         (float)(ripple * sin(0.7 * (double)(k + 3 * step + i)));
    }
    TU_OK(road_optimizer_clip_grad_norm(t->o, MAX_NORM, NULL));
    TU_OK(road_optimizer_step(t->o, &sched, NULL));
}

static void assert_same_state(tiny *a, tiny *b) {
    assert_int_equal(road_optimizer_step_count(a->o), road_optimizer_step_count(b->o));
    assert_int_equal(road_optimizer_tensor_count(a->o), road_optimizer_tensor_count(b->o));
    for (int32_t i = 0; i < road_optimizer_tensor_count(a->o); i++) {
        road_optim_tensor x, y;
        TU_OK(road_optimizer_tensor(a->o, i, &x));
        TU_OK(road_optimizer_tensor(b->o, i, &y));
        assert_int_equal(x.n, y.n);
        tu_assert_equal_f32("param", x.param, y.param, x.n);
        tu_assert_equal_f32("exp_avg", x.m, y.m, x.n);
        tu_assert_equal_f32("exp_avg_sq", x.v, y.v, x.n);
    }
    assert_memory_equal(&a->rng, &b->rng, sizeof a->rng);
}

/* ---- scratch folders --------------------------------------------------------------------- */

static int setup(void **state) {
    (void)state;
    return tu_scratch_make("test_checkpoint");
}

static int teardown(void **state) {
    (void)state;
    return tu_scratch_remove();
}


/* Entries of the scratch folder whose name contains `needle` (leftover temporary folders). */
static int count_entries(const char *needle) {
    int n = 0;
    DIR *d = opendir(tu_scratch_root());
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, needle)) continue;
        printf("left behind: %s\n", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static road_checkpoint_state state_of(tiny *t) {
    road_checkpoint_state st;
    memset(&st, 0, sizeof st);
    st.schedule = sched;
    st.rng = road_rng_state_get(&t->rng);
    st.n_data_pos = 3;
    st.data_pos[0] = 1;             /* epoch */
    st.data_pos[1] = INT64_MAX - 5; /* needs all 64 bits */
    st.data_pos[2] = -road_optimizer_step_count(t->o);
    return st;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static const char *const run_config = "{\"lr\": 0.05, \"note\": \"caf\\u00e9\"}";

static void test_resume_exact(void **state) {
    (void)state;
    tiny full, part, resumed;
    tiny_make(&full, 7, ROAD_VARIANT_2);
    tiny_make(&part, 7, ROAD_VARIANT_2);
    /* After K steps both runs draw one extra normal, so the saved generator holds a live
     * Box-Muller spare (draws come in pairs) that must come back too. */
    for (int s = 0; s < N_STEPS; s++) {
        train_step(&full);
        if (s == K_STEPS - 1) (void)road__rng_normal(&full.rng);
    }
    for (int s = 0; s < K_STEPS; s++) train_step(&part);
    (void)road__rng_normal(&part.rng);
    assert_true(part.rng.has_spare);
    char *dir = NULL;
    TU_OK(road_checkpoint_path(tu_scratch_root(), road_optimizer_step_count(part.o), &dir));
    assert_string_equal(dir, tu_scratch_at("checkpoint-4"));
    road_checkpoint_state st = state_of(&part);
    TU_OK(road_checkpoint_save(part.o, &st, run_config, dir));

    /* A fresh model (other initial values) and optimizer pick up where `part` stopped. */
    tiny_make(&resumed, 99, ROAD_VARIANT_2);
    road_checkpoint_state got;
    char *cfg = NULL;
    TU_OK(road_checkpoint_load(resumed.o, dir, &got, &cfg));
    assert_non_null(cfg);
    assert_string_equal(cfg, run_config);
    road_string_free(cfg);
    assert_int_equal(road_optimizer_step_count(resumed.o), K_STEPS);
    assert_memory_equal(&got.schedule, &sched, sizeof sched);
    assert_int_equal(got.n_data_pos, 3);
    assert_memory_equal(got.data_pos, st.data_pos, 3 * sizeof(int64_t));
    assert_memory_equal(&got.rng, &st.rng, sizeof st.rng);
    road_rng_state_set(&resumed.rng, &got.rng);
    assert_same_state(&part, &resumed);

    for (int s = K_STEPS; s < N_STEPS; s++) train_step(&resumed);
    assert_same_state(&full, &resumed);

    /* The adapters in the checkpoint are PEFT folders: road_adapter_set_load reads them. */
    tiny peft;
    tiny_make(&peft, 5, ROAD_VARIANT_2);
    TU_OK(road_adapter_set_load(peft.s, "loaded", dir));
    char sub[600];
    snprintf(sub, sizeof sub, "%s/extra", dir);
    TU_OK(road_adapter_set_load(peft.s, "loaded_extra", sub));
    float *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    const int32_t q0 = road_adapter_set_find_layer(peft.s, "model.layers.0.self_attn.q_proj");
    TU_OK(road_linear_adapter_params(road_adapter_set_layer(peft.s, q0), "loaded", &a, NULL, &na));
    TU_OK(road_linear_adapter_params(road_adapter_set_layer(part.s, q0), "default", &b, NULL, &nb));
    assert_int_equal(na, nb);
    tu_assert_equal_f32("PEFT folder theta", a, b, na);

    /* Last-checkpoint lookup skips temporary folders and other names. */
    assert_int_equal(mkdir(tu_scratch_at("checkpoint-12.tmp.abcdef"), 0777), 0);
    assert_int_equal(mkdir(tu_scratch_at("checkpoint-x"), 0777), 0);
    TU_OK(road_checkpoint_save(full.o, NULL, NULL, tu_scratch_at("checkpoint-9/"))); /* slash: same */
    char *last = NULL;
    int64_t step = -1;
    TU_OK(road_checkpoint_find_last(tu_scratch_root(), &last, &step));
    assert_int_equal(step, 9);
    assert_string_equal(last, tu_scratch_at("checkpoint-9"));
    road_string_free(last);
    TU_FAILS(road_checkpoint_find_last(tu_scratch_at("checkpoint-x"), &last, &step), ROAD_ERR_NOT_FOUND,
             "no checkpoint-<step>");
    /* Saved without state or config: loads with none. */
    cfg = (char *)1;
    TU_OK(road_checkpoint_load(resumed.o, tu_scratch_at("checkpoint-9"), &got, &cfg));
    assert_null(cfg);
    assert_int_equal(got.n_data_pos, 0);
    assert_int_equal(road_optimizer_step_count(resumed.o), N_STEPS);
    tu_rm_rf(tu_scratch_at("checkpoint-12.tmp.abcdef"));

    road_string_free(dir);
    tiny_free(&full), tiny_free(&part), tiny_free(&resumed), tiny_free(&peft);
}

/* A checkpoint save that fails at every possible allocation leaves the previous checkpoint
 * loadable and unchanged, no temporary folder, and no leaked bytes; loads that fail change
 * nothing. */
static void test_atomic_and_oom(void **state) {
    (void)state;
    tiny a, check;
    tiny_make(&a, 11, ROAD_VARIANT_2);
    tiny_make(&check, 12, ROAD_VARIANT_2);
    for (int s = 0; s < 2; s++) train_step(&a);
    const char *dir = tu_scratch_at("ckpt-oom");
    road_checkpoint_state st = state_of(&a);
    TU_OK(road_checkpoint_save(a.o, &st, "{}", dir));
    for (int s = 0; s < 3; s++) train_step(&a);
    /* Grad buffers are allocated on first use and kept by the layers: touch them first. */
    TU_OK(road_optimizer_zero_grad(check.o));
    TU_OK(road_optimizer_scale_grads(check.o, 1.0f));
    const int64_t live0 = road__alloc_live_bytes();
    int ok_at = -1;
    for (int k = 0; k < OOM_TRIES && ok_at < 0; k++) {
        road__alloc_fail_after(k);
        road_status s = road_checkpoint_save(a.o, &st, "{\"v\": 2}", dir);
        road__alloc_fail_after(-1);
        assert_int_equal(count_entries(".tmp."), 0);
        assert_int_equal(count_entries(".old."), 0);
        assert_int_equal(road__alloc_live_bytes(), live0);
        if (s == ROAD_OK) {
            ok_at = k;
            break;
        }
        assert_int_equal(s, ROAD_ERR_NO_MEMORY);
        /* The previous checkpoint is still there and whole. */
        char *cfg = NULL;
        TU_OK(road_checkpoint_load(check.o, dir, NULL, &cfg));
        assert_string_equal(cfg, "{}");
        road_string_free(cfg);
        assert_int_equal(road_optimizer_step_count(check.o), 2);
    }
    printf("save: succeeded with %d allocations allowed\n", ok_at);
    assert_true(ok_at > 0);
    /* Loading under OOM: nothing changes until it succeeds. */
    tiny b;
    tiny_make(&b, 13, ROAD_VARIANT_2);
    TU_OK(road_optimizer_zero_grad(b.o));
    TU_OK(road_optimizer_scale_grads(b.o, 1.0f));
    road_optim_tensor t0;
    TU_OK(road_optimizer_tensor(b.o, 0, &t0));
    float before[HID];
    memcpy(before, t0.param, (size_t)t0.n * sizeof(float));
    const int64_t live1 = road__alloc_live_bytes();
    ok_at = -1;
    for (int k = 0; k < OOM_TRIES && ok_at < 0; k++) {
        char *cfg = NULL;
        road__alloc_fail_after(k);
        road_status s = road_checkpoint_load(b.o, dir, NULL, &cfg);
        road__alloc_fail_after(-1);
        road_string_free(cfg);
        assert_int_equal(road__alloc_live_bytes(), live1);
        if (s == ROAD_OK) {
            ok_at = k;
            break;
        }
        assert_int_equal(s, ROAD_ERR_NO_MEMORY);
        assert_int_equal(road_optimizer_step_count(b.o), 0);
        tu_assert_equal_f32("param after failed load", t0.param, before, t0.n);
    }
    printf("load: succeeded with %d allocations allowed\n", ok_at);
    assert_true(ok_at > 0);
    b.rng = a.rng;
    assert_same_state(&a, &b);

    /* An unwritable place: the parent is a regular file. */
    FILE *f = fopen(tu_scratch_at("plainfile"), "w");
    assert_non_null(f);
    fclose(f);
    TU_FAILS(road_checkpoint_save(a.o, NULL, NULL, tu_scratch_at("plainfile/checkpoint-1")), ROAD_ERR_IO,
             "plainfile");
    tiny_free(&a), tiny_free(&check), tiny_free(&b);
}

/* Replace one file of a checkpoint with `text`. */
static void put_file(const char *dir, const char *name, const char *text, size_t len) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void copy_dir_file(const char *from, const char *to, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", from, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    put_file(to, name, buf, n);
}

static void expect_refused(tiny *t, const char *dir, road_status want, const char *needle) {
    road_optim_tensor t0;
    TU_OK(road_optimizer_tensor(t->o, 0, &t0));
    const float p0 = t0.param[0], m0 = t0.m[0];
    const int64_t step0 = road_optimizer_step_count(t->o);
    TU_FAILS(road_checkpoint_load(t->o, dir, NULL, NULL), want, needle);
    printf("refused as expected: %s\n", road_last_error());
    assert_true(t0.param[0] == p0 && t0.m[0] == m0);
    assert_int_equal(road_optimizer_step_count(t->o), step0);
}

static void test_refused(void **state) {
    (void)state;
    tiny a, b;
    tiny_make(&a, 21, ROAD_VARIANT_2);
    tiny_make(&b, 22, ROAD_VARIANT_2);
    train_step(&a);
    const char *good = tu_scratch_at("good");
    TU_OK(road_checkpoint_save(a.o, NULL, NULL, good));
    TU_OK(road_checkpoint_load(b.o, good, NULL, NULL)); /* the baseline loads */
    train_step(&b);

    expect_refused(&b, tu_scratch_at("missing"), ROAD_ERR_NOT_FOUND, "is not a folder");

    /* Each case: a copy of `good` with one thing broken. */
    const char *bad = tu_scratch_at("bad");
    const char *files[3] = {"trainer_state.json", "optimizer.safetensors",
                            "adapter_model.safetensors"};
    char sub[600];
#define FRESH_COPY()                                                                               \
    do {                                                                                           \
        tu_rm_rf(bad);                                                                                \
        assert_int_equal(mkdir(bad, 0777), 0);                                                     \
        snprintf(sub, sizeof sub, "%s/extra", bad);                                                \
        assert_int_equal(mkdir(sub, 0777), 0);                                                     \
        for (int i = 0; i < 3; i++) copy_dir_file(good, bad, files[i]);                            \
        copy_dir_file(good, bad, "adapter_config.json");                                           \
        char gsub[600];                                                                            \
        snprintf(gsub, sizeof gsub, "%s/extra", good);                                             \
        copy_dir_file(gsub, sub, "adapter_config.json");                                           \
        copy_dir_file(gsub, sub, "adapter_model.safetensors");                                     \
    } while (0)

    FRESH_COPY();
    TU_OK(road_checkpoint_load(b.o, bad, NULL, NULL)); /* the copy itself is fine */
    train_step(&b);

    FRESH_COPY();
    put_file(bad, "optimizer.safetensors", "\x10\0\0\0\0\0\0\0{", 9); /* truncated */
    expect_refused(&b, bad, ROAD_ERR_FORMAT, "optimizer.safetensors");

    FRESH_COPY();
    put_file(bad, "trainer_state.json", "{\"format\": \"other\"}", 19);
    expect_refused(&b, bad, ROAD_ERR_FORMAT, "not a road checkpoint");

    FRESH_COPY();
    put_file(bad, "trainer_state.json", "{\"format\": ", 11);
    expect_refused(&b, bad, ROAD_ERR_FORMAT, "trainer_state.json");

    FRESH_COPY();
    snprintf(sub, sizeof sub, "%s/extra/adapter_model.safetensors", bad);
    unlink(sub);
    expect_refused(&b, bad, ROAD_ERR_IO, "extra/adapter_model.safetensors");

    /* A model where "default" is road_4: different shapes. */
    tiny c;
    tiny_make(&c, 23, ROAD_VARIANT_4);
    expect_refused(&c, good, ROAD_ERR_SHAPE, "road_2");
    tiny_free(&c);

    /* An optimizer over only one of the adapters. */
    road_optimizer *one = NULL;
    const char *names[1] = {"extra"};
    TU_OK(road_optimizer_create(b.s, names, 1, NULL, &one));
    TU_FAILS(road_checkpoint_load(one, good, NULL, NULL), ROAD_ERR_SHAPE, "trains adapters");
    road_optimizer_free(one);

    /* A negative second moment (impossible state) is refused by name. */
    road_optim_tensor t1;
    TU_OK(road_optimizer_tensor(a.o, 1, &t1));
    t1.v[0] = -1.0f;
    TU_OK(road_checkpoint_save(a.o, NULL, NULL, bad));
    expect_refused(&b, bad, ROAD_ERR_NUMERIC, "q_proj.road_alpha.default.exp_avg_sq");
    t1.v[0] = 0.0f;

    /* Bad arguments. */
    road_checkpoint_state st = state_of(&a);
    st.n_data_pos = ROAD_CHECKPOINT_MAX_DATA_POS + 1;
    TU_FAILS(road_checkpoint_save(a.o, &st, NULL, bad), ROAD_ERR_INVALID_ARG, "data position");
    TU_FAILS(road_checkpoint_save(NULL, NULL, NULL, bad), ROAD_ERR_INVALID_ARG, NULL);
    char *p = NULL;
    TU_FAILS(road_checkpoint_path(tu_scratch_root(), -1, &p), ROAD_ERR_INVALID_ARG, "negative");
    tiny_free(&a), tiny_free(&b);
}

/* A checkpoint carries its run's identity (read back without loading anything), and a save
 * never replaces a folder that is not a checkpoint (it used to empty any folder). */
static void test_run_identity_and_rule(void **state) {
    (void)state;
    tiny a;
    tiny_make(&a, 31, ROAD_VARIANT_2);
    train_step(&a);
    road_checkpoint_state st = state_of(&a);
    st.run_json = "{\"data\": {\"hash\": \"abc\"}, \"trainer\": {\"lr\": 0.5}}";
    TU_OK(road_checkpoint_save(a.o, &st, NULL, tu_scratch_at("ident/checkpoint-1")));
    char *run = NULL;
    int64_t step = -1;
    bool finished = true;
    TU_OK(road_checkpoint_read_run(tu_scratch_at("ident/checkpoint-1"), &run, &step, &finished));
    assert_non_null(run);
    assert_non_null(strstr(run, "\"abc\""));
    assert_non_null(strstr(run, "0.5"));
    assert_int_equal(step, 1);
    assert_false(finished);
    road_string_free(run);
    /* without an identity: read back as NULL (resume refuses such a checkpoint) */
    st.run_json = NULL;
    TU_OK(road_checkpoint_save(a.o, &st, NULL, tu_scratch_at("ident/checkpoint-2")));
    TU_OK(road_checkpoint_read_run(tu_scratch_at("ident/checkpoint-2"), &run, &step, NULL));
    assert_null(run);
    st.run_json = "[1, 2]";
    TU_FAILS(road_checkpoint_save(a.o, &st, NULL, tu_scratch_at("ident/checkpoint-3")), ROAD_ERR_INVALID_ARG,
             "not a JSON object");
    /* someone's folder under a checkpoint's name is left alone */
    assert_int_equal(mkdir(tu_scratch_at("ident/checkpoint-4"), 0777), 0);
    put_file(tu_scratch_at("ident/checkpoint-4"), "mine.txt", "keep", 4);
    st.run_json = NULL;
    TU_FAILS(road_checkpoint_save(a.o, &st, NULL, tu_scratch_at("ident/checkpoint-4")), ROAD_ERR_EXISTS,
             "mine.txt");
    char path[600];
    snprintf(path, sizeof path, "%s/mine.txt", tu_scratch_at("ident/checkpoint-4"));
    assert_int_equal(access(path, F_OK), 0);
    /* a checkpoint is replaced in one step by a newer one */
    train_step(&a);
    TU_OK(road_checkpoint_save(a.o, &st, NULL, tu_scratch_at("ident/checkpoint-1")));
    TU_OK(road_checkpoint_read_run(tu_scratch_at("ident/checkpoint-1"), &run, &step, NULL));
    assert_int_equal(step, 2);
    assert_int_equal(count_entries(".tmp."), 0);
    tiny_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_identity_and_rule),
        cmocka_unit_test(test_resume_exact),
        cmocka_unit_test(test_atomic_and_oom),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
