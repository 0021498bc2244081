/*
 * cli/cmd_merge.c - `road merge`: fold adapters into a model's weights and write a new
 * checkpoint folder (float, or quantized as bitsandbytes / transformers store it).
 *
 * With --quantize the merge happens in float32 and the merged weights are quantized once when
 * written (the better order: merging into quantized layers rounds twice). A checkpoint that is
 * already quantized merges into its quantized layers (dequantize, rotate, quantize; the library
 * warns) and is written quantized as it is, or in the --quantize format, or as float with
 * --dtype alone.
 *
 * The float dtype written is the one the base stores its linear weights in (bf16 stays bf16:
 * a merge does not double a model's size), unless --dtype says otherwise.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define CMD "merge"
#define MAX_ADAPTERS 64

typedef struct merge_opts {
    const char *model, *out, *use;
    cli_list adapters;
    road_dtype dtype;
    int64_t threads;
    cli_quant qz;
    bool unsafe, overwrite;
    uint64_t given;
} merge_opts;

static const cli_flag flags[] = {
    {CLI_STR("--model", merge_opts, model, "DIR", NULL, "the base model folder"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--out", merge_opts, out, "DIR", NULL,
             "the model folder to write: new or empty; --overwrite replaces a model folder road "
             "wrote there (in one step, after the merge succeeded); anything else is refused"),
     .flags = CLI_REQUIRED},
    {CLI_LST("--adapter", merge_opts, adapters, "NAME=DIR", MAX_ADAPTERS,
             "an adapter folder (PEFT or road) to merge"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--use", merge_opts, use, "NAME[,NAME...]", NULL,
             "the adapters to merge, in this order (default: every --adapter, in order)")},
    {CLI_DTYPE("--dtype", merge_opts, dtype, NULL,
               "dtype of the float tensors (default: the dtype the base stores its linear "
               "weights in, else config.json's torch_dtype, else f32)")},
    {CLI_STR("--quantize", merge_opts, qz.format, "none|int8|nf4|fp4", NULL,
             "write the linear layers quantized in bitsandbytes' layout (docs/quant.md); the "
             "embedding, norms, biases and lm_head stay float. A model folder that is already "
             "quantized stays quantized unless --quantize none")},
    {CLI_SW("--quantize-lm-head", merge_opts, qz.lm_head, "quantize lm_head too")},
    {CLI_SW("--double-quant", merge_opts, qz.double_quant,
            "4-bit: quantize the absmax values too (bitsandbytes' double quant)")},
    {CLI_SW("--unsafe", merge_opts, unsafe, "skip the safe merge's NaN/Inf check")},
    {CLI_SW("--overwrite", merge_opts, overwrite, "replace a model folder road wrote at --out")},
    CLI_THREADS_FLAG(merge_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .about = "Merges the adapters into the base weights (PEFT's merge_and_unload; safe merge:\n"
             "NaN/Inf refused) and writes a Hugging Face model folder: config.json,\n"
             "model.safetensors, generation and tokenizer files (transformers loads a quantized\n"
             "one with its bitsandbytes integration). docs/cli.md has the rules for --out.\n",
    CLI_TABLE(flags, merge_opts),
};

static bool float_dtype(road_dtype t) {
    return t == ROAD_DTYPE_F32 || t == ROAD_DTYPE_BF16 || t == ROAD_DTYPE_F16;
}

/* The dtype as --dtype spells it. */
static const char *dtype_flag(road_dtype t) {
    return t == ROAD_DTYPE_BF16 ? "bf16" : t == ROAD_DTYPE_F16 ? "f16" : "f32";
}

/* The float dtype the base's linear weights are stored in: the first projection weight of the
 * config's tensor list found in the folder's *.safetensors files (a shard or the only file).
 * false when none is found as a float tensor (a quantized checkpoint stores them packed). */
static bool linear_dtype(const char *dir, const road_llm_config *cfg, road_dtype *out) {
    const int64_t n = road_llm_config_tensor_count(cfg);
    road_llm_tensor lin = {0};
    bool have = false;
    for (int64_t i = 0; i < n && !have; i++)
        have = road_llm_config_tensor(cfg, i, &lin) == ROAD_OK && lin.role == ROAD_TENSOR_LINEAR;
    DIR *d = have ? opendir(dir) : NULL;
    struct dirent *e;
    bool found = false;
    while (d && !found && (e = readdir(d)) != NULL) {
        const size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        road_st_file *f = NULL;
        if (road_st_open(path, &f) != ROAD_OK) continue;
        const road_st_tensor *t = road_st_find(f, lin.name);
        if (t && float_dtype(t->dtype)) *out = t->dtype, found = true;
        road_st_close(f);
    }
    if (d) closedir(d);
    return found;
}

/* Write a loaded (and merged) model to `out`: float tensors in `dtype` when given (dtype_given),
 * else the dtype the base stores its linear weights in, else config.json's torch_dtype, else
 * f32; linear layers quantized in fmt's format when asked, kept quantized as loaded when the
 * checkpoint was and no --quantize was given. Prints one line saying what was written
 * ("<what> into OUT (...)"). A CLI exit code. */
int cli_model_write(const char *cmd, road_model *m, const char *model, const char *out,
                    road_dtype dtype, bool dtype_given, const cli_quant *qzp,
                    const road_model_params *fmtp, const char *what) {
    const cli_quant qz = *qzp;
    const road_model_params fmt = *fmtp;
    road_adapter_set *set = road_model_adapters(m);
    road_status s;
    /* the float dtype: --dtype, else as the base stores its linear weights */
    const char *dtype_from = "--dtype";
    if (!dtype_given) {
        const road_llm_config *cfg = road_model_config(m);
        if (linear_dtype(model, cfg, &dtype)) {
            dtype_from = "as the base stores its linear weights";
        } else if (float_dtype(cfg->torch_dtype)) {
            dtype = cfg->torch_dtype;
            dtype_from = "the base's config.json torch_dtype";
        } else {
            dtype = ROAD_DTYPE_F32;
            dtype_from = "default";
        }
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
    if (s != ROAD_OK) return cli_fail(cmd, "writing the model", s);
    printf("%s into %s (%s: %s%s%s)\n", what, out, dtype_flag(dtype), dtype_from,
           keep || fmt.quantize != ROAD_QFORMAT_NONE ? ", linear layers " : "",
           keep                                ? road_qformat_name(have)
           : fmt.quantize != ROAD_QFORMAT_NONE ? road_qformat_name(fmt.quantize)
                                               : "");
    return CLI_EXIT_OK;
}

int cmd_merge(int argc, char **argv) {
    merge_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    const char *model = o.model, *out = o.out, *use = o.use;
    const cli_list *adapters = &o.adapters;
    const int n_ad = adapters->n;
    const road_dtype dtype = o.dtype;
    const cli_quant qz = o.qz;
    /* the output format: the model is loaded as stored, merged, then written in this format */
    road_model_params fmt = road_model_default_params();
    if (cli_quant_apply(CMD, &qz, &fmt) != 0) return CLI_EXIT_USAGE;
    if (road_qformat_is_quantized(fmt.quantize) == false && fmt.quantize != ROAD_QFORMAT_NONE) {
        cli_error(CMD, "--quantize takes int8, nf4 or fp4 (for 16-bit float tensors: --dtype)");
        return CLI_EXIT_USAGE;
    }
    road_model_params mp = road_model_default_params();
    mp.n_threads = cli_threads(o.threads);
    /* merged in float32 where the output asks for it: quantized once when written, or float32
     * written as computed (16-bit layers kept as stored would round the merge first) */
    mp.float32_weights = fmt.quantize != ROAD_QFORMAT_NONE ||
                         (cli_given(&spec, &o, "--dtype") && dtype == ROAD_DTYPE_F32);
    /* The output folder is checked before anything is loaded (docs/cli.md): never an input,
     * never a folder road did not write, an existing model folder only with --overwrite. */
    const char *inputs[MAX_ADAPTERS + 1];
    int n_in = 0;
    inputs[n_in++] = model;
    for (int i = 0; i < n_ad; i++) {
        const char *eq = strchr(adapters->v[i], '=');
        inputs[n_in++] = eq ? eq + 1 : adapters->v[i];
    }
    road_status s = road_out_check(out, ROAD_OUT_MODEL, o.overwrite, inputs, n_in, NULL);
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
            const char *eq = strchr(adapters->v[i], '=');
            size_t len = eq ? (size_t)(eq - adapters->v[i]) : strlen(adapters->v[i]);
            if (len > 128) len = 128;
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%.*s", i ? "," : "", (int)len,
                                  adapters->v[i]);
        }
        use = names;
    }
    if ((rc = cli_attach_adapters(CMD, m, adapters, use)) != CLI_EXIT_OK) goto done;
    rc = CLI_EXIT_FAIL;
    road_adapter_set *set = road_model_adapters(m);
    if ((s = road_adapter_set_merge_and_unload(set, NULL, 0, !o.unsafe)) != ROAD_OK) {
        rc = cli_fail(CMD, "merging", s);
        goto done;
    }
    char what[MAX_ADAPTERS * 130 + 8];
    snprintf(what, sizeof what, "merged %s", use);
    if ((rc = cli_model_write(CMD, m, model, out, dtype, cli_given(&spec, &o, "--dtype"), &qz, &fmt,
                              what)) != CLI_EXIT_OK)
        goto done;
    rc = CLI_EXIT_OK;
done:
    road_model_free(m);
    return rc;
}
