-- serve_bench.lua - wrk script of tools/bench/serve_bench.py: POSTs
-- one-user /v1/recommend requests (a history of LEN random items in 1..ITEMS,
-- top_k 10; the bodies are made per wrk thread from SEED + thread number, so
-- every run sends the same requests) and prints, at the end, one line
--   JSON {"requests": ..., "seconds": ..., "rps": ..., "p50_ms": ...}
-- with wrk's latency percentiles and error counts, for the script to parse.
-- Settings from the environment: SEED (1), ITEMS (3706), LEN (200), POOL
-- (distinct bodies per thread, 256), THINK_MS (unset: each connection sends
-- its next request as soon as the last is answered, a closed loop; set: it
-- first waits an exponentially distributed time of that mean, in ms, so
-- that C connections offer about C * 1000 / THINK_MS requests/s as a
-- Poisson stream while responses are short against THINK_MS: the open
-- loop of serve_bench.py).
local seed = tonumber(os.getenv("SEED") or "1")
local items = tonumber(os.getenv("ITEMS") or "3706")
local len = tonumber(os.getenv("LEN") or "200")
local pool = tonumber(os.getenv("POOL") or "256")
local think_ms = tonumber(os.getenv("THINK_MS") or "0")

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

local bodies = {}
local next_body = 0

function init(args)
   math.randomseed(seed * 1000 + (tid or 0))
   for b = 1, pool do
      local h = {}
      for i = 1, len do
         h[i] = math.random(1, items)
      end
      bodies[b] = '{"history":[' .. table.concat(h, ",") .. '],"top_k":10}'
   end
   wrk.method = "POST"
   wrk.path = "/v1/recommend"
   wrk.headers["Content-Type"] = "application/json"
end

if think_ms > 0 then
   function delay()
      -- wrk's timers take whole milliseconds: round, keeping the mean
      return math.floor(-think_ms * math.log(1 - math.random()) + math.random())
   end
end

function request()
   next_body = next_body % pool + 1
   return wrk.format(nil, nil, nil, bodies[next_body])
end

function done(summary, latency, requests)
   local e = summary.errors
   local s = summary.duration / 1e6
   io.write(string.format(
      'JSON {"requests": %d, "seconds": %.3f, "rps": %.2f, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
      '"p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, "errors_connect": %d, ' ..
      '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
      summary.requests, s, summary.requests / s, latency:percentile(50) / 1e3,
      latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
      latency.mean / 1e3, e.connect, e.read, e.write, e.status, e.timeout))
end
