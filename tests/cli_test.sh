#!/bin/sh
# tests/cli_test.sh ROAD FIXTURES - the road command: exit codes, messages, and real runs.
# Each check prints what it ran when it fails.
. "$(dirname "$0")/cli_lib.sh"


expect 2 "usage: road <command>" "$ROAD"
expect 0 "commands:" "$ROAD" help
expect 0 "road 0." "$ROAD" version
expect 2 "unknown command 'frobnicate'" "$ROAD" frobnicate
expect 2 "unknown option '--bogus'" "$ROAD" inspect --bogus
expect 2 "missing the adapter folder" "$ROAD" inspect
expect 1 "has no adapter_config.json (nor sub-folders with one) and no config.json" "$ROAD" inspect "$TMP"
expect 1 "cannot open folder" "$ROAD" inspect "$TMP/does-not-exist"

# PEFT-written adapters
expect 0 "road_4" "$ROAD" inspect "$FIX/golden/e2e_adapters/mlp_wide"
expect 0 "trainable params  320" "$ROAD" inspect "$FIX/golden/e2e_adapters/mlp_wide"
expect 0 "lin0" "$ROAD" inspect "$FIX/golden/e2e_adapters/mlp"
expect 0 "adapter mlp_wide" "$ROAD" inspect "$FIX/golden/e2e_adapters"

# config
expect 2 "--out DIR, or --print" "$ROAD" config
expect 2 "road_1, road_2 or road_4" "$ROAD" config --print --variant road_3
expect 2 "--group-size must be an integer" "$ROAD" config --print --group-size 6x
expect 2 "--group-size needs a value" "$ROAD" config --print --group-size
expect 0 '"variant": "road_2"' "$ROAD" config --print --variant road_2 --targets q_proj,v_proj
expect 0 "wrote" "$ROAD" config --out "$TMP/cfg" --variant road_4 --group-size 8 --targets all-linear
expect 0 "all-linear" "$ROAD" inspect "$TMP/cfg"
expect 0 "weights           none" "$ROAD" inspect "$TMP/cfg"

# broken adapter folder: LoRA config
mkdir -p "$TMP/lora"
printf '{"peft_type": "LORA", "r": 8}' > "$TMP/lora/adapter_config.json"
expect 1 "LORA" "$ROAD" inspect "$TMP/lora"

# demo: bad flags and a missing model (the demo itself runs in the `demo` test)
expect 2 "--steps must be" "$ROAD" demo --steps 0
expect 2 "unknown option" "$ROAD" demo --size 100
expect 1 "loading the demo model" "$ROAD" demo --model "$TMP/no-model"
expect 2 "choose none, int8, nf4, fp4, bf16 or f16" "$ROAD" demo --quantize nf5

# road merge: float and quantized model folders out
expect 2 "at least one --adapter" "$ROAD" merge --model "$FIX/llama/tiny-llama" --out "$TMP/mg"
expect 1 "no-such" "$ROAD" merge --model "$FIX/llama/tiny-llama" --adapter A="$TMP/no-such" --out "$TMP/mg"
expect 0 "merged A into" "$ROAD" merge --model "$FIX/llama/tiny-llama" --adapter A="$FIX/llama/tiny-llama/adapters/A" --out "$TMP/mg" --dtype bf16
expect 0 "stored BF16" "$ROAD" inspect "$TMP/mg"
expect 0 "linear layers nf4" "$ROAD" merge --model "$FIX/llama/tiny-llama" --adapter A="$FIX/llama/tiny-llama/adapters/A" --out "$TMP/mgq" --quantize nf4
expect 0 "U8 x 28" "$ROAD" inspect "$TMP/mgq"

# road init, then full fine-tuning of what it wrote
expect 2 "--config and --out are required" "$ROAD" init --out "$TMP/init"
expect 2 "--dtype must be f32, bf16 or f16" "$ROAD" init --config "$FIX/llama/tiny-llama/config.json" --out "$TMP/init" --dtype f8
expect 0 "freshly initialised" "$ROAD" init --config "$FIX/llama/tiny-llama/config.json" --out "$TMP/init" --seed 3 --dtype bf16
expect 0 "parameters        133440" "$ROAD" inspect "$TMP/init"
printf '{"input_ids": [1, 2, 3, 4, 5, 6]}\n{"input_ids": [7, 8, 9, 10]}\n' > "$TMP/ids.jsonl"
expect 2 "--variant, --group-size" "$ROAD" train --full --variant road_2 --model "$TMP/init" --data "$TMP/ids.jsonl" --out "$TMP/full"
expect 2 "--save-dtype applies to --full" "$ROAD" train --save-dtype bf16 --model "$TMP/init" --data "$TMP/ids.jsonl" --out "$TMP/full"
expect 0 "model written to" "$ROAD" train --full --model "$TMP/init" --data "$TMP/ids.jsonl" --out "$TMP/full" --max-steps 2 --save-dtype bf16
expect 0 "stored BF16" "$ROAD" inspect "$TMP/full"

# model folders (tests/fixtures/llama): described, and every tensor checked against config.json
LL="$FIX/llama/tiny-llama"
expect 0 "model_type        llama" "$ROAD" inspect "$LL"
expect 0 "heads             4 (key/value heads 2, head_dim 16)" "$ROAD" inspect "$LL"
expect 0 "parameters        133440" "$ROAD" inspect "$LL"
expect 0 "bytes on disk     535904" "$ROAD" inspect "$LL"
expect 0 "down_proj          [64, 176]" "$ROAD" inspect "$LL"
expect 0 "lm_head            [320, 64]" "$ROAD" inspect "$LL"
expect 0 "every tensor road loads is present" "$ROAD" inspect "$LL"
expect 0 "tied embeddings   yes" "$ROAD" inspect "$FIX/llama/tiny-qwen2"
expect 0 "q_proj             [64, 64] + bias" "$ROAD" inspect "$FIX/llama/tiny-qwen2"
expect 0 "stored BF16 x 26" "$ROAD" inspect "$FIX/llama/tiny-qwen2"
expect 0 "theta 1000000, scaling none" "$ROAD" inspect "$FIX/llama/tiny-qwen2"
expect 0 "2 shards (model.safetensors.index.json)" "$ROAD" inspect "$FIX/llama/tiny-llama3-rope"
expect 0 "scaling llama3 (factor 8" "$ROAD" inspect "$FIX/llama/tiny-llama3-rope"
expect 0 "model-00002-of-00002.safetensors         268136 bytes" "$ROAD" inspect "$FIX/llama/tiny-llama3-rope"
expect 0 "adapter A" "$ROAD" inspect "$LL/adapters"
mkdir -p "$TMP/m-noweights" "$TMP/m-gemma" "$TMP/m-wider" "$TMP/m-shard" "$TMP/m-escape"
cp "$LL/config.json" "$TMP/m-noweights/"
expect 1 "neither model.safetensors nor model.safetensors.index.json" "$ROAD" inspect "$TMP/m-noweights"
sed 's/"model_type": "llama"/"model_type": "gemma"/' "$LL/config.json" > "$TMP/m-gemma/config.json"
cp "$LL/model.safetensors" "$TMP/m-gemma/"
expect 1 'model_type "gemma" is not supported' "$ROAD" inspect "$TMP/m-gemma"
sed 's/"intermediate_size": 176/"intermediate_size": 192/' "$LL/config.json" > "$TMP/m-wider/config.json"
cp "$LL/model.safetensors" "$TMP/m-wider/"
expect 1 "'model.layers.1.mlp.down_proj.weight' is [64, 176], config.json implies [64, 192]" "$ROAD" inspect "$TMP/m-wider"
expect 1 "road cannot load this checkpoint" "$ROAD" inspect "$TMP/m-wider"
cp "$FIX/llama/tiny-llama3-rope/config.json" "$FIX/llama/tiny-llama3-rope/model.safetensors.index.json" \
   "$FIX/llama/tiny-llama3-rope/model-00001-of-00002.safetensors" "$TMP/m-shard/"
expect 1 "model-00002-of-00002.safetensors" "$ROAD" inspect "$TMP/m-shard"
cp "$LL/config.json" "$TMP/m-escape/"
printf '{"weight_map": {"lm_head.weight": "../x.safetensors"}}' > "$TMP/m-escape/model.safetensors.index.json"
expect 1 "shard names must be plain file names" "$ROAD" inspect "$TMP/m-escape"
printf '{"weight_map": []}' > "$TMP/m-escape/model.safetensors.index.json"
expect 1 "is not a shard index" "$ROAD" inspect "$TMP/m-escape"
expect 0 "model folder" "$ROAD" inspect --help


# train: a few steps on pre-tokenized data, the result is a PEFT folder; resume continues
i=0; : > "$TMP/task.jsonl"
while [ $i -lt 16 ]; do
    printf '{"input_ids": [%d, %d, %d, %d, %d, %d]}\n' $i $((i+7)) $((i+14)) $((i+21)) $((i+28)) $((i+35)) >> "$TMP/task.jsonl"
    i=$((i+1))
done
expect 2 "--model, --data and --out are required" "$ROAD" train --model "$FIX/llama/tiny-llama"
expect 2 "--lr must be a number" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/tr" --lr x
expect 1 "line 1" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/lora/adapter_config.json" --out "$TMP/tr" --group-size 8
expect 0 "adapter written to" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/tr" --targets q_proj,v_proj --group-size 8 --max-steps 4 --batch-size 4 --save-every 2
expect 0 "road_1" "$ROAD" inspect "$TMP/tr"
if ! grep -q '"max_steps"' "$TMP/tr/run_config.json" 2>/dev/null; then
    echo "FAIL: road train did not write run_config.json with its arguments"; fails=$((fails + 1))
fi
expect 0 "model.layers.1.self_attn.v_proj" "$ROAD" inspect "$TMP/tr"
# resume: a finished run is not redone; the linear schedule's length cannot change (every
# step's learning rate would), a constant schedule's stopping point can (the run continues)
expect 0 "already finished at step 4" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/tr" --targets q_proj,v_proj --group-size 8 --max-steps 4 --batch-size 4 --save-every 2 --resume
expect 1 "trainer.max_steps (was 4, now 6)" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/tr" --targets q_proj,v_proj --group-size 8 --max-steps 6 --batch-size 4 --save-every 2 --resume
expect 0 "adapter written to" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/trc" --targets q_proj,v_proj --group-size 8 --max-steps 4 --batch-size 4 --save-every 2 --schedule constant
expect 0 "adapter written to" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/trc" --targets q_proj,v_proj --group-size 8 --max-steps 6 --batch-size 4 --save-every 2 --schedule constant --resume
expect 0 "adapter written to" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/trc6" --targets q_proj,v_proj --group-size 8 --max-steps 6 --batch-size 4 --save-every 2 --schedule constant
if ! cmp -s "$TMP/trc/adapter_model.safetensors" "$TMP/trc6/adapter_model.safetensors"; then
    echo "FAIL: 4 steps then 2 more (constant schedule) differ from 6 steps"; fails=$((fails + 1))
fi
expect 1 "past this run's end" "$ROAD" train --model "$FIX/llama/tiny-llama" --data "$TMP/task.jsonl" --out "$TMP/trc" --targets q_proj,v_proj --group-size 8 --max-steps 3 --batch-size 4 --save-every 2 --schedule constant --resume

finish cli
