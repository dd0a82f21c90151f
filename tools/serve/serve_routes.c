/*
 * serve_routes.c - the route table and its handlers (see serve_routes.h).
 * Handlers reply through serve_reply*, or suspend the exchange until its
 * reply is made elsewhere: POST /v1/recommend and /v1/user_vectors are
 * parsed on the job pool (app->pool), queued with the batcher, computed by
 * a worker and rendered on the job pool again, so that no HTTP thread
 * spends time on JSON; POST /admin/reload waits for the control loop.
 */
#include "serve_routes.h"
#include "serve_log.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void recommend(serve_exchange *x);
static void user_vectors(serve_exchange *x);
static void model_info(serve_exchange *x);
static void healthz(serve_exchange *x);
static void readyz(serve_exchange *x);
static void metrics(serve_exchange *x);
static void admin_reload(serve_exchange *x);

static const serve_route routes[] = {
    {"POST", "/v1/recommend", 1, recommend},
    {"POST", "/v1/user_vectors", 1, user_vectors},
    {"GET", "/v1/model", 0, model_info},
    {"GET", "/healthz", 0, healthz},
    {"GET", "/readyz", 0, readyz},
    {"GET", "/metrics", 0, metrics},
    {"POST", "/admin/reload", 0, admin_reload},
};
#define N_ROUTES (int)(sizeof routes / sizeof routes[0])

const serve_route *serve_route_find(const char *method, const char *path, int *status, char *allow,
                                    size_t allow_size)
{
    *status = 404;
    allow[0] = '\0';
    size_t plen = strcspn(path, "?"); /* a query string is ignored */
    for (int i = 0; i < N_ROUTES; i++) {
        const serve_route *r = &routes[i];
        if (strlen(r->path) != plen || strncmp(r->path, path, plen)) continue;
        if (!strcmp(method, r->method) || (!strcmp(r->method, "GET") && !strcmp(method, "HEAD")))
            return r;
        *status = 405;
        size_t used = strlen(allow);
        snprintf(allow + used, allow_size - used, "%s%s%s", used ? ", " : "", r->method,
                 strcmp(r->method, "GET") ? "" : ", HEAD");
    }
    return NULL;
}

int serve_route_paths(const char **paths, int max)
{
    int n = 0;
    for (int i = 0; i < N_ROUTES && n < max; i++)
        paths[n++] = routes[i].path;
    return n;
}

static void reply_json(serve_exchange *x, int status, json_t *root)
{
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(root);
    serve_reply(x, status, text, "application/json");
}

static void reply_status(serve_exchange *x, int status, const char *code, const char *message)
{
    serve_error e;
    serve_error_set(&e, status, code, "%s", message);
    serve_reply_error(x, &e);
}

/* 503 unless the server can take requests (it does while draining). */
static int not_ready(serve_exchange *x)
{
    if (atomic_load(&x->app->state) != SERVE_STATE_LOADING) return 0;
    reply_status(x, 503, "not_ready", "the model is still loading (see GET /readyz)");
    serve_reply_header(x, "Retry-After", "1");
    return 1;
}

/* ---------------------------------------------------------------- compute */

static serve_vocab vocab_of(const serve_model *m)
{
    const elastic_config *c = elastic_model_config(m->model);
    return (serve_vocab){c->num_items, c->hidden, m->map};
}

static serve_exchange *exchange_of(serve_job *job)
{
    return (serve_exchange *)((char *)job - offsetof(serve_exchange, job));
}

/* After the worker: the response, on the job pool; then the connection
 * wakes up and sends it. */
static void render_job(serve_job *job)
{
    serve_exchange *x = exchange_of(job);
    serve_work *w = x->ctx;
    x->batch_id = w->batch_id;
    x->batch_users = w->batch_users;
    serve_reply_header(x, "X-Model-Checksum", w->model->checksum);
    switch (w->status) {
    case SERVE_WORK_DONE: {
        serve_vocab v = vocab_of(w->model);
        serve_reply(x, 200, serve_response_render(w, &v), "application/json");
        break;
    }
    case SERVE_WORK_EXPIRED: {
        serve_error e;
        serve_error_set(&e, 504, "deadline_exceeded",
                        "the request waited over %d ms for a worker (--timeout-ms); it was not "
                        "computed",
                        x->app->options->timeout_ms);
        serve_reply_error(x, &e);
        break;
    }
    case SERVE_WORK_SHUTDOWN:
        reply_status(x, 503, "shutting_down", "the server stopped before computing the request");
        break;
    default: {
        serve_error e;
        serve_error_set(&e, 500, "compute_failed", "%s", w->error);
        serve_log("compute failed: %s", w->error);
        serve_reply_error(x, &e);
    }
    }
    serve_resume(x);
}

/* Values in a response up to which it is rendered on the thread that
 * finished the work (a worker), without a hand-off to the job pool: a
 * one-user top-10 answer renders in microseconds, less than a thread's
 * wake-up. Larger answers (many users, user vectors of many users) go to
 * the pool, so that a worker does not format JSON while users wait. */
enum { INLINE_RENDER_VALUES = 4096 };

/* Bodies up to this size are parsed on the HTTP thread that received them
 * (a one-user request of 200 items is about 1 KiB, parsed in tens of
 * microseconds); larger ones on the job pool, so that a few large bodies
 * never stall /healthz or the other connections. */
enum { INLINE_PARSE_BYTES = 16384 };

static long response_values(const serve_work *w)
{
    long per_user = w->op == SERVE_OP_USER_VECTORS ? w->dim : 2L * w->top_k;
    return (long)w->users * per_user;
}

/* A worker (or the reaper, or the batcher's stop) is done with the work. */
static void work_done(serve_work *w, void *ctx)
{
    serve_exchange *x = ctx;
    x->job.run = render_job;
    if (w->status != SERVE_WORK_DONE || response_values(w) <= INLINE_RENDER_VALUES)
        render_job(&x->job);
    else
        serve_pool_run(x->app->pool, &x->job);
}

static void free_work(void *w)
{
    serve_work_free(w);
}

static void sleep_ms(int ms)
{
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* The body into a work and the work to the batcher, on the job pool; the
 * connection is suspended meanwhile and woken with a refusal, or after the
 * work is computed and rendered. */
static void parse_job(serve_job *job)
{
    serve_exchange *x = exchange_of(job);
    serve_app *app = x->app;
    serve_op endpoint =
        x->route->handle == user_vectors ? SERVE_OP_USER_VECTORS : SERVE_OP_RECOMMEND;
    if (app->options->debug_parse_delay_ms > 0) sleep_ms(app->options->debug_parse_delay_ms);
    serve_model *m = serve_models_acquire(&app->models);
    if (!m) {
        reply_status(x, 503, "not_ready", "no model is loaded");
        serve_resume(x);
        return;
    }
    serve_vocab v = vocab_of(m);
    serve_work *w;
    serve_error e;
    int bad = serve_request_parse(endpoint, x->body ? x->body : "", x->body_len, &v,
                                  &app->options->limits, &w, &e);
    serve_release_body(x); /* parsed: its memory is given back */
    if (bad) {
        serve_model_release(m);
        serve_reply_error(x, &e);
        serve_resume(x);
        return;
    }
    w->model = m; /* the work's reference from now on */
    w->done = work_done;
    w->done_ctx = x;
    x->ctx = w;
    x->ctx_free = free_work;
    x->users = w->users;
    double deadline = serve_now() + 1e-3 * app->options->timeout_ms;
    switch (serve_batcher_submit(app->batcher, w, deadline, NULL, NULL)) {
    case SERVE_SUBMIT_OK: return; /* work_done wakes the connection */
    case SERVE_SUBMIT_FULL: {
        serve_error full;
        serve_error_set(&full, 503, "queue_full",
                        "%d requests are waiting (--max-queue); retry later",
                        app->options->max_queue);
        serve_reply_error(x, &full);
        serve_reply_header(x, "Retry-After", "1");
        break;
    }
    case SERVE_SUBMIT_STOPPED:
        reply_status(x, 503, "shutting_down", "the server is shutting down");
        break;
    }
    serve_resume(x);
}

static void submit(serve_exchange *x)
{
    if (not_ready(x)) return;
    serve_suspend(x, NULL); /* the reply is made off this thread */
    x->job.run = parse_job;
    if (x->body_len <= INLINE_PARSE_BYTES && x->app->options->debug_parse_delay_ms <= 0)
        parse_job(&x->job); /* small: here, without a hand-off */
    else
        serve_pool_run(x->app->pool, &x->job);
}

static void recommend(serve_exchange *x)
{
    submit(x);
}

static void user_vectors(serve_exchange *x)
{
    submit(x);
}

/* ---------------------------------------------------------------- model */

static json_t *config_json(const elastic_config *c)
{
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "model",
                          c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic", "num_items",
                          (json_int_t)c->num_items, "max_len", (json_int_t)c->max_len, "hidden",
                          (json_int_t)c->hidden, "heads", (json_int_t)c->heads, "layers",
                          (json_int_t)c->layers, "ffn", (json_int_t)c->ffn, "ln_eps", c->ln_eps);
    if (o && c->model == ELASTIC_MODEL_KIND_ELASTIC) {
        json_object_set_new(o, "experts", json_integer(c->experts));
        json_object_set_new(o, "mem_subkeys", json_integer(c->mem_subkeys));
        json_object_set_new(o, "mem_key", json_integer(c->mem_key));
        json_object_set_new(o, "mem_topk", json_integer(c->mem_topk));
    }
    return o;
}

static void model_info(serve_exchange *x)
{
    serve_app *app = x->app;
    const serve_options *o = app->options;
    if (not_ready(x)) return;
    serve_model *m = serve_models_acquire(&app->models);
    if (!m) {
        reply_status(x, 503, "not_ready", "no model is loaded");
        return;
    }
    json_t *fallback = json_array();
    for (int i = 0; fallback && i < m->n_fallback; i++)
        json_array_append_new(fallback, json_string(m->fallback[i]));
    const elastic_session_options *so = &o->session;
    char loaded_at[32];
    time_t t = (time_t)m->loaded_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(loaded_at, sizeof loaded_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *root = json_pack(
        "{s:{s:s,s:s,s:I,s:s,s:f,s:I,s:b,s:o*},"
        "s:{s:s,s:s,s:i,s:i,s:b,s:s},"
        "s:{s:i,s:I,s:s,s:i,s:o*},"
        "s:{s:i,s:i,s:i,s:i,s:i}}",
        "model", "path", o->model_path, "checksum", m->checksum, "generation",
        (json_int_t)m->generation, "loaded_at", loaded_at, "load_seconds", m->load_seconds,
        "parameters", (json_int_t)m->parameters, "item_map", m->map != NULL, "config",
        config_json(elastic_model_config(m->model)), "backend", "name",
        so->backend ? so->backend : "auto", "description", m->backend, "device", so->device,
        "threads", so->num_threads, "allow_fallback", so->allow_cpu_fallback, "options",
        so->backend_options ? so->backend_options : "", "plan", "batch", m->plan_batch, "len",
        (json_int_t)m->plan_len, "summary", m->plan, "fallback_count", m->n_fallback,
        "fallback_nodes", fallback, "batching", "workers", o->workers, "max_batch", o->max_batch,
        "max_delay_us", o->max_delay_us, "max_queue", o->max_queue, "timeout_ms", o->timeout_ms);
    if (root) {
        json_t *limits =
            json_pack("{s:I,s:i,s:i,s:i,s:i}", "max_body", (json_int_t)o->limits.max_body,
                      "max_users", o->limits.max_users, "max_history", o->limits.max_history,
                      "max_top_k", o->limits.max_top_k, "max_candidates", o->limits.max_candidates);
        json_object_set_new(root, "limits", limits);
    }
    serve_reply_header(x, "X-Model-Checksum", m->checksum);
    serve_model_release(m);
    reply_json(x, 200, root);
}

/* ---------------------------------------------------------------- probes */

static void healthz(serve_exchange *x)
{
    reply_json(x, 200, json_pack("{s:s}", "status", "alive"));
}

static void readyz(serve_exchange *x)
{
    switch (atomic_load(&x->app->state)) {
    case SERVE_STATE_READY: reply_json(x, 200, json_pack("{s:s}", "status", "ready")); break;
    case SERVE_STATE_LOADING:
        reply_status(x, 503, "loading", "loading and warming up the model");
        break;
    default: reply_status(x, 503, "draining", "shutting down: finishing accepted requests");
    }
}

static void metrics(serve_exchange *x)
{
    size_t len = 0;
    char *text = serve_metrics_render(&x->app->metrics, &len);
    serve_reply(x, 200, text, "text/plain; version=0.0.4; charset=utf-8");
}

/* ---------------------------------------------------------------- reload */

typedef struct reload_wait {
    serve_reload_waiter waiter; /* first: the waiter is the struct */
    serve_exchange *x;
    int outcome;
    char message[512];
} reload_wait;

static void reload_done(serve_reload_waiter *waiter, int outcome, const char *message)
{
    reload_wait *r = (reload_wait *)waiter;
    r->outcome = outcome;
    snprintf(r->message, sizeof r->message, "%s", message);
    serve_resume(r->x);
}

static void reload_finish(serve_exchange *x)
{
    reload_wait *r = x->ctx;
    if (r->outcome == SERVE_LOAD_ABANDONED) {
        reply_status(x, 503, "shutting_down", r->message);
        return;
    }
    if (r->outcome) {
        reply_status(x, 500, "reload_failed", r->message);
        return;
    }
    serve_model *m = serve_models_acquire(&x->app->models);
    reply_json(x, 200,
               json_pack("{s:s,s:s,s:I}", "status", "reloaded", "checksum", m ? m->checksum : "",
                         "generation", (json_int_t)(m ? m->generation : 0)));
    serve_model_release(m);
}

/* (serve_http.c refuses paths under /admin/ to other than loopback clients without a
 * proxy's headers before this runs.) */
static void admin_reload(serve_exchange *x)
{
    if (atomic_load(&x->app->state) != SERVE_STATE_READY) {
        reply_status(x, 503, "not_ready", "no reload while loading or shutting down");
        return;
    }
    reload_wait *r = calloc(1, sizeof *r);
    if (!r) {
        serve_reply(x, 500, NULL, NULL);
        return;
    }
    r->waiter.done = reload_done;
    r->x = x;
    x->ctx = r;
    x->ctx_free = free;
    serve_suspend(x, reload_finish);
    if (serve_app_request_reload(x->app, &r->waiter)) /* stopping meanwhile */
        reload_done(&r->waiter, SERVE_LOAD_ABANDONED, "the server is shutting down");
}
