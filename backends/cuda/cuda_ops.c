/*
 * cuda_ops.c - the CUDA backend's op table (elastic_cuda_op_table): one
 * launcher per op it runs, cuda_<op>, mapping a node to a kernel of
 * kernels_cu/ or to cuBLAS, and, where a kernel has limits, cuda_<op>_fits
 * saying which nodes are within them (the planner sends the others to the
 * CPU or refuses). Launchers read their sizes from node->dims and
 * node->params (derived once by core/graph/ops.c), queue the work on the
 * backend's stream and return the launch's status; nothing asserts. Ops
 * without a row (the training ops, for now) are unsupported.
 */
#include "cuda_backend_internal.h"
#include "elastic_cuda_kernels.h"
#include "base/error.h"

#include <limits.h>

/* The device address of a bound tensor, or NULL for an absent input. */
static void *dptr(const elastic_tensor_ref *r)
{
    return r->buffer ? (char *)r->buffer->ptr + r->offset : NULL;
}

/* Input i's address, NULL when the node leaves that optional input out. */
static void *opt(const elastic_node *node, const elastic_tensor_ref *in, int i)
{
    return i < node->n_inputs ? dptr(&in[i]) : NULL;
}

static elastic_status launched(const elastic_node *node, const char *kernel, cudaError_t err)
{
    if (err == cudaSuccess) return ELASTIC_OK;
    (void)cudaGetLastError();
    return elastic_error(err == cudaErrorMemoryAllocation ? ELASTIC_ERR_NO_MEMORY
                                                          : ELASTIC_ERR_BACKEND,
                         "cuda backend: %s for %s '%s': %s (%s)", kernel, elastic_op_name(node->op),
                         node->name, cudaGetErrorString(err), cudaGetErrorName(err));
}

static elastic_status too_large(const elastic_node *node)
{
    return elastic_error(ELASTIC_ERR_UNSUPPORTED, "cuda backend: %s '%s': too large for cuBLAS",
                         elastic_op_name(node->op), node->name);
}

/* A launcher's signature, and what every launcher starts with: its sizes,
 * and the backend's device made current (runtime calls act on it). */
#define CUDA_OP(name)                                                                              \
    static elastic_status cuda_##name(elastic_backend *base, const elastic_node *node,             \
                                      const elastic_tensor_ref *in, const elastic_tensor_ref *out)
#define CUDA_FITS(name)                                                                            \
    static int cuda_##name##_fits(const elastic_backend *base, const elastic_node *node)
#define CUDA_ARGS                                                                                  \
    cuda_backend *be = (cuda_backend *)base;                                                       \
    const elastic_node_dims *d = &node->dims;                                                      \
    const elastic_op_params *p = &node->params;                                                    \
    cudaStream_t s = be->stream;                                                                   \
    (void)d, (void)p, (void)s, (void)in, (void)out;                                                \
    CUDA_TRY(cudaSetDevice(be->device))

/* Indices are checked on the device; a bad one is reported at the next
 * synchronize (elastic_cuda_gather_slot). */
CUDA_OP(gather)
{
    CUDA_ARGS;
    unsigned long long *report;
    ELASTIC_TRY(elastic_cuda_gather_slot(be, node->name, d->rows, &report));
    return launched(node, "elastic_cu_gather",
                    elastic_cu_gather(dptr(&in[0]), d->rows, d->cols, dptr(&in[1]), d->aux,
                                      dptr(&out[0]), report, s));
}

CUDA_OP(add)
{
    CUDA_ARGS;
    return launched(node, "elastic_cu_add",
                    elastic_cu_add(dptr(&in[0]), dptr(&in[1]), dptr(&out[0]), d->numel, d->aux, s));
}

CUDA_OP(masked_mean)
{
    CUDA_ARGS;
    return launched(node, "elastic_cu_masked_mean",
                    elastic_cu_masked_mean(dptr(&in[0]), dptr(&in[1]), dptr(&out[0]), d->batch,
                                           d->steps, d->width, s));
}

CUDA_OP(layer_norm)
{
    CUDA_ARGS;
    return launched(node, "elastic_cu_layer_norm",
                    elastic_cu_layer_norm(dptr(&in[0]), dptr(&in[1]), dptr(&in[2]), dptr(&out[0]),
                                          d->rows, d->cols, p->eps, s));
}

/* cuBLAS takes int sizes. */
CUDA_FITS(linear)
{
    (void)base;
    const elastic_node_dims *d = &node->dims;
    return d->m <= INT_MAX && d->n <= INT_MAX && d->k <= INT_MAX;
}

/* out[M,N] = x[M,K] W[N,K]^T (+ bias). cuBLAS is column-major: there the
 * row-major out is out^T [N,M] = W x^T, i.e. op(A) = W^T of the col-major
 * [K,N] view of W (lda K) times the col-major [K,M] view of x (ldb K). */
CUDA_OP(linear)
{
    CUDA_ARGS;
    if (!cuda_linear_fits(base, node)) return too_large(node);
    if (!d->m || !d->n) return ELASTIC_OK;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasSgemm(be->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)d->n, (int)d->m,
                                    (int)d->k, &one, dptr(&in[1]), (int)d->k, dptr(&in[0]),
                                    (int)d->k, &zero, dptr(&out[0]), (int)d->n);
    if (st != CUBLAS_STATUS_SUCCESS) return elastic_cuda_blas_fail("cublasSgemm", st);
    const void *bias = opt(node, in, 2);
    if (bias)
        return launched(node, "elastic_cu_bias",
                        elastic_cu_bias(dptr(&out[0]), bias, d->m, d->n, s));
    return ELASTIC_OK;
}

CUDA_OP(gelu)
{
    CUDA_ARGS;
    return launched(node, "elastic_cu_gelu",
                    elastic_cu_gelu(dptr(&in[0]), dptr(&out[0]), d->numel, s));
}

/* The streaming kernel keeps a head's query and accumulator in registers. */
CUDA_FITS(attention)
{
    (void)base;
    return node->params.heads >= 1 && node->dims.head_size <= ELASTIC_CU_ATTENTION_MAX_HEAD;
}

CUDA_OP(attention)
{
    CUDA_ARGS;
    size_t bytes = elastic_cu_attention_workspace(d->batch, d->nq, d->nk, d->width, p->heads,
                                                  p->causal, be->sm_count);
    void *ws;
    ELASTIC_TRY(elastic_cuda_scratch(be, bytes, &ws));
    return launched(node, "elastic_cu_attention",
                    elastic_cu_attention(dptr(&in[0]), dptr(&in[1]), dptr(&in[2]), opt(node, in, 3),
                                         dptr(&out[0]), d->batch, d->nq, d->nk, d->width, p->heads,
                                         p->causal, ws, bytes, be->sm_count, s));
}

/* Any head size: one block per row of P. */
CUDA_OP(attention_probs)
{
    CUDA_ARGS;
    return launched(node, "elastic_cu_attention_probs",
                    elastic_cu_attention_probs(dptr(&in[0]), dptr(&in[1]), opt(node, in, 2),
                                               dptr(&out[0]), d->batch, d->nq, d->nk, d->width,
                                               p->heads, p->causal, s));
}

/* cuBLAS takes int sizes (the batch strides are 64-bit). */
CUDA_FITS(attention_mix)
{
    (void)base;
    const elastic_node_dims *d = &node->dims;
    return d->batch <= INT_MAX && d->nq <= INT_MAX && d->nk <= INT_MAX && d->width <= INT_MAX;
}

/* ATTENTION_MIX: out[b,i,head] = P[b,head,i,:] v[b,:,head] (head = the dh
 * columns of one head), one strided-batched GEMM per head over the batch.
 * Column-major, the head's columns of the row-major out[b] [nq, d] are the
 * [dh, nq] matrix C at out + head*dh (ldc d) = A B, where A [dh, nk] is the
 * col-major view of v[b]'s head columns (at v + head*dh, lda d) and B
 * [nk, nq] that of the row-major P[b, head] [nq, nk] (ldb nk): C(c, i) =
 * sum_j v[b,j,head*dh+c] P[b,head,i,j]. Every key is summed, zeros too. */
CUDA_OP(attention_mix)
{
    CUDA_ARGS;
    if (!cuda_attention_mix_fits(base, node)) return too_large(node);
    int64_t batch = d->batch, nq = d->nq, nk = d->nk, w = d->width;
    if (!batch || !nq || !w) return ELASTIC_OK;
    int64_t dh = d->head_size, heads = d->heads;
    float *y = dptr(&out[0]);
    if (!nk) /* no keys: sums of nothing */
        return launched(node, "cudaMemsetAsync",
                        cudaMemsetAsync(y, 0, (size_t)(batch * nq * w) * sizeof(float), s));
    const float one = 1.0f, zero = 0.0f;
    const float *pr = dptr(&in[0]), *v = dptr(&in[1]);
    for (int64_t h = 0; h < heads; h++) {
        cublasStatus_t st = cublasSgemmStridedBatched(
            be->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)dh, (int)nq, (int)nk, &one, v + h * dh,
            (int)w, (long long)(nk * w), pr + h * nq * nk, (int)nk, (long long)(heads * nq * nk),
            &zero, y + h * dh, (int)w, (long long)(nq * w), (int)batch);
        if (st != CUBLAS_STATUS_SUCCESS)
            return elastic_cuda_blas_fail("cublasSgemmStridedBatched", st);
    }
    return ELASTIC_OK;
}

/* The sub-key scores and the kept candidates live in shared memory. */
CUDA_FITS(pkm)
{
    (void)base;
    return elastic_cu_pkm_supported(node->dims.pkm_c, node->dims.pkm_m, node->params.mem_topk);
}

CUDA_OP(pkm)
{
    CUDA_ARGS;
    return launched(node, "elastic_cu_pkm",
                    elastic_cu_pkm(dptr(&in[0]), dptr(&in[1]), dptr(&in[2]), dptr(&out[0]),
                                   d->batch, p->experts, d->pkm_c, d->pkm_m, p->mem_topk, d->width,
                                   s));
}

/* K up to ELASTIC_CU_TOPK_MAX_K, or any K when the row fits the block. */
CUDA_FITS(topk)
{
    (void)base;
    return elastic_cu_topk_supported(node->dims.items, node->params.top_k);
}

/* Exclusions (d->aux per row, 0 = none) become bitmaps in scratch memory. */
CUDA_OP(topk)
{
    CUDA_ARGS;
    const int32_t *ex = d->aux ? opt(node, in, 1) : NULL;
    size_t bytes = ex ? elastic_cu_topk_workspace(d->batch, d->items) : 0;
    void *ws;
    ELASTIC_TRY(elastic_cuda_scratch(be, bytes, &ws));
    return launched(node, "elastic_cu_topk",
                    elastic_cu_topk(dptr(&in[0]), ex, d->aux, dptr(&out[0]), dptr(&out[1]),
                                    d->batch, d->items, p->top_k, ws, bytes, s));
}

/* Any view of up to 4 dims; the strides are the bound input's. */
CUDA_OP(copy)
{
    CUDA_ARGS;
    const elastic_tensor_ref *a = &in[0];
    if (elastic_dtype_size(a->dtype) != 4)
        return elastic_error(ELASTIC_ERR_UNSUPPORTED, "cuda backend: copy '%s': element size %zu",
                             node->name, elastic_dtype_size(a->dtype));
    return launched(node, "elastic_cu_copy",
                    elastic_cu_copy(dptr(a), a->shape, a->strides, a->ndim, dptr(&out[0]), s));
}

/* The inference ops; the training ops have no row (the CPU runs them when
 * fallback is allowed). */
const elastic_op_kernel elastic_cuda_op_table[ELASTIC_OP_COUNT] = {
    [ELASTIC_OP_GATHER] = {cuda_gather, NULL},
    [ELASTIC_OP_ADD] = {cuda_add, NULL},
    [ELASTIC_OP_MASKED_MEAN] = {cuda_masked_mean, NULL},
    [ELASTIC_OP_LAYER_NORM] = {cuda_layer_norm, NULL},
    [ELASTIC_OP_LINEAR] = {cuda_linear, cuda_linear_fits},
    [ELASTIC_OP_GELU] = {cuda_gelu, NULL},
    [ELASTIC_OP_ATTENTION] = {cuda_attention, cuda_attention_fits},
    [ELASTIC_OP_ATTENTION_PROBS] = {cuda_attention_probs, NULL},
    [ELASTIC_OP_ATTENTION_MIX] = {cuda_attention_mix, cuda_attention_mix_fits},
    [ELASTIC_OP_PKM] = {cuda_pkm, cuda_pkm_fits},
    [ELASTIC_OP_TOPK] = {cuda_topk, cuda_topk_fits},
    [ELASTIC_OP_COPY] = {cuda_copy, NULL},
};
