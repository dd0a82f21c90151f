/*
 * cuda_backend_internal.h - what the two halves of the CUDA backend share:
 * the backend and buffer structures, CUDA/cuBLAS error reporting, scratch
 * memory, the deferred index checks of GATHER, and the op table.
 * cuda_backend.c owns the device, stream, buffers and transfers; cuda_ops.c
 * holds the op table: a launcher per op (and, where a kernel has limits, a
 * fits check) mapping a node to a kernel of kernels_cu/ or to cuBLAS.
 */
#ifndef ELASTIC_CUDA_BACKEND_INTERNAL_H
#define ELASTIC_CUDA_BACKEND_INTERNAL_H

#include "runtime/backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

struct elastic_buffer {
    void *ptr;   /* device memory */
    size_t size; /* bytes asked for */
};

/* A pinned host buffer that transfers go through, busy until `done`. */
typedef struct cuda_staging {
    void *host;
    size_t cap;
    cudaEvent_t done;
} cuda_staging;

/* A GATHER whose indices are checked on the device: the report is read back
 * at the next synchronize (see elastic_cu_gather). */
typedef struct cuda_gather_check {
    char node[64];
    int64_t rows;
} cuda_gather_check;

#define CUDA_MAX_GATHER_CHECKS 32

typedef struct cuda_backend {
    elastic_backend base;
    int device;
    int sm_count;
    cudaStream_t stream;
    cublasHandle_t cublas;
    cuda_staging staging[2]; /* used in turn, so copying and DMA overlap */
    int next_staging;
    void *scratch; /* device workspace of the kernels (attention splits, top-K bitmaps) */
    size_t scratch_size;
    unsigned long long *checks_dev;  /* [CUDA_MAX_GATHER_CHECKS] */
    unsigned long long *checks_host; /* pinned mirror */
    cuda_gather_check checks[CUDA_MAX_GATHER_CHECKS];
    int n_checks;
    char description[192];
} cuda_backend;

/* A failed CUDA runtime call as a status (ELASTIC_ERR_NO_MEMORY for an
 * allocation failure, else ELASTIC_ERR_BACKEND), naming the call. */
elastic_status elastic_cuda_fail(const char *call, cudaError_t err);
elastic_status elastic_cuda_blas_fail(const char *call, cublasStatus_t st);

#define CUDA_TRY(call)                                                                             \
    do {                                                                                           \
        cudaError_t cuda_err_ = (call);                                                            \
        if (cuda_err_ != cudaSuccess) return elastic_cuda_fail(#call, cuda_err_);                  \
    } while (0)

/* Device scratch of at least `size` bytes (grown, after a synchronize, when
 * too small); *out is NULL when size is 0. */
elastic_status elastic_cuda_scratch(cuda_backend *be, size_t size, void **out);

/* A cleared report slot for one GATHER node (flushes the reports when all
 * slots are taken). */
elastic_status elastic_cuda_gather_slot(cuda_backend *be, const char *node, int64_t rows,
                                        unsigned long long **slot);

/* The op table (cuda_ops.c), indexed by op; the ops it has no row for are
 * unsupported. Its fits checks read only the node, never the device. */
extern const elastic_op_kernel elastic_cuda_op_table[ELASTIC_OP_COUNT];

#endif
