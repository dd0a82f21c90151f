/*
 * model.h - the inside of an elastic_model: config, parameters, metadata.
 *
 * All parameters live in one float32 block (`data`), each at its own offset,
 * in the order of spec section 2 (or section 7 for SASRec). The list of
 * names and shapes is a pure function of the config (model_params.c), so the
 * file reader can check a file against it.
 */
#ifndef ELASTIC_CORE_MODEL_H
#define ELASTIC_CORE_MODEL_H

#include "elastic.h"

typedef struct elastic_param {
    char name[64];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    int64_t offset; /* into model->data, in floats */
} elastic_param;

typedef struct elastic_meta {
    char *key;
    char *value;
} elastic_meta;

struct elastic_model {
    elastic_config config;
    elastic_param *params;
    int n_params;
    float *data;
    int64_t data_numel;
    elastic_meta *meta; /* extra metadata beyond the config keys */
    int n_meta;
    /* Counts the changes of data after the model was made (set_tensor, a
     * training step): a session that sees a new value reads the weights
     * again (elastic_executor_refresh_weights). */
    uint64_t version;
    uint32_t magic; /* ELASTIC_MODEL_MAGIC while live; cleared by elastic_model_free */
};

#define ELASTIC_MODEL_MAGIC 0x4D4F444Cu /* "MODL" */
/* False for a model that elastic_model_free has freed (while its memory is
 * not reused): calls refuse it instead of reading freed parameters. */
static inline int elastic_model_live(const elastic_model *model)
{
    return model->magic == ELASTIC_MODEL_MAGIC;
}

/* Builds the parameter list of a validated config (no data). The caller
 * frees *params with free(). */
elastic_status elastic_model_param_list(const elastic_config *config, elastic_param **params,
                                        int *n_params, int64_t *total_numel);

/* Allocates a model with zeroed parameters for a validated config. */
elastic_status elastic_model_alloc(elastic_model **model, const elastic_config *config);

/* Finds a parameter; NULL if absent. */
const elastic_param *elastic_model_find(const elastic_model *model, const char *name);
/* Its data, or NULL if absent. */
float *elastic_model_param_data(const elastic_model *model, const char *name);

/* The config as (key, value) strings for a file's __metadata__: calls
 * emit(key, value, ctx) for every key of spec section 1 and format_version. */
elastic_status elastic_config_to_strings(const elastic_config *config,
                                         elastic_status (*emit)(const char *key, const char *value,
                                                                void *ctx),
                                         void *ctx);
/* True for metadata keys that are part of the config (or format_version). */
int elastic_config_is_key(const char *key);

#endif
