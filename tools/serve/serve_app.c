/*
 * serve_app.c - what the parts of the server post to the control loop of
 * serve_main.c (reloads, stops, retired model generations), and the count
 * of the CPUs this process may use (see serve_app.h).
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT_S */
#include "serve_app.h"
#include "serve_http.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int serve_app_request_reload(serve_app *app, serve_reload_waiter *waiter)
{
    pthread_mutex_lock(&app->control_lock);
    int stopping = app->stop_requested;
    if (!stopping) {
        app->reload_requested = 1;
        if (waiter) {
            waiter->next = app->waiters;
            app->waiters = waiter;
        }
        pthread_cond_broadcast(&app->control_cond);
    }
    pthread_mutex_unlock(&app->control_lock);
    return stopping ? -1 : 0;
}

int serve_app_request_stop(serve_app *app)
{
    atomic_store(&app->stopping, 1); /* a load in progress stops at its next step */
    pthread_mutex_lock(&app->control_lock);
    int again = app->stop_requested;
    app->stop_requested = 1;
    /* Once ready, the drain shows at once, even while a reload runs; while
     * loading, /readyz already says 503 and no request is computed. */
    if (atomic_load(&app->state) == SERVE_STATE_READY)
        atomic_store(&app->state, SERVE_STATE_DRAINING);
    pthread_cond_broadcast(&app->control_cond);
    pthread_mutex_unlock(&app->control_lock);
    if (app->http) serve_http_quiesce(app->http);
    return again;
}

int serve_app_set_ready(serve_app *app)
{
    pthread_mutex_lock(&app->control_lock);
    int stopping = app->stop_requested;
    if (!stopping) atomic_store(&app->state, SERVE_STATE_READY);
    pthread_mutex_unlock(&app->control_lock);
    return stopping ? -1 : 0;
}

void serve_app_retired(void *arg)
{
    serve_app *app = arg;
    pthread_mutex_lock(&app->control_lock);
    app->reap_requested = 1;
    pthread_cond_broadcast(&app->control_cond);
    pthread_mutex_unlock(&app->control_lock);
}

/* ---------------------------------------------------------------- CPUs */

int serve_cpu_max_cpus(const char *text)
{
    long long quota, period;
    if (!text || sscanf(text, "%lld %lld", &quota, &period) != 2 || quota <= 0 || period <= 0)
        return 0; /* "max 100000": no limit */
    long long n = (quota + period - 1) / period;
    return n > 1 << 20 ? 1 << 20 : (int)n;
}

/* The CPUs of the affinity mask, 0 when unknown. */
static int affinity_cpus(void)
{
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    for (long n = conf > 0 ? conf : 1024; n <= (1l << 18); n *= 2) {
        cpu_set_t *set = CPU_ALLOC((int)n);
        if (!set) return 0;
        size_t size = CPU_ALLOC_SIZE((int)n);
        int rc = sched_getaffinity(0, size, set);
        int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
        int retry = rc != 0 && errno == EINVAL; /* the kernel has more CPUs */
        CPU_FREE(set);
        if (!retry) return count;
    }
    return 0;
}

/* The smallest cpu.max quota from this process's cgroup (v2) up to the
 * root of the hierarchy, in CPUs; 0 when none. */
static int cgroup_cpus(void)
{
    char line[2048], dir[sizeof line + 32];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup");
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "0::", 3)) {
                line[strcspn(line, "\n")] = '\0';
                snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", line + 3);
                break;
            }
        fclose(f);
    }
    size_t root = strlen("/sys/fs/cgroup");
    int best = 0;
    for (;;) {
        size_t n = strlen(dir);
        while (n > root && dir[n - 1] == '/')
            dir[--n] = '\0';
        char path[sizeof dir + 16], text[128];
        snprintf(path, sizeof path, "%s/cpu.max", dir);
        FILE *q = fopen(path, "r");
        if (q) {
            if (fgets(text, sizeof text, q)) {
                int cpus = serve_cpu_max_cpus(text);
                if (cpus > 0 && (best == 0 || cpus < best)) best = cpus;
            }
            fclose(q);
        }
        char *slash = strrchr(dir, '/');
        if (n <= root || !slash || (size_t)(slash - dir) < root) break;
        *slash = '\0';
    }
    return best;
}

int serve_pin_thread(int first, int count, char *cpus, size_t size)
{
#if defined(__linux__)
    cpu_set_t mine, pin;
    if (sched_getaffinity(0, sizeof mine, &mine)) {
        snprintf(cpus, size, "cannot read the affinity mask: %s", strerror(errno));
        return -1;
    }
    int ids[CPU_SETSIZE], n = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mine)) ids[n++] = c;
    if (n == 0 || count < 1) {
        snprintf(cpus, size, "no CPU in the affinity mask");
        return -1;
    }
    CPU_ZERO(&pin);
    size_t used = 0;
    cpus[0] = '\0';
    for (int i = 0; i < count && i < n; i++) {
        int c = ids[(first + i) % n];
        CPU_SET(c, &pin);
        int w = snprintf(cpus + used, size > used ? size - used : 0, "%s%d", i ? "," : "", c);
        if (w > 0) used += (size_t)w;
    }
    if (sched_setaffinity(0, sizeof pin, &pin)) { /* 0: the calling thread */
        snprintf(cpus, size, "cannot set the affinity: %s", strerror(errno));
        return -1;
    }
    return 0;
#else
    (void)first, (void)count;
    snprintf(cpus, size, "pinning threads is implemented on Linux only");
    return -1;
#endif
}

int serve_available_cpus(serve_cpus *info)
{
    serve_cpus c;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    c.online = online > 0 ? (int)online : 0;
    c.affinity = affinity_cpus();
    c.quota = cgroup_cpus();
    int n = c.affinity > 0 ? c.affinity : c.online;
    if (c.quota > 0 && (n == 0 || c.quota < n)) n = c.quota;
    if (info) *info = c;
    return n > 0 ? n : 1;
}
