/*
 * test_byteorder.c - byte order of what libelastic writes and reads: the
 * little-endian helpers of core/base/byteorder.h on known bytes; a
 * safetensors image compared byte for byte with st_le_expected.h (derived
 * with Python's struct '<f' from the format, not by this library); a saved
 * model whose header length and float32 are the little-endian encodings of
 * its values (encoded here by shifts, not by byteorder.h) and that loads back
 * bit-exact; a trainer state that round-trips. Run natively and, by
 * ci/cross.sh, under QEMU on aarch64, riscv64 and big-endian s390x: the same
 * expected bytes on every host.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, rmdir */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "data/st_le_expected.h"
#include "elastic.h"
#include "elastic_train.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/elastic_bo_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* The whole file, malloc'ed; *size its length. */
static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    unsigned char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* The IEEE 754 bits of f, as the little-endian bytes a file must hold. */
static void f32_le_by_shifts(float f, unsigned char out[4])
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        out[i] = (unsigned char)(u >> (8 * i));
}

static void test_helpers(void **state)
{
    (void)state;
    const unsigned char b32[4] = {0x78, 0x56, 0x34, 0x12};
    const unsigned char b64[8] = {0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01};
    assert_int_equal(elastic_load_u32le(b32), 0x12345678u);
    assert_true(elastic_load_u64le(b64) == UINT64_C(0x0123456789abcdef));
    unsigned char out[8];
    elastic_store_u32le(out, 0x12345678u);
    assert_memory_equal(out, b32, 4);
    elastic_store_u64le(out, UINT64_C(0x0123456789abcdef));
    assert_memory_equal(out, b64, 8);

    /* 1.0f, -2.5f and the subnormal 2^-149, as a file holds them */
    const unsigned char le[12] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00,
                                  0x20, 0xc0, 0x01, 0x00, 0x00, 0x00};
    float f[3];
    elastic_f32_from_le(f, le, 3);
    assert_true(f[0] == 1.0f && f[1] == -2.5f && f[2] == 0x1p-149f);
    unsigned char back[12];
    elastic_f32_to_le(back, f, 3);
    assert_memory_equal(back, le, 12);
    void *owned;
    const void *view = elastic_f32_le_bytes(f, 3, &owned);
    assert_non_null(view);
    assert_memory_equal(view, le, 12);
    assert_true(ELASTIC_HOST_LITTLE_ENDIAN ? owned == NULL && view == (const void *)f
                                           : owned != NULL);
    free(owned);
    print_message("host byte order: %s-endian\n", ELASTIC_HOST_LITTLE_ENDIAN ? "little" : "big");
}

/* A safetensors image of host floats, through the writers' path
 * (elastic_f32_le_bytes), equals the bytes derived with Python's struct. */
static void test_safetensors_image(void **state)
{
    (void)state;
    const float w[6] = {1.0f, -2.5f, 0.1f, 3.4028234663852886e38f, 1e-45f, -0.0f};
    const float b[2] = {0.5f, -1.0f};
    void *w_owned, *b_owned;
    const void *w_le = elastic_f32_le_bytes(w, 6, &w_owned);
    const void *b_le = elastic_f32_le_bytes(b, 2, &b_owned);
    assert_non_null(w_le);
    assert_non_null(b_le);
    elastic_st_meta meta[1] = {{"format_version", "1"}};
    elastic_st_tensor t[2] = {
        {.name = "w", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = w_le, .nbytes = 24},
        {.name = "b", .dtype = "F32", .ndim = 1, .shape = {2}, .data = b_le, .nbytes = 8}};
    unsigned char *image;
    size_t size;
    assert_int_equal(elastic_st_serialize(meta, 1, t, 2, &image, &size), ELASTIC_OK);
    assert_int_equal(size, sizeof st_le_expected);
    assert_memory_equal(image, st_le_expected, size);
    free(image);

    char path[128];
    snprintf(path, sizeof path, "%s/image.st", tmpdir);
    assert_int_equal(elastic_st_write(path, meta, 1, t, 2), ELASTIC_OK);
    unsigned char *file = read_all(path, &size);
    assert_int_equal(size, sizeof st_le_expected);
    assert_memory_equal(file, st_le_expected, size);
    free(file);
    free(w_owned);
    free(b_owned);

    /* and the reader hands back the same values */
    elastic_st_file st;
    assert_int_equal(elastic_st_read(path, &st), ELASTIC_OK);
    const elastic_st_tensor *rw = elastic_st_find(&st, "w");
    assert_non_null(rw);
    float got[6];
    elastic_f32_from_le(got, rw->data, 6);
    assert_memory_equal(got, w, sizeof w);
    elastic_st_free(&st);
    assert_int_equal(remove(path), 0);
}

static void set(elastic_config *c, const char *key, const char *value)
{
    if (elastic_config_set(c, key, value) != ELASTIC_OK)
        fail_msg("config %s=%s: %s", key, value, elastic_last_error());
}

/* elastic_model_save writes every parameter as little-endian float32 in
 * parameter order, whatever the host; elastic_model_load reads them back. */
static void test_model_file_bytes(void **state)
{
    (void)state;
    elastic_config c;
    elastic_config_default(&c);
    set(&c, "num_items", "10");
    set(&c, "max_len", "8");
    set(&c, "hidden", "8");
    set(&c, "heads", "2");
    set(&c, "layers", "1");
    set(&c, "experts", "2");
    set(&c, "ffn", "16");
    set(&c, "mem_subkeys", "4");
    set(&c, "mem_key", "4");
    set(&c, "mem_topk", "2");
    assert_int_equal(elastic_config_validate(&c), ELASTIC_OK);
    elastic_model *m;
    assert_int_equal(elastic_model_alloc(&m, &c), ELASTIC_OK);
    /* values of every exponent range: normal, subnormal, -0.0, large */
    for (int64_t j = 0; j < m->data_numel; j++) {
        float v = (float)((j * 37) % 61 - 30) * 0.0625f;
        if (j % 13 == 5) v = -0.0f;
        if (j % 17 == 7) v = 0x1p-140f * (float)(j % 5 + 1);
        if (j % 19 == 3) v = 1.5e30f;
        m->data[j] = v;
    }
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, "item_emb"))
            for (int64_t k = 0; k < c.hidden; k++)
                m->data[m->params[i].offset + k] = 0.0f; /* the padding row */

    char path[128];
    snprintf(path, sizeof path, "%s/model.st", tmpdir);
    assert_int_equal(elastic_model_save(m, path), ELASTIC_OK);
    size_t size;
    unsigned char *file = read_all(path, &size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | file[i];
    assert_true(hlen % 8 == 0 && 8 + hlen <= size);
    assert_int_equal(file[8], '{');
    assert_int_equal(size - 8 - hlen, (size_t)m->data_numel * 4);
    const unsigned char *data = file + 8 + hlen;
    for (int64_t j = 0; j < m->data_numel; j++) {
        unsigned char want[4];
        f32_le_by_shifts(m->data[j], want);
        if (memcmp(data + 4 * j, want, 4) != 0)
            fail_msg("float %lld: file bytes %02x %02x %02x %02x, expected %02x %02x %02x %02x",
                     (long long)j, data[4 * j], data[4 * j + 1], data[4 * j + 2], data[4 * j + 3],
                     want[0], want[1], want[2], want[3]);
    }
    free(file);

    elastic_model *back;
    assert_int_equal(elastic_model_load(&back, path), ELASTIC_OK);
    assert_int_equal(back->data_numel, m->data_numel);
    assert_memory_equal(back->data, m->data, (size_t)m->data_numel * sizeof(float));
    elastic_model_free(back);
    elastic_model_free(m);
    assert_int_equal(remove(path), 0);
}

/* The trainer's Adam state goes through the same little-endian path. */
static void test_trainer_state(void **state)
{
    (void)state;
    elastic_model *m = tu_small_model("elastic", 7);
    assert_non_null(m);
    elastic_trainer *tr = tu_trainer(m, 0.0f, 1);
    assert_non_null(tr);
    tu_batch b;
    tu_make_batch(&b, 7, 0);
    double loss;
    assert_int_equal(elastic_trainer_step(tr, b.items, b.offsets, b.targets, 8, &loss), ELASTIC_OK);
    char path[128];
    snprintf(path, sizeof path, "%s/trainer.state", tmpdir);
    assert_int_equal(elastic_trainer_save_state(tr, path), ELASTIC_OK);

    /* adam.m in the file: little-endian float32 of finite values, not all zero */
    elastic_st_file st;
    assert_int_equal(elastic_st_read(path, &st), ELASTIC_OK);
    const elastic_st_tensor *am = elastic_st_find(&st, "adam.m");
    assert_non_null(am);
    size_t n = am->nbytes / 4, nonzero = 0;
    const unsigned char *p = am->data;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                     (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        assert_true(isfinite(f) && fabsf(f) < 1e3f);
        nonzero += f != 0.0f;
    }
    assert_true(nonzero > n / 10);
    elastic_st_free(&st);

    /* and it loads back into a fresh trainer, which then saves the same bytes */
    elastic_trainer *tr2 = tu_trainer(m, 0.0f, 1);
    assert_non_null(tr2);
    assert_int_equal(elastic_trainer_load_state(tr2, path), ELASTIC_OK);
    char path2[160];
    snprintf(path2, sizeof path2, "%s/trainer2.state", tmpdir);
    assert_int_equal(elastic_trainer_save_state(tr2, path2), ELASTIC_OK);
    size_t s1, s2;
    unsigned char *f1 = read_all(path, &s1), *f2 = read_all(path2, &s2);
    assert_int_equal(s1, s2);
    assert_memory_equal(f1, f2, s1);
    free(f1);
    free(f2);
    elastic_trainer_free(tr2);
    elastic_trainer_free(tr);
    elastic_model_free(m);
    assert_int_equal(remove(path), 0);
    assert_int_equal(remove(path2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_helpers),
        cmocka_unit_test(test_safetensors_image),
        cmocka_unit_test(test_model_file_bytes),
        cmocka_unit_test(test_trainer_state),
    };
    /* The directory must be empty at the end: a test that leaves a file
     * fails the run (cmocka 1.1 reports a failed group teardown but does not
     * count it). */
    int failed = cmocka_run_group_tests(tests, setup_dir, NULL);
    return failed + tu_remove_empty_dir(tmpdir);
}
