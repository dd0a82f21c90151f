/*
 * elastic_data.h - interaction logs, leave-one-out splits, synthetic data and
 * evaluation metrics: part of the public C API of libelastic (included by
 * elastic.h; the conventions there hold here too).
 *
 * An elastic_dataset is a log of (user, item) events read from a file
 * ("user item" lines, MovieLens ratings.dat or CSV) or generated
 * (elastic_dataset_synth). Items are renumbered 1..I by first appearance and
 * users 0..U-1; the original ids stay available, and the item map can be
 * stored in a model file (metadata "item_ids") so that a model serves and is
 * evaluated in the data's own ids. Each user's sequence is split as spec
 * section 5 (docs/spec/model.md) says: the last item is the test target, the one before it the
 * validation target, the rest are training items. elastic_evaluate ranks all
 * items for every user of a split (spec section 6: HR and NDCG at 10 and 50,
 * MRR) through a session, and elastic_evaluate_popularity gives the
 * popularity baseline on the same users.
 *
 * Usage (error checks shortened; every call returns an elastic_status):
 *
 *   elastic_dataset *data;
 *   if (elastic_dataset_load(&data, "ratings.dat", ELASTIC_DATA_FORMAT_AUTO) != ELASTIC_OK)
 *       fprintf(stderr, "%s\n", elastic_last_error());     // "path:line: ..."
 *   const char *map = elastic_model_metadata(model, "item_ids");
 *   if (map) elastic_dataset_apply_item_map(data, map);     // the model's ids
 *   elastic_metrics m = {0}, pop = {0};
 *   elastic_evaluate(session, data, ELASTIC_SPLIT_TEST, 0, &m);   // 0 = all users
 *   elastic_evaluate_popularity(data, ELASTIC_SPLIT_TEST, 0, &pop);
 *   printf("HR@10 %.4f NDCG@10 %.4f (popularity %.4f)\n", m.hr10, m.ndcg10, pop.hr10);
 *   elastic_dataset_free(data);
 *
 * (model and session as in elastic.h.) A synthetic log instead of a file:
 *
 *   elastic_synth_options so;
 *   elastic_synth_options_default(&so);                     // 2000 users, 1000 items
 *   elastic_dataset_synth(&data, &so);
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
    ELASTIC_DATA_FORMAT_CSV = 3,    /* header, then user,item,rating,timestamp */
    ELASTIC_DATA_FORMAT_SEQUENCES = 4, /* "user item item ..." one user per line (S3-Rec,
                                          BERT4Rec data releases) */
    ELASTIC_DATA_FORMAT_RECBOLE = 5 /* RecBole atomic .inter: typed, tab-separated */
} elastic_data_format;

/* Reads a log. Malformed input gives ELASTIC_ERR_FORMAT with "path:line:" in
 * the message; a missing file ELASTIC_ERR_IO; a file without events
 * ELASTIC_ERR_FORMAT. Users are numbered 0..U-1 and items 1..I in order of
 * first appearance in the file. MovieLens and CSV events are ordered by
 * timestamp per user (stable: equal timestamps keep the file order).
 * Blank lines are skipped, fields trimmed, "\r\n" accepted.
 *   PAIRS: exactly two whitespace-separated fields per line.
 *   MOVIELENS: exactly four "::"-separated fields; rating and timestamp
 *     must be numbers.
 *   CSV: a header naming the columns (case-insensitive): user and item are
 *     required (aliases user_id, userid, item_id, itemid, movie_id, movieid);
 *     timestamp (or time, ts) is optional: without it the file order is the
 *     time order; rating is optional and, when present, must be a number or
 *     empty (it is not used: every row is an event). Other columns are
 *     ignored. Every row has as many fields as the header; "..." quoting
 *     with "" for a quote is accepted within a line.
 *   SEQUENCES: "user item item ...", whitespace-separated, a user and at
 *     least one item per line, items in time order; a user on several lines
 *     gets the lines' items in file order.
 *   RECBOLE: a RecBole atomic file (.inter): tab-separated, a header of
 *     typed fields name:type (type token, token_seq, float or float_seq),
 *     e.g. "user_id:token\titem_id:token\trating:float\ttimestamp:float";
 *     the names as for CSV (user_id and item_id required, timestamp and
 *     rating optional, others ignored); every row has as many fields.
 *   AUTO: the first data line and the name decide. A header of typed fields
 *     or a name ending in .inter is RECBOLE; a name ending in .csv is CSV; a
 *     first line with "::" or a name ending in .dat is MovieLens; a first
 *     line with a comma is CSV; else whitespace-separated ids: PAIRS when
 *     every line has two fields, SEQUENCES when some line has more (a file of
 *     two-field lines means the same in both). Conflicting signs (e.g. a .csv
 *     name and a "::" line, or both "::" and a comma) are an
 *     ELASTIC_ERR_FORMAT that names the candidate formats;
 *     elastic_dataset_format says what was chosen. */
ELASTIC_API elastic_status elastic_dataset_load(elastic_dataset **dataset, const char *path,
                                                elastic_data_format format);
/* The format a dataset was read as (AUTO resolved; PAIRS for synthetic
 * data), and a format's name ("pairs", "sequences", "recbole", ...). */
ELASTIC_API elastic_data_format elastic_dataset_format(const elastic_dataset *dataset);
ELASTIC_API const char *elastic_data_format_name(elastic_data_format format);
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

/* The original id (as written in the log) of item 1..I (NULL outside), and
 * back (0 for an unknown name). */
ELASTIC_API const char *elastic_dataset_item_name(const elastic_dataset *dataset, int32_t item);
ELASTIC_API int32_t elastic_dataset_item_id(const elastic_dataset *dataset, const char *name);
/* The original id of user 0..U-1 (NULL outside). */
ELASTIC_API const char *elastic_dataset_user_name(const elastic_dataset *dataset, int64_t user);

/* The item map as a model-file metadata value (key "item_ids": a JSON array
 * of the original ids of items 1..I). */
ELASTIC_API elastic_status elastic_dataset_item_map_json(const elastic_dataset *dataset,
                                                         char **json /* free() it */);
/* Renumbers the dataset's items by an item map written by
 * elastic_dataset_item_map_json (a model's "item_ids"): the item named
 * json[i] becomes id i+1 and num_items becomes the map's length. Items of
 * the data missing from the map give ELASTIC_ERR_OUT_OF_RANGE naming the
 * item; a malformed map (not an array of distinct non-empty strings)
 * ELASTIC_ERR_FORMAT. On error the dataset is unchanged. */
ELASTIC_API elastic_status elastic_dataset_apply_item_map(elastic_dataset *dataset,
                                                          const char *json);

/* A model's item map (metadata "item_ids", written by the trainer): original
 * ids <-> the model's ids 1..I, for serving in the data's own ids. */
typedef struct elastic_item_map elastic_item_map;

/* ELASTIC_ERR_FORMAT when the model has no map or a malformed one. */
ELASTIC_API elastic_status elastic_item_map_init(elastic_item_map **map,
                                                 const elastic_model *model);
ELASTIC_API void elastic_item_map_free(elastic_item_map *map);
/* The model's id of an original id, or 0 if the model does not know it. */
ELASTIC_API int32_t elastic_item_map_id(const elastic_item_map *map, const char *name);
/* The original id of item 1..I, or NULL. */
ELASTIC_API const char *elastic_item_map_name(const elastic_item_map *map, int32_t item);

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
/* A deterministic synthetic log (the same options give the same log; see
 * core/synth.c for the planted structure): users belong to interest
 * clusters with Zipf-skewed item popularity, and every item has a planted
 * successor that follows it with probability p_sequential. Users are named
 * "1".."U"; item v is named "v" (all I items count, seen or not). */
ELASTIC_API elastic_status elastic_dataset_synth(elastic_dataset **dataset,
                                                 const elastic_synth_options *options);
/* Writes a dataset as "user item" lines (original ids), users in order;
 * ELASTIC_ERR_FORMAT when an id holds a space or a tab. */
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
 * (duplicates and ids outside 1..I are ignored; target itself is never left
 * out). NaN scores rank below every number (NaNs among themselves by id).
 * Returns 0 for NULL scores or a target outside 1..I. */
ELASTIC_API int64_t elastic_rank_of(const float *scores, int64_t num_items, int32_t target,
                                    const int32_t *exclude, int64_t n_exclude);

/* Accumulates one rank into zeroed sums (a rank < 1 counts as a miss);
 * elastic_metrics_finish divides by the user count. NDCG@K adds
 * 1/log2(rank+1) for rank <= K, MRR adds 1/rank. */
ELASTIC_API void elastic_metrics_add(elastic_metrics *sums, int64_t rank);
ELASTIC_API void elastic_metrics_finish(elastic_metrics *sums);

/* Evaluates a model (through a session) on a split: scores for every user
 * with that split (the first max_users such users in user order), the
 * split's whole history left out of the ranking. The data's item ids must
 * be the model's (see elastic_dataset_apply_item_map); data with more items
 * than the model gives ELASTIC_ERR_OUT_OF_RANGE. */
ELASTIC_API elastic_status elastic_evaluate(elastic_session *session,
                                            const elastic_dataset *dataset, elastic_split split,
                                            int64_t max_users /* 0 = all */,
                                            elastic_metrics *metrics);
/* The popularity ranking on the same users and targets: items by count
 * (ties by smaller id) over every event before the split's targets (all but
 * the last two events of each user with >= 3 events for the validation
 * split, all but the last for the test split, all events of shorter users),
 * the split's history left out. */
ELASTIC_API elastic_status elastic_evaluate_popularity(const elastic_dataset *dataset,
                                                       elastic_split split, int64_t max_users,
                                                       elastic_metrics *metrics);

#ifdef __cplusplus
}
#endif

#endif /* ELASTIC_DATA_H */
