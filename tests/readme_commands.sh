#!/bin/sh
# The README's test command and .ci/run must be the same command, byte for byte.
set -eu
root="$1"
ci_line=$(grep -v '^#' "$root/.ci/run" | grep 'ctest' )
if ! grep -qxF "$ci_line" "$root/README.md"; then
    echo "README.md does not contain the test command that .ci/run runs:" >&2
    echo "  $ci_line" >&2
    exit 1
fi
echo "README and .ci/run agree: $ci_line"
