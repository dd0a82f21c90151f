/* elastic_masked_mean.cl - out[b, j] = mean of x[b, r, j] over r < len[b]. */
__kernel void elastic_masked_mean(__global const float *x, ulong x_off, __global const int *len,
                                  ulong len_off, __global float *out, ulong out_off, long batch,
                                  long n, long d)
{
    long g = get_global_id(0);
    if (g >= batch * d) return;
    long b = g / d, j = g % d;
    long rows = min((long)len[len_off + b], n);
    acc_t s = 0;
    for (long r = 0; r < rows; r++) s += x[x_off + (b * n + r) * d + j];
    out[out_off + g] = rows > 0 ? (float)(s / (acc_t)rows) : 0.0f;
}
