#!/bin/sh
# tests/cli/int8_activations.sh ROAD FIXTURES - `--int8-activations` (x rounded to int8 for
# the decode of int8/nf4/fp4 layers, AVX512-VNNI): on a CPU with VNNI, road generate and road
# eval run with it (greedy tokens on tiny-llama nf4 as the exact kernels give them: its logits
# move by ~1% of their range, less than the gaps between these prompts' top logits); without
# VNNI the load fails naming the instruction set and the fix. road train refuses the flag.
. "$(dirname "$0")/../cli_lib.sh"
M="$FIX/llama/tiny-llama"

gen() {
    "$ROAD" generate --model "$M" --quantize nf4 --prompt-ids "1 2 3 4 5 6 7 8 9 10" \
        --prompt-ids "7 7" --max-new-tokens 12 --stop-ids 9999 "$@"
}
exact=$(gen) || fail "generate exited $?"
if grep -q avx512_vnni /proc/cpuinfo 2>/dev/null && grep -q avx512bw /proc/cpuinfo; then
    got=$(gen --int8-activations) || fail "generate --int8-activations exited $?"
    [ "$got" = "$exact" ] || fail "--int8-activations: '$got', exact kernels: '$exact'"
else
    expect 1 "AVX512-VNNI" gen --int8-activations
fi
expect 2 "--int8-activations is for generate, eval and serve" \
    "$ROAD" train --model "$M" --data "$FIX/data/tiny.jsonl" --out /nonexistent --quantize nf4 \
    --int8-activations
expect 0 "--int8-activations" "$ROAD" generate --help
finish "int8-activations"
