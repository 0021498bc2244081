/*
 * cli/cmd_chat_template.c - `road chat-template`: a chat rendered by a template exactly as
 * transformers' apply_chat_template(tokenize=False) renders it, for diffing against
 * transformers and for checking what prompt a model will see.
 *
 *   road chat-template (--model DIR | --tokenizer-config FILE | --template FILE)
 *                      --messages FILE.json [--add-generation-prompt] [--tools FILE.json]
 *                      [--kwargs JSON]
 *
 * The template: --template's text; or tokenizer_config.json's chat_template (a string, or the
 * "default" entry of a named list); with --model, DIR/chat_template.jinja when it exists (as
 * transformers >= 4.47 saves it), else DIR/tokenizer_config.json's. The special tokens of the
 * tokenizer_config (bos_token, eos_token, unk_token, pad_token; a string or an AddedToken's
 * "content") are variables, absent ones undefined. --messages is a JSON list of messages
 * passed as they are (content a string, null or a list of parts; tool_calls in the OpenAI
 * shape); tools is --tools' list or null, documents null; --kwargs' object adds variables
 * (enable_thinking, ...). The render goes to stdout exactly, nothing added; errors to stderr,
 * exit 1. strftime_now uses SOURCE_DATE_EPOCH's date when it is set.
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
    const char *model, *tokenizer_config, *template_file, *messages, *tools, *kwargs;
    bool add_generation_prompt;
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
    {CLI_STR("--tools", ct_args, tools, "FILE.json", NULL,
             "tool definitions: a JSON list (OpenAI function schema)")},
    {CLI_STR("--kwargs", ct_args, kwargs, "JSON", NULL,
             "more template variables, a JSON object (e.g. {\"enable_thinking\": false})")},
};

static const cli_spec spec = {
    .name = CMD,
    .usage = "(--model DIR | --tokenizer-config FILE | --template FILE) --messages FILE.json "
             "[--add-generation-prompt] [--tools FILE.json] [--kwargs JSON]",
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

/* tokenizer_config.json's chat_template: a string, or the "default" of a named list. */
static const char *config_template(const cJSON *cfg, const char *path) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(t)) return t->valuestring;
    const cJSON *e;
    if (cJSON_IsArray(t)) cJSON_ArrayForEach(e, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tt = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(name) && strcmp(name->valuestring, "default") == 0 &&
                cJSON_IsString(tt))
                return tt->valuestring;
        }
    cli_error(CMD,
              "%s has no chat_template (a string, or a list with a \"default\" entry); "
              "pass --template FILE",
              path);
    return NULL;
}

/* The special tokens of a tokenizer_config as template variables. */
static void add_special_tokens(cJSON *vars, const cJSON *cfg) {
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, keys[i]);
        if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(v)) cJSON_AddStringToObject(vars, keys[i], v->valuestring);
    }
}

static int run(const ct_args *a) {
    const int sources =
        (a->model != NULL) + (a->tokenizer_config != NULL) + (a->template_file != NULL);
    if (sources != 1) {
        cli_error(CMD, "give exactly one of --model, --tokenizer-config and --template");
        return CLI_EXIT_USAGE;
    }
    int rc = CLI_EXIT_FAIL;
    char *tmpl_file = NULL, *config_path = NULL, *jinja_path = NULL, *text = NULL;
    cJSON *cfg = NULL, *vars = cJSON_CreateObject(), *messages = NULL;
    const char *tmpl = NULL;
    size_t tmpl_len = 0;
    if (a->model) {
        size_t n = strlen(a->model) + 32;
        config_path = malloc(n), jinja_path = malloc(n);
        if (!config_path || !jinja_path) goto done;
        snprintf(config_path, n, "%s/tokenizer_config.json", a->model);
        snprintf(jinja_path, n, "%s/chat_template.jinja", a->model);
    } else if (a->tokenizer_config) {
        config_path = strdup(a->tokenizer_config);
        if (!config_path) goto done;
    }
    struct stat st;
    if (config_path && (a->tokenizer_config || stat(config_path, &st) == 0) &&
        !(cfg = parse_json_file(config_path)))
        goto done;
    if (a->template_file || (jinja_path && stat(jinja_path, &st) == 0)) {
        if (!(tmpl_file = slurp(a->template_file ? a->template_file : jinja_path, &tmpl_len)))
            goto done;
        tmpl = tmpl_file;
    } else if (!cfg) {
        cli_error(CMD, "%s has neither chat_template.jinja nor tokenizer_config.json", a->model);
        goto done;
    } else {
        if (!(tmpl = config_template(cfg, config_path))) goto done;
        tmpl_len = strlen(tmpl);
    }
    if (!(messages = parse_json_file(a->messages))) goto done;
    if (!cJSON_IsArray(messages)) {
        cli_error(CMD, "%s must hold a JSON list of messages", a->messages);
        goto done;
    }
    cJSON_AddItemToObject(vars, "messages", messages);
    messages = NULL;
    if (cfg) add_special_tokens(vars, cfg);
    cJSON_AddBoolToObject(vars, "add_generation_prompt", a->add_generation_prompt);
    cJSON *tools = cJSON_CreateNull();
    if (a->tools) {
        cJSON_Delete(tools);
        if (!(tools = parse_json_file(a->tools))) goto done;
        if (!cJSON_IsArray(tools)) {
            cJSON_Delete(tools);
            cli_error(CMD, "%s must hold a JSON list of tools", a->tools);
            goto done;
        }
    }
    cJSON_AddItemToObject(vars, "tools", tools);
    cJSON_AddNullToObject(vars, "documents");
    if (a->kwargs) {
        cJSON *kw = parse_json(a->kwargs, strlen(a->kwargs), "--kwargs");
        if (!kw) goto done;
        if (!cJSON_IsObject(kw)) {
            cJSON_Delete(kw);
            cli_error(CMD, "--kwargs must be a JSON object, e.g. {\"enable_thinking\": false}");
            goto done;
        }
        while (kw->child) {
            cJSON *item = cJSON_DetachItemViaPointer(kw, kw->child);
            cJSON_DeleteItemFromObjectCaseSensitive(vars, item->string); /* kwargs win */
            cJSON_AddItemToObject(vars, item->string, item);
        }
        cJSON_Delete(kw);
    }
    size_t len = 0;
    road_status s = road_chat_template_render(tmpl, tmpl_len, vars, &text, &len);
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
    cJSON_Delete(vars);
    cJSON_Delete(messages);
    cJSON_Delete(cfg);
    free(tmpl_file), free(config_path), free(jinja_path);
    return rc;
}

int cmd_chat_template(int argc, char **argv) {
    ct_args a;
    memset(&a, 0, sizeof a);
    int r = cli_parse(&spec, argc, argv, &a);
    return r != CLI_CONTINUE ? r : run(&a);
}
