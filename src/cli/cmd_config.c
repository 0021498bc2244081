/*
 * cli/cmd_config.c - `road config`: write an adapter_config.json exactly as PEFT would.
 *
 * Useful to prepare a training run or to hand-build an adapter folder; the output is what
 * PEFT's RoadConfig(...).save_pretrained() writes for the same values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

#define CMD "config"

static void help(void) {
    printf("usage: road config (--out DIR | --print) [options]\n"
           "\n"
           "  --variant road_1|road_2|road_4   (default road_1)\n"
           "  --group-size N                   positive, even (default 64)\n"
           "  --targets SPEC                   all-linear | q_proj,v_proj | a regex\n"
           "                                   (default: the model type's default targets)\n"
           "  --init-weights true|false        (default true: identity init)\n"
           "  --modules-to-save a,b            modules trained fully and saved with the adapter\n"
           "  --task-type TYPE                 e.g. CAUSAL_LM (default null)\n"
           "  --base-model NAME                base_model_name_or_path (default null)\n"
           "  --out DIR                        write DIR/adapter_config.json (atomically);\n"
           "                                   DIR must be new, empty, or hold only an\n"
           "                                   adapter_config.json (replaced with --overwrite)\n"
           "  --overwrite                      replace the adapter_config.json in DIR\n"
           "  --print                          print the JSON instead\n");
}

/* Split "a,b,c" into a fresh array of fresh strings. */
static char **split_list(const char *s, int32_t *n) {
    int32_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    char **v = calloc((size_t)cap, sizeof(char *));
    if (!v) return NULL;
    *n = 0;
    const char *p = s;
    while (1) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        v[*n] = malloc(len + 1);
        if (!v[*n]) break;
        memcpy(v[*n], p, len);
        v[(*n)++][len] = '\0';
        if (!e) break;
        p = e + 1;
    }
    return v;
}

static void free_list(char **v, int32_t n) {
    for (int32_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int cmd_config(int argc, char **argv) {
    const char *out = NULL, *variant = NULL, *gs = NULL, *targets = NULL, *init = NULL;
    const char *mts = NULL, *task = NULL, *base = NULL;
    int print = 0, overwrite = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help();
            return CLI_EXIT_OK;
        }
        if (strcmp(a, "--print") == 0) {
            print = 1;
            continue;
        }
        if (strcmp(a, "--overwrite") == 0) {
            overwrite = 1;
            continue;
        }
        CLI_FLAG("--out", out)
        CLI_FLAG("--variant", variant)
        CLI_FLAG("--group-size", gs)
        CLI_FLAG("--targets", targets)
        CLI_FLAG("--init-weights", init)
        CLI_FLAG("--modules-to-save", mts)
        CLI_FLAG("--task-type", task)
        CLI_FLAG("--base-model", base)
        cli_error(CMD, "unknown option '%s' (see road config --help)", a);
        return CLI_EXIT_USAGE;
    }
    if (!out && !print) {
        cli_error(CMD, "say where the config goes: --out DIR, or --print");
        return CLI_EXIT_USAGE;
    }
    road_status s;
    /* A config beside another adapter's weights would describe them wrongly: only a folder
     * holding nothing else is written (docs/cli.md). Checked before any work; creates parents. */
    if (out && (s = road_out_check(out, ROAD_OUT_CONFIG, overwrite, NULL, 0, NULL)) != ROAD_OK)
        return cli_fail(CMD, "--out", s);
    road_config *c = NULL;
    s = road_config_create(&c);
    if (s != ROAD_OK) return cli_fail(CMD, "creating the config", s);
    int rc = CLI_EXIT_USAGE;
    if (variant) {
        road_variant v;
        if ((s = road_variant_parse(variant, &v)) != ROAD_OK) goto bad;
        road_config_set_variant(c, v);
    }
    if (gs) {
        long long g;
        if (cli_parse_int(CMD, "--group-size", gs, 1, 1 << 30, &g) != 0) goto done;
        if ((s = road_config_set_group_size(c, g)) != ROAD_OK) goto bad;
    }
    if (targets && (s = road_config_set_targets_from_string(c, targets)) != ROAD_OK) goto bad;
    if (init) {
        if (strcmp(init, "true") != 0 && strcmp(init, "false") != 0) {
            cli_error(CMD, "--init-weights must be true or false, got '%s'", init);
            goto done;
        }
        road_config_set_init_weights(c, strcmp(init, "true") == 0);
    }
    if (mts) {
        int32_t n = 0;
        char **v = split_list(mts, &n);
        if (!v) {
            cli_error(CMD, "out of memory");
            goto done;
        }
        s = road_config_set_modules_to_save(c, (const char *const *)v, n);
        free_list(v, n);
        if (s != ROAD_OK) goto bad;
    }
    if (task && (s = road_config_set_task_type(c, task)) != ROAD_OK) goto bad;
    if (base && (s = road_config_set_base_model(c, base)) != ROAD_OK) goto bad;
    road_config_set_inference_mode(c, true); /* as saved by PEFT */
    if (print) {
        char *json = NULL;
        if ((s = road_config_to_json(c, &json)) != ROAD_OK) {
            rc = cli_fail(CMD, "writing JSON", s);
            goto done;
        }
        printf("%s\n", json);
        road_string_free(json);
    }
    if (out) {
        if (mkdir(out, 0777) != 0 && errno != EEXIST) {
            cli_error(CMD, "cannot create folder '%s': %s", out, strerror(errno));
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        if ((s = road_config_save(c, out)) != ROAD_OK) {
            rc = cli_fail(CMD, "saving", s);
            goto done;
        }
        if (!print) printf("wrote %s/adapter_config.json\n", out);
    }
    rc = CLI_EXIT_OK;
    goto done;
bad:
    cli_error(CMD, "%s", road_last_error());
done:
    road_config_free(c);
    return rc;
}
