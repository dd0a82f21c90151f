/*
 * elastic.h - the public C API of libelastic.
 *
 * libelastic runs ELASTIC, a linear-attention sequential recommender, and the
 * SASRec baseline (see the model specification) on the CPU, OpenCL or CUDA.
 *
 * Conventions:
 *   - every call returns an elastic_status; ELASTIC_OK is 0;
 *   - on failure elastic_last_error() returns a thread-local message that says
 *     what went wrong; the library never calls abort() or exit();
 *   - handles are opaque and come in init/free pairs; free(NULL) is a no-op;
 *   - a loaded model is read-only and may be shared by several threads, each
 *     with its own session; a session is used by one thread at a time.
 *
 * Histories are passed in compressed-row form: user b's items, oldest first
 * (time order), are items[offsets[b] .. offsets[b+1]-1]; offsets has B+1
 * entries and offsets[0] = 0.
 */
#ifndef ELASTIC_H
#define ELASTIC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ELASTIC_API
#else
#define ELASTIC_API __attribute__((visibility("default")))
#endif

#define ELASTIC_VERSION_MAJOR 0
#define ELASTIC_VERSION_MINOR 1
#define ELASTIC_VERSION_PATCH 0

typedef enum elastic_status {
    ELASTIC_OK = 0,
    ELASTIC_ERR_INVALID_ARG = 1,     /* NULL pointer, bad size, bad option */
    ELASTIC_ERR_OUT_OF_RANGE = 2,    /* item id outside 1..I, K too large */
    ELASTIC_ERR_EMPTY_HISTORY = 3,   /* a user with no items */
    ELASTIC_ERR_SHAPE = 4,           /* tensor shapes that do not fit */
    ELASTIC_ERR_FORMAT = 5,          /* malformed model file or config */
    ELASTIC_ERR_IO = 6,              /* file could not be read or written */
    ELASTIC_ERR_NO_MEMORY = 7,       /* host or device allocation failed */
    ELASTIC_ERR_UNSUPPORTED = 8,     /* op not supported, fallback not allowed */
    ELASTIC_ERR_BACKEND = 9,         /* unknown or unavailable backend, device error */
    ELASTIC_ERR_INTERNAL = 10        /* a bug in libelastic: please report */
} elastic_status;

/* A short fixed name for a status, e.g. "ELASTIC_ERR_FORMAT". */
ELASTIC_API const char *elastic_status_name(elastic_status status);

/* The message of the last failed call on this thread ("" if none). */
ELASTIC_API const char *elastic_last_error(void);

ELASTIC_API const char *elastic_version(void);

/* ------------------------------------------------------------------ config */

typedef enum elastic_model_kind {
    ELASTIC_MODEL_KIND_ELASTIC = 0,
    ELASTIC_MODEL_KIND_SASREC = 1
} elastic_model_kind;

/* The configuration of spec section 1. */
typedef struct elastic_config {
    elastic_model_kind model;
    int64_t num_items;   /* I */
    int64_t max_len;     /* N */
    int64_t hidden;      /* d */
    int64_t heads;       /* h */
    int64_t layers;      /* L */
    int64_t experts;     /* k */
    int64_t ffn;         /* f */
    int64_t mem_subkeys; /* m */
    int64_t mem_key;     /* c */
    int64_t mem_topk;    /* t */
    double ln_eps;
    int64_t mask_token;  /* 1: item_emb row I+1 is a mask token (spec 3.0), else 0 */
} elastic_config;

/* Fills the spec defaults; num_items is left 0 (it must be set). A negative
 * ffn or mem_key means "derive from hidden" (4d and d) at validation. */
ELASTIC_API void elastic_config_default(elastic_config *config);

/* Sets one key of spec section 1 from its string form ("hidden", "64"). */
ELASTIC_API elastic_status elastic_config_set(elastic_config *config, const char *key,
                                              const char *value);

/* Resolves derived defaults and checks the constraints of spec section 1;
 * the message names the offending key. */
ELASTIC_API elastic_status elastic_config_validate(elastic_config *config);

/* ------------------------------------------------------------------- model */

typedef struct elastic_model elastic_model;

/* A model with weights drawn as spec section 5 says, from a seeded generator. */
ELASTIC_API elastic_status elastic_model_init_random(elastic_model **model,
                                                     const elastic_config *config,
                                                     uint64_t seed);
/* Reads a safetensors model file; malformed files give ELASTIC_ERR_FORMAT. */
ELASTIC_API elastic_status elastic_model_load(elastic_model **model, const char *path);
ELASTIC_API elastic_status elastic_model_save(const elastic_model *model, const char *path);
ELASTIC_API void elastic_model_free(elastic_model *model);

ELASTIC_API const elastic_config *elastic_model_config(const elastic_model *model);

/* Number of parameter tensors and their names, in the spec's order. */
ELASTIC_API int elastic_model_tensor_count(const elastic_model *model);
ELASTIC_API const char *elastic_model_tensor_name(const elastic_model *model, int index);

/* A parameter by name: its float32 data (owned by the model), shape and rank. */
ELASTIC_API elastic_status elastic_model_tensor(const elastic_model *model, const char *name,
                                                const float **data, int64_t shape[4],
                                                int *ndim);
/* Overwrites a parameter (for converters and trainers); n = element count.
 * Sessions on the model compute with the new values from their next call
 * (each notices the change and reads the weights again, on every backend);
 * not while another thread runs a session on the model. */
ELASTIC_API elastic_status elastic_model_set_tensor(elastic_model *model, const char *name,
                                                    const float *data, int64_t n);

/* Extra string metadata stored in the model file (e.g. an item-id map):
 * count and keys (beyond the config keys), and a value by key. */
ELASTIC_API int elastic_model_metadata_count(const elastic_model *model);
ELASTIC_API const char *elastic_model_metadata_key(const elastic_model *model, int index);
ELASTIC_API const char *elastic_model_metadata(const elastic_model *model, const char *key);
ELASTIC_API elastic_status elastic_model_set_metadata(elastic_model *model, const char *key,
                                                      const char *value);

/* ---------------------------------------------------------------- backends */

typedef struct elastic_backend_info {
    const char *name;        /* "cpu", "opencl", "cuda" */
    int compiled;            /* built into this library */
    int available;           /* usable now */
    int device_count;
    int accelerator;         /* its default device is a GPU or another accelerator */
    char description[256];   /* devices, or why it is unavailable */
} elastic_backend_info;

ELASTIC_API int elastic_backend_count(void);
ELASTIC_API elastic_status elastic_backend_get_info(int index, elastic_backend_info *info);

/* ---------------------------------------------------------------- sessions */

typedef struct elastic_session elastic_session;

/* How a session computes multi-head attention. Both give the same results
 * (up to float32 rounding); they differ in memory. */
typedef enum elastic_attention_kind {
    /* Online softmax over blocks of keys: the weights are never stored, so
     * memory is linear in the history length for both models (the default). */
    ELASTIC_ATTENTION_STREAMING = 0,
    /* The softmax weights [B, heads, queries, keys] are a tensor of the plan,
     * as in standard implementations: SASRec's memory grows with n^2. For
     * comparisons with such implementations (elastic bench). */
    ELASTIC_ATTENTION_MATERIALIZED = 1
} elastic_attention_kind;

/* Options of a session (and of a trainer's session). Always start from
 * elastic_session_options_default(): it sets struct_size, which lets the
 * library refuse a struct laid out by another version of this header (or a
 * foreign-language mirror of it) instead of reading past its end. */
typedef struct elastic_session_options {
    size_t struct_size;     /* sizeof(elastic_session_options); set by _default */
    const char *backend;    /* "cpu", "opencl", "cuda" or "auto" (the default) */
    int device;             /* device index within the backend */
    int allow_cpu_fallback; /* run unsupported ops on the CPU (reported) */
    int num_threads;        /* CPU threads; 0 = OpenMP's default */
    int attention;          /* an elastic_attention_kind */
    /* Backend-specific settings as text, NULL or "" for none: comma-separated
     * "backend.key=value" pairs, e.g. "cpu.isa=avx2,opencl.device=Intel".
     * Keys of a backend that is not used are checked for form only; an
     * unknown key of the backend in use is an error. The keys:
     *   cpu.isa           best (default), generic, avx2, avx512 (x86-64), neon
     *                     (aarch64), or reference
     *                     (the scalar float64 oracle of the conformance suite)
     *   cpu.pack_mb       MiB of weights an inference session keeps packed
     *                     for its GEMM (default 256; 0: none), per session
     *   opencl.device     the first device whose name contains this text
     *   opencl.cache_dir  where compiled OpenCL programs are cached */
    const char *backend_options;
} elastic_session_options;

ELASTIC_API void elastic_session_options_default(elastic_session_options *options);

ELASTIC_API elastic_status elastic_session_init(elastic_session **session,
                                                const elastic_model *model,
                                                const elastic_session_options *options);
ELASTIC_API void elastic_session_free(elastic_session *session);

/* The backend the session runs on, e.g. "cpu (avx512)". */
ELASTIC_API const char *elastic_session_backend(const elastic_session *session);

/* The model a session runs (NULL for a NULL session). */
ELASTIC_API const elastic_model *elastic_session_model(const elastic_session *session);

/* User vectors hu (spec step 4): out is [B, d]. */
ELASTIC_API elastic_status elastic_session_user_vectors(elastic_session *session,
                                                        const int32_t *items,
                                                        const int64_t *offsets, int batch,
                                                        float *out);

/* Scores (spec step 5): out is [B, I], out[b*I + v-1] = score of item v. */
ELASTIC_API elastic_status elastic_session_scores(elastic_session *session,
                                                  const int32_t *items,
                                                  const int64_t *offsets, int batch,
                                                  float *out);

/* The top_k items per user, ties by the smaller id; with exclude_history the
 * user's whole history is left out. ids and scores are [B, top_k]; when fewer
 * than top_k items remain, the rest is id 0 with score -INFINITY. */
ELASTIC_API elastic_status elastic_session_recommend(elastic_session *session,
                                                     const int32_t *items,
                                                     const int64_t *offsets, int batch,
                                                     int top_k, int exclude_history,
                                                     int32_t *ids, float *scores);

/* elastic_session_recommend among candidates: user b's are
 * cand_items[cand_offsets[b] .. cand_offsets[b+1]) (ids 1..I, a repeated id
 * counts once; cand_offsets[0] = 0). The same scores and rule as
 * elastic_session_recommend (bitwise, on the CPU), computed for the
 * candidates only: the ranking stage of a recommender. Backends without the
 * fused score_topk op run it on the CPU when fallback is allowed. */
ELASTIC_API elastic_status elastic_session_recommend_candidates(
    elastic_session *session, const int32_t *items, const int64_t *offsets, int batch,
    const int32_t *cand_items, const int64_t *cand_offsets, int top_k, int exclude_history,
    int32_t *ids, float *scores);

/* Writes the execution plan for a batch of `batch` users of history length
 * `len` (one line per node: op, backend, shapes, memory) to `out`. */
ELASTIC_API elastic_status elastic_session_print_plan(elastic_session *session, int batch,
                                                      int64_t len, int top_k, FILE *out);

/* What the last run did: nodes executed, nodes that fell back to the CPU,
 * arena bytes with liveness reuse and without it, floating-point ops, and
 * the size of the largest tensor the plan places in an arena. */
typedef struct elastic_run_stats {
    int nodes;
    int fallback_nodes;
    int copies;
    size_t arena_bytes;
    size_t naive_bytes;
    double flops;
    size_t max_tensor_bytes;
} elastic_run_stats;

ELASTIC_API elastic_status elastic_session_last_stats(const elastic_session *session,
                                                      elastic_run_stats *stats);

#ifdef __cplusplus
}
#endif

#include "elastic_data.h"        /* interaction logs, splits, synthetic data, metrics */
#include "elastic_train.h"       /* training */
#include "elastic_conformance.h" /* the cross-backend conformance suite */

#endif /* ELASTIC_H */
