#!/usr/bin/env python3
"""tools/chatref/render_py.py - renders every case of tests/fixtures/chat/renders.json again with
Python's jinja2 set up as transformers sets it up for apply_chat_template
(transformers/utils/chat_template_utils.py: ImmutableSandboxedEnvironment with trim_blocks and
lstrip_blocks, the loopcontrols extension and a {% generation %} tag that renders its body, tojson
as json.dumps(ensure_ascii=False), raise_exception raising TemplateError, strftime_now), and
compares the result with the @huggingface/jinja render gen.js stored.

strftime_now uses the UTC date of renders.json's source_date_epoch (transformers uses the local
time now); continue_final_message trims the render as transformers does.

Writes tests/fixtures/chat/disagreements.json: every case whose outcome differs (one renders and
the other fails, the outputs differ, or raise_exception messages differ). Failures other than
raise_exception are compared by kind only (the engines word their errors differently).

usage: python3 render_py.py [FIXTURES_DIR]   (needs jinja2 >= 3.1; default ../../tests/fixtures/chat)
"""
import json
import os
import sys
from datetime import datetime, timezone

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../tests/fixtures/chat"))


class Raised(Exception):
    pass


class GenerationTag(Extension):
    """transformers' AssistantTracker when no assistant mask is asked for: renders the body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def make_env(epoch):
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def continue_final(rendered, messages):
    final = messages[-1]["content"]
    if isinstance(final, (list, tuple)):
        for block in reversed(final):
            if "text" in block:
                final = block["text"]
                break
        else:
            raise ValueError("continue_final_message is set but we could not find any text to continue in the final message!")
    if final.strip() not in rendered:
        raise ValueError("continue_final_message is set but the final message does not appear in the chat after applying the chat template!")
    loc = rendered.rindex(final.strip())
    if rendered[loc: loc + len(final.lstrip())] == final:
        return rendered[: loc + len(final.lstrip())]
    return rendered[: loc + len(final.strip())]


def main():
    renders = json.load(open(os.path.join(FIX, "renders.json"), encoding="utf-8"))
    manifest = {t["name"]: t for t in json.load(open(os.path.join(FIX, "templates.json"), encoding="utf-8"))["templates"]}
    convs = {c["id"]: c for c in json.load(open(os.path.join(FIX, "conversations.json"), encoding="utf-8"))["conversations"]}
    env = make_env(renders["source_date_epoch"])
    compiled = {}
    for name, t in manifest.items():
        with open(os.path.join(FIX, t["file"]), encoding="utf-8") as f:
            text = f.read()
        try:
            compiled[name] = env.from_string(text)
        except Exception as e:  # noqa: BLE001
            compiled[name] = e
    out = []
    same = 0
    for case in renders["cases"]:
        conv = convs[case["conversation"]]
        t = manifest[case["template"]]
        py = {}
        try:
            tpl = compiled[case["template"]]
            if isinstance(tpl, Exception):
                raise tpl
            ctx = dict(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                       add_generation_prompt=case["add_generation_prompt"])
            ctx.update(t["variables"])
            ctx.update(case["kwargs"])
            s = tpl.render(**ctx)
            if case["continue_final_message"]:
                s = continue_final(s, conv["messages"])
            py["output"] = s
        except Raised as e:
            py["error"], py["raised"] = str(e), True
        except Exception as e:  # noqa: BLE001
            py["error"], py["raised"] = f"{type(e).__name__}: {e}", False
        js_ok, py_ok = "output" in case, "output" in py
        if js_ok and py_ok:
            agree = case["output"] == py["output"]
        elif not js_ok and not py_ok:
            agree = case["raised"] == py["raised"] and (not py["raised"] or case["error"] == py["error"])
        else:
            agree = False
        if agree:
            same += 1
            continue
        rec = {k: case[k] for k in ("template", "conversation", "add_generation_prompt", "continue_final_message", "kwargs")}
        rec["js"] = {k: case[k] for k in ("output", "error", "raised") if k in case}
        rec["python"] = py
        out.append(rec)
    doc = {"generator": "tools/chatref/render_py.py", "python_engine": f"jinja2 {jinja2.__version__}",
           "reference": renders["engine"], "cases": len(renders["cases"]), "agree": same, "disagreements": out}
    with open(os.path.join(FIX, "disagreements.json"), "w", encoding="utf-8") as f:
        head = json.dumps({**doc, "disagreements": []}, ensure_ascii=False, indent=1)
        assert head.endswith("[]\n}")
        f.write(head[:-4] + "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in out) + "\n]\n}\n")
    print(f"{len(renders['cases'])} cases: {same} agree, {len(out)} disagree (jinja2 {jinja2.__version__})")
    for r in out:
        print(" ", r["template"], r["conversation"], "gen" if r["add_generation_prompt"] else "",
              "cfm" if r["continue_final_message"] else "", json.dumps(r["kwargs"]) if r["kwargs"] else "",
              "| js:", "ok" if "output" in r["js"] else r["js"]["error"][:70],
              "| py:", "ok" if "output" in r["python"] else r["python"]["error"][:70])


if __name__ == "__main__":
    main()
