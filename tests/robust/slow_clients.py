#!/usr/bin/env python3
"""tests/robust/slow_clients.py ROAD MODEL_DIR [N_SLOW] [M] [--old] - road serve under slow clients.

Starts `road serve` on MODEL_DIR (tests/fixtures/llama/tiny-llama will do: prompts are token
ids), then measures M normal requests (GET /health and a one-token POST /v1/completions,
alternating, each on a fresh connection from 127.0.0.1):

  1. with no other client: p50 / p99 / max latency;
  2. with N_SLOW slow clients connected from N_SLOW different loopback addresses (127.0.x.y,
     so a per-address cap alone cannot stop them): half send a request head one byte at a
     time, half send a complete head and then trickle the body, each a byte per TRICKLE_S
     (well inside any idle timeout);
and checks:
  - every normal request is answered (200) during phase 2;
  - a per-address cap holds: from one address, the connection past the cap gets 429 (JSON);
  - every slow client is ended by the request deadline (408, or closed) within
    REQUEST_TIMEOUT + GRACE_S, although its bytes keep coming.

--old: start the server without the flags of issue 13 (to run the same load against an older
road: it locked everyone out with 512 such clients). Python standard library only. Prints the
figures; exits 0 when every check held, 1 otherwise. tests/cli/serve_slow_clients.sh runs a
short form in ctest (availability only, no timing is asserted).
"""
import json
import resource
import select
import socket
import subprocess
import sys
import threading
import time

REQUEST_TIMEOUT = 3      # --request-timeout for the run (seconds)
PER_CLIENT = 16          # --max-connections-per-client for the run
TRICKLE_S = 0.5          # a slow client's pace: one byte per half second
REPLY_TIMEOUT = 20.0     # a normal request unanswered this long counts as a failure
GRACE_S = 10.0           # slow clients must be gone by REQUEST_TIMEOUT + GRACE_S


def start_server(road, model, old):
    args = [road, "serve", "--model", model, "--port", "0", "--quiet"]
    if not old:
        args += ["--request-timeout", str(REQUEST_TIMEOUT),
                 "--max-connections-per-client", str(PER_CLIENT)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        sys.exit("road serve did not start: %r" % line)
    return proc, int(line.rsplit(":", 1)[1])


def source(i):
    """The i-th loopback source address (127.0.0.1 is kept for the normal requests)."""
    return "127.%d.%d.%d" % (1 + i // 62500, (i // 250) % 250, 2 + i % 250)


def dial(port, src="127.0.0.1", timeout=REPLY_TIMEOUT):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_reply(s):
    data = b""
    while True:
        try:
            k = s.recv(65536)
        except (socket.timeout, OSError):
            break
        if not k:
            break
        data += k
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None, body


def normal_request(port, k):
    if k % 2 == 0:
        req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    else:
        body = b'{"prompt":[1,2,3],"max_tokens":1}'
        req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    t0 = time.monotonic()
    try:
        s = dial(port)
        s.sendall(req)
        code, _ = read_reply(s)
        s.close()
    except OSError:
        code = None
    return code, time.monotonic() - t0


def stats(lat, bad):
    lat = sorted(lat)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    return {"n": len(lat), "failed": len(bad), "codes": sorted(set(map(str, bad))),
            "p50_ms": round(pct(0.50), 2), "p99_ms": round(pct(0.99), 2),
            "max_ms": round(lat[-1] * 1000, 2)}


def measure(port, m):
    """m requests, alternating /health and a one-token completion: figures per kind."""
    lat, bad = ([], []), ([], [])
    for k in range(m):
        code, dt = normal_request(port, k)
        lat[k % 2].append(dt)
        if code != 200:
            bad[k % 2].append(code)
    return {"health": stats(lat[0], bad[0]), "completion": stats(lat[1], bad[1]),
            "failed": len(bad[0]) + len(bad[1])}


class Slow:
    """N slow clients, trickled by one thread."""

    def __init__(self, port, n):
        self.socks, self.ended, self.codes = [], {}, {}
        for i in range(n):
            try:
                s = dial(port, source(i))
            except OSError as e:
                self.ended[i] = "connect: %s" % e
                self.socks.append(None)
                continue
            s.setblocking(False)
            if i % 2 == 0:
                s.send(b"GET /health HTTP/1.1\r\nX-Slow: ")
            else:
                s.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            self.socks.append(s)
        self.t0 = time.monotonic()
        self.stop = False
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop:
            for i, s in enumerate(self.socks):
                if s is None or i in self.ended:
                    continue
                try:
                    r, _, _ = select.select([s], [], [], 0)
                    if r:
                        data = s.recv(4096)
                        code = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None
                        self.codes[i] = code
                        self.ended[i] = time.monotonic() - self.t0
                        s.close()
                        continue
                    s.send(b"x")
                except (OSError, ValueError, IndexError):
                    self.ended[i] = time.monotonic() - self.t0
                    s.close()
            time.sleep(TRICKLE_S)

    def open_count(self):
        return sum(1 for i, s in enumerate(self.socks) if s is not None and i not in self.ended)

    def close(self):
        self.stop = True
        self.th.join()
        for i, s in enumerate(self.socks):
            if s is not None and i not in self.ended:
                s.close()


def per_client_cap(port):
    """PER_CLIENT connections from one address hold; the next gets a 429."""
    held = [dial(port, "127.0.0.250") for _ in range(PER_CLIENT)]
    for s in held:
        s.sendall(b"GET /")
    extra = dial(port, "127.0.0.250")
    code, body = read_reply(extra)
    extra.close()
    for s in held:
        s.close()
    shaped = False
    try:
        shaped = "error" in json.loads(body)
    except ValueError:
        pass
    return code, shaped


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    old = "--old" in sys.argv
    if len(args) < 2:
        sys.exit(__doc__)
    road, model = args[0], args[1]
    n_slow = int(args[2]) if len(args) > 2 else 1000
    m = int(args[3]) if len(args) > 3 else 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n_slow + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if n_slow + 64 > want:
        n_slow = want - 64
    proc, port = start_server(road, model, old)
    ok = True
    try:
        base = measure(port, m)
        slow = Slow(port, n_slow)
        time.sleep(0.5)
        connected = slow.open_count()
        loaded = measure(port, m)
        cap = per_client_cap(port) if not old else (None, None)
        deadline = time.monotonic() + REQUEST_TIMEOUT + GRACE_S
        while slow.open_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = slow.open_count()
        ended = [t for t in slow.ended.values() if isinstance(t, float)]
        n408 = sum(1 for c in slow.codes.values() if c == 408)
        slow.close()
        after = measure(port, max(10, m // 10))
        print(json.dumps({"slow_clients": n_slow, "slow_connected_at_start": connected,
                          "no_slow_clients": base, "with_slow_clients": loaded,
                          "after_deadline": after,
                          "per_client_cap": {"code": cap[0], "json": cap[1]},
                          "slow_ended": len(ended), "slow_408": n408, "slow_still_open": left,
                          "slow_ended_after_s_max": round(max(ended), 1) if ended else None},
                         indent=1))
        if loaded["failed"] or base["failed"] or after["failed"]:
            print("FAIL: normal requests went unanswered", file=sys.stderr)
            ok = False
        if not old and (cap[0] != 429 or not cap[1]):
            print("FAIL: the per-address cap did not answer 429 JSON", file=sys.stderr)
            ok = False
        if left:
            print("FAIL: %d slow clients outlived the request deadline" % left, file=sys.stderr)
            ok = False
        if proc.poll() is not None:
            print("FAIL: the server died", file=sys.stderr)
            ok = False
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
