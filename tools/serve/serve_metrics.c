/*
 * serve_metrics.c - counters, gauges and histograms under one mutex, and the
 * Prometheus text format (see serve_metrics.h).
 */
#include "serve_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double latency_bounds[SERVE_LATENCY_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double batch_bounds[SERVE_BATCH_BUCKETS] = {1,  2,   4,   8,   16,  32,
                                                         64, 128, 256, 512, 1024};

int serve_metrics_init(serve_metrics *m, const char *const *endpoints, int n)
{
    memset(m, 0, sizeof *m);
    if (n < 0 || n > SERVE_METRICS_ENDPOINTS - 1) return -1;
    for (int i = 0; i < n; i++)
        m->endpoints[i] = endpoints[i];
    m->endpoints[n] = "other";
    m->n_endpoints = n + 1;
    return pthread_mutex_init(&m->lock, NULL) ? -1 : 0;
}

void serve_metrics_free(serve_metrics *m)
{
    pthread_mutex_destroy(&m->lock);
}

int serve_metrics_endpoint(const serve_metrics *m, const char *label)
{
    for (int i = 0; i < m->n_endpoints - 1; i++)
        if (!strcmp(m->endpoints[i], label)) return i;
    return m->n_endpoints - 1;
}

static void observe(serve_histogram *h, const double *bounds, int n, double v)
{
    int b = 0;
    while (b < n && v > bounds[b])
        b++;
    h->counts[b]++;
    h->count++;
    h->sum += v;
}

void serve_metrics_request(serve_metrics *m, int endpoint, int status, double seconds)
{
    if (endpoint < 0 || endpoint >= m->n_endpoints) endpoint = m->n_endpoints - 1;
    if (status < 0 || status >= 600) status = 0;
    pthread_mutex_lock(&m->lock);
    m->requests[endpoint][status]++;
    observe(&m->latency[endpoint], latency_bounds, SERVE_LATENCY_BUCKETS, seconds);
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_aborted(serve_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->aborted++;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_cut_off(serve_metrics *m, int body)
{
    pthread_mutex_lock(&m->lock);
    if (body)
        m->cut_body++;
    else
        m->cut_headers++;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_batch(serve_metrics *m, int users)
{
    pthread_mutex_lock(&m->lock);
    observe(&m->batch_users, batch_bounds, SERVE_BATCH_BUCKETS, users);
    m->batches++;
    m->users_scored += (unsigned long long)users;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_queue_depth(serve_metrics *m, long depth)
{
    pthread_mutex_lock(&m->lock);
    m->queue_depth = depth;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_in_flight(serve_metrics *m, long delta)
{
    pthread_mutex_lock(&m->lock);
    m->in_flight += delta;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_reload(serve_metrics *m, int ok)
{
    pthread_mutex_lock(&m->lock);
    if (ok)
        m->reloads++;
    else
        m->reload_failures++;
    pthread_mutex_unlock(&m->lock);
}

void serve_metrics_model(serve_metrics *m, unsigned generation, const char *backend, int device,
                         const char *checksum, int fallback_nodes, double loaded_at)
{
    pthread_mutex_lock(&m->lock);
    m->generation = generation;
    snprintf(m->backend, sizeof m->backend, "%s", backend);
    snprintf(m->device, sizeof m->device, "%d", device);
    snprintf(m->checksum, sizeof m->checksum, "%s", checksum);
    m->fallback_nodes = fallback_nodes;
    m->loaded_at = loaded_at;
    pthread_mutex_unlock(&m->lock);
}

/* ---------------------------------------------------------------- text */

typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 1;
        char *s = realloc(t->s, cap);
        if (!s) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
}

/* A label value with \, " and newlines escaped, as the format requires. */
static void put_label(text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(t, "\\%c", *v);
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

static void put_histogram(text *t, const char *name, const char *label_key, const char *label_value,
                          const serve_histogram *h, const double *bounds, int n)
{
    unsigned long long cumulative = 0;
    char prefix[160] = "";
    if (label_key) snprintf(prefix, sizeof prefix, "%s=\"%s\",", label_key, label_value);
    for (int b = 0; b <= n; b++) {
        cumulative += h->counts[b];
        if (b < n)
            put(t, "%s_bucket{%sle=\"%g\"} %llu\n", name, prefix, bounds[b], cumulative);
        else
            put(t, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, prefix, cumulative);
    }
    if (label_key) prefix[strlen(prefix) - 1] = '\0'; /* no trailing comma */
    put(t, "%s_sum%s%s%s %.9g\n", name, label_key ? "{" : "", prefix, label_key ? "}" : "", h->sum);
    put(t, "%s_count%s%s%s %llu\n", name, label_key ? "{" : "", prefix, label_key ? "}" : "",
        h->count);
}

static void put_header(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *serve_metrics_render(serve_metrics *m, size_t *len)
{
    text t = {malloc(16384), 0, 16384, 0};
    if (!t.s) return NULL;
    pthread_mutex_lock(&m->lock);
    put_header(&t, "elastic_serve_requests_total", "counter",
               "Requests answered, by endpoint and HTTP status.");
    for (int e = 0; e < m->n_endpoints; e++)
        for (int s = 0; s < 600; s++)
            if (m->requests[e][s])
                put(&t, "elastic_serve_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                    m->endpoints[e], s, m->requests[e][s]);
    put_header(&t, "elastic_serve_requests_aborted_total", "counter",
               "Requests whose connection closed before they were answered.");
    put(&t, "elastic_serve_requests_aborted_total %llu\n", m->aborted);
    put_header(&t, "elastic_serve_connections_cut_off_total", "counter",
               "Connections closed because their headers or body did not arrive in time "
               "(--read-timeout-ms).");
    put(&t, "elastic_serve_connections_cut_off_total{phase=\"headers\"} %llu\n", m->cut_headers);
    put(&t, "elastic_serve_connections_cut_off_total{phase=\"body\"} %llu\n", m->cut_body);
    put_header(&t, "elastic_serve_request_duration_seconds", "histogram",
               "Time from a request's headers to its last byte sent.");
    for (int e = 0; e < m->n_endpoints; e++)
        if (m->latency[e].count)
            put_histogram(&t, "elastic_serve_request_duration_seconds", "endpoint", m->endpoints[e],
                          &m->latency[e], latency_bounds, SERVE_LATENCY_BUCKETS);
    put_header(&t, "elastic_serve_batch_users", "histogram",
               "Users per computed batch (dynamic batching).");
    put_histogram(&t, "elastic_serve_batch_users", NULL, NULL, &m->batch_users, batch_bounds,
                  SERVE_BATCH_BUCKETS);
    put_header(&t, "elastic_serve_users_scored_total", "counter", "Users computed.");
    put(&t, "elastic_serve_users_scored_total %llu\n", m->users_scored);
    put_header(&t, "elastic_serve_batches_total", "counter", "Batches computed.");
    put(&t, "elastic_serve_batches_total %llu\n", m->batches);
    put_header(&t, "elastic_serve_queue_depth", "gauge", "Requests waiting for a worker.");
    put(&t, "elastic_serve_queue_depth %ld\n", m->queue_depth);
    put_header(&t, "elastic_serve_in_flight_requests", "gauge",
               "Requests received and not yet answered.");
    put(&t, "elastic_serve_in_flight_requests %ld\n", m->in_flight);
    put_header(&t, "elastic_serve_model_reloads_total", "counter",
               "Model loads that succeeded and were swapped in (the first load included).");
    put(&t, "elastic_serve_model_reloads_total %llu\n", m->reloads);
    put_header(&t, "elastic_serve_model_reload_failures_total", "counter",
               "Model reloads that failed (the previous model kept serving).");
    put(&t, "elastic_serve_model_reload_failures_total %llu\n", m->reload_failures);
    put_header(&t, "elastic_serve_model_info", "gauge",
               "The model being served: backend, device and file checksum as labels.");
    if (m->generation) {
        put(&t, "elastic_serve_model_info{backend=\"");
        put_label(&t, m->backend);
        put(&t, "\",device=\"%s\",checksum=\"%s\"} 1\n", m->device, m->checksum);
    }
    put_header(&t, "elastic_serve_model_generation", "gauge",
               "Loads of the model file so far: 1 for the first, one more per reload.");
    put(&t, "elastic_serve_model_generation %u\n", m->generation);
    put_header(&t, "elastic_serve_fallback_nodes", "gauge",
               "Plan nodes of the served model that fell back to the CPU.");
    put(&t, "elastic_serve_fallback_nodes %d\n", m->fallback_nodes);
    put_header(&t, "elastic_serve_model_loaded_timestamp_seconds", "gauge",
               "When the served model was loaded (Unix time).");
    put(&t, "elastic_serve_model_loaded_timestamp_seconds %.3f\n", m->loaded_at);
    pthread_mutex_unlock(&m->lock);
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    *len = t.len;
    return t.s;
}
