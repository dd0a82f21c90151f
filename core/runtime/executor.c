/*
 * executor.c - runs planned graphs on a primary backend and, where the plan
 * says so, the CPU fallback (see executor.h).
 */
#include "runtime/executor.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

/* "auto": the first available accelerator, else the CPU. */
static const char *pick_auto(void)
{
    for (int i = 0; i < elastic_backend_registry_count(); i++) {
        const elastic_backend_iface *f = elastic_backend_registry_get(i);
        elastic_backend_info info;
        memset(&info, 0, sizeof info);
        f->probe(&info);
        if (info.available && info.accelerator) return f->name;
    }
    return "cpu";
}

void elastic_executor_free(elastic_executor *e)
{
    if (!e) return;
    for (int b = 0; b < e->n_backends; b++) {
        elastic_backend *be = e->backends[b];
        be->iface->buffer_free(be, e->arena[b]);
        be->iface->buffer_free(be, e->weights[b]);
        be->iface->free(be);
    }
    memset(e, 0, sizeof *e);
}

/* Starts a backend and gives it the parameter block. */
static elastic_status add_backend(elastic_executor *e, const elastic_backend_iface *f,
                                  const elastic_session_options *o)
{
    elastic_backend *be = NULL;
    ELASTIC_TRY(f->init(&be, o));
    int b = e->n_backends++;
    e->backends[b] = be;
    if (be->iface->buffer_wrap_host) {
        e->weights_wrapped[b] = 1;
        return be->iface->buffer_wrap_host(be, e->weights_host, e->weights_bytes, &e->weights[b]);
    }
    ELASTIC_TRY(be->iface->buffer_alloc(be, e->weights_bytes, &e->weights[b]));
    return be->iface->upload(be, e->weights[b], 0, e->weights_host, e->weights_bytes);
}

elastic_status elastic_executor_init(elastic_executor *e, const elastic_session_options *o,
                                     float *weights, size_t weights_bytes)
{
    memset(e, 0, sizeof *e);
    const char *name = o->backend ? o->backend : "auto";
    if (!strcmp(name, "auto")) name = pick_auto();
    const elastic_backend_iface *f = elastic_backend_registry_find(name);
    if (!f) {
        if (strcmp(name, "cpu") && strcmp(name, "opencl") && strcmp(name, "cuda"))
            return elastic_error(ELASTIC_ERR_BACKEND,
                                 "unknown backend '%s' (known: cpu, opencl, cuda, auto)", name);
        return elastic_error(ELASTIC_ERR_BACKEND, "backend '%s' is not compiled into this library",
                             name);
    }
    snprintf(e->backend_name, sizeof e->backend_name, "%s", name);
    e->weights_host = weights;
    e->weights_bytes = weights_bytes;
    elastic_session_options local = *o;
    local.backend = e->backend_name;
    elastic_status st = add_backend(e, f, &local);
    if (st == ELASTIC_OK && o->allow_cpu_fallback && f != &elastic_cpu_backend_iface) {
        elastic_session_options cpu = local;
        cpu.device = 0;
        st = add_backend(e, &elastic_cpu_backend_iface, &cpu);
    }
    if (st != ELASTIC_OK) {
        elastic_executor_free(e);
        return st;
    }
    snprintf(e->description, sizeof e->description, "%s%s",
             e->backends[0]->iface->describe(e->backends[0]),
             e->n_backends > 1 ? " + cpu fallback" : "");
    return ELASTIC_OK;
}

elastic_status elastic_executor_plan(elastic_executor *e, elastic_graph *g, elastic_plan *plan)
{
    ELASTIC_TRY(elastic_plan_build(g, e->backends[0], e->n_backends > 1 ? e->backends[1] : NULL,
                                   e->weights_host, plan));
    for (int b = 0; b < plan->n_backends; b++) {
        elastic_backend *be = e->backends[b];
        if (plan->arena_size[b] <= e->arena_cap[b] && e->arena[b]) continue;
        /* The larger arena first: when it cannot be had, the old one stays,
         * with the plans already cached on it (they fit in it). */
        elastic_buffer *grown = NULL;
        elastic_status st =
            be->iface->buffer_alloc(be, plan->arena_size[b] ? plan->arena_size[b] : 64, &grown);
        if (st != ELASTIC_OK) {
            elastic_plan_free(plan);
            return st;
        }
        be->iface->buffer_free(be, e->arena[b]);
        e->arena[b] = grown;
        e->arena_cap[b] = plan->arena_size[b];
    }
    return ELASTIC_OK;
}

static size_t tensor_bytes(const elastic_graph *g, int id)
{
    return (size_t)elastic_tensor_numel(&g->tensors[id]) * 4;
}

elastic_status elastic_executor_upload(elastic_executor *e, const elastic_graph *g,
                                       const elastic_plan *plan, int id, const void *data)
{
    if (id < 0 || plan->place[id].storage != ELASTIC_STORAGE_ARENA) return ELASTIC_OK;
    int b = plan->place[id].backend;
    elastic_backend *be = e->backends[b];
    return be->iface->upload(be, e->arena[b], plan->place[id].offset, data, tensor_bytes(g, id));
}

elastic_status elastic_executor_download(elastic_executor *e, const elastic_graph *g,
                                         const elastic_plan *plan, int id, void *dst)
{
    if (id < 0 || id >= plan->n_place || plan->place[id].storage != ELASTIC_STORAGE_ARENA)
        return elastic_error(ELASTIC_ERR_INTERNAL, "tensor %d is not an output of the plan", id);
    int b = plan->place[id].backend;
    elastic_backend *be = e->backends[b];
    return be->iface->download(be, e->arena[b], plan->place[id].offset, dst, tensor_bytes(g, id));
}

/* A transfer step: copy a contiguous tensor between two backends' arenas. */
static elastic_status transfer(elastic_executor *e, const elastic_graph *g,
                               const elastic_plan *plan, const elastic_plan_step *step)
{
    const elastic_placement *src = &plan->place[step->src], *dst = &plan->place[step->dst];
    elastic_backend *sb = e->backends[src->backend], *db = e->backends[dst->backend];
    size_t bytes = tensor_bytes(g, step->src);
    ELASTIC_TRY(sb->iface->synchronize(sb));
    void *dhost = db->iface->buffer_host_ptr(e->arena[dst->backend]);
    if (dhost)
        return sb->iface->download(sb, e->arena[src->backend], src->offset,
                                   (char *)dhost + dst->offset, bytes);
    void *shost = sb->iface->buffer_host_ptr(e->arena[src->backend]);
    if (shost)
        return db->iface->upload(db, e->arena[dst->backend], dst->offset,
                                 (char *)shost + src->offset, bytes);
    void *tmp = malloc(bytes);
    if (!tmp) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (transfer)");
    elastic_status st = sb->iface->download(sb, e->arena[src->backend], src->offset, tmp, bytes);
    if (st == ELASTIC_OK)
        st = db->iface->upload(db, e->arena[dst->backend], dst->offset, tmp, bytes);
    free(tmp);
    return st;
}

elastic_status elastic_executor_run(elastic_executor *e, const elastic_graph *g,
                                    const elastic_plan *plan)
{
    for (int i = 0; i < plan->n_steps; i++) {
        const elastic_plan_step *step = &plan->steps[i];
        if (step->kind == ELASTIC_STEP_KIND_TRANSFER) {
            ELASTIC_TRY(transfer(e, g, plan, step));
            continue;
        }
        int b = step->backend;
        elastic_tensor_ref in[ELASTIC_MAX_INPUTS], out[ELASTIC_MAX_OUTPUTS];
        for (int k = 0; k < step->node.n_inputs; k++)
            in[k] = elastic_plan_ref(g, plan, step->node.inputs[k], e->arena[b], e->weights[b]);
        for (int k = 0; k < step->node.n_outputs; k++)
            out[k] = elastic_plan_ref(g, plan, step->node.outputs[k], e->arena[b], e->weights[b]);
        elastic_backend *be = e->backends[b];
        ELASTIC_TRY(elastic_backend_compute(be, &step->node, in, out));
    }
    for (int b = 0; b < e->n_backends; b++)
        ELASTIC_TRY(e->backends[b]->iface->synchronize(e->backends[b]));
    return ELASTIC_OK;
}

void elastic_executor_set_constant_weights(elastic_executor *e, int constant)
{
    e->weights_constant = constant;
    for (int b = 0; b < e->n_backends; b++) {
        elastic_backend *be = e->backends[b];
        if (be->iface->set_constant_weights)
            be->iface->set_constant_weights(be, constant ? e->weights[b] : NULL);
    }
}

elastic_status elastic_executor_refresh_weights(elastic_executor *e)
{
    int constant = e->weights_constant;
    if (constant) elastic_executor_set_constant_weights(e, 0); /* drops derived copies */
    elastic_status st = ELASTIC_OK;
    for (int b = 0; b < e->n_backends && st == ELASTIC_OK; b++) {
        elastic_backend *be = e->backends[b];
        if (!e->weights_wrapped[b])
            st = be->iface->upload(be, e->weights[b], 0, e->weights_host, e->weights_bytes);
    }
    if (constant && st == ELASTIC_OK) elastic_executor_set_constant_weights(e, 1);
    e->weights_constant = constant; /* after a failure: set again by the next refresh */
    return st;
}
