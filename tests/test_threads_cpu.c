/*
 * tests/test_threads_cpu.c - the default thread count (physical cores, core/cpu.h) and the
 * thread environment a program sets before it runs again (road_threads_prepare_env).
 *
 * The core count is checked on synthetic sysfs trees (SMT pairs numbered as Intel numbers them,
 * as AMD does, no SMT, unreadable or malformed topology), so it runs the same on any machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cpu.h"
#include "core/threads.h"
#include "testutil.h"

/* What GOMP_SPINCOUNT holds when the hook set it (core/threads.c's SPIN_PAUSES). */
#define ROAD_SPIN_PAUSES "1000"

/* ---- CPU lists -------------------------------------------------------------------------- */

/* text parsed into a fresh set of 64 CPUs; the listed CPUs as a bit mask into *mask. */
static int parse64(const char *text, uint64_t *mask) {
    bool set[64] = {false};
    int n = road__cpu_list_parse(text, set, 64);
    *mask = 0;
    for (int c = 0; c < 64; c++)
        if (set[c]) *mask |= (uint64_t)1 << c;
    return n;
}

static void test_list_parse(void **state) {
    (void)state;
    uint64_t m = 0;
    assert_int_equal(parse64("0\n", &m), 1);
    assert_int_equal(m, 0x1);
    assert_int_equal(parse64("0-3", &m), 4);
    assert_int_equal(m, 0xf);
    assert_int_equal(parse64("0-1,8-9\n", &m), 4);
    assert_int_equal(m, 0x303);
    assert_int_equal(parse64("0,32", &m), 2);
    assert_int_equal(m, 0x100000001ull);
    assert_int_equal(parse64("5-5", &m), 1);
    assert_int_equal(m, 0x20);
    assert_int_equal(parse64("63", &m), 1);
    assert_int_equal(parse64("\n", &m), 0);
    assert_int_equal(parse64("", &m), 0);
    /* malformed, or a CPU beyond the set */
    const char *bad[] = {"a",    "-1",  "1-",    "3-1", "0,,1", "0,",
                         "0-1x", "0 1", "1\n\n", "64",  "0-64", "99999999999999999999",
                         " 0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse64(bad[i], &m) != -1) fail_msg("'%s' parsed", bad[i]);
    }
}

/* ---- counting cores on synthetic sysfs trees -------------------------------------------- */

/* Write <root>/cpuN/topology/thread_siblings_list = lists[N] for N < n (NULL: no file). */
static const char *make_tree(const char *name, const char *const *lists, int n) {
    const char *root = tu_scratch_at(name);
    assert_int_equal(mkdir(root, 0700), 0);
    for (int c = 0; c < n; c++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/cpu%d", root, c);
        assert_int_equal(mkdir(path, 0700), 0);
        snprintf(path, sizeof path, "%s/cpu%d/topology", root, c);
        assert_int_equal(mkdir(path, 0700), 0);
        if (!lists[c]) continue;
        snprintf(path, sizeof path, "%s/cpu%d/topology/thread_siblings_list", root, c);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(lists[c], f);
        fclose(f);
    }
    static char keep[1024];
    snprintf(keep, sizeof keep, "%s", root);
    return keep;
}

/* allowed[] from a bit mask of CPUs < 64 */
static int count(const char *root, uint64_t allowed_mask) {
    bool allowed[64];
    for (int c = 0; c < 64; c++) allowed[c] = (allowed_mask >> c) & 1;
    return road__cpu_count_cores(root, allowed, 64);
}

static void test_count_cores(void **state) {
    (void)state;
    /* 4 cores x 2 threads, siblings 4 apart (Intel's numbering) */
    const char *intel[] = {"0,4\n", "1,5\n", "2,6\n", "3,7\n", "0,4\n", "1,5\n", "2,6\n", "3,7\n"};
    const char *t = make_tree("intel", intel, 8);
    assert_int_equal(count(t, 0xff), 4);
    assert_int_equal(count(t, 0x11), 1); /* both threads of core 0 */
    assert_int_equal(count(t, 0x0f), 4); /* one thread of each core */
    assert_int_equal(count(t, 0x30), 2);
    assert_int_equal(count(t, 0x00), 0);
    /* 2 cores x 2 threads, siblings adjacent (AMD's), as ranges */
    const char *amd[] = {"0-1\n", "0-1\n", "2-3\n", "2-3\n"};
    t = make_tree("amd", amd, 4);
    assert_int_equal(count(t, 0xf), 2);
    assert_int_equal(count(t, 0x3), 1);
    assert_int_equal(count(t, 0x6), 2);
    /* no SMT: every CPU its own core */
    const char *plain[] = {"0\n", "1\n", "2\n"};
    t = make_tree("plain", plain, 3);
    assert_int_equal(count(t, 0x7), 3);
    /* an allowed CPU without a topology file, a malformed list, a list without the CPU
     * itself: 0, the caller counts CPUs instead */
    const char *missing[] = {"0\n", NULL};
    t = make_tree("missing", missing, 2);
    assert_int_equal(count(t, 0x3), 0);
    assert_int_equal(count(t, 0x1), 1); /* the CPU without a file is not asked about */
    const char *garbage[] = {"0\n", "zero\n"};
    assert_int_equal(count(make_tree("garbage", garbage, 2), 0x3), 0);
    const char *foreign[] = {"0\n", "0\n"};
    assert_int_equal(count(make_tree("foreign", foreign, 2), 0x3), 0);
    assert_int_equal(count(tu_scratch_at("no-such-dir"), 0x1), 0);
}

static void test_physical_cores(void **state) {
    (void)state;
    int cores = road__cpu_physical_cores();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(cores >= 1);
    assert_true(cores <= online);
    assert_int_equal(road__cpu_physical_cores(), cores); /* computed once */
    /* "all cores" is the physical cores */
    road_set_num_threads(1);
    road_set_num_threads(0);
#ifdef _OPENMP
    assert_int_equal(road_get_num_threads(), cores);
#endif
}

/* ---- the environment -------------------------------------------------------------------- */

static void test_prepare_env(void **state) {
    (void)state;
    /* unset: road's values */
    unsetenv("GOMP_SPINCOUNT");
    unsetenv("OMP_WAIT_POLICY");
    unsetenv("OPENBLAS_THREAD_TIMEOUT");
    unsetenv("OMP_NUM_THREADS");
    assert_true(road_threads_prepare_env());
    assert_string_equal(getenv("GOMP_SPINCOUNT"), ROAD_SPIN_PAUSES);
    assert_string_equal(getenv("OPENBLAS_THREAD_TIMEOUT"), "4");
    assert_int_equal(atoi(getenv("OMP_NUM_THREADS")), road__cpu_physical_cores());
    /* the user's values stay */
    setenv("GOMP_SPINCOUNT", "123", 1);
    setenv("OPENBLAS_THREAD_TIMEOUT", "9", 1);
    setenv("OMP_NUM_THREADS", "7", 1);
    assert_false(road_threads_prepare_env()); /* nothing to set: no restart */
    assert_string_equal(getenv("GOMP_SPINCOUNT"), "123");
    assert_string_equal(getenv("OPENBLAS_THREAD_TIMEOUT"), "9");
    assert_string_equal(getenv("OMP_NUM_THREADS"), "7");
    /* a wait policy the user chose: no spin count beside it (it would override the policy) */
    unsetenv("GOMP_SPINCOUNT");
    setenv("OMP_WAIT_POLICY", "active", 1);
    assert_false(road_threads_prepare_env());
    assert_null(getenv("GOMP_SPINCOUNT"));
    unsetenv("OMP_WAIT_POLICY");
}

static int setup(void **state) {
    (void)state;
    return tu_scratch_make("threads_cpu");
}

static int teardown(void **state) {
    (void)state;
    return tu_scratch_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_parse),
        cmocka_unit_test(test_count_cores),
        cmocka_unit_test(test_physical_cores),
        cmocka_unit_test(test_prepare_env),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
