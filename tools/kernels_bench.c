/*
 * kernels_bench.c - the `elastic-kernels-bench` program: forward throughput
 * of ELASTIC on the CPU backend's kernels, with OpenBLAS cblas_sgemm on the
 * model's main GEMM shape measured in the same run as the yardstick. (Not
 * `elastic bench`, which compares ELASTIC with SASRec across lengths.)
 *
 *   elastic-kernels-bench [--batch B] [--len N] [--reps R] [--threads T] [--isa NAME]
 *
 * Defaults: B=256 histories of length 200, d=64, L=2, k=16, I=3706. Prints
 * users per second, the GFLOP/s reached (flops counted from the plan), and
 * the sgemm GFLOP/s for [B*n, d] x [d, 4d] (the FFN's first GEMM); then each
 * main GEMM shape of the model (FFN in and out, the d x d projections, the
 * scores over the catalogue) through the CPU backend's `linear` kernel and
 * through sgemm, with the same threads.
 */
#include "cli_util.h"
#include "cpu_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>
#if defined(ELASTIC_HAVE_CBLAS)
#include <cblas.h>
#endif

static const char usage[] =
    "usage: elastic-kernels-bench [options]\n"
    "Forward throughput of ELASTIC on the CPU backend (top-10 recommendations,\n"
    "d=64 L=2 k=16 I=3706), beside OpenBLAS sgemm on [B*n x 64] x [64 x 256].\n"
    "  -b, --batch B      histories per batch (default 256)\n"
    "  -n, --len N        history length (default 200)\n"
    "  -r, --reps R       timed runs after two warm-ups; the median is shown (default 10)\n"
    "  -t, --threads T    CPU threads, also OpenBLAS's (default: all)\n"
    "  -i, --isa NAME     kernels: best, generic, avx2, avx512 or neon (default best)\n"
    "  -h, --help         this text\n";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

static float *filled(size_t count, unsigned mult)
{
    float *p = malloc(sizeof(float) * (count ? count : 1));
    if (p)
        for (size_t i = 0; i < count; i++)
            p[i] = (float)((i * mult) % 1000) * 1e-3f - 0.5f;
    return p;
}

/* GFLOP/s of C[m,n] = A[m,k] B[n,k]^T (+ bias): the kernel table's `linear`
 * (k != NULL) or OpenBLAS sgemm; median of reps after two warm-ups; 0 when
 * memory runs out. */
static double gemm_gflops(const elastic_cpu_kernels *kt, int m, int n, int k, int threads, int reps)
{
    float *a = filled((size_t)m * k, 7919), *b = filled((size_t)n * k, 104729);
    float *bias = filled((size_t)n, 31), *c = malloc(sizeof(float) * (size_t)m * n);
    double *t = malloc(sizeof(double) * (size_t)reps);
    double g = 0;
    if (a && b && bias && c && t) {
        for (int r = -2; r < reps; r++) { /* two warm-up runs */
            double t0 = cli_now();
            if (kt) kt->linear(a, b, bias, c, m, n, k, threads);
#if defined(ELASTIC_HAVE_CBLAS)
            else /* the library's Linear layout */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k,
                            0.0f, c, n);
#endif
            if (r >= 0) t[r] = cli_now() - t0;
        }
        g = 2.0 * m * n * k / median(t, reps) * 1e-9;
    }
    free(a);
    free(b);
    free(bias);
    free(c);
    free(t);
    return g;
}

int main(int argc, char **argv)
{
    static const char *const isas[] = {"best", "generic", "avx2", "avx512", "neon"};
    static const struct option opts[] = {
        {"batch", required_argument, 0, 'b'}, {"len", required_argument, 0, 'n'},
        {"reps", required_argument, 0, 'r'},  {"threads", required_argument, 0, 't'},
        {"isa", required_argument, 0, 'i'},   {0, 0, 0, 0}};
    int batch = 256, len = 200, reps = 10, threads = 0, isa = 0;
    long long v;
    cli_begin("elastic-kernels-bench", NULL, usage);
    int c;
    while ((c = cli_getopt(argc, argv, "b:n:r:t:i:", opts, 0, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (cli_int(optarg, "--batch", 1, 1 << 20, &v)) return 2;
            batch = (int)v;
            break;
        case 'n':
            if (cli_int(optarg, "--len", 1, 1 << 24, &v)) return 2;
            len = (int)v;
            break;
        case 'r':
            if (cli_int(optarg, "--reps", 1, 1000000, &v)) return 2;
            reps = (int)v;
            break;
        case 't':
            if (cli_int(optarg, "--threads", 0, 4096, &v)) return 2;
            threads = (int)v;
            break;
        case 'i':
            for (isa = 4; isa >= 0 && strcmp(optarg, isas[isa]); isa--)
                ;
            if (isa < 0) {
                cli_error("--isa must be best, generic, avx2, avx512 or neon, got '%s'", optarg);
                return 2;
            }
            break;
        default: return cli_stop(c);
        }
    }
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    elastic_config config;
    elastic_config_default(&config);
    config.num_items = 3706;
    config.max_len = len;
    elastic_model *model;
    elastic_session *session;
    elastic_session_options so;
    cli_run_defaults(&so);
    so.num_threads = threads;
    char isa_option[32];
    snprintf(isa_option, sizeof isa_option, "cpu.isa=%s", isas[isa]);
    so.backend_options = isa_option;
    if (elastic_model_init_random(&model, &config, 7) != ELASTIC_OK ||
        elastic_session_init(&session, model, &so) != ELASTIC_OK) {
        cli_error("%s", elastic_last_error());
        return 1;
    }
    int32_t *items = malloc(sizeof *items * (size_t)batch * len);
    int64_t *offsets = malloc(sizeof *offsets * (size_t)(batch + 1));
    int32_t *ids = malloc(sizeof *ids * (size_t)batch * 10);
    float *scores = malloc(sizeof *scores * (size_t)batch * 10);
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!items || !offsets || !ids || !scores || !t) return 1;
    for (size_t i = 0; i < (size_t)batch * len; i++)
        items[i] = 1 + (int32_t)((i * 2654435761u) % 3706);
    for (int b = 0; b <= batch; b++)
        offsets[b] = (int64_t)b * len;

    elastic_run_stats stats = {0};
    for (int r = -2; r < reps; r++) {
        double t0 = cli_now();
        if (elastic_session_recommend(session, items, offsets, batch, 10, 1, ids, scores) !=
            ELASTIC_OK) {
            cli_error("%s", elastic_last_error());
            return 1;
        }
        if (r >= 0) t[r] = cli_now() - t0;
    }
    elastic_session_last_stats(session, &stats);
    double sec = median(t, reps);
    printf("backend            %s\n", elastic_session_backend(session));
    printf("shape              B=%d n=%d d=64 L=2 k=16 I=3706 (top-10, history excluded)\n", batch,
           len);
    printf("forward            %.2f ms per batch (median of %d)\n", sec * 1e3, reps);
    printf("throughput         %.0f users/s\n", batch / sec);
    printf("work               %.3f GFLOP per batch\n", stats.flops * 1e-9);
    printf("elastic GFLOP/s    %.1f\n", stats.flops / sec * 1e-9);
    printf("arena              %.2f MiB (%.2f MiB without liveness reuse)\n",
           (double)stats.arena_bytes / 1048576.0, (double)stats.naive_bytes / 1048576.0);
    int nt = threads > 0 ? threads : omp_get_max_threads();
    int m = batch * (len < config.max_len ? len : (int)config.max_len);
#if defined(ELASTIC_HAVE_CBLAS)
    openblas_set_num_threads(nt); /* the same threads as ours */
    double g = gemm_gflops(NULL, m, 256, 64, nt, reps);
    printf("openblas sgemm     %.1f GFLOP/s on [%d x 64] x [64 x 256]\n", g, m);
    printf("ratio              elastic / sgemm = %.2f\n", stats.flops / sec * 1e-9 / g);
#else
    printf("openblas sgemm     not built (libopenblas-dev missing)\n");
#endif
    const elastic_cpu_kernels *kt = elastic_cpu_kernels_for((elastic_cpu_isa)isa);
    if (kt) {
        static const char *const what[] = {"FFN in (fc1)", "FFN out (fc2)", "projection (q/k/v/o)",
                                           "scores (user x items)"};
        int shapes[4][3] = {{m, 256, 64}, {m, 64, 256}, {m, 64, 64}, {batch, 3706, 64}};
        printf("\nGEMM shapes, %d threads: C[M,N] = A[M,K] W[N,K]^T, GFLOP/s (median of %d)\n", nt,
               reps);
        printf("%-22s %8s %6s %6s %12s %12s %7s\n", "GEMM", "M", "N", "K", "linear", "sgemm",
               "ratio");
        for (int i = 0; i < 4; i++) {
            double ours = gemm_gflops(kt, shapes[i][0], shapes[i][1], shapes[i][2], nt, reps);
#if defined(ELASTIC_HAVE_CBLAS)
            double blas = gemm_gflops(NULL, shapes[i][0], shapes[i][1], shapes[i][2], nt, reps);
            printf("%-22s %8d %6d %6d %12.1f %12.1f %7.2f\n", what[i], shapes[i][0], shapes[i][1],
                   shapes[i][2], ours, blas, blas > 0 ? ours / blas : 0.0);
#else
            printf("%-22s %8d %6d %6d %12.1f %12s %7s\n", what[i], shapes[i][0], shapes[i][1],
                   shapes[i][2], ours, "-", "-");
#endif
        }
    } else {
        printf("\nGEMM shapes: the %s kernels are not built for this machine\n", isas[isa]);
    }
    free(items);
    free(offsets);
    free(ids);
    free(scores);
    free(t);
    elastic_session_free(session);
    elastic_model_free(model);
    return 0;
}
