/*
 * test_packed_weights.c - weights packed once per inference session
 * (backends/cpu/cpu_pack_cache.h):
 *   - kernel level, every fast CPU table: linear, score_topk, ffn,
 *     aggregate and dispatch with their weights packed by the table's pack()
 *     give the bits of the same entries packing per call, for odd sizes,
 *     several item blocks, every aggregate path (a user per thread, fewer
 *     users than threads, heads wider than the vector path) and 1 and 2
 *     threads;
 *   - session level: a session that packs (the default) and one that may not
 *     (cpu.pack_mb=0) recommend the same ids and scores, bitwise, and the
 *     first does compute from its packs (white box: weights changed behind
 *     the model's back reach only the second);
 *   - a model changed under a live session (elastic_model_set_tensor, a
 *     training step) is what the session computes next: bitwise a fresh
 *     session's result, not the packs of the old weights;
 *   - a malformed cpu.pack_mb is refused with ELASTIC_ERR_INVALID_ARG.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "elastic.h"
#include "elastic_train.h"
#include "test_util.h"

static float *rnd(size_t n, uint64_t stream, float lo, float hi)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    tu_fill_uniform(x, n, tu_seed(), stream, lo, hi);
    return x;
}

static float *pack(const elastic_cpu_kernels *k, const float *w, const float *bias, int64_t n,
                   int64_t kk)
{
    size_t bytes = (k->packed_floats(n, kk) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    k->pack(w, bias, p, n, kk);
    return p;
}

static void same_bits(const char *what, const elastic_cpu_kernels *k, int threads, const void *got,
                      const void *want, size_t bytes)
{
    if (memcmp(got, want, bytes) != 0)
        fail_msg("%s (%s, %d threads): the packed weights give other bits", what, k->isa, threads);
}

static void check_linear(const elastic_cpu_kernels *k, int64_t m, int64_t n, int64_t kk,
                         int with_bias, int threads)
{
    float *x = rnd((size_t)(m * kk), 1, -1, 1), *w = rnd((size_t)(n * kk), 2, -1, 1);
    float *b = with_bias ? rnd((size_t)n, 3, -1, 1) : NULL;
    float *want = malloc(sizeof(float) * (size_t)(m * n)),
          *got = malloc(sizeof(float) * (size_t)(m * n));
    float *wp = pack(k, w, b, n, kk);
    k->linear(x, w, b, want, m, n, kk, threads);
    memset(got, 0xff, sizeof(float) * (size_t)(m * n));
    k->linear_packed(x, wp, got, m, n, kk, threads);
    same_bits("linear", k, threads, got, want, sizeof(float) * (size_t)(m * n));
    free(x), free(w), free(b), free(want), free(got), free(wp);
}

static void check_score_topk(const elastic_cpu_kernels *k, int64_t batch, int64_t items, int64_t d,
                             int64_t top, int threads)
{
    float *user = rnd((size_t)(batch * d), 4, -1, 1), *it = rnd((size_t)(items * d), 5, -1, 1);
    int64_t ne = 7;
    int32_t *ex = malloc(sizeof(int32_t) * (size_t)(batch * ne));
    tu_fill_int(ex, (size_t)(batch * ne), tu_seed(), 6, 0, (int32_t)items);
    size_t out = (size_t)(batch * top);
    int32_t *ids_w = malloc(sizeof(int32_t) * out), *ids_g = malloc(sizeof(int32_t) * out);
    float *v_w = malloc(sizeof(float) * out), *v_g = malloc(sizeof(float) * out);
    float *ip = pack(k, it, NULL, items, d);
    for (int e = 0; e < 2; e++) {
        k->score_topk(user, it, e ? ex : NULL, e ? ne : 0, NULL, 0, ids_w, v_w, batch, items, d,
                      top, threads);
        memset(ids_g, 0xff, sizeof(int32_t) * out);
        memset(v_g, 0xff, sizeof(float) * out);
        k->score_topk_packed(user, it, ip, e ? ex : NULL, e ? ne : 0, NULL, 0, ids_g, v_g, batch,
                             items, d, top, threads);
        same_bits("score_topk ids", k, threads, ids_g, ids_w, sizeof(int32_t) * out);
        same_bits("score_topk scores", k, threads, v_g, v_w, sizeof(float) * out);
    }
    free(user), free(it), free(ex), free(ids_w), free(ids_g), free(v_w), free(v_g), free(ip);
}

static void check_ffn(const elastic_cpu_kernels *k, int64_t rows, int64_t d, int64_t f, int threads)
{
    float *z = rnd((size_t)(rows * d), 7, -2, 2), *lw = rnd((size_t)d, 8, 0.5f, 1.5f);
    float *lb = rnd((size_t)d, 9, -0.2f, 0.2f), *w1 = rnd((size_t)(f * d), 10, -0.3f, 0.3f);
    float *b1 = rnd((size_t)f, 11, -0.2f, 0.2f), *w2 = rnd((size_t)(d * f), 12, -0.3f, 0.3f);
    float *b2 = rnd((size_t)d, 13, -0.2f, 0.2f);
    size_t bytes = sizeof(float) * (size_t)(rows * d);
    float *want = malloc(bytes), *got = malloc(bytes);
    float *w1p = pack(k, w1, b1, f, d), *w2p = pack(k, w2, b2, d, f);
    assert_int_equal(k->ffn(z, lw, lb, w1, b1, w2, b2, want, rows, d, f, 1e-5f, threads), 0);
    memset(got, 0xff, bytes);
    assert_int_equal(k->ffn_packed(z, lw, lb, w1p, w2p, got, rows, d, f, 1e-5f, threads), 0);
    same_bits("ffn", k, threads, got, want, bytes);
    free(z), free(lw), free(lb), free(w1), free(b1), free(w2), free(b2), free(want), free(got);
    free(w1p), free(w2p);
}

/* aggregate and dispatch on the same random block */
static void check_attention_ops(const elastic_cpu_kernels *k, int64_t batch, int64_t m, int64_t n,
                                int64_t d, int heads, int threads)
{
    float *q = rnd((size_t)(batch * m * d), 14, -1, 1),
          *x = rnd((size_t)(batch * n * d), 15, -2, 2);
    float *lw = rnd((size_t)d, 16, 0.5f, 1.5f), *lb = rnd((size_t)d, 17, -0.2f, 0.2f);
    float *w[4], *b[4], *wp[4];
    for (int i = 0; i < 4; i++) {
        w[i] = rnd((size_t)(d * d), 20 + (uint64_t)i, -0.3f, 0.3f);
        b[i] = rnd((size_t)d, 30 + (uint64_t)i, -0.2f, 0.2f);
        wp[i] = pack(k, w[i], b[i], d, d);
    }
    int32_t *len = malloc(sizeof(int32_t) * (size_t)batch);
    for (int64_t u = 0; u < batch; u++)
        len[u] = (int32_t)(n - (u * 5) % n); /* full, and shorter */
    size_t ab = sizeof(float) * (size_t)(batch * m * d),
           db = sizeof(float) * (size_t)(batch * n * d);
    float *want = malloc(ab), *got = malloc(ab);
    assert_int_equal(k->aggregate(q, x, lw, lb, w[0], b[0], w[1], b[1], len, want, batch, m, n, d,
                                  heads, 1e-5f, threads),
                     0);
    memset(got, 0xff, ab);
    assert_int_equal(k->aggregate_packed(q, x, lw, lb, wp[0], wp[1], len, got, batch, m, n, d,
                                         heads, 1e-5f, threads),
                     0);
    same_bits("aggregate", k, threads, got, want, ab);
    /* dispatch: x [B, n, d] against keys and values [B, m, d] */
    float *kk = rnd((size_t)(batch * m * d), 40, -1, 1),
          *vv = rnd((size_t)(batch * m * d), 41, -1, 1);
    float *dwant = malloc(db), *dgot = malloc(db);
    assert_int_equal(k->dispatch(x, lw, lb, w[2], b[2], kk, vv, w[3], b[3], dwant, batch, n, m, d,
                                 heads, 1e-5f, threads),
                     0);
    memset(dgot, 0xff, db);
    assert_int_equal(k->dispatch_packed(x, lw, lb, wp[2], kk, vv, wp[3], dgot, batch, n, m, d,
                                        heads, 1e-5f, threads),
                     0);
    same_bits("dispatch", k, threads, dgot, dwant, db);
    for (int i = 0; i < 4; i++)
        free(w[i]), free(b[i]), free(wp[i]);
    free(q), free(x), free(lw), free(lb), free(len), free(want), free(got), free(kk), free(vv);
    free(dwant), free(dgot);
}

static void test_kernels_packed_equal_unpacked(void **state)
{
    (void)state;
    const elastic_cpu_kernels *tables[4];
    int ran = tu_fast_tables(tables);
    for (int t = 0; t < ran; t++) {
        const elastic_cpu_kernels *k = tables[t];
        assert_non_null(k->pack);
        for (int threads = 1; threads <= 2; threads++) {
            check_linear(k, 1, 37, 19, 1, threads);
            check_linear(k, 7, 37, 19, 0, threads);
            check_linear(k, 200, 70, 64, 1, threads);      /* several row tiles */
            check_score_topk(k, 1, 1300, 24, 10, threads); /* three item blocks */
            check_score_topk(k, 5, 517, 16, 20, threads);
            check_ffn(k, 1, 24, 40, threads);
            check_ffn(k, 150, 24, 40, threads);
            check_attention_ops(k, 3, 5, 70, 32, 2, threads); /* a user per thread */
            check_attention_ops(k, 1, 3, 90, 32, 4, threads); /* fewer users than threads */
            check_attention_ops(k, 2, 2, 6, 272, 1, threads); /* heads past the vector path */
        }
    }
    assert_true(ran >= 1);
    assert_null(elastic_cpu_kernels_reference.pack); /* the oracle packs nothing */
}

/* ------------------------------------------------------------ sessions */

#define USERS 4
static const int32_t hist_items[] = {3, 9, 1, 22, 5, 7, 30, 2, 11, 4, 4, 8, 19, 27, 33, 6, 1};
static const int64_t hist_offsets[USERS + 1] = {0, 5, 9, 10, 17};
#define TOP 5

typedef struct answer {
    int32_t ids[USERS * TOP];
    float scores[USERS * TOP];
    float vectors[USERS * 64];
} answer;

static elastic_session *session(elastic_model *m, const char *backend_options)
{
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = 2;
    o.backend_options = backend_options;
    elastic_session *s = NULL;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
    return s;
}

static void ask(elastic_session *s, answer *a)
{
    memset(a, 0, sizeof *a);
    assert_int_equal(
        elastic_session_recommend(s, hist_items, hist_offsets, USERS, TOP, 1, a->ids, a->scores),
        ELASTIC_OK);
    assert_int_equal(elastic_session_user_vectors(s, hist_items, hist_offsets, USERS, a->vectors),
                     ELASTIC_OK);
}

static void same_answer(const answer *got, const answer *want)
{
    assert_memory_equal(got->ids, want->ids, sizeof got->ids);
    assert_memory_equal(got->scores, want->scores, sizeof got->scores);
    assert_memory_equal(got->vectors, want->vectors, sizeof got->vectors);
}

/* Parameter i of m: its name and data; returns its element count. */
static int64_t param(const elastic_model *m, int i, const char **name, const float **data)
{
    int64_t shape[4], n = 1;
    int ndim;
    *name = elastic_model_tensor_name(m, i);
    assert_int_equal(elastic_model_tensor(m, *name, data, shape, &ndim), ELASTIC_OK);
    for (int j = 0; j < ndim; j++)
        n *= shape[j];
    return n;
}

/* The next answer of a live session, into *after, must be a fresh
 * session's on the model as it is now. */
static void expect_fresh(elastic_model *m, elastic_session *live, answer *after)
{
    answer fresh;
    ask(live, after);
    elastic_session *s = session(m, NULL);
    ask(s, &fresh);
    same_answer(after, &fresh);
    elastic_session_free(s);
}

static void test_session_packed_equals_unpacked(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", tu_seed());
    elastic_session *packed = session(m, NULL), *plain = session(m, "cpu.pack_mb=0");
    answer a, b, c;
    ask(packed, &a); /* packs made here */
    ask(packed, &c); /* and used here */
    ask(plain, &b);
    same_answer(&a, &b);
    same_answer(&c, &b);
    elastic_session_free(packed);
    elastic_session_free(plain);
    elastic_model_free(m);
}

/* White box: the packs are made and used. Every fc1 weight is changed in
 * place behind the model's back (no set_tensor, so no version bump: the API
 * forbids this). A session that packs keeps computing with the packs of the
 * old weights; one with cpu.pack_mb=0 reads the new ones. If sessions
 * silently stopped packing, the first answer would change too. */
static void test_sessions_use_their_packs(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", tu_seed());
    elastic_session *packed = session(m, NULL), *plain = session(m, "cpu.pack_mb=0");
    answer p0, p1, q0, q1;
    ask(packed, &p0);
    ask(plain, &q0);
    int changed = 0;
    for (int i = 0; i < elastic_model_tensor_count(m); i++) {
        const char *name;
        const float *data;
        int64_t n = param(m, i, &name, &data);
        size_t len = strlen(name);
        if (len < 10 || strcmp(name + len - 10, "fc1.weight")) continue;
        float *w = (float *)(uintptr_t)data; /* behind the model's back */
        for (int64_t j = 0; j < n; j++)
            w[j] = -2.0f * w[j];
        changed++;
    }
    assert_true(changed > 0);
    ask(packed, &p1);
    ask(plain, &q1);
    same_answer(&p1, &p0);
    assert_true(memcmp(q1.vectors, q0.vectors, sizeof q0.vectors) != 0);
    elastic_session_free(packed);
    elastic_session_free(plain);
    elastic_model_free(m);
}

/* Every parameter times 0.75: the next answer of a live session must be a
 * fresh session's, and differ from before. */
static void test_set_tensor_reaches_live_session(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", tu_seed());
    elastic_session *live = session(m, NULL);
    answer before, after;
    ask(live, &before);
    for (int i = 0; i < elastic_model_tensor_count(m); i++) {
        const char *name;
        const float *data;
        int64_t n = param(m, i, &name, &data);
        float *x = malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++)
            x[j] = 0.75f * data[j];
        assert_int_equal(elastic_model_set_tensor(m, name, x, n), ELASTIC_OK);
        free(x);
    }
    expect_fresh(m, live, &after);
    assert_true(memcmp(before.scores, after.scores, sizeof before.scores) != 0);
    elastic_session_free(live);
    elastic_model_free(m);
}

static void test_training_step_reaches_live_session(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", tu_seed());
    elastic_session *live = session(m, NULL);
    answer before, after;
    ask(live, &before);
    elastic_trainer *tr = tu_trainer(m, 0.0f, 1);
    assert_non_null(tr);
    tu_batch batch;
    tu_make_batch(&batch, tu_seed(), 0);
    double loss = 0;
    assert_int_equal(elastic_trainer_step(tr, batch.items, batch.offsets, batch.targets, 8, &loss),
                     ELASTIC_OK);
    expect_fresh(m, live, &after);
    assert_true(memcmp(before.vectors, after.vectors, sizeof before.vectors) != 0);
    elastic_trainer_free(tr);
    elastic_session_free(live);
    elastic_model_free(m);
}

static void test_bad_pack_mb(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", tu_seed());
    const char *bad[] = {"cpu.pack_mb=", "cpu.pack_mb=abc", "cpu.pack_mb=-1", "cpu.pack_mb=12x",
                         "cpu.pack_mb=99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        elastic_session_options o;
        elastic_session_options_default(&o);
        o.backend = "cpu";
        o.backend_options = bad[i];
        elastic_session *s = NULL;
        elastic_status st = elastic_session_init(&s, m, &o);
        if (st != ELASTIC_ERR_INVALID_ARG)
            fail_msg("%s: status %d, want ELASTIC_ERR_INVALID_ARG", bad[i], (int)st);
        assert_null(s);
        assert_non_null(strstr(elastic_last_error(), "pack_mb"));
    }
    elastic_model_free(m);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_packed_equal_unpacked),
        cmocka_unit_test(test_session_packed_equals_unpacked),
        cmocka_unit_test(test_sessions_use_their_packs),
        cmocka_unit_test(test_set_tensor_reaches_live_session),
        cmocka_unit_test(test_training_step_reaches_live_session),
        cmocka_unit_test(test_bad_pack_mb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
