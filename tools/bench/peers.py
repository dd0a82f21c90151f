#!/usr/bin/env python3
"""peers.py - libelastic's CPU backend against its peers on the CPU, in one
run, on the same weights and the same inputs: the fast PyTorch port
(libelastic.torch_fast: last-layer shortcut, SDPA, fused projections, GEMM
sub-key scores; --port exact for the exact port libelastic.torch) in eager
mode, under torch.compile, and exported to ONNX and run by ONNX Runtime.  All
with the same thread count.

For each case (default ELASTIC at B=256, n=200 and B=8, n=4096, SASRec at
B=8, n=4096) it checks that every peer's user vectors agree with libelastic's
(max relative error per user; above 1e-5: OUTPUT MISMATCH), then times the
forward pass to the user vectors (one warm-up, then interleaved rounds until
--rounds or --max-seconds per contender; median, quartiles, min, max) and
prints throughput ratios libelastic / peer.  A peer that cannot run
(torch.compile without a working compiler, an op the ONNX exporter lacks) is
reported with the reason.  Every setting (CPU, AVX2 / AVX-512, threads,
OMP_* / MALLOC_ARENA_MAX / LD_PRELOAD, allocator, torch threads, mkldnn, ORT
options, spinning) and the load average before and after each case are
printed and stored in the JSON.  docs/benchmarks/peers.md explains it all.

One command, estimated 5-6 minutes on 2 idle cores (not measured: the development
machine was never idle; three torch.compile warm-ups
included):

  python3 tools/bench/peers.py --lib build/libelastic.so --elastic build/elastic \
      [--threads 2] [--cases elastic:256x200,elastic:8x4096,sasrec:8x4096] \
      [--max-seconds 10] [--rounds 10] [--passive] [--seed 1] [--json]

The models are written by `elastic init` (I=3706, d=64, L=2, k=16, otherwise
the spec's defaults, max_len = the longest n of the model's cases) and loaded
by both sides.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --------------------------------------------------------------- libelastic
class Libelastic:
    """A session of libelastic on one backend, through the Python package
    (python/libelastic: the project's one binding)."""

    def __init__(self, lib_path, model_path, backend, threads):
        import libelastic
        libelastic.load_library(lib_path)
        self.model = libelastic.Model.load(model_path)
        self.session = libelastic.Session(self.model, backend=backend, threads=threads)
        self.device = self.session.backend

    def user_vectors(self, items, offsets, out):
        """items int32 [total], offsets int64 [B+1] (numpy); returns float32 [B, d]."""
        return self.session.user_vectors((items, offsets), out=out)

    def close(self):
        self.session.close()
        self.model.close()


# ------------------------------------------------------------------ timing
def time_interleaved(fns, max_seconds, max_rounds=10, settle=0.0):
    """fns: {name: callable}, each already warmed up.  Runs them in rounds,
    one run of each per round, so that a change in the machine's load hits
    every contender alike; stops after max_rounds or when the next round
    would take the timed runs past max_seconds (at least one round).
    Before each timed run the process sleeps `settle` seconds, so that the
    thread pool of the contender that ran before (OpenMP, ONNX Runtime)
    stops spinning and does not take cores from this one: each is timed as
    if it were alone in the process, as it would be in a deployment.
    Returns {name: sorted list of seconds}."""
    times = {name: [] for name in fns}
    spent, last_round = 0.0, 0.0
    for r in range(max_rounds):
        if r and spent + last_round > max_seconds:
            break
        last_round = 0.0
        for name, fn in fns.items():
            if settle > 0:
                time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            last_round += dt
        spent += last_round
    return {name: sorted(v) for name, v in times.items()}


def max_rel_err(a, b):
    """Max over users of |a_u - b_u|_2 / |b_u|_2."""
    import numpy as np
    num = np.linalg.norm(a.astype(np.float64) - b.astype(np.float64), axis=1)
    den = np.maximum(np.linalg.norm(b.astype(np.float64), axis=1), 1e-30)
    return float((num / den).max())


def export_onnx_exact(torch, module, items, lengths, path):
    """--port exact: exports the exact port's forward pass to ONNX (TorchScript exporter, static
    shape).  Two export-only substitutions, neither changes the result:
    the port's stable torch.sort (no ONNX lowering) becomes torch.topk over
    the whole axis, whose ONNX TopK puts equal values at the lower index
    first - the same tie rule; and the data-dependent empty-history check of
    the port's _embed (the inputs here have none) is left out."""
    class ExportForward(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, items, lengths):
            m, n = self.m, items.shape[1]
            valid = torch.arange(n).unsqueeze(0) < lengths.unsqueeze(1)
            X = m.item_emb[items] + m.pos_emb[:n]
            return m.final_norm(m._states(X, valid)[:, 0])

    def topk_sort(x, dim=-1, stable=False, descending=False):
        return torch.topk(x, x.shape[dim], dim=dim, largest=descending, sorted=True)

    wrapper = ExportForward(module).eval()
    sort = torch.sort
    torch.sort = topk_sort
    try:
        import contextlib
        import io
        import warnings
        with torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (items, lengths), path, input_names=["items", "lengths"],
                              output_names=["hu"], opset_version=17, dynamo=False)
    finally:
        torch.sort = sort


def settings(torch, ort, a):
    """Every setting that changes a figure, as printed and stored beside it."""
    cpu, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not cpu:
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    env = {k: os.environ.get(k, "") for k in
           ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_PROC_BIND",
            "MALLOC_ARENA_MAX", "LD_PRELOAD", "KMP_BLOCKTIME")}
    preload = env["LD_PRELOAD"]
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
        "threads": a.threads, "env": env,
        "allocator": ("jemalloc" if "jemalloc" in preload else
                      "tcmalloc" if "tcmalloc" in preload else "glibc malloc") +
                     (f" (MALLOC_ARENA_MAX={env['MALLOC_ARENA_MAX']})"
                      if env["MALLOC_ARENA_MAX"] else ""),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available() and
                             torch.backends.mkldnn.enabled),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onnxruntime": getattr(ort, "__version__", None),
        "ort_options": {"intra_op_num_threads": a.threads, "inter_op_num_threads": 1,
                        "session.intra_op.allow_spinning": "0" if a.passive else "1",
                        "graph_optimization_level": "ORT_ENABLE_ALL",
                        "execution_mode": "ORT_SEQUENTIAL"},
        "spinning": "passive: OMP_WAIT_POLICY=passive, ORT allow_spinning=0" if a.passive
                    else "default: OpenMP and ORT threads spin while waiting",
        "port": a.port, "python": platform.python_version(),
    }


def parse_cases(text):
    """'elastic:256x200,sasrec:8x4096' -> [(model, B, n)] (model defaults to elastic)."""
    cases = []
    for part in text.split(","):
        model, _, shape = part.rpartition(":")
        B, n = (int(v) for v in shape.split("x"))
        cases.append((model or "elastic", B, n))
    return cases


def start_torch(threads, passive):
    """Imports torch with `threads` threads (and passive waiting): the
    environment is set first, before torch and OpenMP start their pools; one
    interop thread; torch.compile's warnings quiet. Returns the module."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if passive:
        os.environ["OMP_WAIT_POLICY"] = "passive"
    import logging
    import torch
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    return torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libelastic.so"))
    ap.add_argument("--elastic", default=os.path.join(ROOT, "build", "elastic"),
                    help="the elastic program (writes the models with `elastic init`)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", "--shapes", dest="cases",
                    default="elastic:256x200,elastic:8x4096,sasrec:8x4096",
                    help="comma list of [MODEL:]BxN, MODEL elastic (default) or sasrec")
    ap.add_argument("--max-seconds", type=float, default=10.0,
                    help="timed seconds per contender and case, at most (default 10)")
    ap.add_argument("--rounds", type=int, default=10,
                    help="timed runs per contender and case, at most (default 10)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peers", default="eager,compile,onnx",
                    help="comma list of eager, compile, onnx")
    ap.add_argument("--port", choices=("fast", "exact"), default="fast",
                    help="fast: libelastic.torch_fast (the strong peer: last-layer shortcut, "
                         "SDPA, fused projections, GEMM sub-key scores; default); exact: "
                         "libelastic.torch, the port the golden tests use")
    ap.add_argument("--onnx-exporter", choices=("auto", "dynamo", "torchscript"),
                    default="auto", help="fast port: auto (dynamo at opset 23, whose SDPA is "
                    "the ONNX Attention op; TorchScript at opset 17 if that fails; default)")
    ap.add_argument("--passive", action="store_true",
                    help="threads that wait sleep instead of spinning, for every contender: "
                         "OMP_WAIT_POLICY=passive (libelastic, torch) and ORT "
                         "session.intra_op.allow_spinning=0 (for machines shared with other work)")
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds of sleep before each timed run, so that the previous "
                         "contender's spinning threads have gone idle (default 0.2; 0: none)")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    a = ap.parse_args()

    torch = start_torch(a.threads, a.passive)
    import numpy as np
    import libelastic.torch as et
    try:
        import onnxruntime as ort
        onnx_import_error = None
    except ImportError as exc:
        ort, onnx_import_error = None, f"onnxruntime not importable: {exc}"
    peers = a.peers.split(",")
    cases = parse_cases(a.cases)
    t_start = time.perf_counter()

    info = dict(settings(torch, ort, a), passive=a.passive, settle_s=a.settle, seed=a.seed,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""),
                machine=platform.processor() or platform.machine(),
                loadavg_start=os.getloadavg())
    log("settings: " + json.dumps(info))

    tmp = tempfile.mkdtemp(prefix="elastic-peers-")
    models = {}
    for kind in sorted({m for m, _, _ in cases}):
        max_n = max(200, max(n for m, _, n in cases if m == kind))
        path = os.path.join(tmp, f"{kind}.safetensors")
        subprocess.run([a.elastic, "init", f"model={kind}", "num_items=3706", "hidden=64",
                        "layers=2", "experts=16", f"max_len={max_n}", "--seed", str(a.seed),
                        "-o", path], check=True, stdout=subprocess.DEVNULL)
        lib = Libelastic(a.lib, path, "cpu", a.threads)
        module = et.load(path, fast=a.port == "fast").eval()
        compiled, compile_error = None, None
        if "compile" in peers:
            try:
                compiled = torch.compile(module)
            except Exception as exc:  # noqa: BLE001  (reported, not hidden)
                compile_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        models[kind] = (lib, module, compiled, compile_error)
    info["device"] = models[cases[0][0]][0].device

    results = []
    rng = np.random.default_rng(a.seed)
    for kind, B, n in cases:
        lib, module, compiled, compile_error = models[kind]
        I, d = module.config["num_items"], module.config["hidden"]
        items = rng.integers(1, I + 1, size=(B, n), dtype=np.int64)   # time order, oldest first
        flat = np.ascontiguousarray(items.reshape(-1).astype(np.int32))
        offsets = np.arange(0, B * n + 1, n, dtype=np.int64)
        t_items, t_len = et.batch(items.tolist(), module.config["max_len"])
        out = np.zeros((B, d), dtype=np.float32)
        row = {"model": kind, "batch": B, "n": n, "loadavg_before": os.getloadavg(),
               "peers": {}}
        log(f"\n{kind} B={B} n={n}  (load average {row['loadavg_before'][0]:.2f})")

        # Warm-up, output check and (ONNX) export of every contender first.
        fns = {"libelastic": lambda: lib.user_vectors(flat, offsets, out)}
        t0 = time.perf_counter()
        fns["libelastic"]()
        row["peers"]["libelastic"] = {"state": "ran", "warmup_s": time.perf_counter() - t0,
                                      "device": lib.device}
        ref = out.copy()

        def prepare(name, fn, extra=None):
            try:
                t0 = time.perf_counter()
                hu = fn()
                warm = time.perf_counter() - t0
                hu = hu.numpy() if hasattr(hu, "numpy") else hu
                err = max_rel_err(hu, ref)
                row["peers"][name] = {"state": "ran", "warmup_s": warm, "max_rel_err": err,
                                      "output_ok": err < 1e-5, **(extra or {})}
                fns[name] = fn
            except Exception as exc:  # noqa: BLE001  (reported, not hidden)
                fail(name, exc)

        def fail(name, exc):
            msg = exc if isinstance(exc, str) else \
                f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            row["peers"][name] = {"state": "failed", "error": msg}
            if os.environ.get("PEERS_TRACEBACK") and not isinstance(exc, str):
                traceback.print_exc()

        def no_grad(f):
            def g():
                with torch.inference_mode():
                    return f()
            return g

        if "eager" in peers:
            prepare("torch eager", no_grad(lambda: module(t_items, t_len)))
        if "compile" in peers:
            if compiled is None:
                fail("torch.compile", compile_error)
            else:
                prepare("torch.compile", no_grad(lambda: compiled(t_items, t_len)))
        if "onnx" in peers:
            if ort is None:
                fail("onnxruntime", onnx_import_error)
            else:
                try:
                    path = os.path.join(tmp, f"{kind}_{B}x{n}.onnx")
                    t0 = time.perf_counter()
                    if a.port == "fast":
                        from libelastic.torch_fast import export_onnx
                        exporter = export_onnx(module, t_items, t_len, path, a.onnx_exporter)
                    else:
                        export_onnx_exact(torch, module, t_items, t_len, path)
                        exporter = "TorchScript exporter, opset 17"
                    export_s = time.perf_counter() - t0
                    so = ort.SessionOptions()
                    so.intra_op_num_threads = a.threads
                    so.inter_op_num_threads = 1
                    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                    so.add_session_config_entry("session.intra_op.allow_spinning",
                                                "0" if a.passive else "1")
                    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                    feeds = {"items": t_items.numpy(), "lengths": t_len.numpy()}
                    prepare("onnxruntime", lambda: sess.run(None, feeds)[0],
                            {"export_s": export_s, "exporter": exporter})
                except Exception as exc:  # noqa: BLE001
                    fail("onnxruntime", exc)

        times = time_interleaved(fns, a.max_seconds * len(fns), max_rounds=a.rounds,
                                 settle=a.settle)
        row["loadavg_after"] = os.getloadavg()
        for name, p in row["peers"].items():
            if p["state"] != "ran":
                log(f"  {name:18s} failed: {p['error']}")
                continue
            t = times[name]
            q1, q3 = (statistics.quantiles(t, n=4, method="inclusive")[0::2]
                      if len(t) > 1 else (t[0], t[0]))
            p.update(median_s=statistics.median(t), min_s=t[0], max_s=t[-1], q1_s=q1, q3_s=q3,
                     reps=len(t), users_per_s=B / statistics.median(t))
            err = ""
            if "max_rel_err" in p:
                err = f"  max rel err vs libelastic {p['max_rel_err']:.2e}" + \
                      ("" if p["output_ok"] else "  OUTPUT MISMATCH (> 1e-5)")
            log(f"  {name:18s} {p['median_s'] * 1e3:10.2f} ms  {p['users_per_s']:10.0f} users/s  "
                f"(median of {len(t)}, quartiles {q1 * 1e3:.2f}..{q3 * 1e3:.2f} ms, "
                f"min {t[0] * 1e3:.2f}, max {t[-1] * 1e3:.2f}, warm-up {p['warmup_s']:.1f} s)"
                f"{err}" + (f"  [{p['exporter']}]" if "exporter" in p else ""))
        base = row["peers"]["libelastic"]["users_per_s"]
        for name, p in row["peers"].items():
            if name != "libelastic" and p["state"] == "ran":
                p["ratio_libelastic_over_peer"] = base / p["users_per_s"]
                log(f"  throughput ratio libelastic / {name}: "
                    f"{p['ratio_libelastic_over_peer']:.2f}")
        log(f"  load average after: {row['loadavg_after'][0]:.2f}")
        results.append(row)
    for lib, _, _, _ in models.values():
        lib.close()
    info["loadavg_end"] = os.getloadavg()
    info["run_s"] = time.perf_counter() - t_start
    log(f"\nrun time {info['run_s']:.0f} s")
    if a.json:
        json.dump({"tool": "peers.py", "info": info, "results": results}, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
