#!/usr/bin/env python3
"""tools/torchref/rope_ref.py - transformers' own RoPE scaling as the reference for
tests/test_rope.c: inv_freq, the attention factor and cos/sin of the rotary embedding for
dynamic, yarn and longrope configs (and default/linear/llama3 for comparison).

  python3 tools/torchref/rope_ref.py [--out tests/fixtures/rope]

Needs torch and transformers installed outside the tree (any 4.x from 4.57 or 5.x), e.g.

  python3 -m venv /tmp/ropevenv && /tmp/ropevenv/bin/pip install torch "transformers==4.57.6"
  /tmp/ropevenv/bin/python tools/torchref/rope_ref.py              # writes rope_v4.json
  pip install --target /tmp/tf5 "transformers==5.25.0"
  PYTHONPATH=/tmp/tf5 /tmp/ropevenv/bin/python tools/torchref/rope_ref.py   # rope_v5.json

Each case is a config.json (written to a temporary folder and read with AutoConfig, as a
checkpoint's is) and a sequence length L. The model family's own rotary embedding class
(LlamaRotaryEmbedding, Phi3RotaryEmbedding, ...) is built fresh and run once on position_ids
0..L-1, so its dynamic/longrope update sees max(position_ids) + 1 = L, as for one sequence of
L tokens; its inv_freq buffer after the call, its attention_scaling and the cos/sin rows of a
few positions are written (cos/sin: the first rotary_dim / 2 columns; the second half repeats
them). ROPE_INIT_FUNCTIONS[type](config, device, seq_len) is also called, and its inv_freq and
attention factor checked against the module's (equal but for dynamic above
max_position_embeddings, where the module passes seq_len as a tensor and computes the base in
float32: there both are written).

configs in rope_scaling form (what 4.x writes) run under both versions; configs in
rope_parameters form (what v5 writes) only under 5.x. Writes <out>/rope_v<major>.json with a
provenance line (python, torch and transformers versions).
"""
import argparse
import importlib
import json
import os
import platform
import sys
import tempfile

import torch
import transformers
from transformers import AutoConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

V5 = int(transformers.__version__.split(".")[0]) >= 5

# config.json bases: a llama with head_dim 16 (8 frequencies), a phi3 shaped like Phi-4-mini's
# attention (head_dim 128, partial_rotary_factor 0.75: 96 rotary dims, 48 frequencies).
LLAMA = {"model_type": "llama", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 176,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 64, "rope_theta": 10000.0}
PHI3 = {"model_type": "phi3", "vocab_size": 320, "hidden_size": 512, "intermediate_size": 1024,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 1024, "original_max_position_embeddings": 64,
        "partial_rotary_factor": 0.75, "rope_theta": 10000.0}
N_PHI = 48
SHORT = [round(1.0 + 0.01 * i + 0.003 * (i % 5), 6) for i in range(N_PHI)]
LONG = [round(1.0 + 0.37 * i + 0.11 * (i % 3), 6) for i in range(N_PHI)]


def cfg(base, **kw):
    d = dict(base)
    d.update(kw)
    return d


def yarn(**kw):
    d = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
    d.update(kw)
    return d


# (name, config.json, sequence lengths, form)
CASES = [
    ("default", cfg(LLAMA), [20], "rope_scaling"),
    ("linear", cfg(LLAMA, rope_scaling={"rope_type": "linear", "factor": 4.0}), [20], "rope_scaling"),
    ("llama3", cfg(LLAMA, rope_theta=500000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}), [20], "rope_scaling"),
    # dynamic: at, below and above max_position_embeddings (64)
    ("dynamic", cfg(LLAMA, rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
     [20, 64, 65, 100, 1000], "rope_scaling"),
    ("dynamic_odd_factor", cfg(LLAMA, rope_theta=500000.0, max_position_embeddings=48,
                               rope_scaling={"type": "dynamic", "factor": 3.7}),
     [48, 49, 333], "rope_scaling"),
    # yarn: defaults (attention factor from factor), explicit betas and attention_factor,
    # mscale / mscale_all_dim, truncate false, a qwen3-like large one
    ("yarn", cfg(LLAMA, max_position_embeddings=64, rope_scaling=yarn()), [20, 100], "rope_scaling"),
    ("yarn_betas_attention", cfg(LLAMA, rope_scaling=yarn(beta_fast=16.0, beta_slow=2.0,
                                                         attention_factor=1.25)),
     [20], "rope_scaling"),
    ("yarn_mscale", cfg(LLAMA, rope_scaling=yarn(mscale=0.707, mscale_all_dim=1.0, factor=40.0)),
     [20], "rope_scaling"),
    ("yarn_no_truncate", cfg(LLAMA, rope_scaling=yarn(truncate=False, beta_fast=8.0)), [20],
     "rope_scaling"),
    ("yarn_qwen3", {"model_type": "qwen3", "vocab_size": 320, "hidden_size": 64,
                    "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 131072,
                    "rope_theta": 1000000.0,
                    "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                     "original_max_position_embeddings": 32768}},
     [20], "rope_scaling"),
    # longrope (phi3): short at and below the original length (64), long above
    ("longrope_phi3", cfg(PHI3, rope_scaling={"type": "longrope", "short_factor": SHORT,
                                              "long_factor": LONG}),
     [10, 64, 65, 200], "rope_scaling"),
    ("longrope_phi3_su", cfg(PHI3, rope_scaling={"type": "su", "short_factor": SHORT,
                                                 "long_factor": LONG}),
     [64, 65], "rope_scaling"),
    # longrope on a llama with an explicit attention_factor
    ("longrope_llama_attention", cfg(LLAMA, max_position_embeddings=256,
                                     original_max_position_embeddings=32,
                                     rope_scaling={"rope_type": "longrope",
                                                   "short_factor": SHORT[:8],
                                                   "long_factor": LONG[:8],
                                                   "attention_factor": 1.1}),
     [32, 33], "rope_scaling"),
    # v5's spelling: rope_parameters holding rope_theta (5.x only)
    ("v5_yarn", cfg({k: v for k, v in LLAMA.items() if k != "rope_theta"},
                    rope_parameters=dict(yarn(beta_fast=16.0), rope_theta=20000.0)),
     [20], "rope_parameters"),
    ("v5_dynamic", cfg({k: v for k, v in LLAMA.items() if k != "rope_theta"},
                       rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                        "rope_theta": 10000.0}),
     [64, 100], "rope_parameters"),
    ("v5_longrope_phi3", cfg({k: v for k, v in PHI3.items() if k != "rope_theta"},
                             rope_parameters={"rope_type": "longrope", "short_factor": SHORT,
                                              "long_factor": LONG, "rope_theta": 10000.0,
                                              "partial_rotary_factor": 0.75,
                                              "original_max_position_embeddings": 64}),
     [64, 65], "rope_parameters"),
]


def rotary_class(model_type):
    mod = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    names = [n for n in dir(mod) if n.endswith("RotaryEmbedding")]
    pref = [n for n in names if n.lower() == f"{model_type}rotaryembedding"]
    return getattr(mod, (pref or names)[0])


def load_config(d):
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(d, f)
        return AutoConfig.from_pretrained(tmp)


def rope_type_of(config):
    rp = getattr(config, "rope_parameters", None) if V5 else config.rope_scaling
    if not rp:
        return "default"
    return rp.get("rope_type", rp.get("type", "default"))


def run_case(name, d, L):
    config = load_config(d)
    rtype = rope_type_of(config)
    emb = rotary_class(d["model_type"])(config)
    x = torch.zeros(1, dtype=torch.float32)
    pos = torch.arange(L, dtype=torch.int64)[None]
    with torch.no_grad():
        cos, sin = emb(x, pos)
    inv = emb.inv_freq.detach().float().clone()
    att = float(emb.attention_scaling)
    # v5 keeps "default" on the module (compute_default_rope_parameters), 4.x in the table
    fn = ROPE_INIT_FUNCTIONS.get(rtype) or getattr(emb, "compute_default_rope_parameters")
    init_inv, init_att = fn(config, device=torch.device("cpu"), seq_len=L)
    rel = ((init_inv.float() - inv).abs() / inv.abs()).max().item()
    if rel > 1e-6 or abs(init_att - att) > 1e-12:
        sys.exit(f"{name} L={L}: ROPE_INIT_FUNCTIONS and the module disagree ({rel}, {init_att}, {att})")
    half = inv.numel()
    keep = sorted({0, 1, L // 2, L - 1})
    return {
        "name": name, "config": d, "rope_type": rtype, "seq_len": L, "positions": keep,
        "inv_freq": inv.tolist(), "init_inv_freq": init_inv.float().tolist(),
        "attention_factor": att,
        "cos": [cos[0, p, :half].tolist() for p in keep],
        "sin": [sin[0, p, :half].tolist() for p in keep],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                   "tests", "fixtures", "rope"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    cases = []
    for name, d, lens, form in CASES:
        if form == "rope_parameters" and not V5:
            continue
        for L in lens:
            cases.append(run_case(name, d, L))
    major = transformers.__version__.split(".")[0]
    out = {
        "provenance": f"tools/torchref/rope_ref.py with python {platform.python_version()}, "
                      f"torch {torch.__version__}, transformers {transformers.__version__}",
        "cases": cases,
    }
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"rope_v{major}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"{path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
