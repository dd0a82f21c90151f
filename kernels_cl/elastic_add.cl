/* elastic_add.cl - out[i] = a[i] + b[i % nb] (b broadcast over a's leading dims). */
__kernel void elastic_add(__global const float *a, ulong a_off, __global const float *b,
                          ulong b_off, long nb, __global float *out, ulong out_off, long n)
{
    long i = get_global_id(0);
    if (i < n) out[out_off + i] = a[a_off + i] + b[b_off + i % nb];
}
