/*
 * metrics.c - the evaluation protocol of spec section 6: full-ranking rank of
 * a target (ties by the smaller id, history left out, NaN last), HR, NDCG and
 * MRR at K = 10 and 50, and evaluation of a model (through a session) and of
 * the popularity ranking on a leave-one-out split.
 */
#include "data/data.h"

#include "base/error.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Does item a (score sa) rank above item b (score sb)? */
static int ranks_above(float sa, int32_t a, float sb, int32_t b)
{
    int na = isnan(sa), nb = isnan(sb);
    if (na || nb) return na && nb ? a < b : nb;
    if (sa != sb) return sa > sb;
    return a < b;
}

/* The rank with a scratch mark array (mark[0..I] zero on entry and exit). */
static int64_t rank_marked(const float *scores, int64_t I, int32_t target, const int32_t *ex,
                           int64_t n_ex, unsigned char *mark)
{
    float st = scores[target - 1];
    int64_t above = 0;
    for (int64_t v = 1; v <= I; v++)
        above += ranks_above(scores[v - 1], (int32_t)v, st, target);
    for (int64_t e = 0; e < n_ex; e++) {
        int32_t v = ex[e];
        if (v < 1 || v > I || v == target || mark[v]) continue;
        mark[v] = 1;
        above -= ranks_above(scores[v - 1], v, st, target);
    }
    for (int64_t e = 0; e < n_ex; e++)
        if (ex[e] >= 1 && ex[e] <= I) mark[ex[e]] = 0;
    return above + 1;
}

int64_t elastic_rank_of(const float *scores, int64_t num_items, int32_t target,
                        const int32_t *exclude, int64_t n_exclude)
{
    if (!scores || num_items < 1 || target < 1 || target > num_items) return 0;
    if (!exclude || n_exclude < 0) n_exclude = 0;
    unsigned char *mark = NULL;
    if (n_exclude > 16) mark = calloc((size_t)num_items + 1, 1);
    if (mark) {
        int64_t r = rank_marked(scores, num_items, target, exclude, n_exclude, mark);
        free(mark);
        return r;
    }
    /* Few exclusions (or no memory): find duplicates by scanning. */
    float st = scores[target - 1];
    int64_t above = 0;
    for (int64_t v = 1; v <= num_items; v++)
        above += ranks_above(scores[v - 1], (int32_t)v, st, target);
    for (int64_t e = 0; e < n_exclude; e++) {
        int32_t v = exclude[e];
        if (v < 1 || v > num_items || v == target) continue;
        int dup = 0;
        for (int64_t f = 0; f < e && !dup; f++)
            dup = exclude[f] == v;
        if (!dup) above -= ranks_above(scores[v - 1], v, st, target);
    }
    return above + 1;
}

void elastic_metrics_add(elastic_metrics *m, int64_t rank)
{
    if (!m) return;
    m->users++;
    if (rank < 1) return; /* no rank: a miss */
    double gain = 1.0 / log2((double)rank + 1.0);
    if (rank <= 10) {
        m->hr10 += 1.0;
        m->ndcg10 += gain;
    }
    if (rank <= 50) {
        m->hr50 += 1.0;
        m->ndcg50 += gain;
    }
    m->mrr += 1.0 / (double)rank;
}

void elastic_metrics_finish(elastic_metrics *m)
{
    if (!m || m->users <= 0) return;
    double n = (double)m->users;
    m->hr10 /= n;
    m->hr50 /= n;
    m->ndcg10 /= n;
    m->ndcg50 /= n;
    m->mrr /= n;
}

static elastic_status check_eval_args(const elastic_dataset *d, elastic_split split,
                                      int64_t max_users, elastic_metrics *metrics)
{
    if (!d || !metrics) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset or metrics");
    if (!elastic_dataset_live(d))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the dataset was freed");
    if (split != ELASTIC_SPLIT_VALID && split != ELASTIC_SPLIT_TEST)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown split %d", (int)split);
    if (max_users < 0) return elastic_error(ELASTIC_ERR_INVALID_ARG, "max_users < 0");
    return ELASTIC_OK;
}

/* The split of user u, or 0 when the user has none. */
static int user_split(const elastic_dataset *d, int64_t u, elastic_split split,
                      const int32_t **hist, int64_t *len, int32_t *target)
{
    int64_t n = d->offsets[u + 1] - d->offsets[u];
    if (n < 3) return 0;
    *hist = d->items + d->offsets[u];
    *len = split == ELASTIC_SPLIT_VALID ? n - 2 : n - 1;
    *target = (*hist)[*len];
    return 1;
}

elastic_status elastic_evaluate(elastic_session *session, const elastic_dataset *d,
                                elastic_split split, int64_t max_users, elastic_metrics *metrics)
{
    elastic_error_clear();
    if (!session) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session");
    ELASTIC_TRY(check_eval_args(d, split, max_users, metrics));
    memset(metrics, 0, sizeof *metrics);
    if (!elastic_session_model(session)) /* NULL only for a freed session */
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the session was freed");
    const elastic_config *c = &elastic_session_model(session)->config;
    int64_t I = c->num_items, N = c->max_len;
    if (d->num_items > I)
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                             "the data has %lld items, the model %lld (map the data's ids "
                             "through the model's item map first)",
                             (long long)d->num_items, (long long)I);
    /* Users per batch: at most 256, and the scores at most 64 Mi floats. */
    int64_t B = (int64_t)(64 << 20) / I;
    B = B < 1 ? 1 : B > 256 ? 256 : B;
    float *scores = malloc((size_t)(B * I) * sizeof *scores);
    int32_t *items = malloc((size_t)(B * N) * sizeof *items);
    int64_t *offsets = malloc((size_t)(B + 1) * sizeof *offsets);
    int64_t *users = malloc((size_t)B * sizeof *users);
    unsigned char *mark = calloc((size_t)I + 1, 1);
    elastic_status st = ELASTIC_OK;
    if (!scores || !items || !offsets || !users || !mark)
        st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (evaluation batch)");
    int64_t done = 0, u = 0;
    while (st == ELASTIC_OK && u < d->num_users && (!max_users || done < max_users)) {
        int b = 0;
        offsets[0] = 0;
        for (; u < d->num_users && b < B && (!max_users || done + b < max_users); u++) {
            const int32_t *h;
            int64_t len;
            int32_t target;
            if (!user_split(d, u, split, &h, &len, &target)) continue;
            int64_t keep = len < N ? len : N; /* the session reads only these */
            memcpy(items + offsets[b], h + len - keep, (size_t)keep * sizeof *items);
            offsets[b + 1] = offsets[b] + keep;
            users[b++] = u;
        }
        if (b == 0) break;
        st = elastic_session_scores(session, items, offsets, b, scores);
        for (int k = 0; st == ELASTIC_OK && k < b; k++) {
            const int32_t *h = NULL;
            int64_t len = 0;
            int32_t target = 0;
            user_split(d, users[k], split, &h, &len, &target);
            elastic_metrics_add(
                metrics, rank_marked(scores + (size_t)k * (size_t)I, I, target, h, len, mark));
        }
        done += b;
    }
    free(scores);
    free(items);
    free(offsets);
    free(users);
    free(mark);
    if (st != ELASTIC_OK) {
        memset(metrics, 0, sizeof *metrics);
        return st;
    }
    elastic_metrics_finish(metrics);
    return ELASTIC_OK;
}

typedef struct popular {
    int64_t count;
    int32_t item;
} popular;

static int cmp_popular(const void *a, const void *b)
{
    const popular *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

elastic_status elastic_evaluate_popularity(const elastic_dataset *d, elastic_split split,
                                           int64_t max_users, elastic_metrics *metrics)
{
    elastic_error_clear();
    ELASTIC_TRY(check_eval_args(d, split, max_users, metrics));
    memset(metrics, 0, sizeof *metrics);
    int64_t I = d->num_items;
    int64_t *count = calloc((size_t)I + 1, sizeof *count);
    popular *order = malloc((size_t)(I ? I : 1) * sizeof *order);
    int64_t *pos = malloc((size_t)(I + 1) * sizeof *pos);
    unsigned char *mark = calloc((size_t)I + 1, 1);
    if (!count || !order || !pos || !mark) {
        free(count);
        free(order);
        free(pos);
        free(mark);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (popularity)");
    }
    /* Counts over every event before the split's targets: for the validation
     * split all but the last two events of users with >= 3 events, for the
     * test split all but the last; users with fewer events count fully. */
    for (int64_t u = 0; u < d->num_users; u++) {
        int64_t n = d->offsets[u + 1] - d->offsets[u];
        int64_t keep = n < 3 ? n : split == ELASTIC_SPLIT_VALID ? n - 2 : n - 1;
        for (int64_t e = 0; e < keep; e++)
            count[d->items[d->offsets[u] + e]]++;
    }
    for (int64_t v = 0; v < I; v++)
        order[v] = (popular){count[v + 1], (int32_t)(v + 1)};
    qsort(order, (size_t)I, sizeof *order, cmp_popular);
    for (int64_t k = 0; k < I; k++)
        pos[order[k].item] = k;
    int64_t done = 0;
    for (int64_t u = 0; u < d->num_users && (!max_users || done < max_users); u++) {
        const int32_t *h;
        int64_t len;
        int32_t target;
        if (!user_split(d, u, split, &h, &len, &target)) continue;
        int64_t above = pos[target];
        for (int64_t e = 0; e < len; e++) {
            int32_t v = h[e];
            if (v == target || mark[v]) continue;
            mark[v] = 1;
            if (pos[v] < pos[target]) above--;
        }
        for (int64_t e = 0; e < len; e++)
            mark[h[e]] = 0;
        elastic_metrics_add(metrics, above + 1);
        done++;
    }
    elastic_metrics_finish(metrics);
    free(count);
    free(order);
    free(pos);
    free(mark);
    return ELASTIC_OK;
}
