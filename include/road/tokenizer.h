/*
 * road/tokenizer.h - text <-> token ids for Llama-family models, from Hugging Face's
 * tokenizer.json (+ tokenizer_config.json), giving the ids Hugging Face's `tokenizers` gives.
 *
 * Supported (docs/tokenizer.md has the details and the list of what is refused):
 *  - model "BPE": byte-level (GPT-2 byte map; Llama-3, Qwen2/3) and SentencePiece-style
 *    (Llama-2, Mistral: "▁" for spaces, <0xNN> byte fallback), merges by rank;
 *  - normalizers NFC, Prepend, Replace (string), Sequence; pre-tokenizers Split (regex through
 *    PCRE2, UTF + UCP), ByteLevel, Metaspace, Sequence;
 *  - added/special tokens matched on the raw text before the model (lstrip, rstrip,
 *    single_word); post-processors TemplateProcessing, ByteLevel, Sequence;
 *  - decoders ByteLevel, Metaspace, Sequence of Replace / ByteFallback / Fuse / Strip;
 *  - chat prompts: the model's own Jinja chat template run as written (tokenizer_config.json's
 *    chat_template or chat_template.jinja), or a built-in one named for a base model.
 *
 * Input text is bytes; invalid UTF-8 is read as the WHATWG decoder (and Python's
 * errors="replace") reads it: each maximal invalid subsequence becomes U+FFFD.
 *
 * A loaded tokenizer is immutable: any number of threads may encode and decode with it at once.
 */
#ifndef ROAD_TOKENIZER_H
#define ROAD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "road/core.h"
#include "road/json.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Threads: a loaded road_tokenizer is immutable: any number of threads may encode, decode and
 * apply chat templates with it at once (each call keeps its own scratch and PCRE2 match
 * data); a road_tokenizer_stream is used by one thread at a time. */
typedef struct road_tokenizer road_tokenizer;

/* Load a tokenizer from `path`: a tokenizer.json file, or a model folder holding one.
 * tokenizer_config.json beside it (optional) gives bos/eos/pad/unk tokens, add_bos_token /
 * add_eos_token and chat_template (a string, or named templates of which "default" is used);
 * a chat_template.jinja beside it (transformers >= 4.47 saves it there) wins over the config's.
 * A chat template the Jinja engine cannot parse does not stop the load: it is reported when a
 * chat is rendered. Every field is validated; errors name the field and what
 * is allowed (ROAD_ERR_FORMAT for a broken file, ROAD_ERR_UNSUPPORTED for a component road does
 * not implement, ROAD_ERR_IO / ROAD_ERR_NOT_FOUND for files). */
ROAD_API road_status road_tokenizer_load(const char *path, road_tokenizer **out);
/* Same from in-memory JSON texts (config_json may be NULL). */
ROAD_API road_status road_tokenizer_load_json(const char *tokenizer_json, size_t len,
                                              const char *config_json, size_t config_len,
                                              road_tokenizer **out);
ROAD_API void road_tokenizer_free(road_tokenizer *tok); /* NULL is a no-op */

/* Number of ids (largest id + 1, model vocabulary and added tokens together). */
ROAD_API int32_t road_tokenizer_vocab_size(const road_tokenizer *tok);
/* Special ids from tokenizer_config.json (falling back on the post-processor for bos);
 * -1 when the model has none. */
ROAD_API road_token road_tokenizer_bos_id(const road_tokenizer *tok);
ROAD_API road_token road_tokenizer_eos_id(const road_tokenizer *tok);
ROAD_API road_token road_tokenizer_pad_id(const road_tokenizer *tok);
/* True for added tokens marked "special" (what decode's skip_special drops). */
ROAD_API bool road_tokenizer_is_special(const road_tokenizer *tok, road_token id);
/* Id of the token whose string (as written in tokenizer.json) is `piece`, or -1. */
ROAD_API road_token road_tokenizer_token_to_id(const road_tokenizer *tok, const char *piece);
/* The token's string as tokenizer.json writes it ("Ġthe", "▁the", "<0x0A>", "<|eot_id|>"),
 * NUL-terminated, owned by the tokenizer; NULL for an id out of range. *len may be NULL. */
ROAD_API const char *road_tokenizer_token_to_piece(const road_tokenizer *tok, road_token id,
                                                   size_t *len);

/* An upper bound on the ids road_tokenizer_encode can produce for `len` bytes of text. */
ROAD_API size_t road_tokenizer_max_tokens(const road_tokenizer *tok, size_t len);
/* Encode text[0..len) into ids. add_special adds the post-processor's tokens (bos/eos); special
 * tokens written in the text are recognised either way, as in Hugging Face.
 * *n_ids receives the number of ids. ids == NULL (cap ignored) only counts; with a buffer too
 * small, the first `cap` ids are written and ROAD_ERR_SHAPE is returned (*n_ids still the full
 * count); road_tokenizer_max_tokens() sizes a buffer that always fits. */
ROAD_API road_status road_tokenizer_encode(const road_tokenizer *tok, const char *text,
                                           size_t len, bool add_special, road_token *ids,
                                           size_t cap, size_t *n_ids);

/* Decode ids into text (NUL-terminated, UTF-8, allocated; free with road_string_free).
 * skip_special drops special tokens. An id out of range is ROAD_ERR_INVALID_ARG. */
ROAD_API road_status road_tokenizer_decode(const road_tokenizer *tok, const road_token *ids,
                                           size_t n, bool skip_special, char **text,
                                           size_t *len);

/* Streaming decode for generation: push ids one at a time and print what comes back. Bytes of
 * a UTF-8 sequence that is not complete yet are held back until it is (so a character split
 * over byte-fallback or byte-level tokens comes out whole); the concatenation of the pieces
 * equals road_tokenizer_decode of all ids (except that a byte-fallback sequence that never
 * becomes valid UTF-8 gives U+FFFD per maximal invalid subsequence, not per byte). */
typedef struct road_tokenizer_stream road_tokenizer_stream;
ROAD_API road_status road_tokenizer_stream_create(const road_tokenizer *tok, bool skip_special,
                                                  road_tokenizer_stream **out);
ROAD_API void road_tokenizer_stream_free(road_tokenizer_stream *s);
/* *text (valid until the next call on s) gets the newly complete text, *len its length (0 when
 * everything is held back). */
ROAD_API road_status road_tokenizer_stream_push(road_tokenizer_stream *s, road_token id,
                                                const char **text, size_t *len);
/* End of stream: held-back bytes come out as U+FFFD. */
ROAD_API road_status road_tokenizer_stream_flush(road_tokenizer_stream *s, const char **text,
                                                 size_t *len);

/* ---- chat prompts ------------------------------------------------------------------------ */

typedef enum road_chat_template {
    ROAD_CHAT_AUTO = 0, /* the tokenizer's own chat template, run as written */
    ROAD_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    ROAD_CHAT_LLAMA2,   /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s> */
    ROAD_CHAT_MISTRAL,  /* <s>[INST] ... [/INST]...</s> (no system role) */
    ROAD_CHAT_CHATML,   /* <|im_start|>role\n...<|im_end|>\n */
    ROAD_CHAT_QWEN3,    /* ChatML with Qwen3's <think> handling */
    ROAD_CHAT_COUNT_
} road_chat_template;

typedef struct road_chat_message {
    const char *role; /* "system", "user", "assistant", "tool": what the template accepts */
    const char *content;
} road_chat_message;

typedef struct road_chat_params {
    road_chat_template tmpl;    /* ROAD_CHAT_AUTO: the tokenizer's own template */
    bool add_generation_prompt; /* end with the header of an assistant turn */
    /* false passes enable_thinking=False to the template (Qwen3: the empty <think></think>
     * block); true passes nothing, so the template's own default holds */
    bool enable_thinking;
} road_chat_params;

ROAD_API road_chat_params road_chat_default_params(void); /* AUTO, generation prompt, thinking */
/* Built-in template names: "llama3", "llama2", "mistral", "chatml", "qwen3" (for a base model
 * without a template; a model's own template is always the one to use when it has one). */
ROAD_API road_status road_chat_template_from_name(const char *name, road_chat_template *out);
ROAD_API const char *road_chat_template_name(road_chat_template t);
/* Whether the tokenizer has a chat template of its own that road can run: ROAD_OK with *out =
 * ROAD_CHAT_AUTO (it is never mapped to a built-in); ROAD_ERR_NOT_FOUND when it has none (the
 * message says to pass --chat-template NAME); the parser's ROAD_ERR_FORMAT /
 * ROAD_ERR_UNSUPPORTED, with the line, when the engine cannot parse it. (Before issue 16 this
 * recognised the template's markers and answered a built-in.) */
ROAD_API road_status road_tokenizer_chat_template(const road_tokenizer *tok,
                                                  road_chat_template *out);
/* The prompt text that transformers' apply_chat_template(tokenize=False) gives, bos included:
 * encode it with add_special = false. *text is allocated (road_string_free).
 * ROAD_CHAT_AUTO renders the tokenizer's template with the variables transformers passes:
 * messages ({role, content} each), add_generation_prompt, bos_token / eos_token / unk_token /
 * pad_token where the config sets them (absent ones undefined), tools and documents none,
 * enable_thinking as above, strftime_now on the UTC clock (SOURCE_DATE_EPOCH when set). A
 * template's raise_exception is ROAD_ERR_INVALID_ARG with its message. */
ROAD_API road_status road_tokenizer_apply_chat(const road_tokenizer *tok,
                                               const road_chat_params *p,
                                               const road_chat_message *msgs, size_t n,
                                               char **text, size_t *len);

/* Render a chat template as written, with the Jinja engine road_tokenizer_apply_chat uses
 * (Python jinja2's semantics as transformers runs chat templates; docs/tokenizer.md lists what
 * it supports): `tmpl` is the template text (tmpl_len bytes), `vars` a JSON object whose
 * members are its variables, as transformers' apply_chat_template passes them (messages,
 * add_generation_prompt, tools, documents, bos_token / eos_token / ..., extra keyword
 * arguments such as enable_thinking); parse JSON text with road_json_parse so numbers keep
 * their type. strftime_now uses the date of SOURCE_DATE_EPOCH when it is set. Errors name the
 * template's line; raise_exception(msg) gives ROAD_ERR_INVALID_ARG with msg. *text is
 * allocated (road_string_free), *len its bytes (it may hold NULs from the variables). */
ROAD_API road_status road_chat_template_render(const char *tmpl, size_t tmpl_len,
                                               const struct cJSON *vars, char **text,
                                               size_t *len);

#ifdef __cplusplus
}
#endif
#endif /* ROAD_TOKENIZER_H */
