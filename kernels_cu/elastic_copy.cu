/*
 * elastic_copy.cu - COPY: any strided view of up to 4 dims (4-byte elements)
 * into a contiguous tensor. One thread per destination element; the source
 * address comes from the element's coordinates.
 */
#include "elastic_cuda_common.cuh"

namespace {

struct view4 {
    int64_t shape[4];   /* leading dims padded with 1 */
    int64_t strides[4]; /* elements; 0 for padded dims */
};

__global__ void copy_kernel(const uint32_t *src, view4 v, int64_t n, uint32_t *dst)
{
    for (int64_t e = elastic_cu::global_index(); e < n; e += elastic_cu::grid_stride()) {
        int64_t rest = e, off = 0;
        for (int a = 3; a >= 0; a--) {
            int64_t c = rest % v.shape[a];
            rest /= v.shape[a];
            off += c * v.strides[a];
        }
        dst[e] = src[off];
    }
}

} // namespace

extern "C" cudaError_t elastic_cu_copy(const uint32_t *src, const int64_t *shape,
                                       const int64_t *strides, int ndim, uint32_t *dst,
                                       cudaStream_t stream)
{
    if (ndim < 0 || ndim > 4) return cudaErrorInvalidValue;
    view4 v;
    int64_t n = 1;
    for (int a = 0; a < 4; a++) {
        int s = a - (4 - ndim); /* source dim, or < 0 for a padded one */
        v.shape[a] = s >= 0 ? shape[s] : 1;
        v.strides[a] = s >= 0 ? strides[s] : 0;
        n *= v.shape[a];
    }
    if (n <= 0) return cudaSuccess;
    copy_kernel<<<elastic_cu::grid_for(n), elastic_cu::kThreads, 0, stream>>>(src, v, n, dst);
    return cudaGetLastError();
}
