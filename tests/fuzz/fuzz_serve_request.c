/*
 * fuzz_serve_request.c - fuzz target: elastic serve's request handling in
 * process, without sockets, as tools/serve/serve_routes.c does it: the
 * request parser (serve_request.c), the real compute (serve_compute.c) on an
 * elastic_session of a tiny model (50 items, d = 8, one layer, CPU backend,
 * one thread), and the response renderer. First byte:
 *   value % 3  the endpoint: recommend (rank when the body has candidates),
 *              rank, user_vectors
 *   bit 2      ids through the model's item map ("a".."z", "aa".."ax")
 *   bits 3-4   the batch limit of serve_compute: 0 = 16 users, else 1..3
 *              (so one request takes several library calls)
 * the rest: the request body. A refused request renders a 4xx error body; a
 * parsed one respects the limits and the vocabulary, computes (the work ends
 * DONE), gives valid results (ids in 1..I, distinct, best first, history
 * excluded when asked, candidates only when ranking; finite scores and
 * vectors), the same results bit for bit when all its users go in one
 * library call, and renders as a JSON response with one result per user.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elastic.h"
#include "fuzz_target.h"
#include "serve_compute.h"
#include "serve_request.h"
#include "serve_work.h"

enum { NUM_ITEMS = 50, DIM = 8 };

static elastic_model *model;
static elastic_item_map *map;
static elastic_session *session;
static serve_scratch scratch; /* a worker's buffers, reused as the server does */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = NUM_ITEMS;
    c.hidden = DIM;
    c.max_len = 8;
    c.experts = 2;
    c.mem_subkeys = 4;
    c.mem_topk = 2;
    c.layers = 1;
    /* Item names "a".."z", "aa".."ax", for requests in the data's ids. */
    char names[512] = "[";
    for (int v = 0; v < NUM_ITEMS; v++) {
        char one[16];
        if (v < 26)
            snprintf(one, sizeof one, "%s\"%c\"", v ? "," : "", 'a' + v);
        else
            snprintf(one, sizeof one, ",\"a%c\"", 'a' + (v - 26));
        strcat(names, one);
    }
    strcat(names, "]");
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = 1;
    if (elastic_config_validate(&c) != ELASTIC_OK ||
        elastic_model_init_random(&model, &c, 1) != ELASTIC_OK ||
        elastic_model_set_metadata(model, "item_ids", names) != ELASTIC_OK ||
        elastic_item_map_init(&map, model) != ELASTIC_OK ||
        elastic_session_init(&session, model, &o) != ELASTIC_OK) {
        fprintf(stderr, "fuzz_serve_request: set-up failed: %s\n", elastic_last_error());
        abort();
    }
    return 0;
}

static int in_row(const int32_t *row, int64_t n, int32_t v)
{
    for (int64_t i = 0; i < n; i++)
        if (row[i] == v) return 1;
    return 0;
}

/* The results of a computed work, user by user. */
static void check_results(const serve_work *w)
{
    if (w->op == SERVE_OP_USER_VECTORS) {
        fuzz_check(w->dim == DIM, "user vectors have the model's size");
        for (size_t i = 0; i < (size_t)w->users * (size_t)w->dim; i++)
            fuzz_check(isfinite(w->vectors[i]), "user vectors are finite");
        return;
    }
    for (int b = 0; b < w->users; b++) {
        const int32_t *ids = w->ids + (size_t)b * (size_t)w->top_k;
        const float *sc = w->scores + (size_t)b * (size_t)w->top_k;
        const int32_t *hist = w->items + w->offsets[b];
        int64_t hl = w->offsets[b + 1] - w->offsets[b];
        const int32_t *cand = w->op == SERVE_OP_RANK ? w->candidates + w->cand_offsets[b] : NULL;
        int64_t cl = cand ? w->cand_offsets[b + 1] - w->cand_offsets[b] : 0;
        /* How many ids the list must hold: every eligible item, up to top_k. */
        int64_t eligible = 0;
        for (int32_t v = 1; v <= NUM_ITEMS; v++)
            if ((!cand || in_row(cand, cl, v)) && !(w->exclude_history && in_row(hist, hl, v)))
                eligible++;
        int64_t expect = eligible < w->top_k ? eligible : w->top_k;
        for (int j = 0; j < w->top_k; j++) {
            if (j >= expect) {
                fuzz_check(ids[j] == 0, "a list ends with id 0 past its eligible items");
                continue;
            }
            fuzz_check(ids[j] >= 1 && ids[j] <= NUM_ITEMS, "result ids are 1..I");
            fuzz_check(isfinite(sc[j]), "result scores are finite");
            fuzz_check(!in_row(ids, j, ids[j]), "result ids are distinct");
            fuzz_check(!cand || in_row(cand, cl, ids[j]), "a ranked id is a candidate");
            fuzz_check(!w->exclude_history || !in_row(hist, hl, ids[j]),
                       "an excluded history item is not recommended");
            if (j > 0)
                fuzz_check(sc[j - 1] > sc[j] || (sc[j - 1] == sc[j] && ids[j - 1] < ids[j]),
                           "best first, ties by the smaller id");
        }
    }
}

/* The same work computed with all its users in one library call. */
static void check_batching(const serve_work *w)
{
    serve_work *one = serve_work_new();
    if (!one) return;
    *one = *w;
    one->ids = NULL;
    one->scores = NULL;
    one->vectors = NULL;
    one->model = NULL;
    one->status = SERVE_WORK_PENDING;
    serve_work *list[1] = {one};
    serve_compute(session, list, 1, w->users, &scratch);
    fuzz_check(one->status == SERVE_WORK_DONE, "a valid request computes in one call too");
    if (one->status == SERVE_WORK_DONE) {
        if (w->op == SERVE_OP_USER_VECTORS)
            fuzz_check(!memcmp(one->vectors, w->vectors,
                               sizeof *w->vectors * (size_t)w->users * (size_t)w->dim),
                       "batching does not change user vectors");
        else
            fuzz_check(
                !memcmp(one->ids, w->ids, sizeof *w->ids * (size_t)w->users * (size_t)w->top_k) &&
                    !memcmp(one->scores, w->scores,
                            sizeof *w->scores * (size_t)w->users * (size_t)w->top_k),
                "batching does not change results");
    }
    /* The arrays of what to compute are w's: not freed twice. */
    one->items = NULL;
    one->offsets = NULL;
    one->candidates = NULL;
    one->cand_offsets = NULL;
    serve_work_free(one);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    serve_op op = (serve_op)(data[0] % 3);
    int mapped = (data[0] >> 2) & 1;
    int max_batch = (data[0] >> 3) & 3;
    if (max_batch == 0) max_batch = 16;
    serve_limits limits;
    serve_limits_default(&limits);
    limits.max_users = 16;
    limits.max_history = 32;
    limits.max_top_k = 8;
    limits.max_candidates = 16;
    serve_vocab vocab = {NUM_ITEMS, DIM, mapped ? map : NULL};
    serve_work *w = NULL;
    serve_error err;
    memset(&err, 0, sizeof err);
    if (serve_request_parse(op, (const char *)data + 1, size - 1, &vocab, &limits, &w, &err) != 0) {
        fuzz_check(w == NULL, "a refused request gives no work");
        fuzz_check(err.status >= 400 && err.status < 500 && err.code[0] && err.message[0],
                   "a refusal has a 4xx status, a code and a message");
        char *body = serve_error_render(&err);
        fuzz_check(body != NULL, "an error body renders");
        free(body);
        return 0;
    }
    fuzz_check(w && w->users >= 1 && w->users <= limits.max_users, "users within limits");
    for (int b = 0; b < w->users; b++) {
        fuzz_check(w->offsets[b + 1] >= w->offsets[b] &&
                       w->offsets[b + 1] - w->offsets[b] <= limits.max_history,
                   "histories within limits");
        for (int64_t i = w->offsets[b]; i < w->offsets[b + 1]; i++)
            fuzz_check(w->items[i] >= 1 && w->items[i] <= vocab.num_items, "items in the model");
    }
    if (w->op != SERVE_OP_USER_VECTORS)
        fuzz_check(w->top_k >= 1 && w->top_k <= limits.max_top_k, "top_k within limits");
    serve_work *list[1] = {w};
    serve_compute(session, list, 1, max_batch, &scratch);
    fuzz_check(w->status == SERVE_WORK_DONE, "a parsed request computes");
    if (w->status == SERVE_WORK_DONE) {
        check_results(w);
        if (w->users > 1 && max_batch < w->users) check_batching(w);
        char *body = serve_response_render(w, &vocab);
        fuzz_check(body != NULL, "a response renders");
        json_t *root = body ? json_loads(body, 0, NULL) : NULL;
        json_t *results = json_object_get(root, "results");
        fuzz_check(json_is_array(results) && json_array_size(results) == (size_t)w->users,
                   "a response has one result per user");
        json_decref(root);
        free(body);
    }
    serve_work_free(w);
    return 0;
}
