#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, writes a synthetic
# interaction log, trains ELASTIC on it on the CPU for about two minutes,
# evaluates it against the popularity ranking (full ranking, leave-one-out
# test split) and prints recommendations for a few users.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh
bash ci/build.sh build
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
mkdir -p out
build/elastic synth --seed 1 -o out/synth.txt
build/elastic train --data out/synth.txt -o out/model.st --max-minutes "${ELASTIC_MINUTES:-2}" \
  --patience 3 --quiet
build/elastic eval --model out/model.st --data out/synth.txt --split test
echo
echo "top-10 recommendations for users 1-3 of out/synth.txt (line<TAB>item:score ...):"
for u in 1 2 3; do
  awk -v u="$u" '$1 == u { printf "%s ", $2 } END { print "" }' out/synth.txt
done | build/elastic recommend --model out/model.st --top 10
