/*
 * fuzz_util.c - the helpers of fuzz_target.h: scratch files for readers that
 * take a path, and the invariant check of the targets.
 */
#include "fuzz_target.h"

#include "elastic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SCRATCH 8

static char scratch[MAX_SCRATCH][256];
static int n_scratch;

static void remove_scratch(void)
{
    for (int i = 0; i < n_scratch; i++)
        remove(scratch[i]);
}

const char *fuzz_scratch_path(const char *suffix)
{
    for (int i = 0; i < n_scratch; i++) {
        size_t n = strlen(scratch[i]), s = strlen(suffix);
        if (n >= s && !strcmp(scratch[i] + n - s, suffix)) return scratch[i];
    }
    if (n_scratch == MAX_SCRATCH) return NULL;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(scratch[n_scratch], sizeof scratch[0], "%s/elastic-fuzz-%ld-%d%s", dir,
             (long)getpid(), n_scratch, suffix);
    if (n_scratch == 0) atexit(remove_scratch);
    return scratch[n_scratch++];
}

const char *fuzz_write_scratch(const char *suffix, const uint8_t *data, size_t size)
{
    const char *path = fuzz_scratch_path(suffix);
    if (!path) return NULL;
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    int ok = (size == 0 || fwrite(data, 1, size, f) == size);
    if (fclose(f) != 0) ok = 0;
    return ok ? path : NULL;
}

void fuzz_check(int cond, const char *what)
{
    if (cond) return;
    fprintf(stderr, "fuzz target invariant failed: %s\n", what);
    abort();
}

int fuzz_config_equal(const elastic_config *a, const elastic_config *b)
{
    return a->model == b->model && a->num_items == b->num_items && a->max_len == b->max_len &&
           a->hidden == b->hidden && a->heads == b->heads && a->layers == b->layers &&
           a->experts == b->experts && a->ffn == b->ffn && a->mem_subkeys == b->mem_subkeys &&
           a->mem_key == b->mem_key && a->mem_topk == b->mem_topk && a->ln_eps == b->ln_eps;
}
