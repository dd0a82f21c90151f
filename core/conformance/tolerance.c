/*
 * tolerance.c - the per-element tolerances of every op's outputs, the
 * canary/poison words and the comparison (see tolerance.h).
 *
 * How the bounds are derived. u = 2^-24 is the unit roundoff of float32.
 * Each formula below is the textbook forward error bound of one float32
 * implementation of the op (Higham, "Accuracy and Stability of Numerical
 * Algorithms", ch. 3-4: a sum of n terms in any order is within
 * (n - 1) u sum|terms|, a dot product of length n within
 * gamma_n sum|x_k w_k| with gamma_n = n u / (1 - n u)), written with
 * EPS = 2u: the result of a backend and the oracle's may both be that far
 * from the exact value, so their difference gets twice one bound. The
 * oracle is the CPU's reference: float64 for the inference ops (cpu_ref.c);
 * for the training ops the cpu_grad.c kernels, which accumulate in double
 * except attention_grad (float32 throughout) and the float32 scatters of
 * gather_grad, pkm_grad and view_grad; the bounds cover a float32 oracle.
 *
 * Inference ops:
 *   - ADD: one rounding of each: EPS (|a| + |b|).
 *   - MASKED_MEAN: a sum of v = min(len, n) rows and a division:
 *     (v + 2) EPS max|x| over the column's valid rows (0 when v = 0).
 *   - LAYER_NORM: per row, the mean and the variance are sums of d terms;
 *     the centred value xhat carries an absolute error of
 *     (d + 4) u (|xhat| + M / sigma) (M = max|x| of the row, the
 *     cancellation in x - mean), then times w and plus b:
 *     4 (d + 8) EPS (|w| (|xhat| + max(1, M / sigma)) + |b|). This assumes a
 *     stable variance (two passes, or Welford's update): E[x^2] - mean^2
 *     loses another factor M / sigma, and the cases with a large mean
 *     (LAYER_NORM_GRAD's "mean 100") are there to fail it.
 *   - LINEAR: a dot product of K terms plus the bias, fused or unfused
 *     multiply-adds: gamma_{2K+4} (|b| + sum_k |x_k w_k|).
 *   - GELU: erff/erfcf within 4 ulps, and the argument x / sqrt2 rounded
 *     (which moves the result by u |x|^2 phi(x) <= 0.61 u |x|), and for
 *     negative x, 1 + erf cancels: 8 EPS (|y| + 0.5 |x|), plus 1e-30 for
 *     results in the subnormal range.
 *   - ATTENTION: a logit of head width dh carries (dh + 4) EPS (L + 1),
 *     L = dh max|q| max|k| / sqrt(dh) bounding |q.k| * scale, which exp turns
 *     into a relative error of the weights; normalising over nk keys adds
 *     (nk + 4) EPS: e = EPS (2 (dh + 4) (L + 1) + 2 (nk + 4)) relative per
 *     weight, times max|v| for the output.
 *   - ATTENTION_PROBS: e relative to each weight.
 *   - ATTENTION_MIX: a dot product of nk terms: (nk + 2) EPS sum_j |p_j v_j|.
 *   - PKM: a sub-key score of c/2 terms carries (c/2 + 4) EPS (S + 1),
 *     S = 2 (c/2) max|q| max|subkey|, twice (a pair adds two scores), and
 *     the softmax over t adds (t + 4) EPS: e_w = EPS (4 (c/2 + 4) (S + 1) +
 *     2 (t + 4)), times max|value|. (The selection itself must agree.)
 *   - GATHER, TOPK, COPY: exact.
 *   - FFN: z + fc2(GELU(fc1(LN(z)))) per row, the five bounds above carried
 *     forward to first order: a = LN(z) within t_a (LAYER_NORM's);
 *     h = W1 a + b1 within t_h = gamma_{2d+4} (|b1| + sum |W1 a|) +
 *     sum_j |W1_ij| t_a_j; g = GELU(h) within GELU's bound plus 1.13 t_h
 *     (|GELU'| <= 1.13); y = W2 g + b2 within gamma_{2f+4} (|b2| +
 *     sum |W2 g|) + sum_i |W2_ji| t_g_i; the output z + y within
 *     EPS (|z| + |y|) + t_y (a, h, g, y from the float64 oracle's values).
 *   - AGGREGATE: per user, a = LN(x_r) within t_a and K, V = W a + b within
 *     t = gamma_{2d+4} (|b| + sum |W a|) + sum |W| t_a (as FFN's fc1), for
 *     the visible positions; the attention of q over them as ATTENTION's
 *     (e from max|q| and the user's max|K|), plus the logits' share of K's
 *     error, delta = scale dh max|q| max t_K (the weights move by 2 delta
 *     relative): (e + 2 delta) max|V| + max t_V.
 *   - DISPATCH: per row, a = LN(x) within t_a, Q = Wq a + bq within t_Q as
 *     above; the attention A over the user's keys within t_A = (e + 2 delta)
 *     max|v| (e from max|Q| and max|k|, delta = scale dh max|k| max t_Q);
 *     O = Wo A + bo within gamma_{2d+4} (|bo| + sum |Wo A|) + sum |Wo| t_A;
 *     the output x + O within EPS (|x| + |O|) + t_O.
 *   - SCORE_TOPK: ids exact (the cases keep near-ties out, or use small
 *     integers whose scores are exact); each kept score as LINEAR's, of the
 *     reference's id: gamma_{2K+4} sum_k |u_k w_k|; padding and non-finite
 *     scores exactly.
 *
 * Training ops (R: rows summed over; g = dy * w in LAYER_NORM_GRAD):
 *   - DROPOUT: the scale 1/(1-p) rounded and one product: 2 EPS |y|; zero
 *     where the reference dropped (the mask is exact).
 *   - CROSS_ENTROPY: per row, sum_j exp(s_j - m) (m = max s) carries a
 *     relative (2I + 2) u (I terms, each exp within 2 ulps, the arguments'
 *     rounding weighed by exp); log makes it absolute; lse = m + log and
 *     the loss lse - s_t round once each:
 *       loss:    EPS ((2I + 2) + |lse - m| + |lse| + |loss|);
 *       dscores: p_j = exp(s_j - lse) within (2I + 5 + |s_j - m|) u
 *                relative, then - 1 at the target and / B (B: the rows
 *                not ignored; an ignored row, target 0, is exactly 0):
 *                EPS (p_j (2I + 5 + |s_j - m|) / B + 2 |g_j|).
 *   - GATHER_GRAD: row q sums the h_q rows of dy gathered from it:
 *     EPS (h_q - 1) sum |dy| over them (exact for h_q <= 1).
 *   - SUM_ROWS: a sum of R terms: EPS R sum_r |x_r|.
 *   - MASKED_MEAN_GRAD: dy / v, one division or a reciprocal and a product:
 *     2 EPS |dx|; zero on masked rows.
 *   - LAYER_NORM_GRAD: with the row's xhat error delta = (d + 4) u K,
 *     K = max|xhat| + max(1, M / sigma), X = max|xhat| and G = max_j |g_j|:
 *       dx = (g - mean g - xhat mean(g xhat)) / sigma, where mean(g xhat)
 *            is within 2 G delta, the bracket within (d + 2) u G +
 *            3 u G (2 + X^2) + delta G (X + 1)(X + 2), and 1/sigma within
 *            delta relative: 2 (d + 8) EPS K (X + 1)(X + 2) G / sigma;
 *       dweight_j = sum_r dy xhat: EPS sum_r |dy_rj| ((R + 1) |xhat_rj| +
 *            (d + 4) K_r);
 *       dbias_j = sum_r dy: EPS R sum_r |dy_rj|.
 *   - LINEAR_GRAD: three products: dx = dy W is a dot product of N terms:
 *     gamma_{2N+4} sum_j |dy_j W_jk|; dW = dy^T x one of M terms:
 *     gamma_{2M+4} sum_i |dy_ij x_ik|; dbias as SUM_ROWS: EPS M sum_i |dy_ij|.
 *   - GELU_GRAD: dy (Phi(x) + x phi(x)) in float32: erfcf within 4 ulps and
 *     its argument's rounding (u |x| phi), exp within 1 ulp of an argument
 *     -x^2/2 that carries u x^2, and four roundings; Phi written as
 *     (1 + erf) / 2 instead cancels for negative x, an absolute error of
 *     3u (as GELU allows): EPS (|dy| (10 Phi + 3 + |x| phi (x^2 + 7)) + |dx|),
 *     plus FLT_MIN |dy| for results in the subnormal range.
 *   - ATTENTION_GRAD: per user, head and query i with visible keys j, P_ij
 *     the weights (relative error e, as ATTENTION), D_i = max_j sum_c
 *     |dy_ic v_jc|: dp_ij = dy_i . v_j and dy_i . out_i are within
 *     (dh + 2) EPS D_i and (e + (nvis + dh + 4) EPS) D_i, so
 *     ds_ij = P_ij (dp_ij - dy.out) scale (|ds_ij| <= 2 scale P_ij D_i) is
 *     within scale P_ij D_i eta_i, eta_i = 3e + (nvis + 2 dh + 12) EPS; then
 *       dq_ic = sum_j ds_ij k_jc:  scale D_i (eta_i + 2 (nvis + 2) EPS)
 *                                  sum_j P_ij |k_jc|;
 *       dk_jc = sum_i ds_ij q_ic:  sum_i scale D_i P_ij |q_ic|
 *                                  (eta_i + 2 (nq + 2) EPS);
 *       dv_jc = sum_i P_ij dy_ic:  sum_i P_ij |dy_ic| (e + (nq + 2) EPS);
 *     zero for hidden keys and for queries that see none.
 *   - PKM_GRAD: per row (user, expert) the t kept slots s_i = (x_i, y_i) with
 *     weights w_i (relative error e_w, as PKM), Gv = max_i sum_j
 *     |dy_j value_{s_i, j}|; ds_i = w_i (dw_i - sum w dw) is within
 *     w_i Gv zeta, zeta = 3 e_w + (2d + t + 12) EPS (|ds_i| <= 2 w_i Gv); H_s
 *     counts the (row, i) that kept slot s (or sub-key row x), the length of
 *     its scatter-add:
 *       dvalues_s:  sum over them of w_i |dy| (e_w + (H_s + 2) EPS);
 *       dsubkeys_x: sum over them of |q_half| w_i Gv (zeta + 2 (H_x + 2) EPS);
 *       dquery:     sum_i |subkey_{x_i}| w_i Gv (zeta + 2 (t + 2) EPS);
 *     zero for slots and sub-keys no row kept.
 *   - VIEW_GRAD: a source element reached h times sums h elements of dv:
 *     EPS (h - 1) sum |dv| (exact for a view without overlaps).
 */
#include "conformance/tolerance.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define EPS CONF_EPS
#define U CONF_U

/* ------------------------------------------------------------- guards */

void conf_poison(void *buf, size_t bytes)
{
    uint32_t p = CONF_POISON;
    unsigned char *b = buf;
    for (size_t k = 0; k + 4 <= bytes; k += 4)
        memcpy(b + k, &p, 4);
}

int conf_canary_intact(const void *buf, size_t bytes)
{
    const unsigned char *b = buf;
    for (size_t k = 0; k + 4 <= bytes; k += 4) {
        uint32_t v;
        memcpy(&v, b + k, 4);
        if (v != CONF_POISON) return 0;
    }
    return 1;
}

double conf_zero_fraction(elastic_dtype dtype, const void *data, int64_t n)
{
    if (n <= 0) return 0.0;
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        if (dtype == ELASTIC_DTYPE_I32) {
            zeros += ((const int32_t *)data)[i] == 0;
        } else {
            float v = ((const float *)data)[i];
            zeros += v == 0.0f || isnan(v);
        }
    }
    return (double)zeros / (double)n;
}

/* ---------------------------------------------------------- comparison */

static uint64_t ulp_distance(float a, float b)
{
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    int64_t ox = x < 0 ? (int64_t)INT32_MIN - x : x, oy = y < 0 ? (int64_t)INT32_MIN - y : y;
    return (uint64_t)(ox > oy ? ox - oy : oy - ox);
}

void conf_compare(int output, elastic_dtype dtype, const void *got_v, const void *ref_v,
                  const double *tol, int64_t n, conf_compare_result *res)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (dtype == ELASTIC_DTYPE_I32) {
            int32_t g = ((const int32_t *)got_v)[i], w = ((const int32_t *)ref_v)[i];
            if (g != w && res->ok) {
                res->ok = 0;
                res->output = output;
                res->at = i;
                res->got = (float)g;
                res->want = (float)w;
                res->worst = INFINITY;
                snprintf(res->why, sizeof res->why, "output %d element %lld is %d, reference %d",
                         output, (long long)i, (int)g, (int)w);
            }
            continue;
        }
        float g = ((const float *)got_v)[i], w = ((const float *)ref_v)[i];
        double t = tol[i];
        int special = isnan(w) || isinf(w) || isnan(g) || isinf(g);
        double err = special ? 0 : fabs((double)g - (double)w);
        double v = special    ? ((isnan(w) && isnan(g)) || g == w ? 0 : INFINITY)
                   : err == 0 ? 0
                   : t > 0    ? err / t
                              : INFINITY;
        if (!special) {
            num += err * err;
            den += (double)w * w;
            if (err > res->max_abs) res->max_abs = err;
            if (w != 0 && err / fabs((double)w) > res->max_rel)
                res->max_rel = err / fabs((double)w);
            uint64_t u = ulp_distance(g, w);
            if (u > res->max_ulp) res->max_ulp = u;
        }
        if (v > res->worst || (v == INFINITY && res->ok)) {
            res->worst = v;
            res->output = output;
            res->at = i;
            res->got = g;
            res->want = w;
        }
        if (!(v <= 1) && res->ok) {
            res->ok = 0;
            snprintf(res->why, sizeof res->why,
                     "output %d element %lld is %.9g, reference %.9g (tol %.3g)", output,
                     (long long)i, (double)g, (double)w, t);
        }
    }
    double nmse = den > 0 ? num / den : num;
    if (nmse > res->nmse) res->nmse = nmse;
}

/* ------------------------------------------------------------- helpers */

static double max_abs(const float *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

/* gamma_n = n u / (1 - n u): the bound of a dot product of n roundings. */
static double gamma_n(double n)
{
    return n * U / (1.0 - n * U);
}

/* Visible keys of one query: [first, valid). */
static int64_t visible_end(const int32_t *key_len, int64_t b, int64_t nk)
{
    if (!key_len) return nk;
    return key_len[b] < 0 ? 0 : key_len[b] < nk ? key_len[b] : nk;
}

/* ------------------------------------------------------- inference ops */

void conf_tol_exact(int64_t n, double *tol)
{
    for (int64_t i = 0; i < n; i++)
        tol[i] = 0.0;
}

void conf_tol_add(const float *a, const float *b, int64_t n, int64_t nb, double *tol)
{
    for (int64_t i = 0; i < n; i++)
        tol[i] = EPS * (fabs((double)a[i]) + fabs((double)b[i % nb]));
}

void conf_tol_masked_mean(const float *x, const int32_t *len, int64_t batch, int64_t n, int64_t d,
                          double *tol)
{
    for (int64_t b = 0; b < batch; b++) {
        int64_t v = len[b] < 0 ? 0 : len[b] < n ? len[b] : n;
        for (int64_t j = 0; j < d; j++) {
            double mx = 0;
            for (int64_t r = 0; r < v; r++)
                mx = fmax(mx, fabs((double)x[(b * n + r) * d + j]));
            tol[b * d + j] = (double)(v + 2) * EPS * mx;
        }
    }
}

/* A row's statistics in double: mean, 1/sigma, max|x| and max|xhat|. */
static void row_stats(const float *x, int64_t d, float eps, double *mean, double *inv, double *maxx,
                      double *maxhat)
{
    double mu = 0, var = 0, mx = 0;
    for (int64_t j = 0; j < d; j++)
        mu += x[j];
    mu /= (double)d;
    for (int64_t j = 0; j < d; j++) {
        var += (x[j] - mu) * (x[j] - mu);
        mx = fmax(mx, fabs((double)x[j]));
    }
    *mean = mu;
    *inv = 1.0 / sqrt(var / (double)d + (double)eps);
    *maxx = mx;
    double mh = 0;
    for (int64_t j = 0; j < d; j++)
        mh = fmax(mh, fabs((x[j] - mu) * *inv));
    *maxhat = mh;
}

void conf_tol_layer_norm(const float *x, const float *weight, const float *bias, int64_t rows,
                         int64_t d, float eps, double *tol)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        double mean, inv, mx, mh;
        row_stats(xr, d, eps, &mean, &inv, &mx, &mh);
        double cancel = fmax(1.0, mx * inv);
        for (int64_t j = 0; j < d; j++) {
            double xhat = fabs((xr[j] - mean) * inv);
            tol[r * d + j] = 4.0 * (double)(d + 8) * EPS *
                             (fabs((double)weight[j]) * (xhat + cancel) + fabs((double)bias[j]));
        }
    }
}

void conf_tol_linear(const float *x, const float *w, const float *bias, int64_t m, int64_t n,
                     int64_t k, double *tol)
{
    double g = gamma_n(2.0 * (double)k + 4.0);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double mag = bias ? fabs((double)bias[j]) : 0.0;
            for (int64_t p = 0; p < k; p++)
                mag += fabs((double)x[i * k + p] * w[j * k + p]);
            tol[i * n + j] = g * mag;
        }
}

elastic_status conf_tol_ffn(const float *z, const float *ln_w, const float *ln_b, const float *w1,
                            const float *b1, const float *w2, const float *b2, int64_t rows,
                            int64_t d, int64_t f, float eps, double *tol)
{
    double *t_a = malloc((size_t)d * sizeof(double)), *a = malloc((size_t)d * sizeof(double));
    double *g = malloc((size_t)f * sizeof(double)), *t_g = malloc((size_t)f * sizeof(double));
    if (!t_a || !a || !g || !t_g) {
        free(t_a);
        free(a);
        free(g);
        free(t_g);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    double gd = gamma_n(2.0 * (double)d + 4.0), gf = gamma_n(2.0 * (double)f + 4.0);
    for (int64_t r = 0; r < rows; r++) {
        const float *x = z + r * d;
        conf_tol_layer_norm(x, ln_w, ln_b, 1, d, eps, t_a);
        double mean, inv, mx, mh;
        row_stats(x, d, eps, &mean, &inv, &mx, &mh);
        for (int64_t j = 0; j < d; j++)
            a[j] = (x[j] - mean) * inv * ln_w[j] + ln_b[j];
        for (int64_t i = 0; i < f; i++) {
            double h = b1[i], mag = fabs((double)b1[i]), carried = 0;
            for (int64_t j = 0; j < d; j++) {
                h += (double)w1[i * d + j] * a[j];
                mag += fabs((double)w1[i * d + j] * a[j]);
                carried += fabs((double)w1[i * d + j]) * t_a[j];
            }
            double t_h = gd * mag + carried;
            g[i] = 0.5 * h * erfc(-h / sqrt(2.0));
            t_g[i] = 8.0 * EPS * (fabs(g[i]) + 0.5 * fabs(h)) + 1e-30 + 1.13 * t_h;
        }
        for (int64_t j = 0; j < d; j++) {
            double y = b2[j], mag = fabs((double)b2[j]), carried = 0;
            for (int64_t i = 0; i < f; i++) {
                y += (double)w2[j * f + i] * g[i];
                mag += fabs((double)w2[j * f + i] * g[i]);
                carried += fabs((double)w2[j * f + i]) * t_g[i];
            }
            tol[r * d + j] = EPS * (fabs((double)x[j]) + fabs(y)) + gf * mag + carried;
        }
    }
    free(t_a);
    free(a);
    free(g);
    free(t_g);
    return ELASTIC_OK;
}

/* y = W a + bias ([d, d] W, a in double) and its bound: the product's
 * rounding plus a's error t_a carried through |W|. */
static void tol_proj(const float *w, const float *bias, const double *a, const double *t_a,
                     int64_t d, double *y, double *t_y)
{
    double g = gamma_n(2.0 * (double)d + 4.0);
    for (int64_t i = 0; i < d; i++) {
        double s = bias[i], mag = fabs((double)bias[i]), carried = 0;
        for (int64_t j = 0; j < d; j++) {
            s += (double)w[i * d + j] * a[j];
            mag += fabs((double)w[i * d + j] * a[j]);
            carried += fabs((double)w[i * d + j]) * t_a[j];
        }
        y[i] = s;
        t_y[i] = g * mag + carried;
    }
}

/* LN of a row in double, and its bound (LAYER_NORM's). */
static void tol_ln(const float *x, const float *w, const float *b, int64_t d, float eps, double *a,
                   double *t_a)
{
    double mean, inv, mx, mh;
    row_stats(x, d, eps, &mean, &inv, &mx, &mh);
    conf_tol_layer_norm(x, w, b, 1, d, eps, t_a);
    for (int64_t j = 0; j < d; j++)
        a[j] = (x[j] - mean) * inv * w[j] + b[j];
}

static double max_abs_d(const double *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

elastic_status conf_tol_aggregate(const float *q, const float *x, const float *ln_w,
                                  const float *ln_b, const float *wk, const float *bk,
                                  const float *wv, const float *bv, const int32_t *key_len,
                                  int64_t batch, int64_t m, int64_t n, int64_t d, int heads,
                                  float eps, double *tol)
{
    double *buf = malloc((size_t)(6 * d) * sizeof(double));
    if (!buf) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    double *a = buf, *t_a = a + d, *y = t_a + d, *t_y = y + d, *z = t_y + d, *t_z = z + d;
    int64_t dh = d / heads;
    for (int64_t b = 0; b < batch; b++) {
        int64_t valid = key_len ? (key_len[b] < 0 ? 0 : key_len[b] > n ? n : key_len[b]) : n;
        double max_k = 0, max_v = 0, max_tk = 0, max_tv = 0;
        for (int64_t r = 0; r < valid; r++) {
            tol_ln(x + (b * n + r) * d, ln_w, ln_b, d, eps, a, t_a);
            tol_proj(wk, bk, a, t_a, d, y, t_y);
            tol_proj(wv, bv, a, t_a, d, z, t_z);
            max_k = fmax(max_k, max_abs_d(y, d));
            max_tk = fmax(max_tk, max_abs_d(t_y, d));
            max_v = fmax(max_v, max_abs_d(z, d));
            max_tv = fmax(max_tv, max_abs_d(t_z, d));
        }
        double max_q = max_abs(q + b * m * d, m * d);
        double L = (double)dh * max_q * max_k / sqrt((double)dh);
        double e = EPS * (2.0 * (double)(dh + 4) * (L + 1.0) + 2.0 * (double)(valid + 4));
        double delta = (double)dh * max_q * max_tk / sqrt((double)dh);
        for (int64_t i = 0; i < m * d; i++)
            tol[b * m * d + i] = valid ? (e + 2.0 * delta) * max_v + max_tv : 0.0;
    }
    free(buf);
    return ELASTIC_OK;
}

elastic_status conf_tol_dispatch(const float *x, const float *ln_w, const float *ln_b,
                                 const float *wq, const float *bq, const float *k, const float *v,
                                 const float *wo, const float *bo, int64_t batch, int64_t n,
                                 int64_t m, int64_t d, int heads, float eps, double *tol)
{
    double *buf = malloc((size_t)(7 * d + m) * sizeof(double));
    if (!buf) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    double *a = buf, *t_a = a + d, *qd = t_a + d, *t_q = qd + d, *att = t_q + d, *t_att = att + d,
           *t_o = t_att + d, *s = t_o + d;
    int64_t dh = d / heads;
    double scale = 1.0 / sqrt((double)dh);
    for (int64_t b = 0; b < batch; b++) {
        const float *kb = k + b * m * d, *vb = v + b * m * d;
        double max_k = max_abs(kb, m * d), max_v = max_abs(vb, m * d);
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + (b * n + r) * d;
            tol_ln(xr, ln_w, ln_b, d, eps, a, t_a);
            tol_proj(wq, bq, a, t_a, d, qd, t_q);
            double L = (double)dh * max_abs_d(qd, d) * max_k * scale;
            double e = EPS * (2.0 * (double)(dh + 4) * (L + 1.0) + 2.0 * (double)(m + 4));
            double delta = (double)dh * max_k * max_abs_d(t_q, d) * scale;
            for (int h = 0; h < heads; h++) { /* the attention in double */
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < m; j++) {
                    double dot = 0;
                    for (int64_t c = 0; c < dh; c++)
                        dot += qd[h * dh + c] * kb[j * d + h * dh + c];
                    s[j] = dot * scale;
                    mx = fmax(mx, s[j]);
                }
                for (int64_t j = 0; j < m; j++)
                    sum += s[j] = exp(s[j] - mx);
                for (int64_t c = 0; c < dh; c++) {
                    double o = 0;
                    for (int64_t j = 0; j < m; j++)
                        o += s[j] / sum * vb[j * d + h * dh + c];
                    att[h * dh + c] = o;
                    t_att[h * dh + c] = (e + 2.0 * delta) * max_v;
                }
            }
            tol_proj(wo, bo, att, t_att, d, qd, t_o); /* qd: O now */
            for (int64_t c = 0; c < d; c++)
                tol[(b * n + r) * d + c] = EPS * (fabs((double)xr[c]) + fabs(qd[c])) + t_o[c];
        }
    }
    free(buf);
    return ELASTIC_OK;
}

void conf_tol_score_topk(const float *user, const float *items, const int32_t *ref_ids,
                         const float *ref_vals, int64_t batch, int64_t d, int64_t k,
                         double *tol_ids, double *tol_vals)
{
    double g = gamma_n(2.0 * (double)d + 4.0);
    conf_tol_exact(batch * k, tol_ids);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t r = 0; r < k; r++) {
            int32_t id = ref_ids[b * k + r];
            double mag = 0.0;
            if (id >= 1 && isfinite(ref_vals[b * k + r]))
                for (int64_t q = 0; q < d; q++)
                    mag += fabs((double)user[b * d + q] * items[(int64_t)(id - 1) * d + q]);
            tol_vals[b * k + r] = g * mag;
        }
}

void conf_tol_gelu(const float *x, const float *ref, int64_t n, double *tol)
{
    for (int64_t i = 0; i < n; i++)
        tol[i] = 8.0 * EPS * (fabs((double)ref[i]) + 0.5 * fabs((double)x[i])) + 1e-30;
}

double conf_attention_weight_error(const float *q, const float *k, int64_t batch, int64_t nq,
                                   int64_t nk, int64_t d, int heads)
{
    int64_t dh = d / heads;
    double L =
        (double)dh * max_abs(q, batch * nq * d) * max_abs(k, batch * nk * d) / sqrt((double)dh);
    return EPS * (2.0 * (double)(dh + 4) * (L + 1.0) + 2.0 * (double)(nk + 4));
}

void conf_tol_attention(const float *q, const float *k, const float *v, int64_t batch, int64_t nq,
                        int64_t nk, int64_t d, int heads, double *tol)
{
    double t =
        conf_attention_weight_error(q, k, batch, nq, nk, d, heads) * max_abs(v, batch * nk * d);
    for (int64_t i = 0; i < batch * nq * d; i++)
        tol[i] = t;
}

void conf_tol_attention_probs(const float *q, const float *k, const float *ref, int64_t batch,
                              int64_t nq, int64_t nk, int64_t d, int heads, double *tol)
{
    double e = conf_attention_weight_error(q, k, batch, nq, nk, d, heads);
    for (int64_t i = 0; i < batch * heads * nq * nk; i++)
        tol[i] = e * fabs((double)ref[i]) + 1e-35;
}

void conf_tol_attention_mix(const float *p, const float *v, int64_t batch, int64_t nq, int64_t nk,
                            int64_t d, int heads, double *tol)
{
    int64_t dh = d / heads;
    for (int64_t i = 0; i < batch * nq * d; i++) {
        int64_t b = i / (nq * d), qi = i / d % nq, col = i % d;
        const float *row = p + ((b * heads + col / dh) * nq + qi) * nk;
        double mag = 0;
        for (int64_t j = 0; j < nk; j++)
            mag += fabs((double)row[j] * v[(b * nk + j) * d + col]);
        tol[i] = (double)(nk + 2) * EPS * mag;
    }
}

/* PKM's relative error of a softmax weight (see PKM above). */
static double pkm_weight_error(const float *query, const float *subkeys, int64_t batch,
                               int64_t experts, int64_t c, int64_t m, int64_t t)
{
    int64_t half = c / 2;
    double S =
        2.0 * (double)half * max_abs(query, batch * experts * c) * max_abs(subkeys, 2 * m * half);
    return EPS * (4.0 * (double)(half + 4) * (S + 1.0) + 2.0 * (double)(t + 4));
}

void conf_tol_pkm(const float *query, const float *subkeys, const float *values, int64_t batch,
                  int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d, double *tol)
{
    double e = pkm_weight_error(query, subkeys, batch, experts, c, m, t);
    double v = e * max_abs(values, m * m * d);
    for (int64_t i = 0; i < batch * experts * d; i++)
        tol[i] = v;
}

/* -------------------------------------------------------- training ops */

void conf_tol_dropout(const float *ref, int64_t n, double *tol)
{
    for (int64_t i = 0; i < n; i++)
        tol[i] = 2.0 * EPS * fabs((double)ref[i]);
}

void conf_tol_cross_entropy(const float *scores, const int32_t *target, const float *ref_loss,
                            const float *ref_dscores, int64_t batch, int64_t items,
                            double *tol_loss, double *tol_dscores)
{
    double I = (double)items, rows = 0; /* the mean is over the rows not ignored */
    for (int64_t b = 0; b < batch; b++)
        rows += target[b] != 0;
    rows = rows > 0 ? rows : 1;
    for (int64_t b = 0; b < batch; b++) {
        const float *s = scores + b * items;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < items; j++)
            m = fmax(m, (double)s[j]);
        for (int64_t j = 0; j < items; j++)
            sum += exp((double)s[j] - m);
        double lse = m + log(sum);
        tol_loss[b] = EPS * ((2 * I + 2) + fabs(lse - m) + fabs(lse) + fabs((double)ref_loss[b]));
        for (int64_t j = 0; j < items; j++) {
            double p = exp((double)s[j] - lse), g = fabs((double)ref_dscores[b * items + j]);
            tol_dscores[b * items + j] =
                EPS * (p * (2 * I + 5 + fabs((double)s[j] - m)) / rows + 2 * g);
        }
    }
}

elastic_status conf_tol_gather_grad(const float *dy, const int32_t *idx, int64_t n, int64_t d,
                                    int64_t rows, double *tol)
{
    /* tol first holds sum |dy| per element of the table; hits count the terms */
    int64_t *hits = calloc((size_t)(rows > 0 ? rows : 1), sizeof *hits);
    if (!hits) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (gather tolerance)");
    for (int64_t i = 0; i < rows * d; i++)
        tol[i] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= rows) continue;
        hits[idx[i]]++;
        for (int64_t j = 0; j < d; j++)
            tol[idx[i] * d + j] += fabs((double)dy[i * d + j]);
    }
    for (int64_t q = 0; q < rows; q++)
        for (int64_t j = 0; j < d; j++)
            tol[q * d + j] = hits[q] > 1 ? EPS * (double)(hits[q] - 1) * tol[q * d + j] : 0.0;
    free(hits);
    return ELASTIC_OK;
}

void conf_tol_sum_rows(const float *x, int64_t rows, int64_t cols, double *tol)
{
    for (int64_t j = 0; j < cols; j++) {
        double mag = 0;
        for (int64_t r = 0; r < rows; r++)
            mag += fabs((double)x[r * cols + j]);
        tol[j] = EPS * (double)rows * mag;
    }
}

void conf_tol_masked_mean_grad(const float *ref, int64_t n, double *tol)
{
    for (int64_t i = 0; i < n; i++)
        tol[i] = 2.0 * EPS * fabs((double)ref[i]);
}

void conf_tol_layer_norm_grad(const float *x, const float *weight, const float *dy, int64_t rows,
                              int64_t d, float eps, double *tol_dx, double *tol_dweight,
                              double *tol_dbias)
{
    for (int64_t j = 0; j < d; j++)
        tol_dweight[j] = tol_dbias[j] = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *gr = dy + r * d;
        double mean, inv, mx, X;
        row_stats(xr, d, eps, &mean, &inv, &mx, &X);
        double K = X + fmax(1.0, mx * inv), G = 0;
        for (int64_t j = 0; j < d; j++)
            G = fmax(G, fabs((double)gr[j] * weight[j]));
        double t = 2.0 * (double)(d + 8) * EPS * K * (X + 1) * (X + 2) * inv * G;
        for (int64_t j = 0; j < d; j++) {
            double xhat = fabs((xr[j] - mean) * inv), g = fabs((double)gr[j]);
            tol_dx[r * d + j] = t;
            tol_dweight[j] += EPS * g * ((double)(rows + 1) * xhat + (double)(d + 4) * K);
            tol_dbias[j] += EPS * (double)rows * g;
        }
    }
}

void conf_tol_linear_grad(const float *x, const float *w, const float *dy, int64_t m, int64_t n,
                          int64_t k, double *tol_dx, double *tol_dw, double *tol_dbias)
{
    double gn = gamma_n(2.0 * (double)n + 4.0), gm = gamma_n(2.0 * (double)m + 4.0);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m; i++) /* dx [m, k] = dy [m, n] W [n, k] */
        for (int64_t p = 0; p < k; p++) {
            double mag = 0;
            for (int64_t j = 0; j < n; j++)
                mag += fabs((double)dy[i * n + j] * w[j * k + p]);
            tol_dx[i * k + p] = gn * mag;
        }
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; j++) { /* dW [n, k] = dy^T x, dbias [n] */
        double *row = tol_dw + j * k, mag = 0;
        for (int64_t p = 0; p < k; p++)
            row[p] = 0.0;
        for (int64_t i = 0; i < m; i++) {
            double g = fabs((double)dy[i * n + j]);
            mag += g;
            for (int64_t p = 0; p < k; p++)
                row[p] += g * fabs((double)x[i * k + p]);
        }
        for (int64_t p = 0; p < k; p++)
            row[p] *= gm;
        tol_dbias[j] = EPS * (double)m * mag;
    }
}

void conf_tol_gelu_grad(const float *x, const float *dy, const float *ref, int64_t n, double *tol)
{
    for (int64_t i = 0; i < n; i++) {
        double z = x[i], cdf = 0.5 * erfc(-z / sqrt(2.0));
        double pdf = 0.39894228040143267794 * exp(-0.5 * z * z), g = fabs((double)dy[i]);
        tol[i] =
            EPS * (g * (10.0 * cdf + 3.0 + fabs(z) * pdf * (z * z + 7.0)) + fabs((double)ref[i])) +
            FLT_MIN * g;
    }
}

elastic_status conf_tol_attention_grad(const float *q, const float *k, const float *v,
                                       const float *dy, const int32_t *key_len, int64_t batch,
                                       int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                                       double *tol_dq, double *tol_dk, double *tol_dv)
{
    int64_t dh = d / heads;
    double scale = 1.0 / sqrt((double)dh);
    double e = conf_attention_weight_error(q, k, batch, nq, nk, d, heads);
    double *p = malloc((size_t)(nk > 0 ? nk : 1) * sizeof *p);
    if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (attention tolerance)");
    for (int64_t i = 0; i < batch * nq * d; i++)
        tol_dq[i] = 0.0;
    for (int64_t i = 0; i < batch * nk * d; i++)
        tol_dk[i] = tol_dv[i] = 0.0;
    for (int64_t b = 0; b < batch; b++) {
        int64_t valid = visible_end(key_len, b, nk);
        for (int h = 0; h < heads; h++)
            for (int64_t i = 0; i < nq; i++) {
                int64_t first = causal ? i : 0;
                if (first >= valid) continue;
                const float *qi = q + (b * nq + i) * d + h * dh,
                            *gi = dy + (b * nq + i) * d + h * dh;
                double mx = -INFINITY, sum = 0, D = 0;
                for (int64_t j = first; j < valid; j++) {
                    const float *kj = k + (b * nk + j) * d + h * dh;
                    const float *vj = v + (b * nk + j) * d + h * dh;
                    double s = 0, dv = 0;
                    for (int64_t c = 0; c < dh; c++) {
                        s += (double)qi[c] * kj[c];
                        dv += fabs((double)gi[c] * vj[c]);
                    }
                    p[j] = s * scale;
                    mx = fmax(mx, p[j]);
                    D = fmax(D, dv);
                }
                for (int64_t j = first; j < valid; j++)
                    sum += (p[j] = exp(p[j] - mx));
                int64_t nvis = valid - first;
                double eta = 3.0 * e + (double)(nvis + 2 * dh + 12) * EPS;
                double fq = scale * D * (eta + 2.0 * (double)(nvis + 2) * EPS);
                double fk = scale * D * (eta + 2.0 * (double)(nq + 2) * EPS);
                double fv = e + (double)(nq + 2) * EPS;
                double *tq = tol_dq + (b * nq + i) * d + h * dh;
                for (int64_t j = first; j < valid; j++) {
                    double pj = p[j] / sum;
                    const float *kj = k + (b * nk + j) * d + h * dh;
                    double *tk = tol_dk + (b * nk + j) * d + h * dh;
                    double *tv = tol_dv + (b * nk + j) * d + h * dh;
                    for (int64_t c = 0; c < dh; c++) {
                        tq[c] += fq * pj * fabs((double)kj[c]);
                        tk[c] += fk * pj * fabs((double)qi[c]);
                        tv[c] += fv * pj * fabs((double)gi[c]);
                    }
                }
            }
    }
    free(p);
    return ELASTIC_OK;
}

/* sel[0..t-1]: the t largest of s[0..n-1], ties by the smaller index. */
static void top_indices(const double *s, int64_t n, int64_t t, int64_t *sel)
{
    for (int64_t r = 0; r < t; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            int taken = 0;
            for (int64_t q = 0; q < r; q++)
                taken |= sel[q] == i;
            if (!taken && (best < 0 || s[i] > s[best])) best = i;
        }
        sel[r] = best;
    }
}

void conf_pkm_select(const float *qa, const float *subkeys, int64_t c, int64_t m, int64_t t,
                     double *scratch, int64_t *iscratch, int64_t *slot, double *weight)
{
    int64_t half = c / 2;
    const float *qb = qa + half;
    double *sa = scratch, *sb = sa + m, *pair = sb + m;
    int64_t *A = iscratch, *B = A + t, *best = B + t, *pslot = best + t;
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
    int64_t np = 0; /* the t*t pairs in slot order: ties go to the smaller slot */
    for (int64_t xi = 0; xi < m; xi++)
        for (int64_t yi = 0; yi < m; yi++) {
            int inA = 0, inB = 0;
            for (int64_t r = 0; r < t; r++)
                inA |= A[r] == xi, inB |= B[r] == yi;
            if (!inA || !inB) continue;
            pair[np] = sa[xi] + sb[yi];
            pslot[np++] = xi * m + yi;
        }
    top_indices(pair, np, t, best);
    double mx = pair[best[0]], sum = 0;
    for (int64_t i = 0; i < t; i++)
        sum += (weight[i] = exp(pair[best[i]] - mx));
    for (int64_t i = 0; i < t; i++) {
        weight[i] /= sum;
        slot[i] = pslot[best[i]];
    }
}

elastic_status conf_tol_pkm_grad(const float *query, const float *subkeys, const float *values,
                                 const float *dy, int64_t batch, int64_t experts, int64_t c,
                                 int64_t m, int64_t t, int64_t d, double *tol_dquery,
                                 double *tol_dsubkeys, double *tol_dvalues)
{
    int64_t half = c / 2, rows = batch * experts;
    double e = pkm_weight_error(query, subkeys, batch, experts, c, m, t);
    double *scratch = malloc((size_t)(2 * m + t * t + 2 * rows * t) * sizeof *scratch);
    int64_t *iscratch =
        malloc((size_t)(3 * t + t * t + rows * t + m * m + 2 * m) * sizeof(int64_t));
    if (!scratch || !iscratch) {
        free(scratch);
        free(iscratch);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (pkm tolerance)");
    }
    double *w = scratch + 2 * m + t * t, *gv = w + rows * t;
    int64_t *slot = iscratch + 3 * t + t * t, *hits = slot + rows * t, *hits_sub = hits + m * m;
    for (int64_t s = 0; s < m * m; s++)
        hits[s] = 0;
    for (int64_t s = 0; s < 2 * m; s++)
        hits_sub[s] = 0;
    for (int64_t r = 0; r < rows; r++) {
        conf_pkm_select(query + r * c, subkeys, c, m, t, scratch, iscratch, slot + r * t,
                        w + r * t);
        double g = 0;
        for (int64_t i = 0; i < t; i++) {
            int64_t s = slot[r * t + i];
            hits[s]++;
            hits_sub[s / m]++;
            hits_sub[m + s % m]++;
            double dw = 0;
            for (int64_t j = 0; j < d; j++)
                dw += fabs((double)dy[r * d + j] * values[s * d + j]);
            g = fmax(g, dw);
        }
        gv[r] = g;
    }
    for (int64_t i = 0; i < rows * c; i++)
        tol_dquery[i] = 0.0;
    for (int64_t i = 0; i < 2 * m * half; i++)
        tol_dsubkeys[i] = 0.0;
    for (int64_t i = 0; i < m * m * d; i++)
        tol_dvalues[i] = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *qa = query + r * c, *qb = qa + half;
        double zeta = 3.0 * e + (double)(2 * d + t + 12) * EPS;
        for (int64_t i = 0; i < t; i++) {
            int64_t s = slot[r * t + i], x = s / m, y = s % m;
            double wi = w[r * t + i], f = wi * gv[r];
            double fv = wi * (e + (double)(hits[s] + 2) * EPS);
            for (int64_t j = 0; j < d; j++)
                tol_dvalues[s * d + j] += fv * fabs((double)dy[r * d + j]);
            const float *ka = subkeys + x * half, *kb = subkeys + (m + y) * half;
            double fa = f * (zeta + 2.0 * (double)(hits_sub[x] + 2) * EPS);
            double fb = f * (zeta + 2.0 * (double)(hits_sub[m + y] + 2) * EPS);
            double fq = f * (zeta + 2.0 * (double)(t + 2) * EPS);
            for (int64_t p = 0; p < half; p++) {
                tol_dsubkeys[x * half + p] += fa * fabs((double)qa[p]);
                tol_dsubkeys[(m + y) * half + p] += fb * fabs((double)qb[p]);
                tol_dquery[r * c + p] += fq * fabs((double)ka[p]);
                tol_dquery[r * c + half + p] += fq * fabs((double)kb[p]);
            }
        }
    }
    free(scratch);
    free(iscratch);
    return ELASTIC_OK;
}

elastic_status conf_tol_view_grad(const float *dv, int ndim, const int64_t *shape,
                                  const int64_t *strides, int64_t offset, int64_t src_numel,
                                  double *tol)
{
    /* tol first holds sum |dv| per source element; hits count the terms */
    int64_t *hits = calloc((size_t)(src_numel > 0 ? src_numel : 1), sizeof *hits);
    if (!hits) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (view tolerance)");
    for (int64_t i = 0; i < src_numel; i++)
        tol[i] = 0.0;
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0}, o = 0;
    for (int i = 0; i < ndim; i++) {
        sh[4 - ndim + i] = shape[i];
        st[4 - ndim + i] = strides[i];
    }
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++)
                for (int64_t e = 0; e < sh[3]; e++) {
                    int64_t at = offset + a * st[0] + b * st[1] + c * st[2] + e * st[3];
                    tol[at] += fabs((double)dv[o++]);
                    hits[at]++;
                }
    for (int64_t i = 0; i < src_numel; i++)
        tol[i] = hits[i] > 1 ? EPS * (double)(hits[i] - 1) * tol[i] : 0.0;
    free(hits);
    return ELASTIC_OK;
}
