/*
 * serve_model.c - loading, warming up, describing and swapping model
 * generations (see serve_model.h).
 */
#include "serve_model.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void free_generation(serve_model *m)
{
    for (int i = 0; i < m->n_sessions; i++)
        elastic_session_free(m->sessions[i]);
    free(m->sessions);
    for (int i = 0; i < m->n_fallback; i++)
        free(m->fallback[i]);
    free(m->fallback);
    elastic_item_map_free(m->map);
    elastic_model_free(m->model);
    free(m);
}

int serve_models_init(serve_models *ms, const char *path, const elastic_session_options *session,
                      int n_sessions, int plan_batch)
{
    memset(ms, 0, sizeof *ms);
    ms->path = path;
    ms->session = *session;
    ms->n_sessions = n_sessions;
    ms->plan_batch = plan_batch;
    if (pthread_mutex_init(&ms->lock, NULL)) return -1;
    if (pthread_mutex_init(&ms->reload_lock, NULL)) {
        pthread_mutex_destroy(&ms->lock);
        return -1;
    }
    return 0;
}

void serve_models_free(serve_models *ms)
{
    serve_model_release(ms->current);
    ms->current = NULL;
    pthread_mutex_destroy(&ms->lock);
    pthread_mutex_destroy(&ms->reload_lock);
}

serve_model *serve_models_acquire(serve_models *ms)
{
    pthread_mutex_lock(&ms->lock);
    serve_model *m = ms->current;
    if (m) atomic_fetch_add(&m->refs, 1);
    pthread_mutex_unlock(&ms->lock);
    return m;
}

void serve_model_release(serve_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) free_generation(m);
}

/* 64-bit FNV-1a of the file's bytes, as "fnv1a64:<hex>". */
static int checksum_file(const char *path, char *out, size_t size, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < got; i++)
            h = (h ^ buf[i]) * 0x100000001b3ull;
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, err_size, "%s: read error", path);
        return -1;
    }
    snprintf(out, size, "fnv1a64:%016llx", (unsigned long long)h);
    return 0;
}

static int fail(char *err, size_t err_size, const char *what, elastic_status st)
{
    snprintf(err, err_size, "%s: %s (%s)", what, elastic_last_error(), elastic_status_name(st));
    return -1;
}

/* The plan of a full batch at the model's length, as `elastic plan` prints
 * it: its summary line and the names of the nodes that fell back. */
static int describe_plan(serve_model *m, int batch, char *err, size_t err_size)
{
    const elastic_config *c = elastic_model_config(m->model);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        snprintf(err, err_size, "out of memory (plan)");
        return -1;
    }
    int top_k = c->num_items < 10 ? (int)c->num_items : 10;
    elastic_status st = elastic_session_print_plan(m->sessions[0], batch, c->max_len, top_k, f);
    fclose(f);
    if (st != ELASTIC_OK) {
        free(text);
        return fail(err, err_size, "plan", st);
    }
    m->plan_batch = batch;
    m->plan_len = c->max_len;
    int rc = 0;
    for (char *line = text, *next; line && *line && !rc; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        char name[256];
        if (!strncmp(line, "plan: ", 6))
            snprintf(m->plan, sizeof m->plan, "%s", line + 6);
        else if (strstr(line, "[fallback to cpu]") &&
                 sscanf(line, "%*d %*s %*s %*s %255s", name) == 1) {
            char **more = realloc(m->fallback, sizeof *more * (size_t)(m->n_fallback + 1));
            char *copy = strdup(name);
            if (more) m->fallback = more;
            if (!more || !copy) {
                free(copy);
                snprintf(err, err_size, "out of memory (plan)");
                rc = -1;
            } else
                m->fallback[m->n_fallback++] = copy;
        }
    }
    free(text);
    return rc;
}

/* One batch on each session: plans built, kernels compiled, memory touched. */
static int warm_up(serve_model *m, char *err, size_t err_size)
{
    const elastic_config *c = elastic_model_config(m->model);
    int32_t item = 1, ids[10];
    int64_t offsets[2] = {0, 1};
    float scores[10];
    int top_k = c->num_items < 10 ? (int)c->num_items : 10;
    for (int i = 0; i < m->n_sessions; i++) {
        elastic_status st =
            elastic_session_recommend(m->sessions[i], &item, offsets, 1, top_k, 1, ids, scores);
        if (st != ELASTIC_OK) return fail(err, err_size, "warm-up", st);
    }
    return 0;
}

static serve_model *load_generation(const serve_models *ms, char *err, size_t err_size)
{
    double t0 = now_monotonic();
    serve_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_size, "out of memory (model)");
        return NULL;
    }
    atomic_init(&m->refs, 1); /* the holder's */
    elastic_status st;
    int rc = checksum_file(ms->path, m->checksum, sizeof m->checksum, err, err_size);
    if (!rc && (st = elastic_model_load(&m->model, ms->path)) != ELASTIC_OK)
        rc = fail(err, err_size, ms->path, st);
    if (!rc && elastic_model_metadata(m->model, "item_ids") &&
        (st = elastic_item_map_init(&m->map, m->model)) != ELASTIC_OK)
        rc = fail(err, err_size, ms->path, st);
    if (!rc && !(m->sessions = calloc((size_t)ms->n_sessions, sizeof *m->sessions))) {
        snprintf(err, err_size, "out of memory (sessions)");
        rc = -1;
    }
    for (int i = 0; !rc && i < ms->n_sessions; i++) {
        st = elastic_session_init(&m->sessions[i], m->model, &ms->session);
        if (st != ELASTIC_OK)
            rc = fail(err, err_size, "session", st);
        else
            m->n_sessions++;
    }
    if (!rc) rc = warm_up(m, err, err_size);
    if (!rc) rc = describe_plan(m, ms->plan_batch, err, err_size);
    if (rc) {
        free_generation(m);
        return NULL;
    }
    snprintf(m->backend, sizeof m->backend, "%s", elastic_session_backend(m->sessions[0]));
    for (int i = 0; i < elastic_model_tensor_count(m->model); i++) {
        int64_t shape[4], numel = 1;
        int ndim = 0;
        elastic_model_tensor(m->model, elastic_model_tensor_name(m->model, i), NULL, shape, &ndim);
        for (int d = 0; d < ndim; d++)
            numel *= shape[d];
        m->parameters += numel;
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    m->loaded_at = (double)wall.tv_sec + 1e-9 * (double)wall.tv_nsec;
    m->load_seconds = now_monotonic() - t0;
    return m;
}

int serve_models_load(serve_models *ms, char *err, size_t err_size)
{
    pthread_mutex_lock(&ms->reload_lock);
    serve_model *m = load_generation(ms, err, err_size);
    if (m) {
        m->generation = ++ms->generations;
        pthread_mutex_lock(&ms->lock);
        serve_model *old = ms->current;
        ms->current = m;
        pthread_mutex_unlock(&ms->lock);
        serve_model_release(old);
    }
    pthread_mutex_unlock(&ms->reload_lock);
    return m ? 0 : -1;
}
