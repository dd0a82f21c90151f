/*
 * item_map.h - parsing an "item_ids" JSON array into a string map (index i
 * is item i+1); shared by the public item map and the dataset's renumbering.
 */
#ifndef ELASTIC_CORE_ITEM_MAP_H
#define ELASTIC_CORE_ITEM_MAP_H

#include "base/hashmap.h"

elastic_status elastic_item_map_parse(const char *json, elastic_strmap *map);

#endif
