/*
 * elastic_gelu.cu - exact GELU, 0.5 z (1 + erf(z / sqrt 2)), written as
 * 0.5 z erfc(-z / sqrt 2) so that large negative z keeps its small result
 * instead of cancelling to zero.
 */
#include "elastic_cuda_common.cuh"

namespace {

__global__ void gelu_kernel(const float *x, float *out, int64_t n)
{
    const float rsqrt2 = 0.70710678118654752440f;
    for (int64_t i = elastic_cu::global_index(); i < n; i += elastic_cu::grid_stride()) {
        float z = x[i];
        out[i] = 0.5f * z * erfcf(-z * rsqrt2);
    }
}

} // namespace

extern "C" cudaError_t elastic_cu_gelu(const float *x, float *out, int64_t n, cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    gelu_kernel<<<elastic_cu::grid_for(n), elastic_cu::kThreads, 0, stream>>>(x, out, n);
    return cudaGetLastError();
}
