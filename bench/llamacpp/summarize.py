#!/usr/bin/env python3
"""bench/llamacpp/summarize.py SAMPLES.jsonl - the table and the JSON line of run.sh.

Each line of SAMPLES.jsonl is one process's sample (bench_llamacpp or bench.mjs time) with
"format" (road's name), "round" and, for llama.cpp, the read bandwidth taken just before it.
Per (threads, pair, engine): the median of every figure over the rounds; "vs" is the median
of the per-round ratios road / llama.cpp (rounds alternate the two, so a ratio compares
samples taken in the same phase of the machine's load). Standard library only.
"""
import json
import statistics as st
import sys

PAIRS = {"f32": "F32", "bf16": "BF16", "int8": "Q8_0", "nf4": "Q4_0", "int8-q8": "Q8_0", "nf4-q8": "Q4_0"}
FIGS = ["prefill_tps", "decode1_tps", "decode8_tps", "decode1_of_bound", "peak_rss_mb"]


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
    for r in rows:
        if "decode1_of_bound" not in r and r.get("read_gbs"):
            r["bound_tps"] = r["read_gbs"] * 1e9 / r["bytes_per_token"]
            r["decode1_of_bound"] = r["decode1_tps"] / r["bound_tps"]
    groups = {}
    for r in rows:
        groups.setdefault((r["threads"], r["format"], r["engine"]), []).append(r)
    out = []
    print(f"{'thr':>3} {'road':>5} {'llama.cpp':>9}  {'figure':<22} {'road':>9} {'llama.cpp':>9} {'road/llama':>10}  [range of the per-round ratios] (n)")
    for (threads, fmt) in sorted({(k[0], k[1]) for k in groups}, key=lambda k: (k[0], list(PAIRS).index(k[1]))):
        a, b = groups.get((threads, fmt, "road"), []), groups.get((threads, fmt, "llama.cpp"), [])
        rec = {"threads": threads, "road": fmt, "llama.cpp": PAIRS[fmt], "rounds": min(len(a), len(b))}
        for f in FIGS + ["read_gbs", "bytes_per_token"]:
            ma = st.median(x[f] for x in a) if a else None
            mb = st.median(x[f] for x in b) if b else None
            by_round = {x["round"]: x[f] for x in b}
            ratios = [x[f] / by_round[x["round"]] for x in a if by_round.get(x["round"])]
            ratio = st.median(ratios) if ratios else None
            rec[f] = {"road": ma, "llama.cpp": mb, "ratio": ratio,
                      "ratio_range": [min(ratios), max(ratios)] if ratios else None}
            if f in FIGS:
                fmtv = lambda v: "-" if v is None else f"{v:9.3f}" if v < 100 else f"{v:9.0f}"
                print(f"{threads:>3} {fmt:>5} {PAIRS[fmt]:>9}  {f:<22} {fmtv(ma)} {fmtv(mb)} "
                      f"{'-' if ratio is None else f'{ratio:10.2f}'}  "
                      f"{'' if not ratios else f'[{min(ratios):.2f}-{max(ratios):.2f}]'} ({len(a)}/{len(b)})")
        out.append(rec)
    print(json.dumps({"bench": "road_vs_llamacpp", "results": out}))


if __name__ == "__main__":
    main()
