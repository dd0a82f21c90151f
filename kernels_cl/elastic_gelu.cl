/* elastic_gelu.cl - exact GELU, 0.5 z (1 + erf(z / sqrt 2)), written with
 * erfc so that it keeps its accuracy for very negative z. */
__kernel void elastic_gelu(__global const float *x, ulong x_off, __global float *out,
                           ulong out_off, long n)
{
    long i = get_global_id(0);
    if (i >= n) return;
    float z = x[x_off + i];
    out[out_off + i] = 0.5f * z * erfc(-z * M_SQRT1_2_F);
}
