/*
 * cmd_info.c - `elastic info MODEL`: the config, tensors, parameter count and
 * metadata of a model file.
 */
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

const char cmd_info_usage[] = "usage: elastic info MODEL\n"
                              "Prints the config, parameters and metadata of a model file.\n";

int cmd_info(int argc, char **argv)
{
    int c = cli_getopt(argc, argv, "", NULL, 0, NULL);
    if (c != -1) return cli_stop(c);
    if (optind >= argc) return cli_usage_error("needs a MODEL file");
    if (optind + 1 < argc) return cli_usage_error("unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];
    elastic_model *model;
    elastic_status st = elastic_model_load(&model, path);
    if (st != ELASTIC_OK) return cli_fail(st, path);
    const elastic_config *cfg = elastic_model_config(model);
    printf("model       %s\n", cfg->model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic");
    printf("num_items   %lld\nmax_len     %lld\nhidden      %lld\nheads       %lld\n"
           "layers      %lld\nffn         %lld\n",
           (long long)cfg->num_items, (long long)cfg->max_len, (long long)cfg->hidden,
           (long long)cfg->heads, (long long)cfg->layers, (long long)cfg->ffn);
    if (cfg->model == ELASTIC_MODEL_KIND_ELASTIC)
        printf("experts     %lld\nmem_subkeys %lld\nmem_key     %lld\nmem_topk    %lld\n",
               (long long)cfg->experts, (long long)cfg->mem_subkeys, (long long)cfg->mem_key,
               (long long)cfg->mem_topk);
    printf("ln_eps      %g\n", cfg->ln_eps);
    long long total = 0;
    int n = elastic_model_tensor_count(model);
    printf("tensors     %d\n", n);
    for (int i = 0; i < n; i++) {
        const char *name = elastic_model_tensor_name(model, i);
        int64_t shape[4];
        int ndim;
        elastic_model_tensor(model, name, NULL, shape, &ndim);
        long long numel = 1;
        printf("  %-32s [", name);
        for (int d = 0; d < ndim; d++) {
            printf("%s%lld", d ? ", " : "", (long long)shape[d]);
            numel *= shape[d];
        }
        printf("]\n");
        total += numel;
    }
    printf("parameters  %lld (%.2f MiB)\n", total, (double)total * 4 / (1024.0 * 1024.0));
    int n_meta = elastic_model_metadata_count(model);
    if (n_meta) printf("metadata    %d\n", n_meta);
    for (int i = 0; i < n_meta; i++) {
        const char *key = elastic_model_metadata_key(model, i);
        const char *value = elastic_model_metadata(model, key);
        size_t len = strlen(value);
        if (len > 60)
            printf("  %-32s %.56s... (%zu bytes)\n", key, value, len);
        else
            printf("  %-32s %s\n", key, value);
    }
    elastic_model_free(model);
    return 0;
}
