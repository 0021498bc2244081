/*
 * cli/cmd_quantize.c - `road quantize`: a model folder written with its linear layers quantized
 * (int8, NF4 or FP4, bitsandbytes' layout: transformers loads it with its bitsandbytes
 * integration), so that loading it later maps the packed weights instead of quantizing the
 * float ones at every start.
 *
 *   road quantize --model IN --out OUT --quantize int8|nf4|fp4 [--double-quant]
 *                 [--quantize-lm-head] [--dtype f32|bf16|f16] [--overwrite] [--threads N]
 *
 * The weights are quantized once from their float32 values (16-bit checkpoints widened
 * exactly), as `--quantize` at load does, so the folder gives the same outputs as loading IN
 * with --quantize. The other tensors (embedding, norms, biases, lm_head unless
 * --quantize-lm-head) are written in --dtype, by default the dtype IN stores its linear weights
 * in. The output folder follows road merge's rule (docs/cli.md).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define CMD "quantize"

typedef struct quantize_opts {
    const char *model, *out;
    road_dtype dtype;
    int64_t threads;
    cli_quant qz;
    bool overwrite;
    uint64_t given;
} quantize_opts;

static const cli_flag flags[] = {
    {CLI_STR("--model", quantize_opts, model, "DIR", NULL, "the model folder (float weights)"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--out", quantize_opts, out, "DIR", NULL,
             "the model folder to write: new or empty; --overwrite replaces a model folder road "
             "wrote there; anything else is refused"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--quantize", quantize_opts, qz.format, "int8|nf4|fp4", NULL,
             "the format of the linear layers (bitsandbytes' layout; docs/quant.md)"),
     .flags = CLI_REQUIRED},
    {CLI_SW("--quantize-lm-head", quantize_opts, qz.lm_head, "quantize lm_head too")},
    {CLI_SW("--double-quant", quantize_opts, qz.double_quant,
            "4-bit: quantize the absmax values too (bitsandbytes' double quant)")},
    {CLI_DTYPE("--dtype", quantize_opts, dtype, NULL,
               "dtype of the float tensors (default: the dtype the model stores its linear "
               "weights in, else config.json's torch_dtype, else f32)")},
    {CLI_SW("--overwrite", quantize_opts, overwrite, "replace a model folder road wrote at --out")},
    CLI_THREADS_FLAG(quantize_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .about = "Writes the model with its linear layers quantized, as road merge --quantize does\n"
             "without adapters: loading the folder maps the packed weights (no quantizing at\n"
             "start) and gives the outputs of loading the model with --quantize.\n",
    CLI_TABLE(flags, quantize_opts),
};

int cmd_quantize(int argc, char **argv) {
    quantize_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    road_model_params fmt = road_model_default_params();
    if (cli_quant_apply(CMD, &o.qz, &fmt) != 0) return CLI_EXIT_USAGE;
    if (!road_qformat_is_quantized(fmt.quantize)) {
        cli_error(CMD, "--quantize takes int8, nf4 or fp4 (16-bit weights need no conversion: "
                       "road keeps a BF16/F16 checkpoint's weights as stored)");
        return CLI_EXIT_USAGE;
    }
    const char *inputs[1] = {o.model};
    road_status s = road_out_check(o.out, ROAD_OUT_MODEL, o.overwrite, inputs, 1, NULL);
    if (s != ROAD_OK) return cli_fail(CMD, "--out", s);
    road_model_params mp = road_model_default_params();
    mp.n_threads = cli_threads(o.threads);
    mp.float32_weights = true; /* quantized from the float32 values, as at load */
    road_model *m = NULL;
    if ((s = road_model_load(o.model, &mp, &m)) != ROAD_OK)
        return cli_fail(CMD, "loading the model", s);
    road_qformat have;
    if (road_model_quantized_layers(m, &have) > 0) {
        road_model_free(m);
        cli_error(CMD,
                  "%s is already quantized (%s); quantizing it again would round twice: "
                  "quantize its float original",
                  o.model, road_qformat_name(have));
        return CLI_EXIT_FAIL;
    }
    char what[64];
    snprintf(what, sizeof what, "quantized (%s)", road_qformat_name(fmt.quantize));
    const int rc = cli_model_write(CMD, m, o.model, o.out, o.dtype, cli_given(&spec, &o, "--dtype"),
                                   &o.qz, &fmt, what);
    road_model_free(m);
    return rc;
}
