/*
 * test_planner.c - the planner on the real ELASTIC graph: memory reuse by
 * liveness (checked against lifetimes recomputed here), CPU fallback that is
 * refused unless allowed and reported when taken, and transfers inserted at
 * backend boundaries. A fake "gpu" backend that lacks GELU and ATTENTION
 * stands in for a backend with missing ops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/model_builder.h"
#include "runtime/planner.h"

/* A backend that plans only: every op has a row but GELU and ATTENTION. */
static elastic_status fake_run(elastic_backend *be, const elastic_node *n,
                               const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    (void)be, (void)n, (void)in, (void)out;
    return ELASTIC_ERR_INTERNAL;
}

static elastic_op_kernel fake_ops[ELASTIC_OP_COUNT];

static void fake_ops_init(void)
{
    for (int op = 0; op < ELASTIC_OP_COUNT; op++)
        fake_ops[op].run = op == ELASTIC_OP_GELU || op == ELASTIC_OP_ATTENTION ? NULL : fake_run;
}

static const char *fake_describe(const elastic_backend *be)
{
    (void)be;
    return "fake gpu";
}

static const elastic_backend_iface fake_iface = {
    .name = "fake", .kernels = fake_ops, .describe = fake_describe};

static elastic_model *small_model(elastic_model_kind kind)
{
    elastic_config c;
    elastic_config_default(&c);
    c.model = kind;
    c.num_items = 40;
    c.max_len = 16;
    c.hidden = 16;
    c.experts = 4;
    c.mem_subkeys = 8;
    c.mem_topk = 2;
    elastic_model *m = NULL;
    assert_int_equal(elastic_model_init_random(&m, &c, 3), ELASTIC_OK);
    return m;
}

static void build(const elastic_model *m, elastic_graph *g, elastic_build_io *io)
{
    elastic_build_shape shape = {
        .batch = 3, .len = 16, .n_exclude = 20, .top_k = 5, .output = ELASTIC_BUILD_OUTPUT_TOPK};
    elastic_graph_init(g);
    assert_int_equal(elastic_build_forward(m, &shape, g, io), ELASTIC_OK);
}

static int storage(const elastic_graph *g, int id)
{
    return g->tensors[id].kind == ELASTIC_TENSOR_KIND_VIEW ? g->tensors[id].view_src : id;
}

/* Recomputes every arena tensor's lifetime from the steps and checks that no
 * two tensors alive at the same step share bytes on the same backend. */
static void check_no_live_overlap(const elastic_graph *g, const elastic_plan *p)
{
    int n = g->n_tensors;
    int *first = malloc(sizeof(int) * (size_t)n), *last = malloc(sizeof(int) * (size_t)n);
    for (int t = 0; t < n; t++) {
        first[t] = g->tensors[t].kind == ELASTIC_TENSOR_KIND_INPUT ? -1 : 1 << 30;
        last[t] = g->tensors[t].is_output ? p->n_steps : -1;
    }
    for (int s = 0; s < p->n_steps; s++) {
        const elastic_plan_step *st = &p->steps[s];
        if (st->kind == ELASTIC_STEP_KIND_TRANSFER) {
            if (first[st->dst] > s) first[st->dst] = s;
            if (last[st->src] < s) last[st->src] = s;
            continue;
        }
        for (int o = 0; o < st->node.n_outputs; o++)
            if (first[st->node.outputs[o]] > s) first[st->node.outputs[o]] = s;
        for (int i = 0; i < st->node.n_inputs; i++)
            if (st->node.inputs[i] >= 0) {
                int b = storage(g, st->node.inputs[i]);
                if (last[b] < s) last[b] = s;
            }
    }
    int checked = 0;
    for (int a = 0; a < n; a++) {
        if (p->place[a].storage != ELASTIC_STORAGE_ARENA) continue;
        if (g->tensors[a].kind == ELASTIC_TENSOR_KIND_VIEW || last[a] < 0) continue;
        size_t sa = (size_t)elastic_tensor_numel(&g->tensors[a]) * 4;
        for (int b = a + 1; b < n; b++) {
            if (p->place[b].storage != ELASTIC_STORAGE_ARENA) continue;
            if (g->tensors[b].kind == ELASTIC_TENSOR_KIND_VIEW || last[b] < 0) continue;
            if (p->place[a].backend != p->place[b].backend) continue;
            size_t sb = (size_t)elastic_tensor_numel(&g->tensors[b]) * 4;
            int live = first[a] <= last[b] && first[b] <= last[a];
            int mem = p->place[a].offset < p->place[b].offset + sb &&
                      p->place[b].offset < p->place[a].offset + sa;
            if (live && mem)
                fail_msg("'%s' and '%s' are alive together and overlap", g->tensors[a].name,
                         g->tensors[b].name);
            checked++;
        }
        assert_true(p->place[a].offset + sa <= p->arena_size[p->place[a].backend]);
    }
    assert_true(checked > 100);
    free(first);
    free(last);
}

static void test_liveness_reuse(void **state)
{
    (void)state;
    elastic_model_kind kinds[2] = {ELASTIC_MODEL_KIND_ELASTIC, ELASTIC_MODEL_KIND_SASREC};
    for (int k = 0; k < 2; k++) {
        elastic_model *m = small_model(kinds[k]);
        elastic_backend *cpu;
        elastic_session_options o;
        elastic_session_options_default(&o);
        assert_int_equal(elastic_cpu_backend_iface.init(&cpu, &o), ELASTIC_OK);
        elastic_graph g;
        elastic_build_io io;
        build(m, &g, &io);
        elastic_plan p;
        assert_int_equal(elastic_plan_build(&g, cpu, NULL, m->data, &p), ELASTIC_OK);
        assert_int_equal(p.n_fallback, 0);
        assert_int_equal(p.n_transfers, 0);
        /* Reuse must save most of the memory of a graph this deep. */
        assert_true(p.arena_size[0] * 2 < p.naive_bytes);
        check_no_live_overlap(&g, &p);
        elastic_plan_free(&p);
        elastic_graph_free(&g);
        cpu->iface->free(cpu);
        elastic_model_free(m);
    }
}

static void test_fallback(void **state)
{
    (void)state;
    elastic_model *m = small_model(ELASTIC_MODEL_KIND_ELASTIC);
    elastic_backend fake = {.iface = &fake_iface, .alignment = 256};
    elastic_backend *cpu;
    elastic_session_options o;
    elastic_session_options_default(&o);
    assert_int_equal(elastic_cpu_backend_iface.init(&cpu, &o), ELASTIC_OK);
    elastic_graph g;
    elastic_build_io io;

    /* Not allowed: a clear error naming the op. */
    build(m, &g, &io);
    elastic_plan p;
    assert_int_equal(elastic_plan_build(&g, &fake, NULL, m->data, &p), ELASTIC_ERR_UNSUPPORTED);
    assert_non_null(strstr(elastic_last_error(), "attention"));
    assert_non_null(strstr(elastic_last_error(), "not allowed"));
    elastic_graph_free(&g);

    /* Allowed: every GELU and attention node runs on the CPU, reported. */
    build(m, &g, &io);
    int expected = 0;
    for (int i = 0; i < g.n_nodes; i++)
        expected += g.nodes[i].op == ELASTIC_OP_GELU || g.nodes[i].op == ELASTIC_OP_ATTENTION;
    assert_int_equal(elastic_plan_build(&g, &fake, cpu, m->data, &p), ELASTIC_OK);
    assert_int_equal(p.n_fallback, expected);
    assert_true(p.n_transfers > 0);
    for (int s = 0; s < p.n_steps; s++) {
        const elastic_plan_step *st = &p.steps[s];
        if (st->kind == ELASTIC_STEP_KIND_TRANSFER) {
            /* a transfer moves a tensor to the other backend */
            assert_int_not_equal(p.place[st->src].backend, p.place[st->dst].backend);
            assert_int_equal(p.place[st->dst].backend, st->backend);
            continue;
        }
        /* every input of a step lives on that step's backend (or is a weight) */
        for (int i = 0; i < st->node.n_inputs; i++) {
            int id = st->node.inputs[i];
            if (id < 0 || p.place[id].storage == ELASTIC_STORAGE_WEIGHTS) continue;
            assert_int_equal(p.place[id].backend, st->backend);
        }
        assert_int_equal(st->fallback, st->backend == 1);
    }
    check_no_live_overlap(&g, &p);
    /* The printed plan names each fallback. */
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    elastic_plan_print(&g, &p, f);
    fclose(f);
    int marks = 0;
    for (const char *s = text; (s = strstr(s, "[fallback to cpu]")); s++)
        marks++;
    assert_int_equal(marks, expected);
    free(text);
    elastic_plan_free(&p);
    elastic_graph_free(&g);
    cpu->iface->free(cpu);
    elastic_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_liveness_reuse),
        cmocka_unit_test(test_fallback),
    };
    fake_ops_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
