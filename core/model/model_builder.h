/*
 * model_builder.h - the ELASTIC and SASRec forward passes of the spec as
 * operator graphs, for one padded batch shape.
 */
#ifndef ELASTIC_CORE_MODEL_BUILDER_H
#define ELASTIC_CORE_MODEL_BUILDER_H

#include "graph/graph.h"
#include "model/model.h"

typedef enum elastic_build_output {
    ELASTIC_BUILD_OUTPUT_USER_VECTORS = 0, /* hu [B, d] */
    ELASTIC_BUILD_OUTPUT_SCORES = 1,       /* scores [B, I] */
    ELASTIC_BUILD_OUTPUT_TOPK = 2,         /* ids, vals [B, K] */
    /* Training on every position (spec 5, objectives causal and cloze):
     * final_norm(X) of every position, [B*n, d] with row b*n + r the
     * position of recency r of user b; no inference shortcut. */
    ELASTIC_BUILD_OUTPUT_POSITIONS = 3
} elastic_build_output;

typedef struct elastic_build_shape {
    int64_t batch;     /* B */
    int64_t len;       /* n: padded history length read, 1..N */
    int64_t n_exclude; /* E: width of the exclusion table (TOPK), 0 = none */
    int64_t top_k;     /* K (TOPK) */
    elastic_build_output output;
    /* Training: dropout p after the embedding sum, each MHA output and each
     * FFN output (spec section 5), masks drawn from `seed`; 0 = inference. */
    float dropout;
    uint64_t seed;
    /* Every MHA as ATTENTION_PROBS + ATTENTION_MIX, its softmax weights a
     * tensor of the plan (elastic_attention_kind), instead of ATTENTION. */
    int materialize_attention;
    /* TOPK output: scoring and top-K as one SCORE_TOPK node streaming over
     * item_emb (memory O(B K), never the [B, I] scores) instead of LINEAR
     * then TOPK; the session sets it where its backend has the op. */
    int fused_topk;
    /* Every residual FFN block (no dropout) as one FFN node, which computes
     * chunks of rows so that no [B, n, 4d] tensor exists: memory O(n d) at
     * long n. The session sets it where its backend has the op. */
    int fused_ffn;
    /* ELASTIC's aggregation (LayerNorm, K and V of the positions, attention)
     * as one AGGREGATE node and its dispatch (LayerNorm, Q, attention, output
     * projection, residual) as one DISPATCH node, so that at long n only X
     * and the next X exist: memory O(n d) with a small constant. Inference
     * only; the session sets it where its backend has the ops. */
    int fused_attention;
    /* TOPK output among candidates: an I32 input [B, C] (0 = none); implies
     * SCORE_TOPK. 0 = rank every item. */
    int64_t n_candidates;
} elastic_build_shape;

/* The graph's named inputs, as tensor ids. */
typedef struct elastic_build_io {
    int items;   /* I32 [B, n]: item at recency r, 0 for padding */
    int lengths; /* I32 [B]: n_b = min(len_b, N) */
    int exclude; /* I32 [B, E] or -1 */
    int candidates; /* I32 [B, C] or -1 */
    int out;     /* hu, scores or top-K ids */
    int out_vals;/* top-K scores, else -1 */
} elastic_build_io;

/* Positions the model reads for a history of `len` items (spec 3.0):
 * min(len + mask_token, N). */
int64_t elastic_build_read_len(const elastic_config *config, int64_t len);

/* The graph's `items` [B, n] and `lengths` [B] for a batch of checked
 * histories (ids 1..I), n >= the longest elastic_build_read_len: with a mask
 * token, the mask id I+1 at recency 0 and the newest n-1 items after it
 * (spec 3.0); without, the newest n items. Padding is id 0. Sessions and
 * trainers of every backend fill their inputs with it. */
void elastic_build_pad(const elastic_config *config, const int32_t *items, const int64_t *offsets,
                       int batch, int64_t n, int32_t *items_out, int32_t *lengths_out);

elastic_status elastic_build_forward(const elastic_model *model, const elastic_build_shape *shape,
                                     elastic_graph *g, elastic_build_io *io);

#endif
