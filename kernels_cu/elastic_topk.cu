/*
 * elastic_topk.cu - TOPK: per row of scores [B, I], the K best items (column
 * j is item j+1), skipping the 1-based ids listed in exclude [B, E] (0 =
 * none); NaN ranks below every number, ties go to the smaller id, and places
 * beyond the eligible items get id 0 and -INFINITY.
 *
 * One block per row. Each (score, column) becomes a unique 64-bit key whose
 * unsigned order is the ranking order, so "the K best" is "the K largest
 * keys" and any sort of the keys gives the same answer. The block streams the
 * row through a shared buffer of ELASTIC_CU_TOPK_BUFFER keys: it appends the
 * keys that beat the current K-th best (the order of appending does not
 * matter), sorts the buffer (bitonic, descending) and keeps the first K.
 * Exclusions are first turned into a bitmap of the row in `workspace`.
 */
#include "elastic_cuda_common.cuh"

namespace {

constexpr int kThreads = 1024;
constexpr int kBuffer = ELASTIC_CU_TOPK_BUFFER;

/* The ranking key: the score mapped to an unsigned integer of the same order
 * (NaN lowest, -0 equal to +0) in the high half, and ~column in the low half
 * so that equal scores rank the smaller id first. Never 0 (0 pads the sort). */
__device__ inline unsigned long long make_key(float v, int64_t j)
{
    uint32_t hi = 0; /* NaN */
    if (!isnan(v)) {
        uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
        hi = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    }
    return ((unsigned long long)hi << 32) | (0xffffffffu - (uint32_t)j);
}

__device__ inline int64_t key_column(unsigned long long key)
{
    return (int64_t)(0xffffffffu - (uint32_t)(key & 0xffffffffu));
}

/* Sorts keys[0..n) in descending order; n is a power of two <= kBuffer. */
__device__ void bitonic_sort_desc(unsigned long long *keys, int n)
{
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                int other = i ^ stride;
                if (other <= i) continue;
                unsigned long long a = keys[i], b = keys[other];
                bool descending = (i & size) == 0;
                if (descending ? a < b : a > b) {
                    keys[i] = b;
                    keys[other] = a;
                }
            }
            __syncthreads();
        }
    }
}

__global__ void __launch_bounds__(kThreads)
topk_kernel(const float *scores, const int32_t *exclude, int64_t n_exclude, int32_t *ids,
            float *vals, int64_t items, int64_t k, uint32_t *bitmaps)
{
    __shared__ unsigned long long keys[kBuffer];
    __shared__ int appended;
    const int64_t b = blockIdx.x;
    const float *s = scores + b * items;

    /* Exclusions: a bitmap of this row's columns (integer atomics only). */
    uint32_t *excluded = nullptr;
    if (exclude) {
        const int64_t words = (items + 31) / 32;
        excluded = bitmaps + b * words;
        for (int64_t w = threadIdx.x; w < words; w += blockDim.x) excluded[w] = 0;
        __syncthreads();
        for (int64_t e = threadIdx.x; e < n_exclude; e += blockDim.x) {
            int32_t id = exclude[b * n_exclude + e];
            if (id >= 1 && id <= items)
                atomicOr(&excluded[(id - 1) >> 5], 1u << ((id - 1) & 31));
        }
        __syncthreads();
    }

    int64_t kept = 0;                /* keys[0..kept) are the best so far, sorted */
    unsigned long long threshold = 0; /* a key must beat this to enter (the K-th best) */
    for (int64_t pos = 0; pos < items;) {
        const int64_t room = kBuffer - kept;
        const int64_t tile = items - pos < room ? items - pos : room;
        if (threadIdx.x == 0) appended = 0;
        __syncthreads();
        for (int64_t j = pos + threadIdx.x; j < pos + tile; j += blockDim.x) {
            if (excluded && (excluded[j >> 5] >> (j & 31)) & 1u) continue;
            unsigned long long key = make_key(s[j], j);
            if (key > threshold) keys[kept + atomicAdd(&appended, 1)] = key;
        }
        __syncthreads();
        const int64_t total = kept + appended;
        if (total > kept) {
            int n = 1;
            while (n < total) n <<= 1;
            for (int64_t i = total + threadIdx.x; i < n; i += blockDim.x) keys[i] = 0;
            __syncthreads();
            bitonic_sort_desc(keys, n);
            kept = total < k ? total : k;
            threshold = kept == k ? keys[k - 1] : 0;
        }
        pos += tile;
        __syncthreads(); /* everyone has read `appended` and the threshold */
    }

    for (int64_t r = threadIdx.x; r < k; r += blockDim.x) {
        if (r < kept) {
            const int64_t j = key_column(keys[r]);
            ids[b * k + r] = (int32_t)(j + 1);
            vals[b * k + r] = s[j];
        } else {
            ids[b * k + r] = 0;
            vals[b * k + r] = -INFINITY;
        }
    }
}

} // namespace

extern "C" int elastic_cu_topk_supported(int64_t items, int64_t k)
{
    return items >= 1 && items <= INT32_MAX && k >= 1 &&
           (k <= ELASTIC_CU_TOPK_MAX_K || items <= kBuffer);
}

extern "C" size_t elastic_cu_topk_workspace(int64_t batch, int64_t items)
{
    if (batch <= 0 || items <= 0) return 0;
    return (size_t)(batch * ((items + 31) / 32)) * sizeof(uint32_t);
}

extern "C" cudaError_t elastic_cu_topk(const float *scores, const int32_t *exclude,
                                       int64_t n_exclude, int32_t *ids, float *vals,
                                       int64_t batch, int64_t items, int64_t k, void *workspace,
                                       size_t workspace_size, cudaStream_t stream)
{
    if (!elastic_cu_topk_supported(items, k) || batch > INT32_MAX) return cudaErrorInvalidValue;
    if (batch <= 0) return cudaSuccess;
    if (n_exclude <= 0) exclude = nullptr;
    if (exclude && (!workspace || workspace_size < elastic_cu_topk_workspace(batch, items)))
        return cudaErrorInvalidValue;
    topk_kernel<<<(unsigned int)batch, kThreads, 0, stream>>>(scores, exclude, n_exclude, ids, vals,
                                                             items, k, (uint32_t *)workspace);
    return cudaGetLastError();
}
