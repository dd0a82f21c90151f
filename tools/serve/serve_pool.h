/*
 * serve_pool.h - a small pool of threads that run jobs in arrival order:
 * the CPU work of a request that should not hold an HTTP thread (parsing a
 * request body, rendering a response; see serve_routes.c), so that a few
 * large bodies never stall /healthz or the other connections.
 *
 * A job is a node the caller owns (embedded in its request): no allocation,
 * so queueing cannot fail. Once the pool is stopped, or when it has no
 * threads, serve_pool_run runs the job on the caller's thread.
 */
#ifndef ELASTIC_SERVE_POOL_H
#define ELASTIC_SERVE_POOL_H

#include <stddef.h>

typedef struct serve_job serve_job;
struct serve_job {
    void (*run)(serve_job *job);
    serve_job *next; /* the pool's */
};

typedef struct serve_pool serve_pool;

/* Starts `threads` threads (0: every job runs on its caller's thread).
 * -1 with a message in err. */
int serve_pool_start(serve_pool **out, int threads, char *err, size_t err_size);
/* Queues job->run(job) (job->run set by the caller); NULL pool: runs it now. */
void serve_pool_run(serve_pool *pool, serve_job *job);
/* Runs what is queued, joins the threads; later jobs run on their callers. */
void serve_pool_stop(serve_pool *pool);
/* Frees a stopped pool (NULL: no-op). */
void serve_pool_free(serve_pool *pool);

#endif
