#!/usr/bin/env python3
"""tools/quantref/quantref.py - reference quantizations for tests/test_quant.c, computed with
numpy (and torch for bitsandbytes' dynamic map), independently of road's C code.

  /usr/bin/python3 tools/quantref/quantref.py [--out tests/fixtures/quant]

Formats (docs/quant.md; bitsandbytes' LLM.int8 weights and Linear4bit NF4 / FP4):
  int8: absmax per row; q = rint(w * (127 / absmax)) (half to even), w' = q * (absmax / 127).
  nf4 / fp4: the matrix flattened row-major in blocks of 64 (last block short), absmax per
    block, n = w * (1 / absmax) in float32, code = nearest table entry (NF4: ties to the lower
    value; FP4: sign bit 8 for n < 0, then the nearest magnitude of codes 0..7, ties to the
    smaller); two codes per byte, the first in the high nibble; w' = table[code] * absmax.
  double quantization: offset = mean(absmax) (float64 sum, rounded to float32); v = absmax -
    offset; per 256 values nested = max |v|, idx = nearest dynamic-map entry to v / nested
    (ties to the lower); absmax' = map[idx] * nested + offset.
Tables: bitsandbytes' published NF4 values and FP4 values ({0, 0.0625, 8, 12, 4, 6, 2, 3} and
negatives, / 12), and create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
re-computed here with torch as bitsandbytes describes it (float32 linspace, midpoints, times
10^(i-6), negatives, 0 and 1, sorted).

Writes <out>/quant.safetensors: tables/{nf4,fp4,dynamic_map}; per case <case>/w (input, F32),
<case>/data (U8: packed codes, or int8 bytes), <case>/absmax (F32) or <case>/qabsmax (U8) +
<case>/nested_absmax (F32) + <case>/nested_offset (F32 [1]), <case>/deq (F32, dequantized);
and <out>/quant.json listing the cases (format, rows, cols, double_quant).
"""
import argparse
import json
import os
import struct

import numpy as np
import torch

F32 = np.float32

NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=F32)
FP4 = (np.array([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0,
                 -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0], dtype=F32) / F32(12.0)).astype(F32)


def dynamic_map():
    data = []
    max_exp, non_sign = 7, 7
    for i in range(max_exp):
        items = 2 ** (i + non_sign - max_exp) + 1
        b = torch.linspace(0.1, 1, items, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-(max_exp - 1) + i)) * means).tolist()
        data += (-(10 ** (-(max_exp - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 256
    data.sort()
    return torch.tensor(data, dtype=torch.float32).numpy()


def nearest_sorted(values, x):
    """index into the ascending `values` of the nearest entry (ties to the lower)."""
    mids = ((values[:-1] + values[1:]) * F32(0.5)).astype(F32)
    return np.searchsorted(mids, x, side="left")


def codes4(fmt, n):
    if fmt == "nf4":
        order = np.argsort(NF4, kind="stable")
        return order[nearest_sorted(NF4[order], n)].astype(np.uint8)
    mags = FP4[:8]
    order = np.argsort(mags, kind="stable")
    c = order[nearest_sorted(mags[order], np.abs(n))].astype(np.uint8)
    return c | np.where(n < 0, 8, 0).astype(np.uint8)


def quant4(fmt, w, dq, dmap):
    flat = w.reshape(-1).astype(F32)
    n_el = flat.size
    nb = (n_el + 63) // 64
    pad = np.zeros(nb * 64, dtype=F32)
    pad[:n_el] = flat
    blocks = pad.reshape(nb, 64)
    absmax = np.abs(blocks).max(axis=1).astype(F32)
    inv = np.where(absmax > 0, F32(1.0) / np.where(absmax > 0, absmax, F32(1)), F32(0)).astype(F32)
    normed = (blocks * inv[:, None]).astype(F32)
    codes = codes4(fmt, normed).reshape(-1)[:n_el]
    table = NF4 if fmt == "nf4" else FP4
    out = {}
    if dq:
        offset = F32(absmax.astype(np.float64).mean())
        v = (absmax - offset).astype(F32)
        nn = (nb + 255) // 256
        nested = np.zeros(nn, dtype=F32)
        q = np.zeros(nb, dtype=np.uint8)
        for j in range(nn):
            seg = v[j * 256:(j + 1) * 256]
            a = F32(np.abs(seg).max())
            nested[j] = a
            x = (seg / a).astype(F32) if a > 0 else np.zeros_like(seg)
            q[j * 256:(j + 1) * 256] = nearest_sorted(dmap, x)
        eff = ((dmap[q] * np.repeat(nested, 256)[:nb]).astype(F32) + offset).astype(F32)
        out.update(qabsmax=q, nested_absmax=nested, nested_offset=np.array([offset], dtype=F32))
    else:
        eff = absmax
        out["absmax"] = absmax
    deq = (table[codes] * np.repeat(eff, 64)[:n_el]).astype(F32)
    c = np.zeros(((n_el + 1) // 2) * 2, dtype=np.uint8)
    c[:n_el] = codes
    out["data"] = ((c[0::2] << 4) | c[1::2]).astype(np.uint8)
    out["deq"] = deq.reshape(w.shape)
    return out


def quant8(w):
    absmax = np.abs(w).max(axis=1).astype(F32)
    s = np.where(absmax > 0, F32(127.0) / np.where(absmax > 0, absmax, F32(1)), F32(0)).astype(F32)
    q = np.clip(np.rint((w * s[:, None]).astype(F32)), -127, 127).astype(np.int8)
    deq = (q.astype(F32) * (absmax / F32(127.0))[:, None]).astype(F32)
    return {"data": q.view(np.uint8).reshape(-1), "absmax": absmax, "deq": deq}


def st_write(path, tensors):
    """Minimal safetensors writer (F32 / U8; F32 first, then by name, so every tensor is aligned
    to its element size, as the reference writer lays them out; header padded to 8 bytes)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors, key=lambda k: (np.asarray(tensors[k]).dtype.itemsize * -1, k)):
        t = np.ascontiguousarray(tensors[name])
        dt = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}[t.dtype]
        raw = t.tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# name, format, rows, cols, double_quant, how the weights are made
CASES = [
    ("nf4_small", "nf4", 16, 128, False, "normal"),
    ("fp4_small", "fp4", 16, 128, False, "normal"),
    ("nf4_odd", "nf4", 7, 45, False, "zero_block"),
    ("fp4_odd", "fp4", 5, 27, False, "zero_block"),
    ("nf4_dq", "nf4", 150, 128, True, "scaled_rows"),
    ("fp4_dq_odd", "fp4", 33, 100, True, "scaled_rows"),
    ("nf4_dq_zero", "nf4", 4, 64, True, "all_zero"),
    ("int8_small", "int8", 16, 70, False, "int8_mix"),
]


def make(kind, rows, cols, rng):
    w = (rng.standard_normal((rows, cols)) * 0.02).astype(F32)
    if kind == "zero_block":
        flat = w.reshape(-1)
        flat[64:128] = 0.0  # one whole all-zero block (elements 64..127)
    elif kind == "scaled_rows":
        w *= np.exp(rng.uniform(-3, 3, (rows, 1))).astype(F32)
    elif kind == "all_zero":
        w[:] = 0.0
        w[1, 3] = 0.5  # one non-zero block among zero ones
    elif kind == "int8_mix":
        w[2] = 0.0  # a zero row
        w[3, :8] = np.array([1.0, -1.0, 0.5, -0.5, 0.25, 1.5 / 127, 2.5 / 127, -2.5 / 127], dtype=F32)
        w[3, 8:] = 0.0
        w[4] *= 1000.0
    return w.astype(F32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "tests", "fixtures", "quant"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    dmap = dynamic_map()
    tensors = {"tables/nf4": NF4, "tables/fp4": FP4, "tables/dynamic_map": dmap}
    listing = []
    for name, fmt, rows, cols, dq, kind in CASES:
        w = make(kind, rows, cols, rng)
        r = quant8(w) if fmt == "int8" else quant4(fmt, w, dq, dmap)
        tensors[name + "/w"] = w
        for k, v in r.items():
            tensors[name + "/" + k] = v
        listing.append({"name": name, "format": fmt, "rows": rows, "cols": cols,
                        "double_quant": dq, "weights": kind})
    st_write(os.path.join(args.out, "quant.safetensors"), tensors)
    with open(os.path.join(args.out, "quant.json"), "w") as f:
        json.dump({"generator": "tools/quantref/quantref.py", "numpy": np.__version__,
                   "torch": torch.__version__, "seed": 20240607, "cases": listing}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
