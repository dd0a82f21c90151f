/*
 * rng.h - the library's reproducible random numbers.
 *
 * Counter-based: value i of stream s under a seed is a pure function of the
 * three (splitmix64 hashing), so results never depend on thread count or on
 * the order in which values are drawn.
 */
#ifndef ELASTIC_CORE_RNG_H
#define ELASTIC_CORE_RNG_H

#include <stdint.h>

uint64_t elastic_rng_u64(uint64_t seed, uint64_t stream, uint64_t i);

/* The splitmix64 finaliser everything above is built from. */
static inline uint64_t elastic_rng_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* elastic_rng_u64 in two steps, for loops over i: the stream's key once,
 * then elastic_rng_at(key, i) == elastic_rng_u64(seed, stream, i), one hash
 * per value instead of three. */
static inline uint64_t elastic_rng_key(uint64_t seed, uint64_t stream)
{
    return elastic_rng_mix(seed ^ elastic_rng_mix(stream));
}
static inline uint64_t elastic_rng_at(uint64_t key, uint64_t i)
{
    return elastic_rng_mix(key + i);
}
/* Uniform in (0, 1): never 0, so log() is safe. */
double elastic_rng_uniform(uint64_t seed, uint64_t stream, uint64_t i);
/* Standard normal (Box-Muller on two uniforms). */
double elastic_rng_normal(uint64_t seed, uint64_t stream, uint64_t i);

/* Dropout keeps an element whose 16-bit uniform is >= this: round(p * 65536). */
uint32_t elastic_dropout_threshold(float p);

#endif
