/*
 * model_builder.c - builds the forward graph of spec section 3 (ELASTIC) and
 * section 7 (SASRec) for a padded batch.
 *
 * Positions are in recency order: row r of X holds the item with recency r,
 * so padding sits at the end of every row and a user's valid rows are
 * 0..n_b-1. Padded rows are masked out of the IMR mean and out of the keys
 * of every attention, and no valid row ever reads them (spec section 4).
 *
 * Inference computes only what the outputs need: in the last layer only the
 * most recent position (r = 0) is carried through dispatch and FFN_x (or
 * self-attention and FFN_x for SASRec), since hu reads X[0] alone. Training
 * on every position (ELASTIC_BUILD_OUTPUT_POSITIONS) keeps all of them.
 *
 * A model with a mask token (spec 3.0) reads the mask id I+1 at recency 0
 * and the history after it: elastic_build_pad lays the inputs out so, for
 * every backend, and elastic_build_read_len counts the mask.
 *
 * Top-K output: LINEAR then TOPK, or one SCORE_TOPK (fused_topk, candidates).
 */
#include "model/model_builder.h"

#include "base/error.h"
#include "base/rng.h"

#include <stdio.h>
#include <string.h>

typedef struct builder {
    elastic_graph *g;
    const elastic_model *model;
    int64_t B, n, d;
    int heads;
    float eps;
    float dropout;
    uint64_t seed;
    int n_dropout;   /* dropout nodes so far: each draws its own mask */
    int materialize; /* MHA as ATTENTION_PROBS + ATTENTION_MIX */
    int all_positions; /* no last-layer shortcut: every position to the end */
    int fused_ffn;   /* FFN blocks as one FFN node (inference) */
    int fused_attention; /* AGGREGATE and DISPATCH nodes (inference) */
} builder;

int64_t elastic_build_read_len(const elastic_config *c, int64_t len)
{
    int64_t n = len + (c->mask_token ? 1 : 0);
    return n < c->max_len ? n : c->max_len;
}

void elastic_build_pad(const elastic_config *c, const int32_t *items, const int64_t *offsets,
                       int batch, int64_t n, int32_t *items_out, int32_t *lengths_out)
{
    int64_t mask = c->mask_token ? 1 : 0;
    for (int b = 0; b < batch; b++) {
        int64_t lb = offsets[b + 1] - offsets[b];
        int64_t nb = elastic_build_read_len(c, lb);
        if (nb > n) nb = n;
        const int32_t *h = items + offsets[b];
        int32_t *row = items_out + (int64_t)b * n;
        for (int64_t r = 0; r < n; r++)
            row[r] = r >= nb ? 0 : r < mask ? (int32_t)(c->num_items + 1) : h[lb - 1 - (r - mask)];
        lengths_out[b] = (int32_t)nb;
    }
}

static int weight(builder *b, const char *name)
{
    const elastic_param *p = elastic_model_find(b->model, name);
    if (!p) {
        if (b->g->status == ELASTIC_OK)
            b->g->status = elastic_error(ELASTIC_ERR_INTERNAL, "model lacks '%s'", name);
        return -1;
    }
    return elastic_graph_weight(b->g, name, p->ndim, p->shape, b->model->data + p->offset);
}

static int node(builder *b, elastic_op op, const int *in, int n_in, const char *name)
{
    elastic_op_params params = {.eps = b->eps, .heads = b->heads};
    return elastic_graph_node(b->g, op, in, n_in, &params, name);
}

static int layer_norm(builder *b, int x, const char *prefix)
{
    char w[96], bias[96];
    snprintf(w, sizeof w, "%s.weight", prefix);
    snprintf(bias, sizeof bias, "%s.bias", prefix);
    int in[3] = {x, weight(b, w), weight(b, bias)};
    return node(b, ELASTIC_OP_LAYER_NORM, in, 3, prefix);
}

static int linear(builder *b, int x, const char *prefix)
{
    char w[96], bias[96];
    snprintf(w, sizeof w, "%s.weight", prefix);
    snprintf(bias, sizeof bias, "%s.bias", prefix);
    int in[3] = {x, weight(b, w), weight(b, bias)};
    return node(b, ELASTIC_OP_LINEAR, in, 3, prefix);
}

/* Dropout of spec section 5 (training only); the identity at inference. */
static int dropout(builder *b, int x, const char *name)
{
    if (b->dropout <= 0) return x;
    elastic_op_params params = {.dropout = b->dropout,
                                .seed = elastic_rng_u64(b->seed, 0x64726f70, (uint64_t)b->n_dropout++)};
    char full[128];
    snprintf(full, sizeof full, "%.100s.dropout", name);
    return elastic_graph_node(b->g, ELASTIC_OP_DROPOUT, &x, 1, &params, full);
}

static int add(builder *b, int x, int y, const char *name)
{
    int in[2] = {x, y};
    return node(b, ELASTIC_OP_ADD, in, 2, name);
}

/* MHA of spec section 3: projections, masked (and maybe causal) attention,
 * output projection. `prefix` is e.g. "layers.0.agg". */
static int mha(builder *b, int q_in, int kv_in, int key_len, int causal, const char *prefix)
{
    char name[96];
    snprintf(name, sizeof name, "%s.q", prefix);
    int q = linear(b, q_in, name);
    snprintf(name, sizeof name, "%s.k", prefix);
    int k = linear(b, kv_in, name);
    snprintf(name, sizeof name, "%s.v", prefix);
    int v = linear(b, kv_in, name);
    elastic_op_params params = {.heads = b->heads, .causal = causal};
    int a;
    if (b->materialize) {
        int in_p[3] = {q, k, key_len};
        snprintf(name, sizeof name, "%s.attention.probs", prefix);
        int p = elastic_graph_node(b->g, ELASTIC_OP_ATTENTION_PROBS, in_p, 3, &params, name);
        int in_m[2] = {p, v};
        snprintf(name, sizeof name, "%s.attention", prefix);
        a = elastic_graph_node(b->g, ELASTIC_OP_ATTENTION_MIX, in_m, 2, &params, name);
    } else {
        int in[4] = {q, k, v, key_len};
        snprintf(name, sizeof name, "%s.attention", prefix);
        a = elastic_graph_node(b->g, ELASTIC_OP_ATTENTION, in, 4, &params, name);
    }
    snprintf(name, sizeof name, "%s.o", prefix);
    return dropout(b, linear(b, a, name), name);
}

/* z + FFN(z) with the block's own norm: fc2(GELU(fc1(LN(z)))); one FFN
 * node when fused (never with dropout: training differentiates the parts). */
static int ffn_residual(builder *b, int z, const char *prefix)
{
    char name[96];
    if (b->fused_ffn && b->dropout <= 0) {
        static const char *const parts[6] = {"norm.weight", "norm.bias",  "fc1.weight",
                                             "fc1.bias",    "fc2.weight", "fc2.bias"};
        int in[7] = {z};
        for (int i = 0; i < 6; i++) {
            snprintf(name, sizeof name, "%s.%s", prefix, parts[i]);
            in[i + 1] = weight(b, name);
        }
        return node(b, ELASTIC_OP_FFN, in, 7, prefix);
    }
    snprintf(name, sizeof name, "%s.norm", prefix);
    int h = layer_norm(b, z, name);
    snprintf(name, sizeof name, "%s.fc1", prefix);
    h = linear(b, h, name);
    snprintf(name, sizeof name, "%s.gelu", prefix);
    h = node(b, ELASTIC_OP_GELU, &h, 1, name);
    snprintf(name, sizeof name, "%s.fc2", prefix);
    h = dropout(b, linear(b, h, name), name);
    snprintf(name, sizeof name, "%s.residual", prefix);
    return add(b, z, h, name);
}

/* X[:, 0:1, :] as a contiguous [B, 1, d] tensor: the most recent position. */
static int most_recent(builder *b, int x, const char *name)
{
    int64_t shape[3] = {b->B, 1, b->d}, strides[3] = {b->n * b->d, b->d, 1};
    int v = elastic_graph_view(b->g, x, 3, shape, strides, 0);
    return node(b, ELASTIC_OP_COPY, &v, 1, name);
}

/* Step 1: X[r] = item_emb[s_r] + pos_emb[r]. */
static int embed(builder *b, int items)
{
    int in[2] = {weight(b, "item_emb"), items};
    int e = node(b, ELASTIC_OP_GATHER, in, 2, "embed.items");
    int64_t pshape[2] = {b->n, b->d};
    int pos = elastic_graph_view(b->g, weight(b, "pos_emb"), 2, pshape, NULL, 0);
    return dropout(b, add(b, e, pos, "embed"), "embed");
}

/* Step 2: interest memory retrieval -> P [B, k, d]. */
static int imr(builder *b, int x, int lengths)
{
    const elastic_config *c = &b->model->config;
    int in[3] = {x, lengths};
    int mean = node(b, ELASTIC_OP_MASKED_MEAN, in, 2, "imr.mean");
    int u = layer_norm(b, mean, "imr.norm");
    int q = linear(b, u, "imr.query");
    elastic_op_params params = {.experts = (int)c->experts, .mem_topk = (int)c->mem_topk};
    int pk[3] = {q, weight(b, "imr.subkeys"), weight(b, "imr.values")};
    return elastic_graph_node(b->g, ELASTIC_OP_PKM, pk, 3, &params, "imr.retrieve");
}

/* The weights named prefix.part for each part, into in[]. */
static void weights(builder *b, const char *prefix, const char *const *parts, int n, int *in)
{
    char name[128];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, parts[i]);
        in[i] = weight(b, name);
    }
}

/* Aggregation as one AGGREGATE node: ATTENTION(q(norm_p(P)), k(norm_x(X)),
 * v(norm_x(X))), then the output projection and the residual. */
static int fused_aggregation(builder *b, int x, int p, int lengths, const char *pre)
{
    static const char *const parts[6] = {"norm_x.weight", "norm_x.bias", "k.weight",
                                         "k.bias",        "v.weight",    "v.bias"};
    char name[128];
    snprintf(name, sizeof name, "%s.norm_p", pre);
    int pn = layer_norm(b, p, name);
    snprintf(name, sizeof name, "%s.q", pre);
    int in[9] = {linear(b, pn, name), x};
    weights(b, pre, parts, 6, in + 2);
    in[8] = lengths;
    snprintf(name, sizeof name, "%s.attention", pre);
    int a = node(b, ELASTIC_OP_AGGREGATE, in, 9, name);
    snprintf(name, sizeof name, "%s.o", pre);
    a = linear(b, a, name);
    snprintf(name, sizeof name, "%s.residual", pre);
    return add(b, p, a, name);
}

/* Dispatch as one DISPATCH node: X + o(ATTENTION(q(norm_x(X)), k(norm_p(P)),
 * v(norm_p(P)))), the experts' keys and values computed first. */
static int fused_dispatch(builder *b, int x, int p, const char *pre)
{
    static const char *const first[4] = {"norm_x.weight", "norm_x.bias", "q.weight", "q.bias"};
    static const char *const last[2] = {"o.weight", "o.bias"};
    char name[128];
    snprintf(name, sizeof name, "%s.norm_p", pre);
    int pn = layer_norm(b, p, name);
    int in[9] = {x};
    weights(b, pre, first, 4, in + 1);
    snprintf(name, sizeof name, "%s.k", pre);
    in[5] = linear(b, pn, name);
    snprintf(name, sizeof name, "%s.v", pre);
    in[6] = linear(b, pn, name);
    weights(b, pre, last, 2, in + 7);
    return node(b, ELASTIC_OP_DISPATCH, in, 9, pre);
}

/* Step 3 for ELASTIC; returns the final X (only row 0 in the last layer). */
static int elastic_layers(builder *b, int x, int p, int lengths)
{
    char pre[64], name[96];
    int L = (int)b->model->config.layers;
    for (int i = 0; i < L; i++) {
        snprintf(pre, sizeof pre, "layers.%d", i);
        if (b->fused_attention) {
            snprintf(name, sizeof name, "%s.agg", pre);
            p = fused_aggregation(b, x, p, lengths, name);
            snprintf(name, sizeof name, "%s.ffn_p", pre);
            p = ffn_residual(b, p, name);
            if (i == L - 1 && !b->all_positions) {
                snprintf(name, sizeof name, "%s.recent", pre);
                x = most_recent(b, x, name);
            }
            snprintf(name, sizeof name, "%s.disp", pre);
            x = fused_dispatch(b, x, p, name);
            snprintf(name, sizeof name, "%s.ffn_x", pre);
            x = ffn_residual(b, x, name);
            continue;
        }
        /* aggregation: k expert queries over the n positions */
        snprintf(name, sizeof name, "%s.agg.norm_p", pre);
        int pn = layer_norm(b, p, name);
        snprintf(name, sizeof name, "%s.agg.norm_x", pre);
        int xn = layer_norm(b, x, name);
        snprintf(name, sizeof name, "%s.agg", pre);
        int a = mha(b, pn, xn, lengths, 0, name);
        snprintf(name, sizeof name, "%s.agg.residual", pre);
        p = add(b, p, a, name);
        snprintf(name, sizeof name, "%s.ffn_p", pre);
        p = ffn_residual(b, p, name);
        /* dispatch: positions query the k experts */
        if (i == L - 1 && !b->all_positions) {
            snprintf(name, sizeof name, "%s.recent", pre);
            x = most_recent(b, x, name);
        }
        snprintf(name, sizeof name, "%s.disp.norm_x", pre);
        int xq = layer_norm(b, x, name);
        snprintf(name, sizeof name, "%s.disp.norm_p", pre);
        int pk = layer_norm(b, p, name);
        snprintf(name, sizeof name, "%s.disp", pre);
        a = mha(b, xq, pk, -1, 0, name);
        snprintf(name, sizeof name, "%s.disp.residual", pre);
        x = add(b, x, a, name);
        snprintf(name, sizeof name, "%s.ffn_x", pre);
        x = ffn_residual(b, x, name);
    }
    return x;
}

/* Section 7: causal self-attention layers; returns X (row 0 in the last). */
static int sasrec_layers(builder *b, int x, int lengths)
{
    char pre[64], name[96];
    int L = (int)b->model->config.layers;
    for (int i = 0; i < L; i++) {
        snprintf(pre, sizeof pre, "layers.%d.attn", i);
        snprintf(name, sizeof name, "%s.norm", pre);
        int xn = layer_norm(b, x, name);
        int xq = xn;
        if (i == L - 1 && !b->all_positions) {
            snprintf(name, sizeof name, "%s.recent_query", pre);
            xq = most_recent(b, xn, name);
            snprintf(name, sizeof name, "%s.recent", pre);
            x = most_recent(b, x, name);
        }
        int a = mha(b, xq, xn, lengths, 1, pre);
        snprintf(name, sizeof name, "%s.residual", pre);
        x = add(b, x, a, name);
        snprintf(name, sizeof name, "layers.%d.ffn_x", i);
        x = ffn_residual(b, x, name);
    }
    return x;
}

elastic_status elastic_build_forward(const elastic_model *model, const elastic_build_shape *s,
                                     elastic_graph *g, elastic_build_io *io)
{
    const elastic_config *c = &model->config;
    builder b = {.g = g,
                 .model = model,
                 .B = s->batch,
                 .n = s->len,
                 .d = c->hidden,
                 .heads = (int)c->heads,
                 .eps = (float)c->ln_eps,
                 .dropout = s->dropout,
                 .seed = s->seed,
                 .materialize = s->materialize_attention,
                 .all_positions = s->output == ELASTIC_BUILD_OUTPUT_POSITIONS,
                 .fused_ffn = s->fused_ffn,
                 .fused_attention =
                     s->fused_attention && s->dropout <= 0 && !s->materialize_attention};
    if (s->batch < 1 || s->len < 1 || s->len > c->max_len)
        return elastic_error(ELASTIC_ERR_INTERNAL, "bad batch shape B=%lld n=%lld",
                             (long long)s->batch, (long long)s->len);
    memset(io, 0, sizeof *io);
    io->exclude = io->candidates = io->out_vals = -1;
    int64_t shape[2] = {s->batch, s->len};
    io->items = elastic_graph_input(g, "items", ELASTIC_DTYPE_I32, 2, shape);
    io->lengths = elastic_graph_input(g, "lengths", ELASTIC_DTYPE_I32, 1, shape);

    int x = embed(&b, io->items);
    if (c->model == ELASTIC_MODEL_KIND_ELASTIC)
        x = elastic_layers(&b, x, imr(&b, x, io->lengths), io->lengths);
    else
        x = sasrec_layers(&b, x, io->lengths);

    /* Step 4: hu = final_norm(X[0]); x is already [B, 1, d] (or every
     * position [B, n, d], viewed as [B*n, d]). */
    int64_t hshape[2] = {s->batch * (b.all_positions ? s->len : 1), c->hidden};
    int x0 = elastic_graph_view(g, x, 2, hshape, NULL, 0);
    int hu = layer_norm(&b, x0, "final_norm");
    io->out = hu;
    if (s->output == ELASTIC_BUILD_OUTPUT_TOPK && (s->fused_topk || s->n_candidates > 0)) {
        /* Steps 5 and 6 fused: the same scores and rule, streamed. */
        int64_t ishape[2] = {c->num_items, c->hidden};
        int items = elastic_graph_view(g, weight(&b, "item_emb"), 2, ishape, NULL, c->hidden);
        if (s->n_exclude > 0) {
            int64_t eshape[2] = {s->batch, s->n_exclude};
            io->exclude = elastic_graph_input(g, "exclude", ELASTIC_DTYPE_I32, 2, eshape);
        }
        if (s->n_candidates > 0) {
            int64_t cshape[2] = {s->batch, s->n_candidates};
            io->candidates = elastic_graph_input(g, "candidates", ELASTIC_DTYPE_I32, 2, cshape);
        }
        elastic_op_params params = {.top_k = (int)s->top_k};
        int in[4] = {hu, items, io->exclude, io->candidates};
        io->out = elastic_graph_node(g, ELASTIC_OP_SCORE_TOPK, in, 4, &params, "scores.topk");
        io->out_vals = io->out + 1;
    } else if (s->output == ELASTIC_BUILD_OUTPUT_SCORES || s->output == ELASTIC_BUILD_OUTPUT_TOPK) {
        /* Step 5: scores against item_emb rows 1..I (row 0 is padding). */
        int64_t ishape[2] = {c->num_items, c->hidden};
        int items = elastic_graph_view(g, weight(&b, "item_emb"), 2, ishape, NULL, c->hidden);
        int in[3] = {hu, items, -1};
        io->out = node(&b, ELASTIC_OP_LINEAR, in, 3, "scores");
    }
    if (s->output == ELASTIC_BUILD_OUTPUT_TOPK && io->out_vals < 0) {
        if (s->n_exclude > 0) {
            int64_t eshape[2] = {s->batch, s->n_exclude};
            io->exclude = elastic_graph_input(g, "exclude", ELASTIC_DTYPE_I32, 2, eshape);
        }
        elastic_op_params params = {.top_k = (int)s->top_k};
        int in[2] = {io->out, io->exclude};
        io->out = elastic_graph_node(g, ELASTIC_OP_TOPK, in, 2, &params, "topk");
        io->out_vals = io->out + 1;
    }
    if (g->status != ELASTIC_OK) return g->status;
    elastic_graph_mark_output(g, io->out);
    if (io->out_vals >= 0) elastic_graph_mark_output(g, io->out_vals);
    return ELASTIC_OK;
}
