/*
 * ops.c - shape inference, validation and cost of every op (see graph.h for
 * the list). Backends may assume that a node which passed elastic_op_infer
 * has inputs of the documented dtypes and shapes, all contiguous except the
 * input of COPY.
 */
#include "graph/ops.h"

#include "base/error.h"

#include <string.h>

static const char *op_names[ELASTIC_OP_COUNT] = {
    "gather", "add", "masked_mean", "layer_norm", "linear",
    "gelu",   "attention", "pkm", "topk", "copy", "attention_probs", "attention_mix",
    "dropout", "cross_entropy", "gather_grad", "sum_rows", "masked_mean_grad",
    "layer_norm_grad", "linear_grad", "gelu_grad", "attention_grad", "pkm_grad", "view_grad",
};

const char *elastic_op_name(elastic_op op)
{
    return op >= 0 && op < ELASTIC_OP_COUNT ? op_names[op] : "unknown";
}

/* Input i of the node, or NULL when it is absent (-1) or out of range. */
static const elastic_tensor *in(const elastic_graph *g, const elastic_node *n, int i)
{
    return i < n->n_inputs && n->inputs[i] >= 0 ? &g->tensors[n->inputs[i]] : NULL;
}

static elastic_status bad(const elastic_node *n, const char *what)
{
    return elastic_error(ELASTIC_ERR_SHAPE, "%s '%s': %s", elastic_op_name(n->op), n->name, what);
}

static void set_out(elastic_tensor *o, elastic_dtype dtype, int ndim, const int64_t *shape)
{
    memset(o, 0, sizeof *o);
    o->dtype = dtype;
    o->ndim = ndim;
    memcpy(o->shape, shape, (size_t)ndim * sizeof *shape);
}

static int last(const elastic_tensor *t)
{
    return t->ndim - 1;
}

static int same_shape(const elastic_tensor *a, const elastic_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static void like(elastic_tensor *o, const elastic_tensor *t)
{
    set_out(o, t->dtype, t->ndim, t->shape);
}

/* The training ops (graph.h): dropout, the loss and the gradient ops. */
static elastic_status infer_training(const elastic_graph *g, const elastic_node *n,
                                     elastic_tensor *outs, int *n_outputs)
{
    const elastic_tensor *a = in(g, n, 0), *b = in(g, n, 1), *c = in(g, n, 2), *d = in(g, n, 3);
    const elastic_dtype F = ELASTIC_DTYPE_F32, I = ELASTIC_DTYPE_I32;
    int64_t shape[ELASTIC_MAX_DIMS];
    switch (n->op) {
    case ELASTIC_OP_DROPOUT:
        if (a->dtype != F) return bad(n, "needs a float tensor");
        if (!(n->params.dropout >= 0 && n->params.dropout < 1)) return bad(n, "p must be in [0,1)");
        like(&outs[0], a);
        return ELASTIC_OK;
    case ELASTIC_OP_CROSS_ENTROPY:
        if (!b || a->dtype != F || a->ndim != 2 || b->dtype != I || b->ndim != 1 ||
            b->shape[0] != a->shape[0])
            return bad(n, "needs scores [B,I] and int32 targets [B]");
        set_out(&outs[0], F, 1, a->shape);
        like(&outs[1], a);
        *n_outputs = 2;
        return ELASTIC_OK;
    case ELASTIC_OP_GATHER_GRAD: /* dy [..., d], idx [...] */
        if (!b || a->dtype != F || b->dtype != I || a->ndim != b->ndim + 1 || n->params.rows < 1)
            return bad(n, "needs dy [...,d], int32 indices [...] and rows >= 1");
        for (int i = 0; i < b->ndim; i++)
            if (a->shape[i] != b->shape[i]) return bad(n, "dy and indices disagree");
        shape[0] = n->params.rows;
        shape[1] = a->shape[last(a)];
        set_out(&outs[0], F, 2, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_SUM_ROWS:
        if (a->dtype != F || n->params.keep < 1 || n->params.keep > a->ndim)
            return bad(n, "needs a float tensor and 1 <= keep <= rank");
        set_out(&outs[0], F, n->params.keep, a->shape + (a->ndim - n->params.keep));
        return ELASTIC_OK;
    case ELASTIC_OP_MASKED_MEAN_GRAD: /* dy [B, d], len [B] -> [B, n, d] */
        if (!b || a->dtype != F || a->ndim != 2 || b->dtype != I || b->ndim != 1 ||
            b->shape[0] != a->shape[0] || n->params.rows < 1)
            return bad(n, "needs dy [B,d], int32 lengths [B] and n >= 1");
        shape[0] = a->shape[0];
        shape[1] = n->params.rows;
        shape[2] = a->shape[1];
        set_out(&outs[0], F, 3, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_LAYER_NORM_GRAD: /* x, weight, dy */
        if (!b || !c || a->dtype != F || b->ndim != 1 || b->shape[0] != a->shape[last(a)] ||
            !same_shape(a, c))
            return bad(n, "needs x [...,d], weight [d] and dy shaped like x");
        if (!(n->params.eps > 0)) return bad(n, "eps must be positive");
        like(&outs[0], a);
        like(&outs[1], b);
        like(&outs[2], b);
        *n_outputs = 3;
        return ELASTIC_OK;
    case ELASTIC_OP_LINEAR_GRAD: /* x [...,K], W [N,K], dy [...,N] */
        if (!b || !c || a->dtype != F || b->ndim != 2 || b->shape[1] != a->shape[last(a)] ||
            c->ndim != a->ndim || c->shape[last(c)] != b->shape[0])
            return bad(n, "needs x [...,K], W [N,K] and dy [...,N]");
        for (int i = 0; i < last(a); i++)
            if (a->shape[i] != c->shape[i]) return bad(n, "x and dy disagree in leading dims");
        like(&outs[0], a);
        like(&outs[1], b);
        set_out(&outs[2], F, 1, b->shape);
        *n_outputs = 3;
        return ELASTIC_OK;
    case ELASTIC_OP_GELU_GRAD:
        if (!b || a->dtype != F || !same_shape(a, b)) return bad(n, "needs x and dy of one shape");
        like(&outs[0], a);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION_GRAD: /* q, k, v, dy, key_len */
        if (!b || !c || !d || a->ndim != 3 || b->ndim != 3 || !same_shape(b, c) ||
            !same_shape(a, d) || b->shape[0] != a->shape[0] || b->shape[2] != a->shape[2])
            return bad(n, "needs q [B,nq,d], k and v [B,nk,d], dy [B,nq,d]");
        if (in(g, n, 4) && (in(g, n, 4)->dtype != I || in(g, n, 4)->shape[0] != a->shape[0]))
            return bad(n, "key lengths must be int32 [B]");
        if (n->params.heads < 1 || a->shape[2] % n->params.heads)
            return bad(n, "width is not divisible by the number of heads");
        like(&outs[0], a);
        like(&outs[1], b);
        like(&outs[2], c);
        *n_outputs = 3;
        return ELASTIC_OK;
    case ELASTIC_OP_PKM_GRAD: { /* query, subkeys, values, dy [B,k,d] */
        if (!b || !c || !d || a->ndim != 2 || b->ndim != 3 || c->ndim != 2 || d->ndim != 3 ||
            b->shape[0] != 2 || c->shape[0] != b->shape[1] * b->shape[1] ||
            a->shape[1] != n->params.experts * 2 * b->shape[2] || d->shape[0] != a->shape[0] ||
            d->shape[1] != n->params.experts || d->shape[2] != c->shape[1] ||
            n->params.mem_topk < 1 || n->params.mem_topk > b->shape[1])
            return bad(n, "needs query [B,k*c], subkeys [2,m,c/2], values [m*m,d], dy [B,k,d]");
        like(&outs[0], a);
        like(&outs[1], b);
        like(&outs[2], c);
        *n_outputs = 3;
        return ELASTIC_OK;
    }
    case ELASTIC_OP_VIEW_GRAD: {
        const elastic_op_params *p = &n->params;
        if (a->dtype != F || p->src_ndim < 1 || p->src_ndim > ELASTIC_MAX_DIMS)
            return bad(n, "needs a float tensor and the source's shape");
        int64_t src_numel = 1, hi = p->view_offset;
        for (int i = 0; i < p->src_ndim; i++) src_numel *= p->src_shape[i];
        for (int i = 0; i < a->ndim; i++) hi += (a->shape[i] - 1) * p->view_strides[i];
        if (p->view_offset < 0 || hi >= src_numel) return bad(n, "the view leaves its source");
        set_out(&outs[0], F, p->src_ndim, p->src_shape);
        return ELASTIC_OK;
    }
    default: break;
    }
    return elastic_error(ELASTIC_ERR_INTERNAL, "node '%s': unknown op", n->name);
}

elastic_status elastic_op_infer(const elastic_graph *g, const elastic_node *n, elastic_tensor *outs,
                                int *n_outputs)
{
    const elastic_tensor *a = in(g, n, 0), *b = in(g, n, 1), *c = in(g, n, 2), *d = in(g, n, 3);
    const elastic_dtype F = ELASTIC_DTYPE_F32, I = ELASTIC_DTYPE_I32;
    int64_t shape[ELASTIC_MAX_DIMS];
    *n_outputs = 1;
    if (n->op < 0 || n->op >= ELASTIC_OP_COUNT)
        return elastic_error(ELASTIC_ERR_INTERNAL, "node '%s': unknown op %d", n->name, n->op);
    if (!a) return bad(n, "first input missing");
    if (n->op != ELASTIC_OP_COPY) {
        for (int i = 0; i < n->n_inputs; i++) {
            const elastic_tensor *t = in(g, n, i);
            if (t && !elastic_tensor_is_contiguous(t))
                return bad(n, "inputs must be contiguous (insert a copy)");
        }
    }
    switch (n->op) {
    case ELASTIC_OP_GATHER: /* table [R, d], idx [...] -> [..., d] */
        if (!b || a->dtype != F || a->ndim != 2 || b->dtype != I)
            return bad(n, "needs a float table [R,d] and int32 indices");
        if (b->ndim >= ELASTIC_MAX_DIMS) return bad(n, "indices of too high a rank");
        memcpy(shape, b->shape, (size_t)b->ndim * sizeof *shape);
        shape[b->ndim] = a->shape[1];
        set_out(&outs[0], F, b->ndim + 1, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_ADD:
        if (!b || a->dtype != F || b->dtype != F || b->ndim > a->ndim)
            return bad(n, "needs two float tensors, the second of rank <= the first");
        for (int i = 0; i < b->ndim; i++)
            if (b->shape[b->ndim - 1 - i] != a->shape[a->ndim - 1 - i])
                return bad(n, "the second shape must be a suffix of the first (broadcast)");
        set_out(&outs[0], F, a->ndim, a->shape);
        return ELASTIC_OK;
    case ELASTIC_OP_MASKED_MEAN: /* x [B, n, d], len [B] -> [B, d] */
        if (!b || a->dtype != F || a->ndim != 3 || b->dtype != I || b->ndim != 1 ||
            b->shape[0] != a->shape[0])
            return bad(n, "needs x [B,n,d] and int32 lengths [B]");
        shape[0] = a->shape[0];
        shape[1] = a->shape[2];
        set_out(&outs[0], F, 2, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_LAYER_NORM:
        if (!b || !c || a->dtype != F || b->ndim != 1 || c->ndim != 1 ||
            b->shape[0] != a->shape[last(a)] || c->shape[0] != a->shape[last(a)])
            return bad(n, "needs x [...,d], weight [d] and bias [d]");
        if (!(n->params.eps > 0)) return bad(n, "eps must be positive");
        set_out(&outs[0], F, a->ndim, a->shape);
        return ELASTIC_OK;
    case ELASTIC_OP_LINEAR: /* x [..., K], W [N, K], bias [N] -> [..., N] */
        if (!b || a->dtype != F || b->dtype != F || b->ndim != 2 ||
            b->shape[1] != a->shape[last(a)])
            return bad(n, "needs x [...,K] and W [N,K] with the same K");
        if (c && (c->ndim != 1 || c->shape[0] != b->shape[0]))
            return bad(n, "bias must be [N]");
        memcpy(shape, a->shape, (size_t)a->ndim * sizeof *shape);
        shape[last(a)] = b->shape[0];
        set_out(&outs[0], F, a->ndim, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_GELU:
        if (a->dtype != F) return bad(n, "needs a float tensor");
        set_out(&outs[0], F, a->ndim, a->shape);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION: /* q [B,nq,d], k [B,nk,d], v [B,nk,d], key_len [B] */
        if (!b || !c || a->ndim != 3 || b->ndim != 3 || c->ndim != 3 || a->dtype != F ||
            b->dtype != F || c->dtype != F)
            return bad(n, "needs float q [B,nq,d], k [B,nk,d], v [B,nk,d]");
        if (b->shape[0] != a->shape[0] || c->shape[0] != a->shape[0] ||
            b->shape[2] != a->shape[2] || c->shape[2] != a->shape[2] ||
            c->shape[1] != b->shape[1])
            return bad(n, "q, k and v disagree in batch, keys or width");
        if (d && (d->dtype != I || d->ndim != 1 || d->shape[0] != a->shape[0]))
            return bad(n, "key lengths must be int32 [B]");
        if (n->params.heads < 1 || a->shape[2] % n->params.heads)
            return bad(n, "width is not divisible by the number of heads");
        set_out(&outs[0], F, 3, a->shape);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION_PROBS: /* q [B,nq,d], k [B,nk,d], key_len [B] -> P [B,h,nq,nk] */
        if (!b || a->ndim != 3 || b->ndim != 3 || a->dtype != F || b->dtype != F)
            return bad(n, "needs float q [B,nq,d] and k [B,nk,d]");
        if (b->shape[0] != a->shape[0] || b->shape[2] != a->shape[2])
            return bad(n, "q and k disagree in batch or width");
        if (c && (c->dtype != I || c->ndim != 1 || c->shape[0] != a->shape[0]))
            return bad(n, "key lengths must be int32 [B]");
        if (n->params.heads < 1 || a->shape[2] % n->params.heads)
            return bad(n, "width is not divisible by the number of heads");
        shape[0] = a->shape[0];
        shape[1] = n->params.heads;
        shape[2] = a->shape[1];
        shape[3] = b->shape[1];
        set_out(&outs[0], F, 4, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION_MIX: /* P [B,h,nq,nk], v [B,nk,d] -> [B,nq,d] */
        if (!b || a->ndim != 4 || b->ndim != 3 || a->dtype != F || b->dtype != F)
            return bad(n, "needs float P [B,h,nq,nk] and v [B,nk,d]");
        if (b->shape[0] != a->shape[0] || b->shape[1] != a->shape[3])
            return bad(n, "P and v disagree in batch or keys");
        if (b->shape[2] % a->shape[1]) return bad(n, "width is not divisible by the number of heads");
        shape[0] = a->shape[0];
        shape[1] = a->shape[2];
        shape[2] = b->shape[2];
        set_out(&outs[0], F, 3, shape);
        return ELASTIC_OK;
    case ELASTIC_OP_PKM: { /* query [B,k*c], subkeys [2,m,c/2], values [m*m,d] */
        int64_t k = n->params.experts, t = n->params.mem_topk;
        if (!b || !c || a->ndim != 2 || b->ndim != 3 || c->ndim != 2 || b->shape[0] != 2)
            return bad(n, "needs query [B,k*c], subkeys [2,m,c/2], values [m*m,d]");
        int64_t m = b->shape[1], cc = 2 * b->shape[2];
        if (k < 1 || a->shape[1] != k * cc) return bad(n, "query width is not experts * mem_key");
        if (c->shape[0] != m * m) return bad(n, "values must have m*m rows");
        if (t < 1 || t > m) return bad(n, "mem_topk must be in 1..m");
        shape[0] = a->shape[0];
        shape[1] = k;
        shape[2] = c->shape[1];
        set_out(&outs[0], F, 3, shape);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_TOPK: /* scores [B, I], exclude [B, E] -> ids, vals [B, K] */
        if (a->dtype != F || a->ndim != 2) return bad(n, "needs float scores [B,I]");
        if (b && (b->dtype != I || b->ndim != 2 || b->shape[0] != a->shape[0]))
            return bad(n, "exclusions must be int32 [B,E]");
        if (n->params.top_k < 1) return bad(n, "K must be >= 1");
        shape[0] = a->shape[0];
        shape[1] = n->params.top_k;
        set_out(&outs[0], I, 2, shape);
        set_out(&outs[1], F, 2, shape);
        *n_outputs = 2;
        return ELASTIC_OK;
    case ELASTIC_OP_COPY:
        set_out(&outs[0], a->dtype, a->ndim, a->shape);
        return ELASTIC_OK;
    default: return infer_training(g, n, outs, n_outputs);
    }
    return elastic_error(ELASTIC_ERR_INTERNAL, "node '%s': unknown op", n->name);
}

double elastic_node_flops(const elastic_graph *g, const elastic_node *n)
{
    const elastic_tensor *a = in(g, n, 0), *b = in(g, n, 1);
    const elastic_tensor *out = &g->tensors[n->outputs[0]];
    double numel = (double)elastic_tensor_numel(out);
    switch (n->op) {
    case ELASTIC_OP_LINEAR: return 2.0 * numel * (double)b->shape[1];
    case ELASTIC_OP_ATTENTION: /* QK^T and AV over every (query, key) pair */
        return 4.0 * (double)a->shape[0] * (double)a->shape[1] * (double)b->shape[1] *
               (double)a->shape[2] / (n->params.causal ? 2.0 : 1.0);
    case ELASTIC_OP_ATTENTION_PROBS: /* QK^T, then exp and normalisation per weight */
        return (2.0 * (double)a->shape[2] + 4.0 * n->params.heads) * (double)a->shape[0] *
               (double)a->shape[1] * (double)b->shape[1] / (n->params.causal ? 2.0 : 1.0);
    case ELASTIC_OP_ATTENTION_MIX: /* PV over every (query, key) pair: half of P is 0 if causal */
        return 2.0 * numel * (double)b->shape[1];
    case ELASTIC_OP_PKM: {
        double m = (double)b->shape[1], half = (double)b->shape[2], t = n->params.mem_topk;
        return (double)a->shape[0] * n->params.experts * (4.0 * m * half + 2.0 * t * out->shape[2]);
    }
    case ELASTIC_OP_LAYER_NORM: return 8.0 * numel;
    case ELASTIC_OP_GELU: return 8.0 * numel;
    case ELASTIC_OP_ADD: return numel;
    case ELASTIC_OP_MASKED_MEAN: return (double)elastic_tensor_numel(a);
    case ELASTIC_OP_LINEAR_GRAD: /* dx and dW: two products of the forward's size */
        return 4.0 * (double)elastic_tensor_numel(a) * (double)b->shape[0];
    case ELASTIC_OP_ATTENTION_GRAD: { /* recompute QK^T, then dV, dP, dQ, dK */
        const elastic_tensor *k = in(g, n, 1);
        return 10.0 * (double)a->shape[0] * (double)a->shape[1] * (double)k->shape[1] *
               (double)a->shape[2] / (n->params.causal ? 2.0 : 1.0);
    }
    default: return 0.0;
    }
}
