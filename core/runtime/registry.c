/*
 * registry.c - the backends compiled into this library, and the public
 * listing of them.
 */
#include "runtime/backend.h"
#include "base/error.h"

#include <string.h>

static const elastic_backend_iface *const registry[] = {
#if defined(ELASTIC_HAVE_CUDA_BACKEND)
    &elastic_cuda_backend_iface,
#endif
#if defined(ELASTIC_HAVE_OPENCL_BACKEND)
    &elastic_opencl_backend_iface,
#endif
    &elastic_cpu_backend_iface,
};
#define N_REGISTRY ((int)(sizeof registry / sizeof registry[0]))

/* Backends the library knows of, compiled in or not, for the listing. */
static const char *const known[] = {"cpu", "opencl", "cuda"};

int elastic_backend_registry_count(void)
{
    return N_REGISTRY;
}

const elastic_backend_iface *elastic_backend_registry_get(int index)
{
    return index >= 0 && index < N_REGISTRY ? registry[index] : NULL;
}

const elastic_backend_iface *elastic_backend_registry_find(const char *name)
{
    for (int i = 0; i < N_REGISTRY; i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

int elastic_backend_count(void)
{
    return (int)(sizeof known / sizeof known[0]);
}

elastic_status elastic_backend_get_info(int index, elastic_backend_info *info)
{
    elastic_error_clear();
    if (!info) return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_backend_get_info: NULL info");
    if (index < 0 || index >= elastic_backend_count())
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "backend index %d outside 0..%d", index,
                             elastic_backend_count() - 1);
    memset(info, 0, sizeof *info);
    info->name = known[index];
    const elastic_backend_iface *iface = elastic_backend_registry_find(known[index]);
    if (!iface) {
        strcpy(info->description, "not compiled into this library");
        return ELASTIC_OK;
    }
    iface->probe(info);
    info->name = known[index];
    return ELASTIC_OK;
}
