#!/usr/bin/env python3
"""tests/robust/hostile_requests.py ROAD MODEL_DIR [N] [SEED] - road serve under hostile requests.

Starts `road serve` on MODEL_DIR (a model folder with a tokenizer: demo/model), records the
answer to one fixed greedy request, then sends N hostile requests drawn from a seeded generator:
mutated JSON bodies (bytes flipped, cut, inserted), values of every wrong type and range in
every field, NUL characters and raw control characters inside strings, trailing garbage,
malformed HTTP (bad methods, paths, Content-Length, chunking, oversized URI and headers,
bodies cut short, clients that leave). After every request it checks that:

  - the server answered with an HTTP status (or closed a connection it had to close), within
    REPLY_TIMEOUT seconds: no hang;
  - every 4xx/5xx body is the documented JSON error object
    {"error": {"message": str, "type": str, "param", "code"}};
  - the process is alive;
and at the end that /health is ok and the fixed request gives the same answer as at the start.

Python standard library only. Prints figures (requests by kind and by status) and exits 0 when
every check held, 1 otherwise. tests/cli/robust_short.sh runs a short form in ctest.
"""
import json
import os
import random
import socket
import subprocess
import sys
import time

REPLY_TIMEOUT = 20.0  # seconds for one reply: far above any tiny-model request on 2 cores


def start_server(road, model):
    proc = subprocess.Popen(
        [road, "serve", "--model", model, "--port", "0", "--quiet", "--max-tokens-limit", "64",
         "--max-body-bytes", "65536"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        sys.exit("road serve did not start: %r %s" % (line, proc.stderr.read()))
    port = int(line.rsplit(":", 1)[1])
    return proc, port


def raw(port, data, read=True, shut=False):
    """Send bytes, return (status or None, headers, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        if not read:
            return None, {}, b""
        buf = b""
        deadline = time.time() + REPLY_TIMEOUT
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise TimeoutError("no reply within %.0f s" % REPLY_TIMEOUT)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf:
                head, _, body = buf.partition(b"\r\n\r\n")
                hdrs = {}
                for ln in head.split(b"\r\n")[1:]:
                    k, _, v = ln.partition(b":")
                    hdrs[k.strip().lower()] = v.strip()
                n = hdrs.get(b"content-length")
                if n is not None and len(body) >= int(n):
                    break
        else:
            raise TimeoutError("no complete reply within %.0f s" % REPLY_TIMEOUT)
    finally:
        s.close()
    if not buf:
        return None, {}, b""
    head, _, body = buf.partition(b"\r\n\r\n")
    first = head.split(b"\r\n")[0].split()
    status = int(first[1]) if len(first) > 1 and first[1].isdigit() else None
    hdrs = {}
    for ln in head.split(b"\r\n")[1:]:
        k, _, v = ln.partition(b":")
        hdrs[k.strip().lower()] = v.strip()
    if hdrs.get(b"transfer-encoding", b"").lower() == b"chunked":
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            try:
                n = int(size.split(b";")[0], 16)
            except ValueError:
                break
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, hdrs, body


def request(port, method, path, body=b"", headers=None):
    hdr = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method, path)
    for k, v in (headers or {}).items():
        hdr += "%s: %s\r\n" % (k, v)
    if body is not None and "Content-Length" not in (headers or {}):
        hdr += "Content-Length: %d\r\n" % len(body)
    return raw(port, hdr.encode() + b"\r\n" + (body or b""))


GOOD = {"model": "__base__", "prompt": "kobalu =", "max_tokens": 8, "temperature": 0}
GOOD_CHAT = {"model": "__base__", "messages": [{"role": "user", "content": "hi"}],
             "max_tokens": 4, "temperature": 0}
WEIRD_VALUES = [None, True, False, 0, -1, 1.5, 1e308, -1e308, 2**63, -(2**63) - 1, "", "x" * 5000,
                "\u0000", "a\u0000b", [], [1, 2], [[]], {}, {"a": 1}, "NaN", 1e-300, 0.5e-45]


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        else:
            b = b[:rng.randrange(len(b) + 1)]
    return bytes(b)


def hostile(rng, port):
    """One hostile request; returns (kind, status, body) or (kind, None, b'') for no reply."""
    kind = rng.choice(["mutated", "wrong_value", "nul", "control", "trailing", "http",
                       "chat_value", "deep", "cut_body"])
    if kind in ("mutated",):
        body = mutate(rng, json.dumps(rng.choice([GOOD, GOOD_CHAT])).encode())
        path = rng.choice(["/v1/completions", "/v1/chat/completions"])
        return kind, *request(port, "POST", path, body, {"Content-Type": "application/json"})[::2]
    if kind in ("wrong_value", "chat_value"):
        req = dict(GOOD if kind == "wrong_value" else GOOD_CHAT)
        field = rng.choice(["model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed",
                            "stop", "n", "stream", "logprobs", "stop_token_ids", "logit_bias",
                            "messages", "frequency_penalty", "stream_options", "min_p"])
        req[field] = rng.choice(WEIRD_VALUES)
        path = "/v1/completions" if kind == "wrong_value" else "/v1/chat/completions"
        body = json.dumps(req, allow_nan=True).encode()
        return kind, *request(port, "POST", path, body)[::2]
    if kind == "nul":
        field = rng.choice(["prompt", "model", "stop"])
        req = dict(GOOD)
        req[field] = "ab\u0000cd" if rng.random() < 0.5 else "\u0000"
        return kind, *request(port, "POST", "/v1/completions", json.dumps(req).encode())[::2]
    if kind == "control":
        body = b'{"model": "__base__", "prompt": "a\x01b\nc", "max_tokens": 2}'
        return kind, *request(port, "POST", "/v1/completions", body)[::2]
    if kind == "trailing":
        body = json.dumps(GOOD).encode() + rng.choice([b"x", b"{}", b" ]", b"\x00", b",1"])
        return kind, *request(port, "POST", "/v1/completions", body)[::2]
    if kind == "deep":
        d = rng.randint(100, 5000)
        body = b'{"model": "__base__", "prompt": ' + b"[" * d + b"]" * d + b"}"
        return kind, *request(port, "POST", "/v1/completions", body)[::2]
    if kind == "cut_body":  # declares more than it sends, then half-closes
        body = json.dumps(GOOD).encode()
        hdr = ("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (len(body) + 50)).encode()
        st, _, b = raw(port, hdr + body, shut=True)
        return kind, st, b
    # malformed HTTP
    sub = rng.randrange(9)
    if sub == 0:
        return "http", *request(port, "BREW", "/v1/completions", b"{}")[::2]
    if sub == 1:
        return "http", *request(port, "GET", "/v1/" + "a" * rng.randint(10, 20000))[::2]
    if sub == 2:
        return "http", *request(port, "GET", "/health", None, {"X-Big": "b" * rng.randint(100, 40000)})[::2]
    if sub == 3:
        return "http", *raw(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
                            + rng.choice([b"abc", b"-5", b"99999999999999999999", b"1, 2"])
                            + b"\r\n\r\n{}")[::2]
    if sub == 4:
        return "http", *raw(port, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:"
                            b" chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")[::2]
    if sub == 5:
        return "http", *raw(port, mutate(rng, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), shut=True)[::2]
    if sub == 6:
        return "http", *request(port, "POST", "/v1/completions", json.dumps(GOOD).encode(),
                                {"Content-Type": "application/json", "Authorization": "Bearer x"})[::2]
    if sub == 7:
        return "http", *request(port, "GET", "/v1/completions")[::2]
    return "http", *request(port, "POST", "/v1/load_lora_adapter",
                            json.dumps({"lora_name": rng.choice(["a\"b", "x{y}", "ok"]),
                                        "lora_path": rng.choice(["/dev/zero", "/proc/self", "/nonexistent",
                                                                 "/dev/stdin"])}).encode())[::2]


def error_shape_ok(body):
    try:
        e = json.loads(body)["error"]
        return isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str) \
            and "param" in e and "code" in e
    except Exception:
        return False


def fixed_answer(port):
    st, _, body = request(port, "POST", "/v1/completions", json.dumps(GOOD).encode())
    if st != 200:
        return None
    return json.loads(body)["choices"][0]["text"]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    road, model = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rng = random.Random(seed)
    proc, port = start_server(road, model)
    failures, by_kind, by_status = [], {}, {}
    try:
        before = fixed_answer(port)
        if before is None:
            failures.append("the fixed request failed before any hostile one")
        t0 = time.time()
        for i in range(n):
            try:
                kind, status, body = hostile(rng, port)
            except (TimeoutError, OSError) as e:
                failures.append("request %d: %s" % (i, e))
                kind, status, body = "error", None, b""
            by_kind[kind] = by_kind.get(kind, 0) + 1
            by_status[status] = by_status.get(status, 0) + 1
            if status is not None and status >= 400 and not error_shape_ok(body):
                failures.append("request %d (%s): %d with a body that is not the error object: %r"
                                % (i, kind, status, body[:200]))
            if proc.poll() is not None:
                failures.append("request %d (%s): the server exited with %s" % (i, kind, proc.returncode))
                break
            if len(failures) > 20:
                break
        dt = time.time() - t0
        st, _, body = request(port, "GET", "/health") if proc.poll() is None else (None, {}, b"")
        if st != 200:
            failures.append("/health after the run: %s %r" % (st, body))
        after = fixed_answer(port) if proc.poll() is None else None
        if after != before:
            failures.append("the fixed request answered %r before and %r after" % (before, after))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            failures.append("road serve did not stop within 30 s of SIGTERM")
    print("hostile requests: %d sent in %.1f s (seed %d)" % (sum(by_kind.values()), dt, seed))
    print("  by kind:   " + ", ".join("%s %d" % kv for kv in sorted(by_kind.items())))
    print("  by status: " + ", ".join("%s %d" % (k if k is not None else "closed", v)
                                      for k, v in sorted(by_status.items(), key=lambda kv: str(kv[0]))))
    print("  checks: reply or close within %.0f s, JSON error bodies, process alive, /health ok,"
          " same answer before and after" % REPLY_TIMEOUT)
    for f in failures[:20]:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
