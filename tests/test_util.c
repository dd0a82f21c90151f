/* test_util.c - see test_util.h. */
#include "test_util.h"

#include "cpu_kernels.h"
#include "elastic.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int tu_quick(void)
{
    const char *env = getenv("ELASTIC_TEST_QUICK");
    return env && env[0] == '1' && env[1] == '\0';
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
    for (size_t i = 0; i < n; i++)
        x[i] = tu_uniform(seed, stream, i, lo, hi);
}

void tu_fill_int(int32_t *x, size_t n, uint64_t seed, uint64_t stream, int32_t lo, int32_t hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - lo + 1);
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (int32_t)(tu_hash(seed, stream, i) % span);
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

/* Training helpers: failures abort the test program (they are set-up, not
 * the behaviour under test). */
#define TU_CHECK(a, b)                                                                             \
    do {                                                                                           \
        if ((a) != (b)) {                                                                          \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, elastic_last_error());              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

elastic_model *tu_small_model(const char *kind, uint64_t seed)
{
    elastic_config c;
    elastic_config_default(&c);
    TU_CHECK(elastic_config_set(&c, "model", kind), ELASTIC_OK);
    c.num_items = 40;
    c.max_len = 16;
    c.hidden = 16;
    c.heads = 2;
    c.layers = 2;
    c.experts = 4;
    c.ffn = 32;
    c.mem_subkeys = 8;
    c.mem_key = 8;
    c.mem_topk = 3;
    TU_CHECK(elastic_config_validate(&c), ELASTIC_OK);
    elastic_model *m = NULL;
    TU_CHECK(elastic_model_init_random(&m, &c, seed), ELASTIC_OK);
    return m;
}

elastic_trainer *tu_trainer(elastic_model *m, float dropout, int threads)
{
    elastic_train_options o;
    elastic_train_options_default(&o);
    o.dropout = dropout;
    o.lr = 3e-3;
    o.session.num_threads = threads;
    elastic_trainer *tr = NULL;
    TU_CHECK(elastic_trainer_init(&tr, m, &o), ELASTIC_OK);
    return tr;
}

/* A batch of 8 histories whose target is a function of the last item. */
void tu_make_batch(tu_batch *b, uint64_t seed, int64_t step)
{
    b->offsets[0] = 0;
    for (int u = 0; u < 8; u++) {
        int len = 1 + (int)(tu_hash(seed, 1, (uint64_t)(step * 8 + u)) % 10);
        for (int i = 0; i < len; i++)
            b->items[b->offsets[u] + i] =
                1 + (int32_t)(tu_hash(seed, 2, (uint64_t)(step * 80 + u * 10 + i)) % 40);
        b->offsets[u + 1] = b->offsets[u] + len;
        int32_t last = b->items[b->offsets[u + 1] - 1];
        b->targets[u] = last % 40 + 1; /* the planted rule: next id after the last */
    }
}

int tu_fast_tables(const elastic_cpu_kernels *out[4])
{
    const elastic_cpu_isa isas[4] = {ELASTIC_CPU_ISA_GENERIC, ELASTIC_CPU_ISA_AVX2,
                                     ELASTIC_CPU_ISA_AVX512, ELASTIC_CPU_ISA_NEON};
    int n = 0;
    for (int i = 0; i < 4; i++)
        if ((out[n] = elastic_cpu_kernels_for(isas[i]))) n++;
    return n;
}

int tu_remove_empty_dir(const char *dir)
{
    if (rmdir(dir) == 0) return 0;
    fprintf(stderr, "cannot remove %s (%s): did a test leave a file in it?\n", dir,
            strerror(errno));
    return 1;
}
