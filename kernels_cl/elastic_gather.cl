/* elastic_gather.cl - out[i, :] = table[idx[i], :]. The session checks every
 * index before a run; an index outside the table still never reads outside it. */
__kernel void elastic_gather(__global const float *table, ulong table_off, long rows, long d,
                             __global const int *idx, ulong idx_off, __global float *out,
                             ulong out_off, long n)
{
    long g = get_global_id(0);
    if (g >= n * d) return;
    long i = g / d, j = g % d;
    int r = idx[idx_off + i];
    out[out_off + g] = (r >= 0 && r < rows) ? table[table_off + (long)r * d + j] : 0.0f;
}
