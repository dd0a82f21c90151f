/*
 * cpu_grad.h - the CPU backend's training kernels: dropout, the softmax
 * cross-entropy loss and the gradient of every inference op (see the
 * training ops in core/graph.h for their shapes and meaning).
 *
 * Every pointer is to contiguous row-major float32 (or int32) data whose
 * shapes and index ranges the backend has checked. Reductions accumulate in
 * double, in an order that does not depend on the thread count, so a
 * training step gives the same gradients with 1 or 16 threads. These kernels
 * are the conformance suite's oracle for the training ops, themselves checked
 * against finite differences of float64 forwards (core/conformance/gradcheck.h,
 * tests/test_grad.c).
 */
#ifndef ELASTIC_CPU_GRAD_H
#define ELASTIC_CPU_GRAD_H

#include "cpu_kernels.h"
#include "base/error.h"

#include <stdint.h>

/* y = x * keep / (1 - p). Element i is kept when its 16-bit uniform u_i >=
 * elastic_dropout_threshold(p), where u_4q..u_4q+3 are the four 16-bit
 * fields (lowest first) of elastic_rng_u64(seed, 0, q): p is applied to
 * 1/65536 precision, and the mask is a function of (seed, i) alone. */
void elastic_cpu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, int threads);

/* loss[b] = logsumexp(scores[b]) - scores[b][target[b]-1];
 * dscores = (softmax(scores[b]) - onehot(target[b])) / B. */
void elastic_cpu_cross_entropy(const float *scores, const int32_t *target, float *loss,
                               float *dscores, int64_t batch, int64_t items, int threads);

/* dtable [rows, d] = scatter-add of dy [n, d] at idx [n]. */
void elastic_cpu_gather_grad(const float *dy, const int32_t *idx, int64_t n, int64_t d,
                             float *dtable, int64_t rows);

/* out[j] = sum over r of x[r, j], x [rows, cols]. */
void elastic_cpu_sum_rows(const float *x, int64_t rows, int64_t cols, float *out, int threads);

/* dx [B, n, d]: dy[b] / min(len, n) on the rows r < len[b], zero elsewhere. */
void elastic_cpu_masked_mean_grad(const float *dy, const int32_t *len, float *dx, int64_t batch,
                                  int64_t n, int64_t d, int threads);

/* dx of LayerNorm per row, and each row's mean and 1/std in stat [rows, 2]
 * (the reference table's layer_norm_grad_rows: double sums in order). */
void elastic_cpu_layer_norm_grad_rows(const float *x, const float *weight, const float *dy,
                                      float *dx, double *stat, int64_t rows, int64_t d, float eps,
                                      int threads);

/* dx, dweight, dbias of LayerNorm: the rows by the table's
 * layer_norm_grad_rows, the parameter sums in row chunks (thread-count
 * independent). */
elastic_status elastic_cpu_layer_norm_grad(const elastic_cpu_kernels *k, const float *x,
                                           const float *weight, const float *dy, float *dx,
                                           float *dweight, float *dbias, int64_t rows, int64_t d,
                                           float eps, int threads);

/* x [M, K], W [N, K], dy [M, N] -> dx [M, K], dW [N, K], dbias [N]; the two
 * products run on the table's linear_tn and linear_at, with x, W and dy as
 * they lie. */
elastic_status elastic_cpu_linear_grad(const elastic_cpu_kernels *k, const float *x, const float *w,
                                       const float *dy, float *dx, float *dw, float *dbias,
                                       int64_t m, int64_t n, int64_t kk, int threads);

void elastic_cpu_gelu_grad(const float *x, const float *dy, float *dx, int64_t n, int threads);

/* The backward of the attention in cpu_kernels.h (softmax recomputed). */
elastic_status elastic_cpu_attention_grad(const float *q, const float *k, const float *v,
                                          const float *dy, const int32_t *key_len, float *dq,
                                          float *dk, float *dv, int64_t batch, int64_t nq,
                                          int64_t nk, int64_t d, int heads, int causal,
                                          int threads);

/* One row of the product-key backward once its n slots are chosen (slot[i]
 * with pair score score[i], best first): the softmax weights wt [n] and
 * dscores ds [n], the kept (x, y, slot) triples kr [n, 3] and dq [c].
 * Shared by the reference's and the fast tables' pkm_grad_rows. */
void elastic_cpu_pkm_grad_row(const double *score, const int64_t *slot, int64_t n, const float *g,
                              const float *subkeys, const float *values, float *dq, int64_t *kr,
                              double *wt, double *ds, int64_t c, int64_t m, int64_t d);

/* Per row (user, expert) of the product-key backward: the t kept slots
 * (x, y, slot in kept [rows, t, 3]), their weights and dscores (kw [rows,
 * 2, t]) and dquery [rows, c] (the reference table's pkm_grad_rows).
 * Returns 0, or -1 when out of memory. */
int elastic_cpu_pkm_grad_rows(const float *query, const float *subkeys, const float *values,
                              const float *dy, float *dquery, int64_t *kept, double *kw,
                              int64_t rows, int64_t c, int64_t m, int64_t t, int64_t d,
                              int threads);

/* The backward of product-key retrieval: the selection is recomputed (the
 * table's pkm_grad_rows), and gradients reach the selected values, and
 * through the softmax weights the selected sub-keys and the query (added in
 * row order: thread-count independent). */
elastic_status elastic_cpu_pkm_grad(const elastic_cpu_kernels *k, const float *query,
                                    const float *subkeys, const float *values, const float *dy,
                                    float *dquery, float *dsubkeys, float *dvalues, int64_t batch,
                                    int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d,
                                    int threads);

/* out [src_numel] = 0, then out[offset + sum_i idx_i * strides[i]] += dv[idx]. */
void elastic_cpu_view_grad(const float *dv, int ndim, const int64_t *shape, const int64_t *strides,
                           int64_t offset, float *out, int64_t src_numel);

#endif
