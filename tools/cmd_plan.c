/*
 * cmd_plan.c - `elastic plan`: the execution plan of a model on a backend
 * for a batch shape: nodes, their backends, shapes, arena offsets, CPU
 * fallbacks, transfers and the memory saved by reuse.
 */
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>

const char cmd_plan_usage[] =
    "usage: elastic plan --model MODEL [options]\n"
    "Prints the execution plan: each node, its backend, output shape and arena\n"
    "offset, fallbacks to the CPU, transfers, and the memory saved by reuse.\n"
    "  -m, --model M         model file (required)\n" CLI_USAGE_RUN CLI_USAGE_REFERENCE
    "      --batch B         users per batch (default 256)\n"
    "      --len N           history length (default 200)\n"
    "  -k, --top K           items per user (default 10)\n"
    "  -h, --help            this text\n";

int cmd_plan(int argc, char **argv)
{
    enum { O_BATCH = 300, O_LEN };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"top", required_argument, 0, 'k'},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"len", required_argument, 0, O_LEN},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL;
    long long top_k = 10, batch = 256, len = 200;
    elastic_session_options so;
    cli_run_defaults(&so);
    int c;
    while ((c = cli_getopt(argc, argv, "m:k:", opts, CLI_RUN | CLI_RUN_REFERENCE, &so)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'k':
            if (cli_int(optarg, "--top", 1, 1 << 30, &top_k)) return 2;
            break;
        case O_BATCH:
            if (cli_int(optarg, "--batch", 1, 1 << 20, &batch)) return 2;
            break;
        case O_LEN:
            if (cli_int(optarg, "--len", 1, 1 << 24, &len)) return 2;
            break;
        default: return cli_stop(c);
        }
    }
    if (!model_path) return cli_usage_error("--model is required");
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    elastic_model *model;
    elastic_session *session;
    if (cli_open_session(model_path, &so, &model, &session)) return 1;
    elastic_status st = elastic_session_print_plan(session, (int)batch, len, (int)top_k, stdout);
    elastic_session_free(session);
    elastic_model_free(model);
    return st == ELASTIC_OK ? 0 : cli_fail(st, NULL);
}
