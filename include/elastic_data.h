/*
 * elastic_data.h - part of the public C API of libelastic (included by elastic.h).
 */
#ifndef ELASTIC_DATA_H
#define ELASTIC_DATA_H

#include "elastic.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ datasets */

/* An interaction log: per user, item ids remapped to 1..I in time order, the
 * map back to the original ids, and the leave-one-out split of spec
 * section 5 (last item = test target, the one before = validation target,
 * the rest = training items). */
typedef struct elastic_dataset elastic_dataset;

typedef enum elastic_data_format {
    ELASTIC_DATA_FORMAT_AUTO = 0,   /* from the name and the first line */
    ELASTIC_DATA_FORMAT_PAIRS = 1,  /* "user item" per line, in time order (SASRec) */
    ELASTIC_DATA_FORMAT_MOVIELENS = 2, /* ratings.dat: user::item::rating::timestamp */
    ELASTIC_DATA_FORMAT_CSV = 3     /* header, then user,item,rating,timestamp */
} elastic_data_format;

/* Reads a log. Malformed input gives ELASTIC_ERR_FORMAT with the line number
 * in the message. Users are numbered 0..U-1 in order of first appearance;
 * items are numbered 1..I in order of first appearance. MovieLens and CSV
 * events are ordered by timestamp per user (stable for equal timestamps). */
ELASTIC_API elastic_status elastic_dataset_load(elastic_dataset **dataset, const char *path,
                                                elastic_data_format format);
ELASTIC_API void elastic_dataset_free(elastic_dataset *dataset);

ELASTIC_API int64_t elastic_dataset_num_users(const elastic_dataset *dataset);
ELASTIC_API int64_t elastic_dataset_num_items(const elastic_dataset *dataset);
ELASTIC_API int64_t elastic_dataset_num_events(const elastic_dataset *dataset);

/* A user's whole sequence (remapped ids, time order). */
ELASTIC_API elastic_status elastic_dataset_user(const elastic_dataset *dataset, int64_t user,
                                                const int32_t **items, int64_t *len);

typedef enum elastic_split {
    ELASTIC_SPLIT_VALID = 0, /* history = training items, target = second to last */
    ELASTIC_SPLIT_TEST = 1   /* history = training items + validation item, target = last */
} elastic_split;

/* Users with at least 3 events take part in evaluation; users with fewer
 * have no targets. *history points into the user's sequence. Returns
 * ELASTIC_ERR_OUT_OF_RANGE for a user without that split. */
ELASTIC_API elastic_status elastic_dataset_split(const elastic_dataset *dataset, int64_t user,
                                                 elastic_split split, const int32_t **history,
                                                 int64_t *len, int32_t *target);

/* Training items of a user: all but the last two (all of them for users with
 * fewer than 3 events). */
ELASTIC_API elastic_status elastic_dataset_train_items(const elastic_dataset *dataset,
                                                       int64_t user, const int32_t **items,
                                                       int64_t *len);

/* The original id (as written in the log) of item 1..I, and back. */
ELASTIC_API const char *elastic_dataset_item_name(const elastic_dataset *dataset, int32_t item);
ELASTIC_API int32_t elastic_dataset_item_id(const elastic_dataset *dataset, const char *name);

/* The item map as a model-file metadata value (key "item_ids": a JSON array
 * of the original ids of items 1..I), and a lookup built from one. */
ELASTIC_API elastic_status elastic_dataset_item_map_json(const elastic_dataset *dataset,
                                                         char **json /* free() it */);

/* ------------------------------------------------------- synthetic logs */

typedef struct elastic_synth_options {
    int64_t users;        /* default 2000 */
    int64_t items;        /* default 1000 */
    int64_t clusters;     /* planted interest clusters, default 20 */
    int64_t min_len, max_len; /* events per user, default 20..80 */
    double p_sequential;  /* probability that the next item follows a planted
                             successor of the previous one, default 0.5 */
    uint64_t seed;        /* default 1 */
} elastic_synth_options;

ELASTIC_API void elastic_synth_options_default(elastic_synth_options *options);
/* A deterministic synthetic log (the same options give the same log). */
ELASTIC_API elastic_status elastic_dataset_synth(elastic_dataset **dataset,
                                                 const elastic_synth_options *options);
/* Writes a dataset as "user item" lines (original ids), users in order. */
ELASTIC_API elastic_status elastic_dataset_save_pairs(const elastic_dataset *dataset,
                                                      const char *path);

/* ------------------------------------------------------------- metrics */

/* Full-ranking metrics of spec section 6 at K = 10 and 50. */
typedef struct elastic_metrics {
    int64_t users;
    double hr10, hr50, ndcg10, ndcg50, mrr;
} elastic_metrics;

/* The rank (from 1) of `target` among items 1..I by `scores` (scores[v-1] is
 * item v), ties by the smaller id, leaving out the items in `exclude`
 * (target itself is never left out). NaN scores rank below every number. */
ELASTIC_API int64_t elastic_rank_of(const float *scores, int64_t num_items, int32_t target,
                                    const int32_t *exclude, int64_t n_exclude);

/* Accumulates one rank; elastic_metrics_finish divides by the user count. */
ELASTIC_API void elastic_metrics_add(elastic_metrics *sums, int64_t rank);
ELASTIC_API void elastic_metrics_finish(elastic_metrics *sums);

/* Evaluates a model (through a session) on a split: scores for every user
 * with that split, history left out. */
ELASTIC_API elastic_status elastic_evaluate(elastic_session *session,
                                            const elastic_dataset *dataset, elastic_split split,
                                            int64_t max_users /* 0 = all */,
                                            elastic_metrics *metrics);
/* The popularity ranking (training-item counts, ties by smaller id) on the
 * same users and targets. */
ELASTIC_API elastic_status elastic_evaluate_popularity(const elastic_dataset *dataset,
                                                       elastic_split split, int64_t max_users,
                                                       elastic_metrics *metrics);

#ifdef __cplusplus
}
#endif

#endif /* ELASTIC_DATA_H */
