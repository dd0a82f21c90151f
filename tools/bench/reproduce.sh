#!/usr/bin/env bash
# reproduce.sh - every benchmark of docs/benchmarks/benchmarks.md, in the
# order they were taken, then the figures and tables. Writes, all in
# docs/benchmarks/: bench_*.json|txt, peers*.json|txt, bench_load.txt (the
# load average around each step), the PNGs and bench_tables.md. About 35
# minutes on 2 cores (SECONDS_PER=20: fewer). Run from the repository root after building
# (cmake -S . -B build && cmake --build build -j) and installing
# tools/bench/requirements.txt.
#   bash tools/bench/reproduce.sh [STEP ...]   steps: cpu cpu_passive peers
#                                              peers_passive opencl plot
#                                              python_overhead python_dask (not run
#                                              by default; docs/benchmarks/python.md)
#                                              train_peers (not run by default;
#                                              docs/benchmarks/peers.md)
set -euo pipefail
cd "$(dirname "$0")/../.."
E=build/elastic
D=docs/benchmarks
THREADS=${THREADS:-2}
SECONDS_PER=${SECONDS_PER:-60} # elastic bench's --max-seconds per configuration
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(cpu cpu_passive peers peers_passive opencl plot)
mkdir -p "$D"
load() { echo "$(uptime) $1" >> "$D/bench_load.txt"; }
for step in "${steps[@]}"; do
    load "before $step"
    case $step in
    cpu)
        $E bench --backends cpu --threads "$THREADS" --max-seconds "$SECONDS_PER" --seed 1 --json \
            > "$D/bench_cpu.json" 2> "$D/bench_cpu.txt" ;;
    cpu_passive)
        OMP_WAIT_POLICY=passive $E bench --backends cpu --threads "$THREADS" \
            --max-seconds "$SECONDS_PER" --seed 1 --json > "$D/bench_cpu_passive.json" 2> "$D/bench_cpu_passive.txt" ;;
    peers)
        python3 tools/bench/peers.py --lib build/libelastic.so --elastic $E \
            --threads "$THREADS" --max-seconds 20 --seed 1 --json \
            > "$D/peers.json" 2> "$D/peers.txt" ;;
    peers_passive)
        python3 tools/bench/peers.py --lib build/libelastic.so --elastic $E \
            --threads "$THREADS" --max-seconds 20 --seed 1 --passive --json \
            > "$D/peers_passive.json" 2> "$D/peers_passive.txt" ;;
    train_peers)
        python3 tools/bench/train_peers.py --lib build/libelastic.so --elastic $E \
            --data "${DATA:-../shared/data/ml-1m.txt}" --threads "$THREADS" --cli --json \
            > "$D/train_peers.json" 2> "$D/train_peers.txt" ;;
    opencl)
        # PoCL allocates at most 4 GiB per buffer: sasrec-std's weights must fit in one
        $E bench --backends opencl --threads "$THREADS" --max-seconds "$SECONDS_PER" \
            --max-memory 3584 --seed 1 --json > "$D/bench_opencl.json" 2> "$D/bench_opencl.txt" ;;
    python_overhead)
        # Python Session.recommend against the same call from C (docs/benchmarks/python.md)
        python3 tools/bench/python_overhead.py --lib build/libelastic.so \
            --timer build/elastic-recommend-timer --threads "$THREADS" --json \
            > "$D/python_overhead.json" 2> "$D/python_overhead.txt" ;;
    python_dask)
        # libelastic.dask, 1 worker against 2, 1,000,000 users (docs/benchmarks/python.md)
        python3 tools/bench/dask_scaling.py --elastic $E --lib build/libelastic.so --json \
            > "$D/python_dask.json" 2> >(grep -v 'distributed.shuffle' > "$D/python_dask.txt") ;;
    plot)
        {
            printf '# Benchmark tables\n\n'
            printf 'The tables of [benchmarks.md](benchmarks.md), written by '
            printf '`tools/bench/plot.py --markdown` from the JSON files in this folder.\n'
            python3 tools/bench/plot.py \
                --bench "$D/bench_cpu.json" "$D/bench_opencl.json" "$D/bench_cpu_passive.json" \
                --peers "$D/peers.json" "$D/peers_passive.json" --out "$D" --markdown
        } > "$D/bench_tables.md" ;;
    *) echo "reproduce.sh: unknown step '$step'" >&2; exit 2 ;;
    esac
    load "after $step"
done
