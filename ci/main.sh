#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, creates an ELASTIC
# model with random weights and prints recommendations for a few histories.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
bash ci/build.sh build
mkdir -p out
build/elastic init num_items=3706 --seed 1 -o out/model.st
build/elastic info out/model.st | head -12
echo "top-10 recommendations (line<TAB>item:score ...):"
printf '%s\n' "1 2 3 4 5" "10 20 30 40 50 60 70 80 90" "3000 1 2999" |
  build/elastic recommend --model out/model.st --top 10
