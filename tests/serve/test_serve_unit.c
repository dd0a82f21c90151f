/*
 * test_serve_unit.c - the parts of `elastic serve` that need no socket:
 * request parsing and its refusals (status, code, message), response
 * rendering (float32 round trip, NaN, item names as numbers or strings),
 * candidate ranking (ties, NaN, duplicates, exclusion), batches computed
 * equal to users alone, the Prometheus text, the loopback check of
 * POST /admin/reload, the cgroup cpu.max quota, model generations (retired
 * to the loading thread, loads abandoned, the checksum of the loaded file)
 * and the job pool.
 */
#include "serve_app.h"
#include "serve_compute.h"
#include "serve_http.h"
#include "serve_metrics.h"
#include "serve_model.h"
#include "serve_pool.h"
#include "serve_request.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static serve_limits limits(void)
{
    serve_limits l;
    serve_limits_default(&l);
    l.max_users = 4;
    l.max_history = 8;
    l.max_top_k = 20;
    l.max_candidates = 6;
    return l;
}

static int parse(const char *body, serve_op endpoint, serve_work **w, serve_error *e)
{
    serve_vocab v = {50, 8, NULL};
    serve_limits l = limits();
    return serve_request_parse(endpoint, body, strlen(body), &v, &l, w, e);
}

static void parses_requests(void **state)
{
    (void)state;
    serve_work *w;
    serve_error e;
    assert_int_equal(
        parse("{\"histories\": [[1, 2, 3], [4]], \"top_k\": 5}", SERVE_OP_RECOMMEND, &w, &e), 0);
    assert_int_equal(w->op, SERVE_OP_RECOMMEND);
    assert_int_equal(w->users, 2);
    assert_int_equal(w->top_k, 5);
    assert_int_equal(w->exclude_history, 1);
    assert_int_equal(w->offsets[2], 4);
    assert_int_equal(w->items[3], 4);
    serve_work_free(w);
    assert_int_equal(parse("{\"history\": [7], \"candidates\": [1, 2, 2], \"exclude_history\": "
                           "false}",
                           SERVE_OP_RECOMMEND, &w, &e),
                     0);
    assert_int_equal(w->op, SERVE_OP_RANK);
    assert_int_equal(w->top_k, 10);
    assert_int_equal(w->exclude_history, 0);
    assert_int_equal(w->cand_offsets[1], 3);
    serve_work_free(w);
    assert_int_equal(parse("{\"histories\": [[50]]}", SERVE_OP_USER_VECTORS, &w, &e), 0);
    assert_int_equal(w->op, SERVE_OP_USER_VECTORS);
    serve_work_free(w);
}

static void refuses_with_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int status;
        const char *code, *message;
    } cases[] = {
        {"", 400, "invalid_request", "empty"},
        {"{", 400, "malformed_json", "line 1"},
        {"[1]", 400, "invalid_request", "JSON object"},
        {"{\"histories\": [[1, 51]]}", 400, "unknown_item", "histories[0][1]: item 51"},
        {"{\"histories\": [[1, 0]]}", 400, "unknown_item", "outside 1..50"},
        {"{\"history\": [1, 2, 51]}", 400, "unknown_item", "history[2]: item 51"},
        {"{\"histories\": [[1], [2, 3, true]]}", 400, "invalid_request", "histories[1][2] must"},
        {"{\"histories\": [[1, \"2\"]]}", 400, "invalid_request", "no item map"},
        {"{\"histories\": [[1.5]]}", 400, "invalid_request", "fraction"},
        {"{\"histories\": [[]]}", 400, "invalid_request", "histories[0] is empty"},
        {"{\"histories\": []}", 400, "invalid_request", "histories is empty"},
        {"{\"histories\": [[1],[1],[1],[1],[1]]}", 400, "limit_exceeded", "--max-users"},
        {"{\"history\": [1,1,1,1,1,1,1,1,1]}", 400, "limit_exceeded", "--max-history"},
        {"{\"history\": [1], \"top_k\": 21}", 400, "limit_exceeded", "--max-top-k"},
        {"{\"history\": [1], \"top_k\": 0}", 400, "invalid_request", "at least 1"},
        {"{\"history\": [1], \"top_k\": \"5\"}", 400, "invalid_request",
         "top_k must be an integer"},
        {"{\"history\": [1], \"exclude_history\": 1}", 400, "invalid_request", "true or false"},
        {"{\"history\": [1], \"candidates\": [1,2,3,4,5,6,7]}", 400, "limit_exceeded",
         "--max-candidates"},
        {"{\"histories\": [[1]], \"candidates\": [[1], [2]]}", 400, "invalid_request",
         "2 rows for 1 users"},
        {"{\"history\": [1], \"histories\": [[1]]}", 400, "invalid_request", "not both"},
        {"{\"top_k\": 3}", 400, "invalid_request", "missing"},
        {"{\"history\": [1], \"k\": 3}", 400, "invalid_request", "unknown field 'k'"},
        {"{\"history\": [1], \"history\": [2]}", 400, "malformed_json", "duplicate"},
        {"{\"history\": [99999999999999999999]}", 400, "malformed_json", "too big"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        serve_work *w = (serve_work *)1;
        serve_error e;
        assert_int_equal(parse(cases[i].body, SERVE_OP_RECOMMEND, &w, &e), -1);
        assert_null(w);
        if (e.status != cases[i].status || strcmp(e.code, cases[i].code) ||
            !strstr(e.message, cases[i].message))
            fail_msg("case %zu (%s): %d %s '%s'", i, cases[i].body, e.status, e.code, e.message);
    }
    serve_work *w;
    serve_error e;
    assert_int_equal(parse("{\"history\": [1], \"top_k\": 3}", SERVE_OP_USER_VECTORS, &w, &e), -1);
    assert_string_equal(e.code, "invalid_request");
    /* a body over the limit, and deep nesting */
    char *deep = malloc(200001);
    memset(deep, '[', 200000);
    deep[200000] = '\0';
    assert_int_equal(parse(deep, SERVE_OP_RECOMMEND, &w, &e), -1);
    assert_int_equal(e.status, 400);
    serve_vocab v = {50, 8, NULL};
    serve_limits l = limits();
    l.max_body = 1000;
    assert_int_equal(serve_request_parse(SERVE_OP_RECOMMEND, deep, 200000, &v, &l, &w, &e), -1);
    assert_int_equal(e.status, 413);
    free(deep);
}

/* A model of `items` items with an item map of the given names. */
static elastic_model *mapped_model(int items, const char *names_json, elastic_item_map **map)
{
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = items;
    assert_int_equal(elastic_config_set(&c, "hidden", "8"), ELASTIC_OK);
    assert_int_equal(elastic_config_set(&c, "max_len", "4"), ELASTIC_OK);
    assert_int_equal(elastic_config_set(&c, "experts", "2"), ELASTIC_OK);
    assert_int_equal(elastic_config_set(&c, "mem_subkeys", "4"), ELASTIC_OK);
    assert_int_equal(elastic_config_set(&c, "mem_topk", "2"), ELASTIC_OK);
    assert_int_equal(elastic_config_set(&c, "layers", "1"), ELASTIC_OK);
    assert_int_equal(elastic_config_validate(&c), ELASTIC_OK);
    elastic_model *m;
    assert_int_equal(elastic_model_init_random(&m, &c, 7), ELASTIC_OK);
    if (names_json) {
        assert_int_equal(elastic_model_set_metadata(m, "item_ids", names_json), ELASTIC_OK);
        assert_int_equal(elastic_item_map_init(map, m), ELASTIC_OK);
    }
    return m;
}

static void renders_results(void **state)
{
    (void)state;
    elastic_item_map *map;
    elastic_model *m = mapped_model(4, "[\"17\", \"film-b\", \"007\", \"-3\"]", &map);
    serve_vocab v = {4, 8, map};
    serve_limits l = limits();
    serve_work *w;
    serve_error e;
    const char *body = "{\"history\": [17, \"film-b\", \"007\"], \"top_k\": 4}";
    assert_int_equal(serve_request_parse(SERVE_OP_RECOMMEND, body, strlen(body), &v, &l, &w, &e),
                     0);
    assert_int_equal(w->items[0], 1);
    assert_int_equal(w->items[1], 2);
    assert_int_equal(w->items[2], 3);
    w->ids = malloc(4 * sizeof *w->ids);
    w->scores = malloc(4 * sizeof *w->scores);
    int32_t ids[4] = {4, 3, 2, 0};
    float scores[4] = {0.1f, NAN, 1.0f / 3.0f, -INFINITY};
    memcpy(w->ids, ids, sizeof ids);
    memcpy(w->scores, scores, sizeof scores);
    char *text = serve_response_render(w, &v);
    assert_non_null(text);
    /* numeric names as numbers, others as strings; NaN as null; 9 digits; the list ends at id 0 */
    assert_string_equal(text, "{\"results\":[{\"items\":[-3,\"007\",\"film-b\"],"
                              "\"scores\":[0.100000001,null,0.333333343]}]}");
    free(text);
    serve_work_free(w);
    body = "{\"history\": [\"nope\"]}";
    assert_int_equal(serve_request_parse(SERVE_OP_RECOMMEND, body, strlen(body), &v, &l, &w, &e),
                     -1);
    assert_string_equal(e.code, "unknown_item");
    assert_non_null(strstr(e.message, "'nope'"));
    text = serve_error_render(&e);
    assert_non_null(strstr(text, "{\"error\":{\"code\":\"unknown_item\",\"message\":"));
    free(text);
    elastic_item_map_free(map);
    elastic_model_free(m);
}

/* Numeric names of the whole 64-bit range go in as JSON integers and come
 * back as JSON numbers; past the range (and non-canonical ones) as strings. */
static void renders_64_bit_ids(void **state)
{
    (void)state;
    elastic_item_map *map;
    elastic_model *m = mapped_model(6,
                                    "[\"1234567890123456789\", \"9223372036854775807\", "
                                    "\"-9223372036854775808\", \"9223372036854775808\", "
                                    "\"-0\", \"12345678901234567890\"]",
                                    &map);
    serve_vocab v = {6, 8, map};
    serve_limits l = limits();
    serve_work *w;
    serve_error e;
    const char *body = "{\"history\": [1234567890123456789, 9223372036854775807, "
                       "-9223372036854775808, \"9223372036854775808\", \"-0\"], \"top_k\": 6}";
    assert_int_equal(serve_request_parse(SERVE_OP_RECOMMEND, body, strlen(body), &v, &l, &w, &e),
                     0);
    int32_t want_items[5] = {1, 2, 3, 4, 5};
    assert_memory_equal(w->items, want_items, sizeof want_items);
    w->ids = malloc(6 * sizeof *w->ids);
    w->scores = calloc(6, sizeof *w->scores);
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    memcpy(w->ids, ids, sizeof ids);
    char *text = serve_response_render(w, &v);
    assert_non_null(text);
    assert_string_equal(text, "{\"results\":[{\"items\":[1234567890123456789,9223372036854775807,"
                              "-9223372036854775808,\"9223372036854775808\",\"-0\","
                              "\"12345678901234567890\"],\"scores\":[0.0,0.0,0.0,0.0,0.0,0.0]}]}");
    free(text);
    serve_work_free(w);
    elastic_item_map_free(map);
    elastic_model_free(m);
}

static void ranks_candidates(void **state)
{
    (void)state;
    /* items 1..6 */
    float scores[6] = {0.5f, 0.9f, 0.5f, NAN, 0.9f, -1.0f};
    int32_t cand[] = {6, 4, 3, 1, 5, 2, 5, 3};
    int32_t history[] = {2};
    int32_t ids[5];
    float out[5];
    serve_scratch s;
    memset(&s, 0, sizeof s);
    /* ties by the smaller id, NaN last, duplicates once, the row padded */
    int n = serve_rank_candidates(scores, cand, 8, history, 1, 0, 5, ids, out, &s);
    assert_int_equal(n, 5);
    int32_t want[5] = {2, 5, 1, 3, 6};
    assert_memory_equal(ids, want, sizeof want);
    n = serve_rank_candidates(scores, cand, 8, history, 1, 1, 5, ids, out, &s);
    int32_t want_ex[5] = {5, 1, 3, 6, 4};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want_ex, sizeof want_ex);
    assert_true(isnan(out[4]));
    n = serve_rank_candidates(scores, cand, 1, history, 1, 1, 3, ids, out, &s);
    assert_int_equal(n, 1);
    assert_int_equal(ids[1], 0);
    assert_true(out[1] == -INFINITY);
    serve_scratch_free(&s);
}

/* A batch of works computes what each user gets alone. */
static void batches_equal_alone(void **state)
{
    (void)state;
    elastic_item_map *map = NULL;
    elastic_model *m = mapped_model(40, NULL, &map);
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    elastic_session *s;
    assert_int_equal(elastic_session_init(&s, m, &o), ELASTIC_OK);
    serve_vocab v = {40, 8, NULL};
    serve_limits l = limits();
    const char *bodies[] = {"{\"histories\": [[1, 2, 3], [4, 5, 6, 7, 8]], \"top_k\": 3}",
                            "{\"history\": [9], \"top_k\": 7}",
                            "{\"histories\": [[10, 11], [12], [1, 2]], \"top_k\": 1}"};
    serve_work *works[3];
    serve_error e;
    for (int i = 0; i < 3; i++)
        assert_int_equal(serve_request_parse(SERVE_OP_RECOMMEND, bodies[i], strlen(bodies[i]), &v,
                                             &l, &works[i], &e),
                         0);
    serve_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    serve_compute(s, works, 3, 4, &scratch); /* 6 users in calls of 4 */
    for (int i = 0; i < 3; i++) {
        serve_work *w = works[i];
        assert_int_equal(w->status, SERVE_WORK_DONE);
        for (int u = 0; u < w->users; u++) {
            int32_t ids[8];
            float sc[8];
            int64_t offs[2] = {0, w->offsets[u + 1] - w->offsets[u]};
            assert_int_equal(elastic_session_recommend(s, w->items + w->offsets[u], offs, 1,
                                                       w->top_k, 1, ids, sc),
                             ELASTIC_OK);
            assert_memory_equal(ids, w->ids + u * w->top_k, sizeof *ids * (size_t)w->top_k);
            assert_memory_equal(sc, w->scores + u * w->top_k, sizeof *sc * (size_t)w->top_k);
        }
        serve_work_free(w);
    }
    serve_scratch_free(&scratch);
    elastic_session_free(s);
    elastic_model_free(m);
}

static void renders_metrics(void **state)
{
    (void)state;
    const char *paths[] = {"/v1/recommend", "/healthz"};
    serve_metrics m;
    assert_int_equal(serve_metrics_init(&m, paths, 2), 0);
    assert_int_equal(serve_metrics_endpoint(&m, "/healthz"), 1);
    assert_int_equal(serve_metrics_endpoint(&m, "/nope"), 2);
    serve_metrics_request(&m, 0, 200, 0.003);
    serve_metrics_request(&m, 0, 200, 7.0);
    serve_metrics_request(&m, 2, 404, 0.0001);
    serve_metrics_batch(&m, 5);
    serve_metrics_model(&m, 1, "cpu (\"x\"\\)", 0, "fnv1a64:00", 2, 1.5);
    size_t len;
    char *t = serve_metrics_render(&m, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    assert_non_null(strstr(t, "elastic_serve_requests_total{endpoint=\"/v1/recommend\","
                              "status=\"200\"} 2\n"));
    assert_non_null(strstr(t, "elastic_serve_requests_total{endpoint=\"other\",status=\"404\"} 1"));
    assert_non_null(strstr(t, "elastic_serve_request_duration_seconds_bucket{endpoint=\"/v1/"
                              "recommend\",le=\"0.005\"} 1\n"));
    assert_non_null(strstr(t, "elastic_serve_request_duration_seconds_bucket{endpoint=\"/v1/"
                              "recommend\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(t, "elastic_serve_batch_users_bucket{le=\"4\"} 0\n"));
    assert_non_null(strstr(t, "elastic_serve_batch_users_bucket{le=\"8\"} 1\n"));
    assert_non_null(strstr(t, "elastic_serve_users_scored_total 5\n"));
    assert_non_null(strstr(t, "backend=\"cpu (\\\"x\\\"\\\\)\""));
    assert_non_null(strstr(t, "elastic_serve_fallback_nodes 2\n"));
    /* the generation is a gauge of its own, not a label: a reload makes no new series */
    assert_non_null(strstr(t, "elastic_serve_model_generation 1\n"));
    assert_non_null(strstr(t, "elastic_serve_model_info{backend=\"cpu (\\\"x\\\"\\\\)\","
                              "device=\"0\",checksum=\"fnv1a64:00\"} 1\n"));
    assert_null(strstr(t, "generation=\""));
    assert_non_null(strstr(t, "elastic_serve_connections_cut_off_total{phase=\"headers\"} 0\n"));
    free(t);
    serve_metrics_free(&m);
}

static void checks_loopback(void **state)
{
    (void)state;
    static const struct {
        const char *address;
        int loopback;
    } cases[] = {
        {"127.0.0.1", 1},  {"127.8.9.10", 1},       {"10.0.0.1", 0}, {"0.0.0.0", 0},
        {"::1", 1},        {"::ffff:127.0.0.1", 1}, {"::", 0},       {"::ffff:192.168.1.2", 0},
        {"2001:db8::1", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (strchr(cases[i].address, ':')) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            a->sin6_family = AF_INET6;
            assert_int_equal(inet_pton(AF_INET6, cases[i].address, &a->sin6_addr), 1);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            a->sin_family = AF_INET;
            assert_int_equal(inet_pton(AF_INET, cases[i].address, &a->sin_addr), 1);
        }
        if (serve_http_is_loopback((struct sockaddr *)&ss) != cases[i].loopback)
            fail_msg("%s: loopback should be %d", cases[i].address, cases[i].loopback);
    }
}

static void reads_cpu_quota(void **state)
{
    (void)state;
    assert_int_equal(serve_cpu_max_cpus("max 100000\n"), 0);
    assert_int_equal(serve_cpu_max_cpus("150000 100000\n"), 2);
    assert_int_equal(serve_cpu_max_cpus("200000 100000"), 2);
    assert_int_equal(serve_cpu_max_cpus("50000 100000"), 1);
    assert_int_equal(serve_cpu_max_cpus("1 100000"), 1);
    assert_int_equal(serve_cpu_max_cpus(""), 0);
    assert_int_equal(serve_cpu_max_cpus("garbage"), 0);
    assert_int_equal(serve_cpu_max_cpus(NULL), 0);
    serve_cpus c;
    int n = serve_available_cpus(&c);
    assert_true(n >= 1);
    if (c.affinity > 0) assert_true(n <= c.affinity);
    if (c.quota > 0) assert_true(n <= c.quota);
}

static int retired_calls;
static void count_retired(void *ctx)
{
    (void)ctx;
    retired_calls++;
}

/* 64-bit FNV-1a of a file, as the server names it. */
static void fnv_file(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned long long h = 0xcbf29ce484222325ull;
    int ch;
    while ((ch = fgetc(f)) != EOF)
        h = (h ^ (unsigned char)ch) * 0x100000001b3ull;
    fclose(f);
    snprintf(out, size, "fnv1a64:%016llx", h);
}

/* A reload's old generation is not freed by whoever drops its last
 * reference: it is retired and freed by serve_models_reap (the control
 * loop's thread). A load with the cancel flag set is abandoned. */
static void retires_generations(void **state)
{
    (void)state;
    elastic_item_map *map = NULL;
    elastic_model *model = mapped_model(30, NULL, &map);
    char path[] = "/tmp/serve_unit_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(elastic_model_save(model, path), ELASTIC_OK);
    elastic_model_free(model);
    char want[40];
    fnv_file(path, want, sizeof want);

    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = 1;
    serve_models ms;
    atomic_int cancel;
    atomic_init(&cancel, 0);
    assert_int_equal(serve_models_init(&ms, path, &o, 2, 4), 0);
    ms.cancel = &cancel;
    ms.on_retired = count_retired;
    retired_calls = 0;
    char err[512];
    assert_int_equal(serve_models_load(&ms, err, sizeof err), 0);
    serve_model *first = serve_models_acquire(&ms);
    assert_non_null(first);
    assert_int_equal(first->generation, 1);
    assert_string_equal(first->checksum, want);
    assert_int_equal(first->n_sessions, 2);
    /* a reload: the request's reference keeps generation 1 */
    assert_int_equal(serve_models_load(&ms, err, sizeof err), 0);
    assert_int_equal(retired_calls, 0);
    assert_int_equal(serve_models_reap(&ms), 0);
    /* the request's thread drops the last reference: retired, not freed */
    serve_model_release(first);
    assert_int_equal(retired_calls, 1);
    assert_int_equal(serve_models_reap(&ms), 1);
    /* abandoned: the current generation stays */
    atomic_store(&cancel, 1);
    assert_int_equal(serve_models_load(&ms, err, sizeof err), SERVE_LOAD_ABANDONED);
    assert_non_null(strstr(err, "abandoned"));
    serve_model *m = serve_models_acquire(&ms);
    assert_int_equal(m->generation, 2);
    serve_model_release(m);
    serve_models_free(&ms);
    unlink(path);
}

typedef struct counted_job {
    serve_job job; /* first */
    int *count;
    pthread_mutex_t *lock;
} counted_job;

static void count_job(serve_job *job)
{
    counted_job *c = (counted_job *)job;
    pthread_mutex_lock(c->lock);
    (*c->count)++;
    pthread_mutex_unlock(c->lock);
}

/* Every job runs once; after the stop, on the caller's thread. */
static void runs_jobs(void **state)
{
    (void)state;
    serve_pool *p;
    char err[128];
    assert_int_equal(serve_pool_start(&p, 3, err, sizeof err), 0);
    int count = 0;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    counted_job jobs[200];
    for (int i = 0; i < 200; i++) {
        jobs[i] = (counted_job){{count_job, NULL}, &count, &lock};
        serve_pool_run(p, &jobs[i].job);
    }
    serve_pool_stop(p);
    assert_int_equal(count, 200);
    serve_pool_run(p, &jobs[0].job);
    assert_int_equal(count, 201);
    serve_pool_free(p);
    serve_pool_run(NULL, &jobs[1].job);
    assert_int_equal(count, 202);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_requests),  cmocka_unit_test(refuses_with_reasons),
        cmocka_unit_test(renders_results),  cmocka_unit_test(renders_64_bit_ids),
        cmocka_unit_test(ranks_candidates), cmocka_unit_test(batches_equal_alone),
        cmocka_unit_test(renders_metrics),  cmocka_unit_test(checks_loopback),
        cmocka_unit_test(reads_cpu_quota),  cmocka_unit_test(retires_generations),
        cmocka_unit_test(runs_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
