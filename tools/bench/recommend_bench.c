/*
 * recommend_bench.c - `elastic-recommend-bench`: in-process throughput of
 * elastic_session_recommend, the yardstick that tools/bench/serve_bench.sh
 * holds `elastic serve` against (same model, same machine, same run).
 *
 * For each batch size B: W threads, each with its own session of the one
 * shared model (as the server's workers), call elastic_session_recommend
 * back to back on batches of B users (histories of exactly --len random
 * items from --seed, top_k 10, history excluded: what the server does for
 * a one-user request) for --seconds after one warm-up call per thread (it
 * builds the plan). Prints one JSON object per line:
 *   {"batch": B, "workers": W, "threads": T, "calls": N, "users": U,
 *    "seconds": S, "cpu_seconds": C, "users_per_s": U/S, "batch_ms_p50": ..., "batch_ms_p90":
 *    ..., "warmup_ms": ...}
 * batch_ms_*: the time of one call (one full batch) over every thread's
 * calls; warmup_ms: the slowest first call (plan building included);
 * cpu_seconds: the process's CPU time over the timed calls (every thread).
 * With --gap-us G each thread sleeps G microseconds before every call (not
 * timed): the time of a call that finds the caches cold, as a lightly
 * loaded server's workers do.
 */
#include "elastic.h"

#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct bench_thread {
    const elastic_model *model;
    const elastic_session_options *opt;
    const int32_t *items; /* pool of users, each exactly len items */
    int pool, len, batch, top_k, index, gap_us;
    double seconds;
    /* results */
    double *times; /* seconds per call */
    int calls, cap;
    double warmup;
    int failed;
    char error[256];
    char backend[64]; /* elastic_session_backend */
    pthread_t thread;
} bench_thread;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the whole process (every thread, OpenMP's too). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static pthread_barrier_t start_barrier;

static void *bench_main(void *arg)
{
    bench_thread *t = arg;
    elastic_session *s = NULL;
    int32_t *ids = malloc(sizeof *ids * (size_t)t->batch * (size_t)t->top_k);
    float *scores = malloc(sizeof *scores * (size_t)t->batch * (size_t)t->top_k);
    int64_t *offsets = malloc(sizeof *offsets * (size_t)(t->batch + 1));
    int32_t *items = malloc(sizeof *items * (size_t)t->batch * (size_t)t->len);
    elastic_status st = elastic_session_init(&s, t->model, t->opt);
    if (st != ELASTIC_OK || !ids || !scores || !offsets || !items) {
        snprintf(t->error, sizeof t->error, "session: %s",
                 st != ELASTIC_OK ? elastic_last_error() : "out of memory");
        t->failed = 1;
    } else
        snprintf(t->backend, sizeof t->backend, "%s", elastic_session_backend(s));
    for (int b = 0; b <= t->batch; b++)
        if (offsets) offsets[b] = (int64_t)b * t->len;
    int next = t->index * 7919; /* threads start at different users */
    for (int round = 0;; round++) {
        if (!t->failed)
            for (int b = 0; b < t->batch; b++) {
                memcpy(items + (size_t)b * t->len,
                       t->items + (size_t)(next % t->pool) * (size_t)t->len,
                       sizeof *items * (size_t)t->len);
                next++;
            }
        if (round == 1) pthread_barrier_wait(&start_barrier); /* timing starts together */
        if (t->failed) break;
        if (t->gap_us > 0) {
            struct timespec d = {t->gap_us / 1000000, (long)(t->gap_us % 1000000) * 1000L};
            nanosleep(&d, NULL);
        }
        double t0 = now();
        st = elastic_session_recommend(s, items, offsets, t->batch, t->top_k, 1, ids, scores);
        double dt = now() - t0;
        if (st != ELASTIC_OK) {
            snprintf(t->error, sizeof t->error, "recommend: %s", elastic_last_error());
            t->failed = 1;
            continue; /* reach the barrier if round 0 */
        }
        if (round == 0) {
            t->warmup = dt;
            continue;
        }
        if (t->calls == t->cap) {
            int cap = t->cap ? 2 * t->cap : 256;
            double *p = realloc(t->times, sizeof *p * (size_t)cap);
            if (!p) {
                t->failed = 1;
                break;
            }
            t->times = p;
            t->cap = cap;
        }
        t->times[t->calls++] = dt;
        if (t->seconds <= 0) break;
        t->seconds -= dt;
    }
    elastic_session_free(s);
    free(ids);
    free(scores);
    free(offsets);
    free(items);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char usage[] =
    "usage: elastic-recommend-bench --model M [options]\n"
    "In-process users/s of elastic_session_recommend per batch size (JSON lines).\n"
    "  --batches L    comma list of batch sizes (default 1,32,256)\n"
    "  --len N        items per history (default 200)\n"
    "  --pool N       distinct random users (default 1024)\n"
    "  --top-k K      (default 10)\n"
    "  --workers W    threads, a session each (default 1)\n"
    "  --threads T    CPU threads per session (default 0: OpenMP's default)\n"
    "  --seconds S    timed calls per batch size and thread (default 5)\n"
    "  --gap-us G     sleep G microseconds before each call, untimed (default 0)\n"
    "  --seed S       seed of the histories (default 1)\n";

int main(int argc, char **argv)
{
    const char *model_path = NULL, *batches = "1,32,256";
    int len = 200, pool = 1024, top_k = 10, workers = 1, threads = 0, gap_us = 0;
    double seconds = 5;
    unsigned long long seed = 1;
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"batches", required_argument, 0, 'b'},
        {"len", required_argument, 0, 'n'},     {"pool", required_argument, 0, 'p'},
        {"top-k", required_argument, 0, 'k'},   {"workers", required_argument, 0, 'w'},
        {"threads", required_argument, 0, 't'}, {"seconds", required_argument, 0, 's'},
        {"seed", required_argument, 0, 'S'},    {"gap-us", required_argument, 0, 'g'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'b': batches = optarg; break;
        case 'n': len = atoi(optarg); break;
        case 'p': pool = atoi(optarg); break;
        case 'k': top_k = atoi(optarg); break;
        case 'w': workers = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'S': seed = strtoull(optarg, NULL, 10); break;
        case 'g': gap_us = atoi(optarg); break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!model_path || len < 1 || pool < 1 || top_k < 1 || workers < 1 || threads < 0 ||
        gap_us < 0) {
        fputs(usage, stderr);
        return 2;
    }
    elastic_model *model;
    if (elastic_model_load(&model, model_path) != ELASTIC_OK) {
        fprintf(stderr, "%s\n", elastic_last_error());
        return 1;
    }
    int64_t num_items = elastic_model_config(model)->num_items;
    int32_t *items = malloc(sizeof *items * (size_t)pool * (size_t)len);
    if (!items) return 1;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1; /* xorshift64* */
    for (size_t i = 0; i < (size_t)pool * (size_t)len; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        items[i] = (int32_t)(((x * 0x2545f4914f6cdd1dull) >> 33) % (uint64_t)num_items) + 1;
    }
    elastic_session_options opt;
    elastic_session_options_default(&opt);
    opt.backend = "cpu";
    opt.num_threads = threads;
    int rc = 0;
    for (const char *p = batches; *p && !rc;) {
        int batch = atoi(p);
        p = strchr(p, ',');
        p = p ? p + 1 : "";
        if (batch < 1) continue;
        bench_thread *ts = calloc((size_t)workers, sizeof *ts);
        if (!ts) return 1;
        pthread_barrier_init(&start_barrier, NULL, (unsigned)workers + 1);
        for (int i = 0; i < workers; i++) {
            ts[i].model = model;
            ts[i].opt = &opt;
            ts[i].items = items;
            ts[i].pool = pool;
            ts[i].len = len;
            ts[i].batch = batch;
            ts[i].top_k = top_k;
            ts[i].index = i;
            ts[i].seconds = seconds;
            ts[i].gap_us = gap_us;
            pthread_create(&ts[i].thread, NULL, bench_main, &ts[i]);
        }
        pthread_barrier_wait(&start_barrier);
        double t0 = now(), c0 = cpu_seconds();
        for (int i = 0; i < workers; i++)
            pthread_join(ts[i].thread, NULL);
        double wall = now() - t0, cpu = cpu_seconds() - c0;
        pthread_barrier_destroy(&start_barrier);
        int calls = 0;
        double warmup = 0;
        for (int i = 0; i < workers; i++) {
            if (ts[i].failed) {
                fprintf(stderr, "batch %d: %s\n", batch, ts[i].error);
                rc = 1;
            }
            calls += ts[i].calls;
            if (ts[i].warmup > warmup) warmup = ts[i].warmup;
        }
        double *all = malloc(sizeof *all * (size_t)(calls ? calls : 1));
        int n = 0;
        for (int i = 0; i < workers && all; i++) {
            memcpy(all + n, ts[i].times, sizeof *all * (size_t)ts[i].calls);
            n += ts[i].calls;
        }
        if (all && n) {
            qsort(all, (size_t)n, sizeof *all, cmp_double);
            long long users = (long long)n * batch;
            printf("{\"batch\": %d, \"workers\": %d, \"threads\": %d, \"len\": %d, "
                   "\"calls\": %d, \"users\": %lld, \"seconds\": %.4f, \"cpu_seconds\": %.4f, "
                   "\"users_per_s\": %.2f, "
                   "\"batch_ms_p50\": %.4f, \"batch_ms_p90\": %.4f, \"warmup_ms\": %.3f, "
                   "\"backend\": \"%s\"}\n",
                   batch, workers, threads, len, n, users, wall, cpu, (double)users / wall,
                   1e3 * all[n / 2], 1e3 * all[(int)(0.9 * (n - 1))], 1e3 * warmup, ts[0].backend);
            fflush(stdout);
        }
        free(all);
        for (int i = 0; i < workers; i++)
            free(ts[i].times);
        free(ts);
    }
    free(items);
    elastic_model_free(model);
    return rc;
}
