/* elastic_pkm.cl - product-key memory retrieval (spec section 3, step 2), one
 * work-item per (batch, expert). Sub-key scores accumulate in acc_t (double
 * where the device has it) so the selections match the float64 reference;
 * every top-t keeps the t largest with ties by the smaller index, and for
 * pairs by the smaller slot x*m + y. t <= ELASTIC_MAX_TOPT (cl_pkm_fits). */

/* Score of sub-key x of half `half` against query half a. */
static acc_t elastic_pkm_score(__global const float *a, __global const float *sub, long x,
                               long hl)
{
    acc_t s = 0;
    for (long p = 0; p < hl; p++) s += (acc_t)a[p] * (acc_t)sub[x * hl + p];
    return s;
}

/* (sa, xa) ranks before (sb, xb): larger score, ties by the smaller index. */
static int elastic_pkm_before(acc_t sa, long xa, acc_t sb, long xb)
{
    return sa > sb || (sa == sb && xa < xb);
}

/* The t best sub-keys of one half, best first, by rank order: the r-th is
 * the best of those that rank after the (r-1)-th. */
static void elastic_pkm_top(__global const float *a, __global const float *sub, long m, long hl,
                            long t, long *idx, acc_t *val)
{
    for (long r = 0; r < t; r++) {
        long best = -1;
        acc_t bs = 0;
        for (long x = 0; x < m; x++) {
            acc_t s = elastic_pkm_score(a, sub, x, hl);
            if (r > 0 && !elastic_pkm_before(val[r - 1], idx[r - 1], s, x)) continue;
            if (best < 0 || elastic_pkm_before(s, x, bs, best)) {
                best = x;
                bs = s;
            }
        }
        idx[r] = best;
        val[r] = bs;
    }
}

__kernel void elastic_pkm(__global const float *query, ulong q_off, __global const float *subkeys,
                          ulong s_off, __global const float *values, ulong v_off,
                          __global float *out, ulong out_off, long batch, long experts, long c,
                          long m, long t, long d)
{
    long g = get_global_id(0);
    if (g >= batch * experts) return;
    long hl = c / 2;
    __global const float *qa = query + q_off + g * c, *qb = qa + hl;
    __global const float *sub0 = subkeys + s_off, *sub1 = sub0 + m * hl;
    long ia[ELASTIC_MAX_TOPT], ib[ELASTIC_MAX_TOPT], slot[ELASTIC_MAX_TOPT];
    acc_t va[ELASTIC_MAX_TOPT], vb[ELASTIC_MAX_TOPT], ps[ELASTIC_MAX_TOPT];
    elastic_pkm_top(qa, sub0, m, hl, t, ia, va);
    elastic_pkm_top(qb, sub1, m, hl, t, ib, vb);
    /* the t best of the t*t pairs, again by rank order */
    for (long r = 0; r < t; r++) {
        long best = -1;
        acc_t bs = 0;
        for (long p = 0; p < t * t; p++) {
            acc_t s = va[p / t] + vb[p % t];
            long sl = ia[p / t] * m + ib[p % t];
            if (r > 0 && !elastic_pkm_before(ps[r - 1], slot[r - 1], s, sl)) continue;
            if (best < 0 || elastic_pkm_before(s, sl, bs, best)) {
                best = sl;
                bs = s;
            }
        }
        slot[r] = best;
        ps[r] = bs;
    }
    acc_t sum = 0;
    for (long r = 0; r < t; r++) sum += exp(ps[r] - ps[0]);
    for (long j = 0; j < d; j++) {
        acc_t acc = 0;
        for (long r = 0; r < t; r++)
            acc += exp(ps[r] - ps[0]) / sum * (acc_t)values[v_off + slot[r] * d + j];
        out[out_off + g * d + j] = (float)acc;
    }
}
