/*
 * cmd_eval.c - `elastic eval`: HR@10/50, NDCG@10/50 and MRR of a model on the
 * validation or test split of an interaction log (spec section 6), beside
 * the popularity ranking on the same users and targets.
 */
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

const char cmd_eval_usage[] =
    "usage: elastic eval --model MODEL --data FILE [options]\n"
    "Ranks every item for each user with at least 3 events (history left out,\n"
    "ties by smaller id) and prints HR@10, HR@50, NDCG@10, NDCG@50 and MRR of\n"
    "the model and of the popularity ranking. When the model holds an item map\n"
    "(metadata \"item_ids\", written by `elastic train`), the data's item ids are\n"
    "mapped through it; otherwise items are numbered 1..I in order of first\n"
    "appearance in the data.\n"
    "  -m, --model M         model file (required)\n"
    "  -d, --data FILE       interaction log (required)\n"
    "  -f, --format F        auto, pairs, movielens, csv, sequences or recbole (default auto)\n"
    "  -s, --split S         valid or test (default test)\n" CLI_USAGE_RUN
    "      --max-users N     only the first N users with the split (default all)\n"
    "  -h, --help            this text\n";

int cmd_eval(int argc, char **argv)
{
    enum { O_MAX_USERS = 300 };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"format", required_argument, 0, 'f'},
                                         {"split", required_argument, 0, 's'},
                                         {"max-users", required_argument, 0, O_MAX_USERS},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *data_path = NULL;
    elastic_data_format format = ELASTIC_DATA_FORMAT_AUTO;
    elastic_split split = ELASTIC_SPLIT_TEST;
    elastic_session_options so;
    cli_run_defaults(&so);
    long long max_users = 0;
    int c;
    while ((c = cli_getopt(argc, argv, "m:d:f:s:", opts, CLI_RUN, &so)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'd': data_path = optarg; break;
        case 'f':
            if (cli_data_format(optarg, &format)) return 2;
            break;
        case 's':
            if (!strcmp(optarg, "valid"))
                split = ELASTIC_SPLIT_VALID;
            else if (!strcmp(optarg, "test"))
                split = ELASTIC_SPLIT_TEST;
            else {
                cli_error("--split must be valid or test, got '%s'", optarg);
                return 2;
            }
            break;
        case O_MAX_USERS:
            if (cli_int(optarg, "--max-users", 0, 1L << 30, &max_users)) return 2;
            break;
        default: return cli_stop(c);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (!model_path || !data_path) return cli_usage_error("--model and --data are required");

    double t0 = cli_now();
    elastic_dataset *data;
    elastic_status st = elastic_dataset_load(&data, data_path, format);
    if (st != ELASTIC_OK) return cli_fail(st, "data");
    double t_load = cli_now() - t0;
    elastic_model *model;
    st = elastic_model_load(&model, model_path);
    if (st != ELASTIC_OK) {
        cli_fail(st, model_path);
        elastic_dataset_free(data);
        return 1;
    }
    int rc = 1;
    elastic_session *session = NULL;
    const elastic_config *cfg = elastic_model_config(model);
    const char *item_ids = elastic_model_metadata(model, "item_ids");
    if (item_ids) {
        st = elastic_dataset_apply_item_map(data, item_ids);
        if (st != ELASTIC_OK) {
            cli_fail(st, "the data does not fit the model's item map");
            goto done;
        }
        if (elastic_dataset_num_items(data) != cfg->num_items) {
            cli_error("the model's item map has %lld items but the model %lld",
                      (long long)elastic_dataset_num_items(data), (long long)cfg->num_items);
            goto done;
        }
    } else {
        cli_error("note: the model has no item map; items are numbered in order of first "
                  "appearance in %s",
                  data_path);
    }
    st = elastic_session_init(&session, model, &so);
    if (st != ELASTIC_OK) {
        cli_fail(st, "session");
        goto done;
    }
    elastic_metrics m, p;
    double t1 = cli_now();
    st = elastic_evaluate(session, data, split, max_users, &m);
    double t_model = cli_now() - t1;
    if (st != ELASTIC_OK) {
        cli_fail(st, "evaluate");
        goto done;
    }
    t1 = cli_now();
    st = elastic_evaluate_popularity(data, split, max_users, &p);
    double t_pop = cli_now() - t1;
    if (st != ELASTIC_OK) {
        cli_fail(st, "popularity");
        goto done;
    }
    cli_report_fallback(session);
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
