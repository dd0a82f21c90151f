/*
 * fuzz_data_load.c - fuzz target: the interaction-log readers of
 * core/data/data.c (pairs, MovieLens, CSV, sequences, RecBole .inter and
 * format detection) through elastic_dataset_load. The first byte picks the
 * format and the file name (detection looks at both); the rest is the file:
 *   bits 0-1  format: auto, pairs, MovieLens, CSV; with bit 4 set, bit 0
 *             picks sequences or RecBole instead (so every reader is reached
 *             directly, not only through detection)
 *   bits 2-3  name: .txt, .dat, .csv, .log; bit 5 set: .inter
 * (Inputs with bits 4 and 5 clear mean what they meant before those readers
 * existed.) A log
 * that loads must give consistent users, splits and item names, and its item
 * map must apply to itself as the identity.
 */
#include <stdlib.h>
#include <string.h>

#include "elastic.h"
#include "fuzz_target.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void exercise(elastic_dataset *d)
{
    int64_t users = elastic_dataset_num_users(d), items = elastic_dataset_num_items(d);
    int64_t events = 0;
    fuzz_check(users >= 1 && items >= 1, "a loaded log has users and items");
    for (int64_t u = 0; u < users; u++) {
        const int32_t *seq;
        int64_t len;
        fuzz_check(elastic_dataset_user(d, u, &seq, &len) == ELASTIC_OK, "every user is there");
        events += len;
        for (int64_t i = 0; i < len; i++)
            fuzz_check(seq[i] >= 1 && seq[i] <= items, "item ids are 1..I");
        fuzz_check(elastic_dataset_user_name(d, u) != NULL, "every user has a name");
        const int32_t *h;
        int64_t hl;
        int32_t target;
        elastic_status st = elastic_dataset_split(d, u, ELASTIC_SPLIT_TEST, &h, &hl, &target);
        fuzz_check((st == ELASTIC_OK) == (len >= 3), "users with >= 3 events have a test split");
        if (st == ELASTIC_OK) fuzz_check(hl == len - 1 && target == seq[len - 1], "test split");
    }
    fuzz_check(events == elastic_dataset_num_events(d), "events add up");
    for (int32_t v = 1; v <= items; v++) {
        const char *name = elastic_dataset_item_name(d, v);
        fuzz_check(name && elastic_dataset_item_id(d, name) == v, "item names map back");
    }
    char *json = NULL;
    if (elastic_dataset_item_map_json(d, &json) == ELASTIC_OK) {
        fuzz_check(elastic_dataset_apply_item_map(d, json) == ELASTIC_OK,
                   "a log's own item map applies to it");
        free(json);
    }
    elastic_metrics m;
    elastic_evaluate_popularity(d, ELASTIC_SPLIT_VALID, 50, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char *const suffix[] = {".txt", ".dat", ".csv", ".log"};
    elastic_data_format format = (elastic_data_format)(data[0] & 3);
    if (data[0] & 0x10)
        format = data[0] & 1 ? ELASTIC_DATA_FORMAT_RECBOLE : ELASTIC_DATA_FORMAT_SEQUENCES;
    const char *name = data[0] & 0x20 ? ".inter" : suffix[(data[0] >> 2) & 3];
    const char *path = fuzz_write_scratch(name, data + 1, size - 1);
    if (!path) return 0;
    elastic_dataset *d = NULL;
    elastic_status st = elastic_dataset_load(&d, path, format);
    if (st != ELASTIC_OK) {
        fuzz_check(d == NULL, "a failed load leaves no dataset");
        fuzz_check(elastic_last_error()[0] != '\0', "a failed load says why");
        return 0;
    }
    exercise(d);
    elastic_dataset_free(d);
    return 0;
}
