/*
 * test_safetensors.c - the generic safetensors reader and writer: round
 * trips in memory and on disk, and a corpus of malformed images (each must
 * give ELASTIC_ERR_FORMAT with a message naming the problem).
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, access, rmdir */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/safetensors.h"
#include "test_util.h"

#include <sys/stat.h>
#include <unistd.h>

static const float A_DATA[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -0.0f};
static const int64_t B_DATA[2] = {-7, INT64_MAX};
static const uint16_t C_DATA[2] = {0x3c00, 0xc000};

/* A valid image: tensors a (F32 [2,3]), b (I64 [2]), c (F16 [1,1,1,2]),
 * empty (F32 [0,4]), scalar (F32 []), and two metadata entries. */
static unsigned char *valid_image(size_t *size)
{
    static const float scalar = 42.0f;
    elastic_st_tensor t[5] = {
        {.name = "a", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = A_DATA, .nbytes = 24},
        {.name = "b", .dtype = "I64", .ndim = 1, .shape = {2}, .data = B_DATA, .nbytes = 16},
        {.name = "c",
         .dtype = "F16",
         .ndim = 4,
         .shape = {1, 1, 1, 2},
         .data = C_DATA,
         .nbytes = 4},
        {.name = "empty", .dtype = "F32", .ndim = 2, .shape = {0, 4}, .data = NULL, .nbytes = 0},
        {.name = "scalar", .dtype = "F32", .ndim = 0, .data = &scalar, .nbytes = 4},
    };
    elastic_st_meta m[2] = {{"format", "pt"}, {"note", "h\xc3\xa9llo \"quoted\"\n"}};
    unsigned char *bytes = NULL;
    assert_int_equal(elastic_st_serialize(m, 2, t, 5, &bytes, size), ELASTIC_OK);
    return bytes;
}

static void check_valid(const elastic_st_file *f)
{
    assert_int_equal(f->n_tensors, 5);
    assert_int_equal(f->n_meta, 2);
    assert_string_equal(elastic_st_meta_get(f, "format"), "pt");
    assert_string_equal(elastic_st_meta_get(f, "note"), "h\xc3\xa9llo \"quoted\"\n");
    assert_null(elastic_st_meta_get(f, "absent"));

    const elastic_st_tensor *a = elastic_st_find(f, "a");
    assert_non_null(a);
    assert_string_equal(a->dtype, "F32");
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->numel, 6);
    assert_int_equal(a->nbytes, 24);
    assert_memory_equal(a->data, A_DATA, 24);

    const elastic_st_tensor *b = elastic_st_find(f, "b");
    assert_non_null(b);
    assert_string_equal(b->dtype, "I64");
    assert_memory_equal(b->data, B_DATA, 16);

    const elastic_st_tensor *c = elastic_st_find(f, "c");
    assert_non_null(c);
    assert_int_equal(c->ndim, 4);
    assert_memory_equal(c->data, C_DATA, 4);

    const elastic_st_tensor *e = elastic_st_find(f, "empty");
    assert_non_null(e);
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);

    const elastic_st_tensor *s = elastic_st_find(f, "scalar");
    assert_non_null(s);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    float v;
    memcpy(&v, s->data, 4);
    assert_true(v == 42.0f);

    assert_null(elastic_st_find(f, "missing"));
    /* Header order is the writer's order. */
    assert_string_equal(f->tensors[0].name, "a");
    assert_string_equal(f->tensors[4].name, "scalar");
}

static uint64_t get_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_roundtrip_memory(void **state)
{
    (void)state;
    size_t size;
    unsigned char *bytes = valid_image(&size);
    uint64_t hlen = get_u64le(bytes);
    assert_int_equal(hlen % 8, 0);
    assert_true(8 + hlen + 48 == size); /* 24 + 16 + 4 + 0 + 4 data bytes */
    assert_int_equal(bytes[8], '{');

    elastic_st_file f;
    assert_int_equal(elastic_st_parse(bytes, size, &f), ELASTIC_OK);
    check_valid(&f);
    /* Data offsets are contiguous in the writer's order. */
    assert_ptr_equal(f.tensors[0].data, bytes + 8 + hlen);
    assert_ptr_equal(f.tensors[1].data, bytes + 8 + hlen + 24);
    elastic_st_free(&f);
    elastic_st_free(&f); /* a freed file is empty; freeing again is harmless */
    elastic_st_free(NULL);
    free(bytes);
}

static char *make_tmpdir(void)
{
    char *dir = malloc(64);
    assert_non_null(dir);
    snprintf(dir, 64, "/tmp/elastic_st_XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void test_roundtrip_file(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);

    elastic_st_tensor t[2] = {
        {.name = "a", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = A_DATA, .nbytes = 24},
        {.name = "b", .dtype = "I64", .ndim = 1, .shape = {2}, .data = B_DATA, .nbytes = 16},
    };
    elastic_st_meta m[1] = {{"k", "v"}};
    assert_int_equal(elastic_st_write(path, m, 1, t, 2), ELASTIC_OK);
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed away */
    /* Overwriting an existing file works too. */
    assert_int_equal(elastic_st_write(path, m, 1, t, 2), ELASTIC_OK);

    elastic_st_file f;
    assert_int_equal(elastic_st_read(path, &f), ELASTIC_OK);
    assert_int_equal(f.n_tensors, 2);
    assert_memory_equal(elastic_st_find(&f, "a")->data, A_DATA, 24);
    assert_memory_equal(elastic_st_find(&f, "b")->data, B_DATA, 16);
    assert_string_equal(elastic_st_meta_get(&f, "k"), "v");
    elastic_st_free(&f);

    /* The same bytes as the in-memory serialiser. */
    unsigned char *bytes;
    size_t size;
    assert_int_equal(elastic_st_serialize(m, 1, t, 2, &bytes, &size), ELASTIC_OK);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char *disk = malloc(size + 1);
    assert_int_equal(fread(disk, 1, size + 1, fp), size);
    fclose(fp);
    assert_memory_equal(disk, bytes, size);
    free(disk);
    free(bytes);

    /* No tensors, no metadata: "{}" padded. */
    assert_int_equal(elastic_st_write(path, NULL, 0, NULL, 0), ELASTIC_OK);
    assert_int_equal(elastic_st_read(path, &f), ELASTIC_OK);
    assert_int_equal(f.n_tensors, 0);
    assert_int_equal(f.n_meta, 0);
    elastic_st_free(&f);

    /* I/O errors name the path. */
    char missing[256];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", dir);
    assert_int_equal(elastic_st_read(missing, &f), ELASTIC_ERR_IO);
    assert_non_null(strstr(elastic_last_error(), "missing.safetensors"));
    assert_int_equal(elastic_st_read(dir, &f), ELASTIC_ERR_IO); /* a directory */
    char nodir[256];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.safetensors", dir);
    assert_int_equal(elastic_st_write(nodir, m, 1, t, 2), ELASTIC_ERR_IO);
    assert_non_null(strstr(elastic_last_error(), "no/such/dir"));

    /* A file shorter than 8 bytes is a format error. */
    fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs("abc", fp);
    fclose(fp);
    assert_int_equal(elastic_st_read(path, &f), ELASTIC_ERR_FORMAT);
    assert_non_null(strstr(elastic_last_error(), "too short"));

    remove(path);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

static void test_writer_rejects_bad_input(void **state)
{
    (void)state;
    unsigned char *bytes;
    size_t size;
    elastic_st_tensor t[2] = {
        {.name = "a", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = A_DATA, .nbytes = 24},
        {.name = "a", .dtype = "F32", .ndim = 1, .shape = {1}, .data = A_DATA, .nbytes = 4},
    };
    assert_int_equal(elastic_st_serialize(NULL, 0, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "duplicate tensor"));
    t[1].name = "__metadata__";
    assert_int_equal(elastic_st_serialize(NULL, 0, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    t[1].name = "b";
    t[1].nbytes = 8;
    assert_int_equal(elastic_st_serialize(NULL, 0, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "nbytes"));
    t[1].nbytes = 4;
    t[1].dtype = "F33";
    assert_int_equal(elastic_st_serialize(NULL, 0, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "unknown dtype"));
    t[1].dtype = "F32";
    t[1].ndim = 5;
    assert_int_equal(elastic_st_serialize(NULL, 0, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    t[1].ndim = 1;
    elastic_st_meta m[2] = {{"k", "v"}, {"k", "w"}};
    assert_int_equal(elastic_st_serialize(m, 2, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "duplicate metadata"));
    m[1].key = "bad";
    m[1].value = "\xff\xfe";
    assert_int_equal(elastic_st_serialize(m, 2, t, 2, &bytes, &size), ELASTIC_ERR_INVALID_ARG);
    assert_non_null(strstr(elastic_last_error(), "UTF-8"));
    m[1].value = "ok";
    assert_int_equal(elastic_st_serialize(m, 2, t, 2, &bytes, &size), ELASTIC_OK);
    free(bytes);
}

/* An image made of a header text and data_size bytes of data. */
static unsigned char *image_from_header(const char *header, size_t data_size, size_t *size)
{
    size_t hlen = strlen(header);
    *size = 8 + hlen + data_size;
    unsigned char *bytes = malloc(*size);
    assert_non_null(bytes);
    put_u64le(bytes, hlen);
    memcpy(bytes + 8, header, hlen);
    for (size_t i = 0; i < data_size; i++)
        bytes[8 + hlen + i] = (unsigned char)i;
    return bytes;
}

static void expect_format(const unsigned char *bytes, size_t size, const char *what,
                          const char *label)
{
    elastic_st_file f;
    elastic_status st = elastic_st_parse(bytes, size, &f);
    if (st != ELASTIC_ERR_FORMAT || !strstr(elastic_last_error(), what))
        fail_msg("%s: got %s, message \"%s\", expected one with \"%s\"", label,
                 elastic_status_name(st), elastic_last_error(), what);
    assert_null(f.tensors);
    assert_null(f.meta);
    assert_null(f.header_json);
    if (st == ELASTIC_OK) elastic_st_free(&f);
}

static void expect_header_format(const char *header, size_t data_size, const char *what)
{
    size_t size;
    unsigned char *bytes = image_from_header(header, data_size, &size);
    expect_format(bytes, size, what, header);
    free(bytes);
}

static void expect_header_ok(const char *header, size_t data_size, int n_tensors)
{
    size_t size;
    unsigned char *bytes = image_from_header(header, data_size, &size);
    elastic_st_file f;
    elastic_status st = elastic_st_parse(bytes, size, &f);
    if (st != ELASTIC_OK) fail_msg("%s: %s", header, elastic_last_error());
    assert_int_equal(f.n_tensors, n_tensors);
    elastic_st_free(&f);
    free(bytes);
}

static void test_header_length(void **state)
{
    (void)state;
    size_t size;
    unsigned char *bytes = valid_image(&size);
    uint64_t hlen = get_u64le(bytes);

    expect_format(bytes, 0, "too short", "empty");
    expect_format(bytes, 4, "too short", "4 bytes");
    expect_format(bytes, 7, "too short", "7 bytes");
    expect_format(bytes, 8, "larger than the rest", "length only");
    expect_format(bytes, 8 + hlen - 1, "larger than the rest", "header cut by one");
    expect_format(bytes, 8 + hlen / 2, "larger than the rest", "header cut in half");
    expect_format(bytes, size - 1, "past the end", "data cut by one");
    expect_format(bytes, 8 + hlen, "past the end", "no data");

    /* Every truncation fails cleanly. */
    for (size_t cut = 0; cut < size; cut++) {
        elastic_st_file f;
        assert_int_equal(elastic_st_parse(bytes, cut, &f), ELASTIC_ERR_FORMAT);
    }

    unsigned char *copy = malloc(size);
    memcpy(copy, bytes, size);
    put_u64le(copy, 0);
    expect_format(copy, size, "header length is 0", "zero");
    put_u64le(copy, (uint64_t)1 << 63);
    expect_format(copy, size, "absurd", "2^63");
    put_u64le(copy, UINT64_MAX);
    expect_format(copy, size, "absurd", "2^64-1");
    put_u64le(copy, ELASTIC_ST_MAX_HEADER + 1);
    expect_format(copy, size, "absurd", "100 MiB + 1");
    put_u64le(copy, size - 8 + 1);
    expect_format(copy, size, "larger than the rest", "one past the file");
    /* A shorter length cuts the JSON. */
    put_u64le(copy, hlen - 8);
    expect_format(copy, size, "not valid JSON", "short length");
    free(copy);
    free(bytes);
}

static void test_bad_json(void **state)
{
    (void)state;
    expect_header_format("{\"a\": {", 0, "not valid JSON");
    expect_header_format("not json", 0, "not valid JSON");
    expect_header_format("{} trailing", 0, "not valid JSON");
    expect_header_format("{\"a\": 1, \"a\": 2}", 0, "not valid JSON"); /* duplicate key */
    expect_header_format("{\"\xff\": 1}", 0, "not valid JSON");        /* not UTF-8 */
    expect_header_format("{\"a\\u0000b\": 1}", 0, "not valid JSON");   /* NUL in a key */
    {
        /* A NUL byte inside the header. */
        static const char raw[] = "{\"a\":\0 1}";
        size_t size = 8 + sizeof raw - 1;
        unsigned char bytes[64];
        put_u64le(bytes, sizeof raw - 1);
        memcpy(bytes + 8, raw, sizeof raw - 1);
        expect_format(bytes, size, "not valid JSON", "NUL byte");
    }
    expect_header_format("[1, 2]", 0, "not a JSON object");
    expect_header_format("\"str\"", 0, "not a JSON object");
    expect_header_format("42", 0, "not a JSON object");
    expect_header_format("null", 0, "not a JSON object");
    /* Integers beyond int64 are refused by the JSON parser. */
    expect_header_format("{\"a\": {\"dtype\": \"F32\", \"shape\": [18446744073709551616],"
                         " \"data_offsets\": [0, 4]}}",
                         4, "not valid JSON");
}

static void test_bad_metadata(void **state)
{
    (void)state;
    expect_header_format("{\"__metadata__\": [1]}", 0, "__metadata__ is not a JSON object");
    expect_header_format("{\"__metadata__\": \"x\"}", 0, "__metadata__ is not a JSON object");
    expect_header_format("{\"__metadata__\": {\"k\": 1}}", 0, "key 'k' is not a string");
    expect_header_format("{\"__metadata__\": {\"a\": \"x\", \"k\": null}}", 0,
                         "key 'k' is not a string");
    expect_header_format("{\"__metadata__\": {\"k\": {\"x\": \"y\"}}}", 0,
                         "key 'k' is not a string");
    expect_header_ok("{\"__metadata__\": {}}", 0, 0);
    expect_header_ok("{\"__metadata__\": {\"k\": \"v\"}}", 0, 0);
}

#define T(body) "{\"t\": {" body "}}"

static void test_bad_tensor_entries(void **state)
{
    (void)state;
    expect_header_ok(T("\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]"), 24, 1);
    expect_header_format("{\"t\": 5}", 0, "tensor 't': entry is not a JSON object");
    expect_header_format("{\"t\": [1]}", 0, "tensor 't': entry is not a JSON object");
    /* dtype */
    expect_header_format(T("\"shape\": [2], \"data_offsets\": [0, 8]"), 8, "missing dtype");
    expect_header_format(T("\"dtype\": 32, \"shape\": [2], \"data_offsets\": [0, 8]"), 8,
                         "tensor 't': dtype is not a string");
    expect_header_format(T("\"dtype\": null, \"shape\": [2], \"data_offsets\": [0, 8]"), 8,
                         "dtype is not a string");
    expect_header_format(T("\"dtype\": \"F33\", \"shape\": [2], \"data_offsets\": [0, 8]"), 8,
                         "unknown dtype 'F33'");
    /* shape */
    expect_header_format(T("\"dtype\": \"F32\", \"data_offsets\": [0, 8]"), 8, "missing shape");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]"), 8,
                         "shape is not an array");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [-1, 3], \"data_offsets\": [0, 8]"), 8,
                         "shape entry 0 is not a non-negative integer");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 8]"), 8,
                         "shape entry 1 is not a non-negative integer");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]"), 8,
                         "shape entry 0 is not a non-negative integer");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]"), 8,
                         "shape entry 0 is not a non-negative integer");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [[2]], \"data_offsets\": [0, 8]"), 8,
                         "shape entry 0 is not a non-negative integer");
    expect_header_format(
        T("\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 2], \"data_offsets\": [0, 8]"), 8,
        "rank 5 > 4");
    /* Products that overflow int64. */
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296],"
                           " \"data_offsets\": [0, 8]"),
                         8, "overflows");
    expect_header_format(T("\"dtype\": \"U8\", \"shape\": [3037000500, 3037000500],"
                           " \"data_offsets\": [0, 8]"),
                         8, "overflows");
    expect_header_format(T("\"dtype\": \"U8\", \"shape\": [65536, 65536, 65536, 65536],"
                           " \"data_offsets\": [0, 8]"),
                         8, "overflows");
    /* Huge but representable: numel * 8 overflows uint64; or it does not fit. */
    expect_header_format(T("\"dtype\": \"F64\", \"shape\": [4611686018427387904],"
                           " \"data_offsets\": [0, 8]"),
                         8, "needs");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [1099511627776],"
                           " \"data_offsets\": [0, 4398046511104]"),
                         8, "past the end");
    /* A zero in the shape makes an empty tensor even after huge sizes. */
    expect_header_ok(T("\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 0],"
                       " \"data_offsets\": [0, 0]"),
                     0, 1);
    /* data_offsets */
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2]"), 8, "missing data_offsets");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]"), 8,
                         "data_offsets is not [begin, end]");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 9]"), 8,
                         "data_offsets is not [begin, end]");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, \"8\"]"), 8,
                         "data_offsets is not [begin, end]");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]"), 8,
                         "data_offsets is not [begin, end]");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0.0, 8]"), 8,
                         "data_offsets is not [begin, end]");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {\"a\": 1}"), 8,
                         "data_offsets is not [begin, end]");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]"), 8,
                         "begin 8 > end 0");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 16]"), 8,
                         "past the end of the data section (8 bytes)");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2],"
                           " \"data_offsets\": [0, 9223372036854775807]"),
                         8, "past the end");
    expect_header_format(T("\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]"), 24,
                         "span 20 bytes but shape [2, 3] of dtype F32 needs 6 x 4 bytes");
    expect_header_format(T("\"dtype\": \"F16\", \"shape\": [2], \"data_offsets\": [0, 8]"), 8,
                         "span 8 bytes");
    /* unknown keys */
    expect_header_format(
        T("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"extra\": 1"), 8,
        "tensor 't': unknown key 'extra'");
    /* The tensor named in the message is the bad one. */
    expect_header_format(
        "{\"good\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
        " \"bad\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 9]}}",
        9, "tensor 'bad'");
}

static void test_overlaps_and_gaps(void **state)
{
    (void)state;
    expect_header_format(
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]},"
        " \"b\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [16, 32]}}",
        32, "tensors 'a' and 'b' overlap");
    /* Overlap found whatever the header order. */
    expect_header_format("{\"b\": {\"dtype\": \"I64\", \"shape\": [2], \"data_offsets\": [16, 32]},"
                         " \"a\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [0, 24]}}",
                         32, "overlap");
    /* Two tensors on the same bytes. */
    expect_header_format("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
                         8, "overlap");
    /* One inside a larger one, which is not the previous one in order. */
    expect_header_format(
        "{\"a\": {\"dtype\": \"U8\", \"shape\": [100], \"data_offsets\": [0, 100]},"
        " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [10, 12]},"
        " \"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [50, 52]}}",
        100, "overlap");
    /* Gaps and empty tensors are fine; touching ranges do not overlap. */
    expect_header_ok("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                     " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]},"
                     " \"c\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
                     " \"d\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
                     32, 4);
}

/* Random corruption of a valid image: never a crash, only OK or FORMAT. */
static void test_random_corruption(void **state)
{
    (void)state;
    size_t size;
    unsigned char *bytes = valid_image(&size);
    unsigned char *copy = malloc(size);
    uint64_t seed = tu_seed();
    int format = 0;
    for (uint64_t trial = 0; trial < 4000; trial++) {
        memcpy(copy, bytes, size);
        int flips = 1 + (int)(tu_hash(seed, 1, trial) % 4);
        for (int k = 0; k < flips; k++) {
            uint64_t h = tu_hash(seed, 2 + (uint64_t)k, trial);
            /* Mostly the length field and the header, where parsing happens. */
            size_t at = (size_t)(h % (size < 200 ? size : 200));
            copy[at] = (unsigned char)(h >> 32);
        }
        elastic_st_file f;
        elastic_status st = elastic_st_parse(copy, size, &f);
        assert_true(st == ELASTIC_OK || st == ELASTIC_ERR_FORMAT);
        if (st == ELASTIC_OK)
            elastic_st_free(&f);
        else {
            assert_true(elastic_last_error()[0] != '\0');
            format++;
        }
    }
    assert_true(format > 0);
    free(copy);
    free(bytes);
}

static void test_dtype_sizes(void **state)
{
    (void)state;
    assert_int_equal(elastic_st_dtype_size("F32"), 4);
    assert_int_equal(elastic_st_dtype_size("F16"), 2);
    assert_int_equal(elastic_st_dtype_size("BF16"), 2);
    assert_int_equal(elastic_st_dtype_size("F64"), 8);
    assert_int_equal(elastic_st_dtype_size("I8"), 1);
    assert_int_equal(elastic_st_dtype_size("f32"), 0);
    assert_int_equal(elastic_st_dtype_size(NULL), 0);
    elastic_st_file f;
    assert_int_equal(elastic_st_parse(NULL, 10, &f), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_st_parse("x", 1, NULL), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_st_read(NULL, &f), ELASTIC_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_memory),
        cmocka_unit_test(test_roundtrip_file),
        cmocka_unit_test(test_writer_rejects_bad_input),
        cmocka_unit_test(test_header_length),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_tensor_entries),
        cmocka_unit_test(test_overlaps_and_gaps),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_dtype_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
