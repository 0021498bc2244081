/*
 * cli/cmd_merge.c - `road merge`: fold adapters into a model's weights and write a new
 * checkpoint folder (float, or quantized as bitsandbytes / transformers store it).
 *
 * With --quantize the merge happens in float32 and the merged weights are quantized once when
 * written (the better order: merging into quantized layers rounds twice). A checkpoint that is
 * already quantized merges into its quantized layers (dequantize, rotate, quantize; the library
 * warns) and is written quantized as it is, or in the --quantize format, or as float with
 * --dtype alone.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define CMD "merge"
#define MAX_ADAPTERS 64

static void help(void) {
    printf(
        "usage: road merge --model DIR --adapter NAME=DIR [--adapter NAME=DIR]...\n"
        "                  [--use NAME[,NAME...]] --out DIR [--dtype f32|bf16|f16]\n"
        "                  [--quantize int8|nf4|fp4 [--quantize-lm-head] [--double-quant]]\n"
        "                  [--unsafe] [--overwrite] [--threads N]\n"
        "\n"
        "Merges the adapters (--use: these, in this order; default: every --adapter, in\n"
        "order) into the base weights (PEFT's merge_and_unload; safe merge: NaN/Inf refused,\n"
        "--unsafe skips that check) and writes a Hugging Face model folder at DIR: config.json,\n"
        "model.safetensors, generation and tokenizer files. --dtype is the dtype of the float\n"
        "tensors (default f32). --quantize writes the linear layers quantized in bitsandbytes'\n"
        "layout (transformers loads it with its bitsandbytes integration; docs/quant.md); the\n"
        "embedding, norms, biases and lm_head (unless --quantize-lm-head) stay float. A model\n"
        "folder that is already quantized stays quantized unless --quantize none.\n"
        "DIR must be new or empty; --overwrite replaces a model folder road wrote there (in one\n"
        "step, after the merge succeeded). Anything else in DIR is refused (docs/cli.md).\n");
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *use = NULL, *dtype_s = NULL, *thr = NULL;
    char *adapters[MAX_ADAPTERS];
    int n_ad = 0, unsafe = 0, overwrite = 0;
    cli_quant qz = {NULL, false, false};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = cli_quant_flag(CMD, argc, argv, &i, &qz)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help();
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--unsafe") == 0) {
            unsafe = 1;
            continue;
        }
        if (strcmp(argv[i], "--overwrite") == 0) {
            overwrite = 1;
            continue;
        }
        CLI_FLAG("--model", model)
        CLI_FLAG("--out", out)
        CLI_FLAG("--use", use)
        CLI_FLAG("--dtype", dtype_s)
        CLI_FLAG("--threads", thr)
        if ((r = cli_flag_value(CMD, argc, argv, &i, "--adapter", &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (n_ad == MAX_ADAPTERS) {
                cli_error(CMD, "at most %d --adapter flags", MAX_ADAPTERS);
                return CLI_EXIT_USAGE;
            }
            adapters[n_ad++] = (char *)v;
            continue;
        }
        cli_error(CMD, "unknown option '%s' (see road merge --help)", argv[i]);
        return CLI_EXIT_USAGE;
    }
    if (!model || !out || n_ad == 0) {
        cli_error(CMD,
                  "--model, --out and at least one --adapter are required (see road merge --help)");
        return CLI_EXIT_USAGE;
    }
    road_dtype dtype;
    if (cli_parse_float_dtype(CMD, "--dtype", dtype_s, &dtype) != 0) return CLI_EXIT_USAGE;
    /* the output format: the model is loaded as stored, merged, then written in this format */
    road_model_params fmt = road_model_default_params();
    if (cli_quant_apply(CMD, &qz, &fmt) != 0) return CLI_EXIT_USAGE;
    long long threads = 0;
    if (thr && cli_parse_int(CMD, "--threads", thr, 0, 1024, &threads) != 0) return CLI_EXIT_USAGE;
    road_model_params mp = road_model_default_params();
    mp.n_threads = (int)threads;
    /* The output folder is checked before anything is loaded (docs/cli.md): never an input,
     * never a folder road did not write, an existing model folder only with --overwrite. */
    const char *inputs[MAX_ADAPTERS + 1];
    int n_in = 0;
    inputs[n_in++] = model;
    for (int i = 0; i < n_ad; i++) {
        const char *eq = strchr(adapters[i], '=');
        inputs[n_in++] = eq ? eq + 1 : adapters[i];
    }
    road_status s = road_out_check(out, ROAD_OUT_MODEL, overwrite, inputs, n_in, NULL);
    if (s != ROAD_OK) return cli_fail(CMD, "--out", s);
    road_model *m = NULL;
    int rc = CLI_EXIT_FAIL;
    s = road_model_load(model, &mp, &m);
    if (s != ROAD_OK) {
        rc = cli_fail(CMD, "loading the model", s);
        goto done;
    }
    /* default --use: every adapter given, in order */
    char names[MAX_ADAPTERS * 130] = "";
    if (!use) {
        size_t k = 0;
        for (int i = 0; i < n_ad; i++) {
            const char *eq = strchr(adapters[i], '=');
            size_t len = eq ? (size_t)(eq - adapters[i]) : strlen(adapters[i]);
            if (len > 128) len = 128;
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%.*s", i ? "," : "", (int)len,
                                  adapters[i]);
        }
        use = names;
    }
    if ((rc = cli_attach_adapters(CMD, m, adapters, n_ad, use)) != CLI_EXIT_OK) goto done;
    rc = CLI_EXIT_FAIL;
    road_adapter_set *set = road_model_adapters(m);
    if ((s = road_adapter_set_merge_and_unload(set, NULL, 0, !unsafe)) != ROAD_OK) {
        rc = cli_fail(CMD, "merging", s);
        goto done;
    }
    road_qformat have;
    const bool quantized = road_model_quantized_layers(m, &have) > 0;
    const bool keep = quantized && !qz.format; /* stays as stored */
    if (!quantized && fmt.quantize == ROAD_QFORMAT_NONE)
        s = road_model_save(m, out, dtype);
    else if (keep) {
        /* as loaded: double quantization of the first layer, lm_head quantized or not */
        const road_linear *l0 = road_adapter_set_layer(
            set, road_adapter_set_find_layer(set, "model.layers.0.self_attn.q_proj"));
        const road_linear *head =
            road_adapter_set_layer(set, road_adapter_set_find_layer(set, "lm_head"));
        const road_qtensor *q0 = l0 ? road_linear_qweight(l0) : NULL;
        s = road_model_save_quantized(m, out, dtype, have, q0 && q0->double_quant,
                                      head && road_linear_qweight(head));
    } else
        s = road_model_save_quantized(m, out, dtype, fmt.quantize, fmt.double_quant,
                                      fmt.quantize_lm_head);
    if (s != ROAD_OK) {
        rc = cli_fail(CMD, "writing the merged model", s);
        goto done;
    }
    printf("merged %s into %s (%s%s%s)\n", use, out, road_dtype_name(dtype),
           keep || fmt.quantize != ROAD_QFORMAT_NONE ? ", linear layers " : "",
           keep                                ? road_qformat_name(have)
           : fmt.quantize != ROAD_QFORMAT_NONE ? road_qformat_name(fmt.quantize)
                                               : "");
    rc = CLI_EXIT_OK;
done:
    road_model_free(m);
    return rc;
}
