/* elastic_copy.cl - a strided view (up to 4 dims, padded in front with size-1
 * dims) into a contiguous tensor. */
__kernel void elastic_copy(__global const float *src, ulong src_off, long s0, long s1, long s2,
                           long s3, long t0, long t1, long t2, long t3, __global float *out,
                           ulong out_off)
{
    long g = get_global_id(0);
    if (g >= s0 * s1 * s2 * s3) return;
    long i3 = g % s3, i2 = (g / s3) % s2, i1 = (g / (s3 * s2)) % s1, i0 = g / (s3 * s2 * s1);
    out[out_off + g] = src[src_off + i0 * t0 + i1 * t1 + i2 * t2 + i3 * t3];
}
