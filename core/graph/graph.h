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
#define ELASTIC_MAX_INPUTS 5
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

/* The ops of the spec (see ops.c for shapes and semantics). */
typedef enum elastic_op {
    ELASTIC_OP_GATHER = 0,   /* out[i,:] = table[idx[i],:]; idx is I32 */
    ELASTIC_OP_ADD,          /* out = a + b; b's shape is a suffix of a's (broadcast) */
    ELASTIC_OP_MASKED_MEAN,  /* x [B,n,d], len [B] -> [B,d]: mean of rows r < len[b] */
    ELASTIC_OP_LAYER_NORM,   /* x [...,d], weight [d], bias [d] -> [...,d] */
    ELASTIC_OP_LINEAR,       /* x [...,K], W [N,K], bias [N] or none -> [...,N] */
    ELASTIC_OP_GELU,         /* exact erf GELU */
    ELASTIC_OP_ATTENTION,    /* q [B,nq,d], k/v [B,nk,d], key_len [B] or none -> [B,nq,d] */
    ELASTIC_OP_PKM,          /* query [B,k*c], subkeys [2,m,c/2], values [m*m,d] -> [B,k,d] */
    ELASTIC_OP_TOPK,         /* scores [B,I], exclude [B,E] I32 or none -> ids [B,K], vals [B,K] */
    ELASTIC_OP_COPY,         /* any (strided) view -> contiguous copy */
    /* ATTENTION in two steps, as standard (non-streaming) implementations run
     * it: the softmax weights are a tensor [B, heads, nq, nk] of the plan. */
    ELASTIC_OP_ATTENTION_PROBS, /* q [B,nq,d], k [B,nk,d], key_len [B] or none -> P [B,h,nq,nk] */
    ELASTIC_OP_ATTENTION_MIX,   /* P [B,h,nq,nk], v [B,nk,d] -> [B,nq,d] */
    /* Training (see autodiff.c): dropout, the loss, and one gradient op per
     * op above. A backend that lacks them leaves them to the CPU fallback. */
    ELASTIC_OP_DROPOUT,           /* x -> x * keep / (1-p), keep drawn from (seed, element) */
    ELASTIC_OP_CROSS_ENTROPY,     /* scores [B,I], target [B] I32 (1..I) -> loss [B],
                                     dscores [B,I] of the batch-mean loss */
    ELASTIC_OP_GATHER_GRAD,       /* dy [...,d], idx [...] -> dtable [rows,d] (scatter-add) */
    ELASTIC_OP_SUM_ROWS,          /* x [..., suffix] -> [suffix]: the last `keep` dims kept */
    ELASTIC_OP_MASKED_MEAN_GRAD,  /* dy [B,d], len [B] -> dx [B,n,d] */
    ELASTIC_OP_LAYER_NORM_GRAD,   /* x, weight, dy -> dx, dweight [d], dbias [d] */
    ELASTIC_OP_LINEAR_GRAD,       /* x [...,K], W [N,K], dy [...,N] -> dx, dW [N,K], dbias [N] */
    ELASTIC_OP_GELU_GRAD,         /* x, dy -> dx */
    ELASTIC_OP_ATTENTION_GRAD,    /* q, k, v, dy, key_len -> dq, dk, dv */
    ELASTIC_OP_PKM_GRAD,          /* query, subkeys, values, dy -> dquery, dsubkeys, dvalues */
    ELASTIC_OP_VIEW_GRAD,         /* dv (of a view) -> d(source): zeros but the view's elements */
    ELASTIC_OP_COUNT
} elastic_op;

/* The ops of inference (gather .. attention_mix): the conformance suite covers these. */
#define ELASTIC_OP_INFERENCE_COUNT (ELASTIC_OP_ATTENTION_MIX + 1)

typedef struct elastic_op_params {
    float eps;      /* LAYER_NORM */
    int heads;      /* ATTENTION, ATTENTION_PROBS */
    int causal;     /* ATTENTION, ATTENTION_PROBS: query r sees keys r' >= r only (recency order) */
    int experts;    /* PKM: k */
    int mem_topk;   /* PKM: t */
    int top_k;      /* TOPK: K */
    float dropout;  /* DROPOUT: probability p of zeroing an element */
    uint64_t seed;  /* DROPOUT: the mask is a function of (seed, element index) */
    int keep;       /* SUM_ROWS: trailing dims kept */
    int64_t rows;   /* GATHER_GRAD: rows of the table; MASKED_MEAN_GRAD: n */
    /* VIEW_GRAD: the source's shape, and the view's strides and offset in it */
    int src_ndim;
    int64_t src_shape[ELASTIC_MAX_DIMS];
    int64_t view_strides[ELASTIC_MAX_DIMS];
    int64_t view_offset;
} elastic_op_params;

typedef struct elastic_node {
    elastic_op op;
    elastic_op_params params;
    int n_inputs;
    int inputs[ELASTIC_MAX_INPUTS]; /* tensor ids; -1 for an absent optional input */
    int n_outputs;
    int outputs[ELASTIC_MAX_OUTPUTS];
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

const char *elastic_op_name(elastic_op op);
/* Floating-point operations a node performs (for GFLOP/s figures). */
double elastic_node_flops(const elastic_graph *g, const elastic_node *node);
/* Shape string like "[256,200,64]" into buf. */
const char *elastic_shape_str(const elastic_tensor *t, char *buf, size_t size);

#endif
