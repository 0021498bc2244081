#!/usr/bin/env python3
"""bench/torch_train_step.py - the PyTorch side of bench_train: one RoAd training step
(forward + causal-LM loss + backward, gradients only for RoAd parameters) of a Llama-shaped
model in plain PyTorch, eager, float32, as transformers' LlamaForCausalLM + PEFT's RoAd would
run it (no transformers or PEFT needed).

Model: embedding, RMSNorm (w * x / sqrt(mean(x^2) + eps)), rotate-half RoPE (llama3 frequency
remap), GQA causal attention with explicit matmuls and softmax (transformers' eager path),
SwiGLU MLP, lm_head (tied unless the model has lm_head.weight), loss on shifted labels. RoAd road_1 on every linear layer but the
head, as PEFT's `_apply_road`: c1 = alpha*cos(theta), c2 = alpha*sin(theta) with road_1's
per-pair parameters repeated, y' = y*c1 + rotate_half_in_groups(y)*c2.

Weights: random (default), or --model DIR (config.json + model.safetensors, F32/BF16/F16 read
by the small reader below). RoAd parameters: random, or --adapter FILE.safetensors holding
"<layer>.theta" / "<layer>.alpha" (bench_train writes it). --ids FILE: the batch (B*T ints,
whitespace separated). --grads FILE: "<layer>.dtheta" / "<layer>.dalpha" to compare with this
run's gradients. Prints one JSON line (the last line of stdout).
"""
import argparse
import json
import math
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


# ---- a tiny safetensors reader -----------------------------------------------------------------
def st_read(path):
    """{name: float32 torch tensor} from a .safetensors file (F32, BF16, F16, F64, I64)."""
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            f.seek(base + b)
            raw = bytearray(f.read(e - b))
            shape = info["shape"]
            dt = info["dtype"]
            if dt == "F32":
                t = torch.frombuffer(raw, dtype=torch.float32)
            elif dt == "BF16":
                u = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                t = torch.from_numpy(u.view(np.float32))
            elif dt == "F16":
                t = torch.from_numpy(np.frombuffer(raw, dtype=np.float16).astype(np.float32))
            elif dt == "F64":
                t = torch.from_numpy(np.frombuffer(raw, dtype=np.float64).astype(np.float32))
            elif dt == "I64":
                t = torch.frombuffer(raw, dtype=torch.int64)
            else:
                raise ValueError(f"{path}: {name}: dtype {dt} not handled")
            out[name] = t.reshape(shape)
    return out


# ---- the model -----------------------------------------------------------------------------------
def llama3_inv_freq(cfg):
    d = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    typ = rs.get("rope_type", rs.get("type"))
    if typ == "linear":
        return inv / rs["factor"]
    assert typ == "llama3", typ
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    lo_wl, hi_wl = old / lo, old / hi
    wl = 2 * math.pi / inv
    inv_l = torch.where(wl > lo_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wl < hi_wl) * ~(wl > lo_wl)
    return torch.where(medium, smoothed, inv_l)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def road_cols(theta, alpha, g, variant="road_1"):
    """PEFT's _prepare_cols: the per-output-element (c1, c2) of a RoAd layer.
    road_1: theta, alpha (out/2,), one pair per (i, i + g/2) of a group; road_2: (out,);
    road_4: (2*out,), per group g "cos" entries then g "sin" entries."""
    if variant == "road_1":
        th = theta.reshape(-1, g // 2).repeat_interleave(2, dim=0).flatten()
        al = alpha.reshape(-1, g // 2).repeat_interleave(2, dim=0).flatten()
        return al * th.cos(), al * th.sin()
    if variant == "road_2":
        return alpha * theta.cos(), alpha * theta.sin()
    assert variant == "road_4", variant
    th = theta.reshape(-1, 2, g)
    al = alpha.reshape(-1, 2, g)
    return al[:, 0, :].flatten() * th[:, 0, :].cos().flatten(), \
        al[:, 1, :].flatten() * th[:, 1, :].sin().flatten()


def road_apply(y, theta, alpha, g, variant="road_1"):
    """PEFT's _apply_road (y: (..., out)): y' = y*c1 + rotate_half_in_groups(y)*c2."""
    c1, c2 = road_cols(theta, alpha, g, variant)
    yg = y.reshape(-1, 2, g // 2)
    rot = torch.stack([-yg[:, 1, :], yg[:, 0, :]], dim=1).reshape(y.shape)
    return y * c1 + rot * c2


class Model:
    def __init__(self, cfg, w, road, g, variant="road_1"):
        self.cfg, self.w, self.road, self.g, self.variant = cfg, w, road, g, variant
        self.inv_freq = llama3_inv_freq(cfg)

    def lin(self, name, x):
        y = F.linear(x, self.w[name + ".weight"], self.w.get(name + ".bias"))
        if name in self.road:
            th, al = self.road[name]
            y = road_apply(y, th, al, self.g, self.variant)
        return y

    def rms(self, x, wname):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.w[wname] * (x * torch.rsqrt(var + self.cfg["rms_norm_eps"]))

    def loss(self, ids, labels, attention_mask=None):
        """Causal-LM loss. attention_mask (B, T) of 0/1, optional: padded batch as transformers
        takes it (keys at padding masked with finfo.min, as the causal part; valid tokens of a
        row at positions 0..n-1, padding slots at 1 as generate() does: not normative)."""
        cfg, w = self.cfg, self.w
        B, T = ids.shape
        nh, nkv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        x = F.embedding(ids, w["model.embed_tokens.weight"])
        fmin = torch.finfo(torch.float32).min
        if attention_mask is None:
            pos = torch.arange(T, dtype=torch.float32)
            fr = pos[:, None] * self.inv_freq[None, :]
            emb = torch.cat((fr, fr), dim=-1)
            cos, sin = emb.cos()[None, None], emb.sin()[None, None]
            mask = torch.full((T, T), fmin).triu(1)[None, None]
        else:
            am = attention_mask.to(torch.int64)
            pos = (am.cumsum(-1) - 1).masked_fill(am == 0, 1).to(torch.float32)  # (B, T)
            fr = pos[:, :, None] * self.inv_freq[None, None, :]
            emb = torch.cat((fr, fr), dim=-1)
            cos, sin = emb.cos()[:, None], emb.sin()[:, None]
            causal = torch.full((T, T), fmin).triu(1)[None, None].expand(B, 1, T, T).clone()
            mask = causal.masked_fill(am[:, None, None, :] == 0, fmin)
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            h = self.rms(x, p + "input_layernorm.weight")
            q = self.lin(p + "self_attn.q_proj", h).view(B, T, nh, d).transpose(1, 2)
            k = self.lin(p + "self_attn.k_proj", h).view(B, T, nkv, d).transpose(1, 2)
            v = self.lin(p + "self_attn.v_proj", h).view(B, T, nkv, d).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            rep = nh // nkv
            k = k[:, :, None].expand(B, nkv, rep, T, d).reshape(B, nh, T, d)
            v = v[:, :, None].expand(B, nkv, rep, T, d).reshape(B, nh, T, d)
            s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d) + mask
            a = torch.matmul(F.softmax(s, dim=-1, dtype=s.dtype), v)  # float32 (HF) or float64
            a = a.transpose(1, 2).reshape(B, T, nh * d)
            x = x + self.lin(p + "self_attn.o_proj", a)
            h = self.rms(x, p + "post_attention_layernorm.weight")
            m = F.silu(self.lin(p + "mlp.gate_proj", h)) * self.lin(p + "mlp.up_proj", h)
            x = x + self.lin(p + "mlp.down_proj", m)
        h = self.rms(x, "model.norm.weight")
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        logits = F.linear(h, head)
        V = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1),
                               ignore_index=-100)


def random_model(a):
    cfg = {"hidden_size": a.hidden, "intermediate_size": a.inter, "num_hidden_layers": a.layers,
           "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": a.head_dim,
           "vocab_size": a.vocab, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
           "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
           "tie_word_embeddings": not a.untied}
    g = torch.Generator().manual_seed(0)
    H, I, nh, nkv, d = a.hidden, a.inter, a.heads, a.kv_heads, a.head_dim
    sc = 2.0 / math.sqrt(H)
    w = {"model.embed_tokens.weight": (torch.rand(a.vocab, H, generator=g) - 0.5) * 0.04,
         "model.norm.weight": 1 + 0.1 * (torch.rand(H, generator=g) - 0.5)}
    if a.untied:
        w["lm_head.weight"] = (torch.rand(a.vocab, H, generator=g) - 0.5) * sc
    shapes = [(nh * d, H), (nkv * d, H), (nkv * d, H), (H, nh * d), (I, H), (I, H), (H, I)]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        for name, sh in zip(PROJ, shapes):
            w[p + name + ".weight"] = (torch.rand(*sh, generator=g) - 0.5) * sc
        for n in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            w[p + n] = 1 + 0.1 * (torch.rand(H, generator=g) - 0.5)
    return cfg, w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--inter", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--untied", action="store_true", help="random model: own lm_head (not tied)")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--model", help="folder with config.json + model.safetensors")
    ap.add_argument("--adapter", help="safetensors with <layer>.theta / <layer>.alpha")
    ap.add_argument("--ids", help="file with B*T token ids")
    ap.add_argument("--grads", help="safetensors with <layer>.dtheta / <layer>.dalpha to compare")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    if a.model:
        with open(a.model + "/config.json") as f:
            cfg = json.load(f)
        cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
        w = st_read(a.model + "/model.safetensors")
        a.layers, a.vocab = cfg["num_hidden_layers"], cfg["vocab_size"]
    else:
        cfg, w = random_model(a)
    for t in w.values():
        t.requires_grad_(False)

    # RoAd on every linear layer but the head (PEFT's "all-linear"), road_1
    ad = st_read(a.adapter) if a.adapter else {}
    road = {}
    gen = torch.Generator().manual_seed(1)
    for l in range(a.layers):
        for name in PROJ:
            key = f"model.layers.{l}.{name}"
            out = w[key + ".weight"].shape[0]
            if ad:
                th, al = ad[key + ".theta"].clone(), ad[key + ".alpha"].clone()
            else:
                th = torch.randn(out // 2, generator=gen) * 0.5
                al = 1 + torch.randn(out // 2, generator=gen) * 0.5
            road[key] = (th.requires_grad_(True), al.requires_grad_(True))
    params = [t for pair in road.values() for t in pair]
    model = Model(cfg, w, road, a.group_size)

    B, T = a.batch, a.seq
    if a.ids:
        with open(a.ids) as f:
            ids = torch.tensor([int(s) for s in f.read().split()], dtype=torch.int64).view(B, T)
    else:
        ids = torch.randint(0, a.vocab, (B, T), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()

    def step():
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        loss = model.loss(ids, labels)
        loss.backward()
        return time.perf_counter() - t0, loss.item()

    def fwd():
        t0 = time.perf_counter()
        with torch.no_grad():
            loss = model.loss(ids, labels)
        return time.perf_counter() - t0, loss.item()

    steps, fwds = [], []
    for r in range(a.warmup + a.reps):
        t, loss = step()
        if r >= a.warmup:
            steps.append(t)
    for r in range(1 + min(a.reps, 3)):
        t, _ = fwd()
        if r >= 1:
            fwds.append(t)
    t, loss = step()  # gradients of exactly one step, for the comparison
    res = {"impl": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "layers": a.layers, "batch": B, "seq": T, "step_s": statistics.median(steps),
           "steps_s": steps, "fwd_s": statistics.median(fwds), "loss": loss}
    try:
        import resource
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except ImportError:
        pass
    if a.grads:
        ref = st_read(a.grads)
        num = den = 0.0
        worst, worst_name = 0.0, ""
        for key, (th, al) in road.items():
            for mine, suf in ((th.grad, ".dtheta"), (al.grad, ".dalpha")):
                other = ref[key + suf]
                e = float((mine - other).double().norm())
                n = float(mine.double().norm())
                num += e * e
                den += n * n
                rel = e / max(n, 1e-30)
                if rel > worst:
                    worst, worst_name = rel, key + suf
        res["grad_rel_l2"] = math.sqrt(num / max(den, 1e-300))
        res["grad_worst_rel_l2"] = worst
        res["grad_worst_tensor"] = worst_name
    print(json.dumps(res))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
