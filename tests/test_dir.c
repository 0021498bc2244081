/*
 * tests/test_dir.c - output folders (io/dir.h, road/outdir.h): what road may replace, atomic
 * replacement (RENAME_EXCHANGE and the two-rename fallback, a crash between the two renames
 * and its repair), folders that keep their other entries, the umask's mode, and the writers
 * that use them (road_model_save, road_adapter_set_save) refusing or staying whole.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "io/dir.h"
#include "road/road.h"
#include "testutil.h"

#define MODEL ROAD_FIXTURES "/llama/tiny-llama"
#define ADAPTER_A MODEL "/adapters/A"
/* Attempts of the out-of-memory loop: more than the allocations one adapter save makes. */
#define OOM_TRIES 400

static int setup(void **state) {
    (void)state;
    return tu_scratch_make("test_dir");
}

static int teardown(void **state) {
    (void)state;
    return tu_scratch_remove();
}


static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[4][1 << 17];
    static int k;
    k = (k + 1) % 4;
    size_t n = fread(buf[k], 1, sizeof buf[k] - 1, f);
    buf[k][n] = '\0';
    fclose(f);
    return buf[k];
}

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Entries of the scratch folder whose name contains `needle`. */
static int count_in_root(const char *needle) {
    DIR *d = opendir(tu_scratch_root());
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += strstr(e->d_name, needle) != NULL;
    if (d) closedir(d);
    return n;
}

/* A folder named rel with files "name=text" pairs. */
static void make_dir(const char *rel, const char *const *files, int n) {
    assert_int_equal(mkdir(tu_scratch_at(rel), 0777), 0);
    for (int i = 0; i < n; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", tu_scratch_at(rel), files[i]);
        put(path, files[i]);
    }
}

/* ---- temporary folders get the umask's mode --------------------------------------------- */

static void test_temp_mode(void **state) {
    (void)state;
    const mode_t masks[2] = {022, 027};
    for (int i = 0; i < 2; i++) {
        const mode_t old = umask(masks[i]);
        char *tmp = NULL;
        TU_OK(road__dir_make_temp(tu_scratch_at("mode"), ".tmp.", &tmp));
        umask(old);
        struct stat st;
        assert_int_equal(stat(tmp, &st), 0);
        if ((st.st_mode & 0777) != (0777 & ~masks[i]))
            fail_msg("umask %03o: folder mode %03o, expected %03o", (unsigned)masks[i],
                     (unsigned)(st.st_mode & 0777), (unsigned)(0777 & ~masks[i]));
        road__dir_remove_tree(tmp, 0); /* and lets go of its lock */
        assert_false(exists(tmp));
        road__free(tmp);
    }
}

/* ---- install: exchange, fallback, crash and repair -------------------------------------- */

/* op (road__dir_install or road__dir_update) of the folder tmp onto the scratch folder's name,
 * which must succeed, with ROAD_DIR_FALLBACK_ENV set to hook for the call (NULL: unset); frees
 * tmp. */
static void move_in(road_status (*op)(const char *, const char *), char *tmp, const char *name,
                    const char *hook) {
    if (hook) setenv(ROAD_DIR_FALLBACK_ENV, hook, 1);
    road_status s = op(tmp, tu_scratch_at(name));
    unsetenv(ROAD_DIR_FALLBACK_ENV);
    TU_OK(s);
    road__free(tmp);
}

static void install_once(const char *name, const char *hook) {
    static const char *const old_files[] = {"old.txt"};
    static const char *const new_files[] = {"new.txt"};
    make_dir(name, old_files, 1);
    char *tmp = NULL;
    TU_OK(road__dir_make_temp(tu_scratch_at(name), ".tmp.", &tmp));
    char path[700];
    snprintf(path, sizeof path, "%s/%s", tmp, new_files[0]);
    put(path, "new");
    move_in(road__dir_install, tmp, name, hook);
    snprintf(path, sizeof path, "%s/new.txt", tu_scratch_at(name));
    assert_true(exists(path));
    snprintf(path, sizeof path, "%s/old.txt", tu_scratch_at(name));
    assert_false(exists(path));
    assert_int_equal(count_in_root(".tmp."), 0);
    assert_int_equal(count_in_root(".old."), 0);
}

static void test_install(void **state) {
    (void)state;
    install_once("swap", NULL);  /* renameat2(RENAME_EXCHANGE) */
    install_once("twice", "1"); /* the two-rename fallback */
}

/* kill -9 between the fallback's two renames: no folder at the path for a moment; the next
 * writer (or road_out_check) puts the old folder back and removes the new one's leftovers. */
static void test_crash_repair(void **state) {
    (void)state;
    static const char *const old_files[] = {"config.json", "model.safetensors"};
    make_dir("crash", old_files, 2);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* the writer: its temporary folder, then the fallback's two renames */
        char *tmp = NULL;
        if (road__dir_make_temp(tu_scratch_at("crash"), ".tmp.", &tmp) != ROAD_OK) _exit(1);
        setenv(ROAD_DIR_FALLBACK_ENV, "crash", 1);
        (void)road__dir_install(tmp, tu_scratch_at("crash"));
        _exit(0); /* not reached: the hook ends the process between the renames */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGKILL);
    assert_false(exists(tu_scratch_at("crash")));           /* the window the fallback cannot close */
    assert_int_equal(count_in_root("crash.old."), 1);
    assert_int_equal(count_in_root("crash.tmp."), 1);
    road_out_state st;
    TU_OK(road_out_check(tu_scratch_at("crash"), ROAD_OUT_MODEL, true, NULL, 0, &st));
    assert_int_equal(st, ROAD_OUT_EXISTING);
    assert_non_null(slurp(tu_scratch_at("crash/config.json")));
    assert_int_equal(count_in_root("crash."), 0);
}

/* Two writers next to each other: a repair leaves a live writer's temporary folder alone (it
 * holds a lock on it) and removes it once that writer is killed. */
static void test_live_writer(void **state) {
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char *tmp = NULL;
        if (road__dir_make_temp(tu_scratch_at("busy"), ".tmp.", &tmp) != ROAD_OK) _exit(1);
        if (write(fds[1], "x", 1) != 1) _exit(1);
        for (;;) pause(); /* writing, as far as anyone can tell */
    }
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    close(fds[1]);
    const int before = count_in_root("busy.tmp.");
    road_out_state st;
    road_status s = road_out_check(tu_scratch_at("busy"), ROAD_OUT_MODEL, false, NULL, 0, &st);
    const int during = count_in_root("busy.tmp.");
    /* the writer goes first: a failed assertion must not leave it running */
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    TU_OK(s);
    assert_int_equal(before, 1);
    assert_int_equal(during, 1); /* left alone while its writer was alive */
    TU_OK(road_out_check(tu_scratch_at("busy"), ROAD_OUT_MODEL, false, NULL, 0, &st));
    assert_int_equal(count_in_root("busy.tmp."), 0); /* its writer is gone: cleaned up */
}

/* ---- the rule -------------------------------------------------------------------------------- */

static void test_rule(void **state) {
    (void)state;
    static const char *const foreign[] = {"notes.txt", "thesis.tex"};
    make_dir("mine", foreign, 2);
    TU_FAILS(road_out_check(tu_scratch_at("mine"), ROAD_OUT_MODEL, true, NULL, 0, NULL), ROAD_ERR_EXISTS,
             "notes.txt");
    TU_FAILS(road_out_check(tu_scratch_at("mine"), ROAD_OUT_ADAPTER, true, NULL, 0, NULL), ROAD_ERR_EXISTS,
             "thesis.tex");
    /* road's names, but not a model folder road wrote: no config.json */
    static const char *const weights_only[] = {"model.safetensors"};
    make_dir("weights", weights_only, 1);
    TU_FAILS(road_out_check(tu_scratch_at("weights"), ROAD_OUT_MODEL, true, NULL, 0, NULL), ROAD_ERR_EXISTS,
             "no config.json");
    /* a model folder: replaced only with overwrite */
    static const char *const model[] = {"config.json", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors",
                                        "model.safetensors.index.json", "tokenizer.json"};
    make_dir("model", model, 5);
    TU_FAILS(road_out_check(tu_scratch_at("model"), ROAD_OUT_MODEL, false, NULL, 0, NULL), ROAD_ERR_EXISTS,
             "--overwrite");
    road_out_state st = ROAD_OUT_ABSENT;
    TU_OK(road_out_check(tu_scratch_at("model"), ROAD_OUT_MODEL, true, NULL, 0, &st));
    assert_int_equal(st, ROAD_OUT_EXISTING);
    /* an adapter folder with a named adapter in a sub-folder */
    static const char *const adapter[] = {"adapter_config.json", "adapter_model.safetensors"};
    make_dir("ad", adapter, 2);
    make_dir("ad/extra", adapter, 2);
    TU_OK(road_out_check(tu_scratch_at("ad"), ROAD_OUT_ADAPTER, true, NULL, 0, &st));
    TU_FAILS(road_out_check(tu_scratch_at("ad"), ROAD_OUT_CONFIG, true, NULL, 0, NULL), ROAD_ERR_EXISTS,
             "adapter_model.safetensors");
    /* empty and absent; the parents of an absent one are created */
    assert_int_equal(mkdir(tu_scratch_at("empty"), 0777), 0);
    TU_OK(road_out_check(tu_scratch_at("empty"), ROAD_OUT_MODEL, false, NULL, 0, &st));
    assert_int_equal(st, ROAD_OUT_EMPTY);
    TU_OK(road_out_check(tu_scratch_at("a/b/c"), ROAD_OUT_MODEL, false, NULL, 0, &st));
    assert_int_equal(st, ROAD_OUT_ABSENT);
    assert_true(exists(tu_scratch_at("a/b")));
    assert_false(exists(tu_scratch_at("a/b/c")));
    /* never an input, nor a folder holding one */
    const char *inputs[1] = {tu_scratch_at("model/config.json")};
    TU_FAILS(road_out_check(tu_scratch_at("model"), ROAD_OUT_MODEL, true, inputs, 1, NULL),
             ROAD_ERR_INVALID_ARG, "road never writes over what it reads");
    inputs[0] = tu_scratch_at("model");
    TU_FAILS(road_out_check(tu_scratch_at("model"), ROAD_OUT_MODEL, true, inputs, 1, NULL),
             ROAD_ERR_INVALID_ARG, "is the input");
    TU_FAILS(road_out_check(tu_scratch_root(), ROAD_OUT_TRAIN_RUN, true, inputs, 1, NULL),
             ROAD_ERR_INVALID_ARG, "holding the input");
    /* never the current folder, the home folder, or one holding them, nor / */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tu_scratch_at("empty")), 0);
    TU_FAILS(road_out_check(".", ROAD_OUT_MODEL, true, NULL, 0, NULL), ROAD_ERR_INVALID_ARG,
             "current folder");
    TU_FAILS(road_out_check(tu_scratch_root(), ROAD_OUT_TRAIN_RUN, true, NULL, 0, NULL), ROAD_ERR_INVALID_ARG,
             "current folder");
    assert_int_equal(chdir(cwd), 0);
    const char *home = getenv("HOME");
    char *saved = home ? strdup(home) : NULL;
    setenv("HOME", tu_scratch_at("empty"), 1);
    TU_FAILS(road_out_check(tu_scratch_at("empty"), ROAD_OUT_MODEL, true, NULL, 0, NULL),
             ROAD_ERR_INVALID_ARG, "home folder");
    if (saved) setenv("HOME", saved, 1);
    else unsetenv("HOME");
    free(saved);
    TU_FAILS(road_out_check("/", ROAD_OUT_MODEL, true, NULL, 0, NULL), ROAD_ERR_INVALID_ARG, NULL);
    /* not a folder; a symbolic link */
    put(tu_scratch_at("file"), "x");
    TU_FAILS(road_out_check(tu_scratch_at("file"), ROAD_OUT_MODEL, true, NULL, 0, NULL), ROAD_ERR_IO,
             "not a folder");
    assert_int_equal(symlink(tu_scratch_at("model"), tu_scratch_at("link")), 0);
    TU_FAILS(road_out_check(tu_scratch_at("link"), ROAD_OUT_MODEL, true, NULL, 0, NULL),
             ROAD_ERR_INVALID_ARG, "symbolic link");
    /* an unwritable place: the parent is a regular file */
    TU_FAILS(road_out_check(tu_scratch_at("file/sub"), ROAD_OUT_MODEL, true, NULL, 0, NULL), ROAD_ERR_IO,
             "file");
    /* a training output folder: its checkpoints and best/ are road's */
    static const char *const run[] = {"adapter_config.json", "adapter_model.safetensors",
                                      "train_log.jsonl", "run_config.json", "trainer_state.json"};
    static const char *const ckpt[] = {"adapter_config.json", "adapter_model.safetensors",
                                       "optimizer.safetensors", "trainer_state.json"};
    make_dir("run", run, 5);
    make_dir("run/checkpoint-2", ckpt, 4);
    make_dir("run/best", adapter, 2);
    TU_OK(road_out_check(tu_scratch_at("run"), ROAD_OUT_TRAIN_RUN, true, NULL, 0, &st));
    make_dir("run/checkpoint-2/stray", foreign, 1);
    TU_FAILS(road_out_check(tu_scratch_at("run"), ROAD_OUT_TRAIN_RUN, true, NULL, 0, NULL), ROAD_ERR_EXISTS,
             "checkpoint-2/");
}

/* ---- update: new entries swapped in, the others kept ------------------------------------ */

static void update_once(const char *name, const char *hook) {
    static const char *const run[] = {"adapter_config.json", "adapter_model.safetensors",
                                      "train_log.jsonl"};
    make_dir(name, run, 3);
    char sub[600], path[700];
    snprintf(sub, sizeof sub, "%s/checkpoint-1", name);
    static const char *const ckpt[] = {"trainer_state.json"};
    make_dir(sub, ckpt, 1);
    snprintf(path, sizeof path, "%s/train_log.jsonl", tu_scratch_at(name));
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    char *tmp = NULL;
    TU_OK(road__dir_make_temp(tu_scratch_at(name), ".tmp.", &tmp));
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    put(path, "new config");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    put(path, "new weights");
    move_in(road__dir_update, tmp, name, hook);
    snprintf(path, sizeof path, "%s/adapter_config.json", tu_scratch_at(name));
    assert_string_equal(slurp(path), "new config");
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", tu_scratch_at(name));
    assert_string_equal(slurp(path), "new weights");
    snprintf(path, sizeof path, "%s/checkpoint-1/trainer_state.json", tu_scratch_at(name));
    assert_string_equal(slurp(path), "trainer_state.json");
    snprintf(path, sizeof path, "%s/train_log.jsonl", tu_scratch_at(name));
    assert_int_equal(stat(path, &after), 0);
    assert_true(before.st_ino == after.st_ino); /* linked, not copied: an open log goes on */
    assert_int_equal(count_in_root(".tmp."), 0);
    assert_int_equal(count_in_root(".old."), 0);
}

static void test_update(void **state) {
    (void)state;
    update_once("upd", NULL);
    update_once("upd_fallback", "1");
}

/* ---- the writers -------------------------------------------------------------------------- */

/* road_model_save used to empty any folder it was given. */
static void test_model_save_refuses(void **state) {
    (void)state;
    road_model *m = NULL;
    TU_OK(road_model_load(MODEL, NULL, &m));
    static const char *const foreign[] = {"notes.txt"};
    make_dir("work", foreign, 1);
    TU_FAILS(road_model_save(m, tu_scratch_at("work"), ROAD_DTYPE_F32), ROAD_ERR_EXISTS, "notes.txt");
    assert_string_equal(slurp(tu_scratch_at("work/notes.txt")), "notes.txt");
    TU_FAILS(road_model_save(m, MODEL, ROAD_DTYPE_F32), ROAD_ERR_INVALID_ARG, "input");
    TU_OK(road_model_save(m, tu_scratch_at("saved"), ROAD_DTYPE_F32));
    TU_OK(road_model_save(m, tu_scratch_at("saved"), ROAD_DTYPE_BF16)); /* its own kind: replaced */
    assert_non_null(strstr(slurp(tu_scratch_at("saved/config.json")), "bfloat16"));
    road_model_free(m);
}

/* An adapter folder is one unit: a save that fails anywhere (each allocation in turn) leaves
 * the previous config and weights, both, byte for byte. */
static void test_adapter_save_unit(void **state) {
    (void)state;
    road_model *m = NULL;
    TU_OK(road_model_load(MODEL, NULL, &m));
    road_adapter_set *set = road_model_adapters(m);
    TU_OK(road_adapter_set_load(set, "default", ADAPTER_A));
    TU_OK(road_adapter_set_save(set, tu_scratch_at("unit"), NULL, 0));
    char cfg0[1 << 12], w0[1 << 16];
    snprintf(cfg0, sizeof cfg0, "%s", slurp(tu_scratch_at("unit/adapter_config.json")));
    FILE *f = fopen(tu_scratch_at("unit/adapter_model.safetensors"), "rb");
    assert_non_null(f);
    size_t n0 = fread(w0, 1, sizeof w0, f);
    fclose(f);
    /* the live adapter now differs in config (group size) and weights */
    road_config *c = NULL;
    TU_OK(road_config_clone(road_adapter_set_config(set, "default"), &c));
    TU_OK(road_adapter_set_delete(set, "default"));
    TU_OK(road_config_set_group_size(c, 2));
    road_config_set_init_weights(c, false);
    TU_OK(road_adapter_set_add(set, "default", c, 9));
    road_config_free(c);
    int ok_at = -1;
    for (int k = 0; k < OOM_TRIES && ok_at < 0; k++) {
        road__alloc_fail_after(k);
        road_status s = road_adapter_set_save(set, tu_scratch_at("unit"), NULL, 0);
        road__alloc_fail_after(-1);
        if (s == ROAD_OK) {
            ok_at = k;
            break;
        }
        assert_int_equal(s, ROAD_ERR_NO_MEMORY);
        assert_string_equal(slurp(tu_scratch_at("unit/adapter_config.json")), cfg0);
        f = fopen(tu_scratch_at("unit/adapter_model.safetensors"), "rb");
        assert_non_null(f);
        char w[1 << 16];
        size_t n = fread(w, 1, sizeof w, f);
        fclose(f);
        if (n != n0 || memcmp(w, w0, n) != 0)
            fail_msg("allocation %d failed: new weights beside the old config", k);
        assert_int_equal(count_in_root("unit."), 0);
    }
    printf("adapter save: whole with %d allocations allowed\n", ok_at);
    assert_true(ok_at > 0);
    assert_non_null(strstr(slurp(tu_scratch_at("unit/adapter_config.json")), "\"group_size\": 2"));
    road_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_temp_mode),   cmocka_unit_test(test_install),
        cmocka_unit_test(test_crash_repair), cmocka_unit_test(test_live_writer),
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_update),      cmocka_unit_test(test_model_save_refuses),
        cmocka_unit_test(test_adapter_save_unit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
