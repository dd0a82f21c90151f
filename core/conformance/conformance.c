/*
 * conformance.c - the cross-backend conformance suite behind
 * `elastic conformance` (see elastic_conformance.h and
 * docs/spec/conformance.md).
 *
 * Every op of ops.def, inference and training alike, has cases
 * (conformance_cases.c). For each case the inputs are drawn from a
 * counter-based generator with a printed seed, and the CPU backend with
 * cpu.isa=reference computes the expected outputs: the float64 reference
 * kernels (cpu_ref.c) for inference ops, the double-accumulating training
 * kernels (cpu_grad.c) for the training ops. A reference that is mostly zeros
 * fails the case unless the case says why (the guard). Every chosen backend
 * then runs the same node through its compute() entry, outputs poisoned
 * beforehand and canaries after each; every element of every output must
 * satisfy |got - ref| <= tol (tolerance.c, per op and element); NaN and Inf
 * must appear exactly where the reference has them; a second run must give
 * the same bits. A backend without a kernel for an op shows "not impl.: CPU
 * fallback" (the CPU runs such ops when fallback is allowed): coverage, not a
 * failure. The training ops' oracle is itself checked once per op against
 * finite differences of float64 forwards (gradcheck.c, the self-check). Whole
 * ELASTIC and SASRec models then run through sessions and are compared on
 * user vectors, scores and top-K.
 */
#include "elastic_conformance.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "conformance/conformance_cases.h"
#include "conformance/gradcheck.h"
#include "conformance/tolerance.h"
#include "runtime/backend.h"

#define MAX_BACKENDS 8

typedef struct conf_backend {
    char spec[32];
    char backend_options[48];
    elastic_session_options options;
    const elastic_backend_iface *iface;
    elastic_backend *be;
    const char *describe;
} conf_backend;

/* What one backend did on one op, over all its cases. */
typedef struct conf_cell {
    int cases, passed, unsupported;
    double worst; /* largest |err| / tol (0 = exact) */
    double max_abs, max_rel, nmse;
    uint64_t max_ulp;
} conf_cell;

typedef struct conf_run {
    const elastic_conformance_options *o;
    FILE *out;      /* the text report (stderr in JSON mode) */
    FILE *json_out; /* the JSON report */
    conf_backend backends[MAX_BACKENDS];
    int n_backends;
    elastic_backend *reference;
    conf_cell cells[ELASTIC_OP_COUNT][MAX_BACKENDS];
    int self_ok[ELASTIC_OP_COUNT]; /* training ops: 1 passed, -1 failed, 0 not run */
    double self_worst[ELASTIC_OP_COUNT];
    int failures, checks;
    json_t *json_cases, *json_self, *json_models, *json_perf;
} conf_run;

void elastic_conformance_options_default(elastic_conformance_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->seed = 20261122;
    o->case_index = -1;
    o->whole_model = 1;
}

static int listed(const char *list, const char *name)
{
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, name, n)) return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

/* ------------------------------------------------------------- backends */

static elastic_status add_backend(conf_run *r, const char *spec)
{
    if (r->n_backends == MAX_BACKENDS)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "conformance: at most %d backends",
                             MAX_BACKENDS);
    conf_backend *b = &r->backends[r->n_backends];
    memset(b, 0, sizeof *b);
    size_t len = strlen(spec);
    if (len >= sizeof b->spec)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "conformance: backend '%s' is too long",
                             spec);
    memcpy(b->spec, spec, len + 1);
    char name[32];
    memcpy(name, spec, len + 1);
    char *colon = strchr(name, ':');
    const char *variant = NULL;
    if (colon) {
        *colon = '\0';
        variant = strchr(b->spec, ':') + 1;
    }
    elastic_session_options_default(&b->options);
    b->options.backend = NULL;
    if (!strcmp(name, "cpu") && variant) { /* the CPU backend checks the name */
        snprintf(b->backend_options, sizeof b->backend_options, "cpu.isa=%s", variant);
        b->options.backend_options = b->backend_options;
    } else if (variant) {
        char *end;
        long dev = strtol(variant, &end, 10);
        if (end == variant || *end || dev < 0)
            return elastic_error(ELASTIC_ERR_INVALID_ARG,
                                 "conformance: '%s': the part after ':' must be a device index",
                                 spec);
        b->options.device = (int)dev;
    }
    b->iface = elastic_backend_registry_find(name);
    if (!b->iface)
        return elastic_error(ELASTIC_ERR_BACKEND, "conformance: backend '%s' is not compiled in",
                             name);
    ELASTIC_TRY(b->iface->init(&b->be, &b->options));
    b->describe = b->iface->describe(b->be);
    r->n_backends++;
    return ELASTIC_OK;
}

/* "cpu:*": every instruction set this CPU has. */
static void all_cpu_variants(conf_run *r)
{
    static const char *cpu[] = {"cpu:generic", "cpu:avx2", "cpu:avx512", "cpu:neon"};
    for (int i = 0; i < 4; i++)
        if (add_backend(r, cpu[i]) != ELASTIC_OK) elastic_error_clear(); /* ISA absent */
}

/* Every available backend; for the CPU, every instruction set it has. */
static elastic_status default_backends(conf_run *r)
{
    all_cpu_variants(r);
    for (int i = 0; i < elastic_backend_registry_count(); i++) {
        const elastic_backend_iface *f = elastic_backend_registry_get(i);
        if (f == &elastic_cpu_backend_iface) continue;
        elastic_backend_info info;
        memset(&info, 0, sizeof info);
        f->probe(&info);
        if (!info.available) {
            fprintf(r->out, "# backend %s unavailable: %s\n", f->name, info.description);
            continue;
        }
        ELASTIC_TRY(add_backend(r, f->name));
    }
    return ELASTIC_OK;
}

/* ---------------------------------------------------------- one op case */

static void report_case(conf_run *r, const conf_case *c, int index, uint64_t seed,
                        const conf_backend *b, const conf_compare_result *res, int canary_ok,
                        int deterministic, elastic_status st)
{
    int ok = st == ELASTIC_OK && res->ok && canary_ok && deterministic;
    r->checks++;
    if (!ok) r->failures++;
    if (!ok || r->o->verbose) {
        fprintf(r->out, "%s op=%s case=%d (%s) backend=%s seed=%llu: ", ok ? "ok  " : "FAIL",
                elastic_op_name(c->op), index, c->label, b->spec, (unsigned long long)seed);
        if (st != ELASTIC_OK)
            fprintf(r->out, "error %s: %s\n", elastic_status_name(st), elastic_last_error());
        else if (!res->ok)
            fprintf(r->out, "%s; max abs %.3g, max rel %.3g, max ulp %llu, nmse %.3g\n", res->why,
                    res->max_abs, res->max_rel, (unsigned long long)res->max_ulp, res->nmse);
        else if (!canary_ok)
            fprintf(r->out, "wrote past the end of an output (canary changed)\n");
        else if (!deterministic)
            fprintf(r->out, "a second run gave different bits\n");
        else
            fprintf(r->out,
                    "worst err/tol %.3g (output %d), max abs %.3g, max ulp %llu, "
                    "nmse %.3g\n",
                    res->worst, res->output, res->max_abs, (unsigned long long)res->max_ulp,
                    res->nmse);
        if (!ok)
            fprintf(r->out,
                    "     replay: elastic conformance --backends %s --ops %s --case %d "
                    "--seed %llu\n",
                    b->spec, elastic_op_name(c->op), index, (unsigned long long)r->o->seed);
    }
    if (r->json_cases) {
        char seed_str[24]; /* a string: JSON readers lose 64-bit integers */
        snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)seed);
        json_t *j = json_pack(
            "{s:s, s:i, s:s, s:s, s:s, s:b, s:f, s:f, s:f, s:I, s:f}", "op", elastic_op_name(c->op),
            "case", index, "label", c->label, "backend", b->spec, "seed", seed_str, "pass", ok,
            "worst_err_over_tol", isfinite(res->worst) ? res->worst : -1.0, "max_abs", res->max_abs,
            "max_rel", res->max_rel, "max_ulp", (json_int_t)res->max_ulp, "nmse", res->nmse);
        if (j) json_array_append_new(r->json_cases, j);
    }
}

/* A case whose reference fails the guard (mostly zeros): one failed check,
 * and a failed case in every backend's cell. */
static void report_guard(conf_run *r, const conf_case *c, int index, uint64_t seed, const char *why)
{
    r->checks++;
    r->failures++;
    fprintf(r->out, "FAIL op=%s case=%d (%s) seed=%llu: %s\n", elastic_op_name(c->op), index,
            c->label, (unsigned long long)seed, why);
    for (int bi = 0; bi < r->n_backends; bi++)
        r->cells[c->op][bi].cases++;
    if (r->json_cases) {
        json_t *j =
            json_pack("{s:s, s:i, s:s, s:s, s:b, s:s}", "op", elastic_op_name(c->op), "case", index,
                      "label", c->label, "backend", "reference", "pass", 0, "error", why);
        if (j) json_array_append_new(r->json_cases, j);
    }
}

static void perf_line(conf_run *r, const conf_case *c, const conf_case_data *cd,
                      const conf_backend *b, double sec)
{
    double bytes = 0;
    for (int i = 0; i < cd->node.n_inputs; i++)
        bytes += 4.0 * (double)cd->in_numel[i];
    for (int o = 0; o < cd->node.n_outputs; o++)
        bytes += 4.0 * (double)cd->out_numel[o];
    double flops = elastic_node_flops(&cd->g, &cd->node);
    fprintf(r->out, "perf %-16s %-36s %-12s %10.3f ms %9.2f GFLOP/s %8.2f GB/s\n",
            elastic_op_name(c->op), c->label, b->spec, sec * 1e3, flops / sec * 1e-9,
            bytes / sec * 1e-9);
    if (r->json_perf) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:f, s:f}", "op", elastic_op_name(c->op),
                              "label", c->label, "backend", b->spec, "ms", sec * 1e3, "gflops",
                              flops / sec * 1e-9, "gbs", bytes / sec * 1e-9);
        if (j) json_array_append_new(r->json_perf, j);
    }
}

static elastic_status run_case(conf_run *r, const conf_case *c, int index)
{
    uint64_t seed = elastic_rng_u64(r->o->seed, (uint64_t)c->op, (uint64_t)index);
    conf_case_data cd;
    elastic_status st = conf_case_build(c, seed, &cd);
    if (st == ELASTIC_OK) st = conf_case_reference(r->reference, c, &cd);
    if (st != ELASTIC_OK) {
        conf_case_free(&cd);
        return st;
    }
    char why[192];
    if (!conf_case_sparse_guard(c, &cd, why, sizeof why)) {
        report_guard(r, c, index, seed, why);
        conf_case_free(&cd);
        return ELASTIC_OK;
    }
    void *got[ELASTIC_MAX_OUTPUTS] = {0}, *again[ELASTIC_MAX_OUTPUTS] = {0};
    for (int o = 0; o < cd.node.n_outputs; o++) {
        got[o] = malloc((size_t)(cd.out_numel[o] > 0 ? cd.out_numel[o] : 1) * 4);
        again[o] = malloc((size_t)(cd.out_numel[o] > 0 ? cd.out_numel[o] : 1) * 4);
        if (!got[o] || !again[o]) st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    for (int bi = 0; st == ELASTIC_OK && bi < r->n_backends; bi++) {
        conf_backend *b = &r->backends[bi];
        conf_cell *cell = &r->cells[c->op][bi];
        cell->cases++;
        if (!elastic_backend_supports(b->be, &cd.node)) { /* reported, never a failure */
            cell->unsupported++;
            continue;
        }
        int reps = r->o->perf ? 5 : 0, canary1 = 1, canary2 = 1, det = 1;
        double sec = 0;
        conf_compare_result res = {.ok = 1};
        elastic_status bst = conf_case_run(b->be, &cd, got, &canary1, reps, &sec);
        if (bst == ELASTIC_OK) bst = conf_case_run(b->be, &cd, again, &canary2, 0, NULL);
        if (bst == ELASTIC_OK) {
            for (int o = 0; o < cd.node.n_outputs; o++) {
                elastic_dtype dt = cd.g.tensors[cd.node.outputs[o]].dtype;
                conf_compare(o, dt, got[o], cd.ref_out[o], cd.tol[o], cd.out_numel[o], &res);
                det &= !memcmp(got[o], again[o], (size_t)cd.out_numel[o] * 4);
            }
        }
        report_case(r, c, index, seed, b, &res, canary1 && canary2, det, bst);
        if (bst == ELASTIC_OK && res.ok && canary1 && canary2 && det) cell->passed++;
        if (res.worst > cell->worst) cell->worst = res.worst;
        if (res.max_abs > cell->max_abs) cell->max_abs = res.max_abs;
        if (res.max_rel > cell->max_rel) cell->max_rel = res.max_rel;
        if (res.nmse > cell->nmse) cell->nmse = res.nmse;
        if (res.max_ulp > cell->max_ulp) cell->max_ulp = res.max_ulp;
        if (r->o->perf && bst == ELASTIC_OK && sec > 0) perf_line(r, c, &cd, b, sec);
    }
    for (int o = 0; o < ELASTIC_MAX_OUTPUTS; o++) {
        free(got[o]);
        free(again[o]);
    }
    conf_case_free(&cd);
    return st;
}

/* ------------------------------------------------------ oracle self-check */

/* The oracle of a training op (the CPU reference backend's cpu_grad.c
 * kernel) against finite differences of a float64 forward, on the op's
 * self-check case (gradcheck.h). Inputs that put a discrete choice within
 * reach of a step (PKM's selections) are redrawn from the next seed. */
static elastic_status run_self_check(conf_run *r, elastic_op op)
{
    const conf_case *cases;
    conf_cases_for(op, &cases);
    int index = conf_self_check_case(op);
    if (index < 0 || !conf_self_check_supported(op))
        return elastic_error(ELASTIC_ERR_INTERNAL, "conformance: %s has no self-check",
                             elastic_op_name(op));
    if (r->o->case_index >= 0 && r->o->case_index != index) return ELASTIC_OK;
    const conf_case *c = &cases[index];
    uint64_t seed = elastic_rng_u64(r->o->seed, (uint64_t)op, (uint64_t)index);
    conf_case_data cd;
    elastic_status st = ELASTIC_OK;
    int attempt = 0;
    for (;; attempt++) {
        st = conf_case_build(c, seed, &cd);
        if (st != ELASTIC_OK || conf_self_check_inputs_ok(c, &cd) || attempt == 200) break;
        conf_case_free(&cd);
        seed = elastic_rng_u64(seed, 1, (uint64_t)attempt);
    }
    if (st == ELASTIC_OK) st = conf_case_reference(r->reference, c, &cd);
    conf_self_check_result res;
    memset(&res, 0, sizeof res);
    if (st == ELASTIC_OK) st = conf_self_check(c, &cd, seed, &res);
    conf_case_free(&cd);
    if (st != ELASTIC_OK) return st;
    r->checks++;
    if (!res.ok) r->failures++;
    double worst = 0;
    for (int o = 0; o < res.n_outputs; o++)
        worst = fmax(worst, res.worst[o]);
    r->self_worst[op] = worst;
    r->self_ok[op] = res.ok ? 1 : -1;
    if (!res.ok || r->o->verbose) {
        fprintf(r->out, "%s self-check op=%s case=%d (%s) seed=%llu: ", res.ok ? "ok  " : "FAIL",
                elastic_op_name(op), index, c->label, (unsigned long long)seed);
        if (!res.ok)
            fprintf(r->out,
                    "the reference is wrong: %s\n     replay: elastic conformance --backends "
                    "cpu:reference --ops %s --case %d --seed %llu\n",
                    res.why, elastic_op_name(op), index, (unsigned long long)r->o->seed);
        else
            fprintf(r->out, "worst |ref - float64| / allowed %.3g\n", worst);
    }
    if (r->json_self) {
        json_t *j = json_pack("{s:s, s:i, s:s, s:b, s:f}", "op", elastic_op_name(op), "case", index,
                              "label", c->label, "pass", res.ok, "worst_err_over_allowed",
                              isfinite(worst) ? worst : -1.0);
        if (j) json_array_append_new(r->json_self, j);
    }
    return ELASTIC_OK;
}

/* --------------------------------------------------------- whole models */

static elastic_status random_histories(int batch, int64_t max_len, int64_t items, uint64_t seed,
                                       int32_t **h, int64_t *offsets)
{
    offsets[0] = 0;
    for (int b = 0; b < batch; b++) {
        int64_t len = b == 0 ? 1
                             : 1 + (int64_t)(elastic_rng_u64(seed, 1, (uint64_t)b) %
                                             (uint64_t)(max_len * 3 / 2));
        offsets[b + 1] = offsets[b] + len;
    }
    *h = malloc((size_t)offsets[batch] * sizeof **h);
    if (!*h) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    for (int64_t i = 0; i < offsets[batch]; i++)
        (*h)[i] = 1 + (int32_t)(elastic_rng_u64(seed, 2, (uint64_t)i) % (uint64_t)items);
    return ELASTIC_OK;
}

/* Top-K lists agree, or differ only among items whose reference scores lie
 * within `tol` (relative) of the score at the cut; such ties are counted. */
static int topk_agrees(const int32_t *a, const int32_t *b, const float *ref_scores, int K,
                       double tol, int *ties)
{
    for (int r = 0; r < K; r++) {
        if (a[r] == b[r]) continue;
        float cut = ref_scores[a[K - 1] - 1];
        float sa = ref_scores[a[r] - 1], sb = b[r] > 0 ? ref_scores[b[r] - 1] : -INFINITY;
        double scale = fabs((double)cut) + 1e-30;
        if (fabs((double)sa - sb) <= tol * scale || fabs((double)sb - cut) <= tol * scale)
            (*ties)++;
        else
            return 0;
    }
    return 1;
}

/* One model on every backend against the CPU reference (which streams its
 * attention); `attention` is the backends' elastic_attention_kind. */
static elastic_status run_model(conf_run *r, const char *label, const elastic_config *config,
                                int batch, int attention)
{
    uint64_t seed = elastic_rng_u64(r->o->seed, 99, (uint64_t)config->model);
    elastic_model *m = NULL;
    elastic_session *ref = NULL;
    int32_t *h = NULL;
    int64_t *offsets = malloc((size_t)(batch + 1) * sizeof *offsets);
    size_t nI = (size_t)config->num_items, d = (size_t)config->hidden;
    float *want_u = malloc((size_t)batch * d * 4), *got_u = malloc((size_t)batch * d * 4);
    float *want_s = malloc((size_t)batch * nI * 4), *got_s = malloc((size_t)batch * nI * 4);
    const int K = 10;
    int32_t want_k[16 * 10], got_k[16 * 10];
    float vals[16 * 10];
    elastic_status st = offsets && want_u && got_u && want_s && got_s && batch <= 16
                            ? ELASTIC_OK
                            : elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    if (st == ELASTIC_OK) st = elastic_model_init_random(&m, config, seed);
    /* Larger weights than the 0.02 initialisation, so every layer matters. */
    for (int p = 0; st == ELASTIC_OK && p < elastic_model_tensor_count(m); p++) {
        const char *name = elastic_model_tensor_name(m, p);
        const float *data;
        int64_t shape[4];
        int ndim;
        st = elastic_model_tensor(m, name, &data, shape, &ndim);
        if (st != ELASTIC_OK || strstr(name, "norm") || !strcmp(name, "imr.subkeys")) continue;
        int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
        float *w = malloc((size_t)n * 4);
        if (!w) {
            st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
            break;
        }
        for (int64_t i = 0; i < n; i++)
            w[i] = (float)(0.3 * elastic_rng_normal(seed, 500 + (uint64_t)p, (uint64_t)i));
        st = elastic_model_set_tensor(m, name, w, n);
        free(w);
    }
    if (st == ELASTIC_OK)
        st = random_histories(batch, config->max_len, config->num_items, seed, &h, offsets);
    elastic_session_options ro;
    elastic_session_options_default(&ro);
    ro.backend = "cpu";
    ro.backend_options = "cpu.isa=reference";
    if (st == ELASTIC_OK) st = elastic_session_init(&ref, m, &ro);
    if (st == ELASTIC_OK) st = elastic_session_user_vectors(ref, h, offsets, batch, want_u);
    if (st == ELASTIC_OK) st = elastic_session_scores(ref, h, offsets, batch, want_s);
    if (st == ELASTIC_OK)
        st = elastic_session_recommend(ref, h, offsets, batch, K, 1, want_k, vals);
    for (int bi = 0; st == ELASTIC_OK && bi < r->n_backends; bi++) {
        conf_backend *b = &r->backends[bi];
        elastic_session_options o = b->options;
        o.backend = b->iface->name;
        o.allow_cpu_fallback = 1; /* reported below, never silent */
        o.attention = attention;
        elastic_session *s = NULL;
        elastic_run_stats stats = {0};
        double eu = INFINITY, es = INFINITY;
        int ties = 0, topk_ok = 0;
        elastic_status bst = elastic_session_init(&s, m, &o);
        if (bst == ELASTIC_OK) bst = elastic_session_user_vectors(s, h, offsets, batch, got_u);
        if (bst == ELASTIC_OK) bst = elastic_session_scores(s, h, offsets, batch, got_s);
        if (bst == ELASTIC_OK) bst = elastic_session_last_stats(s, &stats);
        if (bst == ELASTIC_OK)
            bst = elastic_session_recommend(s, h, offsets, batch, K, 1, got_k, vals);
        if (bst == ELASTIC_OK) {
            double nu = 0, du = 0, ns = 0, ds = 0;
            for (size_t i = 0; i < (size_t)batch * d; i++) {
                nu += ((double)got_u[i] - want_u[i]) * ((double)got_u[i] - want_u[i]);
                du += (double)want_u[i] * want_u[i];
            }
            for (size_t i = 0; i < (size_t)batch * nI; i++) {
                ns += ((double)got_s[i] - want_s[i]) * ((double)got_s[i] - want_s[i]);
                ds += (double)want_s[i] * want_s[i];
            }
            eu = sqrt(nu / du);
            es = sqrt(ns / ds);
            topk_ok = 1;
            for (int u = 0; u < batch; u++)
                topk_ok &= topk_agrees(want_k + u * K, got_k + u * K, want_s + (size_t)u * nI, K,
                                       1e-5, &ties);
        }
        int ok = bst == ELASTIC_OK && eu < 1e-5 && es < 1e-5 && topk_ok;
        r->checks++;
        if (!ok) r->failures++;
        if (bst != ELASTIC_OK)
            fprintf(r->out, "FAIL model %-22s %-12s error %s: %s\n", label, b->spec,
                    elastic_status_name(bst), elastic_last_error());
        else
            fprintf(r->out,
                    "%s model %-22s %-12s user vectors rel L2 %.2e, scores rel L2 %.2e, "
                    "top-%d %s (%d ties), %d fallback nodes\n",
                    ok ? "ok  " : "FAIL", label, b->spec, eu, es, K,
                    topk_ok ? "identical" : "DIFFERENT", ties, stats.fallback_nodes);
        if (r->json_models) {
            json_t *j =
                json_pack("{s:s, s:s, s:b, s:f, s:f, s:i, s:i}", "model", label, "backend", b->spec,
                          "pass", ok, "user_vectors_rel_l2", isfinite(eu) ? eu : -1.0,
                          "scores_rel_l2", isfinite(es) ? es : -1.0, "topk_ties", ties,
                          "fallback_nodes", stats.fallback_nodes);
            if (j) json_array_append_new(r->json_models, j);
        }
        elastic_session_free(s);
    }
    elastic_session_free(ref);
    elastic_model_free(m);
    free(h);
    free(offsets);
    free(want_u);
    free(got_u);
    free(want_s);
    free(got_s);
    return st;
}

/* whole_model == 2 (`--small-models`, for runs under emulation): the same
 * five models, the same code paths (every layer kind, streaming and
 * materialized attention, the memory, the output scores and top-K), with the
 * default hidden width, heads and experts but a shorter max_len, a smaller
 * catalogue and batch: the float64 reference session costs ~O(batch * n *
 * (n + items)), most of the suite's time under QEMU at full size. */
static void small_model(const conf_run *r, elastic_config *c, int *batch)
{
    if (r->o->whole_model != 2) return;
    if (c->max_len > 24) c->max_len = 24;
    if (c->num_items > 300) c->num_items = 300;
    *batch = 3;
}

static elastic_status run_models(conf_run *r)
{
    elastic_config c;
    int batch = 8;
    if (r->o->whole_model == 2)
        fprintf(r->out, "# whole models at reduced sizes (--small-models): max_len <= 24, "
                        "items <= 300, batch 3\n");
    elastic_config_default(&c);
    c.num_items = 3706; /* the defaults of spec section 1 with ML-1M's catalogue */
    small_model(r, &c, &batch);
    ELASTIC_TRY(run_model(r, "elastic (defaults)", &c, batch, ELASTIC_ATTENTION_STREAMING));
    ELASTIC_TRY(run_model(r, "elastic (materialized)", &c, batch, ELASTIC_ATTENTION_MATERIALIZED));
    elastic_config_default(&c);
    c.num_items = 500;
    c.max_len = 50;
    c.hidden = 12;
    c.heads = 3;
    c.layers = 1;
    c.experts = 1;
    c.mem_subkeys = 2;
    c.mem_topk = 2;
    c.mem_key = 6;
    batch = 8;
    small_model(r, &c, &batch);
    ELASTIC_TRY(run_model(r, "elastic (edge: d=12...)", &c, batch, ELASTIC_ATTENTION_STREAMING));
    elastic_config_default(&c);
    c.model = ELASTIC_MODEL_KIND_SASREC;
    c.num_items = 3706;
    batch = 8;
    small_model(r, &c, &batch);
    ELASTIC_TRY(run_model(r, "sasrec (defaults)", &c, batch, ELASTIC_ATTENTION_STREAMING));
    return run_model(r, "sasrec (materialized)", &c, batch, ELASTIC_ATTENTION_MATERIALIZED);
}

/* ---------------------------------------------------------------- report */

static const char *phase_name(elastic_op op)
{
    return elastic_op_is_training(op) ? "training" : "inference";
}

static void print_table(conf_run *r)
{
    fprintf(r->out, "\n%-17s %-9s", "op", "phase");
    for (int b = 0; b < r->n_backends; b++)
        fprintf(r->out, " %-23s", r->backends[b].spec);
    fprintf(r->out, " %s\n", "oracle self-check");
    int lacking = 0;
    for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
        if (!listed(r->o->ops, elastic_op_name((elastic_op)op))) continue;
        fprintf(r->out, "%-17s %-9s", elastic_op_name((elastic_op)op), phase_name((elastic_op)op));
        for (int b = 0; b < r->n_backends; b++) {
            const conf_cell *c = &r->cells[op][b];
            char cell[64];
            if (c->cases == 0)
                snprintf(cell, sizeof cell, "-");
            else if (c->unsupported == c->cases)
                snprintf(cell, sizeof cell, "not impl.: CPU fallback");
            else
                snprintf(cell, sizeof cell, "%s %d/%d %.2f",
                         c->passed + c->unsupported == c->cases ? "ok" : "FAIL", c->passed,
                         c->cases - c->unsupported, c->worst);
            lacking += c->cases && c->unsupported == c->cases;
            fprintf(r->out, " %-23s", cell);
        }
        if (!elastic_op_is_training((elastic_op)op))
            fprintf(r->out, " float64 kernel\n");
        else if (r->self_ok[op])
            fprintf(r->out, " %s %.2f\n", r->self_ok[op] > 0 ? "ok" : "FAIL", r->self_worst[op]);
        else
            fprintf(r->out, " -\n");
    }
    fprintf(r->out, "(cells: passed/run and the worst error as a fraction of its tolerance, over "
                    "every output;\n \"not impl.: CPU fallback\": the backend has no kernel for "
                    "the op, which is not a failure:\n sessions and trainers run it on the CPU "
                    "when fallback is allowed, else refuse;\n oracle self-check: the training "
                    "ops' reference against float64 finite differences,\n the worst error as a "
                    "fraction of what is allowed)\n");
    if (lacking)
        fprintf(r->out, "(%d op cells not implemented: coverage, not failures)\n", lacking);
    fprintf(r->out, "\ncoverage:\n");
    for (int b = 0; b < r->n_backends; b++) {
        fprintf(r->out, "  %-12s %s; implements:", r->backends[b].spec, r->backends[b].describe);
        int missing[2] = {0, 0};
        for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
            const conf_cell *c = &r->cells[op][b];
            if (c->cases && c->unsupported < c->cases)
                fprintf(r->out, " %s", elastic_op_name((elastic_op)op));
            missing[elastic_op_is_training((elastic_op)op)] +=
                c->cases && c->unsupported == c->cases;
        }
        for (int phase = 0; phase < 2; phase++) {
            if (!missing[phase]) continue;
            fprintf(r->out,
                    "; falls back to the CPU for %s ops:", phase ? "training" : "inference");
            for (int op = 0; op < ELASTIC_OP_COUNT; op++)
                if (elastic_op_is_training((elastic_op)op) == phase && r->cells[op][b].cases &&
                    r->cells[op][b].unsupported == r->cells[op][b].cases)
                    fprintf(r->out, " %s", elastic_op_name((elastic_op)op));
        }
        fprintf(r->out, "\n");
    }
}

static void print_json(conf_run *r)
{
    json_t *root = json_object(), *backends = json_array(), *ops = json_array();
    if (!root || !backends || !ops) {
        json_decref(root);
        json_decref(backends);
        json_decref(ops);
        return;
    }
    for (int b = 0; b < r->n_backends; b++)
        json_array_append_new(backends, json_pack("{s:s, s:s}", "spec", r->backends[b].spec,
                                                  "device", r->backends[b].describe));
    for (int op = 0; op < ELASTIC_OP_COUNT; op++)
        for (int b = 0; b < r->n_backends; b++) {
            const conf_cell *c = &r->cells[op][b];
            if (!c->cases) continue;
            json_array_append_new(
                ops,
                json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:I, s:f}", "op",
                          elastic_op_name((elastic_op)op), "phase", phase_name((elastic_op)op),
                          "backend", r->backends[b].spec, "cases", c->cases, "passed", c->passed,
                          "not_implemented", c->unsupported, "worst_err_over_tol",
                          isfinite(c->worst) ? c->worst : -1.0, "max_abs", c->max_abs, "max_rel",
                          c->max_rel, "max_ulp", (json_int_t)c->max_ulp, "nmse", c->nmse));
        }
    char seed_str[24];
    snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)r->o->seed);
    json_object_set_new(root, "seed", json_string(seed_str));
    json_object_set_new(root, "failures", json_integer(r->failures));
    json_object_set_new(root, "backends", backends);
    json_object_set_new(root, "ops", ops);
    json_object_set(root, "cases", r->json_cases);
    json_object_set(root, "self_checks", r->json_self);
    json_object_set(root, "models", r->json_models);
    if (r->json_perf) json_object_set(root, "perf", r->json_perf);
    json_dumpf(root, r->json_out, JSON_INDENT(1));
    fputc('\n', r->json_out);
    fputc('\n', r->out);
    json_decref(root);
}

/* Every name in a comma list is an op's. */
static elastic_status check_op_names(const char *list)
{
    for (const char *p = list; p && *p;) {
        size_t len = strcspn(p, ",");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), p);
        if (len && elastic_op_by_name(name) == ELASTIC_OP_COUNT)
            return elastic_error(ELASTIC_ERR_INVALID_ARG,
                                 "conformance: unknown op '%s' (see core/graph/ops.def)", name);
        p += len + (p[len] == ',');
    }
    return ELASTIC_OK;
}

elastic_status elastic_conformance_run(const elastic_conformance_options *options, FILE *out,
                                       int *failures)
{
    elastic_error_clear();
    if (!out || !failures)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_conformance_run: NULL argument");
    elastic_conformance_options defaults;
    elastic_conformance_options_default(&defaults);
    const elastic_conformance_options *o = options ? options : &defaults;
    ELASTIC_TRY(check_op_names(o->ops));
    conf_run *r = calloc(1, sizeof *r);
    if (!r) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    r->o = o;
    /* JSON goes to `out`; the human-readable lines then go to stderr. */
    r->out = r->o->json ? stderr : out;
    r->json_out = out;
    if (r->o->json) {
        r->json_cases = json_array();
        r->json_self = json_array();
        r->json_models = json_array();
        r->json_perf = r->o->perf ? json_array() : NULL;
    }
    fprintf(r->out, "# elastic conformance, seed %llu\n", (unsigned long long)r->o->seed);
    elastic_status st = ELASTIC_OK;
    if (r->o->backends) {
        for (const char *p = r->o->backends; st == ELASTIC_OK && *p;) {
            char spec[32];
            size_t len = strcspn(p, ",");
            snprintf(spec, sizeof spec, "%.*s", (int)(len < 31 ? len : 31), p);
            if (!strcmp(spec, "cpu:*"))
                all_cpu_variants(r);
            else
                st = add_backend(r, spec);
            p += len + (p[len] == ',');
        }
    } else {
        st = default_backends(r);
    }
    elastic_session_options ro;
    elastic_session_options_default(&ro);
    ro.backend_options = "cpu.isa=reference";
    if (st == ELASTIC_OK) st = elastic_cpu_backend_iface.init(&r->reference, &ro);
    /* Every op of ops.def, inference and training alike. */
    for (int op = 0; st == ELASTIC_OK && op < ELASTIC_OP_COUNT; op++) {
        if (!listed(r->o->ops, elastic_op_name((elastic_op)op))) continue;
        const conf_case *cases;
        int n = conf_cases_for((elastic_op)op, &cases);
        for (int i = 0; st == ELASTIC_OK && i < n; i++)
            if (r->o->case_index < 0 || r->o->case_index == i) st = run_case(r, &cases[i], i);
        if (st == ELASTIC_OK && elastic_op_is_training((elastic_op)op))
            st = run_self_check(r, (elastic_op)op);
    }
    if (st == ELASTIC_OK) print_table(r);
    if (st == ELASTIC_OK && r->o->whole_model) st = run_models(r);
    if (st == ELASTIC_OK) {
        fprintf(r->out, "\nconformance: %d passed, %d failed\n", r->checks - r->failures,
                r->failures);
        if (r->o->json) print_json(r);
    }
    *failures = r->failures;
    if (r->reference) r->reference->iface->free(r->reference);
    for (int b = 0; b < r->n_backends; b++)
        r->backends[b].iface->free(r->backends[b].be);
    json_decref(r->json_cases);
    json_decref(r->json_self);
    json_decref(r->json_models);
    json_decref(r->json_perf);
    free(r);
    return st;
}
