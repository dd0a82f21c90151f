/*
 * cmd_recommend.c - `elastic recommend`: reads histories (one user per line)
 * from a file or stdin and writes each user's top-K items with scores, in the
 * data's own item ids when the model carries an item map. With --candidates,
 * each user's top-K among the items listed for it (the ranking stage).
 */
#include "cli_util.h"
#include "commands.h"
#include "histories.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_recommend_usage[] =
    "usage: elastic recommend --model MODEL [options] [FILE|-]\n"
    "Reads histories (one user per line, item ids oldest first, separated by\n"
    "spaces) from FILE or stdin and writes `line<TAB>item:score ...` per user.\n"
    "  -m, --model M         model file (required)\n" CLI_USAGE_BACKEND
    "  -k, --top K           items per user (default 10)\n" CLI_USAGE_DEVICE_THREADS_FALLBACK
        CLI_USAGE_REFERENCE "      --include-history do not leave the user's own items out\n"
    "      --batch N         users per batch (default 256)\n"
    "      --candidates FILE rank only these items: one line of ids per user, in\n"
    "                        the order of the histories, or one line for all users\n"
    "  -h, --help            this text\n"
    "A model trained by `elastic train` carries the map from the data's item ids\n"
    "to its own: histories and recommendations are then in the data's ids (any\n"
    "text without spaces).\n";

static int32_t map_lookup(const char *name, void *ctx)
{
    return elastic_item_map_id(ctx, name);
}

/* Reads the histories of path ("-": stdin), through the item map if any. */
static int read_histories(const char *path, elastic_item_map *map, histories *h)
{
    FILE *in = stdin;
    char err[256];
    int rc = -1;
    if (strcmp(path, "-") && !(in = fopen(path, "r")))
        snprintf(err, sizeof err, "%s", strerror(errno));
    else
        rc = map ? histories_read_mapped(in, h, map_lookup, map, err, sizeof err)
                 : histories_read(in, h, err, sizeof err);
    if (in && in != stdin) fclose(in);
    if (rc) cli_error("%s: %s", path, err);
    return rc;
}

int cmd_recommend(int argc, char **argv)
{
    enum { O_INCLUDE = 300, O_BATCH, O_CANDIDATES };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"top", required_argument, 0, 'k'},
                                         {"include-history", no_argument, 0, O_INCLUDE},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"candidates", required_argument, 0, O_CANDIDATES},
                                         {0, 0, 0, 0}};
    const char *model_path = NULL, *cand_path = NULL;
    long long top_k = 10, batch = 256;
    int include_history = 0;
    elastic_session_options so;
    cli_run_defaults(&so);
    int c;
    while ((c = cli_getopt(argc, argv, "m:k:", opts, CLI_RUN | CLI_RUN_REFERENCE, &so)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'k':
            if (cli_int(optarg, "--top", 1, 1 << 30, &top_k)) return 2;
            break;
        case O_INCLUDE: include_history = 1; break;
        case O_BATCH:
            if (cli_int(optarg, "--batch", 1, 1 << 20, &batch)) return 2;
            break;
        case O_CANDIDATES: cand_path = optarg; break;
        default: return cli_stop(c);
        }
    }
    if (!model_path) return cli_usage_error("--model is required");
    if (optind < argc - 1) return cli_usage_error("takes at most one input file");

    elastic_model *model;
    elastic_session *session;
    if (cli_open_session(model_path, &so, &model, &session)) return 1;
    /* A trained model's item map: input and output in the data's ids. */
    elastic_item_map *map = NULL;
    if (elastic_model_metadata(model, "item_ids")) {
        elastic_status st = elastic_item_map_init(&map, model);
        if (st != ELASTIC_OK) {
            cli_fail(st, model_path);
            elastic_session_free(session);
            elastic_model_free(model);
            return 1;
        }
    }
    const char *path = optind < argc ? argv[optind] : "-";
    histories h;
    if (read_histories(path, map, &h)) {
        elastic_item_map_free(map);
        elastic_session_free(session);
        elastic_model_free(model);
        return 1;
    }
    int K = (int)top_k, B = (int)batch, status = 0;
    /* Candidates: one row per user, or one row that every user shares. */
    histories cand = {0};
    int have_cand = 0, shared = 0;
    if (cand_path) {
        if (!strcmp(cand_path, "-") && !strcmp(path, "-")) {
            cli_error("--candidates and the histories cannot both be stdin");
            status = 1;
        } else if (read_histories(cand_path, map, &cand)) {
            status = 1;
        } else {
            have_cand = 1;
            shared = cand.count == 1 && h.count != 1;
            if (!shared && cand.count != h.count) {
                cli_error("%s: %d rows of candidates for %d users (one per user, or one for all)",
                          cand_path, cand.count, h.count);
                status = 1;
            }
        }
    }
    int64_t shared_len = shared ? cand.offsets[1] : 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)K * (size_t)B);
    float *scores = malloc(sizeof *scores * (size_t)K * (size_t)B);
    int64_t *offs = malloc(sizeof *offs * (size_t)(B + 1));
    int64_t *coffs = malloc(sizeof *coffs * (size_t)(B + 1));
    int32_t *rep =
        shared ? malloc(sizeof *rep * (size_t)(shared_len > 0 ? shared_len : 1) * (size_t)B) : NULL;
    if (!status && (!ids || !scores || !offs || !coffs || (shared && !rep))) {
        cli_error("out of memory");
        status = 1;
    }
    for (int b = 0; shared && rep && b < B; b++)
        memcpy(rep + (size_t)b * (size_t)shared_len, cand.items, sizeof *rep * (size_t)shared_len);
    for (int first = 0; !status && first < h.count; first += B) {
        int n = h.count - first < B ? h.count - first : B;
        for (int b = 0; b <= n; b++) {
            offs[b] = h.offsets[first + b] - h.offsets[first];
            if (have_cand)
                coffs[b] = shared ? b * shared_len : cand.offsets[first + b] - cand.offsets[first];
        }
        elastic_status st =
            have_cand ? elastic_session_recommend_candidates(
                            session, h.items + h.offsets[first], offs, n,
                            shared ? rep : cand.items + cand.offsets[first], coffs, K,
                            !include_history, ids, scores)
                      : elastic_session_recommend(session, h.items + h.offsets[first], offs, n, K,
                                                  !include_history, ids, scores);
        if (st != ELASTIC_OK) {
            /* Name the input line of the offending user. */
            int user;
            const char *msg = elastic_last_error();
            if (sscanf(msg, "user %d", &user) == 1 && user >= 0 && user < n)
                cli_error("%s line %lld: %s (%s)", path, (long long)h.line[first + user], msg,
                          elastic_status_name(st));
            else
                cli_fail(st, NULL);
            status = 1;
            break;
        }
        for (int b = 0; b < n; b++) {
            printf("%lld\t", (long long)h.line[first + b]);
            for (int j = 0; j < K && ids[b * K + j] > 0; j++) {
                if (map)
                    printf("%s%s:%.6g", j ? " " : "", elastic_item_map_name(map, ids[b * K + j]),
                           scores[b * K + j]);
                else
                    printf("%s%d:%.6g", j ? " " : "", ids[b * K + j], scores[b * K + j]);
            }
            putchar('\n');
        }
    }
    if (!status) cli_report_fallback(session);
    elastic_item_map_free(map);
    free(ids);
    free(scores);
    free(offs);
    free(coffs);
    free(rep);
    if (have_cand) histories_free(&cand);
    histories_free(&h);
    elastic_session_free(session);
    elastic_model_free(model);
    return status;
}
