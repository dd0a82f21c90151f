/*
 * planner.h - turns a graph into an execution plan on one or two backends.
 *
 * Each node goes to the primary backend if elastic_backend_supports() accepts it, else
 * to the CPU backend when the caller allowed fallback (the plan records and
 * prints each fallback), else planning fails with ELASTIC_ERR_UNSUPPORTED.
 * Where a node reads a tensor that lives on the other backend, a transfer
 * step is inserted (once per tensor and backend). Inputs and intermediates
 * share one arena per backend, placed by liveness so that tensors whose
 * lifetimes do not overlap reuse the same bytes. Weights live in a separate,
 * persistent per-backend buffer holding the model's parameter block.
 */
#ifndef ELASTIC_CORE_PLANNER_H
#define ELASTIC_CORE_PLANNER_H

#include "runtime/backend.h"

#define ELASTIC_PLAN_MAX_BACKENDS 2

typedef enum elastic_step_kind {
    ELASTIC_STEP_KIND_COMPUTE = 0,
    ELASTIC_STEP_KIND_TRANSFER = 1
} elastic_step_kind;

typedef struct elastic_plan_step {
    elastic_step_kind kind;
    int backend;       /* index into plan->backends */
    elastic_node node; /* COMPUTE: the node with inputs rewritten to local replicas */
    int graph_node;    /* COMPUTE: index of the node in the graph */
    int fallback;      /* COMPUTE: runs on the CPU because the primary lacks the op */
    int src, dst;      /* TRANSFER: tensor ids (dst is a contiguous replica) */
} elastic_plan_step;

typedef enum elastic_storage {
    ELASTIC_STORAGE_NONE = 0, /* not used by the plan */
    ELASTIC_STORAGE_ARENA,    /* offset into the backend's arena */
    ELASTIC_STORAGE_WEIGHTS   /* offset into the backend's weight buffer */
} elastic_storage;

typedef struct elastic_placement {
    elastic_storage storage;
    int backend;
    size_t offset; /* bytes */
} elastic_placement;

typedef struct elastic_plan {
    int n_backends;
    elastic_backend *backends[ELASTIC_PLAN_MAX_BACKENDS];
    elastic_plan_step *steps;
    int n_steps;
    elastic_placement *place; /* per tensor id of the (grown) graph */
    int n_place;
    size_t arena_size[ELASTIC_PLAN_MAX_BACKENDS];
    size_t naive_bytes;      /* arena bytes without liveness reuse */
    size_t max_tensor_bytes; /* the largest arena tensor (unaligned bytes) */
    int n_fallback;
    int n_transfers;
    double flops;
} elastic_plan;

/* `weights_base` is the start of the host block that weight tensors point
 * into; their offsets in every backend's weight buffer equal their offsets
 * in that block. `fallback` is the CPU backend, or NULL when fallback is not
 * allowed (or the primary is the CPU). Grows g with replica tensors. */
elastic_status elastic_plan_build(elastic_graph *g, elastic_backend *primary,
                                  elastic_backend *fallback, const void *weights_base,
                                  elastic_plan *plan);
void elastic_plan_free(elastic_plan *plan);

/* The bound view of tensor `id` for a backend's compute(): buffers are the
 * backend's arena and weight buffer. */
elastic_tensor_ref elastic_plan_ref(const elastic_graph *g, const elastic_plan *plan, int id,
                                    elastic_buffer *arena, elastic_buffer *weights);

void elastic_plan_print(const elastic_graph *g, const elastic_plan *plan, FILE *out);

#endif
