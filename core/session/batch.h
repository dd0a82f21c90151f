/*
 * batch.h - checking user histories and laying them out as a padded batch
 * (spec section 4): shared by sessions and trainers.
 */
#ifndef ELASTIC_CORE_BATCH_H
#define ELASTIC_CORE_BATCH_H

#include "elastic.h"

/* Checks histories in compressed-row form against I items (no empty
 * history, ids in 1..I); *longest gets the longest length. */
elastic_status elastic_batch_check(int64_t num_items, const int32_t *items, const int64_t *offsets,
                                   int batch, int64_t *longest);

/* items_out [B, n]: user b's item with recency r at column r (0 = padding);
 * lengths_out [B] = min(len_b, n). */
void elastic_batch_pad(const int32_t *items, const int64_t *offsets, int batch, int64_t n,
                       int32_t *items_out, int32_t *lengths_out);

#endif
