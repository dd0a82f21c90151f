/* elastic_bias.cl - out[r, j] += bias[j]: the epilogue of the CLBlast GEMM. */
__kernel void elastic_bias(__global float *out, ulong out_off, __global const float *bias,
                           ulong bias_off, long n, long total)
{
    long i = get_global_id(0);
    if (i < total) out[out_off + i] += bias[bias_off + i % n];
}
