/*
 * serve_model.h - the model being served, as reference-counted generations
 * for atomic hot reload.
 *
 * A generation is one load of the model file: the read-only model, its item
 * map (when the file has one), one session per worker (all made from the
 * same options, so any worker computes bitwise the same results), and what
 * GET /v1/model reports (checksum, load time, backend, plan, fallbacks).
 * serve_models holds the current generation. A request takes a reference
 * to the current generation when it is parsed and keeps it until it is
 * answered; a reload builds and warms up a new generation beside the old,
 * swaps the pointer under a mutex and drops the holder's reference: the old
 * generation is freed when its last request is answered.
 */
#ifndef ELASTIC_SERVE_MODEL_H
#define ELASTIC_SERVE_MODEL_H

#include "elastic.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct serve_model {
    atomic_int refs;
    unsigned generation; /* 1 for the first load, then 2, 3, ... */
    elastic_model *model;
    elastic_item_map *map;      /* NULL: item ids are 1..I */
    elastic_session **sessions; /* one per worker */
    int n_sessions;
    /* what GET /v1/model reports */
    char checksum[40];   /* "fnv1a64:<16 hex digits>" of the file's bytes */
    double load_seconds; /* load, sessions and warm-up */
    double loaded_at;    /* Unix time */
    long long parameters;
    char backend[256]; /* elastic_session_backend */
    char plan[256];    /* "36 steps, 0 fallback nodes, 0 transfers, ..." */
    int plan_batch;
    long long plan_len;
    char **fallback; /* names of the plan's nodes that fell back to the CPU */
    int n_fallback;
} serve_model;

typedef struct serve_models {
    pthread_mutex_t lock;        /* guards current */
    pthread_mutex_t reload_lock; /* one load at a time */
    serve_model *current;
    unsigned generations;
    const char *path;
    elastic_session_options session;
    int n_sessions;
    int plan_batch; /* the batch of the reported plan (--max-batch) */
} serve_models;

int serve_models_init(serve_models *models, const char *path,
                      const elastic_session_options *session, int n_sessions, int plan_batch);
/* Drops the current generation (requests holding references keep theirs). */
void serve_models_free(serve_models *models);

/* Loads the file into a new generation, warms every session up with one
 * batch, and makes it current. Returns 0, or -1 with a message in err; the
 * current generation (if any) is then left serving. */
int serve_models_load(serve_models *models, char *err, size_t err_size);

/* A reference to the current generation (NULL before the first load). */
serve_model *serve_models_acquire(serve_models *models);
/* Drops a reference; the last one frees the generation. NULL: no-op. */
void serve_model_release(serve_model *model);

#endif
