/*
 * cpu_kernels.h - the CPU backend's kernels, as tables of plain C functions.
 *
 * There are two kinds of table with the same signatures:
 *   - the reference (cpu_ref.c): scalar loops that accumulate in double, the
 *     oracle of the conformance suite;
 *   - fast float32 tables (cpu_kernels.c, compiled once per instruction set:
 *     generic (any architecture), x86-64 AVX2+FMA and AVX-512, aarch64 NEON),
 *     OpenMP-parallel.
 * The backend picks one at run time (cpu_isa.c) from what the CPU supports.
 *
 * Every pointer is to contiguous row-major data; the backend has checked
 * shapes and index ranges before calling. `threads` is the OpenMP thread
 * count (>= 1). Semantics are those of the ops in core/graph.h and of the
 * model specification; in particular:
 *   - attention: per batch b and head, query i attends to keys j with
 *     j < key_len[b] (all keys when key_len is NULL) and, when causal, j >= i;
 *     a query with no visible key gets a zero output row. Scale 1/sqrt(d/heads).
 *     attention_probs + attention_mix compute the same in two steps.
 *   - pkm: spec section 3 step 2; every top-t keeps the t largest, ties by the
 *     smaller index (for pairs, the smaller slot x*m + y).
 *   - topk: over columns j of a row, item id j+1; ids listed in exclude
 *     (1-based, 0 = none) are skipped; NaN ranks below every number; ties by
 *     the smaller id; missing places get id 0 and -INFINITY.
 *   - score_topk: topk of the scores linear(user, items) would give, bit for
 *     bit in the fast tables (the same FMA chain per score), without holding
 *     them: memory O(B K) plus a block of items per thread. With candidates
 *     [B, C], a user's row lists the ids ranked (0 and ids outside 1..I are
 *     ignored; a repeated id counts once).
 */
#ifndef ELASTIC_CPU_KERNELS_H
#define ELASTIC_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct elastic_cpu_kernels {
    const char *isa; /* "reference", "generic", "avx2", "avx512", "neon" */

    void (*gather)(const float *table, int64_t d, const int32_t *idx, int64_t n, float *out,
                   int threads);
    /* out[i] = a[i] + b[i % nb] */
    void (*add)(const float *a, const float *b, float *out, int64_t n, int64_t nb, int threads);
    void (*masked_mean)(const float *x, const int32_t *len, float *out, int64_t batch, int64_t n,
                        int64_t d, int threads);
    void (*layer_norm)(const float *x, const float *weight, const float *bias, float *out,
                       int64_t rows, int64_t d, float eps, int threads);
    /* out[M,N] = x[M,K] * w[N,K]^T + bias[N] (bias may be NULL) */
    void (*linear)(const float *x, const float *w, const float *bias, float *out, int64_t m,
                   int64_t n, int64_t k, int threads);
    void (*gelu)(const float *x, float *out, int64_t n, int threads);
    void (*attention)(const float *q, const float *k, const float *v, const int32_t *key_len,
                      float *out, int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                      int causal, int threads);
    /* p [B, heads, nq, nk]: attention's softmax weights (0 where hidden) */
    void (*attention_probs)(const float *q, const float *k, const int32_t *key_len, float *p,
                            int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                            int threads);
    /* out [B, nq, d]: per head, out[b, i, head] = sum_j p[b, head, i, j] v[b, j, head] */
    void (*attention_mix)(const float *p, const float *v, float *out, int64_t batch, int64_t nq,
                          int64_t nk, int64_t d, int heads, int threads);
    /* query [B, experts*c], subkeys [2, m, c/2], values [m*m, d] -> out [B, experts, d];
     * returns 0, or -1 when the O(t) lists of t > 64 cannot be allocated */
    int (*pkm)(const float *query, const float *subkeys, const float *values, float *out,
               int64_t batch, int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d,
               int threads);
    /* scores [B, I], exclude [B, E] or NULL -> ids [B, K], vals [B, K] */
    void (*topk)(const float *scores, const int32_t *exclude, int64_t n_exclude, int32_t *ids,
                 float *vals, int64_t batch, int64_t items, int64_t k, int threads);
    /* user [B, d], items [I, d], exclude [B, E] or NULL, cand [B, C] or NULL
     * -> ids [B, K], vals [B, K] */
    void (*score_topk)(const float *user, const float *items, const int32_t *exclude,
                       int64_t n_exclude, const int32_t *cand, int64_t n_cand, int32_t *ids,
                       float *vals, int64_t batch, int64_t n_items, int64_t d, int64_t k,
                       int threads);
    /* out = z + fc2(GELU(fc1(LN(z)))) over rows of z [rows, d], W1 [f, d],
     * W2 [d, f]: in the fast tables, bitwise what layer_norm, linear, gelu,
     * linear and add give, a chunk of rows at a time. Returns 0, or -1 when
     * its scratch cannot be allocated (out untouched). */
    int (*ffn)(const float *z, const float *ln_w, const float *ln_b, const float *w1,
               const float *b1, const float *w2, const float *b2, float *out, int64_t rows,
               int64_t d, int64_t f, float eps, int threads);
    /* out [B, m, d] = attention(q [B, m, d], k(LN(x)), v(LN(x)), key_len)
     * for x [B, n, d], wk and wv [d, d]: in the fast tables, bitwise what
     * layer_norm, linear, linear and attention give, a chunk of positions at
     * a time. Returns 0, or -1 when its scratch cannot be allocated. */
    int (*aggregate)(const float *q, const float *x, const float *ln_w, const float *ln_b,
                     const float *wk, const float *bk, const float *wv, const float *bv,
                     const int32_t *key_len, float *out, int64_t batch, int64_t m, int64_t n,
                     int64_t d, int heads, float eps, int threads);
    /* out [B, n, d] = x + o(attention(q(LN(x)), k, v)) for x [B, n, d], k and
     * v [B, m, d], wq and wo [d, d]: in the fast tables, bitwise what
     * layer_norm, linear, attention, linear and add give, a chunk of rows at
     * a time. Returns 0, or -1 when its scratch cannot be allocated. */
    int (*dispatch)(const float *x, const float *ln_w, const float *ln_b, const float *wq,
                    const float *bq, const float *k, const float *v, const float *wo,
                    const float *bo, float *out, int64_t batch, int64_t n, int64_t m, int64_t d,
                    int heads, float eps, int threads);
    /* loss [B] and dscores [B, I] of the mean softmax cross-entropy over the
     * rows whose target (1..I) is not 0 (op CROSS_ENTROPY); the reference is
     * cpu_grad.c's, in double. */
    void (*cross_entropy)(const float *scores, const int32_t *target, float *loss, float *dscores,
                          int64_t batch, int64_t items, int threads);
    /* out[M,N] = x[M,K] wt[K,N] (W given transposed, no bias): in the fast
     * tables bitwise linear(x, W) for W = wt^T, without forming W. */
    void (*linear_tn)(const float *x, const float *wt, float *out, int64_t m, int64_t n, int64_t k,
                      int threads);
    /* out[M,N] = xt[K,M]^T wt[K,N] (both given K-major, no bias): dW^T of a
     * linear layer from x and dy as they lie; in the fast tables bitwise
     * linear_tn on the transposed xt, without forming it. */
    void (*linear_at)(const float *xt, const float *wt, float *out, int64_t m, int64_t n, int64_t k,
                      int threads);
    /* dx = dy GELU'(x) (op GELU_GRAD); the reference is cpu_grad.c's, on libm */
    void (*gelu_grad)(const float *x, const float *dy, float *dx, int64_t n, int threads);
    /* dq, dk, dv of attention (op ATTENTION_GRAD); the reference is cpu_grad.c's
     * (float32, libm's expf, a query's keys one at a time); the fast tables
     * compute a query's scores and dy . v over vectors of keys (K and V
     * transposed per user and head), with vexp. Returns 0, or -1 when its
     * scratch cannot be allocated. */
    int (*attention_grad)(const float *q, const float *k, const float *v, const float *dy,
                          const int32_t *key_len, float *dq, float *dk, float *dv, int64_t batch,
                          int64_t nq, int64_t nk, int64_t d, int heads, int causal, int threads);
    /* y = x / (1 - p) or 0 by the counter-based mask of (seed, element)
     * (op DROPOUT): bitwise cpu_grad.c's elastic_cpu_dropout, its hashes
     * computed a vector at a time. */
    void (*dropout)(const float *x, float *y, int64_t n, float p, uint64_t seed, int threads);
    /* LayerNorm's dx per row and the rows' mean and 1/std in stat [rows, 2],
     * for elastic_cpu_layer_norm_grad (op LAYER_NORM_GRAD): the reference
     * sums in double in order, the fast tables in double vector lanes. */
    void (*layer_norm_grad_rows)(const float *x, const float *weight, const float *dy, float *dx,
                                 double *stat, int64_t rows, int64_t d, float eps, int threads);
    /* The per-row part of elastic_cpu_pkm_grad (op PKM_GRAD): kept slots,
     * weights, dscores and dquery; the fast tables select with the forward's
     * pkm code (vectors over sub-keys), bitwise the reference's. Returns 0,
     * or -1 when out of memory. */
    int (*pkm_grad_rows)(const float *query, const float *subkeys, const float *values,
                         const float *dy, float *dquery, int64_t *kept, double *kw, int64_t rows,
                         int64_t c, int64_t m, int64_t t, int64_t d, int threads);

    /* Weights packed once, for inference (NULL in the reference table, which
     * packs nothing): pack() writes W [n, k] and its bias (NULL: zeros) into
     * packed_floats(n, k) floats, 64-byte aligned, in the layout the entries
     * below read. Each is the entry of the same name above with its weights
     * given packed (linear: w and bias; score_topk: items, with no bias;
     * ffn: W1 with b1 and W2 with b2; aggregate: wk with bk and wv with bv;
     * dispatch: wq with bq and wo with bo), and gives the same bits, without
     * packing them on every call. */
    size_t (*packed_floats)(int64_t n, int64_t k);
    void (*pack)(const float *w, const float *bias, float *packed, int64_t n, int64_t k);
    void (*linear_packed)(const float *x, const float *wp, float *out, int64_t m, int64_t n,
                          int64_t k, int threads);
    void (*score_topk_packed)(const float *user, const float *items, const float *items_p,
                              const int32_t *exclude, int64_t n_exclude, const int32_t *cand,
                              int64_t n_cand, int32_t *ids, float *vals, int64_t batch,
                              int64_t n_items, int64_t d, int64_t k, int threads);
    int (*ffn_packed)(const float *z, const float *ln_w, const float *ln_b, const float *w1p,
                      const float *w2p, float *out, int64_t rows, int64_t d, int64_t f, float eps,
                      int threads);
    int (*aggregate_packed)(const float *q, const float *x, const float *ln_w, const float *ln_b,
                            const float *wkp, const float *wvp, const int32_t *key_len, float *out,
                            int64_t batch, int64_t m, int64_t n, int64_t d, int heads, float eps,
                            int threads);
    int (*dispatch_packed)(const float *x, const float *ln_w, const float *ln_b, const float *wqp,
                           const float *k, const float *v, const float *wop, float *out,
                           int64_t batch, int64_t n, int64_t m, int64_t d, int heads, float eps,
                           int threads);
} elastic_cpu_kernels;

extern const elastic_cpu_kernels elastic_cpu_kernels_reference;
extern const elastic_cpu_kernels elastic_cpu_kernels_generic;
#if defined(ELASTIC_CPU_X86)
extern const elastic_cpu_kernels elastic_cpu_kernels_avx2;
extern const elastic_cpu_kernels elastic_cpu_kernels_avx512;
#endif
#if defined(ELASTIC_CPU_AARCH64)
extern const elastic_cpu_kernels elastic_cpu_kernels_neon;
#endif

typedef enum elastic_cpu_isa {
    ELASTIC_CPU_ISA_BEST = 0,
    ELASTIC_CPU_ISA_GENERIC = 1,
    ELASTIC_CPU_ISA_AVX2 = 2,
    ELASTIC_CPU_ISA_AVX512 = 3,
    ELASTIC_CPU_ISA_NEON = 4
} elastic_cpu_isa;

/* The fast table for an instruction set, or NULL if this CPU lacks it. */
const elastic_cpu_kernels *elastic_cpu_kernels_for(elastic_cpu_isa isa);

#endif
