/*
 * safetensors.h - a small, hardened reader and writer of safetensors files.
 *
 * Layout: an 8-byte little-endian header length H, H bytes of JSON header
 * (an object: tensor name -> {"dtype", "shape", "data_offsets"}, plus an
 * optional "__metadata__" object of strings), then the data section; each
 * tensor's data_offsets [begin, end) are relative to the data section.
 *
 * The reader checks everything before use: every malformed input gives
 * ELASTIC_ERR_FORMAT with a message naming the problem (and the tensor or
 * key), never a crash or an allocation sized by an unchecked declared value.
 * Tensor data is not converted: it is the file's bytes, little-endian, and
 * not necessarily aligned, both read and written (convert it with
 * base/byteorder.h, e.g. elastic_f32_from_le / elastic_f32_le_bytes).
 */
#ifndef ELASTIC_CORE_SAFETENSORS_H
#define ELASTIC_CORE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "elastic.h"

#define ELASTIC_ST_MAX_DIMS 4
/* Largest header accepted by the reader. */
#define ELASTIC_ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct elastic_st_tensor {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16", "I64", ... */
    int ndim;          /* 0 .. ELASTIC_ST_MAX_DIMS */
    int64_t shape[ELASTIC_ST_MAX_DIMS];
    int64_t numel;    /* product of shape (1 for rank 0); the writer ignores it */
    const void *data; /* nbytes bytes, little-endian, maybe unaligned */
    size_t nbytes;
} elastic_st_tensor;

typedef struct elastic_st_meta {
    const char *key;
    const char *value;
} elastic_st_meta;

/* A parsed file. Strings and data pointers stay valid until elastic_st_free
 * (for elastic_st_parse: and while the caller's bytes live). Tensors are in
 * the header's order. */
typedef struct elastic_st_file {
    elastic_st_tensor *tensors;
    int n_tensors;
    elastic_st_meta *meta;
    int n_meta;
    void *owned_bytes; /* the file's bytes (elastic_st_read), else NULL */
    void *header_json; /* the parsed header (json_t), owns the strings */
} elastic_st_file;

/* Bytes per element of a safetensors dtype, 0 if the dtype is not known. */
size_t elastic_st_dtype_size(const char *dtype);

/* Parses a safetensors image in memory. The bytes are borrowed: tensor data
 * pointers point into them. On failure *file is left empty (nothing to free,
 * though elastic_st_free is harmless). */
elastic_status elastic_st_parse(const void *bytes, size_t size, elastic_st_file *file);

/* Reads and parses a file (ELASTIC_ERR_IO names the path on I/O errors). */
elastic_status elastic_st_read(const char *path, elastic_st_file *file);

/* Releases a file filled by elastic_st_parse or elastic_st_read; resets it. */
void elastic_st_free(elastic_st_file *file);

/* The tensor of that name, or NULL. */
const elastic_st_tensor *elastic_st_find(const elastic_st_file *file, const char *name);
/* The metadata value of that key, or NULL. */
const char *elastic_st_meta_get(const elastic_st_file *file, const char *key);

/* Serialises tensors (data laid out contiguously, in the given order) and
 * metadata into a new malloc'ed image (*bytes, *size; free() it). The
 * header is padded with spaces to a multiple of 8 bytes. Bad input (unknown
 * dtype, nbytes not matching the shape, duplicate names, strings that are
 * not UTF-8) gives ELASTIC_ERR_INVALID_ARG. */
elastic_status elastic_st_serialize(const elastic_st_meta *meta, int n_meta,
                                    const elastic_st_tensor *tensors, int n_tensors,
                                    unsigned char **bytes, size_t *size);

/* Writes the same image to path, through "path.tmp" and a rename, so a failed
 * write never leaves a partial file at path. I/O errors give ELASTIC_ERR_IO. */
elastic_status elastic_st_write(const char *path, const elastic_st_meta *meta, int n_meta,
                                const elastic_st_tensor *tensors, int n_tensors);

#endif
