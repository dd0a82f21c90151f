/*
 * conformance_case.c - one conformance case made concrete (see
 * conformance_cases.h): its one-node graph and seeded inputs, running it on a
 * backend with poisoned outputs and canaries after them, the reference
 * outputs, the tolerance of every element of every output (the formulas are
 * in tolerance.c; this maps a case's node onto them), and the guard against
 * references that are mostly zeros.
 */
#include "conformance/conformance_cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "conformance/tolerance.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void conf_case_free(conf_case_data *cd)
{
    for (int i = 0; i < ELASTIC_MAX_INPUTS; i++)
        free(cd->in_host[i]);
    for (int i = 0; i < ELASTIC_MAX_OUTPUTS; i++) {
        free(cd->ref_out[i]);
        free(cd->tol[i]);
    }
    elastic_graph_free(&cd->g);
    memset(cd, 0, sizeof *cd);
}

elastic_status conf_case_build(const conf_case *c, uint64_t seed, conf_case_data *cd)
{
    memset(cd, 0, sizeof *cd);
    elastic_graph_init(&cd->g);
    int ids[ELASTIC_MAX_INPUTS];
    for (int i = 0; i < c->n_inputs; i++) {
        const conf_input *in = &c->in[i];
        ids[i] = -1;
        if (in->absent) continue;
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        if (c->op == ELASTIC_OP_COPY) {
            int base = elastic_graph_input(&cd->g, name, in->dtype, 1, &in->base_numel);
            ids[i] =
                elastic_graph_view(&cd->g, base, in->ndim, in->shape, in->strides, in->view_offset);
            cd->in_numel[i] = in->base_numel;
        } else {
            ids[i] = elastic_graph_input(&cd->g, name, in->dtype, in->ndim, in->shape);
            cd->in_numel[i] = ids[i] >= 0 ? elastic_tensor_numel(&cd->g.tensors[ids[i]]) : 0;
        }
        cd->in_host[i] = malloc((size_t)(cd->in_numel[i] > 0 ? cd->in_numel[i] : 1) * 4);
        if (!cd->in_host[i]) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
        conf_fill_input(c, i, cd->in_host[i], cd->in_numel[i], seed);
    }
    if (elastic_graph_node(&cd->g, c->op, ids, c->n_inputs, &c->params, c->label) < 0)
        return cd->g.status;
    cd->node = cd->g.nodes[0];
    for (int o = 0; o < cd->node.n_outputs; o++) {
        cd->out_numel[o] = elastic_tensor_numel(&cd->g.tensors[cd->node.outputs[o]]);
        cd->ref_out[o] = malloc((size_t)(cd->out_numel[o] > 0 ? cd->out_numel[o] : 1) * 4);
        if (!cd->ref_out[o]) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    return ELASTIC_OK;
}

elastic_tensor_ref conf_tensor_ref(const elastic_graph *g, int id, elastic_buffer *buf, size_t at)
{
    elastic_tensor_ref r;
    memset(&r, 0, sizeof r);
    if (id < 0) return r;
    const elastic_tensor *t = &g->tensors[id];
    r.dtype = t->dtype;
    r.ndim = t->ndim;
    memcpy(r.shape, t->shape, sizeof r.shape);
    memcpy(r.strides, t->strides, sizeof r.strides);
    r.buffer = buf;
    r.offset = at + (t->kind == ELASTIC_TENSOR_KIND_VIEW ? (size_t)t->view_offset * 4 : 0);
    return r;
}

elastic_status conf_case_run(elastic_backend *be, const conf_case_data *cd, void *const *outs,
                             int *canary_ok, int reps, double *seconds)
{
    const elastic_backend_iface *f = be->iface;
    elastic_buffer *ib[ELASTIC_MAX_INPUTS] = {0}, *ob[ELASTIC_MAX_OUTPUTS] = {0};
    elastic_tensor_ref in[ELASTIC_MAX_INPUTS], out[ELASTIC_MAX_OUTPUTS];
    unsigned char *guard = NULL;
    elastic_status st = ELASTIC_OK;
    *canary_ok = 1;
    for (int i = 0; st == ELASTIC_OK && i < cd->node.n_inputs; i++) {
        in[i] = conf_tensor_ref(&cd->g, cd->node.inputs[i], NULL, 0);
        if (cd->node.inputs[i] < 0) continue;
        size_t bytes = (size_t)cd->in_numel[i] * 4;
        st = f->buffer_alloc(be, bytes, &ib[i]);
        if (st == ELASTIC_OK) st = f->upload(be, ib[i], 0, cd->in_host[i], bytes);
        in[i].buffer = ib[i];
    }
    size_t max_out = 0;
    for (int o = 0; o < cd->node.n_outputs; o++)
        if ((size_t)cd->out_numel[o] * 4 > max_out) max_out = (size_t)cd->out_numel[o] * 4;
    guard = malloc(max_out + CONF_CANARY_BYTES);
    if (!guard && st == ELASTIC_OK) st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    for (int o = 0; st == ELASTIC_OK && o < cd->node.n_outputs; o++) {
        size_t bytes = (size_t)cd->out_numel[o] * 4 + CONF_CANARY_BYTES;
        conf_poison(guard, bytes);
        st = f->buffer_alloc(be, bytes, &ob[o]);
        if (st == ELASTIC_OK) st = f->upload(be, ob[o], 0, guard, bytes);
        out[o] = conf_tensor_ref(&cd->g, cd->node.outputs[o], ob[o], 0);
    }
    double *times = reps > 0 ? calloc((size_t)reps, sizeof *times) : NULL;
    for (int rep = 0; st == ELASTIC_OK && rep < (reps > 0 ? reps + 1 : 1); rep++) {
        double t0 = now();
        st = elastic_backend_compute(be, &cd->node, in, out);
        if (st == ELASTIC_OK) st = f->synchronize(be);
        if (rep > 0 && times) times[rep - 1] = now() - t0; /* rep 0 warms up */
    }
    if (seconds) {
        *seconds = 0;
        if (times && st == ELASTIC_OK) {
            for (int a = 0; a < reps; a++) /* insertion sort; reps is small */
                for (int b = a; b > 0 && times[b] < times[b - 1]; b--) {
                    double t = times[b];
                    times[b] = times[b - 1];
                    times[b - 1] = t;
                }
            *seconds = times[reps / 2];
        }
    }
    free(times);
    for (int o = 0; st == ELASTIC_OK && o < cd->node.n_outputs; o++) {
        size_t bytes = (size_t)cd->out_numel[o] * 4;
        st = f->download(be, ob[o], 0, guard, bytes + CONF_CANARY_BYTES);
        if (st != ELASTIC_OK) break;
        memcpy(outs[o], guard, bytes);
        if (!conf_canary_intact(guard + bytes, CONF_CANARY_BYTES)) *canary_ok = 0;
    }
    for (int i = 0; i < ELASTIC_MAX_INPUTS; i++)
        if (ib[i]) f->buffer_free(be, ib[i]);
    for (int o = 0; o < ELASTIC_MAX_OUTPUTS; o++)
        if (ob[o]) f->buffer_free(be, ob[o]);
    free(guard);
    return st;
}

/* ------------------------------------------------------------ tolerances */

elastic_status conf_tolerances(const conf_case *c, conf_case_data *cd)
{
    const elastic_node *nd = &cd->node;
    const elastic_node_dims *d = &nd->dims;
    const elastic_op_params *p = &nd->params;
    for (int o = 0; o < nd->n_outputs; o++) {
        free(cd->tol[o]);
        cd->tol[o] = malloc((size_t)(cd->out_numel[o] > 0 ? cd->out_numel[o] : 1) * sizeof(double));
        if (!cd->tol[o]) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
        for (int64_t i = 0; i < cd->out_numel[o]; i++)
            cd->tol[o][i] = NAN;
    }
    if (c->exact) {
        for (int o = 0; o < nd->n_outputs; o++)
            conf_tol_exact(cd->out_numel[o], cd->tol[o]);
        return ELASTIC_OK;
    }
    const float *x0 = cd->in_host[0], *x1 = cd->in_host[1], *x2 = cd->in_host[2];
    const float *x3 = cd->in_host[3];
    const int32_t *i1 = cd->in_host[1];
    const float *r0 = cd->ref_out[0], *r1 = cd->ref_out[1];
    double **t = cd->tol;
    int heads = p->heads;
    /* Every op is listed (no default): a new op without a formula is a
     * compile-time warning, and its tolerances stay NaN at run time. */
    switch (c->op) {
    case ELASTIC_OP_GATHER:
    case ELASTIC_OP_COPY: conf_tol_exact(cd->out_numel[0], t[0]); break;
    case ELASTIC_OP_TOPK:
        conf_tol_exact(cd->out_numel[0], t[0]);
        conf_tol_exact(cd->out_numel[1], t[1]);
        break;
    case ELASTIC_OP_FFN:
        return conf_tol_ffn(x0, x1, x2, x3, cd->in_host[4], cd->in_host[5], cd->in_host[6], d->m,
                            d->k, d->n, p->eps, t[0]);
    case ELASTIC_OP_AGGREGATE:
        return conf_tol_aggregate(x0, x1, x2, x3, cd->in_host[4], cd->in_host[5], cd->in_host[6],
                                  cd->in_host[7], nd->n_inputs > 8 ? cd->in_host[8] : NULL,
                                  d->batch, d->nq, d->nk, d->width, heads, p->eps, t[0]);
    case ELASTIC_OP_DISPATCH:
        return conf_tol_dispatch(x0, x1, x2, x3, cd->in_host[4], cd->in_host[5], cd->in_host[6],
                                 cd->in_host[7], cd->in_host[8], d->batch, d->nq, d->nk, d->width,
                                 heads, p->eps, t[0]);
    case ELASTIC_OP_SCORE_TOPK:
        conf_tol_score_topk(x0, x1, cd->ref_out[0], r1, d->batch, d->width, p->top_k, t[0], t[1]);
        break;
    case ELASTIC_OP_ADD: conf_tol_add(x0, x1, d->numel, d->aux, t[0]); break;
    case ELASTIC_OP_MASKED_MEAN:
        conf_tol_masked_mean(x0, i1, d->batch, d->steps, d->width, t[0]);
        break;
    case ELASTIC_OP_LAYER_NORM:
        conf_tol_layer_norm(x0, x1, x2, d->rows, d->cols, p->eps, t[0]);
        break;
    case ELASTIC_OP_LINEAR: conf_tol_linear(x0, x1, x2, d->m, d->n, d->k, t[0]); break;
    case ELASTIC_OP_GELU: conf_tol_gelu(x0, r0, d->numel, t[0]); break;
    case ELASTIC_OP_ATTENTION:
        conf_tol_attention(x0, x1, x2, d->batch, d->nq, d->nk, d->width, heads, t[0]);
        break;
    case ELASTIC_OP_ATTENTION_PROBS:
        conf_tol_attention_probs(x0, x1, r0, d->batch, d->nq, d->nk, d->width, heads, t[0]);
        break;
    case ELASTIC_OP_ATTENTION_MIX:
        conf_tol_attention_mix(x0, x1, d->batch, d->nq, d->nk, d->width,
                               (int)(d->width / d->head_size), t[0]);
        break;
    case ELASTIC_OP_PKM:
        conf_tol_pkm(x0, x1, x2, d->batch, p->experts, d->pkm_c, d->pkm_m, p->mem_topk, d->width,
                     t[0]);
        break;
    case ELASTIC_OP_DROPOUT: conf_tol_dropout(r0, d->numel, t[0]); break;
    case ELASTIC_OP_CROSS_ENTROPY:
        conf_tol_cross_entropy(x0, i1, r0, r1, d->batch, d->items, t[0], t[1]);
        break;
    case ELASTIC_OP_GATHER_GRAD:
        return conf_tol_gather_grad(x0, i1, d->aux, d->cols, p->rows, t[0]);
    case ELASTIC_OP_SUM_ROWS: conf_tol_sum_rows(x0, d->numel / d->n, d->n, t[0]); break;
    case ELASTIC_OP_MASKED_MEAN_GRAD: conf_tol_masked_mean_grad(r0, cd->out_numel[0], t[0]); break;
    case ELASTIC_OP_LAYER_NORM_GRAD:
        conf_tol_layer_norm_grad(x0, x1, x2, d->rows, d->cols, p->eps, t[0], t[1], t[2]);
        break;
    case ELASTIC_OP_LINEAR_GRAD:
        conf_tol_linear_grad(x0, x1, x2, d->m, d->n, d->k, t[0], t[1], t[2]);
        break;
    case ELASTIC_OP_GELU_GRAD: conf_tol_gelu_grad(x0, x1, r0, d->numel, t[0]); break;
    case ELASTIC_OP_ATTENTION_GRAD:
        return conf_tol_attention_grad(x0, x1, x2, x3, nd->n_inputs > 4 ? cd->in_host[4] : NULL,
                                       d->batch, d->nq, d->nk, d->width, heads, p->causal, t[0],
                                       t[1], t[2]);
    case ELASTIC_OP_PKM_GRAD:
        return conf_tol_pkm_grad(x0, x1, x2, x3, d->batch, p->experts, d->pkm_c, d->pkm_m,
                                 p->mem_topk, d->width, t[0], t[1], t[2]);
    case ELASTIC_OP_VIEW_GRAD:
        return conf_tol_view_grad(x0, c->in[0].ndim, c->in[0].shape, p->view_strides,
                                  p->view_offset, cd->out_numel[0], t[0]);
    case ELASTIC_OP_COUNT: break;
    }
    return ELASTIC_OK;
}

elastic_status conf_case_reference(elastic_backend *reference, const conf_case *c,
                                   conf_case_data *cd)
{
    int canary_ok = 1;
    ELASTIC_TRY(conf_case_run(reference, cd, cd->ref_out, &canary_ok, 0, NULL));
    if (!canary_ok)
        return elastic_error(ELASTIC_ERR_INTERNAL, "%s '%s': the reference wrote past an output",
                             elastic_op_name(c->op), c->label);
    ELASTIC_TRY(conf_tolerances(c, cd));
    for (int o = 0; o < cd->node.n_outputs; o++)
        for (int64_t i = 0; i < cd->out_numel[o]; i++)
            if (!(cd->tol[o][i] >= 0) || isinf(cd->tol[o][i]))
                return elastic_error(ELASTIC_ERR_INTERNAL,
                                     "%s '%s': output %d has no tolerance (element %lld is %g): "
                                     "add its formula to tolerance.c",
                                     elastic_op_name(c->op), c->label, o, (long long)i,
                                     cd->tol[o][i]);
    return ELASTIC_OK;
}

int conf_case_sparse_guard(const conf_case *c, const conf_case_data *cd, char *why, size_t size)
{
    for (int o = 0; o < cd->node.n_outputs; o++) {
        if (c->sparse_ok & CONF_SPARSE(o)) continue;
        elastic_dtype dt = cd->g.tensors[cd->node.outputs[o]].dtype;
        double z = conf_zero_fraction(dt, cd->ref_out[o], cd->out_numel[o]);
        if (z > CONF_SPARSE_MAX) {
            snprintf(why, size,
                     "the reference of output %d is %.0f%% zeros or NaN, so the case tests "
                     "little: draw other inputs, or set sparse_ok with the reason",
                     o, 100.0 * z);
            return 0;
        }
    }
    return 1;
}
