/* elastic_layer_norm.cl - LN over the last axis, biased variance, one
 * work-item per row (two passes: mean, then variance of the deviations). */
__kernel void elastic_layer_norm(__global const float *x, ulong x_off, __global const float *w,
                                 ulong w_off, __global const float *bias, ulong b_off,
                                 __global float *out, ulong out_off, long rows, long d, float eps)
{
    long r = get_global_id(0);
    if (r >= rows) return;
    __global const float *xr = x + x_off + r * d;
    float mean = 0.0f, var = 0.0f;
    for (long j = 0; j < d; j++) mean += xr[j];
    mean /= (float)d;
    for (long j = 0; j < d; j++) var += (xr[j] - mean) * (xr[j] - mean);
    var /= (float)d;
    float inv = 1.0f / sqrt(var + eps);
    for (long j = 0; j < d; j++)
        out[out_off + r * d + j] = (xr[j] - mean) * inv * w[w_off + j] + bias[b_off + j];
}
