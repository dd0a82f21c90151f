/*
 * conformance_cases.h - the op cases of the conformance suite, for every op
 * of ops.def, inference and training alike: shapes that include the edge
 * cases (size 1, odd sizes, sizes that are not multiples of a vector width,
 * long reductions, heavy padding), how their inputs are drawn, and a case
 * made concrete (conformance_case.c): its one-node graph and input data,
 * running it on a backend behind canaries, and the reference outputs with
 * the tolerance of each of their elements (tolerance.h).
 */
#ifndef ELASTIC_CORE_CONFORMANCE_CASES_H
#define ELASTIC_CORE_CONFORMANCE_CASES_H

#include "graph/graph.h"
#include "runtime/backend.h"

typedef enum conf_fill {
    CONF_FILL_UNIFORM = 0, /* float uniform in [lo, hi) */
    CONF_FILL_SMALL_INT,   /* float integers in [lo, hi]: exact arithmetic */
    CONF_FILL_INDEX,       /* int32 uniform in [lo, hi] */
    CONF_FILL_LENGTHS,     /* int32 per batch row: first = hi, second = lo, rest random */
    CONF_FILL_WITH_NAN     /* float uniform with some NaN and +-Inf */
} conf_fill;

typedef struct conf_input {
    int absent; /* an optional input left out */
    elastic_dtype dtype;
    int ndim;
    int64_t shape[ELASTIC_MAX_DIMS];
    conf_fill fill;
    double lo, hi;
    /* COPY only: the input is a strided view of a base tensor of base_numel */
    int64_t strides[ELASTIC_MAX_DIMS];
    int64_t view_offset, base_numel;
} conf_input;

/* The guard's exemption for output o (conf_case.sparse_ok). */
#define CONF_SPARSE(o) (1u << (o))
#define CONF_SPARSE_ALL 0x7u

typedef struct conf_case {
    elastic_op op;
    elastic_op_params params;
    int n_inputs;
    conf_input in[ELASTIC_MAX_INPUTS];
    int exact; /* outputs must equal the reference bit for bit */
    /* Outputs (CONF_SPARSE bits) whose reference may be mostly zeros or NaN,
     * and why (a scatter, padding, a mask): otherwise such a reference fails
     * the case, because it would test little. */
    unsigned sparse_ok;
    const char *sparse_why;
    /* Training ops: the (small) case on which the oracle itself is checked
     * against finite differences of a float64 forward (gradcheck.h). */
    int self_check;
    char label[96];
} conf_case;

/* The cases of one op; returns their count (the array is static). */
int conf_cases_for(elastic_op op, const conf_case **cases);
/* The index of the op's self-check case, or -1 (inference ops have none). */
int conf_self_check_case(elastic_op op);

/* Fills host input i of a case (n elements) from a seed. */
void conf_fill_input(const conf_case *c, int i, void *data, int64_t n, uint64_t seed);

/* ------------------------------------------------ a case made concrete */

typedef struct conf_case_data {
    elastic_graph g;
    elastic_node node;                    /* its dims derived by ops.c */
    int64_t in_numel[ELASTIC_MAX_INPUTS]; /* storage elements (COPY: the base) */
    void *in_host[ELASTIC_MAX_INPUTS];    /* NULL for an absent input */
    int64_t out_numel[ELASTIC_MAX_OUTPUTS];
    void *ref_out[ELASTIC_MAX_OUTPUTS]; /* the reference outputs */
    double *tol[ELASTIC_MAX_OUTPUTS];   /* their per-element tolerances */
} conf_case_data;

/* The case's node and its inputs drawn from seed (outputs not yet run). */
elastic_status conf_case_build(const conf_case *c, uint64_t seed, conf_case_data *cd);
void conf_case_free(conf_case_data *cd);

/* Tensor `id` of g bound to buf at byte `at` (a view at its offset after
 * it); an all-zero ref for id < 0 (an absent input). */
elastic_tensor_ref conf_tensor_ref(const elastic_graph *g, int id, elastic_buffer *buf, size_t at);

/* Runs the case's node on a backend: uploads inputs, poisons outputs and
 * their canaries, computes, downloads into outs[o] (out_numel[o] elements
 * each). *canary_ok tells whether the guard bytes after every output
 * survived; *seconds (may be NULL) is the median of `reps` timed runs. */
elastic_status conf_case_run(elastic_backend *be, const conf_case_data *cd, void *const *outs,
                             int *canary_ok, int reps, double *seconds);

/* The reference outputs (run on `reference`, the CPU backend with
 * cpu.isa=reference) and the tolerance of every element of every output.
 * Fails when an output has no tolerance (a missing formula). */
elastic_status conf_case_reference(elastic_backend *reference, const conf_case *c,
                                   conf_case_data *cd);

/* Fills cd->tol[o] for every output from the inputs and reference outputs
 * (tolerance.h). Allocates the arrays, first filled with NaN: an output whose
 * op has no formula keeps them, which conf_case_reference and the coverage
 * test report. */
elastic_status conf_tolerances(const conf_case *c, conf_case_data *cd);

/* The benchdnn-style guard: 1 when no reference output of the case is more
 * than CONF_SPARSE_MAX zeros or NaN (outputs in c->sparse_ok excepted);
 * else 0 and a message in why. */
int conf_case_sparse_guard(const conf_case *c, const conf_case_data *cd, char *why, size_t size);

#endif
