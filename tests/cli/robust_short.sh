#!/bin/sh
# tests/cli/robust_short.sh ROAD FIXTURES - the short form of the robustness scripts of
# tests/robust/ (README there): hostile requests against road serve. Skipped (77) without
# python3.
. "$(dirname "$0")/../cli_lib.sh"
ROOT="$FIX/../.."
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
python3 "$ROOT/tests/robust/hostile_requests.py" "$ROAD" "$ROOT/demo/model" 400 7 || exit 1
