/*
 * fuzz_serve_request.c - fuzz target: elastic serve's request parser
 * (tools/serve/serve_request.c, in process, no sockets) for the three
 * endpoints, with and without an item map; the first byte picks both. A
 * request that parses must respect the limits and the vocabulary, and render
 * as a response once given results; a refused one renders its error body.
 */
#include <stdlib.h>
#include <string.h>

#include "elastic.h"
#include "fuzz_target.h"
#include "serve_request.h"
#include "serve_work.h"

static elastic_model *model;
static elastic_item_map *map;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* A model with 6 items named "a".."f", for requests in the data's ids. */
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 6;
    c.hidden = 8;
    c.max_len = 8;
    c.experts = 2;
    c.mem_subkeys = 4;
    c.mem_topk = 2;
    c.layers = 1;
    if (elastic_config_validate(&c) == ELASTIC_OK && elastic_model_init_random(&model, &c, 1) == ELASTIC_OK &&
        elastic_model_set_metadata(model, "item_ids", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]") ==
            ELASTIC_OK)
        elastic_item_map_init(&map, model);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    serve_op op = (serve_op)(data[0] % 3);
    int mapped = (data[0] >> 2) & 1;
    if (mapped && !map) return 0;
    serve_limits limits;
    serve_limits_default(&limits);
    limits.max_users = 16;
    limits.max_history = 32;
    limits.max_top_k = 8;
    limits.max_candidates = 16;
    serve_vocab vocab = {mapped ? 6 : 50, 4, mapped ? map : NULL};
    serve_work *w = NULL;
    serve_error err;
    memset(&err, 0, sizeof err);
    if (serve_request_parse(op, (const char *)data + 1, size - 1, &vocab, &limits, &w, &err) != 0) {
        fuzz_check(w == NULL, "a refused request gives no work");
        fuzz_check(err.status >= 400 && err.status < 500 && err.code[0] && err.message[0],
                   "a refusal has a 4xx status, a code and a message");
        char *body = serve_error_render(&err);
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
    /* Fake results (id 1, score 0), then the response body. */
    if (w->op == SERVE_OP_USER_VECTORS) {
        w->dim = (int)vocab.dim;
        w->vectors = calloc((size_t)w->users * (size_t)vocab.dim, sizeof *w->vectors);
    } else {
        fuzz_check(w->top_k >= 1 && w->top_k <= limits.max_top_k, "top_k within limits");
        w->ids = calloc((size_t)w->users * (size_t)w->top_k, sizeof *w->ids);
        w->scores = calloc((size_t)w->users * (size_t)w->top_k, sizeof *w->scores);
        if (w->ids)
            for (size_t i = 0; i < (size_t)w->users * (size_t)w->top_k; i++)
                w->ids[i] = 1;
    }
    if (w->vectors || (w->ids && w->scores)) {
        w->status = SERVE_WORK_DONE;
        char *body = serve_response_render(w, &vocab);
        free(body);
    }
    serve_work_free(w);
    return 0;
}
