#!/usr/bin/env python3
"""plot.py - the benchmark figures of docs/benchmarks/benchmarks.md from the
JSON of `elastic bench --json` and `tools/bench/peers.py --json`, written into
--out (default docs/benchmarks):

  bench_time.png    time per user against n, per backend and model
  bench_memory.png  peak memory (planned arena + weights) and measured
                    peak-RSS growth against n, per backend and model
                    (sasrec: streaming attention; sasrec-std: standard
                    attention, which holds the n*n softmax weights)
  bench_peers.png   throughput (users/s) of libelastic and its peers

  python3 tools/bench/plot.py \\
      --bench docs/benchmarks/bench_cpu.json docs/benchmarks/bench_opencl.json \\
      --peers docs/benchmarks/peers.json docs/benchmarks/peers_passive.json \\
      --out docs/benchmarks \\
      [--markdown]      (also prints the tables of docs/benchmarks/benchmarks.md)
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"elastic": "-o", "sasrec": "--s", "sasrec-std": ":^"}
COLOR = {"cpu": "tab:blue", "opencl": "tab:orange", "cuda": "tab:green",
         "cpu, passive wait": "tab:purple"}


def scaling(rows):
    """{(backend, model): [rows sorted by n]} of the runs that ran."""
    out = {}
    for r in rows:
        if r.get("kind") == "scaling" and r["state"] == "ran":
            out.setdefault((r["backend"], r["model"]), []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["n"])
    return out


def plot_time(bench, path):
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for (be, model), rs in sorted(scaling(bench["results"]).items()):
        ax.plot([r["n"] for r in rs], [r["us_per_user"] * 1e-3 for r in rs], STYLE[model],
                color=COLOR.get(be), label=f"{model} ({be})")
    for r in bench["results"]:
        if r.get("kind") == "scaling" and r["state"].startswith("skipped"):
            ax.annotate(f"{r['model']}\n{r['state']}", (r["n"], ax.get_ylim()[1]), fontsize=6,
                        ha="center", va="top", color=COLOR.get(r["backend"]))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("history length n")
    ax.set_ylabel("forward time per user (ms, median)")
    ax.set_title(f"time vs n (B = max(1, {bench['tokens_per_batch']}/n), "
                 f"{bench['threads'] or 'all'} threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_memory(bench, path):
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for (be, model), rs in sorted(scaling(bench["results"]).items()):
        if be.endswith("passive wait"):  # the same plans: the same memory
            continue
        ns = [r["n"] for r in rs]
        ax.plot(ns, [r["peak_bytes"] / r["batch"] / 2**20 for r in rs], STYLE[model],
                color=COLOR.get(be), label=f"{model} ({be}): arena + weights, per user")
        rss = [(r["n"], r["rss_growth_bytes"] / r["batch"] / 2**20) for r in rs
               if r["rss_growth_bytes"] >= 0]
        if rss:
            ax.plot(*zip(*rss), ":", marker="x", color=COLOR.get(be), alpha=0.6,
                    label=f"{model} ({be}): measured peak-RSS growth, per user")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("history length n")
    ax.set_ylabel("MiB per user")
    ax.set_title("peak memory vs n")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def peers_label(peers):
    return "waiting threads sleep (passive)" if peers["info"].get("passive") \
        else "default thread waiting (spin)"


def peers_port(peers):
    """Which PyTorch port the peers ran (peers.py --port; runs before the
    option existed used the exact port)."""
    return {"fast": "the strong port libelastic.torch_fast",
            "exact": "the exact port libelastic.torch"}.get(peers["info"].get("port", "exact"))


def plot_peers(all_peers, path):
    n_cols = max(len(p["results"]) for p in all_peers)
    fig, axes = plt.subplots(len(all_peers), n_cols, figsize=(4.5 * n_cols, 4 * len(all_peers)),
                             squeeze=False)
    for i, peers in enumerate(all_peers):
        plot_peers_row(peers, axes[i])
    fig.suptitle(f"forward to the user vectors on the CPU, {all_peers[0]['info']['threads']} "
                 f"threads, peers: {peers_port(all_peers[0])}; "
                 "bar label: libelastic / contender throughput", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_peers_row(peers, axes):
    rows = peers["results"]
    names = []
    for row in rows:
        for name in row["peers"]:
            if name not in names:
                names.append(name)
    for ax, row in zip(axes, rows):
        vals, labels = [], []
        for name in names:
            p = row["peers"].get(name)
            labels.append(name)
            vals.append(p["users_per_s"] if p and p["state"] == "ran" else 0.0)
        bars = ax.bar(range(len(vals)), vals,
                      color=["tab:blue"] + ["tab:gray"] * (len(vals) - 1))
        for b, name, v in zip(bars, names, vals):
            p = row["peers"].get(name)
            txt = "failed" if not p or p["state"] != "ran" else (
                "" if name == "libelastic" else f"x{p['ratio_libelastic_over_peer']:.2f}")
            ax.text(b.get_x() + b.get_width() / 2, v, txt, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(vals)))
        ax.set_xticklabels(labels, rotation=20, fontsize=8)
        ax.set_title(f"{row.get('model', 'elastic')} B={row['batch']}, n={row['n']}: "
                     f"{peers_label(peers)}", fontsize=9)
        ax.set_ylabel("users/s (median)")


def markdown(bench, all_peers):
    """The tables of docs/benchmarks/benchmarks.md, in Markdown."""
    out = []
    rows = bench["results"]
    for be in sorted({r["backend"] for r in rows}):
        out += [f"\n#### {be}: {next((r['device'] for r in rows if r['backend'] == be and r.get('device')), '')}\n",
                "| n | B | model | ms/batch | us/user | users/s | GFLOP/s | arena MiB | arena+weights MiB "
                "| RSS growth MiB | largest tensor MiB (floats/position) |",
                "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            if r["backend"] != be:
                continue
            n = f"{r['n']}" + (" (throughput)" if r.get("kind") == "throughput" else "")
            if r["state"] != "ran":
                out.append(f"| {n} | {r['batch']} | {r['model']} | {r['state']} |"
                           " | | | | | | | |")
                continue
            rss = f"{r['rss_growth_bytes'] / 2**20:.1f}" if r["rss_growth_bytes"] >= 0 else "n/a"
            out.append(f"| {n} | {r['batch']} | {r['model']} | {r['median_s'] * 1e3:.2f} | "
                       f"{r['us_per_user']:.1f} | {r['users_per_s']:.0f} | {r['gflops']:.1f} | "
                       f"{r['arena_bytes'] / 2**20:.1f} | {r['peak_bytes'] / 2**20:.1f} | {rss} | "
                       f"{r['max_tensor_bytes'] / 2**20:.2f} "
                       f"({r['max_tensor_bytes'] / 4 / r['batch'] / r['n']:.0f}) |")
        out += ["", "| n | B | time ELASTIC/sasrec | ELASTIC speed-up | memory ELASTIC/sasrec "
                "| time ELASTIC/sasrec-std | ELASTIC speed-up | memory ELASTIC/sasrec-std "
                "| ELASTIC memory vs sasrec-std |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        by = {}
        for r in rows:
            if r["backend"] == be and r.get("kind") == "scaling":
                by.setdefault(r["n"], {})[r["model"]] = r
        for n in sorted(by):
            e = by[n].get("elastic")
            cells = []
            for other in ("sasrec", "sasrec-std"):
                o = by[n].get(other)
                if not e or not o or e["state"] != "ran" or o["state"] != "ran":
                    why = f"{other} {o['state']}" if o and o["state"] != "ran" else "n/a"
                    cells += [why, "", ""] + ([""] if other == "sasrec-std" else [])
                    continue
                mem = e["peak_bytes"] / o["peak_bytes"]
                cells += [f"{e['median_s'] / o['median_s']:.3f}", f"{o['median_s'] / e['median_s']:.2f}x",
                          f"{mem:.3f}"]
                if other == "sasrec-std":
                    cells.append(f"{100 * (1 - mem):.1f}% less" if mem <= 1 else f"{mem:.2f}x more")
            out.append(f"| {n} | {e['batch'] if e else ''} | " + " | ".join(cells) + " |")
    for peers in all_peers:
        out += [f"\n#### peers (CPU, {peers_label(peers)}; {peers_port(peers)})\n",
                "| model | B | n | contender | ms/batch (median) | users/s | libelastic / contender "
                "| max rel. error vs libelastic |",
                "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
        for row in peers["results"]:
            model = row.get("model", "elastic")
            for name, p in row["peers"].items():
                if p["state"] != "ran":
                    out.append(f"| {model} | {row['batch']} | {row['n']} | {name} | "
                               f"failed: {p['error']} | | | |")
                    continue
                ratio = f"{p['ratio_libelastic_over_peer']:.2f}" if "ratio_libelastic_over_peer" in p else "1"
                err = f"{p['max_rel_err']:.1e}" if "max_rel_err" in p else "-"
                out.append(f"| {model} | {row['batch']} | {row['n']} | {name} | "
                           f"{p['median_s'] * 1e3:.1f} | {p['users_per_s']:.0f} | {ratio} | {err} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description="benchmark figures")
    ap.add_argument("--bench", nargs="+",
                    default=["docs/benchmarks/bench_cpu.json", "docs/benchmarks/bench_opencl.json",
                             "docs/benchmarks/bench_cpu_passive.json"],
                    help="one or more outputs of `elastic bench --json` (e.g. one per backend)")
    ap.add_argument("--peers", nargs="*", default=["docs/benchmarks/peers.json"],
                    help="outputs of tools/bench/peers.py --json (one row of panels each)")
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--markdown", action="store_true",
                    help="also print the tables of docs/benchmarks/benchmarks.md")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    bench = None
    for path in a.bench:
        with open(path) as f:
            part = json.load(f)
        if part.get("omp_wait_policy", "").lower() == "passive":
            for r in part["results"]:  # its own series: OMP_WAIT_POLICY=passive
                r["backend"] += ", passive wait"
        if bench is None:
            bench = part
        else:
            bench["results"] += part["results"]
    plot_time(bench, os.path.join(a.out, "bench_time.png"))
    plot_memory(bench, os.path.join(a.out, "bench_memory.png"))
    all_peers = []
    for path in a.peers:
        with open(path) as f:
            all_peers.append(json.load(f))
    if all_peers:
        plot_peers(all_peers, os.path.join(a.out, "bench_peers.png"))
    if a.markdown:
        print(markdown(bench, all_peers))
    print("wrote", ", ".join(os.path.join(a.out, p) for p in
                             ("bench_time.png", "bench_memory.png", "bench_peers.png")),
          file=sys.stderr)


if __name__ == "__main__":
    main()
