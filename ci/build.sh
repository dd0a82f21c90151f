#!/usr/bin/env bash
# Configures and builds libelastic into a build directory.
#   ci/build.sh BUILD_DIR [extra cmake arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: ci/build.sh BUILD_DIR [cmake args]}
shift
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DELASTIC_WERROR=ON "$@" >"$dir.configure.log" 2>&1 ||
  { cat "$dir.configure.log"; exit 1; }
sed -n '/libelastic .* configuration/,/^-- $/p' "$dir.configure.log"
cmake --build "$dir" -j"$(nproc)"
