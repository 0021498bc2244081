#!/bin/sh
# bench/ab.sh OLD_BUILD NEW_BUILD [ROUNDS] - the same LLM and training benchmarks with two builds
# of road, alternated (old, new, old, new, ...), so a change is judged against a baseline
# measured in the same run on the same machine. Each BUILD is a CMake build folder holding
# bench/bench_llm and bench/bench_train (Release). Prints one line per run: prefill and decode
# tokens/s, a mixed-adapter decode step (one adapter vs 8, ms), the training step and forward
# (s, median of 5) and the training peak RSS (GB). Shape: Llama-3.2-1B, 4 layers, 2 threads.
#
#   git archive <rev> | tar -x -C /tmp/old && cmake -S /tmp/old -B /tmp/old/build \
#       -DCMAKE_BUILD_TYPE=Release -DROAD_BUILD_TESTS=OFF && cmake --build /tmp/old/build \
#       -j2 --target bench_llm bench_train
#   sh bench/ab.sh /tmp/old/build build-bench 3
set -eu
OLD="$1"
NEW="$2"
ROUNDS="${3:-3}"
i=1
while [ "$i" -le "$ROUNDS" ]; do
    for v in old new; do
        if [ "$v" = old ]; then B="$OLD/bench"; else B="$NEW/bench"; fi
        out=$("$B/bench_llm" --threads 2 --layers 4 2>&1)
        pre=$(echo "$out" | grep "prefill 128" | sed 's/.*= \([0-9.]*\) tokens\/s.*/\1/')
        dec=$(echo "$out" | grep "^\[2\]" | sed 's/.*: \([0-9.]*\) tokens\/s.*/\1/')
        mix=$(echo "$out" | grep "^\[3\]" |
              sed 's/.*one adapter \([0-9.]*\) ms\/step, 8 adapters \([0-9.]*\) ms.*/\1 \2/')
        tr=$("$B/bench_train" --threads 2 --layers 4 2>&1 | grep "^{" |
             sed 's/.*road_step_s": \([0-9.]*\), "road_fwd_s": \([0-9.]*\).*peak_rss_gb": \([0-9.]*\).*/step_s=\1 fwd_s=\2 rss_gb=\3/')
        echo "$i $v prefill_tok_s=$pre decode_tok_s=$dec mixed_ms=$mix | train $tr"
    done
    i=$((i + 1))
done
