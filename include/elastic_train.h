/*
 * elastic_train.h - training ELASTIC and SASRec models: part of the public C
 * API of libelastic (included by elastic.h; the conventions there hold here
 * too).
 *
 * A trainer updates a model in place as spec section 5 (docs/spec/model.md)
 * says: softmax cross-entropy over all items (or a sampled softmax with
 * shared negatives and the log-Q correction), dropout, Adam, and one of the
 * objectives of section 5: `prefix` (a prefix of a user's training items and
 * the item after it), `causal` (every position against the next item: SASRec)
 * or `cloze` (masked positions against the items they hide: models with a
 * mask token). The forward graph and its gradient (the graph differentiated
 * op by op) run on the session's backend, and gradient ops a backend lacks run
 * on the CPU only when fallback is allowed; Adam updates the weights on the
 * host (sessions on the same model compute with the updated weights from
 * their next call, as after elastic_model_set_tensor). elastic_trainer_epoch
 * runs one epoch over a dataset (elastic_data.h); elastic_trainer_step and
 * elastic_trainer_gradient work on batches the caller builds. Runs are
 * reproducible from the seed, whatever the thread count, and a checkpoint
 * (the model file plus elastic_trainer_save_state) resumes bit for bit.
 *
 * Usage (error checks shortened; every call returns an elastic_status):
 *
 *   elastic_config cfg;
 *   elastic_config_default(&cfg);                           // spec section 1 defaults
 *   cfg.num_items = elastic_dataset_num_items(data);
 *   elastic_model *model;
 *   elastic_model_init_random(&model, &cfg, 1);             // spec section 5 init
 *   elastic_train_options opt;
 *   elastic_train_options_default(&opt);                    // lr 1e-3, batch 128, ...
 *   elastic_trainer *trainer;
 *   if (elastic_trainer_init(&trainer, model, &opt) != ELASTIC_OK)
 *       fprintf(stderr, "%s\n", elastic_last_error());
 *   for (int epoch = 0; epoch < 20; epoch++) {
 *       elastic_train_progress p;
 *       elastic_trainer_epoch(trainer, data, NULL, NULL, &p);   // p.loss: mean loss
 *       // validate: a new session on `model`, elastic_evaluate(..., ELASTIC_SPLIT_VALID, ...)
 *   }
 *   char *map;
 *   elastic_dataset_item_map_json(data, &map);              // serve in the data's ids
 *   elastic_model_set_metadata(model, "item_ids", map);
 *   free(map);
 *   elastic_model_save(model, "model.st");
 *   elastic_trainer_free(trainer);
 *   elastic_model_free(model);
 *
 * `elastic train` (tools/cmd_train.c) does this with early stopping,
 * checkpoints and progress lines; docs/training.md describes the method and
 * results.
 */
#ifndef ELASTIC_TRAIN_H
#define ELASTIC_TRAIN_H

#include "elastic.h"
#include "elastic_data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- training */

/* The training objectives of spec section 5. */
typedef enum elastic_objective {
    ELASTIC_OBJECTIVE_PREFIX = 0, /* samples_per_user prefixes per user and epoch */
    ELASTIC_OBJECTIVE_CAUSAL = 1, /* the N+1 newest training items, every position scored
                                     against the next item (SASRec only) */
    ELASTIC_OBJECTIVE_CLOZE = 2   /* the N newest training items, masked positions scored
                                     against the items they hide (mask_token = 1 only) */
} elastic_objective;

/* Where the negatives of a sampled softmax come from (spec section 5). */
typedef enum elastic_sampler {
    ELASTIC_SAMPLER_UNIFORM = 0,   /* every item alike */
    ELASTIC_SAMPLER_POPULARITY = 1 /* in proportion to its training count + 1 */
} elastic_sampler;

/* Negatives per step when the catalogue is larger than full_softmax_max. */
#define ELASTIC_DEFAULT_NEGATIVES 4096

/* Spec section 5: softmax cross-entropy, dropout, Adam. */
typedef struct elastic_train_options {
    size_t struct_size;              /* sizeof(elastic_train_options); set by _default */
    double lr;                       /* 1e-3 */
    double beta1, beta2;             /* 0.9, 0.98 */
    double adam_eps;                 /* 1e-8 */
    float dropout;                   /* 0.2 */
    int batch_size;                  /* 128 examples per step */
    int samples_per_user;            /* 8 prefix ends per user and epoch */
    uint64_t seed;                   /* example sampling and dropout masks */
    elastic_session_options session; /* backend, threads, CPU fallback */
    int objective;                   /* an elastic_objective: prefix (the default) */
    float mask_prob;                 /* cloze: each position masked with it, 0.2 */
    float last_prob;                 /* cloze: only the newest masked instead, 0.1 */
    /* Sampled softmax (spec 5): each step draws `negatives` items shared by
     * the batch and scores every row against the batch's targets and the
     * draws only, each corrected by -log P(drawn) (log-Q). 0 (the default):
     * the full softmax over all items when there are at most
     * full_softmax_max (200000), else ELASTIC_DEFAULT_NEGATIVES. */
    int negatives;
    int sampler;              /* an elastic_sampler: uniform (the default) */
    int64_t full_softmax_max; /* 200000 */
} elastic_train_options;

ELASTIC_API void elastic_train_options_default(elastic_train_options *options);

/* A trainer updates `model` in place; the model must outlive it. Gradient
 * ops the backend lacks run on the CPU only when session.allow_cpu_fallback
 * is set (elastic_trainer_fallback_nodes says how many did). */
typedef struct elastic_trainer elastic_trainer;

ELASTIC_API elastic_status elastic_trainer_init(elastic_trainer **trainer, elastic_model *model,
                                                const elastic_train_options *options);
ELASTIC_API void elastic_trainer_free(elastic_trainer *trainer);

/* Total number of parameters (floats): the tensors of elastic_model_tensor_name
 * in order, each flattened. Gradients use this layout. */
ELASTIC_API int64_t elastic_model_parameter_count(const elastic_model *model);

/* Loss and gradient of a batch without dropout and without an update:
 * histories in compressed-row form (as for sessions), targets[b] in 1..I the
 * item that follows history b. *loss is the batch mean; grad (may be NULL)
 * receives elastic_model_parameter_count floats. */
ELASTIC_API elastic_status elastic_trainer_gradient(elastic_trainer *trainer, const int32_t *items,
                                                    const int64_t *offsets, const int32_t *targets,
                                                    int batch, double *loss, float *grad);

/* One Adam step on a batch, with dropout; *loss (may be NULL) is the batch's
 * mean loss before the update. */
ELASTIC_API elastic_status elastic_trainer_step(elastic_trainer *trainer, const int32_t *items,
                                                const int64_t *offsets, const int32_t *targets,
                                                int batch, double *loss);

/* Loss and gradient of a batch scored at chosen positions (the objectives
 * causal and cloze), without dropout and without an update. Sequence b is
 * inputs[offsets[b] .. offsets[b+1]-1], oldest first, 1..N items, each an
 * item 1..I or, for a model with a mask token, the mask id I+1; targets has
 * the same layout: targets[i] in 1..I is the item the model's output at
 * position i is scored against, 0 leaves position i out. *loss is the mean
 * over the scored positions (at least one); grad as for
 * elastic_trainer_gradient. Only the scored positions reach the score GEMM. */
ELASTIC_API elastic_status elastic_trainer_gradient_positions(elastic_trainer *trainer,
                                                              const int32_t *inputs,
                                                              const int64_t *offsets,
                                                              const int32_t *targets, int batch,
                                                              double *loss, float *grad);

/* One Adam step with dropout on such a batch; *loss (may be NULL) as above. */
ELASTIC_API elastic_status elastic_trainer_step_positions(elastic_trainer *trainer,
                                                          const int32_t *inputs,
                                                          const int64_t *offsets,
                                                          const int32_t *targets, int batch,
                                                          double *loss);

/* Progress of an epoch, reported after every step. */
typedef struct elastic_train_progress {
    int64_t step, steps;    /* steps done in this epoch, and in all */
    int64_t examples;       /* examples done in this epoch */
    int64_t examples_total; /* examples in this epoch */
    double loss;            /* mean loss over this epoch so far */
    double seconds;         /* since the epoch started */
    int64_t targets;        /* scored positions in this epoch so far */
} elastic_train_progress;

typedef void (*elastic_train_progress_fn)(const elastic_train_progress *progress, void *ctx);

/* One epoch over a dataset's training items (spec section 5), with the
 * options' objective, over the users with at least two training items:
 * prefix: samples_per_user prefix ends per user drawn uniformly, shuffled,
 * in batches; causal and cloze: one example per user, shuffled, then
 * grouped into batches of similar lengths (less padding) whose order is
 * shuffled. Masks are drawn from (seed, epoch, user, position): the same
 * whatever the thread count. `progress` may be NULL; `examples` counts
 * sequences, `targets` the scored positions. */
ELASTIC_API elastic_status elastic_trainer_epoch(elastic_trainer *trainer,
                                                 const elastic_dataset *dataset,
                                                 elastic_train_progress_fn progress, void *ctx,
                                                 elastic_train_progress *result);

/* The popularity sampler's weights: counts[v - 1] training events of item
 * v = 1..I (the number of items of the model). elastic_trainer_epoch sets
 * them from its dataset; callers of elastic_trainer_step set them first. */
ELASTIC_API elastic_status elastic_trainer_set_item_counts(elastic_trainer *trainer,
                                                           const int64_t *counts);

/* Negatives per step of the trainer's sampled softmax, 0 for the full one. */
ELASTIC_API int elastic_trainer_negatives(const elastic_trainer *trainer);

/* Epochs and Adam steps done so far. */
ELASTIC_API int64_t elastic_trainer_epochs(const elastic_trainer *trainer);
ELASTIC_API int64_t elastic_trainer_steps(const elastic_trainer *trainer);
/* Nodes of the last step that ran on the CPU fallback. */
ELASTIC_API int elastic_trainer_fallback_nodes(const elastic_trainer *trainer);

/* Checkpoints: the optimizer state (Adam moments, step and epoch counts);
 * the weights are the model's, saved with elastic_model_save beside it. */
ELASTIC_API elastic_status elastic_trainer_save_state(const elastic_trainer *trainer,
                                                      const char *path);
ELASTIC_API elastic_status elastic_trainer_load_state(elastic_trainer *trainer, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* ELASTIC_TRAIN_H */
