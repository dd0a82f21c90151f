/*
 * cuda_backend.c - the CUDA backend's device side: probing and opening a
 * device, the stream every operation is queued on (cuBLAS included), device
 * buffers, transfers through pinned staging buffers, scratch memory, and
 * synchronization with the deferred GATHER index checks. The op table (a
 * launcher per op, mapping a node to its kernel) is in cuda_ops.c, the
 * kernels in kernels_cu/.
 *
 * Every CUDA and cuBLAS call is checked and turned into a status with a
 * message naming the call; nothing aborts, and error paths free what they
 * allocated.
 */
#include "cuda_backend_internal.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest piece of a transfer that goes through one staging buffer. */
#define CUDA_STAGING_CHUNK ((size_t)4 << 20)

elastic_status elastic_cuda_fail(const char *call, cudaError_t err)
{
    elastic_status st =
        err == cudaErrorMemoryAllocation ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_BACKEND;
    (void)cudaGetLastError(); /* so that a later launch check does not see it again */
    return elastic_error(st, "cuda backend: %s: %s (%s)", call, cudaGetErrorString(err),
                         cudaGetErrorName(err));
}

elastic_status elastic_cuda_blas_fail(const char *call, cublasStatus_t s)
{
    elastic_status st =
        s == CUBLAS_STATUS_ALLOC_FAILED ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_BACKEND;
    return elastic_error(st, "cuda backend: %s: %s (%s)", call, cublasGetStatusString(s),
                         cublasGetStatusName(s));
}

/* Makes the backend's device current for this thread (runtime calls act on
 * the current device). */
static elastic_status enter(const cuda_backend *be)
{
    cudaError_t err = cudaSetDevice(be->device);
    if (err != cudaSuccess) return elastic_cuda_fail("cudaSetDevice", err);
    return ELASTIC_OK;
}

/* ------------------------------------------------------------ probe, init */

static void cuda_probe(elastic_backend_info *info)
{
    info->compiled = 1;
    info->available = 0;
    info->device_count = 0;
    info->accelerator = 0;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        snprintf(info->description, sizeof info->description,
                 "unavailable: cudaGetDeviceCount: %s (%s)", cudaGetErrorString(err),
                 cudaGetErrorName(err));
        (void)cudaGetLastError(); /* do not leave the error for a later call */
        return;
    }
    if (count < 1) {
        snprintf(info->description, sizeof info->description, "unavailable: no CUDA device");
        return;
    }
    struct cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, 0);
    if (err != cudaSuccess) {
        snprintf(info->description, sizeof info->description,
                 "unavailable: cudaGetDeviceProperties(0): %s", cudaGetErrorString(err));
        (void)cudaGetLastError();
        return;
    }
    info->available = 1;
    info->device_count = count;
    info->accelerator = 1;
    snprintf(info->description, sizeof info->description,
             "%d device%s; device 0: %.96s (compute capability %d.%d, %d SMs, %zu MiB)", count,
             count > 1 ? "s" : "", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
             prop.totalGlobalMem >> 20);
}

static void cuda_free(elastic_backend *base);

static elastic_status open_device(cuda_backend *be)
{
    struct cudaDeviceProp prop;
    CUDA_TRY(cudaSetDevice(be->device));
    CUDA_TRY(cudaGetDeviceProperties(&prop, be->device));
    be->sm_count = prop.multiProcessorCount;
    snprintf(be->description, sizeof be->description, "cuda (%.96s, sm_%d%d, device %d)", prop.name,
             prop.major, prop.minor, be->device);

    CUDA_TRY(cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking));
    for (int i = 0; i < 2; i++)
        CUDA_TRY(cudaEventCreateWithFlags(&be->staging[i].done, cudaEventDisableTiming));
    size_t checks = CUDA_MAX_GATHER_CHECKS * sizeof *be->checks_dev;
    CUDA_TRY(cudaMalloc((void **)&be->checks_dev, checks));
    CUDA_TRY(cudaMallocHost((void **)&be->checks_host, checks));

    cublasStatus_t st = cublasCreate(&be->cublas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        be->cublas = NULL;
        return elastic_cuda_blas_fail("cublasCreate", st);
    }
    st = cublasSetStream(be->cublas, be->stream);
    if (st != CUBLAS_STATUS_SUCCESS) return elastic_cuda_blas_fail("cublasSetStream", st);
    /* Float32 in, float32 arithmetic: no TF32 or other reduced-precision
     * shortcut, whatever NVIDIA_TF32_OVERRIDE says. */
    st = cublasSetMathMode(be->cublas, CUBLAS_PEDANTIC_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) return elastic_cuda_blas_fail("cublasSetMathMode", st);
    return ELASTIC_OK;
}

static elastic_status cuda_init(elastic_backend **out, const elastic_session_options *o)
{
    *out = NULL;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return elastic_error(ELASTIC_ERR_BACKEND,
                             "cuda backend unavailable: cudaGetDeviceCount: %s (%s)",
                             cudaGetErrorString(err), cudaGetErrorName(err));
    }
    if (count < 1)
        return elastic_error(ELASTIC_ERR_BACKEND, "cuda backend unavailable: no CUDA device");
    if (o->device < 0 || o->device >= count)
        return elastic_error(ELASTIC_ERR_BACKEND, "cuda backend: device %d does not exist (0..%d)",
                             o->device, count - 1);

    cuda_backend *be = calloc(1, sizeof *be);
    if (!be) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (cuda backend)");
    be->base.iface = &elastic_cuda_backend_iface;
    be->base.alignment = 256;
    be->device = o->device;
    elastic_status st = open_device(be);
    if (st != ELASTIC_OK) {
        cuda_free(&be->base); /* keeps the message of the failure */
        return st;
    }
    *out = &be->base;
    return ELASTIC_OK;
}

/* Releases everything; errors are ignored (nothing could be done with them),
 * so the caller's message survives. */
static void cuda_free(elastic_backend *base)
{
    cuda_backend *be = (cuda_backend *)base;
    if (!be) return;
    if (cudaSetDevice(be->device) == cudaSuccess) {
        if (be->stream) (void)cudaStreamSynchronize(be->stream);
        if (be->cublas) (void)cublasDestroy(be->cublas);
        for (int i = 0; i < 2; i++) {
            if (be->staging[i].host) (void)cudaFreeHost(be->staging[i].host);
            if (be->staging[i].done) (void)cudaEventDestroy(be->staging[i].done);
        }
        if (be->scratch) (void)cudaFree(be->scratch);
        if (be->checks_dev) (void)cudaFree(be->checks_dev);
        if (be->checks_host) (void)cudaFreeHost(be->checks_host);
        if (be->stream) (void)cudaStreamDestroy(be->stream);
    }
    (void)cudaGetLastError();
    free(be);
}

static const char *cuda_describe(const elastic_backend *base)
{
    return ((const cuda_backend *)base)->description;
}

/* ------------------------------------------------------------ buffers */

static elastic_status cuda_buffer_alloc(elastic_backend *base, size_t size, elastic_buffer **out)
{
    cuda_backend *be = (cuda_backend *)base;
    *out = NULL;
    ELASTIC_TRY(enter(be));
    elastic_buffer *b = calloc(1, sizeof *b);
    if (!b) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (cuda buffer)");
    size_t bytes = size ? size : 1;
    cudaError_t err = cudaMalloc(&b->ptr, bytes);
    if (err != cudaSuccess) {
        free(b);
        elastic_status st =
            err == cudaErrorMemoryAllocation ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_BACKEND;
        (void)cudaGetLastError();
        return elastic_error(st, "cuda backend: cudaMalloc(%zu): %s", bytes,
                             cudaGetErrorString(err));
    }
    b->size = size;
    *out = b;
    return ELASTIC_OK;
}

static void cuda_buffer_free(elastic_backend *base, elastic_buffer *b)
{
    if (!b) return;
    if (base) (void)enter((cuda_backend *)base);
    (void)cudaFree(b->ptr); /* waits for work that may still use it */
    free(b);
}

static void *cuda_buffer_host_ptr(const elastic_buffer *b)
{
    (void)b;
    return NULL; /* device memory */
}

/* ------------------------------------------------------------ transfers */

/* The next staging buffer, idle and of at least `size` bytes. */
static elastic_status staging_get(cuda_backend *be, size_t size, cuda_staging **out)
{
    cuda_staging *s = &be->staging[be->next_staging];
    be->next_staging ^= 1;
    CUDA_TRY(cudaEventSynchronize(s->done)); /* its previous copy has finished */
    if (s->cap < size) {
        if (s->host) CUDA_TRY(cudaFreeHost(s->host));
        s->host = NULL;
        s->cap = 0;
        cudaError_t err = cudaMallocHost(&s->host, size);
        if (err != cudaSuccess) {
            s->host = NULL;
            (void)cudaGetLastError();
            return elastic_error(
                err == cudaErrorMemoryAllocation ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_BACKEND,
                "cuda backend: cudaMallocHost(%zu): %s", size, cudaGetErrorString(err));
        }
        s->cap = size;
    }
    *out = s;
    return ELASTIC_OK;
}

static size_t chunk_of(size_t size)
{
    return size < CUDA_STAGING_CHUNK ? size : CUDA_STAGING_CHUNK;
}

/* Queues the copy and returns once `src` has been read: the host may reuse
 * it at once; the device sees the data in stream order. */
static elastic_status cuda_upload(elastic_backend *base, elastic_buffer *b, size_t offset,
                                  const void *src, size_t size)
{
    cuda_backend *be = (cuda_backend *)base;
    if (offset > b->size || size > b->size - offset)
        return elastic_error(ELASTIC_ERR_INTERNAL,
                             "cuda upload outside its buffer (%zu + %zu > %zu)", offset, size,
                             b->size);
    if (!size) return ELASTIC_OK;
    ELASTIC_TRY(enter(be));
    for (size_t done = 0; done < size;) {
        size_t n = chunk_of(size - done);
        cuda_staging *s = NULL;
        ELASTIC_TRY(staging_get(be, chunk_of(size), &s));
        memcpy(s->host, (const char *)src + done, n);
        CUDA_TRY(cudaMemcpyAsync((char *)b->ptr + offset + done, s->host, n, cudaMemcpyHostToDevice,
                                 be->stream));
        CUDA_TRY(cudaEventRecord(s->done, be->stream));
        done += n;
    }
    return ELASTIC_OK;
}

static elastic_status cuda_synchronize(elastic_backend *base);

/* Blocking: waits for the queued work (reporting its errors first), then
 * copies out, chunk by chunk, the next chunk's DMA overlapping this one's
 * copy to `dst`. */
static elastic_status cuda_download(elastic_backend *base, const elastic_buffer *b, size_t offset,
                                    void *dst, size_t size)
{
    cuda_backend *be = (cuda_backend *)base;
    if (offset > b->size || size > b->size - offset)
        return elastic_error(ELASTIC_ERR_INTERNAL,
                             "cuda download outside its buffer (%zu + %zu > %zu)", offset, size,
                             b->size);
    ELASTIC_TRY(cuda_synchronize(base));
    if (!size) return ELASTIC_OK;
    cuda_staging *pending = NULL; /* a chunk whose DMA is queued, not yet copied out */
    size_t pending_at = 0, pending_n = 0;
    for (size_t done = 0; done < size || pending;) {
        cuda_staging *s = NULL;
        size_t n = 0;
        if (done < size) {
            n = chunk_of(size - done);
            ELASTIC_TRY(staging_get(be, chunk_of(size), &s));
            CUDA_TRY(cudaMemcpyAsync(s->host, (const char *)b->ptr + offset + done, n,
                                     cudaMemcpyDeviceToHost, be->stream));
            CUDA_TRY(cudaEventRecord(s->done, be->stream));
        }
        if (pending) {
            CUDA_TRY(cudaEventSynchronize(pending->done));
            memcpy((char *)dst + pending_at, pending->host, pending_n);
        }
        pending = s;
        pending_at = done;
        pending_n = n;
        done += n;
    }
    return ELASTIC_OK;
}

/* ------------------------------------------------------------ scratch, checks */

elastic_status elastic_cuda_scratch(cuda_backend *be, size_t size, void **out)
{
    *out = NULL;
    if (!size) return ELASTIC_OK;
    if (size > be->scratch_size) {
        /* Queued kernels may still use the old scratch. */
        CUDA_TRY(cudaStreamSynchronize(be->stream));
        if (be->scratch) CUDA_TRY(cudaFree(be->scratch));
        be->scratch = NULL;
        be->scratch_size = 0;
        size_t grown = size + size / 4;
        cudaError_t err = cudaMalloc(&be->scratch, grown);
        if (err != cudaSuccess) {
            be->scratch = NULL;
            (void)cudaGetLastError();
            return elastic_error(
                err == cudaErrorMemoryAllocation ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_BACKEND,
                "cuda backend: cudaMalloc(%zu) for scratch: %s", grown, cudaGetErrorString(err));
        }
        be->scratch_size = grown;
    }
    *out = be->scratch;
    return ELASTIC_OK;
}

/* Reads back the GATHER reports queued since the last time (the stream is
 * idle) and returns the first failure, in node order. */
static elastic_status read_gather_checks(cuda_backend *be)
{
    int n = be->n_checks;
    if (!n) return ELASTIC_OK;
    be->n_checks = 0;
    CUDA_TRY(cudaMemcpyAsync(be->checks_host, be->checks_dev, (size_t)n * sizeof *be->checks_host,
                             cudaMemcpyDeviceToHost, be->stream));
    CUDA_TRY(cudaStreamSynchronize(be->stream));
    for (int i = 0; i < n; i++) {
        unsigned long long r = be->checks_host[i];
        if (r == ~0ULL) continue;
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                             "gather '%s': index %d outside 0..%lld (position %llu)",
                             be->checks[i].node, (int)(int32_t)(uint32_t)(r & 0xffffffffu),
                             (long long)be->checks[i].rows - 1, r >> 32);
    }
    return ELASTIC_OK;
}

elastic_status elastic_cuda_gather_slot(cuda_backend *be, const char *node, int64_t rows,
                                        unsigned long long **slot)
{
    if (be->n_checks == CUDA_MAX_GATHER_CHECKS) ELASTIC_TRY(cuda_synchronize(&be->base));
    int i = be->n_checks++;
    snprintf(be->checks[i].node, sizeof be->checks[i].node, "%s", node);
    be->checks[i].rows = rows;
    *slot = be->checks_dev + i;
    CUDA_TRY(cudaMemsetAsync(*slot, 0xff, sizeof **slot, be->stream));
    return ELASTIC_OK;
}

static elastic_status cuda_synchronize(elastic_backend *base)
{
    cuda_backend *be = (cuda_backend *)base;
    ELASTIC_TRY(enter(be));
    CUDA_TRY(cudaStreamSynchronize(be->stream));
    return read_gather_checks(be);
}

const elastic_backend_iface elastic_cuda_backend_iface = {
    .name = "cuda",
    .probe = cuda_probe,
    .init = cuda_init,
    .free = cuda_free,
    .describe = cuda_describe,
    .kernels = elastic_cuda_op_table,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_wrap_host = NULL,
    .buffer_free = cuda_buffer_free,
    .buffer_host_ptr = cuda_buffer_host_ptr,
    .upload = cuda_upload,
    .download = cuda_download,
    .synchronize = cuda_synchronize,
};
