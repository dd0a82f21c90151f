/*
 * elastic_layer_norm.cu - LAYER_NORM over the last axis: one warp per row,
 * mean then biased variance of (x - mean) (two passes over the row, the
 * second from cache), out = (x - mean) / sqrt(var + eps) * weight + bias.
 */
#include "elastic_cuda_common.cuh"

namespace {

constexpr int kWarpsPerBlock = 8;

__global__ void layer_norm_kernel(const float *x, const float *weight, const float *bias,
                                  float *out, int64_t rows, int64_t d, float eps)
{
    int64_t r = (int64_t)blockIdx.x * kWarpsPerBlock + threadIdx.y;
    if (r >= rows) return;
    const float *xr = x + r * d;
    float *yr = out + r * d;
    int lane = threadIdx.x;

    float s = 0.0f;
    for (int64_t j = lane; j < d; j += 32) s += xr[j];
    float mean = elastic_cu::warp_sum(s) / (float)d;

    float v = 0.0f;
    for (int64_t j = lane; j < d; j += 32) {
        float c = xr[j] - mean;
        v += c * c;
    }
    float var = elastic_cu::warp_sum(v) / (float)d;
    float inv = 1.0f / sqrtf(var + eps);

    for (int64_t j = lane; j < d; j += 32) yr[j] = (xr[j] - mean) * inv * weight[j] + bias[j];
}

} // namespace

extern "C" cudaError_t elastic_cu_layer_norm(const float *x, const float *weight,
                                             const float *bias, float *out, int64_t rows,
                                             int64_t d, float eps, cudaStream_t stream)
{
    if (rows <= 0 || d <= 0) return cudaSuccess;
    int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > INT32_MAX) return cudaErrorInvalidValue;
    layer_norm_kernel<<<(unsigned int)blocks, dim3(32, kWarpsPerBlock), 0, stream>>>(
        x, weight, bias, out, rows, d, eps);
    return cudaGetLastError();
}
