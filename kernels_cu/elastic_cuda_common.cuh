/*
 * elastic_cuda_common.cuh - small helpers shared by the CUDA kernels (launch
 * sizes, warp reductions). Device code only; included by the .cu files.
 */
#ifndef ELASTIC_CUDA_COMMON_CUH
#define ELASTIC_CUDA_COMMON_CUH

#include <stdint.h>

#include "elastic_cuda_kernels.h"

namespace elastic_cu {

/* Threads per block of the elementwise kernels. */
constexpr int kThreads = 256;

/* Blocks for a grid-stride loop over n elements: enough to fill any current
 * GPU, never more than needed. */
inline unsigned int grid_for(int64_t n, int threads = kThreads)
{
    int64_t blocks = (n + threads - 1) / threads;
    const int64_t cap = 65536;
    return (unsigned int)(blocks < cap ? blocks : cap);
}

/* Index of this thread in a 1-D grid, and the grid's stride, in 64 bits. */
__device__ inline int64_t global_index()
{
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ inline int64_t grid_stride()
{
    return (int64_t)gridDim.x * blockDim.x;
}

/* Butterfly reductions over a full warp: every lane gets the result, and the
 * order of the operations is fixed, so results are reproducible. */
__device__ inline float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

} // namespace elastic_cu

#endif
