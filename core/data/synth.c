/*
 * synth.c - deterministic synthetic interaction logs with planted structure.
 *
 * Items 1..I are shuffled and cut into C interest clusters of nearly equal
 * size; within a cluster, popularity follows Zipf (weight 1/(rank+1)) and
 * clusters themselves are Zipf-like (weight 1/sqrt(c+1)), so item popularity
 * is skewed and the popularity ranking is a sensible baseline. Each item has
 * a planted successor: the next item on a random cycle through its cluster
 * (so every item is the successor of exactly one item).
 *
 * A user has a primary cluster and, with probability 1/2, a secondary one.
 * The length is uniform in min_len..max_len. Each next item is, with
 * probability p_sequential, the successor of the previous item; otherwise it
 * is drawn (Zipf) from the primary cluster (secondary: 30%, a random cluster:
 * 5%). Users do not repeat items while unseen ones remain (a drawn item the
 * user already has is drawn again, then the cluster and then the whole
 * catalogue is scanned for one; a successor already seen falls back to a
 * draw). A sequential model can learn the successors; popularity cannot.
 *
 * Every random number comes from the project's counter-based generator
 * (rng.h): stream 1 shuffles items, stream 2 the successor cycles, stream
 * 16 + u drives user u; the same options always give the same log. Users are
 * named "1".."U" and item v is named "v".
 */
#include "data/data.h"

#include "base/error.h"
#include "base/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void elastic_synth_options_default(elastic_synth_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->users = 2000;
    o->items = 1000;
    o->clusters = 20;
    o->min_len = 20;
    o->max_len = 80;
    o->p_sequential = 0.5;
    o->seed = 1;
}

typedef struct synth {
    const elastic_synth_options *o;
    int64_t I, C;
    int32_t *perm;       /* [I]: cluster c holds perm[start[c] .. start[c+1]-1], by Zipf rank */
    int64_t *start;      /* [C+1] */
    double *cdf;         /* [I]: within-cluster cumulative Zipf weights, aligned with perm */
    double *cluster_cdf; /* [C] */
    int32_t *succ;       /* [I+1] */
    int64_t *used;       /* [I+1]: user stamp */
} synth;

static void shuffle(int32_t *a, int64_t n, uint64_t seed, uint64_t stream, uint64_t *counter)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(elastic_rng_u64(seed, stream, (*counter)++) % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* Smallest index in cdf[0..n) whose value is >= r * cdf[n-1]. */
static int64_t sample_cdf(const double *cdf, int64_t n, double r)
{
    double x = r * cdf[n - 1];
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] >= x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static int32_t draw_in_cluster(const synth *s, int64_t c, double r)
{
    int64_t a = s->start[c], n = s->start[c + 1] - a;
    return s->perm[a + sample_cdf(s->cdf + a, n, r)];
}

static elastic_status plant(synth *s)
{
    const elastic_synth_options *o = s->o;
    int64_t I = s->I, C = s->C;
    s->perm = malloc((size_t)I * sizeof *s->perm);
    s->start = malloc((size_t)(C + 1) * sizeof *s->start);
    s->cdf = malloc((size_t)I * sizeof *s->cdf);
    s->cluster_cdf = malloc((size_t)C * sizeof *s->cluster_cdf);
    s->succ = malloc((size_t)(I + 1) * sizeof *s->succ);
    s->used = calloc((size_t)I + 1, sizeof *s->used);
    int32_t *cyc = malloc((size_t)I * sizeof *cyc);
    if (!s->perm || !s->start || !s->cdf || !s->cluster_cdf || !s->succ || !s->used || !cyc) {
        free(cyc);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (synthetic log)");
    }
    uint64_t counter = 0;
    for (int64_t i = 0; i < I; i++)
        s->perm[i] = (int32_t)(i + 1);
    shuffle(s->perm, I, o->seed, 1, &counter);
    double acc = 0.0;
    for (int64_t c = 0; c <= C; c++)
        s->start[c] = c * I / C;
    for (int64_t c = 0; c < C; c++) {
        acc += 1.0 / sqrt((double)(c + 1));
        s->cluster_cdf[c] = acc;
        double w = 0.0;
        for (int64_t k = s->start[c]; k < s->start[c + 1]; k++) {
            w += 1.0 / (double)(k - s->start[c] + 1);
            s->cdf[k] = w;
        }
    }
    /* Successors: a random cycle through each cluster. */
    memcpy(cyc, s->perm, (size_t)I * sizeof *cyc);
    counter = 0;
    for (int64_t c = 0; c < C; c++) {
        int64_t a = s->start[c], n = s->start[c + 1] - a;
        shuffle(cyc + a, n, o->seed, 2, &counter);
        for (int64_t k = 0; k < n; k++)
            s->succ[cyc[a + k]] = cyc[a + (k + 1) % n];
        if (n == 1) s->succ[cyc[a]] = (int32_t)(cyc[a] % I + 1); /* never itself */
    }
    s->succ[0] = 0;
    free(cyc);
    return ELASTIC_OK;
}

/* The next item of user u (stamp u+1); `r` draws the user's uniforms. */
static int32_t next_item(synth *s, int64_t u, int32_t prev, int64_t primary, int64_t secondary,
                         uint64_t stream, uint64_t *i)
{
    const elastic_synth_options *o = s->o;
    int64_t stamp = u + 1;
    if (prev && elastic_rng_uniform(o->seed, stream, (*i)++) < o->p_sequential) {
        int32_t v = s->succ[prev];
        if (s->used[v] != stamp) return v;
    }
    double r = elastic_rng_uniform(o->seed, stream, (*i)++);
    int64_t c = r < 0.05
                    ? sample_cdf(s->cluster_cdf, s->C, elastic_rng_uniform(o->seed, stream, (*i)++))
                : r < 0.35 && secondary >= 0 ? secondary
                                             : primary;
    for (int t = 0; t < 32; t++) {
        int32_t v = draw_in_cluster(s, c, elastic_rng_uniform(o->seed, stream, (*i)++));
        if (s->used[v] != stamp) return v;
    }
    for (int64_t k = s->start[c]; k < s->start[c + 1]; k++)
        if (s->used[s->perm[k]] != stamp) return s->perm[k];
    int64_t from = (int64_t)(elastic_rng_u64(o->seed, stream, (*i)++) % (uint64_t)s->I);
    for (int64_t k = 0; k < s->I; k++) {
        int32_t v = (int32_t)((from + k) % s->I + 1);
        if (s->used[v] != stamp) return v;
    }
    /* Every item seen (max_len > I): repeat one. */
    return draw_in_cluster(s, c, elastic_rng_uniform(o->seed, stream, (*i)++));
}

static elastic_status intern_numbers(elastic_strmap *map, int64_t n)
{
    char buf[32];
    for (int64_t k = 1; k <= n; k++) {
        int len = snprintf(buf, sizeof buf, "%lld", (long long)k);
        int64_t idx;
        ELASTIC_TRY(elastic_strmap_intern(map, buf, (size_t)len, &idx, NULL));
    }
    return ELASTIC_OK;
}

elastic_status elastic_dataset_synth(elastic_dataset **dataset, const elastic_synth_options *o)
{
    elastic_error_clear();
    if (!dataset || !o) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset or options");
    *dataset = NULL;
    if (o->users < 1) return elastic_error(ELASTIC_ERR_INVALID_ARG, "synth: users must be >= 1");
    if (o->items < 2 || o->items >= INT32_MAX - 1)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "synth: items must be in 2..%d",
                             INT32_MAX - 2);
    if (o->clusters < 1 || o->clusters > o->items)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "synth: clusters must be in 1..items (%lld)",
                             (long long)o->items);
    if (o->min_len < 1 || o->max_len < o->min_len)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "synth: lengths need 1 <= min_len <= max_len (got %lld..%lld)",
                             (long long)o->min_len, (long long)o->max_len);
    if (!(o->p_sequential >= 0.0 && o->p_sequential <= 1.0))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "synth: p_sequential must be in 0..1");
    if ((double)o->users * (double)o->max_len > 4e12)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "synth: users * max_len too large");

    synth s = {.o = o, .I = o->items, .C = o->clusters};
    elastic_dataset *d = elastic_dataset_new();
    elastic_status st = d ? plant(&s) : elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    if (st == ELASTIC_OK) {
        d->num_users = o->users;
        d->num_items = o->items;
        d->offsets = malloc((size_t)(o->users + 1) * sizeof *d->offsets);
        if (!d->offsets) st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    if (st == ELASTIC_OK) {
        /* Lengths first (counter 0 of each user's stream), then the items. */
        uint64_t span = (uint64_t)(o->max_len - o->min_len + 1);
        d->offsets[0] = 0;
        for (int64_t u = 0; u < o->users; u++)
            d->offsets[u + 1] = d->offsets[u] + o->min_len +
                                (int64_t)(elastic_rng_u64(o->seed, 16 + (uint64_t)u, 0) % span);
        d->num_events = d->offsets[o->users];
        d->items = malloc((size_t)d->num_events * sizeof *d->items);
        if (!d->items) st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    for (int64_t u = 0; st == ELASTIC_OK && u < o->users; u++) {
        uint64_t stream = 16 + (uint64_t)u, i = 1;
        int64_t primary = sample_cdf(s.cluster_cdf, s.C, elastic_rng_uniform(o->seed, stream, i++));
        int64_t secondary = -1;
        if (elastic_rng_uniform(o->seed, stream, i++) < 0.5)
            secondary = sample_cdf(s.cluster_cdf, s.C, elastic_rng_uniform(o->seed, stream, i++));
        int32_t prev = 0;
        for (int64_t e = d->offsets[u]; e < d->offsets[u + 1]; e++) {
            int32_t v = next_item(&s, u, prev, primary, secondary, stream, &i);
            s.used[v] = u + 1;
            d->items[e] = v;
            prev = v;
        }
    }
    if (st == ELASTIC_OK) st = intern_numbers(&d->user_names, o->users);
    if (st == ELASTIC_OK) st = intern_numbers(&d->item_names, o->items);
    free(s.perm);
    free(s.start);
    free(s.cdf);
    free(s.cluster_cdf);
    free(s.succ);
    free(s.used);
    if (st != ELASTIC_OK) {
        elastic_dataset_free(d);
        return st;
    }
    *dataset = d;
    return ELASTIC_OK;
}
