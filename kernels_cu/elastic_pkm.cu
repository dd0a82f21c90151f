/*
 * elastic_pkm.cu - PKM, the product-key interest memory (spec section 3,
 * step 2): query [B, experts*c], subkeys [2, m, c/2], values [m*m, d] ->
 * out [B, experts, d].
 *
 * One block per (user, expert). The block scores the m sub-keys of each half,
 * keeps the t best of each (A, B), scores the t*t pairs (x, y) in A x B as
 * sa[x] + sb[y], keeps the t best pairs and returns the softmax-weighted sum
 * of their value rows (slot x*m + y). Every top-t is selected by rank: an
 * element's rank is the number of elements that come before it, so the
 * result does not depend on thread timing. Order: larger score first, ties
 * by the smaller index (for pairs, the smaller slot); a NaN score (only
 * possible with NaN weights) ranks last so the ranks stay a permutation.
 */
#include "elastic_cuda_common.cuh"

namespace {

constexpr int kThreads = 128;
constexpr size_t kMaxShared = 48 * 1024;

/* Score vy of element y comes before score vx of element x. */
__device__ inline bool before(float vy, int64_t y, float vx, int64_t x)
{
    bool ny = isnan(vy), nx = isnan(vx);
    if (ny != nx) return nx;
    if (!ny && vy != vx) return vy > vx;
    return y < x;
}

/* sel[r] = the element of rank r among s[0..n-1], for ranks r < t. `id`
 * gives each element's tie-breaking index (NULL: its position). */
__device__ void select_top(const float *s, const int *id, int64_t n, int64_t t, int *sel)
{
    for (int64_t x = threadIdx.x; x < n; x += blockDim.x) {
        int64_t ix = id ? id[x] : x, rank = 0;
        for (int64_t y = 0; y < n && rank < t; y++)
            rank += before(s[y], id ? id[y] : y, s[x], ix);
        if (rank < t) sel[rank] = (int)x;
    }
}

struct pkm_layout {
    size_t qs, sa, sb, pair, w, a, b, slot, best, bytes; /* offsets in floats/ints */
};

/* Shared memory: q row [c], sa, sb [m], pair scores [t*t], weights [t] as
 * floats; A, B [t], pair slots [t*t], best pairs [t] as ints. */
__host__ __device__ inline pkm_layout layout(int64_t c, int64_t m, int64_t t)
{
    pkm_layout l;
    l.qs = 0;
    l.sa = l.qs + c;
    l.sb = l.sa + m;
    l.pair = l.sb + m;
    l.w = l.pair + t * t;
    l.a = l.w + t;
    l.b = l.a + t;
    l.slot = l.b + t;
    l.best = l.slot + t * t;
    l.bytes = (l.best + t) * 4;
    return l;
}

__global__ void __launch_bounds__(kThreads)
pkm_kernel(const float *query, const float *subkeys, const float *values, float *out,
           int64_t c, int64_t m, int64_t t, int64_t d)
{
    extern __shared__ float smem[];
    const pkm_layout L = layout(c, m, t);
    float *qs = smem + L.qs, *sa = smem + L.sa, *sb = smem + L.sb, *pair = smem + L.pair,
          *w = smem + L.w;
    int *ints = (int *)smem;
    int *A = ints + L.a, *B = ints + L.b, *slot = ints + L.slot, *best = ints + L.best;
    const int64_t be = blockIdx.x, half = c / 2; /* be = user * experts + expert */

    for (int64_t p = threadIdx.x; p < c; p += blockDim.x) qs[p] = query[be * c + p];
    __syncthreads();
    for (int64_t x = threadIdx.x; x < m; x += blockDim.x) {
        float s0 = 0.0f, s1 = 0.0f;
        for (int64_t p = 0; p < half; p++) {
            s0 += qs[p] * subkeys[x * half + p];
            s1 += qs[half + p] * subkeys[(m + x) * half + p];
        }
        sa[x] = s0;
        sb[x] = s1;
    }
    __syncthreads();
    select_top(sa, nullptr, m, t, A);
    select_top(sb, nullptr, m, t, B);
    __syncthreads();
    for (int64_t p = threadIdx.x; p < t * t; p += blockDim.x) {
        int x = A[p / t], y = B[p % t];
        pair[p] = sa[x] + sb[y];
        slot[p] = (int)(x * m + y);
    }
    __syncthreads();
    select_top(pair, slot, t * t, t, best);
    __syncthreads();
    if (threadIdx.x == 0) {
        const float top = pair[best[0]];
        float sum = 0.0f;
        for (int64_t r = 0; r < t; r++) {
            w[r] = expf(pair[best[r]] - top);
            sum += w[r];
        }
        for (int64_t r = 0; r < t; r++) w[r] /= sum;
    }
    __syncthreads();
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
        float acc = 0.0f;
        for (int64_t r = 0; r < t; r++) acc += w[r] * values[(int64_t)slot[best[r]] * d + j];
        out[be * d + j] = acc;
    }
}

} // namespace

extern "C" int elastic_cu_pkm_supported(int64_t c, int64_t m, int64_t t)
{
    return c >= 2 && c % 2 == 0 && m >= 1 && t >= 1 && t <= m && m <= 46340 &&
           layout(c, m, t).bytes <= kMaxShared;
}

extern "C" cudaError_t elastic_cu_pkm(const float *query, const float *subkeys,
                                      const float *values, float *out, int64_t batch,
                                      int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d,
                                      cudaStream_t stream)
{
    if (!elastic_cu_pkm_supported(c, m, t)) return cudaErrorInvalidValue;
    if (batch <= 0 || experts <= 0 || d <= 0) return cudaSuccess;
    if (batch * experts > INT32_MAX) return cudaErrorInvalidValue;
    pkm_kernel<<<(unsigned int)(batch * experts), kThreads, layout(c, m, t).bytes, stream>>>(
        query, subkeys, values, out, c, m, t, d);
    return cudaGetLastError();
}
