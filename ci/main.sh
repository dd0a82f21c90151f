#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, writes a synthetic
# interaction log, trains ELASTIC on it on the CPU for about two minutes,
# evaluates it against the popularity ranking (full ranking, leave-one-out
# test split), prints recommendations for a few users, then serves the model
# over HTTP (elastic serve), asks it for recommendations with curl and stops it.
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

# Serving: elastic serve on a free loopback port, one request with curl, SIGTERM.
if build/elastic serve --help >/dev/null 2>&1; then
  echo
  log=out/serve.log
  build/elastic serve --model out/model.st --listen 127.0.0.1:0 --access-log 2>"$log" &
  server=$!
  port="" ready=0
  for _ in $(seq 300); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then ready=1; break; fi
    sleep 0.1
  done
  [ "$ready" = 1 ] || { cat "$log"; kill "$server"; exit 1; }
  body=$(awk '$1 == 1 { printf "%s\"%s\"", n++ ? "," : "", $2 }' out/synth.txt)
  echo "POST /v1/recommend on 127.0.0.1:$port (user 1's history, top 5):"
  curl -sf "http://127.0.0.1:$port/v1/recommend" -H 'Content-Type: application/json' \
    -d "{\"history\": [$body], \"top_k\": 5}"
  echo
  kill -TERM "$server"
  wait "$server"
  grep -E "listening|backend|ready|access|drained|stopped" "$log"
else
  echo "elastic serve is not built (libmicrohttpd missing): skipping the serving demo"
fi
