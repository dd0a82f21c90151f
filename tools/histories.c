/* histories.c - see histories.h. */
#include "histories.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

int histories_read(FILE *f, histories *h, char *err, size_t err_size)
{
    return histories_read_mapped(f, h, NULL, NULL, err, err_size);
}

int histories_read_mapped(FILE *f, histories *h, int32_t (*lookup)(const char *name, void *ctx),
                          void *ctx, char *err, size_t err_size)
{
    memset(h, 0, sizeof *h);
    size_t item_cap = 0, user_cap = 0, line_cap_users = 0, n_items = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int64_t line_no = 0;
    ssize_t got;
    if (grow((void **)&h->offsets, &user_cap, 1, sizeof *h->offsets)) goto oom;
    h->offsets[0] = 0;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        while (*p) { /* a blank line is a user with an empty history */
            char *end;
            long v;
            if (lookup) { /* a name, looked up: 0 = unknown */
                end = p + strcspn(p, " \t\r\n\v\f");
                char saved = *end;
                *end = '\0';
                v = lookup(p, ctx);
                *end = saved;
                if (v == 0) {
                    snprintf(err, err_size, "line %lld: item '%.*s' is not in the model's item map",
                             (long long)line_no, (int)(end - p), p);
                    goto fail;
                }
            } else {
                errno = 0;
                v = strtol(p, &end, 10);
                if (end == p || errno || v < INT32_MIN || v > INT32_MAX ||
                    (*end && !isspace((unsigned char)*end))) {
                    snprintf(err, err_size, "line %lld: '%.*s' is not an item id",
                             (long long)line_no, (int)strcspn(p, " \t\r\n"), p);
                    goto fail;
                }
            }
            if (grow((void **)&h->items, &item_cap, n_items + 1, sizeof *h->items)) goto oom;
            h->items[n_items++] = (int32_t)v;
            p = end;
            while (isspace((unsigned char)*p)) p++;
        }
        size_t users = (size_t)h->count + 2;
        if (grow((void **)&h->offsets, &user_cap, users, sizeof *h->offsets)) goto oom;
        if (grow((void **)&h->line, &line_cap_users, users, sizeof *h->line)) goto oom;
        h->line[h->count] = line_no;
        h->offsets[++h->count] = (int64_t)n_items;
    }
    free(line);
    if (ferror(f)) {
        snprintf(err, err_size, "read error: %s", strerror(errno));
        histories_free(h);
        return -1;
    }
    return 0;
oom:
    snprintf(err, err_size, "out of memory reading histories");
fail:
    free(line);
    histories_free(h);
    return -1;
}

void histories_free(histories *h)
{
    free(h->items);
    free(h->offsets);
    free(h->line);
    memset(h, 0, sizeof *h);
}
