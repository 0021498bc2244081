#!/usr/bin/env python3
"""tools/gguf/compare_logits.py - road's logits against llama.cpp's on the same token ids,
the check bench/llamacpp/run.sh makes before any timing.

    compare_logits.py --road ROAD_BINARY --model HF_DIR --llama PROBS.f64 --ids "1 2 3"
                      [--tol T] [--work DIR]

road: `road eval` on the ids (one row, no padding) writes the logits [1, T, V]. llama.cpp:
bench/llamacpp/bench.mjs probs wrote the next-token probabilities [T, V] (float64; the JS API
gives probabilities, not raw logits). Both become log-softmax, centred per position (minus
the mean over the vocabulary): that is the logits less a per-position constant, on both
sides, so the difference is the logits' difference. Prints the largest |difference|, the
largest |logit| for scale and whether the top-1 token agrees; exits 1 above --tol.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np


def write_ids(path, ids):
    data = np.asarray([ids], dtype="<i8").tobytes()
    header = {"input_ids": {"dtype": "I64", "shape": [1, len(ids)], "data_offsets": [0, len(data)]},
              "__metadata__": {"format": "pt"}}
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def read_tensor(path, name):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        e = header[name]
        if e["dtype"] != "F32":
            sys.exit(f"compare_logits: {name} is {e['dtype']}, expected F32")
        f.seek(8 + n + e["data_offsets"][0])
        count = int(np.prod(e["shape"]))
        return np.frombuffer(f.read(4 * count), dtype="<f4").reshape(e["shape"])


def centred_log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    ls = x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    return ls - ls.mean(axis=-1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--road", required=True, help="the road CLI binary")
    ap.add_argument("--model", required=True)
    ap.add_argument("--llama", required=True, help="probabilities from bench.mjs probs")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--threads", default="0")
    ap.add_argument("--quantize", default="none")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    ids = [int(t) for t in a.ids.replace(",", " ").split()]
    with tempfile.TemporaryDirectory() as tmp:
        inp, dump = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
        write_ids(inp, ids)
        cmd = [a.road, "eval", "--model", a.model, "--input", inp, "--dump", dump, "--threads", a.threads]
        if a.quantize != "none":
            cmd += ["--quantize", a.quantize]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        road = read_tensor(dump, "logits")[0]
    V = road.shape[-1]
    llama_p = np.fromfile(a.llama, dtype="<f8").reshape(len(ids), V)
    if (llama_p <= 0).any():
        sys.exit("compare_logits: llama.cpp gave a zero probability (underflow): cannot compare")
    lr = centred_log_softmax(road)
    ll = np.log(llama_p)
    ll -= ll.mean(axis=-1, keepdims=True)
    diff = np.abs(lr - ll)
    worst = float(diff.max())
    scale = float(np.abs(road).max())
    top_agree = int((lr.argmax(-1) == ll.argmax(-1)).sum())
    ok = worst <= a.tol
    print(json.dumps({"check": "logits", "label": a.label, "tokens": len(ids), "vocab": V,
                      "max_abs_diff": worst, "mean_abs_diff": float(diff.mean()),
                      "max_abs_logit": scale, "top1_agree": f"{top_agree}/{len(ids)}",
                      "tol": a.tol, "ok": ok}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
