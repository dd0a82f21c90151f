/*
 * test_graph.c - graph building: shape inference and validation errors of
 * every op, views, and the sticky error status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "base/error.h"
#include "graph/graph.h"

static const float zeros[4096];

static int weight2(elastic_graph *g, int64_t a, int64_t b)
{
    int64_t s[2] = {a, b};
    return elastic_graph_weight(g, "w", 2, s, zeros);
}

static int weight1(elastic_graph *g, int64_t a)
{
    return elastic_graph_weight(g, "b", 1, &a, zeros);
}

static int input3(elastic_graph *g, int64_t a, int64_t b, int64_t c)
{
    int64_t s[3] = {a, b, c};
    return elastic_graph_input(g, "x", ELASTIC_DTYPE_F32, 3, s);
}

/* Adds a node that must fail with `status` and a message containing `text`. */
static void expect_error(elastic_op op, const int *in, int n, const elastic_op_params *p,
                         elastic_graph *g, elastic_status status, const char *text)
{
    int id = elastic_graph_node(g, op, in, n, p, "bad");
    assert_int_equal(id, -1);
    assert_int_equal(g->status, status);
    assert_non_null(strstr(elastic_last_error(), text));
}

static void test_linear_shapes(void **state)
{
    (void)state;
    elastic_graph g;
    elastic_graph_init(&g);
    int x = input3(&g, 2, 5, 8);
    int in[3] = {x, weight2(&g, 3, 8), weight1(&g, 3)};
    int y = elastic_graph_node(&g, ELASTIC_OP_LINEAR, in, 3, NULL, "lin");
    assert_true(y >= 0);
    assert_int_equal(g.tensors[y].ndim, 3);
    assert_int_equal(g.tensors[y].shape[2], 3);
    assert_int_equal(g.tensors[y].producer, 0);
    int bad[3] = {x, weight2(&g, 3, 7), -1};
    expect_error(ELASTIC_OP_LINEAR, bad, 3, NULL, &g, ELASTIC_ERR_SHAPE, "same K");
    /* Sticky: a valid node after an error is refused too. */
    assert_int_equal(elastic_graph_node(&g, ELASTIC_OP_LINEAR, in, 3, NULL, "ok"), -1);
    elastic_graph_free(&g);
}

static void test_op_validation(void **state)
{
    (void)state;
    struct {
        elastic_op op;
        const char *text;
    } cases[] = {
        {ELASTIC_OP_ADD, "suffix"},          {ELASTIC_OP_ATTENTION, "heads"},
        {ELASTIC_OP_LAYER_NORM, "weight"},   {ELASTIC_OP_PKM, "experts"},
        {ELASTIC_OP_MASKED_MEAN, "lengths"}, {ELASTIC_OP_TOPK, "K must"},
        {ELASTIC_OP_GATHER, "int32"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        elastic_graph g;
        elastic_graph_init(&g);
        int x = input3(&g, 2, 4, 6);
        int in[4] = {x, -1, -1, -1};
        int n = 2;
        elastic_op_params p = {.heads = 4, .eps = 1e-5f, .experts = 3, .mem_topk = 1};
        switch (cases[c].op) {
        case ELASTIC_OP_ADD: in[1] = weight1(&g, 5); break;
        case ELASTIC_OP_ATTENTION: /* width 6 is not divisible by 4 heads */
            in[1] = x;
            in[2] = x;
            n = 3;
            break;
        case ELASTIC_OP_LAYER_NORM:
            in[1] = weight1(&g, 5);
            in[2] = weight1(&g, 6);
            n = 3;
            break;
        case ELASTIC_OP_PKM: { /* query width 6 != experts 3 * mem_key 4 */
            int64_t q[2] = {2, 6}, sk[3] = {2, 4, 2}, v[2] = {16, 6};
            in[0] = elastic_graph_input(&g, "q", ELASTIC_DTYPE_F32, 2, q);
            in[1] = elastic_graph_weight(&g, "sk", 3, sk, zeros);
            in[2] = elastic_graph_weight(&g, "v", 2, v, zeros);
            n = 3;
            break;
        }
        case ELASTIC_OP_MASKED_MEAN: in[1] = weight1(&g, 2); break; /* float, not int32 */
        case ELASTIC_OP_TOPK: {
            int64_t s[2] = {2, 10};
            in[0] = elastic_graph_input(&g, "s", ELASTIC_DTYPE_F32, 2, s);
            n = 1;
            break;
        }
        case ELASTIC_OP_GATHER: in[0] = weight2(&g, 10, 4), in[1] = x; break;
        default: break;
        }
        expect_error(cases[c].op, in, n, &p, &g, ELASTIC_ERR_SHAPE, cases[c].text);
        elastic_graph_free(&g);
    }
}

static void test_views(void **state)
{
    (void)state;
    elastic_graph g;
    elastic_graph_init(&g);
    int x = input3(&g, 2, 5, 4);
    /* x[:, 0:1, :] is strided: ops other than copy refuse it. */
    int64_t shape[3] = {2, 1, 4}, strides[3] = {20, 4, 1};
    int v = elastic_graph_view(&g, x, 3, shape, strides, 0);
    assert_true(v >= 0);
    assert_false(elastic_tensor_is_contiguous(&g.tensors[v]));
    int c = elastic_graph_node(&g, ELASTIC_OP_COPY, &v, 1, NULL, "copy");
    assert_true(c >= 0);
    assert_true(elastic_tensor_is_contiguous(&g.tensors[c]));
    expect_error(ELASTIC_OP_GELU, &v, 1, NULL, &g, ELASTIC_ERR_SHAPE, "contiguous");
    elastic_graph_free(&g);

    elastic_graph_init(&g);
    x = input3(&g, 2, 5, 4);
    int64_t big[2] = {11, 4}; /* 44 elements from offset 0 of a 40-element tensor */
    assert_int_equal(elastic_graph_view(&g, x, 2, big, NULL, 0), -1);
    assert_int_equal(g.status, ELASTIC_ERR_SHAPE);
    elastic_graph_free(&g);
}

static void test_bad_tensors(void **state)
{
    (void)state;
    elastic_graph g;
    elastic_graph_init(&g);
    int64_t s[5] = {1, 2, 3, 4, 5};
    assert_int_equal(elastic_graph_input(&g, "x", ELASTIC_DTYPE_F32, 5, s), -1);
    assert_int_equal(g.status, ELASTIC_ERR_SHAPE);
    elastic_graph_free(&g);
    elastic_graph_init(&g);
    int64_t z[2] = {3, 0};
    assert_int_equal(elastic_graph_input(&g, "x", ELASTIC_DTYPE_F32, 2, z), -1);
    assert_non_null(strstr(elastic_last_error(), "dimension 1"));
    elastic_graph_free(&g);
}

static void test_many_nodes(void **state)
{
    (void)state;
    /* No fixed capacity: thousands of nodes. */
    elastic_graph g;
    elastic_graph_init(&g);
    int x = input3(&g, 1, 1, 4);
    for (int i = 0; i < 5000; i++) x = elastic_graph_node(&g, ELASTIC_OP_GELU, &x, 1, NULL, "g");
    assert_int_equal(g.status, ELASTIC_OK);
    assert_int_equal(g.n_nodes, 5000);
    elastic_graph_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_shapes), cmocka_unit_test(test_op_validation),
        cmocka_unit_test(test_views),         cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_many_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
