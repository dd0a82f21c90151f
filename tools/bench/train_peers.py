#!/usr/bin/env python3
"""train_peers.py - training throughput of libelastic's C trainer against the
strong PyTorch port (libelastic.torch_fast: SDPA, fused q/k/v, GEMM sub-key
scores, Adam with set_to_none, torch.compile tried) on the same objective, the
same batches, the same model size, optimiser and thread count, in one run.

For each model (SASRec with objective `causal`, ELASTIC with `cloze`, spec 5):
  1. a model is drawn by the C library (spec 5 initialisation) and copied into
     torch (libelastic.torch.to_torch(fast=True)): both start from the same weights;
  2. --steps + --warmup batches of --batch users are drawn from the data (users
     with >= 2 training items; causal: the N+1 newest training items, inputs the
     older N, each position scored against the next item; cloze: the N newest,
     each position masked with --mask-prob, at least one, or with --last-prob
     only the newest; the masks are drawn here with numpy, so both sides get the
     identical batches);
  3. check: the loss of the first batch without dropout, C trainer
     (Trainer.gradient_positions) against torch (eval mode); they must agree
     within 1e-4 relative, else the timing is marked OUTPUT MISMATCH;
  4. timing: warm-up steps, then the steps of the contenders interleaved (one
     step each in turn, so load changes hit all alike), each a full training
     step (forward, backward, Adam, dropout --dropout); medians and quartiles of
     the step times; examples/s = batch / step time, targets/s = scored
     positions / step time;
  5. with --cli, `elastic train --objective O --epochs 1` on the same data and
     threads: the examples/s and targets/s it prints for its epoch (its own
     batching: users grouped by length, its own masks), beside the above.

One command, estimated 5-6 minutes on 2 idle cores at the defaults (not measured:
the development machine was never idle; each compile
warm-up takes a minute or two of it):

  python3 tools/bench/train_peers.py --lib build/libelastic.so --elastic build/elastic \
      --data ../shared/data/ml-1m.txt --threads 2 [--steps 10] [--warmup 3] \
      [--models sasrec,elastic] [--peers eager,compile] [--cli] [--passive] [--json]

Every setting (threads, OMP_NUM_THREADS, allocator, torch threads, mkldnn, CPU,
AVX2/AVX-512, load average before and after each model) is printed and stored.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

OBJECTIVE = {"sasrec": "causal", "elastic": "cloze"}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def make_batches(np, train, objective, N, I, count, batch, mask_prob, last_prob, rng):
    """count batches of `batch` users: (inputs, targets) lists, oldest first."""
    users = [u for u, s in enumerate(train) if len(s) >= 2]
    out = []
    for _ in range(count):
        inputs, targets = [], []
        for u in rng.choice(users, size=batch, replace=False):
            s = train[u]
            if objective == "causal":
                w = s[-(N + 1):]
                inputs.append([int(v) for v in w[:-1]])
                targets.append([int(v) for v in w[1:]])
            else:
                w = s[-N:]
                n = len(w)
                if rng.random() < last_prob:
                    m = np.zeros(n, dtype=bool)
                    m[-1] = True
                else:
                    m = rng.random(n) < mask_prob
                    if not m.any():
                        m[rng.integers(n)] = True
                inputs.append([I + 1 if k else int(v) for v, k in zip(w, m)])
                targets.append([int(v) if k else 0 for v, k in zip(w, m)])
        out.append((inputs, targets))
    return out


def torch_batch(torch, inputs, targets):
    """Recency order (column 0 newest), padded: items, lengths, targets."""
    n = max(len(s) for s in inputs)
    items = torch.zeros(len(inputs), n, dtype=torch.long)
    tg = torch.zeros_like(items)
    for b, (s, t) in enumerate(zip(inputs, targets)):
        items[b, :len(s)] = torch.tensor(s[::-1])
        tg[b, :len(t)] = torch.tensor(t[::-1])
    return items, torch.tensor([len(s) for s in inputs]), tg


def run_cli(a, kind, tmp):
    """`elastic train` for one epoch: its printed examples/s and targets/s."""
    out = os.path.join(tmp, f"cli_{kind}.safetensors")
    cmd = [a.elastic, "train", "--data", a.data, "-o", out, f"model={kind}", "hidden=64",
           "layers=2", f"max_len={a.max_len}", "--objective", OBJECTIVE[kind], "--epochs", "1",
           "--batch", str(a.batch), "--threads", str(a.threads), "--eval-users", "200",
           "--mask-prob", str(a.mask_prob), "--last-prob", str(a.last_prob),
           "--dropout", str(a.dropout), "--seed", str(a.seed), "--quiet"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    res = {"command": " ".join(cmd), "wall_s": time.perf_counter() - t0}
    m = re.search(r"epoch 1: loss ([0-9.]+), ([0-9.]+) s \(([0-9.]+) examples/s, "
                  r"([0-9.]+) targets/s\)", p.stdout)
    if p.returncode or not m:
        res.update(state="failed", error=(p.stderr or p.stdout).strip()[-300:])
    else:
        res.update(state="ran", loss=float(m.group(1)), epoch_s=float(m.group(2)),
                   examples_per_s=float(m.group(3)), targets_per_s=float(m.group(4)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libelastic.so"))
    ap.add_argument("--elastic", default=os.path.join(ROOT, "build", "elastic"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "ml-1m.txt"),
                    help="interaction log, read by path (never copied; default: MovieLens-1M "
                         "beside the repository, ../shared/data/ml-1m.txt)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="sasrec,elastic")
    ap.add_argument("--peers", default="eager,compile", help="comma list of eager, compile")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per contender")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--mask-prob", type=float, default=0.2)
    ap.add_argument("--last-prob", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cli", action="store_true",
                    help="also one epoch of `elastic train` (its own batching and masks)")
    ap.add_argument("--passive", action="store_true",
                    help="OMP_WAIT_POLICY=passive for both (machines shared with other work)")
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table on stderr)")
    a = ap.parse_args()

    from peers import settings, start_torch
    torch = start_torch(a.threads, a.passive)
    import numpy as np
    import libelastic
    from libelastic import _capi
    import libelastic.torch as et
    libelastic.load_library(a.lib)
    t_start = time.perf_counter()
    a.port = "fast"
    info = dict(settings(torch, None, a), passive=a.passive, steps=a.steps, warmup=a.warmup,
                batch=a.batch, max_len=a.max_len, mask_prob=a.mask_prob,
                last_prob=a.last_prob, dropout=a.dropout, seed=a.seed, data=a.data,
                optimizer="Adam lr 1e-3 betas (0.9, 0.98) eps 1e-8 (spec 5)",
                loadavg_start=os.getloadavg())
    del info["ort_options"], info["onnxruntime"]
    log("settings: " + json.dumps(info))

    ds = libelastic.Dataset.load(a.data)
    I = ds.num_items
    train = [ds.train_items(u) for u in range(ds.num_users)]
    log(f"data: {a.data}: {ds.num_users} users, {I} items")
    tmp = tempfile.mkdtemp(prefix="elastic-train-peers-")
    results = []
    for kind in a.models.split(","):
        objective = OBJECTIVE[kind]
        rng = np.random.default_rng(a.seed)
        config = {"model": kind, "num_items": I, "hidden": 64, "layers": 2, "heads": 2,
                  "max_len": a.max_len, "mask_token": 1 if objective == "cloze" else 0}
        batches = make_batches(np, train, objective, a.max_len, I, a.warmup + a.steps,
                               a.batch, a.mask_prob, a.last_prob, rng)
        row = {"model": kind, "objective": objective, "config": config,
               "loadavg_before": os.getloadavg(), "contenders": {}}
        log(f"\n{kind}, objective {objective}: batch {a.batch}, N {a.max_len}, "
            f"load average {row['loadavg_before'][0]:.2f}")

        # Same weights on both sides.
        m = libelastic.Model.init_random(config, seed=a.seed)
        module = et.to_torch(m, fast=True, dropout=a.dropout)
        tr = libelastic.Trainer(m, objective=objective, dropout=a.dropout, batch_size=a.batch,
                                threads=a.threads, seed=a.seed, mask_prob=a.mask_prob,
                                last_prob=a.last_prob)

        # 1. the same loss on the first batch (no dropout)
        inputs, targets = batches[0]
        c_loss, _ = tr.gradient_positions(inputs, targets)
        tb = [torch_batch(torch, i, t) for i, t in batches]
        module.eval()
        with torch.no_grad():
            t_loss = float(module.loss_positions(*tb[0]))
        rel = abs(t_loss - c_loss) / abs(c_loss)
        row["loss_check"] = {"c_trainer": c_loss, "torch": t_loss, "rel_diff": rel,
                             "ok": rel < 1e-4}
        log(f"  first-batch loss (no dropout): C {c_loss:.6f}  torch {t_loss:.6f}  "
            f"rel diff {rel:.1e}" + ("" if rel < 1e-4 else "  OUTPUT MISMATCH"))
        module.train()

        # 2. the contenders: one full training step each
        csr = [tr._positions(i, t) for i, t in batches]
        loss_c = _capi.c_double()

        def c_step(j):
            x, off, t = csr[j]
            _capi.check(tr._lib.elastic_trainer_step_positions(
                tr._h(), _capi.ptr(x, _capi.c_int32), _capi.ptr(off, _capi.c_int64),
                _capi.ptr(t, _capi.c_int32), off.size - 1, loss_c), "step_positions")
            return loss_c.value

        steps = {"libelastic (C trainer)": c_step}
        modules = {}
        for peer in a.peers.split(","):
            name = {"eager": "torch eager", "compile": "torch.compile"}[peer]
            mod = module if peer == "eager" else et.to_torch(m, fast=True, dropout=a.dropout)
            mod.train()
            try:
                opt = torch.optim.Adam(mod.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8,
                                       fused=True)
                fused = True
            except (RuntimeError, TypeError):
                opt = torch.optim.Adam(mod.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-8)
                fused = False
            fn = mod.loss_positions if peer == "eager" else torch.compile(mod.loss_positions)

            def t_step(j, fn=fn, opt=opt):
                opt.zero_grad(set_to_none=True)
                loss = fn(*tb[j])
                loss.backward()
                opt.step()
                return float(loss.detach())

            steps[name] = t_step
            modules[name] = {"adam_fused": fused}
        times = {name: [] for name in steps}
        for name in list(steps):
            row["contenders"][name] = {"state": "ran", **modules.get(name, {})}
            t0 = time.perf_counter()
            try:
                for j in range(a.warmup):
                    steps[name](j)
            except Exception as exc:  # noqa: BLE001  (reported, not hidden)
                row["contenders"][name] = {"state": "failed", "error":
                                           f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
                if os.environ.get("PEERS_TRACEBACK"):
                    traceback.print_exc()
                del steps[name]
                continue
            row["contenders"][name]["warmup_s"] = time.perf_counter() - t0
        for j in range(a.warmup, a.warmup + a.steps):
            for name, fn in steps.items():
                t0 = time.perf_counter()
                fn(j)
                times[name].append(time.perf_counter() - t0)
        row["loadavg_after"] = os.getloadavg()
        n_targets = [sum(1 for t in tg for v in t if v > 0) for _, tg in batches[a.warmup:]]
        tps = statistics.median(n_targets)
        row["targets_per_batch_median"] = tps
        for name, p in row["contenders"].items():
            if p["state"] != "ran":
                log(f"  {name:24s} failed: {p['error']}")
                continue
            t = sorted(times[name])
            q1, q3 = (statistics.quantiles(t, n=4, method="inclusive")[0::2]
                      if len(t) > 1 else (t[0], t[0]))
            med = statistics.median(t)
            # targets/s: the scored positions of the timed batches over their time
            p.update(median_s=med, q1_s=q1, q3_s=q3, min_s=t[0], max_s=t[-1], steps=len(t),
                     examples_per_s=a.batch / med,
                     targets_per_s=sum(n_targets) / sum(times[name]))
            log(f"  {name:24s} {med * 1e3:9.1f} ms/step  {p['examples_per_s']:8.1f} examples/s  "
                f"{p['targets_per_s']:9.0f} targets/s  (median of {len(t)}, quartiles "
                f"{q1 * 1e3:.1f}..{q3 * 1e3:.1f} ms, warm-up {p['warmup_s']:.1f} s)")
        base = row["contenders"]["libelastic (C trainer)"]
        for name, p in row["contenders"].items():
            if name.startswith("torch") and p["state"] == "ran":
                p["ratio_c_over_peer_targets_per_s"] = base["targets_per_s"] / p["targets_per_s"]
                log(f"  targets/s ratio C trainer / {name}: "
                    f"{p['ratio_c_over_peer_targets_per_s']:.2f}")
        log(f"  load average after: {row['loadavg_after'][0]:.2f}")
        tr.close()
        m.close()
        if a.cli:
            row["elastic_train_cli"] = cli = run_cli(a, kind, tmp)
            if cli["state"] == "ran":
                log(f"  elastic train, 1 epoch: {cli['examples_per_s']:.0f} examples/s, "
                    f"{cli['targets_per_s']:.0f} targets/s (its own batching; "
                    f"{cli['wall_s']:.0f} s with validation on 200 users)")
            else:
                log(f"  elastic train failed: {cli['error']}")
        results.append(row)
    info["loadavg_end"] = os.getloadavg()
    info["run_s"] = time.perf_counter() - t_start
    log(f"\nrun time {info['run_s']:.0f} s")
    if a.json:
        json.dump({"tool": "train_peers.py", "info": info, "results": results}, sys.stdout,
                  indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
