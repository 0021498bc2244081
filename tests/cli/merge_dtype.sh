#!/bin/sh
# tests/cli/merge_dtype.sh ROAD FIXTURES - `road merge` writes the dtype the base stores its
# linear weights in unless --dtype says otherwise, and says which it chose: a bf16 base
# (tiny-qwen2, one file; tiny-gemma3, two shards) stays bf16, a float32 one (tiny-llama) stays
# float32, --dtype overrides either way; a base whose weights say nothing (quantized) falls back
# to config.json's torch_dtype.
. "$(dirname "$0")/../cli_lib.sh"

# st_dtypes FILE: the dtypes a safetensors file's header names, sorted, one line.
st_dtypes() {
    n=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    tail -c +9 "$1" | head -c "$n" | grep -o '"dtype": *"[A-Z0-9]*"' | sed 's/.*"\([A-Z0-9]*\)"$/\1/' |
        sort -u | tr '\n' ' '
}
# check_out DIR WANT_DTYPE WANT_TORCH_DTYPE: every tensor of DIR in WANT_DTYPE, config.json says so
check_out() {
    got=""
    for f in "$1"/*.safetensors; do got="$got$(st_dtypes "$f")"; done
    got=$(echo $got | tr ' ' '\n' | sort -u | tr '\n' ' ')
    [ "$got" = "$2 " ] || fail "$1: tensors in '$got', expected '$2'"
    grep -q "\"torch_dtype\": *\"$3\"" "$1/config.json" || fail "$1/config.json: torch_dtype is not $3"
}

Q="$FIX/llama/tiny-qwen2"
[ "$(st_dtypes "$Q/model.safetensors")" = "BF16 " ] || fail "the fixture tiny-qwen2 is not bf16"
expect 0 "(bf16: as the base stores its linear weights" \
    "$ROAD" merge --model "$Q" --adapter A="$Q/adapters/A" --out "$TMP/q"
check_out "$TMP/q" BF16 bfloat16
expect 0 "(f32: --dtype" "$ROAD" merge --model "$Q" --adapter A="$Q/adapters/A" --out "$TMP/q32" \
    --dtype f32
check_out "$TMP/q32" F32 float32

G="$FIX/llama/tiny-gemma3" # sharded
expect 0 "(bf16: as the base stores its linear weights" \
    "$ROAD" merge --model "$G" --adapter A="$G/adapters/A" --out "$TMP/g"
check_out "$TMP/g" BF16 bfloat16

L="$FIX/llama/tiny-llama"
expect 0 "(f32: as the base stores its linear weights" \
    "$ROAD" merge --model "$L" --adapter A="$L/adapters/A" --out "$TMP/l"
check_out "$TMP/l" F32 float32
expect 0 "(f16: --dtype" "$ROAD" merge --model "$L" --adapter A="$L/adapters/A" --out "$TMP/l16" \
    --dtype f16
check_out "$TMP/l16" F16 float16

# A merged bf16 model merges again as bf16 (what it stores now).
expect 0 "(bf16: as the base stores its linear weights" \
    "$ROAD" merge --model "$TMP/q" --adapter A="$Q/adapters/A" --out "$TMP/q2"
check_out "$TMP/q2" BF16 bfloat16

# Quantized linear weights (packed U8) say nothing about floats: config.json's torch_dtype.
expect 0 "linear layers nf4" "$ROAD" merge --model "$Q" --adapter A="$Q/adapters/A" \
    --out "$TMP/qq" --quantize nf4
expect 0 "(bf16: the base's config.json torch_dtype" \
    "$ROAD" merge --model "$TMP/qq" --adapter A="$Q/adapters/A" --out "$TMP/qq2"
finish merge_dtype
