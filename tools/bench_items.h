/*
 * bench_items.h - `elastic bench --items`: recommendation over catalogues of
 * many items (bench_items.c).
 */
#ifndef ELASTIC_TOOLS_BENCH_ITEMS_H
#define ELASTIC_TOOLS_BENCH_ITEMS_H

#include <stdint.h>

#include "elastic.h"

/* Times top-K recommendation for each catalogue size items[0..count-1] on
 * `backend` (B users, histories of n items, K) beside the machine's memory
 * bandwidth measured in the same run; prints a table (JSON on stdout with
 * json, the table then on stderr). Returns the exit status. */
int bench_items(const int64_t *items, int count, const elastic_session_options *session,
                const char *backend, int batch, int64_t n, int top_k, double budget, uint64_t seed,
                int json);

#endif
