/*
 * tokenizer/text_util.h - the bottom of the tokenizer (private): growable buffers, UTF-8, the
 * GPT-2 byte map, the string pool and the lookup tables of token strings and merges.
 *
 * Every file of tokenizer/ may use these; text_util.c uses nothing of the files above it, so
 * the tokenizer's files depend on each other without circles (text_util.c has the order).
 */
#ifndef ROAD_TOKENIZER_TEXT_UTIL_H
#define ROAD_TOKENIZER_TEXT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "road/tokenizer.h"

/* A run of bytes (offset, length) in a buffer: a token string in the pool, a piece of text. */
typedef struct tok_span {
    uint32_t off, len;
} tok_span;

/* ---- growable buffers ---- */
/* A growable byte buffer (road__realloc). */
typedef struct tok_buf {
    char *p;
    size_t len, cap;
} tok_buf;
road_status road__tok_buf_put(tok_buf *b, const void *s, size_t n);
road_status road__tok_buf_reserve(tok_buf *b, size_t extra);
/* A list of pieces (offset, length) into a text buffer. */
typedef struct tok_pieces {
    tok_span *v;
    size_t n, cap;
} tok_pieces;
road_status road__tok_pieces_push(tok_pieces *p, size_t off, size_t len);

/* ---- UTF-8 ---- */
/* Copy s to out, every maximal invalid UTF-8 subsequence replaced by U+FFFD. */
road_status road__tok_utf8_sanitize(const char *s, size_t len, tok_buf *out);
/* Length of the valid UTF-8 sequence at s (1-4), 0 if invalid or incomplete; *cp its value. */
int road__tok_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);
int road__tok_utf8_encode(uint32_t cp, char *out);
/* Python's str.strip() / lstrip() / rstrip() of whitespace (str.isspace, Unicode included) on
 * the UTF-8 text (*s, *n): moves *s and shrinks *n. */
void road__tok_py_strip(const char **s, size_t *n, bool left, bool right);
/* Bytes of the Python whitespace character at the start of s[0..n) (0: none). */
size_t road__tok_py_space(const char *s, size_t n);
/* GPT-2 byte map: byte -> code point, and back (-1 for code points outside the map). */
uint32_t road__tok_byte_to_cp(uint8_t b);
int road__tok_cp_to_byte(uint32_t cp);

/* ---- string pool and lookups (the tables are sized and allocated by load.c) ---- */
/* Copy s[0..len) into the pool, NUL-terminated; *out is where it lies. */
road_status road__tok_pool_add(road_tokenizer *t, const char *s, size_t len, tok_span *out);
/* Insert model token `id` (its piece must be set); false if the string is already there. */
bool road__tok_piece_insert(road_tokenizer *t, int32_t id);
/* Id of the model token whose string is s[0..len), or -1 (added tokens: token_to_id). */
int32_t road__tok_lookup(const road_tokenizer *t, const char *s, size_t len);
/* Record the merge (a, b) -> new_id at `rank`. */
void road__tok_merge_insert(road_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t new_id);
bool road__tok_merge_find(const road_tokenizer *t, int32_t a, int32_t b, uint32_t *rank,
                          int32_t *new_id);

#endif
