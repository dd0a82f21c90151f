/*
 * cmd_conformance.c - `elastic conformance`: every op over edge-case shapes
 * on every backend against the CPU's float64 reference, then whole models;
 * a table of ops by backends, a coverage report and the counts.
 */
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>

const char cmd_conformance_usage[] =
    "usage: elastic conformance [options]\n"
    "Runs every op over edge-case shapes on every backend against the CPU's\n"
    "float64 reference, then whole ELASTIC and SASRec models; prints a table\n"
    "of ops by backends, a coverage report, and `N passed, N failed`.\n"
    "      --backends LIST  e.g. cpu,cpu:avx2,cpu:*,opencl,opencl:1,cuda (default: all available)\n"
    "      --ops LIST       e.g. linear,attention (default: all)\n"
    "      --seed S         base seed (default 20261122); failures print how to replay\n"
    "      --case I         only case I of each op\n"
    "      --json           JSON report on stdout (the text goes to stderr)\n"
    "      --perf           time every op and shape: ms, GFLOP/s, GB/s\n"
    "      --no-models      skip the whole-model checks\n"
    "      --small-models   the whole models at reduced sizes (max_len 24, 300 items):\n"
    "                       quick runs under emulation\n"
    "  -v, --verbose        a line for every case\n"
    "  -h, --help           this text\n";

int cmd_conformance(int argc, char **argv)
{
    enum { O_BACKENDS = 300, O_OPS, O_SEED, O_CASE, O_JSON, O_PERF, O_NO_MODELS, O_SMALL_MODELS };
    static const struct option opts[] = {{"backends", required_argument, 0, O_BACKENDS},
                                         {"ops", required_argument, 0, O_OPS},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"case", required_argument, 0, O_CASE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"perf", no_argument, 0, O_PERF},
                                         {"no-models", no_argument, 0, O_NO_MODELS},
                                         {"small-models", no_argument, 0, O_SMALL_MODELS},
                                         {"verbose", no_argument, 0, 'v'},
                                         {0, 0, 0, 0}};
    elastic_conformance_options o;
    elastic_conformance_options_default(&o);
    long long v;
    int c;
    while ((c = cli_getopt(argc, argv, "v", opts, 0, NULL)) != -1) {
        switch (c) {
        case O_BACKENDS: o.backends = optarg; break;
        case O_OPS: o.ops = optarg; break;
        case O_SEED:
            if (cli_u64(optarg, "--seed", &o.seed)) return 2;
            break;
        case O_CASE:
            if (cli_int(optarg, "--case", 0, 1000, &v)) return 2;
            o.case_index = (int)v;
            break;
        case O_JSON: o.json = 1; break;
        case O_PERF: o.perf = 1; break;
        case O_NO_MODELS: o.whole_model = 0; break;
        case O_SMALL_MODELS: o.whole_model = 2; break;
        case 'v': o.verbose = 1; break;
        default: return cli_stop(c);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    int failures = 0;
    elastic_status st = elastic_conformance_run(&o, stdout, &failures);
    if (st != ELASTIC_OK) return cli_fail(st, NULL);
    return failures ? 1 : 0;
}
