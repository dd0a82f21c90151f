#!/usr/bin/env bash
# Command-line checks on a build: init + recommend print top-K lists, bench
# writes its JSON; a malformed model file, an out-of-range item id and an
# empty history each give a clear error and a non-zero exit, never a crash.
#   ci/smoke.sh BUILD_DIR
set -uo pipefail
bin="${1:?usage: ci/smoke.sh BUILD_DIR}/elastic"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # check NAME EXPECTED_RC PATTERN -- command...
  local name=$1 want=$2 pattern=$3
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" -ne "$want" ] || { [ -n "$pattern" ] && ! grep -qE "$pattern" "$tmp/out" "$tmp/err"; }; then
    echo "FAIL $name: rc=$rc (want $want), output:"; cat "$tmp/out" "$tmp/err"; fail=1
  elif grep -q "Sanitizer" "$tmp/err"; then
    echo "FAIL $name: sanitizer report"; cat "$tmp/err"; fail=1
  else
    echo "ok   $name"
  fi
}
check init 0 "" -- "$bin" init num_items=100 hidden=32 max_len=50 experts=4 mem_subkeys=16 --seed 3 -o "$tmp/m.st"
printf '1 2 3\n4 5 6 7 8 9 10\n42\n' >"$tmp/h.txt"
check recommend 0 "^3	[0-9]+:" -- "$bin" recommend --model "$tmp/m.st" --top 5 "$tmp/h.txt"
check info 0 "imr.subkeys" -- "$bin" info "$tmp/m.st"
check plan 0 "pkm" -- "$bin" plan --model "$tmp/m.st" --batch 2 --len 10
head -c 200 "$tmp/m.st" >"$tmp/bad.st"
check malformed 1 "ELASTIC_ERR_FORMAT" -- "$bin" recommend --model "$tmp/bad.st" "$tmp/h.txt"
printf '1 2 101\n' >"$tmp/range.txt"
check out-of-range 1 "ELASTIC_ERR_OUT_OF_RANGE" -- "$bin" recommend --model "$tmp/m.st" "$tmp/range.txt"
printf '1 2\n\n' >"$tmp/empty.txt"
: >"$tmp/none.txt"
check empty-history 1 "line 2: user 1 has an empty history" -- "$bin" recommend --model "$tmp/m.st" "$tmp/empty.txt"
check no-users 0 "" -- "$bin" recommend --model "$tmp/m.st" "$tmp/none.txt"
check bad-id 1 "not an item id" -- "$bin" recommend --model "$tmp/m.st" /dev/stdin <<<"1 two 3"
check no-backend 1 "ELASTIC_ERR_BACKEND" -- "$bin" recommend --model "$tmp/m.st" --backend nosuch "$tmp/h.txt"
check bad-config 1 "heads" -- "$bin" init num_items=10 hidden=30 heads=4 -o "$tmp/x.st"
check help 0 "usage" -- "$bin" recommend --help
# Training end to end on a tiny synthetic log: a model file with the item map,
# checkpoints that resume, serving in the data's ids, and the error paths.
check synth 0 "" -- "$bin" synth --users 60 --items 40 --clusters 4 --min-len 5 --max-len 12 -o "$tmp/s.txt"
small=(hidden=16 max_len=16 experts=4 mem_subkeys=8 mem_topk=2 layers=1)
check train 0 "^test .*60 users" -- "$bin" train --data "$tmp/s.txt" -o "$tmp/t.st" --epochs 1 --checkpoint --quiet "${small[@]}"
check train-resume 0 "^epoch 2:" -- "$bin" train --data "$tmp/s.txt" -o "$tmp/t.st" --epochs 2 --resume --quiet
check train-info 0 "item_ids" -- "$bin" info "$tmp/t.st"
check recommend-mapped 0 "^1	[0-9]+:" -- "$bin" recommend --model "$tmp/t.st" --top 3 /dev/stdin <<<"$(awk '$1 == 1 { printf "%s ", $2 }' "$tmp/s.txt")"
check recommend-unmapped 1 "not in the model's item map" -- "$bin" recommend --model "$tmp/t.st" /dev/stdin <<<"1 2 999"
printf 'user,item,timestamp\n' >"$tmp/n.csv"
for u in 1 2 3 4 5 6; do for t in 1 2 3 4 5; do echo "u$u,film-$(( (u * 7 + t * 3) % 11 )),$t"; done; done >>"$tmp/n.csv"
check train-csv-names 0 "^test " -- "$bin" train --data "$tmp/n.csv" -o "$tmp/n.st" --epochs 1 --quiet "${small[@]}"
check recommend-names 0 "^1	film-[0-9]+:" -- "$bin" recommend --model "$tmp/n.st" --top 2 /dev/stdin <<<"film-1 film-2"
check train-no-output 2 "MODEL is required" -- "$bin" train --data "$tmp/s.txt"
check train-no-data 1 "ELASTIC_ERR_IO" -- "$bin" train --data "$tmp/nosuch.txt" -o "$tmp/u.st"
check train-bad-key 2 "num_items comes from the data" -- "$bin" train --data "$tmp/s.txt" -o "$tmp/u.st" num_items=5
check train-no-ckpt 1 "u.st.ckpt" -- "$bin" train --data "$tmp/s.txt" -o "$tmp/u.st" --resume
# elastic bench: three models, JSON, the memory budget halving B, bad options.
check bench 0 "" -- "$bin" bench --backends cpu --lengths 64,128 --max-seconds 1 --no-throughput --max-memory 1 --json
cp "$tmp/out" "$tmp/bench.json"
if python3 - "$tmp/bench.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
assert sorted({r["model"] for r in rs}) == ["elastic", "sasrec", "sasrec-std"], rs
for r in rs:
    assert r["state"] == "ran", r
    # 1 MiB for sasrec-std's weights [B, 2, n, n]: B halved from 65536/n until they fit
    want_b = max(1, min(65536 // r["n"], (1 << 20) // (2 * r["n"] * r["n"] * 4)))
    assert r["batch"] <= want_b, (r, want_b)
    ffn = r["batch"] * r["n"] * 256 * 4  # an unfused FFN's [B, n, 4d] (the fused one has none)
    if r["model"] == "sasrec-std":  # the weights [B, 2, n, n] are there, nothing larger
        weights = r["batch"] * 2 * r["n"] * r["n"] * 4
        assert weights <= r["max_tensor_bytes"] <= max(ffn, weights), r
    else:  # 4d floats per position at most: no n*n anywhere
        assert r["max_tensor_bytes"] <= ffn, r
PY
then echo "ok   bench-json"; else echo "FAIL bench-json"; cat "$tmp/bench.json"; fail=1; fi
check bench-bad-model 2 "usage" -- "$bin" bench --models nosuch
check bench-bad-memory 2 "max-memory" -- "$bin" bench --max-memory 0
# Every other available backend recommends what the CPU backend recommends.
for be in opencl cuda; do
  "$bin" backends | grep -qE "^$be +available" || { echo "skip $be: not available"; continue; }
  check "recommend-$be" 0 "" -- "$bin" recommend --model "$tmp/m.st" --backend "$be" --top 5 "$tmp/h.txt"
  cp "$tmp/out" "$tmp/$be.txt"
  "$bin" recommend --model "$tmp/m.st" --top 5 "$tmp/h.txt" >"$tmp/cpu.txt"
  # ids must match exactly; scores agree to the printed 6 significant digits or nearly
  if diff <(sed 's/:[^ ]*//g' "$tmp/cpu.txt") <(sed 's/:[^ ]*//g' "$tmp/$be.txt") >/dev/null; then
    echo "ok   $be matches cpu"
  else
    echo "FAIL $be recommends differently from cpu:"; diff "$tmp/cpu.txt" "$tmp/$be.txt"; fail=1
  fi
done
exit $fail
