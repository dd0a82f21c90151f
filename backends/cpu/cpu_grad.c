/*
 * cpu_grad.c - the CPU backend's training kernels (see cpu_grad.h).
 *
 * Each backward follows its forward in cpu_ref.c line by line: what the
 * forward computed is recomputed here (softmax weights, LayerNorm
 * statistics, the product-key selection) rather than stored, so the forward
 * graph keeps only its op outputs alive for the backward.
 */
#include "cpu_grad.h"

#define LN_GRAD_SUMS(...) /* the reference: sums in element order */
#include "cpu_ln_grad_rows.h"

#include "base/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void elastic_cpu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, int threads)
{
    double scale = 1.0 / (1.0 - (double)p);
    uint32_t cut = elastic_dropout_threshold(p);
    uint64_t key = elastic_rng_key(seed, 0);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t q = 0; q < (n + 3) / 4; q++) {
        uint64_t h = elastic_rng_at(key, (uint64_t)q); /* elastic_rng_u64(seed, 0, q) */
        for (int64_t i = 4 * q; i < 4 * q + 4 && i < n; i++, h >>= 16)
            y[i] = (uint32_t)(h & 0xffff) >= cut ? (float)(x[i] * scale) : 0.0f;
    }
}

void elastic_cpu_cross_entropy(const float *scores, const int32_t *target, float *loss,
                               float *dscores, int64_t batch, int64_t items, int threads)
{
    int64_t counted = 0; /* rows with a target: the mean is over them */
    for (int64_t b = 0; b < batch; b++)
        counted += target[b] != 0;
    double rows = counted > 0 ? (double)counted : 1.0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        const float *s = scores + b * items;
        float *g = dscores + b * items;
        if (target[b] == 0) { /* ignored row */
            memset(g, 0, (size_t)items * sizeof *g);
            loss[b] = 0.0f;
            continue;
        }
        double max = -INFINITY, sum = 0;
        for (int64_t j = 0; j < items; j++)
            max = s[j] > max ? s[j] : max;
        /* one exp per score: g holds exp(s_j - max) until it is scaled */
        for (int64_t j = 0; j < items; j++) {
            double e = exp((double)s[j] - max);
            g[j] = (float)e;
            sum += e;
        }
        double lse = max + log(sum), scale = 1.0 / (sum * rows);
        for (int64_t j = 0; j < items; j++)
            g[j] = (float)((double)g[j] * scale);
        int64_t t = target[b] - 1;
        g[t] = (float)((exp((double)s[t] - lse) - 1.0) / rows);
        loss[b] = (float)(lse - s[t]);
    }
}

void elastic_cpu_gather_grad(const float *dy, const int32_t *idx, int64_t n, int64_t d,
                             float *dtable, int64_t rows)
{
    memset(dtable, 0, (size_t)(rows * d) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        float *row = dtable + (int64_t)idx[i] * d;
        const float *src = dy + i * d;
        for (int64_t j = 0; j < d; j++)
            row[j] += src[j];
    }
}

/* Column sums over rows in fixed chunks of CHUNK rows: each chunk's partial
 * sums are formed row by row (cache friendly), then the chunks are added in
 * order, so the result does not depend on the thread count. */
enum { CHUNK = 256 };

void elastic_cpu_sum_rows(const float *x, int64_t rows, int64_t cols, float *out, int threads)
{
    int64_t chunks = (rows + CHUNK - 1) / CHUNK;
    double *part = chunks > 1 ? calloc((size_t)(chunks * cols), sizeof *part) : NULL;
    if (!part) { /* one chunk (or no memory): a plain column loop */
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t j = 0; j < cols; j++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++)
                s += x[r * cols + j];
            out[j] = (float)s;
        }
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        double *p = part + ch * cols;
        int64_t end = (ch + 1) * CHUNK < rows ? (ch + 1) * CHUNK : rows;
        for (int64_t r = ch * CHUNK; r < end; r++)
            for (int64_t j = 0; j < cols; j++)
                p[j] += x[r * cols + j];
    }
    for (int64_t j = 0; j < cols; j++) {
        double s = 0;
        for (int64_t ch = 0; ch < chunks; ch++)
            s += part[ch * cols + j];
        out[j] = (float)s;
    }
    free(part);
}

void elastic_cpu_masked_mean_grad(const float *dy, const int32_t *len, float *dx, int64_t batch,
                                  int64_t n, int64_t d, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        int64_t valid = len[b] < n ? len[b] : n;
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < d; j++)
                dx[(b * n + r) * d + j] =
                    r < valid ? (float)((double)dy[b * d + j] / (double)valid) : 0.0f;
    }
}

void elastic_cpu_layer_norm_grad_rows(const float *x, const float *weight, const float *dy,
                                      float *dx, double *stat, int64_t rows, int64_t d, float eps,
                                      int threads)
{
    ln_grad_rows(x, weight, dy, dx, stat, rows, d, eps, threads);
}

elastic_status elastic_cpu_layer_norm_grad(const elastic_cpu_kernels *k, const float *x,
                                           const float *weight, const float *dy, float *dx,
                                           float *dweight, float *dbias, int64_t rows, int64_t d,
                                           float eps, int threads)
{
    double *stat = malloc((size_t)(2 * rows) * sizeof(double)); /* mean, 1/std per row */
    if (!stat) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (layer_norm_grad)");
    k->layer_norm_grad_rows(x, weight, dy, dx, stat, rows, d, eps, threads);
    /* dweight = sum of dy * xhat, dbias = sum of dy, in row chunks (see sum_rows) */
    int64_t chunks = (rows + CHUNK - 1) / CHUNK;
    double *part = calloc((size_t)(chunks * 2 * d), sizeof *part);
    if (!part) {
        free(stat);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (layer_norm_grad)");
    }
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        double *pw = part + ch * 2 * d, *pb = pw + d;
        int64_t end = (ch + 1) * CHUNK < rows ? (ch + 1) * CHUNK : rows;
        for (int64_t r = ch * CHUNK; r < end; r++)
            for (int64_t j = 0; j < d; j++) {
                double g = dy[r * d + j];
                pw[j] += g * (x[r * d + j] - stat[2 * r]) * stat[2 * r + 1];
                pb[j] += g;
            }
    }
    for (int64_t j = 0; j < d; j++) {
        double sw = 0, sb = 0;
        for (int64_t ch = 0; ch < chunks; ch++) {
            sw += part[ch * 2 * d + j];
            sb += part[ch * 2 * d + d + j];
        }
        dweight[j] = (float)sw;
        dbias[j] = (float)sb;
    }
    free(part);
    free(stat);
    return ELASTIC_OK;
}

/* out [cols, rows] = in [rows, cols]^T, in 32 x 32 tiles that stay in cache. */
static void transpose(const float *in, float *out, int64_t rows, int64_t cols, int threads)
{
    enum { T = 32 };
    int64_t tiles_r = (rows + T - 1) / T, tiles_c = (cols + T - 1) / T;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t tile = 0; tile < tiles_r * tiles_c; tile++) {
        int64_t r0 = tile / tiles_c * T, c0 = tile % tiles_c * T;
        int64_t r1 = r0 + T < rows ? r0 + T : rows, c1 = c0 + T < cols ? c0 + T : cols;
        for (int64_t c = c0; c < c1; c++)
            for (int64_t r = r0; r < r1; r++)
                out[c * rows + r] = in[r * cols + c];
    }
}

elastic_status elastic_cpu_linear_grad(const elastic_cpu_kernels *k, const float *x, const float *w,
                                       const float *dy, float *dx, float *dw, float *dbias,
                                       int64_t m, int64_t n, int64_t kk, int threads)
{
    /* dW = dy^T x runs over row chunks: each chunk's dW^T = x^T dy from x
     * and dy as they lie (linear_at); the partials are added in chunk order
     * (thread-count independent) and transposed once. dx = dy W takes W as
     * it lies too. */
    enum { ROWS = 512 };
    int64_t chunks = (m + ROWS - 1) / ROWS;
    float *wt = malloc((size_t)(kk * n) * sizeof(float)); /* the summed dW^T */
    float *part = malloc((size_t)(chunks * n * kk) * sizeof(float));
    int failed = !wt || !part;
    if (!failed) {
        k->linear_tn(dy, w, dx, m, kk, n, threads); /* dx = dy W */
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t r0 = c * ROWS, rows = m - r0 < ROWS ? m - r0 : ROWS;
            k->linear_at(x + r0 * kk, dy + r0 * n, part + c * n * kk, kk, n, rows, 1);
        }
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n * kk; i++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < chunks; c++)
                acc += part[c * n * kk + i];
            wt[i] = acc;
        }
        transpose(wt, dw, kk, n, threads); /* [n, kk] */
        elastic_cpu_sum_rows(dy, m, n, dbias, threads);
    }
    free(wt);
    free(part);
    return failed ? elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (linear_grad)")
                  : ELASTIC_OK;
}

void elastic_cpu_gelu_grad(const float *x, const float *dy, float *dx, int64_t n, int threads)
{
    /* d/dz [z Phi(z)] = Phi(z) + z phi(z), in float32 (erfcf and expf are
     * within a few ulp; Phi is written with erfc so it does not cancel). */
    const float inv_sqrt2 = 0.70710678118654752440f, inv_sqrt2pi = 0.39894228040143267794f;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float z = x[i];
        float cdf = 0.5f * erfcf(-z * inv_sqrt2), pdf = inv_sqrt2pi * expf(-0.5f * z * z);
        dx[i] = dy[i] * (cdf + z * pdf);
    }
}

/*
 * The attention backward. Per user and head, per query: the softmax weights
 * p_j recomputed from the scores, out = sum_j p_j v_j, dp_j = dy . v_j,
 * ds_j = p_j (dp_j - dy . out) scale; then dq = sum_j ds_j k_j, dk_j +=
 * ds_j q, dv_j += p_j dy. Float32 throughout (libm's expf), with the loops
 * over the head width innermost so that they vectorise. Each (user, head)
 * is one thread's: no races, and the result does not depend on the thread
 * count. Returns 0, or -1 when a thread's scratch cannot be allocated.
 */
static int attention_grad_run(const float *q, const float *k, const float *v, const float *dy,
                              const int32_t *key_len, float *dq, float *dk, float *dv,
                              int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                              int causal, int threads)
{
    int64_t dh = d / heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    int failed = 0;
    memset(dk, 0, (size_t)(batch * nk * d) * sizeof(float));
    memset(dv, 0, (size_t)(batch * nk * d) * sizeof(float));
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *p = malloc((size_t)(nk + 2 * dh) * sizeof(float));
        float *acc_q = p ? p + nk : NULL, *out = p ? acc_q + dh : NULL;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * heads; bh++) {
            if (!p) {
                failed = 1;
                continue;
            }
            int64_t b = bh / heads, h = bh % heads;
            int64_t valid = key_len ? (key_len[b] < nk ? key_len[b] : nk) : nk;
            const float *kb = k + b * nk * d + h * dh, *vb = v + b * nk * d + h * dh;
            float *dkb = dk + b * nk * d + h * dh, *dvb = dv + b * nk * d + h * dh;
            for (int64_t i = 0; i < nq; i++) {
                const float *qi = q + (b * nq + i) * d + h * dh;
                const float *gi = dy + (b * nq + i) * d + h * dh;
                float *dqi = dq + (b * nq + i) * d + h * dh;
                int64_t first = causal ? i : 0;
                memset(dqi, 0, (size_t)dh * sizeof(float));
                if (first >= valid) continue;
                float max = -INFINITY;
                for (int64_t j = first; j < valid; j++) {
                    const float *kj = kb + j * d;
                    float s = 0.0f;
#pragma omp simd reduction(+ : s)
                    for (int64_t c = 0; c < dh; c++)
                        s += qi[c] * kj[c];
                    p[j] = s * scale;
                    max = p[j] > max ? p[j] : max;
                }
                float sum = 0.0f; /* libm's expf, summed in key order */
                for (int64_t j = first; j < valid; j++)
                    sum += (p[j] = expf(p[j] - max));
                float inv = 1.0f / sum;
                for (int64_t c = 0; c < dh; c++)
                    out[c] = acc_q[c] = 0.0f;
                for (int64_t j = first; j < valid; j++) {
                    p[j] *= inv;
                    const float *vj = vb + j * d;
                    float pj = p[j];
#pragma omp simd
                    for (int64_t c = 0; c < dh; c++)
                        out[c] += pj * vj[c];
                }
                float gdot = 0.0f; /* sum_j p_j dp_j = dy . out */
#pragma omp simd reduction(+ : gdot)
                for (int64_t c = 0; c < dh; c++)
                    gdot += gi[c] * out[c];
                for (int64_t j = first; j < valid; j++) {
                    const float *kj = kb + j * d, *vj = vb + j * d;
                    float *dkj = dkb + j * d, *dvj = dvb + j * d;
                    float dp = 0.0f;
#pragma omp simd reduction(+ : dp)
                    for (int64_t c = 0; c < dh; c++)
                        dp += gi[c] * vj[c];
                    float ds = p[j] * (dp - gdot) * scale, pj = p[j];
#pragma omp simd
                    for (int64_t c = 0; c < dh; c++) {
                        dvj[c] += pj * gi[c];
                        dkj[c] += ds * qi[c];
                        acc_q[c] += ds * kj[c];
                    }
                }
                memcpy(dqi, acc_q, (size_t)dh * sizeof(float));
            }
        }
        free(p);
    }
    return failed ? -1 : 0;
}

elastic_status elastic_cpu_attention_grad(const float *q, const float *k, const float *v,
                                          const float *dy, const int32_t *key_len, float *dq,
                                          float *dk, float *dv, int64_t batch, int64_t nq,
                                          int64_t nk, int64_t d, int heads, int causal, int threads)
{
    if (attention_grad_run(q, k, v, dy, key_len, dq, dk, dv, batch, nq, nk, d, heads, causal,
                           threads))
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (attention_grad)");
    return ELASTIC_OK;
}

/* sel[0..t-1] = indices of the t largest s, ties by the smaller index. */
static void top_indices(const double *s, int64_t n, int64_t t, int64_t *sel)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = count;
        /* s[i] enters before every kept entry it beats (strictly). */
        while (pos > 0 && s[i] > s[sel[pos - 1]])
            pos--;
        if (pos >= t) continue;
        int64_t end = count < t ? count : t - 1;
        memmove(sel + pos + 1, sel + pos, (size_t)(end - pos) * sizeof *sel);
        sel[pos] = i;
        if (count < t) count++;
    }
}

void elastic_cpu_pkm_grad_row(const double *score, const int64_t *slot, int64_t n, const float *g,
                              const float *subkeys, const float *values, float *dq, int64_t *kr,
                              double *wt, double *ds, int64_t c, int64_t m, int64_t d)
{
    int64_t half = c / 2;
    double max = score[0], sum = 0;
    for (int64_t i = 0; i < n; i++)
        sum += (wt[i] = exp(score[i] - max));
    /* dw_i = dy . values[slot_i]; dscore_i = w_i (dw_i - sum_j w_j dw_j) */
    double wdw = 0;
    for (int64_t i = 0; i < n; i++) {
        wt[i] /= sum;
        const float *val = values + slot[i] * d;
        double dw = 0;
        for (int64_t j = 0; j < d; j++)
            dw += (double)g[j] * val[j];
        ds[i] = dw;
        wdw += wt[i] * dw;
    }
    float *dqa = dq, *dqb = dq + half;
    for (int64_t p = 0; p < c; p++)
        dqa[p] = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        ds[i] = wt[i] * (ds[i] - wdw);
        int64_t s = slot[i], x = s / m, y = s % m;
        kr[3 * i] = x;
        kr[3 * i + 1] = y;
        kr[3 * i + 2] = s;
        for (int64_t p = 0; p < half; p++) {
            dqa[p] += (float)(ds[i] * subkeys[x * half + p]);
            dqb[p] += (float)(ds[i] * subkeys[(m + y) * half + p]);
        }
    }
}

int elastic_cpu_pkm_grad_rows(const float *query, const float *subkeys, const float *values,
                              const float *dy, float *dquery, int64_t *kept, double *kw,
                              int64_t rows, int64_t c, int64_t m, int64_t t, int64_t d, int threads)
{
    int64_t half = c / 2;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        double *sa = malloc((size_t)(2 * m + t * t) * sizeof *sa);
        int64_t *sel = malloc((size_t)(2 * t + t * t + t) * sizeof *sel);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!sa || !sel) {
                failed = 1;
                continue;
            }
            const float *qa = query + r * c, *qb = qa + half;
            double *sb = sa + m, *pair = sb + m;
            int64_t *A = sel, *B = sel + t, *pslot = B + t, *best = pslot + t * t;
            for (int64_t x = 0; x < m; x++) {
                double s0 = 0, s1 = 0;
                for (int64_t p = 0; p < half; p++) {
                    s0 += (double)qa[p] * subkeys[x * half + p];
                    s1 += (double)qb[p] * subkeys[(m + x) * half + p];
                }
                sa[x] = s0;
                sb[x] = s1;
            }
            top_indices(sa, m, t, A);
            top_indices(sb, m, t, B);
            /* the t*t pairs in slot order, so ties go to the smaller slot */
            int64_t np = 0;
            for (int64_t xi = 0; xi < m && np < t * t; xi++) {
                int inA = 0;
                for (int64_t i = 0; i < t; i++)
                    inA |= A[i] == xi;
                if (!inA) continue;
                for (int64_t yi = 0; yi < m; yi++) {
                    int inB = 0;
                    for (int64_t i = 0; i < t; i++)
                        inB |= B[i] == yi;
                    if (!inB) continue;
                    pair[np] = sa[xi] + sb[yi];
                    pslot[np++] = xi * m + yi;
                }
            }
            top_indices(pair, np, t, best);
            for (int64_t i = 0; i < t; i++) { /* best first, over sa and A (done with) */
                sa[i] = pair[best[i]];
                A[i] = pslot[best[i]];
            }
            elastic_cpu_pkm_grad_row(sa, A, t, dy + r * d, subkeys, values, dquery + r * c,
                                     kept + r * t * 3, kw + r * t * 2, kw + r * t * 2 + t, c, m, d);
        }
        free(sa);
        free(sel);
    }
    return failed ? -1 : 0;
}

elastic_status elastic_cpu_pkm_grad(const elastic_cpu_kernels *k, const float *query,
                                    const float *subkeys, const float *values, const float *dy,
                                    float *dquery, float *dsubkeys, float *dvalues, int64_t batch,
                                    int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d,
                                    int threads)
{
    int64_t half = c / 2, rows = batch * experts;
    /* Per (user, expert): the kept pairs' x, y and slot, weight and dscore. */
    int64_t *kept = malloc((size_t)(rows * t * 3) * sizeof *kept);
    double *kw = malloc((size_t)(rows * t * 2) * sizeof *kw);
    int failed = !kept || !kw;
    if (!failed)
        failed = k->pkm_grad_rows(query, subkeys, values, dy, dquery, kept, kw, rows, c, m, t, d,
                                  threads);
    if (failed) {
        free(kept);
        free(kw);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (pkm_grad)");
    }
    /* Scatter into the shared sub-keys and values in a fixed order. */
    memset(dsubkeys, 0, (size_t)(2 * m * half) * sizeof(float));
    memset(dvalues, 0, (size_t)(m * m * d) * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        const float *qa = query + r * c, *qb = qa + half, *g = dy + r * d;
        const int64_t *kr = kept + r * t * 3;
        const double *wt = kw + r * t * 2, *ds = wt + t;
        for (int64_t i = 0; i < t; i++) {
            float *dval = dvalues + kr[3 * i + 2] * d;
            for (int64_t j = 0; j < d; j++)
                dval[j] += (float)(wt[i] * g[j]);
            float *dka = dsubkeys + kr[3 * i] * half, *dkb = dsubkeys + (m + kr[3 * i + 1]) * half;
            for (int64_t p = 0; p < half; p++) {
                dka[p] += (float)(ds[i] * qa[p]);
                dkb[p] += (float)(ds[i] * qb[p]);
            }
        }
    }
    free(kept);
    free(kw);
    return ELASTIC_OK;
}

void elastic_cpu_view_grad(const float *dv, int ndim, const int64_t *shape, const int64_t *strides,
                           int64_t offset, float *out, int64_t src_numel)
{
    memset(out, 0, (size_t)src_numel * sizeof(float));
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    for (int i = 0; i < ndim; i++) {
        sh[4 - ndim + i] = shape[i];
        st[4 - ndim + i] = strides[i];
    }
    int64_t o = 0;
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++)
                for (int64_t e = 0; e < sh[3]; e++)
                    out[offset + a * st[0] + b * st[1] + c * st[2] + e * st[3]] += dv[o++];
}
