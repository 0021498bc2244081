/*
 * cli/cmd_inspect.c - `road inspect DIR`: describe an adapter folder (PEFT or road).
 *
 * Reads adapter_config.json and adapter_model.safetensors, groups the RoAd tensors by module,
 * and checks what can be checked without the base model: theta and alpha present in pairs,
 * equal sizes, a size the variant and group_size can produce. A folder holding several
 * adapters in sub-folders (PEFT's layout for non-default adapters) is described one by one.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

#define CMD "inspect"
#define KEY_PREFIX "base_model.model."

static int has_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "base_model.model.<module>.road_theta" -> module and which tensor; 0 if not a RoAd key. */
static int split_key(const char *key, char *module, size_t cap, int *is_theta) {
    const char *sfx[2] = {".road_theta", ".road_alpha"};
    size_t n = strlen(key), pl = strlen(KEY_PREFIX);
    for (int k = 0; k < 2; k++) {
        size_t sl = strlen(sfx[k]);
        if (n > sl && strcmp(key + n - sl, sfx[k]) == 0) {
            const char *start = strncmp(key, KEY_PREFIX, pl) == 0 ? key + pl : key;
            size_t len = (size_t)(key + n - sl - start);
            if (len + 1 > cap) len = cap - 1;
            memcpy(module, start, len);
            module[len] = '\0';
            *is_theta = k == 0;
            return 1;
        }
    }
    return 0;
}

static int inspect_one(const char *dir, const char *label) {
    road_config *cfg = NULL;
    road_status s = road_config_load(dir, &cfg);
    if (s != ROAD_OK) return cli_fail(CMD, "reading adapter_config.json", s);
    road_variant v = road_config_variant(cfg);
    int32_t gs = road_config_group_size(cfg);
    printf("adapter %s\n", label);
    printf("  folder            %s\n", dir);
    printf("  variant           %s\n", road_variant_name(v));
    printf("  group_size        %d\n", (int)gs);
    printf("  init_weights      %s\n", road_config_init_weights(cfg) ? "true" : "false");
    printf("  target_modules    ");
    switch (road_config_target_kind(cfg)) {
    case ROAD_TARGET_DEFAULT: printf("(model default)\n"); break;
    case ROAD_TARGET_ALL_LINEAR: printf("all-linear\n"); break;
    case ROAD_TARGET_REGEX: printf("regex %s\n", road_config_target(cfg, 0)); break;
    case ROAD_TARGET_LIST:
        for (int32_t i = 0; i < road_config_target_count(cfg); i++)
            printf("%s%s", i ? ", " : "", road_config_target(cfg, i));
        printf("\n");
        break;
    }
    int32_t nm = road_config_modules_to_save_count(cfg);
    if (nm >= 0) {
        printf("  modules_to_save   ");
        for (int32_t i = 0; i < nm; i++) printf("%s%s", i ? ", " : "", road_config_module_to_save(cfg, i));
        printf("\n");
    }
    const char *tt = road_config_task_type(cfg), *bm = road_config_base_model(cfg);
    printf("  task_type         %s\n", tt ? tt : "null");
    printf("  base_model        %s\n", bm ? bm : "null");
    printf("  peft_version      %s\n", road_config_peft_version(cfg) ? road_config_peft_version(cfg) : "null");

    int rc = CLI_EXIT_OK;
    if (!has_file(dir, "adapter_model.safetensors")) {
        printf("  weights           none (no adapter_model.safetensors)\n");
        road_config_free(cfg);
        return rc;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    road_st_file *f = NULL;
    s = road_st_open(path, &f);
    if (s != ROAD_OK) {
        road_config_free(cfg);
        return cli_fail(CMD, "reading adapter_model.safetensors", s);
    }
    int64_t total = 0, n_layers = 0, n_other = 0;
    printf("  layers:\n");
    printf("    %-52s %9s %8s %10s %10s\n", "module", "params", "out", "max|theta|", "mean alpha");
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *t = road_st_at(f, i);
        char module[512];
        int is_theta;
        if (!split_key(t->name, module, sizeof module, &is_theta)) {
            n_other++;
            total += t->numel;
            continue;
        }
        if (!is_theta) continue; /* described with its theta */
        char akey[600];
        snprintf(akey, sizeof akey, "%.*s.road_alpha", (int)(strlen(t->name) - strlen(".road_theta")), t->name);
        const road_st_tensor *a = road_st_find(f, akey);
        if (!a) {
            fprintf(stderr, "road inspect: %s has road_theta but no road_alpha (%s)\n", module, akey);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (a->numel != t->numel || t->ndim != 1 || a->ndim != 1) {
            fprintf(stderr, "road inspect: %s: road_theta has %lld values, road_alpha %lld; both must be 1-D and equal\n",
                    module, (long long)t->numel, (long long)a->numel);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        int64_t P = t->numel;
        int64_t out = v == ROAD_VARIANT_1 ? 2 * P : v == ROAD_VARIANT_2 ? P : P / 2;
        if (road_param_count(v, out) != P || road_check_shape(v, gs, out, module) != ROAD_OK) {
            fprintf(stderr, "road inspect: %s: %lld parameters cannot come from %s with group_size %d: %s\n",
                    module, (long long)P, road_variant_name(v), (int)gs, road_last_error());
            rc = CLI_EXIT_FAIL;
            continue;
        }
        double mt = 0, ma = 0;
        if (t->dtype == ROAD_DTYPE_F32 && a->dtype == ROAD_DTYPE_F32) {
            const float *th = t->data, *al = a->data;
            for (int64_t k = 0; k < P; k++) {
                mt = fmax(mt, fabs(th[k]));
                ma += al[k];
            }
            ma /= (double)P;
            printf("    %-52s %9lld %8lld %10.4f %10.4f\n", module, (long long)(2 * P), (long long)out, mt, ma);
        } else {
            printf("    %-52s %9lld %8lld %10s %10s\n", module, (long long)(2 * P), (long long)out,
                   road_dtype_name(t->dtype), "");
        }
        total += 2 * P;
        n_layers++;
    }
    printf("  RoAd layers       %lld\n", (long long)n_layers);
    if (n_other) printf("  other tensors     %lld (modules_to_save)\n", (long long)n_other);
    printf("  trainable params  %lld\n", (long long)total);
    road_st_close(f);
    road_config_free(cfg);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: road inspect DIR\n\n"
                   "Describe the adapter in DIR (adapter_config.json + adapter_model.safetensors,\n"
                   "as PEFT's save_pretrained writes them), or every adapter in DIR's sub-folders.\n");
            return CLI_EXIT_OK;
        }
        if (argv[i][0] == '-') {
            cli_error(CMD, "unknown option '%s' (see road inspect --help)", argv[i]);
            return CLI_EXIT_USAGE;
        }
        if (dir) {
            cli_error(CMD, "give one folder, got '%s' and '%s'", dir, argv[i]);
            return CLI_EXIT_USAGE;
        }
        dir = argv[i];
    }
    if (!dir) {
        cli_error(CMD, "missing the adapter folder: road inspect DIR");
        return CLI_EXIT_USAGE;
    }
    if (has_file(dir, "adapter_config.json")) return inspect_one(dir, "(default)");
    /* PEFT's layout for several adapters: one sub-folder per adapter name. */
    DIR *d = opendir(dir);
    if (!d) {
        cli_error(CMD, "cannot open folder '%s'", dir);
        return CLI_EXIT_FAIL;
    }
    int found = 0, rc = CLI_EXIT_OK;
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (!has_file(sub, "adapter_config.json")) continue;
        if (found++) printf("\n");
        int r = inspect_one(sub, e->d_name);
        if (r != CLI_EXIT_OK) rc = r;
    }
    closedir(d);
    if (!found) {
        cli_error(CMD, "'%s' has no adapter_config.json (nor sub-folders with one); is it an adapter folder?", dir);
        return CLI_EXIT_FAIL;
    }
    return rc;
}
