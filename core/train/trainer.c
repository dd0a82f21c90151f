/*
 * trainer.c - training of spec section 5 on the operator graph: the forward
 * graph (with dropout) ends in the softmax cross-entropy, autodiff.c appends
 * the backward, and the executor runs both on the chosen backend. The host
 * sums each parameter's gradient and applies Adam to the model in place.
 *
 * Two graphs: the prefix objective scores the newest position of each user
 * (the inference graph's user vectors); the position objectives (causal,
 * cloze) keep every position, gather the scored ones (a `positions` input,
 * padded to a multiple of POSITION_QUANTUM with ignored rows, target 0) and
 * only then multiply by the item embeddings, so the scores are [T, I] for T
 * scored positions, never [B, n, I].
 *
 * A sampled softmax (negatives.h) replaces the item embeddings by the rows
 * of the step's classes (a `classes` input gathered from item_emb) and adds
 * their log-Q correction (a `class_bias` input): the scores are then
 * [rows, rows + S], and the targets are the classes' columns.
 */
#include "graph/autodiff.h"
#include "runtime/backend_options.h"
#include "session/batch.h"
#include "base/byteorder.h"
#include "base/error.h"
#include "runtime/executor.h"
#include "runtime/plan_cache.h"
#include "model/model.h"
#include "model/model_builder.h"
#include "base/rng.h"
#include "model/safetensors.h"
#include "train/negatives.h"
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A weight tensor of the graph whose gradient the plan computes. */
typedef struct grad_slot {
    int grad;       /* tensor holding d(loss)/d(weight) */
    int64_t offset; /* into the model's parameter block, in floats */
    int64_t numel;
} grad_slot;

/* What the trainer knows of one cached graph (the plan cache's extra):
 * its inputs, the loss, and where each weight's gradient goes. */
typedef struct train_graph {
    elastic_build_io io;
    int targets, loss;
    int positions;           /* I32 [T]: flat b*n + r of each scored position, or -1 (prefix) */
    int classes, class_bias; /* sampled softmax: I32 [C] rows of item_emb, F32 [C]; or -1 */
    int n_slots;
    grad_slot slots[]; /* one per weight tensor at most */
} train_graph;

/* The plan cache's key: a batch shape, and whether dropout is on. */
typedef struct train_key {
    int64_t batch, len;
    int64_t train;
    int64_t positions; /* T of the position graph, 0 for the prefix graph */
    int64_t classes;   /* C of a sampled softmax (rows + S), 0 for the full softmax */
} train_key;

/* T is padded to a multiple of this (fewer plans; the padding is ignored). */
enum { POSITION_QUANTUM = 128 };

/* Set while a trainer is live, cleared by elastic_trainer_free: a call on a
 * freed trainer (while its memory is not reused) is refused, not run. */
#define TRAINER_MAGIC 0x5452414Eu /* "TRAN" */
#define TRAINER_LIVE(t) ((t)->magic == TRAINER_MAGIC)

struct elastic_trainer {
    uint32_t magic;
    elastic_model *model;
    elastic_train_options o;
    elastic_executor exec;
    elastic_plan_cache plans; /* by batch shape */
    elastic_cached_plan *cur; /* the current batch's graph and plan */
    float *grad;              /* [numel]: the summed gradient */
    float *adam_m, *adam_v;
    float *host_grad; /* staging for one grad tensor */
    int64_t host_grad_cap;
    int32_t *host_in;
    size_t host_in_cap;
    float *host_loss;
    int64_t steps, epochs;
    int fallback_nodes;
    elastic_negatives negatives; /* draws 0: the full softmax */
};

void elastic_train_options_default(elastic_train_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->lr = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.98;
    o->adam_eps = 1e-8;
    o->dropout = 0.2f;
    o->batch_size = 128;
    o->samples_per_user = 8;
    o->seed = 1;
    elastic_session_options_default(&o->session);
    o->session.backend = "cpu";
    o->objective = ELASTIC_OBJECTIVE_PREFIX;
    o->mask_prob = 0.2f;
    o->last_prob = 0.1f;
    o->negatives = 0;
    o->sampler = ELASTIC_SAMPLER_UNIFORM;
    o->full_softmax_max = 200000;
}

int64_t elastic_model_parameter_count(const elastic_model *model)
{
    return model && elastic_model_live(model) ? model->data_numel : 0;
}

void elastic_trainer_free(elastic_trainer *tr)
{
    if (!tr || !TRAINER_LIVE(tr)) return; /* NULL, or freed already */
    tr->magic = 0;
    elastic_plan_cache_free(&tr->plans);
    elastic_executor_free(&tr->exec);
    free(tr->grad);
    free(tr->adam_m);
    free(tr->adam_v);
    free(tr->host_grad);
    free(tr->host_in);
    free(tr->host_loss);
    elastic_negatives_free(&tr->negatives);
    free(tr);
}

elastic_status elastic_trainer_init(elastic_trainer **out, elastic_model *model,
                                    const elastic_train_options *options)
{
    elastic_error_clear();
    if (!out || !model)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_trainer_init: NULL argument");
    *out = NULL;
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_trainer_init: the model was freed");
    elastic_train_options o;
    elastic_train_options_default(&o);
    if (options && options->struct_size != sizeof *options)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "training options of %zu bytes, but this library's are %zu: start "
                             "from elastic_train_options_default()",
                             options->struct_size, sizeof *options);
    if (options) o = *options;
    elastic_session_options session = o.session;
    ELASTIC_TRY(elastic_session_options_read(&o.session, &session));
    if (!(o.lr > 0) || !(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1) ||
        !(o.adam_eps > 0))
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "training options: lr > 0, betas in [0,1) and eps > 0 needed");
    if (!(o.dropout >= 0 && o.dropout < 1))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "dropout %g outside [0,1)", o.dropout);
    if (o.batch_size < 1 || o.samples_per_user < 1)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "batch_size and samples_per_user must be >= 1");
    if (o.objective != ELASTIC_OBJECTIVE_PREFIX && o.objective != ELASTIC_OBJECTIVE_CAUSAL &&
        o.objective != ELASTIC_OBJECTIVE_CLOZE)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown objective %d", o.objective);
    if (o.objective == ELASTIC_OBJECTIVE_CAUSAL && model->config.model != ELASTIC_MODEL_KIND_SASREC)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "objective causal is for SASRec only (spec 5): ELASTIC's attention "
                             "sees every position, so the next item would leak; use cloze");
    if (o.objective == ELASTIC_OBJECTIVE_CLOZE && !model->config.mask_token)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "objective cloze needs a model with a mask token (config key "
                             "mask_token=1, spec 3.0)");
    if (!(o.mask_prob > 0 && o.mask_prob <= 1) || !(o.last_prob >= 0 && o.last_prob <= 1))
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "mask_prob %g must be in (0,1] and last_prob %g in [0,1]", o.mask_prob,
                             o.last_prob);
    if (o.negatives < 0 || o.negatives > (1 << 24) || o.full_softmax_max < 1 ||
        (o.sampler != ELASTIC_SAMPLER_UNIFORM && o.sampler != ELASTIC_SAMPLER_POPULARITY))
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "sampled softmax: negatives %d must be in 0..16777216, "
                             "full_softmax_max %lld >= 1 and sampler uniform or popularity",
                             o.negatives, (long long)o.full_softmax_max);
    int draws = o.negatives;
    if (!draws && model->config.num_items > o.full_softmax_max) draws = ELASTIC_DEFAULT_NEGATIVES;
    elastic_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (trainer)");
    tr->magic = TRAINER_MAGIC;
    tr->model = model;
    tr->o = o;
    if (draws) {
        elastic_status sst =
            elastic_negatives_init(&tr->negatives, model->config.num_items, draws, o.sampler);
        if (sst != ELASTIC_OK) {
            elastic_trainer_free(tr);
            return sst;
        }
    }
    size_t n = (size_t)model->data_numel;
    tr->grad = malloc(n * sizeof(float));
    tr->adam_m = calloc(n, sizeof(float));
    tr->adam_v = calloc(n, sizeof(float));
    if (!tr->grad || !tr->adam_m || !tr->adam_v) {
        elastic_trainer_free(tr);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (optimizer state, %zu floats)",
                             n);
    }
    elastic_status st =
        elastic_executor_init(&tr->exec, &o.session, model->data, n * sizeof(float));
    if (st != ELASTIC_OK) {
        elastic_trainer_free(tr);
        return st;
    }
    tr->o.session.backend = tr->exec.backend_name;
    *out = tr;
    return ELASTIC_OK;
}

/* Builds forward, loss and backward for one batch shape, and plans them
 * (or finds them built): tr->cur is that graph and plan. */
static elastic_status build_plan(elastic_trainer *tr, int64_t batch, int64_t len, int train,
                                 int64_t positions)
{
    int64_t rows = positions ? positions : batch;
    int64_t classes = tr->negatives.draws ? rows + tr->negatives.draws : 0;
    train_key key;
    memset(&key, 0, sizeof key);
    key.batch = batch;
    key.len = len;
    key.train = train;
    key.positions = positions;
    key.classes = classes;
    elastic_cached_plan *cp;
    int hit;
    ELASTIC_TRY(elastic_plan_cache_get(&tr->plans, &key, sizeof key, &cp, &hit));
    if (hit) {
        tr->cur = cp;
        return ELASTIC_OK;
    }
    elastic_graph *g = &cp->graph;
    elastic_build_shape shape = {.batch = batch,
                                 .len = len,
                                 .output = positions ? ELASTIC_BUILD_OUTPUT_POSITIONS
                                           : classes ? ELASTIC_BUILD_OUTPUT_USER_VECTORS
                                                     : ELASTIC_BUILD_OUTPUT_SCORES,
                                 .dropout = train ? tr->o.dropout : 0.0f,
                                 .seed = tr->o.seed};
    int *grads = NULL;
    elastic_build_io io;
    int targets = -1, loss = -1, pos = -1, scores = -1, cls = -1, cls_bias = -1;
    elastic_status st = elastic_build_forward(tr->model, &shape, g, &io);
    if (st == ELASTIC_OK) {
        elastic_op_params none = {0};
        scores = io.out;
        if (positions || classes) {
            /* The scored positions first, then their scores against items
             * 1..I (spec 5: the mask, row I+1, is never a class), or against
             * the step's classes with their log-Q correction. */
            const elastic_config *c = &tr->model->config;
            const elastic_param *emb = elastic_model_find(tr->model, "item_emb");
            int64_t pshape[1] = {positions}, ishape[2] = {c->num_items, c->hidden};
            int h = io.out;
            if (positions) {
                pos = elastic_graph_input(g, "positions", ELASTIC_DTYPE_I32, 1, pshape);
                int in_g[2] = {io.out, pos};
                h = elastic_graph_node(g, ELASTIC_OP_GATHER, in_g, 2, &none, "scored");
            }
            int w = elastic_graph_weight(g, "item_emb", emb->ndim, emb->shape,
                                         tr->model->data + emb->offset);
            int items = elastic_graph_view(g, w, 2, ishape, NULL, c->hidden), bias = -1;
            if (classes) {
                int64_t cshape[1] = {classes};
                cls = elastic_graph_input(g, "classes", ELASTIC_DTYPE_I32, 1, cshape);
                cls_bias = elastic_graph_input(g, "class_bias", ELASTIC_DTYPE_F32, 1, cshape);
                int in_c[2] = {items, cls};
                items = elastic_graph_node(g, ELASTIC_OP_GATHER, in_c, 2, &none, "classes.emb");
                bias = cls_bias;
            }
            int in_s[3] = {h, items, bias};
            scores = elastic_graph_node(g, ELASTIC_OP_LINEAR, in_s, 3, &none, "scores");
        }
        int64_t tshape[1] = {rows};
        targets = elastic_graph_input(g, "targets", ELASTIC_DTYPE_I32, 1, tshape);
        int in[2] = {scores, targets};
        loss = elastic_graph_node(g, ELASTIC_OP_CROSS_ENTROPY, in, 2, &none, "loss");
        st = g->status;
    }
    train_graph *tg = NULL;
    if (st == ELASTIC_OK) {
        elastic_graph_mark_output(g, loss);
        grads = malloc((size_t)g->n_tensors * sizeof *grads);
        tg = malloc(sizeof *tg + (size_t)g->n_tensors * sizeof tg->slots[0]);
        cp->extra = tg;
        if (!grads || !tg)
            st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (trainer graph)");
    }
    int n_fwd = g->n_tensors;
    if (st == ELASTIC_OK) st = elastic_graph_backward(g, scores, loss + 1, grads);
    if (st == ELASTIC_OK) {
        tg->io = io;
        tg->targets = targets;
        tg->loss = loss;
        tg->positions = pos;
        tg->classes = cls;
        tg->class_bias = cls_bias;
        tg->n_slots = 0;
        for (int t = 0; t < n_fwd; t++) {
            const elastic_tensor *w = &g->tensors[t];
            if (w->kind != ELASTIC_TENSOR_KIND_WEIGHT || grads[t] < 0) continue;
            elastic_graph_mark_output(g, grads[t]);
            tg->slots[tg->n_slots++] =
                (grad_slot){.grad = grads[t],
                            .offset = (const float *)w->host_data - tr->model->data,
                            .numel = elastic_tensor_numel(w)};
        }
        st = elastic_executor_plan(&tr->exec, g, &cp->plan);
    }
    free(grads);
    if (st != ELASTIC_OK) {
        elastic_plan_cache_drop(cp);
        tr->cur = NULL;
        return st;
    }
    elastic_plan_cache_commit(&tr->plans, cp);
    tr->cur = cp;
    return ELASTIC_OK;
}

/* Fresh dropout masks for this step: each dropout node (and its backward
 * twin, which shares the node's build-time seed) gets a seed of its own. */
static void reseed(elastic_trainer *tr)
{
    elastic_cached_plan *cp = tr->cur;
    for (int i = 0; i < cp->plan.n_steps; i++) {
        elastic_plan_step *s = &cp->plan.steps[i];
        if (s->kind != ELASTIC_STEP_KIND_COMPUTE || s->node.op != ELASTIC_OP_DROPOUT) continue;
        uint64_t base = cp->graph.nodes[s->graph_node].params.seed;
        s->node.params.seed = elastic_rng_u64(base, 1, (uint64_t)tr->steps);
    }
}

/* The loss rows of the last run ([rows]) downloaded; *loss = the mean of the
 * first `scored` of them (the rest are padding). */
static elastic_status mean_loss(elastic_trainer *tr, const train_graph *tg, int64_t rows,
                                int64_t scored, double *loss)
{
    float *lb = realloc(tr->host_loss, (size_t)rows * sizeof *lb);
    if (!lb) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (loss)");
    tr->host_loss = lb;
    ELASTIC_TRY(
        elastic_executor_download(&tr->exec, &tr->cur->graph, &tr->cur->plan, tg->loss, lb));
    double sum = 0;
    for (int64_t j = 0; j < scored; j++)
        sum += lb[j];
    *loss = sum / (double)scored;
    return ELASTIC_OK;
}

/* Sums each weight's gradient of the plan just run into tr->grad. */
static elastic_status collect_gradient(elastic_trainer *tr)
{
    const elastic_graph *g = &tr->cur->graph;
    const elastic_plan *plan = &tr->cur->plan;
    const train_graph *tg = tr->cur->extra;
    elastic_executor *e = &tr->exec;
    memset(tr->grad, 0, (size_t)tr->model->data_numel * sizeof(float));
    for (int i = 0; i < tg->n_slots; i++) {
        const grad_slot *s = &tg->slots[i];
        if (s->numel > tr->host_grad_cap) {
            float *p = realloc(tr->host_grad, (size_t)s->numel * sizeof *p);
            if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (gradient)");
            tr->host_grad = p;
            tr->host_grad_cap = s->numel;
        }
        ELASTIC_TRY(elastic_executor_download(e, g, plan, s->grad, tr->host_grad));
        float *dst = tr->grad + s->offset;
        for (int64_t j = 0; j < s->numel; j++)
            dst[j] += tr->host_grad[j];
    }
    /* item_emb row 0 is padding: it stays zero (spec section 2). */
    const elastic_param *emb = elastic_model_find(tr->model, "item_emb");
    if (emb) memset(tr->grad + emb->offset, 0, (size_t)tr->model->config.hidden * sizeof(float));
    return ELASTIC_OK;
}

/* Uploads the targets of the plan just built ([rows], 0 = ignored row); with
 * a sampled softmax, first the step's classes, and `targets` rewritten to
 * their columns (so it must be the caller's copy). */
static elastic_status upload_targets(elastic_trainer *tr, int32_t *targets, int64_t rows)
{
    const elastic_graph *g = &tr->cur->graph;
    const elastic_plan *plan = &tr->cur->plan;
    const train_graph *tg = tr->cur->extra;
    elastic_executor *e = &tr->exec;
    if (tg->classes >= 0) {
        elastic_negatives *neg = &tr->negatives;
        ELASTIC_TRY(elastic_negatives_draw(neg, tr->o.seed, (uint64_t)tr->steps, targets, rows));
        ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->classes, neg->ids));
        ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->class_bias, neg->bias));
    }
    return elastic_executor_upload(e, g, plan, tg->targets, targets);
}

/* Forward, loss and backward of one batch; fills tr->grad and *loss. */
static elastic_status run_batch(elastic_trainer *tr, const int32_t *items, const int64_t *offsets,
                                const int32_t *targets, int batch, int train, double *loss)
{
    const elastic_config *c = &tr->model->config;
    if (!targets) return elastic_error(ELASTIC_ERR_INVALID_ARG, "targets is NULL");
    int64_t longest = 0;
    ELASTIC_TRY(elastic_batch_check(c->num_items, items, offsets, batch, &longest));
    for (int b = 0; b < batch; b++)
        if (targets[b] < 1 || targets[b] > c->num_items)
            return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "user %d: target %d outside 1..%lld", b,
                                 (int)targets[b], (long long)c->num_items);
    /* Lengths rounded up to a multiple of 8 so that plans are reused; the
     * padding changes no result (spec section 4). */
    int64_t n = (elastic_build_read_len(c, longest) + 7) / 8 * 8;
    if (n > c->max_len) n = c->max_len;
    ELASTIC_TRY(build_plan(tr, batch, n, train, 0));
    const elastic_graph *g = &tr->cur->graph;
    const elastic_plan *plan = &tr->cur->plan;
    const train_graph *tg = tr->cur->extra;
    if (train) reseed(tr);

    size_t need = (size_t)batch * (size_t)(n + 2);
    if (need > tr->host_in_cap) {
        int32_t *p = realloc(tr->host_in, need * sizeof *p);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (batch staging)");
        tr->host_in = p;
        tr->host_in_cap = need;
    }
    int32_t *it = tr->host_in, *len = it + (size_t)batch * n, *tgt = len + batch;
    elastic_build_pad(c, items, offsets, batch, n, it, len);
    memcpy(tgt, targets, (size_t)batch * sizeof *tgt);
    elastic_executor *e = &tr->exec;
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->io.items, it));
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->io.lengths, len));
    ELASTIC_TRY(upload_targets(tr, tgt, batch));
    ELASTIC_TRY(elastic_executor_run(e, g, plan));
    tr->fallback_nodes = plan->n_fallback;

    ELASTIC_TRY(mean_loss(tr, tg, batch, batch, loss));
    return collect_gradient(tr);
}

elastic_status elastic_trainer_gradient(elastic_trainer *tr, const int32_t *items,
                                        const int64_t *offsets, const int32_t *targets, int batch,
                                        double *loss, float *grad)
{
    elastic_error_clear();
    if (!tr || !loss) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or loss");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    ELASTIC_TRY(run_batch(tr, items, offsets, targets, batch, 0, loss));
    if (grad) memcpy(grad, tr->grad, (size_t)tr->model->data_numel * sizeof(float));
    return ELASTIC_OK;
}

/* Host staging of at least `need` int32 values. */
static elastic_status staging(elastic_trainer *tr, size_t need)
{
    if (need <= tr->host_in_cap) return ELASTIC_OK;
    int32_t *p = realloc(tr->host_in, need * sizeof *p);
    if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (batch staging)");
    tr->host_in = p;
    tr->host_in_cap = need;
    return ELASTIC_OK;
}

/* Forward, loss and backward of a batch scored at chosen positions (see
 * elastic_trainer_gradient_positions); fills tr->grad and *loss. */
static elastic_status run_positions(elastic_trainer *tr, const int32_t *inputs,
                                    const int64_t *offsets, const int32_t *targets, int batch,
                                    int train, double *loss)
{
    const elastic_config *c = &tr->model->config;
    if (!inputs || !offsets || !targets)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "inputs, offsets or targets is NULL");
    if (batch < 1) return elastic_error(ELASTIC_ERR_INVALID_ARG, "batch size %d < 1", batch);
    if (offsets[0] != 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "offsets[0] must be 0, got %lld",
                             (long long)offsets[0]);
    int64_t longest = 0, scored = 0, top = c->num_items + (c->mask_token ? 1 : 0);
    for (int b = 0; b < batch; b++) {
        int64_t len = offsets[b + 1] - offsets[b];
        if (len < 1 || len > c->max_len)
            return elastic_error(ELASTIC_ERR_INVALID_ARG,
                                 "sequence %d has %lld items, not 1..%lld (max_len)", b,
                                 (long long)len, (long long)c->max_len);
        for (int64_t i = offsets[b]; i < offsets[b + 1]; i++) {
            if (inputs[i] < 1 || inputs[i] > top)
                return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                     "sequence %d, item %lld: id %d outside 1..%lld%s", b,
                                     (long long)(i - offsets[b]), (int)inputs[i], (long long)top,
                                     c->mask_token ? " (I+1: the mask)" : "");
            if (targets[i] < 0 || targets[i] > c->num_items)
                return elastic_error(
                    ELASTIC_ERR_OUT_OF_RANGE, "sequence %d, item %lld: target %d outside 0..%lld",
                    b, (long long)(i - offsets[b]), (int)targets[i], (long long)c->num_items);
            scored += targets[i] != 0;
        }
        if (len > longest) longest = len;
    }
    if (scored == 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "no position of the batch has a target");
    int64_t n = (longest + 7) / 8 * 8;
    if (n > c->max_len) n = c->max_len;
    int64_t T = (scored + POSITION_QUANTUM - 1) / POSITION_QUANTUM * POSITION_QUANTUM;
    if (T > (int64_t)batch * n) T = (int64_t)batch * n;
    ELASTIC_TRY(build_plan(tr, batch, n, train, T));
    const elastic_graph *g = &tr->cur->graph;
    const elastic_plan *plan = &tr->cur->plan;
    const train_graph *tg = tr->cur->extra;
    if (train) reseed(tr);

    ELASTIC_TRY(staging(tr, (size_t)batch * (size_t)(n + 1) + 2 * (size_t)T));
    int32_t *it = tr->host_in, *len = it + (size_t)batch * n, *pos = len + batch, *tgt = pos + T;
    int64_t k = 0;
    for (int b = 0; b < batch; b++) { /* recency order: row r holds item len-1-r */
        int64_t lb = offsets[b + 1] - offsets[b];
        const int32_t *x = inputs + offsets[b], *t = targets + offsets[b];
        for (int64_t r = 0; r < n; r++)
            it[(int64_t)b * n + r] = r < lb ? x[lb - 1 - r] : 0;
        len[b] = (int32_t)lb;
        for (int64_t i = 0; i < lb; i++) {
            if (!t[i]) continue;
            pos[k] = (int32_t)((int64_t)b * n + (lb - 1 - i));
            tgt[k++] = t[i];
        }
    }
    for (; k < T; k++) { /* padding rows: ignored by the loss */
        pos[k] = 0;
        tgt[k] = 0;
    }
    elastic_executor *e = &tr->exec;
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->io.items, it));
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->io.lengths, len));
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, tg->positions, pos));
    ELASTIC_TRY(upload_targets(tr, tgt, T));
    ELASTIC_TRY(elastic_executor_run(e, g, plan));
    tr->fallback_nodes = plan->n_fallback;

    ELASTIC_TRY(mean_loss(tr, tg, T, scored, loss));
    return collect_gradient(tr);
}

elastic_status elastic_trainer_gradient_positions(elastic_trainer *tr, const int32_t *inputs,
                                                  const int64_t *offsets, const int32_t *targets,
                                                  int batch, double *loss, float *grad)
{
    elastic_error_clear();
    if (!tr || !loss) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or loss");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    ELASTIC_TRY(run_positions(tr, inputs, offsets, targets, batch, 0, loss));
    if (grad) memcpy(grad, tr->grad, (size_t)tr->model->data_numel * sizeof(float));
    return ELASTIC_OK;
}

/* Adam as PyTorch computes it (no weight decay). */
static void adam_update(elastic_trainer *tr)
{
    const elastic_train_options *o = &tr->o;
    double t = (double)tr->steps;
    double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
    double step = o->lr / bc1, sbc2 = sqrt(bc2);
    float *p = tr->model->data, *m = tr->adam_m, *v = tr->adam_v;
    const float *g = tr->grad;
    int64_t n = tr->model->data_numel;
    for (int64_t i = 0; i < n; i++) {
        m[i] = (float)(o->beta1 * m[i] + (1.0 - o->beta1) * g[i]);
        v[i] = (float)(o->beta2 * v[i] + (1.0 - o->beta2) * (double)g[i] * g[i]);
        p[i] -= (float)(step * m[i] / (sqrt((double)v[i]) / sbc2 + o->adam_eps));
    }
    tr->model->version++; /* sessions on this model read the new weights */
}

elastic_status elastic_trainer_step(elastic_trainer *tr, const int32_t *items,
                                    const int64_t *offsets, const int32_t *targets, int batch,
                                    double *loss)
{
    elastic_error_clear();
    if (!tr) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    double l = 0;
    ELASTIC_TRY(run_batch(tr, items, offsets, targets, batch, 1, &l));
    if (!isfinite(l))
        return elastic_error(ELASTIC_ERR_INTERNAL, "training diverged: loss is %g at step %lld", l,
                             (long long)tr->steps);
    tr->steps++;
    adam_update(tr);
    ELASTIC_TRY(elastic_executor_refresh_weights(&tr->exec));
    if (loss) *loss = l;
    return ELASTIC_OK;
}

elastic_status elastic_trainer_step_positions(elastic_trainer *tr, const int32_t *inputs,
                                              const int64_t *offsets, const int32_t *targets,
                                              int batch, double *loss)
{
    elastic_error_clear();
    if (!tr) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    double l = 0;
    ELASTIC_TRY(run_positions(tr, inputs, offsets, targets, batch, 1, &l));
    if (!isfinite(l))
        return elastic_error(ELASTIC_ERR_INTERNAL, "training diverged: loss is %g at step %lld", l,
                             (long long)tr->steps);
    tr->steps++;
    adam_update(tr);
    ELASTIC_TRY(elastic_executor_refresh_weights(&tr->exec));
    if (loss) *loss = l;
    return ELASTIC_OK;
}

elastic_status elastic_trainer_set_item_counts(elastic_trainer *tr, const int64_t *counts)
{
    elastic_error_clear();
    if (!tr || !counts) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or counts");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    if (!tr->negatives.draws) return ELASTIC_OK; /* the full softmax needs none */
    return elastic_negatives_set_counts(&tr->negatives, counts);
}

int elastic_trainer_negatives(const elastic_trainer *tr)
{
    return tr && TRAINER_LIVE(tr) ? tr->negatives.draws : 0;
}

int64_t elastic_trainer_epochs(const elastic_trainer *tr)
{
    return tr && TRAINER_LIVE(tr) ? tr->epochs : 0;
}

int64_t elastic_trainer_steps(const elastic_trainer *tr)
{
    return tr && TRAINER_LIVE(tr) ? tr->steps : 0;
}

int elastic_trainer_fallback_nodes(const elastic_trainer *tr)
{
    return tr && TRAINER_LIVE(tr) ? tr->fallback_nodes : 0;
}

const elastic_train_options *elastic_trainer_options(const elastic_trainer *tr)
{
    return &tr->o;
}

int elastic_trainer_live(const elastic_trainer *tr)
{
    return TRAINER_LIVE(tr);
}

const elastic_model *elastic_trainer_model(const elastic_trainer *tr)
{
    return tr->model;
}

void elastic_trainer_count_epoch(elastic_trainer *tr)
{
    tr->epochs++;
}

/* What a checkpoint's optimizer state was trained for: the objective and the
 * softmax, e.g. "causal" or "cloze, 4096 popularity negatives". A resumed
 * run must use the same (the moments are of that loss). */
static void loss_description(const elastic_trainer *tr, char *buf, size_t size)
{
    static const char *names[] = {"prefix", "causal", "cloze"};
    const elastic_negatives *n = &tr->negatives;
    if (!n->draws)
        snprintf(buf, size, "%s", names[tr->o.objective]);
    else
        snprintf(buf, size, "%s, %d %s negatives", names[tr->o.objective], n->draws,
                 n->sampler == ELASTIC_SAMPLER_POPULARITY ? "popularity" : "uniform");
}

elastic_status elastic_trainer_save_state(const elastic_trainer *tr, const char *path)
{
    elastic_error_clear();
    if (!tr || !path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or path");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    char steps[32], epochs[32], loss[64];
    snprintf(steps, sizeof steps, "%lld", (long long)tr->steps);
    snprintf(epochs, sizeof epochs, "%lld", (long long)tr->epochs);
    loss_description(tr, loss, sizeof loss);
    elastic_st_meta meta[4] = {{"kind", "elastic-trainer-state"},
                               {"steps", steps},
                               {"epochs", epochs},
                               {"objective", loss}};
    size_t n = (size_t)tr->model->data_numel, bytes = n * sizeof(float);
    /* Little-endian float32 in the file, whatever the host (base/byteorder.h). */
    void *m_copy = NULL, *v_copy = NULL;
    const void *m_le = elastic_f32_le_bytes(tr->adam_m, n, &m_copy);
    const void *v_le = m_le ? elastic_f32_le_bytes(tr->adam_v, n, &v_copy) : NULL;
    if (!m_le || !v_le) {
        free(m_copy);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory saving the trainer state");
    }
    elastic_st_tensor t[2] = {{.name = "adam.m",
                               .dtype = "F32",
                               .ndim = 1,
                               .shape = {tr->model->data_numel},
                               .data = m_le,
                               .nbytes = bytes},
                              {.name = "adam.v",
                               .dtype = "F32",
                               .ndim = 1,
                               .shape = {tr->model->data_numel},
                               .data = v_le,
                               .nbytes = bytes}};
    elastic_status st = elastic_st_write(path, meta, 4, t, 2);
    free(m_copy);
    free(v_copy);
    return st;
}

static elastic_status parse_count(const elastic_st_file *f, const char *key, const char *path,
                                  int64_t *out)
{
    const char *s = elastic_st_meta_get(f, key);
    char *end = NULL;
    long long v = s ? strtoll(s, &end, 10) : -1;
    if (!s || *end || v < 0)
        return elastic_error(ELASTIC_ERR_FORMAT, "%s: trainer state lacks a valid '%s'", path, key);
    *out = v;
    return ELASTIC_OK;
}

elastic_status elastic_trainer_load_state(elastic_trainer *tr, const char *path)
{
    elastic_error_clear();
    if (!tr || !path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL trainer or path");
    if (!TRAINER_LIVE(tr)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the trainer was freed");
    elastic_st_file f;
    ELASTIC_TRY(elastic_st_read(path, &f));
    elastic_status st = ELASTIC_OK;
    const char *kind = elastic_st_meta_get(&f, "kind");
    const elastic_st_tensor *m = elastic_st_find(&f, "adam.m"), *v = elastic_st_find(&f, "adam.v");
    size_t bytes = (size_t)tr->model->data_numel * sizeof(float);
    int64_t steps = 0, epochs = 0;
    if (!kind || strcmp(kind, "elastic-trainer-state"))
        st = elastic_error(ELASTIC_ERR_FORMAT, "%s: not a trainer state file", path);
    else if (!m || !v || strcmp(m->dtype, "F32") || strcmp(v->dtype, "F32") || m->nbytes != bytes ||
             v->nbytes != bytes)
        st = elastic_error(ELASTIC_ERR_FORMAT,
                           "%s: optimizer state does not match this model (%lld parameters)", path,
                           (long long)tr->model->data_numel);
    if (st == ELASTIC_OK) st = parse_count(&f, "steps", path, &steps);
    if (st == ELASTIC_OK) st = parse_count(&f, "epochs", path, &epochs);
    const char *saved = elastic_st_meta_get(&f, "objective"); /* absent before it was kept */
    char mine[64];
    loss_description(tr, mine, sizeof mine);
    if (st == ELASTIC_OK && saved && strcmp(saved, mine))
        st = elastic_error(ELASTIC_ERR_INVALID_ARG,
                           "%s: trained with objective '%s', but this trainer's is '%s': resume "
                           "with the same options",
                           path, saved, mine);
    if (st == ELASTIC_OK) {
        elastic_f32_from_le(tr->adam_m, m->data, bytes / sizeof(float));
        elastic_f32_from_le(tr->adam_v, v->data, bytes / sizeof(float));
        tr->steps = steps;
        tr->epochs = epochs;
    }
    elastic_st_free(&f);
    return st;
}
