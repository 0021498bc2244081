#!/bin/sh
# tests/cli/outdir.sh ROAD FIXTURES - what each command does to an existing output folder
# (docs/cli.md): never destroys what road did not write, never the current folder or an
# input, replaces its own kind only with --overwrite, checks before loading anything, gives
# folders the umask's mode; road train resumes only its own run and says when it finished.
. "$(dirname "$0")/../cli_lib.sh"
# Work on a copy of the fixture model: a regression here would write over its inputs.
mkdir -p "$TMP/fix/llama" && cp -r "$FIX/llama/tiny-llama" "$TMP/fix/llama/"
MODEL="$TMP/fix/llama/tiny-llama"
ADA="A=$MODEL/adapters/A"

check() { # check DESCRIPTION CONDITION...
    what="$1"; shift
    if ! "$@"; then echo "FAIL: $what"; fails=$((fails + 1)); fi
}

# A folder of someone's work: refused by every writer, left as it was.
mkdir -p "$TMP/work/src" && echo "my notes" > "$TMP/work/notes.txt" && echo x > "$TMP/work/src/a.c"
expect 1 "notes.txt" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$TMP/work"
expect 1 "notes.txt" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$TMP/work" --overwrite
expect 1 "notes.txt" "$ROAD" init --config "$MODEL/config.json" --out "$TMP/work" --overwrite
expect 1 "notes.txt" "$ROAD" config --out "$TMP/work" --overwrite
check "the foreign folder is intact" test "$(cat "$TMP/work/notes.txt")" = "my notes" -a -f "$TMP/work/src/a.c"

# Never the current folder, the home folder, an input or a folder holding one.
(cd "$TMP/work" && "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out . > "$TMP/o" 2>&1); rc=$?
check "merge --out . refused ($rc)" test "$rc" -eq 1
check "merge --out . names the current folder" grep -q "current folder" "$TMP/o"
mkdir -p "$TMP/home"
expect 1 "home folder" env HOME="$TMP/home" "$ROAD" init --config "$MODEL/config.json" --out "$TMP/home"
expect 1 "is the input" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$MODEL"
expect 1 "holding the input" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$TMP/fix/llama"
check "the model folder is intact" test -f "$MODEL/config.json" -a -f "$MODEL/adapters/A/adapter_config.json"

# Checked before the model is loaded: a bad --out is reported even with a model that does
# not exist (the message is about --out, not about loading).
expect 1 "--out" "$ROAD" merge --model "$TMP/no-model" --adapter "$ADA" --out "$TMP/work"
expect 1 "output folder" "$ROAD" train --model "$TMP/no-model" --data "$TMP/work/notes.txt" --out "$TMP/work"

# Its own kind: replaced only with --overwrite; parents created; the umask's mode.
umask 022
expect 0 "merged A into" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$TMP/a/b/mg"
check "merged folder has mode 755" test "$(stat -c %a "$TMP/a/b/mg")" = 755
expect 1 "--overwrite" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$TMP/a/b/mg"
expect 0 "merged A into" "$ROAD" merge --model "$MODEL" --adapter "$ADA" --out "$TMP/a/b/mg" --overwrite --dtype bf16
check "replaced merge is bf16" grep -q bfloat16 "$TMP/a/b/mg/config.json"
expect 0 "freshly initialised" "$ROAD" init --config "$MODEL/config.json" --out "$TMP/init"
expect 1 "--overwrite" "$ROAD" init --config "$MODEL/config.json" --out "$TMP/init" --seed 4
expect 0 "freshly initialised" "$ROAD" init --config "$MODEL/config.json" --out "$TMP/init" --seed 4 --overwrite
expect 0 "wrote" "$ROAD" config --out "$TMP/cfg/deep"
expect 1 "--overwrite" "$ROAD" config --out "$TMP/cfg/deep" --variant road_2
expect 0 "wrote" "$ROAD" config --out "$TMP/cfg/deep" --variant road_2 --overwrite
# a config beside an adapter's weights would describe them wrongly
expect 1 "adapter_model.safetensors" "$ROAD" config --out "$MODEL/adapters/A" --overwrite
ls "$TMP" "$TMP/a/b" | grep -q '\.tmp\.\|\.old\.' && { echo "FAIL: leftovers"; fails=$((fails + 1)); }

# road train: a missing parent is created; a run resumes only itself.
i=0; : > "$TMP/task.jsonl"
while [ $i -lt 16 ]; do
    printf '{"input_ids": [%d, %d, %d, %d, %d, %d]}\n' $i $((i+7)) $((i+14)) $((i+21)) $((i+28)) $((i+35)) >> "$TMP/task.jsonl"
    i=$((i+1))
done
sed 's/\[0,/[1,/' "$TMP/task.jsonl" > "$TMP/other.jsonl"
T="$ROAD train --model $MODEL --targets q_proj,v_proj --group-size 8 --batch-size 4 --save-every 2 --max-steps 4"
expect 0 "adapter written to" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run"
check "train writes the finished state" grep -q '"finished": true' "$TMP/x/y/run/trainer_state.json"
expect 1 "--resume" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run"
expect 0 "already finished at step 4" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run" --resume
expect 1 "trainer.lr" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run" --resume --lr 0.01
expect 1 "data.hash" $T --data "$TMP/other.jsonl" --out "$TMP/x/y/run" --resume
expect 2 "choose one" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run" --resume --overwrite
# an unfinished run (as after kill -9): its checkpoint belongs to the task data
rm "$TMP/x/y/run/trainer_state.json" "$TMP/x/y/run/adapter_config.json" "$TMP/x/y/run/adapter_model.safetensors"
expect 1 "data.hash" $T --data "$TMP/other.jsonl" --out "$TMP/x/y/run" --resume
expect 1 "adapter.variant" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run" --resume --variant road_2
expect 0 "adapter written to" $T --data "$TMP/task.jsonl" --out "$TMP/x/y/run" --resume
expect 0 "adapter written to" $T --data "$TMP/other.jsonl" --out "$TMP/x/y/run" --overwrite
check "--overwrite replaced the old run" grep -q "$(basename "$TMP")/other.jsonl" "$TMP/x/y/run/trainer_state.json"
expect 1 "holding the input" $T --data "$TMP/task.jsonl" --out "$TMP"

finish outdir
