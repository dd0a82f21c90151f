/*
 * cuda_ops.c - the CUDA backend's op table: which nodes it runs
 * (supports_op) and how each node maps to a kernel of kernels_cu/ or to
 * cuBLAS (compute). Mirrors backends/cpu/cpu_backend.c node for node; every
 * launch is queued on the backend's stream and its status checked.
 */
#include "cuda_backend_internal.h"
#include "elastic_cuda_kernels.h"
#include "base/error.h"

#include <limits.h>

static const elastic_tensor *node_input(const elastic_graph *g, const elastic_node *n, int i)
{
    return i < n->n_inputs && n->inputs[i] >= 0 ? &g->tensors[n->inputs[i]] : NULL;
}

int elastic_cuda_supports_op(const elastic_backend *backend, const elastic_graph *g,
                             const elastic_node *node)
{
    (void)backend;
    const elastic_tensor *a = node_input(g, node, 0), *b = node_input(g, node, 1);
    if (!a) return 0;
    switch (node->op) {
    case ELASTIC_OP_GATHER:
    case ELASTIC_OP_ADD:
    case ELASTIC_OP_MASKED_MEAN:
    case ELASTIC_OP_LAYER_NORM:
    case ELASTIC_OP_GELU:
        return 1;
    case ELASTIC_OP_LINEAR: { /* cuBLAS takes int sizes */
        int64_t k = a->shape[a->ndim - 1], m = k ? elastic_tensor_numel(a) / k : 0;
        return b && m <= INT_MAX && k <= INT_MAX && b->shape[0] <= INT_MAX;
    }
    case ELASTIC_OP_ATTENTION:
        return node->params.heads >= 1 &&
               a->shape[2] / node->params.heads <= ELASTIC_CU_ATTENTION_MAX_HEAD;
    case ELASTIC_OP_ATTENTION_PROBS: /* any head size */
        return b && node->params.heads >= 1;
    case ELASTIC_OP_ATTENTION_MIX: /* cuBLAS takes int sizes (the strides are 64-bit) */
        return b && a->ndim == 4 && b->ndim == 3 && a->shape[1] >= 1 && a->shape[0] <= INT_MAX &&
               a->shape[2] <= INT_MAX && a->shape[3] <= INT_MAX && b->shape[2] <= INT_MAX;
    case ELASTIC_OP_PKM: {
        const elastic_tensor *values = node_input(g, node, 2);
        return b && values && elastic_cu_pkm_supported(2 * b->shape[2], b->shape[1],
                                                       node->params.mem_topk);
    }
    case ELASTIC_OP_TOPK:
        return elastic_cu_topk_supported(a->shape[1], node->params.top_k);
    case ELASTIC_OP_COPY:
        return elastic_dtype_size(a->dtype) == 4 && a->ndim <= 4;
    default: break; /* no training ops yet */
    }
    return 0;
}

/* The device address of a bound tensor, or NULL for an absent input. */
static void *dptr(const elastic_tensor_ref *r)
{
    return r->buffer ? (char *)r->buffer->ptr + r->offset : NULL;
}

/* Input i if the node has it (an absent optional input has no buffer). */
static const elastic_tensor_ref *optional(const elastic_node *node, const elastic_tensor_ref *in,
                                          int i)
{
    return i < node->n_inputs && in[i].buffer ? &in[i] : NULL;
}

static int64_t numel(const elastic_tensor_ref *r)
{
    int64_t n = 1;
    for (int i = 0; i < r->ndim; i++) n *= r->shape[i];
    return n;
}

static elastic_status launched(const elastic_node *node, const char *kernel, cudaError_t err)
{
    if (err == cudaSuccess) return ELASTIC_OK;
    (void)cudaGetLastError();
    return elastic_error(err == cudaErrorMemoryAllocation ? ELASTIC_ERR_NO_MEMORY
                                                          : ELASTIC_ERR_BACKEND,
                         "cuda backend: %s for %s '%s': %s (%s)", kernel,
                         elastic_op_name(node->op), node->name, cudaGetErrorString(err),
                         cudaGetErrorName(err));
}

/* out[M,N] = x[M,K] W[N,K]^T (+ bias). cuBLAS is column-major: there the
 * row-major out is out^T [N,M] = W x^T, i.e. op(A) = W^T of the col-major
 * [K,N] view of W (lda K) times the col-major [K,M] view of x (ldb K). */
static elastic_status linear(cuda_backend *be, const elastic_node *node,
                             const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    const elastic_tensor_ref *x = &in[0], *w = &in[1], *bias = optional(node, in, 2);
    int64_t k = x->shape[x->ndim - 1], n = w->shape[0], m = k ? numel(x) / k : 0;
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return elastic_error(ELASTIC_ERR_UNSUPPORTED, "linear '%s': too large for cuBLAS",
                             node->name);
    if (!m || !n) return ELASTIC_OK;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st =
        cublasSgemm(be->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, dptr(w),
                    (int)k, dptr(x), (int)k, &zero, dptr(&out[0]), (int)n);
    if (st != CUBLAS_STATUS_SUCCESS) return elastic_cuda_blas_fail("cublasSgemm", st);
    if (bias)
        return launched(node, "elastic_cu_bias",
                        elastic_cu_bias(dptr(&out[0]), dptr(bias), m, n, be->stream));
    return ELASTIC_OK;
}

/* ATTENTION_MIX: out[b,i,head] = P[b,head,i,:] v[b,:,head] (head = the dh
 * columns of one head), one strided-batched GEMM per head over the batch.
 * Column-major, the head's columns of the row-major out[b] [nq, d] are the
 * [dh, nq] matrix C at out + head*dh (ldc d) = A B, where A [dh, nk] is the
 * col-major view of v[b]'s head columns (at v + head*dh, lda d) and B
 * [nk, nq] that of the row-major P[b, head] [nq, nk] (ldb nk): C(c, i) =
 * sum_j v[b,j,head*dh+c] P[b,head,i,j]. Every key is summed, zeros too. */
static elastic_status attention_mix(cuda_backend *be, const elastic_node *node,
                                    const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    const elastic_tensor_ref *pr = &in[0], *v = &in[1];
    int64_t batch = pr->shape[0], heads = pr->shape[1], nq = pr->shape[2], nk = pr->shape[3];
    int64_t d = v->shape[2], dh = heads > 0 ? d / heads : 0;
    if (heads < 1 || d % heads)
        return elastic_error(ELASTIC_ERR_SHAPE, "attention_mix '%s': width %lld over %lld heads",
                             node->name, (long long)d, (long long)heads);
    if (batch > INT_MAX || nq > INT_MAX || nk > INT_MAX || d > INT_MAX)
        return elastic_error(ELASTIC_ERR_UNSUPPORTED, "attention_mix '%s': too large for cuBLAS",
                             node->name);
    if (!batch || !nq || !d) return ELASTIC_OK;
    float *y = dptr(&out[0]);
    if (!nk) /* no keys: sums of nothing */
        return launched(node, "cudaMemsetAsync",
                        cudaMemsetAsync(y, 0, (size_t)(batch * nq * d) * sizeof(float),
                                        be->stream));
    const float one = 1.0f, zero = 0.0f;
    const float *p = dptr(pr), *vv = dptr(v);
    for (int64_t h = 0; h < heads; h++) {
        cublasStatus_t st = cublasSgemmStridedBatched(
            be->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)dh, (int)nq, (int)nk, &one, vv + h * dh,
            (int)d, (long long)(nk * d), p + h * nq * nk, (int)nk, (long long)(heads * nq * nk),
            &zero, y + h * dh, (int)d, (long long)(nq * d), (int)batch);
        if (st != CUBLAS_STATUS_SUCCESS)
            return elastic_cuda_blas_fail("cublasSgemmStridedBatched", st);
    }
    return ELASTIC_OK;
}

elastic_status elastic_cuda_compute(elastic_backend *base, const elastic_node *node,
                                    const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    cuda_backend *be = (cuda_backend *)base;
    cudaStream_t s = be->stream;
    const elastic_tensor_ref *a = &in[0];
    float *y = dptr(&out[0]);
    int64_t last = a->shape[a->ndim - 1];
    CUDA_TRY(cudaSetDevice(be->device));
    switch (node->op) {
    case ELASTIC_OP_GATHER: {
        unsigned long long *report;
        ELASTIC_TRY(elastic_cuda_gather_slot(be, node->name, a->shape[0], &report));
        return launched(node, "elastic_cu_gather",
                        elastic_cu_gather(dptr(a), a->shape[0], a->shape[1], dptr(&in[1]),
                                          numel(&in[1]), y, report, s));
    }
    case ELASTIC_OP_ADD:
        return launched(node, "elastic_cu_add",
                        elastic_cu_add(dptr(a), dptr(&in[1]), y, numel(a), numel(&in[1]), s));
    case ELASTIC_OP_MASKED_MEAN:
        return launched(node, "elastic_cu_masked_mean",
                        elastic_cu_masked_mean(dptr(a), dptr(&in[1]), y, a->shape[0], a->shape[1],
                                               a->shape[2], s));
    case ELASTIC_OP_LAYER_NORM:
        return launched(node, "elastic_cu_layer_norm",
                        elastic_cu_layer_norm(dptr(a), dptr(&in[1]), dptr(&in[2]), y,
                                              last ? numel(a) / last : 0, last, node->params.eps,
                                              s));
    case ELASTIC_OP_LINEAR:
        return linear(be, node, in, out);
    case ELASTIC_OP_GELU:
        return launched(node, "elastic_cu_gelu", elastic_cu_gelu(dptr(a), y, numel(a), s));
    case ELASTIC_OP_ATTENTION: {
        const elastic_tensor_ref *key_len = optional(node, in, 3);
        int64_t batch = a->shape[0], nq = a->shape[1], nk = in[1].shape[1], d = a->shape[2];
        int heads = node->params.heads, causal = node->params.causal;
        size_t bytes =
            elastic_cu_attention_workspace(batch, nq, nk, d, heads, causal, be->sm_count);
        void *ws;
        ELASTIC_TRY(elastic_cuda_scratch(be, bytes, &ws));
        return launched(node, "elastic_cu_attention",
                        elastic_cu_attention(dptr(a), dptr(&in[1]), dptr(&in[2]),
                                             key_len ? dptr(key_len) : NULL, y, batch, nq, nk, d,
                                             heads, causal, ws, bytes, be->sm_count, s));
    }
    case ELASTIC_OP_ATTENTION_PROBS: {
        const elastic_tensor_ref *key_len = optional(node, in, 2);
        return launched(node, "elastic_cu_attention_probs",
                        elastic_cu_attention_probs(dptr(a), dptr(&in[1]),
                                                   key_len ? dptr(key_len) : NULL, y, a->shape[0],
                                                   a->shape[1], in[1].shape[1], a->shape[2],
                                                   node->params.heads, node->params.causal, s));
    }
    case ELASTIC_OP_ATTENTION_MIX:
        return attention_mix(be, node, in, out);
    case ELASTIC_OP_PKM:
        return launched(node, "elastic_cu_pkm",
                        elastic_cu_pkm(dptr(a), dptr(&in[1]), dptr(&in[2]), y, a->shape[0],
                                       node->params.experts, 2 * in[1].shape[2], in[1].shape[1],
                                       node->params.mem_topk, in[2].shape[1], s));
    case ELASTIC_OP_TOPK: {
        const elastic_tensor_ref *ex = optional(node, in, 1);
        int64_t batch = a->shape[0], items = a->shape[1];
        size_t bytes = ex ? elastic_cu_topk_workspace(batch, items) : 0;
        void *ws;
        ELASTIC_TRY(elastic_cuda_scratch(be, bytes, &ws));
        return launched(node, "elastic_cu_topk",
                        elastic_cu_topk(dptr(a), ex ? dptr(ex) : NULL, ex ? ex->shape[1] : 0,
                                        dptr(&out[0]), dptr(&out[1]), batch, items,
                                        node->params.top_k, ws, bytes, s));
    }
    case ELASTIC_OP_COPY:
        if (elastic_dtype_size(a->dtype) != 4)
            return elastic_error(ELASTIC_ERR_UNSUPPORTED, "copy '%s': element size %zu",
                                 node->name, elastic_dtype_size(a->dtype));
        return launched(node, "elastic_cu_copy",
                        elastic_cu_copy(dptr(a), a->shape, a->strides, a->ndim, dptr(&out[0]), s));
    default: break;
    }
    return elastic_error(ELASTIC_ERR_UNSUPPORTED, "cuda backend: unknown op %d", (int)node->op);
}
