#!/bin/sh
# tests/cli/generate_jsonl.sh ROAD FIXTURES - `road generate --jsonl`: one JSON object per
# sequence, in prompt order, whatever the generated text holds (newlines included), with the
# sequence's adapter, token ids and finish reason.
. "$(dirname "$0")/../cli_lib.sh"
DEMO="$FIX/../../demo/model"

# Text prompts on the demo model, no stop token: 24 tokens of its text hold newlines.
out=$("$ROAD" generate --model "$DEMO" --prompt "kobalu =" --prompt "tamir =" --prompt "x" \
      --max-new-tokens 24 --stop-ids 9999 --jsonl) || fail "generate --jsonl exited $?"
plain=$("$ROAD" generate --model "$DEMO" --prompt "kobalu =" --prompt "tamir =" --prompt "x" \
      --max-new-tokens 24 --stop-ids 9999) || fail "generate exited $?"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 3 ] || fail "expected 3 lines, got: $out"
[ "$(printf '%s\n' "$plain" | wc -l)" -gt 3 ] || fail "the plain output should hold newlines (test premise): $plain"
i=0
printf '%s\n' "$out" | while IFS= read -r line; do
    case "$line" in
        "{\"index\": $i, \"adapter\": \"__base__\", \"token_ids\": ["*"], \"finish_reason\": \"length\", \"text\": \""*"\"}") ;;
        *) echo "FAIL: line $i is not the expected object: $line"; exit 1 ;;
    esac
    i=$((i + 1))
done || fails=$((fails + 1))
case "$out" in *'\n'*) ;; *) fail "no escaped newline in: $out" ;; esac
# Every line is JSON and its text is what the plain output printed.
if command -v node >/dev/null 2>&1; then
    printf '%s\n' "$out" | node -e '
        const lines = require("fs").readFileSync(0, "utf8").trim().split("\n");
        const objs = lines.map((l) => JSON.parse(l));
        process.stdout.write(objs.map((o) => o.text).join("\n") + "\n");' > "$TMP/texts.txt" ||
        fail "a line is not JSON"
    [ "$(cat "$TMP/texts.txt")" = "$plain" ] || fail "texts differ from the plain output"
fi

# A stop token ends a sequence with finish_reason "stop" and is left out.
out=$("$ROAD" generate --model "$DEMO" --prompt "kobalu =" --stop-ids 10 --max-new-tokens 30 --jsonl)
case "$out" in
    *'"finish_reason": "stop"'*) ;;
    *) fail "no stop: $out" ;;
esac
case "$out" in *', 10]'*) fail "the stop token is in token_ids: $out" ;; esac

# Per-sequence adapters are reported; id prompts have no text.
out=$("$ROAD" generate --model "$FIX/llama/tiny-llama" --adapter "A=$FIX/llama/tiny-llama/adapters/A" \
      --rows A,__base__ --prompt-ids "1 2 3" --prompt-ids "4 5" --max-new-tokens 3 --jsonl)
case "$out" in
    '{"index": 0, "adapter": "A", "token_ids": ['*'], "finish_reason": "length"}
{"index": 1, "adapter": "__base__", "token_ids": ['*'], "finish_reason": "length"}') ;;
    *) fail "rows: $out" ;;
esac
finish "generate --jsonl"
