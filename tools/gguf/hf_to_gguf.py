#!/usr/bin/env python3
"""tools/gguf/hf_to_gguf.py - a Hugging Face Llama folder (config.json + model.safetensors or
shards) to one GGUF v3 file that llama.cpp loads: F32, F16, BF16, Q8_0 or Q4_0.

Written for bench/llamacpp/ (road vs llama.cpp on the same weights), from the GGUF
specification (ggml's docs/gguf.md) and llama.cpp's tensor names; no code of llama.cpp's own
converter. What it does, and why:

* Tensor names: HF's model.layers.N.self_attn.q_proj -> blk.N.attn_q, ... (TENSOR_NAMES).
  A tied lm_head is not written: llama.cpp reuses token_embd as the output matrix.
* Q and K rows are permuted per head. HF's checkpoints rotate the two halves of a head
  (rotate_half: pairs (i, i + d/2)); llama.cpp's "llama" graph rotates adjacent pairs
  (2i, 2i + 1). Row r = h*d + half*d/2 + i of HF goes to h*d + 2i + half in GGUF, which makes
  both compute the same q.k products.
* Llama 3 RoPE scaling ("rope_type": "llama3") becomes rope_freqs.weight: one divisor per
  frequency (1 for short wavelengths, factor for long ones, interpolated between), the same
  frequencies transformers computes.
* GGUF dims are innermost first: an HF [out, in] matrix is written with dims (in, out).
* 1-D tensors (norms) stay F32 in every output type (llama.cpp expects that); Q8_0 and Q4_0
  quantize every 2-D tensor, the embedding (the tied output) included.
* Tokenizer: llama.cpp refuses a model without a vocabulary. With a tokenizer.json of a
  byte-level BPE model (Llama 3's), its vocab and merges go in as "gpt2"; without one (the
  random benchmark models), a placeholder byte-level vocab: the 256 byte symbols, then
  "<|tok_N|>" up to vocab_size, no merges. Token ids are all the benchmark feeds.

Usage: hf_to_gguf.py MODEL_DIR OUT.gguf --outtype f32|f16|bf16|q8_0|q4_0
Needs numpy only (tools/gguf/requirements.txt).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

# GGUF metadata value types (ggml's gguf.h)
GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 7, 8, 9
GGUF_ALIGNMENT = 32  # the default of general.alignment

# ggml tensor types: id, elements per block, bytes per block
GGML_TYPES = {
    "f32": (0, 1, 4),
    "f16": (1, 1, 2),
    "q4_0": (2, 32, 18),  # f16 scale + 16 bytes of nibbles
    "q8_0": (8, 32, 34),  # f16 scale + 32 int8
    "bf16": (30, 1, 2),
}
# general.file_type (llama_ftype): ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_BF16
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}

TENSOR_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}

# GGUF tokenizer token types (llama_token_type)
TOKEN_NORMAL, TOKEN_CONTROL = 1, 3


# ---- safetensors reading (header + memmap) ---------------------------------------------------

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


class SafeTensors:
    """The tensors of one folder: name -> (file, dtype, shape, offset)."""

    def __init__(self, folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.entries = {}
        for fn in files:
            path = os.path.join(folder, fn)
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            mm = np.memmap(path, dtype=np.uint8, mode="r")
            for name, e in header.items():
                if name == "__metadata__":
                    continue
                if e["dtype"] not in ST_DTYPES:
                    sys.exit(f"hf_to_gguf: {name}: dtype {e['dtype']} not supported")
                self.entries[name] = (mm, e["dtype"], tuple(e["shape"]), 8 + n + e["data_offsets"][0])

    def names(self):
        return list(self.entries)

    def get_f32(self, name):
        """The tensor widened to float32 (a new array)."""
        mm, dt, shape, off = self.entries[name]
        count = int(np.prod(shape)) if shape else 1
        raw = mm[off : off + count * np.dtype(ST_DTYPES[dt]).itemsize].view(ST_DTYPES[dt])
        if dt == "BF16":
            x = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            x = raw.astype(np.float32)
        return x.reshape(shape)


# ---- conversions to the GGUF data types ------------------------------------------------------


def to_bf16_bits(x):
    """float32 -> bf16 bits, round to nearest even (NaN kept a NaN)."""
    b = x.astype(np.float32).view(np.uint32)
    rounded = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = ((b[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def round_away(x):
    """C's roundf: halves away from zero (numpy's round is half to even)."""
    return np.trunc(x + np.copysign(np.float32(0.5), x))


def quantize_q8_0(x):
    """Blocks of 32 along rows: d = max|x| / 127 (f16), q = roundf(x / d)."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(blocks).max(axis=1)
    d = amax / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = round_away(blocks * inv[:, None]).astype(np.int8)
    out = np.empty((blocks.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out


def quantize_q4_0(x):
    """Blocks of 32: m = the element of largest magnitude (signed), d = m / -8 (f16),
    q = min(15, trunc(x / d + 8.5)); byte j holds q[j] in its low and q[j + 16] in its high
    nibble."""
    blocks = x.reshape(-1, 32).astype(np.float32)
    idx = np.abs(blocks).argmax(axis=1)
    m = blocks[np.arange(blocks.shape[0]), idx]
    d = m / np.float32(-8)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.minimum(15, np.trunc(blocks * inv[:, None] + np.float32(8.5))).astype(np.uint8)
    out = np.empty((blocks.shape[0], 18), dtype=np.uint8)
    out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out


def encode(x, gtype):
    if gtype == "f32":
        return x.astype(np.float32).tobytes()
    if gtype == "f16":
        return x.astype(np.float16).tobytes()
    if gtype == "bf16":
        return to_bf16_bits(x).tobytes()
    if gtype == "q8_0":
        return quantize_q8_0(x).tobytes()
    if gtype == "q4_0":
        return quantize_q4_0(x).tobytes()
    raise ValueError(gtype)


def permute_rope_rows(w, n_heads):
    """HF's rotate_half row order -> llama.cpp's interleaved pairs, per head (see the top)."""
    out, inner = w.shape
    d = out // n_heads
    return w.reshape(n_heads, 2, d // 2, inner).swapaxes(1, 2).reshape(out, inner)


def llama3_rope_divisors(cfg, head_dim):
    """rope_freqs for rope_type llama3: freq_i / divisor_i is transformers' scaled frequency."""
    rs = cfg["rope_scaling"]
    base = float(cfg.get("rope_theta", 10000.0))
    factor = float(rs["factor"])
    low, high = float(rs.get("low_freq_factor", 1.0)), float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    div = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / base ** (i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            div.append(1.0)
        elif wavelen > low_wavelen:
            div.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            div.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(div, dtype=np.float32)


# ---- the vocabulary --------------------------------------------------------------------------


def byte_symbols():
    """GPT-2's byte-level alphabet: byte b -> one printable code point."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def vocabulary(folder, vocab_size):
    """(tokens, token types, merges): from tokenizer.json when it is a BPE model, else the
    placeholder (see the top). Padded with <|pad_N|> up to vocab_size rows."""
    path = os.path.join(folder, "tokenizer.json")
    tokens, types, merges = None, None, []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        model = tj.get("model", {})
        if model.get("type") == "BPE":
            vocab = dict(model["vocab"])
            special = set()
            for a in tj.get("added_tokens", []):
                vocab[a["content"]] = a["id"]
                if a.get("special"):
                    special.add(a["id"])
            if max(vocab.values()) >= vocab_size:
                sys.exit(f"hf_to_gguf: tokenizer.json has ids up to {max(vocab.values())}, "
                         f"the embedding {vocab_size} rows (llama.cpp needs one row per token)")
            n = vocab_size
            tokens = [None] * n
            for t, i in vocab.items():
                tokens[i] = t
            types = [TOKEN_CONTROL if i in special else TOKEN_NORMAL for i in range(n)]
            for i in range(n):
                if tokens[i] is None:
                    tokens[i], types[i] = f"<|pad_{i}|>", TOKEN_CONTROL
            for m in model.get("merges", []):
                merges.append(m if isinstance(m, str) else " ".join(m))
    if tokens is None:
        tokens = byte_symbols()[:vocab_size] + [f"<|tok_{i}|>" for i in range(256, vocab_size)]
        types = [TOKEN_NORMAL] * vocab_size
    return tokens, types, merges


# ---- the GGUF writer -------------------------------------------------------------------------


class GGUFWriter:
    def __init__(self):
        self.kv = []  # encoded key-value pairs
        self.tensors = []  # (name, dims innermost first, gtype, producer of the data bytes)

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def add_u32(self, key, v):
        self.kv.append(self._str(key) + struct.pack("<II", GGUF_UINT32, v))

    def add_f32(self, key, v):
        self.kv.append(self._str(key) + struct.pack("<If", GGUF_FLOAT32, v))

    def add_string(self, key, v):
        self.kv.append(self._str(key) + struct.pack("<I", GGUF_STRING) + self._str(v))

    def add_array(self, key, vtype, values):
        parts = [self._str(key), struct.pack("<IIQ", GGUF_ARRAY, vtype, len(values))]
        if vtype == GGUF_STRING:
            parts += [self._str(v) for v in values]
        elif vtype == GGUF_INT32:
            parts.append(np.asarray(values, dtype="<i4").tobytes())
        else:
            raise ValueError(vtype)
        self.kv.append(b"".join(parts))

    def add_tensor(self, name, shape, gtype, produce):
        """shape as numpy gives it (outermost first); produce() returns the data bytes."""
        _, block, bsize = GGML_TYPES[gtype]
        if shape[-1] % block:
            sys.exit(f"hf_to_gguf: {name}: rows of {shape[-1]} are not a multiple of {block} ({gtype})")
        nbytes = int(np.prod(shape)) // block * bsize
        self.tensors.append((name, tuple(reversed(shape)), gtype, nbytes, produce))

    def write(self, path):
        pad = lambda n: (-n) % GGUF_ALIGNMENT
        infos, offset = [], 0
        for name, dims, gtype, nbytes, _ in self.tensors:
            infos.append(
                self._str(name)
                + struct.pack("<I", len(dims))
                + struct.pack(f"<{len(dims)}Q", *dims)
                + struct.pack("<IQ", GGML_TYPES[gtype][0], offset)
            )
            offset += nbytes + pad(nbytes)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
            for kv in self.kv:
                f.write(kv)
            for info in infos:
                f.write(info)
            f.write(b"\0" * pad(f.tell()))
            for name, _, gtype, nbytes, produce in self.tensors:
                data = produce()
                if len(data) != nbytes:
                    sys.exit(f"hf_to_gguf: {name}: {len(data)} bytes, expected {nbytes}")
                f.write(data)
                f.write(b"\0" * pad(nbytes))
        os.replace(tmp, path)


# ---- the conversion --------------------------------------------------------------------------


def convert(folder, out, outtype):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("model_type") != "llama":
        sys.exit(f"hf_to_gguf: model_type {cfg.get('model_type')!r}: only llama is supported")
    st = SafeTensors(folder)
    hidden, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    head_dim = cfg.get("head_dim", hidden // heads)
    vocab_size = cfg["vocab_size"]
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in st.entries

    w = GGUFWriter()
    w.add_string("general.architecture", "llama")
    w.add_string("general.name", os.path.basename(os.path.abspath(folder)))
    w.add_u32("general.file_type", FILE_TYPES[outtype])
    if outtype in ("q8_0", "q4_0"):
        w.add_u32("general.quantization_version", 2)
    w.add_u32("llama.context_length", cfg.get("max_position_embeddings", 2048))
    w.add_u32("llama.embedding_length", hidden)
    w.add_u32("llama.block_count", layers)
    w.add_u32("llama.feed_forward_length", cfg["intermediate_size"])
    w.add_u32("llama.attention.head_count", heads)
    w.add_u32("llama.attention.head_count_kv", kv_heads)
    w.add_u32("llama.attention.key_length", head_dim)
    w.add_u32("llama.attention.value_length", head_dim)
    w.add_u32("llama.rope.dimension_count", head_dim)
    w.add_f32("llama.rope.freq_base", float(cfg.get("rope_theta", 10000.0)))
    w.add_f32("llama.attention.layer_norm_rms_epsilon", float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_u32("llama.vocab_size", vocab_size)

    tokens, types, merges = vocabulary(folder, vocab_size)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "llama-bpe")
    w.add_array("tokenizer.ggml.tokens", GGUF_STRING, tokens)
    w.add_array("tokenizer.ggml.token_type", GGUF_INT32, types)
    w.add_array("tokenizer.ggml.merges", GGUF_STRING, merges)
    for key, field in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        v = cfg.get(field)
        if isinstance(v, list):
            v = v[0] if v else None
        if isinstance(v, int) and 0 <= v < len(tokens):
            w.add_u32(f"tokenizer.ggml.{key}", v)
    w.add_u32("tokenizer.ggml.padding_token_id", 0)  # never used: sequences are not padded
    w.add_u32("tokenizer.ggml.unknown_token_id", 0)

    def tensor(gguf_name, hf_name, kind="plain"):
        shape = st.entries[hf_name][2]
        gtype = outtype if len(shape) == 2 else "f32"

        def produce():
            x = st.get_f32(hf_name)
            if kind == "q":
                x = permute_rope_rows(x, heads)
            elif kind == "k":
                x = permute_rope_rows(x, kv_heads)
            return encode(x, gtype)

        w.add_tensor(gguf_name, shape, gtype, produce)

    tensor("token_embd.weight", "model.embed_tokens.weight")
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) == "llama3":
        div = llama3_rope_divisors(cfg, head_dim)
        w.add_tensor("rope_freqs.weight", div.shape, "f32", lambda: div.tobytes())
    elif rs:
        sys.exit(f"hf_to_gguf: rope_scaling {rs}: only llama3 is supported")
    for l in range(layers):
        for hf, gg in TENSOR_NAMES.items():
            kind = {"self_attn.q_proj": "q", "self_attn.k_proj": "k"}.get(hf, "plain")
            tensor(f"blk.{l}.{gg}.weight", f"model.layers.{l}.{hf}.weight", kind)
    tensor("output_norm.weight", "model.norm.weight")
    if not tied:
        tensor("output.weight", "lm_head.weight")
    w.write(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--outtype", choices=sorted(GGML_TYPES), default="f32")
    a = ap.parse_args()
    convert(a.model_dir, a.out, a.outtype)


if __name__ == "__main__":
    main()
