/*
 * plan_cache.c - the least-recently-used cache of built graphs and plans
 * that sessions and trainers share (plan_cache.h).
 */
#include "runtime/plan_cache.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

void elastic_plan_cache_init(elastic_plan_cache *c)
{
    memset(c, 0, sizeof *c);
}

void elastic_plan_cache_drop(elastic_cached_plan *e)
{
    if (e->valid) elastic_plan_free(&e->plan);
    elastic_graph_free(&e->graph);
    free(e->extra);
    memset(e, 0, sizeof *e);
}

void elastic_plan_cache_free(elastic_plan_cache *c)
{
    for (int i = 0; i < ELASTIC_PLAN_CACHE_SIZE; i++)
        elastic_plan_cache_drop(&c->entries[i]);
    c->uses = 0;
}

elastic_status elastic_plan_cache_get(elastic_plan_cache *c, const void *key, size_t key_size,
                                      elastic_cached_plan **entry, int *hit)
{
    *hit = 0;
    *entry = NULL;
    if (key_size > ELASTIC_PLAN_KEY_BYTES)
        return elastic_error(ELASTIC_ERR_INTERNAL, "plan key of %zu bytes (at most %d)", key_size,
                             ELASTIC_PLAN_KEY_BYTES);
    elastic_cached_plan *victim = &c->entries[0];
    for (int i = 0; i < ELASTIC_PLAN_CACHE_SIZE; i++) {
        elastic_cached_plan *e = &c->entries[i];
        if (e->valid && e->key_size == key_size && !memcmp(e->key, key, key_size)) {
            e->last_use = ++c->uses;
            *hit = 1;
            *entry = e;
            return ELASTIC_OK;
        }
        if (!e->valid || (victim->valid && e->last_use < victim->last_use)) victim = e;
    }
    elastic_plan_cache_drop(victim);
    memcpy(victim->key, key, key_size);
    victim->key_size = key_size;
    elastic_graph_init(&victim->graph);
    *entry = victim;
    return ELASTIC_OK;
}

void elastic_plan_cache_commit(elastic_plan_cache *c, elastic_cached_plan *e)
{
    e->valid = 1;
    e->last_use = ++c->uses;
}
