#!/usr/bin/env bash
# Configures and builds libelastic into a build directory.
#   ci/build.sh BUILD_DIR [extra cmake arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: ci/build.sh BUILD_DIR [cmake args]}
shift
mkdir -p "$dir"
log="$dir/configure.log"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DELASTIC_WERROR=ON "$@" >"$log" 2>&1 ||
  { cat "$log"; exit 1; }
sed -n '/libelastic .* configuration/,/^-- $/p' "$log"
cmake --build "$dir" -j"$(nproc)"
