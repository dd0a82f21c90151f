/*
 * elastic_bias.cu - the bias of LINEAR: out[r, j] += bias[j] on the [rows,
 * cols] result that cuBLAS wrote.
 */
#include "elastic_cuda_common.cuh"

namespace {

__global__ void bias_kernel(float *out, const float *bias, int64_t rows, int64_t cols)
{
    int64_t n = rows * cols;
    for (int64_t i = elastic_cu::global_index(); i < n; i += elastic_cu::grid_stride())
        out[i] += bias[i % cols];
}

} // namespace

extern "C" cudaError_t elastic_cu_bias(float *out, const float *bias, int64_t rows, int64_t cols,
                                       cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    bias_kernel<<<elastic_cu::grid_for(rows * cols), elastic_cu::kThreads, 0, stream>>>(
        out, bias, rows, cols);
    return cudaGetLastError();
}
