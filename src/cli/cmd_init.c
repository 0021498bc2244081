/*
 * cli/cmd_init.c - `road init`: a checkpoint folder with freshly initialised weights for a
 * config.json, the starting point of pretraining with `road train --full`.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define CMD "init"

static void help(void) {
    printf("usage: road init --config CONFIG.json --out DIR [options]\n"
           "\n"
           "Writes DIR as a Hugging Face checkpoint folder (config.json, model.safetensors) whose\n"
           "weights are drawn as transformers initialises a Llama: linear and embedding weights\n"
           "~ N(0, initializer_range), norms 1, biases 0.\n"
           "\n"
           "  --tokenizer DIR     copy tokenizer.json, tokenizer_config.json,\n"
           "                      special_tokens_map.json and generation_config.json from DIR\n"
           "  --seed N            (default 0)\n"
           "  --dtype f32|bf16|f16  (default f32)\n"
           "  --overwrite         replace a model folder road wrote at DIR (DIR must otherwise\n"
           "                      be new or empty; anything else there is refused)\n");
}

int cmd_init(int argc, char **argv) {
    const char *config = NULL, *out = NULL, *tok = NULL, *seed = NULL, *dtype = "f32";
    int overwrite = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help();
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--overwrite") == 0) {
            overwrite = 1;
            continue;
        }
        CLI_FLAG("--config", config) CLI_FLAG("--out", out) CLI_FLAG("--tokenizer", tok) CLI_FLAG("--seed", seed)
        CLI_FLAG("--dtype", dtype)
        cli_error(CMD, "unknown option '%s' (see road init --help)", argv[i]);
        return CLI_EXIT_USAGE;
    }
    if (!config || !out) {
        cli_error(CMD, "--config and --out are required (see road init --help)");
        return CLI_EXIT_USAGE;
    }
    long long sv = 0;
    if (seed && cli_parse_int(CMD, "--seed", seed, 0, INT64_MAX, &sv) != 0) return CLI_EXIT_USAGE;
    road_dtype dt;
    if (cli_parse_float_dtype(CMD, "--dtype", dtype, &dt) != 0) return CLI_EXIT_USAGE;
    const char *inputs[2] = {config, tok};
    road_status s = road_out_check(out, ROAD_OUT_MODEL, overwrite, inputs, tok ? 2 : 1, NULL);
    if (s != ROAD_OK) return cli_fail(CMD, "--out", s);
    s = road_model_init_folder(config, tok, (uint64_t)sv, dt, out);
    if (s != ROAD_OK) return cli_fail(CMD, "initialising", s);
    printf("wrote %s: freshly initialised weights (seed %lld); pretrain with road train --full\n",
           out, sv);
    return CLI_EXIT_OK;
}
