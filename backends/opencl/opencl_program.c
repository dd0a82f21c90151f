/*
 * opencl_program.c - compiles the embedded kernels into one program per
 * context, with an on-disk binary cache (see opencl_program.h). The cache
 * directory is $ELASTIC_CACHE_DIR, else $XDG_CACHE_HOME/elastic, else
 * $HOME/.cache/elastic; when none is usable the cache is skipped. Files are
 * written atomically (temporary name, then rename) and a binary that fails
 * to load is simply rebuilt from source.
 */
#include "opencl_program.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

const char *elastic_cl_error_name(cl_int err)
{
    switch (err) {
    case CL_SUCCESS: return "CL_SUCCESS";
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE";
    case CL_INVALID_BINARY: return "CL_INVALID_BINARY";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_PLATFORM: return "CL_INVALID_PLATFORM";
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR (no OpenCL platform installed)";
    default: return "CL error";
    }
}

/* FNV-1a, 64 bits: enough to tell builds apart, not a security measure. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    return fnv1a(fnv1a(h, s, strlen(s)), "\n", 1);
}

static void device_string(cl_device_id dev, cl_device_info what, char *buf, size_t size)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(dev, what, size, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[size - 1] = '\0';
}

/* The cache file for this build, or "" when no cache directory is usable. */
static void cache_path(cl_device_id dev, const char *options, const char *cache_dir, char *path,
                       size_t size)
{
    char dir[1024];
    const char *env = getenv("ELASTIC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
               *home = getenv("HOME");
    path[0] = '\0';
    if (cache_dir && *cache_dir)
        snprintf(dir, sizeof dir, "%s", cache_dir);
    else if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/elastic", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/elastic", home);
    else
        return;
    /* create the directory and its parent (one level is enough for the defaults) */
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        mkdir(parent, 0755);
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < elastic_cl_source_count; i++)
        h = hash_str(h, elastic_cl_sources[i]);
    h = hash_str(h, options);
    char s[256];
    cl_device_info infos[] = {CL_DEVICE_NAME, CL_DEVICE_VENDOR, CL_DRIVER_VERSION,
                              CL_DEVICE_VERSION};
    for (size_t i = 0; i < sizeof infos / sizeof infos[0]; i++) {
        device_string(dev, infos[i], s, sizeof s);
        h = hash_str(h, s);
    }
    cl_platform_id platform;
    if (clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) == CL_SUCCESS &&
        clGetPlatformInfo(platform, CL_PLATFORM_VERSION, sizeof s, s, NULL) == CL_SUCCESS) {
        s[sizeof s - 1] = '\0';
        h = hash_str(h, s);
    }
    snprintf(path, size, "%s/kernels-%016llx.bin", dir, (unsigned long long)h);
}

/* Tries to create the program from a cached binary; 0 on success. */
static int load_cached(cl_context ctx, cl_device_id dev, const char *path, const char *options,
                       cl_program *program)
{
    FILE *f = path[0] ? fopen(path, "rb") : NULL;
    if (!f) return -1;
    unsigned char *bin = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size > 0 && fseek(f, 0, SEEK_SET) == 0 && (bin = malloc((size_t)size)) &&
        fread(bin, 1, (size_t)size, f) != (size_t)size) {
        free(bin);
        bin = NULL;
    }
    fclose(f);
    if (!bin) return -1;
    size_t n = (size_t)size;
    const unsigned char *bins[1] = {bin};
    cl_int status, err;
    cl_program p = clCreateProgramWithBinary(ctx, 1, &dev, &n, bins, &status, &err);
    free(bin);
    if (err != CL_SUCCESS || status != CL_SUCCESS) {
        if (p) clReleaseProgram(p);
        return -1;
    }
    if (clBuildProgram(p, 1, &dev, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        return -1;
    }
    *program = p;
    return 0;
}

static void store_cached(cl_program p, const char *path)
{
    size_t size = 0;
    if (!path[0] ||
        clGetProgramInfo(p, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *bin = malloc(size);
    unsigned char *bins[1] = {bin};
    if (!bin || clGetProgramInfo(p, CL_PROGRAM_BINARIES, sizeof bins, bins, NULL) != CL_SUCCESS) {
        free(bin);
        return;
    }
    char tmp[1100];
    int n = snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) { /* a cache path too long: no cache, no harm */
        free(bin);
        return;
    }
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(bin, 1, size, f) == size;
    if (f) ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) remove(tmp);
    free(bin);
}

elastic_status elastic_cl_program_build(cl_context ctx, cl_device_id dev, const char *options,
                                        const char *cache_dir, cl_program *program, int *cached)
{
    char path[1100];
    cache_path(dev, options, cache_dir, path, sizeof path);
    *cached = 0;
    if (load_cached(ctx, dev, path, options, program) == 0) {
        *cached = 1;
        return ELASTIC_OK;
    }
    cl_int err;
    cl_program p = clCreateProgramWithSource(ctx, (cl_uint)elastic_cl_source_count,
                                             (const char **)elastic_cl_sources, NULL, &err);
    if (err != CL_SUCCESS)
        return elastic_error(ELASTIC_ERR_BACKEND, "clCreateProgramWithSource: %s",
                             elastic_cl_error_name(err));
    err = clBuildProgram(p, 1, &dev, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[2048] = "";
        clGetProgramBuildInfo(p, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        log[sizeof log - 1] = '\0';
        clReleaseProgram(p);
        return elastic_error(ELASTIC_ERR_BACKEND, "clBuildProgram: %s; build log: %s",
                             elastic_cl_error_name(err), log);
    }
    store_cached(p, path);
    *program = p;
    return ELASTIC_OK;
}
