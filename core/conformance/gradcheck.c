/*
 * gradcheck.c - central finite differences, the float64 forwards the
 * training ops differentiate, and the conformance suite's self-check of its
 * gradient oracle (see gradcheck.h).
 */
#include "conformance/gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"

#define FD_STEP 1e-6 /* h = FD_STEP * max(1, |x|) */
#define FD_ATOL 1e-7 /* the differences' own error, times max |fd| */
#define PKM_MARGIN 1e-3

/* ---------------------------------------------------- finite differences */

double conf_fd_gradient(conf_fd_loss loss, const void *ctx, const conf_fd_tensor *ts, int nt,
                        double step, double *fd)
{
    double scale = 0;
    int64_t k = 0;
    for (int t = 0; t < nt; t++)
        for (int64_t i = 0; i < ts[t].n; i++, k++) {
            double *xi = &ts[t].x[i], x0 = *xi, h = step * fmax(1.0, fabs(x0));
            double xp = x0 + h, xm = x0 - h;
            *xi = xp;
            double lp = loss(ctx);
            *xi = xm;
            double lm = loss(ctx);
            *xi = x0;
            fd[k] = (lp - lm) / (xp - xm);
            scale = fmax(scale, fabs(fd[k]));
        }
    return scale;
}

/* ------------------------------------------------------ float64 forwards */

double conf_fd_ce_loss(const void *p)
{
    const conf_fd_ce *c = p;
    double total = 0;
    int64_t counted = 0;
    for (int64_t b = 0; b < c->batch; b++) {
        if (c->target[b] == 0) continue; /* an ignored row */
        counted++;
        const double *s = c->s + b * c->items;
        double mx = s[0], z = 0;
        for (int64_t j = 1; j < c->items; j++)
            mx = fmax(mx, s[j]);
        for (int64_t j = 0; j < c->items; j++)
            z += exp(s[j] - mx);
        total += mx + log(z) - s[c->target[b] - 1];
    }
    return counted ? total / (double)counted : 0.0;
}

double conf_fd_gather_loss(const void *p)
{
    const conf_fd_gather *c = p;
    double l = 0;
    for (int64_t i = 0; i < c->n; i++)
        for (int64_t j = 0; j < c->d; j++)
            l += c->r[i * c->d + j] * c->table[c->idx[i] * c->d + j];
    return l;
}

double conf_fd_add_loss(const void *p)
{
    const conf_fd_add *c = p;
    double l = 0;
    for (int64_t i = 0; i < c->rows * c->cols; i++)
        l += c->r[i] * (c->a[i] + c->b[i % c->cols]);
    return l;
}

double conf_fd_masked_mean_loss(const void *p)
{
    const conf_fd_masked_mean *c = p;
    double l = 0;
    for (int64_t b = 0; b < c->batch; b++) {
        int64_t valid = c->len[b] < c->n ? c->len[b] : c->n;
        if (valid <= 0) continue;
        for (int64_t j = 0; j < c->d; j++) {
            double s = 0;
            for (int64_t r = 0; r < valid; r++)
                s += c->x[(b * c->n + r) * c->d + j];
            l += c->r[b * c->d + j] * s / (double)valid;
        }
    }
    return l;
}

double conf_fd_layer_norm_loss(const void *p)
{
    const conf_fd_layer_norm *c = p;
    double l = 0;
    for (int64_t row = 0; row < c->rows; row++) {
        const double *x = c->x + row * c->d;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < c->d; j++)
            mean += x[j];
        mean /= (double)c->d;
        for (int64_t j = 0; j < c->d; j++)
            var += (x[j] - mean) * (x[j] - mean);
        var /= (double)c->d;
        double sd = sqrt(var + c->eps);
        for (int64_t j = 0; j < c->d; j++)
            l += c->r[row * c->d + j] * ((x[j] - mean) / sd * c->w[j] + c->b[j]);
    }
    return l;
}

double conf_fd_linear_loss(const void *p)
{
    const conf_fd_linear *c = p;
    double l = 0;
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t j = 0; j < c->n; j++) {
            double y = c->b[j];
            for (int64_t q = 0; q < c->k; q++)
                y += c->x[i * c->k + q] * c->w[j * c->k + q];
            l += c->r[i * c->n + j] * y;
        }
    return l;
}

double conf_fd_gelu_loss(const void *p)
{
    const conf_fd_gelu *c = p;
    double l = 0;
    for (int64_t i = 0; i < c->n; i++)
        l += c->r[i] * 0.5 * c->x[i] * erfc(-c->x[i] / sqrt(2.0));
    return l;
}

double conf_fd_attention_loss(const void *p)
{
    const conf_fd_attention *c = p;
    int64_t dh = c->d / c->heads;
    double l = 0;
    for (int64_t b = 0; b < c->batch; b++) {
        int64_t valid = c->nk;
        if (c->key_len && c->key_len[b] < valid) valid = c->key_len[b] < 0 ? 0 : c->key_len[b];
        for (int h = 0; h < c->heads; h++)
            for (int64_t i = 0; i < c->nq; i++) {
                int64_t first = c->causal ? i : 0;
                if (first >= valid) continue;
                const double *qi = c->q + (b * c->nq + i) * c->d + h * dh;
                double mx = -INFINITY, z = 0;
                for (int64_t j = first; j < valid; j++) {
                    const double *kj = c->k + (b * c->nk + j) * c->d + h * dh;
                    double s = 0;
                    for (int64_t e = 0; e < dh; e++)
                        s += qi[e] * kj[e];
                    c->logit[j] = s / sqrt((double)dh);
                    mx = fmax(mx, c->logit[j]);
                }
                for (int64_t j = first; j < valid; j++)
                    z += exp(c->logit[j] - mx);
                for (int64_t e = 0; e < dh; e++) {
                    double o = 0;
                    for (int64_t j = first; j < valid; j++)
                        o += exp(c->logit[j] - mx) / z * c->v[(b * c->nk + j) * c->d + h * dh + e];
                    l += c->r[(b * c->nq + i) * c->d + h * dh + e] * o;
                }
            }
    }
    return l;
}

/* descending score, ties by the smaller index */
static int by_score(const void *pa, const void *pb)
{
    const conf_fd_scored *a = pa, *b = pb;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

void conf_fd_pkm_row(const conf_fd_pkm *c, int64_t row, int64_t *slot, double *w, double *margin)
{
    int64_t half = c->c / 2, t = c->t, m = c->m;
    const double *qa = c->q + row * c->c, *qb = qa + half;
    for (int64_t x = 0; x < m; x++) {
        double s0 = 0, s1 = 0;
        for (int64_t e = 0; e < half; e++) {
            s0 += qa[e] * c->sk[x * half + e];
            s1 += qb[e] * c->sk[(m + x) * half + e];
        }
        c->sa[x] = (conf_fd_scored){s0, x};
        c->sb[x] = (conf_fd_scored){s1, x};
    }
    qsort(c->sa, (size_t)m, sizeof(conf_fd_scored), by_score);
    qsort(c->sb, (size_t)m, sizeof(conf_fd_scored), by_score);
    double gap = INFINITY;
    if (t < m) gap = fmin(c->sa[t - 1].s - c->sa[t].s, c->sb[t - 1].s - c->sb[t].s);
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j < t; j++)
            c->pair[i * t + j] =
                (conf_fd_scored){c->sa[i].s + c->sb[j].s, c->sa[i].i * m + c->sb[j].i};
    qsort(c->pair, (size_t)(t * t), sizeof(conf_fd_scored), by_score);
    if (t > 1) gap = fmin(gap, c->pair[t - 1].s - c->pair[t].s);
    double mx = c->pair[0].s, z = 0;
    for (int64_t i = 0; i < t; i++)
        z += exp(c->pair[i].s - mx);
    for (int64_t i = 0; i < t; i++) {
        slot[i] = c->pair[i].i;
        w[i] = exp(c->pair[i].s - mx) / z;
    }
    if (margin) *margin = gap;
}

double conf_fd_pkm_loss(const void *p)
{
    const conf_fd_pkm *c = p;
    int64_t *slot = malloc((size_t)c->t * sizeof *slot);
    double *w = malloc((size_t)c->t * sizeof *w), l = 0;
    if (!slot || !w) {
        free(slot);
        free(w);
        return NAN; /* fails every comparison */
    }
    for (int64_t row = 0; row < c->batch * c->experts; row++) {
        conf_fd_pkm_row(c, row, slot, w, NULL);
        for (int64_t i = 0; i < c->t; i++)
            for (int64_t j = 0; j < c->d; j++)
                l += c->r[row * c->d + j] * w[i] * c->val[slot[i] * c->d + j];
    }
    free(slot);
    free(w);
    return l;
}

double conf_fd_view_loss(const void *p)
{
    const conf_fd_view *c = p;
    int64_t idx[4] = {0, 0, 0, 0};
    double l = 0;
    for (int64_t e = 0; e < c->numel; e++) {
        int64_t at = c->offset;
        for (int i = 0; i < c->ndim; i++)
            at += idx[i] * c->strides[i];
        l += c->r[e] * c->src[at];
        for (int i = c->ndim - 1; i >= 0; i--) { /* odometer */
            if (++idx[i] < c->shape[i]) break;
            idx[i] = 0;
        }
    }
    return l;
}

/* ------------------------------------------------- the oracle self-check */

int conf_self_check_supported(elastic_op op)
{
    switch (op) {
    case ELASTIC_OP_DROPOUT:
    case ELASTIC_OP_CROSS_ENTROPY:
    case ELASTIC_OP_GATHER_GRAD:
    case ELASTIC_OP_SUM_ROWS:
    case ELASTIC_OP_MASKED_MEAN_GRAD:
    case ELASTIC_OP_LAYER_NORM_GRAD:
    case ELASTIC_OP_LINEAR_GRAD:
    case ELASTIC_OP_GELU_GRAD:
    case ELASTIC_OP_ATTENTION_GRAD:
    case ELASTIC_OP_PKM_GRAD:
    case ELASTIC_OP_VIEW_GRAD: return 1;
    default: return 0; /* inference ops: the float64 reference kernels are the oracle */
    }
}

/* Scratch for one self-check: double arrays freed together. */
typedef struct arena {
    double *blocks[12];
    int n, failed;
} arena;

static double *arena_new(arena *a, int64_t n)
{
    double *p = a->n < 12 ? calloc((size_t)(n > 0 ? n : 1), sizeof *p) : NULL;
    if (!p) {
        a->failed = 1;
        return NULL;
    }
    a->blocks[a->n++] = p;
    return p;
}

static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->blocks[i]);
}

/* The exact double copy of a float32 input. */
static double *widen(arena *a, const void *x, int64_t n)
{
    double *y = arena_new(a, n);
    for (int64_t i = 0; y && i < n; i++)
        y[i] = ((const float *)x)[i];
    return y;
}

/* A forward input the op does not see, uniform in [-1, 1). */
static double *draw(arena *a, int64_t n, uint64_t seed, uint64_t stream)
{
    double *y = arena_new(a, n);
    for (int64_t i = 0; y && i < n; i++)
        y[i] = 2.0 * elastic_rng_uniform(seed, 7000 + stream, (uint64_t)i) - 1.0;
    return y;
}

/* Output o (g, n elements) against want (differences or float64 values). */
static void check_output(conf_self_check_result *res, const conf_case_data *cd, int o,
                         const char *name, const double *want, int64_t n, double slack)
{
    const float *g = cd->ref_out[o];
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)g[i] - want[i]), allowed = cd->tol[o][i] + slack;
        double v = err == 0 ? 0 : allowed > 0 ? err / allowed : INFINITY;
        if (!(v <= worst)) worst = v;
        if (!(v <= 1) && res->ok) {
            res->ok = 0;
            snprintf(res->why, sizeof res->why,
                     "%s[%lld]: reference %.9g, float64 %.9g (|diff| %.3g > allowed %.3g)", name,
                     (long long)i, (double)g[i], want[i], err, allowed);
        }
    }
    res->worst[o] = worst;
    if (o + 1 > res->n_outputs) res->n_outputs = o + 1;
}

/* Differences of `loss` for the tensors, output k against tensor k. */
static void check_fd(conf_self_check_result *res, const conf_case_data *cd, conf_fd_loss loss,
                     const void *ctx, conf_fd_tensor *ts, int nt, arena *a)
{
    int64_t total = 0;
    for (int t = 0; t < nt; t++)
        total += ts[t].n;
    double *fd = arena_new(a, total);
    if (!fd) return;
    conf_fd_gradient(loss, ctx, ts, nt, FD_STEP, fd);
    int64_t k = 0;
    for (int t = 0; t < nt; k += ts[t].n, t++) {
        double scale = 0;
        for (int64_t i = 0; i < ts[t].n; i++)
            scale = fmax(scale, fabs(fd[k + i]));
        check_output(res, cd, t, ts[t].name, fd + k, ts[t].n, FD_ATOL * scale);
    }
}

int conf_self_check_inputs_ok(const conf_case *c, const conf_case_data *cd)
{
    if (c->op != ELASTIC_OP_PKM_GRAD) return 1;
    const elastic_node_dims *d = &cd->node.dims;
    int64_t t = c->params.mem_topk, m = d->pkm_m, rows = d->batch * c->params.experts;
    arena a = {0};
    conf_fd_pkm ctx = {widen(&a, cd->in_host[0], cd->in_numel[0]),
                       widen(&a, cd->in_host[1], cd->in_numel[1]),
                       NULL,
                       NULL,
                       d->batch,
                       c->params.experts,
                       d->pkm_c,
                       m,
                       t,
                       d->width,
                       NULL,
                       NULL,
                       NULL};
    conf_fd_scored *scratch = calloc((size_t)(2 * m + t * t), sizeof *scratch);
    int64_t *slot = malloc((size_t)t * sizeof *slot);
    double *w = malloc((size_t)t * sizeof *w), margin = INFINITY;
    int ok = !a.failed && scratch && slot && w;
    if (ok) {
        ctx.sa = scratch;
        ctx.sb = scratch + m;
        ctx.pair = scratch + 2 * m;
        for (int64_t r = 0; r < rows; r++) {
            double g;
            conf_fd_pkm_row(&ctx, r, slot, w, &g);
            margin = fmin(margin, g);
        }
    }
    free(scratch);
    free(slot);
    free(w);
    arena_free(&a);
    return ok && margin >= PKM_MARGIN;
}

elastic_status conf_self_check(const conf_case *c, const conf_case_data *cd, uint64_t seed,
                               conf_self_check_result *res)
{
    memset(res, 0, sizeof *res);
    res->ok = 1;
    const elastic_node_dims *d = &cd->node.dims;
    const elastic_op_params *p = &cd->node.params;
    void *const *in = cd->in_host;
    const int64_t *nin = cd->in_numel;
    arena a = {0};
    switch (c->op) {
    case ELASTIC_OP_DROPOUT: { /* not a gradient: the float64 value, mask by cpu_grad.h's rule */
        double *want = arena_new(&a, d->numel), scale = 1.0 / (1.0 - (double)p->dropout);
        uint32_t cut = elastic_dropout_threshold(p->dropout);
        for (int64_t i = 0; want && i < d->numel; i++) {
            uint64_t h = elastic_rng_u64(p->seed, 0, (uint64_t)(i / 4)) >> (16 * (i % 4));
            want[i] = (uint32_t)(h & 0xffff) >= cut ? ((const float *)in[0])[i] * scale : 0.0;
        }
        if (want) check_output(res, cd, 0, "y", want, d->numel, 0.0);
        break;
    }
    case ELASTIC_OP_CROSS_ENTROPY: {
        conf_fd_ce ctx = {widen(&a, in[0], nin[0]), in[1], d->batch, d->items};
        double *loss = arena_new(&a, d->batch);
        if (a.failed) break;
        for (int64_t b = 0; b < d->batch; b++) { /* the loss: its float64 value */
            conf_fd_ce one = {ctx.s + b * d->items, ctx.target + b, 1, d->items};
            loss[b] = conf_fd_ce_loss(&one);
        }
        check_output(res, cd, 0, "loss", loss, d->batch, 0.0);
        int64_t total = d->batch * d->items;
        double *fd = arena_new(&a, total);
        if (!fd) break;
        conf_fd_tensor ts = {"dscores", ctx.s, cd->ref_out[1], total};
        double scale = conf_fd_gradient(conf_fd_ce_loss, &ctx, &ts, 1, FD_STEP, fd);
        check_output(res, cd, 1, "dscores", fd, total, FD_ATOL * scale);
        break;
    }
    case ELASTIC_OP_GATHER_GRAD: {
        conf_fd_gather ctx = {draw(&a, p->rows * d->cols, seed, 0), widen(&a, in[0], nin[0]), in[1],
                              d->aux, d->cols};
        conf_fd_tensor ts[1] = {{"dtable", ctx.table, cd->ref_out[0], p->rows * d->cols}};
        if (!a.failed) check_fd(res, cd, conf_fd_gather_loss, &ctx, ts, 1, &a);
        break;
    }
    case ELASTIC_OP_SUM_ROWS: {
        int64_t rows = d->numel / d->n;
        conf_fd_add ctx = {draw(&a, d->numel, seed, 0), draw(&a, d->n, seed, 1),
                           widen(&a, in[0], nin[0]), rows, d->n};
        conf_fd_tensor ts[1] = {{"db", ctx.b, cd->ref_out[0], d->n}};
        if (!a.failed) check_fd(res, cd, conf_fd_add_loss, &ctx, ts, 1, &a);
        break;
    }
    case ELASTIC_OP_MASKED_MEAN_GRAD: {
        int64_t nx = d->batch * d->steps * d->width;
        conf_fd_masked_mean ctx = {
            draw(&a, nx, seed, 0), widen(&a, in[0], nin[0]), in[1], d->batch, d->steps, d->width};
        conf_fd_tensor ts[1] = {{"dx", ctx.x, cd->ref_out[0], nx}};
        if (!a.failed) check_fd(res, cd, conf_fd_masked_mean_loss, &ctx, ts, 1, &a);
        break;
    }
    case ELASTIC_OP_LAYER_NORM_GRAD: {
        conf_fd_layer_norm ctx = {widen(&a, in[0], nin[0]),
                                  widen(&a, in[1], nin[1]),
                                  draw(&a, d->cols, seed, 0),
                                  widen(&a, in[2], nin[2]),
                                  d->rows,
                                  d->cols,
                                  (double)p->eps};
        conf_fd_tensor ts[3] = {{"dx", ctx.x, cd->ref_out[0], nin[0]},
                                {"dweight", ctx.w, cd->ref_out[1], d->cols},
                                {"dbias", ctx.b, cd->ref_out[2], d->cols}};
        if (!a.failed) check_fd(res, cd, conf_fd_layer_norm_loss, &ctx, ts, 3, &a);
        break;
    }
    case ELASTIC_OP_LINEAR_GRAD: {
        conf_fd_linear ctx = {widen(&a, in[0], nin[0]),
                              widen(&a, in[1], nin[1]),
                              draw(&a, d->n, seed, 0),
                              widen(&a, in[2], nin[2]),
                              d->m,
                              d->n,
                              d->k};
        conf_fd_tensor ts[3] = {{"dx", ctx.x, cd->ref_out[0], nin[0]},
                                {"dW", ctx.w, cd->ref_out[1], nin[1]},
                                {"dbias", ctx.b, cd->ref_out[2], d->n}};
        if (!a.failed) check_fd(res, cd, conf_fd_linear_loss, &ctx, ts, 3, &a);
        break;
    }
    case ELASTIC_OP_GELU_GRAD: {
        conf_fd_gelu ctx = {widen(&a, in[0], nin[0]), widen(&a, in[1], nin[1]), d->numel};
        conf_fd_tensor ts[1] = {{"dx", ctx.x, cd->ref_out[0], d->numel}};
        if (!a.failed) check_fd(res, cd, conf_fd_gelu_loss, &ctx, ts, 1, &a);
        break;
    }
    case ELASTIC_OP_ATTENTION_GRAD: {
        conf_fd_attention ctx = {widen(&a, in[0], nin[0]),
                                 widen(&a, in[1], nin[1]),
                                 widen(&a, in[2], nin[2]),
                                 widen(&a, in[3], nin[3]),
                                 cd->node.n_inputs > 4 ? in[4] : NULL,
                                 d->batch,
                                 d->nq,
                                 d->nk,
                                 d->width,
                                 p->heads,
                                 p->causal,
                                 arena_new(&a, d->nk)};
        conf_fd_tensor ts[3] = {{"dq", ctx.q, cd->ref_out[0], nin[0]},
                                {"dk", ctx.k, cd->ref_out[1], nin[1]},
                                {"dv", ctx.v, cd->ref_out[2], nin[2]}};
        if (!a.failed) check_fd(res, cd, conf_fd_attention_loss, &ctx, ts, 3, &a);
        break;
    }
    case ELASTIC_OP_PKM_GRAD: {
        int64_t m = d->pkm_m, t = p->mem_topk;
        conf_fd_pkm ctx = {widen(&a, in[0], nin[0]),
                           widen(&a, in[1], nin[1]),
                           widen(&a, in[2], nin[2]),
                           widen(&a, in[3], nin[3]),
                           d->batch,
                           p->experts,
                           d->pkm_c,
                           m,
                           t,
                           d->width,
                           NULL,
                           NULL,
                           NULL};
        conf_fd_scored *scratch = calloc((size_t)(2 * m + t * t), sizeof *scratch);
        if (!scratch || a.failed) {
            free(scratch);
            a.failed = 1;
            break;
        }
        ctx.sa = scratch;
        ctx.sb = scratch + m;
        ctx.pair = scratch + 2 * m;
        conf_fd_tensor ts[3] = {{"dquery", ctx.q, cd->ref_out[0], nin[0]},
                                {"dsubkeys", ctx.sk, cd->ref_out[1], nin[1]},
                                {"dvalues", ctx.val, cd->ref_out[2], nin[2]}};
        check_fd(res, cd, conf_fd_pkm_loss, &ctx, ts, 3, &a);
        free(scratch);
        break;
    }
    case ELASTIC_OP_VIEW_GRAD: {
        int64_t src = cd->out_numel[0];
        conf_fd_view ctx = {
            draw(&a, src, seed, 0), widen(&a, in[0], nin[0]), c->in[0].ndim, c->in[0].shape,
            p->view_strides,        p->view_offset,           d->numel};
        conf_fd_tensor ts[1] = {{"dsrc", ctx.src, cd->ref_out[0], src}};
        if (!a.failed) check_fd(res, cd, conf_fd_view_loss, &ctx, ts, 1, &a);
        break;
    }
    default:
        arena_free(&a);
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "self-check: %s is not a training op",
                             elastic_op_name(c->op));
    }
    int failed = a.failed;
    arena_free(&a);
    if (failed) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (self-check)");
    return ELASTIC_OK;
}
