#!/usr/bin/env python3
"""plot_curves.py - the validation curves of run_objectives.sh: validation
HR@10 against the minutes of CPU time each run had used (and, beside it,
against wall-clock minutes), one line per run, read from the `epoch` lines
that `elastic train` prints; also prints a table of each run's epochs,
targets/s, best validation HR@10 and final test metrics. The runs: the four
of RUNS that LOG_DIR holds, then every other NAME.log there (label: NAME and
the arguments of its "== args:" line).

  python3 docs/training/plot_curves.py LOG_DIR OUT.png [TITLE XLABEL_CPU XLABEL_WALL YLABEL]

(without the labels: those of the short N = 50 comparison)
"""
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EPOCH = re.compile(r"^epoch (\d+): loss ([\d.]+), ([\d.]+) s \((\d+) examples/s, (\d+) targets/s\), "
                   r"validation HR@10 ([\d.]+) NDCG@10 ([\d.]+) \([\d.]+ s\), ([\d.]+) min, "
                   r"([\d.]+) cpu min")
TEST = re.compile(r"^  model +HR@10 ([\d.]+) +HR@50 ([\d.]+) +NDCG@10 ([\d.]+) +NDCG@50 ([\d.]+) "
                  r"+MRR ([\d.]+)")
RUNS = [("sasrec_prefix", "SASRec, prefix", "tab:blue", "--"),
        ("sasrec_causal", "SASRec, causal", "tab:blue", "-"),
        ("elastic_prefix", "ELASTIC, prefix", "tab:red", "--"),
        ("elastic_cloze", "ELASTIC, cloze", "tab:red", "-")]


def read(path):
    epochs, test = [], None
    with open(path) as f:
        for line in f:
            m = EPOCH.match(line)
            if m:
                epochs.append({"epoch": int(m[1]), "loss": float(m[2]), "seconds": float(m[3]),
                               "ex_s": int(m[4]), "tg_s": int(m[5]), "hr10": float(m[6]),
                               "ndcg10": float(m[7]), "min": float(m[8]), "cpu": float(m[9])})
            m = TEST.match(line)
            if m:
                test = {"hr10": float(m[1]), "hr50": float(m[2]), "ndcg10": float(m[3]),
                        "ndcg50": float(m[4]), "mrr": float(m[5])}
    return epochs, test


def extra_label(path):
    """NAME: the arguments after model=... of the log's "== args:" line."""
    name = os.path.basename(path)[:-4]
    with open(path) as f:
        for line in f:
            if line.startswith("== args:"):
                return f"{name}: {line[len('== args:'):].strip()}"  # no ":" in NAME
    return name


def main():
    if len(sys.argv) not in (3, 7):
        print([ln for ln in __doc__.splitlines() if "plot_curves.py LOG_DIR" in ln][0].strip())
        return 2
    logs, out = sys.argv[1], sys.argv[2]
    title, x_cpu, x_wall, y_label = sys.argv[3:7] if len(sys.argv) == 7 else (
        "ML-1M, N = 50: objectives at an equal CPU-time budget",
        "CPU minutes of the training process (2 threads)",
        "wall-clock minutes (shared machine, nice 19)",
        "validation HR@10 (1,000 users, full ranking)")
    fig, (ax_cpu, ax_wall) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    print("| run | epochs | CPU min | wall min | targets/s (mean) | best valid HR@10 | "
          "test HR@10 | test NDCG@10 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    runs = []
    for name, label, color, style in RUNS:
        path = os.path.join(logs, f"{name}.log")
        if not os.path.exists(path):  # the copies kept in docs/training
            path = os.path.join(logs, f"objectives_{name}.log")
        if os.path.exists(path):
            runs.append((path, label, color, style))
    known = {os.path.basename(r[0]) for r in runs}
    extra = sorted(f for f in os.listdir(logs) if f.endswith(".log") and f not in known
                   and not f.startswith("objectives_"))
    for i, f in enumerate(extra):
        runs.append((os.path.join(logs, f), extra_label(os.path.join(logs, f)),
                     f"C{(i + 4) % 10}", "-"))
    for path, label, color, style in runs:
        legend = label.split(":")[0]  # an extra run's arguments go to the table only
        epochs, test = read(path)
        if not epochs:
            continue
        xs_cpu = [0.0] + [e["cpu"] for e in epochs]
        xs_wall = [0.0] + [e["min"] for e in epochs]
        ys = [0.0] + [e["hr10"] for e in epochs]
        ax_cpu.plot(xs_cpu, ys, style, color=color, marker="o", ms=3, label=legend)
        ax_wall.plot(xs_wall, ys, style, color=color, marker="o", ms=3, label=legend)
        tg = sum(e["tg_s"] for e in epochs) / len(epochs)
        print(f"| {label} | {len(epochs)} | {epochs[-1]['cpu']:.2f} | {epochs[-1]['min']:.1f} | "
              f"{tg:.0f} | {max(e['hr10'] for e in epochs):.4f} | "
              + (f"{test['hr10']:.4f} | {test['ndcg10']:.4f} |" if test else "- | - |"))
    ax_cpu.set_xlabel(x_cpu)
    ax_wall.set_xlabel(x_wall)
    ax_cpu.set_ylabel(y_label)
    for ax in (ax_cpu, ax_wall):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
