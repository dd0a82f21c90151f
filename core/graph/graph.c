/*
 * graph.c - building an operator graph: growable tensor and node lists,
 * views, and nodes whose output shapes are inferred by ops.c.
 */
#include "graph/graph.h"

#include "base/error.h"
#include "graph/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void elastic_graph_init(elastic_graph *g)
{
    memset(g, 0, sizeof *g);
}

void elastic_graph_free(elastic_graph *g)
{
    free(g->tensors);
    free(g->nodes);
    memset(g, 0, sizeof *g);
}

size_t elastic_dtype_size(elastic_dtype dtype)
{
    (void)dtype; /* float32 and int32 */
    return 4;
}

int64_t elastic_tensor_numel(const elastic_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static void set_contiguous_strides(elastic_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->strides[i] = s;
        s *= t->shape[i];
    }
}

int elastic_tensor_is_contiguous(const elastic_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

const char *elastic_shape_str(const elastic_tensor *t, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? "," : "",
                                 (long long)t->shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

/* Records the first error; returns -1 so constructors can `return fail(...)`. */
static int fail(elastic_graph *g, elastic_status st)
{
    if (g->status == ELASTIC_OK) g->status = st;
    return -1;
}

static int new_tensor(elastic_graph *g, const char *name, elastic_dtype dtype,
                      elastic_tensor_kind kind, int ndim, const int64_t *shape)
{
    if (g->status != ELASTIC_OK) return -1;
    if (ndim < 1 || ndim > ELASTIC_MAX_DIMS)
        return fail(g, elastic_error(ELASTIC_ERR_SHAPE, "tensor '%s': rank %d outside 1..%d", name,
                                     ndim, ELASTIC_MAX_DIMS));
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1)
            return fail(g, elastic_error(ELASTIC_ERR_SHAPE, "tensor '%s': dimension %d is %lld",
                                         name, i, (long long)shape[i]));
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 64;
        elastic_tensor *t = realloc(g->tensors, (size_t)cap * sizeof *t);
        if (!t) return fail(g, elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (graph)"));
        g->tensors = t;
        g->cap_tensors = cap;
    }
    elastic_tensor *t = &g->tensors[g->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->kind = kind;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    set_contiguous_strides(t);
    t->view_src = -1;
    t->producer = -1;
    return g->n_tensors++;
}

int elastic_graph_input(elastic_graph *g, const char *name, elastic_dtype dtype, int ndim,
                        const int64_t *shape)
{
    return new_tensor(g, name, dtype, ELASTIC_TENSOR_KIND_INPUT, ndim, shape);
}

int elastic_graph_weight(elastic_graph *g, const char *name, int ndim, const int64_t *shape,
                         const float *data)
{
    int id = new_tensor(g, name, ELASTIC_DTYPE_F32, ELASTIC_TENSOR_KIND_WEIGHT, ndim, shape);
    if (id >= 0) g->tensors[id].host_data = data;
    return id;
}

int elastic_graph_view(elastic_graph *g, int src, int ndim, const int64_t *shape,
                       const int64_t *strides, int64_t offset)
{
    if (g->status != ELASTIC_OK) return -1;
    if (src < 0 || src >= g->n_tensors)
        return fail(g, elastic_error(ELASTIC_ERR_INTERNAL, "view of unknown tensor %d", src));
    /* A view of a view is a view of the original storage. */
    const elastic_tensor *s = &g->tensors[src];
    if (s->kind == ELASTIC_TENSOR_KIND_VIEW) {
        if (!elastic_tensor_is_contiguous(s))
            return fail(g, elastic_error(ELASTIC_ERR_INTERNAL, "view of non-contiguous view '%s'",
                                         s->name));
        offset += s->view_offset;
        src = s->view_src;
    }
    char name[64];
    snprintf(name, sizeof name, "%.50s.view", g->tensors[src].name);
    int id = new_tensor(g, name, g->tensors[src].dtype, ELASTIC_TENSOR_KIND_VIEW, ndim, shape);
    if (id < 0) return -1;
    elastic_tensor *t = &g->tensors[id];
    const elastic_tensor *base = &g->tensors[src];
    if (strides) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    t->view_src = src;
    t->view_offset = offset;
    /* The furthest element must lie inside the viewed tensor. */
    int64_t last = offset;
    for (int i = 0; i < ndim; i++)
        last += (shape[i] - 1) * t->strides[i];
    if (offset < 0 || last >= elastic_tensor_numel(base))
        return fail(
            g, elastic_error(ELASTIC_ERR_SHAPE, "view of '%s' reaches outside it", base->name));
    t->host_data = base->host_data;
    return id;
}

int elastic_graph_node(elastic_graph *g, elastic_op op, const int *inputs, int n_inputs,
                       const elastic_op_params *params, const char *name)
{
    if (g->status != ELASTIC_OK) return -1;
    if (n_inputs < 0 || n_inputs > ELASTIC_MAX_INPUTS)
        return fail(g, elastic_error(ELASTIC_ERR_INTERNAL, "%s: %d inputs", name, n_inputs));
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] < -1 || inputs[i] >= g->n_tensors)
            return fail(
                g, elastic_error(ELASTIC_ERR_INTERNAL, "%s: input %d is not a tensor", name, i));
    elastic_node node;
    memset(&node, 0, sizeof node);
    node.op = op;
    if (params) node.params = *params;
    node.n_inputs = n_inputs;
    memcpy(node.inputs, inputs, (size_t)n_inputs * sizeof *inputs);
    snprintf(node.name, sizeof node.name, "%s", name);

    elastic_tensor outs[ELASTIC_MAX_OUTPUTS];
    elastic_status st = elastic_op_infer(g, &node, outs);
    if (st != ELASTIC_OK) return fail(g, st);
    int n_outputs = node.n_outputs;

    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        elastic_node *n = realloc(g->nodes, (size_t)cap * sizeof *n);
        if (!n) return fail(g, elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (graph)"));
        g->nodes = n;
        g->cap_nodes = cap;
    }
    node.n_outputs = n_outputs;
    for (int o = 0; o < n_outputs; o++) {
        char oname[64];
        snprintf(oname, sizeof oname, n_outputs > 1 ? "%.56s.%d" : "%.56s", name, o);
        int id = new_tensor(g, oname, outs[o].dtype, ELASTIC_TENSOR_KIND_INTERMEDIATE, outs[o].ndim,
                            outs[o].shape);
        if (id < 0) return -1;
        g->tensors[id].producer = g->n_nodes;
        node.outputs[o] = id;
    }
    g->nodes[g->n_nodes++] = node;
    return node.outputs[0];
}

void elastic_graph_mark_output(elastic_graph *g, int tensor)
{
    if (tensor >= 0 && tensor < g->n_tensors) g->tensors[tensor].is_output = 1;
}
