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

/* A tokenizer's chat templates, as transformers finds them: tokenizer_config.json's
 * chat_template (a string, or a list of {"name", "template"}), chat_template.jinja beside it
 * (it wins over the config's default) and additional_chat_templates/NAME.jinja. The one used:
 * the one chosen with road_tokenizer_set_chat_template, else "tool_use" when tools are passed
 * and the model has one, else the default. Every template is run as written by road's Jinja
 * engine (docs/tokenizer.md lists what it supports). */

/* Choose the chat template (call before the tokenizer is shared between threads). `spec` is
 *  - a path to a file holding a Jinja template (it has a '/' or ends in ".jinja", or exists),
 *  - the name of one of the model's named templates ("default", "tool_use", "rag", ...), or
 *  - a built-in template for a base model that has none: road_chat_builtin_names() lists them
 *    (each is the text the family's own template renders for plain chats, with
 *    {% generation %} markers around the assistant's turns);
 * NULL goes back to the model's own. ROAD_ERR_NOT_FOUND names what exists when spec matches
 * nothing; a template that does not parse is ROAD_ERR_FORMAT / ROAD_ERR_UNSUPPORTED with the
 * line. */
ROAD_API road_status road_tokenizer_set_chat_template(road_tokenizer *tok, const char *spec);
/* The built-in names, NULL-terminated: "chatml", "llama3", "llama2", "mistral", "zephyr",
 * "gemma". */
ROAD_API const char *const *road_chat_builtin_names(void);
/* Whether a chat can be rendered: ROAD_OK when the tokenizer has a template (its own or one
 * chosen) that parses; *source (may be NULL) describes it ("tokenizer_config.json's
 * chat_template", "chat_template.jinja", "built-in chatml", "file x.jinja", ...), owned by the
 * tokenizer. ROAD_ERR_NOT_FOUND when there is none (the message says to pass --chat-template);
 * the parser's status, with the line, when it does not parse. */
ROAD_API road_status road_tokenizer_chat_template(const road_tokenizer *tok, const char **source);

typedef struct road_chat_message {
    const char *role; /* "system", "user", "assistant", "tool": what the template accepts */
    const char *content;
} road_chat_message;

/* How a chat is rendered: apply_chat_template's arguments. */
typedef struct road_chat_params {
    bool add_generation_prompt;  /* end with the header of an assistant turn */
    bool continue_final_message; /* end inside the last message, for the model to continue it
                                    (transformers' rule); not with add_generation_prompt */
    const struct cJSON *tools;     /* a list of tool definitions (OpenAI's shape), or NULL */
    const struct cJSON *documents; /* a list of documents (RAG templates), or NULL */
    /* extra template variables, a JSON object ({"enable_thinking": false}), or NULL; they may
     * override bos_token and the like, not messages / tools / documents /
     * add_generation_prompt */
    const struct cJSON *kwargs;
} road_chat_params;

/* add_generation_prompt, nothing else. */
ROAD_API road_chat_params road_chat_default_params(void);

/* The prompt text that transformers' apply_chat_template(tokenize=False) gives, bos included:
 * encode it with add_special = false. `messages` is a JSON list of message objects ({"role",
 * "content"}, content a string or a list of parts, tool_calls, tool_call_id, ...; each needs a
 * string role), handed to the template as transformers 5 hands them: keys whose value is null
 * dropped, a message's reasoning ("reasoning_content", "thinking" or "reasoning") under both
 * "reasoning_content" and "thinking". The variables: messages, tools,
 * documents (null when not given), add_generation_prompt, bos_token / eos_token / unk_token /
 * pad_token where the config sets them (absent ones undefined), the kwargs, and strftime_now
 * on the UTC clock (the date of SOURCE_DATE_EPOCH when it is set). A template's
 * raise_exception is ROAD_ERR_INVALID_ARG with its message. *text is allocated
 * (road_string_free); *len (may be NULL) its bytes. */
ROAD_API road_status road_tokenizer_apply_chat_json(const road_tokenizer *tok,
                                                    const road_chat_params *p,
                                                    const struct cJSON *messages, char **text,
                                                    size_t *len);
/* The same for messages with string contents. */
ROAD_API road_status road_tokenizer_apply_chat(const road_tokenizer *tok,
                                               const road_chat_params *p,
                                               const road_chat_message *msgs, size_t n,
                                               char **text, size_t *len);

/* apply_chat_template's steps (the messages normalized, continue_final_message, the
 * variables) with a template given as text instead of a tokenizer's: `variables` (a JSON object
 * or NULL) are the special tokens a tokenizer_config would give ({"bos_token": "<s>", ...});
 * p->kwargs override them. What road chat-template runs for --template and
 * --tokenizer-config. */
ROAD_API road_status road_chat_template_apply(const char *tmpl, size_t tmpl_len,
                                              const struct cJSON *variables,
                                              const road_chat_params *p,
                                              const struct cJSON *messages, char **text,
                                              size_t *len);

/* Bytes [begin, end) of a rendered chat. */
typedef struct road_chat_span {
    size_t begin, end;
} road_chat_span;

/* A chat rendered for training (add_generation_prompt and continue_final_message off) and the
 * spans of its assistant turns, the text the loss covers. With a template that marks them
 * ({% generation %} ... {% endgeneration %}, as transformers' return_assistant_tokens_mask
 * reads them) the spans are the marked text. Otherwise they are found by rendering prefixes,
 * as TRL does: an assistant turn k starts where the render of messages[:k] with the generation
 * prompt ends (which must be a prefix of the whole render) and ends where the render of
 * messages[:k+1] ends, or, where the template renders a last turn differently from an earlier
 * one (Qwen3's reasoning), after the turn's content and the closing text the template puts
 * after it. A conversation that cannot be split so is ROAD_ERR_UNSUPPORTED naming the message
 * and the fix (a template with {% generation %} markers). *spans is allocated (road_free), one
 * per assistant turn the template renders, in order. */
ROAD_API road_status road_tokenizer_chat_spans(const road_tokenizer *tok,
                                               const road_chat_params *p,
                                               const struct cJSON *messages, char **text,
                                               size_t *len, road_chat_span **spans,
                                               size_t *n_spans);
ROAD_API void road_chat_spans_free(road_chat_span *spans); /* NULL is a no-op */

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
