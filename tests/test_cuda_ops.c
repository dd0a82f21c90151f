/*
 * test_cuda_ops.c - the CUDA backend against the float64 reference kernels
 * (cpu_ref.c), op by op, through the backend interface exactly as the
 * session drives it: device buffers with canary guards around every tensor,
 * weights at offsets that are only 4-byte aligned, compute() then
 * synchronize() and download().
 *
 * Without a usable device (no GPU, no driver) the comparisons are skipped,
 * visibly, and what can be checked without one is: probe() reports the
 * backend unavailable with a reason, init() fails with ELASTIC_ERR_BACKEND
 * and a message, and supports_op() accepts every node of the real ELASTIC
 * and SASRec graphs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/backend.h"
#include "cpu_kernels.h"
#include "base/error.h"
#include "model/model_builder.h"
#include "test_util.h"

static const elastic_backend_iface *const cu = &elastic_cuda_backend_iface;
static const elastic_cpu_kernels *const ref = &elastic_cpu_kernels_reference;
static elastic_backend_info info;
static elastic_backend *be; /* the backend on device 0, when there is one */

static int group_setup(void **state)
{
    (void)state;
    memset(&info, 0, sizeof info);
    cu->probe(&info);
    printf("# cuda probe: available=%d devices=%d: %s\n", info.available, info.device_count,
           info.description);
    if (!info.available) {
        printf("# SKIPPING every CUDA op comparison: no usable CUDA device here\n");
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

/* ------------------------------------------------------------ device tensors */

#define GUARD 256
#define CANARY 0xA5

typedef struct dtensor {
    elastic_tensor_ref ref;
    size_t bytes; /* of the tensor */
    size_t total; /* of its buffer: misalignment + tensor + guard */
} dtensor;

static elastic_tensor_ref absent(void)
{
    elastic_tensor_ref r;
    memset(&r, 0, sizeof r);
    return r;
}

static void check(elastic_status st, const char *what)
{
    if (st != ELASTIC_OK)
        fail_msg("%s: %s: %s", what, elastic_status_name(st), elastic_last_error());
}

/* A contiguous tensor in its own buffer, `misalign` bytes after the start
 * (a multiple of 4: weights may sit anywhere), canaries around it. */
static dtensor dt_new(elastic_dtype dtype, int ndim, const int64_t *shape, size_t misalign,
                      const void *data)
{
    dtensor t;
    memset(&t, 0, sizeof t);
    t.ref.dtype = dtype;
    t.ref.ndim = ndim;
    int64_t n = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t.ref.shape[i] = shape[i];
        t.ref.strides[i] = n;
        n *= shape[i];
    }
    t.bytes = (size_t)n * 4;
    t.total = misalign + t.bytes + GUARD;
    t.ref.offset = misalign;
    check(cu->buffer_alloc(be, t.total, &t.ref.buffer), "buffer_alloc");
    unsigned char *fill = malloc(t.total);
    assert_non_null(fill);
    memset(fill, CANARY, t.total);
    if (data) memcpy(fill + misalign, data, t.bytes);
    check(cu->upload(be, t.ref.buffer, 0, fill, t.total), "upload");
    free(fill);
    return t;
}

static dtensor dt_f32(int ndim, const int64_t *shape, size_t misalign, const float *data)
{
    return dt_new(ELASTIC_DTYPE_F32, ndim, shape, misalign, data);
}

static dtensor dt_i32(int ndim, const int64_t *shape, size_t misalign, const int32_t *data)
{
    return dt_new(ELASTIC_DTYPE_I32, ndim, shape, misalign, data);
}

/* Downloads the tensor and checks that the bytes around it are untouched. */
static void dt_read(const dtensor *t, void *host)
{
    unsigned char *all = malloc(t->total);
    assert_non_null(all);
    check(cu->download(be, t->ref.buffer, 0, all, t->total), "download");
    for (size_t i = 0; i < t->total; i++) {
        if (i == t->ref.offset) i += t->bytes;
        if (i < t->total && all[i] != CANARY) fail_msg("canary overwritten at byte %zu", i);
    }
    memcpy(host, all + t->ref.offset, t->bytes);
    free(all);
}

static void dt_free(dtensor *t)
{
    cu->buffer_free(be, t->ref.buffer);
    t->ref.buffer = NULL;
}

static elastic_node make_node(elastic_op op, int n_inputs, int n_outputs, const char *name)
{
    elastic_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_inputs = n_inputs;
    n.n_outputs = n_outputs;
    for (int i = 0; i < ELASTIC_MAX_INPUTS; i++)
        n.inputs[i] = i < n_inputs ? i : -1;
    for (int i = 0; i < ELASTIC_MAX_OUTPUTS; i++)
        n.outputs[i] = i < n_outputs ? 10 + i : -1;
    snprintf(n.name, sizeof n.name, "%s", name);
    return n;
}

/* compute() then synchronize(); refs of absent inputs have no buffer. */
static void run(const elastic_node *node, const elastic_tensor_ref *in, const dtensor *out)
{
    elastic_tensor_ref o[ELASTIC_MAX_OUTPUTS];
    for (int i = 0; i < node->n_outputs; i++)
        o[i] = out[i].ref;
    check(cu->compute(be, node, in, o), node->name);
    check(cu->synchronize(be), "synchronize");
}

static void expect_close(const char *what, const float *got, const float *want, size_t n,
                         double atol, double rtol)
{
    size_t at = 0;
    double v = tu_max_violation(got, want, n, atol, rtol, &at);
    if (v > 1.0)
        fail_msg("%s: element %zu: got %.9g, reference %.9g (violation %.3g of atol %g rtol %g)",
                 what, at, (double)got[at], (double)want[at], v, atol, rtol);
}

static float *fvec(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static int32_t *ivec(size_t n)
{
    int32_t *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

/* ------------------------------------------------------------ no device needed */

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
        assert_true(strlen(elastic_last_error()) > 0);
        printf("# init without a device: %s\n", elastic_last_error());
        return;
    }
    assert_true(i.device_count >= 1);
    assert_int_equal(i.accelerator, 1);
    o.device = i.device_count; /* one past the last */
    assert_int_equal(cu->init(&b, &o), ELASTIC_ERR_BACKEND);
    assert_null(b);
    assert_non_null(strstr(elastic_last_error(), "does not exist"));
}

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
        if (!cu->supports_op(be, &g, &g.nodes[i]))
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

/* ------------------------------------------------------------ ops */

static void test_gather(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    const int64_t R = 50, d = 37, n = 23;
    float *table = fvec((size_t)(R * d)), *got = fvec((size_t)(n * d)),
          *want = fvec((size_t)(n * d));
    int32_t *idx = ivec((size_t)n);
    tu_fill_uniform(table, (size_t)(R * d), seed, 1, -1, 1);
    tu_fill_int(idx, (size_t)n, seed, 2, 0, (int32_t)R - 1);
    idx[0] = 0;
    idx[1] = (int32_t)R - 1;
    dtensor t = dt_f32(2, (int64_t[]){R, d}, 4, table), ix = dt_i32(1, &n, 0, idx);
    dtensor o = dt_f32(2, (int64_t[]){n, d}, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_GATHER, 2, 1, "emb");
    elastic_tensor_ref in[2] = {t.ref, ix.ref};
    run(&node, in, &o);
    dt_read(&o, got);
    ref->gather(table, d, idx, n, want, 1);
    assert_memory_equal(got, want, (size_t)(n * d) * sizeof *got);

    /* Bad indices: reported at the next synchronize, with the first position. */
    idx[9] = -1;
    idx[5] = (int32_t)R;
    check(cu->upload(be, ix.ref.buffer, 0, idx, (size_t)n * 4), "upload");
    check(cu->compute(be, &node, in, &o.ref), "gather");
    assert_int_equal(cu->synchronize(be), ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "gather 'emb'"));
    assert_non_null(strstr(elastic_last_error(), "index 50"));
    assert_non_null(strstr(elastic_last_error(), "position 5"));
    check(cu->synchronize(be), "synchronize after a reported error");

    dt_free(&t), dt_free(&ix), dt_free(&o);
    free(table), free(got), free(want), free(idx);
}

static void test_add(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    const int64_t shape[3] = {3, 5, 7}, n = 105;
    for (int rank = 1; rank <= 3; rank++) {
        int64_t nb = 1;
        for (int i = 3 - rank; i < 3; i++)
            nb *= shape[i];
        float *a = fvec((size_t)n), *b = fvec((size_t)nb), *got = fvec((size_t)n),
              *want = fvec((size_t)n);
        tu_fill_uniform(a, (size_t)n, seed, 10, -2, 2);
        tu_fill_uniform(b, (size_t)nb, seed, 11, -2, 2);
        dtensor ta = dt_f32(3, shape, 0, a), tb = dt_f32(rank, shape + 3 - rank, 4, b);
        dtensor o = dt_f32(3, shape, 0, NULL);
        elastic_node node = make_node(ELASTIC_OP_ADD, 2, 1, "add");
        elastic_tensor_ref in[2] = {ta.ref, tb.ref};
        run(&node, in, &o);
        dt_read(&o, got);
        ref->add(a, b, want, n, nb, 1);
        expect_close("add", got, want, (size_t)n, 1e-7, 1.2e-7);
        dt_free(&ta), dt_free(&tb), dt_free(&o);
        free(a), free(b), free(got), free(want);
    }
}

static void test_masked_mean(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    const int64_t B = 5, n = 300, d = 70;
    const int32_t len[5] = {0, 1, 300, 1000, 157};
    float *x = fvec((size_t)(B * n * d)), *got = fvec((size_t)(B * d)),
          *want = fvec((size_t)(B * d));
    tu_fill_uniform(x, (size_t)(B * n * d), seed, 20, -1, 3);
    dtensor tx = dt_f32(3, (int64_t[]){B, n, d}, 0, x), tl = dt_i32(1, &B, 4, len);
    dtensor o = dt_f32(2, (int64_t[]){B, d}, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_MASKED_MEAN, 2, 1, "mean");
    elastic_tensor_ref in[2] = {tx.ref, tl.ref};
    run(&node, in, &o);
    dt_read(&o, got);
    ref->masked_mean(x, len, want, B, n, d, 1);
    expect_close("masked_mean", got, want, (size_t)(B * d), 1e-6, (double)n * 1.2e-7);
    dt_free(&tx), dt_free(&tl), dt_free(&o);
    free(x), free(got), free(want);
}

static void test_layer_norm(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    const int64_t widths[3] = {64, 100, 7}, rows = 33;
    for (int c = 0; c < 3; c++) {
        int64_t d = widths[c], n = rows * d;
        float *x = fvec((size_t)n), *w = fvec((size_t)d), *b = fvec((size_t)d);
        float *got = fvec((size_t)n), *want = fvec((size_t)n);
        tu_fill_uniform(x, (size_t)n, seed, 30, -3, 5);
        tu_fill_uniform(w, (size_t)d, seed, 31, 0.5f, 1.5f);
        tu_fill_uniform(b, (size_t)d, seed, 32, -0.5f, 0.5f);
        dtensor tx = dt_f32(2, (int64_t[]){rows, d}, 0, x), tw = dt_f32(1, &d, 4, w),
                tb = dt_f32(1, &d, 12, b), o = dt_f32(2, (int64_t[]){rows, d}, 0, NULL);
        elastic_node node = make_node(ELASTIC_OP_LAYER_NORM, 3, 1, "ln");
        node.params.eps = 1e-5f;
        elastic_tensor_ref in[3] = {tx.ref, tw.ref, tb.ref};
        run(&node, in, &o);
        dt_read(&o, got);
        ref->layer_norm(x, w, b, want, rows, d, 1e-5f, 1);
        expect_close("layer_norm", got, want, (size_t)n, (double)d * 2.4e-7, (double)d * 2.4e-7);
        dt_free(&tx), dt_free(&tw), dt_free(&tb), dt_free(&o);
        free(x), free(w), free(b), free(got), free(want);
    }
}

/* out [M,N] = x [M,K] W [N,K]^T (+ bias), through cuBLAS. */
static void linear_case(int64_t m0, int64_t m1, int64_t k, int64_t n, int with_bias, int integers,
                        size_t w_misalign)
{
    const uint64_t seed = tu_seed();
    int64_t m = m0 * m1;
    float *x = fvec((size_t)(m * k)), *w = fvec((size_t)(n * k)), *b = fvec((size_t)n);
    float *got = fvec((size_t)(m * n)), *want = fvec((size_t)(m * n));
    if (integers) { /* small integers: the float32 result must be exact */
        for (int64_t i = 0; i < m * k; i++)
            x[i] = (float)((int)(tu_hash(seed, 40, (uint64_t)i) % 9) - 4);
        for (int64_t i = 0; i < n * k; i++)
            w[i] = (float)((int)(tu_hash(seed, 41, (uint64_t)i) % 9) - 4);
        for (int64_t i = 0; i < n; i++)
            b[i] = (float)((int)(tu_hash(seed, 42, (uint64_t)i) % 9) - 4);
    } else {
        tu_fill_uniform(x, (size_t)(m * k), seed, 40, -1, 1);
        tu_fill_uniform(w, (size_t)(n * k), seed, 41, -1, 1);
        tu_fill_uniform(b, (size_t)n, seed, 42, -1, 1);
    }
    dtensor tx = dt_f32(3, (int64_t[]){m0, m1, k}, 0, x),
            tw = dt_f32(2, (int64_t[]){n, k}, w_misalign, w);
    dtensor tb = dt_f32(1, &n, 4, b), o = dt_f32(3, (int64_t[]){m0, m1, n}, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_LINEAR, with_bias ? 3 : 2, 1, "fc");
    elastic_tensor_ref in[3] = {tx.ref, tw.ref, with_bias ? tb.ref : absent()};
    run(&node, in, &o);
    dt_read(&o, got);
    ref->linear(x, w, with_bias ? b : NULL, want, m, n, k, 1);
    if (integers)
        assert_memory_equal(got, want, (size_t)(m * n) * sizeof *got);
    else /* a dot product of length K: tol_rel ~ K eps32 on the sum of |terms| (<= K) */
        expect_close("linear", got, want, (size_t)(m * n), (double)k * 2.4e-7, 1e-6);
    dt_free(&tx), dt_free(&tw), dt_free(&tb), dt_free(&o);
    free(x), free(w), free(b), free(got), free(want);
}

static void test_linear(void **state)
{
    (void)state;
    NEED_DEVICE();
    linear_case(2, 17, 64, 130, 1, 0, 4);
    linear_case(2, 17, 64, 130, 0, 0, 0);
    linear_case(1, 10, 64, 20, 1, 1, 8);
    linear_case(1, 3, 64, 3706, 0, 0, 256 + 4); /* scores: hu against item_emb[1..I] */
    linear_case(4, 5, 256, 64, 1, 0, 4);        /* an FFN's fc2 */
}

static void test_gelu(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    const int64_t n = 1001;
    float *x = fvec((size_t)n), *got = fvec((size_t)n), *want = fvec((size_t)n);
    tu_fill_uniform(x, (size_t)n, seed, 50, -10, 10);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-30f, x[3] = -5.0f, x[4] = 40.0f, x[5] = -40.0f;
    dtensor tx = dt_f32(1, &n, 0, x), o = dt_f32(1, &n, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_GELU, 1, 1, "gelu");
    elastic_tensor_ref in[1] = {tx.ref};
    run(&node, in, &o);
    dt_read(&o, got);
    ref->gelu(x, want, n, 1);
    /* A few ulp, even in the tail; atol covers the reference, whose double
     * 1 + erf() cancels to multiples of 2^-53 for z below about -8. */
    expect_close("gelu", got, want, (size_t)n, 1e-14, 2e-6);
    dt_free(&tx), dt_free(&o);
    free(x), free(got), free(want);
}

/* One attention case; key_len NULL = no key lengths input. Also checks that
 * a second run gives bitwise the same result. */
static void attention_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads, int causal,
                           const int32_t *key_len, int key_len_as_absent_input)
{
    const uint64_t seed = tu_seed();
    size_t nqe = (size_t)(B * nq * d), nke = (size_t)(B * nk * d);
    float *q = fvec(nqe), *k = fvec(nke), *v = fvec(nke);
    float *got = fvec(nqe), *again = fvec(nqe), *want = fvec(nqe);
    tu_fill_uniform(q, nqe, seed, 60 + (uint64_t)nk, -2, 2);
    tu_fill_uniform(k, nke, seed, 61 + (uint64_t)nk, -2, 2);
    tu_fill_uniform(v, nke, seed, 62 + (uint64_t)nk, -1, 1);
    dtensor tq = dt_f32(3, (int64_t[]){B, nq, d}, 0, q),
            tk = dt_f32(3, (int64_t[]){B, nk, d}, 4, k);
    dtensor tv = dt_f32(3, (int64_t[]){B, nk, d}, 8, v),
            o = dt_f32(3, (int64_t[]){B, nq, d}, 0, NULL);
    dtensor tl = dt_i32(1, &B, 0, key_len); /* no data to copy when there are none */
    int n_inputs = key_len || key_len_as_absent_input ? 4 : 3;
    elastic_node node = make_node(ELASTIC_OP_ATTENTION, n_inputs, 1, "mha");
    node.params.heads = heads;
    node.params.causal = causal;
    elastic_tensor_ref in[4] = {tq.ref, tk.ref, tv.ref, key_len ? tl.ref : absent()};
    run(&node, in, &o);
    dt_read(&o, got);
    run(&node, in, &o);
    dt_read(&o, again);
    ref->attention(q, k, v, key_len, want, B, nq, nk, d, heads, causal, 1);
    char what[96];
    snprintf(what, sizeof what, "attention B%lld nq%lld nk%lld d%lld h%d causal%d", (long long)B,
             (long long)nq, (long long)nk, (long long)d, heads, causal);
    expect_close(what, got, want, nqe, 2e-6 * sqrt((double)(d / heads)), 1e-5);
    if (memcmp(got, again, nqe * sizeof *got)) fail_msg("%s: two runs differ", what);
    dt_free(&tq), dt_free(&tk), dt_free(&tv), dt_free(&o), dt_free(&tl);
    free(q), free(k), free(v), free(got), free(again), free(want);
}

static void test_attention(void **state)
{
    (void)state;
    NEED_DEVICE();
    /* aggregation: 16 experts over long histories, padded users, a user with none */
    attention_case(3, 16, 3000, 64, 2, 0, (const int32_t[]){3000, 1234, 0}, 0);
    attention_case(1, 16, 20000, 64, 2, 0, (const int32_t[]){19999}, 0);
    /* dispatch: n queries over the 16 experts, no key lengths */
    attention_case(2, 300, 16, 64, 2, 0, NULL, 0);
    attention_case(2, 37, 16, 64, 2, 0, NULL, 1);
    /* SASRec: causal self-attention with padding */
    attention_case(2, 200, 200, 64, 2, 1, (const int32_t[]){200, 77}, 0);
    attention_case(1, 1500, 1500, 64, 2, 1, (const int32_t[]){1400}, 0);
    /* other head sizes: the largest supported, not a multiple of 32, tiny */
    attention_case(2, 20, 700, 128, 1, 0, (const int32_t[]){700, 5}, 0);
    attention_case(2, 20, 70, 96, 2, 1, (const int32_t[]){70, 40}, 0);
    attention_case(2, 9, 33, 16, 2, 0, (const int32_t[]){33, 32}, 0);
}

/* One ATTENTION_PROBS case against the reference; key_len NULL = no key
 * lengths (the input absent, or left out when key_len_as_absent_input is 0).
 * Hidden keys must be exactly 0 and a second run bitwise the same. */
static void attention_probs_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads,
                                 int causal, const int32_t *key_len, int key_len_as_absent_input)
{
    const uint64_t seed = tu_seed();
    size_t nqe = (size_t)(B * nq * d), nke = (size_t)(B * nk * d),
           npe = (size_t)(B * heads * nq * nk);
    float *q = fvec(nqe), *k = fvec(nke), *got = fvec(npe), *again = fvec(npe), *want = fvec(npe);
    tu_fill_uniform(q, nqe, seed, 64 + (uint64_t)nk, -2, 2);
    tu_fill_uniform(k, nke, seed, 65 + (uint64_t)nk, -2, 2);
    dtensor tq = dt_f32(3, (int64_t[]){B, nq, d}, 0, q),
            tk = dt_f32(3, (int64_t[]){B, nk, d}, 4, k);
    dtensor tl = dt_i32(1, &B, 8, key_len); /* canaries only when there are none */
    dtensor o = dt_f32(4, (int64_t[]){B, heads, nq, nk}, 0, NULL);
    int n_inputs = key_len || key_len_as_absent_input ? 3 : 2;
    elastic_node node = make_node(ELASTIC_OP_ATTENTION_PROBS, n_inputs, 1, "probs");
    node.params.heads = heads;
    node.params.causal = causal;
    elastic_tensor_ref in[3] = {tq.ref, tk.ref, key_len ? tl.ref : absent()};
    run(&node, in, &o);
    dt_read(&o, got);
    run(&node, in, &o);
    dt_read(&o, again);
    ref->attention_probs(q, k, key_len, want, B, nq, nk, d, heads, causal, 1);
    char what[112];
    snprintf(what, sizeof what, "attention_probs B%lld nq%lld nk%lld d%lld h%d causal%d",
             (long long)B, (long long)nq, (long long)nk, (long long)d, heads, causal);
    for (size_t e = 0; e < npe; e++) { /* hidden keys: exactly 0 */
        int64_t j = (int64_t)e % nk, i = (int64_t)e / nk % nq, b = (int64_t)e / (nk * nq * heads);
        int64_t valid = key_len ? (key_len[b] < 0 ? 0 : key_len[b] < nk ? key_len[b] : nk) : nk;
        if ((j >= valid || (causal && j < i)) && got[e] != 0.0f)
            fail_msg("%s: hidden key %lld of query %lld (user %lld) has weight %g", what,
                     (long long)j, (long long)i, (long long)b, (double)got[e]);
    }
    /* The logit error (a dot product of dh terms of |q.k| <= 4, scaled)
     * becomes a relative error of every weight; the sum adds nk roundings. */
    double dh = (double)(d / heads), L = 4.0 * dh / sqrt(dh > 0 ? dh : 1.0);
    double rtol = 1.2e-7 * (2.0 * (dh + 4.0) * (L + 1.0) + 2.0 * ((double)nk + 4.0));
    expect_close(what, got, want, npe, 1e-35, rtol);
    if (memcmp(got, again, npe * sizeof *got)) fail_msg("%s: two runs differ", what);
    dt_free(&tq), dt_free(&tk), dt_free(&tl), dt_free(&o);
    free(q), free(k), free(got), free(again), free(want);
}

static void test_attention_probs(void **state)
{
    (void)state;
    NEED_DEVICE();
    /* aggregation: 16 experts over long histories, padded users, a user with none */
    attention_probs_case(3, 16, 3000, 64, 2, 0, (const int32_t[]){3000, 1234, 0}, 0);
    /* dispatch: n queries over the 16 experts, no key lengths */
    attention_probs_case(2, 300, 16, 64, 2, 0, NULL, 0);
    attention_probs_case(2, 37, 16, 64, 2, 0, NULL, 1);
    /* SASRec: causal self-attention with padding */
    attention_probs_case(2, 200, 200, 64, 2, 1, (const int32_t[]){200, 77}, 0);
    /* key lengths out of range (clamped), d = 12 over 3 heads */
    attention_probs_case(2, 33, 33, 12, 3, 1, (const int32_t[]){-5, 999}, 0);
    /* head sizes: 260, and wider than the kernel stages in shared memory */
    attention_probs_case(1, 5, 7, 260, 1, 1, NULL, 0);
    attention_probs_case(2, 3, 9, 5000, 1, 0, (const int32_t[]){6, 9}, 0);
    /* more rows of P (80000) than blocks in the grid */
    attention_probs_case(1, 40000, 5, 8, 2, 0, NULL, 0);
    /* a single key, a single query */
    attention_probs_case(1, 1, 1, 1, 1, 0, NULL, 0);
}

/* One ATTENTION_MIX case: P [B, heads, nq, nk] in [0, 1) (not softmax rows:
 * the op sums whatever it gets), v [B, nk, d]; each element within a dot
 * product's rounding of the reference, relative to the sum of |terms|. */
static void attention_mix_case(int64_t B, int heads, int64_t nq, int64_t nk, int64_t d)
{
    const uint64_t seed = tu_seed();
    size_t npe = (size_t)(B * heads * nq * nk), nve = (size_t)(B * nk * d),
           noe = (size_t)(B * nq * d);
    float *p = fvec(npe), *v = fvec(nve), *got = fvec(noe), *again = fvec(noe), *want = fvec(noe);
    tu_fill_uniform(p, npe, seed, 66 + (uint64_t)nk, 0, 1);
    tu_fill_uniform(v, nve, seed, 67 + (uint64_t)nk, -1, 1);
    dtensor tp = dt_f32(4, (int64_t[]){B, heads, nq, nk}, 4, p),
            tv = dt_f32(3, (int64_t[]){B, nk, d}, 8, v);
    dtensor o = dt_f32(3, (int64_t[]){B, nq, d}, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_ATTENTION_MIX, 2, 1, "mix");
    node.params.heads = heads; /* as the builder sets it; the op reads P's shape */
    elastic_tensor_ref in[2] = {tp.ref, tv.ref};
    run(&node, in, &o);
    dt_read(&o, got);
    run(&node, in, &o);
    dt_read(&o, again);
    ref->attention_mix(p, v, want, B, nq, nk, d, heads, 1);
    char what[96];
    snprintf(what, sizeof what, "attention_mix B%lld h%d nq%lld nk%lld d%lld", (long long)B, heads,
             (long long)nq, (long long)nk, (long long)d);
    int64_t dh = d / heads;
    for (size_t e = 0; e < noe; e++) {
        int64_t b = (int64_t)e / (nq * d), i = (int64_t)e / d % nq, col = (int64_t)e % d;
        const float *row = p + ((b * heads + col / dh) * nq + i) * nk;
        double mag = 0;
        for (int64_t j = 0; j < nk; j++)
            mag += fabs((double)row[j] * v[(b * nk + j) * d + col]);
        double tol = ((double)nk + 2.0) * 1.2e-7 * mag + 1e-30;
        if (!(fabs((double)got[e] - (double)want[e]) <= tol))
            fail_msg("%s: element %zu (user %lld, query %lld, column %lld): got %.9g, "
                     "reference %.9g, tolerance %.3g",
                     what, e, (long long)b, (long long)i, (long long)col, (double)got[e],
                     (double)want[e], tol);
    }
    if (memcmp(got, again, noe * sizeof *got)) fail_msg("%s: two runs differ", what);
    dt_free(&tp), dt_free(&tv), dt_free(&o);
    free(p), free(v), free(got), free(again), free(want);
}

static void test_attention_mix(void **state)
{
    (void)state;
    NEED_DEVICE();
    attention_mix_case(1, 1, 1, 1, 1);
    attention_mix_case(2, 4, 50, 50, 32);   /* SASRec-like, 4 heads */
    attention_mix_case(3, 2, 37, 16, 64);   /* dispatch: n queries over 16 experts */
    attention_mix_case(2, 3, 33, 33, 12);   /* heads of 4 columns */
    attention_mix_case(1, 2, 16, 4096, 64); /* aggregation over a long history */
    attention_mix_case(2, 2, 1, 20000, 64); /* one query, many keys */
    attention_mix_case(1, 1, 5, 7, 260);    /* a head of 260 columns */
}

/* ATTENTION_PROBS then ATTENTION_MIX, as the builder wires them, against the
 * one-step reference ATTENTION. */
static void attention_two_step_case(int64_t B, int64_t nq, int64_t nk, int64_t d, int heads,
                                    int causal, const int32_t *key_len)
{
    const uint64_t seed = tu_seed();
    size_t nqe = (size_t)(B * nq * d), nke = (size_t)(B * nk * d);
    float *q = fvec(nqe), *k = fvec(nke), *v = fvec(nke), *got = fvec(nqe), *want = fvec(nqe);
    tu_fill_uniform(q, nqe, seed, 68 + (uint64_t)nk, -2, 2);
    tu_fill_uniform(k, nke, seed, 69 + (uint64_t)nk, -2, 2);
    tu_fill_uniform(v, nke, seed, 70 + (uint64_t)nk, -1, 1);
    dtensor tq = dt_f32(3, (int64_t[]){B, nq, d}, 0, q),
            tk = dt_f32(3, (int64_t[]){B, nk, d}, 4, k),
            tv = dt_f32(3, (int64_t[]){B, nk, d}, 8, v), tl = dt_i32(1, &B, 0, key_len);
    dtensor tp = dt_f32(4, (int64_t[]){B, heads, nq, nk}, 0, NULL),
            o = dt_f32(3, (int64_t[]){B, nq, d}, 0, NULL);
    elastic_node probs = make_node(ELASTIC_OP_ATTENTION_PROBS, 3, 1, "mha.attention.probs");
    probs.params.heads = heads;
    probs.params.causal = causal;
    elastic_node mix = make_node(ELASTIC_OP_ATTENTION_MIX, 2, 1, "mha.attention");
    mix.params.heads = heads;
    mix.params.causal = causal;
    elastic_tensor_ref in_p[3] = {tq.ref, tk.ref, key_len ? tl.ref : absent()};
    elastic_tensor_ref in_m[2] = {tp.ref, tv.ref};
    run(&probs, in_p, &tp);
    run(&mix, in_m, &o);
    dt_read(&o, got);
    ref->attention(q, k, v, key_len, want, B, nq, nk, d, heads, causal, 1);
    char what[112];
    snprintf(what, sizeof what, "attention_probs + mix B%lld nq%lld nk%lld d%lld h%d causal%d",
             (long long)B, (long long)nq, (long long)nk, (long long)d, heads, causal);
    expect_close(what, got, want, nqe, 4e-6 * sqrt((double)(d / heads)), 1e-5);
    dt_free(&tq), dt_free(&tk), dt_free(&tv), dt_free(&tl), dt_free(&tp), dt_free(&o);
    free(q), free(k), free(v), free(got), free(want);
}

static void test_attention_two_step(void **state)
{
    (void)state;
    NEED_DEVICE();
    attention_two_step_case(3, 16, 3000, 64, 2, 0, (const int32_t[]){3000, 1234, 0});
    attention_two_step_case(2, 300, 16, 64, 2, 0, NULL);
    attention_two_step_case(2, 200, 200, 64, 2, 1, (const int32_t[]){200, 77});
    attention_two_step_case(2, 20, 70, 96, 2, 1, (const int32_t[]){70, 40});
}

static void pkm_case(int64_t B, int64_t experts, int64_t c, int64_t m, int64_t t, int64_t d)
{
    const uint64_t seed = tu_seed();
    size_t nq = (size_t)(B * experts * c), ns = (size_t)(m * c), nv = (size_t)(m * m * d),
           no = (size_t)(B * experts * d);
    float *q = fvec(nq), *sk = fvec(ns), *vals = fvec(nv), *got = fvec(no), *want = fvec(no);
    tu_fill_uniform(q, nq, seed, 70, -1, 1);
    tu_fill_uniform(sk, ns, seed, 71, -1, 1);
    tu_fill_uniform(vals, nv, seed, 72, -1, 1);
    dtensor tq = dt_f32(2, (int64_t[]){B, experts * c}, 0, q);
    dtensor ts = dt_f32(3, (int64_t[]){2, m, c / 2}, 4, sk);
    dtensor tv = dt_f32(2, (int64_t[]){m * m, d}, 12, vals);
    dtensor o = dt_f32(3, (int64_t[]){B, experts, d}, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_PKM, 3, 1, "imr");
    node.params.experts = (int)experts;
    node.params.mem_topk = (int)t;
    elastic_tensor_ref in[3] = {tq.ref, ts.ref, tv.ref};
    run(&node, in, &o);
    dt_read(&o, got);
    ref->pkm(q, sk, vals, want, B, experts, c, m, t, d, 1);
    expect_close("pkm", got, want, no, 1e-5, 1e-5);
    dt_free(&tq), dt_free(&ts), dt_free(&tv), dt_free(&o);
    free(q), free(sk), free(vals), free(got), free(want);
}

static void test_pkm(void **state)
{
    (void)state;
    NEED_DEVICE();
    pkm_case(2, 16, 64, 128, 8, 64); /* the spec's defaults */
    pkm_case(3, 4, 16, 32, 8, 24);
    pkm_case(2, 3, 6, 5, 5, 7); /* t = m: every sub-key kept */
    pkm_case(1, 2, 64, 300, 32, 40);
}

static void topk_case(const float *scores, int64_t B, int64_t items, int64_t k,
                      const int32_t *exclude, int64_t E)
{
    int32_t *got_ids = ivec((size_t)(B * k)), *want_ids = ivec((size_t)(B * k));
    float *got_vals = fvec((size_t)(B * k)), *want_vals = fvec((size_t)(B * k));
    dtensor ts = dt_f32(2, (int64_t[]){B, items}, 0, scores);
    dtensor te =
        dt_i32(2, (int64_t[]){B, E > 0 ? E : 1}, 4, exclude ? exclude : (const int32_t[]){0});
    dtensor oi = dt_i32(2, (int64_t[]){B, k}, 0, NULL), ov = dt_f32(2, (int64_t[]){B, k}, 0, NULL);
    elastic_node node = make_node(ELASTIC_OP_TOPK, exclude ? 2 : 1, 2, "topk");
    node.params.top_k = (int)k;
    elastic_tensor_ref in[2] = {ts.ref, exclude ? te.ref : absent()};
    dtensor outs[2] = {oi, ov};
    run(&node, in, outs);
    dt_read(&oi, got_ids);
    dt_read(&ov, got_vals);
    ref->topk(scores, exclude, exclude ? E : 0, want_ids, want_vals, B, items, k, 1);
    for (int64_t i = 0; i < B * k; i++)
        if (got_ids[i] != want_ids[i] || memcmp(&got_vals[i], &want_vals[i], sizeof(float)))
            fail_msg("topk I%lld K%lld: place %lld of user %lld: got id %d (%g), want id %d (%g)",
                     (long long)items, (long long)k, (long long)(i % k), (long long)(i / k),
                     got_ids[i], (double)got_vals[i], want_ids[i], (double)want_vals[i]);
    dt_free(&ts), dt_free(&te), dt_free(&oi), dt_free(&ov);
    free(got_ids), free(want_ids), free(got_vals), free(want_vals);
}

static void test_topk(void **state)
{
    (void)state;
    NEED_DEVICE();
    const uint64_t seed = tu_seed();
    const int64_t B = 4, I = 3706, E = 60;
    float *s = fvec((size_t)(B * I));
    int32_t *ex = ivec((size_t)(B * E));
    tu_fill_uniform(s, (size_t)(B * I), seed, 80, -5, 5);
    /* user 1: scores on a grid of 1/16, so there are many ties (broken by id) */
    for (int64_t j = 0; j < I; j++)
        s[I + j] = roundf(s[I + j] * 4.0f) / 16.0f;
    /* user 2: NaN, infinities and signed zeros */
    for (int64_t j = 0; j < I; j += 7)
        s[2 * I + j] = NAN;
    for (int64_t j = 3; j < I; j += 11)
        s[2 * I + j] = j % 2 ? 0.0f : -0.0f;
    s[2 * I + 100] = INFINITY, s[2 * I + 200] = -INFINITY;
    /* exclusions: ids in range, 0 (none), duplicates and ids out of range */
    tu_fill_int(ex, (size_t)(B * E), seed, 81, -3, (int32_t)I + 3);
    for (int64_t b = 0; b < B; b++)
        ex[b * E] = 0, ex[b * E + 1] = ex[b * E + 2];
    topk_case(s, B, I, 300, ex, E);
    topk_case(s, B, I, 10, NULL, 0);
    topk_case(s, B, I, I, ex, E);     /* all of them: places past the eligible are empty */
    topk_case(s, B, 10, 15, NULL, 0); /* K > I */
    free(s), free(ex);

    /* A long row: streamed through the block's buffer in several rounds. */
    const int64_t I2 = 50000;
    float *s2 = fvec((size_t)(2 * I2));
    int32_t *ex2 = ivec((size_t)(2 * 500));
    tu_fill_uniform(s2, (size_t)(2 * I2), seed, 82, -1, 1);
    for (int64_t j = 0; j < I2; j++)
        s2[I2 + j] = roundf(s2[I2 + j] * 64.0f) / 64.0f;
    tu_fill_int(ex2, 1000, seed, 83, 0, (int32_t)I2);
    topk_case(s2, 2, I2, 100, ex2, 500);
    topk_case(s2, 2, I2, 2048, NULL, 0); /* the largest K for rows this long */
    free(s2), free(ex2);
}

/* COPY of strided views (any strides, up to 4 dims) into contiguous tensors. */
static void copy_case(elastic_dtype dtype, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset)
{
    const uint64_t seed = tu_seed();
    const int64_t n_src = 2000;
    uint32_t *src = calloc((size_t)n_src, 4);
    assert_non_null(src);
    for (int64_t i = 0; i < n_src; i++)
        src[i] = (uint32_t)tu_hash(seed, 90, (uint64_t)i);
    dtensor ts = dt_new(dtype, 1, &n_src, 4, src);
    elastic_tensor_ref view = ts.ref;
    view.ndim = ndim;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        view.shape[i] = shape[i];
        view.strides[i] = strides[i];
        n *= shape[i];
    }
    view.offset += (size_t)offset * 4;
    dtensor o = dt_new(dtype, ndim, shape, 0, NULL);
    uint32_t *got = calloc((size_t)n, 4), *want = calloc((size_t)n, 4);
    assert_non_null(got);
    assert_non_null(want);
    int64_t sh[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0}, e = 0;
    for (int i = 0; i < ndim; i++)
        sh[4 - ndim + i] = shape[i], st[4 - ndim + i] = strides[i];
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++)
                for (int64_t d = 0; d < sh[3]; d++)
                    want[e++] = src[offset + a * st[0] + b * st[1] + c * st[2] + d * st[3]];
    elastic_node node = make_node(ELASTIC_OP_COPY, 1, 1, "copy");
    run(&node, &view, &o);
    dt_read(&o, got);
    assert_memory_equal(got, want, (size_t)n * 4);
    dt_free(&ts), dt_free(&o);
    free(src), free(got), free(want);
}

static void test_copy(void **state)
{
    (void)state;
    NEED_DEVICE();
    copy_case(ELASTIC_DTYPE_F32, 3, (int64_t[]){8, 6, 5}, (int64_t[]){1, 80, 2}, 3);
    copy_case(ELASTIC_DTYPE_I32, 2, (int64_t[]){7, 9}, (int64_t[]){1, 13}, 0);
    copy_case(ELASTIC_DTYPE_F32, 4, (int64_t[]){2, 3, 4, 5}, (int64_t[]){600, 1, 150, 3}, 11);
    copy_case(ELASTIC_DTYPE_F32, 1, (int64_t[]){100}, (int64_t[]){7}, 5);
    copy_case(ELASTIC_DTYPE_F32, 2, (int64_t[]){16, 64}, (int64_t[]){64, 1}, 64); /* a row slice */
}

/* Transfers larger than a staging buffer, at odd offsets, both ways. */
static void test_transfers(void **state)
{
    (void)state;
    NEED_DEVICE();
    const size_t n = (size_t)3 << 20; /* 12 MiB of floats: three staging chunks */
    float *a = fvec(n), *b = fvec(n);
    tu_fill_uniform(a, n, tu_seed(), 100, -1, 1);
    elastic_buffer *buf = NULL;
    check(cu->buffer_alloc(be, n * 4 + 8, &buf), "buffer_alloc");
    check(cu->upload(be, buf, 4, a, n * 4), "upload");
    check(cu->download(be, buf, 4, b, n * 4), "download");
    assert_memory_equal(a, b, n * 4);
    assert_int_equal(cu->upload(be, buf, 8, a, n * 4 + 1), ELASTIC_ERR_INTERNAL);
    assert_null(cu->buffer_host_ptr(buf));
    cu->buffer_free(be, buf);
    cu->buffer_free(be, NULL);
    free(a), free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_and_init),
        cmocka_unit_test(test_supports_model_graphs),
        cmocka_unit_test(test_transfers),
        cmocka_unit_test(test_gather),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_masked_mean),
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_probs),
        cmocka_unit_test(test_attention_mix),
        cmocka_unit_test(test_attention_two_step),
        cmocka_unit_test(test_pkm),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_copy),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
