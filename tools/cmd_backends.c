/*
 * cmd_backends.c - `elastic backends`: each backend, whether it is compiled
 * in and available on this machine, and its devices.
 */
#include "cli_util.h"
#include "commands.h"

#include <stdio.h>

const char cmd_backends_usage[] =
    "usage: elastic backends\n"
    "Lists the backends: compiled in or not, available on this machine or not,\n"
    "and their devices.\n";

int cmd_backends(int argc, char **argv)
{
    int c = cli_getopt(argc, argv, "", NULL, 0, NULL);
    if (c != -1) return cli_stop(c);
    if (optind < argc) return cli_usage_error("unexpected argument '%s'", argv[optind]);
    for (int i = 0; i < elastic_backend_count(); i++) {
        elastic_backend_info info;
        if (elastic_backend_get_info(i, &info) != ELASTIC_OK) continue;
        printf("%-7s %-14s %s\n", info.name,
               !info.compiled   ? "not compiled"
               : info.available ? "available"
                                : "unavailable",
               info.description);
    }
    return 0;
}
