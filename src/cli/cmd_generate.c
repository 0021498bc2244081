/*
 * cli/cmd_generate.c - `road generate`: continue prompts (text through the model's tokenizer,
 * optionally in its chat template, or token ids), several as one batch, each with its own
 * adapter if asked. One text prompt is streamed as it is generated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"

#define CMD "generate"
#define MAX_ADAPTERS 64
#define MAX_PROMPTS 256

typedef struct generate_opts {
    const char *model, *use, *rows, *stop_ids, *system;
    cli_chat chat_opts;
    cli_list prompts; /* --prompt and --prompt-ids, in argv order */
    cli_list adapters;
    int64_t threads, max_new_tokens, top_k, seed;
    double temperature, top_p;
    cli_quant qz;
    road_dtype kv_dtype;
    bool chat, jsonl;
    uint64_t given;
} generate_opts;

static const cli_flag flags[] = {
    {CLI_STR("--model", generate_opts, model, "DIR", NULL, "the model folder")},
    {CLI_LST("--prompt", generate_opts, prompts, "TEXT", MAX_PROMPTS,
             "a text prompt (the model's tokenizer.json): one sequence")},
    {CLI_LST("--prompt-ids", generate_opts, prompts, "\"1 2 3\"", MAX_PROMPTS,
             "a prompt as token ids (separated by spaces or commas): one sequence")},
    {CLI_SW("--chat", generate_opts, chat,
            "wrap each text prompt as a user message in the chat "
            "template")},
    {CLI_STR("--system", generate_opts, system, "TEXT", NULL,
             "with --chat: a system message before each prompt")},
    CLI_CHAT_FLAGS(generate_opts),
    {CLI_LST("--adapter", generate_opts, adapters, "NAME=DIR", MAX_ADAPTERS,
             "load an adapter folder under NAME")},
    {CLI_STR("--use", generate_opts, use, "NAME[,NAME...]", NULL,
             "activate adapters for every sequence (in order)")},
    {CLI_STR("--rows", generate_opts, rows, "NAME,...", NULL,
             "one adapter (or __base__) per sequence")},
    {CLI_INT("--max-new-tokens", generate_opts, max_new_tokens, "N", 1, 1 << 20, NULL,
             "(default: generation_config.json's max_new_tokens, else 32)")},
    {CLI_FLOAT("--temperature", generate_opts, temperature, "T", 0.0, 100.0, NULL,
               "0: greedy (default: generation_config.json's)")},
    {CLI_INT("--top-k", generate_opts, top_k, "K", 0, 1 << 30, NULL,
             "(default: generation_config.json's)")},
    {CLI_FLOAT("--top-p", generate_opts, top_p, "P", 1e-6, 1.0, NULL,
               "(default: generation_config.json's)")},
    {CLI_INT("--seed", generate_opts, seed, "S", 0, INT64_MAX, "0",
             "sequence i samples with seed S + i")},
    {CLI_STR("--stop-ids", generate_opts, stop_ids, "\"2 3\"", NULL,
             "stop after one of these ids (default: the eos ids)")},
    CLI_THREADS_FLAG(generate_opts),
    {CLI_SW("--jsonl", generate_opts, jsonl, "one JSON object per sequence instead")},
    CLI_QUANT_FLAGS(generate_opts),
    CLI_KV_DTYPE_FLAG(generate_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .usage = "--model DIR (--prompt TEXT | --prompt-ids \"1 2 3\")... [options]",
    .about =
        "Each --prompt (text, tokenized with the model's tokenizer.json; --chat wraps it as a\n"
        "user message in the chat template) or --prompt-ids is one sequence; all run as one\n"
        "batch. --use activates adapters for every sequence; --rows names one adapter (or\n"
        "__base__) per sequence. Prints each sequence's continuation on its own line: text for\n"
        "text prompts (streamed when there is one), ids for id prompts. --jsonl prints one JSON\n"
        "object per sequence instead, in prompt order: {\"index\", \"adapter\", \"text\" (text\n"
        "prompts), \"token_ids\", \"finish_reason\" (\"stop\" or \"length\")}; the stop token is\n"
        "left out of text and token_ids, as in the OpenAI API. Defaults come from\n"
        "generation_config.json: greedy unless it says do_sample, stop at its eos ids, its\n"
        "max_new_tokens (else 32).\n",
    CLI_TABLE(flags, generate_opts),
};

typedef struct out_buf {
    int32_t *tok[MAX_PROMPTS];
    int64_t n[MAX_PROMPTS], cap;
    road_tokenizer_stream *stream; /* one text prompt: print as it comes */
} out_buf;

static bool on_token(int64_t seq, int32_t token, void *user) {
    out_buf *o = user;
    if (o->n[seq] < o->cap) o->tok[seq][o->n[seq]++] = token;
    if (o->stream) {
        const char *text;
        size_t len;
        if (road_tokenizer_stream_push(o->stream, token, &text, &len) == ROAD_OK && len) {
            fwrite(text, 1, len, stdout);
            fflush(stdout);
        }
    }
    return true;
}

/* s[0..n) as a JSON string: every byte kept (a NUL is \u0000, other controls escaped), UTF-8
 * passed through as is (JSON text is UTF-8); bytes that are not valid UTF-8 cannot come out
 * of the tokenizer's decode (it replaces them with U+FFFD). */
static void put_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

/* The adapters sequence i runs with, as the JSON "adapter" value: its --rows name, or the
 * active list ("a,b"), or "__base__". */
static void put_adapter(FILE *f, road_model *m, char **row_names, int i) {
    if (row_names) {
        put_json_string(f, row_names[i], strlen(row_names[i]));
        return;
    }
    const road_adapter_set *set = road_model_adapters(m);
    const int32_t n = road_adapter_set_enabled(set) ? road_adapter_set_active_count(set) : 0;
    if (n == 0) {
        fputs("\"__base__\"", f);
        return;
    }
    char names[1024];
    size_t k = 0;
    for (int32_t j = 0; j < n && k < sizeof names; j++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", j ? "," : "",
                              road_adapter_set_active_name(set, j));
    put_json_string(f, names, k < sizeof names ? k : sizeof names - 1);
}

int cmd_generate(int argc, char **argv) {
    generate_opts o = {0};
    int r = cli_parse(&spec, argc, argv, &o);
    if (r != CLI_CONTINUE) return r;
    const char *model = o.model, *use = o.use, *rows = o.rows, *stop = o.stop_ids;
    const bool chat = o.chat || o.chat_opts.template_spec || o.chat_opts.kwargs || o.system,
               jsonl = o.jsonl;
    const int n_prompts = o.prompts.n;
    const char *const *prompt_specs = o.prompts.v;
    bool is_text[MAX_PROMPTS], any_text = false;
    for (int i = 0; i < n_prompts; i++) {
        is_text[i] = strcmp(o.prompts.flag[i], "--prompt") == 0;
        any_text |= is_text[i];
    }
    if (!model || n_prompts == 0) {
        cli_error(CMD, "--model and at least one --prompt or --prompt-ids are required (see road "
                       "generate --help)");
        return CLI_EXIT_USAGE;
    }
    if (use && rows) {
        cli_error(CMD,
                  "give --use (same adapters for every sequence) or --rows (one each), not both");
        return CLI_EXIT_USAGE;
    }
    /* not given: the model's generation_config.json decides */
    const bool maxn = cli_given(&spec, &o, "--max-new-tokens");
    int64_t max_new = maxn ? o.max_new_tokens : 32;
    const float t = cli_given(&spec, &o, "--temperature") ? (float)o.temperature : -1.0f;
    const float p = cli_given(&spec, &o, "--top-p") ? (float)o.top_p : -1.0f;
    const long long k = cli_given(&spec, &o, "--top-k") ? o.top_k : -1, sd = o.seed;

    int32_t *ids[MAX_PROMPTS] = {0};
    int64_t lens[MAX_PROMPTS];
    int32_t *stop_ids = NULL;
    int64_t n_stop = 0;
    char **row_names = NULL;
    int32_t n_rows = 0;
    out_buf out;
    memset(&out, 0, sizeof out);
    road_model *m = NULL;
    int rc = CLI_EXIT_USAGE;
    road_tokenizer *tok = NULL;
    cJSON *kwargs = NULL;
    if (chat && !any_text) {
        cli_error(CMD, "--chat, --system, --chat-template and --chat-kwargs apply to text prompts "
                       "(--prompt)");
        goto done;
    }
    for (int i = 0; i < n_prompts; i++)
        if (!is_text[i] &&
            cli_parse_ids(CMD, "--prompt-ids", prompt_specs[i], &ids[i], &lens[i]) != 0)
            goto done;
    if (stop && cli_parse_ids(CMD, "--stop-ids", stop, &stop_ids, &n_stop) != 0) goto done;
    if (rows) {
        if (cli_split(rows, ',', &row_names, &n_rows) != 0) goto done;
        if (n_rows != n_prompts) {
            cli_error(CMD, "--rows names %d adapters for %d prompts", (int)n_rows, n_prompts);
            goto done;
        }
    }
    rc = CLI_EXIT_FAIL;
    road_model_params mp = road_model_default_params();
    mp.n_threads = cli_threads(o.threads);
    if (cli_quant_apply(CMD, &o.qz, &mp) != 0) {
        rc = CLI_EXIT_USAGE;
        goto done;
    }
    road_status s = road_model_load(model, &mp, &m);
    if (s != ROAD_OK) {
        rc = cli_fail(CMD, "loading the model", s);
        goto done;
    }
    if ((rc = cli_attach_adapters(CMD, m, &o.adapters, use)) != CLI_EXIT_OK) goto done;
    rc = CLI_EXIT_FAIL;
    if (any_text) {
        if ((s = road_tokenizer_load(model, &tok)) != ROAD_OK) {
            rc = cli_fail(
                CMD, "loading the tokenizer (text prompts need the model's tokenizer.json)", s);
            goto done;
        }
        if ((rc = cli_chat_setup(CMD, &o.chat_opts, tok, &kwargs)) != CLI_EXIT_OK) goto done;
        rc = CLI_EXIT_FAIL;
        road_chat_params cp = road_chat_default_params();
        cp.kwargs = kwargs;
        for (int i = 0; i < n_prompts; i++) {
            if (!is_text[i]) continue;
            char *text = NULL;
            size_t tl = strlen(prompt_specs[i]);
            const char *src = prompt_specs[i];
            if (chat) {
                road_chat_message msg[2] = {{"system", o.system}, {"user", prompt_specs[i]}};
                const int sys = o.system != NULL;
                if ((s = road_tokenizer_apply_chat(tok, &cp, msg + 1 - sys, 1 + (size_t)sys, &text,
                                                   &tl)) != ROAD_OK) {
                    rc = cli_fail(CMD, "applying the chat template", s);
                    goto done;
                }
                src = text;
            }
            size_t cap = road_tokenizer_max_tokens(tok, tl), n = 0;
            ids[i] = malloc(sizeof(int32_t) * (cap ? cap : 1));
            s = ids[i] ? road_tokenizer_encode(tok, src, tl, !chat, ids[i], cap, &n)
                       : ROAD_ERR_NO_MEMORY;
            road_string_free(text);
            if (s != ROAD_OK) {
                rc = cli_fail(CMD, "tokenizing a prompt", s);
                goto done;
            }
            lens[i] = (int64_t)n;
        }
        if (n_prompts == 1 && !jsonl &&
            (s = road_tokenizer_stream_create(tok, true, &out.stream)) != ROAD_OK) {
            rc = cli_fail(CMD, "streaming", s);
            goto done;
        }
    }
    const road_generation_config *gc = road_model_generation_config(m);
    if (!maxn && gc->max_new_tokens > 0) /* generation never runs past the context */
        max_new = gc->max_new_tokens < road_llm_config_max_tokens(road_model_config(m))
                      ? gc->max_new_tokens
                      : road_llm_config_max_tokens(road_model_config(m));
    road_generate_params gp;
    memset(&gp, 0, sizeof gp);
    gp.max_new_tokens = max_new;
    gp.sampling = road_sampler_default_params();
    if (gc->do_sample) {
        gp.sampling.temperature = gc->temperature;
        gp.sampling.top_k = gc->top_k;
        gp.sampling.top_p = gc->top_p;
    }
    if (t >= 0) gp.sampling.temperature = t;
    if (k >= 0) gp.sampling.top_k = (int32_t)k;
    if (p > 0) gp.sampling.top_p = p;
    gp.sampling.seed = (uint64_t)sd;
    gp.kv_dtype = o.kv_dtype;
    int32_t eos[ROAD_MAX_EOS];
    if (stop) {
        gp.stop_ids = stop_ids;
        gp.n_stop = (int32_t)n_stop;
    } else {
        for (int32_t i = 0; i < gc->n_eos; i++) eos[i] = gc->eos_token_ids[i];
        gp.stop_ids = eos;
        gp.n_stop = gc->n_eos;
    }
    out.cap = max_new;
    for (int i = 0; i < n_prompts; i++)
        if (!(out.tok[i] = malloc(sizeof(int32_t) * (size_t)max_new))) goto done;
    s = road_model_generate(m, (const int32_t *const *)ids, lens, (const char *const *)row_names,
                            n_prompts, &gp, on_token, &out);
    if (s != ROAD_OK) {
        rc = cli_fail(CMD, "generation", s);
        goto done;
    }
    for (int i = 0; i < n_prompts; i++) {
        const char *finish = "length";
        if (jsonl && out.n[i] > 0) { /* the stop token ends the sequence; it is not output */
            for (int32_t j = 0; j < gp.n_stop; j++)
                if (out.tok[i][out.n[i] - 1] == gp.stop_ids[j]) finish = "stop";
            if (strcmp(finish, "stop") == 0) out.n[i]--;
        }
        if (jsonl) {
            printf("{\"index\": %d, \"adapter\": ", i);
            put_adapter(stdout, m, row_names, i);
            printf(", \"token_ids\": [");
            for (int64_t j = 0; j < out.n[i]; j++)
                printf("%s%d", j ? ", " : "", (int)out.tok[i][j]);
            printf("], \"finish_reason\": \"%s\"", finish);
            if (!is_text[i]) {
                printf("}\n");
                continue;
            }
            printf(", \"text\": ");
        }
        if (is_text[i] && out.stream) {
            const char *rest;
            size_t rl;
            if (road_tokenizer_stream_flush(out.stream, &rest, &rl) == ROAD_OK && rl)
                fwrite(rest, 1, rl, stdout);
        } else if (is_text[i]) {
            char *text = NULL;
            size_t tl = 0, kept = 0;
            /* A model's embedding may be larger than its tokenizer's vocabulary (padded); ids
             * past the vocabulary have no text: leave them out, and say so. */
            const int32_t nv = road_tokenizer_vocab_size(tok);
            for (int64_t j = 0; j < out.n[i]; j++)
                if (out.tok[i][j] < nv) out.tok[i][kept++] = out.tok[i][j];
            if ((int64_t)kept < out.n[i])
                fprintf(stderr,
                        "road generate: sequence %d: %lld generated ids are outside the "
                        "tokenizer's vocabulary (0..%d) and have no text\n",
                        i, (long long)(out.n[i] - (int64_t)kept), nv - 1);
            if ((s = road_tokenizer_decode(tok, out.tok[i], kept, true, &text, &tl)) != ROAD_OK) {
                rc = cli_fail(CMD, "decoding", s);
                goto done;
            }
            if (jsonl) {
                put_json_string(stdout, text, tl);
                printf("}");
            } else {
                fwrite(text, 1, tl, stdout);
            }
            road_string_free(text);
        } else {
            for (int64_t j = 0; j < out.n[i]; j++) printf("%s%d", j ? " " : "", (int)out.tok[i][j]);
        }
        printf("\n");
    }
    rc = CLI_EXIT_OK;
done:
    for (int i = 0; i < n_prompts; i++) {
        free(ids[i]);
        free(out.tok[i]);
    }
    free(stop_ids);
    cli_free_list(row_names, n_rows);
    road_tokenizer_stream_free(out.stream);
    road_tokenizer_free(tok);
    cJSON_Delete(kwargs);
    road_model_free(m);
    return rc;
}
