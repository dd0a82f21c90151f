/*
 * elastic_masked_mean.cu - MASKED_MEAN: x [B, n, d], len [B] -> [B, d], the
 * mean of rows r < min(len[b], n) (zero when there are none).
 *
 * A block covers 32 columns of one user; its 16 rows of threads sum strided
 * subsets of the rows (coalesced across the columns), then the 16 partial
 * sums are added in a fixed order. Long histories (n in the tens of
 * thousands) thus spread over 512 threads instead of one per column.
 */
#include "elastic_cuda_common.cuh"

namespace {

constexpr int kCols = 32;
constexpr int kRowGroups = 16;

__global__ void masked_mean_kernel(const float *x, const int32_t *len, float *out, int64_t n,
                                   int64_t d, int64_t col_tiles)
{
    __shared__ float partial[kRowGroups][kCols + 1];
    int64_t b = blockIdx.x / col_tiles;
    int64_t j = (blockIdx.x % col_tiles) * kCols + threadIdx.x;
    int64_t rows = len[b] < n ? len[b] : n;
    float s = 0.0f;
    if (j < d)
        for (int64_t r = threadIdx.y; r < rows; r += kRowGroups) s += x[(b * n + r) * d + j];
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < d) {
        float total = 0.0f;
        for (int g = 0; g < kRowGroups; g++) total += partial[g][threadIdx.x];
        out[b * d + j] = rows > 0 ? total / (float)rows : 0.0f;
    }
}

} // namespace

extern "C" cudaError_t elastic_cu_masked_mean(const float *x, const int32_t *len, float *out,
                                              int64_t batch, int64_t n, int64_t d,
                                              cudaStream_t stream)
{
    if (batch <= 0 || d <= 0) return cudaSuccess;
    int64_t col_tiles = (d + kCols - 1) / kCols;
    if (batch * col_tiles > INT32_MAX) return cudaErrorInvalidValue;
    masked_mean_kernel<<<(unsigned int)(batch * col_tiles), dim3(kCols, kRowGroups), 0, stream>>>(
        x, len, out, n, d, col_tiles);
    return cudaGetLastError();
}
