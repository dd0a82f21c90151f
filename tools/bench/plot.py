#!/usr/bin/env python3
"""plot.py - the benchmark figures of docs/benchmarks.md from the JSON of
`elastic bench --json` and `tools/bench/peers.py --json`:

  docs/bench_time.png    time per user against n, per backend and model
  docs/bench_memory.png  peak memory (planned arena + weights) and measured
                         peak-RSS growth against n, per backend and model,
                         with the computed n*n score matrix of standard
                         attention for reference
  docs/bench_peers.png   throughput (users/s) of libelastic and its peers

  python3 tools/bench/plot.py --bench docs/bench.json --peers docs/peers.json --out docs
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"elastic": "-o", "sasrec": "--s"}
COLOR = {"cpu": "tab:blue", "opencl": "tab:orange", "cuda": "tab:green"}


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
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (be, model), rs in sorted(scaling(bench["results"]).items()):
        ax.plot([r["n"] for r in rs], [r["us_per_user"] * 1e-3 for r in rs], STYLE[model],
                color=COLOR.get(be), label=f"{model} ({be})")
    for r in bench["results"]:
        if r.get("kind") == "scaling" and r["state"] == "skipped":
            ax.annotate("skipped", (r["n"], ax.get_ylim()[1]), fontsize=7, ha="center",
                        color=COLOR.get(r["backend"]))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("history length n")
    ax.set_ylabel("forward time per user (ms, median)")
    ax.set_title(f"time vs n (B = max(1, {bench['tokens_per_batch']}/n), "
                 f"{bench['threads'] or 'all'} threads)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_memory(bench, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    std_n, std_b = {}, {}
    for (be, model), rs in sorted(scaling(bench["results"]).items()):
        ns = [r["n"] for r in rs]
        ax.plot(ns, [r["peak_bytes"] / r["batch"] / 2**20 for r in rs], STYLE[model],
                color=COLOR.get(be), label=f"{model} ({be}): arena + weights, per user")
        rss = [(r["n"], r["rss_growth_bytes"] / r["batch"] / 2**20) for r in rs
               if r["rss_growth_bytes"] >= 0]
        if rss:
            ax.plot(*zip(*rss), ":", marker="x", color=COLOR.get(be), alpha=0.6,
                    label=f"{model} ({be}): measured peak-RSS growth, per user")
        if model == "sasrec":
            for r in rs:
                std_n[r["n"]] = r["std_attention_bytes_per_layer"] / r["batch"] / 2**20
                std_b[r["n"]] = r["batch"]
    if std_n:
        ns = sorted(std_n)
        ax.plot(ns, [std_n[n] for n in ns], "-.", color="gray",
                label="standard attention: n*n scores per layer (computed, not measured)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("history length n")
    ax.set_ylabel("MiB per user")
    ax.set_title("peak memory vs n")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_peers(peers, path):
    rows = peers["results"]
    names = []
    for row in rows:
        for name in row["peers"]:
            if name not in names:
                names.append(name)
    fig, axes = plt.subplots(1, len(rows), figsize=(4.5 * len(rows), 4), squeeze=False)
    for ax, row in zip(axes[0], rows):
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
        ax.set_title(f"ELASTIC, B={row['batch']}, n={row['n']}")
        ax.set_ylabel("users/s (median)")
    fig.suptitle(f"CPU, {peers['info']['threads']} threads; label: libelastic / peer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description="benchmark figures")
    ap.add_argument("--bench", default="docs/bench.json")
    ap.add_argument("--peers", default="docs/peers.json")
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(a.bench) as f:
        bench = json.load(f)
    plot_time(bench, os.path.join(a.out, "bench_time.png"))
    plot_memory(bench, os.path.join(a.out, "bench_memory.png"))
    if os.path.exists(a.peers):
        with open(a.peers) as f:
            plot_peers(json.load(f), os.path.join(a.out, "bench_peers.png"))
    print("wrote", ", ".join(os.path.join(a.out, p) for p in
                             ("bench_time.png", "bench_memory.png", "bench_peers.png")))


if __name__ == "__main__":
    main()
