/*
 * cpu_ln_grad_rows.h - LayerNorm's backward per row (dx, and each row's
 * mean and 1/std in stat [rows, 2]), one body for the reference table
 * (cpu_grad.c: double sums in element order) and the fast tables
 * (cpu_kernels.c, compiled once per ISA: the same sums in vector lanes).
 * The includer defines LN_GRAD_SUMS(...) before including this: nothing,
 * or an OpenMP simd reduction over the sums it names.
 */
#ifndef ELASTIC_CPU_LN_GRAD_ROWS_H
#define ELASTIC_CPU_LN_GRAD_ROWS_H

#ifndef LN_GRAD_SUMS
#error "define LN_GRAD_SUMS(...) before including cpu_ln_grad_rows.h"
#endif

#include <math.h>
#include <stdint.h>

static void ln_grad_rows(const float *x, const float *weight, const float *dy, float *dx,
                         double *stat, int64_t rows, int64_t d, float eps, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *gr = dy + r * d;
        double mean = 0, var = 0;
        LN_GRAD_SUMS(mean)
        for (int64_t j = 0; j < d; j++)
            mean += xr[j];
        mean /= (double)d;
        LN_GRAD_SUMS(var)
        for (int64_t j = 0; j < d; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        double inv = 1.0 / sqrt(var / (double)d + (double)eps);
        stat[2 * r] = mean;
        stat[2 * r + 1] = inv;
        /* dx = inv * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight */
        double mg = 0, mgx = 0;
        LN_GRAD_SUMS(mg, mgx)
        for (int64_t j = 0; j < d; j++) {
            double g = (double)gr[j] * weight[j], xh = (xr[j] - mean) * inv;
            mg += g;
            mgx += g * xh;
        }
        mg /= (double)d;
        mgx /= (double)d;
#pragma omp simd
        for (int64_t j = 0; j < d; j++) {
            double g = (double)gr[j] * weight[j], xh = (xr[j] - mean) * inv;
            dx[r * d + j] = (float)(inv * (g - mg - xh * mgx));
        }
    }
}

#endif
