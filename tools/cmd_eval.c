/*
 * cmd_eval.c - `elastic eval`: HR@10/50, NDCG@10/50 and MRR of a model on the
 * validation or test split of an interaction log (spec section 6), beside
 * the popularity ranking on the same users and targets.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "commands.h"

#include "elastic.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *eval_usage =
    "usage: elastic eval --model MODEL --data FILE [options]\n"
    "Ranks every item for each user with at least 3 events (history left out,\n"
    "ties by smaller id) and prints HR@10, HR@50, NDCG@10, NDCG@50 and MRR of\n"
    "the model and of the popularity ranking. When the model holds an item map\n"
    "(metadata \"item_ids\", written by `elastic train`), the data's item ids are\n"
    "mapped through it; otherwise items are numbered 1..I in order of first\n"
    "appearance in the data.\n"
    "  -m, --model M         model file (required)\n"
    "  -d, --data FILE       interaction log (required)\n"
    "  -f, --format F        auto, pairs, movielens or csv (default auto)\n"
    "  -s, --split S         valid or test (default test)\n"
    "  -b, --backend B       cpu, opencl, cuda or auto (default cpu)\n"
    "      --device D        device index within the backend (default 0)\n"
    "      --threads T       CPU threads (default: all)\n"
    "      --allow-fallback  run ops the backend lacks on the CPU (reported)\n"
    "      --max-users N     only the first N users with the split (default all)\n"
    "  -h, --help            this text\n";

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int eval_int(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "elastic eval: %s must be an integer in %ld..%ld, got '%s'\n", what, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int eval_fail(elastic_status st, const char *what)
{
    fprintf(stderr, "elastic eval: %s: %s (%s)\n", what, elastic_last_error(),
            elastic_status_name(st));
    return 1;
}

int elastic_cmd_eval(int argc, char **argv)
{
    enum { O_DEVICE = 300, O_THREADS, O_FALLBACK, O_MAX_USERS };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"format", required_argument, 0, 'f'},
                                         {"split", required_argument, 0, 's'},
                                         {"backend", required_argument, 0, 'b'},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"allow-fallback", no_argument, 0, O_FALLBACK},
                                         {"max-users", required_argument, 0, O_MAX_USERS},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *data_path = NULL;
    elastic_data_format format = ELASTIC_DATA_FORMAT_AUTO;
    elastic_split split = ELASTIC_SPLIT_TEST;
    elastic_session_options so;
    elastic_session_options_default(&so);
    so.backend = "cpu";
    long v, max_users = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:d:f:s:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'd': data_path = optarg; break;
        case 'f':
            if (!strcmp(optarg, "auto"))
                format = ELASTIC_DATA_FORMAT_AUTO;
            else if (!strcmp(optarg, "pairs"))
                format = ELASTIC_DATA_FORMAT_PAIRS;
            else if (!strcmp(optarg, "movielens"))
                format = ELASTIC_DATA_FORMAT_MOVIELENS;
            else if (!strcmp(optarg, "csv"))
                format = ELASTIC_DATA_FORMAT_CSV;
            else {
                fprintf(stderr, "elastic eval: --format must be auto, pairs, movielens or csv\n");
                return 2;
            }
            break;
        case 's':
            if (!strcmp(optarg, "valid"))
                split = ELASTIC_SPLIT_VALID;
            else if (!strcmp(optarg, "test"))
                split = ELASTIC_SPLIT_TEST;
            else {
                fprintf(stderr, "elastic eval: --split must be valid or test\n");
                return 2;
            }
            break;
        case 'b': so.backend = optarg; break;
        case O_DEVICE:
            if (eval_int(optarg, "--device", 0, 1 << 20, &v)) return 2;
            so.device = (int)v;
            break;
        case O_THREADS:
            if (eval_int(optarg, "--threads", 0, 4096, &v)) return 2;
            so.num_threads = (int)v;
            break;
        case O_FALLBACK: so.allow_cpu_fallback = 1; break;
        case O_MAX_USERS:
            if (eval_int(optarg, "--max-users", 0, 1L << 30, &max_users)) return 2;
            break;
        case 'h': fputs(eval_usage, stdout); return 0;
        default: fputs(eval_usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "elastic eval: unexpected argument '%s'\n%s", argv[optind], eval_usage);
        return 2;
    }
    if (!model_path || !data_path) {
        fprintf(stderr, "elastic eval: --model and --data are required\n%s", eval_usage);
        return 2;
    }

    double t0 = now();
    elastic_dataset *data;
    elastic_status st = elastic_dataset_load(&data, data_path, format);
    if (st != ELASTIC_OK) return eval_fail(st, "data");
    double t_load = now() - t0;
    elastic_model *model;
    st = elastic_model_load(&model, model_path);
    if (st != ELASTIC_OK) {
        elastic_dataset_free(data);
        return eval_fail(st, model_path);
    }
    int rc = 1;
    elastic_session *session = NULL;
    const elastic_config *cfg = elastic_model_config(model);
    const char *item_ids = elastic_model_metadata(model, "item_ids");
    if (item_ids) {
        st = elastic_dataset_apply_item_map(data, item_ids);
        if (st != ELASTIC_OK) {
            fprintf(stderr, "elastic eval: the data does not fit the model's item map: %s (%s)\n",
                    elastic_last_error(), elastic_status_name(st));
            goto done;
        }
        if (elastic_dataset_num_items(data) != cfg->num_items) {
            fprintf(stderr,
                    "elastic eval: the model's item map has %lld items but the model %lld\n",
                    (long long)elastic_dataset_num_items(data), (long long)cfg->num_items);
            goto done;
        }
    } else {
        fprintf(stderr,
                "elastic eval: note: the model has no item map; items are numbered in order "
                "of first appearance in %s\n",
                data_path);
    }
    st = elastic_session_init(&session, model, &so);
    if (st != ELASTIC_OK) {
        eval_fail(st, "session");
        goto done;
    }
    elastic_metrics m, p;
    double t1 = now();
    st = elastic_evaluate(session, data, split, max_users, &m);
    double t_model = now() - t1;
    if (st != ELASTIC_OK) {
        eval_fail(st, "evaluate");
        goto done;
    }
    t1 = now();
    st = elastic_evaluate_popularity(data, split, max_users, &p);
    double t_pop = now() - t1;
    if (st != ELASTIC_OK) {
        eval_fail(st, "popularity");
        goto done;
    }
    elastic_run_stats stats;
    if (elastic_session_last_stats(session, &stats) == ELASTIC_OK && stats.fallback_nodes > 0)
        fprintf(stderr, "elastic eval: note: %d of %d nodes fell back to the CPU\n",
                stats.fallback_nodes, stats.nodes);
    printf("data     %s: %lld users, %lld items, %lld events (loaded in %.2f s)\n", data_path,
           (long long)elastic_dataset_num_users(data), (long long)elastic_dataset_num_items(data),
           (long long)elastic_dataset_num_events(data), t_load);
    printf("model    %s: %s, %lld items, max_len %lld, on %s\n", model_path,
           cfg->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic",
           (long long)cfg->num_items, (long long)cfg->max_len, elastic_session_backend(session));
    printf("split    %s, %lld users evaluated\n\n", split == ELASTIC_SPLIT_VALID ? "valid" : "test",
           (long long)m.users);
    printf("%-9s %10s %11s\n", "metric", "model", "popularity");
    printf("%-9s %10.4f %11.4f\n", "HR@10", m.hr10, p.hr10);
    printf("%-9s %10.4f %11.4f\n", "HR@50", m.hr50, p.hr50);
    printf("%-9s %10.4f %11.4f\n", "NDCG@10", m.ndcg10, p.ndcg10);
    printf("%-9s %10.4f %11.4f\n", "NDCG@50", m.ndcg50, p.ndcg50);
    printf("%-9s %10.4f %11.4f\n", "MRR", m.mrr, p.mrr);
    printf("%-9s %10.2f %11.2f\n", "seconds", t_model, t_pop);
    rc = 0;
done:
    elastic_session_free(session);
    elastic_model_free(model);
    elastic_dataset_free(data);
    return rc;
}
