/*
 * llm/rope.h - a model's RoPE: its frequencies for every scaling type and the cos/sin table of
 * a ragged batch (private to llm/).
 *
 * Numbers follow transformers' modeling_rope_utils (the _compute_*_parameters functions, in
 * float32 where they compute in float32) and its rotary embedding's forward: angle = position
 * x inv_freq rounded to float, cos and sin times the attention factor (yarn, longrope).
 *
 * Two types choose their frequencies by a sequence's length (transformers: by the batch's
 * max(position_ids) + 1). Here that length is each sequence's own: the tokens it holds after
 * the call, its KV cache plus its new rows (training and cacheless forwards: its rows). So a
 * sequence gets the same numbers in any batch, alone or mixed with others, prefill or decode,
 * training or inference. dynamic: a sequence longer than max_position_embeddings takes the
 * base theta x (factor L / max - (factor - 1))^(d / (d - 2)); longrope: one longer than
 * original_max_position_embeddings takes long_factor. Keys already in a cache keep the
 * rotation they were stored with, as in transformers.
 *
 * Legend: R rows of the batch, rot rotary dims (rot/2 frequencies).
 */
#ifndef ROAD_LLM_ROPE_H
#define ROAD_LLM_ROPE_H

#include <stdint.h>

#include "road/llm.h"

typedef struct road_rope {
    road_rope_type type;
    int64_t rot;          /* rotary dims: the table's width */
    float *inv_freq;      /* (rot/2) every sequence's frequencies; dynamic: those of sequences
                             of at most long_after tokens; longrope: short_factor's */
    float *inv_freq_long; /* (rot/2) longrope: long_factor's, else NULL */
    float *scratch;       /* (rot/2) dynamic: a longer sequence's frequencies, else NULL */
    int64_t long_after;   /* dynamic: max_position_embeddings; longrope: the original one */
    float attn_factor;    /* cos and sin times this (yarn, longrope); 1: untouched */
    double theta, factor; /* dynamic: the base and factor a longer sequence's base comes from */
} road_rope;

/* r for config c: its scaling when `scaled` (the model's RoPE), plain RoPE with base theta
 * otherwise (gemma3's sliding layers). Allocates r's arrays (free them with road__rope_free);
 * on failure r holds nothing. */
road_status road__rope_init(road_rope *r, const road_llm_config *c, double theta, bool scaled);
void road__rope_free(road_rope *r);

/* The frequencies (rot/2) a sequence of seq_len tokens uses: r's arrays, or (dynamic, longer
 * than max_position_embeddings) computed into r->scratch. */
const float *road__rope_freqs(const road_rope *r, int64_t seq_len);

/* cs (R, rot): each row's cos then sin (road__rope_table's layout) for its position pos[r],
 * with the frequencies of its sequence's length and r's attention factor. Sequence s holds
 * rows seq_r0[s] .. seq_r0[s] + seq_rows[s] - 1 and seq_p0[s] tokens before them.
 *   cs (R, rot), pos (R), seq_r0, seq_rows, seq_p0 (n_seq) */
void road__rope_fill(float *cs, const road_rope *r, const int64_t *pos, int64_t R,
                     const int64_t *seq_r0, const int64_t *seq_rows, const int64_t *seq_p0,
                     int64_t n_seq);

#endif
