/*
 * session.c - a session runs a model on a backend: it validates histories,
 * pads them into a batch (recency order), keeps the graph and plan of the
 * last batch shape, and runs its plans through an executor (executor.h).
 */
#include "session/batch.h"
#include "base/error.h"
#include "runtime/backend_options.h"
#include "runtime/executor.h"
#include "runtime/plan_cache.h"
#include "model/model.h"
#include "model/model_builder.h"

#include <stdlib.h>
#include <string.h>

/* Set while a session is live, cleared by elastic_session_free: a call on a
 * freed session (while its memory is not reused) is refused, not run. */
#define SESSION_MAGIC 0x53455353u /* "SESS" */
#define SESSION_LIVE(s) ((s)->magic == SESSION_MAGIC)

struct elastic_session {
    uint32_t magic;
    const elastic_model *model;
    elastic_session_options options;
    elastic_executor exec;

    elastic_plan_cache plans; /* by batch shape */

    int fused_topk;      /* the backend has SCORE_TOPK: top-K without [B, I] scores */
    int fused_ffn;       /* the backend has FFN: no [B, n, 4d] activations */
    int fused_attention; /* ... AGGREGATE and DISPATCH: no [B, n, d] beyond X */
    int32_t *host_in;    /* staging for items, lengths, exclusions, candidates */
    size_t host_in_cap;
    elastic_run_stats stats;
    uint64_t weights_version; /* the model's version the backends hold */
};

void elastic_session_options_default(elastic_session_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->backend = "auto";
}

void elastic_session_free(elastic_session *s)
{
    if (!s || !SESSION_LIVE(s)) return; /* NULL, or freed already */
    s->magic = 0;
    elastic_plan_cache_free(&s->plans);
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
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_session_init: the model was freed");
    elastic_session_options o;
    ELASTIC_TRY(elastic_session_options_read(&o, options));
    if (o.attention != ELASTIC_ATTENTION_STREAMING && o.attention != ELASTIC_ATTENTION_MATERIALIZED)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown attention kind %d (0 or 1)",
                             o.attention);
    elastic_session *s = calloc(1, sizeof *s);
    if (!s) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (session)");
    s->magic = SESSION_MAGIC;
    s->model = model;
    /* Backends only read the parameter block; the executor's pointer is
     * non-const because trainers update theirs. */
    elastic_status st =
        elastic_executor_init(&s->exec, &o, model->data, (size_t)model->data_numel * sizeof(float));
    if (st != ELASTIC_OK) {
        free(s);
        return st;
    }
    s->options = o;
    /* The parameter block does not change under a session, except through
     * the model's calls, which bump its version (run() refreshes then). */
    elastic_executor_set_constant_weights(&s->exec, 1);
    s->weights_version = model->version;
    s->options.backend = s->exec.backend_name;
    elastic_node probe;
    memset(&probe, 0, sizeof probe);
    probe.op = ELASTIC_OP_SCORE_TOPK;
    s->fused_topk = elastic_backend_supports(s->exec.backends[0], &probe);
    probe.op = ELASTIC_OP_FFN;
    s->fused_ffn = elastic_backend_supports(s->exec.backends[0], &probe);
    probe.op = ELASTIC_OP_AGGREGATE;
    s->fused_attention = elastic_backend_supports(s->exec.backends[0], &probe);
    probe.op = ELASTIC_OP_DISPATCH;
    s->fused_attention &= elastic_backend_supports(s->exec.backends[0], &probe);
    *out = s;
    return ELASTIC_OK;
}

const char *elastic_session_backend(const elastic_session *s)
{
    return s && SESSION_LIVE(s) ? s->exec.description : "";
}

const elastic_model *elastic_session_model(const elastic_session *s)
{
    return s && SESSION_LIVE(s) ? s->model : NULL;
}

/* The graph and plan for a batch shape, built on first use; *io names its
 * inputs and outputs. */
static elastic_status ensure_plan(elastic_session *s, const elastic_build_shape *shape,
                                  elastic_cached_plan **out, const elastic_build_io **io)
{
    elastic_cached_plan *e;
    int hit;
    ELASTIC_TRY(elastic_plan_cache_get(&s->plans, shape, sizeof *shape, &e, &hit));
    if (!hit) {
        elastic_status st = (e->extra = malloc(sizeof(elastic_build_io)))
                                ? ELASTIC_OK
                                : elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (plan)");
        if (st == ELASTIC_OK) st = elastic_build_forward(s->model, shape, &e->graph, e->extra);
        if (st == ELASTIC_OK) st = elastic_executor_plan(&s->exec, &e->graph, &e->plan);
        if (st != ELASTIC_OK) {
            elastic_plan_cache_drop(e);
            return st;
        }
        elastic_plan_cache_commit(&s->plans, e);
    }
    *out = e;
    *io = e->extra;
    return ELASTIC_OK;
}

/* A batch shape as a plan key: zeroed first, since keys compare bytewise. */
static elastic_build_shape shape_key(const elastic_session *s, int64_t batch, int64_t len,
                                     elastic_build_output output, int64_t top_k, int64_t n_exclude)
{
    elastic_build_shape k;
    memset(&k, 0, sizeof k);
    k.batch = batch;
    k.len = len;
    k.output = output;
    k.top_k = top_k;
    k.n_exclude = n_exclude;
    k.materialize_attention = s->options.attention;
    k.fused_topk = output == ELASTIC_BUILD_OUTPUT_TOPK && s->fused_topk;
    k.fused_ffn = s->fused_ffn;
    k.fused_attention = s->fused_attention;
    return k;
}

/* Candidates of a run: user b's are ids[offsets[b] .. offsets[b+1]). */
typedef struct cand_rows {
    const int32_t *ids;
    const int64_t *offsets;
} cand_rows;

/* Checks candidate rows (offsets from 0, non-decreasing; ids in 1..I) and
 * returns the padded width C: the longest row rounded up to a power of two
 * (at least 16), so that few plans serve many calls. */
static elastic_status check_candidates(const cand_rows *cr, int batch, int64_t num_items,
                                       int64_t *width)
{
    if (!cr->ids || !cr->offsets)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL candidates or candidate offsets");
    if (cr->offsets[0] != 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "candidate offsets must start at 0");
    int64_t longest = 0;
    for (int b = 0; b < batch; b++) {
        int64_t n = cr->offsets[b + 1] - cr->offsets[b];
        if (n < 0)
            return elastic_error(ELASTIC_ERR_INVALID_ARG, "candidate offsets decrease at user %d",
                                 b);
        if (n > longest) longest = n;
        for (int64_t i = cr->offsets[b]; i < cr->offsets[b + 1]; i++)
            if (cr->ids[i] < 1 || cr->ids[i] > num_items)
                return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                                     "candidate item %d of user %d outside 1..%lld",
                                     (int)cr->ids[i], b, (long long)num_items);
    }
    if (longest > INT32_MAX)
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "%lld candidates for one user",
                             (long long)longest);
    int64_t w = 16;
    while (w < longest)
        w *= 2;
    *width = w;
    return ELASTIC_OK;
}

/* Validates, plans and runs one batch; outputs are downloaded to out/out2. */
static elastic_status run(elastic_session *s, const int32_t *items, const int64_t *offsets,
                          int batch, elastic_build_output output, int top_k, int exclude, void *out,
                          void *out2, const cand_rows *cand)
{
    elastic_error_clear();
    if (!s || !out || (output == ELASTIC_BUILD_OUTPUT_TOPK && !out2))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session or output");
    if (!SESSION_LIVE(s)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the session was freed");
    if (s->model->version != s->weights_version) { /* set_tensor or a training step since */
        ELASTIC_TRY(elastic_executor_refresh_weights(&s->exec));
        s->weights_version = s->model->version;
    }
    int64_t longest = 0;
    const elastic_config *c = &s->model->config;
    ELASTIC_TRY(elastic_batch_check(c->num_items, items, offsets, batch, &longest));
    if (output == ELASTIC_BUILD_OUTPUT_TOPK && (top_k < 1 || top_k > c->num_items))
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "top_k %d outside 1..%lld", top_k,
                             (long long)c->num_items);
    int64_t n = elastic_build_read_len(c, longest);
    int topk = output == ELASTIC_BUILD_OUTPUT_TOPK;
    elastic_build_shape shape =
        shape_key(s, batch, n, output, topk ? top_k : 0, topk && exclude ? longest : 0);
    if (cand) ELASTIC_TRY(check_candidates(cand, batch, c->num_items, &shape.n_candidates));
    elastic_cached_plan *cp;
    const elastic_build_io *io;
    ELASTIC_TRY(ensure_plan(s, &shape, &cp, &io));

    /* Staging: items [B, n] in recency order, lengths [B], exclusions [B, E]. */
    size_t need = (size_t)batch * (size_t)(n + 1 + shape.n_exclude + shape.n_candidates);
    if (need > s->host_in_cap) {
        int32_t *p = realloc(s->host_in, need * sizeof *p);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (batch staging)");
        s->host_in = p;
        s->host_in_cap = need;
    }
    int32_t *it = s->host_in, *len = it + (size_t)batch * n, *ex = len + batch;
    elastic_build_pad(c, items, offsets, batch, n, it, len);
    for (int b = 0; b < batch; b++) {
        int64_t lb = offsets[b + 1] - offsets[b];
        const int32_t *h = items + offsets[b];
        for (int64_t e = 0; e < shape.n_exclude; e++)
            ex[b * shape.n_exclude + e] = e < lb ? h[e] : 0;
    }
    int32_t *cs = ex + (size_t)batch * (size_t)shape.n_exclude;
    for (int b = 0; cand && b < batch; b++) {
        int64_t first = cand->offsets[b], nb = cand->offsets[b + 1] - first;
        for (int64_t i = 0; i < shape.n_candidates; i++)
            cs[(size_t)b * (size_t)shape.n_candidates + (size_t)i] =
                i < nb ? cand->ids[first + i] : 0;
    }
    elastic_executor *e = &s->exec;
    const elastic_graph *g = &cp->graph;
    const elastic_plan *plan = &cp->plan;
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, io->items, it));
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, io->lengths, len));
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, io->exclude, ex));
    ELASTIC_TRY(elastic_executor_upload(e, g, plan, io->candidates, cs));
    ELASTIC_TRY(elastic_executor_run(e, g, plan));
    ELASTIC_TRY(elastic_executor_download(e, g, plan, io->out, out));
    if (io->out_vals >= 0) ELASTIC_TRY(elastic_executor_download(e, g, plan, io->out_vals, out2));

    s->stats.nodes = g->n_nodes;
    s->stats.fallback_nodes = plan->n_fallback;
    s->stats.copies = plan->n_transfers;
    s->stats.arena_bytes = plan->arena_size[0] + plan->arena_size[1];
    s->stats.naive_bytes = plan->naive_bytes;
    s->stats.max_tensor_bytes = plan->max_tensor_bytes;
    s->stats.flops = plan->flops;
    return ELASTIC_OK;
}

elastic_status elastic_session_user_vectors(elastic_session *s, const int32_t *items,
                                            const int64_t *offsets, int batch, float *out)
{
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_USER_VECTORS, 0, 0, out, NULL, NULL);
}

elastic_status elastic_session_scores(elastic_session *s, const int32_t *items,
                                      const int64_t *offsets, int batch, float *out)
{
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_SCORES, 0, 0, out, NULL, NULL);
}

elastic_status elastic_session_recommend(elastic_session *s, const int32_t *items,
                                         const int64_t *offsets, int batch, int top_k,
                                         int exclude_history, int32_t *ids, float *scores)
{
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_TOPK, top_k, exclude_history, ids,
               scores, NULL);
}

elastic_status elastic_session_recommend_candidates(elastic_session *s, const int32_t *items,
                                                    const int64_t *offsets, int batch,
                                                    const int32_t *cand_items,
                                                    const int64_t *cand_offsets, int top_k,
                                                    int exclude_history, int32_t *ids,
                                                    float *scores)
{
    cand_rows cr = {cand_items, cand_offsets};
    return run(s, items, offsets, batch, ELASTIC_BUILD_OUTPUT_TOPK, top_k, exclude_history, ids,
               scores, &cr);
}

elastic_status elastic_session_print_plan(elastic_session *s, int batch, int64_t len, int top_k,
                                          FILE *out)
{
    elastic_error_clear();
    if (!s || !out) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session or stream");
    if (!SESSION_LIVE(s)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the session was freed");
    const elastic_config *c = &s->model->config;
    if (batch < 1 || len < 1 || top_k < 1 || top_k > c->num_items)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "plan needs batch >= 1, len >= 1 and top_k in 1..%lld",
                             (long long)c->num_items);
    elastic_build_shape shape =
        shape_key(s, batch, elastic_build_read_len(c, len), ELASTIC_BUILD_OUTPUT_TOPK, top_k, len);
    elastic_cached_plan *p;
    const elastic_build_io *io;
    ELASTIC_TRY(ensure_plan(s, &shape, &p, &io));
    fprintf(out, "model: %s, B=%d, n=%lld (history %lld), K=%d\n",
            c->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic", batch,
            (long long)shape.len, (long long)len, top_k);
    elastic_plan_print(&p->graph, &p->plan, out);
    return ELASTIC_OK;
}

elastic_status elastic_session_last_stats(const elastic_session *s, elastic_run_stats *stats)
{
    elastic_error_clear();
    if (!s || !stats) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL session or stats");
    if (!SESSION_LIVE(s)) return elastic_error(ELASTIC_ERR_INVALID_ARG, "the session was freed");
    *stats = s->stats;
    return ELASTIC_OK;
}
