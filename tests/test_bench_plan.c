/*
 * test_bench_plan.c - the memory claims of `elastic bench`, checked on plans
 * without timing anything: the ELASTIC plan at n=65536 (B=1) holds no tensor
 * of n*n elements or more, its arena grows about linearly in n
 * (arena(4n) < 4.5 arena(n)), also with materialized attention, and
 * elastic_run_stats reports the largest tensor the plan places. SASRec's
 * plan is linear with streaming attention and quadratic (it holds the
 * softmax weights [B, h, n, n]) with materialized attention, the
 * "sasrec-std" of `elastic bench`. Times are not tested here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "elastic.h"
#include "model/model.h"
#include "model/model_builder.h"
#include "runtime/planner.h"

/* A backend that plans only: a row for every op, never run. */
static elastic_status plan_run(elastic_backend *be, const elastic_node *n,
                               const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    (void)be, (void)n, (void)in, (void)out;
    return ELASTIC_ERR_INTERNAL;
}

static elastic_op_kernel plan_ops[ELASTIC_OP_COUNT];

static void plan_ops_init(void)
{
    for (int op = 0; op < ELASTIC_OP_COUNT; op++)
        plan_ops[op].run = plan_run;
}

static const char *describe(const elastic_backend *be)
{
    (void)be;
    return "planning only";
}

static const elastic_backend_iface plan_iface = {
    .name = "plan", .kernels = plan_ops, .describe = describe};

#define MAX_N 65536

static elastic_model *model_of(elastic_model_kind kind)
{
    elastic_config c;
    elastic_config_default(&c);
    c.model = kind;
    c.num_items = 500;
    c.max_len = MAX_N;
    elastic_model *m = NULL;
    assert_int_equal(elastic_model_init_random(&m, &c, 5), ELASTIC_OK);
    return m;
}

/* Plans one user-vector batch; returns the arena size, sets the largest
 * tensor (elements, views and weights excluded) seen in the graph. */
static size_t plan_arena(const elastic_model *m, int64_t batch, int64_t n, int materialize,
                         int64_t *max_numel, size_t *plan_max_bytes)
{
    elastic_backend be;
    memset(&be, 0, sizeof be);
    be.iface = &plan_iface;
    be.alignment = 64;
    elastic_build_shape shape = {.batch = batch,
                                 .len = n,
                                 .output = ELASTIC_BUILD_OUTPUT_USER_VECTORS,
                                 .materialize_attention = materialize};
    elastic_graph g;
    elastic_build_io io;
    elastic_plan p;
    elastic_graph_init(&g);
    assert_int_equal(elastic_build_forward(m, &shape, &g, &io), ELASTIC_OK);
    assert_int_equal(elastic_plan_build(&g, &be, NULL, m->data, &p), ELASTIC_OK);
    *max_numel = 0;
    for (int t = 0; t < g.n_tensors; t++) {
        const elastic_tensor *tt = &g.tensors[t];
        if (tt->kind == ELASTIC_TENSOR_KIND_VIEW || tt->kind == ELASTIC_TENSOR_KIND_WEIGHT)
            continue;
        int64_t numel = elastic_tensor_numel(tt);
        if (numel > *max_numel) *max_numel = numel;
    }
    size_t arena = p.arena_size[0];
    *plan_max_bytes = p.max_tensor_bytes;
    elastic_plan_free(&p);
    elastic_graph_free(&g);
    return arena;
}

static void test_elastic_no_nn_tensor(void **state)
{
    (void)state;
    elastic_model *m = model_of(ELASTIC_MODEL_KIND_ELASTIC);
    int64_t n = MAX_N, max_numel;
    size_t plan_max;
    for (int materialize = 0; materialize < 2; materialize++) {
        size_t arena = plan_arena(m, 1, n, materialize, &max_numel, &plan_max);
        assert_true(max_numel < n * n);
        /* and linear: at most a fixed number of floats per position (4d = 256) */
        assert_true(max_numel <= 4 * 64 * n);
        assert_int_equal(plan_max, (size_t)max_numel * sizeof(float));
        assert_true(arena >= plan_max);
    }
    elastic_model_free(m);
}

static void test_elastic_arena_linear(void **state)
{
    (void)state;
    elastic_model *m = model_of(ELASTIC_MODEL_KIND_ELASTIC);
    int64_t numel;
    size_t plan_max;
    for (int materialize = 0; materialize < 2; materialize++) {
        for (int64_t n = 1024; 4 * n <= MAX_N; n *= 4) {
            size_t a1 = plan_arena(m, 1, n, materialize, &numel, &plan_max);
            size_t a4 = plan_arena(m, 1, 4 * n, materialize, &numel, &plan_max);
            print_message("elastic arena%s n=%lld: %zu bytes, n=%lld: %zu bytes (x%.2f)\n",
                          materialize ? " (materialized attention)" : "", (long long)n, a1,
                          (long long)(4 * n), a4, (double)a4 / (double)a1);
            assert_true((double)a4 < 4.5 * (double)a1);
        }
    }
    elastic_model_free(m);
}

/* SASRec: streaming attention keeps it linear; materialized attention holds
 * the first layer's weights [B, h, n, n] (the last layer has one query), so
 * that is the largest tensor and the arena grows like n^2. */
static void test_sasrec_streaming_vs_materialized(void **state)
{
    (void)state;
    elastic_model *m = model_of(ELASTIC_MODEL_KIND_SASREC);
    const int64_t heads = 2, B = 2;
    int64_t numel;
    size_t plan_max;
    for (int64_t n = 256; n <= 4096; n *= 4) {
        size_t lin = plan_arena(m, B, n, 0, &numel, &plan_max);
        assert_true(numel <= B * 4 * 64 * n);
        size_t quad = plan_arena(m, B, n, 1, &numel, &plan_max);
        assert_int_equal(numel, B * heads * n * n);
        assert_int_equal(plan_max, (size_t)numel * sizeof(float));
        /* q, k (inputs of the weights) and v (read after them) live beside them */
        assert_true(quad >= plan_max + (size_t)(3 * B * n * 64) * sizeof(float));
        print_message("sasrec n=%lld: arena %zu bytes streaming, %zu materialized\n", (long long)n,
                      lin, quad);
    }
    size_t a1 = plan_arena(m, 1, 1024, 1, &numel, &plan_max);
    size_t a4 = plan_arena(m, 1, 4096, 1, &numel, &plan_max);
    assert_true((double)a4 > 12.0 * (double)a1); /* 16x for the n*n part */
    elastic_model_free(m);
}

/* Through the public API: the stats of a real (small) run carry the plan's
 * largest tensor. */
static void test_stats_max_tensor(void **state)
{
    (void)state;
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 50;
    c.max_len = 32;
    elastic_model *m = NULL;
    assert_int_equal(elastic_model_init_random(&m, &c, 9), ELASTIC_OK);
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    elastic_session *s = NULL;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
    int32_t items[2 * 32];
    for (int i = 0; i < 64; i++)
        items[i] = 1 + i % 50;
    int64_t offsets[3] = {0, 32, 64};
    float hu[2 * 64];
    assert_int_equal(elastic_session_user_vectors(s, items, offsets, 2, hu), ELASTIC_OK);
    elastic_run_stats st;
    assert_int_equal(elastic_session_last_stats(s, &st), ELASTIC_OK);
    /* the CPU runs each FFN block as one node (no [B, n, 4d] activation): the
     * largest tensors are [B, n, d] */
    assert_int_equal(st.max_tensor_bytes, (size_t)2 * 32 * 64 * sizeof(float));
    assert_true(st.max_tensor_bytes <= st.arena_bytes);
    elastic_session_free(s);
    elastic_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elastic_no_nn_tensor),
        cmocka_unit_test(test_elastic_arena_linear),
        cmocka_unit_test(test_sasrec_streaming_vs_materialized),
        cmocka_unit_test(test_stats_max_tensor),
    };
    plan_ops_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
