/*
 * cmd_synth.c - `elastic synth`: writes a deterministic synthetic interaction
 * log ("user item" lines) with planted interest clusters and sequential
 * patterns (see elastic_dataset_synth).
 */
#include "commands.h"

#include "elastic.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *synth_usage =
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

static int synth_int(const char *s, const char *what, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < 1) {
        fprintf(stderr, "elastic synth: %s must be a positive integer, got '%s'\n", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

int elastic_cmd_synth(int argc, char **argv)
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
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    elastic_synth_options o;
    elastic_synth_options_default(&o);
    const char *out = NULL;
    long long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case O_USERS:
            if (synth_int(optarg, "--users", &v)) return 2;
            o.users = v;
            break;
        case O_ITEMS:
            if (synth_int(optarg, "--items", &v)) return 2;
            o.items = v;
            break;
        case O_CLUSTERS:
            if (synth_int(optarg, "--clusters", &v)) return 2;
            o.clusters = v;
            break;
        case O_MIN:
            if (synth_int(optarg, "--min-len", &v)) return 2;
            o.min_len = v;
            break;
        case O_MAX:
            if (synth_int(optarg, "--max-len", &v)) return 2;
            o.max_len = v;
            break;
        case O_PSEQ: {
            char *end;
            errno = 0;
            o.p_sequential = strtod(optarg, &end);
            if (end == optarg || *end || errno || !(o.p_sequential >= 0 && o.p_sequential <= 1)) {
                fprintf(stderr, "elastic synth: --p-seq must be a number in 0..1, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        }
        case O_SEED: {
            char *end;
            errno = 0;
            o.seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end || errno || optarg[0] == '-') {
                fprintf(stderr, "elastic synth: --seed must be a non-negative integer\n");
                return 2;
            }
            break;
        }
        case 'o': out = optarg; break;
        case 'h': fputs(synth_usage, stdout); return 0;
        default: fputs(synth_usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "elastic synth: unexpected argument '%s'\n%s", argv[optind], synth_usage);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "elastic synth: -o FILE is required\n%s", synth_usage);
        return 2;
    }
    elastic_dataset *d;
    elastic_status st = elastic_dataset_synth(&d, &o);
    if (st != ELASTIC_OK) {
        fprintf(stderr, "elastic synth: %s (%s)\n", elastic_last_error(), elastic_status_name(st));
        return st == ELASTIC_ERR_INVALID_ARG ? 2 : 1;
    }
    st = elastic_dataset_save_pairs(d, out);
    if (st != ELASTIC_OK) {
        fprintf(stderr, "elastic synth: %s (%s)\n", elastic_last_error(), elastic_status_name(st));
        elastic_dataset_free(d);
        return 1;
    }
    fprintf(stderr, "elastic synth: wrote %lld events of %lld users over %lld items to %s\n",
            (long long)elastic_dataset_num_events(d), (long long)elastic_dataset_num_users(d),
            (long long)elastic_dataset_num_items(d), out);
    elastic_dataset_free(d);
    return 0;
}
