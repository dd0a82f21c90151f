/*
 * safetensors.c - the hardened safetensors reader and writer of
 * safetensors.h. The JSON header is parsed with jansson; every declared size
 * and offset is checked against the real size of the input before it is
 * used.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <unistd.h> /* fsync */
#endif

#include "base/error.h"

/* Tensor data is handed out, and written, as the file's little-endian bytes:
 * callers convert with base/byteorder.h (a memcpy on little-endian hosts, a
 * byte swap on big-endian ones such as s390x). The header length is decoded
 * and encoded byte by byte, so it does not depend on the host. */
_Static_assert(sizeof(float) == 4, "float must be 32-bit IEEE 754");
_Static_assert(sizeof(json_int_t) >= sizeof(int64_t), "jansson integers must hold int64");

/* Names in messages are cut to this many characters. */
#define NAME_FMT "'%.200s'"

typedef struct dtype_info {
    const char *name;
    size_t size;
} dtype_info;

static const dtype_info dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
    {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

size_t elastic_st_dtype_size(const char *dtype)
{
    if (!dtype) return 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, dtype) == 0) return dtypes[i].size;
    return 0;
}

void elastic_st_free(elastic_st_file *file)
{
    if (!file) return;
    free(file->tensors);
    free(file->meta);
    free(file->owned_bytes);
    if (file->header_json) json_decref((json_t *)file->header_json);
    memset(file, 0, sizeof *file);
}

const elastic_st_tensor *elastic_st_find(const elastic_st_file *file, const char *name)
{
    if (!file || !name) return NULL;
    for (int i = 0; i < file->n_tensors; i++)
        if (strcmp(file->tensors[i].name, name) == 0) return &file->tensors[i];
    return NULL;
}

const char *elastic_st_meta_get(const elastic_st_file *file, const char *key)
{
    if (!file || !key) return NULL;
    for (int i = 0; i < file->n_meta; i++)
        if (strcmp(file->meta[i].key, key) == 0) return file->meta[i].value;
    return NULL;
}

/* ------------------------------------------------------------------ reader */

/* Product of a shape; -1 if it does not fit int64. */
static int64_t shape_numel(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    for (int i = 0; i < ndim; i++) {
        if (n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

/* The shape as text, e.g. "[3, 4]", for messages. */
static void shape_text(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t at = 0;
    at += (size_t)snprintf(buf + at, cap - at, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static elastic_status parse_shape(const char *name, json_t *shape, elastic_st_tensor *t)
{
    if (!json_is_array(shape))
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": shape is not an array", name);
    size_t rank = json_array_size(shape);
    if (rank > ELASTIC_ST_MAX_DIMS)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": rank %zu > %d is not supported",
                             name, rank, ELASTIC_ST_MAX_DIMS);
    t->ndim = (int)rank;
    for (size_t i = 0; i < rank; i++) {
        json_t *dim = json_array_get(shape, i);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "safetensors: tensor " NAME_FMT
                                 ": shape entry %zu is not a non-negative integer",
                                 name, i);
        t->shape[i] = (int64_t)json_integer_value(dim);
    }
    t->numel = shape_numel(t->shape, t->ndim);
    if (t->numel < 0)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": element count of shape overflows",
                             name);
    return ELASTIC_OK;
}

typedef struct span {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* One tensor entry of the header; data points at the data section. */
static elastic_status parse_tensor(const char *name, json_t *entry, const unsigned char *data,
                                   uint64_t data_size, elastic_st_tensor *t, span *sp)
{
    if (!json_is_object(entry))
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": entry is not a JSON object", name);
    const char *key;
    json_t *value;
    json_object_foreach(entry, key, value)
    {
        (void)value;
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "safetensors: tensor " NAME_FMT ": unknown key " NAME_FMT, name,
                                 key);
    }
    t->name = name;

    json_t *dtype = json_object_get(entry, "dtype");
    if (!dtype)
        return elastic_error(ELASTIC_ERR_FORMAT, "safetensors: tensor " NAME_FMT ": missing dtype",
                             name);
    if (!json_is_string(dtype))
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": dtype is not a string", name);
    t->dtype = json_string_value(dtype);
    size_t esize = elastic_st_dtype_size(t->dtype);
    if (esize == 0)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": unknown dtype " NAME_FMT, name,
                             t->dtype);

    json_t *shape = json_object_get(entry, "shape");
    if (!shape)
        return elastic_error(ELASTIC_ERR_FORMAT, "safetensors: tensor " NAME_FMT ": missing shape",
                             name);
    ELASTIC_TRY(parse_shape(name, shape, t));

    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!offsets)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": missing data_offsets", name);
    json_t *jb = json_array_get(offsets, 0), *je = json_array_get(offsets, 1);
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 || !json_is_integer(jb) ||
        !json_is_integer(je) || json_integer_value(jb) < 0 || json_integer_value(je) < 0)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT
                             ": data_offsets is not [begin, end] with non-negative integers",
                             name);
    uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
    if (begin > end)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": data_offsets begin %" PRIu64
                             " > end %" PRIu64,
                             name, begin, end);
    if (end > data_size)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": data_offsets end %" PRIu64
                             " is past the end of the data section (%" PRIu64 " bytes)",
                             name, end, data_size);
    /* numel * esize, compared without overflow. */
    uint64_t span_bytes = end - begin, numel = (uint64_t)t->numel;
    if (numel > UINT64_MAX / esize || numel * esize != span_bytes) {
        char text[128];
        shape_text(t->shape, t->ndim, text, sizeof text);
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: tensor " NAME_FMT ": data_offsets span %" PRIu64
                             " bytes but shape %s of dtype %s needs %" PRIu64 " x %zu bytes",
                             name, span_bytes, text, t->dtype, numel, esize);
    }
    t->data = data + begin;
    t->nbytes = (size_t)span_bytes; /* <= data_size <= SIZE_MAX */
    sp->begin = begin;
    sp->end = end;
    return ELASTIC_OK;
}

/* Checks that no two non-empty tensors share a byte (gaps are allowed). */
static elastic_status check_overlaps(const elastic_st_file *file, span *spans)
{
    int n = file->n_tensors;
    qsort(spans, (size_t)n, sizeof *spans, span_cmp);
    uint64_t max_end = 0;
    int owner = -1;
    for (int i = 0; i < n; i++) {
        if (spans[i].begin == spans[i].end) continue; /* empty: occupies nothing */
        if (owner >= 0 && spans[i].begin < max_end)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "safetensors: tensors " NAME_FMT " and " NAME_FMT
                                 " overlap in the data section",
                                 file->tensors[owner].name, file->tensors[spans[i].index].name);
        if (spans[i].end > max_end) {
            max_end = spans[i].end;
            owner = spans[i].index;
        }
    }
    return ELASTIC_OK;
}

static elastic_status parse_metadata(json_t *meta, elastic_st_file *file)
{
    if (!json_is_object(meta))
        return elastic_error(ELASTIC_ERR_FORMAT, "safetensors: __metadata__ is not a JSON object");
    size_t n = json_object_size(meta);
    file->meta = calloc(n ? n : 1, sizeof *file->meta);
    if (!file->meta)
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: out of memory for metadata");
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value)
    {
        if (!json_is_string(value))
            return elastic_error(
                ELASTIC_ERR_FORMAT,
                "safetensors: __metadata__ value of key " NAME_FMT " is not a string", key);
        file->meta[file->n_meta].key = key;
        file->meta[file->n_meta].value = json_string_value(value);
        file->n_meta++;
    }
    return ELASTIC_OK;
}

static elastic_status parse_header(const unsigned char *bytes, size_t size, elastic_st_file *file)
{
    if (size < 8)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: file too short (%zu bytes); it must start with an "
                             "8-byte header length",
                             size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | bytes[i];
    if (hlen == 0) return elastic_error(ELASTIC_ERR_FORMAT, "safetensors: header length is 0");
    if (hlen > ELASTIC_ST_MAX_HEADER)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: header length %" PRIu64 " is absurd (more than %" PRIu64
                             " bytes)",
                             hlen, ELASTIC_ST_MAX_HEADER);
    if (hlen > size - 8)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: header length %" PRIu64
                             " is larger than the rest of the file (%zu bytes)",
                             hlen, size - 8);

    json_error_t jerr;
    /* DECODE_ANY so that a scalar header is reported as "not an object". */
    json_t *root = json_loadb((const char *)bytes + 8, (size_t)hlen,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "safetensors: header is not valid JSON: %s (line %d, column %d)",
                             jerr.text, jerr.line, jerr.column);
    file->header_json = root;
    if (!json_is_object(root))
        return elastic_error(ELASTIC_ERR_FORMAT, "safetensors: header is not a JSON object");

    const unsigned char *data = bytes + 8 + hlen;
    uint64_t data_size = (uint64_t)(size - 8 - (size_t)hlen);

    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) ELASTIC_TRY(parse_metadata(meta, file));

    size_t n = json_object_size(root) - (meta ? 1 : 0);
    if (n > INT32_MAX)
        return elastic_error(ELASTIC_ERR_FORMAT, "safetensors: too many tensors (%zu)", n);
    file->tensors = calloc(n ? n : 1, sizeof *file->tensors);
    span *spans = calloc(n ? n : 1, sizeof *spans);
    if (!file->tensors || !spans) {
        free(spans);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: out of memory for %zu tensors",
                             n);
    }
    const char *name;
    json_t *entry;
    elastic_status status = ELASTIC_OK;
    json_object_foreach(root, name, entry)
    {
        if (strcmp(name, "__metadata__") == 0) continue;
        int i = file->n_tensors;
        spans[i].index = i;
        status = parse_tensor(name, entry, data, data_size, &file->tensors[i], &spans[i]);
        if (status != ELASTIC_OK) break;
        file->n_tensors++;
    }
    if (status == ELASTIC_OK) status = check_overlaps(file, spans);
    free(spans);
    return status;
}

elastic_status elastic_st_parse(const void *bytes, size_t size, elastic_st_file *file)
{
    if (!file) return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: file is NULL");
    memset(file, 0, sizeof *file);
    if (!bytes && size > 0)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: bytes is NULL");
    elastic_status status = parse_header(bytes, size, file);
    if (status != ELASTIC_OK) elastic_st_free(file);
    return status;
}

elastic_status elastic_st_read(const char *path, elastic_st_file *file)
{
    if (!file) return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: file is NULL");
    memset(file, 0, sizeof *file);
    if (!path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: path is NULL");

    FILE *f = fopen(path, "rb");
    if (!f) return elastic_error(ELASTIC_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    /* A first small read catches paths that open but cannot be read (a
     * directory) before the size from ftell is trusted for an allocation. */
    unsigned char head[8];
    size_t got = fread(head, 1, sizeof head, f);
    if (got < sizeof head && ferror(f)) {
        int err = errno;
        fclose(f);
        return elastic_error(ELASTIC_ERR_IO, "cannot read '%s': %s", path, strerror(err));
    }
    if (got < sizeof head) {
        fclose(f);
        return parse_header(head, got, file); /* too short: a format error */
    }
    long end = -1;
    if (fseek(f, 0, SEEK_END) == 0) end = ftell(f);
    if (end < 0 || fseek(f, 0, SEEK_SET) != 0) {
        int err = errno;
        fclose(f);
        return elastic_error(ELASTIC_ERR_IO, "cannot find the size of '%s': %s", path,
                             strerror(err));
    }
    if ((unsigned long)end > SIZE_MAX) {
        fclose(f);
        return elastic_error(ELASTIC_ERR_IO, "'%s' is too large for this host", path);
    }
    size_t size = (size_t)end;
    unsigned char *bytes = malloc(size ? size : 1);
    if (!bytes) {
        fclose(f);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "cannot allocate %zu bytes to read '%s'", size,
                             path);
    }
    got = fread(bytes, 1, size, f);
    int read_error = ferror(f), err = errno;
    fclose(f);
    if (got != size) {
        free(bytes);
        return elastic_error(ELASTIC_ERR_IO, "cannot read '%s': %s", path,
                             read_error ? strerror(err) : "file changed size while reading");
    }
    elastic_status status = parse_header(bytes, size, file);
    file->owned_bytes = bytes;
    if (status != ELASTIC_OK) elastic_st_free(file);
    return status;
}

/* ------------------------------------------------------------------ writer */

/* Builds the padded JSON header and the size of the data section. */
static elastic_status build_header(const elastic_st_meta *meta, int n_meta,
                                   const elastic_st_tensor *tensors, int n_tensors, char **header,
                                   size_t *header_len, uint64_t *data_size)
{
    if (n_meta < 0 || n_tensors < 0 || (n_meta > 0 && !meta) || (n_tensors > 0 && !tensors))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: bad tensor or metadata arrays");
    json_t *root = json_object();
    if (!root) return elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: out of memory");
    elastic_status status = ELASTIC_OK;

    if (n_meta > 0) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) != 0) {
            status = elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: out of memory");
            goto done;
        }
        for (int i = 0; i < n_meta; i++) {
            const char *key = meta[i].key, *value = meta[i].value;
            if (!key || !value) {
                status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                       "safetensors: metadata entry %d has a NULL key or value", i);
                goto done;
            }
            if (json_object_get(m, key)) {
                status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                       "safetensors: duplicate metadata key " NAME_FMT, key);
                goto done;
            }
            json_t *v = json_string(value);
            if (!v || json_object_set_new(m, key, v) != 0) {
                status = elastic_error(
                    ELASTIC_ERR_INVALID_ARG,
                    "safetensors: metadata key " NAME_FMT " or its value is not valid UTF-8", key);
                goto done;
            }
        }
    }

    uint64_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const elastic_st_tensor *t = &tensors[i];
        const char *name = t->name;
        if (!name || !name[0] || strcmp(name, "__metadata__") == 0) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: tensor %d has a NULL, empty or reserved name", i);
            goto done;
        }
        if (json_object_get(root, name)) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: duplicate tensor name " NAME_FMT, name);
            goto done;
        }
        size_t esize = elastic_st_dtype_size(t->dtype);
        if (esize == 0) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: tensor " NAME_FMT ": unknown dtype " NAME_FMT,
                                   name, t->dtype ? t->dtype : "(null)");
            goto done;
        }
        if (t->ndim < 0 || t->ndim > ELASTIC_ST_MAX_DIMS) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: tensor " NAME_FMT ": bad rank %d", name, t->ndim);
            goto done;
        }
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0) {
                status =
                    elastic_error(ELASTIC_ERR_INVALID_ARG,
                                  "safetensors: tensor " NAME_FMT ": negative dimension", name);
                goto done;
            }
        int64_t numel = shape_numel(t->shape, t->ndim);
        if (numel < 0 || (uint64_t)numel > UINT64_MAX / esize ||
            (uint64_t)numel * esize != (uint64_t)t->nbytes) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: tensor " NAME_FMT
                                   ": nbytes %zu does not match its shape and dtype",
                                   name, t->nbytes);
            goto done;
        }
        if (t->nbytes > 0 && !t->data) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: tensor " NAME_FMT ": data is NULL", name);
            goto done;
        }
        if ((uint64_t)t->nbytes > (uint64_t)INT64_MAX - offset) {
            status = elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: data too large");
            goto done;
        }
        json_t *entry = json_object(), *shape = json_array(), *offs = json_array();
        int bad = !entry || !shape || !offs;
        if (!bad) {
            bad |= json_object_set_new(entry, "dtype", json_string(t->dtype));
            for (int d = 0; d < t->ndim; d++)
                bad |= json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
            bad |= json_array_append_new(offs, json_integer((json_int_t)offset));
            bad |= json_array_append_new(offs, json_integer((json_int_t)(offset + t->nbytes)));
            bad |= json_object_set_new(entry, "shape", shape);
            shape = NULL;
            bad |= json_object_set_new(entry, "data_offsets", offs);
            offs = NULL;
        }
        if (bad || json_object_set_new(root, name, entry) != 0) {
            json_decref(shape);
            json_decref(offs);
            if (bad) json_decref(entry);
            status = elastic_error(ELASTIC_ERR_INVALID_ARG,
                                   "safetensors: cannot add tensor " NAME_FMT
                                   " (name not UTF-8, or out of memory)",
                                   name);
            goto done;
        }
        offset += t->nbytes;
    }

    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!text) {
        status = elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: cannot serialise the header");
        goto done;
    }
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    char *out = malloc(padded);
    if (!out) {
        free(text);
        status = elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: out of memory");
        goto done;
    }
    memcpy(out, text, len);
    memset(out + len, ' ', padded - len);
    free(text);
    *header = out;
    *header_len = padded;
    *data_size = offset;
done:
    json_decref(root);
    return status;
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

elastic_status elastic_st_serialize(const elastic_st_meta *meta, int n_meta,
                                    const elastic_st_tensor *tensors, int n_tensors,
                                    unsigned char **bytes, size_t *size)
{
    if (!bytes || !size)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: output pointer is NULL");
    *bytes = NULL;
    *size = 0;
    char *header;
    size_t hlen;
    uint64_t data_size;
    ELASTIC_TRY(build_header(meta, n_meta, tensors, n_tensors, &header, &hlen, &data_size));
    if (data_size > SIZE_MAX - 8 - hlen) {
        free(header);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: image too large for memory");
    }
    size_t total = 8 + hlen + (size_t)data_size;
    unsigned char *out = malloc(total);
    if (!out) {
        free(header);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: cannot allocate %zu bytes",
                             total);
    }
    put_u64le(out, hlen);
    memcpy(out + 8, header, hlen);
    free(header);
    size_t at = 8 + hlen;
    for (int i = 0; i < n_tensors; i++) {
        if (tensors[i].nbytes) memcpy(out + at, tensors[i].data, tensors[i].nbytes);
        at += tensors[i].nbytes;
    }
    *bytes = out;
    *size = total;
    return ELASTIC_OK;
}

elastic_status elastic_st_write(const char *path, const elastic_st_meta *meta, int n_meta,
                                const elastic_st_tensor *tensors, int n_tensors)
{
    if (!path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "safetensors: path is NULL");
    char *header;
    size_t hlen;
    uint64_t data_size;
    ELASTIC_TRY(build_header(meta, n_meta, tensors, n_tensors, &header, &hlen, &data_size));

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(header);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "safetensors: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    elastic_status status = ELASTIC_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        status = elastic_error(ELASTIC_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char lenbuf[8];
    put_u64le(lenbuf, hlen);
    int ok = fwrite(lenbuf, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
    for (int i = 0; ok && i < n_tensors; i++)
        if (tensors[i].nbytes)
            ok = fwrite(tensors[i].data, 1, tensors[i].nbytes, f) == tensors[i].nbytes;
    int err = errno;
    if (ok && fflush(f) != 0) {
        ok = 0;
        err = errno;
    }
#if !defined(_WIN32)
    /* On disk before the rename: a crash never leaves a renamed, empty file. */
    if (ok && fsync(fileno(f)) != 0) {
        ok = 0;
        err = errno;
    }
#endif
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        remove(tmp);
        status = elastic_error(ELASTIC_ERR_IO, "cannot write '%s': %s", tmp, strerror(err));
        goto done;
    }
#if defined(_WIN32)
    remove(path); /* rename does not replace an existing file there */
#endif
    if (rename(tmp, path) != 0) {
        err = errno;
        remove(tmp);
        status = elastic_error(ELASTIC_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path,
                               strerror(err));
    }
done:
    free(tmp);
    free(header);
    return status;
}
