/*
 * serve_model.c - loading, warming up, describing, swapping and retiring
 * model generations (see serve_model.h).
 */
#include "serve_model.h"
#include "serve_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    ms->on_retired = NULL; /* reaped right here */
    serve_model_release(ms->current);
    ms->current = NULL;
    serve_models_reap(ms);
    pthread_mutex_destroy(&ms->lock);
    pthread_mutex_destroy(&ms->reload_lock);
}

int serve_models_reap(serve_models *ms)
{
    pthread_mutex_lock(&ms->lock);
    serve_model *list = ms->retired;
    ms->retired = NULL;
    pthread_mutex_unlock(&ms->lock);
    int n = 0;
    while (list) {
        serve_model *next = list->next_retired;
        if (list->generation) serve_log("model generation %u freed", list->generation);
        free_generation(list);
        list = next;
        n++;
    }
    return n;
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
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    serve_models *ms = m->owner;
    if (!ms || !ms->on_retired) { /* no control loop to hand it to */
        free_generation(m);
        return;
    }
    pthread_mutex_lock(&ms->lock);
    m->next_retired = ms->retired;
    ms->retired = m;
    pthread_mutex_unlock(&ms->lock);
    ms->on_retired(ms->on_retired_ctx);
}

static int cancelled(const serve_models *ms)
{
    return ms->cancel && atomic_load(ms->cancel);
}

/* Sets the message of an abandoned load; returns SERVE_LOAD_ABANDONED. */
static int abandon(char *err, size_t err_size)
{
    snprintf(err, err_size, "abandoned: the server is stopping");
    return SERVE_LOAD_ABANDONED;
}

/* 64-bit FNV-1a of the bytes of an open file, as "fnv1a64:<hex>". */
static int checksum_fd(int fd, const char *path, char *out, size_t size, char *err, size_t err_size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    unsigned char buf[65536];
    for (;;) {
        ssize_t got = read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            snprintf(err, err_size, "%s: %s", path, strerror(errno));
            return -1;
        }
        if (got == 0) break;
        for (ssize_t i = 0; i < got; i++)
            h = (h ^ buf[i]) * 0x100000001b3ull;
    }
    snprintf(out, size, "fnv1a64:%016llx", (unsigned long long)h);
    return 0;
}

/* The same file with the same contents, as far as stat can tell. */
static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The testing delay of a reload: a plain sleep, like a long step (a large
 * file loading) that cannot be interrupted; the cancel flag is checked after. */
static void debug_wait(int ms)
{
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* The file summed and loaded, the sum naming what was loaded: the file is
 * opened and summed, then loaded by its path, then its identity checked
 * against the open file's; a file replaced or rewritten in between is
 * loaded again. Returns 0, SERVE_LOAD_FAILED or SERVE_LOAD_ABANDONED. */
static int checksum_and_load(const serve_models *ms, serve_model *m, char *err, size_t err_size)
{
    for (int attempt = 1;; attempt++) {
        int fd = open(ms->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(err, err_size, "%s: %s", ms->path, strerror(errno));
            return SERVE_LOAD_FAILED;
        }
        struct stat before, after, now_at_path;
        int rc = fstat(fd, &before) ? SERVE_LOAD_FAILED : 0;
        if (rc)
            snprintf(err, err_size, "%s: %s", ms->path, strerror(errno));
        else
            rc = checksum_fd(fd, ms->path, m->checksum, sizeof m->checksum, err, err_size);
        if (!rc && ms->debug_delay_ms > 0 && ms->generations > 0) debug_wait(ms->debug_delay_ms);
        if (!rc && cancelled(ms)) rc = abandon(err, err_size);
        elastic_status st;
        if (!rc && (st = elastic_model_load(&m->model, ms->path)) != ELASTIC_OK) {
            snprintf(err, err_size, "%s: %s (%s)", ms->path, elastic_last_error(),
                     elastic_status_name(st));
            rc = SERVE_LOAD_FAILED;
        }
        int same = !rc && !fstat(fd, &after) && !stat(ms->path, &now_at_path) &&
                   same_file(&before, &after) && same_file(&before, &now_at_path);
        close(fd);
        if (rc || same) return rc;
        elastic_model_free(m->model);
        m->model = NULL;
        if (attempt == 3) {
            snprintf(err, err_size, "%s: the file kept changing while it was loaded (%d tries)",
                     ms->path, attempt);
            return SERVE_LOAD_FAILED;
        }
        serve_log("%s changed while it was loaded: loading it again", ms->path);
    }
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
static int warm_up(const serve_models *ms, serve_model *m, char *err, size_t err_size)
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
        if (cancelled(ms)) return abandon(err, err_size);
    }
    return 0;
}

/* A new generation in *out, or SERVE_LOAD_FAILED / SERVE_LOAD_ABANDONED. */
static int load_generation(serve_models *ms, serve_model **out, char *err, size_t err_size)
{
    *out = NULL;
    double t0 = now_monotonic();
    serve_model *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, err_size, "out of memory (model)");
        return SERVE_LOAD_FAILED;
    }
    atomic_init(&m->refs, 1); /* the holder's */
    elastic_status st;
    int rc = checksum_and_load(ms, m, err, err_size);
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
        if (!rc && cancelled(ms)) rc = abandon(err, err_size);
    }
    if (!rc) rc = warm_up(ms, m, err, err_size);
    if (!rc) rc = describe_plan(m, ms->plan_batch, err, err_size);
    if (!rc && cancelled(ms)) rc = abandon(err, err_size);
    if (rc) {
        free_generation(m);
        return rc == SERVE_LOAD_ABANDONED ? rc : SERVE_LOAD_FAILED;
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
    m->owner = ms;
    *out = m;
    return 0;
}

int serve_models_load(serve_models *ms, char *err, size_t err_size)
{
    pthread_mutex_lock(&ms->reload_lock);
    serve_model *m;
    int rc = load_generation(ms, &m, err, err_size);
    if (!rc) {
        m->generation = ++ms->generations;
        pthread_mutex_lock(&ms->lock);
        serve_model *old = ms->current;
        ms->current = m;
        pthread_mutex_unlock(&ms->lock);
        serve_model_release(old);
    }
    pthread_mutex_unlock(&ms->reload_lock);
    return rc;
}
