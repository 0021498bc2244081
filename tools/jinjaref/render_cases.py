#!/usr/bin/env python3
"""tools/jinjaref/render_cases.py - expected outputs of road's Jinja engine, from Python's jinja2.

Renders every case below with jinja2 configured as transformers' apply_chat_template configures
it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its tojson and
raise_exception, strftime_now at a fixed time in UTC) and writes tests/fixtures/jinja/cases.json:
[{"name", "template", "vars", "expect"} | {"name", "template", "vars", "error"}], where "error"
is a part of the message road must give (a case jinja2 refuses must be refused by road too).

    python3 -m venv /tmp/jvenv && /tmp/jvenv/bin/pip install jinja2
    /tmp/jvenv/bin/python tools/jinjaref/render_cases.py
"""
import datetime
import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = 1700000000  # the time the C test passes as road__jinja_opts.now

def env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc).strftime(fmt)

    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[jinja2.ext.loopcontrols])
    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    e.globals["strftime_now"] = strftime_now
    return e

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather ü",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

# (name, template, vars, error substring or None)
CASES = [
    ("text", "hello", {}, None),
    ("trailing_newline", "a\n", {}, None),
    ("two_trailing_newlines", "a\n\n", {}, None),
    ("crlf", "a\r\nb\r\n{% if true %}\r\nc\r\n{% endif %}\r\n", {}, None),
    ("var", "{{ x }}|{{ y }}|{{ z }}", {"x": "s", "y": 3, "z": None}, None),
    ("floats", "{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e-5 }} {{ 2.5e-3 }} {{ 3 / 2 }} {{ 4 / 2 }} {{ f }}", {"f": 1.5}, None),
    ("ints", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1_000 }}", {}, None),
    ("bools", "{{ true }} {{ False }} {{ none }} {{ True + 1 }}", {}, None),
    ("undefined_prints_empty", "[{{ nothing }}]", {}, None),
    ("strings", "{{ 'a\\tb' }}|{{ \"q'\" }}|{{ 'x' 'y' }}|{{ '\\u00e9\\n' }}|{{ 'a\\qb' }}", {}, None),
    ("concat", "{{ 'a' ~ 1 ~ none ~ 2.0 }}{{ 'b' + 'c' }}{{ [1] + [2] }}", {}, None),
    ("repr_list", "{{ [1, 'a', none, true, 1.5, [\"it's\"]] }}", {}, None),
    ("repr_dict", "{{ {'a': 1, 'b': [2]} }}{{ (1,) }}{{ (1, 2) }}{{ () }}", {}, None),
    ("compare", "{{ 1 < 2 }}{{ 2 <= 1 }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ 1 != 2 }}{{ 1 < 2 < 3 }}{{ [1,2] == [1,2] }}", {}, None),
    ("in", "{{ 'a' in 'cat' }}{{ 2 in [1,2] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}", {}, None),
    ("logic", "{{ 1 and 2 }}|{{ 0 or 'x' }}|{{ not 0 }}|{{ none or [] }}|{{ 'a' if false }}|{{ 'a' if 0 else 'b' }}", {}, None),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 'a' ~ (1 + 2) }} {{ not 1 == 2 }}", {}, None),
    ("if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %}{% endfor %}", {}, None),
    ("trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", {}, None),
    ("lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}, None),
    ("lstrip_not_var", "a\n    {{ 'v' }}\n", {}, None),
    ("lstrip_plus", "a\n    {%+ if true %}b{% endif %}", {}, None),
    ("trim_plus", "{% if true +%}\nb{% endif %}", {}, None),
    ("dash_left_right", "a  \n  {%- if true -%}  \n  b  {{- ' c ' -}}  d{% endif %}", {}, None),
    ("comment", "a {# note #} b\n  {# line #}\nc{#- x -#}  d", {}, None),
    ("comment_plus", "x\n  {#+ c #}\ny", {}, None),
    ("raw", "{% raw %}{{ not rendered }}{% endraw %}!", {}, None),
    ("for_loop_vars", "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}", {"xs": ["a", "b", "c"]}, None),
    ("for_prev_next", "{% for x in [1,2,3] %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}", {}, None),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}", {}, None),
    ("for_filter", "{% for x in range(10) if x % 3 == 0 %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}", {}, None),
    ("for_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}, None),
    ("for_dict_keys", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"x": 1, "y": 2}}, None),
    ("for_string", "{% for ch in 'héllo' %}[{{ ch }}]{% endfor %}", {}, None),
    ("for_scope", "{% set y = 1 %}{% for x in [1,2] %}{{ y }}{% set y = x*10 %}{{ y }};{% endfor %}{{ y }}", {}, None),
    ("for_nested_loop", "{% for a in [1,2] %}{% for b in 'xy' %}{{ loop.index }}{{ b }}{% endfor %}{{ loop.index }} {% endfor %}", {}, None),
    ("break_continue", "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}, None),
    ("loop_cycle", "{% for x in range(4) %}{{ loop.cycle('a', 'b', 'c') }}{% endfor %}", {}, None),
    ("range", "{{ range(3) | list }}{{ range(1, 7, 2) | list }}{{ range(5, 0, -2) | list }}", {}, None),
    ("set_and_namespace", "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.found = true %}{% set ns.n = ns.n + 1 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }}", {"messages": MSGS}, None),
    ("set_block", "{% set x %}\n  inner {{ 1 + 1 }}\n{% endset %}[{{ x }}]", {}, None),
    ("set_block_filter", "{% set x | upper %}abc{% endset %}{{ x }}", {}, None),
    ("set_tuple", "{% set a, b = [1, 2] %}{{ b }}{{ a }}", {}, None),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }} {{ greet(name='C') }}", {}, None),
    ("macro_sees_globals", "{% macro m() %}{{ g }}{% endmacro %}{% set g = 3 %}{{ m() }}", {}, None),
    ("macro_recursion", "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(4) }}", {}, None),
    ("filter_block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}", {}, None),
    ("attr_item", "{{ m.role }} {{ m['content'] }} {{ xs[0] }} {{ xs[-1] }} {{ xs.1 }} [{{ xs[9] }}] [{{ m.missing }}] [{{ m['missing'] }}]", {"m": MSGS[0], "xs": [1, 2, 3]}, None),
    ("slices", "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ xs[5:] }}", {"xs": [1, 2, 3, 4]}, None),
    ("messages_loop_slice", "{% for m in messages[1:] %}<{{ m.role }}>{{ m.content }}{% endfor %}", {"messages": MSGS}, None),
    ("filters_str", "{{ '  x y  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello world-foo' | title }}|{{ 'hELLO' | capitalize }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'xx' | trim('x') }}", {}, None),
    ("filters_len", "{{ [1,2] | length }} {{ 'héllo' | length }} {{ {'a':1} | count }} {{ nothing | length }}", {}, None),
    ("filters_default", "{{ x | default('d') }} {{ none | default('d') }} {{ '' | default('d', true) }} {{ y | d(5) }}", {"y": 0}, None),
    ("filters_join", "{{ [1, 'a', none] | join(', ') }} {{ ['x','y'] | join }} {{ people | join('|', attribute='name') }}", {"people": [{"name": "A"}, {"name": "B"}]}, None),
    ("filters_first_last", "{{ [1,2,3] | first }} {{ [1,2,3] | last }} {{ 'abc' | first }} [{{ [] | first }}]", {}, None),
    ("filters_string_int_float", "{{ 1 | string }} {{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 3 | float }} {{ 'x' | float(1.5) }}", {}, None),
    ("filters_abs_round", "{{ -3 | abs }} {{ -2.5 | abs }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.567 | round(2) }} {{ 2.1 | round(0, 'ceil') }} {{ 2.9 | round(method='floor') }}", {}, None),
    ("filter_indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent('> ', blank=true) }}", {}, None),
    ("filter_items", "{% for k, v in d | items %}{{ k }}:{{ v }} {% endfor %}", {"d": {"z": 1, "a": [1]}}, None),
    ("filter_list_reverse", "{{ 'abc' | list }} {{ [1,2,3] | reverse | list }} {{ 'abc' | reverse }}", {}, None),
    ("filter_sort_unique", "{{ [3,1,2] | sort }} {{ ['b','A','a','C'] | sort }} {{ ['b','A','a','C'] | sort(case_sensitive=true) }} {{ [3,1,2] | sort(reverse=true) }} {{ ['a','A','b','a'] | unique | list }}", {}, None),
    ("filter_sort_attr", "{{ people | sort(attribute='age') | map(attribute='name') | join(',') }}", {"people": [{"name": "A", "age": 30}, {"name": "B", "age": 20}, {"name": "C", "age": 25}]}, None),
    ("filter_dictsort", "{{ d | dictsort }}", {"d": {"b": 1, "a": 2, "C": 3}}, None),
    ("filter_selectattr", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ messages | rejectattr('role', 'eq', 'user') | list | length }}|{{ xs | selectattr('x') | list | length }}", {"messages": MSGS, "xs": [{"x": 1}, {"x": 0}, {}]}, None),
    ("filter_select", "{{ [1,2,3,4] | select('odd') | list }} {{ [1,2,3,4] | reject('even') | list }} {{ [0,1,'',2] | select | list }}", {}, None),
    ("filter_map_filter", "{{ ['a','b'] | map('upper') | join }}", {}, None),
    ("filter_escape_safe", "{{ '<a href=\"x\">&\\'' | e }} {{ '<b>' | safe }}", {}, None),
    ("tojson", "{{ x | tojson }}", {"x": {"a": [1, 2.5, None, True, "é\"\\\n\u0001"], "b": {}, "c": []}}, None),
    ("tojson_indent", "{{ x | tojson(indent=2) }}|{{ x | tojson(4) }}|{{ x | tojson(true, 1) }}", {"x": {"a": [1, {"b": None}], "c": "d ü 🙂", "e": []}}, None),
    ("tojson_sort_sep", "{{ x | tojson(sort_keys=true) }}|{{ x | tojson(separators=(',', ':')) }}", {"x": {"b": 1, "a": [1, 2]}}, None),
    ("tojson_tools", "{% for t in tools %}{{ t | tojson }}\n{% endfor %}", {"tools": TOOLS}, None),
    ("tojson_scalars", "{{ 'x' | tojson }} {{ 1.0 | tojson }} {{ none | tojson }} {{ (1, 2) | tojson }}", {}, None),
    ("tests", "{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 's' is string }}{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ {} is mapping }}{{ [] is iterable }}{{ 's' is sequence }}{{ true is true }}{{ 0 is false }}{{ 1 is eq 1 }}{{ 2 is equalto(2) }}{{ 'a' is in 'abc' }}{{ 3 is odd }}{{ 4 is even }}{{ 6 is divisibleby 3 }}{{ x is not none }}", {"x": 1}, None),
    ("tests_more", "{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 2 is gt 1 }}{{ 2 is lt 1 }}{{ 1 is ge 1 }}{{ 1 is ne 2 }}{{ 1.5 is integer }}{{ true is number }}{{ true is integer }}", {}, None),
    ("unicode_space", "[{{ s | trim }}]|[{{ s.strip() }}]|[{{ s.lstrip() }}]|[{{ s.rstrip() }}]|{{ s.split() }}|{{ s.split(None, 1) }}|{{ ' \u3000'.isspace() }}|{{ 'a\u00a0'.isspace() }}",
     {"s": "\u00a0\u2003a\u3000b\u202f\u0085"}, None),
    ("repr_unprintable", "{{ s }}", {"s": ["\u200b", "\ue000", "\U0001F600", "\u00e9", "\u3000x", "\u00ad", "\U000E0041"]}, None),
    ("str_methods", "{{ ' a '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}|{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}|{{ 'hello wORLD'.title() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'abc'.find('c') }}|{{ 'aaa'.count('a') }}|{{ '-'.join(['a', 'b']) }}", {}, None),
    ("dict_methods", "{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 0) }}|{{ d.items() | list }}", {"d": {"a": 1, "b": 2}}, None),
    ("dict_literal_access", "{% set d = {'role': 'x', 1: 'one'} %}{{ d.role }}{{ d[1] }}{{ d['role'] }}", {}, None),
    ("dict_global", "{{ dict(a=1, b='x') }}", {}, None),
    ("strftime", "{{ strftime_now('%Y-%m-%d %d %b %Y') }}", {}, None),
    ("chatml", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", {"messages": MSGS, "add_generation_prompt": True}, None),
    ("llama2_style", "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}", {"messages": MSGS, "bos_token": "<s>", "eos_token": "</s>"}, None),
    ("multiline_template", "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message.role == \"user\" %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n    {%- endif %}\n{%- endfor %}\n", {"tools": TOOLS, "messages": MSGS}, None),
    ("whitespace_mix", "<ul>\n{% for x in [1, 2] %}\n  <li>{{ x }}</li>\n{% endfor %}\n</ul>\n", {}, None),
    ("generation_tag_absent", "{% for m in messages %}{{ m.content }}{% endfor %}", {"messages": MSGS}, None),
    ("nested_data", "{{ messages[1]['content'] | upper }} {{ (messages | last).content }} {{ messages | map(attribute='role') | unique | join(',') }}", {"messages": MSGS}, None),
    ("unicode", "{{ s | length }} {{ s[0] }} {{ s | tojson }} {{ [s] }}", {"s": "ñandú 🙂"}, None),
    ("big_ints", "{{ n }} {{ n + 1 }} {{ -n }} {{ 10 ** 15 }}", {"n": 9007199254740993}, None),
    ("kwargs_bool", "{% if enable_thinking is defined and enable_thinking is false %}off{% else %}on{% endif %}", {"enable_thinking": False}, None),
    # errors jinja2 gives too
    ("err_raise", "{{ raise_exception('bad roles') }}", {}, "bad roles"),
    ("err_undefined_attr", "{{ x.y }}", {}, "'x' is undefined"),
    ("err_div_zero", "{{ 1 / 0 }}", {}, "division by zero"),
    ("err_unterminated_if", "{% if true %}x", {}, "endif"),
    ("err_unterminated_for", "{% for x in y %}x{% if 1 %}{% endif %}", {}, "endfor"),
    ("err_unterminated_var", "{{ x ", {}, "}}"),
    ("err_unterminated_comment", "{# x ", {}, "comment"),
    ("err_unterminated_string", "{{ 'abc }}", {}, "string"),
    ("err_bad_expr", "{{ 1 + }}", {}, "expected"),
    ("err_stray_endif", "{% endif %}", {}, "endif"),
    ("err_unknown_filter", "{{ 1 | nosuchfilter }}", {}, "nosuchfilter"),
    ("err_unknown_test", "{{ 1 is nosuchtest }}", {}, "nosuchtest"),
    ("err_list_append", "{% set l = [] %}{{ l.append(1) }}", {}, "append"),
    ("err_set_non_ns", "{% set d = {} %}{% set d.x = 1 %}", {}, "namespace"),
    ("err_not_iterable", "{% for x in 5 %}{% endfor %}", {}, "not iterable"),
    ("err_add_types", "{{ 'a' + 1 }}", {}, "'str' and 'int'"),
    ("err_call_undefined", "{{ nofunc() }}", {}, "nofunc"),
]

def main():
    e = env()
    out = []
    for name, template, variables, error in CASES:
        case = {"name": name, "template": template, "vars": variables}
        try:
            text = e.from_string(template).render(**variables)
            if error is not None:
                raise SystemExit(f"{name}: jinja2 rendered {text!r}, expected an error")
            case["expect"] = text
        except jinja2.exceptions.TemplateError as ex:
            if error is None:
                raise SystemExit(f"{name}: jinja2 failed: {ex}")
            case["error"] = error
            case["jinja2_error"] = str(ex)
        except (TypeError, ZeroDivisionError, ValueError) as ex:
            if error is None:
                raise SystemExit(f"{name}: jinja2 failed: {ex}")
            case["error"] = error
            case["jinja2_error"] = f"{type(ex).__name__}: {ex}"
        out.append(case)
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tests", "fixtures", "jinja", "cases.json")
    doc = {"provenance": f"tools/jinjaref/render_cases.py with Python jinja2 {jinja2.__version__} "
                         "(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, "
                         "transformers' tojson and raise_exception; strftime_now at NOW in UTC)",
           "now": NOW, "cases": out}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(out)} cases -> {os.path.normpath(path)}")

if __name__ == "__main__":
    main()
