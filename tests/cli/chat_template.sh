#!/bin/sh
# tests/cli/chat_template.sh ROAD FIXTURES - `road chat-template` on every reference case of
# tests/fixtures/chat/renders.json: stdout must be the reference render byte for byte, or the
# command must fail (exit 1) where the reference fails, carrying the template's
# raise_exception message; Python jinja2's outcome where the engines disagree
# (disagreements.json), transformers' for continue_final_message (transformers.json). Cases
# whose messages hold a null-valued key are left out: apply_chat_template drops such keys, the
# engine-level references keep them. Plus the command's own refusals and a model folder.
. "$(dirname "$0")/../cli_lib.sh"
command -v python3 > /dev/null || { echo "SKIP: no python3"; exit 77; }
CHAT="$FIX/chat"
python3 - "$ROAD" "$CHAT" "$TMP" <<'PY' || fails=$((fails + 1))
import json, os, subprocess, sys
road, chat, tmp = sys.argv[1:4]
load = lambda f: json.load(open(os.path.join(chat, f), encoding="utf-8"))
templates = {t["name"]: t for t in load("templates.json")["templates"]}
convs = {c["id"]: c for c in load("conversations.json")["conversations"]}
renders = load("renders.json")
keys = ("template", "conversation", "add_generation_prompt", "continue_final_message", "kwargs")
python = {json.dumps([d[k] for k in keys], sort_keys=True): d["python"]
          for d in load("disagreements.json")["disagreements"]}
python.update({json.dumps([d[k] for k in keys], sort_keys=True): d
               for d in load("transformers.json")["continue_final_message"]})
env = dict(os.environ, SOURCE_DATE_EPOCH=str(renders["source_date_epoch"]))
checked = bad = 0
for case in renders["cases"]:
    t, conv = templates[case["template"]], convs[case["conversation"]]
    if any(v is None for m in conv["messages"] for v in m.values()):
        continue
    want = python.get(json.dumps([case[k] for k in keys], sort_keys=True), case)
    msgs = os.path.join(tmp, "messages.json")
    json.dump(conv["messages"], open(msgs, "w", encoding="utf-8"), ensure_ascii=False)
    cmd = [road, "chat-template", "--template", os.path.join(chat, t["file"]), "--messages", msgs,
           "--kwargs", json.dumps({**t["variables"], **case["kwargs"]}, ensure_ascii=False)]
    if case["add_generation_prompt"]:
        cmd.append("--add-generation-prompt")
    if case["continue_final_message"]:
        cmd.append("--continue-final-message")
    if "tools" in conv:
        tools = os.path.join(tmp, "tools.json")
        json.dump(conv["tools"], open(tools, "w", encoding="utf-8"), ensure_ascii=False)
        cmd += ["--tools", tools]
    p = subprocess.run(cmd, capture_output=True, env=env)
    what = f'{case["template"]} + {case["conversation"]} (agp {case["add_generation_prompt"]}, kwargs {case["kwargs"]})'
    if "output" in want:
        if p.returncode != 0 or p.stdout != want["output"].encode("utf-8"):
            print(f"FAIL: {what}: exit {p.returncode}, stdout {p.stdout[:200]!r}, stderr {p.stderr[:300]!r}")
            bad += 1
    elif p.returncode != 1 or (want["raised"] and want["error"].encode("utf-8") not in p.stderr):
        print(f"FAIL: {what}: expected a failure ({want['error']}), got exit {p.returncode}, stderr {p.stderr[:300]!r}")
        bad += 1
    checked += 1
print(f"chat-template: {checked} reference cases, {bad} wrong")
sys.exit(1 if bad or checked < 900 else 0)
PY
# the command's own refusals
echo '[{"role": "user", "content": "hi"}]' > "$TMP/m.json"
expect 2 "give exactly one of --model, --tokenizer-config and --template" \
    "$ROAD" chat-template --messages "$TMP/m.json"
expect 2 "--messages" "$ROAD" chat-template --template "$CHAT/templates/chatml.jinja"
expect 1 "must hold a JSON list of messages" sh -c "echo '{}' > $TMP/o.json; \"$ROAD\" chat-template --template $CHAT/templates/chatml.jinja --messages $TMP/o.json"
expect 1 "--kwargs must be a JSON object" \
    "$ROAD" chat-template --template "$CHAT/templates/chatml.jinja" --messages "$TMP/m.json" --kwargs '[1]'
expect 1 "has no chat_template" sh -c "echo '{\"bos_token\": \"<s>\"}' > $TMP/tc.json; \"$ROAD\" chat-template --tokenizer-config $TMP/tc.json --messages $TMP/m.json"
printf '{%% if %%}' > "$TMP/bad.jinja"
expect 1 "line 1" "$ROAD" chat-template --template "$TMP/bad.jinja" --messages "$TMP/m.json"
# a model folder: its tokenizer_config.json's template and special tokens
mkdir -p "$TMP/model"
python3 -c "import json,sys; json.dump({'bos_token': '<s>', 'eos_token': '</s>', 'chat_template': open(sys.argv[1]).read()}, open(sys.argv[2], 'w'))" \
    "$CHAT/templates/zephyr.jinja" "$TMP/model/tokenizer_config.json"
out=$("$ROAD" chat-template --model "$TMP/model" --messages "$TMP/m.json" --add-generation-prompt)
case "$out" in *"<|user|>"*"hi"*"<|assistant|>"*) ;; *) fail "--model render: $out" ;; esac
# a model folder with its tokenizer: the same path as generate/serve/train, "tool_use" when
# tools are given, --chat-template to pick another
cp "$FIX/tokenizers/qwen3/tokenizer.json" "$TMP/model/tokenizer.json"
python3 -c "import json,sys; json.dump({'eos_token': '<|im_end|>', 'chat_template': [{'name': 'default', 'template': 'D{{ messages[0].content }}'}, {'name': 'tool_use', 'template': 'T{{ tools | length }}'}]}, open(sys.argv[1], 'w'))" \
    "$TMP/model/tokenizer_config.json"
echo '[{"type": "function", "function": {"name": "f"}}]' > "$TMP/t.json"
out=$("$ROAD" chat-template --model "$TMP/model" --messages "$TMP/m.json")
[ "$out" = "Dhi" ] || fail "--model default: $out"
out=$("$ROAD" chat-template --model "$TMP/model" --messages "$TMP/m.json" --tools "$TMP/t.json")
[ "$out" = "T1" ] || fail "--model tool_use: $out"
out=$("$ROAD" chat-template --model "$TMP/model" --messages "$TMP/m.json" --chat-template chatml --add-generation-prompt)
[ "$out" = "$(printf '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n')" ] || fail "--chat-template chatml: $out"
out=$("$ROAD" chat-template --tokenizer-config "$TMP/model/tokenizer_config.json" --messages "$TMP/m.json" --tools "$TMP/t.json")
[ "$out" = "T1" ] || fail "--tokenizer-config tool_use: $out"
expect 2 "exclude each other" "$ROAD" chat-template --template "$CHAT/templates/chatml.jinja" \
    --messages "$TMP/m.json" --add-generation-prompt --continue-final-message
expect 2 "needs --model" "$ROAD" chat-template --template "$CHAT/templates/chatml.jinja" \
    --messages "$TMP/m.json" --chat-template chatml
finish chat_template
