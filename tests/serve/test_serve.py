#!/usr/bin/env python3
"""test_serve.py - integration tests of `elastic serve` through a real HTTP
client (the standard library's http.client and raw sockets) against servers
started on ephemeral loopback ports (--listen 127.0.0.1:0; the port is read
from the "listening on" log line).

What is checked:
  - every endpoint: /healthz, /readyz, /v1/model, /metrics, /v1/recommend
    (full ranking and candidates), /v1/user_vectors, /admin/reload;
  - results equal the library's for each user alone, bitwise (ids, and
    float32 scores and vectors read back from the JSON), through the ctypes
    binding of tests/golden/test_golden.py: single requests, batches, and
    64 concurrent clients with dynamic batching on (batches must hold
    users of several requests);
  - models from `elastic train`: the data's own ids in and out (numbers and
    names);
  - every error status: 400 (a corpus of over 200 malformed requests, all
    4xx with an error body), 404, 405 with Allow, 408 (slow body), 413
    (declared and streamed bodies over --max-body), 503 + Retry-After (full
    queue), 503 from /readyz while draining, 504 (deadline passed
    in the queue, not computed), and a stalled connection closed after
    --idle-timeout; the server stays up and correct;
  - SIGHUP reload under load: no failed request, each response equal to the
    model named by its X-Model-Checksum header, results switching to the new
    model; a file that fails to load leaves the old model serving and counts
    in /metrics; POST /admin/reload;
  - SIGTERM under load: /readyz turns 503, every request the server accepted
    is answered (access log lines = responses received), exit status 0.
  (POST /admin/reload from a non-loopback client (403) cannot be made from
  this machine's loopback: ctest serve_unit checks the address test.)

Run: python3 tests/serve/test_serve.py --elastic build/elastic --lib build/libelastic.so
Servers run with ELASTIC_SERVE_ASAN_OPTIONS as their ASAN_OPTIONS when set
(the sanitized build: leak checks in the server, not in Python). With
ELASTIC_SERVE_PRELOAD set (the ThreadSanitizer build: the TSan runtime), the
script runs itself again with it as LD_PRELOAD, so that the instrumented
library can be loaded through ctypes; the servers link it themselves. Every
server's log is checked for sanitizer reports when it stops.
Ends with "N passed, M failed"; exits non-zero on any failure.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

try:
    import numpy as np
    import libelastic  # the one binding of include/elastic.h (python/libelastic)
except ImportError as exc:  # CI installs numpy: a failure, not a skip
    print(f"FAIL: cannot import numpy / the libelastic package ({exc})")
    print("0 passed, 1 failed")
    sys.exit(1)

# Sanitizer reports seen in the log of any server, when it stopped.
REPORTS = []

SMALL = ["hidden=32", "max_len=20", "experts=2", "mem_subkeys=8", "mem_topk=2", "layers=2"]
ARGS = None


# ==========================================================================
# the server process
# ==========================================================================

def child_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # Python's ASan runtime preload; the server links its own
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if os.environ.get("ELASTIC_SERVE_ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] = os.environ["ELASTIC_SERVE_ASAN_OPTIONS"]
    return env


def run_cli(*args):
    r = subprocess.run([ARGS.elastic, *args], env=child_env(), capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"elastic {' '.join(args)}: {r.returncode}\n{r.stderr}")
    return r.stdout


class Server:
    """An `elastic serve` child; its log is collected line by line."""

    def __init__(self, model, *flags, workers=2, max_delay_us=2000, threads="1",
                 listen="127.0.0.1:0", preexec_fn=None):
        self.lines = []
        self.lock = threading.Lock()
        cmd = [ARGS.elastic, "serve", "--model", model, "--listen", listen,
               "--workers", str(workers), "--max-delay-us", str(max_delay_us),
               "--access-log", *flags]
        if threads is not None:
            cmd += ["--threads", threads]
        self.proc = subprocess.Popen(cmd, env=child_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=preexec_fn)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = None
        deadline = time.time() + 60
        while self.port is None and time.time() < deadline and self.proc.poll() is None:
            for line in self.log():
                if " listening on " in line:
                    self.port = int(line.rsplit(":", 1)[1])
            time.sleep(0.02)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.log()))
        self.wait_ready()

    def _read(self):
        for line in self.proc.stderr:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def log(self):
        with self.lock:
            return list(self.lines)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not become ready:\n" + "\n".join(self.log()))

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Signals the server and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(5)
        for line in self.sanitizer_reports():
            if line not in REPORTS:
                REPORTS.append(line)
        return rc

    def sanitizer_reports(self):
        return [l for l in self.log() if "Sanitizer" in l or "runtime error" in l]

    def wait_log(self, text, timeout=30):
        """Waits for a log line that contains `text`; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line in self.log():
                if text in line:
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no log line with {text!r}:\n" + "\n".join(self.log()[-10:]))


def request(port, method, path, body=None, headers=None, conn=None, timeout=60):
    """One request: (status, headers {lowercase: value}, raw body)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    try:
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        payload = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, payload
    finally:
        if conn is None:
            c.close()


def post(port, path, body, conn=None):
    status, headers, payload = request(port, "POST", path, body,
                                       {"Content-Type": "application/json"}, conn)
    return status, headers, json.loads(payload) if payload else None


def metric(text, name):
    """The value of an unlabelled sample in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def metric_labelled(text, name, labels):
    """The value of the sample name{labels} in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + "{" + labels + "} "):
            return float(line.split()[-1])
    raise KeyError(name + "{" + labels + "}")


def metrics(port):
    return request(port, "GET", "/metrics")[2].decode()


def fnv1a64(path):
    h = 0xcbf29ce484222325
    for b in open(path, "rb").read():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"fnv1a64:{h:016x}"


def raw_exchange(port, data, pause=None, read_timeout=30):
    """Sends bytes (a list of pieces, `pause` seconds apart, or a list of
    (pause, piece)) on a raw socket and returns what comes back until the
    server closes or times out; a connection cut off returns b"" or what
    was received before."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        for piece in data:
            if isinstance(piece, tuple):
                time.sleep(piece[0])
                piece = piece[1]
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            if pause:
                time.sleep(pause)
        out = b""
        while True:
            try:
                got = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not got:
                break
            out += got
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        if len(rest) >= int(line.split(b":")[1]):
                            return out
        return out
    finally:
        s.close()


# ==========================================================================
# the oracle: the library through ctypes, one user at a time
# ==========================================================================

def f32_bits(values):
    return np.asarray(values, dtype=np.float32).view(np.uint32).tolist()


class Oracle:
    """A session is used by one thread at a time: calls take a lock."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.model = libelastic.Model.load(path)
        self.session = libelastic.Session(self.model, backend="cpu")
        self.num_items, self.dim = self.model.num_items, self.model.hidden
        with open(path, "rb") as f:  # safetensors: 8-byte length, JSON header
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__", {})
        self.names = json.loads(meta["item_ids"]) if "item_ids" in meta else None
        self.index = {n: i + 1 for i, n in enumerate(self.names or [])}
        self.checksum = fnv1a64(path)

    def ids(self, items):
        """Request items (names, or numbers for a map's numeric names) to model ids."""
        return [self.index[str(v)] for v in items] if self.names else list(items)

    def recommend(self, history, k, exclude):
        with self.lock:
            ids, sc = self.session.recommend([self.ids(history)], k, exclude_history=exclude,
                                             use_item_map=False)
        n = int(np.count_nonzero(ids[0]))
        return ids[0][:n].tolist(), f32_bits(sc[0][:n])

    def rank(self, history, cands, k, exclude):
        with self.lock:
            scores = self.session.scores([self.ids(history)], use_item_map=False)[0]
        hist = set(self.ids(history))
        pool = {c for c in self.ids(cands) if not (exclude and c in hist)}
        key = lambda c: (bool(np.isnan(scores[c - 1])), -float(scores[c - 1]), c)
        best = sorted(pool, key=key)[:k]
        return best, f32_bits([scores[c - 1] for c in best])

    def vector(self, history):
        with self.lock:
            return f32_bits(self.session.user_vectors([self.ids(history)], use_item_map=False)[0])

    def free(self):
        self.session.close()
        self.model.close()


def got_ids(oracle, items):
    """The model ids of the items of a response (names back to ids)."""
    if oracle.names is None:
        return list(items)
    return [oracle.index[str(v)] for v in items]


def check_result(oracle, req, res, where):
    """One user's result against the oracle; raises AssertionError."""
    k = req.get("top_k", 10)
    exclude = req.get("exclude_history", True)
    if "candidates" in req:
        want = oracle.rank(req["history"], req["candidates"], k, exclude)
    else:
        want = oracle.recommend(req["history"], k, exclude)
    got = (got_ids(oracle, res["items"]), f32_bits(res["scores"]))
    assert got == want, f"{where}: got {got}, want {want} for {req}"


def random_user(rng, num_items, max_len=45):
    return [rng.randint(1, num_items) for _ in range(rng.randint(1, max_len))]


def random_request(rng, num_items, users=None):
    """A recommend request of 1..4 users (mixed top_k, exclusion, candidates)."""
    n = users or rng.randint(1, 4)
    hs = [random_user(rng, num_items) for _ in range(n)]
    req = {"histories": hs, "top_k": rng.choice([1, 5, 10, 17]),
           "exclude_history": rng.random() < 0.7}
    if rng.random() < 0.3:
        req["candidates"] = [[rng.randint(1, num_items) for _ in range(rng.randint(0, 30))] +
                             h[:2] for h in hs]
    return req


def per_user(req):
    """The request split into one-user requests (for the oracle)."""
    out = []
    for u, h in enumerate(req["histories"]):
        r = {"history": h, "top_k": req.get("top_k", 10),
             "exclude_history": req.get("exclude_history", True)}
        if "candidates" in req:
            r["candidates"] = req["candidates"][u]
        out.append(r)
    return out


def check_response(oracle, req, body, where):
    assert len(body["results"]) == len(req["histories"]), f"{where}: {body}"
    for u, (r, res) in enumerate(zip(per_user(req), body["results"])):
        check_result(oracle, r, res, f"{where} user {u}")


# ==========================================================================
# tests
# ==========================================================================

class Env:
    """Models and a long-lived server shared by the tests."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.model_a = os.path.join(tmp, "a.st")
        self.model_b = os.path.join(tmp, "b.st")
        run_cli("init", "num_items=300", *SMALL, "--seed", "1", "-o", self.model_a)
        run_cli("init", "num_items=300", *SMALL, "--seed", "2", "-o", self.model_b)
        # trained models: numeric ids (synth) and names (csv)
        small = ["hidden=16", "max_len=16", "experts=4", "mem_subkeys=8", "mem_topk=2",
                 "layers=1"]
        synth = os.path.join(tmp, "s.txt")
        run_cli("synth", "--users", "60", "--items", "40", "--clusters", "4", "--min-len", "5",
                "--max-len", "12", "--seed", "3", "-o", synth)
        self.model_t = os.path.join(tmp, "t.st")
        run_cli("train", "--data", synth, "-o", self.model_t, "--epochs", "1", "--quiet", *small)
        csv = os.path.join(tmp, "n.csv")
        with open(csv, "w") as f:
            f.write("user,item,timestamp\n")
            for u in range(1, 13):
                for t in range(1, 7):
                    f.write(f"u{u},film-{(u * 7 + t * 3) % 23},{t}\n")
        self.model_n = os.path.join(tmp, "n.st")
        run_cli("train", "--data", csv, "-o", self.model_n, "--epochs", "1", "--quiet", *small)
        self.oracle_a = Oracle(self.model_a)
        self.oracle_b = Oracle(self.model_b)
        self.server = Server(self.model_a, "--max-body", "262144", "--max-users", "16",
                             "--max-history", "64", "--max-top-k", "50", "--max-candidates", "40",
                             "--read-timeout-ms", "800",
                             "--max-batch", "32")

    def close(self):
        return self.server.stop()


def test_probes(env):
    port = env.server.port
    st, _, body = request(port, "GET", "/healthz")
    assert st == 200 and json.loads(body)["status"] == "alive", body
    st, _, body = request(port, "GET", "/readyz")
    assert st == 200 and json.loads(body)["status"] == "ready", body
    st, hdr, body = request(port, "HEAD", "/healthz")
    assert st == 200 and body == b"", (st, body)
    st, hdr, body = request(port, "GET", "/v1/model")
    info = json.loads(body)
    assert st == 200, body
    assert info["model"]["checksum"] == env.oracle_a.checksum, info
    assert hdr["x-model-checksum"] == env.oracle_a.checksum
    assert info["model"]["config"]["num_items"] == 300 and info["model"]["item_map"] is False
    assert info["model"]["parameters"] > 0 and info["model"]["load_seconds"] >= 0
    assert info["backend"]["name"] == "cpu" and info["backend"]["description"].startswith("cpu")
    assert "steps" in info["plan"]["summary"] and info["plan"]["fallback_nodes"] == []
    assert info["plan"]["fallback_count"] == 0 and info["batching"]["max_batch"] == 32
    st, hdr, body = request(port, "GET", "/metrics")
    text = body.decode()
    assert st == 200 and hdr["content-type"].startswith("text/plain"), hdr
    for name in ["elastic_serve_requests_total{", "elastic_serve_request_duration_seconds_bucket{",
                 "elastic_serve_batch_users_bucket{", "elastic_serve_queue_depth ",
                 "elastic_serve_in_flight_requests ", "elastic_serve_users_scored_total ",
                 "elastic_serve_model_reloads_total ", "elastic_serve_model_reload_failures_total ",
                 "elastic_serve_fallback_nodes ", 'elastic_serve_model_info{backend="cpu']:
        assert name in text, f"{name} missing from /metrics"
    assert metric(text, "elastic_serve_model_reloads_total") == 1
    log = "\n".join(env.server.log())
    for want in ["listening on 127.0.0.1:", "backend cpu", "fallback nodes: none", "plan for 32",
                 "ready"]:
        assert want in log, f"startup log lacks {want!r}:\n{log}"


def test_recommend_exact(env):
    rng = random.Random(11)
    port = env.server.port
    for i in range(25):
        req = random_request(rng, 300, users=rng.randint(1, 16))
        st, hdr, body = post(port, "/v1/recommend", req)
        assert st == 200, body
        assert hdr["x-model-checksum"] == env.oracle_a.checksum
        check_response(env.oracle_a, req, body, f"request {i}")
    # the one-user form, top_k over what is left, histories longer than max_len
    h = list(range(1, 61))
    st, _, body = post(port, "/v1/recommend", {"history": h, "top_k": 50})
    assert st == 200, body
    check_result(env.oracle_a, {"history": h, "top_k": 50}, body["results"][0], "history")
    st, _, body = post(port, "/v1/recommend", {"history": [5], "candidates": [5, 7, 7, 9],
                                               "top_k": 10, "exclude_history": True})
    assert st == 200 and len(body["results"][0]["items"]) == 2, body  # 5 left out, 7 once
    st, _, body = post(port, "/v1/recommend", {"history": [5], "candidates": []})
    assert st == 200 and body["results"][0]["items"] == [], body


def test_user_vectors_exact(env):
    rng = random.Random(12)
    hs = [random_user(rng, 300) for _ in range(9)]
    st, _, body = post(env.server.port, "/v1/user_vectors", {"histories": hs})
    assert st == 200, body
    for u, h in enumerate(hs):
        got = f32_bits(body["results"][u]["vector"])
        assert got == env.oracle_a.vector(h), f"user {u} vector differs"
    st, _, body = post(env.server.port, "/v1/user_vectors", {"history": hs[0]})
    assert st == 200 and f32_bits(body["results"][0]["vector"]) == env.oracle_a.vector(hs[0])


def test_concurrent_clients(env):
    """64 clients on keep-alive connections; batches must mix requests."""
    port = env.server.port
    before = metrics(port)
    batches0 = metric(before, "elastic_serve_batches_total")
    log0 = len(env.server.log())
    rng = random.Random(13)
    plans = [[random_request(rng, 300) for _ in range(4)] for _ in range(64)]
    vec_users = [random_user(rng, 300) for _ in range(64)]
    errors = []
    start = threading.Barrier(64)

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            start.wait()
            for i, req in enumerate(plans[c]):
                st, _, body = post(port, "/v1/recommend", req, conn)
                if st != 200:
                    errors.append(f"client {c} request {i}: {st} {body}")
                    continue
                try:
                    check_response(env.oracle_a, req, body, f"client {c} request {i}")
                except AssertionError as e:
                    errors.append(str(e))
            st, _, body = post(port, "/v1/user_vectors", {"history": vec_users[c]}, conn)
            if st != 200 or f32_bits(body["results"][0]["vector"]) != env.oracle_a.vector(
                    vec_users[c]):
                errors.append(f"client {c}: user vector differs ({st})")
        except Exception as e:  # noqa: BLE001 - reported as a failure
            errors.append(f"client {c}: {e!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, f"{len(errors)} failures, first: {errors[:3]}"
    after = metrics(port)
    n_requests = 64 * 5
    batches = metric(after, "elastic_serve_batches_total") - batches0
    assert batches < n_requests, f"{batches} batches for {n_requests} requests: no batching"
    # batches mixed users of different requests (the access log names each one's batch)
    per_batch = {}
    for line in env.server.log()[log0:]:
        if " access " in line and " batch=" in line and "batch=-" not in line:
            b = line.rsplit("batch=", 1)[1].split("/")[0]
            per_batch[b] = per_batch.get(b, 0) + 1
    shared = sum(1 for n in per_batch.values() if n > 1)
    assert shared > 0, "no batch held users of two requests"
    print(f"    {n_requests} requests from 64 clients in {batches:.0f} batches, "
          f"{shared} of them shared by several requests")


def test_item_maps(env):
    for path, numeric in [(env.model_t, True), (env.model_n, False)]:
        oracle = Oracle(path)
        server = Server(path)
        try:
            names = oracle.names
            rng = random.Random(14)
            for i in range(6):
                hs = [[rng.choice(names) for _ in range(rng.randint(1, 20))] for _ in range(3)]
                if numeric:  # numeric names may be sent as numbers or as strings
                    hs = [[int(n) if rng.random() < 0.5 else n for n in h] for h in hs]
                req = {"histories": hs, "top_k": 5}
                if i % 2:
                    req["candidates"] = [[rng.choice(names) for _ in range(8)] for _ in hs]
                st, _, body = post(server.port, "/v1/recommend", req)
                assert st == 200, body
                for res in body["results"]:
                    assert all(isinstance(v, int) if numeric else isinstance(v, str)
                               for v in res["items"]), res
                check_response(oracle, req, body, f"{os.path.basename(path)} request {i}")
            st, _, body = post(server.port, "/v1/recommend", {"history": [names[0], "no-such"]})
            assert st == 400 and body["error"]["code"] == "unknown_item", body
            assert "no-such" in body["error"]["message"], body
            info = json.loads(request(server.port, "GET", "/v1/model")[2])
            assert info["model"]["item_map"] is True, info
        finally:
            rc = server.stop()
            oracle.free()
        assert rc == 0, f"exit status {rc}"
        assert not server.sanitizer_reports(), server.sanitizer_reports()


def test_http_errors(env):
    port = env.server.port
    st, _, body = request(port, "GET", "/nope")
    assert st == 404 and json.loads(body)["error"]["code"] == "not_found", body
    st, hdr, body = request(port, "GET", "/v1/recommend")
    assert st == 405 and hdr.get("allow") == "POST", (st, hdr)
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    st, hdr, body = request(port, "DELETE", "/healthz")
    assert st == 405 and hdr.get("allow") == "GET, HEAD", (st, hdr)
    # 413: a declared 100 MB body is refused at once, before it is sent
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n")
    out = raw_exchange(port, [head, b"[" * 65536])
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert b"body_too_large" in out and b"--max-body" in out, out
    # 413: a chunked body that grows past the limit (256 KiB) is read, discarded, refused
    piece = b"[" * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n")
    out = raw_exchange(port, [head] + [chunk] * 6 + [b"0\r\n\r\n"])
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    # ... and cut off once it goes past twice the limit: no answer
    out = raw_exchange(port, [head] + [chunk] * 12 + [b"0\r\n\r\n"])
    assert out == b"", out[:200]
    # routes that take no body: 413 at once for a declared one, after it for a chunked one
    for method, path in [("GET", "/healthz"), ("POST", "/admin/reload")]:
        st, _, out = request(port, method, path, b"{}")
        err = json.loads(out)["error"]
        assert st == 413 and "takes no request body" in err["message"], (path, st, out)
    out = raw_exchange(port, [b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n"])
    assert out.startswith(b"HTTP/1.1 413") and b"takes no request body" in out, out[:300]
    # /admin/* through a local reverse proxy: the peer is loopback, the headers say otherwise
    for name, value in [("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=203.0.113.9"),
                        ("Via", "1.1 proxy"), ("X-Real-IP", "203.0.113.9")]:
        st, _, out = request(port, "POST", "/admin/reload", headers={name: value})
        err = json.loads(out)["error"]
        assert st == 403 and err["code"] == "forbidden" and name in err["message"], (name, out)
    # the method is logged printable, like the path
    out = raw_exchange(port, [b"G\x1bT /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    assert out.startswith(b"HTTP/1.1 405"), out[:200]
    line = env.server.wait_log(" G?T /healthz")
    assert all(0x20 <= ord(c) < 0x7f for c in line), repr(line)
    # --read-timeout-ms (800) limits the gaps in a body, not its total time:
    # a body that keeps coming for 2 s is taken ...
    body = json.dumps({"history": [1, 2, 3]}).encode()
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    pieces = [head] + [body[i:i + 3] for i in range(0, len(body), 3)]
    out = raw_exchange(port, pieces, pause=2.0 / (len(pieces) - 1))
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    # ... one that pauses for over 800 ms is read to its end and answered 408 ...
    out = raw_exchange(port, [head, body[:5], (1.1, body[5:])])
    assert out.startswith(b"HTTP/1.1 408"), out[:300]
    assert b"--read-timeout-ms" in out, out
    # ... and one that stops is cut off after twice that
    cut0 = metric_labelled(metrics(port), "elastic_serve_connections_cut_off_total",
                           'phase="body"')
    t0 = time.time()
    out = raw_exchange(port, [head, body[:5]], read_timeout=10)
    took = time.time() - t0
    assert out == b"" and 1.5 < took < 6, (out, took)
    wait_metric(port, "elastic_serve_connections_cut_off_total", cut0 + 1, label='phase="body"')


def test_idle_client(env):
    """A stalled client is disconnected after --idle-timeout; others are
    served meanwhile. (A server of its own: keep-alive clients of the other
    tests may pause longer than this under the sanitizers.)"""
    server = Server(env.model_a, "--idle-timeout", "1")
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        try:
            s.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\n")
            t0 = time.time()
            st, _, _ = post(server.port, "/v1/recommend", {"history": [1]})
            assert st == 200
            got = s.recv(100)
            waited = time.time() - t0
            assert got == b"" and waited < 8, (got, waited)
        finally:
            s.close()
        st, _, _ = post(server.port, "/v1/recommend", {"history": [1]})
        assert st == 200
    finally:
        rc = server.stop()
    assert rc == 0, rc


def malformed_corpus(num_items):
    """Over 200 bodies for POST /v1/recommend that must all get a 4xx."""
    raw = [b"", b" ", b"{", b"}", b"[", b"]", b"null", b"true", b"1", b"\"x\"", b"[]", b"{}",
           b"{\"histories\":", b"{\"histories\": [[1, 2]]", b"{\"histories\": [[1, 2]]}}",
           b"{histories: [[1]]}", b"{'histories': [[1]]}", b"\x00\x01\x02", b"\xff\xfe\xfd",
           b"{\"histories\": [[\"\xff\"]]}", b"{\"history\": [1], \"history\": [2]}",
           b"[" * 100000, b"{\"a\":" * 30000, b"{\"histories\": [[1e999999]]}",
           b"{\"histories\": [[123456789012345678901234567890]]}",
           b"{\"histories\": [[1]], \"top_k\": 99999999999999999999999}",
           b"{\"histories\": [[1]]} trailing", b"{\"histories\": [[1,]]}",
           b"{\"histories\": [[01]]}", b"{\"histories\": [[-]]}", b"{\"histories\": [[NaN]]}",
           b"{\"histories\": [[Infinity]]}", b"{\"histories\" [[1]]}", b"\"\\ud800\"",
           b"{\"histories\": [[\"\\u0000\"]]}"]
    bad_items = [None, True, False, "1", "", 1.5, 0, -1, num_items + 1, 2 ** 31, 2 ** 63 - 1,
                 -2 ** 63, [], [1], {}, {"id": 1}, 1e10]
    bad_histories = [None, 1, "1 2 3", {}, [], [[]], [1, 2], [[1], []], [[1], "x"], [[[1]]],
                     [[1]] * 17, [[1] * 65]]
    bad_top_k = [0, -1, -2 ** 63, 1.5, "10", None, True, [], {}, 51, 301, 10 ** 6, 2 ** 40]
    bad_exclude = [1, 0, "true", None, [], {}, "yes"]
    bad_candidates = [None, 1, "x", {}, [[1], [2]], [1, 2], [[0]], [[num_items + 1]], [["x"]],
                      [[1.5]], [[None]], [[1] * 41], [[[1]]]]
    valid = b'{"histories": [[1, 2, 3]], "top_k": 5}'
    raw += [valid[:i] for i in range(1, len(valid), 2)]  # every other truncation
    bodies = list(raw)
    for v in bad_items:
        bodies.append({"histories": [[1, v]]})
        bodies.append({"history": [v]})
        bodies.append({"histories": [[1]], "candidates": [[v]]})
        bodies.append({"history": [1], "candidates": [2, v]})
    for v in bad_histories:
        bodies.append({"histories": v})
        if v != [1, 2]:  # a good "history"
            bodies.append({"history": v})
    for v in bad_top_k:
        bodies.append({"histories": [[1]], "top_k": v})
        bodies.append({"history": [1, 2], "top_k": v, "candidates": [3, 4]})
    for v in bad_exclude:
        bodies.append({"histories": [[1]], "exclude_history": v})
        bodies.append({"history": [1], "exclude_history": v, "top_k": 3})
    for v in bad_items[:10]:  # a bad id after good users and items
        bodies.append({"histories": [[1, 2], [3], [4, 5, v]], "top_k": 3})
    for v in bad_candidates:
        bodies.append({"histories": [[1]], "candidates": v})
    bodies += [{"histories": [[1]], "history": [1]}, {"top_k": 5}, {"histories": [[1]], "k": 5},
               {"histories": [[1]], "topk": 5}, {"histories": [[1]], "": 1},
               {"history": [1], "candidates": [[1]]}, {"history": [1] * 65},
               {"histories": [[1]] * 16, "candidates": [[1]] * 15}]
    return [b if isinstance(b, bytes) else json.dumps(b).encode() for b in bodies]


def test_malformed_corpus(env):
    port = env.server.port
    corpus = malformed_corpus(300)
    vectors_extra = [b"{\"histories\": [[1]], \"top_k\": 5}", b"{\"history\": [1],"
                     b" \"candidates\": [1]}", b"{}", b"[[1]]", b"{\"history\": []}"]
    cases = [("/v1/recommend", b) for b in corpus] + [("/v1/user_vectors", b) for b in
                                                       corpus[:40] + vectors_extra]
    assert len(corpus) >= 200, len(corpus)
    bad = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for path, body in cases:
        try:
            st, hdr, payload = request(port, "POST", path, body, conn=conn)
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            st, hdr, payload = request(port, "POST", path, body, conn=conn)
        try:
            err = json.loads(payload)["error"]
            ok = 400 <= st < 500 and err["code"] and len(err["message"]) > 5
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            bad.append((path, body[:80], st, payload[:200]))
        if hdr.get("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()
    assert not bad, f"{len(bad)} of {len(cases)} not a 4xx error: {bad[:5]}"
    # a few messages name the problem
    msgs = {}
    for body, want in [({"histories": [[1, 301]]}, "histories[0][1]"),
                       ({"histories": [[1]], "top_k": 51}, "--max-top-k"),
                       ({"histories": [[1]] * 17}, "--max-users"),
                       ({"history": [1] * 65}, "--max-history"),
                       ({"histories": [[1]], "candidates": [[1] * 41]}, "--max-candidates"),
                       ({"histories": [[1]], "topk": 5}, "unknown field 'topk'"),
                       ({"histories": [[]]}, "histories[0] is empty")]:
        st, _, out = post(port, "/v1/recommend", body)
        msgs[want] = out["error"]["message"]
        assert st == 400 and want in out["error"]["message"], (body, st, out)
    print(f"    {len(cases)} malformed requests, all 4xx")
    # alive and still exact
    rng = random.Random(15)
    for _ in range(3):
        req = random_request(rng, 300)
        st, _, body = post(port, "/v1/recommend", req)
        assert st == 200, body
        check_response(env.oracle_a, req, body, "after the corpus")


def wait_metric(port, name, want, timeout=30, label=None):
    """Polls /metrics until the sample `name` (with `label`) equals `want`."""
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        text = metrics(port)
        got = metric_labelled(text, name, label) if label else metric(text, name)
        if got == want:
            return
        time.sleep(0.01)
    raise AssertionError(f"{name} never reached {want} (last {got})")


def test_queue_full_and_deadline(env):
    """One worker busy for 2.5 s (--debug-delay-ms): queued requests expire
    at their deadline (504, not computed) and a full queue answers 503 at
    once, with Retry-After."""
    server = Server(env.model_a, "--debug-delay-ms", "2500", "--timeout-ms", "1200",
                    "--max-queue", "2", workers=1, max_delay_us=0)
    try:
        port = server.port
        results = {}

        def send(name, users):
            t0 = time.time()
            st, hdr, body = post(port, "/v1/recommend", {"histories": [[1, 2]] * users})
            results[name] = (st, hdr, body, time.time() - t0)

        first = threading.Thread(target=send, args=("first", 3))
        first.start()
        deadline = time.time() + 30  # the worker has taken it: in flight, not queued
        while not (metric(metrics(port), "elastic_serve_in_flight_requests") >= 2 and
                   metric(metrics(port), "elastic_serve_queue_depth") == 0):
            assert time.time() < deadline, "the first request never reached the worker"
            time.sleep(0.01)
        queued = [threading.Thread(target=send, args=(f"q{i}", 2)) for i in range(2)]
        for t in queued:
            t.start()
        wait_metric(port, "elastic_serve_queue_depth", 2)
        send("full", 1)
        for t in queued + [first]:
            t.join(30)
        st, hdr, body, took = results["full"]
        assert st == 503 and body["error"]["code"] == "queue_full", body
        assert hdr.get("retry-after") == "1", hdr
        assert took < 1.0, f"503 after {took:.2f} s: not at once"
        for q in ("q0", "q1"):
            st, _, body, took = results[q]
            assert st == 504 and body["error"]["code"] == "deadline_exceeded", body
            assert took < 2.3, f"504 after {took:.2f} s: not at the deadline"
        assert results["first"][0] == 200, results["first"]
        text = metrics(port)
        assert metric(text, "elastic_serve_users_scored_total") == 3, text  # 503, 504: no compute
    finally:
        rc = server.stop()
    assert rc == 0, rc


def test_reload_under_load(env):
    path = os.path.join(env.tmp, "live.st")
    shutil.copy(env.model_a, path)
    server = Server(path, "--max-batch", "16")
    port = server.port
    oracles = {env.oracle_a.checksum: env.oracle_a, env.oracle_b.checksum: env.oracle_b}
    rng = random.Random(16)
    reqs = [random_request(rng, 300) for _ in range(12)]
    stop = threading.Event()
    switched = threading.Event()
    seen, errors = [], []

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = 0
        while not stop.is_set():
            req = reqs[(c + i) % len(reqs)]
            i += 1
            after_switch = switched.is_set()
            try:
                st, hdr, body = post(port, "/v1/recommend", req, conn)
            except Exception as e:  # noqa: BLE001
                errors.append(f"client {c}: {e!r}")
                return
            if st != 200:
                errors.append(f"client {c}: {st} {body}")
                continue
            sum_ = hdr.get("x-model-checksum")
            seen.append(sum_)
            if after_switch and sum_ != env.oracle_b.checksum:
                errors.append(f"client {c}: the old model answered after the switch")
            try:
                check_response(oracles[sum_], req, body, f"client {c}")
            except (AssertionError, KeyError) as e:
                errors.append(str(e))
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.7)
        tmp = path + ".new"
        shutil.copy(env.model_b, tmp)
        os.replace(tmp, path)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline:
            info = json.loads(request(port, "GET", "/v1/model")[2])
            if info["model"]["checksum"] == env.oracle_b.checksum:
                break
            time.sleep(0.05)
        switched.set()
        time.sleep(0.7)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, f"{len(errors)} failures: {errors[:3]}"
    n_a = seen.count(env.oracle_a.checksum)
    n_b = seen.count(env.oracle_b.checksum)
    assert n_a > 0 and n_b > 0, (n_a, n_b)
    print(f"    {len(seen)} requests during the reload: {n_a} on the old model, {n_b} on the new")
    try:
        # the generation is a gauge of its own (a label would make a series per reload);
        # the old generation is freed once its last request is answered (by the control loop)
        text = metrics(port)
        assert metric(text, "elastic_serve_model_generation") == 2, text
        assert "generation=" not in text, text
        server.wait_log("model generation 1 freed")
        # a file that does not load: the old model goes on serving
        with open(path + ".bad", "wb") as f:
            f.write(open(env.model_a, "rb").read()[:300])
        os.replace(path + ".bad", path)
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 30
        while time.time() < deadline and metric(
                metrics(port), "elastic_serve_model_reload_failures_total") < 1:
            time.sleep(0.05)
        text = metrics(port)
        assert metric(text, "elastic_serve_model_reload_failures_total") == 1, text
        assert metric(text, "elastic_serve_model_reloads_total") == 2, text
        assert any("reload failed" in l for l in server.log()), server.log()[-5:]
        req = reqs[0]
        st, hdr, body = post(port, "/v1/recommend", req)
        assert st == 200 and hdr["x-model-checksum"] == env.oracle_b.checksum
        check_response(env.oracle_b, req, body, "after a failed reload")
        st, _, body = request(port, "POST", "/admin/reload")
        body = json.loads(body)
        assert st == 500 and body["error"]["code"] == "reload_failed", body
        # POST /admin/reload with a good file again
        shutil.copy(env.model_a, path + ".new")
        os.replace(path + ".new", path)
        st, _, body = request(port, "POST", "/admin/reload")
        body = json.loads(body)
        assert st == 200 and body["checksum"] == env.oracle_a.checksum, body
        assert body["generation"] == 3, body
        st, hdr, body = post(port, "/v1/recommend", req)
        assert st == 200 and hdr["x-model-checksum"] == env.oracle_a.checksum
        check_response(env.oracle_a, req, body, "after /admin/reload")
    finally:
        rc = server.stop()
    assert rc == 0, rc
    assert not server.sanitizer_reports(), server.sanitizer_reports()


def test_sigterm_under_load(env):
    """Clients on fresh connections until refused; a probe on a kept-alive
    connection sees /readyz turn 503; every accepted request is answered."""
    server = Server(env.model_a, "--debug-delay-ms", "150", "--drain-seconds", "20",
                    "--max-batch", "8")
    port = server.port
    rng = random.Random(17)
    reqs = [random_request(rng, 300) for _ in range(8)]
    answered, refused, errors = [], [], []
    stop = threading.Event()

    def client(c):
        i = 0
        while not stop.is_set():
            req = reqs[(c + i) % len(reqs)]
            i += 1
            try:
                st, _, body = post(port, "/v1/recommend", req)
            except ConnectionRefusedError:
                refused.append(c)
                return
            except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError) as e:
                # the connection was never accepted (shut listening socket)
                refused.append(c)
                return
            except Exception as e:  # noqa: BLE001
                errors.append(f"client {c}: {e!r}")
                return
            if st != 200:
                errors.append(f"client {c}: {st} {body}")
                continue
            answered.append(c)
            try:
                check_response(env.oracle_a, req, body, f"client {c}")
            except AssertionError as e:
                errors.append(str(e))

    probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    assert request(port, "GET", "/readyz", conn=probe)[0] == 200
    threads = [threading.Thread(target=client, args=(c,)) for c in range(12)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.time()
    server.proc.send_signal(signal.SIGTERM)
    st = 200  # the kept-alive probe asks until the drain shows
    hdr = {}
    while st == 200 and time.time() < t0 + 20:
        try:
            st, hdr, body = request(port, "GET", "/readyz", conn=probe)
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError,
                http.client.RemoteDisconnected):
            # A 200 that raced the signal already said Connection: close, and
            # a new connection is closed at accept while draining.
            assert hdr.get("connection", "").lower() == "close", hdr
            st, body = "closed", b'{"error": {"code": "draining"}}'
        time.sleep(0.01)
    probe.close()
    try:
        rc = server.proc.wait(30)
    except subprocess.TimeoutExpired:
        rc = None
    took = time.time() - t0
    stop.set()
    for t in threads:
        t.join(60)
    rc = server.stop() if rc is None else rc
    assert st in (503, "closed") and json.loads(body)["error"]["code"] == "draining", (st, body)
    assert rc == 0, f"exit status {rc}"
    assert not errors, f"{len(errors)} failures: {errors[:3]}"
    log = server.log()
    served = sum(1 for l in log if " access " in l and "/v1/recommend status=" in l)
    assert served == len(answered), f"server answered {served}, clients received {len(answered)}"
    assert any("drained: every accepted request was answered" in l for l in log), log[-5:]
    assert not any("status=aborted" in l for l in log), [l for l in log if "aborted" in l]
    print(f"    {len(answered)} requests answered, drained and exited in {took:.2f} s")
    assert not server.sanitizer_reports(), server.sanitizer_reports()


def read_response(sock, timeout=10):
    """One HTTP response from a raw socket: (status line, body); b"" at a close."""
    sock.settimeout(timeout)
    out = b""
    while b"\r\n\r\n" not in out:
        got = sock.recv(65536)
        if not got:
            return out, b""
        out += got
    head, _, rest = out.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        got = sock.recv(65536)
        if not got:
            break
        rest += got
    return head.split(b"\r\n")[0], rest


def trickle(sock, data, step=0.05, limit=8.0):
    """Sends data a byte every `step` seconds; returns the seconds until the
    server closed the connection, or None if it never did within `limit`."""
    t0 = time.time()
    sock.settimeout(step)
    for b in data:
        try:
            sock.send(bytes([b]))
            if sock.recv(100) == b"":
                return time.time() - t0
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.time() - t0
        if time.time() - t0 > limit:
            return None
    return None


def test_header_deadline(env):
    """Headers that trickle in a byte at a time (each byte resets MHD's idle
    timer) are cut off after --read-timeout-ms, on a new connection and on a
    kept-alive one; a kept-alive connection may still idle between requests;
    --max-connections-per-ip; SIGHUPs during the shutdown are harmless (the
    signal thread is joined before the server is freed)."""
    server = Server(env.model_a, "--read-timeout-ms", "600", "--idle-timeout", "30",
                    "--max-connections-per-ip", "3")
    port = server.port
    get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 300 + b"\r\n\r\n"
    try:
        # three connections from one address are open; a fourth is closed at once.
        # The server's start-up probes closed their connections just now, and
        # libmicrohttpd counts a closed connection until its thread cleans it
        # up: until then a new one may be refused, so the three are retried.
        deadline = time.time() + 5
        while True:
            held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
            ok = True
            for sock in held:
                try:
                    sock.sendall(get)
                    ok = ok and read_response(sock)[0].startswith(b"HTTP/1.1 200")
                except OSError:
                    ok = False
            if ok:
                break
            for sock in held:
                sock.close()
            assert time.time() < deadline, "three connections from one address are not served"
            time.sleep(0.1)
        try:
            st = request(port, "GET", "/healthz", timeout=5)[0]
        except (http.client.HTTPException, OSError) as e:
            st = repr(e)
        assert st != 200, "a fourth connection from one address was served"
        for sock in held:
            sock.close()
        deadline = time.time() + 5
        while True:
            try:
                if request(port, "GET", "/healthz", timeout=5)[0] == 200:
                    break
            except (http.client.HTTPException, OSError):
                pass
            assert time.time() < deadline, "connections are still refused after closing"
            time.sleep(0.05)
        # a new connection whose headers trickle: cut off. One closed at once
        # (under 50 ms) was refused at accept: the per-address limit still
        # counted a closed connection (above); it is tried again.
        deadline = time.time() + 5
        while True:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                took = trickle(sock, slow)
            if took is None or took >= 0.05 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert took is not None and 0.4 < took < 4, took
        # kept alive: idle for longer than --read-timeout-ms between requests is fine ...
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(get)
            assert read_response(sock)[0].startswith(b"HTTP/1.1 200")
            time.sleep(1.0)
            sock.sendall(get)
            assert read_response(sock)[0].startswith(b"HTTP/1.1 200")
            # ... but the next request's headers must not trickle either
            took = trickle(sock, slow)
        assert took is not None and took < 4, took
        text = metrics(port)
        assert metric_labelled(text, "elastic_serve_connections_cut_off_total",
                               'phase="headers"') == 2, text
        server.wait_log("cut off a connection from 127.0.0.1: a request's headers")
    finally:
        # SIGTERM, then SIGHUPs until the process is gone
        server.proc.send_signal(signal.SIGTERM)
        t0 = time.time()
        while server.proc.poll() is None and time.time() < t0 + 30:
            try:
                server.proc.send_signal(signal.SIGHUP)
            except ProcessLookupError:
                break
            time.sleep(0.002)
        rc = server.stop()
    assert rc == 0, rc
    assert not server.sanitizer_reports(), server.sanitizer_reports()
    assert server.log()[-1].endswith(" stopped"), server.log()[-3:]


def test_json_off_http_threads(env):
    """Request bodies are parsed on the job pool, not on the HTTP threads:
    with one HTTP thread and parsing slowed down (--debug-parse-delay-ms),
    /healthz still answers at once."""
    server = Server(env.model_a, "--http-threads", "1", "--json-threads", "2",
                    "--debug-parse-delay-ms", "1500")
    port = server.port
    try:
        results = []
        reqs = [{"history": [1, 2, 3], "top_k": 4}, {"histories": [[5], [6, 7]], "top_k": 2}]
        threads = [threading.Thread(target=lambda r=r: results.append((r, post(port, "/v1/recommend", r))))
                   for r in reqs]
        for t in threads:
            t.start()
        wait_metric(port, "elastic_serve_in_flight_requests", 3)  # both, and this /metrics
        t0 = time.time()
        st, _, _ = request(port, "GET", "/healthz")
        took = time.time() - t0
        assert st == 200 and took < 0.7, f"/healthz took {took:.2f} s while bodies were parsed"
        assert not results, "parsed before the delay"
        for t in threads:
            t.join(30)
        for req, (st, _, body) in results:
            assert st == 200, body
            check_response(env.oracle_a, {"histories": req.get("histories", [req.get("history")]),
                                          "top_k": req["top_k"]}, body, "after a slow parse")
    finally:
        rc = server.stop()
    assert rc == 0, rc


def test_body_memory(env):
    """--max-body-memory: bodies held at once; one that does not fit gets 503
    with Retry-After (at once when declared, after it is read when chunked);
    the memory comes back once a body is parsed."""
    server = Server(env.model_a, "--max-body", "100000", "--max-body-memory", "150000")
    port = server.port

    def padded(req, size):
        text = json.dumps(req).encode()
        return text + b" " * (size - len(text))

    try:
        big = padded({"history": [1, 2]}, 100000)
        holder = socket.create_connection(("127.0.0.1", port), timeout=10)
        holder.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                       b"\r\n" + big[:1000])
        wait_metric(port, "elastic_serve_in_flight_requests", 2)  # it, and this /metrics
        mid = padded({"history": [3]}, 60000)
        st, hdr, out = request(port, "POST", "/v1/recommend", mid)
        assert st == 503 and json.loads(out)["error"]["code"] == "server_busy", (st, out)
        assert hdr.get("retry-after") == "1" and b"--max-body-memory" in out, hdr
        chunk = b"%x\r\n" % len(mid) + mid + b"\r\n0\r\n\r\n"
        out = raw_exchange(port, [b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n" + chunk])
        assert out.startswith(b"HTTP/1.1 503") and b"server_busy" in out, out[:200]
        holder.sendall(big[1000:])
        status, body = read_response(holder)
        holder.close()
        assert status.startswith(b"HTTP/1.1 200"), (status, body[:200])
        st, _, out = request(port, "POST", "/v1/recommend", mid)
        assert st == 200, out
    finally:
        rc = server.stop()
    assert rc == 0, rc


def test_threads_and_dual_stack(env):
    """--threads by default follows the CPU affinity (here one CPU), not the
    CPUs online; --listen [::]:P takes IPv4 clients too."""
    one = {sorted(os.sched_getaffinity(0))[0]}
    server = Server(env.model_a, workers=1, threads=None, listen="[::]:0",
                    preexec_fn=lambda: os.sched_setaffinity(0, one))
    try:
        line = server.wait_log(" CPUs: ")
        assert "CPUs: 1 usable" in line and "affinity 1," in line, line
        assert "--threads 1 per worker" in line, line
        server.wait_log("batching: 1 workers x 1 threads")
        st, _, body = request(server.port, "GET", "/healthz")  # to 127.0.0.1
        assert st == 200, body
        server.wait_log("access ::ffff:127.0.0.1 GET /healthz status=200")
    finally:
        rc = server.stop()
    assert rc == 0, rc


def thread_cpus(pid):
    """{thread name: its Cpus_allowed_list} for the threads of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                cpus = [l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list")]
        except OSError:
            continue
        out[name] = cpus[0] if cpus else "?"
    return out


def test_pin_workers(env):
    """--pin-workers: each worker on its own CPU of the affinity mask (two
    CPUs: two different ones), as its log line says; the HTTP threads keep
    the whole mask; results unchanged."""
    mask = sorted(os.sched_getaffinity(0))
    server = Server(env.model_a, "--pin-workers", workers=2, threads="1")
    try:
        said = [server.wait_log(f"worker {i} pinned to CPU ").rsplit(" ", 1)[1] for i in (0, 1)]
        want = [str(mask[0]), str(mask[1 % len(mask)])]
        assert said == want, (said, want)
        cpus = thread_cpus(server.proc.pid)
        assert cpus.get("serve-worker0") == want[0], cpus
        assert cpus.get("serve-worker1") == want[1], cpus
        if len(mask) > 1:  # the other threads keep the whole mask
            assert cpus.get("serve-reaper") not in (None, *want), cpus
        rng = random.Random(5)
        for i in range(6):
            req = random_request(rng, 300, users=rng.randint(1, 8))
            st, _, body = post(server.port, "/v1/recommend", req)
            assert st == 200, body
            check_response(env.oracle_a, req, body, f"pinned request {i}")
    finally:
        rc = server.stop()
    assert rc == 0, rc
    # a backend named other than cpu, without --threads: its thread count is
    # its own, so nothing is pinned, and the log says why
    server = Server(env.model_a, "--pin-workers", "--backend", "auto", workers=2, threads=None)
    try:
        server.wait_log("worker 1 not pinned: give --threads")
        assert "serve-worker1" in thread_cpus(server.proc.pid)
        assert thread_cpus(server.proc.pid)["serve-worker1"] not in (str(c) for c in mask[1:])
    finally:
        rc = server.stop()
    assert rc == 0, rc


def test_abort_and_stop_during_reload(env):
    """A client that hangs up while its request is computed is logged and
    counted as aborted, not 200. SIGTERM during a reload whose step cannot
    be interrupted (--debug-reload-delay-ms sleeps 2 s, like a large file
    loading) drains at once: /readyz 503 and no new connections while the
    step still runs; then the reload is abandoned at its next step (no new
    generation; its POST /admin/reload gets 503) and the process exits 0."""
    path = os.path.join(env.tmp, "stop.st")
    shutil.copy(env.model_a, path)
    server = Server(path, "--debug-delay-ms", "400", "--debug-reload-delay-ms", "2000")
    port = server.port
    try:
        body = json.dumps({"history": [1, 2, 3]}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                         % len(body) + body)
            time.sleep(0.1)
        wait_metric(port, "elastic_serve_requests_aborted_total", 1)
        line = server.wait_log("POST /v1/recommend status=")
        assert "status=aborted" in line, line
        text = metrics(port)
        assert 'endpoint="/v1/recommend",status="200"' not in text, text
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        assert request(port, "GET", "/readyz", conn=probe)[0] == 200
        admin = []
        waiter = threading.Thread(
            target=lambda: admin.append(request(port, "POST", "/admin/reload", timeout=60)))
        waiter.start()
        server.wait_log("reloading " + path)
        # a request in flight (400 ms in its batch) keeps the drain open a while
        slow = []
        slow_client = threading.Thread(
            target=lambda: slow.append(post(port, "/v1/recommend", {"history": [4, 5]})))
        slow_client.start()
        wait_metric(port, "elastic_serve_in_flight_requests", 3)  # reload, recommend, /metrics
        t0 = time.time()
        server.proc.send_signal(signal.SIGTERM)
        server.wait_log("SIGTERM: shutting down")
        st, _, out = request(port, "GET", "/readyz", conn=probe)
        probe.close()
        assert st == 503 and json.loads(out)["error"]["code"] == "draining", (st, out)
        took = time.time() - t0
        assert took < 1.2, f"/readyz turned 503 {took:.1f} s after SIGTERM (the reload sleeps 2 s)"
        try:
            refused = request(port, "GET", "/healthz", timeout=5)[0] != 200
        except (http.client.HTTPException, OSError):
            refused = True
        assert refused, "a new connection was accepted while draining"
        assert time.time() - t0 < 1.5, "checked after the reload's step"
        waiter.join(30)
        st, _, out = admin[0]
        assert st == 503 and json.loads(out)["error"]["code"] == "shutting_down", (st, out)
        slow_client.join(30)
        assert slow and slow[0][0] == 200, slow  # accepted before the stop: answered
        rc = server.proc.wait(30)
    finally:
        rc = server.stop()
    assert rc == 0, rc
    server.wait_log("reload abandoned")
    assert not any("reloaded " in l for l in server.log()), server.log()[-8:]
    assert not server.sanitizer_reports(), server.sanitizer_reports()


def test_checksum_names_the_loaded_file(env):
    """A file replaced between its checksum and its load (held apart by
    --debug-reload-delay-ms) is loaded again: the checksum served always
    names the model that computes."""
    path = os.path.join(env.tmp, "race.st")
    shutil.copy(env.model_a, path)
    server = Server(path, "--debug-reload-delay-ms", "500")
    port = server.port
    try:
        server.proc.send_signal(signal.SIGHUP)
        server.wait_log("reloading " + path)
        time.sleep(0.1)  # summed, waiting before the load
        shutil.copy(env.model_b, path + ".new")
        os.replace(path + ".new", path)
        server.wait_log("changed while it was loaded: loading it again")
        server.wait_log("reloaded " + path)
        req = {"histories": [[1, 2, 3], [40, 50]], "top_k": 5}
        st, hdr, body = post(port, "/v1/recommend", req)
        assert st == 200 and hdr["x-model-checksum"] == env.oracle_b.checksum, hdr
        check_response(env.oracle_b, req, body, "after a racing replacement")
        info = json.loads(request(port, "GET", "/v1/model")[2])
        assert info["model"]["checksum"] == env.oracle_b.checksum, info
    finally:
        rc = server.stop()
    assert rc == 0, rc


def test_access_log(env):
    log = env.server.log()
    lines = [l for l in log if " access 127.0.0.1 POST /v1/recommend status=200" in l]
    assert lines, log[-5:]
    line = lines[-1]
    for field in ["users=", "latency_ms=", "batch="]:
        assert field in line, line
    assert any("batch=-" not in l for l in lines), lines[:3]


def test_cli_errors(env):
    r = subprocess.run([ARGS.elastic, "serve"], env=child_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "--model is required" in r.stderr, r.stderr
    r = subprocess.run([ARGS.elastic, "serve", "--model", env.model_a, "--listen", "nonsense"],
                       env=child_env(), capture_output=True, text=True)
    assert r.returncode == 1 and "ADDR:PORT" in r.stderr, r.stderr
    r = subprocess.run([ARGS.elastic, "serve", "--model", os.path.join(env.tmp, "none.st"),
                        "--listen", "127.0.0.1:0"], env=child_env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "none.st" in r.stderr, r.stderr
    r = subprocess.run([ARGS.elastic, "serve", "--model", env.model_a, "--max-batch", "0"],
                       env=child_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "--max-batch" in r.stderr, r.stderr


TESTS = [test_probes, test_recommend_exact, test_user_vectors_exact, test_concurrent_clients,
         test_item_maps, test_http_errors, test_idle_client, test_malformed_corpus,
         test_queue_full_and_deadline, test_reload_under_load, test_sigterm_under_load,
         test_header_deadline, test_json_off_http_threads, test_body_memory,
         test_threads_and_dual_stack, test_pin_workers, test_abort_and_stop_during_reload,
         test_checksum_names_the_loaded_file, test_access_log, test_cli_errors]


def preload_and_rerun():
    """In the TSan build the oracle's library needs the TSan runtime loaded
    first: run this script again with ELASTIC_SERVE_PRELOAD as LD_PRELOAD
    (the interpreter itself, not a wrapper script such as a pyenv shim)."""
    pre = os.environ.get("ELASTIC_SERVE_PRELOAD")
    if pre and os.environ.get("LD_PRELOAD") != pre:
        env = dict(os.environ, LD_PRELOAD=pre)
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                  env)


def main():
    global ARGS
    preload_and_rerun()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--elastic", required=True, help="the elastic program")
    ap.add_argument("--lib", required=True, help="libelastic.so")
    ap.add_argument("--test", help="run only the tests whose name contains this")
    ARGS = ap.parse_args()
    libelastic.load_library(ARGS.lib)
    passed = failed = 0
    tmp = tempfile.mkdtemp(prefix="elastic-serve-")
    env = None
    t_all = time.time()
    try:
        env = Env(tmp)
        for test in TESTS:
            if ARGS.test and ARGS.test not in test.__name__:
                continue
            t0 = time.time()
            try:
                test(env)
                passed += 1
                print(f"ok   {test.__name__} ({time.time() - t0:.1f} s)", flush=True)
            except Exception:  # noqa: BLE001 - every failure is reported
                failed += 1
                print(f"FAIL {test.__name__}", flush=True)
                traceback.print_exc()
                log = env.server.log()
                print("  server log tail:\n    " + "\n    ".join(
                    [l for l in log if " access " not in l][-10:] + log[-5:]))
    except Exception:  # noqa: BLE001
        failed += 1
        print("FAIL setup")
        traceback.print_exc()
    finally:
        if env is not None:
            rc = env.close()
            reports = env.server.sanitizer_reports()
            if rc != 0 or reports:
                failed += 1
                print(f"FAIL the shared server exited {rc}: {reports[:5]}")
                print("    " + "\n    ".join(env.server.log()[-15:]))
        if REPORTS:
            failed += 1
            print(f"FAIL sanitizer reports in the servers' logs: {REPORTS[:10]}")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"({time.time() - t_all:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
