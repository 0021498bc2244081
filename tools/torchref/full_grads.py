#!/usr/bin/env python3
"""tools/torchref/full_grads.py - the PyTorch reference for full fine-tuning (tests/test_full.c):
the loss of a batch and the gradient of every model tensor (embedding, every linear weight and
bias, every norm; a tied lm_head counts in the embedding's gradient).

  /usr/bin/python3 tools/torchref/full_grads.py [--out tests/fixtures/torchref]

Model code: bench/torch_train_step.py (plain PyTorch Llama), no adapter. Models:
tests/fixtures/llama/tiny-llama (F32, untied) and tests/fixtures/llama/tiny-qwen2 (BF16
widened exactly, tied embeddings, q/k/v biases). Batch: inputs.input_ids / attention_mask /
labels of the model's cases.safetensors. Computed in float64 (weights widened exactly), so the
reference carries no float32 noise of its own.

Writes <out>/full_grads_<model>.safetensors: "grad.<tensor name>" (F32, rounded from float64)
and "loss" (F64, shape [1]).
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, HERE)
from torch_train_step import Model, st_read  # noqa: E402
from train20 import st_write  # noqa: E402
import json  # noqa: E402


def run(name, out):
    mdir = os.path.join(ROOT, "tests", "fixtures", "llama", name)
    with open(os.path.join(mdir, "config.json")) as f:
        cfg = json.load(f)
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    w = st_read(os.path.join(mdir, "model.safetensors"))
    if cfg.get("tie_word_embeddings", False):
        w.pop("lm_head.weight", None)
    w = {k: v.to(torch.float64).clone().requires_grad_(True) for k, v in w.items()}
    cases = st_read(os.path.join(mdir, "cases.safetensors"))
    ids = cases["inputs.input_ids"].clone()
    mask = cases["inputs.attention_mask"].clone()
    labels = cases["inputs.labels"].clone()
    model = Model(cfg, w, {}, 2)
    model.inv_freq = model.inv_freq.double()
    loss = model.loss(ids, labels, mask)
    loss.backward()
    res = {"grad." + k: v.grad.to(torch.float32) for k, v in w.items()}
    res["loss"] = loss.detach().reshape(1)
    st_write(os.path.join(out, f"full_grads_{name}.safetensors"), res)
    print(name, "loss", loss.item(), "tensors", len(w))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "torchref"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    for name in ("tiny-llama", "tiny-qwen2"):
        run(name, a.out)


if __name__ == "__main__":
    main()
