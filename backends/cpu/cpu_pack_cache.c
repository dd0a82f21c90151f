/*
 * cpu_pack_cache.c - weights packed once per inference session (see
 * cpu_pack_cache.h).
 */
#include "cpu_pack_cache.h"

#include <stdlib.h>
#include <string.h>

struct cpu_pack {
    const float *w, *bias;
    int64_t n, k;
    float *data;
};

void cpu_pack_cache_init(cpu_pack_cache *c, const elastic_cpu_kernels *k, size_t limit)
{
    memset(c, 0, sizeof *c);
    c->k = k;
    c->limit = limit;
}

static void drop(cpu_pack_cache *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->packs[i].data);
    c->n = 0;
    c->bytes = 0;
}

void cpu_pack_cache_set(cpu_pack_cache *c, const void *data, size_t size)
{
    drop(c);
    c->lo = data;
    c->hi = data ? (const char *)data + size : NULL;
}

/* Whether [p, p + count floats) lies in the constant block. */
static int inside(const cpu_pack_cache *c, const float *p, int64_t count)
{
    const char *a = (const char *)p;
    return c->lo && a >= c->lo && a <= c->hi && count >= 0 &&
           (size_t)count <= (size_t)(c->hi - a) / sizeof(float);
}

const float *cpu_pack_cache_get(cpu_pack_cache *c, const float *w, const float *bias, int64_t n,
                                int64_t k)
{
    if (!c->k->pack || !c->lo || n <= 0 || k <= 0) return NULL;
    for (int i = 0; i < c->n; i++) {
        const cpu_pack *p = &c->packs[i];
        if (p->w == w && p->bias == bias && p->n == n && p->k == k) return p->data;
    }
    if (!inside(c, w, n * k) || (bias && !inside(c, bias, n))) return NULL;
    size_t bytes = (c->k->packed_floats(n, k) * sizeof(float) + 63) & ~(size_t)63;
    if (bytes > c->limit - c->bytes) return NULL; /* c->bytes <= c->limit always */
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 16;
        cpu_pack *grown = realloc(c->packs, sizeof *grown * (size_t)cap);
        if (!grown) return NULL;
        c->packs = grown;
        c->cap = cap;
    }
    float *data = aligned_alloc(64, bytes);
    if (!data) return NULL;
    c->k->pack(w, bias, data, n, k);
    c->packs[c->n++] = (cpu_pack){w, bias, n, k, data};
    c->bytes += bytes;
    return data;
}

void cpu_pack_cache_free(cpu_pack_cache *c)
{
    drop(c);
    free(c->packs);
    memset(c, 0, sizeof *c);
}
