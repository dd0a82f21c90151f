/*
 * opencl_backend.c - the OpenCL backend: device selection, buffers,
 * transfers, and its op table (cl_op_table): one small launcher per inference
 * op that sets an OpenCL 1.2 kernel's arguments (kernels_cl/) from the node's
 * dims and params and enqueues it, or, for LINEAR, calls CLBlast's SGEMM plus
 * a bias kernel. ATTENTION and PKM have a fits check (private arrays of fixed
 * size in their kernels); training ops have no row (the CPU runs them).
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
#include "runtime/backend_options.h"

#define MAX_HEAD 256 /* ELASTIC_MAX_HEAD in elastic_common.cl */
#define MAX_TOPT 64  /* ELASTIC_MAX_TOPT */

static pthread_mutex_t clblast_lock = PTHREAD_MUTEX_INITIALIZER;

struct elastic_buffer {
    cl_mem mem;
    size_t size;
};

enum {
    K_GATHER,
    K_ADD,
    K_BIAS,
    K_MEAN,
    K_LN,
    K_GELU,
    K_ATTN,
    K_PROBS,
    K_MIX,
    K_PKM,
    K_TOPK,
    K_COPY,
    K_SCORE_TOPK,
    K_COUNT
};
static const char *kernel_names[K_COUNT] = {
    "elastic_gather",        "elastic_add",  "elastic_bias",      "elastic_masked_mean",
    "elastic_layer_norm",    "elastic_gelu", "elastic_attention", "elastic_attention_probs",
    "elastic_attention_mix", "elastic_pkm",  "elastic_topk",      "elastic_copy",
    "elastic_score_topk"};

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
    char cache_dir[1024]; /* opencl.cache_dir; "" = the default place */
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
    static const char *const keys[] = {"device", "cache_dir", NULL};
    ELASTIC_TRY(elastic_backend_options_check(o->backend_options, "opencl", keys));
    /* The device: opencl.device (an index or part of a name), else the
     * ELASTIC_OPENCL_DEVICE environment variable, else options->device. */
    char want[256], cache_dir[1024] = "";
    int found = 0, found_dir = 0;
    ELASTIC_TRY(
        elastic_backend_option(o->backend_options, "opencl", "device", want, sizeof want, &found));
    ELASTIC_TRY(elastic_backend_option(o->backend_options, "opencl", "cache_dir", cache_dir,
                                       sizeof cache_dir, &found_dir));
    const char *env = getenv("ELASTIC_OPENCL_DEVICE");
    const char *pick = found ? want : env && *env ? env : NULL;
    int index = o->device;
    if (pick) {
        char *end;
        long v = strtol(pick, &end, 10);
        index = -1;
        if (!*end && end != pick) index = (int)v;
        for (int i = 0; index < 0 && i < l.n; i++)
            if (contains_ci(l.names[i], pick)) index = i;
        if (index < 0)
            return elastic_error(ELASTIC_ERR_BACKEND, "opencl: %s '%s' matches no device",
                                 found ? "opencl.device" : "ELASTIC_OPENCL_DEVICE", pick);
    }
    if (index < 0 || index >= l.n)
        return elastic_error(ELASTIC_ERR_BACKEND, "opencl: device %d does not exist (%d found)",
                             index, l.n);
    cl_backend *be = calloc(1, sizeof *be);
    if (!be) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (opencl backend)");
    be->base.iface = &elastic_opencl_backend_iface;
    be->base.alignment = 64; /* tensors are passed as buffer + element offset */
    be->device = l.ids[index];
    snprintf(be->cache_dir, sizeof be->cache_dir, "%s", cache_dir);
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
    return err == CL_SUCCESS
               ? ELASTIC_OK
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
    ELASTIC_TRY(elastic_cl_program_build(be->context, be->device, options, be->cache_dir,
                                         &be->program, &cached));
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
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "opencl: scratch clCreateBuffer(%zu): %s", size,
                             elastic_cl_error_name(err));
    }
    be->scratch_size = size;
    return ELASTIC_OK;
}

/* Kernel arguments: a list of (size, pointer) set in order on one kernel. */
typedef struct args {
    int kernel; /* K_* */
    cl_kernel k;
    cl_uint n;
    cl_int err;
} args;

/* Builds the program at first use, and starts the arguments of a kernel. */
static elastic_status begin(cl_backend *be, int kernel, args *a)
{
    ELASTIC_TRY(ensure_program(be));
    *a = (args){.kernel = kernel, .k = be->kernels[kernel]};
    return ELASTIC_OK;
}

static void arg(args *a, size_t size, const void *value)
{
    if (a->err == CL_SUCCESS) a->err = clSetKernelArg(a->k, a->n, size, value);
    a->n++;
}

/* A tensor as (buffer, element offset): two kernel arguments. */
static void arg_tensor(args *a, const elastic_tensor_ref *t)
{
    cl_mem m = t->buffer ? t->buffer->mem : NULL;
    cl_ulong off = t->buffer ? (cl_ulong)(t->offset / 4) : 0;
    arg(a, sizeof m, &m);
    arg(a, sizeof off, &off);
}

static void arg_long(args *a, int64_t v)
{
    cl_long x = v;
    arg(a, sizeof x, &x);
}

static void arg_int(args *a, int v)
{
    cl_int x = v;
    arg(a, sizeof x, &x);
}

/* Enqueues the kernel over `work` work-items. */
static elastic_status launch(cl_backend *be, const args *a, int64_t work, const char *node)
{
    if (a->err != CL_SUCCESS)
        return elastic_error(ELASTIC_ERR_BACKEND, "opencl: clSetKernelArg(%s, node '%s'): %s",
                             kernel_names[a->kernel], node, elastic_cl_error_name(a->err));
    if (work <= 0) return ELASTIC_OK;
    size_t global = (size_t)work, local = 64;
    /* PKM keeps large private arrays per work-item: an implementation-chosen
     * work-group (PoCL picks 4096 work-items on the CPU) overflows the stack
     * of its worker threads, so it gets a small explicit one; the kernel
     * ignores the work-items past the end. */
    int small_group = a->kernel == K_PKM;
    if (small_group) global = (global + local - 1) / local * local;
    cl_int err = clEnqueueNDRangeKernel(be->queue, a->k, 1, NULL, &global,
                                        small_group ? &local : NULL, 0, NULL, NULL);
    return err == CL_SUCCESS
               ? ELASTIC_OK
               : elastic_error(ELASTIC_ERR_BACKEND,
                               "opencl: clEnqueueNDRangeKernel(%s, node '%s'): %s",
                               kernel_names[a->kernel], node, elastic_cl_error_name(err));
}

/* One launcher per op, named cl_<op> after ops.def, listed in cl_op_table
 * below. Each reads its sizes from node->dims and node->params (ops.c), sets
 * its kernel's arguments in the order of its signature in kernels_cl/, and
 * launches one work-item per unit of work. */
#define CL_OP(name)                                                                                \
    static elastic_status cl_##name(elastic_backend *base, const elastic_node *node,               \
                                    const elastic_tensor_ref *in, const elastic_tensor_ref *out)
#define CL_ARGS                                                                                    \
    cl_backend *be = (cl_backend *)base;                                                           \
    const elastic_node_dims *d = &node->dims;                                                      \
    const elastic_op_params *p = &node->params;                                                    \
    (void)d, (void)p, (void)in, (void)out

CL_OP(gather) /* one work-item per output element */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_GATHER, &a));
    arg_tensor(&a, &in[0]);
    arg_long(&a, d->rows);
    arg_long(&a, d->cols);
    arg_tensor(&a, &in[1]);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->aux);
    return launch(be, &a, d->aux * d->cols, node->name);
}

CL_OP(add)
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_ADD, &a));
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    arg_long(&a, d->aux);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->numel);
    return launch(be, &a, d->numel, node->name);
}

CL_OP(masked_mean) /* one work-item per output element */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_MEAN, &a));
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->batch);
    arg_long(&a, d->steps);
    arg_long(&a, d->width);
    return launch(be, &a, d->batch * d->width, node->name);
}

CL_OP(layer_norm) /* one work-item per row */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_LN, &a));
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    arg_tensor(&a, &in[2]);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->rows);
    arg_long(&a, d->cols);
    arg(&a, sizeof p->eps, &p->eps);
    return launch(be, &a, d->rows, node->name);
}

/* CLBlast's SGEMM, x [m,k] times W [n,k]^T, then the bias kernel (one
 * work-item per output element) when there is a bias. */
CL_OP(linear)
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_BIAS, &a));
    const elastic_tensor_ref *x = &in[0], *w = &in[1];
    size_t m = (size_t)d->m, n = (size_t)d->n, k = (size_t)d->k;
    size_t temp = 0;
    pthread_mutex_lock(&clblast_lock);
    CLBlastStatusCode st = CLBlastSGemmTempBufferSize(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n, k, x->offset / 4, k,
        w->offset / 4, k, out->offset / 4, n, &be->queue, &temp);
    elastic_status es =
        st == CLBlastSuccess
            ? ensure_scratch(be, temp)
            : elastic_error(ELASTIC_ERR_BACKEND, "opencl: CLBlastSGemmTempBufferSize: %d", (int)st);
    if (es == ELASTIC_OK) {
        st = CLBlastSgemmWithTempBuffer(
            CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, m, n, k, 1.0f,
            x->buffer->mem, x->offset / 4, k, w->buffer->mem, w->offset / 4, k, 0.0f,
            out->buffer->mem, out->offset / 4, n, &be->queue, NULL, be->scratch);
        if (st != CLBlastSuccess)
            es = elastic_error(ELASTIC_ERR_BACKEND, "opencl: CLBlastSgemm (node '%s'): status %d",
                               node->name, (int)st);
    }
    pthread_mutex_unlock(&clblast_lock);
    if (es != ELASTIC_OK || node->n_inputs < 3 || !in[2].buffer) return es;
    arg_tensor(&a, &out[0]);
    arg_tensor(&a, &in[2]);
    arg_long(&a, d->n);
    arg_long(&a, d->m * d->n);
    return launch(be, &a, d->m * d->n, node->name);
}

CL_OP(gelu)
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_GELU, &a));
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->numel);
    return launch(be, &a, d->numel, node->name);
}

/* ATTENTION and ATTENTION_PROBS take the same arguments, but PROBS has no v;
 * key_len is input kl_at, or absent. One work-item per (batch, query, head):
 * for PROBS, per row of P. */
static elastic_status attention_args(elastic_backend *base, const elastic_node *node,
                                     const elastic_tensor_ref *in, const elastic_tensor_ref *out,
                                     int kernel, int kl_at)
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, kernel, &a));
    const elastic_tensor_ref *kl = node->n_inputs > kl_at ? &in[kl_at] : NULL;
    int has_len = kl && kl->buffer;
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    if (kernel == K_ATTN) arg_tensor(&a, &in[2]);
    arg_tensor(&a, has_len ? kl : &in[1]); /* any valid buffer when absent */
    arg_int(&a, has_len);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->batch);
    arg_long(&a, d->nq);
    arg_long(&a, d->nk);
    arg_long(&a, d->width);
    arg_int(&a, p->heads);
    arg_int(&a, p->causal);
    return launch(be, &a, d->batch * d->nq * p->heads, node->name);
}

CL_OP(attention)
{
    return attention_args(base, node, in, out, K_ATTN, 3);
}

/* The kernel keeps a head's accumulator in a private array of MAX_HEAD. */
static int cl_attention_fits(const elastic_backend *be, const elastic_node *node)
{
    (void)be;
    return node->dims.head_size <= MAX_HEAD;
}

CL_OP(attention_probs)
{
    return attention_args(base, node, in, out, K_PROBS, 2);
}

CL_OP(attention_mix) /* one work-item per output element */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_MIX, &a));
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->batch);
    arg_long(&a, d->heads);
    arg_long(&a, d->nq);
    arg_long(&a, d->nk);
    arg_long(&a, d->width);
    return launch(be, &a, d->batch * d->nq * d->width, node->name);
}

CL_OP(pkm) /* one work-item per (batch, expert) */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_PKM, &a));
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    arg_tensor(&a, &in[2]);
    arg_tensor(&a, &out[0]);
    arg_long(&a, d->batch);
    arg_long(&a, p->experts);
    arg_long(&a, d->pkm_c);
    arg_long(&a, d->pkm_m);
    arg_long(&a, p->mem_topk);
    arg_long(&a, d->width);
    return launch(be, &a, d->batch * p->experts, node->name);
}

/* The kernel keeps the top-t candidates in private arrays of MAX_TOPT. */
static int cl_pkm_fits(const elastic_backend *be, const elastic_node *node)
{
    (void)be;
    return node->params.mem_topk <= MAX_TOPT;
}

CL_OP(topk) /* one work-item per row; scratch holds a byte per score (marks) */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_TOPK, &a));
    ELASTIC_TRY(ensure_scratch(be, (size_t)d->numel));
    const elastic_tensor_ref *ex = node->n_inputs > 1 && in[1].buffer ? &in[1] : NULL;
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, ex ? ex : &in[0]);
    arg_long(&a, ex ? d->aux : 0);
    arg_tensor(&a, &out[0]);
    arg_tensor(&a, &out[1]);
    arg(&a, sizeof be->scratch, &be->scratch);
    arg_long(&a, d->batch);
    arg_long(&a, d->items);
    arg_long(&a, p->top_k);
    return launch(be, &a, d->batch, node->name);
}

CL_OP(score_topk) /* one work-item per user; its heap lives in its rows of the outputs */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_SCORE_TOPK, &a));
    const elastic_tensor_ref *ex = node->n_inputs > 2 && d->aux && in[2].buffer ? &in[2] : NULL;
    const elastic_tensor_ref *cd = node->n_inputs > 3 && d->steps && in[3].buffer ? &in[3] : NULL;
    arg_tensor(&a, &in[0]);
    arg_tensor(&a, &in[1]);
    arg_tensor(&a, ex ? ex : &in[0]);
    arg_long(&a, ex ? d->aux : 0);
    arg_tensor(&a, cd ? cd : &in[0]);
    arg_long(&a, cd ? d->steps : 0);
    arg_tensor(&a, &out[0]);
    arg_tensor(&a, &out[1]);
    arg_long(&a, d->batch);
    arg_long(&a, d->items);
    arg_long(&a, d->width);
    arg_long(&a, p->top_k);
    return launch(be, &a, d->batch, node->name);
}

CL_OP(copy) /* the input's own shape and strides, right-aligned to rank 4 */
{
    CL_ARGS;
    args a;
    ELASTIC_TRY(begin(be, K_COPY, &a));
    const elastic_tensor_ref *x = &in[0];
    int64_t shape[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
    for (int i = 0; i < x->ndim; i++) {
        shape[4 - x->ndim + i] = x->shape[i];
        st[4 - x->ndim + i] = x->strides[i];
    }
    arg_tensor(&a, x);
    for (int i = 0; i < 4; i++)
        arg_long(&a, shape[i]);
    for (int i = 0; i < 4; i++)
        arg_long(&a, st[i]);
    arg_tensor(&a, &out[0]);
    return launch(be, &a, d->numel, node->name);
}

/* The inference ops of ops.def. The training ops have no row: the planner
 * runs them on the CPU when fallback is allowed, else refuses the graph. */
static const elastic_op_kernel cl_op_table[ELASTIC_OP_COUNT] = {
    [ELASTIC_OP_GATHER] = {cl_gather, NULL},
    [ELASTIC_OP_ADD] = {cl_add, NULL},
    [ELASTIC_OP_MASKED_MEAN] = {cl_masked_mean, NULL},
    [ELASTIC_OP_LAYER_NORM] = {cl_layer_norm, NULL},
    [ELASTIC_OP_LINEAR] = {cl_linear, NULL},
    [ELASTIC_OP_GELU] = {cl_gelu, NULL},
    [ELASTIC_OP_ATTENTION] = {cl_attention, cl_attention_fits},
    [ELASTIC_OP_PKM] = {cl_pkm, cl_pkm_fits},
    [ELASTIC_OP_TOPK] = {cl_topk, NULL},
    [ELASTIC_OP_SCORE_TOPK] = {cl_score_topk, NULL},
    [ELASTIC_OP_COPY] = {cl_copy, NULL},
    [ELASTIC_OP_ATTENTION_PROBS] = {cl_attention_probs, NULL},
    [ELASTIC_OP_ATTENTION_MIX] = {cl_attention_mix, NULL},
};

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
    .kernels = cl_op_table,
    .buffer_alloc = cl_buffer_alloc,
    .buffer_wrap_host = NULL,
    .buffer_free = cl_buffer_free,
    .buffer_host_ptr = cl_buffer_host_ptr,
    .upload = cl_upload,
    .download = cl_download,
    .synchronize = cl_synchronize,
};
