/*
 * graph.h - tensors and the backend-agnostic operator graph.
 *
 * A graph is a list of tensors and a list of nodes in execution order. Each
 * node applies one op to input tensors and defines one or two output tensors
 * whose shapes are inferred and validated when the node is added. Tensors are
 * inputs (filled from the host before a run), weights (host data owned by a
 * model), views (a strided window on another tensor, no storage of their own)
 * or intermediates (defined by a node). Every node records its inputs, so a
 * backward pass can walk the list in reverse and add gradient nodes.
 *
 * Building is "sticky": the first error is stored in the graph and every later
 * call returns -1, so a builder checks the status once at the end.
 */
#ifndef ELASTIC_CORE_GRAPH_H
#define ELASTIC_CORE_GRAPH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "elastic.h"

#define ELASTIC_MAX_DIMS 4
#define ELASTIC_MAX_INPUTS 9 /* AGGREGATE, DISPATCH: three tensors and six weights */
#define ELASTIC_MAX_OUTPUTS 3

typedef enum elastic_dtype { ELASTIC_DTYPE_F32 = 0, ELASTIC_DTYPE_I32 = 1 } elastic_dtype;

typedef enum elastic_tensor_kind {
    ELASTIC_TENSOR_KIND_INPUT = 0,
    ELASTIC_TENSOR_KIND_WEIGHT = 1,
    ELASTIC_TENSOR_KIND_VIEW = 2,
    ELASTIC_TENSOR_KIND_INTERMEDIATE = 3
} elastic_tensor_kind;

typedef struct elastic_tensor {
    char name[64];
    elastic_dtype dtype;
    elastic_tensor_kind kind;
    int ndim;
    int64_t shape[ELASTIC_MAX_DIMS];
    int64_t strides[ELASTIC_MAX_DIMS]; /* in elements */
    const void *host_data;             /* weights: the model's data */
    int view_src;                      /* views: the tensor viewed, else -1 */
    int64_t view_offset;               /* views: offset in elements */
    int producer;                      /* node that defines it, else -1 */
    int is_output;                     /* read back to the host after a run */
} elastic_tensor;

/* The ops, generated from ops.def (the one list; see it for each op's
 * inputs and outputs, and ops.c for shapes and semantics). */
typedef enum elastic_op {
#define ELASTIC_OP(ENUM, name, min_in, max_in, phase, summary) ELASTIC_OP_##ENUM,
#include "graph/ops.def"
#undef ELASTIC_OP
    ELASTIC_OP_COUNT
} elastic_op;

typedef enum elastic_op_phase {
    ELASTIC_OP_PHASE_INFERENCE = 0, /* serving */
    ELASTIC_OP_PHASE_TRAINING = 1   /* dropout, loss and gradients (conformance: all ops) */
} elastic_op_phase;

typedef struct elastic_op_params {
    float eps;     /* LAYER_NORM, FFN, AGGREGATE, DISPATCH */
    int heads;     /* ATTENTION, ATTENTION_PROBS, AGGREGATE, DISPATCH */
    int causal;    /* ATTENTION, ATTENTION_PROBS: query r sees keys r' >= r only (recency order) */
    int experts;   /* PKM: k */
    int mem_topk;  /* PKM: t */
    int top_k;     /* TOPK, SCORE_TOPK: K */
    float dropout; /* DROPOUT: probability p of zeroing an element */
    uint64_t seed; /* DROPOUT: the mask is a function of (seed, element index) */
    int keep;      /* SUM_ROWS: trailing dims kept */
    int64_t rows;  /* GATHER_GRAD: rows of the table; MASKED_MEAN_GRAD: n */
    /* VIEW_GRAD: the source's shape, and the view's strides and offset in it */
    int src_ndim;
    int64_t src_shape[ELASTIC_MAX_DIMS];
    int64_t view_strides[ELASTIC_MAX_DIMS];
    int64_t view_offset;
} elastic_op_params;

/* Sizes derived once, when a node is added (ops.c), so that no backend
 * re-derives them from shapes. Fields an op does not use are 0.
 *   every op        numel: elements of input 0; rows, cols: input 0 as a
 *                   matrix (cols = its last dim, rows = numel / cols)
 *   LINEAR(_GRAD)   m, n, k: x [m,k] times W [n,k]^T gives [m,n]
 *   ATTENTION, ATTENTION_PROBS, ATTENTION_MIX, ATTENTION_GRAD
 *                   batch, nq, nk, width (d), heads, head_size (d / heads);
 *                   heads is params.heads, or P's for ATTENTION_MIX
 *   MASKED_MEAN(_GRAD)  batch, steps (n), width (d)
 *   PKM(_GRAD)      batch, pkm_c (key size c), pkm_m (sub-keys per half m),
 *                   width (value size d); experts and top-t are params
 *   TOPK            batch, items, aux: exclusions per row (0 = none)
 *   FFN             m: rows, k: d, n: f (fc1's width)
 *   AGGREGATE, DISPATCH  as ATTENTION (batch, nq, nk, width, heads,
 *                   head_size) for the attention inside; AGGREGATE's keys
 *                   are x's n positions, DISPATCH's queries x's n positions
 *   SCORE_TOPK      batch, items, width (d), aux: exclusions per row,
 *                   steps: candidates per row (0 = rank every item)
 *   ADD             aux: elements of b (broadcast period)
 *   GATHER          aux: indices (rows, cols: the table's)
 *   GATHER_GRAD     aux: indices (the table's rows are params.rows)
 *   SUM_ROWS        n: elements kept (the output) */
typedef struct elastic_node_dims {
    int64_t numel, rows, cols;
    int64_t m, n, k;
    int64_t batch, nq, nk, width, heads, head_size, steps, items;
    int64_t pkm_c, pkm_m, aux;
} elastic_node_dims;

typedef struct elastic_node {
    elastic_op op;
    elastic_op_params params;
    int n_inputs;
    int inputs[ELASTIC_MAX_INPUTS]; /* tensor ids; -1 for an absent optional input */
    int n_outputs;
    int outputs[ELASTIC_MAX_OUTPUTS];
    elastic_node_dims dims; /* derived by elastic_graph_node (ops.c) */
    char name[64];
} elastic_node;

typedef struct elastic_graph {
    elastic_tensor *tensors;
    int n_tensors, cap_tensors;
    elastic_node *nodes;
    int n_nodes, cap_nodes;
    elastic_status status; /* sticky: first building error */
} elastic_graph;

void elastic_graph_init(elastic_graph *g);
void elastic_graph_free(elastic_graph *g);

/* Tensor constructors; each returns the tensor id, or -1 after an error. */
int elastic_graph_input(elastic_graph *g, const char *name, elastic_dtype dtype, int ndim,
                        const int64_t *shape);
int elastic_graph_weight(elastic_graph *g, const char *name, int ndim, const int64_t *shape,
                         const float *data);
/* A strided view of src; strides in elements; NULL strides = contiguous. */
int elastic_graph_view(elastic_graph *g, int src, int ndim, const int64_t *shape,
                       const int64_t *strides, int64_t offset);
/* Adds a node; returns its first output tensor id; further outputs follow
 * it (TOPK: ids, then vals). */
int elastic_graph_node(elastic_graph *g, elastic_op op, const int *inputs, int n_inputs,
                       const elastic_op_params *params, const char *name);
void elastic_graph_mark_output(elastic_graph *g, int tensor);

/* Element count and contiguity helpers. */
int64_t elastic_tensor_numel(const elastic_tensor *t);
int elastic_tensor_is_contiguous(const elastic_tensor *t);
size_t elastic_dtype_size(elastic_dtype dtype);

/* The op's name ("layer_norm"), "unknown" for a value outside the enum. */
const char *elastic_op_name(elastic_op op);
/* The op whose name this is, or ELASTIC_OP_COUNT if none. */
elastic_op elastic_op_by_name(const char *name);
/* Training ops: dropout, the loss and gradients (ops.def's phase). */
int elastic_op_is_training(elastic_op op);
/* Floating-point operations a node performs (for GFLOP/s figures). */
double elastic_node_flops(const elastic_graph *g, const elastic_node *node);
/* Shape string like "[256,200,64]" into buf. */
const char *elastic_shape_str(const elastic_tensor *t, char *buf, size_t size);

#endif
