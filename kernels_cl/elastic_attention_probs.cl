/* elastic_attention_probs.cl - the softmax weights of masked multi-head
 * attention as a tensor P [B, heads, nq, nk], one work-item per (batch, head,
 * query) row of P. The row itself holds the logits, then their exponentials:
 * passes for the maximum, the sum and the normalisation, no private arrays.
 * Key j is visible to query i when j < key_len[b] (all keys without key_len)
 * and, when causal, j >= i; other keys get exactly 0, as does a row without
 * a visible key. P can exceed 2^31 elements: every index is a long. */
__kernel void elastic_attention_probs(__global const float *q, ulong q_off,
                                      __global const float *k, ulong k_off,
                                      __global const int *key_len, ulong kl_off, int has_len,
                                      __global float *p, ulong p_off, long batch, long nq,
                                      long nk, long d, int heads, int causal)
{
    long g = get_global_id(0); /* the row of P: ((b * heads + h) * nq + i) */
    if (g >= batch * heads * nq) return;
    long i = g % nq, h = (g / nq) % heads, b = g / (nq * heads);
    long dh = d / heads;
    float scale = 1.0f / sqrt((float)dh);
    long valid = has_len ? clamp((long)key_len[kl_off + b], 0L, nk) : nk;
    long first = causal ? min(i, valid) : 0;
    __global const float *qi = q + q_off + (b * nq + i) * d + h * dh;
    __global const float *kb = k + k_off + b * nk * d + h * dh;
    __global float *row = p + p_off + g * nk;
    for (long j = 0; j < first; j++) row[j] = 0.0f;
    for (long j = valid; j < nk; j++) row[j] = 0.0f;
    if (first >= valid) return;
    float m = -INFINITY;
    for (long j = first; j < valid; j++) {
        __global const float *kj = kb + j * d;
        float s = 0.0f;
        for (long c = 0; c < dh; c++) s = fma(qi[c], kj[c], s);
        s *= scale;
        row[j] = s;
        m = fmax(m, s);
    }
    float l = 0.0f;
    for (long j = first; j < valid; j++) {
        float e = exp(row[j] - m);
        row[j] = e;
        l += e;
    }
    for (long j = first; j < valid; j++) row[j] /= l;
}
