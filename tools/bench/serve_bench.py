#!/usr/bin/env python3
"""serve_bench.py - load test of `elastic serve` on loopback against the
in-process throughput of elastic_session_recommend, in one run, on one model
and one machine; writes docs/benchmarks/serve.json, serve.md and
serve_latency.png. A program that prints figures, not a test: CI does not run
it.

  python3 tools/bench/serve_bench.py [--build build] [--out docs/benchmarks]

Needs (it installs nothing): wrk (Debian: apt-get install wrk), matplotlib
(python3 -m pip install matplotlib), and a build with `elastic serve` and
elastic-recommend-bench (cmake --build build --target elastic_cli
elastic_recommend_bench). About 6 minutes with the defaults.

What it does, with the settings of --help:
  1. the machine: CPU model, AVX2/AVX-512, cores, load average around every
     step (another process on the machine shows there);
  2. a model: the default ELASTIC config with num_items=3706 (MovieLens-1M's
     items, as `elastic bench`), random weights (`elastic init --seed`);
  3. in process: elastic-recommend-bench, W threads with a session each and
     T CPU threads per session (the server's split), batches of B = each
     --max-batch of one-user histories of exactly 200 random items, top 10,
     history excluded, for --inproc-seconds; its users/s and the time of one
     full batch. Also the other split of the cores (1 x 2 threads), for the
     record;
  4. closed loop: for each --max-batch U a fresh server (--workers W
     --threads T --http-threads H --max-delay-us D), a 2 s warm-up, then wrk
     (one thread, --latency, tools/bench/serve_bench.lua: one-user POST
     /v1/recommend bodies of 200 random items from --seed, top_k 10) at each
     concurrency C for --duration seconds; requests/s, p50/p90/p99/max from
     wrk, errors, and the mean users per batch from the server's /metrics;
  5. saturation rate of U = its best requests/s over C; the best setting =
     the best (U, C) over all; its requests/s against the in-process users/s
     at B = U, and at B = the mean batch the server formed (measured then);
  6. open loop: for each U a fresh server and wrk again, paced
     (serve_bench.lua with THINK_MS: --open-connections connections, each
     waiting an exponentially distributed think time before each request,
     its mean set so that they offer each fraction of U's saturation rate
     for --open-duration seconds, after a 1 s warm-up). With think times of
     hundreds of ms against responses of a few ms, the merged stream is
     close to Poisson and a slow answer barely delays the next arrival;
     the achieved rate is reported beside the offered one, so that where
     it falls short (near saturation) the shortfall shows. Latency is wrk's,
     from each request's send (wrk2, which corrects for coordinated
     omission, is not in Debian);
  7. targets: best requests/s >= 0.8 x in-process users/s at the same batch
     size; at half of U's saturation rate, p99 <= D + 2 x the in-process
     time of one full batch of U users.
"""
import argparse
import collections
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LUA = os.path.join(HERE, "serve_bench.lua")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


# ==========================================================================
# requirements and the machine
# ==========================================================================

def check_requirements(args):
    missing = []
    if not shutil.which("wrk"):
        missing.append("wrk (Debian: apt-get install wrk)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        missing.append("matplotlib (python3 -m pip install matplotlib)")
    for exe, target in [(args.elastic, "elastic_cli"), (args.inproc, "elastic_recommend_bench")]:
        if not os.access(exe, os.X_OK):
            missing.append(f"{exe} (cmake --build {args.build} --target {target})")
    if not missing and subprocess.run([args.elastic, "serve", "--help"], capture_output=True,
                                      text=True).returncode != 0:
        missing.append(f"{args.elastic} without `serve` (apt-get install libmicrohttpd-dev, "
                       "configure and build again)")
    if missing:
        print("serve_bench.py needs, and installs nothing itself:\n  " + "\n  ".join(missing),
              file=sys.stderr)
        sys.exit(1)


def machine():
    info = {"cpu": platform.processor() or "?", "cores": os.cpu_count(),
            "kernel": platform.release(), "python": platform.python_version()}
    try:
        text = open("/proc/cpuinfo").read()
        m = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
        if m:
            info["cpu"] = m.group(1).strip()
        flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split())
        info["avx2"] = "avx2" in flags and "fma" in flags
        info["avx512"] = "avx512f" in flags
    except (OSError, AttributeError):
        pass
    if shutil.which("lscpu"):
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Hypervisor vendor:\s*(.*)$", out, re.M)
        if m:
            info["hypervisor"] = m.group(1).strip()
    try:
        mem = re.search(r"MemTotal:\s*(\d+)", open("/proc/meminfo").read()).group(1)
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    r = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    info["wrk"] = (r.stdout + r.stderr).splitlines()[0].strip() if (r.stdout + r.stderr) else "?"
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--modversion", "libmicrohttpd"], capture_output=True,
                           text=True)
        info["libmicrohttpd"] = r.stdout.strip() or "?"
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    info["commit"] = r.stdout.strip() or "?"
    return info


# ==========================================================================
# in process
# ==========================================================================

def inproc(args, model, batches, workers, threads, seconds):
    cmd = [args.inproc, "--model", model, "--batches", ",".join(str(b) for b in batches),
           "--workers", str(workers), "--threads", str(threads), "--seconds", str(seconds),
           "--seed", str(args.seed), "--len", str(args.len)]
    before = loadavg()
    r = subprocess.run(cmd, capture_output=True, text=True, env=bench_env())
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr}")
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    for row in rows:
        row["load_before"], row["load_after"] = before, loadavg()
    return rows


def bench_env():
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


# ==========================================================================
# the server
# ==========================================================================

class Server:
    def __init__(self, args, model, max_batch):
        self.flags = ["--workers", str(args.workers), "--threads", str(args.threads),
                      "--http-threads", str(args.http_threads), "--max-batch", str(max_batch),
                      "--max-delay-us", str(args.max_delay_us)] + args.serve_flags
        self.cmd = [args.elastic, "serve", "--model", model, "--listen", "127.0.0.1:0"] + \
            self.flags
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=bench_env())
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            text = self.text()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            if m and " ready" in text:
                self.port = int(m.group(1))
                break
            time.sleep(0.1)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("the server did not start:\n" + self.text())

    def text(self):
        self.log.seek(0)
        return self.log.read()

    def switches(self):
        """Voluntary context switches of every server thread so far: the times a
        thread went to sleep (waits for work, for a batch, for a socket)."""
        n = 0
        for t in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                text = open(f"/proc/{self.proc.pid}/task/{t}/status").read()
            except OSError:
                continue
            m = re.search(r"^voluntary_ctxt_switches:\s*(\d+)", text, re.M)
            n += int(m.group(1)) if m else 0
        return n

    def cpu_seconds(self):
        """The server's CPU time so far (user + system, every thread)."""
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if rc != 0:
            raise RuntimeError(f"the server exited {rc}:\n{self.text()[-3000:]}")


def batch_stats(before, after):
    n = after["elastic_serve_batch_users_count"] - before["elastic_serve_batch_users_count"]
    u = after["elastic_serve_batch_users_sum"] - before["elastic_serve_batch_users_sum"]
    ok = sum(v for k, v in after.items() if k.startswith("elastic_serve_requests_total{") and
             'endpoint="/v1/recommend"' in k and 'status="200"' in k) - \
        sum(v for k, v in before.items() if k.startswith("elastic_serve_requests_total{") and
            'endpoint="/v1/recommend"' in k and 'status="200"' in k)
    return {"batches": int(n), "users": int(u), "mean_batch": u / n if n else 0.0,
            "server_ok": int(ok)}


# ==========================================================================
# closed loop: wrk
# ==========================================================================

def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wrk(args, port, connections, duration, think_ms=None):
    env = dict(os.environ, SEED=str(args.seed), ITEMS=str(args.items), LEN=str(args.len))
    if think_ms:
        env["THINK_MS"] = f"{think_ms:.3f}"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, int(round(duration)))}s", "--latency", "--timeout", "10s",
           "-s", LUA, f"http://127.0.0.1:{port}"]
    cpu0 = children_cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 120)
    line = next((l for l in r.stdout.splitlines() if l.startswith("JSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    res = json.loads(line[5:])
    res["wrk_cpu_s"] = children_cpu() - cpu0
    return res


def closed_loop(args, model):
    """Per --max-batch U: in process at B=U, the server at every C, in process again."""
    rows, inp = [], []
    for u in args.batches:
        inp += [dict(r, when="before") for r in
                inproc(args, model, [u], args.workers, args.threads, args.inproc_seconds)]
        log(f"in process B={u}: {inp[-1]['users_per_s']:.1f} users/s, batch "
            f"{inp[-1]['batch_ms_p50']:.2f} ms")
        server = Server(args, model, u)
        log(f"closed loop: --max-batch {u} on port {server.port}")
        wrk(args, server.port, 8, 2)  # warm-up: plans for the common batch sizes
        for c in args.concurrency:
            before, load0, cpu0 = server.metrics(), loadavg(), server.cpu_seconds()
            sw0 = server.switches()
            res = wrk(args, server.port, c, args.duration)
            res["server_cpu_s"] = server.cpu_seconds() - cpu0
            res["server_switches"] = server.switches() - sw0
            res.update(batch_stats(before, server.metrics()))
            res.update({"max_batch": u, "connections": c, "load_before": load0,
                        "load_after": loadavg()})
            rows.append(res)
            log(f"  C={c:4d}: {res['rps']:8.1f} req/s  p50 {res['p50_ms']:.2f}  "
                f"p99 {res['p99_ms']:.2f} ms  batch {res['mean_batch']:.1f}  server CPU "
                f"{res['server_cpu_s']:.1f} s  load {load0}")
        server.stop()
        inp += [dict(r, when="after") for r in
                inproc(args, model, [u], args.workers, args.threads, args.inproc_seconds)]
        log(f"in process B={u}: {inp[-1]['users_per_s']:.1f} users/s, batch "
            f"{inp[-1]['batch_ms_p50']:.2f} ms")
    return rows, inp


def inproc_mean(rows):
    """users/s, one batch's p50 and CPU ms per user: the mean of the runs at one B."""
    n = len(rows)
    return {"batch": rows[0]["batch"], "users_per_s": sum(r["users_per_s"] for r in rows) / n,
            "batch_ms_p50": sum(r["batch_ms_p50"] for r in rows) / n,
            "cpu_ms_per_user": 1e3 * sum(r["cpu_seconds"] for r in rows) /
            sum(r["users"] for r in rows)}


def paired(args, model, best, realized):
    """The best setting against in process, alternated: --pairs rounds of in
    process at B = U and at B = the mean batch the server formed, then wrk on
    one server at (U, C); the medians. Alternating lets both see the same
    machine when other work comes and goes."""
    u, c = best["max_batch"], best["connections"]
    server = Server(args, model, u)
    wrk(args, server.port, 8, 2)
    rounds = []
    for i in range(args.pairs):
        row = {"round": i}
        for key, b in [("inproc_at_max_batch", u), ("inproc_at_realized", realized)]:
            r = inproc(args, model, [b], args.workers, args.threads, args.pair_seconds)[0]
            row[key] = r["users_per_s"]
            row[key + "_cpu_ms_per_user"] = 1e3 * r["cpu_seconds"] / r["users"]
        before, cpu0 = server.metrics(), server.cpu_seconds()
        w = wrk(args, server.port, c, args.pair_seconds)
        row["server_rps"] = w["rps"]
        row["server_cpu_ms_per_request"] = 1e3 * (server.cpu_seconds() - cpu0) / w["requests"]
        row["mean_batch"] = batch_stats(before, server.metrics())["mean_batch"]
        row["load"] = loadavg()
        rounds.append(row)
        log(f"  pair {i}: in process B={u} {row['inproc_at_max_batch']:.0f}, "
            f"B={realized} {row['inproc_at_realized']:.0f} users/s; server "
            f"{row['server_rps']:.0f} req/s (batch {row['mean_batch']:.1f})")
    server.stop()
    return rounds


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


# ==========================================================================
# open loop: wrk, paced
# ==========================================================================

def open_loop(args, model, best_c):
    """Per U: the saturation rate measured again on this server right before
    (wrk at U's best C for --duration/2 s: the capacity now, as other work
    on the machine comes and goes), then the rates as fractions of it."""
    rows, saturation = [], {}
    for u in args.batches:
        server = Server(args, model, u)
        wrk(args, server.port, 8, 2)
        saturation[u] = wrk(args, server.port, best_c[u], max(2, args.duration // 2))["rps"]
        log(f"open loop: --max-batch {u} on port {server.port}, saturation now "
            f"{saturation[u]:.1f} req/s (wrk C={best_c[u]})")
        for f in args.fractions:
            rate = f * saturation[u]
            before, load0, cpu0 = server.metrics(), loadavg(), server.cpu_seconds()
            sw0 = server.switches()
            think_ms = 1e3 * args.open_connections / rate
            wrk(args, server.port, args.open_connections, 1, think_ms)  # warm-up
            res = wrk(args, server.port, args.open_connections, args.open_duration, think_ms)
            res.update({"offered_rps": rate, "achieved_rps": res["rps"], "think_ms": think_ms,
                        "errors": (res["errors_connect"] + res["errors_read"] +
                                   res["errors_write"] + res["errors_timeout"]),
                        "non_200": res["errors_status"],
                        "client_cpu_share": res["wrk_cpu_s"] / res["seconds"]})
            res["server_cpu_s"] = server.cpu_seconds() - cpu0
            res["server_switches"] = server.switches() - sw0
            res.update(batch_stats(before, server.metrics()))
            res.update({"max_batch": u, "fraction": f, "load_before": load0,
                        "load_after": loadavg()})
            rows.append(res)
            log(f"  {f:.2f} x sat = {rate:7.1f} req/s: achieved {res['achieved_rps']:7.1f}  "
                f"p50 {res['p50_ms']:.2f}  p99 {res['p99_ms']:.2f} ms  batch "
                f"{res['mean_batch']:.1f}  errors {res['errors']}  load {load0}")
        server.stop()
    return rows, saturation


# ==========================================================================
# report
# ==========================================================================

def fmt(v, d=1):
    return "-" if v is None else f"{v:.{d}f}"


def report(res, out_dir, name):
    a = res["settings"]
    m = res["machine"]
    inp = {r["batch"]: r for r in res["inproc_mean"]}
    best = res["best"]
    lines = []
    w = lines.append
    w("# `elastic serve` under load")
    w("")
    w("Written by `tools/bench/serve_bench.py` (the figures, this page and "
      f"[{name}_latency.png]({name}_latency.png); every number is also in "
      f"[{name}.json]({name}.json)). How the server batches: "
      "[docs/serving.md](../serving.md#batching).")
    w("")
    w("```sh")
    w(res["command"])
    w("```")
    w("")
    w(f"Run {res['started']} (UTC), commit `{m['commit']}`, {res['minutes']:.1f} minutes.")
    w("")
    w("| machine | |")
    w("| --- | --- |")
    w(f"| CPU | {m['cpu']}, {m['cores']} cores"
      f"{', ' + m['hypervisor'] + ' guest' if m.get('hypervisor') else ''} |")
    w(f"| vector units | AVX2+FMA: {'yes' if m.get('avx2') else 'no'}, AVX-512: "
      f"{'yes' if m.get('avx512') else 'no'} (kernels: `{res['inproc'][0]['backend']}`) |")
    w(f"| memory, kernel | {m.get('memory_gib', '?')} GiB, Linux {m['kernel']} |")
    w(f"| load generator | {m['wrk']}, one thread (closed loop; open loop: paced by "
      "serve_bench.lua's think times) |")
    w(f"| libmicrohttpd | {m.get('libmicrohttpd', '?')} |")
    w(f"| load average | {res['load_start']} at the start, {res['load_end']} at the end "
      "(1, 5, 15 min; the cores are shared with other work: see the load beside each row in "
      "serve.json) |")
    w("")
    w("| settings | |")
    w("| --- | --- |")
    w(f"| model | default ELASTIC config, num_items={a['items']} (`elastic init "
      f"num_items={a['items']} --seed {a['seed']}`), random weights |")
    w(f"| requests | one user each: a history of {a['len']} random items (seed {a['seed']}), "
      "`top_k` 10, history excluded; `POST /v1/recommend` on keep-alive connections |")
    w(f"| server | `elastic serve --workers {a['workers']} --threads {a['threads']} "
      f"--http-threads {a['http_threads']} --max-delay-us {a['max_delay_us']} --max-batch U"
      f"{' ' + ' '.join(a['serve_flags']) if a['serve_flags'] else ''}`, "
      f"OMP_WAIT_POLICY={a['omp_wait_policy']}, CPU backend |")
    w(f"| in process | `elastic-recommend-bench --workers {a['workers']} --threads "
      f"{a['threads']}`: {a['workers']} threads, a session each, back-to-back "
      f"`elastic_session_recommend` calls of B users (the same kind of users), "
      f"{a['inproc_seconds']} s per B |")
    w(f"| closed loop | wrk -t1 -c C -d {a['duration']}s --latency, after a 2 s warm-up per "
      "server |")
    w(f"| open loop | wrk -t1 -c {a['open_connections']} -d {a['open_duration']:.0f}s "
      "--latency, each connection waiting an exponential think time (mean: connections / "
      "offered rate) before each request, so that together they offer a fraction of U's "
      "saturation rate (measured again on the open loop's server right before: wrk at U's "
      "best C), after a 1 s warm-up; latency from each request's send |")
    w("")
    w("## In process: `elastic_session_recommend`")
    w("")
    w("Measured right before and right after the server's closed-loop runs at the same U "
      "(`when`), so that both see the same machine; the targets use their mean. CPU: the "
      "process's CPU time (every thread) per user.")
    w("")
    w("| B | workers x threads | when | users/s | one batch p50 (ms) | p90 (ms) | "
      "CPU ms/user | load |")
    w("| ---: | --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in res["inproc"] + res["inproc_realized"] + res["inproc_other_split"]:
        when = r.get("when", "after the closed loop" if r in res["inproc_realized"] else
                     "last, for the record")
        w(f"| {r['batch']} | {r['workers']} x {r['threads']} | {when} | "
          f"{r['users_per_s']:.0f} | {r['batch_ms_p50']:.2f} | {r['batch_ms_p90']:.2f} | "
          f"{1e3 * r['cpu_seconds'] / r['users']:.3f} | {r['load_before'][0]:.2f} |")
    w("")
    w("## Closed loop: wrk, one-user requests")
    w("")
    w("Requests/s and latency (ms) at C connections, each sending its next request when the "
      "last is answered; the mean users per batch from the server's metrics; the server's "
      "CPU time (every thread) per request and the times one of its threads went to sleep "
      "(voluntary context switches: waits for work, for a batch, for sockets) per request; "
      "req/s over the in-process users/s at B = U.")
    w("")
    w("| --max-batch U | C | req/s | p50 | p90 | p99 | max | users/batch | errors | "
      "server CPU ms/req | server sleeps/req | / in-process(B=U) | load |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
      "--- |")
    for r in res["closed"]:
        errs = (r["errors_connect"] + r["errors_read"] + r["errors_write"] +
                r["errors_status"] + r["errors_timeout"])
        ref = inp.get(r["max_batch"])
        ratio = r["rps"] / ref["users_per_s"] if ref else None
        mark = " **best**" if (r["max_batch"], r["connections"]) == (best["max_batch"],
                                                                   best["connections"]) else ""
        w(f"| {r['max_batch']} | {r['connections']} | {r['rps']:.0f}{mark} | "
          f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
          f"{r['mean_batch']:.1f} | {errs} | {fmt(r['server_cpu_ms_per_request'], 3)} | "
          f"{fmt(r['server_switches_per_request'], 2)} | "
          f"{fmt(ratio, 2)} | {r['load_before'][0]:.2f} |")
    w("")
    w("### The best setting, alternated with in process")
    w("")
    w("| round | in process B=U (users/s) | in process B=mean batch (users/s) | server (req/s) "
      "| server / in process B=U | users/batch | load |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in res["paired"]:
        w(f"| {r['round']} | {r['inproc_at_max_batch']:.0f} | {r['inproc_at_realized']:.0f} | "
          f"{r['server_rps']:.0f} | {r['server_rps'] / r['inproc_at_max_batch']:.2f} | "
          f"{r['mean_batch']:.1f} | {r['load'][0]:.2f} |")
    w("")
    w("## Open loop: latency against offered load")
    w("")
    w(f"![p50 and p99 latency against offered load]({name}_latency.png)")
    w("")
    w("Latency (ms) from each request's send to its answer (wrk's). Offered: what the paced "
      "connections would send if every answer were instant; achieved: what they sent (a slow "
      "answer holds its connection's next request back, so near saturation the achieved rate "
      "falls below the offered one). Client CPU: wrk's CPU time over the run's length.")
    w("")
    w("| --max-batch U | offered (x saturation) | offered req/s | achieved req/s | p50 | p90 | "
      "p99 | max | users/batch | errors | client CPU | load |")
    w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in res["open"]:
        w(f"| {r['max_batch']} | {r['fraction']:.2f} | {r['offered_rps']:.0f} | "
          f"{r['achieved_rps']:.0f} | {fmt(r['p50_ms'], 2)} | {fmt(r['p90_ms'], 2)} | "
          f"{fmt(r['p99_ms'], 2)} | {fmt(r['max_ms'], 1)} | {r['mean_batch']:.1f} | "
          f"{r['errors'] + r['non_200']} | "
          f"{100 * r['client_cpu_share']:.0f}% | {r['load_before'][0]:.2f} |")
    w("")
    w("## Targets")
    w("")
    t = res["targets"]
    thr = t["throughput"]
    w(f"- **Throughput, target >= 0.8 of in-process**: the best setting of the sweep is "
      f"--max-batch {best['max_batch']} at C={best['connections']} ({best['rps']:.0f} req/s, "
      f"mean batch {best['mean_batch']:.1f} users). Checked in {len(res['paired'])} "
      f"alternated rounds (in process at B={best['max_batch']}, in process at "
      f"B={thr['realized_batch']}, the server, {res['settings']['pair_seconds']:.0f} s each; "
      f"medians): the server {thr['server_rps']:.0f} req/s, in process at "
      f"B={best['max_batch']} {thr['inproc_at_max_batch']:.0f} users/s: "
      f"**{thr['ratio']:.2f}** ({'met' if thr['met'] else 'missed'}; rounds: "
      f"{', '.join(f'{x:.2f}' for x in thr['ratio_rounds'])}). Against in process at the "
      f"batch size the server formed (B={thr['realized_batch']}): "
      f"{thr['inproc_at_realized']:.0f} users/s, {thr['ratio_realized']:.2f}. CPU time per "
      f"user: the server {thr['server_cpu_ms_per_request']:.3f} ms (HTTP, JSON, batching and "
      f"compute, every thread), in process at B={thr['realized_batch']} "
      f"{thr['inproc_cpu_ms_per_user_realized']:.3f} ms: {thr['cpu_efficiency']:.2f}.")
    for p in t["p99"]:
        w(f"- **p99 at half saturation, --max-batch {p['max_batch']}**: offered "
          f"{p['offered_rps']:.0f} req/s (0.5 x {p['saturation_rps']:.0f}, the saturation rate "
          f"measured right before; in the sweep {p['saturation_sweep_rps']:.0f}), p99 "
          f"{fmt(p['p99_ms'], 2)} ms; bound D + 2 x one full batch = {p['max_delay_ms']:.1f} + "
          f"2 x {p['full_batch_ms']:.2f} = {p['bound_ms']:.2f} ms: "
          f"**{'met' if p['met'] else 'missed'}**.")
    w("")
    open(os.path.join(out_dir, f"{name}.md"), "w").write("\n".join(lines) + "\n")


def plot(res, out_dir, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    a = res["settings"]
    for ax, key, title in [(axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")]:
        for u in a["batches"]:
            rows = [r for r in res["open"] if r["max_batch"] == u and r[key] is not None]
            ax.plot([r["offered_rps"] for r in rows], [r[key] for r in rows], marker="o",
                    label=f"--max-batch {u}")
        ax.set_xlabel("offered load (requests/s, Poisson, one user each)")
        ax.set_ylabel(f"{title} latency (ms)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"{title} latency, open loop")
        ax.legend()
    fig.suptitle(f"elastic serve --workers {a['workers']} --threads {a['threads']} "
                 f"--max-delay-us {a['max_delay_us']}: {res['machine']['cpu']}, "
                 f"{res['machine']['cores']} cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, f"{name}_latency.png"), dpi=110)


# ==========================================================================
# main
# ==========================================================================

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks"))
    ap.add_argument("--name", default="serve",
                    help="output names: NAME.json, NAME.md, NAME_latency.png (default serve)")
    ap.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per worker (default 1)")
    ap.add_argument("--http-threads", type=int, default=2, help="(default 2)")
    ap.add_argument("--max-delay-us", type=int, default=2000, help="(default 2000)")
    ap.add_argument("--batches", default="1,32,256", help="--max-batch values")
    ap.add_argument("--concurrency", default="1,8,64,256", help="wrk connections")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--fractions", default="0.1,0.25,0.5,0.75,0.9",
                    help="open-loop rates, as fractions of the saturation rate")
    ap.add_argument("--open-duration", type=int, default=8, help="seconds per open-loop rate")
    ap.add_argument("--open-connections", type=int, default=256,
                    help="paced wrk connections of the open loop (default 256)")
    ap.add_argument("--inproc-seconds", type=float, default=5)
    ap.add_argument("--pairs", type=int, default=3,
                    help="rounds of the alternated best-setting check (default 3)")
    ap.add_argument("--pair-seconds", type=int, default=4)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--len", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serve-flag", action="append", default=[], dest="serve_flags",
                    help="another flag for elastic serve (repeatable)")
    args = ap.parse_args()
    args.batches = [int(x) for x in args.batches.split(",")]
    args.concurrency = [int(x) for x in args.concurrency.split(",")]
    args.fractions = [float(x) for x in args.fractions.split(",")]
    if 0.5 not in args.fractions:
        args.fractions = sorted(args.fractions + [0.5])
    args.elastic = os.path.join(args.build, "elastic")
    args.inproc = os.path.join(args.build, "elastic-recommend-bench")
    check_requirements(args)
    os.makedirs(args.out, exist_ok=True)

    t_start = time.time()
    res = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
           "command": "python3 tools/bench/serve_bench.py " + " ".join(
               a if " " not in a else repr(a) for a in sys.argv[1:]),
           "machine": machine(), "load_start": loadavg()}
    res["command"] = res["command"].rstrip()
    settings = {k: getattr(args, k) for k in
                ["workers", "threads", "http_threads", "max_delay_us", "batches", "concurrency",
                 "duration", "fractions", "open_duration", "open_connections", "inproc_seconds", "pairs",
                 "pair_seconds", "items", "len", "seed", "serve_flags"]}
    settings["omp_wait_policy"] = bench_env()["OMP_WAIT_POLICY"]
    res["settings"] = settings
    log(f"machine: {res['machine']}")

    tmp = tempfile.mkdtemp(prefix="elastic-serve-bench-")
    try:
        model = os.path.join(tmp, "model.st")
        subprocess.run([args.elastic, "init", f"num_items={args.items}", "--seed",
                        str(args.seed), "-o", model], check=True, capture_output=True)
        res["closed"], res["inproc"] = closed_loop(args, model)
        saturation = {u: max(r["rps"] for r in res["closed"] if r["max_batch"] == u)
                      for u in args.batches}
        best_c = {u: max((r for r in res["closed"] if r["max_batch"] == u),
                         key=lambda r: r["rps"])["connections"] for u in args.batches}
        best = max(res["closed"], key=lambda r: r["rps"])
        res["best"] = best
        realized = max(1, int(round(best["mean_batch"])))
        log(f"in process at the realized batch {realized}")
        res["inproc_realized"] = [] if realized in args.batches else inproc(
            args, model, [realized], args.workers, args.threads, args.inproc_seconds)
        log(f"alternated check of the best setting (--max-batch {best['max_batch']}, "
            f"C={best['connections']})")
        res["paired"] = paired(args, model, best, realized)
        res["open"], res["saturation_open"] = open_loop(args, model, best_c)
        res["saturation_sweep"] = saturation
        log("in process, the other split of the cores (for the record)")
        other_w, other_t = (1, args.workers * args.threads) if args.workers > 1 else \
            (args.threads, 1)
        res["inproc_other_split"] = inproc(args, model, args.batches, other_w, other_t,
                                           args.inproc_seconds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    by_b = collections.defaultdict(list)
    for r in res["inproc"] + res["inproc_realized"]:
        by_b[r["batch"]].append(r)
    inp = {b: inproc_mean(rows) for b, rows in by_b.items()}
    res["inproc_mean"] = sorted(inp.values(), key=lambda r: r["batch"])
    for r in res["closed"] + res["open"]:
        n = r["requests"]
        r["server_cpu_ms_per_request"] = 1e3 * r["server_cpu_s"] / n if n else None
        r["server_switches_per_request"] = r["server_switches"] / n if n else None
    # The target's figures: medians of the alternated rounds (the sweep's own
    # in-process runs, minutes apart, are in the tables beside it).
    pr = res["paired"]
    thr = {"server_rps": median([r["server_rps"] for r in pr]),
           "inproc_at_max_batch": median([r["inproc_at_max_batch"] for r in pr]),
           "realized_batch": realized,
           "inproc_at_realized": median([r["inproc_at_realized"] for r in pr]),
           "sweep_rps": best["rps"],
           "sweep_inproc_at_max_batch": inp[best["max_batch"]]["users_per_s"]}
    thr["ratio"] = thr["server_rps"] / thr["inproc_at_max_batch"]
    thr["ratio_realized"] = thr["server_rps"] / thr["inproc_at_realized"]
    thr["ratio_rounds"] = [r["server_rps"] / r["inproc_at_max_batch"] for r in pr]
    thr["met"] = thr["ratio"] >= 0.8
    # CPU time per user, server (every thread: HTTP, JSON, batching, compute)
    # against in process at the batch the server formed: the server's overhead,
    # whatever else runs on the machine.
    thr["server_cpu_ms_per_request"] = median([r["server_cpu_ms_per_request"] for r in pr])
    thr["inproc_cpu_ms_per_user_realized"] = median(
        [r["inproc_at_realized_cpu_ms_per_user"] for r in pr])
    thr["cpu_efficiency"] = thr["inproc_cpu_ms_per_user_realized"] / \
        thr["server_cpu_ms_per_request"]
    p99 = []
    for u in args.batches:
        r = next(r for r in res["open"] if r["max_batch"] == u and r["fraction"] == 0.5)
        full = inp[u]["batch_ms_p50"]
        bound = args.max_delay_us / 1e3 + 2 * full
        p99.append({"max_batch": u, "saturation_rps": res["saturation_open"][u],
                    "saturation_sweep_rps": saturation[u],
                    "offered_rps": r["offered_rps"], "p99_ms": r["p99_ms"],
                    "max_delay_ms": args.max_delay_us / 1e3, "full_batch_ms": full,
                    "bound_ms": bound,
                    "met": r["p99_ms"] is not None and r["p99_ms"] <= bound and
                    r["errors"] == 0})
    res["targets"] = {"throughput": thr, "p99": p99}
    res["load_end"] = loadavg()
    res["minutes"] = (time.time() - t_start) / 60
    n = args.name
    with open(os.path.join(args.out, f"{n}.json"), "w") as f:
        json.dump(res, f, indent=1)
    report(res, args.out, n)
    plot(res, args.out, n)
    log(f"wrote {args.out}/{n}.json, {n}.md, {n}_latency.png ({res['minutes']:.1f} min)")
    print(open(os.path.join(args.out, f"{n}.md")).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
