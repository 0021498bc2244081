#!/bin/sh
# bench/llamacpp/run.sh - road vs llama.cpp on the same weights, same threads, alternating runs.
#
#   bench/llamacpp/run.sh                 everything: build, install, make the model, convert,
#                                         validate the logits, time, print the table + JSON line
#
# Steps:
#   1. build road and bench_llamacpp (Release, $BUILD_DIR, default build-bench/, -j2);
#   2. `npm ci` in bench/llamacpp (node-llama-cpp pinned by package-lock.json, with its
#      prebuilt CPU binaries; no install script runs, nothing is built or downloaded besides
#      the npm packages), a Python venv with numpy (tools/gguf/requirements.txt) in $VENV;
#   3. a Llama-3.2-1B-shaped model with random weights (bench_llamacpp --write-model), as f32
#      and as bf16 HF folders in $WORK; GGUF files: F32, Q8_0, Q4_0 from the f32 folder, BF16
#      from the bf16 one (tools/gguf/hf_to_gguf.py);
#   4. validation before any timing: llama.cpp's F32 next-token distribution against road's
#      logits on 16 ids (tools/gguf/compare_logits.py); the run stops above $TOL;
#   5. for each thread count and each pair (road f32 / F32, bf16 / BF16, int8 / Q8_0,
#      nf4 / Q4_0), $ROUNDS rounds of one road process and one llama.cpp process, the order
#      swapped every round; each process loads the model and takes one sample of every figure
#      (bench/bench_llamacpp.c has the protocol); the read bandwidth for llama.cpp's sample is
#      measured by `bench_llamacpp --bandwidth` right before it;
#   6. summarize.py: medians per figure and the median of the per-round ratios.
#
# Environment: THREADS ("1 2"), ROUNDS (3), FORMATS ("f32 bf16 int8 nf4"; also int8-q8 and
# nf4-q8: road with --int8-activations against the same Q8_0 / Q4_0 files), WORK (model files,
# ~17 GB; default ${TMPDIR:-/tmp}/road-llamacpp, kept for the next run), VENV (default
# ~/.cache/road-gguf-venv), BUILD_DIR, TOL (1e-4), VALIDATE (f32 | all | none: all also
# prints, without a limit, how far BF16 / Q8_0 / Q4_0 are from road's bf16 / int8 / nf4).
# Samples go to $WORK/samples-<time>.jsonl as they come (a cut run still has them); more rounds
# for the same file: SAMPLES=that-file FIRST_ROUND=<next round> (the summary takes them all).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-"$ROOT/build-bench"}
WORK=${WORK:-"${TMPDIR:-/tmp}/road-llamacpp"}
VENV=${VENV:-"$HOME/.cache/road-gguf-venv"}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-3}
FIRST_ROUND=${FIRST_ROUND:-1}
FORMATS=${FORMATS:-"f32 bf16 int8 nf4"}
TOL=${TOL:-1e-4}
VALIDATE=${VALIDATE:-f32}
IDS="128000 791 4062 14198 39935 35308 927 279 16053 5679 13 1102 374 264 1296 315"

say() { echo "== $*" >&2; }

# 1. build
mkdir -p "$BUILD_DIR" "$WORK"
say "building road and bench_llamacpp in $BUILD_DIR"
if ! { cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DROAD_BUILD_TESTS=OFF \
           -DROAD_BUILD_BENCH=ON &&
       cmake --build "$BUILD_DIR" -j2 --target road bench_llamacpp; } >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    exit 1
fi
ROAD="$BUILD_DIR/road"
BENCH="$BUILD_DIR/bench/bench_llamacpp"

# 2. node-llama-cpp and numpy
if [ ! -d "$HERE/node_modules/node-llama-cpp" ]; then
    say "npm ci (node-llama-cpp)"
    (cd "$HERE" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --ignore-scripts --no-audit --no-fund >&2)
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "python venv with numpy in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$ROOT/tools/gguf/requirements.txt" >&2
fi
PY="$VENV/bin/python"

# 3. the model, the GGUF files
for dt in f32 bf16; do
    if [ ! -f "$WORK/llama1b-$dt/model.safetensors" ]; then
        say "writing the random Llama-3.2-1B-shaped model ($dt)"
        "$BENCH" --write-model "$WORK/llama1b-$dt" --dtype "$dt"
    fi
done
for gt in f32 bf16 q8_0 q4_0; do
    if [ ! -f "$WORK/llama1b-$gt.gguf" ]; then
        src=f32
        [ "$gt" = bf16 ] && src=bf16
        say "converting llama1b-$src to GGUF $gt"
        "$PY" "$ROOT/tools/gguf/hf_to_gguf.py" "$WORK/llama1b-$src" "$WORK/llama1b-$gt.gguf" --outtype "$gt"
    fi
done

gguf_of() { case $1 in f32) echo f32 ;; bf16) echo bf16 ;; int8*) echo q8_0 ;; nf4*) echo q4_0 ;; esac; }
# road's quantization of a format name: int8 / nf4, and int8-q8 / nf4-q8 (the same with
# --int8-activations: x rounded to int8 as llama.cpp's Q8 activations, AVX512-VNNI)
quant_of() { case $1 in int8*) echo int8 ;; nf4*) echo nf4 ;; *) echo none ;; esac; }
act_of() { case $1 in *-q8) echo --int8-activations ;; esac; }
hf_of() { [ "$1" = bf16 ] && echo bf16 || echo f32; }

# 4. validation
validate() { # road-format tolerance
    g=$(gguf_of "$1")
    q=$(quant_of "$1")
    node "$HERE/bench.mjs" probs "$WORK/llama1b-$g.gguf" "$WORK/probs-$g.f64" --ids "$IDS" --threads 2
    "$PY" "$ROOT/tools/gguf/compare_logits.py" --road "$ROAD" --model "$WORK/llama1b-$(hf_of "$1")" \
        --llama "$WORK/probs-$g.f64" --ids "$IDS" --threads 2 --quantize "$q" --tol "$2" \
        --label "road $1 vs llama.cpp $g"
}
if [ "$VALIDATE" != none ]; then
    say "validating: llama.cpp F32 vs road f32 logits on 16 ids"
    validate f32 "$TOL"
    if [ "$VALIDATE" = all ]; then
        for f in bf16 int8 nf4; do validate "$f" inf || true; done
    fi
fi

# 5. timing, alternating
SAMPLES=${SAMPLES:-"$WORK/samples-$(date +%Y%m%d-%H%M%S).jsonl"}
say "timing: threads '$THREADS', formats '$FORMATS', $ROUNDS rounds; samples in $SAMPLES"
tag() { sed "s/^{/{\"format\": \"$1\", \"round\": $2, /"; }
road_sample() { # format threads round
    q=$(quant_of "$1")
    qh=""
    [ "$q" != none ] && qh=--quantize-lm-head # llama.cpp's Q8_0 / Q4_0 files quantize the output too
    "$BENCH" --model "$WORK/llama1b-$(hf_of "$1")" --threads "$2" --quantize "$q" $qh $(act_of "$1") |
        tag "$1" "$3"
}
llama_sample() {
    bw=$("$BENCH" --bandwidth --threads "$2" | sed 's/.*"read_gbs": \([0-9.]*\).*/\1/')
    node "$HERE/bench.mjs" time "$WORK/llama1b-$(gguf_of "$1").gguf" --threads "$2" |
        tag "$1" "$3" | sed "s/^{/{\"read_gbs\": $bw, /"
}
for t in $THREADS; do
    for f in $FORMATS; do
        r=$FIRST_ROUND
        while [ "$r" -lt $((FIRST_ROUND + ROUNDS)) ]; do
            if [ $((r % 2)) -eq 1 ]; then
                road_sample "$f" "$t" "$r" | tee -a "$SAMPLES" >&2
                llama_sample "$f" "$t" "$r" | tee -a "$SAMPLES" >&2
            else
                llama_sample "$f" "$t" "$r" | tee -a "$SAMPLES" >&2
                road_sample "$f" "$t" "$r" | tee -a "$SAMPLES" >&2
            fi
            r=$((r + 1))
        done
    done
done

# 6. summary (the JSON line is the last line of stdout)
"$PY" "$HERE/summarize.py" "$SAMPLES"
