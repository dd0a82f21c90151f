/*
 * conformance.c - the cross-backend conformance suite behind
 * `elastic conformance` (see elastic.h and docs/spec/conformance.md).
 *
 * For every op case (conformance_cases.c) the inputs are drawn from a
 * counter-based generator with a printed seed, the CPU backend's float64
 * reference computes the expected outputs, and every chosen backend runs the
 * same node through its compute() entry with canaries after each output and
 * outputs poisoned beforehand. Each element must satisfy
 * |got - ref| <= tol (per-op, per-element tolerances); NaN and Inf must
 * appear exactly where the reference has them; a second run must give the
 * same bits. Whole ELASTIC and SASRec models then run through sessions and
 * are compared on user vectors, scores and top-K.
 */
#include "elastic.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/backend.h"
#include "conformance/conformance_cases.h"
#include "base/error.h"
#include "base/rng.h"

#define CANARY_BYTES 512
#define POISON 0x7FA5A5A5u /* a NaN: outputs nobody wrote never pass */
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
    double worst;   /* largest |err| / tol (0 = exact) */
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
    int failures, checks;
    json_t *json_cases, *json_models, *json_perf;
} conf_run;

void elastic_conformance_options_default(elastic_conformance_options *o)
{
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->seed = 20261122;
    o->case_index = -1;
    o->whole_model = 1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "conformance: backend '%s' is too long", spec);
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
    static const char *cpu[] = {"cpu:generic", "cpu:avx2", "cpu:avx512"};
    for (int i = 0; i < 3; i++)
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

typedef struct case_data {
    elastic_graph g;
    elastic_node node;
    int64_t in_numel[ELASTIC_MAX_INPUTS]; /* storage elements (COPY: base) */
    void *in_host[ELASTIC_MAX_INPUTS];
    int64_t out_numel[ELASTIC_MAX_OUTPUTS];
    void *ref_out[ELASTIC_MAX_OUTPUTS];
    double *tol;
} case_data;

static void case_free(case_data *cd)
{
    for (int i = 0; i < ELASTIC_MAX_INPUTS; i++) free(cd->in_host[i]);
    for (int i = 0; i < ELASTIC_MAX_OUTPUTS; i++) free(cd->ref_out[i]);
    free(cd->tol);
    elastic_graph_free(&cd->g);
}

static elastic_status case_build(const conf_case *c, uint64_t seed, case_data *cd)
{
    memset(cd, 0, sizeof *cd);
    elastic_graph_init(&cd->g);
    int ids[ELASTIC_MAX_INPUTS];
    for (int i = 0; i < c->n_inputs; i++) {
        const conf_input *in = &c->in[i];
        ids[i] = -1;
        if (in->absent) continue;
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        if (c->op == ELASTIC_OP_COPY) {
            int base = elastic_graph_input(&cd->g, name, in->dtype, 1, &in->base_numel);
            ids[i] = elastic_graph_view(&cd->g, base, in->ndim, in->shape, in->strides,
                                        in->view_offset);
            cd->in_numel[i] = in->base_numel;
        } else {
            ids[i] = elastic_graph_input(&cd->g, name, in->dtype, in->ndim, in->shape);
            cd->in_numel[i] = ids[i] >= 0 ? elastic_tensor_numel(&cd->g.tensors[ids[i]]) : 0;
        }
        cd->in_host[i] = malloc((size_t)cd->in_numel[i] * 4);
        if (!cd->in_host[i]) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
        conf_fill_input(c, i, cd->in_host[i], cd->in_numel[i], seed);
    }
    if (elastic_graph_node(&cd->g, c->op, ids, c->n_inputs, &c->params, c->label) < 0)
        return cd->g.status;
    cd->node = cd->g.nodes[0];
    for (int o = 0; o < cd->node.n_outputs; o++) {
        cd->out_numel[o] = elastic_tensor_numel(&cd->g.tensors[cd->node.outputs[o]]);
        cd->ref_out[o] = malloc((size_t)cd->out_numel[o] * 4);
        if (!cd->ref_out[o]) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    return ELASTIC_OK;
}

static elastic_tensor_ref ref_of(const elastic_graph *g, int id, elastic_buffer *buf)
{
    elastic_tensor_ref r;
    memset(&r, 0, sizeof r);
    if (id < 0) return r;
    const elastic_tensor *t = &g->tensors[id];
    r.dtype = t->dtype;
    r.ndim = t->ndim;
    memcpy(r.shape, t->shape, sizeof r.shape);
    memcpy(r.strides, t->strides, sizeof r.strides);
    r.buffer = buf;
    r.offset = t->kind == ELASTIC_TENSOR_KIND_VIEW ? (size_t)t->view_offset * 4 : 0;
    return r;
}

/* Runs the case's node on a backend: uploads inputs, poisons outputs and
 * canaries, computes, downloads. *canary_ok tells whether the guard bytes
 * after every output survived; *seconds is the median of `reps` timed runs
 * (0 = no timing). */
static elastic_status run_on(elastic_backend *be, case_data *cd, void **outs, int *canary_ok,
                             int reps, double *seconds)
{
    const elastic_backend_iface *f = be->iface;
    elastic_buffer *ib[ELASTIC_MAX_INPUTS] = {0}, *ob[ELASTIC_MAX_OUTPUTS] = {0};
    elastic_tensor_ref in[ELASTIC_MAX_INPUTS], out[ELASTIC_MAX_OUTPUTS];
    unsigned char *guard = NULL;
    elastic_status st = ELASTIC_OK;
    *canary_ok = 1;
    for (int i = 0; st == ELASTIC_OK && i < cd->node.n_inputs; i++) {
        in[i] = ref_of(&cd->g, cd->node.inputs[i], NULL);
        if (cd->node.inputs[i] < 0) continue;
        size_t bytes = (size_t)cd->in_numel[i] * 4;
        st = f->buffer_alloc(be, bytes, &ib[i]);
        if (st == ELASTIC_OK) st = f->upload(be, ib[i], 0, cd->in_host[i], bytes);
        in[i].buffer = ib[i];
    }
    size_t max_out = 0;
    for (int o = 0; o < cd->node.n_outputs; o++)
        if ((size_t)cd->out_numel[o] * 4 > max_out) max_out = (size_t)cd->out_numel[o] * 4;
    guard = malloc(max_out + CANARY_BYTES);
    if (!guard && st == ELASTIC_OK) st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    for (int o = 0; st == ELASTIC_OK && o < cd->node.n_outputs; o++) {
        size_t bytes = (size_t)cd->out_numel[o] * 4 + CANARY_BYTES;
        uint32_t poison = POISON;
        for (size_t k = 0; k + 4 <= bytes; k += 4) memcpy(guard + k, &poison, 4);
        st = f->buffer_alloc(be, bytes, &ob[o]);
        if (st == ELASTIC_OK) st = f->upload(be, ob[o], 0, guard, bytes);
        out[o] = ref_of(&cd->g, cd->node.outputs[o], ob[o]);
    }
    double *times = reps > 0 ? calloc((size_t)reps, sizeof *times) : NULL;
    for (int rep = 0; st == ELASTIC_OK && rep < (reps > 0 ? reps + 1 : 1); rep++) {
        double t0 = now();
        st = elastic_backend_compute(be, &cd->node, in, out);
        if (st == ELASTIC_OK) st = f->synchronize(be);
        if (rep > 0 && times) times[rep - 1] = now() - t0; /* rep 0 warms up */
    }
    if (seconds) {
        *seconds = 0;
        if (times && st == ELASTIC_OK) {
            for (int a = 0; a < reps; a++) /* insertion sort; reps is small */
                for (int b = a; b > 0 && times[b] < times[b - 1]; b--) {
                    double t = times[b];
                    times[b] = times[b - 1];
                    times[b - 1] = t;
                }
            *seconds = times[reps / 2];
        }
    }
    free(times);
    for (int o = 0; st == ELASTIC_OK && o < cd->node.n_outputs; o++) {
        size_t bytes = (size_t)cd->out_numel[o] * 4;
        st = f->download(be, ob[o], 0, guard, bytes + CANARY_BYTES);
        if (st != ELASTIC_OK) break;
        memcpy(outs[o], guard, bytes);
        for (size_t k = 0; k < CANARY_BYTES; k += 4) {
            uint32_t v;
            memcpy(&v, guard + bytes + k, 4);
            if (v != POISON) *canary_ok = 0;
        }
    }
    for (int i = 0; i < ELASTIC_MAX_INPUTS; i++)
        if (ib[i]) f->buffer_free(be, ib[i]);
    for (int o = 0; o < ELASTIC_MAX_OUTPUTS; o++)
        if (ob[o]) f->buffer_free(be, ob[o]);
    free(guard);
    return st;
}

static uint64_t ulp_distance(float a, float b)
{
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    int64_t ox = x < 0 ? (int64_t)INT32_MIN - x : x, oy = y < 0 ? (int64_t)INT32_MIN - y : y;
    return (uint64_t)(ox > oy ? ox - oy : oy - ox);
}

typedef struct compare_result {
    int ok;
    double worst, max_abs, max_rel, nmse;
    uint64_t max_ulp;
    int64_t at; /* the worst element */
    float got, want;
    char why[96];
} compare_result;

/* Output o of the case against the reference, with the NaN/Inf policy. */
static void compare(const case_data *cd, int o, const void *got_v, compare_result *res)
{
    const elastic_tensor *t = &cd->g.tensors[cd->node.outputs[o]];
    int64_t n = cd->out_numel[o];
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (t->dtype == ELASTIC_DTYPE_I32) {
            int32_t g = ((const int32_t *)got_v)[i], w = ((const int32_t *)cd->ref_out[o])[i];
            if (g != w && res->ok) {
                res->ok = 0;
                res->at = i;
                res->got = (float)g;
                res->want = (float)w;
                res->worst = INFINITY;
                snprintf(res->why, sizeof res->why, "element %lld is %d, reference %d",
                         (long long)i, (int)g, (int)w);
            }
            continue;
        }
        float g = ((const float *)got_v)[i], w = ((const float *)cd->ref_out[o])[i];
        double tol = o == 0 ? cd->tol[i] : 0.0; /* second outputs (top-K values) are exact */
        int special = isnan(w) || isinf(w) || isnan(g) || isinf(g);
        double err = special ? 0 : fabs((double)g - (double)w);
        double v = special ? ((isnan(w) && isnan(g)) || g == w ? 0 : INFINITY)
                   : err == 0 ? 0 : tol > 0 ? err / tol : INFINITY;
        if (!special) {
            num += err * err;
            den += (double)w * w;
            if (err > res->max_abs) res->max_abs = err;
            if (w != 0 && err / fabs((double)w) > res->max_rel) res->max_rel = err / fabs((double)w);
            uint64_t u = ulp_distance(g, w);
            if (u > res->max_ulp) res->max_ulp = u;
        }
        if (v > res->worst || (v == INFINITY && res->ok)) {
            res->worst = v;
            res->at = i;
            res->got = g;
            res->want = w;
        }
        if (v > 1 && res->ok) {
            res->ok = 0;
            snprintf(res->why, sizeof res->why, "element %lld is %.9g, reference %.9g (tol %.3g)",
                     (long long)i, (double)g, (double)w, tol);
        }
    }
    double nmse = den > 0 ? num / den : num;
    if (nmse > res->nmse) res->nmse = nmse;
}

static void report_case(conf_run *r, const conf_case *c, int index, uint64_t seed,
                        const conf_backend *b, const compare_result *res, int canary_ok,
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
            fprintf(r->out, "worst err/tol %.3g, max abs %.3g, max ulp %llu, nmse %.3g\n",
                    res->worst, res->max_abs, (unsigned long long)res->max_ulp, res->nmse);
        if (!ok)
            fprintf(r->out, "     replay: elastic conformance --backends %s --ops %s --case %d "
                            "--seed %llu\n",
                    b->spec, elastic_op_name(c->op), index, (unsigned long long)r->o->seed);
    }
    if (r->json_cases) {
        char seed_str[24]; /* a string: JSON readers lose 64-bit integers */
        snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)seed);
        json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:f, s:f, s:f, s:I, s:f}", "op",
                              elastic_op_name(c->op), "case", index, "label", c->label, "backend",
                              b->spec, "seed", seed_str, "pass", ok, "worst_err_over_tol",
                              isfinite(res->worst) ? res->worst : -1.0, "max_abs", res->max_abs,
                              "max_rel", res->max_rel, "max_ulp", (json_int_t)res->max_ulp, "nmse",
                              res->nmse);
        if (j) json_array_append_new(r->json_cases, j);
    }
}

static elastic_status run_case(conf_run *r, const conf_case *c, int index)
{
    uint64_t seed = elastic_rng_u64(r->o->seed, (uint64_t)c->op, (uint64_t)index);
    case_data cd;
    elastic_status st = case_build(c, seed, &cd);
    int canary_ok = 1;
    if (st == ELASTIC_OK) st = run_on(r->reference, &cd, cd.ref_out, &canary_ok, 0, NULL);
    if (st == ELASTIC_OK && !(cd.tol = malloc((size_t)cd.out_numel[0] * sizeof *cd.tol)))
        st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    if (st != ELASTIC_OK) {
        case_free(&cd);
        return st;
    }
    conf_tolerances(c, (const void *const *)cd.in_host, cd.ref_out[0], cd.out_numel[0], cd.tol);
    void *got[ELASTIC_MAX_OUTPUTS] = {0}, *again[ELASTIC_MAX_OUTPUTS] = {0};
    for (int o = 0; o < cd.node.n_outputs; o++) {
        got[o] = malloc((size_t)cd.out_numel[o] * 4);
        again[o] = malloc((size_t)cd.out_numel[o] * 4);
        if (!got[o] || !again[o]) st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    }
    for (int bi = 0; st == ELASTIC_OK && bi < r->n_backends; bi++) {
        conf_backend *b = &r->backends[bi];
        conf_cell *cell = &r->cells[c->op][bi];
        cell->cases++;
        if (!elastic_backend_supports(b->be, &cd.node)) {
            cell->unsupported++;
            continue;
        }
        int reps = r->o->perf ? 5 : 0, canary2 = 1, det = 1;
        double sec = 0;
        compare_result res = {.ok = 1};
        elastic_status bst = run_on(b->be, &cd, got, &canary_ok, reps, &sec);
        if (bst == ELASTIC_OK) bst = run_on(b->be, &cd, again, &canary2, 0, NULL);
        if (bst == ELASTIC_OK) {
            for (int o = 0; o < cd.node.n_outputs; o++) {
                compare(&cd, o, got[o], &res);
                det &= !memcmp(got[o], again[o], (size_t)cd.out_numel[o] * 4);
            }
        }
        report_case(r, c, index, seed, b, &res, canary_ok && canary2, det, bst);
        if (bst == ELASTIC_OK && res.ok && canary_ok && canary2 && det) cell->passed++;
        if (res.worst > cell->worst) cell->worst = res.worst;
        if (res.max_abs > cell->max_abs) cell->max_abs = res.max_abs;
        if (res.max_rel > cell->max_rel) cell->max_rel = res.max_rel;
        if (res.nmse > cell->nmse) cell->nmse = res.nmse;
        if (res.max_ulp > cell->max_ulp) cell->max_ulp = res.max_ulp;
        if (r->o->perf && bst == ELASTIC_OK && sec > 0) {
            double bytes = 0;
            for (int i = 0; i < cd.node.n_inputs; i++) bytes += 4.0 * (double)cd.in_numel[i];
            for (int o = 0; o < cd.node.n_outputs; o++) bytes += 4.0 * (double)cd.out_numel[o];
            double flops = elastic_node_flops(&cd.g, &cd.node);
            fprintf(r->out, "perf %-11s %-36s %-12s %10.3f ms %9.2f GFLOP/s %8.2f GB/s\n",
                    elastic_op_name(c->op), c->label, b->spec, sec * 1e3, flops / sec * 1e-9,
                    bytes / sec * 1e-9);
            if (r->json_perf) {
                json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:f, s:f}", "op",
                                      elastic_op_name(c->op), "label", c->label, "backend",
                                      b->spec, "ms", sec * 1e3, "gflops", flops / sec * 1e-9,
                                      "gbs", bytes / sec * 1e-9);
                if (j) json_array_append_new(r->json_perf, j);
            }
        }
    }
    for (int o = 0; o < ELASTIC_MAX_OUTPUTS; o++) {
        free(got[o]);
        free(again[o]);
    }
    case_free(&cd);
    return st;
}

/* --------------------------------------------------------- whole models */

static elastic_status random_histories(int batch, int64_t max_len, int64_t items, uint64_t seed,
                                       int32_t **h, int64_t *offsets)
{
    offsets[0] = 0;
    for (int b = 0; b < batch; b++) {
        int64_t len = b == 0 ? 1 : 1 + (int64_t)(elastic_rng_u64(seed, 1, (uint64_t)b) %
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
            json_t *j = json_pack("{s:s, s:s, s:b, s:f, s:f, s:i, s:i}", "model", label,
                                  "backend", b->spec, "pass", ok, "user_vectors_rel_l2",
                                  isfinite(eu) ? eu : -1.0, "scores_rel_l2",
                                  isfinite(es) ? es : -1.0, "topk_ties", ties, "fallback_nodes",
                                  stats.fallback_nodes);
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

static elastic_status run_models(conf_run *r)
{
    elastic_config c;
    elastic_config_default(&c);
    c.num_items = 3706; /* the defaults of spec section 1 with ML-1M's catalogue */
    ELASTIC_TRY(run_model(r, "elastic (defaults)", &c, 8, ELASTIC_ATTENTION_STREAMING));
    ELASTIC_TRY(run_model(r, "elastic (materialized)", &c, 8, ELASTIC_ATTENTION_MATERIALIZED));
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
    ELASTIC_TRY(run_model(r, "elastic (edge: d=12...)", &c, 8, ELASTIC_ATTENTION_STREAMING));
    elastic_config_default(&c);
    c.model = ELASTIC_MODEL_KIND_SASREC;
    c.num_items = 3706;
    ELASTIC_TRY(run_model(r, "sasrec (defaults)", &c, 8, ELASTIC_ATTENTION_STREAMING));
    return run_model(r, "sasrec (materialized)", &c, 8, ELASTIC_ATTENTION_MATERIALIZED);
}

/* ---------------------------------------------------------------- report */

static void print_table(conf_run *r)
{
    fprintf(r->out, "\n%-16s", "op");
    for (int b = 0; b < r->n_backends; b++) fprintf(r->out, " %-22s", r->backends[b].spec);
    fprintf(r->out, "\n");
    for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
        if (!listed(r->o->ops, elastic_op_name((elastic_op)op))) continue;
        if (elastic_op_is_training((elastic_op)op)) continue; /* no cases yet */
        fprintf(r->out, "%-16s", elastic_op_name((elastic_op)op));
        for (int b = 0; b < r->n_backends; b++) {
            const conf_cell *c = &r->cells[op][b];
            char cell[64];
            if (c->cases == 0)
                snprintf(cell, sizeof cell, "-");
            else if (c->unsupported == c->cases)
                snprintf(cell, sizeof cell, "not implemented");
            else
                snprintf(cell, sizeof cell, "%s %d/%d %.2f", c->passed + c->unsupported == c->cases ? "ok" : "FAIL",
                         c->passed, c->cases - c->unsupported, c->worst);
            fprintf(r->out, " %-22s", cell);
        }
        fprintf(r->out, "\n");
    }
    fprintf(r->out, "(cells: passed/run and the worst error as a fraction of its tolerance)\n\n");
    fprintf(r->out, "coverage:\n");
    for (int b = 0; b < r->n_backends; b++) {
        fprintf(r->out, "  %-12s %s; implements:", r->backends[b].spec, r->backends[b].describe);
        int missing = 0;
        for (int op = 0; op < ELASTIC_OP_COUNT; op++) {
            const conf_cell *c = &r->cells[op][b];
            if (c->cases && c->unsupported < c->cases)
                fprintf(r->out, " %s", elastic_op_name((elastic_op)op));
            missing += c->cases && c->unsupported == c->cases;
        }
        if (missing) {
            fprintf(r->out, "; falls back to the CPU for:");
            for (int op = 0; op < ELASTIC_OP_COUNT; op++)
                if (r->cells[op][b].cases && r->cells[op][b].unsupported == r->cells[op][b].cases)
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
                ops, json_pack("{s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:I, s:f}", "op",
                               elastic_op_name((elastic_op)op), "backend", r->backends[b].spec,
                               "cases", c->cases, "passed", c->passed, "not_implemented",
                               c->unsupported, "worst_err_over_tol",
                               isfinite(c->worst) ? c->worst : -1.0, "max_abs", c->max_abs,
                               "max_rel", c->max_rel, "max_ulp", (json_int_t)c->max_ulp, "nmse",
                               c->nmse));
        }
    char seed_str[24];
    snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)r->o->seed);
    json_object_set_new(root, "seed", json_string(seed_str));
    json_object_set_new(root, "failures", json_integer(r->failures));
    json_object_set_new(root, "backends", backends);
    json_object_set_new(root, "ops", ops);
    json_object_set(root, "cases", r->json_cases);
    json_object_set(root, "models", r->json_models);
    if (r->json_perf) json_object_set(root, "perf", r->json_perf);
    json_dumpf(root, r->json_out, JSON_INDENT(1));
    fputc('\n', r->json_out);
    fputc('\n', r->out);
    json_decref(root);
}

elastic_status elastic_conformance_run(const elastic_conformance_options *options, FILE *out,
                                       int *failures)
{
    elastic_error_clear();
    if (!out || !failures)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "elastic_conformance_run: NULL argument");
    elastic_conformance_options defaults;
    elastic_conformance_options_default(&defaults);
    conf_run *r = calloc(1, sizeof *r);
    if (!r) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    r->o = options ? options : &defaults;
    /* JSON goes to `out`; the human-readable lines then go to stderr. */
    r->out = r->o->json ? stderr : out;
    r->json_out = out;
    if (r->o->json) {
        r->json_cases = json_array();
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
    for (int op = 0; st == ELASTIC_OK && op < ELASTIC_OP_COUNT; op++) {
        if (!listed(r->o->ops, elastic_op_name((elastic_op)op))) continue;
        const conf_case *cases;
        int n = conf_cases_for((elastic_op)op, &cases);
        for (int i = 0; st == ELASTIC_OK && i < n; i++)
            if (r->o->case_index < 0 || r->o->case_index == i) st = run_case(r, &cases[i], i);
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
    for (int b = 0; b < r->n_backends; b++) r->backends[b].iface->free(r->backends[b].be);
    json_decref(r->json_cases);
    json_decref(r->json_models);
    json_decref(r->json_perf);
    free(r);
    return st;
}
