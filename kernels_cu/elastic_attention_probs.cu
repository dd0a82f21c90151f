/*
 * elastic_attention_probs.cu - ATTENTION_PROBS: q [B, nq, d], k [B, nk, d],
 * key_len [B] or none -> P [B, heads, nq, nk], the softmax weights of
 * ATTENTION: heads of size dh = d / heads, scale 1/sqrt(dh); key j is
 * visible to query i when j < key_len[b] (all keys without key_len) and, if
 * causal, j >= i. Hidden keys get exactly 0, as does every key of a query
 * that sees none. (ATTENTION_MIX, P times v, is a cuBLAS strided-batched
 * GEMM in cuda_ops.c.)
 *
 * One block per row of P (a grid-stride loop over the rows, so any number of
 * rows fits the grid), the row itself as the scratch of its logits:
 *   1. zeros into the hidden keys, the query's head columns into shared
 *      memory (read from global memory when the head is too wide);
 *   2. one warp per visible key (coalesced along the head's columns, a warp
 *      sum), the scaled logit into the row, a running maximum per warp;
 *   3. the block's maximum, then exp(logit - max) into the row and the
 *      block's sum, then the division. Every reduction has a fixed order, so
 *      results are reproducible.
 * P may exceed 2^31 elements (B = 8, heads = 2, n = 8192 is 2^30): every
 * index is 64-bit.
 */
#include "elastic_cuda_common.cuh"

#include <math.h>

namespace {

constexpr int kWarps = 8;                /* warps per block */
constexpr int kBlock = 32 * kWarps;      /* threads per block */
constexpr int64_t kMaxSharedHead = 4096; /* widest head staged in shared memory */
constexpr int64_t kMaxBlocks = 65536;    /* grid size cap; blocks loop over rows */

__global__ void __launch_bounds__(kBlock)
attention_probs_kernel(const float *q, const float *k, const int32_t *key_len, float *p,
                       int64_t rows, int64_t nq, int64_t nk, int64_t d, int64_t dh, int64_t heads,
                       int causal, float scale)
{
    extern __shared__ float qs[]; /* [dh] when staged */
    __shared__ float part_max[kWarps]; /* one per warp */
    __shared__ float part_sum[kWarps];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const bool staged = dh <= kMaxSharedHead;

    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        /* r = (b * heads + h) * nq + i */
        const int64_t i = r % nq, bh = r / nq;
        const int64_t h = bh % heads, b = bh / heads;
        int64_t valid = nk;
        if (key_len) {
            const int64_t len = key_len[b];
            valid = len < 0 ? 0 : (len < nk ? len : nk);
        }
        const int64_t first = causal ? (i < valid ? i : valid) : 0; /* first <= valid */
        const float *qi = q + (b * nq + i) * d + h * dh;
        const float *kb = k + b * nk * d + h * dh;
        float *row = p + r * nk;

        __syncthreads(); /* the previous row is done with qs and the reductions */
        for (int64_t j = tid; j < first; j += kBlock) row[j] = 0.0f;
        for (int64_t j = valid + tid; j < nk; j += kBlock) row[j] = 0.0f;
        if (first >= valid) continue; /* no visible key (the same for the whole block) */

        if (staged)
            for (int64_t c = tid; c < dh; c += kBlock) qs[c] = qi[c];
        __syncthreads();
        const float *qv = staged ? qs : qi;

        /* Logits, one warp per key; every lane gets the warp's sum. */
        float m = -INFINITY;
        for (int64_t j = first + warp; j < valid; j += kWarps) {
            const float *kj = kb + j * d;
            float dot = 0.0f;
            for (int64_t c = lane; c < dh; c += 32) dot = fmaf(qv[c], kj[c], dot);
            const float s = elastic_cu::warp_sum(dot) * scale;
            if (lane == 0) row[j] = s;
            m = fmaxf(m, s);
        }
        if (lane == 0) part_max[warp] = m;
        __syncthreads(); /* also makes the logits in the row visible to the block */
        m = part_max[0];
        for (int w = 1; w < kWarps; w++) m = fmaxf(m, part_max[w]);

        /* Exponentials and their sum, then the weights: in this pass and the
         * last each thread covers the same keys (no barrier in between). */
        float l = 0.0f;
        for (int64_t j = first + tid; j < valid; j += kBlock) {
            const float e = expf(row[j] - m);
            row[j] = e;
            l += e;
        }
        l = elastic_cu::warp_sum(l);
        if (lane == 0) part_sum[warp] = l;
        __syncthreads();
        l = part_sum[0];
        for (int w = 1; w < kWarps; w++) l += part_sum[w];

        for (int64_t j = first + tid; j < valid; j += kBlock) row[j] = row[j] / l;
    }
}

} // namespace

extern "C" cudaError_t elastic_cu_attention_probs(const float *q, const float *k,
                                                  const int32_t *key_len, float *p, int64_t batch,
                                                  int64_t nq, int64_t nk, int64_t d, int heads,
                                                  int causal, cudaStream_t stream)
{
    if (heads <= 0 || d < 0 || d % heads) return cudaErrorInvalidValue;
    if (batch <= 0 || nq <= 0 || nk <= 0) return cudaSuccess; /* P is empty */
    const int64_t dh = d / heads, rows = batch * heads * nq;
    /* dh = 0: every logit is 0 (as the CPU kernels compute it), uniform weights */
    const float scale = dh > 0 ? (float)(1.0 / sqrt((double)dh)) : 0.0f;
    const size_t shared = dh <= kMaxSharedHead ? (size_t)dh * sizeof(float) : 0;
    const unsigned int blocks = (unsigned int)(rows < kMaxBlocks ? rows : kMaxBlocks);
    attention_probs_kernel<<<blocks, kBlock, shared, stream>>>(q, k, key_len, p, rows, nq, nk, d,
                                                               dh, heads, causal, scale);
    return cudaGetLastError();
}
