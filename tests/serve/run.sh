#!/bin/sh
# tests/serve/run.sh ROAD_BINARY FIXTURES WORK_DIR - the serve_node ctest: install the pinned
# `openai` npm package (npm ci, into WORK_DIR in the build tree, never the source tree), then
# run openai_test.mjs, which starts `road serve` on a free loopback port and drives it with the
# official client. Exit 77 (ctest: skipped) when Node.js/npm are missing or npm ci cannot
# reach the registry; scripts/install-deps.sh installs Node.js.
set -eu
ROAD=$1
FIXTURES=$2
WORK=$3
HERE=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "serve_node: SKIPPED: node and npm are not installed (scripts/install-deps.sh)"
    exit 77
fi
mkdir -p "$WORK"
cp "$HERE/openai_test.mjs" "$WORK/"
# npm ci only when the lock file changed since the last install
if ! cmp -s "$HERE/package-lock.json" "$WORK/package-lock.json" || [ ! -d "$WORK/node_modules/openai" ]; then
    cp "$HERE/package.json" "$HERE/package-lock.json" "$WORK/"
    if ! (cd "$WORK" && npm ci --no-audit --no-fund --loglevel=error); then
        rm -f "$WORK/package-lock.json"
        echo "serve_node: SKIPPED: npm ci could not install the openai package"
        exit 77
    fi
fi
cd "$WORK"
exec node openai_test.mjs "$ROAD" "$FIXTURES"
