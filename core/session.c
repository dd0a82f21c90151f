/*
 * session.c - a session runs a model on a backend: it validates histories,
 * pads them into a batch (recency order), keeps the graph and plan of the
 * last batch shape, owns the arenas and weight buffers, and executes plans.
 */
#include "error.h"
#include "model.h"
#include "model_builder.h"
#include "planner.h"

#include <stdlib.h>
#include <string.h>

struct elastic_session {
    const elastic_model *model;
    elastic_session_options options;
    char backend_name[16];
    elastic_backend *backends[ELASTIC_PLAN_MAX_BACKENDS]; /* primary, CPU fallback */
    int n_backends;
    elastic_buffer *weights[ELASTIC_PLAN_MAX_BACKENDS];
    elastic_buffer *arena[ELASTIC_PLAN_MAX_BACKENDS];
    size_t arena_cap[ELASTIC_PLAN_MAX_BACKENDS];

    int have_plan;
    elastic_build_shape shape;
    elastic_graph graph;
    elastic_build_io io;
    elastic_plan plan;

    int32_t *host_in;  /* staging for items, lengths, exclusions */
    size_t host_in_cap;
    elastic_run_stats stats;
    char description[192];
};

void elastic_session_options_default(elastic_session_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->backend = "auto";
}

/* "auto": the first available accelerator, else the CPU. */
static const char *pick_auto(void)
{
    for (int i = 0; i < elastic_backend_registry_count(); i++) {
        const elastic_backend_iface *f = elastic_backend_registry_get(i);
        elastic_backend_info info;
        memset(&info, 0, sizeof info);
        f->probe(&info);
        if (info.available && info.accelerator) return f->name;
    }
    return "cpu";
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
    for (int b = 0; b < s->n_backends; b++) {
        elastic_backend *be = s->backends[b];
        be->iface->buffer_free(be, s->arena[b]);
        be->iface->buffer_free(be, s->weights[b]);
        be->iface->free(be);
    }
    free(s->host_in);
    free(s);
}

/* Starts a backend and gives it the model's parameter block. */
static elastic_status add_backend(elastic_session *s, const elastic_backend_iface *f,
                                  const elastic_session_options *o)
{
    elastic_backend *be = NULL;
    ELASTIC_TRY(f->init(&be, o));
    int b = s->n_backends++;
    s->backends[b] = be;
    size_t bytes = (size_t)s->model->data_numel * sizeof(float);
    if (be->iface->buffer_wrap_host)
        return be->iface->buffer_wrap_host(be, s->model->data, bytes, &s->weights[b]);
    ELASTIC_TRY(be->iface->buffer_alloc(be, bytes, &s->weights[b]));
    return be->iface->upload(be, s->weights[b], 0, s->model->data, bytes);
}

elastic_status elastic_session_init(elastic_session **out, const elastic_model *model,
                                    const elastic_session_options *options)
{
    elastic_error_clear();
    if (!out || !model)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_session_init: NULL argument");
    *out = NULL;
    elastic_session_options o;
    elastic_session_options_default(&o);
    if (options) o = *options;
    const char *name = o.backend ? o.backend : "auto";
    if (!strcmp(name, "auto")) name = pick_auto();
    const elastic_backend_iface *f = elastic_backend_registry_find(name);
    if (!f) {
        if (strcmp(name, "cpu") && strcmp(name, "opencl") && strcmp(name, "cuda"))
            return elastic_error(ELASTIC_ERR_BACKEND,
                                 "unknown backend '%s' (known: cpu, opencl, cuda, auto)", name);
        return elastic_error(ELASTIC_ERR_BACKEND,
                             "backend '%s' is not compiled into this library", name);
    }
    elastic_session *s = calloc(1, sizeof *s);
    if (!s) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (session)");
    s->model = model;
    s->options = o;
    snprintf(s->backend_name, sizeof s->backend_name, "%s", name);
    s->options.backend = s->backend_name;
    elastic_status st = add_backend(s, f, &o);
    if (st == ELASTIC_OK && o.allow_cpu_fallback && f != &elastic_cpu_backend_iface) {
        elastic_session_options cpu = o;
        cpu.device = 0;
        st = add_backend(s, &elastic_cpu_backend_iface, &cpu);
    }
    if (st != ELASTIC_OK) {
        elastic_session_free(s);
        return st;
    }
    snprintf(s->description, sizeof s->description, "%s%s",
             s->backends[0]->iface->describe(s->backends[0]),
             s->n_backends > 1 ? " + cpu fallback" : "");
    *out = s;
    return ELASTIC_OK;
}

const char *elastic_session_backend(const elastic_session *s)
{
    return s ? s->description : "";
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
    if (st == ELASTIC_OK)
        st = elastic_plan_build(&s->graph, s->backends[0], s->n_backends > 1 ? s->backends[1] : NULL,
                                s->model->data, &s->plan);
    if (st != ELASTIC_OK) {
        elastic_graph_free(&s->graph);
        return st;
    }
    s->have_plan = 1;
    s->shape = *shape;
    for (int b = 0; b < s->plan.n_backends; b++) {
        elastic_backend *be = s->backends[b];
        if (s->plan.arena_size[b] <= s->arena_cap[b] && s->arena[b]) continue;
        be->iface->buffer_free(be, s->arena[b]);
        s->arena[b] = NULL;
        s->arena_cap[b] = 0;
        st = be->iface->buffer_alloc(be, s->plan.arena_size[b] ? s->plan.arena_size[b] : 64,
                                     &s->arena[b]);
        if (st != ELASTIC_OK) {
            drop_plan(s);
            return st;
        }
        s->arena_cap[b] = s->plan.arena_size[b];
    }
    return ELASTIC_OK;
}

static size_t tensor_bytes(const elastic_graph *g, int id)
{
    return (size_t)elastic_tensor_numel(&g->tensors[id]) * 4;
}

/* Host -> the tensor's backend. */
static elastic_status upload_input(elastic_session *s, int id, const void *data)
{
    if (id < 0 || s->plan.place[id].storage != ELASTIC_STORAGE_ARENA) return ELASTIC_OK;
    int b = s->plan.place[id].backend;
    elastic_backend *be = s->backends[b];
    return be->iface->upload(be, s->arena[b], s->plan.place[id].offset, data,
                             tensor_bytes(&s->graph, id));
}

static elastic_status download_output(elastic_session *s, int id, void *dst)
{
    int b = s->plan.place[id].backend;
    elastic_backend *be = s->backends[b];
    return be->iface->download(be, s->arena[b], s->plan.place[id].offset, dst,
                               tensor_bytes(&s->graph, id));
}

/* A transfer step: copy a contiguous tensor between two backends' arenas. */
static elastic_status transfer(elastic_session *s, const elastic_plan_step *step)
{
    const elastic_placement *src = &s->plan.place[step->src], *dst = &s->plan.place[step->dst];
    elastic_backend *sb = s->backends[src->backend], *db = s->backends[dst->backend];
    size_t bytes = tensor_bytes(&s->graph, step->src);
    ELASTIC_TRY(sb->iface->synchronize(sb));
    void *dhost = db->iface->buffer_host_ptr(s->arena[dst->backend]);
    if (dhost)
        return sb->iface->download(sb, s->arena[src->backend], src->offset,
                                   (char *)dhost + dst->offset, bytes);
    void *shost = sb->iface->buffer_host_ptr(s->arena[src->backend]);
    if (shost)
        return db->iface->upload(db, s->arena[dst->backend], dst->offset,
                                 (char *)shost + src->offset, bytes);
    void *tmp = malloc(bytes);
    if (!tmp) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (transfer)");
    elastic_status st = sb->iface->download(sb, s->arena[src->backend], src->offset, tmp, bytes);
    if (st == ELASTIC_OK) st = db->iface->upload(db, s->arena[dst->backend], dst->offset, tmp, bytes);
    free(tmp);
    return st;
}

static elastic_status execute(elastic_session *s)
{
    const elastic_graph *g = &s->graph;
    for (int i = 0; i < s->plan.n_steps; i++) {
        const elastic_plan_step *step = &s->plan.steps[i];
        if (step->kind == ELASTIC_STEP_KIND_TRANSFER) {
            ELASTIC_TRY(transfer(s, step));
            continue;
        }
        int b = step->backend;
        elastic_tensor_ref in[ELASTIC_MAX_INPUTS], out[ELASTIC_MAX_OUTPUTS];
        for (int k = 0; k < step->node.n_inputs; k++)
            in[k] = elastic_plan_ref(g, &s->plan, step->node.inputs[k], s->arena[b], s->weights[b]);
        for (int k = 0; k < step->node.n_outputs; k++)
            out[k] = elastic_plan_ref(g, &s->plan, step->node.outputs[k], s->arena[b],
                                      s->weights[b]);
        elastic_backend *be = s->backends[b];
        ELASTIC_TRY(be->iface->compute(be, &step->node, in, out));
    }
    for (int b = 0; b < s->n_backends; b++) ELASTIC_TRY(s->backends[b]->iface->synchronize(s->backends[b]));
    return ELASTIC_OK;
}

/* Checks histories; returns the longest length through *max_len. */
static elastic_status check_histories(const elastic_session *s, const int32_t *items,
                                      const int64_t *offsets, int batch, int64_t *max_len)
{
    if (!items || !offsets)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "histories: items or offsets is NULL");
    if (batch < 1) return elastic_error(ELASTIC_ERR_INVALID_ARG, "batch size %d < 1", batch);
    if (offsets[0] != 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "offsets[0] must be 0, got %lld",
                             (long long)offsets[0]);
    int64_t I = s->model->config.num_items;
    *max_len = 0;
    for (int b = 0; b < batch; b++) {
        int64_t len = offsets[b + 1] - offsets[b];
        if (len < 0)
            return elastic_error(ELASTIC_ERR_INVALID_ARG, "offsets decrease at user %d", b);
        if (len == 0)
            return elastic_error(ELASTIC_ERR_EMPTY_HISTORY, "user %d has an empty history", b);
        for (int64_t i = offsets[b]; i < offsets[b + 1]; i++)
            if (items[i] < 1 || items[i] > I)
                return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                     "user %d, item %lld: id %d outside 1..%lld", b,
                                     (long long)(i - offsets[b]), (int)items[i], (long long)I);
        if (len > *max_len) *max_len = len;
    }
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
    ELASTIC_TRY(check_histories(s, items, offsets, batch, &longest));
    const elastic_config *c = &s->model->config;
    if (output == ELASTIC_BUILD_OUTPUT_TOPK && (top_k < 1 || top_k > c->num_items))
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "top_k %d outside 1..%lld", top_k,
                             (long long)c->num_items);
    int64_t n = longest < c->max_len ? longest : c->max_len;
    elastic_build_shape shape = {.batch = batch, .len = n, .output = output,
                                 .top_k = output == ELASTIC_BUILD_OUTPUT_TOPK ? top_k : 0,
                                 .n_exclude = output == ELASTIC_BUILD_OUTPUT_TOPK && exclude
                                                  ? longest : 0};
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
    for (int b = 0; b < batch; b++) {
        int64_t lb = offsets[b + 1] - offsets[b], nb = lb < n ? lb : n;
        const int32_t *h = items + offsets[b];
        for (int64_t r = 0; r < n; r++) it[b * n + r] = r < nb ? h[lb - 1 - r] : 0;
        len[b] = (int32_t)nb;
        for (int64_t e = 0; e < shape.n_exclude; e++)
            ex[b * shape.n_exclude + e] = e < lb ? h[e] : 0;
    }
    ELASTIC_TRY(upload_input(s, s->io.items, it));
    ELASTIC_TRY(upload_input(s, s->io.lengths, len));
    ELASTIC_TRY(upload_input(s, s->io.exclude, ex));
    ELASTIC_TRY(execute(s));
    ELASTIC_TRY(download_output(s, s->io.out, out));
    if (s->io.out_vals >= 0) ELASTIC_TRY(download_output(s, s->io.out_vals, out2));

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
                                 .output = ELASTIC_BUILD_OUTPUT_TOPK};
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
