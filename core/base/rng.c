/* rng.c - counter-based random numbers (see rng.h). */
#include "base/rng.h"

#include <math.h>

uint64_t elastic_rng_u64(uint64_t seed, uint64_t stream, uint64_t i)
{
    return elastic_rng_at(elastic_rng_key(seed, stream), i);
}

double elastic_rng_uniform(uint64_t seed, uint64_t stream, uint64_t i)
{
    return ((double)(elastic_rng_u64(seed, stream, i) >> 11) + 0.5) * 0x1.0p-53;
}

double elastic_rng_normal(uint64_t seed, uint64_t stream, uint64_t i)
{
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = elastic_rng_uniform(seed, stream, 2 * i);
    double u2 = elastic_rng_uniform(seed, stream, 2 * i + 1);
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

uint32_t elastic_dropout_threshold(float p)
{
    double t = (double)p * 65536.0 + 0.5;
    return t <= 0 ? 0 : t >= 65536.0 ? 65536u : (uint32_t)t;
}
