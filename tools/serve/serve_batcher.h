/*
 * serve_batcher.h - the request queue, deadlines and worker threads of
 * dynamic batching.
 *
 * Requests (works) wait in one FIFO queue of at most max_queue requests; a
 * full queue refuses at once. Each of the W workers takes the oldest work
 * and, from the rest of the queue, the works that may share its batch (same
 * model generation, same op, same exclusion) up to max_batch users in all,
 * waiting at most max_delay_us after the oldest work arrived for more to
 * come; then it computes them on its own session of that generation
 * (serve_compute.h) and calls each work's done(). A work larger than
 * max_batch users runs alone, in calls of max_batch users.
 *
 * Deadlines: a work whose deadline passes while it waits is answered
 * SERVE_WORK_EXPIRED at its deadline by a reaper thread, without compute.
 * Stopping: no new works; the queue is computed until the drain deadline,
 * what is left then ends SERVE_WORK_SHUTDOWN; the threads are joined.
 */
#ifndef ELASTIC_SERVE_BATCHER_H
#define ELASTIC_SERVE_BATCHER_H

#include "serve_metrics.h"
#include "serve_work.h"

typedef struct serve_batcher serve_batcher;

typedef struct serve_batcher_config {
    int workers;
    int max_batch;      /* users per batch */
    int max_delay_us;   /* the longest the oldest work waits for company */
    int max_queue;      /* requests waiting */
    int debug_delay_ms; /* testing: each batch sleeps this long before computing */
    serve_metrics *metrics;
    /* Optional: called by worker `index` on its own thread before it takes
     * work (serve_main: --pin-workers). */
    void (*on_worker_start)(int index, void *ctx);
    void *on_worker_start_ctx;
} serve_batcher_config;

int serve_batcher_start(serve_batcher **out, const serve_batcher_config *config, char *err,
                        size_t err_size);

typedef enum serve_submit_result {
    SERVE_SUBMIT_OK = 0,
    SERVE_SUBMIT_FULL = 1,    /* the queue holds max_queue requests */
    SERVE_SUBMIT_STOPPED = 2, /* the batcher is stopping */
} serve_submit_result;

/* Queues a work (with its model reference, done and done_ctx set) to be
 * computed before `deadline` (monotonic seconds). on_accept(ctx), when not
 * NULL, runs under the queue's lock once the work is accepted and before
 * any worker can see it (the HTTP layer suspends the connection there, so
 * the done() that resumes it always comes after). */
serve_submit_result serve_batcher_submit(serve_batcher *b, serve_work *work, double deadline,
                                         void (*on_accept)(void *ctx), void *ctx);

/* Stops taking works, computes the queue until `drain_deadline` (monotonic
 * seconds), ends the rest with SERVE_WORK_SHUTDOWN and joins the threads. */
void serve_batcher_stop(serve_batcher *b, double drain_deadline);
/* Frees a stopped batcher (NULL: no-op). */
void serve_batcher_free(serve_batcher *b);

/* Seconds on the monotonic clock that deadlines use. */
double serve_now(void);

#endif
