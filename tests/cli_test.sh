#!/bin/sh
# tests/cli_test.sh ROAD FIXTURES - the road command: exit codes, messages, and real runs.
# Each check prints what it ran when it fails.
set -u
ROAD="$1"
FIX="$2"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

# expect CODE NEEDLE CMD...: exit status CODE and NEEDLE in stdout+stderr.
expect() {
    code="$1"; needle="$2"; shift 2
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" -ne "$code" ]; then
        echo "FAIL: '$*' exited $rc, expected $code; output:"; echo "$out"; fails=$((fails + 1)); return
    fi
    case "$out" in
        *"$needle"*) ;;
        *) echo "FAIL: '$*' output lacks '$needle':"; echo "$out"; fails=$((fails + 1)) ;;
    esac
}

expect 2 "usage: road <command>" "$ROAD"
expect 0 "commands:" "$ROAD" help
expect 0 "road 0." "$ROAD" version
expect 2 "unknown command 'frobnicate'" "$ROAD" frobnicate
expect 2 "unknown option '--bogus'" "$ROAD" inspect --bogus
expect 2 "missing the adapter folder" "$ROAD" inspect
expect 1 "has no adapter_config.json" "$ROAD" inspect "$TMP"
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

# demo end to end (small), then inspect what it wrote
expect 2 "multiple of 64" "$ROAD" demo --size 100
expect 0 "bit for bit" "$ROAD" demo --size 256 --out "$TMP/demo"
expect 0 "trainable params  512" "$ROAD" inspect "$TMP/demo/math"

if [ "$fails" -ne 0 ]; then
    echo "$fails CLI check(s) failed"
    exit 1
fi
echo "all CLI checks passed"
