/*
 * autodiff.h - reverse-mode differentiation of an operator graph.
 *
 * elastic_graph_backward walks the nodes that lead to `output` in reverse and
 * appends to the same graph, for every op, the gradient ops of graph.h that
 * carry the output's gradient back to its inputs: the backward pass is one
 * more stretch of graph, planned and run like the forward by any backend
 * whose elastic_backend_supports() accepts the gradient ops (the CPU's otherwise, when
 * fallback is allowed). Gradients reaching a view are scattered into its
 * source; gradients reaching one tensor from several consumers are summed.
 */
#ifndef ELASTIC_CORE_AUTODIFF_H
#define ELASTIC_CORE_AUTODIFF_H

#include "graph/graph.h"

/* `output_grad` holds d(loss)/d(output). On success grads[t] (an array of
 * g->n_tensors entries as they were before the call, filled with -1 first)
 * is the tensor that holds d(loss)/d(t) for every float tensor t the loss
 * depends on, weights included; -1 where the loss does not depend on t. */
elastic_status elastic_graph_backward(elastic_graph *g, int output, int output_grad, int *grads);

#endif
