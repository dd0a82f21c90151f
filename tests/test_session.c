/*
 * test_session.c - the public API end to end on the CPU backend:
 *   - misuse (NULL, bad sizes, ids out of range, empty history, unknown or
 *     missing backends) returns the right status and a message;
 *   - a ragged batch equals each user run alone (spec section 4);
 *   - only the most recent N items are read, but the whole history is left
 *     out of recommendations;
 *   - scores are hu . item_emb[v] (checked in double from the user vectors)
 *     and top-K follows the scores with the tie rule;
 *   - the fast kernels agree with the float64 reference on whole models, runs
 *     are deterministic and independent of the thread count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "elastic.h"
#include "test_util.h"

enum { I = 60, N = 12, D = 16 };

/* A random model whose weights are large enough that every layer matters. */
static elastic_model *make_model(elastic_model_kind kind, uint64_t seed)
{
    elastic_config c;
    elastic_config_default(&c);
    c.model = kind;
    c.num_items = I;
    c.max_len = N;
    c.hidden = D;
    c.heads = 2;
    c.experts = 4;
    c.mem_subkeys = 6;
    c.mem_topk = 3;
    elastic_model *m = NULL;
    assert_int_equal(elastic_model_init_random(&m, &c, seed), ELASTIC_OK);
    for (int p = 0; p < elastic_model_tensor_count(m); p++) {
        const char *name = elastic_model_tensor_name(m, p);
        if (strstr(name, "norm")) continue;
        const float *data;
        int64_t shape[4];
        int ndim;
        assert_int_equal(elastic_model_tensor(m, name, &data, shape, &ndim), ELASTIC_OK);
        int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
        float *w = malloc(sizeof *w * (size_t)n);
        tu_fill_uniform(w, (size_t)n, seed, 100 + (uint64_t)p, -0.6f, 0.6f);
        assert_int_equal(elastic_model_set_tensor(m, name, w, n), ELASTIC_OK);
        free(w);
    }
    return m;
}

static elastic_session *make_session(const elastic_model *m, int reference, int threads)
{
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.backend_options = reference ? "cpu.isa=reference" : NULL;
    o.num_threads = threads;
    elastic_session *s = NULL;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
    return s;
}

/* A ragged batch: lengths 1, 2, 5, N, N+7, 3N. */
#define B 6
static const int lens[B] = {1, 2, 5, N, N + 7, 3 * N};

static void make_batch(int32_t **items, int64_t *offsets, uint64_t seed)
{
    offsets[0] = 0;
    for (int b = 0; b < B; b++)
        offsets[b + 1] = offsets[b] + lens[b];
    *items = malloc(sizeof **items * (size_t)offsets[B]);
    tu_fill_int(*items, (size_t)offsets[B], seed, 7, 1, I);
}

static void test_misuse(void **state)
{
    (void)state;
    elastic_model *m = make_model(ELASTIC_MODEL_KIND_ELASTIC, 1);
    elastic_session *s = NULL;
    elastic_session_options o;
    elastic_session_options_default(&o);

    assert_int_equal(elastic_session_init(NULL, m, NULL), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_session_init(&s, NULL, NULL), ELASTIC_ERR_INVALID_ARG);
    o.backend = "tpu";
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_BACKEND);
    assert_non_null(strstr(elastic_last_error(), "tpu"));
    assert_null(s);
    o.backend = "cpu";
    o.device = 3;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_BACKEND);
    o.device = 0;
    o.num_threads = -1;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_INVALID_ARG);
    o.num_threads = 0;
    /* Backend options: unknown values and keys, malformed pairs, unknown
     * backends, a trailing comma, and a struct of another size. */
    static const char *const bad_options[] = {"cpu.isa=sse9", "cpu.colour=blue", "cpu.isa",
                                              "isa=avx2",     "gpu.isa=avx2",    "cpu.isa=generic,",
                                              "cpu.=1",       ".isa=1",          "cpu.isa="};
    for (size_t i = 0; i < sizeof bad_options / sizeof *bad_options; i++) {
        o.backend_options = bad_options[i];
        assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_INVALID_ARG);
        assert_null(s);
    }
    assert_non_null(strstr(elastic_last_error(), "cpu.isa="));
    o.backend_options = "cpu.colour=blue";
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "known: cpu.isa"));
    /* Another backend's keys are checked for form only; the last pair wins. */
    o.backend_options = "opencl.device=Nothing,cpu.isa=avx512,cpu.isa=generic";
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
    assert_non_null(strstr(elastic_session_backend(s), "generic"));
    elastic_session_free(s);
    s = NULL;
    o.backend_options = NULL;
    o.struct_size = sizeof o - 8;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "elastic_session_options_default"));
    o.struct_size = sizeof o;
    o.attention = 2;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "attention"));
    assert_null(s);

    s = make_session(m, 0, 0);
    int32_t items[4] = {1, 2, 3, 4};
    int64_t offs[3] = {0, 2, 4};
    float hu[2 * D], sc[2 * I];
    int32_t ids[2 * 5];
    float vals[2 * 5];
    assert_int_equal(elastic_session_user_vectors(s, items, offs, 2, hu), ELASTIC_OK);
    assert_int_equal(elastic_session_user_vectors(NULL, items, offs, 2, hu),
                     ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_session_user_vectors(s, NULL, offs, 2, hu), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_session_user_vectors(s, items, NULL, 2, hu), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_session_user_vectors(s, items, offs, 2, NULL),
                     ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_session_user_vectors(s, items, offs, 0, hu), ELASTIC_ERR_INVALID_ARG);
    int64_t bad0[3] = {1, 2, 4};
    assert_int_equal(elastic_session_user_vectors(s, items, bad0, 2, hu), ELASTIC_ERR_INVALID_ARG);
    int64_t decreasing[3] = {0, 3, 2};
    assert_int_equal(elastic_session_user_vectors(s, items, decreasing, 2, hu),
                     ELASTIC_ERR_INVALID_ARG);
    int64_t empty[3] = {0, 0, 4};
    assert_int_equal(elastic_session_scores(s, items, empty, 2, sc), ELASTIC_ERR_EMPTY_HISTORY);
    assert_non_null(strstr(elastic_last_error(), "user 0"));
    int32_t out_hi[4] = {1, 2, 3, I + 1}, out_lo[4] = {1, 0, 3, 4};
    assert_int_equal(elastic_session_scores(s, out_hi, offs, 2, sc), ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "user 1"));
    assert_int_equal(elastic_session_scores(s, out_lo, offs, 2, sc), ELASTIC_ERR_OUT_OF_RANGE);
    assert_int_equal(elastic_session_recommend(s, items, offs, 2, 0, 1, ids, vals),
                     ELASTIC_ERR_OUT_OF_RANGE);
    assert_int_equal(elastic_session_recommend(s, items, offs, 2, I + 1, 1, ids, vals),
                     ELASTIC_ERR_OUT_OF_RANGE);
    assert_int_equal(elastic_session_recommend(s, items, offs, 2, 5, 1, ids, NULL),
                     ELASTIC_ERR_INVALID_ARG);
    /* The session still works after every error. */
    assert_int_equal(elastic_session_recommend(s, items, offs, 2, 5, 1, ids, vals), ELASTIC_OK);
    assert_string_equal(elastic_last_error(), "");
    elastic_session_free(s);
    elastic_session_free(NULL);
    elastic_model_free(m);
}

static void test_missing_backends(void **state)
{
    (void)state;
    elastic_model *m = make_model(ELASTIC_MODEL_KIND_ELASTIC, 1);
    for (int i = 0; i < elastic_backend_count(); i++) {
        elastic_backend_info info;
        assert_int_equal(elastic_backend_get_info(i, &info), ELASTIC_OK);
        if (info.available) continue;
        /* A backend that is not compiled in or has no device: a clear error. */
        elastic_session_options o;
        elastic_session_options_default(&o);
        o.backend = info.name;
        elastic_session *s = NULL;
        assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_BACKEND);
        assert_true(strlen(elastic_last_error()) > 10);
        assert_null(s);
    }
    elastic_backend_info info;
    assert_int_equal(elastic_backend_get_info(99, &info), ELASTIC_ERR_INVALID_ARG);
    elastic_model_free(m);
}

/* OpenCL's backend options, where an OpenCL device exists: an unknown key,
 * a device name that matches nothing, and a device and cache chosen by name
 * (the cache directory gets the compiled program). */
static void test_opencl_options(void **state)
{
    (void)state;
    elastic_backend_info info = {0};
    for (int i = 0; i < elastic_backend_count(); i++) {
        assert_int_equal(elastic_backend_get_info(i, &info), ELASTIC_OK);
        if (!strcmp(info.name, "opencl")) break;
    }
    if (!info.available) {
        printf("# skipped: no OpenCL device (%s)\n", info.description);
        return;
    }
    elastic_model *m = make_model(ELASTIC_MODEL_KIND_ELASTIC, 1);
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "opencl";
    elastic_session *s = NULL;
    o.backend_options = "opencl.colour=blue";
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "opencl.device, opencl.cache_dir"));
    o.backend_options = "opencl.device=no such device anywhere";
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_ERR_BACKEND);
    assert_non_null(strstr(elastic_last_error(), "matches no device"));
    assert_null(s);
    char dir[] = "/tmp/elastic-test-cache-XXXXXX", opts[128];
    assert_non_null(mkdtemp(dir));
    snprintf(opts, sizeof opts, "opencl.device=0,opencl.cache_dir=%s,cpu.isa=reference", dir);
    o.backend_options = opts;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
    int32_t items[3] = {1, 2, 3};
    int64_t offsets[2] = {0, 3};
    float hu[D];
    assert_int_equal(elastic_session_user_vectors(s, items, offsets, 1, hu), ELASTIC_OK);
    elastic_session_free(s);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') {
            char path[512];
            snprintf(path, sizeof path, "%s/%.256s", dir, e->d_name);
            remove(path);
            files++;
        }
    closedir(d);
    rmdir(dir);
    assert_int_equal(files, 1); /* the program, cached where asked */
    elastic_model_free(m);
}

static void check_batch_equals_single(elastic_model_kind kind, int reference)
{
    elastic_model *m = make_model(kind, 11);
    elastic_session *s = make_session(m, reference, 0);
    int32_t *items;
    int64_t offsets[B + 1];
    make_batch(&items, offsets, tu_seed());
    float batch[B * D], one[D];
    assert_int_equal(elastic_session_user_vectors(s, items, offsets, B, batch), ELASTIC_OK);
    for (int b = 0; b < B; b++) {
        int64_t offs[2] = {0, lens[b]};
        assert_int_equal(elastic_session_user_vectors(s, items + offsets[b], offs, 1, one),
                         ELASTIC_OK);
        double err = tu_rel_l2(batch + b * D, one, D);
        if (err > 1e-6) fail_msg("user %d (length %d): batch vs alone rel err %g", b, lens[b], err);
    }
    free(items);
    elastic_session_free(s);
    elastic_model_free(m);
}

static void test_batch_equals_single(void **state)
{
    (void)state;
    for (int reference = 0; reference < 2; reference++) {
        check_batch_equals_single(ELASTIC_MODEL_KIND_ELASTIC, reference);
        check_batch_equals_single(ELASTIC_MODEL_KIND_SASREC, reference);
    }
}

static void test_reads_last_n_excludes_all(void **state)
{
    (void)state;
    elastic_model *m = make_model(ELASTIC_MODEL_KIND_ELASTIC, 5);
    elastic_session *s = make_session(m, 0, 0);
    /* A history of 3N items and its last N: same user vector. */
    int32_t h[3 * N];
    tu_fill_int(h, 3 * N, 5, 1, 1, I);
    int64_t full[2] = {0, 3 * N}, tail[2] = {0, N};
    float a[D], b[D];
    assert_int_equal(elastic_session_user_vectors(s, h, full, 1, a), ELASTIC_OK);
    assert_int_equal(elastic_session_user_vectors(s, h + 2 * N, tail, 1, b), ELASTIC_OK);
    assert_true(tu_rel_l2(a, b, D) < 1e-6);
    /* The recommendation leaves out all 3N items, not only the N read. */
    int32_t ids[I];
    float vals[I];
    assert_int_equal(elastic_session_recommend(s, h, full, 1, I, 1, ids, vals), ELASTIC_OK);
    int seen[I + 1] = {0};
    for (int i = 0; i < 3 * N; i++)
        seen[h[i]] = 1;
    int distinct = 0;
    for (int v = 1; v <= I; v++)
        distinct += seen[v];
    for (int r = 0; r < I; r++) {
        if (r < I - distinct) {
            assert_true(ids[r] >= 1 && ids[r] <= I);
            assert_false(seen[ids[r]]);
        } else {
            assert_int_equal(ids[r], 0); /* fewer than K items remain */
            assert_true(isinf(vals[r]) && vals[r] < 0);
        }
    }
    /* Without exclusion every item is ranked. */
    assert_int_equal(elastic_session_recommend(s, h, full, 1, I, 0, ids, vals), ELASTIC_OK);
    for (int r = 0; r < I; r++)
        assert_true(ids[r] >= 1);
    elastic_session_free(s);
    elastic_model_free(m);
}

static void test_scores_and_topk(void **state)
{
    (void)state;
    elastic_model *m = make_model(ELASTIC_MODEL_KIND_ELASTIC, 9);
    elastic_session *s = make_session(m, 0, 0);
    int32_t *items;
    int64_t offsets[B + 1];
    make_batch(&items, offsets, tu_seed() + 1);
    float hu[B * D], *sc = malloc(sizeof *sc * B * I);
    assert_int_equal(elastic_session_user_vectors(s, items, offsets, B, hu), ELASTIC_OK);
    assert_int_equal(elastic_session_scores(s, items, offsets, B, sc), ELASTIC_OK);
    const float *emb;
    assert_int_equal(elastic_model_tensor(m, "item_emb", &emb, NULL, NULL), ELASTIC_OK);
    /* Spec step 5 in double: score(v) = hu . item_emb[v]. */
    for (int b = 0; b < B; b++)
        for (int v = 1; v <= I; v++) {
            double want = 0, mag = 0;
            for (int j = 0; j < D; j++) {
                want += (double)hu[b * D + j] * emb[v * D + j];
                mag += fabs((double)hu[b * D + j] * emb[v * D + j]);
            }
            assert_true(fabs(sc[b * I + v - 1] - want) <= 1e-6 * mag + 1e-7);
        }
    enum { K = 7 };
    int32_t ids[B * K];
    float vals[B * K];
    assert_int_equal(elastic_session_recommend(s, items, offsets, B, K, 1, ids, vals), ELASTIC_OK);
    for (int b = 0; b < B; b++) {
        for (int r = 0; r < K; r++) {
            int id = ids[b * K + r];
            assert_true(id >= 1 && id <= I);
            assert_true(vals[b * K + r] == sc[b * I + id - 1]);
            for (int64_t i = offsets[b]; i < offsets[b + 1]; i++)
                assert_int_not_equal(id, items[i]);
            if (r > 0) assert_true(vals[b * K + r - 1] >= vals[b * K + r]);
        }
        /* Nothing left out of the list scores higher than its last entry. */
        for (int v = 1; v <= I; v++) {
            int listed = 0, in_history = 0;
            for (int r = 0; r < K; r++)
                listed |= ids[b * K + r] == v;
            for (int64_t i = offsets[b]; i < offsets[b + 1]; i++)
                in_history |= items[i] == v;
            if (!listed && !in_history) assert_true(sc[b * I + v - 1] <= vals[b * K + K - 1]);
        }
    }
    free(sc);
    free(items);
    elastic_session_free(s);
    elastic_model_free(m);
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    elastic_model_kind kinds[2] = {ELASTIC_MODEL_KIND_ELASTIC, ELASTIC_MODEL_KIND_SASREC};
    for (int k = 0; k < 2; k++) {
        elastic_model *m = make_model(kinds[k], 21 + (uint64_t)k);
        elastic_session *ref = make_session(m, 1, 0);
        int32_t *items;
        int64_t offsets[B + 1];
        make_batch(&items, offsets, tu_seed() + 2);
        float want[B * I], got[B * I], again[B * I];
        assert_int_equal(elastic_session_scores(ref, items, offsets, B, want), ELASTIC_OK);
        static const char *const isas[] = {"cpu.isa=best", "cpu.isa=generic", "cpu.isa=avx2",
                                           "cpu.isa=avx512"};
        for (int isa = 0; isa <= 3; isa++) {
            elastic_session_options o;
            elastic_session_options_default(&o);
            o.backend = "cpu";
            o.backend_options = isas[isa];
            elastic_session *s = NULL;
            if (elastic_session_init(&s, m, &o) != ELASTIC_OK) {
                printf("# %s not on this CPU: %s\n", isas[isa], elastic_last_error());
                continue;
            }
            assert_int_equal(elastic_session_scores(s, items, offsets, B, got), ELASTIC_OK);
            double err = tu_rel_l2(got, want, B * I);
            printf("# %s %s: scores rel L2 vs reference %.3g\n", k ? "sasrec" : "elastic",
                   elastic_session_backend(s), err);
            assert_true(err < 1e-5);
            /* Deterministic: the same inputs give the same bits. */
            assert_int_equal(elastic_session_scores(s, items, offsets, B, again), ELASTIC_OK);
            assert_memory_equal(got, again, sizeof got);
            elastic_session_free(s);
        }
        /* One thread and two threads give the same bits. */
        elastic_session *s1 = make_session(m, 0, 1), *s2 = make_session(m, 0, 2);
        assert_int_equal(elastic_session_scores(s1, items, offsets, B, got), ELASTIC_OK);
        assert_int_equal(elastic_session_scores(s2, items, offsets, B, again), ELASTIC_OK);
        assert_memory_equal(got, again, sizeof got);
        elastic_session_free(s1);
        elastic_session_free(s2);
        free(items);
        elastic_session_free(ref);
        elastic_model_free(m);
    }
}

/* Materialized attention (softmax weights held, two ops) gives the scores of
 * the streaming reference on a ragged batch, fast and reference kernels, and
 * each user of the batch the result it gets alone. */
static void test_materialized_attention(void **state)
{
    (void)state;
    elastic_model_kind kinds[2] = {ELASTIC_MODEL_KIND_ELASTIC, ELASTIC_MODEL_KIND_SASREC};
    for (int k = 0; k < 2; k++) {
        elastic_model *m = make_model(kinds[k], 31 + (uint64_t)k);
        elastic_session *ref = make_session(m, 1, 0);
        int32_t *items;
        int64_t offsets[B + 1];
        make_batch(&items, offsets, tu_seed() + 3);
        float want[B * I], got[B * I], one[I];
        assert_int_equal(elastic_session_scores(ref, items, offsets, B, want), ELASTIC_OK);
        for (int reference = 0; reference < 2; reference++) {
            elastic_session_options o;
            elastic_session_options_default(&o);
            o.backend = "cpu";
            o.backend_options = reference ? "cpu.isa=reference" : NULL;
            o.attention = ELASTIC_ATTENTION_MATERIALIZED;
            elastic_session *s = NULL;
            assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
            assert_int_equal(elastic_session_scores(s, items, offsets, B, got), ELASTIC_OK);
            double err = tu_rel_l2(got, want, B * I);
            printf("# %s materialized (%s): scores rel L2 vs streaming reference %.3g\n",
                   k ? "sasrec" : "elastic", reference ? "reference" : "fast", err);
            assert_true(err < (reference ? 1e-6 : 1e-5));
            for (int b = 0; b < B; b++) {
                int64_t offs[2] = {0, lens[b]};
                assert_int_equal(elastic_session_scores(s, items + offsets[b], offs, 1, one),
                                 ELASTIC_OK);
                assert_true(tu_rel_l2(got + b * I, one, I) < 1e-6);
            }
            elastic_session_free(s);
        }
        free(items);
        elastic_session_free(ref);
        elastic_model_free(m);
    }
}

static void test_plan_and_stats(void **state)
{
    (void)state;
    elastic_model *m = make_model(ELASTIC_MODEL_KIND_ELASTIC, 2);
    elastic_session *s = make_session(m, 0, 0);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    assert_int_equal(elastic_session_print_plan(s, 4, 50, 10, f), ELASTIC_OK);
    fclose(f);
    assert_non_null(strstr(text, "pkm"));
    assert_non_null(strstr(text, "topk"));
    assert_null(strstr(text, "fallback to cpu"));
    free(text);
    assert_int_equal(elastic_session_print_plan(s, 0, 50, 10, stdout), ELASTIC_ERR_INVALID_ARG);
    elastic_run_stats st;
    int32_t items[3] = {1, 2, 3};
    int64_t offs[2] = {0, 3};
    float hu[D];
    assert_int_equal(elastic_session_user_vectors(s, items, offs, 1, hu), ELASTIC_OK);
    assert_int_equal(elastic_session_last_stats(s, &st), ELASTIC_OK);
    assert_true(st.nodes > 20 && st.flops > 0 && st.arena_bytes > 0);
    assert_int_equal(st.fallback_nodes, 0);
    assert_true(st.arena_bytes < st.naive_bytes);
    elastic_session_free(s);
    elastic_model_free(m);
}

int main(void)
{
    tu_seed();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_missing_backends),
        cmocka_unit_test(test_opencl_options),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_reads_last_n_excludes_all),
        cmocka_unit_test(test_scores_and_topk),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_materialized_attention),
        cmocka_unit_test(test_plan_and_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
