#!/usr/bin/env bash
# Runs the fast unit tests and the command line under valgrind (memcheck):
# any invalid access or definite leak fails.
#   ci/valgrind.sh BUILD_DIR
set -euo pipefail
dir=${1:?usage: ci/valgrind.sh BUILD_DIR}
command -v valgrind >/dev/null || { echo "valgrind not installed: skipped"; exit 0; }
vg=(valgrind -q --error-exitcode=9 --suppressions="$(dirname "$0")/valgrind.supp"
    --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite)
export OMP_NUM_THREADS=2 ELASTIC_TEST_QUICK=1
# The unit tests two at a time (valgrind runs a process's threads on one
# core); `wait PID` gives each one's status, so any failure stops the script.
pids=()
for t in test_graph test_planner test_safetensors test_model_file test_ops test_session \
         test_data test_metrics test_synth test_grad; do
  [ -x "$dir/tests/$t" ] || continue
  echo "valgrind $t"
  "${vg[@]}" "$dir/tests/$t" >/dev/null &
  pids+=($!)
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "valgrind elastic init/recommend/plan"
"${vg[@]}" "$dir/elastic" init num_items=200 hidden=32 max_len=40 experts=4 mem_subkeys=16 -o "$tmp/m.st"
printf '1 2 3\n4 5 6 7\n' | "${vg[@]}" "$dir/elastic" recommend --model "$tmp/m.st" >/dev/null
# Error paths: exit status 1 (the program's), not 9 (valgrind's).
printf '1 2 300\n' >"$tmp/range.txt"
rc=0; "${vg[@]}" "$dir/elastic" recommend --model "$tmp/m.st" "$tmp/range.txt" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ]
head -c 100 "$tmp/m.st" >"$tmp/bad.st"
rc=0; "${vg[@]}" "$dir/elastic" info "$tmp/bad.st" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ]
echo "valgrind elastic synth/eval"
"${vg[@]}" "$dir/elastic" synth --users 40 --items 200 --clusters 5 -o "$tmp/s.txt" 2>/dev/null
"${vg[@]}" "$dir/elastic" eval --model "$tmp/m.st" --data "$tmp/s.txt" --threads 2 >/dev/null 2>&1
rc=0; "${vg[@]}" "$dir/elastic" eval --model "$tmp/m.st" --data "$tmp/none.txt" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ]
echo "valgrind elastic train (1 epoch, tiny) and resume"
"${vg[@]}" "$dir/elastic" synth --users 30 --items 30 --clusters 3 --min-len 4 --max-len 8 -o "$tmp/t.txt" 2>/dev/null
"${vg[@]}" "$dir/elastic" train --data "$tmp/t.txt" -o "$tmp/t.st" --epochs 1 --checkpoint --quiet \
  hidden=8 max_len=8 experts=2 mem_subkeys=4 mem_topk=2 layers=1 >/dev/null
"${vg[@]}" "$dir/elastic" train --data "$tmp/t.txt" -o "$tmp/t.st" --epochs 2 --resume --quiet >/dev/null
rc=0; "${vg[@]}" "$dir/elastic" train --data "$tmp/none.txt" -o "$tmp/u.st" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ]
echo "valgrind: clean"
