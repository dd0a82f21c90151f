#!/usr/bin/env bash
# Fuzzing campaign over every target of tests/fuzz (docs/reliability.md):
#   ci/fuzz.sh SECONDS [TARGET...]
# builds the libFuzzer targets with clang (build-fuzz: ELASTIC_FUZZ=ON, ASan
# and UBSan), then runs each target for SECONDS seconds, FUZZ_JOBS targets at
# a time (default 1), on a working corpus under build-fuzz/corpus/TARGET that
# starts from the checked-in seeds and grows from run to run. Crashes land in
# build-fuzz/crashes/TARGET/ (copy each into tests/fuzz/regressions/TARGET/
# once fixed). Prints a table: target, executions, CPU seconds, corpus files,
# crashes; exits 1 if any target crashed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:?usage: ci/fuzz.sh SECONDS [TARGET...]}
shift
jobs=${FUZZ_JOBS:-1}
dir=${FUZZ_BUILD_DIR:-build-fuzz}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do
    t=$(basename "$f" .c)
    [ "$t" = fuzz_util ] && continue
    targets+=("$t")
  done
fi
# elastic serve's target needs libmicrohttpd (as the server does).
if ! pkg-config --exists libmicrohttpd; then
  targets=("${targets[@]/fuzz_serve_request/}")
fi

build_args=()
for t in "${targets[@]}"; do [ -n "$t" ] && build_args+=(--target "$t"); done
# clang warns where gcc does not (the gcc builds keep -Werror).
CC=clang bash ci/build.sh "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELASTIC_FUZZ=ON -DELASTIC_WERROR=OFF \
  -DELASTIC_OPENCL=OFF -DELASTIC_CUDA=OFF "${build_args[@]}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE

run_one() {
  local t=$1 secs=$2 dir=$3
  local bin="$dir/tests/fuzz/$t" corpus="$dir/corpus/$t" crashes="$dir/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  local dict=()
  [ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="tests/fuzz/dict/$t.dict")
  local seeds=(tests/fuzz/corpus/$t)
  [ -d "tests/fuzz/regressions/$t" ] && seeds+=("tests/fuzz/regressions/$t")
  local log="$dir/logs/$t.log"
  mkdir -p "$dir/logs"
  # CPU time: user+sys of the fuzzer (the subshell's children, read at its end).
  set +e
  mkdir -p "$dir/profiles/$t"
  touch "$dir/logs/$t.start" # crashes newer than this are this run's
  ( LLVM_PROFILE_FILE="$dir/profiles/$t/%p.profraw" "$bin" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" "$corpus" "${seeds[@]}" \
      >"$log" 2>&1
    echo $? >"$log.rc"
    times >"$log.times" ) # not in a pipe: a piped `times` runs in a fork without children
  sed -n 2p "$log.times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m");
      s += p[1] * 60 + p[2] } printf "%.1f\n", s }' >"$log.cpu"
  set -e
}
export -f run_one

printf '%s\n' "${targets[@]}" | grep -v '^$' |
  xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} "$secs" "$dir"

# The code each target is there for: its line coverage, from clang's
# source-based profiles of every run so far (llvm-profdata, llvm-cov).
declare -A code=(
  [fuzz_model_load]="core/model/safetensors.c core/model/model_file.c core/model/config.c core/data/item_map.c"
  [fuzz_data_load]="core/data/data.c core/data/item_map.c"
  [fuzz_histories]="tools/histories.c"
  [fuzz_config]="core/model/config.c core/runtime/backend_options.c"
  [fuzz_conformance_args]="core/conformance/conformance.c"
  [fuzz_serve_request]="tools/serve/serve_request.c tools/serve/serve_compute.c")
coverage() {
  local t=$1 prof="$dir/profiles/$t.profdata"
  command -v llvm-profdata >/dev/null && command -v llvm-cov >/dev/null || { echo "-"; return; }
  ls "$dir/profiles/$t/"*.profraw >/dev/null 2>&1 || { echo "-"; return; }
  llvm-profdata merge -sparse "$dir/profiles/$t/"*.profraw -o "$prof" 2>/dev/null || { echo "-"; return; }
  # TOTAL: regions, missed, %, functions, missed, %, lines, missed, %, ...
  llvm-cov report "$dir/tests/fuzz/$t" -instr-profile="$prof" ${code[$t]} 2>/dev/null |
    awk '/^TOTAL/ { printf "%d/%d %s\n", $8 - $9, $8, $10 }'
}

status=0
printf '\n%-24s %12s %9s %8s %8s  %s\n' target executions cpu_s corpus crashes "lines covered"
for t in "${targets[@]}"; do
  [ -z "$t" ] && continue
  log="$dir/logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  files=$(find "$dir/corpus/$t" -type f | wc -l)
  crashes=$(find "$dir/crashes/$t" -type f -newer "$dir/logs/$t.start" \( -name 'crash-*' \
    -o -name 'timeout-*' -o -name 'leak-*' -o -name 'oom-*' \) | wc -l)
  printf '%-24s %12s %9s %8s %8s  %s\n' "$t" "${execs:-0}" "$(cat "$log.cpu")" "$files" \
    "$crashes" "$(coverage "$t")"
  # Every run, for totals over campaigns: date, target, seconds, executions, CPU s.
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$secs" "${execs:-0}" \
    "$(cat "$log.cpu")" >>"$dir/campaigns.tsv"
  if [ "$(cat "$log.rc")" != 0 ] || [ "$crashes" != 0 ]; then
    status=1
    echo "  $t: exit $(cat "$log.rc"); see $log" >&2
    tail -30 "$log" >&2
  fi
done
exit $status
