/*
 * backend.h - the interface every backend implements (cpu, opencl, cuda).
 *
 * A backend is a small table of function pointers, in the spirit of ggml's
 * backends, but every entry returns a status instead of asserting, and its
 * ops are a second table indexed by op (elastic_op_kernel): the row of an op
 * says how to run it and, optionally, which nodes of it fit. A missing row
 * means "unsupported": the planner falls back to the CPU (when allowed) or
 * refuses. The core never looks inside a backend: it asks
 * elastic_backend_supports() while planning, owns memory through buffers the
 * backend allocates, and runs one node at a time through
 * elastic_backend_compute(), handing it bound tensors (buffer + byte offset +
 * shape) and the node, whose dims hold every size the kernel needs.
 */
#ifndef ELASTIC_CORE_BACKEND_H
#define ELASTIC_CORE_BACKEND_H

#include "graph/graph.h"

typedef struct elastic_backend elastic_backend;
typedef struct elastic_buffer elastic_buffer; /* defined by each backend */

/* A tensor bound to memory, as a backend sees it in compute(). */
typedef struct elastic_tensor_ref {
    elastic_dtype dtype;
    int ndim;
    int64_t shape[ELASTIC_MAX_DIMS];
    int64_t strides[ELASTIC_MAX_DIMS]; /* elements */
    elastic_buffer *buffer;            /* NULL for an absent optional input */
    size_t offset;                     /* bytes from the buffer's start */
} elastic_tensor_ref;

/* How one backend runs one op. run computes a node whose inputs passed the
 * op's rule (ops.c) and returns a status (never asserts); fits, when set,
 * says whether a node's sizes and params are within what run handles (NULL:
 * every node of the op). */
typedef struct elastic_op_kernel {
    elastic_status (*run)(elastic_backend *backend, const elastic_node *node,
                          const elastic_tensor_ref *inputs, const elastic_tensor_ref *outputs);
    int (*fits)(const elastic_backend *backend, const elastic_node *node);
} elastic_op_kernel;

typedef struct elastic_backend_iface {
    const char *name;
    /* Fills compiled/available/device_count/description; never fails hard. */
    void (*probe)(elastic_backend_info *info);
    elastic_status (*init)(elastic_backend **backend, const elastic_session_options *options);
    void (*free)(elastic_backend *backend);
    /* A one-line description of the device in use ("cpu (avx512, 2 threads)"). */
    const char *(*describe)(const elastic_backend *backend);
    /* The op table: ELASTIC_OP_COUNT rows, indexed by elastic_op. */
    const elastic_op_kernel *kernels;

    elastic_status (*buffer_alloc)(elastic_backend *backend, size_t size, elastic_buffer **buffer);
    /* Optional: a buffer over host memory without copying (NULL if unsupported). */
    elastic_status (*buffer_wrap_host)(elastic_backend *backend, void *data, size_t size,
                                       elastic_buffer **buffer);
    void (*buffer_free)(elastic_backend *backend, elastic_buffer *buffer);
    /* The host address of a buffer's memory, or NULL if it is device memory. */
    void *(*buffer_host_ptr)(const elastic_buffer *buffer);
    elastic_status (*upload)(elastic_backend *backend, elastic_buffer *buffer, size_t offset,
                             const void *src, size_t size);
    elastic_status (*download)(elastic_backend *backend, const elastic_buffer *buffer,
                               size_t offset, void *dst, size_t size);

    elastic_status (*synchronize)(elastic_backend *backend);

    /* Optional. weights: the buffer of the parameter block, whose contents
     * stay as they are until the next call; the backend may keep copies
     * derived from them (the CPU: weights packed for its GEMM). NULL: they
     * may change; derived copies are dropped. Inference sessions set it,
     * trainers do not. */
    void (*set_constant_weights)(elastic_backend *backend, const elastic_buffer *weights);
} elastic_backend_iface;

/* Every backend object starts with this header. */
struct elastic_backend {
    const elastic_backend_iface *iface;
    size_t alignment; /* byte alignment of tensor offsets inside a buffer */
};

/* Whether the backend has a kernel for this node (its op's row, and fits). */
int elastic_backend_supports(const elastic_backend *backend, const elastic_node *node);
/* Runs one node through the backend's op table; ELASTIC_ERR_UNSUPPORTED for
 * an op without a row. */
elastic_status elastic_backend_compute(elastic_backend *backend, const elastic_node *node,
                                       const elastic_tensor_ref *inputs,
                                       const elastic_tensor_ref *outputs);

/* The registry (registry.c): the backends compiled into this library. */
int elastic_backend_registry_count(void);
const elastic_backend_iface *elastic_backend_registry_get(int index);
const elastic_backend_iface *elastic_backend_registry_find(const char *name);

/* Each backend's table; NULL-free: a backend not compiled in is not listed. */
extern const elastic_backend_iface elastic_cpu_backend_iface;
extern const elastic_backend_iface elastic_opencl_backend_iface;
extern const elastic_backend_iface elastic_cuda_backend_iface;

#endif
