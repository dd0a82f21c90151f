/*
 * cpu_pack_cache.h - weights packed once per inference session.
 *
 * The GEMM of the fast kernel tables reads W in panels (cpu_kernels.c,
 * lin_pack), and packs it on every call. While a session's parameter block
 * is constant (backend.h, set_constant_weights), the backend keeps each
 * weight's panels here, made at its first use, and runs the tables'
 * *_packed entries: the same bits, without the packing. Nothing is packed
 * for the reference table, for tensors outside the constant block, or past
 * the cache's byte limit (cpu.pack_mb); the caller then takes the per-call
 * path.
 *
 * A cache belongs to one backend, used by one thread at a time (sessions
 * are), so it needs no lock.
 */
#ifndef ELASTIC_CPU_PACK_CACHE_H
#define ELASTIC_CPU_PACK_CACHE_H

#include "cpu_kernels.h"

#include <stddef.h>
#include <stdint.h>

typedef struct cpu_pack cpu_pack;

typedef struct cpu_pack_cache {
    const elastic_cpu_kernels *k;
    const char *lo, *hi; /* the constant parameter block; NULL: none */
    cpu_pack *packs;
    int n, cap;
    size_t bytes, limit; /* packed bytes held, and the most it may hold */
} cpu_pack_cache;

void cpu_pack_cache_init(cpu_pack_cache *c, const elastic_cpu_kernels *k, size_t limit);
/* The constant block is [data, data + size) from now on (NULL: none); the
 * packs made so far are dropped. */
void cpu_pack_cache_set(cpu_pack_cache *c, const void *data, size_t size);
/* W [n, k] and its bias (or NULL) packed for k->*_packed, or NULL: not in
 * the constant block, no packed entries, or no memory left for it. */
const float *cpu_pack_cache_get(cpu_pack_cache *c, const float *w, const float *bias, int64_t n,
                                int64_t k);
void cpu_pack_cache_free(cpu_pack_cache *c);

#endif
