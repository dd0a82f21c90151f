/*
 * ops.c - the rule of every op of ops.def: which inputs it takes, the shapes
 * it produces, the sizes it derives for the backends (elastic_node_dims), and
 * its cost. Backends may assume that a node which passed elastic_op_infer has
 * inputs of the documented dtypes and shapes, all contiguous except the input
 * of COPY.
 */
#include "graph/ops.h"

#include "base/error.h"

#include <string.h>

/* An op's inputs (NULL where absent), the node, and its outputs to fill. */
typedef struct op_args {
    const elastic_tensor *x[ELASTIC_MAX_INPUTS];
    elastic_node *n;
    elastic_tensor *out;
} op_args;

typedef elastic_status (*op_infer_fn)(op_args *a);

#define ELASTIC_OP(ENUM, name, min_in, max_in, phase, summary)                                     \
    static elastic_status infer_##name(op_args *a);
#include "graph/ops.def"
#undef ELASTIC_OP

static const struct op_rule {
    const char *name;
    int min_inputs, max_inputs;
    elastic_op_phase phase;
    op_infer_fn infer;
} rules[] = {
#define ELASTIC_OP(ENUM, name, min_in, max_in, phase, summary)                                     \
    [ELASTIC_OP_##ENUM] = {#name, min_in, max_in, ELASTIC_OP_PHASE_##phase, infer_##name},
#include "graph/ops.def"
#undef ELASTIC_OP
};
_Static_assert(sizeof rules / sizeof rules[0] == ELASTIC_OP_COUNT, "one rule per op");

static int valid(elastic_op op)
{
    return (int)op >= 0 && op < ELASTIC_OP_COUNT;
}

const char *elastic_op_name(elastic_op op)
{
    return valid(op) ? rules[op].name : "unknown";
}

elastic_op elastic_op_by_name(const char *name)
{
    for (int op = 0; name && op < ELASTIC_OP_COUNT; op++)
        if (!strcmp(rules[op].name, name)) return (elastic_op)op;
    return ELASTIC_OP_COUNT;
}

int elastic_op_is_training(elastic_op op)
{
    return valid(op) && rules[op].phase == ELASTIC_OP_PHASE_TRAINING;
}

static elastic_status bad(const op_args *a, const char *what)
{
    return elastic_error(ELASTIC_ERR_SHAPE, "%s '%s': %s", elastic_op_name(a->n->op), a->n->name,
                         what);
}

static void set_out(elastic_tensor *o, elastic_dtype dtype, int ndim, const int64_t *shape)
{
    memset(o, 0, sizeof *o);
    o->dtype = dtype;
    o->ndim = ndim;
    memcpy(o->shape, shape, (size_t)ndim * sizeof *shape);
}

static void like(elastic_tensor *o, const elastic_tensor *t)
{
    set_out(o, t->dtype, t->ndim, t->shape);
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

static int is_f32(const elastic_tensor *t)
{
    return t && t->dtype == ELASTIC_DTYPE_F32;
}

/* int32 lengths [B]: absent is fine when optional. */
static int lengths_ok(const elastic_tensor *t, int64_t batch)
{
    return !t || (t->dtype == ELASTIC_DTYPE_I32 && t->ndim == 1 && t->shape[0] == batch);
}

static const elastic_dtype F = ELASTIC_DTYPE_F32, I = ELASTIC_DTYPE_I32;

/* ------------------------------------------------------------- inference */

static elastic_status infer_gather(op_args *a) /* table [R, d], idx [...] -> [..., d] */
{
    const elastic_tensor *t = a->x[0], *idx = a->x[1];
    if (!is_f32(t) || t->ndim != 2 || idx->dtype != I)
        return bad(a, "needs a float table [R,d] and int32 indices");
    if (idx->ndim >= ELASTIC_MAX_DIMS) return bad(a, "indices of too high a rank");
    int64_t shape[ELASTIC_MAX_DIMS];
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = t->shape[1];
    set_out(&a->out[0], F, idx->ndim + 1, shape);
    a->n->dims.aux = elastic_tensor_numel(idx);
    return ELASTIC_OK;
}

static elastic_status infer_add(op_args *a)
{
    const elastic_tensor *x = a->x[0], *b = a->x[1];
    if (!is_f32(x) || !is_f32(b) || b->ndim > x->ndim)
        return bad(a, "needs two float tensors, the second of rank <= the first");
    for (int i = 0; i < b->ndim; i++)
        if (b->shape[b->ndim - 1 - i] != x->shape[x->ndim - 1 - i])
            return bad(a, "the second shape must be a suffix of the first (broadcast)");
    like(&a->out[0], x);
    a->n->dims.aux = elastic_tensor_numel(b);
    return ELASTIC_OK;
}

static elastic_status infer_masked_mean(op_args *a) /* x [B, n, d], len [B] -> [B, d] */
{
    const elastic_tensor *x = a->x[0], *len = a->x[1];
    if (!is_f32(x) || x->ndim != 3 || !lengths_ok(len, x->shape[0]))
        return bad(a, "needs x [B,n,d] and int32 lengths [B]");
    int64_t shape[2] = {x->shape[0], x->shape[2]};
    set_out(&a->out[0], F, 2, shape);
    a->n->dims.batch = x->shape[0];
    a->n->dims.steps = x->shape[1];
    a->n->dims.width = x->shape[2];
    return ELASTIC_OK;
}

static elastic_status infer_layer_norm(op_args *a)
{
    const elastic_tensor *x = a->x[0], *w = a->x[1], *b = a->x[2];
    if (!is_f32(x) || w->ndim != 1 || b->ndim != 1 || w->shape[0] != x->shape[last(x)] ||
        b->shape[0] != x->shape[last(x)])
        return bad(a, "needs x [...,d], weight [d] and bias [d]");
    if (!(a->n->params.eps > 0)) return bad(a, "eps must be positive");
    like(&a->out[0], x);
    return ELASTIC_OK;
}

static elastic_status infer_linear(op_args *a) /* x [..., K], W [N, K], bias [N] -> [..., N] */
{
    const elastic_tensor *x = a->x[0], *w = a->x[1], *bias = a->x[2];
    if (!is_f32(x) || !is_f32(w) || w->ndim != 2 || w->shape[1] != x->shape[last(x)])
        return bad(a, "needs x [...,K] and W [N,K] with the same K");
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return bad(a, "bias must be [N]");
    int64_t shape[ELASTIC_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[last(x)] = w->shape[0];
    set_out(&a->out[0], F, x->ndim, shape);
    a->n->dims.m = a->n->dims.rows;
    a->n->dims.n = w->shape[0];
    a->n->dims.k = w->shape[1];
    return ELASTIC_OK;
}

static elastic_status infer_gelu(op_args *a)
{
    if (!is_f32(a->x[0])) return bad(a, "needs a float tensor");
    like(&a->out[0], a->x[0]);
    return ELASTIC_OK;
}

/* The sizes of every attention op: q [B, nq, d] and keys [B, nk, d]. */
static elastic_status attention_dims(op_args *a, const elastic_tensor *q, const elastic_tensor *k)
{
    if (a->n->params.heads < 1 || q->shape[2] % a->n->params.heads)
        return bad(a, "width is not divisible by the number of heads");
    elastic_node_dims *d = &a->n->dims;
    d->batch = q->shape[0];
    d->nq = q->shape[1];
    d->nk = k->shape[1];
    d->width = q->shape[2];
    d->heads = a->n->params.heads;
    d->head_size = q->shape[2] / a->n->params.heads;
    return ELASTIC_OK;
}

static elastic_status infer_attention(op_args *a) /* q, k, v, key_len */
{
    const elastic_tensor *q = a->x[0], *k = a->x[1], *v = a->x[2];
    if (!is_f32(q) || !is_f32(k) || !is_f32(v) || q->ndim != 3 || k->ndim != 3 || v->ndim != 3)
        return bad(a, "needs float q [B,nq,d], k [B,nk,d], v [B,nk,d]");
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] || k->shape[2] != q->shape[2] ||
        v->shape[2] != q->shape[2] || v->shape[1] != k->shape[1])
        return bad(a, "q, k and v disagree in batch, keys or width");
    if (!lengths_ok(a->x[3], q->shape[0])) return bad(a, "key lengths must be int32 [B]");
    like(&a->out[0], q);
    return attention_dims(a, q, k);
}

static elastic_status infer_attention_probs(op_args *a) /* q, k, key_len -> P [B,h,nq,nk] */
{
    const elastic_tensor *q = a->x[0], *k = a->x[1];
    if (!is_f32(q) || !is_f32(k) || q->ndim != 3 || k->ndim != 3)
        return bad(a, "needs float q [B,nq,d] and k [B,nk,d]");
    if (k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
        return bad(a, "q and k disagree in batch or width");
    if (!lengths_ok(a->x[2], q->shape[0])) return bad(a, "key lengths must be int32 [B]");
    int64_t shape[4] = {q->shape[0], a->n->params.heads, q->shape[1], k->shape[1]};
    set_out(&a->out[0], F, 4, shape);
    return attention_dims(a, q, k);
}

static elastic_status infer_attention_mix(op_args *a) /* P [B,h,nq,nk], v [B,nk,d] -> [B,nq,d] */
{
    const elastic_tensor *p = a->x[0], *v = a->x[1];
    if (!is_f32(p) || !is_f32(v) || p->ndim != 4 || v->ndim != 3)
        return bad(a, "needs float P [B,h,nq,nk] and v [B,nk,d]");
    if (v->shape[0] != p->shape[0] || v->shape[1] != p->shape[3])
        return bad(a, "P and v disagree in batch or keys");
    if (p->shape[1] < 1 || v->shape[2] % p->shape[1])
        return bad(a, "width is not divisible by the number of heads");
    int64_t shape[3] = {p->shape[0], p->shape[2], v->shape[2]};
    set_out(&a->out[0], F, 3, shape);
    elastic_node_dims *d = &a->n->dims;
    d->batch = p->shape[0];
    d->nq = p->shape[2];
    d->nk = p->shape[3];
    d->width = v->shape[2];
    d->heads = p->shape[1];
    d->head_size = v->shape[2] / p->shape[1];
    return ELASTIC_OK;
}

static void pkm_dims(op_args *a, const elastic_tensor *sub, const elastic_tensor *val)
{
    elastic_node_dims *d = &a->n->dims;
    d->batch = a->x[0]->shape[0];
    d->pkm_m = sub->shape[1];
    d->pkm_c = 2 * sub->shape[2];
    d->width = val->shape[1];
}

static elastic_status infer_pkm(op_args *a) /* query [B,k*c], subkeys [2,m,c/2], values [m*m,d] */
{
    const elastic_tensor *q = a->x[0], *sub = a->x[1], *val = a->x[2];
    int64_t k = a->n->params.experts, t = a->n->params.mem_topk;
    if (!is_f32(q) || q->ndim != 2 || sub->ndim != 3 || val->ndim != 2 || sub->shape[0] != 2)
        return bad(a, "needs query [B,k*c], subkeys [2,m,c/2], values [m*m,d]");
    int64_t m = sub->shape[1], c = 2 * sub->shape[2];
    if (k < 1 || q->shape[1] != k * c) return bad(a, "query width is not experts * mem_key");
    if (val->shape[0] != m * m) return bad(a, "values must have m*m rows");
    if (t < 1 || t > m) return bad(a, "mem_topk must be in 1..m");
    int64_t shape[3] = {q->shape[0], k, val->shape[1]};
    set_out(&a->out[0], F, 3, shape);
    pkm_dims(a, sub, val);
    return ELASTIC_OK;
}

static elastic_status infer_topk(op_args *a) /* scores [B, I], exclude [B, E] -> ids, vals [B, K] */
{
    const elastic_tensor *s = a->x[0], *ex = a->x[1];
    if (!is_f32(s) || s->ndim != 2) return bad(a, "needs float scores [B,I]");
    if (ex && (ex->dtype != I || ex->ndim != 2 || ex->shape[0] != s->shape[0]))
        return bad(a, "exclusions must be int32 [B,E]");
    if (a->n->params.top_k < 1) return bad(a, "K must be >= 1");
    int64_t shape[2] = {s->shape[0], a->n->params.top_k};
    set_out(&a->out[0], I, 2, shape);
    set_out(&a->out[1], F, 2, shape);
    a->n->n_outputs = 2;
    a->n->dims.batch = s->shape[0];
    a->n->dims.items = s->shape[1];
    a->n->dims.aux = ex ? ex->shape[1] : 0;
    return ELASTIC_OK;
}

/* user [B, d], items [I, d], exclude [B, E], candidates [B, C] -> ids, vals
 * [B, K]: what LINEAR (no bias) then TOPK give, without the [B, I] scores.
 * With candidates, only the ids listed in a user's row are ranked (0 and ids
 * outside 1..I are ignored, a repeated id counts once). */
static elastic_status infer_score_topk(op_args *a)
{
    const elastic_tensor *u = a->x[0], *it = a->x[1], *ex = a->x[2], *cand = a->x[3];
    if (!is_f32(u) || !is_f32(it) || u->ndim != 2 || it->ndim != 2 || u->shape[1] != it->shape[1])
        return bad(a, "needs float user [B,d] and items [I,d]");
    if (ex && (ex->dtype != I || ex->ndim != 2 || ex->shape[0] != u->shape[0]))
        return bad(a, "exclusions must be int32 [B,E]");
    if (cand && (cand->dtype != I || cand->ndim != 2 || cand->shape[0] != u->shape[0]))
        return bad(a, "candidates must be int32 [B,C]");
    if (a->n->params.top_k < 1) return bad(a, "K must be >= 1");
    int64_t shape[2] = {u->shape[0], a->n->params.top_k};
    set_out(&a->out[0], I, 2, shape);
    set_out(&a->out[1], F, 2, shape);
    a->n->n_outputs = 2;
    a->n->dims.batch = u->shape[0];
    a->n->dims.items = it->shape[0];
    a->n->dims.width = u->shape[1];
    a->n->dims.aux = ex ? ex->shape[1] : 0;
    a->n->dims.steps = cand ? cand->shape[1] : 0;
    return ELASTIC_OK;
}

/* z + fc2(GELU(fc1(LN(z)))): the residual FFN block of spec section 3 as one
 * node, so that the [..., f] activations never exist whole. */
static elastic_status infer_ffn(op_args *a)
{
    const elastic_tensor *z = a->x[0], *nw = a->x[1], *nb = a->x[2], *w1 = a->x[3], *b1 = a->x[4],
                         *w2 = a->x[5], *b2 = a->x[6];
    if (!is_f32(z) || z->ndim < 1) return bad(a, "needs float z [...,d]");
    int64_t d = z->shape[last(z)];
    if (!is_f32(w1) || w1->ndim != 2 || w1->shape[1] != d || !is_f32(w2) || w2->ndim != 2 ||
        w2->shape[0] != d || w2->shape[1] != w1->shape[0])
        return bad(a, "needs fc1 W [f,d] and fc2 W [d,f]");
    int64_t f = w1->shape[0];
    if (nw->ndim != 1 || nw->shape[0] != d || nb->ndim != 1 || nb->shape[0] != d || b1->ndim != 1 ||
        b1->shape[0] != f || b2->ndim != 1 || b2->shape[0] != d)
        return bad(a, "needs norm weight and bias [d], fc1 bias [f], fc2 bias [d]");
    if (!(a->n->params.eps > 0)) return bad(a, "eps must be positive");
    like(&a->out[0], z);
    a->n->dims.m = a->n->dims.rows;
    a->n->dims.k = d;
    a->n->dims.n = f;
    return ELASTIC_OK;
}

/* Square [d,d] projection weight and [d] vectors (AGGREGATE, DISPATCH). */
static int square_ok(const elastic_tensor *w, const elastic_tensor *bias, int64_t d)
{
    return is_f32(w) && w->ndim == 2 && w->shape[0] == d && w->shape[1] == d && is_f32(bias) &&
           bias->ndim == 1 && bias->shape[0] == d;
}

static int vector_ok(const elastic_tensor *v, int64_t d)
{
    return is_f32(v) && v->ndim == 1 && v->shape[0] == d;
}

/* ATTENTION(q, k(LN(x)), v(LN(x))): the aggregation of spec 3.3 step 1 up to
 * its output projection, keys streamed in chunks of positions. */
static elastic_status infer_aggregate(op_args *a)
{
    const elastic_tensor *q = a->x[0], *x = a->x[1];
    if (!is_f32(q) || !is_f32(x) || q->ndim != 3 || x->ndim != 3 || x->shape[0] != q->shape[0] ||
        x->shape[2] != q->shape[2])
        return bad(a, "needs float q [B,m,d] and x [B,n,d]");
    int64_t d = q->shape[2];
    if (!vector_ok(a->x[2], d) || !vector_ok(a->x[3], d) || !square_ok(a->x[4], a->x[5], d) ||
        !square_ok(a->x[6], a->x[7], d))
        return bad(a, "needs norm weight and bias [d], k and v W [d,d] and bias [d]");
    if (!lengths_ok(a->x[8], q->shape[0])) return bad(a, "key lengths must be int32 [B]");
    if (!(a->n->params.eps > 0)) return bad(a, "eps must be positive");
    like(&a->out[0], q);
    return attention_dims(a, q, x);
}

/* x + o(ATTENTION(q(LN(x)), k, v)): the dispatch of spec 3.3 step 3 with its
 * residual, rows in chunks. */
static elastic_status infer_dispatch(op_args *a)
{
    const elastic_tensor *x = a->x[0], *k = a->x[5], *v = a->x[6];
    if (!is_f32(x) || !is_f32(k) || !is_f32(v) || x->ndim != 3 || k->ndim != 3 || v->ndim != 3)
        return bad(a, "needs float x [B,n,d], k [B,m,d], v [B,m,d]");
    int64_t d = x->shape[2];
    if (k->shape[0] != x->shape[0] || v->shape[0] != x->shape[0] || k->shape[2] != d ||
        v->shape[2] != d || v->shape[1] != k->shape[1])
        return bad(a, "x, k and v disagree in batch, keys or width");
    if (!vector_ok(a->x[1], d) || !vector_ok(a->x[2], d) || !square_ok(a->x[3], a->x[4], d) ||
        !square_ok(a->x[7], a->x[8], d))
        return bad(a, "needs norm weight and bias [d], q and o W [d,d] and bias [d]");
    if (!(a->n->params.eps > 0)) return bad(a, "eps must be positive");
    like(&a->out[0], x);
    return attention_dims(a, x, k);
}

static elastic_status infer_copy(op_args *a)
{
    like(&a->out[0], a->x[0]);
    return ELASTIC_OK;
}

/* --------------------------------------------------------------- training */

static elastic_status infer_dropout(op_args *a)
{
    if (!is_f32(a->x[0])) return bad(a, "needs a float tensor");
    if (!(a->n->params.dropout >= 0 && a->n->params.dropout < 1))
        return bad(a, "p must be in [0,1)");
    like(&a->out[0], a->x[0]);
    return ELASTIC_OK;
}

static elastic_status infer_cross_entropy(op_args *a)
{
    const elastic_tensor *s = a->x[0], *target = a->x[1];
    if (!is_f32(s) || s->ndim != 2 || target->dtype != I || target->ndim != 1 ||
        target->shape[0] != s->shape[0])
        return bad(a, "needs scores [B,I] and int32 targets [B]");
    set_out(&a->out[0], F, 1, s->shape);
    like(&a->out[1], s);
    a->n->n_outputs = 2;
    a->n->dims.batch = s->shape[0];
    a->n->dims.items = s->shape[1];
    return ELASTIC_OK;
}

static elastic_status infer_gather_grad(op_args *a) /* dy [..., d], idx [...] */
{
    const elastic_tensor *dy = a->x[0], *idx = a->x[1];
    if (!is_f32(dy) || idx->dtype != I || dy->ndim != idx->ndim + 1 || a->n->params.rows < 1)
        return bad(a, "needs dy [...,d], int32 indices [...] and rows >= 1");
    for (int i = 0; i < idx->ndim; i++)
        if (dy->shape[i] != idx->shape[i]) return bad(a, "dy and indices disagree");
    int64_t shape[2] = {a->n->params.rows, dy->shape[last(dy)]};
    set_out(&a->out[0], F, 2, shape);
    a->n->dims.aux = elastic_tensor_numel(idx);
    return ELASTIC_OK;
}

static elastic_status infer_sum_rows(op_args *a)
{
    const elastic_tensor *x = a->x[0];
    int keep = a->n->params.keep;
    if (!is_f32(x) || keep < 1 || keep > x->ndim)
        return bad(a, "needs a float tensor and 1 <= keep <= rank");
    set_out(&a->out[0], F, keep, x->shape + (x->ndim - keep));
    a->n->dims.n = elastic_tensor_numel(&a->out[0]);
    return ELASTIC_OK;
}

static elastic_status infer_masked_mean_grad(op_args *a) /* dy [B, d], len [B] -> [B, n, d] */
{
    const elastic_tensor *dy = a->x[0];
    if (!is_f32(dy) || dy->ndim != 2 || !lengths_ok(a->x[1], dy->shape[0]) || a->n->params.rows < 1)
        return bad(a, "needs dy [B,d], int32 lengths [B] and n >= 1");
    int64_t shape[3] = {dy->shape[0], a->n->params.rows, dy->shape[1]};
    set_out(&a->out[0], F, 3, shape);
    a->n->dims.batch = dy->shape[0];
    a->n->dims.steps = a->n->params.rows;
    a->n->dims.width = dy->shape[1];
    return ELASTIC_OK;
}

static elastic_status infer_layer_norm_grad(op_args *a) /* x, weight, dy */
{
    const elastic_tensor *x = a->x[0], *w = a->x[1], *dy = a->x[2];
    if (!is_f32(x) || w->ndim != 1 || w->shape[0] != x->shape[last(x)] || !same_shape(x, dy))
        return bad(a, "needs x [...,d], weight [d] and dy shaped like x");
    if (!(a->n->params.eps > 0)) return bad(a, "eps must be positive");
    like(&a->out[0], x);
    like(&a->out[1], w);
    like(&a->out[2], w);
    a->n->n_outputs = 3;
    return ELASTIC_OK;
}

static elastic_status infer_linear_grad(op_args *a) /* x [...,K], W [N,K], dy [...,N] */
{
    const elastic_tensor *x = a->x[0], *w = a->x[1], *dy = a->x[2];
    if (!is_f32(x) || w->ndim != 2 || w->shape[1] != x->shape[last(x)] || dy->ndim != x->ndim ||
        dy->shape[last(dy)] != w->shape[0])
        return bad(a, "needs x [...,K], W [N,K] and dy [...,N]");
    for (int i = 0; i < last(x); i++)
        if (x->shape[i] != dy->shape[i]) return bad(a, "x and dy disagree in leading dims");
    like(&a->out[0], x);
    like(&a->out[1], w);
    set_out(&a->out[2], F, 1, w->shape);
    a->n->n_outputs = 3;
    a->n->dims.m = a->n->dims.rows;
    a->n->dims.n = w->shape[0];
    a->n->dims.k = w->shape[1];
    return ELASTIC_OK;
}

static elastic_status infer_gelu_grad(op_args *a)
{
    if (!is_f32(a->x[0]) || !same_shape(a->x[0], a->x[1]))
        return bad(a, "needs x and dy of one shape");
    like(&a->out[0], a->x[0]);
    return ELASTIC_OK;
}

static elastic_status infer_attention_grad(op_args *a) /* q, k, v, dy, key_len */
{
    const elastic_tensor *q = a->x[0], *k = a->x[1], *v = a->x[2], *dy = a->x[3];
    if (q->ndim != 3 || k->ndim != 3 || !same_shape(k, v) || !same_shape(q, dy) ||
        k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
        return bad(a, "needs q [B,nq,d], k and v [B,nk,d], dy [B,nq,d]");
    if (!lengths_ok(a->x[4], q->shape[0])) return bad(a, "key lengths must be int32 [B]");
    like(&a->out[0], q);
    like(&a->out[1], k);
    like(&a->out[2], v);
    a->n->n_outputs = 3;
    return attention_dims(a, q, k);
}

static elastic_status infer_pkm_grad(op_args *a) /* query, subkeys, values, dy [B,k,d] */
{
    const elastic_tensor *q = a->x[0], *sub = a->x[1], *val = a->x[2], *dy = a->x[3];
    const elastic_op_params *p = &a->n->params;
    if (q->ndim != 2 || sub->ndim != 3 || val->ndim != 2 || dy->ndim != 3 || sub->shape[0] != 2 ||
        val->shape[0] != sub->shape[1] * sub->shape[1] ||
        q->shape[1] != p->experts * 2 * sub->shape[2] || dy->shape[0] != q->shape[0] ||
        dy->shape[1] != p->experts || dy->shape[2] != val->shape[1] || p->mem_topk < 1 ||
        p->mem_topk > sub->shape[1])
        return bad(a, "needs query [B,k*c], subkeys [2,m,c/2], values [m*m,d], dy [B,k,d]");
    like(&a->out[0], q);
    like(&a->out[1], sub);
    like(&a->out[2], val);
    a->n->n_outputs = 3;
    pkm_dims(a, sub, val);
    return ELASTIC_OK;
}

static elastic_status infer_view_grad(op_args *a)
{
    const elastic_op_params *p = &a->n->params;
    const elastic_tensor *dv = a->x[0];
    if (!is_f32(dv) || p->src_ndim < 1 || p->src_ndim > ELASTIC_MAX_DIMS)
        return bad(a, "needs a float tensor and the source's shape");
    int64_t src_numel = 1, hi = p->view_offset;
    for (int i = 0; i < p->src_ndim; i++)
        src_numel *= p->src_shape[i];
    for (int i = 0; i < dv->ndim; i++)
        hi += (dv->shape[i] - 1) * p->view_strides[i];
    if (p->view_offset < 0 || hi >= src_numel) return bad(a, "the view leaves its source");
    set_out(&a->out[0], F, p->src_ndim, p->src_shape);
    return ELASTIC_OK;
}

/* ------------------------------------------------------------ entry points */

elastic_status elastic_op_infer(const elastic_graph *g, elastic_node *n, elastic_tensor *outs)
{
    if (!valid(n->op))
        return elastic_error(ELASTIC_ERR_INTERNAL, "node '%s': unknown op %d", n->name, n->op);
    const struct op_rule *r = &rules[n->op];
    op_args a = {.n = n, .out = outs};
    if (n->n_inputs < r->min_inputs || n->n_inputs > r->max_inputs)
        return elastic_error(ELASTIC_ERR_SHAPE, "%s '%s': takes %d to %d inputs, got %d", r->name,
                             n->name, r->min_inputs, r->max_inputs, n->n_inputs);
    for (int i = 0; i < n->n_inputs; i++) {
        if (n->inputs[i] < 0) {
            if (i < r->min_inputs) return bad(&a, "a required input is missing");
            continue;
        }
        a.x[i] = &g->tensors[n->inputs[i]];
        if (n->op != ELASTIC_OP_COPY && !elastic_tensor_is_contiguous(a.x[i]))
            return bad(&a, "inputs must be contiguous (insert a copy)");
    }
    memset(&n->dims, 0, sizeof n->dims);
    n->dims.numel = elastic_tensor_numel(a.x[0]);
    n->dims.cols = a.x[0]->ndim ? a.x[0]->shape[last(a.x[0])] : 1;
    n->dims.rows = n->dims.cols ? n->dims.numel / n->dims.cols : 0;
    n->n_outputs = 1;
    return r->infer(&a);
}

double elastic_node_flops(const elastic_graph *g, const elastic_node *n)
{
    const elastic_node_dims *d = &n->dims;
    double numel = (double)elastic_tensor_numel(&g->tensors[n->outputs[0]]);
    double causal = n->params.causal ? 0.5 : 1.0;
    double pairs = (double)d->batch * (double)d->nq * (double)d->nk * causal;
    switch (n->op) {
    case ELASTIC_OP_LINEAR: return 2.0 * (double)d->m * (double)d->n * (double)d->k;
    case ELASTIC_OP_ATTENTION: return 4.0 * pairs * (double)d->width; /* QK^T and PV */
    case ELASTIC_OP_ATTENTION_PROBS: /* QK^T, then exp and normalisation per weight */
        return (2.0 * (double)d->width + 4.0 * n->params.heads) * pairs;
    case ELASTIC_OP_ATTENTION_MIX: /* PV over every (query, key) pair */
        return 2.0 * numel * (double)d->nk;
    case ELASTIC_OP_PKM:
        return (double)d->batch * n->params.experts *
               (2.0 * (double)d->pkm_m * (double)d->pkm_c +
                2.0 * n->params.mem_topk * (double)d->width);
    case ELASTIC_OP_SCORE_TOPK: /* a dot product per (user, item or candidate) */
        return 2.0 * (double)d->batch * (double)(d->steps ? d->steps : d->items) * (double)d->width;
    case ELASTIC_OP_FFN: /* two products, GELU and LayerNorm of the rows */
        return 4.0 * (double)d->m * (double)d->n * (double)d->k +
               8.0 * (double)d->m * (double)d->n + 10.0 * numel;
    case ELASTIC_OP_AGGREGATE: /* LN, K and V of every position, then the attention */
        return 4.0 * (double)d->batch * (double)d->nk * (double)d->width * (double)d->width +
               8.0 * (double)d->batch * (double)d->nk * (double)d->width +
               4.0 * pairs * (double)d->width;
    case ELASTIC_OP_DISPATCH: /* LN, Q and O of every position, the attention, the residual */
        return 4.0 * (double)d->batch * (double)d->nq * (double)d->width * (double)d->width +
               9.0 * numel + 4.0 * pairs * (double)d->width;
    case ELASTIC_OP_LAYER_NORM: return 8.0 * numel;
    case ELASTIC_OP_GELU: return 8.0 * numel;
    case ELASTIC_OP_ADD: return numel;
    case ELASTIC_OP_MASKED_MEAN: return (double)d->numel;
    case ELASTIC_OP_LINEAR_GRAD: /* dx and dW: two products of the forward's size */
        return 4.0 * (double)d->m * (double)d->n * (double)d->k;
    case ELASTIC_OP_ATTENTION_GRAD: /* recompute QK^T, then dV, dP, dQ, dK */
        return 10.0 * pairs * (double)d->width;
    default: return 0.0;
    }
}
