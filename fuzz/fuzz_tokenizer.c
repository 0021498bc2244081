/*
 * fuzz/fuzz_tokenizer.c - libFuzzer target for the tokenizer's encoder and decoder.
 *
 * The input is text. It is encoded with a small byte-level BPE tokenizer built in memory
 * (Split regex of Llama-3, NFC, added tokens with lstrip/rstrip, TemplateProcessing) and with
 * a SentencePiece-style one (Prepend/Replace, byte fallback, unk) and with the byte-level one
 * behind a chain of every Split behavior and splitter (String and empty matches, invert,
 * Digits, Punctuation, WhitespaceSplit, ByteLevel's own regex); checks: encoding never fails
 * on any bytes, ids are in range and within road_tokenizer_max_tokens, and decoding the ids
 * (batch and streaming) succeeds; for the byte-level tokenizer on valid UTF-8 without added
 * tokens, decode(encode(text)) == text. Seeds: fuzz/corpus/tokenizer/.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "road/config.h"
#include "road/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The byte-level vocabulary: the 256 byte characters (ids 0..255 in GPT-2 order is not needed:
 * the file lists them as \u escapes built at start-up) plus a few merges. */
static char *bytelevel_json(const char *pre_tokenizer) {
    static const char head[] = "{\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":";
    static const char tail[] =
        ","
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<bos>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
        "\"special_tokens\":{\"<bos>\":{\"id\":\"<bos>\",\"ids\":[262],\"tokens\":[\"<bos>\"]}}},"
        "\"decoder\":{\"type\":\"ByteLevel\"},"
        "\"added_tokens\":[{\"id\":262,\"content\":\"<bos>\",\"special\":true},"
        "{\"id\":263,\"content\":\"<x>\",\"lstrip\":true,\"rstrip\":true,\"special\":false}],"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{";
    size_t cap = 16384, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    n = (size_t)snprintf(s, cap, "%s%s%s", head, pre_tokenizer, tail);
    int printable_rank = 0;
    for (int b = 0; b < 256; b++) {
        bool pr = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = pr ? b : 256 + printable_rank++;
        n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x\":%d,", cp, b);
    }
    n += (size_t)snprintf(s + n, cap - n,
                          "\"he\":256,\"ll\":257,\"hell\":258,\"\\u0120t\":259,\"\\u0120th\":260,"
                          "\"hello\":261},\"merges\":[\"h e\",\"l l\",\"he ll\",\"\\u0120 t\","
                          "\"\\u0120t h\",\"hell o\"]}}");
    return s;
}

static const char SP_JSON[] =
    "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"fuse_unk\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"<0x41>\":2,\"<0xC3>\":3,\"<0xA9>\":4,\"\\u2581\":5,\"a\":6,\"b\":7,"
    "\"\\u2581a\":8,\"ab\":9,\"\\u2581ab\":10},"
    "\"merges\":[\"\\u2581 a\",\"a b\",\"\\u2581a b\"]}}";

/* Llama 3's split (decode(encode(text)) == text holds for it). */
static const char PRE_LLAMA3[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":["
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}";
/* Every split behavior, invert, empty matches, String patterns and the class splitters. */
static const char PRE_SPLITS[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":["
    "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"MergedWithPrevious\"},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"h*\"},\"behavior\":\"MergedWithNext\"},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Contiguous\",\"invert\":true},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?=[A-Z])|\\\\w+\"},\"behavior\":\"Removed\",\"invert\":true},"
    "{\"type\":\"Digits\",\"individual_digits\":false},{\"type\":\"Punctuation\"},"
    "{\"type\":\"WhitespaceSplit\"},{\"type\":\"ByteLevel\",\"add_prefix_space\":true}]}";

static road_tokenizer *tok_bl, *tok_sp, *tok_split;

static void check(const road_tokenizer *t, const uint8_t *data, size_t size, bool roundtrip) {
    size_t cap = road_tokenizer_max_tokens(t, size), n = 0;
    int32_t *ids = malloc((cap + 1) * sizeof *ids);
    if (!ids) return;
    if (road_tokenizer_encode(t, (const char *)data, size, true, ids, cap, &n) != ROAD_OK) {
        /* only the SentencePiece model can meet a character it has no token for: never, it
         * has unk; so any failure is a bug */
        abort();
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= road_tokenizer_vocab_size(t)) abort();
    char *text = NULL;
    size_t len = 0;
    if (road_tokenizer_decode(t, ids, n, true, &text, &len) != ROAD_OK) abort();
    if (roundtrip && (len != size || memcmp(text, data, size) != 0)) abort();
    road_string_free(text);
    road_tokenizer_stream *st = NULL;
    if (road_tokenizer_stream_create(t, false, &st) == ROAD_OK) {
        const char *p;
        size_t pl;
        for (size_t i = 0; i < n; i++)
            if (road_tokenizer_stream_push(st, ids[i], &p, &pl) != ROAD_OK) abort();
        if (road_tokenizer_stream_flush(st, &p, &pl) != ROAD_OK) abort();
        road_tokenizer_stream_free(st);
    }
    free(ids);
}

/* Valid UTF-8, already NFC (all code points below U+0300), no '<' (no added token). */
static bool plain(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (d[i] >= 0x80 || d[i] == '<') return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok_bl) {
        char *j = bytelevel_json(PRE_LLAMA3);
        if (!j || road_tokenizer_load_json(j, strlen(j), NULL, 0, &tok_bl) != ROAD_OK) abort();
        free(j);
        j = bytelevel_json(PRE_SPLITS);
        if (!j || road_tokenizer_load_json(j, strlen(j), NULL, 0, &tok_split) != ROAD_OK) abort();
        free(j);
        if (road_tokenizer_load_json(SP_JSON, sizeof SP_JSON - 1, NULL, 0, &tok_sp) != ROAD_OK)
            abort();
    }
    if (size > 65536) return 0;
    check(tok_bl, data, size, plain(data, size));
    check(tok_sp, data, size, false);
    check(tok_split, data, size, false);
    return 0;
}
