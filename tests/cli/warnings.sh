#!/bin/sh
# tests/cli/warnings.sh ROAD FIXTURES - warnings raised inside the library reach the user on
# every command, on stderr, once per distinct message.
. "$(dirname "$0")/../cli_lib.sh"

# A model folder whose generation_config.json sets a knob road's sampler does not implement.
M="$TMP/model"
mkdir -p "$M"
cp "$FIX/llama/tiny-llama/config.json" "$FIX/llama/tiny-llama/model.safetensors" "$M/"
printf '{"bos_token_id": 1, "eos_token_id": 2, "repetition_penalty": 1.3}\n' > "$M/generation_config.json"
W="warning: generation_config.json sets repetition_penalty = 1.3"
err=$("$ROAD" generate --model "$M" --prompt-ids "1 2 3" --max-new-tokens 2 2>&1 >/dev/null) ||
    fail "generate exited $?"
case "$err" in *"road generate: $W"*) ;; *) fail "generate did not warn: $err" ;; esac
printf '{"input_ids": [1, 5, 9, 33, 2, 7, 8]}\n' > "$TMP/ids.jsonl"
err=$("$ROAD" train --model "$M" --data "$TMP/ids.jsonl" --out "$TMP/tr" --max-steps 1 \
      --targets q_proj --group-size 8 2>&1 >/dev/null) || fail "train exited $?"
case "$err" in *"road train: $W"*) ;; *) fail "train did not warn: $err" ;; esac

# One warning per layer (merging into every quantized layer) is printed once, with a count.
"$ROAD" merge --model "$FIX/llama/tiny-llama" --adapter A="$FIX/llama/tiny-llama/adapters/A" \
      --quantize int8 --out "$TMP/mq" >/dev/null 2>&1 || fail "merge --quantize exited $?"
err=$("$ROAD" merge --model "$TMP/mq" --adapter A="$FIX/llama/tiny-llama/adapters/A" \
      --out "$TMP/mq2" 2>&1 >/dev/null) || fail "merge exited $?"
n=$(printf '%s\n' "$err" | grep -c "quantized again")
[ "$n" -eq 1 ] || fail "the requantize warning came $n times: $err"
case "$err" in *"(the same warning "*" more time"*) ;; *) fail "no repeat count: $err" ;; esac

finish warnings
