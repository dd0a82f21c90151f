/* elastic_attention_mix.cl - the second step of two-step attention: out
 * [B, nq, d] from the weights P [B, heads, nq, nk] and v [B, nk, d], one
 * work-item per output element (b, i, col): the sum over all nk keys of
 * P[b, col / dh, i, j] * v[b, j, col]. Neighbouring work-items share the P
 * row and read neighbouring columns of v. Every index is a long. */
__kernel void elastic_attention_mix(__global const float *p, ulong p_off,
                                    __global const float *v, ulong v_off,
                                    __global float *out, ulong out_off, long batch, long heads,
                                    long nq, long nk, long d)
{
    long g = get_global_id(0); /* the output element: (b * nq + i) * d + col */
    if (g >= batch * nq * d) return;
    long col = g % d, i = (g / d) % nq, b = g / (d * nq);
    long h = col / (d / heads);
    __global const float *row = p + p_off + ((b * heads + h) * nq + i) * nk;
    __global const float *vc = v + v_off + b * nk * d + col;
    float acc = 0.0f;
    for (long j = 0; j < nk; j++) acc = fma(row[j], vc[j * d], acc);
    out[out_off + g] = acc;
}
