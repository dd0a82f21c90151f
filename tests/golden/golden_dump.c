/*
 * golden_dump.c - the golden tests' C side as a program, for hosts where the
 * test's Python cannot load libelastic (a cross build run under QEMU:
 * test_golden_cross.py). Loads a model file, runs the histories of a text
 * file (one user per line, item ids oldest first) through CPU sessions and
 * prints user vectors and scores as text (%.9g: float32 exactly, whatever the
 * host's byte order); optionally saves the model again.
 *
 *   golden_dump MODEL HISTORIES [--resave PATH] [VARIANT ...]
 *
 * A VARIANT is ISA[:materialized], ISA one of cpu.isa's values (best,
 * generic, avx2, avx512, neon, reference); a variant whose instruction set
 * this CPU lacks prints "skip NAME". Output per variant:
 *   variant NAME BACKEND
 *   hu ROW v v ...      (one line per user)
 *   scores ROW v v ...  (one line per user)
 * Exits 0 on success, 1 on any library error (printed).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elastic.h"

typedef struct histories {
    int32_t *items;
    int64_t *offsets;
    int n, cap_items, cap_users;
} histories;

static int read_histories(const char *path, histories *h)
{
    memset(h, 0, sizeof *h);
    FILE *f = fopen(path, "r");
    if (!f) return perror(path), 0;
    h->cap_items = 1024;
    h->cap_users = 64;
    h->items = malloc((size_t)h->cap_items * sizeof *h->items);
    h->offsets = malloc((size_t)(h->cap_users + 1) * sizeof *h->offsets);
    if (!h->items || !h->offsets) return fclose(f), 0;
    h->offsets[0] = 0;
    char line[65536];
    int64_t at = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;
        for (long v = strtol(p, &end, 10); end != p; v = strtol(p, &end, 10)) {
            if (at == h->cap_items) {
                h->cap_items *= 2;
                int32_t *items = realloc(h->items, (size_t)h->cap_items * sizeof *items);
                if (!items) return fclose(f), 0;
                h->items = items;
            }
            h->items[at++] = (int32_t)v;
            p = end;
        }
        if (h->n == h->cap_users) {
            h->cap_users *= 2;
            int64_t *offsets = realloc(h->offsets, (size_t)(h->cap_users + 1) * sizeof *offsets);
            if (!offsets) return fclose(f), 0;
            h->offsets = offsets;
        }
        h->offsets[++h->n] = at;
    }
    fclose(f);
    return 1;
}

static void print_rows(const char *tag, const float *x, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        printf("%s %d", tag, r);
        for (int c = 0; c < cols; c++)
            printf(" %.9g", (double)x[(size_t)r * (size_t)cols + (size_t)c]);
        printf("\n");
    }
}

static int fail(const char *what)
{
    fprintf(stderr, "golden_dump: %s: %s\n", what, elastic_last_error());
    return 0;
}

static int run_variant(const elastic_model *model, const histories *h, const char *variant)
{
    char isa[32], options[64];
    snprintf(isa, sizeof isa, "%s", variant);
    char *colon = strchr(isa, ':');
    int materialized = colon && !strcmp(colon + 1, "materialized");
    if (colon) *colon = '\0';
    snprintf(options, sizeof options, "cpu.isa=%s", isa);
    elastic_session_options o;
    elastic_session_options_default(&o);
    o.backend = "cpu";
    o.backend_options = options;
    o.attention = materialized ? ELASTIC_ATTENTION_MATERIALIZED : ELASTIC_ATTENTION_STREAMING;
    elastic_session *s;
    elastic_status st = elastic_session_init(&s, model, &o);
    if (st == ELASTIC_ERR_BACKEND) { /* this CPU lacks the instruction set */
        printf("skip %s\n", variant);
        return 1;
    }
    if (st != ELASTIC_OK) return fail(variant);
    const elastic_config *c = elastic_model_config(model);
    float *hu = malloc((size_t)h->n * (size_t)c->hidden * sizeof *hu);
    float *sc = malloc((size_t)h->n * (size_t)c->num_items * sizeof *sc);
    int ok = hu && sc;
    if (ok && elastic_session_user_vectors(s, h->items, h->offsets, h->n, hu) != ELASTIC_OK)
        ok = fail("user vectors");
    if (ok && elastic_session_scores(s, h->items, h->offsets, h->n, sc) != ELASTIC_OK)
        ok = fail("scores");
    if (ok) {
        printf("variant %s %s\n", variant, elastic_session_backend(s));
        print_rows("hu", hu, h->n, (int)c->hidden);
        print_rows("scores", sc, h->n, (int)c->num_items);
    }
    free(hu);
    free(sc);
    elastic_session_free(s);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: golden_dump MODEL HISTORIES [--resave PATH] [VARIANT ...]\n");
        return 2;
    }
    elastic_model *model;
    if (elastic_model_load(&model, argv[1]) != ELASTIC_OK) return !fail("load");
    histories h;
    int ok = read_histories(argv[2], &h);
    for (int i = 3; ok && i < argc; i++) {
        if (!strcmp(argv[i], "--resave") && i + 1 < argc) {
            if (elastic_model_save(model, argv[++i]) != ELASTIC_OK) ok = fail("save");
        } else {
            ok = run_variant(model, &h, argv[i]);
        }
    }
    free(h.items);
    free(h.offsets);
    elastic_model_free(model);
    return ok ? 0 : 1;
}
