/*
 * elastic_add.cu - ADD: out[i] = a[i] + b[i % nb] (b broadcast over a's
 * leading dims).
 */
#include "elastic_cuda_common.cuh"

namespace {

__global__ void add_kernel(const float *a, const float *b, float *out, int64_t n, int64_t nb)
{
    for (int64_t i = elastic_cu::global_index(); i < n; i += elastic_cu::grid_stride())
        out[i] = a[i] + b[i % nb];
}

} // namespace

extern "C" cudaError_t elastic_cu_add(const float *a, const float *b, float *out, int64_t n,
                                      int64_t nb, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    if (nb <= 0) return cudaErrorInvalidValue;
    add_kernel<<<elastic_cu::grid_for(n), elastic_cu::kThreads, 0, stream>>>(a, b, out, n, nb);
    return cudaGetLastError();
}
