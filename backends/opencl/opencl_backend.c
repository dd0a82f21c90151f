/*
 * opencl_backend.c - the OpenCL backend: device selection, buffers,
 * transfers, and compute() mapping each node to an OpenCL 1.2 kernel
 * (kernels_cl/) or, for LINEAR, to CLBlast's SGEMM plus a bias kernel.
 *
 * Devices: the platforms' devices in order, flattened; the session's device
 * index picks one, or ELASTIC_OPENCL_DEVICE (an index or a case-insensitive
 * substring of "platform device" names). CLBlast calls are serialised by one
 * mutex: Debian's CLBlast 1.5.3 predates its program-cache threading fix.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/backend.h"
#include "base/error.h"
#include "opencl_program.h"

#define MAX_HEAD 256 /* ELASTIC_MAX_HEAD in elastic_common.cl */
#define MAX_TOPT 64  /* ELASTIC_MAX_TOPT */

static pthread_mutex_t clblast_lock = PTHREAD_MUTEX_INITIALIZER;

struct elastic_buffer {
    cl_mem mem;
    size_t size;
};

enum {
    K_GATHER, K_ADD, K_BIAS, K_MEAN, K_LN, K_GELU, K_ATTN, K_PROBS, K_MIX, K_PKM, K_TOPK, K_COPY,
    K_COUNT
};
static const char *kernel_names[K_COUNT] = {
    "elastic_gather",        "elastic_add",  "elastic_bias",      "elastic_masked_mean",
    "elastic_layer_norm",    "elastic_gelu", "elastic_attention", "elastic_attention_probs",
    "elastic_attention_mix", "elastic_pkm",  "elastic_topk",      "elastic_copy"};

typedef struct cl_backend {
    elastic_backend base;
    cl_context context;
    cl_device_id device;
    cl_command_queue queue;
    cl_program program; /* built lazily at the first compute */
    cl_kernel kernels[K_COUNT];
    cl_mem scratch; /* top-K marks, GEMM temp */
    size_t scratch_size;
    int fp64;
    char description[256];
} cl_backend;

/* Every device of every platform, flattened. */
typedef struct device_list {
    cl_device_id ids[64];
    char names[64][160];
    cl_device_type types[64];
    int n;
    cl_int err; /* of clGetPlatformIDs when nothing was found */
} device_list;

static void list_devices(device_list *l)
{
    cl_platform_id platforms[16];
    cl_uint np = 0;
    memset(l, 0, sizeof *l);
    l->err = clGetPlatformIDs(16, platforms, &np);
    if (l->err != CL_SUCCESS) return;
    for (cl_uint p = 0; p < np && p < 16; p++) {
        cl_device_id devs[16];
        cl_uint nd = 0;
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS) continue;
        char pname[64] = "";
        clGetPlatformInfo(platforms[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        pname[sizeof pname - 1] = '\0';
        for (cl_uint d = 0; d < nd && d < 16 && l->n < 64; d++) {
            char dname[90] = "";
            clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof dname, dname, NULL);
            dname[sizeof dname - 1] = '\0';
            clGetDeviceInfo(devs[d], CL_DEVICE_TYPE, sizeof l->types[l->n], &l->types[l->n], NULL);
            snprintf(l->names[l->n], sizeof l->names[0], "%.60s: %.90s", pname, dname);
            l->ids[l->n++] = devs[d];
        }
    }
}

static int contains_ci(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        size_t i = 0;
        while (needle[i] && hay[i] &&
               tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (!needle[i]) return 1;
    }
    return 0;
}

static void cl_probe(elastic_backend_info *info)
{
    device_list l;
    list_devices(&l);
    info->compiled = 1;
    info->device_count = l.n;
    info->available = l.n > 0;
    info->accelerator = l.n > 0 && (l.types[0] & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR));
    if (l.n == 0)
        snprintf(info->description, sizeof info->description, "no OpenCL platform or device (%s)",
                 l.err != CL_SUCCESS ? elastic_cl_error_name(l.err) : "no devices");
    else
        snprintf(info->description, sizeof info->description, "%d device(s); 0 = %s", l.n,
                 l.names[0]);
}

static void cl_free(elastic_backend *base)
{
    cl_backend *be = (cl_backend *)base;
    if (!be) return;
    for (int k = 0; k < K_COUNT; k++)
        if (be->kernels[k]) clReleaseKernel(be->kernels[k]);
    if (be->scratch) clReleaseMemObject(be->scratch);
    if (be->program) clReleaseProgram(be->program);
    if (be->queue) clReleaseCommandQueue(be->queue);
    if (be->context) clReleaseContext(be->context);
    free(be);
}

static elastic_status cl_init(elastic_backend **out, const elastic_session_options *o)
{
    *out = NULL;
    device_list l;
    list_devices(&l);
    if (l.n == 0)
        return elastic_error(ELASTIC_ERR_BACKEND, "opencl: no OpenCL platform or device (%s)",
                             l.err != CL_SUCCESS ? elastic_cl_error_name(l.err) : "no devices");
    int index = o->device;
    const char *env = getenv("ELASTIC_OPENCL_DEVICE");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        index = -1;
        if (!*end && end != env) index = (int)v;
        for (int i = 0; index < 0 && i < l.n; i++)
            if (contains_ci(l.names[i], env)) index = i;
        if (index < 0)
            return elastic_error(ELASTIC_ERR_BACKEND,
                                 "opencl: ELASTIC_OPENCL_DEVICE='%s' matches no device", env);
    }
    if (index < 0 || index >= l.n)
        return elastic_error(ELASTIC_ERR_BACKEND, "opencl: device %d does not exist (%d found)",
                             index, l.n);
    cl_backend *be = calloc(1, sizeof *be);
    if (!be) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (opencl backend)");
    be->base.iface = &elastic_opencl_backend_iface;
    be->base.alignment = 64; /* tensors are passed as buffer + element offset */
    be->device = l.ids[index];
    cl_int err;
    be->context = clCreateContext(NULL, 1, &be->device, NULL, NULL, &err);
    if (err == CL_SUCCESS) be->queue = clCreateCommandQueue(be->context, be->device, 0, &err);
    if (err != CL_SUCCESS) {
        cl_free(&be->base);
        return elastic_error(ELASTIC_ERR_BACKEND, "opencl: creating a context on '%s': %s",
                             l.names[index], elastic_cl_error_name(err));
    }
    char ext[4096] = "";
    clGetDeviceInfo(be->device, CL_DEVICE_EXTENSIONS, sizeof ext, ext, NULL);
    ext[sizeof ext - 1] = '\0';
    be->fp64 = strstr(ext, "cl_khr_fp64") != NULL; /* chosen by capability, not vendor */
    snprintf(be->description, sizeof be->description, "opencl (%s, device %d%s)", l.names[index],
             index, be->fp64 ? ", fp64" : "");
    *out = &be->base;
    return ELASTIC_OK;
}

static const char *cl_describe(const elastic_backend *be)
{
    return ((const cl_backend *)be)->description;
}

static int cl_supports_op(const elastic_backend *be, const elastic_graph *g, const elastic_node *n)
{
    (void)be;
    const elastic_tensor *a = &g->tensors[n->inputs[0]];
    switch (n->op) {
    case ELASTIC_OP_ATTENTION: return a->shape[2] / n->params.heads <= MAX_HEAD;
    case ELASTIC_OP_PKM: return n->params.mem_topk <= MAX_TOPT;
    default: return !elastic_op_is_training(n->op); /* no training ops yet */
    }
}

static elastic_status cl_buffer_alloc(elastic_backend *base, size_t size, elastic_buffer **out)
{
    cl_backend *be = (cl_backend *)base;
    elastic_buffer *b = calloc(1, sizeof *b);
    if (!b) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (opencl buffer)");
    cl_int err;
    b->mem = clCreateBuffer(be->context, CL_MEM_READ_WRITE, size ? size : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        free(b);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "opencl: clCreateBuffer(%zu): %s", size,
                             elastic_cl_error_name(err));
    }
    b->size = size;
    *out = b;
    return ELASTIC_OK;
}

static void cl_buffer_free(elastic_backend *be, elastic_buffer *b)
{
    (void)be;
    if (!b) return;
    clReleaseMemObject(b->mem);
    free(b);
}

static void *cl_buffer_host_ptr(const elastic_buffer *b)
{
    (void)b;
    return NULL;
}

static elastic_status cl_upload(elastic_backend *base, elastic_buffer *b, size_t offset,
                                const void *src, size_t size)
{
    cl_backend *be = (cl_backend *)base;
    if (offset > b->size || size > b->size - offset)
        return elastic_error(ELASTIC_ERR_INTERNAL, "opencl upload outside its buffer");
    if (!size) return ELASTIC_OK;
    cl_int err = clEnqueueWriteBuffer(be->queue, b->mem, CL_TRUE, offset, size, src, 0, NULL, NULL);
    return err == CL_SUCCESS ? ELASTIC_OK
                             : elastic_error(ELASTIC_ERR_BACKEND, "opencl: clEnqueueWriteBuffer: %s",
                                             elastic_cl_error_name(err));
}

static elastic_status cl_download(elastic_backend *base, const elastic_buffer *b, size_t offset,
                                  void *dst, size_t size)
{
    cl_backend *be = (cl_backend *)base;
    if (offset > b->size || size > b->size - offset)
        return elastic_error(ELASTIC_ERR_INTERNAL, "opencl download outside its buffer");
    if (!size) return ELASTIC_OK;
    cl_int err = clEnqueueReadBuffer(be->queue, b->mem, CL_TRUE, offset, size, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? ELASTIC_OK
                             : elastic_error(ELASTIC_ERR_BACKEND, "opencl: clEnqueueReadBuffer: %s",
                                             elastic_cl_error_name(err));
}

/* Builds the program and its kernels at first use. */
static elastic_status ensure_program(cl_backend *be)
{
    if (be->program) return ELASTIC_OK;
    const char *options = be->fp64 ? "-cl-std=CL1.2 -DELASTIC_FP64" : "-cl-std=CL1.2";
    int cached;
    ELASTIC_TRY(elastic_cl_program_build(be->context, be->device, options, &be->program, &cached));
    for (int k = 0; k < K_COUNT; k++) {
        cl_int err;
        be->kernels[k] = clCreateKernel(be->program, kernel_names[k], &err);
        if (err != CL_SUCCESS)
            return elastic_error(ELASTIC_ERR_BACKEND, "opencl: clCreateKernel(%s): %s",
                                 kernel_names[k], elastic_cl_error_name(err));
    }
    return ELASTIC_OK;
}

static elastic_status ensure_scratch(cl_backend *be, size_t size)
{
    if (be->scratch_size >= size && be->scratch) return ELASTIC_OK;
    if (be->scratch) clReleaseMemObject(be->scratch);
    be->scratch_size = 0;
    cl_int err;
    be->scratch = clCreateBuffer(be->context, CL_MEM_READ_WRITE, size ? size : 4, NULL, &err);
    if (err != CL_SUCCESS) {
        be->scratch = NULL;
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "opencl: scratch clCreateBuffer(%zu): %s",
                             size, elastic_cl_error_name(err));
    }
    be->scratch_size = size;
    return ELASTIC_OK;
}

/* Kernel arguments: a list of (size, pointer) set in order. */
typedef struct args {
    cl_kernel k;
    cl_uint n;
    cl_int err;
} args;

static void arg(args *a, size_t size, const void *value)
{
    if (a->err == CL_SUCCESS) a->err = clSetKernelArg(a->k, a->n, size, value);
    a->n++;
}

/* A tensor as (buffer, element offset): two kernel arguments. */
static void arg_tensor(args *a, const elastic_tensor_ref *t, cl_mem fallback)
{
    cl_mem m = t->buffer ? t->buffer->mem : fallback;
    cl_ulong off = t->buffer ? (cl_ulong)(t->offset / 4) : 0;
    arg(a, sizeof m, &m);
    arg(a, sizeof off, &off);
}

static void arg_long(args *a, int64_t v)
{
    cl_long x = v;
    arg(a, sizeof x, &x);
}

static elastic_status launch(cl_backend *be, int kernel, const args *a, int64_t work,
                             const char *node)
{
    if (a->err != CL_SUCCESS)
        return elastic_error(ELASTIC_ERR_BACKEND, "opencl: clSetKernelArg(%s, node '%s'): %s",
                             kernel_names[kernel], node, elastic_cl_error_name(a->err));
    if (work <= 0) return ELASTIC_OK;
    size_t global = (size_t)work, local = 64;
    /* PKM keeps large private arrays per work-item: an implementation-chosen
     * work-group (PoCL picks 4096 work-items on the CPU) overflows the stack
     * of its worker threads, so it gets a small explicit one; the kernel
     * ignores the work-items past the end. */
    int small_group = kernel == K_PKM;
    if (small_group) global = (global + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(be->queue, be->kernels[kernel], 1, NULL, &global,
                                        small_group ? &local : NULL, 0, NULL, NULL);
    return err == CL_SUCCESS
               ? ELASTIC_OK
               : elastic_error(ELASTIC_ERR_BACKEND, "opencl: clEnqueueNDRangeKernel(%s, node '%s'): %s",
                               kernel_names[kernel], node, elastic_cl_error_name(err));
}

static int64_t numel(const elastic_tensor_ref *r)
{
    int64_t n = 1;
    for (int i = 0; i < r->ndim; i++) n *= r->shape[i];
    return n;
}

static elastic_status linear(cl_backend *be, const elastic_node *node, const elastic_tensor_ref *in,
                             const elastic_tensor_ref *out)
{
    const elastic_tensor_ref *x = &in[0], *w = &in[1];
    size_t k = (size_t)x->shape[x->ndim - 1], n = (size_t)w->shape[0];
    size_t m = (size_t)(numel(x) / (int64_t)k);
    size_t temp = 0;
    pthread_mutex_lock(&clblast_lock);
    CLBlastStatusCode st = CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                                      CLBlastTransposeYes, m, n, k, x->offset / 4,
                                                      k, w->offset / 4, k, out->offset / 4, n,
                                                      &be->queue, &temp);
    elastic_status es = st == CLBlastSuccess ? ensure_scratch(be, temp)
                                             : elastic_error(ELASTIC_ERR_BACKEND,
                                                             "opencl: CLBlastSGemmTempBufferSize: %d",
                                                             (int)st);
    if (es == ELASTIC_OK) {
        st = CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                        CLBlastTransposeYes, m, n, k, 1.0f, x->buffer->mem,
                                        x->offset / 4, k, w->buffer->mem, w->offset / 4, k, 0.0f,
                                        out->buffer->mem, out->offset / 4, n, &be->queue, NULL,
                                        be->scratch);
        if (st != CLBlastSuccess)
            es = elastic_error(ELASTIC_ERR_BACKEND, "opencl: CLBlastSgemm (node '%s'): status %d",
                               node->name, (int)st);
    }
    pthread_mutex_unlock(&clblast_lock);
    if (es != ELASTIC_OK || node->n_inputs < 3 || !in[2].buffer) return es;
    args a = {.k = be->kernels[K_BIAS]};
    arg_tensor(&a, out, NULL);
    arg_tensor(&a, &in[2], NULL);
    arg_long(&a, (int64_t)n);
    arg_long(&a, (int64_t)(m * n));
    return launch(be, K_BIAS, &a, (int64_t)(m * n), node->name);
}

static elastic_status cl_compute(elastic_backend *base, const elastic_node *node,
                                 const elastic_tensor_ref *in, const elastic_tensor_ref *out)
{
    cl_backend *be = (cl_backend *)base;
    ELASTIC_TRY(ensure_program(be));
    const elastic_tensor_ref *x = &in[0];
    int64_t last = x->shape[x->ndim - 1];
    int kernel;
    args a = {0};
    int64_t work;
    switch (node->op) {
    case ELASTIC_OP_LINEAR: return linear(be, node, in, out);
    case ELASTIC_OP_GATHER:
        kernel = K_GATHER;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_long(&a, x->shape[0]);
        arg_long(&a, x->shape[1]);
        arg_tensor(&a, &in[1], NULL);
        arg_tensor(&a, out, NULL);
        arg_long(&a, numel(&in[1]));
        work = numel(&out[0]);
        break;
    case ELASTIC_OP_ADD:
        kernel = K_ADD;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, &in[1], NULL);
        arg_long(&a, numel(&in[1]));
        arg_tensor(&a, out, NULL);
        arg_long(&a, numel(x));
        work = numel(x);
        break;
    case ELASTIC_OP_MASKED_MEAN:
        kernel = K_MEAN;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, &in[1], NULL);
        arg_tensor(&a, out, NULL);
        arg_long(&a, x->shape[0]);
        arg_long(&a, x->shape[1]);
        arg_long(&a, x->shape[2]);
        work = x->shape[0] * x->shape[2];
        break;
    case ELASTIC_OP_LAYER_NORM: {
        kernel = K_LN;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, &in[1], NULL);
        arg_tensor(&a, &in[2], NULL);
        arg_tensor(&a, out, NULL);
        arg_long(&a, numel(x) / last);
        arg_long(&a, last);
        float eps = node->params.eps;
        arg(&a, sizeof eps, &eps);
        work = numel(x) / last;
        break;
    }
    case ELASTIC_OP_GELU:
        kernel = K_GELU;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, out, NULL);
        arg_long(&a, numel(x));
        work = numel(x);
        break;
    case ELASTIC_OP_ATTENTION:
    case ELASTIC_OP_ATTENTION_PROBS: { /* the same arguments, but PROBS has no v */
        int probs = node->op == ELASTIC_OP_ATTENTION_PROBS, kl_at = probs ? 2 : 3;
        kernel = probs ? K_PROBS : K_ATTN;
        a.k = be->kernels[kernel];
        const elastic_tensor_ref *kl = node->n_inputs > kl_at ? &in[kl_at] : NULL;
        cl_int has_len = kl && kl->buffer, heads = node->params.heads, causal = node->params.causal;
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, &in[1], NULL);
        if (!probs) arg_tensor(&a, &in[2], NULL);
        arg_tensor(&a, has_len ? kl : &in[1], NULL); /* any valid buffer when absent */
        arg(&a, sizeof has_len, &has_len);
        arg_tensor(&a, out, NULL);
        arg_long(&a, x->shape[0]);
        arg_long(&a, x->shape[1]);
        arg_long(&a, in[1].shape[1]);
        arg_long(&a, x->shape[2]);
        arg(&a, sizeof heads, &heads);
        arg(&a, sizeof causal, &causal);
        work = x->shape[0] * x->shape[1] * heads; /* PROBS: one work-item per row of P */
        break;
    }
    case ELASTIC_OP_ATTENTION_MIX:
        kernel = K_MIX;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, &in[1], NULL);
        arg_tensor(&a, out, NULL);
        arg_long(&a, x->shape[0]);
        arg_long(&a, x->shape[1]);
        arg_long(&a, x->shape[2]);
        arg_long(&a, x->shape[3]);
        arg_long(&a, in[1].shape[2]);
        work = numel(out); /* one work-item per output element */
        break;
    case ELASTIC_OP_PKM:
        kernel = K_PKM;
        a.k = be->kernels[kernel];
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, &in[1], NULL);
        arg_tensor(&a, &in[2], NULL);
        arg_tensor(&a, out, NULL);
        arg_long(&a, x->shape[0]);
        arg_long(&a, node->params.experts);
        arg_long(&a, 2 * in[1].shape[2]);
        arg_long(&a, in[1].shape[1]);
        arg_long(&a, node->params.mem_topk);
        arg_long(&a, in[2].shape[1]);
        work = x->shape[0] * node->params.experts;
        break;
    case ELASTIC_OP_TOPK: {
        kernel = K_TOPK;
        ELASTIC_TRY(ensure_scratch(be, (size_t)numel(x)));
        a.k = be->kernels[kernel];
        const elastic_tensor_ref *ex = node->n_inputs > 1 && in[1].buffer ? &in[1] : NULL;
        arg_tensor(&a, x, NULL);
        arg_tensor(&a, ex ? ex : x, NULL);
        arg_long(&a, ex ? ex->shape[1] : 0);
        arg_tensor(&a, &out[0], NULL);
        arg_tensor(&a, &out[1], NULL);
        arg(&a, sizeof be->scratch, &be->scratch);
        arg_long(&a, x->shape[0]);
        arg_long(&a, x->shape[1]);
        arg_long(&a, node->params.top_k);
        work = x->shape[0];
        break;
    }
    case ELASTIC_OP_COPY: {
        kernel = K_COPY;
        a.k = be->kernels[kernel];
        int64_t shape[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
        for (int i = 0; i < x->ndim; i++) {
            shape[4 - x->ndim + i] = x->shape[i];
            st[4 - x->ndim + i] = x->strides[i];
        }
        arg_tensor(&a, x, NULL);
        for (int i = 0; i < 4; i++) arg_long(&a, shape[i]);
        for (int i = 0; i < 4; i++) arg_long(&a, st[i]);
        arg_tensor(&a, out, NULL);
        work = numel(x);
        break;
    }
    default:
        return elastic_error(ELASTIC_ERR_UNSUPPORTED, "opencl: op %s is not implemented",
                             elastic_op_name(node->op));
    }
    return launch(be, kernel, &a, work, node->name);
}

static elastic_status cl_synchronize(elastic_backend *base)
{
    cl_backend *be = (cl_backend *)base;
    cl_int err = clFinish(be->queue);
    return err == CL_SUCCESS ? ELASTIC_OK
                             : elastic_error(ELASTIC_ERR_BACKEND, "opencl: clFinish: %s",
                                             elastic_cl_error_name(err));
}

const elastic_backend_iface elastic_opencl_backend_iface = {
    .name = "opencl",
    .probe = cl_probe,
    .init = cl_init,
    .free = cl_free,
    .describe = cl_describe,
    .supports_op = cl_supports_op,
    .buffer_alloc = cl_buffer_alloc,
    .buffer_wrap_host = NULL,
    .buffer_free = cl_buffer_free,
    .buffer_host_ptr = cl_buffer_host_ptr,
    .upload = cl_upload,
    .download = cl_download,
    .compute = cl_compute,
    .synchronize = cl_synchronize,
};
