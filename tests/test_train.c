/*
 * test_train.c - the trainer through the public API: it learns (a fixed
 * batch is fitted; a planted next-item rule is learned), Adam matches a hand
 * computation, steps are reproducible and independent of the thread count,
 * checkpoints resume exactly, dropout is on in steps and off in gradients,
 * a model trained on synthetic data beats popularity, and bad input gets a
 * status and a message. (CPU fallback of gradient ops: test_train_fallback.c.)
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "elastic.h"
#include "test_util.h"

static void test_learns_planted_rule(void **state)
{
    (void)state;
    const char *kinds[2] = {"elastic", "sasrec"};
    for (int k = 0; k < 2; k++) {
        elastic_model *m = tu_small_model(kinds[k], 7);
        elastic_trainer *tr = tu_trainer(m, 0.0f, 0);
        tu_batch b;
        double first = 0, loss = 0, late = 0;
        for (int s = 0; s < 400; s++) {
            tu_make_batch(&b, tu_seed(), s);
            assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, &loss),
                             ELASTIC_OK);
            if (s == 0) first = loss;
            if (s >= 380) late += loss / 20;
        }
        /* A fresh batch from the same rule: the rule was learned, not the batch. */
        tu_make_batch(&b, tu_seed() + 99, 0);
        double held = 0;
        assert_int_equal(
            elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &held, NULL),
            ELASTIC_OK);
        printf("%s: loss %.3f (step 1, log 40 = %.3f) -> %.3f (last 20 steps), held-out %.3f\n",
               kinds[k], first, log(40.0), late, held);
        assert_true(fabs(first - log(40.0)) < 0.5); /* near uniform at the start */
        assert_true(late < 0.5 * first);
        assert_true(held < 0.5 * first);
        assert_int_equal(elastic_trainer_steps(tr), 400);
        elastic_trainer_free(tr);
        elastic_model_free(m);
    }
}

/* Copies the model's parameters (the block, in tensor order). */
static float *params_of(const elastic_model *m)
{
    int64_t n = elastic_model_parameter_count(m), off = 0;
    float *p = malloc((size_t)n * sizeof *p);
    for (int i = 0; i < elastic_model_tensor_count(m); i++) {
        const float *d;
        int64_t shape[4], k = 1;
        int nd;
        elastic_model_tensor(m, elastic_model_tensor_name(m, i), &d, shape, &nd);
        for (int j = 0; j < nd; j++)
            k *= shape[j];
        memcpy(p + off, d, (size_t)k * sizeof(float));
        off += k;
    }
    return p;
}

/* One step from zero moments: every parameter with a gradient g moves by
 * lr * g / (|g| + eps) (Adam's first step, bias-corrected). */
static void test_adam_first_step(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", 3);
    elastic_trainer *tr = tu_trainer(m, 0.0f, 0);
    tu_batch b;
    tu_make_batch(&b, tu_seed(), 0);
    int64_t n = elastic_model_parameter_count(m);
    float *g = malloc((size_t)n * sizeof *g);
    double loss;
    assert_int_equal(elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &loss, g),
                     ELASTIC_OK);
    float *before = params_of(m);
    assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, NULL), ELASTIC_OK);
    float *after = params_of(m);
    int64_t moved = 0;
    for (int64_t j = 0; j < n; j++) {
        double gj = g[j], want = before[j] - 3e-3 * gj / (fabs(gj) + 1e-8);
        assert_true(fabs(after[j] - want) <= 1e-6 + 1e-6 * fabs(want));
        moved += gj != 0;
    }
    assert_true(moved > n / 4);
    free(g);
    free(before);
    free(after);
    elastic_trainer_free(tr);
    elastic_model_free(m);
}

static float *train_steps(int threads, int steps, float dropout)
{
    elastic_model *m = tu_small_model("elastic", 5);
    elastic_trainer *tr = tu_trainer(m, dropout, threads);
    tu_batch b;
    for (int s = 0; s < steps; s++) {
        tu_make_batch(&b, tu_seed(), s);
        assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, NULL),
                         ELASTIC_OK);
    }
    float *p = params_of(m);
    elastic_trainer_free(tr);
    elastic_model_free(m);
    return p;
}

static void test_reproducible_and_thread_independent(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", 5);
    int64_t n = elastic_model_parameter_count(m);
    elastic_model_free(m);
    float *a = train_steps(1, 5, 0.2f), *b = train_steps(2, 5, 0.2f), *c = train_steps(1, 5, 0.0f);
    assert_memory_equal(a, b, (size_t)n * sizeof(float));
    assert_true(memcmp(a, c, (size_t)n * sizeof(float)) != 0); /* dropout acted */
    free(a);
    free(b);
    free(c);
}

static void test_dropout_only_in_steps(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", 9);
    elastic_trainer *tr = tu_trainer(m, 0.5f, 0);
    tu_batch b;
    tu_make_batch(&b, tu_seed(), 0);
    int64_t n = elastic_model_parameter_count(m);
    float *g1 = malloc((size_t)n * sizeof *g1), *g2 = malloc((size_t)n * sizeof *g2);
    double l1, l2;
    assert_int_equal(elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &l1, g1),
                     ELASTIC_OK);
    assert_int_equal(elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &l2, g2),
                     ELASTIC_OK);
    assert_true(l1 == l2);
    assert_memory_equal(g1, g2, (size_t)n * sizeof(float));
    /* Two training steps with p = 0.5 see different masks: their losses on
     * the same batch differ (before any update the weights are the same). */
    elastic_model *m2 = tu_small_model("elastic", 9);
    elastic_trainer *t2 = tu_trainer(m2, 0.5f, 0);
    double s1, s2;
    assert_int_equal(elastic_trainer_step(t2, b.items, b.offsets, b.targets, 8, &s1), ELASTIC_OK);
    assert_true(s1 != l1);
    assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, &s2), ELASTIC_OK);
    assert_true(s1 == s2); /* same seed, same step: same mask */
    free(g1);
    free(g2);
    elastic_trainer_free(t2);
    elastic_model_free(m2);
    elastic_trainer_free(tr);
    elastic_model_free(m);
}

static void test_checkpoint_resume(void **state)
{
    (void)state;
    char dir[] = "/tmp/elastic_train_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char model_path[256], state_path[256];
    snprintf(model_path, sizeof model_path, "%s/m.safetensors", dir);
    snprintf(state_path, sizeof state_path, "%s/m.state", dir);

    float *straight = train_steps(0, 6, 0.2f);
    /* 3 steps, checkpoint, a new process's worth of objects, 3 more. */
    elastic_model *m = tu_small_model("elastic", 5);
    elastic_trainer *tr = tu_trainer(m, 0.2f, 0);
    tu_batch b;
    for (int s = 0; s < 3; s++) {
        tu_make_batch(&b, tu_seed(), s);
        assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, NULL),
                         ELASTIC_OK);
    }
    assert_int_equal(elastic_model_save(m, model_path), ELASTIC_OK);
    assert_int_equal(elastic_trainer_save_state(tr, state_path), ELASTIC_OK);
    elastic_trainer_free(tr);
    elastic_model_free(m);

    m = NULL;
    assert_int_equal(elastic_model_load(&m, model_path), ELASTIC_OK);
    tr = tu_trainer(m, 0.2f, 0);
    assert_int_equal(elastic_trainer_load_state(tr, state_path), ELASTIC_OK);
    assert_int_equal(elastic_trainer_steps(tr), 3);
    for (int s = 3; s < 6; s++) {
        tu_make_batch(&b, tu_seed(), s);
        assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, NULL),
                         ELASTIC_OK);
    }
    float *resumed = params_of(m);
    assert_memory_equal(straight, resumed,
                        (size_t)elastic_model_parameter_count(m) * sizeof(float));
    /* A state file of another model is refused. */
    elastic_model *other = tu_small_model("sasrec", 5);
    elastic_trainer *t2 = tu_trainer(other, 0.2f, 0);
    assert_int_equal(elastic_trainer_load_state(t2, state_path), ELASTIC_ERR_FORMAT);
    assert_non_null(strstr(elastic_last_error(), "does not match"));
    assert_int_equal(elastic_trainer_load_state(t2, model_path), ELASTIC_ERR_FORMAT);
    assert_int_equal(elastic_trainer_load_state(t2, "/nonexistent/x"), ELASTIC_ERR_IO);
    elastic_trainer_free(t2);
    elastic_model_free(other);
    free(straight);
    free(resumed);
    elastic_trainer_free(tr);
    elastic_model_free(m);
    remove(model_path);
    remove(state_path);
    rmdir(dir);
}

static void test_bad_input(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", 1);
    elastic_trainer *tr = NULL;
    elastic_train_options o;
    elastic_train_options_default(&o);
    assert_int_equal(elastic_trainer_init(NULL, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_trainer_init(&tr, NULL, &o), ELASTIC_ERR_INVALID_ARG);
    o.lr = -1;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    elastic_train_options_default(&o);
    o.dropout = 1.0f;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "dropout"));
    elastic_train_options_default(&o);
    o.session.backend = "nope";
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_BACKEND);
    assert_null(tr);
    /* Structs of another layout, and bad backend options, are refused. */
    elastic_train_options_default(&o);
    o.struct_size = sizeof o + 8;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "elastic_train_options_default"));
    elastic_train_options_default(&o);
    o.session.struct_size = 4;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    elastic_train_options_default(&o);
    o.session.backend_options = "cpu.isa=sse9";
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_null(tr);

    tr = tu_trainer(m, 0.0f, 0);
    int32_t items[3] = {1, 2, 3}, targets[2] = {4, 5};
    int64_t offsets[3] = {0, 2, 3};
    double loss;
    assert_int_equal(elastic_trainer_step(tr, items, offsets, targets, 2, &loss), ELASTIC_OK);
    targets[1] = 41;
    assert_int_equal(elastic_trainer_step(tr, items, offsets, targets, 2, &loss),
                     ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "target 41"));
    targets[1] = 0;
    assert_int_equal(elastic_trainer_gradient(tr, items, offsets, targets, 2, &loss, NULL),
                     ELASTIC_ERR_OUT_OF_RANGE);
    targets[1] = 5;
    items[0] = 99;
    assert_int_equal(elastic_trainer_step(tr, items, offsets, targets, 2, &loss),
                     ELASTIC_ERR_OUT_OF_RANGE);
    items[0] = 1;
    int64_t empty[3] = {0, 0, 3};
    assert_int_equal(elastic_trainer_step(tr, items, empty, targets, 2, &loss),
                     ELASTIC_ERR_EMPTY_HISTORY);
    assert_int_equal(elastic_trainer_step(tr, items, offsets, NULL, 2, &loss),
                     ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_trainer_step(tr, items, offsets, targets, 0, &loss),
                     ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_trainer_steps(tr), 1); /* failed steps change nothing */
    elastic_trainer_free(tr);
    elastic_trainer_free(NULL);
    elastic_model_free(m);
}

/* On a synthetic log with planted clusters and successors, a few epochs of
 * training must beat the popularity ranking by a wide margin (test split,
 * full ranking, history left out). */
static void test_beats_popularity_on_synth(void **state)
{
    (void)state;
    elastic_synth_options so;
    elastic_synth_options_default(&so);
    so.users = 400;
    so.items = 200;
    so.clusters = 8;
    so.min_len = 10;
    so.max_len = 40;
    so.seed = tu_seed();
    elastic_dataset *ds = NULL;
    assert_int_equal(elastic_dataset_synth(&ds, &so), ELASTIC_OK);
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = elastic_dataset_num_items(ds);
    c.max_len = 50;
    c.hidden = 32;
    c.experts = 8;
    c.mem_subkeys = 16;
    c.mem_topk = 4;
    assert_int_equal(elastic_config_validate(&c), ELASTIC_OK);
    elastic_model *m = NULL;
    assert_int_equal(elastic_model_init_random(&m, &c, 1), ELASTIC_OK);
    elastic_train_options o;
    elastic_train_options_default(&o);
    o.batch_size = 64;
    elastic_trainer *tr = NULL;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_OK);
    elastic_train_progress p;
    for (int e = 0; e < 6; e++) {
        assert_int_equal(elastic_trainer_epoch(tr, ds, NULL, NULL, &p), ELASTIC_OK);
        printf("epoch %d: loss %.3f, %lld examples\n", e + 1, p.loss, (long long)p.examples);
    }
    assert_int_equal(elastic_trainer_epochs(tr), 6);
    elastic_session *s = NULL;
    assert_int_equal(elastic_session_init(&s, m, NULL), ELASTIC_OK);
    elastic_metrics model, pop;
    assert_int_equal(elastic_evaluate(s, ds, ELASTIC_SPLIT_TEST, 0, &model), ELASTIC_OK);
    assert_int_equal(elastic_evaluate_popularity(ds, ELASTIC_SPLIT_TEST, 0, &pop), ELASTIC_OK);
    printf("test HR@10: model %.3f, popularity %.3f; NDCG@10 %.3f vs %.3f (%lld users)\n",
           model.hr10, pop.hr10, model.ndcg10, pop.ndcg10, (long long)model.users);
    assert_true(model.users == 400 && pop.users == 400);
    assert_true(model.hr10 > 2.0 * pop.hr10 && model.hr10 > pop.hr10 + 0.1);
    assert_true(model.ndcg10 > 2.0 * pop.ndcg10);
    /* An epoch over data with more items than the model is refused. */
    elastic_dataset *big = NULL;
    so.items = 300;
    assert_int_equal(elastic_dataset_synth(&big, &so), ELASTIC_OK);
    assert_int_equal(elastic_trainer_epoch(tr, big, NULL, NULL, &p), ELASTIC_ERR_OUT_OF_RANGE);
    elastic_dataset_free(big);
    elastic_session_free(s);
    elastic_trainer_free(tr);
    elastic_model_free(m);
    elastic_dataset_free(ds);
}

int main(void)
{
    printf("seed %llu\n", (unsigned long long)tu_seed());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_learns_planted_rule),
        cmocka_unit_test(test_adam_first_step),
        cmocka_unit_test(test_reproducible_and_thread_independent),
        cmocka_unit_test(test_dropout_only_in_steps),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_beats_popularity_on_synth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
