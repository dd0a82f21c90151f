/*
 * serve_metrics.h - the server's counters, gauges and histograms, and their
 * Prometheus text exposition (format 0.0.4) for GET /metrics.
 *
 * Every update and the rendering take one mutex: updates are a few per
 * request, so the lock is cheap and the numbers of one scrape are consistent.
 */
#ifndef ELASTIC_SERVE_METRICS_H
#define ELASTIC_SERVE_METRICS_H

#include <pthread.h>
#include <stddef.h>

#define SERVE_METRICS_ENDPOINTS 12 /* named endpoints, "other" included */
#define SERVE_LATENCY_BUCKETS 14
#define SERVE_BATCH_BUCKETS 11
#define SERVE_MAX_BUCKETS 16 /* room for either */

typedef struct serve_histogram {
    unsigned long long counts[SERVE_MAX_BUCKETS]; /* the one after the bounds is +Inf */
    unsigned long long count;
    double sum;
} serve_histogram;

typedef struct serve_metrics {
    pthread_mutex_t lock;
    int n_endpoints;
    const char *endpoints[SERVE_METRICS_ENDPOINTS];
    unsigned long long requests[SERVE_METRICS_ENDPOINTS][600]; /* by HTTP status */
    serve_histogram latency[SERVE_METRICS_ENDPOINTS];
    serve_histogram batch_users;
    unsigned long long users_scored, batches, aborted;
    unsigned long long cut_headers, cut_body; /* connections cut off: too slow */
    unsigned long long reloads, reload_failures;
    long queue_depth, in_flight;
    /* the model being served */
    unsigned generation;
    int fallback_nodes;
    double loaded_at;
    char backend[256], device[32], checksum[40];
} serve_metrics;

/* endpoints: the label of each endpoint (at most SERVE_METRICS_ENDPOINTS - 1;
 * "other" is added for unknown paths). The strings must outlive the metrics. */
int serve_metrics_init(serve_metrics *m, const char *const *endpoints, int n);
void serve_metrics_free(serve_metrics *m);
/* The index of an endpoint label, or that of "other". */
int serve_metrics_endpoint(const serve_metrics *m, const char *label);

/* A finished request: endpoint index, HTTP status, seconds from its headers
 * to its last byte sent. */
void serve_metrics_request(serve_metrics *m, int endpoint, int status, double seconds);
/* A request whose connection ended before it was answered. */
void serve_metrics_aborted(serve_metrics *m);
/* A connection cut off because its headers (body 0) or its body (body 1)
 * did not arrive in time (--read-timeout-ms). */
void serve_metrics_cut_off(serve_metrics *m, int body);
/* A computed batch of `users` users. */
void serve_metrics_batch(serve_metrics *m, int users);
void serve_metrics_queue_depth(serve_metrics *m, long depth);
void serve_metrics_in_flight(serve_metrics *m, long delta);
/* A model load or reload and its outcome; on success, what is now served. */
void serve_metrics_reload(serve_metrics *m, int ok);
void serve_metrics_model(serve_metrics *m, unsigned generation, const char *backend, int device,
                         const char *checksum, int fallback_nodes, double loaded_at);

/* The exposition text (malloc'd, NUL-terminated), or NULL when out of memory. */
char *serve_metrics_render(serve_metrics *m, size_t *len);

#endif
