/*
 * data.c - interaction logs: readers for "user item" pairs, MovieLens
 * ratings.dat and CSV, id remapping, the leave-one-out split of spec
 * section 5, the item map as JSON, and writing pairs back.
 *
 * Every format: one event per line; lines may end in "\n" or "\r\n"; blank
 * lines are skipped; fields are trimmed of spaces and tabs; a UTF-8 byte
 * order mark at the start of the file is ignored. Ids are kept as written.
 *
 *   PAIRS      "user item", separated by spaces or tabs, exactly two fields;
 *              the file order is the time order.
 *   MOVIELENS  "user::item::rating::timestamp", exactly four fields; rating
 *              and timestamp must be numbers; events are ordered by timestamp
 *              per user, equal timestamps keep the file order.
 *   CSV        a header line, then rows with as many fields as the header.
 *              The header names the columns (case-insensitive): `user` and
 *              `item` are required; `timestamp` is optional (without it the
 *              file order is the time order); `rating` is optional (it must
 *              be a number or empty, and is not used: every row is an event).
 *              Other columns are allowed and ignored. Fields may be quoted
 *              with "..." ("" inside is a quote); a quoted field cannot span
 *              lines. Aliases: user_id/userid, item_id/itemid/movie_id/movieid,
 *              time/ts.
 *   SEQUENCES  "user item item ...", whitespace-separated, one user and at
 *              least one item per line, items in time order; a user on
 *              several lines gets their items in file order.
 *   RECBOLE    RecBole's atomic .inter files: tab-separated, a header of
 *              typed fields "name:type" (token, token_seq, float, float_seq);
 *              names as for CSV; rows with as many fields as the header;
 *              ordered by timestamp per user when there is one.
 *   AUTO       see detect(): a typed header or a .inter name is RECBOLE; a
 *              .csv name is CSV; "::" or a .dat name is MovieLens; a comma is
 *              CSV; else whitespace-separated ids, read as SEQUENCES (which
 *              accepts every PAIRS file and means the same for it) and
 *              reported as PAIRS when no line had more than two fields.
 *              Conflicting signs are an error naming the candidates.
 */
#include "data/data.h"

#include "base/error.h"
#include "data/item_map.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

elastic_dataset *elastic_dataset_new(void)
{
    elastic_dataset *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    elastic_strmap_init(&d->user_names);
    elastic_strmap_init(&d->item_names);
    d->format = ELASTIC_DATA_FORMAT_PAIRS;
    d->magic = ELASTIC_DATASET_MAGIC;
    return d;
}

elastic_data_format elastic_dataset_format(const elastic_dataset *d)
{
    return elastic_dataset_live(d) ? d->format : ELASTIC_DATA_FORMAT_AUTO;
}

const char *elastic_data_format_name(elastic_data_format format)
{
    switch (format) {
    case ELASTIC_DATA_FORMAT_AUTO: return "auto";
    case ELASTIC_DATA_FORMAT_PAIRS: return "pairs";
    case ELASTIC_DATA_FORMAT_MOVIELENS: return "movielens";
    case ELASTIC_DATA_FORMAT_CSV: return "csv";
    case ELASTIC_DATA_FORMAT_SEQUENCES: return "sequences";
    case ELASTIC_DATA_FORMAT_RECBOLE: return "recbole";
    }
    return "unknown";
}

void elastic_dataset_free(elastic_dataset *d)
{
    if (!elastic_dataset_live(d)) return; /* NULL, or freed already */
    d->magic = 0;
    free(d->offsets);
    free(d->items);
    elastic_strmap_free(&d->user_names);
    elastic_strmap_free(&d->item_names);
    free(d);
}

/* ------------------------------------------------------------ events */

typedef struct event {
    double ts;
    int64_t seq; /* file order */
    int64_t user;
    int32_t item;
} event;

typedef struct event_list {
    event *e;
    int64_t n, cap;
} event_list;

static elastic_status push_event(event_list *l, int64_t user, int32_t item, double ts)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 1024;
        event *p = realloc(l->e, (size_t)cap * sizeof *p);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (events)");
        l->e = p;
        l->cap = cap;
    }
    l->e[l->n] = (event){.ts = ts, .seq = l->n, .user = user, .item = item};
    l->n++;
    return ELASTIC_OK;
}

static int cmp_event(const void *a, const void *b)
{
    const event *x = a, *y = b;
    if (x->ts < y->ts) return -1;
    if (x->ts > y->ts) return 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Groups the events by user (stable), sorts each user's events by timestamp
 * when `by_time`, and fills offsets/items. */
static elastic_status build_sequences(elastic_dataset *d, event_list *l, int by_time)
{
    int64_t U = d->user_names.count;
    d->num_users = U;
    d->num_items = d->item_names.count;
    d->num_events = l->n;
    d->offsets = calloc((size_t)U + 1, sizeof *d->offsets);
    d->items = malloc((size_t)(l->n ? l->n : 1) * sizeof *d->items);
    event *sorted = malloc((size_t)(l->n ? l->n : 1) * sizeof *sorted);
    int64_t *fill = malloc((size_t)(U ? U : 1) * sizeof *fill);
    elastic_status st = ELASTIC_OK;
    if (!d->offsets || !d->items || !sorted || !fill) {
        st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (sequences)");
        goto done;
    }
    for (int64_t i = 0; i < l->n; i++)
        d->offsets[l->e[i].user + 1]++;
    for (int64_t u = 0; u < U; u++)
        d->offsets[u + 1] += d->offsets[u];
    memcpy(fill, d->offsets, (size_t)U * sizeof *fill);
    for (int64_t i = 0; i < l->n; i++)
        sorted[fill[l->e[i].user]++] = l->e[i];
    for (int64_t u = 0; u < U; u++) {
        event *s = sorted + d->offsets[u];
        size_t n = (size_t)(d->offsets[u + 1] - d->offsets[u]);
        if (by_time && n > 1) qsort(s, n, sizeof *s, cmp_event);
        for (size_t j = 0; j < n; j++)
            d->items[d->offsets[u] + (int64_t)j] = s[j].item;
    }
done:
    free(sorted);
    free(fill);
    return st;
}

/* ------------------------------------------------------------ lines */

static char *trim(char *s, char **end_io)
{
    char *e = *end_io;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *end_io = e;
    return s;
}

/* A growable list of NUL-terminated fields pointing into the line. */
typedef struct fields {
    char **f;
    int n, cap;
} fields;

static elastic_status add_field(fields *fs, char *s)
{
    if (fs->n == fs->cap) {
        int cap = fs->cap ? fs->cap * 2 : 8;
        char **p = realloc(fs->f, (size_t)cap * sizeof *p);
        if (!p) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (fields)");
        fs->f = p;
        fs->cap = cap;
    }
    fs->f[fs->n++] = s;
    return ELASTIC_OK;
}

static elastic_status split_pairs(char *line, fields *fs)
{
    fs->n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) return ELASTIC_OK;
        char *start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        int more = *p != '\0';
        *p = '\0';
        ELASTIC_TRY(add_field(fs, start));
        if (more) p++;
    }
}

static elastic_status split_movielens(char *line, fields *fs)
{
    fs->n = 0;
    char *p = line;
    for (;;) {
        char *sep = strstr(p, "::");
        char *end = sep ? sep : p + strlen(p);
        char *s = trim(p, &end);
        *end = '\0';
        ELASTIC_TRY(add_field(fs, s));
        if (!sep) return ELASTIC_OK;
        p = sep + 2;
    }
}

/* RecBole: fields separated by single tabs, each trimmed of spaces. */
static elastic_status split_tabs(char *line, fields *fs)
{
    fs->n = 0;
    char *p = line;
    for (;;) {
        char *sep = strchr(p, '\t');
        char *end = sep ? sep : p + strlen(p);
        char *b = p;
        while (b < end && *b == ' ')
            b++;
        while (end > b && end[-1] == ' ')
            end--;
        int more = sep != NULL;
        *end = '\0';
        ELASTIC_TRY(add_field(fs, b));
        if (!more) return ELASTIC_OK;
        p = sep + 1;
    }
}

/* CSV with optional "..." quoting; returns ELASTIC_ERR_FORMAT (message set
 * without the location; the caller adds it) for a bad quote. */
static elastic_status split_csv(char *line, fields *fs, const char **why)
{
    fs->n = 0;
    char *p = line;
    *why = NULL;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        char *start, *end;
        if (*p == '"') {
            start = end = ++p; /* unescape in place */
            for (;;) {
                if (!*p) {
                    *why = "unterminated quoted field";
                    return ELASTIC_ERR_FORMAT;
                }
                if (*p == '"') {
                    if (p[1] == '"') {
                        *end++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *end++ = *p++;
            }
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p && *p != ',') {
                *why = "unexpected text after a quoted field";
                return ELASTIC_ERR_FORMAT;
            }
        } else {
            start = p;
            while (*p && *p != ',')
                p++;
            end = p;
            start = trim(start, &end);
        }
        int more = *p == ',';
        *end = '\0';
        ELASTIC_TRY(add_field(fs, start));
        if (!more) return ELASTIC_OK;
        p++;
    }
}

static int parse_number(const char *s, double *out)
{
    if (!*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

/* RecBole's field types (the part after the colon of a header field). */
static int recbole_type(const char *t)
{
    return !strcmp(t, "token") || !strcmp(t, "token_seq") || !strcmp(t, "float") ||
           !strcmp(t, "float_seq");
}

/* Whether every tab-separated field of the line is "name:type" with a
 * RecBole type (checked on a copy). */
static int typed_header(const char *line)
{
    if (!strchr(line, ':') || strstr(line, "::")) return 0;
    const char *p = line;
    for (;;) {
        const char *end = strchr(p, '\t'), *stop = end ? end : p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(stop - p));
        if (!colon || colon == p) return 0;
        char type[16];
        size_t n = (size_t)(stop - colon - 1);
        while (n > 0 && colon[n] == ' ')
            n--;
        if (n == 0 || n >= sizeof type) return 0;
        memcpy(type, colon + 1, n);
        type[n] = '\0';
        if (!recbole_type(type)) return 0;
        if (!end) return 1;
        p = end + 1;
    }
}

/* The format of a file from its name and first data line (see the top of
 * this file); ELASTIC_ERR_FORMAT naming the candidates when signs conflict.
 * Whitespace-separated ids come back as SEQUENCES (*whitespace set). */
static elastic_status detect(const char *path, long long no, const char *first,
                             elastic_data_format *out, int *whitespace)
{
    int by_name_csv = ends_with_ci(path, ".csv"), by_name_dat = ends_with_ci(path, ".dat"),
        by_name_inter = ends_with_ci(path, ".inter");
    int typed = typed_header(first), colons = strstr(first, "::") != NULL,
        comma = strchr(first, ',') != NULL;
    const char *a = NULL, *b = NULL;
    if ((typed || by_name_inter) && (by_name_csv || by_name_dat || colons))
        a = "recbole", b = by_name_csv ? "csv" : "movielens";
    else if (by_name_csv && colons)
        a = "csv", b = "movielens";
    else if (colons && comma && !by_name_dat)
        a = "movielens", b = "csv";
    if (a)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "%s:%lld: the format is ambiguous: it could be %s or %s; choose "
                             "with --format %s or --format %s",
                             path, no, a, b, a, b);
    *whitespace = 0;
    if (typed || by_name_inter)
        *out = ELASTIC_DATA_FORMAT_RECBOLE;
    else if (by_name_csv)
        *out = ELASTIC_DATA_FORMAT_CSV;
    else if (colons || by_name_dat)
        *out = ELASTIC_DATA_FORMAT_MOVIELENS;
    else if (comma)
        *out = ELASTIC_DATA_FORMAT_CSV;
    else {
        *out = ELASTIC_DATA_FORMAT_SEQUENCES;
        *whitespace = 1;
    }
    return ELASTIC_OK;
}

static int is_one_of(const char *name, const char *const *names)
{
    for (; *names; names++)
        if (!strcasecmp(name, *names)) return 1;
    return 0;
}

typedef struct csv_columns {
    int n, user, item, rating, timestamp;
} csv_columns;

static elastic_status parse_header(const char *path, long long no, fields *fs, csv_columns *c)
{
    static const char *const user_names[] = {"user", "user_id", "userid", NULL};
    static const char *const item_names[] = {"item",     "item_id", "itemid",
                                             "movie_id", "movieid", NULL};
    static const char *const rating_names[] = {"rating", NULL};
    static const char *const time_names[] = {"timestamp", "time", "ts", NULL};
    *c = (csv_columns){.n = fs->n, .user = -1, .item = -1, .rating = -1, .timestamp = -1};
    for (int i = 0; i < fs->n; i++) {
        int *slot = is_one_of(fs->f[i], user_names)     ? &c->user
                    : is_one_of(fs->f[i], item_names)   ? &c->item
                    : is_one_of(fs->f[i], rating_names) ? &c->rating
                    : is_one_of(fs->f[i], time_names)   ? &c->timestamp
                                                        : NULL;
        if (!slot) continue;
        if (*slot >= 0)
            return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: CSV header names '%s' twice", path,
                                 no, fs->f[i]);
        *slot = i;
    }
    if (c->user < 0 || c->item < 0)
        return elastic_error(ELASTIC_ERR_FORMAT,
                             "%s:%lld: CSV header must name the columns user and item "
                             "(e.g. user,item,rating,timestamp)",
                             path, no);
    return ELASTIC_OK;
}

typedef struct loader {
    const char *path;
    elastic_data_format format;
    elastic_dataset *d;
    event_list events;
    fields fs;
    csv_columns csv;
    int have_header;
    int whitespace; /* AUTO chose whitespace-separated ids: PAIRS or SEQUENCES */
    int max_fields; /* the most fields on a whitespace-separated line */
} loader;

static elastic_status add_event(loader *L, long long no, const char *user, const char *item,
                                double ts)
{
    if (!*user) return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: empty user id", L->path, no);
    if (!*item) return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: empty item id", L->path, no);
    int64_t u, v;
    ELASTIC_TRY(elastic_strmap_intern(&L->d->user_names, user, strlen(user), &u, NULL));
    ELASTIC_TRY(elastic_strmap_intern(&L->d->item_names, item, strlen(item), &v, NULL));
    if (v >= INT32_MAX - 1)
        return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: more than %d distinct items", L->path,
                             no, INT32_MAX - 2);
    return push_event(&L->events, u, (int32_t)(v + 1), ts);
}

/* A CSV or RecBole row by the header's columns. */
static elastic_status columns_row(loader *L, long long no, fields *fs)
{
    const csv_columns *c = &L->csv;
    if (fs->n != c->n)
        return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: expected %d fields, got %d", L->path, no,
                             c->n, fs->n);
    double ts = 0.0, rating;
    if (c->rating >= 0 && *fs->f[c->rating] && !parse_number(fs->f[c->rating], &rating))
        return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: rating '%s' is not a number", L->path,
                             no, fs->f[c->rating]);
    if (c->timestamp >= 0 && !parse_number(fs->f[c->timestamp], &ts))
        return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: timestamp '%s' is not a number", L->path,
                             no, fs->f[c->timestamp]);
    return add_event(L, no, fs->f[c->user], fs->f[c->item], ts);
}

/* A RecBole header: every field name:type; the names are matched as CSV's. */
static elastic_status recbole_header(loader *L, long long no, fields *fs)
{
    for (int i = 0; i < fs->n; i++) {
        char *colon = strrchr(fs->f[i], ':');
        if (!colon || colon == fs->f[i] || !recbole_type(colon + 1))
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "%s:%lld: RecBole header field '%s' is not name:type (type "
                                 "token, token_seq, float or float_seq)",
                                 L->path, no, fs->f[i]);
        *colon = '\0';
    }
    return parse_header(L->path, no, fs, &L->csv);
}

static elastic_status parse_line(loader *L, long long no, char *line)
{
    fields *fs = &L->fs;
    if (L->format == ELASTIC_DATA_FORMAT_AUTO)
        ELASTIC_TRY(detect(L->path, no, line, &L->format, &L->whitespace));
    switch (L->format) {
    case ELASTIC_DATA_FORMAT_SEQUENCES:
        ELASTIC_TRY(split_pairs(line, fs));
        if (fs->n < 2)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "%s:%lld: expected a user and at least one item (user item "
                                 "item ...), got %d field",
                                 L->path, no, fs->n);
        if (fs->n > L->max_fields) L->max_fields = fs->n;
        for (int i = 1; i < fs->n; i++)
            ELASTIC_TRY(add_event(L, no, fs->f[0], fs->f[i], 0.0));
        return ELASTIC_OK;
    case ELASTIC_DATA_FORMAT_RECBOLE:
        ELASTIC_TRY(split_tabs(line, fs));
        if (!L->have_header) {
            L->have_header = 1;
            return recbole_header(L, no, fs);
        }
        return columns_row(L, no, fs);
    case ELASTIC_DATA_FORMAT_PAIRS:
        ELASTIC_TRY(split_pairs(line, fs));
        if (fs->n != 2)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "%s:%lld: expected 2 fields (user item), got %d", L->path, no,
                                 fs->n);
        return add_event(L, no, fs->f[0], fs->f[1], 0.0);
    case ELASTIC_DATA_FORMAT_MOVIELENS: {
        ELASTIC_TRY(split_movielens(line, fs));
        if (fs->n != 4)
            return elastic_error(ELASTIC_ERR_FORMAT,
                                 "%s:%lld: expected 4 fields (user::item::rating::timestamp), "
                                 "got %d",
                                 L->path, no, fs->n);
        double rating, ts;
        if (!parse_number(fs->f[2], &rating))
            return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: rating '%s' is not a number",
                                 L->path, no, fs->f[2]);
        if (!parse_number(fs->f[3], &ts))
            return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: timestamp '%s' is not a number",
                                 L->path, no, fs->f[3]);
        return add_event(L, no, fs->f[0], fs->f[1], ts);
    }
    case ELASTIC_DATA_FORMAT_CSV: {
        const char *why;
        elastic_status st = split_csv(line, fs, &why);
        if (st == ELASTIC_ERR_FORMAT && why)
            return elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: %s", L->path, no, why);
        ELASTIC_TRY(st);
        if (!L->have_header) {
            L->have_header = 1;
            return parse_header(L->path, no, fs, &L->csv);
        }
        return columns_row(L, no, fs);
    }
    default: break;
    }
    return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown data format %d", (int)L->format);
}

elastic_status elastic_dataset_load(elastic_dataset **dataset, const char *path,
                                    elastic_data_format format)
{
    elastic_error_clear();
    if (!dataset || !path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset or path");
    *dataset = NULL;
    if ((int)format < ELASTIC_DATA_FORMAT_AUTO || format > ELASTIC_DATA_FORMAT_RECBOLE)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown data format %d", (int)format);
    FILE *f = fopen(path, "r");
    if (!f) return elastic_error(ELASTIC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    loader L = {.path = path, .format = format, .d = elastic_dataset_new()};
    elastic_status st = L.d ? ELASTIC_OK : elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    char *line = NULL;
    size_t cap = 0;
    long long no = 0;
    ssize_t got;
    errno = 0;
    while (st == ELASTIC_OK && (got = getline(&line, &cap, f)) >= 0) {
        no++;
        char *s = line, *end = line + got;
        if (no == 1 && got >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3;
        while (end > s && (end[-1] == '\n' || end[-1] == '\r'))
            end--;
        if (memchr(s, '\0', (size_t)(end - s))) {
            st = elastic_error(ELASTIC_ERR_FORMAT, "%s:%lld: NUL byte in line", path, no);
            break;
        }
        *end = '\0';
        char *t = s;
        while (*t == ' ' || *t == '\t')
            t++;
        if (!*t) continue; /* blank line */
        st = parse_line(&L, no, s);
    }
    if (st == ELASTIC_OK && ferror(f))
        st = elastic_error(ELASTIC_ERR_IO, "%s: read error: %s", path,
                           strerror(errno ? errno : EIO));
    free(line);
    fclose(f);
    if (st == ELASTIC_OK && L.events.n == 0)
        st = elastic_error(ELASTIC_ERR_FORMAT, "%s: no events (%s)", path,
                           no == 0 ? "empty file" : "no data lines");
    int by_time =
        L.format != ELASTIC_DATA_FORMAT_PAIRS && L.format != ELASTIC_DATA_FORMAT_SEQUENCES;
    if (st == ELASTIC_OK &&
        (L.format == ELASTIC_DATA_FORMAT_CSV || L.format == ELASTIC_DATA_FORMAT_RECBOLE))
        by_time = L.csv.timestamp >= 0; /* without one, the file order is the time order */
    if (st == ELASTIC_OK) st = build_sequences(L.d, &L.events, by_time);
    if (st == ELASTIC_OK)
        L.d->format = L.whitespace && L.max_fields <= 2 ? ELASTIC_DATA_FORMAT_PAIRS : L.format;
    free(L.events.e);
    free(L.fs.f);
    if (st != ELASTIC_OK) {
        elastic_dataset_free(L.d);
        return st;
    }
    *dataset = L.d;
    return ELASTIC_OK;
}

/* ------------------------------------------------------------ access */

int64_t elastic_dataset_num_users(const elastic_dataset *d)
{
    return elastic_dataset_live(d) ? d->num_users : 0;
}
int64_t elastic_dataset_num_items(const elastic_dataset *d)
{
    return elastic_dataset_live(d) ? d->num_items : 0;
}
int64_t elastic_dataset_num_events(const elastic_dataset *d)
{
    return elastic_dataset_live(d) ? d->num_events : 0;
}

static elastic_status check_user(const elastic_dataset *d, int64_t user)
{
    if (!d) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset");
    if (!elastic_dataset_live(d))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the dataset was freed");
    if (user < 0 || user >= d->num_users)
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE, "user %lld outside 0..%lld", (long long)user,
                             (long long)d->num_users - 1);
    return ELASTIC_OK;
}

elastic_status elastic_dataset_user(const elastic_dataset *d, int64_t user, const int32_t **items,
                                    int64_t *len)
{
    elastic_error_clear();
    ELASTIC_TRY(check_user(d, user));
    if (!items || !len) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL output");
    *items = d->items + d->offsets[user];
    *len = d->offsets[user + 1] - d->offsets[user];
    return ELASTIC_OK;
}

elastic_status elastic_dataset_split(const elastic_dataset *d, int64_t user, elastic_split split,
                                     const int32_t **history, int64_t *len, int32_t *target)
{
    elastic_error_clear();
    ELASTIC_TRY(check_user(d, user));
    if (!history || !len || !target) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL output");
    if (split != ELASTIC_SPLIT_VALID && split != ELASTIC_SPLIT_TEST)
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "unknown split %d", (int)split);
    int64_t n = d->offsets[user + 1] - d->offsets[user];
    if (n < 3)
        return elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                             "user %lld has %lld events: no split (needs at least 3)",
                             (long long)user, (long long)n);
    const int32_t *s = d->items + d->offsets[user];
    int64_t h = split == ELASTIC_SPLIT_VALID ? n - 2 : n - 1;
    *history = s;
    *len = h;
    *target = s[h];
    return ELASTIC_OK;
}

elastic_status elastic_dataset_train_items(const elastic_dataset *d, int64_t user,
                                           const int32_t **items, int64_t *len)
{
    elastic_error_clear();
    ELASTIC_TRY(check_user(d, user));
    if (!items || !len) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL output");
    int64_t n = d->offsets[user + 1] - d->offsets[user];
    *items = d->items + d->offsets[user];
    *len = n >= 3 ? n - 2 : n;
    return ELASTIC_OK;
}

const char *elastic_dataset_item_name(const elastic_dataset *d, int32_t item)
{
    if (!elastic_dataset_live(d) || item < 1 || item > d->num_items) return NULL;
    return elastic_strmap_key(&d->item_names, item - 1);
}

int32_t elastic_dataset_item_id(const elastic_dataset *d, const char *name)
{
    if (!elastic_dataset_live(d) || !name) return 0;
    int64_t v = elastic_strmap_find(&d->item_names, name, strlen(name));
    return v < 0 ? 0 : (int32_t)(v + 1);
}

const char *elastic_dataset_user_name(const elastic_dataset *d, int64_t user)
{
    if (!elastic_dataset_live(d) || user < 0 || user >= d->num_users) return NULL;
    return elastic_strmap_key(&d->user_names, user);
}

elastic_status elastic_dataset_item_map_json(const elastic_dataset *d, char **json)
{
    elastic_error_clear();
    if (!d || !json) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset or output");
    if (!elastic_dataset_live(d))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the dataset was freed");
    *json = NULL;
    json_t *arr = json_array();
    if (!arr) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item map)");
    for (int64_t v = 1; v <= d->num_items; v++) {
        if (json_array_append_new(arr, json_string(elastic_dataset_item_name(d, (int32_t)v)))) {
            json_decref(arr);
            return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item map)");
        }
    }
    *json = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!*json) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item map)");
    return ELASTIC_OK;
}

elastic_status elastic_dataset_apply_item_map(elastic_dataset *d, const char *json)
{
    elastic_error_clear();
    if (!d || !json) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset or item map");
    if (!elastic_dataset_live(d))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the dataset was freed");
    elastic_strmap map;
    int32_t *to = NULL;
    elastic_status st = elastic_item_map_parse(json, &map);
    if (st != ELASTIC_OK) return st;
    size_t n = (size_t)map.count;
    if (st != ELASTIC_OK) goto done;
    to = malloc((size_t)(d->num_items + 1) * sizeof *to);
    if (!to) {
        st = elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory (item map)");
        goto done;
    }
    to[0] = 0;
    for (int64_t v = 1; v <= d->num_items; v++) {
        const char *name = elastic_strmap_key(&d->item_names, v - 1);
        int64_t idx = elastic_strmap_find(&map, name, strlen(name));
        if (idx < 0) {
            st = elastic_error(ELASTIC_ERR_OUT_OF_RANGE,
                               "item '%s' of the data is not in the model's item map "
                               "(%zu items)",
                               name, n);
            goto done;
        }
        to[v] = (int32_t)(idx + 1);
    }
    for (int64_t e = 0; e < d->num_events; e++)
        d->items[e] = to[d->items[e]];
    elastic_strmap_free(&d->item_names);
    d->item_names = map;
    elastic_strmap_init(&map);
    d->num_items = (int64_t)n;
done:
    free(to);
    elastic_strmap_free(&map);
    return st;
}

/* ------------------------------------------------------------ writing */

elastic_status elastic_dataset_save_pairs(const elastic_dataset *d, const char *path)
{
    elastic_error_clear();
    if (!d || !path) return elastic_error(ELASTIC_ERR_INVALID_ARG, "NULL dataset or path");
    if (!elastic_dataset_live(d))
        return elastic_error(ELASTIC_ERR_INVALID_ARG, "the dataset was freed");
    for (int64_t u = 0; u < d->num_users; u++)
        if (strpbrk(elastic_strmap_key(&d->user_names, u), " \t"))
            return elastic_error(ELASTIC_ERR_FORMAT, "user id '%s' holds a space: no pairs file",
                                 elastic_strmap_key(&d->user_names, u));
    for (int64_t v = 0; v < d->num_items; v++)
        if (strpbrk(elastic_strmap_key(&d->item_names, v), " \t"))
            return elastic_error(ELASTIC_ERR_FORMAT, "item id '%s' holds a space: no pairs file",
                                 elastic_strmap_key(&d->item_names, v));
    /* Through "path.tmp" and a rename: a failed write leaves the old file. */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return elastic_error(ELASTIC_ERR_NO_MEMORY, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        elastic_status st =
            elastic_error(ELASTIC_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    for (int64_t u = 0; u < d->num_users; u++) {
        const char *un = elastic_strmap_key(&d->user_names, u);
        for (int64_t e = d->offsets[u]; e < d->offsets[u + 1]; e++)
            fprintf(f, "%s %s\n", un, elastic_strmap_key(&d->item_names, d->items[e] - 1));
    }
    int bad = ferror(f) || fflush(f) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad || rename(tmp, path) != 0) {
        if (!bad) err = errno;
        remove(tmp);
        free(tmp);
        return elastic_error(ELASTIC_ERR_IO, "%s: write error: %s", path,
                             strerror(err ? err : EIO));
    }
    free(tmp);
    return ELASTIC_OK;
}
