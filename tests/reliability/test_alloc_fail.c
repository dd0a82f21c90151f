/*
 * test_alloc_fail.c - allocation-failure injection (docs/reliability.md).
 *
 * The test is linked with `-Wl,--wrap=malloc,...` (tests/reliability/
 * CMakeLists.txt): every malloc, calloc, realloc, strdup and aligned_alloc
 * call of the library's objects (and of the server's request parser) goes
 * through the wrappers below. jansson's own allocations are not failed:
 * jansson 2.14 (Debian 12) itself crashes when its allocator fails inside
 * json_loads (free(): invalid pointer from json_delete, in a seven-line
 * program with nothing of libelastic), so injecting there tests jansson,
 * not libelastic (docs/reliability.md).
 * For each path (model load, session init, plan, recommend, scores, user
 * vectors, trainer init, step, state and model save, log reading, item maps,
 * evaluation, server request parsing, and the server's whole request
 * handling: parse, compute on a session, render) the path first runs with no failure
 * and counts its allocations, N; then, for every n in 1..N, it runs again
 * with the n-th allocation failing. Every such run must either fail with a
 * status and a message, or succeed with the same results as the clean run;
 * the objects it used must still work (the clean run is repeated after each
 * failure) and be freeable. Leaks: LeakSanitizer in the sanitized build
 * checks after every path (a leak names the path). The table printed at the
 * end gives, per path, the allocation sites (distinct call sites in the
 * code) and calls, every one of them failed once, and how each run ended:
 * an error (and how many ELASTIC_ERR_NO_MEMORY), or absorbed (the call
 * succeeded with the same results: a kernel that falls back to a loop
 * without its packing buffer, a plan cache that does not keep a plan).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "elastic.h"
#if defined(ELASTIC_HAVE_SERVE)
#include "serve_compute.h"
#include "serve_request.h"
#include "serve_work.h"
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#endif
#if defined(HAVE_LSAN)
#include <sanitizer/lsan_interface.h>
#endif

/* ------------------------------------------------------------ the wrappers */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__real_aligned_alloc(size_t align, size_t n);
/* Visible: the linker may bind a shared library's reference to them. */
#define WRAPPER __attribute__((visibility("default")))
WRAPPER void *__wrap_malloc(size_t n);
WRAPPER void *__wrap_calloc(size_t n, size_t size);
WRAPPER void *__wrap_realloc(void *p, size_t n);
WRAPPER char *__wrap_strdup(const char *s);
WRAPPER void *__wrap_aligned_alloc(size_t align, size_t n);

static atomic_int armed;
static atomic_long counted;
static long fail_at; /* 0: none */
static atomic_int failed_once;

/* Allocation sites (the caller's return address) of a path: seen in the
 * clean run, and failed by some injected run. */
#define MAX_SITES 4096
static const void *sites[MAX_SITES];
static int site_failed[MAX_SITES];
static int n_sites;
static int collecting; /* the clean run records sites */

static int site_index(const void *where)
{
    for (int i = 0; i < n_sites; i++)
        if (sites[i] == where) return i;
    if (!collecting || n_sites == MAX_SITES) return -1;
    sites[n_sites] = where;
    return n_sites++;
}

static int should_fail(const void *where)
{
    if (!atomic_load(&armed)) return 0;
    long k = atomic_fetch_add(&counted, 1) + 1;
    int i = site_index(where); /* paths run one OpenMP thread: no race */
    if (k == fail_at) {
        atomic_store(&failed_once, 1);
        if (i >= 0) site_failed[i] = 1;
        return 1;
    }
    return 0;
}

#define CALLER __builtin_return_address(0)
void *__wrap_malloc(size_t n)
{
    return should_fail(CALLER) ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size)
{
    return should_fail(CALLER) ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
    return should_fail(CALLER) ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s)
{
    return should_fail(CALLER) ? NULL : __real_strdup(s);
}
void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return should_fail(CALLER) ? NULL : __real_aligned_alloc(align, n);
}

/* A path arms the injection right around the call it tests (set-up and
 * clean-up outside it are not counted). */
static void arm(void)
{
    atomic_store(&counted, 0);
    atomic_store(&armed, 1);
}
static void disarm(void)
{
    atomic_store(&armed, 0);
}

/* ------------------------------------------------------------ fixtures */

static elastic_model *model;      /* shared, read-only */
static elastic_model *wide_model; /* its config with a product-key top t > 64 (heap lists) */
static elastic_dataset *dataset;  /* shared, read-only */
static char model_path[256], pairs_path[256], ml_path[256], csv_path[256], out_path[256];
static int bad;             /* failed checks */
static int own_message;     /* the path checked its own error message */
static char saved_msg[512]; /* the message of a failed call, kept across a retry */
static int saved;

static void save_message(void)
{
    snprintf(saved_msg, sizeof saved_msg, "%s", elastic_last_error());
    saved = 1;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            bad++;                                                                                 \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static elastic_session_options session_options(void)
{
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = 1;
    return o;
}

static const int32_t hist_items[] = {1, 2, 3, 4, 5, 9, 9, 2, 17};
static const int64_t hist_offsets[] = {0, 3, 5, 9};
#define HIST_USERS 3
#define TOP_K 4

/* What a path computed, compared between the clean run and any run that
 * succeeded although an allocation failed. */
typedef struct result {
    unsigned char bytes[4096]; /* compared exactly */
    size_t n;
    float floats[1024]; /* compared within 1e-5 (relative): a kernel that
                           cannot get its packing buffer falls back to an
                           unpacked loop, which sums in another order */
    size_t nf;
} result;

static void result_put_floats(result *r, const float *p, size_t n)
{
    if (r->nf + n > sizeof r->floats / sizeof r->floats[0])
        n = sizeof r->floats / sizeof r->floats[0] - r->nf;
    memcpy(r->floats + r->nf, p, n * sizeof *p);
    r->nf += n;
}

static int result_same(const result *a, const result *b)
{
    if (a->n != b->n || memcmp(a->bytes, b->bytes, a->n) || a->nf != b->nf) return 0;
    for (size_t i = 0; i < a->nf; i++) {
        float x = a->floats[i], y = b->floats[i];
        if (x == y) continue;
        if (!(fabsf(x - y) <= 1e-5f * (1.0f + fabsf(y)))) return 0;
    }
    return 1;
}

static void result_put(result *r, const void *p, size_t n)
{
    if (r->n + n > sizeof r->bytes) n = sizeof r->bytes - r->n;
    memcpy(r->bytes + r->n, p, n);
    r->n += n;
}

typedef elastic_status (*path_fn)(result *out);

/* ------------------------------------------------------------ paths */

static elastic_status p_model_load(result *out)
{
    elastic_model *m = NULL;
    arm();
    elastic_status st = elastic_model_load(&m, model_path);
    disarm();
    if (st == ELASTIC_OK) {
        result_put(out, elastic_model_config(m), sizeof(elastic_config));
        const float *w;
        int64_t shape[4];
        int ndim;
        if (elastic_model_tensor(m, elastic_model_tensor_name(m, 0), &w, shape, &ndim) ==
            ELASTIC_OK)
            result_put(out, w, 16 * sizeof *w);
    }
    elastic_model_free(m);
    return st;
}

static elastic_status p_model_init(result *out)
{
    elastic_model *m = NULL;
    arm();
    elastic_status st = elastic_model_init_random(&m, elastic_model_config(model), 7);
    if (st == ELASTIC_OK) st = elastic_model_set_metadata(m, "note", "alloc test");
    disarm();
    if (st == ELASTIC_OK) result_put(out, elastic_model_metadata(m, "note"), 10);
    elastic_model_free(m);
    return st;
}

static elastic_status p_session_init(result *out)
{
    (void)out;
    elastic_session_options o = session_options();
    elastic_session *s = NULL;
    arm();
    elastic_status st = elastic_session_init(&s, model, &o);
    disarm();
    elastic_session_free(s);
    return st;
}

static elastic_status with_session_on(const elastic_model *m,
                                      elastic_status (*call)(elastic_session *, result *),
                                      result *out)
{
    elastic_session_options o = session_options();
    elastic_session *s = NULL;
    elastic_status st = elastic_session_init(&s, m, &o);
    if (st != ELASTIC_OK) {
        CHECK(0, "session init failed without injection: %s", elastic_last_error());
        return ELASTIC_OK;
    }
    arm();
    st = call(s, out);
    disarm();
    if (st != ELASTIC_OK) { /* the session still works after the failure */
        save_message();
        result again = {.n = 0};
        CHECK(call(s, &again) == ELASTIC_OK, "session unusable after a failed call: %s",
              elastic_last_error());
    }
    elastic_session_free(s);
    return st;
}

static elastic_status with_session(elastic_status (*call)(elastic_session *, result *), result *out)
{
    return with_session_on(model, call, out);
}

static elastic_status c_plan(elastic_session *s, result *out)
{
    (void)out;
    FILE *f = fopen("/dev/null", "w");
    if (!f) return ELASTIC_ERR_IO;
    elastic_status st = elastic_session_print_plan(s, 2, 5, 3, f);
    fclose(f);
    return st;
}
static elastic_status c_recommend(elastic_session *s, result *out)
{
    int32_t ids[HIST_USERS * TOP_K];
    float scores[HIST_USERS * TOP_K];
    elastic_status st =
        elastic_session_recommend(s, hist_items, hist_offsets, HIST_USERS, TOP_K, 1, ids, scores);
    if (st == ELASTIC_OK) {
        result_put(out, ids, sizeof ids);
        result_put_floats(out, scores, sizeof scores / sizeof scores[0]);
    }
    return st;
}
static elastic_status c_scores(elastic_session *s, result *out)
{
    float scores[HIST_USERS * 64];
    int64_t items = elastic_model_config(model)->num_items;
    elastic_status st = elastic_session_scores(s, hist_items, hist_offsets, HIST_USERS, scores);
    if (st == ELASTIC_OK) result_put_floats(out, scores, (size_t)(HIST_USERS * items));
    return st;
}
static elastic_status c_user_vectors(elastic_session *s, result *out)
{
    float v[HIST_USERS * 64];
    int64_t d = elastic_model_config(elastic_session_model(s))->hidden;
    elastic_status st = elastic_session_user_vectors(s, hist_items, hist_offsets, HIST_USERS, v);
    if (st == ELASTIC_OK) result_put_floats(out, v, (size_t)(HIST_USERS * d));
    return st;
}
static elastic_status c_evaluate(elastic_session *s, result *out)
{
    elastic_metrics m;
    elastic_status st = elastic_evaluate(s, dataset, ELASTIC_SPLIT_TEST, 0, &m);
    if (st == ELASTIC_OK) result_put(out, &m, sizeof m);
    return st;
}

static elastic_status p_plan(result *out)
{
    return with_session(c_plan, out);
}
static elastic_status p_recommend(result *out)
{
    return with_session(c_recommend, out);
}
static elastic_status p_scores(result *out)
{
    return with_session(c_scores, out);
}
static elastic_status p_user_vectors(result *out)
{
    return with_session(c_user_vectors, out);
}
/* pkm's O(t) lists come from the heap when t > 64: a failure is an error
 * (it once gave zero rows instead) */
static elastic_status p_user_vectors_wide(result *out)
{
    return with_session_on(wide_model, c_user_vectors, out);
}
static elastic_status p_evaluate(result *out)
{
    return with_session(c_evaluate, out);
}

static elastic_status p_popularity(result *out)
{
    elastic_metrics m;
    arm();
    elastic_status st = elastic_evaluate_popularity(dataset, ELASTIC_SPLIT_VALID, 0, &m);
    disarm();
    if (st == ELASTIC_OK) result_put(out, &m, sizeof m);
    return st;
}

/* Training works on a copy of the model (the trainer updates it). */
static elastic_model *model_copy(void)
{
    elastic_model *m = NULL;
    if (elastic_model_load(&m, model_path) != ELASTIC_OK) {
        CHECK(0, "model copy: %s", elastic_last_error());
        return NULL;
    }
    return m;
}

static elastic_train_options train_options(void)
{
    elastic_train_options o;
    elastic_train_options_default(&o);
    o.session = session_options();
    o.batch_size = 4;
    o.seed = 3;
    return o;
}

static const int32_t train_targets[HIST_USERS] = {4, 6, 1};

static elastic_status p_trainer_init(result *out)
{
    (void)out;
    elastic_model *m = model_copy();
    if (!m) return ELASTIC_OK;
    elastic_train_options o = train_options();
    elastic_trainer *t = NULL;
    arm();
    elastic_status st = elastic_trainer_init(&t, m, &o);
    disarm();
    elastic_trainer_free(t);
    elastic_model_free(m);
    return st;
}

static elastic_status
with_trainer(elastic_status (*call)(elastic_trainer *, elastic_model *, result *), result *out)
{
    elastic_model *m = model_copy();
    if (!m) return ELASTIC_OK;
    elastic_train_options o = train_options();
    elastic_trainer *t = NULL;
    if (elastic_trainer_init(&t, m, &o) != ELASTIC_OK) {
        CHECK(0, "trainer init failed without injection: %s", elastic_last_error());
        elastic_model_free(m);
        return ELASTIC_OK;
    }
    arm();
    elastic_status st = call(t, m, out);
    disarm();
    if (st != ELASTIC_OK) {
        save_message();
        result again = {.n = 0};
        CHECK(call(t, m, &again) == ELASTIC_OK, "trainer unusable after a failed call: %s",
              elastic_last_error());
    }
    elastic_trainer_free(t);
    elastic_model_free(m);
    return st;
}

static elastic_status c_step(elastic_trainer *t, elastic_model *m, result *out)
{
    double loss = 0;
    elastic_status st =
        elastic_trainer_step(t, hist_items, hist_offsets, train_targets, HIST_USERS, &loss);
    (void)m;
    (void)out; /* a step after a failed one differs (Adam counts): not compared */
    return st;
}
static elastic_status c_gradient(elastic_trainer *t, elastic_model *m, result *out)
{
    (void)m;
    double loss = 0;
    static float grad[1 << 16];
    elastic_status st = elastic_trainer_gradient(t, hist_items, hist_offsets, train_targets,
                                                 HIST_USERS, &loss, grad);
    if (st == ELASTIC_OK) result_put(out, &loss, sizeof loss);
    return st;
}
static elastic_status c_epoch(elastic_trainer *t, elastic_model *m, result *out)
{
    (void)m;
    (void)out;
    elastic_train_progress r;
    return elastic_trainer_epoch(t, dataset, NULL, NULL, &r);
}
static elastic_status c_save_state(elastic_trainer *t, elastic_model *m, result *out)
{
    (void)m;
    (void)out;
    return elastic_trainer_save_state(t, out_path);
}
static elastic_status c_load_state(elastic_trainer *t, elastic_model *m, result *out)
{
    (void)m;
    (void)out;
    return elastic_trainer_load_state(t, out_path);
}
static elastic_status c_model_save(elastic_trainer *t, elastic_model *m, result *out)
{
    (void)t;
    (void)out;
    return elastic_model_save(m, out_path);
}

static elastic_status p_step(result *out)
{
    return with_trainer(c_step, out);
}
static elastic_status p_gradient(result *out)
{
    return with_trainer(c_gradient, out);
}
static elastic_status p_epoch(result *out)
{
    return with_trainer(c_epoch, out);
}
static elastic_status p_save_state(result *out)
{
    return with_trainer(c_save_state, out);
}
static elastic_status p_load_state(result *out)
{
    return with_trainer(c_load_state, out);
}
static elastic_status p_model_save(result *out)
{
    return with_trainer(c_model_save, out);
}

static elastic_status read_log(const char *path, result *out)
{
    elastic_dataset *d = NULL;
    arm();
    elastic_status st = elastic_dataset_load(&d, path, ELASTIC_DATA_FORMAT_AUTO);
    char *json = NULL;
    if (st == ELASTIC_OK) st = elastic_dataset_item_map_json(d, &json);
    if (st == ELASTIC_OK) st = elastic_dataset_apply_item_map(d, json);
    disarm();
    if (st == ELASTIC_OK) {
        int64_t n[3] = {elastic_dataset_num_users(d), elastic_dataset_num_items(d),
                        elastic_dataset_num_events(d)};
        result_put(out, n, sizeof n);
        result_put(out, json, strlen(json));
    }
    free(json);
    elastic_dataset_free(d);
    return st;
}
static elastic_status p_read_pairs(result *out)
{
    return read_log(pairs_path, out);
}
static elastic_status p_read_movielens(result *out)
{
    return read_log(ml_path, out);
}
static elastic_status p_read_csv(result *out)
{
    return read_log(csv_path, out);
}

static elastic_status p_synth(result *out)
{
    elastic_synth_options so;
    elastic_synth_options_default(&so);
    so.users = 20;
    so.items = 30;
    so.min_len = 3;
    so.max_len = 6;
    elastic_dataset *d = NULL;
    arm();
    elastic_status st = elastic_dataset_synth(&d, &so);
    disarm();
    if (st == ELASTIC_OK) {
        int64_t n = elastic_dataset_num_events(d);
        result_put(out, &n, sizeof n);
    }
    elastic_dataset_free(d);
    return st;
}

static elastic_status p_item_map(result *out)
{
    elastic_model *m = NULL;
    if (elastic_model_load(&m, model_path) != ELASTIC_OK) return ELASTIC_OK;
    char *json = NULL;
    elastic_status st = elastic_dataset_item_map_json(dataset, &json);
    if (st == ELASTIC_OK &&
        elastic_dataset_num_items(dataset) == elastic_model_config(m)->num_items)
        st = elastic_model_set_metadata(m, "item_ids", json);
    free(json);
    elastic_item_map *map = NULL;
    if (st == ELASTIC_OK) {
        arm();
        st = elastic_item_map_init(&map, m);
        disarm();
    }
    if (st == ELASTIC_OK) result_put(out, elastic_item_map_name(map, 1), 2);
    elastic_item_map_free(map);
    elastic_model_free(m);
    return st;
}

#if defined(ELASTIC_HAVE_SERVE)
static elastic_status serve_parse(serve_op op, const char *body, result *out)
{
    serve_limits limits;
    serve_limits_default(&limits);
    serve_vocab vocab = {20, 8, NULL};
    serve_work *w = NULL;
    serve_error err;
    memset(&err, 0, sizeof err);
    arm();
    int rc = serve_request_parse(op, body, strlen(body), &vocab, &limits, &w, &err);
    disarm();
    elastic_status st = ELASTIC_OK;
    if (rc != 0) {
        /* An allocation failure is a 5xx with a message; the body is valid. */
        st = err.status >= 500 ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_INVALID_ARG;
        CHECK(err.message[0] != '\0', "a refused request has no message");
        own_message = 1;
    } else {
        result_put(out, &w->users, sizeof w->users);
        result_put(out, w->items, (size_t)w->offsets[w->users] * sizeof *w->items);
    }
    serve_work_free(w);
    return st;
}
static elastic_status p_serve_recommend(result *out)
{
    return serve_parse(SERVE_OP_RECOMMEND,
                       "{\"histories\": [[1, 2, 3], [10, 20]], \"top_k\": 5, "
                       "\"exclude_history\": false}",
                       out);
}
static elastic_status p_serve_rank(result *out)
{
    return serve_parse(SERVE_OP_RECOMMEND,
                       "{\"history\": [4, 5], \"candidates\": [1, 2, 3], \"top_k\": 2}", out);
}
static elastic_status p_serve_vectors(result *out)
{
    return serve_parse(SERVE_OP_USER_VECTORS, "{\"histories\": [[7], [8, 9]]}", out);
}

/* The server's request handler without sockets (tools/serve/serve_routes.c:
 * parse_job, the batcher's serve_compute, render_job): parse, compute on a
 * real session (batches of at most 2 users, so a request takes several
 * library calls), render. A failure is what the server would answer: a 5xx
 * from the parser, compute_failed (500) with the library's message, or no
 * body (out of memory rendering). */
static elastic_model *map_model;   /* the shared model's weights, with an item map */
static elastic_item_map *item_map; /* its map: items "i1".."i20" */

static elastic_status serve_handle_once(elastic_session *s, const elastic_item_map *map,
                                        serve_op op, const char *body, result *out)
{
    const elastic_config *c = elastic_model_config(elastic_session_model(s));
    serve_vocab vocab = {c->num_items, c->hidden, map};
    serve_limits limits;
    serve_limits_default(&limits);
    serve_work *w = NULL;
    serve_error err;
    memset(&err, 0, sizeof err);
    serve_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    elastic_status st = ELASTIC_OK;
    char *text = NULL;
    if (serve_request_parse(op, body, strlen(body), &vocab, &limits, &w, &err) != 0) {
        st = err.status >= 500 ? ELASTIC_ERR_NO_MEMORY : ELASTIC_ERR_INVALID_ARG;
        CHECK(err.message[0] != '\0', "a refused request has no message");
    } else {
        serve_compute(s, &w, 1, 2, &scratch);
        if (w->status != SERVE_WORK_DONE) {
            CHECK(w->status == SERVE_WORK_FAILED && w->error[0] != '\0',
                  "a work that was not computed is not FAILED with a message");
            st = ELASTIC_ERR_NO_MEMORY;
        } else if (!(text = serve_response_render(w, &vocab))) {
            st = ELASTIC_ERR_NO_MEMORY; /* the server answers 500 out_of_memory */
        } else {
            CHECK(text[0] == '{', "a response body is a JSON object");
            result_put(out, &w->users, sizeof w->users);
            if (w->op == SERVE_OP_USER_VECTORS) {
                result_put_floats(out, w->vectors, (size_t)w->users * (size_t)w->dim);
            } else {
                result_put(out, w->ids, (size_t)w->users * (size_t)w->top_k * sizeof *w->ids);
                result_put_floats(out, w->scores, (size_t)w->users * (size_t)w->top_k);
            }
        }
    }
    free(text);
    serve_work_free(w);
    serve_scratch_free(&scratch);
    return st;
}

static elastic_status serve_handle(const elastic_model *m, const elastic_item_map *map, serve_op op,
                                   const char *body, result *out)
{
    elastic_session_options o = session_options();
    elastic_session *s = NULL;
    if (elastic_session_init(&s, m, &o) != ELASTIC_OK) {
        CHECK(0, "session init failed without injection: %s", elastic_last_error());
        return ELASTIC_OK;
    }
    arm();
    elastic_status st = serve_handle_once(s, map, op, body, out);
    disarm();
    own_message = 1;        /* checked above: the parser's or the work's message */
    if (st != ELASTIC_OK) { /* the session still serves the request afterwards */
        result again;
        memset(&again, 0, sizeof again);
        CHECK(serve_handle_once(s, map, op, body, &again) == ELASTIC_OK,
              "the session cannot serve %s after a failed request (allocation %ld): %s", body,
              fail_at, elastic_last_error());
    }
    elastic_session_free(s);
    return st;
}

#define SERVE_REC                                                                                  \
    "{\"histories\": [[1, 2, 3], [10, 20], [5, 5, 7, 9, 11, 13, 15, 17, 19, 2]], "                 \
    "\"top_k\": 5, \"exclude_history\": true}"
#define SERVE_RANK                                                                                 \
    "{\"histories\": [[4, 5], [1], [6, 7, 8]], \"candidates\": [[1, 2, 3], "                       \
    "[20, 19, 19], [8, 9]], \"top_k\": 2, \"exclude_history\": true}"
#define SERVE_VEC "{\"histories\": [[7], [8, 9], [1, 2, 3, 4]]}"
#define SERVE_REC_MAP                                                                              \
    "{\"histories\": [[\"i1\", \"i2\", \"i3\"], [\"i10\", \"i20\"], [\"i5\"]], "                   \
    "\"top_k\": 5}"
#define SERVE_RANK_MAP                                                                             \
    "{\"history\": [\"i4\", \"i5\"], \"candidates\": [\"i1\", \"i2\", "                            \
    "\"i3\"], \"top_k\": 2}"
#define SERVE_VEC_MAP "{\"histories\": [[\"i7\"], [\"i8\", \"i9\"], [\"i20\"]]}"

static elastic_status p_handle_recommend(result *out)
{
    return serve_handle(model, NULL, SERVE_OP_RECOMMEND, SERVE_REC, out);
}
static elastic_status p_handle_rank(result *out)
{
    return serve_handle(model, NULL, SERVE_OP_RECOMMEND, SERVE_RANK, out);
}
static elastic_status p_handle_vectors(result *out)
{
    return serve_handle(model, NULL, SERVE_OP_USER_VECTORS, SERVE_VEC, out);
}
static elastic_status p_handle_recommend_map(result *out)
{
    return serve_handle(map_model, item_map, SERVE_OP_RECOMMEND, SERVE_REC_MAP, out);
}
static elastic_status p_handle_rank_map(result *out)
{
    return serve_handle(map_model, item_map, SERVE_OP_RECOMMEND, SERVE_RANK_MAP, out);
}
static elastic_status p_handle_vectors_map(result *out)
{
    return serve_handle(map_model, item_map, SERVE_OP_USER_VECTORS, SERVE_VEC_MAP, out);
}
#endif

/* ------------------------------------------------------------ driver */

typedef struct path {
    const char *name;
    path_fn fn;
} path;

static const path paths[] = {
    {"model load", p_model_load},
    {"model init + metadata", p_model_init},
    {"session init", p_session_init},
    {"plan", p_plan},
    {"recommend", p_recommend},
    {"scores", p_scores},
    {"user vectors", p_user_vectors},
    {"user vectors, pkm t = 65", p_user_vectors_wide},
    {"trainer init", p_trainer_init},
    {"trainer step", p_step},
    {"trainer gradient", p_gradient},
    {"trainer epoch", p_epoch},
    {"checkpoint save (state)", p_save_state},
    {"checkpoint load (state)", p_load_state},
    {"model save", p_model_save},
    {"log read: pairs + item map", p_read_pairs},
    {"log read: MovieLens", p_read_movielens},
    {"log read: CSV", p_read_csv},
    {"synthetic log", p_synth},
    {"item map init", p_item_map},
    {"evaluate", p_evaluate},
    {"evaluate popularity", p_popularity},
#if defined(ELASTIC_HAVE_SERVE)
    {"serve: parse recommend", p_serve_recommend},
    {"serve: parse rank", p_serve_rank},
    {"serve: parse user_vectors", p_serve_vectors},
    {"serve handling: recommend", p_handle_recommend},
    {"serve handling: rank", p_handle_rank},
    {"serve handling: user_vectors", p_handle_vectors},
    {"serve handling: rec. + map", p_handle_recommend_map},
    {"serve handling: rank + map", p_handle_rank_map},
    {"serve handling: vectors + map", p_handle_vectors_map},
#endif
};

static void run_path(const path *p, long *points_total, long *sites_total)
{
    static result clean, r; /* large: not on the stack */
    memset(&clean, 0, sizeof clean);
    fail_at = 0;
    n_sites = 0;
    memset(site_failed, 0, sizeof site_failed);
    collecting = 1;
    elastic_status st = p->fn(&clean);
    collecting = 0;
    long n = atomic_load(&counted);
    if (st != ELASTIC_OK) {
        CHECK(0, "%s: fails without injection: %s", p->name, elastic_last_error());
        return;
    }
    long errors = 0, absorbed = 0, no_memory = 0;
    for (long k = 1; k <= n; k++) {
        memset(&r, 0, sizeof r);
        fail_at = k;
        atomic_store(&failed_once, 0);
        own_message = 0;
        saved = 0;
        st = p->fn(&r);
        fail_at = 0;
        if (!atomic_load(&failed_once)) continue; /* fewer allocations this time */
        if (st != ELASTIC_OK) {
            errors++;
            if (st == ELASTIC_ERR_NO_MEMORY) no_memory++;
            CHECK(own_message || (saved ? saved_msg : elastic_last_error())[0] != '\0',
                  "%s: allocation %ld failed: status %s, no message", p->name, k,
                  elastic_status_name(st));
        } else {
            absorbed++;
            CHECK(result_same(&r, &clean),
                  "%s: allocation %ld failed, the call succeeded with another result", p->name, k);
        }
    }
#if defined(HAVE_LSAN)
    CHECK(__lsan_do_recoverable_leak_check() == 0, "%s: leaks (LeakSanitizer report above)",
          p->name);
#endif
    int sites_failed = 0;
    for (int i = 0; i < n_sites; i++)
        sites_failed += site_failed[i];
    CHECK(sites_failed == n_sites, "%s: %d of %d allocation sites were never failed", p->name,
          n_sites - sites_failed, n_sites);
    printf("%-28s %6d %8ld %8ld %9ld %9ld\n", p->name, n_sites, n, errors, no_memory, absorbed);
    *points_total += n;
    *sites_total += n_sites;
}

static int write_text(const char *file, const char *text)
{
    FILE *f = fopen(file, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

int main(void)
{
    /* jansson's own allocations never fail (see the top): Debian's jansson
     * is a shared library, outside the --wrap, but ci/cross.sh links the
     * target's jansson statically, where its malloc calls would be wrapped
     * too (under QEMU: "double free or corruption" in jansson). */
    json_set_alloc_funcs(__real_malloc, free);
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    long pid = (long)getpid();
    snprintf(model_path, sizeof model_path, "%s/alloc-fail-%ld.st", tmp, pid);
    snprintf(out_path, sizeof out_path, "%s/alloc-fail-%ld.out.st", tmp, pid);
    snprintf(pairs_path, sizeof pairs_path, "%s/alloc-fail-%ld.txt", tmp, pid);
    snprintf(ml_path, sizeof ml_path, "%s/alloc-fail-%ld.dat", tmp, pid);
    snprintf(csv_path, sizeof csv_path, "%s/alloc-fail-%ld.csv", tmp, pid);

    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 20;
    c.max_len = 8;
    c.hidden = 8;
    c.heads = 2;
    c.layers = 1;
    c.experts = 2;
    c.mem_subkeys = 4;
    c.mem_topk = 2;
    if (elastic_config_validate(&c) != ELASTIC_OK ||
        elastic_model_init_random(&model, &c, 1) != ELASTIC_OK ||
        elastic_model_save(model, model_path) != ELASTIC_OK) {
        fprintf(stderr, "set-up: %s\n", elastic_last_error());
        return 1;
    }
    c.mem_subkeys = 72;
    c.mem_topk = 65;
    if (elastic_config_validate(&c) != ELASTIC_OK ||
        elastic_model_init_random(&wide_model, &c, 2) != ELASTIC_OK) {
        fprintf(stderr, "set-up: %s\n", elastic_last_error());
        return 1;
    }
    /* A log of 20 items (so its item map fits the model), 6 users. */
    char text[4096] = "", line[64];
    for (int u = 1; u <= 6; u++)
        for (int e = 0; e < 5; e++) {
            snprintf(line, sizeof line, "u%d i%d\n", u, (u * 7 + e * 3) % 20 + 1);
            strcat(text, line);
        }
    for (int v = 1; v <= 20; v++) {
        snprintf(line, sizeof line, "u9 i%d\n", v);
        strcat(text, line);
    }
    if (write_text(pairs_path, text) ||
        write_text(ml_path, "1::10::5::30\n1::20::3::10\n1::30::4::20\n2::10::4::1\n2::40::5::2\n"
                            "2::20::3::3\n") ||
        write_text(csv_path, "user_id,item_id,rating,timestamp\n1,a,5,3\n1,b,,1\n1,\"c,d\",4,2\n"
                             "2,a,1,1\n2,b,2,2\n2,e,3,3\n") ||
        elastic_dataset_load(&dataset, pairs_path, ELASTIC_DATA_FORMAT_PAIRS) != ELASTIC_OK) {
        fprintf(stderr, "set-up: %s\n", elastic_last_error());
        return 1;
    }

#if defined(ELASTIC_HAVE_SERVE)
    /* The model again, with an item map "i1".."i20" for the server paths. */
    char ids[512] = "[";
    for (int v = 1; v <= 20; v++) {
        snprintf(line, sizeof line, "%s\"i%d\"", v > 1 ? "," : "", v);
        strcat(ids, line);
    }
    strcat(ids, "]");
    if (elastic_model_load(&map_model, model_path) != ELASTIC_OK ||
        elastic_model_set_metadata(map_model, "item_ids", ids) != ELASTIC_OK ||
        elastic_item_map_init(&item_map, map_model) != ELASTIC_OK) {
        fprintf(stderr, "set-up: %s\n", elastic_last_error());
        return 1;
    }
#endif
    printf("%-28s %6s %8s %8s %9s %9s\n", "path", "sites", "calls", "errors", "no_memory",
           "absorbed");
    long total = 0, total_sites = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        run_path(&paths[i], &total, &total_sites);
    printf("%zu paths: %ld allocation calls failed one at a time, at %ld call sites (counted per "
           "path); failed checks: %d\n",
           sizeof paths / sizeof paths[0], total, total_sites, bad);

    elastic_dataset_free(dataset);
#if defined(ELASTIC_HAVE_SERVE)
    elastic_item_map_free(item_map);
    elastic_model_free(map_model);
#endif
    elastic_model_free(wide_model);
    elastic_model_free(model);
    remove(model_path);
    remove(out_path);
    remove(pairs_path);
    remove(ml_path);
    remove(csv_path);
    return bad ? 1 : 0;
}
