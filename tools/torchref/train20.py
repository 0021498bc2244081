#!/usr/bin/env python3
"""tools/torchref/train20.py - the PyTorch reference for tests/test_torchref.c: 20 AdamW steps
on a RoAd adapter of the tiny Llama fixture, from the same start as road.

  /usr/bin/python3 tools/torchref/train20.py [--out tests/fixtures/torchref]

Model code: bench/torch_train_step.py (plain PyTorch Llama, PEFT's RoAd math for road_1/2/4),
imported from there so that the benchmark and this reference are one implementation.

Start: tests/fixtures/llama/tiny-llama (config.json + model.safetensors, F32, frozen) and the
PEFT adapter tests/fixtures/llama/tiny-llama/adapters/B (road_4, group 16, all 7 projections).
Batch: inputs.input_ids / attention_mask / labels of tests/fixtures/llama/tiny-llama/
cases.safetensors (3 x 9, left and right padding); positions: the valid tokens of each row are
0..n-1 (as road does), padding keys masked, loss = transformers' causal-LM loss (mean over the
shifted labels != -100).

Optimizer: torch.optim.AdamW(lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01,
amsgrad False) over the adapter's road_theta / road_alpha only; no schedule, no clipping;
gradients set to None before each step. torch 1.13's default foreach=None resolves to False
on every device (torch/optim/adamw.py: "if foreach is None: foreach = False"): the
single-tensor implementation, which is the one run here (foreach=None passed explicitly).

The loss before each step (the loss whose gradient that step uses) is recorded, 20 of them,
and the final parameters. The same run is repeated in float64 (weights widened exactly) as a
measure of float32 noise: how far a correct float32 implementation may drift from another.

Writes <out>/train20.json, <out>/train20_final.safetensors (final float32 parameters under the
adapter's PEFT keys) and <out>/train20_final_f64.safetensors (the float64 run's, same keys).
"""
import argparse
import json
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from torch_train_step import Model, st_read  # noqa: E402

STEPS = 20
HP = {"lr": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
PREFIX = "base_model.model."


def st_write(path, tensors):
    """Minimal safetensors writer (F32 / F64, keys sorted, header padded to 8 bytes)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        dt = {torch.float32: "F32", torch.float64: "F64"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def run(dtype, cfg, w32, ad32, acfg, ids, mask, labels):
    w = {k: v.to(dtype) for k, v in w32.items()}
    road = {}
    for key in sorted(ad32):
        if key.endswith(".road_theta"):
            layer = key[len(PREFIX):-len(".road_theta")]
            th = ad32[key].to(dtype).clone().requires_grad_(True)
            al = ad32[PREFIX + layer + ".road_alpha"].to(dtype).clone().requires_grad_(True)
            road[layer] = (th, al)
    model = Model(cfg, w, road, acfg["group_size"], acfg["variant"])
    if dtype == torch.float64:
        model.inv_freq = model.inv_freq.double()
    params = [t for layer in sorted(road) for t in road[layer]]
    opt = torch.optim.AdamW(params, lr=HP["lr"], betas=tuple(HP["betas"]), eps=HP["eps"],
                            weight_decay=HP["weight_decay"], amsgrad=False, foreach=None)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(ids, labels, mask)
        loss.backward()
        losses.append(loss.item())
        opt.step()
    final = {}
    for layer, (th, al) in road.items():
        final[PREFIX + layer + ".road_theta"] = th.detach()
        final[PREFIX + layer + ".road_alpha"] = al.detach()
    return losses, final


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "torchref"))
    a = ap.parse_args()
    torch.set_num_threads(1)  # one thread: reductions in one fixed order, reproducible
    mdir = os.path.join(ROOT, "tests", "fixtures", "llama", "tiny-llama")
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    w = st_read(os.path.join(mdir, "model.safetensors"))
    if cfg.get("tie_word_embeddings", True):
        w.pop("lm_head.weight", None)
    adir = os.path.join(mdir, "adapters", "B")
    with open(os.path.join(adir, "adapter_config.json")) as f:
        acfg = json.load(f)
    ad = st_read(os.path.join(adir, "adapter_model.safetensors"))
    cases = st_read(os.path.join(mdir, "cases.safetensors"))
    ids = cases["inputs.input_ids"].clone()
    mask = cases["inputs.attention_mask"].clone()
    labels = cases["inputs.labels"].clone()

    l32, f32 = run(torch.float32, cfg, w, ad, acfg, ids, mask, labels)
    l64, f64 = run(torch.float64, cfg, w, ad, acfg, ids, mask, labels)

    os.makedirs(a.out, exist_ok=True)
    st_write(os.path.join(a.out, "train20_final.safetensors"), f32)
    st_write(os.path.join(a.out, "train20_final_f64.safetensors"), f64)
    drift = max(abs(x - y) / abs(y) for x, y in zip(l32, l64))
    pdrift = max(float((f32[k].double() - f64[k]).abs().max()) for k in f32)
    doc = {
        "format_version": 1,
        "what": "20 AdamW steps on adapter B of tiny-llama, loss before each step",
        "model": "tests/fixtures/llama/tiny-llama",
        "adapter": "tests/fixtures/llama/tiny-llama/adapters/B",
        "adapter_variant": acfg["variant"],
        "adapter_group_size": acfg["group_size"],
        "batch": "inputs.input_ids / inputs.attention_mask / inputs.labels of "
                 "tests/fixtures/llama/tiny-llama/cases.safetensors",
        "steps": STEPS,
        "optimizer": "torch.optim.AdamW, single-tensor implementation (torch 1.13 default "
                     "foreach=None -> False), amsgrad False, maximize False",
        "hyperparameters": HP,
        "schedule": "constant (none)",
        "clipping": "none",
        "zero_grad": "set_to_none before every step",
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "losses": l32,
        "losses_float64": l64,
        "max_rel_loss_diff_float32_vs_float64": drift,
        "max_abs_param_diff_float32_vs_float64": pdrift,
        "final_params": "train20_final.safetensors (float32 run), "
                        "train20_final_f64.safetensors (float64 run); PEFT keys",
        "command": "/usr/bin/python3 tools/torchref/train20.py",
    }
    with open(os.path.join(a.out, "train20.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(json.dumps({"losses": l32, "rel_drift_f32_f64": drift, "param_drift": pdrift}))


if __name__ == "__main__":
    main()
