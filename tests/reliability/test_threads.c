/*
 * test_threads.c - the library under threads (run under ThreadSanitizer in
 * ci/test.sh's build-tsan; a plain test elsewhere): one shared read-only
 * model, N threads with a session each running a mixed stream of
 * recommend, scores, user-vector and plan calls, and, beside them, threads
 * that load models from a file, use them and free them. Every result must
 * equal, bit for bit, the one computed single-threaded first (the same
 * kernels on the same inputs: no cross-thread state leaks into a result).
 * Under TSan, libgomp is not instrumented: sessions run one OpenMP thread
 * (num_threads 1), as for ctest serve (docs/serving.md).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elastic.h"

#define THREADS 4
#define LOADERS 2
#define ROUNDS 12
#define USERS 3
#define TOP_K 5
#define ITEMS 30
#define DIM 16

static elastic_model *shared;
static char model_path[256];
static const int32_t items[] = {1, 2, 3, 7, 8, 30, 29, 1, 5, 5, 6};
static const int64_t offsets[] = {0, 3, 6, 11};

typedef struct expected {
    int32_t ids[USERS * TOP_K];
    float scores[USERS * TOP_K];
    float all[USERS * ITEMS];
    float vectors[USERS * DIM];
} expected;

static expected want;

typedef struct worker {
    int index;
    int failures;
    char message[256];
} worker;

static elastic_session_options options(void)
{
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = 1;
    return o;
}

static int compute(elastic_session *s, expected *out, FILE *plan)
{
    if (elastic_session_recommend(s, items, offsets, USERS, TOP_K, 1, out->ids, out->scores) ||
        elastic_session_scores(s, items, offsets, USERS, out->all) ||
        elastic_session_user_vectors(s, items, offsets, USERS, out->vectors))
        return -1;
    return plan ? (int)elastic_session_print_plan(s, USERS, 5, TOP_K, plan) : 0;
}

static void fail(worker *w, const char *what)
{
    if (!w->failures++)
        snprintf(w->message, sizeof w->message, "thread %d: %s: %s", w->index, what,
                 elastic_last_error());
}

static void *session_thread(void *arg)
{
    worker *w = arg;
    elastic_session_options o = options();
    elastic_session *s = NULL;
    if (elastic_session_init(&s, shared, &o) != ELASTIC_OK) {
        fail(w, "session init");
        return NULL;
    }
    FILE *plan = fopen("/dev/null", "w");
    for (int r = 0; r < ROUNDS; r++) {
        expected got;
        memset(&got, 0, sizeof got);
        /* A different order of calls in each thread and round. */
        int which = (w->index + r) % 3;
        elastic_status st = ELASTIC_OK;
        if (which == 0) st = (elastic_status)compute(s, &got, plan);
        if (which == 1) {
            st = elastic_session_user_vectors(s, items, offsets, USERS, got.vectors);
            if (!st) st = elastic_session_recommend(s, items, offsets, USERS, TOP_K, 1, got.ids, got.scores);
            if (!st) st = elastic_session_scores(s, items, offsets, USERS, got.all);
        }
        if (which == 2) {
            /* One user at a time: another batch shape, another plan. */
            for (int b = 0; b < USERS && !st; b++) {
                int64_t one[2] = {0, offsets[b + 1] - offsets[b]};
                st = elastic_session_recommend(s, items + offsets[b], one, 1, TOP_K, 1,
                                               got.ids + b * TOP_K, got.scores + b * TOP_K);
                if (!st)
                    st = elastic_session_scores(s, items + offsets[b], one, 1, got.all + b * ITEMS);
                if (!st)
                    st = elastic_session_user_vectors(s, items + offsets[b], one, 1,
                                                      got.vectors + b * DIM);
            }
        }
        if (st != ELASTIC_OK) {
            fail(w, "call");
            break;
        }
        if (memcmp(got.ids, want.ids, sizeof want.ids) ||
            memcmp(got.scores, want.scores, sizeof want.scores) ||
            memcmp(got.vectors, want.vectors, sizeof want.vectors) ||
            memcmp(got.all, want.all, sizeof want.all)) {
            char what[64];
            snprintf(what, sizeof what, "round %d (mode %d): results differ", r, which);
            fail(w, what);
        }
    }
    if (plan) fclose(plan);
    elastic_session_free(s);
    return NULL;
}

/* Loads a model, runs it, frees it, over and over, beside the sessions. */
static void *loader_thread(void *arg)
{
    worker *w = arg;
    for (int r = 0; r < ROUNDS / 2; r++) {
        elastic_model *m = NULL;
        elastic_session *s = NULL;
        elastic_session_options o = options();
        if (elastic_model_load(&m, model_path) != ELASTIC_OK) {
            fail(w, "model load");
            break;
        }
        expected got;
        if (elastic_session_init(&s, m, &o) != ELASTIC_OK || compute(s, &got, NULL) != 0)
            fail(w, "session on a loaded model");
        else if (memcmp(got.ids, want.ids, sizeof want.ids) ||
                 memcmp(got.vectors, want.vectors, sizeof want.vectors))
            fail(w, "a loaded model gives other results");
        elastic_session_free(s);
        elastic_model_free(m);
    }
    return NULL;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(model_path, sizeof model_path, "%s/threads-%ld.st", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = ITEMS;
    c.hidden = DIM;
    c.max_len = 8;
    c.layers = 2;
    c.experts = 4;
    c.mem_subkeys = 8;
    c.mem_topk = 2;
    elastic_session *s = NULL;
    elastic_session_options o = options();
    if (elastic_config_validate(&c) || elastic_model_init_random(&shared, &c, 11) ||
        elastic_model_save(shared, model_path) || elastic_session_init(&s, shared, &o) ||
        compute(s, &want, NULL)) {
        fprintf(stderr, "set-up: %s\n", elastic_last_error());
        return 1;
    }
    elastic_session_free(s);

    pthread_t th[THREADS + LOADERS];
    worker w[THREADS + LOADERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS + LOADERS; i++) {
        w[i].index = i;
        if (pthread_create(&th[i], NULL, i < THREADS ? session_thread : loader_thread, &w[i])) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    int failures = 0;
    for (int i = 0; i < THREADS + LOADERS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failures) {
            fprintf(stderr, "FAIL %s (%d failures)\n", w[i].message, w[i].failures);
            failures += w[i].failures;
        }
    }
    elastic_model_free(shared);
    remove(model_path);
    printf("%d session threads x %d rounds, %d loader threads: %s\n", THREADS, ROUNDS, LOADERS,
           failures ? "FAILED" : "all results equal the single-threaded ones");
    return failures ? 1 : 0;
}
