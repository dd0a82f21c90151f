/*
 * serve_app.h - what the parts of `elastic serve` share: the options (every
 * flag, with its default in serve_main.c), the state (loading, ready,
 * draining), the model generations, the batcher, the job pool, the
 * metrics, the reload requests that the control loop (serve_main.c)
 * carries out, the stop (drain at once, reloads abandoned), and the CPUs
 * this process may use (affinity and cgroup quota).
 */
#ifndef ELASTIC_SERVE_APP_H
#define ELASTIC_SERVE_APP_H

#include "elastic.h"
#include "serve_batcher.h"
#include "serve_metrics.h"
#include "serve_model.h"
#include "serve_pool.h"
#include "serve_request.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct serve_options {
    const char *model_path;
    const char *listen; /* ADDR:PORT */
    elastic_session_options session;
    int workers;               /* --workers */
    int max_batch;             /* --max-batch: users per batch */
    int max_delay_us;          /* --max-delay-us */
    int max_queue;             /* --max-queue: requests waiting */
    int timeout_ms;            /* --timeout-ms: from a request's body to its compute */
    int drain_seconds;         /* --drain-seconds */
    int http_threads;          /* --http-threads */
    int max_connections;       /* --max-connections */
    int max_per_ip;            /* --max-connections-per-ip (0: no limit) */
    int idle_timeout_s;        /* --idle-timeout: a silent connection is closed */
    int read_timeout_ms;       /* --read-timeout-ms: headers, and each gap in a body */
    size_t max_body_memory;    /* --max-body-memory: request bodies held at once */
    int json_threads;          /* --json-threads: parse bodies, render responses */
    int access_log;            /* --access-log */
    int pin_workers;           /* --pin-workers */
    int debug_delay_ms;        /* --debug-delay-ms (testing) */
    int debug_parse_delay_ms;  /* --debug-parse-delay-ms (testing) */
    int debug_reload_delay_ms; /* --debug-reload-delay-ms (testing) */
    serve_limits limits;
} serve_options;

typedef enum serve_state {
    SERVE_STATE_LOADING = 0,
    SERVE_STATE_READY = 1,
    SERVE_STATE_DRAINING = 2,
} serve_state;

/* One caller waiting for a reload (POST /admin/reload). */
typedef struct serve_reload_waiter serve_reload_waiter;
struct serve_reload_waiter {
    /* Called from the control thread when the reload is over: outcome 0
     * (reloaded), SERVE_LOAD_FAILED or SERVE_LOAD_ABANDONED (stopping). */
    void (*done)(serve_reload_waiter *waiter, int outcome, const char *message);
    serve_reload_waiter *next;
};

struct serve_http;

typedef struct serve_app {
    const serve_options *options;
    atomic_int state; /* a serve_state */
    serve_models models;
    serve_batcher *batcher;
    serve_pool *pool; /* JSON work off the HTTP threads */
    struct serve_http *http;
    serve_metrics metrics;
    atomic_int stopping; /* a stop was requested: a load in progress is abandoned */

    /* the control loop's requests */
    pthread_mutex_t control_lock;
    pthread_cond_t control_cond;
    int reload_requested, stop_requested, reap_requested;
    serve_reload_waiter *waiters;
} serve_app;

/* Asks the control loop for a reload (SIGHUP does the same); waiter (may
 * be NULL) hears the outcome. Returns -1, without calling the waiter, when
 * the server is stopping. */
int serve_app_request_reload(serve_app *app, serve_reload_waiter *waiter);

/* A stop (SIGTERM, SIGINT), from any thread: at once, a load in progress is
 * abandoned at its next step and, once the server is ready, /readyz turns
 * 503 and the listening socket stops accepting; the control loop then
 * drains. Returns 1 when a stop had already been requested. */
int serve_app_request_stop(serve_app *app);

/* From the main thread once the batcher runs: the state turns READY unless
 * a stop came first. Returns 0, or -1 when stopping. */
int serve_app_set_ready(serve_app *app);

/* Hands a retired model generation to the control loop (serve_models'
 * on_retired): it is freed there, not on the thread that released it. */
void serve_app_retired(void *app);

/* The CPUs this process may use: the CPUs of its affinity mask
 * (sched_getaffinity), fewer when its cgroup (v2) has a cpu.max quota
 * (quota / period, rounded up), at least 1. The parts in *info when not
 * NULL (0 where unknown or unlimited). */
typedef struct serve_cpus {
    int online, affinity, quota;
} serve_cpus;
int serve_available_cpus(serve_cpus *info);

/* Pins the calling thread to `count` CPUs of its affinity mask, from the
 * first-th (counted in the mask's order, wrapping around past its end), and
 * writes them as a list into cpus ("1", "2,3"). Returns 0, or -1 with the
 * reason in cpus (the thread then keeps its mask). Linux only. */
int serve_pin_thread(int first, int count, char *cpus, size_t size);

/* The CPUs a cgroup v2 cpu.max line allows ("150000 100000" is 2), 0 for
 * "max ..." (no limit) or text that does not parse. */
int serve_cpu_max_cpus(const char *cpu_max);

#endif
