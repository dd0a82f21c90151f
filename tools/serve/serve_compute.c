/*
 * serve_compute.c - a batch of works through the library, and candidate
 * ranking on the host (see serve_compute.h).
 */
#include "serve_compute.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void serve_scratch_free(serve_scratch *s)
{
    free(s->items);
    free(s->ids);
    free(s->history);
    free(s->ranked);
    free(s->offsets);
    free(s->scores);
    memset(s, 0, sizeof *s);
}

/* Grows *p to hold n elements of size elem. */
static int reserve(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* ---------------------------------------------------------------- ranking */

/* Higher score first, NaN below every number, ties by the smaller id. */
static int cmp_ranked(const void *pa, const void *pb)
{
    const serve_ranked *a = pa, *b = pb;
    int na = isnan(a->score), nb = isnan(b->score);
    if (na != nb) return na - nb;
    if (!na && a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int cmp_i32(const void *pa, const void *pb)
{
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    return (a > b) - (a < b);
}

static int in_sorted(const int32_t *sorted, int64_t n, int32_t v)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sorted[lo] == v;
}

int serve_rank_candidates(const float *scores, const int32_t *cand, int64_t n_cand,
                          const int32_t *history, int64_t history_len, int exclude, int top_k,
                          int32_t *ids, float *out_scores, serve_scratch *s)
{
    if (reserve((void **)&s->ranked, &s->ranked_cap, (size_t)n_cand + 1, sizeof *s->ranked) ||
        (exclude && reserve((void **)&s->history, &s->history_cap, (size_t)history_len + 1,
                            sizeof *s->history)))
        return -1;
    if (exclude) {
        memcpy(s->history, history, sizeof *history * (size_t)history_len);
        qsort(s->history, (size_t)history_len, sizeof *s->history, cmp_i32);
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n_cand; i++)
        if (!exclude || !in_sorted(s->history, history_len, cand[i]))
            s->ranked[m++] = (serve_ranked){scores[cand[i] - 1], cand[i]};
    qsort(s->ranked, (size_t)m, sizeof *s->ranked, cmp_ranked);
    int n = 0;
    for (int64_t i = 0; i < m && n < top_k; i++) {
        if (n > 0 && ids[n - 1] == s->ranked[i].id) continue; /* a duplicate candidate */
        ids[n] = s->ranked[i].id;
        out_scores[n++] = s->ranked[i].score;
    }
    for (int j = n; j < top_k; j++) {
        ids[j] = 0;
        out_scores[j] = -INFINITY;
    }
    return n;
}

/* ---------------------------------------------------------------- batches */

static void fail_all(serve_work **works, int n, const char *message)
{
    for (int i = 0; i < n; i++) {
        works[i]->status = SERVE_WORK_FAILED;
        snprintf(works[i]->error, sizeof works[i]->error, "%s", message);
    }
}

/* Allocates each work's result arrays. */
static int alloc_results(serve_work **works, int n, int64_t dim)
{
    for (int i = 0; i < n; i++) {
        serve_work *w = works[i];
        size_t u = (size_t)w->users;
        if (w->op == SERVE_OP_USER_VECTORS) {
            w->dim = (int)dim;
            if (!(w->vectors = malloc(sizeof *w->vectors * u * (size_t)dim))) return -1;
        } else {
            w->ids = malloc(sizeof *w->ids * u * (size_t)w->top_k);
            w->scores = malloc(sizeof *w->scores * u * (size_t)w->top_k);
            if (!w->ids || !w->scores) return -1;
        }
    }
    return 0;
}

/* Where user u of the batch comes from: work index and user within it. */
typedef struct cursor {
    int work, user;
} cursor;

/* Copies the users of [from, from + count) into the scratch's CSR arrays. */
static int gather(serve_work **works, cursor from, int count, serve_scratch *s)
{
    size_t n_items = 0;
    cursor c = from;
    for (int u = 0; u < count; u++) {
        const serve_work *w = works[c.work];
        n_items += (size_t)(w->offsets[c.user + 1] - w->offsets[c.user]);
        if (++c.user == w->users) c = (cursor){c.work + 1, 0};
    }
    if (reserve((void **)&s->items, &s->items_cap, n_items + 1, sizeof *s->items) ||
        reserve((void **)&s->offsets, &s->offsets_cap, (size_t)count + 1, sizeof *s->offsets))
        return -1;
    c = from;
    s->offsets[0] = 0;
    for (int u = 0; u < count; u++) {
        const serve_work *w = works[c.work];
        int64_t a = w->offsets[c.user], len = w->offsets[c.user + 1] - a;
        memcpy(s->items + s->offsets[u], w->items + a, sizeof *s->items * (size_t)len);
        s->offsets[u + 1] = s->offsets[u] + len;
        if (++c.user == w->users) c = (cursor){c.work + 1, 0};
    }
    return 0;
}

/* One library call for `count` users from `from`; results scattered back. */
static int run_chunk(elastic_session *session, serve_work **works, cursor from, int count,
                     int max_k, int64_t num_items, int64_t dim, serve_scratch *s, char *err,
                     size_t err_size)
{
    serve_op op = works[from.work]->op;
    if (gather(works, from, count, s)) {
        snprintf(err, err_size, "out of memory (batch)");
        return -1;
    }
    size_t width = op == SERVE_OP_RECOMMEND ? (size_t)max_k
                   : op == SERVE_OP_RANK    ? (size_t)num_items
                                            : (size_t)dim;
    if (reserve((void **)&s->scores, &s->scores_cap, (size_t)count * width, sizeof *s->scores) ||
        (op == SERVE_OP_RECOMMEND &&
         reserve((void **)&s->ids, &s->ids_cap, (size_t)count * width, sizeof *s->ids))) {
        snprintf(err, err_size, "out of memory (batch of %d users)", count);
        return -1;
    }
    elastic_status st;
    if (op == SERVE_OP_RECOMMEND)
        st = elastic_session_recommend(session, s->items, s->offsets, count, max_k,
                                       works[from.work]->exclude_history, s->ids, s->scores);
    else if (op == SERVE_OP_RANK)
        st = elastic_session_scores(session, s->items, s->offsets, count, s->scores);
    else
        st = elastic_session_user_vectors(session, s->items, s->offsets, count, s->scores);
    if (st != ELASTIC_OK) {
        snprintf(err, err_size, "%s (%s)", elastic_last_error(), elastic_status_name(st));
        return -1;
    }
    cursor c = from;
    for (int u = 0; u < count; u++) {
        serve_work *w = works[c.work];
        size_t row = (size_t)c.user;
        const float *sc = s->scores + (size_t)u * width;
        if (op == SERVE_OP_USER_VECTORS)
            memcpy(w->vectors + row * (size_t)dim, sc, sizeof *sc * (size_t)dim);
        else if (op == SERVE_OP_RECOMMEND) {
            memcpy(w->ids + row * (size_t)w->top_k, s->ids + (size_t)u * width,
                   sizeof *w->ids * (size_t)w->top_k);
            memcpy(w->scores + row * (size_t)w->top_k, sc, sizeof *sc * (size_t)w->top_k);
        } else {
            int64_t a = w->cand_offsets[c.user], h = w->offsets[c.user];
            if (serve_rank_candidates(sc, w->candidates + a, w->cand_offsets[c.user + 1] - a,
                                      w->items + h, w->offsets[c.user + 1] - h, w->exclude_history,
                                      w->top_k, w->ids + row * (size_t)w->top_k,
                                      w->scores + row * (size_t)w->top_k, s) < 0) {
                snprintf(err, err_size, "out of memory (ranking)");
                return -1;
            }
        }
        if (++c.user == w->users) c = (cursor){c.work + 1, 0};
    }
    return 0;
}

void serve_compute(elastic_session *session, serve_work **works, int n, int max_batch,
                   serve_scratch *s)
{
    if (n <= 0) return;
    const elastic_config *cfg = elastic_model_config(elastic_session_model(session));
    int64_t num_items = cfg->num_items, dim = cfg->hidden;
    if (alloc_results(works, n, dim)) {
        fail_all(works, n, "out of memory (results)");
        return;
    }
    int total = 0, max_k = 1;
    for (int i = 0; i < n; i++) {
        total += works[i]->users;
        if (works[i]->top_k > max_k) max_k = works[i]->top_k;
    }
    /* Scores of every item for RANK: keep a chunk's [B, I] near 64 MiB. */
    int chunk = max_batch > 0 ? max_batch : 1;
    if (works[0]->op == SERVE_OP_RANK) {
        int64_t fit = (64ll << 20) / (int64_t)sizeof(float) / (num_items > 0 ? num_items : 1);
        if (fit < chunk) chunk = fit > 1 ? (int)fit : 1;
    }
    char err[256];
    cursor c = {0, 0};
    for (int done = 0; done < total;) {
        int count = total - done < chunk ? total - done : chunk;
        if (run_chunk(session, works, c, count, max_k, num_items, dim, s, err, sizeof err)) {
            fail_all(works, n, err);
            return;
        }
        done += count;
        for (int u = 0; u < count; u++)
            if (++c.user == works[c.work]->users) c = (cursor){c.work + 1, 0};
    }
    for (int i = 0; i < n; i++)
        works[i]->status = SERVE_WORK_DONE;
}
