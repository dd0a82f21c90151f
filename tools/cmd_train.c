/*
 * cmd_train.c - `elastic train`: from an interaction log (or the built-in
 * synthetic one) to a trained model file, with a progress line, validation
 * HR@10 beside the popularity ranking after every epoch, early stopping,
 * checkpoints that `--resume` continues, and a final test evaluation.
 */
#include "cli_util.h"
#include "commands.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char cmd_train_usage[] =
    "usage: elastic train -o MODEL [--data FILE] [options] [key=value ...]\n"
    "Trains ELASTIC (or SASRec: model=sasrec) as spec section 5 says and writes\n"
    "the model with the best validation HR@10 to MODEL (with the item-id map).\n"
    "Without --data it trains on the built-in synthetic log (elastic synth).\n"
    "  --data FILE          interaction log: 'user item' lines, MovieLens ratings.dat,\n"
    "                       CSV user,item,rating,timestamp, one user per line\n"
    "                       'user item item ...', or a RecBole .inter file\n"
    "  --format F           pairs, movielens, csv, sequences, recbole (default auto:\n"
    "                       from the file; the choice is printed)\n"
    "  key=value            model config (spec section 1), e.g. hidden=64 layers=2\n"
    "  --epochs E           at most E epochs (default 30)\n"
    "  --patience P         stop after P epochs without a better validation HR@10 (5)\n"
    "  --max-minutes M      stop after the epoch that crosses M minutes (default none)\n"
    "  --max-cpu-minutes M  stop after the epoch that crosses M minutes of this\n"
    "                       process's CPU time (a fair budget on a shared machine)\n"
    "  --objective O        prefix, causal (SASRec) or cloze (adds the mask token,\n"
    "                       mask_token=1) (spec section 5; default: the one measured\n"
    "                       best on ML-1M, docs/training.md: causal for SASRec,\n"
    "                       prefix for ELASTIC)\n"
    "  --mask-prob P --last-prob Q   cloze masking (spec defaults 0.2, 0.1)\n"
    "  --negatives S        sampled softmax: S negatives per step shared by the batch,\n"
    "                       log-Q corrected (default: the full softmax up to 200000\n"
    "                       items, else 4096)\n"
    "  --sampler K          the negatives' distribution: uniform (default) or\n"
    "                       popularity (training count + 1)\n"
    "  --lr X --batch B --dropout P --samples-per-user S   (spec defaults)\n"
    "  --seed S             initialisation, sampling and dropout (default 1)\n"
    "  --eval-users N       validate on N users each epoch (default all)\n"
    "  -b, --backend B      cpu, opencl, cuda or auto (default cpu)\n"
    "  --device D           device index within the backend (default 0)\n"
    "  --threads T          CPU threads (default: all)\n"
    "  --allow-fallback     run ops the backend lacks on the CPU (reported)\n"
    "  --backend-options TEXT  backend.key=value,... (README: cpu.isa, opencl.device, ...)\n"
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
    OPT_CHECKPOINT,
    OPT_RESUME,
    OPT_QUIET,
    OPT_OBJECTIVE,
    OPT_MASK_PROB,
    OPT_LAST_PROB,
    OPT_CPU_MINUTES,
    OPT_NEGATIVES,
    OPT_SAMPLER
};

typedef struct train_args {
    const char *out, *data;
    elastic_data_format format;
    long long epochs, patience, batch, spu, eval_users, negatives;
    int sampler;
    double minutes, cpu_minutes, lr, dropout, mask_prob, last_prob;
    int objective;
    uint64_t seed;
    elastic_session_options session; /* --backend --device --threads --allow-fallback */
    int checkpoint, resume, quiet;
} train_args;

/* Returns 0, -1 after --help, or 2 (bad usage, reported). */
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
                                         {"checkpoint", no_argument, 0, OPT_CHECKPOINT},
                                         {"resume", no_argument, 0, OPT_RESUME},
                                         {"quiet", no_argument, 0, OPT_QUIET},
                                         {"objective", required_argument, 0, OPT_OBJECTIVE},
                                         {"mask-prob", required_argument, 0, OPT_MASK_PROB},
                                         {"last-prob", required_argument, 0, OPT_LAST_PROB},
                                         {"max-cpu-minutes", required_argument, 0, OPT_CPU_MINUTES},
                                         {"negatives", required_argument, 0, OPT_NEGATIVES},
                                         {"sampler", required_argument, 0, OPT_SAMPLER},
                                         {0, 0, 0, 0}};
    elastic_train_options d;
    elastic_train_options_default(&d);
    *a = (train_args){.format = ELASTIC_DATA_FORMAT_AUTO,
                      .epochs = 30,
                      .patience = 5,
                      .batch = d.batch_size,
                      .spu = d.samples_per_user,
                      .lr = d.lr,
                      .dropout = d.dropout,
                      .mask_prob = d.mask_prob,
                      .last_prob = d.last_prob,
                      .objective = -1, /* by model kind, once it is known */
                      .seed = 1};
    cli_run_defaults(&a->session);
    int c;
    while ((c = cli_getopt(argc, argv, "o:", opts, CLI_RUN, &a->session)) != -1) {
        switch (c) {
        case 'o': a->out = optarg; break;
        case OPT_DATA: a->data = optarg; break;
        case OPT_FORMAT:
            if (cli_data_format(optarg, &a->format)) return 2;
            break;
        case OPT_EPOCHS:
            if (cli_int(optarg, "--epochs", 1, 100000, &a->epochs)) return 2;
            break;
        case OPT_PATIENCE:
            if (cli_int(optarg, "--patience", 1, 100000, &a->patience)) return 2;
            break;
        case OPT_MINUTES:
            if (cli_number(optarg, "--max-minutes", 0, 1e6, 0, &a->minutes)) return 2;
            break;
        case OPT_LR:
            if (cli_number(optarg, "--lr", 0, 10, 1, &a->lr)) return 2;
            break;
        case OPT_BATCH:
            if (cli_int(optarg, "--batch", 1, 1 << 20, &a->batch)) return 2;
            break;
        case OPT_DROPOUT:
            if (cli_number(optarg, "--dropout", 0, 0.99, 0, &a->dropout)) return 2;
            break;
        case OPT_SPU:
            if (cli_int(optarg, "--samples-per-user", 1, 100000, &a->spu)) return 2;
            break;
        case OPT_SEED:
            if (cli_u64(optarg, "--seed", &a->seed)) return 2;
            break;
        case OPT_EVAL_USERS:
            if (cli_int(optarg, "--eval-users", 1, 1LL << 40, &a->eval_users)) return 2;
            break;
        case OPT_CHECKPOINT: a->checkpoint = 1; break;
        case OPT_RESUME: a->resume = 1; break;
        case OPT_QUIET: a->quiet = 1; break;
        case OPT_OBJECTIVE:
            if (!strcmp(optarg, "prefix"))
                a->objective = ELASTIC_OBJECTIVE_PREFIX;
            else if (!strcmp(optarg, "causal"))
                a->objective = ELASTIC_OBJECTIVE_CAUSAL;
            else if (!strcmp(optarg, "cloze"))
                a->objective = ELASTIC_OBJECTIVE_CLOZE;
            else
                return cli_usage_error("--objective must be prefix, causal or cloze");
            break;
        case OPT_MASK_PROB:
            if (cli_number(optarg, "--mask-prob", 0, 1, 1, &a->mask_prob)) return 2;
            break;
        case OPT_CPU_MINUTES:
            if (cli_number(optarg, "--max-cpu-minutes", 0, 1e6, 0, &a->cpu_minutes)) return 2;
            break;
        case OPT_NEGATIVES:
            if (cli_int(optarg, "--negatives", 1, 1 << 24, &a->negatives)) return 2;
            break;
        case OPT_SAMPLER:
            if (!strcmp(optarg, "uniform"))
                a->sampler = ELASTIC_SAMPLER_UNIFORM;
            else if (!strcmp(optarg, "popularity"))
                a->sampler = ELASTIC_SAMPLER_POPULARITY;
            else
                return cli_usage_error("--sampler must be uniform or popularity");
            break;
        case OPT_LAST_PROB:
            if (cli_number(optarg, "--last-prob", 0, 1, 0, &a->last_prob)) return 2;
            break;
        default: return cli_stop(c) ? 2 : -1;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (!strncmp(argv[i], "num_items=", 10)) {
            cli_error("num_items comes from the data");
            return 2;
        }
        if (cli_config_pair(config, argv[i], "argument")) return 2;
    }
    if (!a->out) return cli_usage_error("-o MODEL is required");
    return 0;
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

/* CPU seconds this process has used (all threads). */
static double cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static elastic_status evaluate(const elastic_model *m, const train_args *a,
                               const elastic_dataset *ds, elastic_split split, int64_t users,
                               elastic_metrics *out)
{
    elastic_session *s = NULL;
    elastic_status st = elastic_session_init(&s, m, &a->session);
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

/* A checkpoint is MODEL.ckpt (weights; metadata train.steps) and
 * MODEL.ckpt.state (the optimizer at that step). It is written as
 * MODEL.ckpt.next, then the state, then renamed to MODEL.ckpt, each file
 * through a temporary and a rename: a kill at any point leaves either a
 * matching pair, or the state one checkpoint ahead of MODEL.ckpt with the
 * weights of that step in MODEL.ckpt.next; --resume completes the latter. */
static elastic_status checkpoint_save(elastic_model *model, elastic_trainer *tr, const char *ckpt,
                                      const char *next, const char *state)
{
    elastic_status st = set_meta_number(model, "train.steps", (double)elastic_trainer_steps(tr));
    if (st == ELASTIC_OK) st = elastic_model_save(model, next);
    if (st == ELASTIC_OK) st = elastic_trainer_save_state(tr, state);
    if (st == ELASTIC_OK && rename(next, ckpt) != 0) {
        cli_error("cannot rename '%s' to '%s': %s", next, ckpt, strerror(errno));
        st = ELASTIC_ERR_IO;
    }
    return st;
}

/* After --resume loaded MODEL.ckpt and the state: when their steps differ,
 * the weights of the state's step are MODEL.ckpt.next (a checkpoint cut
 * between its last two renames): use them and finish the rename. */
static elastic_status checkpoint_match(elastic_model **model, elastic_trainer **tr,
                                       const elastic_train_options *to, const char *ckpt,
                                       const char *next, const char *state)
{
    double want = meta_number(*model, "train.steps", -1);
    long long have = (long long)elastic_trainer_steps(*tr);
    if (want < 0 || (long long)want == have) return ELASTIC_OK; /* a matching pair */
    elastic_model *m = NULL;
    elastic_trainer *t = NULL;
    elastic_status st = elastic_model_load(&m, next);
    if (st == ELASTIC_OK && (long long)meta_number(m, "train.steps", -1) != have)
        st = ELASTIC_ERR_FORMAT;
    if (st == ELASTIC_OK) st = elastic_trainer_init(&t, m, to);
    if (st == ELASTIC_OK) st = elastic_trainer_load_state(t, state);
    if (st == ELASTIC_OK && rename(next, ckpt) != 0) st = ELASTIC_ERR_IO;
    if (st != ELASTIC_OK) {
        cli_error("%s (step %lld) and %s (step %lld) are not one checkpoint, and %s does not "
                  "complete them",
                  ckpt, (long long)want, state, have, next);
        elastic_trainer_free(t);
        elastic_model_free(m);
        return st;
    }
    printf("resume: completed the checkpoint of step %lld from %s\n", have, next);
    elastic_trainer_free(*tr);
    elastic_model_free(*model);
    *model = m;
    *tr = t;
    return ELASTIC_OK;
}

/* The objective measured best per model on ML-1M at equal time
 * (docs/training.md, spec section 5's rule for the default). */
static int default_objective(elastic_model_kind kind)
{
    return kind == ELASTIC_MODEL_KIND_SASREC ? ELASTIC_OBJECTIVE_CAUSAL : ELASTIC_OBJECTIVE_PREFIX;
}

int cmd_train(int argc, char **argv)
{
    train_args a;
    elastic_config config;
    elastic_config_default(&config);
    int rc = parse(argc, argv, &a, &config);
    if (rc) return rc < 0 ? 0 : rc;

    /* data */
    elastic_dataset *ds = NULL;
    elastic_status st;
    double t0 = cli_now();
    if (a.data) {
        st = elastic_dataset_load(&ds, a.data, a.format);
        if (st != ELASTIC_OK) return cli_fail(st, a.data);
    } else {
        elastic_synth_options so;
        elastic_synth_options_default(&so);
        so.seed = a.seed;
        st = elastic_dataset_synth(&ds, &so);
        if (st != ELASTIC_OK) return cli_fail(st, "synthetic data");
    }
    printf("data: %s (format %s%s): %lld users, %lld items, %lld events (%.2f s)\n",
           a.data ? a.data : "synthetic (elastic synth defaults)",
           a.data ? elastic_data_format_name(elastic_dataset_format(ds)) : "synthetic",
           a.data && a.format == ELASTIC_DATA_FORMAT_AUTO ? ", detected" : "",
           (long long)elastic_dataset_num_users(ds), (long long)elastic_dataset_num_items(ds),
           (long long)elastic_dataset_num_events(ds), cli_now() - t0);

    char ckpt[4096], ckpt_state[4200], ckpt_next[4200];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", a.out);
    snprintf(ckpt_state, sizeof ckpt_state, "%s.ckpt.state", a.out);
    snprintf(ckpt_next, sizeof ckpt_next, "%s.ckpt.next", a.out);

    /* model: fresh, or the checkpoint */
    elastic_model *model = NULL;
    char *map = NULL;
    if (a.resume) {
        st = elastic_model_load(&model, ckpt);
        if (st == ELASTIC_OK &&
            elastic_model_config(model)->num_items != elastic_dataset_num_items(ds)) {
            cli_error("%s has %lld items, the data %lld: other data", ckpt,
                      (long long)elastic_model_config(model)->num_items,
                      (long long)elastic_dataset_num_items(ds));
            elastic_model_free(model);
            elastic_dataset_free(ds);
            return 1;
        }
    } else {
        config.num_items = elastic_dataset_num_items(ds);
        if (a.objective < 0) a.objective = default_objective(config.model);
        if (a.objective == ELASTIC_OBJECTIVE_CLOZE) config.mask_token = 1; /* spec 3.0 */
        st = elastic_model_init_random(&model, &config, a.seed);
        if (st == ELASTIC_OK) st = elastic_dataset_item_map_json(ds, &map);
        if (st == ELASTIC_OK) st = elastic_model_set_metadata(model, "item_ids", map);
        free(map);
    }
    if (st != ELASTIC_OK) {
        elastic_model_free(model);
        elastic_dataset_free(ds);
        return cli_fail(st, a.resume ? ckpt : "model");
    }
    const elastic_config *c = elastic_model_config(model);
    if (a.objective < 0) a.objective = default_objective(c->model); /* --resume */
    printf("model: %s, d=%lld, heads=%lld, layers=%lld, N=%lld",
           c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic", (long long)c->hidden,
           (long long)c->heads, (long long)c->layers, (long long)c->max_len);
    if (c->model == ELASTIC_MODEL_KIND_ELASTIC)
        printf(", k=%lld, m=%lld, t=%lld", (long long)c->experts, (long long)c->mem_subkeys,
               (long long)c->mem_topk);
    static const char *objective_names[] = {"prefix", "causal", "cloze"};
    printf(", %lld parameters%s; objective %s\n", (long long)elastic_model_parameter_count(model),
           c->mask_token ? ", mask token" : "", objective_names[a.objective]);

    elastic_train_options to;
    elastic_train_options_default(&to);
    to.lr = a.lr;
    to.dropout = (float)a.dropout;
    to.batch_size = (int)a.batch;
    to.samples_per_user = (int)a.spu;
    to.seed = a.seed;
    to.session = a.session;
    to.objective = a.objective;
    to.mask_prob = (float)a.mask_prob;
    to.last_prob = (float)a.last_prob;
    to.negatives = (int)a.negatives;
    to.sampler = a.sampler;
    elastic_trainer *tr = NULL;
    st = elastic_trainer_init(&tr, model, &to);
    if (st == ELASTIC_OK && elastic_trainer_negatives(tr))
        printf("loss: sampled softmax, %d %s negatives per step, log-Q corrected\n",
               elastic_trainer_negatives(tr),
               a.sampler == ELASTIC_SAMPLER_POPULARITY ? "popularity" : "uniform");
    if (st == ELASTIC_OK && a.resume) st = elastic_trainer_load_state(tr, ckpt_state);
    if (st == ELASTIC_OK && a.resume)
        st = checkpoint_match(&model, &tr, &to, ckpt, ckpt_next, ckpt_state);
    if (st != ELASTIC_OK) {
        elastic_trainer_free(tr);
        elastic_model_free(model);
        elastic_dataset_free(ds);
        return cli_fail(st, a.resume ? ckpt_state : "trainer");
    }

    elastic_metrics pop;
    st = elastic_evaluate_popularity(ds, ELASTIC_SPLIT_VALID, a.eval_users, &pop);
    if (st != ELASTIC_OK) goto out;
    printf("validation, popularity ranking: HR@10 %.4f NDCG@10 %.4f (%lld users)\n", pop.hr10,
           pop.ndcg10, (long long)pop.users);

    double best = meta_number(model, "train.best_valid_hr10", -1);
    long bad = (long)meta_number(model, "train.bad_epochs", 0);
    bar b = {.quiet = a.quiet, .tty = isatty(2)};
    double start = cli_now(), cpu_start = cpu_seconds();
    for (long e = elastic_trainer_epochs(tr); e < a.epochs; e++) {
        b.epoch = e + 1;
        b.last_print = -1;
        elastic_train_progress p;
        st = elastic_trainer_epoch(tr, ds, show_progress, &b, &p);
        if (st != ELASTIC_OK) break;
        if (b.tty && !b.quiet) fputc('\n', stderr);
        elastic_metrics v;
        double te = cli_now();
        st = evaluate(model, &a, ds, ELASTIC_SPLIT_VALID, a.eval_users, &v);
        if (st != ELASTIC_OK) break;
        int improved = v.hr10 > best;
        printf("epoch %ld: loss %.4f, %.1f s (%.0f examples/s, %.0f targets/s), validation HR@10 "
               "%.4f NDCG@10 %.4f (%.1f s), %.2f min, %.2f cpu min%s\n",
               e + 1, p.loss, p.seconds, (double)p.examples / p.seconds,
               (double)p.targets / p.seconds, v.hr10, v.ndcg10, cli_now() - te,
               (cli_now() - start) / 60, (cpu_seconds() - cpu_start) / 60,
               improved ? ", best so far: saved" : "");
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
            if (st == ELASTIC_OK) st = checkpoint_save(model, tr, ckpt, ckpt_next, ckpt_state);
            if (st != ELASTIC_OK) break;
        }
        if (bad >= a.patience) {
            printf("early stop: no better validation HR@10 for %ld epochs\n", bad);
            break;
        }
        if (a.minutes > 0 && cli_now() - start > 60 * a.minutes) {
            printf("time budget of %g minutes reached\n", a.minutes);
            break;
        }
        if (a.cpu_minutes > 0 && cpu_seconds() - cpu_start > 60 * a.cpu_minutes) {
            printf("CPU time budget of %g minutes reached\n", a.cpu_minutes);
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
            printf("wrote %s (%.1f minutes)\n", a.out, (cli_now() - t0) / 60);
        }
        elastic_model_free(best_model);
    }
out:
    elastic_trainer_free(tr);
    elastic_model_free(model);
    elastic_dataset_free(ds);
    return st == ELASTIC_OK ? 0 : cli_fail(st, "training");
}
