/*
 * histories.h - reading user histories for the command-line tools: one user
 * per line, item ids separated by spaces or tabs, oldest first. A blank line is a user with no items
 * (the library rejects it with ELASTIC_ERR_EMPTY_HISTORY).
 */
#ifndef ELASTIC_TOOLS_HISTORIES_H
#define ELASTIC_TOOLS_HISTORIES_H

#include <stdint.h>
#include <stdio.h>

typedef struct histories {
    int32_t *items;
    int64_t *offsets; /* count + 1 entries */
    int64_t *line;    /* input line number of each user */
    int count;
} histories;

/* Reads every line of f. Returns 0, or -1 with a message in err (line
 * number included) for a malformed id or an empty line. */
int histories_read(FILE *f, histories *h, char *err, size_t err_size);
/* The same, with every token a name that lookup() turns into an item id
 * (0 for a name it does not know: an error naming the line and the token). */
int histories_read_mapped(FILE *f, histories *h, int32_t (*lookup)(const char *name, void *ctx),
                          void *ctx, char *err, size_t err_size);
void histories_free(histories *h);

#endif
