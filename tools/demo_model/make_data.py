#!/usr/bin/env python3
"""tools/demo_model/make_data.py - the text road's demo model is pretrained on, its tokenizer,
and the demo tasks. Everything is generated here from a fixed seed (Python's random.Random,
stable across Python 3 versions for these calls); no outside text is used.

  python3 tools/demo_model/make_data.py --out DIR [--docs N] [--seed S] [--task-seed T]

The language: made-up words of 2 to 4 syllables ("kobalu", "tesimo") and four ways to transform
a word: copy ("kobalu"), reverse ("ulabok"), upper ("KOBALU") and shift (every letter to the
next one, z to a: "lpcbmv"). A line is "<word> = <answer>". In pretraining, half of the lines
name the transformation ("reverse kobalu = ulabok"), the other half do not ("kobalu = ulabok"),
and then any of the four is equally likely: a model of this text answers an unnamed prompt
with whichever transformation it finds most likely, so which one it does is left open. A demo
task is one transformation asked without its name; a RoAd adapter trained on it settles the
choice. One document in five is a chat turn in ChatML, so the model also answers
`road generate --chat` and `road serve`'s chat endpoint ("reverse kobalu" -> "ulabok").

Writes:
  DIR/pretrain.jsonl          {"text": ...} documents (BOS added by the tokenizer)
  DIR/tokenizer/tokenizer.json, tokenizer_config.json, special_tokens_map.json,
      generation_config.json  a byte-level tokenizer (one token per byte, no merges) with
                              <|bos|>, <|eos|>, <|pad|>, <|im_start|>, <|im_end|>
  DIR/tasks/<task>/train.jsonl, eval.jsonl   {"prompt": "kobalu =", "completion": " ulabok\\n"}
                              for reverse, upper, shift (words of the eval files never appear in
                              the train files of any task)
"""
import argparse
import json
import os
import random

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
TASKS = ["copy", "reverse", "upper", "shift"]
DEMO_TASKS = ["reverse", "upper", "shift"]
SPECIALS = ["<|bos|>", "<|eos|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]
EXAMPLES_PER_DOC = (5, 8)
TASK_TRAIN, TASK_EVAL = 400, 100


def word(rng):
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(rng.randint(2, 4)))


def apply(task, w):
    if task == "copy":
        return w
    if task == "reverse":
        return w[::-1]
    if task == "upper":
        return w.upper()
    return "".join(chr((ord(c) - 97 + 1) % 26 + 97) for c in w)


def chat(task, w):
    return (f"<|im_start|>user\n{task} {w}<|im_end|>\n"
            f"<|im_start|>assistant\n{apply(task, w)}<|im_end|>\n")


def document(rng, held_out):
    if rng.random() < 0.2:
        return "".join(chat(rng.choice(TASKS), fresh(rng, held_out))
                       for _ in range(rng.randint(1, 3)))
    lines = []
    for _ in range(rng.randint(*EXAMPLES_PER_DOC)):
        w, t = fresh(rng, held_out), rng.choice(TASKS)
        lines.append(f"{t} {w} = {apply(t, w)}" if rng.random() < 0.5 else f"{w} = {apply(t, w)}")
    return "\n".join(lines) + "\n"


def fresh(rng, held_out):
    while True:
        w = word(rng)
        if w not in held_out:
            return w


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: printable bytes map to themselves, the rest to 256+."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_files(out):
    os.makedirs(out, exist_ok=True)
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    added = []
    for i, s in enumerate(SPECIALS):
        vocab[s] = 256 + i
        added.append({"id": 256 + i, "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|bos|>": {"id": "<|bos|>", "ids": [256],
                                           "tokens": ["<|bos|>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    chat_template = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
                     "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
                     "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    cfg = {"bos_token": "<|bos|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>",
           "model_max_length": 256, "tokenizer_class": "PreTrainedTokenizerFast",
           "clean_up_tokenization_spaces": False, "chat_template": chat_template}
    gen = {"bos_token_id": 256, "eos_token_id": [257, 260], "pad_token_id": 258}
    special = {"bos_token": "<|bos|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>"}
    for name, obj in (("tokenizer.json", tok), ("tokenizer_config.json", cfg),
                      ("generation_config.json", gen), ("special_tokens_map.json", special)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")


def task_files(out, rng):
    """Train and eval words for the demo tasks: eval words are held out of everything."""
    words = set()
    while len(words) < TASK_EVAL * len(DEMO_TASKS):
        words.add(word(rng))
    held_out = sorted(words)
    rng.shuffle(held_out)
    for i, t in enumerate(DEMO_TASKS):
        d = os.path.join(out, "tasks", t)
        os.makedirs(d, exist_ok=True)
        evw = held_out[i * TASK_EVAL:(i + 1) * TASK_EVAL]
        trw = [fresh(rng, words) for _ in range(TASK_TRAIN)]
        for name, ws in (("train.jsonl", trw), ("eval.jsonl", evw)):
            with open(os.path.join(d, name), "w") as f:
                for w in ws:
                    f.write(json.dumps({"prompt": f"{w} =", "completion": f" {apply(t, w)}\n"}) + "\n")
    return words


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--docs", type=int, default=24000)
    ap.add_argument("--seed", type=int, default=1, help="the pretraining text")
    ap.add_argument("--task-seed", type=int, default=2,
                    help="the demo tasks; their eval words never appear in the text")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    tokenizer_files(os.path.join(a.out, "tokenizer"))
    held_out = task_files(a.out, random.Random(a.task_seed))
    with open(os.path.join(a.out, "pretrain.jsonl"), "w") as f:
        for _ in range(a.docs):
            f.write(json.dumps({"text": document(rng, held_out)}) + "\n")


if __name__ == "__main__":
    main()
