/*
 * tolerance.h - the one place for how close a backend's result must be to the
 * CPU's reference: the per-element tolerance of every output of every op of
 * ops.def, the canary and poison words written around and into outputs, the
 * element-wise comparison with its NaN/Inf policy, and the guard against
 * references that are mostly zeros. The conformance suite (conformance.c),
 * tests/test_cpu_kernels.c and tests/test_cuda_ops.c all call these; none
 * keeps a copy of a bound.
 *
 * A tolerance function takes host copies of the op's float32 inputs, with
 * the argument order and sizes of the kernel it bounds (cpu_kernels.h for
 * the inference ops, cpu_grad.h for the training ops), and writes tol[i] >= 0
 * for every element i of each output: a result passes when
 * |got - ref| <= tol[i] (tol 0: bit-exact). Each bound is derived from the
 * op's arithmetic, not fitted; tolerance.c documents every formula. Those
 * that need scratch memory return a status; the others cannot fail.
 *
 * Canaries: an output buffer is allocated CONF_CANARY_BYTES longer than the
 * output, filled entirely with CONF_POISON (a NaN, so an element nobody
 * wrote never passes) before the op runs; afterwards the bytes past the
 * output must still be poison.
 */
#ifndef ELASTIC_CORE_CONFORMANCE_TOLERANCE_H
#define ELASTIC_CORE_CONFORMANCE_TOLERANCE_H

#include <stddef.h>
#include <stdint.h>

#include "graph/graph.h"

#define CONF_U 0x1.0p-24   /* unit roundoff of float32 */
#define CONF_EPS 0x1.0p-23 /* 2u: one implementation's bound, doubled for two */
#define CONF_CANARY_BYTES 512
#define CONF_POISON 0x7FA5A5A5u
/* The guard: a case whose reference output has more than this fraction of
 * elements that are exactly zero (or NaN) fails unless it says why. */
#define CONF_SPARSE_MAX 0.5

/* ------------------------------------------------------------- guards */

/* Fills bytes (a multiple of 4 is written; a tail is left) with CONF_POISON. */
void conf_poison(void *buf, size_t bytes);
/* Whether every 4-byte word of buf[0 .. bytes) is still CONF_POISON. */
int conf_canary_intact(const void *buf, size_t bytes);
/* The fraction of n elements (float32 or int32) that are 0 or NaN. */
double conf_zero_fraction(elastic_dtype dtype, const void *data, int64_t n);

/* ---------------------------------------------------------- comparison */

/* The outcome of comparing one or more outputs; zero-initialise, set ok = 1,
 * then call conf_compare for each output: the fields accumulate. */
typedef struct conf_compare_result {
    int ok;
    double worst; /* largest |got - ref| / tol (0 = exact; INFINITY: a mismatch at tol 0) */
    double max_abs, max_rel, nmse;
    uint64_t max_ulp;
    int output; /* where the worst element is */
    int64_t at;
    float got, want;
    char why[128]; /* the first failure, when !ok */
} conf_compare_result;

/* Compares output `output` (n elements) with its reference: int32 outputs
 * must be equal; float32 elements must satisfy |got - ref| <= tol[i], and
 * NaN and Inf must appear exactly where the reference has them. */
void conf_compare(int output, elastic_dtype dtype, const void *got, const void *ref,
                  const double *tol, int64_t n, conf_compare_result *res);

/* ------------------------------------------------------- inference ops */

/* GATHER, TOPK (ids and values) and COPY move values: tolerance 0. */
void conf_tol_exact(int64_t n, double *tol);
void conf_tol_add(const float *a, const float *b, int64_t n, int64_t nb, double *tol);
void conf_tol_masked_mean(const float *x, const int32_t *len, int64_t batch, int64_t n, int64_t d,
                          double *tol);
void conf_tol_layer_norm(const float *x, const float *weight, const float *bias, int64_t rows,
                         int64_t d, float eps, double *tol);
void conf_tol_linear(const float *x, const float *w, const float *bias, int64_t m, int64_t n,
                     int64_t k, double *tol);
void conf_tol_gelu(const float *x, const float *ref, int64_t n, double *tol);
/* FFN: the bounds of LAYER_NORM, LINEAR, GELU, LINEAR and ADD, each carried
 * through the ops after it (see tolerance.c). */
elastic_status conf_tol_ffn(const float *z, const float *ln_w, const float *ln_b, const float *w1,
                            const float *b1, const float *w2, const float *b2, int64_t rows,
                            int64_t d, int64_t f, float eps, double *tol);
/* SCORE_TOPK: ids exact; each kept score as LINEAR's of the reference's id
 * (0 for padding and for non-finite scores, which must match exactly). */
void conf_tol_score_topk(const float *user, const float *items, const int32_t *ref_ids,
                         const float *ref_vals, int64_t batch, int64_t d, int64_t k,
                         double *tol_ids, double *tol_vals);
/* The relative error of a softmax weight of attention (shared by ATTENTION,
 * ATTENTION_PROBS and ATTENTION_GRAD). */
double conf_attention_weight_error(const float *q, const float *k, int64_t batch, int64_t nq,
                                   int64_t nk, int64_t d, int heads);
elastic_status conf_tol_aggregate(const float *q, const float *x, const float *ln_w,
                                  const float *ln_b, const float *wk, const float *bk,
                                  const float *wv, const float *bv, const int32_t *key_len,
                                  int64_t batch, int64_t m, int64_t n, int64_t d, int heads,
                                  float eps, double *tol);
elastic_status conf_tol_dispatch(const float *x, const float *ln_w, const float *ln_b,
                                 const float *wq, const float *bq, const float *k, const float *v,
                                 const float *wo, const float *bo, int64_t batch, int64_t n,
                                 int64_t m, int64_t d, int heads, float eps, double *tol);
void conf_tol_attention(const float *q, const float *k, const float *v, int64_t batch, int64_t nq,
                        int64_t nk, int64_t d, int heads, double *tol);
/* ref: the reference weights P [B, heads, nq, nk] */
void conf_tol_attention_probs(const float *q, const float *k, const float *ref, int64_t batch,
                              int64_t nq, int64_t nk, int64_t d, int heads, double *tol);
void conf_tol_attention_mix(const float *p, const float *v, int64_t batch, int64_t nq, int64_t nk,
                            int64_t d, int heads, double *tol);
void conf_tol_pkm(const float *query, const float *subkeys, const float *values, int64_t batch,
                  int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d, double *tol);

/* -------------------------------------------------------- training ops */

/* ref: the reference output (dropped elements are 0 and must stay so) */
void conf_tol_dropout(const float *ref, int64_t n, double *tol);
/* loss [B] and dscores [B, items]; ref_loss and ref_dscores from the reference */
void conf_tol_cross_entropy(const float *scores, const int32_t *target, const float *ref_loss,
                            const float *ref_dscores, int64_t batch, int64_t items,
                            double *tol_loss, double *tol_dscores);
/* dtable [rows, d] */
elastic_status conf_tol_gather_grad(const float *dy, const int32_t *idx, int64_t n, int64_t d,
                                    int64_t rows, double *tol);
/* out [cols] = sums over rows of x [rows, cols] */
void conf_tol_sum_rows(const float *x, int64_t rows, int64_t cols, double *tol);
/* ref: the reference dx [B, n, d] (zero on masked rows, which must stay so) */
void conf_tol_masked_mean_grad(const float *ref, int64_t n, double *tol);
void conf_tol_layer_norm_grad(const float *x, const float *weight, const float *dy, int64_t rows,
                              int64_t d, float eps, double *tol_dx, double *tol_dweight,
                              double *tol_dbias);
void conf_tol_linear_grad(const float *x, const float *w, const float *dy, int64_t m, int64_t n,
                          int64_t k, double *tol_dx, double *tol_dw, double *tol_dbias);
void conf_tol_gelu_grad(const float *x, const float *dy, const float *ref, int64_t n, double *tol);
elastic_status conf_tol_attention_grad(const float *q, const float *k, const float *v,
                                       const float *dy, const int32_t *key_len, int64_t batch,
                                       int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                                       double *tol_dq, double *tol_dk, double *tol_dv);
elastic_status conf_tol_pkm_grad(const float *query, const float *subkeys, const float *values,
                                 const float *dy, int64_t batch, int64_t experts, int64_t c,
                                 int64_t m, int64_t t, int64_t d, double *tol_dquery,
                                 double *tol_dsubkeys, double *tol_dvalues);
/* the view [shape] with strides and offset into a source of src_numel */
elastic_status conf_tol_view_grad(const float *dv, int ndim, const int64_t *shape,
                                  const int64_t *strides, int64_t offset, int64_t src_numel,
                                  double *tol);

/* ------------------------------------------------------------- helpers */

/* PKM's selection for one row (user, expert), in double exactly as the CPU
 * computes it: the t kept slots (x * m + y) and their softmax weights.
 * scratch: 2m + t*t doubles and 3t + t*t int64s. */
void conf_pkm_select(const float *qa, const float *subkeys, int64_t c, int64_t m, int64_t t,
                     double *scratch, int64_t *iscratch, int64_t *slot, double *weight);

#endif
