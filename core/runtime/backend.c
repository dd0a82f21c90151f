/*
 * backend.c - dispatch through a backend's op table (backend.h): whether a
 * node is supported, and running it.
 */
#include "runtime/backend.h"

#include "base/error.h"

static const elastic_op_kernel *row(const elastic_backend *be, const elastic_node *node)
{
    if ((int)node->op < 0 || node->op >= ELASTIC_OP_COUNT || !be->iface->kernels) return NULL;
    const elastic_op_kernel *k = &be->iface->kernels[node->op];
    return k->run ? k : NULL;
}

int elastic_backend_supports(const elastic_backend *be, const elastic_node *node)
{
    const elastic_op_kernel *k = row(be, node);
    return k && (!k->fits || k->fits(be, node));
}

elastic_status elastic_backend_compute(elastic_backend *be, const elastic_node *node,
                                       const elastic_tensor_ref *inputs,
                                       const elastic_tensor_ref *outputs)
{
    const elastic_op_kernel *k = row(be, node);
    if (!k)
        return elastic_error(ELASTIC_ERR_UNSUPPORTED, "%s backend has no kernel for %s '%s'",
                             be->iface->name, elastic_op_name(node->op), node->name);
    return k->run(be, node, inputs, outputs);
}
