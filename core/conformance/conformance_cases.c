/*
 * conformance_cases.c - op cases, input generation and per-op tolerances of
 * the conformance suite (see conformance_cases.h).
 *
 * Tolerances follow the usual forward error bounds for float32 arithmetic
 * (eps = 2^-24 per rounding, written EPS below as 2^-23 to leave a factor 2):
 *   - a dot product of length K: |err| <= K * EPS * sum |x_k w_k|, so LINEAR
 *     gets (K + 2) * EPS * (|b| + sum |x w|) per element;
 *   - a mean of n terms: (n + 2) * EPS * max |x|;
 *   - LAYER_NORM: two reductions of d terms and a division by a square root:
 *     (d + 8) * EPS * (|y - b| + |w| + |b|), four times over;
 *   - GELU: erff is within 2 ulp and 1 + erf may cancel for negative inputs,
 *     so the error is measured against 0.5|x| + |y|: 8 EPS of that;
 *   - ATTENTION: a logit of head width dh carries (dh + 4) EPS * L, where L
 *     bounds |q.k| * scale; exp turns it into a relative error of the
 *     weights, and normalising over nk keys adds (nk + 4) EPS, all scaled by
 *     the largest |v|;
 *   - ATTENTION_PROBS: the same logit error, relative to each weight;
 *     ATTENTION_MIX: a dot product of length nk, as LINEAR;
 *   - PKM: the same for the subkey scores (width c/2 per half) and the t
 *     softmax weights, scaled by the largest |value|;
 *   - GATHER, COPY, TOPK and every case with small-integer inputs: exact.
 */
#include "conformance/conformance_cases.h"

#include <math.h>
#include <string.h>

#include "base/rng.h"

#define EPS 0x1.0p-23

static conf_case all_cases[ELASTIC_OP_COUNT][12];
static int n_cases[ELASTIC_OP_COUNT];

static conf_input f32(int ndim, int64_t a, int64_t b, int64_t c, int64_t d)
{
    conf_input in;
    memset(&in, 0, sizeof in);
    in.dtype = ELASTIC_DTYPE_F32;
    in.ndim = ndim;
    int64_t s[4] = {a, b, c, d};
    memcpy(in.shape, s, sizeof s);
    in.fill = CONF_FILL_UNIFORM;
    in.lo = -1;
    in.hi = 1;
    return in;
}

static conf_input i32(int ndim, int64_t a, int64_t b, conf_fill fill, double lo, double hi)
{
    conf_input in = f32(ndim, a, b, 0, 0);
    in.dtype = ELASTIC_DTYPE_I32;
    in.fill = fill;
    in.lo = lo;
    in.hi = hi;
    return in;
}

static conf_input absent(void)
{
    conf_input in;
    memset(&in, 0, sizeof in);
    in.absent = 1;
    return in;
}

static conf_input range(conf_input in, double lo, double hi)
{
    in.lo = lo;
    in.hi = hi;
    return in;
}

static conf_case *add_case(elastic_op op, const char *label)
{
    conf_case *c = &all_cases[op][n_cases[op]++];
    memset(c, 0, sizeof *c);
    c->op = op;
    strncpy(c->label, label, sizeof c->label - 1);
    return c;
}

static void gather_case(int64_t rows, int64_t d, int64_t n0, int64_t n1, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_GATHER, label);
    c->exact = 1;
    c->n_inputs = 2;
    c->in[0] = f32(2, rows, d, 0, 0);
    c->in[1] = i32(n1 ? 2 : 1, n0, n1, CONF_FILL_INDEX, 0, (double)rows - 1);
}

static void add_case2(conf_input a, conf_input b, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_ADD, label);
    c->n_inputs = 2;
    c->in[0] = a;
    c->in[1] = b;
}

static void mean_case(int64_t B, int64_t n, int64_t d, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_MASKED_MEAN, label);
    c->n_inputs = 2;
    c->in[0] = f32(3, B, n, d, 0);
    c->in[1] = i32(1, B, 0, CONF_FILL_LENGTHS, 1, (double)n);
}

static void ln_case(int64_t rows, int64_t d, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_LAYER_NORM, label);
    c->n_inputs = 3;
    c->params.eps = 1e-5f;
    c->in[0] = range(f32(2, rows, d, 0, 0), -3, 5);
    c->in[1] = range(f32(1, d, 0, 0, 0), 0.5, 1.5);
    c->in[2] = f32(1, d, 0, 0, 0);
}

static void linear_case(int64_t m, int64_t n, int64_t k, int bias, int small_int,
                        const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_LINEAR, label);
    c->n_inputs = 3;
    c->in[0] = f32(2, m, k, 0, 0);
    c->in[1] = f32(2, n, k, 0, 0);
    c->in[2] = bias ? f32(1, n, 0, 0, 0) : absent();
    if (small_int) {
        for (int i = 0; i < 3; i++) {
            c->in[i].fill = CONF_FILL_SMALL_INT;
            c->in[i].lo = -8;
            c->in[i].hi = 8;
        }
        c->exact = 1;
    }
}

static void gelu_case(int64_t n, double lo, double hi, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_GELU, label);
    c->n_inputs = 1;
    c->in[0] = range(f32(1, n, 0, 0, 0), lo, hi);
}

/* ATTENTION (q, k, v, key_len) or ATTENTION_PROBS (q, k, key_len). */
static void attn_op_case(elastic_op op, int64_t B, int64_t nq, int64_t nk, int64_t d, int heads,
                         int causal, int masked, const char *label)
{
    conf_case *c = add_case(op, label);
    int with_v = op == ELASTIC_OP_ATTENTION;
    c->n_inputs = 3 + with_v;
    c->params.heads = heads;
    c->params.causal = causal;
    c->in[0] = range(f32(3, B, nq, d, 0), -2, 2);
    c->in[1] = range(f32(3, B, nk, d, 0), -2, 2);
    if (with_v) c->in[2] = f32(3, B, nk, d, 0);
    c->in[2 + with_v] = masked ? i32(1, B, 0, CONF_FILL_LENGTHS, 1, (double)nk) : absent();
}

static void attn_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                      int masked, const char *label)
{
    attn_op_case(ELASTIC_OP_ATTENTION, B, nq, nk, d, heads, causal, masked, label);
}

static void probs_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                       int masked, const char *label)
{
    attn_op_case(ELASTIC_OP_ATTENTION_PROBS, B, nq, nk, d, heads, causal, masked, label);
}

static void mix_case(int64_t B, int heads, int64_t nq, int64_t nk, int64_t d, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_ATTENTION_MIX, label);
    c->n_inputs = 2;
    c->in[0] = range(f32(4, B, heads, nq, nk), 0, 1);
    c->in[1] = f32(3, B, nk, d, 0);
}

static void pkm_case(int64_t B, int k, int64_t cc, int64_t m, int t, int64_t d, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_PKM, label);
    c->n_inputs = 3;
    c->params.experts = k;
    c->params.mem_topk = t;
    c->in[0] = range(f32(2, B, k * cc, 0, 0), -2, 2);
    c->in[1] = f32(3, 2, m, cc / 2, 0);
    c->in[2] = f32(2, m * m, d, 0, 0);
}

static void topk_case(int64_t B, int64_t items, int K, int64_t E, int with_nan, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_TOPK, label);
    c->exact = 1;
    c->n_inputs = 2;
    c->params.top_k = K;
    c->in[0] = f32(2, B, items, 0, 0);
    if (with_nan) c->in[0].fill = CONF_FILL_WITH_NAN;
    c->in[1] = E ? i32(2, B, E, CONF_FILL_INDEX, 0, (double)items) : absent();
}

static void copy_case(int ndim, const int64_t *shape, const int64_t *strides, int64_t offset,
                      int64_t base_numel, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_COPY, label);
    c->exact = 1;
    c->n_inputs = 1;
    c->in[0] = f32(ndim, shape[0], ndim > 1 ? shape[1] : 0, ndim > 2 ? shape[2] : 0,
                   ndim > 3 ? shape[3] : 0);
    memcpy(c->in[0].strides, strides, (size_t)ndim * sizeof *strides);
    c->in[0].view_offset = offset;
    c->in[0].base_numel = base_numel;
}

static void build_cases(void)
{
    gather_case(1, 1, 1, 0, "table [1,1], 1 index");
    gather_case(7, 3, 5, 0, "odd sizes");
    gather_case(3707, 64, 16, 33, "item_emb [3707,64], idx [16,33]");

    add_case2(f32(1, 1, 0, 0, 0), f32(1, 1, 0, 0, 0), "size 1");
    add_case2(f32(3, 3, 5, 7, 0), f32(2, 5, 7, 0, 0), "[3,5,7] + [5,7]");
    add_case2(f32(3, 8, 200, 64, 0), f32(2, 200, 64, 0, 0), "embed [8,200,64] + pos");
    add_case2(f32(2, 33, 17, 0, 0), f32(2, 33, 17, 0, 0), "same shape, odd");

    mean_case(1, 1, 1, "[1,1,1]");
    mean_case(3, 17, 5, "odd, padded");
    mean_case(4, 1000, 64, "long, heavy padding");

    ln_case(1, 1, "d=1");
    ln_case(7, 3, "odd");
    ln_case(33, 64, "[33,64]");
    ln_case(5, 1000, "long rows");

    linear_case(1, 1, 1, 1, 0, "1x1x1");
    linear_case(2, 3, 5, 0, 0, "tiny, no bias");
    linear_case(17, 33, 65, 1, 0, "odd sizes");
    linear_case(3, 7, 1000, 1, 0, "long reduction K=1000");
    linear_case(300, 256, 64, 1, 0, "FFN fc1 shape");
    linear_case(256, 3706, 64, 0, 0, "scores [256,64]x[3706,64]^T");
    linear_case(37, 29, 1000, 1, 1, "small integers: exact");

    gelu_case(1, 1, 1.0001, "x=1");
    gelu_case(7, -6, 6, "odd");
    gelu_case(100000, -8, 8, "long, tails");

    attn_case(1, 1, 1, 1, 1, 0, 0, "all sizes 1");
    attn_case(2, 16, 200, 64, 2, 0, 1, "aggregation k=16 over 200, padded");
    attn_case(3, 37, 16, 64, 2, 0, 0, "dispatch 37 over 16");
    attn_case(2, 50, 50, 32, 4, 1, 1, "causal, padded");
    attn_case(2, 33, 33, 12, 3, 1, 0, "causal, d=12 h=3");
    attn_case(1, 16, 4096, 64, 2, 0, 1, "long keys 4096");

    pkm_case(1, 1, 2, 1, 1, 1, "m=1 t=1 c=2");
    pkm_case(2, 4, 32, 8, 4, 32, "small");
    pkm_case(3, 16, 64, 128, 8, 64, "default shape");
    pkm_case(1, 3, 6, 2, 2, 5, "m=2 t=m, odd d");
    pkm_case(2, 2, 16, 5, 5, 8, "t=m=5");

    topk_case(1, 1, 1, 0, 0, "one item");
    topk_case(2, 10, 10, 3, 0, "K = I, exclusions");
    topk_case(4, 3706, 10, 200, 0, "I=3706, 200 exclusions");
    topk_case(3, 100, 37, 0, 0, "K=37 odd");
    topk_case(2, 50, 12, 5, 1, "NaN and Inf scores");

    probs_case(1, 1, 1, 1, 1, 0, 0, "all sizes 1");
    probs_case(2, 16, 200, 64, 2, 0, 1, "aggregation k=16 over 200, padded");
    probs_case(2, 50, 50, 32, 4, 1, 1, "causal, padded");
    probs_case(2, 33, 33, 12, 3, 1, 0, "causal, d=12 h=3");
    probs_case(3, 1, 300, 64, 2, 1, 1, "most recent query only, padded");
    probs_case(1, 5, 7, 260, 1, 1, 0, "head width 260");

    mix_case(1, 1, 1, 1, 1, "all sizes 1");
    mix_case(2, 4, 50, 50, 32, "causal shape, h=4");
    mix_case(3, 2, 37, 16, 64, "dispatch 37 over 16");
    mix_case(2, 3, 33, 33, 12, "d=12 h=3");
    mix_case(1, 2, 16, 4096, 64, "long keys 4096");
    mix_case(1, 1, 5, 7, 260, "head width 260");

    const int64_t s1[3] = {2, 1, 4}, st1[3] = {20, 4, 1};
    copy_case(3, s1, st1, 0, 40, "x[:,0:1,:] of [2,5,4]");
    const int64_t s2[2] = {4, 3}, st2[2] = {1, 4};
    copy_case(2, s2, st2, 0, 12, "transpose [3,4]");
    const int64_t s3[4] = {2, 3, 2, 5}, st3[4] = {70, 20, 7, 1};
    copy_case(4, s3, st3, 3, 140, "4-d strided, offset 3");
}

int conf_cases_for(elastic_op op, const conf_case **cases)
{
    static int built; /* (cases are added for inference ops only, for now) */
    if (!built) {
        build_cases();
        built = 1;
    }
    if (op < 0 || op >= ELASTIC_OP_COUNT) return 0;
    *cases = all_cases[op];
    return n_cases[op];
}

void conf_fill_input(const conf_case *c, int i, void *data, int64_t n, uint64_t seed)
{
    const conf_input *in = &c->in[i];
    float *f = data;
    int32_t *x = data;
    for (int64_t j = 0; j < n; j++) {
        double u = elastic_rng_uniform(seed, (uint64_t)i, (uint64_t)j);
        switch (in->fill) {
        case CONF_FILL_UNIFORM: f[j] = (float)(in->lo + (in->hi - in->lo) * u); break;
        case CONF_FILL_SMALL_INT: f[j] = (float)floor(in->lo + (in->hi - in->lo + 1) * u); break;
        case CONF_FILL_INDEX: x[j] = (int32_t)floor(in->lo + (in->hi - in->lo + 1) * u); break;
        case CONF_FILL_LENGTHS: /* the longest, the shortest, then random */
            x[j] = j == 0 ? (int32_t)in->hi
                   : j == 1 ? (int32_t)in->lo
                            : (int32_t)floor(in->lo + (in->hi - in->lo + 1) * u);
            break;
        case CONF_FILL_WITH_NAN: {
            double v = elastic_rng_uniform(seed, 1000 + (uint64_t)i, (uint64_t)j);
            f[j] = v < 0.05 ? NAN : v < 0.08 ? INFINITY : v < 0.1 ? -INFINITY : (float)(2 * u - 1);
            break;
        }
        }
    }
}

/* Largest |x| over n floats of a host input. */
static double max_abs(const float *x, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)x[i]) > m) m = fabs((double)x[i]);
    return m;
}

static int64_t numel(const conf_input *in)
{
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++) n *= in->shape[i];
    return n;
}

/* ATTENTION and ATTENTION_PROBS: the relative error of a softmax weight. A
 * logit of head width dh carries (dh + 4) EPS L, L bounding |q.k| * scale,
 * which exp makes relative; normalising over nk keys adds (nk + 4) EPS. */
static double attention_weight_error(const conf_case *c, const float *q, const float *k)
{
    int64_t dh = c->in[0].shape[2] / c->params.heads, nk = c->in[1].shape[1];
    double L = (double)dh * max_abs(q, numel(&c->in[0])) * max_abs(k, numel(&c->in[1])) /
               sqrt((double)dh);
    return EPS * (2.0 * (double)(dh + 4) * (L + 1.0) + 2.0 * (double)(nk + 4));
}

void conf_tolerances(const conf_case *c, const void *const *inputs, const float *ref, int64_t n,
                     double *tol)
{
    const float *a = inputs[0], *b = c->n_inputs > 1 ? inputs[1] : NULL;
    const float *w = c->n_inputs > 2 ? inputs[2] : NULL;
    if (c->exact) {
        for (int64_t i = 0; i < n; i++) tol[i] = 0;
        return;
    }
    switch (c->op) {
    case ELASTIC_OP_ADD: {
        int64_t nb = numel(&c->in[1]);
        for (int64_t i = 0; i < n; i++)
            tol[i] = EPS * (fabs((double)a[i]) + fabs((double)b[i % nb]));
        return;
    }
    case ELASTIC_OP_MASKED_MEAN: {
        double t = (double)(c->in[0].shape[1] + 2) * EPS * max_abs(a, numel(&c->in[0]));
        for (int64_t i = 0; i < n; i++) tol[i] = t;
        return;
    }
    case ELASTIC_OP_LAYER_NORM: {
        int64_t d = c->in[0].shape[c->in[0].ndim - 1];
        for (int64_t i = 0; i < n; i++) {
            double wj = fabs((double)b[i % d]), bj = w[i % d];
            tol[i] = 4.0 * (double)(d + 8) * EPS * (fabs(ref[i] - bj) + wj + fabs(bj));
        }
        return;
    }
    case ELASTIC_OP_LINEAR: { /* per element: (K + 2) EPS (|b| + sum |x w|) */
        int64_t k = c->in[0].shape[1], nn = c->in[1].shape[0];
        for (int64_t i = 0; i < n; i++) {
            int64_t r = i / nn, col = i % nn;
            double mag = w ? fabs((double)w[col]) : 0.0;
            for (int64_t p = 0; p < k; p++) mag += fabs((double)a[r * k + p] * b[col * k + p]);
            tol[i] = (double)(k + 2) * EPS * mag;
        }
        return;
    }
    case ELASTIC_OP_GELU:
        for (int64_t i = 0; i < n; i++)
            tol[i] = 8.0 * EPS * (fabs((double)ref[i]) + 0.5 * fabs((double)a[i])) + 1e-30;
        return;
    case ELASTIC_OP_ATTENTION: {
        double t = attention_weight_error(c, a, b) * max_abs(w, numel(&c->in[2]));
        for (int64_t i = 0; i < n; i++) tol[i] = t;
        return;
    }
    case ELASTIC_OP_ATTENTION_PROBS: { /* relative to each weight */
        double t = attention_weight_error(c, a, b);
        for (int64_t i = 0; i < n; i++) tol[i] = t * fabs((double)ref[i]) + 1e-35;
        return;
    }
    case ELASTIC_OP_ATTENTION_MIX: { /* a dot product of length nk per element */
        int64_t h = c->in[0].shape[1], nq = c->in[0].shape[2], nk = c->in[0].shape[3];
        int64_t d = c->in[1].shape[2], dh = d / h;
        for (int64_t i = 0; i < n; i++) {
            int64_t bb = i / (nq * d), q = i / d % nq, col = i % d;
            const float *p = a + ((bb * h + col / dh) * nq + q) * nk;
            double mag = 0;
            for (int64_t j = 0; j < nk; j++) mag += fabs((double)p[j] * b[(bb * nk + j) * d + col]);
            tol[i] = (double)(nk + 2) * EPS * mag;
        }
        return;
    }
    case ELASTIC_OP_PKM: {
        int64_t half = c->in[1].shape[2];
        double S = 2.0 * (double)half * max_abs(a, numel(&c->in[0])) *
                   max_abs(b, numel(&c->in[1]));
        double t = EPS * (4.0 * (double)(half + 4) * (S + 1.0) + 2.0 * (c->params.mem_topk + 4)) *
                   max_abs(w, numel(&c->in[2]));
        for (int64_t i = 0; i < n; i++) tol[i] = t;
        return;
    }
    default:
        for (int64_t i = 0; i < n; i++) tol[i] = 0;
        return;
    }
}
