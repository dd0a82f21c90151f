/*
 * executor.h - runs planned graphs: the backends of a run (a primary and,
 * when fallback is allowed, the CPU), the model's weights on each of them,
 * and one arena per backend sized for the largest plan seen so far.
 *
 * Sessions (inference) and trainers both execute through it.
 */
#ifndef ELASTIC_CORE_EXECUTOR_H
#define ELASTIC_CORE_EXECUTOR_H

#include "runtime/planner.h"

typedef struct elastic_executor {
    elastic_backend *backends[ELASTIC_PLAN_MAX_BACKENDS]; /* primary, CPU fallback */
    int n_backends;
    elastic_buffer *weights[ELASTIC_PLAN_MAX_BACKENDS];
    elastic_buffer *arena[ELASTIC_PLAN_MAX_BACKENDS];
    size_t arena_cap[ELASTIC_PLAN_MAX_BACKENDS];
    float *weights_host; /* the parameter block weight tensors point into */
    size_t weights_bytes;
    int weights_wrapped[ELASTIC_PLAN_MAX_BACKENDS]; /* backend reads the host block itself */
    int weights_constant; /* elastic_executor_set_constant_weights(e, 1) */
    char backend_name[16];
    char description[192];
} elastic_executor;

/* Starts the backend the options name ("auto" resolved) and, if fallback is
 * allowed, the CPU beside it, and gives both the parameter block. */
elastic_status elastic_executor_init(elastic_executor *e, const elastic_session_options *options,
                                     float *weights, size_t weights_bytes);
void elastic_executor_free(elastic_executor *e);

/* Plans g on the executor's backends and grows the arenas to fit. */
elastic_status elastic_executor_plan(elastic_executor *e, elastic_graph *g, elastic_plan *plan);

elastic_status elastic_executor_upload(elastic_executor *e, const elastic_graph *g,
                                       const elastic_plan *plan, int tensor, const void *data);
elastic_status elastic_executor_download(elastic_executor *e, const elastic_graph *g,
                                         const elastic_plan *plan, int tensor, void *dst);
elastic_status elastic_executor_run(elastic_executor *e, const elastic_graph *g,
                                    const elastic_plan *plan);

/* After the host parameter block changed: copies it again to every backend
 * that keeps its own copy, and drops what backends derived from it. */
elastic_status elastic_executor_refresh_weights(elastic_executor *e);

/* Tells the backends whether the parameter block stays unchanged between
 * refreshes (inference: 1), so that they may keep copies derived from it
 * (backend.h, set_constant_weights). */
void elastic_executor_set_constant_weights(elastic_executor *e, int constant);

#endif
