/*
 * recommend_timer.c - `elastic-recommend-timer`: times elastic_session_recommend
 * from C on a histories file, for tools/bench/python_overhead.py (the same call
 * through the Python package, in the same run). Prints one JSON object: the
 * seconds of every timed call, their median and the backend.
 *   elastic-recommend-timer --model M --histories FILE [--top K] [--threads T]
 *                           [--reps R] [--warmup W] [--serve]
 * FILE: one user per line, item ids oldest first, separated by spaces.
 * --serve: after the warm-up, one timed call per line read from stdin, its
 * seconds printed on a line of stdout (the caller interleaves its own calls).
 */
#include "elastic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fail(const char *what)
{
    fprintf(stderr, "elastic-recommend-timer: %s: %s\n", what, elastic_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *hist_path = NULL;
    int top_k = 10, threads = 0, reps = 20, warmup = 2, serve = 0;
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--serve")) {
            serve = 1;
            i--;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "elastic-recommend-timer: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--model")) model_path = argv[i + 1];
        else if (!strcmp(argv[i], "--histories")) hist_path = argv[i + 1];
        else if (!strcmp(argv[i], "--top")) top_k = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "elastic-recommend-timer: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!model_path || !hist_path || top_k < 1 || reps < 1) {
        fprintf(stderr, "usage: elastic-recommend-timer --model M --histories FILE [--top K] "
                        "[--threads T] [--reps R] [--warmup W]\n");
        return 2;
    }
    /* histories -> CSR */
    FILE *f = fopen(hist_path, "r");
    if (!f) {
        perror(hist_path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0, ucap = 1024;
    int batch = 0;
    int32_t *items = malloc(cap * sizeof *items);
    int64_t *offsets = malloc(ucap * sizeof *offsets);
    char line[1 << 16];
    offsets[0] = 0;
    while (items && offsets && fgets(line, sizeof line, f)) {
        char *p = line, *end;
        for (long v = strtol(p, &end, 10); end != p; v = strtol(p, &end, 10)) {
            if (n == cap) items = realloc(items, (cap *= 2) * sizeof *items);
            if (!items) break;
            items[n++] = (int32_t)v;
            p = end;
        }
        if ((size_t)batch + 2 > ucap) offsets = realloc(offsets, (ucap *= 2) * sizeof *offsets);
        if (!offsets) break;
        offsets[++batch] = (int64_t)n;
    }
    fclose(f);
    if (!items || !offsets) {
        fprintf(stderr, "elastic-recommend-timer: out of memory\n");
        return 1;
    }

    elastic_model *model;
    elastic_session *session;
    if (elastic_model_load(&model, model_path) != ELASTIC_OK) return fail(model_path);
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = threads;
    if (elastic_session_init(&session, model, &o) != ELASTIC_OK) return fail("session");
    int32_t *ids = malloc((size_t)batch * (size_t)top_k * sizeof *ids);
    float *scores = malloc((size_t)batch * (size_t)top_k * sizeof *scores);
    double *t = malloc((size_t)reps * sizeof *t);
    if (!ids || !scores || !t) return 1;
    if (serve) {
        for (int r = 0; r < warmup; r++)
            if (elastic_session_recommend(session, items, offsets, batch, top_k, 1, ids,
                                          scores) != ELASTIC_OK)
                return fail("recommend");
        printf("ready %d %d\n", ids[0], ids[1]);
        fflush(stdout);
        char req[64];
        while (fgets(req, sizeof req, stdin)) {
            double t0 = now();
            if (elastic_session_recommend(session, items, offsets, batch, top_k, 1, ids,
                                          scores) != ELASTIC_OK)
                return fail("recommend");
            printf("%.9f\n", now() - t0);
            fflush(stdout);
        }
        reps = 0;
    }
    for (int r = 0; r < warmup + reps && !serve; r++) {
        double t0 = now();
        if (elastic_session_recommend(session, items, offsets, batch, top_k, 1, ids, scores) !=
            ELASTIC_OK)
            return fail("recommend");
        if (r >= warmup) t[r - warmup] = now() - t0;
    }
    if (serve) goto done;
    printf("{\"backend\": \"%s\", \"batch\": %d, \"top_k\": %d, \"first_ids\": [%d, %d], "
           "\"seconds\": [",
           elastic_session_backend(session), batch, top_k, ids[0], ids[1]);
    for (int r = 0; r < reps; r++) printf("%s%.9f", r ? ", " : "", t[r]);
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    printf("], \"median_s\": %.9f}\n", t[reps / 2]);
done:
    free(t);
    free(ids);
    free(scores);
    free(items);
    free(offsets);
    elastic_session_free(session);
    elastic_model_free(model);
    return 0;
}
