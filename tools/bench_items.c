/*
 * bench_items.c - `elastic bench --items`: top-K recommendation over
 * catalogues of I items, the cost of which is scoring every item.
 *
 * Method, per catalogue size I (one random ELASTIC model each: spec
 * defaults, d=64, I items, max_len = n; random histories of n items from
 * the seed; B users, top K, history excluded):
 *   - memory bandwidth, measured first in the same run: every thread sums
 *     its share of a 512 MiB buffer (touched before), best of 5 passes;
 *     "read once" = the bytes of item_emb over that bandwidth, the floor of
 *     any exact scoring that reads item_emb from memory;
 *   - hu: elastic_session_user_vectors (the model up to the user vector);
 *     recommend: elastic_session_recommend, scores and top-K as the session
 *     plans them (one fused score_topk node on backends that have it: memory
 *     O(B K) plus a block of items, never [B, I]); each timed as the median
 *     of interleaved runs after a warm-up, until 10 runs or the budget;
 *   - scoring = recommend - hu; its GFLOP/s count 2 B I d;
 *   - RSS+: growth of the process's peak RSS over the warm-up of recommend
 *     (what scoring needs beyond the model; Linux, else n/a); peak RSS: the
 *     process's whole peak so far (weights included);
 *   - beside it, "scores [B,I]": elastic_session_scores, the unfused path's
 *     first half, which holds B*I floats (only where they take at most
 *     2 GiB).
 */
#include "bench_items.h"

#include "cli_util.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#define BW_BYTES (512u << 20)
#define MAX_RUNS 10

typedef struct bw_part {
    const float *p;
    size_t n;
    float sum;
} bw_part;

static void *bw_sum(void *arg)
{
    bw_part *w = arg;
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= w->n; i += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += w->p[i + l];
    for (; i < w->n; i++)
        acc[0] += w->p[i];
    float s = 0;
    for (int l = 0; l < 16; l++)
        s += acc[l];
    w->sum = s;
    return NULL;
}

/* Read bandwidth in bytes/s over `threads` threads, best of 5; 0 on failure. */
static double measure_bandwidth(int threads)
{
    size_t n = BW_BYTES / sizeof(float);
    float *buf = malloc(BW_BYTES);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 1023);
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    pthread_t tid[64];
    bw_part parts[64];
    double best = 0;
    float sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = cli_now();
        int started = 0;
        for (int t = 0; t < threads; t++) {
            size_t a = n * (size_t)t / (size_t)threads, b = n * (size_t)(t + 1) / (size_t)threads;
            parts[t] = (bw_part){buf + a, b - a, 0};
            if (t > 0 && pthread_create(&tid[t], NULL, bw_sum, &parts[t]) != 0) break;
            started = t + 1;
        }
        if (started < threads) { /* could not start them all */
            for (int t = 1; t < started; t++)
                pthread_join(tid[t], NULL);
            best = 0;
            break;
        }
        bw_sum(&parts[0]);
        for (int t = 1; t < threads; t++)
            pthread_join(tid[t], NULL);
        double dt = cli_now() - t0;
        for (int t = 0; t < threads; t++)
            sink += parts[t].sum;
        if (dt > 0 && BW_BYTES / dt > best) best = BW_BYTES / dt;
    }
    free(buf);
    return sink == -1.0f ? best * 1.0000001 : best; /* sink is used, never -1 */
}

static double load_average(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double v = -1;
    if (f) {
        if (fscanf(f, "%lf", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct item_result {
    int64_t items, d;
    int ok, runs;
    double hu_s, rec_s, rec_min_s, rec_max_s, scores_s, read_s;
    long long rss_growth, peak_rss, scores_rss_growth;
    char error[256];
} item_result;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void run_one(item_result *r, const elastic_session_options *so, int batch, int64_t n,
                    int top_k, double budget, uint64_t seed, double bandwidth)
{
    elastic_config config;
    elastic_config_default(&config);
    config.num_items = r->items;
    config.max_len = n;
    elastic_model *m = NULL;
    elastic_session *s = NULL;
    int32_t *hist = malloc(sizeof *hist * (size_t)batch * (size_t)n);
    int64_t *offs = malloc(sizeof *offs * (size_t)(batch + 1));
    int32_t *ids = malloc(sizeof *ids * (size_t)batch * (size_t)top_k);
    float *vals = malloc(sizeof *vals * (size_t)batch * (size_t)top_k);
    float *hu = malloc(sizeof *hu * (size_t)batch * (size_t)config.hidden);
    r->ok = 0;
    r->d = config.hidden;
    if (!hist || !offs || !ids || !vals || !hu) {
        snprintf(r->error, sizeof r->error, "out of memory");
        goto done;
    }
    if (elastic_model_init_random(&m, &config, seed) != ELASTIC_OK ||
        elastic_session_init(&s, m, so) != ELASTIC_OK) {
        snprintf(r->error, sizeof r->error, "%s", elastic_last_error());
        goto done;
    }
    uint64_t rng = seed ^ 0x5eed;
    for (size_t i = 0; i < (size_t)batch * (size_t)n; i++)
        hist[i] = 1 + (int32_t)(splitmix64(&rng) % (uint64_t)r->items);
    for (int b = 0; b <= batch; b++)
        offs[b] = (int64_t)b * n;
    r->read_s = bandwidth > 0 ? (double)r->items * (double)config.hidden * 4.0 / bandwidth : 0;
    /* warm-ups: hu first, so that RSS+ of recommend is scoring's own */
    if (elastic_session_user_vectors(s, hist, offs, batch, hu) != ELASTIC_OK) goto fail;
    long long rss0 = cli_rss_reset();
    double spent = 0, t0 = cli_now();
    if (elastic_session_recommend(s, hist, offs, batch, top_k, 1, ids, vals) != ELASTIC_OK)
        goto fail;
    spent += cli_now() - t0;
    long long peak = cli_rss_peak();
    r->rss_growth = rss0 >= 0 && peak >= 0 ? peak - rss0 : -1;
    double t_hu[MAX_RUNS], t_rec[MAX_RUNS];
    r->runs = 0;
    for (int i = 0; i < MAX_RUNS; i++) {
        if (i > 0 && spent * (double)(i + 1) / (double)i > budget) break;
        t0 = cli_now();
        if (elastic_session_user_vectors(s, hist, offs, batch, hu) != ELASTIC_OK) goto fail;
        double t1 = cli_now();
        if (elastic_session_recommend(s, hist, offs, batch, top_k, 1, ids, vals) != ELASTIC_OK)
            goto fail;
        double t2 = cli_now();
        t_hu[i] = t1 - t0;
        t_rec[i] = t2 - t1;
        spent += t2 - t0;
        r->runs = i + 1;
    }
    r->hu_s = median(t_hu, r->runs);
    r->rec_s = median(t_rec, r->runs);
    r->rec_min_s = t_rec[0];
    r->rec_max_s = t_rec[r->runs - 1];
    r->peak_rss = cli_rss_peak();
    /* the unfused path's [B, I] scores, where they fit 2 GiB */
    r->scores_s = -1;
    r->scores_rss_growth = -1;
    if ((double)batch * (double)r->items * 4.0 <= 2147483648.0) {
        float *sc = malloc(sizeof *sc * (size_t)batch * (size_t)r->items);
        if (sc) {
            rss0 = cli_rss_reset();
            t0 = cli_now();
            elastic_status st = elastic_session_scores(s, hist, offs, batch, sc);
            r->scores_s = cli_now() - t0;
            peak = cli_rss_peak();
            if (st != ELASTIC_OK) r->scores_s = -1;
            r->scores_rss_growth = rss0 >= 0 && peak >= 0 ? peak - rss0 : -1;
            free(sc);
        }
    }
    r->ok = 1;
    goto done;
fail:
    snprintf(r->error, sizeof r->error, "%s", elastic_last_error());
done:
    elastic_session_free(s);
    elastic_model_free(m);
    free(hist);
    free(offs);
    free(ids);
    free(vals);
    free(hu);
}

static double mib(long long b)
{
    return (double)b / 1048576.0;
}

int bench_items(const int64_t *items, int count, const elastic_session_options *session,
                const char *backend, int batch, int64_t n, int top_k, double budget, uint64_t seed,
                int json)
{
    FILE *out = json ? stderr : stdout;
    elastic_session_options so = *session;
    so.backend = backend;
    int threads = so.num_threads > 0 ? so.num_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 20); /* freed buffers leave the RSS */
#endif
    double load0 = load_average();
    double bw = measure_bandwidth(threads);
    item_result *res = calloc((size_t)count, sizeof *res);
    if (!res) {
        cli_error("out of memory");
        return 1;
    }
    fprintf(out,
            "elastic bench --items: ELASTIC d=64 (spec defaults), B=%d users, histories of %lld "
            "items, top %d, history excluded; backend %s, %d threads; seed %llu; load average "
            "%.2f at start\nmemory bandwidth (read, %d threads, 512 MiB, best of 5): %.2f GB/s\n"
            "time = median of interleaved runs after a warm-up (min..max beside); scoring = "
            "recommend - hu; read once = item_emb bytes / bandwidth;\nRSS+ = peak-RSS growth "
            "over the first recommend (beyond the model); peak RSS = the whole process's\n\n",
            batch, (long long)n, top_k, backend, threads, (unsigned long long)seed, load0, threads,
            bw * 1e-9);
    fprintf(out, "%10s %4s %9s %17s %10s %10s %9s %11s %9s %9s %10s %10s %14s\n", "items", "runs",
            "hu ms", "recommend ms", "users/s", "score ms", "GFLOP/s", "item_emb MB", "read1 ms",
            "rec/read1", "RSS+ MiB", "peak MiB", "[B,I] ms / MiB");
    int rc = 0;
    for (int i = 0; i < count; i++) {
        item_result *r = &res[i];
        r->items = items[i];
        run_one(r, &so, batch, n, top_k, budget, seed, bw);
        if (!r->ok) {
            fprintf(out, "%10lld failed: %s\n", (long long)r->items, r->error);
            rc = 1;
            continue;
        }
        double score_s = r->rec_s - r->hu_s;
        char unf[48] = "-";
        if (r->scores_s >= 0)
            snprintf(unf, sizeof unf, "%.1f / %.0f", r->scores_s * 1e3, mib(r->scores_rss_growth));
        fprintf(out,
                "%10lld %4d %9.2f %7.2f (%.0f..%.0f) %10.0f %10.2f %9.1f %11.1f %9.2f %9.2f "
                "%10.1f %10.1f %14s\n",
                (long long)r->items, r->runs, r->hu_s * 1e3, r->rec_s * 1e3, r->rec_min_s * 1e3,
                r->rec_max_s * 1e3, batch / r->rec_s, score_s * 1e3,
                score_s > 0 ? 2.0 * batch * (double)r->items * (double)r->d / score_s * 1e-9 : 0,
                (double)r->items * (double)r->d * 4 * 1e-6, r->read_s * 1e3,
                r->read_s > 0 ? r->rec_s / r->read_s : 0, mib(r->rss_growth), mib(r->peak_rss),
                unf);
        fflush(out);
    }
    fprintf(out, "load average %.2f at the end\n", load_average());
    if (json) {
        printf("{\n  \"tool\": \"elastic bench --items\",\n  \"version\": \"%s\",\n  \"seed\": "
               "%llu,\n  \"backend\": \"%s\",\n  \"threads\": %d,\n  \"batch\": %d,\n  "
               "\"history\": %lld,\n  \"top_k\": %d,\n  \"bandwidth_bytes_per_s\": %.6g,\n  "
               "\"load_start\": %.2f,\n  \"results\": [\n",
               elastic_version(), (unsigned long long)seed, backend, threads, batch, (long long)n,
               top_k, bw, load0);
        for (int i = 0; i < count; i++) {
            const item_result *r = &res[i];
            printf("    {\"items\": %lld, \"ok\": %s", (long long)r->items,
                   r->ok ? "true" : "false");
            if (r->ok)
                printf(
                    ", \"runs\": %d, \"hu_s\": %.6g, \"recommend_s\": %.6g, \"recommend_min_s\": "
                    "%.6g, \"recommend_max_s\": %.6g, \"users_per_s\": %.6g, \"read_once_s\": "
                    "%.6g, \"rss_growth_bytes\": %lld, \"peak_rss_bytes\": %lld, "
                    "\"scores_s\": %.6g, \"scores_rss_growth_bytes\": %lld",
                    r->runs, r->hu_s, r->rec_s, r->rec_min_s, r->rec_max_s, batch / r->rec_s,
                    r->read_s, r->rss_growth, r->peak_rss, r->scores_s, r->scores_rss_growth);
            printf("}%s\n", i == count - 1 ? "" : ",");
        }
        printf("  ]\n}\n");
    }
    free(res);
    return rc;
}
