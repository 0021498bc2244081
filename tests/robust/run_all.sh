#!/bin/sh
# tests/robust/run_all.sh ROAD [KILLS] [HOSTILE] [SLOW] - the three robustness scripts in
# their full forms (README.md here), one after the other; exit 1 if any failed.
set -u
ROAD="$1"
case "$ROAD" in /*) ;; *) ROAD="$PWD/$ROAD" ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT="$HERE/../.."
rc=0
echo "== hostile requests"
python3 "$HERE/hostile_requests.py" "$ROAD" "$ROOT/demo/model" "${3:-5000}" 1 || rc=1
echo "== slow clients"
python3 "$HERE/slow_clients.py" "$ROAD" "$ROOT/tests/fixtures/llama/tiny-llama" "${4:-1000}" 400 || rc=1
echo "== kill -9 during writes, full disk"
sh "$HERE/kill_writes.sh" "$ROAD" "$ROOT/tests/fixtures" "${2:-60}" || rc=1
exit $rc
