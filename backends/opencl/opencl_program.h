/*
 * opencl_program.h - building libelastic's OpenCL program: the kernel sources
 * embedded at build time, compiled once per context, and the compiled binary
 * cached on disk keyed by a hash of source, options, device and driver, so a
 * second run does not recompile (PoCL spends seconds compiling).
 */
#ifndef ELASTIC_OPENCL_PROGRAM_H
#define ELASTIC_OPENCL_PROGRAM_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "elastic.h"

/* The embedded sources (generated from kernels_cl/ by CMake). */
extern const char *const elastic_cl_sources[];
extern const int elastic_cl_source_count;

/* Builds (or loads from the disk cache) the program for one device. The
 * cache lives in cache_dir when it is not empty, else in $ELASTIC_CACHE_DIR,
 * $XDG_CACHE_HOME/elastic or ~/.cache/elastic. *cached tells whether the
 * binary came from the cache. */
elastic_status elastic_cl_program_build(cl_context context, cl_device_id device,
                                        const char *options, const char *cache_dir,
                                        cl_program *program, int *cached);

/* A short name for an OpenCL error code. */
const char *elastic_cl_error_name(cl_int err);

#endif
