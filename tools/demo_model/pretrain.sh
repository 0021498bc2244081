#!/bin/sh
# tools/demo_model/pretrain.sh - rebuild road's demo model (demo/model) and tasks (demo/tasks)
# from nothing: generate the text, initialise a Llama, pretrain it with `road train --full`.
#
#   ./tools/demo_model/pretrain.sh [WORK_DIR]      (default: build/demo-pretrain)
#
# Needs python3 (Debian's) and a built ./build/road. Three phases of `road train --full` on
# freshly generated text (new words each phase; the demo tasks' eval words never appear):
# 3000 steps of 16 documents at lr 3e-3, then 4000 at 2e-3, then 4000 at 1e-3, each cosine
# with 100 warmup steps (20.5M tokens; about 75 minutes on 2 quiet cores). The result is deterministic for a given machine and
# thread count; float summation order makes other thread counts differ in the last bits.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${1:-$ROOT/build/demo-pretrain}
ROAD=${ROAD:-$ROOT/build/road}
STEPS1=${STEPS1:-3000}
STEPS2=${STEPS2:-4000}
STEPS3=${STEPS3:-4000}
rm -rf "$WORK"
mkdir -p "$WORK"
python3 "$ROOT/tools/demo_model/make_data.py" --out "$WORK/data" --docs $((STEPS1 * 16)) --seed 1
python3 "$ROOT/tools/demo_model/make_data.py" --out "$WORK/data2" --docs $((STEPS2 * 16)) --seed 3
python3 "$ROOT/tools/demo_model/make_data.py" --out "$WORK/data3" --docs $((STEPS3 * 16)) --seed 4
"$ROAD" init --config "$ROOT/tools/demo_model/config.json" --tokenizer "$WORK/data/tokenizer" \
  --seed 0 --out "$WORK/init"
"$ROAD" train --full --model "$WORK/init" --data "$WORK/data/pretrain.jsonl" --out "$WORK/run1" \
  --lr 3e-3 --schedule cosine --warmup 100 --weight-decay 0.1 --max-steps "$STEPS1" \
  --batch-size 16 --max-len 192 --save-every 500 --save-dtype bf16 --threads 2
"$ROAD" train --full --model "$WORK/run1" --data "$WORK/data2/pretrain.jsonl" --out "$WORK/run2" \
  --lr 2e-3 --schedule cosine --warmup 100 --weight-decay 0.1 --max-steps "$STEPS2" \
  --batch-size 16 --max-len 192 --save-every 1000 --save-dtype bf16 --seed 2 --threads 2
"$ROAD" train --full --model "$WORK/run2" --data "$WORK/data3/pretrain.jsonl" --out "$WORK/run" \
  --lr 1e-3 --schedule cosine --warmup 100 --weight-decay 0.1 --max-steps "$STEPS3" \
  --batch-size 16 --max-len 192 --save-every 1000 --save-dtype bf16 --seed 3 --threads 2
mkdir -p "$ROOT/demo/model"
for f in config.json model.safetensors generation_config.json tokenizer.json \
  tokenizer_config.json special_tokens_map.json; do
  cp "$WORK/run/$f" "$ROOT/demo/model/$f"
done
rm -rf "$ROOT/demo/tasks"
cp -r "$WORK/data/tasks" "$ROOT/demo/tasks"
cat "$WORK/run1/train_log.jsonl" "$WORK/run2/train_log.jsonl" "$WORK/run/train_log.jsonl" \
  > "$ROOT/demo/model/pretrain_log.jsonl"
echo "demo model written to $ROOT/demo/model"
