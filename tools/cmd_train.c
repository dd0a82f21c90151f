/*
 * cmd_train.c - `elastic train`: from an interaction log (or the built-in
 * synthetic one) to a trained model file, with a progress line, validation
 * HR@10 beside the popularity ranking after every epoch, early stopping,
 * checkpoints that `--resume` continues, and a final test evaluation.
 */
#include "commands.h"
#include "elastic.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *usage =
    "usage: elastic train -o MODEL [--data FILE] [options] [key=value ...]\n"
    "Trains ELASTIC (or SASRec: model=sasrec) as spec section 5 says and writes\n"
    "the model with the best validation HR@10 to MODEL (with the item-id map).\n"
    "Without --data it trains on the built-in synthetic log (elastic synth).\n"
    "  --data FILE          interaction log: 'user item' lines, MovieLens ratings.dat\n"
    "                       or CSV user,item,rating,timestamp\n"
    "  --format F           pairs, movielens, csv (default: from the file)\n"
    "  key=value            model config (spec section 1), e.g. hidden=64 layers=2\n"
    "  --epochs E           at most E epochs (default 30)\n"
    "  --patience P         stop after P epochs without a better validation HR@10 (5)\n"
    "  --max-minutes M      stop after the epoch that crosses M minutes (default none)\n"
    "  --lr X --batch B --dropout P --samples-per-user S   (spec defaults)\n"
    "  --seed S             initialisation, sampling and dropout (default 1)\n"
    "  --eval-users N       validate on N users each epoch (default all)\n"
    "  --backend B --threads T --allow-fallback\n"
    "  --checkpoint         after every epoch write MODEL.ckpt and MODEL.ckpt.state\n"
    "  --resume             continue from MODEL.ckpt and MODEL.ckpt.state\n"
    "  --quiet              no progress line\n";

enum {
    OPT_DATA = 300,
    OPT_FORMAT,
    OPT_EPOCHS,
    OPT_PATIENCE,
    OPT_MINUTES,
    OPT_LR,
    OPT_BATCH,
    OPT_DROPOUT,
    OPT_SPU,
    OPT_SEED,
    OPT_EVAL_USERS,
    OPT_BACKEND,
    OPT_THREADS,
    OPT_FALLBACK,
    OPT_CHECKPOINT,
    OPT_RESUME,
    OPT_QUIET
};

typedef struct train_args {
    const char *out, *data, *format;
    long epochs, patience, batch, spu, eval_users, threads;
    double minutes, lr, dropout;
    unsigned long long seed;
    const char *backend;
    int fallback, checkpoint, resume, quiet;
} train_args;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(elastic_status st, const char *what)
{
    fprintf(stderr, "elastic train: %s: %s (%s)\n", what, elastic_last_error(),
            elastic_status_name(st));
    return 1;
}

static int number(const char *s, const char *what, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "elastic train: %s must be a number in [%g, %g], got '%s'\n", what, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int integer(const char *s, const char *what, long lo, long hi, long *out)
{
    double v = 0;
    if (number(s, what, (double)lo, (double)hi, &v)) return -1;
    if (v != floor(v)) {
        fprintf(stderr, "elastic train: %s must be an integer, got '%s'\n", what, s);
        return -1;
    }
    *out = (long)v;
    return 0;
}

static int parse(int argc, char **argv, train_args *a, elastic_config *config)
{
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"data", required_argument, 0, OPT_DATA},
                                         {"format", required_argument, 0, OPT_FORMAT},
                                         {"epochs", required_argument, 0, OPT_EPOCHS},
                                         {"patience", required_argument, 0, OPT_PATIENCE},
                                         {"max-minutes", required_argument, 0, OPT_MINUTES},
                                         {"lr", required_argument, 0, OPT_LR},
                                         {"batch", required_argument, 0, OPT_BATCH},
                                         {"dropout", required_argument, 0, OPT_DROPOUT},
                                         {"samples-per-user", required_argument, 0, OPT_SPU},
                                         {"seed", required_argument, 0, OPT_SEED},
                                         {"eval-users", required_argument, 0, OPT_EVAL_USERS},
                                         {"backend", required_argument, 0, OPT_BACKEND},
                                         {"threads", required_argument, 0, OPT_THREADS},
                                         {"allow-fallback", no_argument, 0, OPT_FALLBACK},
                                         {"checkpoint", no_argument, 0, OPT_CHECKPOINT},
                                         {"resume", no_argument, 0, OPT_RESUME},
                                         {"quiet", no_argument, 0, OPT_QUIET},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    elastic_train_options d;
    elastic_train_options_default(&d);
    *a = (train_args){.epochs = 30,
                      .patience = 5,
                      .batch = d.batch_size,
                      .spu = d.samples_per_user,
                      .lr = d.lr,
                      .dropout = d.dropout,
                      .seed = 1,
                      .backend = "cpu"};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        double v;
        switch (c) {
        case 'o': a->out = optarg; break;
        case OPT_DATA: a->data = optarg; break;
        case OPT_FORMAT: a->format = optarg; break;
        case OPT_EPOCHS:
            if (integer(optarg, "--epochs", 1, 100000, &a->epochs)) return 2;
            break;
        case OPT_PATIENCE:
            if (integer(optarg, "--patience", 1, 100000, &a->patience)) return 2;
            break;
        case OPT_MINUTES:
            if (number(optarg, "--max-minutes", 0, 1e6, &a->minutes)) return 2;
            break;
        case OPT_LR:
            if (number(optarg, "--lr", 1e-12, 10, &a->lr)) return 2;
            break;
        case OPT_BATCH:
            if (integer(optarg, "--batch", 1, 1 << 20, &a->batch)) return 2;
            break;
        case OPT_DROPOUT:
            if (number(optarg, "--dropout", 0, 0.99, &a->dropout)) return 2;
            break;
        case OPT_SPU:
            if (integer(optarg, "--samples-per-user", 1, 100000, &a->spu)) return 2;
            break;
        case OPT_SEED:
            if (number(optarg, "--seed", 0, 1e18, &v)) return 2;
            a->seed = (unsigned long long)v;
            break;
        case OPT_EVAL_USERS:
            if (integer(optarg, "--eval-users", 1, 1L << 40, &a->eval_users)) return 2;
            break;
        case OPT_BACKEND: a->backend = optarg; break;
        case OPT_THREADS:
            if (integer(optarg, "--threads", 1, 1024, &a->threads)) return 2;
            break;
        case OPT_FALLBACK: a->fallback = 1; break;
        case OPT_CHECKPOINT: a->checkpoint = 1; break;
        case OPT_RESUME: a->resume = 1; break;
        case OPT_QUIET: a->quiet = 1; break;
        case 'h': fputs(usage, stdout); return 1;
        default: fputs(usage, stderr); return 2;
        }
    }
    for (int i = optind; i < argc; i++) {
        char key[64];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i] || (size_t)(eq - argv[i]) >= sizeof key) {
            fprintf(stderr, "elastic train: expected key=value, got '%s'\n", argv[i]);
            return 2;
        }
        memcpy(key, argv[i], (size_t)(eq - argv[i]));
        key[eq - argv[i]] = '\0';
        if (!strcmp(key, "num_items")) {
            fprintf(stderr, "elastic train: num_items comes from the data\n");
            return 2;
        }
        if (elastic_config_set(config, key, eq + 1) != ELASTIC_OK) {
            fprintf(stderr, "elastic train: %s\n", elastic_last_error());
            return 2;
        }
    }
    if (!a->out) {
        fprintf(stderr, "elastic train: -o MODEL is required\n%s", usage);
        return 2;
    }
    return 0;
}

static int parse_format(const char *s, elastic_data_format *f)
{
    static const char *names[] = {"auto", "pairs", "movielens", "csv"};
    for (int i = 0; i < 4; i++)
        if (!s || !strcmp(s, names[i])) {
            *f = (elastic_data_format)(s ? i : 0);
            return 0;
        }
    fprintf(stderr, "elastic train: --format must be auto, pairs, movielens or csv\n");
    return -1;
}

typedef struct bar {
    int quiet, tty;
    long epoch;
    double last_print;
} bar;

static void show_progress(const elastic_train_progress *p, void *ctx)
{
    bar *b = ctx;
    if (b->quiet || !b->tty) return;
    double t = p->seconds;
    if (t - b->last_print < 0.25 && p->examples < p->examples_total) return;
    b->last_print = t;
    int width = 30,
        done = p->examples_total ? (int)(width * p->examples / p->examples_total) : width;
    char line[32];
    for (int i = 0; i < width; i++)
        line[i] = i < done ? '=' : i == done ? '>' : ' ';
    line[width] = '\0';
    fprintf(stderr, "\repoch %ld [%s] %lld/%lld loss %.4f %.0f ex/s  ", b->epoch, line,
            (long long)p->examples, (long long)p->examples_total, p->loss,
            t > 0 ? (double)p->examples / t : 0.0);
    fflush(stderr);
}

static elastic_status evaluate(const elastic_model *m, const train_args *a,
                               const elastic_dataset *ds, elastic_split split, int64_t users,
                               elastic_metrics *out)
{
    elastic_session_options so;
    elastic_session_options_default(&so);
    so.backend = a->backend;
    so.num_threads = (int)a->threads;
    so.allow_cpu_fallback = a->fallback;
    elastic_session *s = NULL;
    elastic_status st = elastic_session_init(&s, m, &so);
    if (st == ELASTIC_OK) st = elastic_evaluate(s, ds, split, users, out);
    elastic_session_free(s);
    return st;
}

static void print_metrics(const char *label, const elastic_metrics *m)
{
    printf("  %-12s HR@10 %.4f  HR@50 %.4f  NDCG@10 %.4f  NDCG@50 %.4f  MRR %.4f\n", label, m->hr10,
           m->hr50, m->ndcg10, m->ndcg50, m->mrr);
}

/* Reads training bookkeeping kept in the checkpoint's metadata. */
static double meta_number(const elastic_model *m, const char *key, double fallback)
{
    const char *v = elastic_model_metadata(m, key);
    return v ? strtod(v, NULL) : fallback;
}

static elastic_status set_meta_number(elastic_model *m, const char *key, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    return elastic_model_set_metadata(m, key, buf);
}

int elastic_cmd_train(int argc, char **argv)
{
    train_args a;
    elastic_config config;
    elastic_config_default(&config);
    int rc = parse(argc, argv, &a, &config);
    if (rc) return rc == 1 ? 0 : rc;
    elastic_data_format format;
    if (parse_format(a.format, &format)) return 2;

    /* data */
    elastic_dataset *ds = NULL;
    elastic_status st;
    double t0 = now_seconds();
    if (a.data) {
        st = elastic_dataset_load(&ds, a.data, format);
        if (st != ELASTIC_OK) return fail(st, a.data);
    } else {
        elastic_synth_options so;
        elastic_synth_options_default(&so);
        so.seed = a.seed;
        st = elastic_dataset_synth(&ds, &so);
        if (st != ELASTIC_OK) return fail(st, "synthetic data");
    }
    printf("data: %s: %lld users, %lld items, %lld events (%.2f s)\n",
           a.data ? a.data : "synthetic (elastic synth defaults)",
           (long long)elastic_dataset_num_users(ds), (long long)elastic_dataset_num_items(ds),
           (long long)elastic_dataset_num_events(ds), now_seconds() - t0);

    char ckpt[4096], ckpt_state[4200];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", a.out);
    snprintf(ckpt_state, sizeof ckpt_state, "%s.ckpt.state", a.out);

    /* model: fresh, or the checkpoint */
    elastic_model *model = NULL;
    char *map = NULL;
    if (a.resume) {
        st = elastic_model_load(&model, ckpt);
        if (st == ELASTIC_OK &&
            elastic_model_config(model)->num_items != elastic_dataset_num_items(ds)) {
            fprintf(stderr, "elastic train: %s has %lld items, the data %lld: other data\n", ckpt,
                    (long long)elastic_model_config(model)->num_items,
                    (long long)elastic_dataset_num_items(ds));
            elastic_model_free(model);
            elastic_dataset_free(ds);
            return 1;
        }
    } else {
        config.num_items = elastic_dataset_num_items(ds);
        st = elastic_model_init_random(&model, &config, a.seed);
        if (st == ELASTIC_OK) st = elastic_dataset_item_map_json(ds, &map);
        if (st == ELASTIC_OK) st = elastic_model_set_metadata(model, "item_ids", map);
        free(map);
    }
    if (st != ELASTIC_OK) {
        elastic_model_free(model);
        elastic_dataset_free(ds);
        return fail(st, a.resume ? ckpt : "model");
    }
    const elastic_config *c = elastic_model_config(model);
    printf("model: %s, d=%lld, heads=%lld, layers=%lld, N=%lld",
           c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic", (long long)c->hidden,
           (long long)c->heads, (long long)c->layers, (long long)c->max_len);
    if (c->model == ELASTIC_MODEL_KIND_ELASTIC)
        printf(", k=%lld, m=%lld, t=%lld", (long long)c->experts, (long long)c->mem_subkeys,
               (long long)c->mem_topk);
    printf(", %lld parameters\n", (long long)elastic_model_parameter_count(model));

    elastic_train_options to;
    elastic_train_options_default(&to);
    to.lr = a.lr;
    to.dropout = (float)a.dropout;
    to.batch_size = (int)a.batch;
    to.samples_per_user = (int)a.spu;
    to.seed = a.seed;
    to.session.backend = a.backend;
    to.session.num_threads = (int)a.threads;
    to.session.allow_cpu_fallback = a.fallback;
    elastic_trainer *tr = NULL;
    st = elastic_trainer_init(&tr, model, &to);
    if (st == ELASTIC_OK && a.resume) st = elastic_trainer_load_state(tr, ckpt_state);
    if (st != ELASTIC_OK) {
        elastic_model_free(model);
        elastic_dataset_free(ds);
        return fail(st, a.resume ? ckpt_state : "trainer");
    }

    elastic_metrics pop;
    st = elastic_evaluate_popularity(ds, ELASTIC_SPLIT_VALID, a.eval_users, &pop);
    if (st != ELASTIC_OK) goto out;
    printf("validation, popularity ranking: HR@10 %.4f NDCG@10 %.4f (%lld users)\n", pop.hr10,
           pop.ndcg10, (long long)pop.users);

    double best = meta_number(model, "train.best_valid_hr10", -1);
    long bad = (long)meta_number(model, "train.bad_epochs", 0);
    bar b = {.quiet = a.quiet, .tty = isatty(2)};
    double start = now_seconds();
    for (long e = elastic_trainer_epochs(tr); e < a.epochs; e++) {
        b.epoch = e + 1;
        b.last_print = -1;
        elastic_train_progress p;
        st = elastic_trainer_epoch(tr, ds, show_progress, &b, &p);
        if (st != ELASTIC_OK) break;
        if (b.tty && !b.quiet) fputc('\n', stderr);
        elastic_metrics v;
        double te = now_seconds();
        st = evaluate(model, &a, ds, ELASTIC_SPLIT_VALID, a.eval_users, &v);
        if (st != ELASTIC_OK) break;
        int improved = v.hr10 > best;
        printf("epoch %ld: loss %.4f, %.1f s (%.0f examples/s), validation HR@10 %.4f NDCG@10 "
               "%.4f (%.1f s)%s\n",
               e + 1, p.loss, p.seconds, (double)p.examples / p.seconds, v.hr10, v.ndcg10,
               now_seconds() - te, improved ? ", best so far: saved" : "");
        fflush(stdout);
        if (improved) {
            best = v.hr10;
            bad = 0;
            st = elastic_model_save(model, a.out);
            if (st != ELASTIC_OK) break;
        } else {
            bad++;
        }
        if (a.checkpoint) {
            st = set_meta_number(model, "train.best_valid_hr10", best);
            if (st == ELASTIC_OK) st = set_meta_number(model, "train.bad_epochs", (double)bad);
            if (st == ELASTIC_OK) st = elastic_model_save(model, ckpt);
            if (st == ELASTIC_OK) st = elastic_trainer_save_state(tr, ckpt_state);
            if (st != ELASTIC_OK) break;
        }
        if (bad >= a.patience) {
            printf("early stop: no better validation HR@10 for %ld epochs\n", bad);
            break;
        }
        if (a.minutes > 0 && now_seconds() - start > 60 * a.minutes) {
            printf("time budget of %g minutes reached\n", a.minutes);
            break;
        }
    }
    if (st != ELASTIC_OK) goto out;

    /* The best model on the test split, once (spec section 6). */
    {
        elastic_model *best_model = NULL;
        st = elastic_model_load(&best_model, a.out);
        elastic_metrics test, test_pop;
        if (st == ELASTIC_OK) st = evaluate(best_model, &a, ds, ELASTIC_SPLIT_TEST, 0, &test);
        if (st == ELASTIC_OK)
            st = elastic_evaluate_popularity(ds, ELASTIC_SPLIT_TEST, 0, &test_pop);
        if (st == ELASTIC_OK) {
            printf("test (%lld users, full ranking, history left out):\n", (long long)test.users);
            print_metrics("model", &test);
            print_metrics("popularity", &test_pop);
            printf("wrote %s (%.1f minutes)\n", a.out, (now_seconds() - t0) / 60);
        }
        elastic_model_free(best_model);
    }
out:
    elastic_trainer_free(tr);
    elastic_model_free(model);
    elastic_dataset_free(ds);
    return st == ELASTIC_OK ? 0 : fail(st, "training");
}
