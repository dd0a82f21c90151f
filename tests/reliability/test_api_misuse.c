/*
 * test_api_misuse.c - the API misuse table: every public function of
 * include/elastic*.h called with NULL pointers, zero and negative sizes,
 * out-of-range ids, mismatched CSR offsets, K larger than I, a model with
 * max_len 1, and (outside ASan builds, where the read itself is the report)
 * handles (models, sessions, datasets, trainers, item maps) used after they
 * were freed. Each row names the call and the status
 * it must return (or, for functions without a status, the value); the table
 * is printed, and any row that differs, crashes or leaks fails the test.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "elastic.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static int rows, bad;

static void row(int line, const char *what, elastic_status expect, elastic_status got)
{
    rows++;
    int ok = got == expect;
    if (!ok) bad++;
    printf("%-4s %-64s %-26s %s%s\n", ok ? "ok" : "FAIL", what, elastic_status_name(expect),
           ok ? "" : "got ", ok ? "" : elastic_status_name(got));
    if (!ok) fprintf(stderr, "FAIL line %d: %s: %s\n", line, what, elastic_last_error());
    /* Every refusal says why. */
    if (got != ELASTIC_OK && !elastic_last_error()[0]) {
        bad++;
        fprintf(stderr, "FAIL line %d: %s: no message\n", line, what);
    }
}

#define ROW(expect, what, expr) row(__LINE__, what, expect, (expr))
/* Functions without a status: the row holds when cond is true. */
#define VAL(what, cond) row(__LINE__, what, ELASTIC_OK, (cond) ? ELASTIC_OK : ELASTIC_ERR_INTERNAL)

#define OK ELASTIC_OK
#define ARG ELASTIC_ERR_INVALID_ARG
#define RANGE ELASTIC_ERR_OUT_OF_RANGE
#define EMPTY ELASTIC_ERR_EMPTY_HISTORY
#define SHAPE ELASTIC_ERR_SHAPE
#define FORMAT ELASTIC_ERR_FORMAT
#define IO ELASTIC_ERR_IO
#define BACKEND ELASTIC_ERR_BACKEND

static elastic_config small_config(void)
{
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 20;
    c.max_len = 8;
    c.hidden = 8;
    c.layers = 1;
    c.experts = 2;
    c.mem_subkeys = 4;
    c.mem_topk = 2;
    return c;
}

static elastic_session_options cpu_options(void)
{
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.num_threads = 1;
    return o;
}

int main(void)
{
#if defined(__GLIBC__)
    /* Freed heap memory stays mapped (glibc returns none to the system), so
     * the use-after-free rows read a freed handle's cleared magic field, never
     * an unmapped page. The handles themselves are small heap blocks. */
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
#endif
    char path[256], missing[256], empty[256], pairs[256];
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    long pid = (long)getpid();
    snprintf(path, sizeof path, "%s/misuse-%ld.st", tmp, pid);
    snprintf(missing, sizeof missing, "%s/misuse-%ld-missing.st", tmp, pid);
    snprintf(empty, sizeof empty, "%s/misuse-%ld-empty.txt", tmp, pid);
    snprintf(pairs, sizeof pairs, "%s/misuse-%ld.txt", tmp, pid);
    FILE *f = fopen(empty, "w");
    if (f) fclose(f);
    FILE *devnull = fopen("/dev/null", "w");

    /* ------------------------------------------------ status, config */
    VAL("elastic_status_name(-1) is a string", elastic_status_name((elastic_status)-1) != NULL);
    VAL("elastic_status_name(99) is a string", elastic_status_name((elastic_status)99) != NULL);
    VAL("elastic_version() is a string", elastic_version() && elastic_version()[0]);
    elastic_config_default(NULL);
    VAL("elastic_config_default(NULL) returns", 1);
    elastic_config c = small_config();
    ROW(ARG, "elastic_config_set(NULL config)", elastic_config_set(NULL, "hidden", "8"));
    ROW(ARG, "elastic_config_set(NULL key)", elastic_config_set(&c, NULL, "8"));
    ROW(ARG, "elastic_config_set(NULL value)", elastic_config_set(&c, "hidden", NULL));
    ROW(FORMAT, "elastic_config_set(unknown key)", elastic_config_set(&c, "nope", "1"));
    ROW(FORMAT, "elastic_config_set(hidden = 'x')", elastic_config_set(&c, "hidden", "x"));
    ROW(FORMAT, "elastic_config_set(hidden = '8x')", elastic_config_set(&c, "hidden", "8x"));
    ROW(ARG, "elastic_config_validate(NULL)", elastic_config_validate(NULL));
    c = small_config();
    c.num_items = 0;
    ROW(FORMAT, "elastic_config_validate(num_items 0)", elastic_config_validate(&c));
    c = small_config();
    c.hidden = -8;
    ROW(FORMAT, "elastic_config_validate(hidden -8)", elastic_config_validate(&c));
    c = small_config();
    c.heads = 3;
    ROW(FORMAT, "elastic_config_validate(hidden 8, heads 3)", elastic_config_validate(&c));
    c = small_config();
    c.mem_topk = 5;
    ROW(FORMAT, "elastic_config_validate(mem_topk > mem_subkeys)", elastic_config_validate(&c));
    c = small_config();
    c.ln_eps = NAN;
    ROW(FORMAT, "elastic_config_validate(ln_eps NaN)", elastic_config_validate(&c));
    c = small_config();
    c.max_len = 1;
    ROW(OK, "elastic_config_validate(max_len 1)", elastic_config_validate(&c));

    /* ------------------------------------------------ models */
    elastic_model *model = NULL, *m = NULL, *m1 = NULL;
    c = small_config();
    ROW(OK, "elastic_model_init_random(valid)", elastic_model_init_random(&model, &c, 1));
    if (!model) return 1;
    ROW(ARG, "elastic_model_init_random(NULL out)", elastic_model_init_random(NULL, &c, 1));
    ROW(ARG, "elastic_model_init_random(NULL config)", elastic_model_init_random(&m, NULL, 1));
    c.num_items = -3;
    ROW(FORMAT, "elastic_model_init_random(num_items -3)", elastic_model_init_random(&m, &c, 1));
    VAL("... leaves *model NULL", m == NULL);
    c = small_config();
    c.max_len = 1;
    ROW(OK, "elastic_model_init_random(max_len 1)", elastic_model_init_random(&m1, &c, 2));
    ROW(OK, "elastic_model_save(valid)", elastic_model_save(model, path));
    ROW(ARG, "elastic_model_save(NULL model)", elastic_model_save(NULL, path));
    ROW(ARG, "elastic_model_save(NULL path)", elastic_model_save(model, NULL));
    ROW(IO, "elastic_model_save(into a missing directory)",
        elastic_model_save(model, "/nonexistent-dir/x.st"));
    ROW(ARG, "elastic_model_load(NULL out)", elastic_model_load(NULL, path));
    ROW(ARG, "elastic_model_load(NULL path)", elastic_model_load(&m, NULL));
    ROW(IO, "elastic_model_load(missing file)", elastic_model_load(&m, missing));
    ROW(FORMAT, "elastic_model_load(empty file)", elastic_model_load(&m, empty));
    VAL("elastic_model_config(NULL) is NULL", elastic_model_config(NULL) == NULL);
    VAL("elastic_model_tensor_count(NULL) is 0", elastic_model_tensor_count(NULL) == 0);
    VAL("elastic_model_tensor_name(model, -1) is NULL", elastic_model_tensor_name(model, -1) == NULL);
    VAL("elastic_model_tensor_name(model, count) is NULL",
        elastic_model_tensor_name(model, elastic_model_tensor_count(model)) == NULL);
    VAL("elastic_model_tensor_name(NULL, 0) is NULL", elastic_model_tensor_name(NULL, 0) == NULL);
    const char *t0 = elastic_model_tensor_name(model, 0);
    const float *data;
    int64_t shape[4];
    int ndim;
    ROW(OK, "elastic_model_tensor(valid)", elastic_model_tensor(model, t0, &data, shape, &ndim));
    ROW(ARG, "elastic_model_tensor(NULL model)", elastic_model_tensor(NULL, t0, &data, shape, &ndim));
    ROW(ARG, "elastic_model_tensor(NULL name)", elastic_model_tensor(model, NULL, &data, shape, &ndim));
    ROW(OK, "elastic_model_tensor(NULL outputs: each is optional)", elastic_model_tensor(model, t0, NULL, NULL, NULL));
    ROW(ARG, "elastic_model_tensor(unknown name)", elastic_model_tensor(model, "nope", &data, shape, &ndim));
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    float *copy = calloc((size_t)numel, sizeof *copy);
    ROW(OK, "elastic_model_set_tensor(valid)", elastic_model_set_tensor(model, t0, data, numel));
    ROW(ARG, "elastic_model_set_tensor(NULL model)", elastic_model_set_tensor(NULL, t0, copy, numel));
    ROW(ARG, "elastic_model_set_tensor(NULL data)", elastic_model_set_tensor(model, t0, NULL, numel));
    ROW(SHAPE, "elastic_model_set_tensor(n - 1)", elastic_model_set_tensor(model, t0, copy, numel - 1));
    ROW(SHAPE, "elastic_model_set_tensor(n = -1)", elastic_model_set_tensor(model, t0, copy, -1));
    ROW(SHAPE, "elastic_model_set_tensor(n = 0)", elastic_model_set_tensor(model, t0, copy, 0));
    ROW(ARG, "elastic_model_set_tensor(unknown name)", elastic_model_set_tensor(model, "nope", copy, numel));
    free(copy);
    VAL("elastic_model_metadata_count(NULL) is 0", elastic_model_metadata_count(NULL) == 0);
    VAL("elastic_model_metadata_key(model, -1) is NULL", elastic_model_metadata_key(model, -1) == NULL);
    VAL("elastic_model_metadata_key(model, 99) is NULL", elastic_model_metadata_key(model, 99) == NULL);
    VAL("elastic_model_metadata(NULL, key) is NULL", elastic_model_metadata(NULL, "x") == NULL);
    VAL("elastic_model_metadata(model, NULL) is NULL", elastic_model_metadata(model, NULL) == NULL);
    ROW(ARG, "elastic_model_set_metadata(NULL model)", elastic_model_set_metadata(NULL, "k", "v"));
    ROW(ARG, "elastic_model_set_metadata(NULL key)", elastic_model_set_metadata(model, NULL, "v"));
    ROW(ARG, "elastic_model_set_metadata(NULL value)", elastic_model_set_metadata(model, "k", NULL));
    ROW(ARG, "elastic_model_set_metadata(a config key)", elastic_model_set_metadata(model, "hidden", "4"));
    VAL("elastic_model_parameter_count(NULL) is 0", elastic_model_parameter_count(NULL) == 0);

    /* ------------------------------------------------ backends */
    elastic_backend_info info;
    VAL("elastic_backend_count() >= 1", elastic_backend_count() >= 1);
    ROW(OK, "elastic_backend_get_info(0)", elastic_backend_get_info(0, &info));
    ROW(ARG, "elastic_backend_get_info(-1)", elastic_backend_get_info(-1, &info));
    ROW(ARG, "elastic_backend_get_info(count)", elastic_backend_get_info(elastic_backend_count(), &info));
    ROW(ARG, "elastic_backend_get_info(0, NULL)", elastic_backend_get_info(0, NULL));

    /* ------------------------------------------------ sessions */
    elastic_session_options o = cpu_options();
    elastic_session *s = NULL, *s2 = NULL;
    elastic_session_options_default(NULL);
    ROW(OK, "elastic_session_init(valid)", elastic_session_init(&s, model, &o));
    if (!s) return 1;
    ROW(ARG, "elastic_session_init(NULL out)", elastic_session_init(NULL, model, &o));
    ROW(ARG, "elastic_session_init(NULL model)", elastic_session_init(&s2, NULL, &o));
    o.struct_size = 0;
    ROW(ARG, "elastic_session_init(struct_size 0)", elastic_session_init(&s2, model, &o));
    o = cpu_options();
    o.backend = "nope";
    ROW(BACKEND, "elastic_session_init(backend 'nope')", elastic_session_init(&s2, model, &o));
    o = cpu_options();
    o.attention = 7;
    ROW(ARG, "elastic_session_init(attention 7)", elastic_session_init(&s2, model, &o));
    o = cpu_options();
    o.num_threads = -2;
    ROW(ARG, "elastic_session_init(num_threads -2)", elastic_session_init(&s2, model, &o));
    o = cpu_options();
    o.device = -1;
    ROW(BACKEND, "elastic_session_init(device -1)", elastic_session_init(&s2, model, &o));
    o = cpu_options();
    o.backend_options = "cpu.nope=1";
    ROW(ARG, "elastic_session_init(backend option cpu.nope)", elastic_session_init(&s2, model, &o));
    o = cpu_options();
    o.backend_options = "cpu.isa";
    ROW(ARG, "elastic_session_init(backend options 'cpu.isa')", elastic_session_init(&s2, model, &o));
    VAL("... leaves *session NULL", s2 == NULL);
    ROW(OK, "elastic_session_init(NULL options: defaults)", elastic_session_init(&s2, model, NULL));
    elastic_session_free(s2);
    s2 = NULL;
    VAL("elastic_session_backend(NULL) is a string", elastic_session_backend(NULL) != NULL);
    VAL("elastic_session_model(NULL) is NULL", elastic_session_model(NULL) == NULL);
    VAL("elastic_session_model(s) is the model", elastic_session_model(s) == model);

    int32_t items[] = {1, 2, 3, 4, 5};
    int64_t off[] = {0, 3, 5};
    int32_t ids[2 * 20];
    float scores[2 * 20], vec[2 * 8], all[2 * 20];
    ROW(OK, "elastic_session_recommend(valid)", elastic_session_recommend(s, items, off, 2, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_recommend(NULL session)", elastic_session_recommend(NULL, items, off, 2, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_recommend(NULL items)", elastic_session_recommend(s, NULL, off, 2, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_recommend(NULL offsets)", elastic_session_recommend(s, items, NULL, 2, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_recommend(NULL ids)", elastic_session_recommend(s, items, off, 2, 5, 1, NULL, scores));
    ROW(ARG, "elastic_session_recommend(NULL scores)", elastic_session_recommend(s, items, off, 2, 5, 1, ids, NULL));
    ROW(ARG, "elastic_session_recommend(batch 0)", elastic_session_recommend(s, items, off, 0, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_recommend(batch -1)", elastic_session_recommend(s, items, off, -1, 5, 1, ids, scores));
    ROW(RANGE, "elastic_session_recommend(top_k 0)", elastic_session_recommend(s, items, off, 2, 0, 1, ids, scores));
    ROW(RANGE, "elastic_session_recommend(top_k -1)", elastic_session_recommend(s, items, off, 2, -1, 1, ids, scores));
    ROW(RANGE, "elastic_session_recommend(top_k I+1: K > I)", elastic_session_recommend(s, items, off, 2, 21, 1, ids, scores));
    ROW(OK, "elastic_session_recommend(top_k I)", elastic_session_recommend(s, items, off, 2, 20, 1, ids, scores));
    VAL("... ids past the remaining items are 0 with -inf",
        ids[19] == 0 && isinf(scores[19]) && scores[19] < 0 && ids[16] != 0);
    int64_t off_bad0[] = {1, 3, 5};
    int64_t off_dec[] = {0, 4, 3};
    int64_t off_empty[] = {0, 0, 5};
    ROW(ARG, "elastic_session_recommend(offsets[0] = 1)", elastic_session_recommend(s, items, off_bad0, 2, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_recommend(offsets decrease)", elastic_session_recommend(s, items, off_dec, 2, 5, 1, ids, scores));
    ROW(EMPTY, "elastic_session_recommend(empty history)", elastic_session_recommend(s, items, off_empty, 2, 5, 1, ids, scores));
    int32_t zero[] = {1, 0, 3, 4, 5}, over[] = {1, 2, 21, 4, 5}, neg[] = {1, 2, 3, -4, 5};
    ROW(RANGE, "elastic_session_recommend(item 0)", elastic_session_recommend(s, zero, off, 2, 5, 1, ids, scores));
    ROW(RANGE, "elastic_session_recommend(item I+1)", elastic_session_recommend(s, over, off, 2, 5, 1, ids, scores));
    ROW(RANGE, "elastic_session_recommend(item -4)", elastic_session_recommend(s, neg, off, 2, 5, 1, ids, scores));
    ROW(OK, "elastic_session_scores(valid)", elastic_session_scores(s, items, off, 2, all));
    ROW(ARG, "elastic_session_scores(NULL out)", elastic_session_scores(s, items, off, 2, NULL));
    ROW(ARG, "elastic_session_scores(batch 0)", elastic_session_scores(s, items, off, 0, all));
    ROW(ARG, "elastic_session_scores(offsets decrease)", elastic_session_scores(s, items, off_dec, 2, all));
    ROW(OK, "elastic_session_user_vectors(valid)", elastic_session_user_vectors(s, items, off, 2, vec));
    ROW(ARG, "elastic_session_user_vectors(NULL out)", elastic_session_user_vectors(s, items, off, 2, NULL));
    ROW(ARG, "elastic_session_user_vectors(NULL session)", elastic_session_user_vectors(NULL, items, off, 2, vec));
    ROW(RANGE, "elastic_session_user_vectors(item I+1)", elastic_session_user_vectors(s, over, off, 2, vec));
    ROW(OK, "elastic_session_print_plan(valid)", elastic_session_print_plan(s, 2, 5, 3, devnull));
    ROW(ARG, "elastic_session_print_plan(NULL stream)", elastic_session_print_plan(s, 2, 5, 3, NULL));
    ROW(ARG, "elastic_session_print_plan(batch 0)", elastic_session_print_plan(s, 0, 5, 3, devnull));
    ROW(ARG, "elastic_session_print_plan(len -1)", elastic_session_print_plan(s, 2, -1, 3, devnull));
    ROW(ARG, "elastic_session_print_plan(top_k I+1)", elastic_session_print_plan(s, 2, 5, 21, devnull));
    elastic_run_stats stats;
    ROW(OK, "elastic_session_last_stats(valid)", elastic_session_last_stats(s, &stats));
    ROW(ARG, "elastic_session_last_stats(NULL stats)", elastic_session_last_stats(s, NULL));
    ROW(ARG, "elastic_session_last_stats(NULL session)", elastic_session_last_stats(NULL, &stats));

    /* max_len 1: histories longer than N keep their last item. */
    elastic_session *s1 = NULL;
    o = cpu_options();
    ROW(OK, "elastic_session_init(model with max_len 1)", elastic_session_init(&s1, m1, &o));
    int32_t long_h[] = {1, 2, 3, 4, 5}, last[] = {5};
    int64_t long_off[] = {0, 5}, last_off[] = {0, 1};
    float u_long[8], u_last[8];
    ROW(OK, "elastic_session_user_vectors(max_len 1, 5 items)", elastic_session_user_vectors(s1, long_h, long_off, 1, u_long));
    ROW(OK, "elastic_session_user_vectors(max_len 1, 1 item)", elastic_session_user_vectors(s1, last, last_off, 1, u_last));
    VAL("... max_len 1 uses the last item only", !memcmp(u_long, u_last, sizeof u_long));
    ROW(OK, "elastic_session_recommend(max_len 1, exclude 5 items)",
        elastic_session_recommend(s1, long_h, long_off, 1, 15, 1, ids, scores));
    ROW(RANGE, "elastic_session_recommend(max_len 1, top_k I+1)",
        elastic_session_recommend(s1, long_h, long_off, 1, 21, 1, ids, scores));
    elastic_session_free(s1);

    /* ------------------------------------------------ data */
    elastic_dataset *d = NULL, *d2 = NULL;
    elastic_synth_options so;
    elastic_synth_options_default(NULL);
    elastic_synth_options_default(&so);
    so.users = 30;
    so.items = 20;
    so.min_len = 2;
    so.max_len = 6;
    ROW(OK, "elastic_dataset_synth(valid)", elastic_dataset_synth(&d, &so));
    if (!d) return 1;
    ROW(ARG, "elastic_dataset_synth(NULL out)", elastic_dataset_synth(NULL, &so));
    ROW(ARG, "elastic_dataset_synth(NULL options)", elastic_dataset_synth(&d2, NULL));
    so.users = 0;
    ROW(ARG, "elastic_dataset_synth(users 0)", elastic_dataset_synth(&d2, &so));
    so.users = 30;
    so.min_len = 7;
    ROW(ARG, "elastic_dataset_synth(min_len > max_len)", elastic_dataset_synth(&d2, &so));
    so.min_len = 2;
    so.p_sequential = 1.5;
    ROW(ARG, "elastic_dataset_synth(p_sequential 1.5)", elastic_dataset_synth(&d2, &so));
    so.p_sequential = 0.5;
    so.items = -1;
    ROW(ARG, "elastic_dataset_synth(items -1)", elastic_dataset_synth(&d2, &so));
    ROW(ARG, "elastic_dataset_load(NULL out)", elastic_dataset_load(NULL, pairs, ELASTIC_DATA_FORMAT_AUTO));
    ROW(ARG, "elastic_dataset_load(NULL path)", elastic_dataset_load(&d2, NULL, ELASTIC_DATA_FORMAT_AUTO));
    ROW(ARG, "elastic_dataset_load(format 99)", elastic_dataset_load(&d2, pairs, (elastic_data_format)99));
    ROW(ARG, "elastic_dataset_load(format -1)", elastic_dataset_load(&d2, pairs, (elastic_data_format)-1));
    ROW(IO, "elastic_dataset_load(missing file)", elastic_dataset_load(&d2, missing, ELASTIC_DATA_FORMAT_AUTO));
    ROW(FORMAT, "elastic_dataset_load(empty file)", elastic_dataset_load(&d2, empty, ELASTIC_DATA_FORMAT_AUTO));
    ROW(FORMAT, "elastic_dataset_load(a model file as a log)", elastic_dataset_load(&d2, path, ELASTIC_DATA_FORMAT_PAIRS));
    ROW(OK, "elastic_dataset_save_pairs(valid)", elastic_dataset_save_pairs(d, pairs));
    ROW(ARG, "elastic_dataset_save_pairs(NULL dataset)", elastic_dataset_save_pairs(NULL, pairs));
    ROW(ARG, "elastic_dataset_save_pairs(NULL path)", elastic_dataset_save_pairs(d, NULL));
    VAL("elastic_dataset_num_users(NULL) is 0", elastic_dataset_num_users(NULL) == 0);
    VAL("elastic_dataset_num_items(NULL) is 0", elastic_dataset_num_items(NULL) == 0);
    VAL("elastic_dataset_num_events(NULL) is 0", elastic_dataset_num_events(NULL) == 0);
    const int32_t *seq;
    int64_t len;
    int32_t target;
    int64_t U = elastic_dataset_num_users(d), I = elastic_dataset_num_items(d);
    ROW(OK, "elastic_dataset_user(0)", elastic_dataset_user(d, 0, &seq, &len));
    ROW(RANGE, "elastic_dataset_user(-1)", elastic_dataset_user(d, -1, &seq, &len));
    ROW(RANGE, "elastic_dataset_user(U)", elastic_dataset_user(d, U, &seq, &len));
    ROW(ARG, "elastic_dataset_user(NULL dataset)", elastic_dataset_user(NULL, 0, &seq, &len));
    ROW(ARG, "elastic_dataset_user(NULL outputs)", elastic_dataset_user(d, 0, NULL, NULL));
    int64_t shortu = -1;
    for (int64_t u = 0; u < U && shortu < 0; u++)
        if (elastic_dataset_user(d, u, &seq, &len) == OK && len < 3) shortu = u;
    VAL("the synthetic log has a user with < 3 events", shortu >= 0);
    ROW(OK, "elastic_dataset_split(0, test)", elastic_dataset_split(d, 0, ELASTIC_SPLIT_TEST, &seq, &len, &target) == OK || shortu == 0 ? OK : RANGE);
    ROW(RANGE, "elastic_dataset_split(user with 2 events)", elastic_dataset_split(d, shortu, ELASTIC_SPLIT_TEST, &seq, &len, &target));
    ROW(ARG, "elastic_dataset_split(split 5)", elastic_dataset_split(d, 0, (elastic_split)5, &seq, &len, &target));
    ROW(RANGE, "elastic_dataset_split(user -1)", elastic_dataset_split(d, -1, ELASTIC_SPLIT_TEST, &seq, &len, &target));
    ROW(ARG, "elastic_dataset_split(NULL outputs)", elastic_dataset_split(d, 0, ELASTIC_SPLIT_TEST, NULL, NULL, NULL));
    ROW(OK, "elastic_dataset_train_items(short user)", elastic_dataset_train_items(d, shortu, &seq, &len));
    ROW(RANGE, "elastic_dataset_train_items(user U)", elastic_dataset_train_items(d, U, &seq, &len));
    ROW(ARG, "elastic_dataset_train_items(NULL outputs)", elastic_dataset_train_items(d, 0, NULL, NULL));
    VAL("elastic_dataset_item_name(0) is NULL", elastic_dataset_item_name(d, 0) == NULL);
    VAL("elastic_dataset_item_name(I+1) is NULL", elastic_dataset_item_name(d, (int32_t)I + 1) == NULL);
    VAL("elastic_dataset_item_name(NULL, 1) is NULL", elastic_dataset_item_name(NULL, 1) == NULL);
    VAL("elastic_dataset_item_id(NULL name) is 0", elastic_dataset_item_id(d, NULL) == 0);
    VAL("elastic_dataset_item_id(unknown) is 0", elastic_dataset_item_id(d, "no such item") == 0);
    VAL("elastic_dataset_user_name(-1) is NULL", elastic_dataset_user_name(d, -1) == NULL);
    VAL("elastic_dataset_user_name(U) is NULL", elastic_dataset_user_name(d, U) == NULL);
    char *json = NULL;
    ROW(ARG, "elastic_dataset_item_map_json(NULL dataset)", elastic_dataset_item_map_json(NULL, &json));
    ROW(ARG, "elastic_dataset_item_map_json(NULL out)", elastic_dataset_item_map_json(d, NULL));
    ROW(OK, "elastic_dataset_item_map_json(valid)", elastic_dataset_item_map_json(d, &json));
    ROW(ARG, "elastic_dataset_apply_item_map(NULL json)", elastic_dataset_apply_item_map(d, NULL));
    ROW(ARG, "elastic_dataset_apply_item_map(NULL dataset)", elastic_dataset_apply_item_map(NULL, json));
    ROW(FORMAT, "elastic_dataset_apply_item_map('not json')", elastic_dataset_apply_item_map(d, "not json"));
    ROW(FORMAT, "elastic_dataset_apply_item_map('{}')", elastic_dataset_apply_item_map(d, "{}"));
    ROW(FORMAT, "elastic_dataset_apply_item_map(duplicates)", elastic_dataset_apply_item_map(d, "[\"1\",\"1\"]"));
    ROW(FORMAT, "elastic_dataset_apply_item_map(empty name)", elastic_dataset_apply_item_map(d, "[\"\"]"));
    ROW(RANGE, "elastic_dataset_apply_item_map(items missing)", elastic_dataset_apply_item_map(d, "[\"1\"]"));
    ROW(OK, "elastic_dataset_apply_item_map(its own map)", elastic_dataset_apply_item_map(d, json));

    /* item maps */
    elastic_item_map *map = NULL;
    ROW(FORMAT, "elastic_item_map_init(model without a map)", elastic_item_map_init(&map, model));
    ROW(ARG, "elastic_item_map_init(NULL out)", elastic_item_map_init(NULL, model));
    ROW(ARG, "elastic_item_map_init(NULL model)", elastic_item_map_init(&map, NULL));
    ROW(OK, "elastic_model_set_metadata(item_ids of 2 items)", elastic_model_set_metadata(m1, "item_ids", "[\"a\",\"b\"]"));
    ROW(FORMAT, "elastic_item_map_init(map of 2 items, model of 20)", elastic_item_map_init(&map, m1));
    ROW(OK, "elastic_model_set_metadata(item_ids of the log)", elastic_model_set_metadata(model, "item_ids", json));
    ROW(OK, "elastic_item_map_init(valid)", elastic_item_map_init(&map, model));
    VAL("elastic_item_map_id(NULL map) is 0", elastic_item_map_id(NULL, "1") == 0);
    VAL("elastic_item_map_id(NULL name) is 0", elastic_item_map_id(map, NULL) == 0);
    VAL("elastic_item_map_name(0) is NULL", elastic_item_map_name(map, 0) == NULL);
    VAL("elastic_item_map_name(I+1) is NULL", elastic_item_map_name(map, 21) == NULL);
    VAL("elastic_item_map_name(NULL, 1) is NULL", elastic_item_map_name(NULL, 1) == NULL);
    elastic_item_map_free(map);
    elastic_item_map_free(NULL);
    free(json);

    /* ------------------------------------------------ metrics, evaluation */
    float sc[4] = {0.5f, NAN, 2.0f, 1.0f};
    int32_t ex[] = {3, 99, -1, 3};
    VAL("elastic_rank_of(NULL scores) is 0", elastic_rank_of(NULL, 4, 1, NULL, 0) == 0);
    VAL("elastic_rank_of(target 0) is 0", elastic_rank_of(sc, 4, 0, NULL, 0) == 0);
    VAL("elastic_rank_of(target I+1) is 0", elastic_rank_of(sc, 4, 5, NULL, 0) == 0);
    VAL("elastic_rank_of(num_items -1) is 0", elastic_rank_of(sc, -1, 1, NULL, 0) == 0);
    VAL("elastic_rank_of(NaN ranks last) is 4", elastic_rank_of(sc, 4, 2, NULL, 0) == 4);
    VAL("elastic_rank_of(exclusions with junk ids)", elastic_rank_of(sc, 4, 4, ex, 4) == 1);
    VAL("elastic_rank_of(NULL exclusions, n 3)", elastic_rank_of(sc, 4, 4, NULL, 3) == 2);
    elastic_metrics sums = {0};
    elastic_metrics_add(NULL, 1);
    elastic_metrics_finish(NULL);
    elastic_metrics_add(&sums, -5);
    elastic_metrics_finish(&sums);
    VAL("elastic_metrics_add(rank -5) is a miss", sums.users == 1 && sums.hr10 == 0 && sums.mrr == 0);
    elastic_metrics met;
    ROW(OK, "elastic_evaluate(valid)", elastic_evaluate(s, d, ELASTIC_SPLIT_TEST, 0, &met));
    ROW(ARG, "elastic_evaluate(NULL session)", elastic_evaluate(NULL, d, ELASTIC_SPLIT_TEST, 0, &met));
    ROW(ARG, "elastic_evaluate(NULL dataset)", elastic_evaluate(s, NULL, ELASTIC_SPLIT_TEST, 0, &met));
    ROW(ARG, "elastic_evaluate(NULL metrics)", elastic_evaluate(s, d, ELASTIC_SPLIT_TEST, 0, NULL));
    ROW(ARG, "elastic_evaluate(split 9)", elastic_evaluate(s, d, (elastic_split)9, 0, &met));
    ROW(ARG, "elastic_evaluate(max_users -1)", elastic_evaluate(s, d, ELASTIC_SPLIT_TEST, -1, &met));
    so.items = 40;
    so.users = 30;
    ROW(OK, "elastic_dataset_synth(40 items)", elastic_dataset_synth(&d2, &so));
    ROW(RANGE, "elastic_evaluate(log of 40 items, model of 20)", elastic_evaluate(s, d2, ELASTIC_SPLIT_TEST, 0, &met));
    ROW(OK, "elastic_evaluate_popularity(valid)", elastic_evaluate_popularity(d, ELASTIC_SPLIT_VALID, 0, &met));
    ROW(ARG, "elastic_evaluate_popularity(NULL dataset)", elastic_evaluate_popularity(NULL, ELASTIC_SPLIT_VALID, 0, &met));
    ROW(ARG, "elastic_evaluate_popularity(NULL metrics)", elastic_evaluate_popularity(d, ELASTIC_SPLIT_VALID, 0, NULL));
    ROW(ARG, "elastic_evaluate_popularity(split -1)", elastic_evaluate_popularity(d, (elastic_split)-1, 0, &met));
    ROW(ARG, "elastic_evaluate_popularity(max_users -1)", elastic_evaluate_popularity(d, ELASTIC_SPLIT_VALID, -1, &met));
    elastic_dataset_free(d2);
    d2 = NULL;

    /* ------------------------------------------------ training */
    elastic_train_options to;
    elastic_train_options_default(NULL);
    elastic_train_options_default(&to);
    to.session = cpu_options();
    to.batch_size = 4;
    elastic_trainer *tr = NULL, *tr2 = NULL;
    elastic_model *tm = NULL;
    ROW(OK, "elastic_model_load(training copy)", elastic_model_load(&tm, path));
    ROW(OK, "elastic_trainer_init(valid)", elastic_trainer_init(&tr, tm, &to));
    if (!tr) return 1;
    ROW(ARG, "elastic_trainer_init(NULL out)", elastic_trainer_init(NULL, tm, &to));
    ROW(ARG, "elastic_trainer_init(NULL model)", elastic_trainer_init(&tr2, NULL, &to));
    to.struct_size = 0;
    ROW(ARG, "elastic_trainer_init(struct_size 0)", elastic_trainer_init(&tr2, tm, &to));
    elastic_train_options_default(&to);
    to.session = cpu_options();
    to.batch_size = 0;
    ROW(ARG, "elastic_trainer_init(batch_size 0)", elastic_trainer_init(&tr2, tm, &to));
    to.batch_size = 4;
    to.lr = -1;
    ROW(ARG, "elastic_trainer_init(lr -1)", elastic_trainer_init(&tr2, tm, &to));
    to.lr = 1e-3;
    to.dropout = 1.5f;
    ROW(ARG, "elastic_trainer_init(dropout 1.5)", elastic_trainer_init(&tr2, tm, &to));
    to.dropout = 0.2f;
    to.samples_per_user = 0;
    ROW(ARG, "elastic_trainer_init(samples_per_user 0)", elastic_trainer_init(&tr2, tm, &to));
    VAL("... leaves *trainer NULL", tr2 == NULL);
    int32_t targets[] = {4, 6}, bad_t[] = {4, 21}, zero_t[] = {0, 6};
    double loss;
    int64_t P = elastic_model_parameter_count(tm);
    float *grad = calloc((size_t)P, sizeof *grad);
    ROW(OK, "elastic_trainer_gradient(valid)", elastic_trainer_gradient(tr, items, off, targets, 2, &loss, grad));
    ROW(ARG, "elastic_trainer_gradient(NULL trainer)", elastic_trainer_gradient(NULL, items, off, targets, 2, &loss, grad));
    ROW(ARG, "elastic_trainer_gradient(NULL targets)", elastic_trainer_gradient(tr, items, off, NULL, 2, &loss, grad));
    ROW(OK, "elastic_trainer_gradient(NULL grad: loss only)", elastic_trainer_gradient(tr, items, off, targets, 2, &loss, NULL));
    ROW(ARG, "elastic_trainer_gradient(NULL loss)", elastic_trainer_gradient(tr, items, off, targets, 2, NULL, NULL));
    ROW(RANGE, "elastic_trainer_gradient(target I+1)", elastic_trainer_gradient(tr, items, off, bad_t, 2, &loss, grad));
    ROW(RANGE, "elastic_trainer_gradient(target 0)", elastic_trainer_gradient(tr, items, off, zero_t, 2, &loss, grad));
    ROW(ARG, "elastic_trainer_gradient(batch 0)", elastic_trainer_gradient(tr, items, off, targets, 0, &loss, grad));
    ROW(ARG, "elastic_trainer_gradient(offsets decrease)", elastic_trainer_gradient(tr, items, off_dec, targets, 2, &loss, grad));
    ROW(RANGE, "elastic_trainer_gradient(item I+1)", elastic_trainer_gradient(tr, over, off, targets, 2, &loss, grad));
    free(grad);
    ROW(OK, "elastic_trainer_step(valid, NULL loss)", elastic_trainer_step(tr, items, off, targets, 2, NULL));
    ROW(ARG, "elastic_trainer_step(NULL trainer)", elastic_trainer_step(NULL, items, off, targets, 2, &loss));
    ROW(ARG, "elastic_trainer_step(batch -1)", elastic_trainer_step(tr, items, off, targets, -1, &loss));
    ROW(EMPTY, "elastic_trainer_step(empty history)", elastic_trainer_step(tr, items, off_empty, targets, 2, &loss));
    ROW(RANGE, "elastic_trainer_step(target I+1)", elastic_trainer_step(tr, items, off, bad_t, 2, &loss));
    elastic_train_progress prog;
    ROW(ARG, "elastic_trainer_epoch(NULL trainer)", elastic_trainer_epoch(NULL, d, NULL, NULL, &prog));
    ROW(ARG, "elastic_trainer_epoch(NULL dataset)", elastic_trainer_epoch(tr, NULL, NULL, NULL, &prog));
    ROW(OK, "elastic_dataset_synth(40 items)", elastic_dataset_synth(&d2, &so));
    ROW(RANGE, "elastic_trainer_epoch(log of 40 items, model of 20)", elastic_trainer_epoch(tr, d2, NULL, NULL, &prog));
    elastic_dataset_free(d2);
    VAL("elastic_trainer_epochs(NULL) is 0", elastic_trainer_epochs(NULL) == 0);
    VAL("elastic_trainer_steps(NULL) is 0", elastic_trainer_steps(NULL) == 0);
    VAL("elastic_trainer_fallback_nodes(NULL) is 0", elastic_trainer_fallback_nodes(NULL) == 0);
    char state[300];
    snprintf(state, sizeof state, "%s.state", path);
    ROW(OK, "elastic_trainer_save_state(valid)", elastic_trainer_save_state(tr, state));
    ROW(ARG, "elastic_trainer_save_state(NULL trainer)", elastic_trainer_save_state(NULL, state));
    ROW(ARG, "elastic_trainer_save_state(NULL path)", elastic_trainer_save_state(tr, NULL));
    ROW(ARG, "elastic_trainer_load_state(NULL path)", elastic_trainer_load_state(tr, NULL));
    ROW(IO, "elastic_trainer_load_state(missing file)", elastic_trainer_load_state(tr, missing));
    ROW(FORMAT, "elastic_trainer_load_state(a model file)", elastic_trainer_load_state(tr, path));
    ROW(FORMAT, "elastic_trainer_load_state(empty file)", elastic_trainer_load_state(tr, empty));
    ROW(OK, "elastic_trainer_load_state(valid)", elastic_trainer_load_state(tr, state));
    elastic_trainer_free(tr);
    elastic_trainer_free(NULL);
    elastic_model_free(tm);
    remove(state);

    /* ------------------------------------------------ conformance */
    elastic_conformance_options co;
    elastic_conformance_options_default(NULL);
    elastic_conformance_options_default(&co);
    co.backends = "cpu";
    co.ops = "gelu";
    co.whole_model = 0;
    int failures = -1;
    ROW(OK, "elastic_conformance_run(gelu on the CPU)", elastic_conformance_run(&co, devnull, &failures));
    VAL("... with no failure", failures == 0);
    ROW(ARG, "elastic_conformance_run(NULL out)", elastic_conformance_run(&co, NULL, &failures));
    ROW(ARG, "elastic_conformance_run(NULL failures)", elastic_conformance_run(&co, devnull, NULL));
    co.ops = "no_such_op";
    ROW(ARG, "elastic_conformance_run(unknown op)", elastic_conformance_run(&co, devnull, &failures));
    co.ops = "gelu";
    co.backends = "nope";
    ROW(BACKEND, "elastic_conformance_run(unknown backend)", elastic_conformance_run(&co, devnull, &failures));
    co.backends = "cpu:x";
    ROW(ARG, "elastic_conformance_run(backend cpu:x)", elastic_conformance_run(&co, devnull, &failures));

    /* ------------------------------------------------ frees, and use after free */
    elastic_session_free(NULL);
    elastic_model_free(NULL);
    elastic_dataset_free(NULL);
    elastic_session_free(s);
#if !defined(UNDER_ASAN)
    /* Without ASan the freed handle's magic is gone: refused, not run. (ASan
     * reports the read itself, which is the detection there.) */
    ROW(ARG, "elastic_session_recommend(freed session)", elastic_session_recommend(s, items, off, 2, 5, 1, ids, scores));
    ROW(ARG, "elastic_session_print_plan(freed session)", elastic_session_print_plan(s, 2, 5, 3, devnull));
    elastic_session_free(s); /* a double free is ignored */
    VAL("elastic_session_free(freed session) is ignored", 1);
#endif
    elastic_model *dead = NULL;
    c = small_config();
    elastic_model_init_random(&dead, &c, 3);
    elastic_model_free(dead);
#if !defined(UNDER_ASAN)
    ROW(ARG, "elastic_session_init(freed model)", elastic_session_init(&s2, dead, &o));
    ROW(ARG, "elastic_model_save(freed model)", elastic_model_save(dead, missing));
    elastic_model_free(dead); /* a double free is ignored */
    VAL("elastic_model_free(freed model) is ignored", 1);
#endif
    /* Every other function taking a model, a session, a dataset, a trainer
     * or an item map, on one freed by its _free. */
    elastic_model *fm = NULL, *tm2 = NULL;
    elastic_session *fs = NULL;
    elastic_dataset *fd = NULL;
    elastic_trainer *ft = NULL;
    elastic_item_map *fmap = NULL;
    elastic_session *ls = NULL;
    so.users = 30;
    so.items = 20;
    elastic_train_options_default(&to);
    to.session = cpu_options();
    to.batch_size = 4;
    ROW(OK, "elastic_session_init(live session)", elastic_session_init(&ls, model, &o));
    ROW(OK, "elastic_model_load(copy to free)", elastic_model_load(&fm, path));
    ROW(OK, "elastic_model_load(copy to train)", elastic_model_load(&tm2, path));
    ROW(OK, "elastic_session_init(session to free)", elastic_session_init(&fs, model, &o));
    ROW(OK, "elastic_dataset_synth(dataset to free)", elastic_dataset_synth(&fd, &so));
    ROW(OK, "elastic_trainer_init(trainer to free)", elastic_trainer_init(&ft, tm2, &to));
    ROW(OK, "elastic_item_map_init(map to free)", elastic_item_map_init(&fmap, model));
    if (!ls || !fm || !tm2 || !fs || !fd || !ft || !fmap) return 1;
    elastic_model_free(fm);
    elastic_session_free(fs);
    elastic_dataset_free(fd);
    elastic_trainer_free(ft);
    elastic_item_map_free(fmap);
#if !defined(UNDER_ASAN)
    elastic_trainer *ft2 = NULL;
    elastic_item_map *fmap2 = NULL;
    char *fjson = NULL;
    const float *tdata = NULL;
    float one = 0;
    int32_t tg[] = {4, 6}, pos_t[] = {0, 0, 4, 0, 6};
    ROW(ARG, "elastic_model_tensor(freed model)", elastic_model_tensor(fm, "item_emb", &tdata, NULL, NULL));
    ROW(ARG, "elastic_model_set_tensor(freed model)", elastic_model_set_tensor(fm, "item_emb", &one, 1));
    ROW(ARG, "elastic_model_set_metadata(freed model)", elastic_model_set_metadata(fm, "k", "v"));
    VAL("elastic_model_config(freed model) is NULL", elastic_model_config(fm) == NULL);
    VAL("elastic_model_tensor_count(freed model) is 0", elastic_model_tensor_count(fm) == 0);
    VAL("elastic_model_tensor_name(freed model, 0) is NULL", elastic_model_tensor_name(fm, 0) == NULL);
    VAL("elastic_model_metadata_count(freed model) is 0", elastic_model_metadata_count(fm) == 0);
    VAL("elastic_model_metadata_key(freed model, 0) is NULL", elastic_model_metadata_key(fm, 0) == NULL);
    VAL("elastic_model_metadata(freed model) is NULL", elastic_model_metadata(fm, "item_ids") == NULL);
    VAL("elastic_model_parameter_count(freed model) is 0", elastic_model_parameter_count(fm) == 0);
    ROW(ARG, "elastic_trainer_init(freed model)", elastic_trainer_init(&ft2, fm, &to));
    ROW(ARG, "elastic_item_map_init(freed model)", elastic_item_map_init(&fmap2, fm));
    ROW(ARG, "elastic_session_user_vectors(freed session)", elastic_session_user_vectors(fs, items, off, 2, vec));
    ROW(ARG, "elastic_session_scores(freed session)", elastic_session_scores(fs, items, off, 2, all));
    ROW(ARG, "elastic_session_recommend_candidates(freed session)", elastic_session_recommend_candidates(fs, items, off, 2, items, off, 1, 0, ids, scores));
    ROW(ARG, "elastic_session_last_stats(freed session)", elastic_session_last_stats(fs, &stats));
    ROW(ARG, "elastic_evaluate(freed session)", elastic_evaluate(fs, d, ELASTIC_SPLIT_TEST, 0, &met));
    VAL("elastic_session_backend(freed session) is \"\"", elastic_session_backend(fs) && !elastic_session_backend(fs)[0]);
    VAL("elastic_session_model(freed session) is NULL", elastic_session_model(fs) == NULL);
    VAL("elastic_dataset_format(freed dataset) is AUTO", elastic_dataset_format(fd) == ELASTIC_DATA_FORMAT_AUTO);
    VAL("elastic_dataset_num_users(freed dataset) is 0", elastic_dataset_num_users(fd) == 0);
    VAL("elastic_dataset_num_items(freed dataset) is 0", elastic_dataset_num_items(fd) == 0);
    VAL("elastic_dataset_num_events(freed dataset) is 0", elastic_dataset_num_events(fd) == 0);
    ROW(ARG, "elastic_dataset_user(freed dataset)", elastic_dataset_user(fd, 0, &seq, &len));
    ROW(ARG, "elastic_dataset_split(freed dataset)", elastic_dataset_split(fd, 0, ELASTIC_SPLIT_TEST, &seq, &len, &target));
    ROW(ARG, "elastic_dataset_train_items(freed dataset)", elastic_dataset_train_items(fd, 0, &seq, &len));
    VAL("elastic_dataset_item_name(freed dataset) is NULL", elastic_dataset_item_name(fd, 1) == NULL);
    VAL("elastic_dataset_item_id(freed dataset) is 0", elastic_dataset_item_id(fd, "1") == 0);
    VAL("elastic_dataset_user_name(freed dataset) is NULL", elastic_dataset_user_name(fd, 0) == NULL);
    ROW(ARG, "elastic_dataset_item_map_json(freed dataset)", elastic_dataset_item_map_json(fd, &fjson));
    ROW(ARG, "elastic_dataset_apply_item_map(freed dataset)", elastic_dataset_apply_item_map(fd, "[\"1\"]"));
    ROW(ARG, "elastic_dataset_save_pairs(freed dataset)", elastic_dataset_save_pairs(fd, missing));
    ROW(ARG, "elastic_evaluate(freed dataset)", elastic_evaluate(ls, fd, ELASTIC_SPLIT_TEST, 0, &met));
    ROW(ARG, "elastic_evaluate_popularity(freed dataset)", elastic_evaluate_popularity(fd, ELASTIC_SPLIT_TEST, 0, &met));
    elastic_dataset_free(fd); /* a double free is ignored */
    VAL("elastic_dataset_free(freed dataset) is ignored", 1);
    ROW(ARG, "elastic_trainer_gradient(freed trainer)", elastic_trainer_gradient(ft, items, off, tg, 2, &loss, NULL));
    ROW(ARG, "elastic_trainer_step(freed trainer)", elastic_trainer_step(ft, items, off, tg, 2, &loss));
    ROW(ARG, "elastic_trainer_gradient_positions(freed trainer)", elastic_trainer_gradient_positions(ft, items, off, pos_t, 2, &loss, NULL));
    ROW(ARG, "elastic_trainer_step_positions(freed trainer)", elastic_trainer_step_positions(ft, items, off, pos_t, 2, &loss));
    ROW(ARG, "elastic_trainer_epoch(freed trainer)", elastic_trainer_epoch(ft, d, NULL, NULL, &prog));
    VAL("elastic_trainer_epochs(freed trainer) is 0", elastic_trainer_epochs(ft) == 0);
    VAL("elastic_trainer_steps(freed trainer) is 0", elastic_trainer_steps(ft) == 0);
    VAL("elastic_trainer_fallback_nodes(freed trainer) is 0", elastic_trainer_fallback_nodes(ft) == 0);
    ROW(ARG, "elastic_trainer_save_state(freed trainer)", elastic_trainer_save_state(ft, missing));
    ROW(ARG, "elastic_trainer_load_state(freed trainer)", elastic_trainer_load_state(ft, state));
    elastic_trainer_free(ft); /* a double free is ignored */
    VAL("elastic_trainer_free(freed trainer) is ignored", 1);
    VAL("elastic_item_map_id(freed map) is 0", elastic_item_map_id(fmap, "1") == 0);
    VAL("elastic_item_map_name(freed map) is NULL", elastic_item_map_name(fmap, 1) == NULL);
    elastic_item_map_free(fmap); /* a double free is ignored */
    VAL("elastic_item_map_free(freed map) is ignored", 1);
    elastic_model_free(fm); /* a double free is ignored */
    VAL("... and of a model freed after its accessors", 1);
#endif
    /* A trainer on a live dataset, after that dataset's twin was freed. */
    ROW(OK, "elastic_dataset_synth(live dataset)", elastic_dataset_synth(&fd, &so));
    ROW(OK, "elastic_trainer_init(live trainer)", elastic_trainer_init(&ft, tm2, &to));
    ROW(OK, "elastic_trainer_epoch(live trainer, live dataset)", elastic_trainer_epoch(ft, fd, NULL, NULL, &prog));
    elastic_trainer_free(ft);
    elastic_dataset_free(fd);
    elastic_model_free(tm2);
    elastic_session_free(ls);
    elastic_model_free(model);
    elastic_model_free(m1);
    elastic_dataset_free(d);
    fclose(devnull);
    remove(path);
    remove(empty);
    remove(pairs);
    remove(missing);
    printf("%d rows, %d failed\n", rows, bad);
    return bad ? 1 : 0;
}
