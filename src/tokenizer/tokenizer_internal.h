/*
 * tokenizer/tokenizer_internal.h - the loaded tokenizer and the pieces its files share (private).
 *
 * Layout: every token string lives once in `pool`; per id we keep the string as tokenizer.json
 * writes it (`piece`, used for lookups, merges and --pieces) and the bytes it decodes to
 * (`bytes`: GPT-2 byte map undone for byte-level models, "▁" -> " " and <0xNN> -> the byte
 * for SentencePiece-style ones). Merges are keyed by the pair of ids, as the BPE loop sees them.
 *
 * Files, each using only those before it in this list: text_util.c (buffers, UTF-8, byte map,
 * string pool, lookups; text_util.h); nfc.c (tables in nfc_tables.c); text.c (normalizers,
 * pre-tokenizers); config.c (tokenizer_config.json, added tokens, post-processor); decode.c;
 * bpe.c (merge loop); load.c (tokenizer.json); encode.c; chat.c.
 */
#ifndef ROAD_TOKENIZER_INTERNAL_H
#define ROAD_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "road/tokenizer.h"
#include "tokenizer/text_util.h"

struct cJSON;

/* Ids beyond this are refused as corrupt (largest real vocabularies are ~256K). */
#define TOK_MAX_ID (1 << 24)
/* Steps of a normalizer / pre-tokenizer Sequence (real files use 1-4). */
#define TOK_MAX_STEPS 8
/* Ids a post-processor template may add around the text. */
#define TOK_MAX_TEMPLATE 8

enum { TOK_F_PRESENT = 1, TOK_F_ADDED = 2, TOK_F_SPECIAL = 4, TOK_F_BYTE = 8 };

/* Normalizer steps, applied in order to each piece of text between added tokens. */
typedef enum tok_norm_kind { TOK_NORM_NFC, TOK_NORM_PREPEND, TOK_NORM_REPLACE } tok_norm_kind;
typedef struct tok_norm {
    tok_norm_kind kind;
    char *a, *b; /* Prepend: a = text; Replace: a -> b */
} tok_norm;

/* Pre-tokenizer steps. Split, Digits, Punctuation, Whitespace, WhitespaceSplit,
 * CharDelimiterSplit and BertPreTokenizer are all TOK_PRE_SPLIT: a pattern (a regex, a literal
 * string or a one-character class, compiled to PCRE2) plus what to do with its matches. */
typedef enum tok_pre_kind { TOK_PRE_SPLIT, TOK_PRE_BYTELEVEL, TOK_PRE_METASPACE } tok_pre_kind;
typedef enum tok_prepend { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } tok_prepend;
/* Hugging Face's SplitDelimiterBehavior. */
typedef enum tok_split_behavior {
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS
} tok_split_behavior;
typedef struct tok_pre {
    tok_pre_kind kind;
    pcre2_code *re;       /* SPLIT (and BYTELEVEL with use_regex) */
    tok_split_behavior behavior; /* SPLIT */
    bool invert;          /* SPLIT: the pieces between matches are the matches */
    bool add_prefix_space; /* BYTELEVEL */
    char *replacement;    /* METASPACE */
    tok_prepend prepend;  /* METASPACE */
    bool split;           /* METASPACE */
} tok_pre;

typedef struct tok_added {
    int32_t id;
    uint32_t off, len; /* content in pool */
    bool lstrip, rstrip, single_word, special;
} tok_added;

struct road_tokenizer {
    /* vocabulary */
    int32_t n_ids;
    char *pool;
    size_t pool_len, pool_cap;
    tok_span *piece, *bytes;
    uint8_t *flags;
    uint32_t *piece_hash; /* open addressing over piece strings of model tokens: id + 1 */
    uint32_t piece_hash_mask;
    /* merges: open addressing keyed by (left id, right id) */
    uint64_t *merge_key; /* (a << 32 | b) + 1; 0 = empty */
    uint32_t *merge_rank;
    int32_t *merge_new;
    uint32_t merge_mask;
    /* model */
    bool byte_level;    /* ByteLevel pre-tokenizer: the model's strings use the GPT-2 byte map */
    bool byte_fallback; /* <0xNN> tokens for characters missing from the vocabulary */
    bool ignore_merges; /* a whole pre-token found in the vocabulary is taken as it is */
    bool fuse_unk;
    int32_t unk_id;
    int32_t byte_id[256]; /* id of each single byte (byte-level) or <0xNN> (fallback), or -1 */
    /* pipeline */
    tok_norm norm[TOK_MAX_STEPS];
    int n_norm;
    tok_pre pre[TOK_MAX_STEPS];
    int n_pre;
    pcre2_general_context *pcre_ctx;
    /* added tokens, sorted by first byte then longest first */
    tok_added *added;
    int32_t n_added;
    int32_t added_first[257]; /* added[added_first[c] .. added_first[c+1]) start with byte c */
    /* post-processor: ids before and after the text */
    int32_t tmpl_pre[TOK_MAX_TEMPLATE], tmpl_post[TOK_MAX_TEMPLATE];
    int n_tmpl_pre, n_tmpl_post;
    /* decoder: leading spaces stripped from the whole output (Strip / Metaspace) */
    int strip_leading;
    bool dec_join_spaces; /* no decoder: pieces joined by spaces, as Hugging Face does */
    /* tokenizer_config.json */
    int32_t bos_id, eos_id, pad_id;
    /* chat templates (chat.c): the model's, by name ("default", "tool_use", ...), and the one
     * road_tokenizer_set_chat_template chose (NULL: the model's) */
    struct tok_chat_tmpl *chats;
    int n_chats;
    struct tok_chat_tmpl *chosen;
    char *bos_text, *eos_text, *pad_text, *unk_text; /* NULL when the config has none */
};

/* ---- config.c ---- */
road_status road__tok_load_added(road_tokenizer *t, const struct cJSON *root);
road_status road__tok_load_post(road_tokenizer *t, const struct cJSON *root);
/* tokenizer_config.json (json may be NULL); a chat_template.jinja text (NULL when there is
 * none) replaces the config's chat_template, as in transformers >= 4.47. */
road_status road__tok_load_config(road_tokenizer *t, const char *json, size_t len,
                                  const char *jinja, size_t jinja_len);

/* ---- chat.c ---- */
/* One chat template: its text, parsed when added (a template the engine cannot parse does not
 * stop the load: its error is kept and reported when a chat is rendered with it). */
typedef struct tok_chat_tmpl {
    char *name;   /* "default", "tool_use", ...; the spec for a chosen one */
    char *text;   /* the Jinja source */
    char *source; /* where it came from, for messages */
    struct road__jinja *prog; /* NULL when it did not parse */
    road_status err;          /* ... and then the parser's status and message */
    char *err_msg;
    bool generation; /* it marks assistant turns with {% generation %} */
} tok_chat_tmpl;
/* Add (or replace, same name) one of the model's templates; source is copied. Only
 * ROAD_ERR_NO_MEMORY is returned. */
road_status road__tok_chat_add(road_tokenizer *t, const char *name, const char *text, size_t len,
                               const char *source);
void road__tok_chat_free(road_tokenizer *t);
/* The text of a built-in template, or NULL (chat_builtin.c). */
const char *road__chat_builtin(const char *name);

/* ---- text.c ---- */
road_status road__tok_load_normalizer(road_tokenizer *t, const struct cJSON *n);
road_status road__tok_load_pre_tokenizer(road_tokenizer *t, const struct cJSON *p);
/* Normalize `in` (one piece between added tokens) into out (cleared first). */
road_status road__tok_normalize(const road_tokenizer *t, const char *in, size_t len, tok_buf *out);
/* Run the pre-tokenizers over text (which may be rewritten, e.g. by Metaspace); `at_start`:
 * the text begins at offset 0 of the input (Metaspace's "first" scheme). */
typedef struct tok_scratch tok_scratch;
road_status road__tok_pre_tokenize(const road_tokenizer *t, tok_buf *text, bool at_start,
                                   tok_pieces *out, tok_scratch *sc);
void road__tok_free_pipeline(road_tokenizer *t);

/* ---- bpe.c ---- */
struct tok_scratch {
    tok_buf text, text2, conv;
    tok_pieces pieces, pieces2;
    pcre2_match_data *md;
    void *sym;   /* BPE symbols */
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_cap;
};
void road__tok_scratch_free(tok_scratch *sc);
/* Append the ids of one pre-token (bytes of the normalized text) to out. */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
road_status road__tok_ids_push(tok_ids *o, int32_t id);
road_status road__tok_bpe_word(const road_tokenizer *t, const char *w, size_t len, tok_scratch *sc,
                               tok_ids *out);

/* ---- decode.c ---- */
road_status road__tok_load_decoder(road_tokenizer *t, const struct cJSON *d);

/* ---- nfc.c ---- */
road_status road__tok_nfc(const char *s, size_t len, tok_buf *out);

#endif
