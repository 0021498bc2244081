#!/bin/sh
# bench/busy_neighbour.sh BUILD_DIR [ROUNDS] - 1 vs 2 threads, on a quiet machine and beside one
# busy process (`while :; do :; done`, not pinned), for a training step and for decode.
#
#   training step  bench_train, a small Llama (4 layers, hidden 768, 12 heads, inter 3072,
#                  vocab 32000 untied), batch 2 x 128, RoAd on all linear layers: median of 3
#                  steps after 2 warm-ups (its road_step_s)
#   decode         `road generate`, batch 1, 16-token prompt, on a model written by `road init`
#                  (4 layers, hidden 2048, 32/8 heads of 64, inter 8192, vocab 32000, f32, 1.5
#                  GB): (time for 36 new tokens - time for 4) / 32, so loading and prefill cancel
#
# Each round runs every case once, alternating (a shared machine's load moves in phases of
# seconds); the table gives the median over rounds and the 2-thread / 1-thread ratios. The
# programs set their thread environment themselves (road_threads_prepare_env); to measure
# libgomp's own spinning instead, run with GOMP_SPINCOUNT=300000 (its default) in the
# environment. "others" is the CPU (in cores) that processes other than road and the neighbour
# used while a case ran: figures taken with others > 0.2 are not quiet-machine figures.
set -eu
BUILD="$1"
ROUNDS="${2:-3}"
case "$BUILD" in /*) ;; *) BUILD="$PWD/$BUILD" ;; esac
ROAD="$BUILD/road"
TRAIN="$BUILD/bench/bench_train"
[ -x "$ROAD" ] && [ -x "$TRAIN" ] || { echo "build road and bench_train in $BUILD first" >&2; exit 1; }
TMP=$(mktemp -d)
NB=""
cleanup() { [ -n "$NB" ] && kill "$NB" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

S="--layers 4 --hidden 768 --heads 12 --kv-heads 12 --inter 3072 --vocab 32000 --untied --seq 128 --batch 2 --reps 3"
cat > "$TMP/config.json" << 'EOF'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
 "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 4,
 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 32000,
 "max_position_embeddings": 512, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
 "initializer_range": 0.02, "tie_word_embeddings": false, "bos_token_id": 1,
 "eos_token_id": 2, "torch_dtype": "float32"}
EOF
"$ROAD" init --config "$TMP/config.json" --out "$TMP/model" > /dev/null
PROMPT="$(seq -s ' ' 1 16)"

ms() { echo $(($(date +%s%N) / 1000000)); }
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
gen() { # gen THREADS N: milliseconds for N new tokens
    t0=$(ms)
    run "$ROAD" generate --model "$TMP/model" --prompt-ids "$PROMPT" --max-new-tokens "$2" \
        --threads "$1" > /dev/null
    echo $(($(ms) - t0))
}
HZ=$(getconf CLK_TCK)
# run CMD...: CMD, its CPU time (user + system, s) appended to $TMP/cpu when /usr/bin/time exists
run() {
    if [ -x /usr/bin/time ]; then /usr/bin/time -a -o "$TMP/cpu" -f "%U %S" "$@"; else "$@"; fi
}
cpu_ms() { [ -s "$TMP/cpu" ] && awk '{ n += $1 + $2 } END { printf "%d", n * 1000 }' "$TMP/cpu" || echo 0; }
: > "$TMP/results"
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    for mode in quiet busy; do
        if [ "$mode" = busy ]; then
            sh -c 'while :; do :; done' &
            NB=$!
        fi
        for t in 1 2; do
            j0=$(busy_jiffies); w0=$(ms); c0=$(cpu_ms)
            # shellcheck disable=SC2086
            step=$(run "$TRAIN" --threads "$t" $S | sed -n 's/.*"road_step_s": \([0-9.]*\).*/\1/p')
            short=$(gen "$t" 4)
            long=$(gen "$t" 36)
            j1=$(busy_jiffies); w1=$(ms); c1=$(cpu_ms)
            # all busy CPU minus road's own and the neighbour's (one core when busy)
            others=$(awk -v j="$((j1 - j0))" -v hz="$HZ" -v w="$((w1 - w0))" -v c="$((c1 - c0))" \
                -v nb="$([ "$mode" = busy ] && echo 1 || echo 0)" \
                'BEGIN { o = (j / hz * 1000 - c) / w - nb; printf "%.2f", o < 0 ? 0 : o }')
            tok=$(awk -v a="$short" -v b="$long" 'BEGIN { printf "%.1f", (b - a) / 32 }')
            echo "round $r $mode threads $t: step $step s, decode $tok ms/token, others $others cores"
            echo "$mode $t $step $tok" >> "$TMP/results"
        done
        if [ -n "$NB" ]; then
            kill "$NB"
            wait "$NB" 2> /dev/null || true
            NB=""
        fi
    done
    r=$((r + 1))
done

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "| machine | threads | training step, s | decode, ms/token |"
echo "|---------|--------:|-----------------:|-----------------:|"
for mode in quiet busy; do
    for t in 1 2; do
        st=$(awk -v m="$mode" -v t="$t" '$1 == m && $2 == t { print $3 }' "$TMP/results" | median)
        de=$(awk -v m="$mode" -v t="$t" '$1 == m && $2 == t { print $4 }' "$TMP/results" | median)
        echo "$st $de" > "$TMP/m_${mode}_$t"
        echo "| $mode | $t | $st | $de |"
    done
    read -r s1 d1 < "$TMP/m_${mode}_1"
    read -r s2 d2 < "$TMP/m_${mode}_2"
    awk -v m="$mode" -v s1="$s1" -v s2="$s2" -v d1="$d1" -v d2="$d2" \
        'BEGIN { printf "| %s | 2 / 1 | %.2f | %.2f |\n", m, s2 / s1, d2 / d1 }'
done
