/*
 * ops.h - what each op of the graph requires of its inputs and what it
 * produces: validation with clear messages, output shapes, derived sizes,
 * cost. The rules themselves are in ops.c, one function per row of ops.def.
 */
#ifndef ELASTIC_CORE_OPS_H
#define ELASTIC_CORE_OPS_H

#include "graph/graph.h"

/* Checks a node's inputs and params against its op's rule, fills its output
 * tensors' dtype, rank and shape, and sets node->n_outputs and node->dims. */
elastic_status elastic_op_infer(const elastic_graph *g, elastic_node *node, elastic_tensor *outs);

#endif
