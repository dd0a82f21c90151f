/*
 * test_ops.c - every op of the reference kernels against values derived by
 * hand (the derivation is in the comments), and every fast kernel table on
 * the same small cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "test_util.h"

/* The tables to check: the reference and each fast table this CPU runs. */
static const elastic_cpu_kernels *tables[4];
static int n_tables;

static int setup(void **state)
{
    (void)state;
    n_tables = 0;
    tables[n_tables++] = &elastic_cpu_kernels_reference;
    for (int isa = ELASTIC_CPU_ISA_GENERIC; isa <= ELASTIC_CPU_ISA_NEON; isa++) {
        const elastic_cpu_kernels *k = elastic_cpu_kernels_for((elastic_cpu_isa)isa);
        if (k) tables[n_tables++] = k;
    }
    return 0;
}

#define NEAR(got, want) assert_float_equal((got), (want), 1e-6 + 1e-6 * fabs((double)(want)))

static void test_gather(void **state)
{
    (void)state;
    const float table[6] = {0, 0, 1, 2, 3, 4}; /* rows: [0 0] [1 2] [3 4] */
    const int32_t idx[3] = {2, 0, 1};
    for (int t = 0; t < n_tables; t++) {
        float out[6];
        tables[t]->gather(table, 2, idx, 3, out, 1);
        const float want[6] = {3, 4, 0, 0, 1, 2};
        assert_memory_equal(out, want, sizeof want);
    }
}

static void test_add_broadcast(void **state)
{
    (void)state;
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {10, 20};
    for (int t = 0; t < n_tables; t++) {
        float out[6];
        tables[t]->add(a, b, out, 6, 2, 2);
        const float want[6] = {11, 22, 13, 24, 15, 26};
        assert_memory_equal(out, want, sizeof want);
    }
}

static void test_masked_mean(void **state)
{
    (void)state;
    /* x [2, 3, 2]; user 0 has 2 valid rows, user 1 has 3. */
    const float x[12] = {1, 2, 3, 4, 100, 100, /* mean of rows 0,1: [2, 3] */
                         1, 1, 2, 2, 6,   9};  /* mean of all: [3, 4] */
    const int32_t len[2] = {2, 3};
    for (int t = 0; t < n_tables; t++) {
        float out[4];
        tables[t]->masked_mean(x, len, out, 2, 3, 2, 1);
        NEAR(out[0], 2);
        NEAR(out[1], 3);
        NEAR(out[2], 3);
        NEAR(out[3], 4);
    }
}

static void test_layer_norm(void **state)
{
    (void)state;
    /* [1,2,3,4]: mean 2.5, biased variance 1.25; weight 2, bias 1. */
    const float x[4] = {1, 2, 3, 4}, w[4] = {2, 2, 2, 2}, b[4] = {1, 1, 1, 1};
    double inv = 1.0 / sqrt(1.25 + 1e-5);
    for (int t = 0; t < n_tables; t++) {
        float out[4];
        tables[t]->layer_norm(x, w, b, out, 1, 4, 1e-5f, 1);
        for (int j = 0; j < 4; j++)
            NEAR(out[j], (x[j] - 2.5) * inv * 2 + 1);
    }
}

static void test_linear(void **state)
{
    (void)state;
    /* x [2,3] times W [2,3]^T plus bias [2]:
     * row 0: [1,2,3].[1,0,-1] = -2 (+0.5), [1,2,3].[2,1,0] = 4 (-1)
     * row 1: [4,5,6].[1,0,-1] = -2 (+0.5), [4,5,6].[2,1,0] = 13 (-1) */
    const float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, -1, 2, 1, 0}, bias[2] = {0.5f, -1};
    for (int t = 0; t < n_tables; t++) {
        float out[4];
        tables[t]->linear(x, w, bias, out, 2, 2, 3, 1);
        const float want[4] = {-1.5f, 3, -1.5f, 12};
        assert_memory_equal(out, want, sizeof want);
        tables[t]->linear(x, w, NULL, out, 2, 2, 3, 2);
        const float want0[4] = {-2, 4, -2, 13};
        assert_memory_equal(out, want0, sizeof want0);
    }
}

static void test_gelu(void **state)
{
    (void)state;
    /* 0.5 z (1 + erf(z / sqrt 2)): Phi(1) = 0.8413447460685429. */
    const float x[3] = {0, 1, -1};
    for (int t = 0; t < n_tables; t++) {
        float out[3];
        tables[t]->gelu(x, out, 3, 1);
        NEAR(out[0], 0);
        NEAR(out[1], 0.8413447460685429);
        NEAR(out[2], -0.15865525393145707);
    }
}

static void test_attention(void **state)
{
    (void)state;
    /* One head, d=2. Query [1,0], keys [1,0] and [0,0]: logits 1/sqrt2 and 0,
     * weights w0 = 1/(1+e^{-1/sqrt2}), w1 = 1 - w0; values [1,2], [3,4]. */
    const float q[2] = {1, 0}, k[4] = {1, 0, 0, 0}, v[4] = {1, 2, 3, 4};
    double w0 = 1.0 / (1.0 + exp(-1.0 / sqrt(2.0))), w1 = 1.0 - w0;
    const int32_t one[1] = {1};
    for (int t = 0; t < n_tables; t++) {
        float out[4];
        tables[t]->attention(q, k, v, NULL, out, 1, 1, 2, 2, 1, 0, 1);
        NEAR(out[0], w0 * 1 + w1 * 3);
        NEAR(out[1], w0 * 2 + w1 * 4);
        /* key_len 1 masks key 1: the output is value 0 exactly. */
        tables[t]->attention(q, k, v, one, out, 1, 1, 2, 2, 1, 0, 1);
        NEAR(out[0], 1);
        NEAR(out[1], 2);
        /* Causal, two queries (both [1,0]): query 1 sees key 1 only, query 0
         * sees both keys. */
        const float q2[4] = {1, 0, 1, 0};
        tables[t]->attention(q2, k, v, NULL, out, 1, 2, 2, 2, 1, 1, 1);
        NEAR(out[0], w0 * 1 + w1 * 3);
        NEAR(out[2], 3);
        NEAR(out[3], 4);
        /* Causal with key_len 1: query 1 sees no key and gets zeros. */
        tables[t]->attention(q2, k, v, one, out, 1, 2, 2, 2, 1, 1, 1);
        NEAR(out[0], 1);
        assert_true(out[2] == 0.0f && out[3] == 0.0f);
    }
}

static void test_pkm(void **state)
{
    (void)state;
    /* m=2, c=2 (halves of size 1), one expert, d=2.
     * subkeys[0] = [[1],[2]], subkeys[1] = [[3],[-1]]; query [1, 1]:
     * sa = [1, 2], sb = [3, -1].
     * t=1: A={1}, B={0}: slot 1*2+0 = 2, weight 1 -> values[2].
     * t=2: pair scores (0,0)=4 (0,1)=0 (1,0)=5 (1,1)=1; best two: slot 2 (5)
     * and slot 0 (4); weights e/(e+1) and 1/(e+1). */
    const float subkeys[4] = {1, 2, 3, -1};
    const float values[8] = {1, 0, 0, 1, 10, 20, 7, 7};
    const float query[2] = {1, 1};
    double e = exp(1.0), wa = e / (e + 1), wb = 1 / (e + 1);
    for (int t = 0; t < n_tables; t++) {
        float out[2];
        assert_int_equal(tables[t]->pkm(query, subkeys, values, out, 1, 1, 2, 2, 1, 2, 1), 0);
        NEAR(out[0], 10);
        NEAR(out[1], 20);
        assert_int_equal(tables[t]->pkm(query, subkeys, values, out, 1, 1, 2, 2, 2, 2, 1), 0);
        NEAR(out[0], wa * 10 + wb * 1);
        NEAR(out[1], wa * 20 + wb * 0);
        /* Ties: query [0, 0] makes every score 0; t=1 keeps x=0, y=0: slot 0. */
        const float zero[2] = {0, 0};
        assert_int_equal(tables[t]->pkm(zero, subkeys, values, out, 1, 1, 2, 2, 1, 2, 1), 0);
        NEAR(out[0], 1);
        NEAR(out[1], 0);
    }
}

static void test_topk(void **state)
{
    (void)state;
    /* Items 1..5 with scores; item 3 ties item 2; item 5 is NaN. */
    const float s[5] = {0.5f, 0.9f, 0.9f, 0.1f, NAN};
    const int32_t ex[2] = {3, 0}; /* leave out item 3; 0 is no item */
    for (int t = 0; t < n_tables; t++) {
        int32_t ids[5];
        float vals[5];
        tables[t]->topk(s, NULL, 0, ids, vals, 1, 5, 3, 1);
        assert_int_equal(ids[0], 2); /* tie 0.9: the smaller id first */
        assert_int_equal(ids[1], 3);
        assert_int_equal(ids[2], 1);
        tables[t]->topk(s, ex, 2, ids, vals, 1, 5, 3, 1);
        assert_int_equal(ids[0], 2);
        assert_int_equal(ids[1], 1);
        assert_int_equal(ids[2], 4);
        NEAR(vals[2], 0.1f);
        /* K = 5 with one exclusion: NaN ranks last; the 5th place is empty. */
        tables[t]->topk(s, ex, 2, ids, vals, 1, 5, 5, 1);
        assert_int_equal(ids[3], 5);
        assert_int_equal(ids[4], 0);
        assert_true(isinf(vals[4]) && vals[4] < 0);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather),      cmocka_unit_test(test_add_broadcast),
        cmocka_unit_test(test_masked_mean), cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_linear),      cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_attention),   cmocka_unit_test(test_pkm),
        cmocka_unit_test(test_topk),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
