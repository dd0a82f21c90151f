/*
 * fuzz_histories.c - fuzz target: the CLI's history reader (tools/histories.c,
 * what `elastic recommend` reads on stdin): numeric ids, and names looked up
 * in an item map (odd first byte). Every read either fails with a message or
 * gives count users with monotone offsets and ids as written.
 */
#include <stdio.h>
#include <string.h>

#include "fuzz_target.h"
#include "histories.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Names "a".."z" are items 1..26; anything else is unknown. */
static int32_t lookup(const char *name, void *ctx)
{
    (void)ctx;
    if (name[0] >= 'a' && name[0] <= 'z' && name[1] == '\0') return name[0] - 'a' + 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mapped = data[0] & 1;
    FILE *f = size > 1 ? fmemopen((void *)(data + 1), size - 1, "r") : fopen("/dev/null", "r");
    if (!f) return 0;
    histories h;
    char err[256] = "";
    int rc = mapped ? histories_read_mapped(f, &h, lookup, NULL, err, sizeof err)
                    : histories_read(f, &h, err, sizeof err);
    fclose(f);
    if (rc != 0) {
        fuzz_check(err[0] != '\0', "a refused history says why");
        return 0;
    }
    fuzz_check(h.count >= 0 && h.offsets && h.offsets[0] == 0, "offsets start at 0");
    for (int b = 0; b < h.count; b++) {
        fuzz_check(h.offsets[b + 1] >= h.offsets[b], "offsets are monotone");
        fuzz_check(h.line[b] >= 1, "users have line numbers");
        if (b) fuzz_check(h.line[b] > h.line[b - 1], "line numbers increase");
        for (int64_t i = h.offsets[b]; i < h.offsets[b + 1]; i++)
            if (mapped) fuzz_check(h.items[i] >= 1 && h.items[i] <= 26, "mapped ids are known");
    }
    histories_free(&h);
    return 0;
}
