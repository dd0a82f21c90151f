/*
 * test_coverage.c - every op of core/graph/ops.def is covered wherever it
 * must be. For each op:
 *   - a name other than "unknown", unique, that elastic_op_by_name maps back;
 *   - at least one conformance case (conformance_cases.c), each well formed
 *     (its op, a label, a reason wherever it exempts outputs from the
 *     mostly-zeros guard);
 *   - a tolerance for every element of every output of every case: finite
 *     and >= 0 (tolerance.c; exact cases all 0), on the case's real inputs
 *     and reference outputs, and a reference that passes the guard;
 *   - a CPU kernel (a row in the CPU backend's op table);
 *   - an oracle: for inference ops the float64 reference kernel of
 *     cpu_ref.c (COPY excepted: a strided copy moves values, so the CPU's
 *     copy is exact and is its own reference); for training ops the CPU's
 *     cpu_grad.c kernel (run by the reference backend), whose self-check
 *     against float64 finite differences (gradcheck.h) must exist, have a
 *     case, and pass here.
 * Every gap is printed with the op's name before the test fails, so one run
 * lists them all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "conformance/conformance_cases.h"
#include "conformance/gradcheck.h"
#include "cpu_kernels.h"
#include "runtime/backend.h"
#include "test_util.h"

static int gaps; /* counted by gap(), checked at the end of each test */

__attribute__((format(printf, 2, 3))) static void gap(elastic_op op, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# GAP op %d (%s): ", (int)op, elastic_op_name(op));
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    gaps++;
}

static void test_names(void **state)
{
    (void)state;
    gaps = 0;
    for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
        const char *name = elastic_op_name((elastic_op)op);
        if (!name || !*name || !strcmp(name, "unknown")) gap((elastic_op)op, "%s", "no name");
        for (int other = 0; other < op; other++)
            if (name && !strcmp(name, elastic_op_name((elastic_op)other)))
                gap((elastic_op)op, "name shared with %s", elastic_op_name((elastic_op)other));
        if (elastic_op_by_name(name) != (elastic_op)op)
            gap((elastic_op)op, "%s", "elastic_op_by_name does not map the name back");
    }
    assert_string_equal(elastic_op_name(ELASTIC_OP_COUNT), "unknown");
    assert_int_equal(elastic_op_by_name("no_such_op"), ELASTIC_OP_COUNT);
    assert_int_equal(elastic_op_by_name(NULL), ELASTIC_OP_COUNT);
    assert_int_equal(gaps, 0);
}

/* Every output of a built case has finite, non-negative tolerances. */
static void check_tolerances(const conf_case *c, int index, conf_case_data *cd)
{
    char what[160];
    snprintf(what, sizeof what, "case %d (%s)", index, c->label);
    if (conf_tolerances(c, cd) != ELASTIC_OK) {
        gap(c->op, "%s: computing tolerances failed", what);
        return;
    }
    for (int o = 0; o < cd->node.n_outputs; o++) {
        int64_t bad = -1;
        for (int64_t i = 0; i < cd->out_numel[o] && bad < 0; i++) {
            double t = cd->tol[o][i];
            if (!(t >= 0) || isinf(t) || (c->exact && t != 0)) bad = i;
        }
        if (bad >= 0)
            gap(c->op, "%s: output %d, element %lld: tolerance %g (no formula in tolerance.c?)",
                what, o, (long long)bad, cd->tol[o][bad]);
    }
}

static void test_cases_and_tolerances(void **state)
{
    (void)state;
    gaps = 0;
    elastic_session_options ro;
    elastic_session_options_default(&ro);
    ro.backend_options = "cpu.isa=reference";
    elastic_backend *reference = NULL;
    assert_int_equal(elastic_cpu_backend_iface.init(&reference, &ro), ELASTIC_OK);
    uint64_t seed = tu_seed();
    for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
        const conf_case *cases = NULL;
        int n = conf_cases_for((elastic_op)op, &cases);
        if (n < 1) {
            gap((elastic_op)op, "%s", "no conformance case");
            continue;
        }
        for (int i = 0; i < n; i++) {
            const conf_case *c = &cases[i];
            char what[128];
            snprintf(what, sizeof what, "case %d (%s)", i, c->label);
            if (c->op != (elastic_op)op) gap((elastic_op)op, "%s: listed under another op", what);
            if (!c->label[0]) gap((elastic_op)op, "%s: no label", what);
            if (c->sparse_ok && !(c->sparse_why && *c->sparse_why))
                gap((elastic_op)op, "%s: sparse_ok without a reason", what);
            conf_case_data cd;
            if (conf_case_build(c, seed + (uint64_t)i, &cd) != ELASTIC_OK) {
                printf("#   %s\n", elastic_last_error());
                gap((elastic_op)op, "%s: the case does not build", what);
                conf_case_free(&cd);
                continue;
            }
            int canary = 1;
            if (conf_case_run(reference, &cd, cd.ref_out, &canary, 0, NULL) != ELASTIC_OK ||
                !canary) {
                gap((elastic_op)op, "%s: the reference does not run", what);
                conf_case_free(&cd);
                continue;
            }
            check_tolerances(c, i, &cd);
            char why[192];
            if (!conf_case_sparse_guard(c, &cd, why, sizeof why)) gap((elastic_op)op, "%s", why);
            conf_case_free(&cd);
        }
    }
    reference->iface->free(reference);
    assert_int_equal(gaps, 0);
}

static void test_cpu_kernels(void **state)
{
    (void)state;
    gaps = 0;
    assert_non_null(elastic_cpu_backend_iface.kernels);
    for (int op = 0; op < ELASTIC_OP_COUNT; op++)
        if (!elastic_cpu_backend_iface.kernels[op].run)
            gap((elastic_op)op, "%s", "no CPU kernel (a row in cpu_backend.c's op table)");
    assert_int_equal(gaps, 0);
}

/* Whether the op has its oracle. Every op is listed (no default): a new op
 * is a compile-time warning here until its oracle is named. */
static int has_oracle(elastic_op op)
{
    const elastic_cpu_kernels *k = &elastic_cpu_kernels_reference;
    switch (op) {
    case ELASTIC_OP_GATHER: return k->gather != NULL;
    case ELASTIC_OP_ADD: return k->add != NULL;
    case ELASTIC_OP_MASKED_MEAN: return k->masked_mean != NULL;
    case ELASTIC_OP_LAYER_NORM: return k->layer_norm != NULL;
    case ELASTIC_OP_LINEAR: return k->linear != NULL;
    case ELASTIC_OP_GELU: return k->gelu != NULL;
    case ELASTIC_OP_ATTENTION: return k->attention != NULL;
    case ELASTIC_OP_PKM: return k->pkm != NULL;
    case ELASTIC_OP_TOPK: return k->topk != NULL;
    case ELASTIC_OP_SCORE_TOPK: return k->score_topk != NULL;
    case ELASTIC_OP_FFN: return k->ffn != NULL;
    case ELASTIC_OP_AGGREGATE: return k->aggregate != NULL;
    case ELASTIC_OP_DISPATCH: return k->dispatch != NULL;
    case ELASTIC_OP_COPY: return 1; /* moves values: exact, its own reference */
    case ELASTIC_OP_ATTENTION_PROBS: return k->attention_probs != NULL;
    case ELASTIC_OP_ATTENTION_MIX: return k->attention_mix != NULL;
    /* training ops: the cpu_grad.c kernel, checked by the self-check */
    case ELASTIC_OP_DROPOUT:
    case ELASTIC_OP_CROSS_ENTROPY:
    case ELASTIC_OP_GATHER_GRAD:
    case ELASTIC_OP_SUM_ROWS:
    case ELASTIC_OP_MASKED_MEAN_GRAD:
    case ELASTIC_OP_LAYER_NORM_GRAD:
    case ELASTIC_OP_LINEAR_GRAD:
    case ELASTIC_OP_GELU_GRAD:
    case ELASTIC_OP_ATTENTION_GRAD:
    case ELASTIC_OP_PKM_GRAD:
    case ELASTIC_OP_VIEW_GRAD:
        return elastic_op_is_training(op) && conf_self_check_supported(op) &&
               conf_self_check_case(op) >= 0;
    case ELASTIC_OP_COUNT: return 0;
    }
    return 0;
}

static void test_oracles(void **state)
{
    (void)state;
    gaps = 0;
    elastic_session_options ro;
    elastic_session_options_default(&ro);
    ro.backend_options = "cpu.isa=reference";
    elastic_backend *reference = NULL;
    assert_int_equal(elastic_cpu_backend_iface.init(&reference, &ro), ELASTIC_OK);
    uint64_t seed = tu_seed();
    for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
        if (!has_oracle((elastic_op)op)) {
            gap((elastic_op)op, "%s",
                elastic_op_is_training((elastic_op)op)
                    ? "no oracle self-check (gradcheck.c) or no self_check case"
                    : "no float64 reference kernel (cpu_ref.c)");
            continue;
        }
        if (!elastic_op_is_training((elastic_op)op)) {
            if (conf_self_check_case((elastic_op)op) >= 0)
                gap((elastic_op)op, "%s", "an inference op with a self_check case");
            continue;
        }
        /* the training op's oracle against float64 differences, as the suite does */
        const conf_case *cases;
        conf_cases_for((elastic_op)op, &cases);
        const conf_case *c = &cases[conf_self_check_case((elastic_op)op)];
        conf_case_data cd;
        uint64_t s = seed;
        int attempt = 0;
        for (;; attempt++, s++) {
            assert_int_equal(conf_case_build(c, s, &cd), ELASTIC_OK);
            if (conf_self_check_inputs_ok(c, &cd) || attempt == 200) break;
            conf_case_free(&cd);
        }
        assert_true(attempt < 200);
        conf_self_check_result res;
        if (conf_case_reference(reference, c, &cd) != ELASTIC_OK ||
            conf_self_check(c, &cd, s, &res) != ELASTIC_OK) {
            gap((elastic_op)op, "the self-check does not run: %s", elastic_last_error());
            conf_case_free(&cd);
            continue;
        }
        printf("# %-17s self-check on '%s': worst %.3g of allowed over %d outputs\n",
               elastic_op_name((elastic_op)op), c->label,
               fmax(res.worst[0], fmax(res.worst[1], res.worst[2])), res.n_outputs);
        if (res.n_outputs != cd.node.n_outputs)
            gap((elastic_op)op, "%s", "the self-check does not check every output");
        if (!res.ok) gap((elastic_op)op, "self-check fails: %s", res.why);
        conf_case_free(&cd);
    }
    reference->iface->free(reference);
    assert_int_equal(gaps, 0);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_cases_and_tolerances),
        cmocka_unit_test(test_cpu_kernels),
        cmocka_unit_test(test_oracles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
