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
 * generation is retired when its last request is answered, and freed by
 * serve_models_reap on the thread that loads (the control loop), never on
 * the thread that happened to drop the last reference (an HTTP thread).
 *
 * A load can be abandoned: between its steps (checksum, load, each session,
 * each warm-up, the swap) it checks the `cancel` flag and stops when set.
 * The checksum names the file that was loaded: the file is opened, summed,
 * loaded, and its identity (device, inode, size, modification time) checked
 * again; a file replaced or rewritten meanwhile is loaded again (3 tries).
 */
#ifndef ELASTIC_SERVE_MODEL_H
#define ELASTIC_SERVE_MODEL_H

#include "elastic.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

struct serve_models;

typedef struct serve_model {
    atomic_int refs;
    struct serve_models *owner; /* where it is retired to (NULL: freed at once) */
    struct serve_model *next_retired;
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
    pthread_mutex_t lock;        /* guards current and retired */
    pthread_mutex_t reload_lock; /* one load at a time */
    serve_model *current;
    serve_model *retired; /* unreferenced generations, for serve_models_reap */
    unsigned generations;
    const char *path;
    elastic_session_options session;
    int n_sessions;
    int plan_batch; /* the batch of the reported plan (--max-batch) */
    /* set by the owner after serve_models_init (all optional) */
    const atomic_int *cancel; /* non-zero: a load in progress is abandoned */
    int debug_delay_ms;       /* testing: a reload sleeps this long between checksum and load */
    void (*on_retired)(void *ctx); /* a generation was retired (any thread): call reap;
                                      NULL: the last release frees it at once */
    void *on_retired_ctx;
} serve_models;

/* serve_models_load's outcomes besides 0. */
#define SERVE_LOAD_FAILED (-1)
#define SERVE_LOAD_ABANDONED (-2)

int serve_models_init(serve_models *models, const char *path,
                      const elastic_session_options *session, int n_sessions, int plan_batch);
/* Drops the current generation and frees every retired one; no request may
 * hold a reference any more. */
void serve_models_free(serve_models *models);

/* Loads the file into a new generation, warms every session up with one
 * batch, and makes it current. Returns 0, or SERVE_LOAD_FAILED or
 * SERVE_LOAD_ABANDONED (the cancel flag) with a message in err; the current
 * generation (if any) is then left serving. */
int serve_models_load(serve_models *models, char *err, size_t err_size);

/* Frees the retired generations (the caller's thread); returns how many. */
int serve_models_reap(serve_models *models);

/* A reference to the current generation (NULL before the first load). */
serve_model *serve_models_acquire(serve_models *models);
/* Drops a reference; the last one retires the generation (or frees it, when
 * no on_retired callback is set). NULL: no-op. */
void serve_model_release(serve_model *model);

#endif
