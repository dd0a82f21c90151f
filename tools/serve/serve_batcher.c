/*
 * serve_batcher.c - the queue, the workers and the deadline reaper (see
 * serve_batcher.h). One mutex guards the queue; one worker at a time forms
 * a batch (the "collector"), so arrivals during its wait join its batch
 * instead of starting small ones on idle workers; computing runs unlocked
 * and in parallel on every worker.
 *
 * Wake-ups: a request wakes at most one thread. Idle workers and the
 * collector wait on separate conditions: an arrival wakes one idle worker
 * when no batch is forming, and the collector only once the queue holds
 * enough users to fill its batch (otherwise it takes them when its delay
 * ends). Idle workers wait each on its own condition, on a stack: the one
 * woken is the last to have gone idle, whose session (packed weights,
 * activations) is still in the caches; under light load one worker serves
 * every request instead of the workers taking turns cold (measured: a
 * one-user batch took 1.34 ms alternating between two workers, 1.13 ms on
 * one). The reaper sleeps until the earliest deadline in the queue (at most
 * REAP_IDLE_S) and is woken only by a work whose deadline comes before that.
 */
#include "serve_batcher.h"
#include "serve_compute.h"
#include "serve_log.h"
#include "serve_model.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The longest the reaper sleeps while no work is queued. */
#define REAP_IDLE_S 1.0

typedef struct worker {
    serve_batcher *b;
    int index; /* its session in every generation */
    pthread_t thread;
    pthread_cond_t wake; /* this worker, idle: work to collect, or stopping */
    int idle;            /* on the idle stack */
} worker;

struct serve_batcher {
    serve_batcher_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t collect_cond; /* the collector: its batch can be filled, or stopping */
    pthread_cond_t reap_cond;    /* the reaper: an earlier deadline, or stopping */
    serve_work *head, *tail;
    int depth;
    int queued_users; /* users of the works in the queue */
    int collecting;
    int forming_users; /* users in the collector's batch so far */
    double reap_at;    /* the reaper sleeps until then; -1: awake */
    int stopping, quit;
    double drain_deadline;
    long long batches;
    worker *workers;
    int n_workers;
    int *idle_stack; /* indices of idle workers, the last to go idle on top */
    int n_idle;
    pthread_t reaper;
    int reaper_started;
};

double serve_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct timespec abs_time(double t)
{
    struct timespec ts;
    if (t < 0) t = 0;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *lock, double until)
{
    struct timespec ts = abs_time(until);
    pthread_cond_timedwait(cond, lock, &ts);
}

/* ---------------------------------------------------------------- idle */

/* The caller (a worker, holding the lock) goes idle until woken. */
static void idle_wait(serve_batcher *b, worker *w)
{
    if (!w->idle) {
        w->idle = 1;
        b->idle_stack[b->n_idle++] = w->index;
    }
    pthread_cond_wait(&w->wake, &b->lock);
}

/* Takes w off the idle stack (woken by a spurious wake-up, or leaving). */
static void leave_idle(serve_batcher *b, worker *w)
{
    if (!w->idle) return;
    w->idle = 0;
    for (int i = 0; i < b->n_idle; i++)
        if (b->idle_stack[i] == w->index) {
            memmove(b->idle_stack + i, b->idle_stack + i + 1,
                    sizeof *b->idle_stack * (size_t)(b->n_idle - i - 1));
            b->n_idle--;
            break;
        }
}

/* The condition of the idle worker to wake (the top of the stack), taken
 * off the stack; NULL when none is idle. Signalled after the unlock. */
static pthread_cond_t *pop_idle(serve_batcher *b)
{
    if (b->n_idle == 0) return NULL;
    worker *w = &b->workers[b->idle_stack[--b->n_idle]];
    w->idle = 0;
    return &w->wake;
}

/* Wakes every idle worker (stopping); the caller holds the lock. */
static void wake_all_idle(serve_batcher *b)
{
    while (b->n_idle > 0)
        pthread_cond_signal(pop_idle(b));
}

/* ---------------------------------------------------------------- queue */

/* Removes w (whose predecessor is prev, NULL for the head). */
static void unlink_work(serve_batcher *b, serve_work *prev, serve_work *w)
{
    if (prev)
        prev->next = w->next;
    else
        b->head = w->next;
    if (b->tail == w) b->tail = prev;
    w->next = NULL;
    b->depth--;
    b->queued_users -= w->users;
}

/* Moves the works whose deadline has passed onto *expired. */
static void take_expired(serve_batcher *b, double now, serve_work **expired)
{
    serve_work *prev = NULL, *w = b->head;
    while (w) {
        serve_work *next = w->next;
        if (w->deadline <= now) {
            unlink_work(b, prev, w);
            w->status = SERVE_WORK_EXPIRED;
            w->next = *expired;
            *expired = w;
        } else
            prev = w;
        w = next;
    }
}

static int compatible(const serve_work *a, const serve_work *b)
{
    return a->model == b->model && a->op == b->op &&
           (a->op != SERVE_OP_RECOMMEND || a->exclude_history == b->exclude_history);
}

/* Moves queued works that fit the batch of `first` into batch[]. */
static void take_company(serve_batcher *b, serve_work **batch, int *n, int *users)
{
    serve_work *prev = NULL, *w = b->head;
    while (w && *users < b->cfg.max_batch) {
        serve_work *next = w->next;
        if (compatible(batch[0], w) && *users + w->users <= b->cfg.max_batch) {
            unlink_work(b, prev, w);
            batch[(*n)++] = w;
            *users += w->users;
        } else
            prev = w;
        w = next;
    }
}

/* Calls done() of every work of a list (outside the lock). */
static void finish_list(serve_work *list)
{
    while (list) {
        serve_work *next = list->next;
        list->next = NULL;
        list->done(list, list->done_ctx);
        list = next;
    }
}

serve_submit_result serve_batcher_submit(serve_batcher *b, serve_work *w, double deadline,
                                         void (*on_accept)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&b->lock);
    serve_submit_result r = SERVE_SUBMIT_OK;
    pthread_cond_t *wake = NULL, *wake_reaper = NULL;
    if (b->stopping)
        r = SERVE_SUBMIT_STOPPED;
    else if (b->depth >= b->cfg.max_queue)
        r = SERVE_SUBMIT_FULL;
    else {
        w->enqueued = serve_now();
        w->deadline = deadline;
        w->status = SERVE_WORK_PENDING;
        w->next = NULL;
        if (b->tail)
            b->tail->next = w;
        else
            b->head = w;
        b->tail = w;
        b->depth++;
        b->queued_users += w->users;
        if (on_accept) on_accept(ctx);
        if (!b->collecting)
            wake = pop_idle(b);
        else if (b->forming_users + b->queued_users >= b->cfg.max_batch)
            wake = &b->collect_cond;
        if (b->reap_at > 0 && deadline < b->reap_at) wake_reaper = &b->reap_cond;
        serve_metrics_queue_depth(b->cfg.metrics, b->depth);
    }
    pthread_mutex_unlock(&b->lock);
    /* Signalled after the unlock: a thread woken while the lock is held
     * would sleep again on the mutex and need a second wake-up (two futex
     * wakes, each an inter-processor interrupt on a virtual machine). The
     * state it acts on was changed under the lock, so no wake-up is lost. */
    if (wake) pthread_cond_signal(wake);
    if (wake_reaper) pthread_cond_signal(wake_reaper);
    return r;
}

/* ---------------------------------------------------------------- threads */

/* Forms one batch (the caller is the collector, holding the lock): the
 * oldest work and company, waiting until max_delay after its arrival. */
static int collect(serve_batcher *b, serve_work **batch, int *users, serve_work **expired)
{
    int n = 0;
    take_expired(b, serve_now(), expired);
    if (!b->head) return 0;
    serve_work *first = b->head;
    unlink_work(b, NULL, first);
    batch[n++] = first;
    *users = first->users;
    double until = first->enqueued + 1e-6 * b->cfg.max_delay_us;
    for (;;) {
        take_company(b, batch, &n, users);
        b->forming_users = *users;
        if (*users >= b->cfg.max_batch || b->stopping || serve_now() >= until) break;
        timed_wait(&b->collect_cond, &b->lock, until);
    }
    b->forming_users = 0;
    serve_metrics_queue_depth(b->cfg.metrics, b->depth);
    return n;
}

static void *worker_main(void *arg)
{
    worker *self = arg;
    serve_batcher *b = self->b;
    serve_thread_name("serve-worker", self->index);
    if (b->cfg.on_worker_start) b->cfg.on_worker_start(self->index, b->cfg.on_worker_start_ctx);
    serve_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    int cap = b->cfg.max_batch > 0 ? b->cfg.max_batch : 1;
    serve_work **batch = malloc(sizeof *batch * (size_t)cap);
    pthread_mutex_lock(&b->lock);
    while (batch) {
        if (b->stopping && (!b->head || serve_now() >= b->drain_deadline)) {
            leave_idle(b, self);
            wake_all_idle(b); /* the others see it too */
            break;
        }
        if (b->collecting || !b->head) {
            idle_wait(b, self);
            continue;
        }
        leave_idle(b, self); /* a spurious wake-up that found work */
        serve_work *expired = NULL;
        int users = 0;
        b->collecting = 1;
        int n = collect(b, batch, &users, &expired);
        b->collecting = 0;
        long long id = n ? ++b->batches : 0;
        pthread_cond_t *next_collector = b->head ? pop_idle(b) : NULL;
        pthread_mutex_unlock(&b->lock);
        if (next_collector) pthread_cond_signal(next_collector); /* after the unlock: see submit */
        finish_list(expired);
        if (n) {
            if (b->cfg.debug_delay_ms > 0) {
                struct timespec d = {b->cfg.debug_delay_ms / 1000,
                                     (long)(b->cfg.debug_delay_ms % 1000) * 1000000L};
                nanosleep(&d, NULL);
            }
            serve_model *m = batch[0]->model;
            serve_compute(m->sessions[self->index], batch, n, b->cfg.max_batch, &scratch);
            serve_metrics_batch(b->cfg.metrics, users);
            for (int i = 0; i < n; i++) {
                batch[i]->batch_id = id;
                batch[i]->batch_users = users;
                batch[i]->done(batch[i], batch[i]->done_ctx);
            }
        }
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    free(batch);
    serve_scratch_free(&scratch);
    return NULL;
}

/* Answers works at their deadline while every worker is busy. */
static void *reaper_main(void *arg)
{
    serve_batcher *b = arg;
    serve_thread_name("serve-reaper", -1);
    pthread_mutex_lock(&b->lock);
    while (!b->quit) {
        serve_work *expired = NULL;
        double now = serve_now();
        take_expired(b, now, &expired);
        if (expired) {
            serve_metrics_queue_depth(b->cfg.metrics, b->depth);
            pthread_mutex_unlock(&b->lock);
            finish_list(expired);
            pthread_mutex_lock(&b->lock);
            continue;
        }
        /* Even with an empty queue it sleeps for a bounded time (REAP_IDLE_S),
         * so that an arrival whose deadline is later than that need not wake
         * it: at the usual timeouts (seconds) no request wakes it; it wakes
         * by itself once a second, or at a queued work's deadline. */
        double earliest = now + REAP_IDLE_S;
        for (serve_work *w = b->head; w; w = w->next)
            if (w->deadline < earliest) earliest = w->deadline;
        b->reap_at = earliest; /* submit wakes it for an earlier deadline only */
        timed_wait(&b->reap_cond, &b->lock, earliest);
        b->reap_at = -1; /* awake: it looks at the whole queue before it sleeps again */
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

int serve_batcher_start(serve_batcher **out, const serve_batcher_config *cfg, char *err,
                        size_t err_size)
{
    *out = NULL;
    serve_batcher *b = calloc(1, sizeof *b);
    if (!b || !(b->workers = calloc((size_t)cfg->workers, sizeof *b->workers)) ||
        !(b->idle_stack = calloc((size_t)cfg->workers, sizeof *b->idle_stack))) {
        if (b) free(b->workers);
        free(b);
        snprintf(err, err_size, "out of memory (batcher)");
        return -1;
    }
    b->cfg = *cfg;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->lock, NULL);
    for (int i = 0; i < cfg->workers; i++) /* before any thread: stop signals them all */
        pthread_cond_init(&b->workers[i].wake, &attr);
    pthread_cond_init(&b->collect_cond, &attr);
    pthread_cond_init(&b->reap_cond, &attr);
    b->reap_at = -1; /* until the reaper first looks at the queue */
    pthread_condattr_destroy(&attr);
    int rc = 0;
    for (int i = 0; i < cfg->workers && !rc; i++) {
        b->workers[i].b = b;
        b->workers[i].index = i;
        rc = pthread_create(&b->workers[i].thread, NULL, worker_main, &b->workers[i]);
        if (!rc) b->n_workers++;
    }
    if (!rc) {
        rc = pthread_create(&b->reaper, NULL, reaper_main, b);
        b->reaper_started = !rc;
    }
    if (rc) {
        snprintf(err, err_size, "cannot start threads: %s", strerror(rc));
        serve_batcher_stop(b, 0);
        serve_batcher_free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void serve_batcher_stop(serve_batcher *b, double drain_deadline)
{
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    b->drain_deadline = drain_deadline;
    wake_all_idle(b);
    pthread_cond_broadcast(&b->collect_cond);
    pthread_mutex_unlock(&b->lock);
    for (int i = 0; i < b->n_workers; i++)
        pthread_join(b->workers[i].thread, NULL);
    b->n_workers = 0;
    pthread_mutex_lock(&b->lock);
    b->quit = 1;
    serve_work *left = NULL;
    while (b->head) {
        serve_work *w = b->head;
        unlink_work(b, NULL, w);
        w->status = SERVE_WORK_SHUTDOWN;
        w->next = left;
        left = w;
    }
    serve_metrics_queue_depth(b->cfg.metrics, 0);
    pthread_cond_broadcast(&b->reap_cond);
    pthread_mutex_unlock(&b->lock);
    finish_list(left);
    if (b->reaper_started) pthread_join(b->reaper, NULL);
    b->reaper_started = 0;
}

void serve_batcher_free(serve_batcher *b)
{
    if (!b) return;
    for (int i = 0; i < b->cfg.workers; i++)
        pthread_cond_destroy(&b->workers[i].wake);
    pthread_cond_destroy(&b->collect_cond);
    pthread_cond_destroy(&b->reap_cond);
    pthread_mutex_destroy(&b->lock);
    free(b->workers);
    free(b->idle_stack);
    free(b);
}
