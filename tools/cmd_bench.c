/*
 * cmd_bench.c - `elastic bench`: forward time and memory of ELASTIC and of
 * the SASRec baseline against the history length n, per backend, with the
 * ratios ELASTIC/SASRec taken from the same run, and a B=256, n=200
 * throughput line. SASRec runs twice: "sasrec" with this library's
 * streaming attention (memory linear in n) and "sasrec-std" with standard
 * attention, whose softmax weights [B, h, n, n] are a tensor of the plan
 * (ELASTIC_ATTENTION_MATERIALIZED, as standard implementations hold them).
 * See docs/benchmarks/benchmarks.md for how the numbers are made.
 *
 * Method, per backend, length n and model:
 *   - a random model (I=3706, d=64, L=2, k=16, otherwise the spec defaults,
 *     max_len = the largest n) and random histories of exactly n items from
 *     the printed seed; every model reads the same histories; sasrec and
 *     sasrec-std share their weights;
 *   - batch B = max(1, TOKENS / n) with TOKENS = 65536, so B*n is constant
 *     (unless the budget rule below halves it);
 *   - a fresh session per model, one warm-up run each (it builds the plan),
 *     then timed rounds of elastic_session_user_vectors, one run of each
 *     model per round (interleaved, so that load from other processes hits
 *     both alike), until 10 rounds or until the next round would overrun
 *     the budget (at least one round); the median per model;
 *   - memory: the planned arena (activations, liveness reuse) plus the
 *     weights; beside it the measured growth of the process's peak RSS
 *     over the warm-up run, which allocates the arena (Linux:
 *     /proc/self/clear_refs + VmHWM), when available, and the whole
 *     process's peak RSS over that run ("proc", weights included);
 *   - where a single batch is predicted (from the previous length's
 *     measured time per user, scaled as n^2 for SASRec and n for ELASTIC)
 *     to take more than half the budget, B is halved for all models until
 *     it fits or B=1; a model still over at B=1 is reported as "skipped
 *     (over time budget)". The same for memory: B is halved while
 *     sasrec-std's weights tensor of one layer, B*h*n*n floats, would
 *     exceed --max-memory, and sasrec-std is skipped ("over memory budget")
 *     if it still does at B=1. Predictions only choose B and what is
 *     skipped; they are never reported.
 */
#include "bench_items.h"
#include "cli_util.h"
#include "commands.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define BENCH_TOKENS 65536
#define BENCH_MAX_REPS 10
#define BENCH_MAX_LIST 16
#define BENCH_MODELS 3

const char cmd_bench_usage[] =
    "usage: elastic bench [options]\n"
    "Times the forward pass (user vectors) of ELASTIC and SASRec against the\n"
    "history length n on each backend; B = max(1, 65536/n) users per batch,\n"
    "halved while a batch is predicted to take over half the time budget, or\n"
    "sasrec-std's weights [B,h,n,n] would not fit the memory budget.\n"
    "  --backends L      comma list of cpu, opencl, cuda (default: all available)\n"
    "  --models L        comma list of elastic, sasrec, sasrec-std (default: all);\n"
    "                    sasrec-std = SASRec with standard attention, which holds\n"
    "                    the softmax weights [B, h, n, n] in memory\n"
    "  --lengths L       comma list of n (default 64,256,1024,4096,8192,16384,65536)\n"
    "  --max-seconds S   time budget per configuration (default 30)\n"
    "  --max-memory M    MiB that sasrec-std's weights may take (default: half the RAM)\n"
    "  --device D        device index within each backend (default 0)\n"
    "  --threads T       CPU threads (default: all)\n"
    "  --allow-fallback  run ops a backend lacks on the CPU (reported)\n"
    "  --backend-options TEXT  backend.key=value,... (README: cpu.isa, opencl.device, ...)\n"
    "  --seed S          seed of the weights and histories (default 1)\n"
    "  --no-throughput   leave out the B=256, n=200 throughput lines\n"
    "  --items L         instead: top-10 recommendation for B=256 users (histories\n"
    "                    of 50) over catalogues of each size in L (e.g.\n"
    "                    3706,100000,1000000,10000000) beside the memory bandwidth\n"
    "                    (by default on the CPU only; --backends to choose)\n"
    "  --json            JSON on stdout (the tables then go to stderr)\n"
    "  -h, --help        this text\n";

typedef enum bench_state {
    BENCH_RAN = 0,
    BENCH_SKIPPED_TIME = 1,   /* predicted over the time budget at B = 1 */
    BENCH_SKIPPED_MEMORY = 2, /* sasrec-std's weights over --max-memory at B = 1 */
    BENCH_FAILED = 3
} bench_state;

typedef struct bench_result {
    char backend[16];
    char device[192];
    int model; /* index in model_names */
    int64_t n;
    int batch;
    int throughput; /* the B=256, n=200 line */
    bench_state state;
    char error[256];
    int reps;
    double median_s, min_s, warmup_s;
    double flops;
    size_t arena_bytes, weight_bytes, max_tensor_bytes;
    long long rss_growth; /* bytes, -1 when not measurable */
    long long proc_peak;  /* the whole process's peak RSS over the warm-up, -1 when unknown */
} bench_result;

enum { MODEL_ELASTIC = 0, MODEL_SASREC = 1, MODEL_SASREC_STD = 2 };
static const char *model_names[BENCH_MODELS] = {"elastic", "sasrec", "sasrec-std"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Parses a comma list of lengths n (or of catalogue sizes: what names the flag). */
static int parse_lengths(const char *s, int64_t *out, int *count, const char *what)
{
    *count = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        if (*count == BENCH_MAX_LIST) {
            cli_error("%s takes at most %d values", what, BENCH_MAX_LIST);
            return -1;
        }
        char *tok = strndup(p, len);
        long long v;
        int bad = !tok || cli_int(tok, what, 1, 1 << 30, &v);
        free(tok);
        if (bad) return -1;
        out[(*count)++] = v;
        p += len;
        if (!*p) return 0;
    }
}

/* Parses a comma list of names out of `known`; sets want[i]. */
static int parse_names(const char *s, const char *const *known, int n_known, int *want)
{
    for (int i = 0; i < n_known; i++)
        want[i] = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    int any = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        for (int i = 0; i < n_known; i++)
            if (!strcmp(tok, known[i])) want[i] = found = any = 1;
        if (!found) {
            cli_error("unknown name '%s'", tok);
            return -1;
        }
    }
    if (!any) cli_error("an empty list of names");
    return any ? 0 : -1;
}

static size_t weight_bytes(const elastic_model *m)
{
    size_t total = 0;
    for (int i = 0; i < elastic_model_tensor_count(m); i++) {
        const float *data;
        int64_t shape[4];
        int ndim;
        if (elastic_model_tensor(m, elastic_model_tensor_name(m, i), &data, shape, &ndim) !=
            ELASTIC_OK)
            continue;
        size_t numel = 1;
        for (int k = 0; k < ndim; k++)
            numel *= (size_t)shape[k];
        total += numel * sizeof(float);
    }
    return total;
}

typedef struct bench_ctx {
    const elastic_model *models[BENCH_MODELS]; /* sasrec-std: the sasrec model */
    const int32_t *items;                      /* BENCH_TOKENS or more random ids */
    int64_t *offsets;
    float *out;
    elastic_session_options session; /* --device --threads --allow-fallback */
    double budget;
} bench_ctx;

static void set_failed(bench_result *r)
{
    r->state = BENCH_FAILED;
    snprintf(r->error, sizeof r->error, "%s", elastic_last_error());
}

/* Runs the configurations rs[0..count-1] (one backend, one n and B; one per
 * model): a session each, a warm-up each (it builds the plan; the peak-RSS
 * growth is measured over it), then timed rounds of one run per model, so
 * that a change in the machine's load hits both models alike. Rounds stop
 * after BENCH_MAX_REPS or when the next would pass count * budget seconds
 * (warm-ups included); there is at least one. */
static void bench_configs(const bench_ctx *c, bench_result *rs, int count)
{
    elastic_session *sess[BENCH_MODELS] = {NULL, NULL, NULL};
    double times[BENCH_MODELS][BENCH_MAX_REPS], spent = 0, last_round = 0;
    int n_live = 0;
    for (int i = 0; i < count; i++) {
        bench_result *r = &rs[i];
        elastic_session_options so = c->session;
        so.backend = r->backend;
        so.attention = r->model == MODEL_SASREC_STD ? ELASTIC_ATTENTION_MATERIALIZED
                                                    : ELASTIC_ATTENTION_STREAMING;
        const elastic_model *m = c->models[r->model];
        r->weight_bytes = weight_bytes(m);
        r->rss_growth = -1;
        r->proc_peak = -1;
        r->reps = 0;
        if (elastic_session_init(&sess[i], m, &so) != ELASTIC_OK) {
            set_failed(r);
            continue;
        }
        snprintf(r->device, sizeof r->device, "%s", elastic_session_backend(sess[i]));
    }
    for (int b = 0; b <= rs[0].batch; b++)
        c->offsets[b] = (int64_t)b * rs[0].n;
    for (int i = 0; i < count; i++) {
        bench_result *r = &rs[i];
        if (!sess[i]) continue;
        long long rss0 = cli_rss_reset();
        double t0 = cli_now();
        elastic_status st =
            elastic_session_user_vectors(sess[i], c->items, c->offsets, r->batch, c->out);
        r->warmup_s = cli_now() - t0;
        spent += r->warmup_s;
        last_round += r->warmup_s;
        if (st != ELASTIC_OK) {
            set_failed(r);
            elastic_session_free(sess[i]);
            sess[i] = NULL;
            continue;
        }
        long long peak = cli_rss_peak();
        if (rss0 >= 0 && peak >= 0) r->rss_growth = peak - rss0;
        if (rss0 >= 0) r->proc_peak = peak;
        elastic_run_stats stats;
        memset(&stats, 0, sizeof stats);
        elastic_session_last_stats(sess[i], &stats);
        r->flops = stats.flops;
        r->arena_bytes = stats.arena_bytes;
        r->max_tensor_bytes = stats.max_tensor_bytes;
        n_live++;
    }
    for (int round = 0; n_live > 0 && round < BENCH_MAX_REPS; round++) {
        if (round > 0 && spent + last_round > c->budget * count) break;
        last_round = 0;
        for (int i = 0; i < count; i++) {
            bench_result *r = &rs[i];
            if (!sess[i]) continue;
            double t0 = cli_now();
            elastic_status st =
                elastic_session_user_vectors(sess[i], c->items, c->offsets, r->batch, c->out);
            double dt = cli_now() - t0;
            if (st != ELASTIC_OK) {
                set_failed(r);
                elastic_session_free(sess[i]);
                sess[i] = NULL;
                n_live--;
                continue;
            }
            times[i][r->reps++] = dt;
            last_round += dt;
        }
        spent += last_round;
    }
    for (int i = 0; i < count; i++) {
        bench_result *r = &rs[i];
        if (!sess[i]) continue;
        qsort(times[i], (size_t)r->reps, sizeof times[i][0], cmp_double);
        r->median_s = r->reps % 2 ? times[i][r->reps / 2]
                                  : 0.5 * (times[i][r->reps / 2 - 1] + times[i][r->reps / 2]);
        r->min_s = times[i][0];
        r->state = BENCH_RAN;
        elastic_session_free(sess[i]);
    }
}

static double mib(size_t bytes)
{
    return (double)bytes / 1048576.0;
}

/* The softmax weights of standard attention: B*h*n*n floats per layer. */
static double std_attention_bytes(int batch, int64_t n, int64_t heads)
{
    return (double)batch * (double)heads * (double)n * (double)n * 4.0;
}

static void print_header(FILE *out)
{
    fprintf(out, "%-8s %-10s %6s %5s %5s %11s %10s %10s %8s %10s %10s %10s %11s %9s %9s\n",
            "backend", "model", "n", "B", "reps", "ms/batch", "us/user", "users/s", "GFLOP/s",
            "arena MiB", "peak MiB", "RSS+ MiB", "maxT MiB", "maxT/pos", "proc MiB");
}

static void print_row(FILE *out, const bench_result *r)
{
    fprintf(out, "%-8s %-10s %6lld %5d ", r->backend, model_names[r->model], (long long)r->n,
            r->batch);
    if (r->state == BENCH_SKIPPED_TIME || r->state == BENCH_SKIPPED_MEMORY) {
        fprintf(out, "skipped (over %s budget)\n",
                r->state == BENCH_SKIPPED_TIME ? "time" : "memory");
        return;
    }
    if (r->state == BENCH_FAILED) {
        fprintf(out, "failed: %s\n", r->error);
        return;
    }
    char rss[32];
    if (r->rss_growth >= 0)
        snprintf(rss, sizeof rss, "%.1f", (double)r->rss_growth / 1048576.0);
    else
        snprintf(rss, sizeof rss, "n/a");
    char proc[32];
    if (r->proc_peak >= 0)
        snprintf(proc, sizeof proc, "%.1f", (double)r->proc_peak / 1048576.0);
    else
        snprintf(proc, sizeof proc, "n/a");
    fprintf(out, "%5d %11.2f %10.1f %10.0f %8.1f %10.1f %10.1f %10s %11.2f %9.0f %9s\n", r->reps,
            r->median_s * 1e3, r->median_s * 1e6 / r->batch, r->batch / r->median_s,
            r->flops / r->median_s * 1e-9, mib(r->arena_bytes),
            mib(r->arena_bytes + r->weight_bytes), rss, mib(r->max_tensor_bytes),
            (double)r->max_tensor_bytes / 4.0 / ((double)r->batch * (double)r->n), proc);
}

static void json_result(FILE *out, const bench_result *r, int last)
{
    fprintf(out,
            "    {\"backend\": \"%s\", \"device\": \"%s\", \"model\": \"%s\", \"n\": %lld, "
            "\"batch\": %d, \"kind\": \"%s\", \"state\": \"%s\"",
            r->backend, r->device, model_names[r->model], (long long)r->n, r->batch,
            r->throughput ? "throughput" : "scaling",
            r->state == BENCH_RAN              ? "ran"
            : r->state == BENCH_SKIPPED_TIME   ? "skipped (time)"
            : r->state == BENCH_SKIPPED_MEMORY ? "skipped (memory)"
                                               : "failed");
    if (r->state == BENCH_FAILED) {
        fputs(", \"error\": \"", out);
        for (const char *p = r->error; *p; p++)
            if (*p == '"' || *p == '\\')
                fprintf(out, "\\%c", *p);
            else if ((unsigned char)*p >= 32)
                fputc(*p, out);
        fputc('"', out);
    }
    if (r->state == BENCH_RAN) {
        fprintf(out,
                ", \"reps\": %d, \"warmup_s\": %.6g, \"median_s\": %.6g, \"min_s\": %.6g, "
                "\"us_per_user\": %.6g, \"users_per_s\": %.6g, \"gflop_per_batch\": %.6g, "
                "\"gflops\": %.6g, \"arena_bytes\": %zu, \"weight_bytes\": %zu, "
                "\"peak_bytes\": %zu, \"rss_growth_bytes\": %lld, \"max_tensor_bytes\": %zu, "
                "\"nn_bytes\": %.6g, \"process_peak_rss_bytes\": %lld",
                r->reps, r->warmup_s, r->median_s, r->min_s, r->median_s * 1e6 / r->batch,
                r->batch / r->median_s, r->flops * 1e-9, r->flops / r->median_s * 1e-9,
                r->arena_bytes, r->weight_bytes, r->arena_bytes + r->weight_bytes, r->rss_growth,
                r->max_tensor_bytes, (double)r->batch * (double)r->n * (double)r->n * 4.0,
                r->proc_peak);
    }
    fprintf(out, "}%s\n", last ? "" : ",");
}

/* Predicted seconds of one batch of (batch, n) from a measured result. */
static double predict(const bench_result *prev, int model, int batch, int64_t n)
{
    if (!prev || prev->state != BENCH_RAN) return 0;
    double per_user = prev->median_s / prev->batch;
    double grow = (double)n / (double)prev->n;
    return per_user * batch * (model == MODEL_ELASTIC ? grow : grow * grow);
}

int cmd_bench(int argc, char **argv)
{
    enum { O_BACKENDS = 300, O_MODELS, O_LENGTHS, O_MAXS, O_MAXM, O_SEED, O_JSON, O_NOTP, O_ITEMS };
    static const struct option opts[] = {{"backends", required_argument, 0, O_BACKENDS},
                                         {"models", required_argument, 0, O_MODELS},
                                         {"lengths", required_argument, 0, O_LENGTHS},
                                         {"max-seconds", required_argument, 0, O_MAXS},
                                         {"max-memory", required_argument, 0, O_MAXM},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"json", no_argument, 0, O_JSON},
                                         {"no-throughput", no_argument, 0, O_NOTP},
                                         {"items", required_argument, 0, O_ITEMS},
                                         {0, 0, 0, 0}};
    int64_t catalogues[BENCH_MAX_LIST];
    int n_catalogues = 0;
    static const char *const backend_names[3] = {"cpu", "opencl", "cuda"};
    int want_backend[3] = {0, 0, 0}, want_model[BENCH_MODELS] = {1, 1, 1}, backends_given = 0;
    int64_t lengths[BENCH_MAX_LIST] = {64, 256, 1024, 4096, 8192, 16384, 65536};
    int n_lengths = 7, json = 0, throughput = 1;
    double budget = 30;
    double max_memory = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / 2;
    uint64_t seed = 1;
    /* the run options but --backend: the backends are --backends */
    elastic_session_options so;
    cli_run_defaults(&so);
    int c;
    while ((c = cli_getopt(argc, argv, "", opts, CLI_RUN & ~CLI_RUN_BACKEND, &so)) != -1) {
        switch (c) {
        case O_BACKENDS:
            if (parse_names(optarg, backend_names, 3, want_backend)) goto usage;
            backends_given = 1;
            break;
        case O_MODELS:
            if (parse_names(optarg, model_names, BENCH_MODELS, want_model)) goto usage;
            break;
        case O_LENGTHS:
            if (parse_lengths(optarg, lengths, &n_lengths, "--lengths")) return 2;
            break;
        case O_MAXS:
            if (cli_number(optarg, "--max-seconds", 0, INFINITY, 1, &budget)) return 2;
            break;
        case O_MAXM:
            if (cli_number(optarg, "--max-memory", 0, INFINITY, 1, &max_memory)) return 2;
            max_memory *= 1048576.0;
            break;
        case O_SEED:
            if (cli_u64(optarg, "--seed", &seed)) return 2;
            break;
        case O_JSON: json = 1; break;
        case O_NOTP: throughput = 0; break;
        case O_ITEMS:
            if (parse_lengths(optarg, catalogues, &n_catalogues, "--items")) return 2;
            break;
        default: return cli_stop(c);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    long threads = so.num_threads;

    /* Backends: the requested ones must be available; by default all that are. */
    for (int i = 0; i < elastic_backend_count(); i++) {
        elastic_backend_info info;
        if (elastic_backend_get_info(i, &info) != ELASTIC_OK) continue;
        for (int k = 0; k < 3; k++) {
            if (strcmp(info.name, backend_names[k])) continue;
            if (!backends_given)
                want_backend[k] = info.compiled && info.available;
            else if (want_backend[k] && !(info.compiled && info.available)) {
                cli_error("backend '%s' is not available: %s", info.name, info.description);
                return 1;
            }
        }
    }
    if (n_catalogues > 0) { /* the catalogue benchmark instead (bench_items.c) */
        int rc = 0;
        for (int k = 0; k < 3; k++)
            if (want_backend[k] && (k == 0 || backends_given))
                rc |= bench_items(catalogues, n_catalogues, &so, backend_names[k], 256, 50, 10,
                                  budget, seed, json);
        return rc;
    }
    FILE *table = json ? stderr : stdout;
    int64_t max_n = throughput ? 200 : 1;
    for (int i = 0; i < n_lengths; i++)
        if (lengths[i] > max_n) max_n = lengths[i];

    elastic_config config;
    elastic_config_default(&config);
    config.num_items = 3706;
    config.max_len = max_n;
    elastic_model *models[2] = {NULL, NULL}; /* ELASTIC, SASRec (both sasrec rows) */
    for (int m = 0; m < 2; m++) {
        if (!want_model[m] && !(m == MODEL_SASREC && want_model[MODEL_SASREC_STD])) continue;
        config.model = m ? ELASTIC_MODEL_KIND_SASREC : ELASTIC_MODEL_KIND_ELASTIC;
        elastic_status st = elastic_model_init_random(&models[m], &config, seed + (uint64_t)m);
        if (st != ELASTIC_OK) {
            cli_fail(st, "model");
            elastic_model_free(models[0]);
            return 1;
        }
    }
    size_t max_tokens = BENCH_TOKENS > 256 * 200 ? BENCH_TOKENS : 256 * 200;
    for (int i = 0; i < n_lengths; i++)
        if ((size_t)lengths[i] > max_tokens) max_tokens = (size_t)lengths[i];
    int max_batch = 256;
    for (int i = 0; i < n_lengths; i++) {
        int64_t b = BENCH_TOKENS / lengths[i];
        if (b > max_batch) max_batch = (int)b;
    }
    int32_t *items = malloc(max_tokens * sizeof *items);
    int64_t *offsets = malloc((size_t)(max_batch + 1) * sizeof *offsets);
    float *out = malloc((size_t)max_batch * (size_t)config.hidden * sizeof *out);
    int n_results_cap = 3 * BENCH_MODELS * (n_lengths + 1);
    bench_result *res = calloc((size_t)n_results_cap, sizeof *res);
    int rc = 0;
    if (!items || !offsets || !out || !res) {
        cli_error("out of memory");
        rc = 1;
        goto done;
    }
    uint64_t rng = seed;
    for (size_t i = 0; i < max_tokens; i++)
        items[i] = 1 + (int32_t)(splitmix64(&rng) % (uint64_t)config.num_items);
#if defined(__GLIBC__)
    /* Large buffers straight from mmap, so that freed arenas leave the RSS. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    bench_ctx ctx = {.models = {models[0], models[1], models[1]},
                     .items = items,
                     .offsets = offsets,
                     .out = out,
                     .session = so,
                     .budget = budget};
    int n_res = 0;

    fprintf(table,
            "elastic bench: seed %llu, I=%lld d=%lld h=%lld L=%lld k=%lld, max_len %lld, "
            "B = max(1, %d/n), budget %.0f s per configuration, sasrec-std weights up to "
            "%.0f MiB, threads %s\n",
            (unsigned long long)seed, (long long)config.num_items, (long long)config.hidden,
            (long long)config.heads, (long long)config.layers, (long long)config.experts,
            (long long)max_n, BENCH_TOKENS, budget, max_memory / 1048576.0,
            threads ? "set" : "default");
    fprintf(table, "time = median of interleaved timed runs of elastic_session_user_vectors "
                   "after a warm-up;\npeak = planned arena + weights; RSS+ = measured peak-RSS "
                   "growth during the warm-up run (it allocates the arena); proc = the whole "
                   "process's peak RSS during it (weights and all);\nmaxT = largest "
                   "activation tensor of the plan, maxT/pos = its floats per user and position "
                   "(a fixed number = no tensor grows like n*n);\nsasrec = SASRec with "
                   "streaming attention, sasrec-std = SASRec with standard attention (softmax "
                   "weights [B,h,n,n] held)\n");
    for (int bi = 0; bi < 3; bi++) {
        if (!want_backend[bi]) continue;
        fprintf(table, "\n");
        print_header(table);
        const bench_result *prev[BENCH_MODELS] = {NULL, NULL, NULL};
        for (int li = 0; li < n_lengths; li++) {
            int64_t n = lengths[li];
            int batch = (int)(BENCH_TOKENS / n > 1 ? BENCH_TOKENS / n : 1);
            int skip[BENCH_MODELS] = {0, 0, 0};
            for (int over = 1; over && batch > 1;) { /* halve B until all fit */
                over = want_model[MODEL_SASREC_STD] &&
                       std_attention_bytes(batch, n, config.heads) > max_memory;
                for (int m = 0; m < BENCH_MODELS; m++)
                    if (want_model[m] && 2 * predict(prev[m], m, batch, n) > budget) over = 1;
                if (over) batch /= 2;
            }
            for (int m = 0; m < BENCH_MODELS; m++)
                if (want_model[m] && 2 * predict(prev[m], m, batch, n) > budget)
                    skip[m] = BENCH_SKIPPED_TIME;
            if (std_attention_bytes(batch, n, config.heads) > max_memory)
                skip[MODEL_SASREC_STD] = BENCH_SKIPPED_MEMORY;
            bench_result *first = &res[n_res], *run = &res[n_res], *by_model[BENCH_MODELS] = {0};
            for (int pass = 0; pass < 2; pass++) /* the runnable ones first, contiguous */
                for (int m = 0; m < BENCH_MODELS; m++) {
                    if (!want_model[m] || (pass == 0) != !skip[m]) continue;
                    bench_result *r = by_model[m] = &res[n_res++];
                    snprintf(r->backend, sizeof r->backend, "%s", backend_names[bi]);
                    r->model = m;
                    r->n = n;
                    r->batch = batch;
                    r->state = skip[m] ? (bench_state)skip[m] : BENCH_RAN;
                }
            int n_run = 0;
            while (run + n_run < &res[n_res] && run[n_run].state == BENCH_RAN)
                n_run++;
            if (n_run) bench_configs(&ctx, run, n_run);
            for (bench_result *r = first; r < &res[n_res]; r++) {
                if (r->state == BENCH_RAN) prev[r->model] = r;
                if (r->state == BENCH_FAILED) rc = 1;
                print_row(table, r);
            }
            const bench_result *e = by_model[MODEL_ELASTIC];
            for (int m = MODEL_SASREC; m <= MODEL_SASREC_STD; m++) {
                const bench_result *o = by_model[m];
                if (!e || !o || e->state != BENCH_RAN || o->state != BENCH_RAN) continue;
                double mem = (double)(e->arena_bytes + e->weight_bytes) /
                             (double)(o->arena_bytes + o->weight_bytes);
                fprintf(table,
                        "         ELASTIC/%s at n=%lld: time %.3f (ELASTIC %.2fx as fast), "
                        "peak memory %.3f (ELASTIC %.1f%% %s)\n",
                        model_names[m], (long long)n, e->median_s / o->median_s,
                        o->median_s / e->median_s, mem, 100.0 * fabs(1.0 - mem),
                        mem <= 1.0 ? "less" : "more");
            }
            fflush(table);
        }
        if (throughput) {
            bench_result *first = &res[n_res];
            for (int m = 0; m < BENCH_MODELS; m++) {
                if (!want_model[m]) continue;
                bench_result *r = &res[n_res++];
                snprintf(r->backend, sizeof r->backend, "%s", backend_names[bi]);
                r->model = m;
                r->n = 200;
                r->batch = 256;
                r->throughput = 1;
            }
            bench_configs(&ctx, first, (int)(&res[n_res] - first));
            for (bench_result *r = first; r < &res[n_res]; r++) {
                if (r->state == BENCH_FAILED) rc = 1;
                fprintf(table, "throughput B=256 n=200: ");
                print_row(table, r);
            }
            fflush(table);
        }
    }
    if (json) {
        /* OpenMP's OMP_WAIT_POLICY changes the CPU times on a busy machine: recorded */
        static const char *const policies[] = {"passive", "PASSIVE", "active", "ACTIVE"};
        const char *env = getenv("OMP_WAIT_POLICY"), *wait_policy = env ? "other" : "";
        for (int i = 0; env && i < 4; i++)
            if (!strcmp(env, policies[i])) wait_policy = policies[i];
        printf("{\n  \"tool\": \"elastic bench\",\n  \"version\": \"%s\",\n  \"seed\": %llu,\n"
               "  \"tokens_per_batch\": %d,\n  \"budget_s\": %g,\n  \"threads\": %ld,\n"
               "  \"omp_wait_policy\": \"%s\",\n"
               "  \"config\": {\"num_items\": %lld, \"max_len\": %lld, \"hidden\": %lld, "
               "\"heads\": %lld, \"layers\": %lld, \"experts\": %lld},\n  \"results\": [\n",
               elastic_version(), (unsigned long long)seed, BENCH_TOKENS, budget, threads,
               wait_policy, (long long)config.num_items, (long long)max_n, (long long)config.hidden,
               (long long)config.heads, (long long)config.layers, (long long)config.experts);
        for (int i = 0; i < n_res; i++)
            json_result(stdout, &res[i], i == n_res - 1);
        printf("  ]\n}\n");
    }
done:
    free(items);
    free(offsets);
    free(out);
    free(res);
    elastic_model_free(models[0]);
    elastic_model_free(models[1]);
    return rc;
usage:
    fputs(cmd_bench_usage, stderr);
    return 2;
}
