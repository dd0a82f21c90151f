/*
 * conformance_cases.c - the op cases of the conformance suite and how their
 * inputs are drawn (see conformance_cases.h), for every op of ops.def: the
 * inference ops first, then the training ops (dropout, the loss and the
 * gradients), each with the edge cases of its forward op. Tolerances are
 * in tolerance.c; a case that must be exact says so (exact = 1), and a case
 * whose reference is meant to be mostly zeros says why (sparse_ok).
 */
#include "conformance/conformance_cases.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "base/rng.h"

#define MAX_CASES 16 /* per op */
static conf_case all_cases[ELASTIC_OP_COUNT][MAX_CASES];
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
    static conf_case spare; /* past MAX_CASES: built, never run (raise MAX_CASES) */
    conf_case *c = n_cases[op] < MAX_CASES ? &all_cases[op][n_cases[op]++] : &spare;
    memset(c, 0, sizeof *c);
    c->op = op;
    strncpy(c->label, label, sizeof c->label - 1);
    return c;
}

/* Exempts outputs of a case from the guard, saying why. */
static conf_case *sparse(conf_case *c, unsigned outputs, const char *why)
{
    c->sparse_ok = outputs;
    c->sparse_why = why;
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

static void linear_case(int64_t m, int64_t n, int64_t k, int bias, int small_int, const char *label)
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
static conf_case *attn_op_case(elastic_op op, int64_t B, int64_t nq, int64_t nk, int64_t d,
                               int heads, int causal, int masked, const char *label)
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
    return c;
}

static void attn_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                      int masked, const char *label)
{
    attn_op_case(ELASTIC_OP_ATTENTION, B, nq, nk, d, heads, causal, masked, label);
}

static conf_case *probs_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                             int masked, const char *label)
{
    return attn_op_case(ELASTIC_OP_ATTENTION_PROBS, B, nq, nk, d, heads, causal, masked, label);
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

/* SCORE_TOPK: small integers (ints = 1) make every score exact, so ties are
 * real and the ids must match; otherwise uniform, with few enough items
 * that no near-tie reaches the K-th place. Candidates (C > 0) are drawn in
 * -1..I+2: repeats and ids outside 1..I included. */
static conf_case *score_topk_case(int64_t B, int64_t items, int64_t d, int K, int64_t E, int64_t C,
                                  int ints, int with_nan, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_SCORE_TOPK, label);
    c->exact = ints;
    c->n_inputs = 4;
    c->params.top_k = K;
    c->in[0] = f32(2, B, d, 0, 0);
    c->in[1] = f32(2, items, d, 0, 0);
    if (ints) {
        c->in[0].fill = c->in[1].fill = CONF_FILL_SMALL_INT;
        c->in[0].lo = c->in[1].lo = -ints;
        c->in[0].hi = c->in[1].hi = ints;
    }
    if (with_nan) c->in[1].fill = CONF_FILL_WITH_NAN;
    c->in[2] = E ? i32(2, B, E, CONF_FILL_INDEX, 0, (double)items) : absent();
    c->in[3] = C ? i32(2, B, C, CONF_FILL_INDEX, -1, (double)items + 2) : absent();
    return c;
}

/* FFN: z, LayerNorm weight (around 1) and bias, fc1 and fc2 with weights
 * of the spec's initial scale and larger. */
static void ffn_case(int ndim, int64_t a, int64_t b, int64_t d, int64_t f, double wscale,
                     const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_FFN, label);
    c->n_inputs = 7;
    c->params.eps = 1e-5f;
    c->in[0] = ndim == 3 ? range(f32(3, a, b, d, 0), -2, 2) : range(f32(2, a, d, 0, 0), -2, 2);
    c->in[1] = range(f32(1, d, 0, 0, 0), 0.5, 1.5);
    c->in[2] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
    c->in[3] = range(f32(2, f, d, 0, 0), -wscale, wscale);
    c->in[4] = range(f32(1, f, 0, 0, 0), -0.2, 0.2);
    c->in[5] = range(f32(2, d, f, 0, 0), -wscale, wscale);
    c->in[6] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
}

/* AGGREGATE: expert queries q [B,m,d] over x [B,n,d] through the LayerNorm
 * and K, V projections, with padded users (key lengths) or all positions. */
static void aggregate_case(int64_t B, int64_t m, int64_t n, int64_t d, int heads, int masked,
                           double wscale, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_AGGREGATE, label);
    c->n_inputs = 9;
    c->params.eps = 1e-5f;
    c->params.heads = heads;
    c->in[0] = range(f32(3, B, m, d, 0), -2, 2);
    c->in[1] = range(f32(3, B, n, d, 0), -2, 2);
    c->in[2] = range(f32(1, d, 0, 0, 0), 0.5, 1.5);
    c->in[3] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
    for (int i = 4; i < 8; i += 2) {
        c->in[i] = range(f32(2, d, d, 0, 0), -wscale, wscale);
        c->in[i + 1] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
    }
    c->in[8] = masked ? i32(1, B, 0, CONF_FILL_LENGTHS, 1, (double)n) : absent();
}

/* DISPATCH: positions x [B,n,d] querying m keys and values per user. */
static void dispatch_case(int64_t B, int64_t n, int64_t m, int64_t d, int heads, double wscale,
                          const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_DISPATCH, label);
    c->n_inputs = 9;
    c->params.eps = 1e-5f;
    c->params.heads = heads;
    c->in[0] = range(f32(3, B, n, d, 0), -2, 2);
    c->in[1] = range(f32(1, d, 0, 0, 0), 0.5, 1.5);
    c->in[2] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
    c->in[3] = range(f32(2, d, d, 0, 0), -wscale, wscale);
    c->in[4] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
    c->in[5] = range(f32(3, B, m, d, 0), -2, 2);
    c->in[6] = f32(3, B, m, d, 0);
    c->in[7] = range(f32(2, d, d, 0, 0), -wscale, wscale);
    c->in[8] = range(f32(1, d, 0, 0, 0), -0.2, 0.2);
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

/* ----------------------------------------------------------- training */

static conf_case *dropout_case(int64_t n0, int64_t n1, int64_t n2, float p, uint64_t mask_seed,
                               const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_DROPOUT, label);
    c->n_inputs = 1;
    c->params.dropout = p;
    c->params.seed = mask_seed; /* the mask, fixed per case; x varies with the seed */
    c->in[0] = f32(n2 ? 3 : n1 ? 2 : 1, n0, n1, n2, 0);
    return c;
}

static conf_case *ce_case(int64_t B, int64_t items, double lo, double hi, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_CROSS_ENTROPY, label);
    c->n_inputs = 2;
    c->in[0] = range(f32(2, B, items, 0, 0), lo, hi);
    c->in[1] = i32(1, B, 0, CONF_FILL_INDEX, 1, (double)items);
    return c;
}

/* dy [n0, n1 (if any), d], indices [n0, n1] into a table of `rows` rows */
static conf_case *gather_grad_case(int64_t rows, int64_t d, int64_t n0, int64_t n1,
                                   const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_GATHER_GRAD, label);
    c->n_inputs = 2;
    c->params.rows = rows;
    c->in[0] = n1 ? f32(3, n0, n1, d, 0) : f32(2, n0, d, 0, 0);
    c->in[1] = i32(n1 ? 2 : 1, n0, n1, CONF_FILL_INDEX, 0, (double)rows - 1);
    return c;
}

static conf_case *sum_rows_case(conf_input x, int keep, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_SUM_ROWS, label);
    c->n_inputs = 1;
    c->params.keep = keep;
    c->in[0] = x;
    return c;
}

/* dy [B, d], lengths [B]: the first hi, the second lo, the rest in lo..hi */
static conf_case *mean_grad_case(int64_t B, int64_t n, int64_t d, double lo, double hi,
                                 const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_MASKED_MEAN_GRAD, label);
    c->n_inputs = 2;
    c->params.rows = n;
    c->in[0] = f32(2, B, d, 0, 0);
    c->in[1] = i32(1, B, 0, CONF_FILL_LENGTHS, lo, hi);
    return c;
}

static conf_case *ln_grad_case(int64_t rows, int64_t d, double lo, double hi, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_LAYER_NORM_GRAD, label);
    c->n_inputs = 3;
    c->params.eps = 1e-5f;
    c->in[0] = range(f32(2, rows, d, 0, 0), lo, hi);
    c->in[1] = range(f32(1, d, 0, 0, 0), 0.5, 1.5);
    c->in[2] = f32(2, rows, d, 0, 0);
    return c;
}

/* x [m, k] (or [m0, m1, k] when m1), W [n, k], dy [m, n] */
static conf_case *linear_grad_case(int64_t m0, int64_t m1, int64_t n, int64_t k, int small_int,
                                   const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_LINEAR_GRAD, label);
    c->n_inputs = 3;
    c->in[0] = m1 ? f32(3, m0, m1, k, 0) : f32(2, m0, k, 0, 0);
    c->in[1] = f32(2, n, k, 0, 0);
    c->in[2] = m1 ? f32(3, m0, m1, n, 0) : f32(2, m0, n, 0, 0);
    if (small_int) {
        for (int i = 0; i < 3; i++) {
            c->in[i].fill = CONF_FILL_SMALL_INT;
            c->in[i].lo = -8;
            c->in[i].hi = 8;
        }
        c->exact = 1;
    }
    return c;
}

static conf_case *gelu_grad_case(int64_t n, double lo, double hi, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_GELU_GRAD, label);
    c->n_inputs = 2;
    c->in[0] = range(f32(1, n, 0, 0, 0), lo, hi);
    c->in[1] = f32(1, n, 0, 0, 0);
    return c;
}

/* q [B,nq,d], k, v [B,nk,d], dy [B,nq,d], and key lengths in len_lo..nk when
 * len_lo >= 0 (the first user nk, the second len_lo) */
static conf_case *attn_grad_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads,
                                 int causal, int len_lo, const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_ATTENTION_GRAD, label);
    c->n_inputs = len_lo >= 0 ? 5 : 4;
    c->params.heads = heads;
    c->params.causal = causal;
    c->in[0] = range(f32(3, B, nq, d, 0), -2, 2);
    c->in[1] = range(f32(3, B, nk, d, 0), -2, 2);
    c->in[2] = f32(3, B, nk, d, 0);
    c->in[3] = f32(3, B, nq, d, 0);
    if (len_lo >= 0) c->in[4] = i32(1, B, 0, CONF_FILL_LENGTHS, len_lo, (double)nk);
    return c;
}

static conf_case *pkm_grad_case(int64_t B, int k, int64_t cc, int64_t m, int t, int64_t d,
                                const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_PKM_GRAD, label);
    c->n_inputs = 4;
    c->params.experts = k;
    c->params.mem_topk = t;
    c->in[0] = range(f32(2, B, k * cc, 0, 0), -2, 2);
    c->in[1] = f32(3, 2, m, cc / 2, 0);
    c->in[2] = f32(2, m * m, d, 0, 0);
    c->in[3] = f32(3, B, k, d, 0);
    return c;
}

/* dv [shape] of a view (strides, offset) into a source [src_shape] */
static conf_case *view_grad_case(int ndim, const int64_t *shape, const int64_t *strides,
                                 int64_t offset, int src_ndim, const int64_t *src_shape,
                                 const char *label)
{
    conf_case *c = add_case(ELASTIC_OP_VIEW_GRAD, label);
    c->n_inputs = 1;
    c->in[0] = f32(ndim, shape[0], ndim > 1 ? shape[1] : 0, ndim > 2 ? shape[2] : 0,
                   ndim > 3 ? shape[3] : 0);
    c->params.src_ndim = src_ndim;
    memcpy(c->params.src_shape, src_shape, (size_t)src_ndim * sizeof *src_shape);
    memcpy(c->params.view_strides, strides, (size_t)ndim * sizeof *strides);
    c->params.view_offset = offset;
    return c;
}

/* The training ops: the edge cases of each one's forward op, one small case
 * per op marked self_check (the oracle's check against finite differences),
 * and a reason for every output exempted from the guard. */
static void build_training_cases(void)
{
    const char *padding = "padding: rows past each length get no gradient";
    const char *scatter = "a scatter: rows never gathered stay zero";
    const char *outside = "a view's gradient is zero outside the view";
    /* the ds_i of a row sum to 0, so when its kept pairs share a sub-key
     * the sub-key's and the query half's gradients cancel to 0 */
    const char *few_kept = "few kept pairs: unselected values and sub-keys get 0, and shared "
                           "sub-keys cancel (the ds of a row sum to 0)";

    dropout_case(7, 0, 0, 0.0f, 1, "p=0: the identity");
    dropout_case(1, 0, 0, 0.2f, 3, "size 1, p=0.2");
    dropout_case(3, 5, 7, 0.2f, 5, "odd [3,5,7]: part of a 4-mask draw, p=0.2")->self_check = 1;
    dropout_case(8, 200, 64, 0.2f, 7, "embed [8,200,64], p=0.2");
    sparse(dropout_case(1001, 0, 0, 0.9f, 9, "p=0.9: most dropped"), CONF_SPARSE(0),
           "p = 0.9 zeroes nine elements in ten by design");

    sparse(ce_case(2, 1, -1, 1, "one item: loss and gradient exactly 0"), CONF_SPARSE_ALL,
           "with one item softmax is 1: the loss and the gradient are exactly 0");
    ce_case(1, 2, -1, 1, "B1 I2");
    ce_case(3, 7, -3, 3, "B3 I7 odd")->self_check = 1;
    ce_case(5, 3706, -3, 3, "B5 I3706 (ML-1M catalogue)");
    ce_case(4, 50, -20, 20, "wide scores: sharp softmax");
    ce_case(3, 10, 995, 1005, "scores near 1000: the max shift");
    { /* targets 0 mark ignored rows (the gathered positions' padding) */
        conf_case *c = ce_case(16, 5, -3, 3, "B16 I5, some targets 0: rows ignored");
        c->in[1].lo = 0;
        c->self_check = 1;
    }

    gather_grad_case(1, 1, 1, 0, "table [1,1], 1 index");
    gather_grad_case(5, 3, 31, 0, "31 indices into 5 rows: duplicates")->self_check = 1;
    gather_grad_case(3, 5, 1000, 0, "1000 indices into 3 rows: long sums");
    gather_grad_case(20, 17, 4, 9, "idx [4,9] into 20 rows, d=17");
    sparse(gather_grad_case(3707, 64, 16, 33, "item_emb [3707,64], idx [16,33]"), CONF_SPARSE(0),
           scatter);

    sum_rows_case(f32(1, 1, 0, 0, 0), 1, "[1]");
    sum_rows_case(f32(2, 7, 3, 0, 0), 1, "[7,3] keep 1")->self_check = 1;
    sum_rows_case(f32(2, 1000, 3, 0, 0), 1, "[1000,3]: long sums");
    sum_rows_case(f32(2, 600, 17, 0, 0), 1, "[600,17]: past 256-row chunks");
    sum_rows_case(f32(3, 4, 5, 6, 0), 2, "[4,5,6] keep 2");
    sum_rows_case(f32(3, 8, 200, 64, 0), 2, "position embedding [8,200,64] keep 2");
    sum_rows_case(f32(2, 3, 5, 0, 0), 2, "keep all: nothing summed");

    mean_grad_case(1, 1, 1, 1, 1, "[1,1,1]");
    mean_grad_case(4, 9, 6, 7, 9, "lengths 7..9 of 9")->self_check = 1;
    mean_grad_case(3, 5, 4, 5, 12, "lengths past n (clamped)");
    sparse(mean_grad_case(3, 17, 5, 1, 17, "odd, padded"), CONF_SPARSE(0), padding);
    sparse(mean_grad_case(4, 1000, 64, 1, 1000, "long, heavy padding"), CONF_SPARSE(0), padding);

    sparse(ln_grad_case(3, 1, -3, 5, "d=1: dx = dweight = 0"), CONF_SPARSE(0) | CONF_SPARSE(1),
           "with d = 1 every xhat is 0: dx and dweight are exactly 0");
    ln_grad_case(7, 3, -3, 5, "odd [7,3]")->self_check = 1;
    ln_grad_case(33, 64, -3, 5, "[33,64]");
    ln_grad_case(5, 1000, -3, 5, "long rows d=1000");
    ln_grad_case(600, 8, -3, 5, "600 rows: past 256-row chunks");
    ln_grad_case(4, 32, 99, 101, "mean 100, spread 1: cancellation");

    linear_grad_case(1, 0, 1, 1, 0, "1x1x1");
    linear_grad_case(3, 0, 2, 5, 0, "tiny [3,5] x [2,5]")->self_check = 1;
    linear_grad_case(17, 0, 33, 65, 0, "odd sizes");
    linear_grad_case(2, 9, 6, 11, 0, "3-d x [2,9,11]");
    linear_grad_case(1100, 0, 7, 5, 0, "M=1100: past 512-row chunks");
    linear_grad_case(3, 0, 1000, 7, 0, "long reduction N=1000 for dx");
    linear_grad_case(300, 0, 256, 64, 0, "FFN fc1 shape");
    linear_grad_case(37, 0, 29, 100, 1, "small integers: exact");

    gelu_grad_case(1, 1, 1.0001, "x=1");
    gelu_grad_case(7, -6, 6, "odd")->self_check = 1;
    gelu_grad_case(100000, -8, 8, "long, tails");
    gelu_grad_case(1000, -20, 20, "far tails (underflow)");

    sparse(attn_grad_case(1, 1, 1, 1, 1, 0, -1, "all sizes 1"), CONF_SPARSE(0) | CONF_SPARSE(1),
           "one key: its weight is 1 whatever the logits, so dq and dk are exactly 0");
    attn_grad_case(2, 3, 5, 6, 3, 0, -1, "B2 nq3 nk5 d6 h3")->self_check = 1;
    sparse(attn_grad_case(2, 16, 200, 64, 2, 0, 1, "aggregation k=16 over 200, padded"),
           CONF_SPARSE_ALL,
           "padding: keys past each length get no gradient, and a user with one key (weight "
           "1) none for its queries");
    attn_grad_case(3, 37, 16, 64, 2, 0, -1, "dispatch 37 over 16");
    sparse(attn_grad_case(2, 50, 50, 32, 4, 1, 1, "causal, padded"), CONF_SPARSE_ALL,
           "padding: hidden keys, and queries that see none, get no gradient");
    attn_grad_case(2, 33, 33, 12, 3, 1, -1, "causal, d=12 h=3");
    sparse(attn_grad_case(3, 4, 9, 8, 2, 0, 0, "a user with no keys"), CONF_SPARSE_ALL,
           "a user with no keys, and padded keys, get no gradient");
    attn_grad_case(1, 16, 1000, 64, 2, 0, -1, "long keys 1000");

    sparse(pkm_grad_case(1, 1, 2, 1, 1, 1, "m=1 t=1 c=2"), CONF_SPARSE(0) | CONF_SPARSE(1),
           "t = 1: the weight is 1 whatever the scores, so query and sub-keys get 0");
    sparse(pkm_grad_case(2, 3, 4, 5, 2, 3, "B2 k3 c4 m5 t2 d3"), CONF_SPARSE_ALL, few_kept)
        ->self_check = 1;
    sparse(pkm_grad_case(2, 4, 32, 8, 4, 32, "small"), CONF_SPARSE(2),
           "values rows no query selected get no gradient");
    sparse(pkm_grad_case(3, 16, 64, 128, 8, 64, "default shape"), CONF_SPARSE(1) | CONF_SPARSE(2),
           "sub-keys and values no query selected get 0");
    sparse(pkm_grad_case(1, 3, 6, 2, 2, 5, "m=2 t=m, odd d"), CONF_SPARSE_ALL, few_kept);
    sparse(pkm_grad_case(2, 2, 16, 5, 5, 8, "t=m=5"), CONF_SPARSE(2),
           "values rows no query selected get no gradient");

    const int64_t s1[3] = {2, 1, 4}, st1[3] = {12, 4, 1}, src1[3] = {2, 3, 4};
    sparse(view_grad_case(3, s1, st1, 0, 3, src1, "row 0 of [2,3,4]"), CONF_SPARSE(0), outside);
    const int64_t s2[2] = {4, 3}, st2[2] = {1, 4}, src2[2] = {3, 4};
    view_grad_case(2, s2, st2, 0, 2, src2, "transpose of [3,4]")->self_check = 1;
    const int64_t s3[1] = {3}, st3[1] = {3}, src3[1] = {10};
    sparse(view_grad_case(1, s3, st3, 1, 1, src3, "every 3rd of [10] from 1"), CONF_SPARSE(0),
           outside);
    const int64_t s4[4] = {2, 1, 2, 2}, st4[4] = {18, 6, 3, 1}, src4[4] = {2, 3, 2, 3};
    sparse(view_grad_case(4, s4, st4, 7, 4, src4, "4-d window of [2,3,2,3] at 7"), CONF_SPARSE(0),
           outside);
    const int64_t s5[2] = {3, 2}, st5[2] = {0, 1}, src5[1] = {5};
    sparse(view_grad_case(2, s5, st5, 2, 1, src5, "broadcast [3,2] of [5] at 2 (overlaps)"),
           CONF_SPARSE(0), outside);
    const int64_t s6[2] = {8, 64}, st6[2] = {200 * 64, 1}, src6[3] = {8, 200, 64};
    sparse(view_grad_case(2, s6, st6, 199 * 64, 3, src6, "last position of [8,200,64]"),
           CONF_SPARSE(0), outside);
    const int64_t s7[2] = {3, 5}, st7[2] = {5, 1}, src7[2] = {3, 5};
    view_grad_case(2, s7, st7, 0, 2, src7, "identity [3,5]");
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

    ffn_case(2, 1, 0, 4, 16, 0.5, "one row, d=4 f=16");
    ffn_case(3, 2, 37, 24, 96, 0.3, "[2,37,24], f=96");
    ffn_case(2, 300, 0, 64, 256, 0.1, "300 rows, d=64 f=256 (spec shape)");
    ffn_case(2, 9000, 0, 16, 64, 0.4, "9000 rows: three chunks");
    ffn_case(3, 1, 5, 7, 20, 1.0, "odd widths d=7 f=20, large weights");

    aggregate_case(1, 1, 1, 4, 1, 0, 0.5, "all sizes 1, d=4");
    aggregate_case(2, 16, 200, 64, 2, 1, 0.1, "k=16 over 200, padded (spec shape)");
    aggregate_case(3, 5, 37, 12, 3, 1, 0.4, "odd sizes, d=12 h=3");
    aggregate_case(1, 16, 9000, 16, 2, 0, 0.3, "9000 positions: three chunks");
    aggregate_case(150, 16, 60, 16, 2, 1, 0.3, "150 padded users of 60: users per chunk");
    aggregate_case(1, 3, 9, 520, 2, 0, 0.05, "head width 260");
    dispatch_case(1, 1, 1, 4, 1, 0.5, "all sizes 1, d=4");
    dispatch_case(2, 200, 16, 64, 2, 0.1, "200 positions over k=16 (spec shape)");
    dispatch_case(3, 37, 5, 12, 3, 0.4, "odd sizes, d=12 h=3");
    dispatch_case(1, 9000, 16, 16, 2, 0.3, "9000 positions: three chunks");
    dispatch_case(150, 60, 16, 16, 2, 0.3, "150 users of 60: users per chunk");

    score_topk_case(1, 1, 3, 1, 0, 0, 0, 0, "one user, one item");
    score_topk_case(3, 40, 4, 50, 5, 0, 2, 0, "ties everywhere, K > I, exclusions");
    score_topk_case(100, 5000, 32, 20, 50, 0, 3, 0, "100 users, 10 blocks, exclusions");
    score_topk_case(4, 3706, 64, 10, 200, 0, 0, 0, "I=3706 d=64, 200 exclusions, uniform");
    score_topk_case(5, 300, 16, 12, 10, 40, 2, 0, "candidates with repeats and bad ids");
    sparse(score_topk_case(2, 50, 8, 30, 5, 10, 0, 0, "fewer candidates than K, uniform"),
           CONF_SPARSE(0), "most of the K places are padding: id 0");
    score_topk_case(3, 60, 8, 8, 0, 0, 0, 1, "NaN and Inf in item rows");

    probs_case(1, 1, 1, 1, 1, 0, 0, "all sizes 1");
    probs_case(2, 16, 200, 64, 2, 0, 1, "aggregation k=16 over 200, padded");
    sparse(probs_case(2, 50, 50, 32, 4, 1, 1, "causal, padded"), CONF_SPARSE(0),
           "causality and padding hide most keys: their weights are exactly 0");
    probs_case(2, 33, 33, 12, 3, 1, 0, "causal, d=12 h=3");
    sparse(probs_case(3, 1, 300, 64, 2, 1, 1, "most recent query only, padded"), CONF_SPARSE(0),
           "padding hides most keys: their weights are exactly 0");
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

static void build_all_cases(void)
{
    build_cases();
    build_training_cases();
}

int conf_cases_for(elastic_op op, const conf_case **cases)
{
    /* Built once, also when several threads run the suite at once. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_all_cases);
    if (op < 0 || op >= ELASTIC_OP_COUNT) return 0;
    *cases = all_cases[op];
    return n_cases[op];
}

int conf_self_check_case(elastic_op op)
{
    const conf_case *cases;
    int n = conf_cases_for(op, &cases);
    for (int i = 0; i < n; i++)
        if (cases[i].self_check) return i;
    return -1;
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
            x[j] = j == 0   ? (int32_t)in->hi
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
