/*
 * cpu_kernels.c - the fast float32 CPU kernels.
 *
 * One source, compiled once per instruction set with
 * -DELASTIC_CPU_ISA_NAME=generic|avx2|avx512|neon and that set's flags; each
 * compilation defines exactly one table, elastic_cpu_kernels_<name>, and
 * keeps every helper static so the objects link side by side.
 *
 * Vectors are GCC vector extensions of VLEN floats (4 with SSE2 / baseline,
 * 8 with AVX2, 16 with AVX-512); the few operations the extensions cannot
 * express (fused multiply-add, max, lane masks) use intrinsics. Memory is
 * always accessed through memcpy, so nothing assumes alignment.
 *
 * Every kernel is deterministic: an output element is computed by the same
 * sequence of operations whatever the thread count, so 1 and N threads give
 * bitwise identical results.
 *
 * No kernel needs the heap on its fast path except linear (a packed copy of
 * W, one per call), pkm (a double copy of the sub-keys, one per call) and
 * topk (a per-thread exclusion bitmap) and score_topk (a packed block of
 * items, a tile of scores and heaps per thread); all fall back to slower
 * allocation-free paths if malloc fails. Stack scratch is bounded (a few
 * KiB per thread; pkm with t > 64 mallocs its O(t) lists and fails, -1,
 * without them).
 */
#include "cpu_grad.h"
#include "cpu_kernels.h"

#include "base/rng.h"

#include <omp.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif
/* The aarch64 NEON table (-DELASTIC_CPU_NEON): fused multiply-add and lane
 * tests by intrinsics; the generic table on aarch64 stays plain vectors. */
#if defined(ELASTIC_CPU_NEON) && defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define EK_NEON 1
#endif

#ifndef ELASTIC_CPU_ISA_NAME
#define ELASTIC_CPU_ISA_NAME generic
#endif
#define EK_CAT2(a, b) a##b
#define EK_CAT(a, b) EK_CAT2(a, b)
#define EK_STR2(a) #a
#define EK_STR(a) EK_STR2(a)
#define EK_TABLE EK_CAT(elastic_cpu_kernels_, ELASTIC_CPU_ISA_NAME)

#define EK_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------ vectors */

#if defined(__AVX512F__)
#define VLEN 16
#elif defined(__AVX2__)
#define VLEN 8
#else
#define VLEN 4
#endif

typedef float vf __attribute__((vector_size(VLEN * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VLEN * sizeof(int32_t))));

EK_INLINE vf vload(const float *p)
{
    vf v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

EK_INLINE void vstore(float *p, vf v)
{
    __builtin_memcpy(p, &v, sizeof v);
}

/* Broadcast (not (vf){0} + s: without -fno-signed-zeros that is a real add). */
EK_INLINE vf vset1(float s)
{
#if defined(__AVX512F__)
    return (vf)_mm512_set1_ps(s);
#elif defined(__AVX2__)
    return (vf)_mm256_set1_ps(s);
#elif defined(__SSE2__)
    return (vf)_mm_set1_ps(s);
#else
    return (vf){s, s, s, s};
#endif
}

/* a * b + c, fused where the instruction set has it. */
EK_INLINE vf vfma(vf a, vf b, vf c)
{
#if defined(__AVX512F__)
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(EK_NEON)
    return (vf)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
#else
    return a * b + c;
#endif
}

/* Bitwise select: m ? a : b, m all-ones or all-zeros per lane. */
EK_INLINE vf vselect(vi m, vf a, vf b)
{
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}

EK_INLINE vf vmax(vf a, vf b)
{
#if defined(__AVX512F__)
    return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX2__)
    return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#else
    return vselect(a > b, a, b);
#endif
}

/* Whether any lane of v is > t (false for NaN lanes). */
EK_INLINE int vany_gt(vf v, float t)
{
#if defined(__AVX512F__)
    return _mm512_cmp_ps_mask((__m512)v, _mm512_set1_ps(t), _CMP_GT_OQ) != 0;
#elif defined(__AVX2__)
    return _mm256_movemask_ps(_mm256_cmp_ps((__m256)v, _mm256_set1_ps(t), _CMP_GT_OQ)) != 0;
#elif defined(__SSE2__)
    return _mm_movemask_ps(_mm_cmpgt_ps((__m128)v, _mm_set1_ps(t))) != 0;
#elif defined(EK_NEON)
    return vmaxvq_u32(vcgtq_f32((float32x4_t)v, vdupq_n_f32(t))) != 0;
#else
    vi m = v > vset1(t);
    int any = 0;
    for (int l = 0; l < VLEN; l++)
        any |= m[l] != 0;
    return any;
#endif
}

/* Whether any lane of v is >= t (false for NaN lanes). */
EK_INLINE int vany_ge(vf v, float t)
{
#if defined(__AVX512F__)
    return _mm512_cmp_ps_mask((__m512)v, _mm512_set1_ps(t), _CMP_GE_OQ) != 0;
#elif defined(__AVX2__)
    return _mm256_movemask_ps(_mm256_cmp_ps((__m256)v, _mm256_set1_ps(t), _CMP_GE_OQ)) != 0;
#elif defined(__SSE2__)
    return _mm_movemask_ps(_mm_cmpge_ps((__m128)v, _mm_set1_ps(t))) != 0;
#else
    vi m = v >= vset1(t);
    int any = 0;
    for (int l = 0; l < VLEN; l++)
        any |= m[l] != 0;
    return any;
#endif
}

/* Lane sum in a fixed order. */
EK_INLINE float vhsum(vf v)
{
    float s = 0.0f;
    for (int l = 0; l < VLEN; l++)
        s += v[l];
    return s;
}

/* n = round(x / ln 2) per lane, with the 1.5 * 2^23 trick (its low bits are
 * n), also as a float in *fn. */
EK_INLINE vi vexp_round(vf x, vf *fn)
{
    vf t = vfma(x, vset1(1.44269504088896341f), vset1(12582912.0f));
    *fn = t - vset1(12582912.0f);
    return (vi)t - (vi)vset1(12582912.0f);
}

/* 2^n exp(r) for r = x - fn * 0.693359375 (Cody-Waite's exact first step;
 * the second is taken here): Cephes expf's polynomial. */
EK_INLINE vf vexp_reduced(vf r, vf fn, vi n)
{
    r = vfma(fn, vset1(2.12194440e-4f), r);
    vf p = vset1(1.9875691500e-4f);
    p = vfma(p, r, vset1(1.3981999507e-3f));
    p = vfma(p, r, vset1(8.3334519073e-3f));
    p = vfma(p, r, vset1(4.1665795894e-2f));
    p = vfma(p, r, vset1(1.6666665459e-1f));
    p = vfma(p, r, vset1(5.0000001201e-1f));
    p = vfma(p, r * r, r + vset1(1.0f));
    /* 2^n, split in two factors so n = 128 (x near the top) stays finite. */
    vi n1 = n >> 1, n2 = n - n1;
    vf s1 = (vf)((n1 + 127) << 23), s2 = (vf)((n2 + 127) << 23);
    return p * s1 * s2;
}

/* exp(x) per lane (Cephes expf: ~1 ulp on the normal range). exp(x) = 0 for
 * x < -87.3 (below FLT_MIN, including -inf), +inf lanes saturate to 2^128-ish
 * (never used: callers pass x <= 0). */
EK_INLINE vf vexp(vf x)
{
    const vf hi = vset1(88.3762626647949f), lo = vset1(-87.3365447505531f);
    vi under = x < lo;
    x = vselect(x > hi, hi, x);
    x = vselect(under, lo, x);
    vf fn;
    vi n = vexp_round(x, &fn);
    vf res = vexp_reduced(vfma(fn, vset1(-0.693359375f), x), fn, n);
    return vselect(under, vset1(0.0f), res);
}

static inline int64_t ek_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}
static inline int64_t ek_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ------------------------------------------------------------------ simple ops */

static void k_gather(const float *table, int64_t d, const int32_t *idx, int64_t n, float *out,
                     int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * d, table + (int64_t)idx[i] * d, (size_t)d * sizeof(float));
}

static void k_add(const float *a, const float *b, float *out, int64_t n, int64_t nb, int threads)
{
    const int64_t chunk = 16384;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t i = c * chunk, end = ek_min(n, i + chunk);
        int64_t j = i % nb;
        while (i < end) {
            int64_t run = ek_min(end - i, nb - j);
            const float *ai = a + i, *bj = b + j;
            float *oi = out + i;
            for (int64_t t = 0; t < run; t++)
                oi[t] = ai[t] + bj[t];
            i += run;
            j = 0;
        }
    }
}

/* Sums in double (a block of columns at a time, so scratch stays small):
 * the mean of up to 16k rows keeps float32 accuracy. */
static void k_masked_mean(const float *x, const int32_t *len, float *out, int64_t batch, int64_t n,
                          int64_t d, int threads)
{
    enum { CB = 64 };
#pragma omp parallel for num_threads(threads) schedule(static) if (batch * n * d > 65536)
    for (int64_t b = 0; b < batch; b++) {
        int64_t rows = len[b] < n ? len[b] : n;
        if (rows < 0) rows = 0;
        for (int64_t j0 = 0; j0 < d; j0 += CB) {
            int64_t w = ek_min(CB, d - j0);
            double acc[CB];
            for (int64_t j = 0; j < w; j++)
                acc[j] = 0.0;
            for (int64_t r = 0; r < rows; r++) {
                const float *xr = x + (b * n + r) * d + j0;
                for (int64_t j = 0; j < w; j++)
                    acc[j] += (double)xr[j];
            }
            for (int64_t j = 0; j < w; j++)
                out[b * d + j0 + j] = rows > 0 ? (float)(acc[j] / (double)rows) : 0.0f;
        }
    }
}

/* Sum of a row: VLEN-wide partial sums (two accumulators), lanes added in
 * order, then the tail. */
static float row_sum(const float *x, int64_t d)
{
    vf s0 = vset1(0.0f), s1 = vset1(0.0f);
    int64_t j = 0;
    for (; j + 2 * VLEN <= d; j += 2 * VLEN) {
        s0 += vload(x + j);
        s1 += vload(x + j + VLEN);
    }
    for (; j + VLEN <= d; j += VLEN)
        s0 += vload(x + j);
    float s = vhsum(s0 + s1);
    for (; j < d; j++)
        s += x[j];
    return s;
}

static float row_sq_dev(const float *x, int64_t d, float mean)
{
    vf m = vset1(mean), s0 = vset1(0.0f), s1 = vset1(0.0f);
    int64_t j = 0;
    for (; j + 2 * VLEN <= d; j += 2 * VLEN) {
        vf a = vload(x + j) - m, c = vload(x + j + VLEN) - m;
        s0 = vfma(a, a, s0);
        s1 = vfma(c, c, s1);
    }
    for (; j + VLEN <= d; j += VLEN) {
        vf a = vload(x + j) - m;
        s0 = vfma(a, a, s0);
    }
    float s = vhsum(s0 + s1);
    for (; j < d; j++)
        s += (x[j] - mean) * (x[j] - mean);
    return s;
}

/* One row of k_layer_norm (also the fused FFN's, so that both give the same bits). */
EK_INLINE void ln_row(const float *xr, const float *weight, const float *bias, float *o, int64_t d,
                      float eps)
{
    float mean = row_sum(xr, d) / (float)d;
    float var = row_sq_dev(xr, d, mean) / (float)d;
    float inv = (float)(1.0 / sqrt((double)var + (double)eps));
    for (int64_t j = 0; j < d; j++)
        o[j] = (xr[j] - mean) * inv * weight[j] + bias[j];
}

static void k_layer_norm(const float *x, const float *weight, const float *bias, float *out,
                         int64_t rows, int64_t d, float eps, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * d > 32768)
    for (int64_t r = 0; r < rows; r++)
        ln_row(x + r * d, weight, bias, out + r * d, d, eps);
}

/* exp(a + b) per lane for a = -z^2 rounded (a <= 0, exact) and a small b
 * (|b| < 4): vexp's Cody-Waite reduction applied to a alone, where it is
 * exact, and b added to the reduced argument, so that the sum a + b is never
 * rounded. a is clamped at -88 (exp is 0 there anyway: the caller discards
 * such lanes). */
EK_INLINE vf vexp_sum(vf a, vf b)
{
    a = vmax(a, vset1(-88.0f));
    vf fn;
    vi n = vexp_round(a + b, &fn);
    return vexp_reduced(vfma(fn, vset1(-0.693359375f), a) + b, fn, n);
}

/*
 * GELU(x) = 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), in vectors.
 * With z = |x| / sqrt 2, erfc(z) = t exp(-z^2 + P(t)), t = 2 / (2 + z), P the
 * degree-9 Chebyshev fit of Numerical Recipes' erfcc (relative error
 * < 1.2e-7 for every z >= 0). z^2 is split into hi + lo exactly and
 * exp(-hi + (P - lo)) taken without rounding that sum (vexp_sum), which
 * keeps the tail's relative accuracy; then
 * 1 + erf(x / sqrt 2) is erfc(z) for x < 0 and 2 - erfc(z) for x >= 0, so
 * neither side cancels. About 7 u relative at worst (vs. 4 u for libm's
 * erfcf), at a fraction of its cost.
 */
EK_INLINE vf vphi2(vf x) /* 2 Phi(x) = 1 + erf(x / sqrt 2) */
{
    vf ax = (vf)((vi)x & (vi)((vi){0} + 0x7fffffff));
    vf z = ax * vset1(0.70710678118654752f);
    vf t = vset1(2.0f) / (vset1(2.0f) + z);
    vf p = vset1(0.17087277f);
    p = vfma(p, t, vset1(-0.82215223f));
    p = vfma(p, t, vset1(1.48851587f));
    p = vfma(p, t, vset1(-1.13520398f));
    p = vfma(p, t, vset1(0.27886807f));
    p = vfma(p, t, vset1(-0.18628806f));
    p = vfma(p, t, vset1(0.09678418f));
    p = vfma(p, t, vset1(0.37409196f));
    p = vfma(p, t, vset1(1.00002368f));
    p = vfma(p, t, vset1(-1.26551223f));
    vf hi = z * z;
#if defined(__AVX512F__) || defined(__FMA__) || defined(EK_NEON)
    vf lo = vfma(z, z, -hi);
#else
    /* Dekker: z = zh + zl with zh of 12 significant bits, products exact */
    vf zh = (vf)((vi)z & (vi)((vi){0} + (int32_t)0xfffff000u));
    vf zl = z - zh;
    vf lo = ((zh * zh - hi) + vset1(2.0f) * zh * zl) + zl * zl;
#endif
    vf e = t * vexp_sum(-hi, p - lo);
    e = vselect(z > vset1(9.0f), vset1(0.0f), e); /* erfc(9) < 1e-36; also z = inf */
    return vselect(x < vset1(0.0f), e, vset1(2.0f) - e);
}

EK_INLINE vf vgelu(vf x)
{
    return vset1(0.5f) * x * vphi2(x);
}

/* GELU'(x) dy = (Phi(x) + x phi(x)) dy, phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
EK_INLINE vf vgelu_grad(vf x, vf dy)
{
    vf pdf = vset1(0.39894228040143267794f) * vexp(vset1(-0.5f) * x * x);
    return dy * vfma(x, pdf, vset1(0.5f) * vphi2(x));
}

/* GELU of x[i, end) (lane by lane: the bits do not depend on where a span starts). */
static void gelu_span(const float *x, float *out, int64_t i, int64_t end)
{
    for (; i + VLEN <= end; i += VLEN)
        vstore(out + i, vgelu(vload(x + i)));
    if (i < end) {
        float tmp[VLEN] = {0};
        memcpy(tmp, x + i, (size_t)(end - i) * sizeof(float));
        vstore(tmp, vgelu(vload(tmp)));
        memcpy(out + i, tmp, (size_t)(end - i) * sizeof(float));
    }
}

static void k_gelu(const float *x, float *out, int64_t n, int threads)
{
    const int64_t chunk = 4096;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++)
        gelu_span(x, out, c * chunk, ek_min(n, c * chunk + chunk));
}

static void k_gelu_grad(const float *x, const float *dy, float *dx, int64_t n, int threads)
{
    const int64_t chunk = 4096;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(static) if (nchunks > 1)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t i = c * chunk, end = ek_min(n, i + chunk);
        for (; i + VLEN <= end; i += VLEN)
            vstore(dx + i, vgelu_grad(vload(x + i), vload(dy + i)));
        if (i < end) {
            float tx[VLEN] = {0}, tdy[VLEN] = {0};
            memcpy(tx, x + i, (size_t)(end - i) * sizeof(float));
            memcpy(tdy, dy + i, (size_t)(end - i) * sizeof(float));
            vstore(tx, vgelu_grad(vload(tx), vload(tdy)));
            memcpy(dx + i, tx, (size_t)(end - i) * sizeof(float));
        }
    }
}

/* ------------------------------------------------------------------ linear */

/*
 * out[M,N] = x[M,K] w[N,K]^T + bias. W is packed once per call into panels of
 * NR columns: panel p holds, for every k, the NR values w[p*NR + c][k]
 * (zero-padded past N), followed by the panel's NR biases. A micro-kernel
 * keeps an MR x NR tile of out in registers and walks k with one FMA per
 * (row, vector). Work is split into (MC rows) x (NC columns) tiles, spread
 * over threads statically; every out element is bias + an FMA chain over
 * k = 0..K-1 in order, whichever tile or thread computes it.
 */
#if VLEN == 16
#define LIN_MR 6
#define LIN_NRV 4
#elif VLEN == 8
#define LIN_MR 6
#define LIN_NRV 2
#else
#define LIN_MR 6
#define LIN_NRV 2
#endif
#define LIN_NR (LIN_NRV * VLEN)
#define LIN_MC (LIN_MR * 16)
#define LIN_NC_PANELS (512 / LIN_NR)

EK_INLINE void lin_tile(const int mr, const float *restrict x, int64_t rs, int64_t cs, int64_t k,
                        const float *restrict bp, float *restrict out, int64_t ldo, int64_t ncols)
{
    vf acc[LIN_MR][LIN_NRV];
    const float *bb = bp + k * LIN_NR;
#pragma GCC unroll 16
    for (int r = 0; r < LIN_MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < LIN_NRV; v++)
            acc[r][v] = vload(bb + v * VLEN);
    const float *xr[LIN_MR];
#pragma GCC unroll 16
    for (int r = 0; r < LIN_MR; r++)
        xr[r] = x + (r < mr ? r : 0) * rs;
    for (int64_t p = 0; p < k; p++) {
        vf b[LIN_NRV];
#pragma GCC unroll 8
        for (int v = 0; v < LIN_NRV; v++)
            b[v] = vload(bp + p * LIN_NR + v * VLEN);
#pragma GCC unroll 16
        for (int r = 0; r < LIN_MR; r++) {
            if (r < mr) {
                vf a = vset1(xr[r][p * cs]);
#pragma GCC unroll 8
                for (int v = 0; v < LIN_NRV; v++)
                    acc[r][v] = vfma(a, b[v], acc[r][v]);
            }
        }
    }
    if (ncols == LIN_NR) {
#pragma GCC unroll 16
        for (int r = 0; r < LIN_MR; r++)
            if (r < mr)
#pragma GCC unroll 8
                for (int v = 0; v < LIN_NRV; v++)
                    vstore(out + r * ldo + v * VLEN, acc[r][v]);
    } else {
#pragma GCC unroll 16
        for (int r = 0; r < LIN_MR; r++) {
            if (r < mr) {
                float tmp[LIN_NR];
#pragma GCC unroll 8
                for (int v = 0; v < LIN_NRV; v++)
                    vstore(tmp + v * VLEN, acc[r][v]);
                memcpy(out + r * ldo, tmp, (size_t)ncols * sizeof(float));
            }
        }
    }
}

/* Rows [i0, i1) of out, columns of panels [p0, p1): panels outer, so one
 * panel of W stays in L1 while the row tiles of x go by. Element (i, p)
 * of x is x[i rs + p cs]: rs = k, cs = 1 for x as it lies (lin_block),
 * rs = 1, cs = ld for x given transposed (lin_block_t). */
EK_INLINE void lin_block_any(const float *x, int64_t rs, int64_t cs, const float *packed,
                             float *out, int64_t i0, int64_t i1, int64_t p0, int64_t p1, int64_t n,
                             int64_t k)
{
    int64_t pstride = (k + 1) * LIN_NR;
    for (int64_t p = p0; p < p1; p++) {
        const float *bp = packed + p * pstride;
        int64_t j0 = p * LIN_NR, ncols = ek_min(LIN_NR, n - j0);
        for (int64_t i = i0; i < i1; i += LIN_MR) {
            int64_t mr = ek_min(LIN_MR, i1 - i);
            const float *xi = x + i * rs;
            float *o = out + i * n + j0;
            switch (mr) {
#if LIN_MR > 8
#error "extend the remainder switch"
#endif
#if LIN_MR > 7
            case 7: lin_tile(7, xi, rs, cs, k, bp, o, n, ncols); break;
#endif
#if LIN_MR > 6
            case 6: lin_tile(6, xi, rs, cs, k, bp, o, n, ncols); break;
#endif
            case 5: lin_tile(5, xi, rs, cs, k, bp, o, n, ncols); break;
            case 4: lin_tile(4, xi, rs, cs, k, bp, o, n, ncols); break;
            case 3: lin_tile(3, xi, rs, cs, k, bp, o, n, ncols); break;
            case 2: lin_tile(2, xi, rs, cs, k, bp, o, n, ncols); break;
            case 1: lin_tile(1, xi, rs, cs, k, bp, o, n, ncols); break;
            default: lin_tile(LIN_MR, xi, rs, cs, k, bp, o, n, ncols); break;
            }
        }
    }
}

static void lin_block(const float *x, const float *packed, float *out, int64_t i0, int64_t i1,
                      int64_t p0, int64_t p1, int64_t n, int64_t k)
{
    lin_block_any(x, k, 1, packed, out, i0, i1, p0, p1, n, k);
}

static void lin_block_t(const float *xt, int64_t ld, const float *packed, float *out, int64_t i0,
                        int64_t i1, int64_t p0, int64_t p1, int64_t n, int64_t k)
{
    lin_block_any(xt, 1, ld, packed, out, i0, i1, p0, p1, n, k);
}

/* Floats of W [n, k] and its bias packed into panels (lin_pack_panel). */
static size_t lin_packed_floats(int64_t n, int64_t k)
{
    return (size_t)(((n + LIN_NR - 1) / LIN_NR) * (k + 1) * LIN_NR);
}

static void lin_pack_panel(const float *w, const float *bias, float *dst, int64_t p, int64_t n,
                           int64_t k)
{
    int64_t j0 = p * LIN_NR, nc = ek_min(LIN_NR, n - j0);
    for (int64_t c = 0; c < nc; c++) {
        const float *wr = w + (j0 + c) * k;
        for (int64_t q = 0; q < k; q++)
            dst[q * LIN_NR + c] = wr[q];
    }
    for (int64_t c = nc; c < LIN_NR; c++)
        for (int64_t q = 0; q < k; q++)
            dst[q * LIN_NR + c] = 0.0f;
    for (int64_t c = 0; c < LIN_NR; c++)
        dst[k * LIN_NR + c] = (c < nc && bias) ? bias[j0 + c] : 0.0f;
}

/* Without scratch memory: one dot product per output, same order as above
 * minus the fusing (W as [n, k], or transposed as [k, n]; x as [m, k], or
 * transposed as [k, x_ld] when x_ld > 0). Only used when malloc fails. */
static void lin_unpacked(const float *x, int64_t x_ld, const float *w, const float *bias,
                         float *out, int64_t m, int64_t n, int64_t k, int w_transposed, int threads)
{
    int64_t sj = w_transposed ? 1 : k, sp = w_transposed ? n : 1; /* W(j, p) = w[j sj + p sp] */
    int64_t xi = x_ld > 0 ? 1 : k, xp = x_ld > 0 ? x_ld : 1;      /* x(i, p) = x[i xi + p xp] */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = bias ? bias[j] : 0.0f;
            for (int64_t p = 0; p < k; p++)
                s += x[i * xi + p * xp] * w[j * sj + p * sp];
            out[i * n + j] = s;
        }
}

/* lin_pack_panel for W given transposed, wt [k, n], rows q of wt in [q0, q1)
 * into every panel: wt is read once, in order (a panel at a time would
 * stride over all k rows once per panel). Row k of each panel, the bias,
 * is the caller's to zero. */
static void lin_pack_rows_t(const float *wt, float *packed, int64_t q0, int64_t q1, int64_t n,
                            int64_t k)
{
    int64_t panels = (n + LIN_NR - 1) / LIN_NR, pstride = (k + 1) * LIN_NR;
    for (int64_t q = q0; q < q1; q++) {
        const float *src = wt + q * n;
        for (int64_t p = 0; p < panels; p++) {
            float *row = packed + p * pstride + q * LIN_NR;
            int64_t j0 = p * LIN_NR, nc = ek_min(LIN_NR, n - j0);
            if (nc == LIN_NR) {
                for (int c = 0; c < LIN_NR; c++)
                    row[c] = src[j0 + c];
            } else {
                for (int64_t c = 0; c < LIN_NR; c++)
                    row[c] = c < nc ? src[j0 + c] : 0.0f;
            }
        }
    }
}

/* Threads for out [m, n] over k, and its (MC rows) x (NC panels) tiles. */
static int lin_threads(int64_t m, int64_t n, int64_t k, int threads, int64_t *tiles,
                       int64_t *ntiles)
{
    int64_t panels = (n + LIN_NR - 1) / LIN_NR;
    *ntiles = (panels + LIN_NC_PANELS - 1) / LIN_NC_PANELS;
    *tiles = ((m + LIN_MC - 1) / LIN_MC) * *ntiles;
    double flops = 2.0 * (double)m * (double)n * (double)k;
    return flops < 2e5 || *tiles < 2 ? 1 : threads;
}

/* Tile t of out from the packed panels (x as lin_run takes it). */
EK_INLINE void lin_tile_job(int64_t t, int64_t ntiles, const float *x, int64_t x_ld,
                            const float *packed, float *out, int64_t m, int64_t n, int64_t k)
{
    int64_t panels = (n + LIN_NR - 1) / LIN_NR;
    int64_t mt = t / ntiles, ntl = t % ntiles;
    int64_t i0 = mt * LIN_MC, i1 = ek_min(m, i0 + LIN_MC);
    int64_t p0 = ntl * LIN_NC_PANELS, p1 = ek_min(panels, p0 + LIN_NC_PANELS);
    if (x_ld > 0)
        lin_block_t(x, x_ld, packed, out, i0, i1, p0, p1, n, k);
    else
        lin_block(x, packed, out, i0, i1, p0, p1, n, k);
}

/* out[M,N] = x[M,K] w[N,K]^T + bias (w_transposed: w is wt [K,N], no bias;
 * x_ld > 0: x is given transposed, [K, x_ld], its column i being row i of
 * x): the packed panels are the same either way, and lin_tile reads the
 * same x values in the same order, so all give the same bits. */
static void lin_run(const float *x, int64_t x_ld, const float *w, const float *bias, float *out,
                    int64_t m, int64_t n, int64_t k, int w_transposed, int threads)
{
    if (m <= 0 || n <= 0) return;
    int64_t panels = (n + LIN_NR - 1) / LIN_NR;
    int64_t pstride = (k + 1) * LIN_NR;
    size_t bytes = (lin_packed_floats(n, k) * sizeof(float) + 63) & ~(size_t)63;
    float *packed = aligned_alloc(64, bytes);
    if (!packed) {
        lin_unpacked(x, x_ld, w, bias, out, m, n, k, w_transposed, threads);
        return;
    }
    int64_t tiles, ntiles;
    int nt = lin_threads(m, n, k, threads, &tiles, &ntiles);
    if (w_transposed) /* no bias: the panels' bias rows are zero */
        for (int64_t p = 0; p < panels; p++)
            memset(packed + p * pstride + k * LIN_NR, 0, LIN_NR * sizeof(float));
#pragma omp parallel num_threads(nt)
    {
        if (w_transposed) {
            int64_t qchunks = (k + 63) / 64;
#pragma omp for schedule(static)
            for (int64_t qc = 0; qc < qchunks; qc++)
                lin_pack_rows_t(w, packed, qc * 64, ek_min(k, qc * 64 + 64), n, k);
        } else {
#pragma omp for schedule(static)
            for (int64_t p = 0; p < panels; p++)
                lin_pack_panel(w, bias, packed + p * pstride, p, n, k);
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++)
            lin_tile_job(t, ntiles, x, x_ld, packed, out, m, n, k);
    }
    free(packed);
}

/* lin_run with W already packed (k_pack): the tiles alone. */
static void lin_run_packed(const float *x, const float *packed, float *out, int64_t m, int64_t n,
                           int64_t k, int threads)
{
    if (m <= 0 || n <= 0) return;
    int64_t tiles, ntiles;
    int nt = lin_threads(m, n, k, threads, &tiles, &ntiles);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < tiles; t++)
        lin_tile_job(t, ntiles, x, 0, packed, out, m, n, k);
}

static void k_linear(const float *x, const float *w, const float *bias, float *out, int64_t m,
                     int64_t n, int64_t k, int threads)
{
    lin_run(x, 0, w, bias, out, m, n, k, 0, threads);
}

static void k_linear_tn(const float *x, const float *wt, float *out, int64_t m, int64_t n,
                        int64_t k, int threads)
{
    lin_run(x, 0, wt, NULL, out, m, n, k, 1, threads);
}

static void k_linear_at(const float *xt, const float *wt, float *out, int64_t m, int64_t n,
                        int64_t k, int threads)
{
    lin_run(xt, m, wt, NULL, out, m, n, k, 1, threads);
}

/* ------------------------------------------------------------------ attention */

/*
 * Streaming (online) softmax, flash-attention style. Work item = (batch,
 * head, block of VLEN queries); the queries of a block sit in the lanes of a
 * vector, so a score for one key and all queries is dh FMAs with no
 * horizontal sums. Keys go by blocks of ATT_KB: scores of the block, new
 * running max per query, rescale of the partial output (kept in out
 * itself), P = exp(S - max), out += P V. Scratch: the scaled, transposed
 * query block (dh x VLEN) and the block's scores (ATT_KB x VLEN), on the
 * stack; heads wider than ATT_DHMAX take a scalar path.
 */
#define ATT_KB 64
#define ATT_DHMAX 256

/* att_pv's register tile: PV_NQ queries x PV_NV vectors of columns (12
 * accumulators, and the key's PV_NV values of V loaded once for all the
 * tile's queries). */
#if VLEN == 16
#define PV_NQ 6
#define PV_NV 2
#else
#define PV_NQ 3
#define PV_NV 4
#endif

/* Query rows o[qq..qq + nq) (nq <= PV_NQ), columns [c, c + nv VLEN) (nv <=
 * PV_NV): each element one FMA chain from its current value over the keys
 * in order. */
EK_INLINE void pv_tile(const float *P, const float *v, int64_t j0, int64_t kb, int64_t vstride,
                       float *o, int64_t ostride, int64_t qq, const int nq, int64_t c, const int nv)
{
    vf acc[PV_NQ][PV_NV];
#pragma GCC unroll 8
    for (int r = 0; r < PV_NQ; r++)
#pragma GCC unroll 8
        for (int t = 0; t < PV_NV; t++)
            if (r < nq && t < nv) acc[r][t] = vload(o + (qq + r) * ostride + c + t * VLEN);
    for (int64_t j = 0; j < kb; j++) {
        const float *vr = v + (j0 + j) * vstride + c;
        vf vv[PV_NV];
#pragma GCC unroll 8
        for (int t = 0; t < PV_NV; t++)
            if (t < nv) vv[t] = vload(vr + t * VLEN);
#pragma GCC unroll 8
        for (int r = 0; r < PV_NQ; r++) {
            if (r < nq) {
                vf p = vset1(P[j * VLEN + qq + r]);
#pragma GCC unroll 8
                for (int t = 0; t < PV_NV; t++)
                    if (t < nv) acc[r][t] = vfma(p, vv[t], acc[r][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < PV_NQ; r++)
#pragma GCC unroll 8
        for (int t = 0; t < PV_NV; t++)
            if (r < nq && t < nv) vstore(o + (qq + r) * ostride + c + t * VLEN, acc[r][t]);
}

/* out rows of the query block += P V for keys [j0, j0 + kb): for every
 * (query, column) one FMA chain over the keys in order, whichever tile it
 * falls in (pv_tile: PV_NQ queries share each key's loads of V). */
static void att_pv(const float *P, const float *v, int64_t j0, int64_t kb, int64_t vstride,
                   float *o, int64_t ostride, int64_t nqb, int64_t dh)
{
    int64_t c = 0;
    for (; c + PV_NV * VLEN <= dh; c += PV_NV * VLEN) {
        int64_t qq = 0;
        for (; qq + PV_NQ <= nqb; qq += PV_NQ)
            pv_tile(P, v, j0, kb, vstride, o, ostride, qq, PV_NQ, c, PV_NV);
        for (; qq < nqb; qq++)
            pv_tile(P, v, j0, kb, vstride, o, ostride, qq, 1, c, PV_NV);
    }
    for (; c + VLEN <= dh; c += VLEN)
        for (int64_t qq = 0; qq < nqb; qq++)
            pv_tile(P, v, j0, kb, vstride, o, ostride, qq, 1, c, 1);
    for (; c < dh; c++)
        for (int64_t qq = 0; qq < nqb; qq++) {
            float *oq = o + qq * ostride;
            float sum = oq[c];
            for (int64_t j = 0; j < kb; j++)
                sum = fmaf(P[j * VLEN + qq], v[(j0 + j) * vstride + c], sum);
            oq[c] = sum;
        }
}

/* qt[c * VLEN + l] = scale * q row l, column c, for the cnt (<= VLEN) rows
 * of a query block (row stride d, dh columns); lanes past cnt are zero. */
static void att_load_queries(const float *q, int64_t cnt, int64_t d, int64_t dh, float scale,
                             float *qt)
{
    for (int64_t c = 0; c < dh; c++)
        for (int l = 0; l < VLEN; l++)
            qt[c * VLEN + l] = l < cnt ? q[l * d + c] * scale : 0.0f;
}

/* S[j * VLEN + lane] = k row j . qt[:, lane] for the kb keys from k, eight (then four, one)
 * keys at a time for independent FMA chains; qt is a transposed query block
 * (dh x VLEN). */
static void att_scores(const float *qt, const float *k, int64_t kb, int64_t d, int64_t dh, float *S)
{
    int64_t j = 0;
    /* eight chains hide the FMA latency that four leave exposed */
    for (; j + 8 <= kb; j += 8) {
        const float *k0 = k + j * d;
        vf s0 = vset1(0.0f), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        for (int64_t c = 0; c < dh; c++) {
            vf qc = vload(qt + c * VLEN);
            s0 = vfma(vset1(k0[c]), qc, s0);
            s1 = vfma(vset1(k0[d + c]), qc, s1);
            s2 = vfma(vset1(k0[2 * d + c]), qc, s2);
            s3 = vfma(vset1(k0[3 * d + c]), qc, s3);
            s4 = vfma(vset1(k0[4 * d + c]), qc, s4);
            s5 = vfma(vset1(k0[5 * d + c]), qc, s5);
            s6 = vfma(vset1(k0[6 * d + c]), qc, s6);
            s7 = vfma(vset1(k0[7 * d + c]), qc, s7);
        }
        vstore(S + j * VLEN, s0);
        vstore(S + (j + 1) * VLEN, s1);
        vstore(S + (j + 2) * VLEN, s2);
        vstore(S + (j + 3) * VLEN, s3);
        vstore(S + (j + 4) * VLEN, s4);
        vstore(S + (j + 5) * VLEN, s5);
        vstore(S + (j + 6) * VLEN, s6);
        vstore(S + (j + 7) * VLEN, s7);
    }
    for (; j + 4 <= kb; j += 4) {
        const float *k0 = k + j * d;
        vf s0 = vset1(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t c = 0; c < dh; c++) {
            vf qc = vload(qt + c * VLEN);
            s0 = vfma(vset1(k0[c]), qc, s0);
            s1 = vfma(vset1(k0[d + c]), qc, s1);
            s2 = vfma(vset1(k0[2 * d + c]), qc, s2);
            s3 = vfma(vset1(k0[3 * d + c]), qc, s3);
        }
        vstore(S + j * VLEN, s0);
        vstore(S + (j + 1) * VLEN, s1);
        vstore(S + (j + 2) * VLEN, s2);
        vstore(S + (j + 3) * VLEN, s3);
    }
    for (; j < kb; j++) {
        const float *k0 = k + j * d;
        vf s0 = vset1(0.0f);
        for (int64_t c = 0; c < dh; c++)
            s0 = vfma(vset1(k0[c]), vload(qt + c * VLEN), s0);
        vstore(S + j * VLEN, s0);
    }
}

/* att_scores for two query blocks (qt0, qt1) in one pass over the keys:
 * six keys x two blocks of chains, so that each key element broadcast
 * serves two vectors of queries (half the loads per FMA of att_scores).
 * Every score is att_scores' FMA chain over c, bit for bit. */
static void att_scores2(const float *qt0, const float *qt1, const float *k, int64_t kb, int64_t d,
                        int64_t dh, float *S0, float *S1)
{
    int64_t j = 0;
    for (; j + 6 <= kb; j += 6) {
        const float *k0 = k + j * d;
        vf a0 = vset1(0.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
        vf b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0;
        for (int64_t c = 0; c < dh; c++) {
            vf q0 = vload(qt0 + c * VLEN), q1 = vload(qt1 + c * VLEN), kk;
            kk = vset1(k0[c]);
            a0 = vfma(kk, q0, a0);
            b0 = vfma(kk, q1, b0);
            kk = vset1(k0[d + c]);
            a1 = vfma(kk, q0, a1);
            b1 = vfma(kk, q1, b1);
            kk = vset1(k0[2 * d + c]);
            a2 = vfma(kk, q0, a2);
            b2 = vfma(kk, q1, b2);
            kk = vset1(k0[3 * d + c]);
            a3 = vfma(kk, q0, a3);
            b3 = vfma(kk, q1, b3);
            kk = vset1(k0[4 * d + c]);
            a4 = vfma(kk, q0, a4);
            b4 = vfma(kk, q1, b4);
            kk = vset1(k0[5 * d + c]);
            a5 = vfma(kk, q0, a5);
            b5 = vfma(kk, q1, b5);
        }
        vstore(S0 + j * VLEN, a0);
        vstore(S0 + (j + 1) * VLEN, a1);
        vstore(S0 + (j + 2) * VLEN, a2);
        vstore(S0 + (j + 3) * VLEN, a3);
        vstore(S0 + (j + 4) * VLEN, a4);
        vstore(S0 + (j + 5) * VLEN, a5);
        vstore(S1 + j * VLEN, b0);
        vstore(S1 + (j + 1) * VLEN, b1);
        vstore(S1 + (j + 2) * VLEN, b2);
        vstore(S1 + (j + 3) * VLEN, b3);
        vstore(S1 + (j + 4) * VLEN, b4);
        vstore(S1 + (j + 5) * VLEN, b5);
    }
    for (; j < kb; j++) {
        const float *k0 = k + j * d;
        vf a0 = vset1(0.0f), b0 = a0;
        for (int64_t c = 0; c < dh; c++) {
            vf kk = vset1(k0[c]);
            a0 = vfma(kk, vload(qt0 + c * VLEN), a0);
            b0 = vfma(kk, vload(qt1 + c * VLEN), b0);
        }
        vstore(S0 + j * VLEN, a0);
        vstore(S1 + j * VLEN, b0);
    }
}

/* The running state of a query block's online softmax: per lane the max
 * and the sum of the weights so far, and whether a key block was seen (the
 * partial output, kept in the output rows, is rescaled from the second on). */
typedef struct att_state {
    float m[VLEN], l[VLEN]; /* not vf: states live in malloc'd arrays of any alignment */
    int started;
} att_state;

/* Starts a query block: zero output rows, empty state. */
static void att_begin(float *o, int64_t i0, int64_t nqb, int64_t d, int64_t dh, att_state *st)
{
    for (int64_t qq = 0; qq < nqb; qq++)
        memset(o + (i0 + qq) * d, 0, (size_t)dh * sizeof(float));
    vstore(st->m, vset1(-INFINITY));
    vstore(st->l, vset1(0.0f));
    st->started = 0;
}

/* One block of keys [j0, j0 + kb) of a query block (rows i0.. of o, nqb of
 * them) whose scores are in S (k and v start at key `base`): the causal
 * mask, the new running max m and sum l, the rescale of the partial output
 * and out += P V. */
static void att_update(float *S, const float *v, float *o, int64_t i0, int64_t nqb, int64_t j0,
                       int64_t kb, int64_t base, int64_t d, int64_t dh, int causal, vf *mp, vf *lp,
                       int *started)
{
    vf m = *mp;
    int64_t j;
    /* causal mask: query i0 + lane sees key j0 + j only if j0 + j >= i0 + lane */
    if (causal && j0 < i0 + VLEN) {
        vi lane = {0};
        for (int t = 0; t < VLEN; t++)
            lane[t] = t;
        for (j = 0; j < kb && j0 + j < i0 + VLEN; j++) {
            vi hidden = (vi){0} + (int32_t)(j0 + j - i0) < lane;
            vstore(S + j * VLEN, vselect(hidden, vset1(-INFINITY), vload(S + j * VLEN)));
        }
    }
    vf bmax = vload(S);
    for (j = 1; j < kb; j++)
        bmax = vmax(bmax, vload(S + j * VLEN));
    vf mnew = vmax(m, bmax);
    vf msafe = vselect(mnew == vset1(-INFINITY), vset1(0.0f), mnew);
    vf alpha = vexp(m - msafe);
    *mp = mnew;
    vf lsum = vset1(0.0f);
    for (j = 0; j < kb; j++) {
        vf p = vexp(vload(S + j * VLEN) - msafe);
        lsum += p;
        vstore(S + j * VLEN, p);
    }
    *lp = vfma(*lp, alpha, lsum);
    if (*started) {
        for (int64_t qq = 0; qq < nqb; qq++) {
            float a = alpha[qq];
            if (a == 1.0f) continue;
            float *oq = o + (i0 + qq) * d;
            for (int64_t c = 0; c < dh; c++)
                oq[c] *= a;
        }
    }
    *started = 1;
    att_pv(S, v, j0 - base, kb, d, o + i0 * d, d, nqb, dh);
}

/* Keys [j_from, j_to) of a query block (qt: its transposed, scaled queries),
 * in blocks of ATT_KB from j_from; k and v start at key `base`. Calls with
 * consecutive ranges whose starts are multiples of ATT_KB after the first
 * compute exactly what one call over the union does. */
static void att_keys(const float *qt, const float *k, const float *v, float *o, int64_t i0,
                     int64_t nqb, int64_t base, int64_t j_from, int64_t j_to, int64_t d, int64_t dh,
                     int causal, att_state *st)
{
    float S[ATT_KB * VLEN];
    vf m = vload(st->m), l = vload(st->l);
    for (int64_t j0 = j_from; j0 < j_to; j0 += ATT_KB) {
        int64_t kb = ek_min(ATT_KB, j_to - j0);
        att_scores(qt, k + (j0 - base) * d, kb, d, dh, S);
        att_update(S, v, o, i0, nqb, j0, kb, base, d, dh, causal, &m, &l, &st->started);
    }
    vstore(st->m, m);
    vstore(st->l, l);
}

/* att_keys for two query blocks at once, rows i0.. and i0 + VLEN..: their
 * scores in one pass over the keys (att_scores2), then each block's update.
 * A score is the same FMA chain as att_keys computes, so without the causal
 * mask the two blocks get exactly what att_keys gives each; with it, the
 * second block also goes over keys [i0, i0 + VLEN), all hidden from it, so
 * its key blocks are cut at other places than att_keys would cut them. */
static void att_keys2(const float *qt0, const float *qt1, const float *k, const float *v, float *o,
                      int64_t i0, int64_t nqb0, int64_t nqb1, int64_t base, int64_t j_from,
                      int64_t j_to, int64_t d, int64_t dh, int causal, att_state *st0,
                      att_state *st1)
{
    float S0[ATT_KB * VLEN], S1[ATT_KB * VLEN];
    vf m0 = vload(st0->m), l0 = vload(st0->l), m1 = vload(st1->m), l1 = vload(st1->l);
    for (int64_t j0 = j_from; j0 < j_to; j0 += ATT_KB) {
        int64_t kb = ek_min(ATT_KB, j_to - j0);
        att_scores2(qt0, qt1, k + (j0 - base) * d, kb, d, dh, S0, S1);
        att_update(S0, v, o, i0, nqb0, j0, kb, base, d, dh, causal, &m0, &l0, &st0->started);
        att_update(S1, v, o, i0 + VLEN, nqb1, j0, kb, base, d, dh, causal, &m1, &l1, &st1->started);
    }
    vstore(st0->m, m0);
    vstore(st0->l, l0);
    vstore(st1->m, m1);
    vstore(st1->l, l1);
}

/* Ends a query block: the output rows divided by the weights' sum. */
static void att_end(float *o, int64_t i0, int64_t nqb, int64_t d, int64_t dh, const att_state *st)
{
    for (int64_t qq = 0; qq < nqb; qq++) {
        float lq = st->l[qq];
        if (!(lq > 0.0f)) continue; /* no visible key: stays zero */
        float inv = 1.0f / lq;
        float *oq = o + (i0 + qq) * d;
        for (int64_t c = 0; c < dh; c++)
            oq[c] *= inv;
    }
}

static void att_block(const float *q, const float *k, const float *v, float *o, int64_t i0,
                      int64_t nqb, int64_t valid, int64_t d, int64_t dh, int causal, float scale)
{
    float qt[ATT_DHMAX * VLEN];
    att_state st;
    att_load_queries(q + i0 * d, nqb, d, dh, scale, qt);
    att_begin(o, i0, nqb, d, dh, &st);
    int64_t jstart = causal ? i0 : 0;
    if (jstart >= valid) return;
    att_keys(qt, k, v, o, i0, nqb, 0, jstart, valid, d, dh, causal, &st);
    att_end(o, i0, nqb, d, dh, &st);
}

/* att_block for the query blocks at i0 (VLEN rows) and i0 + VLEN (nqb1 rows). */
static void att_block2(const float *q, const float *k, const float *v, float *o, int64_t i0,
                       int64_t nqb1, int64_t valid, int64_t d, int64_t dh, int causal, float scale)
{
    float qt0[ATT_DHMAX * VLEN], qt1[ATT_DHMAX * VLEN];
    att_state st0, st1;
    att_load_queries(q + i0 * d, VLEN, d, dh, scale, qt0);
    att_load_queries(q + (i0 + VLEN) * d, nqb1, d, dh, scale, qt1);
    att_begin(o, i0, VLEN, d, dh, &st0);
    att_begin(o, i0 + VLEN, nqb1, d, dh, &st1);
    int64_t jstart = causal ? i0 : 0;
    if (jstart >= valid) return;
    att_keys2(qt0, qt1, k, v, o, i0, VLEN, nqb1, 0, jstart, valid, d, dh, causal, &st0, &st1);
    att_end(o, i0, VLEN, d, dh, &st0);
    att_end(o, i0 + VLEN, nqb1, d, dh, &st1);
}

/* One query, scalar online softmax: for heads wider than ATT_DHMAX. */
static void att_row_scalar(const float *qi, const float *k, const float *v, float *o,
                           int64_t jstart, int64_t valid, int64_t d, int64_t dh, float scale)
{
    memset(o, 0, (size_t)dh * sizeof(float));
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = jstart; j < valid; j++) {
        float s = 0.0f;
        for (int64_t c = 0; c < dh; c++)
            s += qi[c] * k[j * d + c];
        s *= scale;
        if (s > m) {
            float a = expf(m - s);
            for (int64_t c = 0; c < dh; c++)
                o[c] *= a;
            l *= a;
            m = s;
        }
        float p = expf(s - m);
        l += p;
        for (int64_t c = 0; c < dh; c++)
            o[c] += p * v[j * d + c];
    }
    if (l > 0.0f)
        for (int64_t c = 0; c < dh; c++)
            o[c] /= l;
}

/* Queries [i0, i0 + cnt) of one user and head, cnt <= 2 VLEN: a pair of
 * query blocks (att_block2), one block, or, for heads wider than
 * ATT_DHMAX, a row at a time (att_row_scalar): the work item of
 * k_attention and the fused dispatch. */
static void att_item(const float *q, const float *k, const float *v, float *o, int64_t i0,
                     int64_t cnt, int64_t valid, int64_t d, int64_t dh, int causal, float scale)
{
    if (dh > ATT_DHMAX) {
        for (int64_t i = i0; i < i0 + cnt; i++)
            att_row_scalar(q + i * d, k, v, o + i * d, causal ? i : 0, valid, d, dh, scale);
    } else if (cnt > VLEN) {
        att_block2(q, k, v, o, i0, cnt - VLEN, valid, d, dh, causal, scale);
    } else {
        att_block(q, k, v, o, i0, cnt, valid, d, dh, causal, scale);
    }
}

static void k_attention(const float *q, const float *k, const float *v, const int32_t *key_len,
                        float *out, int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                        int causal, int threads)
{
    int64_t dh = d / heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    /* work item: a pair of query blocks (att_block2), or one at the end */
    int64_t npb = (nq + 2 * VLEN - 1) / (2 * VLEN);
    int64_t items = batch * heads * npb;
    double work = (double)batch * (double)nq * (double)nk * (double)d;
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (work > 1e5)
    for (int64_t it = 0; it < items; it++) {
        int64_t b = it / (heads * npb), rest = it % (heads * npb);
        int64_t h = rest / npb, pb = rest % npb;
        int64_t valid = key_len ? ek_max(0, ek_min((int64_t)key_len[b], nk)) : nk;
        const float *qb_ = q + b * nq * d + h * dh;
        const float *kb_ = k + b * nk * d + h * dh;
        const float *vb_ = v + b * nk * d + h * dh;
        float *ob = out + b * nq * d + h * dh;
        int64_t i0 = pb * 2 * VLEN;
        att_item(qb_, kb_, vb_, ob, i0, ek_min(2 * VLEN, nq - i0), valid, d, dh, causal, scale);
    }
}

/* ---------------------------------------------- attention_probs, _mix */

/*
 * The two-step attention of standard implementations. PROBS: work item =
 * (batch, head, block of VLEN queries); logits as in att_block (att_scores,
 * queries in the lanes), each tile of ATT_KB keys transposed into the
 * block's rows of P; then every row gets exp(s - max) / sum over its visible
 * keys and zeros elsewhere. MIX: per output row and head, sum_j p_j v_j.
 */

/* x[0..n) through vexp, the tail in a zero-padded vector. */
EK_INLINE vf vexp_tail(const float *x, int64_t n, float shift)
{
    float tmp[VLEN];
    for (int l = 0; l < VLEN; l++)
        tmp[l] = l < n ? x[l] - shift : -INFINITY;
    return vexp(vload(tmp));
}

/* Softmax of row[first..valid) in place, zeros in the rest of row[0..nk). */
static void probs_softmax(float *row, int64_t first, int64_t valid, int64_t nk)
{
    if (first >= valid) {
        memset(row, 0, (size_t)nk * sizeof(float));
        return;
    }
    memset(row, 0, (size_t)first * sizeof(float));
    memset(row + valid, 0, (size_t)(nk - valid) * sizeof(float));
    float *x = row + first;
    int64_t n = valid - first, j = 0;
    vf vm = vset1(-INFINITY);
    for (; j + VLEN <= n; j += VLEN)
        vm = vmax(vm, vload(x + j));
    float m = -INFINITY;
    for (int l = 0; l < VLEN; l++)
        m = vm[l] > m ? vm[l] : m;
    for (; j < n; j++)
        m = x[j] > m ? x[j] : m;
    vf sum = vset1(0.0f);
    for (j = 0; j + VLEN <= n; j += VLEN) {
        vf e = vexp(vload(x + j) - vset1(m));
        vstore(x + j, e);
        sum += e;
    }
    if (j < n) {
        float tmp[VLEN];
        vf e = vexp_tail(x + j, n - j, m);
        vstore(tmp, e);
        memcpy(x + j, tmp, (size_t)(n - j) * sizeof(float));
        sum += e;
    }
    vf inv = vset1(1.0f / vhsum(sum));
    for (j = 0; j + VLEN <= n; j += VLEN)
        vstore(x + j, vload(x + j) * inv);
    for (; j < n; j++)
        x[j] *= inv[0];
}

static void k_attention_probs(const float *q, const float *k, const int32_t *key_len, float *p,
                              int64_t batch, int64_t nq, int64_t nk, int64_t d, int heads,
                              int causal, int threads)
{
    int64_t dh = d / heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    int64_t nqb = (nq + VLEN - 1) / VLEN;
    int64_t items = batch * heads * nqb;
    double work = (double)batch * (double)nq * (double)nk * (double)d;
#pragma omp parallel for num_threads(threads) schedule(static, 1) if (work > 1e5)
    for (int64_t it = 0; it < items; it++) {
        int64_t b = it / (heads * nqb), rest = it % (heads * nqb);
        int64_t h = rest / nqb, i0 = rest % nqb * VLEN, cnt = ek_min(VLEN, nq - i0);
        int64_t valid = key_len ? ek_max(0, ek_min((int64_t)key_len[b], nk)) : nk;
        const float *qb = q + (b * nq + i0) * d + h * dh, *kb = k + b * nk * d + h * dh;
        float *rows = p + ((b * heads + h) * nq + i0) * nk;
        int64_t jstart = causal ? i0 : 0;
        if (dh <= ATT_DHMAX) {
            float qt[ATT_DHMAX * VLEN], S[ATT_KB * VLEN];
            att_load_queries(qb, cnt, d, dh, scale, qt);
            for (int64_t j0 = jstart; j0 < valid; j0 += ATT_KB) {
                int64_t w = ek_min(ATT_KB, valid - j0);
                att_scores(qt, kb + j0 * d, w, d, dh, S);
                for (int64_t l = 0; l < cnt; l++)
                    for (int64_t j = 0; j < w; j++)
                        rows[l * nk + j0 + j] = S[j * VLEN + l];
            }
        } else {
            for (int64_t l = 0; l < cnt; l++)
                for (int64_t j = jstart; j < valid; j++) {
                    float s = 0.0f;
                    for (int64_t c = 0; c < dh; c++)
                        s += qb[l * d + c] * scale * kb[j * d + c];
                    rows[l * nk + j] = s;
                }
        }
        for (int64_t l = 0; l < cnt; l++)
            probs_softmax(rows + l * nk, causal ? i0 + l : 0, valid, nk);
    }
}

static void k_attention_mix(const float *p, const float *v, float *out, int64_t batch, int64_t nq,
                            int64_t nk, int64_t d, int heads, int threads)
{
    int64_t dh = d / heads;
    double work = (double)batch * (double)nq * (double)nk * (double)d;
#pragma omp parallel for num_threads(threads) schedule(static) if (work > 1e5)
    for (int64_t r = 0; r < batch * nq; r++) {
        int64_t b = r / nq, i = r % nq;
        for (int64_t h = 0; h < heads; h++) {
            const float *pr = p + ((b * heads + h) * nq + i) * nk;
            const float *vb = v + b * nk * d + h * dh;
            float *o = out + r * d + h * dh;
            int64_t c = 0;
            for (; c + 2 * VLEN <= dh; c += 2 * VLEN) {
                vf a0 = vset1(0.0f), a1 = a0;
                for (int64_t j = 0; j < nk; j++) {
                    vf pj = vset1(pr[j]);
                    a0 = vfma(pj, vload(vb + j * d + c), a0);
                    a1 = vfma(pj, vload(vb + j * d + c + VLEN), a1);
                }
                vstore(o + c, a0);
                vstore(o + c + VLEN, a1);
            }
            for (; c + VLEN <= dh; c += VLEN) {
                vf a0 = vset1(0.0f);
                for (int64_t j = 0; j < nk; j++)
                    a0 = vfma(vset1(pr[j]), vload(vb + j * d + c), a0);
                vstore(o + c, a0);
            }
            for (; c < dh; c++) {
                float s = 0.0f;
                for (int64_t j = 0; j < nk; j++)
                    s += pr[j] * vb[j * d + c];
                o[c] = s;
            }
        }
    }
}

/* ------------------------------------------------------------------ pkm */

/*
 * Sub-key scores are accumulated in double in the reference's order (from
 * a transposed double copy of the sub-keys made once per call), so the
 * selected slots are exactly the reference's; selections are streaming
 * insertions into a sorted list of t (strict > keeps the earlier, smaller
 * index on ties), candidates visited in index (slot) order. Scratch O(t):
 * on the stack up to PKM_TMAX, else malloc (the op fails with -1 if that
 * fails, as the reference does).
 */
#define PKM_TMAX 64
#define PKM_XB 16

/* Insert (s, id) into the descending list (vals, ids) of *cnt <= t entries. */
static void pkm_insert(double *vals, int64_t *ids, int64_t *cnt, int64_t t, double s, int64_t id)
{
    int64_t c = *cnt;
    if (c == t && !(s > vals[t - 1])) return;
    int64_t pos = c < t ? c : t - 1;
    while (pos > 0 && s > vals[pos - 1]) {
        vals[pos] = vals[pos - 1];
        ids[pos] = ids[pos - 1];
        pos--;
    }
    vals[pos] = s;
    ids[pos] = id;
    if (c < t) *cnt = c + 1;
}

static void pkm_sort_ids(int64_t *ids, int64_t t)
{
    for (int64_t i = 1; i < t; i++) {
        int64_t x = ids[i], j = i;
        while (j > 0 && ids[j - 1] > x) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = x;
    }
}

/* The t best slots of one query (spec step 2), best first (ties: the
 * smaller slot), and their pair scores: slot = iv + 2 t, vp = dv + 2 t
 * (scratch dv [5 t], iv [3 t]). Returns how many there are. */
static int64_t pkm_select(const float *qj, const float *subkeys, const double *skT, int64_t c,
                          int64_t m, int64_t t, double *dv, int64_t *iv)
{
    int64_t half = c / 2;
    double *va = dv, *vb = dv + t, *vp = dv + 2 * t, *sa = dv + 3 * t, *sb = dv + 4 * t;
    int64_t *A = iv, *B = iv + t, *slot = iv + 2 * t;
    int64_t na = 0, nb = 0, np = 0;
    /* PKM_XB sub-keys at a time from the transposed double copy (contiguous,
     * vectorisable, independent chains), else four at a time from subkeys;
     * each score summed in the reference's order either way */
    int64_t x = 0;
    if (skT) {
        for (; x + PKM_XB <= m; x += PKM_XB) {
            double a[PKM_XB], b[PKM_XB];
            for (int r = 0; r < PKM_XB; r++)
                a[r] = b[r] = 0.0;
            for (int64_t p = 0; p < half; p++) {
                double qa = qj[p], qb = qj[half + p];
                const double *ka = skT + p * m + x, *kb = skT + (half + p) * m + x;
                for (int r = 0; r < PKM_XB; r++) {
                    a[r] += qa * ka[r];
                    b[r] += qb * kb[r];
                }
            }
            for (int r = 0; r < PKM_XB; r++) {
                pkm_insert(va, A, &na, t, a[r], x + r);
                pkm_insert(vb, B, &nb, t, b[r], x + r);
            }
        }
    }
    for (; x + 4 <= m; x += 4) {
        double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
        const float *k0 = subkeys + x * half, *k1 = subkeys + (m + x) * half;
        for (int64_t p = 0; p < half; p++) {
            double qa = qj[p], qb = qj[half + p];
            for (int r = 0; r < 4; r++) {
                a[r] += qa * (double)k0[r * half + p];
                b[r] += qb * (double)k1[r * half + p];
            }
        }
        for (int r = 0; r < 4; r++) {
            pkm_insert(va, A, &na, t, a[r], x + r);
            pkm_insert(vb, B, &nb, t, b[r], x + r);
        }
    }
    for (; x < m; x++) {
        double s0 = 0, s1 = 0;
        for (int64_t p = 0; p < half; p++) {
            s0 += (double)qj[p] * (double)subkeys[x * half + p];
            s1 += (double)qj[half + p] * (double)subkeys[(m + x) * half + p];
        }
        pkm_insert(va, A, &na, t, s0, x);
        pkm_insert(vb, B, &nb, t, s1, x);
    }
    /* scores of the kept sub-keys, listed by index so pairs come in slot order */
    pkm_sort_ids(A, na);
    pkm_sort_ids(B, nb);
    for (int64_t r = 0; r < na; r++) {
        double s0 = 0;
        for (int64_t p = 0; p < half; p++)
            s0 += (double)qj[p] * (double)subkeys[A[r] * half + p];
        sa[r] = s0;
    }
    for (int64_t r = 0; r < nb; r++) {
        double s1 = 0;
        for (int64_t p = 0; p < half; p++)
            s1 += (double)qj[half + p] * (double)subkeys[(m + B[r]) * half + p];
        sb[r] = s1;
    }
    for (int64_t xi = 0; xi < na; xi++)
        for (int64_t yi = 0; yi < nb; yi++)
            pkm_insert(vp, slot, &np, t, sa[xi] + sb[yi], A[xi] * m + B[yi]);
    return np;
}

static void pkm_one(const float *qj, const float *subkeys, const double *skT, const float *values,
                    float *o, int64_t c, int64_t m, int64_t t, int64_t d, double *dv, int64_t *iv)
{
    int64_t np = pkm_select(qj, subkeys, skT, c, m, t, dv, iv);
    const double *vp = dv + 2 * t;
    const int64_t *slot = iv + 2 * t;
    /* the kept rows of `values` (a table of m^2 rows, far larger than the
     * caches) are fetched together while the weights are computed, instead
     * of one cache miss after another in the sum below */
    for (int64_t r = 0; r < np; r++)
        for (int64_t j = 0; j < d; j += 16)
            __builtin_prefetch(values + slot[r] * d + j);
    for (int64_t j = 0; j < d; j++)
        o[j] = 0.0f;
    if (np == 0) return;
    double max = vp[0], sum = 0;
    for (int64_t r = 0; r < np; r++)
        sum += exp(vp[r] - max);
    for (int64_t r = 0; r < np; r++) {
        float wr = (float)(exp(vp[r] - max) / sum);
        const float *val = values + slot[r] * d;
        for (int64_t j = 0; j < d; j++)
            o[j] += wr * val[j];
    }
}

/* The sub-keys [2, m, half] as double, transposed to [2][half][m], for
 * pkm_select (optional: NULL, when out of memory, is slower). */
static double *pkm_subkeys_t(const float *subkeys, int64_t half, int64_t m)
{
    double *skT = malloc((size_t)(2 * half * m > 0 ? 2 * half * m : 1) * sizeof(double));
    if (skT)
        for (int64_t h = 0; h < 2; h++)
            for (int64_t x = 0; x < m; x++)
                for (int64_t p = 0; p < half; p++)
                    skT[(h * half + p) * m + x] = (double)subkeys[(h * m + x) * half + p];
    return skT;
}

static int k_pkm(const float *query, const float *subkeys, const float *values, float *out,
                 int64_t batch, int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d,
                 int threads)
{
    int failed = 0;
    if (t > m) t = m;
    double *skT = pkm_subkeys_t(subkeys, c / 2, m);
#pragma omp parallel for num_threads(threads) schedule(static) if (batch * experts > 4)            \
    reduction(|                                                                                    \
              : failed)
    for (int64_t be = 0; be < batch * experts; be++) {
        float *o = out + be * d;
        if (t <= 0) {
            for (int64_t j = 0; j < d; j++)
                o[j] = 0.0f;
            continue;
        }
        double dstack[5 * PKM_TMAX];
        int64_t istack[3 * PKM_TMAX];
        double *dv = dstack;
        int64_t *iv = istack;
        if (t > PKM_TMAX) {
            dv = malloc((size_t)(5 * t) * sizeof(double));
            iv = malloc((size_t)(3 * t) * sizeof(int64_t));
            if (!dv || !iv) {
                free(dv);
                free(iv);
                failed = 1;
                continue;
            }
        }
        pkm_one(query + be * c, subkeys, skT, values, o, c, m, t, d, dv, iv);
        if (dv != dstack) {
            free(dv);
            free(iv);
        }
    }
    free(skT);
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ topk */

/*
 * Per row a bounded heap of the K best so far, kept in the row's own output
 * (ids, vals): the root is the worst kept entry. Columns are scanned in
 * order, VLEN at a time against the root's value, so almost all of them
 * cost one vector compare. Exclusions: a per-thread bitmap of the items
 * (set and cleared per row in O(E)); without it (malloc failed) an entering
 * candidate is checked against the exclusion list.
 */

/* a ranks before b: larger value, NaN last, ties by the smaller id. */
static inline int tk_before(float va, int32_t a, float vb, int32_t b)
{
    int na = va != va, nb = vb != vb;
    if (na != nb) return nb;
    if (!na && va != vb) return va > vb;
    return a < b;
}

static void tk_sift_down(int32_t *ids, float *vals, int64_t n, int64_t i)
{
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tk_before(vals[c], ids[c], vals[c + 1], ids[c + 1])) c++;
        if (!tk_before(vals[i], ids[i], vals[c], ids[c])) break;
        float tv = vals[i];
        int32_t ti = ids[i];
        vals[i] = vals[c];
        ids[i] = ids[c];
        vals[c] = tv;
        ids[c] = ti;
        i = c;
    }
}

static void tk_sift_up(int32_t *ids, float *vals, int64_t i)
{
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!tk_before(vals[p], ids[p], vals[i], ids[i])) break;
        float tv = vals[i];
        int32_t ti = ids[i];
        vals[i] = vals[p];
        ids[i] = ids[p];
        vals[p] = tv;
        ids[p] = ti;
        i = p;
    }
}

/* A heap of cnt entries -> the K places in rank order (heap sort: the worst
 * goes last), then id 0 and -INFINITY where fewer than K were kept. */
static void tk_finish(int32_t *ids, float *vals, int64_t cnt, int64_t k)
{
    for (int64_t n = cnt; n > 1; n--) {
        float tv = vals[0];
        int32_t ti = ids[0];
        vals[0] = vals[n - 1];
        ids[0] = ids[n - 1];
        vals[n - 1] = tv;
        ids[n - 1] = ti;
        tk_sift_down(ids, vals, n - 1, 0);
    }
    for (int64_t r = cnt; r < k; r++) {
        ids[r] = 0;
        vals[r] = -INFINITY;
    }
}

static int tk_excluded(const uint64_t *bits, const int32_t *ex, int64_t ne, int64_t j)
{
    if (bits) return (int)((bits[j >> 6] >> (j & 63)) & 1u);
    for (int64_t e = 0; e < ne; e++)
        if (ex[e] == j + 1) return 1;
    return 0;
}

static void tk_row(const float *s, const int32_t *ex, int64_t ne, int32_t *ids, float *vals,
                   int64_t items, int64_t k, uint64_t *bits)
{
    if (bits)
        for (int64_t e = 0; e < ne; e++)
            if (ex[e] >= 1 && ex[e] <= items) bits[(ex[e] - 1) >> 6] |= 1ull << ((ex[e] - 1) & 63);
    int64_t cnt = 0, j = 0;
    /* fill phase */
    for (; j < items && cnt < k; j++) {
        if (tk_excluded(bits, ex, ne, j)) continue;
        ids[cnt] = (int32_t)(j + 1);
        vals[cnt] = s[j];
        tk_sift_up(ids, vals, cnt);
        cnt++;
    }
    /* replace phase: a candidate enters only if it ranks before the root */
    while (j < items) {
        float rv = vals[0];
        if (rv == rv) {
            /* root is a number: later columns enter only with a larger value */
            for (; j + VLEN <= items && !vany_gt(vload(s + j), rv); j += VLEN) {
            }
            int64_t end = ek_min(items, j + VLEN);
            for (; j < end; j++) {
                if (!(s[j] > vals[0])) continue;
                if (tk_excluded(bits, ex, ne, j)) continue;
                ids[0] = (int32_t)(j + 1);
                vals[0] = s[j];
                tk_sift_down(ids, vals, k, 0);
                if (vals[0] != vals[0]) {
                    j++;
                    break;
                }
            }
        } else {
            /* root is NaN: any number enters */
            for (; j < items; j++) {
                if (s[j] != s[j] || tk_excluded(bits, ex, ne, j)) continue;
                ids[0] = (int32_t)(j + 1);
                vals[0] = s[j];
                tk_sift_down(ids, vals, k, 0);
                if (vals[0] == vals[0]) {
                    j++;
                    break;
                }
            }
        }
    }
    tk_finish(ids, vals, cnt, k);
    if (bits)
        for (int64_t e = 0; e < ne; e++)
            if (ex[e] >= 1 && ex[e] <= items) bits[(ex[e] - 1) >> 6] = 0;
}

static void k_topk(const float *scores, const int32_t *exclude, int64_t n_exclude, int32_t *ids,
                   float *vals, int64_t batch, int64_t items, int64_t k, int threads)
{
    if (k <= 0) return;
    if (!exclude) n_exclude = 0;
    int nt = batch > 1 && (double)batch * (double)items > 1e5 ? threads : 1;
#pragma omp parallel num_threads(nt)
    {
        uint64_t *bits = NULL;
        if (n_exclude > 0) bits = calloc((size_t)((items + 63) / 64), sizeof(uint64_t));
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++)
            tk_row(scores + b * items, exclude ? exclude + b * n_exclude : NULL, n_exclude,
                   ids + b * k, vals + b * k, items, k, bits);
        free(bits);
    }
}

/* ------------------------------------------------------------ score_topk */

/*
 * Scores of the users against blocks of SK_NB items, by linear's packing
 * (bias zero) and micro-kernel, so that every score is the FMA chain over
 * k = 0..d-1 that linear computes: the result is bitwise linear then topk.
 * Each block's [LIN_MC, SK_NB] tile of scores goes at once into a running
 * top-K per user (topk's bounded heap, with the whole rule, since a heap
 * does not see its items in order after a merge or with candidates).
 * Threads take contiguous ranges of blocks, each with its own heaps, merged
 * at the end: the top K of a total order is unique, so the split changes
 * nothing. Exclusions: a sorted copy per user, searched only when a score
 * would enter. Memory: per thread one packed block, one tile of scores and
 * B*K heap entries; never [B, I]. Candidates: per user, LIN_NR listed rows
 * at a time packed into one panel. Without scratch memory: one score at a
 * time, the same FMA chain in lane 0 of a vector.
 */
#define SK_NB (LIN_NC_PANELS * LIN_NR)

static int sk_cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

typedef struct sk_rules {
    const int32_t *ex; /* the user's exclusions */
    int64_t ne;
    int sorted; /* ex ascends: binary search */
    int dedup;  /* ids may repeat (candidates): skip one already kept */
} sk_rules;

static int sk_excluded(const sk_rules *r, int32_t id)
{
    if (r->sorted) {
        int64_t lo = 0, hi = r->ne;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (r->ex[mid] < id)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo < r->ne && r->ex[lo] == id;
    }
    for (int64_t e = 0; e < r->ne; e++)
        if (r->ex[e] == id) return 1;
    return 0;
}

/* Offers (v, id) to a heap of *cnt <= k entries whose root is the worst. */
static void sk_offer(int32_t *ids, float *vals, int64_t *cnt, int64_t k, float v, int32_t id,
                     const sk_rules *r)
{
    if (*cnt == k && !tk_before(v, id, vals[0], ids[0])) return;
    if (r->ne > 0 && sk_excluded(r, id)) return;
    if (r->dedup)
        for (int64_t i = 0; i < *cnt; i++)
            if (ids[i] == id) return;
    if (*cnt < k) {
        ids[*cnt] = id;
        vals[*cnt] = v;
        tk_sift_up(ids, vals, *cnt);
        (*cnt)++;
        return;
    }
    ids[0] = id;
    vals[0] = v;
    tk_sift_down(ids, vals, k, 0);
}

/* Scores s[0..nb) of the items id0+1..id0+nb: once the heap is full and its
 * root a number, VLEN scores at a time cost one compare with the root. */
static void sk_feed(int32_t *ids, float *vals, int64_t *cnt, int64_t k, const float *s, int64_t nb,
                    int64_t id0, const sk_rules *r)
{
    int64_t j = 0;
    while (j < nb) {
        if (*cnt == k && vals[0] == vals[0]) {
            float rv = vals[0];
            for (; j + VLEN <= nb && !vany_ge(vload(s + j), rv); j += VLEN) {
            }
            int64_t end = ek_min(nb, j + VLEN);
            for (; j < end; j++)
                if (s[j] >= vals[0]) sk_offer(ids, vals, cnt, k, s[j], (int32_t)(id0 + j + 1), r);
        } else {
            sk_offer(ids, vals, cnt, k, s[j], (int32_t)(id0 + j + 1), r);
            j++;
        }
    }
}

/* One score without scratch: lane 0 of linear's chain (bias 0, then an FMA
 * per k in order). */
static float sk_dot(const float *x, const float *w, int64_t d)
{
    vf acc = vset1(0.0f);
    for (int64_t q = 0; q < d; q++)
        acc = vfma(vset1(x[q]), vset1(w[q]), acc);
    return acc[0];
}

static sk_rules sk_user_rules(const int32_t *ex, int64_t ne, int sorted, int dedup, int64_t b)
{
    sk_rules r = {ex ? ex + b * ne : NULL, ex ? ne : 0, sorted, dedup};
    return r;
}

/* Items [blk0, blk1) of SK_NB for every user, into heaps hid/hv/hcnt. The
 * items are packed a block at a time, unless items_p holds them all packed
 * (lin_pack of [n_items, d], no bias: block blk's panels are those from
 * blk * LIN_NC_PANELS, the same floats). */
static void sk_range(const float *user, const float *items, const float *items_p, const int32_t *ex,
                     int64_t ne, int sorted, int32_t *hid, float *hv, int64_t *hcnt, int64_t batch,
                     int64_t n_items, int64_t d, int64_t k, int64_t blk0, int64_t blk1)
{
    int64_t pstride = (d + 1) * LIN_NR;
    size_t pbytes = ((size_t)(LIN_NC_PANELS * pstride) * sizeof(float) + 63) & ~(size_t)63;
    size_t sbytes = ((size_t)(LIN_MC * SK_NB) * sizeof(float) + 63) & ~(size_t)63;
    float *own = items_p ? NULL : aligned_alloc(64, pbytes), *S = aligned_alloc(64, sbytes);
    for (int64_t blk = blk0; blk < blk1; blk++) {
        int64_t j0 = blk * SK_NB, nb = ek_min(SK_NB, n_items - j0);
        const float *packed = items_p ? items_p + blk * LIN_NC_PANELS * pstride : own;
        if (!packed || !S) { /* no scratch: one score at a time */
            for (int64_t b = 0; b < batch; b++) {
                sk_rules r = sk_user_rules(ex, ne, sorted, 0, b);
                for (int64_t j = 0; j < nb; j++)
                    sk_offer(hid + b * k, hv + b * k, hcnt + b, k,
                             sk_dot(user + b * d, items + (j0 + j) * d, d), (int32_t)(j0 + j + 1),
                             &r);
            }
            continue;
        }
        int64_t np = (nb + LIN_NR - 1) / LIN_NR;
        for (int64_t p = 0; !items_p && p < np; p++)
            lin_pack_panel(items + j0 * d, NULL, own + p * pstride, p, nb, d);
        for (int64_t i0 = 0; i0 < batch; i0 += LIN_MC) {
            int64_t rows = ek_min(LIN_MC, batch - i0);
            lin_block(user + i0 * d, packed, S, 0, rows, 0, np, nb, d);
            for (int64_t r = 0; r < rows; r++) {
                int64_t b = i0 + r;
                sk_rules rl = sk_user_rules(ex, ne, sorted, 0, b);
                sk_feed(hid + b * k, hv + b * k, hcnt + b, k, S + r * nb, nb, j0, &rl);
            }
        }
    }
    free(own);
    free(S);
}

/* Ranks each user's candidates (threads split the users). */
static void sk_candidates(const float *user, const float *items, const int32_t *ex, int64_t ne,
                          int sorted, const int32_t *cand, int64_t nc, int32_t *ids, float *vals,
                          int64_t batch, int64_t n_items, int64_t d, int64_t k, int threads)
{
    int nt = (double)batch * (double)nc * (double)d > 1e5 ? threads : 1;
#pragma omp parallel num_threads(nt)
    {
        size_t pbytes = ((size_t)((d + 1) * LIN_NR) * sizeof(float) + 63) & ~(size_t)63;
        float *panel = aligned_alloc(64, pbytes);
        float tmp[LIN_NR];
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            const int32_t *c = cand + b * nc;
            const float *x = user + b * d;
            int32_t *bi = ids + b * k;
            float *bv = vals + b * k;
            int64_t cnt = 0;
            sk_rules r = sk_user_rules(ex, ne, sorted, 1, b);
            for (int64_t c0 = 0; c0 < nc; c0 += LIN_NR) {
                int64_t m = ek_min(LIN_NR, nc - c0);
                if (panel) {
                    for (int64_t cc = 0; cc < LIN_NR; cc++) {
                        int32_t id = cc < m ? c[c0 + cc] : 0;
                        int ok = id >= 1 && id <= n_items;
                        const float *w = items + (ok ? (int64_t)(id - 1) * d : 0);
                        for (int64_t q = 0; q < d; q++)
                            panel[q * LIN_NR + cc] = ok ? w[q] : 0.0f;
                        panel[d * LIN_NR + cc] = 0.0f;
                    }
                    lin_tile(1, x, d, 1, d, panel, tmp, LIN_NR, LIN_NR);
                }
                for (int64_t cc = 0; cc < m; cc++) {
                    int32_t id = c[c0 + cc];
                    if (id < 1 || id > n_items) continue;
                    float v = panel ? tmp[cc] : sk_dot(x, items + (int64_t)(id - 1) * d, d);
                    sk_offer(bi, bv, &cnt, k, v, id, &r);
                }
            }
            tk_finish(bi, bv, cnt, k);
        }
        free(panel);
    }
}

/* k_score_topk, with the items packed already when items_p is given. */
static void score_topk_run(const float *user, const float *items, const float *items_p,
                           const int32_t *exclude, int64_t n_exclude, const int32_t *cand,
                           int64_t n_cand, int32_t *ids, float *vals, int64_t batch,
                           int64_t n_items, int64_t d, int64_t k, int threads)
{
    if (k <= 0 || batch <= 0) return;
    if (!exclude) n_exclude = 0;
    /* exclusions sorted per user (else searched in place) */
    int32_t *exs = NULL;
    if (n_exclude > 0 && (exs = malloc((size_t)(batch * n_exclude) * sizeof(int32_t)))) {
        memcpy(exs, exclude, (size_t)(batch * n_exclude) * sizeof(int32_t));
        for (int64_t b = 0; b < batch; b++)
            qsort(exs + b * n_exclude, (size_t)n_exclude, sizeof(int32_t), sk_cmp_i32);
    }
    const int32_t *ex = exs ? exs : exclude;
    int sorted = exs != NULL;
    if (cand) {
        sk_candidates(user, items, ex, n_exclude, sorted, cand, n_cand, ids, vals, batch, n_items,
                      d, k, threads);
        free(exs);
        return;
    }
    int64_t nblocks = (n_items + SK_NB - 1) / SK_NB;
    int nt = threads;
    if (2.0 * (double)batch * (double)n_items * (double)d < 2e5) nt = 1;
    if (nt > nblocks) nt = (int)(nblocks > 0 ? nblocks : 1);
    /* heaps: thread 0's are the outputs, the others' scratch */
    size_t extra = (size_t)(nt - 1) * (size_t)(batch * k);
    int32_t *hid = extra ? malloc(extra * sizeof(int32_t)) : NULL;
    float *hv = extra ? malloc(extra * sizeof(float)) : NULL;
    int64_t *hcnt = calloc((size_t)nt * (size_t)batch, sizeof(int64_t));
    if (!hcnt || (extra && (!hid || !hv))) {
        free(hid);
        free(hv);
        hid = NULL;
        hv = NULL;
        nt = 1;
        if (!hcnt) { /* one user at a time, its count on the stack */
            for (int64_t b = 0; b < batch; b++) {
                int64_t cnt = 0;
                sk_rules r = sk_user_rules(ex, n_exclude, sorted, 0, b);
                for (int64_t j = 0; j < n_items; j++)
                    sk_offer(ids + b * k, vals + b * k, &cnt, k,
                             sk_dot(user + b * d, items + j * d, d), (int32_t)(j + 1), &r);
                tk_finish(ids + b * k, vals + b * k, cnt, k);
            }
            free(exs);
            return;
        }
    }
#pragma omp parallel for num_threads(nt) schedule(static, 1)
    for (int t = 0; t < nt; t++) {
        int64_t blk0 = nblocks * t / nt, blk1 = nblocks * (t + 1) / nt;
        int32_t *ti = t ? hid + (size_t)(t - 1) * (size_t)(batch * k) : ids;
        float *tv = t ? hv + (size_t)(t - 1) * (size_t)(batch * k) : vals;
        sk_range(user, items, items_p, ex, n_exclude, sorted, ti, tv,
                 hcnt + (size_t)t * (size_t)batch, batch, n_items, d, k, blk0, blk1);
    }
    /* merge into thread 0's heaps (exclusions are applied already) */
    sk_rules none = {NULL, 0, 0, 0};
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        for (int t = 1; t < nt; t++) {
            const int32_t *ti = hid + (size_t)(t - 1) * (size_t)(batch * k) + b * k;
            const float *tv = hv + (size_t)(t - 1) * (size_t)(batch * k) + b * k;
            for (int64_t e = 0; e < hcnt[(size_t)t * (size_t)batch + b]; e++)
                sk_offer(ids + b * k, vals + b * k, &hcnt[b], k, tv[e], ti[e], &none);
        }
        tk_finish(ids + b * k, vals + b * k, hcnt[b], k);
    }
    free(hid);
    free(hv);
    free(hcnt);
    free(exs);
}

static void k_score_topk(const float *user, const float *items, const int32_t *exclude,
                         int64_t n_exclude, const int32_t *cand, int64_t n_cand, int32_t *ids,
                         float *vals, int64_t batch, int64_t n_items, int64_t d, int64_t k,
                         int threads)
{
    score_topk_run(user, items, NULL, exclude, n_exclude, cand, n_cand, ids, vals, batch, n_items,
                   d, k, threads);
}

static void k_score_topk_packed(const float *user, const float *items, const float *items_p,
                                const int32_t *exclude, int64_t n_exclude, const int32_t *cand,
                                int64_t n_cand, int32_t *ids, float *vals, int64_t batch,
                                int64_t n_items, int64_t d, int64_t k, int threads)
{
    score_topk_run(user, items, items_p, exclude, n_exclude, cand, n_cand, ids, vals, batch,
                   n_items, d, k, threads);
}

/* ------------------------------------------------------------------ ffn */

/*
 * z + fc2(GELU(fc1(LN(z)))), FFN_TILE rows at a time, each tile by one
 * thread from LayerNorm to the residual add: its [FFN_TILE, f] activations
 * (96 KiB at f = 256) stay in that core's L2 between the five steps, and the
 * threads never wait for each other between them. W1 and W2 are packed once
 * per call into the panels lin_block reads. Every step computes a row (an
 * element) by the same operations as the separate kernels above (ln_row,
 * lin_block's FMA chain from the bias over k in order, gelu_span lane by
 * lane, one addition), whatever tile or thread it falls in: the result is
 * bitwise that of layer_norm, linear, gelu, linear and add.
 */
#define FFN_TILE (LIN_MR * 16)

/* Packs W [n, k] and its bias into lin_block's panels (lin_run's layout). */
static void lin_pack(const float *w, const float *bias, float *packed, int64_t n, int64_t k)
{
    int64_t panels = (n + LIN_NR - 1) / LIN_NR;
    for (int64_t p = 0; p < panels; p++)
        lin_pack_panel(w, bias, packed + p * (k + 1) * LIN_NR, p, n, k);
}

/* The scratch of a fused op run by nt threads, in one allocation: W1 [n1, k1]
 * and W2 [n2, k2] packed into lin_block's panels (with their biases), then
 * per_thread floats for each thread (pair_scratch_mine). With pre1 and pre2
 * (both packed by lin_pack already, kept by the caller) only the threads'
 * floats are allocated. */
typedef struct pair_scratch {
    float *mem; /* free() it */
    const float *w1, *w2;
    int64_t panels1, panels2;
    float *work;
    size_t per_thread;
} pair_scratch;

/* Returns 0, or -1 when out of memory (nothing to free then). */
static int pair_scratch_init(pair_scratch *s, const float *w1, const float *b1, int64_t n1,
                             int64_t k1, const float *w2, const float *b2, int64_t n2, int64_t k2,
                             size_t per_thread, int nt, const float *pre1, const float *pre2)
{
    s->panels1 = (n1 + LIN_NR - 1) / LIN_NR;
    s->panels2 = (n2 + LIN_NR - 1) / LIN_NR;
    int packed = pre1 && pre2;
    size_t p1 = packed ? 0 : lin_packed_floats(n1, k1), p2 = packed ? 0 : lin_packed_floats(n2, k2);
    size_t total = p1 + p2 + (size_t)nt * per_thread;
    s->mem = aligned_alloc(64, ((total * sizeof(float)) + 63) & ~(size_t)63);
    if (!s->mem) return -1;
    if (packed) {
        s->w1 = pre1;
        s->w2 = pre2;
    } else {
        lin_pack(w1, b1, s->mem, n1, k1);
        lin_pack(w2, b2, s->mem + p1, n2, k2);
        s->w1 = s->mem;
        s->w2 = s->mem + p1;
    }
    s->work = s->mem + p1 + p2;
    s->per_thread = per_thread;
    return 0;
}

/* The calling thread's per_thread floats (inside the op's parallel region). */
static float *pair_scratch_mine(const pair_scratch *s)
{
    return s->work + (size_t)omp_get_thread_num() * s->per_thread;
}

/* k_ffn, with W1 and W2 packed already when w1p and w2p are given. */
static int ffn_run(const float *z, const float *ln_w, const float *ln_b, const float *w1,
                   const float *b1, const float *w2, const float *b2, const float *w1p,
                   const float *w2p, float *out, int64_t rows, int64_t d, int64_t f, float eps,
                   int threads)
{
    if (rows <= 0) return 0;
    int64_t tiles = (rows + FFN_TILE - 1) / FFN_TILE;
    int nt = (int)ek_max(1, ek_min(threads, tiles));
    pair_scratch sc; /* a, h, y per thread */
    if (pair_scratch_init(&sc, w1, b1, f, d, w2, b2, d, f, (size_t)(FFN_TILE * (d + f + d)), nt,
                          w1p, w2p))
        return -1;
#pragma omp parallel num_threads(nt)
    {
        float *a = pair_scratch_mine(&sc);
        float *h = a + FFN_TILE * d, *y = h + FFN_TILE * f;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++) {
            int64_t r0 = t * FFN_TILE, m = ek_min(FFN_TILE, rows - r0);
            const float *zt = z + r0 * d;
            float *ot = out + r0 * d;
            for (int64_t r = 0; r < m; r++)
                ln_row(zt + r * d, ln_w, ln_b, a + r * d, d, eps);
            lin_block(a, sc.w1, h, 0, m, 0, sc.panels1, f, d);
            gelu_span(h, h, 0, m * f);
            lin_block(h, sc.w2, y, 0, m, 0, sc.panels2, d, f);
            for (int64_t i = 0; i < m * d; i++)
                ot[i] = zt[i] + y[i];
        }
    }
    free(sc.mem);
    return 0;
}

static int k_ffn(const float *z, const float *ln_w, const float *ln_b, const float *w1,
                 const float *b1, const float *w2, const float *b2, float *out, int64_t rows,
                 int64_t d, int64_t f, float eps, int threads)
{
    return ffn_run(z, ln_w, ln_b, w1, b1, w2, b2, NULL, NULL, out, rows, d, f, eps, threads);
}

static int k_ffn_packed(const float *z, const float *ln_w, const float *ln_b, const float *w1p,
                        const float *w2p, float *out, int64_t rows, int64_t d, int64_t f, float eps,
                        int threads)
{
    return ffn_run(z, ln_w, ln_b, NULL, NULL, NULL, NULL, w1p, w2p, out, rows, d, f, eps, threads);
}

/* -------------------------------------------------------------- cross_entropy */

/*
 * The loss of spec section 5 and d(mean loss)/d(scores) per row, as the
 * reference (cpu_grad.c) computes them but with the exponentials in float32
 * vectors (vexp, ~1 ulp), summed in VLEN lanes and then in double: the
 * conformance suite's CROSS_ENTROPY bound (tolerance.c) is written for this.
 * The row's max, its log-sum-exp and the target's gradient stay in double.
 */
static void k_cross_entropy(const float *scores, const int32_t *target, float *loss, float *dscores,
                            int64_t batch, int64_t items, int threads)
{
    int64_t counted = 0; /* rows with a target: the mean is over them */
    for (int64_t b = 0; b < batch; b++)
        counted += target[b] != 0;
    double rows = counted > 0 ? (double)counted : 1.0;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; b++) {
        const float *s = scores + b * items;
        float *g = dscores + b * items;
        if (target[b] == 0) { /* ignored row */
            memset(g, 0, (size_t)items * sizeof *g);
            loss[b] = 0.0f;
            continue;
        }
        float mx = -INFINITY;
        for (int64_t j = 0; j < items; j++)
            mx = s[j] > mx ? s[j] : mx;
        vf vm = vset1(mx), acc = vset1(0.0f);
        int64_t j = 0;
        for (; j + VLEN <= items; j += VLEN) { /* g holds exp(s_j - max) until scaled */
            vf e = vexp(vload(s + j) - vm);
            vstore(g + j, e);
            acc += e;
        }
        double sum = 0;
        for (int l = 0; l < VLEN; l++)
            sum += acc[l];
        for (; j < items; j++) {
            g[j] = expf(s[j] - mx);
            sum += g[j];
        }
        double lse = (double)mx + log(sum);
        vf scale = vset1((float)(1.0 / (sum * rows)));
        for (j = 0; j + VLEN <= items; j += VLEN)
            vstore(g + j, vload(g + j) * scale);
        for (; j < items; j++)
            g[j] *= scale[0];
        int64_t t = target[b] - 1;
        g[t] = (float)((exp((double)s[t] - lse) - 1.0) / rows);
        loss[b] = (float)(lse - s[t]);
    }
}

/* ------------------------------------------------------ aggregate, dispatch */

/*
 * The two attentions of an ELASTIC layer with the position-wise work around
 * them, so that no [B, n, d] tensor but x and the output exists at long n.
 * Dispatch goes by tiles of FFN_TILE rows, one thread each (as k_ffn).
 * Aggregation goes a user at a time, one thread each, when there are users
 * for every thread (agg_by_user); else by chunks of ATT_CHUNK rows (a
 * multiple of ATT_KB and of VLEN), whole users when n fits a chunk, else
 * chunks of one user's positions, each step over all threads. Every
 * kernel computes a row the same way whatever rows it is given, and the
 * online softmax takes its key blocks in the same order, so the results are
 * bitwise those of the separate ops.
 */
#define ATT_CHUNK 4096
_Static_assert(ATT_CHUNK % ATT_KB == 0 && ATT_CHUNK % VLEN == 0, "chunks of whole key blocks");

/* Rows of the chunk at (user b, position r0) and how many users it holds. */
static int64_t att_chunk_rows(int64_t batch, int64_t n, int64_t b, int64_t r0, int64_t *users)
{
    if (n <= ATT_CHUNK) {
        *users = ek_min(ek_max(1, ATT_CHUNK / n), batch - b);
        return *users * n;
    }
    *users = 1;
    return ek_min(ATT_CHUNK, n - r0);
}

/* k_aggregate with a user per thread, from LayerNorm to the end of its
 * online softmax with no waits between the steps: the user's valid rows go
 * by in chunks of AGG_ROWS (K and V of a chunk stay in L2), FFN_TILE rows
 * at a time through LayerNorm and the two projections, then every query
 * block takes the chunk's keys with its state kept across chunks. The rows
 * past a user's length are not computed, as no key reads them. A chunk
 * starts at a multiple of ATT_KB, so its key blocks are those of one pass
 * over all keys (att_keys), and a row's LayerNorm and projections do not
 * depend on its tile: the same bits as the separate ops, for any n. */
#define AGG_ROWS (ATT_KB * 12)
_Static_assert(AGG_ROWS % ATT_KB == 0, "chunks of whole key blocks");

static int agg_by_user(const float *q, const float *x, const float *ln_w, const float *ln_b,
                       const float *wk, const float *bk, const float *wv, const float *bv,
                       const float *wkp, const float *wvp, const int32_t *key_len, float *out,
                       int64_t batch, int64_t m, int64_t n, int64_t d, int heads, float eps,
                       int threads)
{
    int64_t dh = d / heads, nqb = (m + VLEN - 1) / VLEN, per_user = heads * nqb;
    int64_t rows_max = ek_min(n, AGG_ROWS);
    float scale = (float)(1.0 / sqrt((double)dh));
    int nt = (int)ek_max(1, ek_min(threads, batch));
    /* per thread: a tile of LN rows, a chunk of K and of V, the query
     * blocks' states (floats and an int: a whole number of floats) */
    size_t st_floats = (size_t)per_user * (sizeof(att_state) / sizeof(float));
    _Static_assert(sizeof(att_state) % sizeof(float) == 0, "states in float scratch");
    pair_scratch sc;
    if (pair_scratch_init(&sc, wk, bk, d, d, wv, bv, d, d,
                          (size_t)((FFN_TILE + 2 * rows_max) * d) + st_floats, nt, wkp, wvp))
        return -1;
#pragma omp parallel num_threads(nt)
    {
        float *a = pair_scratch_mine(&sc);
        float *kc = a + FFN_TILE * d, *vc = kc + rows_max * d;
        att_state *st = (att_state *)(vc + rows_max * d);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < batch; b++) {
            int64_t valid = key_len ? ek_max(0, ek_min((int64_t)key_len[b], n)) : n;
            const float *xb = x + b * n * d, *qb = q + b * m * d;
            float *ob = out + b * m * d;
            for (int64_t it = 0; it < per_user; it++) {
                int64_t h = it / nqb, i0 = (it % nqb) * VLEN;
                att_begin(ob + h * dh, i0, ek_min(VLEN, m - i0), d, dh, &st[it]);
            }
            for (int64_t r0 = 0; r0 < valid; r0 += AGG_ROWS) {
                int64_t rows = ek_min(AGG_ROWS, valid - r0);
                for (int64_t t0 = 0; t0 < rows; t0 += FFN_TILE) {
                    int64_t tr = ek_min(FFN_TILE, rows - t0);
                    for (int64_t r = 0; r < tr; r++)
                        ln_row(xb + (r0 + t0 + r) * d, ln_w, ln_b, a + r * d, d, eps);
                    lin_block(a, sc.w1, kc + t0 * d, 0, tr, 0, sc.panels1, d, d);
                    lin_block(a, sc.w2, vc + t0 * d, 0, tr, 0, sc.panels2, d, d);
                }
                for (int64_t h = 0; h < heads; h++) {
                    for (int64_t i0 = 0; i0 < m; i0 += 2 * VLEN) {
                        int64_t cnt = ek_min(2 * VLEN, m - i0), it = h * nqb + i0 / VLEN;
                        float qt0[ATT_DHMAX * VLEN], qt1[ATT_DHMAX * VLEN];
                        const float *qh = qb + h * dh;
                        float *oh = ob + h * dh;
                        att_load_queries(qh + i0 * d, ek_min(VLEN, cnt), d, dh, scale, qt0);
                        if (cnt > VLEN) {
                            att_load_queries(qh + (i0 + VLEN) * d, cnt - VLEN, d, dh, scale, qt1);
                            att_keys2(qt0, qt1, kc + h * dh, vc + h * dh, oh, i0, VLEN, cnt - VLEN,
                                      r0, r0, r0 + rows, d, dh, 0, &st[it], &st[it + 1]);
                        } else {
                            att_keys(qt0, kc + h * dh, vc + h * dh, oh, i0, cnt, r0, r0, r0 + rows,
                                     d, dh, 0, &st[it]);
                        }
                    }
                }
            }
            for (int64_t it = 0; it < per_user; it++) {
                int64_t h = it / nqb, i0 = (it % nqb) * VLEN;
                att_end(ob + h * dh, i0, ek_min(VLEN, m - i0), d, dh, &st[it]);
            }
        }
    }
    free(sc.mem);
    return 0;
}

/* k_aggregate, with WK and WV packed already when wkp and wvp are given. */
static int aggregate_run(const float *q, const float *x, const float *ln_w, const float *ln_b,
                         const float *wk, const float *bk, const float *wv, const float *bv,
                         const float *wkp, const float *wvp, const int32_t *key_len, float *out,
                         int64_t batch, int64_t m, int64_t n, int64_t d, int heads, float eps,
                         int threads)
{
    int64_t dh = d / heads, nqb = (m + VLEN - 1) / VLEN, per_user = heads * nqb;
    if (dh > ATT_DHMAX) { /* the scalar path's heads: whole tensors, as the separate ops */
        float *a = malloc((size_t)(batch * n * d) * sizeof(float));
        float *kv = malloc((size_t)(2 * batch * n * d) * sizeof(float));
        if (a && kv) {
            k_layer_norm(x, ln_w, ln_b, a, batch * n, d, eps, threads);
            if (wkp && wvp) {
                lin_run_packed(a, wkp, kv, batch * n, d, d, threads);
                lin_run_packed(a, wvp, kv + batch * n * d, batch * n, d, d, threads);
            } else {
                k_linear(a, wk, bk, kv, batch * n, d, d, threads);
                k_linear(a, wv, bv, kv + batch * n * d, batch * n, d, d, threads);
            }
            k_attention(q, kv, kv + batch * n * d, key_len, out, batch, m, n, d, heads, 0, threads);
        }
        free(a);
        free(kv);
        return a && kv ? 0 : -1;
    }
    if (batch >= threads) /* else the chunks' threads share a user's rows */
        return agg_by_user(q, x, ln_w, ln_b, wk, bk, wv, bv, wkp, wvp, key_len, out, batch, m, n, d,
                           heads, eps, threads);
    float scale = (float)(1.0 / sqrt((double)dh));
    int64_t cap = ek_min(batch * n, ATT_CHUNK); /* att_chunk_rows is at most this */
    pair_scratch sc;                            /* packed wk, wv and a tile of LN rows per thread */
    if (pair_scratch_init(&sc, wk, bk, d, d, wv, bv, d, d, (size_t)(FFN_TILE * d), threads, wkp,
                          wvp))
        return -1;
    float *kc = malloc((size_t)(cap * d) * sizeof(float));
    float *vc = malloc((size_t)(cap * d) * sizeof(float));
    att_state *st = malloc((size_t)(batch * per_user) * sizeof *st);
    int rc = kc && vc && st ? 0 : -1;
    for (int64_t it = 0; rc == 0 && it < batch * per_user; it++) {
        int64_t b = it / per_user, h = (it % per_user) / nqb, i0 = (it % nqb) * VLEN;
        att_begin(out + b * m * d + h * dh, i0, ek_min(VLEN, m - i0), d, dh, &st[it]);
    }
    /* one parallel region: every thread walks the same chunks; per chunk the
     * LN rows and their K and V a tile at a time (LayerNorm, then the two
     * projections, as the separate ops compute each row), then the query
     * blocks' keys; two barriers per chunk */
#pragma omp parallel num_threads(threads) if (rc == 0)
    {
        float *a = pair_scratch_mine(&sc);
        for (int64_t b = 0, r0 = 0; rc == 0 && b < batch;) {
            int64_t users, rows = att_chunk_rows(batch, n, b, r0, &users);
            const float *xc = x + (b * n + r0) * d;
            int64_t tiles = (rows + FFN_TILE - 1) / FFN_TILE;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tiles; t++) {
                int64_t t0 = t * FFN_TILE, tr = ek_min(FFN_TILE, rows - t0);
                for (int64_t r = 0; r < tr; r++)
                    ln_row(xc + (t0 + r) * d, ln_w, ln_b, a + r * d, d, eps);
                lin_block(a, sc.w1, kc + t0 * d, 0, tr, 0, sc.panels1, d, d);
                lin_block(a, sc.w2, vc + t0 * d, 0, tr, 0, sc.panels2, d, d);
            }
#pragma omp for schedule(static, 1)
            for (int64_t w = 0; w < users * per_user; w++) {
                int64_t u = b + w / per_user, h = (w % per_user) / nqb, i0 = (w % nqb) * VLEN;
                int64_t cnt = ek_min(VLEN, m - i0);
                int64_t valid = key_len ? ek_max(0, ek_min((int64_t)key_len[u], n)) : n;
                int64_t from = users > 1 ? 0 : r0, to = ek_min(valid, users > 1 ? n : r0 + rows);
                if (from >= to) continue;
                float qt[ATT_DHMAX * VLEN];
                att_load_queries(q + u * m * d + h * dh + i0 * d, cnt, d, dh, scale, qt);
                /* the chunk's rows of user u start at its position `from` */
                const float *kb = kc + (u - b) * n * d + h * dh,
                            *vb = vc + (u - b) * n * d + h * dh;
                att_keys(qt, kb, vb, out + u * m * d + h * dh, i0, cnt, from, from, to, d, dh, 0,
                         &st[u * per_user + w % per_user]);
            }
            if (users > 1 || r0 + rows >= n) {
                b += users;
                r0 = 0;
            } else {
                r0 += rows;
            }
        }
    }
    for (int64_t it = 0; rc == 0 && it < batch * per_user; it++) {
        int64_t b = it / per_user, h = (it % per_user) / nqb, i0 = (it % nqb) * VLEN;
        att_end(out + b * m * d + h * dh, i0, ek_min(VLEN, m - i0), d, dh, &st[it]);
    }
    free(sc.mem);
    free(kc);
    free(vc);
    free(st);
    return rc;
}

static int k_aggregate(const float *q, const float *x, const float *ln_w, const float *ln_b,
                       const float *wk, const float *bk, const float *wv, const float *bv,
                       const int32_t *key_len, float *out, int64_t batch, int64_t m, int64_t n,
                       int64_t d, int heads, float eps, int threads)
{
    return aggregate_run(q, x, ln_w, ln_b, wk, bk, wv, bv, NULL, NULL, key_len, out, batch, m, n, d,
                         heads, eps, threads);
}

static int k_aggregate_packed(const float *q, const float *x, const float *ln_w, const float *ln_b,
                              const float *wkp, const float *wvp, const int32_t *key_len,
                              float *out, int64_t batch, int64_t m, int64_t n, int64_t d, int heads,
                              float eps, int threads)
{
    return aggregate_run(q, x, ln_w, ln_b, NULL, NULL, NULL, NULL, wkp, wvp, key_len, out, batch, m,
                         n, d, heads, eps, threads);
}

/* The queries [s, e) of one user (rows of q and o, stride d) against its m
 * keys, every head, as k_attention computes them: the same query blocks'
 * lanes, the same keys in the same order. */
static void att_rows(const float *q, const float *k, const float *v, float *o, int64_t cnt,
                     int64_t m, int64_t d, int64_t dh, int heads, float scale)
{
    for (int h = 0; h < heads; h++)
        for (int64_t i0 = 0; i0 < cnt; i0 += 2 * VLEN)
            att_item(q + h * dh, k + h * dh, v + h * dh, o + h * dh, i0, ek_min(2 * VLEN, cnt - i0),
                     m, d, dh, 0, scale);
}

/* x + o(attention(q(LN(x)), k, v)) FFN_TILE rows at a time, each tile by one
 * thread from LayerNorm to the residual add (as k_ffn): a tile's rows may
 * belong to two users, each attending to its own m keys. */
static int dispatch_run(const float *x, const float *ln_w, const float *ln_b, const float *wq,
                        const float *bq, const float *k, const float *v, const float *wo,
                        const float *bo, const float *wqp, const float *wop, float *out,
                        int64_t batch, int64_t n, int64_t m, int64_t d, int heads, float eps,
                        int threads)
{
    int64_t rows = batch * n;
    if (rows <= 0) return 0;
    int64_t dh = d / heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    int64_t tiles = (rows + FFN_TILE - 1) / FFN_TILE;
    int nt = (int)ek_max(1, ek_min(threads, tiles));
    pair_scratch sc; /* a, qc per thread */
    if (pair_scratch_init(&sc, wq, bq, d, d, wo, bo, d, d, (size_t)(2 * FFN_TILE * d), nt, wqp,
                          wop))
        return -1;
#pragma omp parallel num_threads(nt)
    {
        float *a = pair_scratch_mine(&sc);
        float *qc = a + FFN_TILE * d;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++) {
            int64_t r0 = t * FFN_TILE, mt = ek_min(FFN_TILE, rows - r0);
            const float *xt = x + r0 * d;
            float *ot = out + r0 * d;
            for (int64_t r = 0; r < mt; r++)
                ln_row(xt + r * d, ln_w, ln_b, a + r * d, d, eps);
            lin_block(a, sc.w1, qc, 0, mt, 0, sc.panels1, d, d);
            for (int64_t s0 = r0; s0 < r0 + mt;) { /* a user's rows at a time */
                int64_t u = s0 / n, e = ek_min(r0 + mt, (u + 1) * n);
                att_rows(qc + (s0 - r0) * d, k + u * m * d, v + u * m * d, a + (s0 - r0) * d,
                         e - s0, m, d, dh, heads, scale);
                s0 = e;
            }
            lin_block(a, sc.w2, qc, 0, mt, 0, sc.panels2, d, d);
            for (int64_t i = 0; i < mt * d; i++)
                ot[i] = xt[i] + qc[i];
        }
    }
    free(sc.mem);
    return 0;
}

static int k_dispatch(const float *x, const float *ln_w, const float *ln_b, const float *wq,
                      const float *bq, const float *k, const float *v, const float *wo,
                      const float *bo, float *out, int64_t batch, int64_t n, int64_t m, int64_t d,
                      int heads, float eps, int threads)
{
    return dispatch_run(x, ln_w, ln_b, wq, bq, k, v, wo, bo, NULL, NULL, out, batch, n, m, d, heads,
                        eps, threads);
}

static int k_dispatch_packed(const float *x, const float *ln_w, const float *ln_b, const float *wqp,
                             const float *k, const float *v, const float *wop, float *out,
                             int64_t batch, int64_t n, int64_t m, int64_t d, int heads, float eps,
                             int threads)
{
    return dispatch_run(x, ln_w, ln_b, NULL, NULL, k, v, NULL, NULL, wqp, wop, out, batch, n, m, d,
                        heads, eps, threads);
}

/* ------------------------------------------------------- attention_grad */

/*
 * The attention backward of spec section 5 (the reference's, cpu_grad.c,
 * in another order): per user and head, K and V are transposed once into
 * [dh, nk] rows, so that a query's scores s_j = q . k_j and dp_j = dy . v_j
 * are vectors over the keys, four key vectors at a time; then the softmax
 * weights p (vexp), gdot = sum_j p_j dp_j (= dy . out), ds_j = p_j (dp_j -
 * gdot) scale, and dq = sum_j ds_j k_j, dk_j += ds_j q, dv_j += p_j dy over
 * the head width. Float32; each (user, head) is one thread's: no races, and
 * the result does not depend on the thread count.
 */
#define AG_KV 4 /* key vectors per pass of the score loop */

/* s[j] = scale q . kt[., j], g[j] = dy . vt[., j] for the key vectors
 * [j0, j1) (multiples of VLEN; kt and vt rows of stride ld). */
static void ag_scores(const float *qi, const float *gi, const float *kt, const float *vt,
                      int64_t ld, int64_t j0, int64_t j1, int64_t dh, float scale, float *s,
                      float *g)
{
    int64_t j = j0;
    for (; j + AG_KV * VLEN <= j1; j += AG_KV * VLEN) {
        vf as[AG_KV], ag[AG_KV];
        for (int u = 0; u < AG_KV; u++)
            as[u] = ag[u] = vset1(0.0f);
        for (int64_t c = 0; c < dh; c++) {
            vf qc = vset1(qi[c]), gc = vset1(gi[c]);
            const float *kr = kt + c * ld + j, *vr = vt + c * ld + j;
            for (int u = 0; u < AG_KV; u++) {
                as[u] = vfma(qc, vload(kr + u * VLEN), as[u]);
                ag[u] = vfma(gc, vload(vr + u * VLEN), ag[u]);
            }
        }
        for (int u = 0; u < AG_KV; u++) {
            vstore(s + j + u * VLEN, as[u] * vset1(scale));
            vstore(g + j + u * VLEN, ag[u]);
        }
    }
    for (; j < j1; j += VLEN) {
        vf as = vset1(0.0f), ag = as;
        for (int64_t c = 0; c < dh; c++) {
            as = vfma(vset1(qi[c]), vload(kt + c * ld + j), as);
            ag = vfma(vset1(gi[c]), vload(vt + c * ld + j), ag);
        }
        vstore(s + j, as * vset1(scale));
        vstore(g + j, ag);
    }
}

static int k_attention_grad(const float *q, const float *k, const float *v, const float *dy,
                            const int32_t *key_len, float *dq, float *dk, float *dv, int64_t batch,
                            int64_t nq, int64_t nk, int64_t d, int heads, int causal, int threads)
{
    int64_t dh = d / heads, ld = (nk + VLEN - 1) / VLEN * VLEN;
    float scale = (float)(1.0 / sqrt((double)dh));
    int failed = 0;
    memset(dk, 0, (size_t)(batch * nk * d) * sizeof(float));
    memset(dv, 0, (size_t)(batch * nk * d) * sizeof(float));
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        /* kt, vt [dh, ld]; p, g [ld]; the query's dq [dh] */
        float *kt = malloc((size_t)(2 * dh * ld + 2 * ld + dh) * sizeof(float));
        float *vt = kt ? kt + dh * ld : NULL, *p = kt ? vt + dh * ld : NULL;
        float *g = kt ? p + ld : NULL, *acc = kt ? g + ld : NULL;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * heads; bh++) {
            if (!kt) {
                failed = 1;
                continue;
            }
            int64_t b = bh / heads, h = bh % heads;
            int64_t valid = key_len ? ek_max(0, ek_min((int64_t)key_len[b], nk)) : nk;
            int64_t vend = (valid + VLEN - 1) / VLEN * VLEN;
            const float *kb = k + b * nk * d + h * dh, *vb = v + b * nk * d + h * dh;
            float *dkb = dk + b * nk * d + h * dh, *dvb = dv + b * nk * d + h * dh;
            for (int64_t c = 0; c < dh; c++) {
                for (int64_t j = 0; j < valid; j++) {
                    kt[c * ld + j] = kb[j * d + c];
                    vt[c * ld + j] = vb[j * d + c];
                }
                for (int64_t j = valid; j < vend; j++)
                    kt[c * ld + j] = vt[c * ld + j] = 0.0f;
            }
            for (int64_t i = 0; i < nq; i++) {
                const float *qi = q + (b * nq + i) * d + h * dh;
                const float *gi = dy + (b * nq + i) * d + h * dh;
                float *dqi = dq + (b * nq + i) * d + h * dh;
                int64_t first = causal ? i : 0, jv = first / VLEN * VLEN;
                memset(dqi, 0, (size_t)dh * sizeof(float));
                if (first >= valid) continue;
                ag_scores(qi, gi, kt, vt, ld, jv, vend, dh, scale, p, g);
                for (int64_t j = jv; j < first; j++)
                    p[j] = -INFINITY; /* hidden keys of the first vector */
                for (int64_t j = valid; j < vend; j++)
                    p[j] = -INFINITY; /* and past the user's length */
                vf mx = vset1(-INFINITY);
                for (int64_t j = jv; j < vend; j += VLEN)
                    mx = vmax(mx, vload(p + j));
                float m = mx[0];
                for (int l = 1; l < VLEN; l++)
                    m = mx[l] > m ? mx[l] : m;
                vf sum = vset1(0.0f);
                for (int64_t j = jv; j < vend; j += VLEN) {
                    vf e = vexp(vload(p + j) - vset1(m)); /* exp(-inf) = 0 */
                    sum += e;
                    vstore(p + j, e);
                }
                vf inv = vset1(1.0f / vhsum(sum)), gd = vset1(0.0f);
                for (int64_t j = jv; j < vend; j += VLEN) {
                    vf pj = vload(p + j) * inv;
                    vstore(p + j, pj);
                    gd = vfma(pj, vload(g + j), gd);
                }
                vf gdot = vset1(vhsum(gd));
                for (int64_t j = jv; j < vend; j += VLEN) /* g becomes ds */
                    vstore(g + j, vload(p + j) * (vload(g + j) - gdot) * vset1(scale));
                for (int64_t c = 0; c < dh; c++)
                    acc[c] = 0.0f;
                for (int64_t j = first; j < valid; j++) {
                    const float *kj = kb + j * d;
                    float *dkj = dkb + j * d, *dvj = dvb + j * d;
                    float ds = g[j], pj = p[j];
#pragma omp simd
                    for (int64_t c = 0; c < dh; c++) {
                        dvj[c] += pj * gi[c];
                        dkj[c] += ds * qi[c];
                        acc[c] += ds * kj[c];
                    }
                }
                memcpy(dqi, acc, (size_t)dh * sizeof(float));
            }
        }
        free(kt);
    }
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------- pkm_grad */

/* cpu_grad.c's elastic_cpu_pkm_grad_rows with the forward's selection
 * (pkm_select: the same double scores, the same slots in the same order),
 * then the same elastic_cpu_pkm_grad_row: the reference's bits. Returns 0,
 * or -1 when out of memory. */
static int k_pkm_grad_rows(const float *query, const float *subkeys, const float *values,
                           const float *dy, float *dquery, int64_t *kept, double *kw, int64_t rows,
                           int64_t c, int64_t m, int64_t t, int64_t d, int threads)
{
    double *skT = pkm_subkeys_t(subkeys, c / 2, m);
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        double *dv = malloc((size_t)(5 * t) * sizeof(double));
        int64_t *iv = malloc((size_t)(3 * t) * sizeof(int64_t));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!dv || !iv) {
                failed = 1;
                continue;
            }
            int64_t np = pkm_select(query + r * c, subkeys, skT, c, m, t, dv, iv);
            elastic_cpu_pkm_grad_row(dv + 2 * t, iv + 2 * t, np, dy + r * d, subkeys, values,
                                     dquery + r * c, kept + r * t * 3, kw + r * t * 2,
                                     kw + r * t * 2 + t, c, m, d);
        }
        free(dv);
        free(iv);
    }
    free(skT);
    return failed ? -1 : 0;
}

/* ------------------------------------------------------- layer_norm_grad */

/* cpu_ln_grad_rows.h's body with a row's double sums in vector lanes (a
 * different order from the reference's: within a float rounding of its dx). */
#define EK_PRAGMA(x) _Pragma(#x)
#define LN_GRAD_SUMS(...) EK_PRAGMA(omp simd reduction(+ : __VA_ARGS__))
#include "cpu_ln_grad_rows.h"

static void k_layer_norm_grad_rows(const float *x, const float *weight, const float *dy, float *dx,
                                   double *stat, int64_t rows, int64_t d, float eps, int threads)
{
    ln_grad_rows(x, weight, dy, dx, stat, rows, d, eps, threads);
}

/* ----------------------------------------------------------------- dropout */

/*
 * Element i keeps x_i / (1 - p) (scaled in double, as the reference) when
 * the 16-bit field i % 4 of the hash of group i / 4 is >= the threshold:
 * the reference's mask (cpu_grad.c), in blocks of four groups: their
 * hashes (splitmix64, elastic_rng_mix) in 64-bit vector lanes, then each
 * group's four elements (mask lanes of 0 or -1, the scale in double lanes).
 */
typedef uint64_t u64x4 __attribute__((vector_size(32)));
typedef int64_t i64x4 __attribute__((vector_size(32)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef double f64x4 __attribute__((vector_size(32)));

static void k_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, int threads)
{
    double scale = 1.0 / (1.0 - (double)p);
    uint32_t cut = elastic_dropout_threshold(p);
    uint64_t key = elastic_rng_key(seed, 0);
    int64_t blocks = n / 16;
#pragma omp parallel for num_threads(threads) schedule(static) if (blocks > 256)
    for (int64_t blk = 0; blk < blocks; blk++) {
        /* elastic_rng_at(key, q) for the block's groups q, in vector lanes */
        u64x4 h = (u64x4){0, 1, 2, 3} + (uint64_t)(key + (uint64_t)(4 * blk) + 0x9e3779b97f4a7c15u);
        h = (h ^ (h >> 30)) * (uint64_t)0xbf58476d1ce4e5b9u;
        h = (h ^ (h >> 27)) * (uint64_t)0x94d049bb133111ebu;
        h ^= h >> 31;
        for (int g = 0; g < 4; g++) { /* group g: elements 4 g .. 4 g + 3 */
            u64x4 field = ((u64x4){0, 0, 0, 0} + h[g]) >> (u64x4){0, 16, 32, 48};
            i64x4 keep = (i64x4)(field & 0xffff) >= (int64_t)cut;
            f32x4 xv;
            memcpy(&xv, x + 16 * blk + 4 * g, sizeof xv);
            f32x4 yv = __builtin_convertvector(__builtin_convertvector(xv, f64x4) * scale, f32x4);
            yv = (f32x4)((i32x4)yv & __builtin_convertvector(keep, i32x4));
            memcpy(y + 16 * blk + 4 * g, &yv, sizeof yv);
        }
    }
    for (int64_t i = 16 * blocks; i < n; i++) {
        uint64_t h = elastic_rng_at(key, (uint64_t)(i / 4));
        y[i] = (uint32_t)(h >> (16 * (i % 4)) & 0xffff) >= cut ? (float)(x[i] * scale) : 0.0f;
    }
}

/* ------------------------------------------------------------------ table */

extern const elastic_cpu_kernels EK_TABLE;
const elastic_cpu_kernels EK_TABLE = {
    .isa = EK_STR(ELASTIC_CPU_ISA_NAME),
    .gather = k_gather,
    .add = k_add,
    .masked_mean = k_masked_mean,
    .layer_norm = k_layer_norm,
    .linear = k_linear,
    .gelu = k_gelu,
    .attention = k_attention,
    .attention_probs = k_attention_probs,
    .attention_mix = k_attention_mix,
    .pkm = k_pkm,
    .topk = k_topk,
    .score_topk = k_score_topk,
    .ffn = k_ffn,
    .aggregate = k_aggregate,
    .dispatch = k_dispatch,
    .cross_entropy = k_cross_entropy,
    .linear_tn = k_linear_tn,
    .linear_at = k_linear_at,
    .gelu_grad = k_gelu_grad,
    .attention_grad = k_attention_grad,
    .dropout = k_dropout,
    .layer_norm_grad_rows = k_layer_norm_grad_rows,
    .pkm_grad_rows = k_pkm_grad_rows,
    .packed_floats = lin_packed_floats,
    .pack = lin_pack,
    .linear_packed = lin_run_packed,
    .score_topk_packed = k_score_topk_packed,
    .ffn_packed = k_ffn_packed,
    .aggregate_packed = k_aggregate_packed,
    .dispatch_packed = k_dispatch_packed,
};
