/*
 * elastic.c - the `elastic` command line program.
 *
 *   elastic info MODEL                      what a model file holds
 *   elastic init [--config FILE] [key=value...] [--seed S] -o MODEL
 *   elastic recommend --model M [--backend B] [--top K] [FILE|-]
 *   elastic plan --model M [--backend B] [--batch B] [--len N] [--top K]
 *   elastic conformance [--backends L] [--ops L] [--json] [--perf]
 *   elastic backends                        the backends and their devices
 *
 * Errors go to stderr and give a non-zero exit status.
 */
#include "elastic.h"
#include "commands.h"
#include "histories.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "elastic";

static int fail_status(elastic_status st, const char *what)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", prog, what, elastic_last_error(), elastic_status_name(st));
    return 1;
}

static int parse_int(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "%s: %s must be an integer in %ld..%ld, got '%s'\n", prog, what, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Options shared by the commands that run a model. */
typedef struct run_options {
    const char *model;
    elastic_session_options session;
    long top_k, batch, len;
    int include_history;
} run_options;

enum { OPT_THREADS = 256, OPT_DEVICE, OPT_FALLBACK, OPT_REFERENCE, OPT_INCLUDE, OPT_BATCH, OPT_LEN };

static const struct option run_long_options[] = {
    {"model", required_argument, 0, 'm'},     {"backend", required_argument, 0, 'b'},
    {"top", required_argument, 0, 'k'},       {"device", required_argument, 0, OPT_DEVICE},
    {"threads", required_argument, 0, OPT_THREADS},
    {"allow-fallback", no_argument, 0, OPT_FALLBACK},
    {"reference", no_argument, 0, OPT_REFERENCE},
    {"include-history", no_argument, 0, OPT_INCLUDE},
    {"batch", required_argument, 0, OPT_BATCH}, {"len", required_argument, 0, OPT_LEN},
    {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};

/* Parses run options; returns 0, 1 for --help (usage printed), -1 on error. */
static int parse_run_options(int argc, char **argv, run_options *o, const char *usage)
{
    memset(o, 0, sizeof *o);
    elastic_session_options_default(&o->session);
    o->session.backend = "cpu";
    o->top_k = 10;
    o->batch = 256;
    o->len = 200;
    long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:k:h", run_long_options, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'b': o->session.backend = optarg; break;
        case 'k':
            if (parse_int(optarg, "--top", 1, 1 << 30, &o->top_k)) return -1;
            break;
        case OPT_DEVICE:
            if (parse_int(optarg, "--device", 0, 1 << 20, &v)) return -1;
            o->session.device = (int)v;
            break;
        case OPT_THREADS:
            if (parse_int(optarg, "--threads", 0, 4096, &v)) return -1;
            o->session.num_threads = (int)v;
            break;
        case OPT_FALLBACK: o->session.allow_cpu_fallback = 1; break;
        case OPT_REFERENCE: o->session.backend_options = "cpu.isa=reference"; break;
        case OPT_INCLUDE: o->include_history = 1; break;
        case OPT_BATCH:
            if (parse_int(optarg, "--batch", 1, 1 << 20, &o->batch)) return -1;
            break;
        case OPT_LEN:
            if (parse_int(optarg, "--len", 1, 1 << 24, &o->len)) return -1;
            break;
        case 'h': fputs(usage, stdout); return 1;
        default: fputs(usage, stderr); return -1;
        }
    }
    if (!o->model) {
        fprintf(stderr, "%s: --model is required\n%s", prog, usage);
        return -1;
    }
    return 0;
}

static const char *recommend_usage =
    "usage: elastic recommend --model MODEL [options] [FILE|-]\n"
    "Reads histories (one user per line, item ids oldest first, separated by\n"
    "spaces) from FILE or stdin and writes `line<TAB>item:score ...` per user.\n"
    "  -m, --model M         model file (required)\n"
    "  -b, --backend B       cpu, opencl, cuda or auto (default cpu)\n"
    "  -k, --top K           items per user (default 10)\n"
    "      --device D        device index within the backend (default 0)\n"
    "      --threads T       CPU threads (default: all)\n"
    "      --allow-fallback  run ops the backend lacks on the CPU (reported)\n"
    "      --reference       CPU backend: the scalar float64 reference kernels\n"
    "      --include-history do not leave the user's own items out\n"
    "      --batch N         users per batch (default 256)\n"
    "  -h, --help            this text\n"
    "A model trained by `elastic train` carries the map from the data's item ids\n"
    "to its own: histories and recommendations are then in the data's ids (any\n"
    "text without spaces).\n";

/* Opens a model and a session; prints errors. */
static int open_session(const run_options *o, elastic_model **model, elastic_session **session)
{
    elastic_status st = elastic_model_load(model, o->model);
    if (st != ELASTIC_OK) return fail_status(st, o->model);
    st = elastic_session_init(session, *model, &o->session);
    if (st != ELASTIC_OK) {
        elastic_model_free(*model);
        return fail_status(st, "session");
    }
    return 0;
}

static void report_fallback(const elastic_session *session)
{
    elastic_run_stats stats;
    if (elastic_session_last_stats(session, &stats) == ELASTIC_OK && stats.fallback_nodes > 0)
        fprintf(stderr, "%s: note: %d of %d nodes fell back to the CPU (see `elastic plan`)\n",
                prog, stats.fallback_nodes, stats.nodes);
}

static int32_t map_lookup(const char *name, void *ctx)
{
    return elastic_item_map_id(ctx, name);
}

static int cmd_recommend(int argc, char **argv)
{
    run_options o;
    int r = parse_run_options(argc, argv, &o, recommend_usage);
    if (r) return r > 0 ? 0 : 2;
    if (optind < argc - 1) {
        fprintf(stderr, "%s: recommend takes at most one input file\n", prog);
        return 2;
    }
    elastic_model *model;
    elastic_session *session;
    if (open_session(&o, &model, &session)) return 1;
    /* A trained model's item map: input and output in the data's ids. */
    elastic_item_map *map = NULL;
    if (elastic_model_metadata(model, "item_ids")) {
        elastic_status st = elastic_item_map_init(&map, model);
        if (st != ELASTIC_OK) {
            fail_status(st, o.model);
            elastic_session_free(session);
            elastic_model_free(model);
            return 1;
        }
    }
    FILE *in = stdin;
    const char *path = optind < argc ? argv[optind] : "-";
    histories h;
    char err[256];
    int rc = 1;
    if (strcmp(path, "-") && !(in = fopen(path, "r")))
        snprintf(err, sizeof err, "%s", strerror(errno));
    else
        rc = map ? histories_read_mapped(in, &h, map_lookup, map, err, sizeof err)
                 : histories_read(in, &h, err, sizeof err);
    if (in && in != stdin) fclose(in);
    if (rc) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, err);
        elastic_item_map_free(map);
        elastic_session_free(session);
        elastic_model_free(model);
        return 1;
    }
    int K = (int)o.top_k, status = 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)K * (size_t)o.batch);
    float *scores = malloc(sizeof *scores * (size_t)K * (size_t)o.batch);
    int64_t *offs = malloc(sizeof *offs * (size_t)(o.batch + 1));
    if (!ids || !scores || !offs) {
        fprintf(stderr, "%s: out of memory\n", prog);
        status = 1;
    }
    for (int first = 0; !status && first < h.count; first += (int)o.batch) {
        int n = h.count - first < o.batch ? h.count - first : (int)o.batch;
        for (int b = 0; b <= n; b++) offs[b] = h.offsets[first + b] - h.offsets[first];
        elastic_status st = elastic_session_recommend(session, h.items + h.offsets[first], offs, n,
                                                      K, !o.include_history, ids, scores);
        if (st != ELASTIC_OK) {
            /* Name the input line of the offending user. */
            int user;
            const char *msg = elastic_last_error();
            if (sscanf(msg, "user %d", &user) == 1 && user >= 0 && user < n)
                fprintf(stderr, "%s: %s line %lld: %s (%s)\n", prog, path,
                        (long long)h.line[first + user], msg, elastic_status_name(st));
            else
                fail_status(st, "recommend");
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
    if (!status) report_fallback(session);
    elastic_item_map_free(map);
    free(ids);
    free(scores);
    free(offs);
    histories_free(&h);
    elastic_session_free(session);
    elastic_model_free(model);
    return status;
}

static const char *plan_usage =
    "usage: elastic plan --model MODEL [--backend B] [--batch B] [--len N] [--top K]\n"
    "Prints the execution plan: each node, its backend, output shape and arena\n"
    "offset, fallbacks to the CPU, transfers, and the memory saved by reuse.\n"
    "  -m, --model M, -b, --backend B, --device D, --allow-fallback, --threads T\n"
    "      --batch B (default 256), --len N (default 200), -k, --top K (default 10)\n";

static int cmd_plan(int argc, char **argv)
{
    run_options o;
    int r = parse_run_options(argc, argv, &o, plan_usage);
    if (r) return r > 0 ? 0 : 2;
    elastic_model *model;
    elastic_session *session;
    if (open_session(&o, &model, &session)) return 1;
    elastic_status st = elastic_session_print_plan(session, (int)o.batch, o.len, (int)o.top_k,
                                                   stdout);
    elastic_session_free(session);
    elastic_model_free(model);
    return st == ELASTIC_OK ? 0 : fail_status(st, "plan");
}

static const char *init_usage =
    "usage: elastic init [--config FILE] [key=value ...] [--seed S] -o MODEL\n"
    "Creates a model with random weights (spec section 5). Config keys (spec\n"
    "section 1): model, num_items (required), max_len, hidden, heads, layers,\n"
    "experts, ffn, mem_subkeys, mem_key, mem_topk, ln_eps. FILE holds key=value\n"
    "lines ('#' starts a comment); arguments override it.\n";

static int set_pair(elastic_config *c, const char *pair, const char *where)
{
    char key[64];
    const char *eq = strchr(pair, '=');
    if (!eq || eq == pair || (size_t)(eq - pair) >= sizeof key) {
        fprintf(stderr, "%s: %s: expected key=value, got '%s'\n", prog, where, pair);
        return -1;
    }
    memcpy(key, pair, (size_t)(eq - pair));
    key[eq - pair] = '\0';
    elastic_status st = elastic_config_set(c, key, eq + 1);
    if (st != ELASTIC_OK) {
        fprintf(stderr, "%s: %s: %s\n", prog, where, elastic_last_error());
        return -1;
    }
    return 0;
}

static int read_config_file(elastic_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
        return -1;
    }
    char line[512], where[600];
    int no = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        line[strcspn(line, "#\r\n")] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        char *end = p + strlen(p);
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
        if (!*p) continue;
        snprintf(where, sizeof where, "%s line %d", path, no);
        rc = set_pair(c, p, where);
    }
    fclose(f);
    return rc;
}

static int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"seed", required_argument, 0, 's'},
                                         {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    elastic_config config;
    elastic_config_default(&config);
    const char *out = NULL;
    unsigned long long seed = 1;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (read_config_file(&config, optarg)) return 1;
            break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end || errno) {
                fprintf(stderr, "%s: --seed must be a non-negative integer\n", prog);
                return 2;
            }
            break;
        }
        case 'o': out = optarg; break;
        case 'h': fputs(init_usage, stdout); return 0;
        default: fputs(init_usage, stderr); return 2;
        }
    }
    for (int i = optind; i < argc; i++)
        if (set_pair(&config, argv[i], "argument")) return 2;
    if (!out) {
        fprintf(stderr, "%s: init needs -o MODEL\n%s", prog, init_usage);
        return 2;
    }
    elastic_model *model;
    elastic_status st = elastic_model_init_random(&model, &config, seed);
    if (st != ELASTIC_OK) return fail_status(st, "init");
    st = elastic_model_save(model, out);
    elastic_model_free(model);
    if (st != ELASTIC_OK) return fail_status(st, out);
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs("usage: elastic info MODEL\nPrints the config, parameters and metadata of a "
              "model file.\n",
              argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 2;
    }
    elastic_model *model;
    elastic_status st = elastic_model_load(&model, argv[1]);
    if (st != ELASTIC_OK) return fail_status(st, argv[1]);
    const elastic_config *c = elastic_model_config(model);
    printf("model       %s\n", c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic");
    printf("num_items   %lld\nmax_len     %lld\nhidden      %lld\nheads       %lld\n"
           "layers      %lld\nffn         %lld\n",
           (long long)c->num_items, (long long)c->max_len, (long long)c->hidden,
           (long long)c->heads, (long long)c->layers, (long long)c->ffn);
    if (c->model == ELASTIC_MODEL_KIND_ELASTIC)
        printf("experts     %lld\nmem_subkeys %lld\nmem_key     %lld\nmem_topk    %lld\n",
               (long long)c->experts, (long long)c->mem_subkeys, (long long)c->mem_key,
               (long long)c->mem_topk);
    printf("ln_eps      %g\n", c->ln_eps);
    long long total = 0;
    int n = elastic_model_tensor_count(model);
    printf("tensors     %d\n", n);
    for (int i = 0; i < n; i++) {
        const char *name = elastic_model_tensor_name(model, i);
        int64_t shape[4];
        int ndim;
        elastic_model_tensor(model, name, NULL, shape, &ndim);
        long long numel = 1;
        printf("  %-32s [", name);
        for (int d = 0; d < ndim; d++) {
            printf("%s%lld", d ? ", " : "", (long long)shape[d]);
            numel *= shape[d];
        }
        printf("]\n");
        total += numel;
    }
    printf("parameters  %lld (%.2f MiB)\n", total, (double)total * 4 / (1024.0 * 1024.0));
    int n_meta = elastic_model_metadata_count(model);
    if (n_meta) printf("metadata    %d\n", n_meta);
    for (int i = 0; i < n_meta; i++) {
        const char *key = elastic_model_metadata_key(model, i);
        const char *value = elastic_model_metadata(model, key);
        size_t len = strlen(value);
        if (len > 60)
            printf("  %-32s %.56s... (%zu bytes)\n", key, value, len);
        else
            printf("  %-32s %s\n", key, value);
    }
    elastic_model_free(model);
    return 0;
}

static const char *conformance_usage =
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
    "  -v, --verbose        a line for every case\n";

static int cmd_conformance(int argc, char **argv)
{
    enum { O_BACKENDS = 300, O_OPS, O_SEED, O_CASE, O_JSON, O_PERF, O_NO_MODELS };
    static const struct option opts[] = {
        {"backends", required_argument, 0, O_BACKENDS}, {"ops", required_argument, 0, O_OPS},
        {"seed", required_argument, 0, O_SEED},         {"case", required_argument, 0, O_CASE},
        {"json", no_argument, 0, O_JSON},               {"perf", no_argument, 0, O_PERF},
        {"no-models", no_argument, 0, O_NO_MODELS},     {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0}};
    elastic_conformance_options o;
    elastic_conformance_options_default(&o);
    long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case O_BACKENDS: o.backends = optarg; break;
        case O_OPS: o.ops = optarg; break;
        case O_SEED: {
            char *end;
            errno = 0;
            o.seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end || errno) {
                fprintf(stderr, "%s: --seed must be a non-negative integer\n", prog);
                return 2;
            }
            break;
        }
        case O_CASE:
            if (parse_int(optarg, "--case", 0, 1000, &v)) return 2;
            o.case_index = (int)v;
            break;
        case O_JSON: o.json = 1; break;
        case O_PERF: o.perf = 1; break;
        case O_NO_MODELS: o.whole_model = 0; break;
        case 'v': o.verbose = 1; break;
        case 'h': fputs(conformance_usage, stdout); return 0;
        default: fputs(conformance_usage, stderr); return 2;
        }
    }
    int failures = 0;
    elastic_status st = elastic_conformance_run(&o, stdout, &failures);
    if (st != ELASTIC_OK) return fail_status(st, "conformance");
    return failures ? 1 : 0;
}

static int cmd_backends(void)
{
    for (int i = 0; i < elastic_backend_count(); i++) {
        elastic_backend_info info;
        if (elastic_backend_get_info(i, &info) != ELASTIC_OK) continue;
        printf("%-7s %-14s %s\n", info.name,
               !info.compiled ? "not compiled" : info.available ? "available" : "unavailable",
               info.description);
    }
    return 0;
}

static const char *main_usage =
    "usage: elastic COMMAND [options]   (elastic COMMAND --help for more)\n"
    "  info MODEL         show a model file's config and parameters\n"
    "  init               create a model with random weights\n"
    "  recommend          top-K items for histories read from a file or stdin\n"
    "  plan               print the execution plan of a model on a backend\n"
    "  conformance        check every backend against the float64 reference\n"
    "  backends           list backends and devices\n"
    "  synth              write a synthetic interaction log\n"
    "  train              train a model on an interaction log\n"
    "  eval               HR, NDCG and MRR of a model, beside popularity\n"
    "  bench              time and memory of ELASTIC and SASRec against n\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(main_usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("elastic %s\n", elastic_version());
        return 0;
    }
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "init")) return cmd_init(argc - 1, argv + 1);
    if (!strcmp(cmd, "recommend")) return cmd_recommend(argc - 1, argv + 1);
    if (!strcmp(cmd, "plan")) return cmd_plan(argc - 1, argv + 1);
    if (!strcmp(cmd, "backends")) return cmd_backends();
    if (!strcmp(cmd, "conformance")) return cmd_conformance(argc - 1, argv + 1);
    if (!strcmp(cmd, "synth")) return elastic_cmd_synth(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return elastic_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return elastic_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return elastic_cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n%s", prog, cmd, main_usage);
    return 2;
}
