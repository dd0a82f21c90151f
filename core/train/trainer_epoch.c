/*
 * trainer_epoch.c - one training epoch over a dataset (spec section 5), by
 * objective: prefix (samples_per_user prefix ends per user drawn uniformly,
 * shuffled, batched) or a position objective (causal, cloze: one sequence
 * per user, batches of similar lengths in shuffled order; cloze masks drawn
 * from counter-based streams keyed by epoch, user and position, so that no
 * result depends on the thread count or on the order of the draws).
 */
#include "base/error.h"
#include "model/model.h"
#include "base/rng.h"
#include "train/trainer.h"
#include "data/data.h"

#include <stdlib.h>
#include <time.h>

typedef struct example {
    int64_t user;
    int64_t end; /* the target is training item `end`; the history is items 0..end-1 */
} example;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static elastic_status positions_epoch(elastic_trainer *tr, const elastic_dataset *ds,
                                      elastic_train_progress_fn progress, void *ctx,
                                      elastic_train_progress *result);

static elastic_status prefix_epoch(elastic_trainer *tr, const elastic_dataset *ds,
                                   elastic_train_progress_fn progress, void *ctx,
                                   elastic_train_progress *result)
{
    const elastic_train_options *o = elastic_trainer_options(tr);
    const elastic_model *model = elastic_trainer_model(tr);
    int64_t N = model->config.max_len;
    if (elastic_dataset_num_items(ds) > model->config.num_items)
        return elastic_error(
            ELASTIC_ERR_OUT_OF_RANGE, "the dataset has %lld items, the model only %lld",
            (long long)elastic_dataset_num_items(ds), (long long)model->config.num_items);
    int64_t users = elastic_dataset_num_users(ds), epoch = elastic_trainer_epochs(tr);
    uint64_t stream = 0x65706f6368ULL + (uint64_t)epoch;

    example *ex = malloc((size_t)(users * o->samples_per_user + 1) * sizeof *ex);
    int32_t *items = malloc((size_t)(o->batch_size * N) * sizeof *items);
    int64_t *offsets = malloc((size_t)(o->batch_size + 1) * sizeof *offsets);
    int32_t *targets = malloc((size_t)o->batch_size * sizeof *targets);
    elastic_status st = ELASTIC_OK;
    if (!ex || !items || !offsets || !targets)
        st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (epoch)");
    int64_t n_ex = 0;
    for (int64_t u = 0; st == ELASTIC_OK && u < users; u++) {
        const int32_t *seq;
        int64_t len;
        st = elastic_dataset_train_items(ds, u, &seq, &len);
        if (st != ELASTIC_OK || len < 2) continue;
        for (int s = 0; s < o->samples_per_user; s++) {
            uint64_t r = elastic_rng_u64(o->seed, stream, (uint64_t)(u * o->samples_per_user + s));
            ex[n_ex++] = (example){u, 1 + (int64_t)(r % (uint64_t)(len - 1))};
        }
    }
    for (int64_t i = n_ex - 1; st == ELASTIC_OK && i > 0; i--) { /* Fisher-Yates */
        uint64_t r = elastic_rng_u64(o->seed, stream + 0x10000, (uint64_t)i);
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        example t = ex[i];
        ex[i] = ex[j];
        ex[j] = t;
    }
    if (st == ELASTIC_OK && n_ex == 0)
        st = elastic_error(ELASTIC_ERR_INVALID_ARG,
                           "no user has two training items: nothing to train on");

    elastic_train_progress p = {.steps = elastic_trainer_steps(tr), .examples_total = n_ex};
    double t0 = now_seconds(), loss_sum = 0;
    for (int64_t first = 0; st == ELASTIC_OK && first < n_ex; first += o->batch_size) {
        int batch = (int)(n_ex - first < o->batch_size ? n_ex - first : o->batch_size);
        offsets[0] = 0;
        for (int b = 0; b < batch; b++) {
            const int32_t *seq;
            int64_t len;
            st = elastic_dataset_train_items(ds, ex[first + b].user, &seq, &len);
            if (st != ELASTIC_OK) break;
            int64_t end = ex[first + b].end, start = end > N ? end - N : 0;
            for (int64_t i = start; i < end; i++)
                items[offsets[b] + i - start] = seq[i];
            offsets[b + 1] = offsets[b] + end - start;
            targets[b] = seq[end];
        }
        double loss = 0;
        if (st == ELASTIC_OK) st = elastic_trainer_step(tr, items, offsets, targets, batch, &loss);
        if (st != ELASTIC_OK) break;
        loss_sum += loss * batch;
        p.step++;
        p.steps = elastic_trainer_steps(tr);
        p.examples += batch;
        p.targets += batch;
        p.loss = loss_sum / (double)p.examples;
        p.seconds = now_seconds() - t0;
        if (progress) progress(&p, ctx);
    }
    free(ex);
    free(items);
    free(offsets);
    free(targets);
    if (st != ELASTIC_OK) return st;
    elastic_trainer_count_epoch(tr);
    if (result) *result = p;
    return ELASTIC_OK;
}

/* The popularity sampler's weights: each item's count among the dataset's
 * training items (the test and validation targets are not counted). */
static elastic_status set_counts(elastic_trainer *tr, const elastic_dataset *ds)
{
    int64_t items = elastic_trainer_model(tr)->config.num_items;
    int64_t *counts = calloc((size_t)items, sizeof *counts);
    if (!counts) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item counts)");
    elastic_status st = ELASTIC_OK;
    for (int64_t u = 0; st == ELASTIC_OK && u < elastic_dataset_num_users(ds); u++) {
        const int32_t *seq;
        int64_t len;
        st = elastic_dataset_train_items(ds, u, &seq, &len);
        for (int64_t i = 0; st == ELASTIC_OK && i < len; i++)
            counts[seq[i] - 1]++;
    }
    if (st == ELASTIC_OK) st = elastic_trainer_set_item_counts(tr, counts);
    free(counts);
    return st;
}

elastic_status elastic_trainer_epoch(elastic_trainer *tr, const elastic_dataset *ds,
                                     elastic_train_progress_fn progress, void *ctx,
                                     elastic_train_progress *result)
{
    elastic_error_clear();
    if (!tr || !ds) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or dataset");
    if (!elastic_trainer_live(tr))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    if (!elastic_dataset_live(ds))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the dataset was freed");
    const elastic_model *model = elastic_trainer_model(tr);
    if (elastic_dataset_num_items(ds) > model->config.num_items)
        return elastic_error(
            ELASTIC_ERR_OUT_OF_RANGE, "the dataset has %lld items, the model only %lld",
            (long long)elastic_dataset_num_items(ds), (long long)model->config.num_items);
    if (elastic_trainer_negatives(tr) &&
        elastic_trainer_options(tr)->sampler == ELASTIC_SAMPLER_POPULARITY)
        ELASTIC_TRY(set_counts(tr, ds));
    if (elastic_trainer_options(tr)->objective == ELASTIC_OBJECTIVE_PREFIX)
        return prefix_epoch(tr, ds, progress, ctx, result);
    return positions_epoch(tr, ds, progress, ctx, result);
}

/* ------------------------------------------------ causal and cloze (spec 5) */

typedef struct seq_example {
    int64_t user;
    int64_t len; /* positions of its sequence: the sort key of the batching */
} seq_example;

static int cmp_len(const void *a, const void *b)
{
    const seq_example *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->user > y->user) - (x->user < y->user);
}

/* Batches of similar lengths: the shuffled examples are sorted by length
 * within pools of BUCKET_POOL batches, so a batch pads little, while the
 * pools keep the composition random. */
enum { BUCKET_POOL = 32 };

/* Cloze (spec 5): the mask of user u's window of n items in this epoch.
 * With probability last_prob only the newest position is masked; else each
 * position with probability mask_prob, and one drawn position when none was.
 * mask[i] = 1 for masked positions i (time order, i = n-1 the newest). */
static void cloze_mask(const elastic_train_options *o, uint64_t stream, int64_t u, int64_t n,
                       unsigned char *mask)
{
    uint64_t key = (uint64_t)u * 0x100000001b3ULL;
    int any = 0;
    if (elastic_rng_uniform(o->seed, stream, key) < (double)o->last_prob) {
        for (int64_t i = 0; i < n; i++)
            mask[i] = i == n - 1;
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        mask[i] =
            elastic_rng_uniform(o->seed, stream + 1, key + (uint64_t)i) < (double)o->mask_prob;
        any |= mask[i];
    }
    if (!any) mask[elastic_rng_u64(o->seed, stream + 2, key) % (uint64_t)n] = 1;
}

static elastic_status positions_epoch(elastic_trainer *tr, const elastic_dataset *ds,
                                      elastic_train_progress_fn progress, void *ctx,
                                      elastic_train_progress *result)
{
    const elastic_train_options *o = elastic_trainer_options(tr);
    const elastic_model *model = elastic_trainer_model(tr);
    int64_t N = model->config.max_len, users = elastic_dataset_num_users(ds);
    int64_t epoch = elastic_trainer_epochs(tr);
    int causal = o->objective == ELASTIC_OBJECTIVE_CAUSAL;
    int32_t mask_id = (int32_t)(model->config.num_items + 1);
    uint64_t stream = 0x636c6f7a65ULL + 16 * (uint64_t)epoch;
    int B = o->batch_size;

    seq_example *ex = malloc((size_t)(users + 1) * sizeof *ex);
    int64_t *order = malloc((size_t)(users / B + 2) * sizeof *order);
    int32_t *inputs = malloc((size_t)B * (size_t)N * sizeof *inputs);
    int32_t *targets = malloc((size_t)B * (size_t)N * sizeof *targets);
    int64_t *offsets = malloc((size_t)(B + 1) * sizeof *offsets);
    unsigned char *mask = malloc((size_t)N);
    elastic_status st = ELASTIC_OK;
    if (!ex || !order || !inputs || !targets || !offsets || !mask)
        st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (epoch)");
    int64_t n_ex = 0;
    for (int64_t u = 0; st == ELASTIC_OK && u < users; u++) {
        const int32_t *seq;
        int64_t len;
        st = elastic_dataset_train_items(ds, u, &seq, &len);
        if (st != ELASTIC_OK || len < 2) continue;
        int64_t n = causal ? (len - 1 < N ? len - 1 : N) : (len < N ? len : N);
        ex[n_ex++] = (seq_example){u, n};
    }
    for (int64_t i = n_ex - 1; st == ELASTIC_OK && i > 0; i--) { /* Fisher-Yates */
        int64_t j =
            (int64_t)(elastic_rng_u64(o->seed, stream + 3, (uint64_t)i) % (uint64_t)(i + 1));
        seq_example t = ex[i];
        ex[i] = ex[j];
        ex[j] = t;
    }
    int64_t pool = (int64_t)BUCKET_POOL * B;
    for (int64_t first = 0; st == ELASTIC_OK && first < n_ex; first += pool)
        qsort(ex + first, (size_t)(n_ex - first < pool ? n_ex - first : pool), sizeof *ex, cmp_len);
    int64_t n_batches = (n_ex + B - 1) / B;
    for (int64_t i = 0; st == ELASTIC_OK && i < n_batches; i++)
        order[i] = i;
    for (int64_t i = n_batches - 1; st == ELASTIC_OK && i > 0; i--) {
        int64_t j =
            (int64_t)(elastic_rng_u64(o->seed, stream + 4, (uint64_t)i) % (uint64_t)(i + 1));
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    if (st == ELASTIC_OK && n_ex == 0)
        st = elastic_error(ELASTIC_ERR_INVALID_ARG,
                           "no user has two training items: nothing to train on");

    elastic_train_progress p = {.steps = elastic_trainer_steps(tr), .examples_total = n_ex};
    double t0 = now_seconds(), loss_sum = 0;
    for (int64_t k = 0; st == ELASTIC_OK && k < n_batches; k++) {
        int64_t first = order[k] * B;
        int batch = (int)(n_ex - first < B ? n_ex - first : B);
        int64_t scored = 0;
        offsets[0] = 0;
        for (int b = 0; b < batch; b++) {
            const int32_t *seq;
            int64_t len, u = ex[first + b].user, n = ex[first + b].len;
            st = elastic_dataset_train_items(ds, u, &seq, &len);
            if (st != ELASTIC_OK) break;
            int32_t *x = inputs + offsets[b], *t = targets + offsets[b];
            if (causal) { /* the N+1 newest: inputs the older N, targets the next item */
                const int32_t *w = seq + len - n - 1;
                for (int64_t i = 0; i < n; i++) {
                    x[i] = w[i];
                    t[i] = w[i + 1];
                }
                scored += n;
            } else { /* the N newest, masked */
                const int32_t *w = seq + len - n;
                cloze_mask(o, stream + 8, u, n, mask);
                for (int64_t i = 0; i < n; i++) {
                    x[i] = mask[i] ? mask_id : w[i];
                    t[i] = mask[i] ? w[i] : 0;
                    scored += mask[i];
                }
            }
            offsets[b + 1] = offsets[b] + n;
        }
        double loss = 0;
        if (st == ELASTIC_OK)
            st = elastic_trainer_step_positions(tr, inputs, offsets, targets, batch, &loss);
        if (st != ELASTIC_OK) break;
        loss_sum += loss * (double)scored;
        p.step++;
        p.steps = elastic_trainer_steps(tr);
        p.examples += batch;
        p.targets += scored;
        p.loss = loss_sum / (double)p.targets;
        p.seconds = now_seconds() - t0;
        if (progress) progress(&p, ctx);
    }
    free(ex);
    free(order);
    free(inputs);
    free(targets);
    free(offsets);
    free(mask);
    if (st != ELASTIC_OK) return st;
    elastic_trainer_count_epoch(tr);
    if (result) *result = p;
    return ELASTIC_OK;
}
