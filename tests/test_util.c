/* test_util.c - see test_util.h. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t tu_seed(void)
{
    static uint64_t seed;
    static int done;
    if (!done) {
        const char *env = getenv("ELASTIC_TEST_SEED");
        seed = env ? strtoull(env, NULL, 10) : 1234;
        printf("# test seed %llu (set ELASTIC_TEST_SEED to replay)\n", (unsigned long long)seed);
        done = 1;
    }
    return seed;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t tu_hash(uint64_t seed, uint64_t stream, uint64_t i)
{
    return splitmix64(splitmix64(seed ^ splitmix64(stream)) + i);
}

float tu_uniform(uint64_t seed, uint64_t stream, uint64_t i, float lo, float hi)
{
    double u = (double)(tu_hash(seed, stream, i) >> 11) * 0x1.0p-53;
    return (float)(lo + (hi - lo) * u);
}

void tu_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = tu_uniform(seed, stream, i, lo, hi);
}

void tu_fill_int(int32_t *x, size_t n, uint64_t seed, uint64_t stream, int32_t lo, int32_t hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
    for (size_t i = 0; i < n; i++) x[i] = lo + (int32_t)(tu_hash(seed, stream, i) % span);
}

double tu_max_violation(const float *got, const float *ref, size_t n, double atol, double rtol,
                        size_t *worst)
{
    double max = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double v;
        if (isnan(got[i]) || isnan(ref[i]))
            v = INFINITY;
        else
            v = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs((double)ref[i]));
        if (v > max || (i == 0 && v == INFINITY)) {
            max = v;
            at = i;
        }
    }
    if (worst) *worst = at;
    return max;
}

double tu_rel_l2(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)got[i] - ref[i];
        num += e * e;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
