/*
 * hashmap.h - a string interner: maps byte strings to dense indices 0..n-1
 * in order of insertion and back (open addressing, FNV-1a, grows without a
 * fixed limit). Used for the user and item ids of interaction logs.
 */
#ifndef ELASTIC_CORE_HASHMAP_H
#define ELASTIC_CORE_HASHMAP_H

#include "elastic.h"

#include <stddef.h>
#include <stdint.h>

typedef struct elastic_strmap {
    char *pool; /* the keys, each NUL-terminated */
    size_t pool_len, pool_cap;
    size_t *key_off;    /* index -> offset of its key in pool */
    uint64_t *key_hash; /* index -> hash (for growing the table) */
    int64_t count, index_cap;
    int64_t *slots; /* -1 = empty, else an index */
    size_t n_slots; /* a power of two, or 0 before the first insert */
} elastic_strmap;

/* An empty map (no allocation); free it with elastic_strmap_free. */
void elastic_strmap_init(elastic_strmap *map);
void elastic_strmap_free(elastic_strmap *map);

/* The index of key[0..len) (which must hold no NUL), inserting it with the
 * next index if absent; *added says which. ELASTIC_ERR_NO_MEMORY on failure
 * (the map stays valid). */
elastic_status elastic_strmap_intern(elastic_strmap *map, const char *key, size_t len,
                                     int64_t *index, int *added);
/* The index of key[0..len), or -1. */
int64_t elastic_strmap_find(const elastic_strmap *map, const char *key, size_t len);
/* The key of an index (NUL-terminated; valid until the next insert). */
const char *elastic_strmap_key(const elastic_strmap *map, int64_t index);

#endif
