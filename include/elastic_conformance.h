/*
 * elastic_conformance.h - part of the public C API of libelastic (included
 * by elastic.h): the cross-backend conformance suite behind
 * `elastic conformance`.
 *
 * Every op of the graph, inference and training (dropout, the loss and the
 * gradients) alike, runs over edge-case shapes (size 1, odd sizes, sizes off
 * the vector widths, long reductions, heavy padding) on every chosen backend
 * and is compared element by element with the CPU's reference: the float64
 * kernels for inference ops, the double-accumulating training kernels for
 * training ops. Each element has its own tolerance, derived from the op's
 * float32 error bounds; canaries after every output catch writes past the
 * end, poisoned outputs catch elements never written, NaN and Inf must
 * appear exactly where the reference has them, and a second run must give
 * the same bits. A case whose reference is mostly zeros fails unless it says
 * why. The training ops' reference is itself checked against finite
 * differences of float64 forwards. A backend without a kernel for an op is
 * reported ("not impl.: CPU fallback": sessions and trainers run the op on
 * the CPU when fallback is allowed), never counted as a failure. Whole
 * ELASTIC and SASRec models then run through sessions on every backend.
 * Each case prints its seed and a command line that replays it.
 *
 * Usage:
 *
 *     elastic_conformance_options o;
 *     elastic_conformance_options_default(&o);
 *     o.backends = "cpu:avx2,opencl";   // NULL: every available backend
 *     o.ops = "attention,attention_grad";
 *     int failures = 0;
 *     if (elastic_conformance_run(&o, stdout, &failures) != ELASTIC_OK)
 *         fprintf(stderr, "%s\n", elastic_last_error());
 *     else if (failures)
 *         fprintf(stderr, "%d checks failed\n", failures);
 */
#ifndef ELASTIC_CONFORMANCE_H
#define ELASTIC_CONFORMANCE_H

#include <stdint.h>
#include <stdio.h>

#include "elastic.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct elastic_conformance_options {
    const char *backends; /* comma list: "cpu", "cpu:avx2", "cpu:reference", "opencl",
                             "opencl:1", "cuda", ...; "cpu:*" = every CPU instruction set;
                             NULL = every available backend and CPU instruction set */
    const char *ops;      /* comma list of op names (core/graph/ops.def), inference or
                             training ("linear,linear_grad"); NULL = all; an unknown
                             name is an error */
    uint64_t seed;        /* base seed; each case's seed is printed */
    int case_index;       /* -1 = all cases, else only this case of each op */
    int json;             /* JSON report instead of text */
    int perf;             /* also time each op and shape (GFLOP/s, GB/s) */
    int whole_model;      /* also run whole models (default 1); 2: the same models at
                             reduced sizes (max_len 24, 300 items, batch 3: for runs
                             under emulation, ci/cross.sh) */
    int verbose;          /* a line for every case, not only failures */
} elastic_conformance_options;

ELASTIC_API void elastic_conformance_options_default(elastic_conformance_options *options);

/* Runs the suite and writes the report to out (a table of ops by backends,
 * the coverage of each backend, then `N passed, N failed`); *failures counts
 * failed checks. Returns ELASTIC_OK when the suite ran (even with failures). */
ELASTIC_API elastic_status elastic_conformance_run(const elastic_conformance_options *options,
                                                   FILE *out, int *failures);

#ifdef __cplusplus
}
#endif

#endif /* ELASTIC_CONFORMANCE_H */
