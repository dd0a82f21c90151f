#!/usr/bin/env python3
"""python_overhead.py - the Python binding's overhead: Session.recommend against
the same call from C (elastic_session_recommend in elastic-recommend-timer), in
the same run, on the same model, histories, thread count and library.

Rounds alternate the two (C in a subprocess, then Python in this process), so a
change in the machine's load hits both alike; each round times `--reps` calls
after two warm-up calls.  Python is timed with three inputs: a CSR pair of
numpy arrays (no conversion), a 2-D array [B, n], and a list of lists (the
conversion to CSR included).  Prints a table and, with --json, a JSON object.

  python3 tools/bench/python_overhead.py --lib build/libelastic.so \
      --timer build/elastic-recommend-timer [--batch 256] [--len 200] [--threads 2] \
      [--rounds 5] [--reps 10] [--passive] [--json]

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
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--passive", action="store_true",
                    help="OMP_WAIT_POLICY=passive for both sides (idle threads sleep)")
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds of sleep between the two sides (idle threads stop spinning)")
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
    times: Dict[str, List[float]] = {"C (elastic_session_recommend)": [], **{n: [] for n in inputs}}
    info = cpu_info()
    info.update(backend=session.backend, threads=a.threads, batch=a.batch, n=a.len, k=a.top,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(default)"),
                python=platform.python_version(), numpy=np.__version__,
                library=libelastic.library_path(), rounds=a.rounds, reps=a.reps)
    for r in range(a.rounds):
        out = subprocess.run([a.timer, "--model", model_path, "--histories", hist_path,
                              "--top", str(a.top), "--threads", str(a.threads),
                              "--reps", str(a.reps)], check=True, capture_output=True,
                             text=True).stdout
        c = json.loads(out)
        assert c["first_ids"] == want_ids[0, :2].tolist(), c["first_ids"]   # same result
        times["C (elastic_session_recommend)"] += c["seconds"]
        time.sleep(a.settle)
        for x in inputs.values():                   # warm-up
            session.recommend(x, a.top)
        for _ in range(a.reps):
            for name, x in inputs.items():
                t0 = time.perf_counter()
                session.recommend(x, a.top)
                times[name].append(time.perf_counter() - t0)
        time.sleep(a.settle)
    conv = []
    for _ in range(a.reps):
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
        row = {"name": name, "median_ms": med * 1e3, "min_ms": min(t) * 1e3,
               "max_ms": max(t) * 1e3, "calls": len(t), "overhead_pct": (med / base - 1) * 100}
        rows.append(row)
        print(f"  {name:32s} median {row['median_ms']:8.2f} ms  min {row['min_ms']:8.2f}  "
              f"max {row['max_ms']:8.2f}  ({len(t)} calls)  overhead "
              f"{row['overhead_pct']:+6.2f} %", file=sys.stderr)
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
