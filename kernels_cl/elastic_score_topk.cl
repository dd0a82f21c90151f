/* elastic_score_topk.cl - each user's K best items by score user . item
 * (spec steps 5-6: NaN ranks below every number, ties by the smaller id,
 * missing places id 0 and -inf) without the [B, I] scores: one work-item per
 * user streams over the items, or over its candidates (0 and ids outside
 * 1..I ignored, a repeated id counted once), keeping a bounded heap of the K
 * best in its own rows of ids and vals, the worst kept at the root. An
 * exclusion is searched in the user's list only when a score would enter.
 * Each score is an FMA chain over the d terms in order. */
static int elastic_sk_before(float va, int a, float vb, int b)
{
    if (isnan(va) != isnan(vb)) return isnan(vb);
    if (!isnan(va) && va != vb) return va > vb;
    return a < b;
}

static void elastic_sk_swap(__global int *ids, __global float *vals, long i, long j)
{
    int ti = ids[i];
    float tv = vals[i];
    ids[i] = ids[j];
    vals[i] = vals[j];
    ids[j] = ti;
    vals[j] = tv;
}

static void elastic_sk_sift_down(__global int *ids, __global float *vals, long n, long i)
{
    for (;;) {
        long c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && elastic_sk_before(vals[c], ids[c], vals[c + 1], ids[c + 1])) c++;
        if (!elastic_sk_before(vals[i], ids[i], vals[c], ids[c])) break;
        elastic_sk_swap(ids, vals, i, c);
        i = c;
    }
}

__kernel void elastic_score_topk(__global const float *user, ulong u_off,
                                 __global const float *items, ulong i_off,
                                 __global const int *exclude, ulong e_off, long n_exclude,
                                 __global const int *cand, ulong c_off, long n_cand,
                                 __global int *ids, ulong ids_off, __global float *vals,
                                 ulong vals_off, long batch, long n_items, long d, long k)
{
    long b = get_global_id(0);
    if (b >= batch) return;
    __global const float *x = user + u_off + b * d;
    __global const int *ex = exclude + e_off + b * n_exclude;
    __global const int *cd = cand + c_off + b * n_cand;
    __global int *hi = ids + ids_off + b * k;
    __global float *hv = vals + vals_off + b * k;
    long cnt = 0, total = n_cand > 0 ? n_cand : n_items;
    for (long c = 0; c < total; c++) {
        int id = n_cand > 0 ? cd[c] : (int)(c + 1);
        if (id < 1 || id > n_items) continue;
        __global const float *w = items + i_off + (long)(id - 1) * d;
        float s = 0.0f;
        for (long q = 0; q < d; q++) s = fma(x[q], w[q], s);
        if (cnt == k && !elastic_sk_before(s, id, hv[0], hi[0])) continue;
        int skip = 0;
        for (long e = 0; e < n_exclude && !skip; e++) skip = ex[e] == id;
        for (long e = 0; n_cand > 0 && e < cnt && !skip; e++) skip = hi[e] == id;
        if (skip) continue;
        if (cnt < k) { /* sift up */
            long i = cnt++;
            hi[i] = id;
            hv[i] = s;
            while (i > 0 && elastic_sk_before(hv[(i - 1) / 2], hi[(i - 1) / 2], hv[i], hi[i])) {
                elastic_sk_swap(hi, hv, i, (i - 1) / 2);
                i = (i - 1) / 2;
            }
        } else {
            hi[0] = id;
            hv[0] = s;
            elastic_sk_sift_down(hi, hv, k, 0);
        }
    }
    for (long n = cnt; n > 1; n--) { /* heap sort: the worst goes last */
        elastic_sk_swap(hi, hv, 0, n - 1);
        elastic_sk_sift_down(hi, hv, n - 1, 0);
    }
    for (long r = cnt; r < k; r++) {
        hi[r] = 0;
        hv[r] = -INFINITY;
    }
}
