#!/bin/sh
# tests/cli/kv_dtype.sh ROAD FIXTURES - `--kv-dtype f32|bf16|f16` on road generate and road
# serve: a 16-bit KV cache generates (on tiny-llama, greedy, the same tokens as the float32
# cache: its logits move by ~1e-3, less than the gaps between these prompts' top logits), and
# any other value is a usage error naming the choices.
. "$(dirname "$0")/../cli_lib.sh"
M="$FIX/llama/tiny-llama"

gen() {
    "$ROAD" generate --model "$M" --prompt-ids "1 2 3 4 5 6 7 8 9 10" --prompt-ids "7 7" \
        --max-new-tokens 12 --stop-ids 9999 "$@"
}
f32=$(gen) || fail "generate exited $?"
dflt=$(gen --kv-dtype f32) || fail "generate --kv-dtype f32 exited $?"
[ "$f32" = "$dflt" ] || fail "f32 is not the default: '$f32' vs '$dflt'"
[ "$(printf '%s\n' "$f32" | wc -l)" -eq 2 ] || fail "expected 2 lines, got: $f32"
for t in bf16 f16; do
    got=$(gen --kv-dtype "$t") || fail "generate --kv-dtype $t exited $?"
    [ "$got" = "$f32" ] || fail "--kv-dtype $t: '$got', f32 cache: '$f32'"
done

expect 2 "--kv-dtype must be f32, bf16 or f16, got 'f8'" gen --kv-dtype f8
expect 2 "--kv-dtype must be f32, bf16 or f16, got 'BF16'" gen --kv-dtype BF16
expect 2 "--kv-dtype" gen --kv-dtype
expect 2 "--kv-dtype must be f32, bf16 or f16, got 'q8'" \
    "$ROAD" serve --model "$M" --port 0 --kv-dtype q8
expect 0 "--kv-dtype f32|bf16|f16" "$ROAD" serve --help
finish "kv-dtype"
