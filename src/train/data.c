/*
 * train/data.c - training examples from JSONL: token ids and per-token labels.
 *
 * Every example becomes (ids, labels) of one length, labels -100 where no loss is taken, so
 * the loop never needs to know which format a line had. Prompt/completion examples tokenize
 * the prompt (with special tokens) and the completion (without) separately and concatenate,
 * so the loss mask falls exactly on the completion's tokens.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/file.h"
#include "io/json.h"
#include "road/tokenizer.h"
#include "road/train.h"

/* A training file is read whole; larger ones should be split. */
#define DATA_MAX_BYTES ((size_t)2 << 30)

typedef struct example {
    int32_t *ids, *labels;
    int64_t n;
} example;

struct road_dataset {
    example *ex;
    int64_t n, cap;
    road_data_stats stats;
};

void road_ids_free(int32_t *ids) {
    road__free(ids);
}

int32_t *road_ids_alloc(int64_t n) {
    return n < 0 ? NULL : road__malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
}

road_data_params road_data_default_params(void) {
    road_data_params p;
    memset(&p, 0, sizeof p);
    p.max_len = 512;
    p.chat = road_chat_default_params();
    return p;
}

/* text -> ids with whichever tokenizer the parameters give. */
static road_status encode(const road_data_params *p, const char *text, size_t len, bool special,
                          int32_t **ids, int64_t *n) {
    if (p->tok) {
        size_t cap = road_tokenizer_max_tokens(p->tok, len), got = 0;
        int32_t *v = road_ids_alloc((int64_t)cap);
        if (!v) return ROAD_ERR_NO_MEMORY;
        road_status s = road_tokenizer_encode(p->tok, text, len, special, v, cap, &got);
        if (s != ROAD_OK) {
            road__free(v);
            return s;
        }
        *ids = v;
        *n = (int64_t)got;
        return ROAD_OK;
    }
    return p->tokenize(p->tokenizer, text, len, special, ids, n);
}

void road_dataset_free(road_dataset *d) {
    if (!d) return;
    for (int64_t i = 0; i < d->n; i++) {
        road__free(d->ex[i].ids);
        road__free(d->ex[i].labels);
    }
    road__free(d->ex);
    road__free(d);
}

int64_t road_dataset_count(const road_dataset *d) {
    return d ? d->n : 0;
}

road_data_stats road_dataset_stats(const road_dataset *d) {
    road_data_stats z;
    memset(&z, 0, sizeof z);
    return d ? d->stats : z;
}

road_status road_dataset_example(const road_dataset *d, int64_t i, const int32_t **ids,
                                 const int32_t **labels, int64_t *n) {
    if (!d || i < 0 || i >= d->n)
        return road__error(ROAD_ERR_INVALID_ARG, "no example %lld in the dataset", (long long)i);
    *ids = d->ex[i].ids;
    *labels = d->ex[i].labels;
    *n = d->ex[i].n;
    return ROAD_OK;
}

/* An int array field into a fresh int32 array. */
static road_status int_array(const cJSON *a, const char *field, int64_t line, bool allow_ignore,
                             int32_t **out, int64_t *n) {
    if (!cJSON_IsArray(a))
        return road__error(ROAD_ERR_FORMAT, "line %lld: \"%s\" must be a list of integers",
                           (long long)line, field);
    int64_t k = cJSON_GetArraySize(a);
    int32_t *v = road__malloc(sizeof(int32_t) * (size_t)(k ? k : 1));
    if (!v) return ROAD_ERR_NO_MEMORY;
    int64_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) {
        /* range first: converting an out-of-range double to an integer is undefined */
        const double x = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        const bool in_range =
            x >= (double)ROAD_LABEL_IGNORE && x <= 2147483647.0 && x == floor(x);
        if (!in_range || (x < 0 && !(allow_ignore && x == ROAD_LABEL_IGNORE))) {
            road__free(v);
            return road__error(ROAD_ERR_FORMAT, "line %lld: \"%s\"[%lld] is not a %s",
                               (long long)line, field, (long long)i,
                               allow_ignore ? "token id or -100"
                                            : "token id (a non-negative integer)");
        }
        v[i++] = (int32_t)x;
    }
    *out = v;
    *n = k;
    return ROAD_OK;
}

static road_status text_field(const cJSON *o, const char *field, int64_t line, const char **out) {
    const cJSON *t = road__json_get(o, field);
    if (!cJSON_IsString(t))
        return road__error(ROAD_ERR_FORMAT, "line %lld: \"%s\" must be a string", (long long)line,
                           field);
    *out = t->valuestring;
    return ROAD_OK;
}

/* Append ids[0..n) to ex with label = id (loss) or -100. */
static road_status append(example *ex, int64_t *cap, const int32_t *ids, int64_t n, bool loss) {
    if (ex->n + n > *cap) {
        int64_t c = (*cap ? *cap * 2 : 64);
        while (c < ex->n + n) c *= 2;
        int32_t *a = road__realloc(ex->ids, sizeof(int32_t) * (size_t)c);
        if (!a) return ROAD_ERR_NO_MEMORY;
        ex->ids = a;
        int32_t *b = road__realloc(ex->labels, sizeof(int32_t) * (size_t)c);
        if (!b) return ROAD_ERR_NO_MEMORY;
        ex->labels = b;
        *cap = c;
    }
    for (int64_t i = 0; i < n; i++) {
        ex->ids[ex->n + i] = ids[i];
        ex->labels[ex->n + i] = loss ? ids[i] : ROAD_LABEL_IGNORE;
    }
    ex->n += n;
    return ROAD_OK;
}

/* Length of the common prefix of two id sequences. */
static int64_t common_prefix(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    int64_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* The tokens of `ids` (the encoding of the whole text) that hold a byte of text[a, e), as
 * transformers' return_assistant_tokens_mask marks them (char_to_token of the span's first and
 * last character): the first is where the encoding of text[0, a) stops agreeing with ids; the
 * last is the last token the encoding of text[0, e) shares with ids, or the one after it when
 * that encoding ends in a piece of a longer token. */
static road_status span_tokens(const road_data_params *p, const char *text, size_t a, size_t e,
                               const int32_t *ids, int64_t n, int64_t *i0, int64_t *i1) {
    int32_t *pre = NULL;
    int64_t np = 0;
    road_status s = encode(p, text, a, false, &pre, &np);
    if (s != ROAD_OK) return s;
    *i0 = common_prefix(pre, np, ids, n);
    road__free(pre);
    if ((s = encode(p, text, e, false, &pre, &np)) != ROAD_OK) return s;
    int64_t l = common_prefix(pre, np, ids, n);
    *i1 = l + (np > l && l < n);
    road__free(pre);
    return ROAD_OK;
}

/* {"messages": [...], "tools": [...]?}: the chat rendered with the template and tokenized
 * whole (as TRL tokenizes it); the loss covers the tokens of the assistant turns, the spans
 * road_tokenizer_chat_spans finds ({% generation %} markers, else rendered prefixes). */
static road_status parse_messages(const cJSON *line_obj, const cJSON *arr, int64_t line,
                                  const road_data_params *p, example *ex) {
    if (!p->tok)
        return road__error(ROAD_ERR_UNSUPPORTED,
                           "line %lld: \"messages\" examples need the model's tokenizer (its chat "
                           "template)",
                           (long long)line);
    int64_t nm = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (nm <= 0)
        return road__error(ROAD_ERR_FORMAT, "line %lld: \"messages\" must be a non-empty list",
                           (long long)line);
    int64_t i = 0, n_assist = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *role = road__json_get(e, "role");
        if (!cJSON_IsObject(e) || !cJSON_IsString(role))
            return road__error(ROAD_ERR_FORMAT,
                               "line %lld: message %lld needs a string \"role\" (and a "
                               "\"content\")",
                               (long long)line, (long long)i);
        n_assist += strcmp(role->valuestring, "assistant") == 0;
        i++;
    }
    if (n_assist == 0)
        return road__error(ROAD_ERR_FORMAT, "line %lld: no assistant message, so nothing to learn",
                           (long long)line);
    road_chat_params cp = p->chat;
    const cJSON *tools = road__json_get(line_obj, "tools");
    if (tools && !cJSON_IsNull(tools)) {
        if (!cJSON_IsArray(tools))
            return road__error(ROAD_ERR_FORMAT, "line %lld: \"tools\" must be a list of tool "
                                                "definitions", (long long)line);
        cp.tools = tools;
    }
    char *full = NULL;
    size_t full_len = 0, n_spans = 0;
    road_chat_span *spans = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    road_status s = road_tokenizer_chat_spans(p->tok, &cp, arr, &full, &full_len, &spans, &n_spans);
    if (s == ROAD_OK && n_spans == 0)
        s = road__error(ROAD_ERR_FORMAT, "the chat template renders no assistant turn, so "
                                         "nothing to learn");
    if (s == ROAD_OK) s = encode(p, full, full_len, false, &ids, &n);
    int64_t cap = 0;
    if (s == ROAD_OK) s = append(ex, &cap, ids, n, false);
    for (size_t k = 0; s == ROAD_OK && k < n_spans; k++) {
        int64_t i0 = 0, i1 = 0;
        s = span_tokens(p, full, spans[k].begin, spans[k].end, ids, n, &i0, &i1);
        for (int64_t t = i0; s == ROAD_OK && t < i1; t++) ex->labels[t] = ex->ids[t];
    }
    if (s != ROAD_OK && strncmp(road_last_error(), "line ", 5) != 0)
        road__error_prefix("line %lld", (long long)line);
    road__free(ids);
    road_chat_spans_free(spans);
    road_string_free(full);
    return s;
}

/* One JSON object -> example (untruncated). */
static road_status parse_line(const cJSON *o, int64_t line, const road_data_params *p, example *ex) {
    memset(ex, 0, sizeof *ex);
    if (!cJSON_IsObject(o))
        return road__error(ROAD_ERR_FORMAT, "line %lld: each line must be a JSON object",
                           (long long)line);
    const cJSON *ids = road__json_get(o, "input_ids");
    road_status s = ROAD_OK;
    if (ids) {
        s = int_array(ids, "input_ids", line, false, &ex->ids, &ex->n);
        if (s != ROAD_OK) return s;
        const cJSON *lab = road__json_get(o, "labels");
        if (lab) {
            int64_t nl;
            s = int_array(lab, "labels", line, true, &ex->labels, &nl);
            if (s == ROAD_OK && nl != ex->n)
                s = road__error(ROAD_ERR_FORMAT,
                                "line %lld: \"labels\" has %lld entries, \"input_ids\" %lld",
                                (long long)line, (long long)nl, (long long)ex->n);
            return s;
        }
    } else if (road__json_get(o, "messages")) {
        return parse_messages(o, road__json_get(o, "messages"), line, p, ex);
    } else {
        const bool has_text = road__json_get(o, "text") != NULL;
        const bool has_pc = road__json_get(o, "prompt") != NULL;
        if (!has_text && !has_pc)
            return road__error(
                ROAD_ERR_FORMAT,
                "line %lld: no \"input_ids\", \"text\" or \"prompt\"/\"completion\" field",
                (long long)line);
        if (!p->tokenize && !p->tok)
            return road__error(ROAD_ERR_UNSUPPORTED,
                               "line %lld: text examples need a tokenizer (give the model's "
                               "tokenizer, or pre-tokenize into \"input_ids\")",
                               (long long)line);
        const char *a = NULL, *b = NULL;
        s = text_field(o, has_text ? "text" : "prompt", line, &a);
        if (s == ROAD_OK && !has_text) s = text_field(o, "completion", line, &b);
        if (s != ROAD_OK) return s;
        int32_t *ia = NULL, *ib = NULL;
        int64_t na = 0, nb = 0;
        s = encode(p, a, strlen(a), true, &ia, &na);
        if (s == ROAD_OK && b) s = encode(p, b, strlen(b), false, &ib, &nb);
        if (s == ROAD_OK) {
            ex->n = na + nb;
            ex->ids = road__malloc(sizeof(int32_t) * (size_t)(ex->n ? ex->n : 1));
            ex->labels = road__malloc(sizeof(int32_t) * (size_t)(ex->n ? ex->n : 1));
            if (!ex->ids || !ex->labels) s = ROAD_ERR_NO_MEMORY;
        }
        if (s == ROAD_OK) {
            memcpy(ex->ids, ia, sizeof(int32_t) * (size_t)na);
            if (nb) memcpy(ex->ids + na, ib, sizeof(int32_t) * (size_t)nb);
            for (int64_t i = 0; i < ex->n; i++)
                ex->labels[i] = (b && i < na) ? ROAD_LABEL_IGNORE : ex->ids[i];
        } else {
            road__error_prefix("line %lld", (long long)line);
        }
        road_ids_free(ia);
        road_ids_free(ib);
        return s;
    }
    /* input_ids without labels: loss on every token */
    ex->labels = road__malloc(sizeof(int32_t) * (size_t)(ex->n ? ex->n : 1));
    if (!ex->labels) return ROAD_ERR_NO_MEMORY;
    memcpy(ex->labels, ex->ids, sizeof(int32_t) * (size_t)ex->n);
    return ROAD_OK;
}

/* Packing: the examples, in file order, concatenated and cut into max_len-token sequences
 * (the last may be shorter). Each token keeps its label, so prompt masks survive; attention
 * crosses example boundaries, as in common packed training (TRL's ConstantLengthDataset). */
static road_status pack(road_dataset *d, int64_t max_len) {
    int64_t total = 0;
    for (int64_t i = 0; i < d->n; i++) total += d->ex[i].n;
    int64_t n_out = (total + max_len - 1) / max_len;
    example *out = road__calloc((size_t)n_out, sizeof(example));
    if (!out) return ROAD_ERR_NO_MEMORY;
    int64_t k = 0, pos = 0;
    for (int64_t i = 0; i < d->n; i++) {
        for (int64_t t = 0; t < d->ex[i].n; t++) {
            if (pos == 0) {
                int64_t len = total - k * max_len < max_len ? total - k * max_len : max_len;
                out[k].ids = road__malloc(sizeof(int32_t) * (size_t)len);
                out[k].labels = road__malloc(sizeof(int32_t) * (size_t)len);
                if (!out[k].ids || !out[k].labels) {
                    for (int64_t j = 0; j <= k; j++)
                        road__free(out[j].ids), road__free(out[j].labels);
                    road__free(out);
                    return ROAD_ERR_NO_MEMORY;
                }
                out[k].n = len;
            }
            out[k].ids[pos] = d->ex[i].ids[t];
            out[k].labels[pos] = d->ex[i].labels[t];
            if (++pos == max_len) pos = 0, k++;
        }
    }
    for (int64_t i = 0; i < d->n; i++) road__free(d->ex[i].ids), road__free(d->ex[i].labels);
    road__free(d->ex);
    d->ex = out;
    d->n = d->cap = n_out;
    return ROAD_OK;
}

static road_status parse_jsonl(const char *path, const char *text, size_t len,
                               const road_data_params *p, road_dataset **out);

road_status road_dataset_load_jsonl(const char *path, const road_data_params *p,
                                    road_dataset **out) {
    if (!out || !path || !p)
        return road__error(ROAD_ERR_INVALID_ARG, "road_dataset_load_jsonl: NULL argument");
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    road_status s = road__file_read(path, DATA_MAX_BYTES, &text, &len);
    if (s != ROAD_OK) return s;
    s = parse_jsonl(path, text, len, p, out);
    road__free(text);
    return s;
}

road_status road_dataset_parse_jsonl(const char *text, size_t len, const road_data_params *p,
                                     road_dataset **out) {
    if (!out || (!text && len) || !p)
        return road__error(ROAD_ERR_INVALID_ARG, "road_dataset_parse_jsonl: NULL argument");
    *out = NULL;
    return parse_jsonl("(memory)", text, len, p, out);
}

/* Tokens from position 1 on that carry a loss (position 0 is never predicted). */
static int64_t loss_tokens(const example *ex, int64_t n) {
    int64_t counted = 0;
    for (int64_t i = 1; i < n; i++) counted += ex->labels[i] != ROAD_LABEL_IGNORE;
    return counted;
}

/* "; 3 skipped: ..." for each reason with a count, into buf (the load's summary). */
static void describe_stats(const road_data_stats *st, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = '\0';
#define STAT_PART(...)                                                                             \
    do {                                                                                           \
        if (k < cap) k += (size_t)snprintf(buf + k, cap - k, __VA_ARGS__);                        \
    } while (0)
    if (st->skipped_past_max_len)
        STAT_PART("; %lld skipped: every token with a loss (the completion or assistant turn) lies "
                  "at or past max_len %lld (raise max_len or shorten the prompts)",
                  (long long)st->skipped_past_max_len, (long long)st->max_len);
    if (st->skipped_no_loss)
        STAT_PART("; %lld skipped: no token carries a loss (an empty completion, labels all -100)",
                  (long long)st->skipped_no_loss);
    if (st->skipped_short)
        STAT_PART("; %lld skipped: fewer than 2 tokens", (long long)st->skipped_short);
    if (st->truncated)
        STAT_PART("; %lld truncated to max_len %lld (%lld tokens past it not trained on)",
                  (long long)st->truncated, (long long)st->max_len,
                  (long long)st->truncated_tokens);
#undef STAT_PART
}

static road_status parse_jsonl(const char *path, const char *text, size_t len,
                               const road_data_params *p, road_dataset **out) {
    if (p->max_len <= 1)
        return road__error(ROAD_ERR_INVALID_ARG, "max_len must be at least 2, got %lld",
                           (long long)p->max_len);
    road_status s = ROAD_OK;
    road_dataset *d = road__calloc(1, sizeof *d);
    if (!d) return ROAD_ERR_NO_MEMORY;
    road_data_stats *st = &d->stats;
    st->max_len = p->max_len;
    int64_t line = 0;
    const char *cur = text, *end = text + len;
    while (cur < end && s == ROAD_OK) {
        const char *nl = memchr(cur, '\n', (size_t)(end - cur));
        const char *stop = nl ? nl : end;
        line++;
        const char *b = cur;
        while (b < stop && (*b == ' ' || *b == '\t' || *b == '\r')) b++;
        if (b < stop) {
            st->lines++;
            cJSON *o = NULL;
            road_json_where w;
            s = road__json_parse_at(b, (size_t)(stop - b), &o, &w);
            if (s != ROAD_OK) {
                /* the column counts from the line's start, blanks included */
                if (s == ROAD_ERR_FORMAT)
                    s = road__error(ROAD_ERR_FORMAT, "%s: line %lld %s (column %zu): %s", path,
                                    (long long)line,
                                    w.valid_json ? "is refused" : "is not valid JSON",
                                    w.column + (size_t)(b - cur), w.what);
                break;
            }
            example ex;
            s = parse_line(o, line, p, &ex);
            cJSON_Delete(o);
            if (s != ROAD_OK) {
                road__free(ex.ids);
                road__free(ex.labels);
                road__error_prefix("%s", path);
                break;
            }
            /* Nothing to learn from is not an error, but each such record is counted by reason.
             * Truncation keeps the arrays' size; packing cuts the concatenation instead. */
            int64_t keep = !p->pack && ex.n > p->max_len ? p->max_len : ex.n;
            int64_t *skip = ex.n < 2                   ? &st->skipped_short
                            : loss_tokens(&ex, ex.n) == 0 ? &st->skipped_no_loss
                            : keep < 2 || loss_tokens(&ex, keep) == 0 ? &st->skipped_past_max_len
                                                                      : NULL;
            if (skip) {
                road__free(ex.ids);
                road__free(ex.labels);
                (*skip)++;
            } else {
                if (keep < ex.n) st->truncated++, st->truncated_tokens += ex.n - keep;
                ex.n = keep;
                if (d->n == d->cap) {
                    int64_t cap = d->cap ? 2 * d->cap : 64;
                    example *ne = road__realloc(d->ex, sizeof(example) * (size_t)cap);
                    if (!ne) {
                        road__free(ex.ids);
                        road__free(ex.labels);
                        s = ROAD_ERR_NO_MEMORY;
                        break;
                    }
                    d->ex = ne;
                    d->cap = cap;
                }
                d->ex[d->n++] = ex;
                st->examples++;
            }
        }
        cur = nl ? nl + 1 : end;
    }
    char why[512];
    describe_stats(st, why, sizeof why);
    if (s == ROAD_OK && d->n == 0)
        s = road__error(ROAD_ERR_FORMAT, "%s has no usable example: %lld lines%s", path,
                        (long long)st->lines, why[0] ? why : " (the file is empty)");
    if (s != ROAD_OK) {
        road_dataset_free(d);
        return s;
    }
    if (p->pack && d->n > 0) {
        s = pack(d, p->max_len);
        if (s != ROAD_OK) {
            road_dataset_free(d);
            return s;
        }
    }
    if (why[0])
        road__log(ROAD_LOG_WARN, "%s: %lld lines -> %lld examples%s", path, (long long)st->lines,
                  (long long)st->examples, why);
    *out = d;
    return ROAD_OK;
}
