/*
 * test_fused_attention.c - ELASTIC's fused attentions (ops AGGREGATE and
 * DISPATCH, a chunk of positions at a time):
 *   - kernel level, every fast CPU table: aggregate equals layer_norm,
 *     linear, linear and attention, and dispatch equals layer_norm, linear,
 *     attention, linear and add, run one after the other on whole tensors,
 *     bit for bit: one position, positions spanning several chunks, many
 *     short users per chunk with padding, odd widths, heads wider than the
 *     vector path, 1 and 2 threads;
 *   - session level: an ELASTIC model at n = 4096 (1024 under emulation) holds no more than two
 *     [B, n, d] tensors and a chunk at once, and its user vectors match the
 *     float64 reference session.
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

static float *filled(int64_t n, uint64_t seed, uint64_t stream, float lo, float hi)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    assert_non_null(p);
    tu_fill_uniform(p, (size_t)n, seed, stream, lo, hi);
    return p;
}

static void same_bits(const float *got, const float *want, int64_t n, const char *what,
                      const elastic_cpu_kernels *k, int64_t batch, int64_t len, int threads)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s %s B=%lld n=%lld threads=%d: element %lld is %.9g, want %.9g", what,
                     k->isa, (long long)batch, (long long)len, threads, (long long)i,
                     (double)got[i], (double)want[i]);
}

/* aggregate vs the separate ops: m queries over n positions of width d. */
static void check_aggregate(const elastic_cpu_kernels *k, int64_t B, int64_t m, int64_t n,
                            int64_t d, int heads, int masked, int threads, uint64_t seed)
{
    float *q = filled(B * m * d, seed, 1, -2, 2), *x = filled(B * n * d, seed, 2, -2, 2);
    float *lw = filled(d, seed, 3, 0.5f, 1.5f), *lb = filled(d, seed, 4, -0.2f, 0.2f);
    float *wk = filled(d * d, seed, 5, -0.3f, 0.3f), *bk = filled(d, seed, 6, -0.2f, 0.2f);
    float *wv = filled(d * d, seed, 7, -0.3f, 0.3f), *bv = filled(d, seed, 8, -0.2f, 0.2f);
    float *a = filled(B * n * d, seed, 9, 0, 0), *kk = filled(B * n * d, seed, 9, 0, 0);
    float *vv = filled(B * n * d, seed, 9, 0, 0), *want = filled(B * m * d, seed, 9, 0, 0);
    float *got = filled(B * m * d, seed, 9, 0, 0);
    int32_t *len = malloc(sizeof *len * (size_t)B);
    assert_non_null(len);
    for (int64_t b = 0; b < B; b++) /* some users padded, one with no visible key */
        len[b] = (int32_t)(b == 1 ? 0 : 1 + (int64_t)(tu_hash(seed, 10, (uint64_t)b) % n));
    const int32_t *kl = masked ? len : NULL;
    k->layer_norm(x, lw, lb, a, B * n, d, 1e-5f, threads);
    k->linear(a, wk, bk, kk, B * n, d, d, threads);
    k->linear(a, wv, bv, vv, B * n, d, d, threads);
    k->attention(q, kk, vv, kl, want, B, m, n, d, heads, 0, threads);
    memset(got, 0xff, sizeof(float) * (size_t)(B * m * d));
    assert_int_equal(
        k->aggregate(q, x, lw, lb, wk, bk, wv, bv, kl, got, B, m, n, d, heads, 1e-5f, threads), 0);
    same_bits(got, want, B * m * d, "aggregate", k, B, n, threads);
    free(q), free(x), free(lw), free(lb), free(wk), free(bk), free(wv), free(bv);
    free(a), free(kk), free(vv), free(want), free(got), free(len);
}

/* dispatch vs the separate ops: n positions querying m keys per user. */
static void check_dispatch(const elastic_cpu_kernels *k, int64_t B, int64_t n, int64_t m, int64_t d,
                           int heads, int threads, uint64_t seed)
{
    float *x = filled(B * n * d, seed, 1, -2, 2), *kp = filled(B * m * d, seed, 2, -2, 2);
    float *vp = filled(B * m * d, seed, 3, -1, 1);
    float *lw = filled(d, seed, 4, 0.5f, 1.5f), *lb = filled(d, seed, 5, -0.2f, 0.2f);
    float *wq = filled(d * d, seed, 6, -0.3f, 0.3f), *bq = filled(d, seed, 7, -0.2f, 0.2f);
    float *wo = filled(d * d, seed, 8, -0.3f, 0.3f), *bo = filled(d, seed, 9, -0.2f, 0.2f);
    float *a = filled(B * n * d, seed, 9, 0, 0), *qq = filled(B * n * d, seed, 9, 0, 0);
    float *att = filled(B * n * d, seed, 9, 0, 0), *o = filled(B * n * d, seed, 9, 0, 0);
    float *want = filled(B * n * d, seed, 9, 0, 0), *got = filled(B * n * d, seed, 9, 0, 0);
    k->layer_norm(x, lw, lb, a, B * n, d, 1e-5f, threads);
    k->linear(a, wq, bq, qq, B * n, d, d, threads);
    k->attention(qq, kp, vp, NULL, att, B, n, m, d, heads, 0, threads);
    k->linear(att, wo, bo, o, B * n, d, d, threads);
    k->add(x, o, want, B * n * d, B * n * d, threads);
    memset(got, 0xff, sizeof(float) * (size_t)(B * n * d));
    assert_int_equal(
        k->dispatch(x, lw, lb, wq, bq, kp, vp, wo, bo, got, B, n, m, d, heads, 1e-5f, threads), 0);
    same_bits(got, want, B * n * d, "dispatch", k, B, n, threads);
    free(x), free(kp), free(vp), free(lw), free(lb), free(wq), free(bq), free(wo), free(bo);
    free(a), free(qq), free(att), free(o), free(want), free(got);
}

static void test_kernels_equal_unfused(void **state)
{
    (void)state;
    const elastic_cpu_kernels *tables[4];
    int ran = tu_fast_tables(tables);
    uint64_t s = tu_seed();
    for (int t = 0; t < ran; t++) {
        /* Under emulation (ci/cross.sh) 2 threads only: thread-count
         * independence is checked natively. */
        for (int th = tu_quick() ? 2 : 1; th <= 2; th++) {
            check_aggregate(tables[t], 1, 16, 1, 64, 2, 0, th, s);
            check_aggregate(tables[t], 1, 16, 9000, 16, 2, 0, th, s + 1); /* three chunks */
            check_aggregate(tables[t], 2, 16, 4200, 16, 2, 1, th, s + 2); /* padded, 2 chunks */
            check_aggregate(tables[t], 150, 16, 60, 16, 2, 1, th, s + 3); /* users per chunk */
            check_aggregate(tables[t], 3, 5, 37, 12, 3, 1, th, s + 4);    /* odd sizes */
            check_aggregate(tables[t], 3, 5, 1000, 12, 3, 1, th, s + 11); /* odd, chunked users */
            check_aggregate(tables[t], 2, 3, 9, 520, 2, 1, th, s + 5);    /* head width 260 */
            check_dispatch(tables[t], 1, 1, 16, 64, 2, th, s + 6);
            check_dispatch(tables[t], 1, 9000, 16, 16, 2, th, s + 7);
            check_dispatch(tables[t], 150, 60, 16, 16, 2, th, s + 8);
            check_dispatch(tables[t], 3, 37, 5, 12, 3, th, s + 9);
            check_dispatch(tables[t], 2, 37, 4, 520, 2, th, s + 10); /* wide heads */
        }
    }
    assert_true(ran >= 1);
}

static void test_session_memory(void **state)
{
    (void)state;
    enum { D = 32 };
    const int N = tu_quick() ? 1024 : 4096; /* minutes under QEMU at 4096 */
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 100;
    c.max_len = N;
    c.hidden = D;
    c.heads = 2;
    c.experts = 4;
    c.mem_subkeys = 6;
    c.mem_topk = 3;
    elastic_model *model = NULL;
    assert_int_equal(elastic_model_init_random(&model, &c, tu_seed()), ELASTIC_OK);
    int32_t *items = malloc(sizeof *items * 2 * (size_t)N);
    assert_non_null(items);
    tu_fill_int(items, 2 * (size_t)N, tu_seed(), 9, 1, 100);
    int64_t offs[3] = {0, N, 2 * N - N / 4};
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
    print_message("# elastic n=%d: largest tensor %zu bytes, [B,n,d] %zu, arena %zu (%.2f x)\n", N,
                  st.max_tensor_bytes, bnd, st.arena_bytes, (double)st.arena_bytes / (double)bnd);
    assert_true(st.max_tensor_bytes <= bnd);
    /* the unfused aggregation alone holds X, LN(X), K and V: 4 [B,n,d] */
    assert_true(st.arena_bytes <= 2 * bnd + bnd / 4);
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

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_equal_unfused),
        cmocka_unit_test(test_session_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
