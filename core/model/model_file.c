/*
 * model_file.c - elastic_model_load and elastic_model_save: a model as a
 * safetensors file (spec section 2). The config is read from __metadata__,
 * validated, and the file's tensors are checked against the parameter list
 * of that config (names, shapes, dtype F32, finite values, item_emb row 0
 * zero) before any memory is sized by it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/byteorder.h"
#include "base/error.h"
#include "model/model.h"
#include "model/safetensors.h"

/* Prefixes the thread's current message with the file's path. */
static elastic_status with_path(elastic_status status, const char *path)
{
    char message[900];
    snprintf(message, sizeof message, "%s", elastic_last_error());
    return elastic_error(status, "%s: %s", path, message);
}

static void shape_text(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* ------------------------------------------------------------------ load */

typedef struct key_check {
    const elastic_st_file *file;
    int sasrec;
} key_check;

/* Every config key must be in the file (spec section 2), except those a
 * SASRec config ignores (spec section 7) and `mask_token`, which version 2
 * added: a version-1 file, written without it, is a version-2 file whose
 * mask_token is 0 (spec, introduction). */
static elastic_status require_key(const char *key, const char *value, void *ctx)
{
    (void)value;
    const key_check *kc = ctx;
    if (kc->sasrec && (!strcmp(key, "experts") || !strncmp(key, "mem_", 4))) return ELASTIC_OK;
    if (!strcmp(key, "mask_token")) return ELASTIC_OK;
    if (!elastic_st_meta_get(kc->file, key))
        return elastic_error(ELASTIC_ERR_FORMAT, "__metadata__ lacks the config key '%s'", key);
    return ELASTIC_OK;
}

static elastic_status read_config(const elastic_st_file *file, elastic_config *config)
{
    elastic_config_default(config);
    const char *version = elastic_st_meta_get(file, "format_version");
    if (!version)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "__metadata__ lacks format_version (not a libelastic model file?)");
    if (strcmp(version, "1") != 0)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "unsupported format_version '%.64s' (this library reads 1)", version);
    for (int i = 0; i < file->n_meta; i++) {
        const char *key = file->meta[i].key;
        if (!elastic_config_is_key(key) || !strcmp(key, "format_version")) continue;
        ELASTIC_TRY(elastic_config_set(config, key, file->meta[i].value));
    }
    ELASTIC_TRY(elastic_config_validate(config));
    key_check kc = {file, config->model == ELASTIC_MODEL_KIND_SASREC};
    return elastic_config_to_strings(config, require_key, &kc);
}

static int tensor_ptr_cmp(const void *a, const void *b)
{
    const elastic_st_tensor *x = *(const elastic_st_tensor *const *)a;
    const elastic_st_tensor *y = *(const elastic_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int tensor_key_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const elastic_st_tensor *const *)elem)->name);
}

/* Matches the file's tensors to the expected list: found[i] is the tensor of
 * params[i]. Every expected tensor present, none extra, shapes and dtype
 * exact. */
static elastic_status match_tensors(const elastic_st_file *file, const elastic_param *params,
                                    int n_params, const elastic_st_tensor **found)
{
    int n = file->n_tensors;
    const elastic_st_tensor **sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    unsigned char *used = calloc((size_t)(n ? n : 1), 1);
    elastic_status status = ELASTIC_OK;
    if (!sorted || !used) {
        status = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory matching tensors");
        goto done;
    }
    for (int i = 0; i < n; i++)
        sorted[i] = &file->tensors[i];
    qsort(sorted, (size_t)n, sizeof *sorted, tensor_ptr_cmp);

    for (int i = 0; i < n_params && status == ELASTIC_OK; i++) {
        const elastic_param *p = &params[i];
        const elastic_st_tensor *const *hit =
            n ? bsearch(p->name, sorted, (size_t)n, sizeof *sorted, tensor_key_cmp) : NULL;
        if (!hit) {
            status = elastic_error(ELASTIC_ERR_FORMAT, "missing tensor '%s'", p->name);
            break;
        }
        const elastic_st_tensor *t = *hit;
        used[t - file->tensors] = 1;
        found[i] = t;
        if (strcmp(t->dtype, "F32") != 0) {
            status = elastic_error(ELASTIC_ERR_FORMAT,
                                   "tensor '%s' has dtype %s; model files v1 hold only F32",
                                   p->name, t->dtype);
            break;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = t->shape[d] == p->shape[d];
        if (!same) {
            char want[128], got[128];
            shape_text(p->shape, p->ndim, want, sizeof want);
            shape_text(t->shape, t->ndim, got, sizeof got);
            status = elastic_error(ELASTIC_ERR_FORMAT,
                                   "tensor '%s' has shape %s, expected %s for this config", p->name,
                                   got, want);
        }
    }
    for (int i = 0; i < n && status == ELASTIC_OK; i++)
        if (!used[i])
            status = elastic_error(ELASTIC_ERR_FORMAT,
                                   "unexpected tensor '%.200s' (not a parameter of this config)",
                                   file->tensors[i].name);
done:
    free(sorted);
    free(used);
    return status;
}

/* Copies the checked tensors into a new model and checks their values. */
static elastic_status fill_model(const elastic_st_file *file, const elastic_config *config,
                                 const elastic_st_tensor **found, elastic_model **out)
{
    elastic_model *m;
    ELASTIC_TRY(elastic_model_alloc(&m, config));
    elastic_status status = ELASTIC_OK;
    for (int i = 0; i < m->n_params && status == ELASTIC_OK; i++) {
        const elastic_param *p = &m->params[i];
        float *dst = m->data + p->offset;
        if (found[i]->nbytes != (size_t)p->numel * sizeof(float)) { /* matched shapes: cannot be */
            status = elastic_error(ELASTIC_ERR_INTERNAL, "tensor '%s': size mismatch", p->name);
            break;
        }
        elastic_f32_from_le(dst, found[i]->data, (size_t)p->numel); /* file: little-endian */
        for (int64_t j = 0; j < p->numel; j++)
            if (!isfinite(dst[j])) {
                status = elastic_error(ELASTIC_ERR_FORMAT,
                                       "tensor '%s' holds a non-finite value (%s) at element %lld",
                                       p->name, isnan(dst[j]) ? "NaN" : "Inf", (long long)j);
                break;
            }
        if (status == ELASTIC_OK && !strcmp(p->name, "item_emb"))
            for (int64_t j = 0; j < config->hidden; j++)
                if (dst[j] != 0.0f) {
                    status = elastic_error(ELASTIC_ERR_FORMAT,
                                           "tensor 'item_emb': row 0 (the padding item) must be "
                                           "all zeros, but element %lld is %g",
                                           (long long)j, (double)dst[j]);
                    break;
                }
    }
    for (int i = 0; i < file->n_meta && status == ELASTIC_OK; i++)
        if (!elastic_config_is_key(file->meta[i].key))
            status = elastic_model_set_metadata(m, file->meta[i].key, file->meta[i].value);
    if (status != ELASTIC_OK) {
        elastic_model_free(m);
        return status;
    }
    *out = m;
    return ELASTIC_OK;
}

static elastic_status load_file(const elastic_st_file *file, elastic_model **out)
{
    elastic_config config;
    ELASTIC_TRY(read_config(file, &config));
    elastic_param *params;
    int n_params;
    int64_t total;
    ELASTIC_TRY(elastic_model_param_list(&config, &params, &n_params, &total));
    const elastic_st_tensor **found = calloc((size_t)(n_params ? n_params : 1), sizeof *found);
    elastic_status status;
    if (!found)
        status = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory loading a model");
    else
        status = match_tensors(file, params, n_params, found);
    /* The file holds every tensor at its exact shape, so the allocation
     * below is bounded by the file's size. */
    if (status == ELASTIC_OK) status = fill_model(file, &config, found, out);
    free(found);
    free(params);
    return status;
}

elastic_status elastic_model_load(elastic_model **model, const char *path)
{
    elastic_error_clear();
    if (!model) return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_load: model is NULL");
    *model = NULL;
    if (!path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_load: path is NULL");
    elastic_st_file file;
    elastic_status status = elastic_st_read(path, &file);
    if (status == ELASTIC_OK) {
        status = load_file(&file, model);
        elastic_st_free(&file);
    }
    if (status != ELASTIC_OK && status != ELASTIC_ERR_IO) status = with_path(status, path);
    return status;
}

/* ------------------------------------------------------------------ save */

/* strdup is POSIX, not C11. */
static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* The metadata to write, with its own copies of the strings. */
typedef struct meta_list {
    elastic_st_meta *items;
    char **owned; /* 2 per item: key, value */
    int n, cap;
} meta_list;

static elastic_status meta_add(const char *key, const char *value, void *ctx)
{
    meta_list *list = ctx;
    if (list->n == list->cap) {
        int cap = list->cap ? 2 * list->cap : 32;
        elastic_st_meta *items = realloc(list->items, (size_t)cap * sizeof *items);
        if (items) list->items = items;
        char **owned = realloc(list->owned, (size_t)cap * 2 * sizeof *owned);
        if (owned) list->owned = owned;
        if (!items || !owned)
            return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory saving a model");
        list->cap = cap;
    }
    char *k = copy_string(key), *v = copy_string(value);
    if (!k || !v) {
        free(k);
        free(v);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory saving a model");
    }
    list->owned[2 * list->n] = k;
    list->owned[2 * list->n + 1] = v;
    list->items[list->n].key = k;
    list->items[list->n].value = v;
    list->n++;
    return ELASTIC_OK;
}

static void meta_list_free(meta_list *list)
{
    for (int i = 0; i < 2 * list->n; i++)
        free(list->owned[i]);
    free(list->owned);
    free(list->items);
}

elastic_status elastic_model_save(const elastic_model *model, const char *path)
{
    elastic_error_clear();
    if (!model || !path)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_save: NULL argument");
    if (!elastic_model_live(model))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_model_save: the model was freed");
    meta_list meta = {0};
    elastic_st_tensor *tensors = NULL;
    /* The file's float32 are little-endian: the parameters themselves on
     * little-endian hosts, a converted copy on big-endian ones. */
    void *le_copy = NULL;
    const unsigned char *le =
        elastic_f32_le_bytes(model->data, (size_t)model->data_numel, &le_copy);
    elastic_status status =
        le ? ELASTIC_OK : elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory saving a model");
    if (status == ELASTIC_OK) status = elastic_config_to_strings(&model->config, meta_add, &meta);
    /* Extra metadata; the config (above) is authoritative for its keys. */
    for (int i = 0; i < model->n_meta && status == ELASTIC_OK; i++)
        if (!elastic_config_is_key(model->meta[i].key))
            status = meta_add(model->meta[i].key, model->meta[i].value, &meta);
    if (status == ELASTIC_OK) {
        tensors = calloc((size_t)(model->n_params ? model->n_params : 1), sizeof *tensors);
        if (!tensors) status = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory saving a model");
    }
    for (int i = 0; i < model->n_params && status == ELASTIC_OK; i++) {
        const elastic_param *p = &model->params[i];
        elastic_st_tensor *t = &tensors[i];
        t->name = p->name;
        t->dtype = "F32";
        t->ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++)
            t->shape[d] = p->shape[d];
        t->numel = p->numel;
        t->data = le + (size_t)p->offset * sizeof(float);
        t->nbytes = (size_t)p->numel * sizeof(float);
    }
    if (status == ELASTIC_OK)
        status = elastic_st_write(path, meta.items, meta.n, tensors, model->n_params);
    free(tensors);
    free(le_copy);
    meta_list_free(&meta);
    return status;
}
