/*
 * tokenizer/load.c - reading tokenizer.json: the BPE model (vocabulary, merges, flags, into
 * the pool and tables of text_util.c), then the pipeline parts the other files of tokenizer/
 * load, and the public accessors.
 *
 * Every value read from the file is checked before use: a corrupt file gives a message naming
 * the field (model.merges[12], added_tokens[3].id, ...), never a crash or a wrong tokenizer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "tokenizer/tokenizer_internal.h"

/* tokenizer.json files are ~2-12 MB; refuse anything absurd before reading it. */
#define TOK_MAX_FILE_BYTES ((size_t)512 << 20)
#define TOK_MAX_CONFIG_BYTES ((size_t)64 << 20)

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- model ---------------------------------------------------------------------------------- */

static road_status scan_max_id(const cJSON *vocab, const cJSON *added, int32_t *max_id) {
    int32_t mx = -1;
    int64_t i = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || !road__json_is_int(e) || e->valuedouble < 0 ||
            e->valuedouble >= TOK_MAX_ID) {
            char q[64], d[64];
            road__json_quote(e->string ? e->string : "", q, sizeof q);
            road__json_describe(e, d, sizeof d);
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer.json: model.vocab[%s] must be an id from 0 to %d, got %s",
                               q, TOK_MAX_ID - 1, d);
        }
        if ((int32_t)e->valuedouble > mx) mx = (int32_t)e->valuedouble;
    }
    i = 0;
    if (added) {
        for (const cJSON *e = added->child; e; e = e->next, i++) {
            int32_t id = 0;
            road_status s = cJSON_IsObject(e) ? road__json_get_int(e, "id", &id) : ROAD_ERR_FORMAT;
            if (s != ROAD_OK || id < 0 || id >= TOK_MAX_ID) {
                char why[160];
                snprintf(why, sizeof why, "%s", s != ROAD_OK ? road_last_error() : "");
                return road__error(ROAD_ERR_FORMAT,
                                   "tokenizer.json: added_tokens[%lld] needs an \"id\" from 0 to "
                                   "%d%s%s",
                                   (long long)i, TOK_MAX_ID - 1, why[0] ? ": " : "", why);
            }
            if (id > mx) mx = id;
        }
    }
    *max_id = mx;
    return ROAD_OK;
}

static road_status load_vocab(road_tokenizer *t, const cJSON *vocab) {
    int64_t n_vocab = cJSON_GetArraySize(vocab);
    t->piece_hash_mask = pow2_at_least((size_t)n_vocab * 2 + 1) - 1;
    t->piece_hash = road__calloc((size_t)t->piece_hash_mask + 1, sizeof *t->piece_hash);
    if (!t->piece_hash) return ROAD_ERR_NO_MEMORY;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = (int32_t)e->valuedouble;
        char q[64]; /* quoted only for a message: 250K snprintf calls cost 40 ms */
        if (t->flags[id] & TOK_F_PRESENT) {
            char q2[64];
            road__json_quote(e->string, q, sizeof q);
            road__json_quote(t->pool + t->piece[id].off, q2, sizeof q2);
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer.json: model.vocab gives id %d to both %s and %s", id, q2,
                               q);
        }
        road_status s = road__tok_pool_add(t, e->string, strlen(e->string), &t->piece[id]);
        if (s != ROAD_OK) return s;
        t->flags[id] = TOK_F_PRESENT;
        if (!road__tok_piece_insert(t, id)) {
            road__json_quote(e->string, q, sizeof q);
            return road__error(ROAD_ERR_FORMAT, "tokenizer.json: model.vocab lists %s twice", q);
        }
    }
    return ROAD_OK;
}

/* One merges entry: "a b" (older files) or ["a", "b"] (newer). */
static road_status merge_parts(const cJSON *e, int64_t i, const char **a, size_t *alen,
                               const char **b, size_t *blen) {
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring, *sp = strchr(s, ' ');
        if (sp && !strchr(sp + 1, ' ') && sp != s && sp[1]) {
            *a = s, *alen = (size_t)(sp - s), *b = sp + 1, *blen = strlen(sp + 1);
            return ROAD_OK;
        }
    } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
               cJSON_IsString(e->child->next)) {
        *a = e->child->valuestring, *alen = strlen(*a);
        *b = e->child->next->valuestring, *blen = strlen(*b);
        return ROAD_OK;
    }
    char d[64];
    road__json_describe(e, d, sizeof d);
    return road__error(ROAD_ERR_FORMAT,
                       "tokenizer.json: model.merges[%lld] must be \"left right\" (one space) or "
                       "[\"left\", \"right\"], got %s",
                       (long long)i, d);
}

static road_status load_merges(road_tokenizer *t, const cJSON *merges) {
    int64_t n = cJSON_GetArraySize(merges);
    if (n >= INT32_MAX / 4) return road__error(ROAD_ERR_FORMAT, "tokenizer.json: too many merges");
    t->merge_mask = pow2_at_least((size_t)n * 2 + 1) - 1;
    size_t cap = (size_t)t->merge_mask + 1;
    t->merge_key = road__calloc(cap, sizeof *t->merge_key);
    t->merge_rank = road__malloc(cap * sizeof *t->merge_rank);
    t->merge_new = road__malloc(cap * sizeof *t->merge_new);
    if (!t->merge_key || !t->merge_rank || !t->merge_new) return ROAD_ERR_NO_MEMORY;
    tok_buf cat = {0};
    road_status s = ROAD_OK;
    int64_t i = 0;
    for (const cJSON *e = merges->child; e && s == ROAD_OK; e = e->next, i++) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        s = merge_parts(e, i, &a, &al, &b, &bl);
        if (s != ROAD_OK) break;
        int32_t ia = road__tok_lookup(t, a, al), ib = road__tok_lookup(t, b, bl);
        cat.len = 0;
        if ((s = road__tok_buf_put(&cat, a, al)) != ROAD_OK ||
            (s = road__tok_buf_put(&cat, b, bl)) != ROAD_OK)
            break;
        int32_t in = road__tok_lookup(t, cat.p, cat.len);
        if (ia < 0 || ib < 0 || in < 0) {
            char q[64];
            const char *which = ia < 0 ? a : ib < 0 ? b : cat.p;
            size_t wl = ia < 0 ? al : ib < 0 ? bl : cat.len;
            char tmp[48];
            size_t k = wl < sizeof tmp - 1 ? wl : sizeof tmp - 1;
            memcpy(tmp, which, k);
            tmp[k] = '\0';
            road__json_quote(tmp, q, sizeof q);
            s = road__error(ROAD_ERR_FORMAT,
                            "tokenizer.json: model.merges[%lld]: %s%s is not in model.vocab",
                            (long long)i, q, (ia >= 0 && ib >= 0) ? " (the merged token)" : "");
            break;
        }
        road__tok_merge_insert(t, ia, ib, (uint32_t)i, in);
    }
    road__free(cat.p);
    return s;
}

static road_status get_bool_opt(const cJSON *o, const char *key, bool dflt, bool *out) {
    const cJSON *v = road__json_get(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return ROAD_OK;
    }
    road_status s = road__json_get_bool(o, key, out);
    if (s != ROAD_OK) road__error_prefix("tokenizer.json: model");
    return s;
}

static road_status load_model(road_tokenizer *t, const cJSON *root) {
    const cJSON *m = road__json_get(root, "model");
    if (!m || !cJSON_IsObject(m))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json has no \"model\" object; is this a "
                                            "Hugging Face tokenizer.json?");
    const char *type = NULL;
    if (road__json_get(m, "type")) {
        road_status s = road__json_get_string(m, "type", false, &type);
        if (s != ROAD_OK) {
            road__error_prefix("tokenizer.json: model");
            return s;
        }
    }
    const cJSON *vocab = road__json_get(m, "vocab"), *merges = road__json_get(m, "merges");
    if (!type && vocab && merges) type = "BPE"; /* old files omit the type of BPE models */
    if (!type) return road__error(ROAD_ERR_FORMAT, "tokenizer.json: model.type is missing");
    if (strcmp(type, "BPE") != 0) {
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "tokenizer.json: model type \"%.40s\" is not supported; road reads BPE "
                           "models (Llama-2/3, Mistral, Qwen), not Unigram, WordPiece or "
                           "WordLevel",
                           type);
    }
    if (!vocab || !cJSON_IsObject(vocab))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: model.vocab must be an object");
    if (!merges || !cJSON_IsArray(merges))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: model.merges must be a list");
    const cJSON *dropout = road__json_get(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return road__error(ROAD_ERR_UNSUPPORTED, "tokenizer.json: model.dropout (BPE dropout) is "
                                                 "a training feature; road needs it null");
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const char *v = NULL;
        if (road__json_get(m, keys[k]) && road__json_get_string(m, keys[k], true, &v) != ROAD_OK) {
            road__error_prefix("tokenizer.json: model");
            return ROAD_ERR_FORMAT;
        }
        if (v && v[0])
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "tokenizer.json: model.%s \"%.20s\" is not "
                               "supported (Llama-family files leave it empty)",
                               keys[k], v);
    }
    road_status s;
    if ((s = get_bool_opt(m, "byte_fallback", false, &t->byte_fallback)) != ROAD_OK ||
        (s = get_bool_opt(m, "ignore_merges", false, &t->ignore_merges)) != ROAD_OK ||
        (s = get_bool_opt(m, "fuse_unk", false, &t->fuse_unk)) != ROAD_OK)
        return s;

    const cJSON *added = road__json_get(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json: added_tokens must be a list");
    if (added && cJSON_IsNull(added)) added = NULL;
    int32_t max_id = -1;
    if ((s = scan_max_id(vocab, added, &max_id)) != ROAD_OK) return s;
    if (max_id < 0) return road__error(ROAD_ERR_FORMAT, "tokenizer.json: model.vocab is empty");
    t->n_ids = max_id + 1;
    t->piece = road__calloc((size_t)t->n_ids, sizeof *t->piece);
    t->bytes = road__calloc((size_t)t->n_ids, sizeof *t->bytes);
    t->flags = road__calloc((size_t)t->n_ids, 1);
    if (!t->piece || !t->bytes || !t->flags) return ROAD_ERR_NO_MEMORY;
    if ((s = load_vocab(t, vocab)) != ROAD_OK) return s;
    if ((s = load_merges(t, merges)) != ROAD_OK) return s;

    t->unk_id = -1;
    const char *unk = NULL;
    if (road__json_get(m, "unk_token") &&
        road__json_get_string(m, "unk_token", true, &unk) != ROAD_OK) {
        road__error_prefix("tokenizer.json: model");
        return ROAD_ERR_FORMAT;
    }
    if (unk) {
        t->unk_id = road__tok_lookup(t, unk, strlen(unk));
        if (t->unk_id < 0) {
            char q[64];
            road__json_quote(unk, q, sizeof q);
            return road__error(ROAD_ERR_FORMAT,
                               "tokenizer.json: model.unk_token %s is not in "
                               "model.vocab",
                               q);
        }
    }
    return road__tok_load_added(t, added);
}

/* The ids each byte starts from: the byte's GPT-2 character (byte-level models) or its <0xNN>
 * token (byte fallback). */
static void fill_byte_ids(road_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[8];
        size_t n;
        if (t->byte_level) {
            n = (size_t)road__tok_utf8_encode(road__tok_byte_to_cp((uint8_t)b), s);
        } else {
            n = (size_t)snprintf(s, sizeof s, "<0x%02X>", b);
        }
        t->byte_id[b] = (t->byte_level || t->byte_fallback) ? road__tok_lookup(t, s, n) : -1;
    }
}

static road_status load_all(road_tokenizer *t, const char *json, size_t len, const char *cfg,
                            size_t cfg_len, const char *jinja, size_t jinja_len) {
    cJSON *root = NULL;
    road_status s = road_json_parse(json, len, &root);
    if (s != ROAD_OK) {
        road__error_prefix("tokenizer.json");
        return s;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return road__error(ROAD_ERR_FORMAT, "tokenizer.json must hold a JSON object");
    }
    const cJSON *trunc = road__json_get(root, "truncation"), *pad = road__json_get(root, "padding");
    if ((trunc && !cJSON_IsNull(trunc)) || (pad && !cJSON_IsNull(pad))) {
        /* road encodes one text at a time and never cuts it; say so instead of ignoring it. */
        road__log(ROAD_LOG_WARN, "tokenizer.json: truncation/padding settings are ignored");
    }
    if ((s = load_model(t, root)) == ROAD_OK &&
        (s = road__tok_load_normalizer(t, road__json_get(root, "normalizer"))) == ROAD_OK &&
        (s = road__tok_load_pre_tokenizer(t, road__json_get(root, "pre_tokenizer"))) == ROAD_OK &&
        (s = road__tok_load_post(t, road__json_get(root, "post_processor"))) == ROAD_OK &&
        (s = road__tok_load_decoder(t, road__json_get(root, "decoder"))) == ROAD_OK) {
        fill_byte_ids(t);
        s = road__tok_load_config(t, cfg, cfg_len, jinja, jinja_len);
    }
    cJSON_Delete(root);
    return s;
}

static road_status load_texts(const char *tokenizer_json, size_t len, const char *config_json,
                              size_t config_len, const char *jinja, size_t jinja_len,
                              road_tokenizer **out) {
    if (!out) return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_load_json: out is NULL");
    *out = NULL;
    if (!tokenizer_json)
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_load_json: text is NULL");
    road_tokenizer *t = road__calloc(1, sizeof *t);
    if (!t) return ROAD_ERR_NO_MEMORY;
    t->bos_id = t->eos_id = t->pad_id = t->unk_id = -1;
    road_status s = load_all(t, tokenizer_json, len, config_json, config_len, jinja, jinja_len);
    if (s != ROAD_OK) {
        road_tokenizer_free(t);
        return s;
    }
    *out = t;
    return ROAD_OK;
}

road_status road_tokenizer_load_json(const char *tokenizer_json, size_t len,
                                     const char *config_json, size_t config_len,
                                     road_tokenizer **out) {
    return load_texts(tokenizer_json, len, config_json, config_len, NULL, 0, out);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* additional_chat_templates/NAME.jinja: the named templates transformers saves beside
 * chat_template.jinja (a missing folder is fine; one that cannot be read is an error). */
static road_status additional_templates(road_tokenizer *t, const char *dir) {
    char *sub = road__path_join(dir, "additional_chat_templates");
    if (!sub) return ROAD_ERR_NO_MEMORY;
    DIR *d = opendir(sub);
    road_status s = ROAD_OK;
    if (!d) {
        if (errno != ENOENT && errno != ENOTDIR)
            s = road__error(ROAD_ERR_IO, "%s: %s", sub, strerror(errno));
        road__free(sub);
        return s;
    }
    /* in name order, so a load does not depend on the folder's order */
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; s == ROAD_OK && (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l <= 6 || strcmp(e->d_name + l - 6, ".jinja") != 0 || e->d_name[0] == '.') continue;
        if (n == cap) {
            char **nn = road__realloc(names, (cap = cap ? 2 * cap : 8) * sizeof *names);
            if (!nn) s = ROAD_ERR_NO_MEMORY;
            else names = nn;
        }
        if (s == ROAD_OK && !(names[n++] = road__strdup(e->d_name))) s = ROAD_ERR_NO_MEMORY;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char *path = s == ROAD_OK ? road__path_join(sub, names[i]) : NULL, *text = NULL;
        size_t len = 0;
        if (s == ROAD_OK && !path) s = ROAD_ERR_NO_MEMORY;
        if (s == ROAD_OK && (s = road__file_read(path, TOK_MAX_CONFIG_BYTES, &text, &len)) != ROAD_OK)
            road__error_prefix("%s", path);
        if (s == ROAD_OK) {
            names[i][strlen(names[i]) - 6] = '\0';
            char src[300];
            snprintf(src, sizeof src, "additional_chat_templates/%.200s.jinja", names[i]);
            s = road__tok_chat_add(t, names[i], text, len, src);
        }
        road__free(text);
        road__free(path);
        road__free(names[i]);
    }
    road__free(names);
    road__free(sub);
    return s;
}

road_status road_tokenizer_load(const char *path, road_tokenizer **out) {
    if (!out || !path)
        return road__error(ROAD_ERR_INVALID_ARG, "road_tokenizer_load: NULL argument");
    *out = NULL;
    char *file = NULL, *dir = NULL, *cfg_path = NULL, *jinja_path = NULL, *json = NULL, *cfg = NULL,
         *jinja = NULL;
    size_t len = 0, cfg_len = 0, jinja_len = 0;
    road_status s = ROAD_OK;
    if (road__is_dir(path)) {
        dir = road__strdup(path);
        file = road__path_join(path, "tokenizer.json");
    } else {
        file = road__strdup(path);
        const char *slash = strrchr(path, '/');
        dir = slash ? road__strdup(path) : road__strdup(".");
        if (dir && slash) dir[slash - path + (slash == path)] = '\0';
    }
    if (!file || !dir) {
        s = ROAD_ERR_NO_MEMORY;
        goto done;
    }
    cfg_path = road__path_join(dir, "tokenizer_config.json");
    jinja_path = road__path_join(dir, "chat_template.jinja");
    if (!cfg_path || !jinja_path) {
        s = ROAD_ERR_NO_MEMORY;
        goto done;
    }
    s = road__file_read(file, TOK_MAX_FILE_BYTES, &json, &len);
    if (s != ROAD_OK) {
        road__error_prefix("%s", file);
        goto done;
    }
    s = road__file_read(cfg_path, TOK_MAX_CONFIG_BYTES, &cfg, &cfg_len);
    if (s == ROAD_ERR_NO_MEMORY) goto done;
    if (s != ROAD_OK) {
        cfg = NULL, cfg_len = 0; /* tokenizer_config.json is optional */
        road_clear_error();
    }
    /* transformers >= 4.47 saves the chat template beside the config; it wins over the
     * config's chat_template. A template is text of a few KiB: the config's bound is ample. */
    if (access(jinja_path, F_OK) == 0) {
        s = road__file_read(jinja_path, TOK_MAX_CONFIG_BYTES, &jinja, &jinja_len);
        if (s != ROAD_OK) {
            road__error_prefix("%s", jinja_path);
            goto done;
        }
    }
    s = load_texts(json, len, cfg, cfg_len, jinja, jinja_len, out);
    if (s != ROAD_OK) road__error_prefix("%s", file);
    if (s == ROAD_OK && (s = additional_templates(*out, dir)) != ROAD_OK) {
        road_tokenizer_free(*out);
        *out = NULL;
    }
done:
    road__free(file);
    road__free(dir);
    road__free(cfg_path);
    road__free(jinja_path);
    road__free(json);
    road__free(cfg);
    road__free(jinja);
    return s;
}

void road_tokenizer_free(road_tokenizer *t) {
    if (!t) return;
    road__tok_free_pipeline(t);
    road__free(t->pool);
    road__free(t->piece);
    road__free(t->bytes);
    road__free(t->flags);
    road__free(t->piece_hash);
    road__free(t->merge_key);
    road__free(t->merge_rank);
    road__free(t->merge_new);
    road__free(t->added);
    road__tok_chat_free(t);
    road__free(t->bos_text);
    road__free(t->eos_text);
    road__free(t->pad_text);
    road__free(t->unk_text);
    road__free(t);
}

/* ---- accessors ------------------------------------------------------------------------------ */

int32_t road_tokenizer_vocab_size(const road_tokenizer *t) { return t ? t->n_ids : 0; }
int32_t road_tokenizer_bos_id(const road_tokenizer *t) { return t ? t->bos_id : -1; }
int32_t road_tokenizer_eos_id(const road_tokenizer *t) { return t ? t->eos_id : -1; }
int32_t road_tokenizer_pad_id(const road_tokenizer *t) { return t ? t->pad_id : -1; }

bool road_tokenizer_is_special(const road_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && (t->flags[id] & TOK_F_SPECIAL);
}

const char *road_tokenizer_token_to_piece(const road_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_ids || !(t->flags[id] & TOK_F_PRESENT)) return NULL;
    if (len) *len = t->piece[id].len;
    return t->pool + t->piece[id].off;
}
