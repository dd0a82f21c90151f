#!/usr/bin/env bash
# run_objectives.sh - the objective comparison of docs/training.md: on
# ML-1M, SASRec with `prefix` and `causal`, ELASTIC with `prefix` and
# `cloze`, each for the same budget of process CPU time (--max-cpu-minutes:
# the fair measure on a shared machine, where wall-clock time follows the
# load), one after the other (never two at once), logs into OUT_DIR; further
# arguments go to every run.
# plot_curves.py draws the validation curves from the logs.
#   docs/training/run_objectives.sh ELASTIC_BINARY DATA OUT_DIR CPU_MINUTES [ARGS...]
set -euo pipefail
bin=${1:?usage: run_objectives.sh ELASTIC_BINARY DATA OUT_DIR CPU_MINUTES [ARGS...]}
data=${2:?data file, e.g. ml-1m.txt}
out=${3:?output directory}
minutes=${4:?CPU minutes per run}
shift 4
mkdir -p "$out"
# Threads that wait sleep instead of spinning: on a loaded machine spinning
# burns most of the CPU time (perf: 75% in libgomp's wait loop).
export OMP_WAIT_POLICY=PASSIVE
run() { # name, then the arguments of elastic train
  local name=$1
  shift
  echo "== $name: $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/$name.log"
  nice -n 19 "$bin" train -o "$out/$name.st" --data "$data" --epochs 10000 --patience 10000 \
    --max-cpu-minutes "$minutes" --quiet "$@" 2>&1 | tee -a "$out/$name.log"
  echo "== end $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/$name.log"
}
run sasrec_causal model=sasrec --objective causal "$@"
run elastic_cloze model=elastic --objective cloze "$@"
run sasrec_prefix model=sasrec --objective prefix "$@"
run elastic_prefix model=elastic --objective prefix "$@"
