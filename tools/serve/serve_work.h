/*
 * serve_work.h - one request's users on their way through the server: what
 * to compute (parsed by serve_request.c, in the model's item ids), the
 * results (filled by serve_compute.c), and the queue bookkeeping of the
 * batcher (serve_batcher.c).
 *
 * A work holds a reference to the model generation its ids were mapped
 * with (serve_model.h) and is computed on that generation's sessions, so a
 * hot reload never mixes two models in one request.
 */
#ifndef ELASTIC_SERVE_WORK_H
#define ELASTIC_SERVE_WORK_H

#include <stdint.h>

struct serve_model;

typedef enum serve_op {
    SERVE_OP_RECOMMEND = 0,    /* top-K over all items (elastic_session_recommend) */
    SERVE_OP_RANK = 1,         /* top-K among given candidates (scores, then host ranking) */
    SERVE_OP_USER_VECTORS = 2, /* hu (elastic_session_user_vectors) */
} serve_op;

typedef enum serve_work_status {
    SERVE_WORK_PENDING = 0,
    SERVE_WORK_DONE = 1,     /* results are filled */
    SERVE_WORK_FAILED = 2,   /* the library failed: error holds its message */
    SERVE_WORK_EXPIRED = 3,  /* the deadline passed before it was computed */
    SERVE_WORK_SHUTDOWN = 4, /* the server stopped before it was computed */
} serve_work_status;

typedef struct serve_work serve_work;

struct serve_work {
    /* ---- what to compute */
    serve_op op;
    int exclude_history;
    int top_k; /* RECOMMEND, RANK */
    int users;
    int32_t *items;        /* histories in compressed-row form, model ids */
    int64_t *offsets;      /* users + 1 */
    int32_t *candidates;   /* RANK: candidates per user, compressed rows */
    int64_t *cand_offsets; /* RANK: users + 1 */

    /* ---- results */
    int32_t *ids;   /* [users, top_k]: RECOMMEND, RANK; 0 past the end of a list */
    float *scores;  /* [users, top_k] */
    float *vectors; /* [users, dim]: USER_VECTORS */
    int dim;
    serve_work_status status;
    char error[256];

    /* ---- the batcher's */
    struct serve_model *model; /* a reference, released by serve_work_free */
    serve_work *next;
    double enqueued, deadline; /* monotonic seconds */
    long long batch_id;        /* the batch it was computed in, for the access log */
    int batch_users;           /* users of that batch */
    void (*done)(serve_work *work, void *ctx); /* called once, from a worker */
    void *done_ctx;
};

/* A zeroed work, or NULL when out of memory. */
serve_work *serve_work_new(void);
/* Frees the work, its arrays and its model reference (NULL: nothing). */
void serve_work_free(serve_work *work);

#endif
