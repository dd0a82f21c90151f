#!/usr/bin/env bash
# reproduce.sh - every benchmark of docs/benchmarks.md, in the order they were
# taken, then the figures and tables. Writes docs/bench_*.json|txt,
# docs/peers*.json|txt, docs/bench_load.txt (the load average around each
# step) and the PNGs. About 35 minutes on 2 cores. Run from the repository
# root after building (cmake -S . -B build && cmake --build build -j) and
# installing tools/bench/requirements.txt.
#   bash tools/bench/reproduce.sh [STEP ...]   steps: cpu cpu_passive peers
#                                              peers_passive opencl plot
set -euo pipefail
cd "$(dirname "$0")/../.."
E=build/elastic
THREADS=${THREADS:-2}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(cpu cpu_passive peers peers_passive opencl plot)
load() { echo "$(uptime) $1" >> docs/bench_load.txt; }
for step in "${steps[@]}"; do
    load "before $step"
    case $step in
    cpu)
        $E bench --backends cpu --threads "$THREADS" --max-seconds 60 --seed 1 --json \
            > docs/bench_cpu.json 2> docs/bench_cpu.txt ;;
    cpu_passive)
        OMP_WAIT_POLICY=passive $E bench --backends cpu --threads "$THREADS" --max-seconds 60 \
            --seed 1 --json > docs/bench_cpu_passive.json 2> docs/bench_cpu_passive.txt ;;
    peers)
        python3 tools/bench/peers.py --lib build/libelastic.so --elastic $E \
            --threads "$THREADS" --max-seconds 20 --seed 1 --json \
            > docs/peers.json 2> docs/peers.txt ;;
    peers_passive)
        python3 tools/bench/peers.py --lib build/libelastic.so --elastic $E \
            --threads "$THREADS" --max-seconds 20 --seed 1 --passive --json \
            > docs/peers_passive.json 2> docs/peers_passive.txt ;;
    opencl)
        # PoCL allocates at most 4 GiB per buffer: sasrec-std's weights must fit in one
        $E bench --backends opencl --threads "$THREADS" --max-seconds 60 --max-memory 3584 \
            --seed 1 --json > docs/bench_opencl.json 2> docs/bench_opencl.txt ;;
    plot)
        python3 tools/bench/plot.py \
            --bench docs/bench_cpu.json docs/bench_opencl.json docs/bench_cpu_passive.json \
            --peers docs/peers.json docs/peers_passive.json --out docs --markdown \
            > docs/bench_tables.md ;;
    *) echo "reproduce.sh: unknown step '$step'" >&2; exit 2 ;;
    esac
    load "after $step"
done
