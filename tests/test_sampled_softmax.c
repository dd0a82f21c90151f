/*
 * test_sampled_softmax.c - the sampled softmax of spec section 5 (trainer
 * options negatives and sampler): its loss is the log-Q corrected softmax
 * over the step's classes, recomputed here in double from the session's user
 * vectors and the class probabilities derived by hand; with negatives that
 * cover the catalogue it gives the full softmax's loss and gradient; only the
 * classes' embeddings get a gradient; it is reproducible whatever the thread
 * count; it learns a synthetic log; bad options are refused.
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

enum { ITEMS = 40 };

static elastic_trainer *sampled_trainer(elastic_model *m, elastic_objective objective,
                                        int negatives, elastic_sampler sampler, int threads)
{
    elastic_train_options o;
    elastic_train_options_default(&o);
    o.dropout = 0.0f;
    o.objective = objective;
    o.negatives = negatives;
    o.sampler = sampler;
    o.session.num_threads = threads;
    elastic_trainer *tr = NULL;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_OK);
    return tr;
}

/* Offset of item_emb in the flat parameter layout, and the hidden size. */
static int64_t item_emb_offset(const elastic_model *m)
{
    int64_t off = 0;
    for (int i = 0; i < elastic_model_tensor_count(m); i++) {
        const char *name = elastic_model_tensor_name(m, i);
        const float *d;
        int64_t shape[4];
        int nd;
        assert_int_equal(elastic_model_tensor(m, name, &d, shape, &nd), ELASTIC_OK);
        if (!strcmp(name, "item_emb")) return off;
        int64_t n = 1;
        for (int k = 0; k < nd; k++)
            n *= shape[k];
        off += n;
    }
    fail_msg("no item_emb");
    return -1;
}

static double grad_row_norm(const float *grad, int64_t off, int64_t d, int64_t item)
{
    double s = 0;
    for (int64_t j = 0; j < d; j++)
        s += fabs((double)grad[off + item * d + j]);
    return s;
}

/* The popularity sampler by hand: counts v*v (v = 1..I), weights count + 1,
 * S = 6 draws. The step's classes are the items whose embedding got a
 * gradient; the loss must be the mean over the batch of
 * logsumexp_c(hu . e_c - log p_c) - (hu . e_t - log p_t), with
 * p_c = 1 - (1 - q_c)^S and q_c = (count_c + 1) / sum(count + 1). */
static void test_log_q_by_hand(void **state)
{
    (void)state;
    const int S = 6;
    const char *kinds[2] = {"sasrec", "elastic"};
    for (int k = 0; k < 2; k++) {
        elastic_model *m = tu_small_model(kinds[k], 5);
        int64_t d = elastic_model_config(m)->hidden, n = elastic_model_parameter_count(m);
        int64_t off = item_emb_offset(m);
        elastic_trainer *tr =
            sampled_trainer(m, ELASTIC_OBJECTIVE_PREFIX, S, ELASTIC_SAMPLER_POPULARITY, 0);
        assert_int_equal(elastic_trainer_negatives(tr), S);
        int64_t counts[ITEMS];
        double q[ITEMS + 1], total = 0;
        for (int v = 1; v <= ITEMS; v++) {
            counts[v - 1] = (int64_t)v * v;
            total += (double)(counts[v - 1] + 1);
        }
        for (int v = 1; v <= ITEMS; v++)
            q[v] = (double)(counts[v - 1] + 1) / total;
        assert_int_equal(elastic_trainer_set_item_counts(tr, counts), ELASTIC_OK);

        /* item_emb is also the input embedding: the histories read only
         * targets, so that an item with a gradient is a target or a draw. */
        tu_batch b;
        for (int u = 0; u < 8; u++)
            b.targets[u] = 1 + (int32_t)(tu_hash(tu_seed(), 13, (uint64_t)u) % ITEMS);
        b.offsets[0] = 0;
        for (int u = 0; u < 8; u++) {
            int len = 1 + (int)(tu_hash(tu_seed(), 11, (uint64_t)u) % 10);
            for (int i = 0; i < len; i++)
                b.items[b.offsets[u] + i] =
                    b.targets[tu_hash(tu_seed(), 12, (uint64_t)(u * 10 + i)) % 8];
            b.offsets[u + 1] = b.offsets[u] + len;
        }
        float *grad = malloc((size_t)n * sizeof *grad);
        assert_non_null(grad);
        double loss = 0;
        assert_int_equal(
            elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &loss, grad),
            ELASTIC_OK);

        /* The classes: the items whose embedding has a gradient. */
        int is_class[ITEMS + 1] = {0}, n_classes = 0, n_targets = 0, seen[ITEMS + 1] = {0};
        for (int v = 1; v <= ITEMS; v++) {
            is_class[v] = grad_row_norm(grad, off, d, v) > 0;
            n_classes += is_class[v];
        }
        for (int u = 0; u < 8; u++) {
            assert_true(is_class[b.targets[u]]); /* every target is a class */
            n_targets += !seen[b.targets[u]];
            seen[b.targets[u]] = 1;
        }
        printf("%s: %d classes (%d distinct targets, %d draws)\n", kinds[k], n_classes, n_targets,
               S);
        assert_true(n_classes > n_targets && n_classes <= n_targets + S);

        float hu[8 * 64];
        assert_true(d <= 64);
        elastic_session *s = NULL;
        assert_int_equal(elastic_session_init(&s, m, NULL), ELASTIC_OK);
        assert_int_equal(elastic_session_user_vectors(s, b.items, b.offsets, 8, hu), ELASTIC_OK);
        const float *emb;
        int64_t shape[4];
        int nd;
        assert_int_equal(elastic_model_tensor(m, "item_emb", &emb, shape, &nd), ELASTIC_OK);
        double ref = 0;
        for (int u = 0; u < 8; u++) {
            double logit[ITEMS + 1], mx = -INFINITY, sum = 0;
            for (int v = 1; v <= ITEMS; v++) {
                if (!is_class[v]) continue;
                double dot = 0;
                for (int64_t j = 0; j < d; j++)
                    dot += (double)hu[u * d + j] * emb[v * d + j];
                logit[v] = dot - log(1.0 - pow(1.0 - q[v], S));
                mx = fmax(mx, logit[v]);
            }
            for (int v = 1; v <= ITEMS; v++)
                if (is_class[v]) sum += exp(logit[v] - mx);
            ref += mx + log(sum) - logit[b.targets[u]];
        }
        ref /= 8;
        printf("%s: sampled loss %.7f, by hand %.7f\n", kinds[k], loss, ref);
        assert_true(fabs(loss - ref) <= 1e-5 * fabs(ref));

        /* The same step draws the same classes; the next step others. */
        float *again = malloc((size_t)n * sizeof *again);
        assert_non_null(again);
        double loss2 = 0;
        assert_int_equal(
            elastic_trainer_gradient(tr, b.items, b.offsets, b.targets, 8, &loss2, again),
            ELASTIC_OK);
        assert_true(loss2 == loss);
        assert_memory_equal(grad, again, (size_t)n * sizeof *grad);
        free(again);
        free(grad);
        elastic_session_free(s);
        elastic_trainer_free(tr);
        elastic_model_free(m);
    }
}

/* Uniform draws that cover the catalogue (4000 draws of 40 items: an item is
 * missed with probability (39/40)^4000 < 1e-43) give the full softmax: the
 * correction is the same for every class and the classes are every item. For
 * the prefix objective and for causal positions. */
static void test_covering_is_full(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("sasrec", 7);
    int64_t n = elastic_model_parameter_count(m);
    float *g_full = malloc((size_t)n * sizeof *g_full), *g_smp = malloc((size_t)n * sizeof *g_smp);
    assert_non_null(g_full);
    assert_non_null(g_smp);
    for (int objective = 0; objective < 2; objective++) {
        elastic_objective obj = objective ? ELASTIC_OBJECTIVE_CAUSAL : ELASTIC_OBJECTIVE_PREFIX;
        elastic_trainer *full = sampled_trainer(m, obj, 0, ELASTIC_SAMPLER_UNIFORM, 0);
        elastic_trainer *smp = sampled_trainer(m, obj, 4000, ELASTIC_SAMPLER_UNIFORM, 0);
        assert_int_equal(elastic_trainer_negatives(full), 0);
        tu_batch b;
        tu_make_batch(&b, tu_seed(), 1);
        double l_full = 0, l_smp = 0;
        if (!objective) {
            assert_int_equal(
                elastic_trainer_gradient(full, b.items, b.offsets, b.targets, 8, &l_full, g_full),
                ELASTIC_OK);
            assert_int_equal(
                elastic_trainer_gradient(smp, b.items, b.offsets, b.targets, 8, &l_smp, g_smp),
                ELASTIC_OK);
        } else { /* every position against the next item of its history */
            int32_t t[80];
            for (int u = 0; u < 8; u++)
                for (int64_t i = b.offsets[u]; i < b.offsets[u + 1]; i++)
                    t[i] = i + 1 < b.offsets[u + 1] ? b.items[i + 1] : b.targets[u];
            assert_int_equal(
                elastic_trainer_gradient_positions(full, b.items, b.offsets, t, 8, &l_full, g_full),
                ELASTIC_OK);
            assert_int_equal(
                elastic_trainer_gradient_positions(smp, b.items, b.offsets, t, 8, &l_smp, g_smp),
                ELASTIC_OK);
        }
        double worst = 0, gmax = 0;
        for (int64_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs((double)g_full[i] - g_smp[i]));
            gmax = fmax(gmax, fabs((double)g_full[i]));
        }
        printf("%s: loss full %.7f sampled %.7f, max |grad difference| %.2e of %.2e\n",
               objective ? "causal" : "prefix", l_full, l_smp, worst, gmax);
        assert_true(fabs(l_full - l_smp) <= 1e-5 * fabs(l_full));
        assert_true(worst <= 1e-5 * gmax);
        elastic_trainer_free(full);
        elastic_trainer_free(smp);
    }
    free(g_full);
    free(g_smp);
    elastic_model_free(m);
}

/* Two epochs with popularity negatives: the same weights for 1 and 2
 * threads (the draws are keyed by seed and step), and the model learns
 * (causal SASRec with 16 negatives among 200 items beats popularity). */
static void test_epochs_learn_reproducibly(void **state)
{
    (void)state;
    if (tu_quick()) {
        printf("# ELASTIC_TEST_QUICK=1: the learning run is skipped\n");
        skip();
    }
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
    c.model = ELASTIC_MODEL_KIND_SASREC;
    c.num_items = elastic_dataset_num_items(ds);
    c.max_len = 50;
    c.hidden = 32;
    elastic_model *m[2] = {NULL, NULL};
    for (int t = 0; t < 2; t++) {
        assert_int_equal(elastic_model_init_random(&m[t], &c, 1), ELASTIC_OK);
        elastic_train_options o;
        elastic_train_options_default(&o);
        o.objective = ELASTIC_OBJECTIVE_CAUSAL;
        o.batch_size = 32;
        o.lr = 3e-3;
        o.negatives = 16;
        o.sampler = ELASTIC_SAMPLER_POPULARITY;
        o.session.num_threads = t + 1;
        elastic_trainer *tr = NULL;
        assert_int_equal(elastic_trainer_init(&tr, m[t], &o), ELASTIC_OK);
        elastic_train_progress p;
        for (int e = 0; e < 8; e++)
            assert_int_equal(elastic_trainer_epoch(tr, ds, NULL, NULL, &p), ELASTIC_OK);
        elastic_trainer_free(tr);
    }
    for (int i = 0; i < elastic_model_tensor_count(m[0]); i++) {
        const char *name = elastic_model_tensor_name(m[0], i);
        const float *a, *b;
        int64_t shape[4];
        int nd;
        assert_int_equal(elastic_model_tensor(m[0], name, &a, shape, &nd), ELASTIC_OK);
        assert_int_equal(elastic_model_tensor(m[1], name, &b, shape, &nd), ELASTIC_OK);
        int64_t numel = 1;
        for (int k = 0; k < nd; k++)
            numel *= shape[k];
        assert_memory_equal(a, b, (size_t)numel * sizeof *a);
    }
    elastic_session *s = NULL;
    assert_int_equal(elastic_session_init(&s, m[0], NULL), ELASTIC_OK);
    elastic_metrics model, pop;
    assert_int_equal(elastic_evaluate(s, ds, ELASTIC_SPLIT_TEST, 0, &model), ELASTIC_OK);
    assert_int_equal(elastic_evaluate_popularity(ds, ELASTIC_SPLIT_TEST, 0, &pop), ELASTIC_OK);
    printf("causal SASRec, 16 popularity negatives: test HR@10 %.3f vs popularity %.3f\n",
           model.hr10, pop.hr10);
    assert_true(model.hr10 > 2.0 * pop.hr10 && model.hr10 > pop.hr10 + 0.1);
    elastic_session_free(s);
    elastic_model_free(m[0]);
    elastic_model_free(m[1]);
    elastic_dataset_free(ds);
}

static void test_refused(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("sasrec", 1);
    elastic_train_options o;
    elastic_train_options_default(&o);
    elastic_trainer *tr = NULL;
    o.negatives = -1;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "negatives"));
    o.negatives = 8;
    o.sampler = 2;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    o.sampler = ELASTIC_SAMPLER_UNIFORM;
    o.full_softmax_max = 0;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_ERR_INVALID_ARG);
    assert_null(tr);

    /* A catalogue above full_softmax_max samples by default (spec 5). */
    elastic_train_options_default(&o);
    o.full_softmax_max = ITEMS - 1;
    assert_int_equal(elastic_trainer_init(&tr, m, &o), ELASTIC_OK);
    assert_int_equal(elastic_trainer_negatives(tr), ELASTIC_DEFAULT_NEGATIVES);
    elastic_trainer_free(tr);

    /* Popularity negatives need counts; bad counts are refused. */
    tr = sampled_trainer(m, ELASTIC_OBJECTIVE_PREFIX, 4, ELASTIC_SAMPLER_POPULARITY, 0);
    tu_batch b;
    tu_make_batch(&b, tu_seed(), 2);
    double loss = 0;
    assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, &loss),
                     ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "elastic_trainer_set_item_counts"));
    assert_int_equal(elastic_trainer_steps(tr), 0);
    int64_t counts[ITEMS] = {0};
    counts[3] = -2;
    assert_int_equal(elastic_trainer_set_item_counts(tr, counts), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_trainer_set_item_counts(tr, NULL), ELASTIC_ERR_INVALID_ARG);
    counts[3] = 2;
    assert_int_equal(elastic_trainer_set_item_counts(tr, counts), ELASTIC_OK);
    assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, &loss), ELASTIC_OK);
    assert_true(isfinite(loss) && loss > 0);

    /* A checkpoint of one loss does not resume another. */
    char path[] = "/tmp/elastic_sampled_state_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(elastic_trainer_save_state(tr, path), ELASTIC_OK);
    elastic_trainer *full = sampled_trainer(m, ELASTIC_OBJECTIVE_PREFIX, 0, 0, 0);
    assert_int_equal(elastic_trainer_load_state(full, path), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "prefix, 4 popularity negatives"));
    assert_int_equal(elastic_trainer_steps(full), 0);
    elastic_trainer *same =
        sampled_trainer(m, ELASTIC_OBJECTIVE_PREFIX, 4, ELASTIC_SAMPLER_POPULARITY, 0);
    assert_int_equal(elastic_trainer_load_state(same, path), ELASTIC_OK);
    assert_int_equal(elastic_trainer_steps(same), 1);
    remove(path);
    elastic_trainer_free(same);
    elastic_trainer_free(full);
    elastic_trainer_free(tr);
    elastic_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_q_by_hand),
        cmocka_unit_test(test_covering_is_full),
        cmocka_unit_test(test_epochs_learn_reproducibly),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
