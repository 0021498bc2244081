/*
 * cli/cmd_eval.c - `road eval`: logits (and loss) of a padded batch, to compare with PyTorch.
 *
 * Input and output are safetensors with transformers' names, so a Python script can write
 * the input with `safetensors.torch.save_file({"input_ids": ..., "attention_mask": ...,
 * "labels": ...})` and compare road's `logits` / `loss` with its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define CMD "eval"
#define MAX_ADAPTERS 64

typedef struct eval_opts {
    const char *model, *input, *dump, *use, *rows;
    cli_list adapters;
    int64_t threads;
    cli_quant qz;
    cli_chat chat_opts;
    bool grads;
    uint64_t given;
} eval_opts;

static const cli_flag flags[] = {
    {CLI_STR("--model", eval_opts, model, "DIR", NULL, "the base model folder"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--input", eval_opts, input, "IN.safetensors", NULL,
             "the batch: input_ids, attention_mask, labels (or a .jsonl file)"),
     .flags = CLI_REQUIRED},
    {CLI_STR("--dump", eval_opts, dump, "OUT.safetensors", NULL, "where logits (and loss) go"),
     .flags = CLI_REQUIRED},
    {CLI_LST("--adapter", eval_opts, adapters, "NAME=DIR", MAX_ADAPTERS,
             "load an adapter folder under NAME")},
    {CLI_STR("--use", eval_opts, use, "NAME[,NAME...]", NULL,
             "activate adapters for every row (in order)")},
    {CLI_STR("--rows", eval_opts, rows, "NAME,__base__,...", NULL,
             "one adapter (or __base__) per row: a mixed batch")},
    CLI_CHAT_FLAGS(eval_opts),
    {CLI_SW("--grads", eval_opts, grads,
            "also write the gradient of the loss for the active adapters (needs labels and --use)")},
    CLI_THREADS_FLAG(eval_opts),
    CLI_QUANT_FLAGS(eval_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .about =
        "IN holds input_ids (I64 [B,T]), and optionally attention_mask (I64 [B,T]) and labels\n"
        "(or IN is a .jsonl file of road train's example formats: one row per example,\n"
        "tokenized with the model's tokenizer.json, labels from its loss mask)\n"
        "(I64 [B,T], -100 = ignored). OUT gets logits (F32 [B,T,V]; 0 at padding) and, with\n"
        "labels, loss (F32 scalar: transformers' causal-LM loss), also printed.\n"
        "--grads (needs labels and --use) also writes the gradient of the loss with respect to\n"
        "every road_theta / road_alpha of the active adapters, under PEFT's key names\n"
        "(base_model.model.<module>.road_theta; with several active adapters, each key ends\n"
        "in .<adapter name>, as in PEFT's state_dict).\n"
        "--use activates adapters for every row (in order); --rows names one adapter (or\n"
        "__base__) per row: a mixed batch. Without either, the base model runs.\n",
    CLI_TABLE(flags, eval_opts),
};

static int get_i64(const road_st_file *f, const char *name, int64_t B, int64_t T,
                   const int64_t **out, bool required, const char *path) {
    const road_st_tensor *t = road_st_find(f, name);
    *out = NULL;
    if (!t) {
        if (required) cli_error(CMD, "'%s' has no '%s' tensor (I64 [B, T])", path, name);
        return required ? -1 : 0;
    }
    if (t->dtype != ROAD_DTYPE_I64 || t->ndim != 2 || (B >= 0 && (t->shape[0] != B || t->shape[1] != T))) {
        char got[96];
        size_t k = (size_t)snprintf(got, sizeof got, "%s [", road_dtype_name(t->dtype));
        for (int32_t d = 0; d < t->ndim && k < sizeof got; d++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
        if (B >= 0)
            cli_error(CMD, "'%s': '%s' must be I64 [%lld, %lld] like input_ids, got %s", path, name,
                      (long long)B, (long long)T, got);
        else
            cli_error(CMD, "'%s': '%s' must be I64 [B, T], got %s", path, name, got);
        return -1;
    }
    if ((uintptr_t)t->data % 8 != 0) {
        cli_error(CMD, "'%s': '%s' is not 8-byte aligned; re-save the file", path, name);
        return -1;
    }
    *out = t->data;
    return 0;
}

/* A JSONL file as a padded batch: one row per example, right padding, labels from the
 * example's loss mask. */
typedef struct jsonl_input {
    int64_t *ids, *mask, *labels;
    int64_t B, T;
} jsonl_input;

static road_status jsonl_batch(road_model *m, const road_tokenizer *tok, const cJSON *chat_kwargs,
                               const char *path, jsonl_input *out) {
    road_status s = ROAD_OK;
    road_data_params dp = road_data_default_params();
    dp.max_len = road_model_config(m)->max_position_embeddings;
    dp.tok = tok;
    dp.chat.kwargs = chat_kwargs;
    road_dataset *d = NULL;
    if (s == ROAD_OK) s = road_dataset_load_jsonl(path, &dp, &d);
    if (s == ROAD_OK) {
        const int64_t B = road_dataset_count(d);
        int64_t T = 1;
        for (int64_t i = 0; i < B; i++) {
            const int32_t *a, *b;
            int64_t n;
            road_dataset_example(d, i, &a, &b, &n);
            if (n > T) T = n;
        }
        out->B = B, out->T = T;
        if (B <= 0 || B > INT32_MAX || T > INT32_MAX) {
            road_dataset_free(d);
            return ROAD_ERR_INVALID_ARG;
        }
        const size_t cells = (size_t)B * (size_t)T;
        out->ids = calloc(cells, sizeof(int64_t));
        out->mask = calloc(cells, sizeof(int64_t));
        out->labels = calloc(cells, sizeof(int64_t));
        if (!out->ids || !out->mask || !out->labels) s = ROAD_ERR_NO_MEMORY; /* reported by the caller */
        for (int64_t i = 0; i < B && s == ROAD_OK; i++) {
            const int32_t *a, *b;
            int64_t n;
            road_dataset_example(d, i, &a, &b, &n);
            for (int64_t t = 0; t < T; t++) {
                out->ids[i * T + t] = t < n ? a[t] : 0;
                out->mask[i * T + t] = t < n;
                out->labels[i * T + t] = t < n ? b[t] : ROAD_LABEL_IGNORE;
            }
        }
    }
    road_dataset_free(d);
    return s;
}

/* Gradients of the loss for the active adapters, added to the writer under PEFT's keys. */
static road_status add_grads(road_model *m, const int64_t *ids, const int64_t *mask,
                             const int64_t *labels, int64_t B, int64_t T, road_st_writer *w) {
    road_adapter_set *set = road_model_adapters(m);
    for (int32_t i = 0; i < road_adapter_set_layer_count(set); i++)
        if (road_adapter_set_layer(set, i)) road_linear_zero_grads(road_adapter_set_layer(set, i));
    const int32_t n_active = road_adapter_set_active_count(set);
    for (int32_t a = 0; a < n_active; a++) { /* modules_to_save copies accumulate too */
        const char *name = road_adapter_set_active_name(set, a);
        for (int32_t k = 0; k < road_adapter_set_copy_count(set, name); k++) {
            road_module_copy c;
            if (road_adapter_set_copy_at(set, name, k, &c) != ROAD_OK) continue;
            memset(c.dweight, 0, sizeof(float) * (size_t)(c.out * c.in));
            if (c.dbias) memset(c.dbias, 0, sizeof(float) * (size_t)c.out);
        }
    }
    double loss;
    road_status s = road_model_loss_backward(m, ids, mask, labels, B, T, &loss);
    for (int32_t a = 0; a < n_active && s == ROAD_OK; a++) {
        const char *name = road_adapter_set_active_name(set, a);
        for (int32_t i = 0; i < road_adapter_set_layer_count(set) && s == ROAD_OK; i++) {
            road_linear *l = road_adapter_set_layer(set, i);
            if (!l || !road_adapter_set_on_layer(set, name, i)) continue;
            float *dth, *dal;
            int64_t n;
            if ((s = road_linear_adapter_grads(l, name, &dth, &dal, &n)) != ROAD_OK) break;
            const char *parts[2] = {"road_theta", "road_alpha"};
            float *data[2] = {dth, dal};
            for (int k = 0; k < 2 && s == ROAD_OK; k++) {
                char key[512];
                snprintf(key, sizeof key, "base_model.model.%s.%s%s%s", road_adapter_set_layer_name(set, i),
                         parts[k], n_active > 1 ? "." : "", n_active > 1 ? name : "");
                s = road_st_writer_add(w, key, ROAD_DTYPE_F32, 1, &n, data[k]);
            }
        }
        /* full copies (modules_to_save): base_model.model.<module>.weight / .bias */
        for (int32_t k = 0; k < road_adapter_set_copy_count(set, name) && s == ROAD_OK; k++) {
            road_module_copy c;
            if ((s = road_adapter_set_copy_at(set, name, k, &c)) != ROAD_OK) break;
            char key[512];
            int64_t shape[2] = {c.out, c.in};
            snprintf(key, sizeof key, "base_model.model.%s.weight%s%s",
                     road_adapter_set_layer_name(set, c.layer), n_active > 1 ? "." : "",
                     n_active > 1 ? name : "");
            s = road_st_writer_add(w, key, ROAD_DTYPE_F32, 2, shape, c.dweight);
            if (s == ROAD_OK && c.dbias) {
                snprintf(key, sizeof key, "base_model.model.%s.bias%s%s",
                         road_adapter_set_layer_name(set, c.layer), n_active > 1 ? "." : "",
                         n_active > 1 ? name : "");
                s = road_st_writer_add(w, key, ROAD_DTYPE_F32, 1, shape, c.dbias);
            }
        }
    }
    return s;
}

int cmd_eval(int argc, char **argv) {
    eval_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    const char *model = o.model, *in = o.input, *dump = o.dump, *use = o.use, *rows = o.rows;
    const cli_quant qz = o.qz;
    const bool grads = o.grads;
    if (use && rows) {
        cli_error(CMD, "give --use (same adapters for every row) or --rows (one per row), not both");
        return CLI_EXIT_USAGE;
    }
    if (grads && !use) {
        cli_error(CMD, "--grads needs --use NAME[,NAME...]: gradients are for the active adapters "
                  "(mixed --rows batches are inference only)");
        return CLI_EXIT_USAGE;
    }
    road_model_params mp = road_model_default_params();
    mp.n_threads = cli_threads(o.threads);
    if (cli_quant_apply(CMD, &qz, &mp) != 0) return CLI_EXIT_USAGE;
    road_model *m = NULL;
    road_st_file *f = NULL;
    jsonl_input jb = {NULL, NULL, NULL, 0, 0};
    road_tokenizer *tok = NULL;
    cJSON *chat_kwargs = NULL;
    road_st_writer *w = NULL;
    float *logits = NULL;
    char **row_names = NULL;
    int32_t n_rows = 0;
    int rc = CLI_EXIT_FAIL;
    road_status s = road_model_load(model, &mp, &m);
    if (s != ROAD_OK) return cli_fail(CMD, "loading the model", s);
    if ((rc = cli_attach_adapters(CMD, m, &o.adapters, use)) != CLI_EXIT_OK) goto done;
    rc = CLI_EXIT_FAIL;
    const int64_t *ids = NULL, *mask = NULL, *labels = NULL;
    int64_t B = 0, T = 0;
    const int64_t V = road_model_config(m)->vocab_size;
    size_t in_len = strlen(in);
    const bool jsonl = in_len > 6 && strcmp(in + in_len - 6, ".jsonl") == 0;
    if (!jsonl && (o.chat_opts.template_spec || o.chat_opts.kwargs)) {
        cli_error(CMD, "--chat-template and --chat-kwargs apply to a .jsonl --input");
        rc = CLI_EXIT_USAGE;
        goto done;
    }
    if (jsonl) {
        /* JSONL examples (road train's formats), tokenized with the model's tokenizer */
        char tpath[4096];
        snprintf(tpath, sizeof tpath, "%s/tokenizer.json", model);
        if (access(tpath, F_OK) == 0 && (s = road_tokenizer_load(model, &tok)) != ROAD_OK) {
            cli_fail(CMD, "loading the tokenizer", s);
            goto done;
        }
        if (!tok && (o.chat_opts.template_spec || o.chat_opts.kwargs)) {
            cli_error(CMD, "--chat-template and --chat-kwargs need the model's tokenizer.json");
            rc = CLI_EXIT_USAGE;
            goto done;
        }
        if (tok && (rc = cli_chat_setup(CMD, &o.chat_opts, tok, &chat_kwargs)) != CLI_EXIT_OK)
            goto done;
        rc = CLI_EXIT_FAIL;
        if ((s = jsonl_batch(m, tok, chat_kwargs, in, &jb)) != ROAD_OK) {
            cli_fail(CMD, "reading --input", s);
            goto done;
        }
        ids = jb.ids, mask = jb.mask, labels = jb.labels, B = jb.B, T = jb.T;
    } else {
        if ((s = road_st_open(in, &f)) != ROAD_OK) {
            cli_fail(CMD, "reading --input", s);
            goto done;
        }
        if (get_i64(f, "input_ids", -1, -1, &ids, true, in) != 0) goto done;
        const road_st_tensor *t = road_st_find(f, "input_ids");
        B = t->shape[0], T = t->shape[1];
        if (B <= 0 || T <= 0) {
            cli_error(CMD, "'%s': input_ids is empty", in);
            goto done;
        }
        if (get_i64(f, "attention_mask", B, T, &mask, false, in) != 0) goto done;
        if (get_i64(f, "labels", B, T, &labels, false, in) != 0) goto done;
    }
    if (rows) {
        if (cli_split(rows, ',', &row_names, &n_rows) != 0) goto done;
        if (n_rows != B) {
            cli_error(CMD, "--rows names %d adapters for a batch of %lld rows", (int)n_rows, (long long)B);
            rc = CLI_EXIT_USAGE;
            goto done;
        }
    }
    size_t nl = (size_t)B * (size_t)T;
    if (nl > SIZE_MAX / sizeof(float) / (size_t)V || !(logits = malloc(nl * (size_t)V * sizeof(float)))) {
        cli_error(CMD, "out of memory for logits [%lld, %lld, %lld]", (long long)B, (long long)T, (long long)V);
        goto done;
    }
    s = road_model_forward_padded(m, ids, mask, B, T, (const char *const *)row_names, logits);
    if (s != ROAD_OK) {
        cli_fail(CMD, "forward", s);
        goto done;
    }
    if ((s = road_st_writer_create(&w)) != ROAD_OK) goto fail_write;
    int64_t shape[3] = {B, T, V};
    if ((s = road_st_writer_add(w, "logits", ROAD_DTYPE_F32, 3, shape, logits)) != ROAD_OK) goto fail_write;
    if (labels) {
        double loss;
        if ((s = road_causal_lm_loss(logits, labels, mask, B, T, V, &loss)) != ROAD_OK) {
            cli_fail(CMD, "loss", s);
            goto done;
        }
        float lf = (float)loss;
        if ((s = road_st_writer_add(w, "loss", ROAD_DTYPE_F32, 0, NULL, &lf)) != ROAD_OK) goto fail_write;
        printf("loss %.7f\n", loss);
    }
    if (grads) {
        if (!labels) {
            cli_error(CMD, "--grads needs labels in '%s' (the gradient is of the loss)", in);
            goto done;
        }
        if ((s = add_grads(m, ids, mask, labels, B, T, w)) != ROAD_OK) {
            cli_fail(CMD, "gradients", s);
            goto done;
        }
    }
    if ((s = road_st_writer_set_metadata(w, "format", "pt")) != ROAD_OK) goto fail_write;
    if ((s = road_st_writer_save(w, dump)) != ROAD_OK) goto fail_write;
    printf("wrote %s (logits [%lld, %lld, %lld]%s)\n", dump, (long long)B, (long long)T, (long long)V,
           labels ? ", loss" : "");
    rc = CLI_EXIT_OK;
    goto done;
fail_write:
    cli_fail(CMD, "writing --dump", s);
done:
    cli_free_list(row_names, n_rows);
    free(logits);
    road_st_writer_free(w);
    road_st_close(f);
    free(jb.ids), free(jb.mask), free(jb.labels);
    road_tokenizer_free(tok);
    cJSON_Delete(chat_kwargs);
    road_model_free(m);
    return rc;
}
