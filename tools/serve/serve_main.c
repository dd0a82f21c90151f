/*
 * serve_main.c - `elastic serve`: the flags, startup (listen, load and warm
 * up the model, start the workers), the control loop (reloads on SIGHUP and
 * POST /admin/reload, freeing retired model generations) and graceful
 * shutdown on SIGTERM/SIGINT (at once: readyz turns 503, no new
 * connections, a reload in progress is abandoned; then every accepted
 * request answered within --drain-seconds, exit 0).
 *
 * Threads: libmicrohttpd's pool (HTTP) and its deadline sweeper
 * (serve_http.c), the job pool (JSON, serve_pool.c), the batcher's workers
 * and reaper (serve_batcher.c), a signal thread (sigwait: it posts requests
 * to the control loop and starts the drain; joined before anything it uses
 * is freed), and this one, which runs the control loop. Signals are
 * blocked in every thread but the signal thread.
 */
#include "cli_util.h"
#include "commands.h"
#include "serve_app.h"
#include "serve_http.h"
#include "serve_log.h"
#include "serve_routes.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char cmd_serve_usage[] =
    "usage: elastic serve --model MODEL [options]\n"
    "Serves recommendations over HTTP/JSON with dynamic batching:\n"
    "  POST /v1/recommend {\"histories\": [[item, ...], ...], \"top_k\": 10,\n"
    "                      \"exclude_history\": true, \"candidates\": [[item, ...], ...]}\n"
    "  POST /v1/user_vectors {\"histories\": ...}   GET /v1/model   GET /metrics\n"
    "  GET /healthz   GET /readyz   POST /admin/reload (loopback only; SIGHUP does the same)\n"
    "  -m, --model M            model file (required); a model from `elastic train` takes\n"
    "                           and returns the data's own item ids\n"
    "      --listen ADDR:PORT   address to listen on (default 127.0.0.1:8080; port 0 picks\n"
    "                           a free one; 0.0.0.0:PORT for every interface)\n" CLI_USAGE_RUN
        CLI_USAGE_REFERENCE
    "      --workers W          worker threads, each with its own session (default 2);\n"
    "                           --threads defaults to the CPUs this process may use\n"
    "                           (affinity, cgroup quota) divided among them\n"
    "      --max-batch U        users per batch (default 64)\n"
    "      --max-delay-us D     longest wait for a batch to fill (default 2000)\n"
    "      --max-queue Q        requests waiting before 503 + Retry-After (default 1024)\n"
    "      --timeout-ms MS      a request not computed by then gets 504 (default 10000)\n"
    "      --drain-seconds S    on SIGTERM/SIGINT, time to answer accepted requests (default 30)\n"
    "      --max-body BYTES     request body limit, 413 over it (default 4194304)\n"
    "      --max-body-memory BYTES  request bodies held at once, in all; 503 + Retry-After\n"
    "                           over it (default 268435456, at least --max-body; 0: no limit)\n"
    "      --max-users N        users per request (default 256)\n"
    "      --max-history N      items per history (default 10000)\n"
    "      --max-top-k K        largest top_k (default 1000)\n"
    "      --max-candidates N   candidates per user (default 10000)\n"
    "      --read-timeout-ms MS a request's headers must arrive within MS (else the connection\n"
    "                           is closed), each piece of its body within MS of the last\n"
    "                           (else 408) (default 10000)\n"
    "      --idle-timeout S     a silent connection is closed (default 30)\n"
    "      --http-threads N     HTTP threads (default 4)\n"
    "      --json-threads N     threads that parse request bodies and render responses\n"
    "                           (default 2)\n"
    "      --max-connections N  open connections (default 1024)\n"
    "      --max-connections-per-ip N  open connections from one address (default 0: no\n"
    "                           limit; behind a proxy every client has the proxy's address)\n"
    "      --pin-workers        pin each worker (and its --threads CPU threads) to its own\n"
    "                           CPUs of the affinity mask: fewer migrations and warmer\n"
    "                           caches on a machine the server has to itself\n"
    "      --access-log         one log line per request\n"
    "      --debug-delay-ms MS  testing: every batch waits MS before computing\n"
    "      --debug-parse-delay-ms MS   testing: every request body waits MS before parsing\n"
    "      --debug-reload-delay-ms MS  testing: every reload sleeps MS between summing and\n"
    "                           loading the file\n"
    "  -h, --help               this text\n"
    "Logs go to stderr. OMP_WAIT_POLICY=PASSIVE keeps idle CPU threads from spinning.\n";

/* ---------------------------------------------------------------- options */

static void defaults(serve_options *o)
{
    memset(o, 0, sizeof *o);
    cli_run_defaults(&o->session);
    o->listen = "127.0.0.1:8080";
    o->workers = 2;
    o->max_batch = 64;
    o->max_delay_us = 2000;
    o->max_queue = 1024;
    o->timeout_ms = 10000;
    o->drain_seconds = 30;
    o->http_threads = 4;
    o->json_threads = 2;
    o->max_connections = 1024;
    o->max_body_memory = (size_t)256 << 20;
    o->idle_timeout_s = 30;
    o->read_timeout_ms = 10000;
    serve_limits_default(&o->limits);
}

/* Parses the command line into *o; returns -1 to go on, else the exit status. */
static int parse(int argc, char **argv, serve_options *o)
{
    enum {
        O_LISTEN = 300,
        O_WORKERS,
        O_MAX_BATCH,
        O_MAX_DELAY,
        O_MAX_QUEUE,
        O_TIMEOUT,
        O_DRAIN,
        O_MAX_BODY,
        O_MAX_USERS,
        O_MAX_HISTORY,
        O_MAX_TOP_K,
        O_MAX_CANDIDATES,
        O_READ_TIMEOUT,
        O_IDLE_TIMEOUT,
        O_HTTP_THREADS,
        O_JSON_THREADS,
        O_MAX_CONNECTIONS,
        O_MAX_PER_IP,
        O_MAX_BODY_MEMORY,
        O_ACCESS_LOG,
        O_PIN_WORKERS,
        O_DEBUG_DELAY,
        O_DEBUG_PARSE_DELAY,
        O_DEBUG_RELOAD_DELAY
    };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"listen", required_argument, 0, O_LISTEN},
        {"workers", required_argument, 0, O_WORKERS},
        {"max-batch", required_argument, 0, O_MAX_BATCH},
        {"max-delay-us", required_argument, 0, O_MAX_DELAY},
        {"max-queue", required_argument, 0, O_MAX_QUEUE},
        {"timeout-ms", required_argument, 0, O_TIMEOUT},
        {"drain-seconds", required_argument, 0, O_DRAIN},
        {"max-body", required_argument, 0, O_MAX_BODY},
        {"max-users", required_argument, 0, O_MAX_USERS},
        {"max-history", required_argument, 0, O_MAX_HISTORY},
        {"max-top-k", required_argument, 0, O_MAX_TOP_K},
        {"max-candidates", required_argument, 0, O_MAX_CANDIDATES},
        {"read-timeout-ms", required_argument, 0, O_READ_TIMEOUT},
        {"idle-timeout", required_argument, 0, O_IDLE_TIMEOUT},
        {"http-threads", required_argument, 0, O_HTTP_THREADS},
        {"json-threads", required_argument, 0, O_JSON_THREADS},
        {"max-connections", required_argument, 0, O_MAX_CONNECTIONS},
        {"max-connections-per-ip", required_argument, 0, O_MAX_PER_IP},
        {"max-body-memory", required_argument, 0, O_MAX_BODY_MEMORY},
        {"access-log", no_argument, 0, O_ACCESS_LOG},
        {"pin-workers", no_argument, 0, O_PIN_WORKERS},
        {"debug-delay-ms", required_argument, 0, O_DEBUG_DELAY},
        {"debug-parse-delay-ms", required_argument, 0, O_DEBUG_PARSE_DELAY},
        {"debug-reload-delay-ms", required_argument, 0, O_DEBUG_RELOAD_DELAY},
        {0, 0, 0, 0}};
    /* Integer flags: code, name, range, destination. */
    const struct {
        int code;
        const char *name;
        long long lo, hi;
        int *dst;
    } ints[] = {
        {O_WORKERS, "--workers", 1, 256, &o->workers},
        {O_MAX_BATCH, "--max-batch", 1, 1 << 16, &o->max_batch},
        {O_MAX_DELAY, "--max-delay-us", 0, 10000000, &o->max_delay_us},
        {O_MAX_QUEUE, "--max-queue", 1, 1 << 20, &o->max_queue},
        {O_TIMEOUT, "--timeout-ms", 1, 3600000, &o->timeout_ms},
        {O_DRAIN, "--drain-seconds", 0, 3600, &o->drain_seconds},
        {O_MAX_USERS, "--max-users", 1, 1 << 20, &o->limits.max_users},
        {O_MAX_HISTORY, "--max-history", 1, 1 << 24, &o->limits.max_history},
        {O_MAX_TOP_K, "--max-top-k", 1, 1 << 24, &o->limits.max_top_k},
        {O_MAX_CANDIDATES, "--max-candidates", 1, 1 << 24, &o->limits.max_candidates},
        {O_READ_TIMEOUT, "--read-timeout-ms", 1, 3600000, &o->read_timeout_ms},
        {O_IDLE_TIMEOUT, "--idle-timeout", 1, 86400, &o->idle_timeout_s},
        {O_HTTP_THREADS, "--http-threads", 1, 256, &o->http_threads},
        {O_JSON_THREADS, "--json-threads", 1, 256, &o->json_threads},
        {O_MAX_CONNECTIONS, "--max-connections", 1, 1 << 20, &o->max_connections},
        {O_MAX_PER_IP, "--max-connections-per-ip", 0, 1 << 20, &o->max_per_ip},
        {O_DEBUG_DELAY, "--debug-delay-ms", 0, 60000, &o->debug_delay_ms},
        {O_DEBUG_PARSE_DELAY, "--debug-parse-delay-ms", 0, 60000, &o->debug_parse_delay_ms},
        {O_DEBUG_RELOAD_DELAY, "--debug-reload-delay-ms", 0, 600000, &o->debug_reload_delay_ms},
    };
    int body_memory_set = 0;
    int c;
    long long v;
    while ((c = cli_getopt(argc, argv, "m:", opts, CLI_RUN | CLI_RUN_REFERENCE, &o->session)) !=
           -1) {
        int handled = 0;
        for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !handled; i++)
            if (ints[i].code == c) {
                if (cli_int(optarg, ints[i].name, ints[i].lo, ints[i].hi, &v)) return 2;
                *ints[i].dst = (int)v;
                handled = 1;
            }
        if (handled) continue;
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case O_LISTEN: o->listen = optarg; break;
        case O_MAX_BODY:
            if (cli_int(optarg, "--max-body", 16, 1ll << 32, &v)) return 2;
            o->limits.max_body = (size_t)v;
            break;
        case O_MAX_BODY_MEMORY:
            if (cli_int(optarg, "--max-body-memory", 0, 1ll << 40, &v)) return 2;
            o->max_body_memory = (size_t)v;
            body_memory_set = 1;
            break;
        case O_ACCESS_LOG: o->access_log = 1; break;
        case O_PIN_WORKERS: o->pin_workers = 1; break;
        default: return cli_stop(c);
        }
    }
    if (!o->model_path) return cli_usage_error("--model is required");
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (o->max_body_memory && o->max_body_memory < o->limits.max_body) {
        if (body_memory_set)
            return cli_usage_error("--max-body-memory %zu is under --max-body %zu: no body of "
                                   "the largest size could be taken",
                                   o->max_body_memory, o->limits.max_body);
        o->max_body_memory = o->limits.max_body;
    }
    return -1;
}

/* --threads on the CPU backend, when not given: the CPUs this process may
 * use (its affinity mask, its cgroup's quota) divided among the workers. */
static void default_threads(serve_options *o)
{
    if (o->session.num_threads != 0 || strcmp(o->session.backend, "cpu")) return;
    serve_cpus c;
    int cpus = serve_available_cpus(&c);
    o->session.num_threads = cpus > o->workers ? cpus / o->workers : 1;
    char quota[32] = "none";
    if (c.quota) snprintf(quota, sizeof quota, "%d CPUs", c.quota);
    serve_log("CPUs: %d usable (online %d, affinity %d, cgroup quota %s): --threads %d per "
              "worker",
              cpus, c.online, c.affinity, quota, o->session.num_threads);
}

/* --pin-workers: worker i (on its own thread) takes CPUs [i T, (i + 1) T) of
 * its affinity mask, T its --threads; its OpenMP threads, made later by that
 * thread, inherit them. */
static void pin_worker(int index, void *ctx)
{
    const serve_options *o = ctx;
    int t = o->session.num_threads;
    char cpus[256];
    if (t <= 0) /* a backend other than cpu, without --threads: its count is its own */
        serve_log("worker %d not pinned: give --threads, the CPU threads of a worker, to pin",
                  index);
    else if (serve_pin_thread(index * t, t, cpus, sizeof cpus))
        serve_log("worker %d not pinned: %s", index, cpus);
    else
        serve_log("worker %d pinned to CPU %s", index, cpus);
}

/* ---------------------------------------------------------------- control */

static sigset_t control_signals;

/* The signal thread: joined before the app is freed (signal_quit, then a
 * SIGHUP to wake its sigwait). */
typedef struct signal_thread {
    serve_app *app;
    pthread_t thread;
    int started;
    atomic_int quit;
} signal_thread;

/* sigwait for SIGHUP, SIGTERM and SIGINT; a second SIGTERM/SIGINT during
 * the drain ends the process at once. */
static void *signal_main(void *arg)
{
    signal_thread *st = arg;
    serve_app *app = st->app;
    serve_thread_name("serve-signals", -1);
    for (;;) {
        int sig = 0;
        if (sigwait(&control_signals, &sig)) continue;
        if (atomic_load(&st->quit)) break;
        if (sig == SIGHUP) {
            serve_log("SIGHUP: reload requested");
            serve_app_request_reload(app, NULL);
            continue;
        }
        const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
        if (serve_app_request_stop(app)) {
            serve_log("%s again: exiting without draining", name);
            _exit(1);
        }
        serve_log("%s: shutting down (/readyz is 503, no new connections)", name);
    }
    return NULL;
}

static void signal_thread_start(signal_thread *st, serve_app *app)
{
    st->app = app;
    atomic_init(&st->quit, 0);
    st->started = pthread_create(&st->thread, NULL, signal_main, st) == 0;
    if (!st->started) serve_log("cannot start the signal thread: SIGTERM, SIGHUP are ignored");
}

static void signal_thread_stop(signal_thread *st)
{
    if (!st->started) return;
    atomic_store(&st->quit, 1);
    pthread_kill(st->thread, SIGHUP);
    pthread_join(st->thread, NULL);
    st->started = 0;
}

/* What the model's load said, in the log and the metrics. */
static void report_model(serve_app *app, const char *what)
{
    serve_model *m = serve_models_acquire(&app->models);
    if (!m) return;
    const elastic_config *c = elastic_model_config(m->model);
    serve_log("%s %s: %s, %lld items, hidden %lld, %lld parameters, item map %s, %s, "
              "generation %u, %.2f s",
              what, app->options->model_path,
              c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic", (long long)c->num_items,
              (long long)c->hidden, m->parameters,
              m->map ? "yes (the data's ids)" : "no (ids 1..I)", m->checksum, m->generation,
              m->load_seconds);
    char kernels[256] = "";
    for (int i = 0; i < elastic_backend_count(); i++) {
        elastic_backend_info info;
        if (elastic_backend_get_info(i, &info) == ELASTIC_OK &&
            !strncmp(m->backend, info.name, strlen(info.name)))
            snprintf(kernels, sizeof kernels, "%s", info.description);
    }
    serve_log("backend %s, device %d; %s", m->backend, app->options->session.device, kernels);
    char names[512] = "none";
    for (int i = 0, used = 0; i < m->n_fallback && used < (int)sizeof names - 1; i++)
        used += snprintf(names + used, sizeof names - (size_t)used, "%s%s", i ? ", " : "",
                         m->fallback[i]);
    serve_log("plan for %d users of %lld items: %s; fallback nodes: %s", m->plan_batch, m->plan_len,
              m->plan, names);
    serve_metrics_model(&app->metrics, m->generation, m->backend, app->options->session.device,
                        m->checksum, m->n_fallback, m->loaded_at);
    serve_model_release(m);
}

/* A reload: 0, SERVE_LOAD_FAILED or SERVE_LOAD_ABANDONED (a stop came). */
static int reload(serve_app *app, char *err, size_t err_size)
{
    serve_log("reloading %s", app->options->model_path);
    int rc = serve_models_load(&app->models, err, err_size);
    if (rc == SERVE_LOAD_ABANDONED) {
        serve_log("reload abandoned: the server is stopping");
        return rc;
    }
    if (rc) {
        serve_metrics_reload(&app->metrics, 0);
        serve_log("reload failed, the previous model goes on serving: %s", err);
        return rc;
    }
    serve_metrics_reload(&app->metrics, 1);
    report_model(app, "reloaded");
    serve_models_reap(&app->models); /* the old generation, if no request holds it */
    return 0;
}

static void answer_waiters(serve_reload_waiter *waiters, int outcome, const char *message)
{
    while (waiters) {
        serve_reload_waiter *next = waiters->next;
        waiters->done(waiters, outcome, message);
        waiters = next;
    }
}

/* Reloads on request and frees retired generations until a stop is
 * requested. */
static void control_loop(serve_app *app)
{
    pthread_mutex_lock(&app->control_lock);
    for (;;) {
        while (!app->reload_requested && !app->stop_requested && !app->reap_requested)
            pthread_cond_wait(&app->control_cond, &app->control_lock);
        if (app->stop_requested) break;
        if (app->reap_requested) {
            app->reap_requested = 0;
            pthread_mutex_unlock(&app->control_lock);
            serve_models_reap(&app->models);
            pthread_mutex_lock(&app->control_lock);
            continue;
        }
        app->reload_requested = 0;
        serve_reload_waiter *waiters = app->waiters;
        app->waiters = NULL;
        pthread_mutex_unlock(&app->control_lock);
        char err[512] = "";
        int outcome = reload(app, err, sizeof err);
        answer_waiters(waiters, outcome,
                       outcome == SERVE_LOAD_ABANDONED ? "the server is shutting down; the reload "
                                                         "was abandoned"
                                                       : err);
        pthread_mutex_lock(&app->control_lock);
    }
    serve_reload_waiter *waiters = app->waiters;
    app->waiters = NULL;
    pthread_mutex_unlock(&app->control_lock);
    answer_waiters(waiters, SERVE_LOAD_ABANDONED, "the server is shutting down");
}

static void sleep_ms(int ms)
{
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* readyz 503, no new connections (both already done by the signal thread
 * for a signal), the accepted requests answered. */
static void drain(serve_app *app, serve_http *http)
{
    atomic_store(&app->state, SERVE_STATE_DRAINING);
    serve_http_quiesce(http);
    double deadline = serve_now() + app->options->drain_seconds;
    serve_log("draining: /readyz is 503, no new connections, %ld requests in flight "
              "(--drain-seconds %d)",
              serve_http_in_flight(http), app->options->drain_seconds);
    while (serve_http_in_flight(http) > 0 && serve_now() < deadline)
        sleep_ms(5);
    /* What is still queued at the deadline is answered 503. */
    serve_batcher_stop(app->batcher, deadline);
    double grace = serve_now() + 1.0;
    while (serve_http_in_flight(http) > 0 && serve_now() < grace)
        sleep_ms(5);
    long left = serve_http_in_flight(http);
    if (left)
        serve_log("drain deadline: %ld requests were not answered in time", left);
    else
        serve_log("drained: every accepted request was answered");
}

/* ---------------------------------------------------------------- main */

static int app_init(serve_app *app, const serve_options *o, char *err, size_t err_size)
{
    memset(app, 0, sizeof *app);
    app->options = o;
    atomic_init(&app->state, SERVE_STATE_LOADING);
    atomic_init(&app->stopping, 0);
    snprintf(err, err_size, "cannot initialise the server");
    const char *paths[SERVE_METRICS_ENDPOINTS];
    int n = serve_route_paths(paths, SERVE_METRICS_ENDPOINTS - 1);
    if (serve_metrics_init(&app->metrics, paths, n)) return -1;
    pthread_mutex_init(&app->control_lock, NULL);
    pthread_cond_init(&app->control_cond, NULL);
    if (serve_models_init(&app->models, o->model_path, &o->session, o->workers, o->max_batch))
        return -1;
    app->models.cancel = &app->stopping;
    app->models.debug_delay_ms = o->debug_reload_delay_ms;
    app->models.on_retired = serve_app_retired;
    app->models.on_retired_ctx = app;
    return serve_pool_start(&app->pool, o->json_threads, err, err_size);
}

/* After the HTTP side and the batcher are stopped: nothing uses the app. */
static void app_free(serve_app *app)
{
    serve_pool_stop(app->pool); /* runs what is left: every exchange wakes up */
    serve_pool_free(app->pool);
    serve_batcher_free(app->batcher);
    serve_models_free(&app->models);
    pthread_cond_destroy(&app->control_cond);
    pthread_mutex_destroy(&app->control_lock);
    serve_metrics_free(&app->metrics);
}

/* The end, on every path once the HTTP side runs: the signal thread
 * joined, the queued jobs run (every suspended exchange wakes up), the
 * connections closed, then the app freed. */
static void shut_down(serve_app *app, signal_thread *signals)
{
    signal_thread_stop(signals);
    serve_pool_stop(app->pool);
    serve_http_stop(app->http);
    app->http = NULL;
    app_free(app);
}

int cmd_serve(int argc, char **argv)
{
    serve_options o;
    defaults(&o);
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;

    /* Before any thread starts: only the signal thread takes these. */
    sigemptyset(&control_signals);
    sigaddset(&control_signals, SIGHUP);
    sigaddset(&control_signals, SIGTERM);
    sigaddset(&control_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &control_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    serve_log("elastic serve %s: model %s", elastic_version(), o.model_path);
    default_threads(&o);
    serve_app app;
    char bound[96], err[512];
    if (app_init(&app, &o, err, sizeof err)) {
        cli_error("%s", err);
        return 1;
    }
    if (serve_http_start(&app.http, &app, bound, sizeof bound, err, sizeof err)) {
        cli_error("%s", err);
        app_free(&app);
        return 1;
    }
    serve_log("listening on %s", bound);
    signal_thread signals;
    signal_thread_start(&signals, &app);

    rc = serve_models_load(&app.models, err, sizeof err);
    if (rc == SERVE_LOAD_ABANDONED) {
        serve_log("stopped before the model was loaded");
        shut_down(&app, &signals);
        return 0;
    }
    if (rc) {
        serve_log("cannot load the model: %s", err);
        cli_error("%s", err);
        shut_down(&app, &signals);
        return 1;
    }
    serve_metrics_reload(&app.metrics, 1);
    report_model(&app, "loaded");
    serve_batcher_config bc = {o.workers,
                               o.max_batch,
                               o.max_delay_us,
                               o.max_queue,
                               o.debug_delay_ms,
                               &app.metrics,
                               o.pin_workers ? pin_worker : NULL,
                               &o};
    if (serve_batcher_start(&app.batcher, &bc, err, sizeof err)) {
        cli_error("%s", err);
        shut_down(&app, &signals);
        return 1;
    }
    char threads[32] = "the backend's threads";
    if (o.session.num_threads > 0)
        snprintf(threads, sizeof threads, "%d threads", o.session.num_threads);
    serve_log("batching: %d workers x %s, up to %d users per batch, %d us delay, "
              "queue %d requests, timeout %d ms",
              o.workers, threads, o.max_batch, o.max_delay_us, o.max_queue, o.timeout_ms);
    if (serve_app_set_ready(&app) == 0) serve_log("ready");

    control_loop(&app);
    drain(&app, app.http);
    shut_down(&app, &signals);
    serve_log("stopped");
    return 0;
}
