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

typedef struct config_opts {
    const char *out, *variant, *targets, *modules_to_save, *task_type, *base_model;
    int64_t group_size;
    int init_weights; /* index in "true|false" */
    bool print, overwrite;
    uint64_t given;
} config_opts;

static const cli_flag flags[] = {
    {CLI_STR("--variant", config_opts, variant, "road_1|road_2|road_4", NULL,
             "RoAd variant (default road_1)")},
    {CLI_INT("--group-size", config_opts, group_size, "N", 1, 1 << 30, NULL,
             "positive, even (default 64)")},
    {CLI_STR("--targets", config_opts, targets, "SPEC", NULL,
             "all-linear | q_proj,v_proj | a regex (default: the model type's default targets)")},
    {CLI_CHOICE("--init-weights", config_opts, init_weights, "true|false", NULL,
                "(default true: identity init)")},
    {CLI_STR("--modules-to-save", config_opts, modules_to_save, "a,b", NULL,
             "modules trained fully and saved with the adapter")},
    {CLI_STR("--task-type", config_opts, task_type, "TYPE", NULL, "e.g. CAUSAL_LM (default null)")},
    {CLI_STR("--base-model", config_opts, base_model, "NAME", NULL,
             "base_model_name_or_path (default null)")},
    {CLI_STR("--out", config_opts, out, "DIR", NULL,
             "write DIR/adapter_config.json (atomically); DIR must be new, empty, or hold only an "
             "adapter_config.json (replaced with --overwrite)")},
    {CLI_SW("--overwrite", config_opts, overwrite, "replace the adapter_config.json in DIR")},
    {CLI_SW("--print", config_opts, print, "print the JSON instead")},
};

static const cli_spec spec = {
    .name = CMD,
    .usage = "(--out DIR | --print) [options]",
    CLI_TABLE(flags, config_opts),
};

int cmd_config(int argc, char **argv) {
    config_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    const char *out = o.out;
    if (!out && !o.print) {
        cli_error(CMD, "say where the config goes: --out DIR, or --print");
        return CLI_EXIT_USAGE;
    }
    road_status s;
    /* A config beside another adapter's weights would describe them wrongly: only a folder
     * holding nothing else is written (docs/cli.md). Checked before any work; creates parents. */
    if (out && (s = road_out_check(out, ROAD_OUT_CONFIG, o.overwrite, NULL, 0, NULL)) != ROAD_OK)
        return cli_fail(CMD, "--out", s);
    road_config *c = NULL;
    s = road_config_create(&c);
    if (s != ROAD_OK) return cli_fail(CMD, "creating the config", s);
    int rc = CLI_EXIT_USAGE;
    if (o.variant) {
        road_variant v;
        if ((s = road_variant_parse(o.variant, &v)) != ROAD_OK) goto bad;
        road_config_set_variant(c, v);
    }
    if (cli_given(&spec, &o, "--group-size") &&
        (s = road_config_set_group_size(c, o.group_size)) != ROAD_OK)
        goto bad;
    if (o.targets && (s = road_config_set_targets_from_string(c, o.targets)) != ROAD_OK) goto bad;
    if (cli_given(&spec, &o, "--init-weights")) road_config_set_init_weights(c, o.init_weights == 0);
    if (o.modules_to_save) {
        int32_t n = 0;
        char **v = NULL;
        if (cli_split(o.modules_to_save, ',', &v, &n) != 0) {
            cli_error(CMD, "out of memory");
            goto done;
        }
        s = road_config_set_modules_to_save(c, (const char *const *)v, n);
        cli_free_list(v, n);
        if (s != ROAD_OK) goto bad;
    }
    if (o.task_type && (s = road_config_set_task_type(c, o.task_type)) != ROAD_OK) goto bad;
    if (o.base_model && (s = road_config_set_base_model(c, o.base_model)) != ROAD_OK) goto bad;
    road_config_set_inference_mode(c, true); /* as saved by PEFT */
    if (o.print) {
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
        if (!o.print) printf("wrote %s/adapter_config.json\n", out);
    }
    rc = CLI_EXIT_OK;
    goto done;
bad:
    cli_error(CMD, "%s", road_last_error());
done:
    road_config_free(c);
    return rc;
}
