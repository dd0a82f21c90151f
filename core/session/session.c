/*
 * session.c - a session runs a model on a backend: it validates histories,
 * pads them into a batch (recency order), keeps the graph and plan of the
 * last batch shape, and runs its plans through an executor (executor.h).
 */
#include "session/batch.h"
#include "base/error.h"
#include "runtime/backend_options.h"
#include "runtime/executor.h"
#include "model/model.h"
#include "model/model_builder.h"

#include <stdlib.h>
#include <string.h>

struct elastic_session {
    const elastic_model *model;
    elastic_session_options options;
    elastic_executor exec;

    int have_plan;
    elastic_build_shape shape;
    elastic_graph graph;
    elastic_build_io io;
    elastic_plan plan;

    int32_t *host_in;  /* staging for items, lengths, exclusions */
    size_t host_in_cap;
    elastic_run_stats stats;
};

void elastic_session_options_default(elastic_session_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->backend = "auto";
}

static void drop_plan(elastic_session *s)
{
    if (!s->have_plan) return;
    elastic_plan_free(&s->plan);
    elastic_graph_free(&s->graph);
    s->have_plan = 0;
}

void elastic_session_free(elastic_session *s)
{
    if (!s) return;
    drop_plan(s);
    elastic_executor_free(&s->exec);
    free(s->host_in);
    free(s);
}

elastic_status elastic_session_init(elastic_session **out, const elastic_model *model,
                                    const elastic_session_options *options)
{
    elastic_error_clear();
    if (!out || !model)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_session_init: NULL argument");
    *out = NULL;
    elastic_session_options o;
    ELASTIC_TRY(elastic_session_options_read(&o, options));
    if (o.attention != ELASTIC_ATTENTION_STREAMING && o.attention != ELASTIC_ATTENTION_MATERIALIZED)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown attention kind %d (0 or 1)",
                             o.attention);
    elastic_session *s = calloc(1, sizeof *s);
    if (!s) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (session)");
    s->model = model;
    /* Backends only read the parameter block; the executor's pointer is
     * non-const because trainers update theirs. */
    elastic_status st = elastic_executor_init(&s->exec, &o, model->data,
                                              (size_t)model->data_numel * sizeof(float));
    if (st != ELASTIC_OK) {
        free(s);
        return st;
    }
    s->options = o;
    s->options.backend = s->exec.backend_name;
    *out = s;
    return ELASTIC_OK;
}

const char *elastic_session_backend(const elastic_session *s)
{
    return s ? s->exec.description : "";
}

const elastic_model *elastic_session_model(const elastic_session *s)
{
    return s ? s->model : NULL;
}

static int same_shape(const elastic_build_shape *a, const elastic_build_shape *b)
{
    return a->batch == b->batch && a->len == b->len && a->n_exclude == b->n_exclude &&
           a->top_k == b->top_k && a->output == b->output;
}

/* Builds (or keeps) the graph and plan for a batch shape, and sizes arenas. */
static elastic_status ensure_plan(elastic_session *s, const elastic_build_shape *shape)
{
    if (s->have_plan && same_shape(&s->shape, shape)) return ELASTIC_OK;
    drop_plan(s);
    elastic_graph_init(&s->graph);
    elastic_status st = elastic_build_forward(s->model, shape, &s->graph, &s->io);
    if (st == ELASTIC_OK) st = elastic_executor_plan(&s->exec, &s->graph, &s->plan);
    if (st != ELASTIC_OK) {
        elastic_graph_free(&s->graph);
        return st;
    }
    s->have_plan = 1;
    s->shape = *shape;
    return ELASTIC_OK;
}

/* Validates, plans and runs one batch; outputs are downloaded to out/out2. */
static elastic_status run(elastic_session *s, const int32_t *items, const int64_t *offsets,
                          int batch, elastic_build_output output, int top_k, int exclude,
                          void *out, void *out2)
{
    elastic_error_clear();
    if (!s || !out || (output == ELASTIC_BUILD_OUTPUT_TOPK && !out2))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session or output");
    int64_t longest = 0;
    const elastic_config *c = &s->model->config;
    ELASTIC_TRY(elastic_batch_check(c->num_items, items, offsets, batch, &longest));
    if (output == ELASTIC_BUILD_OUTPUT_TOPK && (top_k < 1 || top_k > c->num_items))
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "top_k %d outside 1..%lld", top_k,
                             (long long)c->num_items);
    int64_t n = longest < c->max_len ? longest : c->max_len;
    elastic_build_shape shape = {.batch = batch, .len = n, .output = output,
                                 .top_k = output == ELASTIC_BUILD_OUTPUT_TOPK ? top_k : 0,
                                 .n_exclude = output == ELASTIC_BUILD_OUTPUT_TOPK && exclude
                                                  ? longest : 0,
                                 .materialize_attention = s->options.attention};
    ELASTIC_TRY(ensure_plan(s, &shape));

    /* Staging: items [B, n] in recency order, lengths [B], exclusions [B, E]. */
    size_t need = (size_t)batch * (size_t)(n + 1 + shape.n_exclude);
    if (need > s->host_in_cap) {
        int32_t *p = realloc(s->host_in, need * sizeof *p);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (batch staging)");
        s->host_in = p;
        s->host_in_cap = need;
    }
    int32_t *it = s->host_in, *len = it + (size_t)batch * n, *ex = len + batch;
    elastic_batch_pad(items, offsets, batch, n, it, len);
    for (int b = 0; b < batch; b++) {
        int64_t lb = offsets[b + 1] - offsets[b];
        const int32_t *h = items + offsets[b];
        for (int64_t e = 0; e < shape.n_exclude; e++)
            ex[b * shape.n_exclude + e] = e < lb ? h[e] : 0;
    }
    elastic_executor *e = &s->exec;
    ELASTIC_TRY(elastic_executor_upload(e, &s->graph, &s->plan, s->io.items, it));
    ELASTIC_TRY(elastic_executor_upload(e, &s->graph, &s->plan, s->io.lengths, len));
    ELASTIC_TRY(elastic_executor_upload(e, &s->graph, &s->plan, s->io.exclude, ex));
    ELASTIC_TRY(elastic_executor_run(e, &s->graph, &s->plan));
    ELASTIC_TRY(elastic_executor_download(e, &s->graph, &s->plan, s->io.out, out));
    if (s->io.out_vals >= 0)
        ELASTIC_TRY(elastic_executor_download(e, &s->graph, &s->plan, s->io.out_vals, out2));

    s->stats.nodes = s->graph.n_nodes;
    s->stats.fallback_nodes = s->plan.n_fallback;
    s->stats.copies = s->plan.n_transfers;
    s->stats.arena_bytes = s->plan.arena_size[0] + s->plan.arena_size[1];
    s->stats.naive_bytes = s->plan.naive_bytes;
    s->stats.max_tensor_bytes = s->plan.max_tensor_bytes;
    s->stats.flops = s->plan.flops;
    return ELASTIC_OK;
}

elastic_status elastic_session_user_vectors(elastic_session *s, const int32_t *items,
                                            const int64_t *offsets, int batch, float *out)
{
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_USER_VECTORS, 0, 0, out, NULL);
}

elastic_status elastic_session_scores(elastic_session *s, const int32_t *items,
                                      const int64_t *offsets, int batch, float *out)
{
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_SCORES, 0, 0, out, NULL);
}

elastic_status elastic_session_recommend(elastic_session *s, const int32_t *items,
                                         const int64_t *offsets, int batch, int top_k,
                                         int exclude_history, int32_t *ids, float *scores)
{
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_TOPK, top_k, exclude_history, ids,
               scores);
}

elastic_status elastic_session_print_plan(elastic_session *s, int batch, int64_t len, int top_k,
                                          FILE *out)
{
    elastic_error_clear();
    if (!s || !out) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session or stream");
    const elastic_config *c = &s->model->config;
    if (batch < 1 || len < 1 || top_k < 1 || top_k > c->num_items)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "plan needs batch >= 1, len >= 1 and top_k in 1..%lld",
                             (long long)c->num_items);
    elastic_build_shape shape = {.batch = batch, .len = len < c->max_len ? len : c->max_len,
                                 .n_exclude = len, .top_k = top_k,
                                 .output = ELASTIC_BUILD_OUTPUT_TOPK,
                                 .materialize_attention = s->options.attention};
    ELASTIC_TRY(ensure_plan(s, &shape));
    fprintf(out, "model: %s, B=%d, n=%lld (history %lld), K=%d\n",
            c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic", batch,
            (long long)shape.len, (long long)len, top_k);
    elastic_plan_print(&s->graph, &s->plan, out);
    return ELASTIC_OK;
}

elastic_status elastic_session_last_stats(const elastic_session *s, elastic_run_stats *stats)
{
    elastic_error_clear();
    if (!s || !stats) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session or stats");
    *stats = s->stats;
    return ELASTIC_OK;
}
