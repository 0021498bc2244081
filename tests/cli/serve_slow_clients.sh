#!/bin/sh
# tests/cli/serve_slow_clients.sh ROAD FIXTURES - the short form of tests/robust/slow_clients.py:
# 200 slow clients (trickled heads and bodies, from 200 loopback addresses) against road serve;
# every normal request must be answered, the per-address cap must answer 429, and the request
# deadline must end every slow client. No timing is asserted. Skipped (77) without python3.
. "$(dirname "$0")/../cli_lib.sh"
ROOT="$FIX/../.."
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
python3 "$ROOT/tests/robust/slow_clients.py" "$ROAD" "$FIX/llama/tiny-llama" 200 20 || exit 1
