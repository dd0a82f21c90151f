/*
 * elastic_attention.cu - ATTENTION: q [B, nq, d], k, v [B, nk, d] -> [B, nq, d]
 * with `heads` heads of size dh = d / heads, scale 1/sqrt(dh). Key j is
 * visible to query i when j < key_len[b] (all keys without key_len) and, if
 * causal, j >= i; a query that sees no key gets a zero row.
 *
 * Online softmax (never an nq x nk matrix): a block holds up to 16 queries of
 * one (user, head), one warp per query, and walks its range of keys in chunks
 * of 32 staged in shared memory. Lane j scores key j of the chunk; the warp
 * then rescales its running (max, sum, accumulator) and adds the chunk, lane c
 * owning output dims c, c+32, ... The three shapes the models produce are all
 * served by this one kernel:
 *   - aggregation, 16 queries over up to tens of thousands of keys: few
 *     blocks, so the key axis is split across blocks (grid z) and a second
 *     kernel merges the partial (max, sum, accumulator) of the splits in a
 *     fixed order (deterministic, no atomics);
 *   - dispatch, n queries over 16 keys: one chunk per block;
 *   - SASRec causal self-attention: a block starts at its first query's key.
 */
#include "elastic_cuda_common.cuh"

#include <math.h>

namespace {

constexpr int kKeys = 32;    /* keys per shared-memory chunk: one per lane */
constexpr int kQueries = 16; /* queries (warps) per block */
constexpr int kPerLane = ELASTIC_CU_ATTENTION_MAX_HEAD / 32; /* output dims per lane */
constexpr int64_t kMinKeysPerSplit = 256;

struct attention_shape {
    int64_t batch, nq, nk, d, dh;
    int heads, causal;
    float scale;            /* 1 / sqrt(dh) */
    int64_t qtiles;         /* blocks of kQueries queries per (user, head) */
    int64_t splits;         /* key ranges, one per grid z */
    int64_t keys_per_split; /* multiple of kKeys */
};

/* How many blocks the key axis is split into: enough blocks to fill the GPU
 * (about 4 per multiprocessor), with at least kMinKeysPerSplit keys each. */
attention_shape plan_attention(int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                               int causal, int sm_count)
{
    attention_shape s;
    s.batch = batch;
    s.nq = nq;
    s.nk = nk;
    s.d = d;
    s.heads = heads;
    s.dh = d / heads;
    s.causal = causal;
    s.scale = (float)(1.0 / sqrt((double)s.dh));
    s.qtiles = (nq + kQueries - 1) / kQueries;
    int64_t blocks = batch * s.qtiles * heads;
    int64_t target = 4 * (int64_t)(sm_count > 0 ? sm_count : 1);
    int64_t splits = blocks > 0 ? (target + blocks - 1) / blocks : 1;
    int64_t most = (nk + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
    if (splits > most) splits = most;
    if (splits > 65535) splits = 65535;
    if (splits < 1) splits = 1;
    int64_t per = (nk + splits - 1) / splits;
    per = (per + kKeys - 1) / kKeys * kKeys;
    if (per < kKeys) per = kKeys;
    s.keys_per_split = per;
    s.splits = (nk + per - 1) / per;
    if (s.splits < 1) s.splits = 1;
    return s;
}

/* Floats of one partial result: max, sum, then dh accumulators. */
__host__ __device__ inline int64_t record_floats(int64_t dh)
{
    return dh + 2;
}

__global__ void __launch_bounds__(32 * kQueries, 2)
attention_kernel(const float *q, const float *k, const float *v, const int32_t *key_len,
                 float *out, float *partial, attention_shape s)
{
    extern __shared__ float smem[];
    const int64_t dh = s.dh;
    float *ks = smem;                  /* [kKeys][dh + 1]: padded, lanes read rows */
    float *vs = ks + kKeys * (dh + 1); /* [kKeys][dh] */
    float *qs = vs + kKeys * dh;       /* [kQueries][dh] */

    const int lane = threadIdx.x, warp = threadIdx.y;
    const int tid = warp * 32 + lane, nthreads = 32 * kQueries;
    const int64_t b = blockIdx.x / s.qtiles, first_query = (blockIdx.x % s.qtiles) * kQueries;
    const int h = blockIdx.y;
    const int64_t split = blockIdx.z;
    const int64_t i = first_query + warp; /* this warp's query */
    const bool active = i < s.nq;

    int64_t valid = s.nk;
    if (key_len) valid = key_len[b] < 0 ? 0 : (key_len[b] < s.nk ? key_len[b] : s.nk);
    int64_t lo = split * s.keys_per_split;
    int64_t hi = lo + s.keys_per_split < valid ? lo + s.keys_per_split : valid;
    if (s.causal && lo < first_query) lo = first_query; /* earlier keys are hidden from all */

    if (active)
        for (int64_t c = lane; c < dh; c += 32)
            qs[warp * dh + c] = q[(b * s.nq + i) * s.d + h * dh + c];

    float m = -INFINITY, l = 0.0f, acc[kPerLane];
#pragma unroll
    for (int r = 0; r < kPerLane; r++) acc[r] = 0.0f;

    for (int64_t c0 = lo; c0 < hi; c0 += kKeys) {
        const int n_c = (int)(hi - c0 < kKeys ? hi - c0 : kKeys);
        __syncthreads(); /* the previous chunk is consumed (and qs is written) */
        for (int e = tid; e < n_c * (int)dh; e += nthreads) { /* at most 32 x 128 */
            int row = e / (int)dh, col = e - row * (int)dh;
            int64_t at = (b * s.nk + c0 + row) * s.d + h * dh + col;
            ks[row * (dh + 1) + col] = k[at];
            vs[row * dh + col] = v[at];
        }
        __syncthreads();
        if (!active) continue;

        const int64_t j = c0 + lane;
        const bool visible = lane < n_c && (!s.causal || j >= i);
        float score = -INFINITY;
        if (visible) {
            float dot = 0.0f;
            for (int64_t c = 0; c < dh; c++) dot += qs[warp * dh + c] * ks[lane * (dh + 1) + c];
            score = dot * s.scale;
        }
        const float chunk_max = elastic_cu::warp_max(score);
        if (chunk_max == -INFINITY) continue; /* nothing visible in this chunk */
        const float m_new = fmaxf(m, chunk_max);
        const float alpha = expf(m - m_new); /* 0 on the first visible chunk */
        const float p = visible ? expf(score - m_new) : 0.0f;
        l = l * alpha + elastic_cu::warp_sum(p);
#pragma unroll
        for (int r = 0; r < kPerLane; r++) acc[r] *= alpha;
        for (int jj = 0; jj < n_c; jj++) {
            const float pj = __shfl_sync(0xffffffffu, p, jj);
#pragma unroll
            for (int r = 0; r < kPerLane; r++) {
                const int64_t c = lane + 32 * r;
                if (c < dh) acc[r] += pj * vs[jj * dh + c];
            }
        }
        m = m_new;
    }
    if (!active) return;

    if (!partial) { /* a single split: the final result */
        float *o = out + (b * s.nq + i) * s.d + h * dh;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int r = 0; r < kPerLane; r++) {
            const int64_t c = lane + 32 * r;
            if (c < dh) o[c] = l > 0.0f ? acc[r] * inv : 0.0f;
        }
        return;
    }
    float *rec = partial + (((split * s.batch + b) * s.nq + i) * s.heads + h) * record_floats(dh);
    if (lane == 0) {
        rec[0] = m;
        rec[1] = l;
    }
#pragma unroll
    for (int r = 0; r < kPerLane; r++) {
        const int64_t c = lane + 32 * r;
        if (c < dh) rec[2 + c] = acc[r];
    }
}

/* Merges the splits' partial results, in split order, into the output. */
__global__ void attention_combine_kernel(const float *partial, float *out, attention_shape s)
{
    const int64_t dh = s.dh, rec = record_floats(dh);
    const int64_t per_split = s.batch * s.nq * s.heads; /* records in one split */
    const int64_t n = per_split * dh;
    for (int64_t e = elastic_cu::global_index(); e < n; e += elastic_cu::grid_stride()) {
        const int64_t r = e / dh, c = e - r * dh; /* r = (b * nq + i) * heads + h */
        float m = -INFINITY;
        for (int64_t sp = 0; sp < s.splits; sp++) m = fmaxf(m, partial[(sp * per_split + r) * rec]);
        float l = 0.0f, acc = 0.0f;
        if (m != -INFINITY) {
            for (int64_t sp = 0; sp < s.splits; sp++) {
                const float *p = partial + (sp * per_split + r) * rec;
                if (p[1] == 0.0f) continue; /* no visible key in this split */
                const float w = expf(p[0] - m);
                l += p[1] * w;
                acc += p[2 + c] * w;
            }
        }
        /* r * dh + c is exactly the output element: rows of d = heads * dh. */
        out[e] = l > 0.0f ? acc / l : 0.0f;
    }
}

size_t shared_bytes(int64_t dh)
{
    return (size_t)(kKeys * (dh + 1) + kKeys * dh + kQueries * dh) * sizeof(float);
}

} // namespace

extern "C" size_t elastic_cu_attention_workspace(int64_t batch, int64_t nq, int64_t nk, int64_t d,
                                                 int heads, int causal, int sm_count)
{
    if (batch <= 0 || nq <= 0 || nk <= 0 || heads <= 0) return 0;
    attention_shape s = plan_attention(batch, nq, nk, d, heads, causal, sm_count);
    if (s.splits == 1) return 0;
    return (size_t)(s.splits * batch * nq * heads * record_floats(s.dh)) * sizeof(float);
}

extern "C" cudaError_t elastic_cu_attention(const float *q, const float *k, const float *v,
                                            const int32_t *key_len, float *out, int64_t batch,
                                            int64_t nq, int64_t nk, int64_t d, int heads,
                                            int causal, void *workspace, size_t workspace_size,
                                            int sm_count, cudaStream_t stream)
{
    if (heads <= 0 || d % heads || d / heads > ELASTIC_CU_ATTENTION_MAX_HEAD)
        return cudaErrorInvalidValue;
    if (batch <= 0 || nq <= 0 || d <= 0) return cudaSuccess;
    if (nk <= 0) /* no keys at all: every query gets a zero row */
        return cudaMemsetAsync(out, 0, (size_t)(batch * nq * d) * sizeof(float), stream);

    attention_shape s = plan_attention(batch, nq, nk, d, heads, causal, sm_count);
    if (batch * s.qtiles > INT32_MAX) return cudaErrorInvalidValue;
    size_t need = elastic_cu_attention_workspace(batch, nq, nk, d, heads, causal, sm_count);
    if (need > 0 && (!workspace || workspace_size < need)) return cudaErrorInvalidValue;

    float *partial = need > 0 ? (float *)workspace : nullptr;
    dim3 grid((unsigned int)(batch * s.qtiles), (unsigned int)heads, (unsigned int)s.splits);
    dim3 block(32, kQueries);
    attention_kernel<<<grid, block, shared_bytes(s.dh), stream>>>(q, k, v, key_len, out, partial,
                                                                 s);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess || !partial) return err;
    int64_t n = batch * nq * d;
    attention_combine_kernel<<<elastic_cu::grid_for(n), elastic_cu::kThreads, 0, stream>>>(
        partial, out, s);
    return cudaGetLastError();
}
