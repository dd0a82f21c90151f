/*
 * serve_app.h - what the parts of `elastic serve` share: the options (every
 * flag, with its default in serve_main.c), the state (loading, ready,
 * draining), the model generations, the batcher, the metrics, and the
 * reload requests that the control loop (serve_main.c) carries out.
 */
#ifndef ELASTIC_SERVE_APP_H
#define ELASTIC_SERVE_APP_H

#include "elastic.h"
#include "serve_batcher.h"
#include "serve_metrics.h"
#include "serve_model.h"
#include "serve_request.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct serve_options {
    const char *model_path;
    const char *listen; /* ADDR:PORT */
    elastic_session_options session;
    int workers;         /* --workers */
    int max_batch;       /* --max-batch: users per batch */
    int max_delay_us;    /* --max-delay-us */
    int max_queue;       /* --max-queue: requests waiting */
    int timeout_ms;      /* --timeout-ms: from a request's body to its compute */
    int drain_seconds;   /* --drain-seconds */
    int http_threads;    /* --http-threads */
    int max_connections; /* --max-connections */
    int idle_timeout_s;  /* --idle-timeout: a silent connection is closed */
    int read_timeout_ms; /* --read-timeout-ms: a request's body must arrive in time */
    int access_log;      /* --access-log */
    int debug_delay_ms;  /* --debug-delay-ms (testing) */
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
    /* Called from the control thread when the reload is over. */
    void (*done)(serve_reload_waiter *waiter, int ok, const char *message);
    serve_reload_waiter *next;
};

typedef struct serve_app {
    const serve_options *options;
    atomic_int state; /* a serve_state */
    serve_models models;
    serve_batcher *batcher;
    serve_metrics metrics;

    /* the control loop's requests */
    pthread_mutex_t control_lock;
    pthread_cond_t control_cond;
    int reload_requested, stop_requested;
    serve_reload_waiter *waiters;
} serve_app;

/* Asks the control loop for a reload (SIGHUP does the same); waiter (may
 * be NULL) hears the outcome. Returns -1, without calling the waiter, when
 * the server is stopping. */
int serve_app_request_reload(serve_app *app, serve_reload_waiter *waiter);

#endif
