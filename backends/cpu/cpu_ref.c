/*
 * cpu_ref.c - the scalar reference kernels: the oracle of the conformance
 * suite and of the fast paths' tests.
 *
 * Straight loops that follow the model specification word for word and
 * accumulate in double; only the stored result is rounded to float32. Speed
 * is not a goal, but the loops still run over users in parallel so whole
 * models stay testable.
 */
#include "cpu_grad.h"
#include "cpu_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void ref_gather(const float *table, int64_t d, const int32_t *idx, int64_t n, float *out,
                       int threads)
{
    (void)threads;
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * d, table + (int64_t)idx[i] * d, (size_t)d * sizeof(float));
}

static void ref_add(const float *a, const float *b, float *out, int64_t n, int64_t nb, int threads)
{
    (void)threads;
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((double)a[i] + (double)b[i % nb]);
}

static void ref_masked_mean(const float *x, const int32_t *len, float *out, int64_t batch,
                            int64_t n, int64_t d, int threads)
{
    (void)threads;
    for (int64_t b = 0; b < batch; b++) {
        int64_t rows = len[b] < n ? len[b] : n;
        for (int64_t j = 0; j < d; j++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++)
                s += x[(b * n + r) * d + j];
            out[b * d + j] = rows > 0 ? (float)(s / (double)rows) : 0.0f;
        }
    }
}

static void ref_layer_norm(const float *x, const float *weight, const float *bias, float *out,
                           int64_t rows, int64_t d, float eps, int threads)
{
    (void)threads;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        for (int64_t j = 0; j < d; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        var /= (double)d;
        double inv = 1.0 / sqrt(var + (double)eps);
        for (int64_t j = 0; j < d; j++)
            out[r * d + j] = (float)((xr[j] - mean) * inv * weight[j] + bias[j]);
    }
}

static void ref_linear(const float *x, const float *w, const float *bias, float *out, int64_t m,
                       int64_t n, int64_t k, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = bias ? (double)bias[j] : 0.0;
            for (int64_t p = 0; p < k; p++)
                s += (double)x[i * k + p] * (double)w[j * k + p];
            out[i * n + j] = (float)s;
        }
    }
}

/* out[M,N] = x wt[K,N] in double sums, x(i, p) = x[i xi + p xp]: x as it
 * lies ([M, K]: xi = K, xp = 1) or given transposed ([K, M]: xi = 1, xp = M). */
static void ref_linear_wt(const float *x, int64_t xi, int64_t xp, const float *wt, float *out,
                          int64_t m, int64_t n, int64_t k, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0.0;
            for (int64_t p = 0; p < k; p++)
                s += (double)x[i * xi + p * xp] * (double)wt[p * n + j];
            out[i * n + j] = (float)s;
        }
    }
}

static void ref_linear_tn(const float *x, const float *wt, float *out, int64_t m, int64_t n,
                          int64_t k, int threads)
{
    ref_linear_wt(x, k, 1, wt, out, m, n, k, threads);
}

static void ref_linear_at(const float *xt, const float *wt, float *out, int64_t m, int64_t n,
                          int64_t k, int threads)
{
    ref_linear_wt(xt, 1, m, wt, out, m, n, k, threads);
}

static void ref_gelu(const float *x, float *out, int64_t n, int threads)
{
    (void)threads;
    for (int64_t i = 0; i < n; i++) {
        /* 0.5 z (1 + erf(z/sqrt2)), written with erfc so that it does not
         * cancel for very negative z. */
        double z = x[i];
        out[i] = (float)(0.5 * z * erfc(-z / sqrt(2.0)));
    }
}

static void ref_attention(const float *q, const float *k, const float *v, const int32_t *key_len,
                          float *out, int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                          int causal, int threads)
{
    int64_t dh = d / heads;
    double scale = 1.0 / sqrt((double)dh);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        int64_t valid = key_len ? (key_len[b] < nk ? key_len[b] : nk) : nk;
        double *logit = malloc((size_t)(nk > 0 ? nk : 1) * sizeof(double));
        for (int64_t i = 0; i < nq; i++) {
            for (int h = 0; h < heads; h++) {
                float *o = out + (b * nq + i) * d + h * dh;
                int64_t first = causal ? i : 0;
                double max = -INFINITY;
                for (int64_t j = first; j < valid; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < dh; c++)
                        s += (double)q[(b * nq + i) * d + h * dh + c] *
                             (double)k[(b * nk + j) * d + h * dh + c];
                    s *= scale;
                    if (logit) logit[j] = s;
                    if (s > max) max = s;
                }
                for (int64_t c = 0; c < dh; c++)
                    o[c] = 0.0f;
                if (first >= valid || !logit) continue;
                double sum = 0;
                for (int64_t j = first; j < valid; j++)
                    sum += exp(logit[j] - max);
                for (int64_t c = 0; c < dh; c++) {
                    double acc = 0;
                    for (int64_t j = first; j < valid; j++)
                        acc += exp(logit[j] - max) * (double)v[(b * nk + j) * d + h * dh + c];
                    o[c] = (float)(acc / sum);
                }
            }
        }
        free(logit);
    }
}

/* The scaled logit of query i and key j in one head, in double. */
static double ref_logit(const float *qi, const float *kj, int64_t dh, double scale)
{
    double s = 0;
    for (int64_t c = 0; c < dh; c++)
        s += (double)qi[c] * (double)kj[c];
    return s * scale;
}

/* Softmax weights row by row: the logits are recomputed in each of the three
 * passes (max, sum, weights) rather than kept, which needs no scratch. */
static void ref_attention_probs(const float *q, const float *k, const int32_t *key_len, float *p,
                                int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                                int causal, int threads)
{
    int64_t dh = d / heads;
    double scale = 1.0 / sqrt((double)dh);
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < nq; i++) {
            int64_t valid = key_len ? (key_len[b] < nk ? key_len[b] : nk) : nk;
            int64_t first = causal ? i : 0;
            const float *qi = q + (b * nq + i) * d;
            for (int h = 0; h < heads; h++) {
                float *row = p + ((b * heads + h) * nq + i) * nk;
                const float *kh = k + b * nk * d + h * dh;
                double max = -INFINITY, sum = 0;
                for (int64_t j = first; j < valid; j++) {
                    double s = ref_logit(qi + h * dh, kh + j * d, dh, scale);
                    if (s > max) max = s;
                }
                for (int64_t j = first; j < valid; j++)
                    sum += exp(ref_logit(qi + h * dh, kh + j * d, dh, scale) - max);
                for (int64_t j = 0; j < nk; j++)
                    row[j] =
                        j < first || j >= valid
                            ? 0.0f
                            : (float)(exp(ref_logit(qi + h * dh, kh + j * d, dh, scale) - max) /
                                      sum);
            }
        }
    }
}

static void ref_attention_mix(const float *p, const float *v, float *out, int64_t batch, int64_t nq,
                              int64_t nk, int64_t d, int heads, int threads)
{
    int64_t dh = d / heads;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < nq; i++) {
            for (int64_t col = 0; col < d; col++) {
                const float *row = p + ((b * heads + col / dh) * nq + i) * nk;
                double acc = 0;
                for (int64_t j = 0; j < nk; j++)
                    acc += (double)row[j] * (double)v[(b * nk + j) * d + col];
                out[(b * nq + i) * d + col] = (float)acc;
            }
        }
    }
}

/* Indices of the t largest of s[0..n-1], ties by the smaller index, in
 * descending order of value. Selection by repeated scans: simple and exact. */
static void ref_top_indices(const double *s, int64_t n, int64_t t, int64_t *sel)
{
    for (int64_t r = 0; r < t; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            int taken = 0;
            for (int64_t q = 0; q < r; q++)
                taken |= sel[q] == i;
            if (taken) continue;
            if (best < 0 || s[i] > s[best]) best = i;
        }
        sel[r] = best;
    }
}

static int ref_pkm(const float *query, const float *subkeys, const float *values, float *out,
                   int64_t batch, int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d,
                   int threads)
{
    int64_t half = c / 2;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int64_t be = 0; be < batch * experts; be++) {
        const float *qj = query + be * c;
        double *sa = malloc((size_t)(2 * m + t * t) * sizeof(double));
        int64_t *sel = malloc((size_t)(3 * t + t * t) * sizeof(int64_t));
        float *o = out + be * d;
        for (int64_t j = 0; j < d; j++)
            o[j] = 0.0f;
        if (!sa || !sel) {
            free(sa);
            free(sel);
            failed = 1;
            continue;
        }
        double *sb = sa + m, *pair = sb + m;
        int64_t *A = sel, *B = sel + t, *best = sel + 2 * t, *slot = sel + 3 * t;
        for (int64_t x = 0; x < m; x++) {
            double s0 = 0, s1 = 0;
            for (int64_t p = 0; p < half; p++) {
                s0 += (double)qj[p] * (double)subkeys[x * half + p];
                s1 += (double)qj[half + p] * (double)subkeys[(m + x) * half + p];
            }
            sa[x] = s0;
            sb[x] = s1;
        }
        ref_top_indices(sa, m, t, A);
        ref_top_indices(sb, m, t, B);
        /* Pairs listed in slot order, so "ties by the smaller index" of the
         * selection below is "ties by the smaller slot". */
        int64_t np = 0;
        for (int64_t xi = 0; xi < m; xi++)
            for (int64_t yi = 0; yi < m; yi++) {
                int inA = 0, inB = 0;
                for (int64_t r = 0; r < t; r++)
                    inA |= A[r] == xi, inB |= B[r] == yi;
                if (!inA || !inB) continue;
                pair[np] = sa[xi] + sb[yi];
                slot[np] = xi * m + yi;
                np++;
            }
        ref_top_indices(pair, np, t, best);
        double max = pair[best[0]], sum = 0;
        for (int64_t r = 0; r < t; r++)
            sum += exp(pair[best[r]] - max);
        for (int64_t j = 0; j < d; j++) {
            double acc = 0;
            for (int64_t r = 0; r < t; r++)
                acc += exp(pair[best[r]] - max) / sum * (double)values[slot[best[r]] * d + j];
            o[j] = (float)acc;
        }
        free(sa);
        free(sel);
    }
    return failed ? -1 : 0;
}

/* a ranks before b: larger value, NaN last, ties by the smaller index. */
static int ref_before(float va, int64_t a, float vb, int64_t b)
{
    if (isnan(va) != isnan(vb)) return isnan(vb);
    if (!isnan(va) && va != vb) return va > vb;
    return a < b;
}

static void ref_topk(const float *scores, const int32_t *exclude, int64_t n_exclude, int32_t *ids,
                     float *vals, int64_t batch, int64_t items, int64_t k, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        const float *s = scores + b * items;
        unsigned char *taken = calloc((size_t)items, 1); /* excluded or already chosen */
        for (int64_t e = 0; taken && exclude && e < n_exclude; e++) {
            int32_t id = exclude[b * n_exclude + e];
            if (id >= 1 && id <= items) taken[id - 1] = 1;
        }
        for (int64_t r = 0; r < k; r++) {
            int64_t best = -1;
            for (int64_t j = 0; taken && j < items; j++)
                if (!taken[j] && (best < 0 || ref_before(s[j], j, s[best], best))) best = j;
            if (best >= 0) taken[best] = 1;
            ids[b * k + r] = best < 0 ? 0 : (int32_t)(best + 1);
            vals[b * k + r] = best < 0 ? -INFINITY : s[best];
        }
        free(taken);
    }
}

/* score_topk as its definition: every eligible item's score (a double dot
 * product rounded once, as ref_linear), then ref_topk's selection. Eligible:
 * every item, or the user's listed candidates; minus the exclusions. */
static void ref_score_topk(const float *user, const float *items, const int32_t *exclude,
                           int64_t n_exclude, const int32_t *cand, int64_t n_cand, int32_t *ids,
                           float *vals, int64_t batch, int64_t n_items, int64_t d, int64_t k,
                           int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        float *s = malloc((size_t)(n_items > 0 ? n_items : 1) * sizeof(float));
        unsigned char *taken = malloc((size_t)(n_items > 0 ? n_items : 1)); /* not eligible */
        if (s && taken) {
            memset(taken, cand ? 1 : 0, (size_t)n_items);
            for (int64_t c = 0; cand && c < n_cand; c++) {
                int32_t id = cand[b * n_cand + c];
                if (id >= 1 && id <= n_items) taken[id - 1] = 0;
            }
            for (int64_t e = 0; exclude && e < n_exclude; e++) {
                int32_t id = exclude[b * n_exclude + e];
                if (id >= 1 && id <= n_items) taken[id - 1] = 1;
            }
            for (int64_t j = 0; j < n_items; j++) {
                double acc = 0.0;
                for (int64_t q = 0; q < d; q++)
                    acc += (double)user[b * d + q] * (double)items[j * d + q];
                s[j] = (float)acc;
            }
        }
        for (int64_t r = 0; r < k; r++) {
            int64_t best = -1;
            for (int64_t j = 0; s && taken && j < n_items; j++)
                if (!taken[j] && (best < 0 || ref_before(s[j], j, s[best], best))) best = j;
            if (best >= 0) taken[best] = 1;
            ids[b * k + r] = best < 0 ? 0 : (int32_t)(best + 1);
            vals[b * k + r] = best < 0 ? -INFINITY : s[best];
        }
        free(s);
        free(taken);
    }
}

/* The FFN block row by row, in double from z to the output: LayerNorm,
 * fc1, GELU (erfc form), fc2, plus z, rounded once. */
static int ref_ffn(const float *z, const float *ln_w, const float *ln_b, const float *w1,
                   const float *b1, const float *w2, const float *b2, float *out, int64_t rows,
                   int64_t d, int64_t f, float eps, int threads)
{
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        double *a = malloc((size_t)(d + f) * sizeof(double));
        if (!a) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!a) continue;
            double *g = a + d;
            const float *x = z + r * d;
            double mean = 0, var = 0;
            for (int64_t j = 0; j < d; j++)
                mean += x[j];
            mean /= (double)d;
            for (int64_t j = 0; j < d; j++)
                var += (x[j] - mean) * (x[j] - mean);
            var /= (double)d;
            double inv = 1.0 / sqrt(var + (double)eps);
            for (int64_t j = 0; j < d; j++)
                a[j] = (x[j] - mean) * inv * ln_w[j] + ln_b[j];
            for (int64_t i = 0; i < f; i++) {
                double h = b1[i];
                for (int64_t j = 0; j < d; j++)
                    h += (double)w1[i * d + j] * a[j];
                g[i] = 0.5 * h * erfc(-h / sqrt(2.0));
            }
            for (int64_t j = 0; j < d; j++) {
                double y = b2[j];
                for (int64_t i = 0; i < f; i++)
                    y += (double)w2[j * f + i] * g[i];
                out[r * d + j] = (float)((double)x[j] + y);
            }
        }
        free(a);
    }
    return failed ? -1 : 0;
}

/* LayerNorm of one row in double (biased variance). */
static void ref_ln_row(const float *x, const float *w, const float *b, int64_t d, float eps,
                       double *out)
{
    double mean = 0, var = 0;
    for (int64_t j = 0; j < d; j++)
        mean += x[j];
    mean /= (double)d;
    for (int64_t j = 0; j < d; j++)
        var += (x[j] - mean) * (x[j] - mean);
    var /= (double)d;
    double inv = 1.0 / sqrt(var + (double)eps);
    for (int64_t j = 0; j < d; j++)
        out[j] = (x[j] - mean) * inv * w[j] + b[j];
}

/* y = W a + bias for W [d, d], in double. */
static void ref_proj(const float *w, const float *bias, const double *a, int64_t d, double *y)
{
    for (int64_t i = 0; i < d; i++) {
        double s = bias[i];
        for (int64_t j = 0; j < d; j++)
            s += (double)w[i * d + j] * a[j];
        y[i] = s;
    }
}

/* One head of one query over keys j < nk: sum_j softmax(scale q.k_j) v_j,
 * in double, added to out[0 .. dh) (which the caller zeroed). */
static void ref_head(const double *q, const double *k, const double *v, int64_t kstride, int64_t nk,
                     int64_t dh, double scale, double *s, double *out)
{
    if (nk <= 0) return;
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < nk; j++) {
        double dot = 0;
        for (int64_t c = 0; c < dh; c++)
            dot += q[c] * k[j * kstride + c];
        s[j] = dot * scale;
        mx = s[j] > mx ? s[j] : mx;
    }
    for (int64_t j = 0; j < nk; j++)
        sum += s[j] = exp(s[j] - mx);
    for (int64_t j = 0; j < nk; j++)
        for (int64_t c = 0; c < dh; c++)
            out[c] += s[j] / sum * v[j * kstride + c];
}

/* Aggregation in double per user: LN, K and V of its positions, then the
 * attention of its m queries; rounded once. */
static int ref_aggregate(const float *q, const float *x, const float *ln_w, const float *ln_b,
                         const float *wk, const float *bk, const float *wv, const float *bv,
                         const int32_t *key_len, float *out, int64_t batch, int64_t m, int64_t n,
                         int64_t d, int heads, float eps, int threads)
{
    int failed = 0;
    int64_t dh = d / heads;
    double scale = 1.0 / sqrt((double)dh);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        int64_t valid = key_len ? (key_len[b] < 0 ? 0 : key_len[b] > n ? n : key_len[b]) : n;
        double *buf = malloc((size_t)(2 * n * d + 3 * d + n) * sizeof(double));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        double *K = buf, *V = K + n * d, *a = V + n * d, *qd = a + d, *o = qd + d, *s = o + d;
        for (int64_t r = 0; r < valid; r++) {
            ref_ln_row(x + (b * n + r) * d, ln_w, ln_b, d, eps, a);
            ref_proj(wk, bk, a, d, K + r * d);
            ref_proj(wv, bv, a, d, V + r * d);
        }
        for (int64_t i = 0; i < m; i++) {
            for (int64_t c = 0; c < d; c++) {
                qd[c] = q[(b * m + i) * d + c];
                o[c] = 0;
            }
            for (int h = 0; h < heads; h++)
                ref_head(qd + h * dh, K + h * dh, V + h * dh, d, valid, dh, scale, s, o + h * dh);
            for (int64_t c = 0; c < d; c++)
                out[(b * m + i) * d + c] = (float)o[c];
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

/* Dispatch in double per row: LN, Q, the attention over the user's m keys,
 * the output projection and the residual; rounded once. */
static int ref_dispatch(const float *x, const float *ln_w, const float *ln_b, const float *wq,
                        const float *bq, const float *k, const float *v, const float *wo,
                        const float *bo, float *out, int64_t batch, int64_t n, int64_t m, int64_t d,
                        int heads, float eps, int threads)
{
    int failed = 0;
    int64_t dh = d / heads;
    double scale = 1.0 / sqrt((double)dh);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        double *buf = malloc((size_t)(2 * m * d + 4 * d + m) * sizeof(double));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        double *K = buf, *V = K + m * d, *a = V + m * d, *qd = a + d, *o = qd + d, *y = o + d,
               *s = y + d;
        for (int64_t j = 0; j < m * d; j++) {
            K[j] = k[b * m * d + j];
            V[j] = v[b * m * d + j];
        }
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + (b * n + r) * d;
            ref_ln_row(xr, ln_w, ln_b, d, eps, a);
            ref_proj(wq, bq, a, d, qd);
            for (int64_t c = 0; c < d; c++)
                o[c] = 0;
            for (int h = 0; h < heads; h++)
                ref_head(qd + h * dh, K + h * dh, V + h * dh, d, m, dh, scale, s, o + h * dh);
            ref_proj(wo, bo, o, d, y);
            for (int64_t c = 0; c < d; c++)
                out[(b * n + r) * d + c] = (float)((double)xr[c] + y[c]);
        }
        free(buf);
    }
    return failed ? -1 : 0;
}

/* The table's form of cpu_grad.c's attention backward (0, or -1 out of memory). */
static int ref_attention_grad(const float *q, const float *k, const float *v, const float *dy,
                              const int32_t *key_len, float *dq, float *dk, float *dv,
                              int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                              int causal, int threads)
{
    return elastic_cpu_attention_grad(q, k, v, dy, key_len, dq, dk, dv, batch, nq, nk, d, heads,
                                      causal, threads) == ELASTIC_OK
               ? 0
               : -1;
}

const elastic_cpu_kernels elastic_cpu_kernels_reference = {
    .isa = "reference",
    .gather = ref_gather,
    .add = ref_add,
    .masked_mean = ref_masked_mean,
    .layer_norm = ref_layer_norm,
    .linear = ref_linear,
    .gelu = ref_gelu,
    .attention = ref_attention,
    .attention_probs = ref_attention_probs,
    .attention_mix = ref_attention_mix,
    .pkm = ref_pkm,
    .topk = ref_topk,
    .score_topk = ref_score_topk,
    .ffn = ref_ffn,
    .aggregate = ref_aggregate,
    .dispatch = ref_dispatch,
    .cross_entropy = elastic_cpu_cross_entropy,
    .linear_tn = ref_linear_tn,
    .linear_at = ref_linear_at,
    .gelu_grad = elastic_cpu_gelu_grad,
    .attention_grad = ref_attention_grad,
    .dropout = elastic_cpu_dropout,
    .layer_norm_grad_rows = elastic_cpu_layer_norm_grad_rows,
    .pkm_grad_rows = elastic_cpu_pkm_grad_rows,
};
