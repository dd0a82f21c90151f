#!/usr/bin/env bash
# Configures and builds libelastic into a build directory.
#   ci/build.sh BUILD_DIR [extra cmake arguments...] [--target T ...]
# With --target, only those targets (and what they need) are built.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: ci/build.sh BUILD_DIR [cmake args] [--target T ...]}
shift
args=() targets=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--target" ]; then
    targets+=(--target "${2:?--target needs a name}")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
mkdir -p "$dir"
log="$dir/configure.log"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DELASTIC_WERROR=ON ${args[@]+"${args[@]}"} >"$log" 2>&1 ||
  { cat "$log"; exit 1; }
sed -n '/libelastic .* configuration/,/^-- $/p' "$log"
cmake --build "$dir" -j"$(nproc)" ${targets[@]+"${targets[@]}"}
