/*
 * trainer_epoch.c - one training epoch over a dataset (spec section 5):
 * samples_per_user prefix ends per user drawn uniformly, shuffled, batched.
 */
#include "base/error.h"
#include "model/model.h"
#include "base/rng.h"
#include "train/trainer.h"

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

elastic_status elastic_trainer_epoch(elastic_trainer *tr, const elastic_dataset *ds,
                                     elastic_train_progress_fn progress, void *ctx,
                                     elastic_train_progress *result)
{
    elastic_error_clear();
    if (!tr || !ds) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or dataset");
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
