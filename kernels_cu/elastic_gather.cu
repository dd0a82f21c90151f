/*
 * elastic_gather.cu - GATHER: out[i, :] = table[idx[i], :]. Indices are
 * checked on the device: a bad one gives a zero row and is reported through
 * *bad (the smallest position wins, so the report is deterministic); the
 * backend reads it back when it synchronizes.
 */
#include "elastic_cuda_common.cuh"

namespace {

__global__ void gather_kernel(const float *table, int64_t rows, int64_t d, const int32_t *idx,
                              int64_t n, float *out, unsigned long long *bad)
{
    int64_t total = n * d;
    for (int64_t e = elastic_cu::global_index(); e < total; e += elastic_cu::grid_stride()) {
        int64_t i = e / d, j = e - i * d;
        int32_t r = idx[i];
        if (r >= 0 && r < rows) {
            out[e] = table[(int64_t)r * d + j];
        } else {
            out[e] = 0.0f;
            if (j == 0)
                atomicMin(bad, ((unsigned long long)i << 32) | (unsigned long long)(uint32_t)r);
        }
    }
}

} // namespace

extern "C" cudaError_t elastic_cu_gather(const float *table, int64_t rows, int64_t d,
                                         const int32_t *idx, int64_t n, float *out,
                                         unsigned long long *bad, cudaStream_t stream)
{
    if (n <= 0 || d <= 0) return cudaSuccess;
    gather_kernel<<<elastic_cu::grid_for(n * d), elastic_cu::kThreads, 0, stream>>>(
        table, rows, d, idx, n, out, bad);
    return cudaGetLastError();
}
