/*
 * negatives.c - the classes of a sampled softmax (see negatives.h).
 *
 * With replacement, S draws of probability q_v each: item v is among them
 * with probability p_v = 1 - (1 - q_v)^S, and every column v of the step,
 * target or draw, gets the bias -log p_v. For the uniform sampler p_v is the
 * same for every item, so the correction shifts every logit of a row alike
 * and changes nothing; for the popularity sampler it removes the bias toward
 * popular negatives. Popularity weights are count + 1, so that every item,
 * even one never seen in training, has q_v > 0 and a finite correction.
 */
#include "train/negatives.h"

#include "base/error.h"
#include "base/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEGATIVES_STREAM 0x6e65676174697665ULL /* "negative" */

elastic_status elastic_negatives_init(elastic_negatives *n, int64_t items, int draws, int sampler)
{
    memset(n, 0, sizeof *n);
    n->items = items;
    n->draws = draws;
    n->sampler = sampler;
    n->slot = malloc((size_t)(items + 1) * sizeof *n->slot);
    if (!n->slot) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (sampled softmax)");
    for (int64_t v = 0; v <= items; v++)
        n->slot[v] = -1;
    return ELASTIC_OK;
}

void elastic_negatives_free(elastic_negatives *n)
{
    free(n->cdf);
    free(n->slot);
    free(n->ids);
    free(n->bias);
    memset(n, 0, sizeof *n);
}

elastic_status elastic_negatives_set_counts(elastic_negatives *n, const int64_t *counts)
{
    double *cdf = n->cdf ? n->cdf : malloc((size_t)n->items * sizeof *cdf);
    if (!cdf) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item counts)");
    double sum = 0;
    for (int64_t v = 0; v < n->items; v++) {
        if (counts[v] < 0) {
            if (!n->cdf) free(cdf);
            return elastic_error(ELASTIC_ERR_INVALID_ARG, "item %lld has a negative count %lld",
                                 (long long)(v + 1), (long long)counts[v]);
        }
        sum += (double)counts[v] + 1.0;
        cdf[v] = sum;
    }
    n->cdf = cdf;
    return ELASTIC_OK;
}

/* q_v: the probability of one draw being item v (1..I). */
static double draw_probability(const elastic_negatives *n, int64_t v)
{
    if (n->sampler == ELASTIC_SAMPLER_UNIFORM) return 1.0 / (double)n->items;
    double below = v > 1 ? n->cdf[v - 2] : 0.0;
    return (n->cdf[v - 1] - below) / n->cdf[n->items - 1];
}

/* Draw i of a step: an item 1..I. */
static int64_t draw_item(const elastic_negatives *n, uint64_t seed, uint64_t step, uint64_t i)
{
    if (n->sampler == ELASTIC_SAMPLER_UNIFORM)
        return 1 +
               (int64_t)(elastic_rng_u64(seed, NEGATIVES_STREAM + step, i) % (uint64_t)n->items);
    double u = elastic_rng_uniform(seed, NEGATIVES_STREAM + step, i) * n->cdf[n->items - 1];
    int64_t lo = 0, hi = n->items - 1; /* the first v with cdf[v] > u */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (n->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo + 1;
}

/* Appends item v as a column (if it is not one yet); returns its column. */
static int32_t column(elastic_negatives *n, int64_t v, int64_t *c)
{
    if (n->slot[v] < 0) {
        double p = -expm1((double)n->draws * log1p(-draw_probability(n, v)));
        n->slot[v] = (int32_t)*c;
        n->ids[*c] = (int32_t)(v - 1);
        n->bias[*c] = (float)-log(p);
        ++*c;
    }
    return n->slot[v];
}

elastic_status elastic_negatives_draw(elastic_negatives *n, uint64_t seed, uint64_t step,
                                      int32_t *targets, int64_t rows)
{
    if (n->sampler == ELASTIC_SAMPLER_POPULARITY && !n->cdf)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "the popularity sampler needs the items' training counts: "
                             "elastic_trainer_set_item_counts (elastic_trainer_epoch sets them "
                             "from its dataset)");
    int64_t width = rows + n->draws;
    if (width > n->cap) {
        int32_t *ids = realloc(n->ids, (size_t)width * sizeof *ids);
        if (ids) n->ids = ids;
        float *bias = realloc(n->bias, (size_t)width * sizeof *bias);
        if (bias) n->bias = bias;
        if (!ids || !bias)
            return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (sampled softmax)");
        n->cap = width;
    }
    int64_t c = 0;
    for (int64_t r = 0; r < rows; r++)
        if (targets[r] > 0) targets[r] = column(n, targets[r], &c) + 1;
    for (int64_t i = 0; i < n->draws; i++)
        column(n, draw_item(n, seed, step, (uint64_t)i), &c);
    for (int64_t k = 0; k < c; k++) /* clear the marks for the next step */
        n->slot[n->ids[k] + 1] = -1;
    for (; c < width; c++) {
        n->ids[c] = 0;
        n->bias[c] = ELASTIC_NEGATIVES_PAD_BIAS;
    }
    return ELASTIC_OK;
}
