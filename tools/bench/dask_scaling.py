#!/usr/bin/env python3
"""dask_scaling.py - libelastic.dask on a LocalCluster: 1 worker x 1 thread against
2 workers x 1 thread on a synthetic log (`elastic synth`), the time to read,
group, score and write measured apart, users/s, and the output checked against
the single-process command line (`elastic recommend`) and across the runs.

  python3 tools/bench/dask_scaling.py --elastic build/elastic --lib build/libelastic.so \
      [--users 1000000] [--workers 1,2] [--partitions 8] [--json] [--keep DIR]

The log: `elastic synth --users U --items 1000 --min-len 5 --max-len 20 --seed 1`, with
timestamp = the event's position in the user's sequence, written as a Parquet
dataset of 8 files (not timed).  The model: `Model.init_random` with I = 1000,
d = 32, k = 8, m = 32, N = 50 (seed 1), no item map.  Each phase is persisted and
waited for before the next starts: read (dd.read_parquet), group
(libelastic.dask.group_histories), score (libelastic.dask.score, K = 10, batches
of 256, 1 CPU thread per session), write (to_parquet).  Before each run, the
same scoring without Dask in 1 process and then in 2 processes at once shows
the speed-up the machine allows at that moment (a shared machine may not give
2 free cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

from python_overhead import cpu_info  # noqa: E402

MODEL = {"num_items": 1000, "hidden": 32, "experts": 8, "mem_subkeys": 32, "max_len": 50}


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def prepare(a: argparse.Namespace, tmp: str) -> Dict[str, Any]:
    """The synthetic log as Parquet, the CLI's histories file, the model."""
    import numpy as np
    import pandas as pd
    import libelastic
    t0 = time.time()
    pairs = os.path.join(tmp, "synth.txt")
    subprocess.run([a.elastic, "synth", "--users", str(a.users), "--items", "1000",
                    "--min-len", "5", "--max-len", "20", "--seed", "1", "-o", pairs],
                   check=True, capture_output=True)
    frame = pd.read_csv(pairs, sep=" ", header=None, names=["user", "item"], dtype=np.int64)
    users = frame["user"].to_numpy()
    start = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
    lengths = np.diff(np.concatenate([start, [len(users)]]))
    frame["timestamp"] = np.arange(len(users)) - np.repeat(start, lengths)
    parquet = os.path.join(tmp, "log.parquet")
    os.makedirs(parquet)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), 8)):
        frame.iloc[part].to_parquet(os.path.join(parquet, f"part-{i}.parquet"), index=False)
    items = frame["item"].to_numpy()
    hist = os.path.join(tmp, "histories.txt")
    with open(hist, "w") as f:
        for s, n in zip(start, lengths):
            f.write(" ".join(map(str, items[s:s + n])) + "\n")
    model = os.path.join(tmp, "model.st")
    libelastic.Model.init_random(MODEL, seed=1).save(model)
    info = {"events": int(len(frame)), "users": int(len(start)), "prepare_s": time.time() - t0}
    log(f"prepared {info['users']} users, {info['events']} events in {info['prepare_s']:.1f} s")
    return {"parquet": parquet, "histories": hist, "model": model, "info": info,
            "users": users[start]}


def score_slice(npz: str, model: str, lo: int, hi: int) -> None:
    """Child process of ceiling(): scores users lo..hi of the CSR file with one
    Session (1 thread) and prints its start and end times (no Dask)."""
    import numpy as np
    import libelastic
    data = np.load(npz)
    items, offsets = data["items"], data["offsets"]
    with libelastic.Session(libelastic.Model.load(model), backend="cpu", threads=1) as s:
        t0 = time.time()
        for first in range(lo, hi, 256):
            last = min(hi, first + 256)
            a, b = offsets[first], offsets[last]
            s.recommend((items[a:b], offsets[first:last + 1] - a), 10)
        print(json.dumps({"start": t0, "end": time.time()}))


def ceiling(paths: Dict[str, Any], users: int) -> Dict[str, Any]:
    """What this machine gives right now without Dask: the same scoring in 1 process,
    then split over 2 processes running at once (1 thread each); the ratio bounds
    any 2-worker speed-up."""
    import numpy as np
    lengths = []
    items = []
    with open(paths["histories"]) as f:
        for _, line in zip(range(users), f):
            row = [int(v) for v in line.split()]
            items += row
            lengths.append(len(row))
    npz = os.path.join(os.path.dirname(paths["histories"]), "ceiling.npz")
    np.savez(npz, items=np.array(items, dtype=np.int32),
             offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    n = len(lengths)
    out: Dict[str, Any] = {"users": n}
    for procs in (1, 2):
        cuts = [n * i // procs for i in range(procs + 1)]
        children = [subprocess.Popen([sys.executable, __file__, "--score-slice", npz,
                                      paths["model"], str(cuts[i]), str(cuts[i + 1])],
                                     stdout=subprocess.PIPE, text=True) for i in range(procs)]
        spans = [json.loads(c.communicate()[0]) for c in children]
        out[f"seconds_{procs}"] = max(s["end"] for s in spans) - min(s["start"] for s in spans)
    out["speedup"] = out["seconds_1"] / out["seconds_2"]
    log(f"no Dask, {n} users: 1 process {out['seconds_1']:.1f} s, 2 processes at once "
        f"{out['seconds_2']:.1f} s: the machine allows a {out['speedup']:.2f}x speed-up now")
    return out


def run(workers: int, a: argparse.Namespace, paths: Dict[str, Any], out: str) -> Dict[str, Any]:
    import dask.dataframe as dd
    from dask.distributed import Client, LocalCluster, wait
    import libelastic.dask as led
    env = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    row: Dict[str, Any] = {"workers": workers, "threads_per_worker": 1}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("libelastic"))        # imports, not timed
        t0 = time.time()
        log_df = dd.read_parquet(paths["parquet"]).persist()
        wait(log_df)
        t1 = time.time()
        grouped = led.group_histories(log_df, npartitions=a.partitions).persist()
        wait(grouped)
        t2 = time.time()
        recs = led.score(grouped, paths["model"], k=10, threads=1).persist()
        wait(recs)
        t3 = time.time()
        recs.to_parquet(out)
        t4 = time.time()
        stats = list(client.run(led.worker_stats).values())
        row["model_loads_per_worker"] = sorted(st["model_loads"] for st in stats)
        row["per_worker"] = stats
    row.update(read_s=t1 - t0, group_s=t2 - t1, score_s=t3 - t2, write_s=t4 - t3,
               total_s=t4 - t0)
    row["users_per_s"] = a.users / row["total_s"]
    row["score_users_per_s"] = a.users / row["score_s"]
    log(f"{workers} worker(s) x 1 thread: read {row['read_s']:.1f} s, group "
        f"{row['group_s']:.1f} s, score {row['score_s']:.1f} s, write {row['write_s']:.1f} s, "
        f"total {row['total_s']:.1f} s: {row['users_per_s']:.0f} users/s "
        f"(scoring alone {row['score_users_per_s']:.0f} users/s); model loads per worker "
        f"{row['model_loads_per_worker']}")
    for st in stats:
        log(f"    a worker scored {st['partitions']} partitions, {st['users']} users: "
            f"{st['wall_s']:.1f} s wall, {st['cpu_s']:.1f} s CPU "
            f"({100 * st['cpu_s'] / max(st['wall_s'], 1e-9):.0f} % of a core)")
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--elastic", default=os.path.join(ROOT, "build", "elastic"))
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libelastic.so"))
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--cli-threads", type=int, default=2)
    ap.add_argument("--keep", help="keep the data and outputs in this folder")
    ap.add_argument("--ceiling-users", type=int, default=200_000,
                    help="users of the no-Dask 1-vs-2-process measurement (0: skip it)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--score-slice", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.score_slice:
        npz, model, lo, hi = a.score_slice
        score_slice(npz, model, int(lo), int(hi))
        return 0
    os.environ["ELASTIC_LIB"] = os.path.abspath(a.lib)       # the workers inherit it
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(ROOT, "python")] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import pandas as pd
    import dask
    import libelastic
    libelastic.load_library(a.lib)
    tmp = a.keep or tempfile.mkdtemp(prefix="elastic-dask-")
    os.makedirs(tmp, exist_ok=True)
    info = cpu_info()
    info.update(users=a.users, partitions=a.partitions, dask=dask.__version__,
                pandas=pd.__version__, python=platform.python_version(), model=MODEL, k=10,
                batch=256, session_threads=1)
    try:
        paths = prepare(a, tmp)
        info.update(paths["info"])
        results: List[Dict[str, Any]] = []
        outputs = {}
        ceilings = []
        for w in [int(v) for v in a.workers.split(",")]:
            if a.ceiling_users:
                ceilings.append(ceiling(paths, a.ceiling_users))
            out = os.path.join(tmp, f"recs-{w}.parquet")
            results.append(run(w, a, paths, out))
            outputs[w] = pd.read_parquet(out).sort_values(["user", "rank"]).reset_index(
                drop=True)
        # the single-process command line on the same users
        t0 = time.time()
        cli = subprocess.run([a.elastic, "recommend", "--model", paths["model"], "--top", "10",
                              "--threads", str(a.cli_threads), paths["histories"]], check=True,
                             capture_output=True, text=True).stdout
        cli_s = time.time() - t0
        lines = cli.splitlines()
        ids = np.array([[int(c.split(":")[0]) for c in l.split("\t")[1].split()] for l in lines])
        sc = np.array([[float(c.split(":")[1]) for c in l.split("\t")[1].split()] for l in lines])
        check: Dict[str, Any] = {"cli_seconds": cli_s, "cli_threads": a.cli_threads,
                                 "cli_users_per_s": a.users / cli_s}
        first = outputs[min(outputs)]
        for w, df in outputs.items():
            got_ids = df["item"].to_numpy().reshape(a.users, 10)
            got_sc = df["score"].to_numpy().reshape(a.users, 10).astype(np.float64)
            same_users = bool(np.array_equal(df["user"].to_numpy()[::10], paths["users"]))
            same_ids = bool(np.array_equal(got_ids, ids))
            # the command prints 6 significant digits
            close = bool(np.all(np.abs(got_sc - sc) <= 5.01e-6 * np.abs(got_sc)))
            bits = bool(df.equals(first))
            check[f"workers_{w}"] = {"users_equal": same_users, "ids_equal_cli": same_ids,
                                     "scores_equal_cli_6_digits": close,
                                     "bit_identical_to_first_run": bits}
            log(f"{w} worker(s): users {same_users}, ids = CLI {same_ids}, scores = CLI to "
                f"6 digits {close}, bit-identical to the {min(outputs)}-worker run {bits}")
        log(f"elastic recommend, one process, {a.cli_threads} threads: {cli_s:.1f} s "
            f"({check['cli_users_per_s']:.0f} users/s, histories parsed from text)")
        by = {r["workers"]: r for r in results}
        if 1 in by and 2 in by:
            for key in ("total_s", "read_s", "group_s", "score_s", "write_s"):
                check[f"speedup_{key}"] = by[1][key] / by[2][key]
            log("speed-up 2 workers / 1 worker: " + ", ".join(
                f"{k[8:-2]} {check[k]:.2f}x" for k in check if k.startswith("speedup_")))
        if ceilings:
            check["ceiling"] = ceilings
            log("machine's 1-vs-2-process speed-up before each run: " +
                ", ".join(f"{c['speedup']:.2f}x" for c in ceilings))
        info["loadavg_after"] = os.getloadavg()
        if a.json:
            json.dump({"tool": "dask_scaling.py", "info": info, "results": results,
                       "check": check}, sys.stdout, indent=2)
            print()
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
