/*
 * negatives.h - the classes of a sampled softmax (spec section 5): each step
 * draws S negatives shared by the whole batch, uniformly or in proportion to
 * the items' training counts, and scores every row against the union of the
 * batch's targets and the draws, each column corrected by -log P(the item is
 * among the draws) (the log-Q correction), so that the sampled loss is an
 * unbiased stand-in for the full softmax over all I items.
 */
#ifndef ELASTIC_CORE_NEGATIVES_H
#define ELASTIC_CORE_NEGATIVES_H

#include "elastic_train.h"

/* Padding columns get this bias: exp() of it is 0, so they take no part. */
#define ELASTIC_NEGATIVES_PAD_BIAS (-1e30f)

typedef struct elastic_negatives {
    int64_t items; /* I */
    int draws;     /* S */
    int sampler;   /* an elastic_sampler */
    double *cdf;   /* popularity: cumulative weights (count + 1) of items 1..I; NULL until set */
    int32_t *slot; /* [I + 1]: this step's column of an item, or -1 */
    int32_t *ids;  /* [cap]: columns as rows of the items view (item id - 1) */
    float *bias;   /* [cap]: -log P(item among the draws); the padding bias */
    int64_t cap;
} elastic_negatives;

elastic_status elastic_negatives_init(elastic_negatives *n, int64_t items, int draws, int sampler);
void elastic_negatives_free(elastic_negatives *n);

/* Popularity weights: counts[v - 1] training events of item v = 1..I. */
elastic_status elastic_negatives_set_counts(elastic_negatives *n, const int64_t *counts);

/* The classes of one step: the distinct targets of targets[0..rows-1] (0 =
 * an ignored row) in order of appearance, then the distinct draws of step
 * `step` (a pure function of seed, step and draw index), padded to
 * rows + S columns. targets are rewritten in place to their column + 1 (0
 * stays 0). n->ids and n->bias then hold the rows + S columns. */
elastic_status elastic_negatives_draw(elastic_negatives *n, uint64_t seed, uint64_t step,
                                      int32_t *targets, int64_t rows);

#endif
