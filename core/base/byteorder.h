/*
 * byteorder.h - explicit little-endian loads and stores for the bytes of
 * files (model files, trainer state): every binary field libelastic reads or
 * writes is little-endian whatever the host, so a file written on s390x is
 * byte for byte the one written on x86-64 or arm64.
 *
 * On little-endian hosts every helper is a plain memcpy (the compiler sees
 * through it: no speed loss); on big-endian hosts the bytes are swapped.
 * Unaligned pointers are fine everywhere.
 */
#ifndef ELASTIC_BASE_BYTEORDER_H
#define ELASTIC_BASE_BYTEORDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && defined(__ORDER_BIG_ENDIAN__)
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ELASTIC_HOST_LITTLE_ENDIAN 1
#elif __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define ELASTIC_HOST_LITTLE_ENDIAN 0
#else
#error "byteorder.h: mixed-endian hosts are not supported"
#endif
#else
#error "byteorder.h: the compiler does not say the host's byte order (__BYTE_ORDER__)"
#endif

_Static_assert(sizeof(float) == 4, "float must be 32-bit IEEE 754");

static inline uint32_t elastic_load_u32le(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if !ELASTIC_HOST_LITTLE_ENDIAN
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline void elastic_store_u32le(void *p, uint32_t v)
{
#if !ELASTIC_HOST_LITTLE_ENDIAN
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, sizeof v);
}

static inline uint64_t elastic_load_u64le(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if !ELASTIC_HOST_LITTLE_ENDIAN
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void elastic_store_u64le(void *p, uint64_t v)
{
#if !ELASTIC_HOST_LITTLE_ENDIAN
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

/* n float32 from little-endian bytes (src) to host floats (dst). */
static inline void elastic_f32_from_le(float *dst, const void *src, size_t n)
{
#if ELASTIC_HOST_LITTLE_ENDIAN
    if (n) memcpy(dst, src, n * sizeof(float));
#else
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = elastic_load_u32le(s + 4 * i);
        memcpy(&dst[i], &u, sizeof u);
    }
#endif
}

/* n host floats (src) to little-endian float32 bytes (dst). */
static inline void elastic_f32_to_le(void *dst, const float *src, size_t n)
{
#if ELASTIC_HOST_LITTLE_ENDIAN
    if (n) memcpy(dst, src, n * sizeof(float));
#else
    unsigned char *d = (unsigned char *)dst;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], sizeof u);
        elastic_store_u32le(d + 4 * i, u);
    }
#endif
}

/* The little-endian bytes of n host floats, for a writer: src itself on
 * little-endian hosts (*owned = NULL); on big-endian hosts a converted
 * malloc'ed copy that the caller frees through *owned. NULL when that copy
 * cannot be allocated (n > 0). */
static inline const void *elastic_f32_le_bytes(const float *src, size_t n, void **owned)
{
    *owned = NULL;
#if ELASTIC_HOST_LITTLE_ENDIAN
    (void)n;
    return src;
#else
    if (n == 0) return src;
    if (n > SIZE_MAX / sizeof(float)) return NULL;
    void *copy = malloc(n * sizeof(float));
    if (!copy) return NULL;
    elastic_f32_to_le(copy, src, n);
    *owned = copy;
    return copy;
#endif
}

#endif
