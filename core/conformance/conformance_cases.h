/*
 * conformance_cases.h - the op cases of the conformance suite: shapes that
 * include the edge cases (size 1, odd sizes, sizes that are not multiples of
 * a vector width, long reductions, heavy padding), how their inputs are drawn,
 * and the tolerance each output element is allowed, derived from the op.
 */
#ifndef ELASTIC_CORE_CONFORMANCE_CASES_H
#define ELASTIC_CORE_CONFORMANCE_CASES_H

#include "graph/graph.h"

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

typedef struct conf_case {
    elastic_op op;
    elastic_op_params params;
    int n_inputs;
    conf_input in[ELASTIC_MAX_INPUTS];
    int exact; /* outputs must equal the reference bit for bit */
    char label[96];
} conf_case;

/* The cases of one op; returns their count (the array is static). */
int conf_cases_for(elastic_op op, const conf_case **cases);

/* Fills host input i of a case (n elements) from a seed. */
void conf_fill_input(const conf_case *c, int i, void *data, int64_t n, uint64_t seed);

/* Tolerance of every element of output 0, from the inputs (host copies,
 * NULL for absent ones) and the reference output: |got - ref| <= tol[i]. */
void conf_tolerances(const conf_case *c, const void *const *inputs, const float *ref,
                     int64_t n, double *tol);

#endif
