/*
 * plan_cache.h - the graphs and plans a session or a trainer has built, kept
 * by the shape they were built for and reused while they are among the
 * ELASTIC_PLAN_CACHE_SIZE most recently used.
 *
 * The owner chooses the key (a struct of the shape's sizes, compared byte for
 * byte: zero it before filling it in) and may hang its own data about the
 * graph (which tensor is the input, the loss, ...) on `extra`, allocated with
 * malloc and freed with the entry.
 *
 *   elastic_cached_plan *e;
 *   int hit;
 *   ELASTIC_TRY(elastic_plan_cache_get(&cache, &key, sizeof key, &e, &hit));
 *   if (!hit) {
 *       build e->graph, e->extra; elastic_executor_plan(exec, &e->graph, &e->plan);
 *       on success elastic_plan_cache_commit(&cache, e), else elastic_plan_cache_drop(e);
 *   }
 */
#ifndef ELASTIC_CORE_PLAN_CACHE_H
#define ELASTIC_CORE_PLAN_CACHE_H

#include "runtime/planner.h"

#define ELASTIC_PLAN_CACHE_SIZE 8
#define ELASTIC_PLAN_KEY_BYTES 96

typedef struct elastic_cached_plan {
    int valid; /* graph and plan are built */
    uint64_t last_use;
    unsigned char key[ELASTIC_PLAN_KEY_BYTES];
    size_t key_size;
    elastic_graph graph;
    elastic_plan plan;
    void *extra; /* the owner's, freed with the entry */
} elastic_cached_plan;

typedef struct elastic_plan_cache {
    elastic_cached_plan entries[ELASTIC_PLAN_CACHE_SIZE];
    uint64_t uses;
} elastic_plan_cache;

void elastic_plan_cache_init(elastic_plan_cache *cache);
void elastic_plan_cache_free(elastic_plan_cache *cache);

/* *entry is the one built for key (*hit = 1), or an empty one to build it
 * in (*hit = 0: the least recently used entry, emptied, its graph
 * initialised). Fails only for a key longer than ELASTIC_PLAN_KEY_BYTES. */
elastic_status elastic_plan_cache_get(elastic_plan_cache *cache, const void *key, size_t key_size,
                                      elastic_cached_plan **entry, int *hit);

/* Marks an entry built; its key was set by elastic_plan_cache_get. */
void elastic_plan_cache_commit(elastic_plan_cache *cache, elastic_cached_plan *entry);

/* Frees an entry's graph, plan and extra, and leaves it empty. */
void elastic_plan_cache_drop(elastic_cached_plan *entry);

#endif
