/*
 * cli/cli_model.c - what the model commands share: loading a model, attaching --adapter
 * NAME=DIR folders, --use NAME[,NAME...], and parsing id and name lists.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"

int cli_split(const char *s, char sep, char ***out, int32_t *n) {
    int32_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == sep;
    char **v = calloc((size_t)cap, sizeof(char *));
    if (!v) return -1;
    int32_t k = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, sep);
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!(v[k] = malloc(len + 1))) {
            cli_free_list(v, k);
            return -1;
        }
        memcpy(v[k], p, len);
        v[k++][len] = '\0';
        if (!e) break;
        p = e + 1;
    }
    *out = v;
    *n = k;
    return 0;
}

void cli_free_list(char **v, int32_t n) {
    if (!v) return;
    for (int32_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int cli_parse_ids(const char *cmd, const char *flag, const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 16, k = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            cli_error(cmd,
                      "%s: '%.20s' is not a token id (ids are non-negative integers separated "
                      "by spaces or commas)",
                      flag, p);
            free(v);
            return -1;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, sizeof(int32_t) * (size_t)cap);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (k == 0) {
        cli_error(cmd, "%s: no token ids given", flag);
        free(v);
        return -1;
    }
    *ids = v;
    *n = k;
    return 0;
}

int cli_attach_adapters(const char *cmd, road_model *m, const cli_list *specs, const char *use) {
    road_adapter_set *set = road_model_adapters(m);
    for (int i = 0; i < specs->n; i++) {
        const char *spec = specs->v[i], *eq = strchr(spec, '=');
        if (!eq || eq == spec || !eq[1]) {
            cli_error(
                cmd,
                "--adapter takes NAME=DIR (for example --adapter math=adapters/math), got '%s'",
                spec);
            return CLI_EXIT_USAGE;
        }
        char *name = malloc((size_t)(eq - spec) + 1); /* argv stays as typed */
        if (!name) return CLI_EXIT_FAIL;
        memcpy(name, spec, (size_t)(eq - spec));
        name[eq - spec] = '\0';
        road_status s = road_adapter_set_load(set, name, eq + 1);
        free(name);
        if (s != ROAD_OK) return cli_fail(cmd, "loading an adapter", s);
    }
    if (use) {
        char **names;
        int32_t n;
        if (cli_split(use, ',', &names, &n) != 0) return CLI_EXIT_FAIL;
        road_status s = road_adapter_set_set_active(set, (const char *const *)names, n);
        cli_free_list(names, n);
        if (s != ROAD_OK) return cli_fail(cmd, "--use", s);
    } else {
        /* No --use: the base model alone (an attached adapter is only used when asked for). */
        road_status s = road_adapter_set_set_active(set, NULL, 0);
        if (s != ROAD_OK) return cli_fail(cmd, "--use", s);
    }
    return CLI_EXIT_OK;
}

int cli_quant_apply(const char *cmd, const cli_quant *q, road_model_params *mp) {
    if (q->format && road_qformat_parse(q->format, &mp->quantize) != ROAD_OK) {
        cli_error(cmd, "--quantize: %s", road_last_error());
        return -1;
    }
    if ((q->lm_head || q->double_quant) && mp->quantize == ROAD_QFORMAT_NONE) {
        cli_error(cmd, "--quantize-lm-head and --double-quant need --quantize int8|nf4|fp4");
        return -1;
    }
    if (q->int8_activations && strcmp(cmd, "train") == 0) {
        cli_error(cmd, "--int8-activations is for generate, eval and serve: training computes "
                       "exact products (drop the flag)");
        return -1;
    }
    mp->quantize_lm_head = q->lm_head;
    mp->double_quant = q->double_quant;
    mp->int8_activations = q->int8_activations;
    return 0;
}

int cli_threads(int64_t n) {
    if (n > 0) road_set_num_threads((int)n);
    return (int)n;
}

/* The most a command reads of one input file (a text, a chat, a template). */
#define CLI_MAX_FILE_BYTES ((size_t)1 << 30)

int cli_read_file(const char *cmd, const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error(cmd, "cannot open %s", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) break;
        if (cap >= CLI_MAX_FILE_BYTES) {
            cli_error(cmd, "%s is larger than 1 GiB", path);
            free(buf);
            buf = NULL;
            break;
        }
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) free(buf);
        buf = nb, cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        if (buf) free(buf);
        if (err) cli_error(cmd, "cannot read %s", path);
        return -1;
    }
    buf[n] = '\0';
    *out = buf, *len = n;
    return 0;
}

int cli_chat_setup(const char *cmd, const cli_chat *c, road_tokenizer *tok, cJSON **kwargs) {
    *kwargs = NULL;
    road_status s;
    if (c->template_spec &&
        (s = road_tokenizer_set_chat_template(tok, c->template_spec)) != ROAD_OK)
        return cli_fail(cmd, "--chat-template", s);
    if (!c->kwargs) return CLI_EXIT_OK;
    if ((s = road_json_parse(c->kwargs, strlen(c->kwargs), kwargs)) != ROAD_OK) {
        cli_error(cmd, "--chat-kwargs: %s", road_last_error());
        return CLI_EXIT_USAGE;
    }
    if (!cJSON_IsObject(*kwargs)) {
        cJSON_Delete(*kwargs);
        *kwargs = NULL;
        cli_error(cmd, "--chat-kwargs must be a JSON object, e.g. '{\"enable_thinking\": false}'");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}
