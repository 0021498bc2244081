#!/bin/sh
# bench/run.sh - build bench_road (Release, in build-bench/) and run it with the given arguments.
#
#   bench/run.sh                      full run, all cores
#   bench/run.sh --threads 1          single thread
#   bench/run.sh --quick              smoke run (seconds; figures not representative)
#   bench/run.sh --json out.json      also write the JSON line to out.json
#   bench/run.sh serve [--quick]      bench_serve instead: `road serve` under loopback load
#   bench/run.sh quant [--quick]      bench_quant instead: quantized weights (memory, decode,
#                                     prefill matmul) on a Llama-3.2-1B shape
#
# BUILD_DIR overrides the build directory. The figures are only as quiet as the machine: stop
# other heavy processes (builds, fuzzers) first; bench_road reports how much CPU they took.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-"$ROOT/build-bench"}
JOBS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
TARGET=bench_road
case "${1:-}" in
serve | quant)
    TARGET=bench_$1
    shift
    ;;
esac

mkdir -p "$BUILD_DIR"
LOG="$BUILD_DIR/bench-build.log"
if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DROAD_BUILD_TESTS=OFF \
           -DROAD_BUILD_BENCH=ON -DROAD_WERROR=ON &&
       cmake --build "$BUILD_DIR" -j"$JOBS" --target "$TARGET"; } >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "bench/run.sh: build failed (log: $LOG)" >&2
    exit 1
fi
exec "$BUILD_DIR/bench/$TARGET" "$@"
