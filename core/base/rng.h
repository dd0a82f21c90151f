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
/* Uniform in (0, 1): never 0, so log() is safe. */
double elastic_rng_uniform(uint64_t seed, uint64_t stream, uint64_t i);
/* Standard normal (Box-Muller on two uniforms). */
double elastic_rng_normal(uint64_t seed, uint64_t stream, uint64_t i);

/* Dropout keeps an element whose 16-bit uniform is >= this: round(p * 65536). */
uint32_t elastic_dropout_threshold(float p);

#endif
