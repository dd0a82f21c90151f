/*
 * fuzz_config.c - fuzz target: the model config parser (`key=value`,
 * core/model/config.c) and the backend-options text ("backend.key=value,...",
 * core/runtime/backend_options.c). Input lines are key=value pairs given to
 * elastic_config_set; a config that validates is written back to strings
 * with elastic_config_to_strings and read again, which must give the same
 * config. The last line is also checked as backend options.
 */
#include <stdlib.h>
#include <string.h>

#include "elastic.h"
#include "fuzz_target.h"
#include "model/model.h"
#include "runtime/backend_options.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static elastic_status set_back(const char *key, const char *value, void *ctx)
{
    if (!strcmp(key, "format_version")) return ELASTIC_OK;
    return elastic_config_set(ctx, key, value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    elastic_config c;
    elastic_config_default(&c);
    int ok = 1;
    char *last = text;
    for (char *line = text; line && ok;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        last = line;
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = '\0';
            if (elastic_config_set(&c, line, eq + 1) != ELASTIC_OK) {
                fuzz_check(elastic_last_error()[0] != '\0', "a refused key says why");
                ok = 0;
            }
            *eq = '=';
        }
        line = next;
    }
    if (ok && elastic_config_validate(&c) == ELASTIC_OK) {
        elastic_config back;
        elastic_config_default(&back);
        fuzz_check(elastic_config_to_strings(&c, set_back, &back) == ELASTIC_OK,
                   "a valid config reads back from its strings");
        fuzz_check(elastic_config_validate(&back) == ELASTIC_OK, "the read-back config is valid");
        fuzz_check(fuzz_config_equal(&back, &c), "the read-back config is the same");
    }
    static const char *const known[] = {"isa", NULL};
    elastic_backend_options_check(last, "cpu", known);
    char value[64];
    int found = 0;
    if (elastic_backend_option(last, "cpu", "isa", value, sizeof value, &found) == ELASTIC_OK &&
        found)
        fuzz_check(strlen(value) < sizeof value, "an option value fits its buffer");
    free(text);
    return 0;
}
