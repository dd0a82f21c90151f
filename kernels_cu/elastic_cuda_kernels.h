/*
 * elastic_cuda_kernels.h - the CUDA kernels of the CUDA backend, as plain C
 * launchers (one .cu file per routine in kernels_cu/).
 *
 * Every launcher enqueues its work on `stream` and returns the status of the
 * launch (cudaGetLastError() after it); it never synchronizes. Pointers are
 * device pointers to contiguous row-major float32 / int32 data, aligned to 4
 * bytes only (weights may sit anywhere in the parameter block), so no kernel
 * uses vector loads. Sizes of zero are accepted and launch nothing. The
 * semantics are those of backends/cpu/cpu_kernels.h; results are
 * deterministic (fixed reduction orders, no floating-point atomics).
 */
#ifndef ELASTIC_CUDA_KERNELS_H
#define ELASTIC_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out[i,:] = table[idx[i],:] for i < n, rows of d floats. An index outside
 * 0..rows-1 gives a zero row and lowers *bad (initialised by the caller to
 * ~0ULL) to ((uint64)i << 32 | (uint32)idx[i]) for the smallest such i. */
cudaError_t elastic_cu_gather(const float *table, int64_t rows, int64_t d, const int32_t *idx,
                              int64_t n, float *out, unsigned long long *bad,
                              cudaStream_t stream);

/* out[i] = a[i] + b[i % nb], i < n (out may equal a). */
cudaError_t elastic_cu_add(const float *a, const float *b, float *out, int64_t n, int64_t nb,
                           cudaStream_t stream);

/* out[r,j] += bias[j] for a [rows, cols] matrix (the LINEAR bias). */
cudaError_t elastic_cu_bias(float *out, const float *bias, int64_t rows, int64_t cols,
                            cudaStream_t stream);

/* x [batch, n, d], len [batch] -> out [batch, d]: mean of rows r < min(len, n). */
cudaError_t elastic_cu_masked_mean(const float *x, const int32_t *len, float *out, int64_t batch,
                                   int64_t n, int64_t d, cudaStream_t stream);

cudaError_t elastic_cu_layer_norm(const float *x, const float *weight, const float *bias,
                                  float *out, int64_t rows, int64_t d, float eps,
                                  cudaStream_t stream);

/* Exact (erf) GELU, elementwise. */
cudaError_t elastic_cu_gelu(const float *x, float *out, int64_t n, cudaStream_t stream);

/* Multi-head attention with an online softmax, the key axis split across
 * blocks when there are few queries. Head size d/heads must be at most
 * ELASTIC_CU_ATTENTION_MAX_HEAD. `workspace` (device memory of at least
 * elastic_cu_attention_workspace() bytes, may be NULL when that is 0) holds
 * the partial results of the key splits. `sm_count` (the device's
 * multiprocessors) only sets how many splits are used. */
#define ELASTIC_CU_ATTENTION_MAX_HEAD 128
size_t elastic_cu_attention_workspace(int64_t batch, int64_t nq, int64_t nk, int64_t d,
                                      int heads, int causal, int sm_count);
cudaError_t elastic_cu_attention(const float *q, const float *k, const float *v,
                                 const int32_t *key_len, float *out, int64_t batch, int64_t nq,
                                 int64_t nk, int64_t d, int heads, int causal, void *workspace,
                                 size_t workspace_size, int sm_count, cudaStream_t stream);

/* The softmax weights of ATTENTION as a tensor: q [batch, nq, d],
 * k [batch, nk, d], key_len [batch] or NULL -> p [batch, heads, nq, nk],
 * exactly 0 for hidden keys and all 0 in the row of a query that sees no key.
 * Any head size; one block per row of p. (ATTENTION_MIX, p times v, is a
 * cuBLAS GEMM: see cuda_ops.c.) */
cudaError_t elastic_cu_attention_probs(const float *q, const float *k, const int32_t *key_len,
                                       float *p, int64_t batch, int64_t nq, int64_t nk, int64_t d,
                                       int heads, int causal, cudaStream_t stream);

/* Product-key memory: query [batch, experts*c], subkeys [2, m, c/2],
 * values [m*m, d] -> out [batch, experts, d]; one block per (user, expert).
 * elastic_cu_pkm_supported() says whether (c, m, t) fit in shared memory. */
int elastic_cu_pkm_supported(int64_t c, int64_t m, int64_t t);
cudaError_t elastic_cu_pkm(const float *query, const float *subkeys, const float *values,
                           float *out, int64_t batch, int64_t experts, int64_t c, int64_t m,
                           int64_t t, int64_t d, cudaStream_t stream);

/* Top-K per row: scores [batch, items], exclude [batch, n_exclude] (1-based
 * ids, 0 = none) or NULL -> ids [batch, k], vals [batch, k]. `workspace`
 * (at least elastic_cu_topk_workspace() bytes) holds the exclusion bitmaps.
 * Supported when k <= ELASTIC_CU_TOPK_MAX_K or the whole row fits the
 * block's buffer (items <= ELASTIC_CU_TOPK_BUFFER). */
#define ELASTIC_CU_TOPK_BUFFER 4096
#define ELASTIC_CU_TOPK_MAX_K 2048
int elastic_cu_topk_supported(int64_t items, int64_t k);
size_t elastic_cu_topk_workspace(int64_t batch, int64_t items);
cudaError_t elastic_cu_topk(const float *scores, const int32_t *exclude, int64_t n_exclude,
                            int32_t *ids, float *vals, int64_t batch, int64_t items, int64_t k,
                            void *workspace, size_t workspace_size, cudaStream_t stream);

/* Strided copy of 4-byte elements: a view of up to 4 dims (shape and strides
 * in elements, leading dims first) into a contiguous destination. */
cudaError_t elastic_cu_copy(const uint32_t *src, const int64_t *shape, const int64_t *strides,
                            int ndim, uint32_t *dst, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
