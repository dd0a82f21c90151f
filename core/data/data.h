/*
 * data.h - the inside of an elastic_dataset (shared by data.c, synth.c and
 * metrics.c).
 */
#ifndef ELASTIC_CORE_DATA_H
#define ELASTIC_CORE_DATA_H

#include "elastic.h"
#include "base/hashmap.h"

struct elastic_dataset {
    int64_t num_users, num_items, num_events;
    int64_t *offsets;           /* [U+1]: user u's items are items[offsets[u] .. offsets[u+1]-1] */
    int32_t *items;             /* [events], ids 1..I, time order within a user */
    elastic_strmap user_names;  /* index u = user u */
    elastic_strmap item_names;  /* index v-1 = item v */
    elastic_data_format format; /* as read (AUTO resolved) */
    uint32_t magic; /* ELASTIC_DATASET_MAGIC while live; cleared by elastic_dataset_free */
};

#define ELASTIC_DATASET_MAGIC 0x44415441u /* "DATA" */
/* True for a dataset that is not NULL and not freed by elastic_dataset_free
 * (while its memory is not reused): calls refuse a freed one instead of
 * reading freed arrays. */
static inline int elastic_dataset_live(const elastic_dataset *d)
{
    return d && d->magic == ELASTIC_DATASET_MAGIC;
}

/* An empty dataset (maps initialised, no users); NULL when out of memory. */
elastic_dataset *elastic_dataset_new(void);

#endif
