/*
 * fuzz_conformance_args.c - fuzz target: the arguments that replay a
 * conformance case (`elastic conformance --backends LIST --ops LIST --seed S
 * --case I`, what a failure prints to reproduce it) through
 * elastic_conformance_run. Input: four lines, backends, ops, seed, case.
 * Only CPU backends run (an OpenCL or CUDA name is skipped: device start-up
 * is not what is fuzzed), without whole models, one case at most.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elastic.h"
#include "fuzz_target.h"

static FILE *sink;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sink = fopen("/dev/null", "w");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sink || size > 512) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char *field[4] = {NULL, NULL, NULL, NULL};
    char *p = text;
    for (int i = 0; i < 4 && p; i++) {
        field[i] = p;
        p = strchr(p, '\n');
        if (p) *p++ = '\0';
    }
    /* Only the CPU: other backends' device start-up is not fuzzed here. */
    if (field[0] && (strstr(field[0], "opencl") || strstr(field[0], "cuda") || !*field[0] ||
                     strchr(field[0], '*'))) {
        free(text);
        return 0;
    }
    elastic_conformance_options o;
    elastic_conformance_options_default(&o);
    o.backends = field[0];
    o.ops = field[1] ? field[1] : "";
    o.seed = field[2] ? strtoull(field[2], NULL, 10) : 1;
    /* One of the first four cases of each op: the edge cases (1x1x1, tiny,
     * odd sizes). Later ones include model-sized shapes that take tens of
     * seconds in float64 under ASan, which is not what is fuzzed here. */
    o.case_index = field[3] ? atoi(field[3]) : 0;
    if (o.case_index < 0) o.case_index = 0;
    o.case_index %= 4;
    o.whole_model = 0;
    int failures = -1;
    elastic_status st = elastic_conformance_run(&o, sink, &failures);
    if (st != ELASTIC_OK) fuzz_check(elastic_last_error()[0] != '\0', "a refused run says why");
    else fuzz_check(failures == 0, "conformance cases pass on the CPU");
    free(text);
    return 0;
}
