#!/usr/bin/env python3
"""tools/chatref/render_transformers.py - renders chat-template cases with transformers' own code
(transformers.utils.chat_template_utils.render_jinja_template, the function apply_chat_template
calls) and writes tests/fixtures/chat/transformers.json (format: tests/fixtures/chat/README.md):

  (a) every continue_final_message case of renders.json, with transformers' own
      continue_final_message post-processing (it tags the final message's text, renders, and cuts
      the render at the tag);
  (b) for every template with {% generation %} blocks, every conversation x add_generation_prompt
      false/true x the template's kwargs variants: the render and the assistant generation spans
      transformers records (return_assistant_tokens_mask=True), converted from character offsets
      to UTF-8 byte offsets [begin, end).

Two globals of transformers' compiled environment are replaced, as in render_py.py: strftime_now
(transformers formats the local time now; here the UTC date of renders.json's source_date_epoch)
and raise_exception (still a jinja2 TemplateError, a subclass, so a raise_exception failure can be
told from other template errors). Everything else is transformers' code as installed.

usage: python3 render_transformers.py [FIXTURES_DIR]
       (needs the versions in requirements-transformers.txt, in a venv outside the tree)
"""
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../tests/fixtures/chat"))

# transformers appends the rendered chat to this error's message; the record keeps what precedes it.
CUT_MARK = "Final message to continue:"


class Raised(jinja2.exceptions.TemplateError):
    pass


def load(name):
    with open(os.path.join(FIX, name), encoding="utf-8") as f:
        return json.load(f)


def prepare(text, epoch):
    env = ctu._compile_jinja_template(text).environment

    def strftime_now(fmt):
        return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime(fmt)

    def raise_exception(message):
        raise Raised(message)

    env.globals["strftime_now"] = strftime_now
    env.globals["raise_exception"] = raise_exception


def outcome(fn):
    try:
        return fn()
    except Raised as e:
        return {"error": str(e), "raised": True}
    except Exception as e:  # the engine or transformers failed: record the kind and message
        msg = str(e).split(CUT_MARK)[0]
        return {"error": f"{type(e).__name__}: {msg}", "raised": False}


def byte_spans(text, spans):
    return [[len(text[:b].encode("utf-8")), len(text[:e].encode("utf-8"))] for b, e in spans]


def main():
    renders = load("renders.json")
    manifest = load("templates.json")["templates"]
    convs = {c["id"]: c for c in load("conversations.json")["conversations"]}
    epoch = renders["source_date_epoch"]
    texts = {}
    for t in manifest:
        with open(os.path.join(FIX, t["file"]), encoding="utf-8") as f:
            texts[t["name"]] = f.read()
        prepare(texts[t["name"]], epoch)
    tvars = {t["name"]: t["variables"] for t in manifest}

    cont = []
    for case in renders["cases"]:
        if not case["continue_final_message"]:
            continue
        c = convs[case["conversation"]]

        def run(case=case, c=c):
            out, _ = ctu.render_jinja_template(
                conversations=[json.loads(json.dumps(c["messages"]))], tools=c.get("tools"), documents=None,
                chat_template=texts[case["template"]], continue_final_message=True,
                add_generation_prompt=False, **tvars[case["template"]], **case["kwargs"])
            return {"output": out[0]}

        rec = {k: case[k] for k in ("template", "conversation", "add_generation_prompt", "continue_final_message", "kwargs")}
        rec.update(outcome(run))
        cont.append(rec)

    gen = []
    for t in manifest:
        if not t["uses_generation_blocks"]:
            continue
        for c in convs.values():
            for agp in (False, True):
                for kw in t["kwargs_variants"]:
                    def run(t=t, c=c, agp=agp, kw=kw):
                        out, idx = ctu.render_jinja_template(
                            conversations=[json.loads(json.dumps(c["messages"]))], tools=c.get("tools"),
                            documents=None, chat_template=texts[t["name"]], return_assistant_tokens_mask=True,
                            add_generation_prompt=agp, **t["variables"], **kw)
                        return {"output": out[0], "generation_spans": byte_spans(out[0], idx[0])}

                    rec = {"template": t["name"], "conversation": c["id"], "add_generation_prompt": agp, "kwargs": kw}
                    rec.update(outcome(run))
                    gen.append(rec)

    head = {
        "generator": "tools/chatref/render_transformers.py",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "function": "transformers.utils.chat_template_utils.render_jinja_template",
        "source_date_epoch": epoch,
    }
    body = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    parts = [body + ',\n "continue_final_message": [\n',
             ",\n".join(json.dumps(r, ensure_ascii=False) for r in cont),
             '\n],\n "generation": [\n',
             ",\n".join(json.dumps(r, ensure_ascii=False) for r in gen),
             "\n]\n}\n"]
    with open(os.path.join(FIX, "transformers.json"), "w", encoding="utf-8") as f:
        f.write("".join(parts))
    nerr = sum("error" in r for r in cont)
    gerr = sum("error" in r for r in gen)
    print(f"transformers {transformers.__version__}: {len(cont)} continue_final_message cases ({nerr} errors), "
          f"{len(gen)} generation cases ({gerr} errors)")


if __name__ == "__main__":
    main()
