/*
 * cpu_attention_grad.h - the attention backward, one body for the reference
 * (cpu_grad.c, compiled for the baseline ISA, libm's expf) and the fast
 * kernel tables (cpu_kernels.c, compiled once per ISA, vexp): each includes
 * this and passes its own exp_row, the one step in which they differ.
 *
 * Per user and head, per query: the softmax weights p_j recomputed from the
 * scores, out = sum_j p_j v_j, dp_j = dy . v_j, ds_j = p_j (dp_j - dy . out)
 * scale; then dq = sum_j ds_j k_j, dk_j += ds_j q, dv_j += p_j dy. Float32
 * throughout, with the loops over the head width innermost so that they
 * vectorise. Each (user, head) is one thread's: no races, and the result does
 * not depend on the thread count.
 */
#ifndef ELASTIC_CPU_ATTENTION_GRAD_H
#define ELASTIC_CPU_ATTENTION_GRAD_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* p[j] = exp(p[j] - max) for j in [first, valid); returns their sum. */
typedef float (*attention_grad_exp_row)(float *p, int64_t first, int64_t valid, float max);

/* Returns 0, or -1 when a thread's scratch cannot be allocated. */
static inline int attention_grad_run(const float *q, const float *k, const float *v,
                                     const float *dy, const int32_t *key_len, float *dq, float *dk,
                                     float *dv, int64_t batch, int64_t nq, int64_t nk, int64_t d,
                                     int heads, int causal, int threads,
                                     attention_grad_exp_row exp_row)
{
    int64_t dh = d / heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    int failed = 0;
    memset(dk, 0, (size_t)(batch * nk * d) * sizeof(float));
    memset(dv, 0, (size_t)(batch * nk * d) * sizeof(float));
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *p = malloc((size_t)(nk + 2 * dh) * sizeof(float));
        float *acc_q = p ? p + nk : NULL, *out = p ? acc_q + dh : NULL;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * heads; bh++) {
            if (!p) {
                failed = 1;
                continue;
            }
            int64_t b = bh / heads, h = bh % heads;
            int64_t valid = key_len ? (key_len[b] < nk ? key_len[b] : nk) : nk;
            const float *kb = k + b * nk * d + h * dh, *vb = v + b * nk * d + h * dh;
            float *dkb = dk + b * nk * d + h * dh, *dvb = dv + b * nk * d + h * dh;
            for (int64_t i = 0; i < nq; i++) {
                const float *qi = q + (b * nq + i) * d + h * dh;
                const float *gi = dy + (b * nq + i) * d + h * dh;
                float *dqi = dq + (b * nq + i) * d + h * dh;
                int64_t first = causal ? i : 0;
                memset(dqi, 0, (size_t)dh * sizeof(float));
                if (first >= valid) continue;
                float max = -INFINITY;
                for (int64_t j = first; j < valid; j++) {
                    const float *kj = kb + j * d;
                    float s = 0.0f;
#pragma omp simd reduction(+ : s)
                    for (int64_t c = 0; c < dh; c++)
                        s += qi[c] * kj[c];
                    p[j] = s * scale;
                    max = p[j] > max ? p[j] : max;
                }
                float inv = 1.0f / exp_row(p, first, valid, max);
                for (int64_t c = 0; c < dh; c++)
                    out[c] = acc_q[c] = 0.0f;
                for (int64_t j = first; j < valid; j++) {
                    p[j] *= inv;
                    const float *vj = vb + j * d;
                    float pj = p[j];
#pragma omp simd
                    for (int64_t c = 0; c < dh; c++)
                        out[c] += pj * vj[c];
                }
                float gdot = 0.0f; /* sum_j p_j dp_j = dy . out */
#pragma omp simd reduction(+ : gdot)
                for (int64_t c = 0; c < dh; c++)
                    gdot += gi[c] * out[c];
                for (int64_t j = first; j < valid; j++) {
                    const float *kj = kb + j * d, *vj = vb + j * d;
                    float *dkj = dkb + j * d, *dvj = dvb + j * d;
                    float dp = 0.0f;
#pragma omp simd reduction(+ : dp)
                    for (int64_t c = 0; c < dh; c++)
                        dp += gi[c] * vj[c];
                    float ds = p[j] * (dp - gdot) * scale, pj = p[j];
#pragma omp simd
                    for (int64_t c = 0; c < dh; c++) {
                        dvj[c] += pj * gi[c];
                        dkj[c] += ds * qi[c];
                        acc_q[c] += ds * kj[c];
                    }
                }
                memcpy(dqi, acc_q, (size_t)dh * sizeof(float));
            }
        }
        free(p);
    }
    return failed ? -1 : 0;
}

#endif
