/*
 * model.c - the parameter list of spec sections 2 and 7, model allocation,
 * and the public accessors for parameters and metadata.
 */
#include "base/error.h"
#include "model/model.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct param_list {
    elastic_param *items;
    int n, cap;
    int64_t total;
} param_list;

static elastic_status add_param(param_list *list, int64_t d0, int64_t d1, int64_t d2,
                                const char *fmt, ...) ELASTIC_PRINTF(5, 6);

/* Appends one parameter of rank 1..3 (trailing zero sizes mean "absent"). */
static elastic_status add_param(param_list *list, int64_t d0, int64_t d1, int64_t d2,
                                const char *fmt, ...)
{
    if (list->n == list->cap) {
        int cap = list->cap ? 2 * list->cap : 64;
        elastic_param *p = realloc(list->items, (size_t)cap * sizeof *p);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory listing parameters");
        list->items = p;
        list->cap = cap;
    }
    elastic_param *p = &list->items[list->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    int64_t dims[3] = {d0, d1, d2};
    p->numel = 1;
    for (int i = 0; i < 3 && dims[i] > 0; i++) {
        p->shape[p->ndim++] = dims[i];
        p->numel *= dims[i];
    }
    p->offset = list->total;
    list->total += p->numel;
    return ELASTIC_OK;
}

static elastic_status add_norm(param_list *l, int64_t d, const char *prefix, int i,
                               const char *block)
{
    ELASTIC_TRY(add_param(l, d, 0, 0, "%s%d.%s.weight", prefix, i, block));
    return add_param(l, d, 0, 0, "%s%d.%s.bias", prefix, i, block);
}

static elastic_status add_qkvo(param_list *l, int64_t d, int i, const char *block)
{
    static const char *proj[] = {"q", "k", "v", "o"};
    for (int p = 0; p < 4; p++) {
        ELASTIC_TRY(add_param(l, d, d, 0, "layers.%d.%s.%s.weight", i, block, proj[p]));
        ELASTIC_TRY(add_param(l, d, 0, 0, "layers.%d.%s.%s.bias", i, block, proj[p]));
    }
    return ELASTIC_OK;
}

static elastic_status add_ffn(param_list *l, int64_t d, int64_t f, int i, const char *block)
{
    ELASTIC_TRY(add_param(l, d, 0, 0, "layers.%d.%s.norm.weight", i, block));
    ELASTIC_TRY(add_param(l, d, 0, 0, "layers.%d.%s.norm.bias", i, block));
    ELASTIC_TRY(add_param(l, f, d, 0, "layers.%d.%s.fc1.weight", i, block));
    ELASTIC_TRY(add_param(l, f, 0, 0, "layers.%d.%s.fc1.bias", i, block));
    ELASTIC_TRY(add_param(l, d, f, 0, "layers.%d.%s.fc2.weight", i, block));
    return add_param(l, d, 0, 0, "layers.%d.%s.fc2.bias", i, block);
}

static elastic_status build_list(const elastic_config *c, param_list *l)
{
    int64_t d = c->hidden, f = c->ffn;
    ELASTIC_TRY(add_param(l, c->num_items + 1 + c->mask_token, d, 0, "item_emb"));
    ELASTIC_TRY(add_param(l, c->max_len, d, 0, "pos_emb"));
    if (c->model == ELASTIC_MODEL_KIND_ELASTIC) {
        int64_t k = c->experts, m = c->mem_subkeys, cc = c->mem_key;
        ELASTIC_TRY(add_param(l, d, 0, 0, "imr.norm.weight"));
        ELASTIC_TRY(add_param(l, d, 0, 0, "imr.norm.bias"));
        ELASTIC_TRY(add_param(l, k * cc, d, 0, "imr.query.weight"));
        ELASTIC_TRY(add_param(l, k * cc, 0, 0, "imr.query.bias"));
        ELASTIC_TRY(add_param(l, 2, m, cc / 2, "imr.subkeys"));
        ELASTIC_TRY(add_param(l, m * m, d, 0, "imr.values"));
        for (int i = 0; i < c->layers; i++) {
            ELASTIC_TRY(add_norm(l, d, "layers.", i, "agg.norm_p"));
            ELASTIC_TRY(add_norm(l, d, "layers.", i, "agg.norm_x"));
            ELASTIC_TRY(add_qkvo(l, d, i, "agg"));
            ELASTIC_TRY(add_ffn(l, d, f, i, "ffn_p"));
            ELASTIC_TRY(add_norm(l, d, "layers.", i, "disp.norm_x"));
            ELASTIC_TRY(add_norm(l, d, "layers.", i, "disp.norm_p"));
            ELASTIC_TRY(add_qkvo(l, d, i, "disp"));
            ELASTIC_TRY(add_ffn(l, d, f, i, "ffn_x"));
        }
    } else {
        for (int i = 0; i < c->layers; i++) {
            ELASTIC_TRY(add_norm(l, d, "layers.", i, "attn.norm"));
            ELASTIC_TRY(add_qkvo(l, d, i, "attn"));
            ELASTIC_TRY(add_ffn(l, d, f, i, "ffn_x"));
        }
    }
    ELASTIC_TRY(add_param(l, d, 0, 0, "final_norm.weight"));
    return add_param(l, d, 0, 0, "final_norm.bias");
}

elastic_status elastic_model_param_list(const elastic_config *config, elastic_param **params,
                                        int *n_params, int64_t *total_numel)
{
    param_list list = {0};
    elastic_status st = build_list(config, &list);
    if (st != ELASTIC_OK) {
        free(list.items);
        return st;
    }
    *params = list.items;
    *n_params = list.n;
    *total_numel = list.total;
    return ELASTIC_OK;
}

elastic_status elastic_model_alloc(elastic_model **out, const elastic_config *config)
{
    *out = NULL;
    elastic_model *m = calloc(1, sizeof *m);
    if (!m) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory allocating a model");
    m->config = *config;
    m->magic = ELASTIC_MODEL_MAGIC;
    elastic_status st = elastic_model_param_list(config, &m->params, &m->n_params, &m->data_numel);
    if (st == ELASTIC_OK) {
        m->data = calloc((size_t)m->data_numel, sizeof(float));
        if (!m->data)
            st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory: %lld parameters",
                               (long long)m->data_numel);
    }
    if (st != ELASTIC_OK) {
        elastic_model_free(m);
        return st;
    }
    *out = m;
    return ELASTIC_OK;
}

void elastic_model_free(elastic_model *model)
{
    if (!model || !elastic_model_live(model)) return; /* NULL, or freed already */
    model->magic = 0;
    for (int i = 0; i < model->n_meta; i++) {
        free(model->meta[i].key);
        free(model->meta[i].value);
    }
    free(model->meta);
    free(model->params);
    free(model->data);
    free(model);
}

const elastic_param *elastic_model_find(const elastic_model *model, const char *name)
{
    for (int i = 0; i < model->n_params; i++)
        if (!strcmp(model->params[i].name, name)) return &model->params[i];
    return NULL;
}

float *elastic_model_param_data(const elastic_model *model, const char *name)
{
    const elastic_param *p = elastic_model_find(model, name);
    return p ? model->data + p->offset : NULL;
}

const elastic_config *elastic_model_config(const elastic_model *model)
{
    return model && elastic_model_live(model) ? &model->config : NULL;
}

int elastic_model_tensor_count(const elastic_model *model)
{
    return model && elastic_model_live(model) ? model->n_params : 0;
}

const char *elastic_model_tensor_name(const elastic_model *model, int index)
{
    if (!model || !elastic_model_live(model) || index < 0 || index >= model->n_params) return NULL;
    return model->params[index].name;
}

elastic_status elastic_model_tensor(const elastic_model *model, const char *name,
                                    const float **data, int64_t shape[4], int *ndim)
{
    elastic_error_clear();
    if (!model || !name)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_tensor: NULL argument");
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the model was freed");
    const elastic_param *p = elastic_model_find(model, name);
    if (!p) return elastic_error(ELASTIC_ERR_INVALID_ARG, "model has no tensor '%s'", name);
    if (data) *data = model->data + p->offset;
    if (shape)
        for (int i = 0; i < 4; i++)
            shape[i] = i < p->ndim ? p->shape[i] : 1;
    if (ndim) *ndim = p->ndim;
    return ELASTIC_OK;
}

elastic_status elastic_model_set_tensor(elastic_model *model, const char *name, const float *data,
                                        int64_t n)
{
    elastic_error_clear();
    if (!model || !name || !data)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_set_tensor: NULL argument");
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the model was freed");
    const elastic_param *p = elastic_model_find(model, name);
    if (!p) return elastic_error(ELASTIC_ERR_INVALID_ARG, "model has no tensor '%s'", name);
    if (n != p->numel)
        return elastic_error(ELASTIC_ERR_SHAPE, "tensor '%s' has %lld elements, given %lld", name,
                             (long long)p->numel, (long long)n);
    memcpy(model->data + p->offset, data, (size_t)n * sizeof(float));
    if (!strcmp(name, "item_emb")) /* row 0 is padding and stays zero */
        memset(model->data + p->offset, 0, (size_t)model->config.hidden * sizeof(float));
    model->version++;
    return ELASTIC_OK;
}

int elastic_model_metadata_count(const elastic_model *model)
{
    return model && elastic_model_live(model) ? model->n_meta : 0;
}

const char *elastic_model_metadata_key(const elastic_model *model, int index)
{
    return model && elastic_model_live(model) && index >= 0 && index < model->n_meta
               ? model->meta[index].key
               : NULL;
}

const char *elastic_model_metadata(const elastic_model *model, const char *key)
{
    if (!model || !elastic_model_live(model) || !key) return NULL;
    for (int i = 0; i < model->n_meta; i++)
        if (!strcmp(model->meta[i].key, key)) return model->meta[i].value;
    return NULL;
}

elastic_status elastic_model_set_metadata(elastic_model *model, const char *key, const char *value)
{
    elastic_error_clear();
    if (!model || !key || !value)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_set_metadata: NULL argument");
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the model was freed");
    if (elastic_config_is_key(key))
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "metadata key '%s' is a config key and cannot be set", key);
    char *v = strdup(value);
    if (!v) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    for (int i = 0; i < model->n_meta; i++)
        if (!strcmp(model->meta[i].key, key)) {
            free(model->meta[i].value);
            model->meta[i].value = v;
            return ELASTIC_OK;
        }
    char *k = strdup(key);
    elastic_meta *meta = realloc(model->meta, (size_t)(model->n_meta + 1) * sizeof *meta);
    if (!k || !meta) {
        free(k);
        free(v);
        if (meta) model->meta = meta;
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    model->meta = meta;
    model->meta[model->n_meta].key = k;
    model->meta[model->n_meta].value = v;
    model->n_meta++;
    return ELASTIC_OK;
}
