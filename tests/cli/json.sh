#!/bin/sh
# tests/cli/json.sh ROAD FIXTURES - JSON the road command reads (shard indexes, training data)
# goes through road's strict parser: text after the object is refused, a \u0000 in a string is
# refused naming the field (never cut short there), and training lines skipped or truncated
# at --max-len are counted per reason on stderr.
. "$(dirname "$0")/../cli_lib.sh"


# A sharded model folder whose index has text after the object, then a NUL in a file name
# (cJSON read "model.safetensors" from both and went on).
M="$TMP/sharded"
mkdir -p "$M"
cp "$FIX/llama/tiny-llama/config.json" "$FIX/llama/tiny-llama/model.safetensors" "$M/"
printf '{"weight_map": {"model.embed_tokens.weight": "model.safetensors"}} trailing\n' \
    > "$M/model.safetensors.index.json"
expect 1 "extra text after the JSON value" "$ROAD" inspect "$M"
printf '{"weight_map": {"model.embed_tokens.weight": "model.safetensors\\u0000.bak"}}\n' \
    > "$M/model.safetensors.index.json"
expect 1 'the string at weight_map["model.embed_tokens.weight"] holds \u0000 (NUL)' "$ROAD" inspect "$M"

# Training data: a NUL in a string is refused with the line and the field.
printf '{"input_ids": [1, 5, 9]}\n{"input_ids": [1, 5, 9], "note": "a\\u0000b"}\n' > "$TMP/nul.jsonl"
expect 1 "nul.jsonl: line 2 is refused (column 36): the string at note holds \\u0000 (NUL)" \
    "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/nul.jsonl" --out "$TMP/t1" \
    --max-steps 1 --targets q_proj --group-size 8

# Lines past --max-len are counted, per reason, not silently dropped.
{
    printf '{"input_ids": [1, 5, 9, 33, 2, 7]}\n'
    printf '{"input_ids": [1, 5, 9, 33, 2, 7, 8, 4], "labels": [-100, -100, -100, -100, -100, -100, 8, 4]}\n'
    printf '{"input_ids": [1, 5, 9, 33, 2, 7, 8, 4, 3]}\n'
} > "$TMP/len.jsonl"
expect 0 "len.jsonl: 3 lines -> 2 examples; 1 skipped: every token with a loss (the completion or assistant turn) lies at or past max_len 6" \
    "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/len.jsonl" --out "$TMP/t2" \
    --max-steps 1 --max-len 6 --targets q_proj --group-size 8
case "$out" in *"1 truncated to max_len 6 (3 tokens past it not trained on)"*) ;;
    *) echo "FAIL: no truncation count: $out"; fails=$((fails + 1)) ;; esac

finish json
