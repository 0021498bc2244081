/*
 * cli/cmd_chat_template.c - `road chat-template`: a chat rendered by a template exactly as
 * transformers' apply_chat_template(tokenize=False) renders it, for diffing against
 * transformers and for checking what prompt a model will see.
 *
 *   road chat-template (--model DIR | --tokenizer-config FILE | --template FILE)
 *                      --messages FILE.json [--add-generation-prompt | --continue-final-message]
 *                      [--tools FILE.json] [--documents FILE.json] [--kwargs JSON]
 *                      [--chat-template NAME]
 *
 * --model DIR with a tokenizer.json renders through the tokenizer, as every other command does
 * (road_tokenizer_apply_chat_json: chat_template.jinja, tokenizer_config.json's template or
 * named list, additional_chat_templates/, "tool_use" when tools are given, --chat-template to
 * choose). Otherwise the template is --template's text, or the config's chat_template (a
 * string; of a named list, "tool_use" with --tools when there is one, else "default"), and the
 * config's special tokens (bos_token, eos_token, unk_token, pad_token) are variables
 * (road_chat_template_apply). Either way the messages are passed as transformers 5 passes them
 * (null-valued keys dropped, reasoning aliases), tools is --tools' list or none, documents
 * --documents' or none, --kwargs adds variables. The render goes to stdout exactly, nothing
 * added; errors to stderr, exit 1. strftime_now uses SOURCE_DATE_EPOCH's date when it is set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "road/road.h"

#define CMD "chat-template"

typedef struct ct_args {
    const char *model, *tokenizer_config, *template_file, *messages, *tools, *documents, *kwargs;
    const char *name;
    bool add_generation_prompt, continue_final_message;
    uint64_t given;
} ct_args;

static const cli_flag flags[] = {
    {CLI_STR("--model", ct_args, model, "DIR", NULL,
             "a model folder: its chat_template.jinja, else tokenizer_config.json's template")},
    {CLI_STR("--tokenizer-config", ct_args, tokenizer_config, "FILE", NULL,
             "a tokenizer_config.json: its chat_template and special tokens")},
    {CLI_STR("--template", ct_args, template_file, "FILE", NULL, "a Jinja chat template file")},
    {CLI_STR("--messages", ct_args, messages, "FILE.json", NULL,
             "the chat: a JSON list of {\"role\", \"content\"} messages"),
     .flags = CLI_REQUIRED},
    {CLI_SW("--add-generation-prompt", ct_args, add_generation_prompt,
            "end with the start of an assistant turn")},
    {CLI_SW("--continue-final-message", ct_args, continue_final_message,
            "end inside the last message, for the model to continue it (transformers' rule)")},
    {CLI_STR("--tools", ct_args, tools, "FILE.json", NULL,
             "tool definitions: a JSON list (OpenAI function schema)")},
    {CLI_STR("--documents", ct_args, documents, "FILE.json", NULL,
             "documents for RAG templates: a JSON list of objects")},
    {CLI_STR("--chat-template", ct_args, name, "FILE|NAME", NULL,
             "with --model: another template (a file, one of the model's named templates, or a "
             "built-in), as the other commands take it")},
    {CLI_STR("--kwargs", ct_args, kwargs, "JSON", NULL,
             "more template variables, a JSON object (e.g. {\"enable_thinking\": false})")},
};

static const cli_spec spec = {
    .name = CMD,
    .usage = "(--model DIR | --tokenizer-config FILE | --template FILE) --messages FILE.json "
             "[--add-generation-prompt | --continue-final-message] [--tools FILE.json] "
             "[--documents FILE.json] [--kwargs JSON] [--chat-template FILE|NAME]",
    .about = "Prints the chat as the template renders it (transformers' "
             "apply_chat_template(tokenize=False)), exactly: nothing is added.\n",
    CLI_TABLE(flags, ct_args),
};

/* A file's bytes (NUL-terminated), or NULL with the error printed. */
static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    return cli_read_file(CMD, path, &buf, len) == 0 ? buf : NULL;
}

/* JSON text (of `what`) as road reads JSON, or NULL with the error printed. */
static cJSON *parse_json(const char *text, size_t len, const char *what) {
    cJSON *j = NULL;
    road_status s = road_json_parse(text, len, &j);
    if (s != ROAD_OK) {
        cli_error(CMD, "%s: %s", what, road_last_error());
        return NULL;
    }
    return j;
}

static cJSON *parse_json_file(const char *path) {
    size_t len = 0;
    char *text = slurp(path, &len);
    cJSON *j = text ? parse_json(text, len, path) : NULL;
    free(text);
    return j;
}

/* tokenizer_config.json's chat_template: a string; of a named list, "tool_use" when tools are
 * given and there is one, else "default" (transformers' choice). */
static const char *config_template(const cJSON *cfg, const char *path, bool tools) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(t)) return t->valuestring;
    const char *found = NULL;
    for (int pass = tools ? 0 : 1; pass < 2 && !found; pass++) {
        const cJSON *e;
        if (cJSON_IsArray(t)) cJSON_ArrayForEach(e, t) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
                const cJSON *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
                if (cJSON_IsString(name) && cJSON_IsString(tt) &&
                    strcmp(name->valuestring, pass == 0 ? "tool_use" : "default") == 0)
                    found = tt->valuestring;
            }
    }
    if (!found)
        cli_error(CMD,
                  "%s has no chat_template (a string, or a list with a \"default\" entry); "
                  "pass --template FILE",
                  path);
    return found;
}

/* The special tokens of a tokenizer_config as template variables. */
static cJSON *special_tokens(const cJSON *cfg) {
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    cJSON *vars = cJSON_CreateObject();
    for (size_t i = 0; vars && cfg && i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[i]);
        if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(v)) cJSON_AddStringToObject(vars, keys[i], v->valuestring);
    }
    return vars;
}

/* A JSON file that must hold a list. */
static cJSON *parse_list_file(const char *path, const char *what) {
    cJSON *j = parse_json_file(path);
    if (j && !cJSON_IsArray(j)) {
        cli_error(CMD, "%s must hold a JSON list of %s", path, what);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int run(const ct_args *a) {
    const int sources =
        (a->model != NULL) + (a->tokenizer_config != NULL) + (a->template_file != NULL);
    if (sources != 1) {
        cli_error(CMD, "give exactly one of --model, --tokenizer-config and --template");
        return CLI_EXIT_USAGE;
    }
    if (a->add_generation_prompt && a->continue_final_message) {
        cli_error(CMD, "--add-generation-prompt and --continue-final-message exclude each other");
        return CLI_EXIT_USAGE;
    }
    int rc = CLI_EXIT_FAIL;
    char *tmpl_file = NULL, *config_path = NULL, *jinja_path = NULL, *tok_path = NULL, *text = NULL;
    cJSON *cfg = NULL, *vars = NULL, *messages = NULL, *tools = NULL, *docs = NULL, *kw = NULL;
    road_tokenizer *tok = NULL;
    const char *tmpl = NULL;
    size_t tmpl_len = 0, len = 0;
    road_status s;
    if (!(messages = parse_list_file(a->messages, "messages"))) goto done;
    if (a->tools && !(tools = parse_list_file(a->tools, "tools"))) goto done;
    if (a->documents && !(docs = parse_list_file(a->documents, "documents"))) goto done;
    if (a->kwargs) {
        if (!(kw = parse_json(a->kwargs, strlen(a->kwargs), "--kwargs"))) goto done;
        if (!cJSON_IsObject(kw)) {
            cli_error(CMD, "--kwargs must be a JSON object, e.g. {\"enable_thinking\": false}");
            goto done;
        }
    }
    road_chat_params p = road_chat_default_params();
    p.add_generation_prompt = a->add_generation_prompt;
    p.continue_final_message = a->continue_final_message;
    p.tools = tools, p.documents = docs, p.kwargs = kw;
    if (a->model) {
        size_t n = strlen(a->model) + 32;
        config_path = malloc(n), jinja_path = malloc(n), tok_path = malloc(n);
        if (!config_path || !jinja_path || !tok_path) goto done;
        snprintf(config_path, n, "%s/tokenizer_config.json", a->model);
        snprintf(jinja_path, n, "%s/chat_template.jinja", a->model);
        snprintf(tok_path, n, "%s/tokenizer.json", a->model);
    } else if (a->tokenizer_config) {
        config_path = strdup(a->tokenizer_config);
        if (!config_path) goto done;
    }
    if (a->name && !(tok_path && is_file(tok_path))) {
        cli_error(CMD, "--chat-template needs --model with a tokenizer.json");
        rc = CLI_EXIT_USAGE;
        goto done;
    }
    if (tok_path && is_file(tok_path)) { /* the path every command takes */
        if ((s = road_tokenizer_load(a->model, &tok)) != ROAD_OK) {
            cli_error(CMD, "%s", road_last_error());
            goto done;
        }
        if (a->name && (s = road_tokenizer_set_chat_template(tok, a->name)) != ROAD_OK) {
            cli_error(CMD, "--chat-template: %s", road_last_error());
            goto done;
        }
        s = road_tokenizer_apply_chat_json(tok, &p, messages, &text, &len);
    } else {
        if (config_path && (a->tokenizer_config || is_file(config_path)) &&
            !(cfg = parse_json_file(config_path)))
            goto done;
        if (a->template_file || (jinja_path && is_file(jinja_path))) {
            if (!(tmpl_file = slurp(a->template_file ? a->template_file : jinja_path, &tmpl_len)))
                goto done;
            tmpl = tmpl_file;
        } else if (!cfg) {
            cli_error(CMD, "%s has neither chat_template.jinja nor tokenizer_config.json",
                      a->model);
            goto done;
        } else {
            if (!(tmpl = config_template(cfg, config_path, tools != NULL))) goto done;
            tmpl_len = strlen(tmpl);
        }
        if (!(vars = special_tokens(cfg))) goto done;
        s = road_chat_template_apply(tmpl, tmpl_len, vars, &p, messages, &text, &len);
    }
    if (s != ROAD_OK) {
        cli_error(CMD, "%s", road_last_error());
        goto done;
    }
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        cli_error(CMD, "cannot write the render to stdout");
        goto done;
    }
    rc = CLI_EXIT_OK;
done:
    road_string_free(text);
    road_tokenizer_free(tok);
    cJSON_Delete(vars), cJSON_Delete(messages), cJSON_Delete(cfg);
    cJSON_Delete(tools), cJSON_Delete(docs), cJSON_Delete(kw);
    free(tmpl_file), free(config_path), free(jinja_path), free(tok_path);
    return rc;
}

int cmd_chat_template(int argc, char **argv) {
    ct_args a;
    memset(&a, 0, sizeof a);
    int r = cli_parse(&spec, argc, argv, &a);
    return r != CLI_CONTINUE ? r : run(&a);
}
