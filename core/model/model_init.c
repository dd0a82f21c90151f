/*
 * model_init.c - a model with random weights, initialised as spec section 5
 * says: embeddings, memory values and Linear weights ~ N(0, 0.02^2), item_emb
 * row 0 zero, biases 0, LayerNorm weight 1 and bias 0, subkeys ~ N(0, 2/c).
 * Each parameter draws from its own stream, so the result depends only on
 * the seed and the config.
 */
#include "base/error.h"
#include "model/model.h"
#include "base/rng.h"

#include <math.h>
#include <string.h>

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int is_norm(const char *name)
{
    return strstr(name, "norm") != NULL;
}

elastic_status elastic_model_init_random(elastic_model **out, const elastic_config *config,
                                         uint64_t seed)
{
    elastic_error_clear();
    if (!out || !config)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_init_random: NULL argument");
    *out = NULL;
    elastic_config c = *config;
    ELASTIC_TRY(elastic_config_validate(&c));
    elastic_model *m;
    ELASTIC_TRY(elastic_model_alloc(&m, &c));
    for (int p = 0; p < m->n_params; p++) {
        const elastic_param *par = &m->params[p];
        float *x = m->data + par->offset;
        double std = 0.0, fill = 0.0;
        if (is_norm(par->name))
            fill = ends_with(par->name, ".weight") ? 1.0 : 0.0;
        else if (!strcmp(par->name, "imr.subkeys"))
            std = sqrt(1.0 / (double)(c.mem_key / 2));
        else if (!ends_with(par->name, ".bias"))
            std = 0.02; /* item_emb, pos_emb, imr.values, Linear weights */
        for (int64_t i = 0; i < par->numel; i++)
            x[i] = std > 0 ? (float)(std * elastic_rng_normal(seed, (uint64_t)p, (uint64_t)i))
                           : (float)fill;
    }
    memset(elastic_model_param_data(m, "item_emb"), 0, (size_t)c.hidden * sizeof(float));
    *out = m;
    return ELASTIC_OK;
}
