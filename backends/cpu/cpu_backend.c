/*
 * cpu_backend.c - the CPU backend: host buffers, and compute() dispatching
 * each node to a kernel table, either the float64 scalar reference or the
 * fast table for the best instruction set this CPU has (cpu_isa.c).
 */
#include "runtime/backend.h"
#include "cpu_grad.h"
#include "cpu_kernels.h"
#include "cpu_pack_cache.h"
#include "base/error.h"
#include "runtime/backend_options.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct elastic_buffer {
    void *data;
    size_t size;
    int owned;
};

typedef struct cpu_backend {
    elastic_backend base;
    const elastic_cpu_kernels *k;
    int threads;
    cpu_pack_cache packs; /* weights packed once, while they are constant */
    char description[96];
} cpu_backend;

static void cpu_probe(elastic_backend_info *info)
{
    const elastic_cpu_kernels *k = elastic_cpu_kernels_for(ELASTIC_CPU_ISA_BEST);
    info->compiled = 1;
    info->available = 1;
    info->device_count = 1;
    snprintf(info->description, sizeof info->description, "host CPU, %d threads, kernels %s",
             omp_get_max_threads(), k ? k->isa : "reference");
}

static elastic_status cpu_init(elastic_backend **out, const elastic_session_options *o)
{
    *out = NULL;
    if (o->device != 0)
        return elastic_error(ELASTIC_ERR_BACKEND, "cpu backend: device %d does not exist (only 0)",
                             o->device);
    if (o->num_threads < 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "cpu backend: num_threads %d < 0",
                             o->num_threads);
    static const char *const keys[] = {"isa", "pack_mb", NULL};
    ELASTIC_TRY(elastic_backend_options_check(o->backend_options, "cpu", keys));
    char pack_mb[24] = "256";
    int found_pack;
    ELASTIC_TRY(elastic_backend_option(o->backend_options, "cpu", "pack_mb", pack_mb,
                                       sizeof pack_mb, &found_pack));
    char *end = NULL;
    long long mb = strtoll(pack_mb, &end, 10);
    if (end == pack_mb || *end || mb < 0 || mb > (1LL << 30))
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "cpu backend: cpu.pack_mb '%s' is not a number of MiB in 0..2^30",
                             pack_mb);
    char isa[16] = "best";
    int found;
    ELASTIC_TRY(elastic_backend_option(o->backend_options, "cpu", "isa", isa, sizeof isa, &found));
    const elastic_cpu_kernels *k = NULL;
    if (!strcmp(isa, "reference")) {
        k = &elastic_cpu_kernels_reference;
    } else {
        static const char *const names[] = {"best", "generic", "avx2", "avx512", "neon"};
        int i = 0;
        while (i < 5 && strcmp(isa, names[i]))
            i++;
        if (i == 5)
            return elastic_error(ELASTIC_ERR_INVALID_ARG,
                                 "cpu backend: unknown cpu.isa '%s' (best, generic, avx2, avx512, "
                                 "neon, reference)",
                                 isa);
        if (!(k = elastic_cpu_kernels_for((elastic_cpu_isa)i)))
            return elastic_error(ELASTIC_ERR_BACKEND,
                                 "cpu backend: this CPU (or build) lacks the instruction set %s",
                                 isa);
    }
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (cpu backend)");
    be->base.iface = &elastic_cpu_backend_iface;
    be->base.alignment = 64;
    be->k = k;
    be->threads = o->num_threads > 0 ? o->num_threads : omp_get_max_threads();
    cpu_pack_cache_init(&be->packs, k, (size_t)mb << 20);
    snprintf(be->description, sizeof be->description, "cpu (%s, %d threads)", k->isa, be->threads);
    *out = &be->base;
    return ELASTIC_OK;
}

static void cpu_free(elastic_backend *base)
{
    if (!base) return;
    cpu_pack_cache_free(&((cpu_backend *)base)->packs);
    free(base);
}

static void cpu_set_constant_weights(elastic_backend *base, const elastic_buffer *weights)
{
    cpu_pack_cache *c = &((cpu_backend *)base)->packs;
    cpu_pack_cache_set(c, weights ? weights->data : NULL, weights ? weights->size : 0);
}

static const char *cpu_describe(const elastic_backend *be)
{
    return ((const cpu_backend *)be)->description;
}

static elastic_status cpu_buffer_alloc(elastic_backend *be, size_t size, elastic_buffer **out)
{
    (void)be;
    elastic_buffer *b = calloc(1, sizeof *b);
    size_t rounded = (size + 63) / 64 * 64;
    void *data = rounded ? aligned_alloc(64, rounded) : NULL;
    if (!b || (rounded && !data)) {
        free(b);
        free(data);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "cpu backend: cannot allocate %zu bytes", size);
    }
    b->data = data;
    b->size = size;
    b->owned = 1;
    *out = b;
    return ELASTIC_OK;
}

static elastic_status cpu_buffer_wrap_host(elastic_backend *be, void *data, size_t size,
                                           elastic_buffer **out)
{
    (void)be;
    elastic_buffer *b = calloc(1, sizeof *b);
    if (!b) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (cpu buffer)");
    b->data = data;
    b->size = size;
    *out = b;
    return ELASTIC_OK;
}

static void cpu_buffer_free(elastic_backend *be, elastic_buffer *b)
{
    (void)be;
    if (!b) return;
    if (b->owned) free(b->data);
    free(b);
}

static void *cpu_buffer_host_ptr(const elastic_buffer *b)
{
    return b->data;
}

static elastic_status cpu_upload(elastic_backend *be, elastic_buffer *b, size_t offset,
                                 const void *src, size_t size)
{
    (void)be;
    if (offset > b->size || size > b->size - offset)
        return elastic_error(ELASTIC_ERR_INTERNAL, "cpu upload outside its buffer");
    if (size) memcpy((char *)b->data + offset, src, size);
    return ELASTIC_OK;
}

static elastic_status cpu_download(elastic_backend *be, const elastic_buffer *b, size_t offset,
                                   void *dst, size_t size)
{
    (void)be;
    if (offset > b->size || size > b->size - offset)
        return elastic_error(ELASTIC_ERR_INTERNAL, "cpu download outside its buffer");
    if (size) memcpy(dst, (const char *)b->data + offset, size);
    return ELASTIC_OK;
}

static void *ptr(const elastic_tensor_ref *r)
{
    return r->buffer ? (char *)r->buffer->data + r->offset : NULL;
}

static int64_t numel(const elastic_tensor_ref *r)
{
    int64_t n = 1;
    for (int i = 0; i < r->ndim; i++)
        n *= r->shape[i];
    return n;
}

/* Strided gather of any view into a contiguous output (elements of 4 bytes). */
static void copy_strided(const elastic_tensor_ref *src, uint32_t *dst)
{
    const uint32_t *s = ptr(src);
    int64_t shape[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    for (int i = 0; i < src->ndim; i++) {
        shape[4 - src->ndim + i] = src->shape[i];
        st[4 - src->ndim + i] = src->strides[i];
    }
    int64_t o = 0;
    for (int64_t a = 0; a < shape[0]; a++)
        for (int64_t b = 0; b < shape[1]; b++)
            for (int64_t c = 0; c < shape[2]; c++)
                for (int64_t d = 0; d < shape[3]; d++)
                    dst[o++] = s[a * st[0] + b * st[1] + c * st[2] + d * st[3]];
}

/* Indices must lie in 0..rows-1: a status, never an out-of-bounds read. */
static elastic_status check_indices(const elastic_node *node, const int32_t *idx, int64_t n,
                                    int64_t rows)
{
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= rows)
            return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "%s '%s': index %d outside 0..%lld",
                                 elastic_op_name(node->op), node->name, (int)idx[i],
                                 (long long)rows - 1);
    return ELASTIC_OK;
}

/* One function per op, named cpu_<op> after ops.def: the table below is
 * generated from that list, so an op without a CPU kernel does not build.
 * Each reads its sizes from node->dims (ops.c). */
#define CPU_OP(name)                                                                               \
    static elastic_status cpu_##name(elastic_backend *base, const elastic_node *node,              \
                                     const elastic_tensor_ref *in, const elastic_tensor_ref *out)
#define CPU_ARGS                                                                                   \
    cpu_backend *be = (cpu_backend *)base;                                                         \
    const elastic_cpu_kernels *k = be->k;                                                          \
    const elastic_node_dims *d = &node->dims;                                                      \
    const elastic_op_params *p = &node->params;                                                    \
    int th = be->threads;                                                                          \
    (void)k, (void)d, (void)p, (void)th, (void)in, (void)out

/* An optional input: NULL when absent. */
static const void *opt(const elastic_node *node, const elastic_tensor_ref *in, int i)
{
    return node->n_inputs > i ? ptr(&in[i]) : NULL;
}

CPU_OP(gather)
{
    CPU_ARGS;
    ELASTIC_TRY(check_indices(node, ptr(&in[1]), d->aux, d->rows));
    k->gather(ptr(&in[0]), d->cols, ptr(&in[1]), d->aux, ptr(&out[0]), th);
    return ELASTIC_OK;
}

CPU_OP(add)
{
    CPU_ARGS;
    k->add(ptr(&in[0]), ptr(&in[1]), ptr(&out[0]), d->numel, d->aux, th);
    return ELASTIC_OK;
}

CPU_OP(masked_mean)
{
    CPU_ARGS;
    k->masked_mean(ptr(&in[0]), ptr(&in[1]), ptr(&out[0]), d->batch, d->steps, d->width, th);
    return ELASTIC_OK;
}

CPU_OP(layer_norm)
{
    CPU_ARGS;
    k->layer_norm(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&out[0]), d->rows, d->cols, p->eps,
                  th);
    return ELASTIC_OK;
}

/* W [n, k] and its bias packed once (cpu_pack_cache.h), or NULL. */
static const float *packed(cpu_backend *be, const void *w, const void *bias, int64_t n, int64_t k)
{
    return cpu_pack_cache_get(&be->packs, w, bias, n, k);
}

CPU_OP(linear)
{
    CPU_ARGS;
    const float *wp = packed(be, ptr(&in[1]), opt(node, in, 2), d->n, d->k);
    if (wp)
        k->linear_packed(ptr(&in[0]), wp, ptr(&out[0]), d->m, d->n, d->k, th);
    else
        k->linear(ptr(&in[0]), ptr(&in[1]), opt(node, in, 2), ptr(&out[0]), d->m, d->n, d->k, th);
    return ELASTIC_OK;
}

CPU_OP(gelu)
{
    CPU_ARGS;
    k->gelu(ptr(&in[0]), ptr(&out[0]), d->numel, th);
    return ELASTIC_OK;
}

CPU_OP(attention)
{
    CPU_ARGS;
    k->attention(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), opt(node, in, 3), ptr(&out[0]), d->batch,
                 d->nq, d->nk, d->width, p->heads, p->causal, th);
    return ELASTIC_OK;
}

CPU_OP(attention_probs)
{
    CPU_ARGS;
    k->attention_probs(ptr(&in[0]), ptr(&in[1]), opt(node, in, 2), ptr(&out[0]), d->batch, d->nq,
                       d->nk, d->width, p->heads, p->causal, th);
    return ELASTIC_OK;
}

CPU_OP(attention_mix)
{
    CPU_ARGS;
    k->attention_mix(ptr(&in[0]), ptr(&in[1]), ptr(&out[0]), d->batch, d->nq, d->nk, d->width,
                     (int)d->heads, th);
    return ELASTIC_OK;
}

CPU_OP(pkm)
{
    CPU_ARGS;
    if (k->pkm(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&out[0]), d->batch, p->experts, d->pkm_c,
               d->pkm_m, p->mem_topk, d->width, th))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (pkm '%s', top %d)", node->name,
                             p->mem_topk);
    return ELASTIC_OK;
}

CPU_OP(topk)
{
    CPU_ARGS;
    k->topk(ptr(&in[0]), d->aux ? opt(node, in, 1) : NULL, d->aux, ptr(&out[0]), ptr(&out[1]),
            d->batch, d->items, p->top_k, th);
    return ELASTIC_OK;
}

CPU_OP(score_topk)
{
    CPU_ARGS;
    const float *ip = d->steps ? NULL : packed(be, ptr(&in[1]), NULL, d->items, d->width);
    if (ip)
        k->score_topk_packed(ptr(&in[0]), ptr(&in[1]), ip, d->aux ? opt(node, in, 2) : NULL, d->aux,
                             NULL, 0, ptr(&out[0]), ptr(&out[1]), d->batch, d->items, d->width,
                             p->top_k, th);
    else
        k->score_topk(ptr(&in[0]), ptr(&in[1]), d->aux ? opt(node, in, 2) : NULL, d->aux,
                      d->steps ? opt(node, in, 3) : NULL, d->steps, ptr(&out[0]), ptr(&out[1]),
                      d->batch, d->items, d->width, p->top_k, th);
    return ELASTIC_OK;
}

CPU_OP(ffn)
{
    CPU_ARGS;
    const float *w1p = packed(be, ptr(&in[3]), ptr(&in[4]), d->n, d->k);
    const float *w2p = w1p ? packed(be, ptr(&in[5]), ptr(&in[6]), d->k, d->n) : NULL;
    if (w2p ? k->ffn_packed(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), w1p, w2p, ptr(&out[0]), d->m,
                            d->k, d->n, p->eps, th)
            : k->ffn(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), ptr(&in[4]), ptr(&in[5]),
                     ptr(&in[6]), ptr(&out[0]), d->m, d->k, d->n, p->eps, th))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "ffn '%s': out of memory (scratch)",
                             node->name);
    return ELASTIC_OK;
}

CPU_OP(aggregate)
{
    CPU_ARGS;
    const float *wkp = packed(be, ptr(&in[4]), ptr(&in[5]), d->width, d->width);
    const float *wvp = wkp ? packed(be, ptr(&in[6]), ptr(&in[7]), d->width, d->width) : NULL;
    if (wvp ? k->aggregate_packed(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), wkp, wvp,
                                  opt(node, in, 8), ptr(&out[0]), d->batch, d->nq, d->nk, d->width,
                                  p->heads, p->eps, th)
            : k->aggregate(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), ptr(&in[4]),
                           ptr(&in[5]), ptr(&in[6]), ptr(&in[7]), opt(node, in, 8), ptr(&out[0]),
                           d->batch, d->nq, d->nk, d->width, p->heads, p->eps, th))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "aggregate '%s': out of memory (scratch)",
                             node->name);
    return ELASTIC_OK;
}

CPU_OP(dispatch)
{
    CPU_ARGS;
    const float *wqp = packed(be, ptr(&in[3]), ptr(&in[4]), d->width, d->width);
    const float *wop = wqp ? packed(be, ptr(&in[7]), ptr(&in[8]), d->width, d->width) : NULL;
    if (wop ? k->dispatch_packed(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), wqp, ptr(&in[5]),
                                 ptr(&in[6]), wop, ptr(&out[0]), d->batch, d->nq, d->nk, d->width,
                                 p->heads, p->eps, th)
            : k->dispatch(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), ptr(&in[4]),
                          ptr(&in[5]), ptr(&in[6]), ptr(&in[7]), ptr(&in[8]), ptr(&out[0]),
                          d->batch, d->nq, d->nk, d->width, p->heads, p->eps, th))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "dispatch '%s': out of memory (scratch)",
                             node->name);
    return ELASTIC_OK;
}

CPU_OP(copy)
{
    CPU_ARGS;
    copy_strided(&in[0], ptr(&out[0]));
    return ELASTIC_OK;
}

/* The training ops, on cpu_grad.c's kernels. */

CPU_OP(dropout)
{
    CPU_ARGS;
    k->dropout(ptr(&in[0]), ptr(&out[0]), d->numel, p->dropout, p->seed, th);
    return ELASTIC_OK;
}

CPU_OP(cross_entropy)
{
    CPU_ARGS;
    const int32_t *target = ptr(&in[1]);
    for (int64_t b = 0; b < d->batch; b++)
        if (target[b] < 0 || target[b] > d->items)
            return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                 "cross_entropy '%s': target %d outside 0..%lld", node->name,
                                 (int)target[b], (long long)d->items);
    k->cross_entropy(ptr(&in[0]), target, ptr(&out[0]), ptr(&out[1]), d->batch, d->items, th);
    return ELASTIC_OK;
}

CPU_OP(gather_grad)
{
    CPU_ARGS;
    ELASTIC_TRY(check_indices(node, ptr(&in[1]), d->aux, p->rows));
    elastic_cpu_gather_grad(ptr(&in[0]), ptr(&in[1]), d->aux, d->cols, ptr(&out[0]), p->rows);
    return ELASTIC_OK;
}

CPU_OP(sum_rows)
{
    CPU_ARGS;
    elastic_cpu_sum_rows(ptr(&in[0]), d->numel / d->n, d->n, ptr(&out[0]), th);
    return ELASTIC_OK;
}

CPU_OP(masked_mean_grad)
{
    CPU_ARGS;
    elastic_cpu_masked_mean_grad(ptr(&in[0]), ptr(&in[1]), ptr(&out[0]), d->batch, d->steps,
                                 d->width, th);
    return ELASTIC_OK;
}

CPU_OP(layer_norm_grad)
{
    CPU_ARGS;
    return elastic_cpu_layer_norm_grad(k, ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&out[0]),
                                       ptr(&out[1]), ptr(&out[2]), d->rows, d->cols, p->eps, th);
}

CPU_OP(linear_grad)
{
    CPU_ARGS;
    return elastic_cpu_linear_grad(k, ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&out[0]),
                                   ptr(&out[1]), ptr(&out[2]), d->m, d->n, d->k, th);
}

CPU_OP(gelu_grad)
{
    CPU_ARGS;
    k->gelu_grad(ptr(&in[0]), ptr(&in[1]), ptr(&out[0]), d->numel, th);
    return ELASTIC_OK;
}

CPU_OP(attention_grad)
{
    CPU_ARGS;
    if (k->attention_grad(ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), opt(node, in, 4),
                          ptr(&out[0]), ptr(&out[1]), ptr(&out[2]), d->batch, d->nq, d->nk,
                          d->width, p->heads, p->causal, th))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "attention_grad '%s': out of memory (scratch)",
                             node->name);
    return ELASTIC_OK;
}

CPU_OP(pkm_grad)
{
    CPU_ARGS;
    return elastic_cpu_pkm_grad(k, ptr(&in[0]), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), ptr(&out[0]),
                                ptr(&out[1]), ptr(&out[2]), d->batch, p->experts, d->pkm_c,
                                d->pkm_m, p->mem_topk, d->width, th);
}

CPU_OP(view_grad)
{
    CPU_ARGS;
    elastic_cpu_view_grad(ptr(&in[0]), in[0].ndim, in[0].shape, p->view_strides, p->view_offset,
                          ptr(&out[0]), numel(&out[0]));
    return ELASTIC_OK;
}

/* Every op of ops.def, in its order: the CPU runs them all. */
static const elastic_op_kernel cpu_op_table[] = {
#define ELASTIC_OP(ENUM, name, min_in, max_in, phase, summary)                                     \
    [ELASTIC_OP_##ENUM] = {cpu_##name, NULL},
#include "graph/ops.def"
#undef ELASTIC_OP
};
_Static_assert(sizeof cpu_op_table / sizeof cpu_op_table[0] == ELASTIC_OP_COUNT,
               "a CPU row per op");

static elastic_status cpu_synchronize(elastic_backend *be)
{
    (void)be;
    return ELASTIC_OK;
}

const elastic_backend_iface elastic_cpu_backend_iface = {
    .name = "cpu",
    .probe = cpu_probe,
    .init = cpu_init,
    .free = cpu_free,
    .describe = cpu_describe,
    .kernels = cpu_op_table,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_wrap_host = cpu_buffer_wrap_host,
    .buffer_free = cpu_buffer_free,
    .buffer_host_ptr = cpu_buffer_host_ptr,
    .upload = cpu_upload,
    .download = cpu_download,
    .synchronize = cpu_synchronize,
    .set_constant_weights = cpu_set_constant_weights,
};
