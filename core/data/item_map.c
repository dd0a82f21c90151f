/*
 * item_map.c - a model's item-id map: its "item_ids" metadata (a JSON array
 * of the original ids of items 1..I, written by the trainer) as a two-way
 * lookup between original ids and the model's ids.
 */
#include "elastic.h"
#include "base/error.h"
#include "base/hashmap.h"
#include "data/item_map.h"
#include "model/model.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Set while a map is live, cleared by elastic_item_map_free: a call on a
 * freed map (while its memory is not reused) is refused, not run. */
#define ITEM_MAP_MAGIC 0x494D4150u /* "IMAP" */
#define ITEM_MAP_LIVE(m) ((m) && (m)->magic == ITEM_MAP_MAGIC)

struct elastic_item_map {
    elastic_strmap names; /* index i <-> item i+1 */
    uint32_t magic;
};

elastic_status elastic_item_map_parse(const char *json, elastic_strmap *map)
{
    elastic_strmap_init(map);
    json_error_t jerr;
    json_t *arr = json_loads(json, 0, &jerr);
    if (!arr || !json_is_array(arr)) {
        json_decref(arr);
        return elastic_error(ELASTIC_ERR_FORMAT, "item map: not a JSON array of strings%s%s",
                             arr ? "" : ": ", arr ? "" : jerr.text);
    }
    size_t n = json_array_size(arr);
    elastic_status st = ELASTIC_OK;
    if (n == 0 || n >= (size_t)INT32_MAX - 1)
        st = elastic_error(ELASTIC_ERR_FORMAT, "item map: %zu entries", n);
    for (size_t i = 0; i < n && st == ELASTIC_OK; i++) {
        json_t *s = json_array_get(arr, i);
        if (!json_is_string(s)) {
            st = elastic_error(ELASTIC_ERR_FORMAT, "item map: entry %zu is not a string", i);
            break;
        }
        const char *name = json_string_value(s);
        size_t len = json_string_length(s);
        if (strlen(name) != len || len == 0) {
            st = elastic_error(ELASTIC_ERR_FORMAT, "item map: entry %zu is empty or holds NUL", i);
            break;
        }
        int64_t idx;
        int added;
        st = elastic_strmap_intern(map, name, len, &idx, &added);
        if (st == ELASTIC_OK && !added)
            st = elastic_error(ELASTIC_ERR_FORMAT, "item map: item '%s' appears twice", name);
    }
    json_decref(arr);
    if (st != ELASTIC_OK) elastic_strmap_free(map);
    return st;
}

elastic_status elastic_item_map_init(elastic_item_map **out, const elastic_model *model)
{
    elastic_error_clear();
    if (!out || !model) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL map or model");
    *out = NULL;
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the model was freed");
    const char *json = elastic_model_metadata(model, "item_ids");
    if (!json)
        return elastic_error(ELASTIC_ERR_FORMAT, "the model has no item map (metadata 'item_ids')");
    elastic_item_map *m = malloc(sizeof *m);
    if (!m) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item map)");
    elastic_status st = elastic_item_map_parse(json, &m->names);
    if (st == ELASTIC_OK && m->names.count != elastic_model_config(model)->num_items) {
        st = elastic_error(ELASTIC_ERR_FORMAT, "item map has %lld entries, the model %lld items",
                           (long long)m->names.count,
                           (long long)elastic_model_config(model)->num_items);
        elastic_strmap_free(&m->names);
    }
    if (st != ELASTIC_OK) {
        free(m);
        return st;
    }
    m->magic = ITEM_MAP_MAGIC;
    *out = m;
    return ELASTIC_OK;
}

void elastic_item_map_free(elastic_item_map *map)
{
    if (!ITEM_MAP_LIVE(map)) return; /* NULL, or freed already */
    map->magic = 0;
    elastic_strmap_free(&map->names);
    free(map);
}

int32_t elastic_item_map_id(const elastic_item_map *map, const char *name)
{
    if (!ITEM_MAP_LIVE(map) || !name) return 0;
    int64_t idx = elastic_strmap_find(&map->names, name, strlen(name));
    return idx < 0 ? 0 : (int32_t)(idx + 1);
}

const char *elastic_item_map_name(const elastic_item_map *map, int32_t item)
{
    if (!ITEM_MAP_LIVE(map) || item < 1 || item > map->names.count) return NULL;
    return elastic_strmap_key(&map->names, item - 1);
}
