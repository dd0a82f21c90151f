/*
 * test_data.c - reading interaction logs: each format (pairs, MovieLens,
 * CSV) and AUTO detection, id remapping by first appearance, time ordering
 * with equal timestamps, the leave-one-out split, short users, every
 * malformed input with its line number, missing and empty files, the item
 * map (JSON, applying one), writing pairs, and ML-1M when it is present.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, clock_gettime */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "elastic.h"
#include "test_util.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/elastic_data_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Writes n bytes of text to tmpdir/name; path receives the full path. */
static void write_bytes(char *path, size_t cap, const char *name, const char *text, size_t n)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

static elastic_dataset *load_ok(const char *name, const char *text, elastic_data_format format)
{
    char path[256];
    write_bytes(path, sizeof path, name, text, strlen(text));
    elastic_dataset *d = NULL;
    elastic_status st = elastic_dataset_load(&d, path, format);
    unlink(path);
    if (st != ELASTIC_OK) fail_msg("%s: %s", name, elastic_last_error());
    return d;
}

/* Loading must fail with `status` and a message holding `want`. */
static void load_err_n(const char *name, const char *text, size_t n, elastic_data_format format,
                       elastic_status status, const char *want)
{
    char path[256];
    write_bytes(path, sizeof path, name, text, n);
    elastic_dataset *d = (elastic_dataset *)path; /* must be reset to NULL */
    elastic_status st = elastic_dataset_load(&d, path, format);
    unlink(path);
    if (st != status || !strstr(elastic_last_error(), want))
        fail_msg("%s: got %s '%s', want %s with '%s'", name, elastic_status_name(st),
                 elastic_last_error(), elastic_status_name(status), want);
    assert_null(d);
}

static void load_err(const char *name, const char *text, elastic_data_format format,
                     const char *want)
{
    load_err_n(name, text, strlen(text), format, ELASTIC_ERR_FORMAT, want);
}

/* The user's items as their original names, space-separated. */
static const char *seq(const elastic_dataset *d, int64_t user)
{
    static char buf[1024];
    const int32_t *x;
    int64_t n;
    assert_int_equal(elastic_dataset_user(d, user, &x, &n), ELASTIC_OK);
    buf[0] = '\0';
    for (int64_t i = 0; i < n; i++) {
        strcat(buf, i ? " " : "");
        strcat(buf, elastic_dataset_item_name(d, x[i]));
    }
    return buf;
}

static void assert_ids(const elastic_dataset *d, int64_t user, const int32_t *want, int64_t n)
{
    const int32_t *x;
    int64_t len;
    assert_int_equal(elastic_dataset_user(d, user, &x, &len), ELASTIC_OK);
    assert_int_equal(len, n);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(x[i], want[i]);
}

static void test_pairs(void **state)
{
    (void)state;
    elastic_dataset *d = load_ok("log.txt", "u1 i1\nu1 i2\nu2 i2\nu1\ti3\n  u2   i4  \nu2 i1\n",
                                 ELASTIC_DATA_FORMAT_AUTO);
    assert_int_equal(elastic_dataset_num_users(d), 2);
    assert_int_equal(elastic_dataset_num_items(d), 4);
    assert_int_equal(elastic_dataset_num_events(d), 6);
    assert_ids(d, 0, (const int32_t[]){1, 2, 3}, 3);
    assert_ids(d, 1, (const int32_t[]){2, 4, 1}, 3);
    assert_string_equal(elastic_dataset_item_name(d, 4), "i4");
    assert_null(elastic_dataset_item_name(d, 0));
    assert_null(elastic_dataset_item_name(d, 5));
    assert_int_equal(elastic_dataset_item_id(d, "i3"), 3);
    assert_int_equal(elastic_dataset_item_id(d, "zz"), 0);
    assert_string_equal(elastic_dataset_user_name(d, 1), "u2");
    assert_null(elastic_dataset_user_name(d, 2));

    /* Leave-one-out: u1 = 1 2 3. */
    const int32_t *h;
    int64_t len;
    int32_t target;
    assert_int_equal(elastic_dataset_split(d, 0, ELASTIC_SPLIT_VALID, &h, &len, &target),
                     ELASTIC_OK);
    assert_int_equal(len, 1);
    assert_int_equal(h[0], 1);
    assert_int_equal(target, 2);
    assert_int_equal(elastic_dataset_split(d, 0, ELASTIC_SPLIT_TEST, &h, &len, &target),
                     ELASTIC_OK);
    assert_int_equal(len, 2);
    assert_int_equal(h[1], 2);
    assert_int_equal(target, 3);
    assert_int_equal(elastic_dataset_split(d, 1, ELASTIC_SPLIT_TEST, &h, &len, &target),
                     ELASTIC_OK);
    assert_int_equal(target, 1);
    assert_int_equal(elastic_dataset_train_items(d, 1, &h, &len), ELASTIC_OK);
    assert_int_equal(len, 1);
    assert_int_equal(h[0], 2);
    assert_int_equal(elastic_dataset_split(d, 2, ELASTIC_SPLIT_TEST, &h, &len, &target),
                     ELASTIC_ERR_OUT_OF_RANGE);
    assert_int_equal(elastic_dataset_split(d, -1, ELASTIC_SPLIT_TEST, &h, &len, &target),
                     ELASTIC_ERR_OUT_OF_RANGE);
    assert_int_equal(elastic_dataset_split(d, 0, (elastic_split)5, &h, &len, &target),
                     ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_dataset_user(d, 2, &h, &len), ELASTIC_ERR_OUT_OF_RANGE);
    assert_int_equal(elastic_dataset_user(NULL, 0, &h, &len), ELASTIC_ERR_INVALID_ARG);
    elastic_dataset_free(d);
    elastic_dataset_free(NULL);
}

static void test_short_users(void **state)
{
    (void)state;
    elastic_dataset *d =
        load_ok("short.txt", "a x\nb y\nb z\nc x\nc y\nc z\n", ELASTIC_DATA_FORMAT_PAIRS);
    const int32_t *h;
    int64_t len;
    int32_t target;
    for (int64_t u = 0; u < 2; u++) {
        for (int s = 0; s < 2; s++)
            assert_int_equal(elastic_dataset_split(d, u, (elastic_split)s, &h, &len, &target),
                             ELASTIC_ERR_OUT_OF_RANGE);
        assert_non_null(strstr(elastic_last_error(), "at least 3"));
        assert_int_equal(elastic_dataset_train_items(d, u, &h, &len), ELASTIC_OK);
        assert_int_equal(len, u + 1); /* all of them */
    }
    assert_int_equal(elastic_dataset_split(d, 2, ELASTIC_SPLIT_VALID, &h, &len, &target),
                     ELASTIC_OK);
    assert_int_equal(len, 1);
    assert_int_equal(elastic_dataset_train_items(d, 2, &h, &len), ELASTIC_OK);
    assert_int_equal(len, 1);
    elastic_dataset_free(d);
}

static void test_movielens(void **state)
{
    (void)state;
    /* User 7: 200 and 300 share timestamp 10 and keep their file order. */
    const char *text = "7::100::5::30\n7::200::3::10\n8::100::4::5\n7::300::4::10\n"
                       "7::400::1::20\n";
    elastic_dataset *d = load_ok("ratings.dat", text, ELASTIC_DATA_FORMAT_AUTO);
    assert_int_equal(elastic_dataset_num_users(d), 2);
    assert_int_equal(elastic_dataset_num_items(d), 4);
    assert_ids(d, 0, (const int32_t[]){2, 3, 4, 1}, 4);
    assert_ids(d, 1, (const int32_t[]){1}, 1);
    assert_string_equal(seq(d, 0), "200 300 400 100");
    assert_string_equal(elastic_dataset_user_name(d, 1), "8");
    elastic_dataset_free(d);
    /* Detected from "::" without the .dat name; explicit format; spaces. */
    d = load_ok("ml.txt", "1 :: 5 :: 3 :: 2\n1::6::3.5::1\r\n", ELASTIC_DATA_FORMAT_AUTO);
    assert_string_equal(seq(d, 0), "6 5");
    elastic_dataset_free(d);
    d = load_ok("ml.log", "1::5::3::2\n1::6::3::1\n", ELASTIC_DATA_FORMAT_MOVIELENS);
    assert_string_equal(seq(d, 0), "6 5");
    elastic_dataset_free(d);
}

static void test_csv(void **state)
{
    (void)state;
    elastic_dataset *d = load_ok("ml.csv",
                                 "user,item,rating,timestamp\nu,a,5,3\nu,b,,1\nv,a,4.5,2\n"
                                 "u,c,1,1\n",
                                 ELASTIC_DATA_FORMAT_AUTO);
    assert_int_equal(elastic_dataset_num_users(d), 2);
    assert_int_equal(elastic_dataset_num_items(d), 3);
    assert_ids(d, 0, (const int32_t[]){2, 3, 1}, 3);
    assert_string_equal(seq(d, 0), "b c a");
    assert_string_equal(seq(d, 1), "a");
    elastic_dataset_free(d);

    /* Columns in any order, case-insensitive, an extra column, quoting. */
    d = load_ok("x.csv",
                "Timestamp,ITEM,extra,User\n2,\"x,1\",foo,u\n1, y ,bar,u\n"
                "3,\"say \"\"hi\"\"\",,u\n",
                ELASTIC_DATA_FORMAT_AUTO);
    assert_string_equal(seq(d, 0), "y x,1 say \"hi\"");
    elastic_dataset_free(d);

    /* No timestamp: the file order; aliases; detected by the comma. */
    d = load_ok("nots.txt", "user_id,movie_id\na,1\na,2\nb,2\n", ELASTIC_DATA_FORMAT_AUTO);
    assert_string_equal(seq(d, 0), "1 2");
    assert_string_equal(seq(d, 1), "2");
    elastic_dataset_free(d);

    /* A byte order mark, CRLF and blank lines. */
    d = load_ok("bom.csv", "\xEF\xBB\xBFuser,item\r\n\r\na,1\r\n\n   \na,2\r\n",
                ELASTIC_DATA_FORMAT_CSV);
    assert_string_equal(seq(d, 0), "1 2");
    elastic_dataset_free(d);
}

static void test_malformed(void **state)
{
    (void)state;
    const elastic_data_format P = ELASTIC_DATA_FORMAT_PAIRS, M = ELASTIC_DATA_FORMAT_MOVIELENS,
                              C = ELASTIC_DATA_FORMAT_CSV, A = ELASTIC_DATA_FORMAT_AUTO;
    load_err("p1.txt", "a 1\nb 2 3\n", P, "p1.txt:2: expected 2 fields (user item), got 3");
    load_err("p2.txt", "a 1\n\nb\n", P, "p2.txt:3: expected 2 fields (user item), got 1");
    load_err("m1.dat", "1::2::3::4\n1::2::3\n", A, "m1.dat:2: expected 4 fields");
    load_err("m2.dat", "1::2::3::4\n1::2::3::4::5\n", M, "m2.dat:2: expected 4 fields");
    load_err("m3.dat", "1::2::x::4\n", M, "m3.dat:1: rating 'x' is not a number");
    load_err("m4.dat", "1::2::3::4\n\n1::2::3::abc\n", M,
             "m4.dat:3: timestamp 'abc' is not a number");
    load_err("m5.dat", "::2::3::4\n", M, "m5.dat:1: empty user id");
    load_err("m6.dat", "1::::3::4\n", M, "m6.dat:1: empty item id");
    load_err("m7.dat", "1::2::3::inf\n", M, "m7.dat:1: timestamp 'inf' is not a number");
    load_err("ml.csv", "user,item,rating,timestamp\n1,2,3,4\n1,2,3\n", A,
             "ml.csv:3: expected 4 fields, got 3");
    load_err("c2.csv", "user,item\n1,2,3\n", C, "c2.csv:2: expected 2 fields, got 3");
    load_err("c3.csv", "user,rating\n1,2\n", C, "c3.csv:1: CSV header must name the columns");
    load_err("c4.csv", "user,item,user_id\n", C, "c4.csv:1: CSV header names 'user_id' twice");
    load_err("c5.csv", "user,item\n\"a,1\n", C, "c5.csv:2: unterminated quoted field");
    load_err("c6.csv", "user,item\n\"a\"b,1\n", C, "c6.csv:2: unexpected text after a quoted");
    load_err("c7.csv", "user,item,timestamp\na,b,1\na,b,\n", C,
             "c7.csv:3: timestamp '' is not a number");
    load_err("c8.csv", "user,item\na,\n", C, "c8.csv:2: empty item id");
    load_err("c9.csv", "user,item,rating\na,b,good\n", C, "c9.csv:2: rating 'good' is not");
    load_err_n("nul.txt", "a 1\nb\0 2\n", 9, P, ELASTIC_ERR_FORMAT, "nul.txt:2: NUL byte");
    /* No events. */
    load_err("empty.txt", "", A, "empty.txt: no events (empty file)");
    load_err("blank.txt", "\n  \n\r\n", A, "no events (no data lines)");
    load_err("header.csv", "user,item,rating,timestamp\n", A, "no events");
    /* Missing file, bad arguments. */
    elastic_dataset *d = NULL;
    assert_int_equal(elastic_dataset_load(&d, "/nonexistent/ml.txt", A), ELASTIC_ERR_IO);
    assert_non_null(strstr(elastic_last_error(), "/nonexistent/ml.txt"));
    assert_null(d);
    assert_int_equal(elastic_dataset_load(&d, tmpdir, P), ELASTIC_ERR_IO); /* a directory */
    assert_int_equal(elastic_dataset_load(NULL, "x", A), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_dataset_load(&d, NULL, A), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_dataset_load(&d, "x", (elastic_data_format)9),
                     ELASTIC_ERR_INVALID_ARG);
}

/* One user per line (the S3-Rec / BERT4Rec data releases). */
static void test_sequences(void **state)
{
    (void)state;
    const elastic_data_format S = ELASTIC_DATA_FORMAT_SEQUENCES, A = ELASTIC_DATA_FORMAT_AUTO;
    elastic_dataset *d = load_ok("seq.txt", "1 10 11 12\n2\t11 13\n\n3 10\n1 14\r\n", A);
    assert_int_equal(elastic_dataset_format(d), S); /* a line with more than two fields */
    assert_string_equal(elastic_data_format_name(elastic_dataset_format(d)), "sequences");
    assert_int_equal(elastic_dataset_num_users(d), 3);
    assert_int_equal(elastic_dataset_num_items(d), 5);
    assert_int_equal(elastic_dataset_num_events(d), 7);
    assert_string_equal(seq(d, 0), "10 11 12 14"); /* a second line appends */
    assert_string_equal(seq(d, 1), "11 13");
    assert_string_equal(seq(d, 2), "10");
    assert_ids(d, 0, (const int32_t[]){1, 2, 3, 5}, 4);
    elastic_dataset_free(d);
    /* Every line of two fields: the same as pairs, reported as pairs. */
    d = load_ok("two.txt", "u a\nu b\nv a\n", A);
    assert_int_equal(elastic_dataset_format(d), ELASTIC_DATA_FORMAT_PAIRS);
    assert_string_equal(seq(d, 0), "a b");
    elastic_dataset_free(d);
    d = load_ok("two.txt", "u a\nu b\nv a\n", S);
    assert_int_equal(elastic_dataset_format(d), S);
    assert_string_equal(seq(d, 0), "a b");
    elastic_dataset_free(d);
    load_err("s1.txt", "1 2 3\n4\n", S, "s1.txt:2: expected a user and at least one item");
    load_err("s2.txt", "1 2 3\n\n  7  \n", A, "s2.txt:3: expected a user and at least one item");
    load_err_n("s3.txt", "1 2\n2 3\0", 8, S, ELASTIC_ERR_FORMAT, "s3.txt:2: NUL byte");
}

/* RecBole atomic files (.inter): typed tab-separated header. */
static void test_recbole(void **state)
{
    (void)state;
    const elastic_data_format R = ELASTIC_DATA_FORMAT_RECBOLE, A = ELASTIC_DATA_FORMAT_AUTO;
    const char *ml = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "1\t1193\t5\t978300760\n1\t661\t3\t978302109\n"
                     "2\t1193\t4\t978298413\n1\t914\t3\t978301968\n";
    elastic_dataset *d = load_ok("ml-1m.inter", ml, A);
    assert_int_equal(elastic_dataset_format(d), R);
    assert_int_equal(elastic_dataset_num_users(d), 2);
    assert_string_equal(seq(d, 0), "1193 914 661"); /* by timestamp */
    assert_string_equal(seq(d, 1), "1193");
    elastic_dataset_free(d);
    /* Detected by the header alone; columns in any order, extra typed columns
     * (a token_seq with spaces), no timestamp: the file order. */
    d = load_ok("log.txt",
                "item_id:token\tgenre:token_seq\tuser_id:token\n"
                "a\tAction Drama\tu\nb\t\tu\nc\tComedy\tv\n",
                A);
    assert_int_equal(elastic_dataset_format(d), R);
    assert_string_equal(seq(d, 0), "a b");
    assert_string_equal(seq(d, 1), "c");
    elastic_dataset_free(d);
    load_err("r1.inter", "user_id:token\titem_id\n1\t2\n", R,
             "r1.inter:1: RecBole header field 'item_id' is not name:type");
    load_err("r2.inter", "user_id:token\titem_id:int\n1\t2\n", A,
             "r2.inter:1: RecBole header field 'item_id:int'");
    load_err("r3.inter", "user_id:token\trating:float\n1\t2\n", R,
             "r3.inter:1: CSV header must name the columns user and item");
    load_err("r4.inter", "user_id:token\titem_id:token\n1\t2\n\n1\t2\t3\n", R,
             "r4.inter:4: expected 2 fields, got 3");
    load_err("r5.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n", R,
             "r5.inter:2: timestamp 'soon' is not a number");
    load_err("r6.inter", "user_id:token\titem_id:token\n\t2\n", R, "r6.inter:2: empty user id");
}

/* AUTO says what it chose, and conflicting signs are an error naming the
 * candidates. */
static void test_detect(void **state)
{
    (void)state;
    const elastic_data_format A = ELASTIC_DATA_FORMAT_AUTO;
    elastic_dataset *d = load_ok("r.dat", "1::2::3::4\n", A);
    assert_int_equal(elastic_dataset_format(d), ELASTIC_DATA_FORMAT_MOVIELENS);
    elastic_dataset_free(d);
    d = load_ok("r.txt", "user,item\n1,2\n", A);
    assert_int_equal(elastic_dataset_format(d), ELASTIC_DATA_FORMAT_CSV);
    elastic_dataset_free(d);
    load_err("amb1.csv", "1::2::3::4\n", A,
             "amb1.csv:1: the format is ambiguous: it could be csv or movielens; choose with "
             "--format csv or --format movielens");
    load_err("amb2.txt", "\n1::2,3::4::5\n", A,
             "amb2.txt:2: the format is ambiguous: it could be movielens or csv");
    load_err("amb3.csv", "user_id:token\titem_id:token\n1\t2\n", A, "it could be recbole or csv");
    load_err("amb4.inter", "1::2::3::4\n", A, "it could be recbole or movielens");
    /* An explicit format settles it. */
    d = load_ok("amb1.csv", "1::2::3::4\n", ELASTIC_DATA_FORMAT_MOVIELENS);
    assert_int_equal(elastic_dataset_num_events(d), 1);
    elastic_dataset_free(d);
    assert_string_equal(elastic_data_format_name((elastic_data_format)42), "unknown");
}

/* No fixed limits: a very long id and many distinct ids. */
static void test_no_limits(void **state)
{
    (void)state;
    size_t n = 200000;
    char *text = malloc(n + 64);
    assert_non_null(text);
    strcpy(text, "u ");
    memset(text + 2, 'x', n);
    strcpy(text + 2 + n, "\nu y\nu z\n");
    elastic_dataset *d = load_ok("long.txt", text, ELASTIC_DATA_FORMAT_PAIRS);
    assert_int_equal(strlen(elastic_dataset_item_name(d, 1)), n);
    elastic_dataset_free(d);
    free(text);

    size_t cap = 30000 * 24;
    text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < 30000; i++)
        len += (size_t)snprintf(text + len, cap - len, "user%d item%d\n", i % 1000, i);
    d = load_ok("many.txt", text, ELASTIC_DATA_FORMAT_PAIRS);
    assert_int_equal(elastic_dataset_num_users(d), 1000);
    assert_int_equal(elastic_dataset_num_items(d), 30000);
    assert_int_equal(elastic_dataset_item_id(d, "item29999"), 30000);
    assert_int_equal(elastic_dataset_item_id(d, "item1234"), 1235);
    elastic_dataset_free(d);
    free(text);
}

static void test_item_map(void **state)
{
    (void)state;
    elastic_dataset *d =
        load_ok("map.txt", "u1 i1\nu1 i2\nu2 i2\nu1 i3\nu2 \"q\\\n", ELASTIC_DATA_FORMAT_PAIRS);
    char *json;
    assert_int_equal(elastic_dataset_item_map_json(d, &json), ELASTIC_OK);
    assert_string_equal(json, "[\"i1\",\"i2\",\"i3\",\"\\\"q\\\\\"]");
    free(json);

    /* Apply a model's map: ids follow it, num_items becomes its length. */
    assert_int_equal(
        elastic_dataset_apply_item_map(d, "[\"\\\"q\\\\\",\"i3\",\"i9\",\"i2\",\"i1\"]"),
        ELASTIC_OK);
    assert_int_equal(elastic_dataset_num_items(d), 5);
    assert_ids(d, 0, (const int32_t[]){5, 4, 2}, 3);
    assert_ids(d, 1, (const int32_t[]){4, 1}, 2);
    assert_int_equal(elastic_dataset_item_id(d, "i9"), 3);
    assert_string_equal(elastic_dataset_item_name(d, 1), "\"q\\");

    /* Errors leave the dataset unchanged. */
    assert_int_equal(elastic_dataset_apply_item_map(d, "[\"i1\",\"i2\"]"),
                     ELASTIC_ERR_OUT_OF_RANGE);
    assert_non_null(strstr(elastic_last_error(), "not in the model's item map"));
    assert_int_equal(elastic_dataset_apply_item_map(d, "{\"a\":1}"), ELASTIC_ERR_FORMAT);
    assert_int_equal(elastic_dataset_apply_item_map(d, "[1,2]"), ELASTIC_ERR_FORMAT);
    assert_int_equal(elastic_dataset_apply_item_map(d, "[\"i1\",\"i1\"]"), ELASTIC_ERR_FORMAT);
    assert_non_null(strstr(elastic_last_error(), "twice"));
    assert_int_equal(elastic_dataset_apply_item_map(d, "[]"), ELASTIC_ERR_FORMAT);
    assert_int_equal(elastic_dataset_apply_item_map(d, "[not json"), ELASTIC_ERR_FORMAT);
    assert_int_equal(elastic_dataset_num_items(d), 5);
    assert_ids(d, 0, (const int32_t[]){5, 4, 2}, 3);
    elastic_dataset_free(d);
}

static void test_save_pairs(void **state)
{
    (void)state;
    elastic_dataset *d =
        load_ok("s.csv", "user,item,timestamp\nu,b,2\nu,a,1\nv,c,1\n", ELASTIC_DATA_FORMAT_CSV);
    char path[256];
    snprintf(path, sizeof path, "%s/out.txt", tmpdir);
    assert_int_equal(elastic_dataset_save_pairs(d, path), ELASTIC_OK);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[256] = {0};
    assert_int_equal(fread(buf, 1, sizeof buf - 1, f), 12);
    fclose(f);
    assert_string_equal(buf, "u a\nu b\nv c\n");
    elastic_dataset *e = NULL;
    assert_int_equal(elastic_dataset_load(&e, path, ELASTIC_DATA_FORMAT_AUTO), ELASTIC_OK);
    assert_string_equal(seq(e, 0), "a b");
    unlink(path);
    elastic_dataset_free(e);
    elastic_dataset_free(d);
    /* Ids with a space cannot be written as pairs. */
    d = load_ok("sp.csv", "user,item\nu,a b\n", ELASTIC_DATA_FORMAT_CSV);
    assert_int_equal(elastic_dataset_save_pairs(d, path), ELASTIC_ERR_FORMAT);
    assert_int_equal(access(path, F_OK), -1);
    elastic_dataset_free(d);
}

static void test_ml1m(void **state)
{
    (void)state;
    const char *path = getenv("ELASTIC_ML1M");
#ifdef ELASTIC_SHARED_DATA_DIR
    if (!path) path = ELASTIC_SHARED_DATA_DIR "/ml-1m.txt";
#endif
    if (!path || access(path, R_OK) != 0) {
        printf("test_ml1m: skipped (%s not found)\n", path ? path : "ml-1m.txt");
        skip();
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    elastic_dataset *d = NULL;
    elastic_status st = elastic_dataset_load(&d, path, ELASTIC_DATA_FORMAT_AUTO);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (st != ELASTIC_OK) fail_msg("%s", elastic_last_error());
    printf("ml-1m: loaded in %.3f s\n",
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9);
    assert_int_equal(elastic_dataset_num_users(d), 6040);
    assert_int_equal(elastic_dataset_num_items(d), 3706);
    assert_int_equal(elastic_dataset_num_events(d), 1000209);
    elastic_metrics m;
    assert_int_equal(elastic_evaluate_popularity(d, ELASTIC_SPLIT_TEST, 0, &m), ELASTIC_OK);
    assert_int_equal(m.users, 6040);
    printf("ml-1m: popularity test HR@10 %.4f NDCG@10 %.4f\n", m.hr10, m.ndcg10);
    elastic_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs),     cmocka_unit_test(test_short_users),
        cmocka_unit_test(test_movielens), cmocka_unit_test(test_csv),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_no_limits),
        cmocka_unit_test(test_item_map),  cmocka_unit_test(test_save_pairs),
        cmocka_unit_test(test_ml1m),      cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_recbole),   cmocka_unit_test(test_detect),
    };
    /* The directory must be empty at the end: a test that leaves a file
     * fails the run (cmocka 1.1 reports a failed group teardown but does not
     * count it). */
    int failed = cmocka_run_group_tests(tests, setup_dir, NULL);
    return failed + tu_remove_empty_dir(tmpdir);
}
