#!/bin/sh
# tests/cli/train_memory.sh ROAD FIXTURES - `road train` prints its memory estimate before the
# first step and refuses a run that does not fit, naming settings that would (docs/training.md):
# the memory is forced small with ROAD_TRAIN_MEMORY_BUDGET; --ignore-memory-check trains anyway.
. "$(dirname "$0")/../cli_lib.sh"
MODEL="$FIX/llama/tiny-llama"
DATA="$TMP/d.jsonl"
i=0
while [ $i -lt 12 ]; do # 12 examples of 20 tokens
    j=0; ids=""
    while [ $j -lt 20 ]; do ids="$ids${ids:+, }$(( (i * 13 + j * 7) % 64 ))"; j=$((j + 1)); done
    echo "{\"input_ids\": [$ids]}" >> "$DATA"
    i=$((i + 1))
done
TRAIN="train --model $MODEL --data $DATA --max-steps 1 --batch-size 4 --group-size 8"

# Fits: the estimate by part, then training.
expect 0 "activations" env ROAD_TRAIN_MEMORY_BUDGET=64M "$ROAD" $TRAIN --out "$TMP/a"
for part in "memory for micro-batches of 4 x 20 tokens" weights gradients optimizer workspaces \
    total "with --recompute" "of 67.1 MB (ROAD_TRAIN_MEMORY_BUDGET)"; do
    case "$out" in *"$part"*) ;; *) fail "the estimate lacks '$part': $out" ;; esac
done
[ -f "$TMP/a/adapter_model.safetensors" ] || fail "the run that fits did not write its adapter"

# Does not fit (4 x 20 tokens need about 2.1 MB): refused before anything is written, with
# the settings that fit: --recompute, a smaller batch with more accumulation (the same 4
# examples a step).
expect 1 "not enough memory" env ROAD_TRAIN_MEMORY_BUDGET=1.8M "$ROAD" $TRAIN --out "$TMP/b"
for part in "  --recompute" "--batch-size 2 --grad-accum 2 " "--ignore-memory-check"; do
    case "$out" in *"$part"*) ;; *) fail "the refusal lacks '$part': $out" ;; esac
done
[ -e "$TMP/b" ] && fail "a refused run created its output folder"
# The suggestions fit: each one trains under the same budget.
expect 0 "done" env ROAD_TRAIN_MEMORY_BUDGET=1.8M "$ROAD" $TRAIN --out "$TMP/c" --recompute
expect 0 "done" env ROAD_TRAIN_MEMORY_BUDGET=1.8M "$ROAD" $TRAIN --out "$TMP/d" --batch-size 2 \
    --grad-accum 2
# Not even one sequence: a shorter --max-len; nothing at all: said so.
expect 1 "--recompute --max-len" env ROAD_TRAIN_MEMORY_BUDGET=0.7M "$ROAD" $TRAIN --out "$TMP/e"
expect 1 "use a machine with more memory" env ROAD_TRAIN_MEMORY_BUDGET=100k "$ROAD" $TRAIN \
    --out "$TMP/e"
# --ignore-memory-check trains anyway, with a warning.
expect 0 "training anyway" env ROAD_TRAIN_MEMORY_BUDGET=1.8M "$ROAD" $TRAIN --out "$TMP/f" \
    --ignore-memory-check
# A malformed budget is a usage error.
expect 2 "is not a size" env ROAD_TRAIN_MEMORY_BUDGET=lots "$ROAD" $TRAIN --out "$TMP/g"
# Without a budget: checked against MemAvailable.
expect 0 "available (MemAvailable)" "$ROAD" $TRAIN --out "$TMP/h"
finish train_memory
