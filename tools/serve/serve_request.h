/*
 * serve_request.h - request JSON in, response JSON out, with no sockets:
 * parsing and validating a request body into a serve_work (users in the
 * model's item ids), rendering a computed work, and the error body
 *   {"error": {"code": "...", "message": "..."}}
 * with its HTTP status. Never crashes on input; every refusal names the
 * problem (the field, the user, the item, the limit and its flag).
 *
 * Request bodies (POST /v1/recommend; POST /v1/user_vectors takes only
 * "history"/"histories"):
 *   {"histories": [[item, ...], ...], "top_k": 10, "exclude_history": true,
 *    "candidates": [[item, ...], ...]}
 * or "history": [item, ...] (and "candidates": [item, ...]) for one user.
 * Items are the data's own ids (JSON strings or integers) when the model
 * has an item map, else integers 1..I.
 */
#ifndef ELASTIC_SERVE_REQUEST_H
#define ELASTIC_SERVE_REQUEST_H

#include "elastic.h"
#include "serve_work.h"

#include <stddef.h>
#include <stdint.h>

typedef struct serve_limits {
    size_t max_body;    /* bytes of a request body (--max-body) */
    int max_users;      /* users per request (--max-users) */
    int max_history;    /* items per history (--max-history) */
    int max_top_k;      /* top_k (--max-top-k) */
    int max_candidates; /* candidates per user (--max-candidates) */
} serve_limits;

/* The defaults of the flags above. */
void serve_limits_default(serve_limits *limits);

/* What a request is checked against: the model's items, its user-vector
 * size and its item map (NULL: ids are 1..num_items). */
typedef struct serve_vocab {
    int64_t num_items;
    int64_t dim;
    const elastic_item_map *map;
} serve_vocab;

typedef struct serve_error {
    int status;    /* HTTP status */
    char code[32]; /* machine-readable, e.g. "unknown_item" */
    char message[384];
} serve_error;

/* Sets *err and returns -1. */
int serve_error_set(serve_error *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses a body for endpoint SERVE_OP_RECOMMEND (RANK when it has
 * "candidates") or SERVE_OP_USER_VECTORS. Returns 0 with a new work in *out
 * (no model reference yet), or -1 with *err (a 4xx). */
int serve_request_parse(serve_op endpoint, const char *body, size_t len, const serve_vocab *vocab,
                        const serve_limits *limits, serve_work **out, serve_error *err);

/* The response body of a computed work (malloc'd JSON), NULL when out of
 * memory. Scores are printed with 9 significant digits: parsed back and
 * rounded to float32 they are bitwise the library's. */
char *serve_response_render(const serve_work *work, const serve_vocab *vocab);

/* The error body (malloc'd JSON), NULL when out of memory. */
char *serve_error_render(const serve_error *err);

#endif
