/*
 * cmd_synth.c - `elastic synth`: writes a deterministic synthetic interaction
 * log ("user item" lines) with planted interest clusters and sequential
 * patterns (see elastic_dataset_synth).
 */
#include "cli_util.h"
#include "commands.h"

#include <limits.h>
#include <stdio.h>

const char cmd_synth_usage[] =
    "usage: elastic synth [options] -o FILE\n"
    "Writes a synthetic log as \"user item\" lines (users 1..U in order, items\n"
    "1..I, each user's items in time order): users draw items from one or two\n"
    "interest clusters with Zipf popularity, and each item has a planted\n"
    "successor that follows it with probability P. The same options always\n"
    "give the same file.\n"
    "      --users U      users (default 2000)\n"
    "      --items I      items (default 1000)\n"
    "      --clusters C   interest clusters (default 20)\n"
    "      --min-len N    fewest events per user (default 20)\n"
    "      --max-len N    most events per user (default 80)\n"
    "      --p-seq P      probability of following the planted successor (default 0.5)\n"
    "      --seed S       seed (default 1)\n"
    "  -o, --output FILE  where to write (required)\n"
    "  -h, --help         this text\n";

int cmd_synth(int argc, char **argv)
{
    enum { O_USERS = 300, O_ITEMS, O_CLUSTERS, O_MIN, O_MAX, O_PSEQ, O_SEED };
    static const struct option opts[] = {{"users", required_argument, 0, O_USERS},
                                         {"items", required_argument, 0, O_ITEMS},
                                         {"clusters", required_argument, 0, O_CLUSTERS},
                                         {"min-len", required_argument, 0, O_MIN},
                                         {"max-len", required_argument, 0, O_MAX},
                                         {"p-seq", required_argument, 0, O_PSEQ},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"output", required_argument, 0, 'o'},
                                         {0, 0, 0, 0}};
    elastic_synth_options o;
    elastic_synth_options_default(&o);
    const char *out = NULL;
    long long v;
    int c;
    while ((c = cli_getopt(argc, argv, "o:", opts, 0, NULL)) != -1) {
        switch (c) {
        case O_USERS:
            if (cli_int(optarg, "--users", 1, LLONG_MAX, &v)) return 2;
            o.users = v;
            break;
        case O_ITEMS:
            if (cli_int(optarg, "--items", 1, LLONG_MAX, &v)) return 2;
            o.items = v;
            break;
        case O_CLUSTERS:
            if (cli_int(optarg, "--clusters", 1, LLONG_MAX, &v)) return 2;
            o.clusters = v;
            break;
        case O_MIN:
            if (cli_int(optarg, "--min-len", 1, LLONG_MAX, &v)) return 2;
            o.min_len = v;
            break;
        case O_MAX:
            if (cli_int(optarg, "--max-len", 1, LLONG_MAX, &v)) return 2;
            o.max_len = v;
            break;
        case O_PSEQ:
            if (cli_number(optarg, "--p-seq", 0, 1, 0, &o.p_sequential)) return 2;
            break;
        case O_SEED:
            if (cli_u64(optarg, "--seed", &o.seed)) return 2;
            break;
        case 'o': out = optarg; break;
        default: return cli_stop(c);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!out) return cli_usage_error("-o FILE is required");
    elastic_dataset *d;
    elastic_status st = elastic_dataset_synth(&d, &o);
    if (st != ELASTIC_OK) {
        cli_fail(st, NULL);
        return st == ELASTIC_ERR_INVALID_ARG ? 2 : 1;
    }
    st = elastic_dataset_save_pairs(d, out);
    if (st != ELASTIC_OK) {
        cli_fail(st, NULL);
        elastic_dataset_free(d);
        return 1;
    }
    cli_error("wrote %lld events of %lld users over %lld items to %s",
              (long long)elastic_dataset_num_events(d), (long long)elastic_dataset_num_users(d),
              (long long)elastic_dataset_num_items(d), out);
    elastic_dataset_free(d);
    return 0;
}
