/*
 * test_grad.c - the CPU training kernels (backends/cpu/cpu_grad.h) against
 * central finite differences of small, independent float64 forwards written
 * from the model specification (sections 3 and 5) and cpu_kernels.h. The
 * forwards and the differences are core/conformance/gradcheck.h's, the same
 * the conformance suite uses to check its gradient oracle.
 *
 * Method, per gradient op: a fixed random R (seeded; every case prints its
 * stream) defines L = sum(R .* f(inputs)). The kernel under test gets
 * dy = R; the same float32 inputs, widened exactly to double, feed the
 * float64 forward, and (L(x+h) - L(x-h)) / 2h is taken for every input
 * element. Each element must satisfy
 *     |g - fd| <= atol * scale + rtol * |fd|,  scale = max |fd| over the case,
 * with (atol, rtol) chosen per kernel class (see the TOL_ constants below).
 * Dropout, the loss, gather, sum_rows and view get exact or hand checks too,
 * and every kernel with a thread count must give the same bits with 1 and
 * with THREADS threads. The worst |g - fd| / scale per op is printed at the end.
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

#include "conformance/gradcheck.h"
#include "cpu_grad.h"
#include "test_util.h"

/* Kernels run with 1 and with THREADS threads; the results must be bitwise equal. */
#define THREADS 3

/*
 * Tolerances. Two error sources:
 *   - the finite difference: with h = 1e-6 * max(1, |x|) the truncation error
 *     h^2 |f'''| / 6 is ~1e-12 and the rounding error ~eps64 * sum|terms of L| / h
 *     is ~1e-9 for the O(1), O(10)-term losses here: both far below float32;
 *   - the kernel: one that accumulates in double and rounds once to float32 is
 *     within 2^-24 |g| ~ 6e-8 |g|; one that adds float32 contributions (the fast
 *     linear tables' float32 dot products, attention dk/dv summed over queries,
 *     the pkm and gather scatters) errs by up to n * 2^-24 * sum|terms|, n <= 33
 *     here, i.e. ~2e-6 * sum|terms|, which is a few times max|g| at most.
 * TOL_ONE: double accumulation, one float32 rounding: rtol 1e-6 = 16 ulps,
 *          atol 1e-7 * scale for the FD rounding on elements near zero.
 * TOL_ACC: float32 accumulation: atol 2e-5 * scale, rtol 1e-6.
 * A real bug (a wrong sign, a missing term, a wrong mask) is an O(1) error.
 */
typedef struct fd_tol {
    double h;    /* step: h * max(1, |x|) */
    double atol; /* times scale = max |fd| over the case */
    double rtol; /* times |fd| of the element */
} fd_tol;

static const fd_tol TOL_ONE = {1e-6, 1e-7, 1e-6};
static const fd_tol TOL_ACC = {1e-6, 2e-5, 1e-6};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    assert_non_null(p);
    return p;
}

static float *fnew(int64_t n)
{
    return xcalloc((size_t)n, sizeof(float));
}
static double *dnew(int64_t n)
{
    return xcalloc((size_t)n, sizeof(double));
}

static float *frand(int64_t n, uint64_t stream, float lo, float hi)
{
    float *x = fnew(n);
    tu_fill_uniform(x, (size_t)n, tu_seed(), stream, lo, hi);
    return x;
}

/* The exact double copy of float32 data: what the float64 forwards read. */
static double *widen(const float *x, int64_t n)
{
    double *y = dnew(n);
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

static void same_bits(const float *a, const float *b, int64_t n)
{
    if (n > 0) assert_memory_equal(a, b, (size_t)n * sizeof(float));
}

static int all_zero(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return 0;
    return 1;
}

/* The worst |g - fd| / scale per op, printed by the group teardown. */
typedef struct op_worst {
    const char *op;
    double err;
    int cases;
} op_worst;
static op_worst worst_by_op[16];
static int n_worst;

static void record(const char *op, double err)
{
    int i = 0;
    while (i < n_worst && strcmp(worst_by_op[i].op, op) != 0)
        i++;
    if (i == n_worst) {
        assert_true(n_worst < 16);
        worst_by_op[n_worst++] = (op_worst){op, 0.0, 0};
    }
    if (!(err <= worst_by_op[i].err)) worst_by_op[i].err = err;
    worst_by_op[i].cases++;
}

/* Central differences of loss for every element of every tensor, compared
 * with the kernel's gradients; prints the worst error and fails the test if
 * any element is out of tolerance. */
static void fd_check(const char *op, const char *tag, uint64_t stream, conf_fd_loss loss,
                     const void *ctx, const conf_fd_tensor *ts, int nt, fd_tol tol)
{
    int64_t total = 0, k = 0;
    for (int t = 0; t < nt; t++)
        total += ts[t].n;
    double *fd = dnew(total);
    double scale = conf_fd_gradient(loss, ctx, ts, nt, tol.h, fd);
    double worst = 0, wg = 0, wfd = 0;
    const char *wname = ts[0].name;
    int64_t wi = 0, fails = 0;
    for (int t = 0; t < nt; t++)
        for (int64_t i = 0; i < ts[t].n; i++, k++) {
            double g = ts[t].g[i], err = fabs(g - fd[k]);
            double allowed = tol.atol * scale + tol.rtol * fabs(fd[k]);
            double rel = scale > 0 ? err / scale : err;
            if (!(err <= allowed)) {
                if (fails < 8)
                    printf("  FAIL %s %s: %s[%lld] kernel %.9g, finite difference %.9g "
                           "(|diff| %.3g > allowed %.3g)\n",
                           op, tag, ts[t].name, (long long)i, g, fd[k], err, allowed);
                fails++;
            }
            if (!(rel <= worst)) {
                worst = rel;
                wname = ts[t].name;
                wi = i;
                wg = g;
                wfd = fd[k];
            }
        }
    printf("  %-20s %-34s stream %-6llu max|g-fd|/max|fd| %.2e  (%s[%lld] %.7g vs %.7g)\n", op, tag,
           (unsigned long long)stream, worst, wname, (long long)wi, wg, wfd);
    record(op, worst);
    free(fd);
    assert_int_equal(fails, 0);
}

/* ------------------------------------------------------------------------ */
/* Dropout                                                                  */

static void test_dropout(void **state)
{
    (void)state;
    const int64_t n = 200000;
    const uint64_t stream = 100;
    /* x away from zero, both signs, so y == 0 means "dropped" */
    float *x = frand(n, stream, 0.5f, 1.5f);
    for (int64_t i = 0; i < n; i += 2)
        x[i] = -x[i];
    float *y = fnew(n), *y2 = fnew(n), *y3 = fnew(n), *dy = frand(n, stream + 1, -1, 1);
    float *dx = fnew(n);
    const float ps[3] = {0.3f, 0.5f, 0.05f};
    for (int pi = 0; pi < 3; pi++) {
        float p = ps[pi];
        double scale = 1.0 / (1.0 - (double)p);
        uint64_t seed = 0x5eedULL + (uint64_t)pi;
        elastic_cpu_dropout(x, y, n, p, seed, 1);
        /* same seed, same mask: also with other thread counts */
        elastic_cpu_dropout(x, y2, n, p, seed, THREADS);
        same_bits(y, y2, n);
        /* a function of the element index, not of n: a prefix call agrees */
        elastic_cpu_dropout(x, y2, 1001, p, seed, 1);
        same_bits(y, y2, 1001);
        /* kept elements scaled by 1/(1-p), within one float32 rounding */
        int64_t kept = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y[i] == 0.0f) continue;
            kept++;
            double want = (double)x[i] * scale;
            if (fabs(y[i] - want) > 0x1p-24 * fabs(want)) {
                printf("  dropout p %g: y[%lld] = %.9g, want x/(1-p) = %.9g\n", (double)p,
                       (long long)i, (double)y[i], want);
                fail();
            }
        }
        /* the kept fraction is Binomial(n, 1-p)/n: within 5 standard deviations */
        double frac = (double)kept / (double)n, sd = sqrt((double)p * (1 - (double)p) / (double)n);
        printf("  dropout p %.2f: kept %.5f (want %.5f +- %.5f)\n", (double)p, frac, 1 - (double)p,
               5 * sd);
        assert_true(fabs(frac - (1 - (double)p)) <= 5 * sd);
        /* another seed draws another mask (the masks agree on about p^2 + (1-p)^2) */
        elastic_cpu_dropout(x, y3, n, p, seed + 1, 1);
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++)
            differ += (y[i] == 0.0f) != (y3[i] == 0.0f);
        double want_differ = 2 * (double)p * (1 - (double)p);
        assert_true(fabs((double)differ / (double)n - want_differ) <= 0.01);
        /* the gradient: dropout is linear, so dropout(dy) with the same seed is
         * dL/dx of L = sum(dy .* dropout(x)): dy[i] / (1-p) where kept, else 0 */
        elastic_cpu_dropout(dy, dx, n, p, seed, 1);
        for (int64_t i = 0; i < n; i++) {
            double want = y[i] != 0.0f ? (double)dy[i] * scale : 0.0;
            if (!(fabs(dx[i] - want) <= 0x1p-24 * fabs(want))) {
                printf("  dropout p %g: grad[%lld] = %.9g, want %.9g\n", (double)p, (long long)i,
                       (double)dx[i], want);
                fail();
            }
        }
    }
    /* p = 0 is the identity, bit for bit */
    elastic_cpu_dropout(x, y, n, 0.0f, 7, THREADS);
    same_bits(x, y, n);
    free(x);
    free(y);
    free(y2);
    free(y3);
    free(dy);
    free(dx);
}

/* ------------------------------------------------------------------------ */
/* Cross-entropy                                                            */

static void test_cross_entropy_hand(void **state)
{
    (void)state;
    /* log(e + e^2 + e^3) - 2 = 1 + log(1 + e^-1 + e^-2) */
    const float s1[3] = {1, 2, 3};
    const int32_t t1[1] = {2};
    float loss[2], g[8], g2[8];
    elastic_cpu_cross_entropy(s1, t1, loss, g, 1, 3, 1);
    double z = 1 + exp(-1.0) + exp(-2.0);
    double want = 1 + log(z);
    printf("  cross_entropy hand: loss %.9g want %.9g\n", (double)loss[0], want);
    assert_float_equal(loss[0], want, 1e-6 * want);
    /* dscores = softmax - onehot; softmax = e^(s-3)/z */
    assert_float_equal(g[0], exp(-2.0) / z, 1e-7);
    assert_float_equal(g[1], exp(-1.0) / z - 1, 1e-7);
    assert_float_equal(g[2], 1 / z, 1e-7);

    /* B = 2: a uniform row (loss log 4, target the last item) and a row near
     * 1000 that would overflow exp without the max shift (target the first);
     * the gradient is divided by B = 2. */
    const float s2[8] = {0, 0, 0, 0, 1000, 1001, 1000, 999};
    const int32_t t2[2] = {4, 1};
    elastic_cpu_cross_entropy(s2, t2, loss, g, 2, 4, 1);
    elastic_cpu_cross_entropy(s2, t2, loss + 0, g2, 2, 4, THREADS);
    same_bits(g, g2, 8);
    double z2 = 1 + 2 * exp(-1.0) + exp(-2.0); /* sum exp(s - 1001) */
    assert_float_equal(loss[0], log(4.0), 1e-6);
    assert_float_equal(loss[1], 1 + log(z2), 1e-6);
    for (int j = 0; j < 3; j++)
        assert_float_equal(g[j], 0.125, 1e-8);
    assert_float_equal(g[3], (0.25 - 1) / 2, 1e-8);
    assert_float_equal(g[4], (exp(-1.0) / z2 - 1) / 2, 1e-7);
    assert_float_equal(g[5], (1 / z2) / 2, 1e-7);
    assert_float_equal(g[6], (exp(-1.0) / z2) / 2, 1e-7);
    assert_float_equal(g[7], (exp(-2.0) / z2) / 2, 1e-7);

    /* one item: loss 0 and gradient 0, exactly */
    const float s3[2] = {3.5f, -2};
    const int32_t t3[2] = {1, 1};
    elastic_cpu_cross_entropy(s3, t3, loss, g, 2, 1, 1);
    assert_true(loss[0] == 0.0f && loss[1] == 0.0f && g[0] == 0.0f && g[1] == 0.0f);
}

static void ce_case(const char *tag, uint64_t stream, int64_t batch, int64_t items,
                    const int32_t *target, float lo, float hi)
{
    int64_t n = batch * items;
    float *s = frand(n, stream, lo, hi), *loss = fnew(batch), *g = fnew(n), *g2 = fnew(n);
    elastic_cpu_cross_entropy(s, target, loss, g, batch, items, 1);
    elastic_cpu_cross_entropy(s, target, loss, g2, batch, items, THREADS);
    same_bits(g, g2, n);
    conf_fd_ce c = {widen(s, n), target, batch, items};
    /* the per-user losses against the double forward */
    for (int64_t b = 0; b < batch; b++) {
        conf_fd_ce one = {c.s + b * items, target + b, 1, items};
        double want = conf_fd_ce_loss(&one);
        assert_float_equal(loss[b], want, 1e-6 * fmax(1.0, fabs(want)));
    }
    conf_fd_tensor ts[1] = {{"dscores", c.s, g, n}};
    fd_check("cross_entropy", tag, stream, conf_fd_ce_loss, &c, ts, 1, TOL_ONE);
    free(c.s);
    free(s);
    free(loss);
    free(g);
    free(g2);
}

static void test_cross_entropy_fd(void **state)
{
    (void)state;
    const int32_t t1[3] = {1, 7, 4}, t2[1] = {2}, t3[5] = {3, 3, 1, 2, 3};
    ce_case("B3 I7", 200, 3, 7, t1, -3, 3);
    ce_case("B1 I2", 210, 1, 2, t2, -1, 1);
    ce_case("B5 I3 wide scores", 220, 5, 3, t3, -20, 20);
}

/* ------------------------------------------------------------------------ */
/* Gather (gather_grad)                                                     */

static void gather_case(const char *tag, uint64_t stream, int64_t n, int64_t d, int64_t rows,
                        const int32_t *idx)
{
    float *table = frand(rows * d, stream, -1, 1), *r = frand(n * d, stream + 1, -1, 1);
    float *g = fnew(rows * d);
    for (int64_t i = 0; i < rows * d; i++)
        g[i] = 12345.0f; /* must be overwritten */
    elastic_cpu_gather_grad(r, idx, n, d, g, rows);
    /* by hand: row q gets the sum of dy over the i with idx[i] = q (duplicates
     * accumulate); rows never gathered are exactly zero */
    for (int64_t q = 0; q < rows; q++) {
        int hits = 0;
        for (int64_t j = 0; j < d; j++) {
            double want = 0, mag = 0;
            hits = 0;
            for (int64_t i = 0; i < n; i++)
                if (idx[i] == q) {
                    want += r[i * d + j];
                    mag += fabs(r[i * d + j]);
                    hits++;
                }
            assert_true(fabs(g[q * d + j] - want) <= (double)hits * 0x1p-24 * mag);
        }
        if (!hits) assert_true(all_zero(g + q * d, d));
    }
    conf_fd_gather c = {widen(table, rows * d), widen(r, n * d), idx, n, d};
    conf_fd_tensor ts[1] = {{"dtable", c.table, g, rows * d}};
    fd_check("gather_grad", tag, stream, conf_fd_gather_loss, &c, ts, 1, TOL_ACC);
    free(c.table);
    free(c.r);
    free(table);
    free(r);
    free(g);
}

static void test_gather_grad(void **state)
{
    (void)state;
    const int32_t i1[7] = {3, 1, 3, 0, 3, 1, 4}, i2[1] = {0}, i3[5] = {2, 2, 2, 2, 2};
    gather_case("n7 d3 rows5 dups, row 2 unused", 300, 7, 3, 5, i1);
    gather_case("n1 d1 rows1", 310, 1, 1, 1, i2);
    gather_case("n5 d2 rows3 all idx 2", 320, 5, 2, 3, i3);
}

/* ------------------------------------------------------------------------ */
/* Sum of rows: the gradient of the broadcast operand of ADD                 */

static void sum_rows_case(const char *tag, uint64_t stream, int64_t rows, int64_t cols)
{
    int64_t n = rows * cols;
    float *a = frand(n, stream, -1, 1), *b = frand(cols, stream + 1, -1, 1);
    float *r = frand(n, stream + 2, -1, 1), *g = fnew(cols), *g2 = fnew(cols);
    for (int64_t j = 0; j < cols; j++)
        g[j] = 12345.0f;
    elastic_cpu_sum_rows(r, rows, cols, g, 1);
    elastic_cpu_sum_rows(r, rows, cols, g2, THREADS);
    same_bits(g, g2, cols);
    /* by hand: a double sum rounded once */
    for (int64_t j = 0; j < cols; j++) {
        double want = 0;
        for (int64_t i = 0; i < rows; i++)
            want += r[i * cols + j];
        assert_true(fabs(g[j] - want) <= 0x1p-24 * fabs(want) + 1e-12);
    }
    conf_fd_add c = {widen(a, n), widen(b, cols), widen(r, n), rows, cols};
    conf_fd_tensor ts[1] = {{"db", c.b, g, cols}};
    fd_check("sum_rows", tag, stream, conf_fd_add_loss, &c, ts, 1, TOL_ONE);
    free(c.a);
    free(c.b);
    free(c.r);
    free(a);
    free(b);
    free(r);
    free(g);
    free(g2);
}

static void test_sum_rows(void **state)
{
    (void)state;
    sum_rows_case("rows1 cols1", 400, 1, 1);
    sum_rows_case("rows7 cols3", 410, 7, 3);
    sum_rows_case("rows5 cols1", 420, 5, 1);
    sum_rows_case("rows1 cols4", 430, 1, 4);
    sum_rows_case("rows0 cols3 (empty: zeros)", 440, 0, 3);
    sum_rows_case("rows1000 cols3", 450, 1000, 3);
}

/* ------------------------------------------------------------------------ */
/* Masked mean                                                              */

static void mm_case(const char *tag, uint64_t stream, int64_t batch, int64_t n, int64_t d,
                    const int32_t *len)
{
    int64_t nx = batch * n * d;
    float *x = frand(nx, stream, -1, 1), *r = frand(batch * d, stream + 1, -1, 1);
    float *g = fnew(nx), *g2 = fnew(nx);
    for (int64_t i = 0; i < nx; i++)
        g[i] = 12345.0f;
    elastic_cpu_masked_mean_grad(r, len, g, batch, n, d, 1);
    elastic_cpu_masked_mean_grad(r, len, g2, batch, n, d, THREADS);
    same_bits(g, g2, nx);
    /* rows at or past the length are exactly zero */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t row = len[b] < 0 ? 0 : len[b]; row < n; row++)
            assert_true(all_zero(g + (b * n + row) * d, d));
    conf_fd_masked_mean c = {widen(x, nx), widen(r, batch * d), len, batch, n, d};
    conf_fd_tensor ts[1] = {{"dx", c.x, g, nx}};
    fd_check("masked_mean_grad", tag, stream, conf_fd_masked_mean_loss, &c, ts, 1, TOL_ONE);
    free(c.x);
    free(c.r);
    free(x);
    free(r);
    free(g);
    free(g2);
}

static void test_masked_mean_grad(void **state)
{
    (void)state;
    const int32_t l1[4] = {0, 1, 3, 6}, l2[2] = {1, 0}, l3[3] = {5, 2, 7};
    mm_case("B4 n4 d3 len{0,1,3,6}", 500, 4, 4, 3, l1);
    mm_case("B2 n1 d1 len{1,0}", 510, 2, 1, 1, l2);
    mm_case("B3 n7 d5 len{5,2,7}", 520, 3, 7, 5, l3);
}

/* ------------------------------------------------------------------------ */
/* Layer norm                                                               */

static void ln_case(const char *tag, uint64_t stream, int64_t rows, int64_t d, float eps,
                    float center, float spread)
{
    int64_t n = rows * d;
    float *x = frand(n, stream, center - spread, center + spread);
    float *w = frand(d, stream + 1, -1.5f, 1.5f), *b = frand(d, stream + 2, -1, 1);
    float *r = frand(n, stream + 3, -1, 1);
    float *dx = fnew(n), *dw = fnew(d), *db = fnew(d), *dx2 = fnew(n), *dw2 = fnew(d);
    float *db2 = fnew(d);
    assert_int_equal(elastic_cpu_layer_norm_grad(&elastic_cpu_kernels_reference, x, w, r, dx, dw,
                                                 db, rows, d, eps, 1),
                     ELASTIC_OK);
    assert_int_equal(elastic_cpu_layer_norm_grad(&elastic_cpu_kernels_reference, x, w, r, dx2, dw2,
                                                 db2, rows, d, eps, THREADS),
                     ELASTIC_OK);
    same_bits(dx, dx2, n);
    same_bits(dw, dw2, d);
    same_bits(db, db2, d);
    conf_fd_layer_norm c = {widen(x, n), widen(w, d), widen(b, d), widen(r, n),
                            rows,        d,           (double)eps};
    conf_fd_tensor ts[3] = {{"dx", c.x, dx, n}, {"dweight", c.w, dw, d}, {"dbias", c.b, db, d}};
    fd_check("layer_norm_grad", tag, stream, conf_fd_layer_norm_loss, &c, ts, 3, TOL_ONE);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.r);
    free(x);
    free(w);
    free(b);
    free(r);
    free(dx);
    free(dw);
    free(db);
    free(dx2);
    free(dw2);
    free(db2);
}

static void test_layer_norm_grad(void **state)
{
    (void)state;
    ln_case("rows3 d5", 600, 3, 5, 1e-5f, 0, 1);
    ln_case("rows1 d1 (dx = 0)", 610, 1, 1, 1e-5f, 0, 1);
    ln_case("rows4 d8 mean ~100", 620, 4, 8, 1e-5f, 100, 1);
    ln_case("rows2 d7 var << eps", 630, 2, 7, 1e-5f, 0, 1e-3f);
    ln_case("rows5 d2 eps 0.1", 640, 5, 2, 0.1f, 0.5f, 2);
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                   */

static void lin_case(const elastic_cpu_kernels *table, uint64_t stream, int64_t m, int64_t n,
                     int64_t k)
{
    char tag[64];
    snprintf(tag, sizeof tag, "%s M%lld N%lld K%lld", table->isa, (long long)m, (long long)n,
             (long long)k);
    float *x = frand(m * k, stream, -1, 1), *w = frand(n * k, stream + 1, -1, 1);
    float *b = frand(n, stream + 2, -1, 1), *r = frand(m * n, stream + 3, -1, 1);
    float *dx = fnew(m * k), *dw = fnew(n * k), *db = fnew(n);
    float *dx2 = fnew(m * k), *dw2 = fnew(n * k), *db2 = fnew(n);
    assert_int_equal(elastic_cpu_linear_grad(table, x, w, r, dx, dw, db, m, n, k, 1), ELASTIC_OK);
    assert_int_equal(elastic_cpu_linear_grad(table, x, w, r, dx2, dw2, db2, m, n, k, THREADS),
                     ELASTIC_OK);
    same_bits(dx, dx2, m * k);
    same_bits(dw, dw2, n * k);
    same_bits(db, db2, n);
    conf_fd_linear c = {widen(x, m * k), widen(w, n * k), widen(b, n), widen(r, m * n), m, n, k};
    conf_fd_tensor ts[3] = {{"dx", c.x, dx, m * k}, {"dW", c.w, dw, n * k}, {"dbias", c.b, db, n}};
    /* the reference table accumulates in double: one rounding; the fast
     * tables run float32 dot products */
    fd_check("linear_grad", tag, stream, conf_fd_linear_loss, &c, ts, 3,
             table == &elastic_cpu_kernels_reference ? TOL_ONE : TOL_ACC);
    free(c.x);
    free(c.w);
    free(c.b);
    free(c.r);
    free(x);
    free(w);
    free(b);
    free(r);
    free(dx);
    free(dw);
    free(db);
    free(dx2);
    free(dw2);
    free(db2);
}

static void test_linear_grad(void **state)
{
    (void)state;
    /* the reference, the best table, and every other table this CPU runs */
    const elastic_cpu_kernels *tables[5];
    int nt = 0;
    tables[nt++] = &elastic_cpu_kernels_reference;
    const elastic_cpu_kernels *best = elastic_cpu_kernels_for(ELASTIC_CPU_ISA_BEST);
    assert_non_null(best);
    tables[nt++] = best;
    for (int isa = ELASTIC_CPU_ISA_GENERIC; isa <= ELASTIC_CPU_ISA_NEON; isa++) {
        const elastic_cpu_kernels *t = elastic_cpu_kernels_for((elastic_cpu_isa)isa);
        if (t && t != best) tables[nt++] = t;
    }
    /* sizes 1, odd sizes, and inner dims (N for dx, M for dW) past the SIMD
     * widths with tails */
    const int64_t shapes[5][3] = {{1, 1, 1}, {3, 2, 5}, {1, 7, 4}, {19, 21, 13}, {33, 17, 9}};
    for (int t = 0; t < nt; t++)
        for (int s = 0; s < 5; s++)
            lin_case(tables[t], 700 + 10 * (uint64_t)s, shapes[s][0], shapes[s][1], shapes[s][2]);
}

/* ------------------------------------------------------------------------ */
/* GELU                                                                     */

static void gelu_case(const char *tag, uint64_t stream, int64_t n, const float *fixed,
                      int64_t n_fixed)
{
    float *x = frand(n, stream, -5, 5), *r = frand(n, stream + 1, -1, 1);
    for (int64_t i = 0; i < n_fixed; i++)
        x[i] = fixed[i];
    float *g = fnew(n), *g2 = fnew(n);
    elastic_cpu_gelu_grad(x, r, g, n, 1);
    elastic_cpu_gelu_grad(x, r, g2, n, THREADS);
    same_bits(g, g2, n);
    conf_fd_gelu c = {widen(x, n), widen(r, n), n};
    conf_fd_tensor ts[1] = {{"dx", c.x, g, n}};
    fd_check("gelu_grad", tag, stream, conf_fd_gelu_loss, &c, ts, 1, TOL_ONE);
    free(c.x);
    free(c.r);
    free(x);
    free(r);
    free(g);
    free(g2);
}

static void test_gelu_grad(void **state)
{
    (void)state;
    const float fixed[8] = {0.0f, -10.0f, 10.0f, 1e-3f, -3.0f, -0.75f, 2.5f, -1e-4f};
    gelu_case("n1", 800, 1, NULL, 0);
    gelu_case("n45 incl. 0, +-10, tiny", 810, 45, fixed, 8);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                */

static void attn_case(const char *tag, uint64_t stream, int64_t batch, int64_t nq, int64_t nk,
                      int64_t d, int heads, int causal, const int32_t *key_len)
{
    int64_t sq = batch * nq * d, sk = batch * nk * d;
    float *q = frand(sq, stream, -1.5f, 1.5f), *k = frand(sk, stream + 1, -1.5f, 1.5f);
    float *v = frand(sk, stream + 2, -1, 1), *r = frand(sq, stream + 3, -1, 1);
    float *dq = fnew(sq), *dk = fnew(sk), *dv = fnew(sk);
    float *dq2 = fnew(sq), *dk2 = fnew(sk), *dv2 = fnew(sk);
    for (int64_t i = 0; i < sq; i++)
        dq[i] = 12345.0f;
    for (int64_t i = 0; i < sk; i++)
        dk[i] = dv[i] = 12345.0f;
    assert_int_equal(elastic_cpu_attention_grad(q, k, v, r, key_len, dq, dk, dv, batch, nq, nk, d,
                                                heads, causal, 1),
                     ELASTIC_OK);
    assert_int_equal(elastic_cpu_attention_grad(q, k, v, r, key_len, dq2, dk2, dv2, batch, nq, nk,
                                                d, heads, causal, THREADS),
                     ELASTIC_OK);
    same_bits(dq, dq2, sq);
    same_bits(dk, dk2, sk);
    same_bits(dv, dv2, sk);
    /* exact zeros: keys past the length, queries that see no key (a user with
     * key_len 0 gets zero gradients everywhere) */
    for (int64_t b = 0; b < batch; b++) {
        int64_t valid = key_len ? (key_len[b] < nk ? key_len[b] : nk) : nk;
        for (int64_t j = valid; j < nk; j++) {
            assert_true(all_zero(dk + (b * nk + j) * d, d));
            assert_true(all_zero(dv + (b * nk + j) * d, d));
        }
        for (int64_t i = causal ? valid : (valid > 0 ? nq : 0); i < nq; i++)
            assert_true(all_zero(dq + (b * nq + i) * d, d));
    }
    conf_fd_attention c = {
        widen(q, sq), widen(k, sk), widen(v, sk), widen(r, sq), key_len, batch, nq, nk, d,
        heads,        causal,       dnew(nk)};
    conf_fd_tensor ts[3] = {{"dq", c.q, dq, sq}, {"dk", c.k, dk, sk}, {"dv", c.v, dv, sk}};
    /* dq is one rounding of a double sum; dk and dv add float32 contributions
     * over the queries */
    fd_check("attention_grad", tag, stream, conf_fd_attention_loss, &c, ts, 3, TOL_ACC);
    free(c.q);
    free(c.k);
    free(c.v);
    free(c.r);
    free(c.logit);
    free(q);
    free(k);
    free(v);
    free(r);
    free(dq);
    free(dk);
    free(dv);
    free(dq2);
    free(dk2);
    free(dv2);
}

static void test_attention_grad(void **state)
{
    (void)state;
    const int32_t l2[3] = {4, 2, 0}, l3[2] = {1, 0}, l4[2] = {9, 3}, l6[2] = {0, 3};
    const int32_t l7[1] = {1}, l8[2] = {2, 3};
    attn_case("B2 nq3 nk5 d6 h3", 900, 2, 3, 5, 6, 3, 0, NULL);
    attn_case("B3 nq4 nk4 d4 h1 causal len{4,2,0}", 910, 3, 4, 4, 4, 1, 1, l2);
    attn_case("B2 nq2 nk1 d3 h1 len{1,0}", 920, 2, 2, 1, 3, 1, 0, l3);
    attn_case("B2 nq5 nk5 d6 h3 causal len{9,3}", 930, 2, 5, 5, 6, 3, 1, l4);
    attn_case("B1 nq3 nk5 d2 h1 causal", 940, 1, 3, 5, 2, 1, 1, NULL);
    attn_case("B2 nq4 nk3 d6 h2 len{0,3}", 950, 2, 4, 3, 6, 2, 0, l6);
    attn_case("B1 nq3 nk3 d3 h3 causal", 960, 1, 3, 3, 3, 3, 1, NULL);
    attn_case("B1 nq1 nk1 d1 h1 len{1}", 970, 1, 1, 1, 1, 1, 0, l7);
    attn_case("B2 nq5 nk3 d4 h2 causal len{2,3}", 980, 2, 5, 3, 4, 2, 1, l8);
}

/* ------------------------------------------------------------------------ */
/* Product-key memory                                                       */

/* Runs the kernel with 1 and THREADS threads (same bits) and checks that
 * exactly the selected slots and sub-key rows get gradients. */
static void pkm_run(const char *tag, conf_fd_pkm *c, const float *q, const float *sk,
                    const float *val, const float *r, float *dq, float *dsk, float *dval)
{
    int64_t rows = c->batch * c->experts, half = c->c / 2, m = c->m, d = c->d;
    int64_t nq = rows * c->c, nsk = 2 * m * half, nval = m * m * d;
    float *dq2 = fnew(nq), *dsk2 = fnew(nsk), *dval2 = fnew(nval);
    for (int64_t i = 0; i < nq; i++)
        dq[i] = 12345.0f;
    for (int64_t i = 0; i < nsk; i++)
        dsk[i] = 12345.0f;
    for (int64_t i = 0; i < nval; i++)
        dval[i] = 12345.0f;
    assert_int_equal(elastic_cpu_pkm_grad(&elastic_cpu_kernels_reference, q, sk, val, r, dq, dsk,
                                          dval, c->batch, c->experts, c->c, m, c->t, d, 1),
                     ELASTIC_OK);
    assert_int_equal(elastic_cpu_pkm_grad(&elastic_cpu_kernels_reference, q, sk, val, r, dq2, dsk2,
                                          dval2, c->batch, c->experts, c->c, m, c->t, d, THREADS),
                     ELASTIC_OK);
    same_bits(dq, dq2, nq);
    same_bits(dsk, dsk2, nsk);
    same_bits(dval, dval2, nval);
    /* the selection of the float64 forward */
    unsigned char *used_sk = xcalloc((size_t)(2 * m), 1), *used_val = xcalloc((size_t)(m * m), 1);
    int64_t slot[16];
    double w[16];
    for (int64_t row = 0; row < rows; row++) {
        conf_fd_pkm_row(c, row, slot, w, NULL);
        for (int64_t i = 0; i < c->t; i++) {
            used_val[slot[i]] = 1;
            used_sk[slot[i] / m] = 1;
            used_sk[m + slot[i] % m] = 1;
        }
    }
    int bad = 0, sk_reached = 0;
    for (int64_t s = 0; s < m * m; s++) {
        int zero = all_zero(dval + s * d, d);
        if (used_val[s] == zero) { /* selected: some nonzero; unselected: all zero */
            printf("  FAIL pkm_grad %s: value row %lld (slot %lld,%lld) selected %d but "
                   "gradient %s\n",
                   tag, (long long)s, (long long)(s / m), (long long)(s % m), used_val[s],
                   zero ? "zero" : "nonzero");
            bad++;
        }
    }
    for (int64_t s = 0; s < 2 * m; s++) {
        int zero = all_zero(dsk + s * half, half);
        if (!used_sk[s] && !zero) {
            printf("  FAIL pkm_grad %s: unselected sub-key %lld of half %lld has a gradient\n", tag,
                   (long long)(s % m), (long long)(s / m));
            bad++;
        }
        sk_reached |= used_sk[s] && !zero;
    }
    if (c->t > 1) {
        /* through the softmax, the gradient reaches the selected sub-keys and the query */
        if (!sk_reached || all_zero(dq, nq)) {
            printf("  FAIL pkm_grad %s: no gradient reached the sub-keys or the query\n", tag);
            bad++;
        }
    } else if (!all_zero(dq, nq) || !all_zero(dsk, nsk)) {
        /* one kept slot: its weight is 1 whatever the score */
        printf("  FAIL pkm_grad %s: t = 1 but the query or sub-keys got a gradient\n", tag);
        bad++;
    }
    free(used_sk);
    free(used_val);
    free(dq2);
    free(dsk2);
    free(dval2);
    assert_int_equal(bad, 0);
}

static void pkm_case(const char *tag, uint64_t stream, int64_t batch, int64_t experts, int64_t c,
                     int64_t m, int64_t t, int64_t d)
{
    int64_t rows = batch * experts, half = c / 2;
    int64_t nq = rows * c, nsk = 2 * m * half, nval = m * m * d;
    assert_true(t <= 16);
    /* Draw inputs until every selection boundary has a margin >= 1e-3: a
     * finite-difference step moves a score by <= 1e-6 * |input| ~ 2e-6, so no
     * selection flips. */
    float *q = NULL, *sk = NULL;
    conf_fd_pkm ctx = {0};
    double margin = 0;
    int attempt;
    for (attempt = 0; attempt < 200; attempt++) {
        free(q);
        free(sk);
        free(ctx.q);
        free(ctx.sk);
        uint64_t s = stream + 1000 * (uint64_t)attempt;
        q = frand(nq, s, -1, 1);
        sk = frand(nsk, s + 1, -1, 1);
        ctx = (conf_fd_pkm){widen(q, nq), widen(sk, nsk), NULL, NULL, batch, experts, c, m, t, d,
                            NULL,         NULL,           NULL};
        ctx.sa = xcalloc((size_t)(2 * m + t * t), sizeof(conf_fd_scored));
        ctx.sb = ctx.sa + m;
        ctx.pair = ctx.sb + m;
        margin = INFINITY;
        int64_t slot[16];
        double w[16], g;
        for (int64_t row = 0; row < rows; row++) {
            conf_fd_pkm_row(&ctx, row, slot, w, &g);
            margin = fmin(margin, g);
        }
        free(ctx.sa);
        if (margin >= 1e-3) break;
    }
    assert_true(attempt < 200);
    uint64_t used = stream + 1000 * (uint64_t)attempt;
    float *val = frand(nval, used + 2, -1, 1), *r = frand(rows * d, used + 3, -1, 1);
    ctx.val = widen(val, nval);
    ctx.r = widen(r, rows * d);
    ctx.sa = xcalloc((size_t)(2 * m + t * t), sizeof(conf_fd_scored));
    ctx.sb = ctx.sa + m;
    ctx.pair = ctx.sb + m;
    float *dq = fnew(nq), *dsk = fnew(nsk), *dval = fnew(nval);
    pkm_run(tag, &ctx, q, sk, val, r, dq, dsk, dval);
    char full[96];
    snprintf(full, sizeof full, "%s (margin %.1e)", tag, margin);
    conf_fd_tensor ts[3] = {{"dquery", ctx.q, dq, nq},
                            {"dsubkeys", ctx.sk, dsk, nsk},
                            {"dvalues", ctx.val, dval, nval}};
    fd_check("pkm_grad", full, used, conf_fd_pkm_loss, &ctx, ts, 3, TOL_ACC);
    free(ctx.q);
    free(ctx.sk);
    free(ctx.val);
    free(ctx.r);
    free(ctx.sa);
    free(q);
    free(sk);
    free(val);
    free(r);
    free(dq);
    free(dsk);
    free(dval);
}

static void test_pkm_grad(void **state)
{
    (void)state;
    pkm_case("B2 k3 c4 m5 t2 d3", 1100, 2, 3, 4, 5, 2, 3);
    pkm_case("B1 k1 c2 m3 t3 d2 (t = m)", 1110, 1, 1, 2, 3, 3, 2);
    pkm_case("B3 k2 c6 m4 t1 d2 (t = 1)", 1120, 3, 2, 6, 4, 1, 2);
    pkm_case("B2 k2 c4 m6 t3 d4", 1130, 2, 2, 4, 6, 3, 4);
    pkm_case("B4 k2 c2 m3 t2 d1 (shared slots)", 1140, 4, 2, 2, 3, 2, 1);
}

/* Exact ties: every top-t breaks them by the smaller index (slot for pairs).
 * query (1, 0 | 1, 0), c = 4, m = 4, t = 2, so a score is the first component
 * of a sub-key:
 *   sa = {2, 0.5, 2, 2}  -> A = {0, 2} (row 3 ties with 0 and 2 and loses)
 *   sb = {1, 3, -1, 3}   -> B = {1, 3}
 *   pairs (0,1) (0,3) (2,1) (2,3) all score 5 -> kept slots 1 and 3 (x = 0).
 * So values rows 1 and 3 get dy / 2 each and nothing else; sub-key rows 1, 2, 3
 * of half 0 and rows 0, 2 of half 1 get nothing. With w = 1/2 each,
 * ds_1 = (dy.v_1 - dy.v_3) / 4 = -ds_3; dsubkeys[1][y] = ds_y * (1, 0);
 * dsubkeys[0][0] = (ds_1 + ds_3) * (1, 0) = 0; dquery = (0, 0, 0, ds_1 (-0.6 - 0.8)). */
static void test_pkm_grad_ties(void **state)
{
    (void)state;
    const int64_t m = 4, d = 3, t = 2, c = 4;
    const float q[4] = {1, 0, 1, 0};
    const float sk[16] = {2, 0.7f, 0.5f, -0.2f, 2,  -0.4f, 2, 0.9f,  /* half 0, rows 0..3 */
                          1, 0.3f, 3,    -0.6f, -1, 0.1f,  3, 0.8f}; /* half 1 */
    float *val = frand(m * m * d, 1200, -1, 1), *r = frand(d, 1201, -1, 1);
    float dq[4], dsk[16], *dval = fnew(m * m * d);
    conf_fd_pkm ctx = {
        widen(q, 4), widen(sk, 16), widen(val, m * m * d), widen(r, d), 1, 1, c, m, t, d, NULL,
        NULL,        NULL};
    ctx.sa = xcalloc((size_t)(2 * m + t * t), sizeof(conf_fd_scored));
    ctx.sb = ctx.sa + m;
    ctx.pair = ctx.sb + m;
    int64_t slot[2];
    double w[2];
    conf_fd_pkm_row(&ctx, 0, slot, w, NULL);
    assert_true(slot[0] == 1 && slot[1] == 3); /* the forward here agrees with the comment */
    pkm_run("ties", &ctx, q, sk, val, r, dq, dsk, dval);
    for (int64_t s = 0; s < m * m; s++)
        for (int64_t j = 0; j < d; j++)
            assert_true(dval[s * d + j] == (s == 1 || s == 3 ? 0.5f * r[j] : 0.0f));
    double dw1 = 0, dw3 = 0;
    for (int64_t j = 0; j < d; j++) {
        dw1 += (double)r[j] * val[1 * d + j];
        dw3 += (double)r[j] * val[3 * d + j];
    }
    double ds1 = (dw1 - dw3) / 4;
    const double want_dsk[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ds1, 0, 0, 0, -ds1, 0};
    const double want_dq[4] = {0, 0, 0, ds1 * (-0.6 - 0.8)};
    for (int i = 0; i < 16; i++)
        assert_float_equal(dsk[i], want_dsk[i], 1e-6);
    for (int i = 0; i < 4; i++)
        assert_float_equal(dq[i], want_dq[i], 1e-6);
    for (int i = 2; i < 8; i++)
        assert_true(dsk[i] == 0.0f); /* half 0, rows 1..3 */
    for (int i = 8; i < 10; i++)
        assert_true(dsk[i] == 0.0f && dsk[i + 4] == 0.0f);
    /* values do not move the selection: finite differences are valid there */
    conf_fd_tensor ts[1] = {{"dvalues", ctx.val, dval, m * m * d}};
    fd_check("pkm_grad", "ties: dvalues only", 1200, conf_fd_pkm_loss, &ctx, ts, 1, TOL_ACC);
    free(ctx.q);
    free(ctx.sk);
    free(ctx.val);
    free(ctx.r);
    free(ctx.sa);
    free(val);
    free(r);
    free(dval);
}

/* ------------------------------------------------------------------------ */
/* View                                                                     */

static void view_case(const char *tag, uint64_t stream, int64_t src_numel, int ndim,
                      const int64_t *shape, const int64_t *strides, int64_t offset, int overlaps)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= shape[i];
    float *src = frand(src_numel, stream, -1, 1), *r = frand(numel, stream + 1, -1, 1);
    float *g = fnew(src_numel);
    for (int64_t i = 0; i < src_numel; i++)
        g[i] = 12345.0f;
    elastic_cpu_view_grad(r, ndim, shape, strides, offset, g, src_numel);
    conf_fd_view c = {widen(src, src_numel), widen(r, numel), ndim, shape, strides, offset, numel};
    if (!overlaps) {
        /* each view element lands on its own source element: exact copy, zeros elsewhere */
        float *want = fnew(src_numel);
        int64_t idx[4] = {0, 0, 0, 0};
        for (int64_t e = 0; e < numel; e++) {
            int64_t at = offset;
            for (int i = 0; i < ndim; i++)
                at += idx[i] * strides[i];
            want[at] = r[e];
            for (int i = ndim - 1; i >= 0; i--) {
                if (++idx[i] < shape[i]) break;
                idx[i] = 0;
            }
        }
        same_bits(g, want, src_numel);
        free(want);
    }
    conf_fd_tensor ts[1] = {{"dsrc", c.src, g, src_numel}};
    fd_check("view_grad", tag, stream, conf_fd_view_loss, &c, ts, 1, overlaps ? TOL_ACC : TOL_ONE);
    free(c.src);
    free(c.r);
    free(src);
    free(r);
    free(g);
}

static void test_view_grad(void **state)
{
    (void)state;
    /* row 0 of [B=2, n=3, d=4]: shape [2,1,4], strides {n*d, d, 1} */
    const int64_t sh1[3] = {2, 1, 4}, st1[3] = {12, 4, 1};
    view_case("row 0 of [2,3,4]", 1300, 24, 3, sh1, st1, 0, 0);
    /* the last row of [2,3,4] as [2,4]: offset (n-1)*d */
    const int64_t sh2[2] = {2, 4}, st2[2] = {12, 1};
    view_case("row 2 of [2,3,4], offset 8", 1310, 24, 2, sh2, st2, 8, 0);
    /* a transpose of [3,4] */
    const int64_t sh3[2] = {4, 3}, st3[2] = {1, 4};
    view_case("transpose of [3,4]", 1320, 12, 2, sh3, st3, 0, 0);
    /* 1-d, strided, offset */
    const int64_t sh4[1] = {3}, st4[1] = {3};
    view_case("every 3rd of [10] from 1", 1330, 10, 1, sh4, st4, 1, 0);
    /* 4-d window of [2,3,2,3] */
    const int64_t sh5[4] = {2, 1, 2, 2}, st5[4] = {18, 6, 3, 1};
    view_case("4-d window of [2,3,2,3] at 7", 1340, 36, 4, sh5, st5, 7, 0);
    /* a broadcast (stride 0) view: contributions accumulate */
    const int64_t sh6[2] = {3, 2}, st6[2] = {0, 1};
    view_case("broadcast [3,2] of [5] at 2", 1350, 5, 2, sh6, st6, 2, 1);
    /* the whole source, contiguous */
    const int64_t sh7[2] = {3, 5}, st7[2] = {5, 1};
    view_case("identity [3,5]", 1360, 15, 2, sh7, st7, 0, 0);
}

/* ------------------------------------------------------------------------ */

static int print_summary(void **state)
{
    (void)state;
    printf("# worst |g - fd| / max|fd| per op:\n");
    for (int i = 0; i < n_worst; i++)
        printf("#   %-20s %.2e over %d cases\n", worst_by_op[i].op, worst_by_op[i].err,
               worst_by_op[i].cases);
    return 0;
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dropout),          cmocka_unit_test(test_cross_entropy_hand),
        cmocka_unit_test(test_cross_entropy_fd), cmocka_unit_test(test_gather_grad),
        cmocka_unit_test(test_sum_rows),         cmocka_unit_test(test_masked_mean_grad),
        cmocka_unit_test(test_layer_norm_grad),  cmocka_unit_test(test_linear_grad),
        cmocka_unit_test(test_gelu_grad),        cmocka_unit_test(test_attention_grad),
        cmocka_unit_test(test_pkm_grad),         cmocka_unit_test(test_pkm_grad_ties),
        cmocka_unit_test(test_view_grad),
    };
    return cmocka_run_group_tests(tests, NULL, print_summary);
}
