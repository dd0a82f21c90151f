/* elastic_attention.cl - masked multi-head attention, one work-item per
 * (batch, query, head), streaming softmax over the keys: no nq x nk buffer.
 * Key j is visible to query i when j < key_len[b] (all keys without key_len)
 * and, when causal, j >= i (recency order). No visible key: zero output. */
__kernel void elastic_attention(__global const float *q, ulong q_off, __global const float *k,
                                ulong k_off, __global const float *v, ulong v_off,
                                __global const int *key_len, ulong kl_off, int has_len,
                                __global float *out, ulong out_off, long batch, long nq, long nk,
                                long d, int heads, int causal)
{
    long g = get_global_id(0);
    if (g >= batch * nq * heads) return;
    int h = (int)(g % heads);
    long i = (g / heads) % nq, b = g / (heads * nq);
    long dh = d / heads;
    float scale = 1.0f / sqrt((float)dh);
    long valid = has_len ? min((long)key_len[kl_off + b], nk) : nk;
    long first = causal ? i : 0;
    __global const float *qi = q + q_off + (b * nq + i) * d + h * dh;
    float acc[ELASTIC_MAX_HEAD];
    for (long c = 0; c < dh; c++) acc[c] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (long j = first; j < valid; j++) {
        __global const float *kj = k + k_off + (b * nk + j) * d + h * dh;
        __global const float *vj = v + v_off + (b * nk + j) * d + h * dh;
        float s = 0.0f;
        for (long c = 0; c < dh; c++) s = fma(qi[c], kj[c], s);
        s *= scale;
        if (s > m) { /* rescale what was accumulated under the old maximum */
            float f = exp(m - s);
            l *= f;
            for (long c = 0; c < dh; c++) acc[c] *= f;
            m = s;
        }
        float p = exp(s - m);
        l += p;
        for (long c = 0; c < dh; c++) acc[c] = fma(p, vj[c], acc[c]);
    }
    __global float *o = out + out_off + (b * nq + i) * d + h * dh;
    for (long c = 0; c < dh; c++) o[c] = l > 0.0f ? acc[c] / l : 0.0f;
}
