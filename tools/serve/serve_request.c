/*
 * serve_request.c - request bodies into works, works into response bodies,
 * errors into error bodies (see serve_request.h). jansson parses (depth,
 * UTF-8, duplicate keys and integer overflow are checked there); every
 * field is then checked for type and range before anything is allocated
 * beyond the limits.
 */
#include "serve_request.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void serve_limits_default(serve_limits *l)
{
    l->max_body = 4u << 20;
    l->max_users = 256;
    l->max_history = 10000;
    l->max_top_k = 1000;
    l->max_candidates = 10000;
}

int serve_error_set(serve_error *err, int status, const char *code, const char *fmt, ...)
{
    err->status = status;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* Printable ASCII only: messages quote client input and go into JSON and logs. */
    for (char *p = err->message; *p; p++)
        if (!isprint((unsigned char)*p)) *p = '?';
    return -1;
}

/* ---------------------------------------------------------------- parsing */

typedef struct parser {
    const serve_vocab *vocab;
    const serve_limits *limits;
    serve_error *err;
} parser;

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction or exponent";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* An item name for a message: at most 48 characters, printable ASCII. */
static void quote(char *out, size_t size, const char *name)
{
    size_t n = 0;
    for (; *name && n + 4 < size && n < 48; name++)
        out[n++] = isprint((unsigned char)*name) ? *name : '?';
    if (*name && n + 4 < size) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Where an item is, for a message: "history[3]", "histories[2][0]". Made
 * only for a refusal: parsing a valid body formats nothing per item. */
typedef struct item_pos {
    const char *field;
    int single;
    size_t row, index;
} item_pos;

static const char *pos_text(const item_pos *pos, char *buf, size_t size)
{
    if (pos->single)
        snprintf(buf, size, "%s[%zu]", pos->field, pos->index);
    else
        snprintf(buf, size, "%s[%zu][%zu]", pos->field, pos->row, pos->index);
    return buf;
}

/* The decimal text of v, written backwards from `end` (at least 21 bytes
 * of room before it): what snprintf("%lld") gives, at a fraction of its cost. */
static const char *integer_text(char *end, json_int_t v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    char *p = end;
    *--p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0) *--p = '-';
    return p;
}

/* One item id into the model's id; `pos` names it in a refusal. */
static int read_item(parser *p, const json_t *v, const item_pos *pos, int32_t *out)
{
    char where[64];
    const serve_vocab *voc = p->vocab;
    if (voc->map) {
        char number[32], shown[64];
        const char *name;
        if (json_is_string(v))
            name = json_string_value(v);
        else if (json_is_integer(v))
            name = integer_text(number + sizeof number, json_integer_value(v));
        else
            return serve_error_set(p->err, 400, "invalid_request",
                                   "%s must be an item id (a string or an integer), got %s",
                                   pos_text(pos, where, sizeof where), type_name(v));
        int32_t id = elastic_item_map_id(voc->map, name);
        if (id == 0) {
            quote(shown, sizeof shown, name);
            return serve_error_set(p->err, 400, "unknown_item",
                                   "%s: item '%s' is not in the model's item map",
                                   pos_text(pos, where, sizeof where), shown);
        }
        *out = id;
        return 0;
    }
    if (!json_is_integer(v))
        return serve_error_set(p->err, 400, "invalid_request",
                               "%s must be an integer item id in 1..%lld (the model has no item "
                               "map), got %s",
                               pos_text(pos, where, sizeof where), (long long)voc->num_items,
                               type_name(v));
    json_int_t id = json_integer_value(v);
    if (id < 1 || id > voc->num_items)
        return serve_error_set(p->err, 400, "unknown_item",
                               "%s: item %" JSON_INTEGER_FORMAT " is outside 1..%lld",
                               pos_text(pos, where, sizeof where), id, (long long)voc->num_items);
    *out = (int32_t)id;
    return 0;
}

/* Rows of items in compressed-row form. single: `value` is one row (the
 * "history" form), else an array of rows. limit_rows, limit_len: the flags'
 * limits (names in flag_rows, flag_len); allow_empty: a row may be empty. */
typedef struct rows_spec {
    const char *field;
    int single;
    int limit_rows, limit_len;
    const char *flag_rows, *flag_len;
    int allow_empty;
} rows_spec;

static int read_rows(parser *p, const json_t *value, const rows_spec *spec, int32_t **items,
                     int64_t **offsets, int *n_rows)
{
    *items = NULL;
    *offsets = NULL;
    size_t rows = spec->single ? 1 : 0, total = 0;
    if (!json_is_array(value))
        return serve_error_set(p->err, 400, "invalid_request", "%s must be an array, got %s",
                               spec->field, type_name(value));
    if (!spec->single) {
        rows = json_array_size(value);
        if (rows == 0)
            return serve_error_set(p->err, 400, "invalid_request", "%s is empty", spec->field);
        if (rows > (size_t)spec->limit_rows)
            return serve_error_set(p->err, 400, "limit_exceeded",
                                   "%s has %zu users; the limit is %d (%s)", spec->field, rows,
                                   spec->limit_rows, spec->flag_rows);
    }
    /* Shapes and sizes first, so that nothing is allocated for a refusal. */
    for (size_t r = 0; r < rows; r++) {
        const json_t *row = spec->single ? value : json_array_get(value, r);
        if (!json_is_array(row))
            return serve_error_set(p->err, 400, "invalid_request",
                                   "%s[%zu] must be an array of item ids, got %s", spec->field, r,
                                   type_name(row));
        size_t len = json_array_size(row);
        if ((len == 0 && !spec->allow_empty) || len > (size_t)spec->limit_len) {
            char where[64];
            if (spec->single)
                snprintf(where, sizeof where, "%s", spec->field);
            else
                snprintf(where, sizeof where, "%s[%zu]", spec->field, r);
            if (len == 0)
                return serve_error_set(p->err, 400, "invalid_request", "%s is empty", where);
            return serve_error_set(p->err, 400, "limit_exceeded",
                                   "%s has %zu items; the limit is %d (%s)", where, len,
                                   spec->limit_len, spec->flag_len);
        }
        total += len;
    }
    *items = malloc(sizeof **items * (total ? total : 1));
    *offsets = malloc(sizeof **offsets * (rows + 1));
    if (!*items || !*offsets) {
        free(*items);
        free(*offsets);
        *items = NULL;
        *offsets = NULL;
        return serve_error_set(p->err, 503, "out_of_memory", "out of memory reading %s",
                               spec->field);
    }
    size_t k = 0;
    (*offsets)[0] = 0;
    for (size_t r = 0; r < rows; r++) {
        const json_t *row = spec->single ? value : json_array_get(value, r);
        size_t len = json_array_size(row);
        for (size_t i = 0; i < len; i++) {
            item_pos pos = {spec->field, spec->single, r, i};
            if (read_item(p, json_array_get(row, i), &pos, &(*items)[k++])) {
                free(*items);
                free(*offsets);
                *items = NULL;
                *offsets = NULL;
                return -1;
            }
        }
        (*offsets)[r + 1] = (int64_t)k;
    }
    *n_rows = (int)rows;
    return 0;
}

static int read_top_k(parser *p, const json_t *v, int *out)
{
    if (!json_is_integer(v))
        return serve_error_set(p->err, 400, "invalid_request", "top_k must be an integer, got %s",
                               type_name(v));
    json_int_t k = json_integer_value(v);
    if (k < 1)
        return serve_error_set(p->err, 400, "invalid_request",
                               "top_k must be at least 1, got %" JSON_INTEGER_FORMAT, k);
    if (k > p->limits->max_top_k)
        return serve_error_set(p->err, 400, "limit_exceeded",
                               "top_k %" JSON_INTEGER_FORMAT " is over the limit %d (--max-top-k)",
                               k, p->limits->max_top_k);
    if (k > p->vocab->num_items)
        return serve_error_set(p->err, 400, "invalid_request",
                               "top_k %" JSON_INTEGER_FORMAT " is over the model's %lld items", k,
                               (long long)p->vocab->num_items);
    *out = (int)k;
    return 0;
}

static int check_fields(parser *p, const json_t *root, serve_op endpoint)
{
    static const char *const recommend[] = {"history",         "histories",  "top_k",
                                            "exclude_history", "candidates", NULL};
    static const char *const vectors[] = {"history", "histories", NULL};
    const char *const *known = endpoint == SERVE_OP_USER_VECTORS ? vectors : recommend;
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)root, key, value)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = !strcmp(key, known[i]);
        if (!ok) {
            char shown[64];
            quote(shown, sizeof shown, key);
            return serve_error_set(p->err, 400, "invalid_request", "unknown field '%s' (%s)", shown,
                                   endpoint == SERVE_OP_USER_VECTORS
                                       ? "known: history, histories"
                                       : "known: history, histories, top_k, exclude_history, "
                                         "candidates");
        }
    }
    return 0;
}

static int parse_root(parser *p, const json_t *root, serve_op endpoint, serve_work *w)
{
    const serve_limits *lim = p->limits;
    if (!json_is_object(root))
        return serve_error_set(p->err, 400, "invalid_request",
                               "the body must be a JSON object, got %s", type_name(root));
    if (check_fields(p, root, endpoint)) return -1;
    const json_t *one = json_object_get(root, "history");
    const json_t *many = json_object_get(root, "histories");
    if (!one == !many)
        return serve_error_set(p->err, 400, "invalid_request",
                               one ? "give \"history\" or \"histories\", not both"
                                   : "missing \"histories\" (or \"history\" for one user)");
    rows_spec hs = {one ? "history" : "histories",
                    one != NULL,
                    lim->max_users,
                    lim->max_history,
                    "--max-users",
                    "--max-history",
                    0};
    if (read_rows(p, one ? one : many, &hs, &w->items, &w->offsets, &w->users)) return -1;
    if (endpoint == SERVE_OP_USER_VECTORS) {
        w->op = SERVE_OP_USER_VECTORS;
        return 0;
    }
    w->op = SERVE_OP_RECOMMEND;
    /* The default, 10, within the model's items and --max-top-k. */
    w->top_k = p->vocab->num_items < 10 ? (int)p->vocab->num_items : 10;
    if (w->top_k > p->limits->max_top_k) w->top_k = p->limits->max_top_k;
    w->exclude_history = 1;
    const json_t *v;
    if ((v = json_object_get(root, "top_k")) && read_top_k(p, v, &w->top_k)) return -1;
    if ((v = json_object_get(root, "exclude_history"))) {
        if (!json_is_boolean(v))
            return serve_error_set(p->err, 400, "invalid_request",
                                   "exclude_history must be true or false, got %s", type_name(v));
        w->exclude_history = json_is_true(v);
    }
    if ((v = json_object_get(root, "candidates"))) {
        rows_spec cs = {"candidates",
                        one != NULL,
                        lim->max_users,
                        lim->max_candidates,
                        "--max-users",
                        "--max-candidates",
                        1};
        int rows = 0;
        if (!one && json_is_array(v) && json_array_size(v) != (size_t)w->users)
            return serve_error_set(p->err, 400, "invalid_request",
                                   "candidates has %zu rows for %d users (one row per user)",
                                   json_array_size(v), w->users);
        if (read_rows(p, v, &cs, &w->candidates, &w->cand_offsets, &rows)) return -1;
        w->op = SERVE_OP_RANK;
    }
    return 0;
}

int serve_request_parse(serve_op endpoint, const char *body, size_t len, const serve_vocab *vocab,
                        const serve_limits *limits, serve_work **out, serve_error *err)
{
    *out = NULL;
    parser p = {vocab, limits, err};
    if (len > limits->max_body)
        return serve_error_set(err, 413, "body_too_large",
                               "the body has %zu bytes; the limit is %zu (--max-body)", len,
                               limits->max_body);
    if (len == 0)
        return serve_error_set(err, 400, "invalid_request", "the body is empty (JSON expected)");
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return serve_error_set(err, 400, "malformed_json",
                               "malformed JSON at line %d column %d: %s", je.line, je.column,
                               je.text);
    serve_work *w = serve_work_new();
    int rc = w ? parse_root(&p, root, endpoint, w)
               : serve_error_set(err, 503, "out_of_memory", "out of memory (request)");
    json_decref(root);
    if (rc) {
        serve_work_free(w);
        return -1;
    }
    *out = w;
    return 0;
}

/* ---------------------------------------------------------------- rendering */

/* An item name that reads as a canonical integer of the 64-bit range ("17",
 * "-3", "9223372036854775807"; not "017", "-0" or "+5") is written as a
 * JSON number: ids come back as the data wrote them. Past the range, as a
 * string (a JSON reader could not hold it). */
static int canonical_integer(const char *s, json_int_t *out)
{
    const char *d = s + (*s == '-');
    size_t n = strlen(d);
    if (n == 0 || n > 19 || (d[0] == '0' && (n > 1 || d != s))) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)d[i])) return 0;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end) return 0;
    *out = (json_int_t)v;
    return 1;
}

static json_t *item_json(const serve_vocab *voc, int32_t id)
{
    if (!voc->map) return json_integer(id);
    const char *name = elastic_item_map_name(voc->map, id);
    json_int_t v;
    if (!name) return json_null();
    return canonical_integer(name, &v) ? json_integer(v) : json_string(name);
}

static json_t *score_json(float s)
{
    return isfinite(s) ? json_real((double)s) : json_null(); /* JSON has no NaN or infinity */
}

/* json_array_append_new that remembers a failure (out of memory). */
static void append(json_t *array, json_t *value, int *failed)
{
    if (!value || json_array_append_new(array, value)) *failed = 1;
}

char *serve_response_render(const serve_work *w, const serve_vocab *vocab)
{
    json_t *root = json_object(), *results = json_array();
    int failed = !root || !results;
    for (int u = 0; u < w->users && !failed; u++) {
        json_t *r = json_object();
        if (!r) {
            failed = 1;
            break;
        }
        if (w->op == SERVE_OP_USER_VECTORS) {
            json_t *vec = json_array();
            for (int j = 0; vec && j < w->dim; j++)
                append(vec, score_json(w->vectors[(size_t)u * (size_t)w->dim + (size_t)j]),
                       &failed);
            if (!vec || json_object_set_new(r, "vector", vec)) failed = 1;
        } else {
            json_t *items = json_array(), *scores = json_array();
            const int32_t *ids = w->ids + (size_t)u * (size_t)w->top_k;
            const float *sc = w->scores + (size_t)u * (size_t)w->top_k;
            for (int j = 0; items && scores && j < w->top_k && ids[j] > 0; j++) {
                append(items, item_json(vocab, ids[j]), &failed);
                append(scores, score_json(sc[j]), &failed);
            }
            if (json_object_set_new(r, "items", items ? items : json_null()) ||
                json_object_set_new(r, "scores", scores ? scores : json_null()) || !items ||
                !scores)
                failed = 1;
        }
        append(results, r, &failed);
    }
    char *text = NULL;
    if (!failed && !json_object_set(root, "results", results))
        text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(results);
    json_decref(root);
    return text;
}

char *serve_error_render(const serve_error *err)
{
    json_t *root = json_pack("{s:{s:s,s:s}}", "error", "code", err->code, "message", err->message);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}
