#!/usr/bin/env python3
"""python_overhead.py - the Python binding's overhead: Session.recommend against
the same call from C (elastic_session_recommend in elastic-recommend-timer), in
the same run, on the same model, histories, thread count and library.

The C side runs as a server process (elastic-recommend-timer --serve) that
makes one timed call per request; this process and the server take turns, one
call each in rotating order with a short pause before every call, so a change
in the machine's load hits both alike.  The overhead is given three ways: from
the medians, from the minima, and as the median of the paired ratios (each
Python call against the C call next to it).  Python is timed with three inputs: a CSR pair of
numpy arrays (no conversion), a 2-D array [B, n], and a list of lists (the
conversion to CSR included).  Prints a table and, with --json, a JSON object.

  python3 tools/bench/python_overhead.py --lib build/libelastic.so \
      --timer build/elastic-recommend-timer [--batch 256] [--len 200] [--threads 2] \
      [--calls 40] [--passive] [--json]

The model: `Model.init_random` with I = 3706, d = 64, L = 2, k = 16, N = 200 (seed 1), as
tools/bench/peers.py uses; histories random from --seed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))


def cpu_info() -> Dict[str, object]:
    """CPU model, the AVX2 / AVX-512 flags and the load average."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "cores": os.cpu_count(), "loadavg": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libelastic.so"))
    ap.add_argument("--timer", default=os.path.join(ROOT, "build", "elastic-recommend-timer"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--len", type=int, default=200)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calls", type=int, default=40, help="timed calls of each contender")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--passive", action="store_true",
                    help="OMP_WAIT_POLICY=passive for both sides (idle threads sleep)")
    ap.add_argument("--settle", type=float, default=0.1,
                    help="seconds of sleep before every call (the other side's idle threads "
                         "stop spinning)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.passive:
        os.environ["OMP_WAIT_POLICY"] = "passive"
    import numpy as np
    import libelastic
    libelastic.load_library(a.lib)

    tmp = tempfile.mkdtemp(prefix="elastic-pyoverhead-")
    model_path, hist_path = os.path.join(tmp, "m.st"), os.path.join(tmp, "h.txt")
    config = {"num_items": 3706, "hidden": 64, "layers": 2, "experts": 16,
              "max_len": max(200, a.len)}
    libelastic.Model.init_random(config, seed=1).save(model_path)
    rng = np.random.default_rng(a.seed)
    hist = rng.integers(1, 3707, size=(a.batch, a.len), dtype=np.int64)
    with open(hist_path, "w") as f:
        f.write("\n".join(" ".join(map(str, row)) for row in hist) + "\n")
    csr = (np.ascontiguousarray(hist.reshape(-1), dtype=np.int32),
           np.arange(0, a.batch * a.len + 1, a.len, dtype=np.int64))
    lists = hist.tolist()
    inputs = {"python, CSR numpy": csr, "python, 2-D array": hist, "python, list of lists": lists}

    model = libelastic.Model.load(model_path)
    session = libelastic.Session(model, backend="cpu", threads=a.threads)
    want_ids, _ = session.recommend(csr, a.top)
    for name, x in inputs.items():                  # every input gives the same result
        ids, _ = session.recommend(x, a.top)
        assert np.array_equal(ids, want_ids), name
    cname = "C (elastic_session_recommend)"
    times: Dict[str, List[float]] = {cname: [], **{n: [] for n in inputs}}
    info = cpu_info()
    info.update(backend=session.backend, threads=a.threads, batch=a.batch, n=a.len, k=a.top,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(default)"),
                python=platform.python_version(), numpy=np.__version__,
                library=os.path.relpath(libelastic.library_path(), ROOT), calls=a.calls, settle_s=a.settle,
                method="paired: the C server and this process take turns, one call each, "
                       "in rotating order, with a pause before every call")
    server = subprocess.Popen([a.timer, "--model", model_path, "--histories", hist_path,
                               "--top", str(a.top), "--threads", str(a.threads), "--serve"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = server.stdout.readline().split()          # type: ignore[union-attr]
    assert ready[0] == "ready" and [int(v) for v in ready[1:]] == want_ids[0, :2].tolist(), \
        ready                                          # the same result from C

    def c_call() -> float:
        server.stdin.write("\n")                      # type: ignore[union-attr]
        server.stdin.flush()                          # type: ignore[union-attr]
        return float(server.stdout.readline())        # type: ignore[union-attr]

    def py_call(x) -> float:
        t0 = time.perf_counter()
        session.recommend(x, a.top)
        return time.perf_counter() - t0

    # The bare ctypes call on prepared pointers, no package code: what running
    # inside a Python process costs by itself, apart from the binding.
    from libelastic import _capi
    raw_ids = np.zeros((a.batch, a.top), dtype=np.int32)
    raw_sc = np.zeros((a.batch, a.top), dtype=np.float32)
    raw_args = (session._h(), _capi.ptr(csr[0], _capi.c_int32), _capi.ptr(csr[1], _capi.c_int64),
                a.batch, a.top, 1, _capi.ptr(raw_ids, _capi.c_int32),
                _capi.ptr(raw_sc, _capi.c_float))
    raw_fn = _capi.lib().elastic_session_recommend

    def raw_call() -> float:
        t0 = time.perf_counter()
        raw_fn(*raw_args)
        return time.perf_counter() - t0

    rawname = "python, bare ctypes call"
    times[rawname] = []
    contenders = [(cname, c_call), (rawname, raw_call)] + \
        [(n, (lambda x=x: py_call(x))) for n, x in inputs.items()]
    for x in inputs.values():                          # warm-up
        session.recommend(x, a.top)
    for i in range(a.calls):
        for j in range(len(contenders)):
            name, fn = contenders[(i + j) % len(contenders)]
            time.sleep(a.settle)
            times[name].append(fn())
    server.stdin.close()                               # type: ignore[union-attr]
    server.wait()
    conv = []
    for _ in range(a.calls):
        t0 = time.perf_counter()
        libelastic.as_csr(lists)
        conv.append(time.perf_counter() - t0)
    info["loadavg_after"] = os.getloadavg()
    base = statistics.median(times["C (elastic_session_recommend)"])
    rows = []
    print(f"Session.recommend vs C, B={a.batch} n={a.len} K={a.top}, {info['backend']}, "
          f"{a.threads} threads, OMP_WAIT_POLICY={info['omp_wait_policy']}; {info['cpu']} "
          f"(AVX2 {info['avx2']}, AVX-512 {info['avx512f']}); load {info['loadavg']}",
          file=sys.stderr)
    for name, t in times.items():
        med = statistics.median(t)
        paired = statistics.median(p / c for p, c in zip(t, times[cname]))
        row = {"name": name, "median_ms": med * 1e3, "min_ms": min(t) * 1e3,
               "max_ms": max(t) * 1e3, "calls": len(t), "overhead_pct": (med / base - 1) * 100,
               "overhead_min_pct": (min(t) / min(times[cname]) - 1) * 100,
               "overhead_paired_pct": (paired - 1) * 100}
        rows.append(row)
        print(f"  {name:30s} median {row['median_ms']:7.2f} ms  min {row['min_ms']:7.2f}  "
              f"max {row['max_ms']:7.2f}  ({len(t)} calls)  overhead: medians "
              f"{row['overhead_pct']:+5.2f} %, minima {row['overhead_min_pct']:+5.2f} %, "
              f"paired {row['overhead_paired_pct']:+5.2f} %", file=sys.stderr)
    info["list_to_csr_ms"] = statistics.median(conv) * 1e3
    print(f"  (list of lists -> CSR alone: {info['list_to_csr_ms']:.2f} ms)", file=sys.stderr)
    if a.json:
        json.dump({"tool": "python_overhead.py", "info": info, "results": rows}, sys.stdout,
                  indent=2)
        print()
    session.close()
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
