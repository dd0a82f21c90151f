/*
 * test_model_file.c - elastic_model_save / elastic_model_load: bit-exact
 * round trips of ELASTIC and SASRec models with extra metadata, and
 * model-level corruption (missing, extra, misshapen or mistyped tensors, bad
 * metadata, non-zero padding row, non-finite weights, I/O errors).
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup, access, rmdir */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/byteorder.h"
#include "elastic.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/elastic_mf_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static void path_in_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void set(elastic_config *c, const char *key, const char *value)
{
    if (elastic_config_set(c, key, value) != ELASTIC_OK)
        fail_msg("config %s=%s: %s", key, value, elastic_last_error());
}

static elastic_config small_config(const char *kind)
{
    elastic_config c;
    elastic_config_default(&c);
    set(&c, "model", kind);
    set(&c, "num_items", "10");
    set(&c, "max_len", "8");
    set(&c, "hidden", "8");
    set(&c, "heads", "2");
    set(&c, "layers", "2");
    set(&c, "experts", "2");
    set(&c, "ffn", "16");
    set(&c, "mem_subkeys", "4");
    set(&c, "mem_key", "4");
    set(&c, "mem_topk", "2");
    set(&c, "ln_eps", "1e-6");
    assert_int_equal(elastic_config_validate(&c), ELASTIC_OK);
    return c;
}

/* A model whose weights are a deterministic pattern (item_emb row 0 zero,
 * with a -0.0 and a subnormal to check bit-exactness). */
static elastic_model *pattern_model(const char *kind)
{
    elastic_config c = small_config(kind);
    elastic_model *m;
    assert_int_equal(elastic_model_alloc(&m, &c), ELASTIC_OK);
    tu_fill_uniform(m->data, (size_t)m->data_numel, tu_seed(), 17, -1.0f, 1.0f);
    float *emb = elastic_model_param_data(m, "item_emb");
    assert_non_null(emb);
    for (int64_t j = 0; j < c.hidden; j++)
        emb[j] = 0.0f;
    emb[1] = -0.0f;
    emb[c.hidden + 1] = 1e-40f; /* subnormal */
    assert_int_equal(elastic_model_set_metadata(m, "item_map", "[\"a\", \"b\", \"\xc3\xa9\"]"),
                     ELASTIC_OK);
    assert_int_equal(elastic_model_set_metadata(m, "training.seed", "1234"), ELASTIC_OK);
    return m;
}

static void assert_same_model(const elastic_model *a, const elastic_model *b)
{
    const elastic_config *x = &a->config, *y = &b->config;
    assert_int_equal(x->model, y->model);
    assert_int_equal(x->num_items, y->num_items);
    assert_int_equal(x->max_len, y->max_len);
    assert_int_equal(x->hidden, y->hidden);
    assert_int_equal(x->heads, y->heads);
    assert_int_equal(x->mask_token, y->mask_token);
    assert_int_equal(x->layers, y->layers);
    assert_int_equal(x->experts, y->experts);
    assert_int_equal(x->ffn, y->ffn);
    assert_int_equal(x->mem_subkeys, y->mem_subkeys);
    assert_int_equal(x->mem_key, y->mem_key);
    assert_int_equal(x->mem_topk, y->mem_topk);
    assert_memory_equal(&x->ln_eps, &y->ln_eps, sizeof x->ln_eps);

    assert_int_equal(a->n_params, b->n_params);
    assert_int_equal(a->data_numel, b->data_numel);
    for (int i = 0; i < a->n_params; i++) {
        const elastic_param *p = &a->params[i], *q = &b->params[i];
        assert_string_equal(p->name, q->name);
        assert_int_equal(p->ndim, q->ndim);
        for (int d = 0; d < p->ndim; d++)
            assert_int_equal(p->shape[d], q->shape[d]);
        assert_int_equal(p->offset, q->offset);
        if (memcmp(a->data + p->offset, b->data + q->offset, (size_t)p->numel * 4) != 0)
            fail_msg("tensor %s differs", p->name);
    }
    assert_int_equal(a->n_meta, b->n_meta);
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = elastic_model_metadata(b, a->meta[i].key);
        assert_non_null(v);
        assert_string_equal(v, a->meta[i].value);
    }
}

/* Saves, checks the file's layout, loads and compares. */
static void roundtrip(const elastic_model *m, const char *name)
{
    char path[128], tmp[160];
    path_in_dir(path, sizeof path, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(elastic_model_save(m, path), ELASTIC_OK);
    assert_int_not_equal(access(tmp, F_OK), 0);

    /* Layout: tensors in the model's order, contiguous; config strings. */
    elastic_st_file f;
    assert_int_equal(elastic_st_read(path, &f), ELASTIC_OK);
    assert_int_equal(f.n_tensors, m->n_params);
    for (int i = 0; i < f.n_tensors; i++) {
        assert_string_equal(f.tensors[i].name, m->params[i].name);
        assert_string_equal(f.tensors[i].dtype, "F32");
        if (i > 0)
            assert_ptr_equal(f.tensors[i].data, (const unsigned char *)f.tensors[i - 1].data +
                                                    f.tensors[i - 1].nbytes);
    }
    assert_string_equal(elastic_st_meta_get(&f, "format_version"), "1");
    assert_string_equal(elastic_st_meta_get(&f, "model"),
                        m->config.model == ELASTIC_MODEL_KIND_SASREC ? "sasrec" : "elastic");
    assert_string_equal(elastic_st_meta_get(&f, "num_items"), "10");
    assert_string_equal(elastic_st_meta_get(&f, "hidden"), "8");
    assert_non_null(elastic_st_meta_get(&f, "ln_eps"));
    assert_string_equal(elastic_st_meta_get(&f, "mask_token"), m->config.mask_token ? "1" : "0");
    /* format_version, model, 10 ints, ln_eps, mask_token */
    assert_int_equal(f.n_meta, 14 + m->n_meta);
    elastic_st_free(&f);

    elastic_model *back = (elastic_model *)&back; /* must be overwritten */
    elastic_status st = elastic_model_load(&back, path);
    if (st != ELASTIC_OK) fail_msg("load: %s", elastic_last_error());
    assert_same_model(m, back);
    elastic_model_free(back);
    assert_int_equal(remove(path), 0);
}

static void test_roundtrip_elastic(void **state)
{
    (void)state;
    elastic_model *m = pattern_model("elastic");
    roundtrip(m, "elastic.safetensors");
    elastic_model_free(m);
}

/* Spec 3.0: a mask token adds row I+1 to item_emb and is stored as metadata. */
static void test_roundtrip_mask_token(void **state)
{
    (void)state;
    elastic_config c = small_config("elastic");
    assert_int_equal(elastic_config_set(&c, "mask_token", "1"), ELASTIC_OK);
    assert_int_not_equal(elastic_config_set(&c, "mask_token", "2"), ELASTIC_OK);
    assert_non_null(strstr(elastic_last_error(), "mask_token"));
    elastic_model *m;
    assert_int_equal(elastic_model_init_random(&m, &c, 5), ELASTIC_OK);
    const elastic_param *emb = elastic_model_find(m, "item_emb");
    assert_int_equal(emb->shape[0], c.num_items + 2);
    const float *mask = m->data + emb->offset + (c.num_items + 1) * c.hidden;
    int nonzero = 0;
    for (int64_t j = 0; j < c.hidden; j++)
        nonzero += mask[j] != 0.0f;
    assert_int_equal(nonzero, c.hidden); /* drawn like every item row (spec 5) */
    roundtrip(m, "mask.safetensors");
    elastic_model_free(m);
}

static void test_roundtrip_sasrec(void **state)
{
    (void)state;
    elastic_model *m = pattern_model("sasrec");
    assert_null(elastic_model_find(m, "imr.values"));
    assert_non_null(elastic_model_find(m, "layers.1.attn.q.weight"));
    roundtrip(m, "sasrec.safetensors");
    elastic_model_free(m);
}

static void test_roundtrip_init_random(void **state)
{
    (void)state;
    elastic_config c = small_config("elastic");
    elastic_model *m;
    assert_int_equal(elastic_model_init_random(&m, &c, 42), ELASTIC_OK);
    roundtrip(m, "random.safetensors");
    elastic_model_free(m);
}

/* ------------------------------------------------------- corrupted files */

/* A model file's contents, editable before writing. */
typedef struct variant {
    elastic_st_meta meta[64];
    int n_meta;
    elastic_st_tensor t[128];
    int n_t;
    float *data; /* a copy of the model's data */
    const elastic_model *model;
} variant;

static elastic_status variant_emit(const char *key, const char *value, void *ctx)
{
    variant *v = ctx;
    assert_true(v->n_meta < 64);
    v->meta[v->n_meta].key = strdup(key);
    v->meta[v->n_meta].value = strdup(value);
    v->n_meta++;
    return ELASTIC_OK;
}

static void variant_init(variant *v, const elastic_model *m)
{
    memset(v, 0, sizeof *v);
    v->model = m;
    assert_int_equal(elastic_config_to_strings(&m->config, variant_emit, v), ELASTIC_OK);
    for (int i = 0; i < m->n_meta; i++)
        variant_emit(m->meta[i].key, m->meta[i].value, v);
    v->data = malloc((size_t)m->data_numel * sizeof(float));
    memcpy(v->data, m->data, (size_t)m->data_numel * sizeof(float));
    assert_true(m->n_params < 128);
    for (int i = 0; i < m->n_params; i++) {
        const elastic_param *p = &m->params[i];
        elastic_st_tensor *t = &v->t[v->n_t++];
        t->name = p->name;
        t->dtype = "F32";
        t->ndim = p->ndim;
        memcpy(t->shape, p->shape, sizeof t->shape);
        t->data = v->data + p->offset;
        t->nbytes = (size_t)p->numel * sizeof(float);
    }
}

static void variant_free(variant *v)
{
    for (int i = 0; i < v->n_meta; i++) {
        free((char *)v->meta[i].key);
        free((char *)v->meta[i].value);
    }
    free(v->data);
}

static void variant_set_meta(variant *v, const char *key, const char *value)
{
    for (int i = 0; i < v->n_meta; i++)
        if (!strcmp(v->meta[i].key, key)) {
            free((char *)v->meta[i].value);
            v->meta[i].value = strdup(value);
            return;
        }
    variant_emit(key, value, v);
}

static void variant_drop_meta(variant *v, const char *key)
{
    for (int i = 0; i < v->n_meta; i++)
        if (!strcmp(v->meta[i].key, key)) {
            free((char *)v->meta[i].key);
            free((char *)v->meta[i].value);
            v->meta[i] = v->meta[--v->n_meta];
            return;
        }
    fail_msg("no metadata key %s", key);
}

static elastic_st_tensor *variant_tensor(variant *v, const char *name)
{
    for (int i = 0; i < v->n_t; i++)
        if (!strcmp(v->t[i].name, name)) return &v->t[i];
    fail_msg("no tensor %s", name);
    return NULL;
}

static void variant_drop_tensor(variant *v, const char *name)
{
    elastic_st_tensor *t = variant_tensor(v, name);
    *t = v->t[--v->n_t];
}

static float *variant_data(variant *v, const char *name)
{
    const elastic_param *p = elastic_model_find(v->model, name);
    assert_non_null(p);
    return v->data + p->offset;
}

/* elastic_st_write of the variant, its floats as the file's little-endian
 * bytes (v->data is in host order, so that cases can edit values). */
static elastic_status variant_write(const variant *v, const char *path)
{
    size_t n = (size_t)v->model->data_numel;
    void *owned;
    const unsigned char *le = elastic_f32_le_bytes(v->data, n, &owned);
    assert_non_null(le);
    elastic_st_tensor t[128];
    memcpy(t, v->t, sizeof t);
    uintptr_t lo = (uintptr_t)v->data, hi = (uintptr_t)(v->data + n);
    for (int i = 0; i < v->n_t; i++)
        if ((uintptr_t)t[i].data >= lo && (uintptr_t)t[i].data < hi)
            t[i].data = le + ((uintptr_t)t[i].data - lo);
    elastic_status st = elastic_st_write(path, v->meta, v->n_meta, t, v->n_t);
    free(owned);
    return st;
}

/* Writes the variant and expects load to fail with FORMAT and a message
 * holding `what` and the file's name. */
static void expect_load_format(variant *v, const char *what)
{
    char path[128];
    path_in_dir(path, sizeof path, "bad.safetensors");
    assert_int_equal(variant_write(v, path), ELASTIC_OK);
    elastic_model *m = (elastic_model *)&m;
    elastic_status st = elastic_model_load(&m, path);
    if (st != ELASTIC_ERR_FORMAT || !strstr(elastic_last_error(), what))
        fail_msg("got %s, message \"%s\", expected one with \"%s\"", elastic_status_name(st),
                 elastic_last_error(), what);
    assert_null(m);
    assert_non_null(strstr(elastic_last_error(), "bad.safetensors"));
    assert_int_equal(remove(path), 0);
    variant_free(v);
}

static void test_corrupt_tensors(void **state)
{
    (void)state;
    elastic_model *m = pattern_model("elastic");
    variant v;

    /* The unmodified variant loads (the harness itself is sound). */
    {
        char path[128];
        path_in_dir(path, sizeof path, "good.safetensors");
        variant_init(&v, m);
        assert_int_equal(variant_write(&v, path), ELASTIC_OK);
        elastic_model *back;
        assert_int_equal(elastic_model_load(&back, path), ELASTIC_OK);
        assert_same_model(m, back);
        elastic_model_free(back);
        remove(path);
        variant_free(&v);
    }

    variant_init(&v, m);
    variant_drop_tensor(&v, "imr.values");
    expect_load_format(&v, "missing tensor 'imr.values'");

    variant_init(&v, m);
    variant_drop_tensor(&v, "final_norm.bias");
    expect_load_format(&v, "missing tensor 'final_norm.bias'");

    variant_init(&v, m);
    v.t[v.n_t++] = (elastic_st_tensor){
        .name = "bogus", .dtype = "F32", .ndim = 1, .shape = {2}, .data = v.data, .nbytes = 8};
    expect_load_format(&v, "unexpected tensor 'bogus'");

    variant_init(&v, m);
    elastic_st_tensor *t = variant_tensor(&v, "pos_emb");
    t->shape[0] = 4;
    t->shape[1] = 16;
    expect_load_format(&v, "tensor 'pos_emb' has shape [4, 16], expected [8, 8]");

    variant_init(&v, m);
    t = variant_tensor(&v, "imr.subkeys");
    t->ndim = 1;
    t->shape[0] = 16;
    expect_load_format(&v, "tensor 'imr.subkeys' has shape [16], expected [2, 4, 2]");

    variant_init(&v, m);
    t = variant_tensor(&v, "final_norm.bias");
    t->dtype = "F16";
    t->nbytes = 16;
    expect_load_format(&v, "tensor 'final_norm.bias' has dtype F16");

    variant_init(&v, m);
    variant_tensor(&v, "layers.0.agg.q.bias")->dtype = "I32"; /* same byte count */
    expect_load_format(&v, "tensor 'layers.0.agg.q.bias' has dtype I32");

    variant_init(&v, m);
    variant_data(&v, "item_emb")[3] = 0.5f;
    expect_load_format(&v, "row 0");

    variant_init(&v, m);
    variant_data(&v, "layers.0.agg.q.weight")[5] = NAN;
    expect_load_format(&v, "tensor 'layers.0.agg.q.weight' holds a non-finite value (NaN)");

    variant_init(&v, m);
    variant_data(&v, "pos_emb")[7] = -INFINITY;
    expect_load_format(&v, "tensor 'pos_emb' holds a non-finite value (Inf) at element 7");

    elastic_model_free(m);
}

static void test_corrupt_metadata(void **state)
{
    (void)state;
    elastic_model *m = pattern_model("elastic");
    variant v;

    variant_init(&v, m);
    variant_drop_meta(&v, "format_version");
    expect_load_format(&v, "format_version");

    variant_init(&v, m);
    variant_set_meta(&v, "format_version", "2");
    expect_load_format(&v, "unsupported format_version '2'");

    variant_init(&v, m);
    variant_set_meta(&v, "heads", "3"); /* 8 is not divisible by 3 */
    expect_load_format(&v, "'heads'");

    variant_init(&v, m);
    variant_set_meta(&v, "hidden", "eight");
    expect_load_format(&v, "'hidden'");

    variant_init(&v, m);
    variant_set_meta(&v, "model", "bert");
    expect_load_format(&v, "'model'");

    variant_init(&v, m);
    variant_set_meta(&v, "mem_key", "3");
    expect_load_format(&v, "'mem_key'");

    variant_init(&v, m);
    variant_drop_meta(&v, "num_items");
    expect_load_format(&v, "'num_items'");

    variant_init(&v, m);
    variant_drop_meta(&v, "ln_eps");
    expect_load_format(&v, "lacks the config key 'ln_eps'");

    /* Config sizes that disagree with the tensors are caught before any
     * allocation sized by them. */
    variant_init(&v, m);
    variant_set_meta(&v, "num_items", "2000000000");
    expect_load_format(&v, "tensor 'item_emb' has shape [11, 8], expected [2000000001, 8]");

    variant_init(&v, m);
    variant_set_meta(&v, "layers", "1000");
    expect_load_format(&v, "missing tensor 'layers.2.");

    variant_init(&v, m);
    variant_set_meta(&v, "hidden", "65536");
    variant_set_meta(&v, "ffn", "1048576");
    variant_set_meta(&v, "mem_key", "65536");
    expect_load_format(&v, "expected [11, 65536]");

    elastic_model_free(m);
}

/* A file written before spec version 2 has no mask_token key: it loads, with
 * mask_token 0 and the same weights (spec: a version-1 model file is a valid
 * version-2 file whose mask_token is 0). */
static void test_version1_file_without_mask_token(void **state)
{
    (void)state;
    for (int k = 0; k < 2; k++) {
        elastic_model *m = pattern_model(k ? "sasrec" : "elastic");
        variant v;
        variant_init(&v, m);
        variant_drop_meta(&v, "mask_token");
        char path[128];
        path_in_dir(path, sizeof path, "version1.safetensors");
        assert_int_equal(variant_write(&v, path), ELASTIC_OK);
        elastic_model *back;
        elastic_status st = elastic_model_load(&back, path);
        if (st != ELASTIC_OK) fail_msg("%s", elastic_last_error());
        assert_int_equal(back->config.mask_token, 0);
        assert_int_equal(back->n_params, m->n_params);
        assert_memory_equal(back->data, m->data, (size_t)m->data_numel * 4);
        elastic_model_free(back);
        variant_free(&v);
        elastic_model_free(m);
        assert_int_equal(unlink(path), 0);
    }
}

static void test_sasrec_optional_keys(void **state)
{
    (void)state;
    /* SASRec ignores the expert and memory keys: a file may leave them out. */
    elastic_model *m = pattern_model("sasrec");
    variant v;
    variant_init(&v, m);
    variant_drop_meta(&v, "experts");
    variant_drop_meta(&v, "mem_subkeys");
    variant_drop_meta(&v, "mem_key");
    variant_drop_meta(&v, "mem_topk");
    char path[128];
    path_in_dir(path, sizeof path, "sasrec_min.safetensors");
    assert_int_equal(variant_write(&v, path), ELASTIC_OK);
    elastic_model *back;
    elastic_status st = elastic_model_load(&back, path);
    if (st != ELASTIC_OK) fail_msg("%s", elastic_last_error());
    assert_int_equal(back->config.model, ELASTIC_MODEL_KIND_SASREC);
    assert_int_equal(back->n_params, m->n_params);
    assert_memory_equal(back->data, m->data, (size_t)m->data_numel * 4);
    assert_string_equal(elastic_model_metadata(back, "item_map"), "[\"a\", \"b\", \"\xc3\xa9\"]");
    elastic_model_free(back);
    remove(path);
    variant_free(&v);

    /* Those keys are still required of an ELASTIC model. */
    elastic_model_free(m);
    m = pattern_model("elastic");
    variant_init(&v, m);
    variant_drop_meta(&v, "experts"); /* its default (16) validates */
    expect_load_format(&v, "lacks the config key 'experts'");
    elastic_model_free(m);
}

static void test_io_and_arguments(void **state)
{
    (void)state;
    char path[128], missing[128], nodir[160];
    path_in_dir(path, sizeof path, "m.safetensors");
    path_in_dir(missing, sizeof missing, "does_not_exist.safetensors");
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/m.safetensors", tmpdir);

    elastic_model *m = pattern_model("elastic"), *back = (elastic_model *)&back;
    assert_int_equal(elastic_model_load(&back, missing), ELASTIC_ERR_IO);
    assert_null(back);
    assert_non_null(strstr(elastic_last_error(), "does_not_exist.safetensors"));
    assert_int_equal(elastic_model_load(&back, tmpdir), ELASTIC_ERR_IO); /* a directory */

    assert_int_equal(elastic_model_load(NULL, path), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_model_load(&back, NULL), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_model_save(NULL, path), ELASTIC_ERR_INVALID_ARG);
    assert_int_equal(elastic_model_save(m, NULL), ELASTIC_ERR_INVALID_ARG);
    assert_true(elastic_last_error()[0] != '\0');

    /* A failed save leaves no file behind. */
    assert_int_equal(elastic_model_save(m, nodir), ELASTIC_ERR_IO);
    assert_non_null(strstr(elastic_last_error(), "no/such/dir"));
    char subdir[128], subtmp[160];
    path_in_dir(subdir, sizeof subdir, "subdir");
    assert_int_equal(mkdir(subdir, 0700), 0);
    snprintf(subtmp, sizeof subtmp, "%s.tmp", subdir);
    assert_int_equal(elastic_model_save(m, subdir), ELASTIC_ERR_IO); /* rename onto a dir */
    assert_int_not_equal(access(subtmp, F_OK), 0);
    assert_int_equal(rmdir(subdir), 0);

    /* Not a safetensors file: a format error naming the file. */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("this is not a model file, just some text", f);
    fclose(f);
    assert_int_equal(elastic_model_load(&back, path), ELASTIC_ERR_FORMAT);
    assert_non_null(strstr(elastic_last_error(), "m.safetensors"));
    /* A safetensors file without metadata. */
    assert_int_equal(elastic_st_write(path, NULL, 0, NULL, 0), ELASTIC_OK);
    assert_int_equal(elastic_model_load(&back, path), ELASTIC_ERR_FORMAT);
    assert_non_null(strstr(elastic_last_error(), "format_version"));

    /* Saving over an existing file replaces it. */
    assert_int_equal(elastic_model_save(m, path), ELASTIC_OK);
    assert_int_equal(elastic_model_load(&back, path), ELASTIC_OK);
    assert_same_model(m, back);
    elastic_model_free(back);
    remove(path);
    elastic_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_elastic),
        cmocka_unit_test(test_roundtrip_sasrec),
        cmocka_unit_test(test_roundtrip_init_random),
        cmocka_unit_test(test_corrupt_tensors),
        cmocka_unit_test(test_corrupt_metadata),
        cmocka_unit_test(test_sasrec_optional_keys),
        cmocka_unit_test(test_version1_file_without_mask_token),
        cmocka_unit_test(test_io_and_arguments),
        cmocka_unit_test(test_roundtrip_mask_token),
    };
    /* The directory must be empty at the end: a test that leaves a file
     * fails the run (cmocka 1.1 reports a failed group teardown but does not
     * count it). */
    int failed = cmocka_run_group_tests(tests, setup_dir, NULL);
    return failed + tu_remove_empty_dir(tmpdir);
}
