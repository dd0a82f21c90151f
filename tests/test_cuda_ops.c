/*
 * test_cuda_ops.c - what only the CUDA backend has to get right, driven
 * through the backend interface as the session drives it. The numbers of
 * every op are the conformance suite's job (ctest conformance_cuda: each op
 * against the float64 reference with its derived tolerances, then whole
 * models); this file checks the rest:
 *   - probe() and init(): unavailable with a reason when there is no device,
 *     ELASTIC_ERR_BACKEND for a device index that does not exist; describe();
 *   - the op table: every node of the real ELASTIC and SASRec graphs is
 *     taken; the fits checks refuse exactly the nodes beyond a kernel's
 *     limits (cuBLAS int sizes, attention head size, PKM shared memory,
 *     top-K); the training ops have no row, and compute() says so;
 *   - transfers larger than a staging buffer, at odd offsets;
 *   - GATHER's deferred index checks: a bad index is reported at the next
 *     synchronize, or by the gather that finds every report slot taken;
 *   - inputs at any 4-byte offset (weights sit anywhere in the parameter
 *     block): every conformance case gives the same bits as with aligned
 *     inputs, and nothing is written before or after an output.
 *
 * Without a usable device (no GPU, no driver) the checks that need one are
 * skipped, visibly; the op table is then checked on a bare backend header
 * (its fits checks read only the node, never the device).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/backend.h"
#include "base/error.h"
#include "conformance/conformance_cases.h"
#include "cuda_backend_internal.h"
#include "elastic_cuda_kernels.h"
#include "graph/autodiff.h"
#include "model/model_builder.h"
#include "test_util.h"

static const elastic_backend_iface *const cu = &elastic_cuda_backend_iface;
static elastic_backend_info info;
static elastic_backend *be; /* the backend on device 0, when there is one */
/* Without a device: a bare header, enough for the op table. */
static elastic_backend bare = {&elastic_cuda_backend_iface, 256};

/* What the planner asks: the real backend, or the bare header. */
static elastic_backend *planner_view(void)
{
    return be ? be : &bare;
}

static int group_setup(void **state)
{
    (void)state;
    memset(&info, 0, sizeof info);
    cu->probe(&info);
    printf("# cuda probe: available=%d devices=%d: %s\n", info.available, info.device_count,
           info.description);
    if (!info.available) {
        printf("# SKIPPING every check that needs a CUDA device: none usable here\n");
        return 0;
    }
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cuda";
    if (cu->init(&be, &o) != ELASTIC_OK) {
        printf("# cuda init failed: %s\n", elastic_last_error());
        return -1;
    }
    printf("# cuda backend: %s\n", cu->describe(be));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (be) cu->free(be);
    be = NULL;
    return 0;
}

#define NEED_DEVICE()                                                                              \
    do {                                                                                           \
        if (!be) {                                                                                 \
            printf("# SKIPPED %s: no usable CUDA device\n", __func__);                             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

static void check(elastic_status st, const char *what)
{
    if (st != ELASTIC_OK)
        fail_msg("%s: %s: %s", what, elastic_status_name(st), elastic_last_error());
}

/* ------------------------------------------------------------ guarded device memory */

#define GUARD 256
#define CANARY 0xA5

/* `bytes` of data at byte `at` of a device buffer, canary bytes around. */
typedef struct guarded {
    elastic_buffer *buf;
    size_t at, bytes, total;
} guarded;

static guarded guarded_new(const void *data, size_t bytes, size_t at)
{
    guarded b = {NULL, at, bytes, at + bytes + GUARD};
    check(cu->buffer_alloc(be, b.total, &b.buf), "buffer_alloc");
    unsigned char *fill = malloc(b.total);
    assert_non_null(fill);
    memset(fill, CANARY, b.total);
    if (data) memcpy(fill + at, data, bytes);
    check(cu->upload(be, b.buf, 0, fill, b.total), "upload");
    free(fill);
    return b;
}

/* Downloads the data and checks that the bytes before and after it are
 * untouched. */
static void guarded_read(const guarded *b, void *host, const char *what)
{
    unsigned char *all = malloc(b->total);
    assert_non_null(all);
    check(cu->download(be, b->buf, 0, all, b->total), "download");
    for (size_t i = 0; i < b->total; i++) {
        if (i == b->at) i += b->bytes;
        if (i < b->total && all[i] != CANARY)
            fail_msg("%s: byte %td from the data's start was written (canary)", what,
                     (ptrdiff_t)i - (ptrdiff_t)b->at);
    }
    memcpy(host, all + b->at, b->bytes);
    free(all);
}

static void guarded_free(guarded *b)
{
    cu->buffer_free(be, b->buf);
    b->buf = NULL;
}

/* Tensor `id` of the graph bound to `b` (a view at its offset in `b`). */
static elastic_tensor_ref ref_of(const elastic_graph *g, int id, const guarded *b)
{
    return conf_tensor_ref(g, id, b->buf, b->at);
}

/* ------------------------------------------------------------ probe, init */

static void test_probe_and_init(void **state)
{
    (void)state;
    elastic_backend_info i;
    memset(&i, 0, sizeof i);
    cu->probe(&i);
    assert_int_equal(i.compiled, 1);
    assert_true(strlen(i.description) > 0);
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cuda";
    elastic_backend *b = NULL;
    if (!i.available) {
        /* No device or no driver: unavailable, with the reason, and init says so. */
        assert_int_equal(i.device_count, 0);
        assert_int_equal(i.accelerator, 0);
        assert_non_null(strstr(i.description, "unavailable"));
        elastic_error_clear();
        assert_int_equal(cu->init(&b, &o), ELASTIC_ERR_BACKEND);
        assert_null(b);
        assert_non_null(strstr(elastic_last_error(), "cuda backend unavailable"));
        printf("# init without a device: %s\n", elastic_last_error());
        return;
    }
    assert_true(i.device_count >= 1);
    assert_int_equal(i.accelerator, 1);
    const int bad[2] = {i.device_count /* one past the last */, -1};
    for (int k = 0; k < 2; k++) {
        o.device = bad[k];
        assert_int_equal(cu->init(&b, &o), ELASTIC_ERR_BACKEND);
        assert_null(b);
        assert_non_null(strstr(elastic_last_error(), "does not exist"));
    }
}

static void test_describe(void **state)
{
    (void)state;
    NEED_DEVICE();
    const char *d = cu->describe(be);
    printf("# %s\n", d);
    assert_non_null(strstr(d, "cuda ("));
    assert_non_null(strstr(d, "device 0"));
}

/* ------------------------------------------------------------ the op table */

/* Every node of the real graphs, at the spec's default sizes and at long
 * histories, streaming or materialized attention, runs on the CUDA backend
 * (no CPU fallback needed). */
static void check_graph_supported(elastic_model_kind kind, int64_t len, elastic_build_output out,
                                  int materialize)
{
    elastic_config c;
    elastic_config_default(&c);
    c.model = kind;
    c.num_items = 3706;
    c.max_len = len;
    elastic_model *m = NULL;
    check(elastic_model_init_random(&m, &c, 7), "model");
    elastic_build_shape shape = {.batch = 4,
                                 .len = len,
                                 .n_exclude = out == ELASTIC_BUILD_OUTPUT_TOPK ? 30 : 0,
                                 .top_k = out == ELASTIC_BUILD_OUTPUT_TOPK ? 300 : 0,
                                 .output = out,
                                 .materialize_attention = materialize};
    elastic_graph g;
    elastic_build_io io;
    elastic_graph_init(&g);
    check(elastic_build_forward(m, &shape, &g, &io), "build");
    for (int i = 0; i < g.n_nodes; i++)
        if (!elastic_backend_supports(planner_view(), &g.nodes[i]))
            fail_msg("cuda backend refuses node '%s' (%s)", g.nodes[i].name,
                     elastic_op_name(g.nodes[i].op));
    elastic_graph_free(&g);
    elastic_model_free(m);
}

static void test_supports_model_graphs(void **state)
{
    (void)state;
    for (int materialize = 0; materialize <= 1; materialize++) {
        check_graph_supported(ELASTIC_MODEL_KIND_ELASTIC, 200, ELASTIC_BUILD_OUTPUT_TOPK,
                              materialize);
        check_graph_supported(ELASTIC_MODEL_KIND_ELASTIC, 4096, ELASTIC_BUILD_OUTPUT_SCORES,
                              materialize);
        check_graph_supported(ELASTIC_MODEL_KIND_SASREC, 200, ELASTIC_BUILD_OUTPUT_TOPK,
                              materialize);
        check_graph_supported(ELASTIC_MODEL_KIND_ELASTIC, 50, ELASTIC_BUILD_OUTPUT_USER_VECTORS,
                              materialize);
    }
}

/* The training ops have no row: on every node of a real training graph
 * (dropout, the loss, the backward pass) the backend says unsupported, and
 * compute() returns ELASTIC_ERR_UNSUPPORTED naming the op, without touching
 * the device; the forward nodes of that graph are taken. */
static void check_training_graph(const char *kind)
{
    elastic_model *m = tu_small_model(kind, 3);
    elastic_graph g;
    elastic_build_io io;
    elastic_graph_init(&g);
    elastic_build_shape shape = {
        .batch = 8, .len = 10, .output = ELASTIC_BUILD_OUTPUT_SCORES, .dropout = 0.1f, .seed = 5};
    check(elastic_build_forward(m, &shape, &g, &io), "build");
    int64_t batch = 8;
    int targets = elastic_graph_input(&g, "targets", ELASTIC_DTYPE_I32, 1, &batch);
    int in[2] = {io.out, targets};
    elastic_op_params none;
    memset(&none, 0, sizeof none);
    int loss = elastic_graph_node(&g, ELASTIC_OP_CROSS_ENTROPY, in, 2, &none, "loss");
    check(g.status, "loss");
    int *grads = malloc((size_t)g.n_tensors * sizeof *grads);
    assert_non_null(grads);
    check(elastic_graph_backward(&g, io.out, loss + 1, grads), "backward");
    int seen[ELASTIC_OP_COUNT] = {0}, n_training = 0;
    elastic_tensor_ref refs[ELASTIC_MAX_INPUTS];
    memset(refs, 0, sizeof refs);
    for (int i = 0; i < g.n_nodes; i++) {
        const elastic_node *n = &g.nodes[i];
        int taken = elastic_backend_supports(planner_view(), n);
        if (!elastic_op_is_training(n->op)) {
            if (!taken) fail_msg("cuda backend refuses forward node '%s'", n->name);
            continue;
        }
        n_training++;
        seen[n->op] = 1;
        if (taken) fail_msg("cuda backend claims training node '%s'", n->name);
        elastic_error_clear();
        assert_int_equal(elastic_backend_compute(planner_view(), n, refs, refs),
                         ELASTIC_ERR_UNSUPPORTED);
        assert_non_null(strstr(elastic_last_error(), "cuda backend has no kernel for"));
        assert_non_null(strstr(elastic_last_error(), elastic_op_name(n->op)));
    }
    printf("# %s training graph: %d nodes, %d of them training ops, all refused\n", kind, g.n_nodes,
           n_training);
    assert_true(seen[ELASTIC_OP_DROPOUT] && seen[ELASTIC_OP_CROSS_ENTROPY] &&
                seen[ELASTIC_OP_LINEAR_GRAD] && seen[ELASTIC_OP_ATTENTION_GRAD]);
    free(grads);
    elastic_graph_free(&g);
    elastic_model_free(m);
}

static void test_training_ops_unsupported(void **state)
{
    (void)state;
    for (int op = 0; op < ELASTIC_OP_COUNT; op++)
        if (elastic_op_is_training((elastic_op)op) && cu->kernels[op].run)
            fail_msg("cuda backend has a row for training op %s: extend this test",
                     elastic_op_name((elastic_op)op));
    check_training_graph("elastic");
    check_training_graph("sasrec");
}

/* Builds one node from inputs of the given shapes (no data: a graph holds
 * only shapes, so sizes far beyond memory are fine) and asks whether the
 * backend takes it. `n` inputs, input i of rank ndim[i], dtype I32 when
 * is_int[i]. */
static int takes(elastic_op op, int n, const int *ndim, const int64_t (*shape)[4],
                 const int *is_int, const elastic_op_params *p)
{
    elastic_graph g;
    elastic_graph_init(&g);
    int ids[ELASTIC_MAX_INPUTS];
    for (int i = 0; i < n; i++)
        ids[i] = elastic_graph_input(&g, "x",
                                     is_int && is_int[i] ? ELASTIC_DTYPE_I32 : ELASTIC_DTYPE_F32,
                                     ndim[i], shape[i]);
    if (elastic_graph_node(&g, op, ids, n, p, "fit") < 0)
        fail_msg("building %s: %s", elastic_op_name(op), elastic_last_error());
    int yes = elastic_backend_supports(planner_view(), &g.nodes[0]);
    elastic_graph_free(&g);
    return yes;
}

static int takes_linear(int64_t m, int64_t n, int64_t k)
{
    elastic_op_params p;
    memset(&p, 0, sizeof p);
    return takes(ELASTIC_OP_LINEAR, 2, (const int[]){2, 2}, (const int64_t[][4]){{m, k}, {n, k}},
                 NULL, &p);
}

static int takes_attention(elastic_op op, int64_t d, int heads)
{
    elastic_op_params p;
    memset(&p, 0, sizeof p);
    p.heads = heads;
    const int64_t s[3][4] = {{1, 2, d}, {1, 3, d}, {1, 3, d}};
    return takes(op, op == ELASTIC_OP_ATTENTION ? 3 : 2, (const int[]){3, 3, 3}, s, NULL, &p);
}

static int takes_mix(int64_t batch, int heads, int64_t nq, int64_t nk, int64_t d)
{
    elastic_op_params p;
    memset(&p, 0, sizeof p);
    return takes(ELASTIC_OP_ATTENTION_MIX, 2, (const int[]){4, 3},
                 (const int64_t[][4]){{batch, heads, nq, nk}, {batch, nk, d}}, NULL, &p);
}

static int takes_pkm(int experts, int64_t c, int64_t m, int t, int64_t d)
{
    elastic_op_params p;
    memset(&p, 0, sizeof p);
    p.experts = experts;
    p.mem_topk = t;
    return takes(ELASTIC_OP_PKM, 3, (const int[]){2, 3, 2},
                 (const int64_t[][4]){{2, experts * c}, {2, m, c / 2}, {m * m, d}}, NULL, &p);
}

static int takes_topk(int64_t items, int k)
{
    elastic_op_params p;
    memset(&p, 0, sizeof p);
    p.top_k = k;
    return takes(ELASTIC_OP_TOPK, 2, (const int[]){2, 2}, (const int64_t[][4]){{3, items}, {3, 5}},
                 (const int[]){0, 1}, &p);
}

/* The fits checks, at each side of every limit. */
static void test_kernel_limits(void **state)
{
    (void)state;
    const int64_t big = (int64_t)INT_MAX + 1;
    /* LINEAR: cuBLAS takes int sizes */
    assert_true(takes_linear(INT_MAX, 3, 1));
    assert_false(takes_linear(big, 3, 1));
    assert_false(takes_linear(2, big, 4));
    assert_false(takes_linear(2, 3, big));
    /* ATTENTION: head size up to ELASTIC_CU_ATTENTION_MAX_HEAD; PROBS any */
    const int max_head = ELASTIC_CU_ATTENTION_MAX_HEAD;
    assert_true(takes_attention(ELASTIC_OP_ATTENTION, 2 * max_head, 2));
    assert_true(takes_attention(ELASTIC_OP_ATTENTION, max_head, 1));
    assert_false(takes_attention(ELASTIC_OP_ATTENTION, 2 * max_head + 2, 2));
    assert_true(takes_attention(ELASTIC_OP_ATTENTION_PROBS, 2 * max_head + 2, 2));
    assert_true(takes_attention(ELASTIC_OP_ATTENTION_PROBS, 5000, 1));
    /* ATTENTION_MIX: cuBLAS int sizes */
    assert_true(takes_mix(2, 4, 50, 50, 32));
    assert_false(takes_mix(1, 1, 1, big, 1));
    assert_false(takes_mix(1, 1, big, 1, 1));
    assert_false(takes_mix(big, 1, 1, 1, 1));
    /* PKM: what fits in shared memory, m * m rows of values addressable */
    assert_true(takes_pkm(16, 64, 128, 8, 64)); /* the spec's defaults */
    assert_true(takes_pkm(2, 16, 5, 5, 8));
    assert_false(takes_pkm(1, 2, 46341, 1, 1));
    /* TOPK: K up to ELASTIC_CU_TOPK_MAX_K, any K when the row fits the block */
    const int max_k = ELASTIC_CU_TOPK_MAX_K, buffer = ELASTIC_CU_TOPK_BUFFER;
    assert_true(takes_topk(50000, max_k));
    assert_false(takes_topk(50000, max_k + 1));
    assert_true(takes_topk(buffer, buffer));
    assert_false(takes_topk(buffer + 1, max_k + 1));
    assert_false(takes_topk(big, 10));
}

/* ------------------------------------------------------------ transfers */

/* Transfers larger than a staging buffer, at odd offsets, both ways. */
static void test_transfers(void **state)
{
    (void)state;
    NEED_DEVICE();
    const size_t n = (size_t)3 << 20; /* 12 MiB of floats: three staging chunks */
    float *a = calloc(n, sizeof *a), *b = calloc(n, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    tu_fill_uniform(a, n, tu_seed(), 100, -1, 1);
    elastic_buffer *buf = NULL;
    check(cu->buffer_alloc(be, n * 4 + 8, &buf), "buffer_alloc");
    check(cu->upload(be, buf, 4, a, n * 4), "upload");
    check(cu->download(be, buf, 4, b, n * 4), "download");
    assert_memory_equal(a, b, n * 4);
    assert_int_equal(cu->upload(be, buf, 8, a, n * 4 + 1), ELASTIC_ERR_INTERNAL);
    assert_int_equal(cu->download(be, buf, n * 4 + 9, b, 0), ELASTIC_ERR_INTERNAL);
    assert_null(cu->buffer_host_ptr(buf));
    cu->buffer_free(be, buf);
    cu->buffer_free(be, NULL);
    free(a), free(b);
}

/* ------------------------------------------------------------ GATHER's index reports */

static void test_gather_index_reports(void **state)
{
    (void)state;
    NEED_DEVICE();
    const int64_t R = 50, d = 37, n = 23;
    elastic_graph g;
    elastic_graph_init(&g);
    int in[2] = {elastic_graph_input(&g, "table", ELASTIC_DTYPE_F32, 2, (int64_t[]){R, d}),
                 elastic_graph_input(&g, "idx", ELASTIC_DTYPE_I32, 1, &n)};
    int y = elastic_graph_node(&g, ELASTIC_OP_GATHER, in, 2, NULL, "emb");
    check(g.status, "graph");
    const elastic_node *node = &g.nodes[0];
    float *table = calloc((size_t)(R * d), sizeof *table), *got = calloc((size_t)(n * d), 4);
    int32_t good[23], bad[23];
    assert_non_null(table);
    assert_non_null(got);
    tu_fill_uniform(table, (size_t)(R * d), tu_seed(), 1, 1, 2); /* never 0 */
    tu_fill_int(good, (size_t)n, tu_seed(), 2, 0, (int32_t)R - 1);
    memcpy(bad, good, sizeof bad);
    bad[9] = -1;
    bad[5] = (int32_t)R;
    guarded t = guarded_new(table, (size_t)(R * d) * 4, 4);
    guarded ix = guarded_new(bad, sizeof bad, 0);
    guarded o = guarded_new(NULL, (size_t)(n * d) * 4, GUARD);
    elastic_tensor_ref rin[2] = {ref_of(&g, in[0], &t), ref_of(&g, in[1], &ix)};
    elastic_tensor_ref rout[1] = {ref_of(&g, y, &o)};

    /* Reported at the next synchronize, with the first bad position; the
     * bad rows are zeros; the report is consumed. */
    check(elastic_backend_compute(be, node, rin, rout), "gather");
    assert_int_equal(cu->synchronize(be), ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "gather 'emb'"));
    assert_non_null(strstr(elastic_last_error(), "index 50"));
    assert_non_null(strstr(elastic_last_error(), "position 5"));
    guarded_read(&o, got, "gather");
    for (int64_t j = 0; j < d; j++)
        if (got[5 * d + j] != 0.0f || got[9 * d + j] != 0.0f)
            fail_msg("gather: the row of a bad index is not zero");
    check(cu->synchronize(be), "synchronize after a reported error");

    /* CUDA_MAX_GATHER_CHECKS gathers take every report slot, the 6th with
     * the bad indices; the next gather flushes them and returns the failure.
     * Uploads are queued in order with the gathers. */
    for (int k = 0; k < CUDA_MAX_GATHER_CHECKS; k++) {
        check(cu->upload(be, ix.buf, 0, k == 5 ? bad : good, sizeof good), "upload");
        check(elastic_backend_compute(be, node, rin, rout), "gather");
    }
    assert_int_equal(elastic_backend_compute(be, node, rin, rout), ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "position 5"));
    check(cu->synchronize(be), "synchronize after a flushed report");
    check(cu->upload(be, ix.buf, 0, good, sizeof good), "upload");
    check(elastic_backend_compute(be, node, rin, rout), "gather");
    check(cu->synchronize(be), "synchronize");

    guarded_free(&t), guarded_free(&ix), guarded_free(&o);
    free(table), free(got);
    elastic_graph_free(&g);
}

/* ------------------------------------------------------------ misaligned inputs */

/* A conformance case as a graph of one node, its inputs' host data drawn
 * as the suite draws them (COPY's input: a view of a base tensor). */
typedef struct dev_case {
    elastic_graph g;
    void *host[ELASTIC_MAX_INPUTS];
    int64_t numel[ELASTIC_MAX_INPUTS]; /* storage elements */
} dev_case;

static void dev_case_build(const conf_case *c, uint64_t seed, dev_case *dc)
{
    memset(dc, 0, sizeof *dc);
    elastic_graph_init(&dc->g);
    int ids[ELASTIC_MAX_INPUTS];
    for (int i = 0; i < c->n_inputs; i++) {
        const conf_input *in = &c->in[i];
        ids[i] = -1;
        if (in->absent) continue;
        if (c->op == ELASTIC_OP_COPY) {
            int base = elastic_graph_input(&dc->g, "base", in->dtype, 1, &in->base_numel);
            ids[i] =
                elastic_graph_view(&dc->g, base, in->ndim, in->shape, in->strides, in->view_offset);
            dc->numel[i] = in->base_numel;
        } else {
            ids[i] = elastic_graph_input(&dc->g, "in", in->dtype, in->ndim, in->shape);
            if (ids[i] < 0) fail_msg("'%s': %s", c->label, elastic_last_error());
            dc->numel[i] = elastic_tensor_numel(&dc->g.tensors[ids[i]]);
        }
        dc->host[i] = malloc((size_t)dc->numel[i] * 4);
        assert_non_null(dc->host[i]);
        conf_fill_input(c, i, dc->host[i], dc->numel[i], seed);
    }
    if (elastic_graph_node(&dc->g, c->op, ids, c->n_inputs, &c->params, c->label) < 0)
        fail_msg("%s '%s': %s", elastic_op_name(c->op), c->label, elastic_last_error());
}

static void dev_case_free(dev_case *dc)
{
    for (int i = 0; i < ELASTIC_MAX_INPUTS; i++)
        free(dc->host[i]);
    elastic_graph_free(&dc->g);
}

/* Runs the case's node with input i at byte offset `shift`*(1 + i % 3) of
 * its buffer (0: every input aligned), outputs at an aligned offset with
 * canaries before and after; outs[o] receives output o. */
static void dev_case_run(const dev_case *dc, size_t shift, void **outs)
{
    const elastic_graph *g = &dc->g;
    const elastic_node *node = &g->nodes[0];
    guarded ib[ELASTIC_MAX_INPUTS], ob[ELASTIC_MAX_OUTPUTS];
    elastic_tensor_ref in[ELASTIC_MAX_INPUTS], out[ELASTIC_MAX_OUTPUTS];
    memset(ib, 0, sizeof ib);
    memset(in, 0, sizeof in);
    for (int i = 0; i < node->n_inputs; i++) {
        if (node->inputs[i] < 0) continue;
        ib[i] = guarded_new(dc->host[i], (size_t)dc->numel[i] * 4, shift * (size_t)(1 + i % 3));
        in[i] = ref_of(g, node->inputs[i], &ib[i]);
    }
    for (int o = 0; o < node->n_outputs; o++) {
        size_t bytes = (size_t)elastic_tensor_numel(&g->tensors[node->outputs[o]]) * 4;
        ob[o] = guarded_new(NULL, bytes, GUARD);
        out[o] = ref_of(g, node->outputs[o], &ob[o]);
    }
    check(elastic_backend_compute(be, node, in, out), node->name);
    check(cu->synchronize(be), node->name);
    for (int o = 0; o < node->n_outputs; o++) {
        guarded_read(&ob[o], outs[o], node->name);
        guarded_free(&ob[o]);
    }
    for (int i = 0; i < node->n_inputs; i++)
        if (ib[i].buf) guarded_free(&ib[i]);
}

/* Every conformance case of every op the backend runs, with inputs aligned
 * and then 4, 8 or 12 bytes past an aligned address: the same bits. LINEAR
 * and ATTENTION_MIX go through cuBLAS, which may choose other kernels for
 * unaligned operands; their inputs are small integers, whose products and
 * sums are exact in any order. */
static void test_misaligned_inputs(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    int n_cases = 0;
    for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
        if (!cu->kernels[op].run) continue;
        const conf_case *cases;
        int n = conf_cases_for((elastic_op)op, &cases);
        for (int k = 0; k < n; k++) {
            conf_case c = cases[k];
            if (op == ELASTIC_OP_LINEAR || op == ELASTIC_OP_ATTENTION_MIX)
                for (int i = 0; i < c.n_inputs; i++)
                    if (c.in[i].dtype == ELASTIC_DTYPE_F32) {
                        c.in[i].fill = CONF_FILL_SMALL_INT;
                        c.in[i].lo = -8;
                        c.in[i].hi = 8;
                    }
            dev_case dc;
            dev_case_build(&c, seed + (uint64_t)k, &dc);
            const elastic_node *node = &dc.g.nodes[0];
            if (!elastic_backend_supports(be, node)) {
                printf("# %s '%s': not taken by the cuda backend\n", elastic_op_name(c.op),
                       c.label);
                dev_case_free(&dc);
                continue;
            }
            void *aligned[ELASTIC_MAX_OUTPUTS] = {0}, *shifted[ELASTIC_MAX_OUTPUTS] = {0};
            size_t bytes[ELASTIC_MAX_OUTPUTS] = {0};
            for (int o = 0; o < node->n_outputs; o++) {
                bytes[o] = (size_t)elastic_tensor_numel(&dc.g.tensors[node->outputs[o]]) * 4;
                aligned[o] = malloc(bytes[o]);
                shifted[o] = malloc(bytes[o]);
                assert_non_null(aligned[o]);
                assert_non_null(shifted[o]);
            }
            dev_case_run(&dc, 0, aligned);
            dev_case_run(&dc, 4, shifted);
            for (int o = 0; o < node->n_outputs; o++)
                for (size_t e = 0; e < bytes[o] / 4; e++) {
                    uint32_t a, s;
                    memcpy(&a, (char *)aligned[o] + 4 * e, 4);
                    memcpy(&s, (char *)shifted[o] + 4 * e, 4);
                    if (a != s)
                        fail_msg("%s '%s' (seed %llu): output %d element %zu: 0x%08x aligned, "
                                 "0x%08x with the inputs shifted",
                                 elastic_op_name(c.op), c.label,
                                 (unsigned long long)(seed + (uint64_t)k), o, e, a, s);
                }
            for (int o = 0; o < node->n_outputs; o++)
                free(aligned[o]), free(shifted[o]);
            dev_case_free(&dc);
            n_cases++;
        }
    }
    printf("# %d conformance cases: the same bits with inputs at 4-byte offsets\n", n_cases);
    assert_true(n_cases > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_init),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_supports_model_graphs),
        cmocka_unit_test(test_training_ops_unsupported),
        cmocka_unit_test(test_kernel_limits),
        cmocka_unit_test(test_transfers),
        cmocka_unit_test(test_gather_index_reports),
        cmocka_unit_test(test_misaligned_inputs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
