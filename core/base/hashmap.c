/* hashmap.c - the string interner of hashmap.h. */
#include "base/hashmap.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

void elastic_strmap_init(elastic_strmap *map)
{
    memset(map, 0, sizeof *map);
}

void elastic_strmap_free(elastic_strmap *map)
{
    if (!map) return;
    free(map->pool);
    free(map->key_off);
    free(map->key_hash);
    free(map->slots);
    memset(map, 0, sizeof *map);
}

static int64_t probe(const elastic_strmap *map, const char *key, size_t len, uint64_t h,
                     size_t *slot)
{
    size_t mask = map->n_slots - 1, i = (size_t)h & mask;
    for (;;) {
        int64_t idx = map->slots[i];
        if (idx < 0) {
            *slot = i;
            return -1;
        }
        if (map->key_hash[idx] == h) {
            const char *k = map->pool + map->key_off[idx];
            if (!memcmp(k, key, len) && k[len] == '\0') {
                *slot = i;
                return idx;
            }
        }
        i = (i + 1) & mask;
    }
}

static elastic_status grow_table(elastic_strmap *map)
{
    size_t n = map->n_slots ? map->n_slots * 2 : 64;
    if (n > SIZE_MAX / sizeof(int64_t))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "id map too large");
    int64_t *slots = malloc(n * sizeof *slots);
    if (!slots) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (id map)");
    for (size_t i = 0; i < n; i++)
        slots[i] = -1;
    for (int64_t idx = 0; idx < map->count; idx++) {
        size_t i = (size_t)map->key_hash[idx] & (n - 1);
        while (slots[i] >= 0)
            i = (i + 1) & (n - 1);
        slots[i] = idx;
    }
    free(map->slots);
    map->slots = slots;
    map->n_slots = n;
    return ELASTIC_OK;
}

int64_t elastic_strmap_find(const elastic_strmap *map, const char *key, size_t len)
{
    if (!map || !map->n_slots) return -1;
    size_t slot;
    return probe(map, key, len, fnv1a(key, len), &slot);
}

elastic_status elastic_strmap_intern(elastic_strmap *map, const char *key, size_t len,
                                     int64_t *index, int *added)
{
    if (added) *added = 0;
    /* Keep the load factor at most 1/2. */
    if ((size_t)(map->count + 1) * 2 > map->n_slots) ELASTIC_TRY(grow_table(map));
    uint64_t h = fnv1a(key, len);
    size_t slot;
    int64_t idx = probe(map, key, len, h, &slot);
    if (idx >= 0) {
        *index = idx;
        return ELASTIC_OK;
    }
    if (map->count == map->index_cap) {
        int64_t cap = map->index_cap ? map->index_cap * 2 : 64;
        size_t *off = realloc(map->key_off, (size_t)cap * sizeof *off);
        if (!off) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (id map)");
        map->key_off = off;
        uint64_t *hs = realloc(map->key_hash, (size_t)cap * sizeof *hs);
        if (!hs) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (id map)");
        map->key_hash = hs;
        map->index_cap = cap;
    }
    if (map->pool_len + len + 1 > map->pool_cap) {
        size_t cap = map->pool_cap ? map->pool_cap : 256;
        while (cap < map->pool_len + len + 1)
            cap *= 2;
        char *p = realloc(map->pool, cap);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (id map)");
        map->pool = p;
        map->pool_cap = cap;
    }
    idx = map->count++;
    map->key_off[idx] = map->pool_len;
    map->key_hash[idx] = h;
    memcpy(map->pool + map->pool_len, key, len);
    map->pool[map->pool_len + len] = '\0';
    map->pool_len += len + 1;
    map->slots[slot] = idx;
    *index = idx;
    if (added) *added = 1;
    return ELASTIC_OK;
}

const char *elastic_strmap_key(const elastic_strmap *map, int64_t index)
{
    if (!map || index < 0 || index >= map->count) return NULL;
    return map->pool + map->key_off[index];
}
