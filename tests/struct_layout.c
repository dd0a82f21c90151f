/*
 * struct_layout.c - prints, as JSON, sizeof and the offset of every field of
 * each public struct of include/elastic*.h. python/tests/test_layout.py
 * compares them with the ctypes mirrors of python/libelastic/_capi.py, so a
 * header change that the binding does not follow fails a test.
 */
#include <stddef.h>
#include <stdio.h>

#include "elastic.h"

static int first_struct = 1, first_field;

static void begin(const char *name, size_t size)
{
    printf("%s\n  \"%s\": {\"size\": %zu, \"fields\": {", first_struct ? "{" : ",", name, size);
    first_struct = 0;
    first_field = 1;
}

static void field(const char *name, size_t offset)
{
    printf("%s\"%s\": %zu", first_field ? "" : ", ", name, offset);
    first_field = 0;
}

static void end(void) { printf("}}"); }

#define BEGIN(T) begin(#T, sizeof(T))
#define FIELD(T, f) field(#f, offsetof(T, f))

int main(void)
{
    BEGIN(elastic_config);
    FIELD(elastic_config, model);
    FIELD(elastic_config, num_items);
    FIELD(elastic_config, max_len);
    FIELD(elastic_config, hidden);
    FIELD(elastic_config, heads);
    FIELD(elastic_config, layers);
    FIELD(elastic_config, experts);
    FIELD(elastic_config, ffn);
    FIELD(elastic_config, mem_subkeys);
    FIELD(elastic_config, mem_key);
    FIELD(elastic_config, mem_topk);
    FIELD(elastic_config, ln_eps);
    FIELD(elastic_config, mask_token);
    end();

    BEGIN(elastic_session_options);
    FIELD(elastic_session_options, struct_size);
    FIELD(elastic_session_options, backend);
    FIELD(elastic_session_options, device);
    FIELD(elastic_session_options, allow_cpu_fallback);
    FIELD(elastic_session_options, num_threads);
    FIELD(elastic_session_options, attention);
    FIELD(elastic_session_options, backend_options);
    end();

    BEGIN(elastic_backend_info);
    FIELD(elastic_backend_info, name);
    FIELD(elastic_backend_info, compiled);
    FIELD(elastic_backend_info, available);
    FIELD(elastic_backend_info, device_count);
    FIELD(elastic_backend_info, accelerator);
    FIELD(elastic_backend_info, description);
    end();

    BEGIN(elastic_run_stats);
    FIELD(elastic_run_stats, nodes);
    FIELD(elastic_run_stats, fallback_nodes);
    FIELD(elastic_run_stats, copies);
    FIELD(elastic_run_stats, arena_bytes);
    FIELD(elastic_run_stats, naive_bytes);
    FIELD(elastic_run_stats, flops);
    FIELD(elastic_run_stats, max_tensor_bytes);
    end();

    BEGIN(elastic_synth_options);
    FIELD(elastic_synth_options, users);
    FIELD(elastic_synth_options, items);
    FIELD(elastic_synth_options, clusters);
    FIELD(elastic_synth_options, min_len);
    FIELD(elastic_synth_options, max_len);
    FIELD(elastic_synth_options, p_sequential);
    FIELD(elastic_synth_options, seed);
    end();

    BEGIN(elastic_metrics);
    FIELD(elastic_metrics, users);
    FIELD(elastic_metrics, hr10);
    FIELD(elastic_metrics, hr50);
    FIELD(elastic_metrics, ndcg10);
    FIELD(elastic_metrics, ndcg50);
    FIELD(elastic_metrics, mrr);
    end();

    BEGIN(elastic_train_options);
    FIELD(elastic_train_options, struct_size);
    FIELD(elastic_train_options, lr);
    FIELD(elastic_train_options, beta1);
    FIELD(elastic_train_options, beta2);
    FIELD(elastic_train_options, adam_eps);
    FIELD(elastic_train_options, dropout);
    FIELD(elastic_train_options, batch_size);
    FIELD(elastic_train_options, samples_per_user);
    FIELD(elastic_train_options, seed);
    FIELD(elastic_train_options, session);
    FIELD(elastic_train_options, objective);
    FIELD(elastic_train_options, mask_prob);
    FIELD(elastic_train_options, last_prob);
    FIELD(elastic_train_options, negatives);
    FIELD(elastic_train_options, sampler);
    FIELD(elastic_train_options, full_softmax_max);
    end();

    BEGIN(elastic_train_progress);
    FIELD(elastic_train_progress, step);
    FIELD(elastic_train_progress, steps);
    FIELD(elastic_train_progress, examples);
    FIELD(elastic_train_progress, examples_total);
    FIELD(elastic_train_progress, loss);
    FIELD(elastic_train_progress, seconds);
    FIELD(elastic_train_progress, targets);
    end();

    BEGIN(elastic_conformance_options);
    FIELD(elastic_conformance_options, backends);
    FIELD(elastic_conformance_options, ops);
    FIELD(elastic_conformance_options, seed);
    FIELD(elastic_conformance_options, case_index);
    FIELD(elastic_conformance_options, json);
    FIELD(elastic_conformance_options, perf);
    FIELD(elastic_conformance_options, whole_model);
    FIELD(elastic_conformance_options, verbose);
    end();

    printf("\n}\n");
    return 0;
}
