/*
 * serve_compute.h - computing a batch of works on one session: the users of
 * every work are laid end to end and run in library calls of at most
 * max_batch users, then the results are copied back per work.
 *
 * Batching never changes a result: on the CPU backend a user's row of a
 * batch is bitwise what the library gives for that user alone, and a top-K
 * list is the first K of a longer list (same order, same tie rule), so
 * works with different top_k share one call with the largest K.
 * Candidate ranking (SERVE_OP_RANK) takes every item's score from
 * elastic_session_scores and ranks the candidates on the host with the
 * library's rule: higher score first, ties by the smaller id, NaN below
 * every number; duplicates count once. It costs O(I) per user.
 */
#ifndef ELASTIC_SERVE_COMPUTE_H
#define ELASTIC_SERVE_COMPUTE_H

#include "elastic.h"
#include "serve_work.h"

#include <stddef.h>
#include <stdint.h>

/* A worker's buffers, grown as needed and reused from batch to batch. */
typedef struct serve_ranked {
    float score;
    int32_t id;
} serve_ranked;

typedef struct serve_scratch {
    int32_t *items, *ids, *history;
    int64_t *offsets;
    float *scores;
    serve_ranked *ranked;
    size_t items_cap, ids_cap, history_cap, offsets_cap, scores_cap, ranked_cap;
} serve_scratch;

void serve_scratch_free(serve_scratch *scratch);

/* Computes works[0..n-1], which share op and (for RECOMMEND) exclusion, on
 * `session`. Each work ends SERVE_WORK_DONE with its results, or
 * SERVE_WORK_FAILED with a message. */
void serve_compute(elastic_session *session, serve_work **works, int n, int max_batch,
                   serve_scratch *scratch);

/* Ranks one user's candidates (ids in 1..I) by `scores` (all I items): the
 * best top_k ids and their scores, the rest of the row id 0 and score
 * -INFINITY; with exclude, items of `history` are left out. Returns the
 * number of ids written, or -1 when out of memory. */
int serve_rank_candidates(const float *scores, const int32_t *cand, int64_t n_cand,
                          const int32_t *history, int64_t history_len, int exclude, int top_k,
                          int32_t *ids, float *out_scores, serve_scratch *scratch);

#endif
