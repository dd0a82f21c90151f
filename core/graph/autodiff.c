/*
 * autodiff.c - reverse-mode differentiation of an operator graph (see
 * autodiff.h). Each case below is the chain rule of one op, written with
 * the gradient ops whose arithmetic the backends implement.
 */
#include "graph/autodiff.h"

#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct diff {
    elastic_graph *g;
    int n_fwd;      /* tensors of the forward graph */
    int *grads;     /* [n_fwd] */
    char *requires; /* [n_fwd]: the tensor depends on a weight */
} diff;

static int add_node(diff *d, elastic_op op, const int *in, int n_in,
                    const elastic_op_params *params, const char *base, const char *suffix)
{
    char name[64];
    snprintf(name, sizeof name, "%.40s.%s", base, suffix);
    elastic_op_params none = {0};
    return elastic_graph_node(d->g, op, in, n_in, params ? params : &none, name);
}

/* Adds contribution `gt` (shaped like t) to the gradient of tensor t. */
static void accumulate(diff *d, int t, int gt, const char *base)
{
    if (t < 0 || gt < 0 || !d->requires[t]) return;
    const elastic_tensor *tt = &d->g->tensors[t];
    if (tt->kind == ELASTIC_TENSOR_KIND_VIEW) {
        /* The view's elements of its source get the gradient. */
        const elastic_tensor *src = &d->g->tensors[tt->view_src];
        elastic_op_params p = {.src_ndim = src->ndim, .view_offset = tt->view_offset};
        memcpy(p.src_shape, src->shape, sizeof p.src_shape);
        memcpy(p.view_strides, tt->strides, sizeof p.view_strides);
        int src_id = tt->view_src; /* adding a node may move the tensor array */
        int gs = add_node(d, ELASTIC_OP_VIEW_GRAD, &gt, 1, &p, base, "view_grad");
        accumulate(d, src_id, gs, base);
        return;
    }
    if (d->grads[t] < 0) {
        d->grads[t] = gt;
        return;
    }
    int in[2] = {d->grads[t], gt};
    d->grads[t] = add_node(d, ELASTIC_OP_ADD, in, 2, NULL, base, "grad_sum");
}

/* Which tensors depend on a weight (only those need gradients). A tensor's
 * inputs and view source always have smaller ids, so one pass suffices. */
static void mark_requires(diff *d)
{
    const elastic_graph *g = d->g;
    for (int t = 0; t < d->n_fwd; t++) {
        const elastic_tensor *tt = &g->tensors[t];
        char r = 0;
        if (tt->kind == ELASTIC_TENSOR_KIND_WEIGHT) {
            r = 1;
        } else if (tt->kind == ELASTIC_TENSOR_KIND_VIEW) {
            r = d->requires[tt->view_src];
        } else if (tt->producer >= 0 && tt->dtype == ELASTIC_DTYPE_F32) {
            const elastic_node *n = &g->nodes[tt->producer];
            for (int k = 0; k < n->n_inputs; k++) {
                int in = n->inputs[k];
                if (in >= 0 && g->tensors[in].dtype == ELASTIC_DTYPE_F32) r |= d->requires[in];
            }
        }
        d->requires[t] = r;
    }
}

/* The chain rule of one node; `gy` is the gradient of its first output. */
static elastic_status backward_node(diff *d, const elastic_node *n, int gy)
{
    const int *x = n->inputs;
    const char *base = n->name;
    elastic_op_params p = n->params;
    switch (n->op) {
    case ELASTIC_OP_GATHER: {
        p.rows = d->g->tensors[x[0]].shape[0];
        int in[2] = {gy, x[1]};
        accumulate(d, x[0], add_node(d, ELASTIC_OP_GATHER_GRAD, in, 2, &p, base, "grad"), base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_ADD: {
        accumulate(d, x[0], gy, base);
        const elastic_tensor *a = &d->g->tensors[x[0]], *b = &d->g->tensors[x[1]];
        int gb = gy;
        if (b->ndim != a->ndim) { /* broadcast: sum over the leading dims */
            p.keep = b->ndim;
            gb = add_node(d, ELASTIC_OP_SUM_ROWS, &gy, 1, &p, base, "grad_b");
        }
        accumulate(d, x[1], gb, base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_MASKED_MEAN: {
        p.rows = d->g->tensors[x[0]].shape[1];
        int in[2] = {gy, x[1]};
        accumulate(d, x[0], add_node(d, ELASTIC_OP_MASKED_MEAN_GRAD, in, 2, &p, base, "grad"),
                   base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_LAYER_NORM: {
        int in[3] = {x[0], x[1], gy};
        int gx = add_node(d, ELASTIC_OP_LAYER_NORM_GRAD, in, 3, &p, base, "grad");
        accumulate(d, x[0], gx, base);
        accumulate(d, x[1], gx + 1, base);
        accumulate(d, x[2], gx + 2, base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_LINEAR: {
        int in[3] = {x[0], x[1], gy};
        int gx = add_node(d, ELASTIC_OP_LINEAR_GRAD, in, 3, &p, base, "grad");
        accumulate(d, x[0], gx, base);
        accumulate(d, x[1], gx + 1, base);
        if (n->n_inputs > 2) accumulate(d, x[2], gx + 2, base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_GELU: {
        int in[2] = {x[0], gy};
        accumulate(d, x[0], add_node(d, ELASTIC_OP_GELU_GRAD, in, 2, &p, base, "grad"), base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_ATTENTION: {
        int in[5] = {x[0], x[1], x[2], gy, n->n_inputs > 3 ? x[3] : -1};
        int gq = add_node(d, ELASTIC_OP_ATTENTION_GRAD, in, 5, &p, base, "grad");
        accumulate(d, x[0], gq, base);
        accumulate(d, x[1], gq + 1, base);
        accumulate(d, x[2], gq + 2, base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_PKM: {
        int in[4] = {x[0], x[1], x[2], gy};
        int gq = add_node(d, ELASTIC_OP_PKM_GRAD, in, 4, &p, base, "grad");
        accumulate(d, x[0], gq, base);
        accumulate(d, x[1], gq + 1, base);
        accumulate(d, x[2], gq + 2, base);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_COPY: /* the identity on values */
        accumulate(d, x[0], gy, base);
        return ELASTIC_OK;
    case ELASTIC_OP_DROPOUT: /* the same mask again */
        accumulate(d, x[0], add_node(d, ELASTIC_OP_DROPOUT, &gy, 1, &p, base, "grad"), base);
        return ELASTIC_OK;
    default: break;
    }
    return elastic_error(ELASTIC_ERR_UNSUPPORTED, "autodiff: op %s ('%s') has no gradient",
                         elastic_op_name(n->op), n->name);
}

elastic_status elastic_graph_backward(elastic_graph *g, int output, int output_grad, int *grads)
{
    if (g->status != ELASTIC_OK) return g->status;
    if (output < 0 || output >= g->n_tensors || g->tensors[output].producer < 0)
        return elastic_error(ELASTIC_ERR_INTERNAL, "autodiff: output is not a node's output");
    diff d = {.g = g, .n_fwd = g->n_tensors, .grads = grads};
    d.requires = calloc((size_t)d.n_fwd, 1);
    if (!d.requires) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (autodiff)");
    for (int t = 0; t < d.n_fwd; t++)
        grads[t] = -1;
    int last = g->tensors[output].producer;
    mark_requires(&d);
    grads[output] = output_grad;
    elastic_status st = ELASTIC_OK;
    for (int i = last; i >= 0 && st == ELASTIC_OK; i--) {
        elastic_node n = g->nodes[i]; /* a copy: adding nodes may move the array */
        int gy = n.outputs[0] < d.n_fwd ? grads[n.outputs[0]] : -1;
        if (gy < 0 || !d.requires[n.outputs[0]]) continue;
        st = backward_node(&d, &n, gy);
        if (st == ELASTIC_OK && g->status != ELASTIC_OK) st = g->status;
    }
    free(d.requires);
    return st;
}
