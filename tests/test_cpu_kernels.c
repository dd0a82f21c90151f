/*
 * test_cpu_kernels.c - the fast CPU kernel tables (generic, avx2, avx512)
 * against the scalar double-accumulating reference table, op by op, on
 * random inputs (seeded, printed) over shapes that include the edges: size
 * 1, odd sizes, sizes off the vector width, long reductions, padded and
 * causal attention. Plus a few values derived by hand, and the thread-count
 * determinism of linear.
 *
 * Tolerances and canaries are the conformance suite's, from
 * core/conformance/tolerance.h (where every bound is derived): each output
 * is allocated with CONF_CANARY_BYTES after it, poisoned before the kernel
 * runs (an element it does not write is a NaN and fails), and the canary
 * must survive; each element must satisfy |got - ref| <= tol. gather and
 * topk must match the reference bit for bit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/tolerance.h"
#include "cpu_kernels.h"
#include "test_util.h"

static const elastic_cpu_kernels *ref(void)
{
    return &elastic_cpu_kernels_reference;
}

/* The fast tables this CPU can run; prints the ones skipped. */
static int fast_tables(const elastic_cpu_kernels **out)
{
    static const elastic_cpu_isa isas[] = {ELASTIC_CPU_ISA_GENERIC, ELASTIC_CPU_ISA_AVX2,
                                           ELASTIC_CPU_ISA_AVX512, ELASTIC_CPU_ISA_NEON};
    static const char *names[] = {"generic", "avx2", "avx512", "neon"};
    static int printed;
    int n = 0;
    for (int i = 0; i < 4; i++) {
        const elastic_cpu_kernels *t = elastic_cpu_kernels_for(isas[i]);
        if (t) {
            out[n++] = t;
        } else if (!printed) {
            printf("# skipping the %s kernels: this CPU lacks the instruction set\n", names[i]);
        }
    }
    printed = 1;
    return n;
}

static float *fmalloc(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static int32_t *imalloc(size_t n)
{
    int32_t *p = malloc((n ? n : 1) * sizeof(int32_t));
    assert_non_null(p);
    return p;
}

static uint64_t stream_id(const char *op, int caseno, int which)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = op; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return h ^ ((uint64_t)caseno << 8) ^ (uint64_t)which;
}

/* An output of n floats with a canary after it (see poison/canary_ok). */
static float *out_alloc(size_t n)
{
    float *p = malloc(n * sizeof(float) + CONF_CANARY_BYTES);
    assert_non_null(p);
    return p;
}

/* Poisons an output and its canary before a kernel writes it. */
static void poison(void *out, size_t bytes)
{
    conf_poison(out, bytes + CONF_CANARY_BYTES);
}

/* The canary after an output of `bytes` survived the kernel. */
static void canary_ok(const char *what, const char *isa, const void *out, size_t bytes)
{
    if (!conf_canary_intact((const char *)out + bytes, CONF_CANARY_BYTES)) {
        printf("# %s [%s]: wrote past the end of its output (canary changed)\n", what, isa);
        fail();
    }
}

/* Element-wise |got - want| <= tol[i] (tolerance.h), and the canary after
 * got; prints the first failure. With ELASTIC_TEST_VERBOSE set, prints how
 * much of the tolerance was used. */
static void check_tol(const char *what, const char *isa, const float *got, const float *want,
                      const double *tol, size_t n)
{
    conf_compare_result res = {.ok = 1};
    conf_compare(0, ELASTIC_DTYPE_F32, got, want, tol, (int64_t)n, &res);
    if (getenv("ELASTIC_TEST_VERBOSE"))
        printf("# %s [%s]: n %zu, max |diff|/tol %.3g, rel L2 %.3g\n", what, isa, n, res.worst,
               tu_rel_l2(got, want, n));
    if (!res.ok) {
        printf("# %s [%s]: %s\n", what, isa, res.why);
        fail();
    }
    canary_ok(what, isa, got, n * sizeof(float));
}

/* ------------------------------------------------------------------ gather */

static void test_gather(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const int64_t shapes[][3] = {{1, 1, 1}, {5, 3, 7}, {101, 64, 300}, {4000, 33, 5000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], d = shapes[s][1], n = shapes[s][2];
        float *table = fmalloc((size_t)(rows * d));
        int32_t *idx = imalloc((size_t)n);
        float *want = fmalloc((size_t)(n * d)), *got = out_alloc((size_t)(n * d));
        tu_fill_uniform(table, (size_t)(rows * d), seed, stream_id("gather", (int)s, 0), -1, 1);
        tu_fill_int(idx, (size_t)n, seed, stream_id("gather", (int)s, 1), 0, (int32_t)rows - 1);
        ref()->gather(table, d, idx, n, want, 1);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)(n * d) * sizeof(float));
                tabs[t]->gather(table, d, idx, n, got, th);
                assert_memory_equal(got, want, (size_t)(n * d) * sizeof(float));
                canary_ok("gather", tabs[t]->isa, got, (size_t)(n * d) * sizeof(float));
            }
        free(table);
        free(idx);
        free(want);
        free(got);
    }
}

/* ------------------------------------------------------------------ add */

static void test_add(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const int64_t shapes[][2] = {{1, 1},      {1000, 1},        {64 * 7, 64},   {17, 17},
                                        {50000, 37}, {100003, 100003}, {51200 * 3, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s][0], nb = shapes[s][1];
        float *a = fmalloc((size_t)n), *b = fmalloc((size_t)nb);
        float *want = fmalloc((size_t)n), *got = out_alloc((size_t)n);
        double *tol = malloc((size_t)n * sizeof(double));
        assert_non_null(tol);
        tu_fill_uniform(a, (size_t)n, seed, stream_id("add", (int)s, 0), -100, 100);
        tu_fill_uniform(b, (size_t)nb, seed, stream_id("add", (int)s, 1), -1, 1);
        ref()->add(a, b, want, n, nb, 1);
        conf_tol_add(a, b, n, nb, tol);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)n * sizeof(float));
                tabs[t]->add(a, b, got, n, nb, th);
                check_tol("add", tabs[t]->isa, got, want, tol, (size_t)n);
            }
        free(a);
        free(b);
        free(want);
        free(got);
        free(tol);
    }
}

/* ------------------------------------------------------------------ masked_mean */

static void test_masked_mean(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 5}, {4, 200, 64}, {2, 3000, 130}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t batch = shapes[s][0], n = shapes[s][1], d = shapes[s][2];
        float *x = fmalloc((size_t)(batch * n * d));
        int32_t *len = imalloc((size_t)batch);
        float *want = fmalloc((size_t)(batch * d)), *got = out_alloc((size_t)(batch * d));
        double *tol = malloc((size_t)(batch * d) * sizeof(double));
        assert_non_null(tol);
        tu_fill_uniform(x, (size_t)(batch * n * d), seed, stream_id("mean", (int)s, 0), -3, 5);
        tu_fill_int(len, (size_t)batch, seed, stream_id("mean", (int)s, 1), 0, (int32_t)n + 3);
        len[0] = (int32_t)n; /* full, and the others: empty, partial or clamped */
        ref()->masked_mean(x, len, want, batch, n, d, 1);
        conf_tol_masked_mean(x, len, batch, n, d, tol);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)(batch * d) * sizeof(float));
                tabs[t]->masked_mean(x, len, got, batch, n, d, th);
                check_tol("masked_mean", tabs[t]->isa, got, want, tol, (size_t)(batch * d));
            }
        free(x);
        free(len);
        free(want);
        free(got);
        free(tol);
    }
}

/* ------------------------------------------------------------------ layer_norm */

static void test_layer_norm(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const int64_t shapes[][2] = {{1, 1}, {1, 2}, {3, 7}, {100, 64}, {33, 1000}, {5000, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], d = shapes[s][1];
        size_t n = (size_t)(rows * d);
        float *x = fmalloc(n), *w = fmalloc((size_t)d), *b = fmalloc((size_t)d);
        float *want = fmalloc(n), *got = out_alloc(n);
        double *tol = malloc(n * sizeof(double));
        assert_non_null(tol);
        /* an offset mean makes the centring matter */
        tu_fill_uniform(x, n, seed, stream_id("ln", (int)s, 0), 1, 3);
        tu_fill_uniform(w, (size_t)d, seed, stream_id("ln", (int)s, 1), -2, 2);
        tu_fill_uniform(b, (size_t)d, seed, stream_id("ln", (int)s, 2), -1, 1);
        float eps = 1e-5f;
        ref()->layer_norm(x, w, b, want, rows, d, eps, 1);
        conf_tol_layer_norm(x, w, b, rows, d, eps, tol);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, n * sizeof(float));
                tabs[t]->layer_norm(x, w, b, got, rows, d, eps, th);
                check_tol("layer_norm", tabs[t]->isa, got, want, tol, n);
            }
        free(x);
        free(w);
        free(b);
        free(want);
        free(got);
        free(tol);
    }
}

/* ------------------------------------------------------------------ linear */

static void test_linear(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    /* m, n, k, with bias */
    static const int64_t shapes[][4] = {
        {1, 1, 1, 1},      {2, 3, 5, 0},     {7, 13, 1, 1},    {5, 1, 17, 1},     {6, 64, 64, 1},
        {13, 17, 1037, 1}, {97, 100, 33, 0}, {200, 64, 64, 1}, {100, 256, 64, 1}, {20, 3706, 64, 1},
        {51, 64, 256, 1},  {1, 1024, 64, 1}, {300, 70, 64, 0}, {193, 129, 31, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        int has_bias = (int)shapes[s][3];
        float *x = fmalloc((size_t)(m * k)), *w = fmalloc((size_t)(n * k));
        float *b = fmalloc((size_t)n);
        float *want = fmalloc((size_t)(m * n)), *got = out_alloc((size_t)(m * n));
        double *tol = malloc((size_t)(m * n) * sizeof(double));
        assert_non_null(tol);
        tu_fill_uniform(x, (size_t)(m * k), seed, stream_id("linear", (int)s, 0), -1, 1);
        tu_fill_uniform(w, (size_t)(n * k), seed, stream_id("linear", (int)s, 1), -1, 1);
        tu_fill_uniform(b, (size_t)n, seed, stream_id("linear", (int)s, 2), -1, 1);
        const float *bias = has_bias ? b : NULL;
        ref()->linear(x, w, bias, want, m, n, k, 1);
        conf_tol_linear(x, w, bias, m, n, k, tol);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)(m * n) * sizeof(float));
                tabs[t]->linear(x, w, bias, got, m, n, k, th);
                check_tol("linear", tabs[t]->isa, got, want, tol, (size_t)(m * n));
            }
        free(x);
        free(w);
        free(b);
        free(want);
        free(got);
        free(tol);
    }
}

/* 1 and 2 threads give bitwise identical results (no reference needed, so
 * the shapes can be large enough to split into many tiles). */
static void test_linear_threads_deterministic(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const int64_t shapes[][3] = {
        {2000, 600, 64}, {1001, 64, 256}, {256, 3706, 64}, {777, 13, 1000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        float *x = fmalloc((size_t)(m * k)), *w = fmalloc((size_t)(n * k));
        float *b = fmalloc((size_t)n);
        float *o1 = fmalloc((size_t)(m * n)), *o2 = fmalloc((size_t)(m * n));
        tu_fill_uniform(x, (size_t)(m * k), seed, stream_id("lindet", (int)s, 0), -1, 1);
        tu_fill_uniform(w, (size_t)(n * k), seed, stream_id("lindet", (int)s, 1), -1, 1);
        tu_fill_uniform(b, (size_t)n, seed, stream_id("lindet", (int)s, 2), -1, 1);
        for (int t = 0; t < nt; t++) {
            tabs[t]->linear(x, w, b, o1, m, n, k, 1);
            tabs[t]->linear(x, w, b, o2, m, n, k, 2);
            assert_memory_equal(o1, o2, (size_t)(m * n) * sizeof(float));
            tabs[t]->linear(x, w, b, o2, m, n, k, 3);
            assert_memory_equal(o1, o2, (size_t)(m * n) * sizeof(float));
        }
        free(x);
        free(w);
        free(b);
        free(o1);
        free(o2);
    }
}

/* ------------------------------------------------------------------ gelu */

static void test_gelu(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const int64_t sizes[] = {1, 7, 1000, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        float *x = fmalloc((size_t)n), *want = fmalloc((size_t)n), *got = out_alloc((size_t)n);
        double *tol = malloc((size_t)n * sizeof(double));
        assert_non_null(tol);
        tu_fill_uniform(x, (size_t)n, seed, stream_id("gelu", (int)s, 0), -8, 8);
        ref()->gelu(x, want, n, 1);
        conf_tol_gelu(x, want, n, tol);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)n * sizeof(float));
                tabs[t]->gelu(x, got, n, th);
                check_tol("gelu", tabs[t]->isa, got, want, tol, (size_t)n);
            }
        free(x);
        free(want);
        free(got);
        free(tol);
    }
}

/* The per-row product-key backward (pkm_grad_rows) selects with the
 * forward's code in the fast tables: the same slots in the same order, the
 * same weights, dscores and dquery, bit for bit, ties included. */
static void test_pkm_grad_rows(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[4];
    int nt = fast_tables(tabs);
    /* rows, c, m, t, d, tied (all sub-keys equal) */
    static const int64_t cases[][6] = {
        {12, 8, 16, 4, 10, 0}, {32, 64, 128, 8, 64, 0}, {1, 2, 3, 3, 1, 0},  {6, 6, 100, 70, 7, 0},
        {2, 2, 1, 1, 5, 0},    {6, 8, 16, 4, 9, 1},     {5, 8, 40, 40, 3, 0}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int64_t R = cases[s][0], c = cases[s][1], m = cases[s][2], t = cases[s][3];
        int64_t d = cases[s][4];
        float *query = fmalloc((size_t)(R * c)), *sub = fmalloc((size_t)(2 * m * (c / 2)));
        float *values = fmalloc((size_t)(m * m * d)), *dy = fmalloc((size_t)(R * d));
        float *dq[2] = {fmalloc((size_t)(R * c)), fmalloc((size_t)(R * c))};
        int64_t *kept[2] = {malloc((size_t)(R * t * 3) * sizeof(int64_t)),
                            malloc((size_t)(R * t * 3) * sizeof(int64_t))};
        double *kw[2] = {malloc((size_t)(R * t * 2) * sizeof(double)),
                         malloc((size_t)(R * t * 2) * sizeof(double))};
        assert_true(kept[0] && kept[1] && kw[0] && kw[1]);
        tu_fill_uniform(query, (size_t)(R * c), seed, stream_id("pkm_grad", (int)s, 0), -1, 1);
        tu_fill_uniform(sub, (size_t)(2 * m * (c / 2)), seed, stream_id("pkm_grad", (int)s, 1), -1,
                        1);
        tu_fill_uniform(values, (size_t)(m * m * d), seed, stream_id("pkm_grad", (int)s, 2), -1, 1);
        tu_fill_uniform(dy, (size_t)(R * d), seed, stream_id("pkm_grad", (int)s, 3), -1, 1);
        if (cases[s][5])
            for (int64_t r = 1; r < 2 * m; r++)
                memcpy(sub + r * (c / 2), sub, (size_t)(c / 2) * sizeof(float));
        assert_int_equal(
            ref()->pkm_grad_rows(query, sub, values, dy, dq[0], kept[0], kw[0], R, c, m, t, d, 1),
            0);
        for (int tb = 0; tb < nt; tb++)
            for (int th = 1; th <= 2; th++) {
                memset(kept[1], 0xff, (size_t)(R * t * 3) * sizeof(int64_t));
                assert_int_equal(tabs[tb]->pkm_grad_rows(query, sub, values, dy, dq[1], kept[1],
                                                         kw[1], R, c, m, t, d, th),
                                 0);
                if (memcmp(dq[0], dq[1], (size_t)(R * c) * sizeof(float)) ||
                    memcmp(kept[0], kept[1], (size_t)(R * t * 3) * sizeof(int64_t)) ||
                    memcmp(kw[0], kw[1], (size_t)(R * t * 2) * sizeof(double))) {
                    printf("# pkm_grad_rows [%s] case %zu threads %d: not the reference's bits\n",
                           tabs[tb]->isa, s, th);
                    fail();
                }
            }
        free(query);
        free(sub);
        free(values);
        free(dy);
        for (int i = 0; i < 2; i++) {
            free(dq[i]);
            free(kept[i]);
            free(kw[i]);
        }
    }
}

/* linear_at (x given transposed) is linear_tn on the transposed x, bit for
 * bit, in every table (the reference's double sums included). */
static void test_linear_at(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[5];
    int nt = fast_tables(tabs);
    tabs[nt++] = ref();
    static const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 5}, {64, 64, 512}, {97, 17, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *xt = fmalloc((size_t)(K * M)), *x = fmalloc((size_t)(M * K));
        float *wt = fmalloc((size_t)(K * N)), *want = fmalloc((size_t)(M * N));
        float *got = out_alloc((size_t)(M * N));
        tu_fill_uniform(xt, (size_t)(K * M), seed, stream_id("linear_at", (int)s, 0), -1, 1);
        tu_fill_uniform(wt, (size_t)(K * N), seed, stream_id("linear_at", (int)s, 1), -1, 1);
        for (int64_t p = 0; p < K; p++)
            for (int64_t i = 0; i < M; i++)
                x[i * K + p] = xt[p * M + i];
        for (int t = 0; t < nt; t++) {
            tabs[t]->linear_tn(x, wt, want, M, N, K, 1);
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)(M * N) * sizeof(float));
                tabs[t]->linear_at(xt, wt, got, M, N, K, th);
                if (memcmp(got, want, (size_t)(M * N) * sizeof(float))) {
                    printf("# linear_at [%s] %lldx%lldx%lld threads %d: not linear_tn's bits\n",
                           tabs[t]->isa, (long long)M, (long long)N, (long long)K, th);
                    fail();
                }
                canary_ok("linear_at", tabs[t]->isa, got, (size_t)(M * N) * sizeof(float));
            }
        }
        free(xt);
        free(x);
        free(wt);
        free(want);
        free(got);
    }
}

/* ------------------------------------------------------------------ dropout */

/* Dropout's mask and scale are exact: bitwise the reference's, at every size
 * around the fast tables' blocks of 16 and both thread counts. */
static void test_dropout(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[4];
    int nt = fast_tables(tabs);
    static const int64_t sizes[] = {1, 3, 15, 16, 17, 4097, 100003};
    static const float probs[] = {0.0f, 0.1f, 0.5f, 0.9999f};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        float *x = fmalloc((size_t)n), *want = fmalloc((size_t)n), *got = out_alloc((size_t)n);
        tu_fill_uniform(x, (size_t)n, seed, stream_id("dropout", (int)s, 0), -3, 3);
        for (size_t q = 0; q < sizeof probs / sizeof probs[0]; q++) {
            ref()->dropout(x, want, n, probs[q], seed + q, 1);
            for (int t = 0; t < nt; t++)
                for (int th = 1; th <= 2; th++) {
                    poison(got, (size_t)n * sizeof(float));
                    tabs[t]->dropout(x, got, n, probs[q], seed + q, th);
                    if (memcmp(got, want, (size_t)n * sizeof(float))) {
                        printf("# dropout [%s] n %lld p %g threads %d: not the reference's bits\n",
                               tabs[t]->isa, (long long)n, (double)probs[q], th);
                        fail();
                    }
                    canary_ok("dropout", tabs[t]->isa, got, (size_t)n * sizeof(float));
                }
        }
        free(x);
        free(want);
        free(got);
    }
}

/* ------------------------------------------------------------------ attention */

typedef struct att_case {
    int64_t batch, nq, nk, d;
    int heads, causal;
    int32_t key_len[3]; /* -1: NULL */
    float range;
} att_case;

static void test_attention(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const att_case cases[] = {
        {3, 16, 200, 64, 2, 0, {200, 37, 1}, 1.5f},  /* aggregation, padded */
        {1, 16, 2100, 64, 2, 0, {-1, 0, 0}, 1.5f},   /* long aggregation */
        {2, 203, 16, 64, 2, 0, {-1, 0, 0}, 1.5f},    /* dispatch */
        {2, 77, 77, 64, 2, 1, {77, 30, 0}, 1.5f},    /* SASRec causal + padding */
        {1, 130, 130, 32, 1, 1, {-1, 0, 0}, 2.0f},   /* causal, several blocks */
        {2, 5, 9, 12, 3, 0, {0, 9, 0}, 1.0f},        /* dh = 4, an empty history */
        {2, 3, 5, 3, 3, 1, {5, 2, 0}, 1.0f},         /* dh = 1 */
        {2, 19, 33, 80, 2, 0, {33, 17, 0}, 1.0f},    /* dh = 40, off the width */
        {3, 16, 500, 64, 2, 0, {3, 500, 250}, 1.5f}, /* heavy padding */
        {1, 4, 7, 300, 1, 1, {-1, 0, 0}, 0.3f},      /* wide head: scalar path */
        {1, 1, 1, 1, 1, 0, {-1, 0, 0}, 1.0f},        /* all size 1 */
        {2, 40, 70, 16, 1, 0, {70, 65, 0}, 4.0f},    /* sharp softmax */
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const att_case *c = &cases[s];
        int64_t B = c->batch, nq = c->nq, nk = c->nk, d = c->d;
        float *q = fmalloc((size_t)(B * nq * d)), *k = fmalloc((size_t)(B * nk * d));
        float *v = fmalloc((size_t)(B * nk * d));
        float *want = fmalloc((size_t)(B * nq * d)), *got = out_alloc((size_t)(B * nq * d));
        double *tol = malloc((size_t)(B * nq * d) * sizeof(double));
        assert_non_null(tol);
        tu_fill_uniform(q, (size_t)(B * nq * d), seed, stream_id("att", (int)s, 0), -c->range,
                        c->range);
        tu_fill_uniform(k, (size_t)(B * nk * d), seed, stream_id("att", (int)s, 1), -c->range,
                        c->range);
        tu_fill_uniform(v, (size_t)(B * nk * d), seed, stream_id("att", (int)s, 2), -1, 1);
        const int32_t *key_len = c->key_len[0] < 0 ? NULL : c->key_len;
        ref()->attention(q, k, v, key_len, want, B, nq, nk, d, c->heads, c->causal, 1);
        conf_tol_attention(q, k, v, B, nq, nk, d, c->heads, tol);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)(B * nq * d) * sizeof(float));
                tabs[t]->attention(q, k, v, key_len, got, B, nq, nk, d, c->heads, c->causal, th);
                check_tol("attention", tabs[t]->isa, got, want, tol, (size_t)(B * nq * d));
            }
        free(q);
        free(k);
        free(v);
        free(want);
        free(got);
        free(tol);
    }
}

/* ------------------------------------------------------------------ pkm */

static void test_pkm(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    /* batch, experts, c, m, t, d, tied (all sub-keys equal) */
    static const int64_t cases[][7] = {{3, 4, 8, 16, 4, 10, 0},   {2, 16, 64, 128, 8, 64, 0},
                                       {1, 1, 2, 3, 3, 1, 0},     {2, 3, 6, 100, 70, 7, 0},
                                       {1, 2, 2, 1, 1, 5, 0},     {2, 3, 8, 16, 4, 9, 1},
                                       {4, 16, 64, 128, 8, 64, 0}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int64_t B = cases[s][0], E = cases[s][1], c = cases[s][2], m = cases[s][3];
        int64_t t = cases[s][4], d = cases[s][5];
        int tied = (int)cases[s][6];
        float *query = fmalloc((size_t)(B * E * c)), *sub = fmalloc((size_t)(2 * m * (c / 2)));
        float *values = fmalloc((size_t)(m * m * d));
        float *want = fmalloc((size_t)(B * E * d)), *got = out_alloc((size_t)(B * E * d));
        double *tol = malloc((size_t)(B * E * d) * sizeof(double));
        assert_non_null(tol);
        tu_fill_uniform(query, (size_t)(B * E * c), seed, stream_id("pkm", (int)s, 0), -1, 1);
        tu_fill_uniform(sub, (size_t)(2 * m * (c / 2)), seed, stream_id("pkm", (int)s, 1), -1, 1);
        tu_fill_uniform(values, (size_t)(m * m * d), seed, stream_id("pkm", (int)s, 2), -1, 1);
        if (tied)
            for (int64_t r = 1; r < 2 * m; r++)
                memcpy(sub + r * (c / 2), sub, (size_t)(c / 2) * sizeof(float));
        assert_int_equal(ref()->pkm(query, sub, values, want, B, E, c, m, t, d, 1), 0);
        conf_tol_pkm(query, sub, values, B, E, c, m, t, d, tol);
        for (int tb = 0; tb < nt; tb++)
            for (int th = 1; th <= 2; th++) {
                poison(got, (size_t)(B * E * d) * sizeof(float));
                assert_int_equal(tabs[tb]->pkm(query, sub, values, got, B, E, c, m, t, d, th), 0);
                check_tol("pkm", tabs[tb]->isa, got, want, tol, (size_t)(B * E * d));
            }
        free(query);
        free(sub);
        free(values);
        free(want);
        free(got);
        free(tol);
    }
}

/* ------------------------------------------------------------------ topk */

typedef struct topk_case {
    int64_t batch, items, k, n_exclude;
    int kind; /* 0 random, 1 many ties (small integers), 2 NaN and infinities */
} topk_case;

static void topk_compare(const char *isa, const int32_t *ids, const float *vals,
                         const int32_t *rids, const float *rvals, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int same_val =
            (isnan(vals[i]) && isnan(rvals[i])) || memcmp(&vals[i], &rvals[i], sizeof(float)) == 0;
        if (ids[i] != rids[i] || !same_val) {
            printf("# topk [%s]: place %zu: got id %d (%.9g), reference id %d (%.9g)\n", isa, i,
                   ids[i], (double)vals[i], rids[i], (double)rvals[i]);
            fail();
        }
    }
}

static void test_topk(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    const elastic_cpu_kernels *tabs[3];
    int nt = fast_tables(tabs);
    static const topk_case cases[] = {
        {4, 3706, 10, 50, 0}, {1, 1, 1, 0, 0},     {2, 1, 3, 1, 0},      {3, 37, 37, 5, 0},
        {3, 37, 40, 30, 0},   {5, 1001, 50, 0, 1}, {5, 1001, 20, 9, 2},  {40, 3706, 100, 200, 0},
        {2, 20, 5, 3, 1},     {3, 64, 10, 4, 2},   {2, 50000, 200, 0, 0}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const topk_case *c = &cases[s];
        int64_t B = c->batch, I = c->items, K = c->k, E = c->n_exclude;
        float *scores = fmalloc((size_t)(B * I));
        int32_t *ex = E ? imalloc((size_t)(B * E)) : NULL;
        int32_t *rids = imalloc((size_t)(B * K)), *ids = (int32_t *)out_alloc((size_t)(B * K));
        float *rvals = fmalloc((size_t)(B * K)), *vals = out_alloc((size_t)(B * K));
        tu_fill_uniform(scores, (size_t)(B * I), seed, stream_id("topk", (int)s, 0), -10, 10);
        if (c->kind == 1)
            for (int64_t i = 0; i < B * I; i++)
                scores[i] = floorf(scores[i] / 4);
        if (c->kind == 2)
            for (int64_t i = 0; i < B * I; i++) {
                uint64_t r = tu_hash(seed, stream_id("topk", (int)s, 2), (uint64_t)i) % 8;
                if (r == 0) scores[i] = NAN;
                if (r == 1) scores[i] = -INFINITY;
                if (r == 2) scores[i] = INFINITY;
            }
        if (ex) /* ids 0 (none) .. I, with duplicates */
            tu_fill_int(ex, (size_t)(B * E), seed, stream_id("topk", (int)s, 1), 0, (int32_t)I);
        ref()->topk(scores, ex, E, rids, rvals, B, I, K, 1);
        for (int t = 0; t < nt; t++)
            for (int th = 1; th <= 2; th++) {
                poison(ids, (size_t)(B * K) * sizeof(int32_t));
                poison(vals, (size_t)(B * K) * sizeof(float));
                tabs[t]->topk(scores, ex, E, ids, vals, B, I, K, th);
                canary_ok("topk ids", tabs[t]->isa, ids, (size_t)(B * K) * sizeof(int32_t));
                canary_ok("topk vals", tabs[t]->isa, vals, (size_t)(B * K) * sizeof(float));
                topk_compare(tabs[t]->isa, ids, vals, rids, rvals, (size_t)(B * K));
            }
        free(scores);
        free(ex);
        free(rids);
        free(ids);
        free(rvals);
        free(vals);
    }
}

/* ------------------------------------------------------------------ by hand */

static void test_hand_values(void **state)
{
    (void)state;
    const elastic_cpu_kernels *tabs[4];
    int nt = fast_tables(tabs);
    tabs[nt++] = ref();
    for (int t = 0; t < nt; t++) {
        const elastic_cpu_kernels *kt = tabs[t];
        /* linear: x [2,3], w [2,3] (out = x w^T + b) */
        const float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, -1, 2, 1, 0}, b[2] = {0.5f, -1};
        float o[4];
        kt->linear(x, w, b, o, 2, 2, 3, 1);
        assert_true(o[0] == -1.5f && o[1] == 3.0f && o[2] == -1.5f && o[3] == 12.0f);
        kt->linear(x, w, NULL, o, 2, 2, 3, 2);
        assert_true(o[0] == -2.0f && o[1] == 4.0f && o[2] == -2.0f && o[3] == 13.0f);

        /* gelu */
        const float gx[3] = {0.0f, 1.0f, -1.0f};
        float go[3];
        kt->gelu(gx, go, 3, 1);
        assert_true(go[0] == 0.0f);
        assert_true(fabs(go[1] - 0.8413447460685429) <= 2 * CONF_U * 0.85);
        assert_true(fabs(go[2] + 0.15865525393145707) <= 4 * CONF_U * 0.16);

        /* layer_norm of [1,2,3,4], eps 0: mean 2.5, var 1.25 */
        const float lx[4] = {1, 2, 3, 4}, lw[4] = {1, 1, 1, 1}, lb[4] = {0, 0, 0, 0};
        float lo[4];
        kt->layer_norm(lx, lw, lb, lo, 1, 4, 0.0f, 1);
        const double le[4] = {-1.5 / sqrt(1.25), -0.5 / sqrt(1.25), 0.5 / sqrt(1.25),
                              1.5 / sqrt(1.25)};
        for (int j = 0; j < 4; j++)
            assert_true(fabs(lo[j] - le[j]) <= 8 * CONF_U * fabs(le[j]));

        /* attention: a zero query weighs keys equally; causal query 1 sees key 1 only */
        const float aq[2] = {0, 0}, ak[2] = {3, -7}, av[2] = {1, 3};
        float ao[2];
        kt->attention(aq, ak, av, NULL, ao, 1, 2, 2, 1, 1, 0, 1);
        assert_true(fabs(ao[0] - 2.0) <= 4 * CONF_U && fabs(ao[1] - 2.0) <= 4 * CONF_U);
        kt->attention(aq, ak, av, NULL, ao, 1, 2, 2, 1, 1, 1, 1);
        assert_true(fabs(ao[0] - 2.0) <= 4 * CONF_U && ao[1] == 3.0f);
        const int32_t one = 1;
        kt->attention(aq, ak, av, &one, ao, 1, 2, 2, 1, 1, 1, 1);
        assert_true(ao[0] == 1.0f && ao[1] == 0.0f); /* query 1 sees nothing */

        /* topk: NaN last, ties by the smaller id, missing places 0 / -inf */
        const float ts[5] = {3, NAN, 5, 5, -INFINITY};
        int32_t tid[6];
        float tv[6];
        kt->topk(ts, NULL, 0, tid, tv, 1, 5, 5, 1);
        const int32_t e1[5] = {3, 4, 1, 5, 2};
        assert_memory_equal(tid, e1, sizeof e1);
        assert_true(tv[0] == 5 && tv[1] == 5 && tv[2] == 3 && tv[3] == -INFINITY && isnan(tv[4]));
        const int32_t exc[2] = {3, 0};
        kt->topk(ts, exc, 2, tid, tv, 1, 5, 6, 1);
        const int32_t e2[6] = {4, 1, 5, 2, 0, 0};
        assert_memory_equal(tid, e2, sizeof e2);
        assert_true(tv[4] == -INFINITY && tv[5] == -INFINITY);

        /* pkm with m = 2, t = 1, c = 2: sa = q0 * s0[x], sb = q1 * s1[y] */
        const float pq[2] = {1, -1}, psub[4] = {0.5f, 2.0f, 1.0f, -3.0f};
        const float pv[4 * 2] = {1, 1, 2, 2, 3, 3, 4, 4};
        float po[2];
        assert_int_equal(kt->pkm(pq, psub, pv, po, 1, 1, 2, 2, 1, 2, 1), 0);
        /* best x = 1 (2.0), best y = 1 (3.0): slot 3, weight 1 */
        assert_true(po[0] == 4.0f && po[1] == 4.0f);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_values),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_masked_mean),
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_threads_deterministic),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_linear_at),
        cmocka_unit_test(test_pkm_grad_rows),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_pkm),
        cmocka_unit_test(test_topk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
