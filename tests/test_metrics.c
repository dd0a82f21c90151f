/*
 * test_metrics.c - elastic_rank_of (ties by smaller id, exclusion, NaN last),
 * HR/NDCG/MRR on hand-computed ranks, the popularity ranking on a hand-built
 * log, and elastic_evaluate against ranks computed here from the session's
 * scores.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elastic.h"
#include "test_util.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/elastic_metrics_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Writes `text` to a file in tmpdir and loads it as pairs. */
static elastic_dataset *load_text(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    elastic_dataset *d = NULL;
    elastic_status st = elastic_dataset_load(&d, path, ELASTIC_DATA_FORMAT_PAIRS);
    if (st != ELASTIC_OK) fail_msg("load: %s", elastic_last_error());
    unlink(path);
    return d;
}

static void test_rank_ties_and_exclusion(void **state)
{
    (void)state;
    /* Order: 2 (0.9), 5 (0.9), 1 (0.5), 3 (0.5), 4 (0.1). */
    const float s[5] = {0.5f, 0.9f, 0.5f, 0.1f, 0.9f};
    assert_int_equal(elastic_rank_of(s, 5, 2, NULL, 0), 1);
    assert_int_equal(elastic_rank_of(s, 5, 5, NULL, 0), 2);
    assert_int_equal(elastic_rank_of(s, 5, 1, NULL, 0), 3);
    assert_int_equal(elastic_rank_of(s, 5, 3, NULL, 0), 4);
    assert_int_equal(elastic_rank_of(s, 5, 4, NULL, 0), 5);
    const int32_t ex1[] = {2};
    assert_int_equal(elastic_rank_of(s, 5, 5, ex1, 1), 1);
    /* Duplicates, ids outside 1..I and the target itself are ignored. */
    const int32_t ex2[] = {2, 2, 5, 9, 0, -1, 5};
    assert_int_equal(elastic_rank_of(s, 5, 5, ex2, 7), 1);
    const int32_t ex3[] = {1, 2, 1};
    assert_int_equal(elastic_rank_of(s, 5, 3, ex3, 3), 2);
    const int32_t ex4[] = {4, 4};
    assert_int_equal(elastic_rank_of(s, 5, 4, ex4, 2), 5);
    /* Bad arguments give 0. */
    assert_int_equal(elastic_rank_of(s, 5, 0, NULL, 0), 0);
    assert_int_equal(elastic_rank_of(s, 5, 6, NULL, 0), 0);
    assert_int_equal(elastic_rank_of(NULL, 5, 1, NULL, 0), 0);
}

static void test_rank_nan(void **state)
{
    (void)state;
    /* Order: 2 (1), 5 (0), 4 (-inf), 1 (NaN), 3 (NaN). */
    const float s[5] = {NAN, 1.0f, NAN, -INFINITY, 0.0f};
    assert_int_equal(elastic_rank_of(s, 5, 2, NULL, 0), 1);
    assert_int_equal(elastic_rank_of(s, 5, 4, NULL, 0), 3);
    assert_int_equal(elastic_rank_of(s, 5, 1, NULL, 0), 4);
    assert_int_equal(elastic_rank_of(s, 5, 3, NULL, 0), 5);
    const int32_t ex[] = {1};
    assert_int_equal(elastic_rank_of(s, 5, 3, ex, 1), 4);
    const int32_t ex2[] = {3, 2};
    assert_int_equal(elastic_rank_of(s, 5, 1, ex2, 2), 3);
}

/* The rank by sorting, for random scores with many ties and long exclusion
 * lists (the marked path) against short ones (the scanning path). */
static void test_rank_random(void **state)
{
    (void)state;
    uint64_t seed = tu_seed();
    enum { I = 300 };
    float s[I];
    int32_t ex[200];
    for (int trial = 0; trial < 50; trial++) {
        for (int v = 0; v < I; v++)
            s[v] = (float)(tu_hash(seed, 1, (uint64_t)(trial * I + v)) % 20);
        if (trial % 5 == 0) s[trial] = NAN;
        int n_ex = trial % 2 ? 150 : 10;
        for (int e = 0; e < n_ex; e++)
            ex[e] = (int32_t)(tu_hash(seed, 2, (uint64_t)(trial * 200 + e)) % I) + 1;
        int32_t target = (int32_t)(tu_hash(seed, 3, (uint64_t)trial) % I) + 1;
        char excluded[I + 1] = {0};
        for (int e = 0; e < n_ex; e++)
            excluded[ex[e]] = 1;
        excluded[target] = 0;
        int64_t want = 1;
        float st = s[target - 1];
        for (int v = 1; v <= I; v++) {
            if (excluded[v] || v == target) continue;
            float sv = s[v - 1];
            int above = isnan(st) ? (!isnan(sv) || v < target)
                                  : (!isnan(sv) && (sv > st || (sv == st && v < target)));
            want += above;
        }
        assert_int_equal(elastic_rank_of(s, I, target, ex, n_ex), want);
    }
}

static void test_metric_values(void **state)
{
    (void)state;
    elastic_metrics m = {0};
    const int64_t ranks[] = {1, 3, 10, 11, 50, 51, 0};
    for (int i = 0; i < 7; i++)
        elastic_metrics_add(&m, ranks[i]);
    elastic_metrics_finish(&m);
    assert_int_equal(m.users, 7);
    assert_float_equal(m.hr10, 3.0 / 7, 1e-12);
    assert_float_equal(m.hr50, 5.0 / 7, 1e-12);
    double n10 = 1.0 + 1.0 / 2.0 + 1.0 / log2(11.0);
    assert_float_equal(m.ndcg10, n10 / 7, 1e-12);
    assert_float_equal(m.ndcg50, (n10 + 1.0 / log2(12.0) + 1.0 / log2(51.0)) / 7, 1e-12);
    assert_float_equal(m.mrr, (1.0 + 1.0 / 3 + 0.1 + 1.0 / 11 + 0.02 + 1.0 / 51) / 7, 1e-12);
    elastic_metrics z = {0};
    elastic_metrics_finish(&z); /* no users: stays zero */
    assert_int_equal(z.users, 0);
    assert_true(z.hr10 == 0.0);
}

/* Items are named by their first appearance, so names equal ids here. */
static const char *pop_log = "A 1\nA 2\nA 3\nA 4\n"
                             "B 2\nB 3\nB 1\n"
                             "C 3\nC 5\n"
                             "D 2\nD 4\nD 5\nD 1\nD 3\n";

static void test_popularity(void **state)
{
    (void)state;
    elastic_dataset *d = load_text("pop.txt", pop_log);
    assert_int_equal(elastic_dataset_num_items(d), 5);
    assert_string_equal(elastic_dataset_item_name(d, 5), "5");
    elastic_metrics m;
    /* Validation counts: 1:1 2:3 3:1 4:1 5:2 -> order 2 5 1 3 4. Targets: A 3
     * (history 1 2) rank 2; B 3 (history 2) rank 3; D 1 (history 2 4 5) rank 1. */
    assert_int_equal(elastic_evaluate_popularity(d, ELASTIC_SPLIT_VALID, 0, &m), ELASTIC_OK);
    assert_int_equal(m.users, 3);
    assert_float_equal(m.hr10, 1.0, 1e-12);
    assert_float_equal(m.mrr, (0.5 + 1.0 / 3 + 1.0) / 3, 1e-12);
    assert_float_equal(m.ndcg10, (1.0 / log2(3.0) + 0.5 + 1.0) / 3, 1e-12);
    /* Test counts: 1:2 2:3 3:3 4:1 5:2 -> order 2 3 1 5 4. Targets: A 4
     * (history 1 2 3) rank 2; B 1 rank 1; D 3 rank 1. */
    assert_int_equal(elastic_evaluate_popularity(d, ELASTIC_SPLIT_TEST, 0, &m), ELASTIC_OK);
    assert_int_equal(m.users, 3);
    assert_float_equal(m.mrr, (0.5 + 1.0 + 1.0) / 3, 1e-12);
    /* max_users: the first users with the split. */
    assert_int_equal(elastic_evaluate_popularity(d, ELASTIC_SPLIT_TEST, 2, &m), ELASTIC_OK);
    assert_int_equal(m.users, 2);
    assert_float_equal(m.mrr, (0.5 + 1.0) / 2, 1e-12);
    assert_int_equal(elastic_evaluate_popularity(d, (elastic_split)7, 0, &m),
                     ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_evaluate_popularity(NULL, ELASTIC_SPLIT_TEST, 0, &m),
                     ELASTIC_ERR_INVALID_ARG);
    elastic_dataset_free(d);
}

static elastic_model *small_model(int64_t num_items)
{
    elastic_config c;
    elastic_config_default(&c);
    char items[32];
    snprintf(items, sizeof items, "%lld", (long long)num_items);
    const char *kv[][2] = {{"num_items", items}, {"max_len", "3"},     {"hidden", "8"},
                           {"heads", "2"},       {"layers", "1"},      {"experts", "2"},
                           {"ffn", "16"},        {"mem_subkeys", "4"}, {"mem_key", "4"},
                           {"mem_topk", "2"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        assert_int_equal(elastic_config_set(&c, kv[i][0], kv[i][1]), ELASTIC_OK);
    elastic_model *m;
    assert_int_equal(elastic_model_init_random(&m, &c, 7), ELASTIC_OK);
    return m;
}

/* elastic_evaluate against ranks computed here from elastic_session_scores
 * on each user's history (the whole history excluded from the ranking). */
static void test_evaluate_model(void **state)
{
    (void)state;
    elastic_dataset *d = load_text("eval.txt", pop_log);
    elastic_model *model = small_model(6); /* one item more than the data */
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    elastic_session *s;
    assert_int_equal(elastic_session_init(&s, model, &o), ELASTIC_OK);
    for (int split = 0; split < 2; split++) {
        elastic_metrics want = {0}, got;
        for (int64_t u = 0; u < elastic_dataset_num_users(d); u++) {
            const int32_t *h;
            int64_t len;
            int32_t target;
            if (elastic_dataset_split(d, u, (elastic_split)split, &h, &len, &target) != ELASTIC_OK)
                continue;
            int64_t off[2] = {0, len};
            float scores[6];
            assert_int_equal(elastic_session_scores(s, h, off, 1, scores), ELASTIC_OK);
            elastic_metrics_add(&want, elastic_rank_of(scores, 6, target, h, len));
        }
        elastic_metrics_finish(&want);
        assert_int_equal(elastic_evaluate(s, d, (elastic_split)split, 0, &got), ELASTIC_OK);
        assert_int_equal(got.users, want.users);
        assert_float_equal(got.hr10, want.hr10, 1e-12);
        assert_float_equal(got.ndcg10, want.ndcg10, 1e-12);
        assert_float_equal(got.mrr, want.mrr, 1e-12);
        assert_float_equal(got.ndcg50, want.ndcg50, 1e-12);
    }
    elastic_metrics m;
    assert_int_equal(elastic_evaluate(s, d, ELASTIC_SPLIT_TEST, 1, &m), ELASTIC_OK);
    assert_int_equal(m.users, 1);
    assert_int_equal(elastic_evaluate(NULL, d, ELASTIC_SPLIT_TEST, 0, &m), ELASTIC_ERR_INVALID_ARG);
    elastic_session_free(s);
    elastic_model_free(model);

    /* A model with fewer items than the data. */
    model = small_model(4);
    assert_int_equal(elastic_session_init(&s, model, &o), ELASTIC_OK);
    assert_int_equal(elastic_evaluate(s, d, ELASTIC_SPLIT_TEST, 0, &m), ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "5 items"));
    elastic_session_free(s);
    elastic_model_free(model);
    elastic_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_ties_and_exclusion),
        cmocka_unit_test(test_rank_nan),
        cmocka_unit_test(test_rank_random),
        cmocka_unit_test(test_metric_values),
        cmocka_unit_test(test_popularity),
        cmocka_unit_test(test_evaluate_model),
    };
    /* The directory must be empty at the end: a test that leaves a file
     * fails the run (cmocka 1.1 reports a failed group teardown but does not
     * count it). */
    int failed = cmocka_run_group_tests(tests, setup_dir, NULL);
    return failed + tu_remove_empty_dir(tmpdir);
}
