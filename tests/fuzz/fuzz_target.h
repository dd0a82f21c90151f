/*
 * fuzz_target.h - what every fuzz target of tests/fuzz defines (libFuzzer's
 * entry points) and the helpers they share: a per-process scratch file for
 * the readers that take a path, and a check that fails loudly (abort, so
 * that libFuzzer and the replay runner both report it as a crash).
 */
#ifndef ELASTIC_FUZZ_TARGET_H
#define ELASTIC_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A scratch path unique to this process, ending in `suffix` (".st",
 * ".csv", ...); the file is removed at exit. */
const char *fuzz_scratch_path(const char *suffix);
/* Writes bytes to the scratch path for `suffix`; returns that path, or NULL
 * when the file could not be written (the input is then skipped). */
const char *fuzz_write_scratch(const char *suffix, const uint8_t *data, size_t size);
/* Field by field (no padding bytes): 1 when the two configs are equal. */
struct elastic_config;
int fuzz_config_equal(const struct elastic_config *a, const struct elastic_config *b);
/* Aborts with a message when cond is false: an invariant of the target. */
void fuzz_check(int cond, const char *what);

#endif
