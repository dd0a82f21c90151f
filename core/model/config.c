/*
 * config.c - the model configuration of spec section 1: defaults, parsing
 * key=value strings, validation with messages that name the key, and the
 * string form stored in a model file's __metadata__.
 */
#include "base/error.h"
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The integer keys, in the order of spec section 1. */
static const struct {
    const char *key;
    size_t offset;
} int_keys[] = {
    {"num_items", offsetof(elastic_config, num_items)},
    {"max_len", offsetof(elastic_config, max_len)},
    {"hidden", offsetof(elastic_config, hidden)},
    {"heads", offsetof(elastic_config, heads)},
    {"layers", offsetof(elastic_config, layers)},
    {"experts", offsetof(elastic_config, experts)},
    {"ffn", offsetof(elastic_config, ffn)},
    {"mem_subkeys", offsetof(elastic_config, mem_subkeys)},
    {"mem_key", offsetof(elastic_config, mem_key)},
    {"mem_topk", offsetof(elastic_config, mem_topk)},
};
#define N_INT_KEYS (sizeof int_keys / sizeof int_keys[0])

static int64_t *int_field(elastic_config *config, size_t i)
{
    return (int64_t *)((char *)config + int_keys[i].offset);
}

void elastic_config_default(elastic_config *config)
{
    if (!config) return;
    memset(config, 0, sizeof *config);
    config->model = ELASTIC_MODEL_KIND_ELASTIC;
    config->num_items = 0;
    config->max_len = 200;
    config->hidden = 64;
    config->heads = 2;
    config->layers = 2;
    config->experts = 16;
    config->ffn = -1;     /* 4 * hidden */
    config->mem_subkeys = 128;
    config->mem_key = -1; /* hidden */
    config->mem_topk = 8;
    config->ln_eps = 1e-5;
    config->mask_token = 0;
}

int elastic_config_is_key(const char *key)
{
    if (!strcmp(key, "model") || !strcmp(key, "ln_eps") || !strcmp(key, "format_version") ||
        !strcmp(key, "mask_token"))
        return 1;
    for (size_t i = 0; i < N_INT_KEYS; i++)
        if (!strcmp(key, int_keys[i].key)) return 1;
    return 0;
}

elastic_status elastic_config_set(elastic_config *config, const char *key, const char *value)
{
    elastic_error_clear();
    if (!config || !key || !value)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_config_set: NULL argument");
    if (!strcmp(key, "model")) {
        if (!strcmp(value, "elastic"))
            config->model = ELASTIC_MODEL_KIND_ELASTIC;
        else if (!strcmp(value, "sasrec"))
            config->model = ELASTIC_MODEL_KIND_SASREC;
        else
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "config key 'model': '%s' is neither 'elastic' nor 'sasrec'",
                                 value);
        return ELASTIC_OK;
    }
    if (!strcmp(key, "mask_token")) { /* spec 3.0: 0 or 1 */
        if (strcmp(value, "0") && strcmp(value, "1"))
            return elastic_error(ELASTIC_ERR_FORMAT, "config key 'mask_token': '%s' is not 0 or 1",
                                 value);
        config->mask_token = value[0] == '1';
        return ELASTIC_OK;
    }
    char *end = NULL;
    errno = 0;
    if (!strcmp(key, "ln_eps")) {
        double v = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(v) || v <= 0)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "config key 'ln_eps': '%s' is not a positive number", value);
        config->ln_eps = v;
        return ELASTIC_OK;
    }
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        if (strcmp(key, int_keys[i].key)) continue;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno)
            return elastic_error(ELASTIC_ERR_FORMAT, "config key '%s': '%s' is not an integer",
                                 key, value);
        *int_field(config, i) = v;
        return ELASTIC_OK;
    }
    return elastic_error(ELASTIC_ERR_FORMAT, "unknown config key '%s'", key);
}

elastic_status elastic_config_validate(elastic_config *c)
{
    if (!c) return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_config_validate: NULL config");
    if (c->model != ELASTIC_MODEL_KIND_ELASTIC && c->model != ELASTIC_MODEL_KIND_SASREC)
        return elastic_error(ELASTIC_ERR_FORMAT, "config key 'model': unknown model kind %d",
                             (int)c->model);
    /* Derived from hidden only when that cannot overflow: an out-of-range
     * hidden is refused below, before ffn is looked at. */
    if (c->ffn < 0 && c->hidden >= INT64_MIN / 4 && c->hidden <= INT64_MAX / 4)
        c->ffn = 4 * c->hidden;
    if (c->mem_key < 0) c->mem_key = c->hidden;
    /* Bounds keep every product of sizes far inside int64 and int32 ids. */
    static const int64_t max_value[N_INT_KEYS] = {
        INT32_MAX - 1, 1 << 20, 1 << 16, 1 << 12, 1 << 10, 1 << 16, 1 << 20, 1 << 14, 1 << 16,
        1 << 14};
    int sasrec = c->model == ELASTIC_MODEL_KIND_SASREC;
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        const char *key = int_keys[i].key;
        int memory_key = !strcmp(key, "experts") || !strncmp(key, "mem_", 4);
        if (sasrec && memory_key) continue; /* ignored by SASRec (spec section 7) */
        int64_t v = *int_field(c, i);
        if (v < 1)
            return elastic_error(ELASTIC_ERR_FORMAT, "config key '%s' must be >= 1, got %lld",
                                 key, (long long)v);
        if (v > max_value[i])
            return elastic_error(ELASTIC_ERR_FORMAT, "config key '%s' = %lld is too large (max %lld)",
                                 key, (long long)v, (long long)max_value[i]);
    }
    if (c->hidden % c->heads)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "config key 'heads': hidden (%lld) is not divisible by heads (%lld)",
                             (long long)c->hidden, (long long)c->heads);
    if (!sasrec) {
        if (c->mem_key % 2)
            return elastic_error(ELASTIC_ERR_FORMAT, "config key 'mem_key' must be even, got %lld",
                                 (long long)c->mem_key);
        if (c->mem_topk > c->mem_subkeys)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "config key 'mem_topk' (%lld) must be <= mem_subkeys (%lld)",
                                 (long long)c->mem_topk, (long long)c->mem_subkeys);
    }
    if (c->mask_token != 0 && c->mask_token != 1)
        return elastic_error(ELASTIC_ERR_FORMAT, "config key 'mask_token' must be 0 or 1, got %lld",
                             (long long)c->mask_token);
    if (!(c->ln_eps > 0) || !isfinite(c->ln_eps))
        return elastic_error(ELASTIC_ERR_FORMAT, "config key 'ln_eps' must be positive");
    return ELASTIC_OK;
}

elastic_status elastic_config_to_strings(const elastic_config *config,
                                         elastic_status (*emit)(const char *key,
                                                                const char *value, void *ctx),
                                         void *ctx)
{
    char buf[64];
    ELASTIC_TRY(emit("format_version", "1", ctx));
    ELASTIC_TRY(emit("model", config->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic",
                     ctx));
    for (size_t i = 0; i < N_INT_KEYS; i++) {
        snprintf(buf, sizeof buf, "%lld",
                 (long long)*int_field((elastic_config *)config, i));
        ELASTIC_TRY(emit(int_keys[i].key, buf, ctx));
    }
    snprintf(buf, sizeof buf, "%.17g", config->ln_eps);
    ELASTIC_TRY(emit("ln_eps", buf, ctx));
    return emit("mask_token", config->mask_token ? "1" : "0", ctx);
}
