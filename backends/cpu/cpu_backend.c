/*
 * cpu_backend.c - the CPU backend: host buffers, and compute() dispatching
 * each node to a kernel table, either the float64 scalar reference or the
 * fast table for the best instruction set this CPU has (cpu_isa.c).
 */
#include "runtime/backend.h"
#include "cpu_grad.h"
#include "cpu_kernels.h"
#include "base/error.h"

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
    const elastic_cpu_kernels *k;
    if (o->cpu_reference)
        k = &elastic_cpu_kernels_reference;
    else if (o->cpu_isa < ELASTIC_CPU_ISA_BEST || o->cpu_isa > ELASTIC_CPU_ISA_AVX512)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "cpu backend: unknown cpu_isa %d",
                             o->cpu_isa);
    else if (!(k = elastic_cpu_kernels_for((elastic_cpu_isa)o->cpu_isa)))
        return elastic_error(ELASTIC_ERR_BACKEND,
                             "cpu backend: this CPU lacks the instruction set asked for (%d)",
                             o->cpu_isa);
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (cpu backend)");
    be->base.iface = &elastic_cpu_backend_iface;
    be->base.alignment = 64;
    be->k = k;
    be->threads = o->num_threads > 0 ? o->num_threads : omp_get_max_threads();
    snprintf(be->description, sizeof be->description, "cpu (%s, %d threads)", k->isa,
             be->threads);
    *out = &be->base;
    return ELASTIC_OK;
}

static void cpu_free(elastic_backend *be)
{
    free(be);
}

static const char *cpu_describe(const elastic_backend *be)
{
    return ((const cpu_backend *)be)->description;
}

static int cpu_supports_op(const elastic_backend *be, const elastic_graph *g,
                           const elastic_node *node)
{
    (void)be;
    (void)g;
    return node->op >= 0 && node->op < ELASTIC_OP_COUNT;
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
    for (int i = 0; i < r->ndim; i++) n *= r->shape[i];
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

/* The training ops of graph.h, on cpu_grad.c's kernels. */
static elastic_status compute_training(cpu_backend *be, const elastic_node *node,
                                       const elastic_tensor_ref *in,
                                       const elastic_tensor_ref *out)
{
    int th = be->threads;
    const elastic_tensor_ref *a = &in[0];
    const elastic_op_params *p = &node->params;
    int64_t last = a->shape[a->ndim - 1];
    switch (node->op) {
    case ELASTIC_OP_DROPOUT:
        elastic_cpu_dropout(ptr(a), ptr(&out[0]), numel(a), p->dropout, p->seed, th);
        return ELASTIC_OK;
    case ELASTIC_OP_CROSS_ENTROPY: {
        const int32_t *target = ptr(&in[1]);
        for (int64_t b = 0; b < a->shape[0]; b++)
            if (target[b] < 1 || target[b] > last)
                return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                     "cross_entropy '%s': target %d outside 1..%lld", node->name,
                                     (int)target[b], (long long)last);
        elastic_cpu_cross_entropy(ptr(a), target, ptr(&out[0]), ptr(&out[1]), a->shape[0], last,
                                  th);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_GATHER_GRAD: {
        const int32_t *idx = ptr(&in[1]);
        int64_t n = numel(&in[1]);
        for (int64_t i = 0; i < n; i++)
            if (idx[i] < 0 || idx[i] >= p->rows)
                return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                     "gather_grad '%s': index %d outside 0..%lld", node->name,
                                     (int)idx[i], (long long)p->rows - 1);
        elastic_cpu_gather_grad(ptr(a), idx, n, last, ptr(&out[0]), p->rows);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_SUM_ROWS: {
        int64_t cols = numel(&out[0]);
        elastic_cpu_sum_rows(ptr(a), numel(a) / cols, cols, ptr(&out[0]), th);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_MASKED_MEAN_GRAD:
        elastic_cpu_masked_mean_grad(ptr(a), ptr(&in[1]), ptr(&out[0]), a->shape[0], p->rows,
                                     a->shape[1], th);
        return ELASTIC_OK;
    case ELASTIC_OP_LAYER_NORM_GRAD:
        return elastic_cpu_layer_norm_grad(ptr(a), ptr(&in[1]), ptr(&in[2]), ptr(&out[0]),
                                           ptr(&out[1]), ptr(&out[2]), numel(a) / last, last,
                                           p->eps, th);
    case ELASTIC_OP_LINEAR_GRAD:
        return elastic_cpu_linear_grad(be->k, ptr(a), ptr(&in[1]), ptr(&in[2]), ptr(&out[0]),
                                       ptr(&out[1]), ptr(&out[2]), numel(a) / last,
                                       in[1].shape[0], last, th);
    case ELASTIC_OP_GELU_GRAD:
        elastic_cpu_gelu_grad(ptr(a), ptr(&in[1]), ptr(&out[0]), numel(a), th);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION_GRAD:
        return elastic_cpu_attention_grad(
            ptr(a), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), node->n_inputs > 4 ? ptr(&in[4]) : NULL,
            ptr(&out[0]), ptr(&out[1]), ptr(&out[2]), a->shape[0], a->shape[1], in[1].shape[1],
            a->shape[2], p->heads, p->causal, th);
    case ELASTIC_OP_PKM_GRAD:
        return elastic_cpu_pkm_grad(ptr(a), ptr(&in[1]), ptr(&in[2]), ptr(&in[3]), ptr(&out[0]),
                                    ptr(&out[1]), ptr(&out[2]), a->shape[0], p->experts,
                                    2 * in[1].shape[2], in[1].shape[1], p->mem_topk,
                                    in[2].shape[1], th);
    case ELASTIC_OP_VIEW_GRAD:
        elastic_cpu_view_grad(ptr(a), a->ndim, a->shape, p->view_strides, p->view_offset,
                              ptr(&out[0]), numel(&out[0]));
        return ELASTIC_OK;
    default: break;
    }
    return elastic_error(ELASTIC_ERR_UNSUPPORTED, "cpu backend: unknown op %d", (int)node->op);
}

static elastic_status cpu_compute(elastic_backend *base, const elastic_node *node,
                                  const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    cpu_backend *be = (cpu_backend *)base;
    const elastic_cpu_kernels *k = be->k;
    int th = be->threads;
    const elastic_tensor_ref *a = &in[0];
    float *y = ptr(&out[0]);
    int64_t last = a->shape[a->ndim - 1];
    switch (node->op) {
    case ELASTIC_OP_GATHER: {
        const int32_t *idx = ptr(&in[1]);
        int64_t n = numel(&in[1]), rows = a->shape[0];
        for (int64_t i = 0; i < n; i++)
            if (idx[i] < 0 || idx[i] >= rows)
                return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                     "gather '%s': index %d outside 0..%lld", node->name,
                                     (int)idx[i], (long long)rows - 1);
        k->gather(ptr(a), a->shape[1], idx, n, y, th);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_ADD:
        k->add(ptr(a), ptr(&in[1]), y, numel(a), numel(&in[1]), th);
        return ELASTIC_OK;
    case ELASTIC_OP_MASKED_MEAN:
        k->masked_mean(ptr(a), ptr(&in[1]), y, a->shape[0], a->shape[1], a->shape[2], th);
        return ELASTIC_OK;
    case ELASTIC_OP_LAYER_NORM:
        k->layer_norm(ptr(a), ptr(&in[1]), ptr(&in[2]), y, numel(a) / last, last,
                      node->params.eps, th);
        return ELASTIC_OK;
    case ELASTIC_OP_LINEAR:
        k->linear(ptr(a), ptr(&in[1]), node->n_inputs > 2 ? ptr(&in[2]) : NULL, y, numel(a) / last,
                  in[1].shape[0], last, th);
        return ELASTIC_OK;
    case ELASTIC_OP_GELU:
        k->gelu(ptr(a), y, numel(a), th);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION:
        k->attention(ptr(a), ptr(&in[1]), ptr(&in[2]), node->n_inputs > 3 ? ptr(&in[3]) : NULL, y,
                     a->shape[0], a->shape[1], in[1].shape[1], a->shape[2], node->params.heads,
                     node->params.causal, th);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION_PROBS:
        k->attention_probs(ptr(a), ptr(&in[1]), node->n_inputs > 2 ? ptr(&in[2]) : NULL, y,
                           a->shape[0], a->shape[1], in[1].shape[1], a->shape[2],
                           node->params.heads, node->params.causal, th);
        return ELASTIC_OK;
    case ELASTIC_OP_ATTENTION_MIX:
        k->attention_mix(ptr(a), ptr(&in[1]), y, a->shape[0], a->shape[2], a->shape[3],
                         in[1].shape[2], (int)a->shape[1], th);
        return ELASTIC_OK;
    case ELASTIC_OP_PKM:
        k->pkm(ptr(a), ptr(&in[1]), ptr(&in[2]), y, a->shape[0], node->params.experts,
               2 * in[1].shape[2], in[1].shape[1], node->params.mem_topk, in[2].shape[1], th);
        return ELASTIC_OK;
    case ELASTIC_OP_TOPK: {
        const int32_t *ex = node->n_inputs > 1 ? ptr(&in[1]) : NULL;
        k->topk(ptr(a), ex, ex ? in[1].shape[1] : 0, ptr(&out[0]), ptr(&out[1]), a->shape[0],
                a->shape[1], node->params.top_k, th);
        return ELASTIC_OK;
    }
    case ELASTIC_OP_COPY:
        copy_strided(a, ptr(&out[0]));
        return ELASTIC_OK;
    default: return compute_training(be, node, in, out);
    }
    return elastic_error(ELASTIC_ERR_UNSUPPORTED, "cpu backend: unknown op %d", (int)node->op);
}

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
    .supports_op = cpu_supports_op,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_wrap_host = cpu_buffer_wrap_host,
    .buffer_free = cpu_buffer_free,
    .buffer_host_ptr = cpu_buffer_host_ptr,
    .upload = cpu_upload,
    .download = cpu_download,
    .compute = cpu_compute,
    .synchronize = cpu_synchronize,
};
