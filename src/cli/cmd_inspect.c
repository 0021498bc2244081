/*
 * cli/cmd_inspect.c - `road inspect DIR`: describe an adapter folder (PEFT or road), or a
 * model checkpoint folder.
 *
 * Adapter: reads adapter_config.json and adapter_model.safetensors, groups the RoAd tensors by
 * module, and checks what can be checked without the base model: theta and alpha present in
 * pairs, equal sizes, a size the variant and group_size can produce. A folder holding several
 * adapters in sub-folders (PEFT's layout for non-default adapters) is described one by one.
 *
 * Model (config.json, no adapter_config.json): the config as road reads it, the weight files
 * (one model.safetensors, or the shards model.safetensors.index.json lists), and the linear
 * layers a RoAd adapter can target with their shapes. Only headers are read (files are
 * mapped, never loaded), so inspecting a large checkpoint is instant; every tensor road would
 * load is checked for presence and shape against config.json, as road_model_load would.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

#define CMD "inspect"
#define KEY_PREFIX "base_model.model."
/* An index is a small JSON file (a few hundred bytes per tensor); anything larger is not one. */
#define INDEX_MAX_BYTES (64L << 20)
/* Shards one index may name: checkpoints of the largest public models have a few hundred. */
#define MAX_SHARDS 4096

static int has_file(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return 0;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* "base_model.model.<module>.road_theta" -> module and which tensor; 0 if not a RoAd key. */
static int split_key(const char *key, char *module, size_t cap, int *is_theta) {
    const char *sfx[2] = {".road_theta", ".road_alpha"};
    size_t n = strlen(key), pl = strlen(KEY_PREFIX);
    for (int k = 0; k < 2; k++) {
        size_t sl = strlen(sfx[k]);
        if (n > sl && strcmp(key + n - sl, sfx[k]) == 0) {
            const char *start = strncmp(key, KEY_PREFIX, pl) == 0 ? key + pl : key;
            size_t len = (size_t)(key + n - sl - start);
            if (len + 1 > cap) len = cap - 1;
            memcpy(module, start, len);
            module[len] = '\0';
            *is_theta = k == 0;
            return 1;
        }
    }
    return 0;
}

static int inspect_one(const char *dir, const char *label) {
    road_config *cfg = NULL;
    road_status s = road_config_load(dir, &cfg);
    if (s != ROAD_OK) return cli_fail(CMD, "reading adapter_config.json", s);
    road_variant v = road_config_variant(cfg);
    int32_t gs = road_config_group_size(cfg);
    printf("adapter %s\n", label);
    printf("  folder            %s\n", dir);
    printf("  variant           %s\n", road_variant_name(v));
    printf("  group_size        %d\n", (int)gs);
    printf("  init_weights      %s\n", road_config_init_weights(cfg) ? "true" : "false");
    printf("  target_modules    ");
    switch (road_config_target_kind(cfg)) {
    case ROAD_TARGET_DEFAULT:
        printf("(model default)\n");
        break;
    case ROAD_TARGET_ALL_LINEAR:
        printf("all-linear\n");
        break;
    case ROAD_TARGET_REGEX:
        printf("regex %s\n", road_config_target(cfg, 0));
        break;
    case ROAD_TARGET_LIST:
        for (int32_t i = 0; i < road_config_target_count(cfg); i++)
            printf("%s%s", i ? ", " : "", road_config_target(cfg, i));
        printf("\n");
        break;
    }
    int32_t nm = road_config_modules_to_save_count(cfg);
    if (nm >= 0) {
        printf("  modules_to_save   ");
        for (int32_t i = 0; i < nm; i++)
            printf("%s%s", i ? ", " : "", road_config_module_to_save(cfg, i));
        printf("\n");
    }
    const char *tt = road_config_task_type(cfg), *bm = road_config_base_model(cfg);
    printf("  task_type         %s\n", tt ? tt : "null");
    printf("  base_model        %s\n", bm ? bm : "null");
    printf("  peft_version      %s\n",
           road_config_peft_version(cfg) ? road_config_peft_version(cfg) : "null");

    int rc = CLI_EXIT_OK;
    if (!has_file(dir, "adapter_model.safetensors")) {
        printf("  weights           none (no adapter_model.safetensors)\n");
        road_config_free(cfg);
        return rc;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    road_st_file *f = NULL;
    s = road_st_open(path, &f);
    if (s != ROAD_OK) {
        road_config_free(cfg);
        return cli_fail(CMD, "reading adapter_model.safetensors", s);
    }
    int64_t total = 0, n_layers = 0, n_other = 0;
    printf("  layers:\n");
    printf("    %-52s %9s %8s %10s %10s\n", "module", "params", "out", "max|theta|", "mean alpha");
    for (int64_t i = 0; i < road_st_count(f); i++) {
        const road_st_tensor *t = road_st_at(f, i);
        char module[512];
        int is_theta;
        if (!split_key(t->name, module, sizeof module, &is_theta)) {
            n_other++;
            total += t->numel;
            continue;
        }
        if (!is_theta) continue; /* described with its theta */
        char akey[600];
        snprintf(akey, sizeof akey, "%.*s.road_alpha",
                 (int)(strlen(t->name) - strlen(".road_theta")), t->name);
        const road_st_tensor *a = road_st_find(f, akey);
        if (!a) {
            fprintf(stderr, "road inspect: %s has road_theta but no road_alpha (%s)\n", module,
                    akey);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        if (a->numel != t->numel || t->ndim != 1 || a->ndim != 1) {
            fprintf(stderr,
                    "road inspect: %s: road_theta has %lld values, road_alpha %lld; both must be "
                    "1-D and equal\n",
                    module, (long long)t->numel, (long long)a->numel);
            rc = CLI_EXIT_FAIL;
            continue;
        }
        int64_t P = t->numel;
        int64_t out = v == ROAD_VARIANT_1 ? 2 * P : v == ROAD_VARIANT_2 ? P : P / 2;
        if (road_param_count(v, out) != P || road_check_shape(v, gs, out, module) != ROAD_OK) {
            fprintf(
                stderr,
                "road inspect: %s: %lld parameters cannot come from %s with group_size %d: %s\n",
                module, (long long)P, road_variant_name(v), (int)gs, road_last_error());
            rc = CLI_EXIT_FAIL;
            continue;
        }
        double mt = 0, ma = 0;
        if (t->dtype == ROAD_DTYPE_F32 && a->dtype == ROAD_DTYPE_F32) {
            const float *th = t->data, *al = a->data;
            for (int64_t k = 0; k < P; k++) {
                mt = fmax(mt, fabs(th[k]));
                ma += al[k];
            }
            ma /= (double)P;
            printf("    %-52s %9lld %8lld %10.4f %10.4f\n", module, (long long)(2 * P),
                   (long long)out, mt, ma);
        } else {
            printf("    %-52s %9lld %8lld %10s %10s\n", module, (long long)(2 * P), (long long)out,
                   road_dtype_name(t->dtype), "");
        }
        total += 2 * P;
        n_layers++;
    }
    printf("  RoAd layers       %lld\n", (long long)n_layers);
    if (n_other) printf("  other tensors     %lld (modules_to_save)\n", (long long)n_other);
    printf("  trainable params  %lld\n", (long long)total);
    road_st_close(f);
    road_config_free(cfg);
    return rc;
}

/* ---- model folders ------------------------------------------------------------------------ */

typedef struct model_files {
    char **names;     /* file names inside the folder */
    road_st_file **f; /* opened, same order */
    int32_t n;
    bool sharded;
} model_files;

static void model_files_free(model_files *mf) {
    for (int32_t i = 0; i < mf->n; i++) {
        road_st_close(mf->f[i]);
        free(mf->names[i]);
    }
    free(mf->names);
    free(mf->f);
}

static int add_model_file(model_files *mf, const char *dir, const char *name) {
    for (int32_t i = 0; i < mf->n; i++)
        if (strcmp(mf->names[i], name) == 0) return CLI_EXIT_OK;
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        cli_error(CMD,
                  "model.safetensors.index.json names the file '%s'; shard names must be "
                  "plain file names inside the model folder",
                  name);
        return CLI_EXIT_FAIL;
    }
    if (mf->n == MAX_SHARDS) {
        cli_error(CMD, "model.safetensors.index.json names more than %d files", MAX_SHARDS);
        return CLI_EXIT_FAIL;
    }
    char **nn = realloc(mf->names, sizeof(char *) * (size_t)(mf->n + 1));
    if (nn) mf->names = nn;
    road_st_file **nf = realloc(mf->f, sizeof(road_st_file *) * (size_t)(mf->n + 1));
    if (nf) mf->f = nf;
    char *copy = nn && nf ? malloc(strlen(name) + 1) : NULL;
    if (!copy) {
        cli_error(CMD, "out of memory");
        return CLI_EXIT_FAIL;
    }
    strcpy(copy, name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    road_st_file *f = NULL;
    road_status s = road_st_open(path, &f);
    if (s != ROAD_OK) {
        free(copy);
        return cli_fail(CMD, "reading the weights", s);
    }
    mf->names[mf->n] = copy;
    mf->f[mf->n++] = f;
    return CLI_EXIT_OK;
}

/* The weight files of a checkpoint folder: the shards its index lists, else model.safetensors. */
static int open_model_files(const char *dir, model_files *mf) {
    memset(mf, 0, sizeof *mf);
    if (!has_file(dir, "model.safetensors.index.json")) {
        if (!has_file(dir, "model.safetensors")) {
            cli_error(CMD,
                      "'%s' has config.json but neither model.safetensors nor "
                      "model.safetensors.index.json (road reads safetensors checkpoints)",
                      dir);
            return CLI_EXIT_FAIL;
        }
        return add_model_file(mf, dir, "model.safetensors");
    }
    mf->sharded = true;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopen(path, "rb");
    char *text = NULL;
    long len = -1;
    if (fp && fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 && len <= INDEX_MAX_BYTES &&
        fseek(fp, 0, SEEK_SET) == 0 && (text = malloc((size_t)len + 1)) != NULL &&
        fread(text, 1, (size_t)len, fp) != (size_t)len) {
        free(text);
        text = NULL;
    }
    if (fp) fclose(fp);
    if (!text) {
        cli_error(CMD, "cannot read '%s'%s", path, len > INDEX_MAX_BYTES ? " (too large)" : "");
        return CLI_EXIT_FAIL;
    }
    cJSON *root = NULL;
    road_status js = road_json_parse(text, (size_t)len, &root);
    free(text);
    if (js != ROAD_OK) {
        cli_error(CMD, "'%s': %s", path, road_last_error());
        return CLI_EXIT_FAIL;
    }
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map"), *e;
    int rc = CLI_EXIT_OK;
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map)) {
        cli_error(CMD,
                  "'%s' is not a shard index (a JSON object with a \"weight_map\" object "
                  "mapping tensor names to file names)",
                  path);
        rc = CLI_EXIT_FAIL;
    }
    const cJSON *walk = rc == CLI_EXIT_OK ? map : NULL;
    cJSON_ArrayForEach(e, walk) {
        if (!cJSON_IsString(e)) {
            cli_error(CMD, "'%s': weight_map[\"%s\"] is not a file name", path, e->string);
            rc = CLI_EXIT_FAIL;
        }
        if (rc == CLI_EXIT_OK) rc = add_model_file(mf, dir, e->valuestring);
        if (rc != CLI_EXIT_OK) break;
    }
    if (rc == CLI_EXIT_OK && mf->n == 0) {
        cli_error(CMD, "'%s': weight_map is empty", path);
        rc = CLI_EXIT_FAIL;
    }
    cJSON_Delete(root);
    /* list shards by name (the index's order is the tensors'), insertion sort: a few files */
    for (int32_t i = 1; i < mf->n; i++)
        for (int32_t j = i; j > 0 && strcmp(mf->names[j - 1], mf->names[j]) > 0; j--) {
            char *tn = mf->names[j];
            road_st_file *tf = mf->f[j];
            mf->names[j] = mf->names[j - 1];
            mf->f[j] = mf->f[j - 1];
            mf->names[j - 1] = tn;
            mf->f[j - 1] = tf;
        }
    return rc;
}

static const road_st_tensor *model_tensor(const model_files *mf, const char *name) {
    for (int32_t i = 0; i < mf->n; i++) {
        const road_st_tensor *t = road_st_find(mf->f[i], name);
        if (t) return t;
    }
    return NULL;
}

static void shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Quantized linear weights seen by check_tensor (one inspect per process). */
static int g_quantized;

/* The tensor road_model_load would read as `name` must be there with this shape (d1 0: 1-D)
 * and a dtype road reads; prints what is wrong and counts it. */
static void check_tensor(const model_files *mf, const char *name, int64_t d0, int64_t d1,
                         int *problems) {
    const road_st_tensor *t = model_tensor(mf, name);
    const int64_t want[2] = {d0, d1};
    const int32_t nd = d1 > 0 ? 2 : 1;
    char ws[64], gs[128];
    shape_str(ws, sizeof ws, nd, want);
    if (!t) {
        fprintf(stderr, "road inspect: the checkpoint has no tensor '%s' %s\n", name, ws);
        ++*problems;
        return;
    }
    bool same = t->ndim == nd && t->shape[0] == d0 && (nd == 1 || t->shape[1] == d1);
    /* a quantized linear weight (docs/quant.md): int8 [out, in], or 4-bit codes packed two
     * per byte (bitsandbytes stores them as [ceil(n/2), 1]) */
    if (nd == 2 && ((t->dtype == ROAD_DTYPE_I8 && same) ||
                    (t->dtype == ROAD_DTYPE_U8 && t->numel == (d0 * d1 + 1) / 2))) {
        g_quantized++;
        return;
    }
    if (!same) {
        shape_str(gs, sizeof gs, t->ndim, t->shape);
        fprintf(stderr, "road inspect: tensor '%s' is %s, config.json implies %s\n", name, gs, ws);
        ++*problems;
    } else if (t->dtype != ROAD_DTYPE_F32 && t->dtype != ROAD_DTYPE_BF16 &&
               t->dtype != ROAD_DTYPE_F16) {
        fprintf(stderr, "road inspect: tensor '%s' is %s; road reads F32, BF16 and F16 weights\n",
                name, road_dtype_name(t->dtype));
        ++*problems;
    }
}

/* A tensor name without its "model.layers.<l>." prefix. */
static const char *in_block(const char *name) {
    const char *p = strncmp(name, "model.layers.", 13) == 0 ? strchr(name + 13, '.') : NULL;
    return p ? p + 1 : name;
}

/* The family's structure, in words. */
static void describe_family(const road_llm_config *c) {
    static const char *const place[] = {"before attention and MLP (pre-norm)",
                                        "before and after attention and MLP (sandwich)",
                                        "after attention and MLP (post-norm)"};
    printf("  norms             RMSNorm %s, %s\n", c->norm_plus_one ? "x (1 + w)" : "x w",
           place[c->norm_place]);
    if (c->qk_norm != ROAD_QK_NORM_NONE)
        printf("  q/k norms         %s\n", c->qk_norm == ROAD_QK_NORM_HEAD
                                               ? "per head (head_dim)"
                                               : "over the whole projection");
    printf("  mlp               %s(gate) * up%s\n",
           c->hidden_act == ROAD_ACT_SILU ? "silu" : "gelu_tanh",
           c->fused_proj ? " (fused gate_up_proj; attention's qkv_proj fused too)" : "");
    printf("  attention         scale %.9g", c->attn_scale);
    if (c->attn_softcap > 0) printf(", logits capped at %g", c->attn_softcap);
    printf("\n");
    if (c->final_softcap > 0) printf("  output logits     capped at %g\n", c->final_softcap);
    if (c->embed_scale) printf("  embeddings        times sqrt(hidden_size)\n");
    if (c->rotary_dim != c->head_dim)
        printf("  rotary dims       %lld of %lld per head\n", (long long)c->rotary_dim,
               (long long)c->head_dim);
    if (c->rope_local_theta > 0)
        printf("  local rope        theta %.10g on sliding layers (unscaled)\n",
               c->rope_local_theta);
    if (c->sliding_window > 0 && !c->sliding_all) {
        printf("  sliding layers   ");
        int64_t shown = 0;
        for (int64_t l = 0; l < c->n_layers; l++)
            if (road_llm_config_layer_slides(c, l) && shown++ < 16) printf(" %lld", (long long)l);
        printf("%s (of %lld)\n",
               shown > 16 ? " ..."
               : shown    ? ""
                          : " none",
               (long long)c->n_layers);
    }
}

static int inspect_model(const char *dir) {
    road_llm_config c;
    road_status s = road_llm_config_load(dir, &c);
    if (s != ROAD_OK) return cli_fail(CMD, "reading config.json", s);
    model_files mf;
    int rc = open_model_files(dir, &mf);
    if (rc != CLI_EXIT_OK) {
        model_files_free(&mf);
        return rc;
    }
    const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, L = c.n_layers;

    printf("model %s\n", c.model_type);
    printf("  folder            %s\n", dir);
    printf("  model_type        %s\n", c.model_type);
    printf("  layers            %lld\n", (long long)L);
    printf("  hidden_size       %lld\n", (long long)H);
    printf("  intermediate_size %lld\n", (long long)I);
    printf("  heads             %lld (key/value heads %lld, head_dim %lld)\n", (long long)c.n_heads,
           (long long)c.n_kv_heads, (long long)c.head_dim);
    printf("  vocab_size        %lld\n", (long long)V);
    printf("  context           %lld (max_position_embeddings)\n",
           (long long)c.max_position_embeddings);
    printf("  rope              theta %.10g, scaling ", c.rope_theta);
    switch (c.rope_type) {
    case ROAD_ROPE_DEFAULT:
        printf("none\n");
        break;
    case ROAD_ROPE_LINEAR:
        printf("linear (factor %g)\n", c.rope_factor);
        break;
    case ROAD_ROPE_LLAMA3:
        printf("llama3 (factor %g, low_freq_factor %g, high_freq_factor %g, "
               "original_max_position_embeddings %lld)\n",
               c.rope_factor, c.rope_low_freq_factor, c.rope_high_freq_factor,
               (long long)c.rope_original_max_pos);
        break;
    case ROAD_ROPE_DYNAMIC:
        printf("dynamic NTK (factor %g; a sequence longer than %lld tokens gets a larger base)\n",
               c.rope_factor, (long long)c.max_position_embeddings);
        break;
    case ROAD_ROPE_YARN:
        printf("yarn (factor %g, original_max_position_embeddings %lld, beta_fast %g, "
               "beta_slow %g%s, attention factor %.6g)\n",
               c.rope_factor, (long long)c.rope_original_max_pos, c.rope_beta_fast,
               c.rope_beta_slow, c.rope_truncate ? "" : ", not truncated", c.rope_attn_factor);
        break;
    case ROAD_ROPE_LONGROPE:
        printf("longrope (short_factor up to %lld tokens, long_factor beyond; attention factor "
               "%.6g)\n",
               (long long)c.rope_original_max_pos, c.rope_attn_factor);
        break;
    }
    if (c.sliding_window > 0) printf("  sliding_window    %lld\n", (long long)c.sliding_window);
    printf("  rms_norm_eps      %g\n", c.rms_norm_eps);
    describe_family(&c);
    printf("  tied embeddings   %s\n",
           c.tie_word_embeddings ? "yes (lm_head is embed_tokens)" : "no");
    char biases[64];
    snprintf(biases, sizeof biases, "%s%s%s%s%s", c.qkv_bias ? "q/k/v" : "",
             c.qkv_bias && c.o_bias ? ", " : "", c.o_bias ? "o" : "",
             (c.qkv_bias || c.o_bias) && c.mlp_bias ? ", " : "", c.mlp_bias ? "gate/up/down" : "");
    printf("  biases            %s\n", biases[0] ? biases : "none");
    printf("  bos / eos ids     %d /", (int)c.bos_token_id);
    for (int32_t i = 0; i < c.n_eos; i++) printf(" %d", (int)c.eos_token_ids[i]);
    printf("%s\n", c.n_eos ? "" : " none");

    /* files: sizes on disk, tensors, parameters, stored dtypes */
    int64_t n_tensors = 0, params = 0, disk = 0, by_dtype[ROAD_DTYPE_COUNT_] = {0};
    if (mf.sharded)
        printf("  files             %d shards (model.safetensors.index.json)\n", (int)mf.n);
    else
        printf("  files             model.safetensors\n");
    for (int32_t i = 0; i < mf.n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, mf.names[i]);
        int64_t size = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
        disk += size;
        if (mf.sharded) printf("    %-40s %lld bytes\n", mf.names[i], (long long)size);
        for (int64_t k = 0; k < road_st_count(mf.f[i]); k++) {
            const road_st_tensor *t = road_st_at(mf.f[i], k);
            n_tensors++;
            params += t->numel;
            by_dtype[t->dtype]++;
        }
    }
    printf("  dtype             %s (config torch_dtype); stored", road_dtype_name(c.torch_dtype));
    for (int d = 0; d < ROAD_DTYPE_COUNT_; d++)
        if (by_dtype[d])
            printf(" %s x %lld", road_dtype_name((road_dtype)d), (long long)by_dtype[d]);
    printf("\n");
    printf("  tensors           %lld\n", (long long)n_tensors);
    printf("  parameters        %lld\n", (long long)params);
    printf("  bytes on disk     %lld\n", (long long)disk);

    /* what a RoAd adapter can target: PEFT names, [out_features, in_features] */
    printf("  linear layers RoAd can target ([out, in]; each of the %lld layers, PEFT names):\n",
           (long long)L);
    const int64_t n_t = road_llm_config_tensor_count(&c);
    for (int64_t i = 0; i < n_t; i++) {
        road_llm_tensor t;
        if (road_llm_config_tensor(&c, i, &t) != ROAD_OK) break;
        if (t.role != ROAD_TENSOR_LINEAR || t.layer != 0) continue;
        road_llm_tensor b;
        const bool bias = i + 1 < n_t && road_llm_config_tensor(&c, i + 1, &b) == ROAD_OK &&
                          b.role == ROAD_TENSOR_BIAS;
        char short_name[sizeof t.name]; /* "self_attn.q_proj.weight" -> "q_proj" */
        snprintf(short_name, sizeof short_name, "%s", in_block(t.name));
        char *dot = strrchr(short_name, '.');
        if (dot) *dot = '\0';
        const char *leaf = strrchr(short_name, '.');
        printf("    %-18s [%lld, %lld]%s\n", leaf ? leaf + 1 : short_name, (long long)t.shape[0],
               (long long)t.shape[1], bias ? " + bias" : "");
    }
    printf("    %-18s [%lld, %lld]%s\n", "lm_head", (long long)V, (long long)H,
           c.tie_word_embeddings ? " (tied to model.embed_tokens)" : "");

    /* every tensor road_model_load reads, against config.json */
    int problems = 0;
    for (int64_t i = 0; i < n_t; i++) {
        road_llm_tensor t;
        if (road_llm_config_tensor(&c, i, &t) != ROAD_OK) break;
        check_tensor(&mf, t.name, t.shape[0], t.ndim == 2 ? t.shape[1] : 0, &problems);
    }
    if (problems) {
        fprintf(stderr,
                "road inspect: %d tensor(s) do not match config.json; road cannot load "
                "this checkpoint\n",
                problems);
        rc = CLI_EXIT_FAIL;
    } else {
        printf("  check             every tensor road loads is present with its shape\n");
        if (g_quantized)
            printf(
                "  quantized         %d linear layers (bitsandbytes int8 / 4-bit; docs/quant.md)\n",
                g_quantized);
    }
    model_files_free(&mf);
    return rc;
}

typedef struct inspect_opts {
    const char *dir;
    uint64_t given;
} inspect_opts;

static const cli_spec spec = {
    .name = CMD,
    .usage = "DIR",
    .about = "Describe the adapter in DIR (adapter_config.json + adapter_model.safetensors,\n"
             "as PEFT's save_pretrained writes them), or every adapter in DIR's sub-folders.\n"
             "A model folder (config.json + model.safetensors or shards with\n"
             "model.safetensors.index.json) is described instead: sizes, RoPE, dtype, files,\n"
             "parameters, and the linear layers RoAd can target; every tensor road loads is\n"
             "checked against config.json.\n",
    .given = offsetof(inspect_opts, given),
    .positional = "folder",
    .positional_offset = offsetof(inspect_opts, dir),
};

int cmd_inspect(int argc, char **argv) {
    inspect_opts o = {0};
    const int parsed = cli_parse(&spec, argc, argv, &o);
    if (parsed != CLI_CONTINUE) return parsed;
    const char *dir = o.dir;
    if (!dir) {
        cli_error(CMD, "missing the adapter folder: road inspect DIR");
        return CLI_EXIT_USAGE;
    }
    if (has_file(dir, "adapter_config.json")) return inspect_one(dir, "(default)");
    if (has_file(dir, "config.json")) return inspect_model(dir);
    /* PEFT's layout for several adapters: one sub-folder per adapter name. */
    DIR *d = opendir(dir);
    if (!d) {
        cli_error(CMD, "cannot open folder '%s'", dir);
        return CLI_EXIT_FAIL;
    }
    int found = 0, rc = CLI_EXIT_OK;
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if (!has_file(sub, "adapter_config.json")) continue;
        if (found++) printf("\n");
        int r = inspect_one(sub, e->d_name);
        if (r != CLI_EXIT_OK) rc = r;
    }
    closedir(d);
    if (!found) {
        cli_error(CMD,
                  "'%s' has no adapter_config.json (nor sub-folders with one) and no "
                  "config.json; is it an adapter or a model folder?",
                  dir);
        return CLI_EXIT_FAIL;
    }
    return rc;
}
