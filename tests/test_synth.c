/*
 * test_synth.c - synthetic logs: determinism from the seed, lengths and ids
 * in range, option checks, a pairs round trip, and the planted structure: a
 * first-order oracle that learns successors from the training data beats the
 * popularity ranking by a wide margin, and loses most of that edge without
 * sequential patterns.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elastic.h"
#include "test_util.h"

static elastic_dataset *make(const elastic_synth_options *o)
{
    elastic_dataset *d = NULL;
    elastic_status st = elastic_dataset_synth(&d, o);
    if (st != ELASTIC_OK) fail_msg("synth: %s", elastic_last_error());
    return d;
}

static int same_log(const elastic_dataset *a, const elastic_dataset *b)
{
    if (elastic_dataset_num_users(a) != elastic_dataset_num_users(b) ||
        elastic_dataset_num_events(a) != elastic_dataset_num_events(b))
        return 0;
    for (int64_t u = 0; u < elastic_dataset_num_users(a); u++) {
        const int32_t *x, *y;
        int64_t n, m;
        assert_int_equal(elastic_dataset_user(a, u, &x, &n), ELASTIC_OK);
        assert_int_equal(elastic_dataset_user(b, u, &y, &m), ELASTIC_OK);
        if (n != m || memcmp(x, y, (size_t)n * sizeof *x)) return 0;
    }
    return 1;
}

static void test_determinism(void **state)
{
    (void)state;
    elastic_synth_options o;
    elastic_synth_options_default(&o);
    o.users = 300;
    elastic_dataset *a = make(&o), *b = make(&o);
    assert_true(same_log(a, b));
    o.seed = 2;
    elastic_dataset *c = make(&o);
    assert_false(same_log(a, c));
    elastic_dataset_free(a);
    elastic_dataset_free(b);
    elastic_dataset_free(c);
}

static void test_stats(void **state)
{
    (void)state;
    elastic_synth_options o;
    elastic_synth_options_default(&o);
    assert_int_equal(o.users, 2000);
    assert_int_equal(o.items, 1000);
    o.users = 500;
    o.items = 300;
    o.clusters = 7;
    o.min_len = 5;
    o.max_len = 40;
    elastic_dataset *d = make(&o);
    assert_int_equal(elastic_dataset_num_users(d), 500);
    assert_int_equal(elastic_dataset_num_items(d), 300);
    int64_t events = 0, min = 1 << 30, max = 0;
    char *seen = calloc(301, 1);
    assert_non_null(seen);
    for (int64_t u = 0; u < 500; u++) {
        const int32_t *x;
        int64_t n;
        assert_int_equal(elastic_dataset_user(d, u, &x, &n), ELASTIC_OK);
        min = n < min ? n : min;
        max = n > max ? n : max;
        events += n;
        memset(seen, 0, 301);
        for (int64_t i = 0; i < n; i++) {
            assert_in_range(x[i], 1, 300);
            assert_false(seen[x[i]]); /* no repeats while unseen items remain */
            seen[x[i]] = 1;
        }
    }
    free(seen);
    assert_int_equal(events, elastic_dataset_num_events(d));
    assert_in_range(min, 5, 40);
    assert_in_range(max, 5, 40);
    assert_true(max - min > 20); /* lengths spread over the range */
    assert_string_equal(elastic_dataset_item_name(d, 17), "17");
    assert_int_equal(elastic_dataset_item_id(d, "300"), 300);
    assert_string_equal(elastic_dataset_user_name(d, 0), "1");
    elastic_dataset_free(d);

    /* Lengths above the catalogue size must still terminate (repeats). */
    o.users = 3;
    o.items = 5;
    o.clusters = 2;
    o.min_len = o.max_len = 12;
    d = make(&o);
    assert_int_equal(elastic_dataset_num_events(d), 36);
    elastic_dataset_free(d);
}

static void test_bad_options(void **state)
{
    (void)state;
    elastic_synth_options o;
    elastic_dataset *d = (elastic_dataset *)&o;
    elastic_synth_options_default(&o);
    o.users = 0;
    assert_int_equal(elastic_dataset_synth(&d, &o), ELASTIC_ERR_INVALID_ARG);
    assert_null(d);
    elastic_synth_options_default(&o);
    o.clusters = 1001;
    assert_int_equal(elastic_dataset_synth(&d, &o), ELASTIC_ERR_INVALID_ARG);
    elastic_synth_options_default(&o);
    o.min_len = 50;
    o.max_len = 40;
    assert_int_equal(elastic_dataset_synth(&d, &o), ELASTIC_ERR_INVALID_ARG);
    elastic_synth_options_default(&o);
    o.p_sequential = 1.5;
    assert_int_equal(elastic_dataset_synth(&d, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "p_sequential"));
    elastic_synth_options_default(&o);
    o.items = 1;
    assert_int_equal(elastic_dataset_synth(&d, &o), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_dataset_synth(NULL, &o), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_dataset_synth(&d, NULL), ELASTIC_ERR_INVALID_ARG);
}

static void test_save_round_trip(void **state)
{
    (void)state;
    elastic_synth_options o;
    elastic_synth_options_default(&o);
    o.users = 100;
    elastic_dataset *a = make(&o);
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/elastic_synth_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/log.txt", dir);
    assert_int_equal(elastic_dataset_save_pairs(a, path), ELASTIC_OK);
    elastic_dataset *b;
    assert_int_equal(elastic_dataset_load(&b, path, ELASTIC_DATA_FORMAT_AUTO), ELASTIC_OK);
    assert_int_equal(elastic_dataset_num_users(b), 100);
    assert_int_equal(elastic_dataset_num_events(b), elastic_dataset_num_events(a));
    /* The loader numbers items by first appearance; names agree. */
    for (int64_t u = 0; u < 100; u++) {
        const int32_t *x, *y;
        int64_t n, m;
        elastic_dataset_user(a, u, &x, &n);
        elastic_dataset_user(b, u, &y, &m);
        assert_int_equal(n, m);
        assert_string_equal(elastic_dataset_user_name(a, u), elastic_dataset_user_name(b, u));
        for (int64_t i = 0; i < n; i++)
            assert_string_equal(elastic_dataset_item_name(a, x[i]),
                                elastic_dataset_item_name(b, y[i]));
    }
    /* Renumbering by the synthetic log's item map gives back its ids. */
    char *json;
    assert_int_equal(elastic_dataset_item_map_json(a, &json), ELASTIC_OK);
    assert_int_equal(elastic_dataset_apply_item_map(b, json), ELASTIC_OK);
    free(json);
    assert_true(same_log(a, b));
    unlink(path);
    rmdir(dir);
    assert_int_equal(elastic_dataset_save_pairs(a, "/nonexistent-dir/x.txt"), ELASTIC_ERR_IO);
    elastic_dataset_free(a);
    elastic_dataset_free(b);
}

/* HR@10 on the test split of a first-order oracle: the score of v is the
 * number of times v followed the user's last item in the training items of
 * all users (ties by popularity, then by smaller id), history left out. */
static double oracle_hr10(const elastic_dataset *d)
{
    int64_t I = elastic_dataset_num_items(d), U = elastic_dataset_num_users(d);
    int32_t *trans = calloc((size_t)((I + 1) * (I + 1)), sizeof *trans);
    int64_t *pop = calloc((size_t)I + 1, sizeof *pop);
    float *scores = malloc((size_t)I * sizeof *scores);
    assert_true(trans && pop && scores);
    int64_t max_pop = 0;
    for (int64_t u = 0; u < U; u++) {
        const int32_t *x;
        int64_t n;
        assert_int_equal(elastic_dataset_train_items(d, u, &x, &n), ELASTIC_OK);
        for (int64_t i = 0; i < n; i++) {
            if (i > 0) trans[x[i - 1] * (I + 1) + x[i]]++;
            pop[x[i]]++;
        }
    }
    for (int64_t v = 1; v <= I; v++)
        max_pop = pop[v] > max_pop ? pop[v] : max_pop;
    elastic_metrics m = {0};
    for (int64_t u = 0; u < U; u++) {
        const int32_t *h;
        int64_t len;
        int32_t target;
        if (elastic_dataset_split(d, u, ELASTIC_SPLIT_TEST, &h, &len, &target)) continue;
        int32_t last = h[len - 1];
        for (int64_t v = 1; v <= I; v++)
            scores[v - 1] = (float)trans[last * (I + 1) + v] + (float)pop[v] / (float)(max_pop + 1);
        elastic_metrics_add(&m, elastic_rank_of(scores, I, target, h, len));
    }
    elastic_metrics_finish(&m);
    free(trans);
    free(pop);
    free(scores);
    return m.hr10;
}

static void test_planted_structure(void **state)
{
    (void)state;
    elastic_synth_options o;
    elastic_synth_options_default(&o);
    elastic_dataset *d = make(&o);
    elastic_metrics pop;
    assert_int_equal(elastic_evaluate_popularity(d, ELASTIC_SPLIT_TEST, 0, &pop), ELASTIC_OK);
    double oracle = oracle_hr10(d);
    printf("synth default: popularity HR@10 %.4f, successor oracle HR@10 %.4f\n", pop.hr10, oracle);
    /* Popularity is better than chance (10/1000) ... */
    assert_true(pop.hr10 > 2 * 10.0 / 1000);
    /* ... and the planted successors are far better than popularity. */
    assert_true(oracle > 3 * pop.hr10);
    assert_true(oracle > pop.hr10 + 0.2);
    elastic_dataset_free(d);

    /* Without sequential patterns the oracle keeps only what the clusters
     * give (co-occurrence): most of its edge came from the successors. */
    o.p_sequential = 0.0;
    d = make(&o);
    assert_int_equal(elastic_evaluate_popularity(d, ELASTIC_SPLIT_TEST, 0, &pop), ELASTIC_OK);
    double oracle0 = oracle_hr10(d);
    printf("synth p_sequential=0: popularity HR@10 %.4f, successor oracle HR@10 %.4f\n", pop.hr10,
           oracle0);
    assert_true(oracle0 < oracle - 0.15);
    elastic_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),       cmocka_unit_test(test_stats),
        cmocka_unit_test(test_bad_options),       cmocka_unit_test(test_save_round_trip),
        cmocka_unit_test(test_planted_structure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
