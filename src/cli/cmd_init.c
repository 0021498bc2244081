/*
 * cli/cmd_init.c - `road init`: a checkpoint folder with freshly initialised weights for a
 * config.json, the starting point of pretraining with `road train --full`.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define CMD "init"

typedef struct init_opts {
    const char *config, *out, *tokenizer;
    int64_t seed;
    road_dtype dtype;
    bool overwrite;
    uint64_t given;
} init_opts;

static const cli_flag flags[] = {
    {CLI_STR("--config", init_opts, config, "CONFIG.json", NULL,
             "the architecture (a Hugging Face config.json)"), .flags = CLI_REQUIRED},
    {CLI_STR("--out", init_opts, out, "DIR", NULL, "the model folder to write"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--tokenizer", init_opts, tokenizer, "DIR", NULL,
             "copy tokenizer.json, tokenizer_config.json, special_tokens_map.json and "
             "generation_config.json from DIR")},
    {CLI_INT("--seed", init_opts, seed, "N", 0, INT64_MAX, "0", "seed of the random weights")},
    {CLI_DTYPE("--dtype", init_opts, dtype, "f32", "dtype of the saved weights")},
    {CLI_SW("--overwrite", init_opts, overwrite,
            "replace a model folder road wrote at DIR (DIR must otherwise be new or empty; "
            "anything else there is refused)")},
};

static const cli_spec spec = {
    .name = CMD,
    .about = "Writes DIR as a Hugging Face checkpoint folder (config.json, model.safetensors) whose\n"
             "weights are drawn as transformers initialises a Llama: linear and embedding weights\n"
             "~ N(0, initializer_range), norms 1, biases 0.\n",
    CLI_TABLE(flags, init_opts),
};

int cmd_init(int argc, char **argv) {
    init_opts o = {0};
    int rc = cli_parse(&spec, argc, argv, &o);
    if (rc != CLI_CONTINUE) return rc;
    const char *inputs[2] = {o.config, o.tokenizer};
    road_status s =
        road_out_check(o.out, ROAD_OUT_MODEL, o.overwrite, inputs, o.tokenizer ? 2 : 1, NULL);
    if (s != ROAD_OK) return cli_fail(CMD, "--out", s);
    s = road_model_init_folder(o.config, o.tokenizer, (uint64_t)o.seed, o.dtype, o.out);
    if (s != ROAD_OK) return cli_fail(CMD, "initialising", s);
    printf("wrote %s: freshly initialised weights (seed %lld); pretrain with road train --full\n",
           o.out, (long long)o.seed);
    return CLI_EXIT_OK;
}
