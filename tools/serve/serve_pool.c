/*
 * serve_pool.c - the job pool (see serve_pool.h): one FIFO under a mutex,
 * threads that wait on a condition variable.
 */
#include "serve_pool.h"
#include "serve_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct serve_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    serve_job *head, *tail;
    int stopping;
    pthread_t *threads;
    int n_threads;
};

static void *pool_main(void *arg)
{
    serve_pool *p = arg;
    serve_thread_name("serve-json", -1);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        serve_job *job = p->head;
        if (!job) {
            if (p->stopping) break;
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        p->head = job->next;
        if (!p->head) p->tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&p->lock);
        job->run(job); /* may queue the same node again */
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int serve_pool_start(serve_pool **out, int threads, char *err, size_t err_size)
{
    *out = NULL;
    serve_pool *p = calloc(1, sizeof *p);
    if (!p || (threads > 0 && !(p->threads = calloc((size_t)threads, sizeof *p->threads)))) {
        free(p);
        snprintf(err, err_size, "out of memory (pool)");
        return -1;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (int i = 0; i < threads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, pool_main, p);
        if (rc) {
            snprintf(err, err_size, "cannot start threads: %s", strerror(rc));
            serve_pool_stop(p);
            serve_pool_free(p);
            return -1;
        }
        p->n_threads++;
    }
    *out = p;
    return 0;
}

void serve_pool_run(serve_pool *p, serve_job *job)
{
    job->next = NULL;
    if (p) {
        pthread_mutex_lock(&p->lock);
        int queued = !p->stopping && p->n_threads > 0;
        if (queued) {
            if (p->tail)
                p->tail->next = job;
            else
                p->head = job;
            p->tail = job;
        }
        pthread_mutex_unlock(&p->lock);
        if (queued) {
            pthread_cond_signal(&p->cond); /* after the unlock: one wake-up, not two */
            return;
        }
    }
    job->run(job);
}

void serve_pool_stop(serve_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

void serve_pool_free(serve_pool *p)
{
    if (!p) return;
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}
