#!/bin/sh
# tests/cli/quantize.sh ROAD FIXTURES - `road quantize` writes a model folder with its linear
# layers quantized once, from their float32 values: loading it generates exactly what loading
# the float model with --quantize generates (same packed weights, no quantizing at start), for
# a float32 base (tiny-llama) and a bf16 one (tiny-qwen2), nf4 with double quantization and
# int8; the folder carries transformers' quantization_config; already quantized input and
# 16-bit formats are refused.
. "$(dirname "$0")/../cli_lib.sh"

IDS="1 5 9 33 2 100 7"
for spec in "tiny-llama nf4 --double-quant" "tiny-qwen2 nf4" "tiny-qwen2 int8"; do
    set -- $spec
    M="$FIX/llama/$1"
    fmt=$2
    shift 2
    OUT="$TMP/$(basename "$M")-$fmt"
    expect 0 "quantized ($fmt) into $OUT" "$ROAD" quantize --model "$M" --out "$OUT" --quantize "$fmt" "$@"
    grep -q '"quantization_config"' "$OUT/config.json" || fail "$OUT/config.json has no quantization_config"
    want=$("$ROAD" generate --model "$M" --quantize "$fmt" "$@" --prompt-ids "$IDS" --max-new-tokens 8 --temperature 0 2>/dev/null)
    got=$("$ROAD" generate --model "$OUT" --prompt-ids "$IDS" --max-new-tokens 8 --temperature 0 2>/dev/null)
    [ -n "$want" ] && [ "$got" = "$want" ] || fail "$OUT generates '$got', --quantize $fmt on the base '$want'"
done
expect 1 "already quantized" "$ROAD" quantize --model "$TMP/tiny-llama-nf4" --out "$TMP/again" --quantize int8
expect 2 "int8, nf4 or fp4" "$ROAD" quantize --model "$FIX/llama/tiny-llama" --out "$TMP/x" --quantize bf16
expect 2 "--quantize" "$ROAD" quantize --model "$FIX/llama/tiny-llama" --out "$TMP/x"
finish quantize
