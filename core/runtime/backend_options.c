/*
 * backend_options.c - parsing the backend_options text of the session
 * options: comma-separated "backend.key=value" pairs (backend_options.h).
 */
#include "runtime/backend_options.h"

#include "base/error.h"

#include <stdio.h>
#include <string.h>

static const char *const backend_names[] = {"cpu", "opencl", "cuda"};

/* One "backend.key=value" pair of the text. */
typedef struct option_pair {
    const char *backend, *key, *value;
    size_t backend_len, key_len, value_len;
} option_pair;

/* Splits the pair text[0..len) into its parts; 0 when it is malformed. */
static int split_pair(const char *text, size_t len, option_pair *p)
{
    const char *dot = memchr(text, '.', len), *eq = memchr(text, '=', len);
    if (!dot || !eq || dot > eq) return 0;
    p->backend = text;
    p->backend_len = (size_t)(dot - text);
    p->key = dot + 1;
    p->key_len = (size_t)(eq - dot - 1);
    p->value = eq + 1;
    p->value_len = len - (size_t)(eq + 1 - text);
    if (!p->backend_len || !p->key_len || !p->value_len) return 0;
    for (size_t i = 0; i < p->key_len; i++) {
        char c = p->key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
    }
    return 1;
}

static int is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && !memcmp(s, word, len);
}

/* Calls visit for each pair; a malformed pair or unknown backend is an
 * error naming it. visit returns a status; the walk stops at an error. */
typedef elastic_status (*pair_visitor)(const option_pair *p, void *ctx);

static elastic_status walk(const char *text, pair_visitor visit, void *ctx)
{
    for (const char *s = text; s && *s;) {
        size_t len = strcspn(s, ",");
        option_pair p;
        if (!split_pair(s, len, &p))
            return elastic_error(ELASTIC_ERR_INVALID_ARG,
                                 "backend option '%.*s' is not of the form backend.key=value",
                                 (int)len, s);
        int known = 0;
        for (size_t i = 0; i < sizeof backend_names / sizeof *backend_names; i++)
            known |= is(p.backend, p.backend_len, backend_names[i]);
        if (!known)
            return elastic_error(
                ELASTIC_ERR_INVALID_ARG,
                "backend option '%.*s': unknown backend '%.*s' (cpu, opencl, cuda)", (int)len, s,
                (int)p.backend_len, p.backend);
        if (visit) ELASTIC_TRY(visit(&p, ctx));
        s += len;
        if (*s == ',') {
            s++;
            if (!*s)
                return elastic_error(ELASTIC_ERR_INVALID_ARG, "backend options end with a comma");
        }
    }
    return ELASTIC_OK;
}

elastic_status elastic_session_options_read(elastic_session_options *dst,
                                            const elastic_session_options *src)
{
    elastic_session_options_default(dst);
    if (!src) return ELASTIC_OK;
    if (src->struct_size != sizeof *src)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "session options of %zu bytes, but this library's are %zu: start "
                             "from elastic_session_options_default() with the header of "
                             "libelastic %s",
                             src->struct_size, sizeof *src, elastic_version());
    *dst = *src;
    return walk(dst->backend_options, NULL, NULL);
}

typedef struct find_ctx {
    const char *backend, *key;
    const option_pair *found;
    option_pair last;
} find_ctx;

static elastic_status find_visit(const option_pair *p, void *ctx)
{
    find_ctx *f = ctx;
    if (is(p->backend, p->backend_len, f->backend) && is(p->key, p->key_len, f->key)) {
        f->last = *p;
        f->found = &f->last;
    }
    return ELASTIC_OK;
}

elastic_status elastic_backend_option(const char *text, const char *backend, const char *key,
                                      char *value, size_t size, int *found)
{
    find_ctx f = {.backend = backend, .key = key};
    *found = 0;
    ELASTIC_TRY(walk(text, find_visit, &f));
    if (!f.found) return ELASTIC_OK;
    if (f.found->value_len >= size)
        return elastic_error(ELASTIC_ERR_INVALID_ARG,
                             "backend option %s.%s: value too long (%zu bytes, at most %zu)",
                             backend, key, f.found->value_len, size - 1);
    memcpy(value, f.found->value, f.found->value_len);
    value[f.found->value_len] = '\0';
    *found = 1;
    return ELASTIC_OK;
}

typedef struct check_ctx {
    const char *backend;
    const char *const *known;
} check_ctx;

static elastic_status check_visit(const option_pair *p, void *ctx)
{
    const check_ctx *c = ctx;
    if (!is(p->backend, p->backend_len, c->backend)) return ELASTIC_OK;
    for (const char *const *k = c->known; *k; k++)
        if (is(p->key, p->key_len, *k)) return ELASTIC_OK;
    char list[128] = "";
    for (const char *const *k = c->known; *k; k++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s.%s", used ? ", " : "", c->backend, *k);
    }
    return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown backend option '%s.%.*s' (known: %s)",
                         c->backend, (int)p->key_len, p->key, list[0] ? list : "none");
}

elastic_status elastic_backend_options_check(const char *text, const char *backend,
                                             const char *const *known)
{
    check_ctx c = {backend, known};
    return walk(text, check_visit, &c);
}
