/*
 * tokenizer/nfc.h - tables of the NFC normalizer (private; generated data in
 * nfc_tables.c by tools/tokref/gen_nfc.js).
 */
#ifndef ROAD_TOKENIZER_NFC_H
#define ROAD_TOKENIZER_NFC_H

#include <stddef.h>
#include <stdint.h>

typedef struct road_nfc_ccc {
    uint32_t cp, ccc; /* canonical combining class (only non-zero ones are listed) */
} road_nfc_ccc;

typedef struct road_nfc_pair {
    uint32_t a, b, c; /* decomposition: a -> (b, c); composition: (a, b) -> c */
} road_nfc_pair;

extern const road_nfc_ccc road__nfc_ccc_table[];
extern const size_t road__nfc_ccc_count;
extern const road_nfc_pair road__nfc_decomp_table[]; /* c = 0 for a single-character mapping */
extern const size_t road__nfc_decomp_count;
extern const road_nfc_pair road__nfc_compose_table[]; /* sorted by (a, b) */
extern const size_t road__nfc_compose_count;

#endif
