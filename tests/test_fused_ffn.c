/*
 * test_fused_ffn.c - the fused FFN block (op FFN: z + fc2(GELU(fc1(LN(z))))
 * a chunk of rows at a time):
 *   - kernel level, every fast CPU table: ffn equals layer_norm, linear,
 *     gelu, linear and add run one after the other on the whole input, bit
 *     for bit, for one row, for rows spanning several chunks and odd widths,
 *     with 1 and 2 threads;
 *   - session level: a model at n = 1024 has no [B, n, 4d] tensor in
 *     its plan (the largest is [B, n, d]-sized), and its user vectors match
 *     the float64 reference session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "elastic.h"
#include "test_util.h"

static void check_shape(const elastic_cpu_kernels *k, int64_t rows, int64_t d, int64_t f,
                        int threads, uint64_t seed)
{
    float *z = malloc(sizeof(float) * (size_t)(rows * d)), *lw = malloc(sizeof(float) * (size_t)d);
    float *lb = malloc(sizeof(float) * (size_t)d), *w1 = malloc(sizeof(float) * (size_t)(f * d));
    float *b1 = malloc(sizeof(float) * (size_t)f), *w2 = malloc(sizeof(float) * (size_t)(d * f));
    float *b2 = malloc(sizeof(float) * (size_t)d), *a = malloc(sizeof(float) * (size_t)(rows * d));
    float *h = malloc(sizeof(float) * (size_t)(rows * f)),
          *g = malloc(sizeof(float) * (size_t)(rows * f));
    float *y = malloc(sizeof(float) * (size_t)(rows * d)),
          *want = malloc(sizeof(float) * (size_t)(rows * d));
    float *got = malloc(sizeof(float) * (size_t)(rows * d));
    tu_fill_uniform(z, (size_t)(rows * d), seed, 1, -2, 2);
    tu_fill_uniform(lw, (size_t)d, seed, 2, 0.5f, 1.5f);
    tu_fill_uniform(lb, (size_t)d, seed, 3, -0.2f, 0.2f);
    tu_fill_uniform(w1, (size_t)(f * d), seed, 4, -0.3f, 0.3f);
    tu_fill_uniform(b1, (size_t)f, seed, 5, -0.2f, 0.2f);
    tu_fill_uniform(w2, (size_t)(d * f), seed, 6, -0.3f, 0.3f);
    tu_fill_uniform(b2, (size_t)d, seed, 7, -0.2f, 0.2f);
    /* the unfused block, as the graph runs it without FFN */
    k->layer_norm(z, lw, lb, a, rows, d, 1e-5f, threads);
    k->linear(a, w1, b1, h, rows, f, d, threads);
    k->gelu(h, g, rows * f, threads);
    k->linear(g, w2, b2, y, rows, d, f, threads);
    k->add(z, y, want, rows * d, rows * d, threads);
    memset(got, 0xff, sizeof(float) * (size_t)(rows * d));
    assert_int_equal(k->ffn(z, lw, lb, w1, b1, w2, b2, got, rows, d, f, 1e-5f, threads), 0);
    for (int64_t i = 0; i < rows * d; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s rows=%lld d=%lld f=%lld threads=%d: element %lld is %.9g, want %.9g",
                     k->isa, (long long)rows, (long long)d, (long long)f, threads, (long long)i,
                     (double)got[i], (double)want[i]);
    free(z);
    free(lw);
    free(lb);
    free(w1);
    free(b1);
    free(w2);
    free(b2);
    free(a);
    free(h);
    free(g);
    free(y);
    free(want);
    free(got);
}

static void test_kernel_equals_unfused(void **state)
{
    (void)state;
    const elastic_cpu_kernels *tables[] = {elastic_cpu_kernels_for(ELASTIC_CPU_ISA_GENERIC),
                                           elastic_cpu_kernels_for(ELASTIC_CPU_ISA_AVX2),
                                           elastic_cpu_kernels_for(ELASTIC_CPU_ISA_AVX512)};
    int ran = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        if (!tables[t]) continue;
        ran++;
        for (int threads = 1; threads <= 2; threads++) {
            check_shape(tables[t], 1, 64, 256, threads, tu_seed());
            check_shape(tables[t], 9000, 16, 64, threads, tu_seed() + 1); /* three chunks */
            check_shape(tables[t], 4200, 7, 20, threads, tu_seed() + 2);  /* odd widths */
            check_shape(tables[t], 300, 64, 256, threads, tu_seed() + 3);
        }
    }
    assert_true(ran >= 1);
}

static void test_session_memory(void **state)
{
    (void)state;
    enum { N = 1024, D = 32 };
    const char *kinds[2] = {"elastic", "sasrec"};
    for (int m = 0; m < 2; m++) {
        elastic_config c;
        elastic_config_default(&c);
        c.model = m ? ELASTIC_MODEL_KIND_SASREC : ELASTIC_MODEL_KIND_ELASTIC;
        c.num_items = 100;
        c.max_len = N;
        c.hidden = D;
        c.heads = 2;
        c.experts = 4;
        c.mem_subkeys = 6;
        c.mem_topk = 3;
        elastic_model *model = NULL;
        assert_int_equal(elastic_model_init_random(&model, &c, tu_seed()), ELASTIC_OK);
        int32_t *items = malloc(sizeof *items * 2 * N);
        tu_fill_int(items, 2 * N, tu_seed(), 9, 1, 100);
        int64_t offs[3] = {0, N, 2 * N - 100};
        float hu[2 * D], want[2 * D];
        elastic_session_options o;
        elastic_session_options_default(&o);
        o.backend = "cpu";
        elastic_session *s = NULL, *ref = NULL;
        assert_int_equal(elastic_session_init(&s, model, &o), ELASTIC_OK);
        assert_int_equal(elastic_session_user_vectors(s, items, offs, 2, hu), ELASTIC_OK);
        elastic_run_stats st;
        assert_int_equal(elastic_session_last_stats(s, &st), ELASTIC_OK);
        size_t bnd = (size_t)2 * N * D * sizeof(float);
        print_message("# %s n=%d: largest tensor %zu bytes, [B,n,d] %zu, arena %zu\n", kinds[m], N,
                      st.max_tensor_bytes, bnd, st.arena_bytes);
        assert_true(st.max_tensor_bytes <= bnd);
        /* the unfused FFN alone holds z, fc1's and GELU's [B,n,4d]: 9 [B,n,d] */
        assert_true(st.arena_bytes < 6 * bnd);
        o.backend_options = "cpu.isa=reference";
        assert_int_equal(elastic_session_init(&ref, model, &o), ELASTIC_OK);
        assert_int_equal(elastic_session_user_vectors(ref, items, offs, 2, want), ELASTIC_OK);
        for (int i = 0; i < 2 * D; i++)
            assert_true(fabsf(hu[i] - want[i]) <= 1e-4f);
        elastic_session_free(s);
        elastic_session_free(ref);
        elastic_model_free(model);
        free(items);
    }
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_equals_unfused),
        cmocka_unit_test(test_session_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
