/*
 * planner.c - backend assignment, transfer insertion and liveness-based
 * memory planning (see planner.h).
 */
#include "runtime/planner.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

/* The tensor that owns the storage of `id` (a view's source, else itself). */
static int storage_of(const elastic_graph *g, int id)
{
    return g->tensors[id].kind == ELASTIC_TENSOR_KIND_VIEW ? g->tensors[id].view_src : id;
}

static size_t tensor_bytes(const elastic_tensor *t)
{
    return (size_t)elastic_tensor_numel(t) * elastic_dtype_size(t->dtype);
}

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

static elastic_status push_step(elastic_plan *p, int *cap, const elastic_plan_step *s)
{
    if (p->n_steps == *cap) {
        int ncap = *cap ? 2 * *cap : 64;
        elastic_plan_step *n = realloc(p->steps, (size_t)ncap * sizeof *n);
        if (!n) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (plan)");
        p->steps = n;
        *cap = ncap;
    }
    p->steps[p->n_steps++] = *s;
    return ELASTIC_OK;
}

/* Grows the placement table to cover every tensor of g. */
static elastic_status grow_place(elastic_plan *p, const elastic_graph *g)
{
    if (p->n_place >= g->n_tensors) return ELASTIC_OK;
    elastic_placement *n = realloc(p->place, (size_t)g->n_tensors * sizeof *n);
    if (!n) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (plan)");
    memset(n + p->n_place, 0, (size_t)(g->n_tensors - p->n_place) * sizeof *n);
    p->place = n;
    p->n_place = g->n_tensors;
    return ELASTIC_OK;
}

/* Makes input `slot` of step `s` readable on backend `be`: weights are on
 * every backend; anything else is transferred once to a replica. `replica`
 * maps (storage tensor, backend) to its replica, -1 when none yet. */
static elastic_status localize_input(elastic_graph *g, elastic_plan *p, int *cap, int **replica,
                                     int *replica_cap, elastic_node *node, int slot, int be)
{
    int id = node->inputs[slot];
    if (id < 0) return ELASTIC_OK;
    int base = storage_of(g, id);
    const elastic_tensor *bt = &g->tensors[base];
    if (bt->kind == ELASTIC_TENSOR_KIND_WEIGHT) return ELASTIC_OK;
    if (p->place[base].backend == be) return ELASTIC_OK;

    if (*replica_cap < g->n_tensors * ELASTIC_PLAN_MAX_BACKENDS) {
        int ncap = 2 * g->n_tensors * ELASTIC_PLAN_MAX_BACKENDS;
        int *r = realloc(*replica, (size_t)ncap * sizeof *r);
        if (!r) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (plan)");
        for (int i = *replica_cap; i < ncap; i++) r[i] = -1;
        *replica = r;
        *replica_cap = ncap;
    }
    int *rep = &(*replica)[base * ELASTIC_PLAN_MAX_BACKENDS + be];
    if (*rep < 0) {
        char name[64];
        snprintf(name, sizeof name, "%.50s@%d", bt->name, be);
        int r = elastic_graph_input(g, name, bt->dtype, bt->ndim, bt->shape);
        if (r < 0) return g->status;
        g->tensors[r].kind = ELASTIC_TENSOR_KIND_INTERMEDIATE;
        ELASTIC_TRY(grow_place(p, g));
        p->place[r].backend = be;
        p->place[r].storage = ELASTIC_STORAGE_ARENA;
        elastic_plan_step t = {.kind = ELASTIC_STEP_KIND_TRANSFER, .backend = be, .src = base,
                               .dst = r, .graph_node = -1};
        ELASTIC_TRY(push_step(p, cap, &t));
        p->n_transfers++;
        *rep = r;
    }
    int local = *rep;
    if (id != base) { /* re-create the view on the replica */
        const elastic_tensor *v = &g->tensors[id];
        int64_t shape[ELASTIC_MAX_DIMS], strides[ELASTIC_MAX_DIMS];
        memcpy(shape, v->shape, sizeof shape);
        memcpy(strides, v->strides, sizeof strides);
        local = elastic_graph_view(g, local, v->ndim, shape, strides, v->view_offset);
        if (local < 0) return g->status;
        ELASTIC_TRY(grow_place(p, g));
    }
    node->inputs[slot] = local;
    return ELASTIC_OK;
}

/* Liveness-based placement of every arena tensor of one backend: greedy
 * first fit, largest tensors first (the TFLite arena strategy). */
typedef struct interval {
    int tensor;
    int first, last; /* steps during which the bytes must stay intact */
    size_t size, offset;
} interval;

static int by_size_desc(const void *a, const void *b)
{
    const interval *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->tensor - y->tensor;
}

static elastic_status place_arena(elastic_graph *g, elastic_plan *p, int be, size_t align)
{
    int n = 0;
    interval *iv = malloc((size_t)g->n_tensors * sizeof *iv);
    if (!iv) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (plan)");
    int *index = malloc((size_t)g->n_tensors * sizeof *index);
    if (!index) {
        free(iv);
        return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (plan)");
    }
    for (int t = 0; t < g->n_tensors; t++) {
        index[t] = -1;
        const elastic_tensor *tt = &g->tensors[t];
        if (p->place[t].storage != ELASTIC_STORAGE_ARENA || p->place[t].backend != be) continue;
        if (tt->kind == ELASTIC_TENSOR_KIND_VIEW) continue;
        index[t] = n;
        int from_host = tt->kind == ELASTIC_TENSOR_KIND_INPUT;
        iv[n] = (interval){.tensor = t, .first = from_host ? -1 : p->n_steps, .last = -1,
                           .size = align_up(tensor_bytes(tt), align)};
        n++;
    }
    /* Definition and last use of each storage tensor, views included. */
    for (int s = 0; s < p->n_steps; s++) {
        const elastic_plan_step *st = &p->steps[s];
        int outs[ELASTIC_MAX_OUTPUTS + 1], n_out = 0, ins[ELASTIC_MAX_INPUTS + 1], n_in = 0;
        if (st->kind == ELASTIC_STEP_KIND_TRANSFER) {
            outs[n_out++] = st->dst;
            ins[n_in++] = st->src;
        } else {
            for (int o = 0; o < st->node.n_outputs; o++) outs[n_out++] = st->node.outputs[o];
            for (int i = 0; i < st->node.n_inputs; i++)
                if (st->node.inputs[i] >= 0) ins[n_in++] = st->node.inputs[i];
        }
        for (int i = 0; i < n_out; i++) {
            int k = index[storage_of(g, outs[i])];
            if (k >= 0 && iv[k].first > s) iv[k].first = s;
            if (k >= 0 && iv[k].last < s) iv[k].last = s;
        }
        for (int i = 0; i < n_in; i++) {
            int k = index[storage_of(g, ins[i])];
            if (k >= 0 && iv[k].last < s) iv[k].last = s;
        }
    }
    for (int k = 0; k < n; k++) {
        if (g->tensors[iv[k].tensor].is_output) iv[k].last = p->n_steps;
        if (iv[k].first > iv[k].last) iv[k].first = iv[k].last; /* defined, never read */
        p->naive_bytes += iv[k].size;
        size_t bytes = tensor_bytes(&g->tensors[iv[k].tensor]);
        if (bytes > p->max_tensor_bytes) p->max_tensor_bytes = bytes;
    }
    qsort(iv, (size_t)n, sizeof *iv, by_size_desc);
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        /* Lowest offset that overlaps no placed tensor alive at the same time:
         * try 0 and the end of every conflicting tensor, in increasing order. */
        size_t best = 0;
        for (int again = 1; again;) {
            again = 0;
            for (int j = 0; j < k; j++) {
                int overlap_time = iv[j].first <= iv[k].last && iv[k].first <= iv[j].last;
                int overlap_mem = iv[j].offset < best + iv[k].size && best < iv[j].offset + iv[j].size;
                if (overlap_time && overlap_mem) {
                    best = iv[j].offset + iv[j].size;
                    again = 1;
                }
            }
        }
        iv[k].offset = best;
        p->place[iv[k].tensor].offset = best;
        if (best + iv[k].size > total) total = best + iv[k].size;
    }
    p->arena_size[be] = total;
    free(iv);
    free(index);
    return ELASTIC_OK;
}

elastic_status elastic_plan_build(elastic_graph *g, elastic_backend *primary,
                                  elastic_backend *fallback, const void *weights_base,
                                  elastic_plan *p)
{
    memset(p, 0, sizeof *p);
    if (g->status != ELASTIC_OK) return g->status;
    p->backends[p->n_backends++] = primary;
    if (fallback && fallback != primary) p->backends[p->n_backends++] = fallback;
    int cap = 0, *replica = NULL, replica_cap = 0;
    elastic_status st = grow_place(p, g);

    /* Weights and views: where their storage is; inputs: on the backend of
     * their first consumer (assigned below). */
    for (int t = 0; st == ELASTIC_OK && t < g->n_tensors; t++) {
        const elastic_tensor *tt = &g->tensors[t];
        if (tt->kind == ELASTIC_TENSOR_KIND_WEIGHT) {
            p->place[t].storage = ELASTIC_STORAGE_WEIGHTS;
            p->place[t].offset = (size_t)((const char *)tt->host_data - (const char *)weights_base);
        }
        p->place[t].backend = -1;
    }
    int n_nodes = g->n_nodes;
    for (int i = 0; st == ELASTIC_OK && i < n_nodes; i++) {
        elastic_plan_step step = {.kind = ELASTIC_STEP_KIND_COMPUTE, .graph_node = i,
                                  .node = g->nodes[i]};
        int be = 0;
        if (!elastic_backend_supports(primary, &g->nodes[i])) {
            if (p->n_backends < 2 ||
                !elastic_backend_supports(p->backends[1], &g->nodes[i])) {
                st = elastic_error(ELASTIC_ERR_UNSUPPORTED,
                                   "backend '%s' does not support op %s (node '%s') and CPU "
                                   "fallback is %s",
                                   primary->iface->name, elastic_op_name(g->nodes[i].op),
                                   g->nodes[i].name, fallback ? "unable to run it" : "not allowed");
                break;
            }
            be = 1;
            step.fallback = 1;
            p->n_fallback++;
        }
        step.backend = be;
        for (int k = 0; st == ELASTIC_OK && k < step.node.n_inputs; k++) {
            int id = step.node.inputs[k];
            if (id < 0) continue;
            int base = storage_of(g, id);
            if (g->tensors[base].kind == ELASTIC_TENSOR_KIND_INPUT && p->place[base].backend < 0) {
                p->place[base].backend = be;
                p->place[base].storage = ELASTIC_STORAGE_ARENA;
            }
            st = localize_input(g, p, &cap, &replica, &replica_cap, &step.node, k, be);
        }
        for (int o = 0; st == ELASTIC_OK && o < step.node.n_outputs; o++) {
            p->place[step.node.outputs[o]].backend = be;
            p->place[step.node.outputs[o]].storage = ELASTIC_STORAGE_ARENA;
        }
        if (st == ELASTIC_OK) st = push_step(p, &cap, &step);
        if (st == ELASTIC_OK) p->flops += elastic_node_flops(g, &g->nodes[i]);
    }
    free(replica);
    if (st == ELASTIC_OK) st = grow_place(p, g);
    /* Views take the placement of their storage. */
    for (int t = 0; st == ELASTIC_OK && t < g->n_tensors; t++) {
        const elastic_tensor *tt = &g->tensors[t];
        if (tt->kind != ELASTIC_TENSOR_KIND_VIEW) continue;
        p->place[t] = p->place[tt->view_src];
    }
    for (int b = 0; st == ELASTIC_OK && b < p->n_backends; b++) {
        size_t align = p->backends[b]->alignment < 64 ? 64 : p->backends[b]->alignment;
        st = place_arena(g, p, b, align);
    }
    /* View offsets: their storage's arena offset plus their own. */
    for (int t = 0; st == ELASTIC_OK && t < g->n_tensors; t++) {
        const elastic_tensor *tt = &g->tensors[t];
        if (tt->kind == ELASTIC_TENSOR_KIND_VIEW) {
            p->place[t] = p->place[tt->view_src];
            p->place[t].offset += (size_t)tt->view_offset * elastic_dtype_size(tt->dtype);
        }
    }
    if (st != ELASTIC_OK) elastic_plan_free(p);
    return st;
}

void elastic_plan_free(elastic_plan *p)
{
    free(p->steps);
    free(p->place);
    memset(p, 0, sizeof *p);
}

elastic_tensor_ref elastic_plan_ref(const elastic_graph *g, const elastic_plan *plan, int id,
                                    elastic_buffer *arena, elastic_buffer *weights)
{
    elastic_tensor_ref r;
    memset(&r, 0, sizeof r);
    if (id < 0) return r;
    const elastic_tensor *t = &g->tensors[id];
    r.dtype = t->dtype;
    r.ndim = t->ndim;
    memcpy(r.shape, t->shape, sizeof r.shape);
    memcpy(r.strides, t->strides, sizeof r.strides);
    r.buffer = plan->place[id].storage == ELASTIC_STORAGE_WEIGHTS ? weights : arena;
    r.offset = plan->place[id].offset;
    return r;
}

void elastic_plan_print(const elastic_graph *g, const elastic_plan *p, FILE *out)
{
    char shape[64];
    fprintf(out, "plan: %d steps, %d fallback nodes, %d transfers, %.3f GFLOP\n", p->n_steps,
            p->n_fallback, p->n_transfers, p->flops * 1e-9);
    for (int b = 0; b < p->n_backends; b++)
        fprintf(out, "  backend %d: %s, arena %.2f MiB\n", b,
                p->backends[b]->iface->describe(p->backends[b]),
                (double)p->arena_size[b] / (1024.0 * 1024.0));
    fprintf(out, "  arena with liveness reuse %.2f MiB, without %.2f MiB\n",
            (double)(p->arena_size[0] + (p->n_backends > 1 ? p->arena_size[1] : 0)) /
                (1024.0 * 1024.0),
            (double)p->naive_bytes / (1024.0 * 1024.0));
    for (int s = 0; s < p->n_steps; s++) {
        const elastic_plan_step *st = &p->steps[s];
        const char *be = p->backends[st->backend]->iface->name;
        if (st->kind == ELASTIC_STEP_KIND_TRANSFER) {
            fprintf(out, "%4d  %-8s %-12s %-22s %s -> %s\n", s, be, "transfer",
                    elastic_shape_str(&g->tensors[st->dst], shape, sizeof shape),
                    g->tensors[st->src].name, g->tensors[st->dst].name);
            continue;
        }
        int o = st->node.outputs[0];
        fprintf(out, "%4d  %-8s %-12s %-22s %-28s @%zu%s\n", s, be, elastic_op_name(st->node.op),
                elastic_shape_str(&g->tensors[o], shape, sizeof shape), st->node.name,
                p->place[o].offset, st->fallback ? "  [fallback to cpu]" : "");
    }
}
