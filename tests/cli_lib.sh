# tests/cli_lib.sh - what every CLI test script shares (sourced, not run; the scripts are
# tests/cli_test.sh and tests/cli/<topic>.sh, called as SCRIPT ROAD FIXTURES).
# Sets ROAD (absolute), FIX, TMP (removed at exit), fails; gives expect and fail, and
# finish, which prints the verdict and exits.
set -u
ROAD="$1"
case "$ROAD" in /*) ;; *) ROAD="$PWD/$ROAD" ;; esac
FIX="$2"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

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

# finish NAME: exit 1 if a check failed, else 0.
finish() {
    if [ "$fails" -ne 0 ]; then
        echo "$1: $fails check(s) failed"
        exit 1
    fi
    echo "$1: all checks passed"
    exit 0
}
