/*
 * ops.h - what each op of the graph requires of its inputs and what it
 * produces: validation with clear messages, output shapes, cost.
 */
#ifndef ELASTIC_CORE_OPS_H
#define ELASTIC_CORE_OPS_H

#include "graph/graph.h"

/* Checks a node's inputs and params and fills its output tensors' dtype,
 * rank and shape. */
elastic_status elastic_op_infer(const elastic_graph *g, const elastic_node *node,
                                elastic_tensor *outs, int *n_outputs);

#endif
