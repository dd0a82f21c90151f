/*
 * test_util.h - helpers shared by the unit tests: a counter-based random
 * generator with printed seeds, random fills, and tolerant comparisons.
 */
#ifndef ELASTIC_TEST_UTIL_H
#define ELASTIC_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The seed of a test run: ELASTIC_TEST_SEED from the environment, else 1234.
 * Printed once so any failure can be replayed. */
uint64_t tu_seed(void);

/* 1 when ELASTIC_TEST_QUICK=1 (ci/valgrind.sh; ci/cross.sh under QEMU): a
 * test may then skip a learning run (hundreds of steps), saying why. */
int tu_quick(void);

/* Counter-based generator: value number i of stream s (splitmix64 of both). */
uint64_t tu_hash(uint64_t seed, uint64_t stream, uint64_t i);
/* Uniform in [lo, hi). */
float tu_uniform(uint64_t seed, uint64_t stream, uint64_t i, float lo, float hi);
void tu_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, float lo, float hi);
void tu_fill_int(int32_t *x, size_t n, uint64_t seed, uint64_t stream, int32_t lo, int32_t hi);

/* The fast CPU kernel tables this machine runs (generic, avx2, avx512, neon:
 * those built and supported) into out[]; returns their count. */
struct elastic_cpu_kernels;
int tu_fast_tables(const struct elastic_cpu_kernels *out[4]);

/* Removes a test's temporary directory; 0, or 1 (and a message naming it)
 * when that fails, e.g. because a test left a file in it. */
int tu_remove_empty_dir(const char *dir);

/* Largest |a-b| / (atol + rtol*|b|) over n elements; <= 1 means within
 * tolerance. NaN in either gives INFINITY. *worst is the index of the max. */
double tu_max_violation(const float *got, const float *ref, size_t n, double atol, double rtol,
                        size_t *worst);
/* Relative L2 error ||got - ref|| / ||ref||. */
double tu_rel_l2(const float *got, const float *ref, size_t n);

/* For the training tests: a small model of spec section 1's shape (I = 40,
 * N = 16, d = 16, ...) with random weights, "elastic" or "sasrec"; a CPU
 * trainer for it; and a batch of 8 histories (lengths 1..10) whose target
 * is the id after each history's last item (a rule a model can learn). */
struct elastic_model;
struct elastic_trainer;
struct elastic_model *tu_small_model(const char *kind, uint64_t seed);
struct elastic_trainer *tu_trainer(struct elastic_model *m, float dropout, int threads);
typedef struct tu_batch {
    int32_t items[8 * 10];
    int64_t offsets[9];
    int32_t targets[8];
} tu_batch;
void tu_make_batch(tu_batch *b, uint64_t seed, int64_t step);

#endif
