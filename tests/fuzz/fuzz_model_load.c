/*
 * fuzz_model_load.c - fuzz target: the model-file loader (safetensors
 * header, tensor table, config metadata, item map) through
 * elastic_model_load on arbitrary bytes. A file that loads must answer every
 * accessor, save and load back to the same config, and, when small, run a
 * recommendation without a crash.
 */
#include <stdio.h>
#include <string.h>

#include "elastic.h"
#include "fuzz_target.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void exercise(elastic_model *model)
{
    const elastic_config *c = elastic_model_config(model);
    fuzz_check(c != NULL, "a loaded model has a config");
    int n = elastic_model_tensor_count(model);
    for (int i = 0; i < n; i++) {
        const char *name = elastic_model_tensor_name(model, i);
        fuzz_check(name != NULL, "every tensor index has a name");
        const float *data;
        int64_t shape[4];
        int ndim;
        fuzz_check(elastic_model_tensor(model, name, &data, shape, &ndim) == ELASTIC_OK,
                   "a listed tensor is found by name");
    }
    for (int i = 0; i < elastic_model_metadata_count(model); i++) {
        const char *key = elastic_model_metadata_key(model, i);
        fuzz_check(key && elastic_model_metadata(model, key), "metadata keys have values");
    }
    elastic_item_map *map = NULL;
    if (elastic_item_map_init(&map, model) == ELASTIC_OK) {
        for (int32_t v = 1; v <= 3 && v <= c->num_items; v++) {
            const char *name = elastic_item_map_name(map, v);
            fuzz_check(name && elastic_item_map_id(map, name) == v, "the item map is a bijection");
        }
        elastic_item_map_free(map);
    }
    /* Small models run: arbitrary weights (NaN, inf) must not crash. */
    if (elastic_model_parameter_count(model) <= 20000 && c->max_len <= 64) {
        elastic_session_options o;
        elastic_session_options_default(&o);
        o.backend = "cpu";
        o.num_threads = 1;
        elastic_session *s = NULL;
        if (elastic_session_init(&s, model, &o) == ELASTIC_OK) {
            int32_t items[3] = {1, 1, 1};
            int64_t offsets[2] = {0, c->num_items >= 1 ? 3 : 0};
            int32_t ids[4];
            float scores[4];
            elastic_session_recommend(s, items, offsets, 1, 4, 1, ids, scores);
            elastic_session_free(s);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_scratch(".st", data, size);
    if (!path) return 0;
    elastic_model *model = NULL;
    elastic_status st = elastic_model_load(&model, path);
    if (st != ELASTIC_OK) {
        fuzz_check(model == NULL, "a failed load leaves no model");
        fuzz_check(elastic_last_error()[0] != '\0', "a failed load says why");
        return 0;
    }
    exercise(model);
    /* Save and load back: the same config and tensor count. */
    const char *again = fuzz_scratch_path(".again.st");
    if (again && elastic_model_save(model, again) == ELASTIC_OK) {
        elastic_model *back = NULL;
        fuzz_check(elastic_model_load(&back, again) == ELASTIC_OK, "a saved model loads back");
        fuzz_check(fuzz_config_equal(elastic_model_config(back), elastic_model_config(model)),
                   "a saved model keeps its config");
        fuzz_check(elastic_model_tensor_count(back) == elastic_model_tensor_count(model),
                   "a saved model keeps its tensors");
        elastic_model_free(back);
    }
    elastic_model_free(model);
    return 0;
}
