/* elastic_topk.cl - the K best items of each row of scores (column j is item
 * j+1), leaving out the ids listed in exclude (0 = none); NaN ranks below
 * every number, ties by the smaller id; missing places are id 0 and -inf.
 * One work-item per row; `mark` is scratch of one byte per (row, item). The
 * r-th item is the best of those ranking after the (r-1)-th, so nothing but
 * the exclusions needs marking. */
static int elastic_topk_before(float va, long a, float vb, long b)
{
    if (isnan(va) != isnan(vb)) return isnan(vb);
    if (!isnan(va) && va != vb) return va > vb;
    return a < b;
}

__kernel void elastic_topk(__global const float *scores, ulong s_off, __global const int *exclude,
                           ulong e_off, long n_exclude, __global int *ids, ulong ids_off,
                           __global float *vals, ulong vals_off, __global uchar *mark,
                           long batch, long items, long k)
{
    long b = get_global_id(0);
    if (b >= batch) return;
    __global const float *s = scores + s_off + b * items;
    __global uchar *mk = mark + b * items;
    for (long j = 0; j < items; j++) mk[j] = 0;
    for (long e = 0; e < n_exclude; e++) {
        int id = exclude[e_off + b * n_exclude + e];
        if (id >= 1 && id <= items) mk[id - 1] = 1;
    }
    long prev = -1;
    for (long r = 0; r < k; r++) {
        long best = -1;
        for (long j = 0; j < items; j++) {
            if (mk[j]) continue;
            if (prev >= 0 && !elastic_topk_before(s[prev], prev, s[j], j)) continue;
            if (best < 0 || elastic_topk_before(s[j], j, s[best], best)) best = j;
        }
        ids[ids_off + b * k + r] = best < 0 ? 0 : (int)(best + 1);
        vals[vals_off + b * k + r] = best < 0 ? -INFINITY : s[best];
        if (best >= 0) prev = best;
    }
}
