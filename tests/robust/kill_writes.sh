#!/bin/sh
# tests/robust/kill_writes.sh ROAD FIXTURES [KILLS] - kill -9 during writes, and a full disk.
#
# road merge, road init and road train are killed with SIGKILL at random moments (KILLS times in
# all, default 30; also the KILLS environment variable), half of them with the two-rename
# fallback forced (ROAD_TEST_DIR_FALLBACK=1, as on a filesystem without RENAME_EXCHANGE).
# After each kill:
#   - merge / init: the output folder is absent (first write only), the complete old folder or
#     the complete new one (byte-identical to a reference write of either), never a mix; the
#     next run repairs what was left (no .tmp. / .old. folder remains) and writes the new one;
#   - train: every checkpoint and the final adapter present load (road inspect), and
#     `--resume` finishes the run with an adapter byte-identical to an uninterrupted run's.
# Then a full disk: a small tmpfs (skipped with a message when mount is not permitted) where
# replacing a model folder runs out of space: the error says so, the old folder is intact.
# Prints the figures at the end; exit 0 when every check passed.
set -u
ROAD="$1"
FIX="$2"
KILLS="${3:-${KILLS:-30}}"
case "$ROAD" in /*) ;; *) ROAD="$PWD/$ROAD" ;; esac
TMP=$(mktemp -d)
MNT="$TMP/disk"
cleanup() { umount "$MNT" 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"; }
trap cleanup EXIT
fails=0 checks=0 kills=0
s_absent=0 s_old=0 s_new=0 s_ckpt=0 s_done=0 s_none=0 fallback_runs=0

ok() { checks=$((checks + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
rand() { # rand N: 0..N-1
    v=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo $((v % $1))
}
same_dir() { # same_dir A B: the same files, byte for byte
    [ "$(ls "$1")" = "$(ls "$2")" ] || return 1
    for f in "$1"/*; do cmp -s "$f" "$2/$(basename "$f")" || return 1; done
}
no_leftovers() { # no_leftovers DIR: no .tmp. / .old. folder next to it
    if ls "$(dirname "$1")" | grep -q "$(basename "$1")\.\(tmp\|old\)\."; then
        bad "leftovers next to $1: $(ls "$(dirname "$1")")"
    else ok; fi
}

mkdir -p "$TMP/fix/llama" && cp -r "$FIX/llama/tiny-llama" "$TMP/fix/llama/"
MODEL="$TMP/fix/llama/tiny-llama"
i=0; : > "$TMP/task.jsonl"
while [ $i -lt 32 ]; do
    printf '{"input_ids": [%d, %d, %d, %d, %d, %d]}\n' $i $((i+7)) $((i+14)) $((i+21)) $((i+28)) $((i+35)) >> "$TMP/task.jsonl"
    i=$((i+1))
done
# Commands as words, not shell functions: `cmd &` must start road itself, so that kill -9
# reaches road and not a subshell that would leave road running beside the next check.
# (Paths from mktemp hold no spaces.)
merge="$ROAD merge --model $MODEL --adapter A=$MODEL/adapters/A --threads 1"
init="$ROAD init --config $MODEL/config.json --tokenizer $MODEL"
STEPS=40
train="$ROAD train --model $MODEL --data $TMP/task.jsonl --targets q_proj,v_proj --group-size 8 --batch-size 4 --save-every 3 --max-steps $STEPS --threads 1"

# References: what a complete write of each kind holds.
$merge --out "$TMP/ref/m_f32" > /dev/null || bad "reference merge"
$merge --out "$TMP/ref/m_bf16" --dtype bf16 > /dev/null || bad "reference merge bf16"
$init --out "$TMP/ref/i_1" --seed 1 > /dev/null || bad "reference init"
$init --out "$TMP/ref/i_2" --seed 2 > /dev/null || bad "reference init 2"
t0=$(date +%s%N)
$train --out "$TMP/ref/t" > /dev/null 2>&1 || bad "reference train"
train_ms=$(( ($(date +%s%N) - t0) / 1000000 ))

# kill_run MAX_MS CMD...: run CMD, SIGKILL it after 0..MAX_MS ms (or let it end).
kill_run() {
    max="$1"; shift
    "$@" > /dev/null 2>&1 &
    pid=$!
    ms=$(rand "$max")
    sleep "$(printf '0.%03d' "$ms")"
    kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    wait "$pid" 2>/dev/null
}

# One folder writer (merge or init) killed, checked, then repaired by the next run.
folder_round() { # folder_round OUT REF_OLD REF_NEW MAX_MS CMD... (CMD writes REF_NEW's kind)
    out="$1" old="$2" new="$3" max="$4"; shift 4
    had_old=0; [ -d "$out" ] && had_old=1
    kill_run "$max" "$@" --out "$out" --overwrite
    if [ ! -e "$out" ]; then
        s_absent=$((s_absent + 1))
        if [ $had_old -eq 1 ] && [ -z "${ROAD_TEST_DIR_FALLBACK:-}" ]; then
            bad "$out vanished after a kill (RENAME_EXCHANGE should make that impossible)"
        else ok; fi
    elif same_dir "$out" "$new"; then s_new=$((s_new + 1)); ok
    elif [ $had_old -eq 1 ] && same_dir "$out" "$old"; then s_old=$((s_old + 1)); ok
    else bad "$out is neither the old folder nor the new one: $(ls -l "$out")"
    fi
    # the next run repairs and completes
    if "$@" --out "$out" --overwrite > /dev/null 2>&1 && same_dir "$out" "$new"; then ok
    else bad "the run after the kill did not write $out"; fi
    "$ROAD" inspect "$out" > /dev/null 2>&1 && ok || bad "road inspect $out"
    no_leftovers "$out"
}

train_round() {
    out="$TMP/t"
    kill_run "$train_ms" $train --out "$out" --overwrite
    n=0
    for c in "$out"/checkpoint-*; do
        case "$c" in *.tmp.*|*.old.*) continue ;; esac  # a killed save's leftovers
        [ -d "$c" ] || continue
        n=$((n + 1))
        "$ROAD" inspect "$c" > /dev/null 2>&1 && ok || bad "checkpoint $c does not load"
        no_leftovers "$c"
    done
    if [ -f "$out/trainer_state.json" ]; then s_done=$((s_done + 1))
    elif [ $n -gt 0 ]; then s_ckpt=$((s_ckpt + 1))
    else s_none=$((s_none + 1)); fi
    if [ -f "$out/adapter_config.json" ]; then
        "$ROAD" inspect "$out" > /dev/null 2>&1 && ok || bad "the final adapter in $out does not load"
    fi
    # resume finishes, exactly as the uninterrupted run
    if [ -d "$out" ]; then $train --out "$out" --resume > "$TMP/resume.log" 2>&1
    else $train --out "$out" > "$TMP/resume.log" 2>&1; fi
    rc=$?
    if [ $rc -eq 0 ] && cmp -s "$out/adapter_model.safetensors" "$TMP/ref/t/adapter_model.safetensors"; then ok
    else bad "resume after a kill (exit $rc) did not give the uninterrupted adapter: $(tail -2 "$TMP/resume.log")"; fi
}

r=0
while [ $r -lt "$KILLS" ]; do
    if [ $((r / 3 % 2)) -eq 1 ]; then
        export ROAD_TEST_DIR_FALLBACK=1; fallback_runs=$((fallback_runs + 1))
    else unset ROAD_TEST_DIR_FALLBACK; fi
    case $((r % 3)) in
    0) if [ $((r / 3 % 2)) -eq 0 ]; then folder_round "$TMP/m" "$TMP/ref/m_bf16" "$TMP/ref/m_f32" 25 $merge
       else folder_round "$TMP/m" "$TMP/ref/m_f32" "$TMP/ref/m_bf16" 25 $merge --dtype bf16; fi ;;
    1) if [ $((r / 3 % 2)) -eq 0 ]; then folder_round "$TMP/i" "$TMP/ref/i_2" "$TMP/ref/i_1" 25 $init --seed 1
       else folder_round "$TMP/i" "$TMP/ref/i_1" "$TMP/ref/i_2" 25 $init --seed 2; fi ;;
    2) train_round ;;
    esac
    r=$((r + 1))
done
unset ROAD_TEST_DIR_FALLBACK

# A full disk: 700 KiB holds one float32 model (540 KiB), not a second one beside it.
disk="skipped (mount not permitted)"
mkdir -p "$MNT"
if mount -t tmpfs -o size=700k tmpfs "$MNT" 2>/dev/null; then
    $merge --out "$MNT/m" > /dev/null 2>&1 || bad "merge into the small disk"
    out=$($merge --out "$MNT/m" --overwrite --dtype bf16 2>&1); rc=$?
    case "$out" in *"No space left"*) ok ;; *) bad "full disk: the message does not say so: $out" ;; esac
    [ $rc -eq 1 ] && ok || bad "full disk: exit $rc, expected 1"
    same_dir "$MNT/m" "$TMP/ref/m_f32" && ok || bad "full disk: the old folder changed"
    no_leftovers "$MNT/m"
    out=$($train --out "$MNT/t" 2>&1); rc=$?
    [ $rc -ne 0 ] && ok || bad "training into a full disk succeeded?"
    disk="checked (ENOSPC refused, old folder intact; train: exit $rc)"
fi

echo "kill_writes: $KILLS rounds, $kills kills landed ($fallback_runs rounds with the two-rename fallback)"
echo "  folder states after a kill: absent $s_absent, old $s_old, new $s_new"
echo "  training runs after a kill: nothing yet $s_none, checkpoints $s_ckpt, finished $s_done"
echo "  full disk: $disk"
echo "  checks passed: $checks, failed: $fails"
[ "$fails" -eq 0 ]
