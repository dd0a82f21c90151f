/*
 * gradcheck.h - central finite differences, the small independent float64
 * forwards that the training ops differentiate (written from the model
 * specification, sections 3 and 5, not from the kernels), and the
 * conformance suite's self-check of its own gradient oracle. The one copy:
 * tests/test_grad.c checks the CPU's training kernels with the same
 * forwards and differences.
 *
 * A forward is a loss L = sum(R .* f(inputs)) for a fixed R (the upstream
 * gradient dy of the op under test), evaluated in double on a context whose
 * double arrays conf_fd_gradient perturbs element by element; dL/dx is then
 * the gradient the op must produce for input x.
 */
#ifndef ELASTIC_CORE_CONFORMANCE_GRADCHECK_H
#define ELASTIC_CORE_CONFORMANCE_GRADCHECK_H

#include <stdint.h>

#include "conformance/conformance_cases.h"

/* ---------------------------------------------------- finite differences */

typedef double (*conf_fd_loss)(const void *ctx);

/* One input of a forward: the double array perturbed in place, and the
 * gradient to check against its differences (any float32 array of n). */
typedef struct conf_fd_tensor {
    const char *name;
    double *x;
    const float *g;
    int64_t n;
} conf_fd_tensor;

/* fd[k] = (L(x + h) - L(x - h)) / ((x + h) - (x - h)) for every element k of
 * every tensor, in order, with h = step * max(1, |x|); each element is
 * restored after. Returns max |fd|. With step 1e-6 the truncation error
 * (h^2 |L'''| / 6) is ~1e-12 and the rounding error (~2^-53 sum|terms of
 * L| / h) ~1e-9 for the O(1), O(100)-term losses the checks use. */
double conf_fd_gradient(conf_fd_loss loss, const void *ctx, const conf_fd_tensor *ts, int nt,
                        double step, double *fd);

/* ------------------------------------------------------ float64 forwards */

/* CROSS_ENTROPY: the mean of logsumexp(s[b]) - s[b][target[b] - 1] over the
 * rows whose target is not 0 (0 when every row is ignored). */
typedef struct conf_fd_ce {
    double *s;
    const int32_t *target;
    int64_t batch, items;
} conf_fd_ce;
double conf_fd_ce_loss(const void *ctx);

/* GATHER: out[i,:] = table[idx[i],:] (GATHER_GRAD gives dL/dtable). */
typedef struct conf_fd_gather {
    double *table, *r;
    const int32_t *idx;
    int64_t n, d;
} conf_fd_gather;
double conf_fd_gather_loss(const void *ctx);

/* ADD with b [cols] broadcast over rows: out = a + b (SUM_ROWS gives dL/db). */
typedef struct conf_fd_add {
    double *a, *b, *r;
    int64_t rows, cols;
} conf_fd_add;
double conf_fd_add_loss(const void *ctx);

/* MASKED_MEAN: out[b,:] = mean of x[b,r,:] over r < min(len[b], n), zero
 * when no row (MASKED_MEAN_GRAD gives dL/dx). */
typedef struct conf_fd_masked_mean {
    double *x, *r;
    const int32_t *len;
    int64_t batch, n, d;
} conf_fd_masked_mean;
double conf_fd_masked_mean_loss(const void *ctx);

/* LAYER_NORM: (z - mean) / sqrt(var + eps) * w + b, var biased. */
typedef struct conf_fd_layer_norm {
    double *x, *w, *b, *r;
    int64_t rows, d;
    double eps;
} conf_fd_layer_norm;
double conf_fd_layer_norm_loss(const void *ctx);

/* LINEAR: y = x W^T + b, x [M,K], W [N,K]. */
typedef struct conf_fd_linear {
    double *x, *w, *b, *r;
    int64_t m, n, k;
} conf_fd_linear;
double conf_fd_linear_loss(const void *ctx);

/* GELU: 0.5 z erfc(-z / sqrt 2). */
typedef struct conf_fd_gelu {
    double *x, *r;
    int64_t n;
} conf_fd_gelu;
double conf_fd_gelu_loss(const void *ctx);

/* ATTENTION: per user b and head, query i attends to keys j < key_len[b]
 * (all when NULL) with, if causal, j >= i; softmax(q.k / sqrt(d/heads))
 * weighs the values; a query that sees no key gives a zero row.
 * logit: scratch of nk doubles. */
typedef struct conf_fd_attention {
    double *q, *k, *v, *r;
    const int32_t *key_len;
    int64_t batch, nq, nk, d;
    int heads, causal;
    double *logit;
} conf_fd_attention;
double conf_fd_attention_loss(const void *ctx);

/* PKM (spec section 3 step 2): per row (user, expert) the top t of each
 * half's sub-key scores, the top t of their t*t pair sums (ties by the
 * smaller index, slot for pairs), softmax over those t, values weighed.
 * sa, sb, pair: scratch of m, m and t*t. */
typedef struct conf_fd_scored {
    double s;
    int64_t i;
} conf_fd_scored;
typedef struct conf_fd_pkm {
    double *q, *sk, *val, *r;
    int64_t batch, experts, c, m, t, d;
    conf_fd_scored *sa, *sb, *pair;
} conf_fd_pkm;
double conf_fd_pkm_loss(const void *ctx);
/* Row `row`'s kept slots and weights; *margin (may be NULL) is the smallest
 * gap at a selection boundary (t-th vs (t+1)-th of each half, and of the
 * pairs): differences are valid while a step moves no score that far. */
void conf_fd_pkm_row(const conf_fd_pkm *c, int64_t row, int64_t *slot, double *w, double *margin);

/* A strided view: v[idx] = src[offset + sum idx_i strides_i] (VIEW_GRAD
 * gives dL/dsrc). */
typedef struct conf_fd_view {
    double *src, *r;
    int ndim;
    const int64_t *shape, *strides;
    int64_t offset, numel;
} conf_fd_view;
double conf_fd_view_loss(const void *ctx);

/* ------------------------------------------------- the oracle self-check */

/* The float64 check of the reference's outputs on one training-op case
 * (its outputs and tolerances in cd, from conf_case_reference): each output
 * element g must satisfy
 *     |g - fd| <= tol + 1e-7 max|fd|
 * where fd is the central difference of the op's float64 forward (for
 * DROPOUT and the loss value of CROSS_ENTROPY, which are not gradients: the
 * float64 value itself), tol the conformance tolerance of the element (what
 * the reference may err by) and 1e-7 max|fd| the differences' own error.
 * A wrong gradient kernel (a sign, a missing term, a wrong mask) is an O(1)
 * error and fails. */
typedef struct conf_self_check_result {
    int ok;
    int n_outputs;
    double worst[ELASTIC_MAX_OUTPUTS]; /* max |g - fd| / allowed per output */
    char why[160];                     /* the first failure */
} conf_self_check_result;

/* Whether the op has a self-check (every training op must). */
int conf_self_check_supported(elastic_op op);
/* Whether a case's inputs suit differences: no discrete choice (PKM's
 * selections) within reach of a step. Otherwise draw other inputs. */
int conf_self_check_inputs_ok(const conf_case *c, const conf_case_data *cd);
/* seed draws the forward's inputs that the op does not see (the table of
 * GATHER_GRAD, the bias of LINEAR_GRAD, ...): gradients do not depend on
 * them. */
elastic_status conf_self_check(const conf_case *c, const conf_case_data *cd, uint64_t seed,
                               conf_self_check_result *res);

#endif
